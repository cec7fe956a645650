/*
 * The domain description a toolstack's Xen guest travels with (the
 * stream's DOMAIN record, hv/xen-guest.c): what a destination parses from
 * an untrusted source before libxl sees a byte of it. A valid one is
 * taken; each field out of its bounds, ranges out of order, overlapping
 * or outside memory, a page count that does not add up, a JSON that is
 * not one NUL-terminated string, a policy that is not whole entries, and
 * every truncation are refused. No Xen is needed: parsing only.
 * With --seed FILE it writes the valid description to FILE instead (the
 * fuzz corpus's seed: tests/test-fuzz-xen-blob.sh).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "hv/xen-internal.h"
#include "tests/tap.h"

#define NFRAMES 0xff000ull /* a PVH guest's p2m extent */

struct hdr {
	uint32_t magic, version;
	uint32_t json_len, cpuid_len, msr_len, nranges;
	uint32_t xen_major, xen_minor;
	uint64_t pages;
};

static const char json[] = "{\"c_info\":{\"type\":\"pvh\",\"name\":\"lx\"}}";

/* A valid blob: RAM, the ACPI pages, the special pages; 2 CPUID leaves,
 * 1 MSR. */
static size_t build(uint8_t *b, struct hdr *h, uint64_t (*rg)[2])
{
	uint64_t r[3][2] = { { 0, 32768 }, { 0xfc000, 9 }, { 0xfeff8, 8 } };
	memcpy(rg, r, sizeof(r));
	*h = (struct hdr){ .magic = 0x44474d50u, .version = 1, .json_len = sizeof(json),
			   .cpuid_len = 2 * sizeof(xen_cpuid_leaf_t), .msr_len = sizeof(xen_msr_entry_t), .nranges = 3,
			   .xen_major = 4, .xen_minor = 17, .pages = 32768 + 9 + 8 };
	size_t n = 0;
	memcpy(b + n, h, sizeof(*h));
	n += sizeof(*h);
	memcpy(b + n, rg, 3 * 16);
	n += 3 * 16;
	memcpy(b + n, json, sizeof(json));
	n += sizeof(json);
	memset(b + n, 0x11, h->cpuid_len + h->msr_len);
	return n + h->cpuid_len + h->msr_len;
}

int main(int argc, char **argv)
{
	static uint8_t b[4096], m[4096];
	struct hdr h;
	uint64_t rg[3][2];
	size_t len = build(b, &h, rg);
	const size_t off_rg = sizeof(h), off_json = off_rg + 3 * 16;

	/* --seed FILE: the valid description, the fuzz corpus's seed
	 * (tests/test-fuzz-xen-blob.sh). */
	if (argc == 3 && !strcmp(argv[1], "--seed")) {
		FILE *f = fopen(argv[2], "wb");
		return !f || fwrite(b, 1, len, f) != len || fclose(f);
	}

	tap_plan(5);
	tap_ok(xen__xg_check(b, len, NFRAMES) == 0, "a valid description (%zu bytes, 3 ranges) is taken", len);

	/* Every truncation, and a byte too many. */
	int bad = 0;
	for (size_t l = 0; l < len; l++)
		bad += xen__xg_check(b, l, NFRAMES) == 0;
	bad += xen__xg_check(b, len + 1, NFRAMES) == 0;
	tap_ok(!bad, "every truncation and a trailing byte refused (%d taken)", bad);

	/* Header fields out of bounds. */
	struct {
		const char *what;
		size_t off;
		uint32_t v;
	} f[] = {
		{ "magic", 0, 0x44474d51u },	       { "version", 4, 2 },
		{ "json_len 1", 8, 1 },	       { "json_len over 256 KiB", 8, (256u << 10) + 1 },
		{ "cpuid_len not whole leaves", 12, 5 }, { "msr_len not whole entries", 16, 3 },
		{ "cpuid_len over 256 KiB", 12, (256u << 10) + 24 }, { "nranges over 65536", 20, 65537 },
		{ "nranges one more", 20, 4 },
	};
	int taken = 0;
	char which[400] = "";
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		memcpy(m, b, len);
		memcpy(m + f[i].off, &f[i].v, 4);
		if (xen__xg_check(m, len, NFRAMES) == 0) {
			taken++;
			snprintf(which + strlen(which), sizeof(which) - strlen(which), " %s", f[i].what);
		}
	}
	tap_ok(!taken, "each header field out of bounds refused (taken:%s)", taken ? which : " none");

	/* Ranges: empty, out of order, overlapping, past memory, wrapping,
	 * pages not adding up. */
	struct {
		const char *what;
		unsigned idx, word;
		uint64_t v;
	} g[] = {
		{ "empty range", 1, 1, 0 },
		{ "out of order", 1, 0, 100 },
		{ "overlapping", 1, 0, 32767 },
		{ "past memory", 2, 0, NFRAMES - 4 },
		{ "first past memory", 2, 0, NFRAMES + 1 },
		{ "count wraps", 2, 1, UINT64_MAX - 0xfeff0 },
	};
	taken = 0;
	which[0] = 0;
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++) {
		memcpy(m, b, len);
		memcpy(m + off_rg + g[i].idx * 16 + g[i].word * 8, &g[i].v, 8);
		if (xen__xg_check(m, len, NFRAMES) == 0) {
			taken++;
			snprintf(which + strlen(which), sizeof(which) - strlen(which), " %s", g[i].what);
		}
	}
	memcpy(m, b, len);
	uint64_t p = h.pages + 1;
	memcpy(m + offsetof(struct hdr, pages), &p, 8);
	if (xen__xg_check(m, len, NFRAMES) == 0) {
		taken++;
		snprintf(which + strlen(which), sizeof(which) - strlen(which), " pages");
	}
	tap_ok(!taken, "ranges empty, out of order, overlapping, outside memory or not adding up refused (taken:%s)",
	       taken ? which : " none");

	/* The JSON: not NUL-terminated, or a NUL inside. */
	memcpy(m, b, len);
	m[off_json + sizeof(json) - 1] = '}';
	int e1 = xen__xg_check(m, len, NFRAMES);
	memcpy(m, b, len);
	m[off_json + 3] = 0;
	int e2 = xen__xg_check(m, len, NFRAMES);
	tap_ok(e1 < 0 && e2 < 0, "a JSON without its NUL, or with one inside, refused (%d, %d)", e1, e2);
	return tap_done();
}
