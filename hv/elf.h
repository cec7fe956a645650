/*
 * hv/elf.h - validating loader for guest ELF images (backend-independent).
 */
#ifndef PMG_HV_ELF_H
#define PMG_HV_ELF_H

#include <stddef.h>
#include <stdint.h>

struct elf_image {
	uint8_t *data; /* whole file, malloc'd */
	size_t size;
	uint64_t entry64;   /* e_entry: 64-bit CPL 3 entry */
	uint64_t pvh_entry; /* XEN_ELFNOTE_PHYS32_ENTRY, 0 if none */
	uint64_t lo, hi;    /* loaded physical range [lo, hi) */
};

/* Reads and validates path: 64-bit little-endian x86-64 executable, every
 * program header and segment inside the file, each PT_LOAD inside
 * [min_addr, max_addr), the entry inside a loaded segment. On failure
 * returns -errno and writes a one-line reason to err. On success the
 * caller owns img->data (elf_image_free). */
int elf_image_read(const char *path, uint64_t min_addr, uint64_t max_addr, struct elf_image *img,
		   char *err, size_t errlen);
/* Copies every PT_LOAD into dst (dst[0] is physical address 0); bss is left
 * as dst had it (callers pass zeroed memory). */
void elf_image_load(const struct elf_image *img, uint8_t *dst);
void elf_image_free(struct elf_image *img);

#endif
