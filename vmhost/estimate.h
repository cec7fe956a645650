/*
 * vmhost/estimate.h - "estimate MS" on a VM's control socket: what a
 * migration of this guest would face, measured without migrating. The
 * dirty log is armed for MS milliseconds, harvested every
 * VMHOST_ESTIMATE_HARVEST_MS, and disarmed again; the answer (one JSON
 * line) gives the working set per window (precopy/wss.h: 100 ms, 1 s,
 * 10 s), the dirty rate, the hot set, and what the log cost the guest.
 *
 * Threads: the functions below run on the VM host's loop thread; the
 * measuring runs in a thread of its own ("estimate").
 */
#ifndef PMG_VMHOST_ESTIMATE_H
#define PMG_VMHOST_ESTIMATE_H

#include "util/json.h"
#include "vmhost/vmhost.h"

#define VMHOST_ESTIMATE_HARVEST_MS 10

/* The working-set windows, ascending: lengths, and the names the answer's
 * fields carry (wss_NAME_median_pages, ...). */
#define VMHOST_ESTIMATE_NWIN 3
extern const uint64_t vmhost_estimate_window_ns[VMHOST_ESTIMATE_NWIN];
extern const char *const vmhost_estimate_window_name[VMHOST_ESTIMATE_NWIN];
#define VMHOST_ESTIMATE_MAX_MS 3600000u /* an hour */

/* "estimate [MS]" from client c (args: what follows the word). On success
 * j->f is cleared and the answer comes later on c's connection; otherwise
 * the refusal is written into j. */
void vmhost_estimate_start(struct vmhost *r, struct ctl_client *c, const char *args, struct json *j);

/* Ends a running estimate early, answering its client with an error
 * (why), and disarms the log. No-op when none runs. */
void vmhost_estimate_cancel(struct vmhost *r, const char *why);

/* Whether a running estimate holds the dirty log armed. Loop thread. */
int vmhost_estimate_log_armed(struct vmhost *r);

#endif
