/*
 * api.c — the REST handlers of docs/api.md. The route table says what each
 * route needs: the gate checks the caller's token (and role) from the
 * request's head, before any body is read, so a handler starts with a
 * known caller. Each handler checks the request completely before anything
 * is written (bad input writes nothing), asks the store or the rules, and
 * renders the JSON. Outcomes become HTTP statuses here and nowhere else.
 */
#include "api.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "job.h"
#include "jsonr.h"
#include "jwks.h"
#include "outputs.h"
#include "stats.h"
#include "tools.h"
#include "uploads.h"
#include "util.h"
#include "web.h"

#define LIST_DEFAULT 20
#define LIST_MAX 100
#define KEY_MAX 255

struct api {
	const struct config *cfg;
	struct store *st;
	struct sched *sc;
	struct events *ev;
	struct metrics *m;
	struct auth *auth;
	struct jwks *jwks;   /* with auth.jwks_url */
	struct outputs *out; /* with outputs.store */
	struct http_route *routes;
	size_t nroutes;
};

/* Who may call a route; the gate checks it from the request's head. */
enum access {
	ANYONE, /* no token (the webhook's own token is in its path) */
	SIGNED, /* a signed URL or a bearer token: the handler checks which,
	         * the gate only waits for the keys a token names */
	USER,   /* a valid bearer token */
	ADMIN,  /* a valid bearer token with the admin role */
};

/* What a route carries: its body's limit, and how its answer leaves. */
enum kind {
	JSON,   /* a body up to server.max_body; the answer after the commit */
	UPLOAD, /* a body up to uploads.max_bytes, spooled to disk; likewise */
	STREAM, /* an event stream: committed events only, never held */
};

/* What else a route allows. */
enum {
	RESERVE = 1,     /* served from the reserve of connections when full */
	QUERY_TOKEN = 2, /* the token may come as ?access_token= (a page's
	                  * EventSource or sendBeacon cannot set a header) */
};

/* A per-user limit was reached: 429 with when to try again. */
static void
rate_limited(struct http_req *r, const char *what, int64_t retry_ms)
{
	char msg[128], after[24];
	int64_t s = retry_ms > 0 ? (retry_ms + 999) / 1000 : 1;

	snprintf(after, sizeof(after), "%lld", (long long)s);
	snprintf(msg, sizeof(msg), "too many %s; try again in %lld s", what,
	    (long long)s);
	http_reply_header(r, "Retry-After", after);
	http_reply_error(r, 429, "rate_limited", msg,
	    json_pack(
	        "{s:s, s:I}", "limit", what, "retry_after_s", (json_int_t)s));
}

static const char *bearer(const struct http_req *r, int query);

/* ---- helpers ------------------------------------------------------- */

static void
unavailable(struct http_req *r)
{
	http_reply_error(r, 503, "unavailable",
	    "the store is unreachable; nothing was written", NULL);
}

static void
not_found(struct http_req *r, const char *what)
{
	char msg[64];
	snprintf(msg, sizeof(msg), "no such %s", what);
	http_reply_error(r, 404, "not_found", msg, NULL);
}

static void
invalid(struct http_req *r, json_t *fields)
{
	http_reply_error(r, 422, "validation_failed",
	    "the request has invalid fields",
	    json_pack("{s:o}", "fields", fields));
}

static void
invalid1(struct http_req *r, const char *field, const char *reason)
{
	invalid(r, json_pack("{s:s}", field, reason));
}

/* The query parameter name as an integer from lo to hi into *out (left
 * alone when absent or empty): 0, or -1 after answering 422. */
static int
query_int(struct http_req *r, const char *name, long long lo, long long hi,
    long long *out)
{
	const char *v = http_req_query(r, name);
	long long n;
	char reason[80];

	if (v == NULL || *v == '\0')
		return 0;
	if (parse_ll(v, &n) || n < lo || n > hi) {
		snprintf(reason, sizeof(reason),
		    "must be an integer from %lld to %lld", lo, hi);
		invalid1(r, name, reason);
		return -1;
	}
	*out = n;
	return 0;
}

/* The caller, as the gate verified it: routes that need a token, and
 * SIGNED ones called with a valid one (else NULL). */
static const struct auth_claims *
caller(const struct http_req *r)
{
	return http_req_data(r);
}

/* The body as a JSON object, or NULL after answering 400. */
static json_t *
body_object(struct http_req *r)
{
	size_t len;
	const char *b = http_req_body(r, &len);
	json_error_t e;
	json_t *v = jsonr_loadb(b, len, JSON_REJECT_DUPLICATES, &e);
	char msg[256];

	if (v == NULL) {
		snprintf(msg, sizeof(msg), "body is not JSON: %s (line %d)",
		    e.text, e.line);
		http_reply_error(r, 400, "invalid_json", msg, NULL);
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		http_reply_error(
		    r, 400, "invalid_json", "body must be a JSON object", NULL);
		return NULL;
	}
	return v;
}

/* The job has outputs fila keeps, whose URLs are signed as it is shown. */
static int
signs_urls(const struct api *a, const struct job *j)
{
	return a->out != NULL && json_array_size(j->outputs) > 0;
}

/* The job as the API shows it: the outputs fila keeps with their URLs
 * signed now (those of its event were signed when it completed). */
static json_t *
job_json(struct api *a, const struct job *j)
{
	json_t *o = job_to_json(j), *outs, *e;
	int64_t now = now_ms() / 1000;
	size_t i;

	if (!signs_urls(a, j))
		return o;
	outs = json_deep_copy(j->outputs);
	json_array_foreach(outs, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		char *url;
		if (id == NULL)
			continue;
		url = outputs_url(a->out, id, now);
		json_object_set_new(e, "url", json_string(url));
		free(url);
	}
	json_object_set_new(o, "outputs", outs);
	return o;
}

/* The jobs as the API shows them; the admin's views with their
 * accounts. */
static json_t *
jobs_json(struct api *a, const struct job_list *l, int admin)
{
	json_t *v = json_array();

	for (size_t i = 0; i < l->n; i++) {
		json_t *o = job_json(a, &l->v[i]);
		if (admin)
			json_object_set_new(o, "account",
			    l->v[i].account ? json_string(l->v[i].account)
			                    : json_null());
		json_array_append_new(v, o);
	}
	return v;
}

/* The job as job_json() shows it: the text the store wrote for it when
 * there is one and no URL is to be signed. */
static void
reply_job(struct api *a, struct http_req *r, int status, const struct job *j)
{
	if (j->json && !signs_urls(a, j))
		http_reply(
		    r, status, "application/json", j->json, strlen(j->json));
	else
		http_reply_json(r, status, job_json(a, j));
}

/* ---- health and tools ---------------------------------------------- */

static void
h_health(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	json_t *o = json_pack("{s:b}", "ok", 1);

	if (!sched_reachable(a->sc))
		json_object_set_new(o, "provider", json_string("unreachable"));
	http_reply_json(r, 200, o);
}

static void
h_tools(struct http_req *r, void *ctx)
{
	struct api *a = ctx;

	http_reply_json(r, 200, tools_to_json(&a->cfg->tools));
}

/* ---- uploads ------------------------------------------------------- */

/* Over a per-user upload limit (§11): 0, or 1 after answering 429 (or
 * 503). The bytes counted include this upload's. */
static int
upload_limited(struct api *a, struct http_req *r, int64_t size)
{
	const struct config *cfg = a->cfg;
	int64_t now = now_ms(), n, bytes, oldest;

	if (cfg->uploads_per_hour > 0) {
		if (store_user_uploads(a->st, caller(r)->sub, now - 3600000, &n,
		        &bytes, &oldest) != STORE_OK) {
			unavailable(r);
			return 1;
		}
		if (n >= cfg->uploads_per_hour) {
			rate_limited(
			    r, "uploads this hour", oldest + 3600000 - now);
			return 1;
		}
	}
	if (cfg->upload_bytes_per_day > 0) {
		if (store_user_uploads(a->st, caller(r)->sub, now - 86400000,
		        &n, &bytes, &oldest) != STORE_OK) {
			unavailable(r);
			return 1;
		}
		if (bytes + size > cfg->upload_bytes_per_day) {
			rate_limited(
			    r, "upload bytes today", oldest + 86400000 - now);
			return 1;
		}
	}
	return 0;
}

/* The upload, spooled to disk as it came (or, without a spool directory,
 * in memory): its type read from its structure, then moved into place. */
static void
h_upload(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	const struct http_spool *sp = http_req_spool(r);
	struct upload u;
	size_t len;
	const char *body = http_req_body(r, &len);
	const char *name = http_req_query(r, "filename");
	const char *type =
	    sp ? uploads_sniff_file(sp->head, sp->head_len, sp->path, sp->size)
	       : uploads_sniff_file(body, len, NULL, len);
	char err[256];
	int rc;

	if (name && (strlen(name) > 255 || !text_ok(name, strlen(name)))) {
		invalid1(r, "filename",
		    "must be at most 255 bytes of UTF-8 without control or"
		    " bidi characters");
		return;
	}
	if (type == NULL) {
		http_reply_error(r, 415, "unsupported_media_type",
		    "the file is not png, jpeg, webp, mp4 or mov, or its"
		    " structure does not parse as one",
		    NULL);
		return;
	}
	if (upload_limited(a, r, sp ? (int64_t)sp->size : (int64_t)len))
		return;
	if (sp) {
		char sha[65];
		int64_t size = (int64_t)sp->size;
		char *path;

		memcpy(sha, sp->sha256, sizeof(sha));
		path = http_req_spool_take(r);
		rc = uploads_adopt(&u, a->cfg->uploads_dir, caller(r)->sub,
		    type, name, path, size, sha, err, sizeof(err));
		if (rc != 0)
			unlink(path);
		free(path);
	} else {
		rc = uploads_create(&u, a->cfg->uploads_dir, caller(r)->sub,
		    type, name, body, len, err, sizeof(err));
	}
	if (rc != 0) {
		fprintf(stderr, "fila: %s\n", err);
		unavailable(r);
		return;
	}
	if (store_upload_add(a->st, &u) != STORE_OK) {
		unlink(u.path);
		unavailable(r);
	} else {
		http_reply_json(r, 201,
		    json_pack("{s:s, s:s, s:I, s:s}", "id", u.id, "type",
		        u.type, "size", (json_int_t)u.size, "sha256",
		        u.sha256));
	}
	upload_cleanup(&u);
}

/* ---- submit -------------------------------------------------------- */

/* What a submit reads before it is made, in one store call (one round
 * trip on PostgreSQL): the uploads its file inputs name, and the caller's
 * submits of the last minute. */
struct submit_reads {
	int64_t now;
	int64_t recent, oldest; /* as store_user_submits() tells them */
};

/* Every file input names an upload of the caller's of the right kind
 * (else a word in fields), and rd read: 0, or -1 when the store cannot
 * tell. */
static int
check_uploads(struct api *a, const struct tool *t, json_t *inputs,
    const char *user, json_t *fields, struct submit_reads *rd)
{
	int64_t per = a->cfg->submits_per_minute;
	const char **ids = xcalloc(t->ninputs + 1, sizeof(*ids));
	size_t *of = xcalloc(t->ninputs + 1, sizeof(*of)), n = 0;
	struct upload *up;
	enum store_rc rc;

	for (size_t i = 0; i < t->ninputs; i++) {
		json_t *v = json_object_get(inputs, t->inputs[i].name);
		if ((t->inputs[i].type == INPUT_IMAGE ||
		        t->inputs[i].type == INPUT_VIDEO) &&
		    json_is_string(v)) {
			of[n] = i;
			ids[n++] = json_string_value(v);
		}
	}
	up = xcalloc(n + 1, sizeof(*up));
	rd->now = now_ms();
	rc = store_submit_reads(a->st, user, ids, n, up, rd->now - 60000,
	    per > 0 ? per : 0, &rd->recent, &rd->oldest);
	for (size_t k = 0; k < n; k++) {
		const struct tool_input *in = &t->inputs[of[k]];
		const char *why =
		    up[k].id == NULL ? "upload not found"
		    : in->type == INPUT_IMAGE && !uploads_is_image(up[k].type)
		        ? "expected an image upload"
		    : in->type == INPUT_VIDEO && !uploads_is_video(up[k].type)
		        ? "expected a video upload"
		        : NULL;
		if (rc == STORE_OK && why != NULL)
			json_object_set_new(fields, in->name, json_string(why));
		upload_cleanup(&up[k]);
	}
	free(up);
	free(of);
	free(ids);
	return rc == STORE_OK ? 0 : -1;
}

static void
submit_answer(struct api *a, struct http_req *r, enum sched_rc rc,
    const struct job *j, int64_t balance, int64_t cost)
{
	switch (rc) {
	case SCHED_OK:
		reply_job(a, r, 201, j);
		break;
	case SCHED_EXISTS:
		reply_job(a, r, 200, j);
		break;
	case SCHED_ACTIVE:
		http_reply_error(r, 409, "active_job_exists",
		    "you already have an active job",
		    json_pack("{s:s, s:s, s:s}", "job_id", j->id, "tool",
		        j->tool, "status", job_status_name(j->status)));
		break;
	case SCHED_CREDITS:
		http_reply_error(r, 402, "insufficient_credits",
		    "not enough credits for this tool",
		    json_pack("{s:I, s:I}", "balance", (json_int_t)balance,
		        "cost", (json_int_t)cost));
		break;
	default:
		unavailable(r);
	}
}

/* The submit's tool and fields, checked, and rd read: the tool, or NULL
 * after answering (422, or 503 when the store cannot be read). */
static const struct tool *
submit_check(struct api *a, struct http_req *r, json_t *body,
    const char **variant, struct submit_reads *rd)
{
	const char *key = http_req_header(r, "Idempotency-Key");
	json_t *fields = json_object();
	const struct tool *t =
	    tools_check_job(&a->cfg->tools, body, variant, fields);

	if (t && check_uploads(a, t, json_object_get(body, "inputs"),
	             caller(r)->sub, fields, rd)) {
		json_decref(fields);
		unavailable(r);
		return NULL;
	}
	if (key && (*key == '\0' || strlen(key) > KEY_MAX))
		json_object_set_new(fields, "Idempotency-Key",
		    json_string("must be 1 to 255 bytes"));
	if (json_object_size(fields)) {
		invalid(r, fields);
		return NULL;
	}
	json_decref(fields);
	return t;
}

/* Over limits.submits_per_minute (§11), as rd counted: 0, or 1 after
 * answering 429. It counts the jobs made; a repeat with an
 * Idempotency-Key made none, but while the limit holds it waits like any
 * submit. */
static int
submit_limited(struct api *a, struct http_req *r, const struct submit_reads *rd)
{
	int64_t per = a->cfg->submits_per_minute;

	if (per <= 0 || rd->recent < per)
		return 0;
	rate_limited(r, "submits this minute", rd->oldest + 60000 - rd->now);
	return 1;
}

/* 503 queue_full (docs/api.md §9): the estimated wait is over max_wait;
 * nothing was charged or written. */
static void
queue_full(struct http_req *r, int64_t eta, int64_t retry, int64_t max_wait)
{
	char after[24];

	snprintf(after, sizeof(after), "%lld", (long long)retry);
	http_reply_header(r, "Retry-After", after);
	http_reply_error(r, 503, "queue_full",
	    "the queue is too long right now: the estimated wait is over "
	    "queue.max_wait",
	    json_pack("{s:I, s:I}", "eta_s", (json_int_t)eta, "max_wait_s",
	        (json_int_t)max_wait));
}

static void
h_submit(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	const char *variant = NULL;
	const struct tool *t;
	struct submit_reads rd = {0};
	json_t *body;
	char token[65];

	if ((body = body_object(r)) == NULL)
		return;
	if ((t = submit_check(a, r, body, &variant, &rd)) == NULL ||
	    submit_limited(a, r, &rd)) {
		json_decref(body);
		return;
	}
	struct job j;
	int64_t balance = 0;
	sorted_hex(token, 32); /* 208 bits of it random */
	char *id = new_id("job_");
	struct job_new in = {
	    .id = id,
	    .user_id = caller(r)->sub,
	    .tool = t->name,
	    .variant = variant,
	    .inputs = json_object_get(body, "inputs"),
	    .cost = t->cost,
	    .session_id =
	        json_string_value(json_object_get(body, "session_id")),
	    .idem_key = http_req_header(r, "Idempotency-Key"),
	    .webhook_token = token,
	};
	job_init(&j);
	int64_t t0 = mono_ms(), eta = 0, retry = 0;
	if (sched_admit(a->sc, &in, &eta, &retry)) {
		queue_full(r, eta, retry, a->cfg->max_wait);
		free(id);
		json_decref(body);
		return;
	}
	enum sched_rc rc = sched_submit(a->sc, &in, &j, &balance);
	submit_answer(a, r, rc, &j, balance, t->cost);
	metrics_observe(a->m, HIST_SUBMIT, (double)(mono_ms() - t0) / 1000.0);
	job_cleanup(&j);
	free(id);
	json_decref(body);
}

/* ---- reading and cancelling jobs ----------------------------------- */

static void
h_job(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	struct job j;

	job_init(&j);
	switch (
	    store_job_get(a->st, http_req_param(r, 0), caller(r)->sub, &j)) {
	case STORE_OK:
		reply_job(a, r, 200, &j);
		break;
	case STORE_NOTFOUND:
		not_found(r, "job");
		break;
	default:
		unavailable(r);
	}
	job_cleanup(&j);
}

/* Parse ?status=&tool=&limit=&cursor= into f; 0, or -1 after a 422. */
static int
list_filter(struct http_req *r, struct job_filter *f)
{
	const char *status = http_req_query(r, "status");
	const char *cursor = http_req_query(r, "cursor");
	enum job_status s;
	long long n = LIST_DEFAULT;

	f->status = -1;
	f->tool = http_req_query(r, "tool");
	if (f->tool && *f->tool == '\0')
		f->tool = NULL;
	if (status && *status) {
		if (job_status_parse(status, &s)) {
			invalid1(r, "status", "unknown status");
			return -1;
		}
		f->status = (int)s;
	}
	if (query_int(r, "limit", 1, LIST_MAX, &n))
		return -1;
	f->limit = (int)n;
	if (cursor && *cursor) {
		if (parse_ll(cursor, &n) || n < 1) {
			invalid1(r, "cursor", "not a cursor from this API");
			return -1;
		}
		f->before_seq = n;
	}
	return 0;
}

static void
h_jobs(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	struct job_filter f = {0};
	struct job_list l = {0};
	json_t *next = json_null();

	if (list_filter(r, &f))
		return;
	f.user_id = caller(r)->sub;
	f.limit++; /* one more tells whether there is a next page */
	if (store_job_list(a->st, &f, &l) != STORE_OK) {
		job_list_cleanup(&l);
		unavailable(r);
		return;
	}
	if (l.n == (size_t)f.limit) {
		job_cleanup(&l.v[--l.n]);
		next = json_sprintf("%lld", (long long)l.v[l.n - 1].seq);
	}
	http_reply_json(r, 200,
	    json_pack("{s:o, s:o}", "jobs", jobs_json(a, &l, 0), "next_cursor",
	        next));
	job_list_cleanup(&l);
}

static void
cancel(struct api *a, struct http_req *r, const char *user, const char *code)
{
	struct job j;

	job_init(&j);
	switch (sched_cancel(a->sc, http_req_param(r, 0), user, code, &j)) {
	case SCHED_OK:
		reply_job(a, r, 200, &j);
		break;
	case SCHED_NOTFOUND:
		not_found(r, "job");
		break;
	case SCHED_FINISHED:
		http_reply_error(r, 409, "job_finished",
		    "the job has already finished",
		    json_pack("{s:s}", "status", job_status_name(j.status)));
		break;
	default:
		unavailable(r);
	}
	job_cleanup(&j);
}

static void
h_cancel(struct http_req *r, void *ctx)
{
	cancel(ctx, r, caller(r)->sub, JOB_ERR_CANCELLED);
}

/* ---- event streams ------------------------------------------------ */

/* Where a stream starts: Last-Event-ID, else ?after=, else -1 (now). */
static int
stream_after(struct http_req *r, int64_t *after)
{
	const char *v = http_req_header(r, "Last-Event-ID");
	long long n;

	if (v == NULL || *v == '\0')
		v = http_req_query(r, "after");
	*after = -1;
	if (v == NULL || *v == '\0')
		return 0;
	if (parse_ll(v, &n) || n < 0) {
		invalid1(r, "after", "must be an event id");
		return -1;
	}
	*after = n;
	return 0;
}

/* When a stream ends: when its token expires. 0 after answering 401 when
 * it has expired already (the clock skew that lets a request through
 * would let a stream open only to end at once, again and again). */
static int
stream_until(struct http_req *r, int64_t *until)
{
	int64_t exp = caller(r)->exp;

	*until = exp > 0 ? exp * 1000 : 0;
	if (exp > 0 && *until <= now_ms()) {
		http_reply_error(r, 401, "unauthorized",
		    "the token has expired: open the stream with a fresh one",
		    NULL);
		return 0;
	}
	return 1;
}

static void
h_events(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	int64_t after, until;

	if (stream_after(r, &after) == 0 && stream_until(r, &until))
		events_stream(a->ev, r, caller(r)->sub, NULL, after, until);
}

static void
h_job_events(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	const char *user = caller(r)->sub;
	struct job j;
	int64_t after, until;

	if (stream_after(r, &after) || !stream_until(r, &until))
		return;
	job_init(&j);
	enum store_rc rc = store_job_get(a->st, http_req_param(r, 0), user, &j);
	if (rc == STORE_OK)
		events_stream(a->ev, r, user, &j, after, until);
	else if (rc == STORE_NOTFOUND)
		not_found(r, "job");
	else
		unavailable(r);
	job_cleanup(&j);
}

/* ---- the caller ---------------------------------------------------- */

static void
h_me(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	const char *user = caller(r)->sub;
	struct job j;
	int64_t balance;
	json_t *active = json_null();

	if (store_user_balance(a->st, user, &balance) != STORE_OK) {
		unavailable(r);
		return;
	}
	job_init(&j);
	enum store_rc rc = store_job_active(a->st, user, &j);
	if (rc == STORE_OK)
		active = job_json(a, &j);
	job_cleanup(&j);
	if (rc == STORE_ERROR) {
		unavailable(r);
		return;
	}
	http_reply_json(r, 200,
	    json_pack("{s:s, s:I, s:o}", "user_id", user, "credits",
	        (json_int_t)balance, "active_job", active));
}

static void
h_ledger(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	const char *user = caller(r)->sub;
	int64_t balance;
	json_t *entries = NULL;

	if (store_user_balance(a->st, user, &balance) != STORE_OK ||
	    store_ledger(a->st, user, &entries) != STORE_OK) {
		json_decref(entries);
		unavailable(r);
		return;
	}
	http_reply_json(r, 200, json_pack("{s:o}", "entries", entries));
}

/* Leaving the page: the session's queued jobs end (running ones go on). */
static void
h_leave(struct http_req *r, void *ctx)
{
	struct api *a = ctx;

	if (sched_leave(a->sc, caller(r)->sub, http_req_param(r, 0)) !=
	    SCHED_OK)
		unavailable(r);
	else
		http_reply(r, 204, NULL, NULL, 0);
}

/* ---- the provider's callbacks -------------------------------------- */

static void
h_webhook(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	size_t len;
	const char *body = http_req_body(r, &len);
	char msg[256] = "malformed callback";

	switch (sched_webhook(
	    a->sc, http_req_param(r, 0), body, len, msg, sizeof(msg))) {
	case SCHED_OK:
		http_reply_json(r, 200, json_pack("{s:b}", "ok", 1));
		break;
	case SCHED_NOTFOUND:
		not_found(r, "webhook");
		break;
	case SCHED_MALFORMED:
		http_reply_error(r, 400, "invalid_json", msg, NULL);
		break;
	default:
		unavailable(r);
	}
}

/* ---- admin --------------------------------------------------------- */

/* The whole queue, as docs/api.md says; ?limit=N lists its first N only
 * and adds "queued_total", how many wait in all, so a page can show a
 * long queue without fetching and drawing all of it. */
static void
h_admin_queue(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	struct store_queue_view v = {0};
	long long n = 0;

	if (query_int(r, "limit", 1, INT_MAX, &n))
		return;
	if (store_queue(a->st, (int)n, 1, &v) != STORE_OK) {
		unavailable(r);
	} else {
		json_t *o = json_pack("{s:{s:I, s:I}, s:o, s:o}", "slots",
		    "total", (json_int_t)a->cfg->slots, "used",
		    (json_int_t)v.used, "active", jobs_json(a, &v.active, 1),
		    "queued", jobs_json(a, &v.queued, 1));
		if (n > 0)
			json_object_set_new(
			    o, "queued_total", json_integer(v.total));
		http_reply_json(r, 200, o);
	}
	job_list_cleanup(&v.active);
	job_list_cleanup(&v.queued);
}

static void
h_admin_credits(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	json_t *body, *amount, *reason;
	int64_t balance = 0;

	if ((body = body_object(r)) == NULL)
		return;
	amount = json_object_get(body, "amount");
	reason = json_object_get(body, "reason");
	if (!json_is_integer(amount) ||
	    json_integer_value(amount) < -CREDITS_MAX ||
	    json_integer_value(amount) > CREDITS_MAX) {
		invalid1(r, "amount",
		    "must be an integer from -9007199254740991 to "
		    "9007199254740991");
	} else if (reason && !json_is_null(reason) && !json_is_string(reason)) {
		invalid1(r, "reason", "must be a string");
	} else {
		enum store_rc rc = store_user_grant(a->st, http_req_param(r, 0),
		    json_integer_value(amount), json_string_value(reason),
		    &balance);
		if (rc == STORE_OK)
			http_reply_json(r, 200,
			    json_pack("{s:I}", "balance", (json_int_t)balance));
		else if (rc == STORE_CREDITS)
			http_reply_error(r, 402, "insufficient_credits",
			    "the balance cannot go below 0",
			    json_pack("{s:I, s:I}", "balance",
			        (json_int_t)balance, "cost",
			        (json_int_t)-json_integer_value(amount)));
		else if (rc == STORE_CONFLICT)
			invalid1(r, "amount",
			    "the balance would be over 9007199254740991");
		else
			unavailable(r);
	}
	json_decref(body);
}

static void
h_admin_stats(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	struct job_list done = {0};
	long long hours = 24;

	if (query_int(r, "hours", 1, 24 * 366, &hours))
		return;
	if (store_jobs_finished(a->st, now_ms() - hours * 3600 * 1000, &done) !=
	    STORE_OK)
		unavailable(r);
	else
		http_reply_json(r, 200, stats_by_tool(&a->cfg->tools, &done));
	job_list_cleanup(&done);
}

static void
h_admin_accounts(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	json_t *o = sched_accounts(a->sc);

	if (o == NULL)
		unavailable(r);
	else
		http_reply_json(r, 200, o);
}

static void
h_admin_cancel(struct http_req *r, void *ctx)
{
	cancel(ctx, r, NULL, JOB_ERR_ADMIN);
}

static void
h_metrics(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	char *text = metrics_render(a->m, a->st, a->cfg, events_streams(a->ev));
	int64_t pending = 0, failed = 0;
	char *all;

	if (text == NULL ||
	    store_outbox_counts(a->st, &pending, &failed) != STORE_OK) {
		free(text);
		unavailable(r);
		return;
	}
	all = xasprintf("%s"
	                "# HELP fila_webhooks The app's webhooks by state:"
	                " pending (to send, or sending) and failed for good.\n"
	                "# TYPE fila_webhooks gauge\n"
	                "fila_webhooks{state=\"pending\"} %lld\n"
	                "fila_webhooks{state=\"failed\"} %lld\n",
	    text, (long long)pending, (long long)failed);
	http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", all,
	    strlen(all));
	free(all);
	free(text);
}

/* The app's webhooks (docs/api.md §10): pending or failed deliveries,
 * oldest first; ?after= pages on from the id of the last one listed. */
static void
h_admin_webhooks(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	const char *state = http_req_query(r, "status");
	struct store_delivery_list l = {0};
	long long limit = LIST_DEFAULT * 5, after = 0;
	json_t *out;

	if (state && strcmp(state, "pending") && strcmp(state, "failed") &&
	    strcmp(state, "delivered")) {
		invalid1(r, "status", "must be pending, failed or delivered");
		return;
	}
	if (query_int(r, "limit", 1, 1000, &limit) ||
	    query_int(r, "after", 0, LLONG_MAX, &after))
		return;
	if (store_outbox_list(a->st, state, after, (int)limit, &l) !=
	    STORE_OK) {
		unavailable(r);
		return;
	}
	out = json_array();
	for (size_t i = 0; i < l.n; i++) {
		struct store_delivery *d = &l.v[i];
		char id[40], type[40], when[TIME_BUF];
		json_t *o;

		snprintf(id, sizeof(id), "evt_%lld", (long long)d->event_id);
		snprintf(type, sizeof(type), "job.%s", d->status);
		o = json_pack("{s:s, s:I, s:s, s:s, s:s, s:I}", "id", id, "seq",
		    (json_int_t)d->event_id, "type", type, "job_id", d->job_id,
		    "status", d->state, "attempts", (json_int_t)d->attempts);
		json_object_set_new(o, "last_error",
		    d->last_error ? json_string(d->last_error) : json_null());
		json_object_set_new(o, "next_attempt_at",
		    strcmp(d->state, "pending") == 0
		        ? json_string(fmt_time(d->next_at, when))
		        : json_null());
		json_object_set_new(
		    o, "created_at", json_string(fmt_time(d->at, when)));
		json_array_append_new(out, o);
	}
	store_delivery_list_cleanup(&l);
	http_reply_json(r, 200, json_pack("{s:o}", "webhooks", out));
}

/* ---- outputs fila keeps (docs/api.md §10) --------------------------- */

#define OUT_PENDING_MAX (256 * 1024) /* read no further ahead of the client */

/* One answer of an output's bytes, read as the client takes them. */
struct out_req {
	struct http_req *r;
	struct outputs_read *rd;
	struct outputs_plan p;
	int started;
};

static void
out_gone(void *arg)
{
	struct out_req *q = arg;

	outputs_read_cancel(q->rd);
	free(q);
}

static void
out_begin(void *arg)
{
	struct out_req *q = arg;

	q->started = 1;
	http_body_start(
	    q->r, q->p.status, q->p.ctype, q->p.length, out_gone, q);
}

static void
out_drained(void *arg)
{
	outputs_read_resume(((struct out_req *)arg)->rd);
}

static int
out_data(void *arg, const void *buf, size_t len)
{
	struct out_req *q = arg;

	http_stream_write(q->r, buf, len);
	if (http_stream_pending(q->r) < OUT_PENDING_MAX)
		return 0;
	http_stream_on_drain(q->r, out_drained, q);
	return 1; /* paused until the client takes what it has */
}

static void
out_end(void *arg, enum outputs_read_rc rc, const char *msg)
{
	struct out_req *q = arg;

	if (q->started)
		http_stream_end(q->r);
	else if (rc == OUTPUTS_READ_MISSING)
		not_found(q->r, "output");
	else
		http_reply_error(q->r, 503, "unavailable",
		    msg ? msg : "the output cannot be read now", NULL);
	free(q);
}

static const struct outputs_sink out_sink = {out_begin, out_data, out_end};

/* May the caller read the output of user owner: a valid signature in the
 * URL, or the owner's or an admin's token (checked by the gate, which
 * waits for a key set that may hold its key). 0, or the status answered. */
static int
output_access(
    struct api *a, struct http_req *r, const char *id, const char *owner)
{
	const struct auth_claims *c = caller(r);

	if (outputs_check_sig(a->out, id, http_req_query(r, "exp"),
	        http_req_query(r, "sig"), now_ms() / 1000) == 0)
		return 0;
	if (c == NULL) {
		http_reply_error(r, 401, "unauthorized",
		    "a signed URL (exp, sig) or a valid bearer token is "
		    "required",
		    NULL);
		return 401;
	}
	if (!c->admin && strcmp(c->sub, owner) != 0) {
		not_found(r, "output");
		return 404;
	}
	return 0;
}

static void
h_output(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	const char *id = http_req_param(r, 0);
	json_t *row = NULL, *one;
	struct output out;
	struct outputs_plan p;
	struct out_req *q;
	int rc;

	if (a->out == NULL || !output_id_valid(id)) {
		not_found(r, "output");
		return;
	}
	switch (store_output_get(a->st, id, &row)) {
	case STORE_OK:
		break;
	case STORE_NOTFOUND:
		not_found(r, "output");
		return;
	default:
		unavailable(r);
		return;
	}
	one = json_pack("[O]", row);
	rc = output_access(
	    a, r, id, json_string_value(json_object_get(row, "user_id")));
	if (rc == 0 && output_find(&out, one, id) != 0) {
		not_found(r, "output");
		rc = 404;
	}
	json_decref(one);
	json_decref(row);
	if (rc != 0)
		return;
	outputs_plan(&out, http_req_header(r, "Range"),
	    http_req_header(r, "If-None-Match"), http_req_header(r, "If-Range"),
	    &p);
	for (int i = 0; i < p.nheaders; i++)
		http_reply_header(r, p.headers[i].name, p.headers[i].value);
	if (p.ctype == NULL) { /* 304, 416 */
		http_reply(r, p.status, NULL, NULL, 0);
		return;
	}
	if (http_req_method(r) == HTTP_HEAD) {
		http_body_start(r, p.status, p.ctype, p.length, NULL, NULL);
		http_stream_end(r);
		return;
	}
	q = xcalloc(1, sizeof(*q));
	q->r = r;
	q->p = p;
	q->rd = outputs_read(a->out, &out, p.first, p.length, &out_sink, q);
}

/* ---- the browser's files ------------------------------------------- */

static void
h_static(struct http_req *r, void *ctx)
{
	const struct web_file *f = web_find(http_req_path(r));

	if (f == NULL) {
		not_found(r, "file");
		return;
	}
	for (const struct web_header *h = web_headers(f); h->name; h++)
		http_reply_header(r, h->name, h->value);
	http_reply_header(r, "Cache-Control", "no-cache");
	http_reply(r, 200, f->type, f->data, f->len);
}

/* ---- the table, and the gate that holds it ------------------------- */

static const struct {
	int methods;
	const char *pattern;
	http_handler handler;
	enum access access;
	enum kind kind;
	int flags;
} table[] = {
    {HTTP_GET | HTTP_HEAD, "/", h_static, ANYONE, JSON, 0},
    {HTTP_GET | HTTP_HEAD, "/admin", h_static, ANYONE, JSON, RESERVE},
    {HTTP_GET | HTTP_HEAD, "/fila.js", h_static, ANYONE, JSON, 0},
    {HTTP_GET | HTTP_HEAD, "/fila.d.ts", h_static, ANYONE, JSON, 0},
    {HTTP_GET | HTTP_HEAD, "/web/{}", h_static, ANYONE, JSON, RESERVE},
    {HTTP_GET | HTTP_HEAD, "/healthz", h_health, ANYONE, JSON, RESERVE},
    {HTTP_GET, "/metrics", h_metrics, ADMIN, JSON, RESERVE},
    {HTTP_GET, "/v1/events", h_events, USER, STREAM, QUERY_TOKEN},
    {HTTP_GET, "/v1/jobs/{}/events", h_job_events, USER, STREAM, QUERY_TOKEN},
    {HTTP_GET, "/v1/tools", h_tools, USER, JSON, 0},
    {HTTP_POST, "/v1/uploads", h_upload, USER, UPLOAD, 0},
    {HTTP_POST, "/v1/jobs", h_submit, USER, JSON, 0},
    {HTTP_GET, "/v1/jobs", h_jobs, USER, JSON, 0},
    {HTTP_GET, "/v1/jobs/{}", h_job, USER, JSON, 0},
    {HTTP_POST, "/v1/jobs/{}/cancel", h_cancel, USER, JSON, 0},
    {HTTP_GET, "/v1/me", h_me, USER, JSON, 0},
    {HTTP_GET, "/v1/me/ledger", h_ledger, USER, JSON, 0},
    {HTTP_POST, "/v1/sessions/{}/leave", h_leave, USER, JSON, QUERY_TOKEN},
    {HTTP_POST, "/v1/webhooks/runninghub/{}", h_webhook, ANYONE, JSON, 0},
    {HTTP_GET, "/v1/admin/queue", h_admin_queue, ADMIN, JSON, RESERVE},
    {HTTP_GET, "/v1/admin/stats", h_admin_stats, ADMIN, JSON, RESERVE},
    {HTTP_GET, "/v1/admin/accounts", h_admin_accounts, ADMIN, JSON, RESERVE},
    {HTTP_POST, "/v1/admin/users/{}/credits", h_admin_credits, ADMIN, JSON,
        RESERVE},
    {HTTP_POST, "/v1/admin/jobs/{}/cancel", h_admin_cancel, ADMIN, JSON,
        RESERVE},
    {HTTP_GET, "/v1/admin/webhooks", h_admin_webhooks, ADMIN, JSON, RESERVE},
    {HTTP_GET | HTTP_HEAD, "/v1/outputs/{}", h_output, SIGNED, STREAM, 0},
};
#define NROUTES (sizeof(table) / sizeof(table[0]))

/* The bearer token of "Authorization: Bearer", else, where the route
 * allows it, of ?access_token=; NULL when there is none. */
static const char *
bearer(const struct http_req *r, int query)
{
	const char *h = http_req_header(r, "Authorization");

	if (h == NULL)
		return query ? http_req_query(r, "access_token") : NULL;
	if (strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	for (h += 7; *h == ' '; h++)
		;
	return h;
}

/* A held reply goes out once what was written before it is committed. */
static void
on_durable(void *arg, int ok)
{
	http_req_release(arg, ok);
}

/*
 * Every request: its route's handler, its reply held until the changes
 * of this turn of the loop are committed (whoever made them: what the
 * reply says may rest on them), then sent, or a 503 when they are lost.
 * An event stream sends only committed events: it is not held (and may
 * even be over when its handler returns).
 */
static void
serve(struct http_req *r, void *ctx)
{
	struct api *a = ctx;
	size_t i = (size_t)(http_req_route(r) - a->routes);

	if (table[i].kind == STREAM) {
		table[i].handler(r, a);
		return;
	}
	http_req_hold(r);
	table[i].handler(r, a);
	store_after(a->st, on_durable, r);
}

/* A request whose token names a key not yet known waits, its data this
 * record, until the key set is fetched again (once). */
struct gate_wait {
	struct api *a;
	struct http_req *r;
	int access;
	int done; /* told (or never registered): nothing to forget */
};

static void gate_resume(void *arg);

static void
gate_wait_free(void *arg)
{
	struct gate_wait *w = arg;

	if (!w->done)
		jwks_forget(w->a->jwks, gate_resume, w->r);
	free(w);
}

/* The verdict on claims c, checked as rc says: 0 (c becomes the
 * request's data, see caller()), 401 or 403. */
static int
verdict(struct http_req *r, int access, enum auth_rc rc, struct auth_claims *c,
    const char **code, const char **message)
{
	if (access == SIGNED) { /* the handler decides, as it may be signed */
		http_req_set_data(r, rc == AUTH_OK ? c : NULL, free);
		if (rc != AUTH_OK)
			free(c);
		return 0;
	}
	if (rc != AUTH_OK) {
		free(c);
		*code = "unauthorized";
		*message = "a valid bearer token is required";
		return 401;
	}
	http_req_set_data(r, c, free);
	if (access == ADMIN && !c->admin) {
		*code = "forbidden";
		*message = "this route needs the admin role";
		return 403;
	}
	return 0;
}

/* The keys came (or could not): check the token once more. */
static void
gate_resume(void *arg)
{
	struct http_req *r = arg;
	struct gate_wait *w = http_req_data(r);
	struct api *a = w->a;
	size_t i = (size_t)(http_req_route(r) - a->routes);
	struct auth_claims *c = xmalloc(sizeof(*c));
	const char *code = NULL, *message = NULL;
	enum auth_rc rc = auth_check(
	    a->auth, bearer(r, table[i].flags & QUERY_TOKEN), time(NULL), c);
	int status;

	w->done = 1;
	status = verdict(r, w->access, rc, c, &code, &message);
	http_req_gate_done(r, status, code, message);
}

/* The route's access, checked from the head. A token that names a key
 * this fila does not know yet makes the request wait for the key set to
 * be fetched again (jwks.c bounds how often). */
static int
gate(struct http_req *r, int access, void *ctx, const char **code,
    const char **message)
{
	struct api *a = ctx;
	size_t i = (size_t)(http_req_route(r) - a->routes);
	const char *tok = bearer(r, table[i].flags & QUERY_TOKEN);
	struct auth_claims *c;
	enum auth_rc rc;

	if (access == ANYONE || (access == SIGNED && tok == NULL))
		return 0;
	if (tok == NULL) {
		*code = "unauthorized";
		*message = http_req_query(r, "access_token")
		               ? "send the token in the Authorization header:"
		                 " ?access_token= is taken on event streams and"
		                 " session leave only"
		               : "a valid bearer token is required";
		return 401;
	}
	c = xmalloc(sizeof(*c));
	rc = auth_check(a->auth, tok, time(NULL), c);
	if (rc == AUTH_UNKNOWN_KID && a->jwks) {
		struct gate_wait *w = xcalloc(1, sizeof(*w));
		*w = (struct gate_wait){a, r, access, 0};
		http_req_set_data(r, w, gate_wait_free);
		if (jwks_refresh(a->jwks, gate_resume, r) == 0) {
			free(c);
			return HTTP_GATE_WAIT;
		}
		w->done = 1;
	}
	return verdict(r, access, rc, c, code, message);
}

struct api *
api_new(const struct config *cfg, struct store *st, struct sched *sc,
    struct events *ev, struct metrics *m, struct outputs *out)
{
	struct api *a = xcalloc(1, sizeof(*a));
	struct auth_opts ao = {.secret = cfg->jwt_secret,
	    .issuer = cfg->issuer,
	    .audience = cfg->audience,
	    .admin_role = cfg->admin_role,
	    .need_exp = *cfg->jwks_url != '\0'};

	a->cfg = cfg;
	a->st = st;
	a->sc = sc;
	a->ev = ev;
	a->m = m;
	a->out = out;
	if ((a->auth = auth_new(&ao)) == NULL)
		abort(); /* OpenSSL without HMAC-SHA256 */
	a->nroutes = NROUTES;
	a->routes = xcalloc(NROUTES, sizeof(*a->routes));
	for (size_t i = 0; i < NROUTES; i++)
		a->routes[i] = (struct http_route){
		    .methods = table[i].methods,
		    .pattern = table[i].pattern,
		    .handler = serve,
		    .max_body =
		        (size_t)(table[i].kind == UPLOAD ? cfg->uploads_max
		                                         : cfg->max_body),
		    .access = table[i].access,
		    .flags = (table[i].flags & RESERVE ? HTTP_RESERVE : 0) |
		             (table[i].kind == UPLOAD ? HTTP_SPOOL : 0),
		};
	return a;
}

void
api_free(struct api *a)
{
	if (a == NULL)
		return;
	jwks_free(a->jwks); /* its waiters are told while they are alive */
	auth_free(a->auth);
	free(a->routes);
	free(a);
}

struct http_server *
api_server(struct api *a, struct event_base *base, char *err, size_t errlen)
{
	const struct config *cfg = a->cfg;
	struct http_server *s = http_server_new(
	    base, a->routes, a->nroutes, a, (size_t)cfg->max_body);
	struct http_limits l;
	char *spool = xasprintf("%s/.spool", cfg->uploads_dir);
	int rc;

	http_server_gate(s, gate);
	http_limits_default(&l);
	l.max_connections = (int)cfg->max_connections;
	http_server_limits(s, &l);
	http_server_cors(s, cfg->cors_origins);
	/* Beside the uploads, so a spooled upload is moved, not copied. */
	rc = http_server_spool(s, spool, err, errlen);
	free(spool);
	if (rc == 0 && *cfg->jwks_url != '\0' && a->jwks == NULL)
		a->jwks =
		    jwks_new(base, a->auth, cfg->jwks_url, NULL, err, errlen);
	if (rc != 0 || (*cfg->jwks_url != '\0' && a->jwks == NULL)) {
		http_server_free(s);
		return NULL;
	}
	return s;
}
