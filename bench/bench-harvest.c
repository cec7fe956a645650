/*
 * bench/bench-harvest.c - dirty-log harvest cost, ring vs bitmap, by guest
 * size and dirty-set size, measured side by side in one run.
 *
 * A real guest (memstress rounds=R round_pages=N, 2 vCPUs) writes exactly
 * N pages per round and waits at a barrier; when both vCPUs are there the
 * host harvests and times it. Guest memory is sparse, so a 64 GiB guest
 * costs only what it touches.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "precopy/dirtylog.h"
#include "tests/guest-run.h"

#define MAX_ROUNDS 256
#define WARMUP 2

struct cell {
	uint64_t size_gib, dirty;
	enum hv_dirty_mode mode;
	double med_us, p10_us, p90_us, pages;
	uint64_t ring_full;
	int ok;
};

struct bench {
	pthread_mutex_t m;
	pthread_cond_t cv;
	unsigned arrived, nvcpus;
	uint64_t gen;
	struct precopy_dirtylog *dl;
	struct precopy_dirty_set set;
	double us[MAX_ROUNDS];
	uint64_t pages[MAX_ROUNDS];
	unsigned n;
	int err;
};

static void on_barrier(struct guest_run *g, unsigned vcpu, uint64_t round)
{
	struct bench *b = g->user;
	(void)vcpu;
	(void)round;
	pthread_mutex_lock(&b->m);
	if (++b->arrived == b->nvcpus) {
		long n = precopy_dirtylog_harvest(b->dl, &b->set);
		struct precopy_dirtylog_stats st;
		precopy_dirtylog_get_stats(b->dl, &st);
		if (n < 0)
			b->err = (int)n;
		else if (b->n < MAX_ROUNDS) {
			b->us[b->n] = (double)st.last_ns / 1e3;
			b->pages[b->n] = (uint64_t)n;
			b->n++;
		}
		b->arrived = 0;
		b->gen++;
		pthread_cond_broadcast(&b->cv);
	} else {
		uint64_t gen = b->gen;
		while (b->gen == gen)
			pthread_cond_wait(&b->cv, &b->m);
	}
	pthread_mutex_unlock(&b->m);
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int run_cell(struct cell *c, unsigned rounds, const char *image)
{
	struct hv_vm_config cfg = { .mem_bytes = c->size_gib << 30, .vcpus = 2, .dirty_mode = c->mode };
	struct guest_run g = { 0 };
	struct bench b = { .nvcpus = 2 };
	char args[256], err[256];
	int r;

	pthread_mutex_init(&b.m, NULL);
	pthread_cond_init(&b.cv, NULL);
	g.user = &b;
	g.on_barrier = on_barrier;
	snprintf(args, sizeof(args), "seed=1 rounds=%u round_pages=%llu ws=%lluK", rounds + WARMUP,
		 (unsigned long long)c->dirty, (unsigned long long)c->dirty * 4);
	r = guest_run_create(&g, &cfg, image, args, err, sizeof(err));
	if (r < 0) {
		fprintf(stderr, "bench-harvest: %s\n", err);
		return r;
	}
	r = precopy_dirtylog_open(g.vm, &b.dl);
	if (r < 0)
		goto out;
	hv_vm_start(g.vm);
	r = guest_run_wait(&g);
	if (!r && b.err)
		r = b.err;
	if (!r && b.n > WARMUP) {
		unsigned n = b.n - WARMUP;
		double *v = b.us + WARMUP, pages = 0;
		for (unsigned i = 0; i < n; i++)
			pages += (double)b.pages[WARMUP + i];
		qsort(v, n, sizeof(double), cmp_d);
		c->med_us = v[n / 2];
		c->p10_us = v[n / 10];
		c->p90_us = v[(n * 9) / 10];
		c->pages = pages / n;
		struct precopy_dirtylog_stats st;
		precopy_dirtylog_get_stats(b.dl, &st);
		c->ring_full = st.ring_full_exits;
		c->ok = 1;
	}
	precopy_dirtylog_close(b.dl);
out:
	precopy_dirty_set_free(&b.set);
	guest_run_destroy(&g);
	return r;
}

static int parse_list(const char *s, uint64_t *out, int max)
{
	int n = 0;
	char *dup = strdup(s), *save = NULL;
	for (char *t = strtok_r(dup, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save))
		out[n++] = strtoull(t, NULL, 10);
	free(dup);
	return n;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sizes", required_argument, 0, 's' }, { "dirty", required_argument, 0, 'd' },
		{ "rounds", required_argument, 0, 'r' }, { "csv", required_argument, 0, 'c' },
		{ "image", required_argument, 0, 'i' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	uint64_t sizes[8] = { 1, 4, 16, 64 }, dirty[8] = { 4096, 65536 };
	int nsizes = 4, ndirty = 2, o;
	unsigned rounds = 12;
	const char *csv = NULL, *image = NULL;

	while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (o) {
		case 's': nsizes = parse_list(optarg, sizes, 8); break;
		case 'd': ndirty = parse_list(optarg, dirty, 8); break;
		case 'r': rounds = (unsigned)atoi(optarg); break;
		case 'c': csv = optarg; break;
		case 'i': image = optarg; break;
		default:
			printf("usage: bench-harvest [--sizes 1,4,16,64] [--dirty 4096,65536] [--rounds 12]\n"
			       "                     [--csv FILE] [--image guest/memstress.elf]\n");
			return o == 'h' ? 0 : 2;
		}
	}
	if (rounds < 3 || rounds > MAX_ROUNDS - WARMUP || !nsizes || !ndirty) {
		fprintf(stderr, "bench-harvest: bad --rounds/--sizes/--dirty\n");
		return 2;
	}
	if (!image)
		image = guest_image("memstress");
	struct cell cells[64];
	int nc = 0;
	for (int d = 0; d < ndirty; d++)
		for (int s = 0; s < nsizes; s++)
			for (int m = 0; m < 2; m++) {
				struct cell *c = &cells[nc++];
				memset(c, 0, sizeof(*c));
				c->size_gib = sizes[s];
				c->dirty = dirty[d];
				c->mode = m ? HV_DIRTY_BITMAP : HV_DIRTY_RING;
				fprintf(stderr, "  %3llu GiB, %6llu pages/round, %-6s ...", (unsigned long long)c->size_gib,
					(unsigned long long)c->dirty, hv_dirty_mode_name(c->mode));
				int r = run_cell(c, rounds, image);
				if (r)
					fprintf(stderr, " failed: %s\n", strerror(-r));
				else
					fprintf(stderr, " %.1f us\n", c->med_us);
			}
	FILE *f = csv ? fopen(csv, "w") : NULL;
	if (f)
		fprintf(f, "guest_gib,dirty_pages_per_round,dirty_log,rounds,harvest_us_median,harvest_us_p10,"
			   "harvest_us_p90,pages_per_harvest,ring_full_exits\n");
	printf("\n%-9s %-12s %-8s %12s %12s %12s %10s\n", "guest", "dirty/round", "log", "median us", "p10 us",
	       "p90 us", "pages");
	for (int i = 0; i < nc; i++) {
		struct cell *c = &cells[i];
		if (!c->ok)
			continue;
		char sz[16];
		snprintf(sz, sizeof(sz), "%lluG", (unsigned long long)c->size_gib);
		printf("%-9s %-12llu %-8s %12.1f %12.1f %12.1f %10.0f\n", sz, (unsigned long long)c->dirty, hv_dirty_mode_name(c->mode), c->med_us, c->p10_us, c->p90_us,
		       c->pages);
		if (f)
			fprintf(f, "%llu,%llu,%s,%u,%.1f,%.1f,%.1f,%.0f,%llu\n", (unsigned long long)c->size_gib,
				(unsigned long long)c->dirty, hv_dirty_mode_name(c->mode), rounds, c->med_us, c->p10_us,
				c->p90_us, c->pages, (unsigned long long)c->ring_full);
	}
	if (f)
		fclose(f);
	/* The targets, as ratios from this one run. */
	printf("\n");
	for (int d = 0; d < ndirty; d++) {
		double r_lo = 0, r_hi = 0, b_hi = 0;
		uint64_t lo = sizes[0], hi = sizes[nsizes - 1];
		for (int i = 0; i < nc; i++) {
			if (!cells[i].ok || cells[i].dirty != dirty[d])
				continue;
			if (cells[i].size_gib == lo && cells[i].mode == HV_DIRTY_RING)
				r_lo = cells[i].med_us;
			if (cells[i].size_gib == hi && cells[i].mode == HV_DIRTY_RING)
				r_hi = cells[i].med_us;
			if (cells[i].size_gib == hi && cells[i].mode == HV_DIRTY_BITMAP)
				b_hi = cells[i].med_us;
		}
		if (r_lo > 0 && r_hi > 0 && b_hi > 0)
			printf("%6llu pages/round: ring %lluG/%lluG = %.2fx (target <= 1.25x); bitmap/ring at %lluG = %.2fx "
			       "(target >= 4x)\n",
			       (unsigned long long)dirty[d], (unsigned long long)hi, (unsigned long long)lo, r_hi / r_lo,
			       (unsigned long long)hi, b_hi / r_hi);
	}
	return 0;
}
