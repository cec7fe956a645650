/*
 * guest/abi.h - the contract between guest images and the VMM.
 *
 * Shared by the freestanding guest runtime and the host. Everything here is
 * a wire format between two programs, so only fixed-size types are used.
 *
 * Guest -> VMM calls are port I/O at CPL 3 (the VMM runs guests with
 * IOPL 3). The same ports mean something sensible under QEMU too:
 *   PMG_PORT_CONSOLE  8-bit out: one console byte (QEMU: COM1 THR)
 *   PMG_PORT_EXIT     32-bit out: exit code (QEMU: isa-debug-exit)
 *   PMG_PORT_HCALL    32-bit out: guest-physical address of a struct
 *                     pmg_hcall (QEMU: unassigned, ignored)
 */
#ifndef PMG_GUEST_ABI_H
#define PMG_GUEST_ABI_H

#include <stdint.h>

#define PMG_PORT_CONSOLE 0x3f8
#define PMG_PORT_EXIT 0xf4
#define PMG_PORT_HCALL 0x500

/* Link address of every guest image; the VMM keeps [0, 1 MiB) for itself. */
#define PMG_IMAGE_BASE 0x100000ull
#define PMG_MAX_VCPUS 2

enum pmg_hcall_nr {
	PMG_HC_REPORT = 1, /* a0 = gpa of struct pmg_report */
	PMG_HC_SLEEP = 2,  /* a0 = microseconds; may return early */
	PMG_HC_WRITES = 3, /* a0 = gpa of uint64_t gfn[a1]: frames written since last WRITES */
	PMG_HC_VCPU_DONE = 4, /* this vCPU has nothing more to do */
	PMG_HC_BARRIER = 5,   /* a0 = round: this vCPU finished a round's writes; returns when the host says go */
	PMG_HC_POLL = 6,      /* ret = 1 once the host asked the guest to finish its work (ctl NAME finish), else 0 */
};

struct pmg_hcall {
	uint64_t nr;
	uint64_t a0, a1, a2;
	uint64_t ret;
};

#define PMG_REPORT_MAGIC 0x504d4752u /* "PMGR" */
#define PMG_REPORT_VERSION 1

struct pmg_report {
	uint32_t magic;
	uint32_t version;
	char workload[16];
	uint64_t seed;
	uint64_t ops;
	uint64_t digest;
	uint64_t max_stall_tsc; /* largest gap between work-loop iterations, TSC ticks */
	uint64_t tsc_khz;       /* what the guest believed; 0 if unknown */
	uint64_t tsc_backwards; /* times rdtsc was seen to go backwards */
	uint64_t run_tsc;       /* TSC ticks from workload start to report */
	uint64_t vcpus;
};

#endif
