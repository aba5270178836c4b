/*
 * tools.h — the tool registry: each tool's inputs, variants, cost and the
 * mapping from its inputs to the provider's nodes. It is all configuration
 * (fila.conf); adding a tool never needs code.
 */
#ifndef FILA_TOOLS_H
#define FILA_TOOLS_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

enum input_type {
	INPUT_IMAGE,
	INPUT_VIDEO,
	INPUT_TEXT,
	INPUT_NUMBER,
	INPUT_CHOICE,
};

struct tool_input {
	char *name;
	enum input_type type;
	int required;
	int has_min, has_max;
	double min, max;
	char **choices; /* INPUT_CHOICE only */
	size_t nchoices;
};

/* Where one input goes at the provider: nodeInfoList {nodeId, fieldName}. */
struct tool_node {
	char *input;
	char *node_id;
	char *field;
};

/* A variant is one provider app; a tool without variants has one, unnamed. */
struct tool_variant {
	char *name; /* NULL for the single unnamed variant */
	char *app_id;
	struct tool_node *nodes;
	size_t nnodes;
};

struct tool {
	char *name;
	char *title;
	int64_t cost;
	struct tool_input *inputs;
	size_t ninputs;
	struct tool_variant *variants;
	size_t nvariants;
};

struct tools {
	struct tool *v;
	size_t n;
};

/* Free every tool and zero the registry. */
void tools_cleanup(struct tools *t);

/*
 * Apply one key of a [tool.NAME] section ("title", "cost", "input.X",
 * "variant.X", "app") to the registry, creating the tool on first sight.
 * Returns 0, or -1 with a reason for people in err.
 */
int tools_set(struct tools *t, const char *tool, const char *key,
    const char *value, char *err, size_t errlen);

/* Check the whole registry once parsed (every tool has a cost, an app per
 * variant, nodes naming declared inputs). 0, or -1 with err naming the tool. */
int tools_check(const struct tools *t, char *err, size_t errlen);

const struct tool *tools_find(const struct tools *t, const char *name);

/* The variant named, or the first (default) one when name is NULL;
 * NULL when there is no such variant. */
const struct tool_variant *tool_variant(
    const struct tool *tool, const char *name);

/* GET /v1/tools body: {"tools": [...]} (new reference). */
json_t *tools_to_json(const struct tools *t);

/*
 * Check a job's inputs object against the tool: missing required inputs,
 * unknown ones, wrong JSON types, numbers out of range, unknown choices.
 * Image and video inputs must be strings (upload ids); whether the upload
 * exists is the caller's business. Each problem is set in fields as
 * name → reason. Returns the number of problems.
 */
int tool_check_inputs(const struct tool *tool, json_t *inputs, json_t *fields);

/*
 * Check a job's body {tool, variant?, inputs, session_id?}: its shape,
 * the tool and variant named, then the inputs (tool_check_inputs). Returns
 * the tool, with *variant set to the variant's name (NULL for a tool
 * without variants); NULL when fields got a problem (name → reason).
 * Uploads named by the inputs are the caller's to check.
 */
const struct tool *tools_check_job(const struct tools *tools, json_t *body,
    const char **variant, json_t *fields);

#endif
