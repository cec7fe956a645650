/*
 * precopy/predict.h - what a live migration of a guest would do over a
 * given link, predicted from an estimate's measurements (`pml-migrate
 * estimate`) with the engine's own switchover decision: precopy_decide()
 * is asked at the end of every simulated round, as the engine asks it.
 *
 * The model: the first round sends the guest's resident pages; round k+1
 * sends what the guest wrote during round k, that is the working set over
 * round k's duration (the measured curve: distinct pages written within
 * 100 ms, 1 s, 10 s, interpolated on a log scale, proportional below the
 * shortest window, extended past the longest: see struct precopy_wss_curve);
 * a round lasts its pages
 * at the slower of the encoder and the link. It stops where the policy
 * says switch over, where --max-time runs out, or where a round dirtied
 * over 90 % of what it sent (the engine would throttle the guest then;
 * the throttle is not modelled).
 *
 * Pure arithmetic: no clock, threads or I/O (tests/test-precopy.c).
 */
#ifndef PMG_PRECOPY_PREDICT_H
#define PMG_PRECOPY_PREDICT_H

#include <stdint.h>
#include "precopy/policy.h"

#define PRECOPY_PREDICT_MAX_POINTS 4
#define PRECOPY_PREDICT_MAX_ROUNDS 60

/* Distinct pages written within a window of t_ns, for ascending t_ns.
 * Beyond the last point it goes on with the last segment's log-linear
 * slope, or, from a single point, at dirty_pps; never above cap (the pages
 * that exist; 0: no cap). */
struct precopy_wss_curve {
	unsigned n;
	uint64_t t_ns[PRECOPY_PREDICT_MAX_POINTS];
	uint64_t pages[PRECOPY_PREDICT_MAX_POINTS];
	double dirty_pps;
	uint64_t cap;
};
/* The curve at t_ns (0 without points). */
uint64_t precopy_wss_at(const struct precopy_wss_curve *c, uint64_t t_ns);

struct precopy_predict_in {
	struct precopy_wss_curve wss;
	uint64_t first_pages;       /* what the first round sends: the resident pages */
	uint64_t link_Bps;          /* the link, bytes/s (> 0) */
	double wire_bytes_per_page; /* after zero detection and LZ4 (> 0) */
	/* --compress auto probes raw pages now and then (compress/adapt.h):
	 * probe_pages pages raw, from the probe_pages-th on, every
	 * probe_every pages (0: no probes), at raw_bytes_per_page. */
	uint64_t probe_pages, probe_every;
	double raw_bytes_per_page;
	uint64_t encode_pps;        /* the encoders' pages/s (> 0) */
	uint64_t rtt_ns, vcpu_save_ns, vcpu_bytes;
	uint64_t downtime_limit_ns;
	uint64_t max_time_ns;       /* 0: none */
};

struct precopy_predict_out {
	enum precopy_verdict verdict; /* SWITCHOVER, SWITCHOVER_FORCED, TIMEOUT, or CONTINUE when the
				       * dirty set stopped shrinking (needs_throttle) */
	int needs_throttle;
	unsigned rounds;              /* pre-copy rounds before the switchover */
	uint64_t total_ns, downtime_ns, bytes, final_pages;
};

/* Returns 0, or -EINVAL for inputs it cannot use (a rate of 0). */
int precopy_predict(const struct precopy_predict_in *in, struct precopy_predict_out *out);

#endif
