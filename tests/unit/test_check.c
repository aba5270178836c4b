/*
 * test_check.c — `fila check` (src/check.c) on a store built through the
 * real store API: clean, it finds nothing; then a second, raw connection
 * breaks one invariant at a time behind the store's back (past the
 * triggers that would refuse it) and each breach must be named.
 *
 * Each scenario runs on both stores, with the same expected lines: suite
 * "check" on SQLite, suite "check_pg" on PostgreSQL, in a fresh schema of
 * the database FILA_PG_URL names (without it, check_pg is skipped).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "check.h"
#include "config.h"
#include "fixtures.h"
#include "store.h"
#include "uploads.h"
#include "util.h"

static char dir[64];
static char path[128];     /* SQLite: the store's file */
static const char *pg_url; /* PostgreSQL: the database, or NULL */
static char schema[32];    /* PostgreSQL: this test's schema */
static struct config cfg;
static int cfg_loaded;
static struct store *st;

/* The fixture's jobs: one per user, in these states. */
#define J_DONE "job_done"     /* alice, completed */
#define J_FAILED "job_failed" /* bob, failed and refunded */
#define J_CANCEL "job_cancel" /* carol, cancelled while queued */
#define J_RUN "job_run"       /* dave, running, holds a slot */
#define J_QUEUED "job_queued" /* erin, queued */

static struct store *
open_store(int64_t slots, int64_t per_user)
{
	struct store_opts o = {.slots = slots,
	    .per_user_active = per_user,
	    .credits_initial = 100,
	    .schema = schema};
	char err[256] = "";
	struct store *s;

	if (pg_url == NULL)
		return fx_store_open(path, &o);
	s = store_open(pg_url, &o, err, sizeof(err));
	cr_assert_not_null(s, "store_open: %s", err);
	return s;
}

/* The configuration check runs with: the built-in tools, our store. */
static void
load_config(const char *extra)
{
	char url[300], up[200], sch[64];
	char *sets[4] = {url, up};
	int n = 2;
	char err[512];

	if (cfg_loaded)
		config_cleanup(&cfg);
	if (pg_url != NULL) {
		snprintf(url, sizeof(url), "store.url=%s", pg_url);
		snprintf(sch, sizeof(sch), "store.schema=%s", schema);
		sets[n++] = sch;
	} else {
		snprintf(url, sizeof(url), "store.url=sqlite:%s", path);
	}
	snprintf(up, sizeof(up), "uploads.dir=%s/uploads", dir);
	if (extra != NULL)
		sets[n++] = (char *)extra;
	cr_assert_eq(config_load(&cfg, "/nonexistent/fila.conf", 1, sets, n,
	                 err, sizeof(err)),
	    0, "%s", err);
	cfg_loaded = 1;
}

/* An upload of user's for job, its bytes on disk; its id is "upl_<job>". */
static void
add_upload(const char *job, const char *user)
{
	static const unsigned char png[] = {
	    0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0};
	char id[64], name[80], sub[96], err[256];
	struct upload u = {0};

	snprintf(id, sizeof(id), "upl_%s", job);
	snprintf(name, sizeof(name), "%s.png", id);
	snprintf(sub, sizeof(sub), "%s/uploads", dir);
	u.path = uploads_save(sub, name, png, sizeof(png), err, sizeof(err));
	cr_assert_not_null(u.path, "%s", err);
	u.id = id;
	u.user_id = (char *)user;
	u.type = "png";
	u.size = sizeof(png);
	u.sha256 = "0";
	cr_assert_eq(store_upload_add(st, &u), STORE_OK, "%s", store_error(st));
	free(u.path);
}

static void
submit(const char *id, const char *user)
{
	char upl[64], token[64];
	json_t *inputs;
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = "upscaler",
	    .variant = "pro",
	    .cost = 10,
	    .webhook_token = token};
	struct job j;

	add_upload(id, user);
	snprintf(upl, sizeof(upl), "upl_%s", id);
	snprintf(token, sizeof(token), "tok_%s", id);
	inputs = json_pack("{s:s, s:i}", "image", upl, "resolution", 2048);
	in.inputs = inputs;
	cr_assert_eq(store_job_submit(st, &in, &j, NULL), STORE_OK, "%s",
	    store_error(st));
	job_cleanup(&j);
	json_decref(inputs);
}

static void
start(const char *id)
{
	struct job j;
	char task[64];

	cr_assert_eq(store_promote(st, &j), STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(j.id, id);
	job_cleanup(&j);
	snprintf(task, sizeof(task), "t_%s", id);
	cr_assert_eq(store_job_running(st, id, task, &j), STORE_OK);
	job_cleanup(&j);
}

static void
finish(const char *id, enum job_status to, int release)
{
	struct job j;
	json_t *outs = to == JOB_COMPLETED
	                   ? json_pack("[{s:s, s:s}]", "url", "http://x/o.png",
	                         "type", "png")
	                   : NULL;

	cr_assert_eq(
	    store_job_finish(st, id, to,
	        to == JOB_COMPLETED ? NULL : JOB_ERR_PROVIDER,
	        to == JOB_COMPLETED ? NULL : "boom", outs, release, &j),
	    STORE_OK, "%s", store_error(st));
	job_cleanup(&j);
	json_decref(outs);
}

/* The fixture's store, in the directory made for the test. */
static void
fixture(void)
{
	int64_t bal;

	fx_tmpdir(dir, sizeof(dir), "check");
	snprintf(path, sizeof(path), "%s/fila.db", dir);
	load_config(NULL);
	st = open_store(3, 1);

	submit(J_DONE, "alice");
	start(J_DONE);
	finish(J_DONE, JOB_COMPLETED, 1);
	cr_assert_eq(
	    store_user_grant(st, "alice", 50, "bonus", &bal), STORE_OK);
	submit(J_FAILED, "bob");
	start(J_FAILED);
	finish(J_FAILED, JOB_FAILED, 1);
	submit(J_RUN, "dave");
	start(J_RUN);
	submit(J_CANCEL, "carol");
	finish(J_CANCEL, JOB_CANCELLED, 1);
	submit(J_QUEUED, "erin");
}

static void
setup(void)
{
	pg_url = NULL;
	fixture();
}

/* sql on a connection of our own to the test's database (as the
 * schema's owner, a superuser: scripts/pg's "fila"), in its schema;
 * with unguarded, triggers (and foreign keys) are not run. */
static void
pg_exec(const char *sql, int unguarded)
{
	PGconn *db = PQconnectdb(pg_url);
	char *text;
	PGresult *r;

	cr_assert_eq(PQstatus(db), CONNECTION_OK, "%s", PQerrorMessage(db));
	text = xasprintf(
	    "SET client_min_messages = warning; SET search_path = %s;%s %s",
	    schema, unguarded ? " SET session_replication_role = replica;" : "",
	    sql);
	r = PQexec(db, text);
	cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK ||
	              PQresultStatus(r) == PGRES_TUPLES_OK,
	    "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(db);
	free(text);
}

/* The same fixture on PostgreSQL, in a schema of its own. */
static void
setup_pg(void)
{
	char hex[13];

	pg_url = getenv("FILA_PG_URL");
	if (pg_url == NULL || *pg_url == '\0')
		cr_assert_fail("FILA_PG_URL is not set: run the unit tests with"
		               " scripts/with-pg (make unit does)");
	random_hex(hex, 6);
	snprintf(schema, sizeof(schema), "t_check_%s", hex);
	fixture();
}

static void
teardown(void)
{
	char *drop;

	store_free(st);
	st = NULL;
	if (cfg_loaded)
		config_cleanup(&cfg);
	cfg_loaded = 0;
	if (pg_url != NULL && schema[0] != '\0') {
		drop = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE", schema);
		pg_exec(drop, 0);
		free(drop);
	}
	schema[0] = '\0';
	fx_rmtree(dir);
}

TestSuite(check, .init = setup, .fini = teardown);
TestSuite(check_pg, .init = setup_pg, .fini = teardown);

/* A scenario of both stores: Test(check, name) and Test(check_pg, name)
 * run the one body that follows. */
#define BOTH_STORES(name)                                                      \
	static void name(void);                                                \
	Test(check, name)                                                      \
	{                                                                      \
		name();                                                        \
	}                                                                      \
	Test(check_pg, name)                                                   \
	{                                                                      \
		name();                                                        \
	}                                                                      \
	static void name(void)

/* ---- helpers ------------------------------------------------------- */

/* check_store's answer; its whole output into *text (caller frees). */
static int
run_check(char **text)
{
	size_t len = 0;
	FILE *out = open_memstream(text, &len);
	int rc;

	cr_assert_not_null(out);
	rc = check_store(&cfg, out);
	fclose(out);
	return rc;
}

/* Run the check, want exactly `breaches`, and each line of `lines` in
 * the output. */
static void
expect(int breaches, const char *const *lines)
{
	char *text = NULL;
	int rc = run_check(&text);

	cr_expect_eq(rc, breaches, "check answered %d, want %d:\n%s", rc,
	    breaches, text);
	for (; lines && *lines; lines++)
		cr_expect_not_null(
		    strstr(text, *lines), "no \"%s\" in:\n%s", *lines, text);
	free(text);
}

#define LINES(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Run sql on a second connection, behind the store's back: on SQLite
 * lite, on PostgreSQL pg (NULL: lite too) with no trigger run. */
static void
raw2(const char *lite, const char *pg)
{
	sqlite3 *db;
	char *msg = NULL;

	if (pg_url != NULL) {
		pg_exec(pg ? pg : lite, 1);
		return;
	}
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, lite, NULL, NULL, &msg), SQLITE_OK,
	    "%s: %s", lite, msg ? msg : "?");
	sqlite3_close(db);
}

/* The same sql on both stores. */
static void
raw(const char *sql)
{
	raw2(sql, NULL);
}

/* Let a raw write past the trigger named (SQLite drops it; PostgreSQL's
 * raw writes run no trigger at all). */
static void
unguard(const char *trigger)
{
	char *sql = xasprintf("DROP TRIGGER %s", trigger);

	if (pg_url == NULL)
		raw(sql);
	free(sql);
}

/* The ledger without its UNIQUE (job_id, kind) and its triggers. */
static void
ledger_unguarded(void)
{
	raw2("CREATE TABLE l2 (id INTEGER PRIMARY KEY AUTOINCREMENT,"
	     " user_id TEXT, job_id TEXT, kind TEXT, amount INTEGER,"
	     " balance_after INTEGER, reason TEXT, at INTEGER);"
	     "INSERT INTO l2 SELECT * FROM ledger; DROP TABLE ledger;"
	     "ALTER TABLE l2 RENAME TO ledger;",
	    "ALTER TABLE ledger DROP CONSTRAINT ledger_job_id_kind_key");
}

/* ---- clean --------------------------------------------------------- */

BOTH_STORES(clean_store_has_no_breach)
{
	expect(0, LINES("check: 5 users, 5 jobs, 0 breaches\n"));
}

BOTH_STORES(clean_while_a_terminal_job_holds_its_slot_briefly)
{
	start(J_QUEUED);
	finish(J_QUEUED, JOB_CANCELLED, 0); /* provider cancel pending */
	expect(0, LINES("check: 5 users, 5 jobs, 0 breaches\n"));
}

/* ---- credits ------------------------------------------------------- */

BOTH_STORES(balance_changed)
{
	raw("UPDATE users SET balance = 80 WHERE id = 'alice'");
	expect(1, LINES("breach: user alice: grants - charges + refunds = 140,"
	                " balance = 80\n"));
}

BOTH_STORES(negative_balance)
{
	/* CHECK (balance >= 0) is a column constraint: rebuild without. */
	raw2("PRAGMA foreign_keys = OFF;"
	     "CREATE TABLE u2 AS SELECT * FROM users; DROP TABLE users;"
	     " ALTER TABLE u2 RENAME TO users;"
	     "UPDATE users SET balance = -5 WHERE id = 'carol'",
	    "ALTER TABLE users DROP CONSTRAINT users_balance_check;"
	    "UPDATE users SET balance = -5 WHERE id = 'carol'");
	expect(2, LINES("user carol: balance = -5, below 0",
	              "user carol: grants - charges + refunds = 100,"
	              " balance = -5"));
}

BOTH_STORES(missing_refund)
{
	unguard("ledger_no_delete");
	raw("DELETE FROM ledger WHERE job_id = '" J_FAILED "'"
	    " AND kind = 'refund'");
	/* The sum, the flag and the refund itself all disagree now. */
	expect(3, LINES("breach: job " J_FAILED " is failed and was charged,"
	                " but has no refund\n",
	              "job " J_FAILED ": refunded = 1, but the ledger has no"
	              " refund",
	              "user bob: grants - charges + refunds = 90"));
}

BOTH_STORES(second_charge)
{
	ledger_unguarded();
	raw("INSERT INTO ledger (user_id, job_id, kind, amount,"
	    " balance_after, at) VALUES ('alice', '" J_DONE "', 'charge',"
	    " -10, 130, 0)");
	expect(3, LINES("job " J_DONE ": 2 charge entries in the ledger",
	              "job " J_DONE ": charged = 1 with 2 charge entries",
	              "user alice: grants - charges + refunds = 130,"
	              " balance = 140"));
}

BOTH_STORES(refund_of_a_completed_job)
{
	raw("INSERT INTO ledger (user_id, job_id, kind, amount,"
	    " balance_after, at) VALUES ('alice', '" J_DONE "', 'refund',"
	    " 10, 150, 0)");
	expect(3, LINES("job " J_DONE " is completed but was refunded",
	              "job " J_DONE ": refunded = 0, but the ledger has a"
	              " refund",
	              "user alice: grants - charges + refunds = 150"));
}

BOTH_STORES(balance_after_out_of_line)
{
	unguard("ledger_no_update");
	raw("UPDATE ledger SET balance_after = 999 WHERE user_id = 'dave'"
	    " AND kind = 'grant'");
	expect(1, LINES("user dave: ledger entry ",
	              "has balance_after = 999, the entries up to it sum to"
	              " 100 (1 entries disagree)"));
}

BOTH_STORES(charge_of_the_wrong_amount)
{
	unguard("ledger_no_update");
	raw("UPDATE ledger SET amount = -7, balance_after = 93"
	    " WHERE job_id = '" J_QUEUED "' AND kind = 'charge'");
	expect(2, LINES("job " J_QUEUED ": charge of -7 for a cost of 10",
	              "user erin: grants - charges + refunds = 93"));
}

/* ---- slots --------------------------------------------------------- */

BOTH_STORES(slot_freed_under_a_running_job)
{
	unguard("slots_keep");
	raw("UPDATE slots SET job_id = NULL WHERE job_id = '" J_RUN "'");
	expect(
	    1, LINES("breach: job " J_RUN " is running but holds no slot\n"));
}

BOTH_STORES(more_running_than_slots)
{
	start(J_QUEUED);
	load_config("queue.slots=1");
	/* The store's one account still has 3 slots, 2 of them held. */
	expect(3, LINES("breach: the accounts have 3 slots in all,"
	                " queue.slots = 1\n",
	              "breach: 2 slots are held, queue.slots = 1\n",
	              "breach: 2 jobs are starting or running,"
	              " queue.slots = 1\n"));
}

BOTH_STORES(missing_slot_row)
{
	raw("DELETE FROM slots WHERE id = 2");
	expect(1, LINES("breach: slot 2 of account default is missing\n"));
}

BOTH_STORES(an_account_over_its_slots)
{
	/* The account shrank to 0 behind fila's back: dave's job holds one
	 * of its rows (held beyond, a warning), the two free rows are beyond
	 * it, and it holds more than it may. */
	raw("UPDATE accounts SET slots = 0");
	expect(
	    4, LINES("breach: the accounts have 0 slots in all,"
	             " queue.slots = 3\n",
	           "breach: slot 2 of account default is beyond its 0 slots\n",
	           "breach: slot 3 of account default is beyond its 0 slots\n",
	           "warning: slot 1 of account default beyond its 0 slots is"
	           " still held by job " J_RUN "\n",
	           "breach: account default holds 1 slots, its slots = 0\n"));
}

BOTH_STORES(a_job_on_another_accounts_slot)
{
	raw("UPDATE jobs SET account = 'other' WHERE id = '" J_RUN "'");
	expect(1, LINES("breach: job " J_RUN " is running on account other but"
	                " holds a slot of account default\n"));
}

BOTH_STORES(slot_held_by_a_queued_job)
{
	unguard("slots_take");
	raw("UPDATE slots SET job_id = '" J_QUEUED "' WHERE job_id IS NULL"
	    " AND id = (SELECT min(id) FROM slots WHERE job_id IS NULL)");
	expect(1, LINES("is held by job " J_QUEUED ", which is queued"));
}

BOTH_STORES(slot_kept_long_after_the_end_is_a_warning)
{
	start(J_QUEUED);
	finish(J_QUEUED, JOB_FAILED, 0);
	unguard("jobs_terminal");
	raw("UPDATE jobs SET finished_at = finished_at - 120000"
	    " WHERE id = '" J_QUEUED "'");
	expect(0, LINES("warning: slot ",
	              "still held by job " J_QUEUED ", failed 120 s ago\n",
	              "0 breaches, 1 warning\n"));
}

/* ---- stuck and per user -------------------------------------------- */

BOTH_STORES(stuck_jobs)
{
	raw("UPDATE jobs SET created_at = created_at - 700000"
	    " WHERE id = '" J_QUEUED "';"
	    "UPDATE jobs SET started_at = started_at - 700000"
	    " WHERE id = '" J_RUN "'");
	expect(2, LINES("job " J_QUEUED ": stuck, queued for 700 s"
	                " (queue.queue_timeout = 600 s)",
	              "job " J_RUN ": stuck, running for 700 s"
	              " (queue.run_timeout = 600 s)"));
}

BOTH_STORES(within_the_grace_is_not_stuck)
{
	raw("UPDATE jobs SET created_at = created_at - 630000"
	    " WHERE id = '" J_QUEUED "'");
	expect(0, NULL);
}

BOTH_STORES(two_active_jobs_of_one_user)
{
	store_free(st);
	st = open_store(3, 2);
	submit("job_erin_2", "erin");
	expect(1, LINES("breach: user erin has 2 active jobs,"
	                " queue.per_user_active = 1\n"));
}

/* ---- uploads ------------------------------------------------------- */

BOTH_STORES(missing_upload_file)
{
	char f[200];

	snprintf(f, sizeof(f), "%s/uploads/upl_" J_RUN ".png", dir);
	cr_assert_eq(unlink(f), 0);
	expect(1, LINES("breach: job " J_RUN ": upload upl_" J_RUN "'s file ",
	              "upl_" J_RUN ".png is missing\n"));
}

BOTH_STORES(missing_upload_row)
{
	load_config("limits.upload_retention=0");
	raw("DELETE FROM uploads WHERE id = 'upl_" J_CANCEL "'");
	expect(
	    1, LINES("job " J_CANCEL ": input image names upload upl_" J_CANCEL
	             ", which does not exist"));
}

BOTH_STORES(a_swept_upload_is_no_breach)
{
	/* With a retention, the sweep takes uploads away: an ended job's is
	 * gone as it should be; a waiting job's is worth a warning. */
	load_config("limits.upload_retention=60");
	raw("DELETE FROM uploads WHERE id IN ('upl_" J_CANCEL
	    "', 'upl_" J_QUEUED "')");
	expect(0, LINES("warning: job " J_QUEUED ": input image names upload"
	                " upl_" J_QUEUED ", which does not exist"));
}

BOTH_STORES(upload_of_another_user)
{
	raw("UPDATE uploads SET user_id = 'bob' WHERE id = 'upl_" J_RUN "'");
	expect(1, LINES("job " J_RUN " of user dave: input image names upload"
	                " upl_" J_RUN " of user bob"));
}

/* ---- the event log ------------------------------------------------- */

/* PostgreSQL numbers events from a sequence. */
#define PG_EVENT_INSERT                                                        \
	"INSERT INTO events (id, job_id, user_id, data, at, seq, status)"      \
	" SELECT nextval('events_ids'), "

BOTH_STORES(event_after_a_terminal_one)
{
	raw2("INSERT INTO events (job_id, user_id, data, at, seq, status)"
	     " SELECT job_id, user_id, json_set(data, '$.status', 'running'),"
	     " at, seq, 'running' FROM events WHERE job_id = '" J_DONE "'"
	     " ORDER BY id DESC LIMIT 1",
	    PG_EVENT_INSERT "job_id, user_id, jsonb_set(data::jsonb,"
	                    " '{status}', '\"running\"')::text, at, seq,"
	                    " 'running' FROM events WHERE job_id = '" J_DONE
	                    "' ORDER BY id DESC LIMIT 1");
	expect(2, LINES("job " J_DONE ": event ", "says running after event ",
	              "said completed",
	              "job " J_DONE " is completed but its last event"));
}

BOTH_STORES(a_repeated_terminal_event_is_allowed)
{
	raw2("INSERT INTO events (job_id, user_id, data, at, seq, status)"
	     " SELECT job_id, user_id, data, at, seq, status FROM events"
	     " WHERE job_id = '" J_DONE "' ORDER BY id DESC LIMIT 1",
	    PG_EVENT_INSERT "job_id, user_id, data, at, seq, status FROM"
	                    " events WHERE job_id = '" J_DONE "'"
	                    " ORDER BY id DESC LIMIT 1");
	expect(0, NULL);
}

BOTH_STORES(last_event_disagrees)
{
	raw("DELETE FROM events WHERE id = (SELECT max(id) FROM events"
	    " WHERE job_id = '" J_RUN "')");
	expect(1, LINES("job " J_RUN " is running but its last event ",
	              "says starting"));
}

BOTH_STORES(job_without_events_and_malformed_event)
{
	raw2("DELETE FROM events WHERE job_id = '" J_QUEUED "';"
	     "INSERT INTO events (job_id, user_id, data, at, seq, status)"
	     " SELECT '" J_CANCEL "', 'carol', '{not json', 0, seq, NULL"
	     " FROM jobs WHERE id = '" J_CANCEL "'",
	    "DELETE FROM events WHERE job_id = '" J_QUEUED "';" PG_EVENT_INSERT
	    "'" J_CANCEL "', 'carol', '{not json', 0, seq, 'cancelled'"
	    " FROM jobs WHERE id = '" J_CANCEL "'");
	/* PostgreSQL's events have a status (NOT NULL), which the malformed
	 * one does not show: a third breach. */
	expect(pg_url ? 3 : 2,
	    LINES("job " J_QUEUED " is queued but its last event (none)"
	          " says nothing",
	        "of job " J_CANCEL " is not a JSON job with a status"));
	if (pg_url != NULL)
		expect(3, LINES("of job " J_CANCEL " is filed as cancelled but"
		                " shows \n"));
}

/* The queue's order is followed from each event's seq and status. */
BOTH_STORES(event_filed_with_another_status)
{
	raw("UPDATE events SET status = 'queued' WHERE id = (SELECT max(id)"
	    " FROM events WHERE job_id = '" J_RUN "')");
	expect(
	    1, LINES("of job " J_RUN " is filed as queued but shows running"));
}

BOTH_STORES(event_filed_at_another_seq)
{
	raw("UPDATE events SET seq = 999 WHERE id = (SELECT min(id)"
	    " FROM events WHERE job_id = '" J_QUEUED "')");
	expect(1, LINES("of job " J_QUEUED " is filed at seq 999, the job is"
	                " at seq "));
}

Test(check, another_schema_version_is_not_checked)
{
	char *text = NULL;

	raw("DELETE FROM schema_version WHERE version > 1");
	cr_assert_eq(run_check(&text), -1, "%s", text);
	cr_assert_not_null(strstr(text, "the store's schema is version 1, this"
	                                " check reads version 8: start fila"
	                                " serve once to bring it up"),
	    "%s", text);
	free(text);
}

Test(check_pg, another_schema_version_is_not_checked)
{
	char *text = NULL;

	raw("DELETE FROM schema_version");
	cr_assert_eq(run_check(&text), -1, "%s", text);
	cr_assert_not_null(strstr(text, "the store's schema is version 0, this"
	                                " check reads version 2: start fila"
	                                " serve once to bring it up"),
	    "%s", text);
	free(text);
}

BOTH_STORES(job_counts_disagree)
{
	raw2("UPDATE job_counts SET n = n + 2 WHERE status = 'running';"
	     "INSERT INTO job_counts VALUES ('ghost', 'queued', 1);",
	    "UPDATE job_counts SET n = n + 2 WHERE status = 'running';"
	    "INSERT INTO job_counts VALUES ('ghost', 'queued', 0, 1);");
	expect(
	    2, LINES("job_counts has ", "running jobs of ",
	           "job_counts has 1 queued jobs of ghost, the jobs table 0"));
}

/* PostgreSQL's counts are shards: their sum is the count. */
Test(check_pg, job_counts_in_shards_are_summed)
{
	raw("INSERT INTO job_counts VALUES ('upscaler', 'running', 101, 4),"
	    " ('upscaler', 'running', 102, -4),"
	    " ('upscaler', 'queued', 101, -1), ('ghost', 'failed', 101, 1),"
	    " ('ghost', 'failed', 102, -1)");
	expect(1, LINES("breach: job_counts has 0 queued jobs of upscaler, the"
	                " jobs table 1\n"));
}

/* ---- what cannot be checked ---------------------------------------- */

Test(check, postgres_unreachable)
{
	char *text = NULL;

	load_config("store.url=postgres://u:secret@127.0.0.1:1/fila");
	cr_expect_eq(run_check(&text), -1);
	cr_expect_eq(strncmp(text, "check: postgres: ", 17), 0, "%s", text);
	cr_expect_null(strstr(text, "secret"), "%s", text);
	free(text);
}

Test(check, missing_file)
{
	char *text = NULL, set[200];

	snprintf(set, sizeof(set), "store.url=sqlite:%s/nothing.db", dir);
	load_config(set);
	cr_expect_eq(run_check(&text), -1);
	cr_expect_not_null(strstr(text, "nothing.db"), "%s", text);
	cr_expect_eq(access(set + strlen("store.url=sqlite:"), F_OK), -1,
	    "the check created the file");
	free(text);
}

Test(check, not_a_store)
{
	char *text = NULL, set[200], other[160];

	snprintf(other, sizeof(other), "%s/other.db", dir);
	snprintf(set, sizeof(set), "store.url=sqlite:%s", other);
	{
		sqlite3 *db;
		cr_assert_eq(sqlite3_open(other, &db), SQLITE_OK);
		sqlite3_exec(db, "CREATE TABLE t (x)", NULL, NULL, NULL);
		sqlite3_close(db);
	}
	load_config(set);
	cr_expect_eq(run_check(&text), -1);
	cr_expect_not_null(strstr(text, "is not a fila store"), "%s", text);
	free(text);
}

Test(check_pg, not_a_store)
{
	char *text = NULL, set[200];

	snprintf(set, sizeof(set), "store.schema=%s_none", schema);
	load_config(set);
	cr_expect_eq(run_check(&text), -1);
	cr_expect_not_null(strstr(text, "is not a fila store"), "%s", text);
	free(text);
}
