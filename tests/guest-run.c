/*
 * tests/guest-run.c - see guest-run.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/guest-run.h"

const char *guest_image(const char *name)
{
	static char buf[4][512];
	static int i;
	const char *dir = getenv("GUEST_DIR");
	char *b = buf[i++ & 3];
	snprintf(b, 512, "%s/%s.elf", dir && *dir ? dir : "guest", name);
	return b;
}

static void gr__report(void *opaque, const struct pmg_report *r)
{
	struct guest_run *g = opaque;
	pthread_mutex_lock(&g->lock);
	g->report = *r;
	g->have_report = 1;
	pthread_mutex_unlock(&g->lock);
}

static void gr__writes(void *opaque, unsigned vcpu, const uint64_t *gfns, size_t n)
{
	struct guest_run *g = opaque;
	if (g->on_writes)
		g->on_writes(g, vcpu, gfns, n);
}

static void gr__barrier(void *opaque, unsigned vcpu, uint64_t round)
{
	struct guest_run *g = opaque;
	if (g->on_barrier)
		g->on_barrier(g, vcpu, round);
}

static void gr__stopped(void *opaque, enum hv_stop_reason why, int code, const char *detail)
{
	struct guest_run *g = opaque;
	pthread_mutex_lock(&g->lock);
	g->why = why;
	g->exit_code = code;
	snprintf(g->detail, sizeof(g->detail), "%s", detail);
	g->stopped = 1;
	pthread_mutex_unlock(&g->lock);
}

static void gr__console(void *opaque, unsigned vcpu, const char *buf, size_t len)
{
	(void)opaque;
	(void)vcpu;
	if (getenv("TEST_CONSOLE"))
		fwrite(buf, 1, len, stderr);
}

static const struct hv_guest_ops gr_ops = {
	.console = gr__console,
	.report = gr__report,
	.writes = gr__writes,
	.barrier = gr__barrier,
	.stopped = gr__stopped,
};

int guest_run_create_empty(struct guest_run *g, const struct hv_vm_config *cfg)
{
	pthread_mutex_init(&g->lock, NULL);
	int r = hv_vm_create("kvm", cfg, &g->vm);
	if (r < 0)
		return r;
	hv_vm_set_guest_ops(g->vm, &gr_ops, g);
	return 0;
}

int guest_run_create(struct guest_run *g, const struct hv_vm_config *cfg, const char *image, const char *args,
		     char *err, size_t errlen)
{
	int r = guest_run_create_empty(g, cfg);
	if (r < 0) {
		snprintf(err, errlen, "hv_vm_create: %s", strerror(-r));
		return r;
	}
	r = hv_boot_image(g->vm, image, args, err, errlen);
	if (r < 0) {
		hv_vm_destroy(g->vm);
		g->vm = NULL;
	}
	return r;
}

int guest_run_wait(struct guest_run *g)
{
	hv_vm_wait(g->vm);
	if (g->why != HV_STOP_EXIT || g->exit_code != 0 || !g->have_report) {
		fprintf(stderr, "# guest did not finish cleanly: why=%d code=%d report=%d (%s)\n", g->why, g->exit_code,
			g->have_report, g->detail);
		return -EIO;
	}
	return 0;
}

void guest_run_destroy(struct guest_run *g)
{
	hv_vm_destroy(g->vm);
	g->vm = NULL;
	pthread_mutex_destroy(&g->lock);
}

int guest_run_once(const struct hv_vm_config *cfg, const char *image, const char *args, struct pmg_report *rep)
{
	struct guest_run g = { 0 };
	char err[256];
	int r = guest_run_create(&g, cfg, image, args, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "# %s\n", err);
		return r;
	}
	r = hv_vm_start(g.vm);
	if (!r)
		r = guest_run_wait(&g);
	if (!r)
		*rep = g.report;
	guest_run_destroy(&g);
	return r;
}
