/*
 * main.c — `fila serve` and `fila token`: read the configuration, wire the
 * modules together on one event loop, and stop cleanly on SIGTERM/SIGINT
 * (stop accepting, answer what is in flight, close the store).
 */
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
#include "events.h"
#include "http.h"
#include "metrics.h"
#include "runninghub.h"
#include "sched.h"
#include "store.h"
#include "watchdog.h"
#include "util.h"

#define WATCHDOG_TICK_MS 500

struct args {
	const char *config;
	int config_given;
	char **sets;
	size_t nsets;
	const char *user;
	int admin;
	long long ttl;
};

static void
usage(void)
{
	fputs("usage: fila serve [--config FILE] [--set SECTION.KEY=VALUE]...\n"
	      "       fila token --user ID [--admin] [--ttl SECONDS] "
	      "[--config FILE] [--set ...]\n"
	      "       fila check [--config FILE] [--set ...]\n",
	    stderr);
	exit(2);
}

static void
parse_args(int argc, char **argv, struct args *a)
{
	a->config = "fila.conf";
	a->sets = xcalloc((size_t)argc, sizeof(char *));
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(o, "--admin") == 0) {
			a->admin = 1;
			continue;
		}
		if (v == NULL)
			usage();
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
				usage();
		} else {
			usage();
		}
	}
}

static int
cmd_token(const struct config *cfg, const struct args *a)
{
	int64_t exp = a->ttl ? (int64_t)time(NULL) + a->ttl : 0;
	char *tok;

	if (a->user == NULL || *a->user == '\0')
		usage();
	tok = auth_sign(cfg->jwt_secret, a->user, a->admin, exp);
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

/*
 * The loop, a turn at a time: each turn's changes are committed together
 * at its end (group commit), and what waited for them (answers, calls to
 * the provider) goes out then.
 */
static void
run_loop(struct event_base *base, struct store *st)
{
	for (;;) {
		if (store_sync(st) != STORE_OK)
			fprintf(stderr, "fila: commit: %s\n", store_error(st));
		if (event_base_got_exit(base) || event_base_got_break(base) ||
		    event_base_loop(base, EVLOOP_ONCE) != 0)
			break;
	}
	store_sync(st);
}

/*
 * Serve until a signal: acquire everything in order, run the loop, and
 * release in reverse on the one way out (every *_free takes NULL).
 */
static int
cmd_serve(const struct config *cfg)
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
	struct provider *p = NULL;
	struct metrics *m = NULL;
	struct events *ev = NULL;
	struct sched *sc = NULL;
	struct api *api = NULL;
	struct watchdog *wd = NULL;
	struct event *term = NULL, *intr = NULL;
	char err[512];
	int rc = 1;

	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	process_name(cfg, me, sizeof(me));
	for (size_t i = 0; i < cfg->naccounts; i++)
		pools[i] = (struct store_account){
		    cfg->accounts[i].name, cfg->accounts[i].slots};
	d.base = event_base_new();
	st = store_open(cfg->store_url, &so, err, sizeof(err));
	if (st == NULL)
		goto fail;
	store_group(st, 1);
	store_watch(st, d.base);
	p = runninghub_new(d.base, cfg->rh_base_url, cfg->rh_api_key,
	    cfg->rh_timeout * 1000, err, sizeof(err));
	if (p == NULL)
		goto fail;
	m = metrics_new();
	ev = events_new(d.base, cfg, st);
	sc = sched_new(d.base, cfg, st, p, m);
	api = api_new(cfg, st, sc, ev, m);
	d.http = api_server(api, d.base);
	http_server_cors(d.http, cfg->cors_origins);
	if (http_server_listen(d.http, cfg->listen_host, cfg->listen_port, err,
	        sizeof(err)) != 0)
		goto fail;
	wd = watchdog_new(d.base, cfg, st, sc, p, WATCHDOG_TICK_MS);
	term = evsignal_new(d.base, SIGTERM, on_signal, &d);
	intr = evsignal_new(d.base, SIGINT, on_signal, &d);
	evsignal_add(term, NULL);
	evsignal_add(intr, NULL);
	printf("fila listening on http://%s:%d\n", cfg->listen_host,
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
	watchdog_free(wd);
	api_free(api);
	events_free(ev);
	sched_free(sc);
	provider_free(p);
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

	if (argc < 2)
		usage();
	parse_args(argc, argv, &a);
	if (config_load(&cfg, a.config, !a.config_given, a.sets, a.nsets, err,
	        sizeof(err))) {
		fprintf(stderr, "fila: %s\n", err);
		free(a.sets);
		return 2;
	}
	if (strcmp(argv[1], "serve") == 0)
		rc = cmd_serve(&cfg);
	else if (strcmp(argv[1], "token") == 0)
		rc = cmd_token(&cfg, &a);
	else if (strcmp(argv[1], "check") == 0)
		rc = cmd_check(&cfg);
	else
		usage();
	config_cleanup(&cfg);
	free(a.sets);
	return rc;
}
