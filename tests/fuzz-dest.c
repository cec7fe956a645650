/*
 * libFuzzer target for the destination session (migrate/dest*.c): each
 * input is the byte stream of a whole first connection, fed through
 * migrate_dst_start_feed()/migrate_dst_feed() - no network - into the real
 * session: its phases, record validation, decode workers writing into a
 * real sparse KVM VM (one per vCPU count, created once and reused), the
 * vCPU state loader once a stream is complete (READY), and the failure
 * paths. A stream with no pages, the vCPU state and STATE_DONE(0) is
 * READY at once, so a COMMIT right after it is taken and the guest starts
 * (from memory that holds nothing): that VM is then replaced by a fresh
 * one for the next input.
 *
 * Built and run by tests/test-fuzz-dest.sh:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined ... migrate/dest*.c ...
 * With PMG_FUZZ_SEED=DIR set, it writes seed streams to DIR and exits: a
 * complete migration of a small guest (zero, raw and LZ4 pages over two
 * rounds, the real vCPU state, STATE_DONE), the same with VERIFY records,
 * and one cut short after its first PAGES record.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "compress/compress.h"
#include "migrate/dest.h"
#include "migrate/verify.h"

#define FUZZ_MEM (64ull << 20)

static struct hv_vm *vms[HV_MAX_VCPUS + 1];
static int ended, started;
static unsigned cur_vcpus; /* the VM this input was given */

static int fz__new_vm(unsigned n)
{
	struct hv_vm_config cfg = { .mem_bytes = FUZZ_MEM, .vcpus = n, .dirty_mode = HV_DIRTY_OFF };
	return hv_vm_create("kvm", &cfg, &vms[n]);
}

static int fz__claim(void *opaque, const char *name, char *why, size_t len)
{
	(void)opaque;
	(void)name;
	(void)why;
	(void)len;
	return 0;
}

/* Any valid shape gets the VM with its vCPU count; frames beyond that
 * VM's memory are refused by the session (-ERANGE), as they must be. */
static int fz__create_vm(void *opaque, const struct stream_shape *sh, const void *dom, size_t domlen,
			 struct hv_vm **vm, char *why, size_t len)
{
	(void)opaque, (void)domlen;
	if (dom) { /* a toolstack's Xen guest: a KVM host refuses it, as the agent does */
		snprintf(why, len, "the state is a Xen VM's and this host receives into KVM");
		return -EPROTONOSUPPORT;
	}
	if (sh->vcpus < 1 || sh->vcpus > HV_MAX_VCPUS || !vms[sh->vcpus]) {
		snprintf(why, len, "no VM with %u vCPUs", sh->vcpus);
		return -EINVAL;
	}
	*vm = vms[sh->vcpus];
	cur_vcpus = sh->vcpus;
	return 0;
}

static void fz__running(void *opaque, const char *stats)
{
	(void)opaque;
	(void)stats;
	started = 1; /* a complete migration was fed: its VM is replaced after this input */
}

static void fz__failed(void *opaque, const char *why)
{
	(void)opaque;
	(void)why;
	ended = 1;
}

static const struct migrate_dst_ops fz_ops = {
	.claim = fz__claim,
	.create_vm = fz__create_vm,
	.running = fz__running,
	.failed = fz__failed,
};

/* ---- seeds ---- */

static int fz__write(const char *dir, const char *name, const struct stream_buf *b)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f))
		return -EIO;
	return 0;
}

/* A small guest's memory: zero pages, text that LZ4 shrinks, and noise
 * that it cannot (sent raw). */
static void fz__page(uint64_t gfn, uint8_t *p)
{
	memset(p, 0, HV_PAGE_SIZE);
	if (gfn % 3 == 1)
		for (unsigned i = 0; i < HV_PAGE_SIZE; i++)
			p[i] = "migration page dirty ring "[i % 26];
	else if (gfn % 3 == 2)
		for (unsigned i = 0; i < HV_PAGE_SIZE; i++)
			p[i] = (uint8_t)((gfn * 2654435761u + i * 40503u) >> 7);
}

static int fz__seed_stream(struct stream_buf *b, int verify, int cut)
{
	struct stream_shape sh = { .mem_bytes = FUZZ_MEM, .vcpus = 1, .tsc_khz = 0, .dirty_log = 1 };
	struct stream_join j = { .index = 0, .count = 1 };
	uint8_t page[HV_PAGE_SIZE], enc[COMPRESS_MAX_PAYLOAD];
	uint64_t sent = 0;
	int e = stream_put_hello(b, 0, "fuzz");
	if (!e)
		e = stream_put_shape(b, &sh);
	if (!e)
		e = stream_put_join(b, &j);
	for (unsigned round = 1; !e && round <= 2; round++) {
		size_t mark;
		unsigned n = round == 1 ? 24 : 6; /* round 2: some pages again */
		e = stream_put_pages_begin(b, &mark);
		for (unsigned i = 0; !e && i < n; i++) {
			uint64_t gfn = 256 + i * (round == 1 ? 1 : 4);
			size_t len = 0;
			fz__page(gfn + round, page);
			enum compress_codec c = compress_page_encode(page, enc, &len, 1);
			e = stream_put_page(b, gfn, c, enc, (uint32_t)len);
			/* keep the VM's memory equal to what was sent, for VERIFY */
			memcpy(hv_mem(vms[1], gfn << HV_PAGE_SHIFT, HV_PAGE_SIZE), page, HV_PAGE_SIZE);
			sent++;
		}
		if (!e)
			e = stream_put_pages_end(b, mark);
		if (cut)
			return e;
		struct stream_round_end re = { .round = round, .pages = n, .bytes = b->len, .remaining = 0 };
		if (!e)
			e = stream_put_round_end(b, &re);
	}
	void *blob;
	size_t len;
	if (!e && (e = hv_vcpu_save(vms[1], 0, &blob, &len)) == 0) {
		e = stream_put_vcpu(b, 0, blob, (uint32_t)len);
		free(blob);
	}
	if (!e && verify) {
		uint64_t nchunks = FUZZ_MEM / HV_PAGE_SIZE / STREAM_VERIFY_CHUNK;
		uint64_t *d = calloc(nchunks, sizeof(*d));
		e = d ? migrate_verify_digests(vms[1], 0, (uint32_t)nchunks, d) : -ENOMEM;
		if (!e)
			e = stream_put_verify(b, 0, (uint32_t)nchunks, d);
		free(d);
	}
	if (!e)
		e = stream_put_state_done(b, sent);
	return e;
}

/* The shortest complete migration: no pages, the vCPU state, STATE_DONE(0),
 * COMMIT - taken, the guest starts. */
static int fz__commit_stream(struct stream_buf *b)
{
	struct stream_shape sh = { .mem_bytes = FUZZ_MEM, .vcpus = 1, .tsc_khz = 0, .dirty_log = 1 };
	struct stream_join j = { .index = 0, .count = 1 };
	void *blob;
	size_t len;
	int e = stream_put_hello(b, 0, "fuzz");
	if (!e)
		e = stream_put_shape(b, &sh);
	if (!e)
		e = stream_put_join(b, &j);
	if (!e && (e = hv_vcpu_save(vms[1], 0, &blob, &len)) == 0) {
		e = stream_put_vcpu(b, 0, blob, (uint32_t)len);
		free(blob);
	}
	if (!e)
		e = stream_put_state_done(b, 0);
	if (!e)
		e = stream_put_empty(b, STREAM_COMMIT);
	return e;
}

static int fz__seeds(const char *dir)
{
	struct stream_buf c = { 0 };
	int ce = fz__commit_stream(&c);
	if (!ce)
		ce = fz__write(dir, "commit", &c);
	stream_buf_free(&c);
	if (ce)
		return ce;
	static const char *const names[] = { "complete", "verify", "cut" };
	for (int k = 0; k < 3; k++) {
		struct stream_buf b = { 0 };
		int e = fz__seed_stream(&b, k == 1, k == 2);
		if (!e)
			e = fz__write(dir, names[k], &b);
		stream_buf_free(&b);
		if (e)
			return e;
	}
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	for (unsigned n = 1; n <= HV_MAX_VCPUS; n++) {
		if (fz__new_vm(n) < 0) {
			fprintf(stderr, "fuzz-dest: cannot create a KVM VM with %u vCPUs\n", n);
			exit(1);
		}
	}
	const char *seed = getenv("PMG_FUZZ_SEED");
	if (seed)
		exit(fz__seeds(seed) ? 1 : 0);
	return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	uv_loop_t loop;
	struct migrate_dst *d;
	ended = 0;
	if (uv_loop_init(&loop) < 0)
		abort();
	if (migrate_dst_start_feed(&loop, NULL, &fz_ops, NULL, &d) < 0)
		abort();
	migrate_dst_feed(d, data, size);
	/* The workers' results, then READY (vCPU loads) or a failure; a
	 * memory check runs on the loop's thread pool and ends before free. */
	for (int i = 0; i < 4; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	migrate_dst_free(d);
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) < 0)
		abort();
	if (started) {
		started = 0;
		hv_vm_destroy(vms[cur_vcpus]);
		if (fz__new_vm(cur_vcpus) < 0)
			abort();
	}
	return 0;
}
