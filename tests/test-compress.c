/*
 * Page codecs: zero pages are detected, compressible pages shrink and come
 * back bit for bit, incompressible pages go raw, and every malformed
 * payload (wrong length, unknown codec, LZ4 that decodes short or long,
 * garbage) is refused.
 */
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>
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

int main(void)
{
	static uint64_t page[512], back[512];
	static uint8_t out[COMPRESS_MAX_PAYLOAD], big[8192];
	size_t len;

	tap_plan(14);
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
	return tap_done();
}
