/*
 * web.c — find a compiled-in browser file by its URL path.
 */
#include "web.h"

#include <string.h>

const struct web_file *
web_find(const char *path)
{
	for (const struct web_file *f = web_files; f->path; f++)
		if (strcmp(f->path, path) == 0)
			return f;
	return NULL;
}
