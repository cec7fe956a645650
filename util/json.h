/*
 * util/json.h - the one-line JSON objects this program writes (reports,
 * control-socket answers) and a reader for one field of them.
 *
 * Threads: any; a struct json belongs to its caller.
 */
#ifndef PMG_UTIL_JSON_H
#define PMG_UTIL_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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

/* Copies the value of "key" out of one of our own one-line JSON objects:
 * a string without its quotes, or a number/literal up to ',' or '}'.
 * Returns 0, or -ENOENT leaving out untouched. Not a general JSON parser:
 * for the reports and answers this program writes. */
int json_field(const char *json, const char *key, char *out, size_t outlen);

#endif
