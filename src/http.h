/*
 * http.h — a small HTTP/1.1 server on libevent bufferevents.
 *
 * Routes are a table; a request is matched on its request line and headers
 * alone, so a body over the route's limit is refused with 413 from
 * Content-Length before a byte of it is read. Replies may be sent at once
 * or later (the request stays alive until answered), or streamed.
 * Errors are the JSON shape of docs/api.md §2.
 */
#ifndef FILA_HTTP_H
#define FILA_HTTP_H

#include <stddef.h>
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

typedef void (*http_handler)(struct http_req *req, void *ctx);

/*
 * One route. pattern is a path where "{}" matches one non-empty segment,
 * e.g. "/v1/jobs/{}/cancel"; captured segments are percent-decoded and
 * read with http_req_param(). max_body 0 means the server's default.
 * access is the server's gate's to read (see http_server_gate).
 */
struct http_route {
	int methods;
	const char *pattern;
	http_handler handler;
	size_t max_body;
	int access;
};

/*
 * Judge a request on its head alone, before a byte of its body is read:
 * 0 lets it on to its route's handler; otherwise the HTTP status to refuse
 * it with, *code and *message set (strings that outlive the call).
 */
typedef int (*http_gate)(struct http_req *r, int access, void *ctx,
    const char **code, const char **message);

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

/*
 * Let pages of these origins call the server from the browser (CORS):
 * NULL or "" none but its own, "*" any, else origins separated by single
 * spaces (copied). Allowed origins get Access-Control-Allow-Origin on
 * every answer, and their preflights are answered from the route table.
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
/* The body (NUL-terminated for convenience; may hold NULs) and its length. */
const char *http_req_body(const struct http_req *r, size_t *len);
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
/* Bytes written to the stream that the client has not taken yet. */
size_t http_stream_pending(const struct http_req *r);
/* Call fn(arg) once, when what is pending has all been sent (never if the
 * client goes first: on_close runs then). */
void http_stream_on_drain(struct http_req *r, void (*fn)(void *), void *arg);

#endif
