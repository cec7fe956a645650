/*
 * hv/kvm.c - the built-in VMM's KVM backend: VM and memory, vCPU threads,
 * the run loop, pause/resume, and the guest's port-I/O calls.
 *
 * Pausing: a pauser bumps pause_depth under vm->lock, sets immediate_exit
 * on every vCPU's kvm_run and sends SIGUSR1 to its thread. A vCPU thread
 * clears immediate_exit and then checks pause_depth under the lock before
 * each KVM_RUN, so a kick can't fall between check and entry: either the
 * thread sees the request, or KVM_RUN sees immediate_exit, or the signal
 * interrupts KVM_RUN with EINTR.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>
#include "hv/kvm-internal.h"

#define KICK_SIGNAL SIGUSR1

#define THROTTLE_PERIOD_US 20000

static void vcpu__gio_sleep(struct hv_gio *g, uint64_t us);

/* The vCPU thread's kvm_run: the kick handler sets immediate_exit on it so
 * a throttle tick that lands just before KVM_RUN is not lost. */
static __thread struct kvm_run *kvm__tl_run;

static void kvm__kick_handler(int sig)
{
	(void)sig;
	if (kvm__tl_run)
		kvm__tl_run->immediate_exit = 1;
}

static void kvm__install_kick_once(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kvm__kick_handler; /* no SA_RESTART: KVM_RUN must see EINTR */
	sigemptyset(&sa.sa_mask);
	sigaction(KICK_SIGNAL, &sa, NULL);
}

static void kvm__install_kick_handler(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, kvm__install_kick_once);
}

int kvm__set_slot(struct kvm_vm *k, uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
		.slot = 0,
		.flags = flags,
		.guest_phys_addr = 0,
		.memory_size = k->mem_size,
		.userspace_addr = (uintptr_t)k->mem,
	};
	if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0)
		return -errno;
	k->slot_flags = flags;
	return 0;
}

static int kvm__create(struct hv_vm *vm)
{
	struct kvm_vm *k;
	int r;

	k = calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	k->hv = vm;
	k->vm_fd = -1;
	k->nvcpus = vm->cfg.vcpus;
	k->mem_size = vm->cfg.mem_bytes;
	pthread_mutex_init(&k->lock, NULL);
	/* vcpu__sleep's timed wait counts on the monotonic clock (a guest's
	 * sleep must not stretch or vanish with wall-clock steps). */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&k->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&k->dirty_lock, NULL);
	for (unsigned i = 0; i < HV_MAX_VCPUS; i++)
		k->vcpus[i].fd = -1;
	vm->priv = k;

	k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm_fd < 0) {
		r = -errno;
		goto err_free;
	}
	if (ioctl(k->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		r = -ENOTSUP;
		goto err_kvm;
	}
	k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		r = -errno;
		goto err_kvm;
	}
	/* Harmless on SVM, required by VMX for real-mode emulation paths. */
	ioctl(k->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);

	/* Sparse: only pages the guest (or a restore) touches cost memory. */
	k->mem = mmap(NULL, k->mem_size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (k->mem == MAP_FAILED) {
		r = -errno;
		k->mem = NULL;
		goto err_vm;
	}
	/* 4 KiB granularity keeps sparse guests sparse, unless asked otherwise. */
	madvise(k->mem, k->mem_size, vm->cfg.huge_pages ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);

	/* The dirty ring must be enabled before any vCPU exists. */
	r = kvm__dirty_init(k);
	if (r < 0)
		goto err_mem;
	r = kvm__set_slot(k, 0);
	if (r < 0)
		goto err_dirty;

	int mmap_size = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (mmap_size <= 0) {
		r = -ENOTSUP;
		goto err_dirty;
	}
	for (unsigned i = 0; i < k->nvcpus; i++) {
		struct kvm_vcpu *v = &k->vcpus[i];
		v->vm = k;
		v->idx = i;
		v->gio = (struct hv_gio){ .vm = vm, .idx = i, .sleep = vcpu__gio_sleep, .opaque = v };
		v->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, i);
		if (v->fd < 0) {
			r = -errno;
			goto err_vcpus;
		}
		v->run_size = (size_t)mmap_size;
		v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
		if (v->run == MAP_FAILED) {
			v->run = NULL;
			r = -errno;
			goto err_vcpus;
		}
		r = kvm__dirty_init_vcpu(v);
		if (r < 0)
			goto err_vcpus;
		r = kvm__setup_cpuid(k, v);
		if (r < 0)
			goto err_vcpus;
	}
	r = ioctl(k->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
	k->tsc_khz = r > 0 ? (uint64_t)r : 0;
	kvm__install_kick_handler();
	return 0;

err_vcpus:
	for (unsigned i = 0; i < k->nvcpus; i++) {
		struct kvm_vcpu *v = &k->vcpus[i];
		if (v->ring)
			munmap(v->ring, (size_t)k->ring_entries * sizeof(struct kvm_dirty_gfn));
		if (v->run)
			munmap(v->run, v->run_size);
		if (v->fd >= 0)
			close(v->fd);
	}
err_dirty:
	kvm__dirty_fini(k);
err_mem:
	munmap(k->mem, k->mem_size);
err_vm:
	close(k->vm_fd);
err_kvm:
	close(k->kvm_fd);
err_free:
	pthread_mutex_destroy(&k->dirty_lock);
	pthread_cond_destroy(&k->cond);
	pthread_mutex_destroy(&k->lock);
	free(k);
	vm->priv = NULL;
	return r;
}

static void kvm__stop(struct hv_vm *vm);
static void kvm__wait(struct hv_vm *vm);

static void kvm__destroy(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	if (!k)
		return;
	kvm__stop(vm);
	kvm__wait(vm);
	for (unsigned i = 0; i < k->nvcpus; i++) {
		struct kvm_vcpu *v = &k->vcpus[i];
		if (v->ring)
			munmap(v->ring, (size_t)k->ring_entries * sizeof(struct kvm_dirty_gfn));
		munmap(v->run, v->run_size);
		close(v->fd);
	}
	kvm__dirty_fini(k);
	close(k->vm_fd);
	munmap(k->mem, k->mem_size);
	close(k->kvm_fd);
	pthread_mutex_destroy(&k->dirty_lock);
	pthread_cond_destroy(&k->cond);
	pthread_mutex_destroy(&k->lock);
	free(k);
	vm->priv = NULL;
}

static void *kvm__mem(struct hv_vm *vm, uint64_t gpa, uint64_t len)
{
	(void)len;
	return kvm__vm(vm)->mem + gpa;
}

static int kvm__present_range(struct hv_vm *vm, uint64_t gfn, uint64_t n, uint8_t *vec)
{
	struct kvm_vm *k = kvm__vm(vm);
	if (!n)
		return 0;
	if (mincore(k->mem + (gfn << HV_PAGE_SHIFT), n << HV_PAGE_SHIFT, vec) < 0)
		return -errno;
	for (uint64_t i = 0; i < n; i++)
		vec[i] &= 1;
	return 0;
}

static int kvm__vcpu_entries(struct hv_vm *vm, unsigned idx, uint64_t *entries)
{
	struct kvm_vm *k = kvm__vm(vm);
	pthread_mutex_lock(&k->dirty_lock);
	*entries = k->vcpus[idx].dirty_entries;
	pthread_mutex_unlock(&k->dirty_lock);
	return 0;
}

/* Under k->lock: makes v leave KVM_RUN (or not enter it) soon. */
static void kvm__kick_one(struct kvm_vcpu *v)
{
	if (v->thread_started && !v->done) {
		v->run->immediate_exit = 1;
		pthread_kill(v->thread, KICK_SIGNAL);
	}
}

static int kvm__throttle(struct hv_vm *vm, unsigned idx, unsigned pct)
{
	struct kvm_vm *k = kvm__vm(vm);
	struct kvm_vcpu *v = &k->vcpus[idx];
	pthread_mutex_lock(&k->lock);
	unsigned was = __atomic_exchange_n(&v->throttle_pct, pct, __ATOMIC_RELAXED);
	/* The throttle's timer is armed before each KVM_RUN; a guest that
	 * never exits would never see a throttle set while it runs. A kick
	 * brings it out to arm it. (Changes between two non-zero values take
	 * effect at the next tick of the timer already armed.) */
	if (!was && pct)
		kvm__kick_one(v);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* Arms a one-shot kick after the running share of the throttle period.
 * The timer signals this thread only (SIGEV_THREAD_ID). */
static void vcpu__throttle_arm(struct kvm_vcpu *v, unsigned pct)
{
	if (!v->throttle_timer_ok) {
		struct sigevent sev;
		memset(&sev, 0, sizeof(sev));
		sev.sigev_notify = SIGEV_THREAD_ID;
		sev.sigev_signo = KICK_SIGNAL;
		sev._sigev_un._tid = gettid(); /* glibc 2.36 lacks the sigev_notify_thread_id name */
		if (timer_create(CLOCK_MONOTONIC, &sev, &v->throttle_timer) < 0)
			return;
		v->throttle_timer_ok = true;
	}
	long run_us = (long)THROTTLE_PERIOD_US * (100 - (long)pct) / 100;
	struct itimerspec its = { .it_value = { .tv_sec = 0, .tv_nsec = run_us * 1000 } };
	timer_settime(v->throttle_timer, 0, &its, NULL);
}

/* ---- the run loop ---- */

/* Marks the vCPU done; the last one out reports the VM as stopped. */
static void vcpu__finish(struct kvm_vcpu *v, enum hv_stop_reason why, int code, const char *detail)
{
	if (v->throttle_timer_ok) {
		timer_delete(v->throttle_timer);
		v->throttle_timer_ok = false;
	}
	struct kvm_vm *k = v->vm;
	bool report = false;

	hv_gio_flush(&v->gio);
	pthread_mutex_lock(&k->lock);
	if (!v->done) {
		v->done = true;
		k->ndone++;
	}
	/* A crash or exit on any vCPU ends the VM. */
	if (!k->stop_why || why == HV_STOP_CRASH) {
		k->stop_why = why;
		k->exit_code = code;
		snprintf(k->stop_detail, sizeof(k->stop_detail), "%s", detail ? detail : "");
	}
	/* A guest exit or crash on any vCPU ends the whole VM. */
	if (why != HV_STOP_KILLED)
		k->stop_req = true;
	if (k->stop_req) {
		for (unsigned i = 0; i < k->nvcpus; i++) {
			struct kvm_vcpu *o = &k->vcpus[i];
			if (o != v && !o->done && o->thread_started) {
				o->run->immediate_exit = 1;
				pthread_kill(o->thread, KICK_SIGNAL);
			}
		}
	}
	if (k->ndone == k->nvcpus && !k->stopped_reported) {
		k->stopped_reported = true;
		report = true;
	}
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	if (report && k->hv->gops && k->hv->gops->stopped)
		k->hv->gops->stopped(k->hv->gops_opaque, k->stop_why, k->exit_code, k->stop_detail);
}

/* The last stretch of a guest's sleep is spent polling rather than
 * blocked: a thread woken from a wait on this machine comes back up to
 * half a millisecond late, and the guest counts lateness as a stall.
 * KVM's own halt polling makes the same trade (200 us by default). */
#define SLEEP_POLL_NS 200000ull

static int vcpu__sleep_interrupted(struct kvm_vm *k)
{
	return __atomic_load_n(&k->pause_depth, __ATOMIC_RELAXED) || __atomic_load_n(&k->stop_req, __ATOMIC_RELAXED);
}

/* poll: the guest asked (PMG_HC_SLEEP) and counts lateness; the
 * throttle's sit-out does not need it. */
static void vcpu__sleep(struct kvm_vcpu *v, uint64_t us, int poll)
{
	struct kvm_vm *k = v->vm;
	struct timespec ts, now;

	hv_gio_sleep_deadline(us, &ts);
	uint64_t end = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	uint64_t spin = poll ? SLEEP_POLL_NS : 0;
	if (us * 1000 > spin) {
		uint64_t wake = end - spin;
		struct timespec w = { .tv_sec = (time_t)(wake / 1000000000ull), .tv_nsec = (long)(wake % 1000000000ull) };
		pthread_mutex_lock(&k->lock);
		/* A pause or stop request ends the sleep early; the guest re-checks time. */
		while (!k->pause_depth && !k->stop_req)
			if (pthread_cond_timedwait(&k->cond, &k->lock, &w) == ETIMEDOUT)
				break;
		pthread_mutex_unlock(&k->lock);
	}
	while (spin) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec >= end || vcpu__sleep_interrupted(k))
			break;
		__builtin_ia32_pause();
	}
}

static void vcpu__gio_sleep(struct hv_gio *g, uint64_t us)
{
	vcpu__sleep(g->opaque, us, 1);
}

/* Returns 0 to keep running, 1 when the vCPU is done, <0 on a guest error. */
static int vcpu__handle_exit(struct kvm_vcpu *v, char *why, size_t whylen)
{
	struct kvm_run *run = v->run;
	switch (run->exit_reason) {
	case KVM_EXIT_IO: {
		uint8_t *data = (uint8_t *)run + run->io.data_offset;
		if (run->io.direction != KVM_EXIT_IO_OUT) {
			/* Reads return all-ones, like an empty ISA bus. */
			memset(data, 0xff, (size_t)run->io.size * run->io.count);
			return 0;
		}
		for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
			uint32_t val = 0;
			memcpy(&val, data, run->io.size);
			int r = hv_gio_out(&v->gio, run->io.port, val, &v->vm->exit_code, why, whylen);
			if (r < 0)
				return r;
			if (r == HV_GIO_EXIT)
				return 2;
			if (r == HV_GIO_VCPU_DONE)
				return 1;
		}
		return 0;
	}
	case KVM_EXIT_DIRTY_RING_FULL:
		return kvm__dirty_ring_full(v);
	case KVM_EXIT_INTR:
		return 0;
	case KVM_EXIT_SHUTDOWN: {
		struct kvm_regs regs;
		ioctl(v->fd, KVM_GET_REGS, &regs);
		struct kvm_sregs sr;
		ioctl(v->fd, KVM_GET_SREGS, &sr);
		snprintf(why, whylen, "vCPU %u triple fault (rip=0x%llx rflags=0x%llx cs=0x%x cpl=%u)", v->idx, regs.rip, regs.rflags, sr.cs.selector, sr.ss.dpl);
		return -EFAULT;
	}
	case KVM_EXIT_MMIO:
		snprintf(why, whylen, "vCPU %u accessed 0x%llx outside guest memory", v->idx,
			 (unsigned long long)run->mmio.phys_addr);
		return -EFAULT;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, whylen, "vCPU %u entry failed (reason 0x%llx)", v->idx,
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(why, whylen, "vCPU %u KVM internal error %u", v->idx, run->internal.suberror);
		return -EIO;
	default:
		snprintf(why, whylen, "vCPU %u unexpected exit %u", v->idx, run->exit_reason);
		return -EIO;
	}
}

static void *vcpu__thread(void *arg)
{
	struct kvm_vcpu *v = arg;
	struct kvm_vm *k = v->vm;
	char why[160] = "";
	char name[16];
	sigset_t set;

	snprintf(name, sizeof(name), "vcpu%u", v->idx);
	pthread_setname_np(pthread_self(), name);
	/* A guest that asks to sleep (PMG_HC_SLEEP) counts any oversleep as a
	 * stall: wake on time, not up to the default 50 us timer slack late. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	kvm__tl_run = v->run;
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	for (;;) {
		v->run->immediate_exit = 0;
		pthread_mutex_lock(&k->lock);
		while (k->pause_depth && !k->stop_req) {
			v->parked = true;
			pthread_cond_broadcast(&k->cond);
			pthread_cond_wait(&k->cond, &k->lock);
		}
		v->parked = false;
		bool stop = k->stop_req;
		pthread_mutex_unlock(&k->lock);
		if (stop) {
			vcpu__finish(v, HV_STOP_KILLED, 0, "stopped");
			return NULL;
		}
		unsigned pct = __atomic_load_n(&v->throttle_pct, __ATOMIC_RELAXED);
		if (pct)
			vcpu__throttle_arm(v, pct);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* The throttle's kick (or a pause, which vcpu__sleep
				 * honours at once): sit out this period's share. */
				if (pct)
					vcpu__sleep(v, (uint64_t)THROTTLE_PERIOD_US * pct / 100, 0);
				continue;
			}
			snprintf(why, sizeof(why), "KVM_RUN: %s", strerror(errno));
			vcpu__finish(v, HV_STOP_CRASH, -1, why);
			return NULL;
		}
		int r = vcpu__handle_exit(v, why, sizeof(why));
		if (r < 0) {
			vcpu__finish(v, HV_STOP_CRASH, -1, why);
			return NULL;
		}
		if (r == 2) {
			vcpu__finish(v, HV_STOP_EXIT, k->exit_code, why);
			return NULL;
		}
		if (r == 1) {
			/* This vCPU finished its share of the work: it stays out of
			 * the guest (counted as parked) until the VM stops. */
			pthread_mutex_lock(&k->lock);
			v->parked = true;
			pthread_cond_broadcast(&k->cond);
			while (!k->stop_req)
				pthread_cond_wait(&k->cond, &k->lock);
			pthread_mutex_unlock(&k->lock);
			vcpu__finish(v, HV_STOP_KILLED, 0, "stopped");
			return NULL;
		}
	}
}

static int kvm__start(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	sigset_t set, old;
	int r = 0;

	pthread_mutex_lock(&k->lock);
	if (k->started) {
		pthread_mutex_unlock(&k->lock);
		return -EALREADY;
	}
	k->started = true;
	pthread_mutex_unlock(&k->lock);
	/* vCPU threads start with the kick signal blocked and unblock it
	 * themselves, so no signal lands before they are ready. */
	sigemptyset(&set);
	sigaddset(&set, KICK_SIGNAL);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	for (unsigned i = 0; i < k->nvcpus; i++) {
		r = -pthread_create(&k->vcpus[i].thread, NULL, vcpu__thread, &k->vcpus[i]);
		if (r)
			break;
		k->vcpus[i].thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r)
		kvm__stop(vm);
	return r;
}

static void kvm__kick_all(struct kvm_vm *k)
{
	for (unsigned i = 0; i < k->nvcpus; i++)
		kvm__kick_one(&k->vcpus[i]);
}

static void kvm__stop(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	pthread_mutex_lock(&k->lock);
	k->stop_req = true;
	if (!k->stop_why)
		k->stop_why = HV_STOP_KILLED;
	kvm__kick_all(k);
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
}

static void kvm__wait(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	for (unsigned i = 0; i < k->nvcpus; i++) {
		if (k->vcpus[i].thread_started) {
			pthread_join(k->vcpus[i].thread, NULL);
			k->vcpus[i].thread_started = false;
		}
	}
}

static int kvm__pause(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	pthread_mutex_lock(&k->lock);
	k->pause_depth++;
	kvm__kick_all(k);
	pthread_cond_broadcast(&k->cond); /* wakes sleeping vCPUs */
	for (;;) {
		bool all = true;
		for (unsigned i = 0; i < k->nvcpus; i++) {
			struct kvm_vcpu *v = &k->vcpus[i];
			if (v->thread_started && !v->done && !v->parked)
				all = false;
		}
		if (all || k->stop_req)
			break;
		pthread_cond_wait(&k->cond, &k->lock);
	}
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static int kvm__resume(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	int r = 0;
	pthread_mutex_lock(&k->lock);
	if (k->pause_depth)
		k->pause_depth--;
	else
		r = -EINVAL;
	pthread_cond_broadcast(&k->cond);
	pthread_mutex_unlock(&k->lock);
	return r;
}

static int kvm__is_running(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	pthread_mutex_lock(&k->lock);
	int r = k->started && k->ndone < k->nvcpus && !k->pause_depth;
	pthread_mutex_unlock(&k->lock);
	return r;
}

static int kvm__has_ended(struct hv_vm *vm)
{
	struct kvm_vm *k = kvm__vm(vm);
	pthread_mutex_lock(&k->lock);
	int r = k->stop_req || k->ndone > 0;
	pthread_mutex_unlock(&k->lock);
	return r;
}

const struct hv_backend hv_kvm_backend = {
	.name = "kvm",
	.create = kvm__create,
	.destroy = kvm__destroy,
	.mem = kvm__mem,
	.present_range = kvm__present_range,
	.vcpu_entries = kvm__vcpu_entries,
	.throttle = kvm__throttle,
	.boot_image = kvm__boot_image,
	.start = kvm__start,
	.stop = kvm__stop,
	.wait = kvm__wait,
	.pause = kvm__pause,
	.resume = kvm__resume,
	.is_running = kvm__is_running,
	.has_ended = kvm__has_ended,
	.dirty_start = kvm__dirty_start,
	.dirty_collect = kvm__dirty_collect,
	.dirty_stop = kvm__dirty_stop,
	.ring_full_exits = kvm__ring_full_exits,
	.vcpu_save = kvm__vcpu_save,
	.vcpu_load = kvm__vcpu_load,
};
