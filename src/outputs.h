/*
 * outputs.h — a completed job's outputs copied to fila's own storage (a
 * local directory, or an S3 bucket written with AWS Signature V4), so that
 * they outlive the provider's temporary links; their signed public URLs;
 * and what serving one needs (docs/api.md §10, [outputs]).
 *
 * The module keeps no record of what it stored: a copy ends by handing the
 * caller a JSON array of stored outputs, [{"id", "type", "size",
 * "sha256"}], which the caller keeps with the job; to serve or sign an
 * output, the caller hands back its element (see output_find). Where the
 * bytes are follows from the id alone: {outputs.dir}/{id}, or the object
 * {s3_prefix}{id} of the bucket. Not created when outputs.store = none.
 */
#ifndef FILA_OUTPUTS_H
#define FILA_OUTPUTS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

struct event_base;
struct config;
struct outputs;

/* "out_" and 32 lowercase hex characters. */
#define OUTPUT_ID_LEN 36

/* One stored output, as its element of a job's stored outputs says. */
struct output {
	char id[OUTPUT_ID_LEN + 1];
	char type[16]; /* "png", "jpeg", "webp", "mp4", "mov", … or "bin" */
	int64_t size;
	char sha256[65]; /* lowercase hex */
};

/* 1 when id is a well-formed output id (safe in a path), else 0. */
int output_id_valid(const char *id);

/*
 * Fill out from the element of stored (a job's stored outputs array) whose
 * "id" is id. 0; or -1 when there is none, or it is malformed.
 */
int output_find(struct output *out, const json_t *stored, const char *id);

/* The Content-Type to serve an output of this type with (a static
 * string): images and videos by name, anything else as bytes. */
const char *output_content_type(const char *type);

/*
 * The outputs module for cfg (which must outlive it), on base, signing
 * URLs with a key derived from sign_key (non-empty; the same on every
 * process sharing a store, or their URLs will not verify on each other).
 * Makes outputs.dir (the files with store = local, the copies in progress
 * with s3) and removes what a process that died left there in progress (an
 * hour old). NULL with err set on a bad setting (store none, s3 without
 * endpoint, bucket or keys, a prefix with characters a key cannot carry)
 * or a directory it cannot make.
 */
struct outputs *outputs_new(struct event_base *base, const struct config *cfg,
    const char *sign_key, char *err, size_t errlen);

/*
 * Abort everything in flight, without any callback, and free o. Partial
 * copies are removed. NULL is a no-op. Free it after the HTTP server: a
 * request being served may still call outputs_read_cancel while it closes.
 */
void outputs_free(struct outputs *o);

/* ---- copying a completed job's outputs ---- */

/*
 * How a copy ended: rc 0 with stored, the stored outputs in the order of
 * the provider's (borrowed: json_incref to keep it); or rc -1 with errmsg,
 * a sentence for the job's error (none of it stored, nothing left behind).
 */
typedef void (*outputs_done_cb)(
    void *arg, int rc, json_t *stored, const char *errmsg);

/*
 * Copy every output of job_id (provider_outputs: the provider's
 * [{"url", "type"}], copied) on the loop, one after the other: download
 * (http or https only, redirects too; at most outputs.max_bytes), type from
 * the bytes when known (else the provider's word), SHA-256, then store (a
 * file: temporary name, fsync, rename, fsync of the directory; or an S3 PUT
 * carrying x-amz-content-sha256). A failed step is tried again after a
 * backoff (0.5 s doubling to 15 s, each waited half to whole) while a try
 * can still start before deadline_ms (wall clock, as now_ms()); a URL that
 * is not http(s) (or redirects to one) or an output over the limit fails
 * at once. done runs exactly once, on
 * the loop, never inside this call, unless the copy is cancelled or o
 * freed first. 0; or -1 (done never runs) when a copy of job_id is already
 * in flight.
 */
int outputs_copy(struct outputs *o, const char *job_id,
    const json_t *provider_outputs, int64_t deadline_ms, outputs_done_cb done,
    void *arg);

/*
 * Stop the copy of job_id, if any (its job was cancelled or timed out):
 * done will not run; what it stored is removed. A transfer in flight stops
 * within about a second (it holds a little memory until then).
 */
void outputs_cancel(struct outputs *o, const char *job_id);

/* Remove what a finished copy stored (stored as its done had it): no job
 * will name it, the job having ended otherwise meanwhile. */
void outputs_discard(struct outputs *o, const json_t *stored);

/* Copies, reads and removals in flight (for tests and shutdown). */
int outputs_busy(const struct outputs *o);

/* ---- signed URLs ---- */

/*
 * The public URL of output id at now_s (Unix seconds):
 * {server.public_url}/v1/outputs/{id}?exp={now_s + url_ttl}&sig={sig},
 * sig the base64url (unpadded) HMAC-SHA256 of "{id}.{exp}". Caller frees.
 */
char *outputs_url(struct outputs *o, const char *id, int64_t now_s);

/*
 * 0 when exp and sig (the query's, either may be NULL) are a signature of
 * id that is valid at now_s: made by this key, exp not past, and not
 * further ahead than url_ttl (plus a minute of clock skew). Else -1.
 */
int outputs_check_sig(struct outputs *o, const char *id, const char *exp,
    const char *sig, int64_t now_s);

/*
 * A job's outputs as clients see them, from its stored outputs: each of
 * fila's becomes {"url": outputs_url(…), "type"}; an element without an
 * "id" (the provider's URL, stored before outputs were on) is kept as it
 * is. A new reference.
 */
json_t *outputs_public(struct outputs *o, const json_t *stored, int64_t now_s);

/* ---- serving GET/HEAD /v1/outputs/{id} ---- */

#define OUTPUTS_MAX_HEADERS 8

/* The answer to a request for an output, decided from its head alone. */
struct outputs_plan {
	int status;    /* 200, 206, 304 or 416 */
	int64_t first; /* the body is the bytes [first, first + length) */
	int64_t length;
	const char *ctype; /* NULL for 304 and 416 (no body) */
	int nheaders;      /* headers to add, besides Content-Type/-Length */
	struct {
		const char *name;
		char value[96];
	} headers[OUTPUTS_MAX_HEADERS];
};

/*
 * Decide how to answer a GET or HEAD for out, from the request's Range,
 * If-None-Match and If-Range headers (each NULL when absent), as RFC 9110
 * says: a matching If-None-Match (weak comparison, or "*") is 304; one
 * byte range ("a-b", "a-", "-n") is 206 with Content-Range, or 416 with
 * "bytes *\/size" when it starts past the end; several ranges, another
 * unit, a malformed Range or an If-Range that is not our ETag get the
 * whole output (200). Every answer carries the strong ETag ("sha256") and
 * Accept-Ranges; those with a body, Cache-Control private, and nosniff
 * and a sandboxing Content-Security-Policy (an output is the provider's
 * bytes, served from fila's origin).
 */
void outputs_plan(const struct output *out, const char *range,
    const char *if_none_match, const char *if_range, struct outputs_plan *p);

/* Reading an output's bytes for an answer. */
enum outputs_read_rc {
	OUTPUTS_READ_OK,      /* all the bytes asked for were given */
	OUTPUTS_READ_MISSING, /* no such file or object (before begin) */
	OUTPUTS_READ_ERROR,   /* storage failed, or gave other bytes */
};

/*
 * Where a read's bytes go. begin(arg) once the storage has them (send the
 * head then); data(arg, buf, len) for each piece, in order, returning 0 to
 * go on or 1 to pause until outputs_read_resume (the piece was taken
 * either way); end(arg, rc, msg) once, last, never while paused (msg says
 * why when not OK; begin may not have run), after which the read is gone.
 * None runs inside outputs_read() or outputs_read_resume() themselves.
 */
struct outputs_sink {
	void (*begin)(void *arg);
	int (*data)(void *arg, const void *buf, size_t len);
	void (*end)(void *arg, enum outputs_read_rc rc, const char *msg);
};

struct outputs_read;

/*
 * Read length bytes of out from first (as outputs_plan said) into sink:
 * the file in pieces of 64 KiB, or an S3 GET (with Range unless whole)
 * relayed as it arrives. The read frees itself after end runs. Never NULL.
 */
struct outputs_read *outputs_read(struct outputs *o, const struct output *out,
    int64_t first, int64_t length, const struct outputs_sink *sink, void *arg);

/* Go on after data returned 1 (from the loop, not inside this call). */
void outputs_read_resume(struct outputs_read *rd);

/* Stop a read that has not ended (its client left): no callback runs
 * after this. Safe inside the sink's callbacks. */
void outputs_read_cancel(struct outputs_read *rd);

#endif
