/*
 * libFuzzer target for the destination's parsing of a toolstack's Xen
 * domain description (the stream's DOMAIN record: xen__xg_check, what
 * xen__prepare_restore runs before using any of it). Built and run by
 * tests/test-fuzz-xen-blob.sh, seeded with a valid description
 * (tests/test-xen-blob --seed).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "hv/xen-internal.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	/* A copy of exactly size bytes: ASan sees any read past it. */
	uint8_t *b = malloc(size ? size : 1);
	if (!b)
		return 0;
	memcpy(b, data, size);
	xen__xg_check(b, size, 0xff000);
	free(b);
	return 0;
}
