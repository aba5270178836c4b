/*
 * sched.c — the rules of docs/api.md in motion.
 *
 * The store decides who may start (a job starts only by taking a slot row)
 * and writes every change with its refund and its event; sched only decides
 * when to ask, and carries jobs to and from the provider.
 *
 * Two ideas to read it by:
 * - A job being started has a start record while sched carries it to the
 *   provider (enum start_phase says where it is); capacity refusals keep
 *   the job starting, in its slot, and retry with backoff.
 * - A slot is given back only when the provider has let go of the task:
 *   after the submit answered (and, for a job cancelled meanwhile, after the
 *   task was cancelled) or after the cancel of a running task answered.
 * - Slots belong to accounts (pool.c: a provider each). A job talks to the
 *   account of its slot. An account that cannot run anything goes down;
 *   its starting job moves to a free slot of another account, or waits
 *   parked in its own, ahead of the queue, until one frees or its account
 *   is back. The store promotes only onto accounts that are up.
 */
#include "sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "list.h"
#include "outputs.h"
#include "tools.h"
#include "uploads.h"
#include "util.h"

#define RETRY_BASE_MS 1000
#define RETRY_MAX_MS 30000
#define RETRY_TRANSPORT_MAX 8
#define RECOVER_MS 2000
#define CANCEL_TRIES 4
#define CANCEL_RETRY_MS 1000
/* Admission: the runs a median is taken of, and how old they may be. */
#define RUNS_SAMPLES 50
#define RUNS_WINDOW_MS (24 * 3600 * 1000LL)
#define RUNS_READ 500         /* completed jobs of a tool read at most */
#define RUNS_REFRESH_MS 60000 /* medians read again at most this often */
#define RUNS_RETRY_MS 1000    /* … or this often while a tool has none */
#define IDEM_LOOKBACK 20      /* a user's newest jobs an admission checks */

/*
 * Where a start is. Only START_SUBMITTING has a call at the provider;
 * START_PENDING and START_IDLE know nothing can be running there for the
 * job.
 */
enum start_phase {
	START_PENDING,    /* promoted: its submit waits for the promotion to
	                   * be committed (a task must never run for a job
	                   * a crash would put back in the queue) */
	START_IDLE,       /* nothing at the provider: a (re)submit is due */
	START_SUBMITTING, /* a submit is in flight */
	START_UNSURE,     /* the last submit failed in transport and may have
	                   * made a task: the account's task count decides */
	START_CHECKING,   /* that count is being asked */
	START_PARKED,     /* nothing at the provider, its account is down:
	                   * waits to move to another account's free slot,
	                   * ahead of the queue, or for its own to be back */
};

/*
 * A start record. sched owns every record, on its starts list, from the
 * job's promotion until sched is sure what the provider has of the job;
 * start_done() alone frees one. A function that may call it says so, and
 * its caller does not touch the record after.
 */
struct start {
	struct sched *s;
	struct list link; /* in sched.starts */
	char *job_id;
	size_t account; /* of its last submit (pool_index) */
	enum start_phase phase;
	int attempts; /* transport failures so far */
	int busy;     /* capacity refusals so far */
	struct event *retry;
};

/* A provider call whose answer frees a slot; freed by release_done(). */
struct release {
	struct sched *s;
	struct list link; /* in sched.releases */
	char *job_id;
	char *task_id;
	size_t account;
	int tries;
	struct event *retry;
};

/* A job found starting at start-up (or taken over), not yet sent again. */
struct recovering {
	char *job_id;
	size_t account;
};

/* The question of an account's task count for recovery: one at a time. */
struct ask {
	struct sched *s;
	size_t account;
	int asking;
};

/* The median run of a tool's variant (variant NULL: of all its runs). */
struct run_time {
	char *tool;
	char *variant;
	double run_s;
};

struct sched {
	struct event_base *base;
	const struct config *cfg;
	struct store *st;
	struct pool *pool;
	struct metrics *m;
	struct list starts;
	struct list releases;
	struct list copies; /* outputs being kept (struct copy) */
	struct recovering *recovering;
	size_t nrecovering;
	struct ask *asks; /* one per account */
	struct event *recover_ev;
	int unparking; /* unpark() is on the stack */
	/* admission: recent run times, read now and then */
	struct run_time *runs;
	size_t nruns;
	int64_t runs_at;
	struct outputs *out; /* outputs.store: completed jobs' copies */
};

/* A copy of a job's outputs on its way: on sched.copies from
 * keep_outputs() until copied() or copy_drop() frees it. */
struct copy {
	struct sched *s;
	struct list link;
	char *job_id, *user_id;
};

static void
copy_free(struct copy *c)
{
	list_remove(&c->link);
	free(c->job_id);
	free(c->user_id);
	free(c);
}

/* The job ended otherwise: its copy is stopped, its record freed. */
static void
copy_drop(struct sched *s, const char *job_id)
{
	struct list *it, *next;

	outputs_cancel(s->out, job_id);
	list_each_safe(it, next, &s->copies)
	{
		struct copy *c = list_entry(it, struct copy, link);
		if (strcmp(c->job_id, job_id) == 0)
			copy_free(c);
	}
}

static void submit(struct start *a);
static int still_starting(struct sched *s, const char *id);
static void on_submitted(void *arg, const struct provider_result *res);
static void on_recover(evutil_socket_t fd, short what, void *arg);

static void
log_store(struct sched *s, const char *what, const char *id)
{
	fprintf(stderr, "fila: %s %s: %s\n", what, id, store_error(s->st));
}

/* The number of account name in the pool (pool_index). */
static size_t
account_of(struct sched *s, const char *name)
{
	return pool_index(s->pool, name);
}

static struct provider *
provider_of(struct sched *s, size_t account)
{
	return pool_provider(s->pool, account);
}

/* Free job id's slot; a store failure is logged (the slot stays held and
 * recovery at the next start asks again). */
static void
release_slot(struct sched *s, const char *id)
{
	if (store_slot_release(s->st, id) != STORE_OK)
		log_store(s, "release", id);
}

/* End job id failed and give its slot back (nothing runs at the provider). */
static void
fail_job(struct sched *s, const char *id, const char *code, const char *msg)
{
	struct job j;

	job_init(&j);
	enum store_rc rc =
	    store_job_finish(s->st, id, JOB_FAILED, code, msg, NULL, 1, &j);
	if (rc == STORE_CONFLICT) /* already ended: only the slot is left */
		release_slot(s, id);
	else if (rc != STORE_OK)
		log_store(s, "fail", id);
	job_cleanup(&j);
}

/* ---- start records -------------------------------------------------- */

static void on_retry(evutil_socket_t fd, short what, void *arg);

static struct start *
start_find(struct sched *s, const char *id)
{
	struct list *it;

	list_each(it, &s->starts)
	{
		struct start *a = list_entry(it, struct start, link);
		if (strcmp(a->job_id, id) == 0)
			return a;
	}
	return NULL;
}

/* The record of job j, made on its first start. */
static struct start *
start_get(struct sched *s, const struct job *j)
{
	struct start *a = start_find(s, j->id);

	if (a == NULL) {
		a = xcalloc(1, sizeof(*a));
		a->s = s;
		a->job_id = xstrdup(j->id);
		a->account = account_of(s, j->account);
		a->phase = START_IDLE;
		a->retry = evtimer_new(s->base, on_retry, a);
		list_add_tail(&s->starts, &a->link);
	}
	return a;
}

static void
start_done(struct start *a)
{
	list_remove(&a->link);
	event_free(a->retry);
	free(a->job_id);
	free(a);
}

/* Wait before the next try: doubling with the tries, capped, with jitter
 * so that many refused jobs do not come back in one burst. */
static void
retry_later(struct start *a)
{
	int64_t ms = RETRY_BASE_MS;
	struct timeval tv;

	for (int i = 1; i < a->busy + a->attempts && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	if (ms > RETRY_MAX_MS)
		ms = RETRY_MAX_MS;
	ms = ms / 2 + (int64_t)(arc4random_uniform((uint32_t)ms / 2 + 1));
	tv = timeval_ms(ms);
	evtimer_add(a->retry, &tv);
}

/* ---- the provider's answer to a cancel: the task is let go ---------- */

static void
release_done(struct release *r)
{
	list_remove(&r->link);
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
	if (r->task_id == NULL || provider_cancel(provider_of(r->s, r->account),
	                              r->task_id, on_released, r) != 0)
		on_released(r, &none);
}

static void
on_cancel_retry(evutil_socket_t fd, short what, void *arg)
{
	cancel_send(arg);
}

/*
 * The provider answered a cancel. An answer (done, or "no such task")
 * means the task let go: the slot is free. A transport error, a 5xx or
 * an account that cannot answer confirms nothing, so the cancel is sent
 * again, a bounded number of times; each try is bounded by
 * runninghub.timeout.
 */
static void
on_released(void *arg, const struct provider_result *res)
{
	struct release *r = arg;
	struct sched *s = r->s;

	if (r->task_id != NULL)
		pool_answered(s->pool, r->account, "cancel",
		    provider_result_code(res), res->message);
	if ((res->rc == PROVIDER_RETRY || res->rc == PROVIDER_BUSY ||
	        res->rc == PROVIDER_ACCOUNT) &&
	    r->tries < CANCEL_TRIES) {
		struct timeval tv = timeval_ms(CANCEL_RETRY_MS);
		if (r->retry == NULL)
			r->retry = evtimer_new(s->base, on_cancel_retry, r);
		evtimer_add(r->retry, &tv);
		return;
	}
	release_slot(s, r->job_id);
	release_done(r);
	sched_pump(s);
}

/* The job's end is committed: cancel its task. Lost with its commit,
 * the job still runs: nothing to cancel. */
static void
on_ended(void *arg, int ok)
{
	struct release *r = arg;

	if (ok)
		cancel_send(r);
	else
		release_done(r);
}

/* Cancel task_id on account at the provider once the job's end is
 * committed; the job's slot is freed once the provider answers (or then,
 * when there is no task or no way to ask). */
static void
cancel_task(
    struct sched *s, const char *job_id, const char *task_id, size_t account)
{
	struct release *r = xcalloc(1, sizeof(*r));

	r->s = s;
	r->job_id = xstrdup(job_id);
	r->task_id = xstrdup_or_null(task_id);
	r->account = account;
	list_add_tail(&s->releases, &r->link);
	store_after(s->st, on_ended, r);
}

/* ---- the task as the provider sees it ------------------------------- */

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

/* Send job j's task; 0 once the call is under way (a is then
 * submitting), else -1 with msg. */
static int
send_task(struct start *a, const struct job *j, char *msg, size_t msglen)
{
	struct sched *s = a->s;
	struct provider_task t = {0};
	size_t cap = json_object_size(j->inputs) + 1;
	struct provider_node *nodes = xcalloc(cap, sizeof(*nodes));
	struct upload *ups = xcalloc(cap, sizeof(*ups));
	char(*vals)[64] = xcalloc(cap, sizeof(*vals));
	int rc = -1;

	t.webhook_url = xasprintf("%s/v1/webhooks/runninghub/%s",
	    s->cfg->public_url, j->webhook_token);
	a->account = account_of(s, j->account);
	if (build_task(s, j, &t, nodes, ups, vals, msg, msglen) == 0) {
		a->phase = START_SUBMITTING;
		rc = provider_submit(
		    provider_of(s, a->account), &t, on_submitted, a);
		if (rc != 0) {
			a->phase = START_IDLE;
			snprintf(msg, msglen, "provider call failed");
		}
	}
	for (size_t i = 0; i < cap; i++)
		upload_cleanup(&ups[i]);
	free(nodes);
	free(ups);
	free(vals);
	free((char *)t.webhook_url);
	return rc;
}

/* ---- starting a job at the provider --------------------------------- */

/*
 * Send a's submit. Ends the record (start_done) when the job is no longer
 * starting (cancelled or given up while it waited: nothing is at the
 * provider, so its slot goes) or cannot be sent (it fails).
 */
static void
submit(struct start *a)
{
	struct sched *s = a->s;
	struct job j;
	char msg[256];

	job_init(&j);
	if (store_job_get(s->st, a->job_id, NULL, &j) != STORE_OK ||
	    j.status != JOB_STARTING) {
		release_slot(s, a->job_id);
		start_done(a);
	} else if (send_task(a, &j, msg, sizeof(msg)) != 0) {
		fail_job(s, a->job_id, JOB_ERR_REJECTED, msg);
		start_done(a);
	}
	job_cleanup(&j);
}

/* Tasks fila knows account runs: its running jobs there and the submits
 * to it under way. -1 when the store cannot tell. */
static long
known_tasks(struct sched *s, size_t account)
{
	struct job_list running = {0};
	struct list *it;
	long n = -1;

	if (store_jobs_in(s->st, JOB_RUNNING, &running) == STORE_OK) {
		n = 0;
		for (size_t i = 0; i < running.n; i++)
			n += account_of(s, running.v[i].account) == account;
		list_each(it, &s->starts)
		{
			struct start *a = list_entry(it, struct start, link);
			n += a->phase == START_SUBMITTING &&
			     a->account == account;
		}
	}
	job_list_cleanup(&running);
	return n;
}

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
	struct sched *s = a->s;
	long known;

	a->phase = START_UNSURE;
	pool_answered(s->pool, a->account, "status", provider_result_code(res),
	    res->message);
	if (waited_enough(s, a->job_id) ||
	    (res->rc == PROVIDER_OK &&
	        (known = known_tasks(s, a->account)) >= 0 &&
	        res->count <= known)) {
		a->phase = START_IDLE;
		submit(a); /* may end a */
		sched_pump(s);
	} else {
		if (res->rc != PROVIDER_OK)
			a->busy++; /* no answer yet: ask less often */
		retry_later(a);
	}
}

/* 1 when some account is up: with none, the queue waits. */
static int
any_up(struct sched *s)
{
	for (size_t i = 0; i < pool_size(s->pool); i++)
		if (pool_is_up(s->pool, i))
			return 1;
	return 0;
}

/* The move of a's job to another account is committed: send it there.
 * Lost with its commit, the job is still in its old slot: parked, the
 * next pump tries again (or sends it there, that account being up). */
static void
on_moved(void *arg, int ok)
{
	struct start *a = arg;
	struct sched *s = a->s;

	if (!ok) {
		a->phase = START_PARKED;
		return;
	}
	a->phase = START_IDLE;
	submit(a); /* may end a */
	sched_pump(s);
}

/*
 * Move a's job (starting, nothing at the provider) to a free slot of
 * another account that is up; its submit goes there once the move is
 * committed (a task must not run on an account the store does not say).
 * 1 when it moved (a is then pending), 0 when no account has room, -1
 * when the job is no longer starting or the store failed.
 */
static int
move_elsewhere(struct start *a)
{
	struct sched *s = a->s;
	struct job j;
	enum store_rc rc;

	if (!any_up(s))
		return 0;
	rc = store_job_move(s->st, a->job_id, &j);
	if (rc == STORE_OK) {
		fprintf(stderr, "fila: job %s moves from account %s to %s\n",
		    a->job_id, pool_name(s->pool, a->account), j.account);
		a->account = account_of(s, j.account);
		a->phase = START_PENDING;
		store_after(s->st, on_moved, a);
	} else if (rc == STORE_ERROR) {
		log_store(s, "move", a->job_id);
	}
	job_cleanup(&j);
	return rc == STORE_OK ? 1 : rc == STORE_NOTFOUND ? 0 : -1;
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct start *a = arg;
	struct sched *s = a->s;

	if (a->phase == START_IDLE) {
		/* Refused for capacity, or its account went down meanwhile:
		 * another account with room first. */
		int down = !pool_is_up(s->pool, a->account);
		int moved = a->busy > 0 || down ? move_elsewhere(a) : 0;
		if (moved != 1 && down && still_starting(s, a->job_id))
			a->phase = START_PARKED;
		else if (moved != 1)
			submit(a); /* may end a */
		sched_pump(s);
		return;
	}
	a->phase = START_CHECKING;
	if (provider_tasks(provider_of(s, a->account), on_verified, a) != 0) {
		a->phase = START_UNSURE;
		retry_later(a);
	}
}

/* The promotion is committed: the first submit. Lost with its commit, the
 * job is queued again: no start. */
static void
on_promoted(void *arg, int ok)
{
	struct start *a = arg;
	struct sched *s = a->s;

	a->phase = START_IDLE;
	if (!ok) {
		start_done(a);
		return;
	}
	submit(a); /* may end a */
	sched_pump(s);
}

/* A promoted job: its record, and its first submit once it is safe. */
static void
start_job(struct sched *s, const struct job *j)
{
	struct start *a = start_get(s, j);

	if (a->phase != START_IDLE)
		return;
	a->phase = START_PENDING;
	store_after(s->st, on_promoted, a);
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

static int
still_starting(struct sched *s, const char *id)
{
	struct job j;
	int starting;

	job_init(&j);
	starting = store_job_get(s->st, id, NULL, &j) == STORE_OK &&
	           j.status == JOB_STARTING;
	job_cleanup(&j);
	return starting;
}

/*
 * End a job whose submits keep failing. Its slot is freed at once, and the
 * record ended, unless the last submit is unsure: then the count check
 * (on_retry) frees it once the provider runs no task fila does not know
 * of. May end a.
 */
static void
give_up(struct start *a, const char *code, const char *msg)
{
	struct sched *s = a->s;
	struct job j;

	if (a->phase != START_UNSURE) {
		fail_job(s, a->job_id, code, msg);
		start_done(a);
		return;
	}
	job_init(&j);
	if (store_job_finish(s->st, a->job_id, JOB_FAILED, code, msg, NULL, 0,
	        &j) == STORE_ERROR)
		log_store(s, "fail", a->job_id);
	job_cleanup(&j);
	retry_later(a);
}

/* The provider refused for now (capacity, or transport: then unsure).
 * May end a. */
static void
refused(struct start *a, const struct provider_result *res)
{
	struct sched *s = a->s;
	int no_answer = provider_result_code(res) == PROVIDER_NO_ANSWER;

	/* No room, or no answer at all: tried until run_timeout. An
	 * answer that failed counts towards RETRY_TRANSPORT_MAX. */
	if (res->rc == PROVIDER_BUSY || no_answer)
		a->busy++;
	else
		a->attempts++;
	if (res->rc != PROVIDER_BUSY)
		a->phase = START_UNSURE;
	if (past_run_timeout(s, a->job_id)) {
		give_up(a, JOB_ERR_TIMEOUT,
		    no_answer
		        ? "the provider could not be reached before run_timeout"
		        : "the provider had no capacity before run_timeout");
	} else if (a->attempts >= RETRY_TRANSPORT_MAX) {
		give_up(a, JOB_ERR_PROVIDER,
		    res->message ? res->message : "the provider kept failing");
	} else if (a->phase == START_IDLE && !still_starting(s, a->job_id)) {
		release_slot(s, a->job_id); /* cancelled meanwhile */
		start_done(a);
	} else {
		retry_later(a); /* unsure and cancelled: the check frees it */
	}
}

/* 1 when job id runs task_id already: its callback came before the
 * submit's answer, and its outputs are being kept. */
static int
runs_task(struct sched *s, const char *id, const char *task_id)
{
	struct job j;
	int yes;

	job_init(&j);
	yes = store_job_get(s->st, id, NULL, &j) == STORE_OK &&
	      j.status == JOB_RUNNING && j.provider_task_id &&
	      strcmp(j.provider_task_id, task_id) == 0;
	job_cleanup(&j);
	return yes;
}

/* The provider took the task: the job runs, unless it was cancelled
 * while the submit was out (then the new task is cancelled too). */
static void
taken(struct sched *s, const char *id, const char *task_id, size_t account)
{
	struct job j;

	job_init(&j);
	enum store_rc rc = store_job_running(s->st, id, task_id, &j);
	if (rc == STORE_CONFLICT && !runs_task(s, id, task_id))
		cancel_task(s, id, task_id, account);
	else if (rc != STORE_OK && rc != STORE_CONFLICT)
		log_store(s, "running", id);
	else if (j.started_at)
		metrics_observe(s->m, HIST_HANDOFF,
		    (double)(now_ms() - j.started_at) / 1000.0);
	job_cleanup(&j);
}

/* The store promotes and moves onto the accounts up only. With none up
 * the list is left as it was: nothing promotes or moves then. */
static void
accounts_up(struct sched *s)
{
	size_t n = pool_size(s->pool);
	const char **names = xcalloc(n, sizeof(*names));
	size_t k = pool_up_names(s->pool, names);

	if (k == n)
		store_accounts_up(s->st, NULL, 0);
	else if (k > 0)
		store_accounts_up(s->st, names, k);
	free(names);
}

/*
 * a's account answered that it cannot run anything: it goes down, and
 * the job, which has nothing at the provider, is parked: the pump that
 * follows moves it to another account's free slot if there is one, ahead
 * of the queue. It keeps its charge: it is the same job. May end a.
 */
static void
account_refused(struct start *a, const struct provider_result *res)
{
	struct sched *s = a->s;

	if (pool_down(
	        s->pool, a->account, provider_result_code(res), res->message))
		accounts_up(s);
	if (!still_starting(s, a->job_id)) {
		release_slot(s, a->job_id); /* cancelled meanwhile */
		start_done(a);
		return;
	}
	a->phase = START_PARKED;
}

static void
on_submitted(void *arg, const struct provider_result *res)
{
	struct start *a = arg;
	struct sched *s = a->s;

	a->phase = START_IDLE;
	pool_answered(s->pool, a->account, "submit", provider_result_code(res),
	    res->message);
	switch (res->rc) {
	case PROVIDER_OK:
		taken(s, a->job_id, res->task_id, a->account);
		start_done(a);
		break;
	case PROVIDER_BUSY:
	case PROVIDER_RETRY:
		refused(a, res);
		break;
	case PROVIDER_ACCOUNT:
		account_refused(a, res);
		break;
	case PROVIDER_REJECTED:
		fail_job(s, a->job_id, JOB_ERR_REJECTED,
		    res->message ? res->message : "rejected by the provider");
		start_done(a);
		break;
	}
	sched_pump(s);
}

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

static void
recover_later(struct sched *s)
{
	struct timeval tv = timeval_ms(RECOVER_MS);
	evtimer_add(s->recover_ev, &tv);
}

/* Forget recovered jobs that are no longer starting (a callback, a
 * cancel or the watchdog ended them). */
static void
recover_prune(struct sched *s)
{
	size_t k = 0;

	for (size_t i = 0; i < s->nrecovering; i++) {
		if (still_starting(s, s->recovering[i].job_id))
			s->recovering[k++] = s->recovering[i];
		else
			free(s->recovering[i].job_id);
	}
	s->nrecovering = k;
}

/* How many recovered jobs wait on account. */
static size_t
recovering_on(struct sched *s, size_t account)
{
	size_t n = 0;

	for (size_t i = 0; i < s->nrecovering; i++)
		n += s->recovering[i].account == account;
	return n;
}

/* Send the first (oldest) n recovered jobs of account again. */
static void
recover_send(struct sched *s, size_t account, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < s->nrecovering; i++) {
		struct recovering *r = &s->recovering[i];
		struct job j;
		if (r->account != account || n == 0) {
			s->recovering[k++] = *r;
			continue;
		}
		n--;
		job_init(&j);
		if (store_job_get(s->st, r->job_id, NULL, &j) == STORE_OK)
			start_job(s, &j);
		job_cleanup(&j);
		free(r->job_id);
	}
	s->nrecovering = k;
}

/* The count of one account's tasks: as many of its recovered jobs may
 * have a task there as it runs tasks fila does not know of. */
static void
on_tasks(void *arg, const struct provider_result *res)
{
	struct ask *q = arg;
	struct sched *s = q->s;
	long known, unknown;
	size_t here;

	q->asking = 0;
	pool_answered(s->pool, q->account, "status", provider_result_code(res),
	    res->message);
	recover_prune(s);
	here = recovering_on(s, q->account);
	if (res->rc == PROVIDER_OK &&
	    (known = known_tasks(s, q->account)) >= 0) {
		unknown = res->count > known ? res->count - known : 0;
		if ((size_t)unknown < here)
			recover_send(s, q->account, here - (size_t)unknown);
	}
	if (s->nrecovering)
		recover_later(s);
	sched_pump(s);
}

/* One question per account at a time: its answer serves every job
 * recovering on it. */
static void
ask_tasks(struct sched *s)
{
	for (size_t i = 0; i < pool_size(s->pool); i++) {
		struct ask *q = &s->asks[i];
		if (q->asking || recovering_on(s, i) == 0)
			continue;
		q->asking = 1;
		if (provider_tasks(provider_of(s, i), on_tasks, q) != 0) {
			q->asking = 0;
			recover_later(s);
		}
	}
}

static void
on_recover(evutil_socket_t fd, short what, void *arg)
{
	ask_tasks(arg);
}

/*
 * End an active job (cancelled, or failed by the watchdog). A queued job,
 * or a starting one with nothing at the provider, gives its slot back at
 * once; otherwise the slot is held until the provider let go of the task.
 */
static enum sched_rc
end_active(struct sched *s, const char *id, const char *user_id,
    enum job_status to, const char *code, const char *msg, struct job *out)
{
	struct job was;
	struct start *a = start_find(s, id);
	enum store_rc rc;
	int release;

	job_init(&was);
	rc = store_job_get(s->st, id, user_id, &was);
	if (rc == STORE_OK && job_status_terminal(was.status)) {
		job_cleanup(out);
		*out = was;
		return SCHED_FINISHED;
	}
	if (rc != STORE_OK) {
		job_cleanup(&was);
		return rc == STORE_NOTFOUND ? SCHED_NOTFOUND
		                            : SCHED_UNAVAILABLE;
	}
	release =
	    was.status == JOB_QUEUED ||
	    (was.status == JOB_STARTING &&
	        (a == NULL || a->phase == START_IDLE ||
	            a->phase == START_PENDING || a->phase == START_PARKED));
	rc = store_job_finish(s->st, id, to, code, msg, NULL, release, out);
	if (rc == STORE_OK && s->out)
		copy_drop(s, id); /* a copy on its way is not wanted */
	if (rc == STORE_OK) {
		/* A start with a call out or an unsure task stays: the
		 * answer, or the count check, frees its slot. A pending one
		 * stays for its commit, then finds the job ended. */
		if (a && (a->phase == START_IDLE || a->phase == START_PARKED))
			start_done(a);
		if (was.status == JOB_RUNNING)
			cancel_task(s, id, was.provider_task_id,
			    account_of(s, was.account));
		sched_pump(s);
	}
	job_cleanup(&was);
	if (rc == STORE_CONFLICT) /* it ended meanwhile: out is as it is */
		return SCHED_FINISHED;
	return rc == STORE_OK ? SCHED_OK : SCHED_UNAVAILABLE;
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

/* ---- the rules' entry points (sched.h) ----------------------------- */

/* An account came back up, or a status answer took one down. */
static void
on_pool_change(void *arg)
{
	struct sched *s = arg;

	accounts_up(s);
	sched_pump(s);
}

struct sched *
sched_new_pool(struct event_base *base, const struct config *cfg,
    struct store *st, struct pool *pool, struct metrics *m)
{
	struct sched *s = xcalloc(1, sizeof(*s));

	s->m = m;
	s->base = base;
	s->cfg = cfg;
	s->st = st;
	s->pool = pool;
	list_init(&s->starts);
	list_init(&s->releases);
	list_init(&s->copies);
	s->recover_ev = evtimer_new(base, on_recover, s);
	s->asks = xcalloc(pool_size(pool), sizeof(*s->asks));
	for (size_t i = 0; i < pool_size(pool); i++)
		s->asks[i] = (struct ask){s, i, 0};
	pool_watch(pool, on_pool_change, s);
	return s;
}

struct sched *
sched_new(struct event_base *base, const struct config *cfg, struct store *st,
    struct provider *p, struct metrics *m)
{
	struct pool *pool;
	char err[512];

	if (p != NULL)
		pool = pool_new_shared(base, cfg, m, p);
	else if ((pool = pool_new(
	              base, cfg, m, NULL, NULL, err, sizeof(err))) == NULL)
		fprintf(stderr, "fila: %s\n", err);
	return pool ? sched_new_pool(base, cfg, st, pool, m) : NULL;
}

static void
runs_clear(struct sched *s)
{
	for (size_t i = 0; i < s->nruns; i++) {
		free(s->runs[i].tool);
		free(s->runs[i].variant);
	}
	free(s->runs);
	s->runs = NULL;
	s->nruns = 0;
}

void
sched_free(struct sched *s)
{
	if (s == NULL)
		return;
	while (!list_empty(&s->starts))
		start_done(list_entry(s->starts.next, struct start, link));
	while (!list_empty(&s->releases))
		release_done(
		    list_entry(s->releases.next, struct release, link));
	/* Their copies were dropped with the outputs, done never run. */
	while (!list_empty(&s->copies))
		copy_free(list_entry(s->copies.next, struct copy, link));
	for (size_t i = 0; i < s->nrecovering; i++)
		free(s->recovering[i].job_id);
	free(s->recovering);
	if (s->recover_ev)
		event_free(s->recover_ev);
	/* The providers go with the pool: their calls' callbacks, which
	 * name records freed above, never run. */
	pool_free(s->pool);
	free(s->asks);
	runs_clear(s);
	free(s);
}

struct provider *
sched_provider(struct sched *s, const char *account)
{
	return provider_of(s, account_of(s, account));
}

void
sched_polled(
    struct sched *s, const char *account, long code, const char *message)
{
	pool_answered(s->pool, account_of(s, account), "poll", code, message);
}

int
sched_reachable(const struct sched *s)
{
	return pool_reachable(s->pool);
}

json_t *
sched_accounts(struct sched *s)
{
	json_t *used = NULL, *out = NULL;

	if (store_slots_by_account(s->st, &used) == STORE_OK)
		out = pool_to_json(s->pool, used);
	json_decref(used);
	return out;
}

/*
 * Carry what was taken over (at start: this process's own name's, left by
 * a stop; later: a lapsed process's). Ended jobs still holding slots lost
 * their provider's answer: ask again, the answer frees them. Starting jobs
 * are recovered as above. Running jobs need nothing here: the watchdog
 * polls the jobs this process carries.
 */
static void
adopt(struct sched *s, struct job_list *starting, struct job_list *holding)
{
	for (size_t i = 0; i < holding->n; i++)
		cancel_task(s, holding->v[i].id, holding->v[i].provider_task_id,
		    account_of(s, holding->v[i].account));
	if (starting->n == 0)
		return;
	s->recovering = xrealloc(s->recovering,
	    (s->nrecovering + starting->n) * sizeof(*s->recovering));
	for (size_t i = 0; i < starting->n; i++)
		s->recovering[s->nrecovering++] =
		    (struct recovering){xstrdup(starting->v[i].id),
		        account_of(s, starting->v[i].account)};
	ask_tasks(s);
}

void
sched_lease(struct sched *s, int at_start)
{
	struct job_list starting = {0}, running = {0}, holding = {0};

	if (store_lease(s->st, SCHED_LEASE_MS, at_start, &starting, &running,
	        &holding) != STORE_OK)
		log_store(s, "lease", "-");
	else if (starting.n || running.n || holding.n)
		fprintf(stderr,
		    "fila: took over %zu starting, %zu running and %zu"
		    " ending jobs\n",
		    starting.n, running.n, holding.n);
	adopt(s, &starting, &holding);
	job_list_cleanup(&starting);
	job_list_cleanup(&running);
	job_list_cleanup(&holding);
	sched_pump(s);
}

void
sched_recover(struct sched *s)
{
	sched_lease(s, 1);
}

/*
 * Jobs parked on an account that is down are ahead of the queue: each goes
 * back to its own account once that is up, or moves to a free slot of
 * another, before any queued job is promoted into it.
 */
static void
unpark(struct sched *s)
{
	struct list *it;
	char **ids = NULL;
	size_t n = 0;

	/* The parked, by job id: what a submit or a move sets off (an
	 * answer at once, a pump) may end any record meanwhile. */
	list_each(it, &s->starts)
	{
		struct start *a = list_entry(it, struct start, link);
		if (a->phase == START_PARKED) {
			ids = xrealloc(ids, (n + 1) * sizeof(*ids));
			ids[n++] = xstrdup(a->job_id);
		}
	}
	s->unparking = 1;
	for (size_t i = 0; i < n; i++) {
		struct start *a = start_find(s, ids[i]);
		int moved;
		if (a == NULL || a->phase != START_PARKED)
			continue;
		if (pool_is_up(s->pool, a->account)) {
			a->phase = START_IDLE;
			submit(a); /* may end a */
		} else if ((moved = move_elsewhere(a)) < 0 &&
		           !still_starting(s, a->job_id)) {
			release_slot(s, a->job_id);
			start_done(a);
		} else if (moved == 0) {
			break; /* no room on any other account */
		}
	}
	s->unparking = 0;
	for (size_t i = 0; i < n; i++)
		free(ids[i]);
	free(ids);
}

void
sched_pump(struct sched *s)
{
	enum store_rc rc;

	if (!s->unparking)
		unpark(s);
	if (!any_up(s))
		return; /* every account is down: the queue waits */
	do {
		struct job j;
		job_init(&j);
		rc = store_promote(s->st, &j);
		if (rc == STORE_OK)
			start_job(s, &j);
		job_cleanup(&j);
	} while (rc == STORE_OK);
	if (rc == STORE_ERROR)
		log_store(s, "promote", "-");
}

enum sched_rc
sched_submit(struct sched *s, const struct job_new *in, struct job *out,
    int64_t *balance)
{
	int64_t was;

	switch (store_job_submit(s->st, in, out, balance)) {
	case STORE_OK:
		break;
	case STORE_EXISTS:
		return SCHED_EXISTS;
	case STORE_ACTIVE:
		return SCHED_ACTIVE;
	case STORE_CREDITS:
		return SCHED_CREDITS;
	default:
		return SCHED_UNAVAILABLE;
	}
	sched_pump(s);
	/* Show the job as it is now: moved up as the pump started the jobs
	 * ahead of it, or, out of the queue, started (and more) at once. */
	was = out->position;
	out->position = store_queue_place(s->st, out->seq);
	if (out->position != was)
		job_changed(out);
	if (out->position == 0) {
		struct job now;
		job_init(&now);
		if (store_job_get(s->st, in->id, NULL, &now) == STORE_OK) {
			job_cleanup(out);
			*out = now;
		}
	}
	return SCHED_OK;
}

enum sched_rc
sched_cancel(struct sched *s, const char *id, const char *user_id,
    const char *code, struct job *out)
{
	const char *msg =
	    strcmp(code, JOB_ERR_ADMIN) == 0 ? "cancelled by an administrator"
	    : strcmp(code, JOB_ERR_SESSION) == 0 ? "the session was left"
	                                         : "cancelled by the user";

	return end_active(s, id, user_id, JOB_CANCELLED, code, msg, out);
}

enum sched_rc
sched_leave(struct sched *s, const char *user_id, const char *session_id)
{
	struct job_filter f = {.user_id = user_id, .status = JOB_QUEUED};
	struct job_list l = {0};
	enum sched_rc rc = SCHED_OK;

	if (store_job_list(s->st, &f, &l) != STORE_OK)
		rc = SCHED_UNAVAILABLE;
	/* Oldest first, as they were submitted. */
	for (size_t i = l.n; rc == SCHED_OK && i-- > 0;) {
		const struct job *q = &l.v[i];
		struct job j;
		if (q->session_id == NULL ||
		    strcmp(q->session_id, session_id) != 0)
			continue;
		job_init(&j);
		if (sched_cancel(s, q->id, user_id, JOB_ERR_SESSION, &j) ==
		    SCHED_UNAVAILABLE)
			rc = SCHED_UNAVAILABLE;
		job_cleanup(&j);
	}
	job_list_cleanup(&l);
	return rc;
}

enum sched_rc
sched_expire(struct sched *s, const char *id, const char *msg)
{
	struct job j;

	job_init(&j);
	enum sched_rc rc =
	    end_active(s, id, NULL, JOB_FAILED, JOB_ERR_TIMEOUT, msg, &j);
	job_cleanup(&j);
	return rc;
}

/* 1 when every output's URL is http or https: anything else (javascript:,
 * data:, file:) never reaches a page or a download. */
static int
urls_ok(const json_t *outputs)
{
	size_t i;
	json_t *e;

	json_array_foreach(outputs, i, e)
	{
		const char *u = json_string_value(json_object_get(e, "url"));
		if (u == NULL || (strncasecmp(u, "http://", 7) != 0 &&
		                     strncasecmp(u, "https://", 8) != 0))
			return 0;
	}
	return 1;
}

/* The slot of job id goes back with its end, unless a submit is still out
 * (its answer frees the slot, cancelling what it made). */
static int
release_at_end(struct sched *s, const char *id)
{
	struct start *a = start_find(s, id);

	return a == NULL || a->phase != START_SUBMITTING;
}

/* A completed job's outputs on their way to fila's storage. */
/* The outputs as the job shows them: each with its URL (signed now; the
 * API signs again at each read) and its id. */
static json_t *
outputs_shown(struct sched *s, const json_t *stored)
{
	json_t *v = json_array(), *e;
	int64_t now = now_ms() / 1000;
	size_t i;

	json_array_foreach(stored, i, e)
	{
		const char *id = json_string_value(json_object_get(e, "id"));
		char *url = outputs_url(s->out, id, now);
		json_array_append_new(
		    v, json_pack("{s:s, s:O, s:s}", "url", url, "type",
		           json_object_get(e, "type"), "id", id));
		free(url);
	}
	return v;
}

/* The copy is done: the job completes with fila's outputs, or fails (its
 * credits refunded) when they could not be kept. */
static void
copied(void *arg, int rc, json_t *stored, const char *errmsg)
{
	struct copy *c = arg;
	struct sched *s = c->s;
	int release = release_at_end(s, c->job_id);
	struct job done;
	enum store_rc r;

	job_init(&done);
	if (rc == 0) {
		/* Both or neither; when another process ended the job
		 * meanwhile, nothing of this copy is kept. */
		json_t *shown = outputs_shown(s, stored);
		r = store_job_complete_kept(s->st, c->job_id, c->user_id, shown,
		    stored, release, &done);
		if (r != STORE_OK)
			outputs_discard(s->out, stored);
		json_decref(shown);
	} else {
		r = store_job_finish(s->st, c->job_id, JOB_FAILED,
		    JOB_ERR_PROVIDER,
		    errmsg ? errmsg : "the outputs could not be kept", NULL,
		    release, &done);
	}
	if (r == STORE_ERROR)
		log_store(s, "outputs", c->job_id);
	job_cleanup(&done);
	copy_free(c);
	sched_pump(s);
}

/* Keep j's outputs (outputs.store): the job completes when they are. 0,
 * or -1 when a copy of them is on its way already. */
static int
keep_outputs(struct sched *s, const struct job *j, const json_t *outputs)
{
	struct copy *c = xcalloc(1, sizeof(*c));

	c->s = s;
	c->job_id = xstrdup(j->id);
	c->user_id = xstrdup(j->user_id);
	list_add_tail(&s->copies, &c->link);
	if (outputs_copy(s->out, j->id, outputs,
	        now_ms() + s->cfg->rh_timeout * 4000, copied, c) == 0)
		return 0;
	copy_free(c);
	return -1;
}

void
sched_outcome(
    struct sched *s, const struct job *j, const struct provider_outcome *o)
{
	struct job done;
	int completed = o->state == TASK_COMPLETED;
	const char *why = NULL;

	if (o->state != TASK_COMPLETED && o->state != TASK_FAILED)
		return;
	job_init(&done);
	/* The callback overtook the submit's answer: the task runs. A
	 * conflict means the job moved on meanwhile; the finish says how. */
	if (j->status == JOB_STARTING &&
	    store_job_running(s->st, j->id, o->task_id, &done) == STORE_ERROR)
		log_store(s, "running", j->id);
	job_cleanup(&done);
	if (completed && !urls_ok(o->outputs)) {
		completed = 0;
		why = "the provider gave an output whose URL is not http or"
		      " https";
	}
	/* What the task cost goes with the job while it still runs. */
	if (completed && o->cost != NULL &&
	    store_job_cost(s->st, j->id, o->cost) == STORE_ERROR)
		log_store(s, "cost", j->id);
	if (completed && s->out) {
		keep_outputs(s, j, o->outputs); /* it completes when kept */
		return;
	}
	enum store_rc rc;
	if (completed)
		rc = store_job_finish(s->st, j->id, JOB_COMPLETED, NULL, NULL,
		    o->outputs, release_at_end(s, j->id), &done);
	else
		rc =
		    store_job_finish(s->st, j->id, JOB_FAILED, JOB_ERR_PROVIDER,
		        why          ? why
		        : o->message ? o->message
		                     : "the provider failed the task",
		        NULL, release_at_end(s, j->id), &done);
	/* A conflict is a job already ended: the first outcome stands. */
	if (rc == STORE_ERROR)
		log_store(s, "finish", j->id);
	job_cleanup(&done);
	sched_pump(s);
}

void
sched_outputs(struct sched *s, struct outputs *out)
{
	s->out = out;
}

enum sched_rc
sched_webhook(struct sched *s, const char *token, const char *body, size_t len,
    char *msg, size_t msglen)
{
	struct provider_outcome o = {0};
	struct job j;
	enum sched_rc rc = SCHED_OK;
	int applied = 0;

	job_init(&j);
	switch (store_job_by_token(s->st, token, &j)) {
	case STORE_OK:
		break;
	case STORE_NOTFOUND:
		rc = SCHED_NOTFOUND;
		goto out;
	default:
		rc = SCHED_UNAVAILABLE;
		goto out;
	}
	if (provider_parse_callback(
	        sched_provider(s, j.account), body, len, &o, msg, msglen)) {
		rc = SCHED_MALFORMED;
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

/* ---- admission by estimated wait ------------------------------------ */

static int
same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static void
runs_add(
    struct sched *s, const char *tool, const char *variant, double *v, size_t n)
{
	if (n == 0)
		return;
	s->runs = xrealloc(s->runs, (s->nruns + 1) * sizeof(*s->runs));
	s->runs[s->nruns++] = (struct run_time){
	    xstrdup(tool), xstrdup_or_null(variant), median(v, n)};
}

/* Job j's run in seconds, when it finished at or after since; < 0 else. */
static double
run_since(const struct job *j, int64_t since)
{
	if (j->started_at == 0 || j->finished_at < since ||
	    j->finished_at < j->started_at)
		return -1;
	return (double)(j->finished_at - j->started_at) / 1000.0;
}

/* The medians of one tool: of each variant's last RUNS_SAMPLES runs of
 * the window, and of the tool's whatever the variant. */
static void
runs_of_tool(struct sched *s, const struct tool *t, int64_t since)
{
	struct job_filter f = {
	    .status = JOB_COMPLETED, .tool = t->name, .limit = RUNS_READ};
	struct job_list l = {0};
	double *v, r;
	size_t n = 0;

	if (store_job_list(s->st, &f, &l) != STORE_OK) {
		job_list_cleanup(&l);
		return;
	}
	v = xcalloc(l.n + 1, sizeof(double));
	/* l is newest first: the first samples are the last runs. */
	for (size_t k = 0; k < l.n && n < RUNS_SAMPLES; k++)
		if ((r = run_since(&l.v[k], since)) >= 0)
			v[n++] = r;
	runs_add(s, t->name, NULL, v, n);
	for (size_t i = 0; i < t->nvariants; i++) {
		n = 0;
		for (size_t k = 0; k < l.n && n < RUNS_SAMPLES; k++)
			if (same(l.v[k].variant, t->variants[i].name) &&
			    (r = run_since(&l.v[k], since)) >= 0)
				v[n++] = r;
		runs_add(s, t->name, t->variants[i].name, v, n);
	}
	free(v);
	job_list_cleanup(&l);
}

/* The median run of tool's variant (else of the tool), < 0 with none. */
static double
run_time_of(struct sched *s, const char *tool, const char *variant)
{
	double tool_s = -1;

	for (size_t i = 0; i < s->nruns; i++) {
		if (strcmp(s->runs[i].tool, tool) != 0)
			continue;
		if (variant && same(s->runs[i].variant, variant))
			return s->runs[i].run_s;
		if (s->runs[i].variant == NULL)
			tool_s = s->runs[i].run_s;
	}
	return tool_s;
}

/* Recent run times, read at most once a minute (or once a second while
 * the tool asked for has none: the first runs count at once). */
static double
recent_run(struct sched *s, const char *tool, const char *variant)
{
	int64_t now = now_ms();
	double run_s = run_time_of(s, tool, variant);

	if (s->runs_at && now - s->runs_at < RUNS_REFRESH_MS &&
	    (run_s >= 0 || now - s->runs_at < RUNS_RETRY_MS))
		return run_s;
	s->runs_at = now;
	runs_clear(s);
	for (size_t i = 0; i < s->cfg->tools.n; i++)
		runs_of_tool(s, &s->cfg->tools.v[i], now - RUNS_WINDOW_MS);
	return run_time_of(s, tool, variant);
}

/* Slots of the accounts up, and how many of them are free now: 0, or -1
 * when the store cannot tell. */
static int
free_slots(struct sched *s, int64_t *slots, int64_t *free_now)
{
	json_t *used = NULL;

	*slots = *free_now = 0;
	if (store_slots_by_account(s->st, &used) != STORE_OK)
		return -1;
	for (size_t i = 0; i < pool_size(s->pool); i++) {
		const struct account *a =
		    config_account(s->cfg, pool_name(s->pool, i));
		int64_t held = json_integer_value(
		    json_object_get(used, pool_name(s->pool, i)));
		if (a == NULL || !pool_is_up(s->pool, i))
			continue;
		*slots += a->slots;
		if (held < a->slots)
			*free_now += a->slots - held;
	}
	json_decref(used);
	if (*slots == 0) /* every account down: the configured slots */
		*slots = s->cfg->slots;
	return 0;
}

/* The user repeats an Idempotency-Key of a job of theirs: the submit will
 * answer that job, whatever the queue. */
static int
repeated_key(struct sched *s, const struct job_new *in)
{
	struct job_filter f = {
	    .user_id = in->user_id, .status = -1, .limit = IDEM_LOOKBACK};
	struct job_list l = {0};
	int found = 0;

	if (in->idem_key == NULL || store_job_list(s->st, &f, &l) != STORE_OK) {
		job_list_cleanup(&l);
		return 0;
	}
	for (size_t i = 0; i < l.n && !found; i++)
		found = same(l.v[i].idem_key, in->idem_key);
	job_list_cleanup(&l);
	return found;
}

int
sched_admit(
    struct sched *s, const struct job_new *in, int64_t *eta_s, int64_t *retry_s)
{
	int64_t ahead, slots, free_now, max = s->cfg->max_wait;
	double run_s, eta;

	*eta_s = *retry_s = 0;
	if (max <= 0 || (run_s = recent_run(s, in->tool, in->variant)) < 0 ||
	    free_slots(s, &slots, &free_now) != 0)
		return 0;
	/* As a queued job's eta_s: the rounds of slots ahead of it, each
	 * a typical run; the free slots take the first jobs at once. */
	ahead = store_queue_length(s->st);
	eta = ahead < free_now
	          ? 0
	          : (double)((ahead - free_now) / slots + 1) * run_s;
	*eta_s = (int64_t)ceil(eta);
	if (eta <= (double)max || repeated_key(s, in))
		return 0;
	*retry_s = (int64_t)ceil(eta - (double)max);
	if (*retry_s < 1)
		*retry_s = 1;
	return 1;
}
