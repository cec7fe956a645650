/*
 * migrate/dest.c - receiving side: record dispatch on the loop, page
 * decoding in one worker per lane (so each lane's pages are applied in the
 * order sent), READY only after every page and vCPU is in place, then
 * COMMIT -> start -> RUNNING.
 *
 * A lane is one of the source's --streams: its ordered records, its decode
 * worker and the count of records received on it. A connection carries a
 * lane; when the source asked for resume (STREAM_CAP_RESUME), a lane
 * outlives its connection: a lost connection before COMMIT leaves the
 * lane, its queue and the guest memory in place, and a RESUME on the
 * session port hands the lane to a new connection, answered with the count
 * so the source resends exactly what did not arrive.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include "compress/compress.h"
#include "migrate/dest.h"
#include "migrate/prefault.h"
#include "migrate/verify.h"
#include "util/json.h"

#define DST_MAX_STREAMS 16
#define DST_QUEUE_HIGH (4u << 20) /* decoded-later bytes per connection before reading pauses */
#define DST_QUEUE_LOW (1u << 20)
#define DST_JOIN_TIMEOUT_NS (5ull * 1000000000ull) /* an extra connection must JOIN within this */
#define DST_ACK_EVERY 64                            /* records per lane between ACKs (and every tick) */
#define DST_HEARTBEAT_NS (1000000000ull)            /* an ACK at least this often: the source's liveness check */
#define DST_MAX_SPARES 24 /* record buffers kept for reuse (each about 1 to 2 MiB) */

enum dst_phase { DST_HELLO, DST_SHAPE, DST_RECEIVING, DST_APPLYING, DST_READY, DST_RUNNING, DST_FAILED };

struct dst_job {
	struct dst_job *next;
	uint32_t round; /* non-zero: a ROUND_END marker, answered once reached */
	uint32_t len;
	const uint8_t *payload;
	void *buf;  /* the reader's buffer the record came in (NULL: inl) */
	size_t cap; /* buf's size: it is recycled for the next records */
	uint8_t inl[];
};

/* A recycled record buffer, kept in its own first bytes. */
struct dst_spare {
	struct dst_spare *next;
	size_t cap;
};

struct migrate_dst;

struct dst_stream;

/* One of the source's streams: survives its connection when resuming. */
struct dst_lane {
	struct migrate_dst *d;
	unsigned idx;
	struct dst_stream *conn; /* carrying it now; NULL while its link is lost */
	pthread_t worker;
	int worker_started;
	struct dst_job *qhead, *qtail; /* under d->lock */
	size_t qbytes;
	int busy;
	uint32_t round_reached, round_answered; /* under d->lock */
	uint64_t records, acked;                /* received after the handshake; last ACKed (loop) */
	uint64_t ack_at;
};

/* A connection slot. Slot 0 is the connection the agent handed over;
 * slots 1.. hold connections to the session port: candidates until they
 * JOIN or RESUME, then the carrier of a lane. */
struct dst_stream {
	struct migrate_dst *d;
	unsigned idx;
	int joined;
	uint64_t t_accept; /* session-port connections: when accepted (a candidate until it joins) */
	struct xport_conn *x;
	struct stream_reader rd;
	struct dst_lane *lane;
	int paused;
};

struct migrate_dst {
	uv_loop_t *loop;
	struct xport_tls *tls;
	const struct migrate_dst_ops *ops;
	void *opaque;
	enum dst_phase phase;
	char name[STREAM_MAX_NAME + 1];
	struct stream_shape shape;
	uint64_t nframes;
	struct hv_vm *vm;
	struct dst_stream st[DST_MAX_STREAMS];
	struct dst_lane lanes[DST_MAX_STREAMS];
	unsigned nstreams, njoined;
	uint32_t joined_mask; /* JOIN indexes taken */
	uint64_t token;
	int resume;      /* the source asked for resume, and we answered with a session port */
	uint32_t epoch;  /* the newest RESUME attempt seen */
	uint32_t resumes;
	char peer[256];  /* the source's certificate name: a RESUME must come from it */
	uv_tcp_t join_server;
	int join_open;
	uv_timer_t idle_timer;
	uv_async_t wake;
	uv_work_t verify_work;
	int verify_busy, verify_rc;
	char verify_why[256];
	int handles_open, freeing;
	uint64_t progress_at;    /* last record, page applied or phase change */
	uint64_t last_applied;
	struct migrate_dst_limits lim;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	int stop_workers;
	int werr;
	char werr_why[256];
	atomic_uint_fast64_t applied, zero_pages;
	struct dst_spare *spares; /* record buffers back from the decoders, under lock */
	unsigned nspares;
	struct prefault *pf;      /* faults in the first pass's pages ahead of the decoders */
	uint64_t prefaulted;      /* its figure once stopped */

	uint64_t total_pages;
	int state_done;
	void *vcpu_blob[HV_MAX_VCPUS];
	uint32_t vcpu_len[HV_MAX_VCPUS];
	uint8_t *verify;  /* VERIFY records concatenated: first(8) count(4) digests */
	size_t verify_len;
	uint64_t *verify_seen; /* one bit per chunk: each may be announced once */
	uint32_t rounds;
	uint64_t round_ends; /* ROUND_END records received, over all connections */
	uint64_t t_start, t_ready;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- failure ---- */

static void dst__stop_workers(struct migrate_dst *d)
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
static int dst__lanes_idle(struct migrate_dst *d)
{
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
		if (d->lanes[i].qhead || d->lanes[i].busy)
			return 0;
	return 1;
}

/* The connection carrying lane 0 (handshake, answers), or NULL. */
static struct xport_conn *dst__x0(struct migrate_dst *d)
{
	return d->lanes[0].conn ? d->lanes[0].conn->x : NULL;
}

static void dst__fail(struct migrate_dst *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void dst__fail(struct migrate_dst *d, int err, const char *fmt, ...)
{
	char why[600];
	va_list ap;
	if (d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return;
	d->phase = DST_FAILED;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	struct xport_conn *x0 = dst__x0(d);
	if (x0 && xport_is_ready(x0)) {
		struct stream_buf b = { 0 };
		if (stream_put_error(&b, (uint32_t)(err < 0 ? -err : EPROTO), why) == 0)
			xport_write(x0, b.p, b.len);
		stream_buf_free(&b);
	}
	dst__stop_workers(d);
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
		if (d->st[i].x)
			xport_close(d->st[i].x, 0, why); /* graceful: the ERROR goes out first */
	uv_timer_stop(&d->idle_timer);
	d->ops->failed(d->opaque, why);
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

static void *dst__worker(void *arg)
{
	struct dst_lane *s = arg;
	struct migrate_dst *d = s->d;
	char name[16];
	snprintf(name, sizeof(name), "decode%u", s->idx);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		pthread_mutex_lock(&d->lock);
		s->busy = 0;
		pthread_cond_broadcast(&d->cond); /* migrate_dst_feed may wait for this */
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
			pthread_mutex_unlock(&d->lock);
			free(j);
			uv_async_send(&d->wake);
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
		pthread_mutex_unlock(&d->lock);
		free(j->buf);
		free(j);
		uv_async_send(&d->wake);
	}
}

/* ---- completion ---- */

static void dst__send0(struct migrate_dst *d, enum stream_type t)
{
	struct stream_buf b = { 0 };
	struct xport_conn *x0 = dst__x0(d);
	if (x0 && stream_put_empty(&b, t) == 0)
		xport_write(x0, b.p, b.len);
	stream_buf_free(&b);
}

static void dst__verify_work(uv_work_t *w)
{
	struct migrate_dst *d = w->data;
	size_t off = 0;
	uint64_t bad = 0, first_bad = 0;
	d->verify_rc = 0;
	while (off < d->verify_len) {
		uint64_t first;
		uint32_t count;
		memcpy(&first, d->verify + off, 8);
		memcpy(&count, d->verify + off + 8, 4);
		off += 12;
		uint64_t *mine = malloc(8ull * count);
		if (!mine || migrate_verify_digests(d->vm, first, count, mine) < 0) {
			free(mine);
			d->verify_rc = -ENOMEM;
			snprintf(d->verify_why, sizeof(d->verify_why), "verify: cannot hash memory");
			return;
		}
		for (uint32_t i = 0; i < count; i++) {
			uint64_t theirs;
			memcpy(&theirs, d->verify + off + 8ull * i, 8);
			if (theirs != mine[i] && !bad++)
				first_bad = (first + i) * STREAM_VERIFY_CHUNK;
		}
		off += 8ull * count;
		free(mine);
	}
	if (bad) {
		d->verify_rc = -EIO;
		snprintf(d->verify_why, sizeof(d->verify_why),
			 "verify: destination memory differs from the source in %" PRIu64 " chunk(s), first at frame %" PRIu64,
			 bad, first_bad);
	}
}

static void dst__finish_ready(struct migrate_dst *d)
{
	for (unsigned i = 0; i < d->shape.vcpus; i++) {
		int e = hv_vcpu_load(d->vm, i, d->vcpu_blob[i], d->vcpu_len[i]);
		if (e < 0) {
			dst__fail(d, e, "vCPU %u state refused: %s", i, strerror(-e));
			return;
		}
	}
	d->phase = DST_READY;
	d->t_ready = d->progress_at = now_ns();
	dst__send0(d, STREAM_READY);
}

static void dst__verify_done(uv_work_t *w, int status)
{
	struct migrate_dst *d = w->data;
	d->verify_busy = 0;
	if (d->freeing) {
		uv_async_send(&d->wake); /* free was waiting for us */
		return;
	}
	if (d->phase != DST_APPLYING)
		return;
	if (status < 0 || d->verify_rc < 0) {
		dst__fail(d, -EIO, "%s", d->verify_rc < 0 ? d->verify_why : "verify cancelled");
		return;
	}
	dst__finish_ready(d);
}

/* Everything announced by STATE_DONE is applied: vCPUs, verify, READY. */
static void dst__check_complete(struct migrate_dst *d)
{
	if (d->phase != DST_APPLYING || d->verify_busy)
		return;
	pthread_mutex_lock(&d->lock);
	int idle = dst__lanes_idle(d);
	pthread_mutex_unlock(&d->lock);
	uint64_t applied = atomic_load(&d->applied);
	if (applied > d->total_pages) {
		dst__fail(d, -EPROTO, "received %" PRIu64 " pages but STATE_DONE announced %" PRIu64, applied,
			  d->total_pages);
		return;
	}
	if (!idle || applied < d->total_pages)
		return;
	for (unsigned i = 0; i < d->shape.vcpus; i++)
		if (!d->vcpu_blob[i]) {
			dst__fail(d, -EPROTO, "STATE_DONE before the state of vCPU %u", i);
			return;
		}
	if (d->verify_len) {
		d->verify_busy = 1;
		d->verify_work.data = d;
		if (uv_queue_work(d->loop, &d->verify_work, dst__verify_work, dst__verify_done) < 0) {
			d->verify_busy = 0;
			dst__fail(d, -EIO, "cannot start the memory check");
		}
		return;
	}
	dst__finish_ready(d);
}

static void dst__wake(uv_async_t *a)
{
	struct migrate_dst *d = a->data;
	if (d->freeing)
		return;
	pthread_mutex_lock(&d->lock);
	int werr = d->werr;
	char why[256];
	snprintf(why, sizeof(why), "%s", d->werr_why);
	pthread_mutex_unlock(&d->lock);
	if (werr) {
		dst__fail(d, werr, "%s", why);
		return;
	}
	/* A round is reached once every connection's ROUND_END of it is: each
	 * carries its own share of the round's pages. */
	pthread_mutex_lock(&d->lock);
	uint32_t reached = d->lanes[0].round_reached;
	for (unsigned i = 1; i < d->nstreams && i < DST_MAX_STREAMS; i++)
		if (d->lanes[i].round_reached < reached)
			reached = d->lanes[i].round_reached;
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++) {
		struct dst_lane *l = &d->lanes[i];
		struct dst_stream *s = l->conn;
		pthread_mutex_lock(&d->lock);
		int resume = s && s->paused && l->qbytes < DST_QUEUE_LOW;
		int answer = i == 0 && reached != l->round_answered && s;
		if (answer)
			l->round_answered = reached;
		pthread_mutex_unlock(&d->lock);
		if (answer && d->phase == DST_RECEIVING && s->x) {
			struct stream_buf b = { 0 };
			struct stream_round_end re = { .round = reached, .pages = atomic_load(&d->applied) };
			if (stream_put_round_end(&b, &re) == 0)
				xport_write(s->x, b.p, b.len);
			stream_buf_free(&b);
		}
		if (resume && s->x) {
			s->paused = 0;
			xport_read_pause(s->x, 0);
		}
	}
	dst__check_complete(d);
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
static int dst__queue_pages(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	size_t cap = 0;
	if (!d->rounds)
		prefault_pages(d->pf, rec); /* the first pass: memory never written here */
	void *buf = stream_reader_take(&s->rd, rec, &cap);
	struct dst_job *j = malloc(sizeof(*j) + (buf ? 0 : rec->len));
	if (!j) {
		free(buf);
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

static int dst__start_worker(struct dst_lane *s)
{
	if (pthread_create(&s->worker, NULL, dst__worker, s))
		return -EAGAIN;
	s->worker_started = 1;
	return 0;
}

static void dst__join_connection(uv_stream_t *server, int status);
static const struct xport_callbacks dst_cb;


/* Extra connections come to a port of this session's own, on the address
 * the source already reached, so the agent never sees them. */
static int dst__open_join(struct migrate_dst *d, unsigned *port)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	int e = xport_sockname(d->st[0].x, &ss);
	if (e < 0)
		return e;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&ss)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&ss)->sin6_port = 0;
	uv_tcp_init(d->loop, &d->join_server);
	d->join_server.data = d;
	d->join_open = 1;
	d->handles_open++;
	if ((e = uv_tcp_bind(&d->join_server, (struct sockaddr *)&ss, 0)) < 0 ||
	    (e = uv_listen((uv_stream_t *)&d->join_server, 16, dst__join_connection)) < 0)
		return e;
	len = sizeof(ss);
	if ((e = uv_tcp_getsockname(&d->join_server, (struct sockaddr *)&ss, &len)) < 0)
		return e;
	*port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
					      : ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

/* An extra connection is only a candidate until it has finished its
 * handshake and sent a JOIN with this migration's token: a candidate that
 * fails, idles or closes costs the migration nothing. Slots 1.. hold
 * candidates and joined connections alike; when all are taken, the oldest
 * candidate makes room, so idle connections cannot keep a real one out. */
static void dst__drop_candidate(struct dst_stream *s);

static void dst__join_connection(uv_stream_t *server, int status)
{
	struct migrate_dst *d = server->data;
	unsigned slot = 0, oldest = 0;
	if (status < 0)
		return;
	for (unsigned i = 1; i < DST_MAX_STREAMS && !slot; i++) {
		if (!d->st[i].x)
			slot = i;
		else if (!d->st[i].joined && (!oldest || d->st[i].t_accept < d->st[oldest].t_accept))
			oldest = i;
	}
	if (!slot && oldest) {
		dst__drop_candidate(&d->st[oldest]);
		slot = oldest;
	}
	int open = d->phase == DST_RECEIVING ||
		   (d->resume && (d->phase == DST_APPLYING || d->phase == DST_READY));
	if (!slot || !open) {
		uv_tcp_t *t = malloc(sizeof(*t));
		if (!t)
			return;
		uv_tcp_init(d->loop, t);
		uv_accept(server, (uv_stream_t *)t);
		uv_close((uv_handle_t *)t, (uv_close_cb)free);
		return;
	}
	d->st[slot].t_accept = now_ns();
	if (xport_accept(server, d->tls, &dst_cb, &d->st[slot], &d->st[slot].x) < 0)
		d->st[slot].x = NULL;
	else
		xport_rx_offload(d->st[slot].x); /* each lane decrypts on a core of its own */
}

/* A candidate that never joined is gone: free its slot for another (not
 * from inside its own on_data: its reader is in use there). xport_free
 * closes it if needed, and no on_close follows. */
static void dst__drop_candidate(struct dst_stream *s)
{
	xport_free(s->x);
	s->x = NULL;
	s->joined = 0;
	s->paused = 0;
	stream_reader_free(&s->rd);
	stream_reader_init(&s->rd);
}

/* The lane's connection is gone (lost, or replaced by a RESUME): the lane
 * and its queue stay; the slot is freed. Not from inside the slot's own
 * on_data (its reader is in use there). */
static void dst__detach(struct dst_stream *s, int err, const char *why)
{
	if (s->lane && s->lane->conn == s)
		s->lane->conn = NULL;
	s->lane = NULL;
	if (s->x)
		xport_close(s->x, err, why);
	dst__drop_candidate(s);
}

/* A resumed source went back to pre-copy (it resumed its guest): whatever
 * STATE_DONE, vCPU state and VERIFY it sent before are void, and the
 * final round will come again - also when the link was lost in the middle
 * of that switchover, before STATE_DONE arrived. */
static void dst__rewind(struct migrate_dst *d)
{
	if (d->phase == DST_APPLYING || d->phase == DST_READY)
		d->phase = DST_RECEIVING;
	d->total_pages = 0;
	for (unsigned i = 0; i < HV_MAX_VCPUS; i++) {
		free(d->vcpu_blob[i]);
		d->vcpu_blob[i] = NULL;
		d->vcpu_len[i] = 0;
	}
	free(d->verify);
	d->verify = NULL;
	d->verify_len = 0;
	uint64_t nchunks = (d->nframes + STREAM_VERIFY_CHUNK - 1) / STREAM_VERIFY_CHUNK;
	memset(d->verify_seen, 0, (nchunks + 63) / 64 * 8);
}

static void dst__send_ack(struct dst_lane *l)
{
	struct stream_buf b = { 0 };
	struct stream_ack a = { .index = l->idx, .records = l->records };
	if (l->conn && l->conn->x && stream_put_ack(&b, &a) == 0 && xport_write(l->conn->x, b.p, b.len) == 0) {
		l->acked = l->records;
		l->ack_at = now_ns();
	}
	stream_buf_free(&b);
}

/* RESUME on a session-port connection: the same authenticated source, the
 * same migration (token), a lane that exists, an attempt not older than
 * one already seen. The lane's old connection (a half-open one the link
 * loss left behind) is closed first, so the count in the answer is final. */
static int dst__resume(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_resume r;
	if (stream_parse_resume(rec, &r) < 0 || r.count != d->nstreams || !d->resume ||
	    (d->phase != DST_RECEIVING && d->phase != DST_APPLYING && d->phase != DST_READY)) {
		xport_close(s->x, -EPROTO, "an unexpected or malformed RESUME");
		return -ECANCELED;
	}
	if (strcmp(xport_peer_name(s->x), d->peer)) {
		/* Another client of this agent's CA: not ours to resume; only
		 * that connection goes. */
		xport_close(s->x, -EACCES, "RESUME from another client certificate than the migration's");
		return -ECANCELED;
	}
	if (r.token != d->token) {
		/* The migration's own client with a wrong token: a guessing or
		 * broken source, as with JOIN. */
		dst__fail(d, -EACCES, "a connection tried to resume this migration with a wrong token");
		return -EACCES;
	}
	if (r.epoch < d->epoch) {
		xport_close(s->x, -ESTALE, "a RESUME of an older attempt");
		return -ECANCELED;
	}
	if (d->verify_busy) {
		/* The memory check reads what a rewind frees: the source retries. */
		xport_close(s->x, -EBUSY, "checking memory: resume again shortly");
		return -ECANCELED;
	}
	struct dst_lane *l = &d->lanes[r.index];
	if (!l->worker_started) { /* lane 0 has its worker since SHAPE, the others since their JOIN */
		dst__fail(d, -EPROTO, "RESUME of connection %u, which never joined", r.index);
		return -EPROTO;
	}
	d->epoch = r.epoch;
	if (l->conn && l->conn != s)
		dst__detach(l->conn, -ECONNRESET, "replaced by a resumed connection");
	s->joined = 1;
	s->lane = l;
	l->conn = s;
	if (r.index == 0) {
		/* The last round answer may have gone down with the old
		 * connection: answer the round reached again on this one (after
		 * the ACK below; the source accepts a repeat). */
		pthread_mutex_lock(&d->lock);
		l->round_answered = 0;
		pthread_mutex_unlock(&d->lock);
		uv_async_send(&d->wake);
	}
	d->resumes++;
	fprintf(stderr, "the source resumed connection %u (attempt %u): %" PRIu64 " of its records had arrived%s\n",
		l->idx, r.epoch, l->records, d->phase >= DST_APPLYING ? "; back to receiving memory" : "");
	dst__rewind(d);
	dst__send_ack(l);
	return 0;
}

static void dst__handle_closed(uv_handle_t *h);

static void dst__close_join(struct migrate_dst *d)
{
	if (d->join_open) {
		uv_close((uv_handle_t *)&d->join_server, dst__handle_closed);
		d->join_open = 0;
	}
}

static int dst__reply_hello(struct migrate_dst *d)
{
	struct stream_buf b = { 0 };
	if (!d->st[0].x)
		return 0; /* fed (migrate_dst_feed): nobody to answer, no address to join */
	int e = stream_put_hello(&b, d->resume ? STREAM_CAP_RESUME : 0, d->name);
	/* The session port: extra connections join there, and with resume a
	 * lost connection comes back there. */
	if (!e && (d->nstreams > 1 || d->resume)) {
		struct stream_join j = { .token = d->token, .index = 0, .count = (uint16_t)d->nstreams };
		unsigned port = 0;
		e = dst__open_join(d, &port);
		j.port = (uint16_t)port;
		if (!e)
			e = stream_put_join(&b, &j);
	}
	if (!e)
		e = xport_write(d->st[0].x, b.p, b.len);
	stream_buf_free(&b);
	return e;
}

/* A ROUND_END on s: a marker in its lane's queue, answered (on connection
 * 0) once every lane has reached it. -EPROTO if malformed. */
static int dst__round_end(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	struct stream_round_end re;
	if (stream_parse_round_end(rec, &re) < 0 || re.round == 0)
		return -EPROTO;
	if (re.round > d->rounds)
		d->rounds = re.round;
	d->round_ends++;
	struct dst_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	j->round = re.round;
	dst__queue_job(s, j);
	return 0;
}

static int dst__on_record(void *opaque, const struct stream_record *rec)
{
	struct dst_stream *s = opaque;
	struct migrate_dst *d = s->d;
	char why[256];
	int e;

	d->progress_at = now_ns();
	if (d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return -ECANCELED;
	if (s->idx > 0 && !s->joined) {
		struct stream_join j;
		if (rec->type == STREAM_RESUME)
			return dst__resume(s, rec);
		if (d->phase != DST_RECEIVING || rec->type != STREAM_JOIN || stream_parse_join(rec, &j) < 0 || j.index == 0 ||
		    j.count != d->nstreams || j.index >= d->nstreams) {
			/* Not speaking our protocol: drop it, the migration goes on. */
			xport_close(s->x, -EPROTO, "an extra connection did not start with a valid JOIN");
			return -ECANCELED;
		}
		if (j.token != d->token || (d->joined_mask & (1u << j.index))) {
			/* A peer that passed authentication and guesses tokens (or
			 * replays a JOIN): that one counts against the migration. */
			dst__fail(d, -EACCES, "connection %u did not join with this migration's token", s->idx);
			return -EACCES;
		}
		d->joined_mask |= 1u << j.index;
		s->joined = 1;
		s->lane = &d->lanes[j.index];
		s->lane->conn = s;
		d->njoined++;
		if ((e = dst__start_worker(s->lane)) < 0) {
			dst__fail(d, e, "cannot start a decode thread");
			return e;
		}
		if (d->njoined + 1 == d->nstreams && d->join_open && !d->resume) {
			dst__close_join(d);
			/* Every connection is here: the candidates left are strays. */
			for (unsigned i = 1; i < DST_MAX_STREAMS; i++)
				if (d->st[i].x && !d->st[i].joined)
					dst__drop_candidate(&d->st[i]);
		}
		return 0;
	}
	if (!s->lane)
		return -ECANCELED; /* a connection already replaced */
	if (rec->type == STREAM_ERROR) {
		uint32_t code;
		char text[STREAM_MAX_TEXT + 1];
		if (stream_parse_error(rec, &code, text, sizeof(text)) < 0)
			snprintf(text, sizeof(text), "(malformed ERROR record)");
		dst__fail(d, -ECONNABORTED, "the source aborted: %s", text);
		return -ECANCELED;
	}
	/* Counted as the source counts what it sent: everything after the
	 * handshake (HELLO, SHAPE and JOIN on lane 0, JOIN or RESUME on the
	 * others), so that a RESUME's answer names exactly what arrived. */
	if (d->phase >= DST_RECEIVING && ++s->lane->records - s->lane->acked >= DST_ACK_EVERY && d->resume)
		dst__send_ack(s->lane);
	if (s->lane->idx > 0) {
		/* STATE_DONE on connection 0 may overtake this connection's last
		 * pages and its last ROUND_END: they still count until READY. */
		if (rec->type == STREAM_ROUND_END && (d->phase == DST_RECEIVING || d->phase == DST_APPLYING) &&
		    (e = dst__round_end(s, rec)) != -EPROTO)
			return e;
		if (rec->type != STREAM_PAGES || (d->phase != DST_RECEIVING && d->phase != DST_APPLYING)) {
			dst__fail(d, -EPROTO, "unexpected %s record on connection %u", stream_type_name(rec->type), s->idx);
			return -EPROTO;
		}
		return dst__queue_pages(s, rec);
	}
	switch (d->phase) {
	case DST_HELLO: {
		struct stream_hello h;
		if (rec->type != STREAM_HELLO) {
			dst__fail(d, -EPROTO, "the stream does not start with HELLO (got %s)", stream_type_name(rec->type));
			return -EPROTO;
		}
		if ((e = stream_parse_hello(rec, &h)) < 0) {
			dst__fail(d, e,
				  e == -EINVAL		 ? "HELLO carries an invalid VM name (1-64 of [A-Za-z0-9._-])"
				  : e == -EPROTONOSUPPORT ? "HELLO announces an unsupported stream version"
							 : "malformed HELLO record (magic or lengths)");
			return e;
		}
		if (!h.name[0]) {
			dst__fail(d, -EINVAL, "HELLO carries no VM name");
			return -EINVAL;
		}
		snprintf(d->name, sizeof(d->name), "%s", h.name);
		d->resume = !!(h.caps & STREAM_CAP_RESUME);
		snprintf(d->peer, sizeof(d->peer), "%s", s->x ? xport_peer_name(s->x) : "");
		if ((e = d->ops->claim(d->opaque, d->name, why, sizeof(why))) < 0) {
			dst__fail(d, e, "%s", why);
			return e;
		}
		d->phase = DST_SHAPE;
		return 0;
	}
	case DST_SHAPE:
		if (rec->type == STREAM_SHAPE && !d->vm) {
			if ((e = stream_parse_shape(rec, &d->shape)) < 0) {
				dst__fail(d, e, "invalid SHAPE (memory size, vCPUs or page size outside the limits)");
				return e;
			}
			d->nframes = d->shape.mem_bytes >> HV_PAGE_SHIFT;
			uint64_t nchunks = (d->nframes + STREAM_VERIFY_CHUNK - 1) / STREAM_VERIFY_CHUNK;
			if (!(d->verify_seen = calloc((nchunks + 63) / 64, 8))) {
				dst__fail(d, -ENOMEM, "out of memory");
				return -ENOMEM;
			}
			if ((e = d->ops->create_vm(d->opaque, &d->shape, &d->vm, why, sizeof(why))) < 0) {
				dst__fail(d, e, "%s", why);
				return e;
			}
			if ((e = dst__start_worker(&d->lanes[0])) < 0) {
				dst__fail(d, e, "cannot start a decode thread");
				return e;
			}
			/* KVM guest memory is this process's own, faulted in on
			 * first write; Xen's is the hypervisor's, populated with
			 * the domain and only mapped here: nothing to prefault. */
			if (!strcmp(hv_vm_backend(d->vm), "kvm") && prefault_start(d->vm, d->nframes, &d->pf) < 0)
				d->pf = NULL; /* the decoders fault pages in themselves */
			return 0; /* a JOIN may follow, else the first PAGES */
		}
		if (rec->type == STREAM_JOIN && d->vm) {
			struct stream_join j;
			if (stream_parse_join(rec, &j) < 0 || j.index != 0 || j.count > DST_MAX_STREAMS) {
				dst__fail(d, -EPROTO, "invalid JOIN");
				return -EPROTO;
			}
			d->nstreams = j.count;
			if (getrandom(&d->token, sizeof(d->token), 0) != sizeof(d->token) || !d->token)
				d->token = now_ns() | 1;
			if ((e = dst__reply_hello(d)) < 0) {
				dst__fail(d, e, "cannot answer HELLO: %s", strerror(-e));
				return e;
			}
			d->phase = DST_RECEIVING;
			return 0;
		}
		dst__fail(d, -EPROTO, "expected %s, got %s", d->vm ? "JOIN" : "SHAPE", stream_type_name(rec->type));
		return -EPROTO;
	case DST_RECEIVING:
		switch (rec->type) {
		case STREAM_PAGES:
			return dst__queue_pages(s, rec);
		case STREAM_ROUND_END:
			if ((e = dst__round_end(s, rec)) != -EPROTO)
				return e;
			break;
		case STREAM_VCPU: {
			uint32_t idx, len;
			const uint8_t *blob;
			if (stream_parse_vcpu(rec, d->shape.vcpus, &idx, &blob, &len) < 0)
				break;
			void *copy = malloc(len);
			if (!copy)
				return -ENOMEM;
			memcpy(copy, blob, len);
			free(d->vcpu_blob[idx]);
			d->vcpu_blob[idx] = copy;
			d->vcpu_len[idx] = len;
			return 0;
		}
		case STREAM_VERIFY: {
			uint64_t first;
			uint32_t count;
			const uint8_t *dg;
			if ((e = stream_parse_verify(rec, d->nframes, &first, &count, &dg)) < 0)
				break;
			/* Each chunk once: overlaps or repeats would let a sender grow
			 * this session without bound. */
			for (uint64_t c = first; c < first + count; c++) {
				if (d->verify_seen[c >> 6] & (1ull << (c & 63))) {
					dst__fail(d, -EPROTO, "VERIFY records overlap (chunk %" PRIu64 " announced twice)", c);
					return -EPROTO;
				}
				d->verify_seen[c >> 6] |= 1ull << (c & 63);
			}
			uint8_t *v = realloc(d->verify, d->verify_len + 12 + 8ull * count);
			if (!v)
				return -ENOMEM;
			memcpy(v + d->verify_len, &first, 8);
			memcpy(v + d->verify_len + 8, &count, 4);
			memcpy(v + d->verify_len + 12, dg, 8ull * count);
			d->verify = v;
			d->verify_len += 12 + 8ull * count;
			return 0;
		}
		case STREAM_STATE_DONE:
			if (stream_parse_state_done(rec, &d->total_pages) < 0)
				break;
			if (d->njoined + 1 < d->nstreams) {
				dst__fail(d, -EPROTO, "STATE_DONE before all %u connections joined", d->nstreams);
				return -EPROTO;
			}
			d->phase = DST_APPLYING;
			d->progress_at = now_ns();
			dst__check_complete(d);
			return 0;
		default:
			break;
		}
		dst__fail(d, -EPROTO, "unexpected or malformed %s record while receiving memory",
			  stream_type_name(rec->type));
		return -EPROTO;
	case DST_APPLYING:
		dst__fail(d, -EPROTO, "%s record after STATE_DONE", stream_type_name(rec->type));
		return -EPROTO;
	case DST_READY:
		if (rec->type != STREAM_COMMIT || stream_parse_empty(rec) < 0) {
			dst__fail(d, -EPROTO, "expected COMMIT, got %s", stream_type_name(rec->type));
			return -EPROTO;
		}
		dst__stop_workers(d);
		/* Xen: the domain leaves its temporary name (the source's
		 * domain stepped aside before COMMIT). Only the name is at
		 * stake, so a clash is not a reason to fail. */
		const char *hvname = hv_vm_config(d->vm)->name;
		if (hvname[0] && hv_vm_rename(d->vm, hvname) < 0)
			fprintf(stderr, "could not rename the domain to '%s' (taken?): it keeps its temporary name\n", hvname);
		if ((e = hv_vm_start(d->vm)) < 0) {
			/* COMMIT taken: the source will not resume. Say so. */
			dst__fail(d, e, "starting the guest after COMMIT failed: %s", strerror(-e));
			return e;
		}
		d->phase = DST_RUNNING;
		dst__send0(d, STREAM_RUNNING);
		uv_timer_stop(&d->idle_timer);
		dst__close_join(d); /* nothing may join or resume a committed migration */
		for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
			if (d->st[i].x)
				xport_close(d->st[i].x, 0, "migration complete");
		struct json j;
		json_begin_str(&j);
		json_u64(&j, "pages", atomic_load(&d->applied));
		json_u64(&j, "zero_pages", atomic_load(&d->zero_pages));
		json_u64(&j, "rounds", d->rounds);
		json_u64(&j, "streams", d->nstreams);
		json_u64(&j, "round_ends", d->round_ends);
		json_u64(&j, "prefaulted_mib", (d->pf ? prefault_bytes(d->pf) : d->prefaulted) >> 20);
		json_f64(&j, "receive_ms", (double)(d->t_ready - d->t_start) / 1e6);
		json_f64(&j, "commit_wait_ms", (double)(now_ns() - d->t_ready) / 1e6);
		json_bool(&j, "verified", d->verify_len != 0);
		json_u64(&j, "resumes", d->resumes);
		char *stats = json_end_str(&j);
		d->ops->running(d->opaque, stats ? stats : "{}");
		free(stats);
		return -ECANCELED; /* nothing may follow COMMIT */
	default:
		break;
	}
	return -EPROTO;
}

static int dst__on_data(struct xport_conn *x, const uint8_t *p, size_t n, void *opaque)
{
	struct dst_stream *s = opaque;
	struct migrate_dst *d = s->d;
	(void)x;
	int e = stream_reader_feed(&s->rd, p, n, dst__on_record, s);
	if (e && s->idx > 0 && !s->joined)
		return e == -ECANCELED ? 0 : e; /* a candidate's garbage: it alone is closed */
	if (e && e != -ECANCELED && d->phase != DST_FAILED && d->phase != DST_RUNNING)
		dst__fail(d, e, "connection %u: not a valid pml-migrate stream (%s)", s->idx,
			  e == -E2BIG ? "record longer than its type allows" : "unknown record type or bad header");
	return e == -ECANCELED ? 0 : e;
}

static void dst__on_close(struct xport_conn *x, int err, const char *why, void *opaque)
{
	struct dst_stream *s = opaque;
	struct migrate_dst *d = s->d;
	(void)x;
	if (s->idx > 0 && !s->joined && !d->freeing) {
		dst__drop_candidate(s);
		return;
	}
	if (d->freeing || d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return;
	if (d->resume && s->lane && d->phase >= DST_RECEIVING) {
		/* The source may come back (RESUME on the session port) until
		 * the idle deadline; its lane, queue and memory wait here. */
		fprintf(stderr, "connection %u (lane %u) from the source lost: %s; waiting up to %u s for it to resume\n",
			s->idx, s->lane->idx, why, d->lim.idle_ms / 1000);
		dst__detach(s, err, why);
		return;
	}
	dst__fail(d, err ? err : -ECONNRESET, "connection %u from the source lost before COMMIT: %s", s->idx, why);
}

static const struct xport_callbacks dst_cb = {
	.on_data = dst__on_data,
	.on_close = dst__on_close,
};

/* Every phase before COMMIT has a deadline, so a source that stalls,
 * lies (announces pages it never sends) or vanishes without a FIN (power
 * loss, partition: TCP keepalive notices that too) never pins this
 * session and its memory. */
static void dst__deadlines(uv_timer_t *t)
{
	struct migrate_dst *d = t->data;
	uint64_t now = now_ns(), ms = 1000000ull;
	uint64_t applied = atomic_load(&d->applied);
	if (applied != d->last_applied) {
		d->last_applied = applied;
		d->progress_at = now;
	}
	for (unsigned i = 1; i < DST_MAX_STREAMS; i++)
		if (d->st[i].x && !d->st[i].joined && now - d->st[i].t_accept > DST_JOIN_TIMEOUT_NS)
			dst__drop_candidate(&d->st[i]);
	/* ACKs: what arrived since the last one, and a heartbeat the source
	 * uses to notice a link that went silent. */
	if (d->resume && d->phase >= DST_RECEIVING && d->phase <= DST_READY)
		for (unsigned i = 0; i < d->nstreams; i++) {
			struct dst_lane *l = &d->lanes[i];
			if (l->conn && (l->records != l->acked || now - l->ack_at >= DST_HEARTBEAT_NS))
				dst__send_ack(l);
		}
	switch (d->phase) {
	case DST_HELLO:
		if (now - d->t_start > d->lim.handshake_ms * ms)
			dst__fail(d, -ETIMEDOUT, "no authenticated HELLO within %u ms of connecting",
				  d->lim.handshake_ms);
		break;
	case DST_SHAPE:
	case DST_RECEIVING:
		if (now - d->progress_at > d->lim.idle_ms * ms)
			dst__fail(d, -ETIMEDOUT, "nothing received from the source for %u s", d->lim.idle_ms / 1000);
		break;
	case DST_APPLYING:
		if (now - d->progress_at > d->lim.idle_ms * ms)
			dst__fail(d, -ETIMEDOUT,
				  "STATE_DONE announced %" PRIu64 " pages but only %" PRIu64 " arrived; none for %u s",
				  d->total_pages, applied, d->lim.idle_ms / 1000);
		break;
	case DST_READY:
		if (now - d->t_ready > d->lim.idle_ms * ms)
			dst__fail(d, -ETIMEDOUT, "no COMMIT within %u s of READY", d->lim.idle_ms / 1000);
		break;
	default:
		break;
	}
}

/* ---- lifetime ---- */

static void dst__handle_closed(uv_handle_t *h)
{
	struct migrate_dst *d = h->data;
	if (--d->handles_open)
		return;
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++) {
		xport_free(d->st[i].x);
		stream_reader_free(&d->st[i].rd);
		struct dst_job *j = d->lanes[i].qhead;
		while (j) {
			struct dst_job *n = j->next;
			free(j->buf);
			free(j);
			j = n;
		}
	}
	while (d->spares) {
		struct dst_spare *n = d->spares->next;
		free(d->spares);
		d->spares = n;
	}
	for (unsigned i = 0; i < HV_MAX_VCPUS; i++)
		free(d->vcpu_blob[i]);
	free(d->verify);
	free(d->verify_seen);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
}

static void dst__free_now(struct migrate_dst *d)
{
	dst__stop_workers(d);
	uv_close((uv_handle_t *)&d->idle_timer, dst__handle_closed);
	uv_close((uv_handle_t *)&d->wake, dst__handle_closed);
	dst__close_join(d);
}

static void dst__free_later(uv_async_t *a)
{
	struct migrate_dst *d = a->data;
	if (!d->verify_busy)
		dst__free_now(d);
}

void migrate_dst_free(struct migrate_dst *d)
{
	if (!d || d->freeing)
		return;
	d->freeing = 1;
	/* Callbacks of the connections may still be on the stack: finish on
	 * the next loop turn (and after a running verify). */
	d->wake.async_cb = dst__free_later;
	uv_async_send(&d->wake);
}

static struct migrate_dst *dst__new(uv_loop_t *loop, struct xport_tls *tls, const struct migrate_dst_limits *lim,
				   const struct migrate_dst_ops *ops, void *opaque)
{
	struct migrate_dst *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->loop = loop;
	d->tls = tls;
	d->ops = ops;
	d->opaque = opaque;
	d->nstreams = 1;
	d->t_start = d->progress_at = now_ns();
	migrate_dst_limits_default(&d->lim);
	if (lim)
		d->lim = *lim;
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++) {
		d->st[i].d = d;
		d->st[i].idx = i;
		stream_reader_init(&d->st[i].rd);
		d->lanes[i].d = d;
		d->lanes[i].idx = i;
	}
	d->st[0].lane = &d->lanes[0];
	d->lanes[0].conn = &d->st[0];
	uv_timer_init(loop, &d->idle_timer);
	uv_async_init(loop, &d->wake, dst__wake);
	d->idle_timer.data = d->wake.data = d;
	d->handles_open = 2;
	return d;
}

int migrate_dst_start_feed(uv_loop_t *loop, const struct migrate_dst_limits *lim, const struct migrate_dst_ops *ops,
			   void *opaque, struct migrate_dst **out)
{
	struct migrate_dst *d = dst__new(loop, NULL, lim, ops, opaque);
	if (!d)
		return -ENOMEM;
	uv_timer_start(&d->idle_timer, dst__deadlines, 200, 200);
	*out = d;
	return 0;
}

int migrate_dst_feed(struct migrate_dst *d, const void *p, size_t n)
{
	if (d->freeing || d->st[0].x || d->phase == DST_FAILED || d->phase == DST_RUNNING)
		return -ECANCELED;
	dst__on_data(NULL, p, n, &d->st[0]);
	/* Applied before returning, so a caller sees the outcome of what it fed
	 * on the next loop turns (READY, a decode error) without timing. */
	pthread_mutex_lock(&d->lock);
	while (!dst__lanes_idle(d) && !d->stop_workers)
		pthread_cond_wait(&d->cond, &d->lock);
	pthread_mutex_unlock(&d->lock);
	return d->phase == DST_FAILED || d->phase == DST_RUNNING ? -ECANCELED : 0;
}

int migrate_dst_start(uv_loop_t *loop, struct xport_tls *tls, int fd, const struct migrate_dst_limits *lim,
		      const struct migrate_dst_ops *ops, void *opaque, struct migrate_dst **out)
{
	struct migrate_dst *d = dst__new(loop, tls, lim, ops, opaque);
	if (!d)
		return -ENOMEM;
	int e = xport_accept_fd(loop, tls, fd, &dst_cb, &d->st[0], &d->st[0].x);
	if (e < 0) {
		d->st[0].x = NULL;
		migrate_dst_free(d);
		return e;
	}
	xport_rx_offload(d->st[0].x); /* before its handshake: it has not read yet */
	uv_timer_start(&d->idle_timer, dst__deadlines, 200, 200);
	*out = d;
	return 0;
}

void migrate_dst_limits_default(struct migrate_dst_limits *lim)
{
	lim->handshake_ms = 10000;
	lim->idle_ms = 60000;
}
