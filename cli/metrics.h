/*
 * cli/metrics.h - what the receiving agent reports for monitoring: its
 * sessions' migrations in and out, bytes, downtime, capacity queries, in
 * the Prometheus text exposition format (version 0.0.4), written
 * atomically to a file (recv --metrics-file) that the node exporter's
 * textfile collector reads.
 *
 * Sessions tell their agent what happened over their socketpair, one line
 * each (metrics_line_*() build them, metrics_take() reads them):
 *   M in ok BYTES          a migration arrived and its guest runs here
 *   M in failed            an incoming migration failed
 *   M query                a capacity query was answered
 *   M out ok BYTES DOWNTIME_US   a VM hosted here migrated onward
 *   M out failed BYTES           ... failed (the guest runs on here)
 *   M out indeterminate BYTES    ... outcome unknown after COMMIT
 *
 * Threads: the agent's loop thread; metrics_line_*() any thread.
 */
#ifndef PMG_CLI_METRICS_H
#define PMG_CLI_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define METRICS_NBUCKETS 11

struct metrics {
	uint64_t in_ok, in_failed, queries;
	uint64_t queries_refused; /* over --max-queries (counted by the agent itself) */
	uint64_t out_ok, out_failed, out_indeterminate;
	uint64_t bytes_in, bytes_out;
	uint64_t downtime_count;
	double downtime_sum_s;
	uint64_t downtime_bucket[METRICS_NBUCKETS]; /* cumulative as exposed: le each bound */
	double start_time_s;
};

/* Upper bounds of the downtime histogram's buckets, seconds. */
extern const double metrics_downtime_le[METRICS_NBUCKETS];

/* Applies one line ("M ..." without the '\n'). 0, or -EINVAL for a line
 * that is not one of the above (ignored). */
int metrics_take(struct metrics *m, const char *line);

/* The agent's gauges, as they are now. */
struct metrics_gauges {
	unsigned sessions;       /* running, those of an earlier agent included */
	unsigned earlier;        /* of those, sessions an earlier agent started (before a restart) */
	unsigned max_sessions;   /* --max-sessions */
	unsigned handshaking;    /* session processes still authenticating */
	unsigned queries;        /* capacity queries, link probes and resolutions being answered */
	unsigned max_queries;    /* --max-queries */
};

/* Writes the exposition to path atomically (path.tmp, then rename), with
 * the gauges g. Returns 0 or -errno. */
int metrics_write(const struct metrics *m, const char *path, const struct metrics_gauges *g);

/* Whether path's directory may hold the metrics: a directory that only
 * its owner may write to (group or others only with the sticky bit). Its
 * owner may be another user (the node exporter's). 0, or -errno with
 * why filled (the directory and what is wrong). */
int metrics_check_dir(const char *path, char *why, size_t len);

/* The lines a session sends (with '\n'); buf >= 96 bytes. */
void metrics_line_in(char *buf, size_t len, int ok, uint64_t bytes);
void metrics_line_query(char *buf, size_t len);
/* result: "ok", "failed" or "indeterminate". */
void metrics_line_out(char *buf, size_t len, const char *result, uint64_t bytes, uint64_t downtime_us);

#endif
