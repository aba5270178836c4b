/*
 * tools.c — the tool registry. A tool is pure configuration: its inputs
 * (typed, with limits), its cost, and one or more variants, each a provider
 * app plus the map from our input names to the app's nodes. The registry is
 * built key by key (tools_set) as the configuration is read, checked once as
 * a whole (tools_check), then only read: GET /v1/tools renders it and job
 * submission validates inputs against it.
 *
 * A cost of -1 marks "not set yet" while parsing; tools_check refuses it.
 */
#include "tools.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 64
#define TEXT_MAX_BYTES 10000
#define SEP " \t"

static const char *const type_names[] = {
    [INPUT_IMAGE] = "image",
    [INPUT_VIDEO] = "video",
    [INPUT_TEXT] = "text",
    [INPUT_NUMBER] = "number",
    [INPUT_CHOICE] = "choice",
};

/* Every message of tools_set names the section and key it is about. */
struct where {
	const char *tool;
	const char *key;
	char *err;
	size_t errlen;
};

static int fail(const struct where *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
fail(const struct where *w, const char *fmt, ...)
{
	char reason[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	snprintf(
	    w->err, w->errlen, "[tool.%s] %s: %s", w->tool, w->key, reason);
	return -1;
}

/* Names of tools, inputs and variants: 1..64 of [a-z0-9_]. */
static int
name_ok(const char *s, size_t len)
{
	if (len == 0 || len > NAME_MAX_LEN)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		        c == '_'))
			return 0;
	}
	return 1;
}

static int
digits_only(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return 0;
	return 1;
}

static void
input_cleanup(struct tool_input *in)
{
	for (size_t i = 0; i < in->nchoices; i++)
		free(in->choices[i]);
	free(in->choices);
	free(in->name);
	memset(in, 0, sizeof(*in));
}

static void
variant_cleanup(struct tool_variant *v)
{
	for (size_t i = 0; i < v->nnodes; i++) {
		free(v->nodes[i].input);
		free(v->nodes[i].node_id);
		free(v->nodes[i].field);
	}
	free(v->nodes);
	free(v->name);
	free(v->app_id);
	memset(v, 0, sizeof(*v));
}

static void
tool_cleanup(struct tool *tool)
{
	for (size_t i = 0; i < tool->ninputs; i++)
		input_cleanup(&tool->inputs[i]);
	for (size_t i = 0; i < tool->nvariants; i++)
		variant_cleanup(&tool->variants[i]);
	free(tool->inputs);
	free(tool->variants);
	free(tool->name);
	free(tool->title);
	memset(tool, 0, sizeof(*tool));
}

void
tools_cleanup(struct tools *t)
{
	for (size_t i = 0; i < t->n; i++)
		tool_cleanup(&t->v[i]);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

const struct tool *
tools_find(const struct tools *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return &t->v[i];
	return NULL;
}

const struct tool_variant *
tool_variant(const struct tool *tool, const char *name)
{
	if (name == NULL)
		return tool->nvariants > 0 ? &tool->variants[0] : NULL;
	for (size_t i = 0; i < tool->nvariants; i++) {
		const char *vn = tool->variants[i].name;
		if (vn != NULL && strcmp(vn, name) == 0)
			return &tool->variants[i];
	}
	return NULL;
}

static const struct tool_input *
find_input(const struct tool *tool, const char *name)
{
	for (size_t i = 0; i < tool->ninputs; i++)
		if (strcmp(tool->inputs[i].name, name) == 0)
			return &tool->inputs[i];
	return NULL;
}

/* The tool named, appended with its defaults when first seen. */
static struct tool *
tool_get(struct tools *t, const char *name)
{
	struct tool *tool = (struct tool *)tools_find(t, name);

	if (tool != NULL)
		return tool;
	t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
	tool = &t->v[t->n++];
	memset(tool, 0, sizeof(*tool));
	tool->name = xstrdup(name);
	tool->title = xstrdup(name);
	tool->cost = -1;
	return tool;
}

/* A whole, finite real number, as written in min= and max=. */
static int
parse_real(const char *s, double *out)
{
	char *end;

	if (*s == '\0')
		return -1;
	errno = 0;
	*out = strtod(s, &end);
	if (errno != 0 || *end != '\0' || !isfinite(*out))
		return -1;
	return 0;
}

static int
parse_choices(struct tool_input *in, const char *list, const struct where *w)
{
	const char *p = list;

	if (in->nchoices > 0)
		return fail(w, "choices= given twice");
	for (;;) {
		size_t len = strcspn(p, "|");
		char *c = xstrndup(p, len);

		for (size_t i = 0; i < in->nchoices; i++)
			if (strcmp(in->choices[i], c) == 0) {
				free(c);
				return fail(w, "choice \"%.*s\" listed twice",
				    (int)len, p);
			}
		in->choices = xrealloc(
		    in->choices, (in->nchoices + 1) * sizeof(*in->choices));
		in->choices[in->nchoices++] = c;
		if (len == 0)
			return fail(w, "empty choice in \"%s\"", list);
		if (p[len] == '\0')
			return 0;
		p += len + 1;
	}
}

static int
parse_bound(const char *tok, int *has, double *val, const struct where *w)
{
	const char *num = strchr(tok, '=') + 1;

	if (*has)
		return fail(w, "%.3s= given twice", tok);
	if (parse_real(num, val) < 0)
		return fail(w, "expected a number in %s", tok);
	*has = 1;
	return 0;
}

static int
parse_type(struct tool_input *in, const char *tok, const struct where *w)
{
	for (size_t i = 0; i < sizeof(type_names) / sizeof(*type_names); i++)
		if (tok != NULL && strcmp(tok, type_names[i]) == 0) {
			in->type = (enum input_type)i;
			return 0;
		}
	return fail(w,
	    "expected a type (image, video, text, number or "
	    "choice), got \"%s\"",
	    tok ? tok : "");
}

static int
parse_option(struct tool_input *in, const char *tok, const struct where *w)
{
	int number = in->type == INPUT_NUMBER;

	if (strcmp(tok, "required") == 0) {
		if (in->required)
			return fail(w, "required given twice");
		in->required = 1;
		return 0;
	}
	if (number && strncmp(tok, "min=", 4) == 0)
		return parse_bound(tok, &in->has_min, &in->min, w);
	if (number && strncmp(tok, "max=", 4) == 0)
		return parse_bound(tok, &in->has_max, &in->max, w);
	if (in->type == INPUT_CHOICE && strncmp(tok, "choices=", 8) == 0)
		return parse_choices(in, tok + 8, w);
	return fail(
	    w, "unexpected \"%s\" for a %s input", tok, type_names[in->type]);
}

/* "TYPE [required] [min=N] [max=N] [choices=a|b|c]" into in. */
static int
parse_input(struct tool_input *in, const char *spec, const struct where *w)
{
	char *copy = xstrdup(spec), *save = NULL, *tok;
	int rc = -1;

	if (parse_type(in, strtok_r(copy, SEP, &save), w) < 0)
		goto out;
	while ((tok = strtok_r(NULL, SEP, &save)) != NULL)
		if (parse_option(in, tok, w) < 0)
			goto out;
	if (in->has_min && in->has_max && in->min > in->max) {
		fail(w, "min is greater than max");
		goto out;
	}
	if (in->type == INPUT_CHOICE && in->nchoices == 0) {
		fail(w, "a choice input needs choices=a|b|...");
		goto out;
	}
	rc = 0;
out:
	free(copy);
	return rc;
}

/* One "INPUT=NODE:FIELD" appended to v. */
static int
parse_node(struct tool_variant *v, const char *tok, const struct where *w)
{
	const char *eq = strchr(tok, '='), *colon;
	struct tool_node *n;

	colon = eq ? strchr(eq + 1, ':') : NULL;
	if (eq == NULL || colon == NULL || colon == eq + 1 ||
	    colon[1] == '\0' || !name_ok(tok, (size_t)(eq - tok)))
		return fail(w, "expected INPUT=NODE:FIELD, got \"%s\"", tok);
	for (size_t i = 0; i < v->nnodes; i++)
		if (strlen(v->nodes[i].node_id) == (size_t)(colon - eq - 1) &&
		    strncmp(v->nodes[i].node_id, eq + 1, colon - eq - 1) == 0 &&
		    strcmp(v->nodes[i].field, colon + 1) == 0)
			return fail(w, "node %s is mapped twice", eq + 1);
	v->nodes = xrealloc(v->nodes, (v->nnodes + 1) * sizeof(*v->nodes));
	n = &v->nodes[v->nnodes++];
	n->input = xstrndup(tok, (size_t)(eq - tok));
	n->node_id = xstrndup(eq + 1, (size_t)(colon - eq - 1));
	n->field = xstrdup(colon + 1);
	return 0;
}

/* "APP_ID INPUT=NODE:FIELD ..." into v. */
static int
parse_variant(struct tool_variant *v, const char *spec, const struct where *w)
{
	char *copy = xstrdup(spec), *save = NULL, *tok;
	int rc = -1;

	tok = strtok_r(copy, SEP, &save);
	if (tok == NULL || !digits_only(tok)) {
		fail(w,
		    "expected APP_ID (digits) INPUT=NODE:FIELD ..., got "
		    "\"%s\"",
		    spec);
		goto out;
	}
	v->app_id = xstrdup(tok);
	while ((tok = strtok_r(NULL, SEP, &save)) != NULL)
		if (parse_node(v, tok, w) < 0)
			goto out;
	rc = 0;
out:
	free(copy);
	return rc;
}

/* Parse into a fresh element, then put it in place of the old one of the
 * same name (a --set edits) or at the end (file order is kept). */
static int
set_input(struct tool *tool, const char *name, const char *value,
    const struct where *w)
{
	struct tool_input in = {0};
	size_t i;

	if (!name_ok(name, strlen(name)))
		return fail(w, "input names are 1 to 64 of a-z, 0-9 and _");
	if (parse_input(&in, value, w) < 0) {
		input_cleanup(&in);
		return -1;
	}
	in.name = xstrdup(name);
	for (i = 0; i < tool->ninputs; i++)
		if (strcmp(tool->inputs[i].name, name) == 0)
			break;
	if (i == tool->ninputs)
		tool->inputs = xrealloc(
		    tool->inputs, ++tool->ninputs * sizeof(*tool->inputs));
	else
		input_cleanup(&tool->inputs[i]);
	tool->inputs[i] = in;
	return 0;
}

static int
set_variant(struct tool *tool, const char *name, const char *value,
    const struct where *w)
{
	struct tool_variant v = {0};
	int unnamed = tool->nvariants > 0 && tool->variants[0].name == NULL;
	size_t i;

	if (name != NULL && !name_ok(name, strlen(name)))
		return fail(w, "variant names are 1 to 64 of a-z, 0-9 and _");
	if ((name == NULL && tool->nvariants > 0 && !unnamed) ||
	    (name != NULL && unnamed))
		return fail(w, "a tool has either app or variant.NAME keys, "
		               "not both");
	if (parse_variant(&v, value, w) < 0) {
		variant_cleanup(&v);
		return -1;
	}
	v.name = xstrdup_or_null(name);
	for (i = 0; i < tool->nvariants; i++)
		if (name == NULL || strcmp(tool->variants[i].name, name) == 0)
			break;
	if (i == tool->nvariants)
		tool->variants = xrealloc(tool->variants,
		    ++tool->nvariants * sizeof(*tool->variants));
	else
		variant_cleanup(&tool->variants[i]);
	tool->variants[i] = v;
	return 0;
}

static int
set_cost(struct tool *tool, const char *value, const struct where *w)
{
	long long n;

	if (parse_ll(value, &n) < 0 || n < 0)
		return fail(w, "expected an integer >= 0, got \"%s\"", value);
	tool->cost = n;
	return 0;
}

static int
set_title(struct tool *tool, const char *value, const struct where *w)
{
	if (*value == '\0')
		return fail(w, "must not be empty");
	free(tool->title);
	tool->title = xstrdup(value);
	return 0;
}

int
tools_set(struct tools *t, const char *tool, const char *key, const char *value,
    char *err, size_t errlen)
{
	struct where w = {tool, key, err, errlen};
	struct tool *tl;

	if (!name_ok(tool, strlen(tool))) {
		snprintf(err, errlen,
		    "[tool.%s]: tool names are 1 to 64 of a-z, 0-9 and _",
		    tool);
		return -1;
	}
	tl = tool_get(t, tool);
	if (strcmp(key, "title") == 0)
		return set_title(tl, value, &w);
	if (strcmp(key, "cost") == 0)
		return set_cost(tl, value, &w);
	if (strcmp(key, "app") == 0)
		return set_variant(tl, NULL, value, &w);
	if (strncmp(key, "input.", 6) == 0)
		return set_input(tl, key + 6, value, &w);
	if (strncmp(key, "variant.", 8) == 0)
		return set_variant(tl, key + 8, value, &w);
	snprintf(err, errlen, "unknown key \"%s\" in [tool.%s]", key, tool);
	return -1;
}

static int
variant_check(const struct tool *tool, const struct tool_variant *v, char *err,
    size_t errlen)
{
	const char *vname = v->name ? v->name : "app";

	for (size_t i = 0; i < v->nnodes; i++)
		if (find_input(tool, v->nodes[i].input) == NULL) {
			snprintf(err, errlen,
			    "[tool.%s] %s%s: \"%s\" is not a declared input",
			    tool->name, v->name ? "variant." : "", vname,
			    v->nodes[i].input);
			return -1;
		}
	for (size_t i = 0; i < tool->ninputs; i++) {
		size_t j = 0;
		while (j < v->nnodes &&
		       strcmp(v->nodes[j].input, tool->inputs[i].name) != 0)
			j++;
		if (j == v->nnodes) {
			snprintf(err, errlen,
			    "[tool.%s] %s%s: input \"%s\" is not mapped to a "
			    "node",
			    tool->name, v->name ? "variant." : "", vname,
			    tool->inputs[i].name);
			return -1;
		}
	}
	return 0;
}

int
tools_check(const struct tools *t, char *err, size_t errlen)
{
	for (size_t i = 0; i < t->n; i++) {
		const struct tool *tool = &t->v[i];

		if (tool->cost < 0) {
			snprintf(
			    err, errlen, "[tool.%s]: no cost set", tool->name);
			return -1;
		}
		if (tool->nvariants == 0) {
			snprintf(err, errlen,
			    "[tool.%s]: needs an app or a variant.NAME",
			    tool->name);
			return -1;
		}
		for (size_t j = 0; j < tool->nvariants; j++)
			if (variant_check(
			        tool, &tool->variants[j], err, errlen) < 0)
				return -1;
	}
	return 0;
}

/* Whole bounds read best as integers ("max": 8192, not 8192.0). */
static json_t *
json_bound(double d)
{
	if (d >= -9007199254740992.0 && d <= 9007199254740992.0 &&
	    d == (double)(json_int_t)d)
		return json_integer((json_int_t)d);
	return json_real(d);
}

static json_t *
input_to_json(const struct tool_input *in)
{
	json_t *o = json_pack("{s:s, s:s, s:b}", "name", in->name, "type",
	    type_names[in->type], "required", in->required);

	if (in->type == INPUT_CHOICE) {
		json_t *c = json_array();
		for (size_t i = 0; i < in->nchoices; i++)
			json_array_append_new(c, json_string(in->choices[i]));
		json_object_set_new(o, "choices", c);
	}
	if (in->has_min)
		json_object_set_new(o, "min", json_bound(in->min));
	if (in->has_max)
		json_object_set_new(o, "max", json_bound(in->max));
	return o;
}

static json_t *
tool_to_json(const struct tool *tool)
{
	json_t *variants = json_array(), *inputs = json_array();

	for (size_t i = 0; i < tool->nvariants; i++)
		if (tool->variants[i].name != NULL)
			json_array_append_new(
			    variants, json_string(tool->variants[i].name));
	for (size_t i = 0; i < tool->ninputs; i++)
		json_array_append_new(inputs, input_to_json(&tool->inputs[i]));
	return json_pack("{s:s, s:s, s:I, s:o, s:o}", "name", tool->name,
	    "title", tool->title, "cost", (json_int_t)tool->cost, "variants",
	    variants, "inputs", inputs);
}

json_t *
tools_to_json(const struct tools *t)
{
	json_t *list = json_array();

	for (size_t i = 0; i < t->n; i++)
		json_array_append_new(list, tool_to_json(&t->v[i]));
	return json_pack("{s:o}", "tools", list);
}

/* A bound as people write it: 512, 0.5. */
static void
fmt_bound(char *buf, size_t len, double d)
{
	if (d >= -1e15 && d <= 1e15 && d == (double)(long long)d)
		snprintf(buf, len, "%lld", (long long)d);
	else
		snprintf(buf, len, "%.15g", d);
}

static const char *
check_number(const struct tool_input *in, json_t *v, char *buf, size_t len)
{
	double d;
	char lo[32], hi[32];

	if (!json_is_number(v))
		return "expected a number";
	d = json_number_value(v);
	if ((!in->has_min || d >= in->min) && (!in->has_max || d <= in->max))
		return NULL;
	fmt_bound(lo, sizeof(lo), in->min);
	fmt_bound(hi, sizeof(hi), in->max);
	if (in->has_min && in->has_max)
		snprintf(buf, len, "must be between %s and %s", lo, hi);
	else if (in->has_min)
		snprintf(buf, len, "must be at least %s", lo);
	else
		snprintf(buf, len, "must be at most %s", hi);
	return buf;
}

static const char *
check_choice(const struct tool_input *in, json_t *v, char *buf, size_t len)
{
	size_t used;

	if (json_is_string(v))
		for (size_t i = 0; i < in->nchoices; i++)
			if (strcmp(json_string_value(v), in->choices[i]) == 0)
				return NULL;
	used = (size_t)snprintf(buf, len, "must be one of ");
	for (size_t i = 0; i < in->nchoices && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%s",
		    i ? ", " : "", in->choices[i]);
	return buf;
}

/* Why v is not a good value for in, or NULL when it is. */
static const char *
check_value(const struct tool_input *in, json_t *v, char *buf, size_t len)
{
	switch (in->type) {
	case INPUT_IMAGE:
	case INPUT_VIDEO:
		if (!json_is_string(v) || json_string_length(v) == 0)
			return "expected an upload id";
		return NULL;
	case INPUT_TEXT:
		if (!json_is_string(v))
			return "expected a string";
		if (json_string_length(v) > TEXT_MAX_BYTES)
			return "must be at most 10000 bytes";
		return NULL;
	case INPUT_NUMBER:
		return check_number(in, v, buf, len);
	case INPUT_CHOICE:
		return check_choice(in, v, buf, len);
	}
	return "unknown input type";
}

int
tool_check_inputs(const struct tool *tool, json_t *inputs, json_t *fields)
{
	const char *key;
	json_t *v;
	int problems = 0;
	char buf[1024];

	json_object_foreach(inputs, key, v)
	{
		if (find_input(tool, key) == NULL) {
			json_object_set_new(
			    fields, key, json_string("unknown input"));
			problems++;
		}
	}
	for (size_t i = 0; i < tool->ninputs; i++) {
		const struct tool_input *in = &tool->inputs[i];
		const char *why = NULL;

		v = json_object_get(inputs, in->name);
		if (v == NULL || json_is_null(v))
			why = in->required ? "required" : NULL;
		else
			why = check_value(in, v, buf, sizeof(buf));
		if (why != NULL) {
			json_object_set_new(fields, in->name, json_string(why));
			problems++;
		}
	}
	return problems;
}

/* ---- a job's body ------------------------------------------------- */

#define JOB_STRING_MAX 255

static void
check_string(json_t *body, const char *key, int required, json_t *fields)
{
	json_t *v = json_object_get(body, key);

	if (v == NULL || json_is_null(v)) {
		if (required)
			json_object_set_new(
			    fields, key, json_string("required"));
	} else if (!json_is_string(v) || json_string_length(v) == 0 ||
	           json_string_length(v) > JOB_STRING_MAX) {
		json_object_set_new(fields, key,
		    json_string("must be a non-empty string of at most 255 "
		                "bytes"));
	}
}

/* The envelope's shape: {tool, variant?, inputs, session_id?}. */
static void
check_envelope(json_t *body, json_t *fields)
{
	const char *key;
	json_t *v;

	json_object_foreach(body, key, v)
	{
		if (strcmp(key, "tool") && strcmp(key, "variant") &&
		    strcmp(key, "inputs") && strcmp(key, "session_id"))
			json_object_set_new(
			    fields, key, json_string("unknown field"));
	}
	check_string(body, "tool", 1, fields);
	check_string(body, "variant", 0, fields);
	check_string(body, "session_id", 0, fields);
	v = json_object_get(body, "inputs");
	if (v == NULL)
		json_object_set_new(fields, "inputs", json_string("required"));
	else if (!json_is_object(v))
		json_object_set_new(
		    fields, "inputs", json_string("must be an object"));
}

const struct tool *
tools_check_job(const struct tools *tools, json_t *body, const char **variant,
    json_t *fields)
{
	const struct tool *t;
	const struct tool_variant *v;

	check_envelope(body, fields);
	if (json_object_size(fields))
		return NULL;
	t = tools_find(tools, json_string_value(json_object_get(body, "tool")));
	if (t == NULL) {
		json_object_set_new(
		    fields, "tool", json_string("unknown tool"));
		return NULL;
	}
	*variant = json_string_value(json_object_get(body, "variant"));
	v = tool_variant(t, *variant);
	if (v == NULL) {
		json_object_set_new(fields, "variant",
		    json_string(t->variants[0].name ? "unknown variant"
		                                    : "this tool has no "
		                                      "variants"));
		return NULL;
	}
	*variant = v->name;
	if (tool_check_inputs(t, json_object_get(body, "inputs"), fields))
		return NULL;
	return t;
}
