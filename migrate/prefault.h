/*
 * migrate/prefault.h - the destination faults in guest memory ahead of
 * its decoders.
 *
 * A destination writes every page it receives into memory the process
 * has never touched, and the kernel must allocate and clear each page on
 * that first write: on a nested or ballooned host this costs more than
 * everything else the destination does (bench/RESULTS.md). The prefaulter
 * is one thread that is told which pages the queued PAGES records will
 * write and populates them (MADV_POPULATE_WRITE: allocates without
 * changing content, so it is safe alongside the decoder writing the same
 * page) while the decoders are busy with earlier records: the clearing
 * then runs on another core. Zero pages are never populated; a page the
 * decoder reaches first is simply populated twice over, at no cost.
 *
 * Threads: prefault_pages() from any one thread (the loop); the rest
 * from the owner. Returns 0 or -errno.
 */
#ifndef PMG_MIGRATE_PREFAULT_H
#define PMG_MIGRATE_PREFAULT_H

#include <stdint.h>
#include "hv/hv.h"
#include "migrate/stream.h"

struct prefault;

/* Starts the thread for vm's memory of nframes pages. */
int prefault_start(struct hv_vm *vm, uint64_t nframes, struct prefault **out);
/* Queues the runs of consecutive non-zero pages of a PAGES record (rec
 * is only read during the call). A malformed record is left to the
 * decoder to refuse; when the queue is full the runs are dropped (the
 * decoder faults them in itself). */
void prefault_pages(struct prefault *p, const struct stream_record *rec);
/* Stops and joins the thread, frees p (NULL is fine). */
void prefault_stop(struct prefault *p);
/* Bytes populated so far (any thread). Memory that refuses to be
 * populated (another domain's, mapped: Xen) stops the prefaulting by
 * itself; the decoders then fault pages in as they write. */
uint64_t prefault_bytes(const struct prefault *p);

#endif
