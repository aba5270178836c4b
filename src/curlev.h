/*
 * curlev.h — libcurl's multi_socket interface driven by a libevent
 * event_base: transfers run on the loop, which never blocks on the
 * network, and each one ends in its own done callback.
 */
#ifndef FILA_CURLEV_H
#define FILA_CURLEV_H

#include <curl/curl.h>

struct event_base;
struct curlev;

/*
 * Called once per finished transfer with curl's result (CURLE_OK, or why
 * the transfer failed). easy is no longer in the multi handle and is the
 * caller's again: the callback may clean it up, reuse it or add it again.
 */
typedef void (*curlev_done_cb)(void *arg, CURL *easy, CURLcode rc);

/* A multi handle on base. NULL when curl cannot create one. */
struct curlev *curlev_new(struct event_base *base);

/*
 * Start easy on the loop; done(arg, easy, rc) runs when it ends. The easy
 * stays the caller's (clean it up after done, or after curlev_free), but
 * curlev uses its CURLOPT_PRIVATE while it runs. 0, or -1 when curl
 * refused the handle (done is then never called).
 */
int curlev_add(struct curlev *cv, CURL *easy, curlev_done_cb done, void *arg);

/*
 * Run at once every curlev whose curl asked to be woken now (a transfer
 * just added, a request after an answer), so it goes out before the next
 * turn's sockets are served. For the loop, between turns only: never from
 * inside a callback.
 */
void curlev_run_due(void);

/* Transfers added and not yet done. */
int curlev_pending(const struct curlev *cv);

/*
 * Abort every transfer in flight (their done callbacks never run; the
 * easies are left to their owners) and free cv. NULL ok. Safe from inside
 * a done callback: the rest of that turn's callbacks are then dropped.
 */
void curlev_free(struct curlev *cv);

#endif
