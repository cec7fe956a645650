/*
 * bench/content.h - the page contents the guest's memstress writes, for
 * the benchmarks that move pages without a guest (bench/stages.c,
 * bench/pipe.c): text (its sixteen words, which LZ4 halves) or random
 * bytes (which it cannot shrink). Header-only: each benchmark is one file.
 */
#ifndef PMG_BENCH_CONTENT_H
#define PMG_BENCH_CONTENT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Fills pages 4 KiB pages at m, the same bytes on every call. */
static inline void bench_fill_pages(uint8_t *m, size_t pages, int random)
{
	static const char *const words[] = { "migration ", "page ", "dirty ", "ring ", "guest ", "host ", "round ",
					     "the ", "of ", "memory ", "log ", "frame ", "copy ", "and ", "to ", "downtime " };
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < pages; i++) {
		uint8_t *p = m + i * 4096;
		for (unsigned k = 0; k < 4096;) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			if (random) {
				memcpy(p + k, &x, 8);
				k += 8;
				continue;
			}
			const char *w = words[x & 15];
			size_t l = strlen(w) < 4096 - k ? strlen(w) : 4096 - k;
			memcpy(p + k, w, l);
			k += (unsigned)l;
		}
	}
}

#endif
