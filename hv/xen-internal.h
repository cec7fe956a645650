/*
 * hv/xen-internal.h - the Xen backend's private state, shared by its files
 * (xen.c: domain, memory, pause/stop; xen-ioreq.c: the ioreq server that
 * serves the guest ABI's ports; xen-dirty.c: log-dirty mode and the
 * scheduler-cap throttle).
 *
 * The domain is a Xen PVH domain: no device model, one vCPU (the guest
 * images bring up no application processors under PVH). Its RAM
 * [0, mem_bytes) is mapped into this process once, read-write, so hv_mem()
 * is a plain pointer as with KVM; frames above RAM (Xen's special pages,
 * ACPI tables) belong to the toolstack and are never mapped.
 */
#ifndef PMG_HV_XEN_INTERNAL_H
#define PMG_HV_XEN_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <xenctrl.h>
#include <xenforeignmemory.h>
#include <xendevicemodel.h>
#include <xenevtchn.h>
#include <libxl.h>
#include <xen/hvm/ioreq.h>
#include "hv/guest-io.h"
#include "hv/hv-backend.h"

struct xen_vm;

struct xen_vcpu {
	struct xen_vm *vm;
	unsigned idx;
	xenevtchn_handle *xce;   /* this vCPU's ioreq event channel */
	evtchn_port_t port;      /* local end, bound to the vCPU's vp_eport */
	pthread_t thread;
	bool thread_started;
	bool done;
	bool serving;            /* handling a request now (under vm->lock) */
	struct hv_gio gio;
};

struct xen_vm {
	struct hv_vm *hv;
	xc_interface *xch;
	xenforeignmemory_handle *fmem;
	xendevicemodel_handle *dmod;
	libxl_ctx *ctx;
	xentoollog_logger_stdiostream *log;
	uint32_t domid;
	bool have_domain;    /* domid names a domain we created or attached */
	bool domain_gone;    /* destroyed by someone else: nothing to destroy */
	bool owns_domain;    /* destroy it with the VM: we created it, or attach took it over */
	uint8_t *mem;        /* RAM frames, mapped in one range */
	uint64_t nframes;
	uint8_t *present;    /* per frame: 1 if populated (mapped) */
	uint64_t tsc_khz;

	/* ioreq server (xen-ioreq.c) */
	ioservid_t ioserv;
	bool ioserv_ok;
	xenforeignmemory_resource_handle *iores;
	shared_iopage_t *iopage;
	int wake_fd;         /* eventfd: stop request for the server threads */

	unsigned nvcpus;
	struct xen_vcpu vcpus[HV_MAX_VCPUS];

	/* pause/stop, as in kvm.c: guarded by lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pause_depth;
	bool hold;           /* paused: serve no new request (see xen__pause) */
	bool stop_req;
	bool started;
	unsigned ndone;
	enum hv_stop_reason stop_why;
	int exit_code;
	char stop_detail[160];
	bool stopped_reported;

	/* dirty log (xen-dirty.c) */
	pthread_mutex_t dirty_lock;
	bool dirty_on;
	unsigned long *bitmap;  /* hypercall buffer, bitmap_pages pages */
	size_t bitmap_pages;
	xc_hypercall_buffer_t bitmap_hbuf;
	unsigned throttle_pct;

	/* a toolstack's own guest (xen-guest.c): adopted running on the
	 * source, or restored by libxl on the destination */
	bool xg;             /* this VM is one */
	bool xg_suspending, xg_suspended; /* under lock: the switchover's suspend */
	uint64_t xg_tot_pages; /* under dirty_lock: its page count when the log was armed */
	bool xg_moved;       /* source: it runs elsewhere now, destroy discards it */
	char *xg_json;       /* source: libxl configuration */
	void *xg_cpuid, *xg_msr; /* source: CPU policy, as libxenguest serialises it */
	size_t xg_cpuid_len, xg_msr_len;
	pthread_t xg_watch;
	bool xg_watch_started;
	libxl_domain_config *xg_dc; /* destination: what libxl restores */
	int xg_rfd, xg_wfd;  /* destination: the restore stream's pipe */
	int xg_lock_fd;      /* flock held while this process hosts the domain (xg__lock) */
	pthread_t xg_restore;
	bool xg_restore_started, xg_restore_done; /* done: under lock */
	int xg_restore_rc;
	uint32_t xg_restore_domid;
};

static inline struct xen_vm *xen__vm(struct hv_vm *hv) { return hv->priv; }

/* xen.c */
/* Ends the VM: records why (first reason wins, a crash overrides), pauses
 * the domain and wakes every server thread so it leaves. Any thread. */
void xen__end(struct xen_vm *x, enum hv_stop_reason why, int code, const char *detail);
/* The domain's info into *info: 1 if it exists (getinfolist answers with
 * the next domain when ours is gone, hence the id check), else 0. */
static inline int xen__domain_info(struct xen_vm *x, xc_domaininfo_t *info)
{
	return xc_domain_getinfolist(x->xch, x->domid, 1, info) == 1 && info->domain == x->domid;
}
/* Called by a server thread as it leaves; the last one reports the VM
 * stopped through the guest ops. */
void xen__vcpu_finish(struct xen_vcpu *v);

/* Creates the PVH domain, paused, booting kernel with cmdline, under the
 * name cfg.name (with "--incoming" appended for a migration's destination),
 * maps its RAM and sets up the ioreq server. */
int xen__create_domain(struct xen_vm *x, const char *kernel, const char *cmdline, int incoming, char *err,
		       size_t errlen);

/* xen-state.c */
int xen__vcpu_save(struct hv_vm *vm, unsigned idx, void **blob, size_t *len);
int xen__vcpu_load(struct hv_vm *vm, unsigned idx, const void *blob, size_t len);
int xen__prepare_incoming(struct hv_vm *vm, char *err, size_t errlen);

/* xen-ioreq.c */
/* Creates the ioreq server for the ABI ports, maps its page, binds each
 * vCPU's event channel. The domain must exist and not run yet. */
int xen__ioreq_init(struct xen_vm *x);
/* Starts one server thread per vCPU. */
int xen__ioreq_start(struct xen_vm *x);
/* Joins the server threads (after xen__end), then tears the server down. */
void xen__ioreq_fini(struct xen_vm *x);

/* xen-guest.c */
/* Source: takes the running PVH domain domid as the VM (its whole p2m
 * mapped read-only, frames to move in present[], its libxl configuration
 * and CPU policy read). Sets cfg.mem_bytes. */
int xen__adopt(struct xen_vm *x, uint32_t domid, char *err, size_t errlen);
/* Source: starts watching the adopted domain (it already runs). */
int xen__xg_start(struct xen_vm *x);
/* Source: the switchover stop, the guest's cooperative suspend (libxl's
 * handshake, up to its 60 s). The domain must be paused by us; it is
 * paused again on failure. Returns 0, or -ETIMEDOUT with err set. */
int xen__xg_suspend(struct xen_vm *x, char *err, size_t errlen);
/* Source: runs the guest again: a cancelled suspend, or an unpause. */
int xen__xg_resume(struct xen_vm *x);
/* Whether gfn is a Xen-heap (or broken) frame now: 1, 0 or -errno. */
int xen__xg_is_xtab(struct xen_vm *x, uint64_t gfn);
/* Source: the domain blob for the stream's DOMAIN record (malloc'd). */
int xen__xg_blob(struct xen_vm *x, void **blob, size_t *len);
/* The HVM params the restore's tail carries: fills out (room for
 * xen__xg_nparams() entries) with the non-zero ones. */
int xen__xg_params(struct xen_vm *x, uint64_t (*out)[2], unsigned *n);
unsigned xen__xg_nparams(void);
int xen__xg_param_known(uint64_t index);
/* Checks a domain blob as xen__prepare_restore does before using any of
 * it, for a domain of nframes frames: 0 or -EINVAL. */
int xen__xg_check(const void *blob, size_t len, uint64_t nframes);
/* Destination: libxl restores the domain the blob describes; returns once
 * it exists, populated and mapped, paused, waiting for its state. */
int xen__prepare_restore(struct hv_vm *vm, const void *blob, size_t len, char *err, size_t errlen);
/* Destination: writes the restore's tail and waits for libxl to finish
 * the domain (paused). 0 or -errno. */
int xen__xg_finish(struct xen_vm *x, const void *tsc, uint32_t tsc_len, const uint64_t (*params)[2], unsigned np,
		   const void *ctx, uint32_t ctx_len);
/* Joins the threads, closes the pipe (a restore cut short fails and
 * libxl destroys its domain), frees the rest. */
void xen__xg_fini(struct xen_vm *x);

/* xen-dirty.c */
int xen__dirty_start(struct hv_vm *vm);
int xen__dirty_collect(struct hv_vm *vm, void (*emit)(void *, uint64_t), void *opaque);
int xen__dirty_stop(struct hv_vm *vm);
void xen__dirty_fini(struct xen_vm *x);
int xen__throttle(struct hv_vm *vm, unsigned idx, unsigned pct);

#endif
