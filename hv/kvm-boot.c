/*
 * hv/kvm-boot.c - direct 64-bit CPL 3 entry for guest images.
 *
 * CPL 0 code is emulated instruction by instruction on this nested,
 * shadow-paging KVM, so the VMM does what a guest's boot code would:
 * builds identity page tables over all of memory (2 MiB pages, U/S set,
 * A/D preset so the CPU never writes them), a GDT with 64-bit user
 * segments and a busy TSS, a PVH start_info with the memory map and the
 * command line, and enters at e_entry with CPL 3 and IOPL 3.
 *
 * Low memory layout (below the image at 1 MiB):
 *   0x1000 GDT   0x3000 start_info   0x3100 memmap   0x4000 cmdline (4 KiB)
 *   0x5000 TSS with a full I/O bitmap   0x8000 PML4   0x9000 PDPT   0xa000.. PDs
 *
 * Port I/O at CPL 3 is allowed through the TSS I/O bitmap rather than
 * IOPL: this nested KVM was seen to drop IOPL from RFLAGS on entry.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include "hv/elf.h"
#include "hv/kvm-internal.h"

#define GDT_GPA 0x1000ull
#define TSS_GPA 0x5000ull
#define TSS_IOMAP 0x68
#define TSS_LIMIT (TSS_IOMAP + 8192) /* bitmap for 65536 ports + the 0xff terminator */
#define SI_GPA 0x3000ull
#define MEMMAP_GPA 0x3100ull
#define CMDLINE_GPA 0x4000ull
#define CMDLINE_MAX 4096
#define PML4_GPA 0x8000ull
#define PDPT_GPA 0x9000ull
#define PD_GPA 0xa000ull

#define SEL_UCODE 0x1b
#define SEL_UDATA 0x23
#define SEL_TSS 0x28

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
struct hvm_memmap_entry {
	uint64_t addr, size;
	uint32_t type, reserved;
};

int kvm__setup_cpuid(struct kvm_vm *k, struct kvm_vcpu *v)
{
	const unsigned max = 256;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + max * sizeof(struct kvm_cpuid_entry2));
	int r;

	if (!c)
		return -ENOMEM;
	c->nent = max;
	if (ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) < 0) {
		r = -errno;
		goto out;
	}
	for (unsigned i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == 1) {
			e->ebx = (e->ebx & 0x00ffffff) | (v->idx << 24); /* APIC id */
			e->ecx |= 1u << 31; /* hypervisor present */
		}
	}
	r = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
out:
	free(c);
	return r;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, int code)
{
	memset(s, 0, sizeof(*s));
	s->base = 0;
	s->limit = 0xffffffff;
	s->selector = sel;
	s->type = type;
	s->present = 1;
	s->dpl = 3;
	s->s = 1;
	s->l = code ? 1 : 0;
	s->db = code ? 0 : 1;
	s->g = 1;
}

static void kvm__build_low_memory(struct kvm_vm *k, const char *cmdline)
{
	uint8_t *m = k->mem;
	uint64_t *gdt = (uint64_t *)(m + GDT_GPA);
	uint64_t *pml4 = (uint64_t *)(m + PML4_GPA);
	uint64_t *pdpt = (uint64_t *)(m + PDPT_GPA);
	uint64_t *pd = (uint64_t *)(m + PD_GPA);
	uint64_t n2m = k->mem_size >> 21, n1g = (k->mem_size + (1ull << 30) - 1) >> 30;

	gdt[0] = 0;
	gdt[1] = 0x00af9a000000ffffull; /* kernel code 64 (unused, keeps selectors aligned with PVH path) */
	gdt[2] = 0x00cf92000000ffffull;
	gdt[3] = 0x00affa000000ffffull; /* user code 64 */
	gdt[4] = 0x00cff2000000ffffull; /* user data */
	gdt[5] = (TSS_LIMIT & 0xffff) | ((TSS_GPA & 0xffffff) << 16) | (0x8bull << 40) |
		 ((uint64_t)((TSS_LIMIT >> 16) & 0xf) << 48) | (((TSS_GPA >> 24) & 0xff) << 56);
	gdt[6] = TSS_GPA >> 32;

	/* All ports allowed: zero bitmap, then the required all-ones byte. */
	memset(m + TSS_GPA, 0, TSS_LIMIT + 1);
	*(uint16_t *)(m + TSS_GPA + 0x66) = TSS_IOMAP;
	m[TSS_GPA + TSS_LIMIT] = 0xff;

	/* P | RW | US | A (| D | PS for leaves) */
	pml4[0] = PDPT_GPA | 0x27;
	for (uint64_t i = 0; i < n1g; i++)
		pdpt[i] = (PD_GPA + i * 4096) | 0x27;
	for (uint64_t i = 0; i < n2m; i++)
		pd[i] = (i << 21) | 0xe7;

	struct hvm_start_info *si = (void *)(m + SI_GPA);
	struct hvm_memmap_entry *mm = (void *)(m + MEMMAP_GPA);
	si->magic = 0x336ec578;
	si->version = 1;
	si->cmdline_paddr = CMDLINE_GPA;
	si->memmap_paddr = MEMMAP_GPA;
	si->memmap_entries = 2;
	mm[0] = (struct hvm_memmap_entry){ .addr = 0, .size = PMG_IMAGE_BASE, .type = 2 };
	mm[1] = (struct hvm_memmap_entry){ .addr = PMG_IMAGE_BASE, .size = k->mem_size - PMG_IMAGE_BASE, .type = 1 };
	snprintf((char *)m + CMDLINE_GPA, CMDLINE_MAX, "%s", cmdline);
}

static int kvm__vcpu_enter64(struct kvm_vm *k, struct kvm_vcpu *v, uint64_t entry)
{
	struct kvm_sregs sr;
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_SREGS, &sr) < 0)
		return -errno;
	seg(&sr.cs, SEL_UCODE, 11, 1);
	seg(&sr.ds, SEL_UDATA, 3, 0);
	sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
	memset(&sr.tr, 0, sizeof(sr.tr));
	sr.tr.base = TSS_GPA;
	sr.tr.limit = TSS_LIMIT;
	sr.tr.selector = SEL_TSS;
	sr.tr.type = 11; /* busy 64-bit TSS */
	sr.tr.present = 1;
	memset(&sr.ldt, 0, sizeof(sr.ldt));
	sr.ldt.type = 2;
	sr.ldt.present = 1;
	sr.ldt.limit = 0xffff;
	sr.gdt.base = GDT_GPA;
	sr.gdt.limit = 7 * 8 - 1;
	sr.idt.base = 0;
	sr.idt.limit = 0;
	sr.cr0 = 0x80010033; /* PG | WP | NE | ET | MP | PE */
	sr.cr3 = PML4_GPA;
	sr.cr4 = 0x620;      /* OSXMMEXCPT | OSFXSR | PAE */
	sr.efer = 0x500;     /* LMA | LME */
	if (ioctl(v->fd, KVM_SET_SREGS, &sr) < 0)
		return -errno;
	memset(&regs, 0, sizeof(regs));
	regs.rip = entry;
	regs.rflags = 0x3002; /* IOPL 3: port I/O is the hypercall path */
	regs.rdi = SI_GPA;
	regs.rsi = v->idx;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	(void)k;
	return 0;
}

int kvm__boot_image(struct hv_vm *vm, const char *path, const char *cmdline, char *err, size_t errlen)
{
	struct kvm_vm *k = kvm__vm(vm);
	struct elf_image img;
	char full[CMDLINE_MAX];
	int r;

	r = elf_image_read(path, PMG_IMAGE_BASE, k->mem_size, &img, err, errlen);
	if (r < 0)
		return r;
	/* The guest learns the TSC rate and vCPU count from its command line;
	 * pmg=1 says all of memory is mapped. */
	r = snprintf(full, sizeof(full), "pmg=1 tsc_khz=%llu vcpus=%u %s", (unsigned long long)k->tsc_khz,
		     k->nvcpus, cmdline ? cmdline : "");
	if (r < 0 || (size_t)r >= sizeof(full)) {
		snprintf(err, errlen, "guest command line longer than %d bytes", CMDLINE_MAX - 1);
		r = -E2BIG;
		goto out;
	}
	elf_image_load(&img, k->mem);
	kvm__build_low_memory(k, full);
	for (unsigned i = 0; i < k->nvcpus; i++) {
		r = kvm__vcpu_enter64(k, &k->vcpus[i], img.entry64);
		if (r < 0) {
			snprintf(err, errlen, "setting up vCPU %u: %s", i, strerror(-r));
			goto out;
		}
	}
	r = 0;
out:
	elf_image_free(&img);
	return r;
}
