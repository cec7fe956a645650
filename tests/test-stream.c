/*
 * Stream records: every type round-trips through the reader whatever the
 * chunking; hostile input is refused with the right error: unknown type,
 * oversized length (before its payload arrives), truncated records, frame
 * numbers outside memory, unknown codecs, bad lengths, garbage before the
 * handshake, an LZ4 payload that decodes to the wrong size.
 * With --seeds DIR it writes valid streams as a fuzzing corpus instead;
 * with --hostile KIND it writes one hostile stream to stdout for the
 * agent tests (tests/test-migrate-faults.sh).
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include "compress/compress.h"
#include "migrate/stream.h"
#include "tests/tap.h"

struct seen {
	int n;
	uint16_t types[64];
	uint64_t gfns[64];
	int pages;
	int page_ok;
	struct stream_hello hello;
	struct stream_shape shape;
	char err[64];
};

static uint8_t page_in[4096] __attribute__((aligned(8)));

static int each(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	struct seen *s = opaque;
	static uint8_t out[4096];
	if (compress_page_decode(codec, data, len, out) == 0 &&
	    (codec == COMPRESS_ZERO ? out[0] == 0 : !memcmp(out, page_in, 4096)))
		s->page_ok++;
	if (s->pages < 64)
		s->gfns[s->pages] = gfn;
	s->pages++;
	return 0;
}

static int on_rec(void *opaque, const struct stream_record *rec)
{
	struct seen *s = opaque;
	uint32_t code;
	if (s->n < 64)
		s->types[s->n] = rec->type;
	s->n++;
	switch (rec->type) {
	case STREAM_HELLO: return stream_parse_hello(rec, &s->hello);
	case STREAM_SHAPE: return stream_parse_shape(rec, &s->shape);
	case STREAM_PAGES: return stream_parse_pages(rec, s->shape.mem_bytes >> 12, each, s);
	case STREAM_ERROR: return stream_parse_error(rec, &code, s->err, sizeof(s->err));
	default: return 0;
	}
}

struct take {
	unsigned records;
	void *taken, *last; /* the first and the latest buffer taken */
	size_t cap;
	int last_null;      /* the latest record could not be taken */
};

static struct stream_reader *take_reader;

static int take_rec(void *opaque, const struct stream_record *rec)
{
	struct take *t = opaque;
	size_t cap = 0;
	void *p = stream_reader_take(take_reader, rec, &cap);
	t->records++;
	t->last_null = !p;
	if (p) {
		if (!t->taken)
			t->taken = p;
		t->last = p;
		t->cap = cap;
	}
	return 0;
}

static void build_valid(struct stream_buf *b)
{
	struct stream_shape sh = { .mem_bytes = 64ull << 20, .vcpus = 2, .tsc_khz = 2450000, .dirty_log = 1 };
	struct stream_round_end re = { .round = 1, .pages = 3, .bytes = 5000, .remaining = 7 };
	uint8_t enc[4096], zero[4096] = { 0 };
	size_t len, mark;
	const char *w = "abcabcabd ";
	for (int i = 0; i < 4096; i++)
		page_in[i] = (uint8_t)w[i % 10];
	stream_put_hello(b, 0x3, "vm-1");
	stream_put_shape(b, &sh);
	stream_put_pages_begin(b, &mark);
	unsigned c = compress_page_encode(page_in, enc, &len, 1);
	stream_put_page(b, 5, c, enc, (uint32_t)len);
	c = compress_page_encode(page_in, enc, &len, 0);
	stream_put_page(b, 16383, c, enc, (uint32_t)len);
	c = compress_page_encode(zero, enc, &len, 1);
	stream_put_page(b, 0, c, enc, (uint32_t)len);
	stream_put_pages_end(b, mark);
	stream_put_round_end(b, &re);
	stream_put_vcpu(b, 1, "state", 5);
	stream_put_state_done(b, 3);
	stream_put_empty(b, STREAM_READY);
	stream_put_empty(b, STREAM_COMMIT);
	stream_put_empty(b, STREAM_RUNNING);
	stream_put_error(b, 5, "bad\nthing");
}

static int feed_chunked(const uint8_t *p, size_t n, size_t chunk, struct seen *s, size_t *pending)
{
	struct stream_reader r;
	int e = 0;
	stream_reader_init(&r);
	for (size_t off = 0; off < n && !e; off += chunk)
		e = stream_reader_feed(&r, p + off, off + chunk < n ? chunk : n - off, on_rec, s);
	if (pending)
		*pending = r.b.len;
	stream_reader_free(&r);
	return e;
}

/* Feeds a valid HELLO+SHAPE, then tail. */
static int feed_after_shape(const uint8_t *tail, size_t n, struct seen *s)
{
	struct stream_buf b = { 0 };
	struct stream_shape sh = { .mem_bytes = 64ull << 20, .vcpus = 1 };
	stream_put_hello(&b, 0, "x");
	stream_put_shape(&b, &sh);
	if (b.cap - b.len < n) {
		b.p = realloc(b.p, b.len + n);
		b.cap = b.len + n;
	}
	memcpy(b.p + b.len, tail, n);
	b.len += n;
	memset(s, 0, sizeof(*s));
	int e = feed_chunked(b.p, b.len, 7, s, NULL);
	stream_buf_free(&b);
	return e;
}

static void write_seeds(const char *dir)
{
	struct stream_buf b = { 0 };
	char path[512];
	build_valid(&b);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/seed%d", dir, i);
		FILE *f = fopen(path, "wb");
		if (!f)
			exit(1);
		uint8_t chunk = (uint8_t)(i * 20);
		fwrite(&chunk, 1, 1, f);
		fwrite(b.p, 1, b.len, f);
		fclose(f);
	}
	stream_buf_free(&b);
}

/* A stream that opens like a real migration (HELLO, SHAPE of 64 MiB,
 * JOIN) and then goes wrong in the named way. */
static int write_hostile(const char *kind)
{
	struct stream_buf b = { 0 };
	struct stream_shape sh = { .mem_bytes = 64ull << 20, .vcpus = 1, .dirty_log = 1 };
	struct stream_join j = { .index = 0, .count = 1 };
	static uint8_t page[4096];
	char name[64];
	size_t mark;

	if (!strcmp(kind, "garbage")) {
		fputs("GET / HTTP/1.1\r\nHost: agent\r\n\r\n", stdout);
		return 0;
	}
	snprintf(name, sizeof(name), "hostile-%s", kind);
	if (!strcmp(kind, "dashname"))
		snprintf(name, sizeof(name), "-rf");
	stream_put_hello(&b, 0, name);
	if (!strcmp(kind, "badname"))
		b.p[b.len - 1] = '/'; /* "hostile-badnam/" */
	stream_put_shape(&b, &sh);
	stream_put_join(&b, &j);
	if (!strcmp(kind, "dashname") || !strcmp(kind, "badname") || !strcmp(kind, "silent")) {
		fwrite(b.p, 1, b.len, stdout);
		stream_buf_free(&b);
		return 0;
	}
	if (!strcmp(kind, "verifyflood")) {
		/* The same chunks again and again: must be refused at the second. */
		static uint64_t dg[32];
		for (int i = 0; i < 64; i++)
			stream_put_verify(&b, 0, 32, dg);
		fwrite(b.p, 1, b.len, stdout);
		stream_buf_free(&b);
		return 0;
	}
	if (!strcmp(kind, "overannounce")) {
		/* Announces pages it never sends, then keeps the connection open. */
		stream_put_state_done(&b, 5);
		fwrite(b.p, 1, b.len, stdout);
		stream_buf_free(&b);
		return 0;
	}
	if (!strcmp(kind, "oversized")) {
		uint8_t h[8] = { STREAM_PAGES, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f };
		fwrite(b.p, 1, b.len, stdout);
		fwrite(h, 1, sizeof(h), stdout);
		stream_buf_free(&b);
		return 0;
	}
	stream_put_pages_begin(&b, &mark);
	if (!strcmp(kind, "badgfn")) {
		stream_put_page(&b, sh.mem_bytes >> 12, COMPRESS_ZERO, NULL, 0);
	} else if (!strcmp(kind, "badcodec")) {
		stream_put_page(&b, 1, COMPRESS_ZERO, NULL, 0);
		b.p[b.len - 4] = 7; /* the entry's codec byte */
	} else if (!strcmp(kind, "lz4size")) {
		char out[256];
		int n = LZ4_compress_default((const char *)page, out, 100, (int)sizeof(out));
		stream_put_page(&b, 1, COMPRESS_LZ4, out, (uint32_t)n);
	} else if (!strcmp(kind, "truncated")) {
		memset(page, 0xab, sizeof(page));
		stream_put_page(&b, 1, COMPRESS_RAW, page, sizeof(page));
		stream_put_pages_end(&b, mark);
		fwrite(b.p, 1, b.len - 2000, stdout);
		stream_buf_free(&b);
		return 0;
	} else {
		fprintf(stderr, "unknown hostile kind '%s'\n", kind);
		stream_buf_free(&b);
		return 2;
	}
	stream_put_pages_end(&b, mark);
	fwrite(b.p, 1, b.len, stdout);
	stream_buf_free(&b);
	return 0;
}

int main(int argc, char **argv)
{
	struct stream_buf b = { 0 };
	struct seen s;
	if (argc == 3 && !strcmp(argv[1], "--seeds")) {
		write_seeds(argv[2]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "--hostile"))
		return write_hostile(argv[2]);
	tap_plan(35);
	build_valid(&b);
	int all = 1;
	for (size_t chunk = 1; chunk <= b.len; chunk = chunk * 3 + 1) {
		memset(&s, 0, sizeof(s));
		size_t pend = 0;
		int e = feed_chunked(b.p, b.len, chunk, &s, &pend);
		if (!(e == 0 && s.n == 10 && s.pages == 3 && s.page_ok == 3 && pend == 0)) tap_diag("chunk %zu: e=%d n=%d pages=%d ok=%d pend=%zu", chunk, e, s.n, s.pages, s.page_ok, pend);
		all &= e == 0 && s.n == 10 && s.pages == 3 && s.page_ok == 3 && pend == 0 && s.gfns[1] == 16383;
	}
	tap_ok(all, "10 records, one of every type, round-trip at every chunk size (1..%zu bytes)", b.len);
	tap_ok(!strcmp(s.hello.name, "vm-1") && s.shape.vcpus == 2 && s.shape.tsc_khz == 2450000,
	       "hello and shape fields intact");
	tap_ok(!strcmp(s.err, "bad?thing"), "error text is sanitized: '%s'", s.err);

	/* Truncated: the last record never completes and is not delivered. */
	memset(&s, 0, sizeof(s));
	size_t pend = 0;
	int e = feed_chunked(b.p, 60, 5, &s, &pend);
	tap_ok(e == 0 && s.n == 1 && pend == 32, "truncated stream: 1 complete record, %zu bytes held back", pend);

	uint8_t hdr[8] = { 3, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f };
	memset(&s, 0, sizeof(s));
	tap_ok(feed_chunked(hdr, 8, 8, &s, NULL) == -E2BIG && s.n == 0, "oversized length refused before its payload");
	uint8_t unk[8] = { 77, 0, 0, 0, 0, 0, 0, 0 };
	tap_ok(feed_chunked(unk, 8, 3, &s, NULL) == -EPROTO, "unknown record type refused");
	{
		/* Feeding on after a refusal keeps refusing (no trust in the bad header). */
		struct stream_reader rd;
		uint8_t more[64] = { 0 };
		stream_reader_init(&rd);
		int e1 = stream_reader_feed(&rd, hdr, 5, on_rec, &s);
		int e2 = stream_reader_feed(&rd, hdr + 5, 3, on_rec, &s);
		int e3 = stream_reader_feed(&rd, more, sizeof(more), on_rec, &s);
		stream_reader_free(&rd);
		tap_ok(e1 == 0 && e2 == -E2BIG && e3 == -E2BIG, "a refused stream stays refused (%d, %d, %d)", e1, e2, e3);
	}
	const char *garbage = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	memset(&s, 0, sizeof(s));
	e = feed_chunked((const uint8_t *)garbage, strlen(garbage), 4, &s, NULL);
	tap_ok(e == -EPROTO || e == -E2BIG, "garbage before the handshake refused (%d)", e);
	uint8_t badhello[8 + 16] = { 1, 0, 0, 0, 16, 0, 0, 0, 'N', 'O', 'P', 'E' };
	memset(&s, 0, sizeof(s));
	tap_ok(feed_chunked(badhello, sizeof(badhello), 24, &s, NULL) == -EPROTO, "hello with wrong magic refused");

	/* PAGES records with one bad field each. */
	struct {
		uint8_t h[8];
		uint32_t count, pad;
		uint64_t gfn;
		uint32_t len;
		uint8_t codec, z[3];
		uint8_t data[4096];
	} __attribute__((packed)) pg;
#define PG(gfn_, codec_, len_)                                                    \
	do {                                                                      \
		memset(&pg, 0, sizeof(pg));                                       \
		pg.h[0] = 3;                                                      \
		uint32_t l_ = 8 + 16 + (len_);                                    \
		memcpy(pg.h + 4, &l_, 4);                                         \
		pg.count = 1;                                                     \
		pg.gfn = (gfn_);                                                  \
		pg.codec = (codec_);                                              \
		pg.len = (len_);                                                  \
	} while (0)
	PG(16384, COMPRESS_RAW, 4096);
	tap_ok(feed_after_shape((uint8_t *)&pg, 8 + 24 + 4096, &s) == -ERANGE, "frame number outside memory refused");
	PG(1, 9, 4096);
	tap_ok(feed_after_shape((uint8_t *)&pg, 8 + 24 + 4096, &s) == -EPROTO, "unknown codec refused");
	PG(1, COMPRESS_RAW, 100);
	tap_ok(feed_after_shape((uint8_t *)&pg, 8 + 24 + 100, &s) == -EPROTO, "raw page of 100 bytes refused");
	PG(1, COMPRESS_ZERO, 0);
	pg.count = 2;
	tap_ok(feed_after_shape((uint8_t *)&pg, 8 + 24, &s) == -EPROTO, "count larger than the entries refused");
	PG(1, COMPRESS_ZERO, 0);
	pg.count = 300;
	tap_ok(feed_after_shape((uint8_t *)&pg, 8 + 24, &s) == -EPROTO, "count above the batch limit refused");
	PG(1, COMPRESS_ZERO, 0);
	pg.z[1] = 1;
	tap_ok(feed_after_shape((uint8_t *)&pg, 8 + 24, &s) == -EPROTO, "non-zero reserved bytes refused");

	/* A valid LZ4 block of 2048 bytes where a page (4096) is expected:
	 * the record is well formed, the decoder refuses it. */
	static char half[2048];
	memset(half, 'q', sizeof(half));
	int n = LZ4_compress_default(half, (char *)pg.data, 2048, 4096);
	PG(1, COMPRESS_LZ4, (uint32_t)n);
	n = LZ4_compress_default(half, (char *)pg.data, 2048, 4096);
	uint8_t out[4096];
	tap_ok(compress_page_decode(COMPRESS_LZ4, pg.data, (size_t)n, out) == -EINVAL,
	       "LZ4 payload that decodes to 2048 bytes refused by the decoder");

	struct stream_shape bad = { .mem_bytes = 3ull << 20, .vcpus = 1 };
	struct stream_buf sb = { 0 };
	stream_put_shape(&sb, &bad);
	struct stream_record rec = { .type = STREAM_SHAPE, .len = 32, .payload = sb.p + 8 };
	struct stream_shape got;
	tap_ok(stream_parse_shape(&rec, &got) == -EPROTO, "shape with memory not a multiple of 2 MiB refused");
	stream_buf_free(&sb);
	stream_buf_free(&b);

	/* JOIN and VERIFY (multi-stream and --verify) */
	{
		struct stream_buf jb = { 0 };
		struct stream_join jw = { .token = 0x1234567890abcdefull, .index = 2, .port = 4567, .count = 3 }, jr;
		stream_put_join(&jb, &jw);
		struct stream_record r2 = { .type = STREAM_JOIN, .len = (uint32_t)jb.len - 8, .payload = jb.p + 8 };
		tap_ok(stream_parse_join(&r2, &jr) == 0 && jr.token == jw.token && jr.index == 2 && jr.port == 4567 &&
			       jr.count == 3,
		       "JOIN round-trips");
		jb.p[8 + 8] = 3; /* index == count */
		tap_ok(stream_parse_join(&r2, &jr) == -EPROTO, "JOIN with index >= count refused");
		stream_buf_free(&jb);
		uint64_t dg[3] = { 1, 2, 3 }, first;
		uint32_t count;
		const uint8_t *dp;
		stream_put_verify(&jb, 1, 3, dg);
		struct stream_record r3 = { .type = STREAM_VERIFY, .len = (uint32_t)jb.len - 8, .payload = jb.p + 8 };
		/* 64 MiB = 16384 frames = 32 chunks: chunks 1..3 fit, 30..32 do not */
		tap_ok(stream_parse_verify(&r3, 16384, &first, &count, &dp) == 0 && first == 1 && count == 3,
		       "VERIFY round-trips");
		uint64_t far = 30;
		memcpy(jb.p + 8, &far, 8);
		tap_ok(stream_parse_verify(&r3, 16384, &first, &count, &dp) == -ERANGE, "VERIFY past memory refused");
		stream_buf_free(&jb);
	}

	/* RESUME and ACK (a lost link resumed) */
	{
		struct stream_buf rb = { 0 };
		struct stream_resume rw = { .token = 0xfeedfacecafebeefull, .index = 1, .count = 2, .epoch = 3 }, rr;
		stream_put_resume(&rb, &rw);
		struct stream_record r4 = { .type = STREAM_RESUME, .len = (uint32_t)rb.len - 8, .payload = rb.p + 8 };
		tap_ok(stream_parse_resume(&r4, &rr) == 0 && rr.token == rw.token && rr.index == 1 && rr.count == 2 &&
			       rr.epoch == 3,
		       "RESUME round-trips");
		rb.p[8 + 16] = 0; /* epoch 0: no attempt is numbered 0 */
		tap_ok(stream_parse_resume(&r4, &rr) == -EPROTO, "RESUME with epoch 0 refused");
		stream_buf_free(&rb);
		struct stream_ack aw = { .index = 3, .records = 123456789 }, ar;
		stream_put_ack(&rb, &aw);
		struct stream_record r5 = { .type = STREAM_ACK, .len = (uint32_t)rb.len - 8, .payload = rb.p + 8 };
		tap_ok(stream_parse_ack(&r5, &ar) == 0 && ar.index == 3 && ar.records == 123456789, "ACK round-trips");
		rb.p[8] = 16;
		tap_ok(stream_parse_ack(&r5, &ar) == -EPROTO, "ACK for connection 16 refused");
		stream_buf_free(&rb);
	}
	/* CHECKPOINT and SEAL (on disk only: docs/checkpoint.md) */
	{
		struct stream_buf cb = { 0 };
		struct stream_checkpoint cw = { .seq = 3, .parent_seq = 2, .id = 0x1234, .parent_id = 0x99,
						.start_ns = 1ull << 60 }, cr;
		stream_put_checkpoint(&cb, &cw);
		struct stream_record r6 = { .type = STREAM_CHECKPOINT, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		tap_ok(stream_parse_checkpoint(&r6, &cr) == 0 && cr.seq == 3 && cr.parent_seq == 2 && cr.id == 0x1234 &&
			       cr.parent_id == 0x99 && cr.start_ns == 1ull << 60,
		       "CHECKPOINT round-trips");
		uint32_t four = 4;
		memcpy(cb.p + 8 + 4, &four, 4); /* the parent after the child */
		int e1 = stream_parse_checkpoint(&r6, &cr);
		memset(cb.p + 8 + 16, 0, 8); /* a full image naming a parent */
		int e2 = stream_parse_checkpoint(&r6, &cr);
		tap_ok(e1 == -EPROTO && e2 == -EPROTO, "CHECKPOINT with a parent numbered after it, or a full image "
						       "with a parent number, refused");
		stream_buf_free(&cb);
		struct stream_seal sw = { .records = 7, .bytes = 4096, .paused_ns = 5, .pause_ns = 6 }, sr;
		memset(sw.sha256, 0xab, sizeof(sw.sha256));
		stream_put_seal(&cb, &sw);
		struct stream_record r7 = { .type = STREAM_SEAL, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		tap_ok(cb.len == STREAM_SEAL_RECORD && stream_parse_seal(&r7, &sr) == 0 && sr.records == 7 &&
			       sr.bytes == 4096 && sr.pause_ns == 6 && !memcmp(sr.sha256, sw.sha256, 32),
		       "SEAL round-trips, %zu bytes", cb.len);
		stream_buf_free(&cb);
		struct stream_capacity kw = { .mem_total = 8ull << 30, .mem_available = 5ull << 30, .sessions = 2,
					      .max_sessions = 16, .hv = STREAM_HV_KVM }, kr;
		stream_put_capacity(&cb, &kw);
		struct stream_record r8 = { .type = STREAM_CAPACITY, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		int ok1 = stream_parse_capacity(&r8, &kr) == 0 && kr.mem_total == kw.mem_total &&
			  kr.mem_available == kw.mem_available && kr.sessions == 2 && kr.max_sessions == 16 && kr.hv == 0;
		uint32_t many = 17;
		memcpy(cb.p + 8 + 16, &many, 4); /* more sessions than slots */
		tap_ok(ok1 && stream_parse_capacity(&r8, &kr) == -EPROTO,
		       "CAPACITY round-trips; more sessions than its maximum refused");
		stream_buf_free(&cb);
		struct stream_probe_done pw = { .bytes = 123456789, .ns = 987654321 }, pr;
		stream_put_probe_done(&cb, &pw);
		struct stream_record r9 = { .type = STREAM_PROBE_DONE, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		int ok2 = stream_parse_probe_done(&r9, &pr) == 0 && pr.bytes == pw.bytes && pr.ns == pw.ns;
		stream_buf_free(&cb);
		static uint8_t big[STREAM_MAX_PROBE + 1];
		int e3 = stream_put_probe(&cb, big, STREAM_MAX_PROBE);
		size_t l3 = cb.len;
		stream_buf_free(&cb);
		tap_ok(ok2 && e3 == 0 && l3 == STREAM_HDR_SIZE + STREAM_MAX_PROBE &&
			       stream_put_probe(&cb, big, STREAM_MAX_PROBE + 1) == -E2BIG,
		       "PROBE_DONE round-trips; a PROBE holds up to 1 MiB of filler, no more");
		stream_buf_free(&cb);
		struct stream_resolve vw = { .token = 0xfeedull, .decision = STREAM_DECIDE_COMMIT }, vr;
		stream_put_resolve(&cb, &vw);
		struct stream_record r10 = { .type = STREAM_RESOLVE, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		int ok3 = stream_parse_resolve(&r10, &vr) == 0 && vr.token == 0xfeedull && vr.decision == STREAM_DECIDE_COMMIT;
		cb.p[8 + 8] = 3; /* no such decision */
		int e4 = stream_parse_resolve(&r10, &vr);
		cb.p[8 + 8] = STREAM_DECIDE_ABORT;
		memset(cb.p + 8, 0, 8); /* no token */
		int e5 = stream_parse_resolve(&r10, &vr);
		stream_buf_free(&cb);
		struct stream_resolved dr;
		stream_put_resolved(&cb, STREAM_OUTCOME_NONE, "destroyed\nhere");
		struct stream_record r11 = { .type = STREAM_RESOLVED, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		int ok4 = stream_parse_resolved(&r11, &dr) == 0 && dr.outcome == STREAM_OUTCOME_NONE &&
			  !strcmp(dr.text, "destroyed?here");
		uint32_t bad = 9;
		memcpy(cb.p + 8, &bad, 4);
		tap_ok(ok3 && e4 == -EPROTO && e5 == -EPROTO && ok4 && stream_parse_resolved(&r11, &dr) == -EPROTO,
		       "RESOLVE and RESOLVED round-trip; an unknown decision or outcome, or no token, refused");
		stream_buf_free(&cb);
		/* A toolstack's guest: SHAPE says a DOMAIN record follows; its
		 * payload is the backend's, carried as it is, 1 byte..1 MiB. */
		struct stream_shape shw = { .mem_bytes = 4080ull << 20, .vcpus = 1, .dirty_log = 2,
					    .hv = STREAM_HV_XEN_DOMAIN }, shr;
		stream_put_shape(&cb, &shw);
		struct stream_record r12 = { .type = STREAM_SHAPE, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		int ok5 = stream_parse_shape(&r12, &shr) == 0 && shr.hv == STREAM_HV_XEN_DOMAIN;
		cb.p[8 + 25] = STREAM_HV_XEN_DOMAIN + 1;
		int e6 = stream_parse_shape(&r12, &shr);
		stream_buf_free(&cb);
		static uint8_t blob[STREAM_MAX_DOMAIN + 1];
		for (size_t i = 0; i < sizeof(blob); i++)
			blob[i] = (uint8_t)(i * 7);
		stream_put_domain(&cb, blob, 1000);
		struct stream_record r13 = { .type = STREAM_DOMAIN, .len = (uint32_t)cb.len - 8, .payload = cb.p + 8 };
		const uint8_t *db;
		uint32_t dl;
		int ok6 = stream_parse_domain(&r13, &db, &dl) == 0 && dl == 1000 && !memcmp(db, blob, 1000);
		stream_buf_free(&cb);
		int e7 = stream_put_domain(&cb, blob, STREAM_MAX_DOMAIN + 1), e8 = stream_put_domain(&cb, blob, 0);
		stream_buf_free(&cb);
		r13.len = 0;
		tap_ok(ok5 && e6 == -EPROTO && ok6 && e7 == -EINVAL && e8 == -EINVAL &&
			       stream_parse_domain(&r13, &db, &dl) == -EPROTO,
		       "a SHAPE announcing a toolstack's guest and its DOMAIN record round-trip; no such hypervisor, "
		       "an empty or oversized DOMAIN refused");
	}
	/* Handing the reader's buffer over (the destination's decoders get
	 * records without a copy) and back (a recycled buffer is used). */
	{
		struct stream_buf pb = { 0 };
		size_t mark;
		stream_put_pages_begin(&pb, &mark);
		for (unsigned i = 0; i < 8; i++)
			stream_put_page(&pb, i, COMPRESS_RAW, page_in, sizeof(page_in));
		stream_put_pages_end(&pb, mark);
		stream_put_pages_begin(&pb, &mark);
		stream_put_page(&pb, 9, COMPRESS_ZERO, NULL, 0);
		stream_put_pages_end(&pb, mark);
		size_t first = pb.len - (STREAM_HDR_SIZE + 8 + STREAM_PAGE_ENTRY_HDR);
		struct take t = { 0 };
		struct stream_reader r;
		stream_reader_init(&r);
		take_reader = &r;
		uint8_t *spare = malloc(64 << 10);
		/* the first record in two pieces: assembled in the reader's buffer */
		int e = stream_reader_feed(&r, pb.p, 1000, take_rec, &t);
		e = e ? e : stream_reader_feed(&r, pb.p + 1000, first - 1000, take_rec, &t);
		tap_ok(e == 0 && t.records == 1 && t.taken && t.cap >= first &&
			       memcmp(t.taken, pb.p, first) == 0 && r.b.p == NULL,
		       "a record assembled by the reader is handed over whole, header first, and the reader keeps nothing");
		stream_reader_give(&r, spare, 64 << 10);
		/* the second record, whole in the input: not the reader's to give */
		void *before = t.taken;
		e = stream_reader_feed(&r, pb.p + first, pb.len - first, take_rec, &t);
		tap_ok(e == 0 && t.records == 2 && t.taken == before && t.last_null && r.b.p == spare,
		       "a record read straight from the input cannot be taken; a given buffer stays the reader's");
		/* a third, split: assembled in the given buffer, then taken */
		e = stream_reader_feed(&r, pb.p, 10, take_rec, &t);
		e = e ? e : stream_reader_feed(&r, pb.p + 10, first - 10, take_rec, &t);
		tap_ok(e == 0 && t.records == 3 && t.last == (void *)spare && t.cap == (64u << 10),
		       "the next split record is assembled in the given buffer");
		free(before);
		free(t.last);
		stream_reader_free(&r);
		stream_buf_free(&pb);
	}
	return tap_done();
}
