/*
 * precopy/throttle.c - the dirty-rate throttle's arithmetic (contract in
 * throttle.h).
 */
#include <string.h>
#include "precopy/throttle.h"

void precopy_throttle_init(struct precopy_throttle *t, unsigned nvcpus, const uint64_t *entries)
{
	memset(t, 0, sizeof(*t));
	t->nvcpus = nvcpus > HV_MAX_VCPUS ? HV_MAX_VCPUS : nvcpus;
	t->per_vcpu = entries != NULL;
	if (entries)
		memcpy(t->last_entries, entries, t->nvcpus * sizeof(uint64_t));
}

static unsigned up(unsigned p)
{
	return p + PRECOPY_THROTTLE_STEP_UP > PRECOPY_THROTTLE_MAX_PCT ? PRECOPY_THROTTLE_MAX_PCT
									: p + PRECOPY_THROTTLE_STEP_UP;
}

static unsigned down(unsigned p) { return p >= PRECOPY_THROTTLE_STEP_DOWN ? p - PRECOPY_THROTTLE_STEP_DOWN : 0; }

/* vCPU i is over the threshold in a window of dt_ns: whether it may be
 * slowed (further). Unthrottled, only once that lasted (see throttle.h). */
static int sustained(struct precopy_throttle *t, unsigned i, unsigned p, uint64_t dt_ns)
{
	return p || ++t->high[i] >= 2 || dt_ns >= PRECOPY_THROTTLE_SUSTAINED_NS;
}

uint32_t precopy_throttle_step(struct precopy_throttle *t, uint64_t link_pps, uint64_t dirty_pps,
			       const uint64_t *entries, uint64_t dt_ns)
{
	uint32_t changed = 0;
	if (!dt_ns)
		return 0;
	double link = (double)link_pps, dirty = (double)dirty_pps;
	int per_vcpu = t->per_vcpu && entries;
	for (unsigned i = 0; i < t->nvcpus; i++) {
		unsigned p = t->pct[i];
		if (per_vcpu) {
			double rate = (double)(entries[i] - t->last_entries[i]) * 1e9 / (double)dt_ns;
			t->last_entries[i] = entries[i];
			double limit = 0.5 * link / t->nvcpus;
			if (rate > limit && dirty > 0.5 * link) {
				/* The vCPU's writes scale with the time it runs: the
				 * sit-out that brings them down to its share, at least
				 * one step more than now. */
				double want = 100.0 - (100.0 - p) * limit / rate;
				unsigned w = want >= PRECOPY_THROTTLE_MAX_PCT ? PRECOPY_THROTTLE_MAX_PCT : (unsigned)want;
				if (sustained(t, i, p, dt_ns))
					p = w > up(p) ? w : up(p);
			} else {
				t->high[i] = 0;
				if (rate < 0.5 * limit)
					p = down(p);
			}
		} else {
			if (dirty > 0.5 * link) {
				if (sustained(t, i, p, dt_ns))
					p = up(p);
			} else {
				t->high[i] = 0;
				if (dirty < 0.25 * link)
					p = down(p);
			}
		}
		if (p != t->pct[i]) {
			t->pct[i] = p;
			changed |= 1u << i;
		}
		if (p > t->max_pct)
			t->max_pct = p;
		if (p)
			t->throttled_ns += dt_ns * p / 100;
	}
	return changed;
}

uint32_t precopy_throttle_release(struct precopy_throttle *t)
{
	uint32_t was = 0;
	for (unsigned i = 0; i < t->nvcpus; i++) {
		t->high[i] = 0;
		if (t->pct[i]) {
			t->pct[i] = 0;
			was |= 1u << i;
		}
	}
	return was;
}
