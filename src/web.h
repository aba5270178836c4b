/*
 * web.h — the browser files (demo page, admin page, fila.js) compiled into
 * the binary, so `fila serve` serves them from any directory.
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

/* The table, ended by an entry whose path is NULL (generated). */
extern const struct web_file web_files[];

/* The file served at path, or NULL. */
const struct web_file *web_find(const char *path);

#endif
