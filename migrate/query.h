/*
 * migrate/query.h - asking an agent what it can take (`evacuate`): a
 * connection over the same authenticated TLS a migration uses, carrying a
 * HELLO with STREAM_CAP_QUERY; the agent answers CAPACITY (or ERROR) and
 * closes. Nothing is claimed or started on the agent. With
 * STREAM_CAP_PROBE too, the connection then carries filler for a while
 * and the agent says how fast it arrived (`estimate --to`). With
 * STREAM_CAP_RESOLVE, it asks what became of one migration (RESOLVE).
 *
 * Threads: any; the call runs a private libuv loop to completion.
 */
#ifndef PMG_MIGRATE_QUERY_H
#define PMG_MIGRATE_QUERY_H

#include <stddef.h>
#include "migrate/stream.h"
#include "transport/xport.h"

/* Who we are to the agent, as for a migration: a certificate node in
 * certs_dir, and the name the agent's certificate must carry (peer;
 * NULL or "": the HOST of hostport), or plaintext with insecure. */
struct migrate_query_auth {
	int insecure;
	const char *certs_dir, *node, *peer;
};

/* Queries the agent at hostport ("HOST:PORT") as auth says, waiting at
 * most timeout_ms in all. Returns 0 with *out,
 * or -errno with a one-line reason in err (refused, unreachable, the
 * agent's ERROR text, a malformed answer, -ETIMEDOUT, the certificates
 * not loading). */
int migrate_query_capacity(const struct migrate_query_auth *auth, const char *hostport, unsigned timeout_ms,
			   struct stream_capacity *out, char *err, size_t errlen);

/* The same, then measures the link: PROBE records of filler for seconds
 * (0.1..60), as fast as the connection takes them, then the agent's
 * measure (PROBE_DONE): *rate_Bps, record bytes per second as they
 * arrived there (the stream's own 8-byte headers included; TLS and TCP
 * overhead not), and *rtt_us, the kernel's smoothed round trip before
 * the filler (under load it would measure the queue; 0 if unknown).
 * The whole call is bounded by seconds + 15 s. */
int migrate_query_probe(const struct migrate_query_auth *auth, const char *hostport, double seconds, struct stream_capacity *cap,
			uint64_t *rate_Bps, unsigned *rtt_us, char *err, size_t errlen);

/* Asks the agent what became of migration rq->token of VM name, after
 * the source did rq->decision (docs/stream.md, RESOLVE): with COMMIT, a
 * destination holding the VM in doubt starts it; with ABORT it destroys
 * it. 0 with *out (the outcome and the agent's reason), or -errno with a
 * one-line reason in err, as migrate_query_capacity(). */
int migrate_query_resolve(const struct migrate_query_auth *auth, const char *hostport, const char *name,
			  const struct stream_resolve *rq, unsigned timeout_ms, struct stream_resolved *out, char *err,
			  size_t errlen);

#endif
