/*
 * cli/metrics.c - the agent's counters and their Prometheus exposition
 * (see metrics.h).
 */
#include <errno.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/metrics.h"
#include "util/rundir.h"

const double metrics_downtime_le[METRICS_NBUCKETS] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
						       0.1,   0.25,   0.5,   1,    2.5 };

int metrics_take(struct metrics *m, const char *line)
{
	char dir[8], res[16];
	unsigned long long bytes = 0, dt_us = 0;
	if (!strcmp(line, "M query")) {
		m->queries++;
		return 0;
	}
	int n = sscanf(line, "M %7s %15s %llu %llu", dir, res, &bytes, &dt_us);
	if (n < 2)
		return -EINVAL;
	if (!strcmp(dir, "in")) {
		if (!strcmp(res, "ok") && n >= 3) {
			m->in_ok++;
			m->bytes_in += bytes;
		} else if (!strcmp(res, "failed")) {
			m->in_failed++;
		} else {
			return -EINVAL;
		}
		return 0;
	}
	if (strcmp(dir, "out") || n < 3)
		return -EINVAL;
	if (!strcmp(res, "ok") && n == 4) {
		double s = (double)dt_us / 1e6;
		m->out_ok++;
		m->downtime_count++;
		m->downtime_sum_s += s;
		for (int i = 0; i < METRICS_NBUCKETS; i++)
			if (s <= metrics_downtime_le[i])
				m->downtime_bucket[i]++;
	} else if (!strcmp(res, "failed")) {
		m->out_failed++;
	} else if (!strcmp(res, "indeterminate")) {
		m->out_indeterminate++;
	} else {
		return -EINVAL;
	}
	m->bytes_out += bytes;
	return 0;
}

struct metrics_out {
	const struct metrics *m;
	const struct metrics_gauges *g;
};

static void metrics__family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled sample. */
static void metrics__one(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	metrics__family(f, name, type, help);
	fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void metrics__emit(FILE *f, void *opaque)
{
	const struct metrics_out *o = opaque;
	const struct metrics *m = o->m;
	metrics__family(f, "pml_migrate_migrations_in_total", "counter",
			"Migrations received by this agent, by result (ok: the guest runs here).");
	fprintf(f, "pml_migrate_migrations_in_total{result=\"ok\"} %" PRIu64 "\n", m->in_ok);
	fprintf(f, "pml_migrate_migrations_in_total{result=\"failed\"} %" PRIu64 "\n", m->in_failed);
	metrics__family(f, "pml_migrate_migrations_out_total", "counter",
			"Migrations onward of VMs this agent received, by result (failed: the guest runs on here; "
			"indeterminate: COMMIT sent, no RUNNING).");
	fprintf(f, "pml_migrate_migrations_out_total{result=\"ok\"} %" PRIu64 "\n", m->out_ok);
	fprintf(f, "pml_migrate_migrations_out_total{result=\"failed\"} %" PRIu64 "\n", m->out_failed);
	fprintf(f, "pml_migrate_migrations_out_total{result=\"indeterminate\"} %" PRIu64 "\n", m->out_indeterminate);
	metrics__family(f, "pml_migrate_received_bytes_total", "counter",
			"Bytes received on the wire by completed incoming migrations.");
	fprintf(f, "pml_migrate_received_bytes_total %" PRIu64 "\n", m->bytes_in);
	metrics__family(f, "pml_migrate_sent_bytes_total", "counter",
			"Bytes sent on the wire by outgoing migrations, whatever their result.");
	fprintf(f, "pml_migrate_sent_bytes_total %" PRIu64 "\n", m->bytes_out);
	metrics__family(f, "pml_migrate_downtime_seconds", "histogram",
			"Downtime of outgoing migrations that succeeded: guest paused here to running there.");
	for (int i = 0; i < METRICS_NBUCKETS; i++)
		fprintf(f, "pml_migrate_downtime_seconds_bucket{le=\"%g\"} %" PRIu64 "\n", metrics_downtime_le[i],
			m->downtime_bucket[i]);
	fprintf(f, "pml_migrate_downtime_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", m->downtime_count);
	fprintf(f, "pml_migrate_downtime_seconds_sum %.6f\n", m->downtime_sum_s);
	fprintf(f, "pml_migrate_downtime_seconds_count %" PRIu64 "\n", m->downtime_count);
	metrics__family(f, "pml_migrate_capacity_queries_total", "counter", "Capacity queries answered (evacuate).");
	fprintf(f, "pml_migrate_capacity_queries_total %" PRIu64 "\n", m->queries);
	metrics__one(f, "pml_migrate_queries_refused_total", "counter",
		     "Capacity queries, link probes and resolutions refused over --max-queries.", m->queries_refused);
	metrics__one(f, "pml_migrate_sessions", "gauge",
		     "Incoming migrations and VMs they brought, running now (an earlier agent's included).", o->g->sessions);
	metrics__one(f, "pml_migrate_earlier_sessions", "gauge",
		     "Of those, sessions an earlier agent started (they outlived its restart).", o->g->earlier);
	metrics__one(f, "pml_migrate_max_sessions", "gauge", "The agent's --max-sessions.", o->g->max_sessions);
	metrics__one(f, "pml_migrate_handshakes", "gauge", "Connections still authenticating.", o->g->handshaking);
	metrics__one(f, "pml_migrate_queries", "gauge", "Capacity queries, link probes and resolutions being answered now.",
		     o->g->queries);
	metrics__one(f, "pml_migrate_max_queries", "gauge", "The agent's --max-queries.", o->g->max_queries);
	metrics__family(f, "pml_migrate_agent_start_time_seconds", "gauge", "When the agent started, Unix time.");
	fprintf(f, "pml_migrate_agent_start_time_seconds %.3f\n", m->start_time_s);
}

int metrics_check_dir(const char *path, char *why, size_t len)
{
	char dir[300];
	const char *slash = strrchr(path, '/');
	struct stat st;
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (stat(dir, &st) < 0) {
		int e = -errno;
		snprintf(why, len, "its directory %s: %s", dir, strerror(errno));
		return e;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(why, len, "%s is not a directory", dir);
		return -ENOTDIR;
	}
	/* Its owner (the exporter's user, say) decides what is in it anyway;
	 * anyone else who may write there could replace what it reads. */
	if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
		snprintf(why, len, "its directory %s is writable by %s (mode %04o): anyone there could replace the "
				   "metrics; use a directory only its owner can write to",
			 dir, st.st_mode & S_IWOTH ? "others" : "its group", (unsigned)(st.st_mode & 07777));
		return -EACCES;
	}
	return 0;
}

int metrics_write(const struct metrics *m, const char *path, const struct metrics_gauges *g)
{
	struct metrics_out o = { m, g };
	return rundir_write_atomic_mode(AT_FDCWD, path, 0644, metrics__emit, &o); /* the exporter reads it */
}

void metrics_line_in(char *buf, size_t len, int ok, uint64_t bytes)
{
	if (ok)
		snprintf(buf, len, "M in ok %" PRIu64 "\n", bytes);
	else
		snprintf(buf, len, "M in failed\n");
}

void metrics_line_query(char *buf, size_t len) { snprintf(buf, len, "M query\n"); }

void metrics_line_out(char *buf, size_t len, const char *result, uint64_t bytes, uint64_t downtime_us)
{
	if (!strcmp(result, "ok"))
		snprintf(buf, len, "M out ok %" PRIu64 " %" PRIu64 "\n", bytes, downtime_us);
	else
		snprintf(buf, len, "M out %s %" PRIu64 "\n", result, bytes);
}
