/*
 * memstress: writes whole pages of a working set at a target rate.
 * Args: ws=SIZE (64M) rate=MBPS (64; 0 = as fast as possible)
 *       ops=PAGES (3 s worth at the rate; 262144 when unlimited)
 *       dist=uniform|zipf  content=zero|text|random  seed=N  batch=N (16)
 *       prefill=1: first write every page of the working set once (with the
 *       content), at full speed, before the rate-limited writes
 *       rounds=R round_pages=N: instead, R rounds that each write the same
 *       N pages (split over vCPUs) and then wait at a host barrier; for
 *       benchmarks that need an exact dirty set per round.
 *       ms=N: stop the rate-limited writes after N ms of guest TSC time
 *       even if ops are left (needs tsc_khz); for benchmarks that need a
 *       guest to keep dirtying for a set time whatever the throttling. The
 *       digest then depends on timing, so it only compares runs with ms=0.
 *       tl_ms=N: report the pages written per N ms window (see rt.h).
 *       until=finish: write until the host asks the guest to finish
 *       (`ctl NAME finish`), ops= then a cap (default none); the report's
 *       ops=N, given back as ops=N with one vCPU, reproduces the digest. For
 *       tests whose guest must outlive a migration whatever either's speed.
 * zipf draws page k with probability ~ 1/k (log-uniform per octave), so
 * a few pages are hot and most are cold.
 */
#include "rt.h"

const char *const rt_workload_name = "memstress";
enum { DIST_UNIFORM, DIST_ZIPF };
enum { CONTENT_ZERO, CONTENT_TEXT, CONTENT_RANDOM };
static uint64_t ws_pages, rate_mbps, ops_total, batch, rounds, round_pages, prefill, run_ms;
static int dist, content;

static const char *const words[] = {
	"migration ", "page ", "dirty ", "ring ", "guest ", "host ", "round ", "the ",
	"of ", "memory ", "log ", "frame ", "copy ", "and ", "to ", "downtime ",
};

void workload_init(struct rt_ctx *c)
{
	char buf[16];
	ws_pages = rt_arg_u64(c, "ws", 64ull << 20) / PAGE_SIZE;
	if (c->heap_start + ws_pages * PAGE_SIZE > c->mem_end)
		ws_pages = (c->mem_end - c->heap_start) / PAGE_SIZE;
	if (ws_pages < c->vcpus)
		ws_pages = c->vcpus;
	rate_mbps = rt_arg_u64(c, "rate", 64);
	ops_total = rt_arg_u64(c, "ops", c->until_finish ? ~0ull : rate_mbps ? rate_mbps * 256 * 3 : 262144);
	batch = rt_arg_u64(c, "batch", 16);
	prefill = rt_arg_u64(c, "prefill", 0);
	run_ms = c->tsc_khz ? rt_arg_u64(c, "ms", 0) : 0;
	rounds = rt_arg_u64(c, "rounds", 0);
	round_pages = rt_arg_u64(c, "round_pages", 4096);
	if (rounds && ws_pages < round_pages)
		round_pages = ws_pages;
	if (!batch)
		batch = 1;
	dist = DIST_UNIFORM;
	if (!rt_arg_str(c, "dist", buf, sizeof buf) && !memcmp(buf, "zipf", 5))
		dist = DIST_ZIPF;
	content = CONTENT_TEXT;
	if (!rt_arg_str(c, "content", buf, sizeof buf)) {
		if (!memcmp(buf, "zero", 5))
			content = CONTENT_ZERO;
		else if (!memcmp(buf, "random", 7))
			content = CONTENT_RANDOM;
	}
}

static uint64_t pick(uint64_t *s, uint64_t n)
{
	uint64_t r = rng_next(s);
	if (dist == DIST_UNIFORM || n < 4)
		return r % n;
	unsigned bits = 63 - (unsigned)__builtin_clzll(n);
	unsigned oct = (unsigned)(r % (bits + 1));
	uint64_t lo = (1ull << oct) - 1, hi = (2ull << oct) - 1;
	if (hi > n)
		hi = n;
	return lo + (r >> 32) % (hi - lo);
}

static void fill(uint64_t *pg, uint64_t *s, uint64_t op)
{
	switch (content) {
	case CONTENT_ZERO:
		memset(pg, 0, PAGE_SIZE);
		break;
	case CONTENT_RANDOM:
		for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
			pg[i] = rng_next(s);
		break;
	default: {
		char *t = (char *)pg;
		unsigned o = 0;
		uint64_t r = rng_next(s);
		while (o < PAGE_SIZE) {
			const char *w = words[r & 15];
			r = r >> 4 ? r >> 4 : rng_next(s);
			while (*w && o < PAGE_SIZE)
				t[o++] = *w++;
		}
		pg[0] = op;
	}
	}
}

uint64_t workload_run(struct rt_ctx *c, unsigned vcpu, uint64_t *ops)
{
	uint64_t per = ws_pages / c->vcpus;
	uint64_t *base = (uint64_t *)(uintptr_t)(c->heap_start + vcpu * per * PAGE_SIZE);
	uint64_t n = ops_total / c->vcpus + (vcpu < ops_total % c->vcpus);
	uint64_t s = mix64(c->seed, vcpu + 7);
	uint64_t tsc_per_page = 0;
	if (rate_mbps) {
		uint64_t khz = c->tsc_khz ? c->tsc_khz : 2000000;
		tsc_per_page = khz * 1000 * c->vcpus / (rate_mbps * 256);
	}
	if (rounds) {
		uint64_t mine = round_pages / c->vcpus;
		for (uint64_t r = 0; r < rounds; r++) {
			rt_tick();
			for (uint64_t p = 0; p < mine; p++) {
				base[p * (PAGE_SIZE / 8)] = mix64(r, p);
				(*ops)++;
			}
			rt_hcall(PMG_HC_BARRIER, r, 0, 0);
		}
		return rt_hash(mix64(s, rounds), base, mine * PAGE_SIZE);
	}
	if (prefill) {
		for (uint64_t p = 0; p < per; p++) {
			if (p % batch == 0)
				rt_tick();
			fill(base + p * (PAGE_SIZE / 8), &s, p);
		}
	}
	uint64_t t0 = rdtsc();
	uint64_t stop = run_ms ? t0 + rt_us_to_tsc(run_ms * 1000) : 0;
	for (uint64_t i = 0; i < n; i++) {
		if (i % batch == 0) {
			rt_tick();
			rt_progress(i);
			rt_writes_flush();
			if ((stop && rdtsc() >= stop) || rt_finish_requested()) {
				n = i;
				break;
			}
			if (tsc_per_page)
				rt_wait_until(t0 + i * tsc_per_page);
		}
		uint64_t *pg = base + pick(&s, per) * (PAGE_SIZE / 8);
		fill(pg, &s, i);
		rt_writes_note(pg);
		(*ops)++;
	}
	return rt_hash(mix64(s, n), base, per * PAGE_SIZE);
}
