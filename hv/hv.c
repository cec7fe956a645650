/*
 * hv/hv.c - backend selection, argument checks, dispatch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "hv/hv-backend.h"

const char *hv_dirty_mode_name(enum hv_dirty_mode m)
{
	switch (m) {
	case HV_DIRTY_RING: return "ring";
	case HV_DIRTY_BITMAP: return "bitmap";
	default: return "off";
	}
}

int hv_dirty_mode_parse(const char *s, enum hv_dirty_mode *out)
{
	if (!strcmp(s, "ring"))
		*out = HV_DIRTY_RING;
	else if (!strcmp(s, "bitmap"))
		*out = HV_DIRTY_BITMAP;
	else if (!strcmp(s, "off"))
		*out = HV_DIRTY_OFF;
	else
		return -EINVAL;
	return 0;
}

/* The backend called name in this build, or NULL. */
static const struct hv_backend *hv__backend(const char *name)
{
	if (!strcmp(name, "kvm"))
		return &hv_kvm_backend;
#ifdef HAVE_XEN
	if (!strcmp(name, "xen"))
		return &hv_xen_backend;
#endif
	return NULL;
}

int hv_backend_built(const char *name) { return hv__backend(name) != NULL; }

int hv_domain_name(const char *backend, const char *domain, char *name, size_t len)
{
#ifdef HAVE_XEN
	if (!strcmp(backend, "xen"))
		return xen__domain_name(domain, name, len);
#endif
	(void)domain, (void)name, (void)len;
	return strcmp(backend, "xen") && strcmp(backend, "kvm") ? -EINVAL : -ENOTSUP;
}

const char *hv_host_backend(void)
{
	if (hv_backend_built("xen") && (!access("/dev/xen/privcmd", F_OK) || !access("/proc/xen/privcmd", F_OK)))
		return "xen";
	return "kvm";
}

static struct hv_vm *hv__vm_new(const struct hv_backend *be)
{
	struct hv_vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	vm->be = be;
	pthread_mutex_init(&vm->vmm_lock, NULL);
	return vm;
}

static void hv__vm_free(struct hv_vm *vm)
{
	pthread_mutex_destroy(&vm->vmm_lock);
	free(vm->vmm_gfns);
	free(vm);
}

int hv_vm_create(const char *backend, const struct hv_vm_config *cfg, struct hv_vm **out)
{
	const struct hv_backend *be = hv__backend(backend ? backend : "kvm");
	struct hv_vm *vm;
	int r;

	if (!be)
		return -ENOTSUP;
	if (!hv_mem_size_valid(cfg->mem_bytes))
		return -EINVAL;
	if (cfg->vcpus < 1 || cfg->vcpus > HV_MAX_VCPUS)
		return -EINVAL;
	if (cfg->ring_entries & (cfg->ring_entries - 1))
		return -EINVAL;
	vm = hv__vm_new(be);
	if (!vm)
		return -ENOMEM;
	vm->cfg = *cfg;
	r = be->create(vm);
	if (r < 0) {
		hv__vm_free(vm);
		return r;
	}
	*out = vm;
	return 0;
}

int hv_vm_attach(const char *backend, const char *domain, enum hv_dirty_mode dirty, unsigned flags, struct hv_vm **out, char *err,
		 size_t errlen)
{
	const struct hv_backend *be = hv__backend(backend);
	struct hv_vm *vm;
	int r;

	if (!be || !be->attach) {
		snprintf(err, errlen, "the %s backend cannot attach to a VM it did not create", backend);
		return -ENOTSUP;
	}
	vm = hv__vm_new(be);
	if (!vm)
		return -ENOMEM;
	vm->cfg = (struct hv_vm_config){ .mem_bytes = HV_MIN_MEM, .vcpus = 1, .dirty_mode = dirty };
	r = be->create(vm);
	if (r < 0) {
		snprintf(err, errlen, "cannot open the %s control interfaces (not a %s host, or not root?): %s", backend,
			 !strcmp(backend, "xen") ? "Xen dom0" : backend, strerror(-r));
		hv__vm_free(vm);
		return r;
	}
	r = be->attach(vm, domain, flags, err, errlen);
	if (r < 0) {
		be->destroy(vm);
		hv__vm_free(vm);
		return r;
	}
	*out = vm;
	return 0;
}

void hv_vm_destroy(struct hv_vm *vm)
{
	if (!vm)
		return;
	vm->be->destroy(vm);
	hv__vm_free(vm);
}

void hv_vm_set_guest_ops(struct hv_vm *vm, const struct hv_guest_ops *ops, void *opaque)
{
	vm->gops = ops;
	vm->gops_opaque = opaque;
}

const char *hv_vm_backend(const struct hv_vm *vm) { return vm->be->name; }

int64_t hv_vm_domid(struct hv_vm *vm)
{
	return vm->be->domid ? vm->be->domid(vm) : -1;
}

int hv_vm_domain_blob(struct hv_vm *vm, void **blob, size_t *len)
{
	*blob = NULL;
	*len = 0;
	return vm->be->domain_blob ? vm->be->domain_blob(vm, blob, len) : 0;
}

int hv_vm_prepare_restore(struct hv_vm *vm, const void *blob, size_t len, char *err, size_t errlen)
{
	if (!vm->be->prepare_restore) {
		snprintf(err, errlen, "the %s backend cannot restore a toolstack's domain", vm->be->name);
		return -ENOTSUP;
	}
	return vm->be->prepare_restore(vm, blob, len, err, errlen);
}

int hv_vm_suspend(struct hv_vm *vm, char *err, size_t errlen)
{
	if (vm->be->suspend)
		return vm->be->suspend(vm, err, errlen);
	int e = hv_vm_pause(vm);
	if (e < 0)
		snprintf(err, errlen, "pausing the VM: %s", strerror(-e));
	return e;
}

int hv_vm_toolstack_guest(struct hv_vm *vm)
{
	return vm && vm->be->toolstack_guest ? vm->be->toolstack_guest(vm) : 0;
}

void hv_vm_moved(struct hv_vm *vm)
{
	if (vm->be->moved)
		vm->be->moved(vm);
}

int hv_vm_prepare_incoming(struct hv_vm *vm, char *err, size_t errlen)
{
	return vm->be->prepare_incoming ? vm->be->prepare_incoming(vm, err, errlen) : 0;
}

int hv_vm_rename(struct hv_vm *vm, const char *name)
{
	return vm->be->rename ? vm->be->rename(vm, name) : 0;
}

const struct hv_vm_config *hv_vm_config(const struct hv_vm *vm) { return &vm->cfg; }

void *hv_mem(struct hv_vm *vm, uint64_t gpa, uint64_t len)
{
	if (gpa > vm->cfg.mem_bytes || len > vm->cfg.mem_bytes - gpa)
		return NULL;
	return vm->be->mem(vm, gpa, len);
}

int hv_mem_page_present(struct hv_vm *vm, uint64_t gfn)
{
	uint8_t vec = 0;
	if (gfn >= vm->cfg.mem_bytes >> HV_PAGE_SHIFT)
		return -EINVAL;
	int e = vm->be->present_range(vm, gfn, 1, &vec);
	return e < 0 ? e : vec;
}

int hv_mem_present_range(struct hv_vm *vm, uint64_t gfn, uint64_t n, uint8_t *vec)
{
	uint64_t nf = vm->cfg.mem_bytes >> HV_PAGE_SHIFT;
	if (gfn > nf || n > nf - gfn)
		return -EINVAL;
	return vm->be->present_range(vm, gfn, n, vec);
}

int hv_mem_present_each(struct hv_vm *vm, int (*fn)(void *opaque, const uint64_t *gfns, size_t n), void *opaque)
{
	static const uint64_t chunk = 65536;
	uint64_t nframes = vm->cfg.mem_bytes >> HV_PAGE_SHIFT;
	uint8_t *vec = malloc(chunk);
	uint64_t *g = malloc(chunk * sizeof(*g));
	int e = vec && g ? 0 : -ENOMEM;
	for (uint64_t base = 0; base < nframes && !e; base += chunk) {
		uint64_t cnt = nframes - base < chunk ? nframes - base : chunk;
		size_t n = 0;
		if (hv_mem_present_range(vm, base, cnt, vec) < 0)
			memset(vec, 1, cnt);
		for (uint64_t i = 0; i < cnt; i++)
			if (vec[i])
				g[n++] = base + i;
		if (n)
			e = fn(opaque, g, n);
	}
	free(vec);
	free(g);
	return e;
}

int hv_dirty_vcpu_entries(struct hv_vm *vm, unsigned idx, uint64_t *entries)
{
	if (idx >= vm->cfg.vcpus)
		return -EINVAL;
	if (vm->cfg.dirty_mode != HV_DIRTY_RING)
		return -ENOTSUP;
	return vm->be->vcpu_entries(vm, idx, entries);
}

int hv_vcpu_throttle(struct hv_vm *vm, unsigned idx, unsigned pct)
{
	if (idx >= vm->cfg.vcpus || pct > 99)
		return -EINVAL;
	return vm->be->throttle(vm, idx, pct);
}

int hv_boot_image(struct hv_vm *vm, const char *path, const char *cmdline, char *err, size_t errlen)
{
	return vm->be->boot_image(vm, path, cmdline, err, errlen);
}

int hv_vm_start(struct hv_vm *vm) { return vm->be->start(vm); }
void hv_vm_stop(struct hv_vm *vm) { vm->be->stop(vm); }
void hv_vm_wait(struct hv_vm *vm) { vm->be->wait(vm); }
int hv_vm_pause(struct hv_vm *vm) { return vm->be->pause(vm); }
int hv_vm_resume(struct hv_vm *vm) { return vm->be->resume(vm); }
int hv_vm_is_running(struct hv_vm *vm) { return vm->be->is_running(vm); }
int hv_vm_has_ended(struct hv_vm *vm) { return vm->be->has_ended(vm); }
void hv_vm_request_finish(struct hv_vm *vm) { __atomic_store_n(&vm->finish_req, 1, __ATOMIC_RELEASE); }
int hv_vm_finish_requested(struct hv_vm *vm) { return __atomic_load_n(&vm->finish_req, __ATOMIC_ACQUIRE); }
uint64_t hv_vm_guest_polls(struct hv_vm *vm) { return __atomic_load_n(&vm->polls, __ATOMIC_RELAXED); }

static void hv__vmm_arm(struct hv_vm *vm, int on)
{
	pthread_mutex_lock(&vm->vmm_lock);
	vm->vmm_armed = on;
	vm->vmm_n = 0;
	vm->vmm_lost = 0;
	pthread_mutex_unlock(&vm->vmm_lock);
}

void hv_dirty_note(struct hv_vm *vm, uint64_t gpa, uint64_t len)
{
	if (!len || !__atomic_load_n(&vm->vmm_armed, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&vm->vmm_lock);
	for (uint64_t g = gpa >> HV_PAGE_SHIFT; vm->vmm_armed && g <= (gpa + len - 1) >> HV_PAGE_SHIFT; g++) {
		/* The same few frames (each vCPU's call block) come back often. */
		int seen = 0;
		for (size_t i = vm->vmm_n > 8 ? vm->vmm_n - 8 : 0; i < vm->vmm_n && !seen; i++)
			seen = vm->vmm_gfns[i] == g;
		if (seen)
			continue;
		if (vm->vmm_n == vm->vmm_cap) {
			size_t cap = vm->vmm_cap ? vm->vmm_cap * 2 : 64;
			uint64_t *n = realloc(vm->vmm_gfns, cap * sizeof(uint64_t));
			if (!n) {
				vm->vmm_lost = 1; /* collect reports -ENOMEM: resend everything */
				break;
			}
			vm->vmm_gfns = n;
			vm->vmm_cap = cap;
		}
		vm->vmm_gfns[vm->vmm_n++] = g;
	}
	pthread_mutex_unlock(&vm->vmm_lock);
}

int hv_dirty_start(struct hv_vm *vm)
{
	if (vm->cfg.dirty_mode == HV_DIRTY_OFF)
		return -ENOTSUP;
	/* Armed before the hypervisor's log: a VMM write in between is at
	 * worst reported twice, never missed. */
	hv__vmm_arm(vm, 1);
	int r = vm->be->dirty_start(vm);
	if (r < 0)
		hv__vmm_arm(vm, 0);
	return r;
}

int hv_dirty_collect(struct hv_vm *vm, void (*emit)(void *, uint64_t), void *opaque)
{
	if (vm->cfg.dirty_mode == HV_DIRTY_OFF)
		return -ENOTSUP;
	int r = vm->be->dirty_collect(vm, emit, opaque);
	if (r < 0)
		return r;
	pthread_mutex_lock(&vm->vmm_lock);
	for (size_t i = 0; i < vm->vmm_n; i++)
		if (vm->vmm_gfns[i] < vm->cfg.mem_bytes >> HV_PAGE_SHIFT)
			emit(opaque, vm->vmm_gfns[i]);
	r += (int)vm->vmm_n;
	vm->vmm_n = 0;
	int lost = vm->vmm_lost;
	vm->vmm_lost = 0;
	pthread_mutex_unlock(&vm->vmm_lock);
	return lost ? -ENOMEM : r;
}

int hv_dirty_stop(struct hv_vm *vm)
{
	if (vm->cfg.dirty_mode == HV_DIRTY_OFF)
		return -ENOTSUP;
	hv__vmm_arm(vm, 0);
	return vm->be->dirty_stop(vm);
}

uint64_t hv_dirty_ring_full_exits(struct hv_vm *vm) { return vm->be->ring_full_exits(vm); }

int hv_vcpu_save(struct hv_vm *vm, unsigned idx, void **blob, size_t *len)
{
	if (idx >= vm->cfg.vcpus)
		return -EINVAL;
	return vm->be->vcpu_save(vm, idx, blob, len);
}

int hv_vcpu_load(struct hv_vm *vm, unsigned idx, const void *blob, size_t len)
{
	if (idx >= vm->cfg.vcpus || !blob)
		return -EINVAL;
	return vm->be->vcpu_load(vm, idx, blob, len);
}
