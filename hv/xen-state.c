/*
 * hv/xen-state.c - a Xen domain's CPU and platform state as one blob, and
 * the domain a migration arrives in.
 *
 * The blob is what libxenguest's save stream carries for an HVM/PVH guest
 * apart from memory: the HVM context (every vCPU's registers, LAPIC, MTRRs,
 * XSAVE, MSRs: xc_domain_hvm_getcontext) and the TSC information. Xen keeps
 * that state per domain, not per vCPU, so vCPU 0's blob holds it all (the
 * backend runs one vCPU). Layout: struct xen_state_hdr, then ctx_len bytes
 * of HVM context. Loading checks the magic, version, lengths and every
 * context record's descriptor before Xen sees a byte.
 *
 * The guest TSC is restored as saved: it never goes backwards, and it
 * counts the time the guest sat paused before the save, but not the time
 * from the save to the load (the KVM backend adds that). Adding it to the
 * CPU record's TSC was tried and made guests triple-fault at their next
 * port call in 3 of 5 runs under the emulated Xen 4.17 (0 of 12 without);
 * TSC_INFO's elapsed time moved nothing the guest sees.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "hv/xen-internal.h"
#include <xen/hvm/save.h>

#define XEN_STATE_MAGIC 0x58474d50u /* "PMGX" */
#define XEN_STATE_VERSION 1
#define XEN_STATE_VERSION_XG 2 /* a toolstack's guest: + HVM params (xen-guest.c) */
#define XEN_STATE_MAX_CTX (1u << 20)

struct xen_state_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t ctx_len;
	uint32_t tsc_mode;
	uint32_t gtsc_khz;
	uint32_t incarnation;
	uint64_t elapsed_nsec;
};

/* vCPUs other than 0 of a toolstack's guest: vCPU 0's blob holds them. */
static int xen__vcpu_save_empty(void **blob, size_t *len)
{
	/* One zero byte: a VCPU record is never empty. */
	*blob = calloc(1, 1);
	*len = 1;
	return *blob ? 0 : -ENOMEM;
}

int xen__vcpu_save(struct hv_vm *vm, unsigned idx, void **blob, size_t *len)
{
	struct xen_vm *x = xen__vm(vm);
	struct xen_state_hdr h = { .magic = XEN_STATE_MAGIC, .version = XEN_STATE_VERSION };

	if (idx != 0)
		return idx < x->nvcpus && x->xg ? xen__vcpu_save_empty(blob, len) : -EINVAL;
	if (!x->have_domain)
		return -ENOENT;
	/* A toolstack's guest: the HVM params its restore sets, between the
	 * header and the context (u32 count, u32 zero, count x {index, value}). */
	uint64_t params[32][2];
	unsigned np = 0;
	if (x->xg) {
		if (xen__xg_nparams() > 32)
			return -E2BIG;
		int e = xen__xg_params(x, params, &np);
		if (e < 0)
			return e;
		h.version = XEN_STATE_VERSION_XG;
	}
	size_t pre = x->xg ? 8 + (size_t)np * 16 : 0;
	/* The size query over-reports (it counts every possible record);
	 * the real call says what it wrote. */
	int sz = xc_domain_hvm_getcontext(x->xch, x->domid, NULL, 0);
	if (sz <= 0 || (unsigned)sz > XEN_STATE_MAX_CTX)
		return sz < 0 && errno ? -errno : -EIO;
	uint8_t *b = malloc(sizeof(h) + pre + (size_t)sz);
	if (!b)
		return -ENOMEM;
	if (x->xg) {
		uint32_t c[2] = { np, 0 };
		memcpy(b + sizeof(h), c, 8);
		memcpy(b + sizeof(h) + 8, params, (size_t)np * 16);
	}
	int n = xc_domain_hvm_getcontext(x->xch, x->domid, b + sizeof(h) + pre, (uint32_t)sz);
	if (n <= 0 || n > sz) {
		int e = errno ? -errno : -EIO;
		free(b);
		return e;
	}
	if (xc_domain_get_tsc_info(x->xch, x->domid, &h.tsc_mode, &h.elapsed_nsec, &h.gtsc_khz, &h.incarnation) < 0) {
		int e = errno ? -errno : -EIO;
		free(b);
		return e;
	}
	h.ctx_len = (uint32_t)n;
	memcpy(b, &h, sizeof(h));
	*blob = b;
	*len = sizeof(h) + pre + (size_t)n;
	return 0;
}

/* Walks the HVM context records: each descriptor and body inside the
 * buffer, types known, a CPU record long enough to be one, ending with
 * END. Returns 0 or -EINVAL. */
static int xen__check_ctx(const uint8_t *ctx, uint32_t len)
{
	uint32_t off = 0;
	int seen_header = 0;

	while (off + sizeof(struct hvm_save_descriptor) <= len) {
		struct hvm_save_descriptor d;
		memcpy(&d, ctx + off, sizeof(d));
		off += sizeof(d);
		if (d.length > len - off || d.typecode > HVM_SAVE_CODE_MAX)
			return -EINVAL;
		if (off == sizeof(d) && d.typecode != HVM_SAVE_CODE(HEADER))
			return -EINVAL;
		if (d.typecode == HVM_SAVE_CODE(HEADER))
			seen_header = 1;
		if (d.typecode == HVM_SAVE_CODE(END))
			return seen_header && d.length == 0 ? 0 : -EINVAL;
		if (d.typecode == HVM_SAVE_CODE(CPU) && d.length < sizeof(struct hvm_hw_cpu))
			return -EINVAL;
		off += d.length;
	}
	return -EINVAL; /* no END record */
}

int xen__vcpu_load(struct hv_vm *vm, unsigned idx, const void *blob, size_t len)
{
	struct xen_vm *x = xen__vm(vm);
	struct xen_state_hdr h;

	if (idx != 0 && x->xg && idx < x->nvcpus)
		return len == 1 && !*(const uint8_t *)blob ? 0 : -EINVAL; /* vCPU 0's blob holds the domain's state */
	if (idx != 0 || len < sizeof(h))
		return -EINVAL;
	memcpy(&h, blob, sizeof(h));
	/* A toolstack's guest's state only into a domain libxl restores, and
	 * the other way round. */
	uint32_t want = x->xg ? XEN_STATE_VERSION_XG : XEN_STATE_VERSION;
	size_t pre = 0;
	uint32_t np = 0;
	if (h.version == XEN_STATE_VERSION_XG && len >= sizeof(h) + 8) {
		memcpy(&np, (const uint8_t *)blob + sizeof(h), 4);
		if (np > 32)
			return -EINVAL;
		pre = 8 + (size_t)np * 16;
	}
	if (h.magic != XEN_STATE_MAGIC || h.version != want || h.ctx_len == 0 || h.ctx_len > XEN_STATE_MAX_CTX ||
	    len < sizeof(h) + pre || h.ctx_len != len - sizeof(h) - pre || h.gtsc_khz > 100000000u)
		return -EINVAL;
	if (!x->have_domain)
		return -ENOENT;
	uint64_t params[32][2];
	memcpy(params, (const uint8_t *)blob + sizeof(h) + 8, (size_t)np * 16);
	for (uint32_t i = 0; i < np; i++)
		if (!xen__xg_param_known(params[i][0]))
			return -EINVAL;
	uint8_t *ctx = malloc(h.ctx_len);
	if (!ctx)
		return -ENOMEM;
	memcpy(ctx, (const uint8_t *)blob + sizeof(h) + pre, h.ctx_len);
	int r = xen__check_ctx(ctx, h.ctx_len);
	if (r < 0)
		goto out;
	if (x->xg) {
		/* libxenguest's X86_TSC_INFO body: mode, khz, nsec, incarnation. */
		struct {
			uint32_t mode, khz;
			uint64_t nsec;
			uint32_t incarnation, res;
		} tsc = { h.tsc_mode, h.gtsc_khz, h.elapsed_nsec, h.incarnation, 0 };
		r = xen__xg_finish(x, &tsc, sizeof(tsc), (const uint64_t(*)[2])params, np, ctx, h.ctx_len);
		goto out;
	}
	/* As libxenguest's restore: TSC information before the context. */
	if (xc_domain_set_tsc_info(x->xch, x->domid, h.tsc_mode, h.elapsed_nsec, h.gtsc_khz, h.incarnation) < 0 ||
	    xc_domain_hvm_setcontext(x->xch, x->domid, ctx, h.ctx_len) < 0)
		r = errno ? -errno : -EIO;
out:
	free(ctx);
	return r;
}

/* A PVH ELF whose entry halts: what libxl boots into a domain that a
 * migration will fill (libxl wants a kernel; it never runs, the state
 * that arrives replaces it). Written to a private temporary file. */
static int xen__placeholder_kernel(char *path, size_t len)
{
	static const uint8_t code[] = { 0xf4, 0xeb, 0xfd }; /* 1: hlt; jmp 1b */
	struct {
		uint8_t ehdr[64];
		uint8_t phdr[2][56];
		uint8_t note[12 + 4 + 8];
		uint8_t code[sizeof(code)];
	} __attribute__((packed)) f;
	const uint64_t base = PMG_IMAGE_BASE, entry = base + offsetof(__typeof__(f), code);
	uint8_t *p;

	memset(&f, 0, sizeof(f));
	p = f.ehdr;
	memcpy(p, "\177ELF\2\1\1", 7); /* 64-bit, little-endian, version 1 */
	*(uint16_t *)(p + 16) = 2;     /* ET_EXEC */
	*(uint16_t *)(p + 18) = 62;    /* EM_X86_64 */
	*(uint32_t *)(p + 20) = 1;
	*(uint64_t *)(p + 24) = entry;
	*(uint64_t *)(p + 32) = 64;    /* e_phoff */
	*(uint16_t *)(p + 52) = 64;    /* e_ehsize */
	*(uint16_t *)(p + 54) = 56;    /* e_phentsize */
	*(uint16_t *)(p + 56) = 2;     /* e_phnum */
	p = f.phdr[0];                 /* PT_LOAD: the whole file at base */
	*(uint32_t *)p = 1;
	*(uint32_t *)(p + 4) = 5;      /* R+X */
	*(uint64_t *)(p + 16) = base;
	*(uint64_t *)(p + 24) = base;
	*(uint64_t *)(p + 32) = sizeof(f);
	*(uint64_t *)(p + 40) = sizeof(f);
	*(uint64_t *)(p + 48) = 4096;
	p = f.phdr[1];                 /* PT_NOTE */
	*(uint32_t *)p = 4;
	*(uint32_t *)(p + 4) = 4;
	*(uint64_t *)(p + 8) = offsetof(__typeof__(f), note);
	*(uint64_t *)(p + 16) = base + offsetof(__typeof__(f), note);
	*(uint64_t *)(p + 24) = base + offsetof(__typeof__(f), note);
	*(uint64_t *)(p + 32) = sizeof(f.note);
	*(uint64_t *)(p + 40) = sizeof(f.note);
	*(uint64_t *)(p + 48) = 4;
	p = f.note;                    /* XEN_ELFNOTE_PHYS32_ENTRY */
	*(uint32_t *)p = 4;            /* namesz ("Xen\0") */
	*(uint32_t *)(p + 4) = 8;      /* descsz */
	*(uint32_t *)(p + 8) = 18;
	memcpy(p + 12, "Xen", 4);
	*(uint64_t *)(p + 16) = entry;
	memcpy(f.code, code, sizeof(code));

	const char *tmp = getenv("TMPDIR");
	snprintf(path, len, "%s/pml-migrate-xen-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	int r = write(fd, &f, sizeof(f)) == (ssize_t)sizeof(f) ? 0 : -EIO;
	close(fd);
	if (r < 0)
		unlink(path);
	return r;
}

int xen__prepare_incoming(struct hv_vm *vm, char *err, size_t errlen)
{
	struct xen_vm *x = xen__vm(vm);
	char kernel[4200];
	int r;

	if (x->nvcpus != 1) {
		snprintf(err, errlen, "the Xen backend receives pml-migrate's own guest images with 1 vCPU only");
		return -ENOTSUP;
	}
	if (x->have_domain) {
		snprintf(err, errlen, "the VM already has a domain");
		return -EALREADY;
	}
	r = xen__placeholder_kernel(kernel, sizeof(kernel));
	if (r < 0) {
		snprintf(err, errlen, "writing a placeholder kernel for libxl: %s", strerror(-r));
		return r;
	}
	/* As `xl migrate`: a temporary name until COMMIT, so the domain never
	 * clashes with the source's when both are on one host. */
	r = xen__create_domain(x, kernel, "", 1, err, errlen);
	unlink(kernel);
	return r;
}
