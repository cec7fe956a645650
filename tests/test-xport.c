/*
 * transport/xport under load from several threads, over loopback, with
 * TLS and in plaintext: two sender threads queue messages of 1 byte to
 * 300 KiB with xport_send (encrypting in their own threads) while the
 * loop writes small ones of its own with xport_write; the receiving side
 * decrypts on its own thread (xport_rx_offload) and pauses its reading
 * for a while in the middle. Every message must arrive intact and each
 * thread's in the order sent; the last one, written just before a
 * graceful close, must arrive before the close is reported, and the
 * close must be clean.
 *
 * usage: test-xport [PML_MIGRATE]  (the binary that makes certificates;
 * default ./pml-migrate)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>
#include "tests/tap.h"
#include "transport/xport.h"

#define SENDERS 2
#define PER_SENDER 600
#define LOOP_MSGS 200
#define HDR 16
#define END_TAG 0xffff

struct rx_state {
	uint8_t *buf;
	size_t len, cap;
	uint64_t next_seq[SENDERS + 1]; /* index SENDERS: the loop's messages */
	uint64_t msgs, bad, out_of_order, bytes;
	int got_end, end_before_close;
	int closed, close_err;
	char close_why[256];
	int paused_once;
};

struct t {
	uv_loop_t loop;
	uv_tcp_t server;
	uv_timer_t guard, pause_timer, loop_writer;
	uv_async_t senders_done;
	struct xport_tls *ctls, *stls;
	struct xport_conn *cx, *sx;
	pthread_t th[SENDERS];
	int started, closing;
	int finished; /* sender threads done (atomic) */
	unsigned loop_sent;
	struct rx_state rx;
	int timed_out, client_closed;
};

static struct t T;

static uint8_t pattern(unsigned who, uint64_t seq, size_t i) { return (uint8_t)(who * 131 + seq * 7 + i * 13); }

static size_t msg_len(unsigned who, uint64_t seq)
{
	uint64_t x = (seq + 1) * 2654435761u + who * 40503u;
	switch (x % 4) {
	case 0: return 1 + x % 64;
	case 1: return 1000 + x % 20000;
	case 2: return 60000 + x % 100000;
	default: return 200000 + x % 107200;
	}
}

static uint8_t *make_msg(unsigned who, uint64_t seq, size_t *n)
{
	size_t len = who == END_TAG ? 0 : msg_len(who, seq);
	uint8_t *p = malloc(HDR + len);
	if (!p)
		abort();
	uint32_t l = (uint32_t)len;
	uint16_t w = (uint16_t)who, z = 0;
	memcpy(p, &l, 4);
	memcpy(p + 4, &w, 2);
	memcpy(p + 6, &z, 2);
	memcpy(p + 8, &seq, 8);
	for (size_t i = 0; i < len; i++)
		p[HDR + i] = pattern(who, seq, i);
	*n = HDR + len;
	return p;
}

static void check_msg(struct rx_state *r, const uint8_t *p, size_t len, unsigned who, uint64_t seq)
{
	r->msgs++;
	if (who == END_TAG) {
		r->got_end = 1;
		return;
	}
	if (who > SENDERS) {
		r->bad++;
		return;
	}
	if (seq != r->next_seq[who])
		r->out_of_order++;
	r->next_seq[who] = seq + 1;
	if (len != msg_len(who, seq)) {
		r->bad++;
		return;
	}
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(who, seq, i)) {
			r->bad++;
			return;
		}
}

static void unpause(uv_timer_t *t);

static int s_on_data(struct xport_conn *c, const uint8_t *p, size_t n, void *opaque)
{
	struct rx_state *r = opaque;
	(void)c;
	r->bytes += n;
	if (r->len + n > r->cap) {
		size_t cap = r->cap ? r->cap : 1 << 20;
		while (cap < r->len + n)
			cap *= 2;
		r->buf = realloc(r->buf, cap);
		r->cap = cap;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	size_t off = 0;
	while (r->len - off >= HDR) {
		uint32_t l;
		uint16_t w;
		uint64_t seq;
		memcpy(&l, r->buf + off, 4);
		memcpy(&w, r->buf + off + 4, 2);
		memcpy(&seq, r->buf + off + 8, 8);
		if (r->len - off < HDR + (size_t)l)
			break;
		check_msg(r, r->buf + off + HDR, l, w, seq);
		off += HDR + l;
	}
	memmove(r->buf, r->buf + off, r->len - off);
	r->len -= off;
	if (!r->paused_once && r->bytes > (8u << 20)) {
		/* Stop reading for 300 ms: the sender's queue fills and waits. */
		r->paused_once = 1;
		xport_read_pause(c, 1);
		uv_timer_start(&T.pause_timer, unpause, 300, 0);
	}
	return 0;
}

static void unpause(uv_timer_t *t)
{
	(void)t;
	if (T.sx)
		xport_read_pause(T.sx, 0);
}

static void stop_all(void)
{
	uv_timer_stop(&T.guard);
	uv_timer_stop(&T.loop_writer);
	uv_close((uv_handle_t *)&T.server, NULL);
	uv_close((uv_handle_t *)&T.guard, NULL);
	uv_close((uv_handle_t *)&T.pause_timer, NULL);
	uv_close((uv_handle_t *)&T.loop_writer, NULL);
	uv_close((uv_handle_t *)&T.senders_done, NULL);
}

static void s_on_close(struct xport_conn *c, int err, const char *why, void *opaque)
{
	struct rx_state *r = opaque;
	(void)c;
	r->closed = 1;
	r->close_err = err;
	snprintf(r->close_why, sizeof(r->close_why), "%s", why ? why : "");
	r->end_before_close = r->got_end;
	if (T.client_closed)
		stop_all();
}

static const struct xport_callbacks s_cb = { .on_data = s_on_data, .on_close = s_on_close };

static void *sender(void *arg)
{
	unsigned who = (unsigned)(uintptr_t)arg;
	for (uint64_t seq = 0; seq < PER_SENDER; seq++) {
		size_t n;
		uint8_t *p = make_msg(who, seq, &n);
		if (xport_send(T.cx, p, n) < 0)
			break;
	}
	__atomic_add_fetch(&T.finished, 1, __ATOMIC_SEQ_CST);
	uv_async_send(&T.senders_done);
	return NULL;
}

static void loop_write(uv_timer_t *t)
{
	(void)t;
	if (T.loop_sent >= LOOP_MSGS || !T.cx)
		return;
	size_t n;
	uint8_t *p = make_msg(SENDERS, T.loop_sent++, &n);
	xport_write(T.cx, p, n);
	free(p);
}

static void c_on_ready(struct xport_conn *c, void *opaque)
{
	(void)c, (void)opaque;
	T.started = 1;
	for (uintptr_t i = 0; i < SENDERS; i++)
		pthread_create(&T.th[i], NULL, sender, (void *)i);
	uv_timer_start(&T.loop_writer, loop_write, 1, 1);
}

static int c_on_data(struct xport_conn *c, const uint8_t *p, size_t n, void *opaque)
{
	(void)c, (void)p, (void)n, (void)opaque;
	return 0;
}

static void c_on_close(struct xport_conn *c, int err, const char *why, void *opaque)
{
	(void)c, (void)opaque;
	if (err)
		tap_diag("client closed: %s", why);
	T.client_closed = 1;
	if (T.rx.closed)
		stop_all();
}

static const struct xport_callbacks c_cb = { .on_ready = c_on_ready, .on_data = c_on_data, .on_close = c_on_close };

static void senders_done(uv_async_t *a)
{
	(void)a;
	if (T.closing || __atomic_load_n(&T.finished, __ATOMIC_SEQ_CST) < SENDERS)
		return;
	T.closing = 1;
	for (unsigned i = 0; i < SENDERS; i++)
		pthread_join(T.th[i], NULL);
	/* Whatever the loop still had to write, then the last message and a
	 * graceful close right behind it. */
	while (T.loop_sent < LOOP_MSGS)
		loop_write(NULL);
	size_t n;
	uint8_t *p = make_msg(END_TAG, 0, &n);
	xport_write(T.cx, p, n);
	free(p);
	xport_close(T.cx, 0, NULL);
}

static void on_conn(uv_stream_t *s, int status)
{
	if (status < 0 || T.sx)
		return;
	if (xport_accept(s, T.stls, &s_cb, &T.rx, &T.sx) == 0)
		xport_rx_offload(T.sx);
}

static void guard(uv_timer_t *t)
{
	(void)t;
	T.timed_out = 1;
	if (T.cx)
		xport_close(T.cx, -ETIMEDOUT, "test timed out");
	if (T.sx)
		xport_close(T.sx, -ETIMEDOUT, "test timed out");
	stop_all();
}

static int run(int insecure, const char *dir)
{
	memset(&T, 0, sizeof(T));
	struct xport_tls_config sc = { .server = 1, .insecure = insecure, .certs_dir = dir, .node = "agent" };
	struct xport_tls_config cc = { .insecure = insecure, .certs_dir = dir, .node = "sender", .peer_name = "agent" };
	char err[256];
	if (xport_tls_new(&sc, &T.stls, err, sizeof(err)) < 0 || xport_tls_new(&cc, &T.ctls, err, sizeof(err)) < 0) {
		tap_diag("TLS settings: %s", err);
		return -1;
	}
	uv_loop_init(&T.loop);
	uv_tcp_init(&T.loop, &T.server);
	struct sockaddr_in sa;
	uv_ip4_addr("127.0.0.1", 0, &sa);
	if (uv_tcp_bind(&T.server, (struct sockaddr *)&sa, 0) || uv_listen((uv_stream_t *)&T.server, 4, on_conn))
		return -1;
	int len = sizeof(sa);
	uv_tcp_getsockname(&T.server, (struct sockaddr *)&sa, &len);
	char hp[64];
	snprintf(hp, sizeof(hp), "127.0.0.1:%u", ntohs(sa.sin_port));
	uv_timer_init(&T.loop, &T.guard);
	uv_timer_init(&T.loop, &T.pause_timer);
	uv_timer_init(&T.loop, &T.loop_writer);
	uv_async_init(&T.loop, &T.senders_done, senders_done);
	uv_timer_start(&T.guard, guard, 60000, 0);
	if (xport_connect(&T.loop, T.ctls, hp, &c_cb, NULL, &T.cx) < 0)
		return -1;
	uv_run(&T.loop, UV_RUN_DEFAULT);
	xport_free(T.cx);
	xport_free(T.sx);
	uv_run(&T.loop, UV_RUN_DEFAULT);
	uv_loop_close(&T.loop);
	xport_tls_free(T.stls);
	xport_tls_free(T.ctls);
	free(T.rx.buf);
	return 0;
}

int main(int argc, char **argv)
{
	const char *pm = argc > 1 ? argv[1] : "./pml-migrate";
	char dir[] = "/tmp/pmg-xport.XXXXXX", cmd[1024];
	if (!mkdtemp(dir))
		return 1;
	snprintf(cmd, sizeof(cmd), "%s certs init %s/c >/dev/null && %s certs issue %s/c agent >/dev/null && "
		 "%s certs issue %s/c sender >/dev/null", pm, dir, pm, dir, pm, dir);
	int have_certs = system(cmd) == 0;
	tap_plan(2 * 5);
	for (int insecure = 0; insecure <= 1; insecure++) {
		const char *mode = insecure ? "plaintext" : "TLS";
		char cdir[64];
		snprintf(cdir, sizeof(cdir), "%s/c", dir);
		int e = (!insecure && !have_certs) ? -1 : run(insecure, cdir);
		uint64_t want = SENDERS * PER_SENDER + LOOP_MSGS + 1;
		tap_ok(e == 0 && T.started && !T.timed_out, "%s: connected and finished within 60 s%s", mode,
		       !insecure && !have_certs ? " (could not make certificates)" : "");
		tap_ok(T.rx.msgs == want && T.rx.bad == 0, "%s: %llu of %llu messages arrived intact (%llu bad, %.1f MiB)",
		       mode, (unsigned long long)T.rx.msgs, (unsigned long long)want, (unsigned long long)T.rx.bad,
		       (double)T.rx.bytes / (1 << 20));
		tap_ok(T.rx.out_of_order == 0, "%s: each thread's messages in the order sent (%llu out of order)", mode,
		       (unsigned long long)T.rx.out_of_order);
		tap_ok(T.rx.paused_once, "%s: the receiver paused its reading midway and resumed", mode);
		tap_ok(T.rx.closed && T.rx.close_err == 0 && T.rx.end_before_close,
		       "%s: the message written just before a graceful close arrived before the close, which was clean "
		       "(err %d: %s)",
		       mode, T.rx.close_err, T.rx.close_why);
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		tap_diag("could not remove %s", dir);
	return tap_done();
}
