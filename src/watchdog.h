/*
 * watchdog.h — nothing stays stuck (docs/api.md §4 rule 6): a timer on the loop
 * ends jobs queued or running past their limits, and polls the provider
 * for running jobs whose callback has not come (docs/api.md §7).
 */
#ifndef FILA_WATCHDOG_H
#define FILA_WATCHDOG_H

#include "config.h"
#include "sched.h"
#include "store.h"

struct event_base;
struct watchdog;

/* Start watching every tick_ms milliseconds; a job is polled at the
 * provider of its account (sched_provider). */
struct watchdog *watchdog_new(struct event_base *base, const struct config *cfg,
    struct store *st, struct sched *sc, int tick_ms);
/* Stop; polls in flight are forgotten (free sched, and with it the
 * providers, after). */
void watchdog_free(struct watchdog *w);

#endif
