/*
 * test_sched.c — the rules of API.md §4 as sched.c moves jobs: each test on
 * a fresh SQLite store in a temporary directory, the built-in tools, an
 * event_base driven by hand, and a fake provider that records every call
 * and answers only when the test says (or at once, when asked to).
 *
 * What is asserted is the store (status, slots, ledger) and the provider's
 * calls: the two things a client and RunningHub can see.
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "config.h"
#include "job.h"
#include "provider.h"
#include "runninghub.h"
#include "sched.h"
#include "store.h"
#include "util.h"

/* ---- the fake provider -------------------------------------------- */

enum call_kind { C_SUBMIT, C_CANCEL, C_POLL, C_TASKS, C_KINDS };

#define MAX_CALLS 96

struct fake_call {
	enum call_kind kind;
	char task_id[64];  /* cancel, poll: the task asked about */
	char app_id[64];   /* submit */
	char webhook[256]; /* submit */
	char nodes[512];   /* submit: "node:field=value" or "node:field@path" */
	provider_cb cb;
	provider_poll_cb poll_cb;
	void *arg;
	int answered;
};

struct fake {
	struct fake_call calls[MAX_CALLS];
	int ncalls;
	int refuse[C_KINDS];  /* the call returns -1 (cb never runs) */
	int at_once[C_KINDS]; /* answer inside the call */
	enum provider_rc at_once_rc;
	int next_task; /* for task ids made by answers at once */
};

static struct fake fk;

static struct fake_call *
fake_record(enum call_kind k, void *arg)
{
	cr_assert_lt(fk.ncalls, MAX_CALLS, "too many provider calls");
	struct fake_call *c = &fk.calls[fk.ncalls++];
	memset(c, 0, sizeof(*c));
	c->kind = k;
	c->arg = arg;
	return c;
}

static void
nodes_text(const struct provider_task *t, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < t->nnodes && off < len; i++) {
		const struct provider_node *n = &t->nodes[i];
		if (n->path)
			off += snprintf(buf + off, len - off, "%s%s:%s@%s(%s)",
			    i ? " " : "", n->node_id, n->field, n->path,
			    n->file_type ? n->file_type : "");
		else
			off += snprintf(buf + off, len - off, "%s%s:%s=%s",
			    i ? " " : "", n->node_id, n->field, n->value);
	}
}

static void answer(
    struct fake_call *c, enum provider_rc rc, const char *text, long count);

static int
fake_submit(
    void *impl, const struct provider_task *t, provider_cb cb, void *arg)
{
	if (fk.refuse[C_SUBMIT])
		return -1;
	struct fake_call *c = fake_record(C_SUBMIT, arg);
	c->cb = cb;
	snprintf(c->app_id, sizeof(c->app_id), "%s", t->app_id);
	snprintf(c->webhook, sizeof(c->webhook), "%s", t->webhook_url);
	nodes_text(t, c->nodes, sizeof(c->nodes));
	if (fk.at_once[C_SUBMIT]) {
		char task[32];
		snprintf(task, sizeof(task), "task-now-%d", ++fk.next_task);
		answer(c, fk.at_once_rc,
		    fk.at_once_rc == PROVIDER_OK ? task : "no", 0);
	}
	return 0;
}

static int
fake_cancel(void *impl, const char *task_id, provider_cb cb, void *arg)
{
	if (fk.refuse[C_CANCEL])
		return -1;
	struct fake_call *c = fake_record(C_CANCEL, arg);
	c->cb = cb;
	snprintf(c->task_id, sizeof(c->task_id), "%s", task_id);
	if (fk.at_once[C_CANCEL])
		answer(c, PROVIDER_OK, NULL, 0);
	return 0;
}

static int
fake_poll(void *impl, const char *task_id, provider_poll_cb cb, void *arg)
{
	if (fk.refuse[C_POLL])
		return -1;
	struct fake_call *c = fake_record(C_POLL, arg);
	c->poll_cb = cb;
	snprintf(c->task_id, sizeof(c->task_id), "%s", task_id);
	return 0;
}

static int
fake_tasks(void *impl, provider_cb cb, void *arg)
{
	if (fk.refuse[C_TASKS])
		return -1;
	struct fake_call *c = fake_record(C_TASKS, arg);
	c->cb = cb;
	return 0;
}

/* A RunningHub-shaped callback: {"taskId", "eventData"}, the envelope
 * read by the real runninghub_outcome(). */
static int
fake_parse_callback(void *impl, const char *body, size_t len,
    struct provider_outcome *out, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = json_loadb(body, len, 0, &je), *ev, *env;
	const char *task = json_string_value(json_object_get(root, "taskId"));
	int rc = -1;

	if (root == NULL || task == NULL) {
		snprintf(err, errlen, "not a callback");
		json_decref(root);
		return -1;
	}
	ev = json_object_get(root, "eventData");
	env = json_is_string(ev) ? json_loads(json_string_value(ev), 0, &je)
	                         : json_incref(ev);
	if (json_is_object(env)) {
		out->task_id = xstrdup(task);
		runninghub_outcome(env, out);
		rc = 0;
	} else {
		snprintf(err, errlen, "eventData is not an object");
	}
	json_decref(env);
	json_decref(root);
	return rc;
}

static int
fake_pending(const void *impl)
{
	int n = 0;
	for (int i = 0; i < fk.ncalls; i++)
		n += !fk.calls[i].answered;
	return n;
}

static void
fake_free(void *impl)
{
}

static const struct provider_ops fake_ops = {
    .name = "fake",
    .submit = fake_submit,
    .cancel = fake_cancel,
    .poll = fake_poll,
    .parse_callback = fake_parse_callback,
    .tasks = fake_tasks,
    .pending = fake_pending,
    .free = fake_free,
};

static void
answer(struct fake_call *c, enum provider_rc rc, const char *text, long count)
{
	struct provider_result res = {
	    .rc = rc, .http_status = 200, .count = count};

	cr_assert_not(c->answered, "call answered twice");
	c->answered = 1;
	if (rc == PROVIDER_OK)
		res.task_id = text;
	else
		res.message = text;
	if (rc == PROVIDER_BUSY)
		res.code = 421;
	c->cb(c->arg, &res);
}

/* The i-th call (0-based) of kind k, or NULL. */
static struct fake_call *
nth(enum call_kind k, int i)
{
	for (int n = 0; n < fk.ncalls; n++)
		if (fk.calls[n].kind == k && i-- == 0)
			return &fk.calls[n];
	return NULL;
}

static int
ncalls(enum call_kind k)
{
	int n = 0;
	for (int i = 0; i < fk.ncalls; i++)
		n += fk.calls[i].kind == k;
	return n;
}

static int
unanswered(enum call_kind k)
{
	int n = 0;
	for (int i = 0; i < fk.ncalls; i++)
		n += fk.calls[i].kind == k && !fk.calls[i].answered;
	return n;
}

static struct fake_call *
call_of(enum call_kind k, int i)
{
	struct fake_call *c = nth(k, i);
	cr_assert_not_null(
	    c, "no provider call #%d of kind %d (%d made)", i, k, ncalls(k));
	return c;
}

static void
fake_answer_submit(int i, enum provider_rc rc, const char *text)
{
	answer(call_of(C_SUBMIT, i), rc, text, 0);
}

static void
fake_answer_cancel(int i)
{
	answer(call_of(C_CANCEL, i), PROVIDER_OK, NULL, 0);
}

static void
fake_answer_tasks(int i, long count)
{
	answer(call_of(C_TASKS, i), PROVIDER_OK, NULL, count);
}

/* ---- the environment of a test ------------------------------------ */

static char dir[64];
static char dbpath[128];
static struct config cfg;
static int cfg_loaded;
static struct store *st;
static struct event_base *base;
static struct provider *prov;
static struct sched *sc;

/* Load the built-in config with the --set strings given (NULL-ended),
 * open a fresh store and start a scheduler on the fake provider. */
static void
env(const char *set, ...)
{
	char *sets[8];
	size_t n = 0;
	char err[256] = "", url[160];
	va_list ap;

	va_start(ap, set);
	for (const char *s = set; s; s = va_arg(ap, const char *)) {
		cr_assert_lt(n, 8);
		sets[n++] = (char *)s;
	}
	va_end(ap);
	cr_assert_eq(
	    config_load(&cfg, "/nonexistent", 1, sets, n, err, sizeof(err)), 0,
	    "config: %s", err);
	cfg_loaded = 1;

	strcpy(dir, "/tmp/fila-sched-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(dbpath, sizeof(dbpath), "%s/fila.db", dir);
	snprintf(url, sizeof(url), "sqlite:%s", dbpath);
	struct store_opts o = {
	    cfg.slots, cfg.per_user_active, cfg.credits_initial};
	st = store_open(url, &o, err, sizeof(err));
	cr_assert_not_null(st, "store_open: %s", err);

	base = event_base_new();
	cr_assert_not_null(base);
	memset(&fk, 0, sizeof(fk));
	prov = provider_new(&fake_ops, &fk);
	sc = sched_new(base, &cfg, st, prov, NULL);
}

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void
teardown(void)
{
	sched_free(sc);
	provider_free(prov);
	store_free(st);
	if (base)
		event_base_free(base);
	if (cfg_loaded)
		config_cleanup(&cfg);
	if (dir[0])
		nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	sc = NULL;
	prov = NULL;
	st = NULL;
	base = NULL;
	cfg_loaded = 0;
	dir[0] = '\0';
}

TestSuite(sched, .fini = teardown);

/* Run the loop without blocking for ms milliseconds. */
static void
spin(int ms)
{
	int64_t end = mono_ms() + ms;

	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(2000);
	} while (mono_ms() < end);
}

/* Run the loop until cond holds or ms milliseconds have passed. */
#define SPIN_UNTIL(cond, ms)                                                   \
	do {                                                                   \
		int64_t end_ = mono_ms() + (ms);                               \
		while (!(cond) && mono_ms() < end_) {                          \
			event_base_loop(base, EVLOOP_NONBLOCK);                \
			usleep(2000);                                          \
		}                                                              \
	} while (0)

/* ---- jobs ---------------------------------------------------------- */

/* The user's uploads: img_USER (png) and vid_USER (mp4), real files. */
static void
uploads_for(const char *user)
{
	static const char *const types[] = {"png", "mp4"};
	static const char *const prefixes[] = {"img", "vid"};

	for (int i = 0; i < 2; i++) {
		char id[64], path[160];
		snprintf(id, sizeof(id), "%s_%s", prefixes[i], user);
		snprintf(path, sizeof(path), "%s/%s", dir, id);
		FILE *f = fopen(path, "w");
		cr_assert_not_null(f);
		fputs("bytes", f);
		fclose(f);
		struct upload u = {.id = id,
		    .user_id = (char *)user,
		    .type = (char *)types[i],
		    .size = 5,
		    .sha256 = "00",
		    .path = path,
		    .created_at = now_ms()};
		enum store_rc rc = store_upload_add(st, &u);
		cr_assert(rc == STORE_OK || rc == STORE_EXISTS);
	}
}

static json_t *
inputs_for(const char *tool, const char *user)
{
	char img[64], vid[64];

	snprintf(img, sizeof(img), "img_%s", user);
	snprintf(vid, sizeof(vid), "vid_%s", user);
	if (strcmp(tool, "upscaler") == 0)
		return json_pack("{s:s, s:i, s:f, s:s}", "image", img,
		    "resolution", 2048, "denoise", 0.35, "prompt", "a cat");
	if (strcmp(tool, "pose_changer") == 0)
		return json_pack("{s:s, s:s}", "person", img, "reference", img);
	if (strcmp(tool, "veste_ai") == 0)
		return json_pack("{s:s, s:s}", "person", img, "clothing", img);
	return json_pack("{s:s}", "video", vid);
}

static enum store_rc
submit_with(const char *id, const char *user, const char *tool, json_t *inputs,
    struct job *out)
{
	const struct tool *t = tools_find(&cfg.tools, tool);
	char token[64];
	int64_t balance;

	cr_assert_not_null(t, "tool %s", tool);
	snprintf(token, sizeof(token), "tok_%s", id);
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = tool,
	    .variant = strcmp(tool, "upscaler") == 0 ? "pro" : NULL,
	    .inputs = inputs,
	    .cost = t->cost,
	    .webhook_token = token};
	enum store_rc rc = sched_submit(sc, &in, out, &balance);
	json_decref(inputs);
	return rc;
}

/* Submit through sched (the user's uploads made first); the job's status
 * right after the call. */
static enum job_status
submit_job(const char *id, const char *user, const char *tool)
{
	struct job j;

	uploads_for(user);
	job_init(&j);
	cr_assert_eq(submit_with(id, user, tool, inputs_for(tool, user), &j),
	    STORE_OK, "submit %s: %s", id, store_error(st));
	cr_assert_str_eq(j.id, id);
	enum job_status s = j.status;
	job_cleanup(&j);
	return s;
}

static void
job_of(const char *id, struct job *j)
{
	job_init(j);
	cr_assert_eq(store_job_get(st, id, NULL, j), STORE_OK, "job %s", id);
}

static enum job_status
status_of(const char *id)
{
	struct job j;
	job_of(id, &j);
	enum job_status s = j.status;
	job_cleanup(&j);
	return s;
}

#define assert_status(id, want)                                                \
	cr_assert_str_eq(job_status_name(status_of(id)),                       \
	    job_status_name(want), "job %s", id)

static int64_t
slots_used(void)
{
	int64_t n = -1;
	cr_assert_eq(store_slots_used(st, &n), STORE_OK);
	return n;
}

static int64_t
balance_of(const char *user)
{
	int64_t b = -1;
	cr_assert_eq(store_user_balance(st, user, &b), STORE_OK);
	return b;
}

/* Ledger entries of kind for job_id in the user's ledger. */
static int
ledger_count(const char *user, const char *job_id, const char *kind)
{
	json_t *e = NULL, *x;
	size_t i;
	int n = 0;

	cr_assert_eq(store_ledger(st, user, &e), STORE_OK);
	json_array_foreach(e, i, x)
	{
		const char *k = json_string_value(json_object_get(x, "kind"));
		const char *jid =
		    json_string_value(json_object_get(x, "job_id"));
		n += k && jid && strcmp(k, kind) == 0 &&
		     strcmp(jid, job_id) == 0;
	}
	json_decref(e);
	return n;
}

static int
jobs_in(enum job_status s)
{
	struct job_list l = {0};
	cr_assert_eq(store_jobs_in(st, s, &l), STORE_OK);
	int n = (int)l.n;
	job_list_cleanup(&l);
	return n;
}

/* What the provider may be running for fila: submits not answered yet,
 * running jobs and cancels not answered yet. Never more than the slots. */
static void
assert_within_slots(void)
{
	int held =
	    unanswered(C_SUBMIT) + jobs_in(JOB_RUNNING) + unanswered(C_CANCEL);

	cr_assert_leq(held, cfg.slots, "provider holds %d, slots %lld", held,
	    (long long)cfg.slots);
	cr_assert_leq(slots_used(), cfg.slots);
	cr_assert_leq(jobs_in(JOB_STARTING) + jobs_in(JOB_RUNNING), cfg.slots);
}

static sqlite3 *
raw_open(void)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static void
raw_exec(const char *sql)
{
	sqlite3 *db = raw_open();
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "");
	sqlite3_free(err);
	sqlite3_close(db);
}

static int64_t
raw_int(const char *sql)
{
	sqlite3 *db = raw_open();
	sqlite3_stmt *q;
	int64_t v = -1;

	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &q, NULL), SQLITE_OK, "%s",
	    sqlite3_errmsg(db));
	if (sqlite3_step(q) == SQLITE_ROW)
		v = sqlite3_column_int64(q, 0);
	sqlite3_finalize(q);
	sqlite3_close(db);
	return v;
}

/* A RunningHub callback body for task: completed with one png, or failed
 * with message (the eventData a JSON string, as RunningHub sends it). */
static char *
callback_body(const char *task, const char *failure)
{
	json_t *env;

	if (failure)
		env = json_pack("{s:i, s:s, s:{s:{s:s}}}", "code", 805, "msg",
		    "APIKEY_TASK_STATUS_ERROR", "data", "failedReason",
		    "exception_message", failure);
	else
		env = json_pack("{s:i, s:s, s:[{s:s, s:s}]}", "code", 0, "msg",
		    "success", "data", "fileUrl", "https://cdn.example/o.png",
		    "fileType", "png");
	char *data = json_dumps(env, JSON_COMPACT);
	json_t *root = json_pack("{s:s, s:s, s:s}", "event", "TASK_END",
	    "taskId", task, "eventData", data);
	char *body = json_dumps(root, JSON_COMPACT);
	free(data);
	json_decref(env);
	json_decref(root);
	return body;
}

static enum store_rc
webhook(const char *token, const char *task, const char *failure)
{
	char msg[256] = "";
	char *body = callback_body(task, failure);
	enum store_rc rc =
	    sched_webhook(sc, token, body, strlen(body), msg, sizeof(msg));
	free(body);
	return rc;
}

static enum store_rc
cancel(const char *id, const char *user, struct job *out)
{
	job_init(out);
	return sched_cancel(sc, id, user, JOB_ERR_CANCELLED, out);
}

/* Submit id and answer its submit OK with task: it is then running. */
static void
run_job(const char *id, const char *user, int submit_no, const char *task)
{
	submit_job(id, user, "upscaler");
	fake_answer_submit(submit_no, PROVIDER_OK, task);
	assert_status(id, JOB_RUNNING);
}

/* ---- submit and promotion ----------------------------------------- */

Test(sched, submit_with_a_free_slot_starts_at_once)
{
	char want[512];
	struct job j;

	env("queue.slots=2", NULL);
	cr_assert_eq(submit_job("j1", "alice", "upscaler"), JOB_STARTING);
	cr_assert_eq(ncalls(C_SUBMIT), 1);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(balance_of("alice"), 90);
	cr_assert_eq(ledger_count("alice", "j1", "charge"), 1);

	/* The task: the variant's app, its nodes in order, the webhook. */
	struct fake_call *c = call_of(C_SUBMIT, 0);
	cr_assert_str_eq(c->app_id, "2015865378030755841");
	cr_assert_str_eq(
	    c->webhook, "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j1");
	snprintf(want, sizeof(want),
	    "12:image@%s/img_alice(png) 31:value=2048 33:value=0.35 "
	    "7:text=a cat",
	    dir);
	cr_assert_str_eq(c->nodes, want);

	job_of("j1", &j);
	cr_assert_eq(j.position, 0);
	cr_assert(j.started_at > 0);
	cr_assert_null(j.provider_task_id);
	job_cleanup(&j);

	/* A tool without variants: its app. */
	cr_assert_eq(submit_job("j2", "bob", "video_upscaler"), JOB_STARTING);
	c = call_of(C_SUBMIT, 1);
	cr_assert_str_eq(c->app_id, "2018810750139109378");
	snprintf(want, sizeof(want), "3:video@%s/vid_bob(mp4)", dir);
	cr_assert_str_eq(c->nodes, want);
	cr_assert_eq(balance_of("bob"), 80);
}

Test(sched, submit_with_slots_full_queues_with_position)
{
	struct job j;

	env("queue.slots=1", NULL);
	cr_assert_eq(submit_job("j1", "alice", "upscaler"), JOB_STARTING);
	uploads_for("bob");
	cr_assert_eq(submit_with("j2", "bob", "pose_changer",
	                 inputs_for("pose_changer", "bob"), &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_QUEUED);
	cr_assert_eq(j.position, 1);
	job_cleanup(&j);
	uploads_for("carol");
	cr_assert_eq(submit_with("j3", "carol", "veste_ai",
	                 inputs_for("veste_ai", "carol"), &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_QUEUED);
	cr_assert_eq(j.position, 2);
	job_cleanup(&j);

	cr_assert_eq(ncalls(C_SUBMIT), 1);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(balance_of("bob"), 92);
	cr_assert_eq(balance_of("carol"), 92);
}

Test(sched, a_freed_slot_goes_to_the_oldest_queued_job_whatever_its_tool)
{
	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(submit_job("j2", "bob", "video_upscaler"), JOB_QUEUED);
	cr_assert_eq(submit_job("j3", "carol", "pose_changer"), JOB_QUEUED);
	cr_assert_eq(submit_job("j4", "dave", "veste_ai"), JOB_QUEUED);
	cr_assert_eq(submit_job("j5", "erin", "upscaler"), JOB_QUEUED);

	/* j1 completes: j2 (video) is next, then j3, j4, j5. */
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);
	assert_status("j1", JOB_COMPLETED);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_str_eq(call_of(C_SUBMIT, 1)->app_id, "2018810750139109378");

	fake_answer_submit(1, PROVIDER_REJECTED, "bad video");
	assert_status("j2", JOB_FAILED);
	assert_status("j3", JOB_STARTING);
	cr_assert_str_eq(call_of(C_SUBMIT, 2)->app_id, "2018451429635133442");

	struct job j;
	cr_assert_eq(cancel("j3", "carol", &j), STORE_OK);
	job_cleanup(&j);
	/* Its submit is still out: j4 waits for the answer. */
	assert_status("j4", JOB_QUEUED);
	fake_answer_submit(2, PROVIDER_REJECTED, "too late anyway");
	assert_status("j4", JOB_STARTING);
	cr_assert_str_eq(call_of(C_SUBMIT, 3)->app_id, "2018755100210106369");
	assert_status("j5", JOB_QUEUED);
	cr_assert_eq(slots_used(), 1);

	job_of("j5", &j);
	cr_assert_eq(j.position, 1);
	job_cleanup(&j);
}

/* Many jobs, every kind of answer: the provider never holds more tasks
 * than there are slots, and the store never has more active jobs. */
Test(sched, never_more_at_the_provider_than_slots)
{
	char id[32], user[32], task[32];
	struct job j;

	env("queue.slots=2", NULL);
	for (int i = 0; i < 8; i++) {
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_job(id, user, i % 2 ? "veste_ai" : "upscaler");
		assert_within_slots();
	}
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_eq(jobs_in(JOB_QUEUED), 6);

	fake_answer_submit(0, PROVIDER_OK, "task-0"); /* j0 running */
	assert_within_slots();
	fake_answer_submit(1, PROVIDER_OK, "task-1"); /* j1 running */
	assert_within_slots();
	cr_assert_eq(cancel("j0", "u0", &j), STORE_OK); /* cancel out */
	job_cleanup(&j);
	assert_within_slots();
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);
	assert_within_slots();
	cr_assert_eq(ncalls(C_SUBMIT), 3); /* j2 */
	fake_answer_cancel(0);             /* j0 let go: j3 */
	assert_within_slots();
	cr_assert_eq(ncalls(C_SUBMIT), 4);
	fake_answer_submit(2, PROVIDER_BUSY, "no capacity");
	assert_within_slots();
	fake_answer_submit(3, PROVIDER_REJECTED, "nope"); /* j3 out: j4 */
	assert_within_slots();
	cr_assert_eq(ncalls(C_SUBMIT), 5);
	cr_assert_eq(sched_expire(sc, "j4", "test"), STORE_OK);
	assert_within_slots();
	cr_assert_eq(ncalls(C_SUBMIT), 5); /* j4's submit still out */
	fake_answer_submit(4, PROVIDER_OK, "task-4");
	assert_within_slots();
	fake_answer_cancel(1);
	assert_within_slots();
	cr_assert_eq(ncalls(C_SUBMIT), 6);       /* j5 */
	SPIN_UNTIL(ncalls(C_SUBMIT) == 7, 2000); /* j2 again */
	assert_within_slots();
	for (int i = 5; i < 7; i++) {
		snprintf(task, sizeof(task), "task-%d", i);
		fake_answer_submit(i, PROVIDER_OK, task);
		assert_within_slots();
	}
	cr_assert_eq(jobs_in(JOB_RUNNING), 2);
	cr_assert_eq(slots_used(), 2);
	cr_assert_eq(jobs_in(JOB_QUEUED), 2);
}

/* ---- the submit's answer ------------------------------------------ */

Test(sched, submit_ok_runs_with_the_task_id)
{
	struct job j;

	env(NULL);
	submit_job("j1", "alice", "upscaler");
	fake_answer_submit(0, PROVIDER_OK, "task-1");
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_RUNNING);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	job_cleanup(&j);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(balance_of("alice"), 90);
	spin(20);
	cr_assert_eq(ncalls(C_SUBMIT), 1);
}

Test(sched, answers_given_at_once_are_applied)
{
	env("queue.slots=1", NULL);
	fk.at_once[C_SUBMIT] = 1;
	fk.at_once_rc = PROVIDER_OK;
	cr_assert_eq(submit_job("j1", "alice", "upscaler"), JOB_RUNNING);
	cr_assert_eq(submit_job("j2", "bob", "upscaler"), JOB_QUEUED);

	/* A cancel answered at once frees the slot for j2, which is then
	 * started and answered at once too. */
	fk.at_once[C_CANCEL] = 1;
	struct job j;
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_str_eq(call_of(C_CANCEL, 0)->task_id, "task-now-1");
	assert_status("j2", JOB_RUNNING);
	cr_assert_eq(slots_used(), 1);

	/* Refused for good at once: failed, refunded, slot free. */
	fk.at_once_rc = PROVIDER_REJECTED;
	cr_assert_eq(webhook("tok_j2", "task-now-2", NULL), STORE_OK);
	cr_assert_eq(submit_job("j3", "carol", "upscaler"), JOB_FAILED);
	cr_assert_eq(balance_of("carol"), 100);
	cr_assert_eq(slots_used(), 0);
}

/* BUSY (or a transport error) keeps the job starting in its slot and
 * sends it again after a backoff of about a second. */
static void
retried_later(enum provider_rc rc)
{
	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	int64_t t0 = mono_ms();
	fake_answer_submit(0, rc, "no capacity");
	assert_status("j1", JOB_STARTING);
	assert_status("j2", JOB_QUEUED);
	cr_assert_eq(slots_used(), 1);
	spin(100);
	cr_assert_eq(ncalls(C_SUBMIT), 1, "retried without a backoff");

	if (rc == PROVIDER_RETRY) {
		/* Unsure whether the failed submit started a task: the
		 * provider's count is asked first; 0 unknown tasks, so send. */
		SPIN_UNTIL(ncalls(C_TASKS) == 1, 2500);
		cr_assert_eq(ncalls(C_SUBMIT), 1, "sent before the check");
		fake_answer_tasks(0, 0);
	}
	SPIN_UNTIL(ncalls(C_SUBMIT) == 2, 2500);
	cr_assert_eq(ncalls(C_SUBMIT), 2, "not retried");
	cr_assert_geq(mono_ms() - t0, 400);
	cr_assert_str_eq(call_of(C_SUBMIT, 1)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j1");
	assert_status("j2", JOB_QUEUED);

	fake_answer_submit(1, PROVIDER_OK, "task-1");
	struct job j;
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_RUNNING);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 90);
	assert_status("j2", JOB_QUEUED);
	cr_assert_eq(slots_used(), 1);
}

Test(sched, busy_is_retried_later_in_its_slot)
{
	retried_later(PROVIDER_BUSY);
}

Test(sched, transport_error_is_retried_later_in_its_slot)
{
	retried_later(PROVIDER_RETRY);
}

Test(sched, busy_past_run_timeout_fails_with_timeout)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	raw_exec("UPDATE jobs SET started_at = started_at - 700000"
	         " WHERE id = 'j1'");
	fake_answer_submit(0, PROVIDER_BUSY, "no capacity");
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	assert_status("j2", JOB_STARTING);
	spin(1200);
	cr_assert_eq(ncalls(C_SUBMIT), 2, "j1 was sent again");
}

Test(sched, rejected_fails_refunds_once_and_promotes_the_next)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "veste_ai");
	fake_answer_submit(0, PROVIDER_REJECTED, "image too large");

	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_REJECTED);
	cr_assert_str_eq(j.error_message, "image too large");
	cr_assert(j.refunded);
	cr_assert(j.finished_at > 0);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);

	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(ncalls(C_CANCEL), 0);

	/* Nothing later refunds it again. */
	cr_assert_eq(cancel("j1", "alice", &j), STORE_CONFLICT);
	job_cleanup(&j);
	cr_assert_eq(sched_expire(sc, "j1", "late"), STORE_CONFLICT);
	cr_assert_eq(webhook("tok_j1", "task-x", "late"), STORE_OK);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(balance_of("alice"), 100);
}

Test(sched, a_job_that_cannot_be_built_or_sent_fails_refunded)
{
	struct job j;

	env("queue.slots=1", NULL);
	/* An upload that is not there any more. */
	cr_assert_eq(submit_with("j1", "alice", "video_upscaler",
	                 json_pack("{s:s}", "video", "vid_gone"), &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_REJECTED);
	cr_assert(
	    strstr(j.error_message, "vid_gone") != NULL, "%s", j.error_message);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(ncalls(C_SUBMIT), 0);
	cr_assert_eq(slots_used(), 0);

	/* A provider call that cannot even start. */
	fk.refuse[C_SUBMIT] = 1;
	cr_assert_eq(submit_job("j2", "bob", "upscaler"), JOB_FAILED);
	cr_assert_eq(balance_of("bob"), 100);
	cr_assert_eq(slots_used(), 0);
}

/* ---- cancel -------------------------------------------------------- */

Test(sched, cancel_queued_refunds_without_a_provider_call)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(cancel("j2", "alice", &j), STORE_NOTFOUND);
	job_cleanup(&j);
	cr_assert_eq(cancel("j2", "bob", &j), STORE_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert_str_eq(j.error_code, JOB_ERR_CANCELLED);
	cr_assert(j.refunded);
	cr_assert_eq(j.position, 0);
	job_cleanup(&j);
	cr_assert_eq(balance_of("bob"), 100);
	cr_assert_eq(ledger_count("bob", "j2", "refund"), 1);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	cr_assert_eq(ncalls(C_SUBMIT), 1);
	cr_assert_eq(slots_used(), 1);
	assert_status("j1", JOB_STARTING);
}

Test(sched, cancel_running_holds_the_slot_until_the_provider_answers)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");

	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_str_eq(call_of(C_CANCEL, 0)->task_id, "task-1");
	cr_assert_eq(slots_used(), 1);
	assert_status("j2", JOB_QUEUED);
	cr_assert_eq(ncalls(C_SUBMIT), 1);

	fake_answer_cancel(0);
	assert_status("j1", JOB_CANCELLED);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
}

/*
 * Rule 6: the slot is freed once the provider confirms it let go. A cancel
 * that failed in transport confirms nothing (the task may still run), so
 * the slot stays held and the cancel is tried again.
 */
Test(sched, cancel_failed_in_transport_keeps_the_slot)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	answer(call_of(C_CANCEL, 0), PROVIDER_RETRY, "connection reset", 0);
	assert_status("j2", JOB_QUEUED);
	cr_assert_eq(slots_used(), 1);

	SPIN_UNTIL(ncalls(C_CANCEL) == 2, 3000);
	cr_assert_eq(ncalls(C_CANCEL), 2, "the cancel was not tried again");
	cr_assert_str_eq(call_of(C_CANCEL, 1)->task_id, "task-1");
	fake_answer_cancel(1);
	assert_status("j2", JOB_STARTING);
}

Test(sched, cancel_that_cannot_be_sent_frees_the_slot_at_once)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	fk.refuse[C_CANCEL] = 1;
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(slots_used(), 1);
}

Test(sched, cancel_during_submit_cancels_the_task_when_it_answers)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");

	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	cr_assert_eq(slots_used(), 1);
	assert_status("j2", JOB_QUEUED);

	/* The task was made after all: cancelled there, slot still held. */
	fake_answer_submit(0, PROVIDER_OK, "task-1");
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert_null(j.provider_task_id);
	job_cleanup(&j);
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_str_eq(call_of(C_CANCEL, 0)->task_id, "task-1");
	cr_assert_eq(slots_used(), 1);
	assert_status("j2", JOB_QUEUED);

	fake_answer_cancel(0);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
}

/* Cancelled while its submit is out, then the provider refuses (for good,
 * for capacity, or the transport fails): nothing runs there, so the slot
 * goes to the next job at the answer and the cancelled one is not sent
 * again. */
Test(sched, cancel_during_submit_then_refusal_frees_the_slot)
{
	enum provider_rc answers[] = {
	    PROVIDER_REJECTED, PROVIDER_BUSY, PROVIDER_RETRY};
	char id[32], user[32], next[32];
	struct job j;

	env("queue.slots=1", NULL);
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_job(id, user, "upscaler");
	}
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		snprintf(next, sizeof(next), "j%d", i + 1);
		cr_assert_eq(cancel(id, user, &j), STORE_OK);
		job_cleanup(&j);
		assert_status(next, JOB_QUEUED);
		cr_assert_eq(slots_used(), 1);

		fake_answer_submit(i, answers[i], "refused");
		assert_status(id, JOB_CANCELLED);
		if (answers[i] == PROVIDER_RETRY) {
			/* Unsure whether a task started: the slot waits for
			 * the provider's count to say none did. */
			assert_status(next, JOB_QUEUED);
			SPIN_UNTIL(ncalls(C_TASKS) == 1, 2500);
			fake_answer_tasks(0, 0);
			spin(50);
		}
		assert_status(next, JOB_STARTING);
		cr_assert_eq(ncalls(C_SUBMIT), i + 2);
		cr_assert_eq(slots_used(), 1);
		cr_assert_eq(ledger_count(user, id, "refund"), 1);
		cr_assert_eq(balance_of(user), 100);
	}
	cr_assert_eq(ncalls(C_CANCEL), 0);
	spin(1200);
	cr_assert_eq(ncalls(C_SUBMIT), 4, "a cancelled job was sent again");
}

Test(sched, cancel_while_waiting_to_retry_frees_the_slot_at_once)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	fake_answer_submit(0, PROVIDER_BUSY, "no capacity");
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_eq(slots_used(), 1);
	spin(1200);
	cr_assert_eq(ncalls(C_SUBMIT), 2, "j1 was sent after its cancel");
	cr_assert_eq(ncalls(C_CANCEL), 0);
}

Test(sched, second_cancel_is_a_conflict_and_refunds_nothing)
{
	struct job j;

	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(cancel("j1", "alice", &j), STORE_CONFLICT);
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);
	job_init(&j);
	cr_assert_eq(
	    sched_cancel(sc, "j1", NULL, JOB_ERR_ADMIN, &j), STORE_CONFLICT);
	job_cleanup(&j);
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(cancel("nope", "alice", &j), STORE_NOTFOUND);
	job_cleanup(&j);
}

Test(sched, admin_cancel_names_its_code)
{
	struct job j;

	env(NULL);
	submit_job("j1", "alice", "upscaler");
	job_init(&j);
	cr_assert_eq(sched_cancel(sc, "j1", NULL, JOB_ERR_ADMIN, &j), STORE_OK);
	cr_assert_str_eq(j.error_code, JOB_ERR_ADMIN);
	cr_assert_str_eq(j.error_message, "cancelled by an administrator");
	job_cleanup(&j);
}

/* ---- webhooks ------------------------------------------------------ */

Test(sched, webhook_unknown_token_is_not_found)
{
	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(webhook("tok_nope", "task-1", NULL), STORE_NOTFOUND);
	assert_status("j1", JOB_RUNNING);
}

Test(sched, webhook_completed_sets_outputs_and_frees_the_slot)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);

	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_eq(json_array_size(j.outputs), 1);
	json_t *o = json_array_get(j.outputs, 0);
	cr_assert_str_eq(json_string_value(json_object_get(o, "url")),
	    "https://cdn.example/o.png");
	cr_assert_str_eq(json_string_value(json_object_get(o, "type")), "png");
	cr_assert_not(j.refunded);
	cr_assert_null(j.error_code);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 90);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 0);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	cr_assert_eq(raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                     " 'j1' AND applied = 1 AND outcome = 'completed'"),
	    1);
}

Test(sched, webhook_failed_ends_failed_refunded_once)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(
	    webhook("tok_j1", "task-1", "CUDA out of memory"), STORE_OK);
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_PROVIDER);
	cr_assert_str_eq(j.error_message, "CUDA out of memory");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(slots_used(), 0);

	/* The same callback again, then a contradicting one: nothing. */
	int64_t events = raw_int("SELECT count(*) FROM events");
	cr_assert_eq(
	    webhook("tok_j1", "task-1", "CUDA out of memory"), STORE_OK);
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);
	assert_status("j1", JOB_FAILED);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(raw_int("SELECT count(*) FROM events"), events);
	cr_assert_eq(raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                     " 'j1'"),
	    3);
	cr_assert_eq(raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                     " 'j1' AND applied = 1"),
	    1);
}

Test(sched, duplicate_completed_callback_changes_nothing)
{
	struct job j;

	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);
	job_of("j1", &j);
	int64_t finished = j.finished_at;
	job_cleanup(&j);
	int64_t events = raw_int("SELECT count(*) FROM events");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_eq(j.finished_at, finished);
	job_cleanup(&j);
	cr_assert_eq(raw_int("SELECT count(*) FROM events"), events);
	cr_assert_eq(balance_of("alice"), 90);
}

/* The statuses job id's events went through, each once, comma-joined. */
static void
event_statuses(const char *id, char *buf, size_t len)
{
	struct store_event_list l = {0};
	size_t off = 0;
	char last[16] = "";

	buf[0] = '\0';
	cr_assert_eq(store_events_after(st, 0, NULL, id, 0, &l), STORE_OK);
	for (size_t i = 0; i < l.n; i++) {
		json_t *d = json_loads(l.v[i].data, 0, NULL);
		const char *s = json_string_value(json_object_get(d, "status"));
		if (s && strcmp(s, last) != 0 && off < len) {
			off += snprintf(
			    buf + off, len - off, "%s%s", off ? "," : "", s);
			snprintf(last, sizeof(last), "%s", s);
		}
		json_decref(d);
	}
	store_event_list_cleanup(&l);
}

Test(sched, callback_before_the_submit_answer_runs_then_completes)
{
	char seen[128];
	struct job j;

	env(NULL);
	submit_job("j1", "alice", "upscaler");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	cr_assert_eq(json_array_size(j.outputs), 1);
	job_cleanup(&j);
	event_statuses("j1", seen, sizeof(seen));
	cr_assert_str_eq(seen, "queued,starting,running,completed");

	/* The submit's answer comes late: the job stays completed. */
	fake_answer_submit(0, PROVIDER_OK, "task-1");
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	for (int i = 0; i < ncalls(C_CANCEL); i++)
		fake_answer_cancel(i);
	cr_assert_eq(slots_used(), 0);
	cr_assert_eq(balance_of("alice"), 90);
}

/*
 * The slot of a job whose callback overtook its submit must stay held
 * until the submit answers: that submit may be making a second task (an
 * earlier attempt that failed in transport may have made the first), and
 * sched.c's own rule is that a slot is given back only after the submit
 * answered.
 */
Test(sched, callback_before_the_submit_answer_holds_the_slot)
{
	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(webhook("tok_j1", "task-0", NULL), STORE_OK);
	assert_status("j1", JOB_COMPLETED);
	assert_within_slots();
	assert_status("j2", JOB_QUEUED);
	cr_assert_eq(slots_used(), 1);

	/* The in-flight submit made a second task: cancelled, then freed. */
	fake_answer_submit(0, PROVIDER_OK, "task-1");
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_str_eq(call_of(C_CANCEL, 0)->task_id, "task-1");
	assert_status("j2", JOB_QUEUED);
	fake_answer_cancel(0);
	assert_status("j2", JOB_STARTING);
	assert_within_slots();
}

Test(sched, callback_naming_another_task_is_ignored)
{
	struct job j;

	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(webhook("tok_j1", "task-9", "not yours"), STORE_OK);
	cr_assert_eq(webhook("tok_j1", "task-9", NULL), STORE_OK);
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_RUNNING);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                     " 'j1' AND applied = 0 AND task_id = 'task-9'"),
	    2);
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), STORE_OK);
	assert_status("j1", JOB_COMPLETED);
}

Test(sched, callback_still_running_changes_nothing)
{
	char msg[256] = "";
	const char *body = "{\"event\":\"TASK_END\",\"taskId\":\"task-1\","
	                   "\"eventData\":{\"code\":804,\"msg\":\"RUNNING\"}}";

	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(
	    sched_webhook(sc, "tok_j1", body, strlen(body), msg, sizeof(msg)),
	    STORE_OK);
	assert_status("j1", JOB_RUNNING);
	cr_assert_eq(raw_int("SELECT count(*) FROM callbacks WHERE"
	                     " outcome = 'running' AND applied = 0"),
	    1);
}

Test(sched, malformed_callback_is_a_conflict)
{
	char msg[256] = "";
	const char *bodies[] = {"", "not json", "[1,2]",
	    "{\"taskId\":\"task-1\",\"eventData\":\"{oops\"}"};

	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
		msg[0] = '\0';
		cr_assert_eq(sched_webhook(sc, "tok_j1", bodies[i],
		                 strlen(bodies[i]), msg, sizeof(msg)),
		    STORE_CONFLICT, "body %zu", i);
		cr_assert_neq(msg[0], '\0', "no message for body %zu", i);
	}
	assert_status("j1", JOB_RUNNING);
	/* An unknown token is told first, whatever the body. */
	cr_assert_eq(sched_webhook(sc, "tok_x", "x", 1, msg, sizeof(msg)),
	    STORE_NOTFOUND);
}

/* ---- expire -------------------------------------------------------- */

Test(sched, expire_queued_fails_refunded_without_a_provider_call)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(sched_expire(sc, "j2", "queued longer than queue_timeout"),
	    STORE_OK);
	job_of("j2", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(j.error_message, "queued longer than queue_timeout");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("bob"), 100);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(sched_expire(sc, "j2", "again"), STORE_CONFLICT);
	cr_assert_eq(sched_expire(sc, "nope", "x"), STORE_NOTFOUND);
	cr_assert_eq(ledger_count("bob", "j2", "refund"), 1);
}

Test(sched, expire_running_cancels_and_holds_the_slot_until_answered)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(sched_expire(sc, "j1", "too long"), STORE_OK);
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_str_eq(call_of(C_CANCEL, 0)->task_id, "task-1");
	cr_assert_eq(slots_used(), 1);
	assert_status("j2", JOB_QUEUED);

	fake_answer_cancel(0);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(slots_used(), 1);
}

/* ---- recovery after a restart -------------------------------------- */

/* A job left starting by a previous process: charged, in its slot. */
static void
left_starting(const char *id, const char *user)
{
	struct job j;
	char token[64];
	int64_t b;
	json_t *inputs = inputs_for("upscaler", user);

	uploads_for(user);
	snprintf(token, sizeof(token), "tok_%s", id);
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = "upscaler",
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = token};
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_OK);
	job_cleanup(&j);
	json_decref(inputs);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_str_eq(j.id, id);
	job_cleanup(&j);
}

/* A new process on the same store: a fresh scheduler and provider (the
 * old one's calls are lost), the store opened again. */
static void
restart(void)
{
	char err[256] = "", url[160];
	struct store_opts o = {
	    cfg.slots, cfg.per_user_active, cfg.credits_initial};

	sched_free(sc);
	store_free(st);
	memset(&fk, 0, sizeof(fk));
	snprintf(url, sizeof(url), "sqlite:%s", dbpath);
	st = store_open(url, &o, err, sizeof(err));
	cr_assert_not_null(st, "store_open: %s", err);
	sc = sched_new(base, &cfg, st, prov, NULL);
}

Test(sched, recover_holds_a_starting_job_while_the_provider_is_full)
{
	env("queue.slots=2", NULL);
	left_starting("j1", "alice");
	sched_recover(sc);
	cr_assert_eq(ncalls(C_TASKS), 1);
	cr_assert_eq(ncalls(C_SUBMIT), 0);

	/* One task there that fila does not know of: maybe j1's. */
	fake_answer_tasks(0, 1);
	cr_assert_eq(ncalls(C_SUBMIT), 0);
	assert_status("j1", JOB_STARTING);
	cr_assert_eq(slots_used(), 1);

	/* Asked again later; now there is room: j1 is sent again. */
	SPIN_UNTIL(ncalls(C_TASKS) == 2, 3000);
	cr_assert_eq(ncalls(C_TASKS), 2);
	cr_assert_eq(ncalls(C_SUBMIT), 0);
	fake_answer_tasks(1, 0);
	cr_assert_eq(ncalls(C_SUBMIT), 1);
	cr_assert_str_eq(call_of(C_SUBMIT, 0)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j1");
	fake_answer_submit(0, PROVIDER_OK, "task-1");
	assert_status("j1", JOB_RUNNING);
	cr_assert_eq(ledger_count("alice", "j1", "charge"), 1);
	cr_assert_eq(balance_of("alice"), 90);
	spin(50);
	cr_assert_eq(ncalls(C_TASKS), 2);
}

Test(sched, recover_sends_again_at_once_when_the_provider_is_empty)
{
	env("queue.slots=3", NULL);
	left_starting("j1", "alice");
	left_starting("j2", "bob");
	/* j3 takes the third slot; its submit is lost by the stop. */
	submit_job("j3", "carol", "upscaler");
	cr_assert_eq(ncalls(C_SUBMIT), 1);
	restart();

	sched_recover(sc);
	cr_assert_eq(ncalls(C_TASKS), 1);
	/* j3 was starting too: all three wait for the count. */
	cr_assert_eq(ncalls(C_SUBMIT), 0);
	fake_answer_tasks(0, 0);
	cr_assert_eq(ncalls(C_SUBMIT), 3);
	for (int i = 0; i < 3; i++) {
		char task[32];
		snprintf(task, sizeof(task), "task-%d", i);
		fake_answer_submit(i, PROVIDER_OK, task);
	}
	assert_status("j1", JOB_RUNNING);
	assert_status("j2", JOB_RUNNING);
	assert_status("j3", JOB_RUNNING);
	cr_assert_eq(slots_used(), 3);
}

Test(sched, recover_counts_running_jobs_as_known_tasks)
{
	env("queue.slots=3", NULL);
	left_starting("j1", "alice");
	struct job j;
	cr_assert_eq(store_job_running(st, "j1", "task-1", &j), STORE_OK);
	job_cleanup(&j);
	left_starting("j2", "bob");
	left_starting("j3", "carol");
	cr_assert_eq(submit_job("j4", "dave", "upscaler"), JOB_QUEUED);
	cr_assert_eq(ncalls(C_SUBMIT), 0);

	sched_recover(sc);
	/* Two tasks at the provider: j1's (known) and one unknown. */
	fake_answer_tasks(0, 2);
	cr_assert_eq(ncalls(C_SUBMIT), 1, "only one of two may be sent");
	cr_assert_str_eq(call_of(C_SUBMIT, 0)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j2");
	assert_status("j3", JOB_STARTING);
	assert_status("j4", JOB_QUEUED);
	assert_within_slots();
}

Test(sched, recover_forgets_a_job_ended_meanwhile)
{
	struct job j;

	env("queue.slots=2", NULL);
	left_starting("j1", "alice");
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(ncalls(C_SUBMIT), 1);
	sched_recover(sc);
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	fake_answer_tasks(0, 0);
	cr_assert_eq(ncalls(C_SUBMIT), 1, "a cancelled job was sent");
	spin(50);
	cr_assert_eq(ncalls(C_TASKS), 1, "still asking for nothing");
}

/*
 * A slot held for a provider answer that a stop lost (a cancelled running
 * job whose cancel was out, a job cancelled while its submit was out) must
 * not stay held for ever: after the restart the task is cancelled again,
 * or the slot freed, and queued jobs move.
 */
Test(sched, restart_frees_slots_held_for_lost_provider_answers)
{
	struct job j;

	env("queue.slots=2", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler"); /* submit out */
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(cancel("j2", "bob", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(slots_used(), 2);

	restart();
	submit_job("j3", "carol", "upscaler");
	sched_recover(sc);
	/* Whatever recovery asks the provider, it answers "let go". */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < fk.ncalls; i++) {
			struct fake_call *c = &fk.calls[i];
			if (!c->answered && c->kind == C_CANCEL)
				answer(c, PROVIDER_OK, NULL, 0);
			else if (!c->answered && c->kind == C_TASKS)
				answer(c, PROVIDER_OK, NULL, 0);
		}
		spin(20);
	}
	assert_status("j3", JOB_STARTING);
	cr_assert_eq(slots_used(), 1);
}

/* A submit that failed in transport may have started a task all the
 * same: while the provider runs a task fila does not know of, the job is
 * not sent again (one slot, one task). */
Test(sched, unsure_submit_waits_while_the_provider_runs_an_unknown_task)
{
	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	fake_answer_submit(0, PROVIDER_RETRY, "operation timed out");
	assert_status("j1", JOB_STARTING);

	SPIN_UNTIL(ncalls(C_TASKS) == 1, 2500);
	fake_answer_tasks(0, 1);
	spin(200);
	cr_assert_eq(ncalls(C_SUBMIT), 1, "sent again beside an unknown task");
	cr_assert_eq(slots_used(), 1);

	SPIN_UNTIL(ncalls(C_TASKS) == 2, 5000);
	fake_answer_tasks(1, 0);
	SPIN_UNTIL(ncalls(C_SUBMIT) == 2, 2500);
	cr_assert_eq(ncalls(C_SUBMIT), 2);
}

Test(sched, cancel_during_the_check_of_an_unsure_submit)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	fake_answer_submit(0, PROVIDER_RETRY, "operation timed out");
	SPIN_UNTIL(ncalls(C_TASKS) == 1, 2500);
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	/* Its slot waits until the provider says no task of it runs. */
	assert_status("j2", JOB_QUEUED);
	fake_answer_tasks(0, 0);
	spin(100);
	assert_status("j2", JOB_STARTING);
	/* j2's submit only: j1 is never sent again. */
	cr_assert_eq(ncalls(C_SUBMIT), 2);
	cr_assert_str_eq(call_of(C_SUBMIT, 1)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j2");
}

/* The wait for an unknown task is bounded: run_timeout after the job
 * ended, its slot is freed whatever the provider's count says (the count
 * may hold other apps' tasks). */
Test(sched, the_wait_for_an_unknown_task_ends_after_run_timeout)
{
	struct job j;

	env("queue.slots=1", "queue.run_timeout=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	fake_answer_submit(0, PROVIDER_RETRY, "operation timed out");
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	SPIN_UNTIL(ncalls(C_TASKS) == 1, 2500);
	fake_answer_tasks(0, 1);
	assert_status("j2", JOB_QUEUED);
	SPIN_UNTIL(ncalls(C_TASKS) == 2, 5000);
	fake_answer_tasks(1, 1);
	spin(50);
	assert_status("j2", JOB_STARTING);
}
