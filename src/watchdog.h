/*
 * watchdog.h — nothing stays stuck (docs/api.md §4 rule 6): a timer on the loop
 * ends jobs queued or running past their limits, and polls the provider
 * for running jobs whose callback has not come (docs/api.md §7).
 */
#ifndef FILA_WATCHDOG_H
#define FILA_WATCHDOG_H

#include "config.h"
#include "provider.h"
#include "sched.h"
#include "store.h"

struct event_base;
struct watchdog;

/* Start watching every tick_ms milliseconds. */
struct watchdog *watchdog_new(struct event_base *base, const struct config *cfg,
    struct store *st, struct sched *sc, struct provider *p, int tick_ms);
/* Stop; polls in flight are forgotten (free the provider after). */
void watchdog_free(struct watchdog *w);

#endif
