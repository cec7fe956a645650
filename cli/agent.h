/*
 * cli/agent.h - the receiving agent of `pml-migrate recv --listen`: accepts
 * connections and admits them, in three stages, so that nothing
 * unauthenticated costs much or can starve an authenticated peer:
 *
 *   1. pending: the agent holds the socket and only looks (MSG_PEEK,
 *      FIONREAD) until the client's whole first TLS record (its
 *      ClientHello; with --insecure, its HELLO record) has arrived. No
 *      process, no session: an idle or trickling client costs one fd and
 *      is dropped at the handshake deadline, or when the pending table is
 *      full and a newer connection needs room (oldest first).
 *   2. handshaking: a session process (this binary re-executed, fd 3 the
 *      socket, fd 4 a socketpair to the agent) finishes TLS and reads
 *      HELLO. At most --max-handshakes of these, separate from the session
 *      cap; the oldest is killed when a new one needs room, and each is
 *      killed at the handshake deadline. It holds no VM yet.
 *   3. session: authenticated and named, the process asks the agent for a
 *      slot (agent_gate_ask); --max-sessions counts only these. A session
 *      holds its slot with a lock in the run directory (agent_slot_hold),
 *      so an agent restarted while earlier sessions still run counts them
 *      too. A capacity query, link probe or resolution takes no session
 *      slot but one of --max-queries.
 *
 * Threads: the agent is single-threaded (its libuv loop).
 */
#ifndef PMG_CLI_AGENT_H
#define PMG_CLI_AGENT_H

#include <stddef.h>
#include "migrate/dest.h"

struct recv_opts {
	char listen[300];
	char certs[256], node[65], allow[1024];
	char port_file[256];
	char metrics_file[256]; /* Prometheus text format, rewritten on every change ("" none) */
	int insecure;
	char hv[8];     /* the backend incoming VMs run on: "kvm" or "xen" */
	int session_fd; /* >= 0: this process is a session (internal) */
	int agent_fd;   /* a session's socketpair to its agent, -1 if none */
	unsigned max_sessions, max_handshakes, max_pending;
	unsigned max_queries; /* capacity queries, link probes and resolutions at once */
	struct migrate_dst_limits lim;
};

/* "[HH:MM:SS] pml-migrate recv[PID]: ..." on stderr, the agent's log. */
void recv_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs the agent until SIGINT/SIGTERM. Returns the exit code. */
int agent_run(struct recv_opts *o);

/* Session side: asks the agent over fd for a session slot, once the peer
 * is authenticated. Returns 0 (granted), -EBUSY (--max-sessions reached)
 * or -errno, with why filled on refusal. fd < 0 (no agent): granted. */
int agent_gate_ask(int fd, char *why, size_t len);
/* Session side: the agent's session count and --max-sessions (a capacity
 * query, link probe or resolution; takes no session slot but one of the
 * --max-queries). Returns 0, -EBUSY (--max-queries reached) or -errno,
 * with why filled on refusal. fd < 0 (no agent): 0 of 1. */
int agent_gate_query(int fd, unsigned *sessions, unsigned *max_sessions, char *why, size_t len);

/* Session side: holds this session's slot in the run directory for as
 * long as the process lives (a lock on RUNDIR/.session-PID), so an agent
 * restarted after a crash still counts it. Returns the descriptor to keep
 * open, or -errno. */
int agent_slot_hold(void);

#endif
