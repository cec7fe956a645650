/*
 * cli/recv-resolve.c - the record of received migrations and the answer
 * to RESOLVE (see recv-resolve.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "cli/recv-resolve.h"
#include "util/json.h"
#include "util/rundir.h"
#include "util/util.h"

static const char *const state_names[] = { "receiving", "ready", "in-doubt", "committed", "running", "destroyed" };

const char *recv_state_name(enum recv_state s)
{
	return (unsigned)s < sizeof(state_names) / sizeof(state_names[0]) ? state_names[s] : "?";
}

static void record__put(FILE *f, void *opaque)
{
	const struct recv_record *r = opaque;
	struct json j;
	char tok[17];
	snprintf(tok, sizeof(tok), "%016" PRIx64, r->token);
	json_begin(&j, f);
	json_str(&j, "token", tok);
	json_str(&j, "peer", r->peer);
	json_u64(&j, "pid", (uint64_t)r->pid);
	json_str(&j, "hv", r->hv);
	json_str(&j, "state", recv_state_name(r->state));
	json_u64(&j, "time", (uint64_t)time(NULL));
	json_end(&j);
}

int recv_record_write(int dirfd, const char *name, const struct recv_record *r)
{
	char file[96];
	snprintf(file, sizeof(file), "%s.migration", name);
	return rundir_write_atomic(dirfd, file, record__put, (void *)r);
}

int recv_record_read(int dirfd, const char *name, struct recv_record *r)
{
	char file[96], line[1024], v[300];
	snprintf(file, sizeof(file), "%s.migration", name);
	int fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	ssize_t n = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? read(fd, line, sizeof(line) - 1) : -1;
	close(fd);
	if (n <= 0)
		return -EINVAL;
	line[n] = 0;
	memset(r, 0, sizeof(*r));
	char *end;
	if (json_field(line, "token", v, sizeof(v)) < 0 || !(r->token = strtoull(v, &end, 16)) || *end)
		return -EINVAL;
	if (json_field(line, "peer", r->peer, sizeof(r->peer)) < 0 || json_field(line, "hv", r->hv, sizeof(r->hv)) < 0 ||
	    json_field(line, "pid", v, sizeof(v)) < 0 || (r->pid = (pid_t)strtol(v, NULL, 10)) <= 0 ||
	    json_field(line, "state", v, sizeof(v)) < 0)
		return -EINVAL;
	for (unsigned i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
		if (!strcmp(v, state_names[i])) {
			r->state = (enum recv_state)i;
			return 0;
		}
	return -EINVAL;
}

static int pid_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* Asks the live session of name (its control socket) to resolve: the
 * outcome it answered, or 0 with text when it gave none (gone, busy,
 * another session of that name). */
static int resolve__ask(const char *name, const struct stream_resolve *rq, char *text, size_t len)
{
	char cmd[64], buf[2048], line[2048], v[32];
	size_t have = 0;
	int fd = util_ctl_connect(NULL, name);
	if (fd < 0) {
		snprintf(text, len, "its session's control socket does not answer (%s)", strerror(-fd));
		return 0;
	}
	int n = snprintf(cmd, sizeof(cmd), "resolve %016" PRIx64 " %s\n", rq->token,
			 rq->decision == STREAM_DECIDE_COMMIT ? "commit" : "abort");
	int l = write(fd, cmd, (size_t)n) == n ? util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line),
							    RECV_RESOLVE_WAIT_MS)
					     : -1;
	close(fd);
	if (l <= 0) {
		snprintf(text, len, "its session did not answer within %u s", RECV_RESOLVE_WAIT_MS / 1000);
		return 0;
	}
	if (!strstr(line, "\"ok\":true")) {
		char why[512] = "no reason given";
		json_field(line, "error", why, sizeof(why));
		snprintf(text, len, "its session refused: %s", why);
		return 0;
	}
	json_field(line, "why", text, len);
	if (json_field(line, "outcome", v, sizeof(v)) < 0)
		return 0;
	return !strcmp(v, "ran") ? STREAM_OUTCOME_RAN : !strcmp(v, "none") ? STREAM_OUTCOME_NONE : STREAM_OUTCOME_UNKNOWN;
}

/* What the record says for certain, or 0. */
static int resolve__from_record(const struct recv_record *r, char *text, size_t len)
{
	if (r->state == RECV_RUNNING) {
		snprintf(text, len, "the guest started here after COMMIT");
		return STREAM_OUTCOME_RAN;
	}
	if (r->state == RECV_DESTROYED) {
		snprintf(text, len, "the VM was destroyed here before it ever ran");
		return STREAM_OUTCOME_NONE;
	}
	return 0;
}

int recv_resolve_answer(const char *name, const char *peer, const struct stream_resolve *rq, char *text, size_t len)
{
	char dir[RUNDIR_MAX_PATH], why[RUNDIR_MAX_PATH + 200], asked[600] = "";
	struct recv_record r;
	int dfd = rundir_open(0, dir, sizeof(dir), why, sizeof(why));
	if (dfd < 0) {
		snprintf(text, len, "no record of a migration of '%s' here (%s)", name, why);
		return STREAM_OUTCOME_UNKNOWN;
	}
	int e = recv_record_read(dfd, name, &r), out;
	if (e < 0) {
		snprintf(text, len, e == -ENOENT ? "no record of a migration of '%s' here" : "the record of '%s' here is unreadable",
			 name);
		out = STREAM_OUTCOME_UNKNOWN;
		goto out;
	}
	if (strcmp(r.peer, peer)) {
		snprintf(text, len, "the migration of '%s' here came with another certificate", name);
		out = -EACCES;
		goto out;
	}
	if (r.token != rq->token) {
		snprintf(text, len, "the last migration of '%s' here is another one: its record replaced this one's", name);
		out = STREAM_OUTCOME_UNKNOWN;
		goto out;
	}
	if ((out = resolve__from_record(&r, text, len)))
		goto out;
	if (pid_alive(r.pid) && (out = resolve__ask(name, rq, asked, sizeof(asked)))) {
		snprintf(text, len, "%s", asked);
		goto out;
	}
	/* No answer from the session: once it is gone, its last word is in
	 * the record (it writes DESTROYED after the VM is gone). */
	for (int i = 0; i < RECV_RESOLVE_WAIT_MS / 50 && pid_alive(r.pid); i++)
		usleep(50000);
	if (recv_record_read(dfd, name, &r) == 0 && r.token == rq->token && (out = resolve__from_record(&r, text, len)))
		goto out;
	if (!pid_alive(r.pid) && r.state <= RECV_IN_DOUBT && !strcmp(r.hv, "kvm")) {
		/* A KVM guest's memory is its session's: it died with it. */
		snprintf(text, len, "its session ended (%s) before COMMIT took effect; the VM died with it and never ran",
			 recv_state_name(r.state));
		out = STREAM_OUTCOME_NONE;
		goto out;
	}
	snprintf(text, len, "its session (pid %d, %s) %s%s%s", (int)r.pid, recv_state_name(r.state),
		 pid_alive(r.pid) ? "gave no answer: " : "ended without saying whether the guest started",
		 pid_alive(r.pid) ? asked : "", !pid_alive(r.pid) && strcmp(r.hv, "kvm") ? " (a Xen domain may remain)" : "");
	out = STREAM_OUTCOME_UNKNOWN;
out:
	close(dfd);
	return out;
}
