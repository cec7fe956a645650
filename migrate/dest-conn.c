/*
 * migrate/dest-conn.c - the destination's connections. Slot 0 is the one
 * the agent handed over and carries lane 0 (the handshake and every
 * answer). With several streams or resume, the session opens a port of its
 * own on the address the source reached: extra connections arrive there
 * as candidates and become lanes with a JOIN carrying the session's token;
 * after a lost link, a RESUME there hands the lane, its queue and the
 * guest memory to the new connection, answered with the count of records
 * that arrived so the source resends exactly the rest.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "migrate/dest-internal.h"

static void dst__join_connection(uv_stream_t *server, int status);

/* Extra connections come to a port of this session's own, on the address
 * the source already reached, so the agent never sees them. */
static int dst__open_join(struct migrate_dst *d, unsigned *port)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	int e = xport_sockname(d->st[0].x, &ss);
	if (e < 0)
		return e;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	uv_tcp_init(d->loop, &d->join_server);
	d->join_server.data = d;
	d->join_open = 1;
	d->handles_open++;
	if ((e = uv_tcp_bind(&d->join_server, (struct sockaddr *)&ss, 0)) < 0 ||
	    (e = uv_listen((uv_stream_t *)&d->join_server, 16, dst__join_connection)) < 0)
		return e;
	len = sizeof(ss);
	if ((e = uv_tcp_getsockname(&d->join_server, (struct sockaddr *)&ss, &len)) < 0)
		return e;
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

/* An extra connection is only a candidate until it has finished its
 * handshake and sent a JOIN with this migration's token: a candidate that
 * fails, idles or closes costs the migration nothing. Slots 1.. hold
 * candidates and joined connections alike; when all are taken, the oldest
 * candidate makes room, so idle connections cannot keep a real one out. */
static void dst__join_connection(uv_stream_t *server, int status)
{
	struct migrate_dst *d = server->data;
	unsigned slot = 0, oldest = 0;
	if (status < 0)
		return;
	for (unsigned i = 1; i < DST_MAX_STREAMS && !slot; i++) {
		if (!d->st[i].x)
			slot = i;
		else if (!d->st[i].joined && (!oldest || d->st[i].t_accept < d->st[oldest].t_accept))
			oldest = i;
	}
	if (!slot && oldest) {
		dst__drop_candidate(&d->st[oldest]);
		slot = oldest;
	}
	int open = d->phase == DST_RECEIVING ||
		   (d->resume && (d->phase == DST_APPLYING || d->phase == DST_READY));
	if (!slot || !open) {
		uv_tcp_t *t = malloc(sizeof(*t));
		if (!t)
			return;
		uv_tcp_init(d->loop, t);
		uv_accept(server, (uv_stream_t *)t);
		uv_close((uv_handle_t *)t, (uv_close_cb)free);
		return;
	}
	d->st[slot].t_accept = util_now_ns();
	if (xport_accept(server, d->tls, &dst_cb, &d->st[slot], &d->st[slot].x) < 0)
		d->st[slot].x = NULL;
	else
		xport_rx_offload(d->st[slot].x); /* each lane decrypts on a core of its own */
}

/* A candidate that never joined is gone: free its slot for another (not
 * from inside its own on_data: its reader is in use there). xport_free
 * closes it if needed, and no on_close follows. */
void dst__drop_candidate(struct dst_stream *s)
{
	xport_free(s->x);
	s->x = NULL;
	s->joined = 0;
	s->paused = 0;
	stream_reader_free(&s->rd);
	stream_reader_init(&s->rd);
}

/* The lane's connection is gone (lost, or replaced by a RESUME): the lane
 * and its queue stay; the slot is freed. Not from inside the slot's own
 * on_data (its reader is in use there). */
static void dst__detach(struct dst_stream *s, int err, const char *why)
{
	if (s->lane && s->lane->conn == s)
		s->lane->conn = NULL;
	s->lane = NULL;
	if (s->x)
		xport_close(s->x, err, why);
	dst__drop_candidate(s);
}

void dst__send_ack(struct dst_lane *l)
{
	struct stream_buf b = { 0 };
	struct stream_ack a = { .index = l->idx, .records = l->records };
	if (l->conn && l->conn->x && stream_put_ack(&b, &a) == 0 && xport_write(l->conn->x, b.p, b.len) == 0) {
		l->acked = l->records;
		l->ack_at = util_now_ns();
	}
	stream_buf_free(&b);
}

/* RESUME on a session-port connection: the same authenticated source, the
 * same migration (token), a lane that exists, an attempt not older than
 * one already seen. The lane's old connection (a half-open one the link
 * loss left behind) is closed first, so the count in the answer is final. */
static int dst__resume(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_resume r;
	if (stream_parse_resume(rec, &r) < 0 || r.count != d->nstreams || !d->resume ||
	    (d->phase != DST_RECEIVING && d->phase != DST_APPLYING && d->phase != DST_READY)) {
		xport_close(s->x, -EPROTO, "an unexpected or malformed RESUME");
		return -ECANCELED;
	}
	if (strcmp(xport_peer_name(s->x), d->peer)) {
		/* Another client of this agent's CA: not ours to resume; only
		 * that connection goes. */
		xport_close(s->x, -EACCES, "RESUME from another client certificate than the migration's");
		return -ECANCELED;
	}
	if (r.token != d->token) {
		/* The migration's own client with a wrong token: a guessing or
		 * broken source, as with JOIN. */
		dst__fail(d, -EACCES, "a connection tried to resume this migration with a wrong token");
		return -EACCES;
	}
	if (r.epoch < d->epoch) {
		xport_close(s->x, -ESTALE, "a RESUME of an older attempt");
		return -ECANCELED;
	}
	if (d->verify_busy) {
		/* The memory check reads what a rewind frees: the source retries. */
		xport_close(s->x, -EBUSY, "checking memory: resume again shortly");
		return -ECANCELED;
	}
	struct dst_lane *l = &d->lanes[r.index];
	if (!l->worker_started) { /* lane 0 has its worker since SHAPE, the others since their JOIN */
		dst__fail(d, -EPROTO, "RESUME of connection %u, which never joined", r.index);
		return -EPROTO;
	}
	d->epoch = r.epoch;
	if (l->conn && l->conn != s)
		dst__detach(l->conn, -ECONNRESET, "replaced by a resumed connection");
	s->joined = 1;
	s->lane = l;
	l->conn = s;
	if (r.index == 0) {
		/* The last round answer may have gone down with the old
		 * connection: answer the round reached again on this one (after
		 * the ACK below; the source accepts a repeat). */
		pthread_mutex_lock(&d->lock);
		l->round_answered = 0;
		pthread_mutex_unlock(&d->lock);
		uv_async_send(&d->wake);
	}
	d->resumes++;
	fprintf(stderr, "the source resumed connection %u (attempt %u): %" PRIu64 " of its records had arrived%s\n",
		l->idx, r.epoch, l->records, d->phase >= DST_APPLYING ? "; back to receiving memory" : "");
	dst__rewind(d);
	dst__send_ack(l);
	return 0;
}

/* An extra connection's JOIN with this migration's token: from now on it
 * carries the lane it names. */
static int dst__candidate_join(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_join j;
	int e;
	if (d->phase != DST_RECEIVING || rec->type != STREAM_JOIN || stream_parse_join(rec, &j) < 0 || j.index == 0 ||
	    j.count != d->nstreams || j.index >= d->nstreams) {
		/* Not speaking our protocol: drop it, the migration goes on. */
		xport_close(s->x, -EPROTO, "an extra connection did not start with a valid JOIN");
		return -ECANCELED;
	}
	if (j.token != d->token || (d->joined_mask & (1u << j.index))) {
		/* A peer that passed authentication and guesses tokens (or
		 * replays a JOIN): that one counts against the migration. */
		dst__fail(d, -EACCES, "connection %u did not join with this migration's token", s->idx);
		return -EACCES;
	}
	d->joined_mask |= 1u << j.index;
	s->joined = 1;
	s->lane = &d->lanes[j.index];
	s->lane->conn = s;
	d->njoined++;
	if ((e = dst__start_worker(s->lane)) < 0) {
		dst__fail(d, e, "cannot start a decode thread");
		return e;
	}
	if (d->njoined + 1 == d->nstreams && d->join_open && !d->resume) {
		dst__close_join(d);
		/* Every connection is here: the candidates left are strays. */
		for (unsigned i = 1; i < DST_MAX_STREAMS; i++)
			if (d->st[i].x && !d->st[i].joined)
				dst__drop_candidate(&d->st[i]);
	}
	return 0;
}

int dst__candidate_record(struct dst_stream *s, const struct stream_record *rec)
{
	if (rec->type == STREAM_RESUME)
		return dst__resume(s, rec);
	return dst__candidate_join(s, rec);
}

void dst__close_join(struct migrate_dst *d)
{
	if (d->join_open) {
		uv_close((uv_handle_t *)&d->join_server, dst__handle_closed);
		d->join_open = 0;
	}
}

int dst__reply_hello(struct migrate_dst *d)
{
	struct stream_buf b = { 0 };
	if (!d->st[0].x)
		return 0; /* fed (migrate_dst_feed): nobody to answer, no address to join */
	int e = stream_put_hello(&b, (d->resume ? STREAM_CAP_RESUME : 0) | (d->want_token ? STREAM_CAP_TOKEN : 0),
				 d->name);
	/* The session port: extra connections join there, and with resume a
	 * lost connection comes back there. A source that asked for the token
	 * gets it anyway (port 0 when nothing may join): it names the
	 * migration in a RESOLVE. */
	if (!e && (d->nstreams > 1 || d->resume || d->want_token)) {
		struct stream_join j = { .token = d->token, .index = 0, .count = (uint16_t)d->nstreams };
		unsigned port = 0;
		if (d->nstreams > 1 || d->resume)
			e = dst__open_join(d, &port);
		j.port = (uint16_t)port;
		if (!e)
			e = stream_put_join(&b, &j);
	}
	if (!e)
		e = xport_write(d->st[0].x, b.p, b.len);
	stream_buf_free(&b);
	return e;
}

int dst__on_data(struct xport_conn *x, const uint8_t *p, size_t n, void *opaque)
{
	struct dst_stream *s = opaque;
	struct migrate_dst *d = s->d;
	(void)x;
	int e = stream_reader_feed(&s->rd, p, n, dst__on_record, s);
	if (e && s->idx > 0 && !s->joined)
		return e == -ECANCELED ? 0 : e; /* a candidate's garbage: it alone is closed */
	if (e && e != -ECANCELED && d->phase != DST_FAILED && d->phase != DST_RUNNING)
		dst__fail(d, e, "connection %u: not a valid pml-migrate stream (%s)", s->idx,
			  e == -E2BIG ? "record longer than its type allows" : "unknown record type or bad header");
	return e == -ECANCELED ? 0 : e;
}

static void dst__on_close(struct xport_conn *x, int err, const char *why, void *opaque)
{
	struct dst_stream *s = opaque;
	struct migrate_dst *d = s->d;
	(void)x;
	if (s->idx > 0 && !s->joined && !d->freeing) {
		dst__drop_candidate(s);
		return;
	}
	if (d->freeing || d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return;
	if (d->phase == DST_READY && s->lane && !d->resume) {
		/* After READY a lost link may have carried COMMIT: the VM is
		 * kept for the source's resolution, never destroyed for it.
		 * (With resume the source may come back: the READY deadline
		 * decides, below.) */
		if (!s->lane->idx)
			dst__in_doubt(d, "connection %u from the source lost after READY: %s", s->idx, why);
		dst__detach(s, err, why);
		return;
	}
	if (d->resume && s->lane && d->phase >= DST_RECEIVING) {
		/* The source may come back (RESUME on the session port) until
		 * the idle deadline; its lane, queue and memory wait here. */
		fprintf(stderr, "connection %u (lane %u) from the source lost: %s; waiting up to %u s for it to resume\n",
			s->idx, s->lane->idx, why, d->lim.idle_ms / 1000);
		dst__detach(s, err, why);
		return;
	}
	dst__fail(d, err ? err : -ECONNRESET, "connection %u from the source lost before COMMIT: %s", s->idx, why);
}

const struct xport_callbacks dst_cb = {
	.on_data = dst__on_data,
	.on_close = dst__on_close,
};
