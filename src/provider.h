/*
 * provider.h — where jobs run. A provider submits a task, cancels it, polls
 * it and reads its callbacks; every network call is asynchronous on the
 * event loop and ends in exactly one callback. Backends sit behind a table
 * of functions (RunningHub first: runninghub.c).
 */
#ifndef FILA_PROVIDER_H
#define FILA_PROVIDER_H

#include <stddef.h>
#include <jansson.h>

struct event_base;
struct provider;

enum provider_rc {
	PROVIDER_OK,
	PROVIDER_BUSY,     /* no room now (RunningHub 421, 415, 814, 1003,
	                    * 1011): retry later, here or on another account */
	PROVIDER_RETRY,    /* transport error or 5xx: worth retrying */
	PROVIDER_REJECTED, /* refused for good: the message says why */
	PROVIDER_ACCOUNT,  /* the account cannot run anything (RunningHub 416
	                    * wallet empty, 801/802 key refused or expired,
	                    * 812 funds): another account may */
};

/* The answer to a call. Strings are valid only during the callback. */
struct provider_result {
	enum provider_rc rc;
	const char *task_id; /* submit: the provider's task id */
	const char *message; /* the provider's own text on failure */
	long http_status;
	long code;         /* the provider's business code */
	long count;        /* tasks: the account's tasks running now */
	const char *coins; /* tasks: the account's coins left, as the
	                    * provider wrote them; NULL when not said */
};

typedef void (*provider_cb)(void *arg, const struct provider_result *res);

/* The one number that says what an answer was, for metrics: the
 * provider's business code, else 0 for success, else the HTTP status,
 * else PROVIDER_NO_ANSWER (no answer at all: refused, timed out, DNS,
 * TLS: the provider could not be reached). */
#define PROVIDER_NO_ANSWER (-1)
long provider_result_code(const struct provider_result *res);

/* One node of the task: a value, or a file to upload first. */
struct provider_node {
	const char *node_id;
	const char *field;
	const char *value;     /* NULL when path is set */
	const char *path;      /* a local file to upload; its provider name
	                        * becomes the value */
	const char *file_type; /* "png", "mp4", … for path */
};

struct provider_task {
	const char *app_id;
	const struct provider_node *nodes;
	size_t nnodes;
	const char *webhook_url;
};

enum provider_state {
	TASK_UNKNOWN,   /* could not tell */
	TASK_RUNNING,   /* queued or running at the provider */
	TASK_COMPLETED, /* outputs set */
	TASK_FAILED,    /* message set */
};

/* What a callback or a poll says of a task. Owned by the caller of
 * provider_parse_callback / the poll callback's caller; see below. */
struct provider_outcome {
	enum provider_state state;
	char *task_id;
	json_t *outputs; /* [{"url", "type"}] */
	char *message;
	json_t *cost; /* completed: what the task cost, {"coins": N,
	               * "money": "0.12", "seconds": N} with the members the
	               * provider reported; NULL when it said nothing */
	long code;    /* a poll: provider_result_code() of its last call */
};
void provider_outcome_cleanup(struct provider_outcome *o);

typedef void (*provider_poll_cb)(void *arg, const struct provider_outcome *out);

/* A backend: its functions take the backend's own state as first argument
 * and keep the contracts of the provider_* calls below. */
struct provider_ops {
	const char *name;
	int (*submit)(void *impl, const struct provider_task *t, provider_cb cb,
	    void *arg);
	int (*cancel)(
	    void *impl, const char *task_id, provider_cb cb, void *arg);
	int (*poll)(
	    void *impl, const char *task_id, provider_poll_cb cb, void *arg);
	int (*parse_callback)(void *impl, const char *body, size_t len,
	    struct provider_outcome *out, char *err, size_t errlen);
	int (*tasks)(void *impl, provider_cb cb, void *arg);
	int (*pending)(const void *impl);
	void (*free)(void *impl);
};

/* Wrap a backend; the provider owns impl from now on. */
struct provider *provider_new(const struct provider_ops *ops, void *impl);
/* Abort calls in flight (their callbacks do not run) and free. NULL ok. */
void provider_free(struct provider *p);
/* The backend's name ("runninghub"). */
const char *provider_name(const struct provider *p);

/* Upload the task's files, then start it; cb gets the task id or why not.
 * Returns 0, or -1 when the call could not even start (cb not called). */
int provider_submit(struct provider *p, const struct provider_task *t,
    provider_cb cb, void *arg);
/* Ask the provider to cancel task_id. */
int provider_cancel(
    struct provider *p, const char *task_id, provider_cb cb, void *arg);
/* Ask what became of task_id (status, then outputs). */
int provider_poll(
    struct provider *p, const char *task_id, provider_poll_cb cb, void *arg);
/*
 * Read a webhook body (eventData a JSON string or an object). 0 with out
 * filled (caller cleans up), or -1 with err set when malformed.
 */
int provider_parse_callback(struct provider *p, const char *body, size_t len,
    struct provider_outcome *out, char *err, size_t errlen);

/* Ask how many tasks the account has running at the provider (any app):
 * res->count on PROVIDER_OK, and res->coins when the provider says. */
int provider_tasks(struct provider *p, provider_cb cb, void *arg);

/* Calls in flight (for tests and draining). */
int provider_pending(const struct provider *p);

#endif
