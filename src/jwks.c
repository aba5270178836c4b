/*
 * jwks.c — an auth object's keys, kept fresh from a JWKS URL.
 *
 * One fetch at a time, with libcurl on the loop (curlev): at start, when
 * the keys are max_age old, and when a request meets an unknown kid — but
 * then at most once per min_interval, so that tokens with made-up kids
 * cannot make fila hammer the identity provider. A fetch that fails (no
 * answer within timeout, not 2xx, not a JWKS) changes nothing but the
 * error text and is retried after min_interval; auth_set_keys swaps a
 * whole good set in.
 *
 * The requests that asked for a refetch wait in lists of callbacks, told
 * once the fetch ends (or on the next turn when none may start). A done
 * callback may free the jwks: `gone` points at a flag on the telling
 * loop's stack, which stops it touching the freed object.
 */
#include "jwks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "auth.h"
#include "curlev.h"
#include "list.h"
#include "util.h"

#define DEF_TIMEOUT_MS 5000
#define DEF_MAX_AGE_MS (10 * 60 * 1000)
#define DEF_MIN_INTERVAL_MS (30 * 1000)
#define DEF_MAX_WAITERS 1024
/* Real key sets are a few KiB. */
#define BODY_MAX (256 * 1024)

struct waiter {
	struct list link; /* in one of jwks.waiting, .told, .telling */
	void (*done)(void *);
	void *arg;
};

struct jwks {
	struct event_base *base;
	struct auth *auth;
	char *url;
	struct jwks_opts o;
	struct curlev *cv;
	CURL *easy; /* the fetch in flight, or NULL */
	struct curl_slist *headers;
	char *body;
	size_t len;
	int too_big;
	char curlerr[CURL_ERROR_SIZE];
	struct event *timer; /* the next fetch by age, or after a failure */
	struct event *tell;  /* tells .told on the next turn */
	struct list waiting; /* for the fetch in flight */
	struct list told;    /* no fetch could start: told on the next turn */
	struct list telling; /* being told now */
	int nwaiters;
	int *gone; /* the telling loop's flag, set when j is freed */
	int64_t last_start;
	int nfetches;
	int nok;    /* good fetches */
	int failed; /* the last fetch failed: err says why */
	char err[256];
};

static void
after(struct jwks *j, int64_t ms)
{
	struct timeval tv = timeval_ms(ms);

	evtimer_add(j->timer, &tv);
}

/* A fetch ended (why NULL: keys replaced): say so once, plan the next. */
static void
note(struct jwks *j, const char *why)
{
	if (why == NULL) {
		if (j->nok++ == 0 || j->failed)
			fprintf(stderr, "fila: jwks: %zu key(s) from %s\n",
			    auth_nkeys(j->auth), j->url);
		j->failed = 0;
		after(j, j->o.max_age_ms);
		return;
	}
	if (!j->failed || strcmp(j->err, why) != 0)
		fprintf(stderr, "fila: jwks: %s: %s (keeping %zu keys)\n",
		    j->url, why, auth_nkeys(j->auth));
	snprintf(j->err, sizeof(j->err), "%s", why);
	j->failed = 1;
	after(j, j->o.min_interval_ms);
}

/* Tell every waiter of .telling, unless a callback frees j. */
static void
tell_all(struct jwks *j)
{
	int gone = 0;

	j->gone = &gone;
	while (!list_empty(&j->telling)) {
		struct waiter *w =
		    list_entry(j->telling.next, struct waiter, link);
		void (*done)(void *) = w->done;
		void *arg = w->arg;

		list_remove(&w->link);
		free(w);
		j->nwaiters--;
		done(arg);
		if (gone)
			return;
	}
	j->gone = NULL;
}

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
	struct jwks *j = userp;
	size_t n = size * nmemb;

	if (n > BODY_MAX - j->len) {
		j->too_big = 1;
		return 0; /* curl ends the transfer with a write error */
	}
	memcpy(j->body + j->len, ptr, n);
	j->len += n;
	return n;
}

/* Why a finished transfer gave no keys, into why; or "" when it did. */
static void
judge(struct jwks *j, CURLcode rc, long http, char *why, size_t len)
{
	char err[160];

	why[0] = '\0';
	if (rc != CURLE_OK)
		snprintf(why, len, "%s",
		    j->too_big      ? "answer over 256 KiB"
		    : j->curlerr[0] ? j->curlerr
		                    : curl_easy_strerror(rc));
	else if (http < 200 || http > 299)
		snprintf(why, len, "HTTP %ld", http);
	else if (auth_set_keys(j->auth, j->body, j->len, err, sizeof(err)) < 0)
		snprintf(why, len, "bad JWKS: %s", err);
}

static void
fetch_done(void *arg, CURL *easy, CURLcode rc)
{
	struct jwks *j = arg;
	long http = 0;
	char why[sizeof(j->err)];

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
	curl_easy_cleanup(easy);
	j->easy = NULL;
	judge(j, rc, http, why, sizeof(why));
	note(j, why[0] != '\0' ? why : NULL);
	list_splice(&j->telling, &j->waiting);
	tell_all(j); /* the last use of j: a callback may free it */
}

static void
easy_setup(struct jwks *j, CURL *e)
{
	curl_easy_setopt(e, CURLOPT_URL, j->url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, j->o.timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, j->o.timeout_ms);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_USERAGENT, "fila");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, j->curlerr);
}

/* Start a fetch unless one is in flight. A start that fails counts as a
 * failed fetch (retried later); the waiting list is empty then. */
static void
fetch_start(struct jwks *j)
{
	CURL *e;

	if (j->easy != NULL)
		return;
	j->last_start = mono_ms();
	j->nfetches++;
	j->len = 0;
	j->too_big = 0;
	j->curlerr[0] = '\0';
	evtimer_del(j->timer);
	e = curl_easy_init();
	if (e == NULL) {
		note(j, "curl_easy_init failed");
		return;
	}
	easy_setup(j, e);
	if (curlev_add(j->cv, e, fetch_done, j) < 0) {
		curl_easy_cleanup(e);
		note(j, "libcurl refused the transfer");
		return;
	}
	j->easy = e;
}

static void
timer_event(evutil_socket_t fd, short what, void *arg)
{
	fetch_start(arg);
}

static void
tell_event(evutil_socket_t fd, short what, void *arg)
{
	struct jwks *j = arg;

	list_splice(&j->telling, &j->told);
	tell_all(j);
}

int
jwks_refresh(struct jwks *j, void (*done)(void *arg), void *arg)
{
	struct waiter *w;
	struct timeval now = {0, 0};

	if (j->nwaiters >= j->o.max_waiters)
		return -1;
	if (j->easy == NULL &&
	    mono_ms() - j->last_start >= j->o.min_interval_ms)
		fetch_start(j);
	w = xcalloc(1, sizeof(*w));
	w->done = done;
	w->arg = arg;
	j->nwaiters++;
	if (j->easy != NULL) {
		list_add_tail(&j->waiting, &w->link);
		return 0;
	}
	list_add_tail(&j->told, &w->link);
	evtimer_add(j->tell, &now);
	return 0;
}

static void
forget_in(struct jwks *j, struct list *h, void (*done)(void *), void *arg)
{
	struct list *it, *tmp;

	list_each_safe(it, tmp, h)
	{
		struct waiter *w = list_entry(it, struct waiter, link);
		if (w->done == done && w->arg == arg) {
			list_remove(&w->link);
			free(w);
			j->nwaiters--;
		}
	}
}

void
jwks_forget(struct jwks *j, void (*done)(void *arg), void *arg)
{
	forget_in(j, &j->waiting, done, arg);
	forget_in(j, &j->told, done, arg);
	forget_in(j, &j->telling, done, arg);
}

int
jwks_fetches(const struct jwks *j)
{
	return j->nfetches;
}

const char *
jwks_error(const struct jwks *j)
{
	return j->failed ? j->err : NULL;
}

static void
opts_default(struct jwks_opts *o, const struct jwks_opts *given)
{
	if (given != NULL)
		*o = *given;
	if (o->timeout_ms <= 0)
		o->timeout_ms = DEF_TIMEOUT_MS;
	if (o->max_age_ms <= 0)
		o->max_age_ms = DEF_MAX_AGE_MS;
	if (o->min_interval_ms <= 0)
		o->min_interval_ms = DEF_MIN_INTERVAL_MS;
	if (o->max_waiters <= 0)
		o->max_waiters = DEF_MAX_WAITERS;
}

struct jwks *
jwks_new(struct event_base *base, struct auth *a, const char *url,
    const struct jwks_opts *o, char *err, size_t errlen)
{
	struct jwks *j;

	if (url == NULL || (strncmp(url, "http://", 7) != 0 &&
	                       strncmp(url, "https://", 8) != 0)) {
		snprintf(err, errlen, "jwks: the URL must be http(s)");
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "jwks: curl_global_init failed");
		return NULL;
	}
	j = xcalloc(1, sizeof(*j));
	j->base = base;
	j->auth = a;
	j->url = xstrdup(url);
	opts_default(&j->o, o);
	j->body = xmalloc(BODY_MAX);
	list_init(&j->waiting);
	list_init(&j->told);
	list_init(&j->telling);
	j->headers = curl_slist_append(NULL, "Accept: application/json");
	j->timer = evtimer_new(base, timer_event, j);
	j->tell = evtimer_new(base, tell_event, j);
	j->cv = curlev_new(base);
	if (j->headers == NULL || j->timer == NULL || j->tell == NULL ||
	    j->cv == NULL) {
		snprintf(err, errlen, "jwks: cannot set up libcurl");
		jwks_free(j);
		return NULL;
	}
	fetch_start(j);
	return j;
}

void
jwks_free(struct jwks *j)
{
	struct list all;

	if (j == NULL)
		return;
	if (j->gone != NULL)
		*j->gone = 1;
	/* Out of the multi first: only then may the easy be cleaned up. */
	curlev_free(j->cv);
	if (j->easy != NULL)
		curl_easy_cleanup(j->easy);
	curl_slist_free_all(j->headers);
	if (j->timer != NULL)
		event_free(j->timer);
	if (j->tell != NULL)
		event_free(j->tell);
	list_init(&all);
	list_splice(&all, &j->telling);
	list_splice(&all, &j->waiting);
	list_splice(&all, &j->told);
	free(j->body);
	free(j->url);
	free(j);
	curl_global_cleanup();
	while (!list_empty(&all)) {
		struct waiter *w = list_entry(all.next, struct waiter, link);
		void (*done)(void *) = w->done;
		void *arg = w->arg;

		list_remove(&w->link);
		free(w);
		done(arg);
	}
}
