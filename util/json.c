/*
 * util/json.c - JSON writing and reading on jansson (contract in json.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "util/json.h"

/* Reals: 15 significant digits, so that a value rounded to 3 decimals
 * prints as such (525.573, not 525.57299999999998). */
#define DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

void json_begin(struct json *j, FILE *f)
{
	j->f = f;
	j->o = json_object();
}

void json_begin_str(struct json *j) { json_begin(j, NULL); }

static void json__put(struct json *j, const char *k, json_t *v)
{
	if (!j->o || !v || json_object_set_new(j->o, k, v) < 0) {
		json_decref(v);
		json_decref(j->o);
		j->o = NULL; /* json_end then writes nothing rather than half an object */
	}
}

void json_str(struct json *j, const char *k, const char *v)
{
	json_t *s = json_string(v);
	if (!s) {
		/* Not UTF-8: keep what can be read. */
		char *c = strdup(v);
		if (c) {
			for (char *p = c; *p; p++)
				if ((unsigned char)*p >= 0x80)
					*p = '?';
			s = json_string(c);
			free(c);
		}
	}
	json__put(j, k, s);
}

void json_u64(struct json *j, const char *k, uint64_t v)
{
	json__put(j, k, json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v));
}

void json_i64(struct json *j, const char *k, int64_t v) { json__put(j, k, json_integer((json_int_t)v)); }

void json_f64(struct json *j, const char *k, double v)
{
	if (!isfinite(v))
		v = 0;
	json__put(j, k, json_real(round(v * 1000.0) / 1000.0));
}

void json_bool(struct json *j, const char *k, int v) { json__put(j, k, json_boolean(v)); }

char *json_end_str(struct json *j)
{
	char *s = j->o ? json_dumps(j->o, DUMP_FLAGS) : NULL;
	json_decref(j->o);
	j->o = NULL;
	return s;
}

void json_end(struct json *j)
{
	char *s = json_end_str(j);
	if (s) {
		fputs(s, j->f);
		fputc('\n', j->f);
		free(s);
	}
	fflush(j->f);
}

int json_field(const char *text, const char *key, char *out, size_t outlen)
{
	json_t *o = json_loads(text, JSON_DISABLE_EOF_CHECK, NULL);
	json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
	int r = 0;
	if (!v || !outlen)
		r = -ENOENT;
	else if (json_is_string(v))
		snprintf(out, outlen, "%s", json_string_value(v));
	else if (json_is_integer(v))
		snprintf(out, outlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(out, outlen, "%.15g", json_real_value(v));
	else if (json_is_true(v) || json_is_false(v) || json_is_null(v))
		snprintf(out, outlen, "%s", json_is_true(v) ? "true" : json_is_false(v) ? "false" : "null");
	else /* an object or array: its text */ {
		char *s = json_dumps(v, DUMP_FLAGS | JSON_ENCODE_ANY);
		snprintf(out, outlen, "%s", s ? s : "");
		free(s);
	}
	json_decref(o);
	return r;
}
