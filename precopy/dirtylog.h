/*
 * precopy/dirtylog.h - one interface over the VM's dirty log, whichever
 * source it is (ring: the PML-style per-vCPU log; bitmap: the baseline).
 *
 * A harvest yields the set of guest frames written since the previous
 * harvest, each once, and keeps a per-frame count of how many harvests saw
 * it dirty (hot pages). Harvest cost is O(frames dirtied) with the ring and
 * O(guest memory) with the bitmap; both are measured here.
 *
 * Thread: one harvester at a time per dirtylog (not internally locked);
 * the vCPUs keep running while it harvests.
 *
 * Final harvest: call hv_vm_pause() first. It kicks every vCPU out of
 * KVM_RUN, which on Intel flushes each vCPU's PML buffer into its ring, so
 * the harvest that follows holds every write the guest will ever make.
 */
#ifndef PMG_PRECOPY_DIRTYLOG_H
#define PMG_PRECOPY_DIRTYLOG_H

#include <stddef.h>
#include <stdint.h>
#include "hv/hv.h"

struct precopy_dirty_set {
	uint64_t *gfns; /* unique, in harvest order */
	size_t n, cap;
};

struct precopy_dirtylog_stats {
	uint64_t harvests;
	uint64_t entries;      /* log entries read (ring may repeat a frame across vCPUs) */
	uint64_t frames;       /* unique frames handed out, summed over harvests */
	uint64_t total_ns;     /* time spent inside harvest */
	uint64_t last_ns, max_ns;
	uint64_t ring_full_exits;
};

struct precopy_dirtylog;

/* Starts dirty logging on vm (whose config chose ring or bitmap). *out is
 * owned by the caller: precopy_dirtylog_close(). */
int precopy_dirtylog_open(struct hv_vm *vm, struct precopy_dirtylog **out);
/* Stops logging and frees. */
void precopy_dirtylog_close(struct precopy_dirtylog *dl);
/* Replaces set's contents with the frames written since the previous
 * harvest. Write tracking is re-armed before it returns, so the caller
 * may read those pages right away. Returns the number of frames or -errno.
 * -ENOMEM means entries were consumed but could not be kept: the caller
 * must then treat all of memory as dirty. */
long precopy_dirtylog_harvest(struct precopy_dirtylog *dl, struct precopy_dirty_set *set);
/* How many harvests have seen gfn dirty (saturates at 65535). */
unsigned precopy_dirtylog_hotness(const struct precopy_dirtylog *dl, uint64_t gfn);
void precopy_dirtylog_get_stats(const struct precopy_dirtylog *dl, struct precopy_dirtylog_stats *st);
enum hv_dirty_mode precopy_dirtylog_mode(const struct precopy_dirtylog *dl);

/* Appends gfn (no dedupe), growing the set. Returns 0 or -ENOMEM. */
int precopy_dirty_set_push(struct precopy_dirty_set *set, uint64_t gfn);
void precopy_dirty_set_free(struct precopy_dirty_set *set);

#endif
