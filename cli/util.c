/*
 * cli/util.c - CLI argument parsing, and the walk over this host's VMs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/util.h"
#include "util/rundir.h"

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

int cli_each_vm(const char *prefix, void (*fn)(void *opaque, const char *name, const char *status), void *opaque)
{
	char dir[RUNDIR_MAX_PATH], why[RUNDIR_MAX_PATH + 200];
	int dfd = rundir_open(0, dir, sizeof(dir), why, sizeof(why));
	if (dfd == -ENOENT)
		return 0;
	if (dfd < 0) {
		util_err("%s: %s", prefix, why);
		return dfd;
	}
	int rfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = rfd >= 0 ? fdopendir(rfd) : NULL;
	if (!d && rfd >= 0)
		close(rfd);
	close(dfd);
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 6 || strcmp(e->d_name + n - 5, ".sock"))
			continue;
		char name[80];
		snprintf(name, sizeof(name), "%.*s", (int)(n - 5), e->d_name);
		if (!util_valid_name(name))
			continue;
		int fd = util_ctl_connect(NULL, name);
		if (fd < 0)
			continue;
		char buf[4096], line[4096];
		size_t have = 0;
		int l = write(fd, "status\n", 7) == 7 ? util_read_line(fd, buf, sizeof(buf), &have, line, sizeof(line), 2000) : -1;
		close(fd);
		if (l > 0)
			fn(opaque, name, line);
	}
	closedir(d);
	return 0;
}

int cli_answer_ok(const char *prefix, const char *line, int json)
{
	if (strstr(line, "\"ok\":true"))
		return 1;
	char why[512] = "no reason given";
	json_field(line, "error", why, sizeof(why));
	if (json)
		puts(line);
	util_err("%s: %s", prefix, why);
	return 0;
}
