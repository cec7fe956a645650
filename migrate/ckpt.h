/*
 * migrate/ckpt.h - checkpoint files: a VM's state on disk in the
 * migration stream's own records (format in docs/checkpoint.md).
 *
 * A checkpoint directory holds files NNNNNNNN.ckpt, one per checkpoint,
 * numbered from 1. A file is CHECKPOINT, HELLO, SHAPE, PAGES..., one VCPU
 * per vCPU, STATE_DONE (the page entries in this file) and SEAL (the
 * SHA-256 of every byte before it). A full image holds every page the
 * guest had; an incremental one holds the pages written since its parent
 * (CHECKPOINT names the parent by number and random id), so a point is
 * restored by applying its chain, full image first.
 *
 * Files appear atomically: written as .NNNNNNNN.ckpt.tmp, synced, renamed.
 * A reader never trusts a byte it has not checked: framing, every record
 * (migrate/stream.h), the chain's links and the seal.
 *
 * Threads: any; no shared state. Functions return 0 or -errno; where
 * there is an err buffer, it receives a one-line reason that names the
 * file.
 */
#ifndef PMG_MIGRATE_CKPT_H
#define PMG_MIGRATE_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include "migrate/stream.h"

#define CKPT_MAX_SEQ 99999999u

/* The name of checkpoint seq's file ("%08u.ckpt"); buf >= 16 bytes. */
void ckpt_file_name(uint32_t seq, char *buf, size_t len);

/* ---- writing ---- */

struct ckpt_writer;

/* Creates dirfd's .SEQ.ckpt.tmp (mode 0600, replacing a leftover of a
 * killed writer). *out owned by the caller until commit or abort. */
int ckpt_writer_open(int dirfd, uint32_t seq, struct ckpt_writer **out);
/* Appends b's bytes (whole records) to the file, hashing and counting
 * them, and empties b (its memory is kept for reuse). */
int ckpt_writer_put(struct ckpt_writer *w, struct stream_buf *b);
/* Bytes appended so far. */
uint64_t ckpt_writer_bytes(const struct ckpt_writer *w);
/* Appends SEAL (paused_ns: CLOCK_REALTIME of the consistent point;
 * pause_ns: how long the guest was paused), syncs the file, renames it to
 * SEQ.ckpt (replacing a file of that name) and syncs the directory. Frees
 * w either way; on failure the temporary file is removed. *bytes (may be
 * NULL): the file's size. */
int ckpt_writer_commit(struct ckpt_writer *w, uint64_t paused_ns, uint64_t pause_ns, uint64_t *bytes);
/* Removes the temporary file and frees w. NULL is a no-op. */
void ckpt_writer_abort(struct ckpt_writer *w);

/* Removes leftover temporary files of killed writers from dirfd. Call
 * only while no writer works there. Returns how many were removed. */
int ckpt_remove_leftovers(int dirfd);

/* ---- reading ---- */

/* One file of a directory, as far as its first records and its last
 * record tell (ckpt_read() checks the rest). */
struct ckpt_info {
	char file[24];
	uint32_t seq;            /* from the file name */
	uint64_t size;
	int ok;                  /* header and seal readable and consistent */
	char why[200];           /* when !ok: what is wrong, naming the file */
	struct stream_checkpoint hdr;
	struct stream_hello hello;
	struct stream_shape shape;
	struct stream_seal seal;
};

/* Every NNNNNNNN.ckpt in dirfd, by number ascending, each with its
 * header read (a bad file is listed with ok = 0 and why). *out malloc'd
 * (free()), NULL when *n is 0. */
int ckpt_list(int dirfd, struct ckpt_info **out, size_t *n);
/* Reads ci's header again (ci->file and ci->seq kept), as ckpt_list does:
 * for a file that changed, such as an image ckpt_merge made full. */
void ckpt_info_reload(int dirfd, struct ckpt_info *ci);

/* The files that restore checkpoint at (0: the newest listed): indexes
 * into v, the full image first, at most CKPT_MAX_CHAIN of them. Refuses
 * (-ENOENT no such checkpoint, -EBADMSG a bad or missing link) with the
 * reason naming the file. */
#define CKPT_MAX_CHAIN 4096
int ckpt_chain(const struct ckpt_info *v, size_t n, uint32_t at, size_t *chain, size_t *len, char *err,
	       size_t errlen);

/* Reads all of ci's file and checks it against ci (its header, name and
 * shape) and itself: framing, every record, each vCPU's state exactly
 * once, STATE_DONE counting the page entries, the SEAL's counts and
 * checksum, nothing after it. each() (may be NULL) is called for every
 * PAGES and VCPU record, in order, once it is validated; a non-zero
 * return stops the read and is returned. The seal is checked only at the
 * end: a caller must not act on what each() saw (start a guest, replace a
 * file) before this returns 0. *pages (may be NULL): the page entries. */
int ckpt_read(int dirfd, const struct ckpt_info *ci, int (*each)(void *opaque, const struct stream_record *rec),
	      void *opaque, uint64_t *pages, char *err, size_t errlen);

/* Folds the incremental image inc into the full image full it follows:
 * a full image with inc's number, id and time, holding each page's last
 * copy, replaces inc's file atomically, then full's file is removed.
 * Either way the directory keeps a restorable chain. */
int ckpt_merge(int dirfd, const struct ckpt_info *full, const struct ckpt_info *inc, char *err, size_t errlen);

#endif
