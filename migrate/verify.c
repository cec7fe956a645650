/*
 * migrate/verify.c - page and chunk digests for --verify.
 */
#include <errno.h>
#include <string.h>
#include "migrate/stream.h"
#include "migrate/verify.h"

static uint64_t verify__mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
	h *= 0xff51afd7ed558ccdull;
	return h ^ (h >> 33);
}

uint64_t migrate_page_digest(const void *page)
{
	const uint64_t *w = page;
	/* Four independent lanes keep the multiply chain off the critical path. */
	uint64_t a = 1, b = 2, c = 3, d = 4;
	for (unsigned i = 0; i < HV_PAGE_SIZE / 8; i += 4) {
		a = (a ^ w[i]) * 0x87c37b91114253d5ull;
		b = (b ^ w[i + 1]) * 0x4cf5ad432745937full;
		c = (c ^ w[i + 2]) * 0x87c37b91114253d5ull;
		d = (d ^ w[i + 3]) * 0x4cf5ad432745937full;
	}
	return verify__mix(verify__mix(a, b), verify__mix(c, d));
}

int migrate_verify_digests(struct hv_vm *vm, uint64_t first, uint32_t count, uint64_t *out)
{
	static const uint64_t zero_page[HV_PAGE_SIZE / 8];
	uint64_t nframes = hv_vm_config(vm)->mem_bytes >> HV_PAGE_SHIFT;
	uint64_t zd = migrate_page_digest(zero_page);
	uint8_t vec[STREAM_VERIFY_CHUNK];

	for (uint32_t k = 0; k < count; k++) {
		uint64_t g0 = (first + k) * STREAM_VERIFY_CHUNK;
		if (g0 >= nframes)
			return -ERANGE;
		uint64_t n = nframes - g0 < STREAM_VERIFY_CHUNK ? nframes - g0 : STREAM_VERIFY_CHUNK;
		int e = hv_mem_present_range(vm, g0, n, vec);
		if (e < 0)
			return e;
		uint64_t h = 0x706d6c7665726679ull;
		for (uint64_t i = 0; i < n; i++)
			h = verify__mix(h, vec[i] ? migrate_page_digest(hv_mem(vm, (g0 + i) << HV_PAGE_SHIFT, HV_PAGE_SIZE))
					      : zd);
		out[k] = h;
	}
	return 0;
}
