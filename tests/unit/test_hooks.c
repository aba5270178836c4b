/*
 * test_hooks.c — the parts of a webhook the app checks: the Standard
 * Webhooks signature (the spec's own example), the body, and when a
 * failed delivery is tried again.
 */
#include <criterion/criterion.h>

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "hooks.h"
#include "util.h"

Test(hooks, the_signature_is_the_specs)
{
	/* whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, decoded. */
	unsigned char key[64];
	int n = EVP_DecodeBlock(
	    key, (const unsigned char *)"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 32);
	char *sig = hooks_sign(key, (size_t)n, "msg_p5jXN8AQM9LWM0D4loKWxJek",
	    1614265330, "{\"test\": 2432232314}");

	cr_assert_str_eq(
	    sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
	free(sig);
}

Test(hooks, the_body_carries_the_events_job_as_it_was)
{
	struct store_delivery d = {.event_id = 7,
	    .job_id = "job_1",
	    .status = "completed",
	    .data = "{\"id\":\"job_1\",\"status\":\"completed\"}",
	    .at = 1614265330000};
	char *body = hooks_body(&d);
	json_t *o = json_loads(body, 0, NULL);

	cr_assert_not_null(o, "%s", body);
	cr_assert_str_eq(
	    json_string_value(json_object_get(o, "type")), "job.completed");
	cr_assert_str_eq(json_string_value(json_object_get(o, "timestamp")),
	    "2021-02-25T15:02:10.000Z");
	cr_assert_str_eq(json_string_value(
	                     json_object_get(json_object_get(o, "data"), "id")),
	    "job_1");
	json_decref(o);
	free(body);
}

Test(hooks, retries_back_off_then_stop_after_a_day)
{
	int64_t at = 1000000, now = at;
	int64_t want[] = {5, 30, 120, 600, 3600, 3600};

	for (int i = 0; i < 6; i++)
		cr_assert_eq(hooks_next(at, i + 1, now, 0),
		    now + want[i] * 1000, "attempt %d", i + 1);
	/* The receiver may say when; within a second and an hour. */
	cr_assert_eq(hooks_next(at, 1, now, 1), now + 1000);
	cr_assert_eq(hooks_next(at, 1, now, 999999), now + 3600 * 1000);
	/* A day after the event, no more. */
	cr_assert_eq(
	    hooks_next(at, 30, at + 23 * 3600 * 1000LL + 1800000, 0), 0);
	cr_assert_neq(hooks_next(at, 30, at + 22 * 3600 * 1000LL, 0), 0);
}
