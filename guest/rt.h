/*
 * guest/rt.h - freestanding runtime for guest workloads (no libc).
 *
 * Runs at CPL 3 with IOPL 3 under the built-in VMM and under QEMU/Xen PVH.
 * Single address space, identity mapped, so a pointer is a guest-physical
 * address. Everything here is deterministic; time is read only for
 * rate limiting and stall measurement, never for results.
 */
#ifndef PMG_GUEST_RT_H
#define PMG_GUEST_RT_H

#include <stdint.h>
#include <stddef.h>
#include "abi.h"

#define PAGE_SIZE 4096ull

/* Provided by each workload image. */
struct rt_ctx;
extern const char *const rt_workload_name;
/* Called once per vCPU. Returns the vCPU's partial digest; adds ops done to *ops. */
uint64_t workload_run(struct rt_ctx *ctx, unsigned vcpu, uint64_t *ops);
/* Called on vCPU 0 before any vCPU runs work (vCPUs > 0 wait for it). */
void workload_init(struct rt_ctx *ctx);

struct rt_ctx {
	const char *cmdline;
	uint64_t mem_end;     /* highest RAM address + 1 */
	uint64_t heap_start;  /* first free byte after the image, 2 MiB aligned */
	uint64_t tsc_khz;     /* 0 when unknown */
	unsigned vcpus;
	uint64_t seed;
	int log_writes;       /* report written frames with PMG_HC_WRITES */
	int until_finish;     /* until=finish: work until the host asks (rt_finish_requested) */
	int no_sleep;         /* sleep=0: rt_wait_until spins, never asks the VMM to sleep */
};

/* port I/O */
static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" ::"a"(v), "Nd"(port)); }
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}
static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

void rt_putc(char c);
void rt_puts(const char *s);
void rt_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void rt_exit(uint32_t code) __attribute__((noreturn));
uint64_t rt_hcall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2);

/* Command line: "key=value" words. Sizes accept K/M/G suffixes. */
int rt_arg_str(const struct rt_ctx *c, const char *key, char *out, size_t outsz);
uint64_t rt_arg_u64(const struct rt_ctx *c, const char *key, uint64_t dflt);

/* Deterministic PRNG (xorshift64*) and a 64-bit mixing hash. */
static inline uint64_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}
static inline uint64_t mix64(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdull;
	return h ^ (h >> 33);
}
uint64_t rt_hash(uint64_t h, const void *p, size_t n);

/*
 * Stall tracking. rt_tick() is called at the top of every work-loop
 * iteration; rt_wait_until() is the only sanctioned wait: it keeps
 * measuring gaps while it waits (so a pause during a wait still shows) but
 * does not count the wait itself. A long wait sleeps in the VMM
 * (PMG_HC_SLEEP) where the VMM takes the call; with the guest arg sleep=0
 * it spins instead, as it does under a VMM that ignores the call (QEMU):
 * for comparing stalls across VMMs, since a thread woken from a sleep
 * comes back as late as the host's scheduler makes it.
 */
void rt_tick(void);
void rt_wait_until(uint64_t tsc_deadline);
uint64_t rt_us_to_tsc(uint64_t us);

/* Ops timeline (guest arg tl_ms=N, N ms windows; off by default): a
 * workload calls rt_progress(ops done so far by this vCPU) at the top of its
 * work loop; the counts per window, summed over vCPUs, are printed as one
 * "PMG-OPS window_ms= stall_at_ms= windows= ops=a,b,..." line before the
 * PMG-REPORT line. stall_at_ms is where the largest stall ended. */
void rt_progress(uint64_t ops);

/* until=finish (any workload that supports it): whether the host asked
 * the guest to finish its work (`pml-migrate ctl NAME finish`). Call it at
 * a point where stopping leaves a result that ops=N reproduces (N = the
 * ops done so far). Asks the host (PMG_HC_POLL, a port call) at most every
 * 10 ms of TSC time per vCPU, so a workload can call it every iteration;
 * once it returned 1 it stays 1. Always 0 without until=finish, and under
 * a VMM that does not know the call (QEMU): such a guest never ends. */
int rt_finish_requested(void);

/* Writes-log for dirty-log tests: record a written frame; flushed to the
 * VMM by rt_writes_flush() (and automatically when the buffer fills). */
void rt_writes_note(const void *page);
void rt_writes_flush(void);

extern struct rt_ctx rt;

#endif
