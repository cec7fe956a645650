/*
 * hv/kvm-internal.h - the KVM backend's private state, shared by its files
 * (kvm.c: VM, memory, vCPU threads; kvm-boot.c: image entry; kvm-dirty.c:
 * ring and bitmap; kvm-state.c: vCPU state).
 */
#ifndef PMG_HV_KVM_INTERNAL_H
#define PMG_HV_KVM_INTERNAL_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>
#include "hv/guest-io.h"
#include "hv/hv-backend.h"

struct kvm_vm;

struct kvm_vcpu {
	struct kvm_vm *vm;
	unsigned idx;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	struct kvm_dirty_gfn *ring; /* NULL unless ring mode */
	uint32_t ring_next;         /* next slot to collect (free-running) */
	pthread_t thread;
	bool thread_started;
	bool done;   /* left the guest for good */
	bool parked; /* waiting in the pause loop */
	uint64_t dirty_entries;     /* ring entries collected from this vCPU (under dirty_lock) */
	unsigned throttle_pct;      /* duty-cycle throttle, atomic */
	timer_t throttle_timer;
	bool throttle_timer_ok;
	struct hv_gio gio; /* the guest's port calls (hv/guest-io.h) */
};

struct kvm_vm {
	struct hv_vm *hv;
	int kvm_fd;
	int vm_fd;
	uint8_t *mem;
	uint64_t mem_size;
	uint32_t slot_flags;
	unsigned nvcpus;
	struct kvm_vcpu vcpus[HV_MAX_VCPUS];
	uint64_t tsc_khz;

	/* pause/stop protocol (see kvm.c) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pause_depth;
	bool stop_req;
	bool started;
	unsigned ndone;
	enum hv_stop_reason stop_why;
	int exit_code;
	char stop_detail[160];
	bool stopped_reported;

	/* dirty log */
	pthread_mutex_t dirty_lock;
	bool dirty_on;
	uint32_t ring_entries;
	uint64_t *stash;        /* ring-full harvests waiting for the next collect */
	size_t stash_len, stash_cap;
	uint64_t ring_full_exits;
	uint64_t *bitmap;       /* bitmap mode scratch */
	size_t bitmap_words;
};

static inline struct kvm_vm *kvm__vm(struct hv_vm *hv) { return hv->priv; }

/* kvm-dirty.c */
int kvm__dirty_init(struct kvm_vm *k);
int kvm__dirty_init_vcpu(struct kvm_vcpu *v);
void kvm__dirty_fini(struct kvm_vm *k);
int kvm__dirty_ring_full(struct kvm_vcpu *v);
int kvm__dirty_start(struct hv_vm *vm);
int kvm__dirty_collect(struct hv_vm *vm, void (*emit)(void *, uint64_t), void *opaque);
int kvm__dirty_stop(struct hv_vm *vm);
uint64_t kvm__ring_full_exits(struct hv_vm *vm);

/* kvm-boot.c */
int kvm__boot_image(struct hv_vm *vm, const char *path, const char *cmdline, char *err, size_t errlen);
int kvm__setup_cpuid(struct kvm_vm *k, struct kvm_vcpu *v);

/* kvm-state.c */
int kvm__vcpu_save(struct hv_vm *vm, unsigned idx, void **blob, size_t *len);
int kvm__vcpu_load(struct hv_vm *vm, unsigned idx, const void *blob, size_t len);

/* kvm.c */
int kvm__set_slot(struct kvm_vm *k, uint32_t flags);

#endif
