/*
 * migrate/stats.c - the table of the sending side's figures (contract in
 * stats.h).
 */
#include <stddef.h>
#include <stdlib.h>
#include "migrate/stats.h"

enum field_type { F_STR, F_U64, F_F64, F_F64_1, F_BOOL };

#define P MIGRATE_EV_PROGRESS
#define L MIGRATE_EV_LINK_LOST
#define S MIGRATE_EV_RESUMED
#define R MIGRATE_EV_RESULT
#define FIELD(key, member, type, in, label) { key, offsetof(struct migrate_stats, member), type, in, label }

/* In the order they appear in each event. label NULL: not in the human
 * summary. */
static const struct field {
	const char *key;
	size_t off;
	enum field_type type;
	unsigned in;
	const char *label;
} fields[] = {
	FIELD("phase", phase, F_STR, P | L | S, NULL),
	FIELD("result", result, F_STR, R, "result"),
	FIELD("error", error, F_STR, R, "error"),
	FIELD("name", name, F_STR, R, NULL),
	FIELD("target", target, F_STR, R, "destination"),
	FIELD("round", round, F_U64, P, NULL),
	FIELD("remaining_pages", remaining_pages, F_U64, P, NULL),
	FIELD("deferred_pages", deferred_pages, F_U64, P, NULL),
	FIELD("total_time_ms", total_time_ms, F_F64, R, "total time (ms)"),
	FIELD("setup_time_ms", setup_time_ms, F_F64, R, "setup time (ms)"),
	FIELD("downtime_ms", downtime_ms, F_F64, R, "downtime (ms)"),
	FIELD("expected_downtime_ms", expected_downtime_ms, F_F64, P | R, "expected downtime (ms)"),
	FIELD("rounds", round, F_U64, R, "rounds"),
	FIELD("pages_sent", pages_sent, F_U64, P | R, "pages sent"),
	FIELD("zero_pages", zero_pages, F_U64, R, "zero pages"),
	FIELD("lz4_pages", lz4_pages, F_U64, R, "LZ4 pages"),
	FIELD("bytes_sent", bytes_sent, F_U64, R, "bytes sent"),
	FIELD("bytes_on_wire", bytes_on_wire, F_U64, P | R, "bytes on wire"),
	FIELD("compression_ratio", compression_ratio, F_F64, R, "compression ratio"),
	FIELD("throughput_mbps", throughput_mbps, F_F64_1, P | R, "throughput (Mbit/s)"),
	FIELD("dirty_rate_pages_per_s", dirty_rate_pps, F_U64, P | R, "dirty rate (pages/s)"),
	FIELD("dirty_log", dirty_log, F_STR, R, "dirty log"),
	FIELD("harvests", harvests, F_U64, R, "harvests"),
	FIELD("harvest_time_ms", harvest_time_ms, F_F64, R, "harvest time (ms)"),
	FIELD("deferred_hot_pages", deferred_hot_pages, F_U64, R, "hot pages held back"),
	FIELD("throttle_pct", throttle_pct, F_U64, P, NULL),
	FIELD("throttle_max_pct", throttle_max_pct, F_U64, R, "max vCPU throttle (%)"),
	FIELD("throttle_time_ms", throttle_time_ms, F_F64_1, R, NULL),
	FIELD("streams", streams, F_U64, R, "streams"),
	FIELD("tls", tls, F_BOOL, R, "TLS"),
	FIELD("verified_chunks", verified_chunks, F_U64, R, "verified chunks"),
	FIELD("forced_switchover", forced_switchover, F_BOOL, R, NULL),
	FIELD("final_pages", final_pages, F_U64, R, NULL),
	FIELD("final_send_ms", final_send_ms, F_F64, R, NULL),
	FIELD("state_saved_ms", state_saved_ms, F_F64, R, NULL),
	FIELD("ready_wait_ms", ready_wait_ms, F_F64, R, NULL),
	FIELD("commit_wait_ms", commit_wait_ms, F_F64, R, NULL),
	FIELD("rtt_ms", rtt_ms, F_F64, R, NULL),
	FIELD("downtime_min_ms", downtime_min_ms, F_F64, R, NULL),
	FIELD("reconnects", reconnects, F_U64, P | L | S | R, "reconnects"),
	FIELD("reason", reason, F_STR, L, NULL),
	FIELD("pages_resent", pages_resent, F_U64, S | R, "pages resent (lost links)"),
	FIELD("link_down_ms", link_down_ms, F_F64_1, S | R, "link down (ms)"),
	FIELD("elapsed_ms", elapsed_ms, F_F64_1, P | L | S, NULL),
};

void migrate_stats_write(const struct migrate_stats *s, enum migrate_event ev, struct json *j)
{
	json_str(j, "event", ev == MIGRATE_EV_RESULT ? "result" : "progress");
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		const struct field *f = &fields[i];
		const char *p = (const char *)s + f->off;
		if (!(f->in & ev))
			continue;
		switch (f->type) {
		case F_STR: {
			const char *v = *(const char *const *)p;
			if (v) /* absent rather than empty: no error, no reason */
				json_str(j, f->key, v);
			break;
		}
		case F_U64: json_u64(j, f->key, *(const uint64_t *)p); break;
		case F_F64: json_f64(j, f->key, *(const double *)p); break;
		case F_F64_1: json_f64(j, f->key, (double)(int64_t)(*(const double *)p * 10.0 + 0.5) / 10.0); break;
		case F_BOOL: json_bool(j, f->key, *(const int *)p); break;
		}
	}
}

char *migrate_stats_line(const struct migrate_stats *s, enum migrate_event ev)
{
	struct json j;
	json_begin_str(&j);
	migrate_stats_write(s, ev, &j);
	return json_end_str(&j);
}

void migrate_stats_print_human(const char *report, FILE *out)
{
	char v[600];
	fprintf(out, "\n== pml-migrate send ==\n");
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].label && (fields[i].in & MIGRATE_EV_RESULT) &&
		    json_field(report, fields[i].key, v, sizeof(v)) == 0)
			fprintf(out, "  %-24s %s\n", fields[i].label, v);
}
