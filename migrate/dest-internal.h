/*
 * migrate/dest-internal.h - what the receiving side's files share: its
 * state, its phases and the functions one file calls in another. Not an
 * API: only migrate/dest*.c include it.
 *
 *   dest.c         the session: the records each phase accepts (one
 *                  table), the handshake's records, failure, deadlines,
 *                  lifetime
 *   dest-lanes.c   one decode worker per lane, its ordered queue of
 *                  records, recycled record buffers
 *   dest-conn.c    the connections: the session port, candidates, JOIN,
 *                  RESUME after a lost link, ACKs, the transport callbacks
 *   dest-commit.c  the end of the migration: STATE_DONE, everything
 *                  applied, the memory check, READY, COMMIT, RUNNING
 *
 * Threads: everything runs on the loop thread except the decode workers
 * (dest-lanes.c), the memory check (a libuv work thread) and the
 * prefaulter; what they share is under d->lock or atomic, as marked.
 */
#ifndef PMG_MIGRATE_DEST_INTERNAL_H
#define PMG_MIGRATE_DEST_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>
#include "migrate/dest.h"
#include "migrate/prefault.h"
#include "migrate/stream.h"
#include "transport/xport.h"
#include "util/util.h"

#define DST_MAX_STREAMS 16
#define DST_QUEUE_HIGH (4u << 20) /* decoded-later bytes per connection before reading pauses */
#define DST_QUEUE_LOW (1u << 20)
#define DST_JOIN_TIMEOUT_NS (5ull * 1000000000ull) /* an extra connection must JOIN within this */
#define DST_ACK_EVERY 64                            /* records per lane between ACKs (and every tick) */
#define DST_HEARTBEAT_NS (1000000000ull)            /* an ACK at least this often: the source's liveness check */
#define DST_MAX_SPARES 24 /* record buffers kept for reuse (each about 1 to 2 MiB) */

/* The destination's side of the handshake (docs/stream.md), in order.
 * Each phase accepts only the records of its row in dest.c's table; a
 * resumed source takes APPLYING and READY back to RECEIVING. */
/* A link probe lasts at most 60 s (migrate/query.h) plus room. */
#define DST_PROBE_MAX_NS (75ull * 1000000000ull)

enum dst_phase {
	DST_HELLO,     /* connected: awaiting HELLO (name claimed on it) */
	DST_SHAPE,     /* awaiting SHAPE (the VM is created on it) */
	DST_DOMAIN,    /* awaiting DOMAIN (a toolstack's guest: the VM is created on it) */
	DST_JOIN,      /* awaiting lane 0's JOIN (stream count): HELLO answered on it */
	DST_RECEIVING, /* memory, ROUND_END, vCPU state, VERIFY, until STATE_DONE */
	DST_APPLYING,  /* STATE_DONE in: the other lanes' last pages, decoding, the memory check */
	DST_READY,     /* READY sent: awaiting COMMIT */
	DST_RUNNING,   /* COMMIT taken, guest started, RUNNING sent: the end */
	DST_FAILED,    /* the end without a guest here */
	DST_PROBE,     /* a capacity query answered; measuring the link (PROBE records) */
	DST_RESOLVE,   /* a HELLO asking what became of a migration: awaiting its RESOLVE */
};

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
	uint64_t probe_start;           /* DST_PROBE: when it began (bounded by DST_PROBE_MAX_NS) */
	uint64_t probe_t0, probe_bytes; /* DST_PROBE: the first PROBE's arrival, bytes after it */
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
	int want_token;  /* the source asked for the token (STREAM_CAP_TOKEN): JOIN always answers */
	uint32_t epoch;  /* the newest RESUME attempt seen */
	uint32_t resumes;
	char peer[256];  /* the source's certificate name: a RESUME must come from it */
	uv_tcp_t join_server;
	int join_open;
	uv_timer_t idle_timer;
	uv_async_t wake;
	uv_work_t verify_work;
	int verify_busy, verify_rc;
	int load_in_work;  /* the vCPU state is loaded by the verify work too (a slow restore) */
	int vcpus_loaded;  /* it was */
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
	/* READY went out and then no COMMIT came in time, or lane 0's link
	 * was lost: the source may have sent COMMIT, so the VM is kept
	 * (paused) until the source, or the operator, says what it did. */
	int in_doubt;
};

/* ---- dest.c ---- */
/* Ends the migration without a guest here (once): ERROR to the source
 * when its link is up, workers stopped, connections closed, failed().
 * Loop thread. */
void dst__fail(struct migrate_dst *d, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The connection carrying lane 0 (handshake, answers), or NULL. */
struct xport_conn *dst__x0(struct migrate_dst *d);
/* A record of connection s (the stream reader's callback): 0, or -errno
 * to stop reading (-ECANCELED: nothing more is wanted). Loop thread. */
int dst__on_record(void *opaque, const struct stream_record *rec);
/* The close callback of every handle the session owns. */
void dst__handle_closed(uv_handle_t *h);

/* ---- dest-lanes.c ---- */
/* Starts lane l's decode worker. 0 or -EAGAIN. Loop thread. */
int dst__start_worker(struct dst_lane *l);
/* Stops and joins every decode worker and the prefaulter. Loop thread. */
void dst__stop_workers(struct migrate_dst *d);
/* Under d->lock: no lane has a record queued or being decoded. */
int dst__lanes_idle(struct migrate_dst *d);
/* A PAGES record of s's lane, queued for its worker in the reader's own
 * buffer. 0 or -errno (dst__fail called). Loop thread. */
int dst__queue_pages(struct dst_stream *s, const struct stream_record *rec);
/* A ROUND_END of s's lane: a marker in its queue, answered (on lane 0)
 * once every lane has reached it. 0, -EBADMSG if malformed, or -errno
 * (dst__fail called). Loop thread. */
int dst__round_end(struct dst_stream *s, const struct stream_record *rec);
/* Frees what the lanes still hold (queued records, spare buffers), once
 * the workers are stopped. */
void dst__lanes_free(struct migrate_dst *d);

/* ---- dest-conn.c ---- */
extern const struct xport_callbacks dst_cb;
/* dst_cb's on_data: bytes of connection slot opaque, read into records.
 * Also migrate_dst_feed's way in (x NULL). Loop thread. */
int dst__on_data(struct xport_conn *x, const uint8_t *p, size_t n, void *opaque);
/* Answers HELLO on lane 0, with the session port's JOIN when there are
 * extra connections or resume. 0 or -errno. Loop thread. */
int dst__reply_hello(struct migrate_dst *d);
/* The first record of an extra connection (a candidate): JOIN or RESUME.
 * 0, or -errno to stop reading it. Loop thread. */
int dst__candidate_record(struct dst_stream *s, const struct stream_record *rec);
/* Frees a candidate's slot (closing it, no on_close). Loop thread, not
 * from inside its own on_data. */
void dst__drop_candidate(struct dst_stream *s);
/* An ACK of what lane l received so far, on its connection. Loop thread. */
void dst__send_ack(struct dst_lane *l);
/* Closes the session port: nothing more may join or resume. */
void dst__close_join(struct migrate_dst *d);

/* ---- dest-commit.c ---- */
/* An empty record of type t on lane 0's connection. Loop thread. */
void dst__send0(struct migrate_dst *d, enum stream_type t);
/* RECEIVING's VCPU, VERIFY and STATE_DONE, READY's COMMIT (dest.c's table).
 * 0, -EBADMSG if malformed, or -errno (dst__fail called). Loop thread. */
int dst__take_vcpu(struct dst_stream *s, const struct stream_record *rec);
int dst__take_verify(struct dst_stream *s, const struct stream_record *rec);
int dst__take_state_done(struct dst_stream *s, const struct stream_record *rec);
int dst__take_commit(struct dst_stream *s, const struct stream_record *rec);
/* COMMIT's work, whichever way it came (the record, or a resolution):
 * starts the guest, answers RUNNING, running(). 0, or -errno once it has
 * failed the migration (the guest did not start). Phase READY only. */
int dst__commit(struct migrate_dst *d);
/* READY, and the source can no longer be heard from: keep the VM paused
 * and say so (step()), never destroy it on a timeout alone. Once. */
void dst__in_doubt(struct migrate_dst *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* In APPLYING: once everything STATE_DONE announced is applied, the
 * memory check and READY. Loop thread. */
void dst__check_complete(struct migrate_dst *d);
/* A resumed source went back to pre-copy: the end-of-migration state
 * received so far is void. Loop thread. */
void dst__rewind(struct migrate_dst *d);
#endif
