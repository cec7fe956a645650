/*
 * migrate/query.c - the client side of a capacity query (see query.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include "migrate/query.h"
#include "util/util.h"

#define QUERY_PUMP_BYTES (4u << 20) /* filler kept queued while probing */

struct query {
	struct xport_conn *x;
	struct stream_reader rd;
	struct stream_capacity *out;
	uv_timer_t timer;
	int done, err;
	char *why;
	size_t whylen;
	/* probing the link */
	int probe, pumping;
	uint64_t probe_ns, t_end;
	uv_timer_t pump;
	const struct stream_buf *filler; /* one whole PROBE record */
	struct stream_probe_done pd;
	unsigned rtt_us;
	/* resolving a migration */
	const char *name;
	const struct stream_resolve *rq;
	struct stream_resolved *resolved;
};

static void query__end(struct query *q, int err, const char *why)
{
	if (q->done)
		return;
	q->done = 1;
	q->err = err;
	if (err && why)
		snprintf(q->why, q->whylen, "%s", why);
	uv_timer_stop(&q->timer);
	if (q->pumping) {
		uv_timer_stop(&q->pump);
		q->pumping = 0;
	}
	if (q->x)
		xport_close(q->x, 0, "query done");
}

/* Keeps the connection's queue full of filler until the probe's time is
 * up, then ends it with an empty PROBE. */
static void query__pump(uv_timer_t *t)
{
	struct query *q = t->data;
	if (q->done || !q->x)
		return;
	if (util_now_ns() >= q->t_end) {
		struct stream_buf b = { 0 };
		if (stream_put_probe(&b, NULL, 0) == 0)
			xport_write(q->x, b.p, b.len);
		stream_buf_free(&b);
		uv_timer_stop(&q->pump);
		q->pumping = 0;
		return;
	}
	while (xport_pending(q->x) < QUERY_PUMP_BYTES)
		if (xport_write(q->x, q->filler->p, q->filler->len) < 0)
			break;
}

static void query__ready(struct xport_conn *x, void *opaque)
{
	struct query *q = opaque;
	struct stream_buf b = { 0 };
	int e = q->rq ? stream_put_hello(&b, STREAM_CAP_QUERY | STREAM_CAP_RESOLVE, q->name)
		      : stream_put_hello(&b, STREAM_CAP_QUERY | (q->probe ? STREAM_CAP_PROBE : 0), "capacity-query");
	if (!e && q->rq)
		e = stream_put_resolve(&b, q->rq);
	if (!e)
		xport_write(x, b.p, b.len);
	else
		query__end(q, -ENOMEM, "out of memory");
	stream_buf_free(&b);
}

static int query__record(void *opaque, const struct stream_record *rec)
{
	struct query *q = opaque;
	char text[STREAM_MAX_TEXT + 1], why[STREAM_MAX_TEXT + 64];
	uint32_t code;
	if (rec->type == STREAM_RESOLVED && q->rq) {
		if (stream_parse_resolved(rec, q->resolved) < 0)
			query__end(q, -EPROTO, "malformed RESOLVED answer");
		else
			query__end(q, 0, NULL);
	} else if (rec->type == STREAM_CAPACITY && !q->rq) {
		if (stream_parse_capacity(rec, q->out) < 0) {
			query__end(q, -EPROTO, "malformed CAPACITY answer");
		} else if (q->probe && !q->pumping) {
			/* The round trip before the filler queues up behind it. */
			q->rtt_us = xport_rtt_us(q->x);
			q->t_end = util_now_ns() + q->probe_ns;
			q->pumping = 1;
			uv_timer_start(&q->pump, query__pump, 0, 1);
			return 0; /* PROBE_DONE comes at the end */
		} else {
			query__end(q, 0, NULL);
		}
	} else if (rec->type == STREAM_PROBE_DONE && q->probe) {
		if (stream_parse_probe_done(rec, &q->pd) < 0)
			query__end(q, -EPROTO, "malformed PROBE_DONE answer");
		else
			query__end(q, 0, NULL);
	} else if (rec->type == STREAM_ERROR && stream_parse_error(rec, &code, text, sizeof(text)) == 0) {
		snprintf(why, sizeof(why), "the agent refused: %s", text);
		query__end(q, -(int)(code ? code : EPROTO), why);
	} else {
		snprintf(why, sizeof(why), "unexpected %s record in answer (an old agent?)", stream_type_name(rec->type));
		query__end(q, -EPROTO, why);
	}
	return 1; /* one answer is all there is */
}

static int query__data(struct xport_conn *x, const uint8_t *p, size_t n, void *opaque)
{
	struct query *q = opaque;
	(void)x;
	if (q->done)
		return 0;
	int e = stream_reader_feed(&q->rd, p, n, query__record, q);
	if (e < 0)
		query__end(q, e, "malformed answer");
	return 0;
}

static void query__close(struct xport_conn *x, int err, const char *why, void *opaque)
{
	struct query *q = opaque;
	(void)x;
	char w[300];
	snprintf(w, sizeof(w), "connection closed before an answer: %s", why && *why ? why : "no reason given");
	query__end(q, err ? err : -ECONNRESET, w);
	uv_timer_stop(&q->timer);
	if (!uv_is_closing((uv_handle_t *)&q->timer))
		uv_close((uv_handle_t *)&q->timer, NULL);
	if (!uv_is_closing((uv_handle_t *)&q->pump))
		uv_close((uv_handle_t *)&q->pump, NULL);
}

static void query__timeout(uv_timer_t *t)
{
	struct query *q = t->data;
	query__end(q, -ETIMEDOUT, "no answer in time");
	if (q->x)
		xport_close(q->x, -ETIMEDOUT, "no answer in time");
}

static const struct xport_callbacks query_cb = {
	.on_ready = query__ready,
	.on_data = query__data,
	.on_close = query__close,
};

static int query__run(struct query *q, const struct migrate_query_auth *auth, const char *hostport,
		      unsigned timeout_ms);

int migrate_query_capacity(const struct migrate_query_auth *auth, const char *hostport, unsigned timeout_ms,
			   struct stream_capacity *out, char *err, size_t errlen)
{
	struct query q = { .out = out, .why = err, .whylen = errlen };
	return query__run(&q, auth, hostport, timeout_ms);
}

int migrate_query_probe(const struct migrate_query_auth *auth, const char *hostport, double seconds, struct stream_capacity *cap,
			uint64_t *rate_Bps, unsigned *rtt_us, char *err, size_t errlen)
{
	static uint8_t noise[STREAM_MAX_PROBE];
	struct stream_buf rec = { 0 };
	if (!(seconds >= 0.1 && seconds <= 60)) {
		snprintf(err, errlen, "a link probe lasts 0.1 to 60 s");
		return -EINVAL;
	}
	/* Incompressible filler, as the worst of guest memory. */
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < sizeof(noise); i += 8) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		memcpy(noise + i, &x, 8);
	}
	if (stream_put_probe(&rec, noise, sizeof(noise)) < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	struct query q = { .out = cap, .why = err, .whylen = errlen, .probe = 1,
			   .probe_ns = (uint64_t)(seconds * 1e9), .filler = &rec };
	int e = query__run(&q, auth, hostport, (unsigned)(seconds * 1000) + 15000);
	stream_buf_free(&rec);
	if (e)
		return e;
	if (!q.pd.ns || !q.pd.bytes) {
		snprintf(err, errlen, "the probe was too short to measure (%" PRIu64 " bytes)", q.pd.bytes);
		return -EIO;
	}
	*rate_Bps = (uint64_t)((double)q.pd.bytes * 1e9 / (double)q.pd.ns);
	*rtt_us = q.rtt_us;
	return 0;
}

int migrate_query_resolve(const struct migrate_query_auth *auth, const char *hostport, const char *name,
			  const struct stream_resolve *rq, unsigned timeout_ms, struct stream_resolved *out, char *err,
			  size_t errlen)
{
	struct stream_capacity unused;
	struct query q = { .out = &unused, .why = err, .whylen = errlen, .name = name, .rq = rq, .resolved = out };
	return query__run(&q, auth, hostport, timeout_ms);
}

static int query__run(struct query *qp, const struct migrate_query_auth *auth, const char *hostport,
		      unsigned timeout_ms)
{
	uv_loop_t loop;
	struct query q = *qp;
	char host[256];
	unsigned port;
	struct xport_tls *tls;
	if (xport_split_hostport(hostport, host, sizeof(host), &port) < 0) {
		snprintf(q.why, q.whylen, "'%s' is not HOST:PORT", hostport);
		return -EINVAL;
	}
	struct xport_tls_config tc = { .insecure = auth->insecure, .certs_dir = auth->certs_dir, .node = auth->node,
				       .peer_name = auth->peer && auth->peer[0] ? auth->peer : host };
	int e = xport_tls_new(&tc, &tls, q.why, q.whylen);
	if (e < 0)
		return e;
	if (uv_loop_init(&loop) < 0) {
		xport_tls_free(tls);
		snprintf(q.why, q.whylen, "cannot create an event loop");
		return -ENOMEM;
	}
	stream_reader_init(&q.rd);
	uv_timer_init(&loop, &q.timer);
	uv_timer_init(&loop, &q.pump);
	q.timer.data = q.pump.data = &q;
	uv_timer_start(&q.timer, query__timeout, timeout_ms, 0);
	e = xport_connect(&loop, tls, hostport, &query_cb, &q, &q.x);
	if (e < 0) {
		snprintf(q.why, q.whylen, "cannot connect to %s: %s", hostport, strerror(-e));
		q.x = NULL;
		q.done = 1;
		q.err = e;
		uv_close((uv_handle_t *)&q.timer, NULL);
		uv_close((uv_handle_t *)&q.pump, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (q.x)
		xport_free(q.x);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	xport_tls_free(tls);
	stream_reader_free(&q.rd);
	*qp = q;
	return q.err;
}
