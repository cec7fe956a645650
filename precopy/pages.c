/*
 * precopy/pages.c - pending, deferred and per-frame round counts of one
 * pre-copy (contract in pages.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "precopy/pages.h"

static inline void bit_set(uint64_t *b, uint64_t i) { b[i >> 6] |= 1ull << (i & 63); }
static inline void bit_clear(uint64_t *b, uint64_t i) { b[i >> 6] &= ~(1ull << (i & 63)); }

int precopy_pages_init(struct precopy_pages *p, uint64_t nframes, unsigned hot_rounds)
{
	size_t words = (size_t)((nframes + 63) / 64);
	memset(p, 0, sizeof(*p));
	p->nframes = nframes;
	p->hot_rounds = hot_rounds ? hot_rounds : 1;
	p->round = 1;
	p->pend_bits = calloc(words ? words : 1, 8);
	p->defer_bits = calloc(words ? words : 1, 8);
	p->rounds_dirty = calloc(nframes ? nframes : 1, 1);
	p->last_round = calloc(nframes ? nframes : 1, 1);
	if (!p->pend_bits || !p->defer_bits || !p->rounds_dirty || !p->last_round) {
		precopy_pages_free(p);
		return -ENOMEM;
	}
	return 0;
}

void precopy_pages_free(struct precopy_pages *p)
{
	free(p->pend_bits);
	free(p->defer_bits);
	precopy_dirty_set_free(&p->queue);
	free(p->rounds_dirty);
	free(p->last_round);
	precopy_dirty_set_free(&p->deferred);
	memset(p, 0, sizeof(*p));
}

int precopy_pages_push(struct precopy_pages *p, uint64_t gfn)
{
	if (precopy_pages_is_pending(p, gfn))
		return 0;
	if (p->queue.n == p->queue.cap && p->qhead) { /* compact before growing */
		memmove(p->queue.gfns, p->queue.gfns + p->qhead, p->qlen * sizeof(uint64_t));
		p->qhead = 0;
		p->queue.n = p->qlen;
	}
	if (precopy_dirty_set_push(&p->queue, gfn) < 0)
		return -ENOMEM;
	p->qlen++;
	bit_set(p->pend_bits, gfn);
	p->added++;
	return 0;
}

static int pages__defer(struct precopy_pages *p, uint64_t gfn)
{
	if (precopy_dirty_set_push(&p->deferred, gfn) < 0)
		return -ENOMEM;
	p->deferred_total++;
	bit_set(p->defer_bits, gfn);
	return 0;
}

int precopy_pages_dirtied(struct precopy_pages *p, const uint64_t *gfns, size_t n, int final)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t g = gfns[i];
		if (g >= p->nframes || precopy_pages_is_deferred(p, g))
			continue;
		if (p->last_round[g] != (uint8_t)p->round) {
			p->last_round[g] = (uint8_t)p->round;
			if (p->rounds_dirty[g] < 255)
				p->rounds_dirty[g]++;
		}
		if (!final && p->rounds_dirty[g] >= p->hot_rounds && p->deferred.n < p->defer_budget &&
		    !precopy_pages_is_pending(p, g)) {
			if (pages__defer(p, g) < 0)
				return -ENOMEM;
			continue;
		}
		if (precopy_pages_push(p, g) < 0)
			return -ENOMEM;
	}
	return 0;
}

void precopy_pages_round_begin(struct precopy_pages *p)
{
	p->round++;
	p->round_left = p->qlen;
}

int precopy_pages_pop(struct precopy_pages *p, uint64_t *gfn)
{
	if (!p->qlen)
		return 0;
	*gfn = p->queue.gfns[p->qhead++];
	if (!--p->qlen)
		p->qhead = p->queue.n = 0; /* empty: start over at the front */
	if (p->round_left > p->qlen)
		p->round_left = p->qlen;
	bit_clear(p->pend_bits, *gfn);
	return 1;
}

int precopy_pages_round_next(struct precopy_pages *p, uint64_t *gfn)
{
	if (!p->round_left)
		return 0;
	p->round_left--;
	return precopy_pages_pop(p, gfn);
}

int precopy_pages_set_defer_budget(struct precopy_pages *p, size_t budget)
{
	p->defer_budget = budget;
	while (p->deferred.n > budget) {
		uint64_t g = p->deferred.gfns[--p->deferred.n];
		bit_clear(p->defer_bits, g);
		p->rounds_dirty[g] = 0;
		if (precopy_pages_push(p, g) < 0)
			return -ENOMEM;
	}
	return 0;
}

int precopy_pages_undefer_all(struct precopy_pages *p)
{
	for (size_t i = 0; i < p->deferred.n; i++) {
		bit_clear(p->defer_bits, p->deferred.gfns[i]);
		if (precopy_pages_push(p, p->deferred.gfns[i]) < 0)
			return -ENOMEM;
	}
	p->deferred.n = 0;
	return 0;
}
