/*
 * precopy/predict.c - a migration predicted with the engine's policy (see
 * predict.h).
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include "precopy/predict.h"

/* Log-linear in t through points i-1 and i (also past i). */
static double wss__loglin(const struct precopy_wss_curve *c, unsigned i, uint64_t t_ns)
{
	double f = log((double)t_ns / (double)c->t_ns[i - 1]) / log((double)c->t_ns[i] / (double)c->t_ns[i - 1]);
	return (double)c->pages[i - 1] + f * ((double)c->pages[i] - (double)c->pages[i - 1]);
}

uint64_t precopy_wss_at(const struct precopy_wss_curve *c, uint64_t t_ns)
{
	if (!c->n || !t_ns)
		return 0;
	double v;
	if (t_ns <= c->t_ns[0]) {
		v = (double)c->pages[0] * (double)t_ns / (double)c->t_ns[0];
	} else {
		unsigned i = 1;
		while (i < c->n && t_ns > c->t_ns[i])
			i++;
		if (i < c->n)
			v = wss__loglin(c, i, t_ns);
		else if (c->n >= 2 && c->t_ns[c->n - 1] > c->t_ns[c->n - 2])
			/* Past the longest window: as the last segment went (flat
			 * for a working set that stopped growing). */
			v = wss__loglin(c, c->n - 1, t_ns);
		else
			/* One window only: nothing says the set is bounded. */
			v = (double)c->pages[c->n - 1] + c->dirty_pps * (double)(t_ns - c->t_ns[c->n - 1]) / 1e9;
		if (v < (double)c->pages[c->n - 1] && t_ns > c->t_ns[c->n - 1])
			v = (double)c->pages[c->n - 1];
	}
	if (c->cap && v > (double)c->cap)
		v = (double)c->cap;
	return (uint64_t)(v + 0.5);
}

/* Of the pages numbered [a, a+n) in sending order, how many go raw in a
 * probe. */
static uint64_t predict__raw(const struct precopy_predict_in *in, uint64_t a, uint64_t n)
{
	if (!in->probe_pages || !in->probe_every)
		return 0;
	uint64_t raw = 0;
	/* Probe k covers [probe_pages + k*every, 2*probe_pages + k*every). */
	for (uint64_t k = a > 2 * in->probe_pages ? (a - 2 * in->probe_pages) / in->probe_every : 0;; k++) {
		uint64_t lo = in->probe_pages + k * in->probe_every, hi = lo + in->probe_pages;
		if (lo >= a + n)
			break;
		uint64_t s = lo > a ? lo : a, e = hi < a + n ? hi : a + n;
		if (e > s)
			raw += e - s;
	}
	return raw;
}

int precopy_predict(const struct precopy_predict_in *in, struct precopy_predict_out *out)
{
	memset(out, 0, sizeof(*out));
	if (!in->link_Bps || !in->encode_pps || !(in->wire_bytes_per_page > 0))
		return -EINVAL;
	/* Pages per second the slower of encoder and link allows. */
	double link_pps = (double)in->link_Bps / in->wire_bytes_per_page;
	double pps = link_pps < (double)in->encode_pps ? link_pps : (double)in->encode_pps;
	uint64_t pages = in->first_pages, t = 0, sent = 0;
	double raw_extra = in->raw_bytes_per_page > in->wire_bytes_per_page ? in->raw_bytes_per_page - in->wire_bytes_per_page : 0;
	for (unsigned r = 1; r <= PRECOPY_PREDICT_MAX_ROUNDS; r++) {
		/* A round: its pages through the encoder, its bytes over the link. */
		double bytes = (double)pages * in->wire_bytes_per_page + (double)predict__raw(in, sent, pages) * raw_extra;
		double secs = (double)pages / (double)in->encode_pps;
		if (bytes / (double)in->link_Bps > secs)
			secs = bytes / (double)in->link_Bps;
		uint64_t dt = (uint64_t)(secs * 1e9);
		t += dt;
		sent += pages;
		out->bytes += (uint64_t)bytes;
		out->rounds = r;
		uint64_t dirty = precopy_wss_at(&in->wss, dt);
		struct precopy_decision_in d = {
			/* What the engine's encoders measure on this link: their
			 * pages/s, or the link's when they wait for it. */
			.cost = { .pages = dirty, .encode_pps = (uint64_t)pps, .link_Bps = in->link_Bps,
				  .vcpu_save_ns = in->vcpu_save_ns, .vcpu_bytes = in->vcpu_bytes, .rtt_ns = in->rtt_ns },
			.downtime_limit_ns = in->downtime_limit_ns,
			.drained = 1,
			.now_ns = t,
			.deadline_ns = in->max_time_ns,
		};
		uint64_t exp = 0;
		enum precopy_verdict v = precopy_decide(&d, &exp);
		if (v == PRECOPY_SWITCHOVER || v == PRECOPY_SWITCHOVER_FORCED) {
			out->verdict = v;
			out->downtime_ns = exp;
			out->final_pages = dirty;
			out->bytes += (uint64_t)((double)dirty * in->wire_bytes_per_page);
			out->total_ns = t + exp;
			return 0;
		}
		if (v == PRECOPY_TIMEOUT) {
			out->verdict = v;
			out->total_ns = t;
			return 0;
		}
		/* A round that dirties nearly as much as it sent (over 90 %)
		 * gets the set below the limit by itself late or never: the
		 * engine's throttle slows such a guest. */
		if (r > 1 && dirty * 10 > pages * 9) {
			out->verdict = PRECOPY_CONTINUE;
			out->needs_throttle = 1;
			out->total_ns = t;
			out->final_pages = dirty;
			return 0;
		}
		pages = dirty;
	}
	out->verdict = PRECOPY_CONTINUE;
	out->needs_throttle = 1;
	out->total_ns = t;
	return 0;
}
