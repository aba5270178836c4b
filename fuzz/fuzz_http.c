/*
 * fuzz_http.c — libFuzzer target for the HTTP/1.1 request parser of
 * src/http.c, driven through a real http_server on loopback.
 *
 * The server listens once per process on 127.0.0.1:0. Each input is one
 * client connection: the bytes are written as they are (pipelined requests
 * included), the write side is shut, and the loop runs until the server has
 * closed its side. Handlers answer at once, later (from the loop, when the
 * client may be gone) or as a stream, and check what the parser gave them
 * against the route. A connection the server never finishes within
 * HANG_SECS is a hang and aborts.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "http.h"

#define HANG_SECS 5
#define SMALL_BODY 64
#define JOBS_BODY 4096
#define DEFAULT_BODY 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_http: %s\n", what);
	abort();
}

/* --- the server side --- */

static struct event_base *base;
/* Always readable: waiting on it defers to the loop's next turn without
 * a timer (libevent would run a {0, 0} timeout in this very turn, and a
 * real one costs a millisecond in epoll_wait). */
static int ready_fd = -1;

/* What every handler checks: the parser kept the route's promises. */
static void
check_req(struct http_req *r, int methods, int nparams, size_t max_body)
{
	const char *path = http_req_path(r), *body, *cl;
	size_t len;

	if (path == NULL || path[0] != '/')
		fail("path does not start with /");
	if (!(http_req_method(r) & methods))
		fail("handler called for a method it does not take");
	for (int i = 0; i < nparams; i++) {
		const char *p = http_req_param(r, i);

		if (p == NULL || p[0] == '\0')
			fail("missing or empty {} parameter");
	}
	if (http_req_param(r, nparams) != NULL || http_req_param(r, -1))
		fail("parameter beyond the route's {}");
	body = http_req_body(r, &len);
	if (body == NULL || len > max_body || body[len] != '\0')
		fail("body over the route's limit or not terminated");
	cl = http_req_header(r, "content-length");
	if (cl != NULL && strtoull(cl, NULL, 10) != len)
		fail("body length differs from Content-Length");
	if (cl == NULL && len != 0)
		fail("a body without Content-Length");
	if (http_req_peer(r) == NULL)
		fail("no peer");
}

/* {path, params, query, headers, body length}: touches every accessor. */
static json_t *
echo(struct http_req *r, int nparams)
{
	json_t *params = json_array();
	size_t len;

	for (int i = 0; i < nparams; i++)
		json_array_append_new(
		    params, json_string(http_req_param(r, i)));
	http_req_body(r, &len);
	return json_pack("{s:s, s:o, s:s?, s:s?, s:s?, s:s?, s:I}", "path",
	    http_req_path(r), "params", params, "q", http_req_query(r, "q"),
	    "empty", http_req_query(r, ""), "ctype",
	    http_req_header(r, "Content-Type"), "idem",
	    http_req_header(r, "idempotency-key"), "len", (json_int_t)len);
}

static void
h_health(struct http_req *r, void *ctx)
{
	check_req(r, HTTP_GET | HTTP_HEAD, 0, DEFAULT_BODY);
	http_reply(r, 200, "text/plain", "ok\n", 3);
}

static void
h_jobs(struct http_req *r, void *ctx)
{
	check_req(r, HTTP_POST, 0, JOBS_BODY);
	http_reply_header(r, "Location", http_req_path(r));
	http_reply_json(r, 201, echo(r, 0));
}

static void
h_job(struct http_req *r, void *ctx)
{
	check_req(r, HTTP_GET | HTTP_DELETE, 1, DEFAULT_BODY);
	if (http_req_method(r) == HTTP_DELETE)
		http_reply(r, 204, NULL, NULL, 0);
	else
		http_reply_json(r, 200, echo(r, 1));
}

static void
h_cancel(struct http_req *r, void *ctx)
{
	check_req(r, HTTP_POST, 1, SMALL_BODY);
	http_reply_error(r, 409, "conflict", http_req_param(r, 0), echo(r, 1));
}

static void
h_file(struct http_req *r, void *ctx)
{
	check_req(r, HTTP_GET | HTTP_PUT, 2, DEFAULT_BODY);
	http_reply_json(r, 200, echo(r, 2));
}

/*
 * Deferred work runs HOPS turns of the loop later, so that a leaving
 * client's end is seen first: the answer then frees a detached request,
 * and a stream hears of it through on_close.
 */
#define HOPS 3

struct later {
	struct http_req *req;
	int hops;
	int stream; /* a stream to end, rather than a request to answer */
	int gone;   /* the stream's client left (on_close) */
};

static void
later_run(evutil_socket_t fd, short what, void *arg)
{
	struct later *l = arg;

	if (l->hops-- > 0) {
		if (event_base_once(
		        base, ready_fd, EV_READ, later_run, l, NULL) < 0)
			fail("event_base_once");
		return;
	}
	if (!l->stream) {
		http_reply_json(l->req, 200, echo(l->req, 1));
	} else if (!l->gone) {
		http_stream_write(l->req, "data: bye\n\n", 11);
		http_stream_end(l->req);
	}
	free(l);
}

static void
later_start(struct http_req *r, int stream)
{
	struct later *l = calloc(1, sizeof *l);

	l->req = r;
	l->hops = HOPS;
	l->stream = stream;
	later_run(-1, 0, l);
}

static void
h_later(struct http_req *r, void *ctx)
{
	check_req(r, HTTP_GET | HTTP_POST, 1, DEFAULT_BODY);
	later_start(r, 0);
}

static void
stream_closed(void *arg)
{
	struct later *l = arg;

	l->gone = 1;
}

static void
h_stream(struct http_req *r, void *ctx)
{
	struct later *l = calloc(1, sizeof *l);

	check_req(r, HTTP_GET | HTTP_HEAD, 0, DEFAULT_BODY);
	l->req = r;
	l->hops = HOPS;
	l->stream = 1;
	http_stream_start(r, 200, "text/event-stream", stream_closed, l);
	http_stream_write(r, "data: hi\n\n", 10);
	later_run(-1, 0, l);
}

static const struct http_route routes[] = {
    {HTTP_GET | HTTP_HEAD, "/v1/health", h_health, 0, 0, 0},
    {HTTP_POST, "/v1/jobs", h_jobs, JOBS_BODY, 0, 0},
    {HTTP_GET | HTTP_DELETE, "/v1/jobs/{}", h_job, 0, 0, 0},
    {HTTP_POST, "/v1/jobs/{}/cancel", h_cancel, SMALL_BODY, 0, 0},
    {HTTP_GET | HTTP_PUT, "/v1/uploads/{}/{}", h_file, 0, 0, 0},
    {HTTP_GET | HTTP_POST, "/later/{}", h_later, 0, 0, 0},
    {HTTP_GET | HTTP_HEAD, "/v1/events", h_stream, 0, 0, 0},
};

/* --- the client side: one connection per input --- */

struct client {
	int fd;
	struct event *rev, *wev;
	const uint8_t *data;
	size_t size, sent;
	char head[16]; /* the first bytes of the answer */
	size_t got;
	int done;
};

static void
client_read(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	char buf[65536];

	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);

		if (n > 0) {
			if (c->got < sizeof c->head) {
				size_t k = sizeof c->head - c->got;

				memcpy(c->head + c->got, buf,
				    (size_t)n < k ? (size_t)n : k);
			}
			c->got += n;
			continue;
		}
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		c->done = 1; /* EOF, or reset */
		return;
	}
}

static void
client_write(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;

	while (c->sent < c->size) {
		ssize_t n = send(
		    fd, c->data + c->sent, c->size - c->sent, MSG_NOSIGNAL);

		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
			break; /* the server closed: the rest is lost */
		c->sent += n;
	}
	shutdown(fd, SHUT_WR);
	event_del(c->wev);
}

static void
hang(evutil_socket_t fd, short what, void *arg)
{
	fail("hang: the server neither finished nor closed the connection");
}

static struct http_server *srv;
static struct sockaddr_in addr;
static struct event *watchdog;

static void
setup(void)
{
	char err[256];

	signal(SIGPIPE, SIG_IGN);
	base = event_base_new();
	ready_fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ready_fd < 0)
		fail("eventfd");
	srv = http_server_new(
	    base, routes, sizeof routes / sizeof routes[0], base, DEFAULT_BODY);
	http_server_cors(srv, "https://app.example.com http://localhost:3000");
	if (base == NULL ||
	    http_server_listen(srv, "127.0.0.1", 0, err, sizeof err) < 0)
		fail(err);
	addr.sin_family = AF_INET;
	addr.sin_port = htons(http_server_port(srv));
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	watchdog = evtimer_new(base, hang, NULL);
}

/* The answer, if any, starts with an HTTP/1.1 status line. */
static void
check_answer(const struct client *c)
{
	const char *h = c->head;

	if (c->got == 0)
		return;
	if (c->got < 13 || memcmp(h, "HTTP/1.1 ", 9) != 0 || h[9] < '1' ||
	    h[9] > '5' || h[10] < '0' || h[10] > '9' || h[11] < '0' ||
	    h[11] > '9' || h[12] != ' ')
		fail("the answer does not start with a status line");
}

/*
 * One connection in three of four waits for the server to close; in the
 * fourth (size % 4 == 3, so the bytes sent are untouched) the client
 * leaves as soon as it has written, before deferred answers and streams
 * are done, and the server must free the requests it is left with.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct client c = {.data = data, .size = size};
	struct linger lg = {1, 0};
	struct timeval limit = {HANG_SECS, 0};
	int leave = size % 4 == 3;

	if (base == NULL)
		setup();
	c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c.fd < 0)
		fail("socket");
	if (connect(c.fd, (struct sockaddr *)&addr, sizeof addr) < 0 &&
	    errno != EINPROGRESS)
		fail("connect");
	c.rev = event_new(base, c.fd, EV_READ | EV_PERSIST, client_read, &c);
	c.wev = event_new(base, c.fd, EV_WRITE | EV_PERSIST, client_write, &c);
	event_add(c.wev, NULL);
	if (!leave)
		event_add(c.rev, NULL);
	evtimer_add(watchdog, &limit);
	while (leave ? c.sent < c.size || event_pending(c.wev, EV_WRITE, NULL)
	             : !c.done)
		event_base_loop(base, EVLOOP_ONCE);
	evtimer_del(watchdog);
	check_answer(&c);
	event_free(c.rev);
	event_free(c.wev);
	/* A reset rather than TIME_WAIT: a million connections would
	 * otherwise run out of ports. A leaving client closes gently, so
	 * that the server reads the request before the end. */
	if (!leave)
		setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(c.fd);
	/* Loopback has delivered it all: a few turns let the server read,
	 * answer, see the end and free the connection now. */
	for (int i = 0; i < 8; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
