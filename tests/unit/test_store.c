/*
 * test_store.c — the store through store.h on the SQLite backend, each test
 * on a fresh temporary file. Where the schema is what protects a rule, a
 * second raw sqlite3 connection tries to break it behind the store's back.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "fixtures.h"
#include "store.h"
#include "util.h"

static char dir[64];
static char path[128];
static char url[160];
static struct store *st;

static struct store *
open_with(int64_t slots, int64_t per_user, int64_t initial)
{
	struct store_opts o = {.slots = slots,
	    .per_user_active = per_user,
	    .credits_initial = initial};

	return fx_store_open(path, &o);
}

static void
setup(void)
{
	fx_tmpdir(dir, sizeof(dir), "store");
	/* A missing parent directory is created by store_open. */
	snprintf(path, sizeof(path), "%s/var/fila.db", dir);
	snprintf(url, sizeof(url), "sqlite:%s", path);
	st = open_with(3, 1, 100);
}

static void
teardown(void)
{
	store_free(st);
	st = NULL;
	fx_rmtree(dir);
}

TestSuite(store, .init = setup, .fini = teardown);

/* ---- helpers ------------------------------------------------------- */

static enum store_rc
submit_to(struct store *s, const char *id, const char *user, const char *tool,
    int64_t cost, const char *idem, struct job *out)
{
	char token[64];
	json_t *inputs = json_pack("{s:s, s:i}", "prompt", "a cat", "n", 2);
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = tool,
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = cost,
	    .session_id = "tab-1",
	    .idem_key = idem,
	    .webhook_token = token};
	int64_t balance;
	enum store_rc rc;

	snprintf(token, sizeof(token), "tok_%s", id);
	rc = store_job_submit(s, &in, out, &balance);
	json_decref(inputs);
	return rc;
}

static enum store_rc
submit(const char *id, const char *user, int64_t cost, struct job *out)
{
	return submit_to(st, id, user, "upscaler", cost, NULL, out);
}

/* Submit and check it went in; the job itself is not kept. */
static void
submit_ok(const char *id, const char *user, const char *tool)
{
	struct job j;
	cr_assert_eq(submit_to(st, id, user, tool, 10, NULL, &j), STORE_OK,
	    "%s", store_error(st));
	job_cleanup(&j);
}

static int64_t
balance_of(const char *user)
{
	int64_t b = -1;
	cr_assert_eq(store_user_balance(st, user, &b), STORE_OK);
	return b;
}

static enum store_rc
finish(const char *id, enum job_status to, int release, struct job *out)
{
	return store_job_finish(st, id, to,
	    to == JOB_COMPLETED ? NULL : JOB_ERR_PROVIDER,
	    to == JOB_COMPLETED ? NULL : "boom", NULL, release, out);
}

static enum job_status
status_of(const char *id)
{
	struct job j;
	enum job_status s;

	cr_assert_eq(store_job_get(st, id, NULL, &j), STORE_OK);
	s = j.status;
	job_cleanup(&j);
	return s;
}

/* promote → running: the job is then running with task "t_<id>". */
static void
run_next(const char *want_id)
{
	struct job j;
	char task[64];

	cr_assert_eq(store_promote(st, &j), STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(j.id, want_id);
	job_cleanup(&j);
	snprintf(task, sizeof(task), "t_%s", want_id);
	cr_assert_eq(store_job_running(st, want_id, task, &j), STORE_OK);
	cr_assert_eq(j.status, JOB_RUNNING);
	job_cleanup(&j);
}

static sqlite3 *
raw_open(void)
{
	sqlite3 *db;
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	sqlite3_exec(db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL);
	return db;
}

/* The SQLite result of sql run on a second connection. */
static int
raw_exec(const char *sql)
{
	sqlite3 *db = raw_open();
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
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

static int64_t
count_of(const char *table)
{
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	return raw_int(sql);
}

static json_t *
ledger_of(const char *user)
{
	json_t *e = NULL;
	cr_assert_eq(store_ledger(st, user, &e), STORE_OK);
	cr_assert(json_is_array(e));
	return e;
}

/* ---- open, migrate, slots ------------------------------------------ */

Test(store, open_migrate_reopen)
{
	struct job j;

	cr_assert_eq(raw_int("SELECT max(version) FROM schema_version"), 11);
	cr_assert_eq(submit("job_1", "alice", 10, &j), STORE_OK);
	job_cleanup(&j);
	store_free(st);

	st = open_with(3, 1, 100);
	cr_assert_eq(count_of("schema_version"), 11);
	cr_assert_eq(store_job_get(st, "job_1", "alice", &j), STORE_OK);
	cr_assert_eq(j.status, JOB_QUEUED);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 90);

	sqlite3 *db = raw_open();
	sqlite3_stmt *q;
	sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL);
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	cr_assert_str_eq((const char *)sqlite3_column_text(q, 0), "wal");
	sqlite3_finalize(q);
	sqlite3_close(db);
}

Test(store, open_refuses_unknown_scheme_and_bad_opts)
{
	struct store_opts o = {.slots = 3,
	                      .per_user_active = 1,
	                      .credits_initial = 100},
	                  bad = {.slots = -1,
	                      .per_user_active = 1,
	                      .credits_initial = 100};
	char err[256] = "";

	cr_assert_null(store_open("mysql://x", &o, err, sizeof(err)));
	cr_assert(strstr(err, "scheme") != NULL, "%s", err);
	cr_assert_null(store_open(url, &bad, err, sizeof(err)));
	cr_assert_null(store_open("sqlite:", &o, err, sizeof(err)));
}

Test(store, slot_rows_follow_the_config)
{
	struct job j;

	cr_assert_eq(count_of("slots"), 3);
	store_free(st);
	st = open_with(5, 1, 100);
	cr_assert_eq(count_of("slots"), 5);
	for (int i = 0; i < 3; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "job_%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_ok(id, user, "upscaler");
		cr_assert_eq(store_promote(st, &j), STORE_OK);
		job_cleanup(&j);
	}
	submit_ok("job_q", "uq", "upscaler");

	/* Shrink to 2 with 3 held: the held row 3 stays, 4 and 5 go. */
	store_free(st);
	st = open_with(2, 1, 100);
	cr_assert_eq(count_of("slots"), 3);
	cr_assert_eq(raw_int("SELECT max(id) FROM slots"), 3);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);

	/* Released, row 3 goes too; one slot freed is still not enough. */
	cr_assert_eq(finish("job_2", JOB_FAILED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(count_of("slots"), 2);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	cr_assert_eq(finish("job_0", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_q");
	job_cleanup(&j);
	cr_assert_eq(raw_int("SELECT id FROM slots WHERE job_id = 'job_q'"), 1);
}

/* ---- users and credits --------------------------------------------- */

Test(store, new_user_gets_the_initial_grant_once)
{
	json_t *e;

	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(balance_of("alice"), 100);
	e = ledger_of("alice");
	cr_assert_eq(json_array_size(e), 1);
	json_t *g = json_array_get(e, 0);
	cr_assert_str_eq(
	    json_string_value(json_object_get(g, "kind")), "grant");
	cr_assert_eq(json_integer_value(json_object_get(g, "amount")), 100);
	cr_assert_eq(
	    json_integer_value(json_object_get(g, "balance_after")), 100);
	cr_assert(json_is_null(json_object_get(g, "job_id")));
	json_decref(e);
	cr_assert_eq(raw_int("SELECT count(*) FROM ledger WHERE reason ="
	                     " 'initial'"),
	    1);
}

Test(store, zero_initial_writes_no_grant)
{
	store_free(st);
	st = open_with(3, 1, 0);
	cr_assert_eq(balance_of("bob"), 0);
	cr_assert_eq(count_of("ledger"), 0);
	cr_assert_eq(count_of("users"), 1);
}

Test(store, grants_positive_negative_and_never_below_zero)
{
	int64_t b = -1;

	cr_assert_eq(store_user_grant(st, "alice", 50, "promo", &b), STORE_OK);
	cr_assert_eq(b, 150);
	cr_assert_eq(store_user_grant(st, "alice", -120, "fix", &b), STORE_OK);
	cr_assert_eq(b, 30);
	cr_assert_eq(
	    store_user_grant(st, "alice", -31, "too much", &b), STORE_CREDITS);
	cr_assert_eq(b, 30);
	cr_assert_eq(balance_of("alice"), 30);
	cr_assert_eq(count_of("ledger"), 3);

	/* A grant to a new user creates them first (initial + grant). */
	cr_assert_eq(store_user_grant(st, "carol", -100, "all", &b), STORE_OK);
	cr_assert_eq(b, 0);
	cr_assert_eq(count_of("ledger"), 5);

	/* The schema refuses a negative balance whatever C does. */
	cr_assert_neq(raw_exec("UPDATE users SET balance = -1"), SQLITE_OK);
}

/* ---- submit -------------------------------------------------------- */

Test(store, submit_charges_and_logs_one_event)
{
	struct job j;
	json_t *e;
	int64_t b = 0;
	json_t *inputs = json_pack("{s:s}", "prompt", "x");
	struct job_new in = {.id = "job_1",
	    .user_id = "alice",
	    .tool = "upscaler",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_1"};

	cr_assert_eq(
	    store_job_submit(st, &in, &j, &b), STORE_OK, "%s", store_error(st));
	json_decref(inputs);
	cr_assert_eq(b, 90);
	cr_assert_str_eq(j.id, "job_1");
	cr_assert_eq(j.status, JOB_QUEUED);
	cr_assert_eq(j.position, 1);
	cr_assert(j.charged && !j.refunded);
	cr_assert_null(j.variant);
	cr_assert_str_eq(
	    json_string_value(json_object_get(j.inputs, "prompt")), "x");
	cr_assert(json_is_array(j.outputs));
	cr_assert(j.created_at > 0 && j.updated_at == j.created_at);
	/* The event's text stays with the job: the answer is built once. */
	json_t *shown = job_to_json(&j);
	char *text = json_dumps(shown, JSON_COMPACT | JSON_ENCODE_ANY);
	cr_assert_not_null(j.json);
	cr_assert_str_eq(j.json, text);
	free(text);
	json_decref(shown);
	job_changed(&j);
	cr_assert_null(j.json);
	job_cleanup(&j);

	e = ledger_of("alice");
	cr_assert_eq(json_array_size(e), 2);
	json_t *c = json_array_get(e, 0);
	cr_assert_str_eq(
	    json_string_value(json_object_get(c, "kind")), "charge");
	cr_assert_eq(json_integer_value(json_object_get(c, "amount")), -10);
	cr_assert_eq(
	    json_integer_value(json_object_get(c, "balance_after")), 90);
	cr_assert_str_eq(
	    json_string_value(json_object_get(c, "job_id")), "job_1");
	json_decref(e);

	cr_assert_eq(count_of("events"), 1);
	cr_assert_eq(raw_int("SELECT json_extract(data, '$.position')"
	                     " FROM events WHERE job_id = 'job_1'"),
	    1);

	/* The second user's job queues behind. */
	cr_assert_eq(submit("job_2", "bob", 10, &j), STORE_OK);
	cr_assert_eq(j.position, 2);
	job_cleanup(&j);
}

Test(store, insufficient_credits_writes_nothing)
{
	struct job j;
	int64_t b = -1;

	cr_assert_eq(store_user_grant(st, "alice", -95, "x", &b), STORE_OK);
	int64_t jobs = count_of("jobs"), ledger = count_of("ledger"),
	        events = count_of("events");

	json_t *inputs = json_object();
	struct job_new in = {.id = "job_1",
	    .user_id = "alice",
	    .tool = "upscaler",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_1"};
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_CREDITS);
	cr_assert_eq(b, 5);
	cr_assert_null(j.id);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 5);
	cr_assert_eq(count_of("jobs"), jobs);
	cr_assert_eq(count_of("ledger"), ledger);
	cr_assert_eq(count_of("events"), events);

	/* A new user who cannot pay is not even created. */
	in.id = "job_2", in.user_id = "dave", in.cost = 500;
	in.webhook_token = "tok_2";
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_CREDITS);
	cr_assert_eq(b, 100);
	job_cleanup(&j);
	json_decref(inputs);
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM users WHERE id = 'dave'"), 0);
}

Test(store, a_failure_half_way_writes_nothing)
{
	struct job j;
	int64_t b = -1;
	json_t *inputs = json_object();
	/* The token is taken: the insert fails after the user was created. */
	struct job_new in = {.id = "job_2",
	    .user_id = "erin",
	    .tool = "upscaler",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_job_1"};

	submit_ok("job_1", "alice", "upscaler");
	int64_t ledger = count_of("ledger"), events = count_of("events");
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_ERROR);
	cr_assert(
	    strstr(store_error(st), "UNIQUE") != NULL, "%s", store_error(st));
	job_cleanup(&j);
	json_decref(inputs);
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM users WHERE id = 'erin'"), 0);
	cr_assert_eq(count_of("jobs"), 1);
	cr_assert_eq(count_of("ledger"), ledger);
	cr_assert_eq(count_of("events"), events);

	/* The handle is usable afterwards, and the error text is gone. */
	cr_assert_eq(balance_of("erin"), 100);
	cr_assert_str_eq(store_error(st), "");
}

Test(store, idempotent_repeat_returns_the_first_and_charges_once)
{
	struct job j;

	cr_assert_eq(submit_to(st, "job_1", "alice", "upscaler", 10, "k1", &j),
	    STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(submit_to(st, "job_2", "alice", "upscaler", 10, "k1", &j),
	    STORE_EXISTS);
	cr_assert_str_eq(j.id, "job_1");
	cr_assert_str_eq(j.idem_key, "k1");
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 90);
	cr_assert_eq(count_of("jobs"), 1);
	cr_assert_eq(count_of("events"), 1);

	/* Still the first once it ended. */
	cr_assert_eq(finish("job_1", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(submit_to(st, "job_3", "alice", "upscaler", 10, "k1", &j),
	    STORE_EXISTS);
	cr_assert_str_eq(j.id, "job_1");
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);

	/* Keys belong to their user. */
	cr_assert_eq(
	    submit_to(st, "job_4", "bob", "upscaler", 10, "k1", &j), STORE_OK);
	job_cleanup(&j);
}

Test(store, one_active_job_per_user)
{
	struct job j;

	cr_assert_eq(submit("job_1", "alice", 10, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(submit_to(st, "job_2", "alice", "relight", 10, NULL, &j),
	    STORE_ACTIVE);
	cr_assert_str_eq(j.id, "job_1");
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 90);
	cr_assert_eq(store_job_active(st, "alice", &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_1");
	job_cleanup(&j);
	cr_assert_eq(store_job_active(st, "bob", &j), STORE_NOTFOUND);

	/* Over once the first one ends. */
	cr_assert_eq(finish("job_1", JOB_FAILED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(submit("job_2", "alice", 10, &j), STORE_OK);
	job_cleanup(&j);
}

Test(store, per_user_active_above_one_answers_the_oldest)
{
	struct job j;

	store_free(st);
	st = open_with(3, 2, 100);
	submit_ok("job_1", "alice", "upscaler");
	submit_ok("job_2", "alice", "relight");
	cr_assert_eq(submit("job_3", "alice", 10, &j), STORE_ACTIVE);
	cr_assert_str_eq(j.id, "job_1");
	job_cleanup(&j);
}

/* ---- promote ------------------------------------------------------- */

Test(store, promote_is_fifo_across_tools)
{
	struct job j;

	store_free(st);
	st = open_with(1, 1, 100);
	submit_ok("job_a", "u1", "upscaler");
	submit_ok("job_b", "u2", "pose");
	submit_ok("job_c", "u3", "tryon");
	cr_assert_eq(store_job_get(st, "job_c", NULL, &j), STORE_OK);
	cr_assert_eq(j.position, 3);
	job_cleanup(&j);

	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_a");
	cr_assert_eq(j.status, JOB_STARTING);
	cr_assert_eq(j.position, 0);
	cr_assert(j.started_at > 0);
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	cr_assert_eq(store_job_get(st, "job_c", NULL, &j), STORE_OK);
	cr_assert_eq(j.position, 2);
	job_cleanup(&j);

	cr_assert_eq(finish("job_a", JOB_FAILED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_b");
	job_cleanup(&j);

	struct job_list l = {0};
	cr_assert_eq(store_jobs_in(st, JOB_QUEUED, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "job_c");
	cr_assert_eq(l.v[0].position, 1);
	job_list_cleanup(&l);
}

Test(store, never_more_promotions_than_slots)
{
	struct job j;
	struct job_list l = {0};
	int64_t used = -1;
	int started = 0;

	for (int i = 0; i < 10; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "job_%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_ok(id, user, i % 2 ? "pose" : "upscaler");
	}
	while (store_promote(st, &j) == STORE_OK) {
		started++;
		job_cleanup(&j);
	}
	job_cleanup(&j);
	cr_assert_eq(started, 3);
	cr_assert_eq(store_slots_used(st, &used), STORE_OK);
	cr_assert_eq(used, 3);
	cr_assert_eq(store_jobs_in(st, JOB_STARTING, &l), STORE_OK);
	cr_assert_eq(l.n, 3);
	for (size_t i = 0; i < l.n; i++) {
		char id[32];
		snprintf(id, sizeof(id), "job_%zu", i);
		cr_assert_str_eq(l.v[i].id, id);
	}
	job_list_cleanup(&l);
	cr_assert_eq(store_jobs_in(st, JOB_QUEUED, &l), STORE_OK);
	cr_assert_eq(l.n, 7);
	cr_assert_eq(l.v[6].position, 7);
	job_list_cleanup(&l);
}

/* ---- finish -------------------------------------------------------- */

Test(store, failed_refunds_once)
{
	struct job j;

	submit_ok("job_1", "alice", "upscaler");
	run_next("job_1");
	cr_assert_eq(store_job_finish(st, "job_1", JOB_FAILED, JOB_ERR_PROVIDER,
	                 "out of VRAM", NULL, 1, &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert(j.refunded);
	cr_assert_str_eq(j.error_code, JOB_ERR_PROVIDER);
	cr_assert_str_eq(j.error_message, "out of VRAM");
	cr_assert(j.finished_at > 0);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);

	cr_assert_eq(finish("job_1", JOB_FAILED, 1, &j), STORE_CONFLICT);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_message, "out of VRAM");
	job_cleanup(&j);
	cr_assert_eq(finish("job_1", JOB_CANCELLED, 1, &j), STORE_CONFLICT);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(raw_int("SELECT count(*) FROM ledger WHERE kind ="
	                     " 'refund'"),
	    1);

	/* Even a raw second refund is refused by UNIQUE (job_id, kind). */
	cr_assert_neq(
	    raw_exec("INSERT INTO ledger (user_id, job_id, kind, amount,"
	             " balance_after, at) VALUES ('alice', 'job_1', 'refund',"
	             " 10, 110, 0)"),
	    SQLITE_OK);
}

Test(store, cancelled_from_queued)
{
	struct job j;
	int64_t used = -1;

	submit_ok("job_1", "alice", "upscaler");
	cr_assert_eq(
	    store_job_finish(st, "job_1", JOB_CANCELLED, JOB_ERR_CANCELLED,
	        "cancelled by the user", NULL, 1, &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert_eq(j.position, 0);
	cr_assert(j.refunded);
	cr_assert_str_eq(j.error_code, JOB_ERR_CANCELLED);
	job_cleanup(&j);
	cr_assert_eq(balance_of("alice"), 100);
	cr_assert_eq(store_slots_used(st, &used), STORE_OK);
	cr_assert_eq(used, 0);
	cr_assert_eq(finish("nope", JOB_CANCELLED, 1, &j), STORE_NOTFOUND);
}

Test(store, completed_only_from_running)
{
	struct job j;
	json_t *outs =
	    json_pack("[{s:s, s:s}]", "url", "http://x/1.png", "type", "png");

	submit_ok("job_1", "alice", "upscaler");
	cr_assert_eq(store_job_finish(
	                 st, "job_1", JOB_COMPLETED, NULL, NULL, outs, 1, &j),
	    STORE_CONFLICT);
	cr_assert_eq(j.status, JOB_QUEUED);
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_job_finish(
	                 st, "job_1", JOB_COMPLETED, NULL, NULL, outs, 1, &j),
	    STORE_CONFLICT);
	cr_assert_eq(j.status, JOB_STARTING);
	job_cleanup(&j);

	cr_assert_eq(store_job_running(st, "job_1", "task-9", &j), STORE_OK);
	cr_assert_str_eq(j.provider_task_id, "task-9");
	job_cleanup(&j);
	cr_assert_eq(
	    store_job_running(st, "job_1", "task-9", &j), STORE_CONFLICT);
	cr_assert_eq(j.status, JOB_RUNNING);
	job_cleanup(&j);

	cr_assert_eq(store_job_finish(
	                 st, "job_1", JOB_COMPLETED, NULL, NULL, outs, 1, &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert(json_equal(j.outputs, outs));
	cr_assert(!j.refunded);
	job_cleanup(&j);
	json_decref(outs);
	cr_assert_eq(balance_of("alice"), 90);
	cr_assert_eq(
	    store_job_finish(st, "job_1", JOB_QUEUED, NULL, NULL, NULL, 1, &j),
	    STORE_ERROR);
	cr_assert_eq(status_of("job_1"), JOB_COMPLETED);
}

Test(store, the_schema_refuses_what_c_must_never_do)
{
	struct job j;

	submit_ok("job_1", "alice", "upscaler");
	submit_ok("job_2", "bob", "upscaler");
	run_next("job_1");
	cr_assert_eq(finish("job_1", JOB_COMPLETED, 1, &j), STORE_OK);
	job_cleanup(&j);

	/* A terminal job never changes, whoever asks. */
	cr_assert_neq(raw_exec("UPDATE jobs SET status = 'queued'"
	                       " WHERE id = 'job_1'"),
	    SQLITE_OK);
	cr_assert_neq(raw_exec("UPDATE jobs SET error_message = 'x'"
	                       " WHERE id = 'job_1'"),
	    SQLITE_OK);
	cr_assert_eq(status_of("job_1"), JOB_COMPLETED);

	/* No start without a slot; no move off the arrows. */
	cr_assert_neq(raw_exec("UPDATE jobs SET status = 'starting'"
	                       " WHERE id = 'job_2'"),
	    SQLITE_OK);
	cr_assert_neq(raw_exec("UPDATE jobs SET status = 'completed'"
	                       " WHERE id = 'job_2'"),
	    SQLITE_OK);
	cr_assert_neq(raw_exec("INSERT INTO jobs (id, user_id, tool, status,"
	                       " inputs, cost, webhook_token, created_at,"
	                       " updated_at) VALUES ('job_x', 'bob', 't',"
	                       " 'running', '{}', 0, 'tx', 0, 0)"),
	    SQLITE_OK);
	cr_assert_eq(status_of("job_2"), JOB_QUEUED);

	/* The raw sequence that is legal passes: the arrows allow it. */
	cr_assert_eq(raw_exec("UPDATE slots SET job_id = 'job_2' WHERE id = 1;"
	                      "UPDATE jobs SET status = 'starting'"
	                      " WHERE id = 'job_2'"),
	    SQLITE_OK);
	/* ...and a starting job keeps its slot. */
	cr_assert_neq(raw_exec("UPDATE slots SET job_id = NULL"
	                       " WHERE job_id = 'job_2'"),
	    SQLITE_OK);
	cr_assert_eq(store_slot_release(st, "job_2"), STORE_ERROR);
	cr_assert_neq(
	    raw_exec("DELETE FROM slots WHERE job_id = 'job_2'"), SQLITE_OK);
	cr_assert_neq(raw_exec("UPDATE ledger SET amount = 1000"), SQLITE_OK);
}

Test(store, slot_stays_held_until_released)
{
	struct job j;
	int64_t used = -1;

	store_free(st);
	st = open_with(1, 1, 100);
	submit_ok("job_1", "alice", "upscaler");
	submit_ok("job_2", "bob", "upscaler");
	run_next("job_1");
	cr_assert_eq(finish("job_1", JOB_FAILED, 0, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_slots_used(st, &used), STORE_OK);
	cr_assert_eq(used, 1);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);

	cr_assert_eq(store_slot_release(st, "job_1"), STORE_OK);
	cr_assert_eq(store_slots_used(st, &used), STORE_OK);
	cr_assert_eq(used, 0);
	cr_assert_eq(store_slot_release(st, "job_1"), STORE_OK); /* no-op */
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_2");
	job_cleanup(&j);
}

/* ---- reads --------------------------------------------------------- */

Test(store, job_list_filters_and_cursor)
{
	struct job_list l = {0};
	struct job_filter f = {.user_id = "alice", .status = -1, .limit = 2};
	struct job j;

	store_free(st);
	st = open_with(3, 10, 100);
	for (int i = 1; i <= 5; i++) {
		char id[16];
		snprintf(id, sizeof(id), "job_%d", i);
		submit_ok(id, "alice", i % 2 ? "upscaler" : "pose");
	}
	submit_ok("job_b", "bob", "upscaler");
	cr_assert_eq(finish("job_2", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);

	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].id, "job_5");
	cr_assert_str_eq(l.v[1].id, "job_4");
	f.before_seq = l.v[1].seq;
	job_list_cleanup(&l);
	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].id, "job_3");
	cr_assert_str_eq(l.v[1].id, "job_2");
	cr_assert_eq(l.v[0].position, 2); /* job_2 left the queue */
	job_list_cleanup(&l);

	f = (struct job_filter){
	    .user_id = "alice", .status = -1, .tool = "pose", .limit = 10};
	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].id, "job_4");
	job_list_cleanup(&l);

	f.tool = NULL, f.status = JOB_CANCELLED;
	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "job_2");
	job_list_cleanup(&l);

	f = (struct job_filter){.status = JOB_QUEUED, .limit = 100};
	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 5);
	cr_assert_str_eq(l.v[0].id, "job_b");
	cr_assert_eq(l.v[0].position, 5);
	job_list_cleanup(&l);
}

/* A tool's completed jobs, newest first (what admission's medians read):
 * the other tools', the failed and the unfinished are not among them. */
Test(store, a_tools_completed_jobs_newest_first)
{
	struct job_list l = {0};
	struct job_filter f = {
	    .status = JOB_COMPLETED, .tool = "upscaler", .limit = 10};
	const char *tools[] = {"upscaler", "pose", "upscaler", "upscaler"};
	const enum job_status ends[] = {
	    JOB_COMPLETED, JOB_COMPLETED, JOB_FAILED, JOB_COMPLETED};
	struct job j;

	for (int i = 0; i < 4; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "job_%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_ok(id, user, tools[i]);
		run_next(id);
		cr_assert_eq(finish(id, ends[i], 1, &j), STORE_OK);
		job_cleanup(&j);
	}
	submit_ok("job_q", "uq", "upscaler");
	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].id, "job_3");
	cr_assert_str_eq(l.v[1].id, "job_0");
	f.before_seq = l.v[0].seq;
	f.limit = 1;
	job_list_cleanup(&l);
	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "job_0");
	job_list_cleanup(&l);
	f = (struct job_filter){
	    .status = JOB_COMPLETED, .tool = "pose", .limit = 10};
	cr_assert_eq(store_job_list(st, &f, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "job_1");
	job_list_cleanup(&l);
}

Test(store, ledger_newest_first_with_signed_amounts)
{
	struct job j;
	json_t *e;
	const char *kinds[] = {"refund", "charge", "grant"};
	const json_int_t amounts[] = {10, -10, 100}, after[] = {100, 90, 100};

	submit_ok("job_1", "alice", "upscaler");
	cr_assert_eq(finish("job_1", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	e = ledger_of("alice");
	cr_assert_eq(json_array_size(e), 3);
	for (size_t i = 0; i < 3; i++) {
		json_t *x = json_array_get(e, i);
		const char *id = json_string_value(json_object_get(x, "id"));
		const char *at = json_string_value(json_object_get(x, "at"));
		cr_assert(id && strncmp(id, "led_", 4) == 0);
		cr_assert_str_eq(
		    json_string_value(json_object_get(x, "kind")), kinds[i]);
		cr_assert_eq(json_integer_value(json_object_get(x, "amount")),
		    amounts[i]);
		cr_assert_eq(
		    json_integer_value(json_object_get(x, "balance_after")),
		    after[i]);
		cr_assert(at && strlen(at) == 24 && at[23] == 'Z', "%s", at);
	}
	json_decref(e);
	/* Another user's ledger is theirs alone. */
	e = ledger_of("bob");
	cr_assert_eq(json_array_size(e), 1);
	json_decref(e);
}

Test(store, job_by_token_and_by_owner)
{
	struct job j;

	submit_ok("job_1", "alice", "upscaler");
	cr_assert_eq(store_job_by_token(st, "tok_job_1", &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_1");
	cr_assert_str_eq(j.webhook_token, "tok_job_1");
	cr_assert_str_eq(j.session_id, "tab-1");
	cr_assert_str_eq(j.variant, "pro");
	job_cleanup(&j);
	cr_assert_eq(store_job_by_token(st, "tok_nope", &j), STORE_NOTFOUND);
	cr_assert_eq(store_job_get(st, "job_1", "bob", &j), STORE_NOTFOUND);
	cr_assert_eq(store_job_get(st, "job_1", "alice", &j), STORE_OK);
	job_cleanup(&j);
}

/* A submit's reads in one call: the uploads it names that are the user's
 * (a name twice, each its copy; another's or none, no id), and the
 * user's recent submits beside them when asked. */
Test(store, a_submits_reads_come_in_one_call)
{
	const char *ids[] = {"upl_a", "upl_b", "upl_a", "nope"};
	struct upload u = {.id = "upl_a",
	    .user_id = "u1",
	    .type = "png",
	    .size = 10,
	    .sha256 = "00",
	    .path = "/x",
	    .created_at = 1000};
	struct upload up[4];
	int64_t n = -1, oldest = -1, now = now_ms();

	cr_assert_eq(store_upload_add(st, &u), STORE_OK);
	u.id = "upl_b";
	u.user_id = "u2";
	cr_assert_eq(store_upload_add(st, &u), STORE_OK);
	submit_ok("j1", "u1", "upscaler");
	cr_assert_eq(store_submit_reads(
	                 st, "u1", ids, 4, up, now - 60000, 30, &n, &oldest),
	    STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(up[0].id, "upl_a");
	cr_assert_eq(up[0].size, 10);
	cr_assert_null(up[1].id, "another user's upload is not found");
	cr_assert_str_eq(up[2].id, "upl_a");
	cr_assert_null(up[3].id);
	cr_assert_eq(n, 1);
	cr_assert_geq(oldest, now);
	for (int i = 0; i < 4; i++)
		upload_cleanup(&up[i]);

	cr_assert_eq(store_submit_reads(
	                 st, "u1", NULL, 0, NULL, now - 60000, 0, &n, &oldest),
	    STORE_OK, "%s", store_error(st));
	cr_assert(n == 0 && oldest == 0, "no count asked: none told");
}

Test(store, uploads_belong_to_their_user)
{
	struct upload u = {.id = "upl_1",
	    .user_id = "alice",
	    .type = "png",
	    .size = 42,
	    .sha256 = "ab",
	    .filename = NULL,
	    .path = "var/uploads/upl_1",
	    .created_at = 1000};
	struct upload got;

	cr_assert_eq(store_upload_add(st, &u), STORE_OK);
	cr_assert_eq(store_upload_add(st, &u), STORE_EXISTS);
	cr_assert_eq(store_upload_get(st, "upl_1", "alice", &got), STORE_OK);
	cr_assert_str_eq(got.type, "png");
	cr_assert_eq(got.size, 42);
	cr_assert_null(got.filename);
	cr_assert_str_eq(got.path, "var/uploads/upl_1");
	cr_assert_eq(got.created_at, 1000);
	upload_cleanup(&got);
	cr_assert_eq(
	    store_upload_get(st, "upl_1", "bob", &got), STORE_NOTFOUND);
	cr_assert_eq(
	    store_upload_get(st, "upl_2", "alice", &got), STORE_NOTFOUND);
}

Test(store, one_event_per_change_with_increasing_ids)
{
	static const char *const want[] = {
	    "queued", "starting", "running", "completed"};
	struct job j;
	sqlite3 *db;
	sqlite3_stmt *q;
	int64_t last = 0;
	size_t n = 0;

	submit_ok("job_1", "alice", "upscaler");
	run_next("job_1");
	cr_assert_eq(finish("job_1", JOB_COMPLETED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(finish("job_1", JOB_FAILED, 1, &j), STORE_CONFLICT);
	job_cleanup(&j);

	db = raw_open();
	cr_assert_eq(sqlite3_prepare_v2(db,
	                 "SELECT id, job_id, user_id, data FROM events"
	                 " ORDER BY id",
	                 -1, &q, NULL),
	    SQLITE_OK);
	while (sqlite3_step(q) == SQLITE_ROW) {
		json_t *d = json_loads(
		    (const char *)sqlite3_column_text(q, 3), 0, NULL);
		cr_assert_lt(n, 4);
		cr_assert_gt(sqlite3_column_int64(q, 0), last);
		last = sqlite3_column_int64(q, 0);
		cr_assert_str_eq(
		    (const char *)sqlite3_column_text(q, 1), "job_1");
		cr_assert_str_eq(
		    (const char *)sqlite3_column_text(q, 2), "alice");
		cr_assert_str_eq(
		    json_string_value(json_object_get(d, "status")), want[n]);
		cr_assert_null(json_object_get(d, "webhook_token"));
		json_decref(d);
		n++;
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	cr_assert_eq(n, 4);
}

/* ---- several handles on one file ----------------------------------- */

Test(store, two_handles_never_exceed_the_slots)
{
	struct store *other = open_with(3, 1, 100);
	struct store *h[2] = {st, other};
	struct job j;
	int started = 0, idle = 0;
	int64_t used = -1;

	for (int i = 0; i < 10; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "job_%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		cr_assert_eq(
		    submit_to(h[i % 2], id, user, "upscaler", 10, NULL, &j),
		    STORE_OK);
		job_cleanup(&j);
	}
	/* Alternate until both handles find nothing to promote. */
	for (int i = 0; idle < 2; i++) {
		enum store_rc rc = store_promote(h[i % 2], &j);
		cr_assert(rc == STORE_OK || rc == STORE_NOTFOUND);
		started += rc == STORE_OK;
		idle = rc == STORE_OK ? 0 : idle + 1;
		job_cleanup(&j);
	}
	cr_assert_eq(started, 3);
	cr_assert_eq(store_slots_used(other, &used), STORE_OK);
	cr_assert_eq(used, 3);

	/* A slot freed through one handle is taken through the other. */
	cr_assert_eq(
	    store_job_finish(other, "job_1", JOB_FAILED, "x", "y", NULL, 1, &j),
	    STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_3");
	job_cleanup(&j);
	cr_assert_eq(store_promote(other, &j), STORE_NOTFOUND);
	cr_assert_eq(raw_int("SELECT count(*) FROM jobs WHERE status IN"
	                     " ('starting', 'running')"),
	    3);
	store_free(other);
}

/* Real processes racing: each child promotes as fast as it can. */
Test(store, racing_processes_never_exceed_the_slots)
{
	enum { CHILDREN = 4, JOBS = 20 };
	pid_t pid[CHILDREN];

	for (int i = 0; i < JOBS; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "job_%02d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_ok(id, user, "upscaler");
	}
	for (int c = 0; c < CHILDREN; c++) {
		pid[c] = fork();
		cr_assert_neq(pid[c], -1);
		if (pid[c] == 0) {
			struct store_opts o = {.slots = 3,
			    .per_user_active = 1,
			    .credits_initial = 100};
			char err[256];
			struct store *s = store_open(url, &o, err, sizeof(err));
			struct job j;
			int ok = s != NULL;
			for (int k = 0; ok && k < 20; k++) {
				enum store_rc rc = store_promote(s, &j);
				ok = rc == STORE_OK || rc == STORE_NOTFOUND;
				job_cleanup(&j);
			}
			store_free(s);
			_exit(ok ? 0 : 1);
		}
	}
	for (int c = 0; c < CHILDREN; c++) {
		int status;
		cr_assert_eq(waitpid(pid[c], &status, 0), pid[c]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	cr_assert_eq(raw_int("SELECT count(*) FROM jobs WHERE status ="
	                     " 'starting'"),
	    3);
	cr_assert_eq(raw_int("SELECT count(*) FROM jobs WHERE status ="
	                     " 'starting' AND id IN ('job_00', 'job_01',"
	                     " 'job_02')"),
	    3);
}

/* ---- the event log, positions, counts, callbacks ------------------- */

Test(store, events_after_filters_and_orders)
{
	struct store_event_list l = {0};
	struct job j;
	int64_t last = -1;

	submit_ok("ja", "ann", "upscaler");
	submit_ok("jb", "bob", "veste_ai");
	cr_assert_eq(finish("ja", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_events_last(st, &last), STORE_OK);
	cr_assert_eq(last, 3);

	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 3);
	for (size_t i = 1; i < l.n; i++)
		cr_assert_gt(l.v[i].id, l.v[i - 1].id);
	store_event_list_cleanup(&l);

	cr_assert_eq(store_events_after(st, 0, "ann", NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert(strstr(l.v[1].data, "\"cancelled\"") != NULL);
	store_event_list_cleanup(&l);

	cr_assert_eq(store_events_after(st, 1, "ann", "ja", 1, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].job_id, "ja");
	store_event_list_cleanup(&l);
}

/* The head of the queue with its places, the length of all of it, the
 * active jobs and the slots held: one snapshot. */
Test(store, queue_view)
{
	struct store_queue_view v = {0};
	struct job j;

	cr_assert_eq(store_queue(st, 2, 1, &v), STORE_OK);
	cr_assert_eq(v.queued.n + v.active.n + v.total + v.used, 0);
	for (int i = 0; i < 7; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "h%d", i);
		snprintf(user, sizeof(user), "hu%d", i);
		submit_ok(id, user, "upscaler");
	}
	cr_assert_eq(store_promote(st, &j), STORE_OK); /* h0 starts */
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_OK); /* h1 starts, runs */
	job_cleanup(&j);
	cr_assert_eq(store_job_running(st, "h1", "task-1", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_queue(st, 2, 1, &v), STORE_OK);
	cr_assert_eq(v.used, 2);
	cr_assert_eq(v.active.n, 2); /* starting, then running */
	cr_assert_str_eq(v.active.v[0].id, "h0");
	cr_assert_str_eq(v.active.v[1].id, "h1");
	cr_assert_eq(v.total, 5);
	cr_assert_eq(v.queued.n, 2);
	cr_assert_str_eq(v.queued.v[0].id, "h2");
	cr_assert_eq(v.queued.v[0].position, 1);
	cr_assert_str_eq(v.queued.v[1].id, "h3");
	cr_assert_eq(v.queued.v[1].position, 2);
	job_list_cleanup(&v.active);
	job_list_cleanup(&v.queued);
	cr_assert_eq(store_queue(st, 0, 0, &v), STORE_OK);
	cr_assert_eq(v.active.n, 0, "not asked for");
	cr_assert_eq(v.queued.n, 5, "0: all of it");
	cr_assert_eq(v.queued.v[4].position, 5);
	job_list_cleanup(&v.queued);
}

static int commits;
static void
count_commit(void *arg)
{
	commits++;
}

Test(store, commit_hook_runs_after_each_commit)
{
	struct job j;

	commits = 0;
	store_on_commit(st, count_commit, NULL);
	submit_ok("h1", "u1", "upscaler");
	cr_assert_eq(commits, 1);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(commits, 2);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	cr_assert_eq(commits, 2, "nothing to promote: nothing committed");
	/* Grouped: one commit for the turn, at its end. */
	store_group(st, 1);
	submit_ok("h2", "u2", "upscaler");
	submit_ok("h3", "u3", "upscaler");
	cr_assert_eq(commits, 2);
	cr_assert(store_pending(st));
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(commits, 3);
	cr_assert_not(store_pending(st));
	store_on_commit(st, NULL, NULL);
}

Test(store, job_counts_and_finished_window)
{
	struct job j;
	struct job_list l = {0};
	json_t *c = NULL;

	submit_ok("c1", "u1", "upscaler");
	submit_ok("c2", "u2", "veste_ai");
	cr_assert_eq(finish("c2", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_job_counts(st, &c), STORE_OK);
	cr_assert_eq(json_integer_value(json_object_get(
	                 json_object_get(c, "upscaler"), "queued")),
	    1);
	cr_assert_eq(json_integer_value(json_object_get(
	                 json_object_get(c, "veste_ai"), "cancelled")),
	    1);
	cr_assert_null(
	    json_object_get(json_object_get(c, "veste_ai"), "queued"),
	    "a state no job is in is not listed");
	json_decref(c);
	cr_assert_eq(store_jobs_finished(st, now_ms() - 60000, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "c2");
	job_list_cleanup(&l);
	cr_assert_eq(store_jobs_finished(st, now_ms() + 60000, &l), STORE_OK);
	cr_assert_eq(l.n, 0);

	/* Kept by triggers through every move: always what a count says. */
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(finish("c1", JOB_FAILED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(raw_int("SELECT count(*) FROM (SELECT tool, status,"
	                     " count(*) AS n FROM jobs GROUP BY tool, status"
	                     " EXCEPT SELECT tool, status, n FROM job_counts"
	                     " WHERE n > 0)"),
	    0);
	cr_assert_eq(raw_int("SELECT sum(n) FROM job_counts"), 2);
}

Test(store, callbacks_are_recorded)
{
	submit_ok("cb", "u1", "upscaler");
	cr_assert_eq(store_callback_add(st, "cb", "t1", "failed", 1), STORE_OK);
	cr_assert_eq(store_callback_add(st, "cb", "t1", "failed", 0), STORE_OK);
	cr_assert_eq(raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                     " 'cb' AND applied = 0"),
	    1);
	cr_assert_eq(count_of("callbacks"), 2);
}

Test(store, jobs_older_reads_only_what_waited_too_long)
{
	struct job_list l = {0};
	struct job j;

	submit_ok("o1", "u1", "upscaler");
	submit_ok("o2", "u2", "upscaler");
	submit_ok("o3", "u3", "upscaler");
	cr_assert_eq(raw_exec("UPDATE jobs SET created_at = created_at - 600000"
	                      " WHERE id IN ('o1', 'o2')"),
	    SQLITE_OK);
	cr_assert_eq(store_jobs_older(st, JOB_QUEUED, now_ms() - 60000, 0, &l),
	    STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].id, "o1");
	cr_assert_str_eq(l.v[1].id, "o2");
	job_list_cleanup(&l);
	cr_assert_eq(store_jobs_older(st, JOB_QUEUED, now_ms() - 60000, 1, &l),
	    STORE_OK);
	cr_assert_eq(l.n, 1, "the limit holds");
	job_list_cleanup(&l);

	/* Running jobs count from when they started, not when created. */
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(
	    store_jobs_older(st, JOB_STARTING, now_ms() - 60000, 0, &l),
	    STORE_OK);
	cr_assert_eq(l.n, 0);
	cr_assert_eq(store_jobs_older(st, JOB_STARTING, now_ms() + 1000, 0, &l),
	    STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "o1");
	job_list_cleanup(&l);
}

/* ---- the queue's order, and group commit ---------------------------- */

static int64_t
position_of(struct store *s, const char *id)
{
	struct job j;
	int64_t p;

	cr_assert_eq(store_job_get(s, id, NULL, &j), STORE_OK);
	p = j.position;
	job_cleanup(&j);
	return p;
}

/* Positions come from the queue's order when read: a move writes nothing
 * but the state change that made it. */
Test(store, positions_are_derived_not_stored)
{
	struct store *z = open_with(0, 1, 100); /* no slot: all wait */
	struct job j;
	char id[16], user[16];

	store_free(st);
	st = z;
	for (int i = 1; i <= 5; i++) {
		snprintf(id, sizeof(id), "q%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		cr_assert_eq(submit(id, user, 10, &j), STORE_OK);
		cr_assert_eq(j.position, i, "a new job's place is the last");
		job_cleanup(&j);
	}
	cr_assert_eq(store_queue_length(st), 5);
	int64_t events = count_of("events");
	uint64_t gone = store_queue_departures(st);
	cr_assert_eq(finish("q2", JOB_CANCELLED, 1, &j), STORE_OK);
	cr_assert_eq(j.position, 0);
	job_cleanup(&j);
	cr_assert_eq(count_of("events"), events + 1, "the cancel alone");
	cr_assert_eq(store_queue_departures(st), gone + 1);
	cr_assert_eq(position_of(st, "q1"), 1);
	cr_assert_eq(position_of(st, "q3"), 2);
	cr_assert_eq(position_of(st, "q5"), 4);
	cr_assert_eq(store_queue_length(st), 4);
	/* A job that left the queue has no place. */
	cr_assert_eq(position_of(st, "q2"), 0);
	/* The stored queued event kept the place it showed then. */
	cr_assert_eq(raw_int("SELECT json_extract(data, '$.position') FROM"
	                     " events WHERE job_id = 'q5'"),
	    5);
	cr_assert_eq(raw_int("SELECT count(*) FROM events WHERE seq IS NULL"
	                     " OR status IS NOT json_extract(data,"
	                     " '$.status')"),
	    0);
	/* Reopened: the order is built again from the jobs. */
	store_free(st);
	st = open_with(0, 1, 100);
	cr_assert_eq(store_queue_length(st), 4);
	cr_assert_eq(position_of(st, "q4"), 3);
}

/* Another process's changes reach this one's order through the log. */
Test(store, the_order_follows_another_process)
{
	struct store *a = open_with(0, 2, 100), *b = open_with(0, 2, 100);
	struct job j;

	cr_assert_eq(
	    submit_to(a, "x1", "u1", "upscaler", 10, NULL, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(
	    submit_to(b, "x2", "u2", "upscaler", 10, NULL, &j), STORE_OK);
	cr_assert_eq(j.position, 2, "b caught up before writing");
	job_cleanup(&j);
	cr_assert_eq(position_of(a, "x2"), 2, "a catches up to read");
	cr_assert_eq(
	    store_job_finish(b, "x1", JOB_CANCELLED, "c", "m", NULL, 1, &j),
	    STORE_OK);
	job_cleanup(&j);
	uint64_t gone = store_queue_departures(a);
	store_queue_sync(a);
	cr_assert_eq(store_queue_departures(a), gone + 1);
	cr_assert_eq(store_queue_place(a, raw_int("SELECT seq FROM jobs WHERE"
	                                          " id = 'x2'")),
	    1);
	cr_assert_eq(store_queue_length(a), 1);
	store_free(a);
	store_free(b);
}

struct told {
	int calls, ok;
};

static void
tell(void *arg, int ok)
{
	struct told *t = arg;
	t->calls++;
	t->ok = ok;
}

/* Grouped: one transaction for many changes, a savepoint each; a failing
 * change leaves the others, and nothing is seen outside before the sync. */
Test(store, group_commit_keeps_what_succeeded)
{
	struct job j;
	struct told t = {0};
	int64_t b = -1;
	json_t *inputs = json_object();
	struct job_new dup = {.id = "g3",
	    .user_id = "erin",
	    .tool = "upscaler",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_g1"}; /* taken: fails half-way */

	store_group(st, 1);
	submit_ok("g1", "u1", "upscaler");
	store_after(st, tell, &t);
	cr_assert_eq(t.calls, 0, "waits for the commit");
	cr_assert_eq(store_job_submit(st, &dup, &j, &b), STORE_ERROR);
	job_cleanup(&j);
	json_decref(inputs);
	submit_ok("g2", "u2", "upscaler");
	cr_assert_eq(store_queue_length(st), 2);
	cr_assert_eq(position_of(st, "g2"), 2);
	/* Not committed: another connection sees nothing yet. */
	cr_assert_eq(count_of("jobs"), 0);
	struct store_event_list l = {0};
	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 0, "pending events are not read");
	store_event_list_cleanup(&l);
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(t.calls, 1);
	cr_assert_eq(t.ok, 1);
	cr_assert_eq(count_of("jobs"), 2);
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM users WHERE id = 'erin'"), 0);
	cr_assert_eq(count_of("events"), 2);
	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	store_event_list_cleanup(&l);
	/* With nothing pending, store_after runs at once. */
	store_after(st, tell, &t);
	cr_assert_eq(t.calls, 2);
	store_group(st, 0);
}

/* Watched from a loop, a commit's sync is a thread's: the commit is made
 * (another connection reads it), but what waits for it, its events, and a
 * store_after() with nothing open wait until the loop hears it is synced. */
Test(store, a_watched_commit_waits_for_its_sync)
{
	struct event_base *base = event_base_new();
	struct told t1 = {0}, t2 = {0}, t3 = {0};
	struct store_event_list l = {0};
	int64_t last = -1;

	cr_assert_not_null(base);
	store_watch(st, base);
	store_group(st, 1);
	submit_ok("y1", "u1", "upscaler");
	store_after(st, tell, &t1);
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_not(store_pending(st));
	cr_assert_eq(count_of("jobs"), 1, "committed");
	cr_assert_eq(t1.calls, 0, "told once synced, from the loop");
	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 0, "its events wait for the sync");
	store_event_list_cleanup(&l);
	cr_assert_eq(store_events_last(st, &last), STORE_OK);
	cr_assert_eq(last, 0);
	store_after(st, tell, &t2); /* nothing open: it saw y1 */
	cr_assert_eq(t2.calls, 0, "waits for the sync of what it saw");
	/* A transaction that writes nothing has no sync of its own, but may
	 * have read y1: what waits for it waits for y1's. */
	struct job j;
	struct told t4 = {0};
	cr_assert_eq(store_job_finish(
	                 st, "nope", JOB_CANCELLED, NULL, NULL, NULL, 0, &j),
	    STORE_NOTFOUND);
	job_cleanup(&j);
	store_after(st, tell, &t4);
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(t4.calls, 0, "waits for y1's sync");
	submit_ok("y2", "u2", "upscaler");
	store_after(st, tell, &t3);
	cr_assert_eq(store_sync(st), STORE_OK);
	for (int i = 0; i < 1000 && t3.calls == 0; i++)
		cr_assert_geq(event_base_loop(base, EVLOOP_ONCE), 0);
	cr_assert_eq(t1.calls, 1);
	cr_assert_eq(t1.ok, 1);
	cr_assert_eq(t2.calls, 1, "before or with the next commit's");
	cr_assert_eq(t4.calls, 1);
	cr_assert_eq(t3.calls, 1);
	cr_assert_eq(t3.ok, 1);
	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	store_event_list_cleanup(&l);
	/* store_drain waits for the thread itself. */
	submit_ok("y3", "u3", "upscaler");
	store_after(st, tell, &t1);
	store_drain(st);
	cr_assert_eq(t1.calls, 2);
	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 3);
	store_event_list_cleanup(&l);
	store_free(st); /* its event is on base */
	st = NULL;
	event_base_free(base);
}

/* A transaction holding only a job's move to running may wait a little
 * for the next turn's changes; any other change, or anything waiting for
 * the commit, makes it due at once. */
Test(store, running_alone_may_wait_for_the_next_commit)
{
	struct job j;
	struct told t = {0};
	const struct timespec past = {0, (STORE_LAZY_MS + 1) * 1000000L};
	struct store *one = open_with(1, 1, 100);

	store_free(st);
	st = one;
	cr_assert_eq(store_due(st), -1, "nothing open");
	store_group(st, 1);
	submit_ok("w1", "u1", "upscaler");
	cr_assert_eq(store_due(st), 0, "a submit is due at once");
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_due(st), 0, "a promotion too");
	cr_assert_eq(store_sync(st), STORE_OK);

	int64_t t0 = now_ms();
	cr_assert_eq(store_job_running(st, "w1", "t_w1", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert(store_pending(st));
	int64_t due = store_due(st);
	cr_assert(due >= 0 && due <= STORE_LAZY_MS, "%lld", (long long)due);
	/* The transaction opened at t0 or later (whole milliseconds): unless
	 * this machine took that long itself, some of the wait is left. */
	if (now_ms() - t0 <= STORE_LAZY_MS - 1)
		cr_assert(due > 0, "running may wait");
	nanosleep(&past, NULL);
	cr_assert_eq(store_due(st), 0, "not past STORE_LAZY_MS");
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(status_of("w1"), JOB_RUNNING);

	/* Waited for, or with another change: due at once. */
	submit_ok("w2", "u2", "upscaler");
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND); /* no slot */
	job_cleanup(&j);
	cr_assert_eq(finish("w1", JOB_COMPLETED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(store_sync(st), STORE_OK);
	t0 = now_ms();
	cr_assert_eq(store_job_running(st, "w2", "t_w2", &j), STORE_OK);
	job_cleanup(&j);
	due = store_due(st);
	if (now_ms() - t0 <= STORE_LAZY_MS - 1)
		cr_assert(due > 0, "running may wait");
	store_after(st, tell, &t);
	cr_assert_eq(store_due(st), 0, "something waits for the commit");
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(t.calls, 1);
	cr_assert_eq(store_due(st), -1);
	store_group(st, 0);
}

/* A lost transaction takes its changes to the queue's order with it, and
 * what waited for it is told. RAISE(ROLLBACK) ends the whole transaction
 * from inside, as a full disk or an I/O error would. */
Test(store, a_lost_transaction_undoes_the_order)
{
	struct store *z = open_with(0, 1, 100);
	struct job j;
	struct told t = {0};

	store_free(st);
	st = z;
	submit_ok("k1", "u1", "upscaler");
	cr_assert_eq(raw_exec("CREATE TRIGGER boom BEFORE INSERT ON events"
	                      " WHEN NEW.job_id = 'kx' BEGIN"
	                      " SELECT RAISE(ROLLBACK, 'disk gone'); END"),
	    SQLITE_OK);
	store_group(st, 1);
	submit_ok("k2", "u2", "upscaler");
	cr_assert_eq(finish("k1", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	uint64_t gone = store_queue_departures(st);
	cr_assert_eq(store_queue_length(st), 1);
	store_after(st, tell, &t);
	cr_assert_eq(submit("kx", "u3", 10, &j), STORE_ERROR);
	job_cleanup(&j);
	cr_assert_not_null(strstr(store_error(st), "disk gone"));
	/* All of it is gone: k2 was never queued, k1 never left. */
	cr_assert_eq(t.calls, 1);
	cr_assert_eq(t.ok, 0);
	cr_assert_not(store_pending(st));
	cr_assert_eq(store_queue_departures(st), gone - 1);
	cr_assert_eq(store_queue_length(st), 1);
	cr_assert_eq(position_of(st, "k1"), 1);
	cr_assert_eq(count_of("jobs"), 1);
	/* The store goes on: the next change is its own transaction. */
	submit_ok("k3", "u3", "upscaler");
	cr_assert_eq(store_sync(st), STORE_OK);
	cr_assert_eq(position_of(st, "k3"), 2);
	cr_assert_eq(count_of("jobs"), 2);
	store_group(st, 0);
}

/* A store of version 3 stored position events and the places shown: they
 * go, and every state event is filed with its job's seq and status. */
Test(store, migration_4_from_version_3)
{
	struct job j;

	submit_ok("v1", "u1", "upscaler");
	submit_ok("v2", "u2", "upscaler");
	cr_assert_eq(finish("v1", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	store_free(st);
	st = NULL;
	/* Back to version 3, with a position event of v2. */
	cr_assert_eq(raw_exec("ALTER TABLE events DROP COLUMN seq;"
	                      "ALTER TABLE events DROP COLUMN status;"
	                      "ALTER TABLE events ADD COLUMN position INTEGER;"
	                      "ALTER TABLE events ADD COLUMN base INTEGER;"
	                      "CREATE TABLE shown (job_id TEXT PRIMARY KEY,"
	                      " position INTEGER NOT NULL, base INTEGER NOT"
	                      " NULL DEFAULT 0) WITHOUT ROWID;"
	                      "CREATE TRIGGER shown_leaves AFTER UPDATE OF"
	                      " status ON jobs BEGIN SELECT 1; END;"
	                      "CREATE TRIGGER shown_base AFTER INSERT ON shown"
	                      " BEGIN SELECT 1; END;"
	                      "INSERT INTO shown VALUES ('v2', 1, 2);"
	                      "INSERT INTO events (job_id, user_id, data, at,"
	                      " position, base) VALUES ('v2', 'u2', '', 1, 1,"
	                      " 2);"
	                      "DROP TRIGGER jobs_terminal;"
	                      "CREATE TRIGGER jobs_terminal BEFORE UPDATE ON"
	                      " jobs WHEN OLD.status IN ('completed',"
	                      " 'failed', 'cancelled') BEGIN SELECT"
	                      " RAISE(ABORT, 'terminal'); END;"
	                      "DROP TABLE outputs;"
	                      "DROP TABLE settings;"
	                      "DROP TABLE outbox;"
	                      "DROP INDEX uploads_user_created;"
	                      "DROP INDEX uploads_created;"
	                      "DROP TABLE accounts;"
	                      "DROP INDEX slots_place;"
	                      "ALTER TABLE slots DROP COLUMN n;"
	                      "ALTER TABLE slots DROP COLUMN account;"
	                      "ALTER TABLE jobs DROP COLUMN provider_cost;"
	                      "ALTER TABLE jobs DROP COLUMN account;"
	                      "DROP INDEX jobs_starter;"
	                      "ALTER TABLE jobs DROP COLUMN starter;"
	                      "DROP TABLE processes;"
	                      "DROP INDEX jobs_started;"
	                      "DROP INDEX jobs_queued_since;"
	                      "CREATE INDEX jobs_status_seq ON jobs"
	                      " (status, seq);"
	                      "DELETE FROM schema_version WHERE version >= 4"),
	    SQLITE_OK);
	st = open_with(3, 1, 100);
	cr_assert_eq(raw_int("SELECT max(version) FROM schema_version"), 11);
	cr_assert_eq(count_of("events"), 3, "the position event went");
	cr_assert_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE name"
	                     " = 'shown'"),
	    0);
	cr_assert_eq(raw_int("SELECT count(*) FROM events e JOIN jobs j ON"
	                     " j.id = e.job_id WHERE e.seq = j.seq AND"
	                     " e.status = json_extract(e.data, '$.status')"),
	    3);
	cr_assert_eq(position_of(st, "v2"), 1);
}

/* jobs and ledger as versions 1 to 9 left them: the rows are copied into
 * tables of that shape (their indexes and triggers are what version 10
 * makes again). */
static const char v9_tables[] =
    "PRAGMA foreign_keys = OFF; PRAGMA legacy_alter_table = ON;"
    "CREATE TABLE old_jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    " id TEXT UNIQUE NOT NULL, user_id TEXT NOT NULL REFERENCES users (id),"
    " tool TEXT NOT NULL, variant TEXT, status TEXT NOT NULL CHECK (status"
    " IN ('queued', 'starting', 'running', 'completed', 'failed',"
    " 'cancelled')), inputs TEXT NOT NULL CHECK (json_valid(inputs)),"
    " outputs TEXT CHECK (outputs IS NULL OR json_valid(outputs)),"
    " error_code TEXT, error_message TEXT, cost INTEGER NOT NULL CHECK"
    " (cost >= 0), charged INTEGER NOT NULL DEFAULT 0 CHECK (charged IN"
    " (0, 1)), refunded INTEGER NOT NULL DEFAULT 0 CHECK (refunded IN (0, 1)"
    " AND refunded <= charged AND (refunded = 0 OR status IN ('failed',"
    " 'cancelled'))), provider_task_id TEXT, webhook_token TEXT UNIQUE NOT"
    " NULL, session_id TEXT, idem_key TEXT, created_at INTEGER NOT NULL,"
    " started_at INTEGER, finished_at INTEGER, updated_at INTEGER NOT NULL,"
    " starter TEXT, account TEXT, provider_cost TEXT CHECK (provider_cost IS"
    " NULL OR json_valid(provider_cost)), UNIQUE (user_id, idem_key));"
    "INSERT INTO old_jobs SELECT * FROM jobs;"
    "DROP TABLE jobs; ALTER TABLE old_jobs RENAME TO jobs;"
    "UPDATE sqlite_sequence SET seq = 40 WHERE name = 'jobs';"
    "CREATE TABLE old_ledger (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " user_id TEXT NOT NULL REFERENCES users (id), job_id TEXT, kind TEXT"
    " NOT NULL CHECK (kind IN ('grant', 'charge', 'refund')), amount"
    " INTEGER NOT NULL, balance_after INTEGER NOT NULL CHECK (balance_after"
    " >= 0), reason TEXT, at INTEGER NOT NULL, UNIQUE (job_id, kind));"
    "INSERT INTO old_ledger SELECT * FROM ledger;"
    "DROP TABLE ledger; ALTER TABLE old_ledger RENAME TO ledger;"
    "DELETE FROM schema_version WHERE version >= 10;";

/* Every row of jobs and ledger, as one text. */
static char *
rows_text(void)
{
	sqlite3 *db = raw_open();
	sqlite3_stmt *q;
	char *text = NULL;

	cr_assert_eq(
	    sqlite3_prepare_v2(db,
	        "SELECT group_concat(r, char(10)) FROM"
	        " (SELECT json_array(seq, id, user_id, tool, variant, status,"
	        "  inputs, outputs, error_code, error_message, cost,"
	        "  charged, refunded, provider_task_id, webhook_token,"
	        "  session_id, idem_key, created_at, started_at,"
	        "  finished_at, updated_at, starter, account,"
	        "  provider_cost) AS r FROM jobs"
	        "  UNION ALL SELECT json_array(id, user_id, job_id,"
	        "  kind, amount, balance_after, reason, at) FROM"
	        "  ledger ORDER BY 1)",
	        -1, &q, NULL),
	    SQLITE_OK, "%s", sqlite3_errmsg(db));
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	text = strdup((const char *)sqlite3_column_text(q, 0));
	sqlite3_finalize(q);
	sqlite3_close(db);
	return text;
}

/* Version 10 rebuilds jobs and ledger: the same rows, the same rules,
 * CHECKs without IN lists, ledger without AUTOINCREMENT, and the
 * idempotency keys' index over the jobs that have one. */
Test(store, migration_10_rebuilds_jobs_and_ledger)
{
	struct job j;
	char *before, *after;

	cr_assert_eq(
	    submit_to(st, "m1", "u1", "upscaler", 10, "k1", &j), STORE_OK);
	job_cleanup(&j);
	submit_ok("m2", "u2", "upscaler");
	submit_ok("m3", "u3", "upscaler");
	run_next("m1");
	cr_assert_eq(finish("m1", JOB_COMPLETED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(finish("m2", JOB_FAILED, 1, &j), STORE_OK); /* refund */
	job_cleanup(&j);
	store_free(st);
	st = NULL;
	cr_assert_eq(raw_exec(v9_tables), SQLITE_OK);
	before = rows_text();

	st = open_with(3, 1, 100);
	after = rows_text();
	cr_assert_str_eq(after, before, "the rows are the same");
	free(before);
	free(after);
	cr_assert_eq(raw_int("SELECT max(version) FROM schema_version"), 11);
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM sqlite_master WHERE"
	            " tbl_name IN ('jobs', 'ledger') AND type = 'table'"
	            " AND (sql LIKE '%status IN (''queued''%'"
	            " OR sql LIKE '%kind IN%')"),
	    0, "no IN list of three in a CHECK");
	cr_assert_eq(raw_int("SELECT count(*) FROM sqlite_sequence"
	                     " WHERE name = 'ledger'"),
	    0, "the ledger has no AUTOINCREMENT");
	cr_assert_eq(raw_int("SELECT seq FROM sqlite_sequence"
	                     " WHERE name = 'jobs'"),
	    40, "the jobs' sequence goes on");
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM sqlite_master"
	            " WHERE tbl_name IN ('jobs', 'ledger') AND name IN"
	            " ('jobs_queued', 'jobs_user_seq', 'jobs_user_active',"
	            " 'jobs_finished', 'jobs_started',"
	            " 'jobs_queued_since', 'jobs_starter',"
	            " 'jobs_user_idem', 'ledger_user', 'jobs_born_queued',"
	            " 'jobs_arrows', 'jobs_terminal', 'jobs_need_slot',"
	            " 'job_counts_born', 'job_counts_move',"
	            " 'ledger_no_update', 'ledger_no_delete')"),
	    17, "every index and trigger is there again");
	cr_assert_eq(raw_int("PRAGMA foreign_key_check"), -1, "no orphan");

	/* The rules still hold. */
	cr_assert_eq(
	    submit_to(st, "m4", "u1", "upscaler", 10, "k1", &j), STORE_EXISTS);
	cr_assert_str_eq(j.id, "m1");
	job_cleanup(&j);
	cr_assert_eq(
	    raw_exec("UPDATE jobs SET idem_key = 'k1' WHERE id = 'm3'"),
	    SQLITE_OK, "another user's key is another key");
	cr_assert_neq(
	    raw_exec("UPDATE jobs SET user_id = 'u1' WHERE id = 'm3'"),
	    SQLITE_OK, "one job per key per user");
	cr_assert_neq(raw_exec("UPDATE jobs SET status = 'running'"
	                       " WHERE id = 'm3'"),
	    SQLITE_OK, "the arrows");
	cr_assert_neq(raw_exec("UPDATE jobs SET status = 'bogus'"
	                       " WHERE id = 'm3'"),
	    SQLITE_OK, "the states");
	cr_assert_neq(raw_exec("INSERT INTO ledger (user_id, kind, amount,"
	                       " balance_after, at) VALUES ('u1', 'gift', 1, 1,"
	                       " 0)"),
	    SQLITE_OK, "the kinds");
	cr_assert_neq(raw_exec("DELETE FROM ledger"), SQLITE_OK, "history");
	submit_ok("m5", "u5", "upscaler");
	cr_assert_eq(raw_int("SELECT seq FROM jobs WHERE id = 'm5'"), 41);
	cr_assert_eq(position_of(st, "m3"), 1);
	cr_assert_eq(position_of(st, "m5"), 2);
}

/* ---- accounts: pools of slots -------------------------------------- */

static const struct store_account two_pools[] = {{"a", 2}, {"b", 1}};

static struct store *
open_pools(enum store_hooks hooks)
{
	struct store_opts o = {.slots = 3,
	    .per_user_active = 1,
	    .credits_initial = 100,
	    .accounts = two_pools,
	    .naccounts = 2,
	    .hooks = hooks};

	store_free(st);
	return st = fx_store_open(path, &o);
}

static char *
promoted_account(void)
{
	struct job j;
	char *account;

	cr_assert_eq(store_promote(st, &j), STORE_OK, "%s", store_error(st));
	cr_assert_eq(j.status, JOB_STARTING);
	cr_assert_not_null(j.account);
	account = xstrdup(j.account);
	job_cleanup(&j);
	return account;
}

static int64_t
used_of(const char *account)
{
	json_t *used = NULL;
	int64_t n;

	cr_assert_eq(store_slots_by_account(st, &used), STORE_OK);
	n = json_integer_value(json_object_get(used, account));
	json_decref(used);
	return n;
}

Test(store, each_account_is_a_pool_of_its_slots)
{
	const char *want[] = {"a", "a", "b"};
	struct job j;

	open_pools(STORE_HOOKS_NONE);
	cr_assert_eq(raw_int("SELECT count(*) FROM slots"), 3);
	for (int i = 0; i < 4; i++) {
		char id[16];
		snprintf(id, sizeof(id), "j%d", i);
		submit_ok(id, id, "upscaler");
	}
	/* The most room first, then by name: a, a, b; then none. */
	for (int i = 0; i < 3; i++) {
		char *account = promoted_account();
		cr_assert_str_eq(account, want[i]);
		free(account);
	}
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	cr_assert_eq(used_of("a"), 2);
	cr_assert_eq(used_of("b"), 1);
	/* The schema keeps rule 1 per account: no row of a beyond 2. */
	cr_assert_neq(raw_exec("INSERT INTO slots (account, n) VALUES"
	                       " ('a', 2)"),
	    SQLITE_OK);
}

Test(store, an_account_that_is_down_is_not_used)
{
	const char *b[] = {"b"};
	char *account;
	struct job j;

	open_pools(STORE_HOOKS_NONE);
	submit_ok("j1", "u1", "upscaler");
	submit_ok("j2", "u2", "upscaler");
	store_accounts_up(st, b, 1);
	account = promoted_account();
	cr_assert_str_eq(account, "b");
	free(account);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND, "a is down");
	store_accounts_up(st, NULL, 0);
	account = promoted_account();
	cr_assert_str_eq(account, "a");
	free(account);
}

Test(store, a_starting_job_moves_to_another_account)
{
	const char *b[] = {"b"};
	struct job j;

	open_pools(STORE_HOOKS_NONE);
	submit_ok("j1", "u1", "upscaler");
	submit_ok("j2", "u2", "upscaler");
	free(promoted_account()); /* j1 on a */
	store_accounts_up(st, b, 1);
	cr_assert_eq(
	    store_job_move(st, "j1", &j), STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(j.account, "b");
	cr_assert_eq(j.status, JOB_STARTING);
	job_cleanup(&j);
	cr_assert_eq(used_of("a"), 0);
	cr_assert_eq(used_of("b"), 1);
	cr_assert_eq(raw_int("SELECT count(*) FROM slots WHERE account = 'a'"),
	    2, "every account keeps its rows");
	cr_assert_eq(raw_int("SELECT count(*) FROM slots s JOIN jobs j ON"
	                     " j.id = s.job_id WHERE j.id = 'j1' AND"
	                     " s.account = 'b'"),
	    1);
	/* No room on another account; not starting. */
	cr_assert_eq(store_job_move(st, "j1", &j), STORE_NOTFOUND);
	cr_assert_eq(store_job_move(st, "j2", &j), STORE_CONFLICT);
	job_cleanup(&j);
}

/* A change's job (and its event text) is the job as a read then gives
 * it, whatever the change wrote: the promotion and the finish read back
 * only what they change. */
static void
same_as_read(struct job *j)
{
	struct job r;
	char *text, *mine;

	job_init(&r);
	cr_assert_eq(store_job_get(st, j->id, NULL, &r), STORE_OK);
	text = job_to_text(&r);
	mine = job_to_text(j);
	cr_assert_not_null(j->json);
	cr_assert_str_eq(j->json, text);
	cr_assert_str_eq(mine, text);
	free(mine);
	free(text);
	job_cleanup(&r);
	job_cleanup(j);
}

Test(store, each_change_gives_the_job_as_a_read_does)
{
	json_t *cost = json_pack(
	    "{s:i, s:s, s:i}", "coins", 3, "money", "0.03", "seconds", 2);
	json_t *outs = json_pack(
	    "[{s:s, s:s}]", "url", "https://x/o.png", "type", "image");
	struct job j;

	submit_ok("j1", "u1", "upscaler");
	submit_ok("j2", "u2", "upscaler");
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_eq(j.status, JOB_STARTING);
	same_as_read(&j);
	cr_assert_eq(store_job_running(st, "j1", "t1", &j), STORE_OK);
	same_as_read(&j);
	cr_assert_eq(store_job_cost(st, "j1", cost), STORE_OK);
	cr_assert_eq(
	    store_job_finish(st, "j1", JOB_COMPLETED, NULL, NULL, outs, 1, &j),
	    STORE_OK);
	cr_assert_eq(json_array_size(j.outputs), 1);
	cr_assert_not_null(j.provider_cost);
	same_as_read(&j);
	/* A failure: its message, and a refund. */
	cr_assert_eq(store_promote(st, &j), STORE_OK);
	same_as_read(&j);
	cr_assert_eq(finish("j2", JOB_FAILED, 1, &j), STORE_OK);
	cr_assert_str_eq(j.error_message, "boom");
	cr_assert(j.refunded);
	same_as_read(&j);
	json_decref(outs);
	json_decref(cost);
}

Test(store, provider_cost_is_kept_with_a_running_job)
{
	json_t *cost = json_pack(
	    "{s:i, s:s, s:i}", "coins", 12, "money", "0.12", "seconds", 30);
	struct job j;

	submit_ok("j1", "u1", "upscaler");
	cr_assert_eq(store_job_cost(st, "j1", cost), STORE_CONFLICT, "queued");
	run_next("j1");
	cr_assert_eq(store_job_cost(st, "j1", cost), STORE_OK);
	cr_assert_eq(finish("j1", JOB_COMPLETED, 1, &j), STORE_OK);
	cr_assert(json_equal(j.provider_cost, cost));
	json_t *shown = job_to_json(&j);
	cr_assert(json_equal(json_object_get(shown, "provider_cost"), cost));
	json_decref(shown);
	job_cleanup(&j);
	cr_assert_neq(raw_exec("UPDATE jobs SET provider_cost = '{}'"),
	    SQLITE_OK, "a terminal job never changes");
	json_decref(cost);
}

/* ---- usage and retention ------------------------------------------- */

Test(store, usage_counts_a_users_recent_submits_and_uploads)
{
	struct job j;
	int64_t n = -1, bytes = -1, oldest = -1, now = now_ms();

	submit_ok("j1", "u1", "upscaler");
	cr_assert_eq(finish("j1", JOB_CANCELLED, 1, &j), STORE_OK);
	job_cleanup(&j);
	submit_ok("j2", "u1", "upscaler");
	cr_assert_eq(store_user_submits(st, "u1", now - 60000, 30, &n, &oldest),
	    STORE_OK);
	cr_assert_eq(n, 2);
	cr_assert_eq(store_user_submits(st, "u1", now - 60000, 1, &n, &oldest),
	    STORE_OK);
	cr_assert_eq(n, 1, "only the newest upto are read");
	cr_assert_eq(store_user_submits(st, "u1", now + 60000, 30, &n, &oldest),
	    STORE_OK);
	cr_assert_eq(n, 0);
	cr_assert_eq(
	    store_user_submits(st, "u2", 0, 30, &n, &oldest), STORE_OK);
	cr_assert_eq(n, 0);

	for (int i = 0; i < 3; i++) {
		char id[16];
		struct upload u = {.id = id,
		    .user_id = "u1",
		    .type = "png",
		    .size = 100 * (i + 1),
		    .sha256 = "00",
		    .path = "/x",
		    .created_at = now - i * 3600 * 1000LL};
		snprintf(id, sizeof(id), "upl_%d", i);
		cr_assert_eq(store_upload_add(st, &u), STORE_OK);
	}
	cr_assert_eq(store_user_uploads(
	                 st, "u1", now - 1800 * 1000LL, &n, &bytes, &oldest),
	    STORE_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(bytes, 100);
	cr_assert_eq(
	    store_user_uploads(st, "u1", 0, &n, &bytes, &oldest), STORE_OK);
	cr_assert_eq(n, 3);
	cr_assert_eq(bytes, 600);
	cr_assert_eq(oldest, now - 2 * 3600 * 1000LL);
}

Test(store, old_uploads_are_listed_oldest_first_and_forgotten)
{
	struct upload_list l = {0};
	int64_t now = now_ms();

	for (int i = 0; i < 3; i++) {
		char id[16];
		struct upload u = {.id = id,
		    .user_id = "u1",
		    .type = "png",
		    .size = 1,
		    .sha256 = "00",
		    .path = "/x",
		    .created_at = now - i * 1000};
		snprintf(id, sizeof(id), "upl_%d", i);
		cr_assert_eq(store_upload_add(st, &u), STORE_OK);
	}
	cr_assert_eq(store_uploads_older(st, now - 500, 10, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].id, "upl_2");
	cr_assert_str_eq(l.v[1].id, "upl_1");
	cr_assert_eq(store_upload_delete(st, "upl_2"), STORE_OK);
	upload_list_cleanup(&l);
	cr_assert_eq(store_uploads_older(st, now - 500, 10, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	upload_list_cleanup(&l);
	cr_assert_eq(count_of("uploads"), 2);
}

/* ---- the outbox ---------------------------------------------------- */

static void
claim(int64_t now, struct store_delivery_list *l)
{
	store_delivery_list_cleanup(l);
	cr_assert_eq(store_outbox_claim(st, now, 30000, 10, l), STORE_OK, "%s",
	    store_error(st));
}

Test(store, terminal_events_become_webhooks_with_their_change)
{
	struct store_delivery_list l = {0};
	struct job j;
	int64_t pending, failed;

	open_pools(STORE_HOOKS_TERMINAL);
	submit_ok("j1", "u1", "upscaler");
	run_next("j1");
	cr_assert_eq(count_of("outbox"), 0, "queued, starting, running: none");
	cr_assert_eq(finish("j1", JOB_COMPLETED, 1, &j), STORE_OK);
	job_cleanup(&j);
	claim(now_ms(), &l);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].status, "completed");
	cr_assert_str_eq(l.v[0].job_id, "j1");
	cr_assert_not_null(strstr(l.v[0].data, "\"status\":\"completed\""));
	cr_assert_eq(l.v[0].event_id,
	    raw_int("SELECT max(id) FROM events WHERE job_id = 'j1'"));
	/* Claimed: no other claim gets it meanwhile. */
	claim(now_ms(), &l);
	cr_assert_eq(l.n, 0);
	cr_assert_eq(store_outbox_counts(st, &pending, &failed), STORE_OK);
	cr_assert_eq(pending, 1);
	store_delivery_list_cleanup(&l);
}

Test(store, a_jobs_webhooks_go_in_order_retried_then_failed)
{
	struct store_delivery_list l = {0};
	struct job j;
	int64_t now, first, pending, failed;

	open_pools(STORE_HOOKS_ALL);
	submit_ok("j1", "u1", "upscaler");
	submit_ok("j2", "u2", "upscaler");
	run_next("j1");
	now = now_ms();
	cr_assert_eq(count_of("outbox"), 4, "queued ×2, starting, running");
	/* The oldest pending of each job only. */
	claim(now, &l);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].job_id, "j1");
	cr_assert_str_eq(l.v[0].status, "queued");
	cr_assert_str_eq(l.v[1].job_id, "j2");
	first = l.v[0].event_id;
	/* j1's first fails for now: nothing of j1 goes before it. */
	cr_assert_eq(
	    store_outbox_done(st, first, 0, now + 5000, "HTTP 500"), STORE_OK);
	cr_assert_eq(
	    store_outbox_done(st, l.v[1].event_id, 1, 0, NULL), STORE_OK);
	claim(now + 1000, &l);
	cr_assert_eq(l.n, 0, "j1 waits for its first; j2 has no more");
	claim(now + 5000, &l);
	cr_assert_eq(l.n, 1);
	cr_assert_eq(l.v[0].event_id, first);
	cr_assert_eq(l.v[0].attempts, 1);
	cr_assert_str_eq(l.v[0].last_error, "HTTP 500");
	/* Given up: the next of j1 goes. */
	cr_assert_eq(store_outbox_done(st, first, 0, 0, "HTTP 500"), STORE_OK);
	claim(now + 6000, &l);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].status, "starting");
	cr_assert_eq(store_outbox_counts(st, &pending, &failed), STORE_OK);
	cr_assert_eq(pending, 2);
	cr_assert_eq(failed, 1);
	store_delivery_list_cleanup(&l);
	cr_assert_eq(store_outbox_list(st, "failed", 0, 10, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_eq(l.v[0].event_id, first);
	cr_assert_str_eq(l.v[0].state, "failed");
	store_delivery_list_cleanup(&l);
	cr_assert_eq(finish("j1", JOB_COMPLETED, 1, &j), STORE_OK);
	job_cleanup(&j);
}

Test(store, no_webhooks_without_hooks)
{
	struct job j;

	submit_ok("j1", "u1", "upscaler");
	run_next("j1");
	cr_assert_eq(finish("j1", JOB_COMPLETED, 1, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(count_of("outbox"), 0);
}

/* ---- outputs kept by fila, and shared secrets ------------------------ */

Test(store, an_output_is_found_by_its_id)
{
	json_t *stored = json_pack("[{s:s, s:s, s:i, s:s}]", "id", "out_1",
	    "type", "png", "size", 42, "sha256", "ab");
	json_t *o = NULL;

	cr_assert_eq(store_outputs_add(st, "job_1", "alice", stored), STORE_OK);
	cr_assert_eq(store_output_get(st, "out_1", &o), STORE_OK);
	cr_assert_str_eq(
	    json_string_value(json_object_get(o, "job_id")), "job_1");
	cr_assert_str_eq(
	    json_string_value(json_object_get(o, "user_id")), "alice");
	cr_assert_str_eq(json_string_value(json_object_get(o, "type")), "png");
	cr_assert_eq(json_integer_value(json_object_get(o, "size")), 42);
	json_decref(o);
	cr_assert_eq(store_output_get(st, "out_2", &o), STORE_NOTFOUND);
	cr_assert_eq(store_outputs_add(st, "job_2", "bob", stored), STORE_ERROR,
	    "an id is one output's");
	json_decref(stored);
}

Test(store, a_completion_with_kept_outputs_is_both_or_neither)
{
	json_t *stored = json_pack("[{s:s, s:s, s:i, s:s}]", "id", "out_k",
	    "type", "png", "size", 7, "sha256", "cd");
	json_t *shown = json_pack("[{s:s, s:s, s:s}]", "url", "https://f/o",
	    "type", "png", "id", "out_k");
	json_t *o = NULL;
	struct job j;

	submit_ok("j1", "u1", "upscaler");
	run_next("j1");
	cr_assert_eq(
	    store_job_complete_kept(st, "j1", "u1", shown, stored, 1, &j),
	    STORE_OK, "%s", store_error(st));
	cr_assert_eq(j.status, JOB_COMPLETED);
	job_cleanup(&j);
	cr_assert_eq(store_output_get(st, "out_k", &o), STORE_OK);
	json_decref(o);

	/* Already ended (another process kept its copy): nothing of this
	 * one is recorded. */
	json_object_set_new(
	    json_array_get(stored, 0), "id", json_string("out_l"));
	cr_assert_eq(
	    store_job_complete_kept(st, "j1", "u1", shown, stored, 1, &j),
	    STORE_CONFLICT);
	job_cleanup(&j);
	cr_assert_eq(store_output_get(st, "out_l", &o), STORE_NOTFOUND);

	/* The outputs refused (an id taken): the job does not complete. */
	submit_ok("j2", "u2", "upscaler");
	run_next("j2");
	json_object_set_new(
	    json_array_get(stored, 0), "id", json_string("out_k"));
	cr_assert_neq(
	    store_job_complete_kept(st, "j2", "u2", shown, stored, 1, &j),
	    STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(status_of("j2"), JOB_RUNNING);
	json_decref(stored);
	json_decref(shown);
}

Test(store, a_secret_is_made_once_and_shared)
{
	char *a = NULL, *b = NULL;
	struct store *other;
	struct store_opts o = {
	    .slots = 3, .per_user_active = 1, .credits_initial = 100};

	cr_assert_eq(store_secret(st, "outputs", &a), STORE_OK);
	cr_assert_eq(strlen(a), 64);
	other = fx_store_open(path, &o);
	cr_assert_eq(store_secret(other, "outputs", &b), STORE_OK);
	cr_assert_str_eq(a, b, "every process sharing the store agrees");
	free(b);
	cr_assert_eq(store_secret(other, "another", &b), STORE_OK);
	cr_assert_str_neq(a, b);
	free(a);
	free(b);
	store_free(other);
}

/* ---- checkpoints ----------------------------------------------------- */

/* The WAL header's checkpoint sequence: it grows each time the WAL starts
 * over. -1 without a WAL. */
static long
wal_cycle(long *size)
{
	char wal[160];
	unsigned char h[16];
	FILE *f;
	long n = -1;

	snprintf(wal, sizeof(wal), "%s-wal", path);
	if ((f = fopen(wal, "rb")) == NULL)
		return -1;
	if (fread(h, 1, sizeof(h), f) == sizeof(h))
		n = (long)h[12] << 24 | h[13] << 16 | h[14] << 8 | h[15];
	fseek(f, 0, SEEK_END);
	*size = ftell(f);
	fclose(f);
	return n;
}

/*
 * Past 4096 frames the thread and the loop checkpoint it all, and the WAL
 * starts over (each grant is a commit of a few frames). Its file keeps the
 * size it reached: a trim at each start would cost the writer an ftruncate
 * of milliseconds. Bounded all along.
 */
Test(store, the_wal_starts_over_and_keeps_its_file)
{
	long size = 0, peak = 0, first = wal_cycle(&size), now = first;
	int64_t b;
	int i;

	for (i = 0; i < 40000 && now == first; i++) {
		cr_assert_eq(
		    store_user_grant(st, "alice", 1, "tick", &b), STORE_OK);
		now = wal_cycle(&size);
		if (size > peak)
			peak = size;
		cr_assert_lt(size, 2L * 4096 * 4120, "the WAL stays bounded");
	}
	cr_assert_neq(now, first, "no restart after %d commits", i);
	cr_assert_gt(peak, 4096L * 4096, "restarted before 4096 frames");
	wal_cycle(&size);
	cr_assert_eq(
	    size, peak, "the WAL file was trimmed: %ld of %ld", size, peak);
	cr_assert_eq(balance_of("alice"), 100 + i);
}
