/*
 * sweep.c — old uploads go: each pass forgets at most BATCH of them, the
 * oldest first, and unlinks their files; a full batch means more wait, so
 * the next pass comes soon. Processes sharing a store may sweep at once:
 * a file already gone and a row already forgotten are no error.
 */
#include "sweep.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "util.h"

#define BATCH 100
#define EVERY_MS 60000 /* between passes, at most */
#define SOON_MS 1000   /* after a full batch */

struct sweep {
	struct store *st;
	int64_t retention_s;
	int64_t every_ms;
	struct event *tick;
};

int
sweep_pass(struct store *st, int64_t retention_s, int limit)
{
	struct upload_list l = {0};
	int n = 0;

	if (store_uploads_older(st, now_ms() - retention_s * 1000, limit, &l) !=
	    STORE_OK) {
		upload_list_cleanup(&l);
		return -1;
	}
	for (size_t i = 0; i < l.n; i++) {
		if (store_upload_delete(st, l.v[i].id) != STORE_OK) {
			n = -1;
			break;
		}
		if (unlink(l.v[i].path) < 0 && errno != ENOENT)
			fprintf(stderr, "fila: sweep: %s: %s\n", l.v[i].path,
			    strerror(errno));
		n++;
	}
	upload_list_cleanup(&l);
	return n;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct sweep *w = arg;
	int n = sweep_pass(w->st, w->retention_s, BATCH);
	struct timeval tv = timeval_ms(n == BATCH ? SOON_MS : w->every_ms);

	if (n < 0)
		fprintf(stderr, "fila: sweep: %s\n", store_error(w->st));
	evtimer_add(w->tick, &tv);
}

struct sweep *
sweep_new(struct event_base *base, struct store *st, int64_t retention_s)
{
	struct sweep *w;
	struct timeval tv;

	if (retention_s <= 0)
		return NULL;
	w = xcalloc(1, sizeof(*w));
	w->st = st;
	w->retention_s = retention_s;
	/* A short retention is swept often enough to be kept to. */
	w->every_ms = retention_s * 1000 / 2;
	if (w->every_ms > EVERY_MS)
		w->every_ms = EVERY_MS;
	if (w->every_ms < 200)
		w->every_ms = 200;
	w->tick = evtimer_new(base, on_tick, w);
	tv = timeval_ms(w->every_ms);
	evtimer_add(w->tick, &tv);
	return w;
}

void
sweep_free(struct sweep *w)
{
	if (w == NULL)
		return;
	event_free(w->tick);
	free(w);
}
