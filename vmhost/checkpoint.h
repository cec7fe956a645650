/*
 * vmhost/checkpoint.h - "checkpoint ..." on a VM's control socket: writes
 * one checkpoint file of the running VM (migrate/ckpt.h) the way a
 * migration moves it: pages go to the file while the guest runs, in
 * rounds picked from the dirty log, until the engine's switchover policy
 * (precopy/policy.h) says the rest fits in the pause; then the guest is
 * paused for that last dirty set and its vCPU state, and resumed before
 * anything reaches the disk.
 *
 * The first checkpoint of a connection is a full image. The dirty log then
 * stays armed for as long as that connection stays open, so the next one
 * on it can be incremental: only the pages written since the previous
 * pause. Closing the connection disarms the log (the guest runs without
 * its write faults again) and abandons a checkpoint being written (its
 * temporary file is removed, the guest is resumed).
 *
 * Command: checkpoint seq=N [incremental=1] [downtime=MS] [max-precopy=MS] dir=PATH
 * (dir last: the rest of the line, an absolute path). The answer is one
 * JSON line.
 *
 * Threads: the functions below run on the VM host's loop thread; the
 * writing runs in a thread of its own ("checkpoint").
 */
#ifndef PMG_VMHOST_CHECKPOINT_H
#define PMG_VMHOST_CHECKPOINT_H

#include "util/json.h"
#include "vmhost/vmhost.h"

/* "checkpoint ARGS" from client c. On success j->f is cleared and the
 * answer comes later on c's connection; otherwise the refusal is written
 * into j. */
void vmhost_checkpoint_start(struct vmhost *r, struct ctl_client *c, char *args, struct json *j);

/* Client c's connection closed: if it owns the checkpoint session, the
 * checkpoint being written is abandoned and the log disarmed. */
void vmhost_checkpoint_detach(struct vmhost *r, struct ctl_client *c);

/* Ends the checkpoint session (why: sent as the answer's error when a
 * checkpoint is being written). No-op when none. */
void vmhost_checkpoint_cancel(struct vmhost *r, const char *why);
/* Whether a checkpoint session holds the dirty log armed (from its first
 * checkpoint until the session ends). Loop thread. */
int vmhost_checkpoint_log_armed(struct vmhost *r);

#endif
