/*
 * migrate/source-pipeline.c - the sending side's page pipeline: the
 * engine batches pages per stream (stream s carries the pages with
 * gfn % streams == s), a short job queue per stream, one encoder thread
 * per stream that encodes a batch into a PAGES record (zero detection,
 * LZ4 or raw, chosen adaptively) and hands it to its connection, and the
 * --max-bandwidth token bucket. Threads: msrc__worker is the encoder;
 * every other function here is the engine's.
 */
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "compress/adapt.h"
#include "compress/compress.h"
#include "migrate/source-internal.h"
#include "migrate/stream.h"
#include "transport/xport.h"

#define JOBQ_DEPTH 4 /* jobs of 256 pages per stream: short, so switchover never waits long */
#define UNACKED_MAX 4096       /* PAGES records per stream awaiting an ACK (~1M pages): then encoders wait */

/* LZ4 or raw for the next job: fixed by --compress on/off, measured
 * (compress/adapt.h) with auto. */
static int msrc__use_lz4(struct migrate_src *m, struct compress_adapt *a, uint64_t raw_bytes)
{
	if (m->o.compress != MIGRATE_COMPRESS_AUTO)
		return m->o.compress == MIGRATE_COMPRESS_ON;
	return compress_adapt_job(a, raw_bytes, util_now_ns());
}

static void msrc__bw_wait(struct migrate_src *m, size_t n)
{
	if (!m->o.max_bandwidth)
		return;
	pthread_mutex_lock(&m->bw_lock);
	uint64_t t = util_now_ns();
	double allowed = (double)(t - m->bw_t0) * (double)m->o.max_bandwidth / 1e9;
	/* No credit for idle time beyond 50 ms: a cap, not an average. */
	if (allowed - (double)m->bw_sent > (double)m->o.max_bandwidth * 0.05) {
		m->bw_t0 = t;
		m->bw_sent = 0;
		allowed = 0;
	}
	m->bw_sent += n;
	double over = (double)m->bw_sent - allowed;
	pthread_mutex_unlock(&m->bw_lock);
	if (over > 0)
		usleep((useconds_t)(over * 1e6 / (double)m->o.max_bandwidth));
}

static struct msrc_job *msrc__take_job(struct msrc_stream *s)
{
	struct migrate_src *m = s->m;
	pthread_mutex_lock(&m->lock);
	s->busy = 0;
	pthread_cond_broadcast(&m->cond);
	while (!s->qhead && !m->stop_workers)
		pthread_cond_wait(&m->cond, &m->lock);
	struct msrc_job *j = s->qhead;
	if (j) {
		s->qhead = j->next;
		if (!s->qhead)
			s->qtail = NULL;
		s->qlen--;
		s->busy = 1;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	return j;
}

void *msrc__worker(void *arg)
{
	struct msrc_stream *s = arg;
	struct migrate_src *m = s->m;
	struct compress_adapt a;
	compress_adapt_init(&a, util_now_ns());
	int use_lz4 = m->o.compress != MIGRATE_COMPRESS_OFF;
	uint64_t raw_bytes = 0, follow_ns = 0;
	char tname[16];
	struct msrc_job *j;

	snprintf(tname, sizeof(tname), "encode%u", s->idx);
	pthread_setname_np(pthread_self(), tname);
	util_thread_background();
	while ((j = msrc__take_job(s))) {
		struct stream_buf b = { 0 };
		uint64_t t_job = util_now_ns();
		int e = 0;
		/* Bounded memory for resends: wait for the destination's ACKs (a
		 * silent link is declared lost, which ends the wait too). */
		pthread_mutex_lock(&m->lock);
		while (s->ucount >= UNACKED_MAX && !m->failed && !m->link_down && !m->stop_workers)
			pthread_cond_wait(&m->cond, &m->lock);
		if (m->link_down) {
			/* No link: not encoded, not numbered; its pages go again
			 * once it is back (seq 0: never on the wire). */
			if (j->round_end) {
				free(j);
			} else {
				j->seq = 0;
				j->next = m->lost;
				m->lost = j;
			}
			pthread_mutex_unlock(&m->lock);
			continue;
		}
		pthread_mutex_unlock(&m->lock);
		if (j->round_end) {
			e = stream_put_round_end(&b, &j->re);
		} else {
			size_t mark;
			uint64_t zero = 0, lz4 = 0, payload = 0;
			/* Room for the worst case at once, and each page encoded
			 * straight into its place in the record. */
			e = stream_buf_reserve(&b, STREAM_HDR_SIZE + 8 +
							   (size_t)j->n * (STREAM_PAGE_ENTRY_HDR + COMPRESS_MAX_PAYLOAD));
			if (!e)
				e = stream_put_pages_begin(&b, &mark);
			for (unsigned i = 0; !e && i < j->n; i++) {
				const void *page = hv_mem(m->vm, j->gfns[i] << HV_PAGE_SHIFT, HV_PAGE_SIZE);
				uint8_t *slot = stream_page_slot(&b, COMPRESS_MAX_PAYLOAD);
				size_t len = 0;
				if (!slot) {
					e = -ENOMEM;
					break;
				}
				enum compress_codec c = compress_page_encode(page, slot, &len, use_lz4);
				zero += c == COMPRESS_ZERO;
				lz4 += c == COMPRESS_LZ4;
				payload += len;
				stream_page_done(&b, j->gfns[i], c, (uint32_t)len);
			}
			if (!e)
				e = stream_put_pages_end(&b, mark);
			atomic_fetch_add(&m->pages_sent, j->n);
			atomic_fetch_add(&m->zero_pages, zero);
			atomic_fetch_add(&m->lz4_pages, lz4);
			atomic_fetch_add(&m->page_payload, payload);
			raw_bytes += (uint64_t)(j->n - zero) * HV_PAGE_SIZE;
		}
		unsigned n = j->round_end ? 0 : j->n;
		if (e) {
			free(j);
			stream_buf_free(&b);
			msrc__fail(m, e, "encoding a record: %s", strerror(-e));
			continue;
		}
		atomic_fetch_add(&m->record_bytes, b.len);
		msrc__bw_wait(m, b.len);
		if (j->round_end) {
			free(j);
			j = NULL;
		}
		e = msrc__send(s, b.p, b.len, j);
		if (e < 0 && e != -EPIPE)
			msrc__fail(m, e, "stream %u: cannot queue pages: %s", s->idx, strerror(-e));
		atomic_fetch_add(&m->pages_done, n);
		atomic_fetch_add(&m->busy_ns, util_now_ns() - t_job);
		use_lz4 = msrc__use_lz4(m, &a, raw_bytes);
		util_thread_follow(&follow_ns); /* PML_MIGRATE_WORKER_CPUS=auto: the vCPUs move */
	}
	return NULL;
}

/* Engine: queues a job for stream s, waiting while its queue is full. */
int msrc__push_job(struct migrate_src *m, struct msrc_stream *s, struct msrc_job *j)
{
	pthread_mutex_lock(&m->lock);
	while (s->qlen >= JOBQ_DEPTH && !m->failed)
		pthread_cond_wait(&m->cond, &m->lock);
	int aborted = m->failed;
	if (!aborted) {
		msrc__jobs_append(&s->qhead, &s->qtail, j);
		s->qlen++;
		pthread_cond_broadcast(&m->cond);
	}
	pthread_mutex_unlock(&m->lock);
	if (aborted) {
		free(j);
		return -ECANCELED;
	}
	return 0;
}

static int msrc__flush_fill(struct migrate_src *m, struct msrc_stream *s)
{
	struct msrc_job *j = s->fill;
	if (!j || !j->n)
		return 0;
	s->fill = NULL;
	return msrc__push_job(m, s, j);
}

int msrc__send_page(struct migrate_src *m, uint64_t gfn)
{
	struct msrc_stream *s = &m->st[gfn % m->nstreams];
	if (!s->fill) {
		s->fill = malloc(sizeof(*s->fill));
		if (!s->fill)
			return -ENOMEM;
		memset(s->fill, 0, offsetof(struct msrc_job, gfns));
	}
	s->fill->gfns[s->fill->n++] = gfn;
	if (s->fill->n == STREAM_MAX_BATCH)
		return msrc__flush_fill(m, s);
	return 0;
}

int msrc__flush_all(struct migrate_src *m)
{
	for (unsigned i = 0; i < m->nstreams; i++) {
		int e = msrc__flush_fill(m, &m->st[i]);
		if (e)
			return e;
	}
	return 0;
}

/* Waits until every queued job has been encoded and handed to transport. */
int msrc__workers_idle(struct migrate_src *m, int closed_too)
{
	pthread_mutex_lock(&m->lock);
	for (;;) {
		int idle = 1;
		for (unsigned i = 0; i < m->nstreams; i++)
			if (m->st[i].qlen || m->st[i].busy || (closed_too && !m->st[i].closed))
				idle = 0;
		if (idle || m->failed)
			break;
		pthread_cond_wait(&m->cond, &m->lock);
	}
	int e = m->failed ? m->failed : 0;
	pthread_mutex_unlock(&m->lock);
	return e;
}

/* Everything queued so far is encoded, on the wire, and (up to the last
 * ROUND_END queued, for round) applied by the destination: a slow
 * destination must not turn its backlog into downtime. */
int msrc__drain(struct migrate_src *m, uint32_t round)
{
	int e = msrc__workers_idle(m, 0);
	for (unsigned i = 0; !e && i < m->nstreams; i++)
		e = xport_flush_wait(m->st[i].x);
	if (e)
		return e;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	pthread_mutex_lock(&m->lock);
	while (m->dest_round < round && !m->failed && !m->link_down)
		if (pthread_cond_timedwait(&m->cond, &m->lock, &ts) == ETIMEDOUT)
			break;
	e = m->failed ? m->failed : m->link_down ? -ENOTCONN : 0;
	pthread_mutex_unlock(&m->lock);
	return e;
}

