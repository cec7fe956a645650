/*
 * migrate/stats.h - the sending side's figures, in one struct, and the
 * one table that names them: every progress event, the final report and
 * send's human summary are written from it, so a field is named once.
 *
 * The engine fills a struct migrate_stats (migrate/source.c) and writes
 * it as one of the events below; readers (cli/send.c, scripts through
 * --json) see the JSON keys of the table. The JSON is documented in the
 * README (send).
 *
 * Threads: none of its own; a struct belongs to its caller.
 */
#ifndef PMG_MIGRATE_STATS_H
#define PMG_MIGRATE_STATS_H

#include <stdint.h>
#include <stdio.h>
#include "util/json.h"

/* Which event a field appears in. */
enum migrate_event {
	MIGRATE_EV_PROGRESS = 1,  /* {"event":"progress","phase":"precopy"|"round"|"switchover",...} */
	MIGRATE_EV_LINK_LOST = 2, /* {"event":"progress","phase":"link_lost",...} */
	MIGRATE_EV_RESUMED = 4,   /* {"event":"progress","phase":"resumed",...} */
	MIGRATE_EV_RESULT = 8,    /* {"event":"result",...}: the final report */
};

struct migrate_stats {
	const char *phase;          /* precopy, round, switchover; link_lost, resumed */
	const char *result;         /* migrated, failed, indeterminate */
	const char *error;          /* why it failed, or NULL */
	const char *reason;         /* link_lost: why */
	const char *name, *target, *dirty_log;
	double total_time_ms, setup_time_ms, downtime_ms, downtime_min_ms, expected_downtime_ms;
	double final_send_ms, state_saved_ms, ready_wait_ms, commit_wait_ms, rtt_ms, link_down_ms, elapsed_ms;
	double throughput_mbps, compression_ratio, harvest_time_ms, throttle_time_ms;
	uint64_t round;             /* the current (progress) or last (report: "rounds") round */
	uint64_t remaining_pages, deferred_pages, final_pages;
	uint64_t pages_sent, zero_pages, lz4_pages, bytes_sent, bytes_on_wire;
	uint64_t dirty_rate_pps, harvests, deferred_hot_pages, verified_chunks, pages_resent;
	uint64_t throttle_pct, throttle_max_pct, streams, reconnects;
	int tls, forced_switchover;
};

/* Writes s as the event ev (one line of JSON, see json.h) into j, which
 * the caller began and ends. */
void migrate_stats_write(const struct migrate_stats *s, enum migrate_event ev, struct json *j);
/* The same as a malloc'd line (no '\n'); NULL when out of memory. */
char *migrate_stats_line(const struct migrate_stats *s, enum migrate_event ev);

/* Prints a final report (the JSON line) for people: one labelled line per
 * field present. */
void migrate_stats_print_human(const char *report, FILE *f);

#endif
