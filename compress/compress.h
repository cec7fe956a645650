/*
 * compress/compress.h - page codecs: zero detection, LZ4, raw fallback.
 *
 * Pure functions on one 4 KiB page; no global state, safe on any thread
 * (the migration engine runs them in worker threads, never on the event
 * loop). Codec ids are part of the wire format (docs/stream.md).
 */
#ifndef PMG_COMPRESS_H
#define PMG_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#define COMPRESS_PAGE_SIZE 4096u

enum compress_codec {
	COMPRESS_ZERO = 0, /* all-zero page: no payload */
	COMPRESS_RAW = 1,  /* payload is the page, exactly 4096 bytes */
	COMPRESS_LZ4 = 2,  /* LZ4 block that decodes to exactly 4096 bytes */
	COMPRESS_CODEC_MAX
};

/* Upper bound of an encoded page's payload (LZ4's worst case is larger
 * than the page, but encode never emits it: it falls back to raw). */
#define COMPRESS_MAX_PAYLOAD COMPRESS_PAGE_SIZE

/* Whether the page is all zeros. page: 4096 bytes, 8-byte aligned. */
int compress_is_zero(const void *page);

/* Encodes page into out (capacity >= COMPRESS_MAX_PAYLOAD) and returns
 * the codec used, with *outlen the payload length. use_lz4 = 0 skips
 * compression (adaptive mode when the link outruns the compressor). LZ4 is
 * kept only when it saves at least 1/8 of the page; otherwise raw. */
enum compress_codec compress_page_encode(const void *page, void *out, size_t *outlen, int use_lz4);

/* Decodes a payload into page (4096 bytes). Validates everything: codec
 * known, raw length exactly 4096, zero length 0, LZ4 payload decoding to
 * exactly 4096 bytes with no read or write past either buffer.
 * Returns 0 or -EINVAL. */
int compress_page_decode(unsigned codec, const void *in, size_t inlen, void *page);

const char *compress_codec_name(unsigned codec);

#endif
