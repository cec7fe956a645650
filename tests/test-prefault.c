/*
 * The destination's prefaulter populates exactly the pages a PAGES record
 * will write and nothing else: the runs of non-zero pages become resident
 * before any decoder writes them, zero pages and the memory around them
 * stay untouched (a sparse guest stays sparse), their content is not
 * changed, and a malformed record populates nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "compress/compress.h"
#include "hv/hv.h"
#include "migrate/prefault.h"
#include "migrate/stream.h"
#include "tests/tap.h"

#define MEM (64ull << 20)
#define NFRAMES (MEM >> 12)
#define REGION 512 /* pages per 2 MiB */

static uint8_t page[4096];

/* A PAGES record: raw pages at gfns[], zero pages at zeros[]. */
static int build(struct stream_buf *b, const uint64_t *gfns, size_t n, const uint64_t *zeros, size_t nz)
{
	size_t mark;
	int e = stream_put_pages_begin(b, &mark);
	for (size_t i = 0; !e && i < n; i++)
		e = stream_put_page(b, gfns[i], COMPRESS_RAW, page, sizeof(page));
	for (size_t i = 0; !e && i < nz; i++)
		e = stream_put_page(b, zeros[i], COMPRESS_ZERO, NULL, 0);
	return e ? e : stream_put_pages_end(b, mark);
}

static struct stream_record rec_of(const struct stream_buf *b)
{
	return (struct stream_record){ .type = STREAM_PAGES, .len = (uint32_t)(b->len - STREAM_HDR_SIZE),
				       .payload = b->p + STREAM_HDR_SIZE };
}

/* Waits (bounded) for the prefaulter to have populated want bytes. */
static uint64_t wait_bytes(struct prefault *p, uint64_t want)
{
	for (int i = 0; i < 500 && prefault_bytes(p) < want; i++)
		usleep(10000);
	return prefault_bytes(p);
}

static unsigned present(struct hv_vm *vm, uint64_t gfn, uint64_t n)
{
	uint8_t vec[REGION * 4];
	unsigned k = 0;
	if (n > sizeof(vec) || hv_mem_present_range(vm, gfn, n, vec) < 0)
		return ~0u;
	for (uint64_t i = 0; i < n; i++)
		k += vec[i] & 1;
	return k;
}

int main(void)
{
	if (access("/dev/kvm", R_OK | W_OK) < 0) {
		tap_skip_all("/dev/kvm not usable: no VM memory to prefault");
		return 0;
	}
	tap_plan(8);
	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 7 + 1);
	/* 4 KiB pages: residency is then exactly what was populated. */
	struct hv_vm_config cfg = { .mem_bytes = MEM, .vcpus = 1, .dirty_mode = HV_DIRTY_OFF };
	struct hv_vm *vm;
	int e = hv_vm_create("kvm", &cfg, &vm);
	if (e < 0) {
		tap_ok(0, "KVM VM created (%s)", strerror(-e));
		return 1;
	}
	struct prefault *p = NULL;
	e = prefault_start(vm, NFRAMES, &p);
	tap_ok(e == 0 && p, "prefaulter started (%d)", e);
	if (!p)
		return 1;

	/* Region 2: a run of 16 raw pages then 4 zero pages. Region 5: two
	 * separate raw pages. Region 9: zero pages only. */
	uint64_t raw[18], zeros[8];
	for (unsigned i = 0; i < 16; i++)
		raw[i] = 2 * REGION + 100 + i;
	raw[16] = 5 * REGION + 3;
	raw[17] = 5 * REGION + 300;
	for (unsigned i = 0; i < 4; i++)
		zeros[i] = 2 * REGION + 116 + i, zeros[4 + i] = 9 * REGION + i;
	tap_ok(present(vm, 0, REGION * 4) == 0 && present(vm, 4 * REGION, REGION * 4) == 0 &&
		       present(vm, 8 * REGION, REGION * 2) == 0,
	       "guest memory starts untouched");

	struct stream_buf b = { 0 };
	if (build(&b, raw, 18, zeros, 8) < 0)
		return 1;
	struct stream_record rec = rec_of(&b);
	prefault_pages(p, &rec);
	uint64_t got = wait_bytes(p, 18 * 4096);
	tap_ok(got == 18 * 4096, "the record's 18 non-zero pages were populated: %llu bytes", (unsigned long long)got);
	tap_ok(present(vm, 2 * REGION + 100, 16) == 16 && present(vm, 5 * REGION + 3, 1) == 1 &&
		       present(vm, 5 * REGION + 300, 1) == 1,
	       "each of them is resident (runs of 16, 1 and 1)");
	tap_ok(present(vm, 2 * REGION, 100) == 0 && present(vm, 2 * REGION + 116, REGION - 116) == 0 &&
		       present(vm, 9 * REGION, REGION) == 0 && present(vm, 5 * REGION + 4, 296) == 0,
	       "zero pages and the pages around the runs stay untouched (%u, %u, %u resident)",
	       present(vm, 2 * REGION, 100), present(vm, 2 * REGION + 116, REGION - 116), present(vm, 9 * REGION, REGION));
	const uint8_t *m = hv_mem(vm, (2 * REGION + 100) << HV_PAGE_SHIFT, 16 * 4096);
	int zero = 1;
	for (size_t i = 0; m && i < 16 * 4096; i++)
		zero &= m[i] == 0;
	tap_ok(m && zero, "populating changed no content (the pages read zero until a decoder writes them)");

	/* A record with a frame beyond memory is refused as a whole. */
	uint64_t bad[2] = { 12 * REGION, NFRAMES + 5 };
	stream_buf_free(&b);
	memset(&b, 0, sizeof(b));
	if (build(&b, bad, 2, NULL, 0) < 0)
		return 1;
	rec = rec_of(&b);
	prefault_pages(p, &rec);
	usleep(100000);
	tap_ok(present(vm, 12 * REGION, 1) == 0 && prefault_bytes(p) == 18 * 4096,
	       "a malformed record (a frame outside memory) populates nothing");

	/* Many records at once: bounded, none lost while the ring has room. */
	uint64_t run[256];
	uint64_t want = prefault_bytes(p);
	for (unsigned r = 0; r < 8; r++) {
		for (unsigned i = 0; i < 256; i++)
			run[i] = (16 + r) * REGION + i;
		stream_buf_free(&b);
		memset(&b, 0, sizeof(b));
		if (build(&b, run, 256, NULL, 0) < 0)
			return 1;
		rec = rec_of(&b);
		prefault_pages(p, &rec);
		want += 256 * 4096;
	}
	got = wait_bytes(p, want);
	unsigned res = 0;
	for (unsigned r = 0; r < 8; r++)
		res += present(vm, (16 + r) * REGION, 256);
	tap_ok(got == want && res == 8 * 256, "8 full records: %u of %u pages resident", res, 8 * 256);
	stream_buf_free(&b);
	prefault_stop(p);
	hv_vm_destroy(vm);
	return tap_done();
}
