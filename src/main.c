/*
 * main.c — the commands (`fila serve`, `token`, `check`, `help`): read the
 * configuration, wire the modules together on one event loop, and stop
 * cleanly on SIGTERM/SIGINT (stop accepting, answer what is in flight,
 * close the store).
 */
#include <arpa/inet.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "api.h"
#include "auth.h"
#include "check.h"
#include "config.h"
#include "curlev.h"
#include "events.h"
#include "hooks.h"
#include "http.h"
#include "mem.h"
#include "metrics.h"
#include "outputs.h"
#include "pool.h"
#include "sched.h"
#include "store.h"
#include "sweep.h"
#include "watchdog.h"
#include "util.h"

#define WATCHDOG_TICK_MS 500
#define FILA_VERSION "0.5.0"
#define BUILTIN_SECRET "dev-secret-change-me" /* fila.conf's */
#define SECRET_MIN 32
#define TOKEN_TTL_S 86400 /* fila token's default */

struct args {
	const char *config;
	int config_given;
	char **sets;
	size_t nsets;
	const char *user;
	int admin;
	long long ttl;
};

/* The commands and what each says of itself (fila help CMD). */
static const struct command {
	const char *name;
	const char *synopsis;
	const char *text;
} commands[] = {
    {"serve", "fila serve [--config FILE] [--set SECTION.KEY=VALUE]...",
        "Serve the API, the pages and the provider's webhooks until SIGTERM\n"
        "or SIGINT. FILE defaults to ./fila.conf, else the built-in\n"
        "configuration; each --set overrides one key (the last dot splits\n"
        "the section from the key: --set runninghub.main.slots=2).\n"},
    {"token",
        "fila token --user ID [--admin] [--ttl SECONDS] [--config FILE] "
        "[--set ...]",
        "Print an HS256 token for user ID signed with auth.jwt_secret,\n"
        "valid for --ttl seconds (default 86400; 0: never expires, which\n"
        "is a risk). --admin gives it the admin role.\n"},
    {"check", "fila check [--config FILE] [--set ...]",
        "Read the store in one snapshot and check its invariants (credits,\n"
        "charges and refunds, slots, stuck jobs, uploads, the event log).\n"
        "Exits 0 when every rule holds, 1 with one line per breach, 2 when\n"
        "the store cannot be read. Safe beside live processes.\n"},
    {"help", "fila help [COMMAND]", "Say what COMMAND (or fila) does.\n"},
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const struct command *
command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* Asked for: the help of c (or of them all) on stdout, exit 0. */
static void
help(const struct command *c)
{
	if (c != NULL) {
		printf("usage: %s\n\n%s", c->synopsis, c->text);
	} else {
		printf("fila %s: a job gateway for AI tools (docs/api.md)\n\n",
		    FILA_VERSION);
		for (size_t i = 0; i < NCOMMANDS; i++)
			printf("  %s\n", commands[i].synopsis);
		printf("\nfila help COMMAND says more.\n");
	}
	exit(0);
}

/* A command line that does not parse: its command's usage on stderr. */
static void
usage(const struct command *c)
{
	fprintf(stderr, "usage: %s\n", c->synopsis);
	exit(2);
}

static void
parse_args(int argc, char **argv, const struct command *c, struct args *a)
{
	a->config = "fila.conf";
	a->ttl = TOKEN_TTL_S;
	a->sets = xcalloc((size_t)argc, sizeof(char *));
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--help") == 0 || strcmp(o, "-h") == 0)
			help(c);
		if (strcmp(o, "--admin") == 0) {
			a->admin = 1;
			continue;
		}
		if (v == NULL)
			usage(c);
		i++;
		if (strcmp(o, "--config") == 0) {
			a->config = v;
			a->config_given = 1;
		} else if (strcmp(o, "--set") == 0) {
			a->sets[a->nsets++] = (char *)v;
		} else if (strcmp(o, "--user") == 0) {
			a->user = v;
		} else if (strcmp(o, "--ttl") == 0) {
			if (parse_ll(v, &a->ttl) || a->ttl < 0)
				usage(c);
		} else {
			usage(c);
		}
	}
}

static int
cmd_token(const struct config *cfg, const struct args *a)
{
	int64_t exp = a->ttl ? (int64_t)time(NULL) + a->ttl : 0;
	char *tok;

	if (a->user == NULL || *a->user == '\0')
		usage(command("token"));
	if (*cfg->jwt_secret == '\0') {
		fprintf(stderr,
		    "fila: auth.jwt_secret is empty: no HS256 token"
		    " can be made (the JWKS's keys sign elsewhere)\n");
		return 2;
	}
	if (exp == 0)
		fprintf(stderr,
		    "fila: warning: --ttl 0: this token never"
		    " expires; whoever holds it keeps its rights\n");
	/* The admin role by its configured name (auth.admin_role). */
	struct auth_opts ao = {
	    .secret = cfg->jwt_secret, .admin_role = cfg->admin_role};
	struct auth *signer = auth_new(&ao);
	tok = signer ? auth_token(signer, a->user, a->admin, exp) : NULL;
	auth_free(signer);
	if (tok == NULL) {
		fprintf(stderr, "fila: cannot sign a token for that user id\n");
		return 2;
	}
	puts(tok);
	free(tok);
	return 0;
}

/* Verify the store's invariants: 0 clean, 1 breaches, 2 unreadable. The
 * count itself is not the status: 256 breaches would exit 0. */
static int
cmd_check(const struct config *cfg)
{
	int n = check_store(cfg, stdout);
	return n == 0 ? 0 : n < 0 ? 2 : 1;
}

struct daemon {
	struct event_base *base;
	struct http_server *http;
	int stopping;
};

static void
drained(void *arg)
{
	struct daemon *d = arg;
	event_base_loopexit(d->base, NULL);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	if (d->stopping++) {
		event_base_loopexit(d->base, NULL);
		return;
	}
	fprintf(stderr, "fila: signal %d, stopping\n", (int)sig);
	http_server_drain(d->http, drained, d);
}

/* Every event stream is a socket: allow as many as the hard limit does. */
static void
raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* This process's name among those sharing the store: its host and the
 * address it serves, the same after a restart, so a process started again
 * takes back at once what it carried (docs/design.md, leases). */
static void
process_name(const struct config *cfg, char *buf, size_t len)
{
	char host[256] = "localhost";

	gethostname(host, sizeof(host) - 1);
	snprintf(
	    buf, len, "%s/%s:%d", host, cfg->listen_host, cfg->listen_port);
}

/* 1 when host is a loopback address (or localhost). */
static int
loopback(const char *host)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (strcmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, host, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6);
	return 0;
}

/* A secret anyone could guess, on an address anyone can reach: anyone
 * could sign tokens, an admin's too. 0, or -1 with err set. */
static int
weak_secret(const struct config *cfg, char *err, size_t errlen)
{
	const char *s = cfg->jwt_secret;

	if (loopback(cfg->listen_host) || *s == '\0')
		return 0;
	if (strcmp(s, BUILTIN_SECRET) != 0 && strlen(s) >= SECRET_MIN)
		return 0;
	snprintf(err, errlen,
	    "[auth] jwt_secret: %s, and [server] listen = %s is reachable"
	    " from other machines: anyone could sign tokens, an admin's too."
	    " Set a random secret of %d bytes or more (openssl rand -hex 32),"
	    " or leave it empty and set jwks_url",
	    strcmp(s, BUILTIN_SECRET) == 0 ? "the built-in secret"
	                                   : "shorter than 32 bytes",
	    cfg->listen_host, SECRET_MIN);
	return -1;
}

/* The store's URL as it may be logged: a password becomes "***". */
static char *
url_masked(const char *url)
{
	char *out = xstrdup(url), *at, *colon, *p;
	const char *scheme = strstr(out, "://");

	if (scheme && (at = strchr(scheme + 3, '@')) != NULL &&
	    (colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3)))) {
		char *t = xasprintf("%.*s:***%s", (int)(colon - out), out, at);
		free(out);
		out = t;
	}
	if ((p = strstr(out, "password=")) != NULL) {
		char *end = p + strcspn(p, "&");
		char *t =
		    xasprintf("%.*spassword=***%s", (int)(p - out), out, end);
		free(out);
		out = t;
	}
	return out;
}

/* What fila runs with, a line each (docs/api.md §11). */
static void
say_setup(const struct config *cfg, const struct args *a)
{
	int read = a->config_given || access(a->config, F_OK) == 0;
	char *url = url_masked(cfg->store_url);

	fprintf(stderr, "fila: version %s\n", FILA_VERSION);
	fprintf(stderr, "fila: config %s\n",
	    read ? a->config : "built-in defaults");
	fprintf(stderr, "fila: store %s%s%s\n", url,
	    strncmp(url, "sqlite:", 7) ? ", schema " : "",
	    strncmp(url, "sqlite:", 7) ? cfg->store_schema : "");
	fprintf(stderr, "fila: accounts");
	for (size_t i = 0; i < cfg->naccounts; i++)
		fprintf(stderr, "%s %s (%lld slot%s, %s)", i ? "," : "",
		    cfg->accounts[i].name, (long long)cfg->accounts[i].slots,
		    cfg->accounts[i].slots == 1 ? "" : "s",
		    cfg->accounts[i].base_url);
	fprintf(stderr, "\n");
	free(url);
}

/*
 * The loop, a turn at a time: each turn's changes are committed together
 * at its end (group commit), and what waited for them (answers, calls to
 * the provider) goes out then, the calls before the next turn's clients.
 */
static void
wake(evutil_socket_t fd, short what, void *arg)
{
	/* The turn it ends commits what waited (run_loop). */
}

static void
run_loop(struct event_base *base, struct store *st)
{
	struct event *flush = evtimer_new(base, wake, NULL);

	for (;;) {
		int64_t due;

		curlev_run_due();
		if (store_due(st) == 0 && store_sync(st) != STORE_OK)
			fprintf(stderr, "fila: commit: %s\n", store_error(st));
		/* What ran above (a provider's answer read by curl, what
		 * waited for the commit) may have begun the next turn's
		 * transaction: the loop must not sleep on it. */
		if ((due = store_due(st)) >= 0) {
			struct timeval tv = timeval_ms(due);
			evtimer_add(flush, &tv);
		}
		if (event_base_got_exit(base) || event_base_got_break(base) ||
		    event_base_loop(base, EVLOOP_ONCE) != 0)
			break;
	}
	event_free(flush);
	store_drain(st);
}

/*
 * glibc gives the heap's top back to the kernel once 128 KiB of it is free,
 * and the next allocation takes it back, page faults included. A provider
 * call frees buffers of 16 and 64 KiB (libcurl's), so under load that was
 * a trim and a regrowth for many of them: 4 % of the drain's CPU. A server
 * keeps up to 4 MiB free instead, and grows the heap 1 MiB at a time.
 * Setting these stops glibc from moving its mmap threshold by itself, so
 * it is set too, above the 1 MiB journal each savepoint of the SQLite store
 * allocates (only the pages written are ever touched): from mmap, each
 * would be a map, faults and an unmap per change.
 */
static void
malloc_tune(void)
{
	mallopt(M_TRIM_THRESHOLD, 4 << 20);
	mallopt(M_TOP_PAD, 1 << 20);
	mallopt(M_MMAP_THRESHOLD, 2 << 20);
}

/*
 * Serve until a signal: acquire everything in order, run the loop, and
 * release in reverse on the one way out (every *_free takes NULL).
 */
static int
cmd_serve(const struct config *cfg, const struct args *args)
{
	struct daemon d = {0};
	char me[300];
	struct store_account *pools =
	    xcalloc(cfg->naccounts + 1, sizeof(*pools));
	struct store_opts so = {.slots = cfg->slots,
	    .per_user_active = cfg->per_user_active,
	    .credits_initial = cfg->credits_initial,
	    .schema = cfg->store_schema,
	    .process = me,
	    .accounts = pools,
	    .naccounts = cfg->naccounts,
	    .hooks = *cfg->hook_url == '\0' ? STORE_HOOKS_NONE
	             : cfg->hook_all        ? STORE_HOOKS_ALL
	                                    : STORE_HOOKS_TERMINAL};
	struct store *st = NULL;
	struct pool *pool = NULL;
	struct metrics *m = NULL;
	struct events *ev = NULL;
	struct sched *sc = NULL;
	struct api *api = NULL;
	struct watchdog *wd = NULL;
	struct sweep *sw = NULL;
	struct hooks *hk = NULL;
	struct outputs *out = NULL;
	char *key = NULL;
	struct event *term = NULL, *intr = NULL;
	char err[512];
	int rc = 1;

	malloc_tune();
	if (weak_secret(cfg, err, sizeof(err))) {
		fprintf(stderr, "fila: %s\n", err);
		free(pools);
		return 2;
	}
	say_setup(cfg, args);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	process_name(cfg, me, sizeof(me));
	for (size_t i = 0; i < cfg->naccounts; i++)
		pools[i] = (struct store_account){
		    cfg->accounts[i].name, cfg->accounts[i].slots};
	d.base = event_base_new();
	/* Two priorities: curl's sockets are served first for a while after
	 * each change of what they wait for (curlev.c), so a provider's
	 * answer is not read behind a turn's clients; the rest has 1. */
	if (d.base != NULL)
		event_base_priority_init(d.base, 2);
	st = store_open(cfg->store_url, &so, err, sizeof(err));
	if (st == NULL)
		goto fail;
	store_group(st, 1);
	store_watch(st, d.base);
	hk = hooks_new(d.base, cfg, st, err, sizeof(err));
	if (hk == NULL && *cfg->hook_url != '\0')
		goto fail;
	if (cfg->outputs != OUTPUTS_NONE) {
		/* One key for every process sharing the store: a URL signed by
		 * one is good on all. */
		if (store_secret(st, "outputs_url_key", &key) != STORE_OK) {
			snprintf(
			    err, sizeof(err), "store: %s", store_error(st));
			goto fail;
		}
		if ((out = outputs_new(d.base, cfg, key, err, sizeof(err))) ==
		    NULL)
			goto fail;
	}
	m = metrics_new();
	/* One provider per account; sched owns them from here on. */
	pool = pool_new(d.base, cfg, m, NULL, NULL, err, sizeof(err));
	if (pool == NULL)
		goto fail;
	ev = events_new(d.base, cfg, st);
	sc = sched_new_pool(d.base, cfg, st, pool, m);
	sched_outputs(sc, out);
	api = api_new(cfg, st, sc, ev, m, out);
	if ((d.http = api_server(api, d.base, err, sizeof(err))) == NULL)
		goto fail;
	if (http_server_listen(d.http, cfg->listen_host, cfg->listen_port, err,
	        sizeof(err)) != 0)
		goto fail;
	wd = watchdog_new(d.base, cfg, st, sc, WATCHDOG_TICK_MS);
	sw = sweep_new(d.base, st, cfg->upload_retention);
	term = evsignal_new(d.base, SIGTERM, on_signal, &d);
	intr = evsignal_new(d.base, SIGINT, on_signal, &d);
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	printf("fila listening on http://%s:%d\n", cfg->listen_host,
	    http_server_port(d.http));
	fprintf(stderr, "fila: listening on http://%s:%d\n", cfg->listen_host,
	    http_server_port(d.http));
	fflush(stdout);
	sched_recover(sc);
	run_loop(d.base, st);
	rc = 0;
	goto out;
fail:
	fprintf(stderr, "fila: %s\n", err);
out:
	if (term)
		event_free(term);
	if (intr)
		event_free(intr);
	http_server_free(d.http);
	outputs_free(out); /* after the server: its answers read outputs */
	free(key);
	hooks_free(hk);
	sweep_free(sw);
	watchdog_free(wd);
	api_free(api);
	events_free(ev);
	if (sc != NULL)
		sched_free(sc); /* and the pool with it */
	else
		pool_free(pool);
	metrics_free(m);
	store_free(st);
	free(pools);
	event_base_free(d.base);
	return rc;
}

int
main(int argc, char **argv)
{
	struct args a = {0};
	struct config cfg;
	char err[1024];
	int rc;

	const struct command *c;

	mem_json();
	if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
	    strcmp(argv[1], "-h") == 0)
		help(NULL);
	if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--version") == 0) {
		if (argc > 2 && command(argv[2]) == NULL) {
			fprintf(
			    stderr, "fila: unknown command \"%s\"\n", argv[2]);
			return 2;
		}
		if (argv[1][0] == '-') {
			printf("fila %s\n", FILA_VERSION);
			return 0;
		}
		help(argc > 2 ? command(argv[2]) : NULL);
	}
	if ((c = command(argv[1])) == NULL) {
		fprintf(stderr,
		    "fila: unknown command \"%s\" (fila help lists them)\n",
		    argv[1]);
		return 2;
	}
	parse_args(argc, argv, c, &a);
	if (config_load(&cfg, a.config, !a.config_given, a.sets, a.nsets, err,
	        sizeof(err))) {
		fprintf(stderr, "fila: %s\n", err);
		free(a.sets);
		return 2;
	}
	if (c == &commands[0])
		rc = cmd_serve(&cfg, &a);
	else if (c == &commands[1])
		rc = cmd_token(&cfg, &a);
	else
		rc = cmd_check(&cfg);
	config_cleanup(&cfg);
	free(a.sets);
	return rc;
}
