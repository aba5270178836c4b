/*
 * fuzz_config.c — libFuzzer target for the configuration loader: the
 * operator's file over the built-in fila.conf, then --set overrides.
 *
 * The input up to its first NUL byte is the file (config_load reads it as
 * a C string anyway); what follows, split on newlines, is the --set
 * arguments. A loaded configuration must keep every promise of config.h
 * and tools.h, and render as GET /v1/tools does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SETS_MAX 8

static char path[] = "/tmp/fuzz_config.XXXXXX";
static int fd = -1;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_config: %s\n", what);
	abort();
}

static void
remove_file(void)
{
	unlink(path);
}

static int
is_url(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	return n > 0 && s[n - 1] != '/' &&
	       ((strncmp(s, "http://", 7) == 0 && n > 7) ||
	           (strncmp(s, "https://", 8) == 0 && n > 8));
}

static int
has_input(const struct tool *t, const char *name)
{
	for (size_t i = 0; i < t->ninputs; i++)
		if (strcmp(t->inputs[i].name, name) == 0)
			return 1;
	return 0;
}

static void
check_tool(const struct tools *ts, const struct tool *t)
{
	json_t *fields = json_object(), *empty = json_object();

	if (t->name == NULL || tools_find(ts, t->name) != t)
		fail("a tool that tools_find does not find");
	if (t->cost < 0 || t->nvariants == 0)
		fail("a tool without cost or variant passed tools_check");
	if (tool_variant(t, NULL) != &t->variants[0])
		fail("the default variant is not the first");
	for (size_t i = 0; i < t->nvariants; i++) {
		const struct tool_variant *v = &t->variants[i];

		if (v->app_id == NULL || *v->app_id == '\0')
			fail("a variant without an app id");
		for (size_t j = 0; j < v->nnodes; j++)
			if (!has_input(t, v->nodes[j].input))
				fail("a node for an undeclared input");
	}
	for (size_t i = 0; i < t->ninputs; i++) {
		const struct tool_input *in = &t->inputs[i];

		if (in->has_min && in->has_max && in->min > in->max)
			fail("an input with min > max");
		if (in->type == INPUT_CHOICE && in->nchoices == 0)
			fail("a choice input without choices");
	}
	tool_check_inputs(t, empty, fields);
	json_decref(fields);
	json_decref(empty);
}

static void
check_config(const struct config *c)
{
	json_t *tools;
	char *text;

	if (c->listen_host == NULL || *c->listen_host == '\0' ||
	    c->listen_port < 0 || c->listen_port > 65535)
		fail("bad listen address");
	if (!is_url(c->public_url) || !is_url(c->rh_base_url))
		fail("a URL with a trailing slash or no host");
	if (c->store_url == NULL || c->jwt_secret == NULL ||
	    *c->jwt_secret == '\0' || c->uploads_dir == NULL ||
	    c->rh_api_key == NULL)
		fail("a required string is missing");
	if (c->max_body < 1 || c->slots < 1 || c->per_user_active < 1 ||
	    c->queue_timeout < 1 || c->run_timeout < 1 ||
	    c->credits_initial < 0 || c->uploads_max < 1 ||
	    c->rh_poll_after < 1)
		fail("a number under its minimum");
	for (size_t i = 0; i < c->tools.n; i++)
		check_tool(&c->tools, &c->tools.v[i]);
	tools = tools_to_json(&c->tools);
	text = json_dumps(tools, JSON_COMPACT);
	if (text == NULL)
		fail("GET /v1/tools cannot be rendered");
	free(text);
	json_decref(tools);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t flen = nul ? (size_t)(nul - data) : size;
	char *sets[SETS_MAX], *rest = NULL, *line, *save = NULL;
	size_t nsets = 0;
	struct config cfg;
	char err[1024];

	if (fd < 0) {
		if ((fd = mkstemp(path)) < 0)
			fail("mkstemp");
		atexit(remove_file);
	}
	if (ftruncate(fd, 0) < 0 || pwrite(fd, data, flen, 0) != (ssize_t)flen)
		fail("cannot write the file");
	if (nul != NULL) {
		rest = strndup((const char *)nul + 1, size - flen - 1);
		for (line = strtok_r(rest, "\n", &save);
		     line != NULL && nsets < SETS_MAX;
		     line = strtok_r(NULL, "\n", &save))
			sets[nsets++] = line;
	}
	memset(err, 'x', sizeof err);
	if (config_load(&cfg, path, 0, sets, nsets, err, sizeof err) == 0) {
		check_config(&cfg);
		config_cleanup(&cfg);
	} else if (memchr(err, '\0', sizeof err) == NULL || err[0] == '\0') {
		fail("refused without a message");
	}
	free(rest);
	return 0;
}
