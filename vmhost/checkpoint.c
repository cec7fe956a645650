/*
 * vmhost/checkpoint.c - "checkpoint ...": one checkpoint file of the
 * running VM, pre-copied to disk (see checkpoint.h).
 *
 * The writing thread is the whole pipeline: it harvests, encodes (zero
 * detection, LZ4 with raw fallback, as on the wire) and writes, one
 * buffer of records at a time. Its measured rate is what the switchover
 * policy is given as the encoders' rate, so the pause it aims for is the
 * pause a checkpoint takes on this disk.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include "compress/compress.h"
#include "migrate/ckpt.h"
#include "migrate/source.h"
#include "precopy/dirtylog.h"
#include "precopy/policy.h"
#include "util/rundir.h"
#include "util/util.h"
#include "vmhost/checkpoint.h"

#define CK_FLUSH_BYTES (4u << 20)    /* records buffered before a write() */
#define CK_DEFAULT_DOWNTIME_MS 50    /* as send's --downtime */
#define CK_DEFAULT_PRECOPY_MS 10000  /* then pause for whatever is left */
#define CK_MAX_ROUNDS 64
#define CK_PAUSED_MAX_BYTES (64u << 20) /* what the paused part keeps in memory before writing it out */

struct vmhost_ckpt {
	struct vmhost *r;
	struct ctl_client *client;     /* the session's connection */
	struct precopy_dirtylog *dl;   /* armed from the session's first checkpoint */
	struct precopy_dirty_set set, fin;
	int dirfd;
	char dir[4096];
	int have_last;                 /* the log holds every write since checkpoint last_seq's pause */
	uint32_t last_seq;
	uint64_t last_id;
	uint64_t pages_done, busy_ns;  /* the writer's speed over the session */
	uint64_t vcpu_save_ns, vcpu_bytes;

	/* the checkpoint being written */
	pthread_t thread;
	int busy;
	int ending;                    /* its client went: finish and free once the thread is done */
	atomic_int stop;
	uv_async_t done;
	uint32_t seq;
	int incremental_ok;
	unsigned downtime_ms;
	uint64_t max_precopy_ms;
	struct stream_buf buf;
	struct ckpt_writer *w;

	/* its outcome */
	int err;
	char why[300];
	int committed;                 /* the file got its name */
	int incremental;
	uint32_t parent_seq;           /* 0: a full image */
	uint64_t id, pages, zero_pages, bytes, expected_ns;
	unsigned rounds;
	enum precopy_verdict verdict;
	uint64_t pause_ns, precopy_ns, sync_ns, total_ns;
};

static uint64_t ck__realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int ck__flush(struct vmhost_ckpt *k)
{
	return k->buf.len ? ckpt_writer_put(k->w, &k->buf) : 0;
}

/* Encodes frames gfns[0..n) into the buffer as PAGES records, writing the
 * buffer out whenever it fills. While the guest is paused it stays in
 * memory until the guest runs again, up to CK_PAUSED_MAX_BYTES (a guest
 * that outran the disk until --max-precopy): beyond that it is written
 * during the pause, which then lasts longer but holds bounded memory. */
static int ck__pages(struct vmhost_ckpt *k, const uint64_t *gfns, size_t n, int paused)
{
	uint64_t t0 = util_now_ns();
	int e = 0;
	for (size_t i = 0; i < n && !e;) {
		size_t mark, batch = n - i < STREAM_MAX_BATCH ? n - i : STREAM_MAX_BATCH;
		if (!paused && atomic_load(&k->stop))
			return -ECANCELED;
		if ((e = stream_put_pages_begin(&k->buf, &mark)) < 0)
			break;
		for (size_t b = 0; b < batch; b++, i++) {
			const void *page = hv_mem(k->r->vm, gfns[i] << HV_PAGE_SHIFT, HV_PAGE_SIZE);
			uint8_t *slot = stream_page_slot(&k->buf, COMPRESS_MAX_PAYLOAD);
			if (!page || !slot) {
				e = page ? -ENOMEM : -EFAULT;
				break;
			}
			size_t len = 0;
			enum compress_codec c = compress_page_encode(page, slot, &len, 1);
			stream_page_done(&k->buf, gfns[i], c, (uint32_t)len);
			k->zero_pages += c == COMPRESS_ZERO;
		}
		if (!e)
			e = stream_put_pages_end(&k->buf, mark);
		if (!e && k->buf.len >= (paused ? CK_PAUSED_MAX_BYTES : CK_FLUSH_BYTES))
			e = ck__flush(k);
	}
	k->pages += n;
	k->pages_done += n;
	k->busy_ns += util_now_ns() - t0;
	return e;
}

static int ck__resident_batch(void *opaque, const uint64_t *gfns, size_t n)
{
	return ck__pages(opaque, gfns, n, 0);
}

/* The first pass of a full image: every page backed on this host (the
 * rest reads as zeros, which is what a new VM holds). */
static int ck__resident(struct vmhost_ckpt *k)
{
	return hv_mem_present_each(k->r->vm, ck__resident_batch, k);
}

static int ck__fail(struct vmhost_ckpt *k, int e, const char *what)
{
	k->err = e;
	if (!k->why[0])
		snprintf(k->why, sizeof(k->why), "%s: %s", what, e == -ECANCELED ? "cancelled" : strerror(-e));
	return e;
}

/* The paused part: the last dirty set and the vCPUs, into memory. */
static int ck__switchover(struct vmhost_ckpt *k, uint64_t *paused_at)
{
	struct vmhost *r = k->r;
	int e = hv_vm_pause(r->vm);
	if (e < 0)
		return ck__fail(k, e, "pausing the guest");
	uint64_t t0 = util_now_ns();
	*paused_at = ck__realtime_ns();
	long h = precopy_dirtylog_harvest(k->dl, &k->fin);
	e = h < 0 ? (int)h : 0;
	if (!e)
		e = ck__pages(k, k->set.gfns, k->set.n, 1);
	if (!e)
		e = ck__pages(k, k->fin.gfns, k->fin.n, 1);
	uint64_t ts = util_now_ns(), vbytes = 0;
	for (unsigned i = 0; i < r->cfg.vcpus && !e; i++) {
		void *blob;
		size_t len;
		if ((e = hv_vcpu_save(r->vm, i, &blob, &len)) < 0)
			break;
		e = stream_put_vcpu(&k->buf, i, blob, (uint32_t)len);
		vbytes += len;
		free(blob);
	}
	k->vcpu_save_ns = util_now_ns() - ts;
	k->vcpu_bytes = vbytes;
	if (!e)
		e = stream_put_state_done(&k->buf, k->pages);
	hv_vm_resume(r->vm);
	k->pause_ns = util_now_ns() - t0;
	return e < 0 ? ck__fail(k, e, "the paused part") : 0;
}

static void *ck__thread(void *arg)
{
	struct vmhost_ckpt *k = arg;
	struct vmhost *r = k->r;
	uint64_t t0 = util_now_ns(), paused_at = 0;
	int e;
	pthread_setname_np(pthread_self(), "checkpoint");
	util_thread_background();

	k->incremental = k->incremental_ok && k->have_last && k->dl;
	k->parent_seq = k->incremental ? k->last_seq : 0;
	/* Whatever happens below consumes the log: until this checkpoint is
	 * on disk, the next one cannot be incremental on the last. */
	k->have_last = 0;
	if (!k->dl) {
		struct precopy_dirtylog *dl;
		if ((e = precopy_dirtylog_open(r->vm, &dl)) < 0) {
			ck__fail(k, e, "starting the dirty log");
			goto out;
		}
		/* ctl stats reads it from the loop thread. */
		__atomic_store_n(&k->dl, dl, __ATOMIC_RELEASE);
	}
	do {
		if (getrandom(&k->id, sizeof(k->id), 0) != sizeof(k->id)) {
			ck__fail(k, -EIO, "getrandom");
			goto out;
		}
	} while (!k->id);
	struct stream_checkpoint hdr = { .seq = k->seq, .id = k->id, .start_ns = ck__realtime_ns() };
	if (k->incremental) {
		hdr.parent_seq = k->parent_seq;
		hdr.parent_id = k->last_id;
	}
	if ((e = ckpt_writer_open(k->dirfd, k->seq, &k->w)) < 0) {
		ck__fail(k, e, "creating the checkpoint file");
		goto out;
	}
	struct stream_shape sh;
	migrate_src_shape(r->vm, &sh);
	e = stream_put_checkpoint(&k->buf, &hdr);
	if (!e)
		e = stream_put_hello(&k->buf, 0, r->name);
	if (!e)
		e = stream_put_shape(&k->buf, &sh);
	if (!e && !k->incremental)
		e = ck__resident(k);
	if (e) {
		ck__fail(k, e, "writing the first pass");
		goto out;
	}
	/* Rounds, judged by the migration's own switchover policy with this
	 * writer's speed as the encoders' rate (nothing is queued: a record
	 * is written as soon as it is encoded). */
	struct precopy_decision_in in = { .downtime_limit_ns = (uint64_t)k->downtime_ms * 1000000ull,
					  .deadline_ns = t0 + k->max_precopy_ms * 1000000ull };
	for (;;) {
		long h = precopy_dirtylog_harvest(k->dl, &k->set);
		if (h < 0) {
			ck__fail(k, (int)h, "harvesting the dirty log");
			goto out;
		}
		in.cost.pages = k->set.n;
		in.cost.encode_pps = k->busy_ns && k->pages_done >= 256 ? k->pages_done * 1000000000ull / k->busy_ns : 0;
		in.cost.vcpu_save_ns = k->vcpu_save_ns;
		in.cost.vcpu_bytes = k->vcpu_bytes;
		in.now_ns = util_now_ns();
		k->verdict = precopy_decide(&in, &k->expected_ns);
		if (k->verdict == PRECOPY_SWITCHOVER || k->verdict == PRECOPY_SWITCHOVER_FORCED ||
		    k->verdict == PRECOPY_TIMEOUT)
			break;
		if (k->rounds >= CK_MAX_ROUNDS) {
			k->verdict = PRECOPY_TIMEOUT;
			break;
		}
		if ((e = ck__pages(k, k->set.gfns, k->set.n, 0)) < 0) {
			ck__fail(k, e, "writing a round");
			goto out;
		}
		k->rounds++;
		in.drained = k->verdict == PRECOPY_DRAIN;
	}
	k->precopy_ns = util_now_ns() - t0;
	if (ck__switchover(k, &paused_at) < 0)
		goto out;
	uint64_t ts = util_now_ns();
	/* Abandoned now (its client went): the file never gets its name. */
	if (atomic_load(&k->stop) || (e = ck__flush(k)) < 0 || atomic_load(&k->stop)) {
		ck__fail(k, atomic_load(&k->stop) ? -ECANCELED : e, "writing the checkpoint file");
		goto out;
	}
	e = ckpt_writer_commit(k->w, paused_at, k->pause_ns, &k->bytes);
	k->w = NULL;
	if (e < 0) {
		ck__fail(k, e, "syncing the checkpoint file");
		goto out;
	}
	k->committed = 1;
	k->sync_ns = util_now_ns() - ts;
	k->have_last = 1;
	k->last_seq = k->seq;
	k->last_id = k->id;
out:
	ckpt_writer_abort(k->w);
	k->w = NULL;
	k->buf.len = 0;
	k->total_ns = util_now_ns() - t0;
	uv_async_send(&k->done);
	return NULL;
}

static char *ck__answer(struct vmhost_ckpt *k)
{
	struct json j;
	char file[24], id[24];
	json_begin_str(&j);
	if (k->err) {
		json_bool(&j, "ok", 0);
		json_str(&j, "error", k->why);
		return json_end_str(&j);
	}
	ckpt_file_name(k->seq, file, sizeof(file));
	snprintf(id, sizeof(id), "%016" PRIx64, k->id);
	json_bool(&j, "ok", 1);
	json_str(&j, "name", k->r->name);
	json_u64(&j, "seq", k->seq);
	json_str(&j, "file", file);
	json_str(&j, "kind", k->incremental ? "incremental" : "full");
	json_str(&j, "id", id);
	if (k->incremental)
		json_u64(&j, "parent_seq", k->parent_seq);
	json_u64(&j, "pages", k->pages);
	json_u64(&j, "zero_pages", k->zero_pages);
	json_u64(&j, "bytes", k->bytes);
	json_u64(&j, "rounds", k->rounds);
	json_str(&j, "verdict", precopy_verdict_name(k->verdict));
	json_f64(&j, "expected_pause_ms", (double)k->expected_ns / 1e6);
	json_f64(&j, "pause_ms", (double)k->pause_ns / 1e6);
	json_f64(&j, "precopy_ms", (double)k->precopy_ns / 1e6);
	json_f64(&j, "sync_ms", (double)k->sync_ns / 1e6);
	json_f64(&j, "total_ms", (double)k->total_ns / 1e6);
	json_u64(&j, "pages_per_s", k->busy_ns ? k->pages_done * 1000000000ull / k->busy_ns : 0);
	return json_end_str(&j);
}

static void ck__closed(uv_handle_t *h)
{
	struct vmhost_ckpt *k = h->data;
	precopy_dirtylog_close(k->dl);
	precopy_dirty_set_free(&k->set);
	precopy_dirty_set_free(&k->fin);
	stream_buf_free(&k->buf);
	if (k->dirfd >= 0)
		close(k->dirfd);
	free(k);
}

/* Loop: the session is over. */
static void ck__free_session(struct vmhost_ckpt *k)
{
	if (k->r->ckpt == k)
		k->r->ckpt = NULL;
	uv_close((uv_handle_t *)&k->done, ck__closed);
}

/* Loop: the thread finished. Answer; the session stays, unless its
 * client went meanwhile. */
static void ck__done(uv_async_t *a)
{
	struct vmhost_ckpt *k = a->data;
	if (!k->busy)
		return;
	pthread_join(k->thread, NULL);
	k->busy = 0;
	if (k->ending) {
		ck__free_session(k);
		return;
	}
	char *ans = ck__answer(k);
	if (ans && k->client)
		vmhost_ctl_reply_line(k->client, ans);
	free(ans);
}

/* Ends the session. A checkpoint being written is stopped: with wait,
 * here (its thread joined, the answer, why, sent to a client still
 * there: or the success it reached first); without, the thread is told
 * and ck__done() frees the session when it is out, so the loop never
 * waits on a disk. Meanwhile the session stays in r->ckpt: nothing else
 * arms the log until the thread has let go of it. */
static void ck__end(struct vmhost *r, const char *why, int wait)
{
	struct vmhost_ckpt *k = r->ckpt;
	if (!k)
		return;
	atomic_store(&k->stop, 1);
	if (k->busy && !wait) {
		k->ending = 1;
		return;
	}
	if (k->busy) {
		pthread_join(k->thread, NULL);
		k->busy = 0;
		if (why && k->client) {
			if (!k->err && !k->committed) {
				ck__fail(k, -ECANCELED, why);
				snprintf(k->why, sizeof(k->why), "%s", why);
			}
			char *ans = ck__answer(k);
			if (ans)
				vmhost_ctl_reply_line(k->client, ans);
			free(ans);
		}
	}
	ck__free_session(k);
}

void vmhost_checkpoint_detach(struct vmhost *r, struct ctl_client *c)
{
	if (r->ckpt && r->ckpt->client == c) {
		r->ckpt->client = NULL;
		ck__end(r, NULL, 0);
	}
}

void vmhost_checkpoint_cancel(struct vmhost *r, const char *why) { ck__end(r, why, 1); }

void vmhost_checkpoint_start(struct vmhost *r, struct ctl_client *c, char *args, struct json *j)
{
	char err[2048] = "";
	uint64_t seq = 0, incr = 0, downtime = CK_DEFAULT_DOWNTIME_MS, precopy = CK_DEFAULT_PRECOPY_MS;
	const char *dir = NULL;
	struct vmhost_ckpt *k = r->ckpt;

	while (*args == ' ')
		args++;
	while (*args && !dir) {
		char *sp = strchr(args, ' '), *eq = strchr(args, '=');
		if (!eq || (sp && eq > sp)) {
			snprintf(err, sizeof(err), "checkpoint: '%.40s' is not key=value", args);
			goto refuse;
		}
		if (!strncmp(args, "dir=", 4)) {
			dir = args + 4; /* the rest of the line */
			break;
		}
		if (sp)
			*sp = 0;
		*eq = 0;
		uint64_t *v = !strcmp(args, "seq") ? &seq : !strcmp(args, "incremental") ? &incr
			      : !strcmp(args, "downtime") ? &downtime : !strcmp(args, "max-precopy") ? &precopy : NULL;
		char *end;
		if (!v || !eq[1] || (*v = strtoull(eq + 1, &end, 10), *end)) {
			snprintf(err, sizeof(err), "checkpoint: bad %s=%s", args, eq + 1);
			goto refuse;
		}
		args = sp ? sp + 1 : eq + 1 + strlen(eq + 1);
		while (*args == ' ')
			args++;
	}
	if (!dir || dir[0] != '/') {
		snprintf(err, sizeof(err), "checkpoint: dir=ABSOLUTE-PATH is required, last");
		goto refuse;
	}
	if (!seq || seq > CKPT_MAX_SEQ || incr > 1 || !downtime || downtime > 60000 || !precopy ||
	    precopy > 86400000ull) {
		snprintf(err, sizeof(err), "checkpoint: seq 1..%u, incremental 0|1, downtime 1..60000 ms and "
					   "max-precopy 1..86400000 ms", CKPT_MAX_SEQ);
		goto refuse;
	}
	if (k && k->ending) {
		snprintf(err, sizeof(err), "an abandoned checkpoint of '%s' is still stopping: try again in a moment", r->name);
		goto refuse;
	}
	if (k && k->client != c) {
		snprintf(err, sizeof(err), "another client is checkpointing '%s'", r->name);
		goto refuse;
	}
	if (k && k->busy) {
		snprintf(err, sizeof(err), "a checkpoint of '%s' is being written", r->name);
		goto refuse;
	}
	if (vmhost_log_user_check(r, "cannot checkpoint it live", 0, k != NULL, err, sizeof(err)) < 0)
		goto refuse;
	if (k && strcmp(k->dir, dir)) {
		/* Another directory: another chain. */
		if (k->dirfd >= 0)
			close(k->dirfd);
		k->dirfd = -1;
		k->have_last = 0;
	}
	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k || uv_async_init(&r->loop, &k->done, ck__done) < 0) {
			free(k);
			snprintf(err, sizeof(err), "out of memory");
			goto refuse;
		}
		k->done.data = k;
		k->r = r;
		k->client = c;
		k->dirfd = -1;
		r->ckpt = k;
	}
	if (k->dirfd < 0) {
		k->dirfd = rundir_open_private(dir, 0, "checkpoint directory", err, sizeof(err));
		if (k->dirfd < 0)
			goto refuse;
		snprintf(k->dir, sizeof(k->dir), "%s", dir);
	}
	k->seq = (uint32_t)seq;
	k->incremental_ok = (int)incr;
	k->downtime_ms = (unsigned)downtime;
	k->max_precopy_ms = precopy;
	k->err = 0;
	k->committed = 0;
	k->why[0] = 0;
	k->pages = k->zero_pages = k->bytes = k->rounds = 0;
	k->pause_ns = k->precopy_ns = k->sync_ns = k->total_ns = 0;
	atomic_store(&k->stop, 0);
	if (pthread_create(&k->thread, NULL, ck__thread, k)) {
		snprintf(err, sizeof(err), "cannot start the checkpoint's thread");
		goto refuse;
	}
	k->busy = 1;
	j->f = NULL;
	return;
refuse:
	json_bool(j, "ok", 0);
	json_str(j, "error", err);
}

int vmhost_checkpoint_log_armed(struct vmhost *r)
{
	return r->ckpt && __atomic_load_n(&r->ckpt->dl, __ATOMIC_ACQUIRE) != NULL;
}
