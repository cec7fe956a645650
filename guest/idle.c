/*
 * idle: touches a little memory, then mostly waits.
 * Args: touch=SIZE (4M) ops=N (300) period_us=N (10000) seed=N
 *       until=finish: run until the host asks the guest to finish (`ctl
 *       NAME finish`), ops= then a cap (default none)
 */
#include "rt.h"

const char *const rt_workload_name = "idle";
static uint64_t npages, ops_total, period_us;

void workload_init(struct rt_ctx *c)
{
	npages = rt_arg_u64(c, "touch", 4ull << 20) / PAGE_SIZE;
	if (!npages)
		npages = 1;
	if (c->heap_start + npages * PAGE_SIZE > c->mem_end)
		npages = (c->mem_end - c->heap_start) / PAGE_SIZE;
	ops_total = rt_arg_u64(c, "ops", c->until_finish ? ~0ull : 300);
	period_us = rt_arg_u64(c, "period_us", 10000);
}

uint64_t workload_run(struct rt_ctx *c, unsigned vcpu, uint64_t *ops)
{
	uint64_t per = npages / c->vcpus;
	volatile uint64_t *base = (volatile uint64_t *)(uintptr_t)(c->heap_start + vcpu * per * PAGE_SIZE);
	uint64_t s = mix64(c->seed, vcpu + 1);
	for (uint64_t p = 0; p < per; p++) {
		base[p * 512] = rng_next(&s);
		rt_writes_note((const void *)&base[p * 512]);
	}
	rt_writes_flush();
	uint64_t n = ops_total / c->vcpus + (vcpu < ops_total % c->vcpus);
	uint64_t next = rdtsc();
	for (uint64_t i = 0; i < n; i++) {
		rt_tick();
		if (rt_finish_requested()) {
			n = i;
			break;
		}
		uint64_t p = per ? i % per : 0;
		if (per) {
			base[p * 512 + 1] += rng_next(&s);
			rt_writes_note((const void *)&base[p * 512]);
			rt_writes_flush();
		}
		next += rt_us_to_tsc(period_us);
		rt_wait_until(next);
		(*ops)++;
	}
	return rt_hash(mix64(s, n), (const void *)base, per * PAGE_SIZE);
}
