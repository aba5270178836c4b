/*
 * store.c — the store's front door: store_open() picks a backend from the
 * URL's scheme, and every other call goes through that backend's table
 * (store_backend.h). Here, once for all backends, out parameters are
 * reset and the last error cleared, so a backend only has to fill them.
 */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"

/* URL prefix → backend. PostgreSQL joins here as one more row. */
/* clang-format off */
static const struct {
	const char *prefix;
	const struct store_backend *be;
} backends[] = {
	{ "sqlite:", &store_sqlite_backend },
};
/* clang-format on */

enum store_rc
store_set_error(struct store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
	return STORE_ERROR;
}

/* Start of every call: an error text belongs to the call that set it. */
static struct store *
enter(struct store *st)
{
	st->err[0] = '\0';
	return st;
}

/* A change with events was committed: tell whoever reads the log, and
 * whether a job left the queue. */
static enum store_rc
committed(struct store *st, enum store_rc rc, int moved)
{
	if (rc == STORE_OK && st->on_commit)
		st->on_commit(st->on_commit_arg, moved);
	return rc;
}

struct store *
store_open(
    const char *url, const struct store_opts *opts, char *err, size_t errlen)
{
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		size_t n = strlen(backends[i].prefix);
		if (strncmp(url, backends[i].prefix, n) == 0)
			return backends[i].be->open(url, opts, err, errlen);
	}
	snprintf(err, errlen, "store.url: unknown scheme in \"%s\"", url);
	return NULL;
}

void
store_free(struct store *st)
{
	if (st != NULL)
		st->be->free(st);
}

const char *
store_error(struct store *st)
{
	return st->err;
}

enum store_rc
store_user_balance(struct store *st, const char *user_id, int64_t *balance)
{
	return enter(st)->be->user_balance(st, user_id, balance);
}

enum store_rc
store_user_grant(struct store *st, const char *user_id, int64_t amount,
    const char *reason, int64_t *balance)
{
	return enter(st)->be->user_grant(st, user_id, amount, reason, balance);
}

enum store_rc
store_ledger(struct store *st, const char *user_id, json_t **entries)
{
	*entries = NULL;
	return enter(st)->be->ledger(st, user_id, entries);
}

enum store_rc
store_upload_add(struct store *st, const struct upload *u)
{
	return enter(st)->be->upload_add(st, u);
}

enum store_rc
store_upload_get(
    struct store *st, const char *id, const char *user_id, struct upload *out)
{
	upload_init(out);
	return enter(st)->be->upload_get(st, id, user_id, out);
}

enum store_rc
store_job_submit(struct store *st, const struct job_new *in, struct job *out,
    int64_t *balance)
{
	job_init(out);
	return committed(
	    st, enter(st)->be->job_submit(st, in, out, balance), 0);
}

enum store_rc
store_job_get(
    struct store *st, const char *id, const char *user_id, struct job *out)
{
	job_init(out);
	return enter(st)->be->job_get(st, id, user_id, out);
}

enum store_rc
store_job_by_token(struct store *st, const char *token, struct job *out)
{
	job_init(out);
	return enter(st)->be->job_by_token(st, token, out);
}

enum store_rc
store_job_active(struct store *st, const char *user_id, struct job *out)
{
	job_init(out);
	return enter(st)->be->job_active(st, user_id, out);
}

enum store_rc
store_job_list(
    struct store *st, const struct job_filter *f, struct job_list *out)
{
	return enter(st)->be->job_list(st, f, out);
}

enum store_rc
store_jobs_in(struct store *st, enum job_status s, struct job_list *out)
{
	return enter(st)->be->jobs_in(st, s, out);
}

enum store_rc
store_queue(
    struct store *st, int limit, int with_active, struct store_queue_view *v)
{
	v->used = v->total = 0;
	return enter(st)->be->queue(st, limit, with_active, v);
}

enum store_rc
store_promote(struct store *st, struct job *out)
{
	job_init(out);
	return committed(st, enter(st)->be->promote(st, out), 1);
}

enum store_rc
store_job_running(
    struct store *st, const char *id, const char *task_id, struct job *out)
{
	job_init(out);
	return committed(
	    st, enter(st)->be->job_running(st, id, task_id, out), 0);
}

enum store_rc
store_job_finish(struct store *st, const char *id, enum job_status to,
    const char *error_code, const char *error_message, json_t *outputs,
    int release_slot, struct job *out)
{
	job_init(out);
	enum store_rc rc = enter(st)->be->job_finish(
	    st, id, to, error_code, error_message, outputs, release_slot, out);
	/* A job that never started ended while queued. */
	return committed(st, rc, out->started_at == 0);
}

enum store_rc
store_slot_release(struct store *st, const char *id)
{
	return enter(st)->be->slot_release(st, id);
}

enum store_rc
store_slots_used(struct store *st, int64_t *used)
{
	return enter(st)->be->slots_used(st, used);
}

enum store_rc
store_jobs_finished(struct store *st, int64_t since, struct job_list *out)
{
	return enter(st)->be->jobs_finished(st, since, out);
}

void
store_event_list_cleanup(struct store_event_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].job_id);
		free(l->v[i].user_id);
		free(l->v[i].data);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

enum store_rc
store_events_after(struct store *st, int64_t after, const char *user_id,
    const char *job_id, int limit, struct store_event_list *out)
{
	return enter(st)->be->events_after(
	    st, after, user_id, job_id, limit, out);
}

enum store_rc
store_events_last(struct store *st, int64_t *id)
{
	*id = 0;
	return enter(st)->be->events_last(st, id);
}

enum store_rc
store_positions_publish(struct store *st, int *n)
{
	*n = 0;
	enum store_rc rc = enter(st)->be->positions_publish(st, n);
	return *n ? committed(st, rc, 0) : rc;
}

enum store_rc
store_events_prune(struct store *st, int64_t before_ms, int64_t ids, int *more)
{
	*more = 0;
	return enter(st)->be->events_prune(st, before_ms, ids, more);
}

void
store_on_commit(struct store *st, void (*fn)(void *, int), void *arg)
{
	st->on_commit = fn;
	st->on_commit_arg = arg;
}

enum store_rc
store_job_counts(struct store *st, json_t **counts)
{
	*counts = NULL;
	return enter(st)->be->job_counts(st, counts);
}

enum store_rc
store_callback_add(struct store *st, const char *job_id, const char *task_id,
    const char *outcome, int applied)
{
	return enter(st)->be->callback_add(
	    st, job_id, task_id, outcome, applied);
}

enum store_rc
store_jobs_older(struct store *st, enum job_status s, int64_t before_ms,
    int limit, struct job_list *out)
{
	return enter(st)->be->jobs_older(st, s, before_ms, limit, out);
}

enum store_rc
store_jobs_holding_ended(struct store *st, struct job_list *out)
{
	return enter(st)->be->jobs_holding_ended(st, out);
}
