/*
 * test_check.c — `fila check` (src/check.c) on a store built through the
 * real store API: clean, it finds nothing; then a second, raw sqlite3
 * connection breaks one invariant at a time behind the store's back
 * (dropping the triggers that would refuse it) and each breach must be
 * named.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "config.h"
#include "fixtures.h"
#include "store.h"
#include "uploads.h"
#include "util.h"

static char dir[64];
static char path[128];
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
	struct store_opts o = {slots, per_user, 100};

	return fx_store_open(path, &o);
}

/* The configuration check runs with: the built-in tools, our store. */
static void
load_config(const char *extra)
{
	char url[200], up[200];
	char *sets[3] = {url, up, (char *)extra};
	char err[512];

	if (cfg_loaded)
		config_cleanup(&cfg);
	snprintf(url, sizeof(url), "store.url=sqlite:%s", path);
	snprintf(up, sizeof(up), "uploads.dir=%s/uploads", dir);
	cr_assert_eq(config_load(&cfg, "/nonexistent/fila.conf", 1, sets,
	                 extra ? 3 : 2, err, sizeof(err)),
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

static void
setup(void)
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
teardown(void)
{
	store_free(st);
	st = NULL;
	if (cfg_loaded)
		config_cleanup(&cfg);
	cfg_loaded = 0;
	fx_rmtree(dir);
}

TestSuite(check, .init = setup, .fini = teardown);

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

/* Run sql on a second connection, behind the store's back. */
static void
raw(const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;

	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK,
	    "%s: %s", sql, msg ? msg : "?");
	sqlite3_close(db);
}

/* The ledger without its UNIQUE (job_id, kind) and its triggers. */
static void
ledger_unguarded(void)
{
	raw("CREATE TABLE l2 (id INTEGER PRIMARY KEY AUTOINCREMENT,"
	    " user_id TEXT, job_id TEXT, kind TEXT, amount INTEGER,"
	    " balance_after INTEGER, reason TEXT, at INTEGER);"
	    "INSERT INTO l2 SELECT * FROM ledger; DROP TABLE ledger;"
	    "ALTER TABLE l2 RENAME TO ledger;");
}

/* ---- clean --------------------------------------------------------- */

Test(check, clean_store_has_no_breach)
{
	expect(0, LINES("check: 5 users, 5 jobs, 0 breaches\n"));
}

Test(check, clean_while_a_terminal_job_holds_its_slot_briefly)
{
	start(J_QUEUED);
	finish(J_QUEUED, JOB_CANCELLED, 0); /* provider cancel pending */
	expect(0, LINES("check: 5 users, 5 jobs, 0 breaches\n"));
}

/* ---- credits ------------------------------------------------------- */

Test(check, balance_changed)
{
	raw("UPDATE users SET balance = 80 WHERE id = 'alice'");
	expect(1, LINES("breach: user alice: grants - charges + refunds = 140,"
	                " balance = 80\n"));
}

Test(check, negative_balance)
{
	/* CHECK (balance >= 0) is a column constraint: rebuild without. */
	raw("PRAGMA foreign_keys = OFF;"
	    "CREATE TABLE u2 AS SELECT * FROM users; DROP TABLE users;"
	    " ALTER TABLE u2 RENAME TO users;"
	    "UPDATE users SET balance = -5 WHERE id = 'carol'");
	expect(2, LINES("user carol: balance = -5, below 0",
	              "user carol: grants - charges + refunds = 100,"
	              " balance = -5"));
}

Test(check, missing_refund)
{
	raw("DROP TRIGGER ledger_no_delete;"
	    "DELETE FROM ledger WHERE job_id = '" J_FAILED "'"
	    " AND kind = 'refund'");
	/* The sum, the flag and the refund itself all disagree now. */
	expect(3, LINES("breach: job " J_FAILED " is failed and was charged,"
	                " but has no refund\n",
	              "job " J_FAILED ": refunded = 1, but the ledger has no"
	              " refund",
	              "user bob: grants - charges + refunds = 90"));
}

Test(check, second_charge)
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

Test(check, refund_of_a_completed_job)
{
	raw("INSERT INTO ledger (user_id, job_id, kind, amount,"
	    " balance_after, at) VALUES ('alice', '" J_DONE "', 'refund',"
	    " 10, 150, 0)");
	expect(3, LINES("job " J_DONE " is completed but was refunded",
	              "job " J_DONE ": refunded = 0, but the ledger has a"
	              " refund",
	              "user alice: grants - charges + refunds = 150"));
}

Test(check, balance_after_out_of_line)
{
	raw("DROP TRIGGER ledger_no_update;"
	    "UPDATE ledger SET balance_after = 999 WHERE user_id = 'dave'"
	    " AND kind = 'grant'");
	expect(1, LINES("user dave: ledger entry ",
	              "has balance_after = 999, the entries up to it sum to"
	              " 100 (1 entries disagree)"));
}

Test(check, charge_of_the_wrong_amount)
{
	raw("DROP TRIGGER ledger_no_update;"
	    "UPDATE ledger SET amount = -7, balance_after = 93"
	    " WHERE job_id = '" J_QUEUED "' AND kind = 'charge'");
	expect(2, LINES("job " J_QUEUED ": charge of -7 for a cost of 10",
	              "user erin: grants - charges + refunds = 93"));
}

/* ---- slots --------------------------------------------------------- */

Test(check, slot_freed_under_a_running_job)
{
	raw("DROP TRIGGER slots_keep;"
	    "UPDATE slots SET job_id = NULL WHERE job_id = '" J_RUN "'");
	expect(
	    1, LINES("breach: job " J_RUN " is running but holds no slot\n"));
}

Test(check, more_running_than_slots)
{
	start(J_QUEUED);
	load_config("queue.slots=1");
	/* Slot 1 is dave's, slot 2 erin's: held beyond the count, a
	 * warning; slot 3 is free beyond it, a breach. */
	expect(3, LINES("breach: slot 3 is beyond queue.slots = 1\n",
	              "warning: slot 2 beyond queue.slots = 1 is still held by"
	              " job " J_QUEUED "\n",
	              "breach: 2 slots are held, queue.slots = 1\n",
	              "breach: 2 jobs are starting or running,"
	              " queue.slots = 1\n"));
}

Test(check, missing_slot_row)
{
	raw("DELETE FROM slots WHERE id = 2");
	expect(1, LINES("breach: slot 2 of 3 is missing\n"));
}

Test(check, slot_held_by_a_queued_job)
{
	raw("DROP TRIGGER slots_take;"
	    "UPDATE slots SET job_id = '" J_QUEUED "' WHERE job_id IS NULL"
	    " AND id = (SELECT min(id) FROM slots WHERE job_id IS NULL)");
	expect(1, LINES("is held by job " J_QUEUED ", which is queued"));
}

Test(check, slot_kept_long_after_the_end_is_a_warning)
{
	start(J_QUEUED);
	finish(J_QUEUED, JOB_FAILED, 0);
	raw("DROP TRIGGER jobs_terminal;"
	    "UPDATE jobs SET finished_at = finished_at - 120000"
	    " WHERE id = '" J_QUEUED "'");
	expect(0, LINES("warning: slot ",
	              "still held by job " J_QUEUED ", failed 120 s ago\n",
	              "0 breaches, 1 warning\n"));
}

/* ---- stuck and per user -------------------------------------------- */

Test(check, stuck_jobs)
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

Test(check, within_the_grace_is_not_stuck)
{
	raw("UPDATE jobs SET created_at = created_at - 630000"
	    " WHERE id = '" J_QUEUED "'");
	expect(0, NULL);
}

Test(check, two_active_jobs_of_one_user)
{
	store_free(st);
	st = open_store(3, 2);
	submit("job_erin_2", "erin");
	expect(1, LINES("breach: user erin has 2 active jobs,"
	                " queue.per_user_active = 1\n"));
}

/* ---- uploads ------------------------------------------------------- */

Test(check, missing_upload_file)
{
	char f[200];

	snprintf(f, sizeof(f), "%s/uploads/upl_" J_RUN ".png", dir);
	cr_assert_eq(unlink(f), 0);
	expect(1, LINES("breach: job " J_RUN ": upload upl_" J_RUN "'s file ",
	              "upl_" J_RUN ".png is missing\n"));
}

Test(check, missing_upload_row)
{
	raw("DELETE FROM uploads WHERE id = 'upl_" J_CANCEL "'");
	expect(
	    1, LINES("job " J_CANCEL ": input image names upload upl_" J_CANCEL
	             ", which does not exist"));
}

Test(check, upload_of_another_user)
{
	raw("UPDATE uploads SET user_id = 'bob' WHERE id = 'upl_" J_RUN "'");
	expect(1, LINES("job " J_RUN " of user dave: input image names upload"
	                " upl_" J_RUN " of user bob"));
}

/* ---- the event log ------------------------------------------------- */

Test(check, event_after_a_terminal_one)
{
	raw("INSERT INTO events (job_id, user_id, data, at, seq, status)"
	    " SELECT job_id, user_id, json_set(data, '$.status', 'running'),"
	    " at, seq, 'running' FROM events WHERE job_id = '" J_DONE "'"
	    " ORDER BY id DESC LIMIT 1");
	expect(2, LINES("job " J_DONE ": event ", "says running after event ",
	              "said completed",
	              "job " J_DONE " is completed but its last event"));
}

Test(check, a_repeated_terminal_event_is_allowed)
{
	raw("INSERT INTO events (job_id, user_id, data, at, seq, status)"
	    " SELECT job_id, user_id, data, at, seq, status FROM events"
	    " WHERE job_id = '" J_DONE "' ORDER BY id DESC LIMIT 1");
	expect(0, NULL);
}

Test(check, last_event_disagrees)
{
	raw("DELETE FROM events WHERE id = (SELECT max(id) FROM events"
	    " WHERE job_id = '" J_RUN "')");
	expect(1, LINES("job " J_RUN " is running but its last event ",
	              "says starting"));
}

Test(check, job_without_events_and_malformed_event)
{
	raw("DELETE FROM events WHERE job_id = '" J_QUEUED "';"
	    "INSERT INTO events (job_id, user_id, data, at, seq, status)"
	    " SELECT '" J_CANCEL "', 'carol', '{not json', 0, seq, NULL"
	    " FROM jobs WHERE id = '" J_CANCEL "'");
	expect(2, LINES("job " J_QUEUED " is queued but its last event (none)"
	                " says nothing",
	              "of job " J_CANCEL " is not a JSON job with a status"));
}

/* The queue's order is followed from each event's seq and status. */
Test(check, event_filed_with_another_status)
{
	raw("UPDATE events SET status = 'queued' WHERE id = (SELECT max(id)"
	    " FROM events WHERE job_id = '" J_RUN "')");
	expect(
	    1, LINES("of job " J_RUN " is filed as queued but shows running"));
}

Test(check, event_filed_at_another_seq)
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
	                                " check reads version 5: start fila"
	                                " serve once to bring it up"),
	    "%s", text);
	free(text);
}

Test(check, job_counts_disagree)
{
	raw("UPDATE job_counts SET n = n + 2 WHERE status = 'running';"
	    "INSERT INTO job_counts VALUES ('ghost', 'queued', 1);");
	expect(
	    2, LINES("job_counts has ", "running jobs of ",
	           "job_counts has 1 queued jobs of ghost, the jobs table 0"));
}

/* ---- what cannot be checked ---------------------------------------- */

Test(check, postgres_is_not_supported_yet)
{
	char *text = NULL;

	load_config("store.url=postgres://u:p@localhost/fila");
	cr_expect_eq(run_check(&text), -1);
	cr_expect_str_eq(
	    text, "check: postgres stores are not supported yet\n");
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
