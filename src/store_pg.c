/*
 * store_pg.c — the PostgreSQL backend ("postgres://…" or "postgresql://…"):
 * several fila processes on one database, the database the only
 * coordinator.
 *
 * Three ideas to read it by.
 *
 * First, every change is one call of a PL/pgSQL function of the schema
 * (one round trip), which does all of it or, by its own exception block,
 * none of it, and answers a code: a turn's changes share one transaction
 * (store.c) without a savepoint of the client's. The invariants live in
 * the schema as on SQLite (CHECKs, UNIQUEs, triggers); what needs one
 * writer at a time takes a row lock: a user's row for their submit, a
 * slot row (FOR UPDATE SKIP LOCKED) and the head of the queue for a start.
 *
 * Second, the event log is appended at commit, in commit order: a turn's
 * events wait in memory and go in with fila_append(), which takes a
 * transaction-level advisory lock, numbers them from a sequence and
 * notifies every process (LISTEN/NOTIFY) before the COMMIT releases the
 * lock. So no event ever commits with an id below one already read, and
 * a reader's cursor never skips one. Other processes' notifications tell
 * store.c to read the log again (the queue's order, the streams).
 *
 * Third, the loop must not wait on a slow database for long: the
 * connection sets statement, lock and idle timeouts and TCP keepalives, so
 * a call is bounded; a connection that breaks fails the calls at once
 * (503) and is made again from the loop without blocking (PQconnectStart
 * and PQconnectPoll), its statements prepared again and LISTEN renewed.
 */
#include "store_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "jsonr.h"
#include "jsonw.h"
#include "util.h"

#define RECONNECT_MS 1000
/* The advisory locks and the notification channel are the schema's own,
 * so that fila stores in several schemas of one database do not wait on
 * or wake each other. */
#define LOCK_LOG "hashtext(current_schema()), 1" /* the log's appends */
#define LOCK_SETUP 2 /* with hashtext(the schema): making it, migrating */
#define LOCK_SHRUNK "hashtext(current_schema()), 3" /* after a shrink */
#define CHANNEL "fila_"                             /* + the schema */
#define SCHEMA_MAX (63 - 5) /* a channel's name is at most 63 bytes */

/* clang-format off */
/*
 * Version 1: the whole schema, as the SQLite store's migrations 1 to 7
 * leave it, in the schema store.schema (the search_path of the session).
 */
static const char migration_1[] =
	"CREATE TABLE users ("
	" id text PRIMARY KEY,"
	" balance bigint NOT NULL CHECK (balance >= 0),"
	" created_at bigint NOT NULL);"

	"CREATE TABLE ledger ("
	" id bigserial PRIMARY KEY,"
	" user_id text NOT NULL REFERENCES users (id),"
	" job_id text,"
	" kind text NOT NULL CHECK (kind IN ('grant', 'charge', 'refund')),"
	" amount bigint NOT NULL,"
	" balance_after bigint NOT NULL CHECK (balance_after >= 0),"
	" reason text,"
	" at bigint NOT NULL,"
	" UNIQUE (job_id, kind));"
	"CREATE INDEX ledger_user ON ledger (user_id, id);"
	"CREATE FUNCTION ledger_frozen() RETURNS trigger LANGUAGE plpgsql"
	" SET search_path FROM CURRENT"
	" AS $$ BEGIN RAISE EXCEPTION 'the ledger is append-only'; END $$;"
	"CREATE TRIGGER ledger_frozen BEFORE UPDATE OR DELETE ON ledger"
	" FOR EACH ROW EXECUTE FUNCTION ledger_frozen();"
	"CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger"
	" FOR EACH STATEMENT EXECUTE FUNCTION ledger_frozen();"

	"CREATE TABLE uploads ("
	" id text PRIMARY KEY,"
	" user_id text NOT NULL,"
	" type text NOT NULL,"
	" size bigint NOT NULL CHECK (size >= 0),"
	" sha256 text NOT NULL,"
	" filename text,"
	" path text NOT NULL,"
	" created_at bigint NOT NULL);"

	"CREATE TABLE jobs ("
	" seq bigserial PRIMARY KEY,"
	" id text UNIQUE NOT NULL,"
	" user_id text NOT NULL REFERENCES users (id),"
	" tool text NOT NULL,"
	" variant text,"
	" status text NOT NULL CHECK (status IN ('queued', 'starting',"
	"  'running', 'completed', 'failed', 'cancelled')),"
	" inputs json NOT NULL,"
	" outputs json,"
	" error_code text,"
	" error_message text,"
	" cost bigint NOT NULL CHECK (cost >= 0),"
	" charged smallint NOT NULL DEFAULT 0 CHECK (charged IN (0, 1)),"
	" refunded smallint NOT NULL DEFAULT 0 CHECK (refunded IN (0, 1)"
	"  AND refunded <= charged"
	"  AND (refunded = 0 OR status IN ('failed', 'cancelled'))),"
	" provider_task_id text,"
	" webhook_token text UNIQUE NOT NULL,"
	" session_id text,"
	" idem_key text,"
	" created_at bigint NOT NULL,"
	" started_at bigint,"
	" finished_at bigint,"
	" updated_at bigint NOT NULL,"
	" starter text,"
	" account text,"
	" provider_cost json,"
	" UNIQUE (user_id, idem_key));"
	"CREATE INDEX jobs_queued ON jobs (seq) WHERE status = 'queued';"
	"CREATE INDEX jobs_queued_since ON jobs (created_at)"
	" WHERE status = 'queued';"
	"CREATE INDEX jobs_user_seq ON jobs (user_id, seq);"
	"CREATE INDEX jobs_user_active ON jobs (user_id)"
	" WHERE status IN ('queued', 'starting', 'running');"
	"CREATE INDEX jobs_started ON jobs (status, seq)"
	" WHERE status IN ('starting', 'running');"
	"CREATE INDEX jobs_finished ON jobs (finished_at)"
	" WHERE finished_at IS NOT NULL;"
	"CREATE INDEX jobs_starter ON jobs (starter)"
	" WHERE status IN ('starting', 'running');"

	/* Each provider account is a pool of slots: a slot row belongs to
	 * one account, numbered n in it. */
	"CREATE TABLE accounts ("
	" name text PRIMARY KEY,"
	" slots bigint NOT NULL CHECK (slots >= 0));"
	"CREATE TABLE slots ("
	" id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
	" account text NOT NULL,"
	" n bigint NOT NULL,"
	" job_id text UNIQUE REFERENCES jobs (id),"
	" UNIQUE (account, n));"

	/* A job is born queued, moves only along docs/api.md §3's arrows,
	 * never changes once terminal, and starts only by taking a slot. */
	"CREATE FUNCTION jobs_check() RETURNS trigger LANGUAGE plpgsql"
	" SET search_path FROM CURRENT AS $$"
	" BEGIN"
	"  IF TG_OP = 'INSERT' THEN"
	"   IF NEW.status <> 'queued' THEN"
	"    RAISE EXCEPTION 'a job is created queued'; END IF;"
	"   RETURN NEW;"
	"  END IF;"
	"  IF OLD.status IN ('completed', 'failed', 'cancelled')"
	"   AND to_jsonb(NEW) - 'starter' IS DISTINCT FROM"
	"    to_jsonb(OLD) - 'starter' THEN"
	"   RAISE EXCEPTION 'a terminal job never changes'; END IF;"
	"  IF NEW.status <> OLD.status AND NOT ("
	"   (OLD.status = 'queued'"
	"    AND NEW.status IN ('starting', 'cancelled', 'failed'))"
	"   OR (OLD.status = 'starting'"
	"    AND NEW.status IN ('running', 'failed', 'cancelled'))"
	"   OR (OLD.status = 'running'"
	"    AND NEW.status IN ('completed', 'failed', 'cancelled'))) THEN"
	"   RAISE EXCEPTION 'not a transition of a job'; END IF;"
	"  IF NEW.status IN ('starting', 'running') AND NOT EXISTS"
	"   (SELECT 1 FROM slots WHERE job_id = NEW.id) THEN"
	"   RAISE EXCEPTION 'a job starts only by taking a slot'; END IF;"
	"  RETURN NEW;"
	" END $$;"
	"CREATE TRIGGER jobs_check BEFORE INSERT OR UPDATE ON jobs"
	" FOR EACH ROW EXECUTE FUNCTION jobs_check();"

	/* A slot goes free → taken by a queued job → free; never from one
	 * job to another, never away from a starting or running job. */
	"CREATE FUNCTION slots_check() RETURNS trigger LANGUAGE plpgsql"
	" SET search_path FROM CURRENT AS $$"
	" BEGIN"
	"  IF TG_OP = 'INSERT' THEN"
	"   IF NEW.job_id IS NOT NULL THEN"
	"    RAISE EXCEPTION 'a slot is created free'; END IF;"
	"   RETURN NEW;"
	"  END IF;"
	"  IF TG_OP = 'DELETE' THEN"
	"   IF OLD.job_id IS NOT NULL THEN"
	"    RAISE EXCEPTION 'a held slot is not removed'; END IF;"
	"   RETURN OLD;"
	"  END IF;"
	"  IF NEW.job_id IS NOT NULL AND NEW.job_id IS DISTINCT FROM OLD.job_id"
	"   AND (OLD.job_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM jobs"
	"    WHERE id = NEW.job_id AND status = 'queued')) THEN"
	"   RAISE EXCEPTION 'only a free slot is taken, by a queued job';"
	"  END IF;"
	"  IF OLD.job_id IS NOT NULL AND NEW.job_id IS DISTINCT FROM OLD.job_id"
	"   AND EXISTS (SELECT 1 FROM jobs WHERE id = OLD.job_id"
	"    AND status IN ('starting', 'running')) THEN"
	"   RAISE EXCEPTION 'an active job keeps its slot'; END IF;"
	"  RETURN NEW;"
	" END $$;"
	"CREATE TRIGGER slots_check BEFORE INSERT OR UPDATE OR DELETE"
	" ON slots FOR EACH ROW EXECUTE FUNCTION slots_check();"

	/* The event log: numbered at commit, in commit order (fila_append). */
	"CREATE SEQUENCE events_ids;"
	"CREATE TABLE events ("
	" id bigint PRIMARY KEY,"
	" job_id text NOT NULL,"
	" user_id text NOT NULL,"
	" data text NOT NULL,"
	" at bigint NOT NULL,"
	" seq bigint NOT NULL,"
	" status text NOT NULL);"
	"CREATE INDEX events_user ON events (user_id, id);"

	"CREATE TABLE callbacks ("
	" id bigserial PRIMARY KEY,"
	" job_id text NOT NULL,"
	" task_id text,"
	" outcome text NOT NULL,"
	" applied smallint NOT NULL,"
	" at bigint NOT NULL);"
	"CREATE INDEX callbacks_job ON callbacks (job_id, id);"

	/* The webhooks to deliver to the app, one row per event, written in
	 * the transaction of the change (fila_append). */
	"CREATE TABLE outbox ("
	" event_id bigint PRIMARY KEY,"
	" job_id text NOT NULL,"
	" status text NOT NULL DEFAULT 'pending'"
	"  CHECK (status IN ('pending', 'delivered', 'failed')),"
	" attempts int NOT NULL DEFAULT 0,"
	" next_at bigint NOT NULL,"
	" claimed_until bigint NOT NULL DEFAULT 0,"
	" last_error text,"
	" created_at bigint NOT NULL,"
	" done_at bigint);"
	"CREATE INDEX outbox_due ON outbox (next_at) WHERE status = 'pending';"
	"CREATE INDEX outbox_job ON outbox (job_id, event_id)"
	" WHERE status = 'pending';"
	"CREATE INDEX outbox_failed ON outbox (event_id)"
	" WHERE status = 'failed';"
	"CREATE INDEX outbox_delivered ON outbox (done_at)"
	" WHERE status = 'delivered';"
	"CREATE INDEX uploads_user_created ON uploads (user_id, created_at);"
	"CREATE INDEX uploads_created ON uploads (created_at);"

	/* Jobs per tool and state for /metrics, in shards: one row per tool
	 * and state would make every process's submits of a tool wait for
	 * each other's commits. A shard's count may go below 0; the sum is
	 * the count. */
	"CREATE TABLE job_counts ("
	" tool text NOT NULL,"
	" status text NOT NULL,"
	" shard int NOT NULL,"
	" n bigint NOT NULL,"
	" PRIMARY KEY (tool, status, shard));"
	"CREATE FUNCTION job_counts_track() RETURNS trigger"
	" LANGUAGE plpgsql SET search_path FROM CURRENT AS $$"
	" DECLARE sh int := pg_backend_pid() % 8;"
	" BEGIN"
	"  IF TG_OP = 'UPDATE' THEN"
	"   IF NEW.status = OLD.status THEN RETURN NULL; END IF;"
	"   INSERT INTO job_counts VALUES (OLD.tool, OLD.status, sh, -1)"
	"    ON CONFLICT (tool, status, shard)"
	"    DO UPDATE SET n = job_counts.n - 1;"
	"  END IF;"
	"  INSERT INTO job_counts VALUES (NEW.tool, NEW.status, sh, 1)"
	"   ON CONFLICT (tool, status, shard)"
	"   DO UPDATE SET n = job_counts.n + 1;"
	"  RETURN NULL;"
	" END $$;"
	"CREATE TRIGGER job_counts AFTER INSERT OR UPDATE OF status ON jobs"
	" FOR EACH ROW EXECUTE FUNCTION job_counts_track();"

	/* The processes at work on the store, each with a lease it renews. */
	"CREATE TABLE processes ("
	" id text PRIMARY KEY,"
	" lease_until bigint NOT NULL,"
	" started_at bigint NOT NULL);";

/*
 * Version 1, the changes: one function each, all or nothing. Each answers
 * (rc, aux, seq, msg): rc 0 done, 1 an idempotent repeat, 2 the user's
 * active jobs are at the limit, 3 credits short, 4 nothing to do (no such
 * job, no slot, nothing queued), 5 a conflict (the job moved on), 6 over
 * the largest balance, -1 an error (msg); aux a balance, seq the job's.
 * A logical refusal raises FL001 to undo what the call did before it.
 */
static const char migration_1_calls[] =
	"CREATE FUNCTION fila_user(p_user text, p_initial bigint, p_now bigint)"
	" RETURNS boolean LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  INSERT INTO users (id, balance, created_at)"
	"   VALUES (p_user, p_initial, p_now) ON CONFLICT (id) DO NOTHING;"
	"  IF NOT FOUND THEN RETURN false; END IF;"
	"  IF p_initial > 0 THEN"
	"   INSERT INTO ledger (user_id, job_id, kind, amount, balance_after,"
	"    reason, at) VALUES (p_user, NULL, 'grant', p_initial, p_initial,"
	"    'initial', p_now);"
	"  END IF;"
	"  RETURN true;"
	" END $$;"

	"CREATE FUNCTION fila_balance(p_user text, p_initial bigint,"
	" p_now bigint, OUT rc int, OUT aux bigint, OUT seq bigint,"
	" OUT msg text) LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  PERFORM fila_user(p_user, p_initial, p_now);"
	"  SELECT 0, balance INTO rc, aux FROM users WHERE id = p_user;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	"CREATE FUNCTION fila_grant(p_user text, p_amount bigint,"
	" p_reason text, p_initial bigint, p_max bigint, p_now bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" DECLARE v_rc int := 0;"
	" BEGIN"
	"  PERFORM fila_user(p_user, p_initial, p_now);"
	"  SELECT balance INTO aux FROM users WHERE id = p_user FOR UPDATE;"
	"  IF aux + p_amount < 0 THEN v_rc := 3;"
	"  ELSIF aux + p_amount > p_max THEN v_rc := 6;"
	"  END IF;"
	"  IF v_rc <> 0 THEN RAISE EXCEPTION USING ERRCODE = 'FL001'; END IF;"
	"  aux := aux + p_amount;"
	"  UPDATE users SET balance = aux WHERE id = p_user;"
	"  INSERT INTO ledger (user_id, job_id, kind, amount, balance_after,"
	"   reason, at) VALUES (p_user, NULL, 'grant', p_amount, aux,"
	"   p_reason, p_now);"
	"  rc := 0;"
	" EXCEPTION"
	"  WHEN SQLSTATE 'FL001' THEN rc := v_rc;"
	"  WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	"CREATE FUNCTION fila_upload(p_id text, p_user text, p_type text,"
	" p_size bigint, p_sha text, p_name text, p_path text, p_now bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  INSERT INTO uploads VALUES (p_id, p_user, p_type, p_size, p_sha,"
	"   p_name, p_path, p_now) ON CONFLICT (id) DO NOTHING;"
	"  rc := CASE WHEN FOUND THEN 0 ELSE 1 END;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	/* The rules of admission, in store.h's order, on the user's row. */
	"CREATE FUNCTION fila_submit(p_id text, p_user text, p_tool text,"
	" p_variant text, p_inputs json, p_cost bigint, p_token text,"
	" p_session text, p_idem text, p_now bigint, p_initial bigint,"
	" p_per_user bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" DECLARE v_rc int := 0; v_new boolean;"
	" BEGIN"
	"  v_new := fila_user(p_user, p_initial, p_now);"
	"  SELECT balance INTO aux FROM users WHERE id = p_user FOR UPDATE;"
	"  IF NOT v_new AND p_idem IS NOT NULL THEN"
	"   SELECT j.seq INTO seq FROM jobs j"
	"    WHERE j.user_id = p_user AND j.idem_key = p_idem;"
	"   IF FOUND THEN v_rc := 1; END IF;"
	"  END IF;"
	"  IF v_rc = 0 AND NOT v_new AND (SELECT count(*) FROM jobs j"
	"   WHERE j.user_id = p_user"
	"   AND j.status IN ('queued', 'starting', 'running')) >= p_per_user"
	"  THEN"
	"   v_rc := 2;"
	"   SELECT j.seq INTO seq FROM jobs j WHERE j.user_id = p_user"
	"    AND j.status IN ('queued', 'starting', 'running')"
	"    ORDER BY j.seq LIMIT 1;"
	"  END IF;"
	"  IF v_rc = 0 AND aux < p_cost THEN v_rc := 3; END IF;"
	"  IF v_rc <> 0 THEN RAISE EXCEPTION USING ERRCODE = 'FL001'; END IF;"
	"  INSERT INTO jobs (id, user_id, tool, variant, status, inputs, cost,"
	"   charged, webhook_token, session_id, idem_key, created_at,"
	"   updated_at) VALUES (p_id, p_user, p_tool, p_variant, 'queued',"
	"   p_inputs, p_cost, 1, p_token, p_session, p_idem, p_now, p_now)"
	"   RETURNING jobs.seq INTO seq;"
	"  aux := aux - p_cost;"
	"  UPDATE users SET balance = aux WHERE id = p_user;"
	"  INSERT INTO ledger (user_id, job_id, kind, amount, balance_after,"
	"   reason, at) VALUES (p_user, p_id, 'charge', -p_cost, aux, p_tool,"
	"   p_now);"
	"  rc := 0;"
	" EXCEPTION"
	"  WHEN SQLSTATE 'FL001' THEN rc := v_rc;"
	"  WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	/*
	 * A free slot of an account that is up (p_up: a JSON array of names,
	 * NULL: all) with room, the one with the most room first, for the
	 * oldest queued job, neither taken by another process meanwhile (SKIP
	 * LOCKED: a row another process is taking is not waited for). An
	 * account's held rows count against its size, so that after a shrink
	 * the rows beyond it still held are honoured.
	 */
	"CREATE FUNCTION fila_free_slot(p_up json, p_not text,"
	" OUT slot int, OUT account text) LANGUAGE sql AS $$"
	" SELECT s.id, s.account FROM slots s"
	"  JOIN accounts a ON a.name = s.account"
	"  JOIN (SELECT h.account, count(h.job_id) AS held FROM slots h"
	"   GROUP BY h.account) h ON h.account = s.account"
	"  WHERE s.job_id IS NULL AND s.n <= a.slots AND h.held < a.slots"
	"  AND (p_up IS NULL"
	"   OR s.account IN (SELECT json_array_elements_text(p_up)))"
	"  AND s.account IS DISTINCT FROM p_not"
	"  ORDER BY h.held - a.slots, s.account, s.n LIMIT 1"
	"  FOR UPDATE OF s SKIP LOCKED $$;"

	"CREATE FUNCTION fila_promote(p_up json, p_starter text,"
	" p_now bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" DECLARE v_slot int; v_account text; v_id text;"
	" BEGIN"
	"  rc := 4;"
	/* Rows held beyond an account's size (a shrink) are not locked by
	 * a count: then promotes go one at a time. */
	"  IF EXISTS (SELECT 1 FROM slots s JOIN accounts a"
	"   ON a.name = s.account WHERE s.job_id IS NOT NULL"
	"   AND s.n > a.slots) THEN"
	"   PERFORM pg_advisory_xact_lock(" LOCK_SHRUNK ");"
	"  END IF;"
	"  SELECT f.slot, f.account INTO v_slot, v_account"
	"   FROM fila_free_slot(p_up, NULL) f;"
	"  IF v_slot IS NULL THEN RETURN; END IF;"
	"  SELECT j.seq, j.id INTO seq, v_id FROM jobs j"
	"   WHERE j.status = 'queued' ORDER BY j.seq LIMIT 1"
	"   FOR UPDATE SKIP LOCKED;"
	"  IF NOT FOUND THEN RETURN; END IF;"
	"  UPDATE slots SET job_id = v_id WHERE id = v_slot;"
	"  UPDATE jobs SET status = 'starting', started_at = p_now,"
	"   updated_at = p_now, starter = p_starter, account = v_account"
	"   WHERE id = v_id;"
	"  rc := 0;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	/*
	 * A starting job to a free slot of another account that is up: its
	 * row and the free one trade (account, n), so each account keeps its
	 * rows and the job its slot; the held row passes through n = -id, as
	 * (account, n) is unique.
	 */
	"CREATE FUNCTION fila_move(p_id text, p_up json,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" DECLARE v_held int; v_from text; v_from_n bigint; v_free int;"
	"  v_to text; v_to_n bigint;"
	" BEGIN"
	/* The job's row first, as fila_finish takes it: a cancel racing the
	 * move waits for it (or it for the cancel), never a deadlock; and a
	 * job that went running meanwhile is not moved. */
	"  PERFORM 1 FROM jobs j WHERE j.id = p_id AND j.status = 'starting'"
	"   FOR UPDATE;"
	"  IF NOT FOUND THEN rc := 5; RETURN; END IF;"
	"  SELECT s.id, s.account, s.n, j.seq INTO v_held, v_from, v_from_n,"
	"   seq FROM slots s JOIN jobs j ON j.id = s.job_id"
	"   WHERE j.id = p_id AND j.status = 'starting' FOR UPDATE OF s;"
	"  IF NOT FOUND THEN rc := 5; RETURN; END IF;"
	"  IF EXISTS (SELECT 1 FROM slots s JOIN accounts a"
	"   ON a.name = s.account WHERE s.job_id IS NOT NULL"
	"   AND s.n > a.slots) THEN"
	"   PERFORM pg_advisory_xact_lock(" LOCK_SHRUNK ");"
	"  END IF;"
	"  SELECT f.slot, f.account INTO v_free, v_to"
	"   FROM fila_free_slot(p_up, v_from) f;"
	"  IF v_free IS NULL THEN rc := 4; RETURN; END IF;"
	"  SELECT n INTO v_to_n FROM slots WHERE id = v_free;"
	"  UPDATE slots SET n = -v_held WHERE id = v_held;"
	"  UPDATE slots SET account = v_from, n = v_from_n WHERE id = v_free;"
	"  UPDATE slots SET account = v_to, n = v_to_n WHERE id = v_held;"
	"  UPDATE jobs SET account = v_to WHERE id = p_id;"
	"  rc := 0;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	"CREATE FUNCTION fila_cost(p_id text, p_cost json,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  UPDATE jobs j SET provider_cost = p_cost"
	"   WHERE j.id = p_id AND j.status = 'running' RETURNING j.seq INTO seq;"
	"  rc := CASE WHEN FOUND THEN 0 ELSE 5 END;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	"CREATE FUNCTION fila_running(p_id text, p_task text, p_now bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  UPDATE jobs j SET status = 'running', provider_task_id = p_task,"
	"   updated_at = p_now WHERE j.id = p_id AND j.status = 'starting'"
	"   RETURNING j.seq INTO seq;"
	"  rc := CASE WHEN FOUND THEN 0 ELSE 5 END;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	/* Free job p_id's slot; free rows beyond their account's size go. */
	"CREATE FUNCTION fila_slot_free(p_id text)"
	" RETURNS void LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  UPDATE slots SET job_id = NULL WHERE job_id = p_id;"
	"  DELETE FROM slots s WHERE s.job_id IS NULL AND s.n > coalesce("
	"   (SELECT a.slots FROM accounts a WHERE a.name = s.account), 0);"
	" END $$;"

	"CREATE FUNCTION fila_release(p_id text,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  PERFORM fila_slot_free(p_id);"
	"  rc := 0;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	/* End the job: completed from running, failed or cancelled from any
	 * active state, refunded once (ledger UNIQUE), its slot freed when
	 * asked. rc 5 when it already ended (or, for completed, never ran). */
	"CREATE FUNCTION fila_finish(p_id text, p_to text, p_code text,"
	" p_msg text, p_outputs json, p_release boolean,"
	" p_now bigint, p_me text,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" DECLARE j jobs%ROWTYPE; v_back boolean;"
	" BEGIN"
	"  SELECT * INTO j FROM jobs WHERE id = p_id FOR UPDATE;"
	"  IF NOT FOUND THEN rc := 4; RETURN; END IF;"
	"  seq := j.seq;"
	"  IF j.status IN ('completed', 'failed', 'cancelled')"
	"   OR (p_to = 'completed' AND j.status <> 'running') THEN"
	"   rc := 5; RETURN; END IF;"
	"  v_back := p_to <> 'completed' AND j.charged = 1"
	"   AND j.refunded = 0;"
	"  UPDATE jobs SET status = p_to, error_code = p_code,"
	"   error_message = p_msg, outputs = p_outputs,"
	"   refunded = CASE WHEN v_back THEN 1 ELSE refunded END,"
	"   finished_at = p_now, updated_at = p_now,"
	"   starter = CASE WHEN p_release THEN starter ELSE p_me END"
	"   WHERE id = p_id;"
	"  IF v_back THEN"
	"   UPDATE users SET balance = balance + j.cost WHERE id = j.user_id"
	"    RETURNING balance INTO aux;"
	"   INSERT INTO ledger (user_id, job_id, kind, amount, balance_after,"
	"    reason, at) VALUES (j.user_id, p_id, 'refund', j.cost, aux,"
	"    p_code, p_now);"
	"  END IF;"
	"  IF p_release THEN PERFORM fila_slot_free(p_id); END IF;"
	"  rc := 0;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	/* Renew p_me's lease; take over what lapsed processes (none, or with
	 * p_mine p_me's own name) carried: starting and running jobs, ended
	 * jobs whose slot waits for the provider, which are returned. */
	"CREATE FUNCTION fila_lease(p_me text, p_until bigint, p_now bigint,"
	" p_mine boolean) RETURNS SETOF jobs LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  INSERT INTO processes VALUES (p_me, p_until, p_now)"
	"   ON CONFLICT (id) DO UPDATE SET lease_until = p_until;"
	"  RETURN QUERY UPDATE jobs j SET starter = p_me"
	"   WHERE (j.starter IS NULL OR (p_mine AND j.starter = p_me)"
	"    OR j.starter NOT IN (SELECT id FROM processes"
	"     WHERE lease_until >= p_now))"
	"   AND (j.status IN ('starting', 'running') OR (j.status IN"
	"    ('completed', 'failed', 'cancelled') AND j.id IN"
	"    (SELECT job_id FROM slots WHERE job_id IS NOT NULL)))"
	"   RETURNING j.*;"
	"  DELETE FROM processes WHERE lease_until < p_now AND id <> p_me;"
	" END $$;"

	/*
	 * The turn's events, at its commit: numbered under a lock held until
	 * the COMMIT, so they commit in the order of their ids, and announced
	 * to every process (delivered at the commit).
	 */
	"CREATE FUNCTION fila_append(p_jobs text[], p_users text[],"
	" p_data text[], p_at bigint, p_seqs bigint[], p_status text[],"
	" p_hooks boolean[]) RETURNS SETOF bigint LANGUAGE plpgsql AS $$"
	" DECLARE v_id bigint;"
	" BEGIN"
	"  PERFORM pg_advisory_xact_lock(" LOCK_LOG ");"
	"  FOR i IN 1 .. coalesce(array_length(p_jobs, 1), 0) LOOP"
	"   v_id := nextval('events_ids');"
	"   INSERT INTO events (id, job_id, user_id, data, at, seq, status)"
	"    VALUES (v_id, p_jobs[i], p_users[i], p_data[i], p_at, p_seqs[i],"
	"    p_status[i]);"
	"   RETURN NEXT v_id;"
	"   IF p_hooks[i] THEN"
	"    INSERT INTO outbox (event_id, job_id, next_at, created_at)"
	"     VALUES (v_id, p_jobs[i], p_at, p_at);"
	"   END IF;"
	"  END LOOP;"
	"  PERFORM pg_notify('" CHANNEL "' || current_schema(), '');"
	" END $$;"

	/*
	 * The webhooks due: pending, unclaimed, and the oldest pending of
	 * their job (in order per job), claimed until p_until, rows another
	 * process is claiming skipped. Delivered rows are kept a day.
	 */
	"CREATE FUNCTION fila_outbox_claim(p_now bigint, p_until bigint,"
	" p_limit int) RETURNS TABLE (event_id bigint, job_id text,"
	" status text, data text, at bigint, state text, attempts int,"
	" next_at bigint, last_error text) LANGUAGE plpgsql AS $$"
	" #variable_conflict use_column"
	" BEGIN"
	"  DELETE FROM outbox WHERE event_id IN (SELECT o.event_id"
	"   FROM outbox o WHERE o.status = 'delivered'"
	"   AND o.done_at < p_now - 86400000 LIMIT 100);"
	"  RETURN QUERY WITH due AS (SELECT o.event_id FROM outbox o"
	"   WHERE o.status = 'pending' AND o.next_at <= p_now"
	"   AND o.claimed_until <= p_now AND NOT EXISTS (SELECT 1 FROM outbox p"
	"    WHERE p.job_id = o.job_id AND p.status = 'pending'"
	"    AND p.event_id < o.event_id)"
	"   ORDER BY o.next_at, o.event_id LIMIT p_limit FOR UPDATE SKIP LOCKED),"
	"  claimed AS (UPDATE outbox o SET claimed_until = p_until FROM due"
	"   WHERE o.event_id = due.event_id RETURNING o.*)"
	"  SELECT c.event_id, c.job_id, e.status, e.data, e.at, c.status,"
	"   c.attempts, c.next_at, c.last_error FROM claimed c"
	"   JOIN events e ON e.id = c.event_id ORDER BY c.next_at, c.event_id;"
	" END $$;"

	"CREATE FUNCTION fila_outbox_done(p_id bigint, p_ok boolean,"
	" p_next bigint, p_error text, p_now bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  UPDATE outbox SET status = CASE WHEN p_ok THEN 'delivered'"
	"   WHEN p_next > 0 THEN 'pending' ELSE 'failed' END,"
	"   attempts = attempts + 1,"
	"   next_at = CASE WHEN p_next > 0 THEN p_next ELSE next_at END,"
	"   claimed_until = 0, last_error = p_error,"
	"   done_at = CASE WHEN p_ok OR p_next <= 0 THEN p_now END"
	"   WHERE event_id = p_id AND status = 'pending';"
	"  rc := CASE WHEN FOUND THEN 0 ELSE 5 END;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	"CREATE FUNCTION fila_upload_delete(p_id text,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  DELETE FROM uploads WHERE id = p_id;"
	"  rc := CASE WHEN FOUND THEN 0 ELSE 4 END;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;";

/*
 * Version 2: the outputs fila keeps (one row per output: GET
 * /v1/outputs/{id} finds its owner without reading every job), and
 * settings, secrets every process agrees on.
 */
static const char migration_2[] =
	"CREATE TABLE outputs ("
	" id text PRIMARY KEY,"
	" job_id text NOT NULL,"
	" user_id text NOT NULL,"
	" type text NOT NULL,"
	" size bigint NOT NULL CHECK (size >= 0),"
	" sha256 text NOT NULL,"
	" created_at bigint NOT NULL);"
	"CREATE INDEX outputs_job ON outputs (job_id);"
	"CREATE TABLE settings ("
	" name text PRIMARY KEY,"
	" value text NOT NULL);";

static const char migration_2_calls[] =
	"CREATE FUNCTION fila_outputs_add(p_job text, p_user text,"
	" p_stored json, p_now bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  INSERT INTO outputs SELECT e->>'id', p_job, p_user, e->>'type',"
	"   (e->>'size')::bigint, e->>'sha256', p_now"
	"   FROM json_array_elements(p_stored) e;"
	"  rc := 0;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	/*
	 * The free slot, in PL/pgSQL: its plan is made once per session (as
	 * LANGUAGE sql it was planned on every call, the submit's largest
	 * cost); and a promote with no free row at all stops at once.
	 */
	"CREATE OR REPLACE FUNCTION fila_free_slot(p_up json, p_not text,"
	" OUT slot int, OUT account text) LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  SELECT s.id, s.account INTO slot, account FROM slots s"
	"   JOIN accounts a ON a.name = s.account"
	"   JOIN (SELECT h.account, count(h.job_id) AS held FROM slots h"
	"    GROUP BY h.account) h ON h.account = s.account"
	"   WHERE s.job_id IS NULL AND s.n <= a.slots AND h.held < a.slots"
	"   AND (p_up IS NULL"
	"    OR s.account IN (SELECT json_array_elements_text(p_up)))"
	"   AND s.account IS DISTINCT FROM p_not"
	"   ORDER BY h.held - a.slots, s.account, s.n LIMIT 1"
	"   FOR UPDATE OF s SKIP LOCKED;"
	" END $$;"

	"CREATE OR REPLACE FUNCTION fila_promote(p_up json, p_starter text,"
	" p_now bigint,"
	" OUT rc int, OUT aux bigint, OUT seq bigint, OUT msg text)"
	" LANGUAGE plpgsql AS $$"
	" DECLARE v_slot int; v_account text; v_id text;"
	" BEGIN"
	"  rc := 4;"
	"  IF NOT EXISTS (SELECT 1 FROM slots WHERE job_id IS NULL) THEN"
	"   RETURN; END IF;"
	"  IF EXISTS (SELECT 1 FROM slots s JOIN accounts a"
	"   ON a.name = s.account WHERE s.job_id IS NOT NULL"
	"   AND s.n > a.slots) THEN"
	"   PERFORM pg_advisory_xact_lock(" LOCK_SHRUNK ");"
	"  END IF;"
	"  SELECT f.slot, f.account INTO v_slot, v_account"
	"   FROM fila_free_slot(p_up, NULL) f;"
	"  IF v_slot IS NULL THEN RETURN; END IF;"
	"  SELECT j.seq, j.id INTO seq, v_id FROM jobs j"
	"   WHERE j.status = 'queued' ORDER BY j.seq LIMIT 1"
	"   FOR UPDATE SKIP LOCKED;"
	"  IF NOT FOUND THEN RETURN; END IF;"
	"  UPDATE slots SET job_id = v_id WHERE id = v_slot;"
	"  UPDATE jobs SET status = 'starting', started_at = p_now,"
	"   updated_at = p_now, starter = p_starter, account = v_account"
	"   WHERE id = v_id;"
	"  rc := 0;"
	" EXCEPTION WHEN OTHERS THEN rc := -1; msg := SQLERRM;"
	" END $$;"

	"CREATE FUNCTION fila_secret(p_name text, p_fresh text)"
	" RETURNS text LANGUAGE plpgsql AS $$"
	" DECLARE v text;"
	" BEGIN"
	"  INSERT INTO settings VALUES (p_name, p_fresh)"
	"   ON CONFLICT (name) DO NOTHING;"
	"  SELECT value INTO v FROM settings WHERE name = p_name;"
	"  RETURN v;"
	" END $$;";

/*
 * Version 3: the trigger functions of jobs and slots name their tables
 * with the schema, written in here, instead of a SET search_path clause:
 * with one, every call saved, set and restored the setting, about a tenth
 * of a backend's work per job. Same rules as version 1.
 */
static const char migration_3[] = "";

static const char migration_3_calls[] =
	"DO $m$ BEGIN"
	" EXECUTE format($f$"
	"CREATE OR REPLACE FUNCTION %1$I.jobs_check() RETURNS trigger"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  IF TG_OP = 'INSERT' THEN"
	"   IF NEW.status <> 'queued' THEN"
	"    RAISE EXCEPTION 'a job is created queued'; END IF;"
	"   RETURN NEW;"
	"  END IF;"
	"  IF OLD.status IN ('completed', 'failed', 'cancelled')"
	"   AND to_jsonb(NEW) - 'starter' IS DISTINCT FROM"
	"    to_jsonb(OLD) - 'starter' THEN"
	"   RAISE EXCEPTION 'a terminal job never changes'; END IF;"
	"  IF NEW.status <> OLD.status AND NOT ("
	"   (OLD.status = 'queued'"
	"    AND NEW.status IN ('starting', 'cancelled', 'failed'))"
	"   OR (OLD.status = 'starting'"
	"    AND NEW.status IN ('running', 'failed', 'cancelled'))"
	"   OR (OLD.status = 'running'"
	"    AND NEW.status IN ('completed', 'failed', 'cancelled'))) THEN"
	"   RAISE EXCEPTION 'not a transition of a job'; END IF;"
	"  IF NEW.status IN ('starting', 'running') AND NOT EXISTS"
	"   (SELECT 1 FROM %1$I.slots WHERE job_id = NEW.id) THEN"
	"   RAISE EXCEPTION 'a job starts only by taking a slot'; END IF;"
	"  RETURN NEW;"
	" END $$ $f$, current_schema());"

	" EXECUTE format($f$"
	"CREATE OR REPLACE FUNCTION %1$I.slots_check() RETURNS trigger"
	" LANGUAGE plpgsql AS $$"
	" BEGIN"
	"  IF TG_OP = 'INSERT' THEN"
	"   IF NEW.job_id IS NOT NULL THEN"
	"    RAISE EXCEPTION 'a slot is created free'; END IF;"
	"   RETURN NEW;"
	"  END IF;"
	"  IF TG_OP = 'DELETE' THEN"
	"   IF OLD.job_id IS NOT NULL THEN"
	"    RAISE EXCEPTION 'a held slot is not removed'; END IF;"
	"   RETURN OLD;"
	"  END IF;"
	"  IF NEW.job_id IS NOT NULL AND NEW.job_id IS DISTINCT FROM OLD.job_id"
	"   AND (OLD.job_id IS NOT NULL OR NOT EXISTS (SELECT 1 FROM %1$I.jobs"
	"    WHERE id = NEW.job_id AND status = 'queued')) THEN"
	"   RAISE EXCEPTION 'only a free slot is taken, by a queued job';"
	"  END IF;"
	"  IF OLD.job_id IS NOT NULL AND NEW.job_id IS DISTINCT FROM OLD.job_id"
	"   AND EXISTS (SELECT 1 FROM %1$I.jobs WHERE id = OLD.job_id"
	"    AND status IN ('starting', 'running')) THEN"
	"   RAISE EXCEPTION 'an active job keeps its slot'; END IF;"
	"  RETURN NEW;"
	" END $$ $f$, current_schema());"

	" EXECUTE format($f$"
	"CREATE OR REPLACE FUNCTION %1$I.job_counts_track() RETURNS trigger"
	" LANGUAGE plpgsql AS $$"
	" DECLARE sh int := pg_backend_pid() %% 8;"
	" BEGIN"
	"  IF TG_OP = 'UPDATE' THEN"
	"   IF NEW.status = OLD.status THEN RETURN NULL; END IF;"
	"   INSERT INTO %1$I.job_counts VALUES (OLD.tool, OLD.status, sh, -1)"
	"    ON CONFLICT (tool, status, shard)"
	"    DO UPDATE SET n = job_counts.n - 1;"
	"  END IF;"
	"  INSERT INTO %1$I.job_counts VALUES (NEW.tool, NEW.status, sh, 1)"
	"   ON CONFLICT (tool, status, shard)"
	"   DO UPDATE SET n = job_counts.n + 1;"
	"  RETURN NULL;"
	" END $$ $f$, current_schema());"
	" END $m$;";

/*
 * Version 4: a tool's completed jobs by seq, for the admission's median
 * runs; read by seq over all jobs, the newest of a tool walked back over
 * every other job since (the whole table while none had completed).
 */
static const char migration_4[] =
	"CREATE INDEX jobs_completed ON jobs (tool, seq)"
	" WHERE status = 'completed';";
static const char migration_4_calls[] = "";

static const char *const migrations[] = {
	migration_1,
	migration_1_calls,
	migration_2,
	migration_2_calls,
	migration_3,
	migration_3_calls,
	migration_4,
	migration_4_calls,
};
/* clang-format on */
#define N_MIGRATIONS 4

/* The columns row_job() reads, in order. */
#define JOB_COLS                                                               \
	"seq, id, user_id, tool, variant, status, inputs, outputs,"            \
	" error_code, error_message, cost, charged, refunded,"                 \
	" provider_task_id, webhook_token, session_id, idem_key,"              \
	" created_at, started_at, finished_at, updated_at, starter,"           \
	" account, provider_cost"
#define SELECT_JOB "SELECT " JOB_COLS " FROM jobs "
#define ACTIVE_SQL "('queued', 'starting', 'running')"
#define CALL(f) "SELECT rc, aux, seq, msg FROM " f

/* The prepared statements: their names are their index. */
enum qid {
	Q_BALANCE,
	Q_USER_BALANCE,
	Q_GRANT,
	Q_LEDGER,
	Q_UPLOAD_ADD,
	Q_UPLOAD_GET,
	Q_SUBMIT,
	Q_JOB_GET,
	Q_JOB_GET_OF,
	Q_JOB_SEQ,
	Q_JOB_BY_TOKEN,
	Q_JOB_ACTIVE,
	Q_LIST_USER,
	Q_LIST_ALL,
	Q_LIST_DONE,
	Q_JOBS_QUEUED,
	Q_JOBS_STARTED,
	Q_JOBS_ACTIVE,
	Q_SLOTS_USED,
	Q_QUEUE_LENGTH,
	Q_PROMOTE,
	Q_RUNNING,
	Q_FINISH,
	Q_RELEASE,
	Q_JOBS_FINISHED,
	Q_EVENTS_AFTER,
	Q_EVENTS_AFTER_USER,
	Q_EVENTS_AFTER_JOB,
	Q_EVENTS_LAST,
	Q_APPEND,
	Q_QUEUE_SEQS,
	Q_QUEUE_FOLLOW,
	Q_JOB_COUNTS,
	Q_CALLBACK_ADD,
	Q_QUEUED_OLDER,
	Q_STARTED_OLDER,
	Q_HOLDING_ENDED,
	Q_LEASE,
	Q_MOVE,
	Q_SLOTS_BY_ACCOUNT,
	Q_COST,
	Q_USER_SUBMITS,
	Q_USER_UPLOADS,
	Q_UPLOADS_OLDER,
	Q_UPLOAD_DELETE,
	Q_OUTBOX_CLAIM,
	Q_OUTBOX_DONE,
	Q_OUTBOX_LIST,
	Q_OUTBOX_COUNTS,
	Q_LAST_DEPARTURE,
	Q_OUTPUTS_ADD,
	Q_OUTPUT_GET,
	Q_SECRET,
	Q_COUNT,
};

/* clang-format off */
static const char *const query_sql[Q_COUNT] = {
	[Q_BALANCE] = CALL("fila_balance($1, $2, $3)"),
	[Q_USER_BALANCE] = "SELECT balance FROM users WHERE id = $1",
	[Q_GRANT] = CALL("fila_grant($1, $2, $3, $4, $5, $6)"),
	[Q_LEDGER] = "SELECT id, job_id, kind, amount, balance_after, at"
	    " FROM ledger WHERE user_id = $1 ORDER BY id DESC",
	[Q_UPLOAD_ADD] = CALL("fila_upload($1, $2, $3, $4, $5, $6, $7, $8)"),
	[Q_UPLOAD_GET] = "SELECT id, user_id, type, size, sha256, filename,"
	    " path, created_at FROM uploads WHERE id = $1 AND user_id = $2",
	/* And whether a slot row was free: when none was, the promote that
	 * follows the submit has nothing to ask (pg_promote). */
	[Q_SUBMIT] = "SELECT rc, aux, seq, msg, EXISTS (SELECT 1 FROM slots"
	    " WHERE job_id IS NULL) FROM fila_submit($1, $2, $3, $4, $5, $6,"
	    " $7, $8, $9, $10, $11, $12)",
	[Q_JOB_GET] = SELECT_JOB "WHERE id = $1",
	[Q_JOB_GET_OF] = SELECT_JOB "WHERE id = $1 AND user_id = $2",
	[Q_JOB_SEQ] = SELECT_JOB "WHERE seq = $1",
	[Q_JOB_BY_TOKEN] = SELECT_JOB "WHERE webhook_token = $1",
	[Q_JOB_ACTIVE] = SELECT_JOB "WHERE user_id = $1 AND status IN "
	    ACTIVE_SQL " ORDER BY seq LIMIT 1",
	[Q_LIST_USER] = SELECT_JOB "WHERE user_id = $1"
	    " AND ($2::text IS NULL OR status = $2)"
	    " AND ($3::text IS NULL OR tool = $3) AND seq < $4"
	    " ORDER BY seq DESC LIMIT $5",
	[Q_LIST_ALL] = SELECT_JOB "WHERE ($1::text IS NULL OR status = $1)"
	    " AND ($2::text IS NULL OR tool = $2) AND seq < $3"
	    " ORDER BY seq DESC LIMIT $4",
	/* The same for a tool's completed jobs, by their own index. */
	[Q_LIST_DONE] = SELECT_JOB "WHERE status = 'completed' AND tool = $1"
	    " AND seq < $2 ORDER BY seq DESC LIMIT $3",
	[Q_JOBS_QUEUED] = SELECT_JOB "WHERE status = 'queued'"
	    " ORDER BY seq LIMIT $1",
	[Q_JOBS_STARTED] = SELECT_JOB "WHERE status = $1"
	    " AND status IN ('starting', 'running') ORDER BY seq LIMIT $2",
	[Q_JOBS_ACTIVE] = SELECT_JOB "WHERE status IN ('starting', 'running')"
	    " ORDER BY status <> 'starting', seq",
	[Q_SLOTS_USED] = "SELECT count(*) FROM slots WHERE job_id IS NOT NULL",
	[Q_QUEUE_LENGTH] = "SELECT count(*) FROM jobs WHERE status = 'queued'",
	[Q_PROMOTE] = CALL("fila_promote($1, $2, $3)"),
	[Q_RUNNING] = CALL("fila_running($1, $2, $3)"),
	[Q_FINISH] = CALL("fila_finish($1, $2, $3, $4, $5, $6, $7, $8)"),
	[Q_RELEASE] = CALL("fila_release($1)"),
	[Q_JOBS_FINISHED] = SELECT_JOB "WHERE finished_at >= $1"
	    " ORDER BY finished_at",
	[Q_EVENTS_AFTER] = "SELECT id, seq, job_id, user_id, data FROM events"
	    " WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
	[Q_EVENTS_AFTER_USER] = "SELECT id, seq, job_id, user_id, data"
	    " FROM events WHERE user_id = $3 AND id > $1 AND id <= $2"
	    " ORDER BY id LIMIT $4",
	[Q_EVENTS_AFTER_JOB] = "SELECT id, seq, job_id, user_id, data"
	    " FROM events WHERE ($3::text IS NULL OR user_id = $3)"
	    " AND job_id = $4 AND id > $1"
	    " AND id <= $2 ORDER BY id LIMIT $5",
	[Q_EVENTS_LAST] = "SELECT coalesce(max(id), 0) FROM events",
	[Q_APPEND] = "SELECT fila_append($1, $2, $3, $4, $5, $6, $7)",
	[Q_QUEUE_SEQS] = "SELECT seq FROM jobs WHERE status = 'queued'",
	[Q_QUEUE_FOLLOW] = "SELECT id, seq, status = 'queued' FROM events"
	    " WHERE id > $1 ORDER BY id",
	[Q_JOB_COUNTS] = "SELECT tool, status, sum(n) FROM job_counts"
	    " GROUP BY tool, status HAVING sum(n) > 0",
	[Q_CALLBACK_ADD] = "INSERT INTO callbacks (job_id, task_id, outcome,"
	    " applied, at) VALUES ($1, $2, $3, $4, $5)",
	[Q_QUEUED_OLDER] = SELECT_JOB "WHERE status = 'queued'"
	    " AND created_at < $1 ORDER BY created_at LIMIT $2",
	[Q_STARTED_OLDER] = SELECT_JOB "WHERE status = $1"
	    " AND status IN ('starting', 'running') AND started_at < $2"
	    " ORDER BY seq LIMIT $3",
	[Q_HOLDING_ENDED] = SELECT_JOB "WHERE status IN"
	    " ('completed', 'failed', 'cancelled') AND id IN"
	    " (SELECT job_id FROM slots WHERE job_id IS NOT NULL) ORDER BY seq",
	[Q_LEASE] = "SELECT " JOB_COLS " FROM fila_lease($1, $2, $3, $4)"
	    " ORDER BY seq",
	[Q_MOVE] = CALL("fila_move($1, $2)"),
	[Q_SLOTS_BY_ACCOUNT] = "SELECT a.name, count(s.job_id) FROM accounts a"
	    " LEFT JOIN slots s ON s.account = a.name"
	    " GROUP BY a.name ORDER BY a.name",
	[Q_COST] = CALL("fila_cost($1, $2)"),
	/* The newest $3 of the user's jobs say whether $3 were made since
	 * $2. */
	[Q_USER_SUBMITS] = "SELECT count(*), coalesce(min(created_at), 0)"
	    " FROM (SELECT created_at FROM jobs"
	    " WHERE user_id = $1 ORDER BY seq DESC LIMIT $3) j"
	    " WHERE created_at >= $2",
	[Q_USER_UPLOADS] = "SELECT count(*), coalesce(sum(size), 0),"
	    " coalesce(min(created_at), 0)"
	    " FROM uploads WHERE user_id = $1 AND created_at >= $2",
	[Q_UPLOADS_OLDER] = "SELECT id, user_id, type, size, sha256,"
	    " filename, path, created_at FROM uploads WHERE created_at < $1"
	    " ORDER BY created_at LIMIT $2",
	[Q_UPLOAD_DELETE] = CALL("fila_upload_delete($1)"),
	[Q_OUTBOX_CLAIM] = "SELECT * FROM fila_outbox_claim($1, $2, $3)",
	[Q_OUTBOX_DONE] = CALL("fila_outbox_done($1, $2, $3, $4, $5)"),
	[Q_OUTBOX_LIST] = "SELECT o.event_id, o.job_id, e.status, e.data,"
	    " e.at, o.status, o.attempts, o.next_at, o.last_error"
	    " FROM outbox o JOIN events e ON e.id = o.event_id"
	    " WHERE ($1::text IS NULL OR o.status = $1) AND o.event_id > $2"
	    " ORDER BY o.event_id LIMIT $3",
	[Q_LAST_DEPARTURE] = "SELECT coalesce(max(id), 0) FROM (SELECT id"
	    " FROM events WHERE status IN ('starting', 'cancelled', 'failed')"
	    " ORDER BY id DESC LIMIT 1) d",
	[Q_OUTPUTS_ADD] = CALL("fila_outputs_add($1, $2, $3, $4)"),
	[Q_OUTPUT_GET] = "SELECT id, job_id, user_id, type, size, sha256"
	    " FROM outputs WHERE id = $1",
	[Q_SECRET] = "SELECT fila_secret($1, $2)",
	[Q_OUTBOX_COUNTS] = "SELECT (SELECT count(*) FROM outbox"
	    " WHERE status = 'pending'), (SELECT count(*) FROM outbox"
	    " WHERE status = 'failed')",
};
/* clang-format on */

/* An event of the open transaction, appended at its commit. */
struct pending {
	char *job_id, *user_id, *data, *status;
	int64_t seq;
	int hook;    /* it becomes a webhook (opts.hooks) */
	int departs; /* it takes its job out of the queue */
};

struct pg_store {
	struct store base; /* first: the store.c handle */
	PGconn *conn;      /* NULL while it is being made again */
	char *url;
	char *schema;
	char *process; /* this process's id, for its starts and lease */
	struct store_opts opts;
	int ready;    /* statements prepared, LISTEN on */
	int notified; /* a notification came since others_wrote asked */
	int full;     /* the last call, a submit, found every slot held */
	struct pending *pend;
	size_t npend, cappend;
	/* from the loop: notifications, and making the connection again */
	struct event_base *loop;
	struct event *sock_ev;
	struct event *retry_ev;
	PGconn *making; /* a connection being made, not yet usable */
};

static struct pg_store *
pgs(struct store *st)
{
	return (struct pg_store *)st;
}

/* ---- calls ---------------------------------------------------------- */

/* Arguments as text, a call's worth. */
#define MAX_ARGS 14
struct args {
	const char *v[MAX_ARGS];
	char num[MAX_ARGS][24];
	int n;
};

static void
a_txt(struct args *a, const char *s)
{
	a->v[a->n++] = s;
}

static void
a_int(struct args *a, int64_t i)
{
	snprintf(a->num[a->n], sizeof(a->num[a->n]), "%lld", (long long)i);
	a->v[a->n] = a->num[a->n];
	a->n++;
}

static void
a_bool(struct args *a, int b)
{
	a_txt(a, b ? "t" : "f");
}

static void reconnect_later(struct pg_store *s);

/* The server's error, copied now (the result goes with the call). */
static enum store_rc
pg_fail(struct pg_store *s, const PGresult *r)
{
	const char *m = r ? PQresultErrorMessage(r) : NULL;

	if (m == NULL || *m == '\0')
		m = s->conn ? PQerrorMessage(s->conn) : "no connection";
	store_set_error(&s->base, "postgres: %.*s", (int)strcspn(m, "\n"), m);
	if (s->conn && PQstatus(s->conn) == CONNECTION_BAD)
		reconnect_later(s);
	return STORE_ERROR;
}

/* Take the notifications that came with the last call. */
static void
drain_notifies(struct pg_store *s)
{
	PGnotify *n;

	/* Our own commits' notifications come back too: no news. */
	while (s->conn && (n = PQnotifies(s->conn)) != NULL) {
		if (n->be_pid != PQbackendPID(s->conn))
			s->notified = 1;
		PQfreemem(n);
	}
}

/* Run prepared statement id with a's arguments; the result (caller
 * clears it) when it answered tuples or a command, else NULL with the
 * error set. */
static PGresult *
call(struct pg_store *s, enum qid id, const struct args *a)
{
	char name[16];
	PGresult *r;

	if (!s->ready || s->conn == NULL) {
		store_set_error(&s->base, "postgres: the database is not"
		                          " reachable (being reconnected)");
		return NULL;
	}
	s->full = 0;
	snprintf(name, sizeof(name), "q%d", (int)id);
	r = PQexecPrepared(
	    s->conn, name, a ? a->n : 0, a ? a->v : NULL, NULL, NULL, 0);
	drain_notifies(s);
	if (PQresultStatus(r) == PGRES_TUPLES_OK ||
	    PQresultStatus(r) == PGRES_COMMAND_OK)
		return r;
	pg_fail(s, r);
	PQclear(r);
	return NULL;
}

/* A whole SQL text (transactions, migrations): STORE_OK or the error. */
static enum store_rc
exec_sql(struct pg_store *s, PGconn *c, const char *sql)
{
	PGresult *r;
	enum store_rc rc = STORE_OK;

	if (c == NULL)
		return store_set_error(&s->base, "postgres: not connected");
	r = PQexec(c, sql);
	drain_notifies(s);
	if (PQresultStatus(r) != PGRES_COMMAND_OK &&
	    PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = pg_fail(s, r);
	PQclear(r);
	return rc;
}

static int64_t
col_int(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col)
	           ? 0
	           : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static char *
col_text(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL
	                                : xstrdup(PQgetvalue(r, row, col));
}

/* The first column of the first row as an integer; STORE_NOTFOUND when
 * there is no row. */
static enum store_rc
get_int(struct pg_store *s, enum qid id, const struct args *a, int64_t *out)
{
	PGresult *r = call(s, id, a);
	enum store_rc rc = STORE_OK;

	if (r == NULL)
		return STORE_ERROR;
	if (PQntuples(r) == 0)
		rc = STORE_NOTFOUND;
	else
		*out = col_int(r, 0, 0);
	PQclear(r);
	return rc;
}

/* A change: its function's (rc, aux, seq, msg) mapped to store_rc, and
 * the boolean of a fifth column when the statement adds one (Q_SUBMIT's
 * free slot). */
struct outcome {
	int code;
	int64_t aux, seq;
	int more;
};

static enum store_rc
change(struct pg_store *s, enum qid id, const struct args *a, struct outcome *o)
{
	static const enum store_rc map[] = {STORE_OK, STORE_EXISTS,
	    STORE_ACTIVE, STORE_CREDITS, STORE_NOTFOUND, STORE_CONFLICT,
	    STORE_CONFLICT};
	PGresult *r = call(s, id, a);
	enum store_rc rc;

	if (r == NULL)
		return STORE_ERROR;
	o->code = (int)col_int(r, 0, 0);
	o->aux = col_int(r, 0, 1);
	o->seq = col_int(r, 0, 2);
	o->more = PQnfields(r) > 4 && strcmp(PQgetvalue(r, 0, 4), "t") == 0;
	if (o->code < 0 || o->code >= (int)(sizeof(map) / sizeof(*map)))
		rc = store_set_error(&s->base, "postgres: %s",
		    PQgetisnull(r, 0, 3) ? "the change failed"
		                         : PQgetvalue(r, 0, 3));
	else
		rc = map[o->code];
	PQclear(r);
	return rc;
}

/* ---- rows ----------------------------------------------------------- */

static json_t *
col_json(const PGresult *r, int row, int col, int array)
{
	if (PQgetisnull(r, row, col))
		return array ? json_array() : json_object();
	return jsonr_loads(PQgetvalue(r, row, col), JSON_DECODE_ANY, NULL);
}

/* Fill j (cleaned first) from row of a JOB_COLS result. */
static enum store_rc
row_job(struct pg_store *s, const PGresult *r, int row, struct job *j)
{
	const char *status = PQgetvalue(r, row, 5);

	job_cleanup(j);
	j->seq = col_int(r, row, 0);
	j->id = col_text(r, row, 1);
	j->user_id = col_text(r, row, 2);
	j->tool = col_text(r, row, 3);
	j->variant = col_text(r, row, 4);
	j->inputs = col_json(r, row, 6, 0);
	j->outputs = col_json(r, row, 7, 1);
	j->error_code = col_text(r, row, 8);
	j->error_message = col_text(r, row, 9);
	j->cost = col_int(r, row, 10);
	j->charged = col_int(r, row, 11) != 0;
	j->refunded = col_int(r, row, 12) != 0;
	j->provider_task_id = col_text(r, row, 13);
	j->webhook_token = col_text(r, row, 14);
	j->session_id = col_text(r, row, 15);
	j->idem_key = col_text(r, row, 16);
	j->created_at = col_int(r, row, 17);
	j->started_at = col_int(r, row, 18);
	j->finished_at = col_int(r, row, 19);
	j->updated_at = col_int(r, row, 20);
	j->starter = col_text(r, row, 21);
	j->account = col_text(r, row, 22);
	if (!PQgetisnull(r, row, 23))
		j->provider_cost = col_json(r, row, 23, 0);
	if (job_status_parse(status, &j->status) < 0 || j->inputs == NULL ||
	    j->outputs == NULL)
		return store_set_error(&s->base,
		    "postgres: job %s is malformed", j->id ? j->id : "?");
	return STORE_OK;
}

static enum store_rc
get_job(struct pg_store *s, enum qid id, const struct args *a, struct job *out)
{
	PGresult *r = call(s, id, a);
	enum store_rc rc;

	if (r == NULL)
		return STORE_ERROR;
	rc = PQntuples(r) ? row_job(s, r, 0, out) : STORE_NOTFOUND;
	PQclear(r);
	return rc;
}

static enum store_rc
get_jobs(
    struct pg_store *s, enum qid id, const struct args *a, struct job_list *out)
{
	PGresult *r = call(s, id, a);
	enum store_rc rc = STORE_OK;

	if (r == NULL)
		return STORE_ERROR;
	for (int i = 0; rc == STORE_OK && i < PQntuples(r); i++)
		rc = row_job(s, r, i, job_list_push(out));
	PQclear(r);
	return rc;
}

static enum store_rc
job_at(struct pg_store *s, int64_t seq, struct job *out)
{
	struct args a = {0};

	a_int(&a, seq);
	return get_job(s, Q_JOB_SEQ, &a, out);
}

/* ---- the event log -------------------------------------------------- */

/* Keep job j's event for the commit; the queue's order follows now. */
static void
emit(struct pg_store *s, const struct job *j)
{
	if (s->npend == s->cappend) {
		s->cappend = s->cappend ? 2 * s->cappend : 32;
		s->pend = xrealloc(s->pend, s->cappend * sizeof(*s->pend));
	}
	s->pend[s->npend++] =
	    (struct pending){xstrdup(j->id), xstrdup(j->user_id),
	        job_to_text(j), xstrdup(job_status_name(j->status)), j->seq,
	        store_hooked(s->opts.hooks, j->status), 0};
	uint64_t before = store_queue_departures(&s->base);

	store_logged(&s->base, 0, j->seq, j->status == JOB_QUEUED);
	s->pend[s->npend - 1].departs =
	    store_queue_departures(&s->base) != before;
}

static void
pending_clear(struct pg_store *s)
{
	for (size_t i = 0; i < s->npend; i++) {
		free(s->pend[i].job_id);
		free(s->pend[i].user_id);
		free(s->pend[i].data);
		free(s->pend[i].status);
	}
	s->npend = 0;
}

/* A PostgreSQL array literal of texts, each quoted. */
static char *
text_array(const struct pending *p, size_t n, size_t field)
{
	size_t cap = 64, len = 0;
	char *out = xmalloc(cap);

	out[len++] = '{';
	for (size_t i = 0; i < n; i++) {
		const char *v = *(char *const *)((const char *)&p[i] + field);
		size_t need = len + 2 * strlen(v) + 8;
		if (need > cap)
			out = xrealloc(out, cap = 2 * need);
		if (i)
			out[len++] = ',';
		out[len++] = '"';
		for (; *v; v++) {
			if (*v == '"' || *v == '\\')
				out[len++] = '\\';
			out[len++] = *v;
		}
		out[len++] = '"';
	}
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

static char *
hook_array(const struct pending *p, size_t n)
{
	char *out = xmalloc(2 * n + 3);
	size_t len = 0;

	out[len++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			out[len++] = ',';
		out[len++] = p[i].hook ? 't' : 'f';
	}
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

static char *
seq_array(const struct pending *p, size_t n)
{
	char *out = xmalloc(n * 22 + 3);
	size_t len = 0;

	out[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len += (size_t)sprintf(
		    out + len, "%s%lld", i ? "," : "", (long long)p[i].seq);
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

/* Append the turn's events: one call, under the log's lock. */
static enum store_rc
append(struct pg_store *s)
{
	struct args a = {0};
	char *arr[6];
	enum store_rc rc = STORE_OK;
	PGresult *r;

	if (s->npend == 0)
		return STORE_OK;
	arr[0] =
	    text_array(s->pend, s->npend, offsetof(struct pending, job_id));
	arr[1] =
	    text_array(s->pend, s->npend, offsetof(struct pending, user_id));
	arr[2] = text_array(s->pend, s->npend, offsetof(struct pending, data));
	arr[3] = seq_array(s->pend, s->npend);
	arr[4] =
	    text_array(s->pend, s->npend, offsetof(struct pending, status));
	arr[5] = hook_array(s->pend, s->npend);
	a_txt(&a, arr[0]);
	a_txt(&a, arr[1]);
	a_txt(&a, arr[2]);
	a_int(&a, now_ms());
	a_txt(&a, arr[3]);
	a_txt(&a, arr[4]);
	a_txt(&a, arr[5]);
	r = call(s, Q_APPEND, &a);
	if (r == NULL)
		rc = STORE_ERROR;
	/* The ids are known now: a departure names its event. */
	for (int i = 0; r && i < PQntuples(r) && (size_t)i < s->npend; i++)
		if (s->pend[i].departs)
			s->base.departed = col_int(r, i, 0);
	PQclear(r);
	for (int i = 0; i < 6; i++)
		free(arr[i]);
	return rc;
}

/* ---- transactions, for store.c ------------------------------------ */

static enum store_rc
pg_begin(struct store *st, int write)
{
	struct pg_store *s = pgs(st);

	if (!s->ready)
		return store_set_error(st, "postgres: the database is not"
		                           " reachable (being reconnected)");
	/* A read is one snapshot, as store_read() promises. */
	return exec_sql(s, s->conn,
	    write ? "BEGIN"
	          : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
}

static enum store_rc
pg_commit(struct store *st)
{
	struct pg_store *s = pgs(st);
	enum store_rc rc = append(s);

	s->full = 0;
	if (rc == STORE_OK)
		rc = exec_sql(s, s->conn, "COMMIT");
	pending_clear(s);
	return rc;
}

static void
pg_rollback(struct store *st)
{
	struct pg_store *s = pgs(st);

	s->full = 0;
	pending_clear(s);
	if (s->conn && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
		exec_sql(s, s->conn, "ROLLBACK");
}

/* Each change is all or nothing by itself: no savepoint is needed, but a
 * transaction in error (a lost connection) is lost whole. */
static enum store_rc
pg_savepoint(struct store *st)
{
	return STORE_OK;
}

static enum store_rc
pg_release(struct store *st)
{
	return STORE_OK;
}

static enum store_rc
pg_rollback_to(struct store *st)
{
	struct pg_store *s = pgs(st);

	if (s->conn == NULL || PQtransactionStatus(s->conn) != PQTRANS_INTRANS)
		return STORE_ERROR;
	return STORE_OK;
}

static int
pg_others_wrote(struct store *st)
{
	struct pg_store *s = pgs(st);
	int n;

	if (s->conn && s->ready && PQconsumeInput(s->conn))
		drain_notifies(s);
	n = s->notified;
	s->notified = 0;
	return n;
}

static enum store_rc
pg_queue_load(struct store *st, void (*fn)(struct store *, int64_t seq),
    int64_t *last, int64_t *departed)
{
	struct pg_store *s = pgs(st);
	enum store_rc rc = exec_sql(
	    s, s->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	PGresult *r;

	if (rc != STORE_OK)
		return rc;
	if ((r = call(s, Q_QUEUE_SEQS, NULL)) == NULL) {
		rc = STORE_ERROR;
	} else {
		for (int i = 0; i < PQntuples(r); i++)
			fn(st, col_int(r, i, 0));
		PQclear(r);
		rc = get_int(s, Q_EVENTS_LAST, NULL, last);
		if (rc == STORE_OK)
			rc = get_int(s, Q_LAST_DEPARTURE, NULL, departed);
	}
	exec_sql(s, s->conn, rc == STORE_OK ? "COMMIT" : "ROLLBACK");
	return rc;
}

static enum store_rc
pg_queue_follow(struct store *st, int64_t after,
    void (*fn)(struct store *, int64_t id, int64_t seq, int queued))
{
	struct pg_store *s = pgs(st);
	struct args a = {0};
	PGresult *r;

	a_int(&a, after);
	if ((r = call(s, Q_QUEUE_FOLLOW, &a)) == NULL)
		return STORE_ERROR;
	for (int i = 0; i < PQntuples(r); i++)
		fn(st, col_int(r, i, 0), col_int(r, i, 1),
		    PQgetvalue(r, i, 2)[0] == 't');
	PQclear(r);
	return STORE_OK;
}

/* ---- users and credits ---------------------------------------------- */

static enum store_rc
pg_user_balance(struct store *st, const char *user_id, int64_t *balance)
{
	struct pg_store *s = pgs(st);
	struct args a = {0};
	struct outcome o = {0};
	enum store_rc rc;

	a_txt(&a, user_id);
	rc = get_int(s, Q_USER_BALANCE, &a, balance);
	if (rc != STORE_NOTFOUND)
		return rc;
	a_int(&a, s->opts.credits_initial);
	a_int(&a, now_ms());
	rc = change(s, Q_BALANCE, &a, &o);
	*balance = o.aux;
	return rc;
}

static enum store_rc
pg_user_grant(struct store *st, const char *user_id, int64_t amount,
    const char *reason, int64_t *balance)
{
	struct pg_store *s = pgs(st);
	struct args a = {0};
	struct outcome o = {0};
	enum store_rc rc;

	a_txt(&a, user_id);
	a_int(&a, amount);
	a_txt(&a, reason);
	a_int(&a, s->opts.credits_initial);
	a_int(&a, CREDITS_MAX);
	a_int(&a, now_ms());
	rc = change(s, Q_GRANT, &a, &o);
	if (balance)
		*balance = o.aux;
	return rc;
}

static json_t *
ledger_row(const PGresult *r, int i)
{
	char at[TIME_BUF];
	char *id = xasprintf("led_%lld", (long long)col_int(r, i, 0));
	json_t *e = json_pack("{s:s, s:o, s:s, s:I, s:I, s:s}", "id", id,
	    "job_id",
	    PQgetisnull(r, i, 1) ? json_null()
	                         : json_string(PQgetvalue(r, i, 1)),
	    "kind", PQgetvalue(r, i, 2), "amount", (json_int_t)col_int(r, i, 3),
	    "balance_after", (json_int_t)col_int(r, i, 4), "at",
	    fmt_time(col_int(r, i, 5), at));

	free(id);
	return e;
}

static enum store_rc
pg_ledger(struct store *st, const char *user_id, json_t **entries)
{
	struct pg_store *s = pgs(st);
	struct args a = {0};
	int64_t bal;
	enum store_rc rc = pg_user_balance(st, user_id, &bal);
	PGresult *r;

	if (rc != STORE_OK)
		return rc;
	a_txt(&a, user_id);
	if ((r = call(s, Q_LEDGER, &a)) == NULL)
		return STORE_ERROR;
	*entries = json_array();
	for (int i = 0; i < PQntuples(r); i++)
		json_array_append_new(*entries, ledger_row(r, i));
	PQclear(r);
	return STORE_OK;
}

/* ---- uploads -------------------------------------------------------- */

struct upload_arg {
	const struct upload *u;
};

static enum store_rc
upload_tx(struct store *st, void *arg)
{
	const struct upload *u = ((struct upload_arg *)arg)->u;
	struct args a = {0};
	struct outcome o;

	a_txt(&a, u->id);
	a_txt(&a, u->user_id);
	a_txt(&a, u->type);
	a_int(&a, u->size);
	a_txt(&a, u->sha256);
	a_txt(&a, u->filename);
	a_txt(&a, u->path);
	a_int(&a, u->created_at ? u->created_at : now_ms());
	return change(pgs(st), Q_UPLOAD_ADD, &a, &o);
}

static enum store_rc
pg_upload_add(struct store *st, const struct upload *u)
{
	struct upload_arg a = {u};
	return store_write(st, upload_tx, &a);
}

/* The upload of Q_UPLOAD_GET's row. */
static void
upload_row(const PGresult *r, struct upload *out)
{
	out->id = col_text(r, 0, 0);
	out->user_id = col_text(r, 0, 1);
	out->type = col_text(r, 0, 2);
	out->size = col_int(r, 0, 3);
	out->sha256 = col_text(r, 0, 4);
	out->filename = col_text(r, 0, 5);
	out->path = col_text(r, 0, 6);
	out->created_at = col_int(r, 0, 7);
}

static enum store_rc
pg_upload_get(
    struct store *st, const char *id, const char *user_id, struct upload *out)
{
	struct args a = {0};
	PGresult *r;

	a_txt(&a, id);
	a_txt(&a, user_id);
	if ((r = call(pgs(st), Q_UPLOAD_GET, &a)) == NULL)
		return STORE_ERROR;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return STORE_NOTFOUND;
	}
	upload_row(r, out);
	PQclear(r);
	return STORE_OK;
}

/* The reads of a submit as one pipeline: Q_UPLOAD_GET for each id, then
 * Q_USER_SUBMITS when asked, sent together and answered in one round
 * trip, each its own simple statement. */
static enum store_rc
pg_submit_reads(struct store *st, const char *user_id, const char *const *ids,
    size_t n, struct upload *out, int64_t since, int64_t upto, int64_t *count,
    int64_t *oldest)
{
	struct pg_store *s = pgs(st);
	size_t asked = n + (upto > 0), sent = 0;
	enum store_rc rc = STORE_OK;
	PGresult *r;

	if (asked == 0)
		return STORE_OK;
	if (!s->ready || s->conn == NULL)
		return store_set_error(st, "postgres: the database is not"
		                           " reachable (being reconnected)");
	s->full = 0;
	if (!PQenterPipelineMode(s->conn))
		return pg_fail(s, NULL);
	for (; sent < asked; sent++) {
		struct args a = {0};
		char name[16];
		if (sent < n) {
			a_txt(&a, ids[sent]);
			a_txt(&a, user_id);
		} else {
			a_txt(&a, user_id);
			a_int(&a, since);
			a_int(&a, upto);
		}
		snprintf(name, sizeof(name), "q%d",
		    sent < n ? Q_UPLOAD_GET : Q_USER_SUBMITS);
		if (!PQsendQueryPrepared(
		        s->conn, name, a.n, a.v, NULL, NULL, 0))
			break;
	}
	if (sent < asked || !PQpipelineSync(s->conn)) {
		/* The connection broke: nothing more to read from it. */
		rc = pg_fail(s, NULL);
		reconnect_later(s);
		return rc;
	}
	/* Each statement's result then a NULL, and the sync's at the end;
	 * after a failure, the rest answer PGRES_PIPELINE_ABORTED. */
	for (size_t k = 0; k <= asked; k++) {
		if ((r = PQgetResult(s->conn)) == NULL) {
			if (rc == STORE_OK)
				rc = pg_fail(s, NULL);
			break;
		}
		if (k == asked) {
			if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
				rc = pg_fail(s, r);
		} else if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			if (rc == STORE_OK)
				rc = pg_fail(s, r);
		} else if (rc == STORE_OK && k < n) {
			if (PQntuples(r) > 0)
				upload_row(r, &out[k]);
		} else if (rc == STORE_OK) {
			*count = col_int(r, 0, 0);
			*oldest = col_int(r, 0, 1);
		}
		PQclear(r);
		if (k < asked && (r = PQgetResult(s->conn)) != NULL) {
			PQclear(r); /* not the end of it: out of step */
			if (rc == STORE_OK)
				rc = store_set_error(
				    st, "postgres: out of step");
			break;
		}
	}
	/* A pipeline left unfinished leaves the connection unusable. */
	if (s->conn && !PQexitPipelineMode(s->conn)) {
		if (rc == STORE_OK)
			rc = store_set_error(
			    st, "postgres: %s", PQerrorMessage(s->conn));
		reconnect_later(s);
	}
	drain_notifies(s);
	return rc;
}

/* ---- submit --------------------------------------------------------- */

struct submit_arg {
	const struct job_new *in;
	struct job *out;
	int64_t *balance;
};

/* out as the job just inserted (at seq) is, without reading it back. */
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

static enum store_rc
submit_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct submit_arg *sa = arg;
	const struct job_new *in = sa->in;
	int64_t now = now_ms();
	char *inputs = in->inputs ? jsonw_dumps(in->inputs) : xstrdup("{}");
	struct args a = {0};
	struct outcome o = {0};
	enum store_rc rc;

	a_txt(&a, in->id);
	a_txt(&a, in->user_id);
	a_txt(&a, in->tool);
	a_txt(&a, in->variant);
	a_txt(&a, inputs);
	a_int(&a, in->cost);
	a_txt(&a, in->webhook_token);
	a_txt(&a, in->session_id);
	a_txt(&a, in->idem_key);
	a_int(&a, now);
	a_int(&a, s->opts.credits_initial);
	a_int(&a, s->opts.per_user_active);
	rc = change(s, Q_SUBMIT, &a, &o);
	free(inputs);
	*sa->balance = o.aux;
	if (rc == STORE_EXISTS || rc == STORE_ACTIVE) {
		enum store_rc got = job_at(s, o.seq, sa->out);
		return got == STORE_OK ? rc : got;
	}
	if (rc != STORE_OK)
		return rc;
	born(sa->out, in, o.seq, now);
	store_place(st, sa->out);
	emit(s, sa->out);
	s->full = !o.more;
	return STORE_OK;
}

static enum store_rc
pg_job_submit(struct store *st, const struct job_new *in, struct job *out,
    int64_t *balance)
{
	int64_t bal = 0;
	struct submit_arg a = {in, out, &bal};
	enum store_rc rc = store_write(st, submit_tx, &a);

	if (balance != NULL)
		*balance = bal;
	return rc;
}

/* ---- reads ---------------------------------------------------------- */

static enum store_rc
pg_job_get(
    struct store *st, const char *id, const char *user_id, struct job *out)
{
	struct args a = {0};

	a_txt(&a, id);
	if (user_id == NULL)
		return get_job(pgs(st), Q_JOB_GET, &a, out);
	a_txt(&a, user_id);
	return get_job(pgs(st), Q_JOB_GET_OF, &a, out);
}

static enum store_rc
pg_job_by_token(struct store *st, const char *token, struct job *out)
{
	struct args a = {0};

	a_txt(&a, token);
	return get_job(pgs(st), Q_JOB_BY_TOKEN, &a, out);
}

static enum store_rc
pg_job_active(struct store *st, const char *user_id, struct job *out)
{
	struct args a = {0};

	a_txt(&a, user_id);
	return get_job(pgs(st), Q_JOB_ACTIVE, &a, out);
}

static enum store_rc
pg_job_list(struct store *st, const struct job_filter *f, struct job_list *out)
{
	const char *status =
	    f->status >= 0 ? job_status_name((enum job_status)f->status) : NULL;
	int done = !f->user_id && f->status == JOB_COMPLETED && f->tool;
	struct args a = {0};

	if (f->user_id)
		a_txt(&a, f->user_id);
	if (!done)
		a_txt(&a, status);
	a_txt(&a, f->tool);
	a_int(&a, f->before_seq > 0 ? f->before_seq : INT64_MAX);
	if (f->limit > 0)
		a_int(&a, f->limit);
	else
		a_txt(&a, NULL); /* LIMIT NULL: no limit */
	return get_jobs(pgs(st),
	    f->user_id ? Q_LIST_USER
	    : done     ? Q_LIST_DONE
	               : Q_LIST_ALL,
	    &a, out);
}

/* The queue in order: each queued job's position is its row number. */
static enum store_rc
jobs_in(
    struct pg_store *s, enum job_status status, int limit, struct job_list *out)
{
	size_t first = out->n;
	struct args a = {0};
	enum store_rc rc;

	if (status != JOB_QUEUED)
		a_txt(&a, job_status_name(status));
	if (limit > 0)
		a_int(&a, limit);
	else
		a_txt(&a, NULL);
	rc = get_jobs(
	    s, status == JOB_QUEUED ? Q_JOBS_QUEUED : Q_JOBS_STARTED, &a, out);
	if (status == JOB_QUEUED)
		for (size_t i = first; i < out->n; i++)
			out->v[i].position = (int64_t)(i - first + 1);
	return rc;
}

static enum store_rc
pg_jobs_in(struct store *st, enum job_status status, struct job_list *out)
{
	return jobs_in(pgs(st), status, 0, out);
}

struct queue_read {
	int limit, with_active;
	struct store_queue_view *v;
};

static enum store_rc
queue_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct queue_read *q = arg;
	enum store_rc rc = get_int(s, Q_SLOTS_USED, NULL, &q->v->used);

	/* One statement for both states: under READ COMMITTED each statement
	 * sees the newest commits, and a job another process moved from
	 * starting to running between two would be listed twice. */
	if (rc == STORE_OK && q->with_active)
		rc = get_jobs(s, Q_JOBS_ACTIVE, NULL, &q->v->active);
	if (rc == STORE_OK)
		rc = get_int(s, Q_QUEUE_LENGTH, NULL, &q->v->total);
	if (rc == STORE_OK && q->limit >= 0)
		rc = jobs_in(s, JOB_QUEUED, q->limit, &q->v->queued);
	return rc;
}

static enum store_rc
pg_queue(
    struct store *st, int limit, int with_active, struct store_queue_view *v)
{
	struct queue_read q = {limit, with_active, v};

	return store_read(st, queue_tx, &q);
}

static enum store_rc
pg_jobs_older(struct store *st, enum job_status status, int64_t before_ms,
    int limit, struct job_list *out)
{
	struct args a = {0};

	if (status != JOB_QUEUED)
		a_txt(&a, job_status_name(status));
	a_int(&a, before_ms);
	a_int(&a, limit > 0 ? limit : INT32_MAX);
	return get_jobs(pgs(st),
	    status == JOB_QUEUED ? Q_QUEUED_OLDER : Q_STARTED_OLDER, &a, out);
}

static enum store_rc
pg_jobs_holding_ended(struct store *st, struct job_list *out)
{
	return get_jobs(pgs(st), Q_HOLDING_ENDED, NULL, out);
}

static enum store_rc
pg_slots_used(struct store *st, int64_t *used)
{
	return get_int(pgs(st), Q_SLOTS_USED, NULL, used);
}

static enum store_rc
pg_jobs_finished(struct store *st, int64_t since, struct job_list *out)
{
	struct args a = {0};

	a_int(&a, since);
	return get_jobs(pgs(st), Q_JOBS_FINISHED, &a, out);
}

/* ---- transitions ---------------------------------------------------- */

/* The job of a change just made, read back, and its event kept. */
static enum store_rc
changed(struct pg_store *s, int64_t seq, struct job *out)
{
	enum store_rc rc = job_at(s, seq, out);

	if (rc == STORE_NOTFOUND)
		return store_set_error(&s->base, "postgres: a job vanished");
	if (rc == STORE_OK) {
		store_place(&s->base, out);
		emit(s, out);
	}
	return rc;
}

static enum store_rc
promote_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct args a = {0};
	struct outcome o = {0};
	enum store_rc rc;

	a_txt(&a, s->base.up);
	a_txt(&a, s->process);
	a_int(&a, now_ms());
	rc = change(s, Q_PROMOTE, &a, &o);
	return rc == STORE_OK ? changed(s, o.seq, arg) : rc;
}

/* Nothing to ask the database when this process knows of no queued job
 * (another process pumps what it queued), nor right after a submit that
 * found every slot held, in the same transaction, with no word since of
 * another process's change (that would be read first, a call). The
 * submit's snapshot is then as fresh as a promote's would be: a slot that
 * another process frees meanwhile is that process's to fill, as ever.
 * On a queue that is not empty, that spares every submit a round trip. */
static enum store_rc
pg_promote(struct store *st, struct job *out)
{
	struct pg_store *s = pgs(st);
	int full;

	store_queue_sync(st);
	full = s->full;
	s->full = 0;
	if (full || store_queue_length(st) == 0)
		return STORE_NOTFOUND;
	return store_write(st, promote_tx, out);
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
conflict(struct pg_store *s, const char *id, struct job *out)
{
	struct args a = {0};
	enum store_rc rc;

	a_txt(&a, id);
	rc = get_job(s, Q_JOB_GET, &a, out);
	if (rc == STORE_OK)
		store_place(&s->base, out);
	return rc == STORE_OK ? STORE_CONFLICT : rc;
}

static enum store_rc
running_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct change_arg *c = arg;
	struct args a = {0};
	struct outcome o = {0};
	enum store_rc rc;

	a_txt(&a, c->id);
	a_txt(&a, c->task_id);
	a_int(&a, now_ms());
	rc = change(s, Q_RUNNING, &a, &o);
	if (rc == STORE_CONFLICT)
		return conflict(s, c->id, c->out);
	return rc == STORE_OK ? changed(s, o.seq, c->out) : rc;
}

static enum store_rc
pg_job_running(
    struct store *st, const char *id, const char *task_id, struct job *out)
{
	struct change_arg c = {.id = id, .task_id = task_id, .out = out};
	return store_write(st, running_tx, &c);
}

static enum store_rc
finish_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct change_arg *c = arg;
	char *outputs = c->outputs ? jsonw_dumps(c->outputs) : NULL;
	struct args a = {0};
	struct outcome o = {0};
	enum store_rc rc;

	a_txt(&a, c->id);
	a_txt(&a, job_status_name(c->to));
	a_txt(&a, c->code);
	a_txt(&a, c->message);
	a_txt(&a, outputs);
	a_bool(&a, c->release_slot);
	a_int(&a, now_ms());
	a_txt(&a, s->process);
	rc = change(s, Q_FINISH, &a, &o);
	free(outputs);
	if (rc == STORE_CONFLICT)
		return conflict(s, c->id, c->out);
	return rc == STORE_OK ? changed(s, o.seq, c->out) : rc;
}

static enum store_rc
pg_job_finish(struct store *st, const char *id, enum job_status to,
    const char *error_code, const char *error_message, json_t *outputs,
    int release_slot, struct job *out)
{
	struct change_arg c = {.id = id,
	    .to = to,
	    .code = error_code,
	    .message = error_message,
	    .outputs = outputs,
	    .release_slot = release_slot,
	    .out = out};

	if (!job_status_terminal(to))
		return store_set_error(st, "finish to %s: not a terminal state",
		    job_status_name(to));
	return store_write(st, finish_tx, &c);
}

static enum store_rc
release_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct args a = {0};
	struct outcome o;

	a_txt(&a, arg);
	return change(s, Q_RELEASE, &a, &o);
}

static enum store_rc
pg_slot_release(struct store *st, const char *id)
{
	return store_write(st, release_tx, (void *)id);
}

/* ---- accounts, cost ------------------------------------------------- */

static enum store_rc
move_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct change_arg *c = arg;
	struct args a = {0};
	struct outcome o = {0};
	enum store_rc rc;

	a_txt(&a, c->id);
	a_txt(&a, s->base.up);
	rc = change(s, Q_MOVE, &a, &o);
	if (rc != STORE_OK)
		return rc;
	a = (struct args){0};
	a_txt(&a, c->id);
	rc = get_job(s, Q_JOB_GET, &a, c->out);
	return rc;
}

static enum store_rc
pg_job_move(struct store *st, const char *id, struct job *out)
{
	struct change_arg c = {.id = id, .out = out};

	return store_write(st, move_tx, &c);
}

static enum store_rc
pg_slots_by_account(struct store *st, json_t **used)
{
	PGresult *r = call(pgs(st), Q_SLOTS_BY_ACCOUNT, NULL);

	if (r == NULL)
		return STORE_ERROR;
	*used = json_object();
	for (int i = 0; i < PQntuples(r); i++)
		json_object_set_new(
		    *used, PQgetvalue(r, i, 0), json_integer(col_int(r, i, 1)));
	PQclear(r);
	return STORE_OK;
}

static enum store_rc
cost_tx(struct store *st, void *arg)
{
	const char **v = arg;
	struct args a = {0};
	struct outcome o;

	a_txt(&a, v[0]);
	a_txt(&a, v[1]);
	return change(pgs(st), Q_COST, &a, &o);
}

static enum store_rc
pg_job_cost(struct store *st, const char *id, const char *cost_json)
{
	const char *v[2] = {id, cost_json};

	return store_write(st, cost_tx, v);
}

/* ---- usage and retention -------------------------------------------- */

static enum store_rc
pg_user_submits(struct store *st, const char *user_id, int64_t since,
    int64_t upto, int64_t *n, int64_t *oldest)
{
	struct args a = {0};
	PGresult *r;

	a_txt(&a, user_id);
	a_int(&a, since);
	a_int(&a, upto);
	if ((r = call(pgs(st), Q_USER_SUBMITS, &a)) == NULL)
		return STORE_ERROR;
	*n = col_int(r, 0, 0);
	*oldest = col_int(r, 0, 1);
	PQclear(r);
	return STORE_OK;
}

static enum store_rc
pg_user_uploads(struct store *st, const char *user_id, int64_t since,
    int64_t *n, int64_t *bytes, int64_t *oldest)
{
	struct args a = {0};
	PGresult *r;

	a_txt(&a, user_id);
	a_int(&a, since);
	if ((r = call(pgs(st), Q_USER_UPLOADS, &a)) == NULL)
		return STORE_ERROR;
	*n = col_int(r, 0, 0);
	*bytes = col_int(r, 0, 1);
	*oldest = col_int(r, 0, 2);
	PQclear(r);
	return STORE_OK;
}

static enum store_rc
pg_uploads_older(
    struct store *st, int64_t before_ms, int limit, struct upload_list *out)
{
	struct args a = {0};
	PGresult *r;

	a_int(&a, before_ms);
	if (limit > 0)
		a_int(&a, limit);
	else
		a_txt(&a, NULL);
	if ((r = call(pgs(st), Q_UPLOADS_OLDER, &a)) == NULL)
		return STORE_ERROR;
	for (int i = 0; i < PQntuples(r); i++) {
		struct upload *u = upload_list_push(out);
		u->id = col_text(r, i, 0);
		u->user_id = col_text(r, i, 1);
		u->type = col_text(r, i, 2);
		u->size = col_int(r, i, 3);
		u->sha256 = col_text(r, i, 4);
		u->filename = col_text(r, i, 5);
		u->path = col_text(r, i, 6);
		u->created_at = col_int(r, i, 7);
	}
	PQclear(r);
	return STORE_OK;
}

static enum store_rc
upload_delete_tx(struct store *st, void *arg)
{
	struct args a = {0};
	struct outcome o;
	enum store_rc rc;

	a_txt(&a, arg);
	rc = change(pgs(st), Q_UPLOAD_DELETE, &a, &o);
	return rc == STORE_NOTFOUND ? STORE_OK : rc;
}

static enum store_rc
pg_upload_delete(struct store *st, const char *id)
{
	return store_write(st, upload_delete_tx, (void *)id);
}

/* ---- the outbox ----------------------------------------------------- */

/* Rows of (event_id, job_id, status, data, at, state, attempts, next_at,
 * last_error), appended. */
static void
get_deliveries(const PGresult *r, struct store_delivery_list *out)
{
	for (int i = 0; i < PQntuples(r); i++) {
		struct store_delivery *d = store_delivery_push(out);
		d->event_id = col_int(r, i, 0);
		d->job_id = col_text(r, i, 1);
		d->status = col_text(r, i, 2);
		d->data = col_text(r, i, 3);
		d->at = col_int(r, i, 4);
		d->state = col_text(r, i, 5);
		d->attempts = col_int(r, i, 6);
		d->next_at = col_int(r, i, 7);
		d->last_error = col_text(r, i, 8);
	}
}

struct claim_arg {
	int64_t now, claim_ms;
	int limit;
	struct store_delivery_list *out;
};

static enum store_rc
claim_tx(struct store *st, void *arg)
{
	struct claim_arg *c = arg;
	struct args a = {0};
	PGresult *r;

	a_int(&a, c->now);
	a_int(&a, c->now + c->claim_ms);
	a_int(&a, c->limit);
	if ((r = call(pgs(st), Q_OUTBOX_CLAIM, &a)) == NULL)
		return STORE_ERROR;
	get_deliveries(r, c->out);
	PQclear(r);
	return STORE_OK;
}

static enum store_rc
pg_outbox_claim(struct store *st, int64_t now, int64_t claim_ms, int limit,
    struct store_delivery_list *out)
{
	struct claim_arg c = {now, claim_ms, limit, out};

	return store_write(st, claim_tx, &c);
}

struct done_arg {
	int64_t event_id;
	int ok;
	int64_t next_at;
	const char *error;
};

static enum store_rc
done_tx(struct store *st, void *arg)
{
	struct done_arg *d = arg;
	struct args a = {0};
	struct outcome o;
	enum store_rc rc;

	a_int(&a, d->event_id);
	a_bool(&a, d->ok);
	a_int(&a, d->next_at);
	a_txt(&a, d->error);
	a_int(&a, now_ms());
	rc = change(pgs(st), Q_OUTBOX_DONE, &a, &o);
	return rc == STORE_CONFLICT ? STORE_OK : rc;
}

static enum store_rc
pg_outbox_done(struct store *st, int64_t event_id, int ok, int64_t next_at,
    const char *error)
{
	struct done_arg d = {event_id, ok, next_at, error};

	return store_write(st, done_tx, &d);
}

static enum store_rc
pg_outbox_list(struct store *st, const char *state, int64_t after, int limit,
    struct store_delivery_list *out)
{
	struct args a = {0};
	PGresult *r;

	a_txt(&a, state);
	a_int(&a, after);
	if (limit > 0)
		a_int(&a, limit);
	else
		a_txt(&a, NULL);
	if ((r = call(pgs(st), Q_OUTBOX_LIST, &a)) == NULL)
		return STORE_ERROR;
	get_deliveries(r, out);
	PQclear(r);
	return STORE_OK;
}

/* ---- outputs, secrets ------------------------------------------------ */

struct outputs_arg {
	const char *job_id, *user_id;
	const json_t *stored;
};

static enum store_rc
outputs_tx(struct store *st, void *arg)
{
	struct outputs_arg *o = arg;
	char *stored = jsonw_dumps(o->stored);
	struct args a = {0};
	struct outcome oc;
	enum store_rc rc;

	a_txt(&a, o->job_id);
	a_txt(&a, o->user_id);
	a_txt(&a, stored);
	a_int(&a, now_ms());
	rc = change(pgs(st), Q_OUTPUTS_ADD, &a, &oc);
	free(stored);
	return rc;
}

static enum store_rc
pg_outputs_add(struct store *st, const char *job_id, const char *user_id,
    const json_t *stored)
{
	struct outputs_arg o = {job_id, user_id, stored};

	return store_write(st, outputs_tx, &o);
}

static enum store_rc
pg_output_get(struct store *st, const char *id, json_t **out)
{
	struct args a = {0};
	PGresult *r;
	enum store_rc rc = STORE_OK;

	a_txt(&a, id);
	if ((r = call(pgs(st), Q_OUTPUT_GET, &a)) == NULL)
		return STORE_ERROR;
	if (PQntuples(r) == 0)
		rc = STORE_NOTFOUND;
	else
		*out = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "id",
		    PQgetvalue(r, 0, 0), "job_id", PQgetvalue(r, 0, 1),
		    "user_id", PQgetvalue(r, 0, 2), "type", PQgetvalue(r, 0, 3),
		    "size", (json_int_t)col_int(r, 0, 4), "sha256",
		    PQgetvalue(r, 0, 5));
	PQclear(r);
	return rc;
}

struct secret_arg {
	const char *name, *fresh;
	char **value;
};

static enum store_rc
secret_tx(struct store *st, void *arg)
{
	struct secret_arg *s = arg;
	struct args a = {0};
	PGresult *r;

	a_txt(&a, s->name);
	a_txt(&a, s->fresh);
	if ((r = call(pgs(st), Q_SECRET, &a)) == NULL)
		return STORE_ERROR;
	*s->value = col_text(r, 0, 0);
	PQclear(r);
	return *s->value ? STORE_OK : STORE_ERROR;
}

static enum store_rc
pg_secret(struct store *st, const char *name, const char *fresh, char **value)
{
	struct secret_arg s = {name, fresh, value};

	return store_write(st, secret_tx, &s);
}

static enum store_rc
pg_outbox_counts(struct store *st, int64_t *pending, int64_t *failed)
{
	PGresult *r = call(pgs(st), Q_OUTBOX_COUNTS, NULL);

	if (r == NULL)
		return STORE_ERROR;
	*pending = col_int(r, 0, 0);
	*failed = col_int(r, 0, 1);
	PQclear(r);
	return STORE_OK;
}

/* ---- the log, counts, callbacks ------------------------------------ */

static enum store_rc
pg_events_after(struct store *st, int64_t after, int64_t upto,
    const char *user_id, const char *job_id, int limit,
    struct store_event_list *out)
{
	struct args a = {0};
	enum qid id = job_id    ? Q_EVENTS_AFTER_JOB
	              : user_id ? Q_EVENTS_AFTER_USER
	                        : Q_EVENTS_AFTER;
	PGresult *r;

	a_int(&a, after);
	a_int(&a, upto);
	if (user_id || job_id)
		a_txt(&a, user_id);
	if (job_id)
		a_txt(&a, job_id);
	if (limit > 0)
		a_int(&a, limit);
	else
		a_txt(&a, NULL);
	if ((r = call(pgs(st), id, &a)) == NULL)
		return STORE_ERROR;
	for (int i = 0; i < PQntuples(r); i++) {
		if (out->n == out->cap) {
			out->cap = out->cap ? 2 * out->cap : 16;
			out->v = xrealloc(out->v, out->cap * sizeof(*out->v));
		}
		struct store_event *e = &out->v[out->n++];
		e->id = col_int(r, i, 0);
		e->seq = col_int(r, i, 1);
		e->job_id = col_text(r, i, 2);
		e->user_id = col_text(r, i, 3);
		e->data = col_text(r, i, 4);
	}
	PQclear(r);
	return STORE_OK;
}

static enum store_rc
pg_events_last(struct store *st, int64_t *id)
{
	return get_int(pgs(st), Q_EVENTS_LAST, NULL, id);
}

static enum store_rc
pg_job_counts(struct store *st, json_t **counts)
{
	PGresult *r = call(pgs(st), Q_JOB_COUNTS, NULL);

	if (r == NULL)
		return STORE_ERROR;
	*counts = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		const char *tool = PQgetvalue(r, i, 0);
		json_t *t = json_object_get(*counts, tool);
		if (t == NULL)
			json_object_set_new(*counts, tool, t = json_object());
		json_object_set_new(
		    t, PQgetvalue(r, i, 1), json_integer(col_int(r, i, 2)));
	}
	PQclear(r);
	return STORE_OK;
}

struct callback_arg {
	const char *job_id, *task_id, *outcome;
	int applied;
};

static enum store_rc
callback_tx(struct store *st, void *arg)
{
	struct callback_arg *c = arg;
	struct args a = {0};
	PGresult *r;

	a_txt(&a, c->job_id);
	a_txt(&a, c->task_id);
	a_txt(&a, c->outcome);
	a_int(&a, c->applied);
	a_int(&a, now_ms());
	if ((r = call(pgs(st), Q_CALLBACK_ADD, &a)) == NULL)
		return STORE_ERROR;
	PQclear(r);
	return STORE_OK;
}

static enum store_rc
pg_callback_add(struct store *st, const char *job_id, const char *task_id,
    const char *outcome, int applied)
{
	struct callback_arg c = {job_id, task_id, outcome, applied};
	return store_write(st, callback_tx, &c);
}

struct lease_arg {
	int64_t ttl_ms;
	int mine;
	struct job_list *all;
};

static enum store_rc
lease_tx(struct store *st, void *arg)
{
	struct pg_store *s = pgs(st);
	struct lease_arg *l = arg;
	int64_t now = now_ms();
	struct args a = {0};

	a_txt(&a, s->process);
	a_int(&a, now + l->ttl_ms);
	a_int(&a, now);
	a_bool(&a, l->mine);
	return get_jobs(s, Q_LEASE, &a, l->all);
}

static const char *
pg_process(const struct store *st)
{
	return ((const struct pg_store *)st)->process;
}

static enum store_rc
pg_lease(struct store *st, int64_t ttl_ms, int mine, struct job_list *all)
{
	struct lease_arg l = {ttl_ms, mine, all};

	return store_write(st, lease_tx, &l);
}

/* ---- the connection -------------------------------------------------- */

/* Prepare every statement and listen: what a new session needs. */
static enum store_rc
session_setup(struct pg_store *s)
{
	char name[16], *sql, *channel = xasprintf(CHANNEL "%s", s->schema);
	enum store_rc rc = STORE_OK;
	char *esc = PQescapeIdentifier(s->conn, s->schema, strlen(s->schema));
	char *esc_channel =
	    PQescapeIdentifier(s->conn, channel, strlen(channel));

	free(channel);
	if (esc == NULL || esc_channel == NULL) {
		PQfreemem(esc);
		PQfreemem(esc_channel);
		return pg_fail(s, NULL);
	}
	sql = xasprintf("SET search_path = %s; LISTEN %s", esc, esc_channel);
	PQfreemem(esc);
	PQfreemem(esc_channel);
	rc = exec_sql(s, s->conn, sql);
	free(sql);
	for (int i = 0; rc == STORE_OK && i < Q_COUNT; i++) {
		PGresult *r;
		snprintf(name, sizeof(name), "q%d", i);
		r = PQprepare(s->conn, name, query_sql[i], 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			rc = pg_fail(s, r);
		PQclear(r);
	}
	s->ready = rc == STORE_OK;
	return rc;
}

/* The keywords every connection gets before the URL's own: bounds on
 * every wait, so a call never holds the loop for long. */
static PGconn *
connect_start(const char *url, int blocking)
{
	const char *keys[] = {"connect_timeout", "keepalives",
	    "keepalives_idle", "keepalives_interval", "keepalives_count",
	    "tcp_user_timeout", "options", "application_name", "dbname", NULL};
	const char *vals[] = {"3", "1", "5", "2", "2", "5000",
	    "-c statement_timeout=5000 -c lock_timeout=2000"
	    " -c idle_in_transaction_session_timeout=60000"
	    " -c client_min_messages=warning",
	    "fila", url, NULL};

	return blocking ? PQconnectdbParams(keys, vals, 1)
	                : PQconnectStartParams(keys, vals, 1);
}

static void on_sock(evutil_socket_t fd, short what, void *arg);

static void
watch_sock(struct pg_store *s)
{
	if (s->sock_ev) {
		event_free(s->sock_ev);
		s->sock_ev = NULL;
	}
	if (s->loop && s->conn)
		s->sock_ev = event_new(s->loop, PQsocket(s->conn),
		    EV_READ | EV_PERSIST, on_sock, s);
	if (s->sock_ev)
		event_add(s->sock_ev, NULL);
}

/* The socket is readable while no call runs: notifications, or the end
 * of the connection. */
static void
on_sock(evutil_socket_t fd, short what, void *arg)
{
	struct pg_store *s = arg;

	if (s->loop == NULL || s->conn == NULL)
		return;
	if (!PQconsumeInput(s->conn) || PQstatus(s->conn) == CONNECTION_BAD) {
		store_set_error(&s->base, "postgres: connection lost");
		reconnect_later(s);
		return;
	}
	drain_notifies(s);
	if (s->notified)
		store_notified(&s->base);
}

static void on_making(evutil_socket_t fd, short what, void *arg);

/* Drive the connection being made a step further. */
static void
making_step(struct pg_store *s)
{
	struct timeval tv = timeval_ms(RECONNECT_MS);
	PostgresPollingStatusType st = PQconnectPoll(s->making);
	short want = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;

	if (s->retry_ev)
		event_free(s->retry_ev);
	s->retry_ev = NULL;
	if (st == PGRES_POLLING_OK) {
		s->conn = s->making;
		s->making = NULL;
		if (session_setup(s) == STORE_OK) {
			fprintf(stderr, "fila: postgres: connected again\n");
			s->notified = 1; /* catch up with what was missed */
			watch_sock(s);
			store_notified(&s->base);
		}
		return;
	}
	if (st == PGRES_POLLING_FAILED) {
		PQfinish(s->making);
		s->making = NULL;
		s->retry_ev = evtimer_new(s->loop, on_making, s);
		evtimer_add(s->retry_ev, &tv);
		return;
	}
	s->retry_ev =
	    event_new(s->loop, PQsocket(s->making), want, on_making, s);
	event_add(s->retry_ev, &tv);
}

static void
on_making(evutil_socket_t fd, short what, void *arg)
{
	struct pg_store *s = arg;

	if (s->making == NULL) {
		s->making = connect_start(s->url, 0);
		if (s->making == NULL) {
			struct timeval tv = timeval_ms(RECONNECT_MS);
			evtimer_add(s->retry_ev, &tv);
			return;
		}
	}
	making_step(s);
}

/* The connection broke: calls fail at once until it is made again, from
 * the loop, without blocking it. */
static void
reconnect_later(struct pg_store *s)
{
	struct timeval tv = timeval_ms(RECONNECT_MS);

	if (s->conn == NULL)
		return;
	fprintf(stderr, "fila: postgres: connection lost, reconnecting\n");
	s->ready = 0;
	if (s->sock_ev) {
		event_free(s->sock_ev);
		s->sock_ev = NULL;
	}
	PQfinish(s->conn);
	s->conn = NULL;
	if (s->loop == NULL || s->retry_ev || s->making)
		return;
	s->retry_ev = evtimer_new(s->loop, on_making, s);
	evtimer_add(s->retry_ev, &tv);
}

static void
pg_watch(struct store *st, struct event_base *base)
{
	struct pg_store *s = pgs(st);

	s->loop = base;
	watch_sock(s);
}

/* ---- open ----------------------------------------------------------- */

/* Apply what migrations this database lacks (under setup_lock). */
static enum store_rc
migrate(struct pg_store *s)
{
	enum store_rc rc = exec_sql(s, s->conn,
	    "CREATE TABLE IF NOT EXISTS schema_version ("
	    " version int PRIMARY KEY, applied_at bigint NOT NULL)");
	int64_t have = 0;
	PGresult *r;

	if (rc != STORE_OK)
		return rc;
	r = PQexec(s->conn, "SELECT coalesce(max(version), 0)"
	                    " FROM schema_version");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = pg_fail(s, r);
	else
		have = col_int(r, 0, 0);
	PQclear(r);
	if (rc == STORE_OK && have > N_MIGRATIONS)
		rc = store_set_error(&s->base,
		    "schema version %lld is newer than this fila knows (%d)",
		    (long long)have, N_MIGRATIONS);
	for (int64_t v = have + 1; rc == STORE_OK && v <= N_MIGRATIONS; v++) {
		char *sql = xasprintf("BEGIN; %s %s INSERT INTO schema_version"
		                      " VALUES (%lld, %lld); COMMIT",
		    migrations[2 * (v - 1)], migrations[2 * (v - 1) + 1],
		    (long long)v, (long long)now_ms());
		rc = exec_sql(s, s->conn, sql);
		free(sql);
		if (rc != STORE_OK)
			exec_sql(s, s->conn, "ROLLBACK");
	}
	return rc;
}

/* Each account's slot rows 1..slots; free rows beyond go (held ones
 * stay until released), and accounts no longer configured keep no room.
 * And this process's lease. */
static enum store_rc
size_slots(struct pg_store *s)
{
	const struct store_opts *o = &s->opts;
	struct store_account one = {"default", o->slots};
	const struct store_account *acc = o->naccounts ? o->accounts : &one;
	size_t n = o->naccounts ? o->naccounts : 1;
	char *sql = xstrdup("BEGIN;"), *names = xstrdup(""), *t, *me;
	enum store_rc rc = STORE_OK;

	for (size_t i = 0; rc == STORE_OK && i < n; i++) {
		char *lit =
		    PQescapeLiteral(s->conn, acc[i].name, strlen(acc[i].name));
		if (lit == NULL) {
			rc = pg_fail(s, NULL);
			break;
		}
		t = xasprintf(
		    "%s INSERT INTO accounts VALUES (%s, %lld)"
		    " ON CONFLICT (name) DO UPDATE SET slots = %lld;"
		    " INSERT INTO slots (account, n) SELECT %s,"
		    " generate_series(1, %lld) ON CONFLICT DO NOTHING;",
		    sql, lit, (long long)acc[i].slots, (long long)acc[i].slots,
		    lit, (long long)acc[i].slots);
		free(sql);
		sql = t;
		t = xasprintf("%s%s%s", names, i ? ", " : "", lit);
		free(names);
		names = t;
		PQfreemem(lit);
	}
	me = PQescapeLiteral(s->conn, s->process, strlen(s->process));
	if (me == NULL && rc == STORE_OK)
		rc = pg_fail(s, NULL);
	/* This process's lease from the start: what it promotes before its
	 * first renewal is not taken over. */
	if (rc == STORE_OK) {
		t = xasprintf(
		    "%s UPDATE accounts SET slots = 0 WHERE name NOT IN"
		    " (%s); DELETE FROM slots s WHERE s.job_id IS NULL"
		    " AND s.n > coalesce((SELECT a.slots FROM accounts a"
		    " WHERE a.name = s.account), 0);"
		    " INSERT INTO processes VALUES (%s, %lld, %lld)"
		    " ON CONFLICT (id) DO UPDATE SET lease_until ="
		    " EXCLUDED.lease_until; COMMIT",
		    sql, names, me, (long long)(now_ms() + STORE_LEASE_MS),
		    (long long)now_ms());
		rc = exec_sql(s, s->conn, t);
		free(t);
		if (rc != STORE_OK)
			exec_sql(s, s->conn, "ROLLBACK");
	}
	PQfreemem(me);
	free(sql);
	free(names);
	return rc;
}

static enum store_rc
schema_exists(struct pg_store *s, int *exists)
{
	const char *v[1] = {s->schema};
	PGresult *r = PQexecParams(s->conn,
	    "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, NULL, v, NULL,
	    NULL, 0);
	enum store_rc rc = STORE_OK;

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		rc = pg_fail(s, r);
	else
		*exists = PQntuples(r) > 0;
	PQclear(r);
	return rc;
}

/* Make store.schema unless it exists (so that a role without CREATE on
 * the database may use one made for it), and make it the session's. */
static enum store_rc
make_schema(struct pg_store *s)
{
	char *esc = PQescapeIdentifier(s->conn, s->schema, strlen(s->schema));
	char *sql;
	enum store_rc rc;
	int exists = 0;

	if (esc == NULL)
		return pg_fail(s, NULL);
	/* Made only when missing: a role that owns a schema made for it
	 * need not be allowed to create schemas. Separate statements: in
	 * one PQexec they would share a transaction, and a CREATE racing
	 * another's would fail at its commit. */
	rc = schema_exists(s, &exists);
	if (rc == STORE_OK && !exists) {
		sql = xasprintf("CREATE SCHEMA IF NOT EXISTS %s", esc);
		rc = exec_sql(s, s->conn, sql);
		free(sql);
	}
	sql = xasprintf("SET search_path = %s", esc);
	if (rc == STORE_OK)
		rc = exec_sql(s, s->conn, sql);
	free(sql);
	PQfreemem(esc);
	return rc;
}

/* The schema's setup lock, held by one process at a time while it makes
 * the schema, migrates it and sizes the slots (on = 0 lets go). */
static enum store_rc
setup_lock(struct pg_store *s, int on)
{
	char *lit = PQescapeLiteral(s->conn, s->schema, strlen(s->schema));
	char *sql;
	enum store_rc rc;

	if (lit == NULL)
		return pg_fail(s, NULL);
	sql = xasprintf("SELECT pg_advisory_%s(hashtext(%s), %d)",
	    on ? "lock" : "unlock", lit, LOCK_SETUP);
	PQfreemem(lit);
	rc = exec_sql(s, s->conn, sql);
	free(sql);
	return rc;
}

static void
pg_free(struct store *st)
{
	struct pg_store *s = pgs(st);

	pending_clear(s);
	free(s->pend);
	if (s->sock_ev)
		event_free(s->sock_ev);
	if (s->retry_ev)
		event_free(s->retry_ev);
	if (s->making)
		PQfinish(s->making);
	if (s->conn)
		PQfinish(s->conn);
	free(s->url);
	free(s->schema);
	free(s->process);
	free(s);
}

static struct store *
pg_open(
    const char *url, const struct store_opts *opts, char *err, size_t errlen)
{
	struct pg_store *s = xcalloc(1, sizeof(*s));
	enum store_rc rc;
	char id[17];

	s->base.be = &store_pg_backend;
	s->opts = *opts;
	s->url = xstrdup(url);
	s->schema =
	    xstrdup(opts->schema && *opts->schema ? opts->schema : "fila");
	random_hex(id, 8);
	s->process = xstrdup(opts->process ? opts->process : id);
	if (strlen(s->schema) > SCHEMA_MAX) {
		store_set_error(
		    &s->base, "store.schema: at most %d bytes", SCHEMA_MAX);
		goto fail;
	}
	s->conn = connect_start(url, 1);
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
		pg_fail(s, NULL);
		goto fail;
	}
	if (setup_lock(s, 1) != STORE_OK)
		goto fail;
	rc = make_schema(s);
	if (rc == STORE_OK)
		rc = migrate(s);
	if (rc == STORE_OK)
		rc = size_slots(s);
	if (setup_lock(s, 0) != STORE_OK || rc != STORE_OK ||
	    session_setup(s) != STORE_OK || store_opened(&s->base) != STORE_OK)
		goto fail;
	return &s->base;
fail:
	snprintf(err, errlen, "%s", s->base.err);
	rank_free(s->base.queue);
	pg_free(&s->base);
	return NULL;
}

const struct store_backend store_pg_backend = {
    .name = "postgres",
    .log_at_commit = 1,
    .open = pg_open,
    .free = pg_free,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .savepoint = pg_savepoint,
    .release = pg_release,
    .rollback_to = pg_rollback_to,
    .queue_load = pg_queue_load,
    .queue_follow = pg_queue_follow,
    .others_wrote = pg_others_wrote,
    .watch = pg_watch,
    .user_balance = pg_user_balance,
    .user_grant = pg_user_grant,
    .ledger = pg_ledger,
    .upload_add = pg_upload_add,
    .upload_get = pg_upload_get,
    .submit_reads = pg_submit_reads,
    .job_submit = pg_job_submit,
    .job_get = pg_job_get,
    .job_by_token = pg_job_by_token,
    .job_active = pg_job_active,
    .job_list = pg_job_list,
    .jobs_in = pg_jobs_in,
    .queue = pg_queue,
    .promote = pg_promote,
    .job_running = pg_job_running,
    .job_finish = pg_job_finish,
    .slot_release = pg_slot_release,
    .slots_used = pg_slots_used,
    .jobs_finished = pg_jobs_finished,
    .events_after = pg_events_after,
    .events_last = pg_events_last,
    .job_counts = pg_job_counts,
    .jobs_older = pg_jobs_older,
    .jobs_holding_ended = pg_jobs_holding_ended,
    .callback_add = pg_callback_add,
    .lease = pg_lease,
    .job_move = pg_job_move,
    .slots_by_account = pg_slots_by_account,
    .job_cost = pg_job_cost,
    .user_submits = pg_user_submits,
    .user_uploads = pg_user_uploads,
    .uploads_older = pg_uploads_older,
    .upload_delete = pg_upload_delete,
    .outbox_claim = pg_outbox_claim,
    .outbox_done = pg_outbox_done,
    .outbox_list = pg_outbox_list,
    .outbox_counts = pg_outbox_counts,
    .outputs_add = pg_outputs_add,
    .output_get = pg_output_get,
    .secret = pg_secret,
    .process = pg_process,
};
