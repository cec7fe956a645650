/*
 * guest/rt.c - guest runtime: entry, console, hypercalls, arguments,
 * stall tracking, multi-vCPU rendezvous and the final report.
 */
#include <stdarg.h>
#include "rt.h"

/* PVH start info, as defined by Xen's arch-x86/hvm/start_info.h. */
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

extern char _end[];
struct rt_ctx rt;

void *memset(void *d, int c, size_t n)
{
	unsigned char *p = d;
	if (!(n & 7) && !((uintptr_t)d & 7)) {
		uint64_t v = (uint8_t)c * 0x0101010101010101ull;
		uint64_t *q = d;
		for (size_t i = 0; i < n / 8; i++)
			q[i] = v;
		return d;
	}
	while (n--)
		*p++ = (unsigned char)c;
	return d;
}
void *memcpy(void *d, const void *s, size_t n)
{
	unsigned char *a = d;
	const unsigned char *b = s;
	while (n--)
		*a++ = *b++;
	return d;
}
int memcmp(const void *x, const void *y, size_t n)
{
	const unsigned char *a = x, *b = y;
	for (; n; n--, a++, b++)
		if (*a != *b)
			return *a - *b;
	return 0;
}
size_t strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

void rt_putc(char c) { outb(PMG_PORT_CONSOLE, (uint8_t)c); }
void rt_puts(const char *s)
{
	while (*s)
		rt_putc(*s++);
}

static void put_u64(uint64_t v, unsigned base, int width)
{
	char buf[24];
	int i = 0;
	do {
		buf[i++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (i < width)
		buf[i++] = '0';
	while (i)
		rt_putc(buf[--i]);
}

void rt_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			rt_putc(*fmt);
			continue;
		}
		fmt++;
		int width = 0, lng = 0;
		if (*fmt == '0')
			fmt++;
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l')
			lng++, fmt++;
		switch (*fmt) {
		case 's': rt_puts(va_arg(ap, const char *)); break;
		case 'u': put_u64(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width); break;
		case 'x': put_u64(lng ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width); break;
		case '%': rt_putc('%'); break;
		default: rt_putc('?'); break;
		}
	}
	va_end(ap);
}

uint64_t rt_hcall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2)
{
	volatile struct pmg_hcall hc = { .nr = nr, .a0 = a0, .a1 = a1, .a2 = a2, .ret = ~0ull };
	__asm__ volatile("outl %0, %1" ::"a"((uint32_t)(uintptr_t)&hc), "Nd"((uint16_t)PMG_PORT_HCALL) : "memory");
	return hc.ret;
}

void rt_exit(uint32_t code)
{
	for (;;)
		outl(PMG_PORT_EXIT, code);
}

uint64_t rt_hash(uint64_t h, const void *p, size_t n)
{
	const uint64_t *q = p;
	for (size_t i = 0; i < n / 8; i++)
		h = (h ^ q[i]) * 0x100000001b3ull + (h >> 29);
	const unsigned char *t = (const unsigned char *)(q + n / 8);
	for (size_t i = 0; i < (n & 7); i++)
		h = (h ^ t[i]) * 0x100000001b3ull;
	return mix64(h, n);
}

/* ---- arguments ---- */
static const char *arg_find(const struct rt_ctx *c, const char *key, size_t *len)
{
	size_t kl = strlen(key);
	const char *s = c->cmdline;
	if (!s)
		return 0;
	while (*s) {
		while (*s == ' ')
			s++;
		const char *w = s;
		while (*s && *s != ' ')
			s++;
		if ((size_t)(s - w) > kl && !memcmp(w, key, kl) && w[kl] == '=') {
			*len = (size_t)(s - w) - kl - 1;
			return w + kl + 1;
		}
	}
	return 0;
}

int rt_arg_str(const struct rt_ctx *c, const char *key, char *out, size_t outsz)
{
	size_t n;
	const char *v = arg_find(c, key, &n);
	if (!v || n + 1 > outsz)
		return -1;
	memcpy(out, v, n);
	out[n] = 0;
	return 0;
}

uint64_t rt_arg_u64(const struct rt_ctx *c, const char *key, uint64_t dflt)
{
	size_t n;
	const char *v = arg_find(c, key, &n);
	if (!v || !n)
		return dflt;
	uint64_t r = 0;
	size_t i = 0;
	int hex = n > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X');
	if (hex)
		i = 2;
	for (; i < n; i++) {
		char ch = v[i];
		if (ch >= '0' && ch <= '9')
			r = r * (hex ? 16 : 10) + (uint64_t)(ch - '0');
		else if (hex && ch >= 'a' && ch <= 'f')
			r = r * 16 + (uint64_t)(ch - 'a' + 10);
		else if (ch == 'k' || ch == 'K')
			r <<= 10;
		else if (ch == 'm' || ch == 'M')
			r <<= 20;
		else if (ch == 'g' || ch == 'G')
			r <<= 30;
		else
			return dflt;
	}
	return r;
}

/* ---- stall tracking (per vCPU) ---- */
struct stall {
	uint64_t last;
	uint64_t max_gap;
	uint64_t max_at; /* TSC at the end of the largest gap */
	uint64_t backwards;
} __attribute__((aligned(64)));
static struct stall stalls[PMG_MAX_VCPUS];

/* Which vCPU are we? Read from the stack pointer: each vCPU has its own. */
extern char stacks[];
static unsigned this_vcpu(void)
{
	uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
	unsigned i = (unsigned)((sp - (uintptr_t)stacks) >> 16);
	return i < PMG_MAX_VCPUS ? i : 0;
}

static void stall_observe(struct stall *st, uint64_t now)
{
	if (now < st->last) {
		st->backwards++;
	} else if (st->last && now - st->last > st->max_gap) {
		st->max_gap = now - st->last;
		st->max_at = now;
	}
	st->last = now;
}

void rt_tick(void) { stall_observe(&stalls[this_vcpu()], rdtsc()); }

uint64_t rt_us_to_tsc(uint64_t us)
{
	uint64_t khz = rt.tsc_khz ? rt.tsc_khz : 2000000;
	return us * khz / 1000;
}

void rt_wait_until(uint64_t deadline)
{
	struct stall *st = &stalls[this_vcpu()];
	for (;;) {
		uint64_t now = rdtsc();
		stall_observe(st, now);
		if (now >= deadline)
			return;
		uint64_t left = deadline - now;
		/* Long waits sleep in the VMM (frees the host CPU); the time the
		 * VMM was asked to sleep is not a stall, anything beyond is. */
		if (rt.tsc_khz && !rt.no_sleep && left > rt_us_to_tsc(2000)) {
			uint64_t us = (left / (rt.tsc_khz / 1000)) - 1000;
			uint64_t t0 = rdtsc();
			rt_hcall(PMG_HC_SLEEP, us, 0, 0);
			uint64_t t1 = rdtsc();
			uint64_t asked = rt_us_to_tsc(us);
			if (t1 >= t0) {
				uint64_t over = t1 - t0 > asked ? t1 - t0 - asked : 0;
				if (over > st->max_gap) {
					st->max_gap = over;
					st->max_at = t1;
				}
			}
			st->last = t1;
			if (t1 < t0)
				st->backwards++;
		} else {
			cpu_relax();
		}
	}
}

/* ---- ops timeline (per vCPU) ----
 * Work done per window of guest time, so a benchmark can compare the
 * guest's speed before, during and after a migration. Guest time is the only
 * clock the guest has; the host lines it up with the migration through the
 * largest stall, whose position is reported with it (stall_at_ms). */
#define TL_MAX 1200
static uint32_t tl[PMG_MAX_VCPUS][TL_MAX];
static uint64_t tl_last[PMG_MAX_VCPUS];
static uint64_t tl_t0, tl_win; /* TSC at workload start; window in TSC ticks, 0 = off */

void rt_progress(uint64_t ops)
{
	unsigned v = this_vcpu();
	if (!tl_win)
		return;
	uint64_t now = rdtsc();
	uint64_t i = now > tl_t0 ? (now - tl_t0) / tl_win : 0;
	if (i < TL_MAX)
		tl[v][i] += (uint32_t)(ops - tl_last[v]);
	tl_last[v] = ops;
}

static void tl_print(uint64_t stall_at)
{
	if (!tl_win)
		return;
	unsigned n = 0;
	for (unsigned i = 0; i < TL_MAX; i++)
		for (unsigned v = 0; v < rt.vcpus; v++)
			if (tl[v][i])
				n = i + 1;
	uint64_t tick_ms = rt_us_to_tsc(1000);
	rt_printf("PMG-OPS window_ms=%lu stall_at_ms=%lu windows=%u ops=", tl_win / tick_ms,
		  stall_at > tl_t0 ? (stall_at - tl_t0) / tick_ms : 0, n);
	for (unsigned i = 0; i < n; i++) {
		uint64_t sum = 0;
		for (unsigned v = 0; v < rt.vcpus; v++)
			sum += tl[v][i];
		rt_printf(i ? ",%lu" : "%lu", sum);
	}
	rt_putc('\n');
}

/* ---- writes log ---- */
#define WLOG_MAX 512
static uint64_t wlog[PMG_MAX_VCPUS][WLOG_MAX];
static unsigned wlog_n[PMG_MAX_VCPUS];

void rt_writes_flush(void)
{
	unsigned v = this_vcpu();
	if (!rt.log_writes || !wlog_n[v])
		return;
	rt_hcall(PMG_HC_WRITES, (uint64_t)(uintptr_t)wlog[v], wlog_n[v], 0);
	wlog_n[v] = 0;
}

void rt_writes_note(const void *page)
{
	unsigned v = this_vcpu();
	if (!rt.log_writes)
		return;
	wlog[v][wlog_n[v]++] = (uint64_t)(uintptr_t)page >> 12;
	if (wlog_n[v] == WLOG_MAX)
		rt_writes_flush();
}

/* ---- until=finish ---- */
static volatile uint64_t finish_seen;
static uint64_t finish_next[PMG_MAX_VCPUS] __attribute__((aligned(64)));

int rt_finish_requested(void)
{
	if (!rt.until_finish)
		return 0;
	if (finish_seen)
		return 1;
	unsigned v = this_vcpu();
	uint64_t now = rdtsc();
	if (now < finish_next[v])
		return 0;
	finish_next[v] = now + rt_us_to_tsc(10000);
	/* Only 1 counts: an unserved port leaves ret at ~0. */
	if (rt_hcall(PMG_HC_POLL, 0, 0, 0) != 1)
		return 0;
	finish_seen = 1;
	return 1;
}

/* ---- entry and rendezvous ---- */
static volatile uint64_t init_done;
static volatile uint64_t vcpus_done;
static volatile uint64_t part_digest[PMG_MAX_VCPUS];
static volatile uint64_t part_ops[PMG_MAX_VCPUS];
static struct pmg_report report;

void guest_entry(const struct hvm_start_info *si, uint64_t vcpu);
void guest_entry(const struct hvm_start_info *si, uint64_t vcpu)
{
	if (vcpu >= PMG_MAX_VCPUS)
		rt_exit(3);
	if (vcpu == 0) {
		rt.cmdline = si && si->cmdline_paddr ? (const char *)(uintptr_t)si->cmdline_paddr : "";
		rt.mem_end = 0;
		if (si) {
			const struct hvm_memmap_entry *mm = (const void *)(uintptr_t)si->memmap_paddr;
			for (uint32_t i = 0; si->memmap_paddr && i < si->memmap_entries; i++)
				if (mm[i].type == 1 && mm[i].addr + mm[i].size > rt.mem_end)
					rt.mem_end = mm[i].addr + mm[i].size;
		}
		/* The PVH entry maps only the low 4 GiB; the built-in VMM maps all
		 * memory and says so with pmg=1. */
		if (!rt_arg_u64(&rt, "pmg", 0) && rt.mem_end > (4ull << 30))
			rt.mem_end = 4ull << 30;
		if (!rt.mem_end)
			rt.mem_end = 64ull << 20;
		rt.heap_start = ((uint64_t)(uintptr_t)_end + (2ull << 20) - 1) & ~((2ull << 20) - 1);
		rt.tsc_khz = rt_arg_u64(&rt, "tsc_khz", 0);
		rt.vcpus = (unsigned)rt_arg_u64(&rt, "vcpus", 1);
		if (rt.vcpus < 1 || rt.vcpus > PMG_MAX_VCPUS)
			rt.vcpus = 1;
		rt.seed = rt_arg_u64(&rt, "seed", 1);
		rt.log_writes = (int)rt_arg_u64(&rt, "logwrites", 0);
		char until[8];
		rt.until_finish = !rt_arg_str(&rt, "until", until, sizeof(until)) && !memcmp(until, "finish", 7);
		rt.no_sleep = rt_arg_u64(&rt, "sleep", 1) == 0;
		/* fault=1: an invalid opcode with no IDT to take it, so a triple
		 * fault, for testing how each VMM reports a crashed guest. */
		if (rt_arg_u64(&rt, "fault", 0))
			__asm__ volatile("ud2");
		workload_init(&rt);
		tl_win = rt_us_to_tsc(rt_arg_u64(&rt, "tl_ms", 0) * 1000);
		tl_t0 = rdtsc();
		__atomic_store_n(&init_done, 1, __ATOMIC_RELEASE);
	} else {
		while (!__atomic_load_n(&init_done, __ATOMIC_ACQUIRE))
			cpu_relax();
	}

	uint64_t t0 = rdtsc();
	uint64_t ops = 0;
	uint64_t d = workload_run(&rt, (unsigned)vcpu, &ops);
	rt_writes_flush();
	part_digest[vcpu] = d;
	part_ops[vcpu] = ops;
	__atomic_add_fetch(&vcpus_done, 1, __ATOMIC_ACQ_REL);
	if (vcpu != 0) {
		for (;;)
			rt_hcall(PMG_HC_VCPU_DONE, 0, 0, 0);
	}
	while (__atomic_load_n(&vcpus_done, __ATOMIC_ACQUIRE) < rt.vcpus)
		cpu_relax();

	uint64_t digest = mix64(0x706d6c2d6d696772ull, rt.seed);
	uint64_t total_ops = 0, max_stall = 0, stall_at = 0, back = 0;
	for (unsigned i = 0; i < rt.vcpus; i++) {
		digest = mix64(digest, part_digest[i]);
		total_ops += part_ops[i];
		if (stalls[i].max_gap > max_stall) {
			max_stall = stalls[i].max_gap;
			stall_at = stalls[i].max_at;
		}
		back += stalls[i].backwards;
	}
	report.magic = PMG_REPORT_MAGIC;
	report.version = PMG_REPORT_VERSION;
	size_t nl = strlen(rt_workload_name);
	memcpy(report.workload, rt_workload_name, nl < 15 ? nl : 15);
	report.seed = rt.seed;
	report.ops = total_ops;
	report.digest = digest;
	report.max_stall_tsc = max_stall;
	report.tsc_khz = rt.tsc_khz;
	report.tsc_backwards = back;
	report.run_tsc = rdtsc() - t0;
	report.vcpus = rt.vcpus;
	tl_print(stall_at);
	/* Text form for hosts that do not take the hypercall (QEMU). */
	rt_printf("PMG-REPORT workload=%s seed=%lu ops=%lu digest=%016lx max_stall_tsc=%lu tsc_backwards=%lu vcpus=%u\n",
		  rt_workload_name, rt.seed, total_ops, digest, max_stall, back, rt.vcpus);
	rt_hcall(PMG_HC_REPORT, (uint64_t)(uintptr_t)&report, sizeof(report), 0);
	rt_exit(0);
}
