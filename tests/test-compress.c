/*
 * Page codecs: zero pages are detected, compressible pages shrink and come
 * back bit for bit, incompressible pages go raw, and every malformed
 * payload (wrong length, unknown codec, LZ4 that decodes short or long,
 * garbage) is refused. The adaptive choice between LZ4 and raw pages
 * (compress/adapt.c), fed a pipeline whose speed in each mode is known,
 * keeps the faster and follows a change at its next probe.
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
#include "compress/adapt.h"
#include "compress/compress.h"
#include "tests/tap.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* A simulated encoder: each job is 1 MiB of pages and takes ns_on or
 * ns_off by mode; jobs jobs from *t (the clock). Returns the jobs run with
 * LZ4 among them. */
static unsigned adapt_run(struct compress_adapt *a, uint64_t *t, uint64_t *bytes, unsigned jobs, uint64_t ns_on,
			  uint64_t ns_off)
{
	unsigned on = 0;
	for (unsigned i = 0; i < jobs; i++) {
		int lz4 = a->lz4;
		on += (unsigned)lz4;
		*t += lz4 ? ns_on : ns_off;
		*bytes += 1 << 20;
		compress_adapt_job(a, *bytes, *t);
	}
	return on;
}

static void test_adapt(void)
{
	struct compress_adapt a;
	uint64_t t = 1000, bytes = 0;
	const unsigned W = COMPRESS_ADAPT_WINDOW, S = COMPRESS_ADAPT_STEADY;

	/* A slow link: LZ4 halves the bytes, so a job takes half the time. */
	bytes = 0;
	compress_adapt_init(&a, t);
	unsigned on = adapt_run(&a, &t, &bytes, 2 * W, 1000000, 2000000);
	tap_ok(on == W && a.lz4 == 1 && a.probes == 1, "slow link: the probe (one window each way) chooses LZ4");
	on = adapt_run(&a, &t, &bytes, S * W, 1000000, 2000000);
	tap_ok(on == S * W && a.probing == 1, "and keeps it for %u windows, then probes again", S);

	/* A fast link: LZ4 costs more CPU than the bytes it saves. */
	bytes = 0;
	compress_adapt_init(&a, t);
	on = adapt_run(&a, &t, &bytes, 2 * W + S * W, 3000000, 1000000);
	tap_ok(on == W && a.lz4_kept == 0 && a.flips == 0 && a.probing == 1,
	       "fast link: raw after the probe, for %u windows (%u LZ4 jobs)", S, on);

	/* The link gets slower mid-way: the next probe follows. */
	adapt_run(&a, &t, &bytes, 2 * W, 1000000, 3000000);
	tap_ok(a.lz4 == 1 && a.flips == 1 && a.probes == 2, "a change is followed at the next probe (flips %u)",
	       a.flips);
	/* A tie keeps LZ4 (the probe's rule), and no job is lost to the count. */
	bytes = 0;
	compress_adapt_init(&a, t);
	on = adapt_run(&a, &t, &bytes, 2 * W, 1000000, 1000000);
	tap_ok(a.lz4 == 1 && a.rate_on > 0 && a.rate_on == a.rate_off, "equal rates: LZ4 (rates %.4f, %.4f bytes/ns)",
	       a.rate_on, a.rate_off);
}

int main(void)
{
	static uint64_t page[512], back[512];
	static uint8_t out[COMPRESS_MAX_PAYLOAD], big[8192];
	size_t len;

	tap_plan(19);
	memset(page, 0, sizeof(page));
	tap_ok(compress_page_encode(page, out, &len, 1) == COMPRESS_ZERO && len == 0, "zero page -> zero codec");
	page[511] = 1;
	tap_ok(!compress_is_zero(page), "one set bit in the last word is not zero");
	page[511] = 0;
	page[0] = 1ull << 63;
	tap_ok(!compress_is_zero(page), "one set bit in the first word is not zero");

	const char *words = "the dirty ring of the guest frame ";
	for (size_t i = 0; i < sizeof(page); i++)
		((char *)page)[i] = words[i % strlen(words)];
	unsigned c = compress_page_encode(page, out, &len, 1);
	tap_ok(c == COMPRESS_LZ4 && len < 1024, "text page -> lz4, %zu bytes", len);
	tap_ok(compress_page_decode(c, out, len, back) == 0 && !memcmp(page, back, sizeof(page)),
	       "lz4 round trip is exact");
	c = compress_page_encode(page, out, &len, 0);
	tap_ok(c == COMPRESS_RAW && len == 4096, "compression off -> raw");

	for (int i = 0; i < 512; i++)
		page[i] = next();
	c = compress_page_encode(page, out, &len, 1);
	tap_ok(c == COMPRESS_RAW && len == 4096, "random page -> raw fallback");
	tap_ok(compress_page_decode(c, out, len, back) == 0 && !memcmp(page, back, sizeof(page)), "raw round trip");

	tap_ok(compress_page_decode(COMPRESS_RAW, out, 4095, back) == -EINVAL, "raw of 4095 bytes refused");
	tap_ok(compress_page_decode(COMPRESS_ZERO, out, 1, back) == -EINVAL, "zero codec with payload refused");
	tap_ok(compress_page_decode(7, out, 10, back) == -EINVAL, "unknown codec refused");

	/* LZ4 that decodes to 2048 or 8192 bytes instead of a page. */
	memset(big, 'a', sizeof(big));
	int n = LZ4_compress_default((char *)big, (char *)out, 2048, sizeof(out));
	tap_ok(n > 0 && compress_page_decode(COMPRESS_LZ4, out, (size_t)n, back) == -EINVAL,
	       "lz4 decoding to 2048 bytes refused");
	static uint8_t out2[LZ4_COMPRESSBOUND(8192)];
	n = LZ4_compress_default((char *)big, (char *)out2, 8192, sizeof(out2));
	tap_ok(n > 0 && compress_page_decode(COMPRESS_LZ4, out2, (size_t)n, back) == -EINVAL,
	       "lz4 decoding to 8192 bytes refused");
	int bad = 0;
	for (int t = 0; t < 2000; t++) {
		size_t l = 1 + next() % 600;
		for (size_t i = 0; i < l; i++)
			out[i] = (uint8_t)next();
		int r = compress_page_decode(COMPRESS_LZ4, out, l, back);
		bad += r != 0 && r != -EINVAL;
	}
	tap_ok(bad == 0, "2000 random lz4 payloads decoded or refused cleanly");
	test_adapt();
	return tap_done();
}
