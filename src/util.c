/*
 * util.c — the small things every module uses. Allocation failure aborts
 * (there is no sensible way to go on without memory), so callers never
 * check for NULL.
 */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/evp.h>

static void
oom(void)
{
	fputs("fila: out of memory\n", stderr);
	abort();
}

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		oom();
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (p == NULL)
		oom();
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		oom();
	return p;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
xstrdup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		oom();
	va_end(ap);
	return p;
}

int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timeval
timeval_ms(int64_t ms)
{
	return (struct timeval){
	    .tv_sec = (time_t)(ms / 1000),
	    .tv_usec = (suseconds_t)(ms % 1000) * 1000,
	};
}

/* The last millisecond of 9999-12-31: up to it a time is written here
 * digit by digit (strftime and snprintf cost 4k instructions a time, and
 * each event of a job has four). */
#define MS_9999 253402300799999LL

static char *
digits(char *p, unsigned v, int n)
{
	for (int i = n - 1; i >= 0; i--, v /= 10)
		p[i] = (char)('0' + v % 10);
	return p + n;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" for 0 <= ms <= MS_9999; the date from the
 * days since 1970 (proleptic Gregorian: days_from_civil inverted, after
 * Howard Hinnant's "chrono-Compatible Low-Level Date Algorithms"). */
static char *
fmt_time_fast(int64_t ms, char buf[TIME_BUF])
{
	int64_t secs = ms / 1000;
	unsigned z = (unsigned)(secs / 86400) + 719468, sod = secs % 86400;
	unsigned era = z / 146097, doe = z - era * 146097;
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;
	unsigned y = yoe + era * 400 + (m <= 2);
	char *p = buf;

	p = digits(p, y, 4);
	*p++ = '-';
	p = digits(p, m, 2);
	*p++ = '-';
	p = digits(p, d, 2);
	*p++ = 'T';
	p = digits(p, sod / 3600, 2);
	*p++ = ':';
	p = digits(p, sod / 60 % 60, 2);
	*p++ = ':';
	p = digits(p, sod % 60, 2);
	*p++ = '.';
	p = digits(p, (unsigned)(ms % 1000), 3);
	*p++ = 'Z';
	*p = '\0';
	return buf;
}

char *
fmt_time(int64_t ms, char buf[TIME_BUF])
{
	time_t secs;
	struct tm tm;
	size_t n;

	if (ms < 0)
		ms = 0;
	if (ms <= MS_9999)
		return fmt_time_fast(ms, buf);
	secs = (time_t)(ms / 1000);
	gmtime_r(&secs, &tm);
	n = strftime(buf, TIME_BUF - 5, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 6, ".%03uZ", (unsigned)(ms % 1000));
	return buf;
}

/* Random bytes from the kernel, taken a page at a time: a syscall per id
 * cost more than the rest of making it. Each thread has its own pool (no
 * process forks), and a byte handed out is wiped from it. */
static void
random_bytes(unsigned char *out, size_t n)
{
	static _Thread_local unsigned char pool[256];
	static _Thread_local size_t left;

	while (n > 0) {
		if (left == 0) {
			ssize_t got = getrandom(pool, sizeof(pool), 0);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				perror("fila: getrandom");
				abort();
			}
			left = (size_t)got;
		}
		size_t take = n < left ? n : left;
		unsigned char *p = pool + sizeof(pool) - left;
		memcpy(out, p, take);
		explicit_bzero(p, take);
		out += take;
		n -= take;
		left -= take;
	}
}

void
random_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[64];

	for (size_t done = 0; done < nbytes;) {
		size_t n =
		    nbytes - done < sizeof(b) ? nbytes - done : sizeof(b);
		random_bytes(b, n);
		for (size_t i = 0; i < n; i++) {
			out[2 * (done + i)] = hex[b[i] >> 4];
			out[2 * (done + i) + 1] = hex[b[i] & 15];
		}
		done += n;
	}
	explicit_bzero(b, sizeof(b));
	out[2 * nbytes] = '\0';
}

void
sorted_hex(char *out, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	uint64_t t = (uint64_t)now_ms();

	random_hex(out, nbytes);
	if (nbytes < 6)
		return;
	for (int i = 11; i >= 0; i--, t >>= 4)
		out[i] = hex[t & 15];
}

/* Sorted: a table keyed by these ids takes each new one at its end, so a
 * turn's inserts touch one page of the index, not one page each. */
char *
new_id(const char *prefix)
{
	char hex[25];
	sorted_hex(hex, 12);
	return xasprintf("%s%s", prefix, hex);
}

void
sha256_hex(const void *buf, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[32];
	unsigned int mdlen = 0;

	EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL);
	for (unsigned int i = 0; i < 32; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[64] = '\0';
}

int
ct_equal(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	unsigned char d = 0;

	for (size_t i = 0; i < n; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

int
parse_ll(const char *s, long long *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

size_t
utf8_cut(const char *s, size_t n)
{
	size_t i = n;
	unsigned char lead;

	while (i > 0 && n - i < 3 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0 || (lead = (unsigned char)s[i - 1]) < 0xc0)
		return n; /* whole, or not UTF-8 at all */
	return n - (i - 1) < (lead >= 0xf0      ? 4u
	                         : lead >= 0xe0 ? 3u
	                                        : 2u)
	           ? i - 1
	           : n;
}

double
median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * The code point at s[*i], *i moved past it; -1 when the bytes there are
 * not well-formed UTF-8 (bad or missing continuation, overlong, surrogate,
 * past U+10FFFF).
 */
static long
utf8_next(const unsigned char *s, size_t len, size_t *i)
{
	unsigned char c = s[*i];
	size_t n;
	long cp, min;

	if (c < 0x80) {
		(*i)++;
		return c;
	}
	if (c >= 0xc2 && c <= 0xdf)
		n = 1, cp = c & 0x1f, min = 0x80;
	else if ((c & 0xf0) == 0xe0)
		n = 2, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		n = 3, cp = c & 0x07, min = 0x10000;
	else
		return -1;
	if (len - *i <= n)
		return -1;
	for (size_t k = 1; k <= n; k++) {
		if ((s[*i + k] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (s[*i + k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += n + 1;
	return cp;
}

/* Controls (C0, DEL, C1) and the bidi controls that can make an id print
 * as another (ALM, LRM, RLM, LRE…RLO, LRI…PDI). */
static int
forbidden_char(long cp)
{
	return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c ||
	       cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
	       (cp >= 0x2066 && cp <= 0x2069);
}

int
text_ok(const char *text, size_t len)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	while (i < len) {
		long cp = utf8_next(s, len, &i);
		if (cp < 0 || forbidden_char(cp))
			return 0;
	}
	return 1;
}

size_t
fmt_u64(uint64_t v, char buf[20])
{
	char rev[20];
	size_t k = 0;

	do
		rev[k++] = (char)('0' + v % 10);
	while ((v /= 10) > 0);
	for (size_t i = 0; i < k; i++)
		buf[i] = rev[k - 1 - i];
	return k;
}
