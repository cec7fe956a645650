/*
 * vmhost/resolve.h - learning how a migration ended when its answer was
 * lost. After COMMIT with no RUNNING back (indeterminate), the VM host
 * asks the destination's agent (RESOLVE over the same authenticated TLS,
 * migrate/query.h) what became of the migration, and says it sent COMMIT:
 *   - RAN: the guest started there; this copy is discarded (migrated);
 *   - NONE: no copy runs there and none can start (never started,
 *     destroyed): this copy resumes here;
 *   - UNKNOWN, or no answer: the copy stays paused, and it asks again
 *     (1 s, doubling to every 30 s, for as long as the VM host lives).
 * After a failure that came once READY had arrived (the destination may
 * hold the VM in doubt and our ERROR may never have reached it), it says
 * ABORT instead, so the destination discards its copy; the guest runs
 * here anyway, and it gives up after RESOLVE_ABORT_TRIES.
 * `ctl NAME resolve` asks at once and answers with what it learned.
 *
 * Threads: loop thread; each question runs in libuv's thread pool.
 */
#ifndef PMG_VMHOST_RESOLVE_H
#define PMG_VMHOST_RESOLVE_H

#include <stdint.h>
#include "migrate/stream.h"
#include "util/json.h"
#include "vmhost/vmhost.h"

#define RESOLVE_FIRST_MS 1000
#define RESOLVE_MAX_MS 30000
#define RESOLVE_TIMEOUT_MS 20000 /* one question, connect to answer */
#define RESOLVE_ABORT_TRIES 10

/* Starts resolving the migration that just ended (its options in
 * r->mig_opts) with token and decision. A token of 0 cannot be resolved:
 * nothing starts. Replaces a resolution still running. */
void vmhost_resolve_start(struct vmhost *r, uint64_t token, enum stream_decision decision);
/* "resolve" from client c: asks now, the answer comes later on c (j->f
 * cleared), or the refusal is written into j. */
void vmhost_resolve_ctl(struct vmhost *r, struct ctl_client *c, struct json *j);
/* Client c is gone: no answer for it. */
void vmhost_resolve_detach(struct vmhost *r, struct ctl_client *c);
/* Stops resolving (the VM host ends). */
void vmhost_resolve_stop(struct vmhost *r);
/* For `ctl status`: "" when nothing is being resolved, else the last
 * answer or error. */
const char *vmhost_resolve_last(struct vmhost *r);

#endif
