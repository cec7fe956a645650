/*
 * migrate/query.h - asking an agent what it can take (`evacuate`): a
 * connection over the same authenticated TLS a migration uses, carrying a
 * HELLO with STREAM_CAP_QUERY; the agent answers CAPACITY (or ERROR) and
 * closes. Nothing is claimed or started on the agent.
 *
 * Threads: any; the call runs a private libuv loop to completion.
 */
#ifndef PMG_MIGRATE_QUERY_H
#define PMG_MIGRATE_QUERY_H

#include <stddef.h>
#include "migrate/stream.h"
#include "transport/xport.h"

/* Queries the agent at hostport ("HOST:PORT") through tls (a client
 * configuration), waiting at most timeout_ms in all. Returns 0 with *out,
 * or -errno with a one-line reason in err (refused, unreachable, the
 * agent's ERROR text, a malformed answer, -ETIMEDOUT). */
int migrate_query_capacity(struct xport_tls *tls, const char *hostport, unsigned timeout_ms,
			   struct stream_capacity *out, char *err, size_t errlen);

#endif
