/*
 * Both dirty logs catch every write. The guest reports each frame it
 * wrote (logwrites=1) through a hypercall; the test compares that against
 * the harvests.
 *
 * strict: 1 vCPU, harvest inside the report callback (the vCPU is out of
 *   the guest there): every frame written since the previous report must
 *   be in the frames harvested since then. Catches a reset that re-arms
 *   too late or a harvest that drops entries.
 * concurrent: 2 vCPUs writing while another thread harvests continuously:
 *   the union of all harvests (plus a final one after the VM stops) must
 *   contain every frame written, and no harvest may hand out a frame twice.
 * ring full: the same with a 256-entry ring and no harvest until the end,
 *   so the vCPUs must exit with KVM_EXIT_DIRTY_RING_FULL and drain their
 *   rings themselves; still nothing may be lost.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "precopy/dirtylog.h"
#include "tests/guest-run.h"
#include "tests/tap.h"

#define MEM (128ull << 20)
#define NFRAMES (MEM >> 12)

struct ctx {
	struct precopy_dirtylog *dl;
	struct precopy_dirty_set set;
	uint8_t *since;     /* strict: frames harvested since the last report */
	uint8_t *written;   /* concurrent: frames the guest wrote */
	uint8_t *harvested; /* concurrent: union of harvests */
	pthread_mutex_t lock;
	uint64_t reported, missed, dups, rounds;
	atomic_int stop;
};

static void check_dups(struct ctx *c)
{
	/* A harvest must not repeat a frame. */
	static uint8_t *mark;
	if (!mark)
		mark = calloc(NFRAMES, 1);
	for (size_t i = 0; i < c->set.n; i++) {
		if (mark[c->set.gfns[i]])
			c->dups++;
		mark[c->set.gfns[i]] = 1;
	}
	for (size_t i = 0; i < c->set.n; i++)
		mark[c->set.gfns[i]] = 0;
}

/* One harvest: checked for duplicates, its frames marked in into[]. */
static void harvest_into(struct ctx *c, uint8_t *into)
{
	long h = precopy_dirtylog_harvest(c->dl, &c->set);
	if (h < 0)
		abort();
	check_dups(c);
	for (size_t i = 0; i < c->set.n; i++)
		into[c->set.gfns[i]] = 1;
	c->rounds++;
}

static void strict_writes(struct guest_run *g, unsigned vcpu, const uint64_t *gfns, size_t n)
{
	struct ctx *c = g->user;
	(void)vcpu;
	harvest_into(c, c->since);
	for (size_t i = 0; i < n; i++) {
		c->reported++;
		if (!c->since[gfns[i]])
			c->missed++;
	}
	memset(c->since, 0, NFRAMES);
}

/* Boots memstress with the dirty log on; on failure says so as a TAP
 * failure and returns -1 with nothing left to free. */
static int boot(struct guest_run *g, struct ctx *c, const struct hv_vm_config *cfg, const char *args,
		void (*on_writes)(struct guest_run *, unsigned, const uint64_t *, size_t), const char *what)
{
	char err[256] = "";
	g->on_writes = on_writes;
	g->user = c;
	int r = guest_run_create(g, cfg, guest_image("memstress"), args, err, sizeof(err));
	if (r == 0) {
		r = precopy_dirtylog_open(g->vm, &c->dl);
		if (r < 0) {
			snprintf(err, sizeof(err), "dirty log: %s", strerror(-r));
			guest_run_destroy(g);
		}
	}
	if (r < 0)
		tap_ok(0, "%s %s: setup failed: %s", hv_dirty_mode_name(cfg->dirty_mode), what, err);
	return r < 0 ? -1 : 0;
}

static void teardown(struct guest_run *g, struct ctx *c)
{
	precopy_dirtylog_close(c->dl);
	precopy_dirty_set_free(&c->set);
	guest_run_destroy(g);
}

static void strict(enum hv_dirty_mode mode, const char *args)
{
	struct hv_vm_config cfg = { .mem_bytes = MEM, .vcpus = 1, .dirty_mode = mode };
	struct guest_run g = { 0 };
	struct ctx c = { 0 };

	c.since = calloc(NFRAMES, 1);
	if (boot(&g, &c, &cfg, args, strict_writes, "strict") < 0) {
		free(c.since);
		return;
	}
	hv_vm_start(g.vm);
	int r = guest_run_wait(&g);
	tap_ok(!r && c.reported > 10000 && c.rounds > 50 && c.missed == 0 && c.dups == 0,
	       "%s strict: %llu writes reported over %llu rounds, %llu missed, %llu duplicates (%s)",
	       hv_dirty_mode_name(mode), (unsigned long long)c.reported, (unsigned long long)c.rounds,
	       (unsigned long long)c.missed, (unsigned long long)c.dups, args);
	teardown(&g, &c);
	free(c.since);
}

static void conc_writes(struct guest_run *g, unsigned vcpu, const uint64_t *gfns, size_t n)
{
	struct ctx *c = g->user;
	(void)vcpu;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < n; i++) {
		c->written[gfns[i]] = 1;
		c->reported++;
	}
	pthread_mutex_unlock(&c->lock);
}

static void *harvester(void *arg)
{
	struct ctx *c = arg;
	while (!atomic_load(&c->stop)) {
		harvest_into(c, c->harvested);
		usleep(500);
	}
	return NULL;
}

static void concurrent(enum hv_dirty_mode mode, uint32_t ring_entries, const char *args, int harvest_while_running)
{
	struct hv_vm_config cfg = { .mem_bytes = MEM, .vcpus = 2, .dirty_mode = mode, .ring_entries = ring_entries };
	struct guest_run g = { 0 };
	struct ctx c = { 0 };
	pthread_t t;

	c.written = calloc(NFRAMES, 1);
	c.harvested = calloc(NFRAMES, 1);
	pthread_mutex_init(&c.lock, NULL);
	if (boot(&g, &c, &cfg, args, conc_writes, "concurrent") < 0) {
		free(c.written);
		free(c.harvested);
		return;
	}
	if (harvest_while_running)
		pthread_create(&t, NULL, harvester, &c);
	hv_vm_start(g.vm);
	int r = guest_run_wait(&g);
	atomic_store(&c.stop, 1);
	if (harvest_while_running)
		pthread_join(t, NULL);
	harvest_into(&c, c.harvested); /* every vCPU is out of the guest now */
	uint64_t distinct = 0;
	for (uint64_t i = 0; i < NFRAMES; i++) {
		if (c.written[i]) {
			distinct++;
			if (!c.harvested[i])
				c.missed++;
		}
	}
	struct precopy_dirtylog_stats st;
	precopy_dirtylog_get_stats(c.dl, &st);
	tap_ok(!r && distinct > 1000 && c.missed == 0 && c.dups == 0,
	       "%s, 2 vCPUs, %s: %llu distinct frames written, %llu missed, %llu duplicates, %llu harvests, "
	       "%llu ring-full exits",
	       hv_dirty_mode_name(mode), harvest_while_running ? "harvesting concurrently" : "one harvest at the end",
	       (unsigned long long)distinct, (unsigned long long)c.missed, (unsigned long long)c.dups,
	       (unsigned long long)c.rounds, (unsigned long long)st.ring_full_exits);
	/* Nobody harvests while the guest runs, so a small ring must fill up
	 * and the vCPUs must drain it themselves (KVM_EXIT_DIRTY_RING_FULL). */
	if (mode == HV_DIRTY_RING && !harvest_while_running)
		tap_ok(st.ring_full_exits >= distinct / ring_entries,
		       "ring of %u entries filled up %llu times and nothing was lost", ring_entries,
		       (unsigned long long)st.ring_full_exits);
	teardown(&g, &c);
	free(c.written);
	free(c.harvested);
}

/* The VMM's own writes into guest memory (a hypercall's return value)
 * bypass KVM's dirty log; they must be in the harvest all the same. The
 * idle guest sleeps in a hypercall nearly all the time: harvest and
 * snapshot memory while it sleeps, then pause it (which ends the sleep,
 * and the VMM writes the call's result) and harvest: every page that
 * differs from the snapshot must be in that harvest. A log without the
 * VMM's writes misses the page of the call's arguments, as a pre-copy
 * would miss it after sending it during the sleep. */
static void host_writes(enum hv_dirty_mode mode)
{
	const uint64_t mem = 64ull << 20, nframes = mem >> 12;
	struct hv_vm_config cfg = { .mem_bytes = mem, .vcpus = 1, .dirty_mode = mode };
	struct guest_run g = { 0 };
	struct ctx c = { 0 };
	char err[256] = "";
	uint64_t missed = 0, changed = 0;
	uint8_t *snap = malloc(mem), *in = calloc(nframes, 1);

	if (!snap || !in || guest_run_create(&g, &cfg, guest_image("idle"), "ops=12 period_us=200000", err, sizeof(err)) < 0 ||
	    precopy_dirtylog_open(g.vm, &c.dl) < 0) {
		tap_ok(0, "%s VMM writes: setup failed: %s", hv_dirty_mode_name(mode), err);
		free(snap);
		free(in);
		return;
	}
	const uint8_t *m = hv_mem(g.vm, 0, mem);
	hv_vm_start(g.vm);
	for (int i = 0; i < 6; i++) {
		usleep(60000);
		precopy_dirtylog_harvest(c.dl, &c.set);
		memcpy(snap, m, mem);
		hv_vm_pause(g.vm);
		long n = precopy_dirtylog_harvest(c.dl, &c.set);
		for (long k = 0; k < n; k++)
			in[c.set.gfns[k]] = 1;
		for (uint64_t f = 0; f < nframes; f++) {
			if (memcmp(snap + (f << 12), m + (f << 12), 4096)) {
				changed++;
				missed += !in[f];
			}
			in[f] = 0;
		}
		hv_vm_resume(g.vm);
		usleep(140000);
	}
	hv_vm_stop(g.vm);
	guest_run_wait(&g);
	tap_ok(changed > 0 && missed == 0, "%s VMM writes: %llu pages changed while the guest slept and was paused, %llu missing from the harvest",
	       hv_dirty_mode_name(mode), (unsigned long long)changed, (unsigned long long)missed);
	teardown(&g, &c);
	free(snap);
	free(in);
}

int main(void)
{
	tap_require_kvm();
	tap_plan(10);
	host_writes(HV_DIRTY_RING);
	host_writes(HV_DIRTY_BITMAP);
	const char *a1 = "seed=21 logwrites=1 ws=32M rate=0 ops=40000 batch=64 dist=zipf";
	const char *a2 = "seed=22 logwrites=1 ws=32M rate=0 ops=40000 batch=16 dist=uniform content=zero";
	strict(HV_DIRTY_RING, a1);
	strict(HV_DIRTY_BITMAP, a1);
	strict(HV_DIRTY_RING, a2);
	const char *a3 = "seed=23 logwrites=1 ws=64M rate=0 ops=60000 batch=256";
	concurrent(HV_DIRTY_RING, 256, a3, 1);
	concurrent(HV_DIRTY_BITMAP, 0, a3, 1);
	concurrent(HV_DIRTY_RING, 256, a3, 0);
	strict(HV_DIRTY_BITMAP, a2);
	return tap_done();
}
