/*
 * hv/guest-io.c - the guest ABI's port calls, shared by the backends.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "hv/guest-io.h"
#include "hv/hv-backend.h"

void hv_gio_sleep_deadline(uint64_t us, struct timespec *ts)
{
	if (us > 1000000)
		us = 1000000;
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_nsec += (long)(us % 1000000) * 1000;
	ts->tv_sec += (time_t)(us / 1000000) + ts->tv_nsec / 1000000000;
	ts->tv_nsec %= 1000000000;
}

void hv_gio_flush(struct hv_gio *g)
{
	struct hv_vm *hv = g->vm;
	if (g->con_len && hv->gops && hv->gops->console)
		hv->gops->console(hv->gops_opaque, g->idx, g->con, g->con_len);
	g->con_len = 0;
}

static void gio__console_put(struct hv_gio *g, char c)
{
	g->con[g->con_len++] = c;
	if (c == '\n' || g->con_len == sizeof(g->con))
		hv_gio_flush(g);
}

/* Returns 0, 1 when the vCPU is done, or -errno. */
static int gio__hcall_do(struct hv_gio *g, uint32_t gpa)
{
	struct hv_vm *hv = g->vm;
	struct pmg_hcall *hc = hv_mem(hv, gpa, sizeof(*hc));
	if (!hc)
		return -EFAULT;
	switch (hc->nr) {
	case PMG_HC_REPORT: {
		struct pmg_report r;
		const void *p = hv_mem(hv, hc->a0, sizeof(r));
		if (!p || hc->a1 < sizeof(r))
			return -EFAULT;
		memcpy(&r, p, sizeof(r));
		r.workload[sizeof(r.workload) - 1] = 0;
		if (r.magic != PMG_REPORT_MAGIC)
			return -EINVAL;
		if (hv->gops && hv->gops->report)
			hv->gops->report(hv->gops_opaque, &r);
		hc->ret = 0;
		return 0;
	}
	case PMG_HC_SLEEP:
		g->sleep(g, hc->a0);
		hc->ret = 0;
		return 0;
	case PMG_HC_WRITES: {
		uint64_t n = hc->a1;
		if (n > 65536)
			return -EINVAL;
		const uint64_t *gf = hv_mem(hv, hc->a0, n * sizeof(uint64_t));
		if (!gf)
			return -EFAULT;
		for (uint64_t i = 0; i < n; i++)
			if (gf[i] >= hv->cfg.mem_bytes >> HV_PAGE_SHIFT)
				return -EFAULT;
		if (hv->gops && hv->gops->writes)
			hv->gops->writes(hv->gops_opaque, g->idx, gf, n);
		hc->ret = 0;
		return 0;
	}
	case PMG_HC_VCPU_DONE:
		return 1;
	case PMG_HC_BARRIER:
		if (hv->gops && hv->gops->barrier)
			hv->gops->barrier(hv->gops_opaque, g->idx, hc->a0);
		hc->ret = 0;
		return 0;
	case PMG_HC_POLL:
		__atomic_add_fetch(&hv->polls, 1, __ATOMIC_RELAXED);
		hc->ret = (uint64_t)hv_vm_finish_requested(hv);
		return 0;
	default:
		hc->ret = (uint64_t)-ENOSYS;
		return 0;
	}
}

/* The call's result is a write into guest memory that no hypervisor dirty
 * log sees: report it (hv_dirty_note). */
static int gio__hcall(struct hv_gio *g, uint32_t gpa)
{
	int r = gio__hcall_do(g, gpa);
	if (r >= 0)
		hv_dirty_note(g->vm, gpa, sizeof(struct pmg_hcall));
	return r;
}

int hv_gio_out(struct hv_gio *g, uint16_t port, uint32_t val, int *exit_code, char *why, size_t whylen)
{
	switch (port) {
	case PMG_PORT_CONSOLE:
		gio__console_put(g, (char)val);
		return HV_GIO_CONTINUE;
	case PMG_PORT_EXIT:
		*exit_code = (int)val;
		snprintf(why, whylen, "guest exit code %u", val);
		return HV_GIO_EXIT;
	case PMG_PORT_HCALL: {
		int r = gio__hcall(g, val);
		if (r < 0) {
			snprintf(why, whylen, "bad hypercall at gpa 0x%x: %s", val, strerror(-r));
			return r;
		}
		return r == 1 ? HV_GIO_VCPU_DONE : HV_GIO_CONTINUE;
	}
	default:
		return HV_GIO_CONTINUE; /* unassigned ports ignore writes */
	}
}
