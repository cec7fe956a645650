/*
 * cli/recv-resolve.h - what an agent knows of the migrations it received,
 * and its answer to a source asking what became of one (RESOLVE,
 * docs/stream.md).
 *
 * Each session keeps RUNDIR/NAME.migration (mode 0600, replaced
 * atomically) up to date with its migration's token, the source's
 * certificate name, its pid and how far it got. The file outlives the
 * session (a kill -9 included), so a later RESOLVE can still be answered
 * for certain: a session that ended with the VM destroyed, or whose guest
 * started, says so there. A session that still runs is asked through its
 * control socket.
 *
 * Threads: the caller's; these block (bounded: the control socket's
 * answer within RECV_RESOLVE_WAIT_MS).
 */
#ifndef PMG_CLI_RECV_RESOLVE_H
#define PMG_CLI_RECV_RESOLVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "migrate/stream.h"

#define RECV_RESOLVE_WAIT_MS 5000

/* How far a received migration got, in order. */
enum recv_state {
	RECV_RECEIVING, /* HELLO answered: memory arriving */
	RECV_READY,     /* READY sent, awaiting COMMIT */
	RECV_IN_DOUBT,  /* READY, then no COMMIT in time or the link lost: the VM is kept paused */
	RECV_COMMITTED, /* COMMIT taken, the guest starting */
	RECV_RUNNING,   /* the guest started here (whatever became of it since) */
	RECV_DESTROYED, /* the session ended with the VM destroyed before it ever ran */
};

struct recv_record {
	uint64_t token;
	char peer[256]; /* the source's certificate name ("" when plaintext) */
	pid_t pid;      /* the session's */
	char hv[8];     /* "kvm" or "xen" */
	enum recv_state state;
};

/* The state's name in the file and in logs. */
const char *recv_state_name(enum recv_state s);
/* Writes NAME.migration in the run directory dirfd. 0 or -errno. */
int recv_record_write(int dirfd, const char *name, const struct recv_record *r);
/* Reads it: 0, -ENOENT (none), -EINVAL (malformed), or -errno. */
int recv_record_read(int dirfd, const char *name, struct recv_record *r);

/* The answer to RESOLVE rq for VM name from a client whose certificate
 * carries peer: an enum stream_outcome with text filled, or -errno with
 * text (-EACCES: the migration came with another certificate). Opens the
 * run directory itself; asks a live session through its control socket
 * ("resolve TOKEN commit|abort", which may start or destroy its VM). */
int recv_resolve_answer(const char *name, const char *peer, const struct stream_resolve *rq, char *text, size_t len);

#endif
