/*
 * hv/kvm-dirty.c - KVM's two dirty logs.
 *
 * ring: KVM_CAP_DIRTY_LOG_RING(_ACQ_REL), one ring of kvm_dirty_gfn per
 *   vCPU, filled by KVM as the guest writes (from PML on Intel hosts).
 *   Entries are collected strictly in order: load flags with acquire, take
 *   slot/offset, store RESET with release, then KVM_RESET_DIRTY_RINGS
 *   re-protects those pages. A vCPU whose ring is full exits with
 *   KVM_EXIT_DIRTY_RING_FULL; its own thread then harvests into a stash
 *   that the next collect hands out.
 * bitmap: KVM_GET_DIRTY_LOG + KVM_CLEAR_DIRTY_LOG with manual protect, a
 *   whole-memory scan: the baseline the ring is measured against.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "hv/kvm-internal.h"

#define DEFAULT_RING_ENTRIES 65536u

int kvm__dirty_init(struct kvm_vm *k)
{
	struct kvm_enable_cap cap;
	enum hv_dirty_mode mode = k->hv->cfg.dirty_mode;

	if (mode == HV_DIRTY_RING) {
		int acq = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
		int max = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, acq > 0 ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING);
		if (max <= 0)
			return -ENOTSUP;
		uint32_t want = k->hv->cfg.ring_entries ? k->hv->cfg.ring_entries : DEFAULT_RING_ENTRIES;
		while ((uint64_t)want * sizeof(struct kvm_dirty_gfn) > (uint64_t)max)
			want >>= 1;
		if (want < 64)
			return -ENOTSUP;
		memset(&cap, 0, sizeof(cap));
		cap.cap = acq > 0 ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
		cap.args[0] = (uint64_t)want * sizeof(struct kvm_dirty_gfn);
		if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			return -errno;
		k->ring_entries = want;
		k->stash_cap = 4096;
		k->stash = malloc(k->stash_cap * sizeof(uint64_t));
		if (!k->stash)
			return -ENOMEM;
	} else if (mode == HV_DIRTY_BITMAP) {
		if (ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) <= 0)
			return -ENOTSUP;
		memset(&cap, 0, sizeof(cap));
		cap.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
		/* No INITIALLY_SET: the first harvest should return what the
		 * guest wrote, not every page of a 64 GiB guest. */
		cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
		if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
			return -errno;
		k->bitmap_words = (size_t)((k->mem_size >> HV_PAGE_SHIFT) + 63) / 64;
		k->bitmap = calloc(k->bitmap_words, sizeof(uint64_t));
		if (!k->bitmap)
			return -ENOMEM;
	}
	return 0;
}

int kvm__dirty_init_vcpu(struct kvm_vcpu *v)
{
	struct kvm_vm *k = v->vm;
	if (!k->ring_entries)
		return 0;
	long psz = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)k->ring_entries * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE,
		       MAP_SHARED, v->fd, (off_t)psz * KVM_DIRTY_LOG_PAGE_OFFSET);
	if (p == MAP_FAILED)
		return -errno;
	v->ring = p;
	return 0;
}

void kvm__dirty_fini(struct kvm_vm *k)
{
	free(k->stash);
	k->stash = NULL;
	free(k->bitmap);
	k->bitmap = NULL;
}

static int stash_push(struct kvm_vm *k, uint64_t gfn)
{
	if (k->stash_len == k->stash_cap) {
		size_t cap = k->stash_cap * 2;
		uint64_t *n = realloc(k->stash, cap * sizeof(uint64_t));
		if (!n)
			return -ENOMEM;
		k->stash = n;
		k->stash_cap = cap;
	}
	k->stash[k->stash_len++] = gfn;
	return 0;
}

/* Collects one ring in order. Caller holds dirty_lock. Returns entries. */
static long ring_collect(struct kvm_vcpu *v, void (*emit)(void *, uint64_t), void *opaque)
{
	struct kvm_vm *k = v->vm;
	uint32_t mask = k->ring_entries - 1;
	long n = 0;
	for (;;) {
		struct kvm_dirty_gfn *e = &v->ring[v->ring_next & mask];
		uint32_t flags = __atomic_load_n(&e->flags, __ATOMIC_ACQUIRE);
		if (!(flags & KVM_DIRTY_GFN_F_DIRTY))
			break;
		uint64_t gfn = e->offset; /* slot 0 starts at GPA 0 */
		if (e->slot == 0 && gfn < (k->mem_size >> HV_PAGE_SHIFT)) {
			if (emit)
				emit(opaque, gfn);
			else if (stash_push(k, gfn) < 0)
				return -ENOMEM; /* leave it DIRTY: collected next time */
		}
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		v->ring_next++;
		v->dirty_entries++;
		n++;
	}
	return n;
}

int kvm__dirty_ring_full(struct kvm_vcpu *v)
{
	struct kvm_vm *k = v->vm;
	pthread_mutex_lock(&k->dirty_lock);
	k->ring_full_exits++;
	long n = ring_collect(v, NULL, NULL);
	if (n > 0)
		ioctl(k->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
	pthread_mutex_unlock(&k->dirty_lock);
	return n < 0 ? (int)n : 0;
}

int kvm__dirty_start(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	int r;
	pthread_mutex_lock(&k->dirty_lock);
	r = kvm__set_slot(k, KVM_MEM_LOG_DIRTY_PAGES);
	if (!r)
		k->dirty_on = true;
	pthread_mutex_unlock(&k->dirty_lock);
	return r;
}

static void dirty_drop(void *opaque, uint64_t gfn)
{
	(void)opaque;
	(void)gfn;
}

int kvm__dirty_stop(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	int r;
	pthread_mutex_lock(&k->dirty_lock);
	r = kvm__set_slot(k, 0);
	if (!r) {
		k->dirty_on = false;
		/* Entries left in the rings would come out of the next start's
		 * first collect as stale frames; drain them now. The ring
		 * capability itself stays: KVM only allows it before vCPUs exist. */
		if (k->ring_entries) {
			k->stash_len = 0;
			for (unsigned i = 0; i < k->nvcpus; i++)
				ring_collect(&k->vcpus[i], dirty_drop, NULL);
			ioctl(k->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
		}
	}
	pthread_mutex_unlock(&k->dirty_lock);
	return r;
}

static int ring_collect_all(struct kvm_vm *k, void (*emit)(void *, uint64_t), void *opaque)
{
	long total = 0;
	for (size_t i = 0; i < k->stash_len; i++)
		emit(opaque, k->stash[i]);
	total += (long)k->stash_len;
	k->stash_len = 0;
	for (unsigned i = 0; i < k->nvcpus; i++) {
		long n = ring_collect(&k->vcpus[i], emit, opaque);
		if (n < 0)
			return (int)n;
		total += n;
	}
	/* Re-protect before anyone reads the pages we just handed out. */
	if (ioctl(k->vm_fd, KVM_RESET_DIRTY_RINGS, 0) < 0)
		return -errno;
	return total > INT32_MAX ? INT32_MAX : (int)total;
}

static int bitmap_collect(struct kvm_vm *k, void (*emit)(void *, uint64_t), void *opaque)
{
	struct kvm_dirty_log log = { .slot = 0, .dirty_bitmap = k->bitmap };
	long total = 0;
	if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return -errno;
	for (size_t w = 0; w < k->bitmap_words; w++) {
		uint64_t bits = k->bitmap[w];
		while (bits) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			bits &= bits - 1;
			emit(opaque, w * 64 + b);
			total++;
		}
	}
	if (total) {
		struct kvm_clear_dirty_log c = {
			.slot = 0,
			.num_pages = (uint32_t)(k->mem_size >> HV_PAGE_SHIFT),
			.first_page = 0,
			.dirty_bitmap = k->bitmap,
		};
		if (ioctl(k->vm_fd, KVM_CLEAR_DIRTY_LOG, &c) < 0)
			return -errno;
	}
	return total > INT32_MAX ? INT32_MAX : (int)total;
}

int kvm__dirty_collect(struct hv_vm *vm, void (*emit)(void *, uint64_t), void *opaque)
{
	struct kvm_vm *k = kvm__vm(vm);
	int r;
	pthread_mutex_lock(&k->dirty_lock);
	if (!k->dirty_on)
		r = -EINVAL;
	else if (k->ring_entries)
		r = ring_collect_all(k, emit, opaque);
	else
		r = bitmap_collect(k, emit, opaque);
	pthread_mutex_unlock(&k->dirty_lock);
	return r;
}

uint64_t kvm__ring_full_exits(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	pthread_mutex_lock(&k->dirty_lock);
	uint64_t n = k->ring_full_exits;
	pthread_mutex_unlock(&k->dirty_lock);
	return n;
}
