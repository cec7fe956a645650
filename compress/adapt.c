/*
 * compress/adapt.c - adaptive compression (see adapt.h).
 */
#include "compress/adapt.h"

void compress_adapt_init(struct compress_adapt *a, uint64_t now_ns)
{
	*a = (struct compress_adapt){ .lz4 = 1, .probing = 1, .t0 = now_ns };
}

int compress_adapt_job(struct compress_adapt *a, uint64_t raw_bytes, uint64_t now_ns)
{
	if (++a->jobs < COMPRESS_ADAPT_WINDOW)
		return a->lz4;
	double rate = (double)(raw_bytes - a->bytes0) / ((double)(now_ns - a->t0) + 1.0);
	a->jobs = 0;
	a->t0 = now_ns;
	a->bytes0 = raw_bytes;
	if (a->probing == 1) {
		a->rate_on = rate;
		a->probing = 2;
		a->lz4 = 0;
	} else if (a->probing == 2) {
		a->rate_off = rate;
		a->probing = 0;
		int lz4 = a->rate_on >= a->rate_off;
		if (a->probes++ && lz4 != a->lz4_kept)
			a->flips++;
		a->lz4 = a->lz4_kept = lz4;
		a->steady_left = COMPRESS_ADAPT_STEADY;
	} else if (!--a->steady_left) {
		a->probing = 1;
		a->lz4 = 1;
	}
	return a->lz4;
}
