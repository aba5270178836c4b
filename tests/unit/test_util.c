/*
 * test_util.c — the small helpers: formatting, time, randomness, hashing,
 * comparison and number parsing.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "util.h"

static int
all_lower_hex(const char *s)
{
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
			return 0;
	return 1;
}

Test(util, xasprintf)
{
	char *s = xasprintf("%s-%d-%05.1f", "job", 42, 3.14159);
	char *big;

	cr_expect_str_eq(s, "job-42-003.1");
	free(s);
	big = xasprintf("%5000s|", "x");
	cr_expect_eq(strlen(big), 5001);
	cr_expect_eq(big[4999], 'x');
	free(big);
}

Test(util, string_copies)
{
	char *a = xstrdup("hello");
	char *b = xstrndup("hello", 3);

	cr_expect_str_eq(a, "hello");
	cr_expect_str_eq(b, "hel");
	cr_expect_null(xstrdup_or_null(NULL));
	free(a);
	free(b);
	a = xstrdup_or_null("x");
	cr_expect_str_eq(a, "x");
	free(a);
}

Test(util, allocation)
{
	int *v = xcalloc(16, sizeof(int));

	for (int i = 0; i < 16; i++)
		cr_expect_eq(v[i], 0);
	v[15] = 7;
	v = xrealloc(v, 1024 * sizeof(int));
	cr_expect_eq(v[15], 7);
	free(v);
	free(xmalloc(0)); /* a real, freeable pointer */
}

Test(util, fmt_time_known_values)
{
	char buf[TIME_BUF];

	cr_expect_str_eq(fmt_time(0, buf), "1970-01-01T00:00:00.000Z");
	cr_expect_str_eq(
	    fmt_time(1764405951123, buf), "2025-11-29T08:45:51.123Z");
	cr_expect_str_eq(
	    fmt_time(951782400000, buf), "2000-02-29T00:00:00.000Z");
	cr_expect_str_eq(
	    fmt_time(4102444799999, buf), "2099-12-31T23:59:59.999Z");
	cr_expect_str_eq(fmt_time(1005, buf), "1970-01-01T00:00:01.005Z");
	cr_expect_eq(fmt_time(0, buf), buf);
}

/* strftime's answer, for comparison. */
static void
by_libc(int64_t ms, char buf[TIME_BUF])
{
	time_t secs = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	gmtime_r(&secs, &tm);
	n = strftime(buf, TIME_BUF - 5, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, 6, ".%03uZ", (unsigned)(ms % 1000));
}

Test(util, fmt_time_is_what_libc_writes)
{
	static const int64_t edges[] = {0, 86399999, 86400000,
	    68169600000,     /* 1972-02-29 */
	    951868799999,    /* 2000-02-29T23:59:59.999 */
	    4107542400000,   /* 2100-03-01: not a leap year */
	    13574563200000,  /* 2400-02-29 */
	    253402300799999, /* 9999-12-31T23:59:59.999, the last written
	                      * digit by digit */
	    253402300800000, 300000000000000};
	char want[TIME_BUF], got[TIME_BUF];
	uint64_t x = 88172645463325252ULL;

	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		by_libc(edges[i], want);
		cr_assert_str_eq(fmt_time(edges[i], got), want);
	}
	for (int i = 0; i < 200000; i++) {
		int64_t ms;

		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		ms = (int64_t)(x % 253402300800000ULL);
		if (i % 2)
			ms %= 10000000000000LL; /* mostly near now */
		by_libc(ms, want);
		cr_assert_str_eq(
		    fmt_time(ms, got), want, "ms %lld", (long long)ms);
	}
}

Test(util, fmt_time_before_epoch_is_epoch)
{
	char buf[TIME_BUF];

	cr_expect_str_eq(fmt_time(-1, buf), "1970-01-01T00:00:00.000Z");
}

Test(util, clocks)
{
	int64_t a = mono_ms(), b = mono_ms();

	cr_expect_gt(now_ms(), 1700000000000LL); /* after 2023-11 */
	cr_expect_geq(b, a);
}

Test(util, random_hex)
{
	char a[201], b[201], z[1];

	random_hex(a, 16);
	random_hex(b, 16);
	cr_expect_eq(strlen(a), 32);
	cr_expect(all_lower_hex(a), "%s", a);
	cr_expect_str_neq(a, b);
	random_hex(a, 100); /* more than one read from the kernel */
	cr_expect_eq(strlen(a), 200);
	cr_expect(all_lower_hex(a), "%s", a);
	random_hex(z, 0);
	cr_expect_eq(z[0], '\0');
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(a, b);
}

/* Ids drawn across many refills of the pool never repeat one another. */
Test(util, random_hex_never_repeats_across_refills)
{
	enum { N = 400 };
	static char ids[N][33];

	for (int i = 0; i < N; i++)
		random_hex(ids[i], (size_t)(1 + i % 16));
	for (int i = 0; i < N; i++)
		if (strlen(ids[i]) < 16) /* short draws may meet by chance */
			ids[i][0] = '\0';
	qsort(ids, N, sizeof(ids[0]), cmp_str);
	for (int i = 1; i < N; i++)
		cr_assert(ids[i][0] == '\0' || strcmp(ids[i - 1], ids[i]) != 0,
		    "%s twice", ids[i]);
}

Test(util, new_id)
{
	char *a = new_id("job_");
	char *b = new_id("job_");

	cr_expect_eq(strlen(a), 4 + 24);
	cr_expect_eq(strncmp(a, "job_", 4), 0);
	cr_expect(all_lower_hex(a + 4), "%s", a);
	cr_expect_str_neq(a, b);
	free(a);
	free(b);
	a = new_id("");
	cr_expect_eq(strlen(a), 24);
	free(a);
}

Test(util, sorted_hex_sorts_by_time)
{
	char a[65], b[65], t[13];
	struct timespec ms = {0, 2000000};

	sorted_hex(a, 32);
	nanosleep(&ms, NULL);
	sorted_hex(b, 32);
	cr_expect_eq(strlen(a), 64);
	cr_expect(all_lower_hex(a), "%s", a);
	cr_expect_lt(strcmp(a, b), 0, "%s then %s", a, b);
	/* the time, in hex, leads */
	snprintf(t, sizeof(t), "%012llx", (long long)now_ms());
	cr_expect_eq(strncmp(a, t, 8), 0, "%s against %s", a, t);
	cr_expect_str_neq(a + 12, b + 12, "the rest is random");
}

Test(util, sha256_hex)
{
	char out[65];

	sha256_hex("abc", 3, out);
	cr_expect_str_eq(out,
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	sha256_hex("", 0, out);
	cr_expect_str_eq(out,
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(util, ct_equal)
{
	cr_expect(ct_equal("abcdef", "abcdef", 6));
	cr_expect_not(ct_equal("abcdef", "xbcdef", 6));
	cr_expect_not(ct_equal("abcdef", "abcdex", 6));
	cr_expect(ct_equal("abcdef", "abcxyz", 3)); /* only n bytes count */
	cr_expect(ct_equal("a", "b", 0));
	cr_expect_not(ct_equal("\x80", "\x00", 1));
}

Test(util, parse_ll_good)
{
	long long v = 0;

	cr_expect_eq(parse_ll("42", &v), 0);
	cr_expect_eq(v, 42);
	cr_expect_eq(parse_ll("-7", &v), 0);
	cr_expect_eq(v, -7);
	cr_expect_eq(parse_ll("0", &v), 0);
	cr_expect_eq(v, 0);
	cr_expect_eq(parse_ll("9223372036854775807", &v), 0);
	cr_expect_eq(v, LLONG_MAX);
	cr_expect_eq(parse_ll("-9223372036854775808", &v), 0);
	cr_expect_eq(v, LLONG_MIN);
}

Test(util, parse_ll_bad)
{
	static const char *const bad[] = {"", "abc", "12a", "1.5", "0x10",
	    "10 ", "-", "9223372036854775808", "-9223372036854775809",
	    "99999999999999999999999", NULL};
	long long v = 1234;

	for (size_t i = 0; bad[i] != NULL; i++)
		cr_expect_eq(
		    parse_ll(bad[i], &v), -1, "accepted \"%s\"", bad[i]);
	cr_expect_eq(parse_ll(NULL, &v), -1);
	cr_expect_eq(v, 1234, "out written on failure");
}

Test(util, median_odd_even_and_one)
{
	double odd[] = {9, 1, 5}, even[] = {4, 1, 10, 2}, one[] = {7.5};

	cr_expect_eq(median(odd, 3), 5);
	cr_expect_eq(median(even, 4), 3, "the mean of the middle two");
	cr_expect_eq(median(one, 1), 7.5);
	cr_expect_eq(even[0], 1, "sorted in place");
}

Test(util, timeval_ms)
{
	struct timeval tv = timeval_ms(0);

	cr_expect_eq(tv.tv_sec, 0);
	cr_expect_eq(tv.tv_usec, 0);
	tv = timeval_ms(1500);
	cr_expect_eq(tv.tv_sec, 1);
	cr_expect_eq(tv.tv_usec, 500000);
	tv = timeval_ms(86400999);
	cr_expect_eq(tv.tv_sec, 86400);
	cr_expect_eq(tv.tv_usec, 999000);
}

Test(util, utf8_cut_never_ends_inside_a_character)
{
	cr_expect_eq(utf8_cut("abc", 3), 3);
	cr_expect_eq(utf8_cut("", 0), 0);
	cr_expect_eq(utf8_cut("a\xc3\xa9", 3), 3, "é whole");
	cr_expect_eq(utf8_cut("a\xc3\xa9", 2), 1, "é cut");
	cr_expect_eq(utf8_cut("a\xe2\x80\xa6", 3), 1, "… cut after 2");
	cr_expect_eq(utf8_cut("a\xe2\x80\xa6", 2), 1, "… cut after 1");
	cr_expect_eq(utf8_cut("a\xe2\x80\xa6", 4), 4);
	cr_expect_eq(utf8_cut("\xf0\x9f\x98\x80", 3), 0, "emoji cut");
	cr_expect_eq(utf8_cut("\xf0\x9f\x98\x80", 4), 4);
}

Test(util, text_ok_refuses_controls_bidi_and_bad_utf8)
{
	const char *good[] = {"alice", "Zoë", "名前", "a b-c_d.png", ""};
	const char *bad[] = {"a\nb", "a\x7f", "\xc2\x85",
	    "evil\xe2\x80\xaegnp.exe", "x\xe2\x81\xa6y", "\xd8\x9c",
	    "\xe2\x80\x8f", "\xff", "\xc3", "\xed\xa0\x80", "\xc0\xaf"};

	for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++)
		cr_assert(text_ok(good[i], strlen(good[i])), "%s", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_assert(!text_ok(bad[i], strlen(bad[i])), "bad %zu", i);
}
