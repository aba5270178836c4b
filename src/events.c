/*
 * events.c — Server-Sent Events from the event log.
 *
 * The log is the truth: a stream first replays the rows after the client's
 * last id, then receives live rows. Live rows are read right after each
 * commit (the store's commit hook; a slow timer also catches commits of
 * other processes sharing the store) and handed to the streams of their
 * user, found through a hash of user ids. Each stream remembers the last
 * id it sent, so replay and live never overlap.
 *
 * The log holds state changes only. A waiting job's position is derived
 * from the store's queue order when it is sent: each stream watches the
 * queued jobs it shows (their seq, the place it last sent, their text),
 * and when jobs have left the queue, the places of the watched jobs are
 * read again and those that moved are sent — once per window of
 * POSITIONS_MS at most, so a burst of moves costs one pass. A position
 * event carries the id of the newest event the stream has been told of
 * (none when that id was sent already), so ids never go back; a client
 * that reconnects gets what it missed of the state changes, then the
 * current places. Queued events carry an ETA from the recent run times
 * of their tool.
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
#define POSITIONS_MS 50 /* at most one pass over the watched places per */
#define ETA_REFRESH_MS 60000
#define ETA_WINDOW_MS (3600 * 1000)

/* A queued job a stream shows; its place is sent again when it moves. */
struct watch {
	char *job_id;
	int64_t seq;
	int64_t shown; /* the place the stream last sent (0: none yet) */
	char *text;    /* the job's JSON as its queued event showed it */
};

struct sub {
	struct events *e;
	struct http_req *req;
	char *user_id;
	char *job_id; /* NULL: every job of the user */
	int64_t last; /* the last event id sent */
	int ended;
	int replaying;    /* behind the log: live events wait for the replay */
	struct list link; /* in its user's bucket; unlinked once it ends */
	struct watch *watch; /* the queued jobs it shows */
	size_t nwatch;
	struct list watching; /* in events.watching while nwatch > 0 */
	struct event *expiry; /* its token's end: the stream's */
};

struct eta {
	char *tool;
	double run_s; /* median run time of recent completed jobs */
};

struct events {
	const struct config *cfg;
	struct store *st;
	struct event *poll_ev; /* slow timer: other processes' commits */
	struct event *keep_ev; /* keep-alive comments */
	struct event *pos_ev;  /* the next pass over the watched places */
	int64_t pos_at;        /* when the last pass was made */
	uint64_t departures;   /* the queue's departures at that pass */
	int due;               /* a stream waits for its places' pass */
	int64_t cursor;        /* the last event id dispatched */
	int nsubs;
	struct event_base *base;
	struct list bucket[BUCKETS];
	struct list watching; /* streams with queued jobs to place */
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

/* The position in a queued job's JSON text (0 when there is none). */
static int64_t
position_of(const char *data)
{
	const char *p = job_text_member(data, "position");
	return p ? atoll(p) : 0;
}

/* The ETA of the queued job whose JSON is data, or < 0 when unknown: its
 * tool and place read from the text, which is all it needs. */
static double
queued_eta(struct events *e, const char *data)
{
	const char *tool = job_text_member(data, "tool"), *end;

	etas_refresh(e);
	if (e->netas == 0 || tool == NULL || *tool++ != '"' ||
	    (end = strchr(tool, '"')) == NULL)
		return -1;
	for (size_t i = 0; i < e->netas; i++)
		if (strncmp(e->etas[i].tool, tool, (size_t)(end - tool)) == 0 &&
		    e->etas[i].tool[end - tool] == '\0')
			return eta_at(e, e->etas[i].run_s, position_of(data));
	return -1;
}

/*
 * The event text; id 0 writes no id line. The data is the store's compact
 * JSON of the job, so its status can be read as text; a queued job gets
 * "eta_s" spliced in before the closing brace, without parsing the whole
 * object again.
 */
static char *
format(struct events *e, int64_t id, const char *data, int *terminal)
{
	size_t len = strlen(data);
	enum job_status s = status_of(data);
	double eta = -1;
	char idline[32] = "";

	*terminal = job_status_terminal(s);
	if (id > 0)
		snprintf(idline, sizeof(idline), "id: %lld\n", (long long)id);
	if (s == JOB_QUEUED && len > 2 && data[len - 1] == '}')
		eta = queued_eta(e, data);
	if (eta < 0)
		return xasprintf("%sevent: job\ndata: %s\n\n", idline, data);
	return xasprintf("%sevent: job\ndata: %.*s,\"eta_s\":%lld}\n\n", idline,
	    (int)(len - 1), data, (long long)(eta + 0.5));
}

/* ---- what a stream watches ------------------------------------------ */

static struct watch *
watch_find(struct sub *s, const char *job_id)
{
	for (size_t i = 0; i < s->nwatch; i++)
		if (strcmp(s->watch[i].job_id, job_id) == 0)
			return &s->watch[i];
	return NULL;
}

/* Show job_id (of seq) at place shown, its text being data. */
static void
watch_set(struct sub *s, const char *job_id, int64_t seq, int64_t shown,
    const char *data)
{
	struct watch *w = watch_find(s, job_id);

	if (w == NULL) { /* in queue order: places go out in that order */
		size_t i = s->nwatch;
		s->watch =
		    xrealloc(s->watch, (s->nwatch + 1) * sizeof(*s->watch));
		while (i > 0 && s->watch[i - 1].seq > seq)
			i--;
		memmove(&s->watch[i + 1], &s->watch[i],
		    (s->nwatch - i) * sizeof(*s->watch));
		s->nwatch++;
		w = &s->watch[i];
		w->job_id = xstrdup(job_id);
		w->text = NULL;
		if (s->nwatch == 1)
			list_add_tail(&s->e->watching, &s->watching);
	}
	free(w->text);
	w->text = xstrdup(data);
	w->seq = seq;
	w->shown = shown;
}

static void
watch_drop(struct sub *s, const char *job_id)
{
	struct watch *w = watch_find(s, job_id);

	if (w == NULL)
		return;
	free(w->job_id);
	free(w->text);
	memmove(w, w + 1, (size_t)(s->watch + --s->nwatch - w) * sizeof(*w));
	if (s->nwatch == 0)
		list_remove(&s->watching);
}

/* A state event the stream is shown: a queued job is watched from its
 * queued event on, and forgotten once it has left the queue. */
static void
watch_event(struct sub *s, const struct store_event *ev)
{
	if (status_of(ev->data) == JOB_QUEUED)
		watch_set(
		    s, ev->job_id, ev->seq, position_of(ev->data), ev->data);
	else
		watch_drop(s, ev->job_id);
}

/* ---- streams -------------------------------------------------------- */

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
	while (s->nwatch)
		watch_drop(s, s->watch[0].job_id);
	if (s->expiry)
		event_free(s->expiry);
	free(s->watch);
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

/* The stream's token expired: so does the stream. */
static void
on_expiry(evutil_socket_t fd, short what, void *arg)
{
	struct sub *s = arg;
	static const char bye[] = ": the token expired\n\n";

	http_stream_write(s->req, bye, sizeof(bye) - 1);
	s->ended = 1;
	http_stream_end(s->req);
	sub_free(s);
}

/* The streams user_id has open here. */
static long
user_streams(struct events *e, const char *user_id)
{
	struct list *it;
	long n = 0;

	list_each(it, &e->bucket[hash(user_id)])
	{
		if (strcmp(list_entry(it, struct sub, link)->user_id,
		        user_id) == 0)
			n++;
	}
	return n;
}

/* Send one event to s; a job stream ends after its terminal event (s is
 * then gone: 1). */
static int
send_event(
    struct sub *s, const struct store_event *ev, const char *text, int terminal)
{
	http_stream_write(s->req, text, strlen(text));
	s->last = ev->id;
	watch_event(s, ev);
	if (!terminal || s->job_id == NULL)
		return 0;
	s->ended = 1;
	http_stream_end(s->req);
	sub_free(s);
	return 1;
}

/* Is an event past the cursor on its way: a commit still being synced, or
 * another process's not yet read? */
static int
coming(struct events *e)
{
	int64_t top = 0;

	return store_events_top(e->st, &top) == STORE_OK && top > e->cursor;
}

/*
 * Send s the places of its watched jobs that moved since it last sent
 * them: the place as it is now, with the newest id it was told of. A
 * stream told of that id already waits for the next event when one is on
 * its way (the one of the move, read before its sync): its place then
 * goes out with an id of its own.
 */
static void
sub_places(struct events *e, struct sub *s)
{
	int64_t id = e->cursor > s->last ? e->cursor : 0;
	int sent = 0;

	for (size_t i = 0; i < s->nwatch; i++) {
		struct watch *w = &s->watch[i];
		int64_t pos = store_queue_place(e->st, w->seq);
		int terminal;

		if (pos == 0 || pos == w->shown)
			continue;
		if (id == 0 && !sent && coming(e)) {
			e->due = 1; /* the commit's hook sends it */
			return;
		}
		char *data = job_text_at_position(w->text, pos);
		if (data == NULL)
			continue;
		char *text = format(e, id, data, &terminal);
		http_stream_write(s->req, text, strlen(text));
		free(text);
		free(data);
		w->shown = pos;
		sent = 1;
		if (id > 0)
			s->last = id;
		id = 0; /* the id once per stream */
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
			text = format(e, ev->id, ev->data, &terminal);
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

/*
 * Send the places that moved. Places are read from committed changes
 * only: with changes pending, the pass waits for their commit (whose
 * hook comes back here). A commit still being synced counts: waiting for
 * no sync at all would starve the places under load, and a place is
 * derived (a power loss that took that commit back takes back a place,
 * never a state).
 */
static void
places(struct events *e)
{
	struct list *it, *tmp;

	if (store_pending(e->st))
		return;
	e->due = 0;
	e->pos_at = mono_ms();
	e->departures = store_queue_departures(e->st);
	list_each_safe(it, tmp, &e->watching)
	{
		struct sub *s = list_entry(it, struct sub, watching);
		if (!s->replaying)
			sub_places(e, s);
	}
}

static void
on_places(evutil_socket_t fd, short what, void *arg)
{
	places(arg);
}

/* Jobs left the queue (or a stream waits): a pass over the watched
 * places now, or once POSITIONS_MS has passed since the last. */
static void
places_soon(struct events *e)
{
	int64_t wait = e->pos_at + POSITIONS_MS - mono_ms();
	struct timeval tv;

	if ((store_queue_departures(e->st) == e->departures && !e->due) ||
	    evtimer_pending(e->pos_ev, NULL))
		return;
	if (wait <= 0) {
		places(e);
		return;
	}
	tv = timeval_ms(wait);
	evtimer_add(e->pos_ev, &tv);
}

/* The commit hook: hand out what was just committed. */
static void
on_commit(void *arg)
{
	struct events *e = arg;

	flush(e);
	places_soon(e);
}

/* Other processes' commits: their events, and the moves of the queue. */
static void
on_poll(evutil_socket_t fd, short what, void *arg)
{
	struct events *e = arg;

	flush(e);
	store_queue_sync(e->st);
	places_soon(e);
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

static void on_drained(void *arg);

/*
 * Send the events after s->last from the log, a page at a time, as fast as
 * the client takes them: past REPLAY_AHEAD bytes not yet taken, the replay
 * waits for the client to catch up (live events wait with it, and come
 * from the log too). A long history thus never piles up in memory, nor
 * gets a slow client dropped. At its end, the places of its queued jobs
 * as they are now. 0, or -1 when the stream ended (a job stream reached
 * its terminal event; s is then gone).
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
			char *text =
			    format(e, l.v[i].id, l.v[i].data, &terminal);
			rc = send_event(s, &l.v[i], text, terminal) ? -1 : 0;
			free(text);
		}
	} while (rc == 0 && l.n == REPLAY_PAGE);
	store_event_list_cleanup(&l);
	if (rc == 0) {
		s->replaying = 0;
		if (store_pending(e->st))
			e->due = 1; /* the commit's hook sends them */
		else
			sub_places(e, s);
	}
	return rc;
}

static void
on_drained(void *arg)
{
	struct sub *s = arg;

	replay(s->e, s);
}

/* Watch queued job j from the start, at its place now when the client
 * knows it, else at none (sent after the replay). */
static void
watch_job(struct sub *s, const struct job *j, int known)
{
	char *text = job_to_text(j);

	watch_set(s, j->id, j->seq, known ? j->position : 0, text);
	free(text);
}

/*
 * The queued jobs s shows when it opens: job's, or all the user's. A
 * client knows their places when it starts from now, or resumes after
 * the newest departure from the queue; else it may have missed a move,
 * and their places are sent after the replay.
 */
static void
watch_queued(
    struct events *e, struct sub *s, const struct job *job, int from_now)
{
	int known = from_now || s->last >= store_queue_departed(e->st);
	struct job_filter f = {.user_id = s->user_id, .status = JOB_QUEUED};
	struct job_list l = {0};

	if (job != NULL) {
		if (job->status == JOB_QUEUED)
			watch_job(s, job, known);
		return;
	}
	if (store_job_list(e->st, &f, &l) == STORE_OK)
		for (size_t i = 0; i < l.n; i++)
			watch_job(s, &l.v[i], known);
	job_list_cleanup(&l);
}

/* Is a finished job's stream reconnected after its end (nothing more will
 * come)? Its end may be a commit still being synced: then it comes. */
static int
nothing_left(struct events *e, struct sub *s)
{
	int any = 1;

	store_events_exist(e->st, s->last, s->user_id, s->job_id, &any);
	return !any;
}

void
events_stream(struct events *e, struct http_req *r, const char *user_id,
    const struct job *job, int64_t after, int64_t until_ms)
{
	const char *job_id = job ? job->id : NULL;
	int terminal = job && job_status_terminal(job->status);
	int64_t max = e->cfg->streams_per_user;
	struct sub *s;

	if (max > 0 && user_streams(e, user_id) >= max) {
		char msg[96];
		snprintf(msg, sizeof(msg),
		    "you have %lld event streams open already", (long long)max);
		http_reply_header(r, "Retry-After", "5");
		http_reply_error(r, 429, "rate_limited", msg,
		    json_pack("{s:s, s:I}", "limit", "event streams", "max",
		        (json_int_t)max));
		return;
	}
	s = xcalloc(1, sizeof(*s));

	s->e = e;
	list_init(&s->link);
	list_init(&s->watching);
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
		if (store_events_top(e->st, &newest) == STORE_OK &&
		    after > newest)
			s->last = newest;
	}
	if (terminal && after >= 0 && nothing_left(e, s)) {
		sub_free(s);
		http_reply(r, 204, NULL, NULL, 0);
		return;
	}
	watch_queued(e, s, job, after < 0 && job_id == NULL);
	if (until_ms > 0) {
		struct timeval tv =
		    timeval_ms(until_ms > now_ms() ? until_ms - now_ms() : 0);
		s->expiry = evtimer_new(e->base, on_expiry, s);
		evtimer_add(s->expiry, &tv);
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

	e->cfg = cfg;
	e->st = st;
	e->base = base;
	for (size_t b = 0; b < BUCKETS; b++)
		list_init(&e->bucket[b]);
	list_init(&e->watching);
	store_events_last(st, &e->cursor);
	e->departures = store_queue_departures(st);
	e->poll_ev = event_new(base, -1, EV_PERSIST, on_poll, e);
	e->keep_ev = event_new(base, -1, EV_PERSIST, on_keepalive, e);
	e->pos_ev = evtimer_new(base, on_places, e);
	event_add(e->poll_ev, &poll);
	event_add(e->keep_ev, &keep);
	store_on_commit(st, on_commit, e);
	return e;
}

void
events_free(struct events *e)
{
	if (e == NULL)
		return;
	store_on_commit(e->st, NULL, NULL);
	/* The streams are the server's: it frees them through on_close,
	 * when they must no longer be linked to anything of ours. */
	for (size_t b = 0; b < BUCKETS; b++)
		while (!list_empty(&e->bucket[b]))
			sub_unlink(
			    list_entry(e->bucket[b].next, struct sub, link));
	while (!list_empty(&e->watching))
		list_remove(e->watching.next);
	event_free(e->poll_ev);
	event_free(e->keep_ev);
	event_free(e->pos_ev);
	etas_clear(e);
	free(e);
}
