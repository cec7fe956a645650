/*
 * migrate/source-internal.h - what the sending side's files share: its
 * state and the functions one file calls in another. Not an API: only
 * migrate/source*.c include it.
 *
 *   source.c          the engine (pre-copy, switchover), encoders, the
 *                     loop side of the connections and records, lifetime
 *   source-options.c  migrate_src_opts_*: the options and their checks
 *   source-conn.c     the connections' setup and the destination's records,
 *                     each accepted only in its phase
 *   source-pipeline.c encoder threads, job queues, bandwidth cap
 *   source-link.c     resume after a lost link: record numbering and
 *                     ACKs, the engine's rejoin, the loop's reconnection
 *
 * Threads and locks are as documented on each field; every msrc__
 * function says which thread calls it.
 */
#ifndef PMG_MIGRATE_SOURCE_INTERNAL_H
#define PMG_MIGRATE_SOURCE_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <uv.h>
#include "migrate/source.h"
#include "migrate/stats.h"
#include "migrate/stream.h"
#include "precopy/pages.h"
#include "precopy/policy.h"
#include "precopy/throttle.h"
#include "transport/xport.h"
#include "util/util.h"

#define MAX_RECONNECTS 64 /* resumed links per migration */



struct msrc_job {
	struct msrc_job *next;
	uint64_t seq; /* the stream's record number, once handed to transport */
	int round_end;
	struct stream_round_end re;
	unsigned n;
	uint64_t gfns[STREAM_MAX_BATCH];
};

/* Appends j to a job list (the caller holds what guards it). */
static inline void msrc__jobs_append(struct msrc_job **head, struct msrc_job **tail, struct msrc_job *j)
{
	j->next = NULL;
	if (*tail)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

/* The source's side of the handshake (docs/stream.md): each record from
 * the destination is accepted only in its phase, so a stale, duplicated
 * or injected READY can never make us COMMIT. Under m->lock. */
enum msrc_phase {
	MSRC_HELLO,      /* HELLO, SHAPE, JOIN sent: awaiting the destination's HELLO */
	MSRC_JOIN,       /* several connections: awaiting the destination's JOIN (its port) */
	MSRC_PRECOPY,    /* memory rounds; ROUND_END answers */
	MSRC_STATE_SENT, /* STATE_DONE queued: awaiting READY */
	MSRC_READY,      /* READY received: COMMIT is next */
	MSRC_COMMITTED,  /* COMMIT queued: never resume; awaiting RUNNING */
	MSRC_RUNNING,    /* RUNNING received */
};

struct migrate_src;

struct msrc_stream {
	struct migrate_src *m;
	unsigned idx;
	struct xport_conn *x;
	struct stream_reader rd;
	int ready, closed; /* closed: under m->lock */
	int told;          /* an ERROR went out before a graceful close (loop) */
	int resumed;       /* this reconnection's RESUME was answered (loop) */
	uint64_t last_rx;  /* when the destination last sent anything here (loop) */
	/* Held while a record gets its number and is queued, so numbers
	 * follow the order on the wire. */
	pthread_mutex_t send_lock;
	/* under m->lock */
	uint64_t sent_seq, acked;
	struct msrc_job *uhead, *utail; /* PAGES records sent, not yet ACKed */
	size_t ucount;
	pthread_t worker;
	int worker_started;
	/* job queue, under m->lock */
	struct msrc_job *qhead, *qtail;
	unsigned qlen;
	int busy;
	struct msrc_job *fill; /* engine-side batch being built */
};

struct migrate_src {
	/* The loop thread's CPUs before the migration kept it off the vCPUs'
	 * (PML_MIGRATE_WORKER_CPUS; util_thread_keep_off), given back at the
	 * end; and when it last looked for them (auto). */
	cpu_set_t loop_cpus;
	uint64_t loop_follow_ns;
	uint64_t harvest_every_ns; /* engine thread: the dirty log's cadence during a round (msrc__harvest) */
	int toolstack;             /* the VM is a toolstack's own guest (hv_vm_toolstack_guest) */
	uv_loop_t *loop;
	struct hv_vm *vm;
	struct precopy_dirtylog *dl;
	char name[STREAM_MAX_NAME + 1];
	struct migrate_src_opts o;
	const struct migrate_src_ops *ops;
	void *opaque;
	struct xport_tls *tls;
	struct xport_callbacks xcb;
	char host[256];
	char peer_addr[64];      /* connection 0's peer, numeric: the session port's host */
	struct msrc_stream st[MIGRATE_MAX_STREAMS];
	unsigned nstreams, nready;
	uint64_t token;
	int token_offered; /* the destination's HELLO had STREAM_CAP_TOKEN: its JOIN brings the token */

	uv_timer_t setup_timer, deadline_timer;
	uv_async_t done_async, ev_async;
	/* resume (loop side, unless noted) */
	int resume_ok;           /* the destination offered a session port */
	unsigned session_port;
	uv_async_t link_async;
	uv_timer_t retry_timer, link_timer;
	int reconnecting;        /* an attempt (or its backoff) is under way */
	unsigned backoff_ms;
	uint32_t epoch;
	uint64_t wire_old;       /* wire bytes of connections already freed */
	/* under lock */
	int link_down, reconnect_req;
	uint64_t resumed_gen;    /* counts completed reconnections */
	struct msrc_job *lost;   /* records the destination never got: their pages go again */
	unsigned reconnects;
	uint64_t t_link_lost, link_down_ns;
	char link_why[256];
	int handles_open;
	pthread_t engine;
	int engine_started, finished;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum msrc_phase phase;
	int stop_workers;
	uint32_t dest_round; /* last ROUND_END the destination answered: all before it applied */
	uint64_t dest_applied;
	int failed; /* reason in fail_why */
	char fail_why[512];
	uint32_t round_sent; /* last ROUND_END queued: an answer beyond it is a lie */
	char *events; /* newline-separated JSON lines for the loop */
	size_t ev_len;
	enum migrate_result result;
	char *report;

	/* timing */
	uint64_t t_start, t_setup_done, t_hello_sent, rtt_ns, t_pause, t_running, t_state_sent, t_ready;
	/* When the last vCPU state was captured (its TSC among it). */
	uint64_t t_state_saved;
	uint64_t final_pages, t_paused, t_commit;
	int renamed_away; /* the hypervisor's name was set aside for COMMIT (Xen) */

	/* page bookkeeping and policy state (engine thread; precopy/) */
	uint64_t nframes;
	struct precopy_pages pages;
	uint64_t scan_cursor;      /* the first pass over every backed page */
	struct precopy_rates rates;
	struct precopy_throttle thr;
	struct precopy_stall stall; /* the downtime estimate's best and when (engine thread) */
	FILE *trace;               /* PML_MIGRATE_POLICY_TRACE: the policy's inputs and answers, CSV */

	/* statistics (atomics: workers add) */
	atomic_uint_fast64_t pages_sent, zero_pages, lz4_pages, page_payload, record_bytes, pages_done, busy_ns;
	uint64_t pages_lost;   /* sent but never received (lost links): not in STATE_DONE's count */
	uint64_t pages_resent; /* pages queued again after lost links (sent or not) */
	uint64_t expected_downtime_ns, vcpu_save_ns, vcpu_bytes;
	uint64_t harvest_ns0, harvests0;
	int forced;
	uint64_t verify_chunks;

	/* --max-bandwidth token bucket */
	pthread_mutex_t bw_lock;
	uint64_t bw_t0, bw_sent;
};

/* ---- source.c ---- */

/* Fails the migration (the first reason wins) and wakes every waiter. Any thread. */
void msrc__fail(struct migrate_src *m, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The failure code, 0 while the migration goes on. Any thread. */
int msrc__aborted(struct migrate_src *m);
/* Queues one JSON progress line for the loop to hand to ops->event. Any thread. */
void msrc__event(struct migrate_src *m, const char *json);
/* Fills s with every figure so far (see migrate/stats.h). Engine thread,
 * or the loop once the engine is gone. */
void msrc__stats(struct migrate_src *m, struct migrate_stats *s);
/* Queues s as an event of kind ev (msrc__event). */
void msrc__event_stats(struct migrate_src *m, const struct migrate_stats *s, enum migrate_event ev);

/* Loop: the connections are ready; starts the encoders and the engine. */
void msrc__start_engine(struct migrate_src *m);

/* ---- source-conn.c ---- */

/* The phase's name for messages. */
const char *msrc__phase_name(enum msrc_phase p);
/* on_ready of connection 0 (HELLO, SHAPE, JOIN) and of the others (JOIN). */
void msrc__ready0(struct xport_conn *x, void *opaque);
void msrc__join_ready(struct xport_conn *x, void *opaque);
/* HOST:PORT of the destination session's own port (join, resume). */
void msrc__session_hostport(struct migrate_src *m, char *hp, size_t len);
/* The connections' callbacks (loop). */
int msrc__on_data(struct xport_conn *x, const uint8_t *p, size_t n, void *opaque);
void msrc__on_close(struct xport_conn *x, int err, const char *why, void *opaque);

/* ---- source-pipeline.c ---- */

/* Engine: waits until every encoder is idle with nothing queued, and with
 * closed_too until every connection has ended as well, or a failure.
 * Returns 0 or the failure. */
int msrc__workers_idle(struct migrate_src *m, int closed_too);

/* Encoder thread of stream arg (struct msrc_stream *). */
void *msrc__worker(void *arg);
/* Engine: queues a job on s, waiting while its queue is full. 0, or
 * -ECANCELED (j freed) once the migration failed. */
int msrc__push_job(struct migrate_src *m, struct msrc_stream *s, struct msrc_job *j);
/* Engine: adds a page to its stream's batch; a full batch is queued. */
int msrc__send_page(struct migrate_src *m, uint64_t gfn);
/* Engine: queues every stream's partial batch. */
int msrc__flush_all(struct migrate_src *m);
/* Engine: waits until everything queued is encoded and on the wire and
 * the destination answered ROUND_END round (10 s at most). 0, the
 * failure, or -ENOTCONN when the link was lost. */
int msrc__drain(struct migrate_src *m, uint32_t round);

/* ---- source-link.c ---- */

/* Encoders and engine: numbers one encoded record and queues it on s's
 * connection (buf: ownership moves in). keep: its PAGES job, kept until
 * ACKed when resume is on, else freed. -EPIPE once the connection closed:
 * its on_close decides whether that is a failure or a lost link. */
int msrc__send(struct msrc_stream *s, void *buf, size_t len, struct msrc_job *keep);
/* Engine: after a failed send or wait, waits for the loop's verdict.
 * -ENOTCONN: the link was lost and will be resumed; else the failure. */
int msrc__verdict(struct migrate_src *m, int e);
/* Engine: after -ENOTCONN: resumes a paused guest, quiesces the encoders,
 * has the loop reconnect, and queues again the pages the destination
 * never received. 0, or the failure. */
int msrc__rejoin(struct migrate_src *m);
/* Loop: an ACK record from the destination on s (periodic, or the answer
 * to s's RESUME). 0 or -EPROTO. */
int msrc__on_ack(struct msrc_stream *s, const struct stream_record *rec);
/* Loop: a connection ended unexpectedly. Returns 1 when it was handled
 * as a lost link (or a reconnection attempt's failure), 0 when the caller
 * must fail the migration. */
int msrc__link_closed(struct msrc_stream *s, int err, const char *why);
/* Loop: the engine's reconnect request (link_async). */
void msrc__link_async(uv_async_t *a);
/* Loop: every 250 ms, a link silent for --link-timeout is closed as lost. */
void msrc__link_check(uv_timer_t *t);
/* Frees a list of jobs. */
void msrc__free_jobs(struct msrc_job *j);

#endif
