/*
 * vmhost/resolve.c - asking the destination how a migration ended (see
 * resolve.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "migrate/query.h"
#include "util/util.h"
#include "vmhost/resolve.h"

struct vmhost_resolve {
	struct vmhost *r;
	uint64_t token;
	enum stream_decision decision;
	unsigned tries, delay_ms;
	uv_timer_t timer;
	uv_work_t work;
	int busy, stopping, timer_closed;
	struct ctl_client *client; /* waiting for the next answer (ctl resolve) */
	/* the question, copied for the work thread */
	struct migrate_src_opts o;
	char name[65];
	/* its answer */
	int rc;
	struct stream_resolved ans;
	char err[512];
	char last[STREAM_MAX_TEXT + 64];
};

static void resolve__ask(uv_timer_t *t);

static void resolve__work(uv_work_t *w)
{
	struct vmhost_resolve *v = w->data;
	struct migrate_query_auth auth = { .insecure = v->o.insecure, .certs_dir = v->o.certs, .node = v->o.node,
					   .peer = v->o.peer };
	struct stream_resolve rq = { .token = v->token, .decision = (uint8_t)v->decision };
	v->err[0] = 0;
	v->rc = migrate_query_resolve(&auth, v->o.target, v->name, &rq, RESOLVE_TIMEOUT_MS, &v->ans, v->err,
				      sizeof(v->err));
}

static void resolve__free(struct vmhost_resolve *v)
{
	if (!v->busy && v->timer_closed)
		free(v);
}

static void resolve__timer_closed(uv_handle_t *h)
{
	struct vmhost_resolve *v = h->data;
	v->timer_closed = 1;
	resolve__free(v);
}

static const char *outcome_name(uint32_t o)
{
	return o == STREAM_OUTCOME_RAN ? "ran" : o == STREAM_OUTCOME_NONE ? "none" : "unknown";
}

static void resolve__answer_client(struct vmhost_resolve *v, int certain)
{
	struct vmhost *r = v->r;
	if (!v->client)
		return;
	struct json j;
	json_begin_str(&j);
	json_bool(&j, "ok", v->rc == 0);
	if (v->rc < 0) {
		json_str(&j, "error", v->last);
	} else {
		json_str(&j, "outcome", outcome_name(v->ans.outcome));
		json_str(&j, "why", v->ans.text);
		json_bool(&j, "resolved", certain);
	}
	json_str(&j, "state", vmhost_state(r));
	char *line = json_end_str(&j);
	if (line)
		vmhost_ctl_reply_line(v->client, line);
	free(line);
	v->client = NULL;
}

static void resolve__done(uv_work_t *w, int status)
{
	struct vmhost_resolve *v = w->data;
	struct vmhost *r = v->r;
	v->busy = 0;
	if (v->stopping || status < 0) {
		resolve__free(v);
		return;
	}
	v->tries++;
	int certain = v->rc == 0 && v->ans.outcome != STREAM_OUTCOME_UNKNOWN;
	if (v->rc < 0)
		snprintf(v->last, sizeof(v->last), "%s", v->err);
	else
		snprintf(v->last, sizeof(v->last), "%s: %s", outcome_name(v->ans.outcome), v->ans.text);
	fprintf(stderr, "pml-migrate: '%s': resolving the migration to %s (%s, try %u): %s\n", r->name, v->o.target,
		v->decision == STREAM_DECIDE_COMMIT ? "COMMIT was sent" : "aborted here", v->tries, v->last);
	if (certain && v->decision == STREAM_DECIDE_COMMIT && r->indeterminate)
		vmhost_mig_resolved(r, v->ans.outcome == STREAM_OUTCOME_RAN, v->last);
	else if (certain && v->ans.outcome == STREAM_OUTCOME_RAN)
		/* We aborted, yet it says the guest started there: two copies
		 * may run. Nothing here can undo that; say it loudly. */
		util_err("'%s': the destination %s says the guest started there although this migration was aborted "
			 "and the guest runs here: check both hosts",
			 r->name, v->o.target);
	resolve__answer_client(v, certain);
	if (certain || (v->decision == STREAM_DECIDE_ABORT && v->tries >= RESOLVE_ABORT_TRIES)) {
		if (r->res == v) {
			r->res = NULL;
			uv_close((uv_handle_t *)&v->timer, resolve__timer_closed);
		}
		vmhost_once_check(r);
		return;
	}
	uv_timer_start(&v->timer, resolve__ask, v->delay_ms, 0);
	v->delay_ms = v->delay_ms * 2 > RESOLVE_MAX_MS ? RESOLVE_MAX_MS : v->delay_ms * 2;
}

static void resolve__ask(uv_timer_t *t)
{
	struct vmhost_resolve *v = t->data;
	if (v->busy || v->stopping)
		return;
	v->work.data = v;
	if (uv_queue_work(&v->r->loop, &v->work, resolve__work, resolve__done) == 0)
		v->busy = 1;
	else
		uv_timer_start(&v->timer, resolve__ask, v->delay_ms, 0);
}

void vmhost_resolve_stop(struct vmhost *r)
{
	struct vmhost_resolve *v = r->res;
	if (!v)
		return;
	r->res = NULL;
	v->stopping = 1;
	if (v->client) {
		vmhost_ctl_reply_line(v->client, "{\"ok\":false,\"error\":\"the VM host is shutting down\"}");
		v->client = NULL;
	}
	uv_timer_stop(&v->timer);
	uv_close((uv_handle_t *)&v->timer, resolve__timer_closed);
}

void vmhost_resolve_start(struct vmhost *r, uint64_t token, enum stream_decision decision)
{
	vmhost_resolve_stop(r);
	if (!token)
		return;
	struct vmhost_resolve *v = calloc(1, sizeof(*v));
	if (!v)
		return;
	v->r = r;
	v->token = token;
	v->decision = decision;
	v->o = r->mig_opts;
	snprintf(v->name, sizeof(v->name), "%s", r->name);
	v->delay_ms = RESOLVE_FIRST_MS;
	snprintf(v->last, sizeof(v->last), "not asked yet");
	uv_timer_init(&r->loop, &v->timer);
	v->timer.data = v;
	r->res = v;
	uv_timer_start(&v->timer, resolve__ask, v->delay_ms, 0);
	v->delay_ms *= 2;
}

void vmhost_resolve_ctl(struct vmhost *r, struct ctl_client *c, struct json *j)
{
	struct vmhost_resolve *v = r->res;
	if (!v) {
		json_bool(j, "ok", 0);
		json_str(j, "error", r->indeterminate ? "this migration cannot be resolved: the destination gave it no token "
							"(an older pml-migrate); check the destination, then 'ctl NAME stop'"
						      : "nothing to resolve: no migration of this VM ended without its outcome");
		return;
	}
	if (v->client) {
		json_bool(j, "ok", 0);
		json_str(j, "error", "a resolution is under way for another client: ask again");
		return;
	}
	v->client = c;
	j->f = NULL; /* the answer comes with the next try's */
	if (!v->busy) {
		uv_timer_stop(&v->timer);
		resolve__ask(&v->timer);
	}
}

void vmhost_resolve_detach(struct vmhost *r, struct ctl_client *c)
{
	if (r->res && r->res->client == c)
		r->res->client = NULL;
}

const char *vmhost_resolve_last(struct vmhost *r)
{
	return r->res ? r->res->last : "";
}
