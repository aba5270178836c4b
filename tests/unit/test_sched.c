/*
 * test_sched.c — the rules of docs/api.md §4 as sched.c moves jobs: each test
 * on a fresh SQLite store in a temporary directory, the built-in tools, an
 * event_base driven by hand, and a fake provider that records every call
 * and answers only when the test says (or at once, when asked to); all
 * of it from fixtures.h (fx_env(), the fx_* helpers).
 *
 * What is asserted is the store (status, slots, ledger) and the provider's
 * calls: the two things a client and RunningHub can see.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fixtures.h"
#include "job.h"
#include "pool.h"
#include "provider.h"
#include "runninghub.h"
#include "sched.h"
#include "store.h"
#include "util.h"

TestSuite(sched, .fini = fx_teardown);

/* ---- callbacks ----------------------------------------------------- */

/* A RunningHub callback body for task: completed with one png, or failed
 * with message (the eventData a JSON string, as RunningHub sends it). */
static char *
callback_body(const char *task, const char *failure)
{
	json_t *env;

	if (failure)
		env = json_pack("{s:i, s:s, s:{s:{s:s}}}", "code", 805, "msg",
		    "APIKEY_TASK_STATUS_ERROR", "data", "failedReason",
		    "exception_message", failure);
	else
		env = json_pack("{s:i, s:s, s:[{s:s, s:s}]}", "code", 0, "msg",
		    "success", "data", "fileUrl", "https://cdn.example/o.png",
		    "fileType", "png");
	char *data = json_dumps(env, JSON_COMPACT);
	json_t *root = json_pack("{s:s, s:s, s:s}", "event", "TASK_END",
	    "taskId", task, "eventData", data);
	char *body = json_dumps(root, JSON_COMPACT);
	free(data);
	json_decref(env);
	json_decref(root);
	return body;
}

static enum sched_rc
webhook(const char *token, const char *task, const char *failure)
{
	char msg[256] = "";
	char *body = callback_body(task, failure);
	enum sched_rc rc =
	    sched_webhook(fx.sc, token, body, strlen(body), msg, sizeof(msg));
	free(body);
	return rc;
}

/* ---- submit and promotion ----------------------------------------- */

Test(sched, submit_with_a_free_slot_starts_at_once)
{
	char want[512];
	struct job j;

	fx_env("queue.slots=2", NULL);
	cr_assert_eq(fx_submit_job("j1", "alice", "upscaler"), JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_balance_of("alice"), 90);
	cr_assert_eq(fx_ledger_count("alice", "j1", "charge"), 1);

	/* The task: the variant's app, its nodes in order, the webhook. */
	struct fx_call *c = fx_call_of(FX_SUBMIT, 0);
	cr_assert_str_eq(c->app_id, "2015865378030755841");
	cr_assert_str_eq(
	    c->webhook, "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j1");
	snprintf(want, sizeof(want),
	    "12:image@%s/img_alice(png) 31:value=2048 33:value=0.35 "
	    "7:text=a cat",
	    fx.dir);
	cr_assert_str_eq(c->nodes, want);

	fx_job_of("j1", &j);
	cr_assert_eq(j.position, 0);
	cr_assert(j.started_at > 0);
	cr_assert_null(j.provider_task_id);
	job_cleanup(&j);

	/* A tool without variants: its app. */
	cr_assert_eq(
	    fx_submit_job("j2", "bob", "video_upscaler"), JOB_STARTING);
	c = fx_call_of(FX_SUBMIT, 1);
	cr_assert_str_eq(c->app_id, "2018810750139109378");
	snprintf(want, sizeof(want), "3:video@%s/vid_bob(mp4)", fx.dir);
	cr_assert_str_eq(c->nodes, want);
	cr_assert_eq(fx_balance_of("bob"), 80);
}

Test(sched, submit_with_slots_full_queues_with_position)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	cr_assert_eq(fx_submit_job("j1", "alice", "upscaler"), JOB_STARTING);
	fx_uploads_for("bob");
	cr_assert_eq(fx_submit_with("j2", "bob", "pose_changer",
	                 fx_inputs_for("pose_changer", "bob"), &j),
	    SCHED_OK);
	cr_assert_eq(j.status, JOB_QUEUED);
	cr_assert_eq(j.position, 1);
	job_cleanup(&j);
	fx_uploads_for("carol");
	cr_assert_eq(fx_submit_with("j3", "carol", "veste_ai",
	                 fx_inputs_for("veste_ai", "carol"), &j),
	    SCHED_OK);
	cr_assert_eq(j.status, JOB_QUEUED);
	cr_assert_eq(j.position, 2);
	job_cleanup(&j);

	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_balance_of("bob"), 92);
	cr_assert_eq(fx_balance_of("carol"), 92);
}

Test(sched, a_freed_slot_goes_to_the_oldest_queued_job_whatever_its_tool)
{
	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(fx_submit_job("j2", "bob", "video_upscaler"), JOB_QUEUED);
	cr_assert_eq(fx_submit_job("j3", "carol", "pose_changer"), JOB_QUEUED);
	cr_assert_eq(fx_submit_job("j4", "dave", "veste_ai"), JOB_QUEUED);
	cr_assert_eq(fx_submit_job("j5", "erin", "upscaler"), JOB_QUEUED);

	/* j1 completes: j2 (video) is next, then j3, j4, j5. */
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);
	fx_assert_status("j1", JOB_COMPLETED);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_str_eq(
	    fx_call_of(FX_SUBMIT, 1)->app_id, "2018810750139109378");

	fx_answer_submit(1, PROVIDER_REJECTED, "bad video");
	fx_assert_status("j2", JOB_FAILED);
	fx_assert_status("j3", JOB_STARTING);
	cr_assert_str_eq(
	    fx_call_of(FX_SUBMIT, 2)->app_id, "2018451429635133442");

	struct job j;
	cr_assert_eq(fx_cancel("j3", "carol", &j), SCHED_OK);
	job_cleanup(&j);
	/* Its submit is still out: j4 waits for the answer. */
	fx_assert_status("j4", JOB_QUEUED);
	fx_answer_submit(2, PROVIDER_REJECTED, "too late anyway");
	fx_assert_status("j4", JOB_STARTING);
	cr_assert_str_eq(
	    fx_call_of(FX_SUBMIT, 3)->app_id, "2018755100210106369");
	fx_assert_status("j5", JOB_QUEUED);
	cr_assert_eq(fx_slots_used(), 1);

	fx_job_of("j5", &j);
	cr_assert_eq(j.position, 1);
	job_cleanup(&j);
}

/* Many jobs, every kind of answer: the provider never holds more tasks
 * than there are slots, and the store never has more active jobs. */
Test(sched, never_more_at_the_provider_than_slots)
{
	char id[32], user[32], task[32];
	struct job j;

	fx_env("queue.slots=2", NULL);
	for (int i = 0; i < 8; i++) {
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		fx_submit_job(id, user, i % 2 ? "veste_ai" : "upscaler");
		fx_assert_within_slots();
	}
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_eq(fx_jobs_in(JOB_QUEUED), 6);

	fx_answer_submit(0, PROVIDER_OK, "task-0"); /* j0 running */
	fx_assert_within_slots();
	fx_answer_submit(1, PROVIDER_OK, "task-1"); /* j1 running */
	fx_assert_within_slots();
	cr_assert_eq(fx_cancel("j0", "u0", &j), SCHED_OK); /* cancel out */
	job_cleanup(&j);
	fx_assert_within_slots();
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);
	fx_assert_within_slots();
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 3); /* j2 */
	fx_answer_cancel(0);                   /* j0 let go: j3 */
	fx_assert_within_slots();
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 4);
	fx_answer_submit(2, PROVIDER_BUSY, "no capacity");
	fx_assert_within_slots();
	fx_answer_submit(3, PROVIDER_REJECTED, "nope"); /* j3 out: j4 */
	fx_assert_within_slots();
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 5);
	cr_assert_eq(sched_expire(fx.sc, "j4", "test"), SCHED_OK);
	fx_assert_within_slots();
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 5); /* j4's submit still out */
	fx_answer_submit(4, PROVIDER_OK, "task-4");
	fx_assert_within_slots();
	fx_answer_cancel(1);
	fx_assert_within_slots();
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 6);          /* j5 */
	FX_SPIN_UNTIL(fx_ncalls(FX_SUBMIT) == 7, 2000); /* j2 again */
	fx_assert_within_slots();
	for (int i = 5; i < 7; i++) {
		snprintf(task, sizeof(task), "task-%d", i);
		fx_answer_submit(i, PROVIDER_OK, task);
		fx_assert_within_slots();
	}
	cr_assert_eq(fx_jobs_in(JOB_RUNNING), 2);
	cr_assert_eq(fx_slots_used(), 2);
	cr_assert_eq(fx_jobs_in(JOB_QUEUED), 2);
}

/* ---- the submit's answer ------------------------------------------ */

Test(sched, submit_ok_runs_with_the_task_id)
{
	struct job j;

	fx_env(NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_answer_submit(0, PROVIDER_OK, "task-1");
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_RUNNING);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	job_cleanup(&j);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_balance_of("alice"), 90);
	fx_spin(20);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
}

Test(sched, answers_given_at_once_are_applied)
{
	fx_env("queue.slots=1", NULL);
	fx.fake.at_once[FX_SUBMIT] = 1;
	fx.fake.at_once_rc = PROVIDER_OK;
	cr_assert_eq(fx_submit_job("j1", "alice", "upscaler"), JOB_RUNNING);
	cr_assert_eq(fx_submit_job("j2", "bob", "upscaler"), JOB_QUEUED);

	/* A cancel answered at once frees the slot for j2, which is then
	 * started and answered at once too. */
	fx.fake.at_once[FX_CANCEL] = 1;
	struct job j;
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-now-1");
	fx_assert_status("j2", JOB_RUNNING);
	cr_assert_eq(fx_slots_used(), 1);

	/* Refused for good at once: failed, refunded, slot free. */
	fx.fake.at_once_rc = PROVIDER_REJECTED;
	cr_assert_eq(webhook("tok_j2", "task-now-2", NULL), SCHED_OK);
	cr_assert_eq(fx_submit_job("j3", "carol", "upscaler"), JOB_FAILED);
	cr_assert_eq(fx_balance_of("carol"), 100);
	cr_assert_eq(fx_slots_used(), 0);
}

/* BUSY (or a transport error) keeps the job starting in its slot and
 * sends it again after a backoff of about a second. */
static void
retried_later(enum provider_rc rc)
{
	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	int64_t t0 = mono_ms();
	fx_answer_submit(0, rc, "no capacity");
	fx_assert_status("j1", JOB_STARTING);
	fx_assert_status("j2", JOB_QUEUED);
	cr_assert_eq(fx_slots_used(), 1);
	fx_spin(100);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1, "retried without a backoff");

	if (rc == PROVIDER_RETRY) {
		/* Unsure whether the failed submit started a task: the
		 * provider's count is asked first; 0 unknown tasks, so send. */
		FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == 1, 2500);
		cr_assert_eq(fx_ncalls(FX_SUBMIT), 1, "sent before the check");
		fx_answer_tasks(0, 0);
	}
	FX_SPIN_UNTIL(fx_ncalls(FX_SUBMIT) == 2, 2500);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2, "not retried");
	cr_assert_geq(mono_ms() - t0, 400);
	cr_assert_str_eq(fx_call_of(FX_SUBMIT, 1)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j1");
	fx_assert_status("j2", JOB_QUEUED);

	fx_answer_submit(1, PROVIDER_OK, "task-1");
	struct job j;
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_RUNNING);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 90);
	fx_assert_status("j2", JOB_QUEUED);
	cr_assert_eq(fx_slots_used(), 1);
}

Test(sched, busy_is_retried_later_in_its_slot)
{
	retried_later(PROVIDER_BUSY);
}

Test(sched, transport_error_is_retried_later_in_its_slot)
{
	retried_later(PROVIDER_RETRY);
}

Test(sched, busy_past_run_timeout_fails_with_timeout)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	fx_raw_exec("UPDATE jobs SET started_at = started_at - 700000"
	            " WHERE id = 'j1'");
	fx_answer_submit(0, PROVIDER_BUSY, "no capacity");
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	fx_assert_status("j2", JOB_STARTING);
	fx_spin(1200);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2, "j1 was sent again");
}

Test(sched, rejected_fails_refunds_once_and_promotes_the_next)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "veste_ai");
	fx_answer_submit(0, PROVIDER_REJECTED, "image too large");

	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_REJECTED);
	cr_assert_str_eq(j.error_message, "image too large");
	cr_assert(j.refunded);
	cr_assert(j.finished_at > 0);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);

	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);

	/* Nothing later refunds it again. */
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_FINISHED);
	job_cleanup(&j);
	cr_assert_eq(sched_expire(fx.sc, "j1", "late"), SCHED_FINISHED);
	cr_assert_eq(webhook("tok_j1", "task-x", "late"), SCHED_OK);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(fx_balance_of("alice"), 100);
}

Test(sched, a_job_that_cannot_be_built_or_sent_fails_refunded)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	/* An upload that is not there any more. */
	cr_assert_eq(fx_submit_with("j1", "alice", "video_upscaler",
	                 json_pack("{s:s}", "video", "vid_gone"), &j),
	    SCHED_OK);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_REJECTED);
	cr_assert(
	    strstr(j.error_message, "vid_gone") != NULL, "%s", j.error_message);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0);
	cr_assert_eq(fx_slots_used(), 0);

	/* A provider call that cannot even start. */
	fx.fake.refuse[FX_SUBMIT] = 1;
	cr_assert_eq(fx_submit_job("j2", "bob", "upscaler"), JOB_FAILED);
	cr_assert_eq(fx_balance_of("bob"), 100);
	cr_assert_eq(fx_slots_used(), 0);
}

/* ---- cancel -------------------------------------------------------- */

Test(sched, cancel_queued_refunds_without_a_provider_call)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(fx_cancel("j2", "alice", &j), SCHED_NOTFOUND);
	job_cleanup(&j);
	cr_assert_eq(fx_cancel("j2", "bob", &j), SCHED_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert_str_eq(j.error_code, JOB_ERR_CANCELLED);
	cr_assert(j.refunded);
	cr_assert_eq(j.position, 0);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("bob"), 100);
	cr_assert_eq(fx_ledger_count("bob", "j2", "refund"), 1);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	cr_assert_eq(fx_slots_used(), 1);
	fx_assert_status("j1", JOB_STARTING);
}

/* Submit id for user in session through sched (uploads made first). */
static void
submit_in(const char *id, const char *user, const char *session)
{
	const struct tool *t = tools_find(&fx.cfg.tools, "upscaler");
	json_t *inputs = fx_inputs_for("upscaler", user);
	char token[64];
	struct job j;
	int64_t balance;

	fx_uploads_for(user);
	snprintf(token, sizeof(token), "tok_%s", id);
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = "upscaler",
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = t->cost,
	    .session_id = session,
	    .webhook_token = token};
	job_init(&j);
	cr_assert_eq(sched_submit(fx.sc, &in, &j, &balance), SCHED_OK);
	job_cleanup(&j);
	json_decref(inputs);
}

Test(sched, leave_cancels_the_sessions_queued_jobs_only)
{
	struct job j;

	fx_env("queue.slots=1", "queue.per_user_active=3", NULL);
	submit_in("j1", "alice", "s1"); /* takes the slot */
	submit_in("j2", "alice", "s1");
	submit_in("j3", "alice", "s2");
	submit_in("j4", "bob", "s1"); /* bob's s1 is another session */
	fx_assert_status("j1", JOB_STARTING);
	cr_assert_eq(sched_leave(fx.sc, "alice", "s1"), SCHED_OK);
	fx_job_of("j2", &j);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert_str_eq(j.error_code, JOB_ERR_SESSION);
	cr_assert(j.refunded);
	job_cleanup(&j);
	fx_assert_status("j1", JOB_STARTING); /* started: it goes on */
	fx_assert_status("j3", JOB_QUEUED);
	fx_assert_status("j4", JOB_QUEUED);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	/* Nothing left to leave is not an error. */
	cr_assert_eq(sched_leave(fx.sc, "alice", "s1"), SCHED_OK);
	cr_assert_eq(sched_leave(fx.sc, "carol", "s9"), SCHED_OK);
}

Test(sched, cancel_running_holds_the_slot_until_the_provider_answers)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");

	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-1");
	cr_assert_eq(fx_slots_used(), 1);
	fx_assert_status("j2", JOB_QUEUED);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);

	fx_answer_cancel(0);
	fx_assert_status("j1", JOB_CANCELLED);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
}

/*
 * Rule 6: the slot is freed once the provider confirms it let go. A cancel
 * that failed in transport confirms nothing (the task may still run), so
 * the slot stays held and the cancel is tried again.
 */
Test(sched, cancel_failed_in_transport_keeps_the_slot)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	fx_answer(
	    fx_call_of(FX_CANCEL, 0), PROVIDER_RETRY, "connection reset", 0);
	fx_assert_status("j2", JOB_QUEUED);
	cr_assert_eq(fx_slots_used(), 1);

	FX_SPIN_UNTIL(fx_ncalls(FX_CANCEL) == 2, 3000);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 2, "the cancel was not tried again");
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 1)->task_id, "task-1");
	fx_answer_cancel(1);
	fx_assert_status("j2", JOB_STARTING);
}

Test(sched, cancel_that_cannot_be_sent_frees_the_slot_at_once)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	fx.fake.refuse[FX_CANCEL] = 1;
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_slots_used(), 1);
}

Test(sched, cancel_during_submit_cancels_the_task_when_it_answers)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");

	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	cr_assert_eq(fx_slots_used(), 1);
	fx_assert_status("j2", JOB_QUEUED);

	/* The task was made after all: cancelled there, slot still held. */
	fx_answer_submit(0, PROVIDER_OK, "task-1");
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_CANCELLED);
	cr_assert_null(j.provider_task_id);
	job_cleanup(&j);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-1");
	cr_assert_eq(fx_slots_used(), 1);
	fx_assert_status("j2", JOB_QUEUED);

	fx_answer_cancel(0);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
}

/* Cancelled while its submit is out, then the provider refuses (for good,
 * for capacity, or the transport fails): nothing runs there, so the slot
 * goes to the next job at the answer and the cancelled one is not sent
 * again. */
Test(sched, cancel_during_submit_then_refusal_frees_the_slot)
{
	enum provider_rc answers[] = {
	    PROVIDER_REJECTED, PROVIDER_BUSY, PROVIDER_RETRY};
	char id[32], user[32], next[32];
	struct job j;

	fx_env("queue.slots=1", NULL);
	for (int i = 0; i < 4; i++) {
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		fx_submit_job(id, user, "upscaler");
	}
	for (int i = 0; i < 3; i++) {
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(user, sizeof(user), "u%d", i);
		snprintf(next, sizeof(next), "j%d", i + 1);
		cr_assert_eq(fx_cancel(id, user, &j), SCHED_OK);
		job_cleanup(&j);
		fx_assert_status(next, JOB_QUEUED);
		cr_assert_eq(fx_slots_used(), 1);

		fx_answer_submit(i, answers[i], "refused");
		fx_assert_status(id, JOB_CANCELLED);
		if (answers[i] == PROVIDER_RETRY) {
			/* Unsure whether a task started: the slot waits for
			 * the provider's count to say none did. */
			fx_assert_status(next, JOB_QUEUED);
			FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == 1, 2500);
			fx_answer_tasks(0, 0);
			fx_spin(50);
		}
		fx_assert_status(next, JOB_STARTING);
		cr_assert_eq(fx_ncalls(FX_SUBMIT), i + 2);
		cr_assert_eq(fx_slots_used(), 1);
		cr_assert_eq(fx_ledger_count(user, id, "refund"), 1);
		cr_assert_eq(fx_balance_of(user), 100);
	}
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	fx_spin(1200);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 4, "a cancelled job was sent again");
}

Test(sched, cancel_while_waiting_to_retry_frees_the_slot_at_once)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	fx_answer_submit(0, PROVIDER_BUSY, "no capacity");
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_eq(fx_slots_used(), 1);
	fx_spin(1200);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2, "j1 was sent after its cancel");
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
}

Test(sched, second_cancel_is_a_conflict_and_refunds_nothing)
{
	struct job j;

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_FINISHED);
	cr_assert_eq(j.status, JOB_CANCELLED);
	job_cleanup(&j);
	job_init(&j);
	cr_assert_eq(
	    sched_cancel(fx.sc, "j1", NULL, JOB_ERR_ADMIN, &j), SCHED_FINISHED);
	job_cleanup(&j);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_cancel("nope", "alice", &j), SCHED_NOTFOUND);
	job_cleanup(&j);
}

Test(sched, admin_cancel_names_its_code)
{
	struct job j;

	fx_env(NULL);
	fx_submit_job("j1", "alice", "upscaler");
	job_init(&j);
	cr_assert_eq(
	    sched_cancel(fx.sc, "j1", NULL, JOB_ERR_ADMIN, &j), SCHED_OK);
	cr_assert_str_eq(j.error_code, JOB_ERR_ADMIN);
	cr_assert_str_eq(j.error_message, "cancelled by an administrator");
	job_cleanup(&j);
}

/* ---- webhooks ------------------------------------------------------ */

Test(sched, webhook_unknown_token_is_not_found)
{
	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(webhook("tok_nope", "task-1", NULL), SCHED_NOTFOUND);
	fx_assert_status("j1", JOB_RUNNING);
}

Test(sched, webhook_completed_sets_outputs_and_frees_the_slot)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);

	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_eq(json_array_size(j.outputs), 1);
	json_t *o = json_array_get(j.outputs, 0);
	cr_assert_str_eq(json_string_value(json_object_get(o, "url")),
	    "https://cdn.example/o.png");
	cr_assert_str_eq(json_string_value(json_object_get(o, "type")), "png");
	cr_assert_not(j.refunded);
	cr_assert_null(j.error_code);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 90);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 0);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	cr_assert_eq(
	    fx_raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	               " 'j1' AND applied = 1 AND outcome = 'completed'"),
	    1);
}

Test(sched, webhook_failed_ends_failed_refunded_once)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(
	    webhook("tok_j1", "task-1", "CUDA out of memory"), SCHED_OK);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_PROVIDER);
	cr_assert_str_eq(j.error_message, "CUDA out of memory");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_slots_used(), 0);

	/* The same callback again, then a contradicting one: nothing. */
	int64_t events = fx_raw_int("SELECT count(*) FROM events");
	cr_assert_eq(
	    webhook("tok_j1", "task-1", "CUDA out of memory"), SCHED_OK);
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);
	fx_assert_status("j1", JOB_FAILED);
	cr_assert_eq(fx_ledger_count("alice", "j1", "refund"), 1);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_raw_int("SELECT count(*) FROM events"), events);
	cr_assert_eq(fx_raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                        " 'j1'"),
	    3);
	cr_assert_eq(fx_raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                        " 'j1' AND applied = 1"),
	    1);
}

Test(sched, duplicate_completed_callback_changes_nothing)
{
	struct job j;

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);
	fx_job_of("j1", &j);
	int64_t finished = j.finished_at;
	job_cleanup(&j);
	int64_t events = fx_raw_int("SELECT count(*) FROM events");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_eq(j.finished_at, finished);
	job_cleanup(&j);
	cr_assert_eq(fx_raw_int("SELECT count(*) FROM events"), events);
	cr_assert_eq(fx_balance_of("alice"), 90);
}

/* The statuses job id's events went through, each once, comma-joined. */
static void
event_statuses(const char *id, char *buf, size_t len)
{
	struct store_event_list l = {0};
	size_t off = 0;
	char last[16] = "";

	buf[0] = '\0';
	cr_assert_eq(store_events_after(fx.st, 0, NULL, id, 0, &l), STORE_OK);
	for (size_t i = 0; i < l.n; i++) {
		json_t *d = json_loads(l.v[i].data, 0, NULL);
		const char *s = json_string_value(json_object_get(d, "status"));
		if (s && strcmp(s, last) != 0 && off < len) {
			off += snprintf(
			    buf + off, len - off, "%s%s", off ? "," : "", s);
			snprintf(last, sizeof(last), "%s", s);
		}
		json_decref(d);
	}
	store_event_list_cleanup(&l);
}

Test(sched, callback_before_the_submit_answer_runs_then_completes)
{
	char seen[128];
	struct job j;

	fx_env(NULL);
	fx_submit_job("j1", "alice", "upscaler");
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	cr_assert_eq(json_array_size(j.outputs), 1);
	job_cleanup(&j);
	event_statuses("j1", seen, sizeof(seen));
	cr_assert_str_eq(seen, "queued,starting,running,completed");

	/* The submit's answer comes late: the job stays completed. */
	fx_answer_submit(0, PROVIDER_OK, "task-1");
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	for (int i = 0; i < fx_ncalls(FX_CANCEL); i++)
		fx_answer_cancel(i);
	cr_assert_eq(fx_slots_used(), 0);
	cr_assert_eq(fx_balance_of("alice"), 90);
}

/*
 * The slot of a job whose callback overtook its submit must stay held
 * until the submit answers: that submit may be making a second task (an
 * earlier attempt that failed in transport may have made the first), and
 * sched.c's own rule is that a slot is given back only after the submit
 * answered.
 */
Test(sched, callback_before_the_submit_answer_holds_the_slot)
{
	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(webhook("tok_j1", "task-0", NULL), SCHED_OK);
	fx_assert_status("j1", JOB_COMPLETED);
	fx_assert_within_slots();
	fx_assert_status("j2", JOB_QUEUED);
	cr_assert_eq(fx_slots_used(), 1);

	/* The in-flight submit made a second task: cancelled, then freed. */
	fx_answer_submit(0, PROVIDER_OK, "task-1");
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-1");
	fx_assert_status("j2", JOB_QUEUED);
	fx_answer_cancel(0);
	fx_assert_status("j2", JOB_STARTING);
	fx_assert_within_slots();
}

Test(sched, callback_naming_another_task_is_ignored)
{
	struct job j;

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(webhook("tok_j1", "task-9", "not yours"), SCHED_OK);
	cr_assert_eq(webhook("tok_j1", "task-9", NULL), SCHED_OK);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_RUNNING);
	cr_assert_str_eq(j.provider_task_id, "task-1");
	cr_assert_not(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_raw_int("SELECT count(*) FROM callbacks WHERE job_id ="
	                        " 'j1' AND applied = 0 AND task_id = 'task-9'"),
	    2);
	cr_assert_eq(webhook("tok_j1", "task-1", NULL), SCHED_OK);
	fx_assert_status("j1", JOB_COMPLETED);
}

Test(sched, callback_still_running_changes_nothing)
{
	char msg[256] = "";
	const char *body = "{\"event\":\"TASK_END\",\"taskId\":\"task-1\","
	                   "\"eventData\":{\"code\":804,\"msg\":\"RUNNING\"}}";

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(sched_webhook(
	                 fx.sc, "tok_j1", body, strlen(body), msg, sizeof(msg)),
	    SCHED_OK);
	fx_assert_status("j1", JOB_RUNNING);
	cr_assert_eq(fx_raw_int("SELECT count(*) FROM callbacks WHERE"
	                        " outcome = 'running' AND applied = 0"),
	    1);
}

Test(sched, malformed_callback_is_refused)
{
	char msg[256] = "";
	const char *bodies[] = {"", "not json", "[1,2]",
	    "{\"taskId\":\"task-1\",\"eventData\":\"{oops\"}"};

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
		msg[0] = '\0';
		cr_assert_eq(sched_webhook(fx.sc, "tok_j1", bodies[i],
		                 strlen(bodies[i]), msg, sizeof(msg)),
		    SCHED_MALFORMED, "body %zu", i);
		cr_assert_neq(msg[0], '\0', "no message for body %zu", i);
	}
	fx_assert_status("j1", JOB_RUNNING);
	/* An unknown token is told first, whatever the body. */
	cr_assert_eq(sched_webhook(fx.sc, "tok_x", "x", 1, msg, sizeof(msg)),
	    SCHED_NOTFOUND);
}

/* ---- expire -------------------------------------------------------- */

Test(sched, expire_queued_fails_refunded_without_a_provider_call)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(
	    sched_expire(fx.sc, "j2", "queued longer than queue_timeout"),
	    SCHED_OK);
	fx_job_of("j2", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert_str_eq(j.error_message, "queued longer than queue_timeout");
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("bob"), 100);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(sched_expire(fx.sc, "j2", "again"), SCHED_FINISHED);
	cr_assert_eq(sched_expire(fx.sc, "nope", "x"), SCHED_NOTFOUND);
	cr_assert_eq(fx_ledger_count("bob", "j2", "refund"), 1);
}

Test(sched, expire_running_cancels_and_holds_the_slot_until_answered)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(sched_expire(fx.sc, "j1", "too long"), SCHED_OK);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_FAILED);
	cr_assert_str_eq(j.error_code, JOB_ERR_TIMEOUT);
	cr_assert(j.refunded);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-1");
	cr_assert_eq(fx_slots_used(), 1);
	fx_assert_status("j2", JOB_QUEUED);

	fx_answer_cancel(0);
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_eq(fx_slots_used(), 1);
}

/* ---- recovery after a restart -------------------------------------- */

/* A job left starting by a previous process: charged, in its slot. */
static void
left_starting(const char *id, const char *user)
{
	struct job j;
	char token[64];
	int64_t b;
	json_t *inputs = fx_inputs_for("upscaler", user);

	fx_uploads_for(user);
	snprintf(token, sizeof(token), "tok_%s", id);
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = "upscaler",
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = token};
	cr_assert_eq(store_job_submit(fx.st, &in, &j, &b), STORE_OK);
	job_cleanup(&j);
	json_decref(inputs);
	cr_assert_eq(store_promote(fx.st, &j), STORE_OK);
	cr_assert_str_eq(j.id, id);
	job_cleanup(&j);
}

Test(sched, recover_holds_a_starting_job_while_the_provider_is_full)
{
	fx_env("queue.slots=2", NULL);
	left_starting("j1", "alice");
	sched_recover(fx.sc);
	cr_assert_eq(fx_ncalls(FX_TASKS), 1);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0);

	/* One task there that fila does not know of: maybe j1's. */
	fx_answer_tasks(0, 1);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0);
	fx_assert_status("j1", JOB_STARTING);
	cr_assert_eq(fx_slots_used(), 1);

	/* Asked again later; now there is room: j1 is sent again. */
	FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == 2, 3000);
	cr_assert_eq(fx_ncalls(FX_TASKS), 2);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0);
	fx_answer_tasks(1, 0);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	cr_assert_str_eq(fx_call_of(FX_SUBMIT, 0)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j1");
	fx_answer_submit(0, PROVIDER_OK, "task-1");
	fx_assert_status("j1", JOB_RUNNING);
	cr_assert_eq(fx_ledger_count("alice", "j1", "charge"), 1);
	cr_assert_eq(fx_balance_of("alice"), 90);
	fx_spin(50);
	cr_assert_eq(fx_ncalls(FX_TASKS), 2);
}

Test(sched, recover_sends_again_at_once_when_the_provider_is_empty)
{
	fx_env("queue.slots=3", NULL);
	left_starting("j1", "alice");
	left_starting("j2", "bob");
	/* j3 takes the third slot; its submit is lost by the stop. */
	fx_submit_job("j3", "carol", "upscaler");
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	fx_restart();

	sched_recover(fx.sc);
	cr_assert_eq(fx_ncalls(FX_TASKS), 1);
	/* j3 was starting too: all three wait for the count. */
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0);
	fx_answer_tasks(0, 0);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 3);
	for (int i = 0; i < 3; i++) {
		char task[32];
		snprintf(task, sizeof(task), "task-%d", i);
		fx_answer_submit(i, PROVIDER_OK, task);
	}
	fx_assert_status("j1", JOB_RUNNING);
	fx_assert_status("j2", JOB_RUNNING);
	fx_assert_status("j3", JOB_RUNNING);
	cr_assert_eq(fx_slots_used(), 3);
}

Test(sched, recover_counts_running_jobs_as_known_tasks)
{
	fx_env("queue.slots=3", NULL);
	left_starting("j1", "alice");
	struct job j;
	cr_assert_eq(store_job_running(fx.st, "j1", "task-1", &j), STORE_OK);
	job_cleanup(&j);
	left_starting("j2", "bob");
	left_starting("j3", "carol");
	cr_assert_eq(fx_submit_job("j4", "dave", "upscaler"), JOB_QUEUED);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0);

	sched_recover(fx.sc);
	/* Two tasks at the provider: j1's (known) and one unknown. */
	fx_answer_tasks(0, 2);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1, "only one of two may be sent");
	cr_assert_str_eq(fx_call_of(FX_SUBMIT, 0)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j2");
	fx_assert_status("j3", JOB_STARTING);
	fx_assert_status("j4", JOB_QUEUED);
	fx_assert_within_slots();
}

Test(sched, recover_forgets_a_job_ended_meanwhile)
{
	struct job j;

	fx_env("queue.slots=2", NULL);
	left_starting("j1", "alice");
	fx_submit_job("j2", "bob", "upscaler");
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	sched_recover(fx.sc);
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	cr_assert_eq(fx_balance_of("alice"), 100);
	fx_answer_tasks(0, 0);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1, "a cancelled job was sent");
	fx_spin(50);
	cr_assert_eq(fx_ncalls(FX_TASKS), 1, "still asking for nothing");
}

/*
 * A slot held for a provider answer that a stop lost (a cancelled running
 * job whose cancel was out, a job cancelled while its submit was out) must
 * not stay held for ever: after the restart the task is cancelled again,
 * or the slot freed, and queued jobs move.
 */
Test(sched, restart_frees_slots_held_for_lost_provider_answers)
{
	struct job j;

	fx_env("queue.slots=2", NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	fx_submit_job("j2", "bob", "upscaler"); /* submit out */
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	cr_assert_eq(fx_cancel("j2", "bob", &j), SCHED_OK);
	job_cleanup(&j);
	cr_assert_eq(fx_slots_used(), 2);

	fx_restart();
	fx_submit_job("j3", "carol", "upscaler");
	sched_recover(fx.sc);
	/* Whatever recovery asks the provider, it answers "let go". */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < fx.fake.ncalls; i++) {
			struct fx_call *c = &fx.fake.calls[i];
			if (!c->answered && c->kind == FX_CANCEL)
				fx_answer(c, PROVIDER_OK, NULL, 0);
			else if (!c->answered && c->kind == FX_TASKS)
				fx_answer(c, PROVIDER_OK, NULL, 0);
		}
		fx_spin(20);
	}
	fx_assert_status("j3", JOB_STARTING);
	cr_assert_eq(fx_slots_used(), 1);
}

/* A submit that failed in transport may have started a task all the
 * same: while the provider runs a task fila does not know of, the job is
 * not sent again (one slot, one task). */
Test(sched, unsure_submit_waits_while_the_provider_runs_an_unknown_task)
{
	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_answer_submit(0, PROVIDER_RETRY, "operation timed out");
	fx_assert_status("j1", JOB_STARTING);

	FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == 1, 2500);
	fx_answer_tasks(0, 1);
	fx_spin(200);
	cr_assert_eq(
	    fx_ncalls(FX_SUBMIT), 1, "sent again beside an unknown task");
	cr_assert_eq(fx_slots_used(), 1);

	FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == 2, 5000);
	fx_answer_tasks(1, 0);
	FX_SPIN_UNTIL(fx_ncalls(FX_SUBMIT) == 2, 2500);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
}

Test(sched, cancel_during_the_check_of_an_unsure_submit)
{
	struct job j;

	fx_env("queue.slots=1", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	fx_answer_submit(0, PROVIDER_RETRY, "operation timed out");
	FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == 1, 2500);
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	/* Its slot waits until the provider says no task of it runs. */
	fx_assert_status("j2", JOB_QUEUED);
	fx_answer_tasks(0, 0);
	fx_spin(100);
	fx_assert_status("j2", JOB_STARTING);
	/* j2's submit only: j1 is never sent again. */
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 2);
	cr_assert_str_eq(fx_call_of(FX_SUBMIT, 1)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j2");
}

/* The wait for an unknown task is bounded: run_timeout after the job
 * ended, its slot is freed whatever the provider's count says (the count
 * may hold other apps' tasks). The counts are asked 0.5 to 1 s apart
 * (retry jitter), so run_timeout is 2 s: the first answer comes before
 * it, and the slot goes at the first answer after it. */
Test(sched, the_wait_for_an_unknown_task_ends_after_run_timeout)
{
	struct job j;
	int64_t ended;
	int k;

	fx_env("queue.slots=1", "queue.run_timeout=2", NULL);
	fx_submit_job("j1", "alice", "upscaler");
	fx_submit_job("j2", "bob", "upscaler");
	fx_answer_submit(0, PROVIDER_RETRY, "operation timed out");
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	ended = j.finished_at;
	job_cleanup(&j);
	cr_assert_gt(ended, 0);
	FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == 1, 2500);
	fx_answer_tasks(0, 1);
	fx_assert_status("j2", JOB_QUEUED);
	for (k = 1; k < 8 && fx_status_of("j2") == JOB_QUEUED; k++) {
		int64_t asked;
		FX_SPIN_UNTIL(fx_ncalls(FX_TASKS) == k + 1, 2500);
		cr_assert_eq(fx_ncalls(FX_TASKS), k + 1, "no count asked");
		asked = now_ms();
		fx_answer_tasks(k, 1);
		fx_spin(50);
		/* Well before run_timeout, the unknown task keeps the slot. */
		if (asked - ended < 1900)
			fx_assert_status("j2", JOB_QUEUED);
	}
	fx_assert_status("j2", JOB_STARTING);
	cr_assert_geq(now_ms() - ended, 2000);
}

/* ---- group commit: nothing leaves before its commit ---------------- */

Test(sched, the_first_submit_waits_for_the_promotion_to_be_committed)
{
	fx_env(NULL);
	store_group(fx.st, 1);
	cr_assert_eq(fx_submit_job("j1", "alice", "upscaler"), JOB_STARTING);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0, "sent before the commit");
	cr_assert_eq(store_sync(fx.st), STORE_OK);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 1);
	fx_answer_submit(0, PROVIDER_OK, "task-1");
	cr_assert_eq(store_sync(fx.st), STORE_OK);
	fx_assert_status("j1", JOB_RUNNING);
}

Test(sched, a_lost_promotion_starts_nothing)
{
	struct job j;

	fx_env(NULL);
	fx_uploads_for("alice");
	fx_uploads_for("bob");
	fx_raw_exec("CREATE TRIGGER boom BEFORE INSERT ON events"
	            " WHEN NEW.job_id = 'jx' BEGIN"
	            " SELECT RAISE(ROLLBACK, 'disk gone'); END");
	store_group(fx.st, 1);
	cr_assert_eq(fx_submit_job("j1", "alice", "upscaler"), JOB_STARTING);
	/* A later change of the same turn takes the whole turn with it. */
	job_init(&j);
	cr_assert_eq(fx_submit_with("jx", "bob", "upscaler",
	                 fx_inputs_for("upscaler", "bob"), &j),
	    SCHED_UNAVAILABLE);
	job_cleanup(&j);
	cr_assert_eq(store_sync(fx.st), STORE_OK);
	cr_assert_eq(fx_ncalls(FX_SUBMIT), 0, "a task for a job never stored");
	cr_assert_eq(fx_raw_int("SELECT count(*) FROM jobs"), 0);
	cr_assert_eq(fx_slots_used(), 0);
}

Test(sched, a_cancel_reaches_the_provider_after_its_commit)
{
	struct job j;

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	store_group(fx.st, 1);
	cr_assert_eq(fx_cancel("j1", "alice", &j), SCHED_OK);
	job_cleanup(&j);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 0, "sent before the commit");
	cr_assert_eq(store_sync(fx.st), STORE_OK);
	cr_assert_eq(fx_ncalls(FX_CANCEL), 1);
	cr_assert_str_eq(fx_call_of(FX_CANCEL, 0)->task_id, "task-1");
	cr_assert_eq(fx_slots_used(), 1, "held until the provider answers");
	fx_answer_cancel(0);
	cr_assert_eq(store_sync(fx.st), STORE_OK);
	cr_assert_eq(fx_slots_used(), 0);
}

/* ---- accounts (docs/api.md §9) ------------------------------------- */

/*
 * Two accounts, a1 and a2, each with a fake provider of its own that
 * records its calls and answers when the test says: the pool is made
 * with a factory (pool.h's test hook), the store with the accounts as its
 * pools. fx_* helpers that submit and read the store work as usual.
 */
#define ACCT_CALLS 32

struct acct_call {
	enum fx_call_kind kind;
	provider_cb cb;
	void *arg;
	char webhook[256];
	char task_id[64];
	int answered;
};

struct acct_fake {
	struct acct_call calls[ACCT_CALLS];
	int n;
};

static struct acct_fake fakes[2];

static struct acct_call *
acct_record(struct acct_fake *f, enum fx_call_kind k, provider_cb cb, void *arg)
{
	cr_assert_lt(f->n, ACCT_CALLS, "too many calls");
	struct acct_call *c = &f->calls[f->n++];
	memset(c, 0, sizeof(*c));
	c->kind = k;
	c->cb = cb;
	c->arg = arg;
	return c;
}

static int
acct_submit(
    void *impl, const struct provider_task *t, provider_cb cb, void *arg)
{
	struct acct_call *c = acct_record(impl, FX_SUBMIT, cb, arg);
	snprintf(c->webhook, sizeof(c->webhook), "%s", t->webhook_url);
	return 0;
}

static int
acct_cancel(void *impl, const char *task_id, provider_cb cb, void *arg)
{
	struct acct_call *c = acct_record(impl, FX_CANCEL, cb, arg);
	snprintf(c->task_id, sizeof(c->task_id), "%s", task_id);
	return 0;
}

static int
acct_poll(void *impl, const char *task_id, provider_poll_cb cb, void *arg)
{
	return -1;
}

static int
acct_tasks(void *impl, provider_cb cb, void *arg)
{
	acct_record(impl, FX_TASKS, cb, arg);
	return 0;
}

static int
acct_parse(void *impl, const char *body, size_t len,
    struct provider_outcome *out, char *err, size_t errlen)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	json_t *env = json_loads(
	    json_string_value(json_object_get(root, "eventData")), 0, NULL);
	int rc = -1;

	if (json_is_object(env)) {
		out->task_id =
		    xstrdup(json_string_value(json_object_get(root, "taskId")));
		runninghub_outcome(env, out);
		rc = 0;
	}
	json_decref(env);
	json_decref(root);
	return rc;
}

static int
acct_pending(const void *impl)
{
	return 0;
}

static void
acct_free(void *impl)
{
}

static const struct provider_ops acct_ops = {
    .name = "fake-account",
    .submit = acct_submit,
    .cancel = acct_cancel,
    .poll = acct_poll,
    .parse_callback = acct_parse,
    .tasks = acct_tasks,
    .pending = acct_pending,
    .free = acct_free,
};

static struct provider *
make_fake(void *arg, struct event_base *base, const struct account *a,
    long timeout_ms, char *err, size_t errlen)
{
	int i = strcmp(a->name, "a1") == 0 ? 0 : 1;
	return provider_new(&acct_ops, &fakes[i]);
}

/* Calls of kind k made to account i (0: a1, 1: a2). */
static int
acct_ncalls(int i, enum fx_call_kind k)
{
	int n = 0;
	for (int c = 0; c < fakes[i].n; c++)
		n += fakes[i].calls[c].kind == k;
	return n;
}

static struct acct_call *
acct_call_of(int i, enum fx_call_kind k, int nth)
{
	for (int c = 0; c < fakes[i].n; c++)
		if (fakes[i].calls[c].kind == k && nth-- == 0)
			return &fakes[i].calls[c];
	cr_assert_fail("no call %d of kind %d on account %d", nth, k, i);
	return NULL;
}

/* Answer the nth call of kind k on account i: rc, code, text (a task id
 * when OK), count (tasks). */
static void
acct_answer(int i, enum fx_call_kind k, int nth, enum provider_rc rc, long code,
    const char *text, long count)
{
	struct acct_call *c = acct_call_of(i, k, nth);
	struct provider_result res = {
	    .rc = rc, .http_status = 200, .code = code, .count = count};

	cr_assert_not(c->answered);
	c->answered = 1;
	if (rc == PROVIDER_OK)
		res.task_id = text;
	else
		res.message = text;
	c->cb(c->arg, &res);
}

/* The store, the pool and sched of the two accounts (slots1 and slots2
 * slots), on fx; set: more --set strings (or NULL). */
static void
accounts_open(void)
{
	struct store_account pools[2];
	struct store_opts o = {.per_user_active = 1,
	    .credits_initial = 100,
	    .accounts = pools,
	    .naccounts = 2};
	char err[256] = "";
	struct pool *pool;

	for (int i = 0; i < 2; i++)
		pools[i] = (struct store_account){
		    fx.cfg.accounts[i].name, fx.cfg.accounts[i].slots};
	o.slots = fx.cfg.slots;
	fx.st = fx_store_open(fx.dbpath, &o);
	memset(fakes, 0, sizeof(fakes));
	pool =
	    pool_new(fx.base, &fx.cfg, NULL, make_fake, NULL, err, sizeof(err));
	cr_assert_not_null(pool, "%s", err);
	fx.sc = sched_new_pool(fx.base, &fx.cfg, fx.st, pool, NULL);
}

static void
accounts_env(int slots1, int slots2, const char *set)
{
	char s1[64], s2[64];
	char *sets[8] = {s1, s2, "runninghub.a2.base_url=http://a2.example",
	    "runninghub.down_for=1", "runninghub.status_every=3600"};
	size_t n = 5;
	char err[256] = "";

	snprintf(s1, sizeof(s1), "runninghub.a1.slots=%d", slots1);
	snprintf(s2, sizeof(s2), "runninghub.a2.slots=%d", slots2);
	if (set)
		sets[n++] = (char *)set;
	cr_assert_eq(
	    config_load(&fx.cfg, "/nonexistent", 1, sets, n, err, sizeof(err)),
	    0, "config: %s", err);
	fx.cfg_loaded = 1;
	cr_assert_eq(fx.cfg.naccounts, 2);
	fx_tmpdir(fx.dir, sizeof(fx.dir), program_invocation_short_name);
	snprintf(fx.dbpath, sizeof(fx.dbpath), "%s/fila.db", fx.dir);
	fx.base = event_base_new();
	accounts_open();
}

/* As a new process on the same store: calls lost, sched made again. */
static void
accounts_restart(void)
{
	sched_free(fx.sc);
	store_free(fx.st);
	accounts_open();
}

static char *
account_of_job(const char *id)
{
	struct job j;
	char *a;

	fx_job_of(id, &j);
	cr_assert_not_null(j.account, "job %s has no account", id);
	a = xstrdup(j.account);
	job_cleanup(&j);
	return a;
}

#define assert_account(id, want)                                               \
	do {                                                                   \
		char *got_ = account_of_job(id);                               \
		cr_assert_str_eq(got_, want, "job %s", id);                    \
		free(got_);                                                    \
	} while (0)

/* The account named in sched_accounts(): its JSON (borrowed from *all,
 * which the caller frees). */
static json_t *
account_view(const char *name, json_t **all)
{
	json_t *a;
	size_t i;

	*all = sched_accounts(fx.sc);
	cr_assert_not_null(*all);
	json_array_foreach(json_object_get(*all, "accounts"), i, a)
	{
		if (strcmp(json_string_value(json_object_get(a, "name")),
		        name) == 0)
			return a;
	}
	cr_assert_fail("no account %s", name);
	return NULL;
}

Test(sched, each_account_is_a_pool_and_its_provider_gets_its_jobs)
{
	json_t *all, *a;

	accounts_env(1, 1, NULL);
	cr_assert_eq(fx_submit_job("j1", "u1", "upscaler"), JOB_STARTING);
	cr_assert_eq(fx_submit_job("j2", "u2", "upscaler"), JOB_STARTING);
	cr_assert_eq(fx_submit_job("j3", "u3", "upscaler"), JOB_QUEUED);
	assert_account("j1", "a1");
	assert_account("j2", "a2");
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 1);
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 1);
	cr_assert_str_eq(acct_call_of(1, FX_SUBMIT, 0)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j2");

	/* A callback is read by the job's account, and frees its slot. */
	acct_answer(1, FX_SUBMIT, 0, PROVIDER_OK, 0, "t2", 0);
	cr_assert_eq(webhook("tok_j2", "t2", NULL), SCHED_OK);
	fx_assert_status("j2", JOB_COMPLETED);
	fx_assert_status("j3", JOB_STARTING);
	assert_account("j3", "a2");

	a = account_view("a2", &all);
	cr_assert_str_eq(json_string_value(json_object_get(a, "base_url")),
	    "http://a2.example");
	cr_assert_eq(json_integer_value(json_object_get(a, "slots")), 1);
	cr_assert_eq(json_integer_value(json_object_get(a, "used")), 1);
	cr_assert(json_is_true(json_object_get(a, "up")));
	cr_assert_null(json_object_get(a, "down_reason"));
	json_decref(all);
}

Test(sched, an_account_that_cannot_run_goes_down_and_its_job_moves)
{
	json_t *all, *a;

	accounts_env(1, 1, NULL);
	fx_submit_job("j1", "u1", "upscaler");
	assert_account("j1", "a1");
	acct_answer(0, FX_SUBMIT, 0, PROVIDER_ACCOUNT, 416,
	    "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET", 0);

	/* j1 moved to a2 and is sent there; it stays charged, once. */
	fx_assert_status("j1", JOB_STARTING);
	assert_account("j1", "a2");
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 1);
	cr_assert_eq(fx_ledger_count("u1", "j1", "charge"), 1);
	cr_assert_eq(fx_ledger_count("u1", "j1", "refund"), 0);
	cr_assert_eq(fx_slots_used(), 1);
	a = account_view("a1", &all);
	cr_assert(json_is_false(json_object_get(a, "up")));
	cr_assert_str_eq(json_string_value(json_object_get(a, "down_reason")),
	    "416 TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET");
	cr_assert_eq(json_integer_value(json_object_get(a, "used")), 0);
	json_decref(all);
	acct_answer(1, FX_SUBMIT, 0, PROVIDER_OK, 0, "t1", 0);
	fx_assert_status("j1", JOB_RUNNING);

	/* a1 is down: the next job waits though a1 has a free slot. */
	cr_assert_eq(fx_submit_job("j2", "u2", "upscaler"), JOB_QUEUED);
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 1);

	/* down_for later, a1 is up again and takes it. */
	FX_SPIN_UNTIL(fx_status_of("j2") == JOB_STARTING, 3000);
	fx_assert_status("j2", JOB_STARTING);
	assert_account("j2", "a1");
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 2);
	a = account_view("a1", &all);
	cr_assert(json_is_true(json_object_get(a, "up")));
	cr_assert_null(json_object_get(a, "down_reason"));
	json_decref(all);
	cr_assert_eq(fx_balance_of("u1"), 90);
}

Test(sched, with_no_room_elsewhere_the_job_waits_ahead_of_the_queue)
{
	accounts_env(1, 1, "runninghub.down_for=60");
	fx_submit_job("j1", "u1", "upscaler"); /* a1 */
	fx_submit_job("j2", "u2", "upscaler"); /* a2 */
	cr_assert_eq(fx_submit_job("j3", "u3", "upscaler"), JOB_QUEUED);
	acct_answer(1, FX_SUBMIT, 0, PROVIDER_OK, 0, "t2", 0);
	acct_answer(
	    0, FX_SUBMIT, 0, PROVIDER_ACCOUNT, 802, "APIKEY_UNAUTHORIZED", 0);

	/* a1 is down, a2 full: j1 waits in its slot, nothing sent. */
	fx_assert_status("j1", JOB_STARTING);
	assert_account("j1", "a1");
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 1);
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 1);
	fx_assert_status("j3", JOB_QUEUED);

	/* a2's slot frees: j1, ahead of the queue, moves into it. */
	cr_assert_eq(webhook("tok_j2", "t2", NULL), SCHED_OK);
	assert_account("j1", "a2");
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 2);
	cr_assert_str_eq(acct_call_of(1, FX_SUBMIT, 1)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j1");
	fx_assert_status("j3", JOB_QUEUED);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(fx_ledger_count("u1", "j1", "refund"), 0);
}

Test(sched, a_parked_job_cancelled_gives_its_slot_back_at_once)
{
	struct job j;

	accounts_env(1, 1, "runninghub.down_for=60");
	fx_submit_job("j1", "u1", "upscaler");
	fx_submit_job("j2", "u2", "upscaler");
	acct_answer(1, FX_SUBMIT, 0, PROVIDER_OK, 0, "t2", 0);
	acct_answer(0, FX_SUBMIT, 0, PROVIDER_ACCOUNT, 416, "no coins", 0);
	cr_assert_eq(fx_cancel("j1", "u1", &j), SCHED_OK);
	job_cleanup(&j);
	fx_assert_status("j1", JOB_CANCELLED);
	cr_assert_eq(fx_ledger_count("u1", "j1", "refund"), 1);
	cr_assert_eq(fx_slots_used(), 1);
	cr_assert_eq(acct_ncalls(0, FX_CANCEL), 0, "nothing to cancel");
}

Test(sched, with_every_account_down_the_queue_waits)
{
	accounts_env(1, 1, NULL);
	fx_submit_job("j1", "u1", "upscaler");
	fx_submit_job("j2", "u2", "upscaler");
	acct_answer(0, FX_SUBMIT, 0, PROVIDER_ACCOUNT, 416, "no coins", 0);
	acct_answer(1, FX_SUBMIT, 0, PROVIDER_ACCOUNT, 812, "no funds", 0);
	cr_assert_eq(fx_submit_job("j3", "u3", "upscaler"), JOB_QUEUED);
	fx_spin(100);
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT) + acct_ncalls(1, FX_SUBMIT), 2);
	fx_assert_status("j1", JOB_STARTING);
	fx_assert_status("j2", JOB_STARTING);

	/* Both back: each parked job is sent again on its own account. */
	FX_SPIN_UNTIL(
	    acct_ncalls(0, FX_SUBMIT) == 2 && acct_ncalls(1, FX_SUBMIT) == 2,
	    3000);
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 2);
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 2);
	fx_assert_status("j3", JOB_QUEUED);
}

Test(sched, capacity_on_one_account_tries_another_with_room_on_retry)
{
	accounts_env(1, 1, NULL);
	fx_submit_job("j1", "u1", "upscaler");
	assert_account("j1", "a1");
	acct_answer(0, FX_SUBMIT, 0, PROVIDER_BUSY, 1011, "busy", 0);
	fx_assert_status("j1", JOB_STARTING);
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 0, "after a backoff");
	FX_SPIN_UNTIL(acct_ncalls(1, FX_SUBMIT) == 1, 3000);
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 1);
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 1);
	assert_account("j1", "a2");
	json_t *all, *a = account_view("a1", &all);
	cr_assert(json_is_true(json_object_get(a, "up")), "busy is not down");
	json_decref(all);
}

Test(sched, capacity_with_no_room_elsewhere_retries_the_same_account)
{
	accounts_env(1, 1, NULL);
	fx_submit_job("j1", "u1", "upscaler"); /* a1 */
	fx_submit_job("j2", "u2", "upscaler"); /* a2 */
	acct_answer(1, FX_SUBMIT, 0, PROVIDER_OK, 0, "t2", 0);
	acct_answer(0, FX_SUBMIT, 0, PROVIDER_BUSY, 814, "queue limit", 0);
	FX_SPIN_UNTIL(acct_ncalls(0, FX_SUBMIT) == 2, 3000);
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 2);
	assert_account("j1", "a1");
	acct_answer(0, FX_SUBMIT, 1, PROVIDER_OK, 0, "t1", 0);
	fx_assert_status("j1", JOB_RUNNING);
}

Test(sched, recovery_asks_each_account_its_own_count)
{
	accounts_env(1, 1, NULL);
	fx_submit_job("j1", "u1", "upscaler"); /* a1, never answered */
	fx_submit_job("j2", "u2", "upscaler"); /* a2, never answered */
	accounts_restart();
	sched_recover(fx.sc);
	cr_assert_eq(acct_ncalls(0, FX_TASKS), 1);
	cr_assert_eq(acct_ncalls(1, FX_TASKS), 1);

	/* a1 runs a task fila does not know of (maybe j1's): j1 waits; a2
	 * runs none: j2 is sent again, there. */
	acct_answer(0, FX_TASKS, 0, PROVIDER_OK, 0, NULL, 1);
	acct_answer(1, FX_TASKS, 0, PROVIDER_OK, 0, NULL, 0);
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 0);
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 1);
	cr_assert_str_eq(acct_call_of(1, FX_SUBMIT, 0)->webhook,
	    "http://127.0.0.1:8080/v1/webhooks/runninghub/tok_j2");
	fx_assert_status("j1", JOB_STARTING);
}

Test(sched, each_account_status_is_kept_for_the_views)
{
	json_t *all, *a;

	accounts_env(1, 1, NULL);
	/* The pool asks each account's status at once. */
	FX_SPIN_UNTIL(
	    acct_ncalls(0, FX_TASKS) == 1 && acct_ncalls(1, FX_TASKS) == 1,
	    1000);
	struct acct_call *c = acct_call_of(0, FX_TASKS, 0);
	struct provider_result res = {
	    .rc = PROVIDER_OK, .count = 2, .coins = "990"};
	c->answered = 1;
	c->cb(c->arg, &res);
	acct_answer(
	    1, FX_TASKS, 0, PROVIDER_ACCOUNT, 802, "APIKEY_UNAUTHORIZED", 0);
	a = account_view("a1", &all);
	cr_assert_eq(
	    json_integer_value(json_object_get(a, "remain_coins")), 990);
	cr_assert_eq(json_integer_value(json_object_get(a, "task_count")), 2);
	json_decref(all);
	a = account_view("a2", &all);
	cr_assert(json_is_false(json_object_get(a, "up")));
	cr_assert_null(json_object_get(a, "remain_coins"));
	cr_assert_null(json_object_get(a, "task_count"));
	json_decref(all);
	/* a2 is down: a job goes to a1. */
	fx_submit_job("j1", "u1", "upscaler");
	assert_account("j1", "a1");
}

/* ---- provider cost ------------------------------------------------- */

Test(sched, a_completed_job_keeps_what_its_task_cost)
{
	json_t *env = json_pack("{s:i, s:s, s:[{s:s, s:s, s:s, s:s, s:s}]}",
	    "code", 0, "msg", "success", "data", "fileUrl",
	    "https://cdn.example/o.png", "fileType", "png", "consumeCoins",
	    "12", "consumeMoney", "0.12", "taskCostTime", "30");
	char *data = json_dumps(env, JSON_COMPACT);
	json_t *root = json_pack("{s:s, s:s, s:s}", "event", "TASK_END",
	    "taskId", "task-1", "eventData", data);
	char *body = json_dumps(root, JSON_COMPACT), msg[128];
	json_t *want = json_pack(
	    "{s:i, s:s, s:i}", "coins", 12, "money", "0.12", "seconds", 30);
	struct job j;

	fx_env(NULL);
	fx_run_job("j1", "alice", 0, "task-1");
	cr_assert_eq(sched_webhook(
	                 fx.sc, "tok_j1", body, strlen(body), msg, sizeof(msg)),
	    SCHED_OK);
	fx_job_of("j1", &j);
	cr_assert_eq(j.status, JOB_COMPLETED);
	cr_assert(json_equal(j.provider_cost, want), "%s",
	    json_dumps(j.provider_cost, JSON_COMPACT));
	job_cleanup(&j);

	/* Without a cost, none. */
	fx_run_job("j2", "bob", 1, "task-2");
	cr_assert_eq(webhook("tok_j2", "task-2", NULL), SCHED_OK);
	fx_job_of("j2", &j);
	cr_assert_null(j.provider_cost);
	job_cleanup(&j);
	free(data);
	free(body);
	json_decref(env);
	json_decref(root);
	json_decref(want);
}

/* ---- admission by estimated wait ----------------------------------- */

static int
admit(const char *user, const char *tool, const char *variant, const char *key,
    int64_t *eta, int64_t *retry)
{
	struct job_new in = {.id = "jx",
	    .user_id = user,
	    .tool = tool,
	    .variant = variant,
	    .idem_key = key};

	return sched_admit(fx.sc, &in, eta, retry);
}

/* Running job id started secs seconds earlier than it did: it will have
 * run that long (and a few ms) when it ends. */
static void
ran_for(const char *id, int secs)
{
	char sql[160];

	snprintf(sql, sizeof(sql),
	    "UPDATE jobs SET started_at = started_at - %d WHERE id = '%s'",
	    secs * 1000, id);
	fx_raw_exec(sql);
}

Test(sched, admission_refuses_past_max_wait_once_there_is_history)
{
	int64_t eta = -1, retry = -1;

	fx_env("queue.slots=1", "queue.max_wait=10", NULL);
	/* No history: no estimate, nothing refused. */
	fx_submit_job("j0", "u0", "upscaler");
	for (int i = 1; i <= 4; i++) {
		char id[16], u[16];
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(u, sizeof(u), "u%d", i);
		fx_submit_job(id, u, "upscaler");
	}
	cr_assert_eq(admit("v", "upscaler", "pro", NULL, &eta, &retry), 0);
	cr_assert_eq(eta, 0);

	/* Two runs of 4 s: with 4 queued and 1 slot the estimate is 20 s. */
	fx_answer_submit(0, PROVIDER_OK, "t0");
	ran_for("j0", 4);
	cr_assert_eq(webhook("tok_j0", "t0", NULL), SCHED_OK);
	fx_answer_submit(1, PROVIDER_OK, "t1");
	ran_for("j1", 4);
	cr_assert_eq(webhook("tok_j1", "t1", NULL), SCHED_OK);
	fx_spin(1100); /* "no history" is read again after a second */
	cr_assert_eq(fx_jobs_in(JOB_QUEUED), 2);
	cr_assert_eq(admit("v", "upscaler", "pro", NULL, &eta, &retry), 1);
	/* (2 queued / 1 slot + 1) rounds of 4 s (and the ms they took) */
	cr_assert(eta == 12 || eta == 13, "eta %lld", (long long)eta);
	cr_assert_eq(retry, eta - 10);

	/* A repeated Idempotency-Key of the user's goes on: its submit
	 * answers the first job. */
	struct job j;
	fx_uploads_for("k");
	struct job_new in = {.id = "jk",
	    .user_id = "k",
	    .tool = "upscaler",
	    .variant = "pro",
	    .inputs = fx_inputs_for("upscaler", "k"),
	    .cost = 10,
	    .idem_key = "key-1",
	    .webhook_token = "tok_jk"};
	int64_t balance;
	cr_assert_eq(sched_submit(fx.sc, &in, &j, &balance), SCHED_OK);
	job_cleanup(&j);
	json_decref((json_t *)in.inputs);
	cr_assert_eq(admit("k", "upscaler", "pro", "key-1", &eta, &retry), 0);
	cr_assert_eq(admit("k", "upscaler", "pro", "key-2", &eta, &retry), 1);

	/* Another tool without history: nothing refused. */
	cr_assert_eq(admit("v", "veste_ai", NULL, NULL, &eta, &retry), 0);
}

Test(sched, admission_uses_the_variant_then_the_tool)
{
	int64_t eta = -1, retry = -1;

	fx_env("queue.slots=1", "queue.max_wait=100", NULL);
	fx_run_job("j0", "u0", 0, "t0"); /* variant pro */
	ran_for("j0", 30);
	cr_assert_eq(webhook("tok_j0", "t0", NULL), SCHED_OK);
	fx_submit_job("j1", "u1", "upscaler"); /* starts: nothing queued */
	cr_assert_eq(admit("v", "upscaler", "pro", NULL, &eta, &retry), 0);
	cr_assert(eta == 30 || eta == 31, "one round of the only slot: %lld",
	    (long long)eta);
	/* A variant with no runs of its own: the tool's runs. */
	cr_assert_eq(admit("v", "upscaler", "standard", NULL, &eta, &retry), 0);
	cr_assert(eta == 30 || eta == 31);
	/* Past max_wait: four queued make five rounds. */
	for (int i = 2; i <= 5; i++) {
		char id[16], u[16];
		snprintf(id, sizeof(id), "j%d", i);
		snprintf(u, sizeof(u), "u%d", i);
		fx_submit_job(id, u, "upscaler");
	}
	cr_assert_eq(admit("v", "upscaler", "standard", NULL, &eta, &retry), 1);
	cr_assert(eta >= 150 && eta <= 152, "%lld", (long long)eta);
}

Test(sched, admission_is_off_with_max_wait_zero)
{
	int64_t eta = -1, retry = -1;

	fx_env("queue.slots=1", "queue.max_wait=0", NULL);
	fx_run_job("j0", "u0", 0, "t0");
	ran_for("j0", 3000);
	cr_assert_eq(webhook("tok_j0", "t0", NULL), SCHED_OK);
	fx_submit_job("j1", "u1", "upscaler");
	fx_submit_job("j2", "u2", "upscaler");
	cr_assert_eq(admit("v", "upscaler", "pro", NULL, &eta, &retry), 0);
}

Test(sched, a_job_waiting_on_an_account_that_goes_down_is_not_sent_there)
{
	accounts_env(1, 1, "runninghub.down_for=60");
	fx_submit_job("j1", "u1", "upscaler"); /* a1 */
	fx_submit_job("j2", "u2", "upscaler"); /* a2 */
	acct_answer(1, FX_SUBMIT, 0, PROVIDER_OK, 0, "t2", 0);
	acct_answer(0, FX_SUBMIT, 0, PROVIDER_BUSY, 421, "TASK_QUEUE_MAXED", 0);
	/* a1's status says its key expired: a1 is down. */
	FX_SPIN_UNTIL(acct_ncalls(0, FX_TASKS) == 1, 1000);
	acct_answer(
	    0, FX_TASKS, 0, PROVIDER_ACCOUNT, 802, "APIKEY_UNAUTHORIZED", 0);
	/* j1's retry comes: not to a1, and a2 is full: it waits. */
	fx_spin(2200);
	cr_assert_eq(acct_ncalls(0, FX_SUBMIT), 1);
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 1);
	fx_assert_status("j1", JOB_STARTING);
	/* a2 frees: j1 moves there. */
	cr_assert_eq(webhook("tok_j2", "t2", NULL), SCHED_OK);
	assert_account("j1", "a2");
	cr_assert_eq(acct_ncalls(1, FX_SUBMIT), 2);
}
