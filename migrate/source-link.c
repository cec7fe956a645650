/*
 * migrate/source-link.c - resume after a lost link, the sending side.
 *
 * Every record handed to a stream gets that stream's next number, and
 * PAGES records stay on the stream's unacked list until the destination's
 * ACK counts past them. When a connection is lost before READY, the loop
 * marks the link down and closes the others; the engine resumes a paused
 * guest, lets the encoders run dry and asks the loop to reconnect; each
 * new connection's RESUME is answered with the count the destination
 * received, and the pages of every later record go back to the pending
 * queue, so only what was lost (and what the guest dirtied meanwhile) is
 * sent again (docs/stream.md).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/source-internal.h"

#define ATTEMPT_TIMEOUT_MS 5000 /* one reconnection: TCP, TLS and every RESUME answered */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

/* ---- numbering and ACKs ---- */

/* The send lock makes numbers follow the order on the wire. */
int msrc__send(struct msrc_stream *s, void *buf, size_t len, struct msrc_job *keep)
{
	struct migrate_src *m = s->m;
	pthread_mutex_lock(&s->send_lock);
	pthread_mutex_lock(&m->lock);
	uint64_t seq = ++s->sent_seq;
	if (keep && m->resume_ok) {
		keep->seq = seq;
		msrc__jobs_append(&s->uhead, &s->utail, keep);
		s->ucount++;
		keep = NULL;
	}
	pthread_mutex_unlock(&m->lock);
	int e = xport_send(s->x, buf, len);
	pthread_mutex_unlock(&s->send_lock);
	free(keep);
	return e;
}

/* Loop, under m->lock: the destination has every record of s up to
 * records. */
static void msrc__acked(struct msrc_stream *s, uint64_t records)
{
	while (s->uhead && s->uhead->seq <= records) {
		struct msrc_job *j = s->uhead;
		s->uhead = j->next;
		free(j);
		s->ucount--;
	}
	if (!s->uhead)
		s->utail = NULL;
	s->acked = records;
	pthread_cond_broadcast(&s->m->cond);
}

/* ---- the engine's side ---- */

/* A send or wait failed: the connection's on_close (loop) decides whether
 * the migration failed or the link was lost and will be resumed; wait for
 * that verdict. -ENOTCONN: resume. */
int msrc__verdict(struct migrate_src *m, int e)
{
	if (e != -EPIPE && e != -ENOTCONN)
		return e;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 5;
	pthread_mutex_lock(&m->lock);
	while (!m->failed && !m->link_down)
		if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
			break;
	int r = m->failed ? m->failed : m->link_down ? -ENOTCONN : e;
	pthread_mutex_unlock(&m->lock);
	return r;
}

/* The link was lost before READY: run the guest again if a switchover had
 * paused it, let the encoders run dry (what they still send is lost and
 * numbered as such), have the loop reconnect, then queue again the pages
 * of every record the destination says it never received. */
int msrc__rejoin(struct migrate_src *m)
{
	int e;
	if (m->t_pause) {
		hv_vm_resume(m->vm);
		m->t_pause = m->t_paused = m->t_state_saved = 0;
		m->final_pages = 0;
	}
	pthread_mutex_lock(&m->lock);
	if (m->phase == MSRC_STATE_SENT)
		m->phase = MSRC_PRECOPY;
	pthread_mutex_unlock(&m->lock);
	msrc__workers_idle(m, 1); /* a failure is seen below */
	pthread_mutex_lock(&m->lock);
	uint64_t gen = m->resumed_gen;
	m->reconnect_req = 1;
	pthread_mutex_unlock(&m->lock);
	uv_async_send(&m->link_async);

	pthread_mutex_lock(&m->lock);
	while (!m->failed && m->resumed_gen == gen)
		pthread_cond_wait(&m->cond, &m->lock);
	e = m->failed;
	struct msrc_job *lost = m->lost;
	m->lost = NULL;
	pthread_mutex_unlock(&m->lock);

	uint64_t pages = 0;
	while (lost) {
		struct msrc_job *j = lost;
		lost = j->next;
		for (unsigned i = 0; !e && i < j->n; i++)
			if (!precopy_pages_is_deferred(&m->pages, j->gfns[i]))
				e = precopy_pages_push(&m->pages, j->gfns[i]);
		pages += j->n;
		if (j->seq) /* counted in pages_sent, never received */
			m->pages_lost += j->n;
		free(j);
	}
	m->pages_resent += pages;
	if (e)
		return e;
	struct migrate_stats s;
	msrc__stats(m, &s);
	s.phase = "resumed";
	s.pages_resent = pages; /* this reconnection's */
	msrc__event_stats(m, &s, MIGRATE_EV_RESUMED);
	return 0;
}

/* ---- the loop's side ---- */

static void msrc__attempt(struct migrate_src *m);

/* A connection was lost before READY and resume is on: every other
 * connection is closed too (one epoch of connections at a time), and the
 * engine, woken by link_down, quiesces and asks for a reconnection. */
static void msrc__link_lost(struct migrate_src *m, int err, const char *why)
{
	pthread_mutex_lock(&m->lock);
	__atomic_store_n(&m->link_down, 1, __ATOMIC_RELEASE);
	m->t_link_lost = util_now_ns();
	snprintf(m->link_why, sizeof(m->link_why), "%s", why ? why : strerror(-err));
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].x && !m->st[i].closed)
			xport_close(m->st[i].x, -ECONNRESET, "another connection of the migration was lost");
	/* The loop's own figures only: the engine may be mid-round. */
	struct migrate_stats s = { .phase = "link_lost",
				   .reconnects = m->reconnects,
				   .reason = m->link_why,
				   .elapsed_ms = (double)(util_now_ns() - m->t_start) / 1e6 };
	msrc__event_stats(m, &s, MIGRATE_EV_LINK_LOST);
}

/* Under m->lock: the answer to s's RESUME. The destination received
 * records up to this count; every later one was lost. */
static void msrc__resplit(struct migrate_src *m, struct msrc_stream *s, uint64_t records)
{
	msrc__acked(s, records);
	if (s->uhead) {
		s->utail->next = m->lost;
		m->lost = s->uhead;
		s->uhead = s->utail = NULL;
		s->ucount = 0;
	}
	s->sent_seq = records;
	s->resumed = 1;
}

static void msrc__attempt_done(struct migrate_src *m)
{
	uint64_t t = util_now_ns();
	uv_timer_stop(&m->retry_timer);
	m->reconnecting = 0;
	m->backoff_ms = 0;
	for (unsigned i = 0; i < m->nstreams; i++)
		m->st[i].last_rx = t;
	pthread_mutex_lock(&m->lock);
	__atomic_store_n(&m->link_down, 0, __ATOMIC_RELEASE);
	m->reconnects++;
	m->resumed_gen++;
	m->link_down_ns += t - m->t_link_lost;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static void msrc__retry(uv_timer_t *t)
{
	msrc__attempt(t->data);
}

/* A connection of a reconnection attempt ended: a refusal means the
 * session is gone (its port closes with it); anything else ends the
 * attempt, and the next follows after a growing pause. */
static void msrc__attempt_closed(struct migrate_src *m, int err, const char *why)
{
	if (err == -ECONNREFUSED)
		msrc__fail(m, err, "reconnecting after the link was lost (%s): the destination refused the connection, "
				   "so its session is gone", m->link_why);
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].x && !m->st[i].closed)
			xport_close(m->st[i].x, -ECANCELED, "the reconnection attempt failed");
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].x && !m->st[i].closed)
			return; /* the last on_close continues */
	if (msrc__aborted(m))
		return;
	m->backoff_ms = m->backoff_ms ? (m->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : m->backoff_ms * 2)
				      : BACKOFF_MIN_MS;
	fprintf(stderr, "migration of %s: reconnection attempt %u failed (%s); next in %u ms\n", m->name, m->epoch,
		why ? why : strerror(-err), m->backoff_ms);
	uv_timer_start(&m->retry_timer, msrc__retry, m->backoff_ms, 0);
}

static void msrc__attempt_timeout(uv_timer_t *t)
{
	struct migrate_src *m = t->data;
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].x && !m->st[i].closed) {
			xport_close(m->st[i].x, -ETIMEDOUT, "no answer to RESUME in time");
			return; /* its on_close ends the attempt */
		}
}

static void msrc__resume_ready(struct xport_conn *x, void *opaque)
{
	struct msrc_stream *s = opaque;
	struct migrate_src *m = s->m;
	struct stream_buf b = { 0 };
	struct stream_resume r = { .token = m->token, .index = s->idx, .count = (uint16_t)m->nstreams, .epoch = m->epoch };
	if (stream_put_resume(&b, &r) == 0)
		xport_write(x, b.p, b.len);
	stream_buf_free(&b);
	s->last_rx = util_now_ns();
}

/* Loop: every connection of the lost link has ended and the engine is
 * quiet; open new ones to the session port, each starting with RESUME. */
static void msrc__attempt(struct migrate_src *m)
{
	static const struct xport_callbacks cb = { .on_ready = msrc__resume_ready, .on_data = msrc__on_data,
						   .on_close = msrc__on_close };
	char hp[300];
	if (msrc__aborted(m))
		return;
	m->reconnecting = 1;
	m->epoch++;
	msrc__session_hostport(m, hp, sizeof(hp));
	for (unsigned i = 0; i < m->nstreams; i++) {
		struct msrc_stream *s = &m->st[i];
		if (s->x) {
			m->wire_old += xport_wire_out(s->x);
			xport_free(s->x);
			s->x = NULL;
		}
		stream_reader_free(&s->rd);
		stream_reader_init(&s->rd);
		s->resumed = 0;
		pthread_mutex_lock(&m->lock);
		s->closed = 0;
		pthread_mutex_unlock(&m->lock);
	}
	for (unsigned i = 0; i < m->nstreams; i++) {
		struct msrc_stream *s = &m->st[i];
		int e = xport_connect(m->loop, m->tls, hp, &cb, s, &s->x);
		if (e < 0) {
			s->x = NULL;
			pthread_mutex_lock(&m->lock);
			for (unsigned k = i; k < m->nstreams; k++)
				m->st[k].closed = 1;
			pthread_mutex_unlock(&m->lock);
			msrc__attempt_closed(m, e, "cannot connect");
			return;
		}
	}
	uv_timer_start(&m->retry_timer, msrc__attempt_timeout, ATTEMPT_TIMEOUT_MS, 0);
}

void msrc__link_async(uv_async_t *a)
{
	struct migrate_src *m = a->data;
	pthread_mutex_lock(&m->lock);
	int go = m->reconnect_req && !m->failed && !m->finished;
	m->reconnect_req = 0;
	pthread_mutex_unlock(&m->lock);
	if (go && !m->reconnecting)
		msrc__attempt(m);
}

/* A link that went silent (a partition: no FIN, no RST) is noticed by the
 * destination's ACK heartbeat stopping, long before TCP would give up. */
void msrc__link_check(uv_timer_t *t)
{
	struct migrate_src *m = t->data;
	util_thread_follow(&m->loop_follow_ns); /* PML_MIGRATE_WORKER_CPUS=auto: the vCPUs move */
	uint64_t now = util_now_ns(), lim = (uint64_t)m->o.link_timeout_s * 1000000000ull;
	pthread_mutex_lock(&m->lock);
	int watch = m->resume_ok && m->engine_started && !m->link_down && !m->failed && !m->finished &&
		    (m->phase == MSRC_PRECOPY || m->phase == MSRC_STATE_SENT);
	pthread_mutex_unlock(&m->lock);
	if (!watch || m->reconnecting)
		return;
	for (unsigned i = 0; i < m->nstreams; i++) {
		struct msrc_stream *s = &m->st[i];
		if (s->x && !s->closed && util_age_ns(now, s->last_rx) > lim) {
			char why[128];
			snprintf(why, sizeof(why), "nothing from the destination on connection %u for %u s", i,
				 m->o.link_timeout_s);
			xport_close(s->x, -ETIMEDOUT, why);
			return;
		}
	}
}

int msrc__on_ack(struct msrc_stream *s, const struct stream_record *rec)
{
	struct migrate_src *m = s->m;
	struct stream_ack a;
	int e, all = 1;
	/* Each connection's own count; never more than was sent on it, never
	 * less than before. */
	if ((e = stream_parse_ack(rec, &a)) == 0 && a.index != s->idx)
		e = -EPROTO;
	if (e)
		return e;
	pthread_mutex_lock(&m->lock);
	if (a.records > s->sent_seq || a.records < s->acked)
		e = -EPROTO;
	else if (m->reconnecting && !s->resumed)
		msrc__resplit(m, s, a.records);
	else
		msrc__acked(s, a.records);
	for (unsigned i = 0; i < m->nstreams; i++)
		all &= m->st[i].resumed;
	pthread_mutex_unlock(&m->lock);
	if (!e && m->reconnecting && all)
		msrc__attempt_done(m);
	return e;
}

int msrc__link_closed(struct msrc_stream *s, int err, const char *why)
{
	struct migrate_src *m = s->m;
	if (m->reconnecting) {
		msrc__attempt_closed(m, err, why);
		return 1;
	}
	pthread_mutex_lock(&m->lock);
	int down = m->link_down;
	int resumable = m->resume_ok && m->engine_started && !m->failed && m->reconnects < MAX_RECONNECTS &&
			(m->phase == MSRC_PRECOPY || m->phase == MSRC_STATE_SENT);
	pthread_mutex_unlock(&m->lock);
	if (down)
		return 1; /* one more connection of a link already lost */
	if (!resumable)
		return 0;
	msrc__link_lost(m, err, why);
	return 1;
}

void msrc__free_jobs(struct msrc_job *j)
{
	while (j) {
		struct msrc_job *n = j->next;
		free(j);
		j = n;
	}
}
