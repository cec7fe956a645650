/*
 * cli/runner.h - a process that hosts one VM: the built-in VMM's guest
 * callbacks, the control socket (status, pause, resume, stats, stop,
 * migrate), the background dirty-log harvester, and the final report.
 * `pml-migrate run` boots an image into one; an agent's session process
 * fills one from an incoming migration.
 *
 * Threads: everything here runs on the runner's loop thread, except the
 * guest callbacks (vCPU threads) and the harvester (its own thread).
 */
#ifndef PMG_CLI_RUNNER_H
#define PMG_CLI_RUNNER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <uv.h>
#include "hv/hv.h"
#include "migrate/source.h"
#include "precopy/dirtylog.h"

struct ctl_client;

struct runner {
	struct hv_vm *vm;
	struct hv_vm_config cfg;
	char name[65];
	int dirfd;               /* the checked run directory (cli/rundir.h), -1 until claimed */
	char sock_path[4200];    /* for messages; the socket is reached through dirfd */
	int json;                /* report as JSON */
	FILE *con;               /* guest console */
	FILE *out;               /* human or JSON report */
	char result_name[80];    /* also write the JSON report to this file in dirfd (sessions) */
	uint64_t t_start, t_end;
	int incoming;            /* state arriving from a migration, not yet running */

	struct precopy_dirtylog *dl;
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

	/* outgoing migration */
	struct migrate_src *mig;
	struct ctl_client *mig_client;
	int migrated, indeterminate, stop_after_mig;
	char mig_target[300];

	uv_loop_t loop;
	int loop_ok;
	uv_pipe_t server;
	uv_async_t stopped_async;
	uv_signal_t sigint, sigterm;
	int paused;
};

/* Sets up the loop, signals and the VM-stopped notification. name may be
 * "" and set later with runner_claim_name(). Returns 0 or -errno. */
int runner_init(struct runner *r, const char *name);
/* Opens the run directory (refused unless ours: cli/rundir.h) and binds
 * NAME's control socket there, mode 0600 (-EEXIST: a VM of that name
 * answers there). Returns 0 or -errno, message printed. */
int runner_claim_name(struct runner *r, const char *name);
/* The guest callbacks to install on r->vm. */
extern const struct hv_guest_ops runner_guest_ops;
/* The VM runs, or is about to (the caller starts it just before or just
 * after): opens its dirty log (if any) and starts the harvester. Returns 0
 * or -errno (message printed). */
int runner_went_live(struct runner *r);
/* Runs the loop until the VM stops, then prints the report. Returns the
 * process exit code. */
int runner_run(struct runner *r);
/* The second half of runner_run, for a caller that ran the loop itself
 * until the VM stopped. */
int runner_finish(struct runner *r);
/* Frees everything (VM included). */
void runner_cleanup(struct runner *r);

#endif
