/*
 * store_sqlite.c — the SQLite backend ("sqlite:PATH"): one file in WAL
 * mode, synchronous=FULL, so a committed job survives kill -9 and power
 * loss (watched from a loop, a commit's sync is a thread's, and what waits
 * for the commit waits for it: below).
 *
 * Two ideas to read it by. First, the schema is the last line of defence
 * (docs/design.md, decision 3): CHECKs, UNIQUEs and triggers refuse a negative
 * balance, a second refund, a job starting without a slot, a move off the
 * arrows of docs/api.md §3 and any change to a terminal job, whatever the C
 * above them does. Second, every change runs inside tx(), that is
 * store_write(): in a transaction begun with BEGIN IMMEDIATE (which takes
 * the write lock up front, so two processes sharing the file are
 * serialised and never see each other half-way), as a savepoint of it when
 * changes are grouped; the change and its event row are kept only when
 * the answer is STORE_OK, so nothing is ever half-written.
 *
 * Statements are prepared once per handle (stmt_sql[], on first use) and
 * reset after each use; arguments are passed as typed arrays (ARGS()).
 */
#include "store_backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <sqlite3.h>

#include "jsonr.h"
#include "jsonw.h"
#include "mem.h"
#include "util.h"
#include "walbuf.h"

#define BUSY_TIMEOUT_MS 5000
/* Checkpoints (below): asked of the thread from CKPT_PAGES WAL frames on
 * (16 MB), again after CKPT_REST_MS when a reader held one back, and again
 * while it leaves more than CKPT_LEFT frames (256 KB) behind; those few are
 * finished on the loop. Should the thread's passes not get there while the
 * WAL doubles, the loop finishes up to CKPT_LEFT_MAX frames (2 MB); it
 * checkpoints whole as a last resort from CKPT_HARD frames (64 MB). */
#define CKPT_PAGES 4096
#define CKPT_LEFT 64
#define CKPT_LEFT_MAX 512
#define CKPT_HARD 16384
#define CKPT_REST_MS 100
/* A savepoint's journal is kept in memory up to this, then in a temp file
 * (a change rewriting more than 250 pages). main.c's serve keeps a malloc
 * of this size off mmap. */
#define STMT_JOURNAL_MEM (1 << 20)

#define ACTIVE_SQL "('queued', 'starting', 'running')"
#define TERMINAL_SQL "('completed', 'failed', 'cancelled')"
/* Active, as comparisons: SQLite evaluates an IN list of three constants
 * or more by building a temporary table each time (version 9). */
#define LIVE_SQL                                                               \
	"(status <> 'completed' AND status <> 'failed'"                        \
	" AND status <> 'cancelled')"

/* Version 1: the whole schema. A later change is a new entry, never an
 * edit of this one: an existing database has already applied it. */
/* clang-format off */
static const char migration_1[] =
	"CREATE TABLE users ("
	" id TEXT PRIMARY KEY,"
	" balance INTEGER NOT NULL CHECK (balance >= 0),"
	" created_at INTEGER NOT NULL);"

	"CREATE TABLE ledger ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" user_id TEXT NOT NULL REFERENCES users (id),"
	" job_id TEXT,"
	" kind TEXT NOT NULL CHECK (kind IN ('grant', 'charge', 'refund')),"
	" amount INTEGER NOT NULL,"
	" balance_after INTEGER NOT NULL CHECK (balance_after >= 0),"
	" reason TEXT,"
	" at INTEGER NOT NULL,"
	" UNIQUE (job_id, kind));"
	"CREATE INDEX ledger_user ON ledger (user_id, id);"
	/* The ledger is history: it is appended to, never rewritten. */
	"CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN"
	" SELECT RAISE(ABORT, 'the ledger is append-only'); END;"
	"CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN"
	" SELECT RAISE(ABORT, 'the ledger is append-only'); END;"

	"CREATE TABLE uploads ("
	" id TEXT PRIMARY KEY,"
	" user_id TEXT NOT NULL,"
	" type TEXT NOT NULL,"
	" size INTEGER NOT NULL CHECK (size >= 0),"
	" sha256 TEXT NOT NULL,"
	" filename TEXT,"
	" path TEXT NOT NULL,"
	" created_at INTEGER NOT NULL);"

	"CREATE TABLE jobs ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT UNIQUE NOT NULL,"
	" user_id TEXT NOT NULL REFERENCES users (id),"
	" tool TEXT NOT NULL,"
	" variant TEXT,"
	" status TEXT NOT NULL CHECK (status IN"
	"  ('queued', 'starting', 'running', 'completed', 'failed',"
	"   'cancelled')),"
	" inputs TEXT NOT NULL CHECK (json_valid(inputs)),"
	" outputs TEXT CHECK (outputs IS NULL OR json_valid(outputs)),"
	" error_code TEXT,"
	" error_message TEXT,"
	" cost INTEGER NOT NULL CHECK (cost >= 0),"
	" charged INTEGER NOT NULL DEFAULT 0 CHECK (charged IN (0, 1)),"
	" refunded INTEGER NOT NULL DEFAULT 0 CHECK (refunded IN (0, 1)"
	"  AND refunded <= charged"
	"  AND (refunded = 0 OR status IN ('failed', 'cancelled'))),"
	" provider_task_id TEXT,"
	" webhook_token TEXT UNIQUE NOT NULL,"
	" session_id TEXT,"
	" idem_key TEXT,"
	" created_at INTEGER NOT NULL,"
	" started_at INTEGER,"
	" finished_at INTEGER,"
	" updated_at INTEGER NOT NULL,"
	" UNIQUE (user_id, idem_key));"
	"CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued';"
	"CREATE INDEX jobs_user_seq ON jobs (user_id, seq);"
	"CREATE INDEX jobs_user_active ON jobs (user_id)"
	" WHERE status IN " ACTIVE_SQL ";"
	/* For store_jobs_in() on starting/running, which the partial
	    * indexes above cannot serve. */
	"CREATE INDEX jobs_status_seq ON jobs (status, seq);"

	"CREATE TABLE slots ("
	" id INTEGER PRIMARY KEY,"
	" job_id TEXT UNIQUE REFERENCES jobs (id));"

	"CREATE TABLE events ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" job_id TEXT NOT NULL,"
	" user_id TEXT NOT NULL,"
	" data TEXT NOT NULL,"
	" at INTEGER NOT NULL);"
	/* Every reader of the log names the user (a job's stream too), so
	 * one index serves them all and each append updates only two trees. */
	"CREATE INDEX events_user ON events (user_id, id);"
	/* The place each queued job's last event showed: narrow rows, so a
	 * queue move rewrites little besides its events. */
	"CREATE TABLE shown ("
	" job_id TEXT PRIMARY KEY,"
	" position INTEGER NOT NULL) WITHOUT ROWID;"
	/* Every provider callback, applied or not: the audit of late,
	 * duplicate and contradicting ones (the events stay the job's own). */
	"CREATE TABLE callbacks ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" job_id TEXT NOT NULL,"
	" task_id TEXT,"
	" outcome TEXT NOT NULL,"
	" applied INTEGER NOT NULL,"
	" at INTEGER NOT NULL);"
	"CREATE INDEX callbacks_job ON callbacks (job_id, id);"
	"CREATE INDEX jobs_finished ON jobs (finished_at)"
	" WHERE finished_at IS NOT NULL;"

	/* A job is born queued and moves only along docs/api.md §3's arrows. */
	"CREATE TRIGGER jobs_born_queued BEFORE INSERT ON jobs"
	" WHEN NEW.status <> 'queued' BEGIN"
	" SELECT RAISE(ABORT, 'a job is created queued'); END;"
	"CREATE TRIGGER jobs_terminal BEFORE UPDATE ON jobs"
	" WHEN OLD.status IN " TERMINAL_SQL " BEGIN"
	" SELECT RAISE(ABORT, 'a terminal job never changes'); END;"
	"CREATE TRIGGER jobs_arrows BEFORE UPDATE ON jobs"
	" WHEN NEW.status <> OLD.status AND NOT ("
	"  (OLD.status = 'queued'"
	"   AND NEW.status IN ('starting', 'cancelled', 'failed'))"
	"  OR (OLD.status = 'starting'"
	"   AND NEW.status IN ('running', 'failed', 'cancelled'))"
	"  OR (OLD.status = 'running'"
	"   AND NEW.status IN ('completed', 'failed', 'cancelled'))) BEGIN"
	" SELECT RAISE(ABORT, 'not a transition of a job'); END;"
	"CREATE TRIGGER jobs_need_slot BEFORE UPDATE ON jobs"
	" WHEN NEW.status IN ('starting', 'running')"
	" AND NOT EXISTS (SELECT 1 FROM slots WHERE job_id = NEW.id) BEGIN"
	" SELECT RAISE(ABORT, 'a job starts only by taking a slot'); END;"

	/* A slot goes free → taken by a queued job → free; never from one
	    * job to another, never away from a starting or running job. */
	"CREATE TRIGGER slots_born_free BEFORE INSERT ON slots"
	" WHEN NEW.job_id IS NOT NULL BEGIN"
	" SELECT RAISE(ABORT, 'a slot is created free'); END;"
	"CREATE TRIGGER slots_take BEFORE UPDATE OF job_id ON slots"
	" WHEN NEW.job_id IS NOT NULL AND (OLD.job_id IS NOT NULL"
	"  OR NOT EXISTS (SELECT 1 FROM jobs"
	"   WHERE id = NEW.job_id AND status = 'queued')) BEGIN"
	" SELECT RAISE(ABORT, 'only a free slot is taken, by a queued job');"
	" END;"
	"CREATE TRIGGER slots_keep BEFORE UPDATE OF job_id ON slots"
	" WHEN OLD.job_id IS NOT NULL AND NEW.job_id IS NOT OLD.job_id"
	" AND EXISTS (SELECT 1 FROM jobs WHERE id = OLD.job_id"
	"  AND status IN ('starting', 'running')) BEGIN"
	" SELECT RAISE(ABORT, 'an active job keeps its slot'); END;"
	"CREATE TRIGGER slots_no_delete_held BEFORE DELETE ON slots"
	" WHEN OLD.job_id IS NOT NULL BEGIN"
	" SELECT RAISE(ABORT, 'a held slot is not removed'); END;";

/*
 * Version 2: a position event is narrow. It names its base, the job's
 * queued event (a job is queued from its first event until it leaves), and
 * its position, instead of holding a whole copy of the job, so a queue move
 * with thousands waiting writes little; readers get the whole text back
 * (lite_events_after). Version 1's copies become such rows too, so the
 * pruning of old positions reaches them. The place each job's events show
 * leaves with the job from the queue.
 */
static const char migration_2[] =
	"ALTER TABLE events ADD COLUMN position INTEGER;"
	"ALTER TABLE events ADD COLUMN base INTEGER;"
	"ALTER TABLE shown ADD COLUMN base INTEGER NOT NULL DEFAULT 0;"
	"CREATE INDEX migration_2 ON events (job_id, id);"
	"UPDATE events SET position = json_extract(data, '$.position'),"
	" base = (SELECT min(f.id) FROM events f"
	"  WHERE f.job_id = events.job_id), data = ''"
	" WHERE json_valid(data) AND json_extract(data, '$.status') = 'queued'"
	" AND id > (SELECT min(f.id) FROM events f"
	"  WHERE f.job_id = events.job_id);"
	"DELETE FROM shown WHERE job_id NOT IN"
	" (SELECT id FROM jobs WHERE status = 'queued');"
	"UPDATE shown SET base = (SELECT min(id) FROM events"
	" WHERE job_id = shown.job_id);"
	"DROP INDEX migration_2;"
	"CREATE TRIGGER shown_leaves AFTER UPDATE OF status ON jobs"
	" WHEN OLD.status = 'queued' AND NEW.status <> 'queued' BEGIN"
	" DELETE FROM shown WHERE job_id = NEW.id; END;"
	/* A fila of version 1 still at work on the file (an upgrade one
	 * process at a time) writes shown rows without a base. */
	"CREATE TRIGGER shown_base AFTER INSERT ON shown WHEN NEW.base = 0"
	" BEGIN UPDATE shown SET base = (SELECT e.id FROM events e"
	"  WHERE e.user_id = (SELECT user_id FROM jobs WHERE id = NEW.job_id)"
	"  AND e.job_id = NEW.job_id ORDER BY e.id LIMIT 1)"
	" WHERE job_id = NEW.job_id; END;";

/*
 * Version 3: how many jobs each tool has in each state, kept by triggers,
 * so /metrics reads a handful of rows instead of counting a table that
 * only grows.
 */
static const char migration_3[] =
	"CREATE TABLE job_counts ("
	" tool TEXT NOT NULL,"
	" status TEXT NOT NULL,"
	" n INTEGER NOT NULL CHECK (n >= 0),"
	" PRIMARY KEY (tool, status)) WITHOUT ROWID;"
	"INSERT INTO job_counts SELECT tool, status, count(*) FROM jobs"
	" GROUP BY tool, status;"
	"CREATE TRIGGER job_counts_born AFTER INSERT ON jobs BEGIN"
	" INSERT INTO job_counts VALUES (NEW.tool, NEW.status, 1)"
	"  ON CONFLICT (tool, status) DO UPDATE SET n = n + 1; END;"
	"CREATE TRIGGER job_counts_move AFTER UPDATE OF status ON jobs"
	" WHEN NEW.status <> OLD.status BEGIN"
	" UPDATE job_counts SET n = n - 1"
	"  WHERE tool = OLD.tool AND status = OLD.status;"
	" INSERT INTO job_counts VALUES (NEW.tool, NEW.status, 1)"
	"  ON CONFLICT (tool, status) DO UPDATE SET n = n + 1; END;";

/*
 * Version 4: positions are derived, not stored. The queue's order lives in
 * memory (store.c), kept in step from the log, so each event names its
 * job's seq and status; position events and the places they showed go.
 * (Processes of an older version must be stopped first: they write those.)
 */
static const char migration_4[] =
	"DELETE FROM events WHERE position IS NOT NULL;"
	"DROP TRIGGER shown_leaves;"
	"DROP TRIGGER shown_base;"
	"DROP TABLE shown;"
	"ALTER TABLE events DROP COLUMN position;"
	"ALTER TABLE events DROP COLUMN base;"
	"ALTER TABLE events ADD COLUMN seq INTEGER;"
	"ALTER TABLE events ADD COLUMN status TEXT;"
	"UPDATE events SET status = json_extract(data, '$.status'),"
	" seq = (SELECT seq FROM jobs WHERE jobs.id = events.job_id)"
	" WHERE json_valid(data);";

/*
 * Version 5: every read of jobs by state uses an index of just those
 * jobs. The index of all jobs by (status, seq) grew with every job ever
 * made, and a look for queued jobs waiting too long walked the whole
 * queue; now the queued are found by age (jobs_queued_since), and the
 * few starting or running ones by state (jobs_started).
 */
static const char migration_5[] =
	"DROP INDEX jobs_status_seq;"
	"CREATE INDEX jobs_started ON jobs (status, seq)"
	" WHERE status IN ('starting', 'running');"
	"CREATE INDEX jobs_queued_since ON jobs (created_at)"
	" WHERE status = 'queued';";

/*
 * Version 6: leases. Several processes may share the store; each names
 * itself and renews a lease in processes, and a job in the hands of one
 * (starting, running, or ended with its slot waiting for the provider)
 * names it as its starter. The jobs of a process whose lease ran out are
 * taken over by a live one. A terminal job's starter may still change:
 * nothing else of it.
 */
static const char migration_6[] =
	"CREATE TABLE processes ("
	" id TEXT PRIMARY KEY,"
	" lease_until INTEGER NOT NULL,"
	" started_at INTEGER NOT NULL) WITHOUT ROWID;"
	"ALTER TABLE jobs ADD COLUMN starter TEXT;"
	"CREATE INDEX jobs_starter ON jobs (starter)"
	" WHERE status IN ('starting', 'running');"
	"DROP TRIGGER jobs_terminal;"
	"CREATE TRIGGER jobs_terminal BEFORE UPDATE OF seq, id, user_id, tool,"
	" variant, status, inputs, outputs, error_code, error_message, cost,"
	" charged, refunded, provider_task_id, webhook_token, session_id,"
	" idem_key, created_at, started_at, finished_at, updated_at ON jobs"
	" WHEN OLD.status IN " TERMINAL_SQL " BEGIN"
	" SELECT RAISE(ABORT, 'a terminal job never changes'); END;";

/*
 * Version 7: capacity, cost, and the app's webhooks. Each provider account
 * is a pool of slots: accounts holds its size, and a slot row belongs to
 * one account (its number n in it), so rule 1 holds per account; a job
 * names the account of its slot. A job keeps what the provider said it
 * cost. The outbox holds the webhooks to deliver, one row per event,
 * written in the transaction of the change. Indexes for the per-user
 * limits and the upload retention sweep.
 */
static const char migration_7[] =
	"CREATE TABLE accounts ("
	" name TEXT PRIMARY KEY,"
	" slots INTEGER NOT NULL CHECK (slots >= 0)) WITHOUT ROWID;"
	"INSERT INTO accounts SELECT 'default', count(*) FROM slots;"
	"ALTER TABLE slots ADD COLUMN account TEXT NOT NULL DEFAULT 'default';"
	"ALTER TABLE slots ADD COLUMN n INTEGER;"
	"UPDATE slots SET n = id;"
	"CREATE UNIQUE INDEX slots_place ON slots (account, n);"
	"ALTER TABLE jobs ADD COLUMN account TEXT;"
	"ALTER TABLE jobs ADD COLUMN provider_cost TEXT"
	" CHECK (provider_cost IS NULL OR json_valid(provider_cost));"
	"UPDATE jobs SET account = 'default'"
	" WHERE status IN ('starting', 'running');"
	"DROP TRIGGER jobs_terminal;"
	"CREATE TRIGGER jobs_terminal BEFORE UPDATE OF seq, id, user_id, tool,"
	" variant, status, inputs, outputs, error_code, error_message, cost,"
	" charged, refunded, provider_task_id, webhook_token, session_id,"
	" idem_key, created_at, started_at, finished_at, updated_at, account,"
	" provider_cost ON jobs"
	" WHEN OLD.status IN " TERMINAL_SQL " BEGIN"
	" SELECT RAISE(ABORT, 'a terminal job never changes'); END;"
	"CREATE TABLE outbox ("
	" event_id INTEGER PRIMARY KEY,"
	" job_id TEXT NOT NULL,"
	" status TEXT NOT NULL DEFAULT 'pending'"
	"  CHECK (status IN ('pending', 'delivered', 'failed')),"
	" attempts INTEGER NOT NULL DEFAULT 0,"
	" next_at INTEGER NOT NULL,"
	" claimed_until INTEGER NOT NULL DEFAULT 0,"
	" last_error TEXT,"
	" created_at INTEGER NOT NULL,"
	" done_at INTEGER);"
	"CREATE INDEX outbox_due ON outbox (next_at) WHERE status = 'pending';"
	"CREATE INDEX outbox_job ON outbox (job_id, event_id)"
	" WHERE status = 'pending';"
	"CREATE INDEX outbox_failed ON outbox (event_id)"
	" WHERE status = 'failed';"
	"CREATE INDEX outbox_delivered ON outbox (done_at)"
	" WHERE status = 'delivered';"
	"CREATE INDEX uploads_user_created ON uploads (user_id, created_at);"
	"CREATE INDEX uploads_created ON uploads (created_at);";

/*
 * Version 8: the outputs fila keeps (outputs.store): one row per output,
 * so that GET /v1/outputs/{id} finds its owner and bytes without reading
 * every job; and settings, secrets every process sharing the store
 * agrees on (the key that signs output URLs).
 */
static const char migration_8[] =
	"CREATE TABLE outputs ("
	" id TEXT PRIMARY KEY,"
	" job_id TEXT NOT NULL,"
	" user_id TEXT NOT NULL,"
	" type TEXT NOT NULL,"
	" size INTEGER NOT NULL CHECK (size >= 0),"
	" sha256 TEXT NOT NULL,"
	" created_at INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE INDEX outputs_job ON outputs (job_id);"
	"CREATE TABLE settings ("
	" name TEXT PRIMARY KEY,"
	" value TEXT NOT NULL) WITHOUT ROWID;";

/*
 * Version 9: no IN list of three constants or more where one is evaluated
 * at every change of a job (the triggers on jobs, the index of the users'
 * active jobs): SQLite builds a temporary table for each such list each
 * time it is evaluated, a few microseconds, several times per change.
 * Comparisons say the same. (The CHECKs keep theirs: changing one means
 * rebuilding its table.)
 */
static const char migration_9[] =
	"DROP INDEX jobs_user_active;"
	"CREATE INDEX jobs_user_active ON jobs (user_id) WHERE " LIVE_SQL ";"
	"DROP TRIGGER jobs_terminal;"
	"CREATE TRIGGER jobs_terminal BEFORE UPDATE OF seq, id, user_id, tool,"
	" variant, status, inputs, outputs, error_code, error_message, cost,"
	" charged, refunded, provider_task_id, webhook_token, session_id,"
	" idem_key, created_at, started_at, finished_at, updated_at, account,"
	" provider_cost ON jobs"
	" WHEN OLD.status = 'completed' OR OLD.status = 'failed'"
	"  OR OLD.status = 'cancelled' BEGIN"
	" SELECT RAISE(ABORT, 'a terminal job never changes'); END;"
	"DROP TRIGGER jobs_arrows;"
	"CREATE TRIGGER jobs_arrows BEFORE UPDATE ON jobs"
	" WHEN NEW.status <> OLD.status AND NOT ("
	"  (OLD.status = 'queued' AND (NEW.status = 'starting'"
	"   OR NEW.status = 'cancelled' OR NEW.status = 'failed'))"
	"  OR (OLD.status = 'starting' AND (NEW.status = 'running'"
	"   OR NEW.status = 'failed' OR NEW.status = 'cancelled'))"
	"  OR (OLD.status = 'running' AND (NEW.status = 'completed'"
	"   OR NEW.status = 'failed' OR NEW.status = 'cancelled'))) BEGIN"
	" SELECT RAISE(ABORT, 'not a transition of a job'); END;";

/*
 * Version 10: jobs and ledger rebuilt, their rows copied as they are, for
 * less work per row written (docs/design.md, the store):
 * - their CHECKs without IN lists of three constants or more (jobs.status,
 *   ledger.kind), the rest of version 9;
 * - ledger without AUTOINCREMENT: an append-only table never reuses an id
 *   anyway, and AUTOINCREMENT wrote sqlite_sequence at every row;
 * - one job per idempotency key per user, a unique index over the jobs
 *   that have a key, instead of a constraint over every job: a submit
 *   without a key no longer writes an entry of it.
 * Indexes and triggers go with a dropped table; they are made again as
 * versions 1 to 9 left them. Foreign keys are off meanwhile (migrate()),
 * and the renames do not check the schema (the triggers of slots name
 * jobs, which is gone until its copy takes its name).
 */
static const char migration_10[] =
	"CREATE TABLE jobs_v10 ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" id TEXT UNIQUE NOT NULL,"
	" user_id TEXT NOT NULL REFERENCES users (id),"
	" tool TEXT NOT NULL,"
	" variant TEXT,"
	" status TEXT NOT NULL CHECK (status = 'queued' OR status = 'starting'"
	"  OR status = 'running' OR status = 'completed' OR status = 'failed'"
	"  OR status = 'cancelled'),"
	" inputs TEXT NOT NULL CHECK (json_valid(inputs)),"
	" outputs TEXT CHECK (outputs IS NULL OR json_valid(outputs)),"
	" error_code TEXT,"
	" error_message TEXT,"
	" cost INTEGER NOT NULL CHECK (cost >= 0),"
	" charged INTEGER NOT NULL DEFAULT 0 CHECK (charged IN (0, 1)),"
	" refunded INTEGER NOT NULL DEFAULT 0 CHECK (refunded IN (0, 1)"
	"  AND refunded <= charged"
	"  AND (refunded = 0 OR status IN ('failed', 'cancelled'))),"
	" provider_task_id TEXT,"
	" webhook_token TEXT UNIQUE NOT NULL,"
	" session_id TEXT,"
	" idem_key TEXT,"
	" created_at INTEGER NOT NULL,"
	" started_at INTEGER,"
	" finished_at INTEGER,"
	" updated_at INTEGER NOT NULL,"
	" starter TEXT,"
	" account TEXT,"
	" provider_cost TEXT CHECK (provider_cost IS NULL"
	"  OR json_valid(provider_cost)));"
	"INSERT INTO jobs_v10 SELECT seq, id, user_id, tool, variant, status,"
	" inputs, outputs, error_code, error_message, cost, charged, refunded,"
	" provider_task_id, webhook_token, session_id, idem_key, created_at,"
	" started_at, finished_at, updated_at, starter, account, provider_cost"
	" FROM jobs;"
	/* The next seq continues from the old sequence (DROP TABLE drops
	 * it; RENAME carries the new one's). */
	"UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT o.seq"
	" FROM sqlite_sequence o WHERE o.name = 'jobs'), 0))"
	" WHERE name = 'jobs_v10';"
	/* The triggers of slots name jobs: a rename that checks the schema
	 * would refuse to run while jobs is gone. */
	"PRAGMA legacy_alter_table = ON;"
	"DROP TABLE jobs;"
	"ALTER TABLE jobs_v10 RENAME TO jobs;"
	"CREATE UNIQUE INDEX jobs_user_idem ON jobs (user_id, idem_key)"
	" WHERE idem_key IS NOT NULL;"
	"CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued';"
	"CREATE INDEX jobs_user_seq ON jobs (user_id, seq);"
	"CREATE INDEX jobs_user_active ON jobs (user_id) WHERE " LIVE_SQL ";"
	"CREATE INDEX jobs_finished ON jobs (finished_at)"
	" WHERE finished_at IS NOT NULL;"
	"CREATE INDEX jobs_started ON jobs (status, seq)"
	" WHERE status IN ('starting', 'running');"
	"CREATE INDEX jobs_queued_since ON jobs (created_at)"
	" WHERE status = 'queued';"
	"CREATE INDEX jobs_starter ON jobs (starter)"
	" WHERE status IN ('starting', 'running');"
	"CREATE TRIGGER jobs_born_queued BEFORE INSERT ON jobs"
	" WHEN NEW.status <> 'queued' BEGIN"
	" SELECT RAISE(ABORT, 'a job is created queued'); END;"
	"CREATE TRIGGER jobs_arrows BEFORE UPDATE ON jobs"
	" WHEN NEW.status <> OLD.status AND NOT ("
	"  (OLD.status = 'queued' AND (NEW.status = 'starting'"
	"   OR NEW.status = 'cancelled' OR NEW.status = 'failed'))"
	"  OR (OLD.status = 'starting' AND (NEW.status = 'running'"
	"   OR NEW.status = 'failed' OR NEW.status = 'cancelled'))"
	"  OR (OLD.status = 'running' AND (NEW.status = 'completed'"
	"   OR NEW.status = 'failed' OR NEW.status = 'cancelled'))) BEGIN"
	" SELECT RAISE(ABORT, 'not a transition of a job'); END;"
	"CREATE TRIGGER jobs_terminal BEFORE UPDATE OF seq, id, user_id, tool,"
	" variant, status, inputs, outputs, error_code, error_message, cost,"
	" charged, refunded, provider_task_id, webhook_token, session_id,"
	" idem_key, created_at, started_at, finished_at, updated_at, account,"
	" provider_cost ON jobs"
	" WHEN OLD.status = 'completed' OR OLD.status = 'failed'"
	"  OR OLD.status = 'cancelled' BEGIN"
	" SELECT RAISE(ABORT, 'a terminal job never changes'); END;"
	"CREATE TRIGGER jobs_need_slot BEFORE UPDATE ON jobs"
	" WHEN NEW.status IN ('starting', 'running') AND NOT EXISTS"
	" (SELECT 1 FROM slots WHERE job_id = NEW.id) BEGIN"
	" SELECT RAISE(ABORT, 'a job starts only by taking a slot'); END;"
	"CREATE TRIGGER job_counts_born AFTER INSERT ON jobs BEGIN"
	" INSERT INTO job_counts VALUES (NEW.tool, NEW.status, 1)"
	"  ON CONFLICT (tool, status) DO UPDATE SET n = n + 1; END;"
	"CREATE TRIGGER job_counts_move AFTER UPDATE OF status ON jobs"
	" WHEN NEW.status <> OLD.status BEGIN"
	" UPDATE job_counts SET n = n - 1"
	"  WHERE tool = OLD.tool AND status = OLD.status;"
	" INSERT INTO job_counts VALUES (NEW.tool, NEW.status, 1)"
	"  ON CONFLICT (tool, status) DO UPDATE SET n = n + 1; END;"

	"CREATE TABLE ledger_v10 ("
	" id INTEGER PRIMARY KEY,"
	" user_id TEXT NOT NULL REFERENCES users (id),"
	" job_id TEXT,"
	" kind TEXT NOT NULL CHECK (kind = 'grant' OR kind = 'charge'"
	"  OR kind = 'refund'),"
	" amount INTEGER NOT NULL,"
	" balance_after INTEGER NOT NULL CHECK (balance_after >= 0),"
	" reason TEXT,"
	" at INTEGER NOT NULL,"
	" UNIQUE (job_id, kind));"
	"INSERT INTO ledger_v10 SELECT id, user_id, job_id, kind, amount,"
	" balance_after, reason, at FROM ledger;"
	"DROP TABLE ledger;"
	"ALTER TABLE ledger_v10 RENAME TO ledger;"
	"CREATE INDEX ledger_user ON ledger (user_id, id);"
	"CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger BEGIN"
	" SELECT RAISE(ABORT, 'the ledger is append-only'); END;"
	"CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger BEGIN"
	" SELECT RAISE(ABORT, 'the ledger is append-only'); END;"
	"PRAGMA legacy_alter_table = OFF;";

/*
 * Version 11: a tool's completed jobs by seq, for the admission's median
 * runs (and the admin list of a tool's completed jobs). Read through the
 * index of all jobs by seq, the newest 500 of a tool walked back over
 * every other job since: with 50,000 queued and none completed yet, each
 * read (once a second per tool) walked the whole table.
 */
static const char migration_11[] =
	"CREATE INDEX jobs_completed ON jobs (tool, seq)"
	" WHERE status = 'completed';";

static const char *const migrations[] = {
	migration_1,
	migration_2,
	migration_3,
	migration_4,
	migration_5,
	migration_6,
	migration_7,
	migration_8,
	migration_9,
	migration_10,
	migration_11,
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))

/* The columns row_job() reads, in order. Positions are not stored: the
 * store places queued jobs from the queue's order (store_place). */
#define JOB_COLS                                                               \
	"seq, id, user_id, tool, variant, status, inputs, outputs,"            \
	" error_code, error_message, cost, charged, refunded,"                 \
	" provider_task_id, webhook_token, session_id, idem_key,"              \
	" created_at, started_at, finished_at, updated_at, starter,"         \
	" account, provider_cost"
#define SELECT_JOB "SELECT " JOB_COLS " FROM jobs "

enum stmt_id {
	ST_BEGIN,
	ST_BEGIN_READ,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_DATA_VERSION,
	ST_QUEUE_SEQS,
	ST_QUEUE_FOLLOW,
	ST_VERSION,
	ST_VERSION_SET,
	ST_USER_INSERT,
	ST_USER_BALANCE,
	ST_USER_SET,
	ST_USER_ADD,
	ST_LEDGER_INSERT,
	ST_LEDGER_LIST,
	ST_UPLOAD_INSERT,
	ST_UPLOAD_GET,
	ST_JOB_INSERT,
	ST_JOB_GET,
	ST_JOB_BY_TOKEN,
	ST_JOB_BY_IDEM,
	ST_JOB_ACTIVE,
	ST_ACTIVE_COUNT,
	ST_LIST_USER,
	ST_LIST_ALL,
	ST_LIST_DONE,
	ST_JOBS_QUEUED,
	ST_JOBS_STARTED,
	ST_QUEUE_LENGTH,
	ST_QUEUE_HEAD,
	ST_JOB_START,
	ST_JOB_RUNNING,
	ST_JOB_FINISH,
	ST_SLOT_ADD,
	ST_SLOT_TRIM,
	ST_SLOTS_ALL,
	ST_SLOT_TAKE,
	ST_SLOT_RELEASE,
	ST_SLOTS_USED,
	ST_EVENT_INSERT,
	ST_JOBS_FINISHED,
	ST_EVENTS_AFTER,
	ST_EVENTS_LAST,
	ST_JOB_COUNTS,
	ST_QUEUED_OLDER,
	ST_STARTED_OLDER,
	ST_JOBS_HOLDING_ENDED,
	ST_CALLBACK_INSERT,
	ST_LEASE_RENEW,
	ST_LEASE_ADOPT,
	ST_LEASE_FORGET,
	ST_ACCOUNT_SET,
	ST_ACCOUNTS_OFF,
	ST_JOB_SLOT,
	ST_SLOT_PLACE,
	ST_SLOT_LABEL,
	ST_JOB_ACCOUNT,
	ST_SLOTS_BY_ACCOUNT,
	ST_JOB_COST,
	ST_USER_SUBMITS,
	ST_USER_UPLOADS,
	ST_UPLOADS_OLDER,
	ST_UPLOAD_DELETE,
	ST_OUTBOX_ADD,
	ST_OUTBOX_DUE,
	ST_OUTBOX_CLAIM,
	ST_OUTBOX_DONE,
	ST_OUTBOX_PRUNE,
	ST_OUTBOX_LIST,
	ST_OUTBOX_COUNTS,
	ST_LAST_DEPARTURE,
	ST_OUTPUT_ADD,
	ST_OUTPUT_GET,
	ST_SECRET_SET,
	ST_SECRET_GET,
	ST_COUNT,
};

static const char *const stmt_sql[ST_COUNT] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_BEGIN_READ] = "BEGIN",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT w",
	[ST_RELEASE] = "RELEASE w",
	[ST_ROLLBACK_TO] = "ROLLBACK TO w",
	[ST_DATA_VERSION] = "PRAGMA data_version",
	[ST_QUEUE_SEQS] = "SELECT seq FROM jobs WHERE status = 'queued'",
	[ST_QUEUE_FOLLOW] = "SELECT id, seq, status = 'queued' FROM events"
	    " WHERE id > ?1 AND seq IS NOT NULL ORDER BY id",
	[ST_VERSION] = "SELECT coalesce(max(version), 0) FROM schema_version",
	[ST_VERSION_SET] =
	    "INSERT INTO schema_version (version, applied_at) VALUES (?1, ?2)",
	[ST_USER_INSERT] = "INSERT INTO users (id, balance, created_at)"
	    " VALUES (?1, ?2, ?3) ON CONFLICT (id) DO NOTHING",
	[ST_USER_BALANCE] = "SELECT balance FROM users WHERE id = ?1",
	[ST_USER_SET] = "UPDATE users SET balance = ?2 WHERE id = ?1",
	[ST_USER_ADD] =
	    "UPDATE users SET balance = balance + ?2 WHERE id = ?1",
	[ST_LEDGER_INSERT] =
	    "INSERT INTO ledger (user_id, job_id, kind, amount,"
	    " balance_after, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_LEDGER_LIST] = "SELECT id, job_id, kind, amount, balance_after, at"
	    " FROM ledger WHERE user_id = ?1 ORDER BY id DESC",
	[ST_UPLOAD_INSERT] =
	    "INSERT INTO uploads (id, user_id, type, size, sha256, filename,"
	    " path, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
	[ST_UPLOAD_GET] = "SELECT id, user_id, type, size, sha256, filename,"
	    " path, created_at FROM uploads"
	    " WHERE id = ?1 AND user_id = ?2",
	[ST_JOB_INSERT] =
	    "INSERT INTO jobs (id, user_id, tool, variant, status, inputs,"
	    " cost, charged, webhook_token, session_id, idem_key,"
	    " created_at, updated_at)"
	    " VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, 1, ?7, ?8, ?9,"
	    " ?10, ?10)",
	[ST_JOB_GET] =
	    SELECT_JOB "WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
	[ST_JOB_BY_TOKEN] = SELECT_JOB "WHERE webhook_token = ?1",
	[ST_JOB_BY_IDEM] = SELECT_JOB "WHERE user_id = ?1 AND idem_key = ?2",
	[ST_JOB_ACTIVE] =
	    SELECT_JOB "WHERE user_id = ?1 AND " LIVE_SQL
	    " ORDER BY seq LIMIT 1",
	/* The user's active jobs and balance in one read. */
	[ST_ACTIVE_COUNT] = "SELECT (SELECT count(*) FROM jobs WHERE"
	    " user_id = ?1 AND " LIVE_SQL "), balance"
	    " FROM users WHERE id = ?1",
	/* Two statements, so that a user's list walks (user_id, seq). */
	[ST_LIST_USER] =
	    SELECT_JOB "WHERE user_id = ?1 AND (?2 IS NULL OR status = ?2)"
	    " AND (?3 IS NULL OR tool = ?3) AND seq < ?4"
	    " ORDER BY seq DESC LIMIT ?5",
	[ST_LIST_ALL] = SELECT_JOB "WHERE (?2 IS NULL OR status = ?2)"
	    " AND (?3 IS NULL OR tool = ?3) AND seq < ?4"
	    " ORDER BY seq DESC LIMIT ?5",
	/* The same for a tool's completed jobs, by their own index. */
	[ST_LIST_DONE] = SELECT_JOB "WHERE status = 'completed' AND tool = ?3"
	    " AND seq < ?4 ORDER BY seq DESC LIMIT ?5",
	/* Positions of a whole queue are its row numbers: see jobs_in. Each
	 * statement names the states of the partial index it walks. */
	[ST_JOBS_QUEUED] = "SELECT " JOB_COLS " FROM jobs"
	    " WHERE status = 'queued' ORDER BY seq LIMIT ?2",
	[ST_JOBS_STARTED] = "SELECT " JOB_COLS " FROM jobs WHERE status = ?1"
	    " AND status IN ('starting', 'running') ORDER BY seq LIMIT ?2",
	[ST_QUEUE_LENGTH] = "SELECT count(*) FROM jobs WHERE status = 'queued'",
	[ST_QUEUE_HEAD] = SELECT_JOB "WHERE status = 'queued'"
	    " ORDER BY seq LIMIT 1",
	[ST_JOB_START] = "UPDATE jobs SET status = 'starting', started_at = ?2,"
	    " account = (SELECT account FROM slots WHERE job_id = ?1),"
	    " updated_at = ?2, starter = ?3 WHERE id = ?1 AND status = 'queued'",
	[ST_JOB_RUNNING] =
	    "UPDATE jobs SET status = 'running', provider_task_id = ?2,"
	    " updated_at = ?3 WHERE id = ?1 AND status = 'starting'",
	/* A job whose slot waits for the provider is carried by this
	 * process (?8) until it lets go. */
	[ST_JOB_FINISH] =
	    "UPDATE jobs SET status = ?2, error_code = ?3, error_message = ?4,"
	    " outputs = ?5, refunded = ?6, finished_at = ?7, updated_at = ?7,"
	    " starter = coalesce(?8, starter)"
	    " WHERE id = ?1 AND " LIVE_SQL
	    " AND (?2 <> 'completed' OR status = 'running')",
	[ST_SLOT_ADD] = "INSERT INTO slots (account, n) VALUES (?1, ?2)"
	    " ON CONFLICT (account, n) DO NOTHING",
	/* Free rows beyond their account's size go (held ones stay until
	 * released, so a shrink never evicts a running job). */
	[ST_SLOT_TRIM] = "DELETE FROM slots WHERE job_id IS NULL AND n >"
	    " coalesce((SELECT slots FROM accounts WHERE name = account), 0)",
	/* Every slot with its account's count, by account then place:
	 * slot_pick() chooses among them. */
	[ST_SLOTS_ALL] = "SELECT s.id, s.account, s.n, s.job_id IS NOT NULL,"
	    " a.slots FROM slots s JOIN accounts a ON a.name = s.account"
	    " ORDER BY s.account, s.n",
	[ST_SLOT_TAKE] =
	    "UPDATE slots SET job_id = ?2 WHERE id = ?1 AND job_id IS NULL",
	[ST_SLOT_RELEASE] = "UPDATE slots SET job_id = NULL WHERE job_id = ?1",
	[ST_SLOTS_USED] = "SELECT count(*) FROM slots WHERE job_id IS NOT NULL",
	[ST_EVENT_INSERT] = "INSERT INTO events (job_id, user_id, data, at,"
	    " seq, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[ST_JOBS_FINISHED] = "SELECT " JOB_COLS " FROM jobs"
	    " WHERE finished_at >= ?1 ORDER BY finished_at",
	[ST_EVENTS_AFTER] = "SELECT id, seq, job_id, user_id, data FROM events"
	    " WHERE id > ?1 AND id <= ?2 AND (?3 IS NULL OR user_id = ?3)"
	    " AND (?4 IS NULL OR job_id = ?4) ORDER BY id LIMIT ?5",
	[ST_EVENTS_LAST] = "SELECT COALESCE(MAX(id), 0) FROM events",
	[ST_CALLBACK_INSERT] = "INSERT INTO callbacks (job_id, task_id,"
	    " outcome, applied, at) VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_JOBS_HOLDING_ENDED] = "SELECT " JOB_COLS " FROM jobs"
	    " WHERE status IN " TERMINAL_SQL " AND id IN"
	    " (SELECT job_id FROM slots WHERE job_id IS NOT NULL) ORDER BY seq",
	[ST_QUEUED_OLDER] = "SELECT " JOB_COLS " FROM jobs"
	    " WHERE status = 'queued' AND created_at < ?2"
	    " ORDER BY created_at LIMIT ?3",
	[ST_STARTED_OLDER] = "SELECT " JOB_COLS " FROM jobs WHERE status = ?1"
	    " AND status IN ('starting', 'running') AND started_at < ?2"
	    " ORDER BY seq LIMIT ?3",
	[ST_JOB_COUNTS] = "SELECT tool, status, n FROM job_counts WHERE n > 0",
	[ST_LEASE_RENEW] = "INSERT INTO processes (id, lease_until, started_at)"
	    " VALUES (?1, ?2, ?3) ON CONFLICT (id)"
	    " DO UPDATE SET lease_until = ?2",
	/* What a lapsed process (or none, or with ?4 this one's name)
	 * carried: its starts, its running jobs, the ended jobs whose slot
	 * waits for the provider. */
	[ST_LEASE_ADOPT] = "UPDATE jobs SET starter = ?1"
	    " WHERE (starter IS NULL OR (?4 AND starter = ?1) OR starter NOT IN"
	    "  (SELECT id FROM processes WHERE lease_until >= ?3))"
	    " AND (status IN ('starting', 'running') OR (status IN "
	    TERMINAL_SQL " AND id IN (SELECT job_id FROM slots"
	    "  WHERE job_id IS NOT NULL)))"
	    " RETURNING " JOB_COLS,
	[ST_LEASE_FORGET] = "DELETE FROM processes WHERE lease_until < ?1"
	    " AND id <> ?2",
	[ST_ACCOUNT_SET] = "INSERT INTO accounts (name, slots) VALUES (?1, ?2)"
	    " ON CONFLICT (name) DO UPDATE SET slots = ?2",
	[ST_ACCOUNTS_OFF] = "UPDATE accounts SET slots = 0 WHERE name NOT IN"
	    " (SELECT value FROM json_each(?1))",
	[ST_JOB_SLOT] = "SELECT s.id FROM slots s JOIN jobs j"
	    " ON j.id = s.job_id WHERE j.id = ?1 AND j.status = 'starting'",
	[ST_SLOT_PLACE] = "SELECT account, n FROM slots WHERE id = ?1",
	[ST_SLOT_LABEL] = "UPDATE slots SET account = ?2, n = ?3 WHERE id = ?1",
	[ST_JOB_ACCOUNT] = "UPDATE jobs SET account = ?2"
	    " WHERE id = ?1 AND status = 'starting'",
	[ST_SLOTS_BY_ACCOUNT] = "SELECT a.name, count(s.job_id) FROM accounts a"
	    " LEFT JOIN slots s ON s.account = a.name"
	    " GROUP BY a.name ORDER BY a.name",
	[ST_JOB_COST] = "UPDATE jobs SET provider_cost = ?2"
	    " WHERE id = ?1 AND status = 'running'",
	/* The newest ?3 of the user's jobs are enough to say whether ?3
	 * were made since ?2. */
	[ST_USER_SUBMITS] = "SELECT count(*), coalesce(min(created_at), 0)"
	    " FROM (SELECT created_at FROM jobs"
	    " WHERE user_id = ?1 ORDER BY seq DESC LIMIT ?3)"
	    " WHERE created_at >= ?2",
	[ST_USER_UPLOADS] = "SELECT count(*), coalesce(sum(size), 0),"
	    " coalesce(min(created_at), 0)"
	    " FROM uploads WHERE user_id = ?1 AND created_at >= ?2",
	[ST_UPLOADS_OLDER] = "SELECT id, user_id, type, size, sha256,"
	    " filename, path, created_at FROM uploads WHERE created_at < ?1"
	    " ORDER BY created_at LIMIT ?2",
	[ST_UPLOAD_DELETE] = "DELETE FROM uploads WHERE id = ?1",
	[ST_OUTBOX_ADD] = "INSERT INTO outbox (event_id, job_id, next_at,"
	    " created_at) VALUES (?1, ?2, ?3, ?3)",
	/* Due, unclaimed, and the oldest pending of its job. */
	[ST_OUTBOX_DUE] = "SELECT o.event_id, o.job_id, e.status, e.data,"
	    " e.at, o.status, o.attempts, o.next_at, o.last_error"
	    " FROM outbox o JOIN events e ON e.id = o.event_id"
	    " WHERE o.status = 'pending' AND o.next_at <= ?1"
	    " AND o.claimed_until <= ?1 AND NOT EXISTS (SELECT 1 FROM outbox p"
	    "  WHERE p.job_id = o.job_id AND p.status = 'pending'"
	    "  AND p.event_id < o.event_id)"
	    " ORDER BY o.next_at, o.event_id LIMIT ?2",
	[ST_OUTBOX_CLAIM] = "UPDATE outbox SET claimed_until = ?2"
	    " WHERE event_id = ?1 AND status = 'pending'",
	[ST_OUTBOX_DONE] = "UPDATE outbox SET status = CASE WHEN ?2 THEN"
	    " 'delivered' WHEN ?3 > 0 THEN 'pending' ELSE 'failed' END,"
	    " attempts = attempts + 1,"
	    " next_at = CASE WHEN ?3 > 0 THEN ?3 ELSE next_at END,"
	    " claimed_until = 0, last_error = ?4,"
	    " done_at = CASE WHEN ?2 OR ?3 <= 0 THEN ?5 END"
	    " WHERE event_id = ?1 AND status = 'pending'",
	/* Delivered rows are kept a day, then go a few at a time. */
	[ST_OUTBOX_PRUNE] = "DELETE FROM outbox WHERE event_id IN (SELECT"
	    " event_id FROM outbox WHERE status = 'delivered' AND done_at < ?1"
	    " LIMIT 100)",
	[ST_OUTBOX_LIST] = "SELECT o.event_id, o.job_id, e.status, e.data,"
	    " e.at, o.status, o.attempts, o.next_at, o.last_error"
	    " FROM outbox o JOIN events e ON e.id = o.event_id"
	    " WHERE (?1 IS NULL OR o.status = ?1) AND o.event_id > ?2"
	    " ORDER BY o.event_id LIMIT ?3",
	/* From the end of the log back to the first that may be one. */
	[ST_LAST_DEPARTURE] = "SELECT coalesce(max(id), 0) FROM (SELECT id"
	    " FROM events WHERE status IN ('starting', 'cancelled', 'failed')"
	    " ORDER BY id DESC LIMIT 1)",
	[ST_OUTPUT_ADD] = "INSERT INTO outputs (id, job_id, user_id, type, size,"
	    " sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_OUTPUT_GET] = "SELECT id, job_id, user_id, type, size, sha256"
	    " FROM outputs WHERE id = ?1",
	[ST_SECRET_SET] = "INSERT INTO settings (name, value) VALUES (?1, ?2)"
	    " ON CONFLICT (name) DO NOTHING",
	[ST_SECRET_GET] = "SELECT value FROM settings WHERE name = ?1",
	[ST_OUTBOX_COUNTS] = "SELECT (SELECT count(*) FROM outbox"
	    " WHERE status = 'pending'), (SELECT count(*) FROM outbox"
	    " WHERE status = 'failed')",
};
/* clang-format on */

struct ckpt;
struct syncer;

struct sqlite_store {
	struct store base; /* first: the store.c handle */
	sqlite3 *db;
	struct ckpt *ckpt;     /* NULL: no WAL (in memory), or not yet */
	struct syncer *syncer; /* NULL: commits sync on the loop */
	struct store_opts opts;
	char *process; /* opts.process points here */
	sqlite3_stmt *stmt[ST_COUNT];
	int64_t data_version; /* PRAGMA data_version when last asked */
};

/* A typed statement argument; TXT(NULL) binds SQL NULL. */
struct sqlarg {
	enum { ARG_INT, ARG_TEXT } type;
	int64_t i;
	const char *s;
};
#define I64(x) ((struct sqlarg){ARG_INT, (x), NULL})
#define TXT(x) ((struct sqlarg){ARG_TEXT, 0, (x)})
#define ARGS(...)                                                              \
	(const struct sqlarg[]){__VA_ARGS__},                                  \
	    sizeof((const struct sqlarg[]){__VA_ARGS__}) /                     \
	        sizeof(struct sqlarg)
#define NOARGS NULL, 0

typedef enum store_rc (*tx_fn)(struct sqlite_store *s, void *arg);
struct tx_call {
	tx_fn fn;
	void *arg;
};

static struct sqlite_store *
lite(struct store *st)
{
	return (struct sqlite_store *)st;
}

/* ---- statements ---------------------------------------------------- */

/* Copy SQLite's message now: it changes with the next call. */
static enum store_rc
db_fail(struct sqlite_store *s)
{
	return store_set_error(&s->base, "sqlite: %s", sqlite3_errmsg(s->db));
}

static void
done(sqlite3_stmt *q)
{
	sqlite3_reset(q);
	sqlite3_clear_bindings(q);
}

/* The cached statement id with args bound, or NULL with the error set. */
static sqlite3_stmt *
prep(struct sqlite_store *s, enum stmt_id id, const struct sqlarg *a, size_t n)
{
	sqlite3_stmt *q = s->stmt[id];
	int rc = SQLITE_OK;

	if (q == NULL &&
	    sqlite3_prepare_v3(s->db, stmt_sql[id], -1,
	        SQLITE_PREPARE_PERSISTENT, &s->stmt[id], NULL) != SQLITE_OK) {
		db_fail(s);
		return NULL;
	}
	q = s->stmt[id];
	for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
		if (a[i].type == ARG_INT)
			rc = sqlite3_bind_int64(q, (int)i + 1, a[i].i);
		else if (a[i].s == NULL)
			rc = sqlite3_bind_null(q, (int)i + 1);
		else
			rc = sqlite3_bind_text(
			    q, (int)i + 1, a[i].s, -1, SQLITE_TRANSIENT);
	}
	if (rc != SQLITE_OK) {
		db_fail(s);
		done(q);
		return NULL;
	}
	return q;
}

/* Run a statement that returns no rows; *changes (if asked) the rows it
 * changed. */
static enum store_rc
run(struct sqlite_store *s, enum stmt_id id, int64_t *changes,
    const struct sqlarg *a, size_t n)
{
	sqlite3_stmt *q = prep(s, id, a, n);
	enum store_rc rc = STORE_OK;

	if (q == NULL)
		return STORE_ERROR;
	if (sqlite3_step(q) != SQLITE_DONE)
		rc = db_fail(s);
	else if (changes != NULL)
		*changes = sqlite3_changes64(s->db);
	done(q);
	return rc;
}

/* The first column of the first row as an integer; STORE_NOTFOUND when
 * there is no row. */
static enum store_rc
get_int(struct sqlite_store *s, enum stmt_id id, int64_t *out,
    const struct sqlarg *a, size_t n)
{
	sqlite3_stmt *q = prep(s, id, a, n);
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	step = sqlite3_step(q);
	if (step == SQLITE_ROW)
		*out = sqlite3_column_int64(q, 0);
	else if (step == SQLITE_DONE)
		rc = STORE_NOTFOUND;
	else
		rc = db_fail(s);
	done(q);
	return rc;
}

/* A whole SQL text (migrations, pragmas): not worth caching. */
static enum store_rc
exec_sql(struct sqlite_store *s, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return STORE_OK;
	store_set_error(&s->base, "sqlite: %s", msg ? msg : "exec failed");
	sqlite3_free(msg);
	return STORE_ERROR;
}

static enum store_rc
tx_run(struct store *st, void *arg)
{
	struct tx_call *c = arg;
	return c->fn((struct sqlite_store *)st, c->arg);
}

/* fn as one change (store_write): kept when it answers STORE_OK. */
static enum store_rc
tx(struct sqlite_store *s, tx_fn fn, void *arg)
{
	struct tx_call c = {fn, arg};
	return store_write(&s->base, tx_run, &c);
}

/* fn as one snapshot of reads (store_read). */
static enum store_rc
snapshot(struct sqlite_store *s, tx_fn fn, void *arg)
{
	struct tx_call c = {fn, arg};
	return store_read(&s->base, tx_run, &c);
}

/* ---- transactions, for store.c --------------------------------------- */

static enum store_rc
lite_begin(struct store *st, int write)
{
	return run(lite(st), write ? ST_BEGIN : ST_BEGIN_READ, NULL, NOARGS);
}

static void sync_ask(struct sqlite_store *s, int fd);

/* With a syncer, the commit's sync is its thread's (below). */
static enum store_rc
lite_commit(struct store *st)
{
	struct sqlite_store *s = lite(st);
	enum store_rc rc;
	int fd;

	if (s->syncer == NULL)
		return run(s, ST_COMMIT, NULL, NOARGS);
	walbuf_defer(1);
	rc = run(s, ST_COMMIT, NULL, NOARGS);
	walbuf_defer(0);
	if ((fd = walbuf_deferred()) >= 0)
		sync_ask(s, fd);
	return rc;
}

/* Some errors end the transaction by themselves: then nothing to do. */
static void
lite_rollback(struct store *st)
{
	if (!sqlite3_get_autocommit(lite(st)->db))
		run(lite(st), ST_ROLLBACK, NULL, NOARGS);
}

static enum store_rc
lite_savepoint(struct store *st)
{
	return run(lite(st), ST_SAVEPOINT, NULL, NOARGS);
}

static enum store_rc
lite_release(struct store *st)
{
	return run(lite(st), ST_RELEASE, NULL, NOARGS);
}

static enum store_rc
lite_rollback_to(struct store *st)
{
	struct sqlite_store *s = lite(st);

	if (sqlite3_get_autocommit(s->db) ||
	    run(s, ST_ROLLBACK_TO, NULL, NOARGS) != STORE_OK)
		return STORE_ERROR;
	return run(s, ST_RELEASE, NULL, NOARGS);
}

/* Another connection committed since we last asked (SQLite bumps the
 * data version of every other connection on a commit). */
static int
lite_others_wrote(struct store *st)
{
	struct sqlite_store *s = lite(st);
	int64_t v = 0;

	if (get_int(s, ST_DATA_VERSION, &v, NOARGS) != STORE_OK)
		return 1;
	if (v == s->data_version)
		return 0;
	s->data_version = v;
	return 1;
}

struct queue_load {
	void (*fn)(struct store *, int64_t);
	int64_t *last, *departed;
};

static enum store_rc
queue_load_tx(struct sqlite_store *s, void *arg)
{
	struct queue_load *l = arg;
	sqlite3_stmt *q = prep(s, ST_QUEUE_SEQS, NOARGS);
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	while ((step = sqlite3_step(q)) == SQLITE_ROW)
		l->fn(&s->base, sqlite3_column_int64(q, 0));
	if (step != SQLITE_DONE)
		rc = db_fail(s);
	done(q);
	if (rc == STORE_OK)
		rc = get_int(s, ST_EVENTS_LAST, l->last, NOARGS);
	if (rc == STORE_OK)
		rc = get_int(s, ST_LAST_DEPARTURE, l->departed, NOARGS);
	return rc;
}

static enum store_rc
lite_queue_load(struct store *st, void (*fn)(struct store *, int64_t seq),
    int64_t *last, int64_t *departed)
{
	struct queue_load l = {fn, last, departed};
	return snapshot(lite(st), queue_load_tx, &l);
}

static enum store_rc
lite_queue_follow(struct store *st, int64_t after,
    void (*fn)(struct store *, int64_t id, int64_t seq, int queued))
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q = prep(s, ST_QUEUE_FOLLOW, ARGS(I64(after)));
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	while ((step = sqlite3_step(q)) == SQLITE_ROW)
		fn(st, sqlite3_column_int64(q, 0), sqlite3_column_int64(q, 1),
		    sqlite3_column_int(q, 2));
	if (step != SQLITE_DONE)
		rc = db_fail(s);
	done(q);
	return rc;
}

/* ---- rows ---------------------------------------------------------- */

static char *
col_text(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	return t ? xstrdup((const char *)t) : NULL;
}

static int64_t
col_int(sqlite3_stmt *q, int i)
{
	return sqlite3_column_int64(q, i);
}

/* The JSON in column i, or a fresh empty one of the same kind when NULL. */
static json_t *
col_json(sqlite3_stmt *q, int i, int array)
{
	const char *t = (const char *)sqlite3_column_text(q, i);

	if (t == NULL)
		return array ? json_array() : json_object();
	return jsonr_loads(t, JSON_DECODE_ANY, NULL);
}

/* The columns of a row of JOB_COLS that a change may write, into j (what
 * j had of them is replaced). */
static enum store_rc
row_state(struct sqlite_store *s, sqlite3_stmt *q, struct job *j)
{
	const char *status = (const char *)sqlite3_column_text(q, 5);

	json_decref(j->outputs);
	free(j->error_code);
	free(j->error_message);
	free(j->provider_task_id);
	free(j->starter);
	free(j->account);
	json_decref(j->provider_cost);
	j->outputs = col_json(q, 7, 1);
	j->error_code = col_text(q, 8);
	j->error_message = col_text(q, 9);
	j->charged = col_int(q, 11) != 0;
	j->refunded = col_int(q, 12) != 0;
	j->provider_task_id = col_text(q, 13);
	j->started_at = col_int(q, 18);
	j->finished_at = col_int(q, 19);
	j->updated_at = col_int(q, 20);
	j->starter = col_text(q, 21);
	j->account = col_text(q, 22);
	j->provider_cost = sqlite3_column_type(q, 23) != SQLITE_NULL
	                       ? col_json(q, 23, 0)
	                       : NULL;
	job_changed(j);
	if (status == NULL || job_status_parse(status, &j->status) < 0 ||
	    j->outputs == NULL)
		return store_set_error(&s->base, "sqlite: job %s is malformed",
		    j->id ? j->id : "?");
	return STORE_OK;
}

/* Fill j (cleaned first) from a row of JOB_COLS. */
static enum store_rc
row_job(struct sqlite_store *s, sqlite3_stmt *q, struct job *j)
{
	job_cleanup(j);
	j->seq = col_int(q, 0);
	j->id = col_text(q, 1);
	j->user_id = col_text(q, 2);
	j->tool = col_text(q, 3);
	j->variant = col_text(q, 4);
	j->inputs = col_json(q, 6, 0);
	j->cost = col_int(q, 10);
	j->webhook_token = col_text(q, 14);
	j->session_id = col_text(q, 15);
	j->idem_key = col_text(q, 16);
	j->created_at = col_int(q, 17);
	if (j->inputs == NULL)
		return store_set_error(&s->base, "sqlite: job %s is malformed",
		    j->id ? j->id : "?");
	return row_state(s, q, j);
}

/* One job; STORE_NOTFOUND when the statement finds none. */
static enum store_rc
get_job(struct sqlite_store *s, enum stmt_id id, struct job *out,
    const struct sqlarg *a, size_t n)
{
	sqlite3_stmt *q = prep(s, id, a, n);
	enum store_rc rc;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	step = sqlite3_step(q);
	if (step == SQLITE_ROW)
		rc = row_job(s, q, out);
	else if (step == SQLITE_DONE)
		rc = STORE_NOTFOUND;
	else
		rc = db_fail(s);
	done(q);
	return rc;
}

/* Every job the statement finds, appended to out. */
static enum store_rc
get_jobs(struct sqlite_store *s, enum stmt_id id, struct job_list *out,
    const struct sqlarg *a, size_t n)
{
	sqlite3_stmt *q = prep(s, id, a, n);
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	while (rc == STORE_OK && (step = sqlite3_step(q)) == SQLITE_ROW)
		rc = row_job(s, q, job_list_push(out));
	if (rc == STORE_OK && step != SQLITE_DONE)
		rc = db_fail(s);
	done(q);
	return rc;
}

/* ---- shared steps of the transactions ------------------------------ */

static enum store_rc
ledger_add(struct sqlite_store *s, const char *user_id, const char *job_id,
    const char *kind, int64_t amount, int64_t balance_after, const char *reason,
    int64_t at)
{
	return run(s, ST_LEDGER_INSERT, NULL,
	    ARGS(TXT(user_id), TXT(job_id), TXT(kind), I64(amount),
	        I64(balance_after), TXT(reason), I64(at)));
}

/* Create the user with the initial grant unless they exist already;
 * *created (if asked) says which. */
static enum store_rc
user_ensure(
    struct sqlite_store *s, const char *user_id, int64_t now, int64_t *created)
{
	int64_t initial = s->opts.credits_initial, n = 0;
	enum store_rc rc = run(
	    s, ST_USER_INSERT, &n, ARGS(TXT(user_id), I64(initial), I64(now)));

	if (created)
		*created = n;
	if (rc != STORE_OK || n == 0 || initial <= 0)
		return rc;
	return ledger_add(
	    s, user_id, NULL, "grant", initial, initial, "initial", now);
}

/* Append the event row of job j: the job as clients now see it, kept
 * in j->json too. The queue's order follows it. */
static enum store_rc
emit(struct sqlite_store *s, struct job *j, int64_t now)
{
	char *data = job_to_text(j);
	enum store_rc rc = run(s, ST_EVENT_INSERT, NULL,
	    ARGS(TXT(j->id), TXT(j->user_id), TXT(data), I64(now), I64(j->seq),
	        TXT(job_status_name(j->status))));
	int64_t id = sqlite3_last_insert_rowid(s->db);

	if (rc == STORE_OK && store_hooked(s->opts.hooks, j->status))
		rc = run(s, ST_OUTBOX_ADD, NULL,
		    ARGS(I64(id), TXT(j->id), I64(now)));
	if (rc == STORE_OK)
		store_logged(&s->base, id, j->seq, j->status == JOB_QUEUED);
	job_changed(j);
	if (rc == STORE_OK)
		j->json = data;
	else
		free(data);
	return rc;
}

/* Job j as it now is: placed in the queue, its event row appended. */
static enum store_rc
logged(struct sqlite_store *s, struct job *j, int64_t now)
{
	store_place(&s->base, j);
	return emit(s, j, now);
}

/* Re-read the job just changed into out, and append its event row. */
static enum store_rc
changed(struct sqlite_store *s, const char *id, struct job *out, int64_t now)
{
	char *key = xstrdup(id); /* id may be out->id, which the read frees */
	enum store_rc rc =
	    get_job(s, ST_JOB_GET, out, ARGS(TXT(key), TXT(NULL)));

	if (rc == STORE_NOTFOUND)
		rc = store_set_error(&s->base, "sqlite: job %s vanished", key);
	free(key);
	return rc == STORE_OK ? logged(s, out, now) : rc;
}

/* The same for a job j read whole in this transaction: only what a change
 * writes is read again. Its inputs, above all, never change, and parsing
 * them was most of a read. */
static enum store_rc
changed_read(struct sqlite_store *s, struct job *j, int64_t now)
{
	sqlite3_stmt *q = prep(s, ST_JOB_GET, ARGS(TXT(j->id), TXT(NULL)));
	enum store_rc rc;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	step = sqlite3_step(q);
	if (step == SQLITE_ROW)
		rc = row_state(s, q, j);
	else if (step == SQLITE_DONE)
		rc =
		    store_set_error(&s->base, "sqlite: job %s vanished", j->id);
	else
		rc = db_fail(s);
	done(q);
	return rc == STORE_OK ? logged(s, j, now) : rc;
}

/* Free the job's slot; a row beyond a shrunk slot count goes with it. */
static enum store_rc
slot_free(struct sqlite_store *s, const char *job_id)
{
	enum store_rc rc = run(s, ST_SLOT_RELEASE, NULL, ARGS(TXT(job_id)));

	if (rc == STORE_OK)
		rc = run(s, ST_SLOT_TRIM, NULL, NOARGS);
	return rc;
}

/* ---- users and credits --------------------------------------------- */

struct user_arg {
	const char *user_id;
	int64_t amount;
	const char *reason;
	int64_t *balance;
};

static enum store_rc
balance_tx(struct sqlite_store *s, void *arg)
{
	struct user_arg *u = arg;
	enum store_rc rc = user_ensure(s, u->user_id, now_ms(), NULL);

	if (rc != STORE_OK)
		return rc;
	return get_int(s, ST_USER_BALANCE, u->balance, ARGS(TXT(u->user_id)));
}

/* Read first: only a user never seen before costs a write. */
static enum store_rc
lite_user_balance(struct store *st, const char *user_id, int64_t *balance)
{
	struct sqlite_store *s = lite(st);
	struct user_arg u = {user_id, 0, NULL, balance};
	enum store_rc rc =
	    get_int(s, ST_USER_BALANCE, balance, ARGS(TXT(user_id)));

	if (rc != STORE_NOTFOUND)
		return rc;
	return tx(s, balance_tx, &u);
}

static enum store_rc
grant_tx(struct sqlite_store *s, void *arg)
{
	struct user_arg *u = arg;
	int64_t now = now_ms(), bal, after;
	enum store_rc rc = balance_tx(s, u);

	if (rc != STORE_OK)
		return rc;
	bal = *u->balance;
	if (__builtin_add_overflow(bal, u->amount, &after))
		return store_set_error(
		    &s->base, "grant of %lld overflows", (long long)u->amount);
	if (after < 0)
		return STORE_CREDITS;
	if (after > CREDITS_MAX)
		return STORE_CONFLICT;
	rc = run(s, ST_USER_SET, NULL, ARGS(TXT(u->user_id), I64(after)));
	if (rc == STORE_OK)
		rc = ledger_add(s, u->user_id, NULL, "grant", u->amount, after,
		    u->reason, now);
	if (rc == STORE_OK)
		*u->balance = after;
	return rc;
}

static enum store_rc
lite_user_grant(struct store *st, const char *user_id, int64_t amount,
    const char *reason, int64_t *balance)
{
	int64_t bal = 0;
	struct user_arg u = {user_id, amount, reason, &bal};
	enum store_rc rc = tx(lite(st), grant_tx, &u);

	if (balance != NULL)
		*balance = bal;
	return rc;
}

static json_t *
ledger_row(sqlite3_stmt *q)
{
	char at[TIME_BUF];
	const char *job = (const char *)sqlite3_column_text(q, 1);
	char *id = xasprintf("led_%lld", (long long)col_int(q, 0));
	json_t *e = json_pack("{s:s, s:o, s:s, s:I, s:I, s:s}", "id", id,
	    "job_id", job ? json_string(job) : json_null(), "kind",
	    (const char *)sqlite3_column_text(q, 2), "amount",
	    (json_int_t)col_int(q, 3), "balance_after",
	    (json_int_t)col_int(q, 4), "at", fmt_time(col_int(q, 5), at));

	free(id);
	return e;
}

/* A user never seen is created first, so their first look at the ledger
 * already shows the initial grant that /v1/me reports. */
static enum store_rc
lite_ledger(struct store *st, const char *user_id, json_t **entries)
{
	struct sqlite_store *s = lite(st);
	int64_t bal = 0;
	enum store_rc rc = lite_user_balance(st, user_id, &bal);
	sqlite3_stmt *q;
	int step;

	if (rc != STORE_OK)
		return rc;
	q = prep(s, ST_LEDGER_LIST, ARGS(TXT(user_id)));
	if (q == NULL)
		return STORE_ERROR;
	*entries = json_array();
	while ((step = sqlite3_step(q)) == SQLITE_ROW)
		json_array_append_new(*entries, ledger_row(q));
	if (step != SQLITE_DONE) {
		rc = db_fail(s);
		json_decref(*entries);
		*entries = NULL;
	}
	done(q);
	return rc;
}

/* ---- uploads ------------------------------------------------------- */

struct upload_arg {
	const struct upload *u;
};

static enum store_rc
upload_tx(struct sqlite_store *s, void *arg)
{
	const struct upload *u = ((struct upload_arg *)arg)->u;
	enum store_rc rc = run(s, ST_UPLOAD_INSERT, NULL,
	    ARGS(TXT(u->id), TXT(u->user_id), TXT(u->type), I64(u->size),
	        TXT(u->sha256), TXT(u->filename), TXT(u->path),
	        I64(u->created_at ? u->created_at : now_ms())));

	if (rc == STORE_ERROR &&
	    sqlite3_extended_errcode(s->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
		return STORE_EXISTS;
	return rc;
}

static enum store_rc
lite_upload_add(struct store *st, const struct upload *u)
{
	struct upload_arg a = {u};
	return tx(lite(st), upload_tx, &a);
}

static enum store_rc
lite_upload_get(
    struct store *st, const char *id, const char *user_id, struct upload *out)
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q = prep(s, ST_UPLOAD_GET, ARGS(TXT(id), TXT(user_id)));
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	step = sqlite3_step(q);
	if (step == SQLITE_ROW) {
		out->id = col_text(q, 0);
		out->user_id = col_text(q, 1);
		out->type = col_text(q, 2);
		out->size = col_int(q, 3);
		out->sha256 = col_text(q, 4);
		out->filename = col_text(q, 5);
		out->path = col_text(q, 6);
		out->created_at = col_int(q, 7);
	} else if (step == SQLITE_DONE) {
		rc = STORE_NOTFOUND;
	} else {
		rc = db_fail(s);
	}
	done(q);
	return rc;
}

/* ---- submit -------------------------------------------------------- */

struct submit_arg {
	const struct job_new *in;
	struct job *out;
	int64_t *balance;
};

/* out as the job just inserted (at seq) is: what a read would give,
 * without the read. */
static void
born(struct job *out, const struct job_new *in, int64_t seq, int64_t now)
{
	job_cleanup(out);
	out->seq = seq;
	out->id = xstrdup(in->id);
	out->user_id = xstrdup(in->user_id);
	out->tool = xstrdup(in->tool);
	out->variant = xstrdup_or_null(in->variant);
	out->status = JOB_QUEUED;
	/* The caller's inputs, shared: a job's inputs are never changed. */
	out->inputs = in->inputs ? json_incref(in->inputs) : json_object();
	out->outputs = json_array();
	out->cost = in->cost;
	out->charged = 1;
	out->webhook_token = xstrdup(in->webhook_token);
	out->session_id = xstrdup_or_null(in->session_id);
	out->idem_key = xstrdup_or_null(in->idem_key);
	out->created_at = out->updated_at = now;
}

/* The two columns of the first row of statement id: STORE_NOTFOUND when
 * there is none. */
static enum store_rc
get_ints(struct sqlite_store *s, enum stmt_id id, int64_t *a, int64_t *b,
    const struct sqlarg *args, size_t n)
{
	sqlite3_stmt *q = prep(s, id, args, n);
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	step = sqlite3_step(q);
	if (step == SQLITE_ROW) {
		*a = sqlite3_column_int64(q, 0);
		*b = sqlite3_column_int64(q, 1);
	} else {
		rc = step == SQLITE_DONE ? STORE_NOTFOUND : db_fail(s);
	}
	done(q);
	return rc;
}

/* The rules of admission, in the order store.h gives them. A user just
 * created has no job and the initial balance: nothing to read. */
static enum store_rc
admit(struct sqlite_store *s, const struct job_new *in, int created,
    struct job *out, int64_t *balance)
{
	int64_t active = 0;
	enum store_rc rc;

	if (created) {
		*balance = s->opts.credits_initial;
		return *balance < in->cost ? STORE_CREDITS : STORE_OK;
	}
	if (in->idem_key != NULL) {
		rc = get_job(s, ST_JOB_BY_IDEM, out,
		    ARGS(TXT(in->user_id), TXT(in->idem_key)));
		if (rc != STORE_NOTFOUND)
			return rc == STORE_OK ? STORE_EXISTS : rc;
	}
	rc = get_ints(
	    s, ST_ACTIVE_COUNT, &active, balance, ARGS(TXT(in->user_id)));
	if (rc != STORE_OK)
		return rc;
	if (active >= s->opts.per_user_active) {
		rc = get_job(s, ST_JOB_ACTIVE, out, ARGS(TXT(in->user_id)));
		return rc == STORE_OK ? STORE_ACTIVE : rc;
	}
	return *balance < in->cost ? STORE_CREDITS : STORE_OK;
}

static enum store_rc
submit_tx(struct sqlite_store *s, void *arg)
{
	struct submit_arg *a = arg;
	const struct job_new *in = a->in;
	int64_t now = now_ms();
	int64_t seq = 0, created = 0;
	enum store_rc rc = user_ensure(s, in->user_id, now, &created);
	char *inputs;

	if (rc == STORE_OK)
		rc = admit(s, in, created != 0, a->out, a->balance);
	if (rc != STORE_OK)
		return rc;
	inputs = in->inputs ? jsonw_dumps(in->inputs) : xstrdup("{}");
	rc = run(s, ST_JOB_INSERT, NULL,
	    ARGS(TXT(in->id), TXT(in->user_id), TXT(in->tool), TXT(in->variant),
	        TXT(inputs), I64(in->cost), TXT(in->webhook_token),
	        TXT(in->session_id), TXT(in->idem_key), I64(now)));
	free(inputs);
	seq = sqlite3_last_insert_rowid(s->db);
	*a->balance -= in->cost; /* the write lock is ours: it was read */
	if (rc == STORE_OK)
		rc = run(s, ST_USER_ADD, NULL,
		    ARGS(TXT(in->user_id), I64(-in->cost)));
	if (rc == STORE_OK)
		rc = ledger_add(s, in->user_id, in->id, "charge", -in->cost,
		    *a->balance, in->tool, now);
	if (rc != STORE_OK)
		return rc;
	born(a->out, in, seq, now);
	return logged(s, a->out, now);
}

static enum store_rc
lite_job_submit(struct store *st, const struct job_new *in, struct job *out,
    int64_t *balance)
{
	int64_t bal = 0;
	struct submit_arg a = {in, out, &bal};
	enum store_rc rc = tx(lite(st), submit_tx, &a);

	if (balance != NULL)
		*balance = bal;
	return rc;
}

/* ---- reads --------------------------------------------------------- */

static enum store_rc
lite_job_get(
    struct store *st, const char *id, const char *user_id, struct job *out)
{
	return get_job(lite(st), ST_JOB_GET, out, ARGS(TXT(id), TXT(user_id)));
}

static enum store_rc
lite_job_by_token(struct store *st, const char *token, struct job *out)
{
	return get_job(lite(st), ST_JOB_BY_TOKEN, out, ARGS(TXT(token)));
}

static enum store_rc
lite_job_active(struct store *st, const char *user_id, struct job *out)
{
	return get_job(lite(st), ST_JOB_ACTIVE, out, ARGS(TXT(user_id)));
}

static enum store_rc
lite_job_list(
    struct store *st, const struct job_filter *f, struct job_list *out)
{
	const char *status =
	    f->status >= 0 ? job_status_name((enum job_status)f->status) : NULL;
	int64_t before = f->before_seq > 0 ? f->before_seq : INT64_MAX;
	int64_t limit = f->limit > 0 ? f->limit : -1; /* SQLite: no limit */
	enum stmt_id id = f->user_id                              ? ST_LIST_USER
	                  : f->status == JOB_COMPLETED && f->tool ? ST_LIST_DONE
	                                                          : ST_LIST_ALL;

	return get_jobs(lite(st), id, out,
	    ARGS(TXT(f->user_id), TXT(status), TXT(f->tool), I64(before),
	        I64(limit)));
}

/* One statement reads the whole queue as one snapshot, in seq order, so
 * each queued job's position is its row number: no count per row. */
static enum store_rc
jobs_in(struct sqlite_store *s, enum job_status status, int limit,
    struct job_list *out)
{
	size_t first = out->n;
	enum store_rc rc = get_jobs(s,
	    status == JOB_QUEUED ? ST_JOBS_QUEUED : ST_JOBS_STARTED, out,
	    ARGS(TXT(job_status_name(status)), I64(limit > 0 ? limit : -1)));

	if (status == JOB_QUEUED)
		for (size_t i = first; i < out->n; i++)
			out->v[i].position = (int64_t)(i - first + 1);
	return rc;
}

static enum store_rc
lite_jobs_in(struct store *st, enum job_status status, struct job_list *out)
{
	return jobs_in(lite(st), status, 0, out);
}

struct queue_read {
	int limit, with_active;
	struct store_queue_view *v;
};

static enum store_rc
queue_tx(struct sqlite_store *s, void *arg)
{
	struct queue_read *q = arg;
	enum store_rc rc = get_int(s, ST_SLOTS_USED, &q->v->used, NOARGS);

	if (rc == STORE_OK && q->with_active)
		rc = jobs_in(s, JOB_STARTING, 0, &q->v->active);
	if (rc == STORE_OK && q->with_active)
		rc = jobs_in(s, JOB_RUNNING, 0, &q->v->active);
	if (rc == STORE_OK)
		rc = get_int(s, ST_QUEUE_LENGTH, &q->v->total, NOARGS);
	if (rc == STORE_OK && q->limit >= 0)
		rc = jobs_in(s, JOB_QUEUED, q->limit, &q->v->queued);
	return rc;
}

/* Every read in one read transaction: one snapshot of the queue. */
static enum store_rc
lite_queue(
    struct store *st, int limit, int with_active, struct store_queue_view *v)
{
	struct queue_read q = {limit, with_active, v};

	return snapshot(lite(st), queue_tx, &q);
}

/* ---- transitions --------------------------------------------------- */

/* An account's slots as slot_pick() reads them. */
struct slot_group {
	char *account;
	int64_t held, slots;     /* rows held; the account's count */
	int64_t free_id, free_n; /* its first free row within the count */
};

/* Is account up (store_accounts_up), and not skip? */
static int
may_take(const struct store *st, const char *account, const char *skip)
{
	if (skip != NULL && strcmp(account, skip) == 0)
		return 0;
	if (st->up_names == NULL)
		return 1;
	for (size_t i = 0; i < st->nup; i++)
		if (strcmp(st->up_names[i], account) == 0)
			return 1;
	return 0;
}

/* Group g is read whole: it becomes the choice if it has a free row it
 * may use and more room than the choice so far (ties keep the earlier
 * account, as the rows come by name). */
static void
slot_group_end(struct sqlite_store *s, struct slot_group *g, const char *skip,
    struct slot_group *best)
{
	if (g->account != NULL && g->free_id != 0 && g->held < g->slots &&
	    may_take(&s->base, g->account, skip) &&
	    (best->account == NULL ||
	        g->slots - g->held > best->slots - best->held)) {
		free(best->account);
		*best = *g;
	} else {
		free(g->account);
	}
	memset(g, 0, sizeof(*g));
}

/*
 * The free slot a job takes: of the accounts up (other than skip), the
 * one with the most room left, then by name; its lowest free place
 * within the account's count. Held rows beyond a shrunk count count
 * against it. The rows are few: read whole and chosen here, a fraction
 * of what SQL's grouping and sort cost. account and n may be NULL;
 * *account is the caller's.
 */
static enum store_rc
slot_pick(struct sqlite_store *s, const char *skip, int64_t *id, char **account,
    int64_t *n)
{
	sqlite3_stmt *q = prep(s, ST_SLOTS_ALL, NOARGS);
	struct slot_group g = {0}, best = {0};
	int step;

	if (q == NULL)
		return STORE_ERROR;
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		const char *acct = (const char *)sqlite3_column_text(q, 1);
		int64_t row_n = sqlite3_column_int64(q, 2);

		if (acct == NULL)
			continue;
		if (g.account == NULL || strcmp(g.account, acct) != 0) {
			slot_group_end(s, &g, skip, &best);
			g.account = xstrdup(acct);
			g.slots = sqlite3_column_int64(q, 4);
		}
		if (sqlite3_column_int(q, 3))
			g.held++;
		else if (g.free_id == 0 && row_n <= g.slots) {
			g.free_id = sqlite3_column_int64(q, 0);
			g.free_n = row_n;
		}
	}
	done(q);
	if (step != SQLITE_DONE) {
		free(g.account);
		free(best.account);
		return db_fail(s);
	}
	slot_group_end(s, &g, skip, &best);
	if (best.account == NULL)
		return STORE_NOTFOUND;
	*id = best.free_id;
	if (n != NULL)
		*n = best.free_n;
	if (account != NULL)
		*account = best.account;
	else
		free(best.account);
	return STORE_OK;
}

/*
 * The slot is taken before the job moves, so the jobs_need_slot trigger
 * sees it. Held slots are counted too: after a shrink, rows beyond the
 * new count may still be held, and they count against it.
 */
static enum store_rc
promote_tx(struct sqlite_store *s, void *arg)
{
	struct job *out = arg;
	int64_t used = 0, slot = 0, now = now_ms();
	enum store_rc rc = get_int(s, ST_SLOTS_USED, &used, NOARGS);

	if (rc == STORE_OK && used >= s->opts.slots)
		return STORE_NOTFOUND;
	if (rc == STORE_OK)
		rc = slot_pick(s, NULL, &slot, NULL, NULL);
	if (rc == STORE_OK)
		rc = get_job(s, ST_QUEUE_HEAD, out, NOARGS);
	if (rc == STORE_OK)
		rc = run(s, ST_SLOT_TAKE, NULL, ARGS(I64(slot), TXT(out->id)));
	if (rc == STORE_OK)
		rc = run(s, ST_JOB_START, NULL,
		    ARGS(TXT(out->id), I64(now), TXT(s->opts.process)));
	if (rc == STORE_OK)
		rc = changed_read(s, out, now);
	return rc;
}

/* No write at all when nothing could be promoted: an empty queue (as far
 * as this process knows: another one pumps what it queued), or no slot. */
static enum store_rc
lite_promote(struct store *st, struct job *out)
{
	struct sqlite_store *s = lite(st);
	int64_t used = 0;
	enum store_rc rc;

	store_queue_sync(st);
	if (store_queue_length(st) == 0)
		return STORE_NOTFOUND;
	rc = get_int(s, ST_SLOTS_USED, &used, NOARGS);
	if (rc != STORE_OK)
		return rc;
	if (used >= s->opts.slots)
		return STORE_NOTFOUND;
	return tx(s, promote_tx, out);
}

struct change_arg {
	const char *id;
	const char *task_id;
	enum job_status to;
	const char *code;
	const char *message;
	json_t *outputs;
	int release_slot;
	struct job *out;
};

/* A change that did not apply: out is the job as it is. */
static enum store_rc
conflict(struct sqlite_store *s, const char *id, struct job *out)
{
	enum store_rc rc =
	    get_job(s, ST_JOB_GET, out, ARGS(TXT(id), TXT(NULL)));
	return rc == STORE_OK ? STORE_CONFLICT : rc;
}

static enum store_rc
running_tx(struct sqlite_store *s, void *arg)
{
	struct change_arg *a = arg;
	int64_t n = 0, now = now_ms();
	enum store_rc rc = run(
	    s, ST_JOB_RUNNING, &n, ARGS(TXT(a->id), TXT(a->task_id), I64(now)));

	if (rc != STORE_OK)
		return rc;
	if (n == 0)
		return conflict(s, a->id, a->out);
	return changed(s, a->id, a->out, now);
}

static enum store_rc
lite_job_running(
    struct store *st, const char *id, const char *task_id, struct job *out)
{
	struct change_arg a = {.id = id, .task_id = task_id, .out = out};
	return tx(lite(st), running_tx, &a);
}

/* Give a job's cost back; UNIQUE (job_id, kind) refuses a second one. */
static enum store_rc
refund(struct sqlite_store *s, const struct job *j, const char *reason,
    int64_t now)
{
	int64_t bal = 0;
	enum store_rc rc =
	    get_int(s, ST_USER_BALANCE, &bal, ARGS(TXT(j->user_id)));

	bal += j->cost;
	if (rc == STORE_OK)
		rc = run(
		    s, ST_USER_ADD, NULL, ARGS(TXT(j->user_id), I64(j->cost)));
	if (rc == STORE_OK)
		rc = ledger_add(
		    s, j->user_id, j->id, "refund", j->cost, bal, reason, now);
	return rc;
}

static enum store_rc
finish_tx(struct sqlite_store *s, void *arg)
{
	struct change_arg *a = arg;
	struct job *j = a->out;
	int64_t n = 0, now = now_ms();
	enum store_rc rc =
	    get_job(s, ST_JOB_GET, j, ARGS(TXT(a->id), TXT(NULL)));
	int give_back;
	char *outputs;

	if (rc != STORE_OK)
		return rc;
	if (job_status_terminal(j->status) ||
	    (a->to == JOB_COMPLETED && j->status != JOB_RUNNING))
		return STORE_CONFLICT;
	give_back = a->to != JOB_COMPLETED && j->charged && !j->refunded;
	outputs = a->outputs ? jsonw_dumps(a->outputs) : NULL;
	rc = run(s, ST_JOB_FINISH, &n,
	    ARGS(TXT(a->id), TXT(job_status_name(a->to)), TXT(a->code),
	        TXT(a->message), TXT(outputs), I64(j->refunded || give_back),
	        I64(now), TXT(a->release_slot ? NULL : s->opts.process)));
	free(outputs);
	if (rc == STORE_OK && n != 1)
		rc = store_set_error(
		    &s->base, "sqlite: job %s did not move", a->id);
	if (rc == STORE_OK && give_back)
		rc = refund(s, j, a->code, now);
	if (rc == STORE_OK && a->release_slot)
		rc = slot_free(s, a->id);
	if (rc == STORE_OK)
		rc = changed_read(s, j, now);
	return rc;
}

static enum store_rc
lite_job_finish(struct store *st, const char *id, enum job_status to,
    const char *error_code, const char *error_message, json_t *outputs,
    int release_slot, struct job *out)
{
	struct change_arg a = {.id = id,
	    .to = to,
	    .code = error_code,
	    .message = error_message,
	    .outputs = outputs,
	    .release_slot = release_slot,
	    .out = out};

	if (!job_status_terminal(to))
		return store_set_error(st, "finish to %s: not a terminal state",
		    job_status_name(to));
	return tx(lite(st), finish_tx, &a);
}

/* ---- slots --------------------------------------------------------- */

static enum store_rc
release_tx(struct sqlite_store *s, void *arg)
{
	return slot_free(s, arg);
}

static enum store_rc
lite_slot_release(struct store *st, const char *id)
{
	return tx(lite(st), release_tx, (void *)id);
}

static enum store_rc
lite_slots_used(struct store *st, int64_t *used)
{
	return get_int(lite(st), ST_SLOTS_USED, used, NOARGS);
}

static enum store_rc
lite_jobs_finished(struct store *st, int64_t since, struct job_list *out)
{
	return get_jobs(lite(st), ST_JOBS_FINISHED, out, ARGS(I64(since)));
}

static char *
column_dup(sqlite3_stmt *q, int i)
{
	const unsigned char *t = sqlite3_column_text(q, i);
	return xstrdup(t ? (const char *)t : "");
}

static enum store_rc
lite_events_after(struct store *st, int64_t after, int64_t upto,
    const char *user_id, const char *job_id, int limit,
    struct store_event_list *out)
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q = prep(s, ST_EVENTS_AFTER,
	    ARGS(I64(after), I64(upto), TXT(user_id), TXT(job_id),
	        I64(limit > 0 ? limit : -1)));
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		if (out->n == out->cap) {
			out->cap = out->cap ? 2 * out->cap : 16;
			out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
		}
		struct store_event *e = &out->v[out->n++];
		e->id = sqlite3_column_int64(q, 0);
		e->seq = sqlite3_column_int64(q, 1);
		e->job_id = column_dup(q, 2);
		e->user_id = column_dup(q, 3);
		e->data = column_dup(q, 4);
	}
	if (step != SQLITE_DONE)
		rc = db_fail(s);
	done(q);
	return rc;
}

static enum store_rc
lite_callback_add(struct store *st, const char *job_id, const char *task_id,
    const char *outcome, int applied)
{
	return run(lite(st), ST_CALLBACK_INSERT, NULL,
	    ARGS(TXT(job_id), TXT(task_id), TXT(outcome), I64(applied),
	        I64(now_ms())));
}

struct lease_arg {
	int64_t ttl_ms;
	int mine;
	struct job_list *all;
};

static enum store_rc
lease_tx(struct sqlite_store *s, void *arg)
{
	struct lease_arg *l = arg;
	const char *me = s->opts.process;
	int64_t now = now_ms();
	enum store_rc rc = run(s, ST_LEASE_RENEW, NULL,
	    ARGS(TXT(me), I64(now + l->ttl_ms), I64(now)));

	if (rc == STORE_OK)
		rc = get_jobs(s, ST_LEASE_ADOPT, l->all,
		    ARGS(TXT(me), I64(0), I64(now), I64(l->mine)));
	if (rc == STORE_OK)
		rc = run(s, ST_LEASE_FORGET, NULL, ARGS(I64(now), TXT(me)));
	return rc;
}

static const char *
lite_process(const struct store *st)
{
	return ((const struct sqlite_store *)st)->process;
}

static enum store_rc
lite_lease(struct store *st, int64_t ttl_ms, int mine, struct job_list *all)
{
	struct lease_arg l = {ttl_ms, mine, all};

	return tx(lite(st), lease_tx, &l);
}

/* ---- accounts ------------------------------------------------------ */

/* The account and number of slot row id. */
static enum store_rc
slot_place(struct sqlite_store *s, int64_t id, char **account, int64_t *n)
{
	sqlite3_stmt *q = prep(s, ST_SLOT_PLACE, ARGS(I64(id)));
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	step = sqlite3_step(q);
	if (step == SQLITE_ROW) {
		*account = col_text(q, 0);
		*n = col_int(q, 1);
	} else {
		rc = step == SQLITE_DONE ? STORE_NOTFOUND : db_fail(s);
	}
	done(q);
	return rc;
}

struct move_arg {
	const char *id;
	struct job *out;
};

/*
 * The job's row and a free row of another account trade places: the held
 * row takes the free row's (account, n), the free row the held one's, so
 * each account keeps its rows and the job keeps its slot (the schema's
 * rules on slots concern only who holds one). The held row passes
 * through n = -id on the way, as (account, n) is unique.
 */
static enum store_rc
move_tx(struct sqlite_store *s, void *arg)
{
	struct move_arg *m = arg;
	char *from = NULL, *to = NULL;
	int64_t held = 0, free_id = 0, from_n = 0, to_n = 0;
	enum store_rc rc = get_int(s, ST_JOB_SLOT, &held, ARGS(TXT(m->id)));

	if (rc == STORE_NOTFOUND)
		return STORE_CONFLICT;
	if (rc == STORE_OK)
		rc = slot_place(s, held, &from, &from_n);
	if (rc == STORE_OK)
		rc = slot_pick(s, from, &free_id, &to, &to_n);
	if (rc == STORE_OK)
		rc = run(s, ST_SLOT_LABEL, NULL,
		    ARGS(I64(held), TXT(from), I64(-held)));
	if (rc == STORE_OK)
		rc = run(s, ST_SLOT_LABEL, NULL,
		    ARGS(I64(free_id), TXT(from), I64(from_n)));
	if (rc == STORE_OK)
		rc = run(s, ST_SLOT_LABEL, NULL,
		    ARGS(I64(held), TXT(to), I64(to_n)));
	if (rc == STORE_OK)
		rc = run(s, ST_JOB_ACCOUNT, NULL, ARGS(TXT(m->id), TXT(to)));
	if (rc == STORE_OK)
		rc =
		    get_job(s, ST_JOB_GET, m->out, ARGS(TXT(m->id), TXT(NULL)));
	free(from);
	free(to);
	return rc;
}

static enum store_rc
lite_job_move(struct store *st, const char *id, struct job *out)
{
	struct move_arg m = {id, out};

	return tx(lite(st), move_tx, &m);
}

static enum store_rc
lite_slots_by_account(struct store *st, json_t **used)
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q = prep(s, ST_SLOTS_BY_ACCOUNT, NOARGS);
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	*used = json_object();
	while ((step = sqlite3_step(q)) == SQLITE_ROW)
		json_object_set_new(*used,
		    (const char *)sqlite3_column_text(q, 0),
		    json_integer(sqlite3_column_int64(q, 1)));
	if (step != SQLITE_DONE) {
		rc = db_fail(s);
		json_decref(*used);
		*used = NULL;
	}
	done(q);
	return rc;
}

static enum store_rc
cost_tx(struct sqlite_store *s, void *arg)
{
	const char **a = arg;
	int64_t n = 0;
	enum store_rc rc = run(s, ST_JOB_COST, &n, ARGS(TXT(a[0]), TXT(a[1])));

	return rc == STORE_OK && n == 0 ? STORE_CONFLICT : rc;
}

static enum store_rc
lite_job_cost(struct store *st, const char *id, const char *cost_json)
{
	const char *a[2] = {id, cost_json};

	return tx(lite(st), cost_tx, a);
}

/* ---- usage and retention ------------------------------------------- */

static enum store_rc
lite_user_submits(struct store *st, const char *user_id, int64_t since,
    int64_t upto, int64_t *n, int64_t *oldest)
{
	return get_ints(lite(st), ST_USER_SUBMITS, n, oldest,
	    ARGS(TXT(user_id), I64(since), I64(upto)));
}

static enum store_rc
lite_user_uploads(struct store *st, const char *user_id, int64_t since,
    int64_t *n, int64_t *bytes, int64_t *oldest)
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q =
	    prep(s, ST_USER_UPLOADS, ARGS(TXT(user_id), I64(since)));
	enum store_rc rc = STORE_OK;

	if (q == NULL)
		return STORE_ERROR;
	if (sqlite3_step(q) == SQLITE_ROW) {
		*n = col_int(q, 0);
		*bytes = col_int(q, 1);
		*oldest = col_int(q, 2);
	} else {
		rc = db_fail(s);
	}
	done(q);
	return rc;
}

static enum store_rc
lite_uploads_older(
    struct store *st, int64_t before_ms, int limit, struct upload_list *out)
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q = prep(s, ST_UPLOADS_OLDER,
	    ARGS(I64(before_ms), I64(limit > 0 ? limit : -1)));
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		struct upload *u = upload_list_push(out);
		u->id = col_text(q, 0);
		u->user_id = col_text(q, 1);
		u->type = col_text(q, 2);
		u->size = col_int(q, 3);
		u->sha256 = col_text(q, 4);
		u->filename = col_text(q, 5);
		u->path = col_text(q, 6);
		u->created_at = col_int(q, 7);
	}
	if (step != SQLITE_DONE)
		rc = db_fail(s);
	done(q);
	return rc;
}

static enum store_rc
upload_delete_tx(struct sqlite_store *s, void *arg)
{
	return run(s, ST_UPLOAD_DELETE, NULL, ARGS(TXT((const char *)arg)));
}

static enum store_rc
lite_upload_delete(struct store *st, const char *id)
{
	return tx(lite(st), upload_delete_tx, (void *)id);
}

/* ---- the outbox ---------------------------------------------------- */

/* Rows of the outbox's SELECTs (ST_OUTBOX_DUE, ST_OUTBOX_LIST). */
static enum store_rc
get_deliveries(
    struct sqlite_store *s, sqlite3_stmt *q, struct store_delivery_list *out)
{
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		struct store_delivery *d = store_delivery_push(out);
		d->event_id = col_int(q, 0);
		d->job_id = col_text(q, 1);
		d->status = col_text(q, 2);
		d->data = col_text(q, 3);
		d->at = col_int(q, 4);
		d->state = col_text(q, 5);
		d->attempts = col_int(q, 6);
		d->next_at = col_int(q, 7);
		d->last_error = col_text(q, 8);
	}
	if (step != SQLITE_DONE)
		rc = db_fail(s);
	done(q);
	return rc;
}

struct claim_arg {
	int64_t now, claim_ms;
	int limit;
	struct store_delivery_list *out;
};

static enum store_rc
claim_tx(struct sqlite_store *s, void *arg)
{
	struct claim_arg *c = arg;
	size_t first = c->out->n;
	enum store_rc rc = get_deliveries(s,
	    prep(s, ST_OUTBOX_DUE, ARGS(I64(c->now), I64(c->limit))), c->out);

	for (size_t i = first; rc == STORE_OK && i < c->out->n; i++)
		rc = run(s, ST_OUTBOX_CLAIM, NULL,
		    ARGS(
		        I64(c->out->v[i].event_id), I64(c->now + c->claim_ms)));
	if (rc == STORE_OK)
		rc = run(s, ST_OUTBOX_PRUNE, NULL,
		    ARGS(I64(c->now - 24 * 3600 * 1000LL)));
	return rc;
}

static enum store_rc
lite_outbox_claim(struct store *st, int64_t now, int64_t claim_ms, int limit,
    struct store_delivery_list *out)
{
	struct claim_arg c = {now, claim_ms, limit, out};

	return tx(lite(st), claim_tx, &c);
}

struct done_arg {
	int64_t event_id;
	int ok;
	int64_t next_at;
	const char *error;
};

static enum store_rc
done_tx(struct sqlite_store *s, void *arg)
{
	struct done_arg *d = arg;

	return run(s, ST_OUTBOX_DONE, NULL,
	    ARGS(I64(d->event_id), I64(d->ok), I64(d->next_at), TXT(d->error),
	        I64(now_ms())));
}

static enum store_rc
lite_outbox_done(struct store *st, int64_t event_id, int ok, int64_t next_at,
    const char *error)
{
	struct done_arg d = {event_id, ok, next_at, error};

	return tx(lite(st), done_tx, &d);
}

static enum store_rc
lite_outbox_list(struct store *st, const char *state, int64_t after, int limit,
    struct store_delivery_list *out)
{
	struct sqlite_store *s = lite(st);

	return get_deliveries(s,
	    prep(s, ST_OUTBOX_LIST,
	        ARGS(TXT(state), I64(after), I64(limit > 0 ? limit : -1))),
	    out);
}

struct outputs_arg {
	const char *job_id, *user_id;
	const json_t *stored;
};

static enum store_rc
outputs_tx(struct sqlite_store *s, void *arg)
{
	struct outputs_arg *o = arg;
	enum store_rc rc = STORE_OK;
	int64_t now = now_ms();
	size_t i;
	json_t *e;

	json_array_foreach(o->stored, i, e)
	{
		if (rc != STORE_OK)
			break;
		rc = run(s, ST_OUTPUT_ADD, NULL,
		    ARGS(TXT(json_string_value(json_object_get(e, "id"))),
		        TXT(o->job_id), TXT(o->user_id),
		        TXT(json_string_value(json_object_get(e, "type"))),
		        I64(json_integer_value(json_object_get(e, "size"))),
		        TXT(json_string_value(json_object_get(e, "sha256"))),
		        I64(now)));
	}
	return rc;
}

static enum store_rc
lite_outputs_add(struct store *st, const char *job_id, const char *user_id,
    const json_t *stored)
{
	struct outputs_arg o = {job_id, user_id, stored};

	return tx(lite(st), outputs_tx, &o);
}

static enum store_rc
lite_output_get(struct store *st, const char *id, json_t **out)
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q = prep(s, ST_OUTPUT_GET, ARGS(TXT(id)));
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	step = sqlite3_step(q);
	if (step == SQLITE_ROW)
		*out = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "id",
		    sqlite3_column_text(q, 0), "job_id",
		    sqlite3_column_text(q, 1), "user_id",
		    sqlite3_column_text(q, 2), "type",
		    sqlite3_column_text(q, 3), "size",
		    (json_int_t)sqlite3_column_int64(q, 4), "sha256",
		    sqlite3_column_text(q, 5));
	else
		rc = step == SQLITE_DONE ? STORE_NOTFOUND : db_fail(s);
	done(q);
	return rc;
}

struct secret_arg {
	const char *name, *fresh;
	char **value;
};

static enum store_rc
secret_tx(struct sqlite_store *s, void *arg)
{
	struct secret_arg *a = arg;
	enum store_rc rc =
	    run(s, ST_SECRET_SET, NULL, ARGS(TXT(a->name), TXT(a->fresh)));
	sqlite3_stmt *q;

	if (rc != STORE_OK)
		return rc;
	if ((q = prep(s, ST_SECRET_GET, ARGS(TXT(a->name)))) == NULL)
		return STORE_ERROR;
	if (sqlite3_step(q) == SQLITE_ROW)
		*a->value = col_text(q, 0);
	else
		rc = db_fail(s);
	done(q);
	return rc;
}

static enum store_rc
lite_secret(struct store *st, const char *name, const char *fresh, char **value)
{
	struct secret_arg a = {name, fresh, value};

	return tx(lite(st), secret_tx, &a);
}

static enum store_rc
lite_outbox_counts(struct store *st, int64_t *pending, int64_t *failed)
{
	return get_ints(lite(st), ST_OUTBOX_COUNTS, pending, failed, NOARGS);
}

static enum store_rc
lite_jobs_holding_ended(struct store *st, struct job_list *out)
{
	return get_jobs(lite(st), ST_JOBS_HOLDING_ENDED, out, NOARGS);
}

static enum store_rc
lite_jobs_older(struct store *st, enum job_status status, int64_t before_ms,
    int limit, struct job_list *out)
{
	return get_jobs(lite(st),
	    status == JOB_QUEUED ? ST_QUEUED_OLDER : ST_STARTED_OLDER, out,
	    ARGS(TXT(job_status_name(status)), I64(before_ms),
	        I64(limit > 0 ? limit : -1)));
}

static enum store_rc
lite_job_counts(struct store *st, json_t **counts)
{
	struct sqlite_store *s = lite(st);
	sqlite3_stmt *q = prep(s, ST_JOB_COUNTS, NOARGS);
	enum store_rc rc = STORE_OK;
	int step;

	if (q == NULL)
		return STORE_ERROR;
	*counts = json_object();
	while ((step = sqlite3_step(q)) == SQLITE_ROW) {
		const char *tool = (const char *)sqlite3_column_text(q, 0);
		const char *status = (const char *)sqlite3_column_text(q, 1);
		json_t *t = json_object_get(*counts, tool);
		if (t == NULL)
			json_object_set_new(*counts, tool, t = json_object());
		json_object_set_new(
		    t, status, json_integer(sqlite3_column_int64(q, 2)));
	}
	if (step != SQLITE_DONE) {
		rc = db_fail(s);
		json_decref(*counts);
		*counts = NULL;
	}
	done(q);
	return rc;
}

static enum store_rc
lite_events_last(struct store *st, int64_t *id)
{
	return get_int(lite(st), ST_EVENTS_LAST, id, NOARGS);
}

/* Each account's rows 1..slots; free rows beyond go (held ones stay
 * until released, so a shrink never evicts a running job), and accounts
 * no longer configured keep no room. And this process's lease. */
static enum store_rc
slots_tx(struct sqlite_store *s, void *arg)
{
	const struct store_opts *o = &s->opts;
	struct store_account one = {"default", o->slots};
	const struct store_account *a = o->naccounts ? o->accounts : &one;
	size_t n = o->naccounts ? o->naccounts : 1;
	json_t *names = json_array();
	char *list;
	enum store_rc rc = STORE_OK;

	for (size_t i = 0; rc == STORE_OK && i < n; i++) {
		json_array_append_new(names, json_string(a[i].name));
		rc = run(s, ST_ACCOUNT_SET, NULL,
		    ARGS(TXT(a[i].name), I64(a[i].slots)));
		for (int64_t k = 1; rc == STORE_OK && k <= a[i].slots; k++)
			rc = run(
			    s, ST_SLOT_ADD, NULL, ARGS(TXT(a[i].name), I64(k)));
	}
	list = json_dumps(names, JSON_COMPACT);
	json_decref(names);
	if (rc == STORE_OK)
		rc = run(s, ST_ACCOUNTS_OFF, NULL, ARGS(TXT(list)));
	if (rc == STORE_OK)
		rc = run(s, ST_SLOT_TRIM, NULL, NOARGS);
	free(list);
	/* This process's lease from the start: what it promotes before its
	 * first renewal is not taken over. */
	if (rc == STORE_OK)
		rc = run(s, ST_LEASE_RENEW, NULL,
		    ARGS(TXT(s->process), I64(now_ms() + STORE_LEASE_MS),
		        I64(now_ms())));
	return rc;
}

/* ---- open ---------------------------------------------------------- */

/* mkdir -p of the directory holding path: 0, or an errno value. */
static int
mkdir_parent(const char *path)
{
	char *dir = xstrdup(path);
	char *end = strrchr(dir, '/');
	int rc = 0;

	if (end != NULL && end != dir) {
		*end = '\0';
		for (char *p = dir + 1; rc == 0; p++) {
			char c = *p;
			if (c != '/' && c != '\0')
				continue;
			*p = '\0';
			if (mkdir(dir, 0755) < 0 && errno != EEXIST)
				rc = errno;
			*p = c;
			if (c == '\0')
				break;
		}
	}
	free(dir);
	return rc;
}

static int
first_column(void *arg, int n, char **vals, char **names)
{
	snprintf(arg, 16, "%s", n > 0 && vals[0] ? vals[0] : "");
	return 0;
}

/* ---- checkpoints, off the loop ------------------------------------ */

/*
 * A checkpoint copies the WAL's pages back into the database file and
 * syncs it: tens of milliseconds for a large WAL, which on the loop would
 * hold every request of its turn. So the store's connection does not
 * checkpoint by itself (wal_autocheckpoint = 0). Its WAL hook, told the
 * WAL's size after each commit, wakes a thread with a connection of its
 * own once the WAL holds CKPT_PAGES pages, and that thread checkpoints
 * PASSIVE: it never waits for a writer, and no writer waits for it. The
 * first write after a checkpoint that copied everything starts the WAL
 * over (on_wal says how the loop sees to that). Should the thread fall
 * behind, the loop checkpoints at CKPT_HARD pages, as SQLite itself
 * would: the WAL stays bounded.
 */
struct ckpt {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int due;     /* the WAL is large: a checkpoint is wanted */
	int running; /* the thread is checkpointing */
	int copied;  /* WAL frames copied by its last checkpoint */
	int stop;    /* the store closes */
	sqlite3 *db;
};

static void *
ckpt_main(void *arg)
{
	struct ckpt *c = arg;
	const struct timespec rest = {0, CKPT_REST_MS * 1000000L};
	int log, done;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (!c->due && !c->stop)
			pthread_cond_wait(&c->cv, &c->mu);
		if (c->stop)
			break;
		c->due = 0;
		c->running = 1;
		pthread_mutex_unlock(&c->mu);
		log = done = 0;
		if (sqlite3_wal_checkpoint_v2(c->db, NULL,
		        SQLITE_CHECKPOINT_PASSIVE, &log, &done) != SQLITE_OK)
			done = 0;
		pthread_mutex_lock(&c->mu);
		c->running = 0;
		c->copied = done;
		if (done == 0) { /* a reader holds it back: not so soon */
			pthread_mutex_unlock(&c->mu);
			nanosleep(&rest, NULL);
			pthread_mutex_lock(&c->mu);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/*
 * After each commit, on the loop: the WAL holds pages frames. The WAL
 * starts over only when a write transaction begins after a checkpoint
 * copied all of it, and the loop begins its next one at once: a thread
 * would hardly ever finish in between. So when what the thread left is
 * little, the loop copies that itself, here, between two transactions,
 * and the next write starts the WAL over. The loop's share is a copy and
 * a sync of the database file, which it waits for: a few frames cost it
 * about a millisecond, 500 cost it ten and more, so the thread is asked
 * again while it leaves more than CKPT_LEFT; each of its passes leaves only
 * what was committed while it ran, fewer each time. (pages below what the
 * thread copied: it has started over.)
 */
static int
on_wal(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct ckpt *c = arg;
	int finish = 0, left;

	if (pages < CKPT_PAGES)
		return SQLITE_OK;
	pthread_mutex_lock(&c->mu);
	left = pages - c->copied;
	if (!c->running && c->copied > 0 && pages >= c->copied &&
	    (left <= CKPT_LEFT ||
	        (left <= CKPT_LEFT_MAX && pages >= 2 * CKPT_PAGES))) {
		finish = 1;
		c->copied = 0;
	} else if (!c->running) {
		c->due = 1;
		pthread_cond_signal(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	if (finish || pages >= CKPT_HARD) {
		/* Inside the COMMIT: a checkpoint's syncs are never left. */
		int was = walbuf_defer(0);
		sqlite3_wal_checkpoint_v2(
		    db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
		walbuf_defer(was);
	}
	return SQLITE_OK;
}

static enum store_rc
ckpt_start(struct sqlite_store *s, const char *path)
{
	struct ckpt *c = xcalloc(1, sizeof(*c));

	if (sqlite3_open_v2(path, &c->db,
	        SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
	        walbuf_vfs()) != SQLITE_OK ||
	    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS) != SQLITE_OK ||
	    sqlite3_exec(c->db, "PRAGMA synchronous = FULL", NULL, NULL,
	        NULL) != SQLITE_OK) {
		store_set_error(&s->base, "sqlite: checkpoint connection: %s",
		    sqlite3_errmsg(c->db));
		sqlite3_close(c->db);
		free(c);
		return STORE_ERROR;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	if (pthread_create(&c->thread, NULL, ckpt_main, c) != 0) {
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		sqlite3_close(c->db);
		free(c);
		return store_set_error(
		    &s->base, "sqlite: no checkpoint thread");
	}
	s->ckpt = c;
	sqlite3_wal_hook(s->db, on_wal, c);
	return STORE_OK;
}

static void
ckpt_stop(struct sqlite_store *s)
{
	struct ckpt *c = s->ckpt;

	if (c == NULL)
		return;
	sqlite3_wal_hook(s->db, NULL, NULL);
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	sqlite3_close(c->db);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
	s->ckpt = NULL;
}

/* ---- commit syncs, off the loop ------------------------------------ */

/*
 * A commit's fdatasync holds the loop for 0.3 ms and more. Watched from a
 * loop, the store leaves it to this thread: the commit is made (walbuf
 * leaves its sync undone), the loop goes on with the next turn, and what
 * waits for the commit (its answers, its calls to the provider, its
 * events) goes on once the thread has synced the WAL (store_synced). One
 * sync covers every commit written before it began, so while it runs the
 * commits that follow gather for the next one. A WAL that fails to sync
 * leaves its commits unknown: the process stops (abort), and the store
 * recovers from what the disk holds, which is a prefix of the commits.
 */
struct syncer {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t asked_cv; /* the thread waits for a ticket */
	pthread_cond_t done_cv;  /* settle waits for the thread */
	uint64_t asked;          /* the newest ticket given */
	uint64_t done;           /* the newest ticket synced */
	int fd;                  /* the WAL to sync for asked */
	int stop;
	int wake;         /* eventfd: the loop learns of done */
	struct event *ev; /* on the loop, reading wake */
	struct store *st;
};

static void *
sync_main(void *arg)
{
	struct syncer *c = arg;
	const uint64_t one = 1;
	uint64_t t;
	int fd, rc;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		while (c->asked == c->done && !c->stop)
			pthread_cond_wait(&c->asked_cv, &c->mu);
		if (c->asked == c->done)
			break;
		t = c->asked;
		fd = c->fd;
		pthread_mutex_unlock(&c->mu);
		while ((rc = fdatasync(fd)) != 0 && errno == EINTR)
			;
		if (rc != 0) {
			fprintf(stderr, "fila: the WAL cannot be synced: %s\n",
			    strerror(errno));
			abort();
		}
		pthread_mutex_lock(&c->mu);
		c->done = t;
		pthread_cond_broadcast(&c->done_cv);
		while (write(c->wake, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* The commit just made waits for a sync of fd: its ticket. */
static void
sync_ask(struct sqlite_store *s, int fd)
{
	struct syncer *c = s->syncer;

	pthread_mutex_lock(&c->mu);
	c->fd = fd;
	s->base.syncing = ++c->asked;
	pthread_cond_signal(&c->asked_cv);
	pthread_mutex_unlock(&c->mu);
}

static void
on_synced(evutil_socket_t fd, short what, void *arg)
{
	struct syncer *c = arg;
	uint64_t n, t;

	if (read(c->wake, &n, sizeof(n)) < 0)
		return;
	pthread_mutex_lock(&c->mu);
	t = c->done;
	pthread_mutex_unlock(&c->mu);
	store_synced(c->st, t);
}

static void
lite_settle(struct store *st)
{
	struct syncer *c = lite(st)->syncer;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	while (c->done != c->asked)
		pthread_cond_wait(&c->done_cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

/* A store with a WAL syncs its commits off the loop from now on. */
static void
lite_watch(struct store *st, struct event_base *base)
{
	struct sqlite_store *s = lite(st);
	struct syncer *c;

	if (s->ckpt == NULL || s->syncer != NULL)
		return;
	c = xcalloc(1, sizeof(*c));
	c->st = st;
	c->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->ev = c->wake < 0 ? NULL
	                    : event_new(base, c->wake, EV_READ | EV_PERSIST,
	                          on_synced, c);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->asked_cv, NULL);
	pthread_cond_init(&c->done_cv, NULL);
	if (c->ev == NULL || event_add(c->ev, NULL) != 0 ||
	    pthread_create(&c->thread, NULL, sync_main, c) != 0) {
		/* Then the loop syncs, as without one. */
		fprintf(stderr, "fila: commits sync on the loop: no thread\n");
		if (c->ev)
			event_free(c->ev);
		if (c->wake >= 0)
			close(c->wake);
		pthread_cond_destroy(&c->done_cv);
		pthread_cond_destroy(&c->asked_cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return;
	}
	s->syncer = c;
}

/* Every ticket is synced by now (store_drain): the thread ends. */
static void
sync_stop(struct sqlite_store *s)
{
	struct syncer *c = s->syncer;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stop = 1;
	pthread_cond_signal(&c->asked_cv);
	pthread_mutex_unlock(&c->mu);
	pthread_join(c->thread, NULL);
	event_free(c->ev);
	close(c->wake);
	pthread_cond_destroy(&c->done_cv);
	pthread_cond_destroy(&c->asked_cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
	s->syncer = NULL;
}

static enum store_rc
configure(struct sqlite_store *s, const char *path)
{
	char mode[16] = "";

	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	if (sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", first_column, mode,
	        NULL) != SQLITE_OK)
		return db_fail(s);
	/* An in-memory database (tests) has no WAL and needs none. */
	if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
		return store_set_error(&s->base,
		    "sqlite: journal mode is %s,"
		    " not wal",
		    mode);
	/* Checkpoints run on a thread of their own (below), not inside
	 * the commit that crosses SQLite's mark. */
	/* 32 MB of page cache: the indexes a submit touches stay in
	 * memory (the default 2 MB is one tenth of a queue of 50,000). A
	 * savepoint keeps the pages it changes in a sub-journal, in memory
	 * up to STMT_JOURNAL_MEM: a turn's savepoints cost no writes at all.
	 * The WAL's file is trimmed only past CKPT_HARD's 64 MB: a normal
	 * cycle (a little over CKPT_PAGES) is overwritten in place, never
	 * cut back and grown again. */
	if (exec_sql(s, "PRAGMA synchronous = FULL;"
	                "PRAGMA wal_autocheckpoint = 0;"
	                "PRAGMA journal_size_limit = 67108864;"
	                "PRAGMA cache_size = -32768;"
	                "PRAGMA temp_store = FILE;"
	                "PRAGMA foreign_keys = ON;") != STORE_OK)
		return STORE_ERROR;
	return strcmp(mode, "wal") == 0 ? ckpt_start(s, path) : STORE_OK;
}

/* Apply migration want unless another process already has. */
static enum store_rc
migrate_tx(struct sqlite_store *s, void *arg)
{
	int64_t want = *(int64_t *)arg, have = 0;
	enum store_rc rc = get_int(s, ST_VERSION, &have, NOARGS);

	if (rc != STORE_OK || have >= want)
		return rc;
	rc = exec_sql(s, migrations[want - 1]);
	if (rc == STORE_OK)
		rc = run(
		    s, ST_VERSION_SET, NULL, ARGS(I64(want), I64(now_ms())));
	return rc;
}

/* A transaction of the opening, before the store is one: its own
 * BEGIN IMMEDIATE and COMMIT, no queue order to keep yet. */
static enum store_rc
open_tx(struct sqlite_store *s, tx_fn fn, void *arg)
{
	enum store_rc rc = run(s, ST_BEGIN, NULL, NOARGS);

	if (rc != STORE_OK)
		return rc;
	rc = fn(s, arg);
	if (rc == STORE_OK)
		rc = run(s, ST_COMMIT, NULL, NOARGS);
	if (rc != STORE_OK)
		lite_rollback(&s->base);
	return rc;
}

static enum store_rc
migrate(struct sqlite_store *s)
{
	int64_t have = 0;
	int fk_off;
	enum store_rc rc = exec_sql(s,
	    "CREATE TABLE IF NOT EXISTS schema_version ("
	    " version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");

	if (rc == STORE_OK)
		rc = get_int(s, ST_VERSION, &have, NOARGS);
	if (rc == STORE_OK && have > (int64_t)N_MIGRATIONS)
		return store_set_error(&s->base,
		    "schema version %lld is newer than this fila knows (%zu)",
		    (long long)have, N_MIGRATIONS);
	/* Version 10 drops and makes again tables that others reference:
	 * with foreign keys off, as SQLite's own procedure for it says (it
	 * can be said only outside a transaction), and on again after. */
	fk_off = rc == STORE_OK && have < 10;
	if (fk_off)
		rc = exec_sql(s, "PRAGMA foreign_keys = OFF");
	for (int64_t v = have + 1; rc == STORE_OK && v <= (int64_t)N_MIGRATIONS;
	     v++)
		rc = open_tx(s, migrate_tx, &v);
	if (fk_off && exec_sql(s, "PRAGMA foreign_keys = ON") != STORE_OK)
		rc = STORE_ERROR;
	return rc;
}

static void
lite_free(struct store *st)
{
	struct sqlite_store *s = lite(st);

	sync_stop(s);
	ckpt_stop(s);
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	sqlite3_close(s->db);
	free(s->process);
	free(s);
}

static int
opts_ok(const struct store_opts *o, char *err, size_t errlen)
{
	if (o->slots >= 0 && o->per_user_active >= 1 && o->credits_initial >= 0)
		return 1;
	snprintf(err, errlen,
	    "store: need slots >= 0, per_user_active >= 1, initial >= 0");
	return 0;
}

static struct store *
lite_open(
    const char *url, const struct store_opts *opts, char *err, size_t errlen)
{
	const char *path = url + strlen("sqlite:");
	struct sqlite_store *s;
	int e;

	if (!opts_ok(opts, err, errlen))
		return NULL;
	if (*path == '\0') {
		snprintf(err, errlen, "store.url: \"%s\" names no file", url);
		return NULL;
	}
	if ((e = mkdir_parent(path)) != 0) {
		snprintf(err, errlen, "%s: cannot create its directory: %s",
		    path, strerror(e));
		return NULL;
	}
	s = xcalloc(1, sizeof(*s));
	s->base.be = &store_sqlite_backend;
	s->opts = *opts;
	s->process = xstrdup(opts->process ? opts->process : "local");
	s->opts.process = s->process;
	s->opts.schema = NULL;
	/* Each connection is used by one thread at a time (the loop's, the
	 * checkpointer's), so no mutex guards it; and SQLite keeps no memory
	 * statistics, whose global mutex every malloc would take. Only the
	 * first call in a process can say so: later ones change nothing.
	 * A savepoint's journal (one per change of a group, and one per
	 * statement that may fail halfway) stays in memory up to 1 MiB, in
	 * one piece: temp_store = MEMORY would keep it in 1 KiB pieces, each
	 * a malloc, and those were a fifth of a submit's instructions. The
	 * small blocks of statements come from a per-thread cache (mem.c). */
	sqlite3_config(SQLITE_CONFIG_MALLOC, mem_sqlite());
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, STMT_JOURNAL_MEM);
	if (sqlite3_open_v2(path, &s->db,
	        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	            SQLITE_OPEN_NOMUTEX,
	        walbuf_vfs()) != SQLITE_OK) {
		db_fail(s);
		goto fail;
	}
	if (configure(s, path) != STORE_OK || migrate(s) != STORE_OK ||
	    open_tx(s, slots_tx, NULL) != STORE_OK ||
	    store_opened(&s->base) != STORE_OK)
		goto fail;
	return &s->base;
fail:
	snprintf(err, errlen, "%s: %s", path, s->base.err);
	rank_free(s->base.queue);
	lite_free(&s->base);
	return NULL;
}

const struct store_backend store_sqlite_backend = {
    .name = "sqlite",
    .open = lite_open,
    .free = lite_free,
    .begin = lite_begin,
    .commit = lite_commit,
    .rollback = lite_rollback,
    .savepoint = lite_savepoint,
    .release = lite_release,
    .rollback_to = lite_rollback_to,
    .queue_load = lite_queue_load,
    .queue_follow = lite_queue_follow,
    .others_wrote = lite_others_wrote,
    .watch = lite_watch,
    .settle = lite_settle,
    .user_balance = lite_user_balance,
    .user_grant = lite_user_grant,
    .ledger = lite_ledger,
    .upload_add = lite_upload_add,
    .upload_get = lite_upload_get,
    .job_submit = lite_job_submit,
    .job_get = lite_job_get,
    .job_by_token = lite_job_by_token,
    .job_active = lite_job_active,
    .job_list = lite_job_list,
    .jobs_in = lite_jobs_in,
    .queue = lite_queue,
    .promote = lite_promote,
    .job_running = lite_job_running,
    .job_finish = lite_job_finish,
    .slot_release = lite_slot_release,
    .slots_used = lite_slots_used,
    .jobs_finished = lite_jobs_finished,
    .events_after = lite_events_after,
    .events_last = lite_events_last,
    .job_counts = lite_job_counts,
    .jobs_older = lite_jobs_older,
    .jobs_holding_ended = lite_jobs_holding_ended,
    .callback_add = lite_callback_add,
    .lease = lite_lease,
    .job_move = lite_job_move,
    .slots_by_account = lite_slots_by_account,
    .job_cost = lite_job_cost,
    .user_submits = lite_user_submits,
    .user_uploads = lite_user_uploads,
    .uploads_older = lite_uploads_older,
    .upload_delete = lite_upload_delete,
    .outbox_claim = lite_outbox_claim,
    .outbox_done = lite_outbox_done,
    .outbox_list = lite_outbox_list,
    .outbox_counts = lite_outbox_counts,
    .outputs_add = lite_outputs_add,
    .output_get = lite_output_get,
    .secret = lite_secret,
    .process = lite_process,
};
