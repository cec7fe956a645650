/*
 * bench/fresh-touch.c - the floor under moving incompressible memory on
 * this machine: how long it takes a plain C program to write the same
 * bytes a migration's destination writes (random, page by page) into
 * memory it has just mapped, as the destination's guest memory is.
 *
 * usage: bench/fresh-touch [MIB [THREADS [ROUNDS]]]   (default 1024 1 2)
 *
 * Maps MIB MiB anonymous memory with transparent huge pages (as the
 * destination's guest memory), has THREADS threads each copy a 4 KiB
 * random page into every page of its share, and prints one line per
 * round: the first round touches memory the process has never used (what
 * a destination does), the later rounds write the same, now resident,
 * memory again (the copy alone). Output: "round R: S s, M MB/s".
 */

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct share {
	uint8_t *base;
	size_t len;
	const uint8_t *src; /* 64 random pages, cycled */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *fill(void *arg)
{
	struct share *s = arg;
	for (size_t off = 0, i = 0; off < s->len; off += 4096, i++)
		memcpy(s->base + off, s->src + (i % 64) * 4096, 4096);
	return NULL;
}

int main(int argc, char **argv)
{
	unsigned long mib = argc > 1 ? strtoul(argv[1], NULL, 0) : 1024;
	unsigned nthreads = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 0) : 1;
	unsigned rounds = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 2;
	if (!mib || mib > (1ul << 20) || !nthreads || nthreads > 64 || !rounds || rounds > 100) {
		fprintf(stderr, "usage: fresh-touch [MIB 1..1048576 [THREADS 1..64 [ROUNDS 1..100]]]\n");
		return 2;
	}
	size_t len = mib << 20;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t *src = malloc(64 * 4096);
	if (mem == MAP_FAILED || !src) {
		perror("fresh-touch: memory");
		return 1;
	}
	madvise(mem, len, MADV_HUGEPAGE);
	srand(1);
	for (size_t i = 0; i < 64 * 4096; i++)
		src[i] = (uint8_t)rand();
	struct share sh[64];
	pthread_t th[64];
	size_t per = (len / nthreads) & ~(size_t)4095;
	for (unsigned r = 1; r <= rounds; r++) {
		double t0 = now_s();
		for (unsigned i = 0; i < nthreads; i++) {
			sh[i] = (struct share){ mem + i * per, i + 1 == nthreads ? len - i * per : per, src };
			if (pthread_create(&th[i], NULL, fill, &sh[i])) {
				perror("fresh-touch: pthread_create");
				return 1;
			}
		}
		for (unsigned i = 0; i < nthreads; i++)
			pthread_join(th[i], NULL);
		double dt = now_s() - t0;
		printf("round %u: %.3f s, %.0f MB/s (%lu MiB, %u thread%s, %s)\n", r, dt, (double)len / dt / 1e6, mib,
		       nthreads, nthreads == 1 ? "" : "s", r == 1 ? "fresh memory" : "resident memory");
	}
	return 0;
}
