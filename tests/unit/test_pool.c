/*
 * test_pool.c — the accounts as one pool (pool.c): names and providers,
 * down for down_for and up again by itself, each account's status kept,
 * the accounts view. A fake provider per account records its status
 * questions and answers when the test says.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>

#include "config.h"
#include "pool.h"
#include "provider.h"
#include "util.h"

static struct config cfg;
static struct event_base *base;
static struct pool *pool;
static struct metrics *m;

/* One fake per account: its pending status question. */
struct fake {
	provider_cb cb;
	void *arg;
	int asked;
	int freed;
};
static struct fake fakes[2];

static int
f_tasks(void *impl, provider_cb cb, void *arg)
{
	struct fake *f = impl;

	f->cb = cb;
	f->arg = arg;
	f->asked++;
	return 0;
}

static int
f_pending(const void *impl)
{
	return 0;
}

static void
f_free(void *impl)
{
	((struct fake *)impl)->freed++;
}

static const struct provider_ops f_ops = {
    .name = "fake",
    .tasks = f_tasks,
    .pending = f_pending,
    .free = f_free,
};

static struct provider *
make(void *arg, struct event_base *b, const struct account *a, long timeout_ms,
    char *err, size_t errlen)
{
	if (arg != NULL) {
		snprintf(err, errlen, "no provider for %s", a->name);
		return NULL;
	}
	return provider_new(&f_ops, &fakes[strcmp(a->name, "a1") == 0 ? 0 : 1]);
}

static void
load(const char *down_for)
{
	char *sets[] = {"runninghub.a1.slots=2", "runninghub.a2.slots=1",
	    "runninghub.a2.base_url=http://a2.example", (char *)down_for,
	    "runninghub.status_every=3600"};
	char err[256] = "";

	cr_assert_eq(
	    config_load(&cfg, "/nonexistent", 1, sets, 5, err, sizeof(err)), 0,
	    "%s", err);
}

static void
setup(void)
{
	memset(fakes, 0, sizeof(fakes));
	base = event_base_new();
	m = metrics_new();
	pool = NULL;
}

static void
teardown(void)
{
	pool_free(pool);
	metrics_free(m);
	event_base_free(base);
	config_cleanup(&cfg);
}

TestSuite(pool, .init = setup, .fini = teardown);

static void
spin(int ms)
{
	int64_t end = mono_ms() + ms;

	while (mono_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(2000);
	}
}

static json_t *
view(size_t i, json_t **all)
{
	json_t *used = json_pack("{s:i}", "a1", 1);

	*all = pool_to_json(pool, used);
	json_decref(used);
	return json_array_get(json_object_get(*all, "accounts"), i);
}

static void
on_change(void *arg)
{
	(*(int *)arg)++;
}

Test(pool, names_providers_and_the_first_for_old_jobs)
{
	char err[128] = "";

	load("runninghub.down_for=1");
	pool = pool_new(base, &cfg, m, make, NULL, err, sizeof(err));
	cr_assert_not_null(pool, "%s", err);
	cr_assert_eq(pool_size(pool), 2);
	cr_assert_str_eq(pool_name(pool, 1), "a2");
	cr_assert_eq(pool_index(pool, "a2"), 1);
	cr_assert_eq(pool_index(pool, NULL), 0, "a job from before accounts");
	cr_assert_eq(pool_index(pool, "gone"), 0, "an account removed since");
	cr_assert_neq(pool_provider(pool, 0), pool_provider(pool, 1));
	pool_free(pool);
	pool = NULL;
	cr_assert_eq(fakes[0].freed + fakes[1].freed, 2, "the pool frees them");
}

Test(pool, a_provider_that_cannot_be_made_is_an_error)
{
	char err[128] = "";

	load("runninghub.down_for=1");
	cr_assert_null(pool_new(base, &cfg, m, make, "fail", err, sizeof(err)));
	cr_assert_str_eq(err, "no provider for a1");
}

Test(pool, down_for_down_for_then_up_by_itself)
{
	const char *names[2];
	char err[128] = "";
	int changes = 0;
	json_t *all, *a;

	load("runninghub.down_for=1");
	pool = pool_new(base, &cfg, m, make, NULL, err, sizeof(err));
	pool_watch(pool, on_change, &changes);
	cr_assert_eq(pool_down(pool, 0, 416, "NOT_ENOUGH_WALLET"), 1);
	cr_assert_eq(pool_down(pool, 0, 802, "late answer"), 0, "already down");
	cr_assert_not(pool_is_up(pool, 0));
	cr_assert_eq(pool_up_names(pool, names), 1);
	cr_assert_str_eq(names[0], "a2");
	a = view(0, &all);
	cr_assert(json_is_false(json_object_get(a, "up")));
	cr_assert_str_eq(json_string_value(json_object_get(a, "down_reason")),
	    "416 NOT_ENOUGH_WALLET", "the first reason stays");
	cr_assert_eq(json_integer_value(json_object_get(a, "used")), 1);
	json_decref(all);

	spin(1200);
	cr_assert(pool_is_up(pool, 0));
	cr_assert_eq(changes, 1, "the watcher is told");
	cr_assert_eq(pool_up_names(pool, names), 2);
	a = view(0, &all);
	cr_assert(json_is_true(json_object_get(a, "up")));
	cr_assert_null(json_object_get(a, "down_reason"));
	json_decref(all);
}

Test(pool, each_status_is_kept_one_question_at_a_time)
{
	char err[128] = "";
	int changes = 0;
	json_t *all, *a;
	struct provider_result ok = {
	    .rc = PROVIDER_OK, .count = 3, .coins = "12.5"};
	struct provider_result retry = {.rc = PROVIDER_RETRY, .message = "x"};

	load("runninghub.down_for=60");
	pool = pool_new(base, &cfg, m, make, NULL, err, sizeof(err));
	pool_watch(pool, on_change, &changes);
	spin(20); /* asked at once */
	cr_assert_eq(fakes[0].asked, 1);
	cr_assert_eq(fakes[1].asked, 1);
	a = view(0, &all);
	cr_assert_null(json_object_get(a, "remain_coins"), "not said yet");
	cr_assert_null(json_object_get(a, "task_count"));
	json_decref(all);

	fakes[0].cb(fakes[0].arg, &ok);
	a = view(0, &all);
	cr_assert_float_eq(
	    json_number_value(json_object_get(a, "remain_coins")), 12.5, 1e-9);
	cr_assert_eq(json_integer_value(json_object_get(a, "task_count")), 3);
	cr_assert_eq(json_integer_value(json_object_get(a, "slots")), 2);
	json_decref(all);

	/* An answer that says nothing leaves the account as it was: up,
	 * nothing known. */
	fakes[1].cb(fakes[1].arg, &retry);
	a = view(1, &all);
	cr_assert_null(json_object_get(a, "remain_coins"));
	cr_assert(json_is_true(json_object_get(a, "up")));
	cr_assert_str_eq(json_string_value(json_object_get(a, "base_url")),
	    "http://a2.example");
	json_decref(all);
	cr_assert_eq(changes, 0);
	/* No second question while none is due. */
	spin(50);
	cr_assert_eq(fakes[0].asked, 1);
	cr_assert_eq(fakes[1].asked, 1);
}

Test(pool, a_status_answer_that_the_key_expired_takes_the_account_down)
{
	char err[128] = "";
	int changes = 0;
	json_t *all, *a;
	struct provider_result gone = {.rc = PROVIDER_ACCOUNT,
	    .code = 802,
	    .message = "APIKEY_UNAUTHORIZED"};

	load("runninghub.down_for=60");
	pool = pool_new(base, &cfg, m, make, NULL, err, sizeof(err));
	pool_watch(pool, on_change, &changes);
	spin(20);
	fakes[1].cb(fakes[1].arg, &gone);
	cr_assert_not(pool_is_up(pool, 1));
	cr_assert_eq(changes, 1, "the watcher is told");
	a = view(1, &all);
	cr_assert_str_eq(json_string_value(json_object_get(a, "down_reason")),
	    "802 APIKEY_UNAUTHORIZED");
	cr_assert_null(json_object_get(a, "remain_coins"));
	json_decref(all);
}

Test(pool, no_answer_is_unreachable_until_any_answer_and_never_down)
{
	char err[128] = "";
	int changes = 0;
	json_t *all, *a;
	struct provider_result none = {
	    .rc = PROVIDER_RETRY, .message = "Connection refused"};
	struct provider_result busy = {
	    .rc = PROVIDER_RETRY, .http_status = 503};

	load("runninghub.down_for=60");
	pool = pool_new(base, &cfg, m, make, NULL, err, sizeof(err));
	pool_watch(pool, on_change, &changes);
	spin(20);
	cr_assert(pool_reachable(pool));
	a = view(1, &all);
	cr_assert(json_is_true(json_object_get(a, "reachable")));
	cr_assert_null(json_object_get(a, "unreachable_reason"));
	json_decref(all);

	fakes[1].cb(fakes[1].arg, &none);
	pool_answered(
	    pool, 1, "submit", provider_result_code(&none), none.message);
	cr_assert_not(pool_reachable(pool));
	cr_assert(pool_is_up(pool, 1), "unreachable is not down");
	cr_assert_eq(changes, 0, "what runs where is unchanged");
	a = view(1, &all);
	cr_assert(json_is_false(json_object_get(a, "reachable")));
	cr_assert_str_eq(
	    json_string_value(json_object_get(a, "unreachable_reason")),
	    "Connection refused");
	json_decref(all);
	a = view(0, &all);
	cr_assert(json_is_true(json_object_get(a, "reachable")));
	json_decref(all);

	/* A 503 is an answer: the provider is there. */
	pool_answered(
	    pool, 1, "submit", provider_result_code(&busy), busy.message);
	cr_assert(pool_reachable(pool));
	a = view(1, &all);
	cr_assert(json_is_true(json_object_get(a, "reachable")));
	cr_assert_null(json_object_get(a, "unreachable_reason"));
	json_decref(all);
}

Test(pool, a_shared_provider_is_the_callers)
{
	struct provider *p = provider_new(&f_ops, &fakes[0]);

	load("runninghub.down_for=1");
	pool = pool_new_shared(base, &cfg, m, p);
	cr_assert_eq(pool_provider(pool, 0), p);
	cr_assert_eq(pool_provider(pool, 1), p);
	spin(20);
	cr_assert_eq(fakes[0].asked, 0, "first status after status_every");
	pool_free(pool);
	pool = NULL;
	cr_assert_eq(fakes[0].freed, 0);
	provider_free(p);
}
