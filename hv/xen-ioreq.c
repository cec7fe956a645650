/*
 * hv/xen-ioreq.c - the device model of a PVH domain that has none: an
 * ioreq server (libxendevicemodel) for the guest ABI's ports (console, exit,
 * hypercall; guest/abi.h), so the project's guest images run under Xen
 * unchanged and report exactly as under KVM.
 *
 * One thread per vCPU waits on that vCPU's ioreq event channel, serves the
 * request through hv/guest-io.c and answers it. A PMG_HC_SLEEP or a
 * barrier blocks only that thread, as it blocks a vCPU thread under KVM.
 * vCPU 0's thread also watches the domain every WATCH_MS: a domain that
 * shut down (a triple fault is a reboot request) or vanished (`xl destroy`)
 * ends the VM as a crash, because nothing else would tell us.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "hv/xen-internal.h" /* before Xen's public headers: they need xenctrl's types */
#include <xen/hvm/dm_op.h>
#include <xen/memory.h>

#define WATCH_MS 200

static const uint16_t xen__ports[][2] = {
	{ PMG_PORT_CONSOLE, PMG_PORT_CONSOLE + 7 },
	{ PMG_PORT_EXIT, PMG_PORT_EXIT + 3 },
	{ PMG_PORT_HCALL, PMG_PORT_HCALL + 3 },
};

static void xen__gio_sleep(struct hv_gio *g, uint64_t us)
{
	struct xen_vcpu *v = g->opaque;
	struct xen_vm *x = v->vm;
	struct timespec ts;

	hv_gio_sleep_deadline(us, &ts);
	pthread_mutex_lock(&x->lock);
	/* A pause (hold) or stop ends the sleep early; the guest re-checks time. */
	while (!x->hold && !x->stop_req)
		if (pthread_cond_timedwait(&x->cond, &x->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&x->lock);
}

int xen__ioreq_init(struct xen_vm *x)
{
	int r;

	if (xendevicemodel_create_ioreq_server(x->dmod, x->domid, HVM_IOREQSRV_BUFIOREQ_OFF, &x->ioserv))
		return errno ? -errno : -EIO;
	x->ioserv_ok = true;
	for (unsigned i = 0; i < sizeof(xen__ports) / sizeof(xen__ports[0]); i++)
		if (xendevicemodel_map_io_range_to_ioreq_server(x->dmod, x->domid, x->ioserv, 0, xen__ports[i][0],
								xen__ports[i][1]))
			return errno ? -errno : -EIO;
	void *addr = NULL;
	x->iores = xenforeignmemory_map_resource(x->fmem, x->domid, XENMEM_resource_ioreq_server, x->ioserv,
						 XENMEM_resource_ioreq_server_frame_ioreq(0), 1, &addr,
						 PROT_READ | PROT_WRITE, 0);
	if (!x->iores)
		return errno ? -errno : -EIO;
	x->iopage = addr;
	/* The event channels exist once the server is enabled. */
	if (xendevicemodel_set_ioreq_server_state(x->dmod, x->domid, x->ioserv, 1))
		return errno ? -errno : -EIO;
	for (unsigned i = 0; i < x->nvcpus; i++) {
		struct xen_vcpu *v = &x->vcpus[i];
		v->vm = x;
		v->idx = i;
		v->gio = (struct hv_gio){ .vm = x->hv, .idx = i, .sleep = xen__gio_sleep, .opaque = v };
		v->xce = xenevtchn_open(NULL, 0);
		if (!v->xce)
			return errno ? -errno : -EIO;
		r = xenevtchn_bind_interdomain(v->xce, x->domid, x->iopage->vcpu_ioreq[i].vp_eport);
		if (r < 0)
			return errno ? -errno : -EIO;
		v->port = (evtchn_port_t)r;
	}
	return 0;
}

/* Reads the guest buffer of a string OUT (rep outs) element by element. */
static int xen__pio_write(struct xen_vcpu *v, const ioreq_t *rq, char *why, size_t whylen)
{
	struct xen_vm *x = v->vm;
	int code = 0;

	for (uint32_t i = 0; i < (rq->count ? rq->count : 1); i++) {
		uint32_t val = 0;
		if (rq->data_is_ptr) {
			int64_t step = rq->df ? -(int64_t)rq->size : (int64_t)rq->size;
			const void *p = hv_mem(x->hv, rq->data + (uint64_t)(step * i), rq->size);
			if (!p || rq->size > 4) {
				snprintf(why, whylen, "string OUT to port 0x%x from outside guest memory",
					 (unsigned)rq->addr);
				return -EFAULT;
			}
			memcpy(&val, p, rq->size);
		} else {
			val = (uint32_t)rq->data;
			if (rq->size < 4)
				val &= (1u << (8 * rq->size)) - 1;
		}
		int r = hv_gio_out(&v->gio, (uint16_t)rq->addr, val, &code, why, whylen);
		if (r == HV_GIO_EXIT)
			x->exit_code = code;
		if (r != HV_GIO_CONTINUE)
			return r;
	}
	return HV_GIO_CONTINUE;
}

/* Serves the vCPU's pending request, if any. Returns HV_GIO_* or -errno;
 * the request is answered only for HV_GIO_CONTINUE. */
static int xen__serve(struct xen_vcpu *v, char *why, size_t whylen)
{
	struct xen_vm *x = v->vm;
	ioreq_t *slot = &x->iopage->vcpu_ioreq[v->idx];
	int r = HV_GIO_CONTINUE;

	if (slot->state != STATE_IOREQ_READY)
		return HV_GIO_CONTINUE;
	__sync_synchronize(); /* read the request only after seeing READY */
	ioreq_t rq = *slot;
	if (rq.type == IOREQ_TYPE_PIO && rq.dir == IOREQ_WRITE) {
		r = xen__pio_write(v, &rq, why, whylen);
	} else if (rq.dir == IOREQ_READ) {
		/* Reads return all-ones, like an empty ISA bus (and KVM's VMM). */
		if (!rq.data_is_ptr) {
			slot->data = ~0ull;
		} else {
			uint64_t n = (uint64_t)rq.size * (rq.count ? rq.count : 1);
			uint64_t at = rq.df ? rq.data - n + rq.size : rq.data;
			void *p = hv_mem(x->hv, at, n);
			if (p)
				memset(p, 0xff, n);
		}
	}
	if (r != HV_GIO_CONTINUE)
		return r;
	__sync_synchronize(); /* the answer is complete before the state says so */
	slot->state = STATE_IORESP_READY;
	xenevtchn_notify(v->xce, v->port);
	return HV_GIO_CONTINUE;
}

/* vCPU 0's watch: ends the VM if the domain shut down or vanished. */
static void xen__watch(struct xen_vm *x)
{
	static const char *const reasons[] = { "poweroff", "reboot (a triple fault)", "suspend", "crash",
					       "watchdog", "soft reset" };
	xc_domaininfo_t info;
	char why[256];

	int found = xen__domain_info(x, &info);
	if (found && !(info.flags & (XEN_DOMINF_shutdown | XEN_DOMINF_dying)))
		return;
	if (!found || (info.flags & XEN_DOMINF_dying)) {
		x->domain_gone = true;
		snprintf(why, sizeof(why), "Xen domain %u was destroyed from outside", x->domid);
	} else {
		unsigned sr = (info.flags >> XEN_DOMINF_shutdownshift) & XEN_DOMINF_shutdownmask;
		int w = snprintf(why, sizeof(why), "Xen domain %u shut down: %s", x->domid,
				 sr < sizeof(reasons) / sizeof(reasons[0]) ? reasons[sr] : "unknown reason");
		/* The domain is kept (on_* = preserve): where the vCPU stood
		 * says which guest code died, as the KVM backend reports. */
		struct hvm_hw_cpu c;
		if ((sr == SHUTDOWN_reboot || sr == SHUTDOWN_crash) && w > 0 && (size_t)w < sizeof(why) &&
		    xc_domain_hvm_getcontext_partial(x->xch, x->domid, HVM_SAVE_CODE(CPU), 0, &c, sizeof(c)) == 0)
			snprintf(why + w, sizeof(why) - (size_t)w, " (rip=0x%llx rsp=0x%llx rflags=0x%llx cs=0x%x cr2=0x%llx)",
				 (unsigned long long)c.rip, (unsigned long long)c.rsp, (unsigned long long)c.rflags,
				 c.cs_sel, (unsigned long long)c.cr2);
	}
	xen__end(x, HV_STOP_CRASH, -1, why);
}

static void *xen__server_thread(void *arg)
{
	struct xen_vcpu *v = arg;
	struct xen_vm *x = v->vm;
	char name[16], why[160] = "";

	snprintf(name, sizeof(name), "ioreq%u", v->idx);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		pthread_mutex_lock(&x->lock);
		/* Held (xen__pause): leave the request pending. vCPU 0 keeps
		 * watching the domain meanwhile. */
		while (x->hold && !x->stop_req) {
			struct timespec ts;
			hv_gio_sleep_deadline(WATCH_MS * 1000, &ts);
			if (pthread_cond_timedwait(&x->cond, &x->lock, &ts) == ETIMEDOUT && v->idx == 0) {
				pthread_mutex_unlock(&x->lock);
				xen__watch(x);
				pthread_mutex_lock(&x->lock);
			}
		}
		bool stop = x->stop_req;
		v->serving = !stop;
		pthread_mutex_unlock(&x->lock);
		if (stop)
			break;
		int r = xen__serve(v, why, sizeof(why));
		pthread_mutex_lock(&x->lock);
		v->serving = false;
		pthread_cond_broadcast(&x->cond);
		pthread_mutex_unlock(&x->lock);
		if (r < 0) {
			xen__end(x, HV_STOP_CRASH, -1, why);
			break;
		}
		if (r == HV_GIO_EXIT) {
			xen__end(x, HV_STOP_EXIT, x->exit_code, why);
			break;
		}
		if (r == HV_GIO_VCPU_DONE) {
			/* Left unanswered: the vCPU stays blocked in its OUT,
			 * out of the guest, until the VM stops. */
			pthread_mutex_lock(&x->lock);
			while (!x->stop_req)
				pthread_cond_wait(&x->cond, &x->lock);
			pthread_mutex_unlock(&x->lock);
			break;
		}
		struct pollfd pf[2] = {
			{ .fd = xenevtchn_fd(v->xce), .events = POLLIN },
			{ .fd = x->wake_fd, .events = POLLIN },
		};
		int n = poll(pf, 2, v->idx == 0 ? WATCH_MS : -1);
		if (n < 0 && errno != EINTR) {
			snprintf(why, sizeof(why), "waiting for vCPU %u's ioreqs: %s", v->idx, strerror(errno));
			xen__end(x, HV_STOP_CRASH, -1, why);
			break;
		}
		if (n > 0 && (pf[0].revents & POLLIN)) {
			xenevtchn_port_or_error_t p = xenevtchn_pending(v->xce);
			if (p >= 0)
				xenevtchn_unmask(v->xce, (evtchn_port_t)p);
		}
		if (n == 0 && v->idx == 0)
			xen__watch(x);
	}
	xen__vcpu_finish(v);
	return NULL;
}

int xen__ioreq_start(struct xen_vm *x)
{
	for (unsigned i = 0; i < x->nvcpus; i++) {
		int r = -pthread_create(&x->vcpus[i].thread, NULL, xen__server_thread, &x->vcpus[i]);
		if (r) {
			xen__end(x, HV_STOP_CRASH, -1, "could not start the ioreq server threads");
			return r;
		}
		x->vcpus[i].thread_started = true;
	}
	return 0;
}

void xen__ioreq_fini(struct xen_vm *x)
{
	for (unsigned i = 0; i < x->nvcpus; i++) {
		struct xen_vcpu *v = &x->vcpus[i];
		if (v->thread_started) {
			pthread_join(v->thread, NULL);
			v->thread_started = false;
		}
		if (v->xce) {
			xenevtchn_unbind(v->xce, v->port);
			xenevtchn_close(v->xce);
			v->xce = NULL;
		}
	}
	if (x->iores) {
		xenforeignmemory_unmap_resource(x->fmem, x->iores);
		x->iores = NULL;
		x->iopage = NULL;
	}
	if (x->ioserv_ok && x->have_domain) {
		xendevicemodel_destroy_ioreq_server(x->dmod, x->domid, x->ioserv);
		x->ioserv_ok = false;
	}
}
