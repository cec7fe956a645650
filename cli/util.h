/*
 * cli/util.h - small helpers shared by the CLI commands: argument parsing,
 * errors, JSON output, control-socket paths.
 */
#ifndef PMG_CLI_UTIL_H
#define PMG_CLI_UTIL_H

#include <stdint.h>
#include <stdio.h>

/* Exit codes, documented in the README. */
enum {
	PMG_EXIT_OK = 0,
	PMG_EXIT_FAIL = 1,
	PMG_EXIT_USAGE = 2,
	PMG_EXIT_INDETERMINATE = 3,
};

/* Prints "pml-migrate: <msg>" on stderr. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "512M", "4G", "65536", "1.5G" -> bytes. Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_size(const char *s, uint64_t *out);
/* Decimal unsigned in [lo, hi]. Returns 0 or -EINVAL / -ERANGE. */
int cli_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* NAME: 1-64 chars of [A-Za-z0-9._-], not starting with '.' or '-'. */
int cli_valid_name(const char *name);

/* Minimal JSON writer: {"k":v,...} on one line. */
struct json {
	FILE *f;
	int first;
};
void json_begin(struct json *j, FILE *f);
void json_str(struct json *j, const char *k, const char *v);
void json_u64(struct json *j, const char *k, uint64_t v);
void json_i64(struct json *j, const char *k, int64_t v);
void json_f64(struct json *j, const char *k, double v);
void json_bool(struct json *j, const char *k, int v);
void json_end(struct json *j); /* closes and writes '\n' */

uint64_t cli_now_ns(void);

/* Copies the value of "key" out of one of our own one-line JSON objects:
 * a string without its quotes, or a number/literal up to ',' or '}'.
 * Returns 0, or -ENOENT leaving out untouched. Not a general JSON parser:
 * for the reports and answers this program writes. */
int cli_json_field(const char *json, const char *key, char *out, size_t outlen);

/* Connects to VM name's control socket in the run directory (cli/rundir.h:
 * a directory that is not ours is refused). Returns the socket fd, or
 * -errno with a message printed (prefix: the command; NULL: quiet). */
int cli_ctl_connect(const char *prefix, const char *name);
/* Reads one line (without '\n') of at most len-1 bytes, waiting up to
 * timeout_ms (-1: forever). buf/have keep bytes beyond the line between
 * calls. Returns the line length, 0 at EOF, -ETIMEDOUT or -errno. */
int cli_read_line(int fd, char *buf, size_t len, size_t *have, char *line, size_t linelen, int timeout_ms);

#endif
