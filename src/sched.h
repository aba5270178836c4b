/*
 * sched.h — the rules (docs/api.md §4): submit, promote, start at
 * the provider, finish by webhook, cancel, leave. The store enforces what
 * it can; sched decides when to ask it, and talks to the provider.
 */
#ifndef FILA_SCHED_H
#define FILA_SCHED_H

#include <jansson.h>

#include "config.h"
#include "job.h"
#include "metrics.h"
#include "pool.h"
#include "provider.h"
#include "store.h"

struct event_base;
struct sched;

/* What a rule answers; only the HTTP layer turns it into a status. */
enum sched_rc {
	SCHED_OK,
	SCHED_EXISTS,      /* submit: an idempotent repeat (out: the first) */
	SCHED_ACTIVE,      /* submit: the user's active jobs are at their
	                    * limit (out: the oldest of them) */
	SCHED_CREDITS,     /* submit: balance below cost (*balance set) */
	SCHED_NOTFOUND,    /* no such job, not the caller's, unknown token */
	SCHED_FINISHED,    /* cancel: already terminal (out: the job) */
	SCHED_MALFORMED,   /* webhook: a body that cannot be read (msg set) */
	SCHED_UNAVAILABLE, /* the store failed; nothing was written */
};

/*
 * The rules over the accounts of pool (docs/api.md §9), which sched owns
 * from now on. m may be NULL.
 */
struct sched *sched_new_pool(struct event_base *base, const struct config *cfg,
    struct store *st, struct pool *pool, struct metrics *m);
/*
 * The same over the accounts of cfg: with p, every account's provider is
 * p (tests; the caller frees p after sched); without, each has a RunningHub
 * provider of its own (NULL, the reason on stderr, when one cannot be
 * set up).
 */
struct sched *sched_new(struct event_base *base, const struct config *cfg,
    struct store *st, struct provider *p, struct metrics *m);
/* Forget every start and release in flight, free the pool (and with it
 * the providers sched made). */
void sched_free(struct sched *s);

/* Keep completed jobs' outputs with out (docs/api.md §10): a job completes
 * once its outputs are stored, or fails provider_error, refunded, when
 * they cannot be. NULL (the default): the provider's URLs, as given. */
struct outputs;
void sched_outputs(struct sched *s, struct outputs *out);

/* The provider of account (a job's "account"; NULL, for jobs started
 * before there were accounts, or one no longer configured: the first). */
struct provider *sched_provider(struct sched *s, const char *account);

/* A poll of a job on account (NULL: the first) was answered with code
 * and message (provider_outcome): counted, and the account's reachability
 * noted (pool_answered). */
void sched_polled(
    struct sched *s, const char *account, long code, const char *message);

/* 1 when every account's provider answered its last call (pool.h). */
int sched_reachable(const struct sched *s);

/*
 * The accounts as GET /v1/admin/accounts answers (docs/api.md §9):
 * {"accounts": [{"name", "base_url", "slots", "used", "up",
 * "down_reason"?, "reachable", "unreachable_reason"?, "remain_coins"?,
 * "task_count"?}]}. New reference; NULL when the store cannot be read.
 */
json_t *sched_accounts(struct sched *s);

/*
 * Admission by estimated wait (docs/api.md §9): 1 when submit in must be
 * refused (503 queue_full), with *eta_s the estimated wait of a new job
 * (the jobs queued, the free slots of the accounts up, and the median of
 * the recent runs of its tool and variant) and *retry_s when to try again;
 * 0 to go on: queue.max_wait is 0, there is no run history, the estimate
 * is within max_wait, or in repeats an Idempotency-Key of the user's
 * (its submit answers the first job). Reads only.
 */
int sched_admit(struct sched *s, const struct job_new *in, int64_t *eta_s,
    int64_t *retry_s);

/* How long a process's lease lasts: it renews it four times as often. */
#define SCHED_LEASE_MS STORE_LEASE_MS

/* Resume after a start: what this process's name carried before is taken
 * over as sched_lease() does, and free slots fill. */
void sched_recover(struct sched *s);

/*
 * Renew this process's lease, and carry on what processes whose lease ran
 * out (or, at_start, this process's name before a stop) were carrying:
 * ended jobs still holding slots ask the provider again, starting jobs are
 * sent again once it is safe (the provider runs no task fila does not
 * know of), running jobs are polled by the watchdog from now on.
 */
void sched_lease(struct sched *s, int at_start);

/*
 * Submit a job (validated by the caller), as store_job_submit() decides
 * it. On SCHED_OK free slots are filled at once, so out may already be
 * starting.
 */
enum sched_rc sched_submit(struct sched *s, const struct job_new *in,
    struct job *out, int64_t *balance);

/*
 * Cancel job id (user_id NULL: any user's) with error code code: a queued
 * job ends at once; a starting or running one also at the provider, its
 * slot held until the provider let go. out is the job after.
 */
enum sched_rc sched_cancel(struct sched *s, const char *id, const char *user_id,
    const char *code, struct job *out);

/* The user left the page of session_id: their queued jobs of that session
 * end cancelled with "session_left" (started ones go on). */
enum sched_rc sched_leave(
    struct sched *s, const char *user_id, const char *session_id);

/*
 * A provider callback for the job whose webhook token is token: applied,
 * or recorded and ignored when the job is already terminal (SCHED_OK).
 */
enum sched_rc sched_webhook(struct sched *s, const char *token,
    const char *body, size_t len, char *msg, size_t msglen);

/*
 * End an active job failed with "timeout" (rule 6), msg saying which limit;
 * a task at the provider is cancelled and its slot held until it let go.
 */
enum sched_rc sched_expire(struct sched *s, const char *id, const char *msg);

/* Apply what the provider says of job j's task (callback or poll): a
 * completed or failed task ends the job; anything else changes nothing. */
void sched_outcome(
    struct sched *s, const struct job *j, const struct provider_outcome *o);

/* Fill free slots from the queue (FIFO) and start what was promoted. */
void sched_pump(struct sched *s);

#endif
