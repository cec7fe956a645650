/*
 * Guest entry points.
 *
 * pvh_start32: the PVH entry (QEMU -kernel, Xen PVH). 32-bit protected mode,
 *   paging off, %ebx = hvm_start_info. It builds identity page tables for
 *   the low 4 GiB, enters long mode and drops to CPL 3 with IOPL 3, so the
 *   workload runs exactly as under the built-in VMM. This is the only CPL 0
 *   code in an image and is kept short: CPL 0 is emulated on shadow-paging
 *   nested KVM.
 * _start64: the 64-bit CPL 3 entry (ELF e_entry) that the built-in VMM
 *   jumps to directly. %rdi = hvm_start_info, %rsi = vCPU index.
 */
#define STACK_SIZE 0x10000

	.section .note.pvh, "a", @note
	.balign 4
	.long 4		/* namesz: "Xen\0" */
	.long 8		/* descsz */
	.long 18	/* XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.balign 4
	.quad pvh_start32

	.section .text.boot32, "ax"
	.code32
	.globl pvh_start32
pvh_start32:
	cld
	cli
	mov %ebx, %esi
	/* PML4[0] -> PDPT, PDPT[0..3] -> PD0..3, PDs map 0-4 GiB with 2 MiB pages.
	 * U/S set everywhere (CPL 3 code), A and D preset so the CPU never
	 * writes page tables (they would show up as dirty pages). */
	mov $pvh_pdpt, %eax
	or $0x67, %eax
	mov %eax, pvh_pml4
	xor %ecx, %ecx
1:	mov %ecx, %eax
	shl $12, %eax
	add $pvh_pd, %eax
	or $0x67, %eax
	mov %eax, pvh_pdpt(,%ecx,8)
	inc %ecx
	cmp $4, %ecx
	jne 1b
	xor %ecx, %ecx
2:	mov %ecx, %eax
	shl $21, %eax
	or $0xe7, %eax
	mov %eax, pvh_pd(,%ecx,8)
	mov %ecx, %eax
	shr $11, %eax
	mov %eax, pvh_pd+4(,%ecx,8)
	inc %ecx
	cmp $2048, %ecx
	jne 2b
	mov $pvh_pml4, %eax
	mov %eax, %cr3
	mov %cr4, %eax
	or $0x620, %eax		/* PAE | OSFXSR | OSXMMEXCPT */
	mov %eax, %cr4
	mov $0xc0000080, %ecx	/* EFER.LME */
	rdmsr
	or $0x100, %eax
	wrmsr
	mov %cr0, %eax
	and $~0x4, %eax		/* clear EM */
	or $0x80000023, %eax	/* PG | NE | MP | PE */
	mov %eax, %cr0
	lgdt pvh_gdt_desc
	ljmp $0x08, $pvh_long

	.code64
pvh_long:
	/* The PVH ABI leaves %rsp undefined (Xen hands over 0, QEMU a usable
	 * one), and the iretq below builds its frame on the stack: take ours. */
	lea stacks+STACK_SIZE(%rip), %rsp
	mov $0x10, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	xor %ax, %ax
	mov %ax, %fs
	mov %ax, %gs
	/* I/O bitmap allowing every port: IOPL alone was seen not to survive
	 * entry on nested KVM. Then patch the TSS base into its descriptor:
	 * it is split across fields that a relocation cannot express. */
	lea pvh_tss(%rip), %rdi
	movw $0x68, 0x66(%rdi)
	movb $0xff, 0x68+8192(%rdi)
	lea pvh_tss(%rip), %rax
	mov %ax, pvh_gdt+0x28+2(%rip)
	shr $16, %rax
	mov %al, pvh_gdt+0x28+4(%rip)
	mov %ah, pvh_gdt+0x28+7(%rip)
	shr $16, %rax
	mov %eax, pvh_gdt+0x28+8(%rip)
	mov $0x28, %ax
	ltr %ax
	mov %esi, %edi		/* start_info */
	lea stacks+STACK_SIZE(%rip), %rax
	pushq $0x23		/* user SS */
	pushq %rax		/* user RSP */
	pushq $0x3002		/* RFLAGS: IOPL 3, IF clear */
	pushq $0x1b		/* user CS (64-bit, DPL 3) */
	lea pvh_user(%rip), %rax
	pushq %rax
	iretq
pvh_user:
	xor %esi, %esi
	jmp _start64

	.text
	.globl _start64
_start64:
	/* Each vCPU gets its own stack from its index. */
	mov %rsi, %rax
	inc %rax
	shl $16, %rax
	lea stacks(%rip), %rsp
	add %rax, %rsp
	and $-16, %rsp
	call guest_entry
3:	jmp 3b

	.data
	.balign 16
pvh_gdt:
	.quad 0
	.quad 0x00af9a000000ffff	/* 0x08 kernel code 64 */
	.quad 0x00cf92000000ffff	/* 0x10 kernel data */
	.quad 0x00affa000000ffff	/* 0x18 user code 64 */
	.quad 0x00cff2000000ffff	/* 0x20 user data */
	.quad 0x0000890000002068	/* 0x28 TSS, limit 0x68+8192 (base patched at run time) */
	.quad 0
pvh_gdt_end:
pvh_gdt_desc:
	.word pvh_gdt_end - pvh_gdt - 1
	.quad pvh_gdt

	.bss
	.balign 4096
pvh_pml4: .skip 4096
pvh_pdpt: .skip 4096
pvh_pd:	  .skip 4096 * 4
pvh_tss:  .skip 0x68 + 8192 + 8
	.globl stacks
stacks:	  .skip STACK_SIZE * 2
