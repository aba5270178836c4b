/*
 * check.c — `fila check`: an independent verifier of a store. It shares no
 * code with the store it checks: it opens the file itself, read-only, and
 * asks each invariant of docs/api.md §4 with its own SQL, so a bug in
 * store_sqlite.c cannot hide behind itself.
 *
 * Two ideas to read it by. First, a rule is one query whose rows are its
 * breaches, each row already the sentence to print (SQL's printf()), so a
 * rule is one entry of rules[] and the C only prints. Second, the whole
 * check reads one snapshot (a single read transaction), so a daemon still
 * running on the store cannot show it half of a change; what may
 * legitimately lag (a slot kept while a provider cancel is pending, a
 * watchdog that is stopped) is given a grace period.
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
#include <sqlite3.h>

#include "util.h"

#define BUSY_TIMEOUT_MS 5000
#define GRACE_S 60 /* a stopped watchdog, a pending provider cancel */

struct checker {
	sqlite3 *db;
	const struct config *cfg;
	FILE *out;
	int breaches;
	int warnings;
	int failed; /* a query could not run: the check is not complete */
};

enum level { BREACH, WARNING };

/* One invariant: every row sql answers is one line to print at level. */
struct rule {
	enum level level;
	const char *sql;
};

/* The schema version whose tables the rules read (store_sqlite.c's
 * migrations; test_check holds the two together). */
#define SCHEMA_VERSION 5
#define TERMINAL "('completed', 'failed', 'cancelled')"
#define ACTIVE "('queued', 'starting', 'running')"
/* The event log: state changes only (positions are not stored). */
#define EVENTS "events"
#define EV_STATUS                                                              \
	"CASE WHEN json_valid(data) THEN json_extract(data, '$.status') END"
/* Is prev → st one of docs/api.md §3's arrows (or no move at all)? */
#define ARROW(prev, st)                                                        \
	"(" st " IS " prev " OR (" prev " = 'queued' AND " st                  \
	" IN ('starting', 'cancelled', 'failed')) OR (" prev                   \
	" = 'starting' AND " st " IN ('running', 'failed', 'cancelled'))"      \
	" OR (" prev " = 'running' AND " st " IN " TERMINAL "))"

/*
 * The parameters a rule may name: :slots, :per_user, :now (ms),
 * :queue_timeout and :run_timeout (s), :queue_limit and :run_limit (ms,
 * the timeouts plus the grace), :hold_limit (ms).
 */
/* clang-format off */
static const struct rule rules[] = {
	/* ---- credits (rule 4) ---- */
	{BREACH, "SELECT printf('user %s: grants - charges + refunds = %lld,"
	    " balance = %lld', u.id, coalesce(sum(l.amount), 0), u.balance)"
	    " FROM users u LEFT JOIN ledger l ON l.user_id = u.id"
	    " GROUP BY u.id HAVING coalesce(sum(l.amount), 0) <> u.balance"},
	{BREACH, "SELECT printf('user %s: balance = %lld, below 0', id, balance)"
	    " FROM users WHERE balance < 0"},
	/* The first entry that disagrees (min() picks its row's columns). */
	{BREACH, "SELECT printf('user %s: ledger entry %lld has balance_after"
	    " = %lld, the entries up to it sum to %lld (%lld entries"
	    " disagree)', user_id, min(id), balance_after, running, count(*))"
	    " FROM (SELECT id, user_id, balance_after, sum(amount) OVER"
	    " (PARTITION BY user_id ORDER BY id) AS running FROM ledger)"
	    " WHERE running <> balance_after OR balance_after < 0"
	    " GROUP BY user_id"},
	{BREACH, "SELECT printf('ledger entry %lld: user %s does not exist',"
	    " id, user_id) FROM ledger l"
	    " WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = l.user_id)"},
	{BREACH, "SELECT printf('job %s: %lld %s entries in the ledger',"
	    " job_id, count(*), kind) FROM ledger WHERE job_id IS NOT NULL"
	    " GROUP BY job_id, kind HAVING count(*) > 1"},
	{BREACH, "SELECT printf('ledger entry %lld: a %s without a job', id,"
	    " kind) FROM ledger WHERE kind <> 'grant' AND job_id IS NULL"},
	{BREACH, "SELECT printf('ledger entry %lld: %s of job %s, which does"
	    " not exist', l.id, l.kind, l.job_id) FROM ledger l"
	    " WHERE l.job_id IS NOT NULL"
	    " AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = l.job_id)"},
	{BREACH, "SELECT printf('ledger entry %lld: %s of job %s is filed"
	    " under user %s, the job is user %s''s', l.id, l.kind, j.id,"
	    " l.user_id, j.user_id) FROM ledger l JOIN jobs j"
	    " ON j.id = l.job_id WHERE l.user_id <> j.user_id"},
	{BREACH, "SELECT printf('job %s: charged = %lld with %lld charge"
	    " entries in the ledger (want charged = 1 and one charge)',"
	    " j.id, j.charged, count(l.kind)) FROM jobs j LEFT JOIN ledger l"
	    " ON l.job_id = j.id AND l.kind = 'charge' GROUP BY j.id"
	    " HAVING j.charged <> 1 OR count(l.kind) <> 1"},
	{BREACH, "SELECT printf('job %s: %s of %lld for a cost of %lld',"
	    " j.id, l.kind, l.amount, j.cost) FROM jobs j JOIN ledger l"
	    " ON l.job_id = j.id WHERE (l.kind = 'charge' AND l.amount <> -j.cost)"
	    " OR (l.kind = 'refund' AND l.amount <> j.cost)"},
	{BREACH, "SELECT printf('job %s is %s but was refunded (ledger entry"
	    " %lld)', j.id, j.status, l.id) FROM jobs j JOIN ledger l"
	    " ON l.job_id = j.id AND l.kind = 'refund'"
	    " WHERE j.status NOT IN ('failed', 'cancelled')"},
	{BREACH, "SELECT printf('job %s is %s and was charged, but has no"
	    " refund', id, status) FROM jobs j"
	    " WHERE status IN ('failed', 'cancelled') AND charged = 1"
	    " AND NOT EXISTS (SELECT 1 FROM ledger WHERE job_id = j.id"
	    " AND kind = 'refund')"},
	{BREACH, "SELECT printf('job %s: refunded = %lld, but the ledger has"
	    " %s refund', id, refunded, iif(r, 'a', 'no')) FROM (SELECT id,"
	    " refunded, EXISTS (SELECT 1 FROM ledger WHERE job_id = j.id"
	    " AND kind = 'refund') AS r FROM jobs j) WHERE refunded <> r"},

	/* ---- slots (rule 1) ---- */
	{BREACH, "WITH RECURSIVE n(i) AS (SELECT 1 WHERE :slots >= 1"
	    " UNION ALL SELECT i + 1 FROM n WHERE i < :slots)"
	    " SELECT printf('slot %lld of %lld is missing', i, :slots) FROM n"
	    " WHERE i NOT IN (SELECT id FROM slots)"},
	{BREACH, "SELECT printf('slot %lld is beyond queue.slots = %lld',"
	    " id, :slots) FROM slots WHERE (id > :slots OR id < 1)"
	    " AND job_id IS NULL"},
	/* A shrink keeps held rows until their jobs let go. */
	{WARNING, "SELECT printf('slot %lld beyond queue.slots = %lld is"
	    " still held by job %s', id, :slots, job_id) FROM slots"
	    " WHERE (id > :slots OR id < 1) AND job_id IS NOT NULL"},
	{BREACH, "SELECT printf('%lld slots are held, queue.slots = %lld',"
	    " count(*), :slots) FROM slots WHERE job_id IS NOT NULL"
	    " HAVING count(*) > :slots"},
	{BREACH, "SELECT printf('%lld jobs are starting or running,"
	    " queue.slots = %lld', count(*), :slots) FROM jobs"
	    " WHERE status IN ('starting', 'running') HAVING count(*) > :slots"},
	{BREACH, "SELECT printf('job %s is %s but holds no slot', id, status)"
	    " FROM jobs j WHERE status IN ('starting', 'running')"
	    " AND NOT EXISTS (SELECT 1 FROM slots WHERE job_id = j.id)"},
	{BREACH, "SELECT printf('slot %lld is held by job %s, which does not"
	    " exist', id, job_id) FROM slots s WHERE job_id IS NOT NULL"
	    " AND NOT EXISTS (SELECT 1 FROM jobs WHERE id = s.job_id)"},
	{BREACH, "SELECT printf('slot %lld is held by job %s, which is queued',"
	    " s.id, j.id) FROM slots s JOIN jobs j ON j.id = s.job_id"
	    " WHERE j.status = 'queued'"},
	/* A terminal job keeps its slot until the provider lets go. */
	{WARNING, "SELECT printf('slot %lld is still held by job %s, %s %lld s"
	    " ago', s.id, j.id, j.status,"
	    " (:now - coalesce(j.finished_at, j.updated_at)) / 1000)"
	    " FROM slots s JOIN jobs j ON j.id = s.job_id"
	    " WHERE j.status IN " TERMINAL
	    " AND coalesce(j.finished_at, j.updated_at) < :now - :hold_limit"},

	/* ---- nothing stuck (rule 6), one active job (rule 3) ---- */
	{BREACH, "SELECT printf('job %s: stuck, queued for %lld s"
	    " (queue.queue_timeout = %lld s)', id, (:now - created_at) / 1000,"
	    " :queue_timeout) FROM jobs WHERE status = 'queued'"
	    " AND created_at < :now - :queue_limit"},
	{BREACH, "SELECT printf('job %s: stuck, %s for %lld s"
	    " (queue.run_timeout = %lld s)', id, status,"
	    " (:now - coalesce(started_at, created_at)) / 1000, :run_timeout)"
	    " FROM jobs WHERE status IN ('starting', 'running')"
	    " AND coalesce(started_at, created_at) < :now - :run_limit"},
	{BREACH, "SELECT printf('user %s has %lld active jobs,"
	    " queue.per_user_active = %lld', user_id, count(*), :per_user)"
	    " FROM jobs WHERE status IN " ACTIVE " GROUP BY user_id"
	    " HAVING count(*) > :per_user"},
	{BREACH, "SELECT printf('job %s is %s but has no finished_at', id,"
	    " status) FROM jobs WHERE status IN " TERMINAL
	    " AND finished_at IS NULL"},
	{BREACH, "SELECT printf('job %s: user %s does not exist', id,"
	    " user_id) FROM jobs j"
	    " WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = j.user_id)"},

	/* The counts /metrics shows, kept by triggers, agree with the jobs. */
	{BREACH, "SELECT printf('job_counts has %lld %s jobs of %s, the jobs"
	    " table %lld', counted, status, tool, actual) FROM ("
	    " SELECT a.tool, a.status, a.n AS actual, coalesce(c.n, 0)"
	    "  AS counted FROM (SELECT tool, status, count(*) AS n FROM jobs"
	    "  GROUP BY tool, status) a LEFT JOIN job_counts c"
	    "  USING (tool, status)"
	    " UNION ALL SELECT tool, status, 0, n FROM job_counts c"
	    "  WHERE n <> 0 AND NOT EXISTS (SELECT 1 FROM jobs j"
	    "  WHERE j.tool = c.tool AND j.status = c.status))"
	    " WHERE actual <> counted"},

	/* ---- the event log (docs/api.md §5) ---- */
	{BREACH, "SELECT printf('event %lld of job %s is not a JSON job with"
	    " a status', id, job_id) FROM " EVENTS " WHERE " EV_STATUS " IS NULL"},
	{BREACH, "SELECT printf('event %lld is filed under job %s but shows"
	    " job %s', id, job_id, json_extract(data, '$.id')) FROM " EVENTS
	    " WHERE json_valid(data)"
	    " AND json_extract(data, '$.id') IS NOT job_id"},
	{BREACH, "SELECT printf('event %lld names job %s, which does not"
	    " exist', id, job_id) FROM events e"
	    " WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE id = e.job_id)"},
	{BREACH, "SELECT printf('event %lld of job %s is filed under user %s,"
	    " the job is user %s''s', e.id, j.id, e.user_id, j.user_id)"
	    " FROM events e JOIN jobs j ON j.id = e.job_id"
	    " WHERE e.user_id <> j.user_id"},
	/* The queue's order is followed from these two columns. */
	{BREACH, "SELECT printf('event %lld of job %s is filed as %s but"
	    " shows %s', id, job_id, coalesce(status, 'nothing'), " EV_STATUS
	    ") FROM " EVENTS " WHERE status IS NOT " EV_STATUS},
	{BREACH, "SELECT printf('event %lld of job %s is filed at seq %s,"
	    " the job is at seq %lld', e.id, j.id, coalesce(e.seq, 'none'),"
	    " j.seq) FROM events e JOIN jobs j ON j.id = e.job_id"
	    " WHERE e.seq IS NOT j.seq"},
	/* In id order each event repeats or follows an arrow; so nothing
	 * but a repeat comes after a terminal event. */
	{BREACH, "SELECT printf('job %s: event %lld says %s after event %lld"
	    " said %s', job_id, id, st, prev_id, prev) FROM (SELECT id,"
	    " job_id, " EV_STATUS " AS st, lag(" EV_STATUS ") OVER w AS prev,"
	    " lag(id) OVER w AS prev_id FROM " EVENTS
	    " WINDOW w AS (PARTITION BY job_id ORDER BY id))"
	    " WHERE st IS NOT NULL AND prev IS NOT NULL"
	    " AND NOT " ARROW("prev", "st")},
	{BREACH, "SELECT printf('job %s is %s but its last event (%s) says"
	    " %s', j.id, j.status, coalesce(e.id, 'none'),"
	    " coalesce(json_extract(e.data, '$.status'), 'nothing'))"
	    " FROM jobs j LEFT JOIN (SELECT job_id, max(id) AS id FROM events"
	    " GROUP BY job_id) last ON last.job_id = j.id"
	    " LEFT JOIN " EVENTS " e ON e.id = last.id"
	    " WHERE e.id IS NULL OR (json_valid(e.data)"
	    " AND json_extract(e.data, '$.status') IS NOT j.status)"},
};
/* clang-format on */
#define N_RULES (sizeof(rules) / sizeof(rules[0]))

static const char *const tables[] = {
    "users", "ledger", "uploads", "jobs", "slots", "events"};

/* ---- output -------------------------------------------------------- */

static void say(struct checker *c, enum level lv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
say(struct checker *c, enum level lv, const char *fmt, ...)
{
	va_list ap;

	if (lv == BREACH)
		c->breaches++;
	else
		c->warnings++;
	fputs(lv == BREACH ? "breach: " : "warning: ", c->out);
	va_start(ap, fmt);
	vfprintf(c->out, fmt, ap);
	va_end(ap);
	fputc('\n', c->out);
}

/* A query that cannot run leaves the check incomplete: never "clean". */
static void
db_fail(struct checker *c, const char *what)
{
	fprintf(c->out, "check: %s: %s\n", what, sqlite3_errmsg(c->db));
	c->failed = 1;
}

/* ---- the SQL rules ------------------------------------------------- */

/* Bind the named parameters a statement uses, whichever they are. */
static void
bind_params(struct checker *c, sqlite3_stmt *q)
{
	const struct config *cfg = c->cfg;
	const struct {
		const char *name;
		int64_t v;
	} p[] = {
	    {":slots", cfg->slots},
	    {":per_user", cfg->per_user_active},
	    {":now", now_ms()},
	    {":queue_timeout", cfg->queue_timeout},
	    {":run_timeout", cfg->run_timeout},
	    {":queue_limit", (cfg->queue_timeout + GRACE_S) * 1000},
	    {":run_limit", (cfg->run_timeout + GRACE_S) * 1000},
	    {":hold_limit", GRACE_S * 1000},
	};

	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		int at = sqlite3_bind_parameter_index(q, p[i].name);
		if (at > 0)
			sqlite3_bind_int64(q, at, p[i].v);
	}
}

static void
rule_run(struct checker *c, const struct rule *r)
{
	sqlite3_stmt *q = NULL;
	int step;

	if (sqlite3_prepare_v2(c->db, r->sql, -1, &q, NULL) != SQLITE_OK) {
		db_fail(c, "a rule does not compile");
		return;
	}
	bind_params(c, q);
	while ((step = sqlite3_step(q)) == SQLITE_ROW)
		say(c, r->level, "%s", (const char *)sqlite3_column_text(q, 0));
	if (step != SQLITE_DONE)
		db_fail(c, "a rule failed");
	sqlite3_finalize(q);
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

/* Input name of job (user's) names upload id: it exists, is theirs and
 * its bytes are on disk. get is the prepared look-up of an upload. */
static void
upload_one(struct checker *c, sqlite3_stmt *get, const char *job,
    const char *user, const char *name, const char *id)
{
	int step;

	sqlite3_bind_text(get, 1, id, -1, SQLITE_TRANSIENT);
	step = sqlite3_step(get);
	if (step == SQLITE_DONE) {
		say(c, BREACH,
		    "job %s: input %s names upload %s, which does"
		    " not exist",
		    job, name, id);
	} else if (step != SQLITE_ROW) {
		db_fail(c, "reading an upload");
	} else {
		const char *owner = (const char *)sqlite3_column_text(get, 0);
		const char *path = (const char *)sqlite3_column_text(get, 1);
		if (owner == NULL || strcmp(owner, user) != 0)
			say(c, BREACH,
			    "job %s of user %s: input %s names"
			    " upload %s of user %s",
			    job, user, name, id, owner ? owner : "?");
		else if (path == NULL || !upload_file_exists(c, path))
			say(c, BREACH, "job %s: upload %s's file %s is missing",
			    job, id, path ? path : "(none)");
	}
	sqlite3_reset(get);
	sqlite3_clear_bindings(get);
}

/* Check each image and video input of one job against its tool. */
static void
job_uploads(struct checker *c, sqlite3_stmt *get, const char *job,
    const char *user, const struct tool *t, json_t *inputs)
{
	for (size_t i = 0; i < t->ninputs; i++) {
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
			upload_one(
			    c, get, job, user, in->name, json_string_value(v));
	}
}

/* One row of (id, user_id, tool, inputs). */
static void
job_row(struct checker *c, sqlite3_stmt *get, sqlite3_stmt *q)
{
	const char *job = (const char *)sqlite3_column_text(q, 0);
	const char *user = (const char *)sqlite3_column_text(q, 1);
	const char *tool = (const char *)sqlite3_column_text(q, 2);
	const char *text = (const char *)sqlite3_column_text(q, 3);
	const struct tool *t = tools_find(&c->cfg->tools, tool ? tool : "");
	json_t *inputs = text ? json_loads(text, 0, NULL) : NULL;

	if (t == NULL)
		say(c, WARNING,
		    "job %s: tool %s is not in the configuration,"
		    " its uploads are not checked",
		    job, tool ? tool : "?");
	else if (!json_is_object(inputs))
		say(c, BREACH, "job %s: inputs are not a JSON object", job);
	else
		job_uploads(c, get, job, user ? user : "", t, inputs);
	json_decref(inputs);
}

static void
check_uploads(struct checker *c)
{
	sqlite3_stmt *jobs = NULL, *get = NULL;
	int step;

	if (sqlite3_prepare_v2(c->db,
	        "SELECT id, user_id, tool, inputs FROM jobs ORDER BY seq", -1,
	        &jobs, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(c->db,
	        "SELECT user_id, path FROM uploads WHERE id = ?1", -1, &get,
	        NULL) != SQLITE_OK) {
		db_fail(c, "reading the jobs' uploads");
		goto out;
	}
	while ((step = sqlite3_step(jobs)) == SQLITE_ROW)
		job_row(c, get, jobs);
	if (step != SQLITE_DONE)
		db_fail(c, "reading the jobs");
out:
	sqlite3_finalize(jobs);
	sqlite3_finalize(get);
}

/* ---- open, run, summarise ------------------------------------------ */

static int64_t
count_rows(struct checker *c, const char *sql)
{
	sqlite3_stmt *q = NULL;
	int64_t n = -1;

	if (sqlite3_prepare_v2(c->db, sql, -1, &q, NULL) == SQLITE_OK &&
	    sqlite3_step(q) == SQLITE_ROW)
		n = sqlite3_column_int64(q, 0);
	else
		db_fail(c, "counting");
	sqlite3_finalize(q);
	return n;
}

/* 1 when every table of the schema is there: a path that names some
 * other file (or nothing) is not a store. */
static int
is_store(struct checker *c)
{
	char *sql = xstrdup("SELECT count(*) FROM sqlite_master"
	                    " WHERE type = 'table' AND name IN (");
	size_t n = sizeof(tables) / sizeof(tables[0]);
	int64_t have;

	for (size_t i = 0; i < n; i++) {
		char *more = xasprintf(
		    "%s'%s'%s", sql, tables[i], i + 1 < n ? ", " : ")");
		free(sql);
		sql = more;
	}
	have = count_rows(c, sql);
	free(sql);
	return have == (int64_t)n;
}

/* The SQLite file of cfg's store, opened read-only; NULL after a message. */
static sqlite3 *
open_store(const struct config *cfg, FILE *out)
{
	const char *url = cfg->store_url ? cfg->store_url : "";
	sqlite3 *db = NULL;

	if (strncmp(url, "postgres://", 11) == 0 ||
	    strncmp(url, "postgresql://", 13) == 0) {
		fprintf(out, "check: postgres stores are not supported yet\n");
		return NULL;
	}
	if (strncmp(url, "sqlite:", 7) != 0 || url[7] == '\0') {
		fprintf(
		    out, "check: store.url \"%s\" is not sqlite:PATH\n", url);
		return NULL;
	}
	if (sqlite3_open_v2(url + 7, &db, SQLITE_OPEN_READONLY, NULL) !=
	    SQLITE_OK) {
		fprintf(out, "check: %s: %s\n", url + 7,
		    db ? sqlite3_errmsg(db) : "cannot open");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	return db;
}

/* Every rule inside one read transaction: one snapshot of the store. */
static void
check_all(struct checker *c)
{
	if (sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
		db_fail(c, "BEGIN");
		return;
	}
	for (size_t i = 0; i < N_RULES && !c->failed; i++)
		rule_run(c, &rules[i]);
	if (!c->failed)
		check_uploads(c);
}

static void
summarise(struct checker *c)
{
	int64_t users = count_rows(c, "SELECT count(*) FROM users");
	int64_t jobs = count_rows(c, "SELECT count(*) FROM jobs");

	fprintf(c->out, "check: %lld users, %lld jobs, %d breach%s",
	    (long long)users, (long long)jobs, c->breaches,
	    c->breaches == 1 ? "" : "es");
	if (c->warnings > 0)
		fprintf(c->out, ", %d warning%s", c->warnings,
		    c->warnings == 1 ? "" : "s");
	fputc('\n', c->out);
}

int
check_store(const struct config *cfg, FILE *out)
{
	struct checker c = {.cfg = cfg, .out = out};
	int rc = -1;

	c.db = open_store(cfg, out);
	if (c.db == NULL)
		return -1;
	if (!is_store(&c)) {
		if (!c.failed)
			fprintf(out, "check: %s is not a fila store\n",
			    cfg->store_url + 7);
		goto done;
	}
	int64_t v = count_rows(&c, "SELECT max(version) FROM schema_version");
	if (v != SCHEMA_VERSION) {
		if (!c.failed)
			fprintf(out,
			    "check: the store's schema is version %lld, this"
			    " check reads version %d%s\n",
			    (long long)v, SCHEMA_VERSION,
			    v < SCHEMA_VERSION
			        ? ": start fila serve once to bring it up"
			        : "");
		goto done;
	}
	check_all(&c);
	if (!c.failed)
		summarise(&c);
	rc = c.failed ? -1 : c.breaches;
done:
	sqlite3_exec(c.db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(c.db);
	return rc;
}
