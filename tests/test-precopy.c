/*
 * precopy/ as pure code: the page sets (dedupe, hot-page deferral within a
 * budget, rounds), the switchover decision and the rate windows driven
 * with numbers, the throttle's ramp, and recorded statistics of real
 * migrations (tests/data/policy-*.csv, written by the engine under
 * PML_MIGRATE_POLICY_TRACE) replayed through the same functions: every
 * recorded verdict, downtime estimate and throttle percentage must come
 * out again.
 *
 * Usage: test-precopy [TRACE.csv...] (default: the traces in tests/data).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "precopy/pages.h"
#include "precopy/policy.h"
#include "precopy/predict.h"
#include "precopy/throttle.h"
#include "precopy/wss.h"
#include "tests/tap.h"

#define MS 1000000ull

static void test_pages(void)
{
	struct precopy_pages p;
	uint64_t g, got[8];
	size_t n = 0;

	tap_ok(precopy_pages_init(&p, 1024, 3) == 0 && p.round == 1, "pages: init, round 1");
	precopy_pages_push(&p, 7);
	precopy_pages_push(&p, 9);
	precopy_pages_push(&p, 7);
	tap_ok(precopy_pages_pending(&p) == 2 && p.added == 2, "pages: a frame pending twice is queued once");
	/* Round 2 takes what was pending at its start, not what comes later. */
	precopy_pages_round_begin(&p);
	uint64_t d1[] = { 11 };
	precopy_pages_dirtied(&p, d1, 1, 0);
	while (precopy_pages_round_next(&p, &g))
		got[n++] = g;
	tap_ok(n == 2 && got[0] == 7 && got[1] == 9 && precopy_pages_pending(&p) == 1,
	       "pages: a round takes its own frames in order; a frame dirtied meanwhile waits");
	precopy_pages_pop(&p, &g);

	/* Frame 5 dirtied in rounds 2, 3 and 4: hot on the third, deferred
	 * while the budget allows. */
	precopy_pages_set_defer_budget(&p, 1);
	uint64_t hot[] = { 5, 6 };
	for (int r = 0; r < 3; r++) {
		precopy_pages_dirtied(&p, hot, 2, 0);
		while (precopy_pages_pop(&p, &g))
			;
		precopy_pages_round_begin(&p);
	}
	tap_ok(precopy_pages_deferred(&p) == 1 && precopy_pages_is_deferred(&p, 5) && !precopy_pages_is_deferred(&p, 6) &&
		       p.deferred_total == 1,
	       "pages: a frame dirty in 3 rounds is deferred, within a budget of 1");
	precopy_pages_dirtied(&p, hot, 2, 0);
	tap_ok(!precopy_pages_is_pending(&p, 5) && precopy_pages_is_pending(&p, 6),
	       "pages: a deferred frame dirtied again stays deferred, not pending");
	while (precopy_pages_pop(&p, &g))
		;
	precopy_pages_set_defer_budget(&p, 0);
	tap_ok(!precopy_pages_deferred(&p) && precopy_pages_is_pending(&p, 5) && p.rounds_dirty[5] == 0,
	       "pages: a smaller budget sends the excess back to pending, its count reset");
	while (precopy_pages_pop(&p, &g))
		;
	/* The final harvest defers nothing; undefer_all queues the held-back. */
	precopy_pages_set_defer_budget(&p, 10);
	uint64_t h2[] = { 20 };
	for (int r = 0; r < 3; r++) {
		precopy_pages_dirtied(&p, h2, 1, 0);
		while (precopy_pages_pop(&p, &g))
			;
		precopy_pages_round_begin(&p);
	}
	uint64_t h3[] = { 21, 21, 21 };
	for (int r = 0; r < 3; r++) { /* hot at the third round, which is the final one */
		precopy_pages_dirtied(&p, h3, 3, r == 2);
		if (r < 2) {
			while (precopy_pages_pop(&p, &g))
				;
			precopy_pages_round_begin(&p);
		}
	}
	tap_ok(precopy_pages_is_deferred(&p, 20) && !precopy_pages_is_deferred(&p, 21) && precopy_pages_is_pending(&p, 21),
	       "pages: the final (paused) harvest queues a hot frame instead of deferring it");
	precopy_pages_undefer_all(&p);
	tap_ok(!precopy_pages_deferred(&p) && precopy_pages_is_pending(&p, 20) && precopy_pages_pending(&p) == 2,
	       "pages: undefer_all queues every deferred frame");
	uint64_t bad[] = { 1024, UINT64_MAX };
	precopy_pages_dirtied(&p, bad, 2, 0);
	tap_ok(precopy_pages_pending(&p) == 2, "pages: frames beyond memory are ignored");
	/* Growth past the first allocation keeps FIFO order. */
	struct precopy_pages q;
	int order = precopy_pages_init(&q, 1u << 20, 3) == 0;
	for (uint64_t i = 0; i < 200000 && order; i++)
		order = precopy_pages_push(&q, (i * 7919) % (1u << 20)) == 0;
	for (uint64_t i = 0; i < 200000 && order; i++)
		order = precopy_pages_pop(&q, &g) && g == (i * 7919) % (1u << 20);
	tap_ok(order && !precopy_pages_pending(&q), "pages: 200000 frames come out in the order they went in");
	precopy_pages_free(&q);
	precopy_pages_free(&p);
}

static void test_decide(void)
{
	struct precopy_decision_in in = {
		.cost = { .pages = 1000, .encode_pps = 100000, .link_Bps = 100000000, .queued_bytes = 0,
			  .vcpu_save_ns = 100000, .vcpu_bytes = 20000, .rtt_ns = 100000 },
		.downtime_limit_ns = 300 * MS,
		.now_ns = 1000 * MS,
		.deadline_ns = 60000 * MS,
	};
	uint64_t exp, fixed = precopy_fixed_cost_ns(&in.cost);
	/* 20000 bytes at 100000*1024 B/s = 195312 ns; + 100 us + 150 us. */
	tap_ok(fixed == 100000 + 195312 + 150000, "decide: fixed cost = save + state transfer + 1.5 RTT (%" PRIu64 " ns)",
	       fixed);
	tap_ok(precopy_decide(&in, &exp) == PRECOPY_DRAIN && exp == 10 * MS + fixed,
	       "decide: 1000 pages at 100000/s fit 300 ms: drain first (expected %" PRIu64 " ns)", exp);
	in.drained = 1;
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_SWITCHOVER, "decide: still fits after the drain: switch over");
	in.drained = 0;
	in.cost.pages = 100000;
	in.cost.queued_bytes = 50000000; /* 0.5 s at the link's 100 MB/s */
	tap_ok(precopy_decide(&in, &exp) == PRECOPY_CONTINUE && exp == 1000 * MS + 500 * MS + fixed,
	       "decide: 1 s of pages + 0.5 s of queue: another round");
	in.now_ns = in.deadline_ns + 1;
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_TIMEOUT, "decide: past --max-time without converging: timeout");
	in.now_ns = 1000 * MS;
	in.cost = (struct precopy_cost){ .pages = 10, .encode_pps = 100000, .vcpu_save_ns = 400 * MS, .rtt_ns = 1000 };
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_SWITCHOVER_FORCED,
	       "decide: the fixed cost alone exceeds the limit and 10 pages remain: forced switchover");
	in.cost.pages = 10000;
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_CONTINUE, "decide: ... but not while 10000 pages remain");
	/* The estimate stuck at 77 ms for a 50 ms limit (an emulated lab's
	 * link, the throttle settled): forced once stalled 10 s. */
	struct precopy_stall st = { 0 };
	in.cost = (struct precopy_cost){ .pages = 150, .encode_pps = 2000, .rtt_ns = 1 * MS };
	in.downtime_limit_ns = 50 * MS;
	uint64_t e77 = precopy_expected_downtime_ns(&in.cost), stalled = 0;
	for (uint64_t t = 0; t <= 12000; t += 20) /* a round every 20 ms, the estimate within 5 % */
		stalled = precopy_stall_note(&st, e77 + (t % 40 ? e77 / 20 : 0), t * MS);
	in.may_force = 1;
	in.stalled_ns = stalled;
	tap_ok(stalled == 12000 * MS && precopy_decide(&in, NULL) == PRECOPY_SWITCHOVER_FORCED,
	       "decide: estimate %" PRIu64 " ns not improving for %" PRIu64 " ms: forced", e77, (uint64_t)(stalled / MS));
	in.may_force = 0;
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_CONTINUE, "decide: ... not with --no-throttle (--max-time decides)");
	in.may_force = 1;
	in.stalled_ns = 9 * 1000 * MS;
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_CONTINUE, "decide: ... nor after a stall of 9 s only");
	/* A toolstack's guest: its pause costs seconds anyway, a 2 s stall
	 * is enough (and 1.9 s is not). */
	in.stall_force_ns = PRECOPY_STALL_FORCE_TOOLSTACK_NS;
	in.stalled_ns = 1900 * MS;
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_CONTINUE, "decide: a toolstack guest's stall of 1.9 s: continue");
	in.stalled_ns = 2000 * MS;
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_SWITCHOVER_FORCED, "decide: ... of 2 s: forced");
	in.stall_force_ns = 0;
	in.stalled_ns = 12000 * MS;
	in.cost.pages = 20000; /* 10 s at 2000 pages/s: beyond 8x the limit and 5 s */
	tap_ok(precopy_decide(&in, NULL) == PRECOPY_CONTINUE, "decide: ... nor when the pause would be 10 s");
	stalled = precopy_stall_note(&st, e77 / 2, 12100 * MS);
	tap_ok(stalled == 0 && st.best_ns == e77 / 2, "stall: an estimate 50 %% lower is progress (clock starts over)");
	in.may_force = 0;
	in.stalled_ns = 0;
	struct precopy_cost unmeasured = { .pages = 50000 };
	tap_ok(precopy_expected_downtime_ns(&unmeasured) == 1000 * MS + 0,
	       "decide: unmeasured rates stand in as 50000 pages/s");
	tap_ok(precopy_defer_budget(100000, 300) == 15000, "defer budget: half of 300 ms at 100000 pages/s");
	tap_ok(!strcmp(precopy_verdict_name(PRECOPY_SWITCHOVER_FORCED), "switchover-forced"), "verdict names");
}

static void test_rates(void)
{
	struct precopy_rates r = { 0 };
	struct precopy_sample s = { .t_ns = 1000 * MS };
	uint64_t dt = 0;
	tap_ok(precopy_rates_sample(&r, &s, 2, &dt) == 0 && r.started, "rates: the first sample opens a window");
	s.t_ns += 10 * MS;
	s.pages_done = 5000;
	tap_ok(precopy_rates_sample(&r, &s, 2, &dt) == 0 && !r.encode_pps, "rates: 10 ms is too short a window");
	/* 100 ms: 10000 pages in 200 ms of encoder time over 2 streams. */
	s.t_ns = 1100 * MS;
	s.pages_done = 10000;
	s.busy_ns = 200 * MS;
	s.dirtied = 2000;
	s.wire_bytes = 40000000;
	s.queued_bytes = 4u << 20;
	tap_ok(precopy_rates_sample(&r, &s, 2, &dt) == 1 && dt == 100 * MS && r.encode_pps == 100000 &&
		       r.dirty_pps == 20000 && r.link_Bps == 0,
	       "rates: encode %" PRIu64 " pages/s (2 streams), dirty %" PRIu64 "/s, link unmeasured (no backlog at the start)",
	       r.encode_pps, r.dirty_pps);
	s.t_ns += 100 * MS;
	s.pages_done += 2560;
	s.busy_ns += 200 * MS;
	s.wire_bytes += 10000000;
	tap_ok(precopy_rates_sample(&r, &s, 2, &dt) == 1 && r.encode_pps == (100000 * 3 + 25600) / 4 &&
		       r.link_Bps == 100000000 && r.dirty_pps == 0,
	       "rates: smoothed 3:1 (%" PRIu64 "), link %" PRIu64 " B/s while backlogged", r.encode_pps, r.link_Bps);
}

static void test_throttle(void)
{
	struct precopy_throttle t;
	uint64_t ent[2] = { 0, 0 };
	precopy_throttle_init(&t, 1, NULL);
	unsigned steps = 0;
	/* A burst: one window over the threshold, then one under it: the
	 * guest keeps its speed. */
	precopy_throttle_step(&t, 10000, 20000, NULL, 100 * MS);
	precopy_throttle_step(&t, 10000, 1000, NULL, 100 * MS);
	tap_ok(t.pct[0] == 0 && t.max_pct == 0, "throttle: one window over the threshold alone slows nothing");
	struct precopy_throttle slow;
	precopy_throttle_init(&slow, 1, NULL);
	precopy_throttle_step(&slow, 10000, 20000, NULL, PRECOPY_THROTTLE_SUSTAINED_NS);
	tap_ok(slow.pct[0] == 10, "throttle: unless that window lasted a second (a slow link's round): %u%%", slow.pct[0]);
	/* The guest dirties twice what the link moves: from the second window
	 * in a row, up by 10 each window to 99, QEMU's ceiling too (at 95 a
	 * guest writing a 256 MiB working set flat out on this machine still
	 * outran a 40 MB/s link). */
	while (t.pct[0] < 99 && steps < 20) {
		precopy_throttle_step(&t, 10000, 20000, NULL, 100 * MS);
		steps++;
	}
	tap_ok(t.pct[0] == 99 && steps == 11 && t.max_pct == 99,
	       "throttle: from the second window over, 10-point steps to the 99%% cap (%u windows)", steps);
	precopy_throttle_step(&t, 10000, 4000, NULL, 100 * MS);
	tap_ok(t.pct[0] == 99, "throttle: between a quarter and half of the link it holds");
	precopy_throttle_step(&t, 10000, 2000, NULL, 100 * MS);
	tap_ok(t.pct[0] == 94, "throttle: below a quarter it eases by 5");
	tap_ok(precopy_throttle_release(&t) == 1 && t.pct[0] == 0 && t.max_pct == 99,
	       "throttle: release reports the slowed vCPU and keeps the maximum");
	/* Per vCPU: vCPU 0 writes 3000 entries per 100 ms (30000/s), vCPU 1
	 * 100; each vCPU's share is half of the 20000 pages/s link over 2. */
	precopy_throttle_init(&t, 2, ent);
	uint32_t ch = 0;
	ent[0] += 3000;
	ent[1] += 100;
	ch = precopy_throttle_step(&t, 20000, 31000, ent, 100 * MS);
	tap_ok(ch == 0 && t.pct[0] == 0, "throttle: per vCPU too, a first window over its share slows nothing");
	ent[0] += 3000;
	ent[1] += 100;
	ch |= precopy_throttle_step(&t, 20000, 31000, ent, 100 * MS);
	tap_ok(t.pct[0] == 83 && t.pct[1] == 0 && ch == 1,
	       "throttle: per vCPU, only the writer is slowed, at once to what brings 30000 writes/s to its 5000 (%u%%, %u%%)",
	       t.pct[0], t.pct[1]);
	/* Still 3000 per window while throttled: it writes 6 times its share
	 * in the 17 % it runs: 100 - 17/6 = 97. */
	ent[0] += 3000;
	ent[1] += 100;
	precopy_throttle_step(&t, 20000, 31000, ent, 100 * MS);
	tap_ok(t.pct[0] == 97, "throttle: a vCPU still over its share while throttled goes further (%u%%)", t.pct[0]);
	/* Its writes fall to 1000 per window: under its share, above half of it: holds. */
	ent[0] += 400;
	precopy_throttle_step(&t, 20000, 31000, ent, 100 * MS);
	tap_ok(t.pct[0] == 97 && t.throttled_ns == 100 * MS * (83 + 97 + 97) / 100,
	       "throttle: holds once within its share; guest time taken away is summed");
	tap_ok(precopy_throttle_step(&t, 20000, 31000, ent, 0) == 0, "throttle: an empty window changes nothing");
}

/* ---- replay of recorded traces ---- */

static int replay(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	unsigned decisions = 0, steps = 0, bad = 0, throttle_ok = 0;
	struct precopy_throttle t;
	memset(&t, 0, sizeof(t));
	if (!f) {
		tap_ok(0, "replay %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "decide,", 7)) {
			struct precopy_decision_in in = { 0 };
			unsigned round;
			uint64_t expected, t_ns, dl_ns;
			char verdict[32];
			if (sscanf(line + 7,
				   "%u,%" SCNu64 ",%" SCNu64 ",%" SCNu64 ",%" SCNu64 ",%" SCNu64 ",%" SCNu64 ",%" SCNu64
				   ",%" SCNu64 ",%" SCNu64 ",%d,%" SCNu64 ",%" SCNu64 ",%31s",
				   &round, &in.cost.pages, &in.cost.encode_pps, &in.cost.link_Bps, &in.cost.queued_bytes,
				   &in.cost.vcpu_save_ns, &in.cost.vcpu_bytes, &in.cost.rtt_ns, &in.downtime_limit_ns,
				   &expected, &in.drained, &t_ns, &dl_ns, verdict) != 14) {
				bad++;
				continue;
			}
			in.now_ns = t_ns;
			in.deadline_ns = dl_ns;
			uint64_t exp;
			enum precopy_verdict v = precopy_decide(&in, &exp);
			if (exp != expected || strcmp(precopy_verdict_name(v), verdict)) {
				if (bad++ < 3)
					printf("# %s round %u: recorded %s (%" PRIu64 " ns), replayed %s (%" PRIu64 " ns)\n", path,
					       round, verdict, expected, precopy_verdict_name(v), exp);
			}
			decisions++;
		} else if (!strncmp(line, "throttle-init,", 14)) {
			unsigned nv;
			int per;
			uint64_t e0;
			if (sscanf(line + 14, "%u,%d,%" SCNu64, &nv, &per, &e0) != 3) {
				bad++;
				continue;
			}
			throttle_ok = nv == 1; /* the trace holds vCPU 0 only */
			precopy_throttle_init(&t, 1, per ? &e0 : NULL);
		} else if (!strncmp(line, "throttle,", 9) && throttle_ok) {
			unsigned round, pct;
			int per;
			uint64_t link, dirty, e0, dt;
			if (sscanf(line + 9, "%u,%" SCNu64 ",%" SCNu64 ",%d,%" SCNu64 ",%" SCNu64 ",%u", &round, &link, &dirty,
				   &per, &e0, &dt, &pct) != 7) {
				bad++;
				continue;
			}
			precopy_throttle_step(&t, link, dirty, per ? &e0 : NULL, dt);
			if (t.pct[0] != pct && bad++ < 3)
				printf("# %s round %u: recorded throttle %u%%, replayed %u%%\n", path, round, pct, t.pct[0]);
			steps++;
		}
	}
	fclose(f);
	tap_ok(decisions > 0 && !bad, "replay %s: %u decisions and %u throttle steps come out as recorded", path,
	       decisions, steps);
	return 0;
}

/* The working set per window: a made-up guest writing frames 0..99 in
 * every 10 ms harvest (hot) and 100 new frames in each harvest besides
 * (a stream through memory), for 2.05 s. */
static void test_wss(void)
{
	const uint64_t ms = 1000000, lens[] = { 100 * ms, 1000 * ms };
	struct precopy_wss *w;
	uint64_t g[200], next = 1000;
	tap_ok(precopy_wss_new(100000, lens, 2, 0, &w) == 0, "wss: a tracker for 100 ms and 1 s windows");
	for (uint64_t t = 10 * ms; t <= 2050 * ms; t += 10 * ms) {
		for (int i = 0; i < 100; i++)
			g[i] = (uint64_t)i;
		for (int i = 100; i < 200; i++)
			g[i] = next++;
		g[150] = 100000 + 5; /* outside the guest: ignored */
		precopy_wss_add(w, t, g, 200);
	}
	struct precopy_wss_stats s100, s1;
	precopy_wss_get(w, 0, 2050 * ms, &s100);
	precopy_wss_get(w, 1, 2050 * ms, &s1);
	/* A 100 ms window holds 10 harvests (the first 9: the one at 0 ms is
	 * before the first harvest); 1 s holds 100 (99). */
	tap_ok(s100.windows == 20 && s100.median == 100 + 10 * 99 && s100.max == 100 + 10 * 99 && s100.min == 100 + 9 * 99,
	       "wss: 100 ms windows: 20 whole, median %" PRIu64 " (min %" PRIu64 ") distinct frames", s100.median,
	       s100.min);
	tap_ok(s1.windows == 2 && s1.max == 100 + 100 * 99 && s1.min == 100 + 99 * 99,
	       "wss: 1 s windows: 2 whole, %" PRIu64 " and %" PRIu64 " distinct frames", s1.min, s1.max);
	tap_ok(precopy_wss_total(w) == 100 + 205 * 99, "wss: %" PRIu64 " frames written over all", precopy_wss_total(w));
	tap_ok(precopy_wss_hot(w, 2050 * ms, 50) == 100, "wss: the hot set is the 100 frames written in every window (%" PRIu64 ")",
	       precopy_wss_hot(w, 2050 * ms, 50));
	struct precopy_wss_stats none;
	precopy_wss_get(w, 1, 999 * ms, &none);
	tap_ok(none.windows == 0 && none.median == 0, "wss: no whole window yet, no figures");
	precopy_wss_free(w);
	tap_ok(precopy_wss_new(10, (const uint64_t[]){ 2, 1 }, 2, 0, &w) == -EINVAL, "wss: window lengths must ascend");
}

/* A migration predicted from a working-set curve, with precopy_decide. */
static void test_predict(void)
{
	const uint64_t ms = 1000000;
	struct precopy_wss_curve c = { .n = 3, .t_ns = { 100 * ms, 1000 * ms, 10000 * ms }, .pages = { 200, 1600, 4000 } };
	struct precopy_wss_curve one = { .n = 1, .t_ns = { 100 * ms }, .pages = { 200 }, .dirty_pps = 2000, .cap = 1000 };
	tap_ok(precopy_wss_at(&c, 50 * ms) == 100 && precopy_wss_at(&c, 100 * ms) == 200 &&
		       precopy_wss_at(&c, 316228 * 1000) == 900 && precopy_wss_at(&c, 100000 * ms) == 6400 &&
		       precopy_wss_at(&one, 300 * ms) == 600 && precopy_wss_at(&one, 5000 * ms) == 1000,
	       "predict: the working-set curve: proportional below 100 ms, log-linear between and past the last "
	       "window (%" PRIu64 " at 316 ms, %" PRIu64 " at 100 s); from one window at the dirty rate, up to the cap",
	       precopy_wss_at(&c, 316228 * 1000), precopy_wss_at(&c, 100000 * ms));

	/* 10,000 resident pages over 1 Gbit/s at 2 KiB a page: one round of
	 * 164 ms, then 501 dirty pages go in the switchover. */
	struct precopy_predict_in in = { .wss = c, .first_pages = 10000, .link_Bps = 125000000, .wire_bytes_per_page = 2048,
					 .encode_pps = 200000, .rtt_ns = 200000, .vcpu_save_ns = 100000, .vcpu_bytes = 8192,
					 .downtime_limit_ns = 10 * ms, .max_time_ns = 20000 * ms };
	struct precopy_predict_out o;
	int e = precopy_predict(&in, &o);
	uint64_t round1 = (uint64_t)(10000 * 2048.0 / 125000000 * 1e9);
	tap_ok(e == 0 && o.verdict == PRECOPY_SWITCHOVER && o.rounds == 1 && o.final_pages == precopy_wss_at(&c, round1) &&
		       o.downtime_ns <= in.downtime_limit_ns && o.total_ns == round1 + o.downtime_ns &&
		       o.bytes == (uint64_t)((10000 + o.final_pages) * 2048.0),
	       "predict: converges in %u round(s): %" PRIu64 " final pages, downtime %.2f ms, total %.1f ms, %" PRIu64
	       " bytes", o.rounds, o.final_pages, (double)o.downtime_ns / 1e6, (double)o.total_ns / 1e6, o.bytes);

	/* A tighter limit takes more rounds, each shorter. */
	in.downtime_limit_ns = 2 * ms;
	precopy_predict(&in, &o);
	tap_ok(o.verdict == PRECOPY_SWITCHOVER && o.rounds > 1 && o.downtime_ns <= 2 * ms,
	       "predict: a 2 ms limit: %u rounds, downtime %.2f ms", o.rounds, (double)o.downtime_ns / 1e6);

	/* A guest that writes 90,000 pages a second in a 100,000-page set
	 * outruns the link: the rounds stop shrinking, so it needs the throttle. */
	struct precopy_wss_curve big = { .n = 2, .t_ns = { 100 * ms, 1000 * ms }, .pages = { 30000, 90000 }, .cap = 100000 };
	in.wss = big;
	in.first_pages = 100000;
	in.downtime_limit_ns = 10 * ms;
	precopy_predict(&in, &o);
	tap_ok(o.needs_throttle && o.verdict == PRECOPY_CONTINUE && o.rounds == 2,
	       "predict: a guest outrunning the link needs the throttle (after %u rounds, %" PRIu64 " pages dirty)",
	       o.rounds, o.final_pages);
	/* The same guest on a 10x faster link converges. */
	in.link_Bps *= 10;
	in.encode_pps = 2000000;
	precopy_predict(&in, &o);
	tap_ok(!o.needs_throttle && o.verdict == PRECOPY_SWITCHOVER,
	       "predict: on a 10x link it converges: %u rounds, %.0f ms", o.rounds, (double)o.total_ns / 1e6);
	/* --compress auto's probes: 8,192 raw pages from the 8,192nd on, and
	 * again every 147,456: a first round of 20,000 pages holds one. */
	in.wss = c;
	in.link_Bps = 125000000;
	in.encode_pps = 200000;
	in.first_pages = 20000;
	precopy_predict(&in, &o);
	uint64_t plain = o.bytes, plain_t = o.total_ns;
	in.probe_pages = 8192;
	in.probe_every = 18 * 8192;
	in.raw_bytes_per_page = 4112;
	precopy_predict(&in, &o);
	/* Its raw pages, and a little more dirtied in the longer round. */
	uint64_t probe = (uint64_t)(8192 * (4112.0 - 2048));
	tap_ok(o.bytes - plain >= probe && o.bytes - plain < probe + probe / 20 && o.total_ns > plain_t,
	       "predict: one raw probe in a 20,000-page first round: %" PRIu64 " more bytes, %.1f ms more",
	       o.bytes - plain, (double)(o.total_ns - plain_t) / 1e6);
	in.link_Bps = 0;
	tap_ok(precopy_predict(&in, &o) == -EINVAL, "predict: a link of 0 is refused");
}

int main(int argc, char **argv)
{
	static const char *defaults[] = { "tests/data/policy-converge.csv", "tests/data/policy-throttle.csv" };
	const char *srcdir = getenv("srcdir");
	int ntraces = argc > 1 ? argc - 1 : (int)(sizeof(defaults) / sizeof(defaults[0]));

	tap_plan(10 + 10 + 4 + 16 + 7 + 7 + 2 + ntraces);
	test_pages();
	test_decide();
	test_rates();
	test_throttle();
	test_wss();
	test_predict();
	for (int i = 0; i < ntraces; i++) {
		char path[1024];
		if (argc > 1)
			snprintf(path, sizeof(path), "%s", argv[i + 1]);
		else
			snprintf(path, sizeof(path), "%s/%s", srcdir ? srcdir : ".", defaults[i]);
		replay(path);
	}
	return tap_done();
}
