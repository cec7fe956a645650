/*
 * migrate/verify.h - memory digests for --verify: both sides hash guest
 * memory page by page at switchover and compare, so a test can prove the
 * destination's memory equals the source's.
 *
 * A chunk is STREAM_VERIFY_CHUNK consecutive pages; its digest folds the
 * digests of its pages in order. A page never touched (not backed) hashes
 * as a page of zeros, which is what it reads as. Thread: any; reads guest
 * memory, so call it while the VM is paused (or not yet running).
 */
#ifndef PMG_MIGRATE_VERIFY_H
#define PMG_MIGRATE_VERIFY_H

#include <stdint.h>
#include "hv/hv.h"

/* Digest of one 4 KiB page. */
uint64_t migrate_page_digest(const void *page);
/* Digests of count chunks starting at chunk first (the last chunk may be
 * short). Returns 0 or -errno. */
int migrate_verify_digests(struct hv_vm *vm, uint64_t first, uint32_t count, uint64_t *out);

#endif
