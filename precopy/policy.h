/*
 * precopy/policy.h - when pre-copy stops: statistics in, decision out.
 *
 * Pure arithmetic, no threads, clocks or I/O: the engine measures, fills
 * the structs below and acts on the verdict; tests/test-precopy.c drives
 * the same functions with recorded statistics. (The shape is Xen's
 * precopy_policy callback: the caller owns the loop, the policy only
 * judges.)
 *
 * The estimate of the downtime is what is still dirty at the encoders'
 * measured rate, plus what already waits in the send queues at the link's
 * measured rate, plus the fixed cost of the switchover: saving and
 * sending the vCPU state and the READY/COMMIT round trips.
 */
#ifndef PMG_PRECOPY_POLICY_H
#define PMG_PRECOPY_POLICY_H

#include <stddef.h>
#include <stdint.h>

/* What the downtime estimate is made of. 0 in a rate means "not measured
 * yet": a conservative default stands in. */
struct precopy_cost {
	uint64_t pages;         /* pending + deferred: what the final round sends */
	uint64_t encode_pps;    /* pages/s the encoders moved, all streams together */
	uint64_t link_Bps;      /* wire bytes/s while the send queues stayed backlogged */
	uint64_t queued_bytes;  /* encoded, not yet on the wire */
	uint64_t vcpu_save_ns;  /* saving every vCPU's state, measured at start */
	uint64_t vcpu_bytes;    /* its size */
	uint64_t rtt_ns;        /* the link's round trip */
};

/* The part of the downtime no amount of pre-copy reduces. */
uint64_t precopy_fixed_cost_ns(const struct precopy_cost *c);
/* The downtime expected if the guest paused now. */
uint64_t precopy_expected_downtime_ns(const struct precopy_cost *c);

enum precopy_verdict {
	PRECOPY_CONTINUE,         /* another round */
	PRECOPY_DRAIN,            /* close enough: let the pipeline empty while the
				   * guest runs, harvest, then ask again with drained=1 */
	PRECOPY_SWITCHOVER,       /* pause now: the expected downtime is within the limit */
	PRECOPY_SWITCHOVER_FORCED,/* pause now: the fixed cost alone exceeds the limit and
				   * the dirty set is too small for waiting to help; or the
				   * estimate has stopped improving (see precopy_stall) */
	PRECOPY_TIMEOUT,          /* --max-time reached without converging */
};
const char *precopy_verdict_name(enum precopy_verdict v);

struct precopy_decision_in {
	struct precopy_cost cost;
	uint64_t downtime_limit_ns;
	int drained;            /* the pipeline was emptied after a DRAIN verdict and the log harvested since */
	uint64_t now_ns, deadline_ns;
	int may_force;          /* a stalled pre-copy may be forced (0 with --no-throttle: the user
				 * keeps the guest's speed and lets --max-time decide) */
	uint64_t stalled_ns;    /* how long the estimate has not improved (precopy_stall_note) */
	uint64_t stall_force_ns;/* a stall this long forces the switchover; 0 = PRECOPY_STALL_FORCE_NS */
};

/* A downtime estimate that has not improved for this long will not get
 * there by waiting: the throttle has settled where the guest writes half
 * of what the link takes, and what is left plus the fixed cost is still
 * over the limit (seen in an emulated lab: 43,744 rounds hovering at
 * 82 ms for a 50 ms limit, the throttle swinging 85-95 %, until
 * --max-time failed it after 600 s). Then the switchover is forced, if the
 * estimate is within PRECOPY_STALL_FORCE_FACTOR times the limit (or
 * PRECOPY_STALL_FORCE_MIN_NS): a longer pause than asked for beats
 * failing after minutes of a throttled guest, but not at any price. */
#define PRECOPY_STALL_FORCE_NS (10ull * 1000000000ull)
/* A toolstack's Xen guest pauses for seconds whatever is left (its own
 * suspend, then the destination toolstack's device setup: 1.3 to 3.6 s
 * in the lab, libxl's as for `xl migrate`): shaving milliseconds off the
 * estimate is not worth more than this much more pre-copy (seen: 413
 * rounds of a few dozen pages over 10 s, in a move of 26 s). */
#define PRECOPY_STALL_FORCE_TOOLSTACK_NS (2ull * 1000000000ull)
#define PRECOPY_STALL_FORCE_FACTOR 8
#define PRECOPY_STALL_FORCE_MIN_NS (5ull * 1000000000ull)
/* An estimate counts as improved when it falls below 90 % of the best so far. */
struct precopy_stall {
	uint64_t best_ns;   /* the lowest estimate so far, 0 before the first */
	uint64_t best_at;   /* when it was reached */
};
/* Notes the estimate of now_ns; returns how long it has not improved. */
uint64_t precopy_stall_note(struct precopy_stall *s, uint64_t expected_ns, uint64_t now_ns);

/* Frames below which a round is not worth waiting for when the fixed cost
 * alone exceeds the limit. */
#define PRECOPY_FORCE_BELOW_PAGES 64

/* The decision at a round boundary. *expected_ns (optional) receives the
 * downtime estimate it was based on. */
enum precopy_verdict precopy_decide(const struct precopy_decision_in *in, uint64_t *expected_ns);

/* How many hot pages may be held back to the final round: half of the
 * downtime limit's worth at the encoders' rate. */
size_t precopy_defer_budget(uint64_t encode_pps, unsigned downtime_ms);

/* Rates over windows of at least PRECOPY_RATE_WINDOW_NS: late rounds are
 * tiny, and a rate from one of them is noise. Feed a sample at every round
 * boundary; the counters in it are cumulative. */
#define PRECOPY_RATE_WINDOW_NS 50000000ull
struct precopy_sample {
	uint64_t t_ns;
	uint64_t pages_done;    /* pages the encoders finished */
	uint64_t busy_ns;       /* time the encoders spent on them, summed over streams */
	uint64_t dirtied;       /* frames queued because the guest wrote them (precopy_pages.added) */
	uint64_t wire_bytes;    /* bytes on the wire so far */
	uint64_t queued_bytes;  /* encoded, not yet written */
};
struct precopy_rates {
	struct precopy_sample w0; /* the current window's start */
	int started;
	uint64_t encode_pps, link_Bps, dirty_pps; /* smoothed; 0 until measured */
};
/* Returns 1 and sets *dt_ns when s closed a window (the rates changed),
 * 0 otherwise. nstreams: encoders working in parallel. */
int precopy_rates_sample(struct precopy_rates *r, const struct precopy_sample *s, unsigned nstreams,
			 uint64_t *dt_ns);

#endif
