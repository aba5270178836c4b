/*
 * metrics.h — counters and histograms for GET /metrics (Prometheus text).
 */
#ifndef FILA_METRICS_H
#define FILA_METRICS_H

#include "config.h"
#include "store.h"

struct metrics;

enum metric_hist {
	HIST_SUBMIT,  /* POST /v1/jobs, request to answer */
	HIST_HANDOFF, /* a slot taken to the provider's task id */
	HIST_COUNT,
};

struct metrics *metrics_new(void);
void metrics_free(struct metrics *m);

/* Record one duration in seconds. NULL m is a no-op. */
void metrics_observe(struct metrics *m, enum metric_hist h, double seconds);
/* Count one provider answer: call ("submit", "cancel", "poll") and the
 * provider's code (HTTP status or business code; 0 is success). */
void metrics_provider(struct metrics *m, const char *call, long code);

/* The Prometheus text of everything, with the store's job counts and
 * slots, and streams SSE streams open. The caller frees it; NULL when
 * the store cannot be read. */
char *metrics_render(
    struct metrics *m, struct store *st, const struct config *cfg, int streams);

#endif
