/*
 * migrate/source.c - sending side: the pre-copy engine thread (rounds,
 * switchover, commit) and the migration's lifetime on the loop.
 *
 * Pages: the page sets of precopy/pages.h (pending FIFO, deferred hot
 * pages) fed by the dirty log, which the engine harvests every few
 * milliseconds while it dispatches, and a scan cursor for the first pass
 * over every backed page. When to stop is precopy/policy.h's decision and
 * how hard to throttle precopy/throttle.h's: this file measures, asks and
 * acts. Stream s carries the pages with gfn % streams == s,
 * so a page's newer copy always follows its older one on the same TCP
 * connection and the destination needs no reordering.
 *
 * Options live in source-options.c, the encoders and their queues in
 * source-pipeline.c, the connections and the destination's records in
 * source-conn.c, resume after a lost link in source-link.c;
 * source-internal.h is what they share. This file is the engine and the
 * migration's lifetime.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "migrate/source-internal.h"
#include "migrate/stream.h"
#include "migrate/verify.h"
#include "transport/xport.h"

#define HOT_ROUNDS 3           /* dirty in this many rounds: hold back to the end */
#define HARVEST_EVERY_NS 5000000ull
#define HARVEST_EVERY_TOOLSTACK_NS 250000000ull
#define PROGRESS_EVERY_NS 200000000ull
#define REPLY_TIMEOUT_MS 30000
#define RUNNING_MIN_WAIT_MS 2000 /* after COMMIT, even past --max-time */

void msrc__fail(struct migrate_src *m, int err, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&m->lock);
	if (!m->failed) {
		m->failed = err ? err : -EIO;
		va_start(ap, fmt);
		vsnprintf(m->fail_why, sizeof(m->fail_why), fmt, ap);
		va_end(ap);
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

int msrc__aborted(struct migrate_src *m)
{
	pthread_mutex_lock(&m->lock);
	int r = m->failed;
	pthread_mutex_unlock(&m->lock);
	return r;
}

void msrc__event(struct migrate_src *m, const char *json)
{
	size_t n = strlen(json);
	pthread_mutex_lock(&m->lock);
	char *p = realloc(m->events, m->ev_len + n + 2);
	if (p) {
		memcpy(p + m->ev_len, json, n);
		p[m->ev_len + n] = '\n';
		p[m->ev_len + n + 1] = 0;
		m->events = p;
		m->ev_len += n + 1;
	}
	pthread_mutex_unlock(&m->lock);
	uv_async_send(&m->ev_async);
}

/* ---- the dirty log (engine thread) ---- */

/* Harvests the dirty log into the page sets. final: the guest is paused;
 * defer nothing. */
static int msrc__harvest(struct migrate_src *m, struct precopy_dirty_set *set, int final)
{
	uint64_t t0 = util_now_ns();
	long n = precopy_dirtylog_harvest(m->dl, set);
	/* A harvest that costs much (Xen's CLEAN over a whole p2m, which
	 * also write-protects every page the guest then faults on again)
	 * runs less often: at most a tenth of the engine's time. */
	uint64_t cost = util_now_ns() - t0;
	m->harvest_every_ns = cost * 10 > HARVEST_EVERY_NS ? cost * 10 : HARVEST_EVERY_NS;
	/* A toolstack's Xen guest: each CLEAN write-protects all its memory
	 * again, and its kernel then takes a fault on every page it writes.
	 * libxenguest cleans once a round; a quarter of a second is plenty
	 * for the policy's rates. */
	if (m->toolstack && m->harvest_every_ns < HARVEST_EVERY_TOOLSTACK_NS)
		m->harvest_every_ns = HARVEST_EVERY_TOOLSTACK_NS;
	if (n == -ENOMEM) {
		/* Entries were consumed and lost: everything must be resent. */
		m->scan_cursor = 0;
		return 0;
	}
	if (n < 0 && m->toolstack && (n == -ENXIO || n == -ESTALE))
		msrc__fail(m, (int)n, "the guest's memory changed under the migration (its balloon driver gave back or "
				      "took pages): it runs on here; migrate it again");
	if (n < 0)
		return (int)n;
	return precopy_pages_dirtied(&m->pages, set->gfns, (size_t)n, final);
}

/* Next page of the first pass: backed pages only, so memory the guest
 * never touched costs nothing. Returns 1 with *gfn, 0 when done. */
static int msrc__scan_next(struct migrate_src *m, uint64_t *gfn)
{
	static __thread uint8_t vec[512];
	static __thread uint64_t vec_base = UINT64_MAX, vec_n;
	while (m->scan_cursor < m->nframes) {
		uint64_t g = m->scan_cursor;
		if (g < vec_base || g >= vec_base + vec_n) {
			vec_base = g & ~511ull;
			vec_n = m->nframes - vec_base < 512 ? m->nframes - vec_base : 512;
			if (hv_mem_present_range(m->vm, vec_base, vec_n, vec) < 0)
				memset(vec, 1, sizeof(vec)); /* cannot tell: send it */
			/* Skip whole absent chunks fast. */
			if (!memchr(vec + (g - vec_base), 1, vec_n - (g - vec_base))) {
				m->scan_cursor = vec_base + vec_n;
				continue;
			}
		}
		m->scan_cursor++;
		if (vec[g - vec_base] && !precopy_pages_is_pending(&m->pages, g) && !precopy_pages_is_deferred(&m->pages, g)) {
			*gfn = g;
			return 1;
		}
	}
	vec_base = UINT64_MAX;
	return 0;
}

/* ---- what the policy is fed (engine thread) ---- */

static uint64_t msrc__pending_bytes(struct migrate_src *m)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].x) /* NULL: a reconnection that could not even start */
			n += xport_pending(m->st[i].x);
	return n;
}

static struct precopy_cost msrc__cost(struct migrate_src *m)
{
	return (struct precopy_cost){
		.pages = precopy_pages_pending(&m->pages) + precopy_pages_deferred(&m->pages),
		.encode_pps = m->rates.encode_pps,
		.link_Bps = m->rates.link_Bps,
		.queued_bytes = msrc__pending_bytes(m),
		.vcpu_save_ns = m->vcpu_save_ns,
		.vcpu_bytes = m->vcpu_bytes,
		.rtt_ns = m->rtt_ns,
	};
}

/* Applies the throttle's new percentages. */
static void msrc__throttle_apply(struct migrate_src *m, uint32_t changed)
{
	for (unsigned i = 0; i < m->thr.nvcpus; i++)
		if (changed & (1u << i))
			hv_vcpu_throttle(m->vm, i, m->thr.pct[i]);
}

/* Reads each vCPU's dirty-log entry count; 0, or -ENOTSUP when the log
 * cannot tell vCPUs apart (bitmap). */
static int msrc__vcpu_entries(struct migrate_src *m, uint64_t *ent)
{
	for (unsigned i = 0; i < hv_vm_config(m->vm)->vcpus; i++)
		if (hv_dirty_vcpu_entries(m->vm, i, &ent[i]) < 0)
			return -ENOTSUP;
	return 0;
}

/* The policy trace (PML_MIGRATE_POLICY_TRACE=FILE): one CSV line per
 * decision and per throttle step, what tests/test-precopy.c replays. */
static void msrc__trace_decision(struct migrate_src *m, const struct precopy_decision_in *in,
				 enum precopy_verdict v, uint64_t expected_ns)
{
	if (!m->trace)
		return;
	const struct precopy_cost *c = &in->cost;
	fprintf(m->trace,
		"decide,%u,%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64
		",%" PRIu64 ",%d,%" PRIu64 ",%" PRIu64 ",%s\n",
		m->pages.round, c->pages, c->encode_pps, c->link_Bps, c->queued_bytes, c->vcpu_save_ns, c->vcpu_bytes,
		c->rtt_ns, in->downtime_limit_ns, expected_ns, in->drained, in->now_ns - m->t_start,
		in->deadline_ns - m->t_start, precopy_verdict_name(v));
}

static void msrc__throttle(struct migrate_src *m, uint64_t dt_ns)
{
	uint64_t ent[HV_MAX_VCPUS];
	if (!m->o.throttle || m->pages.round < 3)
		return;
	int have = msrc__vcpu_entries(m, ent) == 0;
	uint32_t changed = precopy_throttle_step(&m->thr, m->rates.encode_pps, m->rates.dirty_pps, have ? ent : NULL,
						 dt_ns);
	if (m->trace) {
		/* vCPU 0 only: the replay drives a one-vCPU throttle. */
		fprintf(m->trace, "throttle,%u,%" PRIu64 ",%" PRIu64 ",%d,%" PRIu64 ",%" PRIu64 ",%u\n", m->pages.round,
			m->rates.encode_pps, m->rates.dirty_pps, have, have ? ent[0] : 0, dt_ns, m->thr.pct[0]);
	}
	msrc__throttle_apply(m, changed);
}

static void msrc__unthrottle(struct migrate_src *m)
{
	msrc__throttle_apply(m, precopy_throttle_release(&m->thr));
}

static uint64_t msrc__wire_out(struct migrate_src *m)
{
	uint64_t n = m->wire_old;
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].x) /* NULL: a reconnection that could not even start */
			n += xport_wire_out(m->st[i].x);
	return n;
}

/* Every figure of the migration so far, for events and the report
 * (migrate/stats.h names them). Engine thread, or the loop once the
 * engine is gone. */
void msrc__stats(struct migrate_src *m, struct migrate_stats *s)
{
	struct precopy_dirtylog_stats st;
	precopy_dirtylog_get_stats(m->dl, &st);
	uint64_t now = util_now_ns(), end = m->t_running ? m->t_running : now, total = end - m->t_start;
	uint64_t pages = atomic_load(&m->pages_sent), zero = atomic_load(&m->zero_pages);
	uint64_t payload = atomic_load(&m->page_payload), wire = msrc__wire_out(m);
	unsigned tmax = 0;
	for (unsigned i = 0; i < m->thr.nvcpus; i++)
		if (m->thr.pct[i] > tmax)
			tmax = m->thr.pct[i];
	*s = (struct migrate_stats){
		.name = m->name,
		.target = m->o.target,
		.dirty_log = hv_dirty_mode_name(precopy_dirtylog_mode(m->dl)),
		.total_time_ms = (double)total / 1e6,
		.setup_time_ms = m->t_setup_done ? (double)(m->t_setup_done - m->t_start) / 1e6 : 0,
		.downtime_ms = m->t_running && m->t_pause ? (double)(m->t_running - m->t_pause) / 1e6 : 0,
		.downtime_min_ms = m->t_commit ? (double)(m->t_commit - m->t_paused) / 1e6 : 0,
		.expected_downtime_ms = (double)m->expected_downtime_ns / 1e6,
		.final_send_ms = m->t_state_sent ? (double)(m->t_state_sent - m->t_pause) / 1e6 : 0,
		.state_saved_ms = m->t_state_saved ? (double)(m->t_state_saved - m->t_pause) / 1e6 : 0,
		.ready_wait_ms = m->t_ready ? (double)(m->t_ready - m->t_state_sent) / 1e6 : 0,
		.commit_wait_ms = m->t_running ? (double)(m->t_running - m->t_ready) / 1e6 : 0,
		.rtt_ms = (double)m->rtt_ns / 1e6,
		.link_down_ms = (double)m->link_down_ns / 1e6,
		.elapsed_ms = (double)(now - m->t_start) / 1e6,
		.throughput_mbps = total ? (double)wire * 8000.0 / (double)total : 0,
		.compression_ratio = payload ? (double)(pages - zero) * HV_PAGE_SIZE / (double)payload : 0,
		.harvest_time_ms = (double)(st.total_ns - m->harvest_ns0) / 1e6,
		.throttle_time_ms = (double)m->thr.throttled_ns / 1e6,
		.round = m->pages.round,
		.remaining_pages = precopy_pages_pending(&m->pages) + (m->scan_cursor < m->nframes ? 1 : 0),
		.deferred_pages = precopy_pages_deferred(&m->pages),
		.final_pages = m->final_pages,
		.pages_sent = pages,
		.zero_pages = zero,
		.lz4_pages = atomic_load(&m->lz4_pages),
		.bytes_sent = atomic_load(&m->record_bytes),
		.bytes_on_wire = wire,
		.dirty_rate_pps = m->rates.dirty_pps,
		.harvests = st.harvests - m->harvests0,
		.deferred_hot_pages = m->pages.deferred_total,
		.verified_chunks = m->verify_chunks,
		.pages_resent = m->pages_resent,
		.throttle_pct = tmax,
		.throttle_max_pct = m->thr.max_pct,
		.streams = m->nstreams,
		.reconnects = m->reconnects,
		.tls = !m->o.insecure,
		.forced_switchover = m->forced,
	};
}

void msrc__event_stats(struct migrate_src *m, const struct migrate_stats *s, enum migrate_event ev)
{
	char *line = migrate_stats_line(s, ev);
	if (line)
		msrc__event(m, line);
	free(line);
}

static void msrc__progress(struct migrate_src *m, const char *phase)
{
	struct migrate_stats s;
	msrc__stats(m, &s);
	s.phase = phase;
	msrc__event_stats(m, &s, MIGRATE_EV_PROGRESS);
}

/* ---- waiting for the destination ---- */

/* Waits until the handshake reaches phase, a failure, or timeout_ms. */
static int msrc__wait(struct migrate_src *m, enum msrc_phase phase, unsigned timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += timeout_ms / 1000;
	ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&m->lock);
	int e = 0;
	while (m->phase < phase && !m->failed && !m->link_down)
		if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT) {
			e = -ETIMEDOUT;
			break;
		}
	if (m->phase >= phase)
		e = 0;
	else if (m->failed)
		e = m->failed;
	else if (m->link_down)
		e = -ENOTCONN;
	pthread_mutex_unlock(&m->lock);
	return e;
}

/* Moves the handshake forward (engine thread); fails if the migration
 * already failed or was cancelled, so a cancel and COMMIT never cross. */
static int msrc__set_phase(struct migrate_src *m, enum msrc_phase phase)
{
	pthread_mutex_lock(&m->lock);
	int e = m->failed;
	if (!e)
		m->phase = phase;
	pthread_mutex_unlock(&m->lock);
	return e;
}

static int msrc__send0(struct migrate_src *m, struct stream_buf *b, int e)
{
	if (e) {
		stream_buf_free(b);
		return e;
	}
	atomic_fetch_add(&m->record_bytes, b->len);
	e = msrc__send(&m->st[0], b->p, b->len, NULL);
	memset(b, 0, sizeof(*b));
	return e;
}

/* ---- the engine ---- */

static struct precopy_sample msrc__sample(struct migrate_src *m, uint64_t t)
{
	return (struct precopy_sample){
		.t_ns = t,
		.pages_done = atomic_load(&m->pages_done),
		.busy_ns = atomic_load(&m->busy_ns),
		.dirtied = m->pages.added,
		.wire_bytes = msrc__wire_out(m),
		.queued_bytes = msrc__pending_bytes(m),
	};
}

static void msrc__fail_timeout(struct migrate_src *m)
{
	msrc__fail(m, -ETIMEDOUT, "did not converge within --max-time %us (expected downtime %.1f ms, limit %u ms)",
		   m->o.max_time_s, (double)m->expected_downtime_ns / 1e6, m->o.downtime_ms);
}

/* Rounds until the policy says switch over (0) or a failure. */
static int msrc__precopy(struct migrate_src *m, struct precopy_dirty_set *set)
{
	uint64_t deadline = m->t_start + (uint64_t)m->o.max_time_s * 1000000000ull;
	uint64_t last_harvest = 0, last_progress = 0;
	uint64_t round_done0 = atomic_load(&m->pages_done);
	int scanning = m->scan_cursor < m->nframes, e;
	struct precopy_sample smp = msrc__sample(m, util_now_ns());

	/* After a resumed link the first pass goes on where it stopped and
	 * the rate window starts over from here. */
	m->rates.started = 0;
	m->stall = (struct precopy_stall){ 0 };
	precopy_rates_sample(&m->rates, &smp, m->nstreams, NULL);
	for (;;) {
		if (msrc__aborted(m))
			return -ECANCELED;
		/* Once per page: no lock (link_down is written under it). */
		if (__atomic_load_n(&m->link_down, __ATOMIC_ACQUIRE))
			return -ENOTCONN;
		uint64_t t = util_now_ns();
		if (t > deadline) {
			msrc__fail_timeout(m);
			return -ETIMEDOUT;
		}
		if (t - last_harvest >= m->harvest_every_ns) {
			if ((e = msrc__harvest(m, set, 0)) < 0)
				return e;
			last_harvest = t;
		}
		if (t - last_progress >= PROGRESS_EVERY_NS) {
			msrc__progress(m, "precopy");
			last_progress = t;
		}
		/* Next page: this round's pending pages first, then the scan. */
		uint64_t gfn;
		int have = precopy_pages_round_next(&m->pages, &gfn);
		if (!have && scanning) {
			have = msrc__scan_next(m, &gfn);
			if (!have)
				scanning = 0;
		}
		if (have) {
			if ((e = msrc__send_page(m, gfn)) < 0)
				return e;
			continue;
		}

		/* Round boundary. */
		if ((e = msrc__flush_all(m)) < 0)
			return e;
		t = util_now_ns();
		uint64_t done = atomic_load(&m->pages_done), dt;
		if ((e = msrc__harvest(m, set, 0)) < 0)
			return e;
		last_harvest = t;
		smp = msrc__sample(m, t);
		if (precopy_rates_sample(&m->rates, &smp, m->nstreams, &dt))
			msrc__throttle(m, dt);
		if ((e = precopy_pages_set_defer_budget(&m->pages, precopy_defer_budget(m->rates.encode_pps,
											   m->o.downtime_ms))) < 0)
			return e;
		struct precopy_decision_in in = { .cost = msrc__cost(m),
						  .downtime_limit_ns = (uint64_t)m->o.downtime_ms * 1000000ull,
						  .now_ns = t,
						  .deadline_ns = deadline,
						  .may_force = m->o.throttle,
						  .stall_force_ns = m->toolstack ? PRECOPY_STALL_FORCE_TOOLSTACK_NS : 0 };
		in.stalled_ns = precopy_stall_note(&m->stall, precopy_expected_downtime_ns(&in.cost), t);
		enum precopy_verdict v = precopy_decide(&in, &m->expected_downtime_ns);
		msrc__trace_decision(m, &in, v, m->expected_downtime_ns);
		/* ROUND_END on every connection: the destination answers a round
		 * once each connection's share of it is applied. */
		pthread_mutex_lock(&m->lock);
		m->round_sent = m->pages.round;
		pthread_mutex_unlock(&m->lock);
		for (unsigned i = 0; i < m->nstreams; i++) {
			struct msrc_job *j = calloc(1, sizeof(*j));
			if (!j)
				return -ENOMEM;
			j->round_end = 1;
			j->re = (struct stream_round_end){ .round = m->pages.round,
							   .pages = done - round_done0,
							   .bytes = atomic_load(&m->record_bytes),
							   .remaining = in.cost.pages };
			if ((e = msrc__push_job(m, &m->st[i], j)) < 0)
				return e;
		}
		msrc__progress(m, "round");
		last_progress = t;
		if (v == PRECOPY_DRAIN) {
			/* Close: let the pipeline empty while the guest still runs,
			 * then judge again on what is dirty now. */
			if ((e = msrc__drain(m, m->pages.round)) < 0)
				return e;
			if ((e = msrc__harvest(m, set, 0)) < 0)
				return e;
			in.cost = msrc__cost(m);
			in.drained = 1;
			in.now_ns = util_now_ns();
			v = precopy_decide(&in, &m->expected_downtime_ns);
			msrc__trace_decision(m, &in, v, m->expected_downtime_ns);
		}
		switch (v) {
		case PRECOPY_SWITCHOVER:
			return 0;
		case PRECOPY_SWITCHOVER_FORCED:
			m->forced = 1;
			return 0;
		case PRECOPY_TIMEOUT:
			msrc__fail_timeout(m);
			return -ETIMEDOUT;
		case PRECOPY_DRAIN: /* not after drained=1 */
		case PRECOPY_CONTINUE:
			break;
		}
		if (precopy_pages_pending(&m->pages) < 64)
			usleep(2000); /* let some dirt gather instead of spinning on tiny rounds */
		precopy_pages_round_begin(&m->pages);
		round_done0 = atomic_load(&m->pages_done);
	}
}

static int msrc__send_verify(struct migrate_src *m)
{
	uint64_t nchunks = (m->nframes + STREAM_VERIFY_CHUNK - 1) / STREAM_VERIFY_CHUNK;
	uint64_t *d = malloc(sizeof(uint64_t) * (nchunks < STREAM_MAX_VERIFY ? nchunks : STREAM_MAX_VERIFY));
	int e = d ? 0 : -ENOMEM;
	for (uint64_t c = 0; !e && c < nchunks;) {
		uint32_t n = nchunks - c < STREAM_MAX_VERIFY ? (uint32_t)(nchunks - c) : STREAM_MAX_VERIFY;
		e = migrate_verify_digests(m->vm, c, n, d);
		if (!e) {
			struct stream_buf b = { 0 };
			e = msrc__send0(m, &b, stream_put_verify(&b, c, n, d));
		}
		c += n;
	}
	m->verify_chunks = nchunks;
	free(d);
	return e;
}

/* Paused from here: final pages, vCPU state, READY, COMMIT, RUNNING. */
static int msrc__switchover(struct migrate_src *m, struct precopy_dirty_set *set)
{
	unsigned nv = hv_vm_config(m->vm)->vcpus;
	int e;

	char why[300];
	uint64_t t_stop = util_now_ns();
	/* A guest that must help (a toolstack's Xen guest) suspends itself
	 * here; if it does not, it runs on and the migration fails. */
	if ((e = hv_vm_suspend(m->vm, why, sizeof(why))) < 0) {
		msrc__fail(m, e, "%s", why);
		return e;
	}
	m->t_pause = t_stop;
	m->t_paused = util_now_ns(); /* every vCPU is out of the guest from here */
	msrc__unthrottle(m);
	if (hv_vm_has_ended(m->vm)) {
		msrc__fail(m, -ESRCH, "the guest stopped during the migration");
		return -ESRCH;
	}
	/* Paused: every vCPU is out of KVM_RUN, so the log is complete. */
	if ((e = msrc__harvest(m, set, 1)) < 0)
		return e;
	if ((e = precopy_pages_undefer_all(&m->pages)) < 0)
		return e;
	for (uint64_t g; msrc__scan_next(m, &g);) /* only after a lost harvest */
		if ((e = msrc__send_page(m, g)) < 0)
			return e;
	m->final_pages = precopy_pages_pending(&m->pages);
	for (uint64_t g; precopy_pages_pop(&m->pages, &g);)
		if ((e = msrc__send_page(m, g)) < 0)
			return e;
	if ((e = msrc__flush_all(m)) < 0 || (e = msrc__workers_idle(m, 0)) < 0)
		return e;
	for (unsigned i = 0; i < nv; i++) {
		void *blob;
		size_t len;
		struct stream_buf b = { 0 };
		if ((e = hv_vcpu_save(m->vm, i, &blob, &len)) < 0) {
			msrc__fail(m, e, "saving vCPU %u: %s", i, strerror(-e));
			return e;
		}
		m->t_state_saved = util_now_ns();
		e = msrc__send0(m, &b, stream_put_vcpu(&b, i, blob, (uint32_t)len));
		free(blob);
		if (e < 0)
			return e;
	}
	if (m->o.verify && (e = msrc__send_verify(m)) < 0)
		return e;
	struct stream_buf b = { 0 };
	/* READY is acceptable from now on, and only from now on. */
	if ((e = msrc__set_phase(m, MSRC_STATE_SENT)) < 0)
		return e;
	/* What the destination will have received: lost records were resent. */
	if ((e = msrc__send0(m, &b, stream_put_state_done(&b, atomic_load(&m->pages_sent) - m->pages_lost))) < 0)
		return e;
	m->t_state_sent = util_now_ns();
	msrc__progress(m, "switchover");
	if ((e = msrc__wait(m, MSRC_READY, REPLY_TIMEOUT_MS)) < 0) {
		if (e == -ETIMEDOUT)
			msrc__fail(m, e, "the destination did not answer READY within %u s", REPLY_TIMEOUT_MS / 1000);
		return e;
	}
	m->t_ready = util_now_ns();
	/* Where the hypervisor names VMs (Xen), the destination takes the
	 * name at COMMIT: step aside first, as `xl migrate` does, in case
	 * both ends share one host. A failure here costs only the name. */
	const char *hvname = hv_vm_config(m->vm)->name;
	if (hvname[0]) {
		char away[96];
		snprintf(away, sizeof(away), "%s--migratedaway", hvname);
		m->renamed_away = hv_vm_rename(m->vm, away) == 0;
	}
	/* The point of no return: from here the source never resumes. */
	if ((e = msrc__set_phase(m, MSRC_COMMITTED)) < 0)
		return e;
	m->t_commit = util_now_ns();
	if ((e = msrc__send0(m, &b, stream_put_empty(&b, STREAM_COMMIT))) < 0) {
		/* Never queued: the destination cannot have it. */
		pthread_mutex_lock(&m->lock);
		m->phase = MSRC_READY;
		pthread_mutex_unlock(&m->lock);
		return e;
	}
	/* --max-time bounds this wait too (the outcome is then indeterminate),
	 * but a COMMIT sent just before it still gets a moment for RUNNING. */
	uint64_t end = m->t_start + (uint64_t)m->o.max_time_s * 1000000000ull, t = util_now_ns();
	unsigned wait_ms = end > t ? (unsigned)((end - t) / 1000000) : 0;
	if (wait_ms < RUNNING_MIN_WAIT_MS)
		wait_ms = RUNNING_MIN_WAIT_MS;
	if (wait_ms > REPLY_TIMEOUT_MS)
		wait_ms = REPLY_TIMEOUT_MS;
	e = msrc__wait(m, MSRC_RUNNING, wait_ms);
	if (e == -ETIMEDOUT)
		msrc__fail(m, e, "the destination did not answer RUNNING within %.1f s", wait_ms / 1000.0);
	m->t_running = util_now_ns();
	return e;
}

static void msrc__report(struct migrate_src *m, const char *result, const char *why)
{
	struct migrate_stats s;
	msrc__stats(m, &s);
	s.result = result;
	s.error = why;
	free(m->report);
	m->report = migrate_stats_line(&s, MIGRATE_EV_RESULT);
}

static void *msrc__engine_main(void *arg)
{
	struct migrate_src *m = arg;
	struct precopy_dirty_set set = { 0 };
	unsigned nv = hv_vm_config(m->vm)->vcpus;
	int e;

	pthread_setname_np(pthread_self(), "precopy");
	util_thread_background();
	/* Cost of the vCPU state, measured with a pause as short as the save. */
	hv_vm_pause(m->vm);
	uint64_t t0 = util_now_ns();
	for (unsigned i = 0; i < nv; i++) {
		void *blob;
		size_t len;
		if (hv_vcpu_save(m->vm, i, &blob, &len) == 0) {
			m->vcpu_bytes += len;
			free(blob);
		}
	}
	m->vcpu_save_ns = util_now_ns() - t0;
	hv_vm_resume(m->vm);
	uint64_t ent[HV_MAX_VCPUS];
	int have = msrc__vcpu_entries(m, ent) == 0;
	precopy_throttle_init(&m->thr, nv, have ? ent : NULL);
	if (m->trace)
		fprintf(m->trace, "throttle-init,%u,%d,%" PRIu64 "\n", nv, have, have ? ent[0] : 0);
	/* Whatever the log holds predates the first pass, which reads every
	 * backed page after this point anyway. */
	precopy_dirtylog_harvest(m->dl, &set);

	for (;;) {
		e = msrc__precopy(m, &set);
		if (!e)
			e = msrc__switchover(m, &set);
		if (e && msrc__verdict(m, e) == -ENOTCONN && (e = msrc__rejoin(m)) == 0)
			continue;
		break;
	}
	precopy_dirty_set_free(&set);
	msrc__unthrottle(m);

	pthread_mutex_lock(&m->lock);
	int committed = m->phase >= MSRC_COMMITTED, running = m->phase == MSRC_RUNNING;
	char why[sizeof(m->fail_why)];
	snprintf(why, sizeof(why), "%s", m->fail_why[0] ? m->fail_why : strerror(-e));
	pthread_mutex_unlock(&m->lock);
	if (!e && running) {
		m->result = MIGRATE_OK;
		msrc__report(m, "migrated", NULL);
	} else if (committed) {
		/* COMMIT went out: resuming here could make two copies. */
		m->result = MIGRATE_INDETERMINATE;
		char w[700];
		snprintf(w, sizeof(w), "COMMIT sent but no RUNNING (%s): the guest runs on the destination or nowhere; "
				       "the source copy stays paused", why);
		msrc__report(m, "indeterminate", w);
	} else {
		if (m->renamed_away)
			hv_vm_rename(m->vm, hv_vm_config(m->vm)->name);
		if (m->t_pause)
			hv_vm_resume(m->vm);
		m->result = MIGRATE_FAILED;
		msrc__report(m, "failed", why);
	}
	uv_async_send(&m->done_async);
	return NULL;
}

/* ---- loop side: lifetime ---- */

void msrc__start_engine(struct migrate_src *m)
{
	pthread_mutex_lock(&m->lock);
	m->phase = MSRC_PRECOPY;
	pthread_mutex_unlock(&m->lock);
	uv_timer_stop(&m->setup_timer);
	m->t_setup_done = util_now_ns();
	m->bw_t0 = util_now_ns();
	for (unsigned i = 0; i < m->nstreams; i++)
		m->st[i].last_rx = m->t_setup_done;
	for (unsigned i = 0; i < m->nstreams; i++) {
		if (pthread_create(&m->st[i].worker, NULL, msrc__worker, &m->st[i])) {
			msrc__fail(m, -EAGAIN, "cannot start encoder threads");
			uv_async_send(&m->done_async);
			return;
		}
		m->st[i].worker_started = 1;
	}
	if (pthread_create(&m->engine, NULL, msrc__engine_main, m)) {
		msrc__fail(m, -EAGAIN, "cannot start the engine thread");
		uv_async_send(&m->done_async);
		return;
	}
	m->engine_started = 1;
}

static void msrc__setup_timeout(uv_timer_t *t)
{
	struct migrate_src *m = t->data;
	msrc__fail(m, -ETIMEDOUT, "no answer from %s within %u s (connect, TLS handshake, HELLO; --setup-timeout)",
		   m->o.target, m->o.setup_timeout_s);
	if (!m->engine_started)
		uv_async_send(&m->done_async);
}

static void msrc__ev_async(uv_async_t *a)
{
	struct migrate_src *m = a->data;
	pthread_mutex_lock(&m->lock);
	char *ev = m->events;
	m->events = NULL;
	m->ev_len = 0;
	pthread_mutex_unlock(&m->lock);
	if (!ev)
		return;
	char *save = NULL;
	for (char *line = strtok_r(ev, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
		m->ops->event(m->opaque, line);
	free(ev);
}

static void msrc__handle_closed(uv_handle_t *h)
{
	struct migrate_src *m = h->data;
	if (--m->handles_open)
		return;
	for (unsigned i = 0; i < m->nstreams; i++) {
		xport_free(m->st[i].x);
		stream_reader_free(&m->st[i].rd);
		free(m->st[i].fill);
		msrc__free_jobs(m->st[i].uhead);
		pthread_mutex_destroy(&m->st[i].send_lock);
	}
	msrc__free_jobs(m->lost);
	xport_tls_free(m->tls);
	precopy_pages_free(&m->pages);
	if (m->trace)
		fclose(m->trace);
	free(m->events);
	free(m->report);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->bw_lock);
	free(m);
}

static void msrc__done_async(uv_async_t *a)
{
	struct migrate_src *m = a->data;
	if (m->finished)
		return;
	pthread_mutex_lock(&m->lock);
	int engine_done = !m->engine_started || m->report;
	pthread_mutex_unlock(&m->lock);
	if (!engine_done)
		return; /* the engine posts again when it ends */
	m->finished = 1;
	if (m->engine_started)
		pthread_join(m->engine, NULL);
	pthread_mutex_lock(&m->lock);
	m->stop_workers = 1;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	/* Close before joining: a failed migration can leave an encoder blocked
	 * in xport_send on a full queue that only this (loop) thread drains, and
	 * closing wakes it with -EPIPE. After a success everything is flushed
	 * and the encoders are idle, so the order costs nothing there. */
	uv_timer_stop(&m->deadline_timer);
	uv_timer_stop(&m->retry_timer);
	uv_timer_stop(&m->link_timer);
	int ok = m->engine_started && m->result == MIGRATE_OK;
	/* A failure the engine met itself (a guest that did not suspend, a
	 * state that could not be read) over a working link: say so on
	 * connection 0, as a cancel does, so that the destination lets the
	 * VM and its name go now instead of waiting for a resume. */
	struct msrc_stream *s0 = &m->st[0];
	int told_now = 0;
	pthread_mutex_lock(&m->lock);
	int say = m->engine_started && m->result == MIGRATE_FAILED && !m->link_down;
	pthread_mutex_unlock(&m->lock);
	if (say && s0->x && s0->ready && !s0->closed && !s0->told) {
		struct stream_buf b = { 0 };
		int err = m->failed ? -m->failed : EIO;
		if (stream_put_error(&b, (uint32_t)err, m->fail_why[0] ? m->fail_why : "migration failed") == 0 &&
		    xport_write(s0->x, b.p, b.len) == 0) {
			s0->told = told_now = 1;
			xport_close(s0->x, 0, "migration failed"); /* graceful: the ERROR goes out first */
		}
		stream_buf_free(&b);
	}
	for (unsigned i = 0; i < m->nstreams; i++)
		/* told: its graceful close goes on, unless the destination is
		 * not even reading (then it would never see the ERROR anyway). */
		if (m->st[i].x && !(i == 0 && told_now) && !(m->st[i].told && xport_pending(m->st[i].x) == 0))
			xport_close(m->st[i].x, ok ? 0 : -ECANCELED, "migration ended");
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].worker_started)
			pthread_join(m->st[i].worker, NULL);
	if (!m->engine_started) {
		m->result = MIGRATE_FAILED;
		msrc__report(m, "failed", m->fail_why[0] ? m->fail_why : "cancelled");
	}
	msrc__ev_async(&m->ev_async);
	util_thread_restore(&m->loop_cpus);
	m->ops->done(m->opaque, m->result, m->report ? m->report : "{\"event\":\"result\",\"result\":\"failed\"}");
	uv_close((uv_handle_t *)&m->setup_timer, msrc__handle_closed);
	uv_close((uv_handle_t *)&m->deadline_timer, msrc__handle_closed);
	uv_close((uv_handle_t *)&m->done_async, msrc__handle_closed);
	uv_close((uv_handle_t *)&m->ev_async, msrc__handle_closed);
	uv_close((uv_handle_t *)&m->link_async, msrc__handle_closed);
	uv_close((uv_handle_t *)&m->retry_timer, msrc__handle_closed);
	uv_close((uv_handle_t *)&m->link_timer, msrc__handle_closed);
}

/* Loop thread: fails the migration unless COMMIT went out, and closes
 * every connection so that no thread stays blocked on a destination that
 * stopped reading (a full send queue, a flush, a reply): the engine then
 * resumes the guest within a bounded time. */
static int msrc__abort(struct migrate_src *m, int err, const char *why)
{
	pthread_mutex_lock(&m->lock);
	int committed = m->phase >= MSRC_COMMITTED, talking = m->phase >= MSRC_PRECOPY && !m->link_down;
	if (!committed && !m->failed) {
		m->failed = err;
		snprintf(m->fail_why, sizeof(m->fail_why), "%s", why);
	}
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	if (committed || m->finished)
		return committed ? -EALREADY : 0;
	/* A deliberate end (cancel, --max-time) over a working link: say so
	 * on connection 0 before closing it, so that the destination gives up
	 * now instead of waiting for a resume, and lets the VM's name go. */
	struct msrc_stream *s0 = &m->st[0];
	if (talking && s0->x && s0->ready && !s0->closed) {
		struct stream_buf b = { 0 };
		if (stream_put_error(&b, (uint32_t)-err, why) == 0 && xport_write(s0->x, b.p, b.len) == 0) {
			s0->told = 1;
			xport_close(s0->x, 0, why); /* graceful: the ERROR goes out first */
		}
		stream_buf_free(&b);
	}
	for (unsigned i = 0; i < m->nstreams; i++)
		if (m->st[i].x && !m->st[i].closed && !m->st[i].told)
			xport_close(m->st[i].x, err, why);
	if (!m->engine_started)
		uv_async_send(&m->done_async);
	return 0;
}

int migrate_src_cancel(struct migrate_src *m, const char *why)
{
	return msrc__abort(m, -ECANCELED, why);
}

static void msrc__deadline(uv_timer_t *t)
{
	struct migrate_src *m = t->data;
	char why[200];
	snprintf(why, sizeof(why), "--max-time %us reached (%s)", m->o.max_time_s, msrc__phase_name(m->phase));
	msrc__abort(m, -ETIMEDOUT, why);
}

int migrate_src_start(uv_loop_t *loop, struct hv_vm *vm, struct precopy_dirtylog *dl, const char *name,
		      const struct migrate_src_opts *o, const struct migrate_src_ops *ops, void *opaque,
		      struct migrate_src **out, char *err, size_t errlen)
{
	struct migrate_src *m;
	unsigned port;
	int e;

	if ((e = migrate_src_opts_check(o, err, errlen)) < 0)
		return e;
	if (strlen(name) > STREAM_MAX_NAME) {
		snprintf(err, errlen, "VM name too long");
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	m->loop = loop;
	m->vm = vm;
	m->dl = dl;
	m->o = *o;
	m->ops = ops;
	m->opaque = opaque;
	m->nstreams = o->streams ? o->streams : 1;
	snprintf(m->name, sizeof(m->name), "%s", name);
	xport_split_hostport(o->target, m->host, sizeof(m->host), &port);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	pthread_mutex_init(&m->bw_lock, NULL);
	m->nframes = hv_vm_config(vm)->mem_bytes >> HV_PAGE_SHIFT;
	m->toolstack = hv_vm_toolstack_guest(vm);
	const char *trace = getenv("PML_MIGRATE_POLICY_TRACE");
	if (trace && trace[0]) {
		m->trace = fopen(trace, "we");
		if (!m->trace) {
			snprintf(err, errlen, "PML_MIGRATE_POLICY_TRACE %s: %s", trace, strerror(errno));
			e = -errno;
			goto err_free;
		}
		setvbuf(m->trace, NULL, _IOLBF, 0);
		fputs("# decide,round,pages,encode_pps,link_Bps,queued_bytes,vcpu_save_ns,vcpu_bytes,rtt_ns,limit_ns,"
		      "expected_ns,drained,t_ns,deadline_ns,verdict\n"
		      "# throttle-init,nvcpus,per_vcpu,vcpu0_entries\n"
		      "# throttle,round,link_pps,dirty_pps,per_vcpu,vcpu0_entries,dt_ns,vcpu0_pct\n",
		      m->trace);
	}
	if (precopy_pages_init(&m->pages, m->nframes, HOT_ROUNDS) < 0) {
		snprintf(err, errlen, "out of memory for page bookkeeping");
		e = -ENOMEM;
		goto err_free;
	}
	struct xport_tls_config tc = { .insecure = o->insecure, .certs_dir = o->certs, .node = o->node,
				       .peer_name = o->peer[0] ? o->peer : m->host };
	if ((e = xport_tls_new(&tc, &m->tls, err, errlen)) < 0)
		goto err_free;
	m->xcb = (struct xport_callbacks){ .on_ready = msrc__join_ready, .on_data = msrc__on_data,
					   .on_close = msrc__on_close };
	static const struct xport_callbacks cb0 = { .on_ready = msrc__ready0, .on_data = msrc__on_data,
						    .on_close = msrc__on_close };
	for (unsigned i = 0; i < m->nstreams; i++) {
		m->st[i].m = m;
		m->st[i].idx = i;
		stream_reader_init(&m->st[i].rd);
		pthread_mutex_init(&m->st[i].send_lock, NULL);
	}
	struct precopy_dirtylog_stats st;
	precopy_dirtylog_get_stats(dl, &st);
	m->harvest_ns0 = st.total_ns;
	m->harvests0 = st.harvests;
	m->t_start = util_now_ns();
	if ((e = xport_connect(loop, m->tls, o->target, &cb0, &m->st[0], &m->st[0].x)) < 0) {
		snprintf(err, errlen, "connecting to %s: %s", o->target, strerror(-e));
		goto err_tls;
	}
	uv_timer_init(loop, &m->setup_timer);
	uv_timer_init(loop, &m->deadline_timer);
	uv_async_init(loop, &m->done_async, msrc__done_async);
	uv_async_init(loop, &m->ev_async, msrc__ev_async);
	uv_async_init(loop, &m->link_async, msrc__link_async);
	uv_timer_init(loop, &m->retry_timer);
	uv_timer_init(loop, &m->link_timer);
	m->setup_timer.data = m->deadline_timer.data = m->done_async.data = m->ev_async.data = m;
	m->link_async.data = m->retry_timer.data = m->link_timer.data = m;
	m->handles_open = 7;
	uv_timer_start(&m->setup_timer, msrc__setup_timeout, (uint64_t)m->o.setup_timeout_s * 1000, 0);
	uv_timer_start(&m->link_timer, msrc__link_check, 250, 250);
	uv_timer_start(&m->deadline_timer, msrc__deadline, (uint64_t)o->max_time_s * 1000, 0);
	/* This thread's writes carry every byte (on loopback its send also
	 * runs the receiver's TCP path): off the vCPUs' cores with the
	 * workers, if asked, until the end. It starts no vCPU meanwhile. */
	util_thread_keep_off(&m->loop_cpus);
	*out = m;
	return 0;

err_tls:
	xport_tls_free(m->tls);
err_free:
	precopy_pages_free(&m->pages);
	if (m->trace)
		fclose(m->trace);
	free(m);
	return e;
}

uint64_t migrate_src_token(const struct migrate_src *m) { return m->token; }
int migrate_src_state_sent(const struct migrate_src *m) { return m->t_state_sent != 0; }
