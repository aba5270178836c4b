/*
 * hooks.h — the app's backend hears about jobs (docs/api.md §10): every
 * event the store put in its outbox is POSTed to [webhooks] url, signed
 * as the Standard Webhooks spec says, at least once and in order per job,
 * retried with backoff for a day. The outbox is written in the change's
 * transaction, so a restart or kill -9 loses no delivery; deliveries run
 * on the loop and never hold it or the queue.
 */
#ifndef FILA_HOOKS_H
#define FILA_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

struct event_base;
struct hooks;

/* Deliver from now on; NULL (and nothing to do) when webhooks.url is
 * empty. NULL with err set when the secret does not decode. */
struct hooks *hooks_new(struct event_base *base, const struct config *cfg,
    struct store *st, char *err, size_t errlen);
/* Stop: deliveries in flight are abandoned (their claims lapse, and they
 * are sent again later, by this process or another). NULL ok. */
void hooks_free(struct hooks *h);

/* The Standard Webhooks signature of body: "v1," base64(HMAC-SHA256(key,
 * id "." timestamp "." body)); the caller frees it. */
char *hooks_sign(const unsigned char *key, size_t keylen, const char *id,
    int64_t timestamp, const char *body);
/* A delivery's body: {"type": "job.<status>", "timestamp", "data"}. */
char *hooks_body(const struct store_delivery *d);
/* When an attempt that failed is tried again: 0 for never (it failed for
 * good), given its event's time, its attempts so far (this one included),
 * and a Retry-After the receiver asked for (0: none). */
int64_t hooks_next(
    int64_t event_at, int64_t attempts, int64_t now, int64_t retry_after_s);

#endif
