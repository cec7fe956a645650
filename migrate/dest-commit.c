/*
 * migrate/dest-commit.c - the destination's side of the commit handshake.
 * STATE_DONE (lane 0) announces how many pages the migration holds and
 * moves RECEIVING to APPLYING; once every lane has applied them (the
 * other lanes' last records may arrive after it), the vCPU state is
 * loaded, the memory check runs when the source sent VERIFY, and READY
 * goes out; COMMIT then starts the guest and RUNNING answers it. Until
 * COMMIT, a resumed source can take all of this back (dst__rewind).
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/dest-internal.h"
#include "migrate/verify.h"
#include "util/json.h"

/* ---- completion ---- */

void dst__send0(struct migrate_dst *d, enum stream_type t)
{
	struct stream_buf b = { 0 };
	struct xport_conn *x0 = dst__x0(d);
	if (x0 && stream_put_empty(&b, t) == 0)
		xport_write(x0, b.p, b.len);
	stream_buf_free(&b);
}

int dst__take_vcpu(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	uint32_t idx, len;
	const uint8_t *blob;
	if (stream_parse_vcpu(rec, d->shape.vcpus, &idx, &blob, &len) < 0)
		return -EBADMSG;
	void *copy = malloc(len);
	if (!copy) {
		dst__fail(d, -ENOMEM, "out of memory for vCPU %u's state", idx);
		return -ENOMEM;
	}
	memcpy(copy, blob, len);
	free(d->vcpu_blob[idx]);
	d->vcpu_blob[idx] = copy;
	d->vcpu_len[idx] = len;
	return 0;
}

int dst__take_verify(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	uint64_t first;
	uint32_t count;
	const uint8_t *dg;
	if (stream_parse_verify(rec, d->nframes, &first, &count, &dg) < 0)
		return -EBADMSG;
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
	if (!v) {
		dst__fail(d, -ENOMEM, "out of memory for VERIFY digests");
		return -ENOMEM;
	}
	memcpy(v + d->verify_len, &first, 8);
	memcpy(v + d->verify_len + 8, &count, 4);
	memcpy(v + d->verify_len + 12, dg, 8ull * count);
	d->verify = v;
	d->verify_len += 12 + 8ull * count;
	return 0;
}

int dst__take_state_done(struct dst_stream *s, const struct stream_record *rec)
{
	struct migrate_dst *d = s->d;
	if (stream_parse_state_done(rec, &d->total_pages) < 0)
		return -EBADMSG;
	if (d->njoined + 1 < d->nstreams) {
		dst__fail(d, -EPROTO, "STATE_DONE before all %u connections joined", d->nstreams);
		return -EPROTO;
	}
	d->phase = DST_APPLYING;
	d->progress_at = util_now_ns();
	dst__check_complete(d);
	return 0;
}

static void dst__check_memory(struct migrate_dst *d);

/* Off the loop thread: the memory check, then (load_in_work) the vCPU
 * state, which the done callback then does not load again. */
static void dst__verify_work(uv_work_t *w)
{
	struct migrate_dst *d = w->data;
	dst__check_memory(d);
	for (unsigned i = 0; d->load_in_work && !d->verify_rc && i < d->shape.vcpus; i++) {
		int e = hv_vcpu_load(d->vm, i, d->vcpu_blob[i], d->vcpu_len[i]);
		if (e < 0) {
			d->verify_rc = e;
			snprintf(d->verify_why, sizeof(d->verify_why), "vCPU %u state refused: %s", i, strerror(-e));
		}
	}
	if (d->load_in_work && !d->verify_rc)
		d->vcpus_loaded = 1;
}

static void dst__check_memory(struct migrate_dst *d)
{
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
	for (unsigned i = 0; i < d->shape.vcpus && !d->vcpus_loaded; i++) {
		int e = hv_vcpu_load(d->vm, i, d->vcpu_blob[i], d->vcpu_len[i]);
		if (e < 0) {
			dst__fail(d, e, "vCPU %u state refused: %s", i, strerror(-e));
			return;
		}
	}
	d->phase = DST_READY;
	d->t_ready = d->progress_at = util_now_ns();
	dst__send0(d, STREAM_READY);
	if (d->ops->step)
		d->ops->step(d->opaque, MIGRATE_DST_READY, "READY sent");
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
		dst__fail(d, d->verify_rc < 0 ? d->verify_rc : -EIO, "%s", d->verify_rc < 0 ? d->verify_why : "verify cancelled");
		return;
	}
	dst__finish_ready(d);
}

/* Everything announced by STATE_DONE is applied: vCPUs, verify, READY. */
void dst__check_complete(struct migrate_dst *d)
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
	/* A toolstack's guest: loading its state ends the toolstack's
	 * restore (devices, hotplug scripts: seconds), off the loop thread
	 * so the links keep their heartbeats. */
	int slow = d->shape.hv == STREAM_HV_XEN_DOMAIN;
	if (d->verify_len || slow) {
		d->load_in_work = slow;
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

/* A resumed source went back to pre-copy (it resumed its guest): whatever
 * STATE_DONE, vCPU state and VERIFY it sent before are void, and the
 * final round will come again - also when the link was lost in the middle
 * of that switchover, before STATE_DONE arrived. */
void dst__rewind(struct migrate_dst *d)
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

/* COMMIT: the source's guest is gone for good; ours starts. */
int dst__take_commit(struct dst_stream *s, const struct stream_record *rec)
{
	if (stream_parse_empty(rec) < 0)
		return -EBADMSG;
	int e = dst__commit(s->d);
	return e < 0 ? e : -ECANCELED; /* nothing may follow COMMIT */
}

int dst__commit(struct migrate_dst *d)
{
	int e;
	if (d->phase != DST_READY)
		return -EPROTO;
	uint64_t t_commit = util_now_ns();
	if (d->ops->step)
		d->ops->step(d->opaque, MIGRATE_DST_COMMITTED, "COMMIT taken");
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
	uint64_t t_started = util_now_ns();
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
	json_u64(&j, "prefaulted_mib", d->prefaulted >> 20); /* the prefaulter stopped above */
	json_f64(&j, "receive_ms", (double)(d->t_ready - d->t_start) / 1e6);
	json_f64(&j, "commit_wait_ms", (double)(t_commit - d->t_ready) / 1e6);
	json_bool(&j, "in_doubt", d->in_doubt); /* COMMIT came by a resolution */
	json_f64(&j, "start_ms", (double)(t_started - t_commit) / 1e6); /* COMMIT in to the guest running */
	json_bool(&j, "verified", d->verify_len != 0);
	json_u64(&j, "resumes", d->resumes);
	uint64_t wire = 0;
	for (unsigned i = 0; i < DST_MAX_STREAMS; i++)
		if (d->st[i].x)
			wire += xport_wire_in(d->st[i].x);
	json_u64(&j, "wire_bytes", wire); /* what the connections open at COMMIT carried */
	char *stats = json_end_str(&j);
	d->ops->running(d->opaque, stats ? stats : "{}");
	free(stats);
	return 0;
}

void dst__in_doubt(struct migrate_dst *d, const char *fmt, ...)
{
	char why[300];
	va_list ap;
	if (d->in_doubt || d->phase != DST_READY)
		return;
	d->in_doubt = 1;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (d->ops->step)
		d->ops->step(d->opaque, MIGRATE_DST_IN_DOUBT, why);
}
