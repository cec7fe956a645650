/*
 * util/json.h - every JSON object this program writes (reports, progress
 * events, control-socket answers, the agent's files) and reads back, on
 * one library: jansson.
 *
 * Writing: json_begin() or json_begin_str(), then one call per field in
 * the order they should appear, then json_end() (one line on the FILE,
 * '\n' included) or json_end_str() (the line as a string). Numbers with a
 * fraction are written with 3 decimals at most. Strings that are not
 * UTF-8 (an error text from a hostile peer) are written with '?' for
 * each byte outside ASCII.
 *
 * Reading: json_field() for one field of one line.
 *
 * Threads: any; a struct json belongs to its caller.
 */
#ifndef PMG_UTIL_JSON_H
#define PMG_UTIL_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

struct json {
	FILE *f;   /* NULL: json_end_str() */
	json_t *o; /* the object being built; NULL after an allocation failure */
};
void json_begin(struct json *j, FILE *f);
void json_begin_str(struct json *j);
void json_str(struct json *j, const char *k, const char *v);
void json_u64(struct json *j, const char *k, uint64_t v);
void json_i64(struct json *j, const char *k, int64_t v);
void json_f64(struct json *j, const char *k, double v);
void json_bool(struct json *j, const char *k, int v);
/* Writes the object as one line with '\n' to the FILE and flushes it. */
void json_end(struct json *j);
/* Returns the object as one line without '\n' (malloc'd, the caller
 * frees it), or NULL when out of memory. */
char *json_end_str(struct json *j);

/* Copies the value of key in the one-line JSON object text: a string
 * without its quotes, a number as written, true/false/null. Returns 0,
 * -ENOENT (no such key, or the text is not a JSON object) leaving out
 * untouched. */
int json_field(const char *text, const char *key, char *out, size_t outlen);

#endif
