/*
 * cli/estimate.c - `pml-migrate estimate NAME`: what a migration of a
 * running VM would move, measured without moving it. The VM host arms its
 * dirty log for --seconds and answers with the working set per window, the
 * dirty rate, the hot set, and what the log cost the guest
 * (vmhost/estimate.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "compress/adapt.h"
#include "migrate/query.h"
#include "migrate/source.h"
#include "migrate/stream.h"
#include "precopy/predict.h"
#include "vmhost/estimate.h"

/* What the prediction assumes about the switchover where nothing is
 * measured: the link's round trip and a vCPU's saved state. */
#define PREDICT_RTT_NS 500000ull
#define PREDICT_VCPU_SAVE_NS 100000ull
#define PREDICT_VCPU_BYTES 8192ull

static void estimate_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate estimate NAME [--seconds S] [--link RATE | --to HOST:PORT]\n"
		"                            [--downtime MS] [--max-time S] [--json]\n"
		"\n"
		"Measures what a live migration of the running VM NAME would face, without\n"
		"migrating it: its dirty log is armed for S seconds (default 10), harvested\n"
		"every 10 ms as during pre-copy, and disarmed again. Prints the working set\n"
		"(distinct pages written per 100 ms, 1 s and 10 s window: median, min, max),\n"
		"the dirty rate, the hot set (pages written in at least half of the 100 ms\n"
		"windows), and what measuring cost the guest (write faults, the VM host's\n"
		"kernel time per second before and during). The guest keeps running.\n"
		"\n"
		"It then predicts a migration of this guest over a link of RATE: rounds,\n"
		"total time, downtime, bytes, and whether the guest outruns the link (then\n"
		"send's throttle would have to slow it), with the engine's own switchover\n"
		"decision run over simulated rounds (precopy/predict.h).\n"
		"\n"
		"options:\n"
		"  --seconds S     how long to measure, 0.1 to 3600 (default 10)\n"
		"  --link RATE     the link to predict for, bytes per second with K/M/G\n"
		"                  (default 125000000: 1 Gbit/s)\n"
		"  --to HOST:PORT  measure the link instead: after the guest is measured,\n"
		"                  filler is sent to that agent over the migration's TLS for\n"
		"                  --probe-seconds (default 2) and the agent reports how fast\n"
		"                  it arrived; its round trip is used too. With --certs DIR,\n"
		"                  --node NAME (default sender), --peer NAME (default HOST)\n"
		"                  or --insecure, as for send\n"
		"  --downtime MS   the downtime target, as send's (default: send's, 50)\n"
		"  --max-time S    give up after S seconds, as send's (default: send's, 600)\n"
		"  --json          one JSON object (fields in the README)\n"
		"  -h, --help      this text\n"
		"\n"
		"exit codes: 0 measured; 1 refused (not running here, migrating, paused,\n"
		"no dirty log), no such VM, or the guest stopped meanwhile; 2 usage error.\n");
}

static uint64_t num(const char *line, const char *key)
{
	char v[64];
	return json_field(line, key, v, sizeof(v)) == 0 ? strtoull(v, NULL, 10) : 0;
}

static double dbl(const char *line, const char *key)
{
	char v[64];
	return json_field(line, key, v, sizeof(v)) == 0 ? strtod(v, NULL) : 0;
}

static void estimate_print(const char *line)
{
	const char *const *w = vmhost_estimate_window_name;
	char name[80] = "", mode[16] = "";
	json_field(line, "name", name, sizeof(name));
	json_field(line, "dirty_log", mode, sizeof(mode));
	double secs = dbl(line, "seconds");
	printf("== pml-migrate estimate: %s ==\n", name);
	printf("  measured         %.1f s, %s dirty log harvested every %" PRIu64 " ms (%" PRIu64 " harvests)\n", secs,
	       mode, num(line, "harvest_ms"), num(line, "harvests"));
	printf("  memory           %" PRIu64 " MiB, %" PRIu64 " vCPU(s)\n", num(line, "mem_bytes") >> 20, num(line, "vcpus"));
	printf("  pages written    %" PRIu64 " distinct (%.1f MiB)\n", num(line, "pages_written"),
	       (double)num(line, "pages_written") * 4096.0 / 1048576.0);
	printf("  dirty rate       %.0f pages/s (%.1f MB/s) as a 10 ms harvest sees them\n", dbl(line, "dirty_pages_per_s"),
	       dbl(line, "dirty_pages_per_s") * 4096.0 / 1e6);
	for (size_t i = 0; i < VMHOST_ESTIMATE_NWIN; i++) {
		char k[48], k2[48], k3[48], k4[48];
		snprintf(k, sizeof(k), "wss_%s_windows", w[i]);
		snprintf(k2, sizeof(k2), "wss_%s_median_pages", w[i]);
		snprintf(k3, sizeof(k3), "wss_%s_min_pages", w[i]);
		snprintf(k4, sizeof(k4), "wss_%s_max_pages", w[i]);
		uint64_t n = num(line, k);
		if (!n)
			printf("  working set %-5s (shorter than one window)\n", w[i]);
		else
			printf("  working set %-5s median %" PRIu64 " pages (%.1f MiB), min %" PRIu64 ", max %" PRIu64
			       " over %" PRIu64 " windows\n",
			       w[i], num(line, k2), (double)num(line, k2) * 4096.0 / 1048576.0, num(line, k3), num(line, k4), n);
	}
	printf("  hot set          %" PRIu64 " pages written in at least half of the 100 ms windows\n",
	       num(line, "hot_pages"));
	char share[32];
	if (json_field(line, "vcpu0_dirty_share", share, sizeof(share)) == 0) {
		printf("  by vCPU          ");
		for (uint64_t i = 0; i < num(line, "vcpus"); i++) {
			char k[48], k2[48];
			snprintf(k, sizeof(k), "vcpu%" PRIu64 "_dirty_pages", i);
			snprintf(k2, sizeof(k2), "vcpu%" PRIu64 "_dirty_share", i);
			printf("%svCPU %" PRIu64 " %.0f %% (%" PRIu64 " pages)", i ? ", " : "", i, dbl(line, k2) * 100,
			       num(line, k));
		}
		printf("\n");
	} else {
		printf("  by vCPU          not known: the bitmap log cannot tell vCPUs apart\n");
	}
	printf("  to move          %" PRIu64 " resident pages; a written page is %.0f bytes on the wire,"
	       " one encoder %.0f pages/s (%" PRIu64 " sampled)\n",
	       num(line, "resident_pages"), dbl(line, "wire_bytes_per_page"), dbl(line, "encode_pages_per_s"),
	       num(line, "sampled_pages"));
	printf("  cost to guest    %" PRIu64 " write faults; kernel time %.1f ms/s before, %.1f ms/s while measured;"
	       " harvesting %.1f ms of CPU\n",
	       num(line, "write_faults"), dbl(line, "kernel_ms_per_s_before"), dbl(line, "kernel_ms_per_s_during"),
	       dbl(line, "harvest_cpu_ms"));
}

/* The prediction from the VM host's answer: fills in and returns its
 * figures in out; 0, or -EINVAL when the answer lacks what it needs. */
static int estimate_predict(const char *line, uint64_t link, uint64_t rtt_ns, unsigned downtime_ms, unsigned max_time_s,
			    struct precopy_predict_out *out)
{
	struct precopy_predict_in in = { .link_Bps = link, .rtt_ns = rtt_ns,
					 .vcpu_save_ns = PREDICT_VCPU_SAVE_NS * num(line, "vcpus"),
					 .vcpu_bytes = PREDICT_VCPU_BYTES * num(line, "vcpus"),
					 .downtime_limit_ns = (uint64_t)downtime_ms * 1000000ull,
					 .max_time_ns = (uint64_t)max_time_s * 1000000000ull };
	for (unsigned i = 0; i < VMHOST_ESTIMATE_NWIN; i++) {
		char k[48], k2[48];
		snprintf(k, sizeof(k), "wss_%s_windows", vmhost_estimate_window_name[i]);
		snprintf(k2, sizeof(k2), "wss_%s_median_pages", vmhost_estimate_window_name[i]);
		if (!num(line, k))
			continue;
		in.wss.t_ns[in.wss.n] = vmhost_estimate_window_ns[i];
		in.wss.pages[in.wss.n++] = num(line, k2);
	}
	/* The whole measurement is one more window, when longer than the
	 * longest whole one. */
	uint64_t all_ns = (uint64_t)(dbl(line, "seconds") * 1e9);
	if (in.wss.n < PRECOPY_PREDICT_MAX_POINTS && (!in.wss.n || all_ns > in.wss.t_ns[in.wss.n - 1]) &&
	    num(line, "pages_written")) {
		in.wss.t_ns[in.wss.n] = all_ns;
		in.wss.pages[in.wss.n++] = num(line, "pages_written");
	}
	in.wss.dirty_pps = dbl(line, "dirty_pages_per_s");
	in.wss.cap = num(line, "resident_pages");
	in.first_pages = num(line, "resident_pages");
	/* send's default, --compress auto: its probes of raw pages. */
	in.probe_pages = (uint64_t)COMPRESS_ADAPT_WINDOW * STREAM_MAX_BATCH;
	in.probe_every = (uint64_t)(COMPRESS_ADAPT_STEADY + 2) * COMPRESS_ADAPT_WINDOW * STREAM_MAX_BATCH;
	in.raw_bytes_per_page = HV_PAGE_SIZE + STREAM_PAGE_ENTRY_HDR;
	in.wire_bytes_per_page = dbl(line, "wire_bytes_per_page");
	in.encode_pps = (uint64_t)dbl(line, "encode_pages_per_s");
	return precopy_predict(&in, out);
}

int cmd_estimate(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seconds", required_argument, 0, 's' },
		{ "json", no_argument, 0, 'j' },
		{ "link", required_argument, 0, 'l' },
		{ "downtime", required_argument, 0, 'd' },
		{ "max-time", required_argument, 0, 'm' },
		{ "to", required_argument, 0, 't' },
		{ "probe-seconds", required_argument, 0, 'P' },
		{ "certs", required_argument, 0, 'c' },
		{ "node", required_argument, 0, 'n' },
		{ "peer", required_argument, 0, 'p' },
		{ "insecure", no_argument, 0, 'I' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	double secs = 10, probe_s = 2;
	int json = 0, c, link_stated = 0, insecure = 0;
	const char *to = NULL;
	char certs[PATH_MAX] = "", node[65] = "sender", peer[65] = "";
	uint64_t link = 125000000, v;
	struct migrate_src_opts so;
	migrate_src_opts_default(&so);
	char *end;

	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			secs = strtod(optarg, &end);
			if (*end || end == optarg || !(secs >= 0.1 && secs <= 3600)) {
				util_err("estimate: --seconds '%s': must be 0.1 to 3600", optarg);
				return PMG_EXIT_USAGE;
			}
			break;
		case 'j':
			json = 1;
			break;
		case 'l':
			if (cli_parse_size(optarg, &link) < 0 || !link) {
				util_err("estimate: --link '%s': expected bytes per second, e.g. 125M", optarg);
				return PMG_EXIT_USAGE;
			}
			link_stated = 1;
			break;
		case 't': {
			char host[256];
			unsigned port;
			if (xport_split_hostport(optarg, host, sizeof(host), &port) < 0 || !port) {
				util_err("estimate: --to '%s': expected HOST:PORT", optarg);
				return PMG_EXIT_USAGE;
			}
			to = optarg;
			break;
		}
		case 'P':
			probe_s = strtod(optarg, &end);
			if (*end || end == optarg || !(probe_s >= 0.1 && probe_s <= 60)) {
				util_err("estimate: --probe-seconds '%s': must be 0.1 to 60", optarg);
				return PMG_EXIT_USAGE;
			}
			break;
		case 'c':
			if (!realpath(optarg, certs)) {
				util_err("estimate: --certs '%s': %s", optarg, strerror(errno));
				return PMG_EXIT_USAGE;
			}
			break;
		case 'n':
		case 'p':
			if (!util_valid_name(optarg)) {
				util_err("estimate: --%s '%s': not a valid certificate name", c == 'n' ? "node" : "peer", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(c == 'n' ? node : peer, sizeof(node), "%s", optarg);
			break;
		case 'I':
			insecure = 1;
			break;
		case 'd':
			if (cli_parse_uint(optarg, 1, 60000, &v) < 0) {
				util_err("estimate: --downtime '%s': expected 1..60000 ms", optarg);
				return PMG_EXIT_USAGE;
			}
			so.downtime_ms = (unsigned)v;
			break;
		case 'm':
			if (cli_parse_uint(optarg, 1, 86400, &v) < 0) {
				util_err("estimate: --max-time '%s': expected 1..86400 s", optarg);
				return PMG_EXIT_USAGE;
			}
			so.max_time_s = (unsigned)v;
			break;
		case 'h':
			estimate_usage(stdout);
			return PMG_EXIT_OK;
		default:
			util_err("estimate: unknown option or missing value '%s' (see --help)", argv[optind - 1]);
			return PMG_EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		estimate_usage(stderr);
		return PMG_EXIT_USAGE;
	}
	const char *name = argv[optind];
	if (!util_valid_name(name)) {
		util_err("estimate: invalid VM name '%s'", name);
		return PMG_EXIT_USAGE;
	}
	if (to && link_stated) {
		util_err("estimate: --link states the link and --to measures it: give one");
		return PMG_EXIT_USAGE;
	}
	if (to && !insecure && !certs[0]) {
		util_err("estimate: --to needs --certs DIR (or --insecure for plaintext)");
		return PMG_EXIT_USAGE;
	}
	int fd = util_ctl_connect("estimate", name);
	if (fd < 0)
		return PMG_EXIT_FAIL;
	char line[8192], buf[8192];
	unsigned ms = (unsigned)(secs * 1000 + 0.5);
	int n = snprintf(line, sizeof(line), "estimate %u\n", ms);
	if (write(fd, line, (size_t)n) != n) {
		util_err("estimate: write: %s", strerror(errno));
		close(fd);
		return PMG_EXIT_FAIL;
	}
	size_t have = 0;
	/* The measurement, plus its 0.2 s baseline, plus room. */
	int got = util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), (int)ms + 30000);
	close(fd);
	if (got == -ETIMEDOUT) {
		util_err("estimate: no answer from '%s' within %.0f s", name, secs + 30);
		return PMG_EXIT_FAIL;
	}
	if (got <= 0) {
		util_err("estimate: '%s' closed the connection without answering (did it stop?)", name);
		return PMG_EXIT_FAIL;
	}
	if (!cli_answer_ok("estimate", line, json))
		return PMG_EXIT_FAIL;
	struct precopy_predict_out p;
	/* The link: measured to the agent (after the guest was measured, so
	 * the probe's traffic is not part of what the guest paid), stated,
	 * or the default. */
	uint64_t rtt_ns = PREDICT_RTT_NS;
	unsigned rtt_us = 0;
	if (to) {
		char err[400];
		struct stream_capacity cap;
		struct migrate_query_auth auth = { insecure, certs, node, peer };
		int e = migrate_query_probe(&auth, to, probe_s, &cap, &link, &rtt_us, err, sizeof(err));
		if (e < 0) {
			util_err("estimate: measuring the link to %s: %s", to, err);
			return PMG_EXIT_FAIL;
		}
		if (rtt_us)
			rtt_ns = (uint64_t)rtt_us * 1000;
	}
	int pe = estimate_predict(line, link, rtt_ns, so.downtime_ms, so.max_time_s, &p);
	if (json) {
		/* The VM host's figures, then the prediction's. */
		json_error_t jerr;
		json_t *o = json_loads(line, 0, &jerr);
		if (o && pe == 0) {
			json_object_set_new(o, "link_bytes_per_s", json_integer((json_int_t)link));
			json_object_set_new(o, "link_source", json_string(to ? "measured" : link_stated ? "stated" : "default"));
			if (to) {
				json_object_set_new(o, "link_measured_to", json_string(to));
				json_object_set_new(o, "link_rtt_us", json_integer(rtt_us));
			}
			json_object_set_new(o, "downtime_target_ms", json_integer(so.downtime_ms));
			json_object_set_new(o, "predicted_verdict",
					    json_string(p.needs_throttle ? "needs-throttle" : precopy_verdict_name(p.verdict)));
			json_object_set_new(o, "predicted_needs_throttle", json_boolean(p.needs_throttle));
			json_object_set_new(o, "predicted_rounds", json_integer(p.rounds));
			json_object_set_new(o, "predicted_total_time_ms", json_real((double)p.total_ns / 1e6));
			json_object_set_new(o, "predicted_downtime_ms", json_real((double)p.downtime_ns / 1e6));
			json_object_set_new(o, "predicted_bytes", json_integer((json_int_t)p.bytes));
			json_object_set_new(o, "predicted_final_pages", json_integer((json_int_t)p.final_pages));
		}
		char *t = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6)) : NULL;
		puts(t ? t : line);
		free(t);
		json_decref(o);
	} else {
		estimate_print(line);
		if (to)
			printf("  link             %.1f MB/s measured to %s over %.1f s, round trip %.3f ms\n", (double)link / 1e6,
			       to, probe_s, rtt_us / 1000.0);
		if (pe == 0 && p.needs_throttle)
			printf("  prediction       over %.1f MB/s the guest outruns the link: after %u rounds %" PRIu64
			       " pages are still dirty and the next round would not shrink; send's throttle would have to"
			       " slow it (%.1f s so far, %.1f MB sent)\n",
			       (double)link / 1e6, p.rounds, p.final_pages, (double)p.total_ns / 1e9, (double)p.bytes / 1e6);
		else if (pe == 0)
			printf("  prediction       over %.1f MB/s, downtime target %u ms: %s after %u round(s), total %.1f ms,"
			       " downtime %.2f ms (%" PRIu64 " final pages), %.1f MB sent\n",
			       (double)link / 1e6, so.downtime_ms, precopy_verdict_name(p.verdict), p.rounds,
			       (double)p.total_ns / 1e6, (double)p.downtime_ns / 1e6, p.final_pages, (double)p.bytes / 1e6);
		else
			printf("  prediction       none: the measurement lacks a working set or a sample\n");
	}
	return PMG_EXIT_OK;
}
