/*
 * store.h — the store: the one truth about users, credits, uploads, jobs,
 * slots and the event log. Each call that changes something is atomic and
 * also appends the changed job's event row, so what the event log says is
 * exactly what was committed.
 *
 * Group commit: with store_group() on, the changes made between two
 * store_sync() calls (one turn of the event loop) share one transaction,
 * a savepoint each, so one failing change does not take the others with
 * it, and one fsync. What must not happen before a change is on disk (an
 * answer, a call to the provider) waits for it with store_after().
 *
 * The queue's order is kept in memory as well, in an order-statistic set
 * rebuilt at open and kept in step from the event log (every enqueue and
 * dequeue is an event, whichever process wrote it): a queued job's
 * position is computed when it is read, in O(log n), never stored.
 *
 * The invariants live in the schema, not only in C: each account's
 * `slots` slot rows (a smaller count drops free rows only) and a job
 * starts only by taking one; balance CHECK >= 0; ledger UNIQUE (job_id,
 * kind); every transition names the states it leaves.
 *
 * Backends sit behind a table of functions chosen from the URL scheme
 * (sqlite:PATH, store_sqlite.c; postgres:// or postgresql://,
 * store_pg.c). Jobs and uploads returned are the caller's to clean up.
 */
#ifndef FILA_STORE_H
#define FILA_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "job.h"
#include "uploads.h"

struct store;

enum store_rc {
	STORE_OK,
	STORE_NOTFOUND, /* no such row (or not the caller's) */
	STORE_CONFLICT, /* the row is not in a state this change leaves */
	STORE_EXISTS,   /* idempotent repeat: the first result is returned */
	STORE_ACTIVE,   /* the user has per_user_active active jobs already */
	STORE_CREDITS,  /* balance would go below zero */
	STORE_ERROR,    /* the database failed; nothing was written */
};

/* How long a process's lease lasts: it is taken at open and renewed (the
 * watchdog) well within it; past it, other processes take over its jobs. */
#define STORE_LEASE_MS 10000

/* A pool of slots: one provider account and how many tasks it may run. */
struct store_account {
	const char *name;
	int64_t slots;
};

/* Which events become webhooks to the app (store_outbox_*). */
enum store_hooks {
	STORE_HOOKS_NONE,
	STORE_HOOKS_TERMINAL, /* completed, failed, cancelled */
	STORE_HOOKS_ALL,      /* every state change */
};

struct store_opts {
	int64_t slots; /* with no accounts: the one account "default" */
	int64_t per_user_active;
	int64_t credits_initial;
	const char *schema;  /* PostgreSQL: the schema of fila's tables */
	const char *process; /* this process's name among those sharing the
	                      * store (its leases and the jobs it carries) */
	const struct store_account *accounts; /* the pools; slots is then */
	size_t naccounts;                     /* their sum */
	enum store_hooks hooks;
};

/*
 * Open (creating and migrating) the store at url and size the slot table
 * to opts->slots. NULL with err set on failure.
 */
struct store *store_open(
    const char *url, const struct store_opts *opts, char *err, size_t errlen);
/* This process's name among those sharing the store. */
const char *store_process(const struct store *st);

/* Follow the store from base: other processes' commits as they come (the
 * commit hook runs), a lost connection made again. */
struct event_base;
void store_watch(struct store *st, struct event_base *base);
/* Commit what is pending and wait for its sync (store_drain), then
 * close. NULL is a no-op. */
void store_free(struct store *st);
/* The last error's text (valid until the next call). */
const char *store_error(struct store *st);

/* --- group commit --- */

/* With on, changes wait in one open transaction for store_sync(); with
 * off (the default), each change is committed on its own. */
void store_group(struct store *st, int on);
/*
 * Commit the changes made since the last sync, then run the commit hook,
 * then what waited for them (store_after). Changes made by those go
 * into the next transaction, committed before this returns too.
 * STORE_ERROR when a commit failed: its changes are lost, as if never
 * made, and what waited for them was told so.
 */
enum store_rc store_sync(struct store *st);
/*
 * Watched from a loop (store_watch), a backend may sync a commit off the
 * loop: the commit is made, other transactions may follow at once, and the
 * hook and what waited for it run from the loop once it is synced. Events
 * are read only up to the oldest commit not yet synced, and store_after()
 * with nothing open waits for the newest one. store_drain(): store_sync()
 * and wait for every sync, telling what waited; for the end of a loop.
 */
void store_drain(struct store *st);
/* 1 when changes wait for store_sync(). */
int store_pending(const struct store *st);

/*
 * A write that may wait: store_job_running() (a crash that loses it leaves
 * the job starting, which recovery settles). An open transaction holding
 * only such writes, and that nothing waits for, may stay open up to
 * STORE_LAZY_MS for the next turn's changes to share its commit.
 * store_due(): ms until the open transaction must be committed (0: now),
 * or -1 when none is open.
 */
#define STORE_LAZY_MS 2
int64_t store_due(const struct store *st);
/* Run fn(arg, ok) once what is written so far is committed and synced (ok
 * 1) or lost (ok 0); at once, with ok 1, when nothing is pending. */
void store_after(struct store *st, void (*fn)(void *, int), void *arg);

/* --- the queue's order --- */

/* Catch up with what other processes sharing the store committed. */
void store_queue_sync(struct store *st);
/* The 1-based place of the queued job of this seq; 0 when no job of this
 * seq is queued. */
int64_t store_queue_place(struct store *st, int64_t seq);
/* How many jobs are queued. */
int64_t store_queue_length(const struct store *st);
/* How many times a job has left the queue so far (a counter that moves
 * whenever positions behind it change). */
uint64_t store_queue_departures(const struct store *st);
/* The id of the event of the newest departure (after a start: the newest
 * event, as nothing says what left before). */
int64_t store_queue_departed(const struct store *st);

/* --- users and credits --- */

/* The user's balance, creating the user with the initial grant (a ledger
 * entry) if never seen before. */
enum store_rc store_user_balance(
    struct store *st, const char *user_id, int64_t *balance);

/* The largest balance: 2^53 - 1, exact as a number in every JSON client. */
#define CREDITS_MAX INT64_C(9007199254740991)

/* Add amount (may be negative) as a "grant" ledger entry with reason.
 * STORE_CREDITS when the balance would go below 0, STORE_CONFLICT when
 * above CREDITS_MAX (nothing written either way). */
enum store_rc store_user_grant(struct store *st, const char *user_id,
    int64_t amount, const char *reason, int64_t *balance);

/* The user's ledger, newest first, as docs/api.md §5 shows it (new reference).
 */
enum store_rc store_ledger(
    struct store *st, const char *user_id, json_t **entries);

/* --- uploads --- */

enum store_rc store_upload_add(struct store *st, const struct upload *u);
/* The upload id if it belongs to user_id; STORE_NOTFOUND otherwise. */
enum store_rc store_upload_get(
    struct store *st, const char *id, const char *user_id, struct upload *out);

/* The reads that come before a submit, at once (one round trip on
 * PostgreSQL): store_upload_get() of each of the n ids, out[i] left with
 * a NULL id when it is not the user's, and, when upto > 0,
 * store_user_submits() into count and oldest (else 0 both). */
enum store_rc store_submit_reads(struct store *st, const char *user_id,
    const char *const *ids, size_t n, struct upload *out, int64_t since,
    int64_t upto, int64_t *count, int64_t *oldest);

/* --- jobs --- */

/* What a submit asks for; ids and the webhook token are made by the caller. */
struct job_new {
	const char *id;
	const char *user_id;
	const char *tool;
	const char *variant; /* NULL for tools without variants */
	json_t *inputs;
	int64_t cost;
	const char *session_id; /* may be NULL */
	const char *idem_key;   /* may be NULL */
	const char *webhook_token;
};

/*
 * In one transaction: create the user if new, then
 * - a job with the same (user, idem_key) exists: STORE_EXISTS, out = it;
 * - the user has per_user_active active jobs: STORE_ACTIVE, out = the
 *   oldest of them;
 * - balance < cost: STORE_CREDITS, *balance set;
 * - otherwise charge cost (ledger "charge"), insert the job queued, append
 *   its event: STORE_OK, out = the job with its position.
 * Nothing is written unless STORE_OK.
 */
enum store_rc store_job_submit(struct store *st, const struct job_new *in,
    struct job *out, int64_t *balance);

/* The job by id; when user_id is non-NULL it must be theirs. */
enum store_rc store_job_get(
    struct store *st, const char *id, const char *user_id, struct job *out);
enum store_rc store_job_by_token(
    struct store *st, const char *token, struct job *out);

/* The oldest active job of the user, or STORE_NOTFOUND. */
enum store_rc store_job_active(
    struct store *st, const char *user_id, struct job *out);

struct job_filter {
	const char *user_id; /* NULL: every user */
	int status;          /* an enum job_status, or -1 for any */
	const char *tool;    /* NULL: any */
	int64_t before_seq; /* 0: from the newest; else only seq < before_seq */
	int limit;
};
/* Jobs newest first (seq descending) matching f, appended to out. */
enum store_rc store_job_list(
    struct store *st, const struct job_filter *f, struct job_list *out);

/* Every job with status s (queued, starting or running), oldest first
 * (FIFO order), appended to out. */
enum store_rc store_jobs_in(
    struct store *st, enum job_status s, struct job_list *out);

/*
 * The queue as one snapshot (so no job is seen twice as it moves): the
 * slots held, the starting then running jobs oldest first (when
 * with_active), the first limit queued jobs (0: all, < 0: none) with their
 * positions, and how many are queued in all.
 */
struct store_queue_view {
	int64_t used;
	struct job_list active;
	struct job_list queued;
	int64_t total;
};
enum store_rc store_queue(
    struct store *st, int limit, int with_active, struct store_queue_view *v);

/*
 * Jobs with status s that entered it before before_ms (created_at for
 * queued jobs, started_at otherwise), oldest first, at most limit;
 * appended to out. What the watchdog needs, without reading the queue.
 */
enum store_rc store_jobs_older(struct store *st, enum job_status s,
    int64_t before_ms, int limit, struct job_list *out);

/*
 * Take a free slot, of an account that is up, for the oldest queued job:
 * it becomes starting, holds the slot, and names the slot's account (the
 * one with the most room). STORE_NOTFOUND when no slot is free or nothing
 * is queued.
 */
enum store_rc store_promote(struct store *st, struct job *out);

/* The accounts promote and move may use (names; NULL or n = 0: all of
 * them). Those left out are down: their slots stay where they are. */
void store_accounts_up(struct store *st, const char *const *names, size_t n);

/*
 * Move starting job id to a free slot of another account that is up: the
 * job keeps its slot row, whose account changes (with the free row's, so
 * every account keeps its number of rows). STORE_NOTFOUND when no other
 * account has room, STORE_CONFLICT when the job is not starting.
 */
enum store_rc store_job_move(struct store *st, const char *id, struct job *out);

/* Slots held per account: {"name": n, …} (new reference). */
enum store_rc store_slots_by_account(struct store *st, json_t **used);

/* Record what the provider says running job id cost (an object of coins,
 * money, seconds), before it ends: a terminal job never changes. */
enum store_rc store_job_cost(
    struct store *st, const char *id, const json_t *provider_cost);

/* starting → running with the provider's task id. STORE_CONFLICT when the
 * job is not starting any more. */
enum store_rc store_job_running(
    struct store *st, const char *id, const char *task_id, struct job *out);

/* The longest error message a job keeps (a longer one is cut). */
#define STORE_MESSAGE_MAX 2048

/*
 * End the job: to completed (outputs set) from running; to failed or
 * cancelled (error set) from any active state. failed and cancelled refund
 * the cost (ledger "refund", once: UNIQUE). When release_slot, the job's
 * slot is freed in the same transaction; otherwise it stays held until
 * store_slot_release(). STORE_CONFLICT when the job is already terminal
 * (or, for completed, not running); out is then the job as it is.
 */
enum store_rc store_job_finish(struct store *st, const char *id,
    enum job_status to, const char *error_code, const char *error_message,
    json_t *outputs, int release_slot, struct job *out);

/* Ended jobs that still hold a slot (waiting for the provider to let go
 * of their task), appended to out. */
enum store_rc store_jobs_holding_ended(struct store *st, struct job_list *out);

/* Free the slot held by job id, if any. */
enum store_rc store_slot_release(struct store *st, const char *id);

/* Slots in use (held by any job). */
enum store_rc store_slots_used(struct store *st, int64_t *used);

/* Jobs that finished at or after since (ms), oldest first, appended. */
enum store_rc store_jobs_finished(
    struct store *st, int64_t since, struct job_list *out);

/* Jobs counted by tool and status: {"tool": {"status": n}} (new ref). */
enum store_rc store_job_counts(struct store *st, json_t **counts);

/*
 * Renew this process's lease for ttl_ms, and take over what processes
 * whose lease ran out were carrying: jobs they were starting (appended to
 * starting), running (to running) and ended jobs whose slot waits for the
 * provider (to holding); with mine set, also what this process's own name
 * carries (a process started again does not know what it carried before).
 * Jobs taken over are this process's to carry from now on.
 */
enum store_rc store_lease(struct store *st, int64_t ttl_ms, int mine,
    struct job_list *starting, struct job_list *running,
    struct job_list *holding);

/* --- outputs kept by fila (docs/api.md §10) --- */

/* Job id of user_id completes with outputs (as the job shows them) and
 * its stored outputs are recorded (store_outputs_add), in one write: both
 * or neither. Otherwise as store_job_finish. */
enum store_rc store_job_complete_kept(struct store *st, const char *id,
    const char *user_id, json_t *outputs, const json_t *stored,
    int release_slot, struct job *out);
/* Record the outputs stored for job_id of user_id: stored is an array of
 * {id, type, size, sha256}. In the transaction of the job's completion. */
enum store_rc store_outputs_add(struct store *st, const char *job_id,
    const char *user_id, const json_t *stored);
/* The output id: {id, job_id, user_id, type, size, sha256} (new ref). */
enum store_rc store_output_get(struct store *st, const char *id, json_t **out);

/* A secret every process sharing the store agrees on, made at random the
 * first time it is asked for (64 hex digits; the caller frees it). */
enum store_rc store_secret(struct store *st, const char *name, char **value);

/* --- per-user usage (the limits of docs/api.md §11) --- */

/* How many of the user's jobs were created at or after since (ms),
 * counting at most upto of the newest, and when the oldest of those was
 * (0 when none): the window has room again once it leaves. */
enum store_rc store_user_submits(struct store *st, const char *user_id,
    int64_t since, int64_t upto, int64_t *n, int64_t *oldest);
/* The user's uploads created at or after since: how many, their bytes,
 * and when the oldest was (0 when none). */
enum store_rc store_user_uploads(struct store *st, const char *user_id,
    int64_t since, int64_t *n, int64_t *bytes, int64_t *oldest);

/* Uploads created before before_ms, oldest first, at most limit (the
 * retention sweep); appended to out. */
struct upload_list {
	struct upload *v;
	size_t n, cap;
};
void upload_list_cleanup(struct upload_list *l);
enum store_rc store_uploads_older(
    struct store *st, int64_t before_ms, int limit, struct upload_list *out);
/* Forget an upload (its file is the caller's to delete). */
enum store_rc store_upload_delete(struct store *st, const char *id);

/* --- the outbox: webhooks to the app, one per event --- */

/*
 * With opts.hooks, every change whose event qualifies also writes an
 * outbox row in its transaction: the delivery is as durable as the change.
 * A delivery is claimed by one process for a while (claim_ms), attempted,
 * then marked delivered, due again later, or failed for good. A job's
 * deliveries go out in order: a row is due only when no older row of its
 * job is still pending.
 */
struct store_delivery {
	int64_t event_id; /* also the delivery's id (webhook-id) */
	char *job_id;
	char *status; /* the job's status in the event: job.<status> */
	char *data;   /* the job's JSON in the event */
	int64_t at;   /* the event's time (ms) */
	char *state;  /* pending, delivered, failed */
	int64_t attempts;
	int64_t next_at;
	char *last_error;
};
struct store_delivery_list {
	struct store_delivery *v;
	size_t n, cap;
};
void store_delivery_list_cleanup(struct store_delivery_list *l);

/* Claim up to limit due deliveries for claim_ms; appended to out. */
enum store_rc store_outbox_claim(struct store *st, int64_t now,
    int64_t claim_ms, int limit, struct store_delivery_list *out);
/* An attempt's end: delivered (ok), due again at next_at (> 0), or failed
 * for good (next_at 0); error says why it was not delivered. */
enum store_rc store_outbox_done(struct store *st, int64_t event_id, int ok,
    int64_t next_at, const char *error);
/* Deliveries in state (NULL: any) with event_id > after, oldest first, at
 * most limit; appended. */
enum store_rc store_outbox_list(struct store *st, const char *state,
    int64_t after, int limit, struct store_delivery_list *out);
/* How many deliveries are pending and failed. */
enum store_rc store_outbox_counts(
    struct store *st, int64_t *pending, int64_t *failed);

/* Record a provider callback for job_id: what it said (outcome: "completed",
 * "failed", "running", "unknown") and whether it changed the job. */
enum store_rc store_callback_add(struct store *st, const char *job_id,
    const char *task_id, const char *outcome, int applied);

/* --- the event log --- */

/* One committed change: data is the job's JSON right after it (the
 * position of a queued job as it was then). */
struct store_event {
	int64_t id;
	int64_t seq; /* the job's seq (its place in the FIFO order) */
	char *job_id;
	char *user_id;
	char *data;
};

struct store_event_list {
	struct store_event *v;
	size_t n, cap;
};
void store_event_list_cleanup(struct store_event_list *l);

/*
 * Events with id > after, oldest first, at most limit (0: no limit),
 * only user_id's when non-NULL and only job_id's when non-NULL; appended.
 * Only committed and synced events: none of the changes still pending,
 * none of a commit still being synced (store_drain).
 */
enum store_rc store_events_after(struct store *st, int64_t after,
    const char *user_id, const char *job_id, int limit,
    struct store_event_list *out);
/* Whether any such event exists, committed, synced or not yet: not to be
 * sent, to know that more will come. */
enum store_rc store_events_exist(struct store *st, int64_t after,
    const char *user_id, const char *job_id, int *any);

/* The id of the newest event that store_events_after() would read (0 when
 * there is none); store_events_top(): of the newest committed, synced or
 * not yet. */
enum store_rc store_events_last(struct store *st, int64_t *id);
enum store_rc store_events_top(struct store *st, int64_t *id);

/* Call fn(arg) after each commit (NULL to stop): the event log is then
 * worth reading again. It runs with nothing pending, so what it reads is
 * all committed. */
void store_on_commit(struct store *st, void (*fn)(void *), void *arg);

#endif
