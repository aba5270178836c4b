/*
 * sweep.h — uploads are kept limits.upload_retention seconds (docs/api.md
 * §11): a timer deletes older ones, rows and files, a few at a time. Jobs
 * keep their outputs; a job still waiting for an upload swept away fails
 * when it starts (its file is gone), refunded.
 */
#ifndef FILA_SWEEP_H
#define FILA_SWEEP_H

#include <stdint.h>

#include "store.h"

struct event_base;
struct sweep;

/* Sweep uploads older than retention_s (0: never) from now on. */
struct sweep *sweep_new(
    struct event_base *base, struct store *st, int64_t retention_s);
void sweep_free(struct sweep *w);

/* One pass now: at most limit uploads; how many went (-1: the store
 * failed). What the timer runs, for tests. */
int sweep_pass(struct store *st, int64_t retention_s, int limit);

#endif
