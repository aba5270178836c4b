/*
 * events.h — the event log streamed to browsers as Server-Sent Events
 * (docs/api.md §5). Every committed change appended an event row; a stream
 * replays the rows a client missed, then follows new ones as they commit.
 */
#ifndef FILA_EVENTS_H
#define FILA_EVENTS_H

#include <stdint.h>

#include "config.h"
#include "http.h"
#include "job.h"
#include "store.h"

struct event_base;
struct events;

/* Follow st's event log on base; registers itself as st's commit hook. */
struct events *events_new(
    struct event_base *base, const struct config *cfg, struct store *st);
/* Close every stream and free. NULL is a no-op. */
void events_free(struct events *e);

/*
 * Answer r with a stream of user_id's events (only job's when non-NULL:
 * the caller has read it, and it is user_id's) with ids > after; after < 0
 * means "from now on" (or, for one job, its whole history). A job stream
 * ends after its job's terminal event, and a job already terminal with
 * nothing to replay is answered 204. The stream ends at until_ms (its
 * token's expiry; 0: never): the client comes back with a fresh token and
 * its Last-Event-ID. A user with limits.streams_per_user streams open
 * already is answered 429.
 */
void events_stream(struct events *e, struct http_req *r, const char *user_id,
    const struct job *job, int64_t after, int64_t until_ms);

/* Streams open now. */
int events_streams(const struct events *e);

#endif
