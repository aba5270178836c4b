/*
 * test_runninghub.c — the RunningHub provider: how answers are classified,
 * how outcomes and webhook bodies are read, and submit/poll/cancel end to
 * end against a fake RunningHub (an evhttp server on 127.0.0.1, port 0, in
 * the same event_base) that answers canned envelopes and records requests.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "provider.h"
#include "runninghub.h"

#define API_KEY "k-123"

/* ---- the fake RunningHub ---- */

struct fake_req {
	char path[128];
	char ctype[128];
	char *body;
};

struct fake_answer {
	const char *path;
	int status; /* 0: never answer */
	const char *body;
};

static struct event_base *base;
static struct evhttp *fake;
static int fake_port;
static struct fake_req reqs[16];
static int nreqs;
static struct fake_answer answers[8];
static int nanswers;

static void
answer(const char *path, int status, const char *body)
{
	answers[nanswers++] = (struct fake_answer){path, status, body};
}

static void
fake_handle(struct evhttp_request *req, void *arg)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const char *ct = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Content-Type");
	struct fake_req *r = &reqs[nreqs++];
	size_t len = evbuffer_get_length(in);

	snprintf(r->path, sizeof(r->path), "%s", evhttp_request_get_uri(req));
	snprintf(r->ctype, sizeof(r->ctype), "%s", ct != NULL ? ct : "");
	r->body = calloc(1, len + 1);
	evbuffer_remove(in, r->body, len);
	for (int i = 0; i < nanswers; i++) {
		struct evbuffer *out;

		if (strcmp(answers[i].path, r->path) != 0)
			continue;
		if (answers[i].status == 0)
			return; /* hang: let the client time out */
		out = evbuffer_new();
		evbuffer_add_printf(out, "%s", answers[i].body);
		evhttp_send_reply(req, answers[i].status, "Canned", out);
		evbuffer_free(out);
		return;
	}
	evhttp_send_error(req, 404, "no canned answer");
}

static void
setup(void)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);

	base = event_base_new();
	fake = evhttp_new(base);
	evhttp_set_gencb(fake, fake_handle, NULL);
	bs = evhttp_bind_socket_with_handle(fake, "127.0.0.1", 0);
	cr_assert_not_null(bs);
	getsockname(
	    evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &slen);
	fake_port = ntohs(sin.sin_port);
}

static void
teardown(void)
{
	for (int i = 0; i < nreqs; i++)
		free(reqs[i].body);
	evhttp_free(fake);
	event_base_free(base);
}

/* A port where nothing listens. */
static int
closed_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t slen = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &slen);
	close(fd);
	return ntohs(sin.sin_port);
}

static struct provider *
new_provider(int port, long timeout_ms)
{
	char url[64], err[128];
	struct provider *p;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	p = runninghub_new(base, url, API_KEY, timeout_ms, err, sizeof(err));
	cr_assert_not_null(p, "%s", err);
	return p;
}

/* ---- what the callbacks saw ---- */

struct seen {
	int calls;
	enum provider_rc rc;
	char *task_id;
	char *message;
	long http_status, code;
	long count;
	char *coins;
	struct provider_outcome out;
};

static struct seen seen;

static void
on_result(void *arg, const struct provider_result *res)
{
	seen.calls++;
	seen.rc = res->rc;
	seen.task_id = res->task_id ? strdup(res->task_id) : NULL;
	seen.message = res->message ? strdup(res->message) : NULL;
	seen.http_status = res->http_status;
	seen.code = res->code;
	seen.count = res->count;
	seen.coins = res->coins ? strdup(res->coins) : NULL;
}

static void
on_poll(void *arg, const struct provider_outcome *out)
{
	seen.calls++;
	seen.out.state = out->state;
	seen.out.task_id = out->task_id ? strdup(out->task_id) : NULL;
	seen.out.message = out->message ? strdup(out->message) : NULL;
	seen.out.outputs = json_deep_copy(out->outputs);
	seen.out.cost = json_deep_copy(out->cost);
}

static void
seen_cleanup(void)
{
	free(seen.task_id);
	free(seen.message);
	free(seen.coins);
	provider_outcome_cleanup(&seen.out);
	memset(&seen, 0, sizeof(seen));
}

static void
deadline(evutil_socket_t fd, short what, void *arg)
{
	*(int *)arg = 1;
}

/* Run the loop until *flag turns non-zero or ms pass. */
static void
run_until(const int *flag, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	int expired = 0;
	struct event *t = evtimer_new(base, deadline, &expired);

	evtimer_add(t, &tv);
	while (!*flag && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
}

static void
finish(struct provider *p)
{
	cr_assert_eq(seen.calls, 1, "the callback ran %d times", seen.calls);
	cr_expect_eq(provider_pending(p), 0);
	provider_free(p);
}

/* ---- classification ---- */

struct case_ {
	long http;
	const char *body;
	enum provider_rc rc;
	long code;
	const char *message; /* NULL: don't care */
};

static const struct case_ cases[] = {
    {200, "{\"code\":0,\"msg\":\"success\",\"data\":{\"taskId\":\"1\"}}",
        PROVIDER_OK, 0, NULL},
    {200, "{\"code\":421,\"msg\":\"TASK_QUEUE_MAXED\",\"data\":null}",
        PROVIDER_BUSY, 421, "TASK_QUEUE_MAXED"},
    {200, "{\"code\":415,\"msg\":\"TASK_INSTANCE_MAXED\",\"data\":null}",
        PROVIDER_BUSY, 415, "TASK_INSTANCE_MAXED"},
    {200, "{\"code\":814,\"msg\":\"PERSONAL_QUEUE_COUNT_LIMIT\"}",
        PROVIDER_BUSY, 814, "PERSONAL_QUEUE_COUNT_LIMIT"},
    {200, "{\"code\":1003,\"msg\":\"Rate limit exceeded\"}", PROVIDER_BUSY,
        1003, "Rate limit exceeded"},
    {200, "{\"code\":1011,\"msg\":\"System is currently busy\"}", PROVIDER_BUSY,
        1011, "System is currently busy"},
    {200,
        "{\"code\":416,\"msg\":\"TASK_CREATE_FAILED_BY_NOT_ENOUGH_"
        "WALLET\"}",
        PROVIDER_ACCOUNT, 416, "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET"},
    {200, "{\"code\":801,\"msg\":\"APIKEY_UNSUPPORTED_FREE_USER\"}",
        PROVIDER_ACCOUNT, 801, "APIKEY_UNSUPPORTED_FREE_USER"},
    {200, "{\"code\":802,\"msg\":\"APIKEY_UNAUTHORIZED\"}", PROVIDER_ACCOUNT,
        802, "APIKEY_UNAUTHORIZED"},
    {200, "{\"code\":812,\"msg\":\"CORPAPIKEY_INSUFFICIENT_FUNDS\"}",
        PROVIDER_ACCOUNT, 812, "CORPAPIKEY_INSUFFICIENT_FUNDS"},
    {200, "{\"code\":433,\"msg\":\"VALIDATE_PROMPT_FAILED\"}",
        PROVIDER_REJECTED, 433, "VALIDATE_PROMPT_FAILED"},
    {200,
        "{\"code\":435,\"msg\":\"TASK_USER_EXCLAPI_INSTANCE_NOT_"
        "FOUND\"}",
        PROVIDER_REJECTED, 435, "TASK_USER_EXCLAPI_INSTANCE_NOT_FOUND"},
    {421, "", PROVIDER_BUSY, 0, "HTTP 421"},
    {429, "slow down", PROVIDER_BUSY, 0, "slow down"},
    {500, "<html>oops</html>", PROVIDER_RETRY, 0, "<html>oops</html>"},
    {404, "  not found here\n", PROVIDER_REJECTED, 0, "not found here"},
    {404, "", PROVIDER_REJECTED, 0, "HTTP 404"},
    {200, "{\"code\":803,\"msg\":\"APIKEY_INVALID_NODE_INFO\"}",
        PROVIDER_REJECTED, 803, "APIKEY_INVALID_NODE_INFO"},
    {400, "{\"code\":1,\"msg\":\"bad webapp\"}", PROVIDER_REJECTED, 1,
        "bad webapp"},
    {200, "<html>garbage", PROVIDER_RETRY, 0, NULL},
    {200, "[1,2]", PROVIDER_RETRY, 0, NULL},
    {200, "", PROVIDER_RETRY, 0, NULL},
};

Test(classify, table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct case_ *c = &cases[i];
		struct provider_result res;
		json_t *root, *data;

		runninghub_classify(
		    c->http, c->body, strlen(c->body), &res, &root, &data);
		cr_expect_eq(res.rc, c->rc, "case %zu: rc %d", i, res.rc);
		cr_expect_eq(
		    res.code, c->code, "case %zu: code %ld", i, res.code);
		cr_expect_eq(res.http_status, c->http, "case %zu", i);
		if (c->message != NULL)
			cr_expect_str_eq(
			    res.message, c->message, "case %zu", i);
		if (c->rc != PROVIDER_OK)
			cr_expect_not_null(res.message, "case %zu", i);
		json_decref(root);
	}
}

Test(classify, one_code_for_metrics)
{
	struct provider_result ok = {.rc = PROVIDER_OK, .http_status = 200};
	struct provider_result biz = {
	    .rc = PROVIDER_ACCOUNT, .http_status = 200, .code = 416};
	struct provider_result http = {
	    .rc = PROVIDER_RETRY, .http_status = 502};
	struct provider_result none = {.rc = PROVIDER_RETRY};

	cr_expect_eq(provider_result_code(&ok), 0);
	cr_expect_eq(provider_result_code(&biz), 416);
	cr_expect_eq(provider_result_code(&http), 502);
	cr_expect_eq(provider_result_code(&none), -1, "never 0: no answer");
}

Test(classify, ok_gives_data)
{
	const char *b = "{\"code\":0,\"msg\":\"success\",\"data\":"
	                "{\"fileName\":\"api/x.png\"}}";
	struct provider_result res;
	json_t *root, *data;

	runninghub_classify(200, b, strlen(b), &res, &root, &data);
	cr_assert_eq(res.rc, PROVIDER_OK);
	cr_expect_str_eq(
	    json_string_value(json_object_get(data, "fileName")), "api/x.png");
	json_decref(root);
}

Test(classify, long_error_body_is_trimmed)
{
	char body[1000];
	struct provider_result res;
	json_t *root, *data;

	memset(body, 'x', sizeof(body));
	runninghub_classify(403, body, sizeof(body), &res, &root, &data);
	cr_expect_eq(res.rc, PROVIDER_REJECTED);
	cr_expect_eq(strlen(res.message), 300);
	json_decref(root);
}

/* ---- outcomes ---- */

static void
outcome_of(const char *text, struct provider_outcome *out)
{
	json_t *env = json_loads(text, 0, NULL);

	memset(out, 0, sizeof(*out));
	runninghub_outcome(env, out);
	json_decref(env);
}

Test(outcome, success_with_two_outputs)
{
	struct provider_outcome out;

	outcome_of("{\"code\":0,\"msg\":\"success\",\"data\":["
	           "{\"fileUrl\":\"https://x/a.png\",\"fileType\":\"png\","
	           "\"taskCostTime\":\"12\",\"nodeId\":\"9\"},"
	           "{\"fileType\":\"txt\"},"
	           "{\"fileUrl\":\"https://x/b.mp4\",\"fileType\":\"mp4\"}]}",
	    &out);
	cr_assert_eq(out.state, TASK_COMPLETED);
	cr_assert_eq(json_array_size(out.outputs), 2);
	cr_expect_str_eq(json_string_value(json_object_get(
	                     json_array_get(out.outputs, 0), "url")),
	    "https://x/a.png");
	cr_expect_str_eq(json_string_value(json_object_get(
	                     json_array_get(out.outputs, 1), "type")),
	    "mp4");
	cr_expect_null(out.message);
	provider_outcome_cleanup(&out);
}

/* RunningHub's outputs say what the task cost, as strings. */
Test(outcome, cost_of_the_task_from_its_first_item)
{
	struct provider_outcome out;
	json_t *want = json_pack(
	    "{s:i, s:s, s:i}", "coins", 10, "money", "0.10", "seconds", 4);

	outcome_of("{\"code\":0,\"msg\":\"success\",\"data\":["
	           "{\"fileUrl\":\"https://x/a.png\",\"fileType\":\"png\","
	           "\"taskCostTime\":\"4\",\"consumeCoins\":\"10\","
	           "\"consumeMoney\":\"0.10\","
	           "\"thirdPartyConsumeMoney\":null},"
	           "{\"fileUrl\":\"https://x/b.png\",\"fileType\":\"png\","
	           "\"taskCostTime\":\"4\",\"consumeCoins\":\"10\","
	           "\"consumeMoney\":\"0.10\"}]}",
	    &out);
	cr_assert_eq(out.state, TASK_COMPLETED);
	cr_assert_not_null(out.cost);
	cr_expect(json_equal(out.cost, want), "%s",
	    json_dumps(out.cost, JSON_COMPACT));
	provider_outcome_cleanup(&out);
	json_decref(want);
}

Test(outcome, cost_members_only_as_reported)
{
	struct provider_outcome out;
	json_t *want;

	/* Money null (as RunningHub may send it), numbers as numbers. */
	outcome_of("{\"code\":0,\"data\":[{\"fileUrl\":\"https://x/a\","
	           "\"consumeCoins\":7,\"consumeMoney\":null,"
	           "\"taskCostTime\":2.6}]}",
	    &out);
	want = json_pack("{s:i, s:i}", "coins", 7, "seconds", 3);
	cr_expect(json_equal(out.cost, want), "%s",
	    json_dumps(out.cost, JSON_COMPACT));
	json_decref(want);
	provider_outcome_cleanup(&out);

	/* Money that is not a plain decimal is left out, never guessed. */
	outcome_of("{\"code\":0,\"data\":[{\"fileUrl\":\"https://x/a\","
	           "\"consumeMoney\":\"1e3\",\"consumeCoins\":\"-2\"}]}",
	    &out);
	cr_expect_null(out.cost);
	provider_outcome_cleanup(&out);

	/* Nothing said: no cost. */
	outcome_of(
	    "{\"code\":0,\"data\":[{\"fileUrl\":\"https://x/a\"}]}", &out);
	cr_expect_null(out.cost);
	provider_outcome_cleanup(&out);

	/* A failure costs nothing. */
	outcome_of("{\"code\":805,\"msg\":\"APIKEY_TASK_STATUS_ERROR\","
	           "\"data\":{\"consumeCoins\":\"10\"}}",
	    &out);
	cr_expect_eq(out.state, TASK_FAILED);
	cr_expect_null(out.cost);
	provider_outcome_cleanup(&out);
}

Test(outcome, failure_with_exception_message)
{
	struct provider_outcome out;

	outcome_of("{\"code\":805,\"msg\":\"APIKEY_TASK_STATUS_ERROR\","
	           "\"data\":{\"failedReason\":{\"exception_message\":"
	           "\"CUDA out of memory\",\"node_name\":\"KSampler\","
	           "\"exception_type\":\"RuntimeError\"}}}",
	    &out);
	cr_assert_eq(out.state, TASK_FAILED);
	cr_expect_str_eq(out.message, "CUDA out of memory");
	cr_expect_null(out.outputs);
	provider_outcome_cleanup(&out);
}

Test(outcome, failure_without_failed_reason)
{
	struct provider_outcome out;

	outcome_of("{\"code\":805,\"msg\":\"APIKEY_TASK_STATUS_ERROR\","
	           "\"data\":null}",
	    &out);
	cr_assert_eq(out.state, TASK_FAILED);
	cr_expect_str_eq(out.message, "APIKEY_TASK_STATUS_ERROR");
	provider_outcome_cleanup(&out);

	outcome_of("{\"code\":805}", &out);
	cr_assert_eq(out.state, TASK_FAILED);
	cr_expect_str_eq(out.message, "provider error 805");
	provider_outcome_cleanup(&out);
}

Test(outcome, running_and_queued)
{
	struct provider_outcome out;

	outcome_of("{\"code\":804,\"msg\":\"APIKEY_TASK_IS_RUNNING\"}", &out);
	cr_expect_eq(out.state, TASK_RUNNING);
	provider_outcome_cleanup(&out);
	outcome_of("{\"code\":813,\"msg\":\"APIKEY_TASK_IS_QUEUED\"}", &out);
	cr_expect_eq(out.state, TASK_RUNNING);
	provider_outcome_cleanup(&out);
}

Test(outcome, no_envelope_is_unknown)
{
	struct provider_outcome out;

	outcome_of("[1]", &out);
	cr_expect_eq(out.state, TASK_UNKNOWN);
	provider_outcome_cleanup(&out);
	outcome_of("{\"msg\":\"x\"}", &out);
	cr_expect_eq(out.state, TASK_UNKNOWN);
	provider_outcome_cleanup(&out);
	memset(&out, 0, sizeof(out));
	runninghub_outcome(NULL, &out);
	cr_expect_eq(out.state, TASK_UNKNOWN);
}

/* ---- webhook callbacks ---- */

static int
parse(const char *body, struct provider_outcome *out, char *err, size_t errlen)
{
	struct provider *p = new_provider(1, 1000);
	int rc =
	    provider_parse_callback(p, body, strlen(body), out, err, errlen);

	provider_free(p);
	return rc;
}

Test(callback, event_data_string, .init = setup, .fini = teardown)
{
	struct provider_outcome out;
	char err[256];

	cr_assert_eq(parse("{\"event\":\"TASK_END\",\"taskId\":\"1904\","
	                   "\"eventData\":\"{\\\"code\\\":0,\\\"msg\\\":"
	                   "\\\"success\\\",\\\"data\\\":[{\\\"fileUrl\\\":"
	                   "\\\"https://x/a.png\\\",\\\"fileType\\\":"
	                   "\\\"png\\\"}]}\"}",
	                 &out, err, sizeof(err)),
	    0, "%s", err);
	cr_expect_str_eq(out.task_id, "1904");
	cr_expect_eq(out.state, TASK_COMPLETED);
	cr_expect_eq(json_array_size(out.outputs), 1);
	provider_outcome_cleanup(&out);
}

Test(callback, event_data_object, .init = setup, .fini = teardown)
{
	struct provider_outcome out;
	char err[256];

	cr_assert_eq(parse("{\"event\":\"TASK_END\",\"taskId\":\"7\","
	                   "\"eventData\":{\"code\":805,\"msg\":\"failed\","
	                   "\"data\":{\"failedReason\":{"
	                   "\"exception_message\":\"bad mask\"}}}}",
	                 &out, err, sizeof(err)),
	    0, "%s", err);
	cr_expect_str_eq(out.task_id, "7");
	cr_expect_eq(out.state, TASK_FAILED);
	cr_expect_str_eq(out.message, "bad mask");
	provider_outcome_cleanup(&out);
}

Test(callback, malformed, .init = setup, .fini = teardown)
{
	static const char *bad[] = {
	    "not json",
	    "[1,2]",
	    "{\"taskId\":\"1\",\"eventData\":\"{not json\"}",
	    "{\"taskId\":\"1\",\"eventData\":42}",
	    "{\"taskId\":\"1\"}",
	    "{\"taskId\":\"1\",\"eventData\":\"[1]\"}",
	};
	struct provider_outcome out;
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_expect_eq(
		    parse(bad[i], &out, err, sizeof(err)), -1, "%s", bad[i]);
		cr_expect_neq(err[0], '\0', "no error text for %s", bad[i]);
		cr_expect_null(out.task_id);
	}
}

Test(callback, missing_task_id, .init = setup, .fini = teardown)
{
	struct provider_outcome out;
	char err[256];

	cr_expect_eq(parse("{\"event\":\"TASK_END\",\"eventData\":{\"code\":0,"
	                   "\"data\":[]}}",
	                 &out, err, sizeof(err)),
	    -1);
	cr_expect(strstr(err, "taskId") != NULL, "%s", err);
	cr_expect_eq(parse("{\"taskId\":12,\"eventData\":{\"code\":0}}", &out,
	                 err, sizeof(err)),
	    -1);
}

/* ---- submit end to end ---- */

#define OK_UPLOAD                                                              \
	"{\"code\":0,\"msg\":\"success\",\"data\":{\"fileName\":"              \
	"\"api/abc.png\",\"fileType\":\"input\"}}"
#define OK_RUN                                                                 \
	"{\"code\":0,\"msg\":\"success\",\"data\":{\"taskId\":\"1904\","       \
	"\"clientId\":\"c1\",\"taskStatus\":\"RUNNING\"}}"

static char tmpfile_path[64];

static const char *
make_input(void)
{
	int fd;

	strcpy(tmpfile_path, "/tmp/rh-input-XXXXXX");
	fd = mkstemp(tmpfile_path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "PNGDATA", 7), 7);
	close(fd);
	return tmpfile_path;
}

static int
submit(struct provider *p, const char *path)
{
	struct provider_node nodes[] = {
	    {.node_id = "10",
	        .field = "image",
	        .path = path,
	        .file_type = "png"},
	    {.node_id = "11", .field = "prompt", .value = "a cat"},
	};
	struct provider_task t = {
	    .app_id = "app-42",
	    .nodes = path != NULL ? nodes : nodes + 1,
	    .nnodes = path != NULL ? 2 : 1,
	    .webhook_url = "http://fila/v1/webhooks/runninghub/tok",
	};

	return provider_submit(p, &t, on_result, NULL);
}

Test(submit, uploads_then_runs, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);
	const char *path = make_input();
	json_t *run, *nodes;

	answer("/task/openapi/upload", 200, OK_UPLOAD);
	answer("/task/openapi/ai-app/run", 200, OK_RUN);
	cr_assert_eq(submit(p, path), 0);
	cr_expect_eq(provider_pending(p), 1);
	run_until(&seen.calls, 5000);
	unlink(path);
	cr_assert_eq(seen.rc, PROVIDER_OK, "%s", seen.message);
	cr_expect_str_eq(seen.task_id, "1904");
	finish(p);

	cr_assert_eq(nreqs, 2);
	cr_expect_str_eq(reqs[0].path, "/task/openapi/upload");
	cr_expect(strstr(reqs[0].ctype, "multipart/form-data") != NULL);
	cr_expect(strstr(reqs[0].body, "name=\"apiKey\"") != NULL);
	cr_expect(strstr(reqs[0].body, API_KEY) != NULL);
	cr_expect(strstr(reqs[0].body, "name=\"fileType\"") != NULL);
	cr_expect(strstr(reqs[0].body, "PNGDATA") != NULL);
	cr_expect(strstr(reqs[0].body, "filename=\"rh-input-") != NULL);

	cr_expect_str_eq(reqs[1].path, "/task/openapi/ai-app/run");
	cr_expect_str_eq(reqs[1].ctype, "application/json");
	run = json_loads(reqs[1].body, 0, NULL);
	cr_assert_not_null(run, "%s", reqs[1].body);
	cr_expect_str_eq(
	    json_string_value(json_object_get(run, "apiKey")), API_KEY);
	cr_expect_str_eq(
	    json_string_value(json_object_get(run, "webappId")), "app-42");
	cr_expect_str_eq(json_string_value(json_object_get(run, "webhookUrl")),
	    "http://fila/v1/webhooks/runninghub/tok");
	nodes = json_object_get(run, "nodeInfoList");
	cr_assert_eq(json_array_size(nodes), 2);
	cr_expect_str_eq(json_string_value(json_object_get(
	                     json_array_get(nodes, 0), "nodeId")),
	    "10");
	cr_expect_str_eq(json_string_value(json_object_get(
	                     json_array_get(nodes, 0), "fieldValue")),
	    "api/abc.png");
	cr_expect_str_eq(json_string_value(json_object_get(
	                     json_array_get(nodes, 1), "fieldValue")),
	    "a cat");
	json_decref(run);
	seen_cleanup();
}

Test(submit, busy_on_http_421, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/ai-app/run", 421, "");
	cr_assert_eq(submit(p, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_BUSY);
	cr_expect_eq(seen.http_status, 421);
	cr_expect_null(seen.task_id);
	finish(p);
	seen_cleanup();
}

Test(submit, busy_on_code_421, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/ai-app/run", 200,
	    "{\"code\":421,\"msg\":\"TASK_QUEUE_MAXED\",\"data\":null}");
	cr_assert_eq(submit(p, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_BUSY);
	cr_expect_eq(seen.code, 421);
	finish(p);
	seen_cleanup();
}

Test(submit, rejected_with_provider_msg, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/ai-app/run", 200,
	    "{\"code\":803,\"msg\":\"APIKEY_INVALID_NODE_INFO\",\"data\":"
	    "null}");
	cr_assert_eq(submit(p, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_REJECTED);
	cr_expect_str_eq(seen.message, "APIKEY_INVALID_NODE_INFO");
	cr_expect_eq(seen.code, 803);
	cr_expect_eq(seen.http_status, 200);
	finish(p);
	seen_cleanup();
}

Test(submit, retry_on_connection_refused, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(closed_port(), 5000);

	cr_assert_eq(submit(p, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_RETRY);
	cr_expect_not_null(seen.message);
	finish(p);
	seen_cleanup();
}

Test(submit, retry_on_timeout, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 300);

	answer("/task/openapi/ai-app/run", 0, NULL);
	cr_assert_eq(submit(p, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_RETRY);
	cr_expect(
	    strstr(seen.message, "timed out") != NULL, "%s", seen.message);
	finish(p);
	seen_cleanup();
}

Test(submit, retry_on_5xx_upload_stops, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);
	const char *path = make_input();

	answer("/task/openapi/upload", 502, "bad gateway");
	answer("/task/openapi/ai-app/run", 200, OK_RUN);
	cr_assert_eq(submit(p, path), 0);
	run_until(&seen.calls, 5000);
	unlink(path);
	cr_expect_eq(seen.rc, PROVIDER_RETRY);
	cr_expect_eq(seen.http_status, 502);
	cr_expect_eq(nreqs, 1, "the run went ahead without its upload");
	finish(p);
	seen_cleanup();
}

Test(submit, unreadable_file_is_rejected, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/upload", 200, OK_UPLOAD);
	answer("/task/openapi/ai-app/run", 200, OK_RUN);
	cr_assert_eq(submit(p, "/nonexistent/in.png"), 0);
	cr_expect_eq(seen.calls, 0, "answered before submit returned");
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_REJECTED);
	cr_expect(strstr(seen.message, "/nonexistent/in.png") != NULL, "%s",
	    seen.message);
	cr_expect_eq(nreqs, 0);
	finish(p);
	seen_cleanup();
}

/* ---- poll and cancel end to end ---- */

Test(poll, success_reads_outputs, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);
	json_t *body;

	answer("/task/openapi/status", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":\"SUCCESS\"}");
	answer("/task/openapi/outputs", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":["
	    "{\"fileUrl\":\"https://x/a.png\",\"fileType\":\"png\"},"
	    "{\"fileUrl\":\"https://x/b.png\",\"fileType\":\"png\"}]}");
	cr_assert_eq(provider_poll(p, "1904", on_poll, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.out.state, TASK_COMPLETED);
	cr_expect_str_eq(seen.out.task_id, "1904");
	cr_expect_eq(json_array_size(seen.out.outputs), 2);
	finish(p);
	cr_assert_eq(nreqs, 2);
	cr_expect_str_eq(reqs[0].path, "/task/openapi/status");
	cr_expect_str_eq(reqs[1].path, "/task/openapi/outputs");
	body = json_loads(reqs[1].body, 0, NULL);
	cr_expect_str_eq(
	    json_string_value(json_object_get(body, "taskId")), "1904");
	cr_expect_str_eq(
	    json_string_value(json_object_get(body, "apiKey")), API_KEY);
	json_decref(body);
	seen_cleanup();
}

Test(poll, success_reads_the_cost, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/status", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":\"SUCCESS\"}");
	answer("/task/openapi/outputs", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":["
	    "{\"fileUrl\":\"https://x/a.png\",\"fileType\":\"png\","
	    "\"consumeCoins\":\"12\",\"consumeMoney\":\"0.125\","
	    "\"taskCostTime\":\"30\"}]}");
	cr_assert_eq(provider_poll(p, "1904", on_poll, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.out.state, TASK_COMPLETED);
	cr_assert_not_null(seen.out.cost);
	cr_expect_eq(
	    json_integer_value(json_object_get(seen.out.cost, "coins")), 12);
	cr_expect_str_eq(
	    json_string_value(json_object_get(seen.out.cost, "money")),
	    "0.125");
	cr_expect_eq(
	    json_integer_value(json_object_get(seen.out.cost, "seconds")), 30);
	finish(p);
	seen_cleanup();
}

/* ---- the account's status ---- */

Test(tasks, count_and_coins_as_strings, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);
	json_t *body;

	answer("/uc/openapi/accountStatus", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":{\"remainCoins\":"
	    "\"990\",\"currentTaskCounts\":\"2\",\"remainMoney\":\"100.00\","
	    "\"currency\":\"CNY\",\"apiType\":\"NORMAL\"}}");
	cr_assert_eq(provider_tasks(p, on_result, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_OK, "%s", seen.message);
	cr_expect_eq(seen.count, 2);
	cr_expect_str_eq(seen.coins, "990");
	finish(p);
	cr_assert_eq(nreqs, 1);
	body = json_loads(reqs[0].body, 0, NULL);
	/* The key is "apikey", in lower case, in this one body. */
	cr_expect_str_eq(
	    json_string_value(json_object_get(body, "apikey")), API_KEY);
	json_decref(body);
	seen_cleanup();
}

Test(tasks, an_expired_key_is_the_account, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/uc/openapi/accountStatus", 200,
	    "{\"code\":802,\"msg\":\"APIKEY_UNAUTHORIZED\",\"data\":null}");
	cr_assert_eq(provider_tasks(p, on_result, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_ACCOUNT);
	cr_expect_eq(seen.code, 802);
	cr_expect_str_eq(seen.message, "APIKEY_UNAUTHORIZED");
	cr_expect_null(seen.coins);
	finish(p);
	seen_cleanup();
}

Test(submit, an_empty_wallet_is_the_account, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/ai-app/run", 200,
	    "{\"code\":416,\"msg\":\"TASK_CREATE_FAILED_BY_NOT_ENOUGH_"
	    "WALLET\",\"data\":null}");
	cr_assert_eq(submit(p, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_ACCOUNT);
	cr_expect_eq(seen.code, 416);
	cr_expect_null(seen.task_id);
	finish(p);
	seen_cleanup();
}

Test(poll, failed_reads_reason, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/status", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":\"FAILED\"}");
	answer("/task/openapi/outputs", 200,
	    "{\"code\":805,\"msg\":\"APIKEY_TASK_STATUS_ERROR\",\"data\":"
	    "{\"failedReason\":{\"exception_message\":\"node 12 broke\"}}}");
	cr_assert_eq(provider_poll(p, "1904", on_poll, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.out.state, TASK_FAILED);
	cr_expect_str_eq(seen.out.message, "node 12 broke");
	finish(p);
	seen_cleanup();
}

Test(poll, running_asks_once, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/status", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":\"QUEUED\"}");
	cr_assert_eq(provider_poll(p, "1904", on_poll, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.out.state, TASK_RUNNING);
	cr_expect_eq(nreqs, 1);
	finish(p);
	seen_cleanup();
}

Test(poll, transport_error_is_unknown, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(closed_port(), 5000);

	cr_assert_eq(provider_poll(p, "1904", on_poll, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.out.state, TASK_UNKNOWN);
	cr_expect_not_null(seen.out.message);
	finish(p);
	seen_cleanup();
}

Test(cancel, ok, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);
	json_t *body;

	answer("/task/openapi/cancel", 200,
	    "{\"code\":0,\"msg\":\"success\",\"data\":null}");
	cr_assert_eq(provider_cancel(p, "1904", on_result, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_OK);
	finish(p);
	cr_assert_eq(nreqs, 1);
	body = json_loads(reqs[0].body, 0, NULL);
	cr_expect_str_eq(
	    json_string_value(json_object_get(body, "taskId")), "1904");
	cr_expect_str_eq(
	    json_string_value(json_object_get(body, "apiKey")), API_KEY);
	json_decref(body);
	seen_cleanup();
}

Test(cancel, rejected, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	answer("/task/openapi/cancel", 200,
	    "{\"code\":807,\"msg\":\"APIKEY_TASK_NOT_FOUND\"}");
	cr_assert_eq(provider_cancel(p, "1904", on_result, NULL), 0);
	run_until(&seen.calls, 5000);
	cr_expect_eq(seen.rc, PROVIDER_REJECTED);
	cr_expect_str_eq(seen.message, "APIKEY_TASK_NOT_FOUND");
	finish(p);
	seen_cleanup();
}

/* ---- freeing with calls in flight ---- */

Test(lifetime, free_aborts_in_flight, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);
	int never = 0;

	const char *path = make_input();

	/* The upload hangs: its multipart body must be let go safely. */
	answer("/task/openapi/upload", 0, NULL);
	answer("/task/openapi/status", 0, NULL);
	cr_assert_eq(submit(p, path), 0);
	cr_assert_eq(provider_poll(p, "1", on_poll, NULL), 0);
	cr_expect_eq(provider_pending(p), 2);
	run_until(&nreqs, 5000);
	cr_assert_geq(nreqs, 1, "the fake saw no request");
	provider_free(p);
	unlink(path);
	run_until(&never, 200);
	cr_expect_eq(seen.calls, 0);
}

static struct provider *freed_in_cb;

static void
free_in_cb(void *arg, const struct provider_result *res)
{
	seen.calls++;
	provider_free(freed_in_cb);
}

Test(lifetime, free_inside_callback, .init = setup, .fini = teardown)
{
	int never = 0;

	freed_in_cb = new_provider(fake_port, 5000);
	answer("/task/openapi/cancel", 200, "{\"code\":0,\"msg\":\"success\"}");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(
		    provider_cancel(freed_in_cb, "1", free_in_cb, NULL), 0);
	run_until(&never, 300);
	cr_expect_eq(seen.calls, 1);
}

Test(lifetime, name, .init = setup, .fini = teardown)
{
	struct provider *p = new_provider(fake_port, 5000);

	cr_expect_str_eq(provider_name(p), "runninghub");
	provider_free(p);
	provider_free(NULL);
}
