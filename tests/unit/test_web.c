/*
 * test_web.c — the compiled-in browser files: web_files is generated from
 * web/ and clients/js at build time, so these tests check that the pages a
 * browser asks for are in the table, typed right and not empty.
 */
#include <criterion/criterion.h>

#include <string.h>
#include <strings.h>

#include "web.h"

/* The file at path, which must exist with a Content-Type starting with
 * type and a body holding needle. */
static const struct web_file *
expect_file(const char *path, const char *type, const char *needle)
{
	const struct web_file *f = web_find(path);

	cr_assert_not_null(f, "no file at %s", path);
	cr_assert_str_eq(f->path, path);
	cr_assert_not_null(f->type);
	cr_assert_eq(strncmp(f->type, type, strlen(type)), 0,
	    "%s is typed %s, not %s", path, f->type, type);
	cr_assert_not_null(f->data);
	cr_assert_gt(f->len, 0, "%s is empty", path);
	cr_assert_not_null(memmem(f->data, f->len, needle, strlen(needle)),
	    "%s does not contain %s", path, needle);
	return f;
}

Test(web, demo_page_at_root)
{
	expect_file("/", "text/html", "<html");
}

Test(web, admin_page)
{
	expect_file("/admin", "text/html", "<html");
}

Test(web, client_library)
{
	expect_file("/fila.js", "text/javascript", "fila");
}

Test(web, html_is_utf8)
{
	cr_assert_str_eq(web_find("/")->type, "text/html; charset=utf-8");
	cr_assert_str_eq(
	    web_find("/fila.js")->type, "text/javascript; charset=utf-8");
}

Test(web, the_table_is_ended_and_paths_unique)
{
	size_t n = 0;

	for (const struct web_file *f = web_files; f->path; f++, n++) {
		cr_assert_eq(f->path[0], '/', "%s", f->path);
		cr_assert_eq(web_find(f->path), f, "%s twice", f->path);
	}
	cr_assert_geq(n, 3);
}

Test(web, unknown_paths)
{
	cr_assert_null(web_find("/nope"));
	cr_assert_null(web_find(""));
	cr_assert_null(web_find("/admin/"));
	cr_assert_null(web_find("/FILA.JS"));
	cr_assert_null(web_find("fila.js"));
}

/* ---- the headers the files go out with (docs/api.md §11) ----------------- */

/* The value of header name for f, or NULL; fails if it is there twice. */
static const char *
header(const struct web_file *f, const char *name)
{
	const char *value = NULL;

	for (const struct web_header *h = web_headers(f); h->name; h++) {
		if (strcasecmp(h->name, name) != 0)
			continue;
		cr_assert_null(value, "%s: %s twice", f->path, name);
		value = h->value;
	}
	return value;
}

/* The directive of the policy csp named dir ("script-src 'self'"), copied
 * into buf, or "" when there is none. */
static const char *
directive(const char *csp, const char *dir, char *buf, size_t size)
{
	size_t n = strlen(dir);

	buf[0] = '\0';
	for (const char *p = csp; *p;) {
		size_t len = strcspn(p, ";");

		while (*p == ' ')
			p++, len--;
		if (strncmp(p, dir, n) == 0 && (p[n] == ' ' || p[n] == ';')) {
			cr_assert_lt(len, size);
			memcpy(buf, p, len);
			buf[len] = '\0';
			return buf;
		}
		p += len + (p[len] == ';');
	}
	return buf;
}

Test(web, every_file_carries_the_security_headers)
{
	size_t n = 0;

	for (const struct web_file *f = web_files; f->path; f++, n++) {
		cr_assert_not_null(
		    header(f, "Content-Security-Policy"), "%s", f->path);
		cr_assert_str_eq(header(f, "X-Content-Type-Options"), "nosniff",
		    "%s", f->path);
		cr_assert_str_eq(
		    header(f, "Referrer-Policy"), "no-referrer", "%s", f->path);
		cr_assert_str_eq(
		    header(f, "X-Frame-Options"), "DENY", "%s", f->path);
	}
	cr_assert_geq(n, 3);
}

Test(web, the_policy_forbids_inline_script_and_style_and_framing)
{
	const char *csp = header(web_find("/"), "Content-Security-Policy");
	char d[256];

	cr_assert_str_eq(
	    directive(csp, "default-src", d, sizeof d), "default-src 'self'");
	cr_assert_str_eq(
	    directive(csp, "script-src", d, sizeof d), "script-src 'self'");
	cr_assert_str_eq(
	    directive(csp, "style-src", d, sizeof d), "style-src 'self'");
	cr_assert_str_eq(
	    directive(csp, "connect-src", d, sizeof d), "connect-src 'self'");
	cr_assert_str_eq(directive(csp, "frame-ancestors", d, sizeof d),
	    "frame-ancestors 'none'");
	cr_assert_str_eq(
	    directive(csp, "object-src", d, sizeof d), "object-src 'none'");
	cr_assert_str_eq(
	    directive(csp, "base-uri", d, sizeof d), "base-uri 'none'");
	cr_assert_null(strstr(csp, "unsafe"), "%s", csp);
	cr_assert_null(strstr(csp, "*"), "%s", csp);
	/* /admin is no looser than / */
	cr_assert_str_eq(
	    header(web_find("/admin"), "Content-Security-Policy"), csp);
}

/* Results come from fila's /v1/outputs or the provider's http(s) URL, a
 * chosen file's preview from blob:; nothing else is opened up. */
Test(web, the_policy_lets_results_and_previews_show)
{
	const char *csp = header(web_find("/"), "Content-Security-Policy");
	char d[256];

	cr_assert_str_eq(directive(csp, "img-src", d, sizeof d),
	    "img-src 'self' data: blob: https: http:");
	cr_assert_str_eq(directive(csp, "media-src", d, sizeof d),
	    "media-src 'self' blob: https: http:");
}

/* http_reply_header drops a value holding CR or LF: every one must go out. */
Test(web, header_values_are_one_line)
{
	for (const struct web_header *h = web_headers(web_find("/")); h->name;
	     h++) {
		cr_assert_null(strpbrk(h->name, "\r\n: "), "%s", h->name);
		cr_assert_null(strpbrk(h->value, "\r\n"), "%s", h->name);
		cr_assert_gt(strlen(h->value), 0, "%s", h->name);
	}
}

/* What the policy forbids is not in the files: it would be refused. */
static void
expect_absent(const struct web_file *f, const char *needle)
{
	cr_assert_null(memmem(f->data, f->len, needle, strlen(needle)),
	    "%s holds %s, which the Content-Security-Policy refuses", f->path,
	    needle);
}

Test(web, the_pages_hold_no_inline_script_or_style)
{
	for (const struct web_file *f = web_files; f->path; f++) {
		if (strncmp(f->type, "text/html", 9) == 0) {
			expect_absent(f, "style=");
			expect_absent(f, "<style");
			expect_absent(f, "<script>");
			expect_absent(f, " onclick=");
			expect_absent(f, " onload=");
			expect_absent(f, "javascript:");
		} else if (strncmp(f->type, "text/javascript", 15) == 0) {
			/* h('div', { style: '…' }) sets a style attribute */
			expect_absent(f, "style: '");
			expect_absent(f, "style: \"");
			expect_absent(f, "style: `");
			expect_absent(f, "setAttribute('style'");
			expect_absent(f, "innerHTML");
			expect_absent(f, "eval(");
		}
	}
}

Test(web, every_html_script_is_a_file)
{
	for (const struct web_file *f = web_files; f->path; f++) {
		const char *p = (const char *)f->data;
		const char *end = p + f->len;

		if (strncmp(f->type, "text/html", 9) != 0)
			continue;
		while ((p = memmem(p, end - p, "<script", 7)) != NULL) {
			const char *close = memchr(p, '>', end - p);

			cr_assert_not_null(
			    close, "%s: <script unclosed", f->path);
			cr_assert_not_null(memmem(p, close - p, " src=\"/", 7),
			    "%s: a <script> without src", f->path);
			p = close;
		}
	}
}
