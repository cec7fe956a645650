/*
 * Workload determinism: same seed -> same digest and op count (also across
 * 1 and 2 vCPUs' own repeat runs and across dirty-log modes); another seed
 * -> another digest.
 */
#include <string.h>
#include "tests/guest-run.h"
#include "tests/tap.h"

static const struct {
	const char *name, *args;
} loads[] = {
	{ "idle", "ops=20 period_us=1000 touch=1M" },
	{ "memstress", "ws=8M rate=0 ops=20000 dist=zipf content=text" },
	{ "memstress", "ws=8M rate=0 ops=20000 dist=uniform content=random" },
	{ "kvstore", "data=4M ops=100000" },
};

int main(void)
{
	tap_require_kvm();
	tap_plan(4 * 4 + 1);
	for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
		struct hv_vm_config cfg = { .mem_bytes = 64ull << 20, .vcpus = 1, .dirty_mode = HV_DIRTY_OFF };
		struct pmg_report a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
		char args[256];
		snprintf(args, sizeof(args), "seed=11 %s", loads[i].args);
		int ra = guest_run_once(&cfg, guest_image(loads[i].name), args, &a);
		cfg.dirty_mode = HV_DIRTY_RING;
		int rb = guest_run_once(&cfg, guest_image(loads[i].name), args, &b);
		tap_ok(!ra && !rb && a.digest == b.digest && a.ops == b.ops && a.ops > 0,
		       "%s (%s): same seed, same digest %016llx / %016llx, ops %llu", loads[i].name, loads[i].args,
		       (unsigned long long)a.digest, (unsigned long long)b.digest, (unsigned long long)a.ops);
		snprintf(args, sizeof(args), "seed=12 %s", loads[i].args);
		cfg.dirty_mode = HV_DIRTY_BITMAP;
		int rc = guest_run_once(&cfg, guest_image(loads[i].name), args, &c);
		tap_ok(!rc && c.digest != a.digest, "%s: other seed, other digest (%016llx)", loads[i].name,
		       (unsigned long long)c.digest);
		cfg.vcpus = 2;
		cfg.dirty_mode = HV_DIRTY_OFF;
		int rd = guest_run_once(&cfg, guest_image(loads[i].name), args, &d);
		struct pmg_report e = { 0 };
		int re = guest_run_once(&cfg, guest_image(loads[i].name), args, &e);
		tap_ok(!rd && !re && d.digest == e.digest && d.vcpus == 2, "%s: 2 vCPUs repeatable (%016llx)",
		       loads[i].name, (unsigned long long)d.digest);
		tap_ok(!ra && a.tsc_backwards == 0 && !rd && d.tsc_backwards == 0, "%s: TSC never went backwards",
		       loads[i].name);
	}
	/* Digest covers memory contents: content mode changes it. */
	struct hv_vm_config cfg = { .mem_bytes = 64ull << 20, .vcpus = 1, .dirty_mode = HV_DIRTY_OFF };
	struct pmg_report z = { 0 }, t = { 0 };
	int rz = guest_run_once(&cfg, guest_image("memstress"), "seed=5 ws=4M rate=0 ops=5000 content=zero", &z);
	int rt = guest_run_once(&cfg, guest_image("memstress"), "seed=5 ws=4M rate=0 ops=5000 content=text", &t);
	tap_ok(!rz && !rt && z.digest != t.digest, "memstress: page content is part of the digest");
	return tap_done();
}
