/*
 * hv/guest-io.h - the guest ABI's port calls (guest/abi.h), served the same
 * way by every backend: the KVM backend calls it from a vCPU thread on a
 * KVM_EXIT_IO, the Xen backend from the ioreq-server thread of that vCPU.
 * Keeping one implementation is what makes a workload report the same
 * digest and exit code whichever hypervisor runs it.
 *
 * Threads: one struct hv_gio per vCPU, used only by the thread serving
 * that vCPU. The guest callbacks (struct hv_guest_ops) run on that thread.
 */
#ifndef PMG_HV_GUEST_IO_H
#define PMG_HV_GUEST_IO_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct hv_vm;

struct hv_gio {
	struct hv_vm *vm;
	unsigned idx;        /* vCPU index, passed to the callbacks */
	/* Blocks the vCPU for up to us microseconds (PMG_HC_SLEEP); it may
	 * return early (a pause or stop request): the guest re-checks time. */
	void (*sleep)(struct hv_gio *g, uint64_t us);
	void *opaque;        /* the backend's per-vCPU state, for sleep */
	char con[256];       /* console bytes not yet passed on (up to '\n') */
	size_t con_len;
};

enum {
	HV_GIO_CONTINUE = 0, /* the vCPU goes on */
	HV_GIO_VCPU_DONE,    /* PMG_HC_VCPU_DONE: this vCPU has no more work */
	HV_GIO_EXIT,         /* the guest wrote its exit code */
};

/* One OUT of size bytes (1, 2 or 4) with value val to port. Returns
 * HV_GIO_CONTINUE, HV_GIO_VCPU_DONE, HV_GIO_EXIT (*exit_code set, why
 * says so), or -errno for a guest error (a bad hypercall: why says which).
 * Ports the ABI does not define ignore writes. */
int hv_gio_out(struct hv_gio *g, uint16_t port, uint32_t val, int *exit_code, char *why, size_t whylen);

/* The CLOCK_MONOTONIC deadline of a PMG_HC_SLEEP of us microseconds, at
 * most 1 s away (the guest re-checks its time and sleeps again). For a
 * condition variable whose clock is CLOCK_MONOTONIC. */
void hv_gio_sleep_deadline(uint64_t us, struct timespec *ts);

/* Passes on console bytes still buffered (call when the vCPU stops). */
void hv_gio_flush(struct hv_gio *g);

#endif
