/*
 * hv/xen.c - the Xen backend: a PVH domain created through libxenlight (so
 * the toolstack knows it: `xl list` shows it, `xl destroy` works), its RAM
 * mapped with xenforeignmemory, pause and resume with xc_domain_pause.
 *
 * There are no vCPU threads as with KVM: Xen runs the vCPUs. What the
 * guest asks of its VMM arrives as ioreqs (xen-ioreq.c), served by one
 * thread per vCPU, and those threads play the part of KVM's vCPU threads
 * for the stop protocol: the VM has stopped when every one has left.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <libxl_utils.h>
#include "hv/elf.h"
#include "hv/xen-internal.h"

#define CMDLINE_MAX 4096

static int xen__create(struct hv_vm *vm)
{
	struct xen_vm *x;
	int r;

	if (vm->cfg.dirty_mode == HV_DIRTY_RING)
		return -ENOTSUP; /* Xen exposes no per-vCPU log to dom0 */
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->hv = vm;
	x->nvcpus = vm->cfg.vcpus;
	x->nframes = vm->cfg.mem_bytes >> HV_PAGE_SHIFT;
	x->wake_fd = -1;
	x->xg_rfd = x->xg_wfd = x->xg_lock_fd = -1;
	pthread_mutex_init(&x->lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* timed waits: sleeps, the watch */
	pthread_cond_init(&x->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&x->dirty_lock, NULL);
	vm->priv = x;

	x->xch = xc_interface_open(NULL, NULL, 0);
	if (!x->xch) {
		r = errno ? -errno : -ENODEV;
		goto err;
	}
	x->fmem = xenforeignmemory_open(NULL, 0);
	x->dmod = xendevicemodel_open(NULL, 0);
	if (!x->fmem || !x->dmod) {
		r = errno ? -errno : -ENODEV;
		goto err;
	}
	x->log = xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
	if (!x->log || libxl_ctx_alloc(&x->ctx, LIBXL_VERSION, 0, (xentoollog_logger *)x->log)) {
		r = -ENODEV;
		goto err;
	}
	x->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (x->wake_fd < 0) {
		r = -errno;
		goto err;
	}
	xc_physinfo_t pi;
	if (!xc_physinfo(x->xch, &pi))
		x->tsc_khz = pi.cpu_khz;
	return 0;
err:
	vm->be->destroy(vm);
	vm->priv = NULL;
	return r;
}

static void xen__destroy(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	if (!x)
		return;
	if (x->started)
		xen__end(x, HV_STOP_KILLED, 0, "stopped");
	xen__ioreq_fini(x);
	xen__dirty_fini(x);
	if (x->mem)
		xenforeignmemory_unmap(x->fmem, x->mem, x->nframes);
	free(x->present);
	xen__xg_fini(x);
	/* A toolstack's guest is destroyed here only once it moved away, or
	 * on the destination before COMMIT ran it (owns_domain). */
	if (x->have_domain && (x->owns_domain || x->xg_moved) && !x->domain_gone && x->ctx)
		libxl_domain_destroy(x->ctx, x->domid, NULL);
	if (x->ctx)
		libxl_ctx_free(x->ctx);
	if (x->log)
		xtl_logger_destroy((xentoollog_logger *)x->log);
	if (x->dmod)
		xendevicemodel_close(x->dmod);
	if (x->fmem)
		xenforeignmemory_close(x->fmem);
	if (x->xch)
		xc_interface_close(x->xch);
	if (x->wake_fd >= 0)
		close(x->wake_fd);
	pthread_mutex_destroy(&x->lock);
	pthread_cond_destroy(&x->cond);
	pthread_mutex_destroy(&x->dirty_lock);
	free(x);
	vm->priv = NULL;
}

/* Maps RAM [0, nframes) read-write in one range. Frames Xen has not
 * populated come back with an error and are left unmapped: present[]
 * says which, so nothing ever touches them. */
static int xen__map_ram(struct xen_vm *x)
{
	xen_pfn_t *pfns = malloc(x->nframes * sizeof(*pfns));
	int *errs = malloc(x->nframes * sizeof(*errs));
	int r = 0;

	x->present = calloc(x->nframes, 1);
	if (!pfns || !errs || !x->present) {
		r = -ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < x->nframes; i++)
		pfns[i] = i;
	x->mem = xenforeignmemory_map(x->fmem, x->domid, PROT_READ | PROT_WRITE, x->nframes, pfns, errs);
	if (!x->mem) {
		r = errno ? -errno : -EIO;
		goto out;
	}
	for (uint64_t i = 0; i < x->nframes; i++)
		x->present[i] = errs[i] == 0;
out:
	free(pfns);
	free(errs);
	return r;
}

/* Takes domid as the VM's domain: maps its RAM and serves its ports.
 * Whether the VM destroys the domain (owns_domain) is the caller's call. */
static int xen__take_domain(struct xen_vm *x, uint32_t domid, char *err, size_t errlen)
{
	x->domid = domid;
	x->have_domain = true;
	int r = xen__map_ram(x);
	if (r < 0) {
		snprintf(err, errlen, "mapping domain %u's memory: %s", domid, strerror(-r));
		return r;
	}
	r = xen__ioreq_init(x);
	if (r < 0)
		snprintf(err, errlen, "serving domain %u's ports: %s%s", domid, strerror(-r),
			 r == -EEXIST ? " (another device model serves them)" : "");
	return r;
}

int xen__create_domain(struct xen_vm *x, const char *kernel, const char *cmdline, int incoming, char *err,
		       size_t errlen)
{
	libxl_domain_config dc;
	char name[96];
	int r;

	if (x->hv->cfg.name[0])
		snprintf(name, sizeof(name), "%s%s", x->hv->cfg.name, incoming ? "--incoming" : "");
	else
		snprintf(name, sizeof(name), "pml-%d%s", (int)getpid(), incoming ? "--incoming" : "");
	libxl_domain_config_init(&dc);
	dc.c_info.type = LIBXL_DOMAIN_TYPE_PVH;
	dc.c_info.name = strdup(name);
	libxl_domain_build_info_init_type(&dc.b_info, LIBXL_DOMAIN_TYPE_PVH);
	dc.b_info.max_vcpus = (int)x->nvcpus;
	if (libxl_cpu_bitmap_alloc(x->ctx, &dc.b_info.avail_vcpus, (int)x->nvcpus)) {
		r = -ENOMEM;
		goto out;
	}
	for (unsigned i = 0; i < x->nvcpus; i++)
		libxl_bitmap_set(&dc.b_info.avail_vcpus, (int)i);
	dc.b_info.max_memkb = dc.b_info.target_memkb = x->hv->cfg.mem_bytes >> 10;
	dc.b_info.kernel = strdup(kernel);
	dc.b_info.cmdline = strdup(cmdline);
	/* The hosting process decides what a shutdown means; Xen leaves the
	 * domain shut down and the watcher (xen-ioreq.c) reports it. */
	dc.on_poweroff = dc.on_reboot = dc.on_crash = dc.on_watchdog = LIBXL_ACTION_ON_SHUTDOWN_PRESERVE;
	if (!dc.c_info.name || !dc.b_info.kernel || !dc.b_info.cmdline) {
		r = -ENOMEM;
		goto out;
	}
	uint32_t domid = (uint32_t)INVALID_DOMID;
	r = libxl_domain_create_new(x->ctx, &dc, &domid, NULL, NULL);
	if (r) {
		if (domid != (uint32_t)INVALID_DOMID)
			libxl_domain_destroy(x->ctx, domid, NULL);
		snprintf(err, errlen, "creating Xen domain '%s' failed (libxl error %d; is the name taken?)", name, r);
		r = -EIO;
		goto out;
	}
	x->owns_domain = true; /* we made it: a failure below destroys it */
	r = xen__take_domain(x, domid, err, errlen);
out:
	libxl_domain_config_dispose(&dc);
	return r;
}

static int xen__boot_image(struct hv_vm *vm, const char *path, const char *cmdline, char *err, size_t errlen)
{
	struct xen_vm *x = xen__vm(vm);
	struct elf_image img;
	char full[CMDLINE_MAX];
	int r;

	if (x->nvcpus != 1) {
		/* pml-migrate's own images start no APs under PVH. (A
		 * toolstack's guest, restored by libxl, has any number.) */
		snprintf(err, errlen, "the Xen backend runs pml-migrate's own guest images with 1 vCPU only");
		return -ENOTSUP;
	}
	if (x->have_domain) {
		snprintf(err, errlen, "the VM already has a domain");
		return -EALREADY;
	}
	/* Same checks as the KVM loader, so a bad image gets the same clear
	 * error before libxl sees it; Xen's own loader needs the PVH note. */
	r = elf_image_read(path, PMG_IMAGE_BASE, vm->cfg.mem_bytes, &img, err, errlen);
	if (r < 0)
		return r;
	if (!img.pvh_entry) {
		snprintf(err, errlen, "%s has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): Xen cannot boot it", path);
		elf_image_free(&img);
		return -EINVAL;
	}
	elf_image_free(&img);
	/* No pmg=1: the PVH entry maps the low 4 GiB only. The TSC rate is the
	 * host's: a default-mode PVH guest reads the native TSC. */
	r = snprintf(full, sizeof(full), "tsc_khz=%llu vcpus=%u %s", (unsigned long long)x->tsc_khz, x->nvcpus,
		     cmdline ? cmdline : "");
	if (r < 0 || (size_t)r >= sizeof(full)) {
		snprintf(err, errlen, "guest command line longer than %d bytes", CMDLINE_MAX - 1);
		return -E2BIG;
	}
	return xen__create_domain(x, path, full, 0, err, errlen);
}

/* Takes over a domain the toolstack made: PVH, one vCPU, paused (so no
 * port call of its guest went unserved), memory a multiple of 2 MiB. Its
 * memory and name become the VM's. The domain is ours to destroy only
 * once everything here succeeded: a refused attach leaves it as it was. */
static int xen__attach(struct hv_vm *vm, const char *domain, unsigned flags, char *err, size_t errlen)
{
	struct xen_vm *x = xen__vm(vm);
	libxl_dominfo info;
	libxl_domain_config dc;
	uint32_t domid;
	char *end, *name = NULL;
	int r = -EINVAL;

	errno = 0;
	unsigned long v = strtoul(domain, &end, 10);
	if (*domain >= '0' && *domain <= '9' && !*end && !errno && v < 0x7ff0) {
		domid = (uint32_t)v;
	} else if (libxl_name_to_domid(x->ctx, domain, &domid)) {
		snprintf(err, errlen, "no Xen domain named '%s' (see xl list)", domain);
		return -ENOENT;
	}
	if (domid == 0) {
		snprintf(err, errlen, "domain 0 is this host's own dom0");
		return -EINVAL;
	}
	libxl_dominfo_init(&info);
	libxl_domain_config_init(&dc);
	if (libxl_domain_info(x->ctx, &info, domid)) {
		snprintf(err, errlen, "no Xen domain %u (see xl list)", domid);
		r = -ENOENT;
		goto out;
	}
	if (info.dying || info.shutdown) {
		snprintf(err, errlen, "domain %u has shut down", domid);
		goto out;
	}
	bool live = flags & HV_ATTACH_LIVE;
	if (!live && !info.paused) {
		snprintf(err, errlen, "domain %u is running: attach takes a domain created paused (xl create -p), "
			 "before its guest makes a port call that nothing would serve", domid);
		r = -EBUSY;
		goto out;
	}
	if (live && info.vcpu_max_id >= HV_MAX_VCPUS) {
		snprintf(err, errlen, "domain %u has %u vCPUs: this engine moves at most %u", domid, info.vcpu_max_id + 1,
			 HV_MAX_VCPUS);
		r = -ENOTSUP;
		goto out;
	}
	if (!live && info.vcpu_max_id != 0) {
		snprintf(err, errlen, "domain %u has %u vCPUs: this backend runs 1", domid, info.vcpu_max_id + 1);
		r = -ENOTSUP;
		goto out;
	}
	if (libxl_retrieve_domain_configuration(x->ctx, domid, &dc, NULL)) {
		snprintf(err, errlen, "cannot read domain %u's configuration from the toolstack", domid);
		r = -EIO;
		goto out;
	}
	/* The hypervisor calls PVH an HVM domain; the toolstack knows. */
	if (dc.c_info.type != LIBXL_DOMAIN_TYPE_PVH) {
		snprintf(err, errlen, "domain %u is not a PVH domain (type=\"pvh\" in its xl config)", domid);
		goto out;
	}
	name = libxl_domid_to_name(x->ctx, domid);
	snprintf(vm->cfg.name, sizeof(vm->cfg.name), "%s", name ? name : "");
	if (live) {
		/* Its own kernel and devices: moved with its help, left to the
		 * toolstack; memory is whatever its p2m holds. */
		x->nvcpus = vm->cfg.vcpus = info.vcpu_max_id + 1;
		r = xen__adopt(x, domid, err, errlen);
		goto out;
	}
	uint64_t mem = (uint64_t)dc.b_info.target_memkb << 10;
	if (!hv_mem_size_valid(mem)) {
		snprintf(err, errlen, "domain %u has %llu KiB of memory: this backend takes a multiple of 2 MiB, "
			 "16 MiB to 128 GiB", domid, (unsigned long long)dc.b_info.target_memkb);
		goto out;
	}
	vm->cfg.mem_bytes = mem;
	x->nframes = mem >> HV_PAGE_SHIFT;
	r = xen__take_domain(x, domid, err, errlen);
	if (r == 0)
		x->owns_domain = true;
out:
	free(name);
	libxl_domain_config_dispose(&dc);
	libxl_dominfo_dispose(&info);
	return r;
}

static void *xen__mem(struct hv_vm *vm, uint64_t gpa, uint64_t len)
{
	struct xen_vm *x = xen__vm(vm);
	if (!x->mem)
		return NULL;
	/* Never hand out a pointer into an unpopulated (unmapped) frame. */
	for (uint64_t f = gpa >> HV_PAGE_SHIFT; f <= (gpa + (len ? len - 1 : 0)) >> HV_PAGE_SHIFT; f++)
		if (!x->present[f])
			return NULL;
	return x->mem + gpa;
}

static int xen__present_range(struct hv_vm *vm, uint64_t gfn, uint64_t n, uint8_t *vec)
{
	struct xen_vm *x = xen__vm(vm);
	if (!x->present)
		memset(vec, 0, n);
	else
		memcpy(vec, x->present + gfn, n);
	return 0;
}

void xen__end(struct xen_vm *x, enum hv_stop_reason why, int code, const char *detail)
{
	uint64_t one = 1;
	bool pause;

	pthread_mutex_lock(&x->lock);
	if (!x->stop_why || why == HV_STOP_CRASH) {
		x->stop_why = why;
		x->exit_code = code;
		snprintf(x->stop_detail, sizeof(x->stop_detail), "%s", detail ? detail : "");
	}
	pause = !x->stop_req;
	x->stop_req = true;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
	/* The VM never runs again: keep the domain from running on while the
	 * threads leave (it is destroyed with the VM). */
	if (pause && x->have_domain && !x->xg)
		xc_domain_pause(x->xch, x->domid);
	if (write(x->wake_fd, &one, sizeof(one)) < 0) {
		/* eventfd counter full: the threads are being woken anyway */
	}
}

void xen__vcpu_finish(struct xen_vcpu *v)
{
	struct xen_vm *x = v->vm;
	bool report = false;

	hv_gio_flush(&v->gio);
	pthread_mutex_lock(&x->lock);
	if (!v->done) {
		v->done = true;
		x->ndone++;
	}
	if (x->ndone == x->nvcpus && !x->stopped_reported) {
		x->stopped_reported = true;
		report = true;
	}
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
	if (report && x->hv->gops && x->hv->gops->stopped)
		x->hv->gops->stopped(x->hv->gops_opaque, x->stop_why, x->exit_code, x->stop_detail);
}

static int xen__start(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	int r;

	if (!x->have_domain)
		return -ENOENT;
	if (x->xg && !x->xg_dc) /* adopted (not restored here): it runs already */
		return x->xg_watch_started ? -EALREADY : xen__xg_start(x);
	pthread_mutex_lock(&x->lock);
	if (x->started) {
		pthread_mutex_unlock(&x->lock);
		return -EALREADY;
	}
	x->started = true;
	pthread_mutex_unlock(&x->lock);
	if (x->xg) {
		/* COMMIT: the restored domain runs, and is the toolstack's. */
		if (libxl_domain_unpause(x->ctx, x->domid, NULL))
			return -EIO;
		x->owns_domain = false;
		return xen__xg_start(x);
	}
	r = xen__ioreq_start(x);
	if (r < 0)
		return r;
	pthread_mutex_lock(&x->lock);
	bool run = !x->pause_depth && !x->stop_req;
	pthread_mutex_unlock(&x->lock);
	if (run && xc_domain_unpause(x->xch, x->domid) < 0)
		return -errno;
	return 0;
}

static void xen__stop(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	xen__end(x, HV_STOP_KILLED, 0, "stopped");
}

static void xen__wait(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	pthread_mutex_lock(&x->lock);
	while (x->started && x->ndone < x->nvcpus)
		pthread_cond_wait(&x->cond, &x->lock);
	pthread_mutex_unlock(&x->lock);
}

static bool xen__any_answered(struct xen_vm *x)
{
	for (unsigned i = 0; i < x->nvcpus; i++)
		if (x->iopage->vcpu_ioreq[i].state == STATE_IORESP_READY)
			return true;
	return false;
}

/*
 * A paused domain must leave no port call half done, or its saved state
 * would repeat one on the destination. A vCPU in an OUT has not retired
 * the instruction until it consumes the answer, so:
 *  - hold: the server threads start no new request, and those serving one
 *    finish it (a PMG_HC_SLEEP ends early);
 *  - pause the domain;
 *  - a vCPU whose answer is written but not yet consumed runs briefly to
 *    consume it; its next OUT stays unserved (held).
 * A held request is left pending: after a resume here it is served; in
 * a state saved now the vCPU sits before the OUT, and executes it again,
 * once, wherever the state is loaded.
 */
static int xen__pause(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	int r = 0;

	pthread_mutex_lock(&x->lock);
	if (x->xg) {
		/* No ports to hold: Xen's pause is the whole of it. */
		bool first = !x->pause_depth++ && x->started && !x->stop_req;
		pthread_mutex_unlock(&x->lock);
		if (first && xc_domain_pause(x->xch, x->domid) < 0) {
			r = -errno;
			pthread_mutex_lock(&x->lock);
			x->pause_depth--;
			pthread_mutex_unlock(&x->lock);
		}
		return r;
	}
	if (x->pause_depth++ || !x->started || x->stop_req) {
		/* Nested, or the domain is not running (created paused, or
		 * ended): Xen's own pause count stays as it is. */
		pthread_mutex_unlock(&x->lock);
		return 0;
	}
	x->hold = true;
	pthread_cond_broadcast(&x->cond);
	for (;;) {
		bool busy = false;
		for (unsigned i = 0; i < x->nvcpus; i++)
			busy |= x->vcpus[i].serving;
		if (!busy)
			break;
		pthread_cond_wait(&x->cond, &x->lock);
	}
	pthread_mutex_unlock(&x->lock);
	if (xc_domain_pause(x->xch, x->domid) < 0) {
		r = -errno;
		goto err_unhold;
	}
	for (int tries = 0; xen__any_answered(x); tries++) {
		if (tries == 1000 || xc_domain_unpause(x->xch, x->domid) < 0) {
			r = -EBUSY;
			goto err_unhold;
		}
		usleep(tries < 10 ? 100 : 1000);
		if (xc_domain_pause(x->xch, x->domid) < 0) {
			r = -errno;
			goto err_unhold;
		}
	}
	return 0;
err_unhold:
	pthread_mutex_lock(&x->lock);
	x->hold = false;
	x->pause_depth--;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
	return r;
}

static int xen__resume(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	int r = 0;

	pthread_mutex_lock(&x->lock);
	if (x->xg) {
		bool last = x->pause_depth && --x->pause_depth == 0 && !x->stop_req;
		r = x->pause_depth || last ? 0 : -EINVAL;
		pthread_mutex_unlock(&x->lock);
		return last ? xen__xg_resume(x) : r;
	}
	if (!x->pause_depth) {
		r = -EINVAL;
	} else if (--x->pause_depth == 0 && x->hold) {
		x->hold = false; /* held requests are served now */
		pthread_cond_broadcast(&x->cond);
		if (!x->stop_req && xc_domain_unpause(x->xch, x->domid) < 0)
			r = -errno;
	}
	pthread_mutex_unlock(&x->lock);
	return r;
}

static int xen__is_running(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	pthread_mutex_lock(&x->lock);
	int r = x->started && !x->pause_depth && !x->stop_req;
	pthread_mutex_unlock(&x->lock);
	return r;
}

static int xen__has_ended(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	pthread_mutex_lock(&x->lock);
	int r = x->stop_req;
	pthread_mutex_unlock(&x->lock);
	return r;
}

static int xen__vcpu_entries(struct hv_vm *vm, unsigned idx, uint64_t *entries)
{
	return -ENOTSUP; /* log-dirty is one bitmap for the domain */
}

static uint64_t xen__ring_full_exits(struct hv_vm *vm)
{
	return 0;
}

static int xen__rename(struct hv_vm *vm, const char *name)
{
	struct xen_vm *x = xen__vm(vm);
	if (!x->have_domain)
		return -ENOENT;
	/* libxl checks in a xenstore transaction that no other domain has it. */
	return libxl_domain_rename(x->ctx, x->domid, NULL, name) ? -EEXIST : 0;
}

/* The switchover stop: a toolstack's guest suspends itself (see
 * xen-guest.c); our own images are paused as always. */
static int xen__suspend(struct hv_vm *vm, char *err, size_t errlen)
{
	struct xen_vm *x = xen__vm(vm);
	int r = xen__pause(vm);
	if (r < 0 || !x->xg)
		return r;
	r = xen__xg_suspend(x, err, errlen);
	if (r < 0) {
		pthread_mutex_lock(&x->lock);
		x->pause_depth--; /* xen__xg_suspend paused it again: lift ours */
		pthread_mutex_unlock(&x->lock);
		xc_domain_unpause(x->xch, x->domid);
	}
	return r;
}

static void xen__moved(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	x->xg_moved = x->xg;
}

static int xen__toolstack_guest(struct hv_vm *vm)
{
	return xen__vm(vm)->xg;
}

static int xen__domain_blob(struct hv_vm *vm, void **blob, size_t *len)
{
	struct xen_vm *x = xen__vm(vm);
	*blob = NULL;
	*len = 0;
	return x->xg ? xen__xg_blob(x, blob, len) : 0;
}

static int64_t xen__domid(struct hv_vm *vm)
{
	struct xen_vm *x = xen__vm(vm);
	return x->have_domain ? (int64_t)x->domid : -1;
}

const struct hv_backend hv_xen_backend = {
	.name = "xen",
	.create = xen__create,
	.destroy = xen__destroy,
	.mem = xen__mem,
	.present_range = xen__present_range,
	.vcpu_entries = xen__vcpu_entries,
	.throttle = xen__throttle,
	.boot_image = xen__boot_image,
	.start = xen__start,
	.stop = xen__stop,
	.wait = xen__wait,
	.pause = xen__pause,
	.resume = xen__resume,
	.is_running = xen__is_running,
	.has_ended = xen__has_ended,
	.dirty_start = xen__dirty_start,
	.dirty_collect = xen__dirty_collect,
	.dirty_stop = xen__dirty_stop,
	.ring_full_exits = xen__ring_full_exits,
	.vcpu_save = xen__vcpu_save,
	.vcpu_load = xen__vcpu_load,
	.domid = xen__domid,
	.prepare_incoming = xen__prepare_incoming,
	.rename = xen__rename,
	.attach = xen__attach,
	.suspend = xen__suspend,
	.moved = xen__moved,
	.toolstack_guest = xen__toolstack_guest,
	.domain_blob = xen__domain_blob,
	.prepare_restore = xen__prepare_restore,
};

int xen__domain_name(const char *domain, char *name, size_t len)
{
	xentoollog_logger_stdiostream *log = xtl_createlogger_stdiostream(stderr, XTL_CRITICAL, 0);
	libxl_ctx *ctx = NULL;
	uint32_t domid;
	char *end;
	int r = 0;

	if (!log || libxl_ctx_alloc(&ctx, LIBXL_VERSION, 0, (xentoollog_logger *)log)) {
		r = -ENODEV;
		goto out;
	}
	errno = 0;
	unsigned long v = strtoul(domain, &end, 10);
	if (*domain >= '0' && *domain <= '9' && !*end && !errno && v < 0x7ff0)
		domid = (uint32_t)v;
	else if (libxl_name_to_domid(ctx, domain, &domid))
		goto out;
	char *n = domid ? libxl_domid_to_name(ctx, domid) : NULL;
	if (n) {
		snprintf(name, len, "%s", n);
		free(n);
		r = 1;
	}
out:
	if (ctx)
		libxl_ctx_free(ctx);
	if (log)
		xtl_logger_destroy((xentoollog_logger *)log);
	return r;
}
