/*
 * cli/send.c - `pml-migrate send NAME HOST:PORT`: asks the process that
 * hosts VM NAME (its control socket) to migrate it live, and shows the
 * progress and the final report. The migration itself runs in that
 * process, which alone can read the VM's memory and dirty log.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include "cli/commands.h"
#include "hv/hv.h"
#include "cli/util.h"
#include "migrate/source.h"
#include "migrate/stats.h"

static void send_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate send NAME HOST:PORT [options]\n"
		"\n"
		"Migrates the running VM NAME (started with 'pml-migrate run' or received by an\n"
		"agent on this host) live to the agent at HOST:PORT ('pml-migrate recv').\n"
		"\n"
		"options:\n"
		"  --downtime MS          switch over once the expected downtime is at most MS\n"
		"                         milliseconds (default 50)\n"
		"  --max-time S           give up after S seconds, whatever the destination does\n"
		"                         (even if it stops reading); the guest keeps running\n"
		"                         here unless COMMIT was already sent; after COMMIT the\n"
		"                         wait for RUNNING ends there too, at least 2 s after\n"
		"                         COMMIT and at most 30 s (default 600)\n"
		"  --max-bandwidth RATE   cap the send rate, bytes per second with K/M/G\n"
		"                         suffixes (default: unlimited)\n"
		"  --streams N            parallel connections, 1..8 (default 1)\n"
		"  --compress MODE        auto (default: LZ4 while it speeds things up), on, off\n"
		"  --verify               the destination checks its memory page by page\n"
		"                         against this side's at switchover (costs downtime)\n"
		"  --no-throttle          never slow the guest's vCPUs to make it converge\n"
		"  --no-resume            fail on a lost connection instead of reconnecting\n"
		"  --link-timeout S       declare the link lost when the agent has sent nothing\n"
		"                         for S seconds (default 10; it sends every second)\n"
		"  --setup-timeout S      fail when the agent has not answered within S seconds\n"
		"                         of starting: connect, TLS handshake, HELLO (default 15)\n"
		"  --certs DIR            certificate directory (ca.pem, NODE.pem, NODE.key)\n"
		"  --node NAME            our certificate's name in DIR (default: sender)\n"
		"  --peer NAME            name the agent's certificate must carry (default: HOST)\n"
		"  --insecure             plaintext, no authentication (the agent must agree)\n"
		"  --json                 one JSON object per progress event, then the report\n"
		"  -h, --help             this text\n"
		"\n"
		"A connection lost before the destination said READY is resumed: send\n"
		"reconnects to the agent's session (backing off, within --max-time), resends\n"
		"only what did not arrive and carries on; a paused switchover first resumes\n"
		"the guest here. A destination that refuses the reconnection (its session is\n"
		"gone) fails the migration. Reconnects are counted in the progress events\n"
		"and the report.\n"
		"\n"
		"On a Xen dom0, NAME may also be a domain that 'xl create' made and no\n"
		"pml-migrate process hosts (its name as 'xl list' shows it): send then starts\n"
		"'pml-migrate attach --live --once NAME' to host its migration, with the\n"
		"guest's help (see 'pml-migrate attach --help'); once it ended the domain has\n"
		"moved away, or runs on here as before.\n"
		"\n"
		"Ctrl-C (SIGINT) cancels the migration, as 'pml-migrate ctl NAME cancel' does,\n"
		"unless COMMIT was already sent; the report follows and the guest keeps running\n"
		"here. A second Ctrl-C ends send at once (the cancel still goes ahead).\n"
		"\n"
		"exit codes: 0 migrated (the guest runs on the destination);\n"
		"            1 failed (the guest still runs here);\n"
		"            2 usage error;\n"
		"            3 indeterminate: COMMIT was sent but no answer came back, so the\n"
		"              guest runs on the destination or nowhere - never on both.\n");
}

static int send__add(char *cmd, size_t len, const char *key, const char *val)
{
	struct migrate_src_opts o;
	char err[512];
	migrate_src_opts_default(&o);
	if (migrate_src_opt_set(&o, key, val, err, sizeof(err)) < 0) {
		util_err("send: %s", err);
		return -EINVAL;
	}
	size_t used = strlen(cmd);
	if ((size_t)snprintf(cmd + used, len - used, " %s=%s", key, val) >= len - used) {
		util_err("send: options too long");
		return -E2BIG;
	}
	return 0;
}

static volatile sig_atomic_t send_interrupted;

static void send__on_sigint(int sig)
{
	(void)sig;
	send_interrupted = 1;
	signal(SIGINT, SIG_DFL); /* a second ^C ends send itself */
}

/* No pml-migrate process hosts NAME on this Xen host: if the toolstack
 * has a domain of that name, a host for its migration only (attach --live
 * --once, in a session of its own so a ^C here reaches it through the
 * control socket only). Returns its control connection, -ENOENT when
 * there is no such domain, -EAGAIN when the host failed (it said why). */
static int send__host_domain(char *name, size_t len)
{
	/* A domain id: its name names the host's control socket. */
	if (hv_domain_name("xen", name, name, len) <= 0)
		return -ENOENT;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		setsid();
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		execl("/proc/self/exe", "pml-migrate", "attach", "--live", "--once", name, (char *)NULL);
		_exit(127);
	}
	/* Until its control socket answers, or it gives up (it reads the
	 * domain's memory map and configuration first: seconds, bounded by
	 * what it does, not by a guess here). */
	for (;;) {
		int fd = util_ctl_connect(NULL, name);
		if (fd >= 0)
			return fd;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			util_err("send: could not host domain '%s' for its migration (attach --live exited %d)", name,
				 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			return -EAGAIN;
		}
		usleep(50000);
	}
}

/* ^C: ask the VM's host to cancel, on a connection of its own (the
 * migration's connection carries events). The result still follows. */
static void send__cancel(const char *name)
{
	char buf[4096], line[4096];
	size_t have = 0;
	int fd = util_ctl_connect("send", name);
	if (fd < 0)
		return;
	if (write(fd, "cancel\n", 7) == 7 && util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), 5000) > 0) {
		if (strstr(line, "\"ok\":true")) {
			util_err("send: cancelling the migration of '%s' (the guest keeps running here)", name);
		} else {
			char err[600] = "refused";
			json_field(line, "error", err, sizeof(err));
			util_err("send: cannot cancel: %s", err);
		}
	}
	close(fd);
}

static double send__num(const char *json, const char *key)
{
	char v[64];
	return json_field(json, key, v, sizeof(v)) ? 0 : strtod(v, NULL);
}

static void send__bar(const char *ev)
{
	double sent = send__num(ev, "pages_sent"), rem = send__num(ev, "remaining_pages");
	double frac = sent + rem > 0 ? sent / (sent + rem) : 0;
	char bar[21];
	for (int i = 0; i < 20; i++)
		bar[i] = i < (int)(frac * 20) ? '#' : '.';
	bar[20] = 0;
	char phase[32] = "";
	json_field(ev, "phase", phase, sizeof(phase));
	char rec[32] = "";
	if (send__num(ev, "reconnects") > 0)
		snprintf(rec, sizeof(rec), " reconnects %.0f", send__num(ev, "reconnects"));
	fprintf(stderr, "\r  round %-4.0f [%s] remaining %-8.0f %7.0f Mbit/s  dirty %7.0f p/s  expected %7.1f ms  throttle %2.0f%%%s %-10s",
		send__num(ev, "round"), bar, rem + send__num(ev, "deferred_pages"), send__num(ev, "throughput_mbps"),
		send__num(ev, "dirty_rate_pages_per_s"), send__num(ev, "expected_downtime_ms"),
		send__num(ev, "throttle_pct"), rec, phase);
	fflush(stderr);
}

/* A lost link and its resumption get a line of their own, tty or not. */
static void send__link(const char *ev, const char *phase, int tty)
{
	char why[300] = "";
	if (tty)
		fputc('\n', stderr);
	if (!strcmp(phase, "link_lost")) {
		json_field(ev, "reason", why, sizeof(why));
		fprintf(stderr, "  link lost at %.1f s (%s): reconnecting\n", send__num(ev, "elapsed_ms") / 1000, why);
	} else {
		fprintf(stderr, "  link resumed at %.1f s (reconnect %.0f, %.0f pages resent, down %.0f ms in all)\n",
			send__num(ev, "elapsed_ms") / 1000, send__num(ev, "reconnects"), send__num(ev, "pages_resent"),
			send__num(ev, "link_down_ms"));
	}
}

int cmd_send(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "downtime", required_argument, 0, 'd' },
		{ "max-time", required_argument, 0, 't' },
		{ "max-bandwidth", required_argument, 0, 'b' },
		{ "streams", required_argument, 0, 's' },
		{ "compress", required_argument, 0, 'z' },
		{ "verify", no_argument, 0, 'V' },
		{ "no-throttle", no_argument, 0, 'T' },
		{ "no-resume", no_argument, 0, 'R' },
		{ "link-timeout", required_argument, 0, 'L' },
		{ "setup-timeout", required_argument, 0, 'S' },
		{ "certs", required_argument, 0, 'c' },
		{ "node", required_argument, 0, 'n' },
		{ "peer", required_argument, 0, 'p' },
		{ "insecure", no_argument, 0, 'I' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	char cmd[2048] = "migrate", num[32], certs[PATH_MAX] = "", node[65] = "sender";
	int c, json = 0, insecure = 0;
	uint64_t v;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		const char *key = NULL, *val = optarg;
		switch (c) {
		case 'd': key = "downtime"; break;
		case 't': key = "max_time"; break;
		case 's': key = "streams"; break;
		case 'z': key = "compress"; break;
		case 'p': key = "peer"; break;
		case 'V': key = "verify"; val = "1"; break;
		case 'T': key = "throttle"; val = "0"; break;
		case 'R': key = "resume"; val = "0"; break;
		case 'L': key = "link_timeout"; break;
		case 'S': key = "setup_timeout"; break;
		case 'I': insecure = 1; break;
		case 'j': json = 1; break;
		case 'b':
			if (cli_parse_size(optarg, &v) < 0) {
				util_err("send: --max-bandwidth '%s': expected bytes per second, e.g. 500M", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
			key = "max_bandwidth";
			val = num;
			break;
		case 'c':
			if (!realpath(optarg, certs)) {
				util_err("send: --certs '%s': %s", optarg, strerror(errno));
				return PMG_EXIT_USAGE;
			}
			break;
		case 'n':
			snprintf(node, sizeof(node), "%s", optarg);
			break;
		case 'h':
			send_usage(stdout);
			return PMG_EXIT_OK;
		default:
			if (optopt)
				util_err("send: option '-%c' is unknown or needs a value (see 'pml-migrate send --help')", optopt);
			else
				util_err("send: unknown option '%s' (see 'pml-migrate send --help')", argv[optind - 1]);
			return PMG_EXIT_USAGE;
		}
		if (key && send__add(cmd, sizeof(cmd), key, val) < 0)
			return PMG_EXIT_USAGE;
	}
	if (argc - optind != 2) {
		util_err("send: expected NAME HOST:PORT (see 'pml-migrate send --help')");
		return PMG_EXIT_USAGE;
	}
	const char *target = argv[optind + 1];
	char name[256];
	snprintf(name, sizeof(name), "%s", argv[optind]);
	if (!util_valid_name(name)) {
		util_err("send: invalid VM name '%s'", name);
		return PMG_EXIT_USAGE;
	}
	if (send__add(cmd, sizeof(cmd), "target", target) < 0)
		return PMG_EXIT_USAGE;
	if (insecure) {
		if (send__add(cmd, sizeof(cmd), "insecure", "1") < 0)
			return PMG_EXIT_USAGE;
	} else {
		if (!certs[0]) {
			util_err("send: --certs DIR is required (or --insecure for plaintext)");
			return PMG_EXIT_USAGE;
		}
		if (send__add(cmd, sizeof(cmd), "certs", certs) < 0 || send__add(cmd, sizeof(cmd), "node", node) < 0)
			return PMG_EXIT_USAGE;
	}

	int fd = util_ctl_connect(NULL, name);
	if (fd < 0 && !strcmp(hv_host_backend(), "xen"))
		fd = send__host_domain(name, sizeof(name));
	if (fd < 0 && fd != -EAGAIN)
		fd = util_ctl_connect("send", name); /* says why */
	if (fd < 0)
		return PMG_EXIT_FAIL;
	size_t n = strlen(cmd);
	cmd[n++] = '\n';
	if (write(fd, cmd, n) != (ssize_t)n) {
		util_err("send: writing to '%s': %s", name, strerror(errno));
		close(fd);
		return PMG_EXIT_FAIL;
	}
	char buf[65536], line[8192], res[32];
	size_t have = 0;
	int tty = !json && isatty(2), rc = PMG_EXIT_INDETERMINATE, started = 0;
	struct sigaction sa = { .sa_handler = send__on_sigint };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	for (;;) {
		int l = util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), 200);
		if (send_interrupted == 1) {
			send_interrupted = 2;
			if (tty)
				fputc('\n', stderr);
			send__cancel(name);
		}
		if (l == -ETIMEDOUT)
			continue;
		if (l <= 0) {
			if (tty)
				fputc('\n', stderr);
			if (!started) {
				util_err("send: '%s' closed the control connection without answering", name);
				rc = PMG_EXIT_FAIL;
			} else {
				util_err("send: lost contact with the process hosting '%s' before the result: outcome unknown",
					name);
			}
			break;
		}
		if (!started) {
			started = 1;
			if (strstr(line, "\"ok\":false")) {
				char err[600] = "refused";
				json_field(line, "error", err, sizeof(err));
				util_err("send: %s", err);
				rc = PMG_EXIT_FAIL;
				break;
			}
			if (json)
				printf("%s\n", line);
			continue;
		}
		if (json_field(line, "event", res, sizeof(res)) == 0 && !strcmp(res, "progress")) {
			char phase[32] = "";
			json_field(line, "phase", phase, sizeof(phase));
			if (json) {
				printf("%s\n", line);
				fflush(stdout);
			} else if (!strcmp(phase, "link_lost") || !strcmp(phase, "resumed")) {
				send__link(line, phase, tty);
			} else if (tty) {
				send__bar(line);
			}
			continue;
		}
		if (tty)
			fputc('\n', stderr);
		if (json)
			printf("%s\n", line);
		else
			migrate_stats_print_human(line, stdout);
		json_field(line, "result", res, sizeof(res));
		rc = !strcmp(res, "migrated") ? PMG_EXIT_OK : !strcmp(res, "indeterminate") ? PMG_EXIT_INDETERMINATE
											: PMG_EXIT_FAIL;
		if (rc == PMG_EXIT_FAIL && !json) {
			char err[600] = "";
			json_field(line, "error", err, sizeof(err));
			util_err("send: migration failed, '%s' keeps running here: %s", name, err);
		}
		break;
	}
	close(fd);
	return rc;
}
