/*
 * The destination's state machine, record by record: fed into each phase
 * it can reach on its first connection (HELLO, SHAPE, JOIN, RECEIVING,
 * APPLYING, READY), every record type is either taken (the session goes
 * on; COMMIT in READY starts the guest) or refused with the phase's own
 * reason, exactly as the accept table in migrate/dest.c says; an ERROR
 * from the source ends it in every phase; and every phase before COMMIT
 * has a deadline, the handshake's included.
 *
 * Real sessions (migrate_dst_start_feed) decoding into real KVM VMs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>
#include "compress/compress.h"
#include "hv/hv.h"
#include "migrate/dest.h"
#include "migrate/stream.h"
#include "migrate/verify.h"
#include "tests/tap.h"

#define MEM (64ull << 20)

/* DOMAIN: after a SHAPE announcing a toolstack's guest (its JOIN and the
 * rest are the other phases'). */
enum phase { P_HELLO, P_SHAPE, P_DOMAIN, P_JOIN, P_RECEIVING, P_APPLYING, P_READY, NPHASES };
static const char *const phase_name[] = { "HELLO", "SHAPE", "DOMAIN", "JOIN", "RECEIVING", "APPLYING", "READY" };
/* What a refusal says in each phase (the source and the log read it). */
static const char *const refusal[] = { "does not start with HELLO", "expected SHAPE", "expected DOMAIN", "expected JOIN",
				       "while receiving memory", "after STATE_DONE", "expected COMMIT" };

static const enum stream_type types[] = { STREAM_HELLO, STREAM_SHAPE, STREAM_JOIN, STREAM_PAGES, STREAM_ROUND_END,
					  STREAM_VCPU, STREAM_VERIFY, STREAM_STATE_DONE, STREAM_READY, STREAM_COMMIT,
					  STREAM_RUNNING, STREAM_RESUME, STREAM_ACK, STREAM_DOMAIN };
#define NTYPES (sizeof(types) / sizeof(types[0]))

/* The table, as the protocol (docs/stream.md) has it for the first
 * connection: 1 where the record is taken. */
static int taken(enum phase p, enum stream_type t)
{
	switch (p) {
	case P_HELLO:
		return t == STREAM_HELLO;
	case P_SHAPE:
		return t == STREAM_SHAPE;
	case P_DOMAIN:
		return t == STREAM_DOMAIN;
	case P_JOIN:
		return t == STREAM_JOIN;
	case P_RECEIVING:
		return t == STREAM_PAGES || t == STREAM_ROUND_END || t == STREAM_VCPU || t == STREAM_VERIFY ||
		       t == STREAM_STATE_DONE;
	case P_APPLYING:
		return 0; /* only the other connections' trailing pages */
	case P_READY:
		return t == STREAM_COMMIT;
	default:
		return 0;
	}
}

static struct hv_vm *vm, *ref; /* the session's; a fresh one for VERIFY digests */
static void *blob; /* a real vCPU state: a booted guest's */
static size_t blob_len;
static int failed, running, in_doubt;
static const char domain_blob[] = "a backend's domain description";
static int domain_seen; /* create_vm got exactly the DOMAIN record's payload */
static char why[700];
/* With after set, feed() calls it once the session had its turns, before
 * freeing it (the resolutions). */
static void (*after)(struct migrate_dst *d, uv_loop_t *loop);

static int t__claim(void *o, const char *name, char *w, size_t len)
{
	(void)o, (void)name, (void)w, (void)len;
	return 0;
}
static int t__create_vm(void *o, const struct stream_shape *sh, const void *dom, size_t domlen, struct hv_vm **out,
		       char *w, size_t len)
{
	(void)o, (void)w, (void)len;
	domain_seen = sh->hv == STREAM_HV_XEN_DOMAIN && domlen == sizeof(domain_blob) && !memcmp(dom, domain_blob, domlen);
	*out = vm;
	return 0;
}
static void t__running(void *o, const char *stats)
{
	(void)o, (void)stats;
	running = 1;
}
static void t__failed(void *o, const char *w)
{
	(void)o;
	failed = 1;
	snprintf(why, sizeof(why), "%s", w);
}
static void t__step(void *o, enum migrate_dst_step st, const char *w)
{
	(void)o, (void)w;
	in_doubt |= st == MIGRATE_DST_IN_DOUBT;
}
static const struct migrate_dst_ops ops = { .claim = t__claim, .create_vm = t__create_vm, .running = t__running,
					    .failed = t__failed, .step = t__step };

/* One valid record of type t. state_done: the pages it announces. */
static int put(struct stream_buf *b, enum stream_type t, uint64_t state_done);

static int put_domain_shape(struct stream_buf *b)
{
	struct stream_shape sh = { .mem_bytes = MEM, .vcpus = 1, .dirty_log = 2, .hv = STREAM_HV_XEN_DOMAIN };
	return stream_put_shape(b, &sh);
}

static int put(struct stream_buf *b, enum stream_type t, uint64_t state_done)
{
	static uint8_t page[HV_PAGE_SIZE];
	struct stream_shape sh = { .mem_bytes = MEM, .vcpus = 1, .dirty_log = 1 };
	struct stream_join j = { .index = 0, .count = 1 };
	struct stream_round_end re = { .round = 1, .pages = 1 };
	struct stream_resume r = { .index = 0, .count = 1, .epoch = 1 };
	struct stream_ack a = { .index = 0, .records = 1 };
	uint64_t digest = 0;
	size_t mark;
	int e;
	switch (t) {
	case STREAM_HELLO:
		return stream_put_hello(b, 0, "phases");
	case STREAM_SHAPE:
		return stream_put_shape(b, &sh);
	case STREAM_JOIN:
		return stream_put_join(b, &j);
	case STREAM_PAGES:
		memset(page, 'p', sizeof(page));
		if ((e = stream_put_pages_begin(b, &mark)) || (e = stream_put_page(b, 300, COMPRESS_RAW, page, sizeof(page))))
			return e;
		return stream_put_pages_end(b, mark);
	case STREAM_ROUND_END:
		return stream_put_round_end(b, &re);
	case STREAM_VCPU:
		return stream_put_vcpu(b, 0, blob, (uint32_t)blob_len);
	case STREAM_VERIFY:
		if ((e = migrate_verify_digests(ref, 0, 1, &digest)) < 0)
			return e;
		return stream_put_verify(b, 0, 1, &digest);
	case STREAM_STATE_DONE:
		return stream_put_state_done(b, state_done);
	case STREAM_RESUME:
		return stream_put_resume(b, &r);
	case STREAM_ACK:
		return stream_put_ack(b, &a);
	case STREAM_DOMAIN:
		return stream_put_domain(b, domain_blob, sizeof(domain_blob));
	default:
		return stream_put_empty(b, t);
	}
}

/* The records that bring a fresh session to phase p. APPLYING: STATE_DONE
 * announces a page that never comes; READY: none, with the vCPU state in. */
static int prefix(struct stream_buf *b, enum phase p)
{
	int e = 0;
	if (p > P_HELLO)
		e = put(b, STREAM_HELLO, 0);
	if (!e && p == P_DOMAIN)
		e = put_domain_shape(b);
	else if (!e && p > P_SHAPE)
		e = put(b, STREAM_SHAPE, 0);
	if (!e && p > P_JOIN)
		e = put(b, STREAM_JOIN, 0);
	if (!e && p == P_APPLYING)
		e = put(b, STREAM_STATE_DONE, 1);
	if (!e && p == P_READY && !(e = put(b, STREAM_VCPU, 0)))
		e = put(b, STREAM_STATE_DONE, 0);
	return e;
}

static int new_vm(void)
{
	struct hv_vm_config cfg = { .mem_bytes = MEM, .vcpus = 1, .dirty_mode = HV_DIRTY_OFF };
	return hv_vm_create("kvm", &cfg, &vm);
}

/* Feeds prefix(p) and then rec; 0 when the session came through the prefix. */
static int feed(enum phase p, const struct stream_buf *rec, const struct migrate_dst_limits *lim, int turns_ms)
{
	uv_loop_t loop;
	struct migrate_dst *d;
	struct stream_buf b = { 0 };
	int rc = 0;
	failed = running = in_doubt = domain_seen = 0;
	why[0] = 0;
	if (new_vm() < 0 || uv_loop_init(&loop) < 0 || migrate_dst_start_feed(&loop, lim, &ops, NULL, &d) < 0)
		return -1;
	if (prefix(&b, p) < 0 || migrate_dst_feed(d, b.p, b.len) < 0)
		rc = -1;
	for (int i = 0; i < 4; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	if (failed)
		rc = -1;
	if (!rc && rec)
		migrate_dst_feed(d, rec->p, rec->len);
	struct timespec t0, t;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		uv_run(&loop, turns_ms ? UV_RUN_ONCE : UV_RUN_NOWAIT);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (!failed && !in_doubt && (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < turns_ms);
	for (int i = 0; i < 4; i++)
		uv_run(&loop, UV_RUN_NOWAIT);
	if (after)
		after(d, &loop);
	migrate_dst_free(d);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	stream_buf_free(&b);
	hv_vm_destroy(vm); /* stops a guest that COMMIT started */
	vm = NULL;
	return rc;
}

static enum stream_decision resolve_dec;
static int resolve_wrong, resolve_rc, doubt_seen, doubt_failed;
static char resolve_why[300], doubt_why[700];

static void resolve_after(struct migrate_dst *d, uv_loop_t *loop)
{
	doubt_seen = in_doubt && migrate_dst_in_doubt(d);
	doubt_failed = failed;
	snprintf(doubt_why, sizeof(doubt_why), "%s", failed ? why : "");
	resolve_rc = migrate_dst_resolve(d, migrate_dst_token(d) + (uint64_t)resolve_wrong, resolve_dec, "the source",
					 resolve_why, sizeof(resolve_why));
	for (int i = 0; i < 4; i++)
		uv_run(loop, UV_RUN_NOWAIT);
}

int main(void)
{
	char err[256];
	const char *img = getenv("GUEST_DIR") ? getenv("GUEST_DIR") : "guest";
	char path[4096];
	if (access("/dev/kvm", R_OK | W_OK))
		tap_skip_all("/dev/kvm absent");
	tap_plan((int)(NPHASES * (NTYPES + 1) + NPHASES - 2 + 3));
	/* A real vCPU state to send: the idle guest's, booted not run. */
	snprintf(path, sizeof(path), "%s/idle.elf", img);
	if (new_vm() < 0 || hv_boot_image(vm, path, "", err, sizeof(err)) < 0 ||
	    hv_vcpu_save(vm, 0, &blob, &blob_len) < 0) {
		printf("Bail out! cannot boot %s for a vCPU state: %s\n", path, err);
		return 1;
	}
	ref = vm;

	for (int p = 0; p < NPHASES; p++) {
		for (size_t i = 0; i < NTYPES; i++) {
			struct stream_buf r = { 0 };
			enum stream_type t = types[i];
			if (put(&r, t, 1) < 0) {
				tap_ok(0, "%s: cannot build a %s record", phase_name[p], stream_type_name(t));
				continue;
			}
			int rc = feed((enum phase)p, &r, NULL, 0);
			int want = taken((enum phase)p, t);
			if (rc < 0)
				tap_ok(0, "%s: the session did not reach this phase (%s)", phase_name[p], why);
			else if (want)
				tap_ok(!failed && (t != STREAM_COMMIT || running) && (t != STREAM_DOMAIN || domain_seen),
				       "%s takes %s%s%s", phase_name[p], stream_type_name(t),
				       t == STREAM_COMMIT   ? " and starts the guest"
				       : t == STREAM_DOMAIN ? " and creates the VM from its description"
							    : "",
				       failed ? why : "");
			else
				tap_ok(failed && !running && strstr(why, refusal[p]), "%s refuses %s: %s", phase_name[p],
				       stream_type_name(t), failed ? why : "(taken)");
			stream_buf_free(&r);
		}
		struct stream_buf r = { 0 };
		stream_put_error(&r, EIO, "operator cancelled");
		int rc = feed((enum phase)p, &r, NULL, 0);
		tap_ok(rc == 0 && failed && strstr(why, "the source aborted: operator cancelled"),
		       "%s: an ERROR from the source ends the migration: %s", phase_name[p], why);
		stream_buf_free(&r);
	}
	/* Deadlines: a source that goes quiet in any phase before COMMIT
	 * does not pin the session (HELLO has its own, handshake_ms). */
	struct migrate_dst_limits lim = { .handshake_ms = 300, .idle_ms = 300 };
	for (int p = 0; p < NPHASES; p++) {
		if (p == P_HELLO || p == P_READY)
			continue;
		int rc = feed((enum phase)p, NULL, &lim, 3000);
		tap_ok(rc == 0 && failed && (strstr(why, "for 0 s") || strstr(why, "within 0 s") || strstr(why, "none for")),
		       "%s: quiet for 300 ms, the session gives up: %s", phase_name[p], failed ? why : "(still waiting)");
	}
	/* ... except READY: the source may have sent COMMIT, so the VM is
	 * kept in doubt (issue 21, defect 3) until the source says what it
	 * did (migrate_dst_resolve). */
	struct { enum stream_decision dec; int wrong_token; } res[] = {
		{ STREAM_DECIDE_COMMIT, 0 }, { STREAM_DECIDE_ABORT, 0 }, { STREAM_DECIDE_COMMIT, 1 } };
	for (size_t i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
		resolve_dec = res[i].dec;
		resolve_wrong = res[i].wrong_token;
		after = resolve_after;
		int rc = feed(P_READY, NULL, &lim, 30000); /* ends at the first of failed, in doubt, 30 s */
		after = NULL;
		if (i == 0)
			tap_ok(rc == 0 && doubt_seen && !doubt_failed && resolve_rc == STREAM_OUTCOME_RAN && running && !failed,
			       "READY: quiet past its 300 ms limit, the VM is kept in doubt (not destroyed); "
			       "COMMIT by resolution starts it: %s", doubt_failed ? doubt_why : resolve_why);
		else if (i == 1)
			tap_ok(rc == 0 && doubt_seen && resolve_rc == STREAM_OUTCOME_NONE && failed && !running &&
				       strstr(why, "resolved the migration as aborted"),
			       "READY in doubt: ABORT by resolution destroys it: %s", why);
		else
			tap_ok(rc == 0 && doubt_seen && resolve_rc == -EACCES && !failed && !running,
			       "READY in doubt: a resolution with another token changes nothing: %s", resolve_why);
	}
	free(blob);
	hv_vm_destroy(ref);
	return tap__failed ? 1 : 0;
}
