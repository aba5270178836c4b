/*
 * fixtures.h — what the unit tests share (fixtures.c): a temporary
 * directory and a store opened in it; and, for the tests of sched.c and
 * watchdog.c, one environment per test (the built-in config, a fresh
 * SQLite store, an event_base driven by hand, a scheduler) on a fake
 * provider that records every call and answers only when the test says
 * (or at once, when asked to), with helpers to submit jobs and read the
 * store. Every failure is a Criterion assertion, in the calling test.
 */
#ifndef FILA_TEST_FIXTURES_H
#define FILA_TEST_FIXTURES_H

#include <criterion/criterion.h>

#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "config.h"
#include "job.h"
#include "provider.h"
#include "store.h"
#include "util.h"

/* ---- any test: a temporary directory, a store in it -------------------- */

/* Make a fresh directory "/tmp/fila-NAME-XXXXXX" into buf (len bytes). */
void fx_tmpdir(char *buf, size_t len, const char *name);

/* Remove dir and all under it, errors ignored (for a suite's .fini). */
void fx_rmtree(const char *dir);

/* The SQLite store at path (made if missing), opened with o. */
struct store *fx_store_open(const char *path, const struct store_opts *o);

/* ---- the fake provider ------------------------------------------------- */

/* The provider calls the fake records, one kind per provider_ops entry. */
enum fx_call_kind { FX_SUBMIT, FX_CANCEL, FX_POLL, FX_TASKS, FX_KINDS };

/* The most calls one test may make. */
#define FX_MAX_CALLS 96

/* One call made to the fake provider, answered or not yet. */
struct fx_call {
	enum fx_call_kind kind;
	char task_id[64];  /* cancel, poll: the task asked about */
	char app_id[64];   /* submit */
	char webhook[256]; /* submit */
	char nodes[512];   /* submit: "node:field=value" or "node:field@path" */
	provider_cb cb;
	provider_poll_cb poll_cb;
	void *arg;
	int answered;
};

/* The fake provider's state: its calls, and how it behaves. */
struct fx_fake {
	struct fx_call calls[FX_MAX_CALLS];
	int ncalls;
	int refuse[FX_KINDS];  /* the call returns -1 (cb never runs) */
	int at_once[FX_KINDS]; /* answer inside the call */
	enum provider_rc at_once_rc;
	int next_task; /* for task ids made by answers at once */
};

/* Answer call c: rc, text (task id if OK, else message), count (tasks). */
void fx_answer(
    struct fx_call *c, enum provider_rc rc, const char *text, long count);

/* The number of calls of kind k made so far. */
int fx_ncalls(enum fx_call_kind k);

/* The number of calls of kind k not answered yet. */
int fx_unanswered(enum fx_call_kind k);

/* The i-th call (0-based) of kind k; the test fails if there is none. */
struct fx_call *fx_call_of(enum fx_call_kind k, int i);

/* Answer the i-th submit: rc with text (task id, or message). */
void fx_answer_submit(int i, enum provider_rc rc, const char *text);

/* Answer the i-th cancel OK. */
void fx_answer_cancel(int i);

/* Answer the i-th tasks call OK: count tasks at the provider. */
void fx_answer_tasks(int i, long count);

/* Answer the i-th poll: state (one png output if completed), message. */
void fx_answer_poll(int i, enum provider_state state, const char *message);

/* ---- the environment of a sched or watchdog test ----------------------- */

/* What fx_env() made; torn down by fx_teardown(). */
struct fx_state {
	char dir[64];     /* the test's temporary directory */
	char dbpath[128]; /* the store's file, in dir */
	struct config cfg;
	int cfg_loaded;
	struct store *st;
	struct event_base *base;
	struct provider *prov; /* on fake */
	struct sched *sc;
	struct fx_fake fake;
};

/* The environment of the running test (one test per process). */
extern struct fx_state fx;

/* Built-in config + --set strings (NULL-ended), fresh store, sched, fake. */
void fx_env(const char *set, ...);

/* Free what fx_env() made and remove its directory (a suite's .fini). */
void fx_teardown(void);

/* As a new process: store reopened, fresh sched and fake (calls lost). */
void fx_restart(void);

/* Run the loop without blocking for ms milliseconds. */
void fx_spin(int ms);

/* Run the loop until cond holds or ms milliseconds have passed. */
#define FX_SPIN_UNTIL(cond, ms)                                                \
	do {                                                                   \
		int64_t end_ = mono_ms() + (ms);                               \
		while (!(cond) && mono_ms() < end_) {                          \
			event_base_loop(fx.base, EVLOOP_NONBLOCK);             \
			usleep(2000);                                          \
		}                                                              \
	} while (0)

/* ---- jobs -------------------------------------------------------------- */

/* The user's uploads: img_USER (png) and vid_USER (mp4), real files. */
void fx_uploads_for(const char *user);

/* Valid inputs of tool for the user's uploads (a new reference). */
json_t *fx_inputs_for(const char *tool, const char *user);

/* Submit id through sched, inputs stolen, token "tok_<id>"; out: the job. */
enum sched_rc fx_submit_with(const char *id, const char *user, const char *tool,
    json_t *inputs, struct job *out);

/* Submit through sched, uploads made first; the status right after. */
enum job_status fx_submit_job(
    const char *id, const char *user, const char *tool);

/* Submit id and answer its submit OK with task: it is then running. */
void fx_run_job(
    const char *id, const char *user, int submit_no, const char *task);

/* Cancel job id as user through sched; out is the job after. */
enum sched_rc fx_cancel(const char *id, const char *user, struct job *out);

/* ---- the store, as a client and RunningHub can see it ------------------ */

/* Job id as stored into j (job_cleanup() it). */
void fx_job_of(const char *id, struct job *j);

/* Job id's status. */
enum job_status fx_status_of(const char *id);

/* Assert job id's status is want (both named when it is not). */
#define fx_assert_status(id, want)                                             \
	cr_assert_str_eq(job_status_name(fx_status_of(id)),                    \
	    job_status_name(want), "job %s", id)

/* The slots in use. */
int64_t fx_slots_used(void);

/* The user's balance. */
int64_t fx_balance_of(const char *user);

/* Ledger entries of kind for job_id in the user's ledger. */
int fx_ledger_count(const char *user, const char *job_id, const char *kind);

/* The number of jobs in status s. */
int fx_jobs_in(enum job_status s);

/* Assert what the provider may be running for fila is within the slots. */
void fx_assert_within_slots(void);

/* Run sql on a second connection to the store, behind its back. */
void fx_raw_exec(const char *sql);

/* The first column of the first row of sql, on a second connection. */
int64_t fx_raw_int(const char *sql);

#endif
