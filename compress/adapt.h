/*
 * compress/adapt.h - adaptive compression (--compress auto): LZ4 or raw
 * pages, whichever moved more page bytes per second in the last probe.
 *
 * Pure arithmetic on (bytes, time) samples the caller feeds after each job;
 * no clock, threads or I/O, so tests/test-compress.c drives it with
 * recorded numbers. One per encoder thread; not shared.
 *
 * How: a probe runs one window of COMPRESS_ADAPT_WINDOW jobs with LZ4 and
 * the next without, and keeps the faster (LZ4 on a tie); the choice then
 * stands for COMPRESS_ADAPT_STEADY windows before the next probe, since
 * the link and the content change.
 *
 * Known weakness (bench/RESULTS.md): a window's rate measures the encoder
 * until the connection's send queue fills, and the link only after, so the
 * first probe, made while the queues fill for the first time, can choose
 * LZ4 where raw pages are faster over all (a flat-out guest on loopback:
 * a third more time in most runs). Probing more often was tried and lost
 * more on a 1 Gbit/s link than it won on loopback.
 */
#ifndef PMG_COMPRESS_ADAPT_H
#define PMG_COMPRESS_ADAPT_H

#include <stdint.h>

#define COMPRESS_ADAPT_WINDOW 32  /* jobs per measurement */
#define COMPRESS_ADAPT_STEADY 16  /* windows between probes */

struct compress_adapt {
	int lz4;                  /* the choice for the next job */
	int probing;              /* 0 steady, 1 measuring with LZ4, 2 measuring without */
	unsigned jobs;            /* jobs into the current window */
	unsigned steady_left;     /* windows until the next probe */
	uint64_t t0, bytes0;      /* the window's start */
	double rate_on, rate_off; /* the last probe's page bytes per ns */
	int lz4_kept;             /* what the last probe chose */
	unsigned probes, flips;   /* probes done, and how many changed the choice */
};

/* Starts with a probe, LZ4 first. now_ns: any monotonic clock. */
void compress_adapt_init(struct compress_adapt *a, uint64_t now_ns);

/* After each job: raw_bytes is the cumulative page bytes the caller has
 * encoded so far, now_ns the clock. Returns the choice for the next job
 * (1 LZ4, 0 raw), also in a->lz4. */
int compress_adapt_job(struct compress_adapt *a, uint64_t raw_bytes, uint64_t now_ns);

#endif
