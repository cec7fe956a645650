/*
 * migrate/dest-lanes.c - the destination's page pipeline: one decode
 * worker per lane (so each lane's pages are applied in the order sent),
 * fed by the loop through the lane's queue; the reader's record buffers
 * travel to the worker and come back as spares, so records land in memory
 * that is already faulted in.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "compress/compress.h"
#include "migrate/dest-internal.h"

/* ---- failure ---- */

void dst__stop_workers(struct migrate_dst *d)
{
	pthread_mutex_lock(&d->lock);
	d->stop_workers = 1;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
		if (d->lanes[i].worker_started) {
			pthread_join(d->lanes[i].worker, NULL);
			d->lanes[i].worker_started = 0;
		}
	d->prefaulted = prefault_bytes(d->pf);
	prefault_stop(d->pf);
	d->pf = NULL;
}

/* Under d->lock: no lane has a record queued or being decoded. */
int dst__lanes_idle(struct migrate_dst *d)
{
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
		if (d->lanes[i].qhead || d->lanes[i].busy)
			return 0;
	return 1;
}

/* ---- decode workers ---- */

static int dst__apply_page(void *opaque, uint64_t gfn, unsigned codec, const uint8_t *data, uint32_t len)
{
	struct migrate_dst *d = opaque;
	void *dst = hv_mem(d->vm, gfn << HV_PAGE_SHIFT, HV_PAGE_SIZE);
	if (!dst)
		return -ERANGE;
	if (codec == COMPRESS_ZERO) {
		/* Reading an untouched page maps the shared zero page: a zero
		 * page the guest never had here costs no memory. */
		if (!compress_is_zero(dst))
			memset(dst, 0, HV_PAGE_SIZE);
		atomic_fetch_add(&d->zero_pages, 1);
	} else if (compress_page_decode(codec, data, len, dst) < 0) {
		return -EBADMSG;
	}
	atomic_fetch_add(&d->applied, 1);
	return 0;
}

/* Called under d->lock, which it releases: the job s was busy with is
 * finished. busy drops before the loop is woken, never after: the loop's
 * wake-up asks dst__lanes_idle() whether everything announced is applied,
 * and a lane still marked busy then, with no wake-up to follow, left
 * READY unsent for good (seen under Xen's slow dom0). */
static void dst__lane_done(struct migrate_dst *d, struct dst_lane *s)
{
	s->busy = 0;
	pthread_cond_broadcast(&d->cond); /* migrate_dst_feed may wait for this */
	pthread_mutex_unlock(&d->lock);
	uv_async_send(&d->wake);
}

static void *dst__worker(void *arg)
{
	struct dst_lane *s = arg;
	struct migrate_dst *d = s->d;
	char name[16];
	snprintf(name, sizeof(name), "decode%u", s->idx);
	pthread_setname_np(pthread_self(), name);
	util_thread_background();
	for (;;) {
		pthread_mutex_lock(&d->lock);
		while (!s->qhead && !d->stop_workers)
			pthread_cond_wait(&d->cond, &d->lock);
		struct dst_job *j = d->stop_workers ? NULL : s->qhead;
		if (j) {
			s->qhead = j->next;
			if (!s->qhead)
				s->qtail = NULL;
			s->busy = 1;
		}
		pthread_mutex_unlock(&d->lock);
		if (!j)
			return NULL;
		if (j->round) {
			/* Everything sent before this ROUND_END on this connection
			 * is in guest memory now: tell the source (from the loop). */
			pthread_mutex_lock(&d->lock);
			s->round_reached = j->round;
			dst__lane_done(d, s);
			free(j);
			continue;
		}
		struct stream_record rec = { .type = STREAM_PAGES, .len = j->len, .payload = j->payload };
		int e = stream_parse_pages(&rec, d->nframes, dst__apply_page, d);
		pthread_mutex_lock(&d->lock);
		if (j->buf && d->nspares < DST_MAX_SPARES) {
			/* Its memory is resident and mapped: the next record
			 * goes into it instead of into fresh pages the kernel
			 * must fault in and clear. */
			struct dst_spare *sp = j->buf;
			sp->cap = j->cap;
			sp->next = d->spares;
			d->spares = sp;
			d->nspares++;
			j->buf = NULL;
		}
		s->qbytes -= j->len;
		if (e && !d->werr) {
			d->werr = e;
			snprintf(d->werr_why, sizeof(d->werr_why), "%s",
				 e == -ERANGE	  ? "a PAGES record names a frame outside the guest's memory"
				 : e == -EBADMSG ? "a page failed to decode (bad LZ4 data or wrong decoded size)"
						 : "a malformed PAGES record (count, codec, lengths or reserved bytes)");
		}
		dst__lane_done(d, s);
		free(j->buf);
		free(j);
	}
}

int dst__start_worker(struct dst_lane *s)
{
	if (pthread_create(&s->worker, NULL, dst__worker, s))
		return -EAGAIN;
	s->worker_started = 1;
	return 0;
}

/* ---- records ---- */

/* Hands j to the connection's decode worker, in order; pauses reading
 * while too much waits undecoded. */
static void dst__queue_job(struct dst_stream *s, struct dst_job *j)
{
	struct migrate_dst *d = s->d;
	struct dst_lane *l = s->lane;
	j->next = NULL;
	pthread_mutex_lock(&d->lock);
	if (l->qtail)
		l->qtail->next = j;
	else
		l->qhead = j;
	l->qtail = j;
	l->qbytes += j->len;
	l->busy = 1;
	int pause = l->qbytes > DST_QUEUE_HIGH;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	if (pause && !s->paused && s->x) {
		s->paused = 1;
		xport_read_pause(s->x, 1);
	}
}

/* A PAGES record goes to the decoder in the buffer the reader assembled
 * it in (no copy); the reader gets a recycled buffer for the next. */
int dst__queue_pages(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	size_t cap = 0;
	if (!d->rounds)
		prefault_pages(d->pf, rec); /* the first pass: memory never written here */
	void *buf = stream_reader_take(&s->rd, rec, &cap);
	struct dst_job *j = malloc(sizeof(*j) + (buf ? 0 : rec->len));
	if (!j) {
		free(buf);
		dst__fail(d, -ENOMEM, "out of memory for a PAGES record");
		return -ENOMEM;
	}
	j->round = 0;
	j->len = rec->len;
	j->buf = buf;
	j->cap = cap;
	if (buf) {
		j->payload = (const uint8_t *)buf + STREAM_HDR_SIZE;
		pthread_mutex_lock(&d->lock);
		struct dst_spare *sp = d->spares;
		if (sp) {
			d->spares = sp->next;
			d->nspares--;
		}
		pthread_mutex_unlock(&d->lock);
		if (sp)
			stream_reader_give(&s->rd, sp, sp->cap);
	} else {
		memcpy(j->inl, rec->payload, rec->len);
		j->payload = j->inl;
	}
	dst__queue_job(s, j);
	return 0;
}

/* A ROUND_END on s: a marker in its lane's queue, answered (on connection
 * 0) once every lane has reached it. */
int dst__round_end(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_round_end re;
	if (stream_parse_round_end(rec, &re) < 0 || re.round == 0)
		return -EBADMSG;
	if (re.round > d->rounds)
		d->rounds = re.round;
	d->round_ends++;
	struct dst_job *j = calloc(1, sizeof(*j));
	if (!j) {
		dst__fail(d, -ENOMEM, "out of memory for a ROUND_END");
		return -ENOMEM;
	}
	j->round = re.round;
	dst__queue_job(s, j);
	return 0;
}

void dst__lanes_free(struct migrate_dst *d)
{
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++) {
		struct dst_job *j = d->lanes[i].qhead;
		while (j) {
			struct dst_job *n = j->next;
			free(j->buf);
			free(j);
			j = n;
		}
		d->lanes[i].qhead = d->lanes[i].qtail = NULL;
	}
	while (d->spares) {
		struct dst_spare *n = d->spares->next;
		free(d->spares);
		d->spares = n;
	}
	d->nspares = 0;
}
