/*
 * util/util.c - exit codes, errors, the clock, VM names, the control
 * socket's client side.
 */
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "util/rundir.h"
#include "util/util.h"

void util_err(const char *fmt, ...)
{
	va_list ap;
	fputs("pml-migrate: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int util_valid_name(const char *name)
{
	size_t n = strlen(name);
	/* Not '.' first (hidden, "..") nor '-' first (would read as an option). */
	if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

uint64_t util_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int util_parse_cpulist(const char *s, void *setp)
{
	cpu_set_t *set = setp;
	CPU_ZERO(set);
	if (!s || !*s)
		return -EINVAL;
	while (*s) {
		char *end;
		if (*s < '0' || *s > '9')
			return -EINVAL;
		unsigned long a = strtoul(s, &end, 10), b = a;
		if (*end == '-') {
			if (end[1] < '0' || end[1] > '9')
				return -EINVAL;
			b = strtoul(end + 1, &end, 10);
		}
		if (b < a || b >= CPU_SETSIZE)
			return -EINVAL;
		for (unsigned long c = a; c <= b; c++)
			CPU_SET(c, set);
		if (*end == ',' && end[1])
			end++;
		else if (*end)
			return -EINVAL;
		s = end;
	}
	return 0;
}

/* The CPUs this process's vCPU threads (named vcpuN) last ran on, into
 * out; how many such threads there are. */
static int util__vcpu_cpus(cpu_set_t *out)
{
	char path[64], buf[1024];
	int n = 0;
	CPU_ZERO(out);
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		char *end;
		long tid = strtol(e->d_name, &end, 10);
		if (tid <= 0 || *end)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%ld/comm", tid);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		int is_vcpu = fgets(buf, sizeof(buf), f) && !strncmp(buf, "vcpu", 4) && buf[4] >= '0' && buf[4] <= '9';
		fclose(f);
		if (!is_vcpu)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%ld/stat", tid);
		f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = 0;
		/* Field 39, processor: the 37th after the ")" that ends comm. */
		char *p = strrchr(buf, ')');
		for (int field = 2; p && field < 39; field++)
			p = strchr(p + 1, ' ');
		if (p) {
			long cpu = strtol(p + 1, NULL, 10);
			if (cpu >= 0 && cpu < CPU_SETSIZE)
				CPU_SET(cpu, out);
			n++;
		}
	}
	closedir(d);
	return n;
}

/* PML_MIGRATE_WORKER_CPUS for the calling thread (util_thread_background,
 * util_thread_follow). */
static void util__worker_cpus(void)
{
	static int warned;
	const char *e = getenv("PML_MIGRATE_WORKER_CPUS");
	cpu_set_t want, have;
	if (!e || !*e)
		return;
	/* What the process may use: its first thread's (the owner's, never a
	 * worker's) set. */
	if (sched_getaffinity(getpid(), sizeof(have), &have) < 0)
		return;
	if (!strcmp(e, "auto")) {
		cpu_set_t vc;
		if (!util__vcpu_cpus(&vc))
			return; /* no vCPU here (yet): nothing to keep off */
		CPU_XOR(&want, &have, &vc);
		CPU_AND(&want, &want, &have); /* have minus the vCPUs' CPUs */
		/* Every CPU has a vCPU: back to all of them (nice alone). */
		sched_setaffinity(0, sizeof(want), CPU_COUNT(&want) ? &want : &have);
		return;
	}
	if (util_parse_cpulist(e, &want) < 0) {
		if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
			util_err("PML_MIGRATE_WORKER_CPUS '%s': neither auto nor a CPU list (like 2-3,6); ignored", e);
		return;
	}
	CPU_AND(&want, &want, &have);
	if (!CPU_COUNT(&want)) {
		if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
			util_err("PML_MIGRATE_WORKER_CPUS '%s': none of these CPUs is available here; ignored", e);
		return;
	}
	sched_setaffinity(0, sizeof(want), &want); /* 0: this thread */
}

void util_thread_keep_off(void *saved)
{
	if (sched_getaffinity(0, sizeof(cpu_set_t), saved) < 0)
		CPU_ZERO((cpu_set_t *)saved);
	util__worker_cpus();
}

void util_thread_restore(const void *saved)
{
	if (CPU_COUNT((const cpu_set_t *)saved))
		sched_setaffinity(0, sizeof(cpu_set_t), saved);
}

void util_thread_follow(uint64_t *last_ns)
{
	uint64_t now = util_now_ns();
	if (*last_ns && now - *last_ns < 100000000ull)
		return;
	*last_ns = now;
	const char *e = getenv("PML_MIGRATE_WORKER_CPUS");
	if (e && !strcmp(e, "auto"))
		util__worker_cpus();
}

void util_thread_background(void)
{
	util__worker_cpus();
	/* 10: where a migration thread and a vCPU share a core, CFS gives
	 * the vCPU about 90 % of it and cuts the thread's turns short, so
	 * the guest sees gaps of a millisecond or two instead of whole
	 * scheduler slices (measured in bench/RESULTS.md). */
	const char *e = getenv("PML_MIGRATE_WORKER_NICE");
	char *end = NULL;
	long nice = e && *e ? strtol(e, &end, 10) : 10;
	if (end && *end)
		nice = 10; /* not a number: the default */
	if (nice > 0 && nice <= 19)
		setpriority(PRIO_PROCESS, (id_t)gettid(), (int)nice);
}

int util_ctl_connect(const char *prefix, const char *name)
{
	struct sockaddr_un a;
	char dir[RUNDIR_MAX_PATH], why[RUNDIR_MAX_PATH + 200];
	int dfd = rundir_open(0, dir, sizeof(dir), why, sizeof(why));
	if (dfd < 0) {
		if (prefix && dfd == -ENOENT)
			util_err("%s: no VM named '%s' (no run directory %s)", prefix, name, dir);
		else if (prefix)
			util_err("%s: %s", prefix, why);
		return dfd;
	}
	int e = rundir_sock_addr(dfd, name, &a);
	int fd = e < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		e = e < 0 ? e : -errno;
		if (prefix)
			util_err("%s: no VM named '%s' (%s/%s.sock: %s)", prefix, name, dir, name, strerror(-e));
		if (fd >= 0)
			close(fd);
		close(dfd);
		return e;
	}
	close(dfd);
	return fd;
}

int util_read_line(int fd, char *buf, size_t len, size_t *have, char *line, size_t linelen, int timeout_ms)
{
	for (;;) {
		char *nl = memchr(buf, '\n', *have);
		if (nl) {
			size_t n = (size_t)(nl - buf);
			size_t k = n < linelen - 1 ? n : linelen - 1;
			memcpy(line, buf, k);
			line[k] = 0;
			memmove(buf, nl + 1, *have - n - 1);
			*have -= n + 1;
			return (int)k;
		}
		if (*have == len)
			return -EMSGSIZE;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, timeout_ms);
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		ssize_t got = read(fd, buf + *have, len - *have);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0)
			return 0;
		*have += (size_t)got;
	}
}
