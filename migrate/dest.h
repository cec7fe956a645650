/*
 * migrate/dest.h - the receiving side of one migration.
 *
 * Runs in its own process (one per incoming migration, started by the
 * agent), on that process's libuv loop. Reads and validates the stream,
 * decodes pages in one worker thread per connection straight into guest
 * memory, loads the vCPU state, answers READY only once everything is
 * applied, and on COMMIT starts the guest and answers RUNNING.
 *
 * Threads: everything here is called on the loop thread and every
 * callback runs there.
 */
#ifndef PMG_MIGRATE_DEST_H
#define PMG_MIGRATE_DEST_H

#include <stddef.h>
#include <uv.h>
#include "hv/hv.h"
#include "migrate/stream.h"
#include "transport/xport.h"

/* Steps of a migration the owner may want to record (step()). */
enum migrate_dst_step {
	MIGRATE_DST_RECEIVING, /* HELLO answered: migrate_dst_token() names the migration now */
	MIGRATE_DST_READY,     /* READY sent: only COMMIT (or the source's ERROR) may follow */
	MIGRATE_DST_IN_DOUBT,  /* READY, then no COMMIT in time or lane 0's link lost: the VM is
				* kept paused until migrate_dst_resolve() or the owner decides */
	MIGRATE_DST_COMMITTED, /* COMMIT taken: the guest is about to start (running() or failed() next) */
};

struct migrate_dst_ops {
	/* HELLO arrived: reserve the VM name on this host (its control
	 * socket). 0, or -errno with why filled. */
	int (*claim)(void *opaque, const char *name, char *why, size_t len);
	/* SHAPE arrived: create an empty VM of that shape (ownership stays
	 * with the owner). 0, or -errno with why filled. */
	/* dom/domlen: the DOMAIN record's description (a toolstack's guest:
	 * hv_vm_prepare_restore), or NULL/0. */
	int (*create_vm)(void *opaque, const struct stream_shape *sh, const void *dom, size_t domlen, struct hv_vm **vm,
			 char *why, size_t len);
	/* COMMIT applied: the guest runs here now and RUNNING was sent.
	 * stats: JSON object with what was received. */
	void (*running)(void *opaque, const char *stats);
	/* The migration ended without the guest running here (why: a clear
	 * reason, also sent to the source as ERROR when the link is up). */
	void (*failed)(void *opaque, const char *why);
	/* Optional: a HELLO with STREAM_CAP_QUERY (not a migration) asks
	 * what this destination can take. 0 with *c filled (sent as CAPACITY,
	 * then the session ends through failed(), why "capacity query
	 * answered"), or -errno with why filled (sent as ERROR). NULL: such
	 * a HELLO is refused. */
	int (*capacity)(void *opaque, struct stream_capacity *c, char *why, size_t len);
	/* Optional: each step as it happens (why: a short reason). */
	void (*step)(void *opaque, enum migrate_dst_step step, const char *why);
	/* Optional: a HELLO with STREAM_CAP_QUERY | STREAM_CAP_RESOLVE naming
	 * VM name, from a client whose certificate carries peer ("" when
	 * plaintext), asks what became of migration rq->token after the
	 * source did rq->decision. Returns an enum stream_outcome with text
	 * filled (sent as RESOLVED), or -errno with text (sent as ERROR);
	 * either way the session then ends through failed(). NULL: such a
	 * HELLO is refused. */
	int (*resolve)(void *opaque, const char *name, const char *peer, const struct stream_resolve *rq, char *text,
		       size_t len);
};

struct migrate_dst;

/* Deadlines before COMMIT (after it the guest runs here and none apply). */
struct migrate_dst_limits {
	unsigned handshake_ms; /* connect to an authenticated HELLO (default 10 s) */
	unsigned idle_ms;      /* no progress: nothing received while receiving, the pages
				* STATE_DONE announced not arriving, no COMMIT after READY
				* (default 60 s) */
};
void migrate_dst_limits_default(struct migrate_dst_limits *lim);

/* Serves one migration on the accepted TCP socket fd (ownership moves
 * in). lim: NULL for the defaults. Extra connections (--streams) are
 * accepted on a port this session opens on the same local address; one
 * that fails its handshake, closes or idles before a valid JOIN is dropped
 * without harming the migration (only a JOIN with a wrong token fails it). */
int migrate_dst_start(uv_loop_t *loop, struct xport_tls *tls, int fd, const struct migrate_dst_limits *lim,
		      const struct migrate_dst_ops *ops, void *opaque, struct migrate_dst **out);
/* Fuzzing and replay: a session with no connection. Bytes given to
 * migrate_dst_feed() are read as if they arrived on the first connection;
 * nothing is ever answered (no HELLO, JOIN, ROUND_END, ACK, READY or
 * ERROR goes anywhere) and no extra connection can join or resume.
 * Everything else is the real session: phases, validation, claim() and
 * create_vm(), page decoding into that VM, vCPU state loading at READY,
 * deadlines. Loop thread. */
int migrate_dst_start_feed(uv_loop_t *loop, const struct migrate_dst_limits *lim, const struct migrate_dst_ops *ops,
			   void *opaque, struct migrate_dst **out);
/* Feeds n bytes and returns once the decode workers have applied every
 * page record fed so far (their results reach the session on the next
 * loop turns). 0 while the session goes on, -ECANCELED once it ended
 * (failed() or running() was called) or for a session with a connection. */
int migrate_dst_feed(struct migrate_dst *d, const void *p, size_t n);
/* who ("the source", "the operator") says what became of migration
 * token (its JOIN's; a resolution that reached this session through its
 * owner): ABORT destroys the VM (failed()) unless the guest already runs;
 * COMMIT starts it if this session is at READY (in doubt or not).
 * Returns the outcome for the source (enum stream_outcome: RAN, NONE, or
 * UNKNOWN when COMMIT names a session that never said READY), or -EACCES
 * for another token; why gets a reason either way. Loop thread. */
int migrate_dst_resolve(struct migrate_dst *d, uint64_t token, enum stream_decision decision, const char *who, char *why,
			size_t len);
/* Bytes written to lane 0's connection not yet handed to the kernel. */
size_t migrate_dst_unsent(struct migrate_dst *d);
/* 1 while the session holds the VM at READY in doubt (step IN_DOUBT). */
int migrate_dst_in_doubt(const struct migrate_dst *d);
/* The migration's token (0 before HELLO was answered, or with one
 * connection and no resume), and the source's certificate name. */
uint64_t migrate_dst_token(const struct migrate_dst *d);
const char *migrate_dst_peer(const struct migrate_dst *d);
/* Releases everything once running() or failed() has been called; may
 * be called from inside those callbacks. The VM stays with the owner. */
void migrate_dst_free(struct migrate_dst *d);

#endif
