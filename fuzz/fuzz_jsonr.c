/*
 * fuzz_jsonr.c — libFuzzer target for jsonr, the JSON reader every request
 * body, token, provider answer and callback goes through: whatever the
 * bytes, it must accept exactly what jansson's json_loadb accepts under
 * the same flags, and make the same value (its compact text, types and
 * key order included), or say why it refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "jsonr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
shown(const json_t *v)
{
	return json_dumps(
	    v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t flags[] = {0, JSON_DECODE_ANY,
	    JSON_REJECT_DUPLICATES, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES};
	const char *text = (const char *)data;

	for (size_t f = 0; f < sizeof(flags) / sizeof(*flags); f++) {
		json_error_t e;
		json_t *want = json_loadb(text, size, flags[f], NULL);
		json_t *got = jsonr_loadb(text, size, flags[f], &e);

		if ((want == NULL) != (got == NULL)) {
			fprintf(stderr,
			    "fuzz_jsonr: flags %zu: jansson %s, jsonr %s\n",
			    flags[f], want ? "accepts" : "refuses",
			    got ? "accepts" : e.text);
			abort();
		}
		if (got == NULL && e.text[0] == '\0') {
			fprintf(
			    stderr, "fuzz_jsonr: refused without a reason\n");
			abort();
		}
		if (want != NULL) {
			char *a = shown(want), *b = shown(got);
			if (a == NULL || b == NULL || strcmp(a, b) != 0) {
				fprintf(stderr, "fuzz_jsonr: %s != %s\n", a, b);
				abort();
			}
			free(a);
			free(b);
		}
		json_decref(want);
		json_decref(got);
	}
	return 0;
}
