/*
 * migrate/query.c - the client side of a capacity query (see query.h).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include "migrate/query.h"

struct query {
	struct xport_conn *x;
	struct stream_reader rd;
	struct stream_capacity *out;
	uv_timer_t timer;
	int done, err;
	char *why;
	size_t whylen;
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
	if (q->x)
		xport_close(q->x, 0, "query done");
}

static void query__ready(struct xport_conn *x, void *opaque)
{
	struct query *q = opaque;
	struct stream_buf b = { 0 };
	if (stream_put_hello(&b, STREAM_CAP_QUERY, "capacity-query") == 0)
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
	if (rec->type == STREAM_CAPACITY) {
		if (stream_parse_capacity(rec, q->out) < 0)
			query__end(q, -EPROTO, "malformed CAPACITY answer");
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

int migrate_query_capacity(struct xport_tls *tls, const char *hostport, unsigned timeout_ms,
			   struct stream_capacity *out, char *err, size_t errlen)
{
	uv_loop_t loop;
	struct query q = { .out = out, .why = err, .whylen = errlen };
	if (uv_loop_init(&loop) < 0) {
		snprintf(err, errlen, "cannot create an event loop");
		return -ENOMEM;
	}
	stream_reader_init(&q.rd);
	uv_timer_init(&loop, &q.timer);
	q.timer.data = &q;
	uv_timer_start(&q.timer, query__timeout, timeout_ms, 0);
	int e = xport_connect(&loop, tls, hostport, &query_cb, &q, &q.x);
	if (e < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", hostport, strerror(-e));
		q.x = NULL;
		q.done = 1;
		q.err = e;
		uv_close((uv_handle_t *)&q.timer, NULL);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (q.x)
		xport_free(q.x);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	stream_reader_free(&q.rd);
	return q.err;
}
