/*
 * migrate/dest.c - the receiving side's session: which records each phase
 * takes (one table, dst_accept), the handshake's own records (HELLO,
 * SHAPE, lane 0's JOIN), failure, deadlines and lifetime. The parts it
 * drives are named in migrate/dest-internal.h: the decode lanes, the
 * connections (JOIN, RESUME), the commit handshake.
 *
 * A lane is one of the source's --streams: its ordered records, its decode
 * worker and the count of records received on it. A connection carries a
 * lane; when the source asked for resume (STREAM_CAP_RESUME), a lane
 * outlives its connection: a lost connection before COMMIT leaves the
 * lane, its queue and the guest memory in place, and a RESUME on the
 * session port hands the lane to a new connection, answered with the count
 * so the source resends exactly what did not arrive.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "migrate/dest-internal.h"

struct xport_conn *dst__x0(struct migrate_dst *d)
{
	return d->lanes[0].conn ? d->lanes[0].conn->x : NULL;
}

void dst__fail(struct migrate_dst *d, int err, const char *fmt, ...)
{
	char why[600];
	va_list ap;
	if (d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return;
	d->phase = DST_FAILED;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	struct xport_conn *x0 = dst__x0(d);
	if (x0 && xport_is_ready(x0)) {
		struct stream_buf b = { 0 };
		if (stream_put_error(&b, (uint32_t)(err < 0 ? -err : EPROTO), why) == 0)
			xport_write(x0, b.p, b.len);
		stream_buf_free(&b);
	}
	dst__stop_workers(d);
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
		if (d->st[i].x)
			xport_close(d->st[i].x, 0, why); /* graceful: the ERROR goes out first */
	uv_timer_stop(&d->idle_timer);
	d->ops->failed(d->opaque, why);
}

/* ---- the records each phase takes ---- */

/* A capacity query (HELLO with STREAM_CAP_QUERY): answered with
 * CAPACITY, and the session ends; nothing is claimed or created. */
static int dst__end_query(struct migrate_dst *d);

static int dst__answer_query(struct migrate_dst *d, int probe)
{
	struct stream_capacity c = { 0 };
	char why[256] = "this destination answers no capacity query";
	int e = d->ops->capacity ? d->ops->capacity(d->opaque, &c, why, sizeof(why)) : -EOPNOTSUPP;
	if (e < 0) {
		dst__fail(d, e, "%s", why);
		return e;
	}
	struct stream_buf b = { 0 };
	struct xport_conn *x0 = dst__x0(d);
	if (x0 && stream_put_capacity(&b, &c) == 0)
		xport_write(x0, b.p, b.len);
	stream_buf_free(&b);
	if (probe) { /* the link's speed next: PROBE records until an empty one */
		d->phase = DST_PROBE;
		d->progress_at = d->probe_start = util_now_ns();
		return 0;
	}
	return dst__end_query(d);
}

/* A query is over: the connection closes once the answer is out. */
static int dst__end_query(struct migrate_dst *d)
{
	struct xport_conn *x0 = dst__x0(d);
	d->phase = DST_FAILED;
	if (x0)
		xport_close(x0, 0, "capacity query answered"); /* graceful: CAPACITY goes out first */
	uv_timer_stop(&d->idle_timer);
	d->ops->failed(d->opaque, "capacity query answered");
	return -ECANCELED;
}

/* PROBE: filler, counted from the first record's arrival; the empty one
 * ends the probe with the measure (PROBE_DONE). */
static int dst__take_probe(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	uint64_t now = util_now_ns();
	if (rec->len) {
		if (!d->probe_t0)
			d->probe_t0 = now;
		else
			d->probe_bytes += STREAM_HDR_SIZE + (uint64_t)rec->len;
		return 0;
	}
	struct stream_probe_done pd = { .bytes = d->probe_bytes, .ns = d->probe_t0 ? now - d->probe_t0 : 0 };
	struct stream_buf b = { 0 };
	struct xport_conn *x0 = dst__x0(d);
	if (x0 && stream_put_probe_done(&b, &pd) == 0)
		xport_write(x0, b.p, b.len);
	stream_buf_free(&b);
	return dst__end_query(d);
}

/* RESOLVE: what became of the migration the source names; the answer
 * (RESOLVED) ends the session as a query does. */
static int dst__take_resolve(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_resolve rq;
	char text[STREAM_MAX_TEXT + 1] = "";
	if (stream_parse_resolve(rec, &rq) < 0)
		return -EBADMSG;
	int outcome = d->ops->resolve(d->opaque, d->name, d->peer, &rq, text, sizeof(text));
	if (outcome < 0) {
		dst__fail(d, outcome, "%s", text[0] ? text : "cannot resolve");
		return outcome;
	}
	struct stream_buf b = { 0 };
	struct xport_conn *x0 = dst__x0(d);
	if (x0 && stream_put_resolved(&b, (uint32_t)outcome, text) == 0)
		xport_write(x0, b.p, b.len);
	stream_buf_free(&b);
	return dst__end_query(d);
}

/* HELLO: the VM's name (claimed on this host) and whether the source
 * wants resume. */
static int dst__take_hello(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_hello h;
	char why[256];
	int e;
	if ((e = stream_parse_hello(rec, &h)) < 0) {
		dst__fail(d, e,
			  e == -EINVAL		 ? "HELLO carries an invalid VM name (1-64 of [A-Za-z0-9._-])"
			  : e == -EPROTONOSUPPORT ? "HELLO announces an unsupported stream version"
						 : "malformed HELLO record (magic or lengths)");
		return e;
	}
	if ((h.caps & STREAM_CAP_QUERY) && (h.caps & STREAM_CAP_RESOLVE)) {
		if (!d->ops->resolve || !h.name[0]) {
			dst__fail(d, -EOPNOTSUPP, "%s", h.name[0] ? "this destination resolves no migrations"
								: "a RESOLVE's HELLO must name the VM");
			return -EOPNOTSUPP;
		}
		snprintf(d->name, sizeof(d->name), "%s", h.name);
		snprintf(d->peer, sizeof(d->peer), "%s", s->x ? xport_peer_name(s->x) : "");
		d->phase = DST_RESOLVE;
		return 0;
	}
	if (h.caps & STREAM_CAP_QUERY)
		return dst__answer_query(d, !!(h.caps & STREAM_CAP_PROBE));
	if (!h.name[0]) {
		dst__fail(d, -EINVAL, "HELLO carries no VM name");
		return -EINVAL;
	}
	snprintf(d->name, sizeof(d->name), "%s", h.name);
	d->resume = !!(h.caps & STREAM_CAP_RESUME);
	d->want_token = !!(h.caps & STREAM_CAP_TOKEN);
	snprintf(d->peer, sizeof(d->peer), "%s", s->x ? xport_peer_name(s->x) : "");
	if ((e = d->ops->claim(d->opaque, d->name, why, sizeof(why))) < 0) {
		dst__fail(d, e, "%s", why);
		return e;
	}
	d->phase = DST_SHAPE;
	return 0;
}

/* The VM is created empty (from the DOMAIN record's description when
 * there is one), lane 0's decoder starts. */
static int dst__create(struct dst_stream *s, const uint8_t *dom, uint32_t domlen)
{
	struct migrate_dst *d = s->d;
	char why[512];
	int e;
	d->nframes = d->shape.mem_bytes >> HV_PAGE_SHIFT;
	uint64_t nchunks = (d->nframes + STREAM_VERIFY_CHUNK - 1) / STREAM_VERIFY_CHUNK;
	if (!(d->verify_seen = calloc((nchunks + 63) / 64, 8))) {
		dst__fail(d, -ENOMEM, "out of memory");
		return -ENOMEM;
	}
	if ((e = d->ops->create_vm(d->opaque, &d->shape, dom, domlen, &d->vm, why, sizeof(why))) < 0) {
		dst__fail(d, e, "%s", why);
		return e;
	}
	if ((e = dst__start_worker(&d->lanes[0])) < 0) {
		dst__fail(d, e, "cannot start a decode thread");
		return e;
	}
	/* KVM guest memory is this process's own, faulted in on
	 * first write; Xen's is the hypervisor's, populated with
	 * the domain and only mapped here: nothing to prefault. */
	if (!strcmp(hv_vm_backend(d->vm), "kvm") && prefault_start(d->vm, d->nframes, &d->pf) < 0)
		d->pf = NULL; /* the decoders fault pages in themselves */
	d->phase = DST_JOIN;
	return 0;
}

/* SHAPE: the VM's size; a toolstack's guest's DOMAIN record follows. */
static int dst__take_shape(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	int e;
	if ((e = stream_parse_shape(rec, &d->shape)) < 0) {
		dst__fail(d, e, "invalid SHAPE (memory size, vCPUs or page size outside the limits)");
		return e;
	}
	if (d->shape.hv == STREAM_HV_XEN_DOMAIN) {
		d->phase = DST_DOMAIN;
		return 0;
	}
	return dst__create(s, NULL, 0);
}

static int dst__take_domain(struct dst_stream *s, const struct stream_record *rec)
{
	const uint8_t *blob;
	uint32_t len;
	if (stream_parse_domain(rec, &blob, &len) < 0)
		return -EBADMSG;
	return dst__create(s, blob, len);
}

/* Lane 0's JOIN: how many connections the source opens. HELLO is
 * answered now, with the session port when there is more than one or
 * resume. */
static int dst__take_join(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_join j;
	int e;
	if (stream_parse_join(rec, &j) < 0 || j.index != 0 || j.count > DST_MAX_STREAMS) {
		dst__fail(d, -EPROTO, "invalid JOIN");
		return -EPROTO;
	}
	d->nstreams = j.count;
	if (getrandom(&d->token, sizeof(d->token), 0) != sizeof(d->token) || !d->token)
		d->token = util_now_ns() | 1;
	if ((e = dst__reply_hello(d)) < 0) {
		dst__fail(d, e, "cannot answer HELLO: %s", strerror(-e));
		return e;
	}
	d->phase = DST_RECEIVING;
	if (d->ops->step)
		d->ops->step(d->opaque, MIGRATE_DST_RECEIVING, "HELLO answered");
	return 0;
}

enum { LANE0 = 1, LANES = 2, ANY_LANE = LANE0 | LANES }; /* LANES: the extra connections' lanes */

/* The destination's state machine, record by record: a record is taken
 * only by the row of its phase, type and lane, else it fails the
 * migration. A row's function returns 0, -EBADMSG for a malformed record
 * (reported here, with the phase) or another -errno once it has failed
 * the migration itself (or -ECANCELED: nothing more is read). */
static const struct dst_accept {
	enum dst_phase phase;
	enum stream_type type;
	unsigned lanes;
	int (*take)(struct dst_stream *s, const struct stream_record *rec);
} dst_accept[] = {
	{ DST_HELLO, STREAM_HELLO, LANE0, dst__take_hello },
	{ DST_SHAPE, STREAM_SHAPE, LANE0, dst__take_shape },
	{ DST_DOMAIN, STREAM_DOMAIN, LANE0, dst__take_domain },
	{ DST_JOIN, STREAM_JOIN, LANE0, dst__take_join },
	{ DST_RECEIVING, STREAM_PAGES, ANY_LANE, dst__queue_pages },
	{ DST_RECEIVING, STREAM_ROUND_END, ANY_LANE, dst__round_end },
	{ DST_RECEIVING, STREAM_VCPU, LANE0, dst__take_vcpu },
	{ DST_RECEIVING, STREAM_VERIFY, LANE0, dst__take_verify },
	{ DST_RECEIVING, STREAM_STATE_DONE, LANE0, dst__take_state_done },
	/* STATE_DONE on lane 0 may overtake another lane's last pages and
	 * its last ROUND_END: they still count until READY. */
	{ DST_APPLYING, STREAM_PAGES, LANES, dst__queue_pages },
	{ DST_APPLYING, STREAM_ROUND_END, LANES, dst__round_end },
	{ DST_READY, STREAM_COMMIT, LANE0, dst__take_commit },
	{ DST_PROBE, STREAM_PROBE, LANE0, dst__take_probe },
	{ DST_RESOLVE, STREAM_RESOLVE, LANE0, dst__take_resolve },
};

/* Why a record was refused, for the source and the log. */
static void dst__refuse(struct dst_stream *s, const struct stream_record *rec)
{
	const char *t = stream_type_name(rec->type);
	struct migrate_dst *d = s->d;
	if (s->lane->idx > 0) {
		dst__fail(d, -EPROTO, "unexpected or malformed %s record on connection %u", t, s->idx);
		return;
	}
	switch (d->phase) {
	case DST_HELLO:
		dst__fail(d, -EPROTO, "the stream does not start with HELLO (got %s)", t);
		break;
	case DST_SHAPE:
		dst__fail(d, -EPROTO, "expected SHAPE, got %s", t);
		break;
	case DST_DOMAIN:
		dst__fail(d, -EPROTO, "expected DOMAIN, got %s", t);
		break;
	case DST_JOIN:
		dst__fail(d, -EPROTO, "expected JOIN, got %s", t);
		break;
	case DST_RECEIVING:
		dst__fail(d, -EPROTO, "unexpected or malformed %s record while receiving memory", t);
		break;
	case DST_APPLYING:
		dst__fail(d, -EPROTO, "%s record after STATE_DONE", t);
		break;
	case DST_READY:
		dst__fail(d, -EPROTO, "expected COMMIT, got %s", t);
		break;
	case DST_PROBE:
		dst__fail(d, -EPROTO, "link probe: unexpected %s record", t);
		break;
	case DST_RESOLVE:
		dst__fail(d, -EPROTO, "expected RESOLVE, got %s", t);
		break;
	default:
		break;
	}
}

int dst__on_record(void *opaque, const struct stream_record *rec)
{
	struct dst_stream *s = opaque;
	struct migrate_dst *d = s->d;

	d->progress_at = util_now_ns();
	if (d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return -ECANCELED;
	if (s->idx > 0 && !s->joined)
		return dst__candidate_record(s, rec);
	if (!s->lane)
		return -ECANCELED; /* a connection already replaced */
	if (rec->type == STREAM_ERROR) {
		uint32_t code;
		char text[STREAM_MAX_TEXT + 1];
		if (stream_parse_error(rec, &code, text, sizeof(text)) < 0)
			snprintf(text, sizeof(text), "(malformed ERROR record)");
		dst__fail(d, -ECONNABORTED, "the source aborted: %s", text);
		return -ECANCELED;
	}
	/* Counted as the source counts what it sent: everything after the
	 * handshake (HELLO, SHAPE and JOIN on lane 0, JOIN or RESUME on the
	 * others), so that a RESUME's answer names exactly what arrived. */
	if (d->phase >= DST_RECEIVING && ++s->lane->records - s->lane->acked >= DST_ACK_EVERY && d->resume)
		dst__send_ack(s->lane);
	unsigned lane = s->lane->idx ? LANES : LANE0;
	for (size_t i = 0; i < sizeof(dst_accept) / sizeof(dst_accept[0]); i++) {
		const struct dst_accept *a = &dst_accept[i];
		if (a->phase != d->phase || a->type != rec->type || !(a->lanes & lane))
			continue;
		int e = a->take(s, rec);
		if (e != -EBADMSG)
			return e;
		break;
	}
	dst__refuse(s, rec);
	return -EPROTO;
}

/* ---- the loop's wake-up: workers' results, round answers, flow ---- */

static void dst__wake(uv_async_t *a)
{
	struct migrate_dst *d = a->data;
	if (d->freeing)
		return;
	pthread_mutex_lock(&d->lock);
	int werr = d->werr;
	char why[256];
	snprintf(why, sizeof(why), "%s", d->werr_why);
	pthread_mutex_unlock(&d->lock);
	if (werr) {
		dst__fail(d, werr, "%s", why);
		return;
	}
	/* A round is reached once every connection's ROUND_END of it is: each
	 * carries its own share of the round's pages. */
	pthread_mutex_lock(&d->lock);
	uint32_t reached = d->lanes[0].round_reached;
	for (unsigned i = 1; i < d->nstreams && i < DST_MAX_STREAMS; i++)
		if (d->lanes[i].round_reached < reached)
			reached = d->lanes[i].round_reached;
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++) {
		struct dst_lane *l = &d->lanes[i];
		struct dst_stream *s = l->conn;
		pthread_mutex_lock(&d->lock);
		int resume = s && s->paused && l->qbytes < DST_QUEUE_LOW;
		int answer = i == 0 && reached != l->round_answered && s;
		if (answer)
			l->round_answered = reached;
		pthread_mutex_unlock(&d->lock);
		if (answer && d->phase == DST_RECEIVING && s->x) {
			struct stream_buf b = { 0 };
			struct stream_round_end re = { .round = reached, .pages = atomic_load(&d->applied) };
			if (stream_put_round_end(&b, &re) == 0)
				xport_write(s->x, b.p, b.len);
			stream_buf_free(&b);
		}
		if (resume && s->x) {
			s->paused = 0;
			xport_read_pause(s->x, 0);
		}
	}
	dst__check_complete(d);
}

/* ---- deadlines ---- */

/* Every phase before COMMIT has a deadline, so a source that stalls,
 * lies (announces pages it never sends) or vanishes without a FIN (power
 * loss, partition: TCP keepalive notices that too) never pins this
 * session and its memory. */
static void dst__deadlines(uv_timer_t *t)
{
	struct migrate_dst *d = t->data;
	uint64_t now = util_now_ns(), ms = 1000000ull;
	uint64_t applied = atomic_load(&d->applied);
	if (applied != d->last_applied) {
		d->last_applied = applied;
		d->progress_at = now;
	}
	/* What the source already said is heard before it is judged silent:
	 * a session stopped (SIGSTOP, a hung host) and continued runs this
	 * timer before it reads what arrived meanwhile - a COMMIT among it. */
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
		if (d->st[i].x && xport_rx_pending(d->st[i].x))
			return;
	for (unsigned i = 1; i < DST_MAX_STREAMS; i++)
		if (d->st[i].x && !d->st[i].joined && util_age_ns(now, d->st[i].t_accept) > DST_JOIN_TIMEOUT_NS)
			dst__drop_candidate(&d->st[i]);
	/* ACKs: what arrived since the last one, and a heartbeat the source
	 * uses to notice a link that went silent. */
	if (d->resume && d->phase >= DST_RECEIVING && d->phase <= DST_READY)
		for (unsigned i = 0; i < d->nstreams; i++) {
			struct dst_lane *l = &d->lanes[i];
			if (l->conn && (l->records != l->acked || util_age_ns(now, l->ack_at) >= DST_HEARTBEAT_NS))
				dst__send_ack(l);
		}
	switch (d->phase) {
	case DST_HELLO:
		if (util_age_ns(now, d->t_start) > d->lim.handshake_ms * ms)
			dst__fail(d, -ETIMEDOUT, "no authenticated HELLO within %u ms of connecting",
				  d->lim.handshake_ms);
		break;
	case DST_SHAPE:
	case DST_DOMAIN:
	case DST_JOIN:
	case DST_RECEIVING:
		if (util_age_ns(now, d->progress_at) > d->lim.idle_ms * ms)
			dst__fail(d, -ETIMEDOUT, "nothing received from the source for %u s", d->lim.idle_ms / 1000);
		break;
	case DST_APPLYING:
		if (util_age_ns(now, d->progress_at) > d->lim.idle_ms * ms)
			dst__fail(d, -ETIMEDOUT,
				  "STATE_DONE announced %" PRIu64 " pages but only %" PRIu64 " arrived; none for %u s",
				  d->total_pages, applied, d->lim.idle_ms / 1000);
		break;
	case DST_READY:
		/* The source may have sent COMMIT (and stopped waiting for our
		 * RUNNING): destroying the VM could leave the guest running
		 * nowhere. It waits, paused, for the source's resolution. */
		if (util_age_ns(now, d->t_ready) > d->lim.idle_ms * ms)
			dst__in_doubt(d, "no COMMIT within %u s of READY", d->lim.idle_ms / 1000);
		break;
	case DST_RESOLVE:
	case DST_PROBE:
		if (util_age_ns(now, d->progress_at) > d->lim.idle_ms * ms)
			dst__fail(d, -ETIMEDOUT, "link probe: nothing received for %u s", d->lim.idle_ms / 1000);
		else if (util_age_ns(now, d->probe_start) > DST_PROBE_MAX_NS)
			dst__fail(d, -ETIMEDOUT, "link probe: longer than %llu s", DST_PROBE_MAX_NS / 1000000000ull);
		break;
	default:
		break;
	}
}

/* ---- resolution ---- */

int migrate_dst_resolve(struct migrate_dst *d, uint64_t token, enum stream_decision decision, const char *who, char *why,
			size_t len)
{
	if (!d->token || token != d->token) {
		snprintf(why, len, "not the migration this session holds");
		return -EACCES;
	}
	switch (d->phase) {
	case DST_RUNNING:
		snprintf(why, len, "the guest runs here since COMMIT");
		return STREAM_OUTCOME_RAN;
	case DST_FAILED:
		snprintf(why, len, "the migration failed here: nothing runs");
		return STREAM_OUTCOME_NONE;
	default:
		break;
	}
	if (decision == STREAM_DECIDE_ABORT) {
		dst__fail(d, -ECONNABORTED, "%s resolved the migration as aborted: destroyed before it ever ran", who);
		snprintf(why, len, "destroyed here before it ever ran: %s aborted", who);
		return STREAM_OUTCOME_NONE;
	}
	if (d->phase != DST_READY) {
		snprintf(why, len, "COMMIT named, but this session never answered READY (it is %s)",
			 d->phase == DST_APPLYING ? "applying the last pages" : "receiving");
		return STREAM_OUTCOME_UNKNOWN;
	}
	if (dst__commit(d) < 0) {
		snprintf(why, len, "the guest failed to start after COMMIT and was destroyed: it never ran here");
		return STREAM_OUTCOME_NONE;
	}
	snprintf(why, len, "COMMIT taken by resolution: the guest runs here now");
	return STREAM_OUTCOME_RAN;
}

size_t migrate_dst_unsent(struct migrate_dst *d)
{
	struct xport_conn *x0 = dst__x0(d);
	return x0 ? xport_pending(x0) : 0;
}

int migrate_dst_in_doubt(const struct migrate_dst *d) { return d->in_doubt && d->phase == DST_READY; }
uint64_t migrate_dst_token(const struct migrate_dst *d) { return d->token; }
const char *migrate_dst_peer(const struct migrate_dst *d) { return d->peer; }

/* ---- lifetime ---- */

void dst__handle_closed(uv_handle_t *h)
{
	struct migrate_dst *d = h->data;
	if (--d->handles_open)
		return;
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++) {
		xport_free(d->st[i].x);
		stream_reader_free(&d->st[i].rd);
	}
	dst__lanes_free(d);
	for (unsigned i = 0; i < HV_MAX_VCPUS; i++)
		free(d->vcpu_blob[i]);
	free(d->verify);
	free(d->verify_seen);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
}

static void dst__free_now(struct migrate_dst *d)
{
	dst__stop_workers(d);
	uv_close((uv_handle_t *)&d->idle_timer, dst__handle_closed);
	uv_close((uv_handle_t *)&d->wake, dst__handle_closed);
	dst__close_join(d);
}

static void dst__free_later(uv_async_t *a)
{
	struct migrate_dst *d = a->data;
	if (!d->verify_busy)
		dst__free_now(d);
}

void migrate_dst_free(struct migrate_dst *d)
{
	if (!d || d->freeing)
		return;
	d->freeing = 1;
	/* The decode threads stop now, not on the next loop turn: a caller
	 * that frees the session and then closes the loop and the VM (restore
	 * after a corrupted file, a session after a failure) left them
	 * writing into the VM and waking a loop that was gone (libuv aborts
	 * on that: seen as exit 134 one time in five). They never wait on
	 * this thread, so joining them here cannot deadlock. */
	dst__stop_workers(d);
	/* Callbacks of the connections may still be on the stack: the rest
	 * on the next loop turn (and after a running verify). */
	d->wake.async_cb = dst__free_later;
	uv_async_send(&d->wake);
}

static struct migrate_dst *dst__new(uv_loop_t *loop, struct xport_tls *tls, const struct migrate_dst_limits *lim,
				   const struct migrate_dst_ops *ops, void *opaque)
{
	struct migrate_dst *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->loop = loop;
	d->tls = tls;
	d->ops = ops;
	d->opaque = opaque;
	d->nstreams = 1;
	d->t_start = d->progress_at = util_now_ns();
	migrate_dst_limits_default(&d->lim);
	if (lim)
		d->lim = *lim;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++) {
		d->st[i].d = d;
		d->st[i].idx = i;
		stream_reader_init(&d->st[i].rd);
		d->lanes[i].d = d;
		d->lanes[i].idx = i;
	}
	d->st[0].lane = &d->lanes[0];
	d->lanes[0].conn = &d->st[0];
	uv_timer_init(loop, &d->idle_timer);
	uv_async_init(loop, &d->wake, dst__wake);
	d->idle_timer.data = d->wake.data = d;
	d->handles_open = 2;
	return d;
}

int migrate_dst_start_feed(uv_loop_t *loop, const struct migrate_dst_limits *lim, const struct migrate_dst_ops *ops,
			   void *opaque, struct migrate_dst **out)
{
	struct migrate_dst *d = dst__new(loop, NULL, lim, ops, opaque);
	if (!d)
		return -ENOMEM;
	uv_timer_start(&d->idle_timer, dst__deadlines, 200, 200);
	*out = d;
	return 0;
}

int migrate_dst_feed(struct migrate_dst *d, const void *p, size_t n)
{
	if (d->freeing || d->st[0].x || d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return -ECANCELED;
	dst__on_data(NULL, p, n, &d->st[0]);
	/* Applied before returning, so a caller sees the outcome of what it fed
	 * on the next loop turns (READY, a decode error) without timing. */
	pthread_mutex_lock(&d->lock);
	while (!dst__lanes_idle(d) && !d->stop_workers)
		pthread_cond_wait(&d->cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
	return d->phase == DST_FAILED || d->phase == DST_RUNNING ? -ECANCELED : 0;
}

int migrate_dst_start(uv_loop_t *loop, struct xport_tls *tls, int fd, const struct migrate_dst_limits *lim,
		      const struct migrate_dst_ops *ops, void *opaque, struct migrate_dst **out)
{
	struct migrate_dst *d = dst__new(loop, tls, lim, ops, opaque);
	if (!d)
		return -ENOMEM;
	int e = xport_accept_fd(loop, tls, fd, &dst_cb, &d->st[0], &d->st[0].x);
	if (e < 0) {
		d->st[0].x = NULL;
		migrate_dst_free(d);
		return e;
	}
	xport_rx_offload(d->st[0].x); /* before its handshake: it has not read yet */
	uv_timer_start(&d->idle_timer, dst__deadlines, 200, 200);
	*out = d;
	return 0;
}

void migrate_dst_limits_default(struct migrate_dst_limits *lim)
{
	lim->handshake_ms = 10000;
	lim->idle_ms = 60000;
}
