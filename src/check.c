/*
 * check.c — `fila check`: an independent verifier of a store, SQLite or
 * PostgreSQL. It shares no code with the store it checks: it opens the
 * database itself, only reads, and asks each invariant of docs/api.md §4
 * with its own SQL, so a bug in store_sqlite.c or store_pg.c cannot hide
 * behind itself.
 *
 * Three ideas to read it by. First, a rule is one query whose rows are its
 * breaches, and a line with a "%s" for each column of a row, so a rule is
 * one entry of rules[] and the C only prints. One SQL text serves both
 * databases but where their dialects part (reading the event log's JSON):
 * there a rule has a PostgreSQL text too. Second, the whole check reads
 * one snapshot (one read-only transaction), so a daemon still running on
 * the store cannot show it half of a change; what may legitimately lag (a
 * slot kept while a provider cancel is pending, a watchdog that is
 * stopped) is given a grace period. Third, under the rules sits a driver
 * per database (struct driver): run a query, hand each row over as text.
 *
 * Uploads are the one rule in C: which inputs name uploads comes from the
 * tools of the configuration, and whether the file exists from the disk.
 */
#include "check.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "jsonr.h"
#include "util.h"

#define BUSY_TIMEOUT_MS 5000
#define GRACE_S 60    /* a stopped watchdog, a pending provider cancel */
#define MAX_COLS 8    /* the most columns a query of the check answers */
#define JOBS_PAGE 500 /* jobs read at a time for the uploads rule */
#define N_PARAMS 8    /* struct param, params_init() */

enum level { BREACH, WARNING };

struct checker;

/* One row of a query: its columns as text, NULL for SQL's NULL; valid
 * during the call only. */
typedef void row_fn(
    struct checker *c, void *arg, const char *const *col, int ncol);

/* A database the check can read. */
struct driver {
	/* Open url (the checker's cfg says the rest): 0, or -1 after a
	 * "check: …" line. */
	int (*open)(struct checker *c, const char *url);
	/* Run sql, with arg (if not NULL) as its parameter $1, calling fn
	 * (if not NULL) on each row: 0, or -1 with the error in c->err. */
	int (*query)(struct checker *c, const char *sql, const char *arg,
	    row_fn *fn, void *fnarg);
	void (*close)(struct checker *c);
	const char *begin;  /* one read-only snapshot */
	const char *tables; /* how many of TABLES are there */
	/* The schema versions whose tables the rules read. */
	int64_t oldest, newest;
	int postgres; /* the rules' PostgreSQL texts apply */
};

/* A named parameter of the rules: ":name" in their SQL, an integer. */
struct param {
	const char *name;
	int64_t v;
};

struct checker {
	const struct config *cfg;
	const struct driver *db;
	sqlite3 *lite;
	PGconn *pg;
	char *store; /* what is checked, in messages */
	struct param params[N_PARAMS];
	FILE *out;
	int breaches;
	int warnings;
	int failed;    /* a query could not run: the check is not complete */
	char err[512]; /* the last query's error */
};

/* One invariant: every row of sql is one line at level. */
struct rule {
	enum level level;
	const char *say; /* the line; each "%s" the next column, as text */
	/* The query: one for both, or SQLite's and PostgreSQL's. */
	const char *sql[2];
};

#define TERMINAL "('completed', 'failed', 'cancelled')"
#define ACTIVE "('queued', 'starting', 'running')"
/* The tables a store has, whatever its version. */
#define TABLES "('users', 'ledger', 'uploads', 'jobs', 'slots', 'events')"
#define N_TABLES 6
/* Is prev → st one of docs/api.md §3's arrows (or no move at all)? */
#define ARROW(prev, st)                                                        \
	"(" st " = " prev " OR (" prev " = 'queued' AND " st                   \
	" IN ('starting', 'cancelled', 'failed')) OR (" prev                   \
	" = 'starting' AND " st " IN ('running', 'failed', 'cancelled'))"      \
	" OR (" prev " = 'running' AND " st " IN " TERMINAL "))"

/*
 * Where the dialects part: an event's data is text that may not be JSON,
 * and reading a field must not fail on it (the rule says so instead).
 * SQLite tests it with json_valid(); PostgreSQL 15 cannot without a
 * function, so the check brings its own, pg_temp.json_valid (pg_open):
 * it lives in the session, nothing of the store is written. X_FIELD(col,
 * key) is the field's value as text, NULL when col is not JSON.
 */
/* clang-format off */
#define LITE_VALID(col) "json_valid(" col ")"
#define LITE_FIELD(col, key) \
	"CASE WHEN json_valid(" col ") THEN json_extract(" col ", '$." key "')" \
	" END"
#define PG_VALID(col) "pg_temp.json_valid(" col ")"
#define PG_FIELD(col, key) \
	"CASE WHEN pg_temp.json_valid(" col ") THEN " col "::json ->> '" key "'" \
	" END"

/* The rules that read the event log's JSON, in dialect D (LITE or PG). */
#define EV_NOT_JSON(D) \
	"SELECT id, job_id FROM events" \
	" WHERE " D##_FIELD("data", "status") " IS NULL"
#define EV_OTHER_JOB(D) \
	"SELECT id, job_id, " D##_FIELD("data", "id") " FROM events" \
	" WHERE " D##_VALID("data") \
	" AND " D##_FIELD("data", "id") " IS DISTINCT FROM job_id"
#define EV_OTHER_STATUS(D) \
	"SELECT id, job_id, coalesce(status, 'nothing'), " \
	D##_FIELD("data", "status") " FROM events" \
	" WHERE status IS DISTINCT FROM " D##_FIELD("data", "status")
#define EV_ARROWS(D) \
	"SELECT job_id, id, st, prev_id, prev FROM (SELECT id, job_id, " \
	D##_FIELD("data", "status") " AS st," \
	" lag(" D##_FIELD("data", "status") ") OVER w AS prev," \
	" lag(id) OVER w AS prev_id FROM events" \
	" WINDOW w AS (PARTITION BY job_id ORDER BY id)) AS x" \
	" WHERE st IS NOT NULL AND prev IS NOT NULL" \
	" AND NOT " ARROW("prev", "st")
#define EV_LAST(D) \
	"SELECT j.id, j.status, coalesce(CAST(e.id AS TEXT), 'none')," \
	" coalesce(" D##_FIELD("e.data", "status") ", 'nothing')" \
	" FROM jobs j LEFT JOIN (SELECT job_id, max(id) AS id FROM events" \
	" GROUP BY job_id) AS m ON m.job_id = j.id" \
	" LEFT JOIN events e ON e.id = m.id" \
	" WHERE e.id IS NULL OR (" D##_VALID("e.data") \
	" AND " D##_FIELD("e.data", "status") " IS DISTINCT FROM j.status)"
#define BOTH(RULE) RULE(LITE), RULE(PG)

/*
 * The parameters a rule may name: :slots, :per_user, :now (ms),
 * :queue_timeout and :run_timeout (s), :queue_limit and :run_limit (ms,
 * the timeouts plus the grace), :hold_limit (ms).
 */
static const struct rule rules[] = {
	/* ---- credits (rule 4) ---- */
	{BREACH, "user %s: grants - charges + refunds = %s, balance = %s",
	    {"SELECT u.id, coalesce(sum(l.amount), 0), u.balance"
	    " FROM users u LEFT JOIN ledger l ON l.user_id = u.id"
	    " GROUP BY u.id, u.balance"
	    " HAVING coalesce(sum(l.amount), 0) <> u.balance"}},
	{BREACH, "user %s: balance = %s, below 0",
	    {"SELECT id, balance FROM users WHERE balance < 0"}},
	/* The first entry that disagrees, and how many do. */
	{BREACH, "user %s: ledger entry %s has balance_after = %s, the"
	    " entries up to it sum to %s (%s entries disagree)",
	    {"SELECT user_id, id, balance_after, running, bad FROM (SELECT"
	    " user_id, id, balance_after, running, row_number() OVER"
	    " (PARTITION BY user_id ORDER BY id) AS k, count(*) OVER"
	    " (PARTITION BY user_id) AS bad FROM (SELECT id, user_id,"
	    " balance_after, sum(amount) OVER (PARTITION BY user_id ORDER BY"
	    " id) AS running FROM ledger) AS l WHERE running <> balance_after"
	    " OR balance_after < 0) AS b WHERE k = 1"}},
	{BREACH, "ledger entry %s: user %s does not exist",
	    {"SELECT id, user_id FROM ledger l"
	    " WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = l.user_id)"}},
	{BREACH, "job %s: %s %s entries in the ledger",
	    {"SELECT job_id, count(*), kind FROM ledger"
	    " WHERE job_id IS NOT NULL GROUP BY job_id, kind"
	    " HAVING count(*) > 1"}},
	{BREACH, "ledger entry %s: a %s without a job",
	    {"SELECT id, kind FROM ledger WHERE kind <> 'grant'"
	    " AND job_id IS NULL"}},
	{BREACH, "ledger entry %s: %s of job %s, which does not exist",
	    {"SELECT l.id, l.kind, l.job_id FROM ledger l"
	    " WHERE l.job_id IS NOT NULL"
	    " AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = l.job_id)"}},
	{BREACH, "ledger entry %s: %s of job %s is filed under user %s, the"
	    " job is user %s's",
	    {"SELECT l.id, l.kind, j.id, l.user_id, j.user_id FROM ledger l"
	    " JOIN jobs j ON j.id = l.job_id WHERE l.user_id <> j.user_id"}},
	{BREACH, "job %s: charged = %s with %s charge entries in the ledger"
	    " (want charged = 1 and one charge)",
	    {"SELECT j.id, j.charged, count(l.kind) FROM jobs j"
	    " LEFT JOIN ledger l ON l.job_id = j.id AND l.kind = 'charge'"
	    " GROUP BY j.id, j.charged"
	    " HAVING j.charged <> 1 OR count(l.kind) <> 1"}},
	{BREACH, "job %s: %s of %s for a cost of %s",
	    {"SELECT j.id, l.kind, l.amount, j.cost FROM jobs j JOIN ledger l"
	    " ON l.job_id = j.id WHERE (l.kind = 'charge'"
	    " AND l.amount <> -j.cost) OR (l.kind = 'refund'"
	    " AND l.amount <> j.cost)"}},
	{BREACH, "job %s is %s but was refunded (ledger entry %s)",
	    {"SELECT j.id, j.status, l.id FROM jobs j JOIN ledger l"
	    " ON l.job_id = j.id AND l.kind = 'refund'"
	    " WHERE j.status NOT IN ('failed', 'cancelled')"}},
	{BREACH, "job %s is %s and was charged, but has no refund",
	    {"SELECT id, status FROM jobs j"
	    " WHERE status IN ('failed', 'cancelled') AND charged = 1"
	    " AND NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = j.id"
	    " AND kind = 'refund')"}},
	{BREACH, "job %s: refunded = %s, but the ledger has %s refund",
	    {"SELECT id, refunded, CASE WHEN r = 1 THEN 'a' ELSE 'no' END"
	    " FROM (SELECT id, refunded, CASE WHEN EXISTS (SELECT 1 FROM"
	    " ledger WHERE job_id = j.id AND kind = 'refund') THEN 1 ELSE 0"
	    " END AS r FROM jobs j) AS x WHERE refunded <> r"}},

	/* ---- slots (rule 1) ---- */
	{BREACH, "the accounts have %s slots in all, queue.slots = %s",
	    {"SELECT coalesce(sum(slots), 0), :slots FROM accounts"
	    " HAVING coalesce(sum(slots), 0) <> :slots"}},
	{BREACH, "slot %s of account %s is missing",
	    {"WITH RECURSIVE n(account, i, top) AS (SELECT name, 1, slots"
	    " FROM accounts WHERE slots >= 1 UNION ALL SELECT account, i + 1,"
	    " top FROM n WHERE i < top) SELECT i, account FROM n"
	    " WHERE NOT EXISTS (SELECT 1 FROM slots s"
	    " WHERE s.account = n.account AND s.n = n.i)"}},
	{BREACH, "slot %s of account %s is beyond its %s slots",
	    {"SELECT s.n, s.account, coalesce(a.slots, 0) FROM slots s"
	    " LEFT JOIN accounts a ON a.name = s.account"
	    " WHERE (s.n > coalesce(a.slots, 0) OR s.n < 1)"
	    " AND s.job_id IS NULL"}},
	/* A shrink keeps held rows until their jobs let go. */
	{WARNING, "slot %s of account %s beyond its %s slots is still held"
	    " by job %s",
	    {"SELECT s.n, s.account, coalesce(a.slots, 0), s.job_id FROM slots s"
	    " LEFT JOIN accounts a ON a.name = s.account"
	    " WHERE (s.n > coalesce(a.slots, 0) OR s.n < 1)"
	    " AND s.job_id IS NOT NULL"}},
	{BREACH, "account %s holds %s slots, its slots = %s",
	    {"SELECT s.account, count(*), a.slots FROM slots s"
	    " JOIN accounts a ON a.name = s.account WHERE s.job_id IS NOT NULL"
	    " GROUP BY s.account, a.slots HAVING count(*) > a.slots"}},
	{BREACH, "job %s is %s on account %s but holds a slot of account %s",
	    {"SELECT j.id, j.status, coalesce(j.account, ''), s.account"
	    " FROM jobs j JOIN slots s ON s.job_id = j.id"
	    " WHERE j.status IN ('starting', 'running')"
	    " AND j.account IS DISTINCT FROM s.account"}},
	{BREACH, "%s slots are held, queue.slots = %s",
	    {"SELECT count(*), :slots FROM slots WHERE job_id IS NOT NULL"
	    " HAVING count(*) > :slots"}},
	{BREACH, "%s jobs are starting or running, queue.slots = %s",
	    {"SELECT count(*), :slots FROM jobs"
	    " WHERE status IN ('starting', 'running') HAVING count(*) > :slots"}},
	{BREACH, "job %s is %s but holds no slot",
	    {"SELECT id, status FROM jobs j"
	    " WHERE status IN ('starting', 'running')"
	    " AND NOT EXISTS (SELECT 1 FROM slots WHERE job_id = j.id)"}},
	{BREACH, "slot %s is held by job %s, which does not exist",
	    {"SELECT id, job_id FROM slots s WHERE job_id IS NOT NULL"
	    " AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = s.job_id)"}},
	{BREACH, "slot %s is held by job %s, which is queued",
	    {"SELECT s.id, j.id FROM slots s JOIN jobs j ON j.id = s.job_id"
	    " WHERE j.status = 'queued'"}},
	/* A terminal job keeps its slot until the provider lets go. */
	{WARNING, "slot %s is still held by job %s, %s %s s ago",
	    {"SELECT s.id, j.id, j.status,"
	    " (:now - coalesce(j.finished_at, j.updated_at)) / 1000"
	    " FROM slots s JOIN jobs j ON j.id = s.job_id"
	    " WHERE j.status IN " TERMINAL
	    " AND coalesce(j.finished_at, j.updated_at) < :now - :hold_limit"}},

	/* ---- nothing stuck (rule 6), one active job (rule 3) ---- */
	{BREACH, "job %s: stuck, queued for %s s (queue.queue_timeout = %s s)",
	    {"SELECT id, (:now - created_at) / 1000, :queue_timeout FROM jobs"
	    " WHERE status = 'queued' AND created_at < :now - :queue_limit"}},
	{BREACH, "job %s: stuck, %s for %s s (queue.run_timeout = %s s)",
	    {"SELECT id, status, (:now - coalesce(started_at, created_at))"
	    " / 1000, :run_timeout FROM jobs"
	    " WHERE status IN ('starting', 'running')"
	    " AND coalesce(started_at, created_at) < :now - :run_limit"}},
	{BREACH, "user %s has %s active jobs, queue.per_user_active = %s",
	    {"SELECT user_id, count(*), :per_user FROM jobs"
	    " WHERE status IN " ACTIVE " GROUP BY user_id"
	    " HAVING count(*) > :per_user"}},
	{BREACH, "job %s is %s but has no finished_at",
	    {"SELECT id, status FROM jobs WHERE status IN " TERMINAL
	    " AND finished_at IS NULL"}},
	{BREACH, "job %s: user %s does not exist",
	    {"SELECT id, user_id FROM jobs j"
	    " WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = j.user_id)"}},

	/* The counts /metrics shows, kept by triggers, agree with the jobs
	 * (PostgreSQL keeps them in shards: their sum is the count). */
	{BREACH, "job_counts has %s %s jobs of %s, the jobs table %s",
	    {"WITH c AS (SELECT tool, status, sum(n) AS n FROM job_counts"
	    " GROUP BY tool, status)"
	    " SELECT counted, status, tool, actual FROM ("
	    " SELECT a.tool, a.status, a.n AS actual, coalesce(c.n, 0)"
	    "  AS counted FROM (SELECT tool, status, count(*) AS n FROM jobs"
	    "  GROUP BY tool, status) AS a LEFT JOIN c USING (tool, status)"
	    " UNION ALL SELECT tool, status, 0, n FROM c WHERE n <> 0"
	    "  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.tool = c.tool"
	    "  AND j.status = c.status)) AS x WHERE actual <> counted"}},

	/* ---- the event log (docs/api.md §5) ---- */
	{BREACH, "event %s of job %s is not a JSON job with a status",
	    {BOTH(EV_NOT_JSON)}},
	{BREACH, "event %s is filed under job %s but shows job %s",
	    {BOTH(EV_OTHER_JOB)}},
	{BREACH, "event %s names job %s, which does not exist",
	    {"SELECT id, job_id FROM events e"
	    " WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = e.job_id)"}},
	{BREACH, "event %s of job %s is filed under user %s, the job is user"
	    " %s's",
	    {"SELECT e.id, j.id, e.user_id, j.user_id FROM events e"
	    " JOIN jobs j ON j.id = e.job_id WHERE e.user_id <> j.user_id"}},
	/* The queue's order is followed from these two columns. */
	{BREACH, "event %s of job %s is filed as %s but shows %s",
	    {BOTH(EV_OTHER_STATUS)}},
	{BREACH, "event %s of job %s is filed at seq %s, the job is at seq %s",
	    {"SELECT e.id, j.id, coalesce(CAST(e.seq AS TEXT), 'none'), j.seq"
	    " FROM events e JOIN jobs j ON j.id = e.job_id"
	    " WHERE e.seq IS DISTINCT FROM j.seq"}},
	/* In id order each event repeats or follows an arrow; so nothing
	 * but a repeat comes after a terminal event. */
	{BREACH, "job %s: event %s says %s after event %s said %s",
	    {BOTH(EV_ARROWS)}},
	{BREACH, "job %s is %s but its last event (%s) says %s",
	    {BOTH(EV_LAST)}},
};
/* clang-format on */
#define N_RULES (sizeof(rules) / sizeof(rules[0]))

/* ---- output -------------------------------------------------------- */

static void
line_start(struct checker *c, enum level lv)
{
	if (lv == BREACH)
		c->breaches++;
	else
		c->warnings++;
	fputs(lv == BREACH ? "breach: " : "warning: ", c->out);
}

static void say(struct checker *c, enum level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
say(struct checker *c, enum level lv, const char *fmt, ...)
{
	va_list ap;

	line_start(c, lv);
	va_start(ap, fmt);
	vfprintf(c->out, fmt, ap);
	va_end(ap);
	fputc('\n', c->out);
}

/* A query that cannot run leaves the check incomplete: never "clean". */
static void
db_fail(struct checker *c, const char *what)
{
	fprintf(c->out, "check: %s: %s\n", what, c->err);
	c->failed = 1;
}

/* Keep a library's message (its first line) before it is freed. */
static void
set_err(struct checker *c, const char *msg)
{
	snprintf(c->err, sizeof(c->err), "%s", msg ? msg : "unknown error");
	c->err[strcspn(c->err, "\n")] = '\0';
}

/* ---- SQLite -------------------------------------------------------- */

static int
lite_open(struct checker *c, const char *url)
{
	const char *path = url + strlen("sqlite:");

	if (*path == '\0') {
		fprintf(c->out, "check: store.url \"%s\" names no file\n", url);
		return -1;
	}
	c->store = xstrdup(path);
	if (sqlite3_open_v2(path, &c->lite, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		fprintf(c->out, "check: %s: %s\n", path,
		    c->lite ? sqlite3_errmsg(c->lite) : "cannot open");
		return -1;
	}
	sqlite3_busy_timeout(c->lite, BUSY_TIMEOUT_MS);
	return 0;
}

static int
lite_query(struct checker *c, const char *sql, const char *arg, row_fn *fn,
    void *fnarg)
{
	const char *col[MAX_COLS];
	sqlite3_stmt *q = NULL;
	int step, n, rc = -1;

	if (sqlite3_prepare_v2(c->lite, sql, -1, &q, NULL) != SQLITE_OK) {
		set_err(c, sqlite3_errmsg(c->lite));
		goto done;
	}
	if (arg != NULL)
		sqlite3_bind_text(q, 1, arg, -1, SQLITE_TRANSIENT);
	n = sqlite3_column_count(q);
	if (n > MAX_COLS) {
		set_err(c, "too many columns");
		goto done;
	}
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		for (int i = 0; i < n; i++)
			col[i] = (const char *)sqlite3_column_text(q, i);
		if (fn != NULL)
			fn(c, fnarg, col, n);
	}
	if (step == SQLITE_DONE)
		rc = 0;
	else
		set_err(c, sqlite3_errmsg(c->lite));
done:
	sqlite3_finalize(q);
	return rc;
}

static void
lite_close(struct checker *c)
{
	sqlite3_close(c->lite);
}

static const struct driver lite_driver = {
    .open = lite_open,
    .query = lite_query,
    .close = lite_close,
    .begin = "BEGIN",
    .tables = "SELECT count(*) FROM sqlite_master"
              " WHERE type = 'table' AND name IN " TABLES,
    /* store_sqlite.c's migrations: 8 adds the outputs and settings; 9
     * to 11 keep every table's columns (10 rebuilds jobs and ledger, 11
     * adds an index). */
    .oldest = 8,
    .newest = 11,
};

/* ---- PostgreSQL ---------------------------------------------------- */

/* Is t JSON? (LITE_VALID's twin; PG_FIELD above.) */
#define PG_JSON_VALID                                                          \
	"CREATE FUNCTION pg_temp.json_valid(t text) RETURNS boolean"           \
	" LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM t::json;"             \
	" RETURN true; EXCEPTION WHEN others THEN RETURN false; END $$"

static int
pg_query(struct checker *c, const char *sql, const char *arg, row_fn *fn,
    void *fnarg)
{
	PGresult *r =
	    PQexecParams(c->pg, sql, arg != NULL, NULL, &arg, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	const char *col[MAX_COLS];
	int n = PQnfields(r), rc = -1;

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
		set_err(c, r ? PQresultErrorMessage(r) : PQerrorMessage(c->pg));
	else if (n > MAX_COLS)
		set_err(c, "too many columns");
	else
		rc = 0;
	for (int row = 0; rc == 0 && fn != NULL && row < PQntuples(r); row++) {
		for (int i = 0; i < n; i++)
			col[i] = PQgetisnull(r, row, i) ? NULL
			                                : PQgetvalue(r, row, i);
		fn(c, fnarg, col, n);
	}
	PQclear(r);
	return rc;
}

/* Connect, in the schema of cfg->store_schema ("fila" if unset). */
static int
pg_open(struct checker *c, const char *url)
{
	const char *keys[] = {
	    "dbname", "application_name", "connect_timeout", NULL};
	const char *vals[] = {url, "fila check", "10", NULL};
	const char *schema = c->cfg->store_schema && *c->cfg->store_schema
	                         ? c->cfg->store_schema
	                         : "fila";
	char *esc = NULL, *sql;
	int rc = -1;

	c->pg = PQconnectdbParams(keys, vals, 1);
	if (PQstatus(c->pg) != CONNECTION_OK ||
	    (esc = PQescapeIdentifier(c->pg, schema, strlen(schema))) == NULL) {
		set_err(c, PQerrorMessage(c->pg));
	} else {
		c->store =
		    xasprintf("schema %s of database %s", schema, PQdb(c->pg));
		sql = xasprintf("SET search_path = %s", esc);
		rc = pg_query(c, sql, NULL, NULL, NULL);
		free(sql);
		if (rc == 0)
			rc = pg_query(c, PG_JSON_VALID, NULL, NULL, NULL);
	}
	PQfreemem(esc);
	if (rc < 0)
		fprintf(c->out, "check: postgres: %s\n", c->err);
	return rc;
}

static void
pg_close(struct checker *c)
{
	PQfinish(c->pg);
}

static const struct driver pg_driver = {
    .open = pg_open,
    .query = pg_query,
    .close = pg_close,
    .begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    .tables = "SELECT count(*) FROM information_schema.tables"
              " WHERE table_schema = current_schema()"
              " AND table_name IN " TABLES,
    /* store_pg.c's N_MIGRATIONS. */
    .oldest = 2,
    .newest = 4,
    .postgres = 1,
};

/* ---- the SQL rules ------------------------------------------------- */

static void
params_init(struct checker *c)
{
	const struct config *cfg = c->cfg;
	const struct param p[] = {
	    {"slots", cfg->slots},
	    {"per_user", cfg->per_user_active},
	    {"now", now_ms()},
	    {"queue_timeout", cfg->queue_timeout},
	    {"run_timeout", cfg->run_timeout},
	    {"queue_limit", (cfg->queue_timeout + GRACE_S) * 1000},
	    {"run_limit", (cfg->run_timeout + GRACE_S) * 1000},
	    {"hold_limit", GRACE_S * 1000},
	};

	_Static_assert(sizeof(p) == sizeof(c->params), "N_PARAMS");
	memcpy(c->params, p, sizeof(c->params));
}

static const struct param *
param_find(const struct checker *c, const char *name, size_t len)
{
	for (size_t i = 0; i < N_PARAMS; i++)
		if (strlen(c->params[i].name) == len &&
		    strncmp(c->params[i].name, name, len) == 0)
			return &c->params[i];
	return NULL;
}

/* sql with each :name replaced by the parameter's value ("::" is a
 * PostgreSQL cast). The caller frees; NULL after a message when a name
 * is unknown. */
static char *
expand(struct checker *c, const char *sql)
{
	char *text = NULL;
	size_t len = 0, n;
	FILE *f = open_memstream(&text, &len);
	const struct param *p;

	while (*sql != '\0') {
		if (sql[0] == ':' && sql[1] == ':') { /* a cast */
			fputs("::", f);
			sql += 2;
			continue;
		}
		n = sql[0] == ':'
		        ? strspn(sql + 1, "abcdefghijklmnopqrstuvwxyz_")
		        : 0;
		if (n == 0) {
			fputc(*sql++, f);
		} else if ((p = param_find(c, sql + 1, n)) != NULL) {
			fprintf(
			    f, p->v < 0 ? "(%lld)" : "%lld", (long long)p->v);
			sql += 1 + n;
		} else {
			break;
		}
	}
	fclose(f);
	if (*sql == '\0')
		return text;
	free(text);
	set_err(c, sql);
	db_fail(c, "a rule names an unknown parameter");
	return NULL;
}

/* How many columns a rule's line takes. */
static int
holes(const char *say_fmt)
{
	int n = 0;

	for (const char *p = say_fmt; (p = strstr(p, "%s")) != NULL; p += 2)
		n++;
	return n;
}

/* One breach (or warning): the rule's line with the row's columns. */
static void
rule_row(struct checker *c, void *arg, const char *const *col, int ncol)
{
	const struct rule *r = arg;

	if (c->failed)
		return;
	if (holes(r->say) != ncol) {
		snprintf(c->err, sizeof(c->err), "\"%s\" for %d columns",
		    r->say, ncol);
		db_fail(c, "a rule does not fit its query");
		return;
	}
	line_start(c, r->level);
	for (const char *p = r->say; *p != '\0'; p++) {
		if (p[0] == '%' && p[1] == 's') {
			fputs(*col != NULL ? *col : "", c->out);
			col++;
			p++;
		} else {
			fputc(*p, c->out);
		}
	}
	fputc('\n', c->out);
}

static void
rule_run(struct checker *c, const struct rule *r)
{
	char *sql =
	    expand(c, c->db->postgres && r->sql[1] ? r->sql[1] : r->sql[0]);

	if (sql != NULL && c->db->query(c, sql, NULL, rule_row, (void *)r) < 0)
		db_fail(c, "a rule failed");
	free(sql);
}

/* ---- uploads (rule 7) ---------------------------------------------- */

static int
is_file(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The path as stored, else the same name under uploads.dir: fila may
 * have run in another working directory than this check. */
static int
upload_file_exists(struct checker *c, const char *path)
{
	const char *base = strrchr(path, '/');
	char *alt;
	int ok;

	if (is_file(path))
		return 1;
	alt = xasprintf("%s/%s", c->cfg->uploads_dir, base ? base + 1 : path);
	ok = is_file(alt);
	free(alt);
	return ok;
}

/* An upload's row: its owner and path (copies), found or not. */
struct upload_row {
	int found;
	char *owner;
	char *path;
};

static void
upload_got(struct checker *c, void *arg, const char *const *col, int ncol)
{
	struct upload_row *u = arg;

	u->found = 1;
	u->owner = col[0] ? xstrdup(col[0]) : NULL;
	u->path = col[1] ? xstrdup(col[1]) : NULL;
}

/* Input name of job (user's) names upload id: it exists, is theirs and
 * its bytes are on disk. ("$1" is a parameter to SQLite too.) With
 * limits.upload_retention, an upload may have been swept away: no breach
 * for an ended job, a warning for one still waiting (it will fail). */
static void
upload_one(struct checker *c, const char *job, const char *user,
    const char *name, const char *id, int ended)
{
	struct upload_row u = {0};
	int swept = c->cfg->upload_retention > 0;

	if (c->db->query(c, "SELECT user_id, path FROM uploads WHERE id = $1",
	        id, upload_got, &u) < 0)
		db_fail(c, "reading an upload");
	else if (!u.found && swept && ended)
		;
	else if (!u.found)
		say(c, swept ? WARNING : BREACH,
		    "job %s: input %s names upload %s, which does not exist%s",
		    job, name, id,
		    swept ? " (swept by limits.upload_retention?)" : "");
	else if (u.owner == NULL || strcmp(u.owner, user) != 0)
		say(c, BREACH,
		    "job %s of user %s: input %s names upload %s of user %s",
		    job, user, name, id, u.owner ? u.owner : "?");
	else if (u.path == NULL || !upload_file_exists(c, u.path))
		say(c, BREACH, "job %s: upload %s's file %s is missing", job,
		    id, u.path ? u.path : "(none)");
	free(u.owner);
	free(u.path);
}

/* Check each image and video input of one job against its tool. */
static void
job_uploads(struct checker *c, const char *job, const char *user,
    const struct tool *t, json_t *inputs, int ended)
{
	for (size_t i = 0; i < t->ninputs && !c->failed; i++) {
		const struct tool_input *in = &t->inputs[i];
		json_t *v = json_object_get(inputs, in->name);

		if (in->type != INPUT_IMAGE && in->type != INPUT_VIDEO)
			continue;
		if (v == NULL && in->required)
			say(c, BREACH, "job %s: required input %s is missing",
			    job, in->name);
		else if (v != NULL && !json_is_string(v))
			say(c, BREACH, "job %s: input %s is not an upload id",
			    job, in->name);
		else if (v != NULL)
			upload_one(c, job, user, in->name, json_string_value(v),
			    ended);
	}
}

/* Where a page of jobs ended, and how many it had. */
struct page {
	int64_t last;
	int n;
};

/* One row of (seq, id, user_id, tool, inputs, status). */
static void
job_row(struct checker *c, void *arg, const char *const *col, int ncol)
{
	struct page *pg = arg;
	const char *job = col[1] ? col[1] : "?";
	const char *tool = col[3] ? col[3] : "?";
	const struct tool *t = tools_find(&c->cfg->tools, tool);
	json_t *inputs;

	pg->last = col[0] ? strtoll(col[0], NULL, 10) : pg->last;
	pg->n++;
	if (c->failed)
		return;
	inputs = col[4] ? jsonr_loads(col[4], 0, NULL) : NULL;
	if (t == NULL)
		say(c, WARNING,
		    "job %s: tool %s is not in the configuration,"
		    " its uploads are not checked",
		    job, tool);
	else if (!json_is_object(inputs))
		say(c, BREACH, "job %s: inputs are not a JSON object", job);
	else
		job_uploads(c, job, col[2] ? col[2] : "", t, inputs,
		    col[5] && strcmp(col[5], "queued") != 0 &&
		        strcmp(col[5], "starting") != 0 &&
		        strcmp(col[5], "running") != 0);
	json_decref(inputs);
}

/* The jobs a page at a time, so that neither database holds them all. */
static void
check_uploads(struct checker *c)
{
	struct page pg = {INT64_MIN, JOBS_PAGE};

	while (pg.n == JOBS_PAGE && !c->failed) {
		char *sql =
		    xasprintf("SELECT seq, id, user_id, tool, inputs, status"
		              " FROM jobs"
		              " WHERE seq > %lld ORDER BY seq LIMIT %d",
		        (long long)pg.last, JOBS_PAGE);

		pg.n = 0;
		if (c->db->query(c, sql, NULL, job_row, &pg) < 0)
			db_fail(c, "reading the jobs");
		free(sql);
	}
}

/* ---- open, run, summarise ------------------------------------------ */

static void
count_row(struct checker *c, void *arg, const char *const *col, int ncol)
{
	*(int64_t *)arg = col[0] ? strtoll(col[0], NULL, 10) : 0;
}

/* The first column of sql's one row as a number (NULL is 0); -1 after a
 * message when it cannot be read. */
static int64_t
count_rows(struct checker *c, const char *sql)
{
	int64_t n = -1;

	if (c->db->query(c, sql, NULL, count_row, &n) < 0) {
		db_fail(c, "counting");
		n = -1;
	}
	return n;
}

/* The schema is a store of the version the rules read: 0, or -1 after a
 * "check: …" line. */
static int
check_schema(struct checker *c)
{
	int64_t v;

	if (count_rows(c, c->db->tables) != N_TABLES) {
		if (!c->failed)
			fprintf(c->out, "check: %s is not a fila store\n",
			    c->store);
		return -1;
	}
	v = count_rows(c, "SELECT max(version) FROM schema_version");
	if (c->failed)
		return -1;
	if (v < c->db->oldest || v > c->db->newest) {
		fprintf(c->out,
		    "check: the store's schema is version %lld, this check"
		    " reads version %lld%s\n",
		    (long long)v,
		    (long long)(v < c->db->oldest ? c->db->oldest
		                                  : c->db->newest),
		    v < c->db->oldest ? ": start fila serve once to bring it up"
		                      : "");
		return -1;
	}
	return 0;
}

static void
summarise(struct checker *c)
{
	int64_t users = count_rows(c, "SELECT count(*) FROM users");
	int64_t jobs = count_rows(c, "SELECT count(*) FROM jobs");

	if (c->failed)
		return;
	fprintf(c->out, "check: %lld users, %lld jobs, %d breach%s",
	    (long long)users, (long long)jobs, c->breaches,
	    c->breaches == 1 ? "" : "es");
	if (c->warnings > 0)
		fprintf(c->out, ", %d warning%s", c->warnings,
		    c->warnings == 1 ? "" : "s");
	fputc('\n', c->out);
}

/* The driver of url's scheme; NULL after a message. */
static const struct driver *
driver_of(const char *url, FILE *out)
{
	static const struct {
		const char *scheme;
		const struct driver *db;
	} schemes[] = {
	    {"sqlite:", &lite_driver},
	    {"postgres://", &pg_driver},
	    {"postgresql://", &pg_driver},
	};

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++)
		if (strncmp(
		        url, schemes[i].scheme, strlen(schemes[i].scheme)) == 0)
			return schemes[i].db;
	fprintf(out,
	    "check: store.url \"%s\" is neither sqlite:PATH nor"
	    " postgres://…\n",
	    url);
	return NULL;
}

int
check_store(const struct config *cfg, FILE *out)
{
	struct checker c = {.cfg = cfg, .out = out};
	const char *url = cfg->store_url ? cfg->store_url : "";
	int rc = -1;

	c.db = driver_of(url, out);
	if (c.db == NULL)
		return -1;
	params_init(&c);
	if (c.db->open(&c, url) < 0)
		goto done;
	/* Every read from here on sees one snapshot. */
	if (c.db->query(&c, c.db->begin, NULL, NULL, NULL) < 0) {
		db_fail(&c, "BEGIN");
		goto done;
	}
	if (check_schema(&c) < 0)
		goto done;
	for (size_t i = 0; i < N_RULES && !c.failed; i++)
		rule_run(&c, &rules[i]);
	if (!c.failed)
		check_uploads(&c);
	if (!c.failed)
		summarise(&c);
	rc = c.failed ? -1 : c.breaches;
done:
	c.db->close(&c); /* which ends the snapshot */
	free(c.store);
	return rc;
}
