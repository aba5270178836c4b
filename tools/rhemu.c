/*
 * rhemu.c — a RunningHub emulator for offline development, demos and tests.
 *
 * It answers RunningHub's OpenAPI (upload, ai-app/run, status, outputs,
 * cancel, accountStatus) from memory on one libevent loop. A task is a timer:
 * when it fires the task ends in success or failure, its answer envelope is
 * frozen on the task, and the TASK_END webhook carries that same envelope, so
 * polling and callbacks can never disagree.
 *
 * Every API key is an account with its own concurrency and coins: one
 * implicit account (any key, or --api-key) by default, or those of
 * --accounts. A successful task charges its account when it ends and reports
 * what it cost in its outputs.
 *
 * What a real provider does rarely, a test needs on demand: magic field
 * values (EMU_FAIL, EMU_REJECT) and the /emu/ control endpoints switch on a
 * full queue, failures, lost, late, duplicate or malformed webhooks, 500s,
 * hung requests, dropped connections, empty wallets, expired keys and any
 * answer code to the next submits. All state lives in one struct emu handed
 * to every callback; see tools/README.md for the contract.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#define NELEM(a) (sizeof(a) / sizeof *(a))
#define MAX_BODY (64L << 20)
#define WEBHOOK_TIMEOUT_S 10
#define DEFAULT_FAIL_MESSAGE                                                   \
	"Allocation on device 0 would exceed allowed memory. (out of memory)"
#define CANCEL_MESSAGE "Task cancelled by user"
#define TRACEBACK "Traceback (most recent call last): ..."
#define DEFAULT_COINS 99999 /* the implicit account's remainCoins, always */
#define DEFAULT_COST_COINS 10
#define DEFAULT_COST_MONEY "0.10"
#define PROMPT_TIPS                                                            \
	"{\"result\": true, \"error\": null, \"outputs_to_execute\": "         \
	"[\"9\"], \"node_errors\": {}}"

enum task_status { TASK_RUNNING, TASK_SUCCESS, TASK_FAILED, TASK_CANCELLED };
static const char *const task_status_names[] = {
    "RUNNING", "SUCCESS", "FAILED", "CANCELLED"};

enum hook_mode {
	HOOK_NORMAL,
	HOOK_DUPLICATE,
	HOOK_LOST,
	HOOK_LATE,
	HOOK_MALFORMED
};
static const char *const hook_mode_names[] = {
    "normal", "duplicate", "lost", "late", "malformed", NULL};

enum run_mode {
	RUN_NORMAL,
	RUN_BUSY,
	RUN_ERROR500,
	RUN_HANG,
	RUN_REFUSE,
	RUN_ACCEPT_HANG, /* the task starts, but the run call never answers */
};
static const char *const run_mode_names[] = {
    "normal", "busy", "error500", "hang", "refuse", "accept_hang", NULL};

/* What a key's account answers to every call made with it. */
enum key_state { KEY_OK, KEY_EXPIRED, KEY_REFUSED };
static const char *const key_state_names[] = {"ok", "expired", "refused", NULL};

/*
 * RunningHub's business codes and their msg (its API docs' error code
 * table): a forced answer without a msg gets this one.
 */
static const struct {
	int code;
	const char *msg;
} rh_codes[] = {
    {0, "success"},
    {301, "PARAMS_INVALID"},
    {380, "WORKFLOW_NOT_EXISTS"},
    {412, "TOKEN_INVALID"},
    {415, "TASK_INSTANCE_MAXED"},
    {416, "TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET"},
    {421, "TASK_QUEUE_MAXED"},
    {423, "TASK_NOT_FOUNED"},
    {433, "VALIDATE_PROMPT_FAILED"},
    {435, "TASK_USER_EXCLAPI_INSTANCE_NOT_FOUND"},
    {436, "TASK_USER_EXCLAPI_REQUIRED"},
    {500, "UNKNOWN_ERROR"},
    {801, "APIKEY_UNSUPPORTED_FREE_USER"},
    {802, "APIKEY_UNAUTHORIZED"},
    {803, "APIKEY_INVALID_NODE_INFO"},
    {804, "APIKEY_TASK_IS_RUNNING"},
    {805, "APIKEY_TASK_STATUS_ERROR"},
    {806, "APIKEY_USER_NOT_FOUND"},
    {807, "APIKEY_TASK_NOT_FOUND"},
    {808, "APIKEY_UPLOAD_FAILED"},
    {809, "APIKEY_FILE_SIZE_EXCEEDED"},
    {810, "WORKFLOW_NOT_SAVED_OR_NOT_RUNNING"},
    {811, "CORPAPIKEY_INVALID"},
    {812, "CORPAPIKEY_INSUFFICIENT_FUNDS"},
    {813, "APIKEY_TASK_IS_QUEUED"},
    {814, "PERSONAL_QUEUE_COUNT_LIMIT"},
    {901, "WEBAPP_NOT_EXISTS"},
    {1003, "Rate limit exceeded, please slow down requests"},
    {1011, "System is currently busy, please retry later"},
};

/* "Answer code with msg to the next count submits" (/emu/config "next"). */
struct forced {
	int code;
	char *msg;
	long count; /* 0: off */
};

/* What /emu/config changes; a running task keeps the duration and the cost
 * it began with. */
struct config {
	long concurrency;
	long duration_ms;
	double fail_rate;
	char *fail_message;
	int webhook;
	long webhook_delay_ms;
	int run_mode;
	long cost_coins;
	char *cost_money;
};

/* The counters of /emu/stats, zeroed by /emu/reset. */
struct counters {
	long submitted, accepted, refused_capacity, refused_wallet, rejected,
	    forced, completed, failed, cancelled, uploads, webhooks_sent,
	    webhook_errors;
};

/* A counter's name in /emu/stats and its place in its struct. */
struct counter_name {
	const char *name;
	size_t off;
};

static const struct counter_name counter_names[] = {
    {"submitted", offsetof(struct counters, submitted)},
    {"accepted", offsetof(struct counters, accepted)},
    {"refused_capacity", offsetof(struct counters, refused_capacity)},
    {"refused_wallet", offsetof(struct counters, refused_wallet)},
    {"rejected", offsetof(struct counters, rejected)},
    {"forced", offsetof(struct counters, forced)},
    {"completed", offsetof(struct counters, completed)},
    {"failed", offsetof(struct counters, failed)},
    {"cancelled", offsetof(struct counters, cancelled)},
    {"uploads", offsetof(struct counters, uploads)},
    {"webhooks_sent", offsetof(struct counters, webhooks_sent)},
    {"webhook_errors", offsetof(struct counters, webhook_errors)},
};

/* An uploaded or generated file, kept until exit and served by /files/. */
struct stored_file {
	char *name;
	unsigned char *data;
	size_t len;
	struct stored_file *next;
};

/* The counters of one account in /emu/stats, zeroed by /emu/reset. */
struct account_counters {
	long submitted, accepted, completed, failed, cancelled;
};

static const struct counter_name account_counter_names[] = {
    {"submitted", offsetof(struct account_counters, submitted)},
    {"accepted", offsetof(struct account_counters, accepted)},
    {"completed", offsetof(struct account_counters, completed)},
    {"failed", offsetof(struct account_counters, failed)},
    {"cancelled", offsetof(struct account_counters, cancelled)},
};

/*
 * One API key. Without --accounts there is one, implicit: its key is
 * --api-key (NULL: any non-empty key), its concurrency the configured one and
 * its coins unlimited. Accounts live until exit.
 */
struct account {
	char *key;
	long concurrency; /* --accounts only */
	long coins;       /* -1: unlimited */
	enum key_state state;
	struct forced next;
	struct account_counters n;
	long running, max_running;
	struct account *link;
};

struct task {
	struct emu *emu;
	struct account *acct;
	char id[20];
	char *webapp_id;
	json_t *nodes;
	char *webhook_url;
	enum task_status status;
	int listed; /* shown in /emu/stats: not ended before the last reset */
	struct timespec started;
	long cost_coins; /* what it costs if it succeeds */
	char *cost_money;
	struct event *timer; /* while running */
	json_t *result;      /* the outputs envelope once ended */
	struct task *next;
};

/* One webhook delivery: one or two POSTs sent one after the other. */
struct hook {
	struct emu *emu;
	char task_id[20];
	char *url;
	char *bodies[2];
	int nbodies, next;
	int posting, sync_done;          /* see hook_post() */
	struct event *timer;             /* "late" mode */
	struct evhttp_connection *evcon; /* while a POST is in flight */
	struct hook *link;
};

/* A request left unanswered ("hang", "refuse") until its connection goes. */
struct hang {
	struct emu *emu;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct event *watch;
	struct hang *link;
};

struct emu {
	struct event_base *base;
	struct evhttp *http;
	struct config cfg;
	struct counters n;
	long running, max_running;
	struct forced next;       /* of every submit, whatever its key */
	struct account *accounts; /* in --accounts order */
	int multi;                /* --accounts given */
	char *public_url;
	int quiet;
	uint64_t rng;
	struct task *tasks, *tasks_tail;
	struct stored_file *files;
	struct hook *hooks;
	struct hang *hangs;
};

/* One incoming request on its way through a handler. */
struct call {
	struct emu *emu;
	struct evhttp_request *req;
	const char *method;
	const char *path;
	json_t *body; /* RunningHub JSON endpoints only */
};

static const unsigned char png_1x1[] = {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a,
    0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00,
    0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
    0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0b, 0x49, 0x44, 0x41, 0x54, 0x78,
    0xda, 0x63, 0x60, 0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa,
    0xdc, 0xd8, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42,
    0x60, 0x82};

static const struct {
	const char *ext, *type;
} content_types[] = {
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"webp", "image/webp"},
    {"gif", "image/gif"},
    {"bmp", "image/bmp"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mov", "video/quicktime"},
    {"mp3", "audio/mpeg"},
    {"wav", "audio/wav"},
    {"json", "application/json"},
    {"txt", "text/plain"},
};

/* ---- small helpers: allocation aborts, logging, randomness ---- */

static void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		abort();
	return p;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p)
		abort();
	return p;
}

static char *
xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);

	if (!p)
		abort();
	return p;
}

static char *xasprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	return s;
}

static void emu_log(const struct emu *emu, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* One line on stderr, stamped with the wall clock, unless --quiet. */
static void
emu_log(const struct emu *emu, const char *fmt, ...)
{
	struct timeval tv;
	struct tm tm;
	va_list ap;

	if (emu->quiet)
		return;
	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	fprintf(stderr, "rhemu %02d:%02d:%02d.%03ld ", tm.tm_hour, tm.tm_min,
	    tm.tm_sec, (long)tv.tv_usec / 1000);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* splitmix64: one seed (--seed) replays the same ids and failures. */
static uint64_t
rng_next(struct emu *emu)
{
	uint64_t z = (emu->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1), so a fail_rate of 1 always fails and 0 never does. */
static double
rng_unit(struct emu *emu)
{
	return (double)(rng_next(emu) >> 11) * 0x1.0p-53;
}

static void
rng_hex(struct emu *emu, char *out, size_t ndigits)
{
	static const char digits[] = "0123456789abcdef";
	uint64_t r = 0;

	for (size_t i = 0; i < ndigits; i++) {
		if (i % 16 == 0)
			r = rng_next(emu);
		out[i] = digits[r & 15];
		r >>= 4;
	}
	out[ndigits] = '\0';
}

static long
elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - since->tv_sec) * 1000 +
	       (now.tv_nsec - since->tv_nsec) / 1000000;
}

static struct timeval
ms_to_tv(long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	return tv;
}

/* ---- stored files ---- */

/* The extension of a file name (after the last '.' of its last segment),
 * or "" when it has none. */
static const char *
ext_of(const char *name)
{
	const char *slash = strrchr(name, '/');
	const char *dot = strrchr(slash ? slash + 1 : name, '.');

	return dot ? dot + 1 : "";
}

static const char *
content_type_of(const char *name)
{
	const char *ext = ext_of(name);

	for (size_t i = 0; i < sizeof content_types / sizeof *content_types;
	     i++)
		if (strcasecmp(ext, content_types[i].ext) == 0)
			return content_types[i].type;
	return "application/octet-stream";
}

static struct stored_file *
file_find(struct emu *emu, const char *name)
{
	for (struct stored_file *f = emu->files; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* Keep a copy of data under a fresh name "<dir>/<24 hex>.<ext>". */
static struct stored_file *
file_store(struct emu *emu, const char *dir, const char *ext, const void *data,
    size_t len)
{
	struct stored_file *f = xcalloc(1, sizeof *f);
	char hex[25];

	do {
		free(f->name);
		rng_hex(emu, hex, 24);
		f->name = xasprintf("%s/%s.%s", dir, hex, ext);
	} while (file_find(emu, f->name));
	f->data = xcalloc(1, len);
	memcpy(f->data, data, len);
	f->len = len;
	f->next = emu->files;
	emu->files = f;
	return f;
}

/* ---- answers ---- */

static void
send_body(struct evhttp_request *req, int status, const char *ctype,
    const void *data, size_t len)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);

	evhttp_add_header(headers, "Content-Type", ctype);
	evbuffer_add(evhttp_request_get_output_buffer(req), data, len);
	evhttp_send_reply(req, status, NULL, NULL);
}

static void
send_json(struct evhttp_request *req, int status, json_t *obj)
{
	char *text = json_dumps(obj, JSON_COMPACT);

	send_body(req, status, "application/json", text, strlen(text));
	free(text);
}

/* Answer with obj (a reference is taken over) and log the HTTP status. */
static void
reply_json(struct call *c, int status, json_t *obj)
{
	emu_log(c->emu, "%s %s -> HTTP %d", c->method, c->path, status);
	send_json(c->req, status, obj);
	json_decref(obj);
}

static void
reply_error(struct call *c, int status, const char *msg)
{
	reply_json(c, status, json_pack("{s:s}", "error", msg));
}

static json_t *
envelope(int code, const char *msg, json_t *data)
{
	return json_pack("{s:i, s:s, s:o}", "code", code, "msg", msg, "data",
	    data ? data : json_null());
}

/* Answer a RunningHub envelope (reference taken over): HTTP 200 always. */
static void
reply_env(struct call *c, json_t *env)
{
	emu_log(c->emu, "%s %s -> code %d %s", c->method, c->path,
	    (int)json_integer_value(json_object_get(env, "code")),
	    json_string_value(json_object_get(env, "msg")));
	send_json(c->req, 200, env);
	json_decref(env);
}

static void
reply_envelope(struct call *c, int code, const char *msg, json_t *data)
{
	reply_env(c, envelope(code, msg, data));
}

static json_t *
failure_envelope(const char *message)
{
	json_t *reason =
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "node_name", "KSampler",
	        "node_id", "3", "exception_type", "torch.OutOfMemoryError",
	        "exception_message", message, "traceback", TRACEBACK);

	return envelope(805, "APIKEY_TASK_STATUS_ERROR",
	    json_pack("{s:o}", "failedReason", reason));
}

/* ---- hung and refused requests ---- */

/* The connection is going away, whoever closes it: forget the request. A
 * request libevent already detached from it is ours to free; one still
 * attached is freed by libevent right after this callback. */
static void
hang_closed(struct evhttp_connection *evcon, void *arg)
{
	struct hang *h = arg;
	struct hang **pp = &h->emu->hangs;

	while (*pp && *pp != h)
		pp = &(*pp)->link;
	if (*pp)
		*pp = h->link;
	event_free(h->watch);
	if (evhttp_request_get_connection(h->req) == NULL)
		evhttp_request_free(h->req);
	emu_log(h->emu, "unanswered request dropped: connection closed");
	free(h);
}

/* evhttp stops reading once a request is in, so this watch is how we learn
 * that the client went away (or that "refuse" shut the socket). */
static void
hang_readable(evutil_socket_t fd, short what, void *arg)
{
	struct hang *h = arg;
	char byte;
	ssize_t n = recv(fd, &byte, 1, MSG_PEEK);

	if (n > 0) {
		event_del(h->watch);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	evhttp_connection_free(h->evcon);
}

/* Leave c's request unanswered; with refuse, also close the connection. */
static void
hang_start(struct call *c, int refuse)
{
	struct hang *h = xcalloc(1, sizeof *h);
	struct bufferevent *bev;
	evutil_socket_t fd;

	h->emu = c->emu;
	h->req = c->req;
	h->evcon = evhttp_request_get_connection(c->req);
	bev = evhttp_connection_get_bufferevent(h->evcon);
	fd = bufferevent_getfd(bev);
	h->watch =
	    event_new(c->emu->base, fd, EV_READ | EV_PERSIST, hang_readable, h);
	event_add(h->watch, NULL);
	evhttp_connection_set_closecb(h->evcon, hang_closed, h);
	h->link = c->emu->hangs;
	c->emu->hangs = h;
	emu_log(c->emu, "%s %s -> %s", c->method, c->path,
	    refuse ? "connection closed (run_mode refuse)"
	           : "no answer (run_mode hang)");
	if (refuse)
		shutdown(fd, SHUT_RDWR);
}

/* Apply error500, hang and refuse; 1 when the request was dealt with. */
static int
run_mode_applied(struct call *c)
{
	static const char text[] = "internal error";

	switch (c->emu->cfg.run_mode) {
	case RUN_ERROR500:
		emu_log(c->emu, "%s %s -> HTTP 500 (run_mode error500)",
		    c->method, c->path);
		send_body(c->req, 500, "text/plain", text, sizeof text - 1);
		return 1;
	case RUN_HANG:
		hang_start(c, 0);
		return 1;
	case RUN_REFUSE:
		hang_start(c, 1);
		return 1;
	default:
		return 0;
	}
}

/* ---- webhooks ---- */

static void hook_next(struct hook *h);

static void
hook_free(struct hook *h)
{
	struct hook **pp = &h->emu->hooks;

	while (*pp && *pp != h)
		pp = &(*pp)->link;
	if (*pp)
		*pp = h->link;
	if (h->timer)
		event_free(h->timer);
	if (h->evcon)
		evhttp_connection_free(h->evcon);
	free(h->bodies[0]);
	free(h->bodies[1]);
	free(h->url);
	free(h);
}

static void
connection_free_later(evutil_socket_t fd, short what, void *arg)
{
	evhttp_connection_free(arg);
}

/*
 * Any HTTP answer counts as delivered; no answer is an error, not retried.
 * libevent frees the connection after this returns, except when it could
 * not connect (a request without a status, not NULL): libevent 2.1 then
 * keeps the connection, and it is freed once this callback is over.
 */
static void
hook_done(struct evhttp_request *req, void *arg)
{
	static const struct timeval now = {0, 0};
	struct hook *h = arg;
	int status = req ? evhttp_request_get_response_code(req) : 0;

	if (h->posting) {
		h->sync_done = 1;
		return;
	}
	if (req && status == 0)
		event_base_once(h->emu->base, -1, EV_TIMEOUT,
		    connection_free_later, h->evcon, &now);
	h->evcon = NULL;
	if (status > 0) {
		h->emu->n.webhooks_sent++;
		emu_log(h->emu, "webhook task %s -> %s: HTTP %d", h->task_id,
		    h->url, status);
	} else {
		h->emu->n.webhook_errors++;
		emu_log(h->emu, "webhook task %s -> %s: not delivered",
		    h->task_id, h->url);
	}
	hook_next(h);
}

static void
hook_headers(struct evhttp_request *req, const struct evhttp_uri *uri, int port)
{
	struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
	char *host = xasprintf("%s:%d", evhttp_uri_get_host(uri), port);

	evhttp_add_header(headers, "Host", host);
	evhttp_add_header(headers, "Content-Type", "application/json");
	/* so that libevent frees the connection once the answer is in */
	evhttp_add_header(headers, "Connection", "close");
	free(host);
}

/*
 * Start POSTing body to h->url; 0 when it is in flight (hook_done follows).
 * libevent may report a failure from inside evhttp_make_request(); posting
 * turns that into a plain -1 here so the failure is counted once.
 */
static int
hook_post(struct hook *h, const char *body)
{
	struct evhttp_uri *uri = evhttp_uri_parse(h->url);
	struct evhttp_connection *evcon = NULL;
	struct evhttp_request *req;
	const char *scheme, *host, *path, *query;
	char *target = NULL;
	int port, rc;

	if (!uri)
		goto fail;
	scheme = evhttp_uri_get_scheme(uri);
	host = evhttp_uri_get_host(uri);
	if (!scheme || strcasecmp(scheme, "http") != 0 || !host || !*host)
		goto fail;
	port = evhttp_uri_get_port(uri) < 0 ? 80 : evhttp_uri_get_port(uri);
	path = evhttp_uri_get_path(uri);
	query = evhttp_uri_get_query(uri);
	target = xasprintf("%s%s%s", path && *path ? path : "/",
	    query ? "?" : "", query ? query : "");
	evcon = evhttp_connection_base_new(h->emu->base, NULL, host, port);
	if (!evcon)
		goto fail;
	evhttp_connection_set_timeout(evcon, WEBHOOK_TIMEOUT_S);
	req = evhttp_request_new(hook_done, h);
	hook_headers(req, uri, port);
	evbuffer_add(evhttp_request_get_output_buffer(req), body, strlen(body));
	h->posting = 1;
	h->sync_done = 0;
	rc = evhttp_make_request(evcon, req, EVHTTP_REQ_POST, target);
	h->posting = 0;
	if (rc != 0 || h->sync_done)
		goto fail;
	evhttp_connection_free_on_completion(evcon);
	h->evcon = evcon;
	free(target);
	evhttp_uri_free(uri);
	return 0;
fail:
	if (evcon)
		evhttp_connection_free(evcon);
	free(target);
	if (uri)
		evhttp_uri_free(uri);
	return -1;
}

/* Send the next body of h; when none is left, h is freed. */
static void
hook_next(struct hook *h)
{
	while (h->next < h->nbodies) {
		if (hook_post(h, h->bodies[h->next++]) == 0)
			return;
		h->emu->n.webhook_errors++;
		emu_log(h->emu, "webhook task %s -> %s: cannot send",
		    h->task_id, h->url);
	}
	hook_free(h);
}

static void
hook_fire(evutil_socket_t fd, short what, void *arg)
{
	struct hook *h = arg;

	event_free(h->timer);
	h->timer = NULL;
	hook_next(h);
}

static char *
hook_body(const struct task *t)
{
	char *data = json_dumps(t->result, JSON_COMPACT);
	json_t *obj = json_pack("{s:s, s:s, s:s}", "event", "TASK_END",
	    "taskId", t->id, "eventData", data);
	char *body = json_dumps(obj, JSON_COMPACT);

	json_decref(obj);
	free(data);
	return body;
}

/* Deliver the TASK_END callback of ended task t as the webhook mode says. */
static void
hook_schedule(struct emu *emu, const struct task *t)
{
	int mode = emu->cfg.webhook;
	struct hook *h;
	struct timeval tv;

	if (!t->webhook_url || !*t->webhook_url)
		return;
	if (mode == HOOK_LOST) {
		emu_log(emu, "webhook task %s dropped (webhook lost)", t->id);
		return;
	}
	h = xcalloc(1, sizeof *h);
	h->emu = emu;
	memcpy(h->task_id, t->id, sizeof h->task_id);
	h->url = xstrdup(t->webhook_url);
	h->bodies[h->nbodies++] =
	    mode == HOOK_MALFORMED ? xstrdup("{not json") : hook_body(t);
	if (mode == HOOK_MALFORMED || mode == HOOK_DUPLICATE)
		h->bodies[h->nbodies++] = hook_body(t);
	h->link = emu->hooks;
	emu->hooks = h;
	if (mode != HOOK_LATE) {
		hook_next(h);
		return;
	}
	tv = ms_to_tv(emu->cfg.webhook_delay_ms);
	h->timer = evtimer_new(emu->base, hook_fire, h);
	evtimer_add(h->timer, &tv);
}

/* ---- tasks ---- */

static struct task *
task_find(struct emu *emu, const char *id)
{
	for (struct task *t = emu->tasks; t; t = t->next)
		if (strcmp(t->id, id) == 0)
			return t;
	return NULL;
}

/* 1 when some fieldValue of nodes is a string containing needle. */
static int
nodes_contain(json_t *nodes, const char *needle)
{
	size_t i;
	json_t *node;

	json_array_foreach(nodes, i, node)
	{
		const char *v =
		    json_string_value(json_object_get(node, "fieldValue"));

		if (v && strstr(v, needle))
			return 1;
	}
	return 0;
}

/* The output file: the first fieldValue naming an uploaded file, else a
 * fresh 1x1 PNG. */
static struct stored_file *
task_output_file(struct emu *emu, struct task *t)
{
	size_t i;
	json_t *node;

	json_array_foreach(t->nodes, i, node)
	{
		const char *v =
		    json_string_value(json_object_get(node, "fieldValue"));
		struct stored_file *f = v ? file_find(emu, v) : NULL;

		if (f)
			return f;
	}
	return file_store(emu, "output", "png", png_1x1, sizeof png_1x1);
}

/* RunningHub reports, per output item, the seconds the task ran and what it
 * cost, all as strings. */
static json_t *
success_envelope(struct emu *emu, struct task *t)
{
	struct stored_file *f = task_output_file(emu, t);
	char *url = xasprintf("%s/files/%s", emu->public_url, f->name);
	char *secs = xasprintf("%ld", (elapsed_ms(&t->started) + 500) / 1000);
	char *coins = xasprintf("%ld", t->cost_coins);
	json_t *out = json_pack("[{s:s, s:s, s:s, s:s, s:n, s:s, s:s}]",
	    "fileUrl", url, "fileType", ext_of(f->name), "taskCostTime", secs,
	    "nodeId", "9", "thirdPartyConsumeMoney", "consumeMoney",
	    t->cost_money, "consumeCoins", coins);

	free(url);
	free(secs);
	free(coins);
	return envelope(0, "success", out);
}

/* A task that succeeded costs its account its coins, never below 0. */
static void
task_charge(struct task *t)
{
	struct account *a = t->acct;

	if (a->coins < 0)
		return;
	a->coins = a->coins > t->cost_coins ? a->coins - t->cost_coins : 0;
	emu_log(t->emu, "task %s cost %ld coins: %ld left", t->id,
	    t->cost_coins, a->coins);
}

static void
task_due(evutil_socket_t fd, short what, void *arg)
{
	struct task *t = arg;
	struct emu *emu = t->emu;
	int fail = nodes_contain(t->nodes, "EMU_FAIL") ||
	           rng_unit(emu) < emu->cfg.fail_rate;

	event_free(t->timer);
	t->timer = NULL;
	emu->running--;
	t->acct->running--;
	if (fail) {
		t->status = TASK_FAILED;
		t->result = failure_envelope(emu->cfg.fail_message);
		emu->n.failed++;
		t->acct->n.failed++;
	} else {
		t->status = TASK_SUCCESS;
		t->result = success_envelope(emu, t);
		emu->n.completed++;
		t->acct->n.completed++;
		task_charge(t);
	}
	emu_log(emu, "task %s %s", t->id, fail ? "failed" : "succeeded");
	hook_schedule(emu, t);
}

static void
count_running(long *running, long *max_running)
{
	if (++*running > *max_running)
		*max_running = *running;
}

static struct task *
task_start(struct emu *emu, struct account *a, const char *webapp_id,
    json_t *nodes, const char *webhook_url)
{
	struct task *t = xcalloc(1, sizeof *t);
	struct timeval tv = ms_to_tv(emu->cfg.duration_ms);

	t->emu = emu;
	t->acct = a;
	t->cost_coins = emu->cfg.cost_coins;
	t->cost_money = xstrdup(emu->cfg.cost_money);
	do
		snprintf(t->id, sizeof t->id, "19%017" PRIu64,
		    rng_next(emu) % (uint64_t)100000000000000000ULL);
	while (task_find(emu, t->id));
	t->webapp_id = xstrdup(webapp_id);
	t->nodes = json_deep_copy(nodes);
	t->webhook_url = xstrdup(webhook_url);
	t->listed = 1;
	clock_gettime(CLOCK_MONOTONIC, &t->started);
	t->timer = evtimer_new(emu->base, task_due, t);
	evtimer_add(t->timer, &tv);
	if (emu->tasks_tail)
		emu->tasks_tail->next = t;
	else
		emu->tasks = t;
	emu->tasks_tail = t;
	emu->n.accepted++;
	a->n.accepted++;
	count_running(&emu->running, &emu->max_running);
	count_running(&a->running, &a->max_running);
	emu_log(emu, "task %s started (webapp %s, %ld ms)", t->id, webapp_id,
	    emu->cfg.duration_ms);
	return t;
}

/* Stop running task t at once: no webhook, its place is free again. */
static void
task_cancel(struct task *t)
{
	struct emu *emu = t->emu;

	event_free(t->timer);
	t->timer = NULL;
	t->status = TASK_CANCELLED;
	t->result = failure_envelope(CANCEL_MESSAGE);
	emu->running--;
	emu->n.cancelled++;
	t->acct->running--;
	t->acct->n.cancelled++;
	emu_log(emu, "task %s cancelled", t->id);
}

static void
task_free(struct task *t)
{
	if (t->timer)
		event_free(t->timer);
	json_decref(t->nodes);
	json_decref(t->result);
	free(t->webapp_id);
	free(t->webhook_url);
	free(t->cost_money);
	free(t);
}

/* A task in /emu/stats; with --accounts, with the key of its account. */
static json_t *
task_json(const struct task *t)
{
	json_t *obj = json_pack("{s:s, s:s, s:s, s:O, s:s}", "taskId", t->id,
	    "webappId", t->webapp_id, "status", task_status_names[t->status],
	    "nodeInfoList", t->nodes, "webhookUrl", t->webhook_url);

	if (t->emu->multi)
		json_object_set_new(obj, "account", json_string(t->acct->key));
	return obj;
}

/* ---- multipart/form-data ---- */

/* What an upload carried; pointers go into the request body. */
struct form {
	char *api_key;
	const char *file;
	size_t file_len;
	int has_file;
	char ext[9];
};

/* "--" plus the boundary of a multipart/form-data Content-Type, preceded
 * by CRLF (as it appears between parts); -1 when there is none. */
static int
form_delimiter(const char *ctype, char *out, size_t outlen)
{
	const char *b;
	size_t n;

	if (!ctype || strncasecmp(ctype, "multipart/form-data", 19) != 0)
		return -1;
	b = strcasestr(ctype, "boundary=");
	if (!b)
		return -1;
	b += 9;
	if (*b == '"')
		n = strcspn(++b, "\"");
	else
		n = strcspn(b, "; \t");
	if (n == 0 || n + 5 > outlen)
		return -1;
	snprintf(out, outlen, "\r\n--%.*s", (int)n, b);
	return 0;
}

/* The value of parameter key in a Content-Disposition header, or NULL;
 * the caller frees it. "name" must not match inside "filename". */
static char *
header_param(const char *header, const char *key)
{
	size_t klen = strlen(key);

	for (const char *p = strcasestr(header, key); p;
	     p = strcasestr(p + 1, key)) {
		if (p == header || !strchr("; \t", p[-1]) || p[klen] != '=')
			continue;
		p += klen + 1;
		if (*p == '"')
			return xstrndup(p + 1, strcspn(p + 1, "\""));
		return xstrndup(p, strcspn(p, "; \t\r\n"));
	}
	return NULL;
}

/* The lowercased extension of an uploaded file name, "png" if unusable. */
static void
form_ext(const char *filename, char ext[9])
{
	const char *e = filename ? ext_of(filename) : "";
	size_t n = strlen(e);

	strcpy(ext, "png");
	if (n == 0 || n > 8)
		return;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)e[i]))
			return;
	for (size_t i = 0; i <= n; i++)
		ext[i] = (char)tolower((unsigned char)e[i]);
}

static void
form_part(struct form *f, const char *head, size_t head_len, const char *data,
    size_t len)
{
	char *headers = xstrndup(head, head_len);
	const char *cd = strcasestr(headers, "content-disposition:");
	char *name = cd ? header_param(cd, "name") : NULL;
	char *filename = cd ? header_param(cd, "filename") : NULL;

	if (name && strcmp(name, "file") == 0 && !f->has_file) {
		f->has_file = 1;
		f->file = data;
		f->file_len = len;
		form_ext(filename, f->ext);
	} else if (name && strcmp(name, "apiKey") == 0 && !f->api_key) {
		f->api_key = xstrndup(data, len);
	}
	free(filename);
	free(name);
	free(headers);
}

/* Hand each part of body to form_part(). delim is CRLF "--" boundary; the
 * first delimiter opens the body, so it is looked for without its CRLF. */
static void
form_parse(struct form *f, const char *body, size_t len, const char *delim)
{
	const char *end = body + len;
	size_t dlen = strlen(delim);
	const char *p = memmem(body, len, delim + 2, dlen - 2);

	if (!p)
		return;
	p += dlen - 2;
	while (end - p >= 2 && memcmp(p, "\r\n", 2) == 0) {
		const char *head = p + 2, *data, *next;

		data = memmem(head, end - head, "\r\n\r\n", 4);
		if (!data)
			return;
		next = memmem(data + 4, end - data - 4, delim, dlen);
		if (!next)
			return;
		form_part(f, head, data - head, data + 4, next - data - 4);
		p = next + dlen;
	}
}

/* ---- accounts ---- */

/* RunningHub's msg of code, or "ERROR" for a code it does not list. */
static const char *
code_msg(int code)
{
	for (size_t i = 0; i < NELEM(rh_codes); i++)
		if (rh_codes[i].code == code)
			return rh_codes[i].msg;
	return "ERROR";
}

/* The account of key, whatever its state, or NULL. */
static struct account *
account_find(struct emu *emu, const char *key)
{
	if (!key || !*key)
		return NULL;
	for (struct account *a = emu->accounts; a; a = a->link)
		if (!a->key || strcmp(a->key, key) == 0)
			return a;
	return NULL;
}

/* The tasks a can have at once: its own limit, or the configured one for
 * the implicit account. */
static long
account_limit(const struct emu *emu, const struct account *a)
{
	return emu->multi ? a->concurrency : emu->cfg.concurrency;
}

/* Put the account of key in *out, or answer why key is refused and return
 * 1: an unknown key is 412 as always without --accounts, 802 with. */
static int
key_refused(struct call *c, const char *key, struct account **out)
{
	struct account *a = account_find(c->emu, key);
	int code;

	if (!a)
		code = c->emu->multi ? 802 : 412;
	else if (a->state == KEY_EXPIRED)
		code = 802;
	else if (a->state == KEY_REFUSED)
		code = 801;
	else {
		*out = a;
		return 0;
	}
	reply_envelope(c, code, code_msg(code), NULL);
	return 1;
}

/* Answer the forced code of f if it has one left: 1 then. */
static int
forced_answer(struct call *c, struct forced *f)
{
	if (f->count <= 0)
		return 0;
	f->count--;
	c->emu->n.forced++;
	emu_log(c->emu, "forced answer (%ld more)", f->count);
	reply_envelope(c, f->code, f->msg, NULL);
	return 1;
}

/* ---- RunningHub endpoints ---- */

static const char *
body_key(const struct call *c)
{
	return json_string_value(json_object_get(c->body, "apiKey"));
}

/* The task named by the body's taskId (a string or a number), or NULL; with
 * --accounts, only a task of account a. */
static struct task *
body_task(struct call *c, const struct account *a)
{
	json_t *v = json_object_get(c->body, "taskId");
	struct task *t = NULL;
	char buf[32];

	if (json_is_integer(v)) {
		snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(v));
		t = task_find(c->emu, buf);
	} else if (json_is_string(v)) {
		t = task_find(c->emu, json_string_value(v));
	}
	return t && t->acct == a ? t : NULL;
}

static void
rh_upload(struct call *c)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(in);
	const char *ctype = evhttp_find_header(
	    evhttp_request_get_input_headers(c->req), "Content-Type");
	struct form f = {0};
	struct stored_file *file;
	struct account *a;
	char delim[128];

	if (len > 0 && form_delimiter(ctype, delim, sizeof delim) == 0)
		form_parse(
		    &f, (const char *)evbuffer_pullup(in, -1), len, delim);
	if (key_refused(c, f.api_key, &a)) {
		/* answered */
	} else if (!f.has_file) {
		reply_envelope(c, 1001, "file is required", NULL);
	} else {
		file = file_store(c->emu, "api", f.ext, f.file, f.file_len);
		c->emu->n.uploads++;
		reply_envelope(c, 0, "success",
		    json_pack("{s:s, s:s}", "fileName", file->name, "fileType",
		        "input"));
	}
	free(f.api_key);
}

/* The webappId as text (RunningHub takes a string or a number). */
static const char *
webapp_of(json_t *body, char *buf, size_t len)
{
	json_t *v = json_object_get(body, "webappId");

	if (json_is_integer(v)) {
		snprintf(
		    buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
		return buf;
	}
	if (json_is_string(v) && *json_string_value(v))
		return json_string_value(v);
	return NULL;
}

/* The last checks of a run by account a: node list, wallet, capacity. 1
 * when the run was refused (and answered). */
static int
run_refused(struct call *c, struct account *a, const char *webapp)
{
	struct emu *emu = c->emu;
	json_t *nodes = json_object_get(c->body, "nodeInfoList");

	if (!webapp || !json_is_array(nodes) ||
	    nodes_contain(nodes, "EMU_REJECT")) {
		emu->n.rejected++;
		reply_envelope(c, 803, code_msg(803), NULL);
		return 1;
	}
	if (a->coins >= 0 && a->coins < emu->cfg.cost_coins) {
		emu->n.refused_wallet++;
		reply_envelope(c, 416, code_msg(416), NULL);
		return 1;
	}
	if (a->running >= account_limit(emu, a)) {
		emu->n.refused_capacity++;
		reply_envelope(c, 421, code_msg(421), NULL);
		return 1;
	}
	return 0;
}

/* Checks in this order: run_mode busy, the forced answer of every submit,
 * the key, its account's forced answer, then run_refused(). */
static void
rh_run(struct call *c)
{
	struct emu *emu = c->emu;
	const char *hook =
	    json_string_value(json_object_get(c->body, "webhookUrl"));
	const char *webapp;
	struct account *a = account_find(emu, body_key(c));
	struct task *t;
	char buf[32], client[33];

	webapp = webapp_of(c->body, buf, sizeof buf);
	if (a)
		a->n.submitted++;
	if (emu->cfg.run_mode == RUN_BUSY) {
		emu->n.refused_capacity++;
		reply_envelope(c, 421, code_msg(421), NULL);
		return;
	}
	if (forced_answer(c, &emu->next))
		return;
	if (key_refused(c, body_key(c), &a)) {
		emu->n.rejected++;
		return;
	}
	if (forced_answer(c, &a->next) || run_refused(c, a, webapp))
		return;
	t = task_start(emu, a, webapp, json_object_get(c->body, "nodeInfoList"),
	    hook ? hook : "");
	if (emu->cfg.run_mode == RUN_ACCEPT_HANG) {
		/* The caller cannot know the task exists: a lost answer. */
		hang_start(c, 0);
		return;
	}
	rng_hex(emu, client, 32);
	reply_envelope(c, 0, "success",
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "taskId", t->id, "clientId",
	        client, "taskStatus", "RUNNING", "netWssUrl", "", "promptTips",
	        PROMPT_TIPS));
}

static void
rh_status(struct call *c)
{
	struct account *a;
	struct task *t;

	if (key_refused(c, body_key(c), &a))
		return;
	t = body_task(c, a);
	if (!t) {
		reply_envelope(c, 807, code_msg(807), NULL);
		return;
	}
	reply_envelope(c, 0, "success",
	    json_string(t->status == TASK_CANCELLED
	                    ? "FAILED"
	                    : task_status_names[t->status]));
}

static void
rh_outputs(struct call *c)
{
	struct account *a;
	struct task *t;

	if (key_refused(c, body_key(c), &a))
		return;
	t = body_task(c, a);
	if (!t)
		reply_envelope(c, 807, code_msg(807), NULL);
	else if (t->status == TASK_RUNNING)
		reply_envelope(c, 804, code_msg(804), NULL);
	else
		reply_env(c, json_incref(t->result));
}

static void
rh_cancel(struct call *c)
{
	struct account *a;
	struct task *t;

	if (key_refused(c, body_key(c), &a))
		return;
	t = body_task(c, a);
	if (!t) {
		reply_envelope(c, 807, code_msg(807), NULL);
		return;
	}
	if (t->status == TASK_RUNNING)
		task_cancel(t);
	reply_envelope(c, 0, "success", NULL);
}

/* RunningHub's body names the key "apikey" here; "apiKey" is taken too. The
 * implicit account always has DEFAULT_COINS. */
static void
rh_account(struct call *c)
{
	json_t *key = json_object_get(c->body, "apikey");
	struct account *a;
	char coins[32], running[32];

	if (!key)
		key = json_object_get(c->body, "apiKey");
	if (key_refused(c, json_string_value(key), &a))
		return;
	snprintf(coins, sizeof coins, "%ld",
	    a->coins < 0 ? (long)DEFAULT_COINS : a->coins);
	snprintf(running, sizeof running, "%ld", a->running);
	reply_envelope(c, 0, "success",
	    json_pack("{s:s, s:s, s:s, s:s, s:s}", "remainCoins", coins,
	        "currentTaskCounts", running, "remainMoney", "100.00",
	        "currency", "CNY", "apiType", "NORMAL"));
}

static void
files_get(struct call *c)
{
	struct stored_file *f = file_find(c->emu, c->path + strlen("/files/"));
	struct evkeyvalq *headers = evhttp_request_get_output_headers(c->req);

	if (!f) {
		reply_error(c, 404, "not found");
		return;
	}
	emu_log(c->emu, "%s %s -> HTTP 200 (%zu bytes)", c->method, c->path,
	    f->len);
	evhttp_add_header(headers, "Content-Type", content_type_of(f->name));
	evhttp_add_header(headers, "Access-Control-Allow-Origin", "*");
	/* files live until exit, so the answer can point at them */
	evbuffer_add_reference(evhttp_request_get_output_buffer(c->req),
	    f->data, f->len, NULL, NULL);
	evhttp_send_reply(c->req, 200, NULL, NULL);
}

/* ---- control endpoints ---- */

/* Add to obj one integer per counter of names, read from the struct at n. */
static void
counters_add(
    json_t *obj, const void *n, const struct counter_name *names, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		const long *v = (const long *)((const char *)n + names[i].off);

		json_object_set_new(obj, names[i].name, json_integer(*v));
	}
}

static json_t *
account_stats(const struct account *a)
{
	json_t *obj = json_object();

	counters_add(
	    obj, &a->n, account_counter_names, NELEM(account_counter_names));
	json_object_set_new(obj, "running", json_integer(a->running));
	json_object_set_new(obj, "max_running", json_integer(a->max_running));
	json_object_set_new(obj, "coins", json_integer(a->coins));
	return obj;
}

static json_t *
stats_json(const struct emu *emu)
{
	json_t *stats = json_object();
	json_t *tasks = json_array();
	json_t *accounts = json_object();

	json_object_set_new(stats, "running", json_integer(emu->running));
	json_object_set_new(
	    stats, "max_running", json_integer(emu->max_running));
	counters_add(stats, &emu->n, counter_names, NELEM(counter_names));
	for (const struct task *t = emu->tasks; t; t = t->next)
		if (t->listed)
			json_array_append_new(tasks, task_json(t));
	json_object_set_new(stats, "tasks", tasks);
	for (const struct account *a = emu->accounts; emu->multi && a;
	     a = a->link)
		json_object_set_new(accounts, a->key, account_stats(a));
	json_object_set_new(stats, "accounts", accounts);
	return stats;
}

static void
emu_stats(struct call *c)
{
	reply_json(c, 200, stats_json(c->emu));
}

/* Tasks already ended leave the stats list; running ones stay in it. */
static void
emu_reset(struct call *c)
{
	struct emu *emu = c->emu;

	memset(&emu->n, 0, sizeof emu->n);
	emu->max_running = emu->running;
	for (struct account *a = emu->accounts; a; a = a->link) {
		memset(&a->n, 0, sizeof a->n);
		a->max_running = a->running;
	}
	for (struct task *t = emu->tasks; t; t = t->next)
		if (t->status != TASK_RUNNING)
			t->listed = 0;
	emu_log(emu, "counters reset");
	reply_json(c, 200, stats_json(emu));
}

enum conf_kind { CONF_COUNT, CONF_RATE, CONF_TEXT, CONF_MONEY, CONF_CHOICE };

static const struct conf_key {
	const char *name;
	enum conf_kind kind;
	size_t off;
	const char *const *choices;
} conf_keys[] = {
    {"concurrency", CONF_COUNT, offsetof(struct config, concurrency), NULL},
    {"duration_ms", CONF_COUNT, offsetof(struct config, duration_ms), NULL},
    {"fail_rate", CONF_RATE, offsetof(struct config, fail_rate), NULL},
    {"fail_message", CONF_TEXT, offsetof(struct config, fail_message), NULL},
    {"webhook", CONF_CHOICE, offsetof(struct config, webhook), hook_mode_names},
    {"webhook_delay_ms", CONF_COUNT, offsetof(struct config, webhook_delay_ms),
        NULL},
    {"run_mode", CONF_CHOICE, offsetof(struct config, run_mode),
        run_mode_names},
    {"cost_coins", CONF_COUNT, offsetof(struct config, cost_coins), NULL},
    {"cost_money", CONF_MONEY, offsetof(struct config, cost_money), NULL},
};

static int
choice_index(const char *const *choices, const char *s)
{
	for (int i = 0; s && choices[i]; i++)
		if (strcmp(choices[i], s) == 0)
			return i;
	return -1;
}

/* A decimal amount of money as RunningHub writes it: "12", "0.10". */
static int
money_valid(const char *s)
{
	size_t whole = strspn(s, "0123456789");

	if (whole == 0 || strlen(s) > 24)
		return 0;
	if (s[whole] == '\0')
		return 1;
	return s[whole] == '.' && s[whole + 1] &&
	       s[whole + 1 + strspn(s + whole + 1, "0123456789")] == '\0';
}

/* Set one key of cfg from v; -1 with err filled when v does not fit. A
 * CONF_TEXT or CONF_MONEY value points into v until the caller copies it. */
static int
conf_set(struct config *cfg, const struct conf_key *k, json_t *v, char *err,
    size_t errlen)
{
	char *field = (char *)cfg + k->off;
	int i;

	switch (k->kind) {
	case CONF_COUNT:
		if (!json_is_integer(v) || json_integer_value(v) < 0)
			break;
		*(long *)field = (long)json_integer_value(v);
		return 0;
	case CONF_RATE:
		if (!json_is_number(v) || json_number_value(v) < 0 ||
		    json_number_value(v) > 1)
			break;
		*(double *)field = json_number_value(v);
		return 0;
	case CONF_MONEY:
		if (!json_is_string(v) || !money_valid(json_string_value(v)))
			break;
		*(const char **)field = json_string_value(v);
		return 0;
	case CONF_TEXT:
		if (!json_is_string(v))
			break;
		*(const char **)field = json_string_value(v);
		return 0;
	case CONF_CHOICE:
		i = choice_index(k->choices, json_string_value(v));
		if (i < 0)
			break;
		*(int *)field = i;
		return 0;
	}
	snprintf(err, errlen, "bad value for %s", k->name);
	return -1;
}

/* A forced answer from v: null (none), or {"code": N, "msg"?: M,
 * "count"?: K (default 1)}. out->msg points into v, NULL when absent; err
 * may be NULL. */
static int
forced_parse(
    json_t *v, struct forced *out, const char *what, char *err, size_t errlen)
{
	json_t *code = json_object_get(v, "code");
	json_t *msg = json_object_get(v, "msg");
	json_t *count = json_object_get(v, "count");
	const char *key;
	json_t *field;

	memset(out, 0, sizeof *out);
	if (json_is_null(v))
		return 0;
	if (!json_is_object(v) || !json_is_integer(code) ||
	    json_integer_value(code) < INT_MIN ||
	    json_integer_value(code) > INT_MAX ||
	    (msg && !json_is_string(msg)) ||
	    (count &&
	        (!json_is_integer(count) || json_integer_value(count) < 0)))
		goto fail;
	json_object_foreach(v, key, field)
	{
		if (strcmp(key, "code") && strcmp(key, "msg") &&
		    strcmp(key, "count"))
			goto fail;
	}
	out->code = (int)json_integer_value(code);
	out->msg = (char *)json_string_value(msg);
	out->count = count ? (long)json_integer_value(count) : 1;
	return 0;
fail:
	snprintf(err, errlen, "bad value for %s", what);
	return -1;
}

/* Make dst a copy of src (from forced_parse()), with RunningHub's msg for
 * its code when src has none. */
static void
forced_set(struct forced *dst, const struct forced *src)
{
	free(dst->msg);
	dst->code = src->code;
	dst->count = src->count;
	dst->msg = xstrdup(src->msg ? src->msg : code_msg(src->code));
}

static json_t *
forced_json(const struct forced *f)
{
	if (f->count <= 0)
		return json_null();
	return json_pack("{s:i, s:s, s:I}", "code", f->code, "msg", f->msg,
	    "count", (json_int_t)f->count);
}

/* The integer setting of a named key, or NULL. */
static long *
account_count(struct account *a, const char *key)
{
	if (strcmp(key, "coins") == 0)
		return &a->coins;
	if (strcmp(key, "concurrency") == 0)
		return &a->concurrency;
	return NULL;
}

/* Check (apply 0) or make (apply 1) the change of one key of account a. */
static int
account_set(struct account *a, const char *key, json_t *x, int apply)
{
	long *count = account_count(a, key);
	struct forced f;
	int state;

	if (count) {
		if (!json_is_integer(x) || json_integer_value(x) < 0)
			return -1;
		if (apply)
			*count = (long)json_integer_value(x);
	} else if (strcmp(key, "state") == 0) {
		state = choice_index(key_state_names, json_string_value(x));
		if (state < 0)
			return -1;
		if (apply)
			a->state = (enum key_state)state;
	} else { /* "next" */
		if (forced_parse(x, &f, key, NULL, 0) < 0)
			return -1;
		if (apply)
			forced_set(&a->next, &f);
	}
	return 0;
}

/* Check (apply 0) or make (apply 1) the changes v asks of account a. */
static int
account_conf(struct account *a, json_t *v, int apply, char *err, size_t errlen)
{
	static const char *const keys[] = {
	    "coins", "concurrency", "state", "next", NULL};
	const char *key;
	json_t *x;

	if (!json_is_object(v)) {
		snprintf(err, errlen, "bad value for accounts.%s", a->key);
		return -1;
	}
	json_object_foreach(v, key, x)
	{
		if (choice_index(keys, key) < 0) {
			snprintf(err, errlen, "unknown key accounts.%s.%s",
			    a->key, key);
			return -1;
		}
		if (account_set(a, key, x, apply) < 0) {
			snprintf(err, errlen, "bad value for accounts.%s.%s",
			    a->key, key);
			return -1;
		}
	}
	return 0;
}

/* Check or make the changes of "accounts": {KEY: {...}, ...}; only the
 * accounts of --accounts can be named. */
static int
accounts_conf(struct emu *emu, json_t *v, int apply, char *err, size_t errlen)
{
	const char *key;
	json_t *x;

	if (!json_is_object(v)) {
		snprintf(err, errlen, "bad value for accounts");
		return -1;
	}
	json_object_foreach(v, key, x)
	{
		struct account *a = emu->multi ? account_find(emu, key) : NULL;

		if (!a) {
			snprintf(err, errlen, "unknown account %s", key);
			return -1;
		}
		if (account_conf(a, x, apply, err, errlen) < 0)
			return -1;
	}
	return 0;
}

static const struct conf_key *
conf_key_find(const char *name)
{
	for (size_t i = 0; i < NELEM(conf_keys); i++)
		if (strcmp(conf_keys[i].name, name) == 0)
			return &conf_keys[i];
	return NULL;
}

/* Keep a copy of a text the new configuration took from the request. */
static void
text_keep(char **next, char *cur)
{
	if (*next != cur) {
		*next = xstrdup(*next);
		free(cur);
	}
}

/* Check every key of body first (flat keys into a copy), so a bad request
 * changes nothing. */
static int
conf_apply(struct emu *emu, json_t *body, char *err, size_t errlen)
{
	struct config next = emu->cfg;
	json_t *forced_v = json_object_get(body, "next");
	json_t *accounts = json_object_get(body, "accounts");
	struct forced forced;
	const char *key;
	json_t *v;

	json_object_foreach(body, key, v)
	{
		const struct conf_key *k = conf_key_find(key);

		if (strcmp(key, "next") == 0 || strcmp(key, "accounts") == 0)
			continue;
		if (!k) {
			snprintf(err, errlen, "unknown key %s", key);
			return -1;
		}
		if (conf_set(&next, k, v, err, errlen) < 0)
			return -1;
	}
	if (forced_v &&
	    forced_parse(forced_v, &forced, "next", err, errlen) < 0)
		return -1;
	if (accounts && accounts_conf(emu, accounts, 0, err, errlen) < 0)
		return -1;
	text_keep(&next.fail_message, emu->cfg.fail_message);
	text_keep(&next.cost_money, emu->cfg.cost_money);
	emu->cfg = next;
	if (forced_v)
		forced_set(&emu->next, &forced);
	if (accounts)
		accounts_conf(emu, accounts, 1, err, errlen);
	return 0;
}

static json_t *
account_config_json(const struct account *a)
{
	return json_pack("{s:s, s:I, s:I, s:o}", "state",
	    key_state_names[a->state], "concurrency",
	    (json_int_t)a->concurrency, "coins", (json_int_t)a->coins, "next",
	    forced_json(&a->next));
}

static json_t *
config_json(const struct emu *emu)
{
	const struct config *cfg = &emu->cfg;
	json_t *accounts = json_object();

	for (const struct account *a = emu->accounts; emu->multi && a;
	     a = a->link)
		json_object_set_new(accounts, a->key, account_config_json(a));
	return json_pack("{s:I, s:I, s:f, s:s, s:s, s:I, s:s, s:I, s:s, s:o, "
	                 "s:o}",
	    "concurrency", (json_int_t)cfg->concurrency, "duration_ms",
	    (json_int_t)cfg->duration_ms, "fail_rate", cfg->fail_rate,
	    "fail_message", cfg->fail_message, "webhook",
	    hook_mode_names[cfg->webhook], "webhook_delay_ms",
	    (json_int_t)cfg->webhook_delay_ms, "run_mode",
	    run_mode_names[cfg->run_mode], "cost_coins",
	    (json_int_t)cfg->cost_coins, "cost_money", cfg->cost_money, "next",
	    forced_json(&emu->next), "accounts", accounts);
}

static void
emu_config(struct call *c)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(in);
	json_t *body = NULL;
	char err[160];

	if (len > 0) {
		body = json_loadb(
		    (const char *)evbuffer_pullup(in, -1), len, 0, NULL);
		if (!json_is_object(body)) {
			reply_error(c, 400, "invalid json");
			goto done;
		}
		if (conf_apply(c->emu, body, err, sizeof err) < 0) {
			reply_error(c, 400, err);
			goto done;
		}
	}
	reply_json(c, 200, config_json(c->emu));
done:
	json_decref(body);
}

/* ---- routing ---- */

enum {
	R_JSON = 1,   /* a RunningHub JSON body: "invalid json" envelope */
	R_MODED = 2,  /* run_mode error500, hang and refuse apply */
	R_SUBMIT = 4, /* counts as a run call */
	R_PREFIX = 8, /* path is a prefix */
};

static const struct route {
	const char *path;
	int methods;
	int flags;
	void (*fn)(struct call *c);
} routes[] = {
    {"/task/openapi/upload", EVHTTP_REQ_POST, R_MODED, rh_upload},
    {"/task/openapi/ai-app/run", EVHTTP_REQ_POST, R_JSON | R_MODED | R_SUBMIT,
        rh_run},
    {"/task/openapi/status", EVHTTP_REQ_POST, R_JSON, rh_status},
    {"/task/openapi/outputs", EVHTTP_REQ_POST, R_JSON, rh_outputs},
    {"/task/openapi/cancel", EVHTTP_REQ_POST, R_JSON, rh_cancel},
    {"/uc/openapi/accountStatus", EVHTTP_REQ_POST, R_JSON, rh_account},
    {"/files/", EVHTTP_REQ_GET | EVHTTP_REQ_HEAD, R_PREFIX, files_get},
    {"/emu/stats", EVHTTP_REQ_GET, 0, emu_stats},
    {"/emu/config", EVHTTP_REQ_GET | EVHTTP_REQ_POST, 0, emu_config},
    {"/emu/reset", EVHTTP_REQ_POST, 0, emu_reset},
};

static const struct route *
route_find(const char *path)
{
	for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
		const struct route *r = &routes[i];

		if (r->flags & R_PREFIX
		        ? strncmp(path, r->path, strlen(r->path)) == 0
		        : strcmp(path, r->path) == 0)
			return r;
	}
	return NULL;
}

static const char *
method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	default:
		return "OTHER";
	}
}

/* The decoded path of req; the caller frees it. */
static char *
request_path(struct evhttp_request *req)
{
	const char *raw =
	    evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	char *path = evhttp_uridecode(raw && *raw ? raw : "/", 0, NULL);

	return path ? path : xstrdup("/");
}

/* A RunningHub JSON body must be an object. */
static json_t *
body_json(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_t *body;

	if (len == 0)
		return NULL;
	body = json_loadb((const char *)evbuffer_pullup(in, -1), len, 0, NULL);
	if (body && !json_is_object(body)) {
		json_decref(body);
		body = NULL;
	}
	return body;
}

static void
on_request(struct evhttp_request *req, void *arg)
{
	struct emu *emu = arg;
	char *path = request_path(req);
	struct call c = {
	    emu, req, method_name(evhttp_request_get_command(req)), path, NULL};
	const struct route *r = route_find(path);

	if (!r) {
		reply_error(&c, 404, "not found");
		goto done;
	}
	if (!(r->methods & evhttp_request_get_command(req))) {
		reply_error(&c, 405, "method not allowed");
		goto done;
	}
	if (r->flags & R_SUBMIT)
		emu->n.submitted++;
	if ((r->flags & R_MODED) && run_mode_applied(&c))
		goto done;
	if ((r->flags & R_JSON) && !(c.body = body_json(req))) {
		if (r->flags & R_SUBMIT)
			emu->n.rejected++;
		reply_envelope(&c, 400, "invalid json", NULL);
		goto done;
	}
	r->fn(&c);
done:
	json_decref(c.body);
	free(path);
}

/* ---- start-up and shutdown ---- */

struct options {
	char host[256];
	int port;
	const char *public_url;
	const char *api_key;
	const char *accounts;
	const char *cost_money;
	long concurrency, duration_ms, cost_coins;
	double fail_rate;
	uint64_t seed;
	int has_seed, quiet;
};

static int
parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

/* HOST:PORT, HOST possibly a bracketed IPv6 address. */
static int
parse_listen(const char *s, struct options *o)
{
	const char *colon = strrchr(s, ':');
	size_t n;
	long port;

	if (!colon || parse_long(colon + 1, 0, 65535, &port) < 0)
		return -1;
	n = colon - s;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		s++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof o->host)
		return -1;
	memcpy(o->host, s, n);
	o->host[n] = '\0';
	o->port = (int)port;
	return 0;
}

static void
accounts_free(struct account *a)
{
	while (a) {
		struct account *next = a->link;

		free(a->key);
		free(a->next.msg);
		free(a);
		a = next;
	}
}

/* One "KEY[:CONCURRENCY[:COINS]]" of --accounts, or NULL. */
static struct account *
account_parse(char *item, long def_concurrency)
{
	char *key = strsep(&item, ":");
	char *conc = strsep(&item, ":");
	char *coins = strsep(&item, ":");
	struct account *a;

	if (!*key || item)
		return NULL;
	a = xcalloc(1, sizeof *a);
	a->key = xstrdup(key);
	a->concurrency = def_concurrency;
	a->coins = DEFAULT_COINS;
	if ((conc && *conc && parse_long(conc, 0, 1000000, &a->concurrency)) ||
	    (coins && *coins && parse_long(coins, 0, LONG_MAX, &a->coins))) {
		accounts_free(a);
		return NULL;
	}
	return a;
}

/*
 * The accounts of an --accounts SPEC, "KEY[:CONCURRENCY[:COINS]],...", in
 * its order; a part left out is def_concurrency or DEFAULT_COINS. NULL when
 * SPEC is not one (an empty or repeated key, a bad number). The caller frees
 * them with accounts_free().
 */
static struct account *
accounts_parse(const char *spec, long def_concurrency)
{
	char *copy = xstrdup(spec), *rest = copy, *item;
	struct account *list = NULL, **tail = &list;

	while ((item = strsep(&rest, ","))) {
		struct account *a = account_parse(item, def_concurrency);

		for (struct account *b = list; a && b; b = b->link)
			if (strcmp(a->key, b->key) == 0) {
				accounts_free(a);
				a = NULL;
			}
		if (!a) {
			accounts_free(list);
			list = NULL;
			break;
		}
		*tail = a;
		tail = &a->link;
	}
	free(copy);
	return list;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: rhemu [--listen HOST:PORT] [--concurrency N] "
	           "[--duration-ms N] [--fail-rate F]\n"
	           "             [--api-key KEY | --accounts "
	           "KEY[:CONCURRENCY[:COINS]],...]\n"
	           "             [--cost-coins N] [--cost-money X] [--seed N] "
	           "[--public-url URL] [--quiet]\n");
}

static int
parse_option(struct options *o, int opt, const char *arg)
{
	char *end;

	switch (opt) {
	case 'l':
		return parse_listen(arg, o);
	case 'c':
		return parse_long(arg, 0, 1000000, &o->concurrency);
	case 'd':
		return parse_long(arg, 0, 86400000, &o->duration_ms);
	case 'f':
		o->fail_rate = strtod(arg, &end);
		return *arg && !*end && o->fail_rate >= 0 && o->fail_rate <= 1
		           ? 0
		           : -1;
	case 'k':
		o->api_key = arg;
		return *arg ? 0 : -1;
	case 'a':
		o->accounts = arg;
		return 0;
	case 'C':
		return parse_long(arg, 0, 1000000000, &o->cost_coins);
	case 'M':
		o->cost_money = arg;
		return money_valid(arg) ? 0 : -1;
	case 's':
		o->seed = strtoull(arg, &end, 10);
		o->has_seed = 1;
		return *arg && !*end ? 0 : -1;
	case 'u':
		o->public_url = arg;
		return strncmp(arg, "http", 4) == 0 ? 0 : -1;
	case 'q':
		o->quiet = 1;
		return 0;
	default:
		return -1;
	}
}

static int
accounts_check(const struct options *o)
{
	struct account *list;

	if (!o->accounts)
		return 0;
	list = accounts_parse(o->accounts, o->concurrency);
	if (!list) {
		fprintf(stderr, "rhemu: bad value for --accounts\n");
		usage(stderr);
		return -1;
	}
	accounts_free(list);
	return 0;
}

/* Fill o from argv; -1 (usage printed) on a bad command line. */
static int
parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"concurrency", required_argument, NULL, 'c'},
	    {"duration-ms", required_argument, NULL, 'd'},
	    {"fail-rate", required_argument, NULL, 'f'},
	    {"api-key", required_argument, NULL, 'k'},
	    {"accounts", required_argument, NULL, 'a'},
	    {"cost-coins", required_argument, NULL, 'C'},
	    {"cost-money", required_argument, NULL, 'M'},
	    {"seed", required_argument, NULL, 's'},
	    {"public-url", required_argument, NULL, 'u'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int opt, which = 0;

	strcpy(o->host, "127.0.0.1");
	o->port = 8090;
	o->concurrency = 3;
	o->duration_ms = 4000;
	o->cost_coins = DEFAULT_COST_COINS;
	while ((opt = getopt_long(argc, argv, "", longopts, &which)) != -1) {
		if (opt == 'h') {
			usage(stdout);
			exit(0);
		}
		if (opt == '?' || parse_option(o, opt, optarg) < 0) {
			if (opt != '?')
				fprintf(stderr, "rhemu: bad value for --%s\n",
				    longopts[which].name);
			usage(stderr);
			return -1;
		}
	}
	if (o->accounts && o->api_key)
		fprintf(stderr, "rhemu: --api-key and --accounts exclude each "
		                "other\n");
	if (optind < argc || (o->accounts && o->api_key)) {
		usage(stderr);
		return -1;
	}
	return accounts_check(o);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct emu *emu = arg;

	emu_log(emu, "signal %d: exiting", (int)sig);
	event_base_loopbreak(emu->base);
}

static int
bound_port(struct evhttp_bound_socket *sock, int fallback)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;

	if (getsockname(evhttp_bound_socket_get_fd(sock),
	        (struct sockaddr *)&ss, &len) < 0)
		return fallback;
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* Bind the address of o (port 0: the kernel picks one) and announce it on
 * stdout, the one line a parent process waits for. */
static int
emu_listen(struct emu *emu, const struct options *o)
{
	struct evhttp_bound_socket *sock;
	char *url;
	size_t n;
	int port;

	sock = evhttp_bind_socket_with_handle(emu->http, o->host, o->port);
	if (!sock) {
		fprintf(stderr, "rhemu: cannot listen on %s:%d: %s\n", o->host,
		    o->port, strerror(errno));
		return -1;
	}
	port = bound_port(sock, o->port);
	if (strchr(o->host, ':'))
		url = xasprintf("http://[%s]:%d", o->host, port);
	else
		url = xasprintf("http://%s:%d", o->host, port);
	emu->public_url = xstrdup(o->public_url ? o->public_url : url);
	n = strlen(emu->public_url);
	while (n > 0 && emu->public_url[n - 1] == '/')
		emu->public_url[--n] = '\0';
	printf("rhemu listening on %s\n", url);
	fflush(stdout);
	free(url);
	return 0;
}

static void
emu_init(struct emu *emu, const struct options *o)
{
	struct timespec now;

	memset(emu, 0, sizeof *emu);
	emu->base = event_base_new();
	emu->http = emu->base ? evhttp_new(emu->base) : NULL;
	if (!emu->http)
		abort();
	evhttp_set_max_body_size(emu->http, MAX_BODY);
	evhttp_set_gencb(emu->http, on_request, emu);
	emu->cfg.concurrency = o->concurrency;
	emu->cfg.duration_ms = o->duration_ms;
	emu->cfg.fail_rate = o->fail_rate;
	emu->cfg.fail_message = xstrdup(DEFAULT_FAIL_MESSAGE);
	emu->cfg.webhook_delay_ms = 2000;
	emu->cfg.cost_coins = o->cost_coins;
	emu->cfg.cost_money =
	    xstrdup(o->cost_money ? o->cost_money : DEFAULT_COST_MONEY);
	if (o->accounts) {
		emu->accounts = accounts_parse(o->accounts, o->concurrency);
		emu->multi = 1;
	} else {
		emu->accounts = xcalloc(1, sizeof *emu->accounts);
		emu->accounts->key = o->api_key ? xstrdup(o->api_key) : NULL;
		emu->accounts->coins = -1;
	}
	emu->quiet = o->quiet;
	clock_gettime(CLOCK_REALTIME, &now);
	emu->rng = o->has_seed
	               ? o->seed
	               : (uint64_t)now.tv_sec * 1000000007ULL ^
	                     (uint64_t)now.tv_nsec ^ (uint64_t)getpid() << 32;
}

static void
emu_cleanup(struct emu *emu)
{
	while (emu->hooks)
		hook_free(emu->hooks);
	while (emu->tasks) {
		struct task *t = emu->tasks;

		emu->tasks = t->next;
		task_free(t);
	}
	/* closes hung connections, and hang_closed() forgets them */
	evhttp_free(emu->http);
	while (emu->hangs) {
		struct hang *h = emu->hangs;

		emu->hangs = h->link;
		event_free(h->watch);
		free(h);
	}
	while (emu->files) {
		struct stored_file *f = emu->files;

		emu->files = f->next;
		free(f->name);
		free(f->data);
		free(f);
	}
	free(emu->cfg.fail_message);
	free(emu->cfg.cost_money);
	free(emu->next.msg);
	accounts_free(emu->accounts);
	free(emu->public_url);
	event_base_free(emu->base);
}

int
main(int argc, char **argv)
{
	struct options o = {.port = 0};
	struct emu emu;
	struct event *term, *intr;
	int rc = 1;

	if (parse_options(argc, argv, &o) < 0)
		return 2;
	signal(SIGPIPE, SIG_IGN);
	emu_init(&emu, &o);
	term = evsignal_new(emu.base, SIGTERM, on_signal, &emu);
	intr = evsignal_new(emu.base, SIGINT, on_signal, &emu);
	event_add(term, NULL);
	event_add(intr, NULL);
	if (emu_listen(&emu, &o) == 0) {
		event_base_dispatch(emu.base);
		rc = 0;
	}
	event_free(term);
	event_free(intr);
	emu_cleanup(&emu);
	return rc;
}
