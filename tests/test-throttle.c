/*
 * The KVM duty-cycle throttle slows a guest that never leaves the guest
 * on its own (memstress writing flat out makes no exits): the vCPU's
 * dirty-ring entries per second, a count of its writes, fall to about
 * (100 - pct)% when throttled and come back when released. Before the
 * throttle kicked a running vCPU, its timer was armed only on the way
 * into KVM_RUN, so such a guest was never slowed at all (the rate stayed
 * the same at 50, 90 and 99 %).
 *
 * The figures are ratios of rates in one run, with a wide margin: a
 * functional check, not a speed target.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>
#include "precopy/dirtylog.h"
#include "tests/guest-run.h"
#include "tests/tap.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Entries per second over 0.6 s, harvesting every 100 ms so that the ring
 * never fills (a full ring would make the guest exit). */
static double rate(struct guest_run *g, struct precopy_dirtylog *dl, struct precopy_dirty_set *s)
{
	uint64_t e0, e1;
	usleep(150000); /* a throttle change settles within a 20 ms period */
	precopy_dirtylog_harvest(dl, s);
	hv_dirty_vcpu_entries(g->vm, 0, &e0);
	double t0 = now_s();
	for (int k = 0; k < 6; k++) {
		usleep(100000);
		precopy_dirtylog_harvest(dl, s);
	}
	hv_dirty_vcpu_entries(g->vm, 0, &e1);
	return (double)(e1 - e0) / (now_s() - t0);
}

int main(void)
{
	struct hv_vm_config cfg = { .mem_bytes = 256ull << 20, .vcpus = 1, .dirty_mode = HV_DIRTY_RING };
	struct guest_run g = { 0 };
	struct precopy_dirtylog *dl = NULL;
	struct precopy_dirty_set s = { 0 };
	char err[256] = "";

	tap_require_kvm();
	tap_plan(3);
	if (guest_run_create(&g, &cfg, guest_image("memstress"), "ws=128M rate=0 ops=1000000000 content=random", err,
			     sizeof(err)) < 0 ||
	    precopy_dirtylog_open(g.vm, &dl) < 0) {
		tap_ok(0, "setup: %s", err);
		tap_ok(0, "setup");
		tap_ok(0, "setup");
		return tap_done();
	}
	hv_vm_start(g.vm);
	double full = rate(&g, dl, &s);
	hv_vcpu_throttle(g.vm, 0, 90);
	double t90 = rate(&g, dl, &s);
	hv_vcpu_throttle(g.vm, 0, 99);
	double t99 = rate(&g, dl, &s);
	hv_vcpu_throttle(g.vm, 0, 0);
	double back = rate(&g, dl, &s);
	tap_ok(full > 10000 && t90 < 0.4 * full,
	       "throttled to 90%%: %.0f writes/s against %.0f unthrottled (%.2f; about 0.10 expected)", t90, full,
	       full > 0 ? t90 / full : 0);
	tap_ok(t99 < 0.1 * full, "throttled to 99%%: %.0f writes/s (%.3f of unthrottled; about 0.01 expected)", t99,
	       full > 0 ? t99 / full : 0);
	tap_ok(back > 0.5 * full, "released: %.0f writes/s again", back);
	hv_vm_stop(g.vm);
	guest_run_wait(&g);
	precopy_dirtylog_close(dl);
	precopy_dirty_set_free(&s);
	guest_run_destroy(&g);
	return tap_done();
}
