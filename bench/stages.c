/*
 * bench/stages.c - what each stage of a page's way from the source's
 * memory to the destination's costs in CPU time, on this machine: guest
 * state bytes per CPU second, stage by stage, for text (compressible) and
 * random (incompressible) pages, using the engine's own code (compress/,
 * migrate/stream.c) and the TLS 1.3 cipher the transport negotiates first.
 *
 * usage: bench/stages [MIB [RUNS]]   (default 256 MiB of each content, 5 runs)
 *
 * Stages, in a page's order:
 *   zero-detect      compress_is_zero on the page (a zero page: the full scan)
 *   encode lz4       compress_page_encode with LZ4 (falls back to raw when
 *                    LZ4 saves under 1/8: random pages pay both)
 *   encode raw       compress_page_encode without LZ4 (the copy into the record)
 *   tls encrypt      SSL_write of the records through a memory BIO
 *                    (TLS_AES_128_GCM_SHA256, as transport/xport.c offers first)
 *   tls decrypt      BIO_write of that ciphertext and SSL_read of it into
 *                    256 KiB chunks, as the transport's receive thread does
 *   tcp loopback     send() and recv() of the bytes over 127.0.0.1, both
 *                    ends' CPU (what the kernel charges to move them)
 *   reassemble       stream_reader_feed of 256 KiB chunks and each record
 *                    into a buffer of its own, as the destination's loop
 *                    does: every byte copied once
 *   decode           compress_page_decode into memory already resident
 *   decode fresh     the same into memory just mapped (the destination's
 *                    first touch of its guest memory)
 *
 * Each figure is page bytes (4096 per page, before compression) per CPU
 * second of the one thread doing the stage (both threads for tcp): the
 * median and the best of RUNS runs. The same work can cost twice as much
 * from one run to the next where the host takes back memory the guest
 * freed (this one is a guest itself, with free page reporting) and gives
 * it again on the next fault. The
 * sums at the end, from the best runs, are the CPU a source and a destination spend per GiB
 * moved with pml-migrate's defaults (TLS, LZ4 where it pays) and with no
 * TLS and no compression (what QEMU does by default), and the rate that
 * two cores could move if they did nothing else: the ceiling of a
 * loopback migration on this machine, before the guest takes its share.
 * Ratios between stages carry to other machines better than the figures.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "bench/content.h"
#include "compress/compress.h"
#include "migrate/stream.h"

#define PAGE 4096u
#define BATCH 256u          /* pages per PAGES record, as the engine sends */
#define RX_CHUNK (256u << 10) /* the transport's plaintext chunk */

static double cpu_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
#define THREAD_CPU() cpu_s(CLOCK_THREAD_CPUTIME_ID)

/* Before each timed stage: this machine's host throttles a vCPU that has
 * been busy for a while, and the stage after a busy one then pays for it
 * (the same encryption took 3x the CPU time right after the encoders ran).
 * Each stage starts rested. */
static void rest(void)
{
	usleep(400000);
}

static void die(const char *what)
{
	fprintf(stderr, "stages: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static void *xmap(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		die("out of memory");
	madvise(p, n, MADV_HUGEPAGE); /* as the destination's guest memory */
	return p;
}

#define MAX_RUNS 15
struct row {
	const char *stage;
	double mbps[2][MAX_RUNS]; /* text, random: page MB per CPU second, per run */
	double med[2], best[2];
};
static struct row rows[16];
static unsigned nrows, run;

static void put(const char *stage, int random, double bytes, double secs)
{
	unsigned i;
	for (i = 0; i < nrows && strcmp(rows[i].stage, stage); i++)
		;
	if (i == nrows)
		rows[nrows++].stage = stage;
	rows[i].mbps[random][run] = secs > 0 ? bytes / secs / 1e6 : 0;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void medians(unsigned runs)
{
	for (unsigned i = 0; i < nrows; i++)
		for (int c = 0; c < 2; c++) {
			double v[MAX_RUNS];
			memcpy(v, rows[i].mbps[c], sizeof v);
			qsort(v, runs, sizeof v[0], cmp_d);
			rows[i].med[c] = runs % 2 ? v[runs / 2] : (v[runs / 2 - 1] + v[runs / 2]) / 2;
			rows[i].best[c] = v[runs - 1];
		}
}

/* The records an encoder makes of the set, LZ4 or raw, appended to out.
 * Each record is encoded into one buffer the encoder reuses, as the
 * engine's encoder does, and only that is timed: the append to out (the
 * set kept for the next stages) is not. Returns the CPU seconds. */
static double encode_all(const uint8_t *m, size_t pages, int lz4, struct stream_buf *out)
{
	struct stream_buf b = { 0 };
	size_t rec_max = STREAM_HDR_SIZE + 8 + BATCH * (STREAM_PAGE_ENTRY_HDR + COMPRESS_MAX_PAYLOAD);
	double cpu = 0;
	if (stream_buf_reserve(&b, rec_max))
		die("encode: out of memory");
	memset(b.p, 0, rec_max); /* resident, as a reused buffer is */
	out->len = 0;
	rest();
	for (size_t i = 0; i < pages; i += BATCH) {
		size_t mark;
		double t0 = THREAD_CPU();
		b.len = 0;
		if (stream_put_pages_begin(&b, &mark))
			die("encode: record");
		for (size_t k = i; k < i + BATCH && k < pages; k++) {
			uint8_t *slot = stream_page_slot(&b, COMPRESS_MAX_PAYLOAD);
			size_t len = 0;
			if (!slot)
				die("encode: out of memory");
			enum compress_codec c = compress_page_encode(m + k * PAGE, slot, &len, lz4);
			stream_page_done(&b, k, c, (uint32_t)len);
		}
		if (stream_put_pages_end(&b, mark))
			die("encode: record");
		cpu += THREAD_CPU() - t0;
		memcpy(out->p + out->len, b.p, b.len);
		out->len += b.len;
	}
	stream_buf_free(&b);
	return cpu;
}

/* ---- TLS: a client and a server joined by memory BIOs ---- */
static SSL_CTX *tls_ctx(int server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!ctx)
		die("SSL_CTX_new");
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
	if (server) {
		EVP_PKEY *k = EVP_EC_gen("P-256");
		X509 *x = X509_new();
		if (!k || !x)
			die("key");
		X509_set_version(x, 2);
		ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
		X509_gmtime_adj(X509_getm_notBefore(x), 0);
		X509_gmtime_adj(X509_getm_notAfter(x), 3600);
		X509_set_pubkey(x, k);
		X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"stages", -1, -1, 0);
		X509_set_issuer_name(x, X509_get_subject_name(x));
		if (!X509_sign(x, k, EVP_sha256()) || SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, k) != 1)
			die("certificate");
		X509_free(x);
		EVP_PKEY_free(k);
	}
	return ctx;
}

struct tls_pair {
	SSL *c, *s;
	BIO *c_out, *s_in; /* client writes into c_out; server reads s_in */
};

/* Moves whatever one side wrote to the other's input. */
static void pump(SSL *from, SSL *to)
{
	char buf[65536];
	int n;
	while ((n = BIO_read(SSL_get_wbio(from), buf, sizeof buf)) > 0)
		if (BIO_write(SSL_get_rbio(to), buf, n) != n)
			die("BIO_write");
}

static void tls_pair_new(struct tls_pair *t, SSL_CTX *cc, SSL_CTX *sc)
{
	t->c = SSL_new(cc);
	t->s = SSL_new(sc);
	if (!t->c || !t->s)
		die("SSL_new");
	SSL_set_bio(t->c, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_bio(t->s, BIO_new(BIO_s_mem()), BIO_new(BIO_s_mem()));
	SSL_set_connect_state(t->c);
	SSL_set_accept_state(t->s);
	for (int i = 0; i < 20 && !(SSL_is_init_finished(t->c) && SSL_is_init_finished(t->s)); i++) {
		SSL_do_handshake(t->c);
		pump(t->c, t->s);
		SSL_do_handshake(t->s);
		pump(t->s, t->c);
	}
	if (!SSL_is_init_finished(t->c) || !SSL_is_init_finished(t->s))
		die("TLS handshake");
	/* Tickets the server sent after the handshake: read them now. */
	char b;
	SSL_read(t->c, &b, 0);
	pump(t->c, t->s);
}

/* The client's output once the handshake is done: ciphertext straight
 * into one buffer, as the transport's own BIO writes it straight into its
 * send request (no memory BIO to grow and drain). */
struct sink {
	uint8_t *p;
	size_t n, cap;
};

static int sink_write(BIO *b, const char *p, size_t n, size_t *written)
{
	struct sink *k = BIO_get_data(b);
	if (k->cap - k->n < n)
		return 0;
	memcpy(k->p + k->n, p, n);
	k->n += n;
	*written = n;
	return 1;
}

static long sink_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b, (void)num, (void)ptr;
	return cmd == BIO_CTRL_FLUSH;
}

static int sink_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

/* Encrypts rec (SSL_write of 1 MiB at a time, as an encoder hands over a
 * record) and decrypts it again (BIO_write of 256 KiB of ciphertext, as
 * the socket gives it, and SSL_read into 256 KiB chunks, as the
 * transport's receive thread does). */
static void tls_stage(SSL_CTX *cc, SSL_CTX *sc, const struct stream_buf *rec, double page_bytes, int random,
		      const char *enc_name, const char *dec_name)
{
	struct tls_pair t;
	tls_pair_new(&t, cc, sc);
	static uint8_t *ct, *chunk;
	static size_t cap;
	size_t clen = 0;
	if (cap < rec->len + rec->len / 8 + (1u << 20)) {
		/* Once, and kept resident: the transport's buffers are reused. */
		free(ct);
		cap = rec->len + rec->len / 8 + (1u << 20);
		ct = malloc(cap);
		chunk = chunk ? chunk : malloc(RX_CHUNK);
		if (!ct || !chunk)
			die("out of memory");
		memset(ct, 0xa5, cap); /* not 0: malloc and memset 0 may become calloc */
	}
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "stages sink");
	struct sink k = { .p = ct, .cap = cap };
	BIO *out = m && BIO_meth_set_write_ex(m, sink_write) && BIO_meth_set_ctrl(m, sink_ctrl) &&
			   BIO_meth_set_create(m, sink_create) ? BIO_new(m) : NULL;
	if (!out)
		die("BIO");
	BIO_set_data(out, &k);
	BIO_up_ref(SSL_get_rbio(t.c));
	SSL_set_bio(t.c, SSL_get_rbio(t.c), out);
	rest();
	double t0 = THREAD_CPU();
	for (size_t off = 0; off < rec->len;) {
		size_t n = rec->len - off < (1u << 20) ? rec->len - off : (1u << 20);
		if (SSL_write(t.c, rec->p + off, (int)n) != (int)n)
			die("SSL_write");
		off += n;
	}
	clen = k.n;
	double t1 = THREAD_CPU();
	size_t got = 0;
	rest();
	t1 = THREAD_CPU();
	for (size_t off = 0; off < clen;) {
		size_t n = clen - off < (256u << 10) ? clen - off : (256u << 10);
		if (BIO_write(SSL_get_rbio(t.s), ct + off, (int)n) != (int)n)
			die("BIO_write");
		off += n;
		int r;
		while ((r = SSL_read(t.s, chunk, RX_CHUNK)) > 0)
			got += (size_t)r;
	}
	double t2 = THREAD_CPU();
	if (got != rec->len)
		die("TLS: decrypted length differs");
	put(enc_name, random, page_bytes, t1 - t0);
	put(dec_name, random, page_bytes, t2 - t1);
	SSL_free(t.c);
	SSL_free(t.s);
	BIO_meth_free(m);
}

/* ---- TCP over loopback: both ends' CPU ---- */
struct rx_arg {
	int fd;
	size_t want;
	double cpu;
};

static void *tcp_rx(void *arg)
{
	struct rx_arg *a = arg;
	uint8_t *buf = malloc(RX_CHUNK);
	size_t got = 0;
	double t0 = THREAD_CPU();
	while (buf && got < a->want) {
		ssize_t r = recv(a->fd, buf, RX_CHUNK, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	a->cpu = THREAD_CPU() - t0;
	free(buf);
	if (got != a->want)
		die("tcp: short receive");
	return NULL;
}

static void tcp_stage(const struct stream_buf *rec, double page_bytes, int random, const char *name)
{
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&a, &al) || connect(c, (struct sockaddr *)&a, sizeof a))
		die("tcp: loopback socket");
	struct rx_arg rx = { .fd = accept(l, NULL, NULL), .want = rec->len };
	pthread_t th;
	rest();
	if (rx.fd < 0 || pthread_create(&th, NULL, tcp_rx, &rx))
		die("tcp: accept");
	double t0 = THREAD_CPU();
	for (size_t off = 0; off < rec->len;) {
		ssize_t w = send(c, rec->p + off, rec->len - off < (256u << 10) ? rec->len - off : (256u << 10), 0);
		if (w <= 0)
			die("tcp: send");
		off += (size_t)w;
	}
	double tx = THREAD_CPU() - t0;
	pthread_join(th, NULL);
	put(name, random, page_bytes, tx + rx.cpu);
	close(c);
	close(rx.fd);
	close(l);
}

/* ---- the destination: records back, pages decoded ---- */
struct dec {
	uint8_t *mem;
	size_t pages;
	int decode; /* 0: only count records (reassembly alone) */
	size_t records;
};

static int dec_page(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	struct dec *d = opaque;
	return compress_page_decode(codec, data, len, d->mem + gfn * PAGE);
}

static int dec_record(void *opaque, const struct stream_record *rec)
{
	struct dec *d = opaque;
	d->records++;
	if (!d->decode)
		return 0;
	return stream_parse_pages(rec, d->pages, dec_page, d);
}

/* As the destination's loop does with each record (migrate/dest-lanes.c):
 * one the reader assembled is taken whole and a recycled buffer given
 * back; one that came whole inside a chunk is copied into the job. */
struct rebuild {
	struct stream_reader *r;
	uint8_t *job; /* reused: the best case for the copy */
};

static int rebuild_record(void *opaque, const struct stream_record *rec)
{
	struct rebuild *b = opaque;
	size_t cap;
	void *buf = stream_reader_take(b->r, rec, &cap);
	if (buf)
		stream_reader_give(b->r, buf, cap);
	else
		memcpy(b->job, rec->payload, rec->len);
	return 0;
}

/* Feeds rec in 256 KiB chunks, as the transport hands plaintext over,
 * and rebuilds each record in a buffer of its own. */
static double feed(const struct stream_buf *rec)
{
	struct stream_reader r;
	struct rebuild b = { .r = &r, .job = malloc(STREAM_MAX_RECORD) };
	stream_reader_init(&r);
	if (!b.job)
		die("out of memory");
	memset(b.job, 0xa5, STREAM_MAX_RECORD);
	rest();
	double t0 = THREAD_CPU();
	for (size_t off = 0; off < rec->len; off += RX_CHUNK) {
		size_t n = rec->len - off < RX_CHUNK ? rec->len - off : RX_CHUNK;
		if (stream_reader_feed(&r, rec->p + off, n, rebuild_record, &b))
			die("stream: a record was refused");
	}
	double t = THREAD_CPU() - t0;
	stream_reader_free(&r);
	free(b.job);
	return t;
}

/* The decode alone: each record parsed in place and its pages decoded. */
static double decode_only(const struct stream_buf *rec, struct dec *d)
{
	rest();
	double t0 = THREAD_CPU();
	for (size_t off = 0; off < rec->len;) {
		uint32_t len;
		memcpy(&len, rec->p + off + 4, 4);
		struct stream_record r = { .type = STREAM_PAGES, .len = len, .payload = rec->p + off + STREAM_HDR_SIZE };
		if (dec_record(d, &r))
			die("decode: a page was refused");
		off += STREAM_HDR_SIZE + len;
	}
	return THREAD_CPU() - t0;
}

/* The stages after encoding, for one kind of records (kind: "lz4" or
 * "raw"): each stage's row is named "STAGE (KIND)". */
static const char *const after_stages[] = { "tls encrypt", "tls decrypt", "tcp loopback", "reassemble", "decode fresh", "decode" };
#define NAFTER (sizeof(after_stages) / sizeof(after_stages[0]))
static char after_names[2][NAFTER][40];

static void after(SSL_CTX *cc, SSL_CTX *sc, const struct stream_buf *rec, int kind, const uint8_t *src, uint8_t *dst,
		  size_t pages, int random)
{
	double pb = (double)pages * PAGE;
	for (unsigned k = 0; k < NAFTER; k++)
		snprintf(after_names[kind][k], sizeof after_names[kind][k], "%s (%s)", after_stages[k], kind ? "raw" : "lz4");
	tls_stage(cc, sc, rec, pb, random, after_names[kind][0], after_names[kind][1]);
	tcp_stage(rec, pb, random, after_names[kind][2]);
	struct dec d = { .mem = dst, .pages = pages, .decode = 1 };
	put(after_names[kind][3], random, pb, feed(rec));
	/* First into memory given back (a fresh mapping's first touch), then
	 * the same again into the now resident memory. */
	madvise(dst, pages * PAGE, MADV_DONTNEED);
	put(after_names[kind][4], random, pb, decode_only(rec, &d));
	put(after_names[kind][5], random, pb, decode_only(rec, &d));
	if (memcmp(dst, src, pages * PAGE))
		die("decode: the pages differ from the source's");
}

static double per_gib(const char *stage, int random)
{
	for (unsigned i = 0; i < nrows; i++)
		if (!strcmp(rows[i].stage, stage))
			return rows[i].best[random] > 0 ? 1073.741824 / rows[i].best[random] : 0;
	die("no such stage");
	return 0;
}

int main(int argc, char **argv)
{
	size_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 256;
	unsigned runs = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 5;
	if (argc > 3 || mib < 16 || mib > 65536 || runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "usage: bench/stages [MIB [RUNS]]   (MIB 16..65536, default 256; RUNS 1..%u, default 5)\n", MAX_RUNS);
		return 2;
	}
	size_t pages = mib << 8, bytes = mib << 20;
	double pb = (double)bytes;
	uint8_t *src = xmap(bytes), *zero = xmap(bytes), *dst = xmap(bytes);
	memset(zero, 0, bytes); /* resident zero pages, so the scan reads memory */
	SSL_CTX *cc = tls_ctx(0), *sc = tls_ctx(1);
	/* The encoded sets, allocated once and kept resident: only the stage
	 * named fresh is to meet memory the process has not touched. */
	struct stream_buf lz = { 0 }, raw = { 0 };
	size_t set_max = (pages / BATCH + 1) * (STREAM_HDR_SIZE + 8 + BATCH * (STREAM_PAGE_ENTRY_HDR + COMPRESS_MAX_PAYLOAD));
	if (stream_buf_reserve(&lz, set_max) || stream_buf_reserve(&raw, set_max))
		die("out of memory");
	memset(lz.p, 0xa5, set_max);
	memset(raw.p, 0xa5, set_max);

	for (run = 0; run < runs; run++) {
		rest();
		double t0 = THREAD_CPU();
		size_t nz = 0;
		for (size_t i = 0; i < pages; i++)
			nz += compress_is_zero(zero + i * PAGE);
		put("zero-detect (a zero page)", 0, pb, THREAD_CPU() - t0);
		rows[0].mbps[1][run] = rows[0].mbps[0][run]; /* the content does not matter: it is zero */
		if (nz != pages)
			die("zero-detect: a zero page was not seen as zero");

		for (int random = 0; random < 2; random++) {
			bench_fill_pages(src, pages, random);
			put("encode lz4", random, pb, encode_all(src, pages, 1, &lz));
			put("encode raw", random, pb, encode_all(src, pages, 0, &raw));
			if (!run)
				fprintf(stderr, "stages: %s: %zu MiB of pages make %.1f MiB of LZ4 records, %.1f MiB of raw ones\n",
					random ? "random" : "text", mib, (double)lz.len / (1 << 20), (double)raw.len / (1 << 20));
			after(cc, sc, &lz, 0, src, dst, pages, random);
			after(cc, sc, &raw, 1, src, dst, pages, random);
		}
	}
	medians(runs);

	printf("Page bytes (before compression) per CPU second of the thread doing the stage,\n"
	       "over %zu MiB of each content, %u runs: the median and the best run. \"(lz4)\"\n"
	       "stages carry LZ4 records (random pages in them are raw: LZ4 did not pay),\n"
	       "\"(raw)\" ones records of raw pages.\n\n", mib, runs);
	printf("| stage | text MB/CPU-s | text, best | random MB/CPU-s | random, best |\n| --- | --- | --- | --- | --- |\n");
	for (unsigned i = 0; i < nrows; i++)
		printf("| %s | %.0f | %.0f | %.0f | %.0f |\n", rows[i].stage, rows[i].med[0], rows[i].best[0], rows[i].med[1],
		       rows[i].best[1]);

	/* The paths: the stages a page goes through at each end. The tcp row
	 * is both ends' CPU: half is put at each. Zero detection is left out:
	 * on a page that is not zero it stops at the first non-zero word. */
	static const struct {
		const char *name;
		int lz4, tls;
	} paths[] = {
		{ "TLS, LZ4 (pml-migrate's default)", 1, 1 },
		{ "TLS, raw (pml-migrate --compress off)", 0, 1 },
		{ "plain TCP, raw (QEMU's default)", 0, 0 },
	};
	printf("\nCPU seconds per GiB of pages moved at each end, from each stage's best run,\n"
	       "and the rate two cores doing nothing else would move: the ceiling of a\n"
	       "loopback migration on this machine, before the guest takes its share.\n\n");
	printf("| path | content | source CPU-s/GiB | destination CPU-s/GiB | ceiling MB/s |\n| --- | --- | --- | --- | --- |\n");
	for (unsigned p = 0; p < sizeof paths / sizeof paths[0]; p++)
		for (int random = 0; random < 2; random++) {
			const char *k = paths[p].lz4 ? "lz4" : "raw";
			char n[64];
#define G(stage) (snprintf(n, sizeof n, "%s (%s)", stage, k), per_gib(n, random))
			double tcp = G("tcp loopback") / 2;
			double s = per_gib(paths[p].lz4 ? "encode lz4" : "encode raw", random) + tcp;
			double d = tcp + G("reassemble") + G("decode fresh");
			if (paths[p].tls) {
				s += G("tls encrypt");
				d += G("tls decrypt");
			}
#undef G
			printf("| %s | %s | %.3f | %.3f | %.0f |\n", paths[p].name, random ? "random" : "text", s, d,
			       2 * 1073.741824 / (s + d));
		}
	stream_buf_free(&lz);
	stream_buf_free(&raw);
	SSL_CTX_free(cc);
	SSL_CTX_free(sc);
	return 0;
}
