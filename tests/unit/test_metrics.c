/*
 * test_metrics.c — the Prometheus text of GET /metrics: histograms and
 * provider counters kept in memory, job counts and slots read from a real
 * store on a temporary file. Every rendered text is also checked to be
 * valid exposition format (a sample's family is declared by # TYPE before
 * its first sample, families are contiguous, values are numbers).
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "config.h"
#include "fixtures.h"
#include "metrics.h"
#include "store.h"
#include "util.h"

static struct config cfg;
static struct metrics *m;
static struct store *st;
static char dir[64];
static char dbpath[128];
static char *text;

static void
setup(void)
{
	char err[256] = "";
	struct store_opts o;

	cr_assert_eq(
	    config_load(&cfg, "/nonexistent", 1, NULL, 0, err, sizeof(err)), 0,
	    "%s", err);
	fx_tmpdir(dir, sizeof(dir), "metrics");
	snprintf(dbpath, sizeof(dbpath), "%s/fila.db", dir);
	o = (struct store_opts){
	    .slots = cfg.slots, .per_user_active = 10, .credits_initial = 100};
	st = fx_store_open(dbpath, &o);
	m = metrics_new();
	text = NULL;
}

static void
teardown(void)
{
	free(text);
	metrics_free(m);
	store_free(st);
	config_cleanup(&cfg);
	fx_rmtree(dir);
}

TestSuite(metrics, .init = setup, .fini = teardown);

/* ---- reading the exposition text ------------------------------------ */

/* The family a sample name belongs to, given the families declared so
 * far: a histogram's _bucket, _sum and _count belong to it. */
static const char *
family_of(const char *name, char types[][2][64], int ntypes)
{
	static const char *const suffix[] = {"_bucket", "_sum", "_count"};

	for (int i = 0; i < ntypes; i++) {
		size_t n = strlen(types[i][0]);
		if (strcmp(name, types[i][0]) == 0)
			return types[i][0];
		if (strcmp(types[i][1], "histogram") != 0 ||
		    strncmp(name, types[i][0], n) != 0)
			continue;
		for (size_t k = 0; k < 3; k++)
			if (strcmp(name + n, suffix[k]) == 0)
				return types[i][0];
	}
	return NULL;
}

/* Check `{name="value",...}` at *p and move past it. */
static void
check_labels(const char **p, const char *line)
{
	const char *s = *p;

	if (*s != '{')
		return;
	s++;
	while (*s != '}') {
		cr_assert(
		    isalpha((unsigned char)*s) || *s == '_', "label: %s", line);
		while (isalnum((unsigned char)*s) || *s == '_')
			s++;
		cr_assert_eq(*s++, '=', "label: %s", line);
		cr_assert_eq(*s++, '"', "label value: %s", line);
		while (*s && *s != '"')
			s += *s == '\\' ? 2 : 1;
		cr_assert_eq(*s++, '"', "label value: %s", line);
		if (*s == ',')
			s++;
		else
			cr_assert_eq(*s, '}', "labels: %s", line);
	}
	*p = s + 1;
}

/* One sample line: its family must be declared and current. */
static void
check_sample(
    const char *line, char types[][2][64], int ntypes, const char *current)
{
	char name[64];
	const char *p = line, *fam;
	char *end;
	size_t n = 0;

	cr_assert(isalpha((unsigned char)*p) || *p == '_', "name: %s", line);
	while (isalnum((unsigned char)*p) || *p == '_' || *p == ':')
		p++;
	n = (size_t)(p - line);
	cr_assert_lt(n, sizeof(name));
	memcpy(name, line, n);
	name[n] = '\0';
	fam = family_of(name, types, ntypes);
	cr_assert_not_null(fam, "no # TYPE before %s", line);
	cr_assert_str_eq(fam, current, "%s outside its family", line);
	check_labels(&p, line);
	cr_assert_eq(*p++, ' ', "no value: %s", line);
	if (strcmp(p, "+Inf") && strcmp(p, "-Inf") && strcmp(p, "NaN")) {
		strtod(p, &end);
		cr_assert(end != p && *end == '\0', "value: %s", line);
	}
}

/* The whole text is valid exposition format; the number of samples. */
static int
check_exposition(const char *t)
{
	char types[64][2][64];
	char current[64] = "";
	int ntypes = 0, samples = 0;
	char *copy = xstrdup(t), *save = NULL, *line;

	cr_assert(t[0] != '\0' && t[strlen(t) - 1] == '\n', "no final newline");
	for (line = strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[64], type[64];
		if (sscanf(line, "# TYPE %63s %63s", name, type) == 2) {
			cr_assert(strcmp(type, "gauge") == 0 ||
			              strcmp(type, "counter") == 0 ||
			              strcmp(type, "histogram") == 0,
			    "type: %s", line);
			cr_assert_null(family_of(name, types, ntypes),
			    "%s declared twice", name);
			cr_assert_lt(ntypes, 64);
			strcpy(types[ntypes][0], name);
			strcpy(types[ntypes++][1], type);
			strcpy(current, name);
		} else if (line[0] == '#') {
			cr_assert(strncmp(line, "# HELP ", 7) == 0, "%s", line);
		} else {
			check_sample(line, types, ntypes, current);
			samples++;
		}
	}
	free(copy);
	return samples;
}

static void
render(int streams)
{
	free(text);
	text = metrics_render(m, st, &cfg, streams);
	cr_assert_not_null(text, "%s", store_error(st));
	check_exposition(text);
}

/* The value of the sample written exactly as key ("name{labels}"), or
 * NAN when there is no such sample. */
static double
sample(const char *key)
{
	size_t n = strlen(key);

	for (const char *p = text; p && *p;
	     p = strchr(p, '\n'), p = p ? p + 1 : p)
		if (strncmp(p, key, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	return NAN;
}

static void
expect_sample(const char *key, double want)
{
	double got = sample(key);

	cr_assert(!isnan(got), "no sample %s in:\n%s", key, text);
	cr_assert_float_eq(got, want, 1e-9, "%s = %g, want %g", key, got, want);
}

static int
occurrences(const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

/* ---- histograms ----------------------------------------------------- */

static const char *const les[] = {"0.001", "0.005", "0.01", "0.025", "0.05",
    "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "+Inf"};
#define NLES (sizeof(les) / sizeof(les[0]))

/* The cumulative buckets of a histogram are want[]. */
static void
expect_buckets(const char *name, const unsigned want[NLES])
{
	char key[128];

	for (size_t i = 0; i < NLES; i++) {
		snprintf(
		    key, sizeof(key), "%s_bucket{le=\"%s\"}", name, les[i]);
		expect_sample(key, want[i]);
	}
}

Test(metrics, empty_histograms_render_zeros)
{
	static const unsigned zero[NLES] = {0};

	render(0);
	expect_buckets("fila_submit_seconds", zero);
	expect_buckets("fila_handoff_seconds", zero);
	expect_sample("fila_submit_seconds_sum", 0);
	expect_sample("fila_submit_seconds_count", 0);
	expect_sample("fila_handoff_seconds_count", 0);
	cr_assert_eq(occurrences("# TYPE fila_submit_seconds histogram\n"), 1);
	cr_assert_eq(occurrences("# TYPE fila_handoff_seconds histogram\n"), 1);
}

Test(metrics, observations_land_in_cumulative_buckets)
{
	/* A value equal to a bound is in that bound's bucket (le is <=). */
	static const double v[] = {
	    0.0005, 0.001, 0.003, 0.2, 0.25, 1, 7, 30, 31, 1000};
	static const unsigned want[NLES] = {
	    2, 3, 3, 3, 3, 3, 5, 5, 6, 6, 6, 7, 8, 10};
	double sum = 0;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		metrics_observe(m, HIST_SUBMIT, v[i]);
		sum += v[i];
	}
	render(0);
	expect_buckets("fila_submit_seconds", want);
	expect_sample("fila_submit_seconds_count", 10);
	cr_assert_float_eq(sample("fila_submit_seconds_sum"), sum, 1e-6);
}

Test(metrics, histograms_are_separate)
{
	static const unsigned submit[NLES] = {
	    0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
	static const unsigned handoff[NLES] = {
	    0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2};

	metrics_observe(m, HIST_SUBMIT, 0.07);
	metrics_observe(m, HIST_HANDOFF, 2);
	metrics_observe(m, HIST_HANDOFF, 2.5);
	render(0);
	expect_buckets("fila_submit_seconds", submit);
	expect_buckets("fila_handoff_seconds", handoff);
	expect_sample("fila_submit_seconds_sum", 0.07);
	expect_sample("fila_handoff_seconds_sum", 4.5);
	expect_sample("fila_handoff_seconds_count", 2);
}

Test(metrics, null_metrics_are_a_no_op)
{
	metrics_observe(NULL, HIST_SUBMIT, 1);
	metrics_provider(NULL, NULL, "submit", 0);
	metrics_free(NULL);
}

/* ---- provider answers ----------------------------------------------- */

Test(metrics, provider_answers_by_call_and_code)
{
	render(0);
	cr_assert_eq(occurrences("fila_provider_answers_total{"), 0);
	cr_assert_eq(
	    occurrences("# TYPE fila_provider_answers_total counter\n"), 1);

	metrics_provider(m, NULL, "submit", 0);
	metrics_provider(m, NULL, "submit", 0);
	metrics_provider(m, NULL, "submit", 0);
	metrics_provider(m, NULL, "submit", 503);
	metrics_provider(m, NULL, "poll", 0);
	metrics_provider(m, NULL, "poll", 805);
	metrics_provider(m, NULL, "poll", 805);
	metrics_provider(m, NULL, "cancel", -1);
	render(0);
	expect_sample("fila_provider_answers_total{call=\"submit\",code=\"0\","
	              "account=\"default\"}",
	    3);
	expect_sample("fila_provider_answers_total{call=\"submit\",code="
	              "\"503\",account=\"default\"}",
	    1);
	expect_sample("fila_provider_answers_total{call=\"poll\",code=\"0\","
	              "account=\"default\"}",
	    1);
	expect_sample("fila_provider_answers_total{call=\"poll\",code=\"805\","
	              "account=\"default\"}",
	    2);
	expect_sample("fila_provider_answers_total{call=\"cancel\",code=\"-1\","
	              "account=\"default\"}",
	    1);
	cr_assert_eq(occurrences("fila_provider_answers_total{"), 5);
}

/* ---- the store's view ----------------------------------------------- */

static void
submit(const char *id, const char *user, const char *tool)
{
	json_t *inputs = json_object();
	struct job_new in = {.id = id,
	    .user_id = user,
	    .tool = tool,
	    .inputs = inputs,
	    .cost = 10,
	    .webhook_token = id};
	struct job j;
	int64_t balance;

	cr_assert_eq(store_job_submit(st, &in, &j, &balance), STORE_OK, "%s",
	    store_error(st));
	job_cleanup(&j);
	json_decref(inputs);
}

static void
promote(const char *want)
{
	struct job j;

	cr_assert_eq(store_promote(st, &j), STORE_OK, "%s", store_error(st));
	cr_assert_str_eq(j.id, want);
	job_cleanup(&j);
}

static void
finish(const char *id, enum job_status to)
{
	struct job j;

	cr_assert_eq(
	    store_job_finish(st, id, to, JOB_ERR_PROVIDER, "boom", NULL, 1, &j),
	    STORE_OK, "%s", store_error(st));
	job_cleanup(&j);
}

Test(metrics, empty_store)
{
	render(0);
	cr_assert_eq(occurrences("fila_jobs{"), 0);
	cr_assert_eq(occurrences("# TYPE fila_jobs gauge\n"), 1);
	expect_sample("fila_slots_total", (double)cfg.slots);
	expect_sample("fila_slots_used", 0);
	expect_sample("fila_queue_length", 0);
	expect_sample("fila_sse_streams", 0);
}

Test(metrics, jobs_by_tool_and_state_slots_and_queue)
{
	submit("j1", "alice", "upscaler");
	submit("j2", "bob", "upscaler");
	submit("j3", "carol", "veste_ai");
	submit("j4", "dave", "upscaler");
	submit("j5", "erin", "pose_changer");
	submit("j6", "frank", "upscaler");
	promote("j1");
	promote("j2");
	finish("j2", JOB_FAILED);
	finish("j6", JOB_CANCELLED);
	render(7);

	expect_sample("fila_jobs{tool=\"upscaler\",state=\"starting\"}", 1);
	expect_sample("fila_jobs{tool=\"upscaler\",state=\"failed\"}", 1);
	expect_sample("fila_jobs{tool=\"upscaler\",state=\"queued\"}", 1);
	expect_sample("fila_jobs{tool=\"upscaler\",state=\"cancelled\"}", 1);
	expect_sample("fila_jobs{tool=\"veste_ai\",state=\"queued\"}", 1);
	expect_sample("fila_jobs{tool=\"pose_changer\",state=\"queued\"}", 1);
	cr_assert_eq(occurrences("fila_jobs{"), 6, "%s", text);
	expect_sample("fila_slots_total", (double)cfg.slots);
	expect_sample("fila_slots_used", 1);
	expect_sample("fila_queue_length", 3);
	expect_sample("fila_sse_streams", 7);
}

Test(metrics, every_family_once_with_help_and_type)
{
	static const char *const fams[] = {"fila_jobs", "fila_slots_total",
	    "fila_slots_used", "fila_queue_length", "fila_submit_seconds",
	    "fila_handoff_seconds", "fila_provider_answers_total",
	    "fila_sse_streams", "fila_account_slots", "fila_account_slots_used",
	    "fila_account_up", "fila_account_remain_coins",
	    "fila_account_tasks"};
	char key[128];

	submit("j1", "alice", "upscaler");
	metrics_provider(m, NULL, "submit", 0);
	metrics_observe(m, HIST_HANDOFF, 0.3);
	render(1);
	for (size_t i = 0; i < sizeof(fams) / sizeof(fams[0]); i++) {
		snprintf(key, sizeof(key), "# HELP %s ", fams[i]);
		cr_assert_eq(occurrences(key), 1, "%s", key);
		snprintf(key, sizeof(key), "# TYPE %s ", fams[i]);
		cr_assert_eq(occurrences(key), 1, "%s", key);
	}
}

Test(metrics, the_checker_accepts_valid_text)
{
	/* The validity check itself, on a gauge and a histogram. */
	cr_assert_eq(check_exposition("# TYPE a gauge\na 1\n"), 1);
	cr_assert_eq(check_exposition("# TYPE h histogram\nh_bucket{le=\"1\"} "
	                              "1\nh_sum 0.5\nh_count 1\n"),
	    3);
}

Test(metrics, unreadable_store_renders_nothing)
{
	sqlite3 *db;

	submit("j1", "alice", "upscaler");
	cr_assert_eq(sqlite3_open(dbpath, &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_exec(db, "ALTER TABLE jobs RENAME TO gone", NULL,
	                 NULL, NULL),
	    SQLITE_OK, "%s", sqlite3_errmsg(db));
	sqlite3_close(db);
	cr_assert_null(metrics_render(m, st, &cfg, 0));
}

/* ---- accounts ------------------------------------------------------- */

/* The store and config of two accounts, a (2 slots) and b (1). */
static void
two_accounts(void)
{
	static const char *sets[] = {"runninghub.a.slots=2",
	    "runninghub.b.slots=1", "runninghub.b.base_url=http://b.example"};
	static const struct store_account pools[] = {{"a", 2}, {"b", 1}};
	char err[256] = "";
	struct store_opts o = {.slots = 3,
	    .per_user_active = 10,
	    .credits_initial = 100,
	    .accounts = pools,
	    .naccounts = 2};

	config_cleanup(&cfg);
	cr_assert_eq(config_load(&cfg, "/nonexistent", 1, (char **)sets, 3, err,
	                 sizeof(err)),
	    0, "%s", err);
	store_free(st);
	fx_rmtree(dir);
	fx_tmpdir(dir, sizeof(dir), "metrics");
	snprintf(dbpath, sizeof(dbpath), "%s/fila.db", dir);
	st = fx_store_open(dbpath, &o);
}

Test(metrics, one_default_account_without_sections)
{
	render(0);
	expect_sample(
	    "fila_account_slots{account=\"default\"}", (double)cfg.slots);
	expect_sample("fila_account_slots_used{account=\"default\"}", 0);
	expect_sample("fila_account_up{account=\"default\"}", 1);
	cr_assert_eq(
	    occurrences("fila_account_remain_coins{"), 0, "coins never said");
	cr_assert_eq(occurrences("fila_account_tasks{"), 0);
}

Test(metrics, each_account_its_slots_use_health_and_answers)
{
	two_accounts();
	submit("j1", "alice", "upscaler");
	submit("j2", "bob", "upscaler");
	promote("j1"); /* a: the most room */
	metrics_account(m, "a", &(struct account_gauges){1, 1, 1, 990, 1});
	metrics_account(m, "b", &(struct account_gauges){0, 0, 1, 0, 0});
	metrics_provider(m, "a", "submit", 0);
	metrics_provider(m, "b", "submit", 416);
	metrics_provider(m, "b", "submit", 416);
	render(0);
	expect_sample("fila_account_slots{account=\"a\"}", 2);
	expect_sample("fila_account_slots{account=\"b\"}", 1);
	expect_sample("fila_account_slots_used{account=\"a\"}", 1);
	expect_sample("fila_account_slots_used{account=\"b\"}", 0);
	expect_sample("fila_account_up{account=\"a\"}", 1);
	expect_sample("fila_account_up{account=\"b\"}", 0);
	expect_sample("fila_account_reachable{account=\"a\"}", 1);
	expect_sample("fila_account_reachable{account=\"b\"}", 0);
	expect_sample("fila_account_remain_coins{account=\"a\"}", 990);
	expect_sample("fila_account_remain_coins{account=\"b\"}", 0);
	expect_sample("fila_account_tasks{account=\"a\"}", 1);
	expect_sample("fila_provider_answers_total{call=\"submit\",code="
	              "\"0\",account=\"a\"}",
	    1);
	expect_sample("fila_provider_answers_total{call=\"submit\",code="
	              "\"416\",account=\"b\"}",
	    2);
	cr_assert_eq(occurrences("fila_account_up{"), 2);

	/* b is back: up again, its coins as last said. */
	metrics_account(m, "b", &(struct account_gauges){1, 1, 0, 0, -1});
	render(0);
	expect_sample("fila_account_up{account=\"b\"}", 1);
	expect_sample("fila_account_reachable{account=\"b\"}", 1);
	cr_assert_eq(occurrences("fila_account_remain_coins{"), 1);
	cr_assert_eq(occurrences("fila_account_tasks{"), 1);
}
