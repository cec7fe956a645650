/*
 * vmhost/estimate.c - "estimate MS": the guest's working set and dirty
 * rate, measured with the dirty log armed as for a migration, and nothing
 * migrating (see estimate.h).
 *
 * The log is armed only for the estimate (unless run --harvest-ms keeps
 * it armed anyway, which is refused: that harvester owns it), so the guest
 * pays its write faults only while it is measured; what it paid is part of
 * the answer: the write faults taken (one per frame per harvest interval in
 * which it was written) and the VM host's kernel time per second before
 * and during, which is where a vCPU's faults are handled.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include "compress/compress.h"
#include "migrate/stream.h"
#include "precopy/dirtylog.h"
#include "precopy/wss.h"
#include "util/util.h"
#include "vmhost/estimate.h"

#define BASELINE_MS 200 /* the kernel time per second measured before arming */
#define SAMPLE_PAGES 1024 /* written pages encoded at the end: wire bytes and encoder speed */

const uint64_t vmhost_estimate_window_ns[VMHOST_ESTIMATE_NWIN] = { 100000000ull, 1000000000ull, 10000000000ull };
const char *const vmhost_estimate_window_name[VMHOST_ESTIMATE_NWIN] = { "100ms", "1s", "10s" };

struct vmhost_estimate {
	struct vmhost *r;
	uint64_t ms;
	pthread_t thread;
	int started;
	atomic_int stop;
	uv_async_t done;
	struct precopy_dirtylog *dl;
	struct precopy_wss *wss;
	struct precopy_dirty_set set;
	uint64_t t0, t1;
	uint64_t harvest_cpu_ns;  /* this thread's CPU time */
	double sys_before, sys_during; /* the process's kernel ms per s, less this thread's */
	uint64_t sample[SAMPLE_PAGES]; /* the first written pages seen */
	unsigned nsample;
	uint64_t resident;        /* pages backed on this host: what a first round sends */
	double wire_per_page;     /* a sampled written page on the wire (LZ4 or raw, its entry header) */
	double encode_pps;        /* the sample's encoding speed, one thread */
	int have_vcpu;            /* the log tells vCPUs apart (ring) */
	uint64_t vcpu0[HV_MAX_VCPUS], vcpu1[HV_MAX_VCPUS]; /* each vCPU's log entries at start and end */
	int err;
	char why[200];
};

static uint64_t tv_ns(struct timeval tv) { return (uint64_t)tv.tv_sec * 1000000000ull + (uint64_t)tv.tv_usec * 1000ull; }

/* CPU clocks: the whole process's kernel time, and the calling thread's
 * kernel and total time. */
struct est_cpu {
	uint64_t proc_sys, thr_sys, thr_all;
};

static struct est_cpu est__cpu(void)
{
	struct rusage p, t;
	getrusage(RUSAGE_SELF, &p);
	getrusage(RUSAGE_THREAD, &t);
	return (struct est_cpu){ tv_ns(p.ru_stime), tv_ns(t.ru_stime), tv_ns(t.ru_stime) + tv_ns(t.ru_utime) };
}

/* The process's kernel ms per second from a to b, less this thread's (the
 * harvesting is reported on its own). The clocks are sampled apart and at
 * tick granularity: never below 0. */
static double est__ms_per_s(struct est_cpu a, struct est_cpu b, double secs)
{
	double ns = (double)(b.proc_sys - a.proc_sys) - (double)(b.thr_sys - a.thr_sys);
	return ns > 0 && secs > 0 ? ns / 1e6 / secs : 0;
}

static void est__sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static int est__count(void *opaque, const uint64_t *gfns, size_t n)
{
	(void)gfns;
	*(uint64_t *)opaque += n;
	return 0;
}

/* Pages backed on this host (KVM: mincore over guest memory; a backend
 * without that counts all of memory). */
static uint64_t est__resident(struct hv_vm *vm)
{
	uint64_t res = 0;
	if (hv_mem_present_each(vm, est__count, &res) < 0)
		return hv_vm_config(vm)->mem_bytes >> HV_PAGE_SHIFT;
	return res;
}

/* Encodes the sampled pages as the engine would (zero detection, LZ4 with
 * raw fallback): their size on the wire and the speed of one encoder. */
static void est__encode_sample(struct vmhost_estimate *e)
{
	static uint8_t out[COMPRESS_MAX_PAYLOAD];
	uint64_t bytes = 0, t0 = util_now_ns();
	unsigned n = 0;
	for (unsigned i = 0; i < e->nsample; i++) {
		const void *page = hv_mem(e->r->vm, e->sample[i] << HV_PAGE_SHIFT, HV_PAGE_SIZE);
		size_t len = 0;
		if (!page)
			continue;
		compress_page_encode(page, out, &len, 1);
		bytes += len + STREAM_PAGE_ENTRY_HDR;
		n++;
	}
	uint64_t dt = util_now_ns() - t0;
	e->wire_per_page = n ? (double)bytes / n : HV_PAGE_SIZE + STREAM_PAGE_ENTRY_HDR;
	e->encode_pps = n && dt ? (double)n * 1e9 / (double)dt : 0;
}

static void *est__thread(void *arg)
{
	struct vmhost_estimate *e = arg;
	struct vmhost *r = e->r;
	pthread_setname_np(pthread_self(), "estimate");

	/* What the guest costs the kernel without the log, as a baseline. */
	struct est_cpu c0 = est__cpu();
	uint64_t b0 = util_now_ns();
	est__sleep_ms(BASELINE_MS);
	struct est_cpu c1 = est__cpu();
	e->sys_before = est__ms_per_s(c0, c1, (double)(util_now_ns() - b0) / 1e9);

	struct precopy_dirtylog *dl = NULL;
	int err = precopy_dirtylog_open(r->vm, &dl);
	/* ctl stats reads it from the loop thread. */
	__atomic_store_n(&e->dl, dl, __ATOMIC_RELEASE);
	if (err < 0) {
		e->err = err;
		snprintf(e->why, sizeof(e->why), "starting the %s dirty log: %s", hv_dirty_mode_name(r->cfg.dirty_mode),
			 strerror(-err));
		goto out;
	}
	e->t0 = util_now_ns();
	/* Which vCPUs write: each one's log entries over the estimate (the
	 * ring is per vCPU; a bitmap cannot tell them apart). */
	e->have_vcpu = 1;
	for (unsigned i = 0; i < r->cfg.vcpus; i++)
		if (hv_dirty_vcpu_entries(r->vm, i, &e->vcpu0[i]) < 0)
			e->have_vcpu = 0;
	err = precopy_wss_new(hv_vm_config(r->vm)->mem_bytes >> HV_PAGE_SHIFT, vmhost_estimate_window_ns,
			      VMHOST_ESTIMATE_NWIN, e->t0, &e->wss);
	if (err < 0) {
		e->err = err;
		snprintf(e->why, sizeof(e->why), "no memory for the working-set tables");
		goto out;
	}
	c1 = est__cpu();
	uint64_t end = e->t0 + e->ms * 1000000ull;
	for (;;) {
		uint64_t now = util_now_ns();
		if (atomic_load(&e->stop) || now >= end)
			break;
		uint64_t left_ms = (end - now) / 1000000ull;
		est__sleep_ms(left_ms < VMHOST_ESTIMATE_HARVEST_MS ? (unsigned)left_ms + 1 : VMHOST_ESTIMATE_HARVEST_MS);
		long n = precopy_dirtylog_harvest(e->dl, &e->set);
		if (n < 0) {
			e->err = (int)n;
			snprintf(e->why, sizeof(e->why), "harvesting the dirty log: %s", strerror((int)-n));
			break;
		}
		precopy_wss_add(e->wss, util_now_ns(), e->set.gfns, e->set.n);
		for (size_t i = 0; i < e->set.n && e->nsample < SAMPLE_PAGES; i++)
			e->sample[e->nsample++] = e->set.gfns[i];
	}
	e->t1 = util_now_ns();
	for (unsigned i = 0; i < r->cfg.vcpus && e->have_vcpu; i++)
		if (hv_dirty_vcpu_entries(r->vm, i, &e->vcpu1[i]) < 0)
			e->have_vcpu = 0;
	struct est_cpu c2 = est__cpu();
	e->harvest_cpu_ns = c2.thr_all - c1.thr_all;
	e->sys_during = est__ms_per_s(c1, c2, (double)(e->t1 - e->t0) / 1e9);
	/* After the figures above: neither is part of the guest's cost. */
	e->resident = est__resident(r->vm);
	est__encode_sample(e);
out:
	uv_async_send(&e->done);
	return NULL;
}

static void est__closed(uv_handle_t *h)
{
	struct vmhost_estimate *e = h->data;
	precopy_dirtylog_close(e->dl);
	precopy_wss_free(e->wss);
	precopy_dirty_set_free(&e->set);
	free(e);
}

/* The answer: one JSON line (malloc'd, without '\n'; NULL out of memory). */
static char *est__answer(struct vmhost_estimate *e)
{
	struct vmhost *r = e->r;
	struct json j;
	json_begin_str(&j);
	if (e->err) {
		json_bool(&j, "ok", 0);
		json_str(&j, "error", e->why);
	} else {
		double secs = (double)(e->t1 - e->t0) / 1e9;
		struct precopy_dirtylog_stats st;
		precopy_dirtylog_get_stats(e->dl, &st);
		json_bool(&j, "ok", 1);
		json_str(&j, "name", r->name);
		json_str(&j, "dirty_log", hv_dirty_mode_name(r->cfg.dirty_mode));
		json_u64(&j, "mem_bytes", r->cfg.mem_bytes);
		json_u64(&j, "vcpus", r->cfg.vcpus);
		json_f64(&j, "seconds", secs);
		json_u64(&j, "harvest_ms", VMHOST_ESTIMATE_HARVEST_MS);
		json_u64(&j, "harvests", st.harvests);
		json_u64(&j, "pages_written", precopy_wss_total(e->wss));
		/* Frames handed out, summed over harvests: each was a write fault. */
		json_f64(&j, "dirty_pages_per_s", secs > 0 ? (double)st.frames / secs : 0);
		for (unsigned i = 0; i < VMHOST_ESTIMATE_NWIN; i++) {
			struct precopy_wss_stats ws;
			char k[48];
			precopy_wss_get(e->wss, i, e->t1, &ws);
			snprintf(k, sizeof(k), "wss_%s_windows", vmhost_estimate_window_name[i]);
			json_u64(&j, k, ws.windows);
			if (!ws.windows)
				continue; /* shorter than one window: no figure rather than a wrong one */
			snprintf(k, sizeof(k), "wss_%s_median_pages", vmhost_estimate_window_name[i]);
			json_u64(&j, k, ws.median);
			snprintf(k, sizeof(k), "wss_%s_min_pages", vmhost_estimate_window_name[i]);
			json_u64(&j, k, ws.min);
			snprintf(k, sizeof(k), "wss_%s_max_pages", vmhost_estimate_window_name[i]);
			json_u64(&j, k, ws.max);
		}
		json_u64(&j, "hot_pages", precopy_wss_hot(e->wss, e->t1, 50));
		json_u64(&j, "write_faults", st.frames);
		json_u64(&j, "ring_full_exits", st.ring_full_exits);
		/* The spread over vCPUs: each one's share of the pages written,
		 * as its log entries (a page written by two vCPUs counts for
		 * both). */
		if (e->have_vcpu) {
			uint64_t tot = 0;
			for (unsigned i = 0; i < r->cfg.vcpus; i++)
				tot += e->vcpu1[i] - e->vcpu0[i];
			for (unsigned i = 0; i < r->cfg.vcpus; i++) {
				char k[48];
				uint64_t v = e->vcpu1[i] - e->vcpu0[i];
				snprintf(k, sizeof(k), "vcpu%u_dirty_pages", i);
				json_u64(&j, k, v);
				snprintf(k, sizeof(k), "vcpu%u_dirty_share", i);
				json_f64(&j, k, tot ? (double)v / (double)tot : 0);
			}
		}
		json_f64(&j, "harvest_cpu_ms", (double)e->harvest_cpu_ns / 1e6);
		json_f64(&j, "kernel_ms_per_s_before", e->sys_before);
		json_f64(&j, "kernel_ms_per_s_during", e->sys_during);
		json_u64(&j, "resident_pages", e->resident);
		json_u64(&j, "sampled_pages", e->nsample);
		json_f64(&j, "wire_bytes_per_page", e->wire_per_page);
		json_f64(&j, "encode_pages_per_s", e->encode_pps);
	}
	return json_end_str(&j);
}

/* Loop: the thread finished (or was stopped). Answer, disarm, free. */
static void est__finish(struct vmhost_estimate *e, const char *why)
{
	struct vmhost *r = e->r;
	if (e->started)
		pthread_join(e->thread, NULL);
	e->started = 0;
	if (why && !e->err) {
		e->err = -ECANCELED;
		snprintf(e->why, sizeof(e->why), "%s", why);
	}
	char *a = r->est_client ? est__answer(e) : NULL;
	if (a)
		vmhost_ctl_reply_line(r->est_client, a);
	free(a);
	r->est = NULL;
	r->est_client = NULL;
	/* The log goes with the estimate (est__closed): the guest runs
	 * without its faults again. */
	uv_close((uv_handle_t *)&e->done, est__closed);
}

static void est__done(uv_async_t *a)
{
	struct vmhost_estimate *e = a->data;
	if (e->r->est == e)
		est__finish(e, NULL);
}

void vmhost_estimate_cancel(struct vmhost *r, const char *why)
{
	struct vmhost_estimate *e = r->est;
	if (!e)
		return;
	atomic_store(&e->stop, 1);
	est__finish(e, why);
}

void vmhost_estimate_start(struct vmhost *r, struct ctl_client *c, const char *args, struct json *j)
{
	char err[200] = "";
	char *end = NULL;
	while (*args == ' ')
		args++;
	unsigned long ms = *args ? strtoul(args, &end, 10) : 10000;
	if (*args && (*end || !ms || ms > VMHOST_ESTIMATE_MAX_MS)) {
		snprintf(err, sizeof(err), "estimate: '%s' is not a duration in ms (1..%u)", args, VMHOST_ESTIMATE_MAX_MS);
		goto refuse;
	}
	if (vmhost_log_user_check(r, "nothing to measure with", 0, 0, err, sizeof(err)) < 0)
		goto refuse;
	if (r->paused) {
		snprintf(err, sizeof(err), "'%s' is paused: a paused guest writes nothing", r->name);
		goto refuse;
	}
	struct vmhost_estimate *e = calloc(1, sizeof(*e));
	if (!e) {
		snprintf(err, sizeof(err), "out of memory");
		goto refuse;
	}
	e->r = r;
	e->ms = ms;
	if (uv_async_init(&r->loop, &e->done, est__done) < 0) {
		free(e);
		snprintf(err, sizeof(err), "cannot start the estimate");
		goto refuse;
	}
	e->done.data = e;
	if (pthread_create(&e->thread, NULL, est__thread, e)) {
		uv_close((uv_handle_t *)&e->done, est__closed);
		snprintf(err, sizeof(err), "cannot start the estimate's thread");
		goto refuse;
	}
	e->started = 1;
	r->est = e;
	r->est_client = c;
	j->f = NULL;
	return;
refuse:
	json_bool(j, "ok", 0);
	json_str(j, "error", err);
}

int vmhost_estimate_log_armed(struct vmhost *r)
{
	return r->est && __atomic_load_n(&r->est->dl, __ATOMIC_ACQUIRE) != NULL;
}
