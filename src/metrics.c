/*
 * metrics.c — what an operator graphs: jobs by state and tool, slots and
 * queue, latencies as cumulative histograms, provider answers by code and
 * open streams. Counters live in memory (since start); job states are read
 * from the store at each scrape, so every process reports the shared truth.
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
    [HIST_SUBMIT] = "Time to answer POST /v1/jobs.",
    [HIST_HANDOFF] = "Time from a slot taken to the provider's task id.",
};

struct hist {
	unsigned long long buckets[NBOUNDS + 1]; /* the last is +Inf */
	unsigned long long count;
	double sum;
};

struct answer {
	char *call;
	long code;
	unsigned long long n;
};

struct metrics {
	struct hist hist[HIST_COUNT];
	struct answer *answers;
	size_t nanswers;
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
	for (size_t i = 0; i < m->nanswers; i++)
		free(m->answers[i].call);
	free(m->answers);
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
metrics_provider(struct metrics *m, const char *call, long code)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->nanswers; i++) {
		if (m->answers[i].code == code &&
		    strcmp(m->answers[i].call, call) == 0) {
			m->answers[i].n++;
			return;
		}
	}
	m->answers =
	    xrealloc(m->answers, (m->nanswers + 1) * sizeof(*m->answers));
	m->answers[m->nanswers++] = (struct answer){xstrdup(call), code, 1};
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
	int ok =
	    render_jobs(f, st) == 0 && store_queue(st, -1, 0, &q) == STORE_OK;

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
	fputs("# HELP fila_provider_answers_total Provider answers by call "
	      "and code (0 is success).\n"
	      "# TYPE fila_provider_answers_total counter\n",
	    f);
	for (size_t i = 0; i < m->nanswers; i++)
		fprintf(f,
		    "fila_provider_answers_total{call=\"%s\",code=\"%ld\"} "
		    "%llu\n",
		    m->answers[i].call, m->answers[i].code, m->answers[i].n);
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
