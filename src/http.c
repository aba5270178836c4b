/*
 * http.c — fila's HTTP/1.1 server, on libevent bufferevents.
 *
 * We parse requests ourselves (rather than use evhttp) so that a request is
 * judged on its head alone: the route, the method and the body limit are
 * checked from the request line and Content-Length before one byte of the
 * body is read, and every refusal is docs/api.md's JSON error.
 *
 * A connection handles one request at a time and moves through the states
 * of enum conn_state; bytes of a pipelined request wait in the input buffer
 * until the current one is answered. Two ideas keep memory safe:
 *  - a connection never disappears under our own feet: while one of its
 *    callbacks runs (busy), closing it only marks it dead, and the struct is
 *    freed when the callback unwinds;
 *  - a request handed to a handler belongs to the handler until it answers.
 *    If the client leaves first the request is kept, detached (conn NULL),
 *    and freed silently by the answer. A stream is told by on_close instead.
 *
 * What a client may hold is bounded (struct http_limits): connections, and
 * descriptors with the spool files, by a cap past which the listener waits
 * for a close; time, by one timer per connection whose deadline depends on
 * the state (a head's from its first byte, a body's from its length and a
 * minimum rate); memory, by spooling upload bodies to disk (a few KB each
 * whatever their size) and by closing the streams that fall behind, alone
 * or all together (the biggest first).
 */
#include "http.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "jsonw.h"
#include "list.h"
#include "util.h"

#define REQLINE_MAX (8 * 1024)
#define HEAD_MAX (32 * 1024)
#define HEADERS_MAX 100
/* Pipelined bytes buffered while a request is being answered. */
#define PENDING_MAX (64 * 1024)
/* Replies not yet taken by a client that pipelines without reading: past
 * this, its next request waits until they are sent. */
#define OUTPUT_MAX (256 * 1024)
#define FLUSH_TIMEOUT 30
/* Lingering close: discard what the client still sends, for a while (a
 * shorter while after a deadline was missed). */
#define LINGER_IDLE 2
#define LINGER_MAX_MS 30000
#define LINGER_TIMEOUT_MS 2000
#define BODY_CHUNK (64 * 1024)

/*
 * The defaults of struct http_limits. 16384 connections hold the 5,000
 * event streams fila is sized for, their apps' requests and room to spare,
 * in some tens of MB; 32 of them are kept for probes and admins. A head is
 * a few hundred bytes: 10 s is generous even on a bad mobile link. 16 KiB/s
 * is 128 kbit/s, a slow mobile uplink, after 5 s for the radio and TCP to
 * wake up: a 30 MiB upload may take 32 minutes, a trickle cannot hold a
 * connection longer than its length allows. A stream may hold 512 KiB:
 * events.c replays history until 256 KiB are pending (REPLAY_AHEAD), so
 * a cap must leave that and the events of a while on top (at some hundred
 * bytes each, a thousand more); 64 MiB for all bounds what thousands of
 * slow readers cost together.
 */
#define MAX_CONNECTIONS 16384
#define RESERVE 32
#define HEAD_TIMEOUT_MS 10000
#define IDLE_TIMEOUT_MS 60000
#define BODY_GRACE_MS 5000
#define BODY_MIN_RATE (16 * 1024)
#define STREAM_MAX (512 * 1024)
#define STREAMS_MAX (64 * 1024 * 1024)
/* Descriptors left to the rest of the process (store, provider, files). */
#define FD_HEADROOM 256

/* Spooled bodies: the bytes kept in memory for sniffing, the file names,
 * and the age past which a file is a dead process's leftover. */
#define SPOOL_HEAD 4096
#define SPOOL_PREFIX "fila-spool-"
#define SPOOL_STALE_S 3600
#define SPOOL_COPY (16 * 1024)

enum conn_state {
	C_IDLE,    /* waiting for the first byte of a request */
	C_HEAD,    /* reading the request line and headers */
	C_GATE,    /* the gate's answer is awaited; nothing is read */
	C_BODY,    /* reading Content-Length bytes of body */
	C_HANDLER, /* the handler owns the request until it answers */
	C_STREAM,  /* a streamed reply is being written */
	C_CLOSING, /* flushing the last reply, then close */
	C_LINGER,  /* write side shut, discarding what the client still sends */
};

struct conn {
	struct http_server *srv;
	struct bufferevent *bev;
	struct event *timer;
	struct event *resume; /* run the connection again from the loop */
	struct list link;     /* in http_server.conns */
	struct http_req *req;
	enum conn_state state;
	int busy;     /* inside one of our callbacks: closing defers the free */
	int closed;   /* closed while busy: free when the callback unwinds */
	int linger;   /* the client may still be sending a body we refused */
	int drop;     /* a stream over its buffer limit: close from the loop */
	int reserved; /* accepted into the reserve: HTTP_RESERVE routes only */
	int out_wait; /* reading paused until the output is sent */
	int in_streams; /* in http_server.streams */
	int nreq;       /* requests begun on it */
	struct list slink;
	size_t accounted; /* its share of http_server.streams_pending */
	int64_t body_start;
	int64_t linger_end;
	int linger_max_ms;
	char peer[64];
};

struct http_server {
	struct event_base *base;
	const struct http_route *routes;
	size_t nroutes;
	void *ctx;
	size_t default_max_body;
	http_gate gate;
	char *cors; /* origins pages may call from: NULL, "*" or "O1 O2 …" */
	struct evconnlistener *listener;
	struct event *accept_retry;
	int port;
	struct list conns;
	struct http_limits lim;
	size_t max_conns, fd_cap, reserve; /* lim made effective */
	size_t nconns, nreserved, nspools;
	int paused; /* the listener waits for a close */
	char *spool_dir;
	struct evbuffer *reply; /* a reply being put together, then sent */
	struct list streams;    /* conns of open streams, for their budget */
	size_t nstreams;
	size_t streams_pending; /* sum of their accounted, maybe stale high */
	uint64_t nrefused, ntimeouts, ndropped, npauses;
	int draining;
	time_t date_at; /* the second date was made for */
	char date[40];
	void (*drain_done)(void *);
	void *drain_arg;
};

struct kv {
	char *name;
	char *value;
};

struct http_req {
	struct conn *conn; /* NULL once the client is gone */
	struct event_base *base;
	const struct http_route *route;
	int method; /* an HTTP_* flag, 0 for a method we do not serve */
	int minor;  /* HTTP/1.minor */
	int keep_alive;
	int have_line; /* the request line has been read */
	size_t head_bytes;
	char *path;     /* percent-decoded */
	char *rawpath;  /* as sent */
	char *rawquery; /* NULL when there is no '?' */
	char **segs;    /* decoded path segments */
	char **params;  /* the "{}" segments, pointing into segs */
	int nsegs, nparams;
	struct kv *hdrs; /* each name and its value in one allocation */
	int nhdrs, hdrs_cap;
	struct kv *query;
	int nquery;
	size_t content_length;
	char *body;
	size_t body_got, body_cap; /* body_got counts spooled bytes too */
	/* A spooled body: the file (open while the body arrives), its hash
	 * so far, its first bytes; srv is read only while spool_fd is open. */
	struct http_server *srv;
	int spooled, spool_fd;
	EVP_MD_CTX *sha;
	unsigned char *spool_head;
	char *spool_path;
	struct http_spool spool;
	char peer[64];
	void *data;
	void (*data_free)(void *);
	struct evbuffer *rhdrs; /* extra reply headers, already formatted */
	int streaming, chunked, nobody, ended;
	int64_t body_left; /* a sized body's bytes still to write; -1: none */
	void (*on_close)(void *);
	void *close_arg;
	void (*on_drain)(void *); /* once the stream's output is all sent */
	void *drain_arg;
	/* Calls on_close of a stream started after its client left. */
	struct event *later;
	/* A held request's reply waits in held_out for http_req_release(). */
	int held, answered;
	struct evbuffer *held_out;
};

static const struct {
	const char *name;
	int flag;
} methods[] = {
    {"GET", HTTP_GET},
    {"HEAD", HTTP_HEAD},
    {"POST", HTTP_POST},
    {"PUT", HTTP_PUT},
    {"DELETE", HTTP_DELETE},
    {"OPTIONS", HTTP_OPTIONS},
};

static void conn_process(struct conn *c);
static void conn_close(struct conn *c);
static int cors_headers(struct http_req *r);
static void accept_update(struct http_server *s);
static void spool_cleanup(struct http_req *r);
static void refuse(struct conn *c, int status, const char *code,
    const char *message, json_t *details, int keep);

static const char *
reason(int status)
{
	static const struct {
		int status;
		const char *text;
	} t[] = {
	    {100, "Continue"},
	    {200, "OK"},
	    {201, "Created"},
	    {202, "Accepted"},
	    {204, "No Content"},
	    {301, "Moved Permanently"},
	    {302, "Found"},
	    {304, "Not Modified"},
	    {400, "Bad Request"},
	    {401, "Unauthorized"},
	    {402, "Payment Required"},
	    {403, "Forbidden"},
	    {404, "Not Found"},
	    {405, "Method Not Allowed"},
	    {408, "Request Timeout"},
	    {409, "Conflict"},
	    {411, "Length Required"},
	    {413, "Content Too Large"},
	    {415, "Unsupported Media Type"},
	    {422, "Unprocessable Content"},
	    {429, "Too Many Requests"},
	    {431, "Request Header Fields Too Large"},
	    {500, "Internal Server Error"},
	    {502, "Bad Gateway"},
	    {503, "Service Unavailable"},
	    {504, "Gateway Timeout"},
	    {505, "HTTP Version Not Supported"},
	};
	size_t i;

	for (i = 0; i < sizeof t / sizeof t[0]; i++)
		if (t[i].status == status)
			return t[i].text;
	return status < 400   ? "OK"
	       : status < 500 ? "Client Error"
	                      : "Server Error";
}

/* The Date header's value: an IMF-fixdate, spelled out by hand so that the
 * locale cannot change it, and made again only when the second changes
 * (every reply carries it). */
static const char *
http_date(struct http_server *srv)
{
	static const char days[] = "SunMonTueWedThuFriSat";
	static const char mons[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	time_t t = time(NULL);
	struct tm tm;

	if (t == srv->date_at && srv->date[0] != '\0')
		return srv->date;
	gmtime_r(&t, &tm);
	snprintf(srv->date, sizeof(srv->date),
	    "%.3s, %02d %.3s %04d %02d:%02d:%02d GMT", days + 3 * tm.tm_wday,
	    tm.tm_mday, mons + 3 * tm.tm_mon, tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec);
	srv->date_at = t;
	return srv->date;
}

/* --- text helpers --- */

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Percent-decode n bytes of s into a fresh string ('+' is a space when
 * plus is set). NULL on a malformed escape or an encoded NUL, which would
 * silently cut every C string made from it.
 */
static char *
pct_decode(const char *s, size_t n, int plus)
{
	char *out = xmalloc(n + 1), *p = out;
	size_t i;

	for (i = 0; i < n; i++) {
		int hi, lo;

		if (s[i] == '+' && plus) {
			*p++ = ' ';
			continue;
		}
		if (s[i] != '%') {
			*p++ = s[i];
			continue;
		}
		if (i + 2 >= n)
			goto fail;
		hi = hexval((unsigned char)s[i + 1]);
		lo = hexval((unsigned char)s[i + 2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			goto fail;
		*p++ = (char)(hi << 4 | lo);
		i += 2;
	}
	*p = '\0';
	return out;
fail:
	free(out);
	return NULL;
}

static int
is_tchar(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int
is_token(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return 0;
	return 1;
}

/* Does the comma-separated header list value hold token (any case)? */
static int
list_has(const char *value, const char *token)
{
	size_t tl = strlen(token);
	const char *p = value;

	while (*p) {
		const char *end;
		size_t n;

		p += strspn(p, " \t,");
		end = p + strcspn(p, ",");
		n = end - p;
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == tl && strncasecmp(p, token, n) == 0)
			return 1;
		p = end;
	}
	return 0;
}

/* --- requests --- */

static struct http_req *
req_new(struct conn *c)
{
	struct http_req *r = xcalloc(1, sizeof *r);

	r->conn = c;
	r->base = c->srv->base;
	r->spool_fd = -1;
	r->body_left = -1;
	memcpy(r->peer, c->peer, sizeof r->peer);
	r->rhdrs = evbuffer_new();
	if (r->rhdrs == NULL)
		abort();
	return r;
}

static void
req_free(struct http_req *r)
{
	int i;

	if (r == NULL)
		return;
	free(r->path);
	free(r->rawpath);
	free(r->rawquery);
	for (i = 0; i < r->nsegs; i++)
		free(r->segs[i]);
	free(r->segs);
	free(r->params);
	for (i = 0; i < r->nhdrs; i++)
		free(r->hdrs[i].name);
	free(r->hdrs);
	for (i = 0; i < r->nquery; i++) {
		free(r->query[i].name);
		free(r->query[i].value);
	}
	free(r->query);
	free(r->body);
	spool_cleanup(r);
	if (r->data_free)
		r->data_free(r->data);
	evbuffer_free(r->rhdrs);
	if (r->held_out)
		evbuffer_free(r->held_out);
	if (r->later)
		event_free(r->later);
	free(r);
}

/* Split the raw path into percent-decoded segments: 0, or -1 if malformed. */
static int
req_split_path(struct http_req *r)
{
	const char *p = r->rawpath + 1;
	int n = 1;

	for (const char *q = p; *q; q++)
		n += *q == '/';
	r->segs = xcalloc(n, sizeof *r->segs);
	r->params = xcalloc(n, sizeof *r->params);
	for (;;) {
		size_t len = strcspn(p, "/");

		r->segs[r->nsegs] = pct_decode(p, len, 0);
		if (r->segs[r->nsegs] == NULL)
			return -1;
		r->nsegs++;
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

/* Decode the query string once, on first use; bad pairs are skipped. */
/* Split and decode the query: 0, or -1 when a name or value is not validly
 * escaped (or holds a NUL), which makes the request line malformed. */
static int
req_parse_query(struct http_req *r)
{
	const char *p = r->rawquery;
	int rc = 0;

	while (p != NULL && *p) {
		size_t len = strcspn(p, "&");
		const char *eq = memchr(p, '=', len);
		size_t nlen = eq ? (size_t)(eq - p) : len;
		char *name = pct_decode(p, nlen, 1);
		char *value =
		    eq ? pct_decode(eq + 1, len - nlen - 1, 1) : xstrdup("");

		if (name != NULL && value != NULL) {
			r->query = xrealloc(
			    r->query, (r->nquery + 1) * sizeof *r->query);
			r->query[r->nquery].name = name;
			r->query[r->nquery].value = value;
			r->nquery++;
		} else {
			free(name);
			free(value);
			rc = -1;
		}
		p += len + (p[len] == '&');
	}
	return rc;
}

int
http_req_method(const struct http_req *r)
{
	return r->method;
}

const char *
http_req_path(const struct http_req *r)
{
	return r->path;
}

const char *
http_req_param(const struct http_req *r, int i)
{
	return i >= 0 && i < r->nparams ? r->params[i] : NULL;
}

const char *
http_req_query(const struct http_req *r, const char *name)
{
	int i;

	for (i = 0; i < r->nquery; i++)
		if (strcmp(r->query[i].name, name) == 0)
			return r->query[i].value;
	return NULL;
}

const char *
http_req_header(const struct http_req *r, const char *name)
{
	int i;

	for (i = 0; i < r->nhdrs; i++)
		if (strcasecmp(r->hdrs[i].name, name) == 0)
			return r->hdrs[i].value;
	return NULL;
}

const char *
http_req_body(const struct http_req *r, size_t *len)
{
	if (len)
		*len = r->spooled ? 0 : r->body_got;
	return r->body ? r->body : "";
}

const char *
http_req_peer(const struct http_req *r)
{
	return r->peer;
}

void
http_req_set_data(struct http_req *r, void *data, void (*free_fn)(void *))
{
	if (r->data_free)
		r->data_free(r->data);
	r->data = data;
	r->data_free = free_fn;
}

void *
http_req_data(const struct http_req *r)
{
	return r->data;
}

/* --- connection plumbing --- */

static void
timer_ms(struct conn *c, int64_t ms)
{
	struct timeval tv = timeval_ms(ms > 0 ? ms : 0);

	evtimer_add(c->timer, &tv);
}

static void
timer_arm(struct conn *c, int secs)
{
	timer_ms(c, (int64_t)secs * 1000);
}

static void
conn_schedule(struct conn *c)
{
	event_active(c->resume, EV_TIMEOUT, 0);
}

static void
server_check_drained(struct http_server *s)
{
	void (*done)(void *) = s->drain_done;

	if (!s->draining || !list_empty(&s->conns) || done == NULL)
		return;
	s->drain_done = NULL;
	done(s->drain_arg);
}

/*
 * The connection's request loses its client. A request the handler owns is
 * detached and waits for its answer; a stream is told through on_close;
 * one still being read was ours alone.
 */
static void
req_orphan(struct http_req *r, enum conn_state state)
{
	r->conn = NULL;
	if (r->streaming) {
		if (r->on_close)
			r->on_close(r->close_arg);
		req_free(r);
	} else if (state != C_HANDLER) {
		req_free(r);
	}
}

/* ---- streams' output, and its budget ---- */

/* Bring c's share of the streams' total up to date. */
static void
stream_account(struct conn *c)
{
	struct http_server *s = c->srv;
	size_t now = evbuffer_get_length(bufferevent_get_output(c->bev));

	s->streams_pending = s->streams_pending - c->accounted + now;
	c->accounted = now;
}

static void
stream_link(struct conn *c)
{
	list_add_tail(&c->srv->streams, &c->slink);
	c->in_streams = 1;
	c->accounted = 0;
	c->srv->nstreams++;
	stream_account(c);
}

static void
stream_unlink(struct conn *c)
{
	struct http_server *s = c->srv;

	if (!c->in_streams)
		return;
	s->streams_pending -= c->accounted;
	c->accounted = 0;
	list_remove(&c->slink);
	c->in_streams = 0;
	s->nstreams--;
}

/* A stream too far behind: out of the budget at once, closed from the
 * loop (on_close must not run inside somebody's write). */
static void
stream_drop(struct conn *c)
{
	stream_unlink(c);
	c->drop = 1;
	c->srv->ndropped++;
	event_active(c->resume, EV_TIMEOUT, 0);
}

/* The stream with the most output pending, or NULL. */
static struct conn *
stream_biggest(struct http_server *s)
{
	struct conn *big = NULL;
	struct list *it;

	list_each(it, &s->streams)
	{
		struct conn *c = list_entry(it, struct conn, slink);

		if (big == NULL || c->accounted > big->accounted)
			big = c;
	}
	return big;
}

/* Over the budget of all streams, close the biggest until under it. The
 * running total only errs high (a buffer drained since it was counted):
 * recount first, and only then close anyone. */
static void
streams_budget(struct http_server *s)
{
	struct list *it;
	struct conn *big;

	if (s->streams_pending <= s->lim.streams_max)
		return;
	list_each(it, &s->streams)
	    stream_account(list_entry(it, struct conn, slink));
	while (s->streams_pending > s->lim.streams_max &&
	       (big = stream_biggest(s)) != NULL)
		stream_drop(big);
}

static void
conn_close(struct conn *c)
{
	struct http_server *s = c->srv;
	struct http_req *r = c->req;

	if (c->closed)
		return;
	c->closed = 1;
	c->req = NULL;
	list_remove(&c->link);
	stream_unlink(c);
	s->nconns--;
	if (c->reserved)
		s->nreserved--;
	bufferevent_free(c->bev);
	event_free(c->timer);
	event_free(c->resume);
	if (r)
		req_orphan(r, c->state);
	if (!c->busy)
		free(c);
	accept_update(s);
	server_check_drained(s);
}

/* The last reply is flushed: close, or first let the client finish. */
static void
conn_flushed(struct conn *c)
{
	if (!c->linger) {
		conn_close(c);
		return;
	}
	/* Closing with unread input would reset the connection and could
	 * destroy the reply before the client reads it. */
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	c->state = C_LINGER;
	c->linger_end = mono_ms() + c->linger_max_ms;
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	bufferevent_enable(c->bev, EV_READ);
	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	timer_arm(c, LINGER_IDLE);
}

static void
conn_closing(struct conn *c)
{
	c->state = C_CLOSING;
	bufferevent_disable(c->bev, EV_READ);
	timer_arm(c, FLUSH_TIMEOUT);
	/* With nothing left to write no write callback would come. */
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
		conn_schedule(c);
}

/* The current request has been answered: free it and go on. */
static void
conn_req_done(struct conn *c)
{
	struct http_req *r = c->req;
	int keep = r->keep_alive && !c->srv->draining && !c->drop;

	c->req = NULL;
	req_free(r);
	stream_unlink(c);
	if (!keep) {
		conn_closing(c);
		return;
	}
	c->state = C_IDLE;
	bufferevent_setwatermark(c->bev, EV_READ, 0, 0);
	timer_ms(c, c->srv->lim.idle_timeout_ms);
	/* Inside our own callback the processing loop picks up what follows;
	 * otherwise run it from the loop, not under the caller's feet. */
	if (!c->busy && evbuffer_get_length(bufferevent_get_input(c->bev)))
		conn_schedule(c);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	if (c->state == C_LINGER) {
		evbuffer_drain(in, evbuffer_get_length(in));
		if (mono_ms() < c->linger_end)
			timer_arm(c, LINGER_IDLE);
		return;
	}
	conn_process(c);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->in_streams)
		stream_account(c);
	if (c->out_wait) { /* the replies are sent: read what follows */
		c->out_wait = 0;
		bufferevent_enable(c->bev, EV_READ);
		conn_schedule(c);
	}
	if (c->state == C_STREAM && c->req && c->req->on_drain) {
		void (*fn)(void *) = c->req->on_drain;

		c->req->on_drain = NULL;
		fn(c->req->drain_arg);
		return;
	}
	if (c->state == C_CLOSING) {
		c->busy++;
		conn_flushed(c);
		if (--c->busy == 0 && c->closed)
			free(c);
	}
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	conn_close(arg);
}

/* A deadline passed. A request being read is told why (408) and the
 * connection closes, lingering but briefly; anything else just closes. */
static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->state != C_HEAD && c->state != C_BODY) {
		conn_close(c);
		return;
	}
	c->srv->ntimeouts++;
	c->linger_max_ms = LINGER_TIMEOUT_MS;
	c->busy++;
	refuse(c, 408, "request_timeout",
	    c->state == C_HEAD ? "the request head came too slowly"
	                       : "the request body came too slowly",
	    NULL, 0);
	if (--c->busy == 0 && c->closed)
		free(c);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	if (c->drop) {
		conn_close(c);
	} else if (c->state == C_CLOSING) {
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
			write_cb(c->bev, c);
	} else {
		conn_process(c);
	}
}

/* --- answering --- */

/* The framing line "Content-Length: N\r\n" into buf. */
static void
length_line(char buf[48], uint64_t n)
{
	size_t k;

	memcpy(buf, "Content-Length: ", 16);
	k = fmt_u64(n, buf + 16);
	memcpy(buf + 16 + k, "\r\n", 3);
}

/* A reply's head, put together in place and added to its buffer whole. */
struct head {
	struct evbuffer *out;
	size_t len;
	char buf[256];
};

static void
head_put(struct head *h, const char *s, size_t n)
{
	if (n > sizeof(h->buf) - h->len) {
		evbuffer_add(h->out, h->buf, h->len);
		h->len = 0;
		if (n > sizeof(h->buf)) {
			evbuffer_add(h->out, s, n);
			return;
		}
	}
	memcpy(h->buf + h->len, s, n);
	h->len += n;
}

static void
head_str(struct head *h, const char *s)
{
	head_put(h, s, strlen(s));
}

/* The whole head of a reply; framing holds the header lines that say where
 * the body ends. */
static void
head_write(struct http_req *r, struct evbuffer *out, int status,
    const char *ctype, const char *framing)
{
	struct http_server *srv = r->conn->srv;
	struct head h = {.out = out};
	char code[5] = {(char)('0' + status / 100 % 10),
	    (char)('0' + status / 10 % 10), (char)('0' + status % 10), ' '};

	if (srv->draining)
		r->keep_alive = 0;
	head_put(&h, "HTTP/1.1 ", 9);
	head_put(&h, code, 4);
	head_str(&h, reason(status));
	if (ctype != NULL) {
		head_put(&h, "\r\nContent-Type: ", 16);
		head_str(&h, ctype);
	}
	head_put(&h, "\r\n", 2);
	head_str(&h, framing);
	head_put(&h, "Date: ", 6);
	head_str(&h, http_date(srv));
	head_put(&h, "\r\n", 2);
	evbuffer_add(out, h.buf, h.len);
	evbuffer_add_buffer(out, r->rhdrs);
	if (!r->keep_alive)
		evbuffer_add(out, "Connection: close\r\n\r\n", 21);
	else if (r->minor == 0)
		evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
	else
		evbuffer_add(out, "\r\n", 2);
}

void
http_reply_header(struct http_req *r, const char *name, const char *value)
{
	/* A CR or LF would let a value forge headers of its own. */
	if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n"))
		return;
	evbuffer_add_printf(r->rhdrs, "%s: %s\r\n", name, value);
}

/*
 * A reply goes straight to the socket when nothing is queued before it:
 * one writev, not a write event armed, waited for and disarmed. What the
 * socket does not take, or an error the bufferevent then meets, is queued
 * as before. buf is left empty.
 */
static void
conn_send(struct conn *c, struct evbuffer *buf)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (evbuffer_get_length(out) == 0)
		(void)evbuffer_write(buf, bufferevent_getfd(c->bev));
	evbuffer_add_buffer(out, buf);
}

void
http_reply(struct http_req *r, int status, const char *ctype, const void *body,
    size_t len)
{
	struct conn *c = r->conn;
	struct evbuffer *out;
	char framing[48] = "";

	if (c == NULL && !r->held) {
		req_free(r);
		return;
	}
	if (c == NULL) { /* gone while held: the release frees it */
		r->answered = 1;
		return;
	}
	out = c->srv->reply;
	if (r->held) {
		if (r->held_out == NULL &&
		    (r->held_out = evbuffer_new()) == NULL)
			abort();
		out = r->held_out;
	}
	/* 1xx, 204 and 304 replies have no body, hence no length. */
	if (status >= 200 && status != 204 && status != 304)
		length_line(framing, len);
	head_write(r, out, status, ctype, framing);
	if (r->method != HTTP_HEAD && len > 0)
		evbuffer_add(out, body, len);
	if (r->held) {
		r->answered = 1;
		return;
	}
	conn_send(c, out);
	conn_req_done(c);
}

void
http_req_hold(struct http_req *r)
{
	r->held = 1;
}

void
http_req_release(struct http_req *r, int ok)
{
	struct conn *c = r->conn;

	r->held = 0;
	if (!r->answered)
		return; /* the reply, when made, goes out at once */
	if (c == NULL) {
		req_free(r);
		return;
	}
	if (!ok) {
		evbuffer_free(r->held_out);
		r->held_out = NULL;
		cors_headers(r);
		http_reply_error(r, 503, "unavailable",
		    "the store could not commit; nothing was written", NULL);
		return;
	}
	conn_send(c, r->held_out);
	conn_req_done(c);
}

const struct http_route *
http_req_route(const struct http_req *r)
{
	return r->route;
}

void
http_reply_json(struct http_req *r, int status, json_t *body)
{
	static const char fallback[] = "{\"error\":{\"code\":\"internal\","
	                               "\"message\":\"unencodable reply\"}}";
	struct jsonw w;
	size_t len;
	char *text;

	jsonw_init(&w);
	if (body != NULL) /* NULL: a json_pack that failed */
		jsonw_value(&w, body);
	json_decref(body);
	if (body == NULL || w.bad) {
		jsonw_cleanup(&w);
		http_reply(
		    r, 500, "application/json", fallback, sizeof fallback - 1);
		return;
	}
	len = w.len;
	text = jsonw_done(&w);
	http_reply(r, status, "application/json", text, len);
	free(text);
}

void
http_reply_error(struct http_req *r, int status, const char *code,
    const char *message, json_t *details)
{
	json_t *err = json_object();

	json_object_set_new(err, "code", json_string(code));
	json_object_set_new(
	    err, "message", json_string(message ? message : reason(status)));
	if (details != NULL)
		json_object_set_new(err, "details", details);
	http_reply_json(r, status, json_pack("{s:o}", "error", err));
}

/* --- streaming --- */

/* A stream whose client had left before it started: tell the owner from
 * the loop, as it cannot be ready for on_close inside http_stream_start. */
static void
later_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_req *r = arg;

	if (!r->ended && r->on_close)
		r->on_close(r->close_arg);
	req_free(r);
}

void
http_stream_start(struct http_req *r, int status, const char *ctype,
    void (*on_close)(void *), void *arg)
{
	struct conn *c = r->conn;
	struct evbuffer *out;

	r->streaming = 1;
	r->held = 0; /* a stream's events are committed ones already */
	r->on_close = on_close;
	r->close_arg = arg;
	if (c == NULL) {
		r->later = event_new(r->base, -1, 0, later_cb, r);
		if (r->later == NULL)
			abort();
		event_active(r->later, EV_TIMEOUT, 0);
		return;
	}
	c->state = C_STREAM;
	evtimer_del(c->timer);
	r->chunked = r->minor >= 1;
	r->nobody = r->method == HTTP_HEAD;
	if (!r->chunked)
		r->keep_alive = 0; /* HTTP/1.0: the end is the close */
	out = bufferevent_get_output(c->bev);
	head_write(r, out, status, ctype,
	    r->chunked ? "Transfer-Encoding: chunked\r\n"
	                 "Cache-Control: no-cache\r\n"
	               : "Cache-Control: no-cache\r\n");
	stream_link(c);
}

void
http_body_start(struct http_req *r, int status, const char *ctype, int64_t len,
    void (*on_close)(void *), void *arg)
{
	struct conn *c = r->conn;
	char framing[48];

	r->streaming = 1;
	r->held = 0;
	r->on_close = on_close;
	r->close_arg = arg;
	r->body_left = len;
	if (c == NULL) {
		r->later = event_new(r->base, -1, 0, later_cb, r);
		if (r->later == NULL)
			abort();
		event_active(r->later, EV_TIMEOUT, 0);
		return;
	}
	c->state = C_STREAM;
	evtimer_del(c->timer);
	r->nobody = r->method == HTTP_HEAD;
	length_line(framing, (uint64_t)len);
	/* Not one of the event streams: its writer waits for the drain. */
	head_write(r, bufferevent_get_output(c->bev), status, ctype, framing);
}

/*
 * With nothing queued before it, a stream's write goes straight to the
 * socket: an event to thousands of streams then costs one sendmsg each,
 * not a write event armed and disarmed per stream. What the socket does
 * not take is queued on the bufferevent, which also meets any error.
 */
static void
stream_write_now(
    struct conn *c, struct http_req *r, const void *buf, size_t len)
{
	char head[24];
	struct iovec iov[3];
	size_t total = 0, n = 0;
	ssize_t done;

	if (r->chunked) {
		iov[n].iov_base = head;
		iov[n++].iov_len =
		    (size_t)snprintf(head, sizeof(head), "%zx\r\n", len);
	}
	iov[n].iov_base = (void *)buf;
	iov[n++].iov_len = len;
	if (r->chunked) {
		iov[n].iov_base = (void *)"\r\n";
		iov[n++].iov_len = 2;
	}
	for (size_t i = 0; i < n; i++)
		total += iov[i].iov_len;
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = n};
	done = sendmsg(
	    bufferevent_getfd(c->bev), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	if (done == (ssize_t)total)
		return;
	if (done < 0)
		done = 0; /* EAGAIN, or an error the bufferevent will meet */
	/* Queue the rest of the frame, from where the socket stopped. */
	struct evbuffer *out = bufferevent_get_output(c->bev);
	for (size_t i = 0; i < n; i++) {
		size_t skip = (size_t)done < iov[i].iov_len ? (size_t)done
		                                            : iov[i].iov_len;
		evbuffer_add(
		    out, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip);
		done -= (ssize_t)skip;
	}
}

void
http_stream_write(struct http_req *r, const void *buf, size_t len)
{
	struct conn *c = r->conn;
	struct evbuffer *out;

	if (c == NULL || c->drop || r->nobody || len == 0)
		return;
	if (r->body_left >= 0) { /* a sized body */
		r->body_left -= (int64_t)len;
		evbuffer_add(bufferevent_get_output(c->bev), buf, len);
		return;
	}
	out = bufferevent_get_output(c->bev);
	if (evbuffer_get_length(out) == 0) {
		stream_write_now(c, r, buf, len);
	} else {
		if (r->chunked)
			evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add(out, buf, len);
		if (r->chunked)
			evbuffer_add(out, "\r\n", 2);
	}
	/* A reader this far behind is not coming back (and resumes from its
	 * Last-Event-ID when it does): drop it, or the biggest of all when
	 * together they hold too much. */
	stream_account(c);
	if (evbuffer_get_length(out) > c->srv->lim.stream_max)
		stream_drop(c);
	else
		streams_budget(c->srv);
}

size_t
http_stream_pending(const struct http_req *r)
{
	return r->conn
	           ? evbuffer_get_length(bufferevent_get_output(r->conn->bev))
	           : 0;
}

void
http_stream_on_drain(struct http_req *r, void (*fn)(void *), void *arg)
{
	r->on_drain = fn;
	r->drain_arg = arg;
}

void
http_stream_end(struct http_req *r)
{
	struct conn *c = r->conn;

	if (c == NULL) {
		r->ended = 1; /* later_cb frees it */
		return;
	}
	if (r->chunked && !r->nobody)
		evbuffer_add(bufferevent_get_output(c->bev), "0\r\n\r\n", 5);
	/* A sized body cut short: the close tells the client. */
	if (r->body_left > 0 && !r->nobody)
		r->keep_alive = 0;
	conn_req_done(c);
}

/* --- reading a request --- */

/* Answering from the head alone, while the client may be sending a body
 * that will not be read: the connection closes, lingering first. */
static void
skip_body(struct conn *c)
{
	c->req->keep_alive = 0;
	c->linger = 1;
}

/* Refuse from the head alone; unless keep is set, see skip_body(). */
static void
refuse(struct conn *c, int status, const char *code, const char *message,
    json_t *details, int keep)
{
	if (!keep)
		skip_body(c);
	http_reply_error(c->req, status, code, message, details);
}

static int
parse_method(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (strlen(methods[i].name) == n &&
		    memcmp(methods[i].name, s, n) == 0)
			return methods[i].flag;
	return 0;
}

/* "METHOD SP target SP HTTP/1.x": 0, or -1 once refused. */
static int
parse_request_line(struct conn *c, char *line, size_t n)
{
	struct http_req *r = c->req;
	char *sp1 = memchr(line, ' ', n), *sp2, *target, *q;
	size_t i;

	sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (sp2 == NULL || strchr(sp2 + 1, ' ') || !is_token(line, sp1 - line))
		goto bad;
	r->method = parse_method(line, sp1 - line);
	/* HTTP/1.2 and later minors are served as 1.1 (RFC 9112, 2.6). */
	if (strncmp(sp2 + 1, "HTTP/1.", 7) == 0 && sp2[8] >= '0' &&
	    sp2[8] <= '9' && sp2[9] == '\0') {
		r->minor = sp2[8] > '1' ? 1 : sp2[8] - '0';
	} else if (strncmp(sp2 + 1, "HTTP/", 5) == 0) {
		refuse(c, 505, "http_version_not_supported",
		    "only HTTP/1.0 and HTTP/1.1 are served", NULL, 0);
		return -1;
	} else {
		goto bad;
	}
	target = sp1 + 1;
	*sp2 = '\0';
	for (i = 0; target[i]; i++)
		if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f)
			goto bad;
	if (target[0] != '/')
		goto bad;
	q = strchr(target, '?');
	if (q != NULL) {
		r->rawquery = xstrdup(q + 1);
		*q = '\0';
	}
	r->rawpath = xstrdup(target);
	r->path = pct_decode(target, strlen(target), 0);
	if (r->path == NULL || req_split_path(r) < 0 || req_parse_query(r) < 0)
		goto bad;
	r->have_line = 1;
	return 0;
bad:
	refuse(c, 400, "bad_request", "malformed request line", NULL, 0);
	return -1;
}

/* Keep a header: its name and value in one allocation (name first). */
static void
add_header(struct http_req *r, const char *name, size_t nlen, const char *value,
    size_t vlen)
{
	char *kv = xmalloc(nlen + vlen + 2);

	if (r->nhdrs == r->hdrs_cap) {
		r->hdrs_cap = r->hdrs_cap ? 2 * r->hdrs_cap : 16;
		r->hdrs = xrealloc(r->hdrs, r->hdrs_cap * sizeof(*r->hdrs));
	}
	memcpy(kv, name, nlen);
	kv[nlen] = '\0';
	memcpy(kv + nlen + 1, value, vlen);
	kv[nlen + 1 + vlen] = '\0';
	r->hdrs[r->nhdrs].name = kv;
	r->hdrs[r->nhdrs].value = kv + nlen + 1;
	r->nhdrs++;
}

/* "Name: value": 0, or -1 once refused. */
static int
parse_header(struct conn *c, char *line, size_t n)
{
	struct http_req *r = c->req;
	char *colon = memchr(line, ':', n), *v, *end;

	if (r->nhdrs == HEADERS_MAX) {
		refuse(
		    c, 431, "headers_too_large", "too many headers", NULL, 0);
		return -1;
	}
	/* Folded lines (obs-fold) and spaces before the colon are refused:
	 * both have been used to smuggle requests past proxies. */
	if (colon == NULL || !is_token(line, colon - line))
		goto bad;
	v = colon + 1;
	v += strspn(v, " \t");
	end = line + n;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*end = '\0';
	for (char *p = v; *p; p++)
		if (((unsigned char)*p < ' ' && *p != '\t') || *p == 0x7f)
			goto bad;
	add_header(r, line, (size_t)(colon - line), v, (size_t)(end - v));
	return 0;
bad:
	refuse(c, 400, "bad_request", "malformed header", NULL, 0);
	return -1;
}

/*
 * The body length from every Content-Length header: 0, or -1 when one is
 * not a plain number or two disagree. Absurd lengths saturate, to be
 * refused as too large.
 */
static int
content_length(struct http_req *r)
{
	int i, seen = 0;

	for (i = 0; i < r->nhdrs; i++) {
		const char *p = r->hdrs[i].value;
		size_t v = 0;

		if (strcasecmp(r->hdrs[i].name, "Content-Length") != 0)
			continue;
		if (*p == '\0')
			return -1;
		for (; *p; p++) {
			if (*p < '0' || *p > '9')
				return -1;
			v = v > SIZE_MAX / 20 ? SIZE_MAX / 2
			                      : v * 10 + (*p - '0');
		}
		if (seen && v != r->content_length)
			return -1;
		r->content_length = v;
		seen = 1;
	}
	return 0;
}

static int
route_match(const char *pat, struct http_req *r, int capture)
{
	int i, np = 0;

	if (*pat++ != '/')
		return 0;
	for (i = 0; i < r->nsegs; i++) {
		const char *end = strchr(pat, '/');
		size_t len = end ? (size_t)(end - pat) : strlen(pat);

		if (len == 2 && memcmp(pat, "{}", 2) == 0) {
			if (r->segs[i][0] == '\0')
				return 0;
			if (capture)
				r->params[np++] = r->segs[i];
		} else if (strlen(r->segs[i]) != len ||
		           memcmp(r->segs[i], pat, len) != 0) {
			return 0;
		}
		if ((end == NULL) != (i + 1 == r->nsegs))
			return 0;
		if (end)
			pat = end + 1;
	}
	if (capture)
		r->nparams = np;
	return 1;
}

/* Pick the route: 0, or 404, or 405 with the allowed methods in *allow. */
static int
route_find(struct conn *c, int *allow)
{
	struct http_server *s = c->srv;
	struct http_req *r = c->req;
	size_t i;

	*allow = 0;
	for (i = 0; i < s->nroutes; i++) {
		if (!route_match(s->routes[i].pattern, r, 0))
			continue;
		*allow |= s->routes[i].methods;
		if (s->routes[i].methods & r->method) {
			route_match(s->routes[i].pattern, r, 1);
			r->route = &s->routes[i];
			return 0;
		}
	}
	return *allow ? 405 : 404;
}

/* The names of the methods in allow, as "GET, POST". */
static void
methods_list(int allow, char buf[64])
{
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
		if (!(allow & methods[i].flag))
			continue;
		if (buf[0])
			strcat(buf, ", ");
		strcat(buf, methods[i].name);
	}
}

static void
refuse_route(struct conn *c, int status, int allow)
{
	char buf[64];
	int keep = c->req->content_length == 0;

	if (status == 404) {
		refuse(c, 404, "not_found", "no such path", NULL, keep);
		return;
	}
	methods_list(allow, buf);
	http_reply_header(c->req, "Allow", buf);
	refuse(c, 405, "method_not_allowed", "method not allowed here", NULL,
	    keep);
}

/* ---- CORS: pages of other origins calling from the browser ---- */

static int
cors_allows(const struct http_server *s, const char *origin)
{
	size_t n = strlen(origin);

	if (s->cors == NULL || n == 0)
		return 0;
	if (strcmp(s->cors, "*") == 0)
		return 1;
	for (const char *p = s->cors; *p;) {
		size_t len = strcspn(p, " ");
		if (len == n && strncasecmp(p, origin, n) == 0)
			return 1;
		p += len + (p[len] == ' ');
	}
	return 0;
}

/* Every answer to an allowed origin says so, errors included (the page
 * can then read them); 1 when the origin is allowed. */
static int
cors_headers(struct http_req *r)
{
	const struct http_server *s = r->conn->srv;
	const char *origin = http_req_header(r, "Origin");

	if (s->cors != NULL && strcmp(s->cors, "*") == 0) {
		/* The same for every origin: nothing to vary on, nothing of
		 * the request echoed. */
		http_reply_header(r, "Access-Control-Allow-Origin", "*");
		return origin != NULL && *origin != '\0';
	}
	if (s->cors == NULL || origin == NULL)
		return 0;
	http_reply_header(r, "Vary", "Origin"); /* the answer depends on it */
	if (!cors_allows(s, origin))
		return 0;
	http_reply_header(r, "Access-Control-Allow-Origin", origin);
	return 1;
}

/* A preflight (OPTIONS with Access-Control-Request-Method) of a known path
 * from an allowed origin is answered here with what its routes accept: 1
 * when it was. */
static int
cors_preflight(struct conn *c, int allowed, int status, int allow)
{
	struct http_req *r = c->req;
	char buf[64];

	if (!allowed || r->method != HTTP_OPTIONS || status == 404 ||
	    http_req_header(r, "Access-Control-Request-Method") == NULL)
		return 0;
	methods_list(allow, buf);
	http_reply_header(r, "Access-Control-Allow-Methods", buf);
	http_reply_header(r, "Access-Control-Allow-Headers",
	    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID");
	http_reply_header(r, "Access-Control-Max-Age", "600");
	if (r->content_length > 0)
		skip_body(c);
	http_reply(r, 204, NULL, NULL, 0);
	return 1;
}

void
http_server_gate(struct http_server *s, http_gate gate)
{
	s->gate = gate;
}

void
http_server_cors(struct http_server *s, const char *origins)
{
	free(s->cors);
	s->cors = origins && *origins ? xstrdup(origins) : NULL;
}

static void
dispatch(struct conn *c)
{
	struct http_req *r = c->req;

	c->state = C_HANDLER;
	evtimer_del(c->timer);
	/* Keep reading, to notice a client that leaves, but bound what a
	 * pipelining client can make us buffer meanwhile. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, PENDING_MAX);
	r->route->handler(r, c->srv->ctx);
}

/* HTTP/1.1 keeps the connection unless told "close"; 1.0 closes it unless
 * told "keep-alive". */
static int
keep_alive(const struct http_req *r)
{
	int closing = 0, keep = r->minor >= 1;
	int i;

	for (i = 0; i < r->nhdrs; i++) {
		if (strcasecmp(r->hdrs[i].name, "Connection") != 0)
			continue;
		closing |= list_has(r->hdrs[i].value, "close");
		keep |= list_has(r->hdrs[i].value, "keep-alive");
	}
	return keep && !closing;
}

/* The server's gate on the routed request: 0 to go on, -1 once refused
 * (its body, if any, is never read), 1 while its answer is awaited. */
static int
gate(struct conn *c)
{
	struct http_server *s = c->srv;
	const char *code = NULL, *message = NULL;
	int status;

	if (s->gate == NULL)
		return 0;
	status =
	    s->gate(c->req, c->req->route->access, s->ctx, &code, &message);
	if (status == 0)
		return 0;
	if (status == HTTP_GATE_WAIT) {
		c->state = C_GATE;
		bufferevent_disable(c->bev, EV_READ);
		return 1;
	}
	refuse(c, status, code, message, NULL, c->req->content_length == 0);
	return -1;
}

/*
 * A connection of the reserve serves HTTP_RESERVE routes only, until the
 * server has room again and it leaves the reserve: 0 to go on, -1 once
 * refused (and the connection closing).
 */
static int
reserve_check(struct conn *c, int status)
{
	struct http_server *s = c->srv;

	if (!c->reserved)
		return 0;
	if (s->nconns - s->nreserved < s->max_conns - s->reserve) {
		c->reserved = 0;
		s->nreserved--;
		return 0;
	}
	if (status == 0 && (c->req->route->flags & HTTP_RESERVE))
		return 0;
	s->nrefused++;
	refuse(c, 503, "unavailable", "too many connections", NULL, 0);
	return -1;
}

/* ---- bodies: to memory, or to a spool file ---- */

/* mkdir -p, mode 0700: 0, or -1 with errno set. */
static int
mkdirs(const char *dir)
{
	char *p = xstrdup(dir);
	int rc = 0;

	for (char *q = p + 1;; q++) {
		char end = *q;

		if (end != '/' && end != '\0')
			continue;
		*q = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST)
			rc = -1;
		*q = end;
		if (end == '\0' || rc < 0)
			break;
	}
	free(p);
	return rc;
}

/* Create a spool file in dir (O_EXCL, a random name, mode 0600), making
 * dir again if it went away: its descriptor and *path (caller frees), or
 * -1 with errno set and *path NULL. */
static int
spool_create(const char *dir, char **path)
{
	char hex[33];
	int fd, err;

	for (int i = 0; i < 8; i++) {
		random_hex(hex, 16);
		*path = xasprintf("%s/" SPOOL_PREFIX "%s", dir, hex);
		fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		err = errno;
		free(*path);
		*path = NULL;
		if ((err == ENOENT && mkdirs(dir) < 0) ||
		    (err != ENOENT && err != EEXIST))
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/* A spool file for the body of c's request: 0, or -1 with errno set (as
 * when descriptors run short). */
static int
spool_open(struct conn *c)
{
	struct http_server *s = c->srv;
	struct http_req *r = c->req;
	int fd;

	if (s->nconns + s->nspools >= s->fd_cap) {
		errno = EMFILE;
		return -1;
	}
	if ((fd = spool_create(s->spool_dir, &r->spool_path)) < 0)
		return -1;
	r->srv = s;
	r->spool_fd = fd;
	r->spooled = 1;
	s->nspools++;
	r->sha = EVP_MD_CTX_new();
	if (r->sha == NULL ||
	    EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL) != 1)
		abort();
	r->spool_head = xmalloc(SPOOL_HEAD);
	return 0;
}

/* Append n bytes of the body to the spool: 0, or -1 with errno set. */
static int
spool_write(struct http_req *r, const char *buf, size_t n)
{
	size_t off = 0;

	if (r->body_got < SPOOL_HEAD)
		memcpy(r->spool_head + r->body_got, buf,
		    n < SPOOL_HEAD - r->body_got ? n
		                                 : SPOOL_HEAD - r->body_got);
	EVP_DigestUpdate(r->sha, buf, n);
	while (off < n) {
		ssize_t w = write(r->spool_fd, buf + off, n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		off += (size_t)w;
	}
	r->body_got += n;
	return 0;
}

/* Close the spool file's descriptor (a slot to accept with again). */
static int
spool_close_fd(struct http_req *r)
{
	int rc = close(r->spool_fd);

	r->spool_fd = -1;
	r->srv->nspools--;
	accept_update(r->srv);
	return rc;
}

/* The body is whole: close its file and say what it holds. 0, or -1 with
 * errno set. */
static int
spool_finish(struct http_req *r)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (spool_close_fd(r) < 0)
		return -1;
	EVP_DigestFinal_ex(r->sha, md, &mdlen);
	for (i = 0; i < mdlen && i < 32; i++) {
		r->spool.sha256[2 * i] = hex[md[i] >> 4];
		r->spool.sha256[2 * i + 1] = hex[md[i] & 15];
	}
	r->spool.sha256[2 * i] = '\0';
	r->spool.path = r->spool_path;
	r->spool.size = r->body_got;
	r->spool.head = r->spool_head;
	r->spool.head_len = r->body_got < SPOOL_HEAD ? r->body_got : SPOOL_HEAD;
	return 0;
}

/* With the request: the descriptor closed, the file unlinked unless the
 * handler took it. */
static void
spool_cleanup(struct http_req *r)
{
	if (r->spool_fd >= 0)
		spool_close_fd(r);
	if (r->spool_path != NULL)
		unlink(r->spool_path);
	free(r->spool_path);
	EVP_MD_CTX_free(r->sha);
	free(r->spool_head);
}

const struct http_spool *
http_req_spool(const struct http_req *r)
{
	return r->spooled && r->spool_fd < 0 ? &r->spool : NULL;
}

char *
http_req_spool_take(struct http_req *r)
{
	char *path = r->spool_path;

	r->spool_path = NULL;
	r->spool.path = NULL;
	return path;
}

/* The spool failed (errno says why): 503, and the connection closes. */
static void
spool_refuse(struct conn *c, const char *what)
{
	char msg[160];

	snprintf(msg, sizeof msg, "the upload could not be %s: %s", what,
	    strerror(errno));
	refuse(c, 503, "unavailable", msg, NULL, 0);
}

/* The body's deadline for what has come of it: every part at the minimum
 * rate after the grace, hence the whole by grace + length / rate. */
static void
body_timer(struct conn *c)
{
	const struct http_limits *l = &c->srv->lim;
	int64_t due = c->body_start + l->body_grace_ms +
	              (int64_t)((double)c->req->body_got * 1000.0 /
	                        (double)l->body_min_rate);

	timer_ms(c, due - mono_ms());
}

/* The body is whole: hand the request over. */
static void
body_done(struct conn *c)
{
	struct http_req *r = c->req;

	if (r->spooled && spool_finish(r) < 0) {
		spool_refuse(c, "written");
		return;
	}
	if (r->body != NULL)
		r->body[r->body_got] = '\0';
	dispatch(c);
}

/* The head is accepted: read the body (into a spool file when the route
 * asks and there is a spool directory), or dispatch when there is none. */
static void
body_begin(struct conn *c)
{
	struct http_req *r = c->req;
	const char *expect = http_req_header(r, "Expect");

	if ((r->route->flags & HTTP_SPOOL) && c->srv->spool_dir != NULL &&
	    spool_open(c) < 0) {
		spool_refuse(c, "stored");
		return;
	}
	if (r->content_length == 0) {
		body_done(c);
		return;
	}
	if (expect && r->minor >= 1 && strcasecmp(expect, "100-continue") == 0)
		evbuffer_add_printf(bufferevent_get_output(c->bev),
		    "HTTP/1.1 100 Continue\r\n\r\n");
	c->state = C_BODY;
	c->body_start = mono_ms();
	body_timer(c);
}

/* The gate let the request on: its body's limit, then the body. */
static void
admitted(struct conn *c)
{
	struct http_req *r = c->req;
	size_t limit =
	    r->route->max_body ? r->route->max_body : c->srv->default_max_body;

	if (r->content_length > limit) {
		char msg[96];

		snprintf(msg, sizeof msg, "the body is over %zu bytes", limit);
		refuse(c, 413, "too_large", msg,
		    json_pack("{s:I}", "limit", (json_int_t)limit), 0);
		return;
	}
	body_begin(c);
}

/* The head is complete: check it, then read the body or dispatch. */
static void
head_done(struct conn *c)
{
	struct http_req *r = c->req;
	int status, allow, cors_ok;

	r->keep_alive = keep_alive(r);
	cors_ok = cors_headers(r);
	if (http_req_header(r, "Transfer-Encoding") != NULL) {
		refuse(c, 411, "length_required",
		    "send the body with a Content-Length", NULL, 0);
		return;
	}
	if (content_length(r) < 0) {
		refuse(
		    c, 400, "bad_request", "invalid Content-Length", NULL, 0);
		return;
	}
	status = route_find(c, &allow);
	if (reserve_check(c, status))
		return;
	if (cors_preflight(c, cors_ok, status, allow))
		return;
	if (status != 0) {
		refuse_route(c, status, allow);
		return;
	}
	if (gate(c))
		return;
	admitted(c);
}

void
http_req_gate_done(
    struct http_req *r, int status, const char *code, const char *message)
{
	struct conn *c = r->conn;

	if (c == NULL || c->state != C_GATE || c->req != r)
		return;
	c->busy++;
	c->state = C_HEAD;
	bufferevent_enable(c->bev, EV_READ);
	if (status != 0)
		refuse(c, status, code, message, NULL, r->content_length == 0);
	else
		admitted(c);
	/* What arrived meanwhile waits in the input: read it from the loop. */
	if (!c->closed)
		event_active(c->resume, EV_TIMEOUT, 0);
	if (--c->busy == 0 && c->closed)
		free(c);
}

/*
 * One line of the head: 0 to go on, 1 at its end, -1 once refused. A NUL
 * byte anywhere is refused: it would cut the C strings made from the line.
 */
static int
head_line(struct conn *c, char *line, size_t n)
{
	struct http_req *r = c->req;

	r->head_bytes += n + 2;
	if (strlen(line) != n) {
		refuse(
		    c, 400, "bad_request", "NUL byte in request head", NULL, 0);
		return -1;
	}
	if (!r->have_line) {
		if (n > REQLINE_MAX || r->head_bytes > REQLINE_MAX + 2) {
			refuse(c, 400, "bad_request", "request line too long",
			    NULL, 0);
			return -1;
		}
		if (n == 0)
			return 0; /* a stray CRLF between requests */
		return parse_request_line(c, line, n);
	}
	if (n == 0)
		return 1;
	if (r->head_bytes > HEAD_MAX) {
		refuse(c, 431, "headers_too_large", "request head too large",
		    NULL, 0);
		return -1;
	}
	return parse_header(c, line, n);
}

static void
head_read(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t n, avail;
	char *line;

	if (c->state == C_IDLE) {
		if (evbuffer_get_length(in) == 0)
			return;
		if (evbuffer_get_length(bufferevent_get_output(c->bev)) >
		    OUTPUT_MAX) {
			/* Replies pile up unread: read on once they are sent
			 * (write_cb), not to pile up more. */
			c->out_wait = 1;
			bufferevent_disable(c->bev, EV_READ);
			return;
		}
		c->req = req_new(c);
		c->state = C_HEAD;
		/* The first head's deadline runs from the accept. */
		if (c->nreq++ > 0)
			timer_ms(c, c->srv->lim.head_timeout_ms);
	}
	while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF)) != NULL) {
		int rc = head_line(c, line, n);

		free(line);
		if (rc < 0)
			return;
		if (rc > 0) {
			head_done(c);
			return;
		}
	}
	/* A partial line: refuse it as soon as it cannot fit. */
	avail = evbuffer_get_length(in);
	if (!c->req->have_line && avail > REQLINE_MAX + 2)
		refuse(c, 400, "bad_request", "request line too long", NULL, 0);
	else if (c->req->have_line && c->req->head_bytes + avail > HEAD_MAX)
		refuse(c, 431, "headers_too_large", "request head too large",
		    NULL, 0);
}

/* Move what has arrived of the body into the request; grow as it comes,
 * so a large Content-Length alone costs no memory. */
static void
body_to_memory(struct conn *c)
{
	struct http_req *r = c->req;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	while (r->body_got < r->content_length && evbuffer_get_length(in)) {
		size_t want = r->content_length - r->body_got;
		int got;

		if (r->body_got == r->body_cap) {
			size_t cap = r->body_cap ? r->body_cap * 2 : BODY_CHUNK;

			r->body_cap =
			    cap < r->content_length ? cap : r->content_length;
			r->body = xrealloc(r->body, r->body_cap + 1);
		}
		if (want > r->body_cap - r->body_got)
			want = r->body_cap - r->body_got;
		got = evbuffer_remove(in, r->body + r->body_got, want);
		if (got <= 0)
			break;
		r->body_got += got;
	}
}

/* Move what has arrived of the body to its spool file, through a small
 * buffer: 0, or -1 once refused. */
static int
body_to_spool(struct conn *c)
{
	struct http_req *r = c->req;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	char buf[SPOOL_COPY];

	while (r->body_got < r->content_length && evbuffer_get_length(in)) {
		size_t want = r->content_length - r->body_got;
		int got = evbuffer_remove(
		    in, buf, want < sizeof buf ? want : sizeof buf);

		if (got <= 0)
			break;
		if (spool_write(r, buf, (size_t)got) < 0) {
			spool_refuse(c, "written");
			return -1;
		}
	}
	return 0;
}

static void
body_read(struct conn *c)
{
	struct http_req *r = c->req;
	size_t had = r->body_got;

	if (!r->spooled)
		body_to_memory(c);
	else if (body_to_spool(c) < 0)
		return;
	if (r->body_got < r->content_length) {
		if (r->body_got > had)
			body_timer(c);
		return;
	}
	body_done(c);
}

/* Read and dispatch as many requests as the input holds, one at a time,
 * until a pass makes no progress. */
static void
conn_process(struct conn *c)
{
	c->busy++;
	while (!c->closed) {
		enum conn_state before = c->state;
		struct evbuffer *in = bufferevent_get_input(c->bev);
		size_t left = evbuffer_get_length(in);

		if (before == C_IDLE || before == C_HEAD)
			head_read(c);
		else if (before == C_BODY)
			body_read(c);
		else
			break;
		if (c->closed ||
		    (c->state == before && evbuffer_get_length(in) == left))
			break;
	}
	if (--c->busy == 0 && c->closed)
		free(c);
}

/* --- the server --- */

static void
peer_text(const struct sockaddr *sa, char out[64])
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		port = ntohs(in->sin_port);
		snprintf(out, 64, "%s:%d", host, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		port = ntohs(in6->sin6_port);
		snprintf(out, 64, "[%s]:%d", host, port);
	} else {
		snprintf(out, 64, "unknown");
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	struct http_server *s = arg;
	struct conn *c;
	int one = 1;

	/* Streams write small events; Nagle would hold them back. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c = xcalloc(1, sizeof *c);
	c->srv = s;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	c->timer = evtimer_new(s->base, timer_cb, c);
	c->resume = event_new(s->base, -1, 0, resume_cb, c);
	if (c->bev == NULL || c->timer == NULL || c->resume == NULL)
		abort();
	peer_text(sa, c->peer);
	c->linger_max_ms = LINGER_MAX_MS;
	list_add_tail(&s->conns, &c->link);
	s->nconns++;
	if (s->nconns - s->nreserved > s->max_conns - s->reserve) {
		c->reserved = 1;
		s->nreserved++;
	}
	bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	timer_ms(c, s->lim.head_timeout_ms);
	accept_update(s);
}

/*
 * Accept while there is room; at the cap, stop until a connection (or a
 * spool file) closes. The waiting clients stay in the kernel's backlog:
 * nothing spins on them.
 */
static void
accept_update(struct http_server *s)
{
	int full =
	    s->nconns >= s->max_conns || s->nconns + s->nspools >= s->fd_cap;

	if (s->listener == NULL || full == s->paused)
		return;
	s->paused = full;
	if (full) {
		s->npauses++;
		evconnlistener_disable(s->listener);
	} else if (!evtimer_pending(s->accept_retry, NULL)) {
		evconnlistener_enable(s->listener);
	}
}

static void
accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *s = arg;

	if (s->listener && !s->paused)
		evconnlistener_enable(s->listener);
}

/* accept() failed, likely out of descriptors: retrying at once would spin
 * the loop, so pause a second. */
static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct http_server *s = arg;
	struct timeval tv = {1, 0};

	evconnlistener_disable(l);
	evtimer_add(s->accept_retry, &tv);
}

void
http_limits_default(struct http_limits *l)
{
	*l = (struct http_limits){
	    .max_connections = MAX_CONNECTIONS,
	    .reserve = RESERVE,
	    .head_timeout_ms = HEAD_TIMEOUT_MS,
	    .idle_timeout_ms = IDLE_TIMEOUT_MS,
	    .body_grace_ms = BODY_GRACE_MS,
	    .body_min_rate = BODY_MIN_RATE,
	    .stream_max = STREAM_MAX,
	    .streams_max = STREAMS_MAX,
	};
}

/* The descriptors connections and spool files may take: the soft limit,
 * less a headroom for the rest of the process. */
static size_t
fd_cap(void)
{
	struct rlimit rl;
	size_t nofile = 1024, room;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		nofile =
		    rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > SIZE_MAX / 2
		        ? SIZE_MAX / 2
		        : (size_t)rl.rlim_cur;
	room = nofile / 4 < FD_HEADROOM ? nofile / 4 : FD_HEADROOM;
	return nofile - room;
}

/* Make s->lim effective: defaults for zeros, the caps within reach. */
static void
limits_apply(struct http_server *s)
{
	struct http_limits d, *l = &s->lim;

	http_limits_default(&d);
	if (l->head_timeout_ms <= 0)
		l->head_timeout_ms = d.head_timeout_ms;
	if (l->idle_timeout_ms <= 0)
		l->idle_timeout_ms = d.idle_timeout_ms;
	if (l->body_grace_ms <= 0)
		l->body_grace_ms = d.body_grace_ms;
	if (l->body_min_rate == 0)
		l->body_min_rate = d.body_min_rate;
	if (l->stream_max == 0)
		l->stream_max = d.stream_max;
	if (l->streams_max == 0)
		l->streams_max = d.streams_max;
	s->fd_cap = fd_cap();
	s->max_conns = s->fd_cap;
	if (l->max_connections > 0 && (size_t)l->max_connections < s->fd_cap)
		s->max_conns = (size_t)l->max_connections;
	s->reserve = l->reserve <= 0 ? 0 : (size_t)l->reserve;
	if (s->reserve >= s->max_conns)
		s->reserve = s->max_conns - 1;
	accept_update(s);
}

void
http_server_limits(struct http_server *s, const struct http_limits *l)
{
	s->lim = *l;
	limits_apply(s);
}

/* Remove the spool files of processes long gone. A live one's file is
 * written to within its body's deadline (grace + length / rate: half an
 * hour for 30 MiB at the default rate), then soon renamed or unlinked;
 * the directory may be shared by several processes. */
static void
spool_sweep(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	time_t old = time(NULL) - SPOOL_STALE_S;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, SPOOL_PREFIX, strlen(SPOOL_PREFIX)) != 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
		        0 &&
		    S_ISREG(st.st_mode) && st.st_mtime < old)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

int
http_server_spool(
    struct http_server *s, const char *dir, char *err, size_t errlen)
{
	struct stat st;
	size_t n = dir ? strlen(dir) : 0;

	while (n > 1 && dir[n - 1] == '/')
		n--;
	free(s->spool_dir);
	s->spool_dir = NULL;
	if (n == 0)
		return 0;
	s->spool_dir = xstrndup(dir, n);
	if (mkdirs(s->spool_dir) < 0 || stat(s->spool_dir, &st) < 0)
		goto fail;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		goto fail;
	}
	spool_sweep(s->spool_dir);
	return 0;
fail:
	snprintf(err, errlen, "spool directory %s: %s", s->spool_dir,
	    strerror(errno));
	free(s->spool_dir);
	s->spool_dir = NULL;
	return -1;
}

size_t
http_streams_pending_total(const struct http_server *s)
{
	size_t total = 0;
	const struct list *it;

	for (it = s->streams.next; it != &s->streams; it = it->next) {
		struct conn *c = list_entry(it, struct conn, slink);

		total += evbuffer_get_length(bufferevent_get_output(c->bev));
	}
	return total;
}

void
http_server_stats(const struct http_server *s, struct http_stats *st)
{
	*st = (struct http_stats){
	    .connections = s->nconns,
	    .reserved = s->nreserved,
	    .spooling = s->nspools,
	    .streams = s->nstreams,
	    .streams_pending = http_streams_pending_total(s),
	    .paused = s->paused,
	    .refused_full = s->nrefused,
	    .timeouts = s->ntimeouts,
	    .streams_dropped = s->ndropped,
	    .pauses = s->npauses,
	};
}

struct http_server *
http_server_new(struct event_base *base, const struct http_route *routes,
    size_t nroutes, void *ctx, size_t default_max_body)
{
	struct http_server *s = xcalloc(1, sizeof *s);

	s->base = base;
	list_init(&s->conns);
	list_init(&s->streams);
	http_limits_default(&s->lim);
	limits_apply(s);
	s->routes = routes;
	s->nroutes = nroutes;
	s->ctx = ctx;
	s->default_max_body = default_max_body;
	s->accept_retry = evtimer_new(base, accept_retry_cb, s);
	s->reply = evbuffer_new();
	if (s->accept_retry == NULL || s->reply == NULL)
		abort();
	return s;
}

int
http_server_listen(
    struct http_server *s, const char *host, int port, char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof ss;
	char portbuf[16];
	int rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(portbuf, sizeof portbuf, "%d", port);
	rc = getaddrinfo(host, portbuf, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", host, gai_strerror(rc));
		return -1;
	}
	s->listener = evconnlistener_new_bind(s->base, accept_cb, s,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    -1, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	if (s->listener == NULL) {
		snprintf(err, errlen, "listen on %s:%d: %s", host, port,
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		return -1;
	}
	evconnlistener_set_error_cb(s->listener, accept_error_cb);
	s->paused = 0;
	limits_apply(s); /* the descriptor limit may have been raised */
	getsockname(evconnlistener_get_fd(s->listener), (void *)&ss, &sslen);
	s->port = ntohs(ss.ss_family == AF_INET6
	                    ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                    : ((struct sockaddr_in *)&ss)->sin_port);
	return 0;
}

int
http_server_port(const struct http_server *s)
{
	return s->port;
}

void
http_server_drain(struct http_server *s, void (*done)(void *), void *arg)
{
	struct list *it, *tmp;

	s->draining = 1;
	s->drain_done = done;
	s->drain_arg = arg;
	if (s->listener) {
		evconnlistener_free(s->listener);
		s->listener = NULL;
	}
	list_each_safe(it, tmp, &s->conns)
	{
		struct conn *c = list_entry(it, struct conn, link);
		if (c->state == C_STREAM ||
		    (c->state == C_IDLE &&
		        evbuffer_get_length(bufferevent_get_input(c->bev)) ==
		            0))
			conn_close(c);
	}
	server_check_drained(s);
}

void
http_server_free(struct http_server *s)
{
	if (s == NULL)
		return;
	s->drain_done = NULL;
	while (!list_empty(&s->conns))
		conn_close(list_entry(s->conns.next, struct conn, link));
	if (s->listener)
		evconnlistener_free(s->listener);
	event_free(s->accept_retry);
	evbuffer_free(s->reply);
	free(s->cors);
	free(s->spool_dir);
	free(s);
}
