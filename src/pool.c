/*
 * pool.c — the provider accounts (pool.h): one provider each, whether each
 * is up, and what its last status answer said.
 *
 * Two ideas to read it by:
 * - An account goes down on an answer that says it cannot run anything
 *   (its wallet, its key: sched tells the pool) and comes back up by
 *   itself runninghub.down_for seconds later, on a timer; whoever watches
 *   the pool is told, so that the queue may use it again. A wallet still
 *   empty then answers the same, and it goes down again.
 * - Each account's status (accountStatus: coins left, tasks running) is
 *   asked on a timer of its own, one question at a time; it is what the
 *   admin views and /metrics show, never what decides a start.
 * - Every answer passes through pool_answered: one that never came (the
 *   provider refused the connection, timed out, …) makes the account
 *   unreachable until the next answer of any kind. That is shown, and
 *   logged once a minute at most, but changes nothing of what runs where:
 *   the starts retry by themselves.
 */
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "money.h"
#include "runninghub.h"
#include "util.h"

/* An unreachable account is logged again after this long at most. */
#define UNREACHABLE_LOG_MS 60000

struct member {
	struct pool *pool;
	size_t i;
	const struct account *cfg;
	struct provider *prov;
	int down;
	char *down_reason; /* "416 TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET" */
	char *unreachable; /* the last call's transport error; NULL: the
	                    * provider answered it */
	int64_t unreachable_logged; /* when that was last logged (ms) */
	int unreachable_said;       /* logged, its end not yet */
	json_t *coins;              /* remainCoins as last said, or NULL */
	long tasks; /* currentTaskCounts as last said, -1: never */
	int asking; /* a status question is out */
	struct event *up_ev;
	struct event *status_ev;
};

struct pool {
	struct event_base *base;
	const struct config *cfg;
	struct metrics *m;
	struct member *v;
	size_t n;
	int shared; /* one provider, the caller's, for every account */
	void (*watch)(void *);
	void *watch_arg;
};

static void on_status_due(evutil_socket_t fd, short what, void *arg);

/* The member's gauges, as it is now. */
static void
report(struct member *a)
{
	struct account_gauges g = {
	    .up = !a->down,
	    .reachable = a->unreachable == NULL,
	    .has_coins = a->coins != NULL,
	    .coins = a->coins ? json_number_value(a->coins) : 0,
	    .tasks = a->tasks,
	};

	metrics_account(a->pool->m, a->cfg->name, &g);
}

static void
status_later(struct member *a, int64_t ms)
{
	struct timeval tv = timeval_ms(ms);

	evtimer_add(a->status_ev, &tv);
}

static void
notify(struct pool *p)
{
	if (p->watch)
		p->watch(p->watch_arg);
}

/* ---- down and up ---------------------------------------------------- */

static void
on_up(evutil_socket_t fd, short what, void *arg)
{
	struct member *a = arg;

	a->down = 0;
	free(a->down_reason);
	a->down_reason = NULL;
	fprintf(stderr, "fila: account %s is up again\n", a->cfg->name);
	report(a);
	notify(a->pool);
}

int
pool_down(struct pool *p, size_t i, long code, const char *msg)
{
	struct member *a = &p->v[i];
	struct timeval tv = timeval_ms(p->cfg->rh_down_for * 1000);

	if (a->down)
		return 0; /* answers to calls sent before it went down */
	a->down = 1;
	a->down_reason = xasprintf("%ld %s", code, msg ? msg : "");
	fprintf(stderr, "fila: account %s is down for %lld s: %s\n",
	    a->cfg->name, (long long)p->cfg->rh_down_for, a->down_reason);
	evtimer_add(a->up_ev, &tv);
	report(a);
	return 1;
}

/* ---- reachable ------------------------------------------------------ */

void
pool_answered(
    struct pool *p, size_t i, const char *call, long code, const char *message)
{
	struct member *a = &p->v[i];
	const char *why = message ? message : "no answer";
	int64_t now = now_ms();

	metrics_provider(p->m, a->cfg->name, call, code);
	if (code != PROVIDER_NO_ANSWER) {
		if (a->unreachable == NULL)
			return;
		/* Said only when its going was: a provider that comes
		 * and goes is one line a minute, not two per call. */
		if (a->unreachable_said) {
			fprintf(stderr,
			    "fila: account %s: the provider answers "
			    "again\n",
			    a->cfg->name);
			a->unreachable_said = 0;
		}
		free(a->unreachable);
		a->unreachable = NULL;
		report(a);
		return;
	}
	if (a->unreachable_logged == 0 ||
	    now - a->unreachable_logged >= UNREACHABLE_LOG_MS) {
		fprintf(stderr,
		    "fila: account %s: the provider at %s %scannot be "
		    "reached (%s): %s\n",
		    a->cfg->name, a->cfg->base_url,
		    a->unreachable_said ? "still " : "", call, why);
		a->unreachable_logged = now;
		a->unreachable_said = 1;
	}
	free(a->unreachable);
	a->unreachable = xstrdup(why);
	report(a);
}

int
pool_reachable(const struct pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->v[i].unreachable)
			return 0;
	return 1;
}

/* ---- status --------------------------------------------------------- */

/* remainCoins as a JSON number: an integer when it is one. */
static json_t *
coins_of(const char *text)
{
	struct money m;
	long long n;

	if (parse_ll(text, &n) == 0)
		return json_integer(n);
	if (money_parse(text, &m) == 0)
		return json_real((double)m.nano / 1e9);
	return NULL;
}

static void
on_status(void *arg, const struct provider_result *res)
{
	struct member *a = arg;
	struct pool *p = a->pool;

	a->asking = 0;
	pool_answered(
	    p, a->i, "status", provider_result_code(res), res->message);
	if (res->rc == PROVIDER_OK) {
		a->tasks = res->count;
		json_decref(a->coins);
		a->coins = res->coins ? coins_of(res->coins) : NULL;
	} else if (res->rc == PROVIDER_ACCOUNT &&
	           pool_down(
	               p, a->i, provider_result_code(res), res->message)) {
		notify(p);
	}
	report(a);
}

static void
on_status_due(evutil_socket_t fd, short what, void *arg)
{
	struct member *a = arg;

	status_later(a, a->pool->cfg->rh_status_every * 1000);
	if (a->asking)
		return;
	a->asking = 1;
	if (provider_tasks(a->prov, on_status, a) != 0)
		a->asking = 0;
}

/* ---- the pool ------------------------------------------------------- */

static struct provider *
make_runninghub(void *arg, struct event_base *base, const struct account *a,
    long timeout_ms, char *err, size_t errlen)
{
	return runninghub_new(
	    base, a->base_url, a->api_key, timeout_ms, err, errlen);
}

static struct pool *
pool_alloc(struct event_base *base, const struct config *cfg, struct metrics *m)
{
	struct pool *p = xcalloc(1, sizeof(*p));

	p->base = base;
	p->cfg = cfg;
	p->m = m;
	p->n = cfg->naccounts;
	p->v = xcalloc(p->n, sizeof(*p->v));
	for (size_t i = 0; i < p->n; i++) {
		struct member *a = &p->v[i];
		a->pool = p;
		a->i = i;
		a->cfg = &cfg->accounts[i];
		a->tasks = -1;
		a->up_ev = evtimer_new(base, on_up, a);
		a->status_ev = evtimer_new(base, on_status_due, a);
		report(a);
	}
	return p;
}

struct pool *
pool_new(struct event_base *base, const struct config *cfg, struct metrics *m,
    pool_make_fn make, void *arg, char *err, size_t errlen)
{
	struct pool *p = pool_alloc(base, cfg, m);

	if (make == NULL)
		make = make_runninghub;
	for (size_t i = 0; i < p->n; i++) {
		struct member *a = &p->v[i];
		a->prov = make(arg, base, a->cfg, (long)cfg->rh_timeout * 1000,
		    err, errlen);
		if (a->prov == NULL) {
			pool_free(p);
			return NULL;
		}
		status_later(a, 0);
	}
	return p;
}

struct pool *
pool_new_shared(struct event_base *base, const struct config *cfg,
    struct metrics *m, struct provider *prov)
{
	struct pool *p = pool_alloc(base, cfg, m);

	p->shared = 1;
	for (size_t i = 0; i < p->n; i++) {
		p->v[i].prov = prov;
		status_later(&p->v[i], cfg->rh_status_every * 1000);
	}
	return p;
}

void
pool_free(struct pool *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n; i++) {
		struct member *a = &p->v[i];
		if (!p->shared)
			provider_free(a->prov);
		event_free(a->up_ev);
		event_free(a->status_ev);
		free(a->down_reason);
		free(a->unreachable);
		json_decref(a->coins);
	}
	free(p->v);
	free(p);
}

size_t
pool_size(const struct pool *p)
{
	return p->n;
}

size_t
pool_index(const struct pool *p, const char *name)
{
	for (size_t i = 0; name != NULL && i < p->n; i++)
		if (strcmp(p->v[i].cfg->name, name) == 0)
			return i;
	return 0;
}

const char *
pool_name(const struct pool *p, size_t i)
{
	return p->v[i].cfg->name;
}

struct provider *
pool_provider(struct pool *p, size_t i)
{
	return p->v[i].prov;
}

int
pool_is_up(const struct pool *p, size_t i)
{
	return !p->v[i].down;
}

size_t
pool_up_names(const struct pool *p, const char **names)
{
	size_t k = 0;

	for (size_t i = 0; i < p->n; i++)
		if (!p->v[i].down)
			names[k++] = p->v[i].cfg->name;
	return k;
}

void
pool_watch(struct pool *p, void (*fn)(void *), void *arg)
{
	p->watch = fn;
	p->watch_arg = arg;
}

json_t *
pool_to_json(const struct pool *p, const json_t *used)
{
	json_t *list = json_array();

	for (size_t i = 0; i < p->n; i++) {
		const struct member *a = &p->v[i];
		json_t *o = json_pack("{s:s, s:s, s:I, s:I, s:b}", "name",
		    a->cfg->name, "base_url", a->cfg->base_url, "slots",
		    (json_int_t)a->cfg->slots, "used",
		    json_integer_value(json_object_get(used, a->cfg->name)),
		    "up", !a->down);
		if (a->down_reason)
			json_object_set_new(
			    o, "down_reason", json_string(a->down_reason));
		json_object_set_new(
		    o, "reachable", json_boolean(a->unreachable == NULL));
		if (a->unreachable)
			json_object_set_new(o, "unreachable_reason",
			    json_string(a->unreachable));
		if (a->coins)
			json_object_set(o, "remain_coins", a->coins);
		if (a->tasks >= 0)
			json_object_set_new(
			    o, "task_count", json_integer(a->tasks));
		json_array_append_new(list, o);
	}
	return json_pack("{s:o}", "accounts", list);
}
