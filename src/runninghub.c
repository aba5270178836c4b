/*
 * runninghub.c — the RunningHub provider (docs/api.md §7).
 *
 * Every operation is a `struct call`: POSTs made one after the other on the
 * curlev loop (submit: each upload, then run; poll: status, then outputs),
 * each transfer's end running the call's next step. A call leaves the
 * backend's list before its user's callback runs, so that callback may
 * free the provider. Every answer is classified in one place
 * (runninghub_classify): a refusal for capacity (421, 415, 814, 1003,
 * 1011) is BUSY, one that says the account cannot run anything (416, 801,
 * 802, 812) is ACCOUNT, transport trouble or a 5xx is RETRY, anything else
 * refused is REJECTED with the provider's own words.
 */
#include "runninghub.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>

#include "curlev.h"
#include "jsonr.h"
#include "money.h"
#include "provider.h"
#include "list.h"
#include "util.h"

#define RH_MAX_BODY (4u << 20) /* answers larger than this are refused */
#define RH_CONNECT_MS 5000L
#define RH_TEXT_MAX 300 /* bytes of a non-JSON error body kept */

/* RunningHub's business codes that matter here (tools/README.md says
 * where they come from). */
#define RH_QUEUE_MAXED 421    /* TASK_QUEUE_MAXED */
#define RH_INSTANCE_MAXED 415 /* TASK_INSTANCE_MAXED */
#define RH_PERSONAL_LIMIT 814 /* PERSONAL_QUEUE_COUNT_LIMIT */
#define RH_RATE_LIMIT 1003    /* rate limit exceeded */
#define RH_SYSTEM_BUSY 1011   /* system busy */
#define RH_NO_WALLET 416      /* TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET */
#define RH_FREE_USER 801      /* APIKEY_UNSUPPORTED_FREE_USER */
#define RH_UNAUTHORIZED 802   /* APIKEY_UNAUTHORIZED: refused or expired */
#define RH_NO_FUNDS 812       /* CORPAPIKEY_INSUFFICIENT_FUNDS */
#define RH_TASK_RUNNING 804
#define RH_TASK_QUEUED 813
#define HTTP_TOO_MANY 429

struct call;

/* Easies kept for the next transfers: making one (a large zeroed block,
 * its settings, its buffers) and freeing it was a tenth of curl's work
 * per transfer, and a job makes two. */
#define EASY_KEEP 4

struct rh {
	struct event_base *base;
	struct curlev *cv;
	char *base_url; /* without a trailing slash */
	char *api_key;
	long timeout_ms;
	struct list calls; /* every call not yet answered */
	int ncalls;
	CURL *idle[EASY_KEEP]; /* easies of finished transfers, reset */
	size_t nidle;
};

/* A node whose value is a local file still to upload. */
struct upload_file {
	size_t node; /* index in the call's nodeInfoList */
	char *path;
	char *file_type;
};

typedef void (*step_fn)(struct call *c, CURLcode rc);

struct call {
	struct rh *rh;
	struct list link; /* in rh.calls */
	/* the transfer in flight and what runs when it ends */
	CURL *easy;
	struct curl_slist *headers;
	curl_mime *mime;
	step_fn step;
	char *resp;
	size_t resp_len, resp_cap;
	int too_big;
	long http;
	char errbuf[CURL_ERROR_SIZE];
	/* whom to answer */
	provider_cb cb;
	provider_poll_cb poll_cb;
	void *arg;
	char *task_id;
	/* submit: the task, copied, and its uploads */
	char *app_id;
	char *webhook_url;
	json_t *nodes;
	struct upload_file *uploads;
	size_t nuploads, next_upload;
	/* a failure answered on the next turn of the loop */
	struct event *later;
	enum provider_rc later_rc;
	char *later_msg;
};

static struct call *
call_new(struct rh *rh, void *arg)
{
	struct call *c = xcalloc(1, sizeof(*c));

	c->rh = rh;
	c->arg = arg;
	list_add_tail(&rh->calls, &c->link);
	rh->ncalls++;
	return c;
}

/* An easy for a new transfer: one kept, or a new one. */
static CURL *
easy_get(struct rh *rh)
{
	return rh->nidle > 0 ? rh->idle[--rh->nidle] : curl_easy_init();
}

/* A finished transfer's easy (out of the multi): reset, it lets go of
 * every option (the mime and the headers it posted among them) and keeps
 * its buffers; kept for the next, or cleaned up. */
static void
easy_put(struct rh *rh, CURL *easy)
{
	if (rh->nidle < EASY_KEEP) {
		curl_easy_reset(easy);
		rh->idle[rh->nidle++] = easy;
	} else {
		curl_easy_cleanup(easy);
	}
}

/* Drop the transfer's resources; the easy must be out of the multi. */
static void
transfer_reset(struct call *c)
{
	if (c->easy != NULL)
		easy_put(c->rh, c->easy);
	/* curl requires the mime to outlive the easy that posts it (or its
	 * reset, above). */
	curl_mime_free(c->mime);
	curl_slist_free_all(c->headers);
	free(c->resp);
	c->easy = NULL;
	c->mime = NULL;
	c->headers = NULL;
	c->resp = NULL;
	c->resp_len = c->resp_cap = 0;
	c->too_big = 0;
	c->http = 0;
	c->errbuf[0] = '\0';
}

static void
call_free(struct call *c)
{
	list_remove(&c->link);
	c->rh->ncalls--;
	transfer_reset(c);
	for (size_t i = 0; i < c->nuploads; i++) {
		free(c->uploads[i].path);
		free(c->uploads[i].file_type);
	}
	free(c->uploads);
	json_decref(c->nodes);
	free(c->app_id);
	free(c->webhook_url);
	free(c->task_id);
	if (c->later != NULL)
		event_free(c->later);
	free(c->later_msg);
	free(c);
}

/* Answer a submit or a cancel; res's strings are copied first. */
static void
call_finish(struct call *c, const struct provider_result *res)
{
	provider_cb cb = c->cb;
	void *arg = c->arg;
	struct provider_result r = *res;
	char *message = xstrdup_or_null(res->message);
	char *task_id = xstrdup_or_null(res->task_id);
	char *coins = xstrdup_or_null(res->coins);

	r.message = message;
	r.task_id = task_id;
	r.coins = coins;
	call_free(c);
	cb(arg, &r);
	free(message);
	free(task_id);
	free(coins);
}

static void
call_fail(struct call *c, enum provider_rc rc, const char *message)
{
	struct provider_result res = {.rc = rc, .message = message};

	call_finish(c, &res);
}

/* Answer a poll; out belongs to us and is cleaned up after. */
static void
poll_finish(struct call *c, struct provider_outcome *out)
{
	provider_poll_cb cb = c->poll_cb;
	void *arg = c->arg;

	if (out->task_id == NULL)
		out->task_id = xstrdup(c->task_id);
	call_free(c);
	cb(arg, out);
	provider_outcome_cleanup(out);
}

static void
later_event(evutil_socket_t fd, short what, void *arg)
{
	struct call *c = arg;

	call_fail(c, c->later_rc, c->later_msg);
}

/* Fail on the next turn of the loop: the caller may not expect its
 * callback before provider_submit returns. */
static int
call_fail_later(struct call *c, enum provider_rc rc, const char *message)
{
	struct timeval now = {0, 0};

	c->later_rc = rc;
	c->later_msg = xstrdup(message);
	c->later = evtimer_new(c->rh->base, later_event, c);
	if (c->later == NULL || evtimer_add(c->later, &now) < 0)
		return -1;
	return 0;
}

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
	struct call *c = userp;
	size_t n = size * nmemb;

	if (n > RH_MAX_BODY - c->resp_len) {
		c->too_big = 1;
		return 0; /* curl ends the transfer with a write error */
	}
	if (c->resp_len + n + 1 > c->resp_cap) {
		c->resp_cap = (c->resp_len + n + 1) * 2;
		c->resp = xrealloc(c->resp, c->resp_cap);
	}
	memcpy(c->resp + c->resp_len, ptr, n);
	c->resp_len += n;
	c->resp[c->resp_len] = '\0';
	return n;
}

static void
transfer_done(void *arg, CURL *easy, CURLcode rc)
{
	struct call *c = arg;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &c->http);
	c->step(c, rc);
}

/* A fresh easy for POST {base}{path} with the options every call has. */
static int
call_begin(struct call *c, const char *path)
{
	char *url;

	transfer_reset(c);
	c->easy = easy_get(c->rh);
	if (c->easy == NULL)
		return -1;
	url = xasprintf("%s%s", c->rh->base_url, path);
	curl_easy_setopt(c->easy, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->easy, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, c->rh->timeout_ms);
	curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, RH_CONNECT_MS);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
	/* No "100-continue" round trip before an upload's body. */
	c->headers = curl_slist_append(NULL, "Expect:");
	return 0;
}

static int
call_start(struct call *c, step_fn step)
{
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
	c->step = step;
	return curlev_add(c->rh->cv, c->easy, transfer_done, c);
}

/* POST body (taken) as JSON to path; step runs with the answer. */
static int
call_post_json(struct call *c, const char *path, json_t *body, step_fn step)
{
	char *text = json_dumps(body, JSON_COMPACT);

	json_decref(body);
	if (text == NULL || call_begin(c, path) < 0) {
		free(text);
		return -1;
	}
	c->headers =
	    curl_slist_append(c->headers, "Content-Type: application/json");
	curl_easy_setopt(c->easy, CURLOPT_COPYPOSTFIELDS, text);
	free(text);
	return call_start(c, step);
}

/* The transfer's answer as a result; root and data as in classify. */
static void
call_answer(struct call *c, CURLcode rc, struct provider_result *res,
    json_t **root, json_t **data)
{
	if (rc == CURLE_OK) {
		runninghub_classify(
		    c->http, c->resp, c->resp_len, res, root, data);
		return;
	}
	memset(res, 0, sizeof(*res));
	res->rc = PROVIDER_RETRY;
	res->http_status = c->http;
	if (c->too_big)
		res->message = "the provider's answer is too large";
	else if (c->errbuf[0] != '\0')
		res->message = c->errbuf;
	else
		res->message = curl_easy_strerror(rc);
	*root = NULL;
	*data = NULL;
}

/* ---- classification ---- */

/* No room now: the job keeps its place and is tried again. */
static int
is_busy_code(long long code)
{
	return code == RH_QUEUE_MAXED || code == RH_INSTANCE_MAXED ||
	       code == RH_PERSONAL_LIMIT || code == RH_RATE_LIMIT ||
	       code == RH_SYSTEM_BUSY;
}

/* The account cannot run anything: its wallet, its key. */
static int
is_account_code(long long code)
{
	return code == RH_NO_WALLET || code == RH_FREE_USER ||
	       code == RH_UNAUTHORIZED || code == RH_NO_FUNDS;
}

static enum provider_rc
http_rc(long http)
{
	if (http == RH_QUEUE_MAXED || http == RH_INSTANCE_MAXED ||
	    http == HTTP_TOO_MANY)
		return PROVIDER_BUSY;
	if (http >= 400 && http < 500)
		return PROVIDER_REJECTED;
	return PROVIDER_RETRY; /* 5xx, or no usable HTTP answer at all */
}

/* Up to RH_TEXT_MAX bytes of body, trimmed, never cutting a UTF-8
 * sequence; as a JSON string so that it has an owner (NULL if empty). */
static json_t *
body_text(const char *body, size_t len)
{
	json_t *s;
	char *copy;

	while (len > 0 && (unsigned char)body[0] <= ' ')
		body++, len--;
	if (len > RH_TEXT_MAX) {
		len = RH_TEXT_MAX;
		while (len > 0 && ((unsigned char)body[len] & 0xc0) == 0x80)
			len--;
	}
	while (len > 0 && (unsigned char)body[len - 1] <= ' ')
		len--;
	if (len == 0)
		return NULL;
	if ((s = json_stringn(body, len)) != NULL)
		return s;
	/* Not UTF-8 text: keep what can be shown. */
	copy = xstrndup(body, len);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)copy[i];
		if (ch >= 0x80 || (ch < ' ' && ch != '\n' && ch != '\t'))
			copy[i] = '?';
	}
	s = json_string(copy);
	free(copy);
	return s;
}

/* The message of an answer that is not a good envelope: the body's own
 * text, else "HTTP <status>"; kept alive in *root. */
static void
classify_text(long http, const char *body, size_t len,
    struct provider_result *res, json_t **root)
{
	json_t *text = body_text(body, len);

	if (text == NULL)
		text = json_sprintf("HTTP %ld", http);
	json_decref(*root);
	*root = text;
	res->message = json_string_value(text);
}

void
runninghub_classify(long http_status, const char *body, size_t len,
    struct provider_result *res, json_t **root, json_t **data)
{
	json_t *code, *msg;
	int envelope, ok_http = http_status >= 200 && http_status < 300;

	memset(res, 0, sizeof(*res));
	res->http_status = http_status;
	*data = NULL;
	*root = jsonr_loadb(body != NULL ? body : "", len, 0, NULL);
	code = json_object_get(*root, "code");
	msg = json_object_get(*root, "msg");
	envelope = json_is_object(*root) && json_is_integer(code);
	if (envelope) {
		res->code = (long)json_integer_value(code);
		*data = json_object_get(*root, "data");
	}
	if (ok_http && !envelope) {
		res->rc = PROVIDER_RETRY;
		res->message = "the provider's answer is not understood";
		return;
	}
	if (envelope && is_busy_code(res->code))
		res->rc = PROVIDER_BUSY;
	else if (envelope && is_account_code(res->code))
		res->rc = PROVIDER_ACCOUNT;
	else if (!ok_http)
		res->rc = http_rc(http_status);
	else
		res->rc = res->code == 0 ? PROVIDER_OK : PROVIDER_REJECTED;
	if (res->rc == PROVIDER_OK)
		return;
	if (envelope && json_string_length(msg) > 0)
		res->message = json_string_value(msg);
	else if (ok_http)
		res->message = "provider error (no message)";
	else {
		*data = NULL;
		classify_text(http_status, body, len, res, root);
	}
}

/* ---- outcomes ---- */

static json_t *
outputs_of(json_t *data)
{
	json_t *outs = json_array(), *item;
	size_t i;

	json_array_foreach(data, i, item)
	{
		const char *url, *type;

		url = json_string_value(json_object_get(item, "fileUrl"));
		if (url == NULL || *url == '\0')
			continue;
		type = json_string_value(json_object_get(item, "fileType"));
		json_array_append_new(
		    outs, json_pack("{s:s, s:s}", "url", url, "type",
		              type != NULL ? type : ""));
	}
	return outs;
}

/* A cost member as text: RunningHub writes them as strings ("10",
 * "0.12"), or null; a number is taken too. NULL when absent or null. */
static char *
cost_text(json_t *item, const char *name)
{
	json_t *v = json_object_get(item, name);

	if (json_is_string(v))
		return xstrdup(json_string_value(v));
	if (json_is_integer(v))
		return xasprintf("%lld", (long long)json_integer_value(v));
	if (json_is_real(v) && json_real_value(v) >= 0) {
		char *t = xasprintf("%.9f", json_real_value(v));
		size_t n = strlen(t);
		while (t[n - 1] == '0' && t[n - 2] != '.')
			t[--n] = '\0';
		return t;
	}
	return NULL;
}

/* A whole number of a cost member: "10", "10.0" (a decimal is rounded);
 * -1 when absent or not a number. */
static long long
cost_whole(json_t *item, const char *name)
{
	char *t = cost_text(item, name);
	struct money m;
	long long n = -1;

	if (t != NULL && money_parse(t, &m) == 0)
		n = (long long)((m.nano + 500000000) / 1000000000);
	free(t);
	return n;
}

/*
 * What the task cost, from the first output item that says it
 * (RunningHub repeats the task's cost on each of its items, so they are
 * not added up): {"coins", "money", "seconds"}, each only when reported;
 * NULL when none is.
 */
static json_t *
cost_of(json_t *data)
{
	json_t *item;
	size_t i;

	json_array_foreach(data, i, item)
	{
		json_t *cost = json_object();
		long long coins = cost_whole(item, "consumeCoins");
		long long secs = cost_whole(item, "taskCostTime");
		char *money = cost_text(item, "consumeMoney");
		struct money m;
		char buf[40];

		if (coins >= 0)
			json_object_set_new(cost, "coins", json_integer(coins));
		if (money != NULL && money_parse(money, &m) == 0)
			json_object_set_new(cost, "money",
			    json_string(money_format(&m, 0, buf, sizeof(buf))));
		if (secs >= 0)
			json_object_set_new(
			    cost, "seconds", json_integer(secs));
		free(money);
		if (json_object_size(cost) > 0)
			return cost;
		json_decref(cost);
	}
	return NULL;
}

static char *
failure_text(json_t *env, long long code)
{
	json_t *reason =
	    json_object_get(json_object_get(env, "data"), "failedReason");
	json_t *exc = json_object_get(reason, "exception_message");
	json_t *msg = json_object_get(env, "msg");

	if (json_string_length(exc) > 0)
		return xstrdup(json_string_value(exc));
	/* "success" would be a strange reason for a failure. */
	if (code == 0)
		return xstrdup("the provider reported success without outputs");
	if (json_string_length(msg) > 0)
		return xstrdup(json_string_value(msg));
	return xasprintf("provider error %lld", code);
}

void
runninghub_outcome(json_t *envelope, struct provider_outcome *out)
{
	json_t *code = json_object_get(envelope, "code");
	json_t *data = json_object_get(envelope, "data");
	long long c;

	if (!json_is_object(envelope) || !json_is_integer(code)) {
		out->state = TASK_UNKNOWN;
		return;
	}
	c = json_integer_value(code);
	if (c == 0 && json_is_array(data)) {
		out->state = TASK_COMPLETED;
		out->outputs = outputs_of(data);
		out->cost = cost_of(data);
	} else if (c == RH_TASK_RUNNING || c == RH_TASK_QUEUED) {
		out->state = TASK_RUNNING;
	} else {
		out->state = TASK_FAILED;
		out->message = failure_text(envelope, c);
	}
}

/* ---- submit: uploads, then run ---- */

static int submit_next(struct call *c);

/* 0 when path is a regular file we can read, else -1 with err. */
static int
file_check(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		snprintf(err, errlen, "cannot read input file %s: %m", path);
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "input %s is not a regular file", path);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* The name the provider sees: the basename, given the type's extension
 * when it has none (fila stores uploads under bare ids). */
static char *
upload_name(const struct upload_file *u)
{
	const char *slash = strrchr(u->path, '/');
	const char *base = slash != NULL ? slash + 1 : u->path;

	if (strchr(base, '.') == NULL && u->file_type != NULL &&
	    *u->file_type != '\0')
		return xasprintf("%s.%s", base, u->file_type);
	return xstrdup(base);
}

static void
mime_field(curl_mime *mime, const char *name, const char *value)
{
	curl_mimepart *part = curl_mime_addpart(mime);

	curl_mime_name(part, name);
	curl_mime_data(part, value, CURL_ZERO_TERMINATED);
}

static void
upload_done(struct call *c, CURLcode rc)
{
	struct provider_result res;
	json_t *root, *data, *node;
	const char *name;

	call_answer(c, rc, &res, &root, &data);
	name = json_string_value(json_object_get(data, "fileName"));
	if (res.rc == PROVIDER_OK && (name == NULL || *name == '\0')) {
		res.rc = PROVIDER_RETRY;
		res.message = "the provider's upload answer has no fileName";
	}
	if (res.rc != PROVIDER_OK) {
		call_finish(c, &res);
		json_decref(root);
		return;
	}
	node = json_array_get(c->nodes, c->uploads[c->next_upload].node);
	json_object_set_new(node, "fieldValue", json_string(name));
	json_decref(root);
	c->next_upload++;
	if (submit_next(c) < 0)
		call_fail(c, PROVIDER_RETRY, "cannot start a transfer");
}

static int
upload_start(struct call *c)
{
	const struct upload_file *u = &c->uploads[c->next_upload];
	curl_mimepart *part;
	char err[512];
	char *name;

	if (file_check(u->path, err, sizeof(err)) < 0)
		return call_fail_later(c, PROVIDER_REJECTED, err);
	if (call_begin(c, "/task/openapi/upload") < 0)
		return -1;
	c->mime = curl_mime_init(c->easy);
	mime_field(c->mime, "apiKey", c->rh->api_key);
	mime_field(c->mime, "fileType", "input");
	part = curl_mime_addpart(c->mime);
	curl_mime_name(part, "file");
	if (curl_mime_filedata(part, u->path) != CURLE_OK)
		return call_fail_later(
		    c, PROVIDER_REJECTED, "cannot read an input file");
	name = upload_name(u);
	curl_mime_filename(part, name);
	free(name);
	curl_easy_setopt(c->easy, CURLOPT_MIMEPOST, c->mime);
	return call_start(c, upload_done);
}

static void
run_done(struct call *c, CURLcode rc)
{
	struct provider_result res;
	json_t *root, *data, *id;
	char *num = NULL;

	call_answer(c, rc, &res, &root, &data);
	id = json_object_get(data, "taskId");
	if (json_is_integer(id))
		res.task_id = num =
		    xasprintf("%lld", (long long)json_integer_value(id));
	else
		res.task_id = json_string_value(id);
	if (res.rc == PROVIDER_OK &&
	    (res.task_id == NULL || *res.task_id == '\0')) {
		res.rc = PROVIDER_RETRY;
		res.message = "the provider's run answer has no taskId";
	}
	if (res.rc != PROVIDER_OK)
		res.task_id = NULL;
	call_finish(c, &res);
	free(num);
	json_decref(root);
}

static int
run_start(struct call *c)
{
	json_t *body = json_pack("{s:s, s:s, s:O}", "apiKey", c->rh->api_key,
	    "webappId", c->app_id, "nodeInfoList", c->nodes);

	if (body == NULL)
		return -1;
	if (c->webhook_url != NULL)
		json_object_set_new(
		    body, "webhookUrl", json_string(c->webhook_url));
	return call_post_json(c, "/task/openapi/ai-app/run", body, run_done);
}

static int
submit_next(struct call *c)
{
	if (c->next_upload < c->nuploads)
		return upload_start(c);
	return run_start(c);
}

/* Copy the task: the caller's strings need not outlive provider_submit. */
static int
submit_copy(struct call *c, const struct provider_task *t)
{
	c->app_id = xstrdup(t->app_id);
	c->webhook_url = xstrdup_or_null(t->webhook_url);
	c->nodes = json_array();
	c->uploads = xcalloc(t->nnodes, sizeof(*c->uploads));
	for (size_t i = 0; i < t->nnodes; i++) {
		const struct provider_node *n = &t->nodes[i];
		json_t *node = json_pack("{s:s, s:s, s:s}", "nodeId",
		    n->node_id, "fieldName", n->field, "fieldValue",
		    n->value != NULL ? n->value : "");

		if (node == NULL)
			return -1;
		json_array_append_new(c->nodes, node);
		if (n->path != NULL) {
			struct upload_file *u = &c->uploads[c->nuploads++];
			u->node = i;
			u->path = xstrdup(n->path);
			u->file_type = xstrdup_or_null(n->file_type);
		}
	}
	return 0;
}

static int
rh_submit(void *impl, const struct provider_task *t, provider_cb cb, void *arg)
{
	struct call *c = call_new(impl, arg);
	char err[512];

	c->cb = cb;
	if (t->app_id == NULL || submit_copy(c, t) < 0)
		goto fail;
	/* Refuse a missing file before uploading any of the others. */
	for (size_t i = 0; i < c->nuploads; i++) {
		if (file_check(c->uploads[i].path, err, sizeof(err)) < 0) {
			if (call_fail_later(c, PROVIDER_REJECTED, err) < 0)
				goto fail;
			return 0;
		}
	}
	if (submit_next(c) < 0)
		goto fail;
	return 0;
fail:
	call_free(c);
	return -1;
}

/* ---- cancel ---- */

static void
cancel_done(struct call *c, CURLcode rc)
{
	struct provider_result res;
	json_t *root, *data;

	call_answer(c, rc, &res, &root, &data);
	call_finish(c, &res);
	json_decref(root);
}

static json_t *
task_body(const struct call *c)
{
	return json_pack(
	    "{s:s, s:s}", "apiKey", c->rh->api_key, "taskId", c->task_id);
}

static int
rh_cancel(void *impl, const char *task_id, provider_cb cb, void *arg)
{
	struct call *c = call_new(impl, arg);

	c->cb = cb;
	c->task_id = xstrdup(task_id);
	if (call_post_json(
	        c, "/task/openapi/cancel", task_body(c), cancel_done) < 0) {
		call_free(c);
		return -1;
	}
	return 0;
}

/* ---- the account's running tasks ---- */

static void
account_done(struct call *c, CURLcode rc)
{
	struct provider_result res;
	json_t *root, *data, *n;
	char *num = NULL;
	long long v;

	call_answer(c, rc, &res, &root, &data);
	if (res.rc == PROVIDER_OK) {
		n = json_object_get(data, "remainCoins");
		if (json_is_string(n) && json_string_length(n) > 0)
			res.coins = json_string_value(n);
		else if (json_is_integer(n))
			res.coins = num =
			    xasprintf("%lld", (long long)json_integer_value(n));
		n = json_object_get(data, "currentTaskCounts");
		if (json_is_integer(n) && json_integer_value(n) >= 0) {
			res.count = (long)json_integer_value(n);
		} else if (json_is_string(n) &&
		           parse_ll(json_string_value(n), &v) == 0 && v >= 0) {
			res.count = (long)v;
		} else {
			res.rc = PROVIDER_RETRY;
			res.message = "the account answer has no task count";
		}
	}
	call_finish(c, &res);
	free(num);
	json_decref(root);
}

static int
rh_tasks(void *impl, provider_cb cb, void *arg)
{
	struct call *c = call_new(impl, arg);

	c->cb = cb;
	if (call_post_json(c, "/uc/openapi/accountStatus",
	        json_pack("{s:s}", "apikey", c->rh->api_key),
	        account_done) < 0) {
		call_free(c);
		return -1;
	}
	return 0;
}

/* ---- poll: status, then outputs ---- */

static void
outputs_done(struct call *c, CURLcode rc)
{
	struct provider_outcome out = {.state = TASK_UNKNOWN};
	struct provider_result res;
	json_t *root, *data;

	call_answer(c, rc, &res, &root, &data);
	out.code = provider_result_code(&res);
	if (rc == CURLE_OK && c->http >= 200 && c->http <= 299)
		runninghub_outcome(root, &out);
	if (out.state == TASK_UNKNOWN)
		out.message = xstrdup_or_null(res.message);
	json_decref(root);
	poll_finish(c, &out);
}

static void
status_done(struct call *c, CURLcode rc)
{
	struct provider_outcome out = {.state = TASK_UNKNOWN};
	struct provider_result res;
	json_t *root, *data;
	const char *status;

	call_answer(c, rc, &res, &root, &data);
	out.code = provider_result_code(&res);
	status = res.rc == PROVIDER_OK ? json_string_value(data) : NULL;
	if (status == NULL) {
		out.message = xstrdup(
		    res.message != NULL
		        ? res.message
		        : "the provider's status answer is not understood");
	} else if (!strcmp(status, "QUEUED") || !strcmp(status, "RUNNING")) {
		out.state = TASK_RUNNING;
	} else if (!strcmp(status, "SUCCESS") || !strcmp(status, "FAILED")) {
		json_decref(root);
		if (call_post_json(c, "/task/openapi/outputs", task_body(c),
		        outputs_done) == 0)
			return;
		out.message = xstrdup("cannot start a transfer");
		poll_finish(c, &out);
		return;
	} else {
		out.message = xasprintf("unknown task status %s", status);
	}
	json_decref(root);
	poll_finish(c, &out);
}

static int
rh_poll(void *impl, const char *task_id, provider_poll_cb cb, void *arg)
{
	struct call *c = call_new(impl, arg);

	c->poll_cb = cb;
	c->task_id = xstrdup(task_id);
	if (call_post_json(
	        c, "/task/openapi/status", task_body(c), status_done) < 0) {
		call_free(c);
		return -1;
	}
	return 0;
}

/* ---- webhook callbacks ---- */

/* eventData as an object: given as one, or as a JSON string of one. */
static json_t *
event_data(json_t *v, char *err, size_t errlen)
{
	json_error_t je;
	json_t *ev;

	if (json_is_object(v))
		return json_incref(v);
	if (!json_is_string(v)) {
		snprintf(err, errlen,
		    "eventData is neither a string nor an "
		    "object");
		return NULL;
	}
	ev = jsonr_loadb(json_string_value(v), json_string_length(v), 0, &je);
	if (ev == NULL) {
		snprintf(err, errlen, "eventData is not JSON: %s", je.text);
		return NULL;
	}
	if (!json_is_object(ev)) {
		snprintf(err, errlen, "eventData is not a JSON object");
		json_decref(ev);
		return NULL;
	}
	return ev;
}

static int
rh_parse_callback(void *impl, const char *body, size_t len,
    struct provider_outcome *out, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root, *task, *ev = NULL;
	int rc = -1;

	root = jsonr_loadb(body != NULL ? body : "", len, 0, &je);
	if (root == NULL) {
		snprintf(err, errlen, "callback is not JSON: %s", je.text);
		return -1;
	}
	task = json_object_get(root, "taskId");
	if (!json_is_object(root))
		snprintf(err, errlen, "callback is not a JSON object");
	else if (json_string_length(task) == 0)
		snprintf(err, errlen, "callback has no taskId string");
	else if ((ev = event_data(json_object_get(root, "eventData"), err,
	              errlen)) != NULL) {
		out->task_id = xstrdup(json_string_value(task));
		runninghub_outcome(ev, out);
		rc = 0;
	}
	json_decref(ev);
	json_decref(root);
	return rc;
}

/* ---- the backend ---- */

static int
rh_pending(const void *impl)
{
	const struct rh *rh = impl;

	return rh->ncalls;
}

static void
rh_free(void *impl)
{
	struct rh *rh = impl;

	/* Out of the multi first: only then may the easies be cleaned up. */
	curlev_free(rh->cv);
	while (!list_empty(&rh->calls))
		call_free(list_entry(rh->calls.next, struct call, link));
	while (rh->nidle > 0)
		curl_easy_cleanup(rh->idle[--rh->nidle]);
	free(rh->base_url);
	free(rh->api_key);
	free(rh);
	curl_global_cleanup();
}

static const struct provider_ops rh_ops = {
    .name = "runninghub",
    .submit = rh_submit,
    .cancel = rh_cancel,
    .poll = rh_poll,
    .tasks = rh_tasks,
    .parse_callback = rh_parse_callback,
    .pending = rh_pending,
    .free = rh_free,
};

struct provider *
runninghub_new(struct event_base *base, const char *base_url,
    const char *api_key, long timeout_ms, char *err, size_t errlen)
{
	struct rh *rh;
	size_t n;

	if (base_url == NULL || *base_url == '\0' || api_key == NULL) {
		snprintf(err, errlen,
		    "runninghub: base_url and api_key are "
		    "required");
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "runninghub: curl_global_init failed");
		return NULL;
	}
	rh = xcalloc(1, sizeof(*rh));
	list_init(&rh->calls);
	rh->base = base;
	rh->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
	rh->api_key = xstrdup(api_key);
	n = strlen(base_url);
	while (n > 0 && base_url[n - 1] == '/')
		n--;
	rh->base_url = xstrndup(base_url, n);
	if ((rh->cv = curlev_new(base)) == NULL) {
		snprintf(err, errlen, "runninghub: cannot set up libcurl");
		rh_free(rh);
		return NULL;
	}
	return provider_new(&rh_ops, rh);
}
