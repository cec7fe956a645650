/*
 * hv/xen-dirty.c - the dirty log and the throttle on Xen.
 *
 * Dirty log: Xen's log-dirty mode. Stock Xen fills its bitmap from PML
 * internally (on Intel hosts with PML) and exposes no per-vCPU log to dom0,
 * so on Xen the engine consumes a bitmap: each collect is one
 * XEN_DOMCTL_SHADOW_OP_CLEAN over RAM (copy and reset in one hypercall),
 * turned into frame numbers by a scan that skips empty words.
 *
 * Throttle: the scheduler's cap (credit or credit2), a share of one CPU
 * per vCPU that Xen enforces; the hypervisor cannot cap vCPUs one by one,
 * so the domain gets the cap of its least-throttled vCPU.
 */
#include <errno.h>
#include <string.h>
#include "hv/xen-internal.h"

int xen__dirty_start(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	int r = 0;

	pthread_mutex_lock(&x->dirty_lock);
	if (x->dirty_on)
		goto out;
	if (!x->bitmap) {
		x->bitmap_pages = (x->nframes + 8 * XC_PAGE_SIZE - 1) / (8 * XC_PAGE_SIZE);
		x->bitmap_hbuf = (xc_hypercall_buffer_t){ .hbuf = NULL, .param_shadow = NULL,
							  HYPERCALL_BUFFER_INIT_NO_BOUNCE };
		x->bitmap = xc__hypercall_buffer_alloc_pages(x->xch, &x->bitmap_hbuf, (int)x->bitmap_pages);
		if (!x->bitmap) {
			r = -ENOMEM;
			goto out;
		}
	}
	if (xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_ENABLE_LOGDIRTY, NULL, 0) < 0) {
		r = errno ? -errno : -EIO;
		goto out;
	}
	x->dirty_on = true;
	/* A toolstack's guest: the frames were mapped once, by frame number.
	 * One its balloon driver gives back and takes again is a new page
	 * behind the same number that the mapping does not see; its page
	 * count changing is the sign (collect fails the migration on it). */
	xc_domaininfo_t info;
	if (x->xg && xen__domain_info(x, &info))
		x->xg_tot_pages = info.tot_pages;
out:
	pthread_mutex_unlock(&x->dirty_lock);
	return r;
}

int xen__dirty_collect(struct hv_vm *vm, void (*emit)(void *, uint64_t), void *opaque)
{
	struct xen_vm *x = xen__vm(vm);
	xc_shadow_op_stats_t st;
	int n = 0;

	pthread_mutex_lock(&x->dirty_lock);
	if (!x->dirty_on) {
		n = -EINVAL;
		goto out;
	}
	memset(x->bitmap, 0, x->bitmap_pages * XC_PAGE_SIZE);
	/* The suspended guest's last collect: FINAL has Xen flush what its
	 * hardware (PML) still holds, as libxenguest's last round does. */
	pthread_mutex_lock(&x->lock);
	uint32_t fl = x->xg_suspended ? XEN_DOMCTL_SHADOW_LOGDIRTY_FINAL : 0;
	pthread_mutex_unlock(&x->lock);
	if (xc_logdirty_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_CLEAN, &x->bitmap_hbuf, x->nframes, fl, &st) <
	    0) {
		n = errno ? -errno : -EIO;
		goto out;
	}
	if (x->xg && x->xg_tot_pages) {
		xc_domaininfo_t info;
		if (xen__domain_info(x, &info) && info.tot_pages != x->xg_tot_pages) {
			n = -ESTALE; /* its memory changed under the migration */
			goto out;
		}
	}
	/* CLEAN has re-armed tracking before returning: a write after this
	 * point shows up in the next collect. */
	size_t words = (x->nframes + 63) / 64;
	for (size_t w = 0; w < words; w++) {
		unsigned long bits = x->bitmap[w];
		while (bits) {
			uint64_t gfn = (uint64_t)w * 64 + (unsigned)__builtin_ctzl(bits);
			bits &= bits - 1;
			if (gfn >= x->nframes)
				continue;
			if (x->xg && !x->present[gfn]) {
				/* A toolstack's guest: Xen logs writes to its
				 * Xen-heap frames (grant table, shared info),
				 * which never travel. Any other frame outside
				 * the mapped set was populated since (a balloon
				 * driver): not moved by this engine, so fail
				 * rather than lose it. */
				int t = xen__xg_is_xtab(x, gfn);
				if (t == 1)
					continue;
				n = t < 0 ? t : -ENXIO;
				goto out;
			}
			emit(opaque, gfn);
			n++;
		}
	}
out:
	pthread_mutex_unlock(&x->dirty_lock);
	return n;
}

int xen__dirty_stop(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	int r = 0;

	pthread_mutex_lock(&x->dirty_lock);
	if (x->dirty_on && x->have_domain &&
	    xc_shadow_control(x->xch, x->domid, XEN_DOMCTL_SHADOW_OP_OFF, NULL, 0) < 0)
		r = errno ? -errno : -EIO;
	x->dirty_on = false;
	pthread_mutex_unlock(&x->dirty_lock);
	return r;
}

void xen__dirty_fini(struct xen_vm *x)
{
	if (x->dirty_on)
		xen__dirty_stop(x->hv);
	if (x->bitmap) {
		xc__hypercall_buffer_free_pages(x->xch, &x->bitmap_hbuf, (int)x->bitmap_pages);
		x->bitmap = NULL;
	}
}

int xen__throttle(struct hv_vm *vm, unsigned idx, unsigned pct)
{
	struct xen_vm *x = xen__vm(vm);
	int sched = 0;

	if (!x->have_domain)
		return -ENOENT;
	/* cap: percent of one CPU per vCPU, 0 = none. */
	unsigned cap = pct ? (100 - pct) * x->nvcpus : 0;
	if (xc_sched_id(x->xch, &sched) < 0)
		return errno ? -errno : -EIO;
	if (sched == XEN_SCHEDULER_CREDIT2) {
		struct xen_domctl_sched_credit2 s;
		if (xc_sched_credit2_domain_get(x->xch, x->domid, &s) < 0)
			return errno ? -errno : -EIO;
		s.cap = (uint16_t)cap;
		if (xc_sched_credit2_domain_set(x->xch, x->domid, &s) < 0)
			return errno ? -errno : -EIO;
	} else if (sched == XEN_SCHEDULER_CREDIT) {
		struct xen_domctl_sched_credit s;
		if (xc_sched_credit_domain_get(x->xch, x->domid, &s) < 0)
			return errno ? -errno : -EIO;
		s.cap = (uint16_t)cap;
		if (xc_sched_credit_domain_set(x->xch, x->domid, &s) < 0)
			return errno ? -errno : -EIO;
	} else {
		return -ENOTSUP;
	}
	x->throttle_pct = pct;
	return 0;
}
