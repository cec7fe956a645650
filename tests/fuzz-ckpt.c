/*
 * tests/fuzz-ckpt.c - libFuzzer target: a checkpoint file (migrate/ckpt.h)
 * as restore reads it from a directory that may have come from another
 * host: listed (header and seal), its chain resolved, and read in full
 * with every page decoded. Nothing it holds may crash, leak or overrun.
 *
 * PMG_FUZZ_DIR=DIR: where inputs are written as files (default: a new
 * directory in /tmp). PMG_FUZZ_SEED=DIR: writes valid seeds (a full image with zero, text and
 * noise pages; an incremental one) into DIR with the real writer, and
 * exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "compress/compress.h"
#include "migrate/ckpt.h"

static int dirfd_ = -1;
static uint8_t *full_;  /* a valid full image: checkpoint 1 of every input */
static size_t full_len_;

static int fz__page(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	static uint8_t page[COMPRESS_PAGE_SIZE];
	(void)opaque;
	(void)gfn;
	compress_page_decode(codec, data, len, page);
	return 0;
}

static int fz__each(void *opaque, const struct stream_record *rec)
{
	if (rec->type == STREAM_PAGES)
		stream_parse_pages(rec, UINT64_MAX, fz__page, opaque);
	return 0;
}

/* ---- seeds ---- */

static int fz__seed(int dfd, uint32_t seq, uint64_t parent_id)
{
	struct stream_checkpoint h = { .seq = seq, .id = 0x1000 + seq, .parent_seq = parent_id ? seq - 1 : 0,
				       .parent_id = parent_id, .start_ns = 1 };
	struct stream_shape sh = { .mem_bytes = 16ull << 20, .vcpus = 1, .dirty_log = 1 };
	struct stream_buf b = { 0 };
	struct ckpt_writer *w;
	uint8_t page[COMPRESS_PAGE_SIZE], enc[COMPRESS_MAX_PAYLOAD], blob[64];
	size_t mark;
	int e = ckpt_writer_open(dfd, seq, &w);
	if (e)
		return e;
	e = stream_put_checkpoint(&b, &h);
	if (!e)
		e = stream_put_hello(&b, 0, "fuzz");
	if (!e)
		e = stream_put_shape(&b, &sh);
	if (!e)
		e = stream_put_pages_begin(&b, &mark);
	for (unsigned i = 0; !e && i < 6; i++) {
		size_t len = 0;
		for (unsigned k = 0; k < sizeof(page); k++)
			page[k] = i % 3 == 0 ? 0 : i % 3 == 1 ? "checkpoint page "[k % 16] : (uint8_t)(k * 2654435761u >> 13);
		enum compress_codec c = compress_page_encode(page, enc, &len, 1);
		e = stream_put_page(&b, 100 + i * seq, c, enc, (uint32_t)len);
	}
	if (!e)
		e = stream_put_pages_end(&b, mark);
	memset(blob, 0x5a, sizeof(blob));
	if (!e)
		e = stream_put_vcpu(&b, 0, blob, sizeof(blob));
	if (!e)
		e = stream_put_state_done(&b, 6);
	if (!e)
		e = ckpt_writer_put(w, &b);
	stream_buf_free(&b);
	if (e) {
		ckpt_writer_abort(w);
		return e;
	}
	return ckpt_writer_commit(w, 2, 3, NULL);
}

static int fz__seeds(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd < 0)
		return -errno;
	/* Written as 1 and 2 here, then renamed to seed files (each input is
	 * read as checkpoint 1, so the incremental one is refused by its
	 * chain: the listing and seal are still exercised). */
	int e = fz__seed(dfd, 1, 0);
	if (!e)
		e = fz__seed(dfd, 2, 0x1001);
	if (!e && (renameat(dfd, "00000001.ckpt", dfd, "seed-full") || renameat(dfd, "00000002.ckpt", dfd, "seed-incr")))
		e = -errno;
	close(dfd);
	return e;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *seed = getenv("PMG_FUZZ_SEED");
	if (seed)
		exit(fz__seeds(seed) ? 1 : 0);
	/* The full image each input may claim to follow, from the writer. */
	char fdir[] = "/tmp/fuzz-ckpt-full-XXXXXX";
	if (!mkdtemp(fdir)) {
		perror("fuzz-ckpt: temporary directory");
		exit(1);
	}
	int ffd = open(fdir, O_RDONLY | O_DIRECTORY);
	FILE *ff = NULL;
	if (ffd < 0 || fz__seed(ffd, 1, 0) || !(ff = fdopen(openat(ffd, "00000001.ckpt", O_RDONLY), "r"))) {
		fprintf(stderr, "fuzz-ckpt: cannot write the full image\n");
		exit(1);
	}
	full_ = malloc(1 << 20);
	full_len_ = full_ ? fread(full_, 1, 1 << 20, ff) : 0;
	fclose(ff);
	if (!full_len_ || full_len_ == 1 << 20) { /* none, or cut short: merges would test nothing */
		fprintf(stderr, "fuzz-ckpt: cannot read the full image back\n");
		exit(1);
	}
	unlinkat(ffd, "00000001.ckpt", 0);
	close(ffd);
	rmdir(fdir);
	/* Where each input is written: the test's own directory. */
	char tmpl[] = "/tmp/fuzz-ckpt-XXXXXX";
	const char *d = getenv("PMG_FUZZ_DIR");
	if (!d)
		d = mkdtemp(tmpl);
	if (!d || (dirfd_ = open(d, O_RDONLY | O_DIRECTORY)) < 0) {
		perror("fuzz-ckpt: temporary directory");
		exit(1);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	/* The input alone as checkpoint 1: listed, chained, read. */
	int fd = openat(dirfd_, "00000001.ckpt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	unlinkat(dirfd_, "00000002.ckpt", 0);
	struct ckpt_info *v = NULL;
	size_t n = 0, chain[CKPT_MAX_CHAIN], len = 0;
	char err[600];
	if (ckpt_list(dirfd_, &v, &n) == 0 && ckpt_chain(v, n, 0, chain, &len, err, sizeof(err)) == 0)
		for (size_t i = 0; i < len; i++)
			if (ckpt_read(dirfd_, &v[chain[i]], fz__each, NULL, NULL, err, sizeof(err)) < 0)
				break;
	free(v);
	/* The input as checkpoint 2 after the valid full image 1: its chain,
	 * and the merge --keep makes of the two. */
	fd = openat(dirfd_, "00000001.ckpt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, full_, full_len_) != (ssize_t)full_len_)
		abort();
	close(fd);
	fd = openat(dirfd_, "00000002.ckpt", O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	v = NULL;
	n = 0;
	if (ckpt_list(dirfd_, &v, &n) == 0 && n == 2 && ckpt_chain(v, n, 2, chain, &len, err, sizeof(err)) == 0)
		ckpt_merge(dirfd_, &v[0], &v[1], err, sizeof(err));
	free(v);
	return 0;
}
