/*
 * http.h — a small HTTP/1.1 server on libevent bufferevents.
 *
 * Routes are a table; a request is matched on its request line and headers
 * alone, so a body over the route's limit is refused with 413 from
 * Content-Length before a byte of it is read. Replies may be sent at once
 * or later (the request stays alive until answered), or streamed.
 * Errors are the JSON shape of docs/api.md §2.
 *
 * Made for the open internet: connections are capped (with a reserve for
 * health checks and admins), heads and bodies have deadlines, upload bodies
 * can go to disk as they arrive, and streams that fall behind are closed.
 */
#ifndef FILA_HTTP_H
#define FILA_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct event_base;
struct http_server;
struct http_req;

enum {
	HTTP_GET = 1,
	HTTP_POST = 2,
	HTTP_PUT = 4,
	HTTP_DELETE = 8,
	HTTP_HEAD = 16,
	HTTP_OPTIONS = 32,
};

/* Route flags (struct http_route.flags). */
enum {
	/* Served on connections of the reserve too (see http_limits): health
	 * checks and admin pages, reachable when the server is full. */
	HTTP_RESERVE = 1,
	/* The body goes to a file in the spool directory as it arrives, not
	 * to memory (see http_server_spool, http_req_spool). */
	HTTP_SPOOL = 2,
};

typedef void (*http_handler)(struct http_req *req, void *ctx);

/*
 * One route. pattern is a path where "{}" matches one non-empty segment,
 * e.g. "/v1/jobs/{}/cancel"; captured segments are percent-decoded and
 * read with http_req_param(). max_body 0 means the server's default.
 * access is the server's gate's to read (see http_server_gate); flags are
 * HTTP_RESERVE and HTTP_SPOOL bits (0: none).
 */
struct http_route {
	int methods;
	const char *pattern;
	http_handler handler;
	size_t max_body;
	int access;
	int flags;
};

/*
 * What a server lets its clients hold. Start from http_limits_default()
 * and change what you need; a 0 in a timeout, rate or size takes its
 * default.
 */
struct http_limits {
	/* Open connections; at this many the server stops accepting until
	 * one closes. 0: as many as the descriptor limit leaves room for.
	 * Never more than that: connections and spool files together stay
	 * under RLIMIT_NOFILE, less a headroom for the rest of the process. */
	int max_connections;
	/* The last `reserve` of them serve only HTTP_RESERVE routes; other
	 * requests there get 503 "unavailable" and the connection closes. */
	int reserve;
	/* A request's head must be whole this long after its first byte (a
	 * new connection's first: after the accept); else 408, closed. */
	int head_timeout_ms;
	/* A kept-alive connection waits this long for its next request. */
	int idle_timeout_ms;
	/* A body must arrive at body_min_rate bytes/s on average, counted
	 * after a grace of body_grace_ms: length L must be whole within
	 * grace + L / rate, and every part of it in proportion; else 408. */
	int body_grace_ms;
	size_t body_min_rate;
	/* Output a stream may leave unsent before it is closed (its client
	 * resumes with Last-Event-ID), and all streams together: over that,
	 * the streams with the most pending are closed first. */
	size_t stream_max;
	size_t streams_max;
};

/* Fill l with the defaults (see http.c for the reasons). */
void http_limits_default(struct http_limits *l);

/*
 * Judge a request on its head alone, before a byte of its body is read:
 * 0 lets it on to its route's handler; otherwise the HTTP status to refuse
 * it with, *code and *message set (strings that outlive the call); or
 * HTTP_GATE_WAIT when the answer needs a while (a key to fetch): nothing
 * more of the connection is read until http_req_gate_done() gives it.
 */
typedef int (*http_gate)(struct http_req *r, int access, void *ctx,
    const char **code, const char **message);
#define HTTP_GATE_WAIT (-1)
/* The gate's late answer for r (as its return value would have been). A
 * request whose client left meanwhile is freed (its data's free_fn runs):
 * whoever waits must forget it then. */
void http_req_gate_done(
    struct http_req *r, int status, const char *code, const char *message);

/*
 * A server on base dispatching to routes (the table must outlive the
 * server), each handler called with ctx. Requests that match no route get
 * 404 not_found; a known path with another method, 405.
 */
struct http_server *http_server_new(struct event_base *base,
    const struct http_route *routes, size_t nroutes, void *ctx,
    size_t default_max_body);

/* Put gate before every routed request (NULL: none). */
void http_server_gate(struct http_server *s, http_gate gate);

/* Apply limits (copied); until called, http_limits_default()'s. Applies to
 * what comes next: connections open stay, even over a smaller cap. */
void http_server_limits(struct http_server *s, const struct http_limits *l);

/*
 * Spool the bodies of HTTP_SPOOL routes into dir (created, mode 0700, if
 * missing; it should be on the filesystem their files are renamed to).
 * Spool files left there by a process that died (over an hour old) are
 * removed. 0, or -1 with err set. Without a spool directory such routes
 * read their bodies into memory like the others.
 */
int http_server_spool(
    struct http_server *s, const char *dir, char *err, size_t errlen);

/* What the server holds now, for /metrics. */
struct http_stats {
	size_t connections;     /* open */
	size_t reserved;        /* of them, accepted into the reserve */
	size_t spooling;        /* bodies being written to spool files */
	size_t streams;         /* open streams */
	size_t streams_pending; /* bytes they have not sent yet */
	int paused;             /* 1 while the listener waits for a close */
	/* Since the start: */
	uint64_t refused_full;    /* 503 "too many connections" */
	uint64_t timeouts;        /* 408: a head or body too slow */
	uint64_t streams_dropped; /* streams closed for falling behind */
	uint64_t pauses;          /* times the listener paused */
};

/* Fill st. */
void http_server_stats(const struct http_server *s, struct http_stats *st);

/* Bytes written to all open streams that their clients have not taken. */
size_t http_streams_pending_total(const struct http_server *s);

/*
 * Let pages of these origins call the server from the browser (CORS):
 * NULL or "" none but its own, "*" any, else origins separated by single
 * spaces (copied). Allowed origins get Access-Control-Allow-Origin on
 * every answer, and their preflights are answered from the route table.
 * With "*" every answer says "Access-Control-Allow-Origin: *" literally
 * (never echoing Origin), so none varies by Origin.
 */
void http_server_cors(struct http_server *s, const char *origins);

/* Listen on host:port (port 0 picks one). 0, or -1 with err set. */
int http_server_listen(struct http_server *s, const char *host, int port,
    char *err, size_t errlen);

/* The port listened on (useful after port 0). */
int http_server_port(const struct http_server *s);

/*
 * Stop accepting; connections close once their request in flight is
 * answered (idle ones at once, streams at once). done(arg) runs when none
 * is left (maybe before this returns).
 */
void http_server_drain(struct http_server *s, void (*done)(void *), void *arg);

/* Close everything and free the server. NULL is a no-op. */
void http_server_free(struct http_server *s);

/* --- reading a request (valid until it is answered) --- */

int http_req_method(const struct http_req *r);
/* The path, percent-decoded, without the query. */
const char *http_req_path(const struct http_req *r);
/* The i-th "{}" segment of the route, or NULL. */
const char *http_req_param(const struct http_req *r, int i);
/* A query parameter, percent-decoded ('+' is a space), or NULL. */
const char *http_req_query(const struct http_req *r, const char *name);
/* A request header by case-insensitive name, or NULL. */
const char *http_req_header(const struct http_req *r, const char *name);
/* The body (NUL-terminated for convenience; may hold NULs) and its length;
 * "" and 0 for a spooled body (see http_req_spool). */
const char *http_req_body(const struct http_req *r, size_t *len);

/* A body spooled to disk (HTTP_SPOOL), whole by the time the handler runs. */
struct http_spool {
	const char *path; /* the file, mode 0600; NULL once taken */
	size_t size;
	char sha256[65];           /* lowercase hex */
	const unsigned char *head; /* its first head_len bytes */
	size_t head_len;           /* min(size, 4096) */
};

/* The spooled body of r, or NULL when it was not spooled. Valid until the
 * request ends; the file is unlinked then unless taken. */
const struct http_spool *http_req_spool(const struct http_req *r);

/* Take the spool file: its path (caller frees; NULL if none or taken
 * already), which the server will no longer unlink: rename it away, or
 * unlink it yourself. */
char *http_req_spool_take(struct http_req *r);
/* The peer's address as text. */
const char *http_req_peer(const struct http_req *r);

/* The route the request matched. */
const struct http_route *http_req_route(const struct http_req *r);

/* Per-request slot for the gate's or handler's own data (e.g. the
 * authenticated user); free_fn(data), if set, runs with the request's end. */
void http_req_set_data(struct http_req *r, void *data, void (*free_fn)(void *));
void *http_req_data(const struct http_req *r);

/* --- answering (each ends the request unless it says otherwise) --- */

/* Add a response header to the coming reply. */
void http_reply_header(struct http_req *r, const char *name, const char *value);
/* A whole reply; ctype NULL when there is no body. */
void http_reply(struct http_req *r, int status, const char *ctype,
    const void *body, size_t len);
/* A JSON reply; steals the reference to body. */
void http_reply_json(struct http_req *r, int status, json_t *body);
/* {"error": {"code", "message", "details"?}}; steals details (may be NULL). */
void http_reply_error(struct http_req *r, int status, const char *code,
    const char *message, json_t *details);

/*
 * Hold the request's reply: made while held, it is kept (the request stays
 * alive, its client gone or not) until http_req_release(), which sends it
 * (ok), or a 503 "unavailable" instead (!ok); a reply made after the
 * release goes out at once. A stream is never held.
 */
void http_req_hold(struct http_req *r);
void http_req_release(struct http_req *r, int ok);

/*
 * Streaming (chunked) replies, for Server-Sent Events. Start, write any
 * number of times, end. on_close(arg) runs if the client goes away first
 * (after it, the request is gone: write nothing more).
 */
void http_stream_start(struct http_req *r, int status, const char *ctype,
    void (*on_close)(void *), void *arg);
void http_stream_write(struct http_req *r, const void *buf, size_t len);
void http_stream_end(struct http_req *r);
/*
 * A reply of len body bytes written later with http_stream_write, in
 * order, and ended with http_stream_end (HEAD: the head alone, the writes
 * dropped): framed by Content-Length, never chunked, no Cache-Control of
 * its own (add headers first), and never dropped for falling behind as an
 * event stream is: its writer waits for http_stream_on_drain instead. An
 * end before len bytes were written closes the connection, so the client
 * sees a short body, never a wrong one. on_close as for http_stream_start.
 */
void http_body_start(struct http_req *r, int status, const char *ctype,
    int64_t len, void (*on_close)(void *), void *arg);

/* Bytes written to the stream that the client has not taken yet. */
size_t http_stream_pending(const struct http_req *r);
/* Call fn(arg) once, when what is pending has all been sent (never if the
 * client goes first: on_close runs then). */
void http_stream_on_drain(struct http_req *r, void (*fn)(void *), void *arg);

#endif
