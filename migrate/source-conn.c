/*
 * migrate/source-conn.c - the sending side's connections, on the loop
 * thread: HELLO, SHAPE and JOIN on connection 0 and JOIN on the others,
 * then every record the destination sends, each accepted only in its
 * phase of the handshake (enum msrc_phase, docs/stream.md): a stale,
 * duplicated or injected answer fails the migration instead of moving it
 * on, so no READY can make the source COMMIT out of turn.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include "migrate/source-internal.h"
#include "migrate/stream.h"
#include "transport/xport.h"

const char *msrc__phase_name(enum msrc_phase p)
{
	static const char *const names[] = { "waiting for the destination's HELLO", "waiting for the destination's JOIN",
					     "pre-copy", "waiting for READY", "READY received", "committed",
					     "running" };
	return names[p];
}

void msrc__join_ready(struct xport_conn *x, void *opaque)
{
	struct msrc_stream *s = opaque;
	struct migrate_src *m = s->m;
	struct stream_buf b = { 0 };
	struct stream_join j = { .token = m->token, .index = s->idx, .count = (uint16_t)m->nstreams };
	if (stream_put_join(&b, &j) == 0)
		xport_write(x, b.p, b.len);
	stream_buf_free(&b);
	s->ready = 1;
	if (++m->nready == m->nstreams && !m->failed)
		msrc__start_engine(m);
}

void migrate_src_shape(struct hv_vm *vm, struct stream_shape *sh)
{
	const struct hv_vm_config *cfg = hv_vm_config(vm);
	*sh = (struct stream_shape){ .mem_bytes = cfg->mem_bytes, .vcpus = cfg->vcpus,
				     .dirty_log = (uint8_t)cfg->dirty_mode,
				     .hv = strcmp(hv_vm_backend(vm), "xen") ? STREAM_HV_KVM : STREAM_HV_XEN };
}

void msrc__ready0(struct xport_conn *x, void *opaque)
{
	struct msrc_stream *s = opaque;
	struct migrate_src *m = s->m;
	struct stream_buf b = { 0 };
	struct stream_shape sh;
	migrate_src_shape(m->vm, &sh);
	struct stream_join j = { .index = 0, .count = (uint16_t)m->nstreams };
	/* Always ask for the token: without it a lost outcome could not be
	 * resolved (RESOLVE names the migration by it). */
	int e = stream_put_hello(&b, (m->o.resume ? STREAM_CAP_RESUME : 0) | STREAM_CAP_TOKEN, m->name);
	void *dom = NULL;
	size_t domlen = 0;
	/* A toolstack's guest: how to build its domain, before any page. */
	if (!e && (e = hv_vm_domain_blob(m->vm, &dom, &domlen)) == 0 && domlen)
		sh.hv = STREAM_HV_XEN_DOMAIN;
	if (!e)
		e = stream_put_shape(&b, &sh);
	if (!e && domlen)
		e = stream_put_domain(&b, dom, domlen);
	free(dom);
	if (!e)
		e = stream_put_join(&b, &j); /* announces the connection count, even 1 */
	if (!e)
		xport_write(x, b.p, b.len);
	stream_buf_free(&b);
	m->t_hello_sent = util_now_ns();
	s->ready = 1;
	m->nready = 1;
}

/* HOST:PORT of the destination session's own port. */
void msrc__session_hostport(struct migrate_src *m, char *hp, size_t len)
{
	/* The address connection 0 reached, numeric: no name lookup on the
	 * loop thread for every join or reconnection attempt. */
	const char *h = m->peer_addr[0] ? m->peer_addr : m->host;
	if (strchr(h, ':'))
		snprintf(hp, len, "[%s]:%u", h, m->session_port);
	else
		snprintf(hp, len, "%s:%u", h, m->session_port);
}

static void msrc__connect_extra(struct migrate_src *m)
{
	char hp[300];
	msrc__session_hostport(m, hp, sizeof(hp));
	for (unsigned i = 1; i < m->nstreams; i++) {
		int e = xport_connect(m->loop, m->tls, hp, &m->xcb, &m->st[i], &m->st[i].x);
		if (e < 0) {
			msrc__fail(m, e, "stream %u to %s: %s", i, hp, strerror(-e));
			uv_async_send(&m->done_async);
			return;
		}
	}
}

/* The destination's HELLO: its capabilities (resume needs the session's
 * token and port, so its JOIN), the link's RTT and its address. */
static int msrc__take_hello(struct msrc_stream *s, const struct stream_record *rec)
{
	struct migrate_src *m = s->m;
	struct stream_hello h;
	int e = stream_parse_hello(rec, &h);
	if (e)
		return e;
	/* The kernel's smoothed RTT: the HELLO round trip also covers the
	 * destination creating the VM. */
	unsigned rtt_us = xport_rtt_us(m->st[0].x);
	m->rtt_ns = rtt_us ? rtt_us * 1000ull : util_now_ns() - m->t_hello_sent;
	m->resume_ok = m->o.resume && (h.caps & STREAM_CAP_RESUME);
	struct sockaddr_storage ss;
	if (xport_peername(m->st[0].x, &ss) == 0 &&
	    !inet_ntop(ss.ss_family,
		       ss.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&ss)->sin_addr
					       : (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr,
		       m->peer_addr, sizeof(m->peer_addr)))
		m->peer_addr[0] = 0;
	m->token_offered = !!(h.caps & STREAM_CAP_TOKEN);
	if (m->nstreams == 1 && !m->resume_ok && !m->token_offered) {
		msrc__start_engine(m); /* an older destination: no token */
	} else {
		pthread_mutex_lock(&m->lock);
		m->phase = MSRC_JOIN;
		pthread_mutex_unlock(&m->lock);
	}
	return 0;
}

/* The destination's JOIN: the session's token and port, for the extra
 * connections and for resuming. Once only. */
static int msrc__take_join(struct msrc_stream *s, const struct stream_record *rec)
{
	struct migrate_src *m = s->m;
	struct stream_join j;
	int e = stream_parse_join(rec, &j);
	/* Port 0 only where nothing joins or resumes: the token alone. */
	if (e || m->token || j.index != 0 || j.count != m->nstreams || !j.token ||
	    (!j.port && (m->nstreams > 1 || m->resume_ok)))
		return -EPROTO;
	m->token = j.token;
	m->session_port = j.port;
	if (m->nstreams == 1)
		msrc__start_engine(m);
	else
		msrc__connect_extra(m);
	return 0;
}

/* A round's answer: how far the destination has applied. An answer to a
 * round we never ended is a lie; a late answer after STATE_DONE is
 * harmless. */
static int msrc__take_round_end(struct msrc_stream *s, const struct stream_record *rec)
{
	struct migrate_src *m = s->m;
	struct stream_round_end re;
	int e = stream_parse_round_end(rec, &re);
	pthread_mutex_lock(&m->lock);
	if (!e && (re.round > m->round_sent || re.round < m->dest_round))
		e = -EPROTO;
	if (!e) {
		m->dest_round = re.round;
		m->dest_applied = re.pages;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return e;
}

/* READY (-> COMMIT is next) and RUNNING (the end): the engine waits for
 * these phases. */
static int msrc__take_ready_running(struct msrc_stream *s, const struct stream_record *rec)
{
	struct migrate_src *m = s->m;
	enum msrc_phase from = rec->type == STREAM_READY ? MSRC_STATE_SENT : MSRC_COMMITTED;
	int e = stream_parse_empty(rec);
	if (e)
		return e;
	pthread_mutex_lock(&m->lock);
	if (m->phase == from) /* re-checked: the engine may have failed meanwhile */
		m->phase = rec->type == STREAM_READY ? MSRC_READY : MSRC_RUNNING;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static int msrc__take_ack(struct msrc_stream *s, const struct stream_record *rec)
{
	return s->m->resume_ok ? msrc__on_ack(s, rec) : -EPROTO;
}

#define PH(p) (1u << (p))
#define FROM(p) (~0u << (p)) /* p and every phase after it */

/* The source's state machine, record by record: a record from the
 * destination is taken only by the row of its type whose phases include
 * the current one and, unless any_conn, on connection 0; anything else
 * fails the migration. During a reconnection a connection takes only ACKs
 * until its RESUME was answered (a ROUND_END answer may follow that before
 * the other connections'). A row's function returns 0 or -errno (-EPROTO:
 * malformed or out of turn). */
static const struct msrc_accept {
	enum stream_type type;
	unsigned phases;
	int any_conn;
	int (*take)(struct msrc_stream *s, const struct stream_record *rec);
} msrc_accept[] = {
	{ STREAM_ACK, FROM(MSRC_JOIN), 1, msrc__take_ack },
	{ STREAM_HELLO, PH(MSRC_HELLO), 0, msrc__take_hello },
	{ STREAM_JOIN, PH(MSRC_JOIN), 0, msrc__take_join },
	{ STREAM_ROUND_END, PH(MSRC_PRECOPY) | PH(MSRC_STATE_SENT), 0, msrc__take_round_end },
	{ STREAM_READY, PH(MSRC_STATE_SENT), 0, msrc__take_ready_running },
	{ STREAM_RUNNING, PH(MSRC_COMMITTED), 0, msrc__take_ready_running },
};

static int msrc__on_record(void *opaque, const struct stream_record *rec)
{
	struct msrc_stream *s = opaque;
	struct migrate_src *m = s->m;
	int e = -EPROTO;

	if (rec->type == STREAM_ERROR) {
		uint32_t code;
		char text[STREAM_MAX_TEXT + 1];
		if (stream_parse_error(rec, &code, text, sizeof(text)) == 0)
			msrc__fail(m, -(int)(code ? code : EIO), "destination: %s", text);
		else
			msrc__fail(m, -EPROTO, "destination sent a malformed ERROR record");
		return -ECONNABORTED;
	}
	pthread_mutex_lock(&m->lock);
	enum msrc_phase ph = m->phase;
	pthread_mutex_unlock(&m->lock);
	int conn0 = s->idx == 0 && !(m->reconnecting && !s->resumed);
	for (size_t i = 0; i < sizeof(msrc_accept) / sizeof(msrc_accept[0]); i++) {
		const struct msrc_accept *a = &msrc_accept[i];
		if (a->type == rec->type && (a->phases & PH(ph)) && (a->any_conn || conn0)) {
			e = a->take(s, rec);
			break;
		}
	}
	if (e) {
		msrc__fail(m, -EPROTO, "unexpected or malformed %s record from the destination (connection %u, %s)",
			   stream_type_name(rec->type), s->idx, msrc__phase_name(ph));
		return -EPROTO;
	}
	return 0;
}

int msrc__on_data(struct xport_conn *x, const uint8_t *p, size_t n, void *opaque)
{
	struct msrc_stream *s = opaque;
	(void)x;
	s->last_rx = util_now_ns();
	int e = stream_reader_feed(&s->rd, p, n, msrc__on_record, s);
	if (e && !s->m->failed)
		msrc__fail(s->m, e, "stream %u: the destination sent an invalid stream (%s)", s->idx, strerror(-e));
	return e;
}

void msrc__on_close(struct xport_conn *x, int err, const char *why, void *opaque)
{
	struct msrc_stream *s = opaque;
	struct migrate_src *m = s->m;
	(void)x;
	pthread_mutex_lock(&m->lock);
	s->closed = 1;
	int expected = m->phase == MSRC_RUNNING || m->finished;
	pthread_cond_broadcast(&m->cond); /* the engine may wait for every connection to end */
	pthread_mutex_unlock(&m->lock);
	if (!expected && !msrc__link_closed(s, err, why))
		msrc__fail(m, err ? err : -ECONNRESET, "connection %u to %s closed: %s", s->idx, m->o.target, why);
	if (!m->engine_started && !m->finished)
		uv_async_send(&m->done_async);
}

