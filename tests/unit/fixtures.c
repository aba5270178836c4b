/*
 * fixtures.c — the unit tests' shared fixtures (see fixtures.h): temporary
 * directories and stores for any test; for the tests of sched.c and
 * watchdog.c, the fake provider and the environment of a test, with the
 * helpers that submit jobs and read the store. Linked into every unit test
 * binary; a test uses what it needs.
 */
#include "fixtures.h"

#include <errno.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "runninghub.h"
#include "sched.h"

struct fx_state fx;

/* ---- a temporary directory, a store in it ------------------------------ */

void
fx_tmpdir(char *buf, size_t len, const char *name)
{
	int n = snprintf(buf, len, "/tmp/fila-%s-XXXXXX", name);

	cr_assert(n > 0 && (size_t)n < len, "temporary dir name too long");
	cr_assert_not_null(mkdtemp(buf), "mkdtemp %s", buf);
}

static int
rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

void
fx_rmtree(const char *dir)
{
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

struct store *
fx_store_open(const char *path, const struct store_opts *o)
{
	char err[256] = "", url[160];
	struct store *s;

	snprintf(url, sizeof(url), "sqlite:%s", path);
	s = store_open(url, o, err, sizeof(err));
	cr_assert_not_null(s, "store_open: %s", err);
	return s;
}

/* ---- the fake provider ------------------------------------------------- */

static struct fx_call *
fake_record(enum fx_call_kind k, void *arg)
{
	cr_assert_lt(fx.fake.ncalls, FX_MAX_CALLS, "too many provider calls");
	struct fx_call *c = &fx.fake.calls[fx.fake.ncalls++];
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

static int
fake_submit(
    void *impl, const struct provider_task *t, provider_cb cb, void *arg)
{
	struct fx_fake *fk = impl;

	if (fk->refuse[FX_SUBMIT])
		return -1;
	struct fx_call *c = fake_record(FX_SUBMIT, arg);
	c->cb = cb;
	snprintf(c->app_id, sizeof(c->app_id), "%s", t->app_id);
	snprintf(c->webhook, sizeof(c->webhook), "%s", t->webhook_url);
	nodes_text(t, c->nodes, sizeof(c->nodes));
	if (fk->at_once[FX_SUBMIT]) {
		char task[32];
		snprintf(task, sizeof(task), "task-now-%d", ++fk->next_task);
		fx_answer(c, fk->at_once_rc,
		    fk->at_once_rc == PROVIDER_OK ? task : "no", 0);
	}
	return 0;
}

static int
fake_cancel(void *impl, const char *task_id, provider_cb cb, void *arg)
{
	struct fx_fake *fk = impl;

	if (fk->refuse[FX_CANCEL])
		return -1;
	struct fx_call *c = fake_record(FX_CANCEL, arg);
	c->cb = cb;
	snprintf(c->task_id, sizeof(c->task_id), "%s", task_id);
	if (fk->at_once[FX_CANCEL])
		fx_answer(c, PROVIDER_OK, NULL, 0);
	return 0;
}

static int
fake_poll(void *impl, const char *task_id, provider_poll_cb cb, void *arg)
{
	struct fx_fake *fk = impl;

	if (fk->refuse[FX_POLL])
		return -1;
	struct fx_call *c = fake_record(FX_POLL, arg);
	c->poll_cb = cb;
	snprintf(c->task_id, sizeof(c->task_id), "%s", task_id);
	return 0;
}

static int
fake_tasks(void *impl, provider_cb cb, void *arg)
{
	struct fx_fake *fk = impl;

	if (fk->refuse[FX_TASKS])
		return -1;
	struct fx_call *c = fake_record(FX_TASKS, arg);
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
	const struct fx_fake *fk = impl;
	int n = 0;

	for (int i = 0; i < fk->ncalls; i++)
		n += !fk->calls[i].answered;
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

void
fx_answer(struct fx_call *c, enum provider_rc rc, const char *text, long count)
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
static struct fx_call *
nth(enum fx_call_kind k, int i)
{
	for (int n = 0; n < fx.fake.ncalls; n++)
		if (fx.fake.calls[n].kind == k && i-- == 0)
			return &fx.fake.calls[n];
	return NULL;
}

int
fx_ncalls(enum fx_call_kind k)
{
	int n = 0;
	for (int i = 0; i < fx.fake.ncalls; i++)
		n += fx.fake.calls[i].kind == k;
	return n;
}

int
fx_unanswered(enum fx_call_kind k)
{
	int n = 0;
	for (int i = 0; i < fx.fake.ncalls; i++)
		n += fx.fake.calls[i].kind == k && !fx.fake.calls[i].answered;
	return n;
}

struct fx_call *
fx_call_of(enum fx_call_kind k, int i)
{
	struct fx_call *c = nth(k, i);
	cr_assert_not_null(
	    c, "no provider call #%d of kind %d (%d made)", i, k, fx_ncalls(k));
	return c;
}

void
fx_answer_submit(int i, enum provider_rc rc, const char *text)
{
	fx_answer(fx_call_of(FX_SUBMIT, i), rc, text, 0);
}

void
fx_answer_cancel(int i)
{
	fx_answer(fx_call_of(FX_CANCEL, i), PROVIDER_OK, NULL, 0);
}

void
fx_answer_tasks(int i, long count)
{
	fx_answer(fx_call_of(FX_TASKS, i), PROVIDER_OK, NULL, count);
}

void
fx_answer_poll(int i, enum provider_state state, const char *message)
{
	struct fx_call *c = fx_call_of(FX_POLL, i);
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

/* ---- the environment of a test ----------------------------------------- */

static struct store_opts
store_opts_of(const struct config *cfg)
{
	struct store_opts o = {.slots = cfg->slots,
	    .per_user_active = cfg->per_user_active,
	    .credits_initial = cfg->credits_initial};
	return o;
}

/* Load the built-in config with the --set strings given (NULL-ended),
 * open a fresh store and start a scheduler on the fake provider. */
void
fx_env(const char *set, ...)
{
	char *sets[8];
	size_t n = 0;
	char err[256] = "";
	va_list ap;

	va_start(ap, set);
	for (const char *s = set; s; s = va_arg(ap, const char *)) {
		cr_assert_lt(n, 8);
		sets[n++] = (char *)s;
	}
	va_end(ap);
	cr_assert_eq(
	    config_load(&fx.cfg, "/nonexistent", 1, sets, n, err, sizeof(err)),
	    0, "config: %s", err);
	fx.cfg_loaded = 1;

	/* The directory is named after the test binary (test_sched...). */
	fx_tmpdir(fx.dir, sizeof(fx.dir), program_invocation_short_name);
	snprintf(fx.dbpath, sizeof(fx.dbpath), "%s/fila.db", fx.dir);
	struct store_opts o = store_opts_of(&fx.cfg);
	fx.st = fx_store_open(fx.dbpath, &o);

	fx.base = event_base_new();
	cr_assert_not_null(fx.base);
	memset(&fx.fake, 0, sizeof(fx.fake));
	fx.prov = provider_new(&fake_ops, &fx.fake);
	fx.sc = sched_new(fx.base, &fx.cfg, fx.st, fx.prov, NULL);
}

void
fx_teardown(void)
{
	sched_free(fx.sc);
	provider_free(fx.prov);
	store_free(fx.st);
	if (fx.base)
		event_base_free(fx.base);
	if (fx.cfg_loaded)
		config_cleanup(&fx.cfg);
	if (fx.dir[0])
		fx_rmtree(fx.dir);
	fx.sc = NULL;
	fx.prov = NULL;
	fx.st = NULL;
	fx.base = NULL;
	fx.cfg_loaded = 0;
	fx.dir[0] = '\0';
}

/* A new process on the same store: a fresh scheduler and provider state
 * (the old one's calls are lost), the store opened again. */
void
fx_restart(void)
{
	struct store_opts o = store_opts_of(&fx.cfg);

	sched_free(fx.sc);
	store_free(fx.st);
	memset(&fx.fake, 0, sizeof(fx.fake));
	fx.st = fx_store_open(fx.dbpath, &o);
	fx.sc = sched_new(fx.base, &fx.cfg, fx.st, fx.prov, NULL);
}

void
fx_spin(int ms)
{
	int64_t end = mono_ms() + ms;

	do {
		event_base_loop(fx.base, EVLOOP_NONBLOCK);
		usleep(2000);
	} while (mono_ms() < end);
}

/* ---- jobs -------------------------------------------------------------- */

void
fx_uploads_for(const char *user)
{
	static const char *const types[] = {"png", "mp4"};
	static const char *const prefixes[] = {"img", "vid"};

	for (int i = 0; i < 2; i++) {
		char id[64], path[160];
		snprintf(id, sizeof(id), "%s_%s", prefixes[i], user);
		snprintf(path, sizeof(path), "%s/%s", fx.dir, id);
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
		enum store_rc rc = store_upload_add(fx.st, &u);
		cr_assert(rc == STORE_OK || rc == STORE_EXISTS);
	}
}

json_t *
fx_inputs_for(const char *tool, const char *user)
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

enum sched_rc
fx_submit_with(const char *id, const char *user, const char *tool,
    json_t *inputs, struct job *out)
{
	const struct tool *t = tools_find(&fx.cfg.tools, tool);
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
	enum sched_rc rc = sched_submit(fx.sc, &in, out, &balance);
	json_decref(inputs);
	return rc;
}

enum job_status
fx_submit_job(const char *id, const char *user, const char *tool)
{
	struct job j;

	fx_uploads_for(user);
	job_init(&j);
	cr_assert_eq(
	    fx_submit_with(id, user, tool, fx_inputs_for(tool, user), &j),
	    SCHED_OK, "submit %s: %s", id, store_error(fx.st));
	cr_assert_str_eq(j.id, id);
	enum job_status s = j.status;
	job_cleanup(&j);
	return s;
}

void
fx_run_job(const char *id, const char *user, int submit_no, const char *task)
{
	fx_submit_job(id, user, "upscaler");
	fx_answer_submit(submit_no, PROVIDER_OK, task);
	fx_assert_status(id, JOB_RUNNING);
}

enum sched_rc
fx_cancel(const char *id, const char *user, struct job *out)
{
	job_init(out);
	return sched_cancel(fx.sc, id, user, JOB_ERR_CANCELLED, out);
}

/* ---- the store --------------------------------------------------------- */

void
fx_job_of(const char *id, struct job *j)
{
	job_init(j);
	cr_assert_eq(store_job_get(fx.st, id, NULL, j), STORE_OK, "job %s", id);
}

enum job_status
fx_status_of(const char *id)
{
	struct job j;
	fx_job_of(id, &j);
	enum job_status s = j.status;
	job_cleanup(&j);
	return s;
}

int64_t
fx_slots_used(void)
{
	int64_t n = -1;
	cr_assert_eq(store_slots_used(fx.st, &n), STORE_OK);
	return n;
}

int64_t
fx_balance_of(const char *user)
{
	int64_t b = -1;
	cr_assert_eq(store_user_balance(fx.st, user, &b), STORE_OK);
	return b;
}

int
fx_ledger_count(const char *user, const char *job_id, const char *kind)
{
	json_t *e = NULL, *x;
	size_t i;
	int n = 0;

	cr_assert_eq(store_ledger(fx.st, user, &e), STORE_OK);
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

int
fx_jobs_in(enum job_status s)
{
	struct job_list l = {0};
	cr_assert_eq(store_jobs_in(fx.st, s, &l), STORE_OK);
	int n = (int)l.n;
	job_list_cleanup(&l);
	return n;
}

/* What the provider may be running for fila: submits not answered yet,
 * running jobs and cancels not answered yet. Never more than the slots. */
void
fx_assert_within_slots(void)
{
	int held = fx_unanswered(FX_SUBMIT) + fx_jobs_in(JOB_RUNNING) +
	           fx_unanswered(FX_CANCEL);

	cr_assert_leq(held, fx.cfg.slots, "provider holds %d, slots %lld", held,
	    (long long)fx.cfg.slots);
	cr_assert_leq(fx_slots_used(), fx.cfg.slots);
	cr_assert_leq(
	    fx_jobs_in(JOB_STARTING) + fx_jobs_in(JOB_RUNNING), fx.cfg.slots);
}

static sqlite3 *
raw_open(void)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(fx.dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

void
fx_raw_exec(const char *sql)
{
	sqlite3 *db = raw_open();
	char *err = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, err ? err : "");
	sqlite3_free(err);
	sqlite3_close(db);
}

int64_t
fx_raw_int(const char *sql)
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
