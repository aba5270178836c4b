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
/* Count one provider answer: the account asked (NULL: "default"), the
 * call ("submit", "cancel", "status", "poll") and provider_result_code() of its
 * answer (0 is success, PROVIDER_NO_ANSWER none at all). */
void metrics_provider(
    struct metrics *m, const char *account, const char *call, long code);

/* What an account is now, for its gauges. */
struct account_gauges {
	int up;        /* takes tasks; 0 while down (its wallet, its key) */
	int reachable; /* its provider answered the last call at all */
	int has_coins; /* coins is known */
	double coins;  /* coins left */
	long tasks;    /* tasks it runs; < 0: not known */
};

/* Account's gauges as g says. An account never reported is shown up and
 * reachable, its coins and tasks unknown. */
void metrics_account(
    struct metrics *m, const char *account, const struct account_gauges *g);

/* The Prometheus text of everything, with the store's job counts and
 * slots (each account's of cfg with what metrics_account said of it),
 * and streams SSE streams open. The caller frees it; NULL when
 * the store cannot be read. */
char *metrics_render(
    struct metrics *m, struct store *st, const struct config *cfg, int streams);

#endif
