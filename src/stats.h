/*
 * stats.h — the admin's view of recent work (GET /v1/admin/stats).
 */
#ifndef FILA_STATS_H
#define FILA_STATS_H

#include <jansson.h>

#include "job.h"
#include "tools.h"

#define STATS_FAILURES 20

/*
 * {"tools": {NAME: {completed, failed, cancelled, timeout, wait_p50_s,
 * run_p50_s, credits_net, provider_coins, provider_money}},
 * "recent_failures": [job]} over the finished jobs given (in the order
 * they finished): every configured tool is listed (zeros when idle),
 * "failed" leaves out timeouts, a median with no sample is null;
 * credits_net is what was charged minus what was refunded, provider_coins
 * and provider_money what the provider said the tasks cost (money a
 * decimal string, summed exactly, at least two decimals); the newest
 * STATS_FAILURES failed jobs, with the provider's messages. New
 * reference.
 */
json_t *stats_by_tool(const struct tools *t, const struct job_list *done);

#endif
