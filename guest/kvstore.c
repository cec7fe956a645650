/*
 * kvstore: an in-guest open-addressing hash table serving a deterministic
 * stream of GET/SET operations.
 * Args: data=SIZE (32M) ops=N (1500000) set_pct=N (30) rate=OPS_PER_S (0) seed=N
 *       until=finish: serve until the host asks the guest to finish (`ctl
 *       NAME finish`), ops= then a cap (default none)
 */
#include "rt.h"

const char *const rt_workload_name = "kvstore";
#define SLOT_SIZE 128
#define VAL_SIZE (SLOT_SIZE - 16)
struct slot {
	uint64_t key; /* 0 = empty */
	uint32_t vlen;
	uint32_t gen;
	uint8_t val[VAL_SIZE];
};
_Static_assert(sizeof(struct slot) == SLOT_SIZE, "slot size");

static uint64_t nslots, ops_total, set_pct, rate;

void workload_init(struct rt_ctx *c)
{
	uint64_t data = rt_arg_u64(c, "data", 32ull << 20);
	if (c->heap_start + data > c->mem_end)
		data = c->mem_end - c->heap_start;
	nslots = data / SLOT_SIZE;
	ops_total = rt_arg_u64(c, "ops", c->until_finish ? ~0ull : 1500000);
	set_pct = rt_arg_u64(c, "set_pct", 30);
	rate = rt_arg_u64(c, "rate", 0);
}

static struct slot *lookup(struct slot *t, uint64_t n, uint64_t key, int insert)
{
	uint64_t i = mix64(key, 0x6b76) % n;
	for (uint64_t probes = 0; probes < n; probes++, i = (i + 1) % n) {
		if (t[i].key == key)
			return &t[i];
		if (!t[i].key)
			return insert ? &t[i] : 0;
	}
	return 0;
}

uint64_t workload_run(struct rt_ctx *c, unsigned vcpu, uint64_t *ops)
{
	uint64_t per = nslots / c->vcpus;
	struct slot *t = (struct slot *)(uintptr_t)(c->heap_start + vcpu * per * SLOT_SIZE);
	uint64_t keyspace = per * 3 / 4 + 1;
	uint64_t n = ops_total / c->vcpus + (vcpu < ops_total % c->vcpus);
	uint64_t s = mix64(c->seed, vcpu + 13);
	uint64_t d = 0, hits = 0;
	uint64_t tsc_per_op = rate ? rt_us_to_tsc(1000000) * c->vcpus / rate : 0;
	uint64_t t0 = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		if ((i & 255) == 0) {
			rt_tick();
			if (rt_finish_requested())
				break;
			rt_progress(i);
			if (tsc_per_op)
				rt_wait_until(t0 + i * tsc_per_op);
		}
		uint64_t r = rng_next(&s);
		uint64_t key = r % keyspace + 1;
		if ((r >> 40) % 100 < set_pct) {
			struct slot *sl = lookup(t, per, key, 1);
			if (!sl)
				continue;
			sl->key = key;
			sl->gen++;
			sl->vlen = (uint32_t)(16 + (r >> 20) % (VAL_SIZE - 16));
			uint64_t v = mix64(key, i);
			for (unsigned b = 0; b < sl->vlen; b += 8) {
				v = mix64(v, b);
				memcpy(sl->val + b, &v, sl->vlen - b < 8 ? sl->vlen - b : 8);
			}
			rt_writes_note(sl);
		} else {
			struct slot *sl = lookup(t, per, key, 0);
			if (sl) {
				hits++;
				d = rt_hash(mix64(d, sl->gen), sl->val, sl->vlen);
			} else {
				d = mix64(d, key);
			}
		}
		(*ops)++;
	}
	d = mix64(d, hits);
	return rt_hash(d, t, per * SLOT_SIZE);
}
