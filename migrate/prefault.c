/*
 * migrate/prefault.c - see prefault.h. A bounded ring of page runs under
 * one lock; the thread sleeps on a condition variable when it is empty.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include "compress/compress.h"
#include "migrate/prefault.h"
#include "util/util.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define PREFAULT_RING 1024 /* runs waiting: about 1 GiB of first-pass records */

struct prefault_run {
	uint64_t gfn, n;
};

struct prefault {
	struct hv_vm *vm;
	uint64_t nframes;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct prefault_run ring[PREFAULT_RING];
	unsigned head, count; /* under lock */
	int stop;             /* under lock */
	atomic_int refused;   /* the memory cannot be populated: stop trying */
	atomic_uint_fast64_t bytes;
	/* prefault_pages' run being built (its caller's thread) */
	struct prefault_run cur;
};

static void prefault__do(struct prefault *p, struct prefault_run r)
{
	void *a = hv_mem(p->vm, r.gfn << HV_PAGE_SHIFT, r.n << HV_PAGE_SHIFT);
	if (!a)
		return;
	if (madvise(a, r.n << HV_PAGE_SHIFT, MADV_POPULATE_WRITE) == 0) {
		atomic_fetch_add(&p->bytes, r.n << HV_PAGE_SHIFT);
		return;
	}
	/* EINVAL: an older kernel or a mapping of another domain's memory
	 * (Xen); EFAULT/EPERM: not ordinary memory. Nothing is lost: the
	 * decoders fault pages in as before. ENOMEM (out of memory) is the
	 * decoder's to report when it writes. */
	if (errno != EINTR && errno != EAGAIN && errno != ENOMEM)
		atomic_store(&p->refused, 1);
}

static void *prefault__thread(void *arg)
{
	struct prefault *p = arg;
	pthread_setname_np(pthread_self(), "prefault");
	util_thread_background();
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->count && !p->stop)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->stop)
			break;
		struct prefault_run r = p->ring[p->head];
		p->head = (p->head + 1) % PREFAULT_RING;
		p->count--;
		pthread_mutex_unlock(&p->lock);
		if (!atomic_load(&p->refused))
			prefault__do(p, r);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

int prefault_start(struct hv_vm *vm, uint64_t nframes, struct prefault **out)
{
	struct prefault *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->vm = vm;
	p->nframes = nframes;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if (pthread_create(&p->thread, NULL, prefault__thread, p)) {
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p);
		return -EAGAIN;
	}
	*out = p;
	return 0;
}

static void prefault__push(struct prefault *p)
{
	if (!p->cur.n)
		return;
	pthread_mutex_lock(&p->lock);
	if (p->count < PREFAULT_RING) {
		p->ring[(p->head + p->count) % PREFAULT_RING] = p->cur;
		p->count++;
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	p->cur.n = 0;
}

static int prefault__page(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	struct prefault *p = opaque;
	(void)data, (void)len;
	if (codec == COMPRESS_ZERO)
		return 0; /* never written at the destination unless it is there already */
	if (p->cur.n && gfn == p->cur.gfn + p->cur.n) {
		p->cur.n++;
		return 0;
	}
	prefault__push(p);
	p->cur.gfn = gfn;
	p->cur.n = 1;
	return 0;
}

void prefault_pages(struct prefault *p, const struct stream_record *rec)
{
	if (!p || atomic_load(&p->refused))
		return;
	p->cur.n = 0;
	if (stream_parse_pages(rec, p->nframes, prefault__page, p) == 0)
		prefault__push(p);
	p->cur.n = 0;
}

void prefault_stop(struct prefault *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

uint64_t prefault_bytes(const struct prefault *p)
{
	return p ? atomic_load(&((struct prefault *)p)->bytes) : 0;
}
