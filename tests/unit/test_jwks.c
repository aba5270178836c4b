/*
 * test_jwks.c — keeping an auth object's keys fresh from a JWKS URL.
 *
 * Each test runs fila's own HTTP server (http.h) on 127.0.0.1, port 0, in
 * the same event_base as the jwks under test, serving a JWKS whose answer
 * the test changes between fetches (a status and a body, or no answer at
 * all). The loop is turned by hand, without blocking, so a fetch that
 * hangs shows whether the loop stays responsive. Intervals are shortened
 * through jwks_opts so that the 30 s and 10 min rules take milliseconds.
 * The keys and tokens are Node's, as in test_auth.c.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "auth.h"
#include "http.h"
#include "jwks.h"
#include "util.h"

#define NOW 1700000000

/* A JWKS and two tokens made by Node's crypto (exp 2100). */
#define NODE_EC_JWK                                                            \
	"{\"kty\":\"EC\",\"x\":\"gbAjFwOd-_a5nRu-"                             \
	"hhFk0dlyatmz97kZhK1LdV6JdNk\","                                       \
	"\"y\":\"seM94sUfJrMb2PsOn1pCsed1SwP2omHjnqZuXLH5Wrs\",\"crv\":\"P-"   \
	"256\","                                                               \
	"\"kid\":\"node-ec-1\",\"alg\":\"ES256\",\"use\":\"sig\"}"
#define NODE_RSA_JWK                                                           \
	"{\"kty\":\"RSA\",\"n\":\"xuQRVdhNRTZGz_d0-qSs7lTZHvJ5ywh-_"           \
	"pPLcH4CIqUMnt"                                                        \
	"QOv_uiZ1XBpaf2qqaPMUQD2TWMZkNRmjNQKFjriQZyZgG-JiYB8xMR2JXquuc-"       \
	"CkckvGnx"                                                             \
	"JX0WsLKxX_We4_t27lcs95v3MpU80nLqx2cO21frXTs2EYN43HqbyMl4O6LMbpZr-"    \
	"CIGT-"                                                                \
	"MZZmegDQvHheNZNTiW_"                                                  \
	"vh9hExdb4EKr9F0u26JJbZ3QAdFRbsX1fvugt2KT8WvzQ0ovFcl"                  \
	"wpPDHL5sM2M8raNayhcLIE9v0JxgoFNHvfOwlCcAml1LM_"                       \
	"4mG2M8Hsxjvj0fcmkiYUQ6sh"                                             \
	"Zm153wdm0IZd-6SQ\",\"e\":\"AQAB\",\"kid\":\"node-rsa-1\",\"alg\":"    \
	"\"RS256\",\"use\":\"sig\"}"
#define DOC_EC "{\"keys\":[" NODE_EC_JWK "]}"
#define DOC_BOTH "{\"keys\":[" NODE_EC_JWK "," NODE_RSA_JWK "]}"

static const char node_es256[] =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vZGUtZWMtMSIsInR5cCI6IkpXVCJ9.eyJhdWQiO"
    "iJhdXRoZW50aWNhdGVkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsIml"
    "zcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjE0ZTQ1Z"
    "i1jZWVhLTQ2N2UtYThmMS0yZDNiNGM1ZTZmNzAiLCJlbWFpbCI6ImFsaWNlQGV4YW1wbGU"
    "uY29tIiwicm9sZSI6ImF1dGhlbnRpY2F0ZWQiLCJhcHBfbWV0YWRhdGEiOnsicHJvdmlkZ"
    "XIiOiJlbWFpbCIsInJvbGUiOiJhZG1pbiJ9LCJpc19hbm9ueW1vdXMiOmZhbHNlfQ.LvSR"
    "DGyTtk_fW8v5aLwLN37jaz7opOb01jCrJWFHqauLFiz5KKai8M1Ry4fL9zcEL-oav80pYO"
    "tXjfIWRBAIwQ";
static const char node_rs256[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUtcnNhLTEiLCJ0eXAiOiJKV1QifQ.eyJhdWQ"
    "iOiJhdXRoZW50aWNhdGVkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsI"
    "mlzcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjE0ZTQ"
    "1Zi1jZWVhLTQ2N2UtYThmMS0yZDNiNGM1ZTZmNzAiLCJlbWFpbCI6ImFsaWNlQGV4YW1wb"
    "GUuY29tIiwicm9sZSI6ImF1dGhlbnRpY2F0ZWQiLCJhcHBfbWV0YWRhdGEiOnsicHJvdml"
    "kZXIiOiJlbWFpbCIsInJvbGUiOiJhZG1pbiJ9LCJpc19hbm9ueW1vdXMiOmZhbHNlfQ.gq"
    "9V9vJMZwjDJmdb8LgEpzN-1s2L0W2xed_wkgFNxmNv1_HROlfKE461OVepPk2kcSxIFPsL"
    "lcVdU9T2Pou3mlL_QmHOefqoOzyWBUTDCE6zR7DNUXoGGzk5zqMedFJizfSxuVktJhS9-d"
    "RRcKP3hgllQ6143VQwZlh8N-oOlWwei3qmkv2P9VorlrDoJJLbTO02TAI8uUxwObfxNlAj"
    "WhFkmmNYI17EPmrbXh9UutTG4CLp1-lTyTtbDLuNwf8ilHGkXwlQ1T9lfFi_PAAhPQ1b4K"
    "3Bp4wcGBeBY-zQFxhPHcAsgcUjWMT40W-TmVDkgq9o0Q7y8CskfHDwFQx5JQ";

/* ---- the JWKS server, in the test's loop ---- */

static struct event_base *base;
static struct http_server *srv;
static int port;
static struct auth *A;

/* What GET /jwks.json answers now; status 0: nothing until teardown. */
static int status;
static const char *body;
static int requests;
static struct http_req *hung[16]; /* requests left unanswered */
static int nhung;

static void
h_jwks(struct http_req *r, void *ctx)
{
	requests++;
	if (status == 0) {
		cr_assert_lt(nhung, 16);
		hung[nhung++] = r;
		return;
	}
	http_reply(r, status, "application/json", body, strlen(body));
}

static const struct http_route routes[] = {
    {.methods = HTTP_GET, .pattern = "/jwks.json", .handler = h_jwks},
};

static void
serve(int st, const char *b)
{
	status = st;
	body = b;
}

static void
setup(void)
{
	char err[256];
	struct auth_opts o = {.need_exp = 1};

	base = event_base_new();
	cr_assert_not_null(base);
	srv = http_server_new(base, routes, 1, NULL, 0);
	cr_assert_eq(http_server_listen(srv, "127.0.0.1", 0, err, sizeof(err)),
	    0, "%s", err);
	port = http_server_port(srv);
	A = auth_new(&o);
	cr_assert_not_null(A);
	serve(200, DOC_BOTH);
}

static void
teardown(void)
{
	/* A request is its handler's until answered, client gone or not. */
	for (int i = 0; i < nhung; i++)
		http_reply(hung[i], 503, NULL, NULL, 0);
	http_server_free(srv);
	auth_free(A);
	event_base_free(base);
}

TestSuite(jwks, .init = setup, .fini = teardown, .timeout = 30);

/* Turn the loop, never blocking, until cond holds or ms have passed. */
#define SPIN_UNTIL(cond, ms)                                                   \
	do {                                                                   \
		int64_t end_ = mono_ms() + (ms);                               \
		while (!(cond) && mono_ms() < end_) {                          \
			event_base_loop(base, EVLOOP_NONBLOCK);                \
			usleep(1000);                                          \
		}                                                              \
	} while (0)

static void
spin(int ms)
{
	SPIN_UNTIL(0, ms);
}

/* A port where nothing listens. */
static int
closed_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t slen = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(fd, (struct sockaddr *)&sin, &slen);
	close(fd);
	return ntohs(sin.sin_port);
}

static struct jwks *
jwks_on(int p, const struct jwks_opts *o)
{
	char url[64], err[256] = "";
	struct jwks *j;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/jwks.json", p);
	j = jwks_new(base, A, url, o, err, sizeof(err));
	cr_assert_not_null(j, "%s", err);
	return j;
}

/* A jwks of the test's server, with these intervals (0: default). */
static struct jwks *
jwks_at(long timeout_ms, int64_t max_age_ms, int64_t min_interval_ms)
{
	struct jwks_opts o = {.timeout_ms = timeout_ms,
	    .max_age_ms = max_age_ms,
	    .min_interval_ms = min_interval_ms};

	return jwks_on(port, &o);
}

/* ---- what the waiters saw ---- */

static int told;

/* A waiter: counts in told, and in *arg when there is one. */
static void
on_told(void *arg)
{
	told++;
	if (arg != NULL)
		(*(int *)arg)++;
}

static enum auth_rc
check(const char *token)
{
	return auth_check(A, token, NOW, NULL);
}

/* ---- the tests ---- */

Test(jwks, fetches_at_start)
{
	struct jwks *j = jwks_at(0, 0, 0);
	struct auth_claims c;

	cr_expect_eq(jwks_fetches(j), 1);
	cr_expect_eq(check(node_es256), AUTH_UNKNOWN_KID); /* not yet */
	SPIN_UNTIL(auth_nkeys(A) == 2, 5000);
	cr_assert_eq(auth_nkeys(A), 2, "%s", jwks_error(j));
	cr_expect_null(jwks_error(j));
	cr_expect_eq(requests, 1);
	cr_expect_eq(auth_check(A, node_es256, NOW, &c), AUTH_OK);
	cr_expect_str_eq(c.sub, "8f14e45f-ceea-467e-a8f1-2d3b4c5e6f70");
	cr_expect_eq(check(node_rs256), AUTH_OK);
	spin(50);
	cr_expect_eq(jwks_fetches(j), 1);
	jwks_free(j);
}

Test(jwks, an_unknown_kid_refetches_at_most_once_per_interval)
{
	struct jwks *j = jwks_at(0, 0, 500);

	serve(200, DOC_EC);
	SPIN_UNTIL(auth_nkeys(A) == 1, 5000);
	cr_assert_eq(auth_nkeys(A), 1);
	cr_expect_eq(check(node_rs256), AUTH_UNKNOWN_KID);
	serve(200, DOC_BOTH);

	/* Too soon after the first fetch: told on the next turn, no fetch. */
	cr_assert_eq(jwks_refresh(j, on_told, NULL), 0);
	cr_expect_eq(told, 0, "told inside jwks_refresh");
	SPIN_UNTIL(told == 1, 1000);
	cr_expect_eq(told, 1);
	cr_expect_eq(jwks_fetches(j), 1);
	cr_expect_eq(check(node_rs256), AUTH_UNKNOWN_KID); /* the gate: 401 */

	/* After the interval: one fetch, the waiter told when it ends. */
	spin(520);
	cr_assert_eq(jwks_refresh(j, on_told, NULL), 0);
	cr_expect_eq(jwks_fetches(j), 2);
	cr_expect_eq(told, 1);
	SPIN_UNTIL(told == 2, 5000);
	cr_expect_eq(told, 2);
	cr_expect_eq(check(node_rs256), AUTH_OK);

	/* And not again right after it. */
	cr_assert_eq(jwks_refresh(j, on_told, NULL), 0);
	SPIN_UNTIL(told == 3, 1000);
	cr_expect_eq(jwks_fetches(j), 2);
	cr_expect_eq(requests, 2);
	jwks_free(j);
}

Test(jwks, waiters_share_the_fetch_in_flight)
{
	struct jwks *j = jwks_at(0, 0, 200);
	int a = 0, b = 0;

	/* The first fetch is in flight: all three wait for it. */
	cr_assert_eq(jwks_refresh(j, on_told, &a), 0);
	cr_assert_eq(jwks_refresh(j, on_told, &b), 0);
	cr_assert_eq(jwks_refresh(j, on_told, NULL), 0);
	cr_expect_eq(told, 0);
	SPIN_UNTIL(told == 3, 5000);
	cr_expect_eq(told, 3);
	cr_expect_eq(a, 1);
	cr_expect_eq(b, 1);
	cr_expect_eq(jwks_fetches(j), 1);
	cr_expect_eq(requests, 1);
	cr_expect_eq(auth_nkeys(A), 2);
	spin(50);
	cr_expect_eq(told, 3);
	jwks_free(j);
}

/* After min_interval, refetch on demand; 0 once the waiter is told. */
static void
refetch_now(struct jwks *j, int interval_ms)
{
	int before = told;

	spin(interval_ms + 20);
	cr_assert_eq(jwks_refresh(j, on_told, NULL), 0);
	SPIN_UNTIL(told == before + 1, 5000);
	cr_assert_eq(told, before + 1);
}

Test(jwks, a_failed_fetch_keeps_the_keys)
{
	struct jwks *j = jwks_at(0, 0, 100);
	static char big[300 * 1024];

	SPIN_UNTIL(auth_nkeys(A) == 2, 5000);
	cr_assert_eq(auth_nkeys(A), 2);

	serve(500, "oops");
	refetch_now(j, 100);
	cr_expect_str_eq(jwks_error(j), "HTTP 500");
	serve(200, "<html>not json");
	refetch_now(j, 100);
	cr_expect(strncmp(jwks_error(j), "bad JWKS: not JSON", 18) == 0, "%s",
	    jwks_error(j));
	serve(200, "{\"keys\":[]}");
	refetch_now(j, 100);
	cr_expect(strncmp(jwks_error(j), "bad JWKS: no usable key", 23) == 0,
	    "%s", jwks_error(j));
	memset(big, ' ', sizeof(big) - 1);
	memcpy(big + sizeof(big) - 3, "{}", 2);
	serve(200, big);
	refetch_now(j, 100);
	cr_expect_str_eq(jwks_error(j), "answer over 256 KiB");

	cr_expect_eq(auth_nkeys(A), 2);
	cr_expect_eq(check(node_es256), AUTH_OK);
	cr_expect_eq(check(node_rs256), AUTH_OK);

	/* Good again: a new set replaces the old. */
	serve(200, DOC_EC);
	refetch_now(j, 100);
	cr_expect_null(jwks_error(j));
	cr_expect_eq(auth_nkeys(A), 1);
	cr_expect_eq(check(node_rs256), AUTH_UNKNOWN_KID);
	jwks_free(j);
}

Test(jwks, never_fetched_answers_unknown_then_refused)
{
	struct jwks_opts o = {.min_interval_ms = 100};
	struct jwks *j = jwks_on(closed_port(), &o);

	SPIN_UNTIL(jwks_error(j) != NULL, 5000);
	cr_assert_not_null(jwks_error(j));
	cr_expect_eq(auth_nkeys(A), 0);
	cr_expect_eq(check(node_es256), AUTH_UNKNOWN_KID);
	/* The gate refreshes once, then answers 401. */
	refetch_now(j, 100);
	cr_expect_eq(check(node_es256), AUTH_UNKNOWN_KID);
	cr_expect_not_null(jwks_error(j));
	jwks_free(j);
}

Test(jwks, keys_are_refetched_when_old)
{
	struct jwks *j = jwks_at(0, 300, 10000);

	serve(200, DOC_EC);
	SPIN_UNTIL(auth_nkeys(A) == 1, 5000);
	cr_assert_eq(auth_nkeys(A), 1);
	serve(200, DOC_BOTH);
	spin(100);
	cr_expect_eq(jwks_fetches(j), 1);
	SPIN_UNTIL(auth_nkeys(A) == 2, 5000);
	cr_expect_eq(auth_nkeys(A), 2);
	cr_expect_eq(jwks_fetches(j), 2);
	cr_expect_eq(check(node_rs256), AUTH_OK);
	jwks_free(j);
}

Test(jwks, a_failed_fetch_is_retried_after_the_interval)
{
	struct jwks *j = jwks_at(0, 600000, 200);

	serve(503, "down");
	SPIN_UNTIL(jwks_error(j) != NULL, 5000);
	cr_assert_not_null(jwks_error(j));
	serve(200, DOC_BOTH);
	SPIN_UNTIL(auth_nkeys(A) == 2, 5000);
	cr_expect_eq(auth_nkeys(A), 2);
	cr_expect_eq(jwks_fetches(j), 2);
	cr_expect_null(jwks_error(j));
	jwks_free(j);
}

static int ticks;

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	ticks++;
}

Test(jwks, a_slow_server_does_not_block_the_loop)
{
	struct timeval ten_ms = {0, 10000};
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct jwks *j;
	int64_t t0, took;

	serve(0, NULL); /* never answers */
	event_add(t, &ten_ms);
	t0 = mono_ms();
	j = jwks_at(400, 0, 0);
	cr_assert_eq(jwks_refresh(j, on_told, NULL), 0);
	cr_expect_lt(mono_ms() - t0, 200, "jwks_new + jwks_refresh blocked");
	SPIN_UNTIL(told == 1, 5000);
	took = mono_ms() - t0;
	cr_assert_eq(told, 1);
	cr_expect_geq(took, 350, "told after %lld ms", (long long)took);
	cr_expect_lt(took, 2000, "told after %lld ms", (long long)took);
	cr_expect_geq(ticks, 10, "the loop ticked %d times in %lld ms", ticks,
	    (long long)took);
	cr_expect_eq(requests, 1);
	cr_expect_not_null(jwks_error(j));
	cr_expect_eq(auth_nkeys(A), 0);
	event_free(t);
	jwks_free(j);
}

Test(jwks, free_with_a_fetch_in_flight)
{
	struct jwks *j;
	int a = 0, b = 0;

	serve(0, NULL);
	j = jwks_at(5000, 0, 0);
	cr_assert_eq(jwks_refresh(j, on_told, &a), 0);
	cr_assert_eq(jwks_refresh(j, on_told, &b), 0);
	SPIN_UNTIL(requests == 1, 5000);
	cr_assert_eq(requests, 1);
	cr_expect_eq(told, 0);
	jwks_free(j);
	cr_expect_eq(told, 2);
	cr_expect_eq(a, 1);
	cr_expect_eq(b, 1);
	spin(200);
	cr_expect_eq(told, 2);
}

static struct jwks *to_free;

static void
free_in_done(void *arg)
{
	told++;
	jwks_free(to_free);
}

Test(jwks, free_inside_a_done_callback)
{
	int a = 0;

	to_free = jwks_at(0, 0, 0);
	cr_assert_eq(jwks_refresh(to_free, free_in_done, NULL), 0);
	cr_assert_eq(jwks_refresh(to_free, on_told, &a), 0);
	SPIN_UNTIL(told == 2, 5000);
	cr_expect_eq(told, 2);
	cr_expect_eq(a, 1);
	spin(100);
	cr_expect_eq(told, 2);
	cr_expect_eq(auth_nkeys(A), 2);
}

Test(jwks, waiters_are_bounded)
{
	struct jwks_opts o = {.timeout_ms = 5000, .max_waiters = 2};
	struct jwks *j;

	serve(0, NULL);
	j = jwks_on(port, &o);
	cr_expect_eq(jwks_refresh(j, on_told, NULL), 0);
	cr_expect_eq(jwks_refresh(j, on_told, NULL), 0);
	cr_expect_eq(jwks_refresh(j, on_told, NULL), -1);
	jwks_free(j);
	cr_expect_eq(told, 2);
}

Test(jwks, a_forgotten_waiter_is_not_told)
{
	struct jwks *j = jwks_at(300, 0, 0);
	int gone = 0;

	serve(0, NULL);
	cr_assert_eq(jwks_refresh(j, on_told, &gone), 0);
	cr_assert_eq(jwks_refresh(j, on_told, NULL), 0);
	jwks_forget(j, on_told, &gone);
	SPIN_UNTIL(told == 1, 5000);
	cr_expect_eq(told, 1);
	spin(50);
	cr_expect_eq(gone, 0);
	/* Forgotten while rate-limited, waiting for the next turn. */
	cr_assert_eq(jwks_refresh(j, on_told, &gone), 0);
	jwks_forget(j, on_told, &gone);
	spin(50);
	cr_expect_eq(gone, 0);
	cr_expect_eq(told, 1);
	jwks_free(j);
	cr_expect_eq(told, 1);
}

Test(jwks, only_http_urls)
{
	char err[128] = "";

	cr_expect_null(jwks_new(
	    base, A, "ftp://127.0.0.1/jwks.json", NULL, err, sizeof(err)));
	cr_expect_neq(err[0], '\0');
	cr_expect_null(jwks_new(base, A, NULL, NULL, err, sizeof(err)));
	cr_expect_null(jwks_new(base, A, "/jwks.json", NULL, err, sizeof(err)));
	jwks_free(NULL);
}
