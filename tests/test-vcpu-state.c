/*
 * vCPU state round trip: pause a guest mid-run, save every vCPU, copy its
 * memory into a fresh KVM VM in another process, load the state there and
 * let it finish. It must end with the digest of an undisturbed run, its
 * TSC must never go backwards, and the gap it observes must cover the time
 * it spent "in transit" (the TSC advanced by real time). The source,
 * resumed, must finish correctly too. Malformed state blobs are refused.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "tests/guest-run.h"
#include "tests/tap.h"

#define TRANSIT_MS 150

struct child_result {
	int rc;
	struct pmg_report rep;
	int load_rc;
};

static int restore_in_child(const struct hv_vm_config *cfg, struct hv_vm *src, void **blobs, size_t *lens,
			    struct child_result *out)
{
	struct guest_run g = { 0 };
	memset(out, 0, sizeof(*out));
	out->rc = guest_run_create_empty(&g, cfg);
	if (out->rc < 0)
		return out->rc;
	/* Only pages the source ever touched: the restored VM stays sparse. */
	uint64_t npages = cfg->mem_bytes >> HV_PAGE_SHIFT;
	for (uint64_t p = 0; p < npages; p++) {
		if (hv_mem_page_present(src, p) == 1)
			memcpy(hv_mem(g.vm, p << HV_PAGE_SHIFT, HV_PAGE_SIZE), hv_mem(src, p << HV_PAGE_SHIFT, HV_PAGE_SIZE),
			       HV_PAGE_SIZE);
	}
	usleep(TRANSIT_MS * 1000);
	for (unsigned i = 0; i < cfg->vcpus; i++) {
		out->load_rc = hv_vcpu_load(g.vm, i, blobs[i], lens[i]);
		if (out->load_rc < 0)
			return out->load_rc;
	}
	out->rc = hv_vm_start(g.vm);
	if (!out->rc)
		out->rc = guest_run_wait(&g);
	out->rep = g.report;
	guest_run_destroy(&g);
	return out->rc;
}

static void round_trip(const char *name, unsigned vcpus, const char *args)
{
	struct hv_vm_config cfg = { .mem_bytes = 64ull << 20, .vcpus = vcpus, .dirty_mode = HV_DIRTY_OFF };
	struct pmg_report base = { 0 };
	struct guest_run g = { 0 };
	char err[256];
	void *blobs[HV_MAX_VCPUS] = { 0 };
	size_t lens[HV_MAX_VCPUS] = { 0 };
	int pfd[2];

	int rb = guest_run_once(&cfg, guest_image(name), args, &base);
	tap_ok(!rb, "%s/%u vCPU: undisturbed run digest %016llx", name, vcpus, (unsigned long long)base.digest);

	int r = guest_run_create(&g, &cfg, guest_image(name), args, err, sizeof(err));
	if (r < 0) {
		tap_ok(0, "boot: %s", err);
		return;
	}
	hv_vm_start(g.vm);
	usleep(250 * 1000);
	hv_vm_pause(g.vm);
	int saved = 0;
	for (unsigned i = 0; i < vcpus; i++)
		saved += hv_vcpu_save(g.vm, i, &blobs[i], &lens[i]) == 0;
	tap_ok(saved == (int)vcpus && !g.stopped, "%s: paused mid-run and saved %u vCPU state(s) (%zu bytes)", name,
	       vcpus, lens[0]);

	if (pipe(pfd) < 0)
		abort();
	pid_t pid = fork();
	if (pid == 0) {
		struct child_result cr;
		close(pfd[0]);
		restore_in_child(&cfg, g.vm, blobs, lens, &cr);
		if (write(pfd[1], &cr, sizeof(cr)) != sizeof(cr))
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	/* The source carries on as if nothing happened. */
	hv_vm_resume(g.vm);
	int rs = guest_run_wait(&g);
	tap_ok(!rs && g.report.digest == base.digest && g.report.tsc_backwards == 0,
	       "%s: resumed source finishes with the same digest", name);

	struct child_result cr;
	memset(&cr, 0, sizeof(cr));
	ssize_t n = read(pfd[0], &cr, sizeof(cr));
	int st = 0;
	waitpid(pid, &st, 0);
	close(pfd[0]);
	double stall_ms = cr.rep.tsc_khz ? (double)cr.rep.max_stall_tsc / (double)cr.rep.tsc_khz : 0;
	tap_ok(n == sizeof(cr) && cr.load_rc == 0 && cr.rc == 0 && cr.rep.digest == base.digest,
	       "%s: restored in another process, same digest (%016llx, load %d, run %d)", name,
	       (unsigned long long)cr.rep.digest, cr.load_rc, cr.rc);
	tap_ok(n == sizeof(cr) && cr.rep.tsc_backwards == 0, "%s: restored guest's TSC never went backwards", name);
	tap_ok(n == sizeof(cr) && stall_ms >= TRANSIT_MS,
	       "%s: restored guest saw the %d ms in transit (max stall %.1f ms): TSC follows real time", name,
	       TRANSIT_MS, stall_ms);

	/* Hostile blobs are refused before they touch a vCPU. */
	if (vcpus == 1 && lens[0] > 64) {
		struct guest_run h = { 0 };
		guest_run_create_empty(&h, &cfg);
		uint8_t *bad = malloc(lens[0]);
		memcpy(bad, blobs[0], lens[0]);
		int t1 = hv_vcpu_load(h.vm, 0, bad, lens[0] - 1);
		bad[0] ^= 0xff;
		int t2 = hv_vcpu_load(h.vm, 0, bad, lens[0]);
		bad[0] ^= 0xff;
		/* A section length pointing past the end. */
		uint32_t huge = 0x7fffffff;
		memcpy(bad + 32 + 4, &huge, 4);
		int t3 = hv_vcpu_load(h.vm, 0, bad, lens[0]);
		tap_ok(t1 == -EINVAL && t2 == -EINVAL && t3 == -EINVAL,
		       "malformed state refused: truncated %d, bad magic %d, bad length %d", t1, t2, t3);
		free(bad);
		guest_run_destroy(&h);
	}
	for (unsigned i = 0; i < vcpus; i++)
		free(blobs[i]);
	guest_run_destroy(&g);
}

int main(void)
{
	tap_require_kvm();
	tap_plan(6 + 7);
	round_trip("memstress", 1, "seed=3 ws=16M rate=16 ops=12288 dist=zipf");
	round_trip("kvstore", 2, "seed=4 data=8M ops=600000 rate=600000");
	return tap_done();
}
