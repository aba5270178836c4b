/*
 * jsonw.h — compact JSON text written straight into a growing buffer.
 */
#ifndef FILA_JSONW_H
#define FILA_JSONW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Caller-owned; jsonw_init before use, then jsonw_done or jsonw_cleanup. */
struct jsonw {
	char *buf;
	size_t len, cap;
	int bad; /* a string was not UTF-8 */
};

void jsonw_init(struct jsonw *w);
/* Free what w holds (after a jsonw_done, nothing). */
void jsonw_cleanup(struct jsonw *w);
/* The text written, NUL-terminated; the caller frees it. w is empty after. */
char *jsonw_done(struct jsonw *w);

/* Append n bytes as they are (punctuation, a key known to need no escape). */
void jsonw_raw(struct jsonw *w, const char *s, size_t n);
/* Append s (n bytes) as a JSON string, escaped exactly as jansson's
 * json_dumps escapes it; sets w->bad and writes nothing when s is not
 * UTF-8 (json_string() would have refused it). */
void jsonw_strn(struct jsonw *w, const char *s, size_t n);
/* The same for a NUL-terminated string; NULL writes null. */
void jsonw_str(struct jsonw *w, const char *s);
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_bool(struct jsonw *w, int v);
/* Append v as json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) writes it. */
void jsonw_value(struct jsonw *w, const json_t *v);

/* json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), the same bytes, written
 * here; the caller frees. */
char *jsonw_dumps(const json_t *v);

/* Is s (n bytes) UTF-8 that jansson accepts in a string? */
int jsonw_utf8(const char *s, size_t n);

#endif
