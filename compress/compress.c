/*
 * compress/compress.c - see compress.h.
 */
#include <errno.h>
#include <lz4.h>
#include <string.h>
#include "compress/compress.h"

int compress_is_zero(const void *page)
{
	const uint64_t *p = page;
	/* OR a cache line at a time: branch once per 64 bytes. */
	for (size_t i = 0; i < COMPRESS_PAGE_SIZE / 8; i += 8) {
		if (p[i] | p[i + 1] | p[i + 2] | p[i + 3] | p[i + 4] | p[i + 5] | p[i + 6] | p[i + 7])
			return 0;
	}
	return 1;
}

enum compress_codec compress_page_encode(const void *page, void *out, size_t *outlen, int use_lz4)
{
	if (compress_is_zero(page)) {
		*outlen = 0;
		return COMPRESS_ZERO;
	}
	if (use_lz4) {
		/* Capacity one eighth short of a page: LZ4 gives up as soon as
		 * it can't save that much, which is also cheaper. */
		int n = LZ4_compress_default(page, out, (int)COMPRESS_PAGE_SIZE, (int)(COMPRESS_PAGE_SIZE * 7 / 8));
		if (n > 0) {
			*outlen = (size_t)n;
			return COMPRESS_LZ4;
		}
	}
	memcpy(out, page, COMPRESS_PAGE_SIZE);
	*outlen = COMPRESS_PAGE_SIZE;
	return COMPRESS_RAW;
}

int compress_page_decode(unsigned codec, const void *in, size_t inlen, void *page)
{
	switch (codec) {
	case COMPRESS_ZERO:
		if (inlen != 0)
			return -EINVAL;
		memset(page, 0, COMPRESS_PAGE_SIZE);
		return 0;
	case COMPRESS_RAW:
		if (inlen != COMPRESS_PAGE_SIZE)
			return -EINVAL;
		memcpy(page, in, COMPRESS_PAGE_SIZE);
		return 0;
	case COMPRESS_LZ4: {
		if (inlen == 0 || inlen > COMPRESS_MAX_PAYLOAD)
			return -EINVAL;
		/* _safe never reads past inlen or writes past the page; the
		 * result must fill the page exactly. */
		int n = LZ4_decompress_safe(in, page, (int)inlen, (int)COMPRESS_PAGE_SIZE);
		return n == (int)COMPRESS_PAGE_SIZE ? 0 : -EINVAL;
	}
	default:
		return -EINVAL;
	}
}

const char *compress_codec_name(unsigned codec)
{
	switch (codec) {
	case COMPRESS_ZERO: return "zero";
	case COMPRESS_RAW: return "raw";
	case COMPRESS_LZ4: return "lz4";
	default: return "unknown";
	}
}
