/*
 * util/util.h - small helpers shared by the CLI and the VM-hosting process
 * (vmhost/): exit codes, errors, the monotonic clock, VM names, the
 * control socket's client side.
 *
 * Threads: any; no shared state.
 */
#ifndef PMG_UTIL_UTIL_H
#define PMG_UTIL_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* Exit codes, documented in the README. */
enum {
	PMG_EXIT_OK = 0,
	PMG_EXIT_FAIL = 1,
	PMG_EXIT_USAGE = 2,
	PMG_EXIT_INDETERMINATE = 3,
};

/* Prints "pml-migrate: <msg>" on stderr. */
void util_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t util_now_ns(void);
/* How long before now t was, in ns: 0 when t is not before now (a now
 * read before t was stamped is no age at all, never a wrapped-around
 * eternity past every deadline). */
static inline uint64_t util_age_ns(uint64_t now, uint64_t t) { return now > t ? now - t : 0; }

/* Lowers the calling thread's scheduling priority (nice, per thread on
 * Linux) for a migration's worker threads, so that where a host has
 * fewer free cores than runnable threads the guest's vCPUs are the ones
 * that keep running and the migration takes the rest. The nice value is
 * PML_MIGRATE_WORKER_NICE (0..19, default 10; 0 leaves the priority
 * alone). With PML_MIGRATE_WORKER_CPUS (a CPU list, "2-3,6") the thread
 * is also kept to those CPUs (those of them it may use; none of them: a
 * warning, and the affinity is left alone): a worker that shares a core
 * with a vCPU takes it for a whole scheduler tick each turn, a worker
 * kept off the vCPUs' cores never does (bench/RESULTS.md, issue 23).
 * PML_MIGRATE_WORKER_CPUS=auto keeps it off the CPUs this process's vCPU
 * threads (named vcpuN) last ran on, where any CPU is left (none: every
 * CPU, nice alone; no vCPU thread: left alone). Threads the worker
 * creates inherit both. Best effort: a refusal changes nothing. Call from
 * the thread itself, before it works. */
void util_thread_background(void);
/* For a thread that is not a worker but works for a migration while it
 * lasts (the source's event loop, whose writes carry every byte): the
 * CPUs PML_MIGRATE_WORKER_CPUS gives workers, its nice value untouched;
 * saved (a cpu_set_t) receives the affinity it had, for
 * util_thread_restore(). Unset: nothing (saved then restores nothing
 * new). Threads it starts meanwhile inherit the CPUs, so it must start
 * no vCPU thread before it restores. Call from the thread itself. */
void util_thread_keep_off(void *saved);
void util_thread_restore(const void *saved);
/* For a long-lived worker under PML_MIGRATE_WORKER_CPUS=auto: looks
 * again where the vCPUs run (they move) and moves the thread off them, at
 * most every 100 ms (*last_ns: the last time, 0 at first; the caller's).
 * Otherwise nothing. Call from the thread itself, between jobs. */
void util_thread_follow(uint64_t *last_ns);

/* Parses a CPU list as the kernel writes them ("0-3,6"; "0"): each CPU
 * into set (cleared first). Returns 0, or -EINVAL for an empty or
 * malformed list or a CPU past CPU_SETSIZE. set: a cpu_set_t. */
int util_parse_cpulist(const char *s, void *set);

/* NAME: 1-64 chars of [A-Za-z0-9._-], not starting with '.' or '-'. */
int util_valid_name(const char *name);

/* Connects to VM name's control socket in the run directory (util/rundir.h:
 * a directory that is not ours is refused). Returns the socket fd, or
 * -errno with a message printed (prefix: the command; NULL: quiet). */
int util_ctl_connect(const char *prefix, const char *name);
/* Reads one line (without '\n') of at most len-1 bytes, waiting up to
 * timeout_ms (-1: forever). buf/have keep bytes beyond the line between
 * calls. Returns the line length, 0 at EOF, -ETIMEDOUT or -errno. */
int util_read_line(int fd, char *buf, size_t len, size_t *have, char *line, size_t linelen, int timeout_ms);

#endif
