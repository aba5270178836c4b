/*
 * stats.c — counts, medians and money of finished jobs per tool. The wait
 * is from creation to start (the queue), the run from start to the end of
 * a completed job (the provider). What users paid (credits kept: charged
 * and not refunded) sits beside what the provider said the tasks cost, its
 * money summed exactly (money.c), so the page can show a margin.
 */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

#include "money.h"
#include "util.h"

struct acc {
	json_int_t completed, failed, cancelled, timeout;
	double *wait, *run;
	size_t nwait, nrun;
	json_int_t credits_net; /* charged minus refunded */
	json_int_t coins;
	struct money money;
};

/* What the provider said job j cost, added up. A money text that does not
 * read, or a sum that would overflow, is left out rather than guessed. */
static void
add_cost(struct acc *a, const struct job *j)
{
	json_t *coins = json_object_get(j->provider_cost, "coins");
	json_t *money = json_object_get(j->provider_cost, "money");
	struct money m;

	if (json_is_integer(coins))
		a->coins += json_integer_value(coins);
	if (json_is_string(money) &&
	    money_parse(json_string_value(money), &m) == 0)
		money_add(&a->money, &m);
}

static json_t *
median_or_null(double *v, size_t n)
{
	return n ? json_real(median(v, n)) : json_null();
}

static void
add(struct acc *a, const struct job *j)
{
	if (j->status == JOB_COMPLETED)
		a->completed++;
	else if (j->status == JOB_CANCELLED)
		a->cancelled++;
	else if (j->error_code && strcmp(j->error_code, JOB_ERR_TIMEOUT) == 0)
		a->timeout++;
	else
		a->failed++;
	if (j->started_at && j->started_at >= j->created_at)
		a->wait[a->nwait++] =
		    (double)(j->started_at - j->created_at) / 1000.0;
	if (j->status == JOB_COMPLETED && j->started_at &&
	    j->finished_at >= j->started_at)
		a->run[a->nrun++] =
		    (double)(j->finished_at - j->started_at) / 1000.0;
	a->credits_net += j->cost * (j->charged - j->refunded);
	add_cost(a, j);
}

/* The newest failed jobs first (done is in finishing order). */
static json_t *
recent_failures(const struct job_list *done)
{
	json_t *a = json_array();

	for (size_t i = done->n;
	     i-- > 0 && json_array_size(a) < STATS_FAILURES;)
		if (done->v[i].status == JOB_FAILED) {
			json_t *o = job_to_json(&done->v[i]);
			json_object_set_new(o, "account",
			    done->v[i].account ? json_string(done->v[i].account)
			                       : json_null());
			json_array_append_new(a, o);
		}
	return a;
}

json_t *
stats_by_tool(const struct tools *t, const struct job_list *done)
{
	json_t *tools = json_object();

	for (size_t i = 0; i < t->n; i++) {
		struct acc a = {0};
		char money[40];
		a.wait = xcalloc(done->n + 1, sizeof(double));
		a.run = xcalloc(done->n + 1, sizeof(double));
		for (size_t k = 0; k < done->n; k++)
			if (strcmp(done->v[k].tool, t->v[i].name) == 0)
				add(&a, &done->v[k]);
		json_object_set_new(tools, t->v[i].name,
		    json_pack("{s:I, s:I, s:I, s:I, s:o, s:o, s:I, s:I, s:s}",
		        "completed", a.completed, "failed", a.failed,
		        "cancelled", a.cancelled, "timeout", a.timeout,
		        "wait_p50_s", median_or_null(a.wait, a.nwait),
		        "run_p50_s", median_or_null(a.run, a.nrun),
		        "credits_net", a.credits_net, "provider_coins", a.coins,
		        "provider_money",
		        money_format(&a.money, 2, money, sizeof(money))));
		free(a.wait);
		free(a.run);
	}
	return json_pack("{s:o, s:o}", "tools", tools, "recent_failures",
	    recent_failures(done));
}
