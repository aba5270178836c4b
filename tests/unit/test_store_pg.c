/*
 * test_store_pg.c — the PostgreSQL backend (store_pg.c) through store.h, on
 * the database FILA_PG_URL names (make unit sets it: scripts/with-pg). Each
 * test has a schema of its own, dropped after it, so tests run in parallel
 * and again. Where the schema is what protects a rule, a second, raw libpq
 * connection tries to break it behind the store's back; several handles,
 * and forked processes with handles of their own, race on one schema
 * (lined up, where a race needs an order, by a raw session holding a row).
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "fixtures.h"
#include "store.h"
#include "util.h"

#define MAX_SCHEMAS 8
#define MAX_HANDLES 8
#define MAX_CHILDREN 8

static const char *pg_url;
static char schemas[MAX_SCHEMAS][64]; /* made by this test, dropped after */
static int nschemas;
static const char *schema;                 /* the test's own: schemas[0] */
static struct store *handles[MAX_HANDLES]; /* freed after the test */
static struct store *st;                   /* on schema, opened by setup */
static PGconn *raw;                        /* behind the store's back */
static PGconn *holder;                     /* raw too, holding a lock */
static char raw_err[512];
static struct event_base *base; /* made by loop(), freed after the handles */

/* ---- schemas, handles, the raw connection ---------------------------- */

static int raw_exec(const char *sql);

/* A fresh schema name for this test, len bytes (0: as short as it comes):
 * t_<pid>_<n>, padded with x; dropped now if a killed test left it, and
 * by teardown. */
static const char *
new_schema_of(size_t len)
{
	char *name, *drop;
	int n;

	cr_assert_lt(nschemas, MAX_SCHEMAS);
	name = schemas[nschemas++];
	n = snprintf(
	    name, sizeof(schemas[0]), "t_%d_%d", (int)getpid(), nschemas);
	cr_assert_lt(len, sizeof(schemas[0]));
	if (len > (size_t)n) {
		memset(name + n, 'x', len - n);
		name[len] = '\0';
	}
	drop = xasprintf("DROP SCHEMA IF EXISTS %s CASCADE", name);
	cr_assert(raw_exec(drop), "%s", drop);
	free(drop);
	return name;
}

static const char *
new_schema(void)
{
	return new_schema_of(0);
}

static struct store *
track(struct store *s)
{
	for (int i = 0; i < MAX_HANDLES; i++)
		if (handles[i] == NULL)
			return handles[i] = s;
	cr_assert_fail("more than %d handles", MAX_HANDLES);
	return NULL;
}

/* Free handle s now (store_free), as a process that stops. */
static void
close_store(struct store *s)
{
	for (int i = 0; i < MAX_HANDLES; i++)
		if (handles[i] == s)
			handles[i] = NULL;
	if (s == st)
		st = NULL;
	store_free(s);
}

static struct store_opts
opts(int64_t slots, int64_t per_user, const char *process)
{
	struct store_opts o = {.slots = slots,
	    .per_user_active = per_user,
	    .credits_initial = 100,
	    .schema = schema,
	    .process = process};
	return o;
}

static struct store *
open_opts(const struct store_opts *o)
{
	char err[512] = "";
	struct store *s = store_open(pg_url, o, err, sizeof(err));

	cr_assert_not_null(s, "store_open (schema %s): %s", o->schema, err);
	return track(s);
}

/* A handle on the test's schema. */
static struct store *
open_with(int64_t slots, int64_t per_user, const char *process)
{
	struct store_opts o = opts(slots, per_user, process);
	return open_opts(&o);
}

/* Run sql on the raw connection: 1 done, 0 refused (why in raw_err). */
static int
raw_exec(const char *sql)
{
	PGresult *r = PQexec(raw, sql);
	int ok = PQresultStatus(r) == PGRES_COMMAND_OK ||
	         PQresultStatus(r) == PGRES_TUPLES_OK;

	snprintf(raw_err, sizeof(raw_err), "%s", PQresultErrorMessage(r));
	PQclear(r);
	return ok;
}

/* The first column of the first row of sql as text (caller frees). */
static char *
raw_text(const char *sql)
{
	PGresult *r = PQexec(raw, sql);
	char *v;

	cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s: %s", sql,
	    PQresultErrorMessage(r));
	cr_assert_gt(PQntuples(r), 0, "%s: no row", sql);
	v = xstrdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static int64_t
raw_int(const char *sql)
{
	char *t = raw_text(sql);
	int64_t v = strtoll(t, NULL, 10);

	free(t);
	return v;
}

static int64_t
count_of(const char *table)
{
	char sql[128];

	snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", table);
	return raw_int(sql);
}

/* sql must be refused, and for the reason why (a word of its error). */
static void
refused(const char *sql, const char *why)
{
	cr_assert_not(raw_exec(sql), "the database allowed: %s", sql);
	cr_assert(strstr(raw_err, why) != NULL,
	    "%s\nrefused, but not for \"%s\": %s", sql, why, raw_err);
}

static void
setup(void)
{
	char *sql;

	pg_url = getenv("FILA_PG_URL");
	cr_assert_not_null(pg_url, "FILA_PG_URL is not set: run the unit tests"
	                           " under scripts/with-pg (make unit does)");
	cr_assert(*pg_url, "FILA_PG_URL is empty");
	raw = PQconnectdb(pg_url);
	cr_assert_eq(PQstatus(raw), CONNECTION_OK, "FILA_PG_URL: %s",
	    PQerrorMessage(raw));
	cr_assert(raw_exec("SET client_min_messages = warning;"
	                   " SET lock_timeout = '10s'"),
	    "%s", raw_err);
	schema = new_schema();
	sql = xasprintf("SET search_path = %s", schema);
	cr_assert(raw_exec(sql), "%s", raw_err);
	free(sql);
	st = open_with(3, 1, NULL);
}

static void race_kill(void);

static void
teardown(void)
{
	race_kill();
	for (int i = 0; i < MAX_HANDLES; i++) {
		store_free(handles[i]);
		handles[i] = NULL;
	}
	st = NULL;
	PQfinish(holder); /* its locks go before the schemas */
	holder = NULL;
	if (base)
		event_base_free(base);
	base = NULL;
	for (int i = 0; raw && i < nschemas; i++) {
		char *sql =
		    xasprintf("DROP SCHEMA IF EXISTS %s CASCADE", schemas[i]);
		if (!raw_exec(sql))
			fprintf(stderr, "test_store_pg: %s: %s", sql, raw_err);
		free(sql);
	}
	nschemas = 0;
	PQfinish(raw);
	raw = NULL;
}

TestSuite(store_pg, .init = setup, .fini = teardown);

/* ---- the store's calls, in a word ------------------------------------ */

static enum store_rc
submit_to(struct store *s, const char *id, const char *user, const char *tool,
    const char *idem, struct job *out)
{
	char token[64];
	json_t *inputs = json_pack("{s:s, s:i}", "prompt", "a cat", "n", 2);
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = tool,
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = 10,
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

/* Submit id for user (cost 10) and check it went in, at position. */
static void
submit_at(struct store *s, const char *id, const char *user, int64_t position)
{
	struct job j;

	cr_assert_eq(submit_to(s, id, user, "upscaler", NULL, &j), STORE_OK,
	    "submit %s: %s", id, store_error(s));
	cr_assert_eq(j.position, position, "%s", id);
	job_cleanup(&j);
}

static void
submit_ok(struct store *s, const char *id, const char *user)
{
	struct job j;

	cr_assert_eq(submit_to(s, id, user, "upscaler", NULL, &j), STORE_OK,
	    "submit %s: %s", id, store_error(s));
	job_cleanup(&j);
}

/* Submit n jobs <prefix><i>, one user each (<prefix>u<i>). */
static void
submit_n(struct store *s, const char *prefix, int n)
{
	for (int i = 0; i < n; i++) {
		char id[32], user[32];
		snprintf(id, sizeof(id), "%s%02d", prefix, i);
		snprintf(user, sizeof(user), "%su%02d", prefix, i);
		submit_ok(s, id, user);
	}
}

static void
promote_ok(struct store *s, const char *want)
{
	struct job j;

	cr_assert_eq(
	    store_promote(s, &j), STORE_OK, "promote: %s", store_error(s));
	cr_assert_str_eq(j.id, want);
	cr_assert_eq(j.status, JOB_STARTING);
	job_cleanup(&j);
}

/* Promote (want must come next), then running with task "t_<id>". */
static void
run_next(struct store *s, const char *want)
{
	char task[64];
	struct job j;

	promote_ok(s, want);
	snprintf(task, sizeof(task), "t_%s", want);
	cr_assert_eq(store_job_running(s, want, task, &j), STORE_OK);
	job_cleanup(&j);
}

static enum store_rc
finish(struct store *s, const char *id, enum job_status to, int release,
    struct job *out)
{
	return store_job_finish(s, id, to,
	    to == JOB_COMPLETED ? NULL : JOB_ERR_PROVIDER,
	    to == JOB_COMPLETED ? NULL : "boom", NULL, release, out);
}

static void
finish_ok(struct store *s, const char *id, enum job_status to, int release)
{
	struct job j;

	cr_assert_eq(finish(s, id, to, release, &j), STORE_OK, "finish %s: %s",
	    id, store_error(s));
	job_cleanup(&j);
}

static int64_t
balance_of(struct store *s, const char *user)
{
	int64_t b = -1;

	cr_assert_eq(
	    store_user_balance(s, user, &b), STORE_OK, "%s", store_error(s));
	return b;
}

static enum job_status
status_of(struct store *s, const char *id)
{
	struct job j;
	enum job_status v;

	cr_assert_eq(store_job_get(s, id, NULL, &j), STORE_OK, "%s", id);
	v = j.status;
	job_cleanup(&j);
	return v;
}

static int64_t
position_of(struct store *s, const char *id)
{
	struct job j;
	int64_t p;

	cr_assert_eq(store_job_get(s, id, NULL, &j), STORE_OK, "%s", id);
	p = j.position;
	job_cleanup(&j);
	return p;
}

static int64_t
used_slots(struct store *s)
{
	int64_t used = -1;

	cr_assert_eq(store_slots_used(s, &used), STORE_OK);
	return used;
}

/* Ledger rows of kind for job id. */
static int64_t
ledger_rows(const char *id, const char *kind)
{
	char *sql = xasprintf("SELECT count(*) FROM ledger WHERE job_id = '%s'"
	                      " AND kind = '%s'",
	    id, kind);
	int64_t n = raw_int(sql);

	free(sql);
	return n;
}

/* ---- the loop, for what comes from it ------------------------------- */

static struct event_base *
loop(void)
{
	if (base == NULL)
		base = event_base_new();
	cr_assert_not_null(base);
	return base;
}

/* Run the loop until cond holds or ms have passed. */
#define SPIN_UNTIL(cond, ms)                                                   \
	do {                                                                   \
		int64_t end_ = mono_ms() + (ms);                               \
		while (!(cond) && mono_ms() < end_) {                          \
			event_base_loop(loop(), EVLOOP_NONBLOCK);              \
			usleep(2000);                                          \
		}                                                              \
	} while (0)

static int commits;
static void
count_commit(void *arg)
{
	(*(int *)arg)++;
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

/* ---- processes -------------------------------------------------------- */

static pid_t kids[MAX_CHILDREN]; /* 0: ended and waited for */
static int nkids;

/*
 * Fork n children. Each opens a handle of its own with o (none when o is
 * NULL), then, once all are ready, runs fn(s, i, arg) once: its answer is
 * the child's exit code.
 */
static void
race_start(int n, const struct store_opts *o,
    int (*fn)(struct store *s, int i, void *arg), void *arg)
{
	int ready[2], go[2];
	char c;

	cr_assert_leq(n, MAX_CHILDREN);
	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(go), 0);
	fflush(NULL);
	for (nkids = 0; nkids < n; nkids++) {
		pid_t pid = fork();
		cr_assert_neq(pid, -1);
		if (pid == 0) {
			char err[512];
			struct store *s =
			    o ? store_open(pg_url, o, err, sizeof(err)) : NULL;
			int code = 99;
			close(ready[0]);
			close(go[1]);
			if (o && s == NULL)
				fprintf(stderr, "child %d: %s\n", nkids, err);
			if (write(ready[1], "r", 1) == 1 &&
			    read(go[0], &c, 1) == 0 && (o == NULL || s))
				code = fn(s, nkids, arg);
			store_free(s);
			_exit(code);
		}
		kids[nkids] = pid;
	}
	close(ready[1]);
	close(go[0]);
	for (int i = 0; i < n; i++)
		if (read(ready[0], &c, 1) != 1)
			break; /* a child died: its exit code tells */
	close(ready[0]);
	close(go[1]); /* EOF: go */
}

static int
exit_code(int status)
{
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* 1 when child i has ended (its exit code in codes[i]); with wait, wait
 * for it. */
static int
kid_ended(int i, int *codes, int wait)
{
	int status;

	if (kids[i] &&
	    waitpid(kids[i], &status, wait ? 0 : WNOHANG) == kids[i]) {
		codes[i] = exit_code(status);
		kids[i] = 0;
	}
	return kids[i] == 0;
}

/* 1 when every child has ended (their exit codes in codes); with wait,
 * wait for them. */
static int
race_ended(int *codes, int wait)
{
	int left = 0;

	for (int i = 0; i < nkids; i++)
		left += !kid_ended(i, codes, wait);
	return left == 0;
}

static void
race_wait(int *codes)
{
	cr_assert(race_ended(codes, 1));
}

/* What a failed test left running. */
static void
race_kill(void)
{
	for (int i = 0; i < nkids; i++)
		if (kids[i]) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
			kids[i] = 0;
		}
	nkids = 0;
}

/* ---- open, migrate, slots ------------------------------------------- */

/* What lives in the public schema and the database at large. */
static const char public_sql[] =
    "SELECT count(*) || ': ' || coalesce(string_agg(x, ', ' ORDER BY x), '')"
    " FROM (SELECT 'c ' || relname AS x FROM pg_class"
    " WHERE relnamespace = 'public'::regnamespace"
    " UNION ALL SELECT 'f ' || proname FROM pg_proc"
    " WHERE pronamespace = 'public'::regnamespace"
    " UNION ALL SELECT 't ' || typname FROM pg_type"
    " WHERE typnamespace = 'public'::regnamespace"
    " UNION ALL SELECT 'e ' || evtname FROM pg_event_trigger"
    " UNION ALL SELECT 'x ' || extname FROM pg_extension) o";

/* Everything in schema s, with its oid: a change of any shows. */
static char *
objects_of(const char *s)
{
	char *sql = xasprintf(
	    "SELECT count(*) || ':' || string_agg(x, ',' ORDER BY x) FROM"
	    " (SELECT 'c ' || relname || ' ' || oid AS x FROM pg_class"
	    " WHERE relnamespace = '%s'::regnamespace"
	    " UNION ALL SELECT 'f ' || proname || ' ' || oid FROM pg_proc"
	    " WHERE pronamespace = '%s'::regnamespace"
	    " UNION ALL SELECT 'g ' || tgname || ' ' || t.oid FROM pg_trigger t"
	    " JOIN pg_class c ON c.oid = t.tgrelid"
	    " WHERE c.relnamespace = '%s'::regnamespace) o",
	    s, s, s);
	char *v = raw_text(sql);

	free(sql);
	return v;
}

Test(store_pg, open_creates_its_schema_and_nothing_outside)
{
	static const char *const tables[] = {"users", "ledger", "uploads",
	    "jobs", "accounts", "slots", "events", "callbacks", "job_counts",
	    "processes", "outbox", "outputs", "settings", "schema_version"};
	char *before = raw_text(public_sql), *after, *sql;
	struct store_opts o = opts(3, 1, NULL);

	o.schema = new_schema();
	open_opts(&o);
	after = raw_text(public_sql);
	cr_assert_str_eq(after, before, "the public schema changed");
	for (size_t i = 0; i < sizeof(tables) / sizeof(*tables); i++) {
		sql = xasprintf("SELECT count(*) FROM pg_class WHERE relname ="
		                " '%s' AND relnamespace = '%s'::regnamespace",
		    tables[i], o.schema);
		cr_assert_eq(raw_int(sql), 1, "table %s", tables[i]);
		free(sql);
	}
	sql = xasprintf("SELECT count(*) FROM pg_proc WHERE proname IN"
	                " ('fila_submit', 'fila_promote', 'fila_append',"
	                " 'jobs_check') AND pronamespace = '%s'::regnamespace",
	    o.schema);
	cr_assert_eq(raw_int(sql), 4);
	free(sql);
	free(before);
	free(after);
}

Test(store_pg, reopening_changes_nothing)
{
	char *before, *after;
	struct job j;

	submit_ok(st, "job_1", "alice");
	int64_t versions = count_of("schema_version");
	cr_assert_geq(versions, 1);
	cr_assert_eq(raw_int("SELECT max(version) FROM schema_version"),
	    versions, "one row per migration");
	before = objects_of(schema);
	close_store(st);

	st = open_with(3, 1, NULL);
	after = objects_of(schema);
	cr_assert_str_eq(after, before, "reopening made or remade something");
	cr_assert_eq(count_of("schema_version"), versions);
	cr_assert_eq(store_job_get(st, "job_1", "alice", &j), STORE_OK);
	cr_assert_eq(j.status, JOB_QUEUED);
	cr_assert_eq(j.position, 1, "the queue's order is built again");
	job_cleanup(&j);
	cr_assert_eq(balance_of(st, "alice"), 90);
	free(before);
	free(after);
}

Test(store_pg, a_newer_schema_is_refused)
{
	struct store_opts o = opts(3, 1, NULL);
	char err[512] = "";

	close_store(st);
	cr_assert(raw_exec("INSERT INTO schema_version"
	                   " SELECT max(version) + 1, 0 FROM schema_version"),
	    "%s", raw_err);
	cr_assert_null(store_open(pg_url, &o, err, sizeof(err)));
	cr_assert(strstr(err, "newer") != NULL, "%s", err);
	cr_assert_eq(raw_int("SELECT count(*) - max(version) FROM"
	                     " schema_version"),
	    0, "nothing was undone");
}

Test(store_pg, schema_names_fit_a_channel)
{
	char name[64], err[512] = "";
	struct store_opts o = opts(3, 1, NULL);
	char *sql;

	memset(name, 'n', 59);
	name[59] = '\0';
	o.schema = name;
	cr_assert_null(store_open(pg_url, &o, err, sizeof(err)));
	cr_assert(strstr(err, "store.schema") != NULL, "%s", err);
	cr_assert(strstr(err, "58") != NULL, "%s", err);
	sql = xasprintf(
	    "SELECT count(*) FROM pg_namespace WHERE nspname = '%s'", name);
	cr_assert_eq(raw_int(sql), 0, "nothing made");
	free(sql);

	/* 58 bytes: "fila_" and the name are a channel of 63 bytes. */
	o.schema = new_schema_of(58);
	open_opts(&o);
}

Test(store_pg, either_url_scheme_selects_postgres)
{
	struct store_opts o = opts(3, 1, NULL);
	char err[512] = "", *url;
	struct store *s;

	if (strncmp(pg_url, "postgresql://", 13) == 0)
		url = xasprintf("postgres://%s", pg_url + 13);
	else if (strncmp(pg_url, "postgres://", 11) == 0)
		url = xasprintf("postgresql://%s", pg_url + 11);
	else
		cr_assert_fail("FILA_PG_URL is not a URL: %s", pg_url);
	s = store_open(url, &o, err, sizeof(err));
	free(url);
	cr_assert_not_null(s, "%s", err);
	track(s);
	submit_ok(st, "job_1", "alice");
	cr_assert_eq(status_of(s, "job_1"), JOB_QUEUED);
}

/* A role that may not create schemas, owning one made for it (as
 * docs/operating.md says to set it up): fila lives in it. */
Test(store_pg, a_role_that_owns_its_schema_needs_nothing_more)
{
	struct store_opts o = opts(3, 1, NULL);
	const char *at = strchr(strstr(pg_url, "://") + 3, '@');
	char role[40], err[512] = "", *sql, *url;
	struct store *s;

	cr_assert_not_null(at, "FILA_PG_URL names no user: %s", pg_url);
	snprintf(role, sizeof(role), "r_%d", (int)getpid());
	o.schema = new_schema();
	sql = xasprintf("DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN;"
	                "REVOKE CREATE ON DATABASE %s FROM PUBLIC;"
	                "CREATE SCHEMA %s AUTHORIZATION %s",
	    role, role, strrchr(pg_url, '/') + 1, o.schema, role);
	cr_assert(raw_exec(sql), "%s", sql);
	free(sql);
	url = xasprintf("%.*s%s%s", (int)(strstr(pg_url, "://") + 3 - pg_url),
	    pg_url, role, at);
	s = store_open(url, &o, err, sizeof(err));
	free(url);
	cr_assert_not_null(s, "%s", err);
	track(s);
	submit_ok(s, "job_1", "alice");
	cr_assert_eq(status_of(s, "job_1"), JOB_QUEUED);
}

Test(store_pg, slot_rows_follow_the_config)
{
	cr_assert_eq(count_of("slots"), 3);
	close_store(st);
	st = open_with(5, 1, NULL);
	cr_assert_eq(count_of("slots"), 5);
	submit_n(st, "job_", 4);
	promote_ok(st, "job_00");
	promote_ok(st, "job_01");
	promote_ok(st, "job_02");

	/* Shrunk to 2 with 3 held: the held row 3 stays, 4 and 5 go. */
	close_store(st);
	st = open_with(2, 1, NULL);
	cr_assert_eq(count_of("slots"), 3);
	cr_assert_eq(raw_int("SELECT max(n) FROM slots"), 3);
	struct job j;
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	/* Released, the row beyond goes; one freed is still not enough. */
	finish_ok(st, "job_02", JOB_FAILED, 1);
	cr_assert_eq(count_of("slots"), 2);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	finish_ok(st, "job_00", JOB_CANCELLED, 1);
	promote_ok(st, "job_03");
}

/* Processes started together on a new schema all open it, and the
 * migrations are applied once. */
static int
child_open(struct store *none, int i, void *arg)
{
	struct store_opts *o = arg;
	char err[512];
	struct store *s = store_open(pg_url, o, err, sizeof(err));

	if (s == NULL)
		fprintf(stderr, "child %d: store_open: %s\n", i, err);
	store_free(s);
	return s == NULL;
}

/* Rounds of it, a new schema each: a race lost once is lost. */
Test(store_pg, processes_opening_a_new_schema_together_all_open_it)
{
	struct store_opts o = opts(3, 1, NULL);
	int codes[MAX_CHILDREN];
	char *sql;

	for (int round = 0; round < MAX_SCHEMAS - 1; round++) {
		o.schema = new_schema();
		race_start(MAX_CHILDREN, NULL, child_open, &o);
		race_wait(codes);
		for (int i = 0; i < MAX_CHILDREN; i++)
			cr_assert_eq(
			    codes[i], 0, "round %d: child %d failed", round, i);
		sql = xasprintf("SELECT count(*) - max(version) FROM"
		                " %s.schema_version",
		    o.schema);
		cr_assert_eq(raw_int(sql), 0, "each migration once");
		free(sql);
		sql = xasprintf("SELECT count(*) FROM %s.slots", o.schema);
		cr_assert_eq(raw_int(sql), 3);
		free(sql);
	}
}

/* ---- users and credits ----------------------------------------------- */

Test(store_pg, new_user_gets_the_initial_grant_once)
{
	json_t *e = NULL, *g;

	cr_assert_eq(balance_of(st, "alice"), 100);
	cr_assert_eq(balance_of(st, "alice"), 100);
	cr_assert_eq(store_ledger(st, "alice", &e), STORE_OK);
	cr_assert_eq(json_array_size(e), 1);
	g = json_array_get(e, 0);
	cr_assert_str_eq(
	    json_string_value(json_object_get(g, "kind")), "grant");
	cr_assert_eq(json_integer_value(json_object_get(g, "amount")), 100);
	cr_assert(json_is_null(json_object_get(g, "job_id")));
	json_decref(e);
	cr_assert_eq(raw_int("SELECT count(*) FROM ledger WHERE reason ="
	                     " 'initial'"),
	    1);
}

Test(store_pg, grants_and_never_below_zero)
{
	int64_t b = -1;

	cr_assert_eq(store_user_grant(st, "alice", 50, "promo", &b), STORE_OK);
	cr_assert_eq(b, 150);
	cr_assert_eq(store_user_grant(st, "alice", -150, "fix", &b), STORE_OK);
	cr_assert_eq(b, 0);
	cr_assert_eq(store_user_grant(st, "alice", -1, "x", &b), STORE_CREDITS);
	cr_assert_eq(b, 0);
	cr_assert_eq(store_user_grant(st, "alice", CREDITS_MAX + 1, "x", &b),
	    STORE_CONFLICT);
	cr_assert_eq(count_of("ledger"), 3, "the refused wrote nothing");
	cr_assert_eq(balance_of(st, "alice"), 0);
}

/* ---- submit ----------------------------------------------------------- */

Test(store_pg, submit_charges_and_logs_one_event)
{
	struct job j;
	json_t *e = NULL, *c;

	cr_assert_eq(submit_to(st, "job_1", "alice", "upscaler", NULL, &j),
	    STORE_OK, "%s", store_error(st));
	cr_assert_eq(j.status, JOB_QUEUED);
	cr_assert_eq(j.position, 1);
	cr_assert(j.charged && !j.refunded);
	cr_assert_str_eq(j.variant, "pro");
	cr_assert_eq(json_integer_value(json_object_get(j.inputs, "n")), 2);
	cr_assert(j.created_at > 0 && j.updated_at == j.created_at);
	job_cleanup(&j);

	cr_assert_eq(store_ledger(st, "alice", &e), STORE_OK);
	cr_assert_eq(json_array_size(e), 2);
	c = json_array_get(e, 0);
	cr_assert_str_eq(
	    json_string_value(json_object_get(c, "kind")), "charge");
	cr_assert_eq(json_integer_value(json_object_get(c, "amount")), -10);
	cr_assert_eq(
	    json_integer_value(json_object_get(c, "balance_after")), 90);
	json_decref(e);
	cr_assert_eq(count_of("events"), 1);
	cr_assert_eq(raw_int("SELECT (data::json->>'position')::int FROM events"
	                     " WHERE job_id = 'job_1'"),
	    1);
	/* The job as stored is the one answered. */
	cr_assert_eq(raw_int("SELECT count(*) FROM jobs WHERE id = 'job_1'"
	                     " AND status = 'queued' AND cost = 10"
	                     " AND charged = 1 AND webhook_token = 'tok_job_1'"
	                     " AND session_id = 'tab-1'"),
	    1);
	submit_at(st, "job_2", "bob", 2);
}

Test(store_pg, insufficient_credits_writes_nothing)
{
	struct job j;
	int64_t b = -1;
	json_t *inputs = json_object();
	struct job_new in = {.id = "job_1",
	    .user_id = "alice",
	    .tool = "upscaler",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_1"};

	cr_assert_eq(store_user_grant(st, "alice", -95, "x", &b), STORE_OK);
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_CREDITS);
	cr_assert_eq(b, 5);
	cr_assert_null(j.id);
	job_cleanup(&j);
	cr_assert_eq(balance_of(st, "alice"), 5);
	cr_assert_eq(count_of("jobs"), 0);
	cr_assert_eq(count_of("ledger"), 2);
	cr_assert_eq(count_of("events"), 0);

	/* A new user who cannot pay is not even created. */
	in.user_id = "dave", in.cost = 500;
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_CREDITS);
	cr_assert_eq(b, 100);
	job_cleanup(&j);
	json_decref(inputs);
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM users WHERE id = 'dave'"), 0);
	cr_assert_eq(store_queue_length(st), 0);
}

Test(store_pg, a_failure_half_way_writes_nothing)
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

	submit_ok(st, "job_1", "alice");
	cr_assert_eq(store_job_submit(st, &in, &j, &b), STORE_ERROR);
	cr_assert(strstr(store_error(st), "webhook_token") != NULL, "%s",
	    store_error(st));
	job_cleanup(&j);
	json_decref(inputs);
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM users WHERE id = 'erin'"), 0);
	cr_assert_eq(count_of("jobs"), 1);
	cr_assert_eq(count_of("ledger"), 2);
	cr_assert_eq(count_of("events"), 1);
	cr_assert_eq(store_queue_length(st), 1);
	/* The handle goes on, its error text gone. */
	cr_assert_eq(balance_of(st, "erin"), 100);
	cr_assert_str_eq(store_error(st), "");
}

Test(store_pg, idempotent_repeat_returns_the_first_and_charges_once)
{
	struct job j;

	cr_assert_eq(
	    submit_to(st, "job_1", "alice", "upscaler", "k1", &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(submit_to(st, "job_2", "alice", "upscaler", "k1", &j),
	    STORE_EXISTS);
	cr_assert_str_eq(j.id, "job_1");
	cr_assert_eq(j.position, 1);
	job_cleanup(&j);
	cr_assert_eq(balance_of(st, "alice"), 90);
	cr_assert_eq(count_of("jobs"), 1);
	cr_assert_eq(count_of("events"), 1);

	/* Still the first once it ended; keys belong to their user. */
	finish_ok(st, "job_1", JOB_CANCELLED, 1);
	cr_assert_eq(submit_to(st, "job_3", "alice", "upscaler", "k1", &j),
	    STORE_EXISTS);
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);
	cr_assert_eq(
	    submit_to(st, "job_4", "bob", "upscaler", "k1", &j), STORE_OK);
	job_cleanup(&j);
}

Test(store_pg, one_active_job_per_user)
{
	struct job j;

	submit_ok(st, "job_1", "alice");
	cr_assert_eq(
	    submit_to(st, "job_2", "alice", "relight", NULL, &j), STORE_ACTIVE);
	cr_assert_str_eq(j.id, "job_1");
	job_cleanup(&j);
	cr_assert_eq(balance_of(st, "alice"), 90);
	cr_assert_eq(store_job_active(st, "alice", &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_1");
	job_cleanup(&j);
	cr_assert_eq(store_job_active(st, "bob", &j), STORE_NOTFOUND);

	finish_ok(st, "job_1", JOB_FAILED, 1);
	submit_ok(st, "job_2", "alice");
}

/* ---- promote ---------------------------------------------------------- */

Test(store_pg, promote_is_fifo_across_tools)
{
	struct job j;
	struct job_list l = {0};

	close_store(st);
	st = open_with(1, 1, NULL);
	cr_assert_eq(
	    submit_to(st, "job_a", "u1", "upscaler", NULL, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(submit_to(st, "job_b", "u2", "pose", NULL, &j), STORE_OK);
	job_cleanup(&j);
	cr_assert_eq(submit_to(st, "job_c", "u3", "tryon", NULL, &j), STORE_OK);
	cr_assert_eq(j.position, 3);
	job_cleanup(&j);

	cr_assert_eq(store_promote(st, &j), STORE_OK);
	cr_assert_str_eq(j.id, "job_a");
	cr_assert_eq(j.position, 0);
	cr_assert(j.started_at > 0);
	cr_assert_str_eq(j.starter, store_process(st));
	job_cleanup(&j);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	cr_assert_eq(position_of(st, "job_c"), 2);

	finish_ok(st, "job_a", JOB_FAILED, 1);
	promote_ok(st, "job_b");
	cr_assert_eq(store_jobs_in(st, JOB_QUEUED, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "job_c");
	cr_assert_eq(l.v[0].position, 1);
	job_list_cleanup(&l);
}

Test(store_pg, never_more_promotions_than_slots)
{
	struct job j;
	struct job_list l = {0};
	int started = 0;

	submit_n(st, "job_", 10);
	while (store_promote(st, &j) == STORE_OK) {
		started++;
		job_cleanup(&j);
	}
	job_cleanup(&j);
	cr_assert_eq(started, 3);
	cr_assert_eq(used_slots(st), 3);
	cr_assert_eq(store_jobs_in(st, JOB_STARTING, &l), STORE_OK);
	cr_assert_eq(l.n, 3);
	cr_assert_str_eq(l.v[0].id, "job_00");
	cr_assert_str_eq(l.v[2].id, "job_02");
	job_list_cleanup(&l);
	cr_assert_eq(store_queue_length(st), 7);
}

/* ---- finish ----------------------------------------------------------- */

Test(store_pg, failed_refunds_once)
{
	struct job j;

	submit_ok(st, "job_1", "alice");
	run_next(st, "job_1");
	cr_assert_eq(store_job_finish(st, "job_1", JOB_FAILED, JOB_ERR_PROVIDER,
	                 "out of VRAM", NULL, 1, &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert(j.refunded);
	cr_assert_str_eq(j.error_message, "out of VRAM");
	cr_assert(j.finished_at > 0);
	job_cleanup(&j);
	cr_assert_eq(balance_of(st, "alice"), 100);

	cr_assert_eq(finish(st, "job_1", JOB_FAILED, 1, &j), STORE_CONFLICT);
	cr_assert_str_eq(j.error_message, "out of VRAM");
	job_cleanup(&j);
	cr_assert_eq(finish(st, "job_1", JOB_CANCELLED, 1, &j), STORE_CONFLICT);
	job_cleanup(&j);
	cr_assert_eq(balance_of(st, "alice"), 100);
	cr_assert_eq(ledger_rows("job_1", "refund"), 1);
	cr_assert_eq(used_slots(st), 0);
}

Test(store_pg, cancelled_from_queued)
{
	struct job j;

	submit_ok(st, "job_1", "alice");
	cr_assert_eq(
	    store_job_finish(st, "job_1", JOB_CANCELLED, JOB_ERR_CANCELLED,
	        "cancelled by the user", NULL, 1, &j),
	    STORE_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert_eq(j.position, 0);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(balance_of(st, "alice"), 100);
	cr_assert_eq(used_slots(st), 0);
	cr_assert_eq(store_queue_length(st), 0);
	cr_assert_eq(finish(st, "nope", JOB_CANCELLED, 1, &j), STORE_NOTFOUND);
}

Test(store_pg, completed_only_from_running)
{
	struct job j;
	json_t *outs =
	    json_pack("[{s:s, s:s}]", "url", "http://x/1.png", "type", "png");

	submit_ok(st, "job_1", "alice");
	cr_assert_eq(store_job_finish(
	                 st, "job_1", JOB_COMPLETED, NULL, NULL, outs, 1, &j),
	    STORE_CONFLICT);
	cr_assert_eq(j.status, JOB_QUEUED);
	job_cleanup(&j);
	promote_ok(st, "job_1");
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
	cr_assert(json_equal(j.outputs, outs));
	cr_assert(!j.refunded);
	job_cleanup(&j);
	json_decref(outs);
	cr_assert_eq(balance_of(st, "alice"), 90);
	cr_assert_eq(ledger_rows("job_1", "refund"), 0);
}

Test(store_pg, slot_stays_held_until_released)
{
	struct job j;
	struct job_list l = {0};

	close_store(st);
	st = open_with(1, 1, NULL);
	submit_ok(st, "job_1", "alice");
	submit_ok(st, "job_2", "bob");
	run_next(st, "job_1");
	finish_ok(st, "job_1", JOB_FAILED, 0);
	cr_assert_eq(used_slots(st), 1);
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	cr_assert_eq(store_jobs_holding_ended(st, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].id, "job_1");
	job_list_cleanup(&l);

	cr_assert_eq(store_slot_release(st, "job_1"), STORE_OK);
	cr_assert_eq(used_slots(st), 0);
	cr_assert_eq(store_slot_release(st, "job_1"), STORE_OK, "a no-op");
	promote_ok(st, "job_2");
}

/* Free the slot of starting job id behind the store's back: no event, no
 * notification, as if another process had just done it. */
static void
free_behind(const char *id)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	    "UPDATE jobs SET status = 'failed', finished_at = 1,"
	    " updated_at = 1 WHERE id = '%s';"
	    "UPDATE slots SET job_id = NULL WHERE job_id = '%s'",
	    id, id);
	cr_assert(raw_exec(sql), "%s", raw_err);
}

/* A submit tells, in its own round trip, whether a slot row was free:
 * when none was, the promote that follows it in the same transaction
 * asks the database nothing. A slot freed meanwhile is not seen by that
 * promote (the submit's snapshot), only by the next. */
Test(store_pg, a_submit_that_finds_no_slot_free_spares_the_promote)
{
	struct job j;

	close_store(st);
	st = open_with(1, 1, NULL);
	store_group(st, 1);
	submit_ok(st, "job_1", "alice");
	promote_ok(st, "job_1"); /* a slot was free: asked, and taken */
	cr_assert_eq(store_sync(st), STORE_OK, "%s", store_error(st));

	submit_ok(st, "job_2", "bob");
	free_behind("job_1");
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND,
	    "the submit found the slot held: nothing asked");
	promote_ok(st, "job_2"); /* the next promote asks */
	cr_assert_eq(store_sync(st), STORE_OK, "%s", store_error(st));

	/* After the submit's transaction, a promote asks again. */
	submit_ok(st, "job_3", "carol");
	cr_assert_eq(store_sync(st), STORE_OK, "%s", store_error(st));
	free_behind("job_2");
	promote_ok(st, "job_3");
	cr_assert_eq(store_sync(st), STORE_OK, "%s", store_error(st));
	store_group(st, 0);
}

/* ---- the log, the queue's order ----------------------------------- */

Test(store_pg, one_event_per_change_with_increasing_ids)
{
	static const char *const want[] = {
	    "queued", "starting", "running", "completed"};
	struct store_event_list l = {0};
	struct job j;
	int64_t last = -1;

	submit_ok(st, "job_1", "alice");
	run_next(st, "job_1");
	finish_ok(st, "job_1", JOB_COMPLETED, 1);
	cr_assert_eq(finish(st, "job_1", JOB_FAILED, 1, &j), STORE_CONFLICT);
	job_cleanup(&j);

	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 4);
	for (size_t i = 0; i < l.n; i++) {
		json_t *d = json_loads(l.v[i].data, 0, NULL);
		cr_assert_not_null(d);
		cr_assert_gt(l.v[i].id, i ? l.v[i - 1].id : 0);
		cr_assert_str_eq(l.v[i].job_id, "job_1");
		cr_assert_str_eq(l.v[i].user_id, "alice");
		cr_assert_str_eq(
		    json_string_value(json_object_get(d, "status")), want[i]);
		cr_assert_null(json_object_get(d, "webhook_token"));
		json_decref(d);
	}
	store_event_list_cleanup(&l);
	cr_assert_eq(store_events_last(st, &last), STORE_OK);
	cr_assert_eq(last, raw_int("SELECT max(id) FROM events"));
	/* Each row is filed with its job's seq and status. */
	cr_assert_eq(raw_int("SELECT count(*) FROM events e JOIN jobs j"
	                     " ON j.id = e.job_id WHERE e.seq = j.seq"
	                     " AND e.status = e.data::json->>'status'"),
	    4);
}

Test(store_pg, events_after_filters_and_orders)
{
	struct store_event_list l = {0};

	submit_ok(st, "ja", "ann");
	submit_ok(st, "jb", "bob");
	finish_ok(st, "ja", JOB_CANCELLED, 1);

	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 2, &l), STORE_OK);
	cr_assert_eq(l.n, 2, "the limit holds");
	store_event_list_cleanup(&l);
	cr_assert_eq(store_events_after(st, 0, "ann", NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert(strstr(l.v[1].data, "\"cancelled\"") != NULL);
	int64_t first = l.v[0].id;
	store_event_list_cleanup(&l);
	cr_assert_eq(
	    store_events_after(st, first, "ann", "ja", 0, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].job_id, "ja");
	store_event_list_cleanup(&l);
	cr_assert_eq(store_events_after(st, 0, "bob", "ja", 0, &l), STORE_OK);
	cr_assert_eq(l.n, 0, "a job's events are its user's");
}

/* store.h: "only user_id's when non-NULL and only job_id's when non-NULL". */
Test(store_pg, a_job_filter_alone_reads_the_jobs_events)
{
	struct store_event_list l = {0};

	submit_ok(st, "ja", "ann");
	submit_ok(st, "jb", "bob");
	cr_assert_eq(store_events_after(st, 0, NULL, "jb", 0, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	store_event_list_cleanup(&l);
}

/* A tool's completed jobs, newest first (what admission's medians read):
 * the other tools', the failed and the unfinished are not among them. */
Test(store_pg, a_tools_completed_jobs_newest_first)
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
		cr_assert_eq(submit_to(st, id, user, tools[i], NULL, &j),
		    STORE_OK, "%s", store_error(st));
		job_cleanup(&j);
		run_next(st, id);
		cr_assert_eq(finish(st, id, ends[i], 1, &j), STORE_OK);
		job_cleanup(&j);
	}
	submit_ok(st, "job_q", "uq");
	cr_assert_eq(
	    store_job_list(st, &f, &l), STORE_OK, "%s", store_error(st));
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

Test(store_pg, queue_view)
{
	struct store_queue_view v = {0};

	submit_n(st, "h", 7);
	promote_ok(st, "h00");
	run_next(st, "h01");
	cr_assert_eq(
	    store_queue(st, 2, 1, &v), STORE_OK, "%s", store_error(st));
	cr_assert_eq(v.used, 2);
	cr_assert_eq(v.active.n, 2); /* starting, then running */
	cr_assert_str_eq(v.active.v[0].id, "h00");
	cr_assert_str_eq(v.active.v[1].id, "h01");
	cr_assert_eq(v.total, 5);
	cr_assert_eq(v.queued.n, 2);
	cr_assert_str_eq(v.queued.v[0].id, "h02");
	cr_assert_eq(v.queued.v[0].position, 1);
	cr_assert_eq(v.queued.v[1].position, 2);
	job_list_cleanup(&v.active);
	job_list_cleanup(&v.queued);
	cr_assert_eq(store_queue(st, 0, 0, &v), STORE_OK);
	cr_assert_eq(v.active.n, 0, "not asked for");
	cr_assert_eq(v.queued.n, 5, "0: all of it");
	cr_assert_eq(v.queued.v[4].position, 5);
	job_list_cleanup(&v.queued);
}

Test(store_pg, positions_are_derived_not_stored)
{
	close_store(st);
	st = open_with(0, 1, NULL); /* no slot: all wait */
	for (int i = 1; i <= 5; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "q%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_at(st, id, user, i);
	}
	int64_t events = count_of("events");
	uint64_t gone = store_queue_departures(st);
	finish_ok(st, "q2", JOB_CANCELLED, 1);
	cr_assert_eq(count_of("events"), events + 1, "the cancel alone");
	cr_assert_eq(store_queue_departures(st), gone + 1);
	cr_assert_eq(position_of(st, "q1"), 1);
	cr_assert_eq(position_of(st, "q3"), 2);
	cr_assert_eq(position_of(st, "q5"), 4);
	cr_assert_eq(position_of(st, "q2"), 0);
	cr_assert_eq(raw_int("SELECT (data::json->>'position')::int FROM events"
	                     " WHERE job_id = 'q5'"),
	    5, "the queued event keeps the place it showed");
	close_store(st);
	st = open_with(0, 1, NULL);
	cr_assert_eq(store_queue_length(st), 4);
	cr_assert_eq(position_of(st, "q4"), 3);
}

/* A departure names its event, as soon as it is committed. */
Test(store_pg, a_departure_names_its_event)
{
	int64_t last = -1;

	submit_ok(st, "d1", "u1");
	submit_ok(st, "d2", "u2");
	store_queue_sync(st);
	int64_t before = store_queue_departed(st);
	promote_ok(st, "d1");
	cr_assert_eq(store_events_last(st, &last), STORE_OK);
	cr_assert_geq(store_queue_departed(st), before, "it went back");
	cr_assert_eq(store_queue_departed(st), last,
	    "the newest departure is the promote's event %lld, not %lld",
	    (long long)last, (long long)store_queue_departed(st));
}

/* Grouped: one transaction, each change all or nothing by itself (the
 * backend's functions, no savepoint of the client's): a failing change
 * leaves the others, and nothing is seen outside before the sync. */
Test(store_pg, group_commit_keeps_what_succeeded)
{
	struct job j;
	struct told t = {0};
	struct store_event_list l = {0};
	int64_t b = -1;
	json_t *inputs = json_object();
	struct job_new dup = {.id = "g3",
	    .user_id = "erin",
	    .tool = "upscaler",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_g1"}; /* taken: fails half-way */

	commits = 0;
	store_on_commit(st, count_commit, &commits);
	store_group(st, 1);
	submit_ok(st, "g1", "u1");
	store_after(st, tell, &t);
	cr_assert_eq(store_job_submit(st, &dup, &j, &b), STORE_ERROR);
	job_cleanup(&j);
	json_decref(inputs);
	submit_ok(st, "g2", "u2");
	cr_assert_eq(t.calls, 0, "waits for the commit");
	cr_assert(store_pending(st));
	cr_assert_eq(position_of(st, "g2"), 2);
	cr_assert_eq(count_of("jobs"), 0, "not committed: not seen");
	cr_assert_eq(store_events_after(st, 0, NULL, NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 0, "pending events are not read");
	store_event_list_cleanup(&l);

	cr_assert_eq(store_sync(st), STORE_OK, "%s", store_error(st));
	cr_assert_eq(t.calls, 1);
	cr_assert_eq(t.ok, 1);
	cr_assert_eq(commits, 1, "one commit for the turn");
	cr_assert_eq(count_of("jobs"), 2);
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM users WHERE id = 'erin'"), 0);
	cr_assert_eq(count_of("events"), 2);
	cr_assert_eq(raw_int("SELECT max(id) - min(id) FROM events"), 1,
	    "the turn's events, in a row");
	store_group(st, 0);
	store_on_commit(st, NULL, NULL);
}

Test(store_pg, job_counts_add_up_through_every_move)
{
	json_t *c = NULL;

	submit_n(st, "c", 3);
	finish_ok(st, "c01", JOB_CANCELLED, 1);
	run_next(st, "c00");
	finish_ok(st, "c00", JOB_COMPLETED, 1);
	cr_assert_eq(store_job_counts(st, &c), STORE_OK);
	json_t *u = json_object_get(c, "upscaler");
	cr_assert_eq(json_integer_value(json_object_get(u, "queued")), 1);
	cr_assert_eq(json_integer_value(json_object_get(u, "completed")), 1);
	cr_assert_eq(json_integer_value(json_object_get(u, "cancelled")), 1);
	cr_assert_null(json_object_get(u, "running"), "none left running");
	json_decref(c);
}

/* ---- the schema's invariants, behind the store's back ------------------ */

Test(store_pg, the_schema_keeps_credits_and_the_ledger)
{
	submit_ok(st, "job_1", "alice");
	finish_ok(st, "job_1", JOB_CANCELLED, 1);

	refused("UPDATE users SET balance = -1 WHERE id = 'alice'", "balance");
	refused("INSERT INTO ledger (user_id, job_id, kind, amount,"
	        " balance_after, at) VALUES ('alice', NULL, 'grant', -200,"
	        " -100, 0)",
	    "balance_after");
	refused("INSERT INTO ledger (user_id, job_id, kind, amount,"
	        " balance_after, at) VALUES ('alice', 'job_1', 'refund', 10,"
	        " 110, 0)",
	    "ledger_job_id_kind_key");
	refused("INSERT INTO ledger (user_id, job_id, kind, amount,"
	        " balance_after, at) VALUES ('alice', 'job_1', 'charge', -10,"
	        " 90, 0)",
	    "ledger_job_id_kind_key");
	refused("INSERT INTO ledger (user_id, kind, amount, balance_after, at)"
	        " VALUES ('alice', 'gift', 1, 101, 0)",
	    "kind");
	refused("UPDATE ledger SET amount = 1000", "append-only");
	refused("DELETE FROM ledger WHERE kind = 'refund'", "append-only");
	cr_assert_eq(count_of("ledger"), 3);
	cr_assert_eq(balance_of(st, "alice"), 100);
}

/* TRUNCATE runs no row trigger: the ledger needs its own guard. */
Test(store_pg, the_ledger_cannot_be_truncated)
{
	submit_ok(st, "job_1", "alice");
	refused("TRUNCATE ledger", "append-only");
	cr_assert_eq(count_of("ledger"), 2);
}

Test(store_pg, a_terminal_job_never_changes)
{
	submit_ok(st, "job_1", "alice");
	run_next(st, "job_1");
	finish_ok(st, "job_1", JOB_COMPLETED, 1);

	refused(
	    "UPDATE jobs SET status = 'queued' WHERE id = 'job_1'", "terminal");
	refused(
	    "UPDATE jobs SET status = 'failed' WHERE id = 'job_1'", "terminal");
	refused("UPDATE jobs SET error_message = 'x' WHERE id = 'job_1'",
	    "terminal");
	refused("UPDATE jobs SET refunded = 1 WHERE id = 'job_1'", "terminal");
	refused(
	    "UPDATE jobs SET outputs = '[]' WHERE id = 'job_1'", "terminal");
	cr_assert_eq(status_of(st, "job_1"), JOB_COMPLETED);
	/* Who carries it may change: that is no change of the job. */
	cr_assert(raw_exec("UPDATE jobs SET starter = 'x' WHERE id = 'job_1'"),
	    "%s", raw_err);
}

Test(store_pg, a_job_moves_only_along_the_arrows)
{
	submit_ok(st, "job_1", "alice");
	submit_ok(st, "job_2", "bob");

	refused("INSERT INTO jobs (id, user_id, tool, status, inputs, cost,"
	        " webhook_token, created_at, updated_at) VALUES ('job_x',"
	        " 'bob', 't', 'running', '{}', 0, 'tx', 0, 0)",
	    "created queued");
	refused("UPDATE jobs SET status = 'completed' WHERE id = 'job_1'",
	    "transition");
	refused("UPDATE jobs SET status = 'running' WHERE id = 'job_1'",
	    "transition");
	refused("UPDATE jobs SET status = 'paused' WHERE id = 'job_1'",
	    "transition");
	run_next(st, "job_1");
	refused("UPDATE jobs SET status = 'starting' WHERE id = 'job_1'",
	    "transition");
	refused("UPDATE jobs SET status = 'queued' WHERE id = 'job_1'",
	    "transition");
	cr_assert_eq(status_of(st, "job_1"), JOB_RUNNING);
	cr_assert_eq(status_of(st, "job_2"), JOB_QUEUED);
}

Test(store_pg, a_job_starts_only_by_taking_a_slot)
{
	submit_ok(st, "job_1", "alice");
	submit_ok(st, "job_2", "bob");

	refused(
	    "UPDATE jobs SET status = 'starting' WHERE id = 'job_1'", "slot");
	refused("INSERT INTO slots (account, n, job_id) VALUES ('default', 9,"
	        " 'job_1')",
	    "created free");
	/* The legal raw sequence passes: the rules allow it. */
	cr_assert(raw_exec("BEGIN; UPDATE slots SET job_id = 'job_1'"
	                   " WHERE n = 1; UPDATE jobs SET status = 'starting'"
	                   " WHERE id = 'job_1'; COMMIT"),
	    "%s", raw_err);
	refused("UPDATE slots SET job_id = 'job_2' WHERE n = 1",
	    "only a free slot");
	refused("UPDATE slots SET job_id = 'job_1' WHERE n = 2",
	    "only a free slot");
	refused("UPDATE slots SET job_id = NULL WHERE job_id = 'job_1'",
	    "keeps its slot");
	refused("DELETE FROM slots WHERE job_id = 'job_1'", "not removed");
	cr_assert_eq(store_slot_release(st, "job_1"), STORE_ERROR,
	    "not even through the store");
	cr_assert_eq(used_slots(st), 1);
}

/* The trigger functions name their own schema's tables: no setting is
 * saved and restored on each call, and a session whose search_path
 * names another schema (empty here) still meets the same rules. */
Test(store_pg, the_rules_name_their_own_tables)
{
	char *sql;

	cr_assert_eq(
	    raw_int("SELECT count(*) FROM pg_proc"
	            " WHERE pronamespace = current_schema()::regnamespace"
	            " AND proname IN ('jobs_check', 'slots_check',"
	            " 'job_counts_track') AND proconfig IS NULL"),
	    3);
	submit_ok(st, "job_1", "alice");
	cr_assert(raw_exec("CREATE SCHEMA IF NOT EXISTS fila_elsewhere;"
	                   " CREATE TABLE IF NOT EXISTS fila_elsewhere.slots"
	                   " (job_id text); CREATE TABLE IF NOT EXISTS"
	                   " fila_elsewhere.jobs (id text, status text)"),
	    "%s", raw_err);
	cr_assert(raw_exec("INSERT INTO fila_elsewhere.slots VALUES ('job_1')"),
	    "%s", raw_err);
	sql = xasprintf("SET search_path = fila_elsewhere;"
	                " UPDATE %s.jobs SET status = 'starting'"
	                " WHERE id = 'job_1'",
	    schema);
	refused(sql, "slot");
	free(sql);
	sql = xasprintf("SET search_path = fila_elsewhere;"
	                " BEGIN; UPDATE %1$s.slots SET job_id = 'job_1'"
	                " WHERE n = 1; UPDATE %1$s.jobs SET status = 'starting'"
	                " WHERE id = 'job_1'; COMMIT",
	    schema);
	cr_assert(raw_exec(sql), "%s", raw_err);
	free(sql);
	sql = xasprintf("SET search_path = %s;"
	                " DROP SCHEMA fila_elsewhere CASCADE",
	    schema);
	cr_assert(raw_exec(sql), "%s", raw_err);
	free(sql);
	cr_assert_eq(status_of(st, "job_1"), JOB_STARTING);
	cr_assert_eq(raw_int("SELECT sum(n) FROM job_counts"
	                     " WHERE status = 'starting'"),
	    1, "job_counts followed, in its own schema");
}

/* ---- across handles and processes ------------------------------------ */

Test(store_pg, two_handles_never_exceed_the_slots)
{
	struct store *other = open_with(3, 1, NULL);
	struct store *h[2] = {st, other};
	struct job j;
	int started = 0, idle = 0;

	for (int i = 0; i < 10; i++) {
		char id[16], user[16];
		snprintf(id, sizeof(id), "job_%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		submit_ok(h[i % 2], id, user);
	}
	for (int i = 0; idle < 2; i++) {
		enum store_rc rc = store_promote(h[i % 2], &j);
		cr_assert(rc == STORE_OK || rc == STORE_NOTFOUND, "%s",
		    store_error(h[i % 2]));
		started += rc == STORE_OK;
		idle = rc == STORE_OK ? 0 : idle + 1;
		job_cleanup(&j);
	}
	cr_assert_eq(started, 3);
	cr_assert_eq(used_slots(other), 3);

	/* A slot freed through one handle is taken through the other. */
	finish_ok(other, "job_1", JOB_FAILED, 1);
	promote_ok(st, "job_3");
	cr_assert_eq(store_promote(other, &j), STORE_NOTFOUND);
	cr_assert_eq(raw_int("SELECT count(*) FROM jobs WHERE status IN"
	                     " ('starting', 'running')"),
	    3);
}

static int
child_promote(struct store *s, int i, void *arg)
{
	for (int k = 0; k < 20; k++) {
		struct job j;
		enum store_rc rc = store_promote(s, &j);
		job_cleanup(&j);
		if (rc != STORE_OK && rc != STORE_NOTFOUND) {
			fprintf(stderr, "child %d: %s\n", i, store_error(s));
			return 1;
		}
	}
	return 0;
}

/* Real processes racing: each promotes as fast as it can. */
Test(store_pg, racing_processes_never_exceed_the_slots)
{
	enum { N = 6 };
	struct store_opts o = opts(3, 1, NULL);
	int codes[N];

	submit_n(st, "job_", 20);
	race_start(N, &o, child_promote, NULL);
	race_wait(codes);
	for (int i = 0; i < N; i++)
		cr_assert_eq(codes[i], 0, "child %d", i);
	cr_assert_eq(raw_int("SELECT count(*) FROM jobs WHERE status ="
	                     " 'starting'"),
	    3);
	cr_assert_eq(raw_int("SELECT count(*) FROM jobs WHERE status ="
	                     " 'starting' AND id IN ('job_00', 'job_01',"
	                     " 'job_02')"),
	    3, "the head of the queue, in order");
	cr_assert_eq(count_of("slots"), 3);
}

static int
child_promote_once(struct store *s, int i, void *arg)
{
	struct job j;
	enum store_rc rc = store_promote(s, &j);

	job_cleanup(&j);
	return rc;
}

/* Shrunk from 3 slots to 2 while 3 are held, then 2 freed: room for one
 * more, however many processes race for it. */
Test(store_pg, racing_processes_never_exceed_a_shrunk_size)
{
	enum { N = MAX_CHILDREN };
	struct store_opts o = opts(2, 1, NULL);
	int codes[N], started = 0;

	submit_n(st, "job_", 3 + N);
	promote_ok(st, "job_00");
	promote_ok(st, "job_01");
	promote_ok(st, "job_02");
	close_store(st);
	st = open_with(2, 1, NULL);
	finish_ok(st, "job_00", JOB_FAILED, 1);
	finish_ok(st, "job_01", JOB_FAILED, 1);
	cr_assert_eq(used_slots(st), 1, "the row beyond the size, still held");

	race_start(N, &o, child_promote_once, NULL);
	race_wait(codes);
	for (int i = 0; i < N; i++)
		started += codes[i] == STORE_OK;
	cr_assert_leq(used_slots(st), 2, "%d started in 1 free slot", started);
	cr_assert_eq(started, 1);
}

static int
child_submit(struct store *s, int i, void *arg)
{
	const char *user = arg;
	char id[32];
	struct job j;
	enum store_rc rc;

	snprintf(id, sizeof(id), "%s_%d", user, i);
	rc = submit_to(s, id, user, "upscaler", NULL, &j);
	job_cleanup(&j);
	return rc;
}

/* Processes submitting for one user at once: one job, one charge, the
 * others told the user is busy; whether the user is new or known. */
Test(store_pg, racing_submits_of_one_user_make_one_job)
{
	enum { N = 4, ROUNDS = 3 };
	struct store_opts o = opts(3, 1, NULL);
	int codes[N];

	for (int round = 0; round < 2 * ROUNDS; round++) {
		char user[32];
		int ok = 0, busy = 0;
		snprintf(user, sizeof(user), "%s%d",
		    round % 2 ? "known" : "new", round);
		if (round % 2)
			balance_of(st, user);
		race_start(N, &o, child_submit, user);
		race_wait(codes);
		for (int i = 0; i < N; i++) {
			ok += codes[i] == STORE_OK;
			busy += codes[i] == STORE_ACTIVE;
		}
		cr_assert(ok == 1 && busy == N - 1,
		    "%s: %d done, %d busy (answers %d %d %d %d)", user, ok,
		    busy, codes[0], codes[1], codes[2], codes[3]);
		cr_assert_eq(balance_of(st, user), 90);
	}
	cr_assert_eq(count_of("jobs"), 2 * ROUNDS);
	cr_assert_eq(raw_int("SELECT count(*) FROM ledger WHERE kind ="
	                     " 'charge'"),
	    2 * ROUNDS);
	cr_assert_eq(count_of("events"), 2 * ROUNDS);
}

static int
child_churn(struct store *s, int i, void *arg)
{
	int rounds = *(int *)arg;

	for (int k = 0; k < rounds; k++) {
		char id[32], user[32];
		struct job j;
		snprintf(id, sizeof(id), "w%d_%d", i, k);
		snprintf(user, sizeof(user), "wu%d_%d", i, k);
		if (submit_to(s, id, user, "upscaler", NULL, &j) != STORE_OK) {
			fprintf(stderr, "child %d: %s\n", i, store_error(s));
			return 1;
		}
		job_cleanup(&j);
		if (finish(s, id, JOB_CANCELLED, 1, &j) != STORE_OK)
			return 1;
		job_cleanup(&j);
	}
	return 0;
}

/* Events are numbered in commit order: a reader moving its cursor to the
 * last id it read never misses one committed later. */
Test(store_pg, a_reader_of_the_log_misses_nothing)
{
	enum { N = 3 };
	struct store_opts o = opts(3, 1, NULL);
	int rounds = 40, codes[N], done = 0;
	int64_t cursor = 0, seen = 0;

	race_start(N, &o, child_churn, &rounds);
	while (!done) {
		struct store_event_list l = {0};
		done = race_ended(codes, 0);
		cr_assert_eq(store_events_after(st, cursor, NULL, NULL, 0, &l),
		    STORE_OK);
		for (size_t i = 0; i < l.n; i++) {
			cr_assert_gt(l.v[i].id, cursor);
			cursor = l.v[i].id;
		}
		seen += (int64_t)l.n;
		store_event_list_cleanup(&l);
	}
	for (int i = 0; i < N; i++)
		cr_assert_eq(codes[i], 0, "child %d", i);
	struct store_event_list l = {0};
	cr_assert_eq(
	    store_events_after(st, cursor, NULL, NULL, 0, &l), STORE_OK);
	seen += (int64_t)l.n;
	store_event_list_cleanup(&l);
	cr_assert_eq(seen, N * rounds * 2);
	cr_assert_eq(count_of("events"), N * rounds * 2);
}

static int backend_pid(struct store *s);

/* The notification of this process's own commit comes back to it, and
 * is passed over: the log is not read again for what it wrote itself
 * (the last statement of its session stays the commit). */
Test(store_pg, its_own_commits_bring_no_word_back)
{
	int pid = backend_pid(st);
	char *last = xasprintf("SELECT query FROM pg_stat_activity"
	                       " WHERE pid = %d",
	    pid);
	char *q;

	store_watch(st, loop());
	submit_ok(st, "x1", "u1");
	SPIN_UNTIL(0, 100);
	store_queue_sync(st);
	q = raw_text(last);
	cr_assert_str_eq(q, "COMMIT", "its own notification was news: %s", q);
	free(q);
	free(last);
}

/* What another process commits reaches this one from the loop: its
 * commit hook runs, its order and log have the other's jobs. */
Test(store_pg, another_handles_commits_reach_this_one)
{
	struct store *other;
	struct store_event_list l = {0};
	int mine = 0;

	close_store(st);
	st = open_with(0, 2, NULL); /* no slot: all stay queued */
	other = open_with(0, 2, NULL);
	store_watch(st, loop());
	store_on_commit(st, count_commit, &mine);
	submit_ok(st, "x1", "u1");
	SPIN_UNTIL(0, 100); /* word of its own commit, if any, comes first */
	mine = 0;

	submit_ok(other, "x2", "u2");
	SPIN_UNTIL(mine > 0, 5000);
	cr_assert_gt(mine, 0, "no word of the other's commit");
	store_queue_sync(st);
	cr_assert_eq(store_queue_length(st), 2);
	cr_assert_eq(position_of(st, "x2"), 2);
	cr_assert_eq(store_events_after(st, 0, "u2", NULL, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	store_event_list_cleanup(&l);

	/* A cancel through the other moves this one's places. */
	uint64_t gone = store_queue_departures(st);
	finish_ok(other, "x1", JOB_CANCELLED, 1);
	SPIN_UNTIL(store_queue_place(st, raw_int("SELECT seq FROM jobs"
	                                         " WHERE id = 'x2'")) == 1,
	    5000);
	cr_assert_eq(position_of(st, "x2"), 1);
	cr_assert_geq(store_queue_departures(st), gone + 1);
	cr_assert_eq(store_queue_length(st), 1);
	store_on_commit(st, NULL, NULL);
}

static int
child_move(struct store *s, int i, void *arg)
{
	int64_t end = mono_ms() + *(int *)arg;

	for (int k = 0; mono_ms() < end; k++) {
		char id[32], user[32], task[32];
		struct job j;
		snprintf(id, sizeof(id), "m%d_%d", i, k);
		snprintf(user, sizeof(user), "mu%d_%d", i, k);
		snprintf(task, sizeof(task), "t%d_%d", i, k);
		if (submit_to(s, id, user, "upscaler", NULL, &j) != STORE_OK)
			return 1;
		job_cleanup(&j);
		if (store_promote(s, &j) == STORE_OK) {
			snprintf(id, sizeof(id), "%s", j.id);
			job_cleanup(&j);
			store_job_running(s, id, task, &j);
			job_cleanup(&j);
			finish(s, id, JOB_COMPLETED, 1, &j);
		}
		job_cleanup(&j);
	}
	return 0;
}

/* What the view says must hold at one moment, whatever moves meanwhile:
 * into why (empty when it holds). */
static void
one_moment(const struct store_queue_view *v, char *why, size_t len)
{
	why[0] = '\0';
	if (v->total != (int64_t)v->queued.n)
		snprintf(why, len, "%lld queued in all, %zu listed",
		    (long long)v->total, v->queued.n);
	if ((int64_t)v->active.n > v->used)
		snprintf(why, len, "%zu active jobs in %lld slots", v->active.n,
		    (long long)v->used);
	for (size_t i = 0; i < v->active.n; i++)
		for (size_t k = i + 1; k < v->active.n; k++)
			if (strcmp(v->active.v[i].id, v->active.v[k].id) == 0)
				snprintf(why, len, "%s seen twice",
				    v->active.v[i].id);
}

/* store_queue is one snapshot, while other processes move jobs. */
Test(store_pg, the_queue_view_is_one_snapshot)
{
	enum { N = 2 };
	struct store_opts o = opts(3, 1, NULL);
	int ms = 1500, codes[N], views = 0;
	char why[128] = "";

	race_start(N, &o, child_move, &ms);
	while (!race_ended(codes, 0) && why[0] == '\0') {
		struct store_queue_view v = {0};
		cr_assert_eq(
		    store_queue(st, 0, 1, &v), STORE_OK, "%s", store_error(st));
		one_moment(&v, why, sizeof(why));
		job_list_cleanup(&v.active);
		job_list_cleanup(&v.queued);
		views++;
	}
	cr_assert_str_empty(why, "after %d views: %s", views, why);
	for (int i = 0; i < N; i++)
		cr_assert_eq(codes[i], 0, "child %d", i);
	cr_assert_gt(views, 10);
}

/* ---- leases ---------------------------------------------------------- */

struct taken {
	struct job_list starting, running, holding;
};

static void
taken_cleanup(struct taken *t)
{
	job_list_cleanup(&t->starting);
	job_list_cleanup(&t->running);
	job_list_cleanup(&t->holding);
}

/* Renew s's lease; what it took over into t (cleaned first). */
static void
lease(struct store *s, int64_t ttl_ms, int mine, struct taken *t)
{
	taken_cleanup(t);
	cr_assert_eq(store_lease(s, ttl_ms, mine, &t->starting, &t->running,
	                 &t->holding),
	    STORE_OK, "%s", store_error(s));
}

static size_t
taken_n(const struct taken *t)
{
	return t->starting.n + t->running.n + t->holding.n;
}

Test(store_pg, a_lapsed_lease_is_taken_over)
{
	struct store *a = open_with(3, 1, "a"), *b = open_with(3, 1, "b");
	struct taken t = {0};

	lease(a, 60000, 0, &t);
	cr_assert_eq(taken_n(&t), 0);
	submit_n(a, "l", 3);
	promote_ok(a, "l00");
	run_next(a, "l01");
	promote_ok(a, "l02");
	finish_ok(a, "l02", JOB_FAILED, 0); /* its slot waits */

	lease(a, 300, 0, &t); /* a's last renewal */
	lease(b, 60000, 0, &t);
	cr_assert_eq(taken_n(&t), 0, "a's lease is alive: a's jobs stay");
	usleep(500 * 1000);
	lease(b, 60000, 0, &t);
	cr_assert_eq(t.starting.n, 1);
	cr_assert_str_eq(t.starting.v[0].id, "l00");
	cr_assert_str_eq(t.starting.v[0].starter, "b");
	cr_assert_eq(t.running.n, 1);
	cr_assert_str_eq(t.running.v[0].id, "l01");
	cr_assert_eq(t.holding.n, 1);
	cr_assert_str_eq(t.holding.v[0].id, "l02");
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM jobs WHERE starter = 'b'"), 3);
	lease(b, 60000, 0, &t);
	cr_assert_eq(taken_n(&t), 0, "taken once");
	taken_cleanup(&t);
}

Test(store_pg, a_live_lease_is_never_taken_over)
{
	struct store *a = open_with(3, 1, "a"), *b = open_with(3, 1, "b");
	struct taken t = {0};

	lease(a, 60000, 0, &t);
	submit_n(a, "l", 1);
	promote_ok(a, "l00");
	for (int i = 0; i < 3; i++) {
		lease(b, 100, 0, &t);
		cr_assert_eq(taken_n(&t), 0);
		usleep(150 * 1000); /* b's own lease lapses: no matter */
	}
	lease(b, 60000, 1, &t);
	cr_assert_eq(taken_n(&t), 0, "mine takes back b's own, not a's");
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM jobs WHERE starter = 'a'"), 1);
	taken_cleanup(&t);
}

/* A process started again under its name takes back what it carried at
 * once, its old lease alive or not. */
Test(store_pg, a_restarted_process_takes_back_its_own)
{
	struct store *a = open_with(3, 1, "a");
	struct taken t = {0};

	lease(a, 60000, 0, &t);
	submit_n(a, "l", 1);
	promote_ok(a, "l00");
	close_store(a);
	a = open_with(3, 1, "a");
	lease(a, 60000, 1, &t);
	cr_assert_eq(t.starting.n, 1);
	cr_assert_str_eq(t.starting.v[0].id, "l00");
	taken_cleanup(&t);
}

/* A process whose lapsed lease was taken over, and which starts a job
 * before it renews (it was only slow), still hands that job over when it
 * stops for good. */
Test(store_pg, jobs_started_after_a_takeover_are_taken_over_too)
{
	struct store *a = open_with(3, 1, "a"), *b = open_with(3, 1, "b");
	struct taken t = {0};

	lease(a, 100, 0, &t);
	usleep(200 * 1000);
	lease(b, 60000, 0, &t); /* a lapsed: b takes over (nothing) */
	submit_n(a, "l", 1);
	promote_ok(a, "l00"); /* a goes on a moment, then stops */
	close_store(a);
	usleep(200 * 1000);
	lease(b, 60000, 0, &t);
	cr_assert_eq(t.starting.n, 1, "l00 is carried by no live process");
	taken_cleanup(&t);
}

/* ---- a lost connection ------------------------------------------------ */

/* The pid of s's session: the one holding a lock on this schema's uploads
 * while s's transaction is open. s is left ungrouped, nothing pending. */
static int
backend_pid(struct store *s)
{
	static int probes;
	char id[32];
	struct upload u = {.id = id,
	    .user_id = "probe",
	    .type = "png",
	    .size = 1,
	    .sha256 = "00",
	    .path = "probe"};
	int pid;

	snprintf(id, sizeof(id), "upl_probe_%d", ++probes);
	store_group(s, 1);
	cr_assert_eq(store_upload_add(s, &u), STORE_OK, "%s", store_error(s));
	pid = (int)raw_int("SELECT pid FROM pg_locks WHERE relation ="
	                   " 'uploads'::regclass AND pid <> pg_backend_pid()"
	                   " AND granted LIMIT 1");
	store_group(s, 0);
	cr_assert_gt(pid, 0);
	return pid;
}

/* End session pid, as a restart of the server or a cut would. */
static void
kill_backend(int pid)
{
	char *sql = xasprintf("SELECT pg_terminate_backend(%d)", pid);
	char *gone = xasprintf(
	    "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", pid);
	int64_t end = mono_ms() + 5000;

	cr_assert(raw_exec(sql), "%s", raw_err);
	while (raw_int(gone) > 0 && mono_ms() < end)
		usleep(5000);
	cr_assert_eq(raw_int(gone), 0, "session %d still there", pid);
	free(sql);
	free(gone);
}

static int
reachable(struct store *s)
{
	int64_t last;
	return store_events_last(s, &last) == STORE_OK;
}

Test(store_pg, a_lost_connection_fails_calls_and_comes_back)
{
	struct store *other = open_with(3, 1, NULL);
	struct job j;
	int64_t t0;

	store_watch(st, loop());
	submit_ok(st, "c1", "u1");
	kill_backend(backend_pid(st));

	/* The next call fails, and writes nothing. */
	cr_assert_eq(
	    submit_to(st, "c2", "u2", "upscaler", NULL, &j), STORE_ERROR);
	job_cleanup(&j);
	cr_assert(strncmp(store_error(st), "postgres: ", 10) == 0, "%s",
	    store_error(st));
	cr_assert_eq(raw_int("SELECT count(*) FROM users WHERE id = 'u2'"), 0);
	cr_assert_eq(count_of("jobs"), 1);
	cr_assert_eq(store_queue_length(st), 1);
	/* ...and so do those after it, at once, until it is made again. */
	t0 = mono_ms();
	cr_assert_eq(store_promote(st, &j), STORE_ERROR);
	cr_assert_lt(mono_ms() - t0, 500, "a call waited on a lost database");

	/* Meanwhile another process commits. */
	submit_ok(other, "c3", "u3");

	SPIN_UNTIL(reachable(st), 10000);
	cr_assert(reachable(st), "never connected again: %s", store_error(st));
	store_queue_sync(st);
	cr_assert_eq(store_queue_length(st), 2, "caught up with the log");
	submit_at(st, "c2", "u2", 3);
	promote_ok(st, "c1");

	/* Its statements work and it listens again. */
	commits = 0;
	store_on_commit(st, count_commit, &commits);
	submit_ok(other, "c4", "u4");
	SPIN_UNTIL(commits > 0, 5000);
	cr_assert_gt(commits, 0, "not listening after the reconnect");
	store_on_commit(st, NULL, NULL);
}

static void upload_at(struct store *s, const char *id, const char *user,
    int64_t size, int64_t at);

/* A submit's reads are one pipeline: on a lost connection they fail at
 * once, and once it is made again they work, the pipeline left behind. */
Test(store_pg, a_submits_reads_on_a_lost_connection_fail_then_work)
{
	const char *ids[] = {"upl_a"};
	struct upload up[1];
	int64_t n = -1, oldest = -1, now = now_ms();

	store_watch(st, loop());
	upload_at(st, "upl_a", "u1", 10, now);
	kill_backend(backend_pid(st));
	cr_assert_eq(store_submit_reads(
	                 st, "u1", ids, 1, up, now - 60000, 30, &n, &oldest),
	    STORE_ERROR);
	cr_assert(strncmp(store_error(st), "postgres: ", 10) == 0, "%s",
	    store_error(st));
	upload_cleanup(&up[0]);

	SPIN_UNTIL(reachable(st), 10000);
	cr_assert(reachable(st), "never connected again: %s", store_error(st));
	cr_assert_eq(store_submit_reads(
	                 st, "u1", ids, 1, up, now - 60000, 30, &n, &oldest),
	    STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(up[0].id, "upl_a");
	cr_assert_eq(n, 0);
	upload_cleanup(&up[0]);
	submit_ok(st, "j1", "u1"); /* and the calls after them */
}

/* A connection lost in the middle of a turn takes the whole turn: the
 * queue's order is as it was, and what waited is told. */
Test(store_pg, a_connection_lost_mid_turn_loses_the_turn)
{
	struct told t = {0};
	int pid;

	store_watch(st, loop());
	submit_ok(st, "k1", "u1");
	int64_t seq1 = raw_int("SELECT seq FROM jobs WHERE id = 'k1'");
	pid = backend_pid(st);
	store_group(st, 1);
	submit_ok(st, "k2", "u2");
	finish_ok(st, "k1", JOB_CANCELLED, 1);
	store_after(st, tell, &t);
	uint64_t gone = store_queue_departures(st);
	cr_assert_eq(store_queue_place(st, seq1), 0);
	kill_backend(pid);

	cr_assert_eq(store_sync(st), STORE_ERROR);
	cr_assert_eq(t.calls, 1);
	cr_assert_eq(t.ok, 0);
	cr_assert_not(store_pending(st));
	cr_assert_eq(store_queue_length(st), 1);
	cr_assert_eq(store_queue_place(st, seq1), 1, "k1 never left");
	cr_assert_eq(store_queue_departures(st), gone - 1);
	cr_assert_eq(count_of("jobs"), 1);
	cr_assert_eq(ledger_rows("k1", "refund"), 0);
	cr_assert_eq(raw_int("SELECT count(*) FROM users WHERE id = 'u2'"), 0);
	cr_assert_eq(count_of("events"), 1);

	SPIN_UNTIL(reachable(st), 10000);
	cr_assert(reachable(st), "never connected again: %s", store_error(st));
	submit_ok(st, "k3", "u3");
	cr_assert_eq(store_sync(st), STORE_OK, "%s", store_error(st));
	cr_assert_eq(position_of(st, "k3"), 2);
	cr_assert_eq(status_of(st, "k1"), JOB_QUEUED);
	store_group(st, 0);
}

/* ---- two schemas ----------------------------------------------------- */

Test(store_pg, two_schemas_in_one_database_are_independent)
{
	struct store_opts o = opts(1, 1, NULL);
	struct store *b;
	struct job j;
	int heard = 0;

	close_store(st);
	st = open_with(1, 1, NULL);
	o.schema = new_schema();
	b = open_opts(&o);
	store_watch(b, loop());
	store_on_commit(b, count_commit, &heard);

	submit_ok(st, "j1", "alice");
	submit_ok(st, "j2", "bob");
	cr_assert_eq(store_job_get(b, "j1", NULL, &j), STORE_NOTFOUND);
	cr_assert_eq(balance_of(b, "alice"), 100, "alice is new there");
	SPIN_UNTIL(heard > 0, 300);
	cr_assert_eq(heard, 0, "b was told of a's commit");
	store_queue_sync(b);
	cr_assert_eq(store_queue_length(b), 0);

	/* The same ids, and slots of its own. */
	submit_at(b, "j1", "alice", 1);
	promote_ok(st, "j1");
	promote_ok(b, "j1");
	cr_assert_eq(store_promote(st, &j), STORE_NOTFOUND);
	cr_assert_eq(used_slots(b), 1);
	cr_assert_eq(position_of(st, "j2"), 1);
	cr_assert_eq(count_of("events"), 3);
	store_on_commit(b, NULL, NULL);
}

/* ---- accounts: pools of slots ----------------------------------------- */

static const struct store_account two_pools[] = {{"a", 2}, {"b", 1}};

/* The options of a store on n pools, its slots their sum. */
static struct store_opts
pools_opts(const struct store_account *pools, size_t n, enum store_hooks hooks)
{
	struct store_opts o = opts(0, 1, NULL);

	for (size_t i = 0; i < n; i++)
		o.slots += pools[i].slots;
	o.accounts = pools;
	o.naccounts = n;
	o.hooks = hooks;
	return o;
}

/* st, opened again on n pools. */
static void
reopen_pools(
    const struct store_account *pools, size_t n, enum store_hooks hooks)
{
	struct store_opts o = pools_opts(pools, n, hooks);

	close_store(st);
	st = open_opts(&o);
}

/* Promote the head of the queue: it must land on account. */
static void
promote_on(struct store *s, const char *account)
{
	struct job j;

	cr_assert_eq(
	    store_promote(s, &j), STORE_OK, "promote: %s", store_error(s));
	cr_assert_eq(j.status, JOB_STARTING);
	cr_assert_not_null(j.account, "%s names no account", j.id);
	cr_assert_str_eq(j.account, account, "%s", j.id);
	job_cleanup(&j);
}

static void
no_room(struct store *s)
{
	struct job j;

	cr_assert_eq(store_promote(s, &j), STORE_NOTFOUND, "%s was promoted",
	    j.id ? j.id : "?");
	job_cleanup(&j);
}

/* Slots held on account, as the store tells them. */
static int64_t
held_on(struct store *s, const char *account)
{
	json_t *used = NULL;
	int64_t n;

	cr_assert_eq(
	    store_slots_by_account(s, &used), STORE_OK, "%s", store_error(s));
	cr_assert(json_is_integer(json_object_get(used, account)),
	    "no count for %s", account);
	n = json_integer_value(json_object_get(used, account));
	json_decref(used);
	return n;
}

/* Slot rows of account (all: held = 0), behind the store's back. */
static int64_t
rows_of(const char *account, int held)
{
	char *sql = xasprintf("SELECT count(*) FROM slots WHERE account = '%s'"
	                      " %s",
	    account, held ? "AND job_id IS NOT NULL" : "");
	int64_t n = raw_int(sql);

	free(sql);
	return n;
}

/* Accounts holding more slots, or with more active jobs, than their size,
 * as "name held/active/size, …" ("" when none). */
static const char over_full_sql[] =
    "SELECT coalesce(string_agg(a.name || ' ' || h.held || '/'"
    " || coalesce(j.n, 0) || '/' || a.slots, ', '), '') FROM accounts a"
    " JOIN (SELECT account, count(job_id) AS held FROM slots"
    " GROUP BY account) h ON h.account = a.name"
    " LEFT JOIN (SELECT account, count(*) AS n FROM jobs"
    " WHERE status IN ('starting', 'running') GROUP BY account) j"
    " ON j.account = a.name"
    " WHERE h.held > a.slots OR coalesce(j.n, 0) > a.slots";

/* Jobs whose account is not that of the slot they hold. */
static const char misfiled_sql[] =
    "SELECT count(*) FROM slots s JOIN jobs j ON j.id = s.job_id"
    " WHERE j.account IS DISTINCT FROM s.account";

Test(store_pg, each_account_is_a_pool_of_its_slots)
{
	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	cr_assert_eq(count_of("slots"), 3);
	submit_n(st, "j", 4);
	/* The most room first, then by name: a, a, b; then none. */
	promote_on(st, "a");
	promote_on(st, "a");
	promote_on(st, "b");
	no_room(st);
	cr_assert_eq(held_on(st, "a"), 2);
	cr_assert_eq(held_on(st, "b"), 1);
	cr_assert_eq(raw_int(misfiled_sql), 0);
	/* The schema keeps rule 1 per account: no row of a beyond 2. */
	refused("INSERT INTO slots (account, n) VALUES ('a', 2)",
	    "slots_account_n_key");
}

Test(store_pg, an_account_that_is_down_is_not_used)
{
	static const char *const b[] = {"b"};

	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	submit_n(st, "j", 2);
	store_accounts_up(st, b, 1);
	promote_on(st, "b");
	no_room(st); /* a is down */
	store_accounts_up(st, NULL, 0);
	promote_on(st, "a");
}

Test(store_pg, a_starting_job_moves_to_another_account)
{
	static const char *const b[] = {"b"};
	struct job j;

	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	submit_n(st, "j", 2);
	promote_on(st, "a"); /* j00 */
	store_accounts_up(st, b, 1);
	cr_assert_eq(
	    store_job_move(st, "j00", &j), STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(j.account, "b");
	cr_assert_eq(j.status, JOB_STARTING);
	job_cleanup(&j);
	cr_assert_eq(held_on(st, "a"), 0);
	cr_assert_eq(held_on(st, "b"), 1);
	cr_assert_eq(rows_of("a", 0), 2, "every account keeps its rows");
	cr_assert_eq(rows_of("b", 0), 1);
	cr_assert_eq(raw_int("SELECT count(*) FROM slots WHERE job_id = 'j00'"
	                     " AND account = 'b'"),
	    1);
	cr_assert_eq(raw_int(misfiled_sql), 0);
	/* No room on another account; not starting. */
	cr_assert_eq(store_job_move(st, "j00", &j), STORE_NOTFOUND);
	job_cleanup(&j);
	cr_assert_eq(store_job_move(st, "j01", &j), STORE_CONFLICT);
	job_cleanup(&j);
}

Test(store_pg, provider_cost_is_kept_with_a_running_job)
{
	json_t *cost = json_pack(
	    "{s:i, s:s, s:i}", "coins", 12, "money", "0.12", "seconds", 30);
	json_t *shown;
	struct job j;

	submit_ok(st, "j1", "u1");
	cr_assert_eq(store_job_cost(st, "j1", cost), STORE_CONFLICT, "queued");
	run_next(st, "j1");
	cr_assert_eq(
	    store_job_cost(st, "j1", cost), STORE_OK, "%s", store_error(st));
	cr_assert_eq(finish(st, "j1", JOB_COMPLETED, 1, &j), STORE_OK);
	cr_assert(json_equal(j.provider_cost, cost));
	shown = job_to_json(&j);
	cr_assert(json_equal(json_object_get(shown, "provider_cost"), cost));
	json_decref(shown);
	job_cleanup(&j);
	cr_assert_eq(store_job_cost(st, "j1", cost), STORE_CONFLICT, "ended");
	cr_assert_eq(store_job_cost(st, "nope", cost), STORE_CONFLICT);
	refused("UPDATE jobs SET provider_cost = '{}'", "terminal");
	json_decref(cost);
}

/* The schema keeps what the pools and the outbox add: one slot row per
 * place of an account, sizes >= 0, a terminal job's cost and account as
 * they ended, a delivery's state one of three. */
Test(store_pg, the_schema_keeps_places_costs_and_deliveries)
{
	json_t *cost = json_pack("{s:i}", "coins", 12);

	reopen_pools(two_pools, 2, STORE_HOOKS_TERMINAL);
	submit_ok(st, "j1", "u1");
	run_next(st, "j1");
	cr_assert_eq(store_job_cost(st, "j1", cost), STORE_OK);
	finish_ok(st, "j1", JOB_COMPLETED, 1);

	refused("INSERT INTO slots (account, n) VALUES ('b', 1)",
	    "slots_account_n_key");
	refused("UPDATE slots SET n = 1 WHERE account = 'a' AND n = 2",
	    "slots_account_n_key");
	refused("UPDATE accounts SET slots = -1 WHERE name = 'a'",
	    "accounts_slots_check");

	refused("UPDATE jobs SET provider_cost = '{\"coins\": 0}'"
	        " WHERE id = 'j1'",
	    "terminal");
	refused(
	    "UPDATE jobs SET provider_cost = NULL WHERE id = 'j1'", "terminal");
	refused("UPDATE jobs SET account = 'b' WHERE id = 'j1'", "terminal");
	refused("UPDATE jobs SET account = NULL WHERE id = 'j1'", "terminal");
	cr_assert_eq(raw_int("SELECT (provider_cost->>'coins')::int FROM jobs"
	                     " WHERE id = 'j1' AND account = 'a'"),
	    12);

	cr_assert_eq(count_of("outbox"), 1, "the completed event");
	refused("UPDATE outbox SET status = 'sent'", "outbox_status_check");
	refused("INSERT INTO outbox (event_id, job_id, status, next_at,"
	        " created_at) VALUES (0, 'j1', 'lost', 0, 0)",
	    "outbox_status_check");
	cr_assert(
	    raw_exec("UPDATE outbox SET status = 'failed'"), "%s", raw_err);
	json_decref(cost);
}

/* Processes promoting and ending jobs at once, half of them with only b
 * up: at no moment does an account hold more slots than its size. */
static int
child_churn_pools(struct store *s, int i, void *arg)
{
	static const char *const b[] = {"b"};
	int64_t end = mono_ms() + *(int *)arg;

	if (i % 2)
		store_accounts_up(s, b, 1);
	for (int k = 0; mono_ms() < end; k++) {
		char id[32], user[32], started[64] = "";
		struct job j;
		enum store_rc rc;

		snprintf(id, sizeof(id), "p%d_%d", i, k);
		snprintf(user, sizeof(user), "pu%d_%d", i, k);
		rc = submit_to(s, id, user, "upscaler", NULL, &j);
		job_cleanup(&j);
		if (rc == STORE_OK && (rc = store_promote(s, &j)) == STORE_OK)
			snprintf(started, sizeof(started), "%s", j.id);
		job_cleanup(&j);
		if (*started)
			rc = finish(s, started, JOB_CANCELLED, 1, &j);
		job_cleanup(&j);
		if (rc != STORE_OK && rc != STORE_NOTFOUND) {
			fprintf(stderr, "child %d: %s\n", i, store_error(s));
			return 1;
		}
	}
	return 0;
}

Test(store_pg, racing_promotes_never_overfill_an_account)
{
	enum { N = 4 };
	struct store_opts o = pools_opts(two_pools, 2, STORE_HOOKS_NONE);
	int ms = 1500, codes[N], looks = 0;
	char *over = xstrdup("");

	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	race_start(N, &o, child_churn_pools, &ms);
	while (!race_ended(codes, 0) && *over == '\0') {
		free(over);
		over = raw_text(over_full_sql);
		looks++;
	}
	cr_assert_str_empty(over, "after %d looks, over full: %s", looks, over);
	free(over);
	for (int i = 0; i < N; i++)
		cr_assert_eq(codes[i], 0, "child %d", i);
	cr_assert_gt(looks, 10);
	cr_assert_eq(raw_int(misfiled_sql), 0);
	cr_assert_eq(rows_of("a", 0), 2);
	cr_assert_eq(rows_of("b", 0), 1);
	cr_assert_gt(raw_int("SELECT count(*) FROM jobs WHERE account = 'a'"),
	    0, "a was used");
	cr_assert_gt(raw_int("SELECT count(*) FROM jobs WHERE account = 'b'"),
	    0, "b was used");
}

static int
child_move_one(struct store *s, int i, void *arg)
{
	char id[32];
	struct job j;
	enum store_rc rc;

	snprintf(id, sizeof(id), "%s%02d", (const char *)arg, i);
	rc = store_job_move(s, id, &j);
	job_cleanup(&j);
	return rc;
}

/* Processes moving different starting jobs to b's one free slot at
 * once: one gets it, the others hear there is no room. */
Test(store_pg, racing_moves_to_one_free_slot_give_it_once)
{
	enum { N = 4, ROUNDS = 5 };
	static const struct store_account pools[] = {{"a", N}, {"b", 1}};
	static const char *const a[] = {"a"};
	struct store_opts o = pools_opts(pools, 2, STORE_HOOKS_NONE);
	int codes[N];

	reopen_pools(pools, 2, STORE_HOOKS_NONE);
	for (int round = 0; round < ROUNDS; round++) {
		char prefix[16], id[32];
		int moved = 0, no_room = 0;

		snprintf(prefix, sizeof(prefix), "r%d_", round);
		submit_n(st, prefix, N);
		store_accounts_up(st, a, 1);
		for (int i = 0; i < N; i++)
			promote_on(st, "a");
		store_accounts_up(st, NULL, 0);

		race_start(N, &o, child_move_one, prefix);
		race_wait(codes);
		for (int i = 0; i < N; i++) {
			moved += codes[i] == STORE_OK;
			no_room += codes[i] == STORE_NOTFOUND;
		}
		cr_assert(moved == 1 && no_room == N - 1,
		    "round %d: %d moved, %d told no room (answers %d %d %d %d)",
		    round, moved, no_room, codes[0], codes[1], codes[2],
		    codes[3]);
		cr_assert_eq(rows_of("b", 1), 1);
		cr_assert_eq(rows_of("a", 1), N - 1);
		cr_assert_eq(
		    rows_of("a", 0), N, "every account keeps its rows");
		cr_assert_eq(rows_of("b", 0), 1);
		cr_assert_eq(raw_int(misfiled_sql), 0);
		for (int i = 0; i < N; i++) {
			snprintf(id, sizeof(id), "%s%02d", prefix, i);
			finish_ok(st, id, JOB_CANCELLED, 1);
		}
	}
}

/* ---- accounts at open ----------------------------------------------- */

/* Shrunk, an account keeps the rows its jobs hold, and they count: its
 * free row is not taken while it holds its size. */
Test(store_pg, a_shrunk_account_keeps_its_held_rows)
{
	static const struct store_account shrunk[] = {{"a", 1}, {"b", 1}};

	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	submit_n(st, "s", 4);
	promote_on(st, "a");
	promote_on(st, "a");
	promote_on(st, "b");
	cr_assert_eq(
	    raw_int("SELECT n FROM slots WHERE job_id = 's01'"), 2, "a's 2nd");

	reopen_pools(shrunk, 2, STORE_HOOKS_NONE);
	cr_assert_eq(raw_int("SELECT slots FROM accounts WHERE name = 'a'"), 1);
	cr_assert_eq(rows_of("a", 0), 2, "the held row beyond stays");
	cr_assert_eq(held_on(st, "a"), 2);
	finish_ok(st, "s00", JOB_CANCELLED, 1);
	cr_assert_eq(rows_of("a", 0), 2, "row 1 is within the size: kept");
	no_room(st);
	finish_ok(st, "s01", JOB_CANCELLED, 1);
	cr_assert_eq(rows_of("a", 0), 1, "released, the row beyond goes");
	promote_on(st, "a");
	no_room(st);
}

/* An account no longer configured keeps no room: size 0, its free rows
 * gone, its held rows kept until released. */
Test(store_pg, an_account_left_out_keeps_no_room)
{
	static const struct store_account only_a[] = {{"a", 2}};
	static const char *const b[] = {"b"};

	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	submit_n(st, "o", 5);
	promote_on(st, "a");
	promote_on(st, "a");
	promote_on(st, "b"); /* o02 */

	reopen_pools(only_a, 1, STORE_HOOKS_NONE);
	cr_assert_eq(raw_int("SELECT slots FROM accounts WHERE name = 'b'"), 0);
	cr_assert_eq(rows_of("b", 0), 1, "its held row stays");
	cr_assert_eq(held_on(st, "b"), 1, "and is counted");
	finish_ok(st, "o02", JOB_FAILED, 1);
	cr_assert_eq(rows_of("b", 0), 0, "released, it goes");
	cr_assert_eq(held_on(st, "b"), 0);
	no_room(st);
	finish_ok(st, "o00", JOB_FAILED, 1);
	store_accounts_up(st, b, 1);
	no_room(st);
	store_accounts_up(st, NULL, 0);
	promote_on(st, "a");
	no_room(st);

	/* Back in the config, it has its room again. */
	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	cr_assert_eq(rows_of("b", 0), 1);
	promote_on(st, "b");
}

/* A process holds its lease from its open: what it starts before its
 * first renewal is not taken over by another. */
Test(store_pg, a_process_holds_a_lease_from_its_open)
{
	int64_t t0 = now_ms();
	struct store *a = open_with(3, 1, "a"), *b;
	struct taken t = {0};
	int64_t until;

	cr_assert_eq(raw_int("SELECT count(*) FROM processes WHERE id = 'a'"),
	    1, "no lease taken at open");
	until = raw_int("SELECT lease_until FROM processes WHERE id = 'a'");
	cr_assert_geq(until, t0 + STORE_LEASE_MS);
	cr_assert_leq(until, now_ms() + STORE_LEASE_MS);
	submit_n(a, "l", 1);
	promote_ok(a, "l00");

	b = open_with(3, 1, "b");
	lease(b, 60000, 0, &t);
	cr_assert_eq(taken_n(&t), 0, "a's start is a's");
	cr_assert_eq(
	    raw_int("SELECT count(*) FROM jobs WHERE starter = 'a'"), 1);
	taken_cleanup(&t);
}

/* ---- usage and retention ---------------------------------------------- */

/* Upload id of user, of size bytes, made at (ms). */
static void
upload_at(
    struct store *s, const char *id, const char *user, int64_t size, int64_t at)
{
	struct upload u = {.id = (char *)id,
	    .user_id = (char *)user,
	    .type = "png",
	    .size = size,
	    .sha256 = "00",
	    .path = "/x",
	    .created_at = at};

	cr_assert_eq(store_upload_add(s, &u), STORE_OK, "%s", store_error(s));
}

Test(store_pg, usage_counts_a_users_recent_submits_and_uploads)
{
	int64_t n = -1, bytes = -1, oldest = -1, now = now_ms();

	submit_ok(st, "j1", "u1");
	finish_ok(st, "j1", JOB_CANCELLED, 1);
	submit_ok(st, "j2", "u1");
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
		snprintf(id, sizeof(id), "upl_%d", i);
		upload_at(st, id, "u1", 100 * (i + 1), now - i * 3600 * 1000LL);
	}
	upload_at(st, "upl_other", "u2", 7, now);
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
	cr_assert_eq(
	    store_user_uploads(st, "u3", 0, &n, &bytes, &oldest), STORE_OK);
	cr_assert(n == 0 && bytes == 0);
}

/* A submit's reads in one call: the uploads it names that are the user's
 * (a name twice, each its copy; another's or none, no id), and the
 * user's recent submits beside them when asked. */
Test(store_pg, a_submits_reads_come_in_one_call)
{
	const char *ids[] = {"upl_a", "upl_b", "upl_a", "upl_\"x\\", "nope"};
	struct upload up[5];
	int64_t n = -1, oldest = -1, now = now_ms();

	upload_at(st, "upl_a", "u1", 10, now);
	upload_at(st, "upl_b", "u2", 20, now);
	upload_at(st, "upl_\"x\\", "u1", 30, now);
	submit_ok(st, "j1", "u1");
	cr_assert_eq(store_submit_reads(
	                 st, "u1", ids, 5, up, now - 60000, 30, &n, &oldest),
	    STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(up[0].id, "upl_a");
	cr_assert_eq(up[0].size, 10);
	cr_assert_str_eq(up[0].type, "png");
	cr_assert_null(up[1].id, "another user's upload is not found");
	cr_assert_str_eq(up[2].id, "upl_a");
	cr_assert_str_eq(up[3].id, "upl_\"x\\");
	cr_assert_eq(up[3].size, 30);
	cr_assert_null(up[4].id);
	cr_assert_eq(n, 1);
	cr_assert_geq(oldest, now);
	for (int i = 0; i < 5; i++)
		upload_cleanup(&up[i]);

	cr_assert_eq(store_submit_reads(
	                 st, "u1", NULL, 0, NULL, now - 60000, 0, &n, &oldest),
	    STORE_OK, "%s", store_error(st));
	cr_assert(n == 0 && oldest == 0, "no count asked: none told");
}

Test(store_pg, old_uploads_are_listed_oldest_first_and_forgotten)
{
	struct upload_list l = {0};
	int64_t now = now_ms();

	for (int i = 0; i < 3; i++) {
		char id[16];
		snprintf(id, sizeof(id), "upl_%d", i);
		upload_at(st, id, "u1", 1, now - i * 1000);
	}
	cr_assert_eq(store_uploads_older(st, now - 500, 10, &l), STORE_OK);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.v[0].id, "upl_2");
	cr_assert_str_eq(l.v[1].id, "upl_1");
	cr_assert_eq(l.v[0].created_at, now - 2000);
	upload_list_cleanup(&l);
	cr_assert_eq(store_uploads_older(st, now - 500, 1, &l), STORE_OK);
	cr_assert_eq(l.n, 1, "at most limit");
	cr_assert_str_eq(l.v[0].id, "upl_2");
	upload_list_cleanup(&l);
	cr_assert_eq(store_upload_delete(st, "upl_2"), STORE_OK);
	cr_assert_eq(store_upload_delete(st, "upl_2"), STORE_OK, "a no-op");
	cr_assert_eq(store_uploads_older(st, now - 500, 10, &l), STORE_OK);
	cr_assert_eq(l.n, 1);
	upload_list_cleanup(&l);
	cr_assert_eq(count_of("uploads"), 2);
}

/* ---- the outbox --------------------------------------------------------- */

/* Claim up to limit deliveries due at now through s, for 30 s, into l
 * (cleaned first). */
static void
claim(struct store *s, int64_t now, int limit, struct store_delivery_list *l)
{
	store_delivery_list_cleanup(l);
	cr_assert_eq(store_outbox_claim(s, now, 30000, limit, l), STORE_OK,
	    "%s", store_error(s));
}

/* st, opened again on the default account with hooks. */
static void
reopen_hooked(enum store_hooks hooks)
{
	struct store_opts o = opts(3, 1, NULL);

	o.hooks = hooks;
	close_store(st);
	st = open_opts(&o);
}

Test(store_pg, terminal_events_become_webhooks_with_their_change)
{
	struct store_delivery_list l = {0};
	int64_t pending = -1, failed = -1;

	reopen_hooked(STORE_HOOKS_TERMINAL);
	submit_ok(st, "j1", "u1");
	run_next(st, "j1");
	cr_assert_eq(count_of("outbox"), 0, "queued, starting, running: none");
	finish_ok(st, "j1", JOB_COMPLETED, 1);
	claim(st, now_ms(), 10, &l);
	cr_assert_eq(l.n, 1);
	cr_assert_str_eq(l.v[0].status, "completed");
	cr_assert_str_eq(l.v[0].job_id, "j1");
	cr_assert_str_eq(l.v[0].state, "pending");
	cr_assert_not_null(strstr(l.v[0].data, "\"status\":\"completed\""));
	cr_assert_eq(l.v[0].event_id,
	    raw_int("SELECT max(id) FROM events WHERE job_id = 'j1'"));
	/* Claimed: no other claim gets it meanwhile. */
	claim(st, now_ms(), 10, &l);
	cr_assert_eq(l.n, 0);
	cr_assert_eq(store_outbox_counts(st, &pending, &failed), STORE_OK);
	cr_assert_eq(pending, 1);
	cr_assert_eq(failed, 0);
	store_delivery_list_cleanup(&l);
}

Test(store_pg, a_jobs_webhooks_go_in_order_retried_then_failed)
{
	struct store_delivery_list l = {0};
	int64_t now, first, pending = -1, failed = -1;

	reopen_hooked(STORE_HOOKS_ALL);
	submit_ok(st, "j1", "u1");
	submit_ok(st, "j2", "u2");
	run_next(st, "j1");
	now = now_ms();
	cr_assert_eq(count_of("outbox"), 4, "queued ×2, starting, running");
	/* The oldest pending of each job only. */
	claim(st, now, 10, &l);
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
	claim(st, now + 1000, 10, &l);
	cr_assert_eq(l.n, 0, "j1 waits for its first; j2 has no more");
	claim(st, now + 5000, 10, &l);
	cr_assert_eq(l.n, 1);
	cr_assert_eq(l.v[0].event_id, first);
	cr_assert_eq(l.v[0].attempts, 1);
	cr_assert_str_eq(l.v[0].last_error, "HTTP 500");
	/* Given up: the next of j1 goes. */
	cr_assert_eq(store_outbox_done(st, first, 0, 0, "HTTP 500"), STORE_OK);
	claim(st, now + 6000, 10, &l);
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
	cr_assert_eq(l.v[0].attempts, 2);
	store_delivery_list_cleanup(&l);
	cr_assert_eq(store_outbox_list(st, NULL, first, 0, &l), STORE_OK);
	cr_assert_eq(l.n, 3, "after the first, any state");
	cr_assert_str_eq(l.v[0].state, "delivered");
	store_delivery_list_cleanup(&l);
	finish_ok(st, "j1", JOB_COMPLETED, 1);
	cr_assert_eq(count_of("outbox"), 5);
}

Test(store_pg, no_webhooks_without_hooks)
{
	submit_ok(st, "j1", "u1");
	run_next(st, "j1");
	finish_ok(st, "j1", JOB_COMPLETED, 1);
	cr_assert_eq(count_of("outbox"), 0);
}

static int
has_delivery(
    const struct store_delivery_list *l, const char *job_id, const char *status)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->v[i].job_id, job_id) == 0 &&
		    strcmp(l->v[i].status, status) == 0)
			return 1;
	return 0;
}

/* A claim in flight holds its rows (FOR UPDATE SKIP LOCKED): a claim
 * through another handle at that moment takes the others, never the same,
 * and not the next of a job whose delivery is in flight. */
Test(store_pg, claims_at_once_take_different_deliveries_in_job_order)
{
	struct store_delivery_list mine = {0}, theirs = {0};
	struct store *other;

	reopen_hooked(STORE_HOOKS_ALL);
	other = open_with(3, 1, NULL);
	submit_n(st, "d", 4);
	finish_ok(st, "d00", JOB_CANCELLED, 1); /* d00's second */

	store_group(st, 1);
	claim(st, now_ms(), 2, &mine);
	cr_assert_eq(mine.n, 2);
	cr_assert(has_delivery(&mine, "d00", "queued"));
	cr_assert(has_delivery(&mine, "d01", "queued"));
	claim(other, now_ms(), 10, &theirs);
	cr_assert_eq(theirs.n, 2, "the two not in flight");
	cr_assert(has_delivery(&theirs, "d02", "queued"));
	cr_assert(has_delivery(&theirs, "d03", "queued"));

	/* Delivered, not yet committed: d00's next still waits. */
	cr_assert_eq(
	    store_outbox_done(st, mine.v[0].event_id, 1, 0, NULL), STORE_OK);
	claim(other, now_ms(), 10, &theirs);
	cr_assert_eq(theirs.n, 0);
	cr_assert_eq(store_sync(st), STORE_OK, "%s", store_error(st));
	store_group(st, 0);
	claim(other, now_ms(), 10, &theirs);
	cr_assert_eq(theirs.n, 1);
	cr_assert(has_delivery(&theirs, "d00", "cancelled"));
	claim(st, now_ms(), 10, &mine);
	cr_assert_eq(mine.n, 0, "the rest are claimed");
	store_delivery_list_cleanup(&mine);
	store_delivery_list_cleanup(&theirs);
}

/* ---- the outbox, racing deliverers ------------------------------------ */

#define RACE_EVENTS 256

/* What racing deliverers did, in memory the forked children share. A
 * ticket is taken from clock at each step, so steps can be ordered. */
struct seen {
	atomic_int producing;                /* the parent still makes events */
	atomic_llong clock;                  /* the last ticket taken */
	atomic_int held[RACE_EVENTS];        /* claimed, not yet done */
	atomic_int doubles;                  /* claimed while held by another */
	atomic_int twins;                    /* two of one job in one claim */
	atomic_llong claimed[RACE_EVENTS];   /* its first claim's ticket */
	atomic_llong delivered[RACE_EVENTS]; /* as its delivered mark began */
};

static long long
tick(struct seen *seen)
{
	return atomic_fetch_add(&seen->clock, 1) + 1;
}

/* Note what one claim took; 0 when it took an id beyond RACE_EVENTS. */
static int
note_claim(struct seen *seen, const struct store_delivery_list *l)
{
	for (size_t k = 0; k < l->n; k++) {
		int64_t id = l->v[k].event_id;
		long long never = 0;

		if (id <= 0 || id >= RACE_EVENTS)
			return 0;
		if (atomic_exchange(&seen->held[id], 1))
			atomic_fetch_add(&seen->doubles, 1);
		atomic_compare_exchange_strong(
		    &seen->claimed[id], &never, tick(seen));
		for (size_t m = 0; m < k; m++)
			if (strcmp(l->v[m].job_id, l->v[k].job_id) == 0)
				atomic_fetch_add(&seen->twins, 1);
	}
	return 1;
}

/* Attempt d: every third delivery fails once first, due again at once. */
static enum store_rc
deliver(struct store *s, struct seen *seen, const struct store_delivery *d)
{
	int ok = d->attempts > 0 || d->event_id % 3 != 0;

	/* Still claimed in the store until its mark commits. */
	atomic_store(&seen->held[d->event_id], 0);
	if (ok)
		atomic_store(&seen->delivered[d->event_id], tick(seen));
	return store_outbox_done(
	    s, d->event_id, ok, ok ? 0 : now_ms(), ok ? NULL : "HTTP 500");
}

/* Claim and deliver, a few at a time, until nothing is left to do. */
static int
child_deliver(struct store *s, int i, void *arg)
{
	struct seen *seen = arg;
	struct store_delivery_list l = {0};
	int64_t end = mono_ms() + 20000, pending = 1, failed;
	int code = 0;

	while (code == 0 && (atomic_load(&seen->producing) || pending > 0)) {
		if (store_outbox_claim(s, now_ms(), 30000, 4, &l) != STORE_OK ||
		    !note_claim(seen, &l))
			code = 1;
		for (size_t k = 0; code == 0 && k < l.n; k++)
			if (deliver(s, seen, &l.v[k]) != STORE_OK)
				code = 1;
		if (code == 0 && l.n == 0)
			usleep(1000);
		store_delivery_list_cleanup(&l);
		if (code == 0 &&
		    store_outbox_counts(s, &pending, &failed) != STORE_OK)
			code = 1;
		if (code == 0 && mono_ms() > end)
			code = 2;
	}
	if (code == 1)
		fprintf(stderr, "child %d: %s\n", i, store_error(s));
	return code;
}

/* Each job's deliveries in order: none claimed before the one before it
 * of its job was marked delivered. */
static void
assert_job_order(struct seen *seen, int pairs)
{
	PGresult *r = PQexec(raw, "SELECT event_id, lag(event_id) OVER"
	                          " (PARTITION BY job_id ORDER BY event_id)"
	                          " FROM outbox");
	int n = 0;

	cr_assert_eq(
	    PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
	for (int i = 0; i < PQntuples(r); i++) {
		long id = atol(PQgetvalue(r, i, 0));
		long before = atol(PQgetvalue(r, i, 1));
		if (PQgetisnull(r, i, 1))
			continue;
		cr_assert_lt(id, RACE_EVENTS);
		cr_assert_gt(atomic_load(&seen->claimed[id]),
		    atomic_load(&seen->delivered[before]),
		    "delivery %ld was claimed before %ld, the one before it"
		    " of its job, was delivered",
		    id, before);
		n++;
	}
	PQclear(r);
	cr_assert_eq(n, pairs);
}

/* Processes claiming and delivering while jobs move: no delivery is
 * claimed by two at once, none delivered twice, each job's in order. */
Test(store_pg, racing_deliverers_never_share_one_and_keep_job_order)
{
	enum { N = 4, JOBS = 15 };
	struct store_opts o = opts(3, 1, NULL);
	struct seen *seen = mmap(NULL, sizeof(*seen), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int codes[N];

	cr_assert_neq(seen, MAP_FAILED);
	reopen_hooked(STORE_HOOKS_ALL);
	atomic_store(&seen->producing, 1);
	race_start(N, &o, child_deliver, seen);
	submit_n(st, "e", JOBS);
	for (int i = 0; i < JOBS; i++) {
		char id[16];
		snprintf(id, sizeof(id), "e%02d", i);
		run_next(st, id);
		finish_ok(st, id, JOB_COMPLETED, 1);
	}
	atomic_store(&seen->producing, 0);
	race_wait(codes);
	for (int i = 0; i < N; i++)
		cr_assert_eq(codes[i], 0, "child %d", i);

	cr_assert_eq(atomic_load(&seen->doubles), 0, "claimed by two at once");
	cr_assert_eq(atomic_load(&seen->twins), 0, "two of a job in a claim");
	cr_assert_eq(count_of("outbox"), 4 * JOBS);
	cr_assert_eq(raw_int("SELECT count(*) FROM outbox"
	                     " WHERE status <> 'delivered'"),
	    0);
	cr_assert_eq(raw_int("SELECT count(*) FROM outbox WHERE attempts <>"
	                     " CASE WHEN event_id % 3 = 0 THEN 2 ELSE 1 END"),
	    0, "each attempted as planned: none twice");
	assert_job_order(seen, 3 * JOBS);
	munmap(seen, sizeof(*seen));
}

/* ---- a move racing its job's end ------------------------------------- */

/* Fork one child more, at once: it opens a handle with o and runs
 * fn(s, i, arg); race_wait() waits for it too. */
static void
race_spawn(const struct store_opts *o,
    int (*fn)(struct store *s, int i, void *arg), void *arg)
{
	pid_t pid;

	cr_assert_lt(nkids, MAX_CHILDREN);
	fflush(NULL);
	pid = fork();
	cr_assert_neq(pid, -1);
	if (pid == 0) {
		char err[512];
		struct store *s = store_open(pg_url, o, err, sizeof(err));
		int code = 99;
		if (s == NULL)
			fprintf(stderr, "child %d: %s\n", nkids, err);
		else
			code = fn(s, nkids, arg);
		store_free(s);
		_exit(code);
	}
	kids[nkids++] = pid;
}

/* The session of a call of fn waiting for a lock held by one of the
 * sessions pids ("1, 2"): its pid, 0 when none. */
static int
lock_waiter(const char *fn, const char *pids)
{
	char *sql = xasprintf("SELECT coalesce(max(pid), 0) FROM"
	                      " pg_stat_activity WHERE wait_event_type ="
	                      " 'Lock' AND query LIKE '%%%s(%%' AND"
	                      " pg_blocking_pids(pid) && ARRAY[%s]",
	    fn, pids);
	int pid = (int)raw_int(sql);

	free(sql);
	return pid;
}

/* The same, waited for (5 s at most). */
static int
waiting_in(const char *fn, const char *pids)
{
	int64_t end = mono_ms() + 5000;
	int pid;

	while ((pid = lock_waiter(fn, pids)) == 0 && mono_ms() < end)
		usleep(5000);
	cr_assert_gt(pid, 0, "no call of %s waits on %s", fn, pids);
	return pid;
}

/* Hold job id's slot row from a second raw session until let_go(), so
 * that calls coming to it wait, lined up; its pid into pid. */
static void
hold_slot_of(const char *id, char *pid, size_t len)
{
	char *sql = xasprintf("SET search_path = %s; BEGIN; SELECT 1 FROM"
	                      " slots WHERE job_id = '%s' FOR UPDATE",
	    schema, id);
	PGresult *r;

	holder = PQconnectdb(pg_url);
	cr_assert_eq(
	    PQstatus(holder), CONNECTION_OK, "%s", PQerrorMessage(holder));
	r = PQexec(holder, sql);
	cr_assert_eq(
	    PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQresultErrorMessage(r));
	PQclear(r);
	free(sql);
	snprintf(pid, len, "%d", PQbackendPID(holder));
}

static void
let_go(void)
{
	PQclear(PQexec(holder, "ROLLBACK"));
}

static int
child_move_id(struct store *s, int i, void *arg)
{
	struct job j;
	enum store_rc rc = store_job_move(s, arg, &j);

	if (rc == STORE_ERROR)
		fprintf(stderr, "child %d, move: %s\n", i, store_error(s));
	job_cleanup(&j);
	return rc;
}

static int
child_cancel_id(struct store *s, int i, void *arg)
{
	struct job j;
	enum store_rc rc = finish(s, arg, JOB_CANCELLED, 1, &j);

	if (rc == STORE_ERROR)
		fprintf(stderr, "child %d, cancel: %s\n", i, store_error(s));
	job_cleanup(&j);
	return rc;
}

static int
child_running_id(struct store *s, int i, void *arg)
{
	struct job j;
	enum store_rc rc = store_job_running(s, arg, "task-1", &j);

	if (rc == STORE_ERROR)
		fprintf(stderr, "child %d, running: %s\n", i, store_error(s));
	job_cleanup(&j);
	return rc;
}

/* Job m00 starting on a, with b's slot free. */
static void
start_one_on_a(void)
{
	static const char *const a[] = {"a"};

	reopen_pools(two_pools, 2, STORE_HOOKS_NONE);
	submit_n(st, "m", 1);
	store_accounts_up(st, a, 1);
	promote_on(st, "a");
	store_accounts_up(st, NULL, 0);
}

/* A move and a cancel of one starting job at once: one goes first, the
 * other follows it or hears the job moved on; neither fails. The move
 * comes first to the job's slot row, held meanwhile, then the cancel. */
Test(store_pg, a_move_racing_its_jobs_cancel_fails_neither)
{
	struct store_opts o = pools_opts(two_pools, 2, STORE_HOOKS_NONE);
	char held_by[16], pids[64];
	int codes[2], mover;

	start_one_on_a();
	hold_slot_of("m00", held_by, sizeof(held_by));
	race_spawn(&o, child_move_id, "m00");
	mover = waiting_in("fila_move", held_by);
	snprintf(pids, sizeof(pids), "%s, %d", held_by, mover);
	race_spawn(&o, child_cancel_id, "m00");
	waiting_in("fila_finish", pids);
	let_go();

	race_wait(codes);
	cr_assert(codes[0] == STORE_OK || codes[0] == STORE_CONFLICT,
	    "the move answered %d", codes[0]);
	cr_assert_eq(codes[1], STORE_OK, "the cancel answered %d", codes[1]);
	cr_assert_eq(status_of(st, "m00"), JOB_CANCELLED);
	cr_assert_eq(used_slots(st), 0);
}

/* A job that starts running while a move of it waits is not moved: its
 * task runs on the account it was sent to. Either the running waits for
 * the move (then it runs where it moved), or the move hears the job is
 * not starting any more. */
Test(store_pg, a_job_running_meanwhile_is_not_moved)
{
	struct store_opts o = pools_opts(two_pools, 2, STORE_HOOKS_NONE);
	char held_by[16], pids[16];
	int codes[2], waited = 0;
	int64_t end = mono_ms() + 5000;
	char runs_on[16], *t;

	start_one_on_a();
	hold_slot_of("m00", held_by, sizeof(held_by));
	race_spawn(&o, child_move_id, "m00");
	snprintf(pids, sizeof(pids), "%d", waiting_in("fila_move", held_by));
	race_spawn(&o, child_running_id, "m00");
	while (!kid_ended(1, codes, 0) &&
	       !(waited = lock_waiter("fila_running", pids) > 0) &&
	       mono_ms() < end)
		usleep(5000);
	let_go();

	race_wait(codes);
	cr_assert_eq(codes[1], STORE_OK, "the running answered %d", codes[1]);
	cr_assert_eq(status_of(st, "m00"), JOB_RUNNING);
	t = raw_text("SELECT account FROM jobs WHERE id = 'm00'");
	snprintf(runs_on, sizeof(runs_on), "%s", t);
	free(t);
	cr_assert_eq(codes[0], waited ? STORE_OK : STORE_CONFLICT,
	    "the move answered %d, the running %s; the job runs on %s",
	    codes[0], waited ? "waited" : "did not wait", runs_on);
	cr_assert_str_eq(runs_on, waited ? "b" : "a");
	cr_assert_eq(raw_int(misfiled_sql), 0);
}
