/*
 * migrate/source-options.c - the sending side's options: defaults, one
 * key=value at a time (the control-socket protocol and the CLI's flag
 * checks share it), and the rules across fields.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/source.h"
#include "transport/xport.h"

void migrate_src_opts_default(struct migrate_src_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->downtime_ms = 50;
	o->max_time_s = 600;
	o->streams = 1;
	o->throttle = 1;
	o->resume = 1;
	o->link_timeout_s = 10;
	o->setup_timeout_s = 15;
}

static int opt__uint(const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	if (!*v || *v == '-')
		return -EINVAL;
	errno = 0;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end || x < lo || x > hi)
		return -EINVAL;
	*out = x;
	return 0;
}

static int opt__bool(const char *v, int *out)
{
	if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "on"))
		*out = 1;
	else if (!strcmp(v, "0") || !strcmp(v, "no") || !strcmp(v, "off"))
		*out = 0;
	else
		return -EINVAL;
	return 0;
}

static int opt__str(char *dst, size_t len, const char *v)
{
	if (strlen(v) >= len || strpbrk(v, " \t\r\n"))
		return -EINVAL;
	strcpy(dst, v);
	return 0;
}

int migrate_src_opt_set(struct migrate_src_opts *o, const char *key, const char *val, char *err, size_t errlen)
{
	uint64_t v;
	int e = -EINVAL;
	const char *want = "";

	if (!strcmp(key, "target")) {
		char host[256];
		unsigned port;
		want = "HOST:PORT";
		if (xport_split_hostport(val, host, sizeof(host), &port) == 0 && port && strlen(val) < sizeof(o->target)) {
			strcpy(o->target, val);
			e = 0;
		}
	} else if (!strcmp(key, "downtime")) {
		want = "milliseconds, 1..60000";
		if (!(e = opt__uint(val, 1, 60000, &v)))
			o->downtime_ms = (unsigned)v;
	} else if (!strcmp(key, "max_time")) {
		want = "seconds, 1..86400";
		if (!(e = opt__uint(val, 1, 86400, &v)))
			o->max_time_s = (unsigned)v;
	} else if (!strcmp(key, "max_bandwidth")) {
		want = "bytes per second (0 = unlimited)";
		if (!(e = opt__uint(val, 0, UINT64_MAX / 2, &v)))
			o->max_bandwidth = v;
	} else if (!strcmp(key, "streams")) {
		want = "1..8";
		if (!(e = opt__uint(val, 1, MIGRATE_MAX_STREAMS, &v)))
			o->streams = (unsigned)v;
	} else if (!strcmp(key, "compress")) {
		want = "auto, on or off";
		e = 0;
		if (!strcmp(val, "auto"))
			o->compress = MIGRATE_COMPRESS_AUTO;
		else if (!strcmp(val, "on"))
			o->compress = MIGRATE_COMPRESS_ON;
		else if (!strcmp(val, "off"))
			o->compress = MIGRATE_COMPRESS_OFF;
		else
			e = -EINVAL;
	} else if (!strcmp(key, "verify")) {
		want = "0 or 1";
		e = opt__bool(val, &o->verify);
	} else if (!strcmp(key, "throttle")) {
		want = "0 or 1";
		e = opt__bool(val, &o->throttle);
	} else if (!strcmp(key, "resume")) {
		want = "0 or 1";
		e = opt__bool(val, &o->resume);
	} else if (!strcmp(key, "link_timeout")) {
		want = "seconds, 1..3600";
		if (!(e = opt__uint(val, 1, 3600, &v)))
			o->link_timeout_s = (unsigned)v;
	} else if (!strcmp(key, "setup_timeout")) {
		want = "seconds, 1..3600";
		if (!(e = opt__uint(val, 1, 3600, &v)))
			o->setup_timeout_s = (unsigned)v;
	} else if (!strcmp(key, "insecure")) {
		want = "0 or 1";
		e = opt__bool(val, &o->insecure);
	} else if (!strcmp(key, "certs")) {
		want = "a directory path without spaces";
		e = opt__str(o->certs, sizeof(o->certs), val);
	} else if (!strcmp(key, "node")) {
		want = "a certificate name";
		e = opt__str(o->node, sizeof(o->node), val);
	} else if (!strcmp(key, "peer")) {
		want = "a certificate name";
		e = opt__str(o->peer, sizeof(o->peer), val);
	} else {
		snprintf(err, errlen, "unknown migration option '%s'", key);
		return -EINVAL;
	}
	if (e)
		snprintf(err, errlen, "%s '%s': expected %s", key, val, want);
	return e;
}

int migrate_src_opts_check(const struct migrate_src_opts *o, char *err, size_t errlen)
{
	if (!o->target[0]) {
		snprintf(err, errlen, "no destination HOST:PORT");
		return -EINVAL;
	}
	if (!o->insecure && (!o->certs[0] || !o->node[0])) {
		snprintf(err, errlen, "TLS needs --certs DIR and --node NAME (or --insecure for plaintext)");
		return -EINVAL;
	}
	return 0;
}
