/*
 * pool.h — the provider accounts as one pool (docs/api.md §9): each
 * account of the configuration with its own provider, whether it is up,
 * and what its last status answer said (coins, tasks). sched owns the
 * pool and decides what runs where; the pool only knows the accounts.
 */
#ifndef FILA_POOL_H
#define FILA_POOL_H

#include <stddef.h>
#include <jansson.h>

#include "config.h"
#include "metrics.h"
#include "provider.h"

struct event_base;
struct pool;

/* Makes the provider of account a (a test hook; NULL: runninghub_new).
 * NULL with err set when it cannot. */
typedef struct provider *(*pool_make_fn)(void *arg, struct event_base *base,
    const struct account *a, long timeout_ms, char *err, size_t errlen);

/*
 * The accounts of cfg, each with the provider make gives it (the pool
 * frees them), their status asked at once and then every
 * runninghub.status_every seconds. NULL with err set when a provider
 * cannot be made. m may be NULL.
 */
struct pool *pool_new(struct event_base *base, const struct config *cfg,
    struct metrics *m, pool_make_fn make, void *arg, char *err, size_t errlen);

/* The same with p the provider of every account (tests): p stays the
 * caller's, and the first status is asked after status_every only. */
struct pool *pool_new_shared(struct event_base *base, const struct config *cfg,
    struct metrics *m, struct provider *p);

/* Free the providers (calls in flight are dropped) and the pool. NULL ok. */
void pool_free(struct pool *p);

/* How many accounts; they are numbered 0..n-1 in the order of cfg. */
size_t pool_size(const struct pool *p);
/* The number of account name: a NULL name (a job started before accounts
 * existed) or one no longer configured is the first account. */
size_t pool_index(const struct pool *p, const char *name);
/* Account i's name and provider. */
const char *pool_name(const struct pool *p, size_t i);
struct provider *pool_provider(struct pool *p, size_t i);

/* 1 when account i takes tasks. */
int pool_is_up(const struct pool *p, size_t i);
/* The names of the accounts up, into names (room for pool_size()); how
 * many. */
size_t pool_up_names(const struct pool *p, const char **names);

/*
 * Account i answered code, msg: it cannot run anything. It is down for
 * runninghub.down_for seconds (logged, shown in /metrics and the accounts
 * view), then up again by itself. 1 when it was up until now.
 */
int pool_down(struct pool *p, size_t i, long code, const char *msg);

/*
 * Account i answered call ("submit", "cancel", "status", "poll") with
 * code (provider_result_code()) and message: counted in /metrics. An
 * answer that never came (PROVIDER_NO_ANSWER) marks the account
 * unreachable, logged at most once a minute with message; any answer at
 * all makes it reachable again. Unreachable is not down: its jobs keep
 * their slots and are tried again.
 */
void pool_answered(
    struct pool *p, size_t i, const char *call, long code, const char *message);
/* 1 when every account's provider answered its last call. */
int pool_reachable(const struct pool *p);

/* fn(arg) runs whenever an account comes up again or a status answer
 * takes one down: what uses the accounts may change. */
void pool_watch(struct pool *p, void (*fn)(void *), void *arg);

/* The accounts as GET /v1/admin/accounts shows them, used the slots held
 * per account ({"name": n}): {"accounts": [{"name", "base_url", "slots",
 * "used", "up", "down_reason"?, "reachable", "unreachable_reason"?,
 * "remain_coins"?, "task_count"?}]}. New reference. */
json_t *pool_to_json(const struct pool *p, const json_t *used);

#endif
