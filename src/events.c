/*
 * events.c — Server-Sent Events from the event log.
 *
 * The log is the truth: a stream first replays the rows after the client's
 * last id, then receives live rows. Live rows are read once per loop turn
 * after a commit (the store's commit hook schedules a flush; a slow timer
 * also catches commits of other processes sharing the store) and handed to
 * the streams of their user, found through a hash of user ids. Each stream
 * remembers the last id it sent, so replay and live never overlap.
 *
 * When the queue moves, the positions of waiting jobs change: a short
 * timer coalesces a burst of moves into one store_positions_publish(),
 * whose events then flow like any other. Queued events carry an ETA from
 * the recent run times of their tool. Position events of jobs that left
 * the queue are forgotten after a day.
 */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "job.h"
#include "list.h"
#include "util.h"

#define BUCKETS 4096
#define REPLAY_PAGE 500
#define REPLAY_AHEAD (256 * 1024) /* replayed bytes a client may owe */
#define KEEPALIVE_MS 10000
#define POLL_MS 1000
#define POSITIONS_MS 50 /* at most one publication of positions per … */
#define PRUNE_MS 10000  /* a round of pruning the log per … */
#define PRUNE_IDS 20000 /* … looking at so many ids at most */
#define POSITIONS_KEEP_MS 86400000 /* position events of jobs gone: 24 h */
#define ETA_REFRESH_MS 60000
#define ETA_WINDOW_MS (3600 * 1000)

struct sub {
	struct events *e;
	struct http_req *req;
	char *user_id;
	char *job_id; /* NULL: every job of the user */
	int64_t last; /* the last event id sent */
	int ended;
	int replaying;    /* behind the log: live events wait for the replay */
	struct list link; /* in its user's bucket; unlinked once it ends */
};

struct eta {
	char *tool;
	double run_s; /* median run time of recent completed jobs */
};

struct events {
	const struct config *cfg;
	struct store *st;
	struct event *flush_ev; /* next loop turn, after a commit */
	struct event *poll_ev;  /* slow timer: other processes' commits */
	struct event *keep_ev;  /* keep-alive comments */
	struct event *pos_ev;   /* coalesced position publishing */
	struct event *prune_ev; /* forgetting old positions */
	int64_t pos_at;         /* when positions were last published */
	int64_t cursor;         /* the last event id dispatched */
	int nsubs;
	struct list bucket[BUCKETS];
	struct eta *etas;
	size_t netas;
	int64_t etas_at;
};

static uint32_t
hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % BUCKETS;
}

/* ---- ETA ------------------------------------------------------------ */

static void
etas_clear(struct events *e)
{
	for (size_t i = 0; i < e->netas; i++)
		free(e->etas[i].tool);
	free(e->etas);
	e->etas = NULL;
	e->netas = 0;
}

/* Median run time per tool over the last hour, refreshed now and then. */
static void
etas_refresh(struct events *e)
{
	struct job_list l = {0};
	int64_t now = now_ms();

	if (e->etas_at && now - e->etas_at < ETA_REFRESH_MS)
		return;
	e->etas_at = now;
	etas_clear(e);
	if (store_jobs_finished(e->st, now - ETA_WINDOW_MS, &l) != STORE_OK)
		goto out;
	e->etas = xcalloc(e->cfg->tools.n + 1, sizeof(*e->etas));
	double *v = xcalloc(l.n + 1, sizeof(double));
	for (size_t t = 0; t < e->cfg->tools.n; t++) {
		const char *name = e->cfg->tools.v[t].name;
		size_t n = 0;
		for (size_t i = 0; i < l.n; i++)
			if (l.v[i].status == JOB_COMPLETED &&
			    l.v[i].started_at && strcmp(l.v[i].tool, name) == 0)
				v[n++] = (double)(l.v[i].finished_at -
				                  l.v[i].started_at) /
				         1000.0;
		if (n == 0)
			continue;
		e->etas[e->netas].tool = xstrdup(name);
		e->etas[e->netas++].run_s = median(v, n);
	}
	free(v);
out:
	job_list_cleanup(&l);
}

/* Seconds until a job at position starts: the rounds of slots ahead of
 * it, each as long as a typical run of its tool (run_s); < 0 when the
 * position is not one. */
static double
eta_at(struct events *e, double run_s, long long position)
{
	if (position < 1)
		return -1;
	return (double)((position - 1) / e->cfg->slots + 1) * run_s;
}

/* ---- writing events ------------------------------------------------- */

/* The job's status from its JSON text. */
static enum job_status
status_of(const char *data)
{
	const char *p = job_text_member(data, "status"), *q;
	enum job_status s = JOB_QUEUED;
	char name[16];

	if (p && *p++ == '"' && (q = strchr(p, '"')) && q - p < 16) {
		memcpy(name, p, (size_t)(q - p));
		name[q - p] = '\0';
		job_status_parse(name, &s);
	}
	return s;
}

/* The ETA of the queued job whose JSON is data, or < 0 when unknown: its
 * tool and place read from the text, which is all it needs. */
static double
queued_eta(struct events *e, const char *data)
{
	const char *tool = job_text_member(data, "tool"), *end;
	const char *pos = job_text_member(data, "position");

	etas_refresh(e);
	if (e->netas == 0 || tool == NULL || *tool++ != '"' || pos == NULL ||
	    (end = strchr(tool, '"')) == NULL)
		return -1;
	for (size_t i = 0; i < e->netas; i++)
		if (strncmp(e->etas[i].tool, tool, (size_t)(end - tool)) == 0 &&
		    e->etas[i].tool[end - tool] == '\0')
			return eta_at(e, e->etas[i].run_s, atoll(pos));
	return -1;
}

/*
 * The event text. The data is the store's compact JSON of the job, so its
 * status can be read as text; a queued job gets "eta_s" spliced in before
 * the closing brace, without parsing the whole object again.
 */
static char *
format(struct events *e, const struct store_event *ev, int *terminal)
{
	const char *data = ev->data;
	size_t len = strlen(data);
	enum job_status s = status_of(data);
	double eta = -1;

	*terminal = job_status_terminal(s);
	if (s == JOB_QUEUED && len > 2 && data[len - 1] == '}')
		eta = queued_eta(e, data);
	if (eta < 0)
		return xasprintf("id: %lld\nevent: job\ndata: %s\n\n",
		    (long long)ev->id, data);
	return xasprintf("id: %lld\nevent: job\ndata: %.*s,\"eta_s\":%lld}\n\n",
	    (long long)ev->id, (int)(len - 1), data, (long long)(eta + 0.5));
}

static void
sub_unlink(struct sub *s)
{
	if (!list_linked(&s->link))
		return;
	list_remove(&s->link);
	s->e->nsubs--;
}

static void
sub_free(struct sub *s)
{
	sub_unlink(s);
	free(s->user_id);
	free(s->job_id);
	free(s);
}

/* The client went away (or the server is closing). */
static void
on_close(void *arg)
{
	sub_free(arg);
}

/* Send one event to s; a job stream ends after its terminal event. */
static void
send_event(
    struct sub *s, const struct store_event *ev, const char *text, int terminal)
{
	http_stream_write(s->req, text, strlen(text));
	s->last = ev->id;
	if (terminal && s->job_id) {
		s->ended = 1;
		sub_unlink(s);
		http_stream_end(s->req);
		free(s->user_id);
		free(s->job_id);
		free(s);
	}
}

static int
wants(const struct sub *s, const struct store_event *ev)
{
	return !s->replaying && ev->id > s->last &&
	       strcmp(s->user_id, ev->user_id) == 0 &&
	       (s->job_id == NULL || strcmp(s->job_id, ev->job_id) == 0);
}

static void
dispatch(struct events *e, const struct store_event *ev)
{
	struct list *it, *tmp;
	char *text = NULL;
	int terminal = 0;

	list_each_safe(it, tmp, &e->bucket[hash(ev->user_id)])
	{
		struct sub *s = list_entry(it, struct sub, link);
		if (!wants(s, ev))
			continue;
		if (text == NULL)
			text = format(e, ev, &terminal);
		send_event(s, ev, text, terminal);
	}
	free(text);
}

/* Read what was committed since the cursor and hand it out. */
static void
flush(struct events *e)
{
	struct store_event_list l = {0};

	do {
		store_event_list_cleanup(&l);
		if (store_events_after(e->st, e->cursor, NULL, NULL,
		        REPLAY_PAGE, &l) != STORE_OK)
			break;
		for (size_t i = 0; i < l.n; i++) {
			if (e->nsubs)
				dispatch(e, &l.v[i]);
			e->cursor = l.v[i].id;
		}
	} while (l.n == REPLAY_PAGE);
	store_event_list_cleanup(&l);
}

static void
on_flush(evutil_socket_t fd, short what, void *arg)
{
	flush(arg);
}

static void
on_positions(evutil_socket_t fd, short what, void *arg)
{
	struct events *e = arg;
	int n;

	e->pos_at = mono_ms();
	store_positions_publish(e->st, &n);
}

/*
 * The commit hook: flush on the next turn. When the queue moved, publish
 * positions on the next turn too (so the moves of one turn make one
 * publication), or, right after a publication, once POSITIONS_MS has
 * passed since it: a burst of moves costs one read of the queue per window.
 */
static void
on_commit(void *arg, int moved)
{
	struct events *e = arg;
	int64_t wait = e->pos_at + POSITIONS_MS - mono_ms();
	struct timeval tv = timeval_ms(wait > 0 ? wait : 0);

	event_active(e->flush_ev, 0, 0);
	if (!moved || evtimer_pending(e->pos_ev, NULL))
		return;
	evtimer_add(e->pos_ev, &tv);
}

/* Position events pile up fastest (one per waiting job per move) and say
 * nothing once their job has left the queue: forget them after a day, a
 * round at a time; rounds follow each other quickly while behind. */
static void
on_prune(evutil_socket_t fd, short what, void *arg)
{
	struct events *e = arg;
	struct timeval tv = timeval_ms(PRUNE_MS);
	int more = 0;

	if (store_events_prune(e->st, now_ms() - POSITIONS_KEEP_MS, PRUNE_IDS,
	        &more) == STORE_OK &&
	    more)
		tv = timeval_ms(100);
	evtimer_add(e->prune_ev, &tv);
}

static void
on_keepalive(evutil_socket_t fd, short what, void *arg)
{
	struct events *e = arg;
	static const char ping[] = ": keep-alive\n\n";

	struct list *it;

	for (size_t b = 0; b < BUCKETS; b++)
		list_each(it, &e->bucket[b])
		    http_stream_write(list_entry(it, struct sub, link)->req,
		        ping, sizeof(ping) - 1);
}

/* ---- streams -------------------------------------------------------- */

static void on_drained(void *arg);

/*
 * Send the events after s->last from the log, a page at a time, as fast as
 * the client takes them: past REPLAY_AHEAD bytes not yet taken, the replay
 * waits for the client to catch up (live events wait with it, and come
 * from the log too). A long history thus never piles up in memory, nor
 * gets a slow client dropped. 0, or -1 when the stream ended (a job
 * stream reached its terminal event; s is then gone).
 */
static int
replay(struct events *e, struct sub *s)
{
	struct store_event_list l = {0};
	int rc = 0;

	s->replaying = 1;
	do {
		store_event_list_cleanup(&l);
		if (store_events_after(e->st, s->last, s->user_id, s->job_id,
		        REPLAY_PAGE, &l) != STORE_OK)
			break;
		for (size_t i = 0; i < l.n && rc == 0; i++) {
			int terminal;
			if (http_stream_pending(s->req) > REPLAY_AHEAD) {
				http_stream_on_drain(s->req, on_drained, s);
				store_event_list_cleanup(&l);
				return 0;
			}
			char *text = format(e, &l.v[i], &terminal);
			if (terminal && s->job_id)
				rc = -1;
			send_event(s, &l.v[i], text, terminal);
			free(text);
		}
	} while (rc == 0 && l.n == REPLAY_PAGE);
	store_event_list_cleanup(&l);
	if (rc == 0)
		s->replaying = 0;
	return rc;
}

static void
on_drained(void *arg)
{
	struct sub *s = arg;

	replay(s->e, s);
}

void
events_stream(struct events *e, struct http_req *r, const char *user_id,
    const struct job *job, int64_t after)
{
	struct sub *s = xcalloc(1, sizeof(*s));
	const char *job_id = job ? job->id : NULL;
	int terminal = job && job_status_terminal(job->status);

	s->e = e;
	list_init(&s->link);
	s->req = r;
	s->user_id = xstrdup(user_id);
	s->job_id = xstrdup_or_null(job_id);
	s->last = after > 0 ? after : 0;
	if (after < 0 && job_id == NULL) {
		store_events_last(e->st, &s->last);
	} else if (after > 0) {
		/* An id this log never gave (a store made anew): from now on,
		 * or the next events would wait for ids past it. */
		int64_t newest = 0;
		if (store_events_last(e->st, &newest) == STORE_OK &&
		    after > newest)
			s->last = newest;
	}
	if (terminal && after >= 0) {
		/* Reconnected after the end: nothing more will come. */
		struct store_event_list l = {0};
		store_events_after(e->st, s->last, user_id, job_id, 1, &l);
		int none = l.n == 0;
		store_event_list_cleanup(&l);
		if (none) {
			sub_free(s);
			http_reply(r, 204, NULL, NULL, 0);
			return;
		}
	}
	http_reply_header(r, "X-Accel-Buffering", "no");
	http_stream_start(r, 200, "text/event-stream", on_close, s);
	http_stream_write(r, "retry: 2000\n\n", 13);
	list_add_tail(&e->bucket[hash(user_id)], &s->link);
	e->nsubs++;
	replay(e, s);
}

int
events_streams(const struct events *e)
{
	return e->nsubs;
}

struct events *
events_new(struct event_base *base, const struct config *cfg, struct store *st)
{
	struct events *e = xcalloc(1, sizeof(*e));
	struct timeval poll = timeval_ms(POLL_MS);
	struct timeval keep = timeval_ms(KEEPALIVE_MS);
	struct timeval prune = timeval_ms(PRUNE_MS);

	e->cfg = cfg;
	e->st = st;
	for (size_t b = 0; b < BUCKETS; b++)
		list_init(&e->bucket[b]);
	store_events_last(st, &e->cursor);
	e->flush_ev = event_new(base, -1, 0, on_flush, e);
	e->poll_ev = event_new(base, -1, EV_PERSIST, on_flush, e);
	e->keep_ev = event_new(base, -1, EV_PERSIST, on_keepalive, e);
	e->pos_ev = evtimer_new(base, on_positions, e);
	e->prune_ev = evtimer_new(base, on_prune, e);
	event_add(e->poll_ev, &poll);
	event_add(e->prune_ev, &prune);
	event_add(e->keep_ev, &keep);
	store_on_commit(st, on_commit, e);
	/* Positions may have moved while no one published them. */
	on_commit(e, 1);
	return e;
}

void
events_free(struct events *e)
{
	if (e == NULL)
		return;
	store_on_commit(e->st, NULL, NULL);
	for (size_t b = 0; b < BUCKETS; b++)
		while (!list_empty(&e->bucket[b])) /* http frees via on_close */
			sub_unlink(
			    list_entry(e->bucket[b].next, struct sub, link));
	event_free(e->flush_ev);
	event_free(e->poll_ev);
	event_free(e->keep_ev);
	event_free(e->pos_ev);
	event_free(e->prune_ev);
	etas_clear(e);
	free(e);
}
