/*
 * sched.h — the rules (API.md §4): submit, promote, start at the provider,
 * finish by webhook, cancel. The store enforces what it can; sched decides
 * when to ask it, and talks to the provider.
 */
#ifndef FILA_SCHED_H
#define FILA_SCHED_H

#include "config.h"
#include "job.h"
#include "metrics.h"
#include "provider.h"
#include "store.h"

struct event_base;
struct sched;

struct sched *sched_new(struct event_base *base, const struct config *cfg,
    struct store *st, struct provider *p, struct metrics *m);
void sched_free(struct sched *s);

/* Resume after a start: starting jobs are sent again, free slots filled. */
void sched_recover(struct sched *s);

/*
 * Submit a job (validated by the caller). As store_job_submit(); on
 * STORE_OK free slots are filled at once, so out may already be starting.
 */
enum store_rc sched_submit(struct sched *s, const struct job_new *in,
    struct job *out, int64_t *balance);

/*
 * Cancel job id (user_id NULL: any user's) with error code code: a queued
 * job ends at once; a starting or running one also at the provider, its
 * slot held until the provider let go. STORE_CONFLICT when already
 * terminal (out is the job as it is).
 */
enum store_rc sched_cancel(struct sched *s, const char *id, const char *user_id,
    const char *code, struct job *out);

/*
 * A provider callback for the job whose webhook token is token.
 * STORE_NOTFOUND for an unknown token; STORE_OK when applied or when the
 * job was already terminal; STORE_CONFLICT for a malformed body (msg set).
 */
enum store_rc sched_webhook(struct sched *s, const char *token,
    const char *body, size_t len, char *msg, size_t msglen);

/*
 * End an active job failed with "timeout" (rule 6), msg saying which limit;
 * a task at the provider is cancelled and its slot held until it let go.
 */
enum store_rc sched_expire(struct sched *s, const char *id, const char *msg);

/* Apply what the provider says of job j's task (callback or poll): a
 * completed or failed task ends the job; anything else changes nothing. */
void sched_outcome(
    struct sched *s, const struct job *j, const struct provider_outcome *o);

/* Fill free slots from the queue (FIFO) and start what was promoted. */
void sched_pump(struct sched *s);

#endif
