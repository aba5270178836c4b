/*
 * fuzz_webhook.c — libFuzzer target for what RunningHub sends us: webhook
 * bodies (provider_parse_callback) and API answers (runninghub_classify,
 * runninghub_outcome), all attacker-shaped bytes.
 *
 * The provider is made once and never makes a call: parsing needs no
 * network. Each outcome must be complete for its state (a completed task
 * has an outputs array of {url, type} strings, a failed one a message).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "provider.h"
#include "runninghub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct provider *prov;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_webhook: %s\n", what);
	abort();
}

static void
check_outcome(const struct provider_outcome *o)
{
	size_t i;
	json_t *item;

	switch (o->state) {
	case TASK_COMPLETED:
		if (!json_is_array(o->outputs))
			fail("completed without an outputs array");
		json_array_foreach(o->outputs, i, item)
		{
			const char *url =
			    json_string_value(json_object_get(item, "url"));

			if (url == NULL || *url == '\0' ||
			    !json_is_string(json_object_get(item, "type")))
				fail("an output without url or type");
		}
		break;
	case TASK_FAILED:
		if (o->message == NULL || *o->message == '\0')
			fail("failed without a message");
		break;
	case TASK_RUNNING:
	case TASK_UNKNOWN:
		break;
	default:
		fail("outcome state out of range");
	}
}

static void
check_callback(const uint8_t *data, size_t size)
{
	struct provider_outcome out;
	char err[256];

	memset(err, 'x', sizeof err);
	if (provider_parse_callback(
	        prov, (const char *)data, size, &out, err, sizeof err) == 0) {
		if (out.task_id == NULL || out.task_id[0] == '\0')
			fail("a callback without a task id was accepted");
		check_outcome(&out);
	} else {
		if (memchr(err, '\0', sizeof err) == NULL || err[0] == '\0')
			fail("a refused callback without a reason");
		if (out.task_id || out.outputs || out.message)
			fail("a refused callback left an outcome behind");
	}
	provider_outcome_cleanup(&out);
}

static void
check_classify(long status, const uint8_t *data, size_t size)
{
	struct provider_result res;
	json_t *root = NULL, *data_member = NULL;

	runninghub_classify(
	    status, (const char *)data, size, &res, &root, &data_member);
	if (res.http_status != status)
		fail("classify lost the HTTP status");
	if (res.rc != PROVIDER_OK &&
	    (res.message == NULL || res.message[0] == '\0'))
		fail("a failure without a message");
	if (res.message != NULL)
		(void)strlen(res.message); /* alive while root is */
	if (res.rc == PROVIDER_OK && (status < 200 || status > 299))
		fail("OK from a non-2xx answer");
	if (data_member != NULL && !json_is_object(root))
		fail("data outside an envelope");
	json_decref(root);
}

static void
check_envelope(const uint8_t *data, size_t size)
{
	struct provider_outcome out;
	json_t *env = json_loadb((const char *)data, size, 0, NULL);

	memset(&out, 0, sizeof out);
	runninghub_outcome(env, &out);
	check_outcome(&out);
	provider_outcome_cleanup(&out);
	json_decref(env);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 421, 404, 500, 0};

	if (prov == NULL) {
		struct event_base *base = event_base_new();
		char err[256];

		prov = runninghub_new(
		    base, "http://127.0.0.1:9", "k", 1000, err, sizeof err);
		if (base == NULL || prov == NULL)
			fail(err);
	}
	check_callback(data, size);
	for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
		check_classify(statuses[i], data, size);
	check_envelope(data, size);
	return 0;
}
