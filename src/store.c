/*
 * store.c — the store's front door: store_open() picks a backend from the
 * URL's scheme, and every other call goes through that backend's table
 * (store_backend.h). Here, once for all backends:
 * - out parameters are reset and the last error cleared, so a backend only
 *   has to fill them;
 * - transactions are opened, grouped and closed (store_write, store_sync):
 *   a change is a savepoint of the turn's one transaction when grouped,
 *   its own transaction otherwise, and what waits for a commit runs after
 *   it (store_after), or after its sync when the backend syncs elsewhere
 *   (a batch, below);
 * - the queue's order is kept: a set of the queued jobs' seq, built at
 *   open and changed by every event appended, ours as they are written
 *   (undone with their transaction) and other processes' as they are read
 *   from the log; positions are read from it.
 */
#include "store.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"
#include "util.h"

/* URL prefix → backend. PostgreSQL joins here as one more row. */
/* clang-format off */
static const struct {
	const char *prefix;
	const struct store_backend *be;
} backends[] = {
	{ "sqlite:", &store_sqlite_backend },
	{ "postgres://", &store_pg_backend },
	{ "postgresql://", &store_pg_backend },
};
/* clang-format on */

/* Something waiting for the open transaction's commit. */
struct after {
	struct list link; /* in store.afters, or a batch's */
	void (*fn)(void *arg, int ok);
	void *arg;
};

/* A commit whose sync is under way, and what waits for it. */
struct batch {
	struct list link; /* in store.batches, oldest first */
	uint64_t ticket;  /* the backend's, told to store_synced() */
	int64_t floor;    /* the newest event committed before it */
	struct list afters;
};

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

/* ---- the queue's order ---------------------------------------------- */

static void
undo_push(struct store *st, int64_t seq, int queued)
{
	if (st->nundo == st->capundo) {
		st->capundo = st->capundo ? 2 * st->capundo : 64;
		st->undo = xrealloc(st->undo, st->capundo * sizeof(*st->undo));
	}
	st->undo[st->nundo++] = (struct store_undo){seq, queued};
}

/* Take back the queue changes after the first keep ones. */
static void
undo_to(struct store *st, size_t keep)
{
	while (st->nundo > keep) {
		struct store_undo *u = &st->undo[--st->nundo];
		if (u->queued) {
			rank_remove(st->queue, u->seq);
		} else {
			rank_insert(st->queue, u->seq);
			st->departures--;
		}
	}
}

/* Event id of the log, applied to the queue's order. */
static int
apply(struct store *st, int64_t id, int64_t seq, int queued)
{
	if (queued)
		return rank_insert(st->queue, seq);
	if (!rank_remove(st->queue, seq))
		return 0;
	st->departures++;
	st->departed = id;
	return 1;
}

void
store_logged(struct store *st, int64_t id, int64_t seq, int queued)
{
	if (apply(st, id, seq, queued))
		undo_push(st, seq, queued);
	if (id > st->indexed)
		st->indexed = id;
}

/* An event another process committed. */
static void
followed(struct store *st, int64_t id, int64_t seq, int queued)
{
	if (id <= st->indexed)
		return;
	apply(st, id, seq, queued);
	st->indexed = id;
}

/* Read what other processes appended to the log since we last looked. */
static void
catch_up(struct store *st)
{
	if (st->be->others_wrote(st) &&
	    st->be->queue_follow(st, st->indexed, followed) != STORE_OK)
		fprintf(stderr, "fila: the queue's order lags: %s\n", st->err);
}

static void
loaded(struct store *st, int64_t seq)
{
	rank_insert(st->queue, seq);
}

enum store_rc
store_opened(struct store *st)
{
	enum store_rc rc;

	list_init(&st->afters);
	list_init(&st->batches);
	st->queue = rank_new();
	st->be->others_wrote(st); /* from now on */
	/* Departures before are known by their events only: the newest one
	 * that may have been one stands for the last departure, so a stream
	 * that resumes after it is not told places it already has. */
	rc = st->be->queue_load(st, loaded, &st->indexed, &st->departed);
	return rc;
}

void
store_place(struct store *st, struct job *j)
{
	j->position = j->status == JOB_QUEUED
	                  ? (int64_t)rank_below(st->queue, j->seq) + 1
	                  : 0;
}

void
store_queue_sync(struct store *st)
{
	if (!st->open)
		catch_up(enter(st));
}

int64_t
store_queue_place(struct store *st, int64_t seq)
{
	if (!rank_contains(st->queue, seq))
		return 0;
	return (int64_t)rank_below(st->queue, seq) + 1;
}

int64_t
store_queue_length(const struct store *st)
{
	return (int64_t)rank_count(st->queue);
}

uint64_t
store_queue_departures(const struct store *st)
{
	return st->departures;
}

int64_t
store_queue_departed(const struct store *st)
{
	return st->departed;
}

/* ---- transactions --------------------------------------------------- */

/* The hook (after a commit), then what waited, each told ok. Those told
 * may write again: that is the next transaction's. */
static void
tell(struct store *st, struct list *waiting, int ok)
{
	if (ok && st->on_commit)
		st->on_commit(st->on_commit_arg);
	while (!list_empty(waiting)) {
		struct after *a = list_entry(waiting->next, struct after, link);
		list_remove(&a->link);
		a->fn(a->arg, ok);
		free(a);
	}
}

/* What waits for the newest commit still being synced (there is one). */
static struct list *
newest(struct store *st)
{
	return &list_entry(st->batches.prev, struct batch, link)->afters;
}

/* The newest event committed before the open transaction, if any is open
 * and its events are in the log already. */
static int64_t
open_floor(const struct store *st)
{
	return st->open && !st->be->log_at_commit ? st->floor : INT64_MAX;
}

/* The transaction just ended: what waited for it is told now, or, when
 * its commit is still being synced, once it is (store_synced). */
static void
ended(struct store *st, int ok)
{
	struct list waiting;

	st->nundo = 0;
	st->urgent = 0;
	if (ok && st->syncing) {
		struct batch *b = xmalloc(sizeof(*b));
		b->ticket = st->syncing;
		b->floor = st->floor;
		list_init(&b->afters);
		list_add_tail(&st->batches, &b->link);
	}
	st->syncing = 0;
	/* Its own sync's, or, when it wrote nothing to sync (a change
	 * refused, a claim of nothing), the newest one's: it may have read
	 * what is still being synced. */
	if (ok && !list_empty(&st->batches)) {
		list_splice(newest(st), &st->afters);
		return;
	}
	list_init(&waiting);
	list_splice(&waiting, &st->afters);
	tell(st, &waiting, ok);
}

void
store_synced(struct store *st, uint64_t ticket)
{
	struct list waiting;
	int any = 0;

	list_init(&waiting);
	while (!list_empty(&st->batches)) {
		struct batch *b =
		    list_entry(st->batches.next, struct batch, link);
		if (b->ticket > ticket)
			break;
		list_remove(&b->link);
		list_splice(&waiting, &b->afters);
		free(b);
		any = 1;
	}
	if (any)
		tell(st, &waiting, 1);
}

/* The newest event that every process may see: before the oldest commit
 * still being synced, and before the open transaction. */
static int64_t
settled(const struct store *st)
{
	int64_t upto = open_floor(st);

	if (!list_empty(&st->batches)) {
		int64_t f =
		    list_entry(st->batches.next, struct batch, link)->floor;
		if (f < upto)
			upto = f;
	}
	return upto;
}

/* Commit the open transaction, or undo it and everything it did to the
 * queue's order when the commit fails. */
static enum store_rc
close_tx(struct store *st)
{
	enum store_rc rc = st->be->commit(st);

	if (rc != STORE_OK) {
		char keep[STORE_ERR_MAX];
		memcpy(keep, st->err, sizeof(keep));
		st->be->rollback(st);
		memcpy(st->err, keep, sizeof(keep));
		undo_to(st, 0);
		st->indexed = st->open_indexed;
		st->departed = st->open_departed;
	}
	st->open = 0;
	ended(st, rc == STORE_OK);
	return rc;
}

/* Open the write transaction, if none is: the write lock is ours from
 * now, so what the log holds before it is all there will be before us. */
static enum store_rc
open_tx(struct store *st)
{
	enum store_rc rc;

	if (st->open)
		return STORE_OK;
	if ((rc = st->be->begin(st, 1)) != STORE_OK)
		return rc;
	st->open = 1;
	st->opened_ms = now_ms();
	catch_up(st);
	st->floor = st->open_indexed = st->indexed;
	st->open_departed = st->departed;
	return STORE_OK;
}

/* A change failed: undo it alone when grouped (unless the failure took
 * the whole transaction with it), else the transaction. */
static void
undo_write(struct store *st)
{
	char keep[STORE_ERR_MAX];

	memcpy(keep, st->err, sizeof(keep));
	if (st->group && st->be->rollback_to(st) == STORE_OK) {
		undo_to(st, st->mark);
		st->indexed = st->mark_indexed;
		st->departed = st->mark_departed;
	} else {
		st->be->rollback(st);
		undo_to(st, 0);
		st->indexed = st->open_indexed;
		st->departed = st->open_departed;
		st->open = 0;
		ended(st, 0);
	}
	memcpy(st->err, keep, sizeof(keep));
}

enum store_rc
store_write(struct store *st, store_tx_fn fn, void *arg)
{
	enum store_rc rc;

	if (st->depth)
		return fn(st, arg);
	if ((rc = open_tx(st)) != STORE_OK)
		return rc;
	if (st->group && (rc = st->be->savepoint(st)) != STORE_OK) {
		undo_write(st);
		return rc;
	}
	st->mark = st->nundo;
	st->mark_indexed = st->indexed;
	st->mark_departed = st->departed;
	st->depth = 1;
	rc = fn(st, arg);
	st->depth = 0;
	if (rc == STORE_OK && st->group)
		rc = st->be->release(st);
	if (rc != STORE_OK)
		undo_write(st);
	else if (!st->group)
		rc = close_tx(st);
	else if (!st->lazy)
		st->urgent = 1;
	return rc;
}

enum store_rc
store_read(struct store *st, store_tx_fn fn, void *arg)
{
	enum store_rc rc;

	if (st->open || st->depth)
		return fn(st, arg);
	if ((rc = st->be->begin(st, 0)) != STORE_OK)
		return rc;
	rc = fn(st, arg);
	if (rc == STORE_OK)
		rc = st->be->commit(st);
	if (rc != STORE_OK) {
		char keep[STORE_ERR_MAX];
		memcpy(keep, st->err, sizeof(keep));
		st->be->rollback(st);
		memcpy(st->err, keep, sizeof(keep));
	}
	return rc;
}

void
store_group(struct store *st, int on)
{
	if (!on)
		store_drain(st);
	st->group = on;
}

void
store_drain(struct store *st)
{
	store_sync(st);
	while (!list_empty(&st->batches)) {
		if (st->be->settle)
			st->be->settle(st);
		store_synced(st, UINT64_MAX);
		store_sync(st);
	}
}

enum store_rc
store_sync(struct store *st)
{
	enum store_rc rc = STORE_OK;

	enter(st);
	while (st->open)
		if (close_tx(st) != STORE_OK)
			rc = STORE_ERROR;
	return rc;
}

int
store_pending(const struct store *st)
{
	return st->open;
}

int64_t
store_due(const struct store *st)
{
	int64_t left;

	if (!st->open)
		return -1;
	if (st->urgent || !list_empty(&st->afters))
		return 0;
	left = st->opened_ms + STORE_LAZY_MS - now_ms();
	return left > 0 ? left : 0;
}

void
store_after(struct store *st, void (*fn)(void *, int), void *arg)
{
	struct after *a;

	if (!st->open && list_empty(&st->batches)) {
		fn(arg, 1);
		return;
	}
	a = xmalloc(sizeof(*a));
	a->fn = fn;
	a->arg = arg;
	/* With none open, what it saw may be a commit still being synced. */
	list_add_tail(st->open ? &st->afters : newest(st), &a->link);
}

/* ---- open and close ------------------------------------------------- */

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
	if (st == NULL)
		return;
	store_drain(st);
	rank_free(st->queue);
	free(st->undo);
	store_accounts_up(st, NULL, 0);
	st->be->free(st);
}

const char *
store_error(struct store *st)
{
	return st->err;
}

const char *
store_process(const struct store *st)
{
	return st->be->process(st);
}

void
store_watch(struct store *st, struct event_base *base)
{
	if (st->be->watch)
		st->be->watch(st, base);
}

void
store_notified(struct store *st)
{
	if (!st->open && st->on_commit)
		st->on_commit(st->on_commit_arg);
}

void
store_on_commit(struct store *st, void (*fn)(void *), void *arg)
{
	st->on_commit = fn;
	st->on_commit_arg = arg;
}

/* ---- the calls ------------------------------------------------------ */

static enum store_rc
placed(struct store *st, enum store_rc rc, struct job *j)
{
	if (rc == STORE_OK || rc == STORE_EXISTS || rc == STORE_ACTIVE ||
	    rc == STORE_CONFLICT)
		store_place(st, j);
	return rc;
}

static enum store_rc
placed_all(struct store *st, enum store_rc rc, struct job_list *l, size_t from)
{
	for (size_t i = from; rc == STORE_OK && i < l->n; i++)
		store_place(st, &l->v[i]);
	return rc;
}

/* A read that shows positions: first what others committed. */
static struct store *
enter_placing(struct store *st)
{
	store_queue_sync(st);
	return enter(st);
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
store_submit_reads(struct store *st, const char *user_id,
    const char *const *ids, size_t n, struct upload *out, int64_t since,
    int64_t upto, int64_t *count, int64_t *oldest)
{
	enum store_rc rc = STORE_OK;

	for (size_t i = 0; i < n; i++)
		upload_init(&out[i]);
	*count = *oldest = 0;
	if (enter(st)->be->submit_reads)
		return st->be->submit_reads(
		    st, user_id, ids, n, out, since, upto, count, oldest);
	for (size_t i = 0; i < n && rc != STORE_ERROR; i++)
		rc = st->be->upload_get(st, ids[i], user_id, &out[i]);
	if (rc != STORE_ERROR && upto > 0)
		rc = st->be->user_submits(
		    st, user_id, since, upto, count, oldest);
	return rc == STORE_ERROR ? rc : STORE_OK;
}

enum store_rc
store_job_submit(struct store *st, const struct job_new *in, struct job *out,
    int64_t *balance)
{
	job_init(out);
	return placed(st, enter(st)->be->job_submit(st, in, out, balance), out);
}

enum store_rc
store_job_get(
    struct store *st, const char *id, const char *user_id, struct job *out)
{
	job_init(out);
	return placed(
	    st, enter_placing(st)->be->job_get(st, id, user_id, out), out);
}

enum store_rc
store_job_by_token(struct store *st, const char *token, struct job *out)
{
	job_init(out);
	return placed(
	    st, enter_placing(st)->be->job_by_token(st, token, out), out);
}

enum store_rc
store_job_active(struct store *st, const char *user_id, struct job *out)
{
	job_init(out);
	return placed(
	    st, enter_placing(st)->be->job_active(st, user_id, out), out);
}

enum store_rc
store_job_list(
    struct store *st, const struct job_filter *f, struct job_list *out)
{
	size_t from = out->n;

	return placed_all(
	    st, enter_placing(st)->be->job_list(st, f, out), out, from);
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
	return enter(st)->be->promote(st, out);
}

enum store_rc
store_job_running(
    struct store *st, const char *id, const char *task_id, struct job *out)
{
	enum store_rc rc;

	job_init(out);
	st->lazy = 1; /* recovery settles a job left starting */
	rc = enter(st)->be->job_running(st, id, task_id, out);
	st->lazy = 0;
	return rc;
}

/* A message of at most STORE_MESSAGE_MAX bytes, cut at a character: a
 * provider's text reaches every page that shows the job. */
static const char *
bounded(const char *m, char *buf)
{
	size_t n;

	if (m == NULL || strlen(m) <= STORE_MESSAGE_MAX)
		return m;
	n = utf8_cut(m, STORE_MESSAGE_MAX - 3);
	memcpy(buf, m, n);
	memcpy(buf + n, "\xe2\x80\xa6", 4); /* … */
	return buf;
}

enum store_rc
store_job_finish(struct store *st, const char *id, enum job_status to,
    const char *error_code, const char *error_message, json_t *outputs,
    int release_slot, struct job *out)
{
	char buf[STORE_MESSAGE_MAX + 1];

	job_init(out);
	return placed(st,
	    enter(st)->be->job_finish(st, id, to, error_code,
	        bounded(error_message, buf), outputs, release_slot, out),
	    out);
}

struct kept {
	const char *id, *user_id;
	json_t *outputs;
	const json_t *stored;
	int release_slot;
	struct job *out;
};

static enum store_rc
kept_tx(struct store *st, void *arg)
{
	struct kept *k = arg;
	enum store_rc rc = store_job_finish(st, k->id, JOB_COMPLETED, NULL,
	    NULL, k->outputs, k->release_slot, k->out);

	return rc == STORE_OK ? enter(st)->be->outputs_add(
	                            st, k->id, k->user_id, k->stored)
	                      : rc;
}

enum store_rc
store_job_complete_kept(struct store *st, const char *id, const char *user_id,
    json_t *outputs, const json_t *stored, int release_slot, struct job *out)
{
	struct kept k = {id, user_id, outputs, stored, release_slot, out};

	return store_write(st, kept_tx, &k);
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

/* While a transaction is open, the events it appended are not committed
 * yet: only those before it are read. */
enum store_rc
store_events_after(struct store *st, int64_t after, const char *user_id,
    const char *job_id, int limit, struct store_event_list *out)
{
	return enter(st)->be->events_after(
	    st, after, settled(st), user_id, job_id, limit, out);
}

enum store_rc
store_events_exist(struct store *st, int64_t after, const char *user_id,
    const char *job_id, int *any)
{
	struct store_event_list l = {0};
	enum store_rc rc = enter(st)->be->events_after(
	    st, after, open_floor(st), user_id, job_id, 1, &l);

	*any = l.n > 0;
	store_event_list_cleanup(&l);
	return rc;
}

/* The newest event at or below upto (INT64_MAX: the log's newest). */
static enum store_rc
newest_event(struct store *st, int64_t upto, int64_t *id)
{
	*id = upto;
	if (upto != INT64_MAX)
		return STORE_OK;
	*id = 0;
	return enter(st)->be->events_last(st, id);
}

enum store_rc
store_events_top(struct store *st, int64_t *id)
{
	return newest_event(st, open_floor(st), id);
}

enum store_rc
store_events_last(struct store *st, int64_t *id)
{
	return newest_event(st, settled(st), id);
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

enum store_rc
store_lease(struct store *st, int64_t ttl_ms, int mine,
    struct job_list *starting, struct job_list *running,
    struct job_list *holding)
{
	struct job_list all = {0};
	enum store_rc rc = enter(st)->be->lease(st, ttl_ms, mine, &all);

	for (size_t i = 0; rc == STORE_OK && i < all.n; i++) {
		struct job_list *to = all.v[i].status == JOB_STARTING ? starting
		                      : all.v[i].status == JOB_RUNNING
		                          ? running
		                          : holding;
		*job_list_push(to) = all.v[i];
		job_init(&all.v[i]);
	}
	job_list_cleanup(&all);
	return rc;
}

/* ---- accounts ------------------------------------------------------ */

void
store_accounts_up(struct store *st, const char *const *names, size_t n)
{
	json_t *a;

	free(st->up);
	for (size_t i = 0; i < st->nup; i++)
		free(st->up_names[i]);
	free(st->up_names);
	st->up = NULL;
	st->up_names = NULL;
	st->nup = 0;
	if (names == NULL || n == 0)
		return;
	a = json_array();
	st->up_names = xcalloc(n, sizeof(*st->up_names));
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(a, json_string(names[i]));
		st->up_names[st->nup++] = xstrdup(names[i]);
	}
	st->up = json_dumps(a, JSON_COMPACT);
	json_decref(a);
}

enum store_rc
store_job_move(struct store *st, const char *id, struct job *out)
{
	job_init(out);
	return enter(st)->be->job_move(st, id, out);
}

enum store_rc
store_slots_by_account(struct store *st, json_t **used)
{
	*used = NULL;
	return enter(st)->be->slots_by_account(st, used);
}

enum store_rc
store_job_cost(struct store *st, const char *id, const json_t *provider_cost)
{
	char *text = json_dumps(provider_cost, JSON_COMPACT);
	enum store_rc rc = enter(st)->be->job_cost(st, id, text);

	free(text);
	return rc;
}

/* ---- usage and retention ------------------------------------------- */

enum store_rc
store_user_submits(struct store *st, const char *user_id, int64_t since,
    int64_t upto, int64_t *n, int64_t *oldest)
{
	*n = *oldest = 0;
	return enter(st)->be->user_submits(st, user_id, since, upto, n, oldest);
}

enum store_rc
store_user_uploads(struct store *st, const char *user_id, int64_t since,
    int64_t *n, int64_t *bytes, int64_t *oldest)
{
	*n = *bytes = *oldest = 0;
	return enter(st)->be->user_uploads(
	    st, user_id, since, n, bytes, oldest);
}

struct upload *
upload_list_push(struct upload_list *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	upload_init(&l->v[l->n]);
	return &l->v[l->n++];
}

void
upload_list_cleanup(struct upload_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		upload_cleanup(&l->v[i]);
	free(l->v);
	*l = (struct upload_list){0};
}

enum store_rc
store_uploads_older(
    struct store *st, int64_t before_ms, int limit, struct upload_list *out)
{
	return enter(st)->be->uploads_older(st, before_ms, limit, out);
}

enum store_rc
store_upload_delete(struct store *st, const char *id)
{
	return enter(st)->be->upload_delete(st, id);
}

/* ---- the outbox ---------------------------------------------------- */

int
store_hooked(enum store_hooks h, enum job_status s)
{
	return h == STORE_HOOKS_ALL ||
	       (h == STORE_HOOKS_TERMINAL && job_status_terminal(s));
}

struct store_delivery *
store_delivery_push(struct store_delivery_list *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
	return &l->v[l->n++];
}

void
store_delivery_list_cleanup(struct store_delivery_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		struct store_delivery *d = &l->v[i];
		free(d->job_id);
		free(d->status);
		free(d->data);
		free(d->state);
		free(d->last_error);
	}
	free(l->v);
	*l = (struct store_delivery_list){0};
}

enum store_rc
store_outbox_claim(struct store *st, int64_t now, int64_t claim_ms, int limit,
    struct store_delivery_list *out)
{
	return enter(st)->be->outbox_claim(st, now, claim_ms, limit, out);
}

enum store_rc
store_outbox_done(struct store *st, int64_t event_id, int ok, int64_t next_at,
    const char *error)
{
	return enter(st)->be->outbox_done(st, event_id, ok, next_at, error);
}

enum store_rc
store_outbox_list(struct store *st, const char *state, int64_t after, int limit,
    struct store_delivery_list *out)
{
	return enter(st)->be->outbox_list(st, state, after, limit, out);
}

enum store_rc
store_outbox_counts(struct store *st, int64_t *pending, int64_t *failed)
{
	*pending = *failed = 0;
	return enter(st)->be->outbox_counts(st, pending, failed);
}

/* ---- outputs, secrets ---------------------------------------------- */

enum store_rc
store_outputs_add(struct store *st, const char *job_id, const char *user_id,
    const json_t *stored)
{
	return enter(st)->be->outputs_add(st, job_id, user_id, stored);
}

enum store_rc
store_output_get(struct store *st, const char *id, json_t **out)
{
	*out = NULL;
	return enter(st)->be->output_get(st, id, out);
}

enum store_rc
store_secret(struct store *st, const char *name, char **value)
{
	char fresh[65];

	*value = NULL;
	random_hex(fresh, 32);
	return enter(st)->be->secret(st, name, fresh, value);
}
