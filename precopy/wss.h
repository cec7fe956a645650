/*
 * precopy/wss.h - the working set over time windows, from the dirty log:
 * how many distinct frames the guest wrote in each window of a given
 * length (100 ms, 1 s, 10 s for `pml-migrate estimate`), and which frames
 * were written in most of the shortest windows (the hot set).
 *
 * Pure bookkeeping, like precopy/pages.h: the caller harvests the log and
 * feeds each harvest with its time; tests/test-precopy.c drives it with
 * made-up frames. Windows of length L are aligned on the start time: window
 * k is [t0 + k*L, t0 + (k+1)*L), and a harvest counts in the window that
 * holds its time (what it returns was written in the harvest interval
 * before). Only whole windows enter the statistics.
 *
 * Memory: 4 bytes per guest frame per window length, plus 2 per frame for
 * the hot set (which also tells the frames ever written). Thread: one caller at a time.
 */
#ifndef PMG_PRECOPY_WSS_H
#define PMG_PRECOPY_WSS_H

#include <stddef.h>
#include <stdint.h>

#define PRECOPY_WSS_MAX_WINDOWS 4

struct precopy_wss_stats {
	uint64_t window_ns;
	unsigned windows;     /* whole windows seen */
	uint64_t min, median, max; /* distinct frames written per window; 0 without a whole window */
};

struct precopy_wss;

/* nframes: the guest's frames; window_ns: n window lengths (ascending,
 * each > 0, n <= PRECOPY_WSS_MAX_WINDOWS); t0_ns: the start. The first
 * length also defines the hot set. Returns 0, -EINVAL or -ENOMEM; *out is
 * the caller's (precopy_wss_free). */
int precopy_wss_new(uint64_t nframes, const uint64_t *window_ns, unsigned n, uint64_t t0_ns, struct precopy_wss **out);
void precopy_wss_free(struct precopy_wss *w);

/* One harvest at t_ns (not before the previous one): frames written since
 * the previous harvest; frames >= nframes are ignored. */
void precopy_wss_add(struct precopy_wss *w, uint64_t t_ns, const uint64_t *gfns, size_t n);

/* Statistics of window length idx over the whole windows up to t_ns. */
void precopy_wss_get(const struct precopy_wss *w, unsigned idx, uint64_t t_ns, struct precopy_wss_stats *st);

/* Distinct frames written since t0. */
uint64_t precopy_wss_total(const struct precopy_wss *w);

/* Frames written in at least pct % of the whole shortest windows up to
 * t_ns (0 when there is none): what would be dirty again in any round. */
uint64_t precopy_wss_hot(const struct precopy_wss *w, uint64_t t_ns, unsigned pct);

#endif
