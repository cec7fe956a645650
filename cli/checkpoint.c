/*
 * cli/checkpoint.c - `pml-migrate checkpoint NAME DIR`: checkpoints of a
 * running VM into DIR, once or every S seconds, the first a full image and
 * the next ones incremental (the pages written since the previous one,
 * from the dirty log). The VM host writes each file (vmhost/checkpoint.c);
 * this command owns the directory: it numbers the files, holds DIR/.lock
 * so that one writer works there at a time, and with --keep folds the
 * oldest images together (migrate/ckpt.h) so that N restorable points
 * remain.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "util/rundir.h"
#include "migrate/ckpt.h"

static volatile sig_atomic_t ckpt_stop;

static void ckpt_on_signal(int sig)
{
	(void)sig;
	ckpt_stop = 1;
}

static void checkpoint_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate checkpoint NAME DIR [--every S] [--count N] [--keep N]\n"
		"                              [--downtime MS] [--max-precopy S] [--json]\n"
		"\n"
		"Writes checkpoints of the running VM NAME into DIR (created if missing), while\n"
		"the guest runs: its pages go to the file in rounds picked from the dirty log,\n"
		"as in a live migration, and the guest is paused only for the last small dirty\n"
		"set and its vCPU state; the pause is reported. The first checkpoint is a full\n"
		"image of the pages the guest has; with --every, each next one is incremental:\n"
		"only the pages written since the previous one (the dirty log stays armed\n"
		"between them, for as long as this command runs).\n"
		"\n"
		"Files are DIR/NNNNNNNN.ckpt, numbered on from the highest already there; each\n"
		"appears atomically (written as .NNNNNNNN.ckpt.tmp, synced, renamed) and ends\n"
		"with a SHA-256 of its contents. 'pml-migrate restore DIR' boots a VM from them.\n"
		"\n"
		"options:\n"
		"  --every S         a checkpoint every S seconds (0.1..86400), counted from\n"
		"                    the start of the previous one, until --count or a signal\n"
		"  --count N         stop after N checkpoints (default 1 without --every,\n"
		"                    unlimited with it)\n"
		"  --keep N          keep the newest N checkpoints restorable (1..10000): the\n"
		"                    oldest full image and the incremental after it are merged\n"
		"                    into one full image (default: keep all)\n"
		"  --downtime MS     the pause to aim for, as send's --downtime (default 50)\n"
		"  --max-precopy S   pre-copy at most S seconds, then pause for what is left\n"
		"                    (default 10)\n"
		"  --json            one JSON line per checkpoint and per merge (README)\n"
		"  -h, --help        this text\n"
		"\n"
		"SIGINT or SIGTERM ends it: between checkpoints at once; during one, the file\n"
		"being written is abandoned (removed) and the guest resumed.\n"
		"exit codes: 0 every checkpoint started was written (a signal or the guest\n"
		"            ending between two checkpoints ends it too);\n"
		"            1 a checkpoint failed or was abandoned, no such VM, or refused\n"
		"            (not running here, migrating, no dirty log); 2 usage error.\n");
}

static double ckpt_num(const char *line, const char *key)
{
	char v[64];
	return json_field(line, key, v, sizeof(v)) == 0 ? strtod(v, NULL) : 0;
}

static void ckpt_print(const char *line)
{
	char file[32] = "", kind[16] = "", verdict[24] = "";
	json_field(line, "file", file, sizeof(file));
	json_field(line, "kind", kind, sizeof(kind));
	json_field(line, "verdict", verdict, sizeof(verdict));
	printf("checkpoint %.0f (%s", ckpt_num(line, "seq"), kind);
	if (!strcmp(kind, "incremental"))
		printf(" on %.0f", ckpt_num(line, "parent_seq"));
	printf("): %s, %.0f pages (%.0f zero), %.1f MiB, %.0f rounds\n", file, ckpt_num(line, "pages"),
	       ckpt_num(line, "zero_pages"), ckpt_num(line, "bytes") / 1048576.0, ckpt_num(line, "rounds"));
	printf("  guest paused %.3f ms (aimed for %.3f, %s); pre-copy %.0f ms, sync %.0f ms, total %.0f ms\n",
	       ckpt_num(line, "pause_ms"), ckpt_num(line, "expected_pause_ms"), verdict, ckpt_num(line, "precopy_ms"),
	       ckpt_num(line, "sync_ms"), ckpt_num(line, "total_ms"));
	fflush(stdout);
}

/* Whether some file in v is incremental on checkpoint seq. */
static const struct ckpt_info *ckpt_child(const struct ckpt_info *v, size_t n, const struct ckpt_info *p)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].ok && v[i].hdr.parent_id && v[i].hdr.parent_seq == p->seq && v[i].hdr.parent_id == p->hdr.id)
			return &v[i];
	return NULL;
}

/* --keep: while more than keep files are here, the oldest goes: merged
 * into the incremental that follows it, or removed when nothing follows
 * it. The directory is listed once and the list kept up to date (only a
 * merged image is read again): listing it again for every file removed
 * made a long backlog quadratic. Returns 0 or -errno (message printed). */
static int ckpt_prune(int dirfd, unsigned keep, int json)
{
	struct ckpt_info *v;
	size_t n;
	char err[400];
	int e = ckpt_list(dirfd, &v, &n);
	if (e < 0) {
		util_err("checkpoint: listing the directory: %s", strerror(-e));
		return e;
	}
	/* v[i..n) is what is left, oldest first. */
	for (size_t i = 0; n - i > keep; i++) {
		struct ckpt_info *old = &v[i];
		struct ckpt_info *next = (struct ckpt_info *)ckpt_child(v + i + 1, n - i - 1, old);
		uint64_t t0 = util_now_ns();
		if (old->ok && !old->hdr.parent_id && next) {
			e = ckpt_merge(dirfd, old, next, err, sizeof(err));
			if (e < 0) {
				util_err("checkpoint: --keep: %s", err);
				goto out;
			}
			ckpt_info_reload(dirfd, next); /* a full image now */
			double ms = (double)(util_now_ns() - t0) / 1e6;
			if (json)
				printf("{\"event\":\"merged\",\"from_seq\":%" PRIu32 ",\"into_seq\":%" PRIu32
				       ",\"bytes\":%" PRIu64 ",\"ms\":%.3f}\n",
				       old->seq, next->seq, next->size, ms);
			else
				printf("  --keep %u: merged %s into %s, now a full image (%.1f MiB, %.0f ms)\n", keep,
				       old->file, next->file, (double)next->size / 1048576.0, ms);
		} else if (next) {
			/* An incremental image something still builds on: this
			 * directory was not written by us alone. Leave it. */
			util_err("checkpoint: --keep: %s cannot be merged (not a full image) and %s needs it: left as is",
				 old->file, next->file);
			break;
		} else {
			if (unlinkat(dirfd, old->file, 0) < 0) {
				e = -errno;
				util_err("checkpoint: --keep: removing %s: %s", old->file, strerror(-e));
				goto out;
			}
			fsync(dirfd);
			if (json)
				printf("{\"event\":\"removed\",\"seq\":%" PRIu32 "}\n", old->seq);
			else
				printf("  --keep %u: removed %s\n", keep, old->file);
		}
		fflush(stdout);
	}
	e = 0;
out:
	free(v);
	return e;
}

/* Sleeps until t_ns (monotonic) or a signal. */
static void ckpt_sleep_until(uint64_t t_ns)
{
	while (!ckpt_stop) {
		uint64_t now = util_now_ns();
		if (now >= t_ns)
			return;
		uint64_t d = t_ns - now < 200000000ull ? t_ns - now : 200000000ull;
		struct timespec ts = { (time_t)(d / 1000000000ull), (long)(d % 1000000000ull) };
		nanosleep(&ts, NULL);
	}
}

int cmd_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "every", required_argument, 0, 'e' },
		{ "count", required_argument, 0, 'c' },
		{ "keep", required_argument, 0, 'k' },
		{ "downtime", required_argument, 0, 'd' },
		{ "max-precopy", required_argument, 0, 'p' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	double every = 0, max_precopy = 10;
	uint64_t count = 0, keep = 0, downtime = 50, v;
	int json = 0, c;
	char *end;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'e':
		case 'p': {
			double d = strtod(optarg, &end);
			double lo = c == 'e' ? 0.1 : 0.001, hi = c == 'e' ? 86400 : 86400;
			if (end == optarg || *end || !(d >= lo && d <= hi)) {
				util_err("checkpoint: --%s '%s': must be %g..%g seconds", c == 'e' ? "every" : "max-precopy",
					 optarg, lo, hi);
				return PMG_EXIT_USAGE;
			}
			*(c == 'e' ? &every : &max_precopy) = d;
			break;
		}
		case 'c':
		case 'k':
			if (cli_parse_uint(optarg, 1, c == 'c' ? CKPT_MAX_SEQ : 10000, &v) < 0) {
				util_err("checkpoint: --%s '%s': must be 1..%u", c == 'c' ? "count" : "keep", optarg,
					 c == 'c' ? CKPT_MAX_SEQ : 10000);
				return PMG_EXIT_USAGE;
			}
			*(c == 'c' ? &count : &keep) = v;
			break;
		case 'd':
			if (cli_parse_uint(optarg, 1, 60000, &downtime) < 0) {
				util_err("checkpoint: --downtime '%s': must be 1..60000 ms", optarg);
				return PMG_EXIT_USAGE;
			}
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			checkpoint_usage(stdout);
			return PMG_EXIT_OK;
		default:
			if (optopt)
				util_err("checkpoint: option '-%c' is unknown or needs a value (see 'pml-migrate checkpoint --help')",
					 optopt);
			else
				util_err("checkpoint: unknown option '%s' (see 'pml-migrate checkpoint --help')",
					 argv[optind - 1]);
			return PMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 2) {
		util_err("checkpoint: expected NAME DIR (see 'pml-migrate checkpoint --help')");
		return PMG_EXIT_USAGE;
	}
	const char *name = argv[optind], *dirarg = argv[optind + 1];
	if (!util_valid_name(name)) {
		util_err("checkpoint: invalid VM name '%s'", name);
		return PMG_EXIT_USAGE;
	}
	if (!count)
		count = every > 0 ? CKPT_MAX_SEQ : 1;

	if (mkdir(dirarg, 0700) < 0 && errno != EEXIST) {
		util_err("checkpoint: cannot create %s: %s", dirarg, strerror(errno));
		return PMG_EXIT_FAIL;
	}
	char dir[PATH_MAX], why[PATH_MAX + 200];
	if (!realpath(dirarg, dir)) {
		util_err("checkpoint: %s: %s", dirarg, strerror(errno));
		return PMG_EXIT_FAIL;
	}
	/* The path travels on one control-socket line (under 2 KiB). */
	if (strlen(dir) > 1500 || strchr(dir, '\n')) {
		util_err("checkpoint: %s: a directory path must be under 1500 bytes, without a newline", dirarg);
		return PMG_EXIT_USAGE;
	}
	/* Trusted only when ours (the VM host checks again where it writes):
	 * another user's files must never join our chain. */
	int dirfd = rundir_open_private(dir, 0, "checkpoint directory", why, sizeof(why));
	if (dirfd < 0) {
		util_err("checkpoint: %s", why);
		return PMG_EXIT_FAIL;
	}
	/* One writer per directory: numbering and --keep assume it. */
	int lockfd = openat(dirfd, ".lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (lockfd >= 0 && e == EWOULDBLOCK)
			util_err("checkpoint: %s is in use by another 'pml-migrate checkpoint'", dir);
		else
			util_err("checkpoint: %s/.lock: %s", dir, strerror(e));
		if (lockfd >= 0)
			close(lockfd);
		close(dirfd);
		return PMG_EXIT_FAIL;
	}
	int rc = PMG_EXIT_FAIL, fd = -1;
	int removed = ckpt_remove_leftovers(dirfd);
	if (removed > 0 && !json)
		printf("removed %d unfinished checkpoint file(s) left by an interrupted writer\n", removed);
	struct ckpt_info *ls;
	size_t nls;
	if (ckpt_list(dirfd, &ls, &nls) < 0) {
		util_err("checkpoint: cannot list %s", dir);
		goto out;
	}
	uint32_t seq = nls ? ls[nls - 1].seq + 1 : 1;
	free(ls);

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ckpt_on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	fd = util_ctl_connect("checkpoint", name);
	if (fd < 0)
		goto out;
	char line[8192], buf[8192];
	size_t have = 0;
	uint64_t done = 0;
	for (uint64_t next = util_now_ns(); done < count; done++) {
		if (seq > CKPT_MAX_SEQ) {
			util_err("checkpoint: %s already holds checkpoint %u, the highest number", dir, CKPT_MAX_SEQ);
			goto out;
		}
		if (done)
			ckpt_sleep_until(next);
		if (ckpt_stop)
			break;
		if (done && util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), 0) == 0) {
			/* The VM host closed its end: the guest ended. */
			if (!json)
				printf("'%s' stopped; no more checkpoints\n", name);
			break;
		}
		next = util_now_ns() + (uint64_t)(every * 1e9);
		int n = snprintf(line, sizeof(line), "checkpoint seq=%" PRIu32 " incremental=%d downtime=%" PRIu64
				 " max-precopy=%" PRIu64 " dir=%s\n",
				 seq, done > 0, downtime, (uint64_t)(max_precopy * 1000), dir);
		if (n >= (int)sizeof(line) || write(fd, line, (size_t)n) != n) {
			util_err("checkpoint: cannot ask '%s': %s", name, strerror(errno));
			goto out;
		}
		/* No deadline of our own: the pre-copy ends by --max-precopy and
		 * the rest is bounded by memory size and the disk. */
		int got;
		while ((got = util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), 200)) == -ETIMEDOUT)
			if (ckpt_stop)
				break;
		if (got == -ETIMEDOUT) {
			util_err("checkpoint: stopped by a signal: checkpoint %" PRIu32 " abandoned", seq);
			goto out;
		}
		if (got <= 0) {
			util_err("checkpoint: '%s' closed the connection without answering (did it stop?)", name);
			goto out;
		}
		if (!cli_answer_ok("checkpoint", line, json))
			goto out;
		if (json) {
			puts(line);
			fflush(stdout);
		} else {
			ckpt_print(line);
		}
		seq++;
		if (keep && ckpt_prune(dirfd, (unsigned)keep, json) < 0)
			goto out;
	}
	if (!json)
		printf("%" PRIu64 " checkpoint(s) of '%s' in %s%s\n", done, name, dir, ckpt_stop ? " (stopped)" : "");
	rc = PMG_EXIT_OK;
out:
	if (fd >= 0)
		close(fd);
	close(lockfd);
	close(dirfd);
	return rc;
}
