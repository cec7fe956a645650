/*
 * hv/xen-guest.c - a toolstack's own guest: a domain that `xl create` made
 * (a Linux PVH domU with its console, vifs and disks), moved live with its
 * help and handed to the destination's toolstack as an ordinary domain.
 *
 * Why the guest must help: a PV-aware guest keeps state in Xen that no
 * pause and context copy carries (event channels, grant table, shared
 * info, vCPU registrations, xenstore watches). Xen 4.17 moves such a guest
 * only cooperatively, as `xl migrate` does: control/shutdown = "suspend",
 * the guest freezes, disconnects its frontends and calls
 * SCHEDOP_shutdown(SHUTDOWN_suspend); on the destination it finds a domain
 * libxl restored and reconnects. So:
 *
 *  - Source (xen__adopt): the running domain is mapped over its whole p2m
 *    (RAM, the ACPI pages, the special pages: the store and console rings),
 *    without its Xen-heap frames (shared info, grant table: type XTAB,
 *    never sent). The switchover stop is libxl_domain_suspend_only(); a
 *    failed migration resumes it with libxl_domain_resume(suspend_cancel),
 *    so the guest carries on where it was, devices still connected.
 *
 *  - Destination (xen__prepare_restore): libxl_domain_create_restore() in a
 *    thread, reading a libxl v2 / libxenguest v3 migration stream from a
 *    pipe that we write (design "b'" of the README): the static part at
 *    once (headers, the source's CPU policy, STATIC_DATA_END), the pages
 *    ourselves, straight into the domain (populated here, mapped once, as
 *    for our own images: no PAGE_DATA record ever goes through the pipe),
 *    and the tail at the end of the migration (TSC info, HVM params, HVM
 *    context, END). libxl/libxenguest then do every version-specific step
 *    of a restore (params, ring reset, event channels, grant seeding,
 *    xenstore introduction, console and vif/vbd backends) exactly as for
 *    `xl migrate`, and leave the domain paused under a temporary name;
 *    COMMIT renames and unpauses it. The domain is then the toolstack's.
 *
 * The domain description the destination needs before any page (the
 * "domain blob", carried by the stream's DOMAIN record) holds the libxl
 * configuration as JSON, the CPU policy as libxenguest serialises it, and
 * the populated frame ranges.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include "hv/xen-internal.h" /* before Xen's other headers: they need xenctrl's types */
#include <libxl_utils.h>
#include <xenguest.h>
#include <xen/hvm/params.h>

/* Exported by libxenctrl 4.17 (its version map exports every xc_ name)
 * but declared only in its private xc_private.h. */
int xc_get_pfn_type_batch(xc_interface *xch, uint32_t dom, unsigned int num, xen_pfn_t *arr);

#define XG_BATCH 1024
#define XG_BLOB_MAGIC 0x44474d50u /* "PMGD" */
#define XG_BLOB_VERSION 1
#define XG_MAX_RANGES 65536
#define XG_MAX_JSON (256u << 10)
#define XG_MAX_POLICY (256u << 10)
#define XG_STATIC_WAIT_MS 60000
#define XG_LOCK_DIR "/run/pml-migrate-xen"

/* The domain blob: this header, ranges, JSON (NUL included), CPUID
 * leaves, MSR entries. Little-endian (the backend runs on x86 only). */
struct xg_blob_hdr {
	uint32_t magic, version;
	uint32_t json_len, cpuid_len, msr_len, nranges;
	uint32_t xen_major, xen_minor;
	uint64_t pages; /* populated frames in the ranges */
};

struct xg_range {
	uint64_t first, count;
};

/* libxenguest stream record types (docs/specs/libxc-migration-stream.pandoc) */
enum {
	XG_REC_END = 0x0,
	XG_REC_X86_TSC_INFO = 0x8,
	XG_REC_HVM_CONTEXT = 0x9,
	XG_REC_HVM_PARAMS = 0xa,
	XG_REC_STATIC_DATA_END = 0x10,
	XG_REC_X86_CPUID_POLICY = 0x11,
	XG_REC_X86_MSR_POLICY = 0x12,
	XL_REC_END = 0x0,
	XL_REC_LIBXC_CONTEXT = 0x1,
};

/* The HVM params libxenguest's save sends (write_hvm_params() in
 * xg_sr_save_x86_hvm.c), non-zero ones only. The event-channel ports are
 * not among them: the destination's own are set at the end. */
static const uint32_t xg_params[] = {
	HVM_PARAM_STORE_PFN,	     HVM_PARAM_IOREQ_PFN,	     HVM_PARAM_BUFIOREQ_PFN,
	HVM_PARAM_PAGING_RING_PFN,   HVM_PARAM_MONITOR_RING_PFN,    HVM_PARAM_SHARING_RING_PFN,
	HVM_PARAM_VM86_TSS_SIZED,    HVM_PARAM_CONSOLE_PFN,	     HVM_PARAM_ACPI_IOPORTS_LOCATION,
	HVM_PARAM_VIRIDIAN,	     HVM_PARAM_IDENT_PT,	     HVM_PARAM_VM_GENERATION_ID_ADDR,
	HVM_PARAM_IOREQ_SERVER_PFN, HVM_PARAM_NR_IOREQ_SERVER_PAGES, HVM_PARAM_X87_FIP_WIDTH,
	HVM_PARAM_MCA_CAP,
};
#define XG_NPARAMS (sizeof(xg_params) / sizeof(xg_params[0]))

static int xg__errno(void)
{
	return errno ? -errno : -EIO;
}

/* ---- source ---- */

/* The frames of [0, nframes) that hold the guest's memory: not XTAB to
 * getpageframeinfo3, which says that of unpopulated frames and of Xen-heap
 * ones (shared info, grant table) alike. Fills present[]. */
static int xg__types(struct xen_vm *x)
{
	xen_pfn_t b[XG_BATCH];

	for (uint64_t f = 0; f < x->nframes; f += XG_BATCH) {
		unsigned n = (unsigned)(x->nframes - f < XG_BATCH ? x->nframes - f : XG_BATCH);
		for (unsigned i = 0; i < n; i++)
			b[i] = f + i;
		if (xc_get_pfn_type_batch(x->xch, x->domid, n, b))
			return xg__errno();
		for (unsigned i = 0; i < n; i++) {
			unsigned long t = b[i] & XEN_DOMCTL_PFINFO_LTAB_MASK;
			x->present[f + i] = t != XEN_DOMCTL_PFINFO_XTAB && t != XEN_DOMCTL_PFINFO_BROKEN;
		}
	}
	return 0;
}

/* The next run of frames present[] holds, from *f on: 1 with it in
 * [*f, *e), or 0 when there is none. */
static int xg__next_run(const struct xen_vm *x, uint64_t *f, uint64_t *e)
{
	while (*f < x->nframes && !x->present[*f])
		(*f)++;
	if (*f >= x->nframes)
		return 0;
	for (*e = *f; *e < x->nframes && x->present[*e]; (*e)++)
		;
	return 1;
}

/* Maps the frames present[] says, range by range, into one reserved
 * region of nframes pages (hv_mem is then base + gpa), and nothing else:
 * a PVH p2m spans 4 GiB for a few hundred MiB of memory, and asking for
 * the holes costs a hypercall entry each. A frame that does not map is
 * taken out of present[]. */
static int xg__map(struct xen_vm *x, int prot)
{
	size_t size = x->nframes << HV_PAGE_SHIFT;
	uint8_t *base = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	xen_pfn_t *pfns = NULL;
	int *errs = NULL, r = 0;

	if (base == MAP_FAILED)
		return xg__errno();
	x->mem = base; /* unmapped whole with the VM */
	for (uint64_t f = 0, e; xg__next_run(x, &f, &e); f = e) {
		size_t n = (size_t)(e - f);
		xen_pfn_t *np = realloc(pfns, n * sizeof(*pfns));
		int *ne = realloc(errs, n * sizeof(*errs));
		if (np)
			pfns = np;
		if (ne)
			errs = ne;
		if (!np || !ne) {
			r = -ENOMEM;
			break;
		}
		for (size_t i = 0; i < n; i++)
			pfns[i] = f + i;
		if (xenforeignmemory_map2(x->fmem, x->domid, base + (f << HV_PAGE_SHIFT), prot, MAP_FIXED, n, pfns, errs) !=
		    base + (f << HV_PAGE_SHIFT)) {
			r = xg__errno();
			break;
		}
		for (size_t i = 0; i < n; i++)
			if (errs[i])
				x->present[f + i] = 0;
	}
	free(pfns);
	free(errs);
	return r;
}

/* Drops what xg__describe made. */
static void xg__undescribe(struct xen_vm *x)
{
	free(x->xg_json);
	free(x->xg_cpuid);
	free(x->xg_msr);
	x->xg_json = NULL;
	x->xg_cpuid = x->xg_msr = NULL;
	x->xg_cpuid_len = x->xg_msr_len = 0;
}

/* The libxl configuration (as `xl migrate` sends it) and the CPU policy
 * the guest booted with: what the destination builds the domain from.
 * Replaces an earlier description (one is made at each migration's start). */
static int xg__describe(struct xen_vm *x, char *err, size_t errlen)
{
	libxl_domain_config dc;
	xc_cpu_policy_t *pol = NULL;
	uint32_t nl = 0, nm = 0;
	int r = -EIO;

	xg__undescribe(x);
	libxl_domain_config_init(&dc);
	if (libxl_retrieve_domain_configuration(x->ctx, x->domid, &dc, NULL)) {
		snprintf(err, errlen, "cannot read domain %u's configuration from the toolstack", x->domid);
		goto out;
	}
	dc.c_info.domid = 0; /* the destination's toolstack picks its own */
	x->xg_json = libxl_domain_config_to_json(x->ctx, &dc);
	if (!x->xg_json || strlen(x->xg_json) + 1 > XG_MAX_JSON) {
		snprintf(err, errlen, "domain %u's configuration cannot be written as JSON (or is over %u KiB)",
			 x->domid, XG_MAX_JSON >> 10);
		goto out;
	}
	if (xc_cpu_policy_get_size(x->xch, &nl, &nm) || !(pol = xc_cpu_policy_init())) {
		snprintf(err, errlen, "cannot size the CPU policy: %s", strerror(errno));
		goto out;
	}
	x->xg_cpuid = calloc(nl ? nl : 1, sizeof(xen_cpuid_leaf_t));
	x->xg_msr = calloc(nm ? nm : 1, sizeof(xen_msr_entry_t));
	if (!x->xg_cpuid || !x->xg_msr) {
		r = -ENOMEM;
		goto out;
	}
	if (xc_cpu_policy_get_domain(x->xch, x->domid, pol) ||
	    xc_cpu_policy_serialise(x->xch, pol, x->xg_cpuid, &nl, x->xg_msr, &nm)) {
		snprintf(err, errlen, "cannot read domain %u's CPU policy: %s", x->domid, strerror(errno));
		goto out;
	}
	x->xg_cpuid_len = nl * sizeof(xen_cpuid_leaf_t);
	x->xg_msr_len = nm * sizeof(xen_msr_entry_t);
	if (x->xg_cpuid_len + x->xg_msr_len > XG_MAX_POLICY) {
		snprintf(err, errlen, "domain %u's CPU policy is over %u KiB", x->domid, XG_MAX_POLICY >> 10);
		goto out;
	}
	r = 0;
out:
	if (pol)
		xc_cpu_policy_destroy(pol);
	libxl_domain_config_dispose(&dc);
	return r;
}

/* Where xl writes core dumps (its XEN_DUMP_DIR in Debian's build). */
#define XEN_DUMP_DIR "/var/lib/xen/dump"

static const char *xg__action_name(libxl_action_on_shutdown a)
{
	const char *n = libxl_action_on_shutdown_to_string(a);
	return n ? n : "?";
}

/* xl's core dump path: XEN_DUMP_DIR/NAME.TIME.core. 0 or -errno. */
static int xg__core_dump(struct xen_vm *x, const char *name, char *path, size_t pathlen)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(ts, sizeof(ts), "%Y-%m%d-%H%M.%S", localtime_r(&now, &tm));
	mkdir(XEN_DUMP_DIR, 0700);
	snprintf(path, pathlen, "%s/%s.%s.core", XEN_DUMP_DIR, name, ts);
	return libxl_domain_core_dump(x->ctx, x->domid, path, NULL) ? -EIO : 0;
}

/* What the configuration of a domain restored here says to do when it
 * shut down for reason sr (on_poweroff, on_reboot, on_crash, on_watchdog,
 * on_soft_reset), done as xl's domain monitor does it:
 *  - destroy (coredump-destroy: a core dump first): the domain goes with
 *    the VM (owns_domain);
 *  - preserve: the domain stays as it is, for `xl` to inspect or destroy;
 *  - restart (coredump-restart; rename-restart keeps the old one under
 *    another name): the domain is destroyed and a new one created from
 *    its current libxl configuration, a fresh boot. It is left to the
 *    toolstack: this process does not watch it (domain_gone is set);
 *  - soft-reset is not done here: the domain is preserved.
 * Appends what was done to why[]. Runs on the watch thread. */
static void xg__on_shutdown(struct xen_vm *x, unsigned sr, char *why, size_t whylen)
{
	libxl_action_on_shutdown a;
	switch (sr) {
	case SHUTDOWN_poweroff:
		a = x->xg_dc->on_poweroff;
		break;
	case SHUTDOWN_reboot:
		a = x->xg_dc->on_reboot;
		break;
	case SHUTDOWN_watchdog:
		a = x->xg_dc->on_watchdog;
		break;
	case SHUTDOWN_soft_reset:
		a = x->xg_dc->on_soft_reset;
		break;
	default:
		a = x->xg_dc->on_crash;
		break;
	}
	size_t l = strlen(why);
	char core[256] = "";
	libxl_domain_config dc;
	uint32_t nd = 0;
	char *name = libxl_domid_to_name(x->ctx, x->domid);

	if ((a == LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_DESTROY || a == LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_RESTART) &&
	    xg__core_dump(x, name ? name : "domain", core, sizeof(core)) < 0)
		snprintf(core, sizeof(core), "(the core dump failed)");
	switch (a) {
	case LIBXL_ACTION_ON_SHUTDOWN_DESTROY:
	case LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_DESTROY:
		x->owns_domain = true;
		snprintf(why + l, whylen - l, "; destroyed (%s%s%s)", xg__action_name(a), core[0] ? ", core " : "", core);
		break;
	case LIBXL_ACTION_ON_SHUTDOWN_RESTART:
	case LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME:
	case LIBXL_ACTION_ON_SHUTDOWN_COREDUMP_RESTART:
		libxl_domain_config_init(&dc);
		if (!name || libxl_retrieve_domain_configuration(x->ctx, x->domid, &dc, NULL)) {
			x->owns_domain = true;
			snprintf(why + l, whylen - l, "; its configuration could not be read back to restart it: destroyed");
			libxl_domain_config_dispose(&dc);
			break;
		}
		if (a == LIBXL_ACTION_ON_SHUTDOWN_RESTART_RENAME) {
			/* xl keeps the old domain under another name. */
			char old[160];
			snprintf(old, sizeof(old), "%s--%u", name, x->domid);
			libxl_domain_rename(x->ctx, x->domid, name, old);
		} else {
			libxl_domain_destroy(x->ctx, x->domid, NULL);
		}
		x->domain_gone = true;
		/* A fresh boot from the configuration as it is now (devices
		 * added since included), as xl's reload_domain_config; created
		 * paused, and unpaused as xl does. */
		if (libxl_domain_create_new(x->ctx, &dc, &nd, NULL, NULL) || libxl_domain_unpause(x->ctx, nd, NULL))
			snprintf(why + l, whylen - l, "; %s: restarting it failed (libxl_domain_create_new)",
				 xg__action_name(a));
		else
			snprintf(why + l, whylen - l, "; %s: restarted as domain %u, left to the toolstack", xg__action_name(a),
				 nd);
		libxl_domain_config_dispose(&dc);
		break;
	default: /* preserve, soft-reset */
		x->owns_domain = false;
		snprintf(why + l, whylen - l, "; left as it is (%s)", xg__action_name(a));
		break;
	}
	free(name);
}

/* Watches an adopted domain: it has no ioreq server whose thread would.
 * A domain that shut down on its own (not our suspend) or vanished ends
 * the VM; the hosting process learns it through the stopped callback. */
static void *xg__watch_thread(void *arg)
{
	struct xen_vm *x = arg;
	static const char *const reasons[] = { "poweroff", "reboot", "suspend", "crash", "watchdog", "soft reset" };

	pthread_setname_np(pthread_self(), "xenwatch");
	for (;;) {
		struct pollfd pf = { .fd = x->wake_fd, .events = POLLIN };
		int n = poll(&pf, 1, 200);
		pthread_mutex_lock(&x->lock);
		bool stop = x->stop_req, ours = x->xg_suspended || x->xg_suspending;
		pthread_mutex_unlock(&x->lock);
		if (stop || (n < 0 && errno != EINTR))
			break;
		xc_domaininfo_t info;
		int found = xen__domain_info(x, &info);
		if (found && !(info.flags & (XEN_DOMINF_shutdown | XEN_DOMINF_dying)))
			continue;
		char why[160];
		if (!found || (info.flags & XEN_DOMINF_dying)) {
			/* The toolstack's to do: `xl destroy`, or `xl migrate`
			 * took it away. This host has nothing left to keep. */
			x->domain_gone = true;
			snprintf(why, sizeof(why), "Xen domain %u is gone (destroyed, or moved away by the toolstack)",
				 x->domid);
			xen__end(x, HV_STOP_KILLED, 0, why);
			break;
		}
		unsigned sr = (info.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
		if (sr == SHUTDOWN_suspend && ours)
			continue; /* the switchover's own */
		if (sr == SHUTDOWN_suspend) {
			/* Not ours: the toolstack saves or moves it (`xl
			 * migrate`, `xl save`). Step aside, touching nothing. */
			snprintf(why, sizeof(why), "Xen domain %u was suspended by the toolstack (xl migrate or save): "
				 "left to it", x->domid);
			xen__end(x, HV_STOP_KILLED, 0, why);
			break;
		}
		snprintf(why, sizeof(why), "Xen domain %u shut down: %s", x->domid,
			 sr < sizeof(reasons) / sizeof(reasons[0]) ? reasons[sr] : "unknown reason");
		/* A domain restored here has no `xl` process watching it: this
		 * one stands in and does what its configuration's on_poweroff,
		 * on_reboot, on_crash... say, as xl's monitor would. */
		if (x->xg_dc)
			xg__on_shutdown(x, sr, why, sizeof(why));
		/* The guest chose to stop (power off, reboot): an exit, not a
		 * failure; a crash or its watchdog is one. */
		bool chose = sr == SHUTDOWN_poweroff || sr == SHUTDOWN_reboot || sr == SHUTDOWN_soft_reset;
		xen__end(x, chose ? HV_STOP_EXIT : HV_STOP_CRASH, chose ? 0 : -1, why);
		break;
	}
	/* As the last server thread would (xen__vcpu_finish): every vCPU is
	 * done, the VM has stopped. */
	bool report = false;
	pthread_mutex_lock(&x->lock);
	x->ndone = x->nvcpus;
	if (!x->stopped_reported)
		report = x->stopped_reported = true;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
	if (report && x->hv->gops && x->hv->gops->stopped)
		x->hv->gops->stopped(x->hv->gops_opaque, x->stop_why, x->exit_code, x->stop_detail);
	return NULL;
}

/* One host per domain on this dom0: a process that adopts or restores a
 * toolstack's domain holds a lock named after its id for as long as it
 * lives, whatever run directory it uses, so `send DOMAIN` never starts a
 * second host for a domain an agent's session already keeps. */
static int xg__lock(struct xen_vm *x, uint32_t domid, char *err, size_t errlen)
{
	char path[96];
	if (mkdir(XG_LOCK_DIR, 0700) < 0 && errno != EEXIST)
		return xg__errno();
	snprintf(path, sizeof(path), XG_LOCK_DIR "/domain-%u.lock", domid);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return xg__errno();
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno == EWOULDBLOCK ? -EBUSY : xg__errno();
		close(fd);
		snprintf(err, errlen, "domain %u already has a pml-migrate host on this machine (an agent's session or "
			 "another attach: see 'pml-migrate list' in their run directories)", domid);
		return e;
	}
	x->xg_lock_fd = fd;
	return 0;
}

int xen__adopt(struct xen_vm *x, uint32_t domid, char *err, size_t errlen)
{
	xen_pfn_t maxp;
	int r;

	x->domid = domid;
	x->xg = true;
	if ((r = xg__lock(x, domid, err, errlen)) < 0)
		return r;
	if (xc_domain_maximum_gpfn(x->xch, domid, &maxp) < 0) {
		snprintf(err, errlen, "reading domain %u's highest frame: %s", domid, strerror(errno));
		return xg__errno();
	}
	/* The engine moves [0, mem_bytes): the whole p2m, rounded up to the
	 * 2 MiB the stream's SHAPE counts in. Only populated frames travel. */
	uint64_t bytes = ((uint64_t)maxp + 1) << HV_PAGE_SHIFT;
	bytes = (bytes + (2ull << 20) - 1) & ~((2ull << 20) - 1);
	if (bytes < HV_MIN_MEM)
		bytes = HV_MIN_MEM;
	if (bytes > HV_MAX_MEM) {
		snprintf(err, errlen, "domain %u's frames reach %llu GiB: this engine moves at most %llu GiB", domid,
			 (unsigned long long)(bytes >> 30), (unsigned long long)(HV_MAX_MEM >> 30));
		return -E2BIG;
	}
	x->hv->cfg.mem_bytes = bytes;
	x->nframes = bytes >> HV_PAGE_SHIFT;

	if (!(x->present = calloc(x->nframes, 1)))
		return -ENOMEM;
	r = xg__types(x);
	if (r < 0) {
		snprintf(err, errlen, "reading domain %u's frame types: %s", domid, strerror(-r));
		return r;
	}
	/* Read-only: the source never writes the guest's memory. */
	r = xg__map(x, PROT_READ);
	if (r < 0) {
		snprintf(err, errlen, "mapping domain %u's memory: %s", domid, strerror(-r));
		return r;
	}
	/* Its configuration and CPU policy are read at each migration's
	 * start (xen__domain_blob), as the toolstack knows it then. */
	x->have_domain = true;
	x->started = true; /* it runs already: hv_vm_start only starts watching */
	return 0;
}

int xen__xg_start(struct xen_vm *x)
{
	int r = -pthread_create(&x->xg_watch, NULL, xg__watch_thread, x);
	if (!r)
		x->xg_watch_started = true;
	return r;
}

int xen__xg_suspend(struct xen_vm *x, char *err, size_t errlen)
{
	pthread_mutex_lock(&x->lock);
	x->xg_suspending = true;
	pthread_mutex_unlock(&x->lock);
	/* The dirty log stays armed: the guest writes while it freezes. The
	 * domain must run for the guest to answer: our own pause lifts. */
	xc_domain_unpause(x->xch, x->domid);
	int r = libxl_domain_suspend_only(x->ctx, x->domid, NULL);
	xc_domaininfo_t info;
	bool ok = !r && xen__domain_info(x, &info) &&
		  (info.flags & XEN_DOMINF_shutdown) &&
		  ((info.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask) == SHUTDOWN_suspend;
	pthread_mutex_lock(&x->lock);
	x->xg_suspending = false;
	x->xg_suspended = ok;
	pthread_mutex_unlock(&x->lock);
	if (!ok) {
		/* libxl's synchronous call says 0 also when it gave up waiting
		 * for the guest (it logs "guest didn't acknowledge suspend"):
		 * the domain's state is what counts. */
		snprintf(err, errlen, "domain %u did not suspend: the guest did not acknowledge control/shutdown=suspend "
			 "within libxl's 60 s (hung, paused, or without a PV control driver)%s", x->domid,
			 r ? ", libxl failed" : "");
		xc_domain_pause(x->xch, x->domid); /* back as the caller left it */
		return -ETIMEDOUT;
	}
	return 0;
}

int xen__xg_resume(struct xen_vm *x)
{
	pthread_mutex_lock(&x->lock);
	bool susp = x->xg_suspended;
	pthread_mutex_unlock(&x->lock);
	if (susp) {
		/* A cancelled suspend: SCHEDOP_shutdown returns 1 in the guest,
		 * which carries on without reconnecting anything. The domain
		 * stays ours until it runs again: the watch thread, seeing it
		 * suspended and not ours, would take it for `xl migrate`'s
		 * and end this VM (seen in the lab with the flag cleared
		 * first). */
		if (libxl_domain_resume(x->ctx, x->domid, 1, NULL))
			return -EIO;
		pthread_mutex_lock(&x->lock);
		x->xg_suspended = false;
		pthread_mutex_unlock(&x->lock);
		return 0;
	}
	return xc_domain_unpause(x->xch, x->domid) < 0 ? xg__errno() : 0;
}

int xen__xg_is_xtab(struct xen_vm *x, uint64_t gfn)
{
	xen_pfn_t t = gfn;
	if (xc_get_pfn_type_batch(x->xch, x->domid, 1, &t))
		return xg__errno();
	t &= XEN_DOMCTL_PFINFO_LTAB_MASK;
	return t == XEN_DOMCTL_PFINFO_XTAB || t == XEN_DOMCTL_PFINFO_BROKEN;
}

int xen__xg_blob(struct xen_vm *x, void **blob, size_t *len)
{
	struct xg_blob_hdr h = { .magic = XG_BLOB_MAGIC, .version = XG_BLOB_VERSION };
	size_t nr = 0, cap = 16;
	struct xg_range *rg;
	char err[256];

	/* Described as the toolstack knows the domain now, not when this
	 * host adopted it: a long-lived `attach --live` host must carry a
	 * device `xl network-attach` or `block-attach` added since (the
	 * guest's frontend expects its backend at the destination). */
	int r = xg__describe(x, err, sizeof(err));
	if (r < 0)
		return r;
	if (!(rg = malloc(cap * sizeof(*rg))))
		return -ENOMEM;
	for (uint64_t f = 0, e; xg__next_run(x, &f, &e); f = e) {
		if (nr == cap) {
			struct xg_range *n = realloc(rg, (cap *= 2) * sizeof(*rg));
			if (!n) {
				free(rg);
				return -ENOMEM;
			}
			rg = n;
		}
		if (nr == XG_MAX_RANGES) {
			free(rg);
			return -E2BIG;
		}
		rg[nr++] = (struct xg_range){ f, e - f };
		h.pages += e - f;
	}
	int xv = xc_version(x->xch, XENVER_version, NULL);
	h.xen_major = (uint32_t)xv >> 16;
	h.xen_minor = (uint32_t)xv & 0xffff;
	h.json_len = (uint32_t)strlen(x->xg_json) + 1;
	h.cpuid_len = (uint32_t)x->xg_cpuid_len;
	h.msr_len = (uint32_t)x->xg_msr_len;
	h.nranges = (uint32_t)nr;
	size_t n = sizeof(h) + nr * sizeof(*rg) + h.json_len + h.cpuid_len + h.msr_len;
	uint8_t *b = malloc(n), *p = b;
	if (!b) {
		free(rg);
		return -ENOMEM;
	}
	memcpy(p, &h, sizeof(h));
	p += sizeof(h);
	memcpy(p, rg, nr * sizeof(*rg));
	p += nr * sizeof(*rg);
	memcpy(p, x->xg_json, h.json_len);
	p += h.json_len;
	memcpy(p, x->xg_cpuid, h.cpuid_len);
	p += h.cpuid_len;
	memcpy(p, x->xg_msr, h.msr_len);
	free(rg);
	*blob = b;
	*len = n;
	return 0;
}

/* The state the restore's tail needs and the engine's vCPU blob does not
 * carry for our own images: the HVM params (index, value), non-zero ones. */
int xen__xg_params(struct xen_vm *x, uint64_t (*out)[2], unsigned *n)
{
	*n = 0;
	for (unsigned i = 0; i < XG_NPARAMS; i++) {
		uint64_t v = 0;
		if (xc_hvm_param_get(x->xch, x->domid, (int)xg_params[i], &v))
			return xg__errno();
		if (v) {
			out[*n][0] = xg_params[i];
			out[*n][1] = v;
			(*n)++;
		}
	}
	return 0;
}

unsigned xen__xg_nparams(void)
{
	return XG_NPARAMS;
}

int xen__xg_param_known(uint64_t index)
{
	for (unsigned i = 0; i < XG_NPARAMS; i++)
		if (xg_params[i] == index)
			return 1;
	return 0;
}

/* ---- destination ---- */

static int xg__write(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t w = write(fd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		b += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A record of either stream (they share the framing): u32 type, u32
 * length, body, zero padding to 8 bytes. */
static int xg__rec(int fd, uint32_t type, const void *a, uint32_t alen, const void *b, uint32_t blen)
{
	static const uint8_t zero[8];
	uint32_t h[2] = { type, alen + blen };
	int r = xg__write(fd, h, sizeof(h));
	if (!r && alen)
		r = xg__write(fd, a, alen);
	if (!r && blen)
		r = xg__write(fd, b, blen);
	if (!r && ((alen + blen) & 7))
		r = xg__write(fd, zero, 8 - ((alen + blen) & 7));
	return r;
}

static void *xg__restore_thread(void *arg)
{
	struct xen_vm *x = arg;
	libxl_domain_restore_params params;
	uint32_t domid = (uint32_t)INVALID_DOMID;

	pthread_setname_np(pthread_self(), "xlrestore");
	libxl_domain_restore_params_init(&params);
	params.stream_version = 2;
	params.checkpointed_stream = LIBXL_CHECKPOINTED_STREAM_NONE;
	int r = libxl_domain_create_restore(x->ctx, x->xg_dc, &domid, x->xg_rfd, -1, &params, NULL, NULL);
	libxl_domain_restore_params_dispose(&params);
	pthread_mutex_lock(&x->lock);
	x->xg_restore_rc = r;
	x->xg_restore_domid = domid;
	x->xg_restore_done = true;
	pthread_cond_broadcast(&x->cond);
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

static uint64_t xg__ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Parses and checks a domain blob; points into it. */
static int xg__parse(const uint8_t *b, size_t len, struct xg_blob_hdr *h, const struct xg_range **rg,
		     const char **json, const uint8_t **cpuid, const uint8_t **msr, uint64_t nframes)
{
	if (len < sizeof(*h))
		return -EINVAL;
	memcpy(h, b, sizeof(*h));
	if (h->magic != XG_BLOB_MAGIC || h->version != XG_BLOB_VERSION || h->nranges > XG_MAX_RANGES ||
	    h->json_len < 2 || h->json_len > XG_MAX_JSON || h->cpuid_len > XG_MAX_POLICY ||
	    h->msr_len > XG_MAX_POLICY || h->cpuid_len % sizeof(xen_cpuid_leaf_t) ||
	    h->msr_len % sizeof(xen_msr_entry_t))
		return -EINVAL;
	size_t need = sizeof(*h) + (size_t)h->nranges * sizeof(struct xg_range) + h->json_len + h->cpuid_len +
		      h->msr_len;
	if (len != need)
		return -EINVAL;
	*rg = (const struct xg_range *)(b + sizeof(*h));
	uint64_t prev = 0, pages = 0;
	for (uint32_t i = 0; i < h->nranges; i++) {
		const struct xg_range *r = &(*rg)[i];
		if (!r->count || r->first < prev || r->first > nframes || r->count > nframes - r->first)
			return -EINVAL;
		prev = r->first + r->count;
		pages += r->count;
	}
	if (pages != h->pages)
		return -EINVAL;
	*json = (const char *)(*rg + h->nranges);
	if ((*json)[h->json_len - 1] || strlen(*json) != h->json_len - 1)
		return -EINVAL;
	*cpuid = (const uint8_t *)*json + h->json_len;
	*msr = *cpuid + h->cpuid_len;
	return 0;
}

int xen__xg_check(const void *blob, size_t len, uint64_t nframes)
{
	struct xg_blob_hdr h;
	const struct xg_range *rg;
	const char *json;
	const uint8_t *cpuid, *msr;
	return xg__parse(blob, len, &h, &rg, &json, &cpuid, &msr, nframes);
}

/* Populates the source's frames in the new domain (order 0, as
 * libxenguest's restore does), then maps [0, nframes) once. */
static int xg__populate(struct xen_vm *x, const struct xg_range *rg, uint32_t nr, char *err, size_t errlen)
{
	xen_pfn_t b[XG_BATCH];
	int r;

	for (uint32_t i = 0; i < nr; i++) {
		for (uint64_t f = rg[i].first; f < rg[i].first + rg[i].count;) {
			unsigned n = 0;
			while (n < XG_BATCH && f < rg[i].first + rg[i].count)
				b[n++] = f++;
			if (xc_domain_populate_physmap_exact(x->xch, x->domid, n, 0, 0, b)) {
				r = xg__errno();
				snprintf(err, errlen, "populating the new domain's memory at frame 0x%llx: %s",
					 (unsigned long long)b[0], strerror(-r));
				return r;
			}
		}
	}
	/* Exactly the populated frames: a page sent for any other is refused. */
	if (!(x->present = calloc(x->nframes, 1)))
		return -ENOMEM;
	for (uint32_t i = 0; i < nr; i++)
		memset(x->present + rg[i].first, 1, rg[i].count);
	r = xg__map(x, PROT_READ | PROT_WRITE);
	if (r < 0)
		snprintf(err, errlen, "mapping the new domain's memory: %s", strerror(-r));
	return r;
}

int xen__prepare_restore(struct hv_vm *vm, const void *blob, size_t len, char *err, size_t errlen)
{
	struct xen_vm *x = xen__vm(vm);
	struct xg_blob_hdr h;
	const struct xg_range *rg;
	const char *json;
	const uint8_t *cpuid, *msr;
	int fds[2] = { -1, -1 }, r;
	char name[96];

	if (x->have_domain || x->xg_dc) {
		snprintf(err, errlen, "the VM already has a domain");
		return -EALREADY;
	}
	if (xg__parse(blob, len, &h, &rg, &json, &cpuid, &msr, x->nframes) < 0) {
		snprintf(err, errlen, "malformed domain description (DOMAIN record)");
		return -EINVAL;
	}
	x->xg = true;
	x->xg_dc = calloc(1, sizeof(*x->xg_dc));
	if (!x->xg_dc)
		return -ENOMEM;
	libxl_domain_config_init(x->xg_dc);
	if (libxl_domain_config_from_json(x->ctx, x->xg_dc, json)) {
		snprintf(err, errlen, "the source's domain configuration is not libxl JSON this toolstack reads");
		return -EINVAL;
	}
	if (x->xg_dc->c_info.type != LIBXL_DOMAIN_TYPE_PVH) {
		snprintf(err, errlen, "the source's domain is not PVH: this backend restores PVH domains only");
		return -ENOTSUP;
	}
	/* As `xl migrate-receive`: a temporary name until COMMIT, so the
	 * domain never clashes with the source's when both are on one host. */
	snprintf(name, sizeof(name), "%s--incoming",
		 x->hv->cfg.name[0] ? x->hv->cfg.name : x->xg_dc->c_info.name ? x->xg_dc->c_info.name : "pml");
	free(x->xg_dc->c_info.name);
	x->xg_dc->c_info.name = strdup(name);
	/* libxl forks its save helper and hotplug scripts: it reaps only
	 * its own children, whatever else this process runs. */
	static const libxl_childproc_hooks hooks = { .chldowner = libxl_sigchld_owner_libxl_always_selective_reap };
	libxl_childproc_setmode(x->ctx, &hooks, NULL);
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	x->xg_rfd = fds[0];
	x->xg_wfd = fds[1];

	/* The static part, before libxl reads a byte: it fits the pipe. */
	struct {
		uint64_t ident;
		uint32_t version, options;
	} lh = { htobe64(0x4c6962786c466d74ULL), htobe32(2), htobe32(0) };
	struct {
		uint64_t marker;
		uint32_t id, version;
		uint16_t options, r1;
		uint32_t r2;
	} __attribute__((packed)) ih = { ~0ULL, htobe32(0x58454E46), htobe32(3), 0, 0, 0 };
	struct {
		uint32_t type;
		uint16_t page_shift, r1;
		uint32_t major, minor;
	} dh = { 2 /* DHDR_TYPE_X86_HVM: PVH is HVM to libxenguest */, 12, 0, h.xen_major, h.xen_minor };
	r = xg__write(x->xg_wfd, &lh, sizeof(lh));
	if (!r)
		r = xg__rec(x->xg_wfd, XL_REC_LIBXC_CONTEXT, NULL, 0, NULL, 0);
	if (!r)
		r = xg__write(x->xg_wfd, &ih, sizeof(ih));
	if (!r)
		r = xg__write(x->xg_wfd, &dh, sizeof(dh));
	if (!r && h.cpuid_len)
		r = xg__rec(x->xg_wfd, XG_REC_X86_CPUID_POLICY, cpuid, h.cpuid_len, NULL, 0);
	if (!r && h.msr_len)
		r = xg__rec(x->xg_wfd, XG_REC_X86_MSR_POLICY, msr, h.msr_len, NULL, 0);
	if (!r)
		r = xg__rec(x->xg_wfd, XG_REC_STATIC_DATA_END, NULL, 0, NULL, 0);
	if (r < 0) {
		snprintf(err, errlen, "writing the restore stream's static part: %s", strerror(-r));
		return r;
	}
	r = -pthread_create(&x->xg_restore, NULL, xg__restore_thread, x);
	if (r) {
		snprintf(err, errlen, "cannot start the restore thread");
		return r;
	}
	x->xg_restore_started = true;

	/* libxl creates the domain, sets its memory limit and event channels,
	 * then hands the pipe to its helper, which applies the CPU policy at
	 * STATIC_DATA_END. The pipe drained: all of that is done, the domain
	 * can be populated. (Polled: nothing signals it otherwise.) */
	uint64_t t0 = xg__ms();
	for (;;) {
		int unread = 0;
		pthread_mutex_lock(&x->lock);
		bool done = x->xg_restore_done;
		int rc = x->xg_restore_rc;
		pthread_mutex_unlock(&x->lock);
		if (done) {
			snprintf(err, errlen, "libxl could not create the domain '%s' (libxl error %d; see the agent's "
				 "log: is the name taken, a bridge or script missing, or the CPU policy refused?)", name, rc);
			return -EIO;
		}
		if (ioctl(x->xg_wfd, FIONREAD, &unread) == 0 && unread == 0)
			break;
		if (xg__ms() - t0 > XG_STATIC_WAIT_MS) {
			snprintf(err, errlen, "libxl did not start restoring domain '%s' within %d s", name,
				 XG_STATIC_WAIT_MS / 1000);
			return -ETIMEDOUT;
		}
		usleep(10000);
	}
	uint32_t domid;
	/* The helper may still be applying the policy: give it the moment. */
	for (int i = 0; libxl_name_to_domid(x->ctx, name, &domid); i++) {
		if (i == 500) {
			snprintf(err, errlen, "the restored domain '%s' does not show up", name);
			return -ENOENT;
		}
		usleep(10000);
	}
	x->domid = domid;
	x->have_domain = true;
	x->owns_domain = true; /* ours until COMMIT ran it; a failure destroys it */
	if ((r = xg__lock(x, domid, err, errlen)) < 0)
		return r;
	r = xg__populate(x, rg, h.nranges, err, errlen);
	return r;
}

/* The restore's tail: the state of a suspended guest, then END. libxl
 * finishes the domain (context, event channels, grant entries, xenstore
 * introduction, console and devices) and returns it paused. */
int xen__xg_finish(struct xen_vm *x, const void *tsc, uint32_t tsc_len, const uint64_t (*params)[2], unsigned np,
		   const void *ctx, uint32_t ctx_len)
{
	struct {
		uint32_t count, res;
	} ph = { np, 0 };
	int r = xg__rec(x->xg_wfd, XG_REC_X86_TSC_INFO, tsc, tsc_len, NULL, 0);
	if (!r)
		r = xg__rec(x->xg_wfd, XG_REC_HVM_PARAMS, &ph, sizeof(ph), params, np * 16);
	if (!r)
		r = xg__rec(x->xg_wfd, XG_REC_HVM_CONTEXT, ctx, ctx_len, NULL, 0);
	if (!r)
		r = xg__rec(x->xg_wfd, XG_REC_END, NULL, 0, NULL, 0);
	if (!r)
		r = xg__rec(x->xg_wfd, XL_REC_END, NULL, 0, NULL, 0);
	close(x->xg_wfd);
	x->xg_wfd = -1;
	pthread_join(x->xg_restore, NULL);
	x->xg_restore_started = false;
	if (r < 0)
		return r;
	if (x->xg_restore_rc || x->xg_restore_domid != x->domid)
		return -EIO;
	return 0;
}

void xen__xg_fini(struct xen_vm *x)
{
	if (x->xg_watch_started) {
		pthread_join(x->xg_watch, NULL);
		x->xg_watch_started = false;
	}
	/* A restore cut short: EOF on the pipe fails it, and libxl destroys
	 * the half-built domain itself. */
	if (x->xg_wfd >= 0) {
		close(x->xg_wfd);
		x->xg_wfd = -1;
	}
	if (x->xg_restore_started) {
		pthread_join(x->xg_restore, NULL);
		x->xg_restore_started = false;
		if (x->xg_restore_rc)
			x->domain_gone = true;
	}
	if (x->xg_rfd >= 0) {
		close(x->xg_rfd);
		x->xg_rfd = -1;
	}
	if (x->xg_dc) {
		libxl_domain_config_dispose(x->xg_dc);
		free(x->xg_dc);
		x->xg_dc = NULL;
	}
	xg__undescribe(x);
	if (x->xg_lock_fd >= 0) {
		close(x->xg_lock_fd);
		x->xg_lock_fd = -1;
	}
}
