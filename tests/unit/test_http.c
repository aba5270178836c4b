/*
 * test_http.c — the HTTP server, driven over real sockets.
 *
 * Each test runs a server on its own event_base in a second thread, bound
 * to 127.0.0.1 on a free port, and talks to it with plain blocking sockets,
 * checking replies byte for byte (the Date header aside). The handlers run
 * on the loop thread, so they only record what they saw; the assertions
 * stay in the test thread. The test thread steers the loop (drain, stop)
 * through a socketpair, as libevent is not built thread-safe here. C11
 * threads (pthreads underneath) because <pthread.h> pulls in the system
 * <sched.h>, which -Isrc would shadow with ours.
 *
 * The suites after the first start their server with limits of their own
 * (short deadlines, few connections, small stream budgets, a spool
 * directory), so that every limit is met in a second or two.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <threads.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "fixtures.h"
#include "http.h"
#include "util.h"

/* --- handlers, on the loop thread --- */

static atomic_int stream_closed;
static atomic_int gone_answered;
static atomic_int drained;
static struct event_base *loop_base;

static void
h_hello(struct http_req *r, void *ctx)
{
	http_reply(r, 200, "text/plain", "hello\n", 6);
}

static void
h_job(struct http_req *r, void *ctx)
{
	http_reply_json(r, 200,
	    json_pack("{s:s,s:s,s:s*}", "id", http_req_param(r, 0), "path",
	        http_req_path(r), "more", http_req_param(r, 1)));
}

/* A reply no JSON text can hold: a string that is not UTF-8 (?bad), or
 * no value at all (a json_pack that failed). */
static void
h_unencodable(struct http_req *r, void *ctx)
{
	http_reply_json(r, 200,
	    http_req_query(r, "bad")
	        ? json_pack("{s:o}", "s", json_stringn_nocheck("\xff", 1))
	        : json_pack("{s:s}", "s", NULL));
}

static void
h_query(struct http_req *r, void *ctx)
{
	http_reply_json(r, 200,
	    json_pack("{s:s*,s:s*,s:s*,s:s*}", "a", http_req_query(r, "a"), "b",
	        http_req_query(r, "b"), "e", http_req_query(r, "e"), "zz",
	        http_req_query(r, "zz")));
}

static void
h_echo(struct http_req *r, void *ctx)
{
	size_t len;
	const char *body = http_req_body(r, &len);

	http_reply(r, 200, "application/octet-stream", body, len);
}

static void
h_length(struct http_req *r, void *ctx)
{
	size_t len;
	char buf[32];
	const char *body = http_req_body(r, &len);

	snprintf(buf, sizeof buf, "%zu %d", len, body[len] == '\0');
	http_reply(r, 200, "text/plain", buf, strlen(buf));
}

static void
h_headers(struct http_req *r, void *ctx)
{
	const char *v = http_req_header(r, "x-test");

	http_reply_header(r, "X-Reply", "yes");
	http_reply_header(r, "X-Bad", "a\r\nInjected: 1");
	http_reply(r, 200, "text/plain", v ? v : "-", strlen(v ? v : "-"));
}

static void
h_error(struct http_req *r, void *ctx)
{
	http_reply_error(r, 402, "insufficient_credits", "not enough",
	    json_pack("{s:i,s:i}", "balance", 1, "cost", 10));
}

static void
h_peer(struct http_req *r, void *ctx)
{
	const char *p = http_req_peer(r);

	http_reply(r, 200, "text/plain", p, strlen(p));
}

static void
h_nocontent(struct http_req *r, void *ctx)
{
	http_reply(r, 204, NULL, NULL, 0);
}

/* A reply deferred to a timer, as a handler waiting on the store would. */
struct deferred {
	struct event *ev;
	struct http_req *req;
	int gone;
};

static void
deferred_fire(evutil_socket_t fd, short what, void *arg)
{
	struct deferred *d = arg;

	http_reply(d->req, 200, "text/plain", "late", 4);
	if (d->gone)
		atomic_fetch_add(&gone_answered, 1);
	event_free(d->ev);
	free(d);
}

static void
defer_reply(struct http_req *r, int ms, int gone)
{
	struct deferred *d = xcalloc(1, sizeof *d);
	struct timeval tv = {0, ms * 1000};

	d->req = r;
	d->gone = gone;
	d->ev = evtimer_new(loop_base, deferred_fire, d);
	evtimer_add(d->ev, &tv);
}

static void
h_defer(struct http_req *r, void *ctx)
{
	defer_reply(r, 100, 0);
}

static void
h_defer_gone(struct http_req *r, void *ctx)
{
	defer_reply(r, 300, 1);
}

static void
on_stream_close(void *arg)
{
	atomic_fetch_add(&stream_closed, 1);
}

static void
h_stream(struct http_req *r, void *ctx)
{
	http_stream_start(r, 200, "text/event-stream", on_stream_close, NULL);
	http_stream_write(r, "hello", 5);
	http_stream_write(r, "", 0);
	http_stream_write(r, "world!", 6);
}

static void
h_stream_end(struct http_req *r, void *ctx)
{
	http_stream_start(r, 200, "text/plain", on_stream_close, NULL);
	http_stream_write(r, "abc", 3);
	http_stream_end(r);
}

/* Five MiB at once to a client that reads nothing: over the limit. */
static void
h_flood(struct http_req *r, void *ctx)
{
	static char block[64 * 1024];
	int i;

	memset(block, 'x', sizeof block);
	http_stream_start(r, 200, "text/plain", on_stream_close, NULL);
	for (i = 0; i < 80; i++)
		http_stream_write(r, block, sizeof block);
}

/* The gate lets a request of a guarded route (access 1) on only with
 * "X-Key: open"; what it leaves on the request is freed with it. */
static atomic_int gate_freed;

static void
gate_data_free(void *data)
{
	free(data);
	atomic_fetch_add(&gate_freed, 1);
}

static int
gate(struct http_req *r, int access, void *ctx, const char **code,
    const char **message)
{
	const char *key = http_req_header(r, "X-Key");

	if (access == 0)
		return 0;
	if (key == NULL || strcmp(key, "open") != 0) {
		*code = "unauthorized";
		*message = "no key";
		return 401;
	}
	http_req_set_data(r, xstrdup("let in"), gate_data_free);
	return 0;
}

static void
h_guarded(struct http_req *r, void *ctx)
{
	size_t len;

	http_req_body(r, &len);
	http_reply_json(r, 200,
	    json_pack("{s:s, s:I}", "data", (char *)http_req_data(r), "len",
	        (json_int_t)len));
}

/* A reply of BIG_REPLY bytes, for a client that does not read them. */
#define BIG_REPLY 60000

static void
h_big(struct http_req *r, void *ctx)
{
	static char block[BIG_REPLY];

	memset(block, 'B', sizeof block);
	http_reply(r, 200, "application/octet-stream", block, sizeof block);
}

/* --- spooled bodies --- */

static char spool_root[64]; /* the suite's temporary directory */
static char spool_dir[96];  /* the spool, made by http_server_spool() */

static void
hex_of(const unsigned char *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", b[i]);
	out[2 * n] = '\0';
}

/* SHA-256 of the file at path, read in small pieces, into out ("" when
 * it cannot be read). */
static void
file_sha256(const char *path, char out[65])
{
	unsigned char buf[64 * 1024], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int fd = open(path, O_RDONLY);
	ssize_t n;

	out[0] = '\0';
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	while (fd >= 0 && (n = read(fd, buf, sizeof buf)) > 0)
		EVP_DigestUpdate(ctx, buf, (size_t)n);
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	if (fd >= 0)
		hex_of(md, mdlen, out);
	EVP_MD_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
}

/* What the handler saw of a spooled body: the spool's word, the file's. */
static json_t *
spool_json(struct http_req *r)
{
	const struct http_spool *sp = http_req_spool(r);
	struct stat st = {0};
	char sum[65], head[33];
	size_t len;

	http_req_body(r, &len);
	if (sp == NULL)
		return json_pack(
		    "{s:b, s:I}", "spooled", 0, "body_len", (json_int_t)len);
	stat(sp->path, &st);
	file_sha256(sp->path, sum);
	hex_of(sp->head, sp->head_len < 16 ? sp->head_len : 16, head);
	return json_pack("{s:b, s:I, s:I, s:s, s:s, s:s, s:I, s:I, s:i}",
	    "spooled", 1, "body_len", (json_int_t)len, "size",
	    (json_int_t)sp->size, "sha256", sp->sha256, "file_sha256", sum,
	    "head", head, "head_len", (json_int_t)sp->head_len, "file_size",
	    (json_int_t)st.st_size, "mode", (int)(st.st_mode & 0777));
}

static void
h_spool(struct http_req *r, void *ctx)
{
	http_reply_json(r, 200, spool_json(r));
}

/* Takes the file: renamed to spool_root/kept, no longer the server's. */
static void
h_spool_keep(struct http_req *r, void *ctx)
{
	json_t *o = spool_json(r);
	char *path = http_req_spool_take(r);
	char *kept = xasprintf("%s/kept", spool_root);

	json_object_set_new(
	    o, "renamed", json_boolean(path && rename(path, kept) == 0));
	json_object_set_new(o, "taken",
	    json_boolean(http_req_spool(r)->path == NULL &&
	                 http_req_spool_take(r) == NULL));
	free(path);
	free(kept);
	http_reply_json(r, 200, o);
}

/* --- streams the test thread writes to, through the loop (ctl_cb) --- */

#define NSLOTS 8
static struct http_req *slot[NSLOTS];
static atomic_int slot_gone[NSLOTS];
static int nslots;

static void
on_slot_close(void *arg)
{
	int i = (int)(intptr_t)arg;

	slot[i] = NULL;
	atomic_store(&slot_gone[i], 1);
	atomic_fetch_add(&stream_closed, 1);
}

static void
h_slot(struct http_req *r, void *ctx)
{
	int i = nslots++;

	slot[i] = r;
	http_stream_start(
	    r, 200, "text/event-stream", on_slot_close, (void *)(intptr_t)i);
}

static const struct http_route routes[] = {
    {HTTP_GET | HTTP_HEAD, "/hello", h_hello, 0, 0, 0},
    {HTTP_GET, "/", h_hello, 0, 0, 0},
    {HTTP_GET, "/v1/jobs/{}", h_job, 0, 0, 0},
    {HTTP_POST, "/v1/jobs/{}/cancel", h_job, 0, 0, 0},
    {HTTP_GET, "/v1/{}/x/{}", h_job, 0, 0, 0},
    {HTTP_GET, "/q", h_query, 0, 0, 0},
    {HTTP_GET, "/unencodable", h_unencodable, 0, 0, 0},
    {HTTP_POST | HTTP_PUT, "/echo", h_echo, 0, 0, 0},
    {HTTP_POST, "/upload", h_length, 1000, 0, 0},
    {HTTP_GET, "/hdr", h_headers, 0, 0, 0},
    {HTTP_GET, "/err", h_error, 0, 0, 0},
    {HTTP_GET, "/peer", h_peer, 0, 0, 0},
    {HTTP_DELETE, "/nothing", h_nocontent, 0, 0, 0},
    {HTTP_GET, "/defer", h_defer, 0, 0, 0},
    {HTTP_GET, "/defer-gone", h_defer_gone, 0, 0, 0},
    {HTTP_GET, "/stream", h_stream, 0, 0, 0},
    {HTTP_GET, "/stream-end", h_stream_end, 0, 0, 0},
    {HTTP_GET, "/flood", h_flood, 0, 0, 0},
    {HTTP_GET, "/slash/", h_hello, 0, 0, 0},
    {HTTP_GET | HTTP_POST, "/guarded", h_guarded, 0, 1, 0},
    {HTTP_GET | HTTP_HEAD, "/healthz", h_hello, 0, 0, HTTP_RESERVE},
    {HTTP_GET, "/big", h_big, 0, 0, 0},
    {HTTP_POST, "/spool", h_spool, 64 << 20, 0, HTTP_SPOOL},
    {HTTP_POST, "/spool-keep", h_spool_keep, 64 << 20, 0, HTTP_SPOOL},
    {HTTP_GET, "/slot", h_slot, 0, 0, 0},
};

/* --- the server thread --- */

static struct event_base *base;
static struct http_server *srv;
static thrd_t thread;
static int ctl[2];
static struct event *ctl_ev;
static int port;

static void
drain_done(void *arg)
{
	atomic_store(&drained, 1);
}

/* A command to the loop: 'd' drain, 'q' stop; 's' stats, 'w' write kib
 * KiB to stream slot, 'p' write to it until kib KiB are pending (at most
 * 64 MiB), each answered with the server's stats. */
struct ctl_msg {
	char cmd;
	int slot;
	size_t kib;
};

/* Write to stream i in 16 KiB pieces: kib KiB, or until kib KiB are
 * pending; writes to a stream dropped but not yet closed do nothing. */
static void
slot_fill(int i, size_t kib, int until_pending)
{
	static char block[16 * 1024];
	size_t written = 0, most = until_pending ? (size_t)64 << 20 : kib << 10;

	memset(block, 'e', sizeof block);
	while (slot[i] != NULL && written < most) {
		if (until_pending && http_stream_pending(slot[i]) >= kib << 10)
			break;
		http_stream_write(slot[i], block, sizeof block);
		written += sizeof block;
	}
}

static void
ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	struct ctl_msg m;
	struct http_stats st;

	if (read(fd, &m, sizeof m) != sizeof m)
		return;
	if (m.cmd == 'd') {
		http_server_drain(srv, drain_done, NULL);
		return;
	} else if (m.cmd == 'q') {
		http_server_free(srv);
		srv = NULL;
		event_base_loopbreak(base);
		return;
	} else if (m.cmd == 'w' || m.cmd == 'p') {
		slot_fill(m.slot, m.kib, m.cmd == 'p');
	}
	http_server_stats(srv, &st);
	if (write(fd, &st, sizeof st) != sizeof st)
		abort();
}

static int
loop_main(void *arg)
{
	event_base_dispatch(base);
	return 0;
}

/* A server with limits l (NULL: the defaults), these CORS origins, and a
 * spool directory if spool is set. */
static void
server_start_with(const struct http_limits *l, const char *cors, int spool)
{
	char err[256];

	/* As the daemon does: a write to a client that left is not fatal. */
	signal(SIGPIPE, SIG_IGN);
	atomic_store(&stream_closed, 0);
	atomic_store(&gone_answered, 0);
	atomic_store(&drained, 0);
	base = event_base_new();
	loop_base = base;
	srv = http_server_new(
	    base, routes, sizeof routes / sizeof routes[0], NULL, 100);
	http_server_cors(srv, cors);
	http_server_gate(srv, gate);
	if (l != NULL)
		http_server_limits(srv, l);
	if (spool) {
		fx_tmpdir(spool_root, sizeof spool_root, "test-http");
		snprintf(spool_dir, sizeof spool_dir, "%s/spool/", spool_root);
		cr_assert_eq(http_server_spool(srv, spool_dir, err, sizeof err),
		    0, "%s", err);
		spool_dir[strlen(spool_dir) - 1] = '\0';
	}
	cr_assert_eq(http_server_listen(srv, "127.0.0.1", 0, err, sizeof err),
	    0, "%s", err);
	port = http_server_port(srv);
	cr_assert_gt(port, 0);
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, ctl), 0);
	ctl_ev = event_new(base, ctl[1], EV_READ | EV_PERSIST, ctl_cb, NULL);
	event_add(ctl_ev, NULL);
	cr_assert_eq(thrd_create(&thread, loop_main, NULL), thrd_success);
}

static void
server_start(void)
{
	server_start_with(
	    NULL, "https://app.example.com http://localhost:3000", 0);
}

static void
server_cmd(char cmd)
{
	struct ctl_msg m = {.cmd = cmd};

	cr_assert_eq(write(ctl[0], &m, sizeof m), (ssize_t)sizeof m);
}

/* Have the loop run cmd (see ctl_cb); the server's stats after it. */
static struct http_stats
server_ask(char cmd, int i, size_t kib)
{
	struct ctl_msg m = {.cmd = cmd, .slot = i, .kib = kib};
	struct http_stats st;
	size_t got = 0;

	cr_assert_eq(write(ctl[0], &m, sizeof m), (ssize_t)sizeof m);
	while (got < sizeof st) {
		ssize_t n = read(ctl[0], (char *)&st + got, sizeof st - got);

		cr_assert_gt(n, 0);
		got += (size_t)n;
	}
	return st;
}

/* Free the server and end its loop, leaving the spool directory. */
static void
server_halt(void)
{
	server_cmd('q');
	thrd_join(thread, NULL);
	event_free(ctl_ev);
	event_base_free(base);
	close(ctl[0]);
	close(ctl[1]);
}

static void
server_stop(void)
{
	server_halt();
	if (spool_root[0] != '\0')
		fx_rmtree(spool_root);
	spool_root[0] = '\0';
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* Wait up to two seconds for *flag to reach want. */
static int
wait_flag(atomic_int *flag, int want)
{
	int i;

	for (i = 0; i < 200 && atomic_load(flag) != want; i++)
		sleep_ms(10);
	return atomic_load(flag);
}

/* --- a blocking client --- */

struct client {
	int fd;
	size_t len;
	char buf[256 * 1024];
};

struct resp {
	int status;
	char head[8192]; /* without the Date line */
	char body[64 * 1024];
	size_t body_len;
};

/* A connection; rcvbuf, when not 0, is set before the connect (a small
 * window: what the client does not read stays in the server). */
static struct client *
cl_open_rcvbuf(int rcvbuf)
{
	struct client *c = xcalloc(1, sizeof *c);
	struct sockaddr_in sa = {0};
	struct timeval tv = {3, 0};

	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	c->fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	if (rcvbuf)
		setsockopt(
		    c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
	cr_assert_eq(connect(c->fd, (void *)&sa, sizeof sa), 0);
	return c;
}

static struct client *
cl_open(void)
{
	return cl_open_rcvbuf(0);
}

static void
cl_close(struct client *c)
{
	close(c->fd);
	free(c);
}

static void
cl_sendn(struct client *c, const void *buf, size_t len)
{
	cr_assert_eq(send(c->fd, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void
cl_send(struct client *c, const char *s)
{
	cl_sendn(c, s, strlen(s));
}

/* More bytes into the buffer: how many, 0 at EOF, -1 on timeout. */
static ssize_t
cl_fill(struct client *c)
{
	ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1, 0);

	if (n > 0)
		c->len += n;
	c->buf[c->len] = '\0';
	return n;
}

static void
cl_consume(struct client *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	c->buf[c->len] = '\0';
}

/* Take n bytes exactly, or fail the test. */
static void
cl_take(struct client *c, char *out, size_t n)
{
	while (c->len < n)
		cr_assert_gt(cl_fill(c), 0, "short read");
	memcpy(out, c->buf, n);
	cl_consume(c, n);
}

static void
cl_expect(struct client *c, const char *want)
{
	size_t n = strlen(want);
	char *got = xmalloc(n + 1);

	cl_take(c, got, n);
	got[n] = '\0';
	cr_assert_str_eq(got, want);
	free(got);
}

/* Is the server's side closed, with nothing more to read? */
static int
cl_eof(struct client *c)
{
	return c->len == 0 && cl_fill(c) == 0;
}

static void
cl_head(struct client *c, struct resp *r)
{
	char *end, *date, *eol;
	size_t n;

	while ((end = strstr(c->buf, "\r\n\r\n")) == NULL)
		cr_assert_gt(cl_fill(c), 0, "no complete head: %s", c->buf);
	n = end + 4 - c->buf;
	cr_assert_lt(n, sizeof r->head);
	memcpy(r->head, c->buf, n);
	r->head[n] = '\0';
	cl_consume(c, n);
	r->status = atoi(r->head + 9);
	date = strstr(r->head, "\r\nDate: ");
	cr_assert(date != NULL || r->status == 100, "no Date: %s", r->head);
	if (date) {
		eol = strstr(date + 2, "\r\n");
		memmove(date, eol, strlen(eol) + 1);
	}
}

static void
cl_chunked(struct client *c, struct resp *r)
{
	for (;;) {
		char *eol;
		size_t n;

		while ((eol = strstr(c->buf, "\r\n")) == NULL)
			cr_assert_gt(cl_fill(c), 0);
		n = strtoul(c->buf, NULL, 16);
		cl_consume(c, eol + 2 - c->buf);
		cl_take(c, r->body + r->body_len, n);
		r->body_len += n;
		cl_expect(c, "\r\n");
		if (n == 0)
			return;
	}
}

/* One whole response, its body framed by length, chunks or close. */
static void
cl_resp(struct client *c, struct resp *r, int head_only)
{
	const char *cl;

	memset(r, 0, sizeof *r);
	cl_head(c, r);
	cl = strstr(r->head, "Content-Length: ");
	if (head_only || r->status == 204) {
		return;
	} else if (cl != NULL) {
		r->body_len = strtoul(cl + 16, NULL, 10);
		cl_take(c, r->body, r->body_len);
	} else if (strstr(r->head, "Transfer-Encoding: chunked")) {
		cl_chunked(c, r);
	} else {
		while (cl_fill(c) > 0)
			;
		memcpy(r->body, c->buf, c->len);
		r->body_len = c->len;
		cl_consume(c, c->len);
	}
	r->body[r->body_len] = '\0';
}

/* One request on a fresh connection; the response in r. */
static void
roundtrip(const char *req, struct resp *r)
{
	struct client *c = cl_open();

	cl_send(c, req);
	cl_resp(c, r, strncmp(req, "HEAD", 4) == 0);
	cl_close(c);
}

TestSuite(http, .init = server_start, .fini = server_stop, .timeout = 30);

/* --- routing and reading --- */

Test(http, exact_reply)
{
	struct resp r;

	roundtrip("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", &r);
	cr_assert_str_eq(r.head, "HTTP/1.1 200 OK\r\n"
	                         "Content-Type: text/plain\r\n"
	                         "Content-Length: 6\r\n"
	                         "\r\n");
	cr_assert_str_eq(r.body, "hello\n");
}

/* The Date of a reply to GET /hello on c, checked to be an IMF-fixdate
 * (the weekday included), as a time. */
static time_t
reply_date(struct client *c)
{
	char *date, *end, want[64];
	struct tm tm = {0};
	time_t t;

	cl_send(c, "GET /hello HTTP/1.1\r\n\r\n");
	while ((end = strstr(c->buf, "hello\n")) == NULL)
		cr_assert_gt(cl_fill(c), 0, "short reply");
	date = strstr(c->buf, "\r\nDate: ");
	cr_assert_not_null(date, "no Date: %s", c->buf);
	date += 8;
	cr_assert_not_null(strptime(date, "%a, %d %b %Y %H:%M:%S GMT", &tm));
	t = timegm(&tm);
	strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	cr_assert_eq(strncmp(date, want, strlen(want)), 0, "Date: %.31s", date);
	cl_consume(c, (size_t)(end + 6 - c->buf));
	return t;
}

Test(http, date_is_the_current_second)
{
	struct client *c = cl_open();

	for (int i = 0; i < 2; i++) {
		time_t before = time(NULL), got = reply_date(c);

		cr_assert(got >= before && got <= time(NULL),
		    "reply %d dated %lld, not now", i, (long long)got);
		sleep_ms(1100); /* the next reply's second is another */
	}
	cl_close(c);
}

Test(http, an_unencodable_reply_is_a_500)
{
	static const char *const paths[] = {
	    "/unencodable?bad=1", "/unencodable"};
	char req[64];
	struct resp r;

	for (size_t i = 0; i < 2; i++) {
		snprintf(req, sizeof req, "GET %s HTTP/1.1\r\n\r\n", paths[i]);
		roundtrip(req, &r);
		cr_assert_eq(r.status, 500, "%s", paths[i]);
		cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"internal\","
		                         "\"message\":\"unencodable reply\"}}");
	}
}

Test(http, params_are_decoded)
{
	struct resp r;

	roundtrip("GET /v1/jobs/a%20b%2Fc HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(
	    r.body, "{\"id\":\"a b/c\",\"path\":\"/v1/jobs/a b/c\"}");
	roundtrip("POST /v1/jobs/j%41/cancel HTTP/1.1\r\n\r\n", &r);
	cr_assert_str_eq(
	    r.body, "{\"id\":\"jA\",\"path\":\"/v1/jobs/jA/cancel\"}");
	roundtrip("GET /v1/one/x/two HTTP/1.1\r\n\r\n", &r);
	cr_assert_str_eq(r.body,
	    "{\"id\":\"one\",\"path\":\"/v1/one/x/two\",\"more\":\"two\"}");
	roundtrip("GET /%761/jobs/z HTTP/1.1\r\n\r\n", &r);
	cr_assert_str_eq(r.body, "{\"id\":\"z\",\"path\":\"/v1/jobs/z\"}");
	roundtrip("GET / HTTP/1.1\r\n\r\n", &r);
	cr_assert_str_eq(r.body, "hello\n");
}

Test(http, segments_and_slashes)
{
	static const char *missing[] = {
	    "GET /v1/jobs/ HTTP/1.1\r\n\r\n",
	    "GET /v1/jobs HTTP/1.1\r\n\r\n",
	    "GET /v1/jobs/a/ HTTP/1.1\r\n\r\n",
	    "GET /v1/jobs//cancel HTTP/1.1\r\n\r\n",
	    "GET /hello/ HTTP/1.1\r\n\r\n",
	    "GET //hello HTTP/1.1\r\n\r\n",
	    "GET /slash HTTP/1.1\r\n\r\n",
	    "GET /v1/x/x/ HTTP/1.1\r\n\r\n",
	};
	struct resp r;
	size_t i;

	for (i = 0; i < sizeof missing / sizeof missing[0]; i++) {
		roundtrip(missing[i], &r);
		cr_assert_eq(r.status, 404, "%s", missing[i]);
	}
	roundtrip("GET /slash/ HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
}

Test(http, bad_escapes)
{
	static const char *bad[] = {
	    "GET /v1/jobs/a%00 HTTP/1.1\r\n\r\n",
	    "GET /v1/jobs/a%2 HTTP/1.1\r\n\r\n",
	    "GET /v1/jobs/a% HTTP/1.1\r\n\r\n",
	    "GET /v1/jobs/a%zz HTTP/1.1\r\n\r\n",
	    /* the query too: a value that cannot be read is no value */
	    "GET /q?cursor=%00 HTTP/1.1\r\n\r\n",
	    "GET /q?a=1&bad=%G1 HTTP/1.1\r\n\r\n",
	    "GET /q?%zz=1 HTTP/1.1\r\n\r\n",
	    "GET /q?limit=5%00 HTTP/1.1\r\n\r\n",
	};
	struct resp r;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		roundtrip(bad[i], &r);
		cr_assert_eq(r.status, 400, "%s", bad[i]);
		cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"bad_request\","
		                         "\"message\":\"malformed request "
		                         "line\"}}");
	}
}

Test(http, query)
{
	struct resp r;

	roundtrip("GET /q?a=1+2%2B&b=%41%42&a=second&e HTTP/1.1\r\n\r\n", &r);
	cr_assert_str_eq(r.body, "{\"a\":\"1 2+\",\"b\":\"AB\",\"e\":\"\"}");
	roundtrip("GET /q HTTP/1.1\r\n\r\n", &r);
	cr_assert_str_eq(r.body, "{}");
}

Test(http, headers_and_reply_headers)
{
	struct resp r;

	roundtrip("GET /hdr HTTP/1.1\r\nx-TEST:  spaced value \t\r\n\r\n", &r);
	cr_assert_str_eq(r.head, "HTTP/1.1 200 OK\r\n"
	                         "Content-Type: text/plain\r\n"
	                         "Content-Length: 12\r\n"
	                         "X-Reply: yes\r\n"
	                         "\r\n");
	cr_assert_str_eq(r.body, "spaced value");
}

Test(http, not_found_and_method)
{
	struct resp r;

	roundtrip("GET /nope HTTP/1.1\r\n\r\n", &r);
	cr_assert_str_eq(r.head, "HTTP/1.1 404 Not Found\r\n"
	                         "Content-Type: application/json\r\n"
	                         "Content-Length: 55\r\n"
	                         "\r\n");
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"not_found\","
	                         "\"message\":\"no such path\"}}");
	roundtrip("DELETE /echo HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 405);
	cr_assert(strstr(r.head, "\r\nAllow: POST, PUT\r\n"), "%s", r.head);
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"method_not_allowed\","
	                         "\"message\":\"method not allowed here\"}}");
	roundtrip("PATCH /hello HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 405);
	cr_assert(strstr(r.head, "\r\nAllow: GET, HEAD\r\n"), "%s", r.head);
}

/* --- CORS: pages of other origins --- */

Test(http, cors_allowed_origin_on_every_answer)
{
	struct resp r;

	roundtrip(
	    "GET /hello HTTP/1.1\r\nOrigin: http://localhost:3000\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
	cr_assert(strstr(r.head, "\r\nVary: Origin\r\n"
	                         "Access-Control-Allow-Origin: "
	                         "http://localhost:3000\r\n"),
	    "%s", r.head);
	/* Errors too, or the page could not read them. */
	roundtrip(
	    "GET /err HTTP/1.1\r\nOrigin: https://app.example.com\r\n\r\n", &r);
	cr_assert_eq(r.status, 402);
	cr_assert(strstr(r.head, "\r\nAccess-Control-Allow-Origin: "
	                         "https://app.example.com\r\n"),
	    "%s", r.head);
	roundtrip(
	    "GET /nope HTTP/1.1\r\nOrigin: https://app.example.com\r\n\r\n",
	    &r);
	cr_assert_eq(r.status, 404);
	cr_assert(strstr(r.head, "Access-Control-Allow-Origin"), "%s", r.head);
	/* Even a refusal from the head alone. */
	roundtrip("POST /echo HTTP/1.1\r\nOrigin: https://app.example.com\r\n"
	          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	    &r);
	cr_assert_eq(r.status, 411);
	cr_assert(strstr(r.head, "Access-Control-Allow-Origin"), "%s", r.head);
}

Test(http, cors_other_origins_get_nothing)
{
	static const char *const reqs[] = {
	    "GET /hello HTTP/1.1\r\nOrigin: https://evil.example.com\r\n\r\n",
	    "GET /hello HTTP/1.1\r\nOrigin: "
	    "https://app.example.com.evil\r\n\r\n",
	    "GET /hello HTTP/1.1\r\nOrigin: https://app.example\r\n\r\n",
	    "GET /hello HTTP/1.1\r\nOrigin: null\r\n\r\n",
	    "GET /hello HTTP/1.1\r\nOrigin: \r\n\r\n",
	    "GET /hello HTTP/1.1\r\n\r\n",
	};
	struct resp r;

	for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
		roundtrip(reqs[i], &r);
		cr_assert_eq(r.status, 200, "%s", reqs[i]);
		cr_assert_null(strstr(r.head, "Access-Control"), "%s", reqs[i]);
		/* The answer depends on Origin: caches must know it. */
		cr_assert_eq(strstr(r.head, "\r\nVary: Origin\r\n") != NULL,
		    strstr(reqs[i], "Origin") != NULL, "%s", r.head);
	}
	/* A preflight from elsewhere is no preflight: OPTIONS is no method
	 * of the route. */
	roundtrip(
	    "OPTIONS /echo HTTP/1.1\r\nOrigin: https://evil.example.com\r\n"
	    "Access-Control-Request-Method: POST\r\n\r\n",
	    &r);
	cr_assert_eq(r.status, 405);
	cr_assert_null(strstr(r.head, "Access-Control"), "%s", r.head);
}

Test(http, cors_preflight_from_the_route_table)
{
	struct resp r;

	roundtrip(
	    "OPTIONS /echo HTTP/1.1\r\nOrigin: https://app.example.com\r\n"
	    "Access-Control-Request-Method: POST\r\n"
	    "Access-Control-Request-Headers: authorization, content-type\r\n"
	    "\r\n",
	    &r);
	cr_assert_eq(r.status, 204);
	cr_assert(strstr(r.head, "\r\nAccess-Control-Allow-Origin: "
	                         "https://app.example.com\r\n"),
	    "%s", r.head);
	cr_assert(
	    strstr(r.head, "\r\nAccess-Control-Allow-Methods: POST, PUT\r\n"),
	    "%s", r.head);
	cr_assert(strstr(r.head, "\r\nAccess-Control-Allow-Headers: "
	                         "Authorization, Content-Type, Idempotency-Key,"
	                         " Last-Event-ID\r\n"),
	    "%s", r.head);
	cr_assert(strstr(r.head, "\r\nAccess-Control-Max-Age: 600\r\n"), "%s",
	    r.head);
	/* Of a path that is not there: 404, readable by the page. */
	roundtrip(
	    "OPTIONS /nope HTTP/1.1\r\nOrigin: https://app.example.com\r\n"
	    "Access-Control-Request-Method: GET\r\n\r\n",
	    &r);
	cr_assert_eq(r.status, 404);
	cr_assert(strstr(r.head, "Access-Control-Allow-Origin"), "%s", r.head);
	/* OPTIONS without the request method is no preflight. */
	roundtrip(
	    "OPTIONS /echo HTTP/1.1\r\nOrigin: https://app.example.com\r\n"
	    "\r\n",
	    &r);
	cr_assert_eq(r.status, 405);
}

Test(http, cors_preflight_with_a_body_closes)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c,
	    "OPTIONS /echo HTTP/1.1\r\nOrigin: https://app.example.com\r\n"
	    "Access-Control-Request-Method: POST\r\n"
	    "Content-Length: 5\r\n\r\nhello");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 204);
	cr_assert(strstr(r.head, "\r\nConnection: close\r\n"), "%s", r.head);
	cr_assert(cl_eof(c), "the unread body is not taken for a request");
	cl_close(c);
}

Test(http, cors_preflight_keeps_the_connection)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c,
	    "OPTIONS /hello HTTP/1.1\r\nOrigin: https://app.example.com\r\n"
	    "Access-Control-Request-Method: GET\r\n\r\n"
	    "GET /hello HTTP/1.1\r\nOrigin: https://app.example.com\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 204);
	cr_assert(strstr(r.head, "Access-Control-Allow-Methods: GET, HEAD\r\n"),
	    "%s", r.head);
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 200);
	cr_assert(strstr(r.head, "Access-Control-Allow-Origin"), "%s", r.head);
	cl_close(c);
}

Test(http, error_shape)
{
	struct resp r;

	roundtrip("GET /err HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 402);
	cr_assert(strstr(r.head, "402 Payment Required\r\n"));
	cr_assert_str_eq(r.body,
	    "{\"error\":{\"code\":\"insufficient_credits\","
	    "\"message\":\"not enough\",\"details\":{"
	    "\"balance\":1,\"cost\":10}}}");
}

Test(http, head_and_no_content)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "HEAD /hello HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 1);
	cr_assert_str_eq(r.head, "HTTP/1.1 200 OK\r\n"
	                         "Content-Type: text/plain\r\n"
	                         "Content-Length: 6\r\n"
	                         "\r\n");
	cl_send(c, "DELETE /nothing HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.head, "HTTP/1.1 204 No Content\r\n\r\n");
	cl_send(c, "GET /hello HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "hello\n");
	cl_close(c);
}

Test(http, peer)
{
	struct client *c = cl_open();
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	char want[64];
	struct resp r;

	getsockname(c->fd, (void *)&sa, &len);
	snprintf(want, sizeof want, "127.0.0.1:%d", ntohs(sa.sin_port));
	cl_send(c, "GET /peer HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, want);
	cl_close(c);
}

/* --- bodies and limits --- */

Test(http, too_large_from_content_length)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 101\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.head, "HTTP/1.1 413 Content Too Large\r\n"
	                         "Content-Type: application/json\r\n"
	                         "Content-Length: 93\r\n"
	                         "Connection: close\r\n"
	                         "\r\n");
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"too_large\","
	                         "\"message\":\"the body is over 100 bytes\","
	                         "\"details\":{\"limit\":100}}}");
	cr_assert(cl_eof(c));
	cl_close(c);
}

Test(http, too_large_huge_length)
{
	struct resp r;

	roundtrip("POST /upload HTTP/1.1\r\n"
	          "Content-Length: 99999999999999999999999999\r\n\r\n",
	    &r);
	cr_assert_eq(r.status, 413);
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"too_large\","
	                         "\"message\":\"the body is over 1000 bytes\","
	                         "\"details\":{\"limit\":1000}}}");
}

Test(http, too_large_while_body_is_sent)
{
	/* A client that sends the body anyway still reads the 413, then a
	 * clean end of stream rather than a reset. */
	struct client *c = cl_open();
	char body[5000];
	struct resp r;

	memset(body, 'b', sizeof body);
	cl_send(c, "POST /upload HTTP/1.1\r\nContent-Length: 5000\r\n\r\n");
	cl_sendn(c, body, sizeof body);
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 413);
	cr_assert(cl_eof(c));
	cl_close(c);
}

/* --- the gate, from the head --- */

Test(http, gate_refuses_before_the_body_is_read)
{
	/* The body is announced and never sent: the answer cannot wait for
	 * it, and the connection closes after, as the body will not be read. */
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "POST /guarded HTTP/1.1\r\nContent-Length: 90\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 401);
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"unauthorized\","
	                         "\"message\":\"no key\"}}");
	cr_assert(strstr(r.head, "Connection: close\r\n"));
	cr_assert(cl_eof(c));
	cl_close(c);
}

Test(http, gate_refusal_without_a_body_keeps_the_connection)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /guarded HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 401);
	cl_send(c, "GET /hello HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 200);
	cl_close(c);
}

Test(http, gate_lets_in_and_its_data_lives_with_the_request)
{
	struct resp r;
	int freed = atomic_load(&gate_freed);

	roundtrip("POST /guarded HTTP/1.1\r\nX-Key: open\r\n"
	          "Content-Length: 3\r\n\r\nabc",
	    &r);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "{\"data\":\"let in\",\"len\":3}");
	cr_assert_eq(wait_flag(&gate_freed, freed + 1), freed + 1);
	/* Routes without access never meet the gate's refusal. */
	roundtrip("GET /hello HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
}

Test(http, body_at_limit)
{
	struct client *c = cl_open();
	char body[100];
	struct resp r;

	memset(body, 'a', sizeof body);
	body[50] = '\0';
	cl_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
	cl_sendn(c, body, sizeof body);
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, 100);
	cr_assert_eq(memcmp(r.body, body, 100), 0);
	/* The connection stays usable after a body. */
	cl_send(c, "PUT /echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.body_len, 0);
	cl_close(c);
}

Test(http, per_route_limit)
{
	struct client *c = cl_open();
	char body[1000];
	struct resp r;

	memset(body, 'z', sizeof body);
	cl_send(c, "POST /upload HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
	/* In pieces, as a slow client would. */
	cl_sendn(c, body, 10);
	sleep_ms(20);
	cl_sendn(c, body + 10, 990);
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "1000 1");
	cl_close(c);
	roundtrip("POST /upload HTTP/1.1\r\nContent-Length: 1001\r\n\r\n", &r);
	cr_assert_eq(r.status, 413);
}

Test(http, expect_continue)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "POST /upload HTTP/1.1\r\nContent-Length: 10\r\n"
	           "Expect: 100-continue\r\n\r\n");
	cl_expect(c, "HTTP/1.1 100 Continue\r\n\r\n");
	cl_send(c, "0123456789");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "10 1");
	cl_close(c);

	/* Over the limit: no 100, the 413 at once, then the close. */
	c = cl_open();
	cl_send(c, "POST /upload HTTP/1.1\r\nContent-Length: 31457280\r\n"
	           "Expect: 100-continue\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 413);
	cr_assert(cl_eof(c));
	cl_close(c);
}

Test(http, bad_content_length)
{
	static const char *bad[] = {
	    "POST /echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
	    "POST /echo HTTP/1.1\r\nContent-Length: 1x\r\n\r\n",
	    "POST /echo HTTP/1.1\r\nContent-Length: \r\n\r\n",
	    "POST /echo HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
	    "POST /echo HTTP/1.1\r\nContent-Length: 5\r\n"
	    "Content-Length: 6\r\n\r\n",
	};
	struct resp r;
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		roundtrip(bad[i], &r);
		cr_assert_eq(r.status, 400, "%s", bad[i]);
	}
	roundtrip("POST /echo HTTP/1.1\r\nContent-Length: 2\r\n"
	          "Content-Length: 2\r\n\r\nok",
	    &r);
	cr_assert_str_eq(r.body, "ok");
}

Test(http, chunked_request_refused)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
	           "2\r\nok\r\n0\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 411);
	cr_assert(strstr(r.head, "Connection: close\r\n"));
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"length_required\","
	                         "\"message\":\"send the body with a "
	                         "Content-Length\"}}");
	cr_assert(cl_eof(c));
	cl_close(c);
}

/* --- connections --- */

Test(http, keep_alive)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /hello HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "hello\n");
	cr_assert_null(strstr(r.head, "Connection"));
	cl_send(c, "GET /v1/jobs/2 HTTP/1.1\r\nConnection: close\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert(strstr(r.head, "Connection: close\r\n"));
	cr_assert_str_eq(r.body, "{\"id\":\"2\",\"path\":\"/v1/jobs/2\"}");
	cr_assert(cl_eof(c));
	cl_close(c);
}

Test(http, pipelining)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /defer HTTP/1.1\r\n\r\n"
	           "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
	           "\r\n" /* a stray CRLF between requests is tolerated */
	           "GET /v1/jobs/p HTTP/1.1\r\n\r\n"
	           "GET /nope HTTP/1.1\r\n\r\n"
	           "GET /hello HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "late");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "abc");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "{\"id\":\"p\",\"path\":\"/v1/jobs/p\"}");
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 404);
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "hello\n");
	cl_close(c);
}

Test(http, pipelined_replies_wait_for_their_reader)
{
	/* 100 requests for 6 MB of replies, read only later: the server reads
	 * no further request while what it owes piles up, then serves all. */
	static const char one[] = "GET /big HTTP/1.1\r\n\r\n";
	struct client *c = cl_open_rcvbuf(4096);
	char *reqs = xmalloc(100 * (sizeof one - 1) + 1), *p = reqs;
	struct resp r;

	for (int i = 0; i < 100; i++)
		p += sprintf(p, "%s", one);
	cl_send(c, reqs);
	sleep_ms(300);
	for (int i = 0; i < 100; i++) {
		cl_resp(c, &r, 0);
		cr_assert_eq(r.status, 200);
		cr_assert_eq(r.body_len, BIG_REPLY);
	}
	free(reqs);
	cl_close(c);
}

Test(http, http10)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /hello HTTP/1.0\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.head, "HTTP/1.1 200 OK\r\n"
	                         "Content-Type: text/plain\r\n"
	                         "Content-Length: 6\r\n"
	                         "Connection: close\r\n"
	                         "\r\n");
	cr_assert(cl_eof(c));
	cl_close(c);

	c = cl_open();
	cl_send(c, "GET /hello HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert(strstr(r.head, "Connection: keep-alive\r\n"));
	cl_send(c, "GET /hello HTTP/1.0\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert(strstr(r.head, "Connection: close\r\n"));
	cr_assert(cl_eof(c));
	cl_close(c);
}

/* --- malformed input --- */

static void
expect_refused(const char *req, size_t len, int status)
{
	struct client *c = cl_open();
	struct resp r;

	cl_sendn(c, req, len);
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, status, "%.60s: %d", req, r.status);
	cr_assert(strstr(r.head, "Connection: close\r\n"));
	cr_assert(strstr(r.body, "{\"error\":{\"code\":\""));
	cr_assert(cl_eof(c));
	cl_close(c);
}

Test(http, malformed)
{
	static const char *bad[] = {
	    "GARBAGE\r\n\r\n",
	    "GET /\r\n\r\n",
	    "GET  / HTTP/1.1\r\n\r\n",
	    "GET / HTTP/1.1 \r\n\r\n",
	    "GET hello HTTP/1.1\r\n\r\n",
	    "GET / FTP/1.1\r\n\r\n",
	    "G(T / HTTP/1.1\r\n\r\n",
	    "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
	    "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
	    "GET / HTTP/1.1\r\nName : x\r\n\r\n",
	    "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
	    "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
	    "\x16\x03\x01\x02\xff\x01\x7f\r\n\r\n",
	};
	static const char nul[] = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n";
	size_t i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_refused(bad[i], strlen(bad[i]), 400);
	expect_refused(nul, sizeof nul - 1, 400);
	expect_refused("GET / HTTP/2.0\r\n\r\n", 18, 505);
	expect_refused("GET / HTTP/1.10\r\n\r\n", 19, 505);
}

/* A later HTTP/1 minor is answered as 1.1 (RFC 9112, 2.6). */
Test(http, later_minor_is_served_as_1_1)
{
	struct resp r;

	roundtrip("GET /hello HTTP/1.2\r\nHost: x\r\n\r\n", &r);
	cr_assert_eq(r.status, 200, "%s", r.head);
	cr_assert_eq(strncmp(r.head, "HTTP/1.1 200", 12), 0, "%s", r.head);
}

Test(http, limits)
{
	size_t n = 40 * 1024, i;
	char *big = xmalloc(n + 64);
	char *p;

	/* A request line over 8 KiB, with and without its end. */
	memcpy(big, "GET /", 5);
	memset(big + 5, 'a', 9000);
	strcpy(big + 9005, " HTTP/1.1\r\n\r\n");
	expect_refused(big, strlen(big), 400);
	expect_refused(big, 9005, 400);

	/* A header block over 32 KiB. */
	p = big + sprintf(big, "GET / HTTP/1.1\r\nX: ");
	memset(p, 'v', n - 30);
	strcpy(p + n - 30, "\r\n\r\n");
	expect_refused(big, strlen(big), 431);
	expect_refused(big, strlen(big) - 4, 431);

	/* More than 100 headers. */
	p = big + sprintf(big, "GET / HTTP/1.1\r\n");
	for (i = 0; i < 101; i++)
		p += sprintf(p, "H%zu: v\r\n", i);
	strcpy(p, "\r\n");
	expect_refused(big, strlen(big), 431);
	free(big);
}

Test(http, client_leaves_mid_request)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /hello HTTP/1.1\r\nHost: x");
	cl_close(c);
	c = cl_open();
	cl_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 50\r\n\r\nhalf");
	cl_close(c);
	sleep_ms(50);
	roundtrip("GET /hello HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
}

/* --- deferred replies and streams --- */

Test(http, deferred_reply)
{
	struct resp r;

	roundtrip("GET /defer HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
	cr_assert_str_eq(r.body, "late");
}

Test(http, client_gone_before_deferred_reply)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /defer-gone HTTP/1.1\r\n\r\n");
	sleep_ms(50);
	cl_close(c);
	cr_assert_eq(wait_flag(&gone_answered, 1), 1);
	roundtrip("GET /hello HTTP/1.1\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
}

Test(http, stream_and_client_leaves)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /stream HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 1);
	cr_assert_str_eq(r.head, "HTTP/1.1 200 OK\r\n"
	                         "Content-Type: text/event-stream\r\n"
	                         "Transfer-Encoding: chunked\r\n"
	                         "Cache-Control: no-cache\r\n"
	                         "\r\n");
	cl_expect(c, "5\r\nhello\r\n6\r\nworld!\r\n");
	cr_assert_eq(atomic_load(&stream_closed), 0);
	cl_close(c);
	cr_assert_eq(wait_flag(&stream_closed, 1), 1);
}

Test(http, stream_end_keeps_connection)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /stream-end HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 1);
	cl_expect(c, "3\r\nabc\r\n0\r\n\r\n");
	cl_send(c, "GET /hello HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "hello\n");
	cl_close(c);
	cr_assert_eq(atomic_load(&stream_closed), 0);
}

Test(http, stream_http10)
{
	struct client *c = cl_open();
	struct resp r;

	cl_send(c, "GET /stream-end HTTP/1.0\r\n\r\n");
	cl_resp(c, &r, 1);
	cr_assert_str_eq(r.head, "HTTP/1.1 200 OK\r\n"
	                         "Content-Type: text/plain\r\n"
	                         "Cache-Control: no-cache\r\n"
	                         "Connection: close\r\n"
	                         "\r\n");
	cl_expect(c, "abc");
	cr_assert(cl_eof(c));
	cl_close(c);
}

Test(http, slow_stream_reader_dropped)
{
	struct client *c = cl_open();
	int rcv = 4096;

	setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
	cl_send(c, "GET /flood HTTP/1.1\r\n\r\n");
	cr_assert_eq(wait_flag(&stream_closed, 1), 1);
	cl_close(c);
}

/* --- drain --- */

Test(http, drain)
{
	struct client *idle = cl_open(), *stream = cl_open(), *busy = cl_open();
	struct resp r;
	struct sockaddr_in sa = {0};
	int fd;

	cl_send(idle, "GET /hello HTTP/1.1\r\n\r\n");
	cl_resp(idle, &r, 0);
	cl_send(stream, "GET /stream HTTP/1.1\r\n\r\n");
	cl_resp(stream, &r, 1);
	cl_send(busy, "GET /defer-gone HTTP/1.1\r\n\r\n");
	sleep_ms(50);
	server_cmd('d');

	cr_assert(cl_eof(idle));
	cr_assert_eq(wait_flag(&stream_closed, 1), 1);
	cl_resp(busy, &r, 0);
	cr_assert_str_eq(r.body, "late");
	cr_assert(strstr(r.head, "Connection: close\r\n"));
	cr_assert(cl_eof(busy));
	cr_assert_eq(wait_flag(&drained, 1), 1);

	/* No longer accepting. */
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_neq(connect(fd, (void *)&sa, sizeof sa), 0);
	close(fd);
	cl_close(idle);
	cl_close(stream);
	cl_close(busy);
}

Test(http, drain_with_nothing_open)
{
	server_cmd('d');
	cr_assert_eq(wait_flag(&drained, 1), 1);
}

Test(http, free_with_open_connections)
{
	struct client *idle = cl_open(), *stream = cl_open();
	struct resp r;

	cl_send(stream, "GET /stream HTTP/1.1\r\n\r\n");
	cl_resp(stream, &r, 1);
	cl_send(idle, "GET /hel");
	sleep_ms(50);
	server_stop();
	cr_assert_eq(atomic_load(&stream_closed), 1);
	cl_close(idle);
	cl_close(stream);
	/* .fini stops the server again: start a fresh one for it. */
	server_start();
}

/* --- more of the client: slow ones, silent servers --- */

/* Is there nothing to read for ms milliseconds? */
static int
cl_quiet(struct client *c, int ms)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};

	return c->len == 0 && poll(&p, 1, ms) == 0;
}

/*
 * Send n bytes of s one at a time, ms milliseconds apart, until the server
 * answers: the milliseconds from the first byte to the answer's, or -1 if
 * none came before the bytes ran out.
 */
static int64_t
cl_trickle(struct client *c, const char *s, size_t n, int ms)
{
	int64_t start = mono_ms();

	for (size_t i = 0; i < n; i++) {
		ssize_t got;

		send(c->fd, s + i, 1, MSG_NOSIGNAL);
		sleep_ms(ms);
		got = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len - 1,
		    MSG_DONTWAIT);
		if (got > 0) {
			c->len += (size_t)got;
			c->buf[c->len] = '\0';
			return mono_ms() - start;
		}
	}
	return -1;
}

/* Wait up to two seconds for cond. */
#define WAIT_UNTIL(cond)                                                       \
	do {                                                                   \
		for (int w_ = 0; w_ < 200 && !(cond); w_++)                    \
			sleep_ms(10);                                          \
	} while (0)

/* --- connection limits: 4, the last 2 a reserve --- */

static void
start_limits(void)
{
	struct http_limits l;

	http_limits_default(&l);
	l.max_connections = 4;
	l.reserve = 2;
	server_start_with(&l, NULL, 0);
}

TestSuite(limits, .init = start_limits, .fini = server_stop, .timeout = 30);

static void
expect_status(struct client *c, const char *req, int status)
{
	struct resp r;

	cl_send(c, req);
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, status, "%s: %s", req, r.head);
}

Test(limits, the_reserve_serves_healthz_only)
{
	struct client *a = cl_open(), *b = cl_open(), *c, *d;
	struct resp r;

	expect_status(a, "GET /hello HTTP/1.1\r\n\r\n", 200);
	expect_status(b, "GET /hello HTTP/1.1\r\n\r\n", 200);
	/* Past max - reserve: refused, and closed. */
	c = cl_open();
	cl_send(c, "GET /hello HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.head, "HTTP/1.1 503 Service Unavailable\r\n"
	                         "Content-Type: application/json\r\n"
	                         "Content-Length: 65\r\n"
	                         "Connection: close\r\n"
	                         "\r\n");
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"unavailable\","
	                         "\"message\":\"too many connections\"}}");
	cr_assert(cl_eof(c));
	cl_close(c);
	/* A probe is served, again and again on its connection. */
	d = cl_open();
	expect_status(d, "GET /healthz HTTP/1.1\r\n\r\n", 200);
	expect_status(d, "GET /healthz HTTP/1.1\r\n\r\n", 200);
	cr_assert_eq(server_ask('s', 0, 0).refused_full, 1);
	/* Once there is room again, the connection leaves the reserve. */
	cl_close(a);
	WAIT_UNTIL(server_ask('s', 0, 0).connections == 2);
	expect_status(d, "GET /hello HTTP/1.1\r\n\r\n", 200);
	cr_assert_eq(server_ask('s', 0, 0).reserved, 0);
	cl_close(b);
	cl_close(d);
}

Test(limits, the_listener_pauses_at_max_and_resumes)
{
	struct client *c[4], *late;
	struct http_stats st;
	struct resp r;

	for (int i = 0; i < 4; i++) {
		c[i] = cl_open();
		expect_status(c[i], "GET /healthz HTTP/1.1\r\n\r\n", 200);
	}
	st = server_ask('s', 0, 0);
	cr_assert_eq(st.connections, 4);
	cr_assert_eq(st.paused, 1);
	cr_assert_eq(st.pauses, 1);
	/* The kernel completes the handshake; nobody answers. */
	late = cl_open();
	cl_send(late, "GET /healthz HTTP/1.1\r\n\r\n");
	cr_assert(cl_quiet(late, 300), "answered over the cap");
	cr_assert_eq(server_ask('s', 0, 0).connections, 4);
	cl_close(c[0]);
	cl_resp(late, &r, 0);
	cr_assert_eq(r.status, 200);
	st = server_ask('s', 0, 0);
	cr_assert_eq(st.connections, 4);
	cr_assert_eq(st.paused, 1);
	cr_assert_eq(st.pauses, 2);
	for (int i = 1; i < 4; i++)
		cl_close(c[i]);
	cl_close(late);
}

/* --- deadlines: a head in 500 ms, a body at 1000 B/s after 300 ms --- */

static void
start_deadlines(void)
{
	struct http_limits l;

	http_limits_default(&l);
	l.head_timeout_ms = 500;
	l.body_grace_ms = 300;
	l.body_min_rate = 1000;
	server_start_with(&l, NULL, 1);
}

TestSuite(
    deadlines, .init = start_deadlines, .fini = server_stop, .timeout = 30);

/* The 408 of a trickle that took ms, then the close. */
static void
expect_timeout(struct client *c, int64_t ms, int64_t lo, const char *what)
{
	char want[160];
	struct resp r;

	cr_assert(ms >= lo && ms < lo + 1000, "answered after %lld ms",
	    (long long)ms);
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 408, "%s", r.head);
	cr_assert(strstr(r.head, "Connection: close\r\n"), "%s", r.head);
	snprintf(want, sizeof want,
	    "{\"error\":{\"code\":\"request_timeout\","
	    "\"message\":\"the request %s came too slowly\"}}",
	    what);
	cr_assert_str_eq(r.body, want);
	cr_assert(cl_eof(c));
}

Test(deadlines, a_trickled_head_is_cut_off)
{
	struct client *c = cl_open();
	char head[2048];

	/* 40 bytes a second, never ending: each would have reset a timer of
	 * silence; the head's deadline does not move. */
	snprintf(head, sizeof head, "GET /hello HTTP/1.1\r\nX-Pad: %01500d", 0);
	expect_timeout(c, cl_trickle(c, head, strlen(head), 25), 450, "head");
	cl_close(c);
	cr_assert_eq(server_ask('s', 0, 0).timeouts, 1);
}

Test(deadlines, the_head_deadline_runs_from_the_first_byte)
{
	struct client *c = cl_open();
	static const char req[] = "GET /hello HTTP/1.1\r\n\r\n";

	expect_status(c, req, 200);
	/* Idle longer than a head may take: still open. */
	sleep_ms(700);
	expect_status(c, req, 200);
	sleep_ms(700);
	expect_timeout(c, cl_trickle(c, req, sizeof req - 1, 100), 450, "head");
	cl_close(c);
}

Test(deadlines, a_silent_connection_closes_without_a_word)
{
	struct client *c = cl_open();
	int64_t start = mono_ms();

	cr_assert_eq(cl_fill(c), 0);
	cr_assert_eq(c->len, 0);
	cr_assert_geq(mono_ms() - start, 450);
	cl_close(c);
}

Test(deadlines, a_trickled_body_is_cut_off)
{
	struct client *c = cl_open();
	char body[100];

	memset(body, 'b', sizeof body);
	cl_send(c, "POST /echo HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
	/* 20 B/s: behind the minimum as soon as the grace is over. */
	expect_timeout(c, cl_trickle(c, body, sizeof body, 50), 250, "body");
	cl_close(c);
}

Test(deadlines, a_body_above_the_rate_is_served)
{
	struct client *c = cl_open();
	char body[1000];
	struct resp r;

	/* 2000 B/s for half a second: slower than the grace alone allows
	 * for no byte, faster than the minimum rate. */
	memset(body, 'z', sizeof body);
	cl_send(c, "POST /upload HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
	for (int i = 0; i < 10; i++) {
		cl_sendn(c, body + 100 * i, 100);
		sleep_ms(50);
	}
	cl_resp(c, &r, 0);
	cr_assert_str_eq(r.body, "1000 1");
	cl_close(c);
}

/* Spool files in the spool directory. */
static int
spool_files(void)
{
	DIR *d = opendir(spool_dir);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d, "%s", spool_dir);
	while ((e = readdir(d)) != NULL)
		n += strncmp(e->d_name, "fila-spool-", 11) == 0;
	closedir(d);
	return n;
}

Test(deadlines, a_trickled_upload_is_cut_off_and_its_file_removed)
{
	struct client *c = cl_open();
	char body[1000];

	memset(body, 'u', sizeof body);
	cl_send(c, "POST /spool HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
	cl_sendn(c, body, 10);
	WAIT_UNTIL(spool_files() == 1);
	cr_assert_eq(spool_files(), 1);
	expect_timeout(c, cl_trickle(c, body, 40, 50), 250, "body");
	cr_assert_eq(spool_files(), 0);
	cl_close(c);
}

/* --- spooled bodies --- */

static void
start_spool(void)
{
	server_start_with(NULL, NULL, 1);
}

TestSuite(spool, .init = start_spool, .fini = server_stop, .timeout = 30);

/* POST body (n bytes) to path; the handler's JSON. */
static json_t *
post_spool(const char *path, const void *body, size_t n)
{
	struct client *c = cl_open();
	char head[128];
	struct resp r;
	json_t *o;

	snprintf(head, sizeof head,
	    "POST %s HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", path, n);
	cl_send(c, head);
	if (n > 0)
		cl_sendn(c, body, n);
	cl_resp(c, &r, 0);
	cr_assert_eq(r.status, 200, "%s%s", r.head, r.body);
	o = json_loads(r.body, 0, NULL);
	cr_assert_not_null(o, "%s", r.body);
	cl_close(c);
	return o;
}

static const char *
jstr(json_t *o, const char *k)
{
	const char *v = json_string_value(json_object_get(o, k));

	cr_assert_not_null(v, "no %s", k);
	return v;
}

static json_int_t
jint(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* AddressSanitizer keeps what is freed aside for a while: the process's
 * peak memory says nothing then. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEANINGFUL 0
#endif
#endif
#ifndef RSS_MEANINGFUL
#define RSS_MEANINGFUL 1
#endif

Test(spool, a_big_upload_goes_to_disk_in_bounded_memory)
{
	static unsigned char chunk[64 * 1024];
	const size_t total = (size_t)16 << 20;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	char want[65], head[33], req[128];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	struct rusage before, after;
	struct client *c;
	struct resp r;
	uint32_t x = 2463534242u;
	json_t *o;

	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	getrusage(RUSAGE_SELF, &before);
	c = cl_open();
	snprintf(req, sizeof req,
	    "POST /spool HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", total);
	cl_send(c, req);
	for (size_t sent = 0; sent < total; sent += sizeof chunk) {
		for (size_t i = 0; i < sizeof chunk; i++) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			chunk[i] = (unsigned char)x;
		}
		if (sent == 0)
			hex_of(chunk, 16, head);
		EVP_DigestUpdate(ctx, chunk, sizeof chunk);
		cl_sendn(c, chunk, sizeof chunk);
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	hex_of(md, mdlen, want);
	cl_resp(c, &r, 0);
	getrusage(RUSAGE_SELF, &after);
	cr_assert_eq(r.status, 200, "%s", r.body);
	o = json_loads(r.body, 0, NULL);
	cr_assert(json_is_true(json_object_get(o, "spooled")), "%s", r.body);
	cr_assert_eq(jint(o, "body_len"), 0);
	cr_assert_eq(jint(o, "size"), (json_int_t)total);
	cr_assert_eq(jint(o, "file_size"), (json_int_t)total);
	cr_assert_eq(jint(o, "mode"), 0600);
	cr_assert_str_eq(jstr(o, "sha256"), want);
	cr_assert_str_eq(jstr(o, "file_sha256"), want);
	cr_assert_eq(jint(o, "head_len"), 4096);
	cr_assert_str_eq(jstr(o, "head"), head);
	/* 16 MiB went through; the process grew by far less (ru_maxrss is in
	 * KiB; some hundreds in practice, 16 MiB when in memory). */
	if (RSS_MEANINGFUL)
		cr_assert_lt(after.ru_maxrss - before.ru_maxrss, 4096,
		    "grew %ld KiB", after.ru_maxrss - before.ru_maxrss);
	/* The handler did not take the file: gone with the request. */
	WAIT_UNTIL(spool_files() == 0);
	cr_assert_eq(spool_files(), 0);
	json_decref(o);
	cl_close(c);
}

Test(spool, the_handler_may_take_the_file)
{
	static const char body[] = "hello, spool";
	char kept[128], back[64] = "";
	struct stat st;
	json_t *o;
	FILE *f;

	cr_assert_eq(stat(spool_dir, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0700);
	o = post_spool("/spool-keep", body, sizeof body - 1);
	cr_assert(json_is_true(json_object_get(o, "renamed")));
	cr_assert(json_is_true(json_object_get(o, "taken")));
	cr_assert_eq(jint(o, "head_len"), sizeof body - 1);
	snprintf(kept, sizeof kept, "%s/kept", spool_root);
	f = fopen(kept, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fread(back, 1, sizeof back, f), sizeof body - 1);
	fclose(f);
	cr_assert_str_eq(back, body);
	cr_assert_eq(spool_files(), 0);
	json_decref(o);
}

Test(spool, an_empty_body_is_an_empty_file)
{
	json_t *o = post_spool("/spool", "", 0);

	cr_assert(json_is_true(json_object_get(o, "spooled")));
	cr_assert_eq(jint(o, "size"), 0);
	cr_assert_eq(jint(o, "head_len"), 0);
	cr_assert_str_eq(jstr(o, "sha256"),
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	cr_assert_str_eq(jstr(o, "file_sha256"), jstr(o, "sha256"));
	WAIT_UNTIL(spool_files() == 0);
	cr_assert_eq(spool_files(), 0);
	json_decref(o);
}

Test(spool, a_client_that_leaves_mid_body_leaves_no_file)
{
	static char part[256 * 1024];
	struct client *c = cl_open();

	memset(part, 'p', sizeof part);
	cl_send(c, "POST /spool HTTP/1.1\r\nContent-Length: 4194304\r\n\r\n");
	cl_sendn(c, part, sizeof part);
	WAIT_UNTIL(server_ask('s', 0, 0).spooling == 1);
	cr_assert_eq(spool_files(), 1);
	cl_close(c);
	WAIT_UNTIL(spool_files() == 0);
	cr_assert_eq(spool_files(), 0);
	cr_assert_eq(server_ask('s', 0, 0).spooling, 0);
}

Test(spool, a_shutdown_mid_body_leaves_no_file)
{
	struct client *c = cl_open();

	cl_send(c, "POST /spool HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc");
	WAIT_UNTIL(server_ask('s', 0, 0).spooling == 1);
	cr_assert_eq(spool_files(), 1);
	server_halt();
	cr_assert_eq(spool_files(), 0);
	cl_close(c);
	fx_rmtree(spool_root);
	start_spool(); /* for .fini */
}

Test(spool, no_file_for_a_body_refused_from_the_head)
{
	struct resp r;

	roundtrip(
	    "POST /spool HTTP/1.1\r\nContent-Length: 67108865\r\n\r\n", &r);
	cr_assert_eq(r.status, 413);
	cr_assert_eq(server_ask('s', 0, 0).spooling, 0);
	cr_assert_eq(spool_files(), 0);
}

Test(spool, a_spool_that_cannot_be_written_is_a_503)
{
	char moved[128];
	struct resp r;
	FILE *f;

	snprintf(moved, sizeof moved, "%s/moved", spool_root);
	cr_assert_eq(rename(spool_dir, moved), 0);
	f = fopen(spool_dir, "w"); /* a file where the directory was */
	cr_assert_not_null(f);
	fclose(f);
	roundtrip("POST /spool HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &r);
	cr_assert_eq(r.status, 503);
	cr_assert_str_eq(r.body, "{\"error\":{\"code\":\"unavailable\","
	                         "\"message\":\"the upload could not be "
	                         "stored: Not a directory\"}}");
	/* Put back, the spool works again. */
	cr_assert_eq(unlink(spool_dir), 0);
	cr_assert_eq(rename(moved, spool_dir), 0);
	json_decref(post_spool("/spool", "abc", 3));
}

Test(spool, a_spool_directory_removed_is_made_again)
{
	json_t *o;

	cr_assert_eq(rmdir(spool_dir), 0);
	o = post_spool("/spool", "abc", 3);
	cr_assert_eq(jint(o, "size"), 3);
	json_decref(o);
	cr_assert_eq(access(spool_dir, F_OK), 0);
}

Test(spool, other_routes_keep_their_bodies_in_memory)
{
	json_t *o;
	struct resp r;

	roundtrip("POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", &r);
	cr_assert_str_eq(r.body, "abc");
	/* The spool's route answers the handler's fallback without a spool:
	 * here, with one, the body is never in memory. */
	o = post_spool("/spool", "abc", 3);
	cr_assert_eq(jint(o, "body_len"), 0);
	json_decref(o);
}

Test(spool, the_directory_made_and_swept)
{
	struct event_base *b = event_base_new();
	struct http_server *s = http_server_new(b, routes, 1, NULL, 100);
	char dir[128], path[192], err[256] = "";
	struct timespec old[2] = {
	    {time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
	static const char *const names[] = {
	    "fila-spool-old", "fila-spool-new", "other-old"};

	snprintf(dir, sizeof dir, "%s/sweep", spool_root);
	cr_assert_eq(mkdir(dir, 0700), 0);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		close(open(path, O_WRONLY | O_CREAT, 0600));
		if (i != 1)
			cr_assert_eq(utimensat(AT_FDCWD, path, old, 0), 0);
	}
	cr_assert_eq(http_server_spool(s, dir, err, sizeof err), 0, "%s", err);
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		cr_assert_eq(access(path, F_OK) == 0, i != 0, "%s", names[i]);
	}
	/* Not a directory: refused, saying so. */
	snprintf(path, sizeof path, "%s/other-old", dir);
	cr_assert_eq(http_server_spool(s, path, err, sizeof err), -1);
	cr_assert(strstr(err, "Not a directory"), "%s", err);
	snprintf(path, sizeof path, "%s/other-old/sub", dir);
	cr_assert_eq(http_server_spool(s, path, err, sizeof err), -1);
	http_server_free(s);
	event_base_free(b);
}

/* --- streams: 512 KiB each, 1 MiB together --- */

static void
start_streams(void)
{
	struct http_limits l;

	http_limits_default(&l);
	l.stream_max = 512 * 1024;
	l.streams_max = 1024 * 1024;
	server_start_with(&l, NULL, 0);
}

TestSuite(streams, .init = start_streams, .fini = server_stop, .timeout = 30);

/* A stream on a client that reads nothing past its head: slot i. */
static struct client *
open_slot(int i)
{
	struct client *c = cl_open_rcvbuf(4096);
	struct resp r;

	cl_send(c, "GET /slot HTTP/1.1\r\n\r\n");
	cl_resp(c, &r, 1);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(server_ask('s', 0, 0).streams, (size_t)i + 1);
	return c;
}

Test(streams, a_stream_over_its_cap_is_closed)
{
	struct client *c = open_slot(0);
	struct http_stats st;

	st = server_ask('p', 0, 400);
	cr_assert_eq(st.streams_dropped, 0);
	cr_assert_geq(st.streams_pending, 400 * 1024);
	st = server_ask('p', 0, 600);
	cr_assert_eq(st.streams_dropped, 1);
	cr_assert_eq(wait_flag(&slot_gone[0], 1), 1);
	st = server_ask('s', 0, 0);
	cr_assert_eq(st.streams, 0);
	cr_assert_eq(st.streams_pending, 0);
	cl_close(c);
}

Test(streams, over_the_budget_the_biggest_goes_first)
{
	struct client *a = open_slot(0), *b = open_slot(1), *c = open_slot(2);
	struct http_stats st;

	server_ask('p', 0, 450);
	st = server_ask('p', 1, 300);
	cr_assert_eq(st.streams_dropped, 0);
	cr_assert_leq(st.streams_pending, 1024 * 1024);
	/* c's 400 KiB take the three over 1 MiB: a, the biggest, goes; the
	 * one being written to, smaller, stays. */
	st = server_ask('p', 2, 400);
	cr_assert_eq(st.streams_dropped, 1);
	cr_assert_eq(wait_flag(&slot_gone[0], 1), 1);
	st = server_ask('w', 1, 16);
	cr_assert_eq(st.streams, 2);
	cr_assert_eq(st.streams_dropped, 1);
	cr_assert_leq(st.streams_pending, 1024 * 1024);
	cr_assert_eq(atomic_load(&slot_gone[1]), 0);
	cr_assert_eq(atomic_load(&slot_gone[2]), 0);
	cl_close(a);
	cl_close(b);
	cl_close(c);
}

/* --- CORS with "*" --- */

static void
start_cors_any(void)
{
	server_start_with(NULL, "*", 0);
}

TestSuite(cors_any, .init = start_cors_any, .fini = server_stop, .timeout = 30);

Test(cors_any, a_literal_star_never_the_origin)
{
	static const char *const reqs[] = {
	    "GET /hello HTTP/1.1\r\nOrigin: https://evil.example.com\r\n\r\n",
	    "GET /hello HTTP/1.1\r\nOrigin: null\r\n\r\n",
	    "GET /hello HTTP/1.1\r\n\r\n",
	};
	struct resp r;

	for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
		roundtrip(reqs[i], &r);
		cr_assert_str_eq(r.head,
		    "HTTP/1.1 200 OK\r\n"
		    "Content-Type: text/plain\r\n"
		    "Content-Length: 6\r\n"
		    "Access-Control-Allow-Origin: *\r\n"
		    "\r\n",
		    "%s", reqs[i]);
	}
	roundtrip(
	    "GET /nope HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n", &r);
	cr_assert_eq(r.status, 404);
	cr_assert(strstr(r.head, "\r\nAccess-Control-Allow-Origin: *\r\n"),
	    "%s", r.head);
	roundtrip("OPTIONS /echo HTTP/1.1\r\nOrigin: https://a.example\r\n"
	          "Access-Control-Request-Method: POST\r\n\r\n",
	    &r);
	cr_assert_eq(r.status, 204);
	cr_assert(strstr(r.head, "\r\nAccess-Control-Allow-Origin: *\r\n"),
	    "%s", r.head);
	cr_assert(
	    strstr(r.head, "\r\nAccess-Control-Allow-Methods: POST, PUT\r\n"),
	    "%s", r.head);
	cr_assert_null(strstr(r.head, "Vary"), "%s", r.head);
	cr_assert_null(strstr(r.head, "a.example"), "%s", r.head);
}
