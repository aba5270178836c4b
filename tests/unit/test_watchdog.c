/*
 * test_watchdog.c — rule 6 (nothing stays stuck) and the polling of
 * API.md §7 as watchdog.c applies them: a fresh SQLite store per test, the
 * built-in tools, a scheduler and a watchdog on an event_base driven by
 * hand, and a fake provider that records every call and answers when the
 * test says. Times are moved into the past with a raw UPDATE of the jobs
 * row (only terminal jobs refuse updates), so the limits need no waiting.
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
#include "sched.h"
#include "store.h"
#include "util.h"
#include "watchdog.h"

/* ---- the fake provider -------------------------------------------- */

enum call_kind { C_SUBMIT, C_CANCEL, C_POLL, C_TASKS, C_KINDS };

#define MAX_CALLS 96

struct fake_call {
	enum call_kind kind;
	char task_id[64];  /* cancel, poll: the task asked about */
	char app_id[64];   /* submit */
	char webhook[256]; /* submit */
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

/* Webhooks are sched's business (test_sched.c): none come here. */
static int
fake_parse_callback(void *impl, const char *body, size_t len,
    struct provider_outcome *out, char *err, size_t errlen)
{
	snprintf(err, errlen, "no callbacks in these tests");
	return -1;
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

/* ---- the environment of a test ------------------------------------ */

static char dir[64];
static char dbpath[128];
static struct config cfg;
static int cfg_loaded;
static struct store *st;
static struct event_base *base;
static struct provider *prov;
static struct sched *sc;
static struct watchdog *wd;

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

	strcpy(dir, "/tmp/fila-wd-XXXXXX");
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
	watchdog_free(wd);
	sched_free(sc);
	provider_free(prov);
	store_free(st);
	if (base)
		event_base_free(base);
	if (cfg_loaded)
		config_cleanup(&cfg);
	if (dir[0])
		nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	wd = NULL;
	sc = NULL;
	prov = NULL;
	st = NULL;
	base = NULL;
	cfg_loaded = 0;
	dir[0] = '\0';
}

TestSuite(watchdog, .fini = teardown);

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

/* Answer the i-th poll: state, with one png output when completed and
 * message when failed. */
static void
fake_answer_poll(int i, enum provider_state state, const char *message)
{
	struct fake_call *c = call_of(C_POLL, i);
	struct provider_outcome o = {.state = state};

	cr_assert_not(c->answered, "poll answered twice");
	c->answered = 1;
	o.task_id = xstrdup(c->task_id);
	if (state == TASK_COMPLETED)
		o.outputs = json_pack("[{s:s, s:s}]", "url",
		    "https://cdn.example/p.png", "type", "png");
	if (message)
		o.message = xstrdup(message);
	c->poll_cb(c->arg, &o);
	provider_outcome_cleanup(&o);
}

static void
wd_start(void)
{
	wd = watchdog_new(base, &cfg, st, sc, prov, 20);
	cr_assert_not_null(wd);
}

/* Move a job's time column back by secs seconds. */
static void
age(const char *id, const char *column, int64_t secs)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
	    "UPDATE jobs SET %s = %s - %lld WHERE id = '%s'", column, column,
	    (long long)secs * 1000, id);
	raw_exec(sql);
}

/* ---- queue_timeout ------------------------------------------------- */

Test(watchdog, queued_past_queue_timeout_fails_refunded)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	submit_job("j3", "carol", "upscaler");
	age("j2", "created_at", 601);
	wd_start();
	SPIN_UNTIL(status_of("j2") != JOB_QUEUED, 1000);

	job_of("j2", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(
	    j.error_message, "the job was queued longer than queue_timeout");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("bob"), 100);

	/* The others are within their limits; nothing at the provider. */
	spin(100);
	assert_status("j1", JOB_RUNNING);
	assert_status("j3", JOB_QUEUED);
	job_of("j3", &j);
	cr_assert_eq(j.position, 1);
	job_cleanup(&j);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	cr_assert_eq(ncalls(C_POLL), 0);
	cr_assert_eq(ncalls(C_SUBMIT), 1);
	cr_assert_eq(slots_used(), 1);
	cr_assert_eq(ledger_count("bob", "j2", "refund"), 1);
}

Test(watchdog, queue_timeout_is_read_from_the_config)
{
	env("queue.slots=1", "queue.queue_timeout=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	wd_start();
	spin(500);
	assert_status("j2", JOB_QUEUED);
	SPIN_UNTIL(status_of("j2") != JOB_QUEUED, 1500);
	assert_status("j2", JOB_FAILED);
	cr_assert_eq(balance_of("bob"), 100);
	assert_status("j1", JOB_RUNNING);
}

/* ---- run_timeout --------------------------------------------------- */

Test(watchdog, running_past_run_timeout_fails_and_cancels_at_the_provider)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	age("j1", "started_at", 601);
	wd_start();
	SPIN_UNTIL(status_of("j1") != JOB_RUNNING, 1000);

	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(
	    j.error_message, "the job was running longer than run_timeout");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_str_eq(call_of(C_CANCEL, 0)->task_id, "task-1");

	/* The slot waits for the provider; the job is not ended twice. */
	spin(100);
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_eq(ncalls(C_POLL), 0);
	cr_assert_eq(slots_used(), 1);
	assert_status("j2", JOB_QUEUED);
	assert_within_slots();

	fake_answer_cancel(0);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
}

Test(watchdog, starting_past_run_timeout_waits_for_the_submit)
{
	struct job j;

	env("queue.slots=1", NULL);
	submit_job("j1", "alice", "upscaler");
	submit_job("j2", "bob", "upscaler");
	age("j1", "started_at", 601);
	wd_start();
	SPIN_UNTIL(status_of("j1") != JOB_STARTING, 1000);

	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(
	    j.error_message, "the job was starting longer than run_timeout");
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	cr_assert_eq(slots_used(), 1);
	assert_status("j2", JOB_QUEUED);

	/* The submit made a task after all: cancelled, then the slot. */
	fake_answer_submit(0, PROVIDER_OK, "task-1");
	assert_status("j1", JOB_FAILED);
	cr_assert_eq(ncalls(C_CANCEL), 1);
	cr_assert_str_eq(call_of(C_CANCEL, 0)->task_id, "task-1");
	assert_status("j2", JOB_QUEUED);
	fake_answer_cancel(0);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
}

/* A job left starting by a stop has no task id to ask about: its slot
 * goes back at once (API.md §4 rule 6). */
Test(watchdog, starting_without_a_submit_frees_its_slot_at_once)
{
	struct job j;
	int64_t b;
	json_t *inputs = json_pack("{s:s}", "prompt", "x");
	struct job_new in = {.id = "j1",
	    .user_id = "alice",
	    .tool = "upscaler",
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_j1"};

	env("queue.slots=1", NULL);
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_OK);
	json_decref(inputs);
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	job_cleanup(&j);
	age("j1", "started_at", 601);
	submit_job("j2", "bob", "upscaler");
	cr_assert_eq(ncalls(C_SUBMIT), 0);
	wd_start();
	SPIN_UNTIL(status_of("j1") != JOB_STARTING, 1000);
	assert_status("j1", JOB_FAILED);
	cr_assert_eq(balance_of("alice"), 100);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	cr_assert_eq(slots_used(), 1);
}

/* ---- polling ------------------------------------------------------- */

Test(watchdog, a_young_running_job_is_not_polled)
{
	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 100); /* poll_after is 120 */
	wd_start();
	spin(200);
	cr_assert_eq(ncalls(C_POLL), 0);
	assert_status("j1", JOB_RUNNING);
}

Test(watchdog, poll_completed_completes_and_frees_the_slot)
{
	struct job j;

	env("queue.slots=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	submit_job("j2", "bob", "upscaler");
	age("j1", "started_at", 121);
	wd_start();
	SPIN_UNTIL(ncalls(C_POLL) == 1, 1000);
	cr_assert_eq(ncalls(C_POLL), 1);
	cr_assert_str_eq(call_of(C_POLL, 0)->task_id, "task-1");
	spin(100);
	cr_assert_eq(ncalls(C_POLL), 1, "polled again while a poll is out");

	fake_answer_poll(0, TASK_COMPLETED, NULL);
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_str_eq(json_string_value(json_object_get(
	                     json_array_get(j.outputs, 0), "url")),
	    "https://cdn.example/p.png");
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 90);
	assert_status("j2", JOB_STARTING);
	cr_assert_eq(ncalls(C_CANCEL), 0);
	spin(100);
	cr_assert_eq(ncalls(C_POLL), 1);
}

Test(watchdog, poll_failed_fails_with_the_providers_message)
{
	struct job j;

	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 121);
	wd_start();
	SPIN_UNTIL(ncalls(C_POLL) == 1, 1000);
	fake_answer_poll(0, TASK_FAILED, "node 12: bad image");
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_PROVIDER);
	cr_assert_str_eq(j.error_message, "node 12: bad image");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(slots_used(), 0);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
}

/* Still running: asked again after poll_after, then after twice that. */
Test(watchdog, poll_running_is_polled_again_with_backoff)
{
	env("runninghub.poll_after=1", NULL);
	run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 2);
	wd_start();
	SPIN_UNTIL(ncalls(C_POLL) == 1, 1000);
	cr_assert_eq(ncalls(C_POLL), 1);

	int64_t t1 = mono_ms();
	fake_answer_poll(0, TASK_RUNNING, NULL);
	assert_status("j1", JOB_RUNNING);
	spin(600);
	cr_assert_eq(ncalls(C_POLL), 1, "polled again too soon");
	SPIN_UNTIL(ncalls(C_POLL) == 2, 1500);
	cr_assert_eq(ncalls(C_POLL), 2, "not polled again");
	cr_assert_geq(mono_ms() - t1, 950);

	int64_t t2 = mono_ms();
	fake_answer_poll(1, TASK_UNKNOWN, NULL);
	assert_status("j1", JOB_RUNNING);
	spin(1500);
	cr_assert_eq(ncalls(C_POLL), 2, "the interval did not grow");
	SPIN_UNTIL(ncalls(C_POLL) == 3, 1500);
	cr_assert_eq(ncalls(C_POLL), 3);
	cr_assert_geq(mono_ms() - t2, 1950);
	cr_assert_str_eq(call_of(C_POLL, 2)->task_id, "task-1");
	assert_status("j1", JOB_RUNNING);
}

Test(watchdog, poll_that_cannot_be_sent_is_tried_again)
{
	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 121);
	fk.refuse[C_POLL] = 1;
	wd_start();
	spin(100);
	fk.refuse[C_POLL] = 0;
	SPIN_UNTIL(ncalls(C_POLL) == 1, 1000);
	cr_assert_eq(ncalls(C_POLL), 1);
}

Test(watchdog, poll_answer_for_a_job_ended_meanwhile_changes_nothing)
{
	struct job j;

	env(NULL);
	run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 121);
	wd_start();
	SPIN_UNTIL(ncalls(C_POLL) == 1, 1000);
	cr_assert_eq(cancel("j1", "alice", &j), STORE_OK);
	job_cleanup(&j);
	fake_answer_poll(0, TASK_COMPLETED, NULL);
	job_of("j1", &j);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(slots_used(), 1); /* until the cancel answers */
	fake_answer_cancel(0);
	cr_assert_eq(slots_used(), 0);
	spin(100);
	cr_assert_eq(ncalls(C_POLL), 1);
}
