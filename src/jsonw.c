/*
 * jsonw.c — compact JSON text written straight into a growing buffer.
 *
 * Every change of a job writes the job's JSON into its event, and building
 * a jansson object only to dump it cost more than the rest of a submit's
 * JSON work together. This writes the same bytes directly: what it writes
 * is exactly what json_dumps(…, JSON_COMPACT | JSON_ENCODE_ANY) writes
 * (tests/unit/test_jsonw.c holds it to that), so text from either is
 * interchangeable. Only reals go through jansson: their shortest form is
 * its own.
 */
#include "jsonw.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void
jsonw_init(struct jsonw *w)
{
	memset(w, 0, sizeof(*w));
}

void
jsonw_cleanup(struct jsonw *w)
{
	free(w->buf);
	jsonw_init(w);
}

char *
jsonw_done(struct jsonw *w)
{
	char *s = w->buf ? w->buf : xstrdup("");

	jsonw_init(w);
	return s;
}

static void
reserve(struct jsonw *w, size_t more)
{
	if (w->len + more + 1 <= w->cap)
		return;
	while (w->len + more + 1 > w->cap)
		w->cap = w->cap ? 2 * w->cap : 512;
	w->buf = xrealloc(w->buf, w->cap);
}

void
jsonw_raw(struct jsonw *w, const char *s, size_t n)
{
	reserve(w, n);
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

/* The length of the UTF-8 sequence at s (n bytes left), or 0 when it is
 * not one jansson accepts: no overlong forms, no surrogates, nothing past
 * U+10FFFF. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len = c < 0x80   ? 1
	             : c < 0xC2 ? 0
	             : c < 0xE0 ? 2
	             : c < 0xF0 ? 3
	             : c < 0xF5 ? 4
	                        : 0;
	uint32_t v;

	if (len <= 1 || len > n)
		return len > n ? 0 : len;
	v = c & (0x7F >> len);
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) ||
	    (len == 3 && v < 0x800) || (len == 4 && v < 0x10000))
		return 0;
	return len;
}

int
jsonw_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		uint64_t word;
		/* Eight ASCII bytes at a time: most text is nothing else. */
		if (n - i >= 8) {
			memcpy(&word, p + i, 8);
			if ((word & 0x8080808080808080u) == 0) {
				i += 8;
				continue;
			}
		}
		if ((k = utf8_seq(p + i, n - i)) == 0)
			return 0;
		i += k;
	}
	return 1;
}

/* The escape of byte c when it needs one (jansson's: the short forms, else
 * \u00XX in upper case), else NULL. */
static const char *
escape(unsigned char c, char tmp[8])
{
	switch (c) {
	case '"':
		return "\\\"";
	case '\\':
		return "\\\\";
	case '\b':
		return "\\b";
	case '\f':
		return "\\f";
	case '\n':
		return "\\n";
	case '\r':
		return "\\r";
	case '\t':
		return "\\t";
	}
	if (c >= 0x20)
		return NULL;
	snprintf(tmp, 8, "\\u%04X", c);
	return tmp;
}

void
jsonw_strn(struct jsonw *w, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t run = 0;
	char tmp[8];

	if (!jsonw_utf8(s, n)) {
		w->bad = 1;
		return;
	}
	reserve(w, n + 2);
	w->buf[w->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		const char *e;
		if (p[i] >= 0x20 && p[i] != '"' && p[i] != '\\')
			continue; /* the escape() of most bytes, cheaply */
		e = escape(p[i], tmp);
		jsonw_raw(w, s + run, i - run);
		jsonw_raw(w, e, strlen(e));
		run = i + 1;
	}
	jsonw_raw(w, s + run, n - run);
	jsonw_raw(w, "\"", 1);
}

void
jsonw_str(struct jsonw *w, const char *s)
{
	if (s == NULL)
		jsonw_raw(w, "null", 4);
	else
		jsonw_strn(w, s, strlen(s));
}

void
jsonw_int(struct jsonw *w, int64_t v)
{
	char tmp[20];

	if (v < 0)
		jsonw_raw(w, "-", 1);
	jsonw_raw(w, tmp, fmt_u64(v < 0 ? 0 - (uint64_t)v : (uint64_t)v, tmp));
}

void
jsonw_bool(struct jsonw *w, int v)
{
	if (v)
		jsonw_raw(w, "true", 4);
	else
		jsonw_raw(w, "false", 5);
}

static void
object(struct jsonw *w, const json_t *v)
{
	const char *key;
	json_t *m;
	int first = 1;

	jsonw_raw(w, "{", 1);
	json_object_foreach((json_t *)v, key, m)
	{
		if (!first)
			jsonw_raw(w, ",", 1);
		first = 0;
		jsonw_str(w, key);
		jsonw_raw(w, ":", 1);
		jsonw_value(w, m);
	}
	jsonw_raw(w, "}", 1);
}

static void
array(struct jsonw *w, const json_t *v)
{
	jsonw_raw(w, "[", 1);
	for (size_t i = 0; i < json_array_size(v); i++) {
		if (i > 0)
			jsonw_raw(w, ",", 1);
		jsonw_value(w, json_array_get(v, i));
	}
	jsonw_raw(w, "]", 1);
}

void
jsonw_value(struct jsonw *w, const json_t *v)
{
	char *t;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		object(w, v);
		return;
	case JSON_ARRAY:
		array(w, v);
		return;
	case JSON_STRING:
		jsonw_strn(w, json_string_value(v), json_string_length(v));
		return;
	case JSON_INTEGER:
		jsonw_int(w, json_integer_value(v));
		return;
	case JSON_TRUE:
		jsonw_raw(w, "true", 4);
		return;
	case JSON_FALSE:
		jsonw_raw(w, "false", 5);
		return;
	case JSON_NULL:
		jsonw_raw(w, "null", 4);
		return;
	case JSON_REAL:
		if ((t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)
			abort(); /* only out of memory */
		jsonw_raw(w, t, strlen(t));
		free(t);
		return;
	}
}

char *
jsonw_dumps(const json_t *v)
{
	struct jsonw w;

	jsonw_init(&w);
	jsonw_value(&w, v);
	return jsonw_done(&w);
}
