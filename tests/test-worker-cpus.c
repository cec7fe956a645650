/*
 * PML_MIGRATE_WORKER_CPUS (issue 23): a worker thread that calls
 * util_thread_background() is kept to the listed CPUs, and at its nice
 * value; a thread the owner creates afterwards is not (vCPU threads come
 * from the owner, never from a worker); a list naming no CPU this process
 * may use, or a malformed one, leaves the affinity alone; and the CPU list
 * parser takes what the kernel writes and refuses the rest.
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
	tap_plan(6);

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
	return tap_done();
}
