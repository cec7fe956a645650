/*
 * precopy/policy.c - the downtime estimate, the switchover decision and
 * the rate windows (contract in policy.h).
 */
#include "precopy/policy.h"

#define PAGE_BYTES 4096ull
#define DEFAULT_ENCODE_PPS 50000ull /* ~200 MB/s: until the encoders were measured */

const char *precopy_verdict_name(enum precopy_verdict v)
{
	switch (v) {
	case PRECOPY_CONTINUE: return "continue";
	case PRECOPY_DRAIN: return "drain";
	case PRECOPY_SWITCHOVER: return "switchover";
	case PRECOPY_SWITCHOVER_FORCED: return "switchover-forced";
	case PRECOPY_TIMEOUT: return "timeout";
	}
	return "?";
}

uint64_t precopy_fixed_cost_ns(const struct precopy_cost *c)
{
	/* The vCPU state compresses like a page would, at worst about 1/4 of
	 * a page per page-time: a floor for its transfer rate. */
	uint64_t byte_rate = c->encode_pps ? c->encode_pps * 1024 : 100000000;
	return c->vcpu_save_ns + c->vcpu_bytes * 1000000000ull / byte_rate + c->rtt_ns * 3 / 2;
}

uint64_t precopy_expected_downtime_ns(const struct precopy_cost *c)
{
	uint64_t pps = c->encode_pps ? c->encode_pps : DEFAULT_ENCODE_PPS;
	uint64_t link = c->link_Bps ? c->link_Bps : pps * PAGE_BYTES;
	return c->pages * 1000000000ull / pps + c->queued_bytes * 1000000000ull / link + precopy_fixed_cost_ns(c);
}

enum precopy_verdict precopy_decide(const struct precopy_decision_in *in, uint64_t *expected_ns)
{
	uint64_t exp = precopy_expected_downtime_ns(&in->cost);
	if (expected_ns)
		*expected_ns = exp;
	if (exp <= in->downtime_limit_ns)
		return in->drained ? PRECOPY_SWITCHOVER : PRECOPY_DRAIN;
	/* The fixed cost alone may exceed the limit: then nothing more can be
	 * gained by waiting once the dirty set is this small. */
	if (precopy_fixed_cost_ns(&in->cost) > in->downtime_limit_ns && in->cost.pages < PRECOPY_FORCE_BELOW_PAGES)
		return PRECOPY_SWITCHOVER_FORCED;
	uint64_t cap = in->downtime_limit_ns * PRECOPY_STALL_FORCE_FACTOR;
	if (cap < PRECOPY_STALL_FORCE_MIN_NS)
		cap = PRECOPY_STALL_FORCE_MIN_NS;
	uint64_t window = in->stall_force_ns ? in->stall_force_ns : PRECOPY_STALL_FORCE_NS;
	if (in->may_force && in->stalled_ns >= window && exp <= cap)
		return PRECOPY_SWITCHOVER_FORCED;
	if (in->deadline_ns && in->now_ns > in->deadline_ns)
		return PRECOPY_TIMEOUT;
	return PRECOPY_CONTINUE;
}

uint64_t precopy_stall_note(struct precopy_stall *s, uint64_t expected_ns, uint64_t now_ns)
{
	if (!s->best_ns || expected_ns < s->best_ns / 10 * 9) {
		s->best_ns = expected_ns ? expected_ns : 1;
		s->best_at = now_ns;
	}
	return now_ns > s->best_at ? now_ns - s->best_at : 0;
}

size_t precopy_defer_budget(uint64_t encode_pps, unsigned downtime_ms)
{
	return (size_t)(encode_pps * downtime_ms / 2000);
}

static uint64_t ewma(uint64_t old, uint64_t now) { return old ? (old * 3 + now) / 4 : now; }

int precopy_rates_sample(struct precopy_rates *r, const struct precopy_sample *s, unsigned nstreams,
			 uint64_t *dt_ns)
{
	if (!r->started || s->t_ns < r->w0.t_ns) {
		r->w0 = *s;
		r->started = 1;
		return 0;
	}
	uint64_t dt = s->t_ns - r->w0.t_ns;
	if (dt < PRECOPY_RATE_WINDOW_NS)
		return 0;
	/* The encoders' rate: pages per second of their busy time, times the
	 * streams working side by side. Needs enough pages to mean anything. */
	if (s->pages_done - r->w0.pages_done >= 256 && s->busy_ns > r->w0.busy_ns)
		r->encode_pps = ewma(r->encode_pps, (s->pages_done - r->w0.pages_done) * 1000000000ull *
							    (nstreams ? nstreams : 1) / (s->busy_ns - r->w0.busy_ns));
	/* The link's rate only counts while it was the bottleneck: the send
	 * queues held more than 1 MiB at both ends of the window. */
	if (r->w0.queued_bytes > (1u << 20) && s->queued_bytes > (1u << 20))
		r->link_Bps = ewma(r->link_Bps, (s->wire_bytes - r->w0.wire_bytes) * 1000000000ull / dt);
	r->dirty_pps = (s->dirtied - r->w0.dirtied) * 1000000000ull / dt;
	r->w0 = *s;
	if (dt_ns)
		*dt_ns = dt;
	return 1;
}
