/*
 * util.h — allocation that aborts on failure, time, randomness and hashing.
 * Everything here is small and has no state.
 */
#ifndef FILA_UTIL_H
#define FILA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

/* Allocate or die: these never return NULL (abort on out-of-memory). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* xstrdup(s), or NULL when s is NULL. */
char *xstrdup_or_null(const char *s);
/* printf into a fresh buffer the caller frees. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t now_ms(void);
/* Monotonic time in milliseconds, for durations only. */
int64_t mono_ms(void);
/* A duration of ms milliseconds (>= 0) as a timeval, for libevent. */
struct timeval timeval_ms(int64_t ms);

#define TIME_BUF 32
/* RFC 3339 UTC with milliseconds ("2026-11-29T08:25:51.123Z") into buf. */
char *fmt_time(int64_t ms, char buf[TIME_BUF]);

/* v in decimal into buf, without a NUL; the number of digits. */
size_t fmt_u64(uint64_t v, char buf[20]);

/* Fill out with 2*nbytes lowercase hex chars of kernel randomness, then NUL. */
void random_hex(char *out, size_t nbytes);
/* As random_hex, but the first 12 chars (for nbytes >= 6) are the time in
 * milliseconds: values made later sort after those made before. */
void sorted_hex(char *out, size_t nbytes);
/* A fresh id: prefix followed by 24 hex chars, sorted by time (see
 * sorted_hex), 48 bits of them random; caller frees. */
char *new_id(const char *prefix);

/* SHA-256 of buf as 64 lowercase hex chars + NUL into out. */
void sha256_hex(const void *buf, size_t len, char out[65]);

/* Constant-time comparison of two equal-length buffers: 1 when equal. */
int ct_equal(const void *a, const void *b, size_t n);

/* Parse a whole decimal integer: 0, or -1 on junk, overflow or empty. */
int parse_ll(const char *s, long long *out);

/* 1 when s[0..len) is well-formed UTF-8 without control characters (C0,
 * DEL, C1) or the bidi controls that can make a text print as another
 * (ALM, LRM, RLM, LRE…RLO, LRI…PDI): a user id, a file's name. */
int text_ok(const char *s, size_t len);

/* n, or less so as not to end inside a UTF-8 sequence: the length of
 * s[0..n) without a last character cut short. */
size_t utf8_cut(const char *s, size_t n);

/* The median of v[0..n) (n > 0), which it sorts: the middle value, or the
 * mean of the two middle ones. */
double median(double *v, size_t n);

#endif
