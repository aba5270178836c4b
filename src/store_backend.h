/*
 * store_backend.h — what a store backend provides (internal to the store:
 * only store.c and the store_*.c backends include it).
 *
 * A backend allocates its own handle with struct store as its first
 * member, so store.c can dispatch on st->be and every backend reports
 * errors into the same st->err. Each entry has the meaning of the
 * store_* function of the same name in store.h; store.c has already reset
 * the out parameters (job_init, upload_init) and cleared st->err, so a
 * backend only fills them. Every entry must be set.
 */
#ifndef FILA_STORE_BACKEND_H
#define FILA_STORE_BACKEND_H

#include "store.h"

#define STORE_ERR_MAX 512

struct store {
	const struct store_backend *be;
	char err[STORE_ERR_MAX];
	void (*on_commit)(void *arg, int moved); /* after events were added */
	void *on_commit_arg;
};

struct store_backend {
	const char *name;
	/* url is the whole store URL, scheme included. */
	struct store *(*open)(const char *url, const struct store_opts *opts,
	    char *err, size_t errlen);
	void (*free)(struct store *st);

	enum store_rc (*user_balance)(
	    struct store *st, const char *user_id, int64_t *balance);
	enum store_rc (*user_grant)(struct store *st, const char *user_id,
	    int64_t amount, const char *reason, int64_t *balance);
	enum store_rc (*ledger)(
	    struct store *st, const char *user_id, json_t **entries);

	enum store_rc (*upload_add)(struct store *st, const struct upload *u);
	enum store_rc (*upload_get)(struct store *st, const char *id,
	    const char *user_id, struct upload *out);

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
	enum store_rc (*events_after)(struct store *st, int64_t after,
	    const char *user_id, const char *job_id, int limit,
	    struct store_event_list *out);
	enum store_rc (*events_last)(struct store *st, int64_t *id);
	enum store_rc (*positions_publish)(struct store *st, int *n);
	enum store_rc (*events_prune)(
	    struct store *st, int64_t before_ms, int64_t ids, int *more);
	enum store_rc (*job_counts)(struct store *st, json_t **counts);
	enum store_rc (*callback_add)(struct store *st, const char *job_id,
	    const char *task_id, const char *outcome, int applied);
};

/* Set st's error text (printf-style); returns STORE_ERROR for tail calls. */
enum store_rc store_set_error(struct store *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

extern const struct store_backend store_sqlite_backend;

#endif
