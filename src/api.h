/*
 * api.h — the REST handlers of docs/api.md: check the caller and the
 * request, call the rules, render the answer. Only this layer knows HTTP
 * statuses.
 */
#ifndef FILA_API_H
#define FILA_API_H

#include <stddef.h>

struct event_base;

#include "config.h"
#include "events.h"
#include "http.h"
#include "metrics.h"
#include "sched.h"
#include "store.h"

struct api;

struct outputs;
/* out: the outputs fila keeps (NULL with outputs.store = none). */
struct api *api_new(const struct config *cfg, struct store *st,
    struct sched *sc, struct events *ev, struct metrics *m,
    struct outputs *out);
void api_free(struct api *a);

/* An HTTP server on base serving the API (a must outlive it), with the
 * configured limits, CORS and upload spool (and the JWKS fetched from
 * now on); listening is the caller's. NULL with err set on failure. */
struct http_server *api_server(
    struct api *a, struct event_base *base, char *err, size_t errlen);

#endif
