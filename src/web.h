/*
 * web.h — the browser files (demo page, admin page, fila.js) compiled into
 * the binary, so `fila serve` serves them from any directory, and the
 * headers they are served with.
 */
#ifndef FILA_WEB_H
#define FILA_WEB_H

#include <stddef.h>

struct web_file {
	const char *path; /* the URL path */
	const char *type; /* Content-Type */
	const unsigned char *data;
	size_t len;
};

struct web_header {
	const char *name;
	const char *value;
};

/* The table, ended by an entry whose path is NULL (generated). */
extern const struct web_file web_files[];

/* The file served at path, or NULL. */
const struct web_file *web_find(const char *path);

/* The headers f is served with besides its Content-Type (the security
 * headers of docs/api.md §11: Content-Security-Policy without inline
 * script or style, nosniff, no Referer, no framing): a static table ended
 * by an entry whose name is NULL. */
const struct web_header *web_headers(const struct web_file *f);

#endif
