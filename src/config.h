/*
 * config.h — the configuration (docs/api.md §8–§11): built-in defaults (the
 * repository's fila.conf compiled in), then the file, then --set overrides.
 * Read-only once loaded.
 */
#ifndef FILA_CONFIG_H
#define FILA_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "tools.h"

/* One RunningHub account: a pool of slots (docs/api.md §9). */
struct account {
	char *name;
	char *base_url; /* no trailing slash */
	char *api_key;
	int64_t slots;
};

enum outputs_store { OUTPUTS_NONE, OUTPUTS_LOCAL, OUTPUTS_S3 };

struct config {
	char *listen_host;
	int listen_port;
	char *public_url; /* no trailing slash */
	int64_t max_body;
	char *cors_origins; /* "" same origin only, "*", or "O1 O2 …" */
	int64_t max_connections;

	char *store_url;
	char *store_schema; /* PostgreSQL: the schema fila's tables live in */

	char *jwt_secret; /* "": HS256 refused */
	char *jwks_url;   /* "": none */
	char *issuer;     /* "": not checked */
	char *audience;   /* "": not checked */
	char *admin_role;

	int64_t slots; /* the sum of the accounts' slots */
	int64_t per_user_active;
	int64_t queue_timeout; /* seconds */
	int64_t run_timeout;   /* seconds */
	int64_t max_wait;      /* seconds; 0: admission by wait is off */

	int64_t credits_initial;

	char *uploads_dir;
	int64_t uploads_max;

	char *rh_base_url; /* no trailing slash */
	char *rh_api_key;
	int64_t rh_poll_after;   /* seconds */
	int64_t rh_timeout;      /* seconds a provider call may take */
	int64_t rh_down_for;     /* seconds an unusable account rests */
	int64_t rh_status_every; /* seconds between account status calls */
	/* [runninghub.NAME] sections, in their order; without any, one
	 * account "default" of [runninghub] with queue.slots */
	struct account *accounts;
	size_t naccounts;

	char *hook_url;    /* [webhooks] url; "": none sent */
	char *hook_secret; /* whsec_<base64> */
	int hook_all;      /* events = all (else terminal only) */

	enum outputs_store outputs;
	char *outputs_dir;
	int64_t outputs_url_ttl; /* seconds */
	int64_t outputs_max;     /* bytes */
	char *s3_endpoint;       /* no trailing slash */
	char *s3_region;
	char *s3_bucket;
	char *s3_access_key;
	char *s3_secret_key;
	char *s3_prefix;

	/* [limits]: 0 is no limit */
	int64_t submits_per_minute;
	int64_t uploads_per_hour;
	int64_t upload_bytes_per_day;
	int64_t streams_per_user;
	int64_t upload_retention; /* seconds */

	struct tools tools;
};

/* The account named name, or NULL. */
const struct account *config_account(
    const struct config *cfg, const char *name);

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
