/*
 * tests/guest-run.h - run a guest image to completion in-process and keep
 * its report (shared by the C tests).
 */
#ifndef PMG_TESTS_GUEST_RUN_H
#define PMG_TESTS_GUEST_RUN_H

#include <pthread.h>
#include "hv/hv.h"

struct guest_run {
	struct hv_vm *vm;
	pthread_mutex_t lock;
	struct pmg_report report;
	int have_report;
	enum hv_stop_reason why;
	int exit_code;
	char detail[160];
	int stopped;
	/* optional hooks, set before guest_run_create*(): the guest's own
	 * record of written frames, and its round barriers (PMG_HC_BARRIER) */
	void (*on_writes)(struct guest_run *g, unsigned vcpu, const uint64_t *gfns, size_t n);
	void (*on_barrier)(struct guest_run *g, unsigned vcpu, uint64_t round);
	void *user;
};

/* Path of a built guest image (from $GUEST_DIR or the build tree). */
const char *guest_image(const char *name);
/* Creates the VM and boots image with args. g must be zero-initialized
 * except for the hooks and user. 0 or -errno (err filled). */
int guest_run_create(struct guest_run *g, const struct hv_vm_config *cfg, const char *image, const char *args,
		     char *err, size_t errlen);
/* Creates an empty VM (no image) with the same callbacks, for restores;
 * same rules for g as guest_run_create(). */
int guest_run_create_empty(struct guest_run *g, const struct hv_vm_config *cfg);
/* Waits until the VM stopped; returns 0 when the guest exited 0 with a report. */
int guest_run_wait(struct guest_run *g);
void guest_run_destroy(struct guest_run *g);
/* Convenience: create+start+wait+destroy; *rep gets the report. */
int guest_run_once(const struct hv_vm_config *cfg, const char *image, const char *args, struct pmg_report *rep);

#endif
