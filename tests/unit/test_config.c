/*
 * test_config.c — config_load: the built-in defaults, a file over them,
 * --set over both, and every kind of error with its exact FILE:LINE text.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tools.h"

static struct config cfg;
static char err[512];
static char path[64];

static void
cleanup(void)
{
	config_cleanup(&cfg);
	if (path[0] != '\0')
		unlink(path);
	path[0] = '\0';
}

TestSuite(config, .fini = cleanup);

/* Write text to a fresh temporary file named in path. */
static void
write_conf(const char *text)
{
	int fd;

	if (path[0] != '\0')
		unlink(path);
	strcpy(path, "/tmp/fila_test_conf_XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static int
load(const char *text, char *const *sets, size_t nsets)
{
	err[0] = '\0';
	if (text == NULL)
		return config_load(
		    &cfg, NULL, 1, sets, nsets, err, sizeof(err));
	write_conf(text);
	return config_load(&cfg, path, 0, sets, nsets, err, sizeof(err));
}

/* The file's error: its path, then ":LINE: " and the reason. */
static void
expect_error(const char *text, int line, const char *reason)
{
	char want[512];

	cr_assert_eq(load(text, NULL, 0), -1, "accepted: %s", text);
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, reason);
	cr_assert_str_eq(err, want);
	cr_assert_null(cfg.listen_host);
	cr_assert_eq(cfg.tools.n, 0);
}

static void
expect_set_error(const char *set, const char *want)
{
	char *sets[] = {(char *)set};

	cr_assert_eq(load(NULL, sets, 1), -1, "accepted: %s", set);
	cr_assert_str_eq(err, want);
}

static void
expect_node(const struct tool_variant *v, size_t i, const char *input,
    const char *node, const char *field)
{
	cr_assert_lt(i, v->nnodes);
	cr_assert_str_eq(v->nodes[i].input, input);
	cr_assert_str_eq(v->nodes[i].node_id, node);
	cr_assert_str_eq(v->nodes[i].field, field);
}

Test(config, defaults_are_api_section_8)
{
	cr_assert_eq(load(NULL, NULL, 0), 0, "%s", err);
	cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
	cr_assert_eq(cfg.listen_port, 8080);
	cr_assert_str_eq(cfg.public_url, "http://127.0.0.1:8080");
	cr_assert_eq(cfg.max_body, 1048576);
	cr_assert_str_eq(cfg.store_url, "sqlite:var/fila.db");
	cr_assert_str_eq(cfg.jwt_secret, "dev-secret-change-me");
	cr_assert_eq(cfg.slots, 3);
	cr_assert_eq(cfg.per_user_active, 1);
	cr_assert_eq(cfg.queue_timeout, 600);
	cr_assert_eq(cfg.run_timeout, 600);
	cr_assert_eq(cfg.credits_initial, 100);
	cr_assert_str_eq(cfg.uploads_dir, "var/uploads");
	cr_assert_eq(cfg.uploads_max, 31457280);
	cr_assert_str_eq(cfg.rh_base_url, "http://127.0.0.1:8090");
	cr_assert_str_eq(cfg.rh_api_key, "demo");
	cr_assert_eq(cfg.rh_poll_after, 120);
	cr_assert_eq(cfg.rh_timeout, 30);
	cr_assert_str_eq(cfg.cors_origins, "", "same origin only");
}

Test(config, builtin_tools)
{
	static const char *const upscaler_variants[] = {"pro", "standard",
	    "longe", "foto_antiga", "comida", "logo", "render3d"};
	const struct tool *t;
	const struct tool_variant *v;

	cr_assert_eq(load(NULL, NULL, 0), 0, "%s", err);
	cr_assert_eq(cfg.tools.n, 4);
	cr_assert_str_eq(cfg.tools.v[0].name, "upscaler");
	cr_assert_str_eq(cfg.tools.v[1].name, "pose_changer");
	cr_assert_str_eq(cfg.tools.v[2].name, "veste_ai");
	cr_assert_str_eq(cfg.tools.v[3].name, "video_upscaler");

	t = tools_find(&cfg.tools, "upscaler");
	cr_assert_str_eq(t->title, "Upscaler");
	cr_assert_eq(t->cost, 10);
	cr_assert_eq(t->nvariants, 7);
	for (size_t i = 0; i < 7; i++)
		cr_assert_str_eq(t->variants[i].name, upscaler_variants[i]);
	v = tool_variant(t, NULL);
	cr_assert_str_eq(v->name, "pro");
	cr_assert_str_eq(v->app_id, "2015865378030755841");
	expect_node(v, 0, "image", "12", "image");
	expect_node(v, 3, "prompt", "7", "text");
	cr_assert_eq(t->ninputs, 4);
	cr_assert_eq(t->inputs[0].required, 1);
	cr_assert_eq(t->inputs[1].type, INPUT_NUMBER);
	cr_assert_eq(t->inputs[1].min, 512);
	cr_assert_eq(t->inputs[1].max, 8192);

	t = tools_find(&cfg.tools, "pose_changer");
	cr_assert_eq(t->cost, 8);
	cr_assert_eq(t->nvariants, 1);
	cr_assert_null(t->variants[0].name);
	cr_assert_str_eq(t->variants[0].app_id, "2018451429635133442");
	expect_node(&t->variants[0], 0, "person", "27", "image");
	expect_node(&t->variants[0], 1, "reference", "60", "image");

	t = tools_find(&cfg.tools, "veste_ai");
	expect_node(&t->variants[0], 0, "person", "41", "image");
	expect_node(&t->variants[0], 1, "clothing", "43", "image");

	t = tools_find(&cfg.tools, "video_upscaler");
	cr_assert_eq(t->cost, 20);
	cr_assert_eq(t->inputs[0].type, INPUT_VIDEO);
	expect_node(&t->variants[0], 0, "video", "3", "video");
}

Test(config, file_overrides_keys)
{
	cr_assert_eq(load("; mine\n"
	                  "[server]\n"
	                  "listen = 0.0.0.0:9000\n"
	                  "public_url = https://fila.example.com/ ; slash\n"
	                  "  max_body = 2048\n"
	                  "[queue]\n"
	                  "slots = 7\n"
	                  "slots = 8\n"
	                  "[store]\n"
	                  "url = postgres://u:p@db/fila\n"
	                  "[runninghub]\n"
	                  "api_key =\n",
	                 NULL, 0),
	    0, "%s", err);
	cr_assert_str_eq(cfg.listen_host, "0.0.0.0");
	cr_assert_eq(cfg.listen_port, 9000);
	cr_assert_str_eq(cfg.public_url, "https://fila.example.com");
	cr_assert_eq(cfg.max_body, 2048);
	cr_assert_eq(cfg.slots, 8);
	cr_assert_str_eq(cfg.store_url, "postgres://u:p@db/fila");
	cr_assert_str_eq(cfg.rh_api_key, "");
	cr_assert_eq(cfg.run_timeout, 600);
	cr_assert_eq(cfg.tools.n, 4);
}

Test(config, long_lines_are_whole)
{
	char text[1200];
	char key[1001];

	memset(key, 'k', 1000);
	key[1000] = '\0';
	snprintf(text, sizeof(text), "[runninghub]\napi_key = %s\n", key);
	cr_assert_eq(load(text, NULL, 0), 0, "%s", err);
	cr_assert_str_eq(cfg.rh_api_key, key);
}

Test(config, missing_file)
{
	err[0] = '\0';
	cr_assert_eq(config_load(&cfg, "/nonexistent/fila.conf", 1, NULL, 0,
	                 err, sizeof(err)),
	    0, "%s", err);
	cr_assert_eq(cfg.slots, 3);
	config_cleanup(&cfg);
	cr_assert_eq(config_load(&cfg, "/nonexistent/fila.conf", 0, NULL, 0,
	                 err, sizeof(err)),
	    -1);
	cr_assert_str_eq(
	    err, "/nonexistent/fila.conf: No such file or directory");
	cr_assert_eq(
	    config_load(&cfg, "/tmp", 1, NULL, 0, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "/tmp: Is a directory");
}

Test(config, file_tools_replace_builtins)
{
	const struct tool *t;

	cr_assert_eq(load("[queue]\nslots = 2\n"
	                  "[tool.x]\n"
	                  "cost = 1\n"
	                  "input.img = image required\n"
	                  "app = 42 img=1:image\n",
	                 NULL, 0),
	    0, "%s", err);
	cr_assert_eq(cfg.slots, 2);
	cr_assert_eq(cfg.tools.n, 1);
	t = tools_find(&cfg.tools, "x");
	cr_assert_not_null(t);
	cr_assert_str_eq(t->title, "x");
	cr_assert_null(tools_find(&cfg.tools, "upscaler"));
}

Test(config, sets_override)
{
	char *sets[] = {
	    "queue.slots=5",
	    "store.url=sqlite:/tmp/a.db",
	    "server.listen=[::1]:8081",
	    "tool.upscaler.cost=12",
	    "tool.upscaler.input.image=image",
	    "tool.upscaler.variant.pro=1 image=2:image resolution=3:value "
	    "denoise=4:value prompt=5:text",
	    "tool.new_one.cost=0",
	    "tool.new_one.input.text=text required",
	    "tool.new_one.app=77 text=9:text",
	};
	const struct tool *t;

	cr_assert_eq(
	    load(NULL, sets, sizeof(sets) / sizeof(*sets)), 0, "%s", err);
	cr_assert_eq(cfg.slots, 5);
	cr_assert_str_eq(cfg.store_url, "sqlite:/tmp/a.db");
	cr_assert_str_eq(cfg.listen_host, "::1");
	cr_assert_eq(cfg.listen_port, 8081);
	cr_assert_eq(cfg.tools.n, 5);
	t = tools_find(&cfg.tools, "upscaler");
	cr_assert_eq(t->cost, 12);
	cr_assert_eq(t->ninputs, 4);
	cr_assert_str_eq(t->inputs[0].name, "image");
	cr_assert_eq(t->inputs[0].required, 0);
	cr_assert_eq(t->nvariants, 7);
	cr_assert_str_eq(t->variants[0].name, "pro");
	cr_assert_str_eq(t->variants[0].app_id, "1");
	t = tools_find(&cfg.tools, "new_one");
	cr_assert_not_null(t);
	cr_assert_str_eq(t->variants[0].app_id, "77");
}

Test(config, set_after_file)
{
	char *sets[] = {"queue.slots=9"};

	cr_assert_eq(load("[queue]\nslots = 4\n", sets, 1), 0, "%s", err);
	cr_assert_eq(cfg.slots, 9);
}

Test(config, error_bad_integer)
{
	expect_error("[server]\nlisten = 1.2.3.4:80\n\n[queue]\nslots = abc\n",
	    5, "[queue] slots: expected an integer >= 1, got \"abc\"");
	expect_error("[queue]\nslots = 3x\n", 2,
	    "[queue] slots: expected an integer >= 1, got \"3x\"");
	expect_error("[queue]\nrun_timeout =\n", 2,
	    "[queue] run_timeout: expected an integer >= 1, got \"\"");
	expect_error("[uploads]\nmax_bytes = 1.5\n", 2,
	    "[uploads] max_bytes: expected an integer >= 1, got \"1.5\"");
	expect_error("[queue]\nslots = 0\n", 2,
	    "[queue] slots: expected an integer >= 1, got \"0\"");
	expect_error("[credits]\ninitial = -1\n", 2,
	    "[credits] initial: expected an integer >= 0, got \"-1\"");
	expect_error("[server]\nmax_body = 99999999999999999999\n", 2,
	    "[server] max_body: expected an integer >= 1, got "
	    "\"99999999999999999999\"");
}

Test(config, zero_initial_credits)
{
	cr_assert_eq(load("[credits]\ninitial = 0\n", NULL, 0), 0, "%s", err);
	cr_assert_eq(cfg.credits_initial, 0);
}

Test(config, error_unknown_key_and_section)
{
	expect_error("\n\n[server]\nlisen = 1.2.3.4:80\n", 4,
	    "unknown key \"lisen\" in [server]");
	expect_error("[server]\nlisten = 1.2.3.4:80\n[srever]\nx = 1\n", 3,
	    "unknown section [srever]");
	expect_error("x = 1\n", 1, "key \"x\" is outside any section");
}

Test(config, error_unknown_empty_section)
{
	expect_error("[server]\nlisten = 1.2.3.4:80\n; note\n[srever]\n", 4,
	    "unknown section [srever]");
	expect_error("[srever]\n[server]\nlisten = 1.2.3.4:80\n", 1,
	    "unknown section [srever]");
	expect_error("[tool.x]\n", 1, "section [tool.x] has no keys");
}

Test(config, error_first_one_wins)
{
	expect_error("[queue]\nslots = x\n[srever]\n", 2,
	    "[queue] slots: expected an integer >= 1, got \"x\"");
	expect_error(
	    "[srever]\n[queue]\nslots = x\n", 1, "unknown section [srever]");
}

Test(config, error_syntax)
{
	expect_error(
	    "[server]\nlisten\n", 2, "expected [SECTION] or KEY = VALUE");
	expect_error("[server\nlisten = 1.2.3.4:80\n", 1,
	    "expected [SECTION] or KEY = VALUE");
}

Test(config, listen_forms)
{
	static const char *const bad[] = {"localhost", "host:99999", ":80",
	    "[::1]8080", "::1:8080", "host:", "host:-1", "[::1]:x"};
	char text[128], reason[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		snprintf(text, sizeof(text), "[server]\nlisten = %s\n", bad[i]);
		snprintf(reason, sizeof(reason),
		    "[server] listen: expected HOST:PORT with a port "
		    "0..65535, got \"%s\"",
		    bad[i]);
		expect_error(text, 2, reason);
		cleanup();
	}
	cr_assert_eq(load("[server]\nlisten = localhost:0\n", NULL, 0), 0);
	cr_assert_str_eq(cfg.listen_host, "localhost");
	cr_assert_eq(cfg.listen_port, 0);
}

Test(config, error_store_url)
{
	expect_error("[store]\nurl = mysql://x/y\n", 2,
	    "[store] url: expected sqlite:PATH or "
	    "postgres://USER:PASS@HOST/DB, got \"mysql://x/y\"");
	cleanup();
	cr_assert_eq(load("[store]\nurl = postgresql://a@b/c\n", NULL, 0), 0);
}

Test(config, error_urls_and_strings)
{
	expect_error("[runninghub]\nbase_url = ftp://x\n", 2,
	    "[runninghub] base_url: expected an http:// or https:// URL, "
	    "got \"ftp://x\"");
	expect_error("[server]\npublic_url = http:///\n", 2,
	    "[server] public_url: expected an http:// or https:// URL, "
	    "got \"http:///\"");
	/* Empty, the secret refuses HS256; with no JWKS either, nothing
	 * could be verified. */
	cr_assert_eq(load("[auth]\njwt_secret =\n", NULL, 0), -1);
	cr_assert_str_eq(err, "[auth] jwt_secret: empty, and no jwks_url: no"
	                      " token could be verified");
	cr_assert_eq(
	    load("[auth]\njwt_secret =\njwks_url = https://x/j\n", NULL, 0), 0,
	    "%s", err);
	config_cleanup(&cfg);
	expect_error(
	    "[uploads]\ndir = \n", 2, "[uploads] dir: must not be empty");
}

Test(config, cors_origins)
{
	cr_assert_eq(
	    load("[server]\ncors_origins = *\n", NULL, 0), 0, "%s", err);
	cr_assert_str_eq(cfg.cors_origins, "*");
	cleanup();
	cr_assert_eq(load("[server]\ncors_origins =   https://app.example.com"
	                  "\thttp://localhost:3000  http://[::1]:8000\n",
	                 NULL, 0),
	    0, "%s", err);
	cr_assert_str_eq(cfg.cors_origins,
	    "https://app.example.com http://localhost:3000 http://[::1]:8000");
	cleanup();
	static const char *const bad[] = {"https://app.example.com/",
	    "https://app.example.com/path", "app.example.com",
	    "https://App.Example.com", "ftp://x", "https://", "* https://a.b",
	    "https://a.b,https://c.d", NULL};
	for (size_t i = 0; bad[i]; i++) {
		char text[256], want[512];
		snprintf(text, sizeof(text), "[server]\ncors_origins = %s\n",
		    bad[i]);
		snprintf(want, sizeof(want),
		    "[server] cors_origins: expected \"*\" or origins like "
		    "https://app.example.com (lowercase, no path) separated "
		    "by spaces, got \"%s\"",
		    bad[i]);
		expect_error(text, 2, want);
	}
}

Test(config, error_tool_keys)
{
	expect_error("[tool.x]\ncost = -1\n", 2,
	    "[tool.x] cost: expected an integer >= 0, got \"-1\"");
	expect_error("[tool.x]\ncost = 1\ninput.a = text\ninput.a = text\n", 4,
	    "[tool.x] input.a: defined twice");
	expect_error("[tool.x]\nvariant.a = 1\nvariant.a = 2\n", 3,
	    "[tool.x] variant.a: defined twice");
	expect_error(
	    "[tool.x]\ncolor = red\n", 2, "unknown key \"color\" in [tool.x]");
	expect_error("[tool.X]\ncost = 1\n", 2,
	    "[tool.X]: tool names are 1 to 64 of a-z, 0-9 and _");
}

Test(config, error_tools_check)
{
	cr_assert_eq(
	    load("[tool.x]\ninput.a = text\napp = 1 a=1:text\n", NULL, 0), -1);
	cr_assert_str_eq(err, "[tool.x]: no cost set");
	cr_assert_eq(cfg.tools.n, 0);
}

Test(config, error_set)
{
	expect_set_error("queue.slots=abc",
	    "--set queue.slots=abc: [queue] slots: expected an integer >= 1, "
	    "got \"abc\"");
	expect_set_error("srever.x=1", "--set srever.x=1: unknown section "
	                               "[srever]");
	expect_set_error("server.lisen=1",
	    "--set server.lisen=1: unknown key \"lisen\" in [server]");
	expect_set_error(
	    "slots=3", "--set slots=3: expected SECTION.KEY=VALUE");
	expect_set_error("queue.slots", "--set queue.slots: expected "
	                                "SECTION.KEY=VALUE");
	expect_set_error(
	    "tool.cost=3", "--set tool.cost=3: unknown section [tool]");
	expect_set_error("tool.upscaler.cost=x",
	    "--set tool.upscaler.cost=x: [tool.upscaler] cost: expected an "
	    "integer >= 0, got \"x\"");
	expect_set_error("tool.upscaler.app=5 image=1:image",
	    "--set tool.upscaler.app=5 image=1:image: [tool.upscaler] app: a "
	    "tool has either app or variant.NAME keys, not both");
}

Test(config, error_set_breaks_tool)
{
	char *sets[] = {"tool.upscaler.input.extra=text"};

	cr_assert_eq(load(NULL, sets, 1), -1);
	cr_assert_str_eq(err, "[tool.upscaler] variant.pro: input \"extra\" "
	                      "is not mapped to a node");
}

/* ---- docs/api.md §9–§11 ------------------------------------------------ */

Test(config, one_account_by_default)
{
	cr_assert_eq(load(NULL, NULL, 0), 0, "%s", err);
	cr_assert_eq(cfg.naccounts, 1);
	cr_assert_str_eq(cfg.accounts[0].name, "default");
	cr_assert_str_eq(cfg.accounts[0].base_url, cfg.rh_base_url);
	cr_assert_str_eq(cfg.accounts[0].api_key, cfg.rh_api_key);
	cr_assert_eq(cfg.accounts[0].slots, 3);
	cr_assert_eq(cfg.slots, 3);
	cr_assert_eq(cfg.max_wait, cfg.queue_timeout, "empty: queue_timeout");
	cr_assert_eq(cfg.rh_down_for, 300);
	cr_assert_eq(cfg.rh_status_every, 60);
	cr_assert_eq(cfg.outputs, OUTPUTS_NONE);
	cr_assert_eq(cfg.hook_all, 0);
	cr_assert_str_eq(cfg.admin_role, "admin");
	cr_assert_str_eq(cfg.store_schema, "fila");
	cr_assert_eq(cfg.streams_per_user, 20);
}

Test(config, accounts_are_pools_and_the_slots_their_sum)
{
	char *sets[] = {"runninghub.cn.slots=1", "queue.max_wait=0"};

	cr_assert_eq(load("[runninghub.main]\n"
	                  "base_url = https://www.runninghub.ai/\n"
	                  "api_key = k1\nslots = 3\n",
	                 sets, 2),
	    0, "%s", err);
	cr_assert_eq(cfg.naccounts, 2);
	const struct account *m = config_account(&cfg, "main");
	const struct account *c = config_account(&cfg, "cn");
	cr_assert_not_null(m);
	cr_assert_not_null(c);
	cr_assert_str_eq(m->base_url, "https://www.runninghub.ai");
	cr_assert_str_eq(m->api_key, "k1");
	cr_assert_eq(m->slots, 3);
	/* what an account does not say comes from [runninghub] */
	cr_assert_str_eq(c->base_url, cfg.rh_base_url);
	cr_assert_eq(c->slots, 1);
	cr_assert_eq(cfg.slots, 4);
	cr_assert_null(config_account(&cfg, "default"));
	cr_assert_eq(cfg.max_wait, 0);
}

Test(config, an_account_needs_its_slots)
{
	cr_assert_eq(load("[runninghub.main]\napi_key = k\n", NULL, 0), -1);
	cr_assert_str_eq(err, "[runninghub.main] slots: no value given");
}

Test(config, set_splits_at_the_last_dot)
{
	char *sets[] = {"runninghub.main.slots=2",
	    "tool.upscaler.input.prompt=text", "tool.upscaler.cost=12",
	    "server.public_url=http://a.b.c:1"};

	cr_assert_eq(load(NULL, sets, 4), 0, "%s", err);
	cr_assert_eq(config_account(&cfg, "main")->slots, 2);
	cr_assert_eq(tools_find(&cfg.tools, "upscaler")->cost, 12);
	cr_assert_str_eq(cfg.public_url, "http://a.b.c:1");
}

Test(config, webhooks_outputs_and_limits)
{
	cr_assert_eq(load("[webhooks]\nurl = https://app/hook\n"
	                  "secret = whsec_c2VjcmV0\nevents = all\n"
	                  "[outputs]\nstore = s3\n"
	                  "s3_endpoint = http://127.0.0.1:9000/\n"
	                  "s3_bucket = b\ns3_access_key = a\n"
	                  "s3_secret_key = s\n"
	                  "[limits]\nsubmits_per_minute = 0\n",
	                 NULL, 0),
	    0, "%s", err);
	cr_assert_str_eq(cfg.hook_url, "https://app/hook");
	cr_assert_str_eq(cfg.hook_secret, "whsec_c2VjcmV0");
	cr_assert_eq(cfg.hook_all, 1);
	cr_assert_eq(cfg.outputs, OUTPUTS_S3);
	cr_assert_str_eq(cfg.s3_endpoint, "http://127.0.0.1:9000");
	cr_assert_eq(cfg.submits_per_minute, 0);
	config_cleanup(&cfg);
	/* What needs another key. */
	cr_assert_eq(load("[webhooks]\nurl = https://app/hook\n", NULL, 0), -1);
	cr_assert_str_eq(err, "[webhooks] secret: empty, but url is set: the"
	                      " app could not tell fila's webhooks from"
	                      " anyone's (whsec_…)");
	cr_assert_eq(load("[outputs]\nstore = s3\n", NULL, 0), -1);
	cr_assert_str_eq(err, "[outputs] s3_endpoint: empty, but store = s3");
	expect_error("[webhooks]\nsecret = abc\n", 2,
	    "[webhooks] secret: expected whsec_ followed by base64, got "
	    "\"abc\"");
	expect_error("[webhooks]\nevents = some\n", 2,
	    "[webhooks] events: expected terminal or all, got \"some\"");
	expect_error("[outputs]\nstore = ftp\n", 2,
	    "[outputs] store: expected none, local or s3, got \"ftp\"");
	expect_error("[runninghub.Main]\nslots = 1\n", 2,
	    "[runninghub.Main]: an account name is 1 to 32 of a-z 0-9 _ -");
	expect_error("[runninghub.m]\nslots = 0\n", 2,
	    "[runninghub.m] slots: expected an integer >= 1, got \"0\"");
	expect_error("[runninghub.m]\ncolour = 1\n", 2,
	    "unknown key \"colour\" in [runninghub.m]");
}
