/*
 * test_events.c — Server-Sent Events from the event log, over real sockets.
 *
 * Everything runs on one thread: the http server, the events module and a
 * store on a temporary file share one event_base, which the test drives
 * with event_base_loop(EVLOOP_NONBLOCK) between non-blocking reads of its
 * client sockets. So the store (which is not thread-safe) is called from
 * the loop's own thread, exactly as the daemon does. As in the daemon,
 * changes are grouped and committed at the end of each turn: the changes
 * the test makes between two turns are one commit, which reaches the
 * streams at the next turn.
 *
 * The client decodes the chunked body as it arrives and checks every SSE
 * block's framing; expected texts are built from store_events_after(), so
 * a stream is compared byte for byte with the log.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <sqlite3.h>

#include "config.h"
#include "events.h"
#include "fixtures.h"
#include "http.h"
#include "store.h"
#include "util.h"

#define WAIT_MS 5000 /* a bound for failures; waits end when met */

static struct config cfg;
static struct event_base *base;
static struct store *st;
static struct events *ev;
static struct http_server *srv;
static int port;
static struct event_base *syncs; /* where a watched store tells its syncs */
static char dir[64];
static char dbpath[128];

/* ---- the server's side: routes calling events_stream() -------------- */

/* ?after=N, or -1 ("from now on") when absent. */
static int64_t
after_of(struct http_req *r)
{
	const char *v = http_req_query(r, "after");

	return v ? strtoll(v, NULL, 10) : -1;
}

static const char *
user_of(struct http_req *r)
{
	const char *u = http_req_query(r, "user");

	return u ? u : "alice";
}

static void
h_events(struct http_req *r, void *ctx)
{
	events_stream(ctx, r, user_of(r), NULL, after_of(r), 0);
}

static void
h_job_events(struct http_req *r, void *ctx)
{
	struct job j;

	/* As the API does: the job is read first, and must be the user's. */
	job_init(&j);
	if (store_job_get(st, http_req_param(r, 0), user_of(r), &j) == STORE_OK)
		events_stream(ctx, r, user_of(r), &j, after_of(r), 0);
	else
		http_reply(r, 404, NULL, NULL, 0);
	job_cleanup(&j);
}

static const struct http_route routes[] = {
    {HTTP_GET, "/events", h_events, 0, 0, 0},
    {HTTP_GET, "/jobs/{}/events", h_job_events, 0, 0, 0},
};

static void
setup(void)
{
	char err[256] = "";
	struct store_opts o;

	signal(SIGPIPE, SIG_IGN);
	cr_assert_eq(
	    config_load(&cfg, "/nonexistent", 1, NULL, 0, err, sizeof(err)), 0,
	    "%s", err);
	fx_tmpdir(dir, sizeof(dir), "events");
	snprintf(dbpath, sizeof(dbpath), "%s/fila.db", dir);
	o = (struct store_opts){
	    .slots = cfg.slots, .per_user_active = 10, .credits_initial = 1000};
	st = fx_store_open(dbpath, &o);
	store_group(st, 1);
	base = event_base_new();
	ev = events_new(base, &cfg, st);
	srv = http_server_new(
	    base, routes, sizeof(routes) / sizeof(routes[0]), ev, 1024);
	cr_assert_eq(http_server_listen(srv, "127.0.0.1", 0, err, sizeof(err)),
	    0, "%s", err);
	port = http_server_port(srv);
}

/* As main.c: the server first (its streams' on_close), then the rest. */
static void
teardown(void)
{
	http_server_free(srv);
	events_free(ev);
	event_base_free(base);
	store_free(st);
	if (syncs)
		event_base_free(syncs);
	syncs = NULL;
	config_cleanup(&cfg);
	fx_rmtree(dir);
}

TestSuite(events, .init = setup, .fini = teardown, .timeout = 30);

/* ---- store calls, on this (the loop's) thread ------------------------ */

static void
submit(const char *id, const char *user)
{
	json_t *inputs = json_pack("{s:s}", "image", "up_1");
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = "upscaler",
	    .variant = "pro",
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = id};
	struct job j;
	int64_t balance;

	cr_assert_eq(store_job_submit(st, &in, &j, &balance), STORE_OK, "%s",
	    store_error(st));
	job_cleanup(&j);
	json_decref(inputs);
}

static void
promote(const char *want)
{
	struct job j;

	cr_assert_eq(store_promote(st, &j), STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(j.id, want);
	job_cleanup(&j);
}

static void
running(const char *id)
{
	struct job j;

	cr_assert_eq(store_job_running(st, id, "task", &j), STORE_OK, "%s",
	    store_error(st));
	job_cleanup(&j);
}

static void
finish(const char *id, enum job_status to)
{
	struct job j;
	json_t *outputs =
	    json_pack("[{s:s, s:s}]", "url", "http://x/o.png", "type", "image");

	cr_assert_eq(store_job_finish(st, id, to,
	                 to == JOB_COMPLETED ? NULL : JOB_ERR_PROVIDER,
	                 to == JOB_COMPLETED ? NULL : "boom",
	                 to == JOB_COMPLETED ? outputs : NULL, 1, &j),
	    STORE_OK, "%s", store_error(st));
	job_cleanup(&j);
	json_decref(outputs);
}

static int64_t
last_event_id(void)
{
	int64_t id;

	store_sync(st);
	cr_assert_eq(store_events_last(st, &id), STORE_OK);
	return id;
}

/* The SSE text the log holds for user (and job) after an id. */
static char *
expected(int64_t after, const char *user, const char *job)
{
	struct store_event_list l = {0};
	char *out = xstrdup(""), *next;

	cr_assert_eq(store_events_after(st, after, user, job, 0, &l), STORE_OK);
	for (size_t i = 0; i < l.n; i++) {
		next = xasprintf("%sid: %lld\nevent: job\ndata: %s\n\n", out,
		    (long long)l.v[i].id, l.v[i].data);
		free(out);
		out = next;
	}
	store_event_list_cleanup(&l);
	return out;
}

/* sql on a second connection, after what the test wrote is committed. */
static void
raw_sql(const char *sql)
{
	sqlite3 *db;

	store_sync(st);
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s",
	    sqlite3_errmsg(db));
	sqlite3_close(db);
}

/* ---- the client: non-blocking sockets, the loop driven in between ---- */

struct client {
	int fd;
	char *raw; /* received, not yet decoded */
	size_t rlen, rcap;
	int have_head, status, chunked, ended, eof;
	char head[8192];
	char *body; /* the decoded body, NUL-terminated */
	size_t blen, bcap;
};

static void
grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	while (*cap < need)
		*cap = *cap ? 2 * *cap : 4096;
	*buf = xrealloc(*buf, *cap);
}

static void
body_add(struct client *c, const char *p, size_t n)
{
	grow(&c->body, &c->bcap, c->blen + n + 1);
	memcpy(c->body + c->blen, p, n);
	c->blen += n;
	c->body[c->blen] = '\0';
}

static void
raw_consume(struct client *c, size_t n)
{
	memmove(c->raw, c->raw + n, c->rlen - n);
	c->rlen -= n;
	c->raw[c->rlen] = '\0';
}

static void
decode_head(struct client *c)
{
	char *end = strstr(c->raw, "\r\n\r\n");
	size_t n;

	if (end == NULL)
		return;
	n = (size_t)(end + 4 - c->raw);
	cr_assert_lt(n, sizeof(c->head));
	memcpy(c->head, c->raw, n);
	c->head[n] = '\0';
	raw_consume(c, n);
	c->have_head = 1;
	c->status = atoi(c->head + 9);
	c->chunked = strstr(c->head, "\r\nTransfer-Encoding: chunked\r\n") != 0;
	if (c->status == 204 || strstr(c->head, "\r\nContent-Length: 0\r\n"))
		c->ended = 1;
}

/* Decode every complete chunk received so far. */
static void
decode_chunks(struct client *c)
{
	char *eol, *end;
	size_t n, line;

	while (!c->ended && (eol = strstr(c->raw, "\r\n")) != NULL) {
		n = strtoul(c->raw, &end, 16);
		cr_assert_eq(end, eol, "bad chunk size line: %.40s", c->raw);
		line = (size_t)(eol + 2 - c->raw);
		if (c->rlen < line + n + 2)
			return;
		cr_assert_eq(memcmp(c->raw + line + n, "\r\n", 2), 0,
		    "chunk not ended by CRLF");
		body_add(c, c->raw + line, n);
		raw_consume(c, line + n + 2);
		if (n == 0)
			c->ended = 1;
	}
}

static void
decode(struct client *c)
{
	if (!c->have_head)
		decode_head(c);
	if (!c->have_head || c->ended)
		return;
	if (c->chunked) {
		decode_chunks(c);
	} else if (c->rlen) {
		body_add(c, c->raw, c->rlen);
		raw_consume(c, c->rlen);
	}
}

/* One turn of the loop and its commit, then whatever the socket holds. */
static void
pump(struct client *c)
{
	char buf[16384];
	ssize_t n = -1;

	store_sync(st);
	event_base_loop(base, EVLOOP_NONBLOCK);
	store_sync(st);
	while (c && !c->eof && (n = recv(c->fd, buf, sizeof(buf), 0)) != 0) {
		if (n < 0)
			break; /* EAGAIN: nothing more for now */
		grow(&c->raw, &c->rcap, c->rlen + (size_t)n + 1);
		memcpy(c->raw + c->rlen, buf, (size_t)n);
		c->rlen += (size_t)n;
		c->raw[c->rlen] = '\0';
	}
	if (c && n == 0)
		c->eof = 1;
	if (c)
		decode(c);
}

static void
nap(struct client *c)
{
	struct pollfd p = {c ? c->fd : -1, POLLIN, 0};

	poll(&p, 1, 2);
}

/* Drive the loop for ms milliseconds. */
static void
spin(struct client *c, int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		pump(c);
		nap(c);
	}
}

/* Drive the loop until pred(c, arg) holds; 1, or 0 after WAIT_MS. */
static int
until(struct client *c, int (*pred)(struct client *, const void *),
    const void *arg)
{
	int64_t end = mono_ms() + WAIT_MS;

	for (;;) {
		pump(c);
		if (pred(c, arg))
			return 1;
		if (mono_ms() >= end)
			return 0;
		nap(c);
	}
}

static struct client *
cl_get(const char *target)
{
	struct client *c = xcalloc(1, sizeof(*c));
	struct sockaddr_in sa = {0};
	char *req = xasprintf("GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);

	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(c->fd, 0);
	/* The kernel completes the handshake without the loop's help. */
	cr_assert_eq(connect(c->fd, (void *)&sa, sizeof(sa)), 0);
	cr_assert_eq(
	    send(c->fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	free(req);
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	grow(&c->raw, &c->rcap, 1);
	c->raw[0] = '\0';
	body_add(c, "", 0);
	return c;
}

/* Another request on the same connection, once the last reply ended. */
static void
cl_again(struct client *c, const char *target)
{
	char *req = xasprintf("GET %s HTTP/1.1\r\nHost: x\r\n\r\n", target);

	cr_assert(c->ended && c->rlen == 0, "the last reply is not over");
	cr_assert_eq(
	    send(c->fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	free(req);
	c->have_head = c->status = c->chunked = c->ended = 0;
	c->head[0] = '\0';
	c->blen = 0;
	c->body[0] = '\0';
}

static void
cl_close(struct client *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c->raw);
	free(c->body);
	free(c);
}

static int
has_text(struct client *c, const void *arg)
{
	return strstr(c->body, arg) != NULL;
}

static int
has_len(struct client *c, const void *arg)
{
	return c->blen >= *(const size_t *)arg;
}

static int
is_ended(struct client *c, const void *arg)
{
	return c->ended;
}

static int
count_of(const char *s, const char *needle)
{
	int n = 0;

	for (; (s = strstr(s, needle)) != NULL; s++)
		n++;
	return n;
}

static int
has_events(struct client *c, const void *arg)
{
	return count_of(c->body, "\nevent: job\n") >= *(const int *)arg;
}

static int
streams_are(struct client *c, const void *arg)
{
	return events_streams(ev) == *(const int *)arg;
}

/* A stream open on target, its head read and checked. */
static struct client *
cl_stream(const char *target)
{
	struct client *c = cl_get(target);

	cr_assert(until(c, has_text, "retry: "), "no stream on %s: %s", target,
	    c->head);
	cr_assert_eq(c->status, 200, "%s", c->head);
	cr_assert(c->chunked, "%s", c->head);
	return c;
}

static void
wait_events(struct client *c, int n)
{
	cr_assert(until(c, has_events, &n), "fewer than %d events in:\n%s", n,
	    c->body);
}

/* ---- reading the events --------------------------------------------- */

struct sse {
	int64_t id;
	json_t *data;
};

struct sse_list {
	struct sse v[2048];
	int n;
};

/*
 * Split a stream body into its events, checking the framing of every
 * block: "retry: N", a ": comment", or exactly "id: N\nevent: job\ndata:
 * {json}" — each ended by a blank line — with ids increasing. A position
 * event may have no id line (its stream was told of that id already):
 * it is recorded with id 0.
 */
static void
parse(const char *body, struct sse_list *out)
{
	const char *p = body, *end;
	int64_t last = 0;

	out->n = 0;
	while (*p) {
		end = strstr(p, "\n\n");
		cr_assert_not_null(end, "unterminated block: %s", p);
		if (strncmp(p, "retry: ", 7) == 0 || p[0] == ':') {
			p = end + 2;
			continue;
		}
		const char *q = p;
		long long id = 0;
		if (strncmp(p, "event: job\n", 11) != 0) {
			cr_assert_eq(strncmp(p, "id: ", 4), 0,
			    "bad block: %.*s", (int)(end - p), p);
			id = strtoll(p + 4, (char **)&q, 10);
			cr_assert_eq(*q, '\n');
			q++;
			cr_assert_gt(id, last,
			    "ids must increase: %lld after %lld", id,
			    (long long)last);
			last = id;
		}
		cr_assert_eq(strncmp(q, "event: job\ndata: ", 17), 0,
		    "bad block: %.*s", (int)(end - p), p);
		q += 17;
		char *data = strndup(q, (size_t)(end - q));
		json_error_t err;
		cr_assert_null(
		    strchr(data, '\n'), "data on two lines: %s", data);
		cr_assert_lt(out->n, 2048);
		out->v[out->n].id = id;
		out->v[out->n].data = json_loads(data, 0, &err);
		cr_assert_not_null(
		    out->v[out->n].data, "%s: %s", err.text, data);
		out->n++;
		free(data);
		p = end + 2;
	}
}

static void
sse_cleanup(struct sse_list *l)
{
	for (int i = 0; i < l->n; i++)
		json_decref(l->v[i].data);
	l->n = 0;
}

static const char *
str_of(const struct sse *e, const char *key)
{
	return json_string_value(json_object_get(e->data, key));
}

static void
expect_event(const struct sse *e, const char *job, const char *status)
{
	cr_assert_str_eq(str_of(e, "id"), job);
	cr_assert_str_eq(str_of(e, "status"), status, "%s", job);
}

static json_int_t
position_of(const struct sse *e)
{
	json_t *p = json_object_get(e->data, "position");

	cr_assert(json_is_integer(p), "%s has no position", str_of(e, "id"));
	return json_integer_value(p);
}

/* ---- the stream itself ---------------------------------------------- */

Test(events, answers_an_event_stream)
{
	struct client *c = cl_stream("/events?after=0");

	cr_assert_eq(
	    strncmp(c->head, "HTTP/1.1 200 OK\r\n", 17), 0, "%s", c->head);
	cr_assert(strstr(c->head, "\r\nContent-Type: text/event-stream\r\n"),
	    "%s", c->head);
	cr_assert(
	    strstr(c->head, "\r\nCache-Control: no-cache\r\n"), "%s", c->head);
	cr_assert(
	    strstr(c->head, "\r\nX-Accel-Buffering: no\r\n"), "%s", c->head);
	cr_assert_null(strstr(c->head, "Content-Length"), "%s", c->head);
	spin(c, 50);
	cr_assert_str_eq(c->body, "retry: 2000\n\n");
	cr_assert_eq(events_streams(ev), 1);
	cr_assert_not(c->ended);
	cl_close(c);
}

Test(events, replay_from_zero_sends_every_event_of_the_user_in_order)
{
	submit("a1", "alice");
	submit("b1", "bob");
	submit("a2", "alice");
	promote("a1");
	spin(NULL, 100); /* the positions behind a1 are published */
	finish("a2", JOB_CANCELLED);
	running("a1");
	spin(NULL, 100);

	char *want = expected(0, "alice", NULL);
	char *all = xasprintf("retry: 2000\n\n%s", want);
	size_t len = strlen(all);
	struct client *c = cl_stream("/events?after=0");
	struct sse_list *l = xcalloc(1, sizeof(*l));

	cr_assert(until(c, has_len, &len), "short: %s", c->body);
	spin(c, 50);
	cr_assert_str_eq(c->body, all);
	parse(c->body, l);
	/* a1 queued at 1, a2 queued at 3 (b1 is 2), a1 starting, a2 moved
	 * to 2, a2 cancelled, a1 running; nothing of bob's. */
	cr_assert_geq(l->n, 5);
	expect_event(&l->v[0], "a1", "queued");
	cr_assert_eq(position_of(&l->v[0]), 1);
	expect_event(&l->v[1], "a2", "queued");
	cr_assert_eq(position_of(&l->v[1]), 3);
	expect_event(&l->v[l->n - 1], "a1", "running");
	for (int i = 0; i < l->n; i++)
		cr_assert_str_eq(str_of(&l->v[i], "user_id"), "alice");
	cr_assert_null(strstr(c->body, "\"b1\""));
	sse_cleanup(l);
	free(l);
	free(want);
	free(all);
	cl_close(c);
}

/* A position whose base event is gone (a damaged log) is not sent, live
 * or replayed: no event with empty data ever leaves. */
/* Positions are not in the log: a stream that comes back gets what it
 * missed of the state changes, then where its jobs are now. */
Test(events, a_reconnect_gets_the_current_places_after_the_replay)
{
	struct sse_list *l = xcalloc(1, sizeof(*l));
	char target[64];

	submit("b1", "bob");
	submit("a1", "alice");
	int64_t seen = last_event_id(); /* alice saw a1 queued at 2 */
	finish("b1", JOB_CANCELLED);    /* a1 moves to 1 */
	submit("a2", "alice");
	snprintf(target, sizeof(target), "/events?after=%lld", (long long)seen);
	struct client *c = cl_stream(target);
	wait_events(c, 2);
	spin(c, 100);
	parse(c->body, l);
	cr_assert_eq(l->n, 2, "%s", c->body);
	expect_event(&l->v[0], "a2", "queued");
	cr_assert_eq(position_of(&l->v[0]), 2);
	expect_event(&l->v[1], "a1", "queued");
	cr_assert_eq(position_of(&l->v[1]), 1);
	cr_assert_eq(l->v[1].id, 0, "the newest id was sent already");
	sse_cleanup(l);
	/* From the start: the history, then a1 where it is now. */
	struct client *d = cl_stream("/events?after=0");
	wait_events(d, 3);
	spin(d, 100);
	parse(d->body, l);
	cr_assert_eq(l->n, 3, "%s", d->body);
	expect_event(&l->v[2], "a1", "queued");
	cr_assert_eq(position_of(&l->v[2]), 1);
	sse_cleanup(l);
	/* Nothing moved since a client's last id: nothing to place. */
	snprintf(target, sizeof(target), "/events?after=%lld",
	    (long long)last_event_id());
	struct client *e = cl_stream(target);
	spin(e, 150);
	cr_assert_str_eq(e->body, "retry: 2000\n\n");
	free(l);
	cl_close(c);
	cl_close(d);
	cl_close(e);
}

/* A place read before the sync of the move's commit (as the queue's order
 * is) waits for that sync, to go out with the move's id: every event of a
 * stream has an id once its stream was told the newest. The store tells
 * its syncs on a loop of their own here, run only when the test says. */
Test(events, a_place_read_before_its_sync_waits_for_an_id)
{
	struct sse_list *l = xcalloc(1, sizeof(*l));

	syncs = event_base_new();
	store_watch(st, syncs);
	submit("b1", "bob");
	submit("a1", "alice"); /* at 2 */
	store_drain(st);
	struct client *c = cl_stream("/events");
	spin(c, 50);
	finish("b1", JOB_CANCELLED); /* a1 moves to 1: committed, not synced */
	store_sync(st);
	spin(c, 1200); /* a poll: the queue's order moved, the log did not */
	cr_assert_str_eq(c->body, "retry: 2000\n\n", "sent before its id");
	store_drain(st);
	wait_events(c, 1);
	parse(c->body, l);
	cr_assert_eq(l->n, 1, "%s", c->body);
	expect_event(&l->v[0], "a1", "queued");
	cr_assert_eq(position_of(&l->v[0]), 1);
	cr_assert_eq(l->v[0].id, last_event_id(), "the move's id");
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

Test(events, a_long_replay_is_paced_not_dropped)
{
	submit("a1", "alice");
	/* 1,900 more queued events of a1, 4 KB each: 8 MB of history. */
	raw_sql("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1"
	        " FROM c WHERE x < 1900) INSERT INTO events"
	        " (job_id, user_id, data, at) SELECT job_id, user_id,"
	        " substr(data, 1, length(data) - 1) || ',\"pad\":\"' ||"
	        " hex(zeroblob(2000)) || '\"}', at FROM events, c"
	        " WHERE job_id = 'a1' ORDER BY x");
	struct client *c = cl_stream("/events?after=0");
	spin(c, 20); /* the replay has begun, and waits for the client */
	finish("a1", JOB_CANCELLED);
	wait_events(c, 1902);
	spin(c, 100);
	cr_assert_eq(c->eof, 0, "the stream was dropped");

	struct sse_list *l = xcalloc(1, sizeof(*l));
	parse(c->body, l); /* ids increase: in order, none twice */
	cr_assert_eq(l->n, 1902);
	expect_event(&l->v[0], "a1", "queued");
	expect_event(&l->v[1901], "a1", "cancelled");
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

/* An id the log never gave (say, from before the store was made anew)
 * means "from now on": the next events still come. */
Test(events, an_id_past_the_log_means_from_now_on)
{
	struct client *all = cl_stream("/events?after=999999");
	submit("a1", "alice");
	struct client *job = cl_stream("/jobs/a1/events?after=999999");
	spin(job, 50);
	finish("a1", JOB_CANCELLED);
	wait_events(all, 2);
	wait_events(job, 1);
	struct sse_list *l = xcalloc(1, sizeof(*l));
	parse(all->body, l);
	expect_event(&l->v[0], "a1", "queued");
	expect_event(&l->v[1], "a1", "cancelled");
	sse_cleanup(l);
	parse(job->body, l);
	cr_assert_eq(l->n, 1);
	expect_event(&l->v[0], "a1", "cancelled");
	sse_cleanup(l);
	free(l);
	cl_close(all);
	cl_close(job);
}

Test(events, replay_after_an_id_sends_only_what_follows)
{
	int64_t mid;

	submit("a1", "alice");
	submit("a2", "alice");
	mid = last_event_id();
	submit("a3", "alice");
	finish("a1", JOB_CANCELLED);
	spin(NULL, 100);

	char target[64];
	char *want = expected(mid, "alice", NULL);
	char *all = xasprintf("retry: 2000\n\n%s", want);
	size_t len = strlen(all);
	struct client *c;
	struct sse_list *l = xcalloc(1, sizeof(*l));

	snprintf(target, sizeof(target), "/events?after=%lld", (long long)mid);
	c = cl_stream(target);
	cr_assert(until(c, has_len, &len), "short: %s", c->body);
	wait_events(c, 4);
	spin(c, 50);
	/* What the log holds after mid, as it holds it... */
	cr_assert_eq(strncmp(c->body, all, len), 0, "%s", c->body);
	parse(c->body, l);
	/* ...a3 queued, a1 cancelled; then a2 and a3 where they are now. */
	cr_assert_eq(l->n, 4, "%s", c->body);
	cr_assert_gt(l->v[0].id, mid);
	expect_event(&l->v[0], "a3", "queued");
	cr_assert_eq(position_of(&l->v[0]), 3);
	expect_event(&l->v[1], "a1", "cancelled");
	expect_event(&l->v[2], "a2", "queued");
	cr_assert_eq(position_of(&l->v[2]), 1);
	expect_event(&l->v[3], "a3", "queued");
	cr_assert_eq(position_of(&l->v[3]), 2);
	sse_cleanup(l);
	free(l);
	free(want);
	free(all);
	cl_close(c);
}

Test(events, from_now_on_replays_nothing)
{
	submit("a1", "alice");
	spin(NULL, 100);

	struct client *c = cl_stream("/events");

	spin(c, 100);
	cr_assert_str_eq(c->body, "retry: 2000\n\n");
	cl_close(c);
}

Test(events, another_users_events_are_not_sent)
{
	struct client *c = cl_stream("/events");
	struct client *b = cl_stream("/events?user=bob");
	struct sse_list *l = xcalloc(1, sizeof(*l));

	submit("b1", "bob");
	submit("a1", "alice");
	submit("b2", "bob");
	wait_events(c, 1);
	wait_events(b, 2);
	spin(c, 100);
	pump(b);
	parse(c->body, l);
	cr_assert_eq(l->n, 1, "%s", c->body);
	expect_event(&l->v[0], "a1", "queued");
	sse_cleanup(l);
	parse(b->body, l);
	cr_assert_eq(l->n, 2, "%s", b->body);
	expect_event(&l->v[0], "b1", "queued");
	expect_event(&l->v[1], "b2", "queued");
	sse_cleanup(l);
	free(l);
	cl_close(c);
	cl_close(b);
}

Test(events, live_events_follow_each_commit)
{
	struct client *c = cl_stream("/events");
	struct sse_list *l = xcalloc(1, sizeof(*l));
	int64_t first;

	submit("a1", "alice");
	wait_events(c, 1);
	first = last_event_id();
	promote("a1");
	running("a1");
	finish("a1", JOB_COMPLETED);
	wait_events(c, 4);
	/* A stream of every job goes on after a terminal event. */
	submit("a2", "alice");
	wait_events(c, 5);
	cr_assert_not(c->ended);
	parse(c->body, l);
	cr_assert_eq(l->n, 5, "%s", c->body);
	cr_assert_eq(l->v[0].id, first);
	expect_event(&l->v[0], "a1", "queued");
	expect_event(&l->v[1], "a1", "starting");
	expect_event(&l->v[2], "a1", "running");
	expect_event(&l->v[3], "a1", "completed");
	expect_event(&l->v[4], "a2", "queued");
	cr_assert_eq(
	    json_array_size(json_object_get(l->v[3].data, "outputs")), 1);

	/* The live text is the log's text, byte for byte. */
	char *want = expected(0, "alice", NULL);
	char *all = xasprintf("retry: 2000\n\n%s", want);
	cr_assert_str_eq(c->body, all);
	free(want);
	free(all);
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

Test(events, replay_and_live_never_overlap)
{
	struct sse_list *l = xcalloc(1, sizeof(*l));
	struct client *c;

	submit("a1", "alice");
	submit("a2", "alice");
	spin(NULL, 50);
	/* Another process's commit: only the slow poll will dispatch it,
	 * after the stream has replayed it. */
	raw_sql(
	    "INSERT INTO events (job_id, user_id, data, at) VALUES"
	    " ('a1', 'alice', '{\"id\":\"a1\",\"status\":\"running\"}', 0)");
	c = cl_stream("/events?after=0");
	submit("a3", "alice");
	wait_events(c, 4);
	spin(c, 1200); /* past the poll timer */
	parse(c->body, l);
	cr_assert_eq(l->n, 4, "%s", c->body);
	expect_event(&l->v[0], "a1", "queued");
	expect_event(&l->v[1], "a2", "queued");
	expect_event(&l->v[2], "a1", "running");
	expect_event(&l->v[3], "a3", "queued");
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

/* Streams are found by a hash of the user id: "user2553" shares alice's
 * bucket (FNV-1a modulo 4096), so only the user check keeps them apart. */
Test(events, users_sharing_a_bucket_stay_apart)
{
	struct client *c = cl_stream("/events");
	struct client *o = cl_stream("/events?user=user2553");
	struct sse_list *l = xcalloc(1, sizeof(*l));

	submit("o1", "user2553");
	submit("a1", "alice");
	submit("o2", "user2553");
	wait_events(c, 1);
	wait_events(o, 2);
	spin(c, 100);
	pump(o);
	parse(c->body, l);
	cr_assert_eq(l->n, 1, "%s", c->body);
	expect_event(&l->v[0], "a1", "queued");
	sse_cleanup(l);
	parse(o->body, l);
	cr_assert_eq(l->n, 2, "%s", o->body);
	expect_event(&l->v[0], "o1", "queued");
	expect_event(&l->v[1], "o2", "queued");
	sse_cleanup(l);
	free(l);
	cl_close(c);
	cl_close(o);
}

Test(events, replay_longer_than_a_page)
{
	/* 1200 log rows written behind the store's back (as another process
	 * would), alice's and bob's interleaved. */
	submit("a1", "alice");
	submit("b1", "bob");
	spin(NULL, 50); /* dispatched: the rows below only by the poll */
	raw_sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1"
	        " FROM n WHERE i < 1200)"
	        " INSERT INTO events (job_id, user_id, data, at)"
	        " SELECT CASE i % 3 WHEN 0 THEN 'b1' ELSE 'a1' END,"
	        " CASE i % 3 WHEN 0 THEN 'bob' ELSE 'alice' END,"
	        " json_object('id', CASE i % 3 WHEN 0 THEN 'b1' ELSE 'a1' END,"
	        " 'status', 'running', 'n', i), 0 FROM n");

	char *want = expected(0, "alice", NULL);
	char *all = xasprintf("retry: 2000\n\n%s", want);
	size_t len = strlen(all);
	struct client *c = cl_stream("/events?after=0");
	struct sse_list *l = xcalloc(1, sizeof(*l));

	cr_assert(until(c, has_len, &len), "short: %zu of %zu", c->blen, len);
	spin(c, 1200); /* the poll timer finds the rows: nothing twice */
	cr_assert_str_eq(c->body, all);
	parse(c->body, l);
	cr_assert_eq(l->n, 1 + 800);
	sse_cleanup(l);
	free(l);
	free(want);
	free(all);
	cl_close(c);
}

Test(events, commits_of_another_process_arrive_by_polling)
{
	struct client *c = cl_stream("/events");
	struct sse_list *l = xcalloc(1, sizeof(*l));

	submit("a1", "alice");
	wait_events(c, 1);
	raw_sql(
	    "INSERT INTO events (job_id, user_id, data, at) VALUES"
	    " ('a1', 'alice', '{\"id\":\"a1\",\"status\":\"running\"}', 0)");
	wait_events(c, 2);
	parse(c->body, l);
	expect_event(&l->v[1], "a1", "running");
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

/* ---- one job's stream ----------------------------------------------- */

Test(events, job_stream_ends_after_the_terminal_event)
{
	struct client *c;
	struct sse_list *l = xcalloc(1, sizeof(*l));
	int zero = 0;

	struct client *all_jobs = cl_stream("/events");
	int one = 1;

	submit("a1", "alice");
	submit("a2", "alice");
	c = cl_stream("/jobs/a1/events");
	wait_events(c, 1);
	finish("a2", JOB_CANCELLED); /* another job: not on this stream */
	promote("a1");
	running("a1");
	spin(c, 100);
	cr_assert_not(c->ended);
	finish("a1", JOB_FAILED);
	cr_assert(until(c, is_ended, NULL), "not ended: %s", c->body);
	parse(c->body, l);
	cr_assert_eq(l->n, 4, "%s", c->body);
	expect_event(&l->v[0], "a1", "queued");
	expect_event(&l->v[1], "a1", "starting");
	expect_event(&l->v[2], "a1", "running");
	expect_event(&l->v[3], "a1", "failed");
	cr_assert_str_eq(json_string_value(json_object_get(
	                     json_object_get(l->v[3].data, "error"), "code")),
	    JOB_ERR_PROVIDER);
	/* The stream of every job goes on: a2's and a1's 4 events. */
	wait_events(all_jobs, 6);
	cr_assert_not(all_jobs->ended);
	cr_assert(until(c, streams_are, &one), "the stream is still counted");
	cl_close(all_jobs);
	cr_assert(until(c, streams_are, &zero));

	/* The stream held exactly the job's log. */
	char *want = expected(0, "alice", "a1");
	char *all = xasprintf("retry: 2000\n\n%s", want);
	cr_assert_str_eq(c->body, all);
	free(want);
	free(all);

	/* Reconnecting after the last event: nothing more will come. */
	char target[64];
	struct client *r;
	snprintf(target, sizeof(target), "/jobs/a1/events?after=%lld",
	    (long long)l->v[3].id);
	r = cl_get(target);
	cr_assert(until(r, is_ended, NULL), "no answer: %s", r->raw);
	cr_assert_eq(r->status, 204, "%s", r->head);
	cr_assert_str_eq(r->body, "");
	cr_assert_eq(events_streams(ev), 0);
	cl_close(r);

	/* Reconnecting before the terminal event replays it, then ends. */
	snprintf(target, sizeof(target), "/jobs/a1/events?after=%lld",
	    (long long)l->v[2].id);
	r = cl_get(target);
	cr_assert(until(r, is_ended, NULL), "not ended: %s", r->body);
	cr_assert_eq(r->status, 200, "%s", r->head);
	sse_cleanup(l);
	parse(r->body, l);
	cr_assert_eq(l->n, 1, "%s", r->body);
	expect_event(&l->v[0], "a1", "failed");
	cl_close(r);
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

Test(events, job_stream_of_a_finished_job_replays_its_history)
{
	struct sse_list *l = xcalloc(1, sizeof(*l));
	struct client *c;

	submit("a1", "alice");
	submit("a2", "alice");
	finish("a1", JOB_CANCELLED);
	c = cl_get("/jobs/a1/events");
	cr_assert(until(c, is_ended, NULL), "not ended: %s", c->body);
	cr_assert_eq(c->status, 200, "%s", c->head);
	parse(c->body, l);
	cr_assert_eq(l->n, 2, "%s", c->body);
	expect_event(&l->v[0], "a1", "queued");
	expect_event(&l->v[1], "a1", "cancelled");
	/* A stream ended by its terminal event keeps the connection, and
	 * the next request on it is a reconnection after the end. */
	spin(c, 50);
	cr_assert_not(c->eof);
	char target[64];
	snprintf(target, sizeof(target), "/jobs/a1/events?after=%lld",
	    (long long)l->v[1].id);
	cl_again(c, target);
	cr_assert(until(c, is_ended, NULL), "no answer: %s", c->raw);
	cr_assert_eq(c->status, 204, "%s", c->head);
	cr_assert_eq(c->blen, 0);
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

/* ---- the queue moving ----------------------------------------------- */

Test(events, finishing_the_head_moves_the_others)
{
	struct client *c;
	struct sse_list *l = xcalloc(1, sizeof(*l));

	submit("a1", "alice");
	submit("a2", "alice");
	submit("b1", "bob");
	submit("a3", "alice");
	spin(NULL, 100);
	c = cl_stream("/events");

	/* The head leaves the queue: everyone behind moves up one. */
	finish("a1", JOB_CANCELLED);
	wait_events(c, 3);
	spin(c, 100);
	parse(c->body, l);
	cr_assert_eq(l->n, 3, "%s", c->body);
	expect_event(&l->v[0], "a1", "cancelled");
	expect_event(&l->v[1], "a2", "queued");
	cr_assert_eq(position_of(&l->v[1]), 1);
	expect_event(&l->v[2], "a3", "queued");
	cr_assert_eq(position_of(&l->v[2]), 3); /* b1 is 2, and bob's */
	sse_cleanup(l);

	/* A promotion moves the queue too. */
	promote("a2");
	wait_events(c, 5);
	spin(c, 100);
	parse(c->body, l);
	cr_assert_eq(l->n, 5, "%s", c->body);
	expect_event(&l->v[3], "a2", "starting");
	cr_assert(json_is_null(json_object_get(l->v[3].data, "position")));
	expect_event(&l->v[4], "a3", "queued");
	cr_assert_eq(position_of(&l->v[4]), 2);
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

Test(events, a_burst_of_moves_publishes_each_position_once)
{
	struct client *c;
	struct sse_list *l = xcalloc(1, sizeof(*l));

	submit("a1", "alice");
	submit("a2", "alice");
	submit("a3", "alice");
	submit("a4", "alice");
	spin(NULL, 100);
	c = cl_stream("/events");
	/* Two moves in one turn of the loop. */
	finish("a1", JOB_CANCELLED);
	finish("a2", JOB_CANCELLED);
	wait_events(c, 4);
	spin(c, 200);
	parse(c->body, l);
	cr_assert_eq(l->n, 4, "%s", c->body);
	expect_event(&l->v[0], "a1", "cancelled");
	expect_event(&l->v[1], "a2", "cancelled");
	expect_event(&l->v[2], "a3", "queued");
	cr_assert_eq(position_of(&l->v[2]), 1);
	expect_event(&l->v[3], "a4", "queued");
	cr_assert_eq(position_of(&l->v[3]), 2);
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

Test(events, a_job_ending_while_running_moves_no_one)
{
	struct client *c;

	submit("a1", "alice");
	submit("a2", "alice");
	promote("a1");
	running("a1");
	spin(NULL, 100);
	c = cl_stream("/events");
	finish("a1", JOB_COMPLETED);
	wait_events(c, 1);
	spin(c, 150);
	cr_assert_eq(count_of(c->body, "\nevent: job\n"), 1, "%s", c->body);
	cr_assert(strstr(c->body, "\"status\":\"completed\""), "%s", c->body);
	cl_close(c);
}

/* ---- ETA on queued events ------------------------------------------- */

/* A completed job of upscaler whose run took run_ms, within the hour. */
static void
completed_run(const char *id, int run_ms)
{
	char sql[256];

	submit(id, "carol");
	promote(id);
	running(id);
	/* Started run_ms ago (a terminal job can no longer be changed). */
	snprintf(sql, sizeof(sql),
	    "UPDATE jobs SET started_at = started_at - %d WHERE id = '%s'",
	    run_ms, id);
	raw_sql(sql);
	finish(id, JOB_COMPLETED);
}

Test(events, queued_events_carry_an_eta_from_recent_runs)
{
	struct sse_list *l = xcalloc(1, sizeof(*l));
	struct client *c;

	cr_assert_eq(cfg.slots, 3);
	completed_run("c1", 20000);
	completed_run("c2", 30000);
	completed_run("c3", 90000);
	spin(NULL, 100);
	c = cl_stream("/events");
	submit("a1", "alice");
	submit("a2", "alice");
	submit("a3", "alice");
	submit("a4", "alice");
	wait_events(c, 4);
	promote("a1");
	running("a1");
	finish("a1", JOB_FAILED);
	wait_events(c, 10);
	spin(c, 100);
	parse(c->body, l);

	/* Median run 30 s; a round of 3 slots per 30 s. Only queued jobs
	 * have an ETA: a1 queued at 1..4, then a2..a4 moved to 1..3. */
	cr_assert_eq(l->n, 10, "%s", c->body);
	for (int i = 0; i < l->n; i++) {
		json_t *eta = json_object_get(l->v[i].data, "eta_s");
		if (strcmp(str_of(&l->v[i], "status"), "queued") != 0) {
			cr_assert_null(eta, "event %d", i);
			continue;
		}
		cr_assert(json_is_integer(eta), "no eta in event %d", i);
		cr_assert_eq(json_integer_value(eta),
		    position_of(&l->v[i]) <= 3 ? 30 : 60, "event %d", i);
	}
	for (int i = 0; i < 4; i++)
		cr_assert_eq(position_of(&l->v[i]), i + 1);

	/* Apart from eta_s, the event is the log's job. */
	struct store_event_list log = {0};
	json_error_t err;
	cr_assert_eq(
	    store_events_after(st, l->v[0].id - 1, "alice", NULL, 1, &log),
	    STORE_OK);
	json_t *logged = json_loads(log.v[0].data, 0, &err);
	json_object_del(l->v[0].data, "eta_s");
	cr_assert(json_equal(logged, l->v[0].data));
	json_decref(logged);
	store_event_list_cleanup(&log);
	sse_cleanup(l);
	free(l);
	cl_close(c);
}

/* ---- streams coming and going --------------------------------------- */

Test(events, streams_are_counted_until_their_client_leaves)
{
	struct client *a = cl_stream("/events");
	struct client *b = cl_stream("/events");
	struct client *other = cl_stream("/events?user=bob");
	int want = 3;

	cr_assert(until(a, streams_are, &want));
	cl_close(b);
	want = 2;
	cr_assert(until(a, streams_are, &want), "still %d", events_streams(ev));
	submit("a1", "alice");
	wait_events(a, 1);
	cl_close(other);
	want = 1;
	cr_assert(until(a, streams_are, &want));
	cl_close(a);
	want = 0;
	cr_assert(until(NULL, streams_are, &want));
	/* Commits with no one listening. */
	submit("a2", "alice");
	spin(NULL, 50);
}

Test(events, a_client_leaving_mid_stream_is_forgotten)
{
	struct client *c = cl_stream("/events");
	struct client *d = cl_stream("/events");
	int want = 1;

	cl_close(c);
	submit("a1", "alice"); /* dispatched while the close is pending */
	cr_assert(until(d, streams_are, &want));
	wait_events(d, 1);
	cl_close(d);
}

Test(events, freeing_events_with_streams_open)
{
	struct client *c = cl_stream("/events");
	struct client *j;

	submit("a1", "alice");
	j = cl_stream("/jobs/a1/events");
	wait_events(c, 1);
	events_free(ev);
	ev = NULL;
	/* The store no longer tells anyone; the server closes the streams
	 * (their on_close) when it is freed in the teardown. */
	submit("a2", "alice");
	spin(c, 50);
	cl_close(c);
	cl_close(j);
}
