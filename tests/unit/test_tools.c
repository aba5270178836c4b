/*
 * test_tools.c — the tool registry on its own: parsing tool keys, the whole
 * registry check, variant lookup, GET /v1/tools JSON and input validation.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "tools.h"

static struct tools reg;
static char err[512];

static void
cleanup(void)
{
	tools_cleanup(&reg);
}

TestSuite(tools, .fini = cleanup);

static void
set_ok(const char *tool, const char *key, const char *value)
{
	err[0] = '\0';
	cr_assert_eq(tools_set(&reg, tool, key, value, err, sizeof(err)), 0,
	    "%s %s = %s: %s", tool, key, value, err);
}

static void
set_fails(
    const char *tool, const char *key, const char *value, const char *want)
{
	err[0] = '\0';
	cr_assert_eq(tools_set(&reg, tool, key, value, err, sizeof(err)), -1,
	    "accepted %s = %s", key, value);
	cr_assert_str_eq(err, want);
}

static void
check_fails(const char *want)
{
	err[0] = '\0';
	cr_assert_eq(tools_check(&reg, err, sizeof(err)), -1);
	cr_assert_str_eq(err, want);
}

/* A small upscaler with every kind of input and two variants. */
static const struct tool *
demo(void)
{
	set_ok("up", "title", "Up");
	set_ok("up", "cost", "10");
	set_ok("up", "input.image", "image required");
	set_ok("up", "input.scale", "number min=512 max=8192");
	set_ok("up", "input.strength", "number min=0 max=0.75");
	set_ok("up", "input.floor", "number min=-2.5");
	set_ok("up", "input.prompt", "text");
	set_ok("up", "input.style", "choice required choices=photo|art");
	set_ok("up", "input.clip", "video");
	set_ok("up", "variant.pro",
	    "123 image=1:image scale=2:value strength=3:value floor=4:v "
	    "prompt=5:text style=6:s clip=7:video");
	set_ok("up", "variant.lite",
	    "456 image=1:image image=8:image scale=2:value strength=3:value "
	    "floor=4:v prompt=5:text style=6:s clip=7:video");
	set_ok("plain", "cost", "0");
	set_ok("plain", "input.video", "video required");
	set_ok("plain", "app", "789 video=3:video");
	cr_assert_eq(tools_check(&reg, err, sizeof(err)), 0, "%s", err);
	return tools_find(&reg, "up");
}

Test(tools, parse_and_find)
{
	const struct tool *t = demo(), *p;

	cr_assert_eq(reg.n, 2);
	cr_assert_str_eq(t->title, "Up");
	cr_assert_eq(t->cost, 10);
	cr_assert_eq(t->ninputs, 7);
	cr_assert_str_eq(t->inputs[0].name, "image");
	cr_assert_eq(t->inputs[0].type, INPUT_IMAGE);
	cr_assert_eq(t->inputs[0].required, 1);
	cr_assert_eq(t->inputs[2].has_min, 1);
	cr_assert_eq(t->inputs[2].max, 0.75);
	cr_assert_eq(t->inputs[3].has_max, 0);
	cr_assert_eq(t->inputs[5].type, INPUT_CHOICE);
	cr_assert_eq(t->inputs[5].nchoices, 2);
	cr_assert_str_eq(t->inputs[5].choices[1], "art");
	cr_assert_eq(t->variants[1].nnodes, 8);
	cr_assert_str_eq(t->variants[1].nodes[1].node_id, "8");

	p = tools_find(&reg, "plain");
	cr_assert_str_eq(p->title, "plain");
	cr_assert_null(tools_find(&reg, "nope"));
}

Test(tools, variants)
{
	const struct tool *t = demo(), *p = tools_find(&reg, "plain");

	cr_assert_str_eq(tool_variant(t, NULL)->name, "pro");
	cr_assert_str_eq(tool_variant(t, "lite")->app_id, "456");
	cr_assert_null(tool_variant(t, "nope"));
	cr_assert_str_eq(tool_variant(p, NULL)->app_id, "789");
	cr_assert_null(tool_variant(p, NULL)->name);
	cr_assert_null(tool_variant(p, "pro"));
}

Test(tools, set_replaces_in_place)
{
	const struct tool *t = demo();

	set_ok("up", "input.image", "image");
	set_ok("up", "variant.pro",
	    "999 image=1:image scale=2:value strength=3:value floor=4:v "
	    "prompt=5:text style=6:s clip=7:video");
	set_ok("plain", "app", "111 video=3:video");
	cr_assert_eq(t->ninputs, 7);
	cr_assert_str_eq(t->inputs[0].name, "image");
	cr_assert_eq(t->inputs[0].required, 0);
	cr_assert_eq(t->nvariants, 2);
	cr_assert_str_eq(t->variants[0].app_id, "999");
	cr_assert_str_eq(tools_find(&reg, "plain")->variants[0].app_id, "111");
	cr_assert_eq(tools_find(&reg, "plain")->nvariants, 1);
}

Test(tools, set_errors)
{
	set_fails("Bad", "cost", "1",
	    "[tool.Bad]: tool names are 1 to 64 of a-z, 0-9 and _");
	set_fails("t", "cost", "1.5",
	    "[tool.t] cost: expected an integer >= 0, got \"1.5\"");
	set_fails("t", "title", "", "[tool.t] title: must not be empty");
	set_fails("t", "input.a", "picture",
	    "[tool.t] input.a: expected a type (image, video, text, number or "
	    "choice), got \"picture\"");
	set_fails("t", "input.a", "",
	    "[tool.t] input.a: expected a type "
	    "(image, video, text, number or "
	    "choice), got \"\"");
	set_fails("t", "input.a", "text min=1",
	    "[tool.t] input.a: unexpected \"min=1\" for a text input");
	set_fails("t", "input.a", "number choices=a|b",
	    "[tool.t] input.a: unexpected \"choices=a|b\" for a number input");
	set_fails("t", "input.a", "number min=x",
	    "[tool.t] input.a: expected a number in min=x");
	set_fails("t", "input.a", "number min=3 max=2",
	    "[tool.t] input.a: min is greater than max");
	set_fails("t", "input.a", "number min=1 min=2",
	    "[tool.t] input.a: min= given twice");
	set_fails("t", "input.a", "choice",
	    "[tool.t] input.a: a choice input needs choices=a|b|...");
	set_fails("t", "input.a", "choice choices=a||b",
	    "[tool.t] input.a: empty choice in \"a||b\"");
	set_fails("t", "input.a", "choice choices=a|a",
	    "[tool.t] input.a: choice \"a\" listed twice");
	set_fails("t", "input.a", "text required required",
	    "[tool.t] input.a: required given twice");
	set_fails("t", "input.A", "text",
	    "[tool.t] input.A: input names are 1 to 64 of a-z, 0-9 and _");
	set_fails("t", "variant.x", "abc a=1:b",
	    "[tool.t] variant.x: expected APP_ID (digits) INPUT=NODE:FIELD "
	    "..., got \"abc a=1:b\"");
	set_fails("t", "variant.x", "1 a=1",
	    "[tool.t] variant.x: expected INPUT=NODE:FIELD, got \"a=1\"");
	set_fails("t", "variant.x", "1 a=:f",
	    "[tool.t] variant.x: expected INPUT=NODE:FIELD, got \"a=:f\"");
	set_fails("t", "variant.x", "1 a=1:f b=1:f",
	    "[tool.t] variant.x: node 1:f is mapped twice");
	set_fails("t", "app", "",
	    "[tool.t] app: expected APP_ID (digits) "
	    "INPUT=NODE:FIELD ..., got \"\"");
	set_fails("t", "colour", "red", "unknown key \"colour\" in [tool.t]");
	cr_assert_eq(reg.n, 1);
	cr_assert_eq(reg.v[0].ninputs, 0);
	cr_assert_eq(reg.v[0].nvariants, 0);
}

Test(tools, app_and_variants_exclude)
{
	set_ok("t", "app", "1");
	set_fails("t", "variant.a", "2",
	    "[tool.t] variant.a: a tool has either app or variant.NAME keys, "
	    "not both");
	set_ok("u", "variant.a", "1");
	set_fails("u", "app", "2",
	    "[tool.u] app: a tool has either app or variant.NAME keys, not "
	    "both");
}

Test(tools, check_errors)
{
	set_ok("t", "input.a", "text");
	set_ok("t", "app", "1 a=1:text");
	check_fails("[tool.t]: no cost set");
	tools_cleanup(&reg);

	set_ok("t", "cost", "1");
	check_fails("[tool.t]: needs an app or a variant.NAME");
	tools_cleanup(&reg);

	set_ok("t", "cost", "1");
	set_ok("t", "input.a", "text");
	set_ok("t", "variant.one", "1 a=1:text");
	set_ok("t", "variant.two", "2 b=1:text");
	check_fails("[tool.t] variant.two: \"b\" is not a declared input");
	tools_cleanup(&reg);

	set_ok("t", "cost", "1");
	set_ok("t", "input.a", "text");
	set_ok("t", "input.b", "text");
	set_ok("t", "app", "1 a=1:text");
	check_fails("[tool.t] app: input \"b\" is not mapped to a node");
}

Test(tools, to_json)
{
	json_error_t jerr;
	json_t *got, *want;

	demo();
	got = tools_to_json(&reg);
	want = json_loads(
	    "{\"tools\": ["
	    " {\"name\": \"up\", \"title\": \"Up\", \"cost\": 10,"
	    "  \"variants\": [\"pro\", \"lite\"],"
	    "  \"inputs\": ["
	    "   {\"name\": \"image\", \"type\": \"image\", \"required\": true},"
	    "   {\"name\": \"scale\", \"type\": \"number\", \"required\": "
	    "false,"
	    "    \"min\": 512, \"max\": 8192},"
	    "   {\"name\": \"strength\", \"type\": \"number\","
	    "    \"required\": false, \"min\": 0, \"max\": 0.75},"
	    "   {\"name\": \"floor\", \"type\": \"number\", \"required\": "
	    "false,"
	    "    \"min\": -2.5},"
	    "   {\"name\": \"prompt\", \"type\": \"text\", \"required\": "
	    "false},"
	    "   {\"name\": \"style\", \"type\": \"choice\", \"required\": true,"
	    "    \"choices\": [\"photo\", \"art\"]},"
	    "   {\"name\": \"clip\", \"type\": \"video\", \"required\": false}"
	    "  ]},"
	    " {\"name\": \"plain\", \"title\": \"plain\", \"cost\": 0,"
	    "  \"variants\": [],"
	    "  \"inputs\": [{\"name\": \"video\", \"type\": \"video\","
	    "               \"required\": true}]}"
	    "]}",
	    0, &jerr);
	cr_assert_not_null(want, "%s", jerr.text);
	cr_assert(
	    json_equal(got, want), "got %s", json_dumps(got, JSON_COMPACT));
	cr_assert(json_is_integer(json_object_get(
	    json_array_get(
	        json_object_get(
	            json_array_get(json_object_get(got, "tools"), 0), "inputs"),
	        1),
	    "max")));
	json_decref(got);
	json_decref(want);
}

/* Check inputs (JSON text) against the demo tool "up"; fields as JSON. */
static void
expect_inputs(const char *inputs, int count, const char *fields)
{
	const struct tool *t = tools_find(&reg, "up");
	json_t *in = json_loads(inputs, 0, NULL), *got = json_object();
	json_t *want = json_loads(fields, 0, NULL);

	cr_assert_not_null(in, "bad test JSON %s", inputs);
	cr_assert_not_null(want, "bad test JSON %s", fields);
	cr_assert_eq(tool_check_inputs(t, in, got), count, "%s -> %s", inputs,
	    json_dumps(got, JSON_COMPACT));
	cr_assert(json_equal(got, want), "%s -> %s", inputs,
	    json_dumps(got, JSON_COMPACT));
	json_decref(in);
	json_decref(got);
	json_decref(want);
}

Test(tools, check_inputs)
{
	demo();
	expect_inputs("{\"image\": \"upl_1\", \"style\": \"art\"}", 0, "{}");
	expect_inputs("{\"image\": \"upl_1\", \"style\": \"art\","
	              " \"scale\": 512, \"strength\": 0.5, \"floor\": -2.5,"
	              " \"prompt\": \"a cat\", \"clip\": null}",
	    0, "{}");
	expect_inputs(
	    "{}", 2, "{\"image\": \"required\", \"style\": \"required\"}");
	expect_inputs("{\"image\": null, \"style\": \"art\", \"zoom\": 2}", 2,
	    "{\"image\": \"required\", \"zoom\": \"unknown input\"}");
	expect_inputs("{\"image\": \"\", \"style\": \"art\", \"clip\": 5}", 2,
	    "{\"image\": \"expected an upload id\","
	    " \"clip\": \"expected an upload id\"}");
	expect_inputs("{\"image\": \"u\", \"style\": \"oil\", \"prompt\": 1}",
	    2,
	    "{\"style\": \"must be one of photo, art\","
	    " \"prompt\": \"expected a string\"}");
	expect_inputs("{\"image\": \"u\", \"style\": 1}", 1,
	    "{\"style\": \"must be one of photo, art\"}");
	expect_inputs("{\"image\": \"u\", \"style\": \"art\", \"scale\": 511,"
	              " \"strength\": 0.8, \"floor\": -3}",
	    3,
	    "{\"scale\": \"must be between 512 and 8192\","
	    " \"strength\": \"must be between 0 and 0.75\","
	    " \"floor\": \"must be at least -2.5\"}");
	expect_inputs(
	    "{\"image\": \"u\", \"style\": \"art\", \"scale\": \"1024\","
	    " \"strength\": true}",
	    2,
	    "{\"scale\": \"expected a number\","
	    " \"strength\": \"expected a number\"}");
	expect_inputs(
	    "{\"image\": \"u\", \"style\": \"art\", \"scale\": 8192.0}", 0,
	    "{}");
}

Test(tools, text_limit)
{
	char big[10002];
	json_t *in, *fields = json_object();
	const struct tool *t;

	demo();
	t = tools_find(&reg, "up");
	memset(big, 'a', 10001);
	big[10001] = '\0';
	in = json_pack(
	    "{s:s, s:s, s:s}", "image", "u", "style", "art", "prompt", big);
	cr_assert_eq(tool_check_inputs(t, in, fields), 1);
	cr_assert_str_eq(json_string_value(json_object_get(fields, "prompt")),
	    "must be at most 10000 bytes");
	json_object_set_new(in, "prompt", json_stringn(big, 10000));
	json_object_clear(fields);
	cr_assert_eq(tool_check_inputs(t, in, fields), 0);
	json_decref(in);
	json_decref(fields);
}

Test(tools, max_only_bound)
{
	json_t *in, *fields = json_object();

	set_ok("m", "input.n", "number max=10");
	in = json_pack("{s:i}", "n", 11);
	cr_assert_eq(tool_check_inputs(&reg.v[0], in, fields), 1);
	cr_assert_str_eq(json_string_value(json_object_get(fields, "n")),
	    "must be at most 10");
	json_decref(in);
	json_decref(fields);
}

/* The reason tools_check_job gives for field, after checking body. */
static const char *
job_reason(const char *body_text, const char *field, const struct tool **t,
    const char **variant)
{
	static char reason[128];
	json_error_t e;
	json_t *body = json_loads(body_text, 0, &e), *fields = json_object();

	cr_assert_not_null(body, "%s", e.text);
	*variant = NULL;
	*t = tools_check_job(&reg, body, variant, fields);
	cr_assert_eq(*t == NULL, json_object_size(fields) > 0);
	snprintf(reason, sizeof(reason), "%s",
	    field ? json_string_value(json_object_get(fields, field)) ?: "-"
	          : "");
	json_decref(fields);
	json_decref(body);
	return reason;
}

Test(tools, check_job_checks_shape_tool_variant_then_inputs)
{
	const struct tool *t;
	const char *v;

	demo();
	cr_assert_str_eq(
	    job_reason("{\"inputs\":{}}", "tool", &t, &v), "required");
	cr_assert_str_eq(
	    job_reason("{\"tool\":\"up\",\"inputs\":[],\"x\":1}", "x", &t, &v),
	    "unknown field");
	cr_assert_str_eq(
	    job_reason("{\"tool\":\"up\",\"inputs\":[]}", "inputs", &t, &v),
	    "must be an object");
	cr_assert_str_eq(
	    job_reason("{\"tool\":\"no\",\"inputs\":{}}", "tool", &t, &v),
	    "unknown tool");
	cr_assert_str_eq(job_reason("{\"tool\":\"up\",\"variant\":\"zz\","
	                            "\"inputs\":{}}",
	                     "variant", &t, &v),
	    "unknown variant");
	cr_assert_str_eq(
	    job_reason("{\"tool\":\"up\",\"inputs\":{}}", "image", &t, &v),
	    "required");
	job_reason("{\"tool\":\"up\",\"inputs\":{\"image\":\"upl_1\","
	           "\"style\":\"art\"}}",
	    NULL, &t, &v);
	cr_assert_not_null(t);
	cr_assert_str_eq(t->name, "up");
	cr_assert_str_eq(v, "pro", "the first variant is the default");
}
