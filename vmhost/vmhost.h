/*
 * vmhost/vmhost.h - the process that hosts one VM, whatever the backend:
 * it reaches the hypervisor through hv/hv.h only (the backend's ops table,
 * hv/hv-backend.h, stays behind it). It holds the guest callbacks, the
 * control socket (status, pause, resume, stats, stop, cancel, migrate), the
 * background dirty-log harvester, the source engine of an outgoing
 * migration, and the final report. `pml-migrate run` boots an image into
 * one; an agent's session process (`pml-migrate recv`) fills one from an
 * incoming migration.
 *
 * Threads: everything here runs on the vmhost's loop thread, except the
 * guest callbacks (vCPU threads) and the harvester (its own thread).
 */
#ifndef PMG_VMHOST_VMHOST_H
#define PMG_VMHOST_VMHOST_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <uv.h>
#include "hv/hv.h"
#include "migrate/source.h"
#include "migrate/stream.h"
#include "precopy/dirtylog.h"

struct ctl_client;
struct vmhost_estimate;
struct vmhost_ckpt;
struct json;
struct vmhost_resolve;

struct vmhost {
	struct hv_vm *vm;
	struct hv_vm_config cfg;
	char name[65];
	int dirfd;               /* the checked run directory (util/rundir.h), -1 until claimed */
	char sock_path[4200];    /* for messages; the socket is reached through dirfd */
	int json;                /* report as JSON */
	FILE *con;               /* guest console */
	FILE *out;               /* human or JSON report */
	char result_name[80];    /* also write the JSON report to this file in dirfd (sessions) */
	uint64_t t_start, t_end;
	int incoming;            /* state arriving from a migration, not yet running */
	int in_doubt;            /* incoming, READY answered and no COMMIT heard: kept paused (state "in-doubt") */
	/* Optional (agent sessions): control commands about the incoming
	 * migration while r->incoming ("resolve TOKEN commit|abort"; resume
	 * and stop of a VM in doubt). Returns 1 when it answered into j
	 * (ok and the rest), 0 to let the usual commands answer. Loop thread. */
	int (*incoming_ctl)(void *opaque, const char *cmd, struct json *j);
	void *incoming_ctl_opaque;

	struct precopy_dirtylog *dl;
	int harvest_at_rest;     /* keep dl armed from going live and harvest every harvest_ms (run --harvest-ms);
	                          * otherwise dl exists only while a migration runs */
	unsigned harvest_ms;
	pthread_t harvester;
	int harvester_started;
	atomic_int harvest_stop;
	pthread_mutex_t lock; /* guards dl while the harvester runs, report, stop info */
	uint64_t unique_frames;
	struct precopy_dirty_set set;

	struct pmg_report report;
	int have_report;
	enum hv_stop_reason why;
	int exit_code;
	char detail[160];

	/* estimate (vmhost/estimate.c): running while est is set */
	struct vmhost_estimate *est;
	struct ctl_client *est_client;

	/* checkpoint session (vmhost/checkpoint.c): while its client is connected */
	struct vmhost_ckpt *ckpt;

	/* outgoing migration */
	struct migrate_src *mig;
	struct migrate_src_opts mig_opts; /* the last migration's (vmhost/resolve.c asks its agent) */
	struct vmhost_resolve *res;       /* learning how it ended, when its answer was lost */
	struct ctl_client *mig_client;
	int migrated, indeterminate, stop_after_mig;
	/* Host for one migration only (send of a toolstack's guest that no
	 * process hosts): once it ended and nothing about it is pending, the
	 * host leaves: the VM moved away, or stays with its toolstack. */
	int one_migration;
	char mig_target[300];
	/* Optional: told every outgoing migration's result line (JSON), on
	 * the loop thread (the agent's sessions count them for metrics). */
	void (*on_mig_done)(void *opaque, enum migrate_result res, const char *json);
	void *on_mig_done_opaque;

	uv_loop_t loop;
	int loop_ok;
	uv_pipe_t server;
	uv_async_t stopped_async;
	uv_signal_t sigint, sigterm;
	int paused;
};

/* Sets up the loop, signals and the VM-stopped notification. name may be
 * "" and set later with vmhost_claim_name(). Returns 0 or -errno. */
int vmhost_init(struct vmhost *r, const char *name);
/* Opens the run directory (refused unless ours: util/rundir.h) and binds
 * NAME's control socket there, mode 0600 (-EEXIST: a VM of that name
 * answers there). Returns 0 or -errno, message printed. */
int vmhost_claim_name(struct vmhost *r, const char *name);
/* The guest callbacks to install on r->vm. */
extern const struct hv_guest_ops vmhost_guest_ops;
/* The VM runs, or is about to (the caller starts it just before or just
 * after). With harvest_at_rest set, opens the dirty log and starts the
 * harvester; otherwise the log stays disarmed until a migration arms it,
 * so the guest runs as fast as with no dirty log. Returns 0 or -errno
 * (message printed). */
int vmhost_went_live(struct vmhost *r);
/* Creates r->vm empty, to be filled with the state of a stream of shape
 * sh (an incoming migration, a restored checkpoint) on backend hv ("kvm"
 * or "xen"), which must be the one that stream's vCPU state is for;
 * dom/domlen: the stream's DOMAIN description of a toolstack's guest
 * (hv_vm_prepare_restore), or NULL/0. Returns 0 or -errno with a one-line reason in why. */
/* With one_migration: leaves (stops the VM, which for a toolstack's
 * guest leaves it running untouched, and so the loop) once the
 * migration ended and no resolution is pending. Loop thread. */
void vmhost_once_check(struct vmhost *r);
int vmhost_create_incoming(struct vmhost *r, const char *hv, const struct stream_shape *sh, const void *dom,
			   size_t domlen, char *why, size_t len);
/* Whether a new user of the dirty log may start now (a migration, an
 * estimate, a checkpoint): none of those is running (a checkpoint
 * session is ignored when ignore_ckpt is set: its own next checkpoint),
 * the VM runs here, it has a dirty log (else "... (--dirty-log off):
 * NEEDS"), and, unless at_rest_ok, no harvester keeps the log armed at
 * rest. 0, or -EBUSY with the reason in err. Loop thread. */
int vmhost_log_user_check(struct vmhost *r, const char *needs, int at_rest_ok, int ignore_ckpt, char *err, size_t len);
/* Runs the loop until the VM stops, then prints the report. Returns the
 * process exit code. */
int vmhost_run(struct vmhost *r);
/* The second half of vmhost_run, for a caller that ran the loop itself
 * until the VM stopped. */
int vmhost_finish(struct vmhost *r);
/* The outcome of an indeterminate migration, learned from its
 * destination (vmhost/resolve.c): ran there (this copy is discarded: the
 * VM host ends as migrated) or not (this copy resumes). Loop thread. */
void vmhost_mig_resolved(struct vmhost *r, int ran, const char *why);
/* What the VM is doing, as `ctl status` and `list` say it: running,
 * paused, migrating, incoming, in-doubt, migrated, indeterminate,
 * stopped. Loop thread. */
const char *vmhost_state(const struct vmhost *r);
/* Frees everything (VM included). */
void vmhost_cleanup(struct vmhost *r);

/* Writes text (len bytes, malloc'd; the connection takes it) to a control
 * client. Loop thread. */
void vmhost_ctl_reply(struct ctl_client *c, char *text, size_t len);
/* Writes a copy of line and a '\n' to a control client. Loop thread. */
void vmhost_ctl_reply_line(struct ctl_client *c, const char *line);

#endif
