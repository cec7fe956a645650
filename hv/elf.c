/*
 * hv/elf.c - ELF64 guest image validation and loading.
 * Images come from users, so every offset and size is checked before use.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "hv/elf.h"

#define MAX_IMAGE_SIZE (256u << 20)
#define XEN_ELFNOTE_PHYS32_ENTRY 18

static int fail(char *err, size_t errlen, int r, const char *fmt, const char *path)
{
	snprintf(err, errlen, fmt, path);
	return r;
}

static const Elf64_Phdr *phdr(const struct elf_image *img, unsigned i)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img->data;
	return (const Elf64_Phdr *)(img->data + eh->e_phoff + (size_t)i * eh->e_phentsize);
}

static void elf__find_pvh(struct elf_image *img, const Elf64_Phdr *ph)
{
	size_t off = ph->p_offset, end = ph->p_offset + ph->p_filesz;
	while (off + 12 <= end) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, img->data + off, 4);
		memcpy(&descsz, img->data + off + 4, 4);
		memcpy(&type, img->data + off + 8, 4);
		size_t name = off + 12;
		size_t desc = name + ((namesz + 3u) & ~3u);
		if (namesz > end || descsz > end || desc + descsz > end)
			return;
		if (namesz == 4 && !memcmp(img->data + name, "Xen", 4) && type == XEN_ELFNOTE_PHYS32_ENTRY) {
			uint64_t v = 0;
			memcpy(&v, img->data + desc, descsz >= 8 ? 8 : descsz);
			img->pvh_entry = v;
		}
		off = desc + ((descsz + 3u) & ~3u);
	}
}

int elf_image_read(const char *path, uint64_t min_addr, uint64_t max_addr, struct elf_image *img,
		   char *err, size_t errlen)
{
	struct stat st;
	int fd, r;
	const Elf64_Ehdr *eh;

	memset(img, 0, sizeof(*img));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = fail(err, errlen, -EINVAL, "%s: not a regular file", path);
		goto err_close;
	}
	if (st.st_size < (off_t)sizeof(Elf64_Ehdr)) {
		r = fail(err, errlen, -EINVAL, "%s: too short to be an ELF image", path);
		goto err_close;
	}
	if (st.st_size > MAX_IMAGE_SIZE) {
		r = fail(err, errlen, -EFBIG, "%s: image larger than 256 MiB", path);
		goto err_close;
	}
	img->size = (size_t)st.st_size;
	img->data = malloc(img->size);
	if (!img->data) {
		r = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto err_close;
	}
	for (size_t got = 0; got < img->size;) {
		ssize_t n = read(fd, img->data + got, img->size - got);
		if (n <= 0) {
			r = fail(err, errlen, -EIO, "%s: read failed", path);
			goto err_free;
		}
		got += (size_t)n;
	}
	close(fd);
	fd = -1;

	eh = (const Elf64_Ehdr *)img->data;
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG)) {
		r = fail(err, errlen, -EINVAL, "%s: not an ELF file", path);
		goto err_free;
	}
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64) {
		r = fail(err, errlen, -EINVAL, "%s: not a 64-bit x86-64 ELF image", path);
		goto err_free;
	}
	if (eh->e_type != ET_EXEC) {
		r = fail(err, errlen, -EINVAL, "%s: not an ELF executable", path);
		goto err_free;
	}
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 64 ||
	    eh->e_phoff > img->size || (size_t)eh->e_phnum * sizeof(Elf64_Phdr) > img->size - eh->e_phoff) {
		r = fail(err, errlen, -EINVAL, "%s: program headers missing or truncated", path);
		goto err_free;
	}
	img->lo = UINT64_MAX;
	int entry_ok = 0, nload = 0;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = phdr(img, i);
		if (ph->p_type != PT_LOAD && ph->p_type != PT_NOTE)
			continue;
		if (ph->p_offset > img->size || ph->p_filesz > img->size - ph->p_offset) {
			r = fail(err, errlen, -EINVAL, "%s: segment extends past the end of the file (truncated image?)", path);
			goto err_free;
		}
		if (ph->p_type == PT_NOTE) {
			elf__find_pvh(img, ph);
			continue;
		}
		nload++;
		if (ph->p_filesz > ph->p_memsz || ph->p_paddr < min_addr || ph->p_paddr > max_addr ||
		    ph->p_memsz > max_addr - ph->p_paddr) {
			snprintf(err, errlen, "%s: segment at 0x%llx+0x%llx lies outside guest memory [0x%llx, 0x%llx)", path,
				 (unsigned long long)ph->p_paddr, (unsigned long long)ph->p_memsz,
				 (unsigned long long)min_addr, (unsigned long long)max_addr);
			r = -EINVAL;
			goto err_free;
		}
		if (ph->p_paddr < img->lo)
			img->lo = ph->p_paddr;
		if (ph->p_paddr + ph->p_memsz > img->hi)
			img->hi = ph->p_paddr + ph->p_memsz;
		if (eh->e_entry >= ph->p_paddr && eh->e_entry < ph->p_paddr + ph->p_filesz)
			entry_ok = 1;
	}
	if (!nload) {
		r = fail(err, errlen, -EINVAL, "%s: no loadable segment", path);
		goto err_free;
	}
	if (!entry_ok) {
		r = fail(err, errlen, -EINVAL, "%s: entry point is not inside a loaded segment", path);
		goto err_free;
	}
	img->entry64 = eh->e_entry;
	return 0;

err_free:
	free(img->data);
	img->data = NULL;
err_close:
	if (fd >= 0)
		close(fd);
	return r;
}

void elf_image_load(const struct elf_image *img, uint8_t *dst)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img->data;
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = phdr(img, i);
		if (ph->p_type == PT_LOAD && ph->p_filesz)
			memcpy(dst + ph->p_paddr, img->data + ph->p_offset, ph->p_filesz);
	}
}

void elf_image_free(struct elf_image *img)
{
	free(img->data);
	img->data = NULL;
}
