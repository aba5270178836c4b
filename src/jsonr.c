/*
 * jsonr.c — JSON text read into jansson values, in place.
 *
 * jansson's reader takes its input a byte at a time through a stream and
 * copies each byte of a token into a buffer of its own with a call to
 * memcpy: reading the texts of a job's life (its submit, the provider's
 * answers and callback, the rows read back) cost a sixth of the job's
 * instructions. This reads the text where it lies, and copies a string
 * only when it has escapes to decode.
 *
 * It accepts exactly the texts json_loadb accepts with the same flags and
 * makes the same values (tests/unit/test_jsonr.c and fuzz/fuzz_jsonr.c
 * hold it to that): jansson's grammar, whose numbers have no leading zero
 * and no bare point; integers through strtoll and reals through strtod,
 * out of range refused; strings of UTF-8 without control characters,
 * their \u escapes decoded, surrogates only in pairs and never \u0000;
 * at most JSON_PARSER_MAX_DEPTH values deep, a scalar counting as one
 * level; of a key given twice, the last value, or an error with
 * JSON_REJECT_DUPLICATES; even its way of passing over a NUL byte that
 * ends a number or a word. Only the error texts are its own.
 */
#include "jsonr.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "util.h"

#define DEPTH_MAX 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

struct rd {
	const char *start, *p, *end;
	size_t flags;
	int depth;
	json_error_t *err;
	char *buf; /* a string with escapes, decoded */
	size_t len, cap;
};

/* Refuse the text at r->p: NULL, with err said once. */
static json_t *
fail(struct rd *r, const char *why)
{
	json_error_t *e = r->err;
	int line = 1;
	const char *bol = r->start;

	if (e == NULL || e->text[0] != '\0')
		return NULL;
	for (const char *c = r->start; c < r->p; c++)
		if (*c == '\n') {
			line++;
			bol = c + 1;
		}
	e->line = line;
	e->column = (int)(r->p - bol) + 1;
	e->position = (int)(r->p - r->start);
	snprintf(e->text, sizeof(e->text) - 1, "%s", why);
	return NULL;
}

static void
space(struct rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' ||
	                            *r->p == '\r' || *r->p == '\t'))
		r->p++;
}

/* After a number or a word jansson puts back the byte that ended it, and
 * a NUL byte put back is lost: one right there is passed over. */
static void
put_back(struct rd *r)
{
	if (r->p < r->end && *r->p == '\0')
		r->p++;
}

/* Pass over c, after any space, when it comes next: 1, else 0. */
static int
eat(struct rd *r, char c)
{
	space(r);
	if (r->p < r->end && *r->p == c) {
		r->p++;
		return 1;
	}
	return 0;
}

static int
digit(const struct rd *r, const char *q)
{
	return q < r->end && *q >= '0' && *q <= '9';
}

static const char *
digits(const struct rd *r, const char *q)
{
	while (digit(r, q))
		q++;
	return q;
}

static json_t *
number(struct rd *r)
{
	const char *s = r->p, *q = s;
	char tmp[64], *text = tmp, *end;
	size_t n;
	int real = 0;
	json_t *v;

	if (q < r->end && *q == '-')
		q++;
	if (q < r->end && *q == '0') {
		if (digit(r, ++q))
			return fail(r, "invalid number: a leading zero");
	} else if (digit(r, q)) {
		q = digits(r, q);
	} else {
		return fail(r, "invalid token");
	}
	if (q < r->end && *q == '.') {
		if (!digit(r, ++q))
			return fail(
			    r, "invalid number: no digit after the point");
		q = digits(r, q);
		real = 1;
	}
	if (q < r->end && (*q == 'e' || *q == 'E')) {
		q++;
		if (q < r->end && (*q == '+' || *q == '-'))
			q++;
		if (!digit(r, q))
			return fail(
			    r, "invalid number: no digit in the exponent");
		q = digits(r, q);
		real = 1;
	}
	n = (size_t)(q - s);
	if (n >= sizeof(tmp))
		text = xmalloc(n + 1);
	memcpy(text, s, n);
	text[n] = '\0';
	errno = 0;
	if (!real) {
		long long i = strtoll(text, &end, 10);
		v = errno == ERANGE ? NULL : json_integer(i);
	} else {
		double d = strtod(text, &end);
		v = errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL)
		        ? NULL
		        : json_real(d);
	}
	if (text != tmp)
		free(text);
	if (v == NULL)
		return fail(
		    r, real ? "real number overflow" : "too big integer");
	r->p = q;
	put_back(r);
	return v;
}

static void
put(struct rd *r, const char *s, size_t n)
{
	if (n == 0)
		return;
	if (r->len + n > r->cap) {
		r->cap = r->len + n > 2 * r->cap ? r->len + n : 2 * r->cap;
		r->buf = xrealloc(r->buf, r->cap);
	}
	memcpy(r->buf + r->len, s, n);
	r->len += n;
}

/* Four hex digits at q as a number, or -1. */
static long
hex4(const struct rd *r, const char *q)
{
	long v = 0;

	if (r->end - q < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		int c = q[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* The escape at r->p (after its backslash), decoded into r->buf. */
static int
escape(struct rd *r)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;
	long cp, lo;
	char u[4];
	size_t n;

	if (r->p == r->end)
		return -1;
	if (*r->p != 'u') {
		if ((e = memchr(from, *r->p, sizeof(from) - 1)) == NULL)
			return -1;
		put(r, to + (e - from), 1);
		r->p++;
		return 0;
	}
	if ((cp = hex4(r, r->p + 1)) < 0)
		return -1;
	r->p += 5;
	if (cp >= 0xDC00 && cp <= 0xDFFF)
		return -1; /* a low surrogate alone */
	if (cp >= 0xD800 && cp <= 0xDBFF) {
		if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' ||
		    (lo = hex4(r, r->p + 2)) < 0xDC00 || lo > 0xDFFF)
			return -1;
		r->p += 6;
		cp = ((cp - 0xD800) << 10) + (lo - 0xDC00) + 0x10000;
	}
	if (cp == 0)
		return -1; /* jansson refuses NUL without JSON_ALLOW_NUL */
	if (cp < 0x80) {
		u[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (char)(0xC0 | cp >> 6);
		u[1] = (char)(0x80 | (cp & 0x3F));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (char)(0xE0 | cp >> 12);
		u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
		u[2] = (char)(0x80 | (cp & 0x3F));
		n = 3;
	} else {
		u[0] = (char)(0xF0 | cp >> 18);
		u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
		u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
		u[3] = (char)(0x80 | (cp & 0x3F));
		n = 4;
	}
	put(r, u, n);
	return 0;
}

/*
 * The string whose opening quote is at r->p: *s and *n its bytes, in the
 * text itself when it has no escape, else in r->buf (good until the next
 * string). -1 after fail().
 */
static int
string(struct rd *r, const char **s, size_t *n)
{
	int copied = 0;

	r->p++;
	r->len = 0;
	for (;;) {
		const char *run = r->p;
		int wide = 0;
		unsigned char c = 0;

		while (r->p < r->end && (c = (unsigned char)*r->p) != '"' &&
		       c != '\\' && c >= 0x20) {
			wide |= c & 0x80;
			r->p++;
		}
		if (wide && !jsonw_utf8(run, (size_t)(r->p - run)))
			return fail(r, "invalid UTF-8 in a string"), -1;
		if (r->p == r->end)
			return fail(r, "premature end of input in a string"),
			       -1;
		if (c < 0x20)
			return fail(r, "control character in a string"), -1;
		if (c == '"' && !copied) {
			*s = run;
			*n = (size_t)(r->p++ - run);
			return 0;
		}
		put(r, run, (size_t)(r->p - run));
		copied = 1;
		if (c == '"') {
			r->p++;
			*s = r->buf ? r->buf : "";
			*n = r->len;
			return 0;
		}
		r->p++;
		if (escape(r) < 0)
			return fail(r, "invalid escape in a string"), -1;
	}
}

static json_t *value(struct rd *r);

static json_t *
object(struct rd *r)
{
	json_t *o = json_object(), *v;
	const char *s;
	char *key = NULL;
	size_t n;

	r->p++;
	if (eat(r, '}'))
		return o;
	for (;;) {
		space(r);
		if (r->p == r->end || *r->p != '"') {
			fail(r, "string or '}' expected");
			break;
		}
		if (string(r, &s, &n) < 0)
			break;
		if (s == r->buf) /* the value's strings would overwrite it */
			s = key = xstrndup(s, n);
		if ((r->flags & JSON_REJECT_DUPLICATES) &&
		    json_object_getn(o, s, n)) {
			fail(r, "duplicate object key");
			break;
		}
		if (!eat(r, ':')) {
			fail(r, "':' expected");
			break;
		}
		if ((v = value(r)) == NULL)
			break;
		json_object_setn_new_nocheck(o, s, n, v);
		free(key);
		key = NULL;
		if (eat(r, '}'))
			return o;
		if (!eat(r, ',')) {
			fail(r, "'}' expected");
			break;
		}
	}
	free(key);
	json_decref(o);
	return NULL;
}

static json_t *
array(struct rd *r)
{
	json_t *a = json_array(), *v;

	r->p++;
	if (eat(r, ']'))
		return a;
	for (;;) {
		if ((v = value(r)) == NULL)
			break;
		json_array_append_new(a, v);
		if (eat(r, ']'))
			return a;
		if (!eat(r, ',')) {
			fail(r, "']' expected");
			break;
		}
	}
	json_decref(a);
	return NULL;
}

static json_t *
word(struct rd *r, const char *w, size_t n, json_t *v)
{
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, w, n) != 0)
		return fail(r, "invalid token");
	r->p += n;
	put_back(r);
	return v;
}

static json_t *
value(struct rd *r)
{
	json_t *v;
	const char *s;
	size_t n;

	space(r);
	if (++r->depth > DEPTH_MAX)
		return fail(r, "maximum parsing depth reached");
	if (r->p == r->end)
		return fail(r, "unexpected end of input");
	switch (*r->p) {
	case '{':
		v = object(r);
		break;
	case '[':
		v = array(r);
		break;
	case '"':
		v = string(r, &s, &n) < 0 ? NULL : json_stringn_nocheck(s, n);
		break;
	case 't':
		v = word(r, "true", 4, json_true());
		break;
	case 'f':
		v = word(r, "false", 5, json_false());
		break;
	case 'n':
		v = word(r, "null", 4, json_null());
		break;
	default:
		v = number(r);
	}
	r->depth--;
	return v;
}

json_t *
jsonr_loadb(const char *buf, size_t len, size_t flags, json_error_t *err)
{
	struct rd r = {.start = buf,
	    .p = buf,
	    .end = buf + len,
	    .flags = flags,
	    .err = err};
	json_t *v = NULL;

	if (err != NULL) {
		memset(err, 0, sizeof(*err));
		err->line = err->column = -1;
		snprintf(err->source, sizeof(err->source), "<buffer>");
	}
	if (buf == NULL) {
		r.start = r.p = r.end = "";
		fail(&r, "no text");
		return NULL;
	}
	space(&r);
	if (!(flags & JSON_DECODE_ANY) &&
	    (r.p == r.end || (*r.p != '{' && *r.p != '[')))
		fail(&r, "'[' or '{' expected");
	else if ((v = value(&r)) != NULL) {
		space(&r);
		if (r.p != r.end) {
			json_decref(v);
			v = fail(&r, "end of file expected");
		}
	}
	free(r.buf);
	return v;
}

json_t *
jsonr_loads(const char *s, size_t flags, json_error_t *err)
{
	return jsonr_loadb(s, s ? strlen(s) : 0, flags, err);
}
