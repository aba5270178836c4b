/* Unit tests for src/jsonw.c (and job_to_text of src/job.c): the text is
 * byte for byte jansson's compact dump, whatever the value. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "jsonw.h"

static void
same_as_jansson(const json_t *v)
{
	char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	char *got = jsonw_dumps(v);

	cr_assert_not_null(want);
	cr_assert_str_eq(got, want);
	free(want);
	free(got);
}

Test(jsonw, scalars_as_jansson_writes_them)
{
	const double reals[] = {0.1, -0.0, 3.0, 1e300, -2.5e-7, 123456789.125};
	const json_int_t ints[] = {0, -1, 42, INT64_MAX, INT64_MIN};

	for (size_t i = 0; i < sizeof(reals) / sizeof(reals[0]); i++) {
		json_t *r = json_real(reals[i]);
		same_as_jansson(r);
		json_decref(r);
	}
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		json_t *n = json_integer(ints[i]);
		same_as_jansson(n);
		json_decref(n);
	}
	same_as_jansson(json_true());
	same_as_jansson(json_false());
	same_as_jansson(json_null());
}

Test(jsonw, every_escape_as_jansson_writes_it)
{
	char all[128];

	for (int c = 0; c < 128; c++)
		all[c] = (char)c;
	json_t *s = json_stringn(all, sizeof(all)); /* NUL included */
	cr_assert_not_null(s);
	same_as_jansson(s);
	json_decref(s);
	const char *texts[] = {"", "plain", "a\"b\\c/d", "é ü 日本 😀",
	    "\xe2\x80\xa8 line separator", "\x7f del", "tab\tnl\ncr\r"};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		json_t *t = json_string(texts[i]);
		same_as_jansson(t);
		json_decref(t);
	}
}

Test(jsonw, containers_keep_their_order)
{
	json_t *v = json_pack("{s:[], s:{}, s:[i, s, n, b, f], s:{s:{s:[]}}}",
	    "z", "a", "m", 1, "two", 3.5, 1, "b", "c", "d");

	cr_assert_not_null(v);
	same_as_jansson(v);
	json_decref(v);
}

/* UTF-8 as jansson judges it: json_stringn refuses exactly what
 * jsonw_utf8 refuses. */
Test(jsonw, utf8_judged_as_jansson_judges_it)
{
	const char *bad[] = {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80",
	    "\xf0\x80\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82",
	    "\x80", "a\xffz", "\xf5\x80\x80\x80"};
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_not(jsonw_utf8(bad[i], strlen(bad[i])), "%zu", i);
		cr_assert_null(json_stringn(bad[i], strlen(bad[i])));
	}
	for (int round = 0; round < 20000; round++) {
		unsigned char b[6];
		size_t n = 1 + round % 6;
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			b[i] = (unsigned char)(x >> 16);
			if (i > 0 && (x & 0x10000)) /* often a continuation */
				b[i] = (unsigned char)(0x80 | (b[i] & 0x3f));
		}
		json_t *s = json_stringn((const char *)b, n);
		cr_assert_eq(jsonw_utf8((const char *)b, n), s != NULL,
		    "%02x %02x %02x %02x (%zu)", b[0], b[1], b[2], b[3], n);
		if (s)
			same_as_jansson(s);
		json_decref(s);
	}
	/* The same bytes amid runs of ASCII, which are judged eight at a
	 * time: a bad or a good sequence before, across and after a word. */
	for (int round = 0; round < 20000; round++) {
		unsigned char b[40];
		size_t pre = (size_t)round % 17, n = 1 + (size_t)round % 5,
		       post;
		memset(b, 'a', sizeof(b));
		for (size_t i = 0; i < n; i++) {
			x = x * 1103515245u + 12345u;
			b[pre + i] = (unsigned char)(x >> 16);
			if (i > 0 && (x & 0x10000))
				b[pre + i] =
				    (unsigned char)(0x80 | (b[pre + i] & 0x3f));
		}
		post = (size_t)(round / 17) % 12;
		n += pre + post;
		json_t *s = json_stringn((const char *)b, n);
		cr_assert_eq(jsonw_utf8((const char *)b, n), s != NULL,
		    "at %zu of %zu", pre, n);
		json_decref(s);
	}
}

/* A random value: nested containers, strings of any code point. */
static json_t *
random_value(uint32_t *x, int depth)
{
	*x = *x * 1103515245u + 12345u;
	unsigned r = (*x >> 16) % (depth > 3 ? 5 : 7);
	char s[64];
	size_t n = 0;

	switch (r) {
	case 0:
		return json_integer((json_int_t)*x - 40000);
	case 1:
		return json_real((double)*x / 7.0);
	case 2:
		return (*x & 1) ? json_true() : json_null();
	case 3:
	case 4:
		while (n < 40) {
			*x = *x * 1103515245u + 12345u;
			uint32_t cp = (*x >> 8) % 0x110000;
			if (cp % 3 == 0)
				cp %= 0x80;
			if ((cp >= 0xD800 && cp <= 0xDFFF) || cp == 0)
				continue;
			if (cp < 0x80)
				s[n++] = (char)cp;
			else if (cp < 0x800)
				n += (size_t)sprintf(s + n, "%c%c",
				    0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
			else if (cp < 0x10000)
				n += (size_t)sprintf(s + n, "%c%c%c",
				    0xE0 | (cp >> 12),
				    0x80 | ((cp >> 6) & 0x3F),
				    0x80 | (cp & 0x3F));
			else
				n += (size_t)sprintf(s + n, "%c%c%c%c",
				    0xF0 | (cp >> 18),
				    0x80 | ((cp >> 12) & 0x3F),
				    0x80 | ((cp >> 6) & 0x3F),
				    0x80 | (cp & 0x3F));
			if ((*x & 7) == 0)
				break;
		}
		return json_stringn(s, n);
	case 5: {
		json_t *a = json_array();
		for (unsigned i = 0; i < (*x >> 20) % 4; i++)
			json_array_append_new(a, random_value(x, depth + 1));
		return a;
	}
	default: {
		json_t *o = json_object();
		for (unsigned i = 0; i < (*x >> 20) % 4; i++) {
			char key[16];
			snprintf(key, sizeof(key), "k%u\t\"%u", i, *x % 100);
			json_object_set_new(o, key, random_value(x, depth + 1));
		}
		return o;
	}
	}
}

Test(jsonw, random_values_as_jansson_writes_them)
{
	uint32_t x = 7;

	for (int i = 0; i < 3000; i++) {
		json_t *v = random_value(&x, 0);
		cr_assert_not_null(v);
		same_as_jansson(v);
		json_decref(v);
	}
}

static void
job_same(const struct job *j)
{
	json_t *o = job_to_json(j);
	char *want = json_dumps(o, JSON_COMPACT);
	char *got = job_to_text(j);

	cr_assert_str_eq(got, want);
	free(want);
	free(got);
	json_decref(o);
}

Test(jsonw, a_job_as_job_to_json_dumps_it)
{
	struct job j;

	job_init(&j);
	j.id = "job_1";
	j.user_id = "u\"1";
	j.tool = "upscaler";
	j.inputs = json_pack("{s:s, s:f}", "image", "up_1", "scale", 2.5);
	j.created_at = j.updated_at = 1765000000123;
	for (int s = JOB_QUEUED; s <= JOB_CANCELLED; s++) {
		j.status = (enum job_status)s;
		j.position = 3;
		job_same(&j);
	}
	j.variant = "pro";
	j.session_id = "tab-1";
	j.provider_task_id = "task\n9";
	j.error_code = "provider_error";
	j.error_message = "the provider said: «no»";
	j.outputs =
	    json_pack("[{s:s, s:s}]", "url", "http://x/o.png", "type", "image");
	j.provider_cost = json_pack("{s:i, s:s}", "coins", 3, "money", "0.1");
	j.charged = j.refunded = 1;
	j.started_at = 1765000001000;
	j.finished_at = 1765000002999;
	job_same(&j);
	j.error_message = NULL; /* "" then */
	job_same(&j);
	/* Text that is not UTF-8 is left out, as json_string() refuses it. */
	j.error_message = "bad \xff";
	job_same(&j);
	j.id = "\xc0\x80";
	job_same(&j);
	j.session_id = "\xed\xa0\x80";
	job_same(&j);
	json_decref(j.inputs);
	json_decref(j.outputs);
	json_decref(j.provider_cost);
}
