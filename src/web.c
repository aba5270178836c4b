/*
 * web.c — find a compiled-in browser file by its URL path, and say which
 * headers it goes out with.
 *
 * The pages hold no inline script and no style= attribute (their .js and
 * style.css files do it all), so the policy forbids both: text that reaches
 * the DOM (a provider's error message, a user id) cannot run. Pictures and
 * videos are the exception to 'self': a result is shown from fila's own
 * /v1/outputs or straight from the provider's http(s) URL, and a chosen file
 * is previewed from a blob: URL. Everything else, fetches and event streams
 * included, goes to fila itself.
 */
#include "web.h"

#include <string.h>

#define WEB_CSP                                                                \
	"default-src 'self'; "                                                 \
	"script-src 'self'; "                                                  \
	"style-src 'self'; "                                                   \
	"img-src 'self' data: blob: https: http:; "                            \
	"media-src 'self' blob: https: http:; "                                \
	"connect-src 'self'; "                                                 \
	"object-src 'none'; "                                                  \
	"frame-ancestors 'none'; "                                             \
	"base-uri 'none'; "                                                    \
	"form-action 'self'"

static const struct web_header headers[] = {
    {"Content-Security-Policy", WEB_CSP},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
    {"X-Frame-Options", "DENY"},
    {NULL, NULL},
};

const struct web_file *
web_find(const char *path)
{
	for (const struct web_file *f = web_files; f->path; f++)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}

const struct web_header *
web_headers(const struct web_file *f)
{
	(void)f; /* the pages and what they load share one policy */
	return headers;
}
