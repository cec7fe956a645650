/*
 * bench/pipe.c - the engine's data path end to end without a VM: MIB of
 * text or random pages go from one memory area to another freshly mapped
 * one through the engine's own encoder step (zero detection, LZ4 or raw
 * chosen as `send --compress` does, compress/adapt.c for auto), the
 * transport (transport/xport.c: TLS 1.3 encrypting in the encoder's
 * thread, decrypting on the receiver's own thread, or plaintext), the
 * stream reader and a decoder thread, over loopback, with a sender and a
 * receiver loop thread each, as a source and an agent on one machine.
 * Optionally a guest stand-in: a thread at the vCPU's priority that
 * spins, counting its iterations and the longest gap between two of
 * them, alone for a second and then during the transfer.
 *
 * For what KVM would show but this machine cannot run: which compression
 * mode moves the bytes faster on a given link, at what CPU cost, and what
 * the engine's threads take from a thread that wants a whole core. Run it
 * in a network namespace with `tc tbf` on its lo for a slower link
 * (bench/pipe.sh does).
 *
 * usage: bench/pipe [--mib N] [--content text|random] [--compress auto|on|off]
 *                   [--insecure] [--guest [--pin|--pin-workers|--auto-workers]]
 *                   [--guest-sleep US] [--pm PML_MIGRATE]
 *
 * --pin keeps the stand-in on CPU 0 and every other thread off it: what
 * the guest feels when the engine never runs on its vCPU's core.
 * --pin-workers keeps the stand-in on CPU 0 and only the engine's workers
 * and the source's loop off it, through PML_MIGRATE_WORKER_CPUS
 * (util_thread_background, util_thread_keep_off), as an operator would
 * set it for `run`, `attach` and `recv`; the receiving loop still runs
 * anywhere. --auto-workers leaves the stand-in free and sets
 * PML_MIGRATE_WORKER_CPUS=auto: the workers find it (it is named vcpu0)
 * and keep off its CPU, following it when it moves. --guest-sleep US makes the stand-in a slow guest:
 * each millisecond of work is followed by a sleep of US microseconds to
 * a deadline, and its gap is how late it wakes (its speed is then not
 * meaningful).
 *
 * Prints one JSON object: the mode, seconds, page MB/s, the engine's CPU
 * seconds (the process less the stand-in), LZ4's share of the pages, the
 * adaptive mode's probes and flips, and with --guest the stand-in's speed
 * during the transfer over its speed alone and its longest gap.
 * Exit 0, 1 if the transfer failed, 2 for a usage error.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include "compress/adapt.h"
#include "bench/content.h"
#include "compress/compress.h"
#include "migrate/stream.h"
#include "transport/xport.h"
#include "util/util.h"

#define PAGE 4096u
#define BATCH 256u      /* pages per PAGES record, as the engine's jobs */
#define RX_QUEUE_MAX 16 /* records waiting for the decoder before reading pauses */

enum { C_AUTO, C_ON, C_OFF };

struct rec {
	struct rec *next;
	void *buf;
	size_t cap; /* a reader's buffer: recycled after decoding */
	struct stream_record r;
};

/* A decoded record's buffer, kept for the reader (as the agent does). */
struct spare {
	struct spare *next;
	size_t cap;
};
#define SPARES_MAX 8

static struct {
	size_t pages;
	int content_random, compress, insecure, guest, pin;
	uint64_t guest_sleep_us; /* --guest-sleep: the stand-in sleeps, as a slow guest */
	uint8_t *src, *dst;
	/* the sender */
	uv_loop_t sloop;
	uv_async_t s_close;
	struct xport_conn *sx;
	pthread_t encoder;
	atomic_int encoder_started, send_failed, s_closed;
	uint64_t lz4_pages;
	struct compress_adapt adapt;
	/* the receiver */
	uv_loop_t rloop;
	uv_tcp_t server;
	uv_async_t r_wake;
	struct xport_conn *rx;
	struct stream_reader rd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rec *qhead, *qtail;
	unsigned qlen, nspares;
	struct spare *spares;
	int paused, stop_decoder, r_closed;
	atomic_uint_fast64_t decoded;
	atomic_int failed, done;
	uint64_t t_start, t_end;
	/* the stand-in */
	atomic_int guest_phase; /* 0 alone, 1 during, 2 stop */
	uint64_t g_ops[2], g_ns[2], g_gap_ns[2];
	double g_cpu;
} P;

static void die(const char *m)
{
	fprintf(stderr, "bench/pipe: %s\n", m);
	exit(1);
}

static double cpu_now(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- the guest stand-in: a thread that wants a whole core ---- */
static void *guest(void *arg)
{
	(void)arg;
	/* Named as the VMM names a vCPU thread: PML_MIGRATE_WORKER_CPUS=auto
	 * (--auto-workers) finds it as it would find one. */
	pthread_setname_np(pthread_self(), "vcpu0");
	if (P.pin == 1 || P.pin == 2) {
		cpu_set_t c;
		CPU_ZERO(&c);
		CPU_SET(0, &c);
		pthread_setaffinity_np(pthread_self(), sizeof c, &c);
	}
	volatile uint64_t x = 1;
	for (int ph = 0; ph < 2; ph++) {
		uint64_t t0 = util_now_ns(), last = t0, ops = 0, wake = t0;
		while (atomic_load(&P.guest_phase) == ph) {
			for (int k = 0; k < 200; k++) /* about a microsecond of work */
				x = x * 6364136223846793005ull + 1;
			ops++;
			uint64_t now = util_now_ns();
			if (P.guest_sleep_us && now - wake >= 1000000) {
				/* As the slow memstress guests: a millisecond of work,
				 * then a sleep to a deadline; what it feels is the time
				 * past the deadline (a guest counts only that). */
				uint64_t due = now + P.guest_sleep_us * 1000;
				struct timespec ts = { .tv_sec = (time_t)(due / 1000000000ull), .tv_nsec = (long)(due % 1000000000ull) };
				while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
					;
				now = util_now_ns();
				if (now - due > P.g_gap_ns[ph])
					P.g_gap_ns[ph] = now - due;
				wake = last = now;
				continue;
			}
			if (now - last > P.g_gap_ns[ph])
				P.g_gap_ns[ph] = now - last;
			last = now;
		}
		P.g_ops[ph] = ops;
		P.g_ns[ph] = last - t0;
	}
	clockid_t c;
	pthread_getcpuclockid(pthread_self(), &c);
	P.g_cpu = cpu_now(c);
	return NULL;
}

/* ---- the receiver: records to a decoder thread ---- */
static int r_each(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	(*(uint64_t *)opaque)++;
	return compress_page_decode(codec, data, len, P.dst + gfn * PAGE);
}

static void *decoder(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "decode0");
	util_thread_background(); /* as the agent's decoders */
	for (;;) {
		pthread_mutex_lock(&P.lock);
		while (!P.qhead && !P.stop_decoder)
			pthread_cond_wait(&P.cond, &P.lock);
		struct rec *r = P.qhead;
		if (!r) {
			pthread_mutex_unlock(&P.lock);
			return NULL;
		}
		P.qhead = r->next;
		if (!P.qhead)
			P.qtail = NULL;
		P.qlen--;
		pthread_mutex_unlock(&P.lock);
		uint64_t n = 0;
		if (stream_parse_pages(&r->r, P.pages, r_each, &n) < 0)
			atomic_store(&P.failed, 1);
		int end = atomic_fetch_add(&P.decoded, n) + n >= P.pages && !atomic_exchange(&P.done, 1);
		if (end)
			P.t_end = util_now_ns();
		pthread_mutex_lock(&P.lock);
		if (r->cap >= sizeof(struct spare) && P.nspares < SPARES_MAX) {
			struct spare *sp = r->buf;
			sp->cap = r->cap;
			sp->next = P.spares;
			P.spares = sp;
			P.nspares++;
			r->buf = NULL;
		}
		if (!P.r_closed)
			uv_async_send(&P.r_wake); /* room in the queue, or the end */
		pthread_mutex_unlock(&P.lock);
		free(r->buf);
		free(r);
	}
}

/* The loop: a whole record. One the reader assembled goes to the decoder
 * in that buffer and the reader gets a recycled one; one that came whole
 * inside a chunk is copied, as the agent's loop does. */
static int r_record(void *opaque, const struct stream_record *rec)
{
	(void)opaque;
	if (rec->type != STREAM_PAGES)
		return -EPROTO;
	struct rec *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->r = *rec;
	r->buf = stream_reader_take(&P.rd, rec, &r->cap);
	if (r->buf) {
		r->r.payload = (const uint8_t *)r->buf + STREAM_HDR_SIZE;
		pthread_mutex_lock(&P.lock);
		struct spare *sp = P.spares;
		if (sp)
			P.spares = sp->next, P.nspares--;
		pthread_mutex_unlock(&P.lock);
		if (sp)
			stream_reader_give(&P.rd, sp, sp->cap);
	} else {
		r->buf = malloc(rec->len ? rec->len : 1);
		if (!r->buf) {
			free(r);
			return -ENOMEM;
		}
		memcpy(r->buf, rec->payload, rec->len);
		r->r.payload = r->buf;
	}
	pthread_mutex_lock(&P.lock);
	if (P.qtail)
		P.qtail->next = r;
	else
		P.qhead = r;
	P.qtail = r;
	int full = ++P.qlen >= RX_QUEUE_MAX;
	pthread_cond_signal(&P.cond);
	pthread_mutex_unlock(&P.lock);
	if (full && !P.paused) {
		P.paused = 1;
		xport_read_pause(P.rx, 1);
	}
	return 0;
}

static int r_on_data(struct xport_conn *c, const uint8_t *p, size_t n, void *opaque)
{
	(void)c, (void)opaque;
	if (!P.t_start)
		P.t_start = util_now_ns();
	return stream_reader_feed(&P.rd, p, n, r_record, NULL);
}

static void r_on_close(struct xport_conn *c, int err, const char *why, void *opaque)
{
	(void)c, (void)opaque;
	if (err && !atomic_load(&P.done)) {
		fprintf(stderr, "bench/pipe: receiver: %s\n", why);
		atomic_store(&P.failed, 1);
	}
	pthread_mutex_lock(&P.lock);
	P.r_closed = 1;
	pthread_mutex_unlock(&P.lock);
	uv_close((uv_handle_t *)&P.server, NULL);
	uv_close((uv_handle_t *)&P.r_wake, NULL);
}

static const struct xport_callbacks r_cb = { .on_data = r_on_data, .on_close = r_on_close };

static void r_wake(uv_async_t *a)
{
	(void)a;
	if (atomic_load(&P.done) || atomic_load(&P.failed)) {
		if (P.rx)
			xport_close(P.rx, 0, NULL);
		else
			r_on_close(NULL, 0, NULL, NULL);
		return;
	}
	pthread_mutex_lock(&P.lock);
	int room = P.qlen < RX_QUEUE_MAX / 2;
	pthread_mutex_unlock(&P.lock);
	if (room && P.paused) {
		P.paused = 0;
		xport_read_pause(P.rx, 0);
	}
}

static struct xport_tls *rtls, *stls;

static void r_on_conn(uv_stream_t *s, int status)
{
	if (status < 0 || P.rx)
		return;
	if (xport_accept(s, rtls, &r_cb, NULL, &P.rx) == 0 && !P.insecure)
		xport_rx_offload(P.rx);
}

static void *r_thread(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "agent-loop");
	uv_run(&P.rloop, UV_RUN_DEFAULT);
	return NULL;
}

/* ---- the sender: an encoder thread, as the engine's ---- */
static void *encoder(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "encode0");
	util_thread_background();
	compress_adapt_init(&P.adapt, util_now_ns());
	int lz4 = P.compress != C_OFF;
	uint64_t raw_bytes = 0, follow_ns = 0;
	for (size_t i = 0; i < P.pages; i += BATCH) {
		struct stream_buf b = { 0 };
		size_t mark;
		int e = stream_buf_reserve(&b, STREAM_HDR_SIZE + 8 + BATCH * (STREAM_PAGE_ENTRY_HDR + COMPRESS_MAX_PAYLOAD));
		if (!e)
			e = stream_put_pages_begin(&b, &mark);
		uint64_t zero = 0;
		for (size_t k = i; !e && k < i + BATCH && k < P.pages; k++) {
			uint8_t *slot = stream_page_slot(&b, COMPRESS_MAX_PAYLOAD);
			size_t len = 0;
			if (!slot) {
				e = -ENOMEM;
				break;
			}
			enum compress_codec c = compress_page_encode(P.src + k * PAGE, slot, &len, lz4);
			zero += c == COMPRESS_ZERO;
			P.lz4_pages += c == COMPRESS_LZ4;
			stream_page_done(&b, k, c, (uint32_t)len);
		}
		if (!e)
			e = stream_put_pages_end(&b, mark);
		size_t n = i + BATCH < P.pages ? BATCH : P.pages - i;
		raw_bytes += (n - zero) * PAGE;
		if (e || xport_send(P.sx, b.p, b.len) < 0) {
			if (e)
				stream_buf_free(&b);
			atomic_store(&P.send_failed, 1);
			break;
		}
		if (P.compress == C_AUTO)
			lz4 = compress_adapt_job(&P.adapt, raw_bytes, util_now_ns());
		util_thread_follow(&follow_ns); /* as the engine's encoder */
	}
	return NULL;
}

static void s_on_ready(struct xport_conn *c, void *opaque)
{
	(void)c, (void)opaque;
	if (pthread_create(&P.encoder, NULL, encoder, NULL) == 0)
		atomic_store(&P.encoder_started, 1);
	else
		atomic_store(&P.send_failed, 1);
}

static int s_on_data(struct xport_conn *c, const uint8_t *p, size_t n, void *opaque)
{
	(void)c, (void)p, (void)n, (void)opaque;
	return 0;
}

static void s_on_close(struct xport_conn *c, int err, const char *why, void *opaque)
{
	(void)c, (void)opaque;
	if (err && !atomic_load(&P.done)) {
		fprintf(stderr, "bench/pipe: sender: %s\n", why);
		atomic_store(&P.send_failed, 1);
	}
	atomic_store(&P.s_closed, 1);
	uv_close((uv_handle_t *)&P.s_close, NULL);
}

static const struct xport_callbacks s_cb = { .on_ready = s_on_ready, .on_data = s_on_data, .on_close = s_on_close };

static void s_close(uv_async_t *a)
{
	(void)a;
	xport_close(P.sx, 0, NULL);
}

static void *s_thread(void *arg)
{
	(void)arg;
	pthread_setname_np(pthread_self(), "source-loop");
	/* As the engine's source loop (migrate_src_start): off the vCPUs'
	 * cores with the workers under PML_MIGRATE_WORKER_CPUS. */
	cpu_set_t saved;
	util_thread_keep_off(&saved);
	uv_run(&P.sloop, UV_RUN_DEFAULT);
	util_thread_restore(&saved);
	return NULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench/pipe [--mib N] [--content text|random] [--compress auto|on|off] [--insecure] [--guest] "
			"[--pin|--pin-workers|--auto-workers] [--guest-sleep US] [--pm PML_MIGRATE]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	size_t mib = 512;
	const char *pm = "./pml-migrate";
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--mib") && v) {
			mib = strtoull(v, NULL, 10), i++;
		} else if (!strcmp(a, "--content") && v) {
			if (strcmp(v, "text") && strcmp(v, "random"))
				usage();
			P.content_random = !strcmp(v, "random"), i++;
		} else if (!strcmp(a, "--compress") && v) {
			P.compress = !strcmp(v, "auto") ? C_AUTO : !strcmp(v, "on") ? C_ON : !strcmp(v, "off") ? C_OFF : -1;
			if (P.compress < 0)
				usage();
			i++;
		} else if (!strcmp(a, "--insecure")) {
			P.insecure = 1;
		} else if (!strcmp(a, "--guest")) {
			P.guest = 1;
		} else if (!strcmp(a, "--pin")) {
			P.pin = 1;
		} else if (!strcmp(a, "--pin-workers")) {
			P.pin = 2;
		} else if (!strcmp(a, "--auto-workers")) {
			P.pin = 3;
		} else if (!strcmp(a, "--guest-sleep") && v) {
			P.guest_sleep_us = strtoull(v, NULL, 10), i++;
			if (!P.guest_sleep_us || P.guest_sleep_us > 1000000)
				usage();
			P.guest = 1;
		} else if (!strcmp(a, "--pm") && v) {
			pm = v, i++;
		} else {
			usage();
		}
	}
	if (mib < 16 || mib > 65536)
		usage();
	if (P.pin && (!P.guest || sysconf(_SC_NPROCESSORS_ONLN) < 2)) {
		fprintf(stderr, "bench/pipe: --pin, --pin-workers and --auto-workers need --guest and 2 or more CPUs\n");
		return 2;
	}
	P.pages = mib << 8;
	P.src = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	P.dst = mmap(NULL, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (P.src == MAP_FAILED || P.dst == MAP_FAILED)
		die("out of memory");
	madvise(P.dst, mib << 20, MADV_HUGEPAGE); /* as the agent's guest memory */
	bench_fill_pages(P.src, P.pages, P.content_random);

	char dir[] = "/tmp/pmg-pipe.XXXXXX", cmd[1200], err[256];
	if (!mkdtemp(dir))
		die("no temporary directory");
	if (!P.insecure) {
		snprintf(cmd, sizeof(cmd), "%s certs init %s/c >/dev/null && %s certs issue %s/c agent >/dev/null && "
			 "%s certs issue %s/c sender >/dev/null", pm, dir, pm, dir, pm, dir);
		if (system(cmd) != 0)
			die("pml-migrate certs failed (--pm PATH names the binary)");
	}
	char cdir[64];
	snprintf(cdir, sizeof(cdir), "%s/c", dir);
	struct xport_tls_config rc = { .server = 1, .insecure = P.insecure, .certs_dir = cdir, .node = "agent" };
	struct xport_tls_config sc = { .insecure = P.insecure, .certs_dir = cdir, .node = "sender", .peer_name = "agent" };
	if (xport_tls_new(&rc, &rtls, err, sizeof(err)) < 0 || xport_tls_new(&sc, &stls, err, sizeof(err)) < 0)
		die(err);

	pthread_mutex_init(&P.lock, NULL);
	pthread_cond_init(&P.cond, NULL);
	stream_reader_init(&P.rd);
	uv_loop_init(&P.rloop);
	uv_loop_init(&P.sloop);
	uv_tcp_init(&P.rloop, &P.server);
	uv_async_init(&P.rloop, &P.r_wake, r_wake);
	uv_async_init(&P.sloop, &P.s_close, s_close);
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	if (uv_tcp_bind(&P.server, (struct sockaddr *)&sa, 0) || uv_listen((uv_stream_t *)&P.server, 1, r_on_conn))
		die("cannot listen on 127.0.0.1");
	int len = sizeof(sa);
	uv_tcp_getsockname(&P.server, (struct sockaddr *)&sa, &len);
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(sa.sin_port));

	pthread_t gt, rt, st, dt;
	if (P.guest) {
		if (pthread_create(&gt, NULL, guest, NULL))
			die("thread");
		usleep(1000000); /* the stand-in alone: its speed before */
	}
	if (P.pin == 1) {
		/* Every thread made from here on (loops, encoder, decoder, the
		 * transport's decrypting thread) inherits: all but CPU 0. */
		cpu_set_t c;
		CPU_ZERO(&c);
		for (long i = 1; i < sysconf(_SC_NPROCESSORS_ONLN) && i < CPU_SETSIZE; i++)
			CPU_SET(i, &c);
		if (pthread_setaffinity_np(pthread_self(), sizeof c, &c))
			die("--pin: cannot set the CPU affinity");
	} else if (P.pin == 3) {
		setenv("PML_MIGRATE_WORKER_CPUS", "auto", 1);
	} else if (P.pin == 2) {
		/* Only the engine's workers (encoder, decoder, decrypting
		 * thread), through util_thread_background(), as the engine's. */
		char list[32];
		snprintf(list, sizeof list, "1-%ld", sysconf(_SC_NPROCESSORS_ONLN) - 1);
		setenv("PML_MIGRATE_WORKER_CPUS", list, 1);
	}
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	uint64_t t0 = util_now_ns();
	atomic_store(&P.guest_phase, 1);
	if (pthread_create(&dt, NULL, decoder, NULL) || pthread_create(&rt, NULL, r_thread, NULL))
		die("thread");
	if (xport_connect(&P.sloop, stls, hp, &s_cb, NULL, &P.sx) < 0)
		die("connect");
	if (pthread_create(&st, NULL, s_thread, NULL))
		die("thread");
	/* Done when every page is decoded, or something failed; bounded. */
	for (int i = 0; i < 6000 && !atomic_load(&P.done) && !atomic_load(&P.failed) && !atomic_load(&P.send_failed); i++)
		usleep(20000);
	uint64_t t1 = atomic_load(&P.done) ? P.t_end : util_now_ns();
	atomic_store(&P.guest_phase, 2);
	getrusage(RUSAGE_SELF, &ru1);
	int ok = atomic_load(&P.done) && !atomic_load(&P.failed);
	if (!ok)
		atomic_store(&P.failed, 1);
	pthread_mutex_lock(&P.lock);
	if (!P.r_closed)
		uv_async_send(&P.r_wake);
	pthread_mutex_unlock(&P.lock);
	if (atomic_load(&P.encoder_started))
		pthread_join(P.encoder, NULL);
	if (!atomic_load(&P.s_closed))
		uv_async_send(&P.s_close); /* its loop thread closes it only here */
	pthread_join(st, NULL);
	pthread_join(rt, NULL);
	pthread_mutex_lock(&P.lock);
	P.stop_decoder = 1;
	pthread_cond_signal(&P.cond);
	pthread_mutex_unlock(&P.lock);
	pthread_join(dt, NULL);
	if (P.guest)
		pthread_join(gt, NULL);
	if (ok && memcmp(P.src, P.dst, mib << 20))
		die("the pages arrived different");

	double secs = (double)(t1 - t0) / 1e9;
	double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	static const char *const cname[] = { "auto", "on", "off" };
	printf("{\"ok\":%s,\"mib\":%zu,\"content\":\"%s\",\"compress\":\"%s\",\"tls\":%s,\"pin\":\"%s\",\"seconds\":%.3f,\"mb_per_s\":%.1f,"
	       "\"lz4_share\":%.3f,\"probes\":%u,\"flips\":%u,\"wire_mb\":%.1f",
	       ok ? "true" : "false", mib, P.content_random ? "random" : "text", cname[P.compress], P.insecure ? "false" : "true",
	       P.pin == 1 ? "all" : P.pin == 2 ? "workers" : P.pin == 3 ? "auto" : "none",
	       secs, (double)(mib << 20) / secs / 1e6, (double)P.lz4_pages / (double)P.pages, P.adapt.probes, P.adapt.flips,
	       (double)xport_wire_in(P.rx ? P.rx : P.sx) / 1e6);
	if (P.guest) {
		double before = (double)P.g_ops[0] / (double)P.g_ns[0], during = (double)P.g_ops[1] / (double)P.g_ns[1];
		/* The stand-in's own CPU over the transfer is left out of the
		 * engine's: it spun throughout. */
		double g_during = P.g_cpu - (double)P.g_ns[0] / 1e9;
		printf(",\"engine_cpu_s\":%.3f,\"guest_speed\":%.3f,\"guest_gap_ms\":%.2f,\"guest_gap_alone_ms\":%.2f",
		       cpu - g_during, during / before, (double)P.g_gap_ns[1] / 1e6, (double)P.g_gap_ns[0] / 1e6);
	} else {
		printf(",\"engine_cpu_s\":%.3f", cpu);
	}
	printf("}\n");
	xport_free(P.sx);
	xport_free(P.rx);
	xport_tls_free(rtls);
	xport_tls_free(stls);
	stream_reader_free(&P.rd);
	while (P.spares) {
		struct spare *n = P.spares->next;
		free(P.spares);
		P.spares = n;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "bench/pipe: could not remove %s\n", dir);
	return ok ? 0 : 1;
}
