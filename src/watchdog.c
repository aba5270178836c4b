/*
 * watchdog.c — the timers that keep jobs moving when nothing else does.
 *
 * Each tick reads the active jobs from the store (the truth, so a restart
 * re-arms everything from the stored times) and:
 * - ends queued jobs older than queue_timeout and starting/running ones
 *   older than run_timeout (failed, "timeout", refunded by the store);
 * - polls the provider (its account's) for a running job with no
 *   callback after poll_after seconds, then again with a growing
 *   interval, a bounded number of times; what the provider says finishes
 *   the job;
 * - renews this process's lease, taking over the jobs of processes
 *   sharing the store whose lease ran out (sched_lease).
 */
#include "watchdog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "list.h"
#include "util.h"

#define POLL_MAX 12
#define EXPIRE_BATCH 100 /* jobs expired per tick at most */
#define POLL_INTERVAL_MAX_MS 60000

/* A running job being polled. */
struct poll {
	struct watchdog *w;
	char *job_id;
	int64_t next_ms; /* wall clock of the next poll */
	int polls;
	int in_flight;
	int seen;         /* still running at the last tick */
	struct list link; /* in watchdog.polls */
};

struct watchdog {
	const struct config *cfg;
	struct store *st;
	struct sched *sc;
	struct event *tick;
	struct list polls;
	int64_t leased_at; /* when this process's lease was last renewed */
};

static void
poll_free(struct poll *p)
{
	list_remove(&p->link);
	free(p->job_id);
	free(p);
}

static struct poll *
poll_get(struct watchdog *w, const struct job *j)
{
	struct list *it;
	struct poll *p;

	list_each(it, &w->polls)
	{
		p = list_entry(it, struct poll, link);
		if (strcmp(p->job_id, j->id) == 0)
			return p;
	}
	p = xcalloc(1, sizeof(*p));
	p->w = w;
	p->job_id = xstrdup(j->id);
	p->next_ms = j->started_at + w->cfg->rh_poll_after * 1000;
	list_add_tail(&w->polls, &p->link);
	return p;
}

static void
on_polled(void *arg, const struct provider_outcome *o)
{
	struct poll *p = arg;
	struct watchdog *w = p->w;
	struct job j;
	int64_t wait = w->cfg->rh_poll_after * 1000;

	p->in_flight = 0;
	p->polls++;
	for (int i = 1; i < p->polls && wait < POLL_INTERVAL_MAX_MS; i++)
		wait *= 2;
	p->next_ms =
	    now_ms() +
	    (wait < POLL_INTERVAL_MAX_MS ? wait : POLL_INTERVAL_MAX_MS);
	job_init(&j);
	if (store_job_get(w->st, p->job_id, NULL, &j) == STORE_OK) {
		sched_polled(w->sc, j.account, o->code, o->message);
		if (j.status == JOB_RUNNING)
			sched_outcome(w->sc, &j, o);
	}
	job_cleanup(&j);
}

static void
poll_due(struct watchdog *w, const struct job *j, int64_t now)
{
	struct poll *p = poll_get(w, j);

	p->seen = 1;
	if (p->in_flight || p->polls >= POLL_MAX || now < p->next_ms ||
	    j->provider_task_id == NULL)
		return;
	p->in_flight = 1;
	if (provider_poll(sched_provider(w->sc, j->account),
	        j->provider_task_id, on_polled, p) != 0)
		p->in_flight = 0;
}

static void
expire(struct watchdog *w, const struct job *j, const char *limit)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "the job was %s longer than %s",
	    job_status_name(j->status), limit);
	if (sched_expire(w->sc, j->id, msg) == SCHED_UNAVAILABLE)
		fprintf(
		    stderr, "fila: expire %s: %s\n", j->id, store_error(w->st));
}

/* Expire what waited past its limit: only those jobs are read. */
static void
check_expired(struct watchdog *w, enum job_status s, int64_t limit_s,
    const char *limit, int64_t now)
{
	struct job_list l = {0};

	if (store_jobs_older(
	        w->st, s, now - limit_s * 1000, EXPIRE_BATCH, &l) == STORE_OK)
		for (size_t i = 0; i < l.n; i++)
			expire(w, &l.v[i], limit);
	job_list_cleanup(&l);
}

/* Poll the running jobs this process carries whose callback is due (a
 * few: one per slot); other processes poll theirs. */
static void
check_running(struct watchdog *w, int64_t now)
{
	const char *me = store_process(w->st);
	struct job_list l = {0};

	if (store_jobs_in(w->st, JOB_RUNNING, &l) == STORE_OK)
		for (size_t i = 0; i < l.n; i++)
			if (l.v[i].starter == NULL ||
			    strcmp(l.v[i].starter, me) == 0)
				poll_due(w, &l.v[i], now);
	job_list_cleanup(&l);
}

/* Forget polls of jobs that are no longer running (unless in flight). */
static void
prune(struct watchdog *w)
{
	struct list *it, *tmp;

	list_each_safe(it, tmp, &w->polls)
	{
		struct poll *p = list_entry(it, struct poll, link);
		if (!p->seen && !p->in_flight)
			poll_free(p);
		else
			p->seen = 0;
	}
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct watchdog *w = arg;
	int64_t now = now_ms();

	check_expired(
	    w, JOB_QUEUED, w->cfg->queue_timeout, "queue_timeout", now);
	check_expired(w, JOB_STARTING, w->cfg->run_timeout, "run_timeout", now);
	check_expired(w, JOB_RUNNING, w->cfg->run_timeout, "run_timeout", now);
	check_running(w, now);
	prune(w);
	if (now - w->leased_at >= SCHED_LEASE_MS / 4) {
		w->leased_at = now;
		sched_lease(w->sc, 0);
	}
}

struct watchdog *
watchdog_new(struct event_base *base, const struct config *cfg,
    struct store *st, struct sched *sc, int tick_ms)
{
	struct watchdog *w = xcalloc(1, sizeof(*w));
	struct timeval tv = timeval_ms(tick_ms);

	w->cfg = cfg;
	w->st = st;
	w->sc = sc;
	w->leased_at = now_ms();
	list_init(&w->polls);
	w->tick = event_new(base, -1, EV_PERSIST, on_tick, w);
	event_add(w->tick, &tv);
	return w;
}

void
watchdog_free(struct watchdog *w)
{
	if (w == NULL)
		return;
	event_free(w->tick);
	while (!list_empty(&w->polls))
		poll_free(list_entry(w->polls.next, struct poll, link));
	free(w);
}
