/*
 * job.c — the job record: its states, and the JSON that clients see.
 * The webhook token is a secret between fila and the provider, so it is
 * never part of the JSON; the idempotency key stays private too.
 */
#include "job.h"

#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "util.h"

static const char *const status_names[] = {
    [JOB_QUEUED] = "queued",
    [JOB_STARTING] = "starting",
    [JOB_RUNNING] = "running",
    [JOB_COMPLETED] = "completed",
    [JOB_FAILED] = "failed",
    [JOB_CANCELLED] = "cancelled",
};

void
job_init(struct job *j)
{
	memset(j, 0, sizeof(*j));
}

void
job_changed(struct job *j)
{
	free(j->json);
	j->json = NULL;
}

void
job_cleanup(struct job *j)
{
	free(j->id);
	free(j->user_id);
	free(j->tool);
	free(j->variant);
	json_decref(j->inputs);
	json_decref(j->outputs);
	free(j->error_code);
	free(j->error_message);
	free(j->provider_task_id);
	free(j->webhook_token);
	free(j->session_id);
	free(j->idem_key);
	free(j->starter);
	free(j->account);
	json_decref(j->provider_cost);
	free(j->json);
	job_init(j);
}

const char *
job_status_name(enum job_status s)
{
	if ((unsigned)s >= sizeof(status_names) / sizeof(status_names[0]))
		return "unknown";
	return status_names[s];
}

int
job_status_parse(const char *name, enum job_status *out)
{
	for (size_t i = 0; i < sizeof(status_names) / sizeof(status_names[0]);
	     i++) {
		if (strcmp(name, status_names[i]) == 0) {
			*out = (enum job_status)i;
			return 0;
		}
	}
	return -1;
}

int
job_status_terminal(enum job_status s)
{
	return s == JOB_COMPLETED || s == JOB_FAILED || s == JOB_CANCELLED;
}

int
job_status_active(enum job_status s)
{
	return s == JOB_QUEUED || s == JOB_STARTING || s == JOB_RUNNING;
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *
time_or_null(int64_t ms)
{
	char buf[TIME_BUF];
	return ms ? json_string(fmt_time(ms, buf)) : json_null();
}

json_t *
job_to_json(const struct job *j)
{
	json_t *o = json_object();
	json_t *err = json_null();

	if (j->error_code)
		err = json_pack("{s:s, s:s}", "code", j->error_code, "message",
		    j->error_message ? j->error_message : "");
	json_object_set_new(o, "id", json_string(j->id));
	json_object_set_new(o, "user_id", json_string(j->user_id));
	json_object_set_new(o, "tool", json_string(j->tool));
	json_object_set_new(o, "variant", str_or_null(j->variant));
	json_object_set_new(
	    o, "status", json_string(job_status_name(j->status)));
	json_object_set_new(o, "position",
	    j->status == JOB_QUEUED && j->position > 0
	        ? json_integer(j->position)
	        : json_null());
	json_object_set_new(
	    o, "inputs", j->inputs ? json_incref(j->inputs) : json_object());
	json_object_set_new(
	    o, "outputs", j->outputs ? json_incref(j->outputs) : json_array());
	json_object_set_new(o, "error", err);
	json_object_set_new(o, "cost", json_integer(j->cost));
	json_object_set_new(o, "credits_charged", json_boolean(j->charged));
	json_object_set_new(o, "credits_refunded", json_boolean(j->refunded));
	json_object_set_new(
	    o, "provider_task_id", str_or_null(j->provider_task_id));
	json_object_set_new(o, "session_id", str_or_null(j->session_id));
	json_object_set_new(o, "created_at", time_or_null(j->created_at));
	json_object_set_new(o, "started_at", time_or_null(j->started_at));
	json_object_set_new(o, "finished_at", time_or_null(j->finished_at));
	json_object_set_new(o, "updated_at", time_or_null(j->updated_at));
	if (j->provider_cost)
		json_object_set(o, "provider_cost", j->provider_cost);
	return o;
}

#define RAW(w, lit) jsonw_raw(w, lit, sizeof(lit) - 1)

/* ,"key":"s" or ,"key":null; nothing at all when s is not UTF-8, as
 * job_to_json() leaves out a member json_string() refused. */
static void
member_str(struct jsonw *w, const char *key, const char *s)
{
	if (s && !jsonw_utf8(s, strlen(s)))
		return;
	jsonw_raw(w, key, strlen(key));
	jsonw_str(w, s);
}

static void
member_time(struct jsonw *w, const char *key, int64_t ms)
{
	char buf[TIME_BUF];

	member_str(w, key, ms ? fmt_time(ms, buf) : NULL);
}

static void
member_error(struct jsonw *w, const struct job *j)
{
	const char *msg = j->error_message ? j->error_message : "";

	if (j->error_code == NULL) {
		RAW(w, ",\"error\":null");
	} else if (jsonw_utf8(j->error_code, strlen(j->error_code)) &&
	           jsonw_utf8(msg, strlen(msg))) {
		RAW(w, ",\"error\":{\"code\":");
		jsonw_str(w, j->error_code);
		RAW(w, ",\"message\":");
		jsonw_str(w, msg);
		RAW(w, "}");
	}
}

/* Each member is written after a comma; the first one's goes at the end. */
char *
job_to_text(const struct job *j)
{
	struct jsonw w;

	jsonw_init(&w);
	RAW(&w, "{");
	member_str(&w, ",\"id\":", j->id);
	member_str(&w, ",\"user_id\":", j->user_id);
	member_str(&w, ",\"tool\":", j->tool);
	member_str(&w, ",\"variant\":", j->variant);
	member_str(&w, ",\"status\":", job_status_name(j->status));
	RAW(&w, ",\"position\":");
	if (j->status == JOB_QUEUED && j->position > 0)
		jsonw_int(&w, j->position);
	else
		RAW(&w, "null");
	RAW(&w, ",\"inputs\":");
	if (j->inputs)
		jsonw_value(&w, j->inputs);
	else
		RAW(&w, "{}");
	RAW(&w, ",\"outputs\":");
	if (j->outputs)
		jsonw_value(&w, j->outputs);
	else
		RAW(&w, "[]");
	member_error(&w, j);
	RAW(&w, ",\"cost\":");
	jsonw_int(&w, j->cost);
	RAW(&w, ",\"credits_charged\":");
	jsonw_bool(&w, j->charged);
	RAW(&w, ",\"credits_refunded\":");
	jsonw_bool(&w, j->refunded);
	member_str(&w, ",\"provider_task_id\":", j->provider_task_id);
	member_str(&w, ",\"session_id\":", j->session_id);
	member_time(&w, ",\"created_at\":", j->created_at);
	member_time(&w, ",\"started_at\":", j->started_at);
	member_time(&w, ",\"finished_at\":", j->finished_at);
	member_time(&w, ",\"updated_at\":", j->updated_at);
	if (j->provider_cost) {
		RAW(&w, ",\"provider_cost\":");
		jsonw_value(&w, j->provider_cost);
	}
	RAW(&w, "}");
	memmove(w.buf + 1, w.buf + 2, w.len - 1); /* the first comma */
	w.len--;
	return jsonw_done(&w);
}

const char *
job_text_member(const char *json, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = json; (p = strchr(p, '"')) != NULL; p++)
		if (strncmp(p + 1, name, n) == 0 && p[n + 1] == '"' &&
		    p[n + 2] == ':')
			return p + n + 3;
	return NULL;
}

char *
job_text_at_position(const char *json, int64_t pos)
{
	const char *v = job_text_member(json, "position"), *end;

	if (v == NULL)
		return NULL;
	end = v + strspn(v, "0123456789-nul"); /* a number, or null */
	return xasprintf(
	    "%.*s%lld%s", (int)(v - json), json, (long long)pos, end);
}

struct job *
job_list_push(struct job_list *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 8;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	job_init(&l->v[l->n]);
	return &l->v[l->n++];
}

void
job_list_cleanup(struct job_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		job_cleanup(&l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

json_t *
job_list_to_json(const struct job_list *l)
{
	json_t *a = json_array();
	for (size_t i = 0; i < l->n; i++)
		json_array_append_new(a, job_to_json(&l->v[i]));
	return a;
}

json_t *
job_list_to_admin_json(const struct job_list *l)
{
	json_t *a = json_array();
	for (size_t i = 0; i < l->n; i++) {
		json_t *o = job_to_json(&l->v[i]);
		json_object_set_new(o, "account", str_or_null(l->v[i].account));
		json_array_append_new(a, o);
	}
	return a;
}
