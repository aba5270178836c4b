/*
 * jwks.h — keeps an auth object's keys fresh from a JWKS URL, on the
 * event loop and never blocking it: fetched at start, again when the keys
 * are max_age old, and on demand for a token whose kid is unknown (at most
 * once per min_interval). A failed fetch keeps the keys already known.
 */
#ifndef FILA_JWKS_H
#define FILA_JWKS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct auth;
struct jwks;

/* Tuning; 0 in a field takes its default. */
struct jwks_opts {
	long timeout_ms;         /* one whole fetch; default 5000 */
	int64_t max_age_ms;      /* refetch keys this old; default 10 min */
	int64_t min_interval_ms; /* an on-demand fetch starts this long after
	                          * any other fetch at least; default 30 s */
	int max_waiters; /* jwks_refresh callers waiting; default 1024 */
};

/*
 * Keep a's keys fresh from url (http or https), starting a fetch now.
 * o may be NULL (defaults). a must outlive the jwks. NULL with err set
 * when url is not http(s) or libcurl cannot be set up.
 */
struct jwks *jwks_new(struct event_base *base, struct auth *a, const char *url,
    const struct jwks_opts *o, char *err, size_t errlen);

/*
 * Ask for fresh keys because a token's kid was unknown: done(arg) runs on
 * the loop, never inside this call, once a fetch has ended (the one in
 * flight, or one started now), or on the next turn when no fetch may start
 * yet (min_interval); then check the token once more. 0; or -1 (done never
 * runs) when max_waiters are already waiting.
 */
int jwks_refresh(struct jwks *j, void (*done)(void *arg), void *arg);

/* Forget every waiting jwks_refresh of (done, arg): it will not run. */
void jwks_forget(struct jwks *j, void (*done)(void *arg), void *arg);

/* Fetches started so far (the first at jwks_new). */
int jwks_fetches(const struct jwks *j);

/* Why the last fetch failed, or NULL when it succeeded or none has ended. */
const char *jwks_error(const struct jwks *j);

/*
 * Abort a fetch in flight and free j; every waiting jwks_refresh is told
 * (its done runs, within this call, after j is gone: it must not use j).
 * NULL is a no-op. Safe from inside a done callback.
 */
void jwks_free(struct jwks *j);

#endif
