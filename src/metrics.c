/*
 * metrics.c — what an operator graphs: jobs by state and tool, slots and
 * queue, latencies as cumulative histograms, provider answers by account
 * and code, each account's health, and open streams. Counters and the
 * accounts' health live in memory (since start, as this process saw
 * them); job states and slots are read from the store at each scrape, so
 * every process reports the shared truth.
 */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "util.h"

static const double bounds[] = {
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))

static const char *const hist_names[HIST_COUNT] = {
    [HIST_SUBMIT] = "fila_submit_seconds",
    [HIST_HANDOFF] = "fila_handoff_seconds",
};
static const char *const hist_help[HIST_COUNT] = {
    [HIST_SUBMIT] = "Time of a submit's admission, rules and writes (not"
                    " the body's checks nor the commit).",
    [HIST_HANDOFF] = "Time from a slot taken to the provider's task id.",
};

struct hist {
	unsigned long long buckets[NBOUNDS + 1]; /* the last is +Inf */
	unsigned long long count;
	double sum;
};

struct answer {
	char *account;
	char *call;
	long code;
	unsigned long long n;
};

/* An account's health as last reported. */
struct health {
	char *account;
	struct account_gauges g;
};

struct metrics {
	struct hist hist[HIST_COUNT];
	struct answer *answers;
	size_t nanswers;
	struct health *health;
	size_t nhealth;
};

struct metrics *
metrics_new(void)
{
	return xcalloc(1, sizeof(struct metrics));
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nanswers; i++) {
		free(m->answers[i].account);
		free(m->answers[i].call);
	}
	free(m->answers);
	for (size_t i = 0; i < m->nhealth; i++)
		free(m->health[i].account);
	free(m->health);
	free(m);
}

void
metrics_observe(struct metrics *m, enum metric_hist h, double seconds)
{
	if (m == NULL)
		return;
	struct hist *x = &m->hist[h];
	size_t i = 0;

	while (i < NBOUNDS && seconds > bounds[i])
		i++;
	x->buckets[i]++;
	x->count++;
	x->sum += seconds;
}

void
metrics_provider(
    struct metrics *m, const char *account, const char *call, long code)
{
	if (m == NULL)
		return;
	if (account == NULL)
		account = "default";
	for (size_t i = 0; i < m->nanswers; i++) {
		struct answer *a = &m->answers[i];
		if (a->code == code && strcmp(a->call, call) == 0 &&
		    strcmp(a->account, account) == 0) {
			a->n++;
			return;
		}
	}
	m->answers =
	    xrealloc(m->answers, (m->nanswers + 1) * sizeof(*m->answers));
	m->answers[m->nanswers++] =
	    (struct answer){xstrdup(account), xstrdup(call), code, 1};
}

static struct health *
health_of(struct metrics *m, const char *account)
{
	for (size_t i = 0; i < m->nhealth; i++)
		if (strcmp(m->health[i].account, account) == 0)
			return &m->health[i];
	return NULL;
}

void
metrics_account(
    struct metrics *m, const char *account, const struct account_gauges *g)
{
	struct health *h;

	if (m == NULL)
		return;
	if ((h = health_of(m, account)) == NULL) {
		m->health =
		    xrealloc(m->health, (m->nhealth + 1) * sizeof(*m->health));
		h = &m->health[m->nhealth++];
		h->account = xstrdup(account);
	}
	h->g = *g;
}

static void
render_hist(FILE *f, const char *name, const char *help, const struct hist *h)
{
	unsigned long long cum = 0;

	fprintf(f, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (size_t i = 0; i < NBOUNDS; i++) {
		cum += h->buckets[i];
		fprintf(f, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], cum);
	}
	fprintf(f, "%s_bucket{le=\"+Inf\"} %llu\n", name, h->count);
	fprintf(
	    f, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, h->count);
}

/* One gauge of every account: its HELP and TYPE, then a line each. */
static void
gauge_head(FILE *f, const char *name, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

/* Each account of cfg: its slots, those held (the store's count), whether
 * it is up, its coins and tasks when known. */
static int
render_accounts(
    FILE *f, struct metrics *m, struct store *st, const struct config *cfg)
{
	json_t *used = NULL;
	int ok = store_slots_by_account(st, &used) == STORE_OK;

	gauge_head(f, "fila_account_slots", "Slots of each provider account.");
	for (size_t i = 0; i < cfg->naccounts; i++)
		fprintf(f, "fila_account_slots{account=\"%s\"} %lld\n",
		    cfg->accounts[i].name, (long long)cfg->accounts[i].slots);
	gauge_head(f, "fila_account_slots_used",
	    "Slots held now on each provider account.");
	for (size_t i = 0; i < cfg->naccounts; i++)
		fprintf(f, "fila_account_slots_used{account=\"%s\"} %lld\n",
		    cfg->accounts[i].name,
		    (long long)json_integer_value(
		        json_object_get(used, cfg->accounts[i].name)));
	gauge_head(f, "fila_account_up",
	    "1 when the account takes tasks, 0 while it is down (an answer"
	    " said its wallet or key cannot run anything).");
	for (size_t i = 0; i < cfg->naccounts; i++) {
		const struct health *h = health_of(m, cfg->accounts[i].name);
		fprintf(f, "fila_account_up{account=\"%s\"} %d\n",
		    cfg->accounts[i].name, h ? h->g.up : 1);
	}
	gauge_head(f, "fila_account_reachable",
	    "1 when the account's provider answered the last call, 0 when it"
	    " could not be reached (refused, DNS, TLS, timeout).");
	for (size_t i = 0; i < cfg->naccounts; i++) {
		const struct health *h = health_of(m, cfg->accounts[i].name);
		fprintf(f, "fila_account_reachable{account=\"%s\"} %d\n",
		    cfg->accounts[i].name, h ? h->g.reachable : 1);
	}
	gauge_head(f, "fila_account_remain_coins",
	    "Coins left on the account, as its last status answer said.");
	for (size_t i = 0; i < cfg->naccounts; i++) {
		const struct health *h = health_of(m, cfg->accounts[i].name);
		if (h && h->g.has_coins)
			fprintf(f,
			    "fila_account_remain_coins{account=\"%s\"} %.15g\n",
			    cfg->accounts[i].name, h->g.coins);
	}
	gauge_head(f, "fila_account_tasks",
	    "Tasks the account runs, as its last status answer said.");
	for (size_t i = 0; i < cfg->naccounts; i++) {
		const struct health *h = health_of(m, cfg->accounts[i].name);
		if (h && h->g.tasks >= 0)
			fprintf(f, "fila_account_tasks{account=\"%s\"} %ld\n",
			    cfg->accounts[i].name, h->g.tasks);
	}
	json_decref(used);
	return ok ? 0 : -1;
}

static int
render_jobs(FILE *f, struct store *st)
{
	json_t *counts = NULL, *by_status;
	const char *tool, *status;
	json_t *n;

	if (store_job_counts(st, &counts) != STORE_OK)
		return -1;
	fputs("# HELP fila_jobs Jobs in the store by tool and state.\n"
	      "# TYPE fila_jobs gauge\n",
	    f);
	json_object_foreach(counts, tool, by_status)
	{
		json_object_foreach(by_status, status, n)
		{
			fprintf(f, "fila_jobs{tool=\"%s\",state=\"%s\"} %lld\n",
			    tool, status, (long long)json_integer_value(n));
		}
	}
	json_decref(counts);
	return 0;
}

char *
metrics_render(
    struct metrics *m, struct store *st, const struct config *cfg, int streams)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct store_queue_view q = {0};

	/* Only a lack of memory fails a memory stream: as xmalloc does. */
	if (f == NULL)
		abort();
	int ok = render_jobs(f, st) == 0 &&
	         store_queue(st, -1, 0, &q) == STORE_OK &&
	         render_accounts(f, m, st, cfg) == 0;

	fprintf(f,
	    "# HELP fila_slots_total Slots configured.\n"
	    "# TYPE fila_slots_total gauge\nfila_slots_total %lld\n",
	    (long long)cfg->slots);
	fprintf(f,
	    "# HELP fila_slots_used Slots held now.\n"
	    "# TYPE fila_slots_used gauge\nfila_slots_used %lld\n",
	    (long long)q.used);
	fprintf(f,
	    "# HELP fila_queue_length Jobs waiting.\n"
	    "# TYPE fila_queue_length gauge\nfila_queue_length %lld\n",
	    (long long)q.total);
	for (int h = 0; h < HIST_COUNT; h++)
		render_hist(f, hist_names[h], hist_help[h], &m->hist[h]);
	fputs("# HELP fila_provider_answers_total Provider answers by call, "
	      "code (0 is success, -1 no answer at all: the provider could not "
	      "be reached) and account.\n"
	      "# TYPE fila_provider_answers_total counter\n",
	    f);
	for (size_t i = 0; i < m->nanswers; i++)
		fprintf(f,
		    "fila_provider_answers_total{call=\"%s\",code=\"%ld\","
		    "account=\"%s\"} %llu\n",
		    m->answers[i].call, m->answers[i].code,
		    m->answers[i].account, m->answers[i].n);
	fprintf(f,
	    "# HELP fila_sse_streams Event streams open.\n"
	    "# TYPE fila_sse_streams gauge\nfila_sse_streams %d\n",
	    streams);
	fclose(f);
	if (!ok) {
		free(buf);
		return NULL;
	}
	return buf;
}
