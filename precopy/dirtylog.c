/*
 * precopy/dirtylog.c - dedupe, hot-page counts and cost accounting on top
 * of the backend's raw dirty log.
 *
 * The "seen" bitmap and the hotness array are sparse (MAP_NORESERVE) and
 * only the entries of frames actually dirtied are touched or cleared, so a
 * harvest with the ring stays O(frames dirtied) even for a 128 GiB guest.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "precopy/dirtylog.h"
#include "util/util.h"

struct precopy_dirtylog {
	struct hv_vm *vm;
	uint64_t nframes;
	uint64_t *seen;   /* 1 bit per frame, sparse */
	size_t seen_bytes;
	uint16_t *hot;    /* per frame, sparse */
	size_t hot_bytes;
	struct precopy_dirty_set *cur;
	int oom;
	struct precopy_dirtylog_stats st;
};

static void *sparse_alloc(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

int precopy_dirtylog_open(struct hv_vm *vm, struct precopy_dirtylog **out)
{
	struct precopy_dirtylog *dl;
	int r;

	dl = calloc(1, sizeof(*dl));
	if (!dl)
		return -ENOMEM;
	dl->vm = vm;
	dl->nframes = hv_vm_config(vm)->mem_bytes >> HV_PAGE_SHIFT;
	dl->seen_bytes = (size_t)((dl->nframes + 63) / 64) * 8;
	dl->hot_bytes = (size_t)dl->nframes * sizeof(uint16_t);
	dl->seen = sparse_alloc(dl->seen_bytes);
	dl->hot = sparse_alloc(dl->hot_bytes);
	if (!dl->seen || !dl->hot) {
		r = -ENOMEM;
		goto err_free;
	}
	r = hv_dirty_start(vm);
	if (r < 0)
		goto err_free;
	*out = dl;
	return 0;

err_free:
	if (dl->seen)
		munmap(dl->seen, dl->seen_bytes);
	if (dl->hot)
		munmap(dl->hot, dl->hot_bytes);
	free(dl);
	return r;
}

void precopy_dirtylog_close(struct precopy_dirtylog *dl)
{
	if (!dl)
		return;
	hv_dirty_stop(dl->vm);
	munmap(dl->seen, dl->seen_bytes);
	munmap(dl->hot, dl->hot_bytes);
	free(dl);
}

static void dirtylog__emit(void *opaque, uint64_t gfn)
{
	struct precopy_dirtylog *dl = opaque;
	struct precopy_dirty_set *s = dl->cur;
	uint64_t bit = 1ull << (gfn & 63);

	dl->st.entries++;
	if (gfn >= dl->nframes || (dl->seen[gfn >> 6] & bit))
		return;
	if (precopy_dirty_set_push(s, gfn) < 0) {
		/* Can't drop a dirty frame: remember and fail the harvest;
		 * the frame is lost from this harvest, so fail loudly. */
		dl->oom = 1;
		return;
	}
	dl->seen[gfn >> 6] |= bit;
	if (dl->hot[gfn] != UINT16_MAX)
		dl->hot[gfn]++;
}

long precopy_dirtylog_harvest(struct precopy_dirtylog *dl, struct precopy_dirty_set *set)
{
	uint64_t t0 = util_now_ns();
	set->n = 0;
	dl->cur = set;
	dl->oom = 0;
	int r = hv_dirty_collect(dl->vm, dirtylog__emit, dl);
	for (size_t i = 0; i < set->n; i++)
		dl->seen[set->gfns[i] >> 6] = 0;
	dl->cur = NULL;
	if (r < 0)
		return r;
	if (dl->oom)
		return -ENOMEM;
	uint64_t dt = util_now_ns() - t0;
	dl->st.harvests++;
	dl->st.frames += set->n;
	dl->st.total_ns += dt;
	dl->st.last_ns = dt;
	if (dt > dl->st.max_ns)
		dl->st.max_ns = dt;
	return (long)set->n;
}

unsigned precopy_dirtylog_hotness(const struct precopy_dirtylog *dl, uint64_t gfn)
{
	return gfn < dl->nframes ? dl->hot[gfn] : 0;
}

void precopy_dirtylog_get_stats(const struct precopy_dirtylog *dl, struct precopy_dirtylog_stats *st)
{
	*st = dl->st;
	st->ring_full_exits = hv_dirty_ring_full_exits(dl->vm);
}

enum hv_dirty_mode precopy_dirtylog_mode(const struct precopy_dirtylog *dl)
{
	return hv_vm_config(dl->vm)->dirty_mode;
}

int precopy_dirty_set_push(struct precopy_dirty_set *set, uint64_t gfn)
{
	if (set->n == set->cap) {
		size_t cap = set->cap ? set->cap * 2 : 4096;
		uint64_t *g = realloc(set->gfns, cap * sizeof(uint64_t));
		if (!g)
			return -ENOMEM;
		set->gfns = g;
		set->cap = cap;
	}
	set->gfns[set->n++] = gfn;
	return 0;
}

void precopy_dirty_set_free(struct precopy_dirty_set *set)
{
	free(set->gfns);
	set->gfns = NULL;
	set->n = set->cap = 0;
}
