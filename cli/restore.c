/*
 * cli/restore.c - `pml-migrate restore DIR`: boots a VM from a chain of
 * checkpoint files (migrate/ckpt.h) and hosts it like `run` does.
 *
 * The chain's records are fed to a real destination session
 * (migrate/dest.h, the feed mode: no connection), as if one migration
 * carried them: the full image's HELLO and SHAPE, every file's pages in
 * order (a later copy of a page overwrites an earlier one), the last
 * file's vCPU state, then STATE_DONE and COMMIT. So a restore validates
 * and applies state with exactly the code an incoming migration uses, and
 * COMMIT is fed only once every file's checksum matched: a corrupted file
 * never starts a guest.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "cli/commands.h"
#include "cli/util.h"
#include "util/rundir.h"
#include "migrate/ckpt.h"
#include "migrate/dest.h"
#include "vmhost/vmhost.h"

#define RESTORE_FEED_BYTES (4u << 20)

static void restore_usage(FILE *f)
{
	fprintf(f,
		"usage: pml-migrate restore DIR [--at N] [--name NAME] [--json]\n"
		"       pml-migrate restore DIR --check [--at N] [--json]\n"
		"       pml-migrate restore DIR --list [--json]\n"
		"\n"
		"Boots a VM from the checkpoints 'pml-migrate checkpoint' wrote into DIR, as it\n"
		"was at checkpoint N (default: the newest), and hosts it like 'run' does until\n"
		"it exits: the guest continues from that point. DIR may have been copied from\n"
		"another host. Every file of the chain (the full image, then each incremental\n"
		"one up to N) is checked before the guest starts: framing, every record, the\n"
		"links between files and each file's SHA-256; a bad file is named and nothing\n"
		"runs. The guest's console goes to stdout (stderr with --json).\n"
		"\n"
		"options:\n"
		"  --at N        restore checkpoint N (see --list)\n"
		"  --name NAME   the restored VM's name (default: the checkpointed VM's); it\n"
		"                must not be running on this host already\n"
		"  --check       check the chain of checkpoint N, read in full, and boot nothing\n"
		"  --list        list DIR's checkpoints and whether each file is readable\n"
		"  --json        the final report (or the check, or each listed file) as JSON\n"
		"  -h, --help    this text\n"
		"\n"
		"Control socket: $PML_MIGRATE_RUNDIR/NAME.sock, as for 'run'.\n"
		"exit codes: 0 the guest exited with 0 and reported (--check: the chain is\n"
		"            good; --list: listed); 1 a bad or missing file, the name is taken,\n"
		"            the guest failed; 2 usage error.\n");
}

struct restore {
	struct vmhost r;
	struct migrate_dst *d;
	const char *name;      /* the VM's name here */
	int json;
	int failed, running;
	char why[512];
	int vcpus_from_here;   /* the file being read is the chain's last */
	struct stream_buf feed;
};

static int restore_claim(void *opaque, const char *name, char *why, size_t len)
{
	struct restore *s = opaque;
	int e = vmhost_claim_name(&s->r, name);
	if (e == -EEXIST)
		snprintf(why, len, "a VM named '%s' already runs here: name the restored one with --name", name);
	else if (e < 0)
		snprintf(why, len, "cannot use the run directory for '%s'", name);
	return e;
}

static int restore_create_vm(void *opaque, const struct stream_shape *sh, const void *dom, size_t domlen,
			     struct hv_vm **vm, char *why, size_t len)
{
	struct restore *s = opaque;
	int e = vmhost_create_incoming(&s->r, hv_host_backend(), sh, dom, domlen, why, len);
	*vm = s->r.vm;
	return e;
}

static void restore_running(void *opaque, const char *stats)
{
	struct restore *s = opaque;
	(void)stats;
	s->running = 1;
	if (vmhost_went_live(&s->r) < 0)
		hv_vm_stop(s->r.vm);
	migrate_dst_free(s->d);
	s->d = NULL;
}

static void restore_failed(void *opaque, const char *why)
{
	struct restore *s = opaque;
	s->failed = 1;
	snprintf(s->why, sizeof(s->why), "%s", why);
	migrate_dst_free(s->d);
	s->d = NULL;
}

static const struct migrate_dst_ops restore_ops = {
	.claim = restore_claim,
	.create_vm = restore_create_vm,
	.running = restore_running,
	.failed = restore_failed,
};

static int restore_flush(struct restore *s)
{
	int e = 0;
	if (s->feed.len && s->d)
		e = migrate_dst_feed(s->d, s->feed.p, s->feed.len);
	s->feed.len = 0;
	/* The decode workers' verdicts reach the session on its loop. */
	for (int i = 0; i < 4 && !s->failed; i++)
		uv_run(&s->r.loop, UV_RUN_NOWAIT);
	return e < 0 || s->failed || !s->d ? -ECANCELED : 0;
}

/* A validated record of a file: PAGES always, VCPU from the last file. */
static int restore_each(void *opaque, const struct stream_record *rec)
{
	struct restore *s = opaque;
	/* Once the session refused something, the rest of the file is only
	 * read to the end: a corrupted file is then named as such (its
	 * checksum) rather than by what its damage broke. */
	if ((rec->type == STREAM_VCPU && !s->vcpus_from_here) || s->failed)
		return 0;
	if (stream_buf_reserve(&s->feed, STREAM_HDR_SIZE + (size_t)rec->len) < 0)
		return -ENOMEM;
	uint8_t *h = s->feed.p + s->feed.len;
	uint16_t type = rec->type, rsv = 0;
	memcpy(h, &type, 2);
	memcpy(h + 2, &rsv, 2);
	memcpy(h + 4, &rec->len, 4);
	memcpy(h + STREAM_HDR_SIZE, rec->payload, rec->len);
	s->feed.len += STREAM_HDR_SIZE + (size_t)rec->len;
	if (s->feed.len >= RESTORE_FEED_BYTES)
		restore_flush(s); /* a refusal is noted in s->failed */
	return 0;
}

static void restore_time(uint64_t ns, char *buf, size_t len)
{
	time_t t = (time_t)(ns / 1000000000ull);
	struct tm tm;
	if (!ns || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm))
		snprintf(buf, len, "-");
}

static int restore_list(const struct ckpt_info *v, size_t n, int json)
{
	if (!json)
		printf("%-14s %-12s %-6s %-20s %10s %10s  %s\n", "file", "kind", "parent", "time (UTC)", "pause ms",
		       "MiB", "VM");
	for (size_t i = 0; i < n; i++) {
		const struct ckpt_info *c = &v[i];
		char when[32], id[24];
		restore_time(c->ok ? c->seal.paused_ns : 0, when, sizeof(when));
		snprintf(id, sizeof(id), "%016" PRIx64, c->hdr.id);
		if (json) {
			struct json j;
			json_begin(&j, stdout);
			json_u64(&j, "seq", c->seq);
			json_str(&j, "file", c->file);
			json_bool(&j, "ok", c->ok);
			if (!c->ok) {
				json_str(&j, "error", c->why);
				json_end(&j);
				continue;
			}
			json_str(&j, "kind", c->hdr.parent_id ? "incremental" : "full");
			if (c->hdr.parent_id)
				json_u64(&j, "parent_seq", c->hdr.parent_seq);
			json_str(&j, "id", id);
			json_str(&j, "name", c->hello.name);
			json_u64(&j, "mem_bytes", c->shape.mem_bytes);
			json_u64(&j, "vcpus", c->shape.vcpus);
			json_str(&j, "time", when);
			json_f64(&j, "pause_ms", (double)c->seal.pause_ns / 1e6);
			json_u64(&j, "bytes", c->size);
			json_end(&j);
		} else if (!c->ok) {
			printf("%-14s BAD: %s\n", c->file, c->why);
		} else {
			char parent[12] = "-";
			if (c->hdr.parent_id)
				snprintf(parent, sizeof(parent), "%" PRIu32, c->hdr.parent_seq);
			printf("%-14s %-12s %-6s %-20s %10.3f %10.1f  %s\n", c->file,
			       c->hdr.parent_id ? "incremental" : "full", parent, when, (double)c->seal.pause_ns / 1e6,
			       (double)c->size / 1048576.0, c->hello.name);
		}
	}
	return PMG_EXIT_OK;
}

/* Reads every file of the chain in full; with s, feeds them. */
static int restore_read_chain(int dirfd, const struct ckpt_info *v, const size_t *chain, size_t len,
			      struct restore *s, uint64_t *pages, char *err, size_t errlen)
{
	*pages = 0;
	for (size_t i = 0; i < len; i++) {
		uint64_t p = 0;
		if (s)
			s->vcpus_from_here = i + 1 == len;
		int e = ckpt_read(dirfd, &v[chain[i]], s ? restore_each : NULL, s, &p, err, errlen);
		if (!e && s && restore_flush(s) < 0) {
			snprintf(err, errlen, "%s: refused: %s", v[chain[i]].file, s->failed ? s->why : "the session ended");
			e = -EBADMSG;
		}
		if (e)
			return e;
		*pages += p;
	}
	return 0;
}

int cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "at", required_argument, 0, 'a' },
		{ "name", required_argument, 0, 'n' },
		{ "check", no_argument, 0, 'c' },
		{ "list", no_argument, 0, 'l' },
		{ "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	uint64_t at = 0;
	const char *name = NULL;
	int json = 0, check = 0, list = 0, c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'a':
			if (cli_parse_uint(optarg, 1, CKPT_MAX_SEQ, &at) < 0) {
				util_err("restore: --at '%s': must be a checkpoint number, 1..%u", optarg, CKPT_MAX_SEQ);
				return PMG_EXIT_USAGE;
			}
			break;
		case 'n':
			if (!util_valid_name(optarg)) {
				util_err("restore: --name '%s': use 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'",
					 optarg);
				return PMG_EXIT_USAGE;
			}
			name = optarg;
			break;
		case 'c':
			check = 1;
			break;
		case 'l':
			list = 1;
			break;
		case 'j':
			json = 1;
			break;
		case 'h':
			restore_usage(stdout);
			return PMG_EXIT_OK;
		default:
			if (optopt)
				util_err("restore: option '-%c' is unknown or needs a value (see 'pml-migrate restore --help')",
					 optopt);
			else
				util_err("restore: unknown option '%s' (see 'pml-migrate restore --help')", argv[optind - 1]);
			return PMG_EXIT_USAGE;
		}
	}
	if (argc - optind != 1) {
		util_err("restore: expected DIR (see 'pml-migrate restore --help')");
		return PMG_EXIT_USAGE;
	}
	if (check + list > 1 || (list && (at || name)) || (check && name)) {
		util_err("restore: --list and --check take no --name (and --list no --at)");
		return PMG_EXIT_USAGE;
	}
	/* A link to our directory is fine: what is checked is the directory
	 * itself, on the descriptor every file is then read through. */
	char dir[PATH_MAX], why[PATH_MAX + 200];
	if (!realpath(argv[optind], dir)) {
		util_err("restore: %s: %s", argv[optind], strerror(errno));
		return PMG_EXIT_FAIL;
	}
	int dirfd = rundir_open_private(dir, 0, "checkpoint directory", why, sizeof(why));
	if (dirfd < 0) {
		util_err("restore: %s", why);
		return PMG_EXIT_FAIL;
	}
	struct ckpt_info *v = NULL;
	size_t n = 0, chain[CKPT_MAX_CHAIN], clen = 0;
	char err[600];
	uint64_t pages = 0;
	int rc = PMG_EXIT_FAIL, e = ckpt_list(dirfd, &v, &n);
	if (e < 0) {
		util_err("restore: cannot list %s: %s", dir, strerror(-e));
		goto out_dir;
	}
	if (list) {
		rc = restore_list(v, n, json);
		goto out_dir;
	}
	if (ckpt_chain(v, n, (uint32_t)at, chain, &clen, err, sizeof(err)) < 0) {
		util_err("restore: %s: %s", dir, err);
		goto out_dir;
	}
	const struct ckpt_info *last = &v[chain[clen - 1]], *base = &v[chain[0]];
	if (check) {
		uint64_t t0 = util_now_ns();
		if (restore_read_chain(dirfd, v, chain, clen, NULL, &pages, err, sizeof(err)) < 0) {
			util_err("restore: %s", err);
			goto out_dir;
		}
		if (json)
			printf("{\"ok\":true,\"seq\":%" PRIu32 ",\"files\":%zu,\"first_seq\":%" PRIu32 ",\"pages\":%" PRIu64
			       ",\"ms\":%.3f}\n",
			       last->seq, clen, base->seq, pages, (double)(util_now_ns() - t0) / 1e6);
		else
			printf("checkpoint %" PRIu32 " of '%s' is restorable: %zu file(s) from %s, %" PRIu64
			       " page entries, every checksum matches\n",
			       last->seq, last->hello.name, clen, base->file, pages);
		rc = PMG_EXIT_OK;
		goto out_dir;
	}

	/* Our checkpoints carry a valid name; one that is not (a name read as
	 * an option, a hidden one) was not written by us, and a VM under it
	 * could not be listed, moved or addressed by ctl. */
	if (!name && !util_valid_name(base->hello.name)) {
		util_err("restore: %s names its VM '%s', not a valid VM name (1-64 of [A-Za-z0-9._-], not starting "
			 "with '.' or '-'): give one with --name",
			 base->file, base->hello.name);
		goto out_dir;
	}
	struct restore s;
	memset(&s, 0, sizeof(s));
	s.name = name ? name : base->hello.name;
	s.json = json;
	if (vmhost_init(&s.r, "") < 0)
		goto out_dir;
	s.r.incoming = 1;
	s.r.json = json;
	s.r.con = json ? stderr : stdout;
	uint64_t t0 = util_now_ns();
	if (migrate_dst_start_feed(&s.r.loop, NULL, &restore_ops, &s, &s.d) < 0) {
		util_err("restore: out of memory");
		goto out_vm;
	}
	struct stream_join jn = { .index = 0, .count = 1 };
	e = stream_put_hello(&s.feed, 0, s.name);
	if (!e)
		e = stream_put_shape(&s.feed, &base->shape);
	if (!e)
		e = stream_put_join(&s.feed, &jn);
	if (e || restore_flush(&s) < 0) {
		util_err("restore: %s", s.failed ? s.why : "out of memory");
		goto out_vm;
	}
	if (restore_read_chain(dirfd, v, chain, clen, &s, &pages, err, sizeof(err)) < 0) {
		util_err("restore: %s", err);
		goto out_vm;
	}
	/* Every file checked: now the state is complete, and only now may the
	 * guest start. */
	e = stream_put_state_done(&s.feed, pages);
	if (!e)
		e = restore_flush(&s);
	if (!e)
		e = stream_put_empty(&s.feed, STREAM_COMMIT);
	if (!e)
		restore_flush(&s);
	if (!s.running) {
		util_err("restore: %s", s.failed ? s.why : "the state was refused");
		goto out_vm;
	}
	if (!json)
		fprintf(stderr,
			"pml-migrate: restored '%s' from checkpoint %" PRIu32 " (%zu file(s), %" PRIu64
			" page entries) in %.0f ms; it runs\n",
			s.name, last->seq, clen, pages, (double)(util_now_ns() - t0) / 1e6);
	close(dirfd);
	dirfd = -1;
	free(v);
	v = NULL;
	stream_buf_free(&s.feed);
	rc = vmhost_run(&s.r);
out_vm:
	if (s.d)
		migrate_dst_free(s.d);
	if (!s.running && s.r.vm) {
		hv_vm_stop(s.r.vm);
		hv_vm_wait(s.r.vm);
	}
	stream_buf_free(&s.feed);
	vmhost_cleanup(&s.r);
out_dir:
	free(v);
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}
