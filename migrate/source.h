/*
 * migrate/source.h - the sending side of a live migration.
 *
 * Runs inside the process that holds the VM (pml-migrate run, or an
 * agent's session after an incoming migration). Connects to the
 * destination over transport/, then a pre-copy engine thread streams
 * memory: first every page the guest ever touched, then what the dirty
 * log reports, continuously, holding back pages that keep getting dirty,
 * until the expected downtime fits --downtime. Switchover pauses the
 * guest, sends the rest and the vCPU state, and commits (docs/stream.md).
 *
 * Threads: migrate_src_start/cancel are called on the loop thread, and
 * every callback runs there. Internally: one engine thread, one encoder
 * thread per stream; the loop only moves bytes.
 */
#ifndef PMG_MIGRATE_SOURCE_H
#define PMG_MIGRATE_SOURCE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "hv/hv.h"
#include "precopy/dirtylog.h"

#define MIGRATE_MAX_STREAMS 8

enum migrate_compress { MIGRATE_COMPRESS_AUTO = 0, MIGRATE_COMPRESS_ON, MIGRATE_COMPRESS_OFF };

/* Outcome, mapped to exit codes by the CLI (README). */
enum migrate_result {
	MIGRATE_OK = 0,            /* destination runs the guest; source copy is gone */
	MIGRATE_FAILED = 1,        /* guest still runs on the source */
	MIGRATE_INDETERMINATE = 3, /* COMMIT sent, no answer: the guest may run on either side, not both */
};

struct migrate_src_opts {
	char target[300];          /* HOST:PORT of the agent */
	unsigned downtime_ms;      /* switch over when expected downtime <= this (default 50) */
	unsigned max_time_s;       /* give up (guest keeps running) after this (default 600) */
	uint64_t max_bandwidth;    /* bytes/s cap, 0 = unlimited */
	unsigned streams;          /* parallel connections, 1..MIGRATE_MAX_STREAMS */
	enum migrate_compress compress;
	int verify;                /* destination checks its memory page for page at switchover */
	int throttle;              /* slow the vCPUs that dirty the most when not converging (default on) */
	int resume;                /* reconnect and continue after a lost connection before READY (default on) */
	unsigned link_timeout_s;   /* nothing from the destination for this long: the link is lost (default 10) */
	unsigned setup_timeout_s;  /* connect, TLS handshake and HELLO answered within this (default 15) */
	int insecure;              /* plaintext */
	char certs[256];           /* certificate directory */
	char node[65];             /* our certificate name */
	char peer[256];            /* name the agent's certificate must carry (default: target host) */
};

void migrate_src_opts_default(struct migrate_src_opts *o);
/* Sets one option from its key=value form (the control-socket protocol,
 * also used to validate the CLI's flags). Keys: target downtime max_time
 * max_bandwidth streams compress verify throttle resume link_timeout
 * setup_timeout insecure certs node peer.
 * Returns 0 or -EINVAL with err/errlen set. */
int migrate_src_opt_set(struct migrate_src_opts *o, const char *key, const char *val, char *err, size_t errlen);
/* Checks cross-field rules (target set, certs unless insecure). */
int migrate_src_opts_check(const struct migrate_src_opts *o, char *err, size_t errlen);

struct migrate_src_ops {
	/* One JSON object (no newline) per progress event. */
	void (*event)(void *opaque, const char *json);
	/* Exactly once, at the end: the outcome and the final report (JSON).
	 * With MIGRATE_OK the VM is paused for good and must not resume. */
	void (*done)(void *opaque, enum migrate_result res, const char *json);
};

struct migrate_src;

/* Starts migrating vm (name: its name on the destination). dl: the VM's
 * dirty log, which the engine harvests exclusively until done. Nothing
 * else may harvest dl or pause/resume vm meanwhile. The migration frees
 * itself after done(). err/errlen: why it could not start.
 *
 * Resume (o->resume, when the destination offers it): a connection lost
 * before READY does not fail the migration. The source reconnects to the
 * destination session's port with backoff (within --max-time), proves it
 * is the same migration (the session's token, over the same mutually
 * authenticated TLS) and resends only the records the destination did not
 * receive, plus what the guest dirtied meanwhile. A paused switchover
 * resumes the guest first. A refused connection (the session is gone) or
 * an ERROR from the destination still fails at once. After COMMIT nothing
 * is resumed. Events: "link_lost" and "resumed". */
int migrate_src_start(uv_loop_t *loop, struct hv_vm *vm, struct precopy_dirtylog *dl, const char *name,
		      const struct migrate_src_opts *o, const struct migrate_src_ops *ops, void *opaque,
		      struct migrate_src **out, char *err, size_t errlen);
/* Aborts unless COMMIT was already sent: the migration fails with why,
 * every connection is closed so nothing waits on the destination, and the
 * guest keeps running here; done() follows within a bounded time. Returns
 * 0, or -EALREADY once COMMIT was sent (nothing changes: the outcome is
 * the destination's). --max-time does the same on its own. */
int migrate_src_cancel(struct migrate_src *m, const char *why);

/* The SHAPE a stream of vm carries (its memory, vCPUs, dirty log and
 * hypervisor): what the VM that receives its state must be. */
struct stream_shape;
void migrate_src_shape(struct hv_vm *vm, struct stream_shape *sh);

/* For resolving an outcome the migration could not learn (RESOLVE,
 * docs/stream.md), from done(): the migration's token (its JOIN's; 0 with
 * one connection and no resume), and whether STATE_DONE went out (the
 * destination may then have answered READY, even one we never saw, and
 * hold the VM until told). Loop thread. */
uint64_t migrate_src_token(const struct migrate_src *m);
int migrate_src_state_sent(const struct migrate_src *m);

#endif
