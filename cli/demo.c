/*
 * cli/demo.c - `pml-migrate demo`: the whole product in one command on
 * loopback. Throwaway certificates, an agent, a kvstore guest that first
 * runs unmigrated (for its expected digest) and then again, migrated live
 * mid-run over TLS; the migrated guest must finish with the same digest.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "config.h"

#define DEMO_NAME "demo-kv"

static void demo_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate demo [options]\n"
		"\n"
		"Creates throwaway certificates, starts an agent on 127.0.0.1, boots a kvstore\n"
		"guest, migrates it live over TLS while it works, lets it finish on the\n"
		"destination and checks its digest against an unmigrated run of the same guest.\n"
		"\n"
		"options:\n"
		"  --mem SIZE         guest memory (default 1G; sparse)\n"
		"  --ops N            kvstore operations (default 3000000)\n"
		"  --dirty-log MODE   ring (default) or bitmap\n"
		"  --downtime MS      downtime target (default 50)\n"
		"  --guest-dir DIR    where kvstore.elf is (default: next to the binary, then\n"
		"                     the installed guest directory)\n"
		"  --keep             keep the work directory (certificates, logs, reports)\n"
		"  -h, --help         this text\n"
		"\n"
		"exit codes: 0 migrated and the digest matched; 1 anything else; 2 usage error.\n");
}

static int demo__rm(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* fork+exec of this binary with PML_MIGRATE_RUNDIR=rundir, stdout to
 * out and stderr to err. */
static pid_t demo__spawn(const char *rundir, const char *out, const char *err, char *const argv[])
{
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	setenv("PML_MIGRATE_RUNDIR", rundir, 1);
	int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int fe = open(err, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
		_exit(127);
	execv("/proc/self/exe", argv);
	_exit(127);
}

static int demo__wait_file(const char *path, int seconds)
{
	for (int i = 0; i < seconds * 20; i++) {
		if (access(path, F_OK) == 0)
			return 0;
		usleep(50000);
	}
	return -ETIMEDOUT;
}

static int demo__read(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	fclose(f);
	return (int)n;
}

static int demo__find_guest(const char *dir, char *out, size_t len)
{
	char exe[PATH_MAX - 64];
	if (dir) {
		snprintf(out, len, "%s/kvstore.elf", dir);
		return access(out, R_OK);
	}
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		char *slash = strrchr(exe, '/');
		if (slash) {
			*slash = 0;
			snprintf(out, len, "%s/guest/kvstore.elf", exe);
			if (access(out, R_OK) == 0)
				return 0;
		}
	}
	snprintf(out, len, "%s/kvstore.elf", PMG_GUEST_INSTALL_DIR);
	return access(out, R_OK);
}

int cmd_demo(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", required_argument, 0, 'm' },
		{ "ops", required_argument, 0, 'o' },
		{ "dirty-log", required_argument, 0, 'd' },
		{ "downtime", required_argument, 0, 'D' },
		{ "guest-dir", required_argument, 0, 'g' },
		{ "keep", no_argument, 0, 'k' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	char mem[32] = "1G", ops[32] = "ops=3000000", mode[16] = "ring", downtime[16] = "50";
	const char *gdir = NULL;
	int keep = 0, c, rc = PMG_EXIT_FAIL;
	uint64_t v;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'm':
			if (cli_parse_size(optarg, &v) < 0) {
				util_err("demo: --mem '%s': expected a size", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(mem, sizeof(mem), "%s", optarg);
			break;
		case 'o':
			if (cli_parse_uint(optarg, 1000, 1000000000000ull, &v) < 0) {
				util_err("demo: --ops '%s': expected 1000 or more", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(ops, sizeof(ops), "ops=%s", optarg);
			break;
		case 'd':
			if (strcmp(optarg, "ring") && strcmp(optarg, "bitmap")) {
				util_err("demo: --dirty-log must be ring or bitmap");
				return PMG_EXIT_USAGE;
			}
			snprintf(mode, sizeof(mode), "%s", optarg);
			break;
		case 'D':
			if (cli_parse_uint(optarg, 1, 60000, &v) < 0) {
				util_err("demo: --downtime '%s': expected 1..60000 ms", optarg);
				return PMG_EXIT_USAGE;
			}
			snprintf(downtime, sizeof(downtime), "%s", optarg);
			break;
		case 'g':
			gdir = optarg;
			break;
		case 'k':
			keep = 1;
			break;
		case 'h':
			demo_usage(stdout);
			return PMG_EXIT_OK;
		default:
			util_err("demo: unknown option or missing value (see 'pml-migrate demo --help')");
			return PMG_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		util_err("demo: unexpected argument '%s'", argv[optind]);
		return PMG_EXIT_USAGE;
	}
	char image[PATH_MAX];
	if (demo__find_guest(gdir, image, sizeof(image)) < 0) {
		util_err("demo: kvstore.elf not found (build it, or pass --guest-dir)");
		return PMG_EXIT_FAIL;
	}

	char tmpl[] = "/tmp/pml-migrate-demo.XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (!dir) {
		util_err("demo: cannot create a work directory: %s", strerror(errno));
		return PMG_EXIT_FAIL;
	}
	char src[256], dst[256], ref[256], p[PATH_MAX], logp[PATH_MAX], buf[8192], port[16] = "";
	char want[32] = "", runms[32] = "0";
	snprintf(src, sizeof(src), "%s/src", dir);
	snprintf(dst, sizeof(dst), "%s/dst", dir);
	snprintf(ref, sizeof(ref), "%s/ref", dir);
	mkdir(src, 0700);
	mkdir(dst, 0700);
	mkdir(ref, 0700);
	pid_t agent = -1, source = -1;
	printf("== pml-migrate demo (work directory %s) ==\n", dir);

	/* 1. certificates */
	printf("-- creating a throwaway CA and certificates for 'agent' and 'sender'\n");
	fflush(stdout);
	{
		char *a1[] = { "certs", "init", dir, NULL };
		char *a2[] = { "certs", "issue", dir, "agent", NULL };
		char *a3[] = { "certs", "issue", dir, "sender", NULL };
		if (cmd_certs(3, a1) || cmd_certs(4, a2) || cmd_certs(4, a3))
			goto out;
	}

	/* 2. reference run */
	printf("-- reference run: kvstore unmigrated (%s, %s memory)\n", ops, mem);
	snprintf(p, sizeof(p), "%s/reference.json", dir);
	snprintf(logp, sizeof(logp), "%s/reference.log", dir);
	{
		char *av[] = { "pml-migrate", "run", image, "--mem", mem, "--name", "demo-ref", "--json", "--dirty-log",
			       mode, "--", ops, NULL };
		int st;
		pid_t pid = demo__spawn(ref, p, logp, av);
		if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			util_err("demo: the reference run failed (see %s)", logp);
			keep = 1;
			goto out;
		}
	}
	demo__read(p, buf, sizeof(buf));
	json_field(buf, "digest", want, sizeof(want));
	json_field(buf, "run_time_ms", runms, sizeof(runms));
	printf("   expected digest %s, run time %s ms\n", want, runms);

	/* 3. agent */
	snprintf(p, sizeof(p), "%s/port", dir);
	snprintf(logp, sizeof(logp), "%s/agent.log", dir);
	{
		char *av[] = { "pml-migrate", "recv", "--listen", "127.0.0.1:0", "--certs", dir, "--node", "agent",
			       "--allow", "sender", "--port-file", p, NULL };
		agent = demo__spawn(dst, logp, logp, av);
		if (agent < 0 || demo__wait_file(p, 10) < 0) {
			util_err("demo: the agent did not start (see %s)", logp);
			keep = 1;
			goto out;
		}
	}
	demo__read(p, port, sizeof(port));
	port[strcspn(port, "\n")] = 0;
	printf("-- agent listening on 127.0.0.1:%s (TLS 1.3, client certificate 'sender' required)\n", port);

	/* 4. the guest to migrate */
	snprintf(p, sizeof(p), "%s/%s.sock", src, DEMO_NAME);
	snprintf(logp, sizeof(logp), "%s/source.log", dir);
	{
		char *av[] = { "pml-migrate", "run", image, "--mem", mem, "--name", DEMO_NAME, "--dirty-log", mode,
			       "--", ops, NULL };
		source = demo__spawn(src, logp, logp, av);
		if (source < 0 || demo__wait_file(p, 10) < 0) {
			util_err("demo: the guest did not start (see %s)", logp);
			keep = 1;
			goto out;
		}
	}
	/* Let it get a third of the way into its work before moving it. */
	unsigned wait_ms = (unsigned)(strtod(runms, NULL) / 3);
	printf("-- booted '%s' (%s dirty log); migrating it live in %u ms\n", DEMO_NAME, mode, wait_ms);
	fflush(stdout);
	usleep(wait_ms * 1000u);

	/* 5. send, in this process */
	{
		char target[64];
		snprintf(target, sizeof(target), "127.0.0.1:%s", port);
		char *av[] = { "send", DEMO_NAME, target, "--certs", dir, "--node", "sender", "--peer", "agent",
			       "--downtime", downtime, NULL };
		setenv("PML_MIGRATE_RUNDIR", src, 1);
		int src_rc = cmd_send(11, av);
		if (src_rc != PMG_EXIT_OK) {
			util_err("demo: the migration did not complete (exit %d; logs in %s)", src_rc, dir);
			keep = 1;
			goto out;
		}
	}
	{
		int st;
		waitpid(source, &st, 0);
		source = -1;
	}

	/* 6. the guest finishes on the destination */
	snprintf(p, sizeof(p), "%s/%s.result.json", dst, DEMO_NAME);
	printf("-- waiting for the guest to finish on the destination\n");
	fflush(stdout);
	if (demo__wait_file(p, 300) < 0) {
		util_err("demo: no result from the destination within 300 s (logs in %s)", dir);
		keep = 1;
		goto out;
	}
	demo__read(p, buf, sizeof(buf));
	char got[32] = "", res[32] = "", stall[32] = "", back[32] = "";
	json_field(buf, "digest", got, sizeof(got));
	json_field(buf, "result", res, sizeof(res));
	json_field(buf, "max_stall_us", stall, sizeof(stall));
	json_field(buf, "tsc_backwards", back, sizeof(back));
	printf("   destination: result %s, digest %s, guest-observed max stall %.3f ms, TSC went backwards %s times\n",
	       res, got, strtod(stall, NULL) / 1000.0, back);
	if (strcmp(res, "ok") || strcmp(got, want) || !want[0]) {
		printf("FAIL: the migrated guest's digest %s differs from the unmigrated %s\n", got, want);
		keep = 1;
		goto out;
	}
	printf("OK: the guest moved live and finished with exactly the digest of the unmigrated run.\n");
	rc = PMG_EXIT_OK;
out:
	if (agent > 0) {
		kill(agent, SIGTERM);
		waitpid(agent, NULL, 0);
	}
	if (source > 0) {
		kill(source, SIGTERM);
		waitpid(source, NULL, 0);
	}
	if (keep)
		printf("work directory kept: %s\n", dir);
	else
		nftw(dir, demo__rm, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
