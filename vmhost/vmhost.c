/*
 * vmhost/vmhost.c - one VM's host process: guest callbacks, the control
 * socket, the background harvester, outgoing migrations, the report. The
 * hypervisor is reached through hv/hv.h only.
 *
 * Threads: the loop thread runs the control socket, signals, the
 * VM-stopped notification and the migration's transport; one thread per
 * vCPU (hv/); with run --harvest-ms, one harvester thread that consumes
 * the dirty log continuously while no migration does, so its cost can be
 * watched. Otherwise the log is armed only while a migration runs: every
 * first write after a re-arm costs the guest a fault (about 8 us on a
 * nested KVM), which made an idle-time log cost a write-heavy guest 3x.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include "util/json.h"
#include "util/rundir.h"
#include "util/util.h"
#include "vmhost/checkpoint.h"
#include "vmhost/estimate.h"
#include "vmhost/vmhost.h"
#include "vmhost/resolve.h"

struct ctl_client {
	uv_pipe_t pipe;
	struct vmhost *r;
	char buf[2048];
	size_t len;
};

/* ---- guest callbacks (vCPU threads) ---- */

static void vmhost__console(void *opaque, unsigned vcpu, const char *buf, size_t len)
{
	struct vmhost *r = opaque;
	(void)vcpu;
	fwrite(buf, 1, len, r->con);
	fflush(r->con);
}

static void vmhost__report(void *opaque, const struct pmg_report *rep)
{
	struct vmhost *r = opaque;
	pthread_mutex_lock(&r->lock);
	r->report = *rep;
	r->have_report = 1;
	pthread_mutex_unlock(&r->lock);
}

static void vmhost__stopped(void *opaque, enum hv_stop_reason why, int code, const char *detail)
{
	struct vmhost *r = opaque;
	pthread_mutex_lock(&r->lock);
	r->why = why;
	r->exit_code = code;
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
	r->t_end = util_now_ns();
	pthread_mutex_unlock(&r->lock);
	uv_async_send(&r->stopped_async);
}

const struct hv_guest_ops vmhost_guest_ops = {
	.console = vmhost__console,
	.report = vmhost__report,
	.stopped = vmhost__stopped,
};

/* ---- harvester ---- */

static void vmhost__harvest_once(struct vmhost *r)
{
	pthread_mutex_lock(&r->lock);
	long n = precopy_dirtylog_harvest(r->dl, &r->set);
	for (long i = 0; i < n; i++)
		if (precopy_dirtylog_hotness(r->dl, r->set.gfns[i]) == 1)
			r->unique_frames++;
	pthread_mutex_unlock(&r->lock);
}

static void *vmhost__harvester(void *arg)
{
	struct vmhost *r = arg;
	pthread_setname_np(pthread_self(), "harvest");
	while (!atomic_load(&r->harvest_stop)) {
		usleep(r->harvest_ms * 1000u);
		vmhost__harvest_once(r);
	}
	return NULL;
}

/* ---- control socket ---- */


static void ctl__free(uv_handle_t *h)
{
	struct ctl_client *c = h->data;
	if (c->r->mig_client == c)
		c->r->mig_client = NULL;
	if (c->r->est_client == c)
		c->r->est_client = NULL;
	vmhost_resolve_detach(c->r, c);
	vmhost_checkpoint_detach(c->r, c);
	free(c);
}

static void ctl__written(uv_write_t *w, int status)
{
	(void)status;
	free(w->data);
	free(w);
}

void vmhost_ctl_reply(struct ctl_client *c, char *text, size_t len)
{
	uv_write_t *w = malloc(sizeof(*w));
	if (!w) {
		free(text);
		return;
	}
	w->data = text;
	uv_buf_t b = uv_buf_init(text, (unsigned)len);
	if (uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, ctl__written) < 0) {
		free(text);
		free(w);
	}
}

/* Which hypervisor runs the VM, and its id there when it has one. */
static void vmhost__json_hv(struct vmhost *r, struct json *j)
{
	if (!r->vm)
		return;
	json_str(j, "hv", hv_vm_backend(r->vm));
	int64_t id = hv_vm_domid(r->vm);
	if (id >= 0)
		json_u64(j, "domid", (uint64_t)id);
}

const char *vmhost_state(const struct vmhost *r)
{
	if (r->migrated)
		return "migrated";
	if (r->indeterminate)
		return "indeterminate";
	if (r->t_end)
		return "stopped";
	if (r->incoming)
		return r->in_doubt ? "in-doubt" : "incoming";
	if (r->mig)
		return "migrating";
	return r->paused ? "paused" : "running";
}

static void vmhost__migrate(struct ctl_client *c, char *args, struct json *j);

/* hv_mem_present_each's callback: counts the frames. */
static int vmhost__count_frames(void *opaque, const uint64_t *gfns, size_t n)
{
	(void)gfns;
	*(uint64_t *)opaque += n;
	return 0;
}

static void ctl__command(struct ctl_client *c, const char *cmd)
{
	struct vmhost *r = c->r;
	char *out = NULL;
	size_t outlen = 0;
	FILE *f = open_memstream(&out, &outlen);
	struct json j;

	if (!f)
		return;
	json_begin(&j, f);
	if (r->incoming && r->incoming_ctl && r->incoming_ctl(r->incoming_ctl_opaque, cmd, &j)) {
		/* answered by the session */
	} else if (!strcmp(cmd, "status")) {
		json_bool(&j, "ok", 1);
		json_str(&j, "name", r->name);
		json_str(&j, "state", vmhost_state(r));
		json_u64(&j, "pid", (uint64_t)getpid());
		vmhost__json_hv(r, &j);
		json_u64(&j, "vcpus", r->cfg.vcpus);
		json_u64(&j, "mem_bytes", r->cfg.mem_bytes);
		uint64_t np = 0; /* a toolstack's guest: its p2m spans 4 GiB, its RAM is what is populated */
		if (r->vm && hv_vm_toolstack_guest(r->vm) && !hv_mem_present_each(r->vm, vmhost__count_frames, &np))
			json_u64(&j, "ram_bytes", np << HV_PAGE_SHIFT);
		json_str(&j, "dirty_log", hv_dirty_mode_name(r->cfg.dirty_mode));
		json_u64(&j, "uptime_ms", ((r->t_end ? r->t_end : util_now_ns()) - r->t_start) / 1000000);
		if (!r->incoming && !r->migrated)
			json_u64(&j, "guest_polls", hv_vm_guest_polls(r->vm));
		if (r->res) /* what the destination said last of a lost outcome */
			json_str(&j, "resolve", vmhost_resolve_last(r));
	} else if (!strncmp(cmd, "migrate", 7) && (cmd[7] == ' ' || !cmd[7])) {
		vmhost__migrate(c, (char *)cmd + 7, &j);
		if (!j.f) { /* accepted: events follow on this connection */
			fclose(f);
			free(out);
			return;
		}
	} else if (!strcmp(cmd, "resolve")) {
		vmhost_resolve_ctl(r, c, &j);
		if (!j.f) { /* asking: the answer comes when the destination gave one */
			fclose(f);
			free(out);
			return;
		}
	} else if (!strncmp(cmd, "estimate", 8) && (cmd[8] == ' ' || !cmd[8])) {
		vmhost_estimate_start(r, c, cmd + 8, &j);
		if (!j.f) { /* measuring: the answer comes when it is done */
			fclose(f);
			free(out);
			return;
		}
	} else if (!strncmp(cmd, "checkpoint", 10) && (cmd[10] == ' ' || !cmd[10])) {
		vmhost_checkpoint_start(r, c, (char *)cmd + 10, &j);
		if (!j.f) { /* writing: the answer comes when it is on disk */
			fclose(f);
			free(out);
			return;
		}
	} else if (!strcmp(cmd, "cancel")) {
		int e = r->mig ? migrate_src_cancel(r->mig, "cancelled by the operator") : -ENOENT;
		json_bool(&j, "ok", e == 0);
		if (e == -ENOENT)
			json_str(&j, "error", "no migration in progress");
		else if (e < 0)
			json_str(&j, "error", "COMMIT was already sent: the outcome is the destination's, it cannot be cancelled");
	} else if (!strcmp(cmd, "finish")) {
		/* The request is this process's state, not the guest's: a
		 * migration running now or later would leave it behind. */
		const char *why = r->incoming	   ? "the VM is still arriving"
				  : r->migrated	   ? "the VM has migrated away"
				  : r->indeterminate ? "migration outcome indeterminate: check the destination"
				  : r->t_end	   ? "VM has stopped"
				  : r->mig	   ? "a migration is in progress: ask again where the VM runs once it ended"
						   : NULL;
		if (!why)
			hv_vm_request_finish(r->vm);
		json_bool(&j, "ok", !why);
		if (why)
			json_str(&j, "error", why);
	} else if (!strcmp(cmd, "stop") && !r->incoming) {
		hv_vm_stop(r->vm);
		json_bool(&j, "ok", 1);
	} else if ((!strcmp(cmd, "pause") || !strcmp(cmd, "resume")) &&
		   (r->incoming || r->mig || r->indeterminate || r->migrated)) {
		json_bool(&j, "ok", 0);
		json_str(&j, "error",
			 r->indeterminate ? "migration outcome indeterminate: check the destination; "
					    "'ctl NAME stop' discards this paused copy"
			 : r->mig	  ? "a migration is in progress"
			 : r->migrated	  ? "the VM has migrated away"
					  : "the VM is still arriving");
	} else if (!strcmp(cmd, "pause")) {
		if (r->t_end) {
			json_bool(&j, "ok", 0);
			json_str(&j, "error", "VM has stopped");
		} else {
			uint64_t t0 = util_now_ns();
			hv_vm_pause(r->vm);
			uint64_t dt = util_now_ns() - t0;
			r->paused++;
			json_bool(&j, "ok", 1);
			json_f64(&j, "pause_us", (double)dt / 1000.0);
		}
	} else if (!strcmp(cmd, "resume")) {
		if (!r->paused) {
			json_bool(&j, "ok", 0);
			json_str(&j, "error", "VM is not paused");
		} else {
			hv_vm_resume(r->vm);
			r->paused--;
			json_bool(&j, "ok", 1);
		}
	} else if (!strcmp(cmd, "stats")) {
		json_bool(&j, "ok", 1);
		json_str(&j, "dirty_log", hv_dirty_mode_name(r->cfg.dirty_mode));
		pthread_mutex_lock(&r->lock);
		/* Armed by whoever uses it: a migration (or the harvester at
		 * rest) holds r->dl, a checkpoint session and an estimate their
		 * own. */
		const char *user = r->dl ? (r->mig ? "migration" : r->harvest_at_rest ? "harvester" : "migration")
				   : vmhost_checkpoint_log_armed(r) ? "checkpoint"
				   : vmhost_estimate_log_armed(r)   ? "estimate"
								    : NULL;
		json_bool(&j, "dirty_log_armed", user != NULL);
		if (user)
			json_str(&j, "dirty_log_user", user);
		if (r->dl) {
			struct precopy_dirtylog_stats st;
			precopy_dirtylog_get_stats(r->dl, &st);
			json_u64(&j, "harvests", st.harvests);
			json_u64(&j, "dirty_pages_harvested", st.frames);
			json_u64(&j, "unique_pages_dirtied", r->unique_frames);
			json_f64(&j, "harvest_time_ms", (double)st.total_ns / 1e6);
			json_f64(&j, "harvest_max_ms", (double)st.max_ns / 1e6);
			json_u64(&j, "ring_full_exits", st.ring_full_exits);
		}
		pthread_mutex_unlock(&r->lock);
	} else {
		json_bool(&j, "ok", 0);
		json_str(&j, "error", "unknown command (status, pause, resume, stats, finish, stop, cancel, resolve, migrate, estimate, checkpoint)");
	}
	json_end(&j);
	fclose(f);
	vmhost_ctl_reply(c, out, outlen);
}

void vmhost_ctl_reply_line(struct ctl_client *c, const char *line)
{
	size_t n = strlen(line);
	char *t = malloc(n + 1);
	if (!t)
		return;
	memcpy(t, line, n);
	t[n] = '\n';
	vmhost_ctl_reply(c, t, n + 1);
}

static void ctl__alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	struct ctl_client *c = h->data;
	(void)sz;
	*b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void ctl__read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct ctl_client *c = s->data;
	(void)b;
	if (n < 0) {
		uv_close((uv_handle_t *)s, ctl__free);
		return;
	}
	c->len += (size_t)n;
	char *nl;
	while ((nl = memchr(c->buf, '\n', c->len))) {
		*nl = 0;
		if (nl > c->buf && nl[-1] == '\r')
			nl[-1] = 0;
		ctl__command(c, c->buf);
		size_t used = (size_t)(nl - c->buf) + 1;
		memmove(c->buf, nl + 1, c->len - used);
		c->len -= used;
	}
	if (c->len == sizeof(c->buf)) /* a line longer than any command */
		uv_close((uv_handle_t *)s, ctl__free);
}

static void ctl__connection(uv_stream_t *server, int status)
{
	struct vmhost *r = server->data;
	if (status < 0)
		return;
	struct ctl_client *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->r = r;
	uv_pipe_init(&r->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 ||
	    uv_read_start((uv_stream_t *)&c->pipe, ctl__alloc, ctl__read) < 0)
		uv_close((uv_handle_t *)&c->pipe, ctl__free);
}

static int vmhost__open_ctl(struct vmhost *r)
{
	char dir[RUNDIR_MAX_PATH], why[RUNDIR_MAX_PATH + 200];
	struct sockaddr_un a;
	if (r->dirfd < 0) {
		int fd = rundir_open(1, dir, sizeof(dir), why, sizeof(why));
		if (fd < 0) {
			util_err("%s", why);
			return fd;
		}
		r->dirfd = fd;
	} else if (rundir_path(dir, sizeof(dir)) < 0) {
		dir[0] = 0;
	}
	snprintf(r->sock_path, sizeof(r->sock_path), "%s/%s.sock", dir, r->name);
	int e = rundir_sock_addr(r->dirfd, r->name, &a);
	if (e < 0) {
		util_err("control socket name too long");
		return e;
	}
	/* A socket file that nobody answers on is stale and may be replaced;
	 * one that answers belongs to a running VM of the same name. */
	int other = util_ctl_connect(NULL, r->name);
	if (other >= 0) {
		close(other);
		util_err("a VM named '%s' is already running (%s)", r->name, r->sock_path);
		return -EEXIST;
	}
	char sock[80];
	snprintf(sock, sizeof(sock), "%s.sock", r->name);
	unlinkat(r->dirfd, sock, 0);
	uv_pipe_init(&r->loop, &r->server, 0);
	r->server.data = r;
	/* 0600 from birth: only our user may drive this VM. */
	mode_t old = umask(0177);
	e = uv_pipe_bind(&r->server, a.sun_path);
	umask(old);
	if (!e)
		e = uv_listen((uv_stream_t *)&r->server, 16, ctl__connection);
	if (e < 0) {
		util_err("control socket %s: %s", r->sock_path, uv_strerror(e));
		return e;
	}
	return 0;
}

static void vmhost__close_walk(uv_handle_t *h, void *arg)
{
	struct vmhost *r = arg;
	if (uv_is_closing(h))
		return;
	/* Control clients own their memory; everything else lives in the vmhost. */
	if (h->type == UV_NAMED_PIPE && h != (uv_handle_t *)&r->server)
		uv_close(h, ctl__free);
	else
		uv_close(h, NULL);
}

static void vmhost__on_stopped(uv_async_t *a)
{
	struct vmhost *r = a->data;
	vmhost_estimate_cancel(r, "the guest stopped during the estimate");
	vmhost_checkpoint_cancel(r, "the guest stopped during the checkpoint");
	if (r->mig) {
		/* Finish the migration's bookkeeping first; done() stops the loop. */
		r->stop_after_mig = 1;
		/* Say how: a guest that crashed mid-migration is not one that
		 * finished its work, and the operator reads only send's error. */
		char why[256];
		pthread_mutex_lock(&r->lock);
		if (r->why == HV_STOP_CRASH)
			snprintf(why, sizeof(why), "the guest stopped during the migration: it crashed (%s)", r->detail);
		else if (r->why == HV_STOP_EXIT)
			snprintf(why, sizeof(why), "the guest stopped during the migration: it exited with status %d",
				 r->exit_code);
		else
			snprintf(why, sizeof(why), "the guest stopped during the migration");
		pthread_mutex_unlock(&r->lock);
		migrate_src_cancel(r->mig, why);
		return;
	}
	uv_stop(a->loop);
}

static void vmhost__on_signal(uv_signal_t *s, int sig)
{
	struct vmhost *r = s->data;
	(void)sig;
	hv_vm_stop(r->vm);
}

/* ---- report ---- */

/* The guest ended well: exit code 0 and its report (our images), or a
 * toolstack's guest that powered itself off (it has no report). */
static int vmhost__clean_exit(const struct vmhost *r)
{
	return r->exit_code == 0 && (r->have_report || hv_vm_toolstack_guest(r->vm));
}

static void vmhost__print_report(struct vmhost *r, FILE *f, int json)
{
	double secs = (double)(r->t_end - r->t_start) / 1e9;
	struct precopy_dirtylog_stats st = { 0 };
	if (r->dl)
		precopy_dirtylog_get_stats(r->dl, &st);
	double stall_us = 0;
	if (r->have_report && r->report.tsc_khz)
		stall_us = (double)r->report.max_stall_tsc * 1000.0 / (double)r->report.tsc_khz;
	const char *result = r->migrated ? "migrated" : r->indeterminate ? "indeterminate" : r->why == HV_STOP_EXIT ? (vmhost__clean_exit(r) ? "ok" : "guest-failed")
			     : r->why == HV_STOP_CRASH ? "crashed"
						       : "stopped";
	if (json) {
		struct json j;
		char dig[17];
		json_begin(&j, f);
		json_str(&j, "result", result);
		json_i64(&j, "exit_code", r->exit_code);
		if ((r->why != HV_STOP_EXIT || hv_vm_toolstack_guest(r->vm)) && !r->migrated) /* a toolstack guest: what its shutdown did */
			json_str(&j, "detail", r->detail);
		if (r->migrated || r->indeterminate)
			json_str(&j, "migrated_to", r->mig_target);
		json_str(&j, "name", r->name);
		if (r->have_report) {
			snprintf(dig, sizeof(dig), "%016" PRIx64, r->report.digest);
			json_str(&j, "workload", r->report.workload);
			json_u64(&j, "seed", r->report.seed);
			json_u64(&j, "ops", r->report.ops);
			json_str(&j, "digest", dig);
			json_f64(&j, "max_stall_us", stall_us);
			json_u64(&j, "max_stall_tsc", r->report.max_stall_tsc);
			json_u64(&j, "tsc_backwards", r->report.tsc_backwards);
		}
		json_f64(&j, "run_time_ms", secs * 1000.0);
		vmhost__json_hv(r, &j);
		json_u64(&j, "vcpus", r->cfg.vcpus);
		json_u64(&j, "mem_bytes", r->cfg.mem_bytes);
		json_str(&j, "dirty_log", hv_dirty_mode_name(r->cfg.dirty_mode));
		json_u64(&j, "harvests", st.harvests);
		json_u64(&j, "dirty_pages_harvested", st.frames);
		json_u64(&j, "unique_pages_dirtied", r->unique_frames);
		json_f64(&j, "harvest_time_ms", (double)st.total_ns / 1e6);
		json_f64(&j, "harvest_mean_us", st.harvests ? (double)st.total_ns / 1e3 / (double)st.harvests : 0);
		json_f64(&j, "harvest_max_us", (double)st.max_ns / 1e3);
		json_u64(&j, "ring_full_exits", st.ring_full_exits);
		json_end(&j);
		return;
	}
	fprintf(f, "\n== pml-migrate run: %s ==\n", r->name);
	fprintf(f, "  result           %s", result);
	if (r->migrated || r->indeterminate)
		fprintf(f, " (to %s; the guest finishes there)\n", r->mig_target);
	else if (r->why == HV_STOP_EXIT)
		fprintf(f, " (guest exit code %d)\n", r->exit_code);
	else
		fprintf(f, " (%s)\n", r->detail);
	if (r->have_report) {
		fprintf(f, "  workload         %s (seed %" PRIu64 ")\n", r->report.workload, r->report.seed);
		fprintf(f, "  ops              %" PRIu64 "\n", r->report.ops);
		fprintf(f, "  digest           %016" PRIx64 "\n", r->report.digest);
		fprintf(f, "  max stall        %.3f ms (guest-observed)\n", stall_us / 1000.0);
	}
	fprintf(f, "  run time         %.3f s\n", secs);
	fprintf(f, "  dirty log        %s", hv_dirty_mode_name(r->cfg.dirty_mode));
	if (r->dl)
		fprintf(f, ": %" PRIu64 " harvests, %" PRIu64 " pages (%" PRIu64 " distinct), %.3f ms total, "
			   "%.1f us mean, %.1f us max, %" PRIu64 " ring-full exits\n",
			st.harvests, st.frames, r->unique_frames, (double)st.total_ns / 1e6,
			st.harvests ? (double)st.total_ns / 1e3 / (double)st.harvests : 0, (double)st.max_ns / 1e3,
			st.ring_full_exits);
	else
		fputs(" (armed only while a migration runs)\n", f);
}


/* ---- outgoing migration ---- */

static void vmhost__start_harvester(struct vmhost *r);
static void vmhost__stop_harvester(struct vmhost *r);

static void vmhost__mig_line(struct vmhost *r, const char *json)
{
	if (r->mig_client)
		vmhost_ctl_reply_line(r->mig_client, json);
}

static void vmhost__mig_event(void *opaque, const char *json) { vmhost__mig_line(opaque, json); }

/* A dirty log armed for one migration is disarmed when it failed: the
 * guest goes on here at full speed. A log kept at rest (--harvest-ms)
 * goes back to its harvester. */
static void vmhost__release_dirtylog(struct vmhost *r)
{
	if (!r->harvest_at_rest) { /* then only a migration arms it */
		pthread_mutex_lock(&r->lock);
		precopy_dirtylog_close(r->dl);
		r->dl = NULL;
		pthread_mutex_unlock(&r->lock);
	}
	vmhost__start_harvester(r);
}

static void vmhost__mig_done(void *opaque, enum migrate_result res, const char *json)
{
	struct vmhost *r = opaque;
	vmhost__mig_line(r, json);
	if (r->on_mig_done)
		r->on_mig_done(r->on_mig_done_opaque, res, json);
	uint64_t token = migrate_src_token(r->mig);
	int state_sent = migrate_src_state_sent(r->mig);
	r->mig = NULL;
	if (res == MIGRATE_OK) {
		/* The guest lives on the destination now; this copy never runs again. */
		r->migrated = 1;
		hv_vm_moved(r->vm);
		hv_vm_stop(r->vm);
	} else if (res == MIGRATE_INDETERMINATE) {
		/* Stays paused until the destination says what became of it
		 * (vmhost/resolve.c) or an operator decides. */
		r->indeterminate = 1;
		vmhost_resolve_start(r, token, STREAM_DECIDE_COMMIT);
	} else {
		vmhost__release_dirtylog(r);
		/* The destination may hold the VM in doubt past a READY (one
		 * we never saw, maybe), our ERROR lost with the link: tell it
		 * we went on here. */
		if (state_sent)
			vmhost_resolve_start(r, token, STREAM_DECIDE_ABORT);
	}
	if (r->stop_after_mig)
		uv_stop(&r->loop);
	vmhost_once_check(r);
}

void vmhost_once_check(struct vmhost *r)
{
	if (r->one_migration && !r->mig && !r->res && !r->indeterminate && !r->migrated && r->vm &&
	    !hv_vm_has_ended(r->vm))
		hv_vm_stop(r->vm);
}

void vmhost_mig_resolved(struct vmhost *r, int ran, const char *why)
{
	if (!r->indeterminate)
		return;
	r->indeterminate = 0;
	if (ran) {
		fprintf(stderr, "pml-migrate: '%s' runs on %s (%s): this paused copy is discarded\n", r->name,
			r->mig_target, why);
		r->migrated = 1;
		hv_vm_moved(r->vm);
		hv_vm_stop(r->vm);
		return;
	}
	fprintf(stderr, "pml-migrate: '%s' does not run on %s (%s): it resumes here\n", r->name, r->mig_target, why);
	const char *hvname = hv_vm_config(r->vm)->name;
	if (hvname[0]) /* it stepped aside for COMMIT (Xen): its name back */
		hv_vm_rename(r->vm, hvname);
	hv_vm_resume(r->vm);
	vmhost__release_dirtylog(r);
	vmhost_once_check(r);
}

static const struct migrate_src_ops run_mig_ops = {
	.event = vmhost__mig_event,
	.done = vmhost__mig_done,
};

int vmhost_log_user_check(struct vmhost *r, const char *needs, int at_rest_ok, int ignore_ckpt, char *err, size_t len)
{
	if (r->mig)
		snprintf(err, len, "a migration of '%s' is already in progress", r->name);
	else if (r->est)
		snprintf(err, len, "an estimate of '%s' is already running: wait for it, or stop it (close its connection)",
			 r->name);
	else if (r->ckpt && !ignore_ckpt)
		snprintf(err, len, "'%s' is being checkpointed: stop 'pml-migrate checkpoint' first", r->name);
	else if (r->t_end || r->migrated || r->indeterminate || r->incoming)
		snprintf(err, len, "'%s' is not running here", r->name);
	else if (r->cfg.dirty_mode == HV_DIRTY_OFF)
		snprintf(err, len, "'%s' runs without a dirty log (--dirty-log off): %s", r->name, needs);
	else if (r->dl && !at_rest_ok)
		snprintf(err, len, "'%s' keeps its dirty log armed at rest (run --harvest-ms): its harvester owns it",
			 r->name);
	else
		return 0;
	return -EBUSY;
}

/* "migrate key=value ...": starts a migration; on success j->f is cleared
 * and the connection receives progress events and the result instead. */
static void vmhost__migrate(struct ctl_client *c, char *args, struct json *j)
{
	struct vmhost *r = c->r;
	struct migrate_src_opts o;
	char err[512] = "";
	char *save = NULL;

	migrate_src_opts_default(&o);
	for (char *w = strtok_r(args, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(w, '=');
		if (!eq) {
			snprintf(err, sizeof(err), "migrate: '%s' is not key=value", w);
			goto refuse;
		}
		*eq = 0;
		if (migrate_src_opt_set(&o, w, eq + 1, err, sizeof(err)) < 0)
			goto refuse;
	}
	if (vmhost_log_user_check(r, "cannot pre-copy", 1, 0, err, sizeof(err)) < 0)
		goto refuse;
	if (r->paused) {
		snprintf(err, sizeof(err), "'%s' is paused: resume it first", r->name);
		goto refuse;
	}
	if (hv_vm_finish_requested(r->vm)) {
		/* The request would stay here and the guest work on over there. */
		snprintf(err, sizeof(err), "'%s' was asked to finish its work (ctl finish): it is not moved any more",
			 r->name);
		goto refuse;
	}
	if (!r->dl) {
		/* Armed for this migration only: the guest runs without the
		 * log's write faults the rest of the time. */
		struct precopy_dirtylog *dl;
		int e = precopy_dirtylog_open(r->vm, &dl);
		if (e < 0) {
			snprintf(err, sizeof(err), "starting the %s dirty log: %s", hv_dirty_mode_name(r->cfg.dirty_mode),
				 strerror(-e));
			goto refuse;
		}
		pthread_mutex_lock(&r->lock);
		r->dl = dl;
		pthread_mutex_unlock(&r->lock);
	}
	vmhost__stop_harvester(r); /* the engine harvests from now on */
	int e = migrate_src_start(&r->loop, r->vm, r->dl, r->name, &o, &run_mig_ops, r, &r->mig, err, sizeof(err));
	if (e < 0) {
		vmhost__release_dirtylog(r);
		goto refuse;
	}
	snprintf(r->mig_target, sizeof(r->mig_target), "%s", o.target);
	r->mig_opts = o; /* an older migration's resolution (an ABORT) keeps its own copy */
	r->mig_client = c;
	r->stop_after_mig = 0;
	j->f = NULL;
	struct json sj;
	json_begin_str(&sj);
	json_bool(&sj, "ok", 1);
	json_str(&sj, "event", "started");
	json_str(&sj, "name", r->name);
	json_str(&sj, "target", o.target);
	char *line = json_end_str(&sj);
	if (line)
		vmhost__mig_line(r, line);
	free(line);
	return;
refuse:
	json_bool(j, "ok", 0);
	json_str(j, "error", err);
}

/* ---- lifecycle ---- */

static void vmhost__start_harvester(struct vmhost *r)
{
	if (!r->dl || r->harvester_started)
		return;
	atomic_store(&r->harvest_stop, 0);
	if (pthread_create(&r->harvester, NULL, vmhost__harvester, r) == 0)
		r->harvester_started = 1;
}

static void vmhost__stop_harvester(struct vmhost *r)
{
	if (!r->harvester_started)
		return;
	atomic_store(&r->harvest_stop, 1);
	pthread_join(r->harvester, NULL);
	r->harvester_started = 0;
}

int vmhost_init(struct vmhost *r, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->cfg.mem_bytes = 256ull << 20;
	r->cfg.vcpus = 1;
	r->cfg.dirty_mode = HV_DIRTY_RING;
	r->harvest_ms = 10;
	r->dirfd = -1;
	r->con = stdout;
	r->out = stdout;
	snprintf(r->name, sizeof(r->name), "%s", name);
	pthread_mutex_init(&r->lock, NULL);
	if (uv_loop_init(&r->loop) < 0) {
		util_err("event loop init failed");
		return -ENOMEM;
	}
	r->loop_ok = 1;
	uv_async_init(&r->loop, &r->stopped_async, vmhost__on_stopped);
	r->stopped_async.data = r;
	uv_signal_init(&r->loop, &r->sigint);
	uv_signal_init(&r->loop, &r->sigterm);
	r->sigint.data = r->sigterm.data = r;
	uv_signal_start(&r->sigint, vmhost__on_signal, SIGINT);
	uv_signal_start(&r->sigterm, vmhost__on_signal, SIGTERM);
	return 0;
}

int vmhost_create_incoming(struct vmhost *r, const char *hv, const struct stream_shape *sh, const void *dom,
			   size_t domlen, char *why, size_t len)
{
	const char *src_hv = sh->hv == STREAM_HV_KVM ? "kvm" : "xen";
	if (strcmp(src_hv, hv)) {
		snprintf(why, len, "the state is a %s VM's and this host receives into %s",
			 sh->hv != STREAM_HV_KVM ? "Xen" : "KVM", !strcmp(hv, "xen") ? "Xen" : "KVM");
		return -EPROTONOSUPPORT;
	}
	r->cfg.mem_bytes = sh->mem_bytes;
	r->cfg.vcpus = sh->vcpus;
	if (!strcmp(hv, "xen")) {
		/* Xen's log-dirty is a bitmap, armed only for an onward move. */
		r->cfg.dirty_mode = HV_DIRTY_BITMAP;
		snprintf(r->cfg.name, sizeof(r->cfg.name), "%s", r->name);
	} else {
		r->cfg.dirty_mode = sh->dirty_log == HV_DIRTY_BITMAP ? HV_DIRTY_BITMAP : HV_DIRTY_RING;
		r->cfg.huge_pages = 1; /* every page that arrives is written: make that cheap */
	}
	int e = hv_vm_create(hv, &r->cfg, &r->vm);
	if (e < 0) {
		snprintf(why, len, "cannot create a %" PRIu64 " MiB, %u-vCPU %s VM here: %s", sh->mem_bytes >> 20,
			 sh->vcpus, hv, strerror(-e));
		return e;
	}
	hv_vm_set_guest_ops(r->vm, &vmhost_guest_ops, r);
	/* A toolstack's guest: its toolstack here builds the domain. */
	e = dom ? hv_vm_prepare_restore(r->vm, dom, domlen, why, len) : hv_vm_prepare_incoming(r->vm, why, len);
	if (e < 0) {
		hv_vm_destroy(r->vm);
		r->vm = NULL;
	}
	return e;
}

int vmhost_claim_name(struct vmhost *r, const char *name)
{
	if (name != r->name)
		snprintf(r->name, sizeof(r->name), "%s", name);
	return vmhost__open_ctl(r);
}

int vmhost_went_live(struct vmhost *r)
{
	r->incoming = 0;
	r->t_start = util_now_ns();
	if (r->harvest_at_rest && r->cfg.dirty_mode != HV_DIRTY_OFF && !r->dl) {
		int e = precopy_dirtylog_open(r->vm, &r->dl);
		if (e < 0) {
			util_err("starting the %s dirty log: %s", hv_dirty_mode_name(r->cfg.dirty_mode), strerror(-e));
			return e;
		}
	}
	vmhost__start_harvester(r);
	return 0;
}

static void vmhost__write_report_json(FILE *f, void *opaque) { vmhost__print_report(opaque, f, 1); }

static void vmhost__write_result_file(struct vmhost *r)
{
	if (!r->result_name[0] || r->dirfd < 0)
		return;
	int e = rundir_write_atomic(r->dirfd, r->result_name, vmhost__write_report_json, r);
	if (e < 0)
		util_err("writing %s: %s", r->result_name, strerror(-e));
}

int vmhost_run(struct vmhost *r)
{
	uv_run(&r->loop, UV_RUN_DEFAULT);
	return vmhost_finish(r);
}

int vmhost_finish(struct vmhost *r)
{
	hv_vm_wait(r->vm);
	if (r->harvester_started) {
		vmhost__stop_harvester(r);
		vmhost__harvest_once(r); /* the tail since the last periodic harvest */
	}
	if (!r->t_end)
		r->t_end = util_now_ns();
	vmhost__write_result_file(r);
	vmhost__print_report(r, r->out, r->json);
	fflush(r->out);
	if (r->why == HV_STOP_CRASH && !r->json)
		util_err("guest crashed: %s", r->detail);
	if (r->migrated)
		return PMG_EXIT_OK;
	if (r->indeterminate)
		return PMG_EXIT_INDETERMINATE;
	return (r->why == HV_STOP_EXIT && vmhost__clean_exit(r)) ? PMG_EXIT_OK : PMG_EXIT_FAIL;
}

void vmhost_cleanup(struct vmhost *r)
{
	vmhost_estimate_cancel(r, "the VM host is shutting down");
	vmhost_checkpoint_cancel(r, "the VM host is shutting down");
	vmhost__stop_harvester(r);
	if (r->loop_ok)
		vmhost_resolve_stop(r);
	if (r->loop_ok) {
		/* libuv unlinks the bound socket as it closes it (through the
		 * directory descriptor's /proc path, so that stays open until here). */
		uv_walk(&r->loop, vmhost__close_walk, r);
		uv_run(&r->loop, UV_RUN_DEFAULT);
		uv_loop_close(&r->loop);
	}
	if (r->dirfd >= 0)
		close(r->dirfd);
	precopy_dirtylog_close(r->dl);
	precopy_dirty_set_free(&r->set);
	hv_vm_destroy(r->vm);
	pthread_mutex_destroy(&r->lock);
}
