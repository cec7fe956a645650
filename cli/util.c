/*
 * cli/util.c - CLI helpers.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "cli/rundir.h"
#include "cli/util.h"

void cli_err(const char *fmt, ...)
{
	va_list ap;
	fputs("pml-migrate: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

int cli_parse_size(const char *s, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	uint64_t mul = 1;
	switch (*end) {
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	case 't': case 'T': mul = 1ull << 40; end++; break;
	default: break;
	}
	if ((*end == 'i' || *end == 'I') && mul > 1)
		end++;
	if ((*end == 'b' || *end == 'B'))
		end++;
	if (*end)
		return -EINVAL;
	double b = v * (double)mul;
	if (b > 1.8e19)
		return -ERANGE;
	*out = (uint64_t)b;
	return 0;
}

int cli_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	if (v < lo || v > hi)
		return -ERANGE;
	*out = v;
	return 0;
}

int cli_valid_name(const char *name)
{
	size_t n = strlen(name);
	/* Not '.' first (hidden, "..") nor '-' first (would read as an option). */
	if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-')
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

void json_begin(struct json *j, FILE *f)
{
	j->f = f;
	j->first = 1;
	fputc('{', f);
}

static void json_key(struct json *j, const char *k)
{
	if (!j->first)
		fputc(',', j->f);
	j->first = 0;
	fprintf(j->f, "\"%s\":", k);
}

void json_str(struct json *j, const char *k, const char *v)
{
	json_key(j, k);
	fputc('"', j->f);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(j->f, "\\%c", *p);
		else if (*p < 0x20)
			fprintf(j->f, "\\u%04x", *p);
		else
			fputc(*p, j->f);
	}
	fputc('"', j->f);
}

void json_u64(struct json *j, const char *k, uint64_t v)
{
	json_key(j, k);
	fprintf(j->f, "%" PRIu64, v);
}

void json_i64(struct json *j, const char *k, int64_t v)
{
	json_key(j, k);
	fprintf(j->f, "%" PRId64, v);
}

void json_f64(struct json *j, const char *k, double v)
{
	json_key(j, k);
	fprintf(j->f, "%.3f", v);
}

void json_bool(struct json *j, const char *k, int v)
{
	json_key(j, k);
	fputs(v ? "true" : "false", j->f);
}

void json_end(struct json *j)
{
	fputs("}\n", j->f);
	fflush(j->f);
}

uint64_t cli_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int cli_ctl_connect(const char *prefix, const char *name)
{
	struct sockaddr_un a;
	char dir[RUNDIR_MAX_PATH], why[RUNDIR_MAX_PATH + 200];
	int dfd = rundir_open(0, dir, sizeof(dir), why, sizeof(why));
	if (dfd < 0) {
		if (prefix && dfd == -ENOENT)
			cli_err("%s: no VM named '%s' (no run directory %s)", prefix, name, dir);
		else if (prefix)
			cli_err("%s: %s", prefix, why);
		return dfd;
	}
	int e = rundir_sock_addr(dfd, name, &a);
	int fd = e < 0 ? -1 : socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		e = e < 0 ? e : -errno;
		if (prefix)
			cli_err("%s: no VM named '%s' (%s/%s.sock: %s)", prefix, name, dir, name, strerror(-e));
		if (fd >= 0)
			close(fd);
		close(dfd);
		return e;
	}
	close(dfd);
	return fd;
}

int cli_read_line(int fd, char *buf, size_t len, size_t *have, char *line, size_t linelen, int timeout_ms)
{
	for (;;) {
		char *nl = memchr(buf, '\n', *have);
		if (nl) {
			size_t n = (size_t)(nl - buf);
			size_t k = n < linelen - 1 ? n : linelen - 1;
			memcpy(line, buf, k);
			line[k] = 0;
			memmove(buf, nl + 1, *have - n - 1);
			*have -= n + 1;
			return (int)k;
		}
		if (*have == len)
			return -EMSGSIZE;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int pr = poll(&p, 1, timeout_ms);
		if (pr == 0)
			return -ETIMEDOUT;
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		ssize_t got = read(fd, buf + *have, len - *have);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (got == 0)
			return 0;
		*have += (size_t)got;
	}
}

int cli_json_field(const char *json, const char *key, char *out, size_t outlen)
{
	char pat[80];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(json, pat);
	if (!p)
		return -ENOENT;
	p += strlen(pat);
	size_t n = 0;
	if (*p == '"') {
		p++;
		while (p[n] && p[n] != '"')
			n++;
	} else {
		while (p[n] && p[n] != ',' && p[n] != '}')
			n++;
	}
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, p, n);
	out[n] = 0;
	return 0;
}
