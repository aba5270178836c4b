/*
 * runninghub.h — the RunningHub provider (docs/api.md §7) on libcurl's multi
 * interface driven by the event loop. The parsers are exposed for tests.
 */
#ifndef FILA_RUNNINGHUB_H
#define FILA_RUNNINGHUB_H

#include <stddef.h>
#include "provider.h"

struct event_base;

/* A provider talking to base_url with api_key; calls time out after
 * timeout_ms. NULL with err set when curl cannot be set up. */
struct provider *runninghub_new(struct event_base *base, const char *base_url,
    const char *api_key, long timeout_ms, char *err, size_t errlen);

/*
 * Classify one answer of RunningHub's API: HTTP status plus body, the
 * envelope {"code", "msg", "data"}. Fills res (message points into *root's
 * storage or a static string) and sets *data to the borrowed "data" member.
 * root receives the parsed body (caller json_decref()s it, may be NULL).
 */
void runninghub_classify(long http_status, const char *body, size_t len,
    struct provider_result *res, json_t **root, json_t **data);

/* The outcome carried by an outputs answer or a callback's eventData
 * envelope: code 0 with data [{fileUrl, fileType}], or a failure with
 * msg and data.failedReason.exception_message. */
void runninghub_outcome(json_t *envelope, struct provider_outcome *out);

#endif
