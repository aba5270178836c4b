/*
 * sched.c — the rules of API.md §4 in motion.
 *
 * The store decides who may start (a job starts only by taking a slot row)
 * and writes every change with its refund and its event; sched only decides
 * when to ask, and carries jobs to and from the provider.
 *
 * Two ideas to read it by:
 * - A job being started has a `start` record while its submit is in flight
 *   or waiting to be retried (capacity refusals keep the job starting, in
 *   its slot, and retry with backoff).
 * - A slot is given back only when the provider has let go of the task:
 *   after the submit answered (and, for a job cancelled meanwhile, after the
 *   task was cancelled) or after the cancel of a running task answered.
 */
#include "sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "tools.h"
#include "uploads.h"
#include "util.h"

#define RETRY_BASE_MS 1000
#define RETRY_MAX_MS 30000
#define RETRY_TRANSPORT_MAX 8
#define RECOVER_MS 2000
#define CANCEL_TRIES 4
#define CANCEL_RETRY_MS 1000

struct start {
	struct sched *s;
	char *job_id;
	int attempts;  /* transport failures so far */
	int busy;      /* capacity refusals so far */
	int in_flight; /* a provider submit is under way */
	int checking;  /* asking the provider's task count (unsure) */
	int unsure;    /* the last submit failed in transport: it may have
	                * started a task all the same */
	struct event *retry;
	struct start *next;
};

/* A provider call whose answer frees a slot. */
struct release {
	struct sched *s;
	char *job_id;
	char *task_id;
	int tries;
	struct event *retry;
	struct release *next;
};

struct sched {
	struct event_base *base;
	const struct config *cfg;
	struct store *st;
	struct provider *prov;
	struct metrics *m;
	struct start *starts;
	struct release *releases;
	/* jobs found starting at start-up, not yet sent again */
	char **recovering;
	size_t nrecovering;
	struct event *recover_ev;
};

static void start_job(struct sched *s, const struct job *j);
static void give_up(struct sched *s, struct start *a, const char *id,
    const char *code, const char *msg);
static void on_recover(evutil_socket_t fd, short what, void *arg);
static void release_free(struct sched *s, struct release *r);
static void fail_job(
    struct sched *s, const char *id, const char *code, const char *msg);

struct sched *
sched_new(struct event_base *base, const struct config *cfg, struct store *st,
    struct provider *p, struct metrics *m)
{
	struct sched *s = xcalloc(1, sizeof(*s));
	s->m = m;
	s->base = base;
	s->cfg = cfg;
	s->st = st;
	s->prov = p;
	s->recover_ev = evtimer_new(base, on_recover, s);
	return s;
}

static void
start_free(struct start *a)
{
	if (a->retry)
		event_free(a->retry);
	free(a->job_id);
	free(a);
}

void
sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	while (s->starts) {
		struct start *a = s->starts;
		s->starts = a->next;
		start_free(a);
	}
	while (s->releases)
		release_free(s, s->releases);
	for (size_t i = 0; i < s->nrecovering; i++)
		free(s->recovering[i]);
	free(s->recovering);
	if (s->recover_ev)
		event_free(s->recover_ev);
	free(s);
}

static struct start *
start_find(struct sched *s, const char *id)
{
	for (struct start *a = s->starts; a; a = a->next)
		if (strcmp(a->job_id, id) == 0)
			return a;
	return NULL;
}

static void
start_remove(struct sched *s, struct start *a)
{
	for (struct start **pp = &s->starts; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			start_free(a);
			return;
		}
	}
}

static void
log_store(struct sched *s, const char *what, const char *id)
{
	fprintf(stderr, "fila: %s %s: %s\n", what, id, store_error(s->st));
}

void
sched_pump(struct sched *s)
{
	struct job j;

	for (;;) {
		job_init(&j);
		enum store_rc rc = store_promote(s->st, &j);
		if (rc != STORE_OK) {
			if (rc == STORE_ERROR)
				log_store(s, "promote", "-");
			job_cleanup(&j);
			return;
		}
		start_job(s, &j);
		job_cleanup(&j);
	}
}

/* ---- the provider's answer to a cancel: the task is let go ---------- */

static void
release_free(struct sched *s, struct release *r)
{
	for (struct release **pp = &s->releases; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	if (r->retry)
		event_free(r->retry);
	free(r->job_id);
	free(r->task_id);
	free(r);
}

static void on_released(void *arg, const struct provider_result *res);

/* Send the cancel (again); when it cannot even be sent, the slot goes. */
static void
cancel_send(struct release *r)
{
	struct provider_result none = {.rc = PROVIDER_OK};

	r->tries++;
	if (r->task_id == NULL ||
	    provider_cancel(r->s->prov, r->task_id, on_released, r) != 0)
		on_released(r, &none);
}

static void
on_cancel_retry(evutil_socket_t fd, short what, void *arg)
{
	cancel_send(arg);
}

/*
 * The provider answered a cancel. An answer (done, or "no such task")
 * means the task let go: the slot is free. A transport error or a 5xx
 * confirms nothing, so the cancel is sent again, a bounded number of
 * times; each try is bounded by runninghub.timeout.
 */
static void
on_released(void *arg, const struct provider_result *res)
{
	struct release *r = arg;
	struct sched *s = r->s;

	metrics_provider(s->m, "cancel",
	    res->code                ? res->code
	    : res->rc == PROVIDER_OK ? 0
	                             : res->http_status);
	if ((res->rc == PROVIDER_RETRY || res->rc == PROVIDER_BUSY) &&
	    r->tries < CANCEL_TRIES) {
		struct timeval tv = {
		    CANCEL_RETRY_MS / 1000, (CANCEL_RETRY_MS % 1000) * 1000};
		if (r->retry == NULL)
			r->retry = evtimer_new(s->base, on_cancel_retry, r);
		evtimer_add(r->retry, &tv);
		return;
	}
	if (store_slot_release(s->st, r->job_id) != STORE_OK)
		log_store(s, "release", r->job_id);
	release_free(s, r);
	sched_pump(s);
}

/* Cancel task_id at the provider; the job's slot is freed once the
 * provider answers (or now, when there is no task or no way to ask). */
static void
cancel_task(struct sched *s, const char *job_id, const char *task_id)
{
	struct release *r = xcalloc(1, sizeof(*r));

	r->s = s;
	r->job_id = xstrdup(job_id);
	r->task_id = xstrdup_or_null(task_id);
	r->next = s->releases;
	s->releases = r;
	cancel_send(r);
}

/* ---- starting a job at the provider --------------------------------- */

static void
number_text(json_t *v, char *buf, size_t len)
{
	double d = json_number_value(v);

	if (json_is_integer(v))
		snprintf(buf, len, "%lld", (long long)json_integer_value(v));
	else if (d == floor(d) && fabs(d) < 1e15)
		snprintf(buf, len, "%.0f", d);
	else /* the shortest text that reads back as the same double */
		for (int prec = 15; prec <= 17; prec++) {
			snprintf(buf, len, "%.*g", prec, d);
			if (strtod(buf, NULL) == d)
				break;
		}
}

static int
input_is_file(const struct tool *tool, const char *name)
{
	for (size_t i = 0; i < tool->ninputs; i++)
		if (strcmp(tool->inputs[i].name, name) == 0)
			return tool->inputs[i].type == INPUT_IMAGE ||
			       tool->inputs[i].type == INPUT_VIDEO;
	return 0;
}

/*
 * The provider's view of the job: one node per mapped input present.
 * Returns 0, or -1 with msg set (the job cannot be run as configured).
 * Strings live in ups, vals and the job until the submit call returns.
 */
static int
build_task(struct sched *s, const struct job *j, struct provider_task *t,
    struct provider_node *nodes, struct upload *ups, char (*vals)[64],
    char *msg, size_t msglen)
{
	const struct tool *tool = tools_find(&s->cfg->tools, j->tool);
	const struct tool_variant *v;
	size_t n = 0;

	if (tool == NULL || (v = tool_variant(tool, j->variant)) == NULL) {
		snprintf(
		    msg, msglen, "tool %s is no longer configured", j->tool);
		return -1;
	}
	for (size_t i = 0; i < v->nnodes; i++) {
		const struct tool_node *tn = &v->nodes[i];
		json_t *val = json_object_get(j->inputs, tn->input);
		struct provider_node *pn = &nodes[n];

		if (val == NULL || json_is_null(val))
			continue;
		memset(pn, 0, sizeof(*pn));
		pn->node_id = tn->node_id;
		pn->field = tn->field;
		if (json_is_number(val)) {
			number_text(val, vals[n], sizeof(vals[n]));
			pn->value = vals[n];
		} else if (!json_is_string(val)) {
			pn->value = json_is_true(val) ? "true" : "false";
		} else if (!input_is_file(tool, tn->input)) {
			pn->value = json_string_value(val);
		} else if (store_upload_get(s->st, json_string_value(val),
		               j->user_id, &ups[n]) == STORE_OK) {
			pn->path = ups[n].path;
			pn->file_type = ups[n].type;
		} else {
			snprintf(msg, msglen, "upload %s is gone",
			    json_string_value(val));
			return -1;
		}
		n++;
	}
	t->app_id = v->app_id;
	t->nodes = nodes;
	t->nnodes = n;
	return 0;
}

static void on_submitted(void *arg, const struct provider_result *res);

static void
submit(struct start *a)
{
	struct sched *s = a->s;
	struct job j;
	struct provider_task t = {0};
	size_t cap;
	char msg[256];
	int rc = -1;

	job_init(&j);
	if (store_job_get(s->st, a->job_id, NULL, &j) != STORE_OK ||
	    j.status != JOB_STARTING) {
		/* Cancelled while waiting to retry: nothing is at the provider.
		 */
		store_slot_release(s->st, a->job_id);
		start_remove(s, a);
		job_cleanup(&j);
		sched_pump(s);
		return;
	}
	cap = json_object_size(j.inputs) + 1;
	struct provider_node *nodes = xcalloc(cap, sizeof(*nodes));
	struct upload *ups = xcalloc(cap, sizeof(*ups));
	char(*vals)[64] = xcalloc(cap, sizeof(*vals));
	char *url = xasprintf("%s/v1/webhooks/runninghub/%s",
	    s->cfg->public_url, j.webhook_token);

	t.webhook_url = url;
	if (build_task(s, &j, &t, nodes, ups, vals, msg, sizeof(msg)) == 0) {
		a->in_flight = 1;
		rc = provider_submit(s->prov, &t, on_submitted, a);
		if (rc != 0) {
			a->in_flight = 0;
			snprintf(msg, sizeof(msg), "provider call failed");
		}
	}
	for (size_t i = 0; i < cap; i++)
		upload_cleanup(&ups[i]);
	free(nodes);
	free(ups);
	free(vals);
	free(url);
	job_cleanup(&j);
	if (rc != 0) {
		char *id = xstrdup(a->job_id);
		start_remove(s, a);
		fail_job(s, id, JOB_ERR_REJECTED, msg);
		free(id);
	}
}

/* Tasks fila knows the provider runs: its running jobs and the submits
 * under way. -1 when the store cannot tell. */
static long
known_tasks(struct sched *s)
{
	struct job_list running = {0};
	long n = -1;

	if (store_jobs_in(s->st, JOB_RUNNING, &running) == STORE_OK) {
		n = (long)running.n;
		for (struct start *a = s->starts; a; a = a->next)
			n += a->in_flight;
	}
	job_list_cleanup(&running);
	return n;
}

static void retry_later(struct start *a, int tries);

/* An ended job waited long enough for an unknown task of it to end too:
 * no provider runs a task past run_timeout for fila's sake. */
static int
waited_enough(struct sched *s, const char *id)
{
	struct job j;
	int done = 0;

	job_init(&j);
	if (store_job_get(s->st, id, NULL, &j) == STORE_OK)
		done = job_status_terminal(j.status) &&
		       now_ms() - j.finished_at >= s->cfg->run_timeout * 1000;
	job_cleanup(&j);
	return done;
}

/* The account's count of tasks tells whether an unsure submit started
 * one: while the provider runs more than fila knows of, the job waits. */
static void
on_verified(void *arg, const struct provider_result *res)
{
	struct start *a = arg;
	long known;

	a->checking = 0;
	if (waited_enough(a->s, a->job_id) ||
	    (res->rc == PROVIDER_OK && (known = known_tasks(a->s)) >= 0 &&
	        res->count <= known)) {
		a->unsure = 0;
		submit(a);
	} else {
		retry_later(a, a->busy + a->attempts);
	}
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct start *a = arg;

	if (!a->unsure) {
		submit(a);
		return;
	}
	/* checking keeps a cancel from freeing the record under the check;
	 * submit() then finds the job ended and lets it go. */
	a->checking = 1;
	if (provider_tasks(a->s->prov, on_verified, a) != 0) {
		a->checking = 0;
		retry_later(a, a->busy + a->attempts);
	}
}

static void
start_job(struct sched *s, const struct job *j)
{
	struct start *a = start_find(s, j->id);

	if (a == NULL) {
		a = xcalloc(1, sizeof(*a));
		a->s = s;
		a->job_id = xstrdup(j->id);
		a->retry = evtimer_new(s->base, on_retry, a);
		a->next = s->starts;
		s->starts = a;
	}
	if (!a->in_flight)
		submit(a);
}

/* Wait before the next try: doubling, capped, with jitter so that many
 * refused jobs do not come back in one burst. */
static void
retry_later(struct start *a, int tries)
{
	int64_t ms = RETRY_BASE_MS;
	struct timeval tv;

	for (int i = 1; i < tries && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	if (ms > RETRY_MAX_MS)
		ms = RETRY_MAX_MS;
	ms = ms / 2 + (int64_t)(arc4random_uniform((uint32_t)ms / 2 + 1));
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(a->retry, &tv);
}

/* A capacity refusal keeps the job starting, but not past run_timeout. */
static int
past_run_timeout(struct sched *s, const char *id)
{
	struct job j;
	int past = 0;

	job_init(&j);
	if (store_job_get(s->st, id, NULL, &j) == STORE_OK && j.started_at)
		past = now_ms() - j.started_at >= s->cfg->run_timeout * 1000;
	job_cleanup(&j);
	return past;
}

static void
on_submitted(void *arg, const struct provider_result *res)
{
	struct start *a = arg;
	struct sched *s = a->s;
	char *id = xstrdup(a->job_id);
	struct job j;
	enum store_rc rc;

	a->in_flight = 0;
	job_init(&j);
	metrics_provider(s->m, "submit",
	    res->code                ? res->code
	    : res->rc == PROVIDER_OK ? 0
	                             : res->http_status);
	switch (res->rc) {
	case PROVIDER_OK:
		start_remove(s, a);
		rc = store_job_running(s->st, id, res->task_id, &j);
		if (rc == STORE_CONFLICT) /* cancelled while submitting */
			cancel_task(s, id, res->task_id);
		else if (rc != STORE_OK)
			log_store(s, "running", id);
		else if (j.started_at)
			metrics_observe(s->m, HIST_HANDOFF,
			    (double)(now_ms() - j.started_at) / 1000.0);
		break;
	case PROVIDER_BUSY:
	case PROVIDER_RETRY:
		if (res->rc == PROVIDER_BUSY) {
			a->busy++;
		} else {
			a->attempts++;
			a->unsure = 1;
		}
		if (past_run_timeout(s, id))
			give_up(s, a, id, JOB_ERR_TIMEOUT,
			    "the provider had no capacity before run_timeout");
		else if (a->attempts >= RETRY_TRANSPORT_MAX)
			give_up(s, a, id, JOB_ERR_PROVIDER,
			    res->message ? res->message
			                 : "provider unreachable");
		else if (!a->unsure &&
		         store_job_get(s->st, id, NULL, &j) == STORE_OK &&
		         j.status != JOB_STARTING) {
			store_slot_release(s->st, id); /* cancelled meanwhile */
			start_remove(s, a);
		} else { /* unsure and cancelled: on_retry's check frees it */
			retry_later(a, a->busy + a->attempts);
		}
		break;
	case PROVIDER_REJECTED:
		start_remove(s, a);
		fail_job(s, id, JOB_ERR_REJECTED,
		    res->message ? res->message : "rejected by the provider");
		break;
	}
	job_cleanup(&j);
	free(id);
	sched_pump(s);
}

/*
 * End a job whose submits keep failing. Its slot is freed at once unless
 * the last submit is unsure: then on_retry's check frees it once the
 * provider runs no task fila does not know of.
 */
static void
give_up(struct sched *s, struct start *a, const char *id, const char *code,
    const char *msg)
{
	struct job j;

	if (!a->unsure) {
		start_remove(s, a);
		fail_job(s, id, code, msg);
		return;
	}
	job_init(&j);
	if (store_job_finish(s->st, id, JOB_FAILED, code, msg, NULL, 0, &j) ==
	    STORE_ERROR)
		log_store(s, "fail", id);
	job_cleanup(&j);
	retry_later(a, a->busy + a->attempts);
}

/* End job id failed and give its slot back (nothing runs at the provider). */
static void
fail_job(struct sched *s, const char *id, const char *code, const char *msg)
{
	struct job j;

	job_init(&j);
	enum store_rc rc =
	    store_job_finish(s->st, id, JOB_FAILED, code, msg, NULL, 1, &j);
	if (rc == STORE_CONFLICT)
		store_slot_release(s->st, id);
	else if (rc != STORE_OK)
		log_store(s, "fail", id);
	job_cleanup(&j);
}

/* ---- the rules' entry points --------------------------------------- */

/* ---- recovery ------------------------------------------------------ */

/*
 * A job left starting by a stop may or may not have reached the provider
 * before it: its first submit may have created a task there. Sending it
 * again at once could run one task more than there are slots. So the rule:
 * such a job keeps its slot and waits while the account runs more tasks
 * than fila knows of (its running jobs and the submits in flight), and is
 * sent again once the provider's count leaves room for it. If the first
 * task does run, its callback (this job's own webhook token) ends the job
 * as usual; if the provider never makes room, run_timeout ends it
 * refunded. Either way it is charged once: the charge belongs to the job.
 */

static void ask_tasks(struct sched *s);

static void
recover_later(struct sched *s)
{
	struct timeval tv = {RECOVER_MS / 1000, (RECOVER_MS % 1000) * 1000};
	evtimer_add(s->recover_ev, &tv);
}

/* Forget recovered jobs that are no longer starting (a callback, a
 * cancel or the watchdog ended them). */
static void
recover_prune(struct sched *s)
{
	size_t k = 0;

	for (size_t i = 0; i < s->nrecovering; i++) {
		struct job j;
		job_init(&j);
		if (store_job_get(s->st, s->recovering[i], NULL, &j) ==
		        STORE_OK &&
		    j.status == JOB_STARTING)
			s->recovering[k++] = s->recovering[i];
		else
			free(s->recovering[i]);
		job_cleanup(&j);
	}
	s->nrecovering = k;
}

/* Send the first n recovered jobs again. */
static void
recover_send(struct sched *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct job j;
		job_init(&j);
		if (store_job_get(s->st, s->recovering[i], NULL, &j) ==
		    STORE_OK)
			start_job(s, &j);
		job_cleanup(&j);
		free(s->recovering[i]);
	}
	memmove(s->recovering, s->recovering + n,
	    (s->nrecovering - n) * sizeof(*s->recovering));
	s->nrecovering -= n;
}

static void
on_tasks(void *arg, const struct provider_result *res)
{
	struct sched *s = arg;
	long known, unknown;

	recover_prune(s);
	if (res->rc == PROVIDER_OK && (known = known_tasks(s)) >= 0) {
		unknown = res->count > known ? res->count - known : 0;
		if ((size_t)unknown < s->nrecovering)
			recover_send(s, s->nrecovering - (size_t)unknown);
	}
	if (s->nrecovering)
		recover_later(s);
}

static void
ask_tasks(struct sched *s)
{
	if (provider_tasks(s->prov, on_tasks, s) != 0)
		recover_later(s);
}

static void
on_recover(evutil_socket_t fd, short what, void *arg)
{
	ask_tasks(arg);
}

void
sched_recover(struct sched *s)
{
	struct job_list l = {0};

	/* Slots still held by ended jobs: their provider's answer was lost
	 * with the stop. Ask again; the answer frees them. */
	if (store_jobs_holding_ended(s->st, &l) == STORE_OK)
		for (size_t i = 0; i < l.n; i++)
			cancel_task(s, l.v[i].id, l.v[i].provider_task_id);
	job_list_cleanup(&l);
	if (store_jobs_in(s->st, JOB_STARTING, &l) == STORE_OK && l.n) {
		s->recovering = xcalloc(l.n, sizeof(*s->recovering));
		for (size_t i = 0; i < l.n; i++)
			s->recovering[s->nrecovering++] = xstrdup(l.v[i].id);
		ask_tasks(s);
	}
	job_list_cleanup(&l);
	sched_pump(s);
}

enum store_rc
sched_submit(struct sched *s, const struct job_new *in, struct job *out,
    int64_t *balance)
{
	enum store_rc rc = store_job_submit(s->st, in, out, balance);

	if (rc != STORE_OK)
		return rc;
	sched_pump(s);
	/* Show the job as it is now: it may have started at once. */
	struct job now;
	job_init(&now);
	if (store_job_get(s->st, in->id, NULL, &now) == STORE_OK) {
		job_cleanup(out);
		*out = now;
	}
	return STORE_OK;
}

/*
 * End an active job (cancelled, or failed by the watchdog). A queued job,
 * or a starting one with nothing at the provider, gives its slot back at
 * once; otherwise the slot is held until the provider let go of the task.
 */
static enum store_rc
end_active(struct sched *s, const char *id, const char *user_id,
    enum job_status to, const char *code, const char *msg, struct job *out)
{
	enum store_rc rc = store_job_get(s->st, id, user_id, out);
	struct start *a;
	int release;

	if (rc != STORE_OK)
		return rc;
	if (job_status_terminal(out->status))
		return STORE_CONFLICT;
	a = start_find(s, id);
	release = out->status == JOB_QUEUED ||
	          (out->status == JOB_STARTING &&
	              (a == NULL || (!a->in_flight && !a->unsure)));
	char *task = xstrdup_or_null(out->provider_task_id);
	enum job_status was = out->status;
	job_cleanup(out);
	rc = store_job_finish(s->st, id, to, code, msg, NULL, release, out);
	if (rc == STORE_OK) {
		/* An unsure start stays: its check frees the slot. */
		if (a && !a->in_flight && !a->checking && !a->unsure)
			start_remove(s, a);
		if (was == JOB_RUNNING)
			cancel_task(s, id, task);
		sched_pump(s);
	}
	free(task);
	return rc;
}

enum store_rc
sched_cancel(struct sched *s, const char *id, const char *user_id,
    const char *code, struct job *out)
{
	const char *msg =
	    strcmp(code, JOB_ERR_ADMIN) == 0 ? "cancelled by an administrator"
	    : strcmp(code, JOB_ERR_SESSION) == 0 ? "the session was left"
	                                         : "cancelled by the user";

	return end_active(s, id, user_id, JOB_CANCELLED, code, msg, out);
}

enum store_rc
sched_expire(struct sched *s, const char *id, const char *msg)
{
	struct job j;

	job_init(&j);
	enum store_rc rc =
	    end_active(s, id, NULL, JOB_FAILED, JOB_ERR_TIMEOUT, msg, &j);
	job_cleanup(&j);
	return rc;
}

void
sched_outcome(
    struct sched *s, const struct job *j, const struct provider_outcome *o)
{
	struct job done;

	if (o->state != TASK_COMPLETED && o->state != TASK_FAILED)
		return;
	job_init(&done);
	if (j->status == JOB_STARTING) {
		/* The callback overtook the submit's answer. */
		store_job_running(s->st, j->id, o->task_id, &done);
		job_cleanup(&done);
	}
	/* A submit still out may yet create a task: its answer frees the
	 * slot (cancelling that task) instead. */
	struct start *a = start_find(s, j->id);
	int release = a == NULL || !a->in_flight;
	if (o->state == TASK_COMPLETED)
		store_job_finish(s->st, j->id, JOB_COMPLETED, NULL, NULL,
		    o->outputs, release, &done);
	else
		store_job_finish(s->st, j->id, JOB_FAILED, JOB_ERR_PROVIDER,
		    o->message ? o->message : "the provider failed the task",
		    NULL, release, &done);
	job_cleanup(&done);
	sched_pump(s);
}

static const char *
state_name(enum provider_state s)
{
	switch (s) {
	case TASK_COMPLETED:
		return "completed";
	case TASK_FAILED:
		return "failed";
	case TASK_RUNNING:
		return "running";
	default:
		return "unknown";
	}
}

enum store_rc
sched_webhook(struct sched *s, const char *token, const char *body, size_t len,
    char *msg, size_t msglen)
{
	struct provider_outcome o = {0};
	struct job j;
	enum store_rc rc;
	int applied = 0;

	job_init(&j);
	rc = store_job_by_token(s->st, token, &j);
	if (rc != STORE_OK)
		goto out;
	if (provider_parse_callback(s->prov, body, len, &o, msg, msglen)) {
		rc = STORE_CONFLICT;
		goto out;
	}
	if (j.provider_task_id && o.task_id &&
	    strcmp(j.provider_task_id, o.task_id) != 0) {
		fprintf(stderr, "fila: callback for %s names task %s, not %s\n",
		    j.id, o.task_id, j.provider_task_id);
	} else if (!job_status_terminal(j.status)) {
		/* A terminal job was applied once already: nothing changes. */
		applied = o.state == TASK_COMPLETED || o.state == TASK_FAILED;
		sched_outcome(s, &j, &o);
	}
	if (store_callback_add(s->st, j.id, o.task_id, state_name(o.state),
	        applied) != STORE_OK)
		log_store(s, "callback", j.id);
out:
	provider_outcome_cleanup(&o);
	job_cleanup(&j);
	return rc;
}
