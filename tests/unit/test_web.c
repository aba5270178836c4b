/*
 * test_web.c — the compiled-in browser files: web_files is generated from
 * web/ and clients/js at build time, so these tests check that the pages a
 * browser asks for are in the table, typed right and not empty.
 */
#include <criterion/criterion.h>

#include <string.h>

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
