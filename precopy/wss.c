/*
 * precopy/wss.c - working set per time window (see wss.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "precopy/wss.h"

struct wss_len {
	uint64_t len_ns;
	uint32_t *last;     /* per frame: 1 + the last window it was counted in (0: never) */
	uint64_t *counts;   /* per window: distinct frames */
	size_t ncounts;
};

struct precopy_wss {
	uint64_t nframes, t0, t_last, total;
	unsigned n;
	struct wss_len len[PRECOPY_WSS_MAX_WINDOWS];
	uint16_t *hot;      /* per frame: shortest windows it was written in (saturates; > 0: ever written) */
};

void precopy_wss_free(struct precopy_wss *w)
{
	if (!w)
		return;
	for (unsigned i = 0; i < w->n; i++) {
		free(w->len[i].last);
		free(w->len[i].counts);
	}
	free(w->hot);
	free(w);
}

int precopy_wss_new(uint64_t nframes, const uint64_t *window_ns, unsigned n, uint64_t t0_ns, struct precopy_wss **out)
{
	if (!nframes || !n || n > PRECOPY_WSS_MAX_WINDOWS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!window_ns[i] || (i && window_ns[i] < window_ns[i - 1]))
			return -EINVAL;
	struct precopy_wss *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->nframes = nframes;
	w->t0 = w->t_last = t0_ns;
	w->hot = calloc(nframes, sizeof(*w->hot));
	if (!w->hot)
		goto err;
	for (unsigned i = 0; i < n; i++) {
		w->len[i].len_ns = window_ns[i];
		w->n = i + 1;
		if (!(w->len[i].last = calloc(nframes, sizeof(uint32_t))))
			goto err;
	}
	*out = w;
	return 0;
err:
	precopy_wss_free(w);
	return -ENOMEM;
}

/* Makes window k of l countable (grows the counts with zeros). */
static int wss__reach(struct wss_len *l, size_t k)
{
	if (k < l->ncounts)
		return 0;
	size_t cap = k + 1 > 2 * l->ncounts ? k + 1 : 2 * l->ncounts;
	uint64_t *c = realloc(l->counts, cap * sizeof(*c));
	if (!c)
		return -ENOMEM;
	memset(c + l->ncounts, 0, (cap - l->ncounts) * sizeof(*c));
	l->counts = c;
	l->ncounts = cap;
	return 0;
}

void precopy_wss_add(struct precopy_wss *w, uint64_t t_ns, const uint64_t *gfns, size_t n)
{
	if (t_ns < w->t_last)
		t_ns = w->t_last;
	w->t_last = t_ns;
	for (unsigned i = 0; i < w->n; i++) {
		struct wss_len *l = &w->len[i];
		size_t k = (size_t)((t_ns - w->t0) / l->len_ns);
		if (k >= UINT32_MAX - 1 || wss__reach(l, k) < 0)
			continue; /* the figures of this length stop growing: better than failing the estimate */
		uint32_t mark = (uint32_t)k + 1;
		for (size_t j = 0; j < n; j++) {
			uint64_t g = gfns[j];
			if (g >= w->nframes || l->last[g] == mark)
				continue;
			l->last[g] = mark;
			l->counts[k]++;
			if (i == 0) {
				w->total += !w->hot[g]; /* its first window: a frame never written before */
				if (w->hot[g] < UINT16_MAX)
					w->hot[g]++;
			}
		}
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Whole windows of l up to t_ns. */
static size_t wss__whole(const struct precopy_wss *w, const struct wss_len *l, uint64_t t_ns)
{
	return t_ns > w->t0 ? (size_t)((t_ns - w->t0) / l->len_ns) : 0;
}

void precopy_wss_get(const struct precopy_wss *w, unsigned idx, uint64_t t_ns, struct precopy_wss_stats *st)
{
	memset(st, 0, sizeof(*st));
	if (idx >= w->n)
		return;
	const struct wss_len *l = &w->len[idx];
	st->window_ns = l->len_ns;
	size_t k = wss__whole(w, l, t_ns);
	if (!k)
		return;
	uint64_t *v = malloc(k * sizeof(*v));
	if (!v)
		return;
	for (size_t i = 0; i < k; i++)
		v[i] = i < l->ncounts ? l->counts[i] : 0;
	qsort(v, k, sizeof(*v), cmp_u64);
	st->windows = (unsigned)k;
	st->min = v[0];
	st->max = v[k - 1];
	st->median = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
	free(v);
}

uint64_t precopy_wss_total(const struct precopy_wss *w)
{
	return w->total;
}

uint64_t precopy_wss_hot(const struct precopy_wss *w, uint64_t t_ns, unsigned pct)
{
	size_t k = wss__whole(w, &w->len[0], t_ns);
	if (!k)
		return 0;
	uint64_t need = ((uint64_t)k * pct + 99) / 100, hot = 0;
	if (!need)
		need = 1;
	for (uint64_t g = 0; g < w->nframes; g++)
		hot += w->hot[g] >= need;
	return hot;
}
