/*
 * PML_MIGRATE_WORKER_CPUS (issue 23): a worker thread that calls
 * util_thread_background() is kept to the listed CPUs, and at its nice
 * value; a thread the owner creates afterwards is not (vCPU threads come
 * from the owner, never from a worker); a list naming no CPU this process
 * may use, or a malformed one, leaves the affinity alone; and the CPU list
 * parser takes what the kernel writes and refuses the rest. With auto, a
 * worker keeps off the CPUs the process's vCPU threads (vcpuN) run on,
 * follows a vCPU that moves, and takes every CPU when vCPUs are on all.
 * The source's event loop (util_thread_keep_off) is kept to the same CPUs
 * while a migration lasts, at its own nice value, and given them back.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include "tests/tap.h"
#include "util/util.h"

/* A stand-in vCPU thread, named vcpuN, spinning on one CPU until told. */
struct vcpu {
	pthread_t t;
	int idx, cpu;
	volatile int stop, running;
};

static void *vcpu_spin(void *arg)
{
	struct vcpu *v = arg;
	char name[16];
	snprintf(name, sizeof(name), "vcpu%d", v->idx);
	pthread_setname_np(pthread_self(), name);
	cpu_set_t c;
	CPU_ZERO(&c);
	CPU_SET(v->cpu, &c);
	pthread_setaffinity_np(pthread_self(), sizeof(c), &c);
	while (!v->stop)
		v->running = 1; /* on its CPU now: the kernel's "last ran on" is it */
	return NULL;
}

static void vcpu_start(struct vcpu *v, int idx, int cpu)
{
	v->idx = idx, v->cpu = cpu, v->stop = 0, v->running = 0;
	pthread_create(&v->t, NULL, vcpu_spin, v);
	while (!v->running)
		usleep(1000);
	usleep(20000);
}

static void vcpu_stop(struct vcpu *v)
{
	v->stop = 1;
	pthread_join(v->t, NULL);
}

/* A worker under auto that checks again (util_thread_follow) after the
 * vCPU moved: its affinity after. */
static void *follower(void *arg)
{
	struct vcpu *v = arg;
	uint64_t last = 0;
	util_thread_background();
	util_thread_follow(&last);
	/* The vCPU moves to the other CPU; 100 ms on, the worker follows. */
	cpu_set_t c;
	CPU_ZERO(&c);
	CPU_SET(v->cpu ^ 1, &c);
	pthread_setaffinity_np(v->t, sizeof(c), &c);
	usleep(150000);
	util_thread_follow(&last);
	cpu_set_t *out = malloc(sizeof(*out));
	sched_getaffinity(0, sizeof(*out), out);
	return out;
}

/* The source's loop: kept off with the workers, nice untouched, given
 * back after. */
struct loop_seen {
	cpu_set_t during, after;
	int nice;
};

static void *loop_thread(void *arg)
{
	struct loop_seen *l = arg;
	cpu_set_t saved;
	util_thread_keep_off(&saved);
	sched_getaffinity(0, sizeof(l->during), &l->during);
	l->nice = getpriority(PRIO_PROCESS, (id_t)gettid());
	util_thread_restore(&saved);
	sched_getaffinity(0, sizeof(l->after), &l->after);
	return NULL;
}

static struct loop_seen run_loop(void)
{
	struct loop_seen l;
	memset(&l, 0, sizeof(l));
	pthread_t t;
	if (pthread_create(&t, NULL, loop_thread, &l) == 0)
		pthread_join(t, NULL);
	return l;
}

struct seen {
	int background; /* call util_thread_background() first */
	cpu_set_t cpus;
	int nice;
};

static void *probe(void *arg)
{
	struct seen *s = arg;
	if (s->background)
		util_thread_background();
	sched_getaffinity(0, sizeof(s->cpus), &s->cpus);
	errno = 0;
	s->nice = getpriority(PRIO_PROCESS, (id_t)gettid());
	return NULL;
}

static struct seen run(int background)
{
	struct seen s = { .background = background };
	pthread_t t;
	if (pthread_create(&t, NULL, probe, &s) == 0)
		pthread_join(t, NULL);
	return s;
}

static int parses(const char *list, const char *want)
{
	cpu_set_t set;
	char got[256] = "";
	int e = util_parse_cpulist(list, &set);
	if (e)
		return want == NULL;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &set))
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%d", *got ? "," : "", c);
	return want && !strcmp(got, want);
}

int main(void)
{
	cpu_set_t all;
	sched_getaffinity(0, sizeof(all), &all);
	int n = CPU_COUNT(&all), last = -1;
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &all))
			last = c;
	int base = getpriority(PRIO_PROCESS, (id_t)gettid()); /* the test's own nice */
	int wnice = base < 10 ? 10 : base;
	tap_plan(11);

	tap_ok(parses("0", "0") && parses("0-2,5", "0,1,2,5") && parses("3,1", "1,3") && parses("7-7", "7"),
	       "CPU lists as the kernel writes them: 0, 0-2,5, 3,1, 7-7");
	tap_ok(parses("", NULL) && parses("a", NULL) && parses("3-1", NULL) && parses("1,", NULL) && parses("-1", NULL) &&
		       parses("1,,2", NULL) && parses("2-", NULL) && parses("99999", NULL) && parses("1 2", NULL),
	       "refused: empty, a letter, 3-1, 1, (trailing comma), -1, 1,,2, 2-, a CPU past CPU_SETSIZE, 1 2");

	char v[32];
	snprintf(v, sizeof(v), "%d", last);
	setenv("PML_MIGRATE_WORKER_CPUS", v, 1);
	setenv("PML_MIGRATE_WORKER_NICE", "10", 1);
	struct seen w = run(1), o = run(0);
	if (n < 2) {
		tap_ok(1, "# SKIP one CPU only: nothing to keep a worker off");
	} else {
		tap_ok(CPU_COUNT(&w.cpus) == 1 && CPU_ISSET(last, &w.cpus) && w.nice == wnice,
		       "a worker with PML_MIGRATE_WORKER_CPUS=%s runs on CPU %d only (%d CPUs), at nice %d", v, last,
		       CPU_COUNT(&w.cpus), w.nice);
	}
	tap_ok(CPU_EQUAL(&o.cpus, &all) && o.nice == base,
	       "a thread the owner creates keeps every CPU (%d of %d) and nice %d", CPU_COUNT(&o.cpus), n, o.nice);

	/* The source's loop under the same list: kept to it while the
	 * migration lasts, its nice value its own, everything back after. */
	struct loop_seen l = run_loop();
	if (n < 2)
		tap_ok(1, "# SKIP one CPU only");
	else
		tap_ok(CPU_COUNT(&l.during) == 1 && CPU_ISSET(last, &l.during) && l.nice == base && CPU_EQUAL(&l.after, &all),
		       "a loop kept off with the workers: on CPU %d only while it works (%d CPUs), nice %d, every CPU after (%d)",
		       last, CPU_COUNT(&l.during), l.nice, CPU_COUNT(&l.after));
	unsetenv("PML_MIGRATE_WORKER_CPUS");
	l = run_loop();
	tap_ok(CPU_EQUAL(&l.during, &all) && CPU_EQUAL(&l.after, &all), "unset: the loop keeps every CPU throughout");
	setenv("PML_MIGRATE_WORKER_CPUS", v, 1);

	/* A CPU this process may not use (or past the machine): left alone. */
	int outside = -1;
	for (int c = 0; c < CPU_SETSIZE && outside < 0; c++)
		if (!CPU_ISSET(c, &all))
			outside = c;
	snprintf(v, sizeof(v), "%d", outside);
	setenv("PML_MIGRATE_WORKER_CPUS", v, 1);
	w = run(1);
	tap_ok(CPU_EQUAL(&w.cpus, &all), "PML_MIGRATE_WORKER_CPUS=%s (none of this process's CPUs): affinity left alone", v);
	setenv("PML_MIGRATE_WORKER_CPUS", "1-", 1);
	w = run(1);
	tap_ok(CPU_EQUAL(&w.cpus, &all) && w.nice == wnice, "a malformed list: affinity left alone, the nice value still set");

	/* auto: off the CPU the vCPU thread runs on. */
	setenv("PML_MIGRATE_WORKER_CPUS", "auto", 1);
	if (n < 2 || !CPU_ISSET(0, &all) || !CPU_ISSET(1, &all)) {
		tap_ok(1, "# SKIP auto needs CPUs 0 and 1");
		tap_ok(1, "# SKIP auto needs CPUs 0 and 1");
		tap_ok(1, "# SKIP auto needs CPUs 0 and 1");
		return tap_done();
	}
	struct vcpu v0, v1;
	vcpu_start(&v0, 0, 0);
	w = run(1);
	tap_ok(!CPU_ISSET(0, &w.cpus) && CPU_COUNT(&w.cpus) == n - 1 && w.nice == wnice,
	       "auto, vcpu0 on CPU 0: the worker keeps off it (%d CPUs, CPU 0 %s)", CPU_COUNT(&w.cpus),
	       CPU_ISSET(0, &w.cpus) ? "in" : "out");
	pthread_t ft;
	cpu_set_t *after = NULL;
	if (pthread_create(&ft, NULL, follower, &v0) == 0)
		pthread_join(ft, (void **)&after);
	/* vcpu0 now on CPU 1: the follower left CPU 1 and may use CPU 0. */
	tap_ok(after && !CPU_ISSET(1, after) && CPU_ISSET(0, after),
	       "auto: when vcpu0 moves to CPU 1 the worker follows within 100 ms (CPU 0 %s, CPU 1 %s)",
	       after && CPU_ISSET(0, after) ? "in" : "out", after && CPU_ISSET(1, after) ? "in" : "out");
	free(after);
	vcpu_stop(&v0);
	if (n == 2) {
		vcpu_start(&v0, 0, 0);
		vcpu_start(&v1, 1, 1);
		w = run(1);
		tap_ok(CPU_EQUAL(&w.cpus, &all), "auto, a vCPU on each CPU: the worker keeps every CPU (%d)", CPU_COUNT(&w.cpus));
		vcpu_stop(&v0);
		vcpu_stop(&v1);
	} else {
		tap_ok(1, "# SKIP more than 2 CPUs: the vCPUs cannot fill them here");
	}
	return tap_done();
}
