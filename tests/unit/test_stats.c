/*
 * test_stats.c — stats_by_tool over hand-built lists of finished jobs, with
 * the tools of the built-in configuration. Times are milliseconds; a job
 * made by fin() waited `wait` ms in the queue and ran `run` ms.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "config.h"
#include "job.h"
#include "stats.h"
#include "util.h"

#define T0 1700000000000LL

static struct config cfg;
static struct job_list done;
static json_t *out;
static int seq;

static void
setup(void)
{
	char err[256] = "";

	cr_assert_eq(
	    config_load(&cfg, "/nonexistent", 1, NULL, 0, err, sizeof(err)), 0,
	    "%s", err);
	cr_assert_not_null(tools_find(&cfg.tools, "upscaler"));
	cr_assert_not_null(tools_find(&cfg.tools, "video_upscaler"));
	memset(&done, 0, sizeof(done));
	out = NULL;
	seq = 0;
}

static void
teardown(void)
{
	json_decref(out);
	job_list_cleanup(&done);
	config_cleanup(&cfg);
}

TestSuite(stats, .init = setup, .fini = teardown);

/*
 * Append a finished job of tool with status s (and error code when not
 * NULL); wait < 0 means it never started. Jobs finish in the order added.
 */
static struct job *
fin(const char *tool, enum job_status s, const char *code, int64_t wait,
    int64_t run)
{
	struct job *j = job_list_push(&done);
	int64_t at = T0 + 1000000LL * ++seq;

	j->seq = seq;
	j->id = xasprintf("job_%d", seq);
	j->user_id = xstrdup("alice");
	j->tool = xstrdup(tool);
	j->status = s;
	j->cost = 10;
	j->charged = 1;
	if (code) {
		j->error_code = xstrdup(code);
		j->error_message = xasprintf("message %d", seq);
	}
	j->created_at = at;
	if (wait >= 0)
		j->started_at = at + wait;
	j->finished_at = (wait >= 0 ? j->started_at : at) + run;
	j->updated_at = j->finished_at;
	return j;
}

static void
run_stats(void)
{
	json_decref(out);
	out = stats_by_tool(&cfg.tools, &done);
	cr_assert(json_is_object(out));
	cr_assert(json_is_object(json_object_get(out, "tools")));
	cr_assert(json_is_array(json_object_get(out, "recent_failures")));
}

static json_t *
tool_stats(const char *tool)
{
	json_t *t = json_object_get(json_object_get(out, "tools"), tool);

	cr_assert(json_is_object(t), "no stats for %s", tool);
	return t;
}

static json_int_t
count(const char *tool, const char *key)
{
	json_t *v = json_object_get(tool_stats(tool), key);

	cr_assert(json_is_integer(v), "%s.%s is not an integer", tool, key);
	return json_integer_value(v);
}

static void
expect_counts(const char *tool, json_int_t completed, json_int_t failed,
    json_int_t cancelled, json_int_t timeout)
{
	cr_assert_eq(count(tool, "completed"), completed, "%s", tool);
	cr_assert_eq(count(tool, "failed"), failed, "%s", tool);
	cr_assert_eq(count(tool, "cancelled"), cancelled, "%s", tool);
	cr_assert_eq(count(tool, "timeout"), timeout, "%s", tool);
}

/* A median in seconds, or < 0 for null. */
static double
median_of(const char *tool, const char *key)
{
	json_t *v = json_object_get(tool_stats(tool), key);

	cr_assert_not_null(v, "%s.%s missing", tool, key);
	if (json_is_null(v))
		return -1;
	cr_assert(json_is_number(v), "%s.%s is not a number", tool, key);
	return json_number_value(v);
}

static void
expect_median(const char *tool, const char *key, double want)
{
	double got = median_of(tool, key);

	cr_assert_float_eq(
	    got, want, 1e-9, "%s.%s: %g, want %g", tool, key, got, want);
}

static json_t *
failures(void)
{
	return json_object_get(out, "recent_failures");
}

/* ---- counts --------------------------------------------------------- */

Test(stats, every_configured_tool_listed_with_zeros)
{
	json_t *tools, *t;
	const char *name;

	run_stats();
	tools = json_object_get(out, "tools");
	cr_assert_eq(json_object_size(tools), cfg.tools.n);
	for (size_t i = 0; i < cfg.tools.n; i++) {
		name = cfg.tools.v[i].name;
		t = json_object_get(tools, name);
		cr_assert(json_is_object(t), "%s missing", name);
		cr_assert_eq(json_object_size(t), 9, "%s", name);
		expect_counts(name, 0, 0, 0, 0);
		cr_assert(json_is_null(json_object_get(t, "wait_p50_s")));
		cr_assert(json_is_null(json_object_get(t, "run_p50_s")));
	}
	cr_assert_eq(json_array_size(failures()), 0);
}

Test(stats, counts_per_tool_and_status)
{
	fin("upscaler", JOB_COMPLETED, NULL, 100, 1000);
	fin("upscaler", JOB_COMPLETED, NULL, 100, 1000);
	fin("upscaler", JOB_FAILED, JOB_ERR_PROVIDER, 100, 1000);
	fin("upscaler", JOB_FAILED, JOB_ERR_REJECTED, 100, 0);
	fin("upscaler", JOB_FAILED, JOB_ERR_TIMEOUT, 100, 600000);
	fin("upscaler", JOB_CANCELLED, JOB_ERR_CANCELLED, -1, 0);
	fin("upscaler", JOB_CANCELLED, JOB_ERR_SESSION, -1, 0);
	fin("upscaler", JOB_CANCELLED, JOB_ERR_ADMIN, 10, 0);
	fin("veste_ai", JOB_FAILED, JOB_ERR_TIMEOUT, -1, 600000);
	fin("veste_ai", JOB_FAILED, JOB_ERR_TIMEOUT, 5, 600000);
	fin("pose_changer", JOB_COMPLETED, NULL, 1, 2);
	run_stats();
	expect_counts("upscaler", 2, 2, 3, 1);
	expect_counts("veste_ai", 0, 0, 0, 2);
	expect_counts("pose_changer", 1, 0, 0, 0);
	expect_counts("video_upscaler", 0, 0, 0, 0);
}

Test(stats, failed_without_code_is_failed)
{
	fin("upscaler", JOB_FAILED, NULL, 100, 1000);
	run_stats();
	expect_counts("upscaler", 0, 1, 0, 0);
}

Test(stats, jobs_of_unknown_tools_are_left_out)
{
	fin("retired_tool", JOB_COMPLETED, NULL, 100, 1000);
	fin("upscaler", JOB_COMPLETED, NULL, 100, 1000);
	run_stats();
	cr_assert_null(
	    json_object_get(json_object_get(out, "tools"), "retired_tool"));
	expect_counts("upscaler", 1, 0, 0, 0);
}

/* ---- medians -------------------------------------------------------- */

Test(stats, medians_of_an_odd_count)
{
	/* Added out of order: the median is of the sorted values. */
	fin("upscaler", JOB_COMPLETED, NULL, 5000, 30000);
	fin("upscaler", JOB_COMPLETED, NULL, 1000, 10000);
	fin("upscaler", JOB_COMPLETED, NULL, 3000, 90000);
	run_stats();
	expect_median("upscaler", "wait_p50_s", 3.0);
	expect_median("upscaler", "run_p50_s", 30.0);
}

Test(stats, medians_of_an_even_count_average_the_middle_two)
{
	fin("upscaler", JOB_COMPLETED, NULL, 4000, 7000);
	fin("upscaler", JOB_COMPLETED, NULL, 1000, 1000);
	fin("upscaler", JOB_COMPLETED, NULL, 2000, 2500);
	fin("upscaler", JOB_COMPLETED, NULL, 9000, 60000);
	run_stats();
	expect_median("upscaler", "wait_p50_s", 3.0);
	expect_median("upscaler", "run_p50_s", 4.75);
}

Test(stats, single_sample_and_fractions_of_a_second)
{
	fin("pose_changer", JOB_COMPLETED, NULL, 250, 1500);
	run_stats();
	expect_median("pose_changer", "wait_p50_s", 0.25);
	expect_median("pose_changer", "run_p50_s", 1.5);
}

Test(stats, run_median_counts_completed_jobs_only)
{
	/* Every started job waited; only completed ones ran to the end. */
	fin("upscaler", JOB_COMPLETED, NULL, 2000, 10000);
	fin("upscaler", JOB_FAILED, JOB_ERR_PROVIDER, 4000, 500000);
	fin("upscaler", JOB_FAILED, JOB_ERR_TIMEOUT, 6000, 600000);
	fin("upscaler", JOB_CANCELLED, JOB_ERR_ADMIN, 8000, 700000);
	run_stats();
	expect_median("upscaler", "wait_p50_s", 5.0);
	expect_median("upscaler", "run_p50_s", 10.0);
}

Test(stats, jobs_that_never_started_have_no_wait)
{
	fin("upscaler", JOB_CANCELLED, JOB_ERR_SESSION, -1, 0);
	fin("upscaler", JOB_FAILED, JOB_ERR_TIMEOUT, -1, 600000);
	run_stats();
	expect_counts("upscaler", 0, 0, 1, 1);
	cr_assert_lt(median_of("upscaler", "wait_p50_s"), 0, "want null");
	cr_assert_lt(median_of("upscaler", "run_p50_s"), 0, "want null");
}

Test(stats, medians_are_per_tool)
{
	fin("upscaler", JOB_COMPLETED, NULL, 1000, 2000);
	fin("veste_ai", JOB_COMPLETED, NULL, 7000, 9000);
	run_stats();
	expect_median("upscaler", "wait_p50_s", 1.0);
	expect_median("upscaler", "run_p50_s", 2.0);
	expect_median("veste_ai", "wait_p50_s", 7.0);
	expect_median("veste_ai", "run_p50_s", 9.0);
	cr_assert_lt(median_of("pose_changer", "run_p50_s"), 0, "want null");
}

Test(stats, clock_skew_gives_no_negative_sample)
{
	struct job *j = fin("upscaler", JOB_COMPLETED, NULL, 1000, 1000);

	/* Started before it was created, finished before it started. */
	j->started_at = j->created_at - 5000;
	j->finished_at = j->started_at - 1;
	run_stats();
	expect_counts("upscaler", 1, 0, 0, 0);
	cr_assert_lt(median_of("upscaler", "wait_p50_s"), 0, "want null");
	cr_assert_lt(median_of("upscaler", "run_p50_s"), 0, "want null");
}

/* ---- recent failures ------------------------------------------------ */

Test(stats, recent_failures_newest_first_with_messages)
{
	fin("upscaler", JOB_FAILED, JOB_ERR_PROVIDER, 100, 1000);  /* job_1 */
	fin("upscaler", JOB_COMPLETED, NULL, 100, 1000);           /* job_2 */
	fin("veste_ai", JOB_FAILED, JOB_ERR_REJECTED, 100, 1000);  /* job_3 */
	fin("upscaler", JOB_CANCELLED, JOB_ERR_ADMIN, 100, 0);     /* job_4 */
	fin("pose_changer", JOB_FAILED, JOB_ERR_TIMEOUT, 1, 9000); /* job_5 */
	done.v[4].account = xstrdup("cn");
	run_stats();

	json_t *a = failures();
	/* The admin's view: each with its account, null when it had none. */
	cr_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(a, 0), "account")),
	    "cn");
	cr_assert(
	    json_is_null(json_object_get(json_array_get(a, 1), "account")));
	static const char *const want[] = {"job_5", "job_3", "job_1"};
	static const char *const codes[] = {
	    JOB_ERR_TIMEOUT, JOB_ERR_REJECTED, JOB_ERR_PROVIDER};
	static const char *const msgs[] = {
	    "message 5", "message 3", "message 1"};

	cr_assert_eq(json_array_size(a), 3);
	for (size_t i = 0; i < 3; i++) {
		json_t *j = json_array_get(a, i);
		json_t *err = json_object_get(j, "error");
		cr_assert_str_eq(
		    json_string_value(json_object_get(j, "id")), want[i]);
		cr_assert_str_eq(
		    json_string_value(json_object_get(j, "status")), "failed");
		cr_assert_str_eq(
		    json_string_value(json_object_get(err, "code")), codes[i]);
		cr_assert_str_eq(
		    json_string_value(json_object_get(err, "message")),
		    msgs[i]);
	}
}

Test(stats, recent_failures_at_most_the_newest_limit)
{
	char id[32];
	int total = STATS_FAILURES + 7;

	for (int i = 0; i < total; i++) {
		fin("upscaler", JOB_FAILED, JOB_ERR_PROVIDER, 100, 1000);
		fin("upscaler", JOB_COMPLETED, NULL, 100, 1000);
	}
	run_stats();
	expect_counts("upscaler", total, total, 0, 0);

	json_t *a = failures();
	cr_assert_eq(json_array_size(a), STATS_FAILURES);
	for (int i = 0; i < STATS_FAILURES; i++) {
		/* Failed jobs are the odd seqs, the newest is 2 * total - 1. */
		snprintf(id, sizeof(id), "job_%d", 2 * (total - i) - 1);
		cr_assert_str_eq(json_string_value(json_object_get(
		                     json_array_get(a, (size_t)i), "id")),
		    id);
	}
}

Test(stats, the_input_list_is_left_as_it_was)
{
	fin("upscaler", JOB_COMPLETED, NULL, 3000, 1000);
	fin("upscaler", JOB_COMPLETED, NULL, 1000, 3000);
	run_stats();
	cr_assert_eq(done.n, 2);
	cr_assert_str_eq(done.v[0].id, "job_1");
	cr_assert_eq(done.v[0].started_at - done.v[0].created_at, 3000);
	cr_assert_str_eq(done.v[1].id, "job_2");
}

/* ---- money: credits kept against what the provider charged ---------- */

static const char *
money_of(const char *tool)
{
	json_t *v = json_object_get(tool_stats(tool), "provider_money");

	cr_assert(json_is_string(v), "%s.provider_money is not a string", tool);
	return json_string_value(v);
}

Test(stats, idle_tools_have_no_money)
{
	run_stats();
	cr_assert_eq(count("upscaler", "credits_net"), 0);
	cr_assert_eq(count("upscaler", "provider_coins"), 0);
	cr_assert_str_eq(money_of("upscaler"), "0.00");
}

Test(stats, credits_net_is_charged_minus_refunded)
{
	struct job *j;

	fin("upscaler", JOB_COMPLETED, NULL, 1000, 2000); /* kept: 10 */
	j = fin("upscaler", JOB_COMPLETED, NULL, 1000, 2000);
	j->cost = 25; /* kept: 25 */
	j = fin("upscaler", JOB_FAILED, "provider_error", 1000, 2000);
	j->refunded = 1; /* given back */
	j = fin("upscaler", JOB_CANCELLED, "cancelled", -1, 0);
	j->refunded = 1;
	j = fin("upscaler", JOB_COMPLETED, NULL, 1000, 2000);
	j->charged = 0; /* a free job: nothing taken */
	fin("video_upscaler", JOB_COMPLETED, NULL, 1000, 2000);
	run_stats();
	cr_assert_eq(count("upscaler", "credits_net"), 35);
	cr_assert_eq(count("video_upscaler", "credits_net"), 10);
}

Test(stats, provider_cost_is_summed_exactly_per_tool)
{
	const char *monies[] = {"0.10", "0.10", "0.10", "0.125"};

	for (int i = 0; i < 4; i++) {
		struct job *j = fin("upscaler", JOB_COMPLETED, NULL, 10, 20);
		j->provider_cost = json_pack("{s:i, s:s, s:i}", "coins", 10,
		    "money", monies[i], "seconds", 2);
	}
	/* Only coins, only money, nothing, and money that does not read. */
	fin("video_upscaler", JOB_COMPLETED, NULL, 10, 20)->provider_cost =
	    json_pack("{s:i}", "coins", 7);
	fin("video_upscaler", JOB_COMPLETED, NULL, 10, 20)->provider_cost =
	    json_pack("{s:s}", "money", "1.5");
	fin("video_upscaler", JOB_COMPLETED, NULL, 10, 20);
	fin("video_upscaler", JOB_COMPLETED, NULL, 10, 20)->provider_cost =
	    json_pack("{s:s, s:i}", "money", "lots", "coins", 1);
	run_stats();
	cr_assert_eq(count("upscaler", "provider_coins"), 40);
	cr_assert_str_eq(money_of("upscaler"), "0.425");
	cr_assert_eq(count("video_upscaler", "provider_coins"), 8);
	cr_assert_str_eq(money_of("video_upscaler"), "1.50");
	cr_assert_str_eq(money_of("pose_changer"), "0.00");
}

Test(stats, a_thousand_tenths_make_a_hundred)
{
	for (int i = 0; i < 1000; i++)
		fin("upscaler", JOB_COMPLETED, NULL, 1, 1)->provider_cost =
		    json_pack("{s:s}", "money", "0.1");
	run_stats();
	cr_assert_str_eq(money_of("upscaler"), "100.00");
}
