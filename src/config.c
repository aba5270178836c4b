/*
 * config.c — reads the configuration of docs/api.md §8–§11 in three layers: the
 * repository's fila.conf compiled in, the operator's file, then --set
 * overrides. Every layer goes through the same apply(); only the way an
 * error is located differs (FILE:LINE or the --set argument).
 *
 * inih reports the line of the first error only through its return value,
 * so the handler keeps the first error's text and parsing stops there; the
 * two are joined afterwards. inih never shows a section that has no keys, so
 * section headers are also scanned here, by hand, to refuse empty unknown
 * sections and to learn whether the file brings its own tools.
 */
#include "config.h"
#include "util.h"

#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_MAX 512
/* inih cuts longer section names short without a word (its MAX_SECTION). */
#define INI_SECTION_MAX 50

enum kind {
	K_INT,
	K_STR,
	K_URL,
	K_URL_OPT, /* a URL or empty */
	K_LISTEN,
	K_STORE,
	K_ORIGINS,
	K_MAX_WAIT, /* seconds, or empty: the queue_timeout */
	K_EVENTS,   /* terminal | all */
	K_OUTPUTS,  /* none | local | s3 */
	K_WHSEC,    /* whsec_<base64>, or empty */
};

struct key {
	const char *section;
	const char *name;
	enum kind kind;
	size_t off;       /* of the char * or int64_t in struct config */
	long long min;    /* K_INT */
	int may_be_empty; /* K_STR */
};

#define OFF(f) offsetof(struct config, f)

static const struct key keys[] = {
    {"server", "listen", K_LISTEN, 0, 0, 0},
    {"server", "public_url", K_URL, OFF(public_url), 0, 0},
    {"server", "max_body", K_INT, OFF(max_body), 1, 0},
    {"server", "cors_origins", K_ORIGINS, OFF(cors_origins), 0, 1},
    {"server", "max_connections", K_INT, OFF(max_connections), 16, 0},
    {"store", "url", K_STORE, OFF(store_url), 0, 0},
    {"store", "schema", K_STR, OFF(store_schema), 0, 0},
    {"auth", "jwt_secret", K_STR, OFF(jwt_secret), 0, 1},
    {"auth", "jwks_url", K_URL_OPT, OFF(jwks_url), 0, 1},
    {"auth", "issuer", K_STR, OFF(issuer), 0, 1},
    {"auth", "audience", K_STR, OFF(audience), 0, 1},
    {"auth", "admin_role", K_STR, OFF(admin_role), 0, 0},
    {"queue", "slots", K_INT, OFF(slots), 1, 0},
    {"queue", "per_user_active", K_INT, OFF(per_user_active), 1, 0},
    {"queue", "queue_timeout", K_INT, OFF(queue_timeout), 1, 0},
    {"queue", "run_timeout", K_INT, OFF(run_timeout), 1, 0},
    {"queue", "max_wait", K_MAX_WAIT, OFF(max_wait), 0, 0},
    {"credits", "initial", K_INT, OFF(credits_initial), 0, 0},
    {"uploads", "dir", K_STR, OFF(uploads_dir), 0, 0},
    {"uploads", "max_bytes", K_INT, OFF(uploads_max), 1, 0},
    {"runninghub", "base_url", K_URL, OFF(rh_base_url), 0, 0},
    {"runninghub", "api_key", K_STR, OFF(rh_api_key), 0, 1},
    {"runninghub", "poll_after", K_INT, OFF(rh_poll_after), 1, 0},
    {"runninghub", "timeout", K_INT, OFF(rh_timeout), 1, 0},
    {"runninghub", "down_for", K_INT, OFF(rh_down_for), 1, 0},
    {"runninghub", "status_every", K_INT, OFF(rh_status_every), 1, 0},
    {"webhooks", "url", K_URL_OPT, OFF(hook_url), 0, 1},
    {"webhooks", "secret", K_WHSEC, OFF(hook_secret), 0, 1},
    {"webhooks", "events", K_EVENTS, OFF(hook_all), 0, 0},
    {"outputs", "store", K_OUTPUTS, OFF(outputs), 0, 0},
    {"outputs", "dir", K_STR, OFF(outputs_dir), 0, 0},
    {"outputs", "url_ttl", K_INT, OFF(outputs_url_ttl), 1, 0},
    {"outputs", "max_bytes", K_INT, OFF(outputs_max), 1, 0},
    {"outputs", "s3_endpoint", K_URL_OPT, OFF(s3_endpoint), 0, 1},
    {"outputs", "s3_region", K_STR, OFF(s3_region), 0, 0},
    {"outputs", "s3_bucket", K_STR, OFF(s3_bucket), 0, 1},
    {"outputs", "s3_access_key", K_STR, OFF(s3_access_key), 0, 1},
    {"outputs", "s3_secret_key", K_STR, OFF(s3_secret_key), 0, 1},
    {"outputs", "s3_prefix", K_STR, OFF(s3_prefix), 0, 1},
    {"limits", "submits_per_minute", K_INT, OFF(submits_per_minute), 0, 0},
    {"limits", "uploads_per_hour", K_INT, OFF(uploads_per_hour), 0, 0},
    {"limits", "upload_bytes_per_day", K_INT, OFF(upload_bytes_per_day), 0, 0},
    {"limits", "streams_per_user", K_INT, OFF(streams_per_user), 0, 0},
    {"limits", "upload_retention", K_INT, OFF(upload_retention), 0, 0},
};

#define NKEYS (sizeof(keys) / sizeof(*keys))

struct loader {
	struct config *cfg;
	int from_file;             /* tool input/variant keys must not repeat */
	unsigned char seen[NKEYS]; /* every key must get a value somewhere */
	char msg[MSG_MAX];         /* the first error, not yet located */
};

static int failf(struct loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Keep the first error only: it is the one inih gives the line of. */
static int
failf(struct loader *ld, const char *fmt, ...)
{
	va_list ap;

	if (ld->msg[0] != '\0')
		return -1;
	va_start(ap, fmt);
	vsnprintf(ld->msg, sizeof(ld->msg), fmt, ap);
	va_end(ap);
	return -1;
}

static int
bad_value(struct loader *ld, const struct key *k, const char *expected,
    const char *value)
{
	return failf(ld, "[%s] %s: expected %s, got \"%s\"", k->section,
	    k->name, expected, value);
}

static void
replace(char **slot, char *s)
{
	free(*slot);
	*slot = s;
}

static int
set_int(struct loader *ld, const struct key *k, const char *value)
{
	long long n;
	char expected[64];

	if (parse_ll(value, &n) < 0 || n < k->min) {
		snprintf(
		    expected, sizeof(expected), "an integer >= %lld", k->min);
		return bad_value(ld, k, expected, value);
	}
	*(int64_t *)((char *)ld->cfg + k->off) = n;
	return 0;
}

/* An http:// or https:// URL without its trailing slashes (a copy), or
 * NULL when value is not one. */
static char *
url_of(const char *value)
{
	size_t scheme, len = strlen(value);

	if (strncmp(value, "http://", 7) == 0)
		scheme = 7;
	else if (strncmp(value, "https://", 8) == 0)
		scheme = 8;
	else
		return NULL;
	while (len > scheme && value[len - 1] == '/')
		len--;
	return len == scheme ? NULL : xstrndup(value, len);
}

static int
set_url(struct loader *ld, const struct key *k, const char *value)
{
	char *url = url_of(value);

	if (url == NULL)
		return bad_value(ld, k, "an http:// or https:// URL", value);
	replace((char **)((char *)ld->cfg + k->off), url);
	return 0;
}

static int
set_url_opt(struct loader *ld, const struct key *k, const char *value)
{
	if (*value != '\0')
		return set_url(ld, k, value);
	replace((char **)((char *)ld->cfg + k->off), xstrdup(""));
	return 0;
}

/* Seconds, or empty for "as long as a job may wait" (resolved once all
 * is read: -1 until then). */
static int
set_max_wait(struct loader *ld, const struct key *k, const char *value)
{
	if (*value == '\0') {
		*(int64_t *)((char *)ld->cfg + k->off) = -1;
		return 0;
	}
	return set_int(ld, k, value);
}

/* One of names (NULL-ended): its index into the int at k->off. */
static int
set_choice(struct loader *ld, const struct key *k, const char *value,
    const char *const *names, const char *expected)
{
	for (int i = 0; names[i]; i++)
		if (strcmp(value, names[i]) == 0) {
			*(int *)((char *)ld->cfg + k->off) = i;
			return 0;
		}
	return bad_value(ld, k, expected, value);
}

static int
set_events(struct loader *ld, const struct key *k, const char *value)
{
	static const char *const names[] = {"terminal", "all", NULL};
	return set_choice(ld, k, value, names, "terminal or all");
}

static int
set_outputs(struct loader *ld, const struct key *k, const char *value)
{
	static const char *const names[] = {"none", "local", "s3", NULL};
	return set_choice(ld, k, value, names, "none, local or s3");
}

/* The Standard Webhooks form of a secret: whsec_ and base64 (or empty). */
static int
set_whsec(struct loader *ld, const struct key *k, const char *value)
{
	int prefixed = strncmp(value, "whsec_", 6) == 0;
	const char *b = prefixed ? value + 6 : value;
	size_t n = strlen(b);

	if (*value != '\0' &&
	    (!prefixed || n < 4 || n % 4 != 0 ||
	        strspn(b, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
	                  "wxyz0123456789+/=") != n))
		return bad_value(ld, k, "whsec_ followed by base64", value);
	replace((char **)((char *)ld->cfg + k->off), xstrdup(value));
	return 0;
}

static int
set_store(struct loader *ld, const struct key *k, const char *value)
{
	if (strncmp(value, "sqlite:", 7) != 0 &&
	    strncmp(value, "postgres://", 11) != 0 &&
	    strncmp(value, "postgresql://", 13) != 0)
		return bad_value(ld, k,
		    "sqlite:PATH or postgres://USER:PASS@HOST/DB", value);
	replace((char **)((char *)ld->cfg + k->off), xstrdup(value));
	return 0;
}

static int
set_str(struct loader *ld, const struct key *k, const char *value)
{
	if (*value == '\0' && !k->may_be_empty)
		return failf(
		    ld, "[%s] %s: must not be empty", k->section, k->name);
	replace((char **)((char *)ld->cfg + k->off), xstrdup(value));
	return 0;
}

/* One origin as a browser sends it: scheme://host[:port], nothing after. */
static int
is_origin(const char *o, size_t len)
{
	size_t scheme = strncmp(o, "http://", 7) == 0    ? 7
	                : strncmp(o, "https://", 8) == 0 ? 8
	                                                 : 0;

	if (scheme == 0 || len == scheme)
		return 0;
	for (size_t i = scheme; i < len; i++)
		if (!(o[i] == '.' || o[i] == '-' || o[i] == ':' ||
		        o[i] == '[' || o[i] == ']' ||
		        (o[i] >= '0' && o[i] <= '9') ||
		        (o[i] >= 'a' && o[i] <= 'z')))
			return 0;
	return 1;
}

/* Empty (same origin only), "*", or origins separated by spaces; kept
 * with single spaces between them. */
static int
set_origins(struct loader *ld, const struct key *k, const char *value)
{
	char *out = xcalloc(1, strlen(value) + 1);
	size_t n = 0;

	if (strcmp(value, "*") == 0) {
		replace((char **)((char *)ld->cfg + k->off), xstrdup("*"));
		free(out);
		return 0;
	}
	for (const char *p = value; *p;) {
		size_t len = strcspn(p, " \t");
		if (len == 0) {
			p++;
			continue;
		}
		if (!is_origin(p, len)) {
			free(out);
			return bad_value(ld, k,
			    "\"*\" or origins like https://app.example.com"
			    " (lowercase, no path) separated by spaces",
			    value);
		}
		if (n)
			out[n++] = ' ';
		memcpy(out + n, p, len);
		n += len;
		p += len;
	}
	replace((char **)((char *)ld->cfg + k->off), out);
	return 0;
}

/* "HOST:PORT" or "[IPV6]:PORT"; host kept without the brackets. */
static int
set_listen(struct loader *ld, const struct key *k, const char *value)
{
	const char *colon, *host = value;
	size_t hostlen;
	long long port;

	if (value[0] == '[') {
		const char *close = strchr(value, ']');
		colon = close && close[1] == ':' ? close + 1 : NULL;
		host = value + 1;
		hostlen = close ? (size_t)(close - host) : 0;
	} else {
		colon = strrchr(value, ':');
		hostlen = colon ? (size_t)(colon - value) : 0;
		if (memchr(value, ':', hostlen) != NULL)
			colon = NULL;
	}
	if (colon == NULL || hostlen == 0 || parse_ll(colon + 1, &port) < 0 ||
	    port < 0 || port > 65535)
		return bad_value(
		    ld, k, "HOST:PORT with a port 0..65535", value);
	replace(&ld->cfg->listen_host, xstrndup(host, hostlen));
	ld->cfg->listen_port = (int)port;
	return 0;
}

/* Within one file an input or variant named twice is a mistake; from
 * --set it is the way to edit one. */
static int
defined_before(const struct tool *t, const char *key)
{
	if (strncmp(key, "variant.", 8) == 0)
		return tool_variant(t, key + 8) != NULL;
	if (strncmp(key, "input.", 6) != 0)
		return 0;
	for (size_t i = 0; i < t->ninputs; i++)
		if (strcmp(t->inputs[i].name, key + 6) == 0)
			return 1;
	return 0;
}

static int
set_tool(
    struct loader *ld, const char *tool, const char *key, const char *value)
{
	const struct tool *t = tools_find(&ld->cfg->tools, tool);
	char why[MSG_MAX];

	if (ld->from_file && t != NULL && defined_before(t, key))
		return failf(ld, "[tool.%s] %s: defined twice", tool, key);
	if (tools_set(&ld->cfg->tools, tool, key, value, why, sizeof(why)) < 0)
		return failf(ld, "%s", why);
	return 0;
}

/* A name that can stand in a section header and a metric label. */
static int
name_ok(const char *name)
{
	size_t n = strlen(name);

	return n > 0 && n <= 32 &&
	       strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static struct account *
account_get(struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->naccounts; i++)
		if (strcmp(cfg->accounts[i].name, name) == 0)
			return &cfg->accounts[i];
	cfg->accounts = xrealloc(
	    cfg->accounts, (cfg->naccounts + 1) * sizeof(*cfg->accounts));
	struct account *a = &cfg->accounts[cfg->naccounts++];
	memset(a, 0, sizeof(*a));
	a->name = xstrdup(name);
	return a;
}

/* A key of [runninghub.NAME]: base_url, api_key or slots. */
static int
set_account(
    struct loader *ld, const char *name, const char *key, const char *value)
{
	struct account *a;
	char *url;
	long long n;

	if (!name_ok(name))
		return failf(ld,
		    "[runninghub.%s]: an account name is 1 to 32 of a-z 0-9 _ "
		    "-",
		    name);
	a = account_get(ld->cfg, name);
	if (strcmp(key, "api_key") == 0) {
		replace(&a->api_key, xstrdup(value));
	} else if (strcmp(key, "base_url") == 0) {
		if ((url = url_of(value)) == NULL)
			return failf(ld,
			    "[runninghub.%s] base_url: expected an"
			    " http:// or https:// URL, got \"%s\"",
			    name, value);
		replace(&a->base_url, url);
	} else if (strcmp(key, "slots") == 0) {
		if (parse_ll(value, &n) < 0 || n < 1)
			return failf(ld,
			    "[runninghub.%s] slots: expected an integer >= 1,"
			    " got \"%s\"",
			    name, value);
		a->slots = n;
	} else {
		return failf(
		    ld, "unknown key \"%s\" in [runninghub.%s]", key, name);
	}
	return 0;
}

/* One key from any layer; 0, or -1 with the reason in ld->msg. */
static int
apply(
    struct loader *ld, const char *section, const char *name, const char *value)
{
	static int (*const setters[])(
	    struct loader *, const struct key *, const char *) = {
	    [K_INT] = set_int,
	    [K_STR] = set_str,
	    [K_URL] = set_url,
	    [K_LISTEN] = set_listen,
	    [K_STORE] = set_store,
	    [K_ORIGINS] = set_origins,
	    [K_URL_OPT] = set_url_opt,
	    [K_MAX_WAIT] = set_max_wait,
	    [K_EVENTS] = set_events,
	    [K_OUTPUTS] = set_outputs,
	    [K_WHSEC] = set_whsec,
	};
	int known_section = 0;

	if (strncmp(section, "tool.", 5) == 0)
		return set_tool(ld, section + 5, name, value);
	if (strncmp(section, "runninghub.", 11) == 0)
		return set_account(ld, section + 11, name, value);
	if (*section == '\0')
		return failf(ld, "key \"%s\" is outside any section", name);
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(keys[i].section, section) != 0)
			continue;
		known_section = 1;
		if (strcmp(keys[i].name, name) == 0) {
			ld->seen[i] = 1;
			return setters[keys[i].kind](ld, &keys[i], value);
		}
	}
	if (!known_section)
		return failf(ld, "unknown section [%s]", section);
	return failf(ld, "unknown key \"%s\" in [%s]", name, section);
}

static int
on_ini_key(void *user, const char *section, const char *name, const char *value)
{
	return apply(user, section, name, value) == 0;
}

static int
section_known(const char *name)
{
	if (strncmp(name, "tool.", 5) == 0 ||
	    strncmp(name, "runninghub.", 11) == 0)
		return 1;
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].section, name) == 0)
			return 1;
	return 0;
}

/* Why a section header is wrong, or NULL when it is not. Unknown sections
 * are caught here so that the message points at the header itself. */
static const char *
section_problem(const char *name, int has_keys, char *buf, size_t len)
{
	if ((strncmp(name, "tool.", 5) == 0 ||
	        strncmp(name, "runninghub.", 11) == 0) &&
	    !has_keys)
		snprintf(buf, len, "section [%s] has no keys", name);
	else if (!section_known(name))
		snprintf(buf, len, "unknown section [%s]", name);
	else
		return NULL;
	return buf;
}

/*
 * Walk the section headers of text as inih sees them. Returns the line of
 * the first header that is wrong (0 if none), with the reason in msg;
 * *has_tools tells whether any [tool.…] section appears.
 */
static int
scan_sections(const char *text, int *has_tools, char *msg, size_t msglen)
{
	char name[INI_SECTION_MAX] = "";
	int line = 0, header_line = 0, keys_seen = 0;
	const char *next;

	*has_tools = 0;
	if (strncmp(text, "\xEF\xBB\xBF", 3) == 0)
		text += 3;
	for (const char *p = text; *p != '\0'; p = next) {
		const char *s = p + strspn(p, " \t\r");
		size_t len = strcspn(s, "]\n");

		next = p + strcspn(p, "\n");
		next += *next == '\n';
		line++;
		if (*s == '\n' || *s == '\0' || *s == ';' || *s == '#')
			continue;
		if (*s != '[' || s[len] != ']') {
			keys_seen = 1;
			continue;
		}
		if (header_line > 0 &&
		    section_problem(name, keys_seen, msg, msglen))
			return header_line;
		if (len - 1 >= sizeof(name)) {
			snprintf(msg, msglen,
			    "section name [%.*s] is longer than %zu bytes",
			    (int)len - 1, s + 1, sizeof(name) - 1);
			return line;
		}
		snprintf(name, sizeof(name), "%.*s", (int)len - 1, s + 1);
		*has_tools |= strncmp(name, "tool.", 5) == 0;
		header_line = line;
		keys_seen = 0;
	}
	if (header_line > 0 && section_problem(name, keys_seen, msg, msglen))
		return header_line;
	return 0;
}

/* inih's defaults would cut lines at 200 bytes without a word and take an
 * indented "key = value" for the continuation of the key before it. */
static void
ini_setup(void)
{
	ini_use_stack = 0;
	ini_allow_realloc = 1;
	ini_max_line = 1 << 20;
	ini_allow_multiline = 0;
	ini_stop_on_first_error = 1;
	ini_allow_inline_comments = 1;
}

/* Parse one INI text; file names it in messages. */
static int
load_text(struct loader *ld, const char *file, const char *text, int user,
    char *err, size_t errlen)
{
	char scan_msg[MSG_MAX];
	int has_tools, bad_header, line;

	bad_header =
	    scan_sections(text, &has_tools, scan_msg, sizeof(scan_msg));
	if (user && has_tools)
		tools_cleanup(&ld->cfg->tools);
	ld->from_file = 1;
	ld->msg[0] = '\0';
	line = ini_parse_string(text, on_ini_key, ld);
	if (bad_header > 0 && (line <= 0 || bad_header < line)) {
		snprintf(err, errlen, "%s:%d: %s", file, bad_header, scan_msg);
		return -1;
	}
	if (line == 0)
		return 0;
	if (line < 0)
		snprintf(err, errlen, "%s: cannot parse (%d)", file, line);
	else if (ld->msg[0] != '\0')
		snprintf(err, errlen, "%s:%d: %s", file, line, ld->msg);
	else
		snprintf(err, errlen,
		    "%s:%d: expected [SECTION] or KEY = VALUE", file, line);
	return -1;
}

/* The whole file, or NULL with errno set. */
static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return NULL;
	do {
		if (cap - len < 4096)
			buf = xrealloc(buf, cap = cap * 2 + 4096);
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0);
	if (ferror(f)) {
		int e = errno ? errno : EIO;
		fclose(f);
		free(buf);
		errno = e;
		return NULL;
	}
	fclose(f);
	buf[len] = '\0';
	return buf;
}

static int
load_file(struct loader *ld, const char *path, int missing_ok, char *err,
    size_t errlen)
{
	char *text = read_file(path);
	int rc;

	if (text == NULL) {
		if (errno == ENOENT && missing_ok)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = load_text(ld, path, text, 1, err, errlen);
	free(text);
	return rc;
}

/* The dot that ends the section of "SECTION.KEY=VALUE" (eq at '='): the
 * last one, so sections may have dots (runninghub.main.slots), but for a
 * tool's inputs and variants, whose keys have one (tool.NAME.input.X). */
static const char *
section_end(const char *arg, const char *eq)
{
	const char *dot = NULL, *p;

	for (p = arg; p < eq; p++)
		if (*p == '.')
			dot = p;
	if (dot == NULL || strncmp(arg, "tool.", 5) != 0)
		return dot;
	p = strchr(arg + 5, '.');
	if (p != NULL && p < dot &&
	    (strncmp(p + 1, "input.", 6) == 0 ||
	        strncmp(p + 1, "variant.", 8) == 0))
		return p;
	return dot;
}

/* "SECTION.KEY=VALUE", where SECTION may be tool.NAME or runninghub.NAME. */
static int
load_set(struct loader *ld, const char *arg, char *err, size_t errlen)
{
	const char *eq = strchr(arg, '='), *dot;
	char *section = NULL, *key = NULL;
	int rc = -1;

	dot = eq ? section_end(arg, eq) : NULL;
	if (eq == NULL || dot == NULL || dot > eq || dot == arg ||
	    dot + 1 == eq) {
		snprintf(
		    err, errlen, "--set %s: expected SECTION.KEY=VALUE", arg);
		return -1;
	}
	section = xstrndup(arg, (size_t)(dot - arg));
	key = xstrndup(dot + 1, (size_t)(eq - dot - 1));
	ld->from_file = 0;
	ld->msg[0] = '\0';
	if (apply(ld, section, key, eq + 1) < 0)
		snprintf(err, errlen, "--set %s: %s", arg, ld->msg);
	else
		rc = 0;
	free(section);
	free(key);
	return rc;
}

/* What depends on several keys, once all are read: the accounts (their
 * missing base_url and api_key are [runninghub]'s; without any, the one
 * of [runninghub] with queue.slots), max_wait, a way to verify tokens. */
static int
settle(struct config *cfg, char *err, size_t errlen)
{
	if (cfg->naccounts == 0) {
		struct account *a = account_get(cfg, "default");
		a->slots = cfg->slots;
	}
	cfg->slots = 0;
	for (size_t i = 0; i < cfg->naccounts; i++) {
		struct account *a = &cfg->accounts[i];
		if (a->slots == 0) {
			snprintf(err, errlen,
			    "[runninghub.%s] slots: no value"
			    " given",
			    a->name);
			return -1;
		}
		if (a->base_url == NULL)
			a->base_url = xstrdup(cfg->rh_base_url);
		if (a->api_key == NULL)
			a->api_key = xstrdup(cfg->rh_api_key);
		cfg->slots += a->slots;
	}
	if (cfg->max_wait < 0)
		cfg->max_wait = cfg->queue_timeout;
	if (*cfg->jwt_secret == '\0' && *cfg->jwks_url == '\0') {
		snprintf(err, errlen,
		    "[auth] jwt_secret: empty, and no"
		    " jwks_url: no token could be verified");
		return -1;
	}
	if (*cfg->hook_url != '\0' && *cfg->hook_secret == '\0') {
		snprintf(err, errlen,
		    "[webhooks] secret: empty, but url is set: the app could"
		    " not tell fila's webhooks from anyone's (whsec_…)");
		return -1;
	}
	if (cfg->outputs == OUTPUTS_S3) {
		const char *need[][2] = {{"s3_endpoint", cfg->s3_endpoint},
		    {"s3_bucket", cfg->s3_bucket},
		    {"s3_access_key", cfg->s3_access_key},
		    {"s3_secret_key", cfg->s3_secret_key}};
		for (size_t i = 0; i < sizeof(need) / sizeof(*need); i++)
			if (*need[i][1] == '\0') {
				snprintf(err, errlen,
				    "[outputs] %s: empty, but store = s3",
				    need[i][0]);
				return -1;
			}
	}
	return 0;
}

const struct account *
config_account(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->naccounts; i++)
		if (strcmp(cfg->accounts[i].name, name) == 0)
			return &cfg->accounts[i];
	return NULL;
}

static int
check_all_set(const struct loader *ld, char *err, size_t errlen)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (!ld->seen[i]) {
			snprintf(err, errlen, "[%s] %s: no value given",
			    keys[i].section, keys[i].name);
			return -1;
		}
	return 0;
}

int
config_load(struct config *cfg, const char *path, int missing_ok,
    char *const *sets, size_t nsets, char *err, size_t errlen)
{
	struct loader ld = {.cfg = cfg};

	memset(cfg, 0, sizeof(*cfg));
	ini_setup();
	if (load_text(&ld, "<built-in>", config_builtin, 0, err, errlen) < 0)
		goto fail;
	if (path != NULL && load_file(&ld, path, missing_ok, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < nsets; i++)
		if (load_set(&ld, sets[i], err, errlen) < 0)
			goto fail;
	if (check_all_set(&ld, err, errlen) < 0 ||
	    tools_check(&cfg->tools, err, errlen) < 0 ||
	    settle(cfg, err, errlen) < 0)
		goto fail;
	return 0;
fail:
	config_cleanup(cfg);
	return -1;
}

void
config_cleanup(struct config *cfg)
{
	free(cfg->listen_host);
	free(cfg->public_url);
	free(cfg->cors_origins);
	free(cfg->store_url);
	free(cfg->jwt_secret);
	free(cfg->uploads_dir);
	free(cfg->rh_base_url);
	free(cfg->rh_api_key);
	for (size_t i = 0; i < cfg->naccounts; i++) {
		free(cfg->accounts[i].name);
		free(cfg->accounts[i].base_url);
		free(cfg->accounts[i].api_key);
	}
	free(cfg->accounts);
	free(cfg->store_schema);
	free(cfg->jwks_url);
	free(cfg->issuer);
	free(cfg->audience);
	free(cfg->admin_role);
	free(cfg->hook_url);
	free(cfg->hook_secret);
	free(cfg->outputs_dir);
	free(cfg->s3_endpoint);
	free(cfg->s3_region);
	free(cfg->s3_bucket);
	free(cfg->s3_access_key);
	free(cfg->s3_secret_key);
	free(cfg->s3_prefix);
	tools_cleanup(&cfg->tools);
	memset(cfg, 0, sizeof(*cfg));
}
