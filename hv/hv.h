/*
 * hv/hv.h - hypervisor backend interface.
 *
 * One VM = guest memory + 1..N vCPUs + an optional dirty log. The embedding
 * program (the built-in VMM, a test, the migration engine) drives it through
 * these calls; a backend (KVM now, Xen later) implements them behind the
 * ops table in hv/hv-backend.h.
 *
 * Conventions: functions return 0 or -errno. Unless said otherwise a
 * function may be called from any thread, but not concurrently with
 * hv_vm_destroy(). Callbacks in struct hv_guest_ops run on vCPU threads.
 */
#ifndef PMG_HV_H
#define PMG_HV_H

#include <stddef.h>
#include <stdint.h>
#include "guest/abi.h"

#define HV_PAGE_SHIFT 12
#define HV_PAGE_SIZE (1ull << HV_PAGE_SHIFT)
#define HV_MAX_VCPUS PMG_MAX_VCPUS
#define HV_MIN_MEM (16ull << 20)
#define HV_MAX_MEM (128ull << 30)

/* A memory size a VM may have: a multiple of 2 MiB in HV_MIN_MEM..HV_MAX_MEM. */
static inline int hv_mem_size_valid(uint64_t bytes)
{
	return bytes >= HV_MIN_MEM && bytes <= HV_MAX_MEM && !(bytes & ((2ull << 20) - 1));
}

enum hv_dirty_mode {
	HV_DIRTY_OFF = 0,
	HV_DIRTY_RING,   /* per-vCPU ring of dirty GFNs (the PML-style log) */
	HV_DIRTY_BITMAP, /* whole-memory bitmap, manual protect (baseline) */
};

const char *hv_dirty_mode_name(enum hv_dirty_mode m);
/* Parses "ring", "bitmap", "off". Returns 0 or -EINVAL. */
int hv_dirty_mode_parse(const char *s, enum hv_dirty_mode *out);

struct hv_vm_config {
	uint64_t mem_bytes;          /* multiple of 2 MiB, HV_MIN_MEM..HV_MAX_MEM */
	unsigned vcpus;              /* 1..HV_MAX_VCPUS */
	enum hv_dirty_mode dirty_mode; /* fixed for the VM's life (KVM needs it before vCPUs exist) */
	uint32_t ring_entries;       /* per vCPU, power of two; 0 = 65536 (or the kernel's max) */
	char name[65];               /* what the hypervisor calls the VM, where it names VMs
	                              * (a Xen domain name); "" lets the backend choose */
	int huge_pages;              /* back memory with transparent huge pages: first touch is
	                              * ~13x cheaper here, but memory is then taken 2 MiB at a
	                              * time; for a destination filling memory it will use */
};

/* Why a vCPU stopped running for good. */
enum hv_stop_reason {
	HV_STOP_EXIT = 1,  /* guest wrote an exit code */
	HV_STOP_CRASH,     /* triple fault, bad MMIO, internal error */
	HV_STOP_KILLED,    /* hv_vm_stop() */
};

struct hv_guest_ops {
	/* Console bytes, in order, per vCPU. */
	void (*console)(void *opaque, unsigned vcpu, const char *buf, size_t len);
	/* The guest's final report (already copied out and bounds-checked). */
	void (*report)(void *opaque, const struct pmg_report *r);
	/* Frames the guest says it wrote (dirty-log tests); gfns are checked
	 * to lie inside guest memory. */
	void (*writes)(void *opaque, unsigned vcpu, const uint64_t *gfns, size_t n);
	/* A vCPU reached a round barrier (PMG_HC_BARRIER); it re-enters the
	 * guest when this returns. Used by benchmarks to dirty a known set. */
	void (*barrier)(void *opaque, unsigned vcpu, uint64_t round);
	/* The whole VM stopped: every vCPU is done. */
	void (*stopped)(void *opaque, enum hv_stop_reason why, int exit_code, const char *detail);
};

struct hv_vm;

/* Creates a VM with empty (zero, sparse) memory and vCPUs that are not
 * running. backend: "kvm", or "xen" when built with the Xen libraries
 * (-ENOTSUP otherwise). On Xen the domain itself is created by
 * hv_boot_image(); Xen takes 1 vCPU and the bitmap or no dirty log
 * (-ENOTSUP otherwise), and needs dom0 privileges (-EACCES/-ENOENT when
 * the Xen interfaces cannot be opened). *out owned by the caller:
 * hv_vm_destroy(). */
int hv_vm_create(const char *backend, const struct hv_vm_config *cfg, struct hv_vm **out);
/* Takes over a VM that the hypervisor's toolstack created, making this
 * process its host and device model, as hv_vm_create() and
 * hv_boot_image() together would. Xen: domain is a domain id or name; the
 * domain must be PVH, with 1 vCPU, paused (xl create -p), memory a
 * multiple of 2 MiB; its memory and name become the VM's config, and it
 * is destroyed with the VM. A refused attach leaves the domain untouched.
 * KVM: -ENOTSUP (a KVM VM lives inside the process that made it).
 * flags HV_ATTACH_LIVE (Xen): the domain is a toolstack's own guest
 * (its own kernel and PV devices, any memory size, up to HV_MAX_VCPUS
 * vCPUs), running or paused: it is not served, only moved, with its help
 * (hv_vm_suspend); it is destroyed with the VM only after hv_vm_moved().
 * Returns 0 or -errno with a one-line reason in err. */
#define HV_ATTACH_LIVE 1u
int hv_vm_attach(const char *backend, const char *domain, enum hv_dirty_mode dirty, unsigned flags, struct hv_vm **out, char *err,
		 size_t errlen);
/* Stops vCPU threads if any and frees everything. */
void hv_vm_destroy(struct hv_vm *vm);

/* Whether this build has backend name ("kvm", "xen"). */
int hv_backend_built(const char *name);
/* The backend this host runs: "xen" when built with Xen and this is a Xen
 * dom0 (the privcmd device exists), otherwise "kvm". */
const char *hv_host_backend(void);

/* Whether the hypervisor's toolstack has the VM domain (Xen: a domain name,
 * or a domain id other than dom0's), and its name there: 1 with name set,
 * 0 when there is none, or -errno (no such backend, not a host of it). */
int hv_domain_name(const char *backend, const char *domain, char *name, size_t len);

/* The backend's name: "kvm" or "xen". */
const char *hv_vm_backend(const struct hv_vm *vm);
/* The hypervisor's own id for the VM (a Xen domain id), or -1 when it has
 * none (KVM; Xen before hv_boot_image()). */
int64_t hv_vm_domid(struct hv_vm *vm);

/* Makes the VM ready to be filled by an incoming migration, without
 * booting an image. KVM: nothing to do. Xen: creates the domain, paused,
 * under the temporary name cfg.name + "--incoming" (as `xl migrate`
 * does), so it never clashes with the source's domain on one host.
 * Returns 0 or -errno with a one-line reason in err. */
int hv_vm_prepare_incoming(struct hv_vm *vm, char *err, size_t errlen);
/* The description of the VM a destination needs before any page, when
 * the VM is a toolstack's guest (Xen, HV_ATTACH_LIVE: its libxl
 * configuration, CPU policy and populated frames); *len = 0 when none.
 * *blob malloc'd, the caller's. Returns 0 or -errno. */
int hv_vm_domain_blob(struct hv_vm *vm, void **blob, size_t *len);
/* Instead of hv_vm_prepare_incoming() for a VM that comes with such a
 * description: the hypervisor's toolstack builds it as for its own
 * migration (Xen: libxl restores the domain, under cfg.name +
 * "--incoming"); it is ready for pages, and its state (hv_vcpu_load) ends
 * the restore. -ENOTSUP where there is no such thing. 0 or -errno, err set. */
int hv_vm_prepare_restore(struct hv_vm *vm, const void *blob, size_t len, char *err, size_t errlen);
/* The switchover stop of a migration: hv_vm_pause(), or for a guest that
 * must help (HV_ATTACH_LIVE) its cooperative suspend, which can take
 * seconds and fail (the guest does not answer: it keeps running, err
 * says why). Undone by hv_vm_resume() (a cancelled suspend). 0 or -errno. */
int hv_vm_suspend(struct hv_vm *vm, char *err, size_t errlen);
/* The VM now runs on another host: destroying it here discards this copy
 * (for a VM that would otherwise be left to its toolstack). */
void hv_vm_moved(struct hv_vm *vm);
/* Whether the VM is a toolstack's own guest (HV_ATTACH_LIVE, or restored
 * from one): it runs its own kernel and devices and never uses the
 * project's guest ABI (no console port, no report). */
int hv_vm_toolstack_guest(struct hv_vm *vm);
/* Renames the VM where the hypervisor names VMs (Xen: the domain, and
 * -EEXIST when another domain has that name). KVM: nothing to do. */
int hv_vm_rename(struct hv_vm *vm, const char *name);

void hv_vm_set_guest_ops(struct hv_vm *vm, const struct hv_guest_ops *ops, void *opaque);
const struct hv_vm_config *hv_vm_config(const struct hv_vm *vm);

/* Host pointer to guest memory [gpa, gpa+len), or NULL if outside memory.
 * Valid until hv_vm_destroy(). Reading it never allocates memory that the
 * guest did not touch (sparse mapping). */
void *hv_mem(struct hv_vm *vm, uint64_t gpa, uint64_t len);
/* Whether a page is backed (was ever touched on this host). */
int hv_mem_page_present(struct hv_vm *vm, uint64_t gfn);

/* Fills vec[i] with 1 if page gfn+i is backed, else 0, for n pages: one
 * mincore() per call, so a scan of a large sparse guest stays cheap. */
int hv_mem_present_range(struct hv_vm *vm, uint64_t gfn, uint64_t n, uint8_t *vec);

/* Calls fn with the frame numbers of every backed page of the VM's
 * memory, ascending, in batches of at most 65536 (a range the backend
 * cannot tell about counts as backed: read as zeros, it costs only
 * bytes). A non-zero return of fn stops the walk and is returned.
 * Returns 0, -ENOMEM, or fn's return. */
int hv_mem_present_each(struct hv_vm *vm, int (*fn)(void *opaque, const uint64_t *gfns, size_t n), void *opaque);

/* Loads a guest ELF image and prepares vCPUs to enter it (64-bit, CPL 3).
 * cmdline is passed to the guest. err/errlen receive a one-line reason on
 * failure (-EINVAL for a bad image, -ENOENT/-EIO for file errors). */
int hv_boot_image(struct hv_vm *vm, const char *path, const char *cmdline, char *err, size_t errlen);

/* Starts one thread per vCPU. The VM runs until the guest exits, crashes,
 * or hv_vm_stop(). */
int hv_vm_start(struct hv_vm *vm);
/* Stops all vCPUs for good (they never resume). Idempotent. */
void hv_vm_stop(struct hv_vm *vm);
/* Blocks until every vCPU thread has stopped for good. */
void hv_vm_wait(struct hv_vm *vm);
/* Kicks every vCPU out of the guest and returns once all are parked.
 * Nests: N pauses need N resumes. */
int hv_vm_pause(struct hv_vm *vm);
int hv_vm_resume(struct hv_vm *vm);
int hv_vm_is_running(struct hv_vm *vm);
/* Whether the VM has ended (a vCPU exited, crashed or was stopped): it
 * can never run again. A paused VM has not ended. */
int hv_vm_has_ended(struct hv_vm *vm);

/* Asks the guest to finish its work: from now on its PMG_HC_POLL calls
 * return 1 (guest/abi.h; workloads started with until=finish end their
 * loop at the next poll and report). The request lives in this process
 * only: it does not travel with a migration, so a caller must not migrate
 * the VM once it asked (vmhost refuses). Any thread; idempotent. */
void hv_vm_request_finish(struct hv_vm *vm);
/* Whether hv_vm_request_finish() was called. Any thread. */
int hv_vm_finish_requested(struct hv_vm *vm);
/* How many PMG_HC_POLL calls the guest made here: an until=finish guest
 * polls from its work loop, so a count above 0 says it is in it (a test
 * that pauses it to see the pause as a stall waits for that). Any thread. */
uint64_t hv_vm_guest_polls(struct hv_vm *vm);

/* Dirty log. start: from now on, writes are logged. collect: calls emit
 * for every frame written since the previous collect (or start), possibly
 * more than once per frame, then re-arms write tracking for those frames
 * BEFORE returning, so a caller that reads page contents after collect()
 * returns never misses a later write. One collector at a time (serialized
 * inside). Returns the number of entries emitted or -errno.
 * stop: writes are no longer logged (nor write-faulted: the guest runs
 * at full speed); entries not yet collected are dropped, so a later
 * start begins from an empty log. Both backends start and stop at any
 * time while the guest runs: callers arm the log only while they use it
 * (a migration), since every first write after a re-arm costs the guest
 * a fault. */
int hv_dirty_start(struct hv_vm *vm);
int hv_dirty_collect(struct hv_vm *vm, void (*emit)(void *opaque, uint64_t gfn), void *opaque);
int hv_dirty_stop(struct hv_vm *vm);
/* Ring mode only: how many times a vCPU exited because its ring was full. */
uint64_t hv_dirty_ring_full_exits(struct hv_vm *vm);

/* Ring mode: dirty-log entries vCPU idx has produced so far (cumulative,
 * counted at collect); -ENOTSUP in bitmap mode, which cannot tell vCPUs
 * apart. Used to find the vCPUs that dirty the most. */
int hv_dirty_vcpu_entries(struct hv_vm *vm, unsigned idx, uint64_t *entries);

/* Duty-cycle throttle: vCPU idx spends pct percent (0..99) of every
 * 20 ms period out of the guest. 0 removes the throttle. A pause or stop
 * still takes effect at once. */
int hv_vcpu_throttle(struct hv_vm *vm, unsigned idx, unsigned pct);

/* Complete vCPU state as a self-describing, versioned blob. save requires
 * the VM to be paused (or not started); *blob is malloc'd, caller frees.
 * load validates every length and field before touching the vCPU and
 * advances the guest TSC by the wall-clock time since save. */
int hv_vcpu_save(struct hv_vm *vm, unsigned idx, void **blob, size_t *len);
int hv_vcpu_load(struct hv_vm *vm, unsigned idx, const void *blob, size_t len);

#endif
