/*
 * jsonr.h — JSON text read into jansson values, in place.
 */
#ifndef FILA_JSONR_H
#define FILA_JSONR_H

#include <stddef.h>

#include <jansson.h>

/* json_loadb(buf, len, flags, err), the same texts accepted and the same
 * values made, for flags made of JSON_DECODE_ANY and
 * JSON_REJECT_DUPLICATES; err (may be NULL) says why a text was refused,
 * in words of its own. */
json_t *jsonr_loadb(
    const char *buf, size_t len, size_t flags, json_error_t *err);

/* The same for a NUL-terminated text (json_loads). */
json_t *jsonr_loads(const char *s, size_t flags, json_error_t *err);

#endif
