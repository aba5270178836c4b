/*
 * api.h — the REST handlers of API.md §5–6: parse and check the request,
 * call the rules, render the answer. Only this layer knows HTTP statuses.
 */
#ifndef FILA_API_H
#define FILA_API_H

#include <stddef.h>

#include "config.h"
#include "events.h"
#include "http.h"
#include "metrics.h"
#include "sched.h"
#include "store.h"

struct api;

struct api *api_new(const struct config *cfg, struct store *st,
    struct sched *sc, struct events *ev, struct metrics *m);
void api_free(struct api *a);

/* The route table, valid as long as a lives. */
const struct http_route *api_routes(const struct api *a, size_t *n);

#endif
