/*
 * hv/hv-backend.h - what a hypervisor backend implements (internal).
 * hv.c forwards the public calls here after generic argument checks.
 */
#ifndef PMG_HV_BACKEND_H
#define PMG_HV_BACKEND_H

#include <pthread.h>
#include "config.h"
#include "hv/hv.h"

struct hv_backend {
	const char *name;
	int (*create)(struct hv_vm *vm);
	void (*destroy)(struct hv_vm *vm);
	void *(*mem)(struct hv_vm *vm, uint64_t gpa, uint64_t len);
	int (*present_range)(struct hv_vm *vm, uint64_t gfn, uint64_t n, uint8_t *vec);
	int (*vcpu_entries)(struct hv_vm *vm, unsigned idx, uint64_t *entries);
	int (*throttle)(struct hv_vm *vm, unsigned idx, unsigned pct);
	int (*boot_image)(struct hv_vm *vm, const char *path, const char *cmdline, char *err, size_t errlen);
	int (*start)(struct hv_vm *vm);
	void (*stop)(struct hv_vm *vm);
	void (*wait)(struct hv_vm *vm);
	int (*pause)(struct hv_vm *vm);
	int (*resume)(struct hv_vm *vm);
	int (*is_running)(struct hv_vm *vm);
	int (*has_ended)(struct hv_vm *vm);
	int (*dirty_start)(struct hv_vm *vm);
	int (*dirty_collect)(struct hv_vm *vm, void (*emit)(void *, uint64_t), void *opaque);
	int (*dirty_stop)(struct hv_vm *vm);
	uint64_t (*ring_full_exits)(struct hv_vm *vm);
	int (*vcpu_save)(struct hv_vm *vm, unsigned idx, void **blob, size_t *len);
	int (*vcpu_load)(struct hv_vm *vm, unsigned idx, const void *blob, size_t len);
	int64_t (*domid)(struct hv_vm *vm); /* optional: NULL means none */
	int (*prepare_incoming)(struct hv_vm *vm, char *err, size_t errlen); /* optional */
	int (*rename)(struct hv_vm *vm, const char *name);                     /* optional */
	/* optional: see hv_vm_attach(); vm->cfg holds a placeholder size and
	 * the dirty mode when it is called, after create() */
	int (*attach)(struct hv_vm *vm, const char *domain, unsigned flags, char *err, size_t errlen);
	/* optional: see hv_vm_suspend(), hv_vm_moved(), hv_vm_domain_blob(),
	 * hv_vm_prepare_restore() */
	int (*suspend)(struct hv_vm *vm, char *err, size_t errlen);
	void (*moved)(struct hv_vm *vm);
	int (*toolstack_guest)(struct hv_vm *vm);
	int (*domain_blob)(struct hv_vm *vm, void **blob, size_t *len);
	int (*prepare_restore)(struct hv_vm *vm, const void *blob, size_t len, char *err, size_t errlen);
};

struct hv_vm {
	const struct hv_backend *be;
	struct hv_vm_config cfg;
	const struct hv_guest_ops *gops;
	void *gops_opaque;
	void *priv; /* backend state */
	int finish_req; /* hv_vm_request_finish(); read by PMG_HC_POLL (atomics) */
	uint64_t polls; /* PMG_HC_POLL calls served (atomics): the guest is in its work loop */
	/* Frames the VMM itself wrote while the dirty log was armed (see
	 * hv_dirty_note): no hypervisor log sees writes through our mapping. */
	pthread_mutex_t vmm_lock;
	int vmm_armed, vmm_lost;
	uint64_t *vmm_gfns;
	size_t vmm_n, vmm_cap;
};

/* The VMM wrote [gpa, gpa+len) of guest memory (a hypercall's result):
 * the next dirty-log collect returns those frames too, so a pre-copy that
 * sent them earlier sends them again. Any thread; call it after the write. */
void hv_dirty_note(struct hv_vm *vm, uint64_t gpa, uint64_t len);

extern const struct hv_backend hv_kvm_backend;
#ifdef HAVE_XEN
extern const struct hv_backend hv_xen_backend;
/* hv_domain_name() for Xen (xen.c). */
int xen__domain_name(const char *domain, char *name, size_t len);
#endif

#endif
