/*
 * util/json.c - one-line JSON writer and field reader.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include "util/json.h"

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

int json_field(const char *json, const char *key, char *out, size_t outlen)
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
