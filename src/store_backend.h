/*
 * store_backend.h — what a store backend provides, and what store.c gives
 * it back (internal to the store: only store.c and the store_*.c backends
 * include it).
 *
 * A backend allocates its own handle with struct store as its first
 * member, so store.c can dispatch on st->be and every backend reports
 * errors into the same st->err. Each data entry has the meaning of the
 * store_* function of the same name in store.h; store.c has already reset
 * the out parameters (job_init, upload_init) and cleared st->err, so a
 * backend only fills them. Every entry must be set but watch and settle.
 *
 * Transactions are store.c's: a backend runs each change through
 * store_write() and each multi-statement read through store_read(), which
 * open, group and close them with the backend's own statements (begin,
 * commit, savepoint…). A backend reports each event row it appends with
 * store_logged(), which keeps the queue's order in step.
 */
#ifndef FILA_STORE_BACKEND_H
#define FILA_STORE_BACKEND_H

#include "list.h"
#include "rank.h"
#include "store.h"

struct event_base;

#define STORE_ERR_MAX 512

/* A queue change of the open transaction, to undo if it rolls back. */
struct store_undo {
	int64_t seq;
	int queued; /* 1: seq was added; 0: removed */
};

struct store {
	const struct store_backend *be;
	char err[STORE_ERR_MAX];
	void (*on_commit)(void *arg); /* after events were committed */
	void *on_commit_arg;

	/* transactions */
	int group;           /* changes wait for store_sync() */
	int open;            /* a write transaction is open */
	int depth;           /* inside a store_write() */
	int lazy;            /* the write being made may wait (store_due) */
	int urgent;          /* the open transaction holds one that may not */
	int64_t opened_ms;   /* when it opened */
	int64_t floor;       /* the newest event committed when it began */
	struct list afters;  /* what waits for its commit */
	uint64_t syncing;    /* set by commit: its sync is this ticket's */
	struct list batches; /* commits being synced (store.c) */

	/* the queue's order: every queued job's seq */
	struct rank *queue;
	int64_t indexed;         /* the newest event applied to it */
	uint64_t departures;     /* jobs that left it so far */
	int64_t departed;        /* the event of the newest departure */
	struct store_undo *undo; /* changes of the open transaction */
	size_t nundo, capundo;
	size_t mark;          /* undo entries before the current write */
	int64_t mark_indexed; /* indexed before the current write */
	int64_t open_indexed; /* indexed when the transaction opened */
	int64_t mark_departed, open_departed; /* departed, likewise */

	char *up;        /* the accounts that are up, a JSON array; NULL: all */
	char **up_names; /* the same as strings, nup of them */
	size_t nup;
};

typedef enum store_rc (*store_tx_fn)(struct store *st, void *arg);

struct store_backend {
	const char *name;
	/* Its events are appended at commit, not as changes are made: reads
	 * of the log then need no bound while a transaction is open. */
	int log_at_commit;
	/* url is the whole store URL, scheme included. */
	struct store *(*open)(const char *url, const struct store_opts *opts,
	    char *err, size_t errlen);
	void (*free)(struct store *st);

	/* Transactions, for store.c. begin takes the write lock at once
	 * when write is set. rollback_to undoes the current savepoint and
	 * ends it; STORE_ERROR when the whole transaction is gone. */
	enum store_rc (*begin)(struct store *st, int write);
	enum store_rc (*commit)(struct store *st);
	void (*rollback)(struct store *st);
	enum store_rc (*savepoint)(struct store *st);
	enum store_rc (*release)(struct store *st);
	enum store_rc (*rollback_to)(struct store *st);

	/* The queue's order as stored, in one snapshot: each queued job's
	 * seq to fn, the newest event's id into *last, and into *departed
	 * the newest that may have taken a job out of the queue (a start, a
	 * cancel, a failure; 0: none). */
	enum store_rc (*queue_load)(struct store *st,
	    void (*fn)(struct store *, int64_t seq), int64_t *last,
	    int64_t *departed);
	/* Each event after id, oldest first, to fn: its id, its job's seq,
	 * and whether it shows the job queued. */
	enum store_rc (*queue_follow)(struct store *st, int64_t after,
	    void (*fn)(struct store *, int64_t id, int64_t seq, int queued));
	/* 1 when another process may have committed since the last ask. */
	int (*others_wrote)(struct store *st);
	/* Follow the store from the loop (other processes' commits, a lost
	 * connection); NULL when there is nothing to follow. From then on,
	 * commit may leave its sync to a thread: it sets st->syncing to a
	 * ticket, greater than the one before, and the backend calls
	 * store_synced() from the loop once the tickets up to one are
	 * synced. settle waits until every ticket given is (NULL: the backend
	 * never leaves one). */
	void (*watch)(struct store *st, struct event_base *base);
	void (*settle)(struct store *st);
	/* This process's name (as store_opts gave it, or one made up). */
	const char *(*process)(const struct store *st);

	enum store_rc (*user_balance)(
	    struct store *st, const char *user_id, int64_t *balance);
	enum store_rc (*user_grant)(struct store *st, const char *user_id,
	    int64_t amount, const char *reason, int64_t *balance);
	enum store_rc (*ledger)(
	    struct store *st, const char *user_id, json_t **entries);

	enum store_rc (*upload_add)(struct store *st, const struct upload *u);
	enum store_rc (*upload_get)(struct store *st, const char *id,
	    const char *user_id, struct upload *out);
	/* NULL: store.c makes the reads one by one. */
	enum store_rc (*submit_reads)(struct store *st, const char *user_id,
	    const char *const *ids, size_t n, struct upload *out, int64_t since,
	    int64_t upto, int64_t *count, int64_t *oldest);

	enum store_rc (*job_submit)(struct store *st, const struct job_new *in,
	    struct job *out, int64_t *balance);
	enum store_rc (*job_get)(struct store *st, const char *id,
	    const char *user_id, struct job *out);
	enum store_rc (*job_by_token)(
	    struct store *st, const char *token, struct job *out);
	enum store_rc (*job_active)(
	    struct store *st, const char *user_id, struct job *out);
	enum store_rc (*job_list)(
	    struct store *st, const struct job_filter *f, struct job_list *out);
	enum store_rc (*jobs_in)(
	    struct store *st, enum job_status s, struct job_list *out);
	enum store_rc (*queue)(struct store *st, int limit, int with_active,
	    struct store_queue_view *v);

	enum store_rc (*jobs_older)(struct store *st, enum job_status s,
	    int64_t before_ms, int limit, struct job_list *out);
	enum store_rc (*jobs_holding_ended)(
	    struct store *st, struct job_list *out);
	enum store_rc (*promote)(struct store *st, struct job *out);
	enum store_rc (*job_running)(struct store *st, const char *id,
	    const char *task_id, struct job *out);
	enum store_rc (*job_finish)(struct store *st, const char *id,
	    enum job_status to, const char *error_code,
	    const char *error_message, json_t *outputs, int release_slot,
	    struct job *out);
	enum store_rc (*slot_release)(struct store *st, const char *id);
	enum store_rc (*slots_used)(struct store *st, int64_t *used);
	enum store_rc (*jobs_finished)(
	    struct store *st, int64_t since, struct job_list *out);
	/* As store_events_after, and only ids <= upto. */
	enum store_rc (*events_after)(struct store *st, int64_t after,
	    int64_t upto, const char *user_id, const char *job_id, int limit,
	    struct store_event_list *out);
	enum store_rc (*events_last)(struct store *st, int64_t *id);
	enum store_rc (*job_counts)(struct store *st, json_t **counts);
	enum store_rc (*callback_add)(struct store *st, const char *job_id,
	    const char *task_id, const char *outcome, int applied);
	/* Renew the lease; the jobs of lapsed processes (and with mine, of
	 * this process's name) become this process's, appended to all. */
	enum store_rc (*lease)(
	    struct store *st, int64_t ttl_ms, int mine, struct job_list *all);

	enum store_rc (*job_move)(
	    struct store *st, const char *id, struct job *out);
	enum store_rc (*slots_by_account)(struct store *st, json_t **used);
	enum store_rc (*job_cost)(
	    struct store *st, const char *id, const char *cost_json);
	enum store_rc (*user_submits)(struct store *st, const char *user_id,
	    int64_t since, int64_t upto, int64_t *n, int64_t *oldest);
	enum store_rc (*user_uploads)(struct store *st, const char *user_id,
	    int64_t since, int64_t *n, int64_t *bytes, int64_t *oldest);
	enum store_rc (*uploads_older)(struct store *st, int64_t before_ms,
	    int limit, struct upload_list *out);
	enum store_rc (*upload_delete)(struct store *st, const char *id);
	enum store_rc (*outbox_claim)(struct store *st, int64_t now,
	    int64_t claim_ms, int limit, struct store_delivery_list *out);
	enum store_rc (*outbox_done)(struct store *st, int64_t event_id, int ok,
	    int64_t next_at, const char *error);
	enum store_rc (*outbox_list)(struct store *st, const char *state,
	    int64_t after, int limit, struct store_delivery_list *out);
	enum store_rc (*outbox_counts)(
	    struct store *st, int64_t *pending, int64_t *failed);
	enum store_rc (*outputs_add)(struct store *st, const char *job_id,
	    const char *user_id, const json_t *stored);
	enum store_rc (*output_get)(
	    struct store *st, const char *id, json_t **out);
	/* The value of name, set to fresh if it has none yet. */
	enum store_rc (*secret)(struct store *st, const char *name,
	    const char *fresh, char **value);
};

/* The upload and delivery lists' growth, for the backends. */
struct upload *upload_list_push(struct upload_list *l);
struct store_delivery *store_delivery_push(struct store_delivery_list *l);
/* Whether an event of a job in status s becomes a webhook under h. */
int store_hooked(enum store_hooks h, enum job_status s);

/* Set st's error text (printf-style); returns STORE_ERROR for tail calls. */
enum store_rc store_set_error(struct store *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Run fn as one change: in its own transaction, or, grouped, in a
 * savepoint of the open one. Kept when fn answers STORE_OK, undone
 * otherwise (fn's answer and error text stand). Inside another change,
 * fn is simply part of it.
 */
enum store_rc store_write(struct store *st, store_tx_fn fn, void *arg);
/* Run fn as one snapshot of reads (inside the open transaction, if any). */
enum store_rc store_read(struct store *st, store_tx_fn fn, void *arg);
/* The backend appended event id (0: its id comes at commit) of the job of
 * seq, which shows it queued or not: the queue's order follows. Inside
 * store_write() only. */
void store_logged(struct store *st, int64_t id, int64_t seq, int queued);
/* Set a queued job's position from the queue's order (others: 0). */
void store_place(struct store *st, struct job *j);
/* What every backend's open does last: build the queue's order. */
enum store_rc store_opened(struct store *st);
/* The commits of the tickets up to ticket are synced: what waited for them
 * goes on. */
void store_synced(struct store *st, uint64_t ticket);

/* Another process committed (the backend learnt it from the loop): the
 * log is worth reading again (the commit hook runs). */
void store_notified(struct store *st);

extern const struct store_backend store_sqlite_backend;
extern const struct store_backend store_pg_backend;

#endif
