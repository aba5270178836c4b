/*
 * test_jsonr.c — jsonr reads what jansson's json_loadb reads: the same
 * texts accepted, the same values made (types, key order and the last of
 * a repeated key included), under each set of flags fila uses. Tricky
 * texts by hand, then half a million texts made by mutating valid ones.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "jsonr.h"

static const size_t flag_sets[] = {0, JSON_DECODE_ANY, JSON_REJECT_DUPLICATES,
    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES};

/* The value as text that tells every difference: type, order, bytes. */
static char *
shown(const json_t *v)
{
	return json_dumps(
	    v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17));
}

/* text (n bytes) printable, in a static buffer. */
static const char *
escaped(const char *text, size_t n)
{
	static char out[4 * 600];
	size_t k = 0;

	for (size_t i = 0; i < n && k + 5 < sizeof(out); i++) {
		unsigned char c = (unsigned char)text[i];
		if (c >= 0x20 && c < 0x7f)
			out[k++] = (char)c;
		else
			k += (size_t)snprintf(out + k, 5, "\\x%02x", c);
	}
	out[k] = '\0';
	return out;
}

/* 0 when jsonr and jansson agree on text (n bytes) under every flag set. */
static int
agree(const char *text, size_t n, int report)
{
	for (size_t f = 0; f < sizeof(flag_sets) / sizeof(*flag_sets); f++) {
		json_error_t e1, e2;
		json_t *want = json_loadb(text, n, flag_sets[f], &e1);
		json_t *got = jsonr_loadb(text, n, flag_sets[f], &e2);
		int same = (want == NULL) == (got == NULL);
		char *a = NULL, *b = NULL;

		if (same && want != NULL) {
			a = shown(want);
			b = shown(got);
			same = strcmp(a, b) == 0;
		}
		if (!same && report)
			cr_log_error(
			    "flags %zu, text [%s]: jansson %s, jsonr %s",
			    flag_sets[f], escaped(text, n),
			    want ? (a ? a : "a value") : e1.text,
			    got ? (b ? b : "a value") : e2.text);
		if (got == NULL && e2.text[0] == '\0') {
			cr_log_error("no error text for [%.*s]", (int)n, text);
			same = 0;
		}
		free(a);
		free(b);
		json_decref(want);
		json_decref(got);
		if (!same)
			return -1;
	}
	return 0;
}

static const char *const texts[] = {
    /* whole values and their surroundings */
    "{}",
    "[]",
    " {} ",
    "\t\r\n[ ]\n",
    "",
    " ",
    "{",
    "}",
    "[",
    "]",
    "{}x",
    "{} {}",
    "[] ,",
    "1",
    "-1",
    "\"s\"",
    "true",
    "false",
    "null",
    " null ",
    "nul",
    "nulll",
    "truex",
    "true1",
    "tru",
    "True",
    "NULL",
    "[true,false,null]",
    "[truefalse]",
    "{\"a\":nullx}",
    /* numbers */
    "[0]",
    "[-0]",
    "[00]",
    "[01]",
    "[-01]",
    "[-]",
    "[-a]",
    "[+1]",
    "[.5]",
    "[1.]",
    "[1.5]",
    "[1.50]",
    "[-0.0]",
    "[0e0]",
    "[1e]",
    "[1e+]",
    "[1e-]",
    "[1e5]",
    "[1E5]",
    "[1e+5]",
    "[1e-5]",
    "[1.5e3]",
    "[1e999]",
    "[-1e999]",
    "[1e-999]",
    "[9223372036854775807]",
    "[9223372036854775808]",
    "[-9223372036854775808]",
    "[-9223372036854775809]",
    "[123456789012345678901234567890]",
    "[1.7976931348623157e308]",
    "[4.9e-324]",
    "[0.1]",
    "[1x]",
    "[1 2]",
    "[1,]",
    "[,1]",
    "[1,,2]",
    "[0x10]",
    "[Infinity]",
    "[NaN]",
    "[-Infinity]",
    "[1.0]",
    "[100]",
    "[3.141592653589793238462643383279]",
    "[0.000000000000000000000000000000000000000000001]",
    /* strings */
    "[\"\"]",
    "[\"a\\\"b\"]",
    "[\"\\\\\"]",
    "[\"\\/\"]",
    "[\"\\b\\f\\n\\r\\t\"]",
    "[\"\\x\"]",
    "[\"\\u0041\"]",
    "[\"\\u00e9\"]",
    "[\"\\u00E9\"]",
    "[\"\\u20AC\"]",
    "[\"\\u0000\"]",
    "[\"a\\u0000b\"]",
    "[\"\\u001f\"]",
    "[\"\\uD83D\\uDE00\"]",
    "[\"\\ud83d\\ude00\"]",
    "[\"\\uD83D\"]",
    "[\"\\uD83Dx\"]",
    "[\"\\uD83D\\u0041\"]",
    "[\"\\uDE00\"]",
    "[\"\\uDE00\\uD83D\"]",
    "[\"\\uD83D\\uD83D\"]",
    "[\"\\u12\"]",
    "[\"\\u12G4\"]",
    "[\"\\u",
    "[\"\\",
    "[\"abc",
    "[\"a\tb\"]",
    "[\"a\nb\"]",
    "[\"a\x01\"]",
    "[\"a\x1f\"]",
    "[\"a\x7f\"]",
    "[\"\xc3\xa9\"]",
    "[\"\xc3\"]",
    "[\"\xc3x\"]",
    "[\"\xe2\x82\xac\"]",
    "[\"\xe2\x82\"]",
    "[\"\xf0\x9f\x98\x80\"]",
    "[\"\xf4\x90\x80\x80\"]",
    "[\"\xc0\xaf\"]",
    "[\"\xed\xa0\x80\"]",
    "[\"\xff\"]",
    "[\"\x80\"]",
    "[\xc3\xa9]",
    "[\"\xc3\\n\"]",
    "[\"\\n\xc3\xa9\\u00e9\"]",
    "['a']",
    /* objects */
    "{\"a\":1}",
    "{\"a\":1,\"b\":2}",
    "{\"b\":1,\"a\":2}",
    "{\"a\":1,\"a\":2}",
    "{\"a\":1,\"b\":2,\"a\":3}",
    "{\"a\"}",
    "{\"a\":}",
    "{\"a\" 1}",
    "{a:1}",
    "{\"a\":1,}",
    "{,\"a\":1}",
    "{\"a\":1 \"b\":2}",
    "{1:2}",
    "{\"\":0}",
    "{\"\\u0041\":1,\"A\":2}",
    "{\"\\u0000\":1}",
    "{\"a\\u0000\":1}",
    "{\"\\n\":{\"\\t\":[{\"x\\\"\":\"\\u00e9\"}]}}",
    "{\"a\":[1,{\"b\":null}]}",
    "{\"k\\u00e9\":{\"k\\u00e9\":1},\"z\":2}",
    "{\"a\":1}}",
    "{\"a\":1]",
    "[1}",
    "[{]}",
    "{\"\xc3\xa9\":1}",
    "{\"\xc3\":1}",
    /* the shapes fila reads */
    "{\"event\":\"TASK_END\",\"taskId\":\"123\",\"eventData\":\"{\\\"code\\\":"
    "0,"
    "\\\"data\\\":[{\\\"fileUrl\\\":\\\"http://x/y.png\\\",\\\"fileType\\\":"
    "\\\"png\\\"}]}\"}",
    "{\"tool\":\"upscaler\",\"variant\":\"pro\",\"inputs\":{\"image\":"
    "\"upl_0123\",\"scale\":2.5,\"seed\":-7,\"on\":true}}",
};

Test(jsonr, tricky_texts_read_as_jansson_reads_them)
{
	for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++)
		cr_expect_eq(agree(texts[i], strlen(texts[i]), 1), 0,
		    "text %zu: [%s]", i, texts[i]);
}

Test(jsonr, bytes_after_a_nul_or_a_length_are_not_read)
{
	cr_expect_eq(agree("{}\0{", 3, 1), 0);
	cr_expect_eq(agree("[1]\0", 4, 1), 0);
	cr_expect_eq(agree("[\"a\0b\"]", 7, 1), 0);
	cr_expect_eq(agree("[12345", 3, 1), 0); /* "[12": cut */
	/* jansson passes over one NUL that ends a number or a word */
	cr_expect_eq(agree("[1\0]", 4, 1), 0);
	cr_expect_eq(agree("[1\0\0]", 5, 1), 0);
	cr_expect_eq(agree("[1 \0]", 5, 1), 0);
	cr_expect_eq(agree("[true\0,1.5e3\0]", 16, 1), 0);
	cr_expect_eq(agree("[\"a\"\0]", 6, 1), 0);
	cr_expect_eq(agree("[\0]", 3, 1), 0);
	cr_expect_eq(agree("7\0", 2, 1), 0);
	cr_expect_eq(agree("{\"a\":1}", 5, 1), 0);
	cr_assert_null(jsonr_loadb(NULL, 0, 0, NULL));
	json_t *v = jsonr_loads("{\"a\":[1]}", 0, NULL);
	cr_assert(json_is_array(json_object_get(v, "a")));
	json_decref(v);
}

/* Nested n deep, with a scalar (or nothing) innermost. */
static char *
nested(int n, const char *inner)
{
	size_t k = strlen(inner);
	char *s = malloc(2 * (size_t)n + k + 1);

	memset(s, '[', (size_t)n);
	memcpy(s + n, inner, k);
	memset(s + n + k, ']', (size_t)n);
	s[2 * n + k] = '\0';
	return s;
}

Test(jsonr, depth_is_jansson_s)
{
	static const int depths[] = {1, 100, 2047, 2048, 2049, 5000};

	for (size_t i = 0; i < sizeof(depths) / sizeof(*depths); i++) {
		char *a = nested(depths[i], ""), *b = nested(depths[i], "1");
		cr_expect_eq(agree(a, strlen(a), 0), 0, "depth %d", depths[i]);
		cr_expect_eq(
		    agree(b, strlen(b), 0), 0, "depth %d, 1", depths[i]);
		free(a);
		free(b);
	}
}

Test(jsonr, errors_say_where)
{
	json_error_t e;

	cr_assert_null(jsonr_loadb("{\n \"a\": x}", 10, 0, &e));
	cr_expect_eq(e.line, 2);
	cr_expect_eq(e.column, 7);
	cr_expect_eq(e.position, 8);
	cr_expect_str_eq(e.text, "invalid token");
	cr_assert_null(
	    jsonr_loadb("{\"a\":1,\"a\":2}", 13, JSON_REJECT_DUPLICATES, &e));
	cr_expect_str_eq(e.text, "duplicate object key");
}

/* xorshift: the same texts on every run. */
static unsigned long long rnd_state = 88172645463325252ULL;
static unsigned
rnd(unsigned n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (unsigned)(rnd_state % n);
}

Test(jsonr, half_a_million_mutated_texts_read_as_jansson_reads_them,
    .timeout = 120)
{
	static const char *const bits[] = {"{", "}", "[", "]", ",", ":", "\"",
	    "\\", "\\u", "\\uD83D", "\\uDE00", "0", "1", "-", ".", "e", "+",
	    "E", " ", "\n", "true", "null", "false", "\"a\"", "\xc3", "\xa9",
	    "\xff", "\x01", "\x7f", "9223372036854775808", "1e400", "00",
	    "\\u0000"};
	char buf[512];
	int bad = 0;

	for (int i = 0; i < 500000 && bad < 5; i++) {
		const char *base = texts[rnd(sizeof(texts) / sizeof(*texts))];
		size_t n = strlen(base);
		int edits = 1 + (int)rnd(3);

		memcpy(buf, base, n);
		for (int k = 0; k < edits; k++) {
			const char *b = bits[rnd(sizeof(bits) / sizeof(*bits))];
			size_t bn = strlen(b),
			       at = n ? rnd((unsigned)n + 1) : 0;

			switch (rnd(3)) {
			case 0: /* insert */
				if (n + bn >= sizeof(buf))
					break;
				memmove(buf + at + bn, buf + at, n - at);
				memcpy(buf + at, b, bn);
				n += bn;
				break;
			case 1: /* delete a byte */
				if (at < n) {
					memmove(
					    buf + at, buf + at + 1, n - at - 1);
					n--;
				}
				break;
			default: /* flip a byte */
				if (at < n)
					buf[at] = (char)rnd(256);
			}
		}
		if (agree(buf, n, 1) != 0)
			bad++;
	}
	cr_assert_eq(bad, 0);
}
