/*
 * test_watchdog.c — rule 6 (nothing stays stuck) and the polling of
 * docs/api.md §7 as watchdog.c applies them: a fresh SQLite store per test, the
 * built-in tools, a scheduler and a watchdog on an event_base driven by
 * hand, and a fake provider that records every call and answers when the
 * test says (all but the watchdog from fixtures.h). Times are moved into
 * the past with a raw UPDATE of the jobs row (only terminal jobs refuse
 * updates), so the limits need no waiting.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "fixtures.h"
#include "job.h"
#include "provider.h"
#include "store.h"
#include "util.h"
#include "watchdog.h"

static struct watchdog *wd;

static void
teardown(void)
{
	watchdog_free(wd);
	wd = NULL;
	fx_teardown();
}

TestSuite(watchdog, .fini = teardown);

static void
wd_start(void)
{
	wd = watchdog_new(fx.base, &fx.cfg, fx.st, fx.sc, 20);
	cr_assert_not_null(wd);
}

/* Move a job's time column back by secs seconds. */
static void
age(const char *id, const char *column, int64_t secs)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
	    "UPDATE jobs SET %s = %s - %lld WHERE id = '%s'", column, column,
	    (long long)secs * 1000, id);
	fx_raw_exec(sql);
}

/* ---- queue_timeout ------------------------------------------------- */

Test(watchdog, queued_past_queue_timeout_fails_refunded)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	fx_submit_job("j3", "carol", "upscaler");
	age("j2", "created_at", 601);
	wd_start();
	FX_SPIN_UNTIL(fx_status_of("j2") != JOB_QUEUED, 1000);

	fx_job_of("j2", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(
	    j.error_message, "the job was queued longer than queue_timeout");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("bob"), 100);

	/* The others are within their limits; nothing at the provider. */
	fx_spin(100);
	fx_assert_status("j1", JOB_RUNNING);
	fx_assert_status("j3", JOB_QUEUED);
	fx_job_of("j3", &j);
	cr_assert_eq(j.position, 1);
	job_cleanup(&j);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	cr_assert_eq(fx_ncalls(FX_POLL), 0);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_ledger_count("bob", "j2", "refund"), 1);
}

Test(watchdog, queue_timeout_is_read_from_the_config)
{
	fx_env("queue.slots=1", "queue.queue_timeout=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	wd_start();
	fx_spin(500);
	fx_assert_status("j2", JOB_QUEUED);
	FX_SPIN_UNTIL(fx_status_of("j2") != JOB_QUEUED, 1500);
	fx_assert_status("j2", JOB_FAILED);
	cr_assert_eq(fx_balance_of("bob"), 100);
	fx_assert_status("j1", JOB_RUNNING);
}

/* ---- run_timeout --------------------------------------------------- */

Test(watchdog, running_past_run_timeout_fails_and_cancels_at_the_provider)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	age("j1", "started_at", 601);
	wd_start();
	FX_SPIN_UNTIL(fx_status_of("j1") != JOB_RUNNING, 1000);

	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(
	    j.error_message, "the job was running longer than run_timeout");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-1");

	/* The slot waits for the provider; the job is not ended twice. */
	fx_spin(100);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_eq(fx_ncalls(FX_POLL), 0);
	cr_assert_eq(fx_slots_used(), 1);
	fx_assert_status("j2", JOB_QUEUED);
	fx_assert_within_slots();

	fx_answer_cancel(0);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
}

Test(watchdog, starting_past_run_timeout_waits_for_the_submit)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	age("j1", "started_at", 601);
	wd_start();
	FX_SPIN_UNTIL(fx_status_of("j1") != JOB_STARTING, 1000);

	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(
	    j.error_message, "the job was starting longer than run_timeout");
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	cr_assert_eq(fx_slots_used(), 1);
	fx_assert_status("j2", JOB_QUEUED);

	/* The submit made a task after all: cancelled, then the slot. */
	fx_answer_submit(0, PROVIDER_OK, "task-1");
	fx_assert_status("j1", JOB_FAILED);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-1");
	fx_assert_status("j2", JOB_QUEUED);
	fx_answer_cancel(0);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
}

/* A job left starting by a stop has no task id to ask about: its slot
 * goes back at once (docs/api.md §4 rule 6). */
Test(watchdog, starting_without_a_submit_frees_its_slot_at_once)
{
	struct job j;
	int64_t b;
	json_t *inputs = json_pack("{s:s}", "prompt", "x");
	struct job_new in = {.id = "j1",
	    .user_id = "alice",
	    .tool = "upscaler",
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = "tok_j1"};

	fx_env("queue.slots=1", NULL);
	cr_assert_eq(store_job_submit(fx.st, &in, &j, &b), STORE_OK);
	json_decref(inputs);
	job_cleanup(&j);
	cr_assert_eq(store_promote(fx.st, &j), STORE_OK);
	job_cleanup(&j);
	age("j1", "started_at", 601);
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0);
	wd_start();
	FX_SPIN_UNTIL(fx_status_of("j1") != JOB_STARTING, 1000);
	fx_assert_status("j1", JOB_FAILED);
	cr_assert_eq(fx_balance_of("alice"), 100);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	cr_assert_eq(fx_slots_used(), 1);
}

/* ---- polling ------------------------------------------------------- */

Test(watchdog, a_young_running_job_is_not_polled)
{
	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 100); /* poll_after is 120 */
	wd_start();
	fx_spin(200);
	cr_assert_eq(fx_ncalls(FX_POLL), 0);
	fx_assert_status("j1", JOB_RUNNING);
}

Test(watchdog, poll_completed_completes_and_frees_the_slot)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	age("j1", "started_at", 121);
	wd_start();
	FX_SPIN_UNTIL(fx_ncalls(FX_POLL) == 1, 1000);
	cr_assert_eq(fx_ncalls(FX_POLL), 1);
	cr_assert_str_eq(fx_call_of(FX_POLL, 0)->task_id, "task-1");
	fx_spin(100);
	cr_assert_eq(fx_ncalls(FX_POLL), 1, "polled again while a poll is out");

	fx_answer_poll(0, TASK_COMPLETED, NULL);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_str_eq(json_string_value(json_object_get(
	                     json_array_get(j.outputs, 0), "url")),
	    "https://cdn.example/p.png");
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 90);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	fx_spin(100);
	cr_assert_eq(fx_ncalls(FX_POLL), 1);
}

Test(watchdog, poll_failed_fails_with_the_providers_message)
{
	struct job j;

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 121);
	wd_start();
	FX_SPIN_UNTIL(fx_ncalls(FX_POLL) == 1, 1000);
	fx_answer_poll(0, TASK_FAILED, "node 12: bad image");
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_PROVIDER);
	cr_assert_str_eq(j.error_message, "node 12: bad image");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_slots_used(), 0);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
}

/* Still running: asked again after poll_after, then after twice that. */
Test(watchdog, poll_running_is_polled_again_with_backoff)
{
	fx_env("runninghub.poll_after=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 2);
	wd_start();
	FX_SPIN_UNTIL(fx_ncalls(FX_POLL) == 1, 1000);
	cr_assert_eq(fx_ncalls(FX_POLL), 1);

	int64_t t1 = mono_ms();
	fx_answer_poll(0, TASK_RUNNING, NULL);
	fx_assert_status("j1", JOB_RUNNING);
	fx_spin(600);
	cr_assert_eq(fx_ncalls(FX_POLL), 1, "polled again too soon");
	FX_SPIN_UNTIL(fx_ncalls(FX_POLL) == 2, 1500);
	cr_assert_eq(fx_ncalls(FX_POLL), 2, "not polled again");
	cr_assert_geq(mono_ms() - t1, 950);

	int64_t t2 = mono_ms();
	fx_answer_poll(1, TASK_UNKNOWN, NULL);
	fx_assert_status("j1", JOB_RUNNING);
	fx_spin(1500);
	cr_assert_eq(fx_ncalls(FX_POLL), 2, "the interval did not grow");
	FX_SPIN_UNTIL(fx_ncalls(FX_POLL) == 3, 1500);
	cr_assert_eq(fx_ncalls(FX_POLL), 3);
	cr_assert_geq(mono_ms() - t2, 1950);
	cr_assert_str_eq(fx_call_of(FX_POLL, 2)->task_id, "task-1");
	fx_assert_status("j1", JOB_RUNNING);
}

Test(watchdog, poll_that_cannot_be_sent_is_tried_again)
{
	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 121);
	fx.fake.refuse[FX_POLL] = 1;
	wd_start();
	fx_spin(100);
	fx.fake.refuse[FX_POLL] = 0;
	FX_SPIN_UNTIL(fx_ncalls(FX_POLL) == 1, 1000);
	cr_assert_eq(fx_ncalls(FX_POLL), 1);
}

Test(watchdog, poll_answer_for_a_job_ended_meanwhile_changes_nothing)
{
	struct job j;

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	age("j1", "started_at", 121);
	wd_start();
	FX_SPIN_UNTIL(fx_ncalls(FX_POLL) == 1, 1000);
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	fx_answer_poll(0, TASK_COMPLETED, NULL);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(fx_slots_used(), 1); /* until the cancel answers */
	fx_answer_cancel(0);
	cr_assert_eq(fx_slots_used(), 0);
	fx_spin(100);
	cr_assert_eq(fx_ncalls(FX_POLL), 1);
}
