/*
 * precopy/pages.h - the page sets of one pre-copy: which frames still have
 * to go (pending, in FIFO order), which are held back to the final round
 * (deferred hot pages), and in how many rounds each frame was dirtied.
 *
 * Pure bookkeeping: no threads, no I/O, no hypervisor. The engine feeds it
 * what the dirty log returned and takes frames to send; a unit test can
 * drive it with made-up frame numbers (tests/test-precopy.c).
 *
 * A frame is in at most one of pending and deferred. A frame dirtied in
 * hot_rounds different rounds is deferred instead of queued, as long as
 * the deferred set is below its budget (precopy_pages_set_defer_budget):
 * sending it every round would be wasted, since it will be dirty again at
 * switchover anyway.
 *
 * Thread: one caller at a time (the engine thread).
 */
#ifndef PMG_PRECOPY_PAGES_H
#define PMG_PRECOPY_PAGES_H

#include <stddef.h>
#include <stdint.h>
#include "precopy/dirtylog.h"

struct precopy_pages {
	uint64_t nframes;
	unsigned hot_rounds;
	unsigned round;            /* current round, 1 for the first pass */
	uint64_t *pend_bits, *defer_bits;
	struct precopy_dirty_set queue; /* pending frames: queue.gfns[qhead .. queue.n), qlen of them */
	size_t qhead, qlen;
	size_t round_left;         /* queue entries that belong to the current round */
	struct precopy_dirty_set deferred;
	size_t defer_budget;
	uint64_t deferred_total;   /* frames ever deferred */
	uint64_t added;            /* frames ever queued: the dirty rate's numerator */
	uint8_t *rounds_dirty;     /* per frame: rounds it was dirtied in (saturates) */
	uint8_t *last_round;       /* per frame: low byte of the last such round */
};

/* Sets up empty sets for nframes frames, round 1. hot_rounds >= 1.
 * Returns 0 or -ENOMEM (p is then empty and safe to free). */
int precopy_pages_init(struct precopy_pages *p, uint64_t nframes, unsigned hot_rounds);
void precopy_pages_free(struct precopy_pages *p);

/* Queues gfn (< nframes) unless it is pending already. A deferred frame
 * is queued too (the caller decided it must go now); it stays deferred
 * as well only if the caller does not undefer it. Returns 0 or -ENOMEM. */
int precopy_pages_push(struct precopy_pages *p, uint64_t gfn);

/* A harvest: gfns[0..n) were written since the previous one. Each counts
 * towards its frame's rounds; a hot one is deferred (unless final: the
 * guest is paused, nothing is held back) while the budget allows, the
 * rest queued. Deferred frames stay deferred. Returns 0 or -ENOMEM. */
int precopy_pages_dirtied(struct precopy_pages *p, const uint64_t *gfns, size_t n, int final);

/* Starts the next round: the frames pending now are its frames. */
void precopy_pages_round_begin(struct precopy_pages *p);
/* Takes the next frame of the current round. 1 with *gfn, 0 when the
 * round's frames are all taken (frames queued since stay pending). */
int precopy_pages_round_next(struct precopy_pages *p, uint64_t *gfn);
/* Takes the next pending frame, round or not (the final round).
 * 1 with *gfn, 0 when nothing is pending. */
int precopy_pages_pop(struct precopy_pages *p, uint64_t *gfn);

/* How many frames may be deferred. A smaller budget than before sends the
 * excess back to pending (their round counts start over). 0 or -ENOMEM. */
int precopy_pages_set_defer_budget(struct precopy_pages *p, size_t budget);
/* Queues every deferred frame (the guest is paused). 0 or -ENOMEM. */
int precopy_pages_undefer_all(struct precopy_pages *p);

static inline size_t precopy_pages_pending(const struct precopy_pages *p) { return p->qlen; }
static inline size_t precopy_pages_deferred(const struct precopy_pages *p) { return p->deferred.n; }
static inline int precopy_pages_is_pending(const struct precopy_pages *p, uint64_t gfn)
{
	return (p->pend_bits[gfn >> 6] >> (gfn & 63)) & 1;
}
static inline int precopy_pages_is_deferred(const struct precopy_pages *p, uint64_t gfn)
{
	return (p->defer_bits[gfn >> 6] >> (gfn & 63)) & 1;
}

#endif
