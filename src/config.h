/*
 * config.h — the configuration (docs/api.md §8): built-in defaults (the
 * repository's fila.conf compiled in), then the file, then --set overrides.
 * Read-only once loaded.
 */
#ifndef FILA_CONFIG_H
#define FILA_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "tools.h"

struct config {
	char *listen_host;
	int listen_port;
	char *public_url; /* no trailing slash */
	int64_t max_body;
	char *cors_origins; /* "" same origin only, "*", or "O1 O2 …" */

	char *store_url;

	char *jwt_secret;

	int64_t slots;
	int64_t per_user_active;
	int64_t queue_timeout; /* seconds */
	int64_t run_timeout;   /* seconds */

	int64_t credits_initial;

	char *uploads_dir;
	int64_t uploads_max;

	char *rh_base_url; /* no trailing slash */
	char *rh_api_key;
	int64_t rh_poll_after; /* seconds */
	int64_t rh_timeout;    /* seconds a provider call may take */

	struct tools tools;
};

/* The repository's fila.conf, compiled in (NUL-terminated). */
extern const char config_builtin[];

/*
 * Load defaults, then path (a missing file is fine when missing_ok), then
 * each "SECTION.KEY=VALUE" of sets. On error returns -1 with a message
 * naming file, line and key in err; cfg is then cleaned up.
 */
int config_load(struct config *cfg, const char *path, int missing_ok,
    char *const *sets, size_t nsets, char *err, size_t errlen);

/* Free what a loaded config owns. */
void config_cleanup(struct config *cfg);

#endif
