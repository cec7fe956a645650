/*
 * precopy/throttle.h - slowing the guest down when it dirties memory
 * faster than the migration moves it (QEMU's cpu-throttle.c is the
 * model: a duty cycle in percent, raised in steps while the guest keeps
 * outrunning the link, lowered when it falls behind).
 *
 * Per vCPU when the dirty log says who wrote (the ring: each vCPU's entry
 * count), one common percentage otherwise (the bitmap cannot tell). Pure:
 * the caller applies the percentages (hv_vcpu_throttle) for the vCPUs
 * whose bit is set in the returned mask. Thread: one caller at a time.
 */
#ifndef PMG_PRECOPY_THROTTLE_H
#define PMG_PRECOPY_THROTTLE_H

#include <stdint.h>
#include "hv/hv.h"

#define PRECOPY_THROTTLE_MAX_PCT 99u
#define PRECOPY_THROTTLE_STEP_UP 10u
#define PRECOPY_THROTTLE_STEP_DOWN 5u
#define PRECOPY_THROTTLE_SUSTAINED_NS 1000000000ull /* one window over the threshold this long is no burst */

struct precopy_throttle {
	unsigned nvcpus;
	int per_vcpu;                          /* entry counts available */
	unsigned pct[HV_MAX_VCPUS];            /* current sit-out percentage */
	unsigned high[HV_MAX_VCPUS];           /* windows in a row over the threshold while unthrottled */
	uint64_t last_entries[HV_MAX_VCPUS];
	unsigned max_pct;                      /* highest ever */
	uint64_t throttled_ns;                 /* guest time taken away, summed over vCPUs */
};

/* nvcpus <= HV_MAX_VCPUS. entries: each vCPU's cumulative dirty-log entry
 * count now, or NULL when the log cannot tell vCPUs apart. */
void precopy_throttle_init(struct precopy_throttle *t, unsigned nvcpus, const uint64_t *entries);

/* One measurement window of dt_ns: link_pps is what the migration moves
 * (pages/s), dirty_pps what the guest dirties (pages/s), entries the
 * vCPUs' counts now (ignored unless per_vcpu). While the guest dirties
 * more than half of the link, a vCPU that writes more than its share of
 * that half is slowed to the percentage that would bring its writes down
 * to its share (they scale with the time it runs), and by at least
 * STEP_UP points; it is eased by STEP_DOWN once it falls below half of
 * its share. Without entry counts (common mode) every vCPU goes up by
 * STEP_UP while the guest dirties more than half of the link and down
 * below a quarter: the frames-queued rate saturates at the link's rate
 * once the working set fills the queue, so it cannot size a jump. An
 * unthrottled vCPU is first slowed only in the second window in a row
 * over the threshold, or in a first one that lasted SUSTAINED_NS (QEMU's
 * auto-converge waits for two periods of a second): a migration that
 * converges by itself within a window or two, as on a fast link, is not
 * paid for with the guest's speed and the stalls of a duty cycle, nor is
 * a burst, while on a slow link, where one round takes seconds, the
 * throttle is not a round late. Returns the mask of vCPUs whose
 * percentage changed. */
uint32_t precopy_throttle_step(struct precopy_throttle *t, uint64_t link_pps, uint64_t dirty_pps,
			       const uint64_t *entries, uint64_t dt_ns);

/* Every vCPU back to full speed. Returns the mask of those that were slowed. */
uint32_t precopy_throttle_release(struct precopy_throttle *t);

#endif
