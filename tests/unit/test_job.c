/*
 * test_job.c — job states and the job's JSON, exactly as docs/api.md §3 shows
 * it: the same keys, null where nothing is set, and no private fields.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "util.h"

/* Every key of a job in docs/api.md §3, and nothing else. */
static const char *const api_keys[] = {"id", "user_id", "tool", "variant",
    "status", "position", "inputs", "outputs", "error", "cost",
    "credits_charged", "credits_refunded", "provider_task_id", "session_id",
    "created_at", "started_at", "finished_at", "updated_at", NULL};

static const struct {
	enum job_status s;
	const char *name;
	int terminal, active;
} states[] = {
    {JOB_QUEUED, "queued", 0, 1},
    {JOB_STARTING, "starting", 0, 1},
    {JOB_RUNNING, "running", 0, 1},
    {JOB_COMPLETED, "completed", 1, 0},
    {JOB_FAILED, "failed", 1, 0},
    {JOB_CANCELLED, "cancelled", 1, 0},
};

#define NSTATES (sizeof(states) / sizeof(states[0]))

/* A queued job with every field set, private ones included. */
static void
full_job(struct job *j)
{
	job_init(j);
	j->seq = 17;
	j->id = xstrdup("job_0123456789abcdef01234567");
	j->user_id = xstrdup("alice");
	j->tool = xstrdup("upscaler");
	j->variant = xstrdup("pro");
	j->status = JOB_QUEUED;
	j->position = 2;
	j->inputs =
	    json_pack("{s:s, s:i}", "image", "upl_1", "resolution", 4096);
	j->outputs = json_array();
	j->cost = 10;
	j->charged = 1;
	j->webhook_token = xstrdup("whsecret-token-value");
	j->idem_key = xstrdup("idem-key-value");
	j->session_id = xstrdup("tab-1");
	j->created_at = 1764405951123;
	j->updated_at = 1764405952000;
}

Test(job_status, names_round_trip)
{
	for (size_t i = 0; i < NSTATES; i++) {
		enum job_status s = JOB_FAILED;

		cr_expect_str_eq(job_status_name(states[i].s), states[i].name);
		cr_expect_eq(job_status_parse(states[i].name, &s), 0);
		cr_expect_eq(s, states[i].s);
	}
}

Test(job_status, unknown)
{
	enum job_status s = JOB_RUNNING;

	cr_expect_eq(job_status_parse("done", &s), -1);
	cr_expect_eq(job_status_parse("", &s), -1);
	cr_expect_eq(job_status_parse("Queued", &s), -1);
	cr_expect_eq(job_status_parse("queued ", &s), -1);
	cr_expect_eq(s, JOB_RUNNING);
	cr_expect_not_null(job_status_name((enum job_status)99));
}

Test(job_status, terminal_and_active)
{
	for (size_t i = 0; i < NSTATES; i++) {
		cr_expect_eq(job_status_terminal(states[i].s),
		    states[i].terminal, "%s", states[i].name);
		cr_expect_eq(job_status_active(states[i].s), states[i].active,
		    "%s", states[i].name);
	}
}

Test(job_json, exact_keys_of_a_queued_job)
{
	struct job j;
	json_t *o;
	size_t n = 0;

	full_job(&j);
	o = job_to_json(&j);
	for (size_t i = 0; api_keys[i] != NULL; i++, n++)
		cr_expect_not_null(
		    json_object_get(o, api_keys[i]), "no %s", api_keys[i]);
	cr_expect_eq(json_object_size(o), n, "extra keys in the job JSON");
	cr_expect_str_eq(json_string_value(json_object_get(o, "id")), j.id);
	cr_expect_str_eq(
	    json_string_value(json_object_get(o, "user_id")), "alice");
	cr_expect_str_eq(
	    json_string_value(json_object_get(o, "tool")), "upscaler");
	cr_expect_str_eq(
	    json_string_value(json_object_get(o, "variant")), "pro");
	cr_expect_str_eq(
	    json_string_value(json_object_get(o, "status")), "queued");
	cr_expect_eq(json_integer_value(json_object_get(o, "position")), 2);
	cr_expect(json_equal(json_object_get(o, "inputs"), j.inputs));
	cr_expect(json_is_array(json_object_get(o, "outputs")));
	cr_expect(json_is_null(json_object_get(o, "error")));
	cr_expect_eq(json_integer_value(json_object_get(o, "cost")), 10);
	cr_expect(json_is_true(json_object_get(o, "credits_charged")));
	cr_expect(json_is_false(json_object_get(o, "credits_refunded")));
	cr_expect(json_is_null(json_object_get(o, "provider_task_id")));
	cr_expect_str_eq(
	    json_string_value(json_object_get(o, "session_id")), "tab-1");
	cr_expect_str_eq(json_string_value(json_object_get(o, "created_at")),
	    "2025-11-29T08:45:51.123Z");
	cr_expect(json_is_null(json_object_get(o, "started_at")));
	cr_expect(json_is_null(json_object_get(o, "finished_at")));
	cr_expect_str_eq(json_string_value(json_object_get(o, "updated_at")),
	    "2025-11-29T08:45:52.000Z");
	json_decref(o);
	job_cleanup(&j);
}

Test(job_json, no_private_fields)
{
	struct job j;
	json_t *o;
	char *text;

	full_job(&j);
	o = job_to_json(&j);
	text = json_dumps(o, JSON_COMPACT);
	cr_expect_null(strstr(text, "whsecret-token-value"), "%s", text);
	cr_expect_null(strstr(text, "idem-key-value"), "%s", text);
	cr_expect_null(json_object_get(o, "webhook_token"));
	cr_expect_null(json_object_get(o, "seq"));
	free(text);
	json_decref(o);
	job_cleanup(&j);
}

Test(job_json, position_null_unless_queued)
{
	struct job j;

	full_job(&j);
	for (size_t i = 0; i < NSTATES; i++) {
		json_t *o;

		j.status = states[i].s;
		o = job_to_json(&j);
		if (states[i].s == JOB_QUEUED)
			cr_expect_eq(
			    json_integer_value(json_object_get(o, "position")),
			    2);
		else
			cr_expect(json_is_null(json_object_get(o, "position")),
			    "%s", states[i].name);
		json_decref(o);
	}
	job_cleanup(&j);
}

Test(job_json, error_object_when_failed)
{
	struct job j;
	json_t *o, *err;

	full_job(&j);
	j.status = JOB_FAILED;
	j.error_code = xstrdup(JOB_ERR_PROVIDER);
	j.error_message = xstrdup("out of GPU memory");
	j.refunded = 1;
	j.provider_task_id = xstrdup("190283");
	j.started_at = 1764405953000;
	j.finished_at = 1764405954000;
	o = job_to_json(&j);
	err = json_object_get(o, "error");
	cr_assert(json_is_object(err));
	cr_expect_eq(json_object_size(err), 2);
	cr_expect_str_eq(
	    json_string_value(json_object_get(err, "code")), "provider_error");
	cr_expect_str_eq(json_string_value(json_object_get(err, "message")),
	    "out of GPU memory");
	cr_expect(json_is_true(json_object_get(o, "credits_refunded")));
	cr_expect_str_eq(
	    json_string_value(json_object_get(o, "provider_task_id")),
	    "190283");
	cr_expect_str_eq(json_string_value(json_object_get(o, "finished_at")),
	    "2025-11-29T08:45:54.000Z");
	json_decref(o);
	job_cleanup(&j);
}

Test(job_json, error_without_message_is_still_a_string)
{
	struct job j;
	json_t *o;

	full_job(&j);
	j.status = JOB_CANCELLED;
	j.error_code = xstrdup(JOB_ERR_CANCELLED);
	o = job_to_json(&j);
	cr_expect_str_eq(json_string_value(json_object_get(
	                     json_object_get(o, "error"), "message")),
	    "");
	json_decref(o);
	job_cleanup(&j);
}

Test(job_json, absent_fields_are_null_or_empty)
{
	struct job j;
	json_t *o;

	job_init(&j);
	j.id = xstrdup("job_1");
	j.user_id = xstrdup("bob");
	j.tool = xstrdup("pose");
	j.status = JOB_RUNNING;
	o = job_to_json(&j);
	cr_expect(json_is_null(json_object_get(o, "variant")));
	cr_expect(json_is_null(json_object_get(o, "session_id")));
	cr_expect(json_is_null(json_object_get(o, "created_at")));
	cr_expect_eq(json_object_size(json_object_get(o, "inputs")), 0);
	cr_expect(json_is_object(json_object_get(o, "inputs")));
	cr_expect_eq(json_array_size(json_object_get(o, "outputs")), 0);
	cr_expect(json_is_array(json_object_get(o, "outputs")));
	json_decref(o);
	job_cleanup(&j);
}

/* The JSON holds its own references: it outlives the job. */
Test(job_json, outlives_the_job)
{
	struct job j;
	json_t *o;

	full_job(&j);
	o = job_to_json(&j);
	job_cleanup(&j);
	cr_expect_str_eq(json_string_value(json_object_get(
	                     json_object_get(o, "inputs"), "image")),
	    "upl_1");
	json_decref(o);
}

Test(job_list, push_and_json)
{
	struct job_list l = {0};
	json_t *a;

	for (int i = 0; i < 20; i++) {
		struct job *j = job_list_push(&l);
		cr_assert_null(j->id);
		j->id = xasprintf("job_%d", i);
		j->user_id = xstrdup("alice");
		j->tool = xstrdup("upscaler");
	}
	cr_expect_eq(l.n, 20);
	a = job_list_to_json(&l);
	cr_expect_eq(json_array_size(a), 20);
	cr_expect_str_eq(
	    json_string_value(json_object_get(json_array_get(a, 19), "id")),
	    "job_19");
	json_decref(a);
	job_list_cleanup(&l);
	cr_expect_eq(l.n, 0);
	cr_expect_null(l.v);
}

/* ---- the stored text, read and re-placed without parsing ------------ */

/* The job's text as the store keeps it. */
static char *
stored_text(struct job *j)
{
	json_t *o = job_to_json(j);
	char *t = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return t;
}

Test(job_text, members_are_the_jobs_own)
{
	struct job j;
	char *t;

	full_job(&j);
	/* Strings that look like members must not be taken for them. */
	free(j.user_id);
	j.user_id = xstrdup("x\",\"status\":\"completed\",\"position\":9");
	json_object_set_new(j.inputs, "position", json_integer(7));
	json_object_set_new(j.inputs, "tool", json_string("fake"));
	t = stored_text(&j);
	cr_assert_eq(strncmp(job_text_member(t, "status"), "\"queued\"", 8), 0);
	cr_assert_eq(
	    strncmp(job_text_member(t, "tool"), "\"upscaler\"", 10), 0);
	cr_assert_eq(strncmp(job_text_member(t, "position"), "2,", 2), 0);
	cr_assert_null(job_text_member(t, "nothing"));
	cr_assert_null(job_text_member("{\"a\":1}", "position"));
	free(t);
	job_cleanup(&j);
}

Test(job_text, at_position_is_job_to_json_at_that_place)
{
	struct job j;
	json_error_t err;

	full_job(&j);
	json_object_set_new(j.inputs, "position", json_integer(7));
	char *t = stored_text(&j);
	char *moved = job_text_at_position(t, 1234);
	j.position = 1234;
	json_t *want = job_to_json(&j);
	json_t *got = json_loads(moved, 0, &err);
	cr_assert_not_null(got, "%s: %s", moved, err.text);
	cr_assert(json_equal(want, got), "%s", moved);
	/* Only the job's own position changed: inputs kept theirs (above);
	 * a text without one is not re-placed. */
	cr_assert_null(job_text_at_position("{\"id\":\"x\"}", 3));
	json_decref(want);
	json_decref(got);
	free(moved);
	free(t);
	job_cleanup(&j);
}
