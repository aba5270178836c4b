/*
 * curlev.c — libcurl's multi_socket interface on a libevent loop.
 *
 * curl says which sockets to watch (socket_cb) and when to wake it
 * (timer_cb); we keep one struct event per socket and one timer event, and
 * hand every readiness back with curl_multi_socket_action. Finished
 * transfers are read with curl_multi_info_read and given to their done
 * callbacks outside any curl call, so a callback may start new transfers
 * or even free the whole curlev: `depth` counts our own event callbacks on
 * the stack, and a free inside one is finished when the outermost returns.
 *
 * curl's "wake me now" (a timeout of 0, as for a transfer just added) is
 * a timer event, and libevent runs timers after the sockets that are ready
 * in the same pass: under load a new request would wait behind a whole
 * turn's clients. So such a curlev is also put on the list `due`, which
 * the loop runs between turns (curlev_run_due), before the next turn's
 * sockets.
 */
#include "curlev.h"

#include <stdlib.h>

#include <event2/event.h>

#include "list.h"
#include "util.h"

/* A transfer in flight; found again through the easy's CURLOPT_PRIVATE. */
struct xfer {
	struct list link; /* in curlev.xfers */
	CURL *easy;
	curlev_done_cb done;
	void *arg;
};

/* A socket curl asked us to watch; curl keeps it with curl_multi_assign. */
struct sock {
	struct list link; /* in curlev.socks */
	struct curlev *cv;
	curl_socket_t fd;
	struct event *ev;
	int streak; /* readiness served first since curl last set its watch */
};

/* A socket is served ahead of the loop's other events (priority 0, when
 * the base has more than one) for its first SOCK_FIRST readinesses after
 * each change of what curl watches: a request's answer is read at once,
 * but a long transfer at local speed, ready at every pass, falls back to
 * the default priority instead of starving everything else. */
#define SOCK_FIRST 4

struct curlev {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct list xfers;
	struct list socks;
	int nxfers;
	int depth;       /* our event callbacks on the stack */
	int dying;       /* freed while depth > 0 */
	struct list due; /* in the list due while curl waits for 0 ms */
};

/* Every curlev whose curl asked to be woken at once. */
static struct list due = {&due, &due};

static void
xfer_unlink(struct curlev *cv, struct xfer *x)
{
	list_remove(&x->link);
	cv->nxfers--;
	free(x);
}

static struct sock *
sock_new(struct curlev *cv, curl_socket_t fd)
{
	struct sock *s = xcalloc(1, sizeof(*s));

	s->cv = cv;
	s->fd = fd;
	list_add_tail(&cv->socks, &s->link);
	return s;
}

static void
sock_free(struct sock *s)
{
	list_remove(&s->link);
	if (s->ev != NULL)
		event_free(s->ev);
	free(s);
}

/* The outermost of our callbacks finishes a curlev_free made inside it. */
static void
destroy(struct curlev *cv)
{
	/* curl may still report sockets to forget while it closes them. */
	curl_multi_cleanup(cv->multi);
	while (!list_empty(&cv->socks))
		sock_free(list_entry(cv->socks.next, struct sock, link));
	list_remove(&cv->due); /* the cleanup may have asked for 0 ms */
	event_free(cv->timer);
	free(cv);
}

static void
leave(struct curlev *cv)
{
	if (--cv->depth == 0 && cv->dying)
		destroy(cv);
}

/* Hand finished transfers to their callbacks, each outside any curl call. */
static void
check_done(struct curlev *cv)
{
	CURLMsg *m;
	int left;

	while (!cv->dying && (m = curl_multi_info_read(cv->multi, &left))) {
		CURL *easy = m->easy_handle;
		CURLcode rc = m->data.result;
		char *priv = NULL;
		struct xfer *x;
		curlev_done_cb done;
		void *arg;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
		x = (struct xfer *)(void *)priv;
		curl_multi_remove_handle(cv->multi, easy);
		done = x->done;
		arg = x->arg;
		xfer_unlink(cv, x);
		done(arg, easy, rc);
	}
}

static void
act(struct curlev *cv, curl_socket_t fd, int flags)
{
	int running;

	if (fd == CURL_SOCKET_TIMEOUT)
		list_remove(&cv->due);
	cv->depth++;
	curl_multi_socket_action(cv->multi, fd, flags, &running);
	check_done(cv);
	leave(cv);
}

static void
sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct sock *s = arg;
	int flags = 0;

	if (what & EV_READ)
		flags |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		flags |= CURL_CSELECT_OUT;
	if (++s->streak == SOCK_FIRST) { /* not first any more */
		event_del(s->ev);
		event_priority_set(
		    s->ev, event_base_get_npriorities(s->cv->base) / 2);
		event_add(s->ev, NULL);
	}
	/* s may be freed by curl's socket callback during the action. */
	act(s->cv, fd, flags);
}

static void
timer_event(evutil_socket_t fd, short what, void *arg)
{
	act(arg, CURL_SOCKET_TIMEOUT, 0);
}

/* Watch s for what curl wants now (CURL_POLL_IN, _OUT or _INOUT). */
static int
sock_watch(struct sock *s, int what)
{
	short events = EV_PERSIST;

	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	if (s->ev != NULL)
		event_free(s->ev);
	s->ev = event_new(s->cv->base, s->fd, events, sock_event, s);
	s->streak = 0;
	if (s->ev == NULL || event_priority_set(s->ev, 0) < 0 ||
	    event_add(s->ev, NULL) < 0)
		return -1;
	return 0;
}

static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
	struct curlev *cv = userp;
	struct sock *s = sockp;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL)
			sock_free(s);
		curl_multi_assign(cv->multi, fd, NULL);
		return 0;
	}
	if (s == NULL) {
		s = sock_new(cv, fd);
		curl_multi_assign(cv->multi, fd, s);
	}
	return sock_watch(s, what);
}

static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct curlev *cv = userp;
	struct timeval tv = timeval_ms(timeout_ms > 0 ? timeout_ms : 0);

	list_remove(&cv->due);
	if (timeout_ms < 0)
		return evtimer_del(cv->timer);
	/* 0 means "as soon as you can": between turns, or else the timer
	 * in the next one. */
	if (timeout_ms == 0)
		list_add_tail(&due, &cv->due);
	return evtimer_add(cv->timer, &tv);
}

struct curlev *
curlev_new(struct event_base *base)
{
	struct curlev *cv = xcalloc(1, sizeof(*cv));

	cv->base = base;
	list_init(&cv->xfers);
	list_init(&cv->socks);
	list_init(&cv->due);
	cv->timer = evtimer_new(base, timer_event, cv);
	cv->multi = curl_multi_init();
	if (cv->timer == NULL || cv->multi == NULL)
		goto fail;
	curl_multi_setopt(cv->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(cv->multi, CURLMOPT_SOCKETDATA, cv);
	curl_multi_setopt(cv->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(cv->multi, CURLMOPT_TIMERDATA, cv);
	return cv;
fail:
	if (cv->multi != NULL)
		curl_multi_cleanup(cv->multi);
	if (cv->timer != NULL)
		event_free(cv->timer);
	free(cv);
	return NULL;
}

int
curlev_add(struct curlev *cv, CURL *easy, curlev_done_cb done, void *arg)
{
	struct xfer *x = xcalloc(1, sizeof(*x));

	x->easy = easy;
	x->done = done;
	x->arg = arg;
	curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
	if (curl_multi_add_handle(cv->multi, easy) != CURLM_OK) {
		curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
		free(x);
		return -1;
	}
	list_add_tail(&cv->xfers, &x->link);
	cv->nxfers++;
	return 0;
}

/* Those due when called, once each: a curl that asks for 0 ms again
 * waits for the next turn, so this always ends. */
void
curlev_run_due(void)
{
	struct list now;

	list_init(&now);
	list_splice(&now, &due);
	while (!list_empty(&now)) {
		struct curlev *cv = list_entry(now.next, struct curlev, due);
		list_remove(&cv->due);
		evtimer_del(cv->timer);
		act(cv, CURL_SOCKET_TIMEOUT, 0);
	}
}

int
curlev_pending(const struct curlev *cv)
{
	return cv->nxfers;
}

void
curlev_free(struct curlev *cv)
{
	if (cv == NULL || cv->dying)
		return;
	while (!list_empty(&cv->xfers)) {
		struct xfer *x = list_entry(cv->xfers.next, struct xfer, link);
		curl_multi_remove_handle(cv->multi, x->easy);
		xfer_unlink(cv, x);
	}
	if (cv->depth > 0) {
		cv->dying = 1;
		return;
	}
	destroy(cv);
}
