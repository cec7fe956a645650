/*
 * hv/kvm-state.c - complete vCPU state as a versioned blob.
 *
 * Layout (little-endian): struct state_hdr, then nsections of
 * { uint32 id, uint32 len, len bytes }. The blob may arrive from the
 * network, so load checks every id and length, accepts only MSRs from a
 * fixed list, and writes nothing to the vCPU until all of it parsed.
 *
 * TSC: the header carries the guest TSC and the host's CLOCK_REALTIME at
 * save time; load sets the TSC to saved + elapsed wall time, so the guest
 * sees the time it spent paused (a frozen TSC would hide downtime from it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include "hv/kvm-internal.h"

#define STATE_MAGIC 0x53564d50u /* "PMVS" */
#define STATE_VERSION 1
#define MSR_IA32_TSC 0x10
#define MAX_MSRS 32
#define MAX_XSAVE (64u << 10)

enum { SEC_REGS = 1, SEC_SREGS, SEC_XSAVE, SEC_XCRS, SEC_MSRS, SEC_EVENTS, SEC_DEBUGREGS, SEC_MAX };

struct state_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t nsections;
	uint64_t tsc_khz;
	uint64_t save_realtime_ns;
	uint64_t guest_tsc;
};

/* MSRs that architectural 64-bit guest state lives in (segment bases are in
 * sregs). Anything else from a stream is refused. */
static const uint32_t state_msrs[] = {
	0x174, 0x175, 0x176,                    /* SYSENTER_CS/ESP/EIP */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR LSTAR CSTAR SFMASK */
	0xc0000102, 0xc0000103,                 /* KERNEL_GS_BASE TSC_AUX */
	0x277, 0x1a0, 0x2ff,                    /* PAT MISC_ENABLE MTRR_DEF_TYPE */
};

static int msr_allowed(uint32_t idx)
{
	for (size_t i = 0; i < sizeof(state_msrs) / sizeof(state_msrs[0]); i++)
		if (state_msrs[i] == idx)
			return 1;
	return 0;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int xsave_size(struct kvm_vm *k)
{
	int n = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	if (n < (int)sizeof(struct kvm_xsave))
		n = (int)sizeof(struct kvm_xsave);
	return n > (int)MAX_XSAVE ? (int)MAX_XSAVE : n;
}

struct buf {
	uint8_t *p;
	size_t len, cap;
	uint16_t nsec;
};

static int buf_sec(struct buf *b, uint32_t id, const void *data, uint32_t len)
{
	size_t need = b->len + 8 + len;
	if (need > b->cap) {
		size_t cap = need * 2;
		uint8_t *n = realloc(b->p, cap);
		if (!n)
			return -ENOMEM;
		b->p = n;
		b->cap = cap;
	}
	memcpy(b->p + b->len, &id, 4);
	memcpy(b->p + b->len + 4, &len, 4);
	memcpy(b->p + b->len + 8, data, len);
	b->len = need;
	b->nsec++;
	return 0;
}

static int kvm__msr_list(struct kvm_vm *k, struct kvm_msrs *out)
{
	struct kvm_msr_list *l = calloc(1, sizeof(*l) + 1024 * sizeof(uint32_t));
	if (!l)
		return -ENOMEM;
	l->nmsrs = 1024;
	if (ioctl(k->kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int r = -errno;
		free(l);
		return r;
	}
	out->nmsrs = 0;
	for (size_t i = 0; i < sizeof(state_msrs) / sizeof(state_msrs[0]); i++)
		for (uint32_t j = 0; j < l->nmsrs; j++)
			if (l->indices[j] == state_msrs[i])
				out->entries[out->nmsrs++].index = state_msrs[i];
	free(l);
	return 0;
}

int kvm__vcpu_save(struct hv_vm *vm, unsigned idx, void **blob, size_t *len)
{
	struct kvm_vm *k = kvm__vm(vm);
	struct kvm_vcpu *v = &k->vcpus[idx];
	struct buf b = { 0 };
	struct state_hdr h = { .magic = STATE_MAGIC, .version = STATE_VERSION, .tsc_khz = k->tsc_khz };
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs;
	struct kvm_vcpu_events ev;
	struct kvm_debugregs dr;
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MAX_MSRS];
	} msrs, tsc;
	struct kvm_xsave *xs = NULL;
	int xsz = xsave_size(k), r;

	b.len = sizeof(h);
	b.cap = 8192;
	b.p = malloc(b.cap);
	xs = calloc(1, (size_t)xsz);
	if (!b.p || !xs) {
		r = -ENOMEM;
		goto err;
	}
#define GET(req, arg)                      \
	do {                               \
		if (ioctl(v->fd, req, arg) < 0) { \
			r = -errno;        \
			goto err;          \
		}                          \
	} while (0)
	GET(KVM_GET_REGS, &regs);
	GET(KVM_GET_SREGS, &sregs);
	GET(xsz > (int)sizeof(struct kvm_xsave) ? KVM_GET_XSAVE2 : KVM_GET_XSAVE, xs);
	GET(KVM_GET_XCRS, &xcrs);
	GET(KVM_GET_VCPU_EVENTS, &ev);
	GET(KVM_GET_DEBUGREGS, &dr);
	memset(&msrs, 0, sizeof(msrs));
	r = kvm__msr_list(k, &msrs.h);
	if (r < 0)
		goto err;
	if (msrs.h.nmsrs && ioctl(v->fd, KVM_GET_MSRS, &msrs) != (int)msrs.h.nmsrs) {
		r = -EIO;
		goto err;
	}
	memset(&tsc, 0, sizeof(tsc));
	tsc.h.nmsrs = 1;
	tsc.e[0].index = MSR_IA32_TSC;
	if (ioctl(v->fd, KVM_GET_MSRS, &tsc) != 1) {
		r = -EIO;
		goto err;
	}
	h.guest_tsc = tsc.e[0].data;
	h.save_realtime_ns = realtime_ns();
#undef GET
	if ((r = buf_sec(&b, SEC_REGS, &regs, sizeof(regs))) ||
	    (r = buf_sec(&b, SEC_SREGS, &sregs, sizeof(sregs))) ||
	    (r = buf_sec(&b, SEC_XSAVE, xs, (uint32_t)xsz)) ||
	    (r = buf_sec(&b, SEC_XCRS, &xcrs, sizeof(xcrs))) ||
	    (r = buf_sec(&b, SEC_MSRS, &msrs, (uint32_t)(sizeof(msrs.h) + msrs.h.nmsrs * sizeof(msrs.e[0])))) ||
	    (r = buf_sec(&b, SEC_EVENTS, &ev, sizeof(ev))) ||
	    (r = buf_sec(&b, SEC_DEBUGREGS, &dr, sizeof(dr))))
		goto err;
	h.nsections = b.nsec;
	memcpy(b.p, &h, sizeof(h));
	free(xs);
	*blob = b.p;
	*len = b.len;
	return 0;
err:
	free(xs);
	free(b.p);
	return r;
}

int kvm__vcpu_load(struct hv_vm *vm, unsigned idx, const void *blob, size_t len)
{
	struct kvm_vm *k = kvm__vm(vm);
	struct kvm_vcpu *v = &k->vcpus[idx];
	const uint8_t *p = blob;
	const void *sec[SEC_MAX] = { 0 };
	uint32_t seclen[SEC_MAX] = { 0 };
	struct state_hdr h;
	int xsz = xsave_size(k), r;
	struct kvm_xsave *xs = NULL;

	if (len < sizeof(h))
		return -EINVAL;
	memcpy(&h, p, sizeof(h));
	if (h.magic != STATE_MAGIC || h.version != STATE_VERSION || h.nsections >= 64)
		return -EINVAL;
	size_t off = sizeof(h);
	for (unsigned i = 0; i < h.nsections; i++) {
		uint32_t id, l;
		if (len - off < 8)
			return -EINVAL;
		memcpy(&id, p + off, 4);
		memcpy(&l, p + off + 4, 4);
		off += 8;
		if (id == 0 || id >= SEC_MAX || sec[id] || l > len - off)
			return -EINVAL;
		sec[id] = p + off;
		seclen[id] = l;
		off += l;
	}
	if (off != len)
		return -EINVAL;
	/* Every section is required and has its exact size. */
	if (seclen[SEC_REGS] != sizeof(struct kvm_regs) || seclen[SEC_SREGS] != sizeof(struct kvm_sregs) ||
	    seclen[SEC_XCRS] != sizeof(struct kvm_xcrs) || seclen[SEC_EVENTS] != sizeof(struct kvm_vcpu_events) ||
	    seclen[SEC_DEBUGREGS] != sizeof(struct kvm_debugregs) || seclen[SEC_XSAVE] < sizeof(struct kvm_xsave) ||
	    seclen[SEC_XSAVE] > (uint32_t)xsz || seclen[SEC_MSRS] < sizeof(struct kvm_msrs))
		return -EINVAL;
	struct {
		struct kvm_msrs h;
		struct kvm_msr_entry e[MAX_MSRS + 1];
	} msrs;
	memset(&msrs, 0, sizeof(msrs));
	memcpy(&msrs.h, sec[SEC_MSRS], sizeof(msrs.h));
	if (msrs.h.nmsrs > MAX_MSRS || seclen[SEC_MSRS] != sizeof(msrs.h) + msrs.h.nmsrs * sizeof(msrs.e[0]))
		return -EINVAL;
	memcpy(msrs.e, (const uint8_t *)sec[SEC_MSRS] + sizeof(msrs.h), msrs.h.nmsrs * sizeof(msrs.e[0]));
	for (uint32_t i = 0; i < msrs.h.nmsrs; i++)
		if (!msr_allowed(msrs.e[i].index))
			return -EINVAL;
	struct kvm_xcrs xcrs;
	memcpy(&xcrs, sec[SEC_XCRS], sizeof(xcrs));
	if (xcrs.nr_xcrs > KVM_MAX_XCRS)
		return -EINVAL;
	xs = calloc(1, (size_t)xsz);
	if (!xs)
		return -ENOMEM;
	memcpy(xs, sec[SEC_XSAVE], seclen[SEC_XSAVE]);
	struct kvm_vcpu_events ev;
	memcpy(&ev, sec[SEC_EVENTS], sizeof(ev));
	/* As QEMU does: restore NMI state and the interrupt shadow too. */
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
	ev.flags &= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SIPI_VECTOR;

	/* The guest keeps its TSC rate if this host can scale to it. */
	if (h.tsc_khz && h.tsc_khz != k->tsc_khz && h.tsc_khz < 100000000ull)
		ioctl(v->fd, KVM_SET_TSC_KHZ, (unsigned long)h.tsc_khz);

#define SET(req, arg)                      \
	do {                               \
		if (ioctl(v->fd, req, arg) < 0) { \
			r = -errno;        \
			goto out;          \
		}                          \
	} while (0)
	SET(KVM_SET_SREGS, sec[SEC_SREGS]);
	SET(KVM_SET_REGS, sec[SEC_REGS]);
	SET(KVM_SET_XCRS, &xcrs);
	SET(KVM_SET_XSAVE, xs);
	SET(KVM_SET_VCPU_EVENTS, &ev);
	SET(KVM_SET_DEBUGREGS, sec[SEC_DEBUGREGS]);
#undef SET
	/* TSC last: it advances by the wall-clock time since save. */
	uint64_t now = realtime_ns();
	uint64_t elapsed = now > h.save_realtime_ns ? now - h.save_realtime_ns : 0;
	uint64_t khz = h.tsc_khz ? h.tsc_khz : k->tsc_khz;
	msrs.e[msrs.h.nmsrs].index = MSR_IA32_TSC;
	msrs.e[msrs.h.nmsrs].data = h.guest_tsc + (uint64_t)((unsigned __int128)elapsed * khz / 1000000u);
	msrs.h.nmsrs++;
	if (ioctl(v->fd, KVM_SET_MSRS, &msrs) != (int)msrs.h.nmsrs) {
		r = -EIO;
		goto out;
	}
	r = 0;
out:
	free(xs);
	return r;
}
