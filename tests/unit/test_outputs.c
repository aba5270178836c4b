/*
 * test_outputs.c — outputs that outlive the provider's links: signed URLs
 * (expiry, tampering, another key), the answer to a request's head (Range,
 * If-None-Match, If-Range), copies into a local directory from a fake
 * provider (an evhttp server on 127.0.0.1 in the same event_base: types,
 * sizes, hashes, the size cap, a URL that is not http(s), retries until
 * the deadline, cancel), reads with pauses, and the same against S3:
 * tests/api/s3.mjs (s3rver behind a front that checks Signature V4) run
 * as a child process, `node tests/api/s3.mjs` from the repository's root
 * (FILA_S3_HELPER names another path; s3rver is found as that helper says).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "config.h"
#include "fixtures.h"
#include "outputs.h"
#include "util.h"

#define MAX_BYTES 65536
#define KEY "sign-key-for-tests"

static char dir[96], outdir[128];
static struct event_base *base;
static struct config cfg;
static int cfg_loaded;
static struct outputs *o;

/* ---- the fake provider's file server ---- */

static struct evhttp *src;
static int src_port;
static unsigned char png[40000]; /* a PNG signature, then noise */
static unsigned char blob[3000]; /* "hello…", then noise */
static unsigned char large[3 * 1024 * 1024];
static int hits_flaky, hits_fail, hits_hang, hits_total;

static void
reply_bytes(struct evhttp_request *req, const void *p, size_t n)
{
	struct evbuffer *out = evbuffer_new();

	evbuffer_add(out, p, n);
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void
reply_chunked_big(struct evhttp_request *req)
{
	struct evbuffer *chunk = evbuffer_new();

	evhttp_send_reply_start(req, 200, "OK");
	for (int i = 0; i < 3; i++) {
		evbuffer_add(chunk, large, 30000);
		evhttp_send_reply_chunk(req, chunk);
	}
	evhttp_send_reply_end(req);
	evbuffer_free(chunk);
}

static void
src_handle(struct evhttp_request *req, void *arg)
{
	const char *uri = evhttp_request_get_uri(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	hits_total++;
	if (strcmp(uri, "/a.png") == 0)
		reply_bytes(req, png, sizeof(png));
	else if (strcmp(uri, "/blob") == 0)
		reply_bytes(req, blob, sizeof(blob));
	else if (strcmp(uri, "/empty") == 0)
		reply_bytes(req, "", 0);
	else if (strcmp(uri, "/large") == 0)
		reply_bytes(req, large, sizeof(large));
	else if (strcmp(uri, "/big") == 0)
		reply_bytes(req, large, MAX_BYTES + 1);
	else if (strcmp(uri, "/cap") == 0)
		reply_bytes(req, large, MAX_BYTES);
	else if (strcmp(uri, "/bigchunked") == 0)
		reply_chunked_big(req);
	else if (strcmp(uri, "/flaky") == 0 && ++hits_flaky <= 2)
		evhttp_send_error(req, 503, "Busy");
	else if (strcmp(uri, "/flaky") == 0)
		reply_bytes(req, blob, sizeof(blob));
	else if (strcmp(uri, "/fail") == 0 && ++hits_fail)
		evhttp_send_error(req, 500, "Broken");
	else if (strcmp(uri, "/hang") == 0)
		hits_hang++; /* never answered */
	else if (strcmp(uri, "/to-file") == 0) {
		evhttp_add_header(h, "Location", "file:///etc/passwd");
		evhttp_send_reply(req, 302, "Found", NULL);
	} else if (strcmp(uri, "/to-png") == 0) {
		evhttp_add_header(h, "Location", "/a.png");
		evhttp_send_reply(req, 302, "Found", NULL);
	} else
		evhttp_send_error(req, 404, "Not Found");
}

static void
src_start(void)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	int fd = open("/dev/urandom", O_RDONLY);

	cr_assert(fd >= 0);
	cr_assert_eq(read(fd, png, sizeof(png)), (ssize_t)sizeof(png));
	cr_assert_eq(read(fd, blob, sizeof(blob)), (ssize_t)sizeof(blob));
	cr_assert_eq(read(fd, large, sizeof(large)), (ssize_t)sizeof(large));
	close(fd);
	memcpy(png, "\x89PNG\r\n\x1a\n", 8);
	memcpy(blob, "hello, not a known type", 23);
	memcpy(large, "just bytes", 10);
	src = evhttp_new(base);
	evhttp_set_gencb(src, src_handle, NULL);
	bs = evhttp_bind_socket_with_handle(src, "127.0.0.1", 0);
	cr_assert_not_null(bs);
	getsockname(
	    evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sin, &slen);
	src_port = ntohs(sin.sin_port);
}

/* ---- the module under test, on a config of --set strings ---- */

static void
load(const char *const *extra)
{
	char *sets[24], err[256] = "";
	size_t n = 0;

	sets[n++] = xasprintf("outputs.dir=%s", outdir);
	sets[n++] = xasprintf("outputs.max_bytes=%d", MAX_BYTES);
	sets[n++] = xstrdup("server.public_url=http://fila.test");
	sets[n++] = xstrdup("outputs.url_ttl=3600");
	for (; extra != NULL && *extra != NULL; extra++)
		sets[n++] = xstrdup(*extra);
	cr_assert_eq(config_load(&cfg, "/nonexistent/fila.conf", 1, sets, n,
	                 err, sizeof(err)),
	    0, "%s", err);
	cfg_loaded = 1;
	for (size_t i = 0; i < n; i++)
		free(sets[i]);
}

static struct outputs *
make(const char *key)
{
	char err[256] = "";
	struct outputs *x = outputs_new(base, &cfg, key, err, sizeof(err));

	cr_assert_not_null(x, "%s", err);
	return x;
}

static void
setup_with(const char *const *extra)
{
	/* a client going away must not kill the fake's process */
	signal(SIGPIPE, SIG_IGN);
	fx_tmpdir(dir, sizeof(dir), "outputs");
	snprintf(outdir, sizeof(outdir), "%s/out", dir);
	base = event_base_new();
	cr_assert_not_null(base);
	load(extra);
	o = make(KEY);
	src_start();
}

static void
setup_local(void)
{
	static const char *const local[] = {"outputs.store=local", NULL};
	setup_with(local);
}

static void
teardown(void)
{
	outputs_free(o);
	o = NULL;
	if (src != NULL)
		evhttp_free(src);
	src = NULL;
	if (cfg_loaded)
		config_cleanup(&cfg);
	cfg_loaded = 0;
	if (base != NULL)
		event_base_free(base);
	base = NULL;
	fx_rmtree(dir);
}

#define SPIN_UNTIL(cond, ms)                                                   \
	do {                                                                   \
		int64_t end_ = mono_ms() + (ms);                               \
		while (!(cond) && mono_ms() < end_) {                          \
			event_base_loop(base, EVLOOP_NONBLOCK);                \
			usleep(1000);                                          \
		}                                                              \
	} while (0)

/* ---- what a copy's done callback saw ---- */

struct seen {
	int calls;
	int rc;
	json_t *stored;
	char msg[512];
	int64_t at; /* mono_ms() */
};

static void
on_done(void *arg, int rc, json_t *stored, const char *errmsg)
{
	struct seen *s = arg;

	s->calls++;
	s->rc = rc;
	s->stored = stored ? json_incref(stored) : NULL;
	snprintf(s->msg, sizeof(s->msg), "%s", errmsg ? errmsg : "");
	s->at = mono_ms();
}

static json_t *
src_outputs(const char *path, const char *type, ...)
{
	json_t *a = json_array();
	va_list ap;

	va_start(ap, type);
	while (path != NULL) {
		/* a path is the fake's; anything else is a URL as it is */
		char *url = path[0] == '/' ? xasprintf("http://127.0.0.1:%d%s",
		                                 src_port, path)
		                           : xstrdup(path);
		json_array_append_new(
		    a, json_pack("{s:s, s:s}", "url", url, "type", type));
		free(url);
		path = va_arg(ap, const char *);
		if (path != NULL)
			type = va_arg(ap, const char *);
	}
	va_end(ap);
	return a;
}

/* Copy outs (taken) as job "job_1" with a deadline ms from now; wait for
 * the end (up to wait_ms). */
static void
copy_and_wait(json_t *outs, int64_t ms, int wait_ms, struct seen *s)
{
	memset(s, 0, sizeof(*s));
	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + ms, on_done, s), 0);
	json_decref(outs);
	cr_assert_eq(s->calls, 0, "done ran inside outputs_copy");
	SPIN_UNTIL(s->calls > 0, wait_ms);
	cr_assert_eq(s->calls, 1, "the copy did not end");
}

static int
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Files in the outputs directory (parts included). */
static int
files_in(const char *d)
{
	char cmd[300];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "ls -A '%s' | wc -l", d);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	cr_assert_eq(fscanf(p, "%d", &n), 1);
	pclose(p);
	return n;
}

/* The stored element i: its id, type, size and hash, checked. */
static void
expect_stored(json_t *stored, size_t i, const char *type, const void *bytes,
    size_t len, struct output *out)
{
	const char *id =
	    json_string_value(json_object_get(json_array_get(stored, i), "id"));
	char sha[65];

	cr_assert_not_null(id);
	cr_assert_eq(output_find(out, stored, id), 0);
	cr_assert(output_id_valid(out->id), "%s", out->id);
	cr_assert_str_eq(out->type, type);
	cr_assert_eq(out->size, (int64_t)len);
	sha256_hex(bytes, len, sha);
	cr_assert_str_eq(out->sha256, sha);
}

/* The local file of out holds exactly bytes, mode 0600. */
static void
expect_file(const struct output *out, const void *bytes, size_t len)
{
	char *path = xasprintf("%s/%s", outdir, out->id);
	struct stat st;
	char *got = xmalloc(len + 1);
	int fd = open(path, O_RDONLY);

	cr_assert(fd >= 0, "%s missing", path);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(st.st_size, (off_t)len);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(read(fd, got, len + 1), (ssize_t)len);
	cr_assert(memcmp(got, bytes, len) == 0);
	close(fd);
	free(got);
	free(path);
}

/* ---- signed URLs ---- */

TestSuite(sig, .init = setup_local, .fini = teardown, .timeout = 30);

static const char *ID = "out_0123456789abcdef0123456789abcdef";

/* exp and sig of a URL made by outputs_url. */
static void
url_parts(const char *url, char *exp, char *sig)
{
	const char *e = strstr(url, "?exp="), *s = strstr(url, "&sig=");

	cr_assert(e && s && s > e, "%s", url);
	snprintf(exp, 24, "%.*s", (int)(s - e - 5), e + 5);
	snprintf(sig, 64, "%s", s + 5);
}

Test(sig, url_is_signed_and_checks)
{
	char *url = outputs_url(o, ID, 1000000);
	char exp[24], sig[64], want[128];

	snprintf(want, sizeof(want),
	    "http://fila.test/v1/outputs/%s?exp=1003600&sig=", ID);
	cr_assert(strncmp(url, want, strlen(want)) == 0, "%s", url);
	url_parts(url, exp, sig);
	cr_assert_str_eq(exp, "1003600");
	cr_assert_eq(strlen(sig), 43);
	cr_assert_eq(strspn(sig, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
	                         "rstuvwxyz0123456789-_"),
	    43);
	cr_assert_eq(outputs_check_sig(o, ID, exp, sig, 1000000), 0);
	cr_assert_eq(outputs_check_sig(o, ID, exp, sig, 1003600), 0);
	free(url);
}

Test(sig, expired)
{
	char *url = outputs_url(o, ID, 1000000);
	char exp[24], sig[64];

	url_parts(url, exp, sig);
	cr_assert_eq(outputs_check_sig(o, ID, exp, sig, 1003601), -1);
	free(url);
}

Test(sig, tampered)
{
	char *url = outputs_url(o, ID, 1000000);
	char exp[24], sig[64];
	const char *other = "out_0123456789abcdef0123456789abcdee";

	url_parts(url, exp, sig);
	cr_assert_eq(outputs_check_sig(o, other, exp, sig, 1000000), -1);
	cr_assert_eq(outputs_check_sig(o, ID, "1003599", sig, 1000000), -1);
	sig[10] = sig[10] == 'A' ? 'B' : 'A';
	cr_assert_eq(outputs_check_sig(o, ID, exp, sig, 1000000), -1);
	free(url);
}

Test(sig, far_future_refused)
{
	/* signed for later than url_ttl (+ a minute) from now */
	char *url = outputs_url(o, ID, 1000000 + 61);
	char exp[24], sig[64];

	url_parts(url, exp, sig);
	cr_assert_eq(outputs_check_sig(o, ID, exp, sig, 1000000), -1);
	cr_assert_eq(outputs_check_sig(o, ID, exp, sig, 1000001), 0);
	free(url);
}

Test(sig, another_key_refused)
{
	char *url = outputs_url(o, ID, 1000000);
	char exp[24], sig[64];
	struct outputs *o2 = make("another key");

	url_parts(url, exp, sig);
	cr_assert_eq(outputs_check_sig(o2, ID, exp, sig, 1000000), -1);
	outputs_free(o2);
	free(url);
}

Test(sig, malformed)
{
	char *url = outputs_url(o, ID, 1000000);
	char exp[24], sig[64], plus[80];

	url_parts(url, exp, sig);
	cr_assert_eq(outputs_check_sig(o, ID, NULL, sig, 1000000), -1);
	cr_assert_eq(outputs_check_sig(o, ID, exp, NULL, 1000000), -1);
	cr_assert_eq(outputs_check_sig(o, ID, "", sig, 1000000), -1);
	snprintf(plus, sizeof(plus), "+%s", exp);
	cr_assert_eq(outputs_check_sig(o, ID, plus, sig, 1000000), -1);
	snprintf(plus, sizeof(plus), "%s=", sig);
	cr_assert_eq(outputs_check_sig(o, ID, exp, plus, 1000000), -1);
	cr_assert_eq(outputs_check_sig(o, "../../etc", exp, sig, 1000000), -1);
	free(url);
}

Test(sig, ids)
{
	cr_assert(output_id_valid(ID));
	cr_assert_not(output_id_valid("out_0123456789ABCDEF0123456789abcdef"));
	cr_assert_not(output_id_valid("upl_0123456789abcdef0123456789abcdef"));
	cr_assert_not(output_id_valid("out_0123"));
	cr_assert_not(output_id_valid("out_0123456789abcdef0123456789abcdef0"));
	cr_assert_not(output_id_valid(NULL));
}

Test(sig, public_and_find)
{
	json_t *stored = json_pack("[{s:s, s:s, s:i, s:s}, {s:s, s:s}]", "id",
	    ID, "type", "png", "size", 12, "sha256",
	    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	    "url", "http://provider/x.png", "type", "png");
	json_t *pub = outputs_public(o, stored, 1000000);
	char *url = outputs_url(o, ID, 1000000);
	struct output out;

	cr_assert_eq(json_array_size(pub), 2);
	cr_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(pub, 0), "url")),
	    url);
	cr_assert_str_eq(
	    json_string_value(json_object_get(json_array_get(pub, 0), "type")),
	    "png");
	cr_assert_eq(json_object_size(json_array_get(pub, 0)), 2);
	cr_assert(
	    json_equal(json_array_get(pub, 1), json_array_get(stored, 1)));
	cr_assert_eq(output_find(&out, stored, ID), 0);
	cr_assert_str_eq(out.type, "png");
	cr_assert_eq(out.size, 12);
	cr_assert_eq(
	    output_find(&out, stored, "out_0123456789abcdef0123456789abcdee"),
	    -1);
	json_object_set_new(
	    json_array_get(stored, 0), "size", json_string("12"));
	cr_assert_eq(output_find(&out, stored, ID), -1);
	json_decref(stored);
	json_decref(pub);
	free(url);
}

Test(sig, new_refuses)
{
	char err[256] = "";

	cr_assert_null(outputs_new(base, &cfg, "", err, sizeof(err)));
	cr_assert(strstr(err, "key") != NULL, "%s", err);
	cfg.outputs = OUTPUTS_S3;
	cr_assert_null(outputs_new(base, &cfg, KEY, err, sizeof(err)));
	cr_assert(strstr(err, "s3_endpoint") != NULL, "%s", err);
	cfg.outputs = OUTPUTS_NONE;
	cr_assert_null(outputs_new(base, &cfg, KEY, err, sizeof(err)));
	cr_assert(strstr(err, "none") != NULL, "%s", err);
	cfg.outputs = OUTPUTS_LOCAL;
}

Test(sig, content_types)
{
	cr_assert_str_eq(output_content_type("png"), "image/png");
	cr_assert_str_eq(output_content_type("jpeg"), "image/jpeg");
	cr_assert_str_eq(output_content_type("mov"), "video/quicktime");
	cr_assert_str_eq(output_content_type("mp4"), "video/mp4");
	cr_assert_str_eq(
	    output_content_type("svg"), "application/octet-stream");
	cr_assert_str_eq(
	    output_content_type("html"), "application/octet-stream");
}

/* ---- the answer from the request's head (pure) ---- */

TestSuite(plan, .timeout = 30);

static const struct output out100 = {
    .id = "out_0123456789abcdef0123456789abcdef",
    .type = "mp4",
    .size = 100,
    .sha256 =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
};

#define ETAG                                                                   \
	"\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\""

static const char *
header(const struct outputs_plan *p, const char *name)
{
	for (int i = 0; i < p->nheaders; i++)
		if (strcmp(p->headers[i].name, name) == 0)
			return p->headers[i].value;
	return NULL;
}

static void
expect_range(const char *range, int status, int64_t first, int64_t len)
{
	struct outputs_plan p;

	outputs_plan(&out100, range, NULL, NULL, &p);
	cr_assert_eq(p.status, status, "%s: %d", range, p.status);
	if (status == 416) {
		cr_assert_str_eq(header(&p, "Content-Range"), "bytes */100");
		cr_assert_null(p.ctype);
		return;
	}
	cr_assert_eq(p.first, first, "%s", range);
	cr_assert_eq(p.length, len, "%s", range);
	cr_assert_str_eq(p.ctype, "video/mp4");
	if (status == 206) {
		char want[64];
		snprintf(want, sizeof(want), "bytes %lld-%lld/100",
		    (long long)first, (long long)(first + len - 1));
		cr_assert_str_eq(header(&p, "Content-Range"), want);
	} else {
		cr_assert_null(header(&p, "Content-Range"), "%s", range);
	}
}

Test(plan, whole)
{
	struct outputs_plan p;

	outputs_plan(&out100, NULL, NULL, NULL, &p);
	cr_assert_eq(p.status, 200);
	cr_assert_eq(p.first, 0);
	cr_assert_eq(p.length, 100);
	cr_assert_str_eq(p.ctype, "video/mp4");
	cr_assert_str_eq(header(&p, "ETag"), ETAG);
	cr_assert_str_eq(header(&p, "Accept-Ranges"), "bytes");
	cr_assert_str_eq(header(&p, "X-Content-Type-Options"), "nosniff");
	cr_assert_not_null(header(&p, "Cache-Control"));
	cr_assert(strstr(header(&p, "Cache-Control"), "private") != NULL);
	cr_assert(strstr(header(&p, "Content-Security-Policy"), "sandbox"));
}

Test(plan, ranges)
{
	expect_range("bytes=0-9", 206, 0, 10);
	expect_range("bytes=0-0", 206, 0, 1);
	expect_range("bytes=90-", 206, 90, 10);
	expect_range("bytes=0-", 206, 0, 100);
	expect_range("bytes=-10", 206, 90, 10);
	expect_range("bytes=-1000", 206, 0, 100);
	expect_range("bytes=95-200", 206, 95, 5);
	expect_range("bytes=99-99", 206, 99, 1);
	expect_range("BYTES=1-2", 206, 1, 2);
	expect_range("bytes= 1-2 ", 206, 1, 2);
}

Test(plan, unsatisfiable)
{
	expect_range("bytes=100-", 416, 0, 0);
	expect_range("bytes=100-200", 416, 0, 0);
	expect_range("bytes=-0", 416, 0, 0);
}

Test(plan, ignored_ranges)
{
	expect_range("bytes=5-2", 200, 0, 100);
	expect_range("bytes=0-1,5-6", 200, 0, 100);
	expect_range("items=0-1", 200, 0, 100);
	expect_range("bytes=", 200, 0, 100);
	expect_range("bytes=-", 200, 0, 100);
	expect_range("bytes=a-b", 200, 0, 100);
	expect_range("bytes=1-2x", 200, 0, 100);
	expect_range("bytes=5", 200, 0, 100);
	expect_range("bytes=99999999999999999999-", 200, 0, 100);
	expect_range("", 200, 0, 100);
}

Test(plan, not_modified)
{
	static const char *const match[] = {ETAG, "W/" ETAG, "\"x\", " ETAG,
	    "\"x\"," ETAG ",\"y\"", "*", " " ETAG " "};
	static const char *const miss[] = {"\"x\"", "\"aaaa\"", ETAG "x",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	    "\"unterminated", ""};
	struct outputs_plan p;

	for (size_t i = 0; i < sizeof(match) / sizeof(*match); i++) {
		outputs_plan(&out100, "bytes=0-1", match[i], NULL, &p);
		cr_assert_eq(p.status, 304, "%s", match[i]);
		cr_assert_null(p.ctype);
		cr_assert_str_eq(header(&p, "ETag"), ETAG);
	}
	for (size_t i = 0; i < sizeof(miss) / sizeof(*miss); i++) {
		outputs_plan(&out100, NULL, miss[i], NULL, &p);
		cr_assert_eq(p.status, 200, "%s", miss[i]);
	}
}

Test(plan, if_range)
{
	struct outputs_plan p;

	outputs_plan(&out100, "bytes=0-1", NULL, ETAG, &p);
	cr_assert_eq(p.status, 206);
	outputs_plan(&out100, "bytes=0-1", NULL, "\"other\"", &p);
	cr_assert_eq(p.status, 200);
	cr_assert_eq(p.length, 100);
	outputs_plan(&out100, "bytes=0-1", NULL, "W/" ETAG, &p);
	cr_assert_eq(p.status, 200);
	outputs_plan(
	    &out100, "bytes=0-1", NULL, "Sat, 01 Jan 2000 00:00:00 GMT", &p);
	cr_assert_eq(p.status, 200);
	outputs_plan(&out100, "bytes=200-", NULL, "\"other\"", &p);
	cr_assert_eq(p.status, 200);
}

Test(plan, empty_output)
{
	struct output e = out100;
	struct outputs_plan p;

	e.size = 0;
	memcpy(e.type, "zzz", 4);
	outputs_plan(&e, NULL, NULL, NULL, &p);
	cr_assert_eq(p.status, 200);
	cr_assert_eq(p.length, 0);
	cr_assert_str_eq(p.ctype, "application/octet-stream");
	outputs_plan(&e, "bytes=0-", NULL, NULL, &p);
	cr_assert_eq(p.status, 416);
	outputs_plan(&e, "bytes=-5", NULL, NULL, &p);
	cr_assert_eq(p.status, 416);
	cr_assert_str_eq(header(&p, "Content-Range"), "bytes */0");
}

/* ---- copies into a local directory ---- */

TestSuite(copy, .init = setup_local, .fini = teardown, .timeout = 30);

Test(copy, two_outputs)
{
	struct seen s;
	struct output a, b;

	copy_and_wait(src_outputs("/a.png", "webp", "/blob", "JPG", NULL),
	    10000, 5000, &s);
	cr_assert_eq(s.rc, 0, "%s", s.msg);
	cr_assert_eq(json_array_size(s.stored), 2);
	/* the bytes say png, whatever the provider said; else its word */
	expect_stored(s.stored, 0, "png", png, sizeof(png), &a);
	expect_stored(s.stored, 1, "jpeg", blob, sizeof(blob), &b);
	cr_assert_str_neq(a.id, b.id);
	cr_assert_eq(json_object_size(json_array_get(s.stored, 0)), 4);
	expect_file(&a, png, sizeof(png));
	expect_file(&b, blob, sizeof(blob));
	cr_assert_eq(files_in(outdir), 2, "a part file is left");
	cr_assert_eq(outputs_busy(o), 0);
	json_decref(s.stored);
}

Test(copy, types_without_a_word)
{
	struct seen s;
	struct output a, b;

	copy_and_wait(
	    src_outputs("/blob", "", "/empty", "Mp4!", NULL), 10000, 5000, &s);
	cr_assert_eq(s.rc, 0, "%s", s.msg);
	expect_stored(s.stored, 0, "bin", blob, sizeof(blob), &a);
	expect_stored(s.stored, 1, "mp4", "", 0, &b);
	expect_file(&b, "", 0);
	json_decref(s.stored);
}

Test(copy, nothing_to_copy)
{
	struct seen s;

	copy_and_wait(json_array(), 10000, 1000, &s);
	cr_assert_eq(s.rc, 0);
	cr_assert_eq(json_array_size(s.stored), 0);
	json_decref(s.stored);
}

Test(copy, redirect_followed)
{
	struct seen s;
	struct output a;

	copy_and_wait(src_outputs("/to-png", "png", NULL), 10000, 5000, &s);
	cr_assert_eq(s.rc, 0, "%s", s.msg);
	expect_stored(s.stored, 0, "png", png, sizeof(png), &a);
	json_decref(s.stored);
}

Test(copy, at_the_cap)
{
	struct seen s;
	struct output a;

	copy_and_wait(src_outputs("/cap", "bin", NULL), 10000, 5000, &s);
	cr_assert_eq(s.rc, 0, "%s", s.msg);
	expect_stored(s.stored, 0, "bin", large, MAX_BYTES, &a);
	json_decref(s.stored);
}

/* Over the cap: refused at once (no retry), nothing left, and what the
 * copy stored before is removed. */
static void
expect_too_big(const char *path)
{
	struct seen s;

	copy_and_wait(
	    src_outputs("/a.png", "png", path, "mp4", NULL), 10000, 5000, &s);
	cr_assert_eq(s.rc, -1);
	cr_assert_null(s.stored);
	cr_assert_str_eq(s.msg, "output 2 of 2 is larger than "
	                        "outputs.max_bytes (65536 bytes)");
	cr_assert_eq(hits_total, 2, "retried: %d requests", hits_total);
	cr_assert_eq(files_in(outdir), 0);
}

Test(copy, too_big_by_length)
{
	expect_too_big("/big");
}

Test(copy, too_big_chunked)
{
	expect_too_big("/bigchunked");
}

Test(copy, not_http_refused)
{
	static const char *const urls[] = {"file:///etc/passwd",
	    "ftp://127.0.0.1/x", "gopher://x", "relative/a.png", "javascript:1",
	    "", "httpx://a"};

	for (size_t i = 0; i < sizeof(urls) / sizeof(*urls); i++) {
		struct seen s;

		copy_and_wait(
		    src_outputs("/a.png", "png", urls[i], "png", NULL), 10000,
		    2000, &s);
		cr_assert_eq(s.rc, -1, "%s", urls[i]);
		cr_assert_str_eq(
		    s.msg, "output 2 of 2 has a URL that is not http or https");
	}
	cr_assert_eq(hits_total, 0, "nothing is fetched");
	cr_assert_eq(files_in(outdir), 0);
}

Test(copy, redirect_to_file_refused)
{
	struct seen s;

	copy_and_wait(src_outputs("/to-file", "png", NULL), 10000, 5000, &s);
	cr_assert_eq(s.rc, -1);
	cr_assert_str_eq(s.msg,
	    "output 1 of 1 redirects to a URL that is not http or https");
	cr_assert_eq(hits_total, 1);
	cr_assert_eq(files_in(outdir), 0);
}

Test(copy, retried_until_it_works)
{
	struct seen s;
	struct output a;

	copy_and_wait(src_outputs("/flaky", "bin", NULL), 10000, 8000, &s);
	cr_assert_eq(s.rc, 0, "%s", s.msg);
	cr_assert_eq(hits_flaky, 3);
	expect_stored(s.stored, 0, "bin", blob, sizeof(blob), &a);
	expect_file(&a, blob, sizeof(blob));
	json_decref(s.stored);
}

Test(copy, fails_at_the_deadline)
{
	struct seen s;
	int64_t t0 = mono_ms();

	copy_and_wait(
	    src_outputs("/a.png", "png", "/fail", "png", NULL), 1500, 5000, &s);
	cr_assert_eq(s.rc, -1);
	cr_assert(hits_fail >= 2, "tried %d times", hits_fail);
	/* no try starts after the deadline (the last one may still end) */
	cr_assert(
	    s.at - t0 <= 2500, "gave up after %lld ms", (long long)(s.at - t0));
	cr_assert(starts_with(s.msg, "could not download output 2 of 2: the "
	                             "source answered HTTP 500 ("),
	    "%s", s.msg);
	cr_assert(strstr(s.msg, " tries)") != NULL, "%s", s.msg);
	cr_assert_eq(files_in(outdir), 0, "the first output stays");
}

Test(copy, unreachable_source)
{
	struct seen s;

	copy_and_wait(
	    src_outputs("http://127.0.0.1:1/x", "png", NULL), 800, 5000, &s);
	cr_assert_eq(s.rc, -1);
	cr_assert(starts_with(s.msg, "could not download output 1 of 1: "),
	    "%s", s.msg);
}

Test(copy, one_copy_per_job)
{
	struct seen s1 = {0}, s2 = {0};
	json_t *outs = src_outputs("/a.png", "png", NULL);

	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + 5000, on_done, &s1), 0);
	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + 5000, on_done, &s2), -1);
	cr_assert_eq(
	    outputs_copy(o, "job_2", outs, now_ms() + 5000, on_done, &s2), 0);
	json_decref(outs);
	SPIN_UNTIL(s1.calls && s2.calls, 5000);
	cr_assert_eq(s1.rc, 0);
	cr_assert_eq(s2.rc, 0);
	cr_assert_eq(s1.calls + s2.calls, 2);
	json_decref(s1.stored);
	json_decref(s2.stored);
}

Test(copy, cancel_in_flight)
{
	struct seen s = {0};
	json_t *outs = src_outputs("/a.png", "png", "/hang", "png", NULL);

	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + 20000, on_done, &s), 0);
	json_decref(outs);
	SPIN_UNTIL(hits_hang == 1, 5000);
	cr_assert_eq(hits_hang, 1);
	cr_assert_eq(files_in(outdir), 2); /* a.png stored, the hang's part */
	outputs_cancel(o, "job_1");
	/* a new copy of the job may start at once */
	outs = src_outputs("/blob", "bin", NULL);
	struct seen s2 = {0};
	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + 5000, on_done, &s2), 0);
	json_decref(outs);
	SPIN_UNTIL(outputs_busy(o) == 0, 5000);
	cr_assert_eq(outputs_busy(o), 0, "the cancelled transfer lingers");
	cr_assert_eq(s.calls, 0, "done ran after cancel");
	cr_assert_eq(s2.calls, 1);
	cr_assert_eq(files_in(outdir), 1, "only the second copy's output");
	json_decref(s2.stored);
}

Test(copy, cancel_while_waiting)
{
	struct seen s = {0};
	json_t *outs = src_outputs("/fail", "png", NULL);

	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + 20000, on_done, &s), 0);
	json_decref(outs);
	SPIN_UNTIL(hits_fail == 1, 5000);
	SPIN_UNTIL(0, 100); /* the failure is in; its backoff runs */
	outputs_cancel(o, "job_1");
	SPIN_UNTIL(outputs_busy(o) == 0, 3000);
	cr_assert_eq(outputs_busy(o), 0);
	cr_assert_eq(files_in(outdir), 0);
	int hits = hits_fail;
	SPIN_UNTIL(0, 1200);
	cr_assert_eq(hits_fail, hits, "tried again after cancel");
	cr_assert_eq(s.calls, 0);
	outputs_cancel(o, "job_1"); /* twice, or unknown: nothing */
	outputs_cancel(o, "job_9");
}

Test(copy, freed_in_flight)
{
	struct seen s = {0};
	json_t *outs = src_outputs("/a.png", "png", "/hang", "png", NULL);

	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + 20000, on_done, &s), 0);
	json_decref(outs);
	SPIN_UNTIL(hits_hang == 1, 5000);
	outputs_free(o);
	o = NULL;
	cr_assert_eq(s.calls, 0);
	cr_assert_eq(files_in(outdir), 0, "a copy in progress is removed");
}

Test(copy, stray_parts_removed_at_start)
{
	char *old =
	    xasprintf("%s/out_00000000000000000000000000000001.part", outdir);
	char *young =
	    xasprintf("%s/out_00000000000000000000000000000002.part", outdir);
	struct timespec ts[2] = {
	    {.tv_sec = time(NULL) - 7200}, {.tv_sec = time(NULL) - 7200}};
	int fd;

	fd = open(old, O_CREAT | O_WRONLY, 0600);
	close(fd);
	cr_assert_eq(utimensat(AT_FDCWD, old, ts, 0), 0);
	fd = open(young, O_CREAT | O_WRONLY, 0600);
	close(fd);
	outputs_free(o);
	o = make(KEY);
	cr_assert_neq(access(old, F_OK), 0, "an old part stays");
	cr_assert_eq(access(young, F_OK), 0, "a young part is removed");
	free(old);
	free(young);
}

/* ---- reads ---- */

struct sink_state {
	int began, ended;
	enum outputs_read_rc rc;
	char msg[160];
	unsigned char *buf;
	size_t len, cap;
	int pause;  /* answer 1 to every piece */
	int paused; /* waiting for a resume */
	int pieces;
	size_t cancel_after; /* bytes; 0: never */
	struct outputs_read *rd;
};

static void
sk_begin(void *arg)
{
	struct sink_state *k = arg;

	cr_assert_eq(k->began, 0);
	k->began = 1;
}

static int
sk_data(void *arg, const void *buf, size_t len)
{
	struct sink_state *k = arg;

	cr_assert(k->began, "data before begin");
	cr_assert_not(k->paused, "data while paused");
	if (k->len + len > k->cap) {
		k->cap = (k->len + len) * 2;
		k->buf = xrealloc(k->buf, k->cap);
	}
	memcpy(k->buf + k->len, buf, len);
	k->len += len;
	k->pieces++;
	if (k->cancel_after && k->len >= k->cancel_after) {
		outputs_read_cancel(k->rd);
		return 0;
	}
	k->paused = k->pause;
	return k->pause;
}

static void
sk_end(void *arg, enum outputs_read_rc rc, const char *msg)
{
	struct sink_state *k = arg;

	k->ended++;
	k->rc = rc;
	snprintf(k->msg, sizeof(k->msg), "%s", msg ? msg : "");
}

static const struct outputs_sink sink = {sk_begin, sk_data, sk_end};

/* Read [first, first + len) of out into k, resuming whenever paused. */
static void
read_into(
    const struct output *out, int64_t first, int64_t len, struct sink_state *k)
{
	int64_t end = mono_ms() + 10000;

	k->rd = outputs_read(o, out, first, len, &sink, k);
	cr_assert_not_null(k->rd);
	cr_assert_eq(k->began + k->ended, 0, "a callback inside outputs_read");
	while (!k->ended && mono_ms() < end) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		if (k->paused) {
			k->paused = 0;
			outputs_read_resume(k->rd);
			cr_assert_eq(k->paused, 0, "data inside resume");
		}
		usleep(200);
	}
	cr_assert_eq(k->ended, 1, "the read did not end");
}

/* The stored output of a fresh copy of path. */
static void
stored_one(const char *path, const char *type, const void *bytes, size_t len,
    struct output *out)
{
	struct seen s;

	copy_and_wait(src_outputs(path, type, NULL), 20000, 20000, &s);
	cr_assert_eq(s.rc, 0, "%s", s.msg);
	expect_stored(s.stored, 0, type, bytes, len, out);
	json_decref(s.stored);
}

static void
expect_read(const struct output *out, const unsigned char *bytes, int64_t first,
    int64_t len, int pause)
{
	struct sink_state k = {.pause = pause};

	read_into(out, first, len, &k);
	cr_assert_eq(k.rc, OUTPUTS_READ_OK, "%s", k.msg);
	cr_assert_eq(k.began, 1);
	cr_assert_eq(k.len, (size_t)len);
	cr_assert(len == 0 || memcmp(k.buf, bytes + first, (size_t)len) == 0);
	if (pause && len > 0)
		cr_assert(k.pieces >= 1);
	free(k.buf);
}

TestSuite(read, .init = setup_local, .fini = teardown, .timeout = 30);

Test(read, whole_and_ranges)
{
	struct output a;

	stored_one("/a.png", "png", png, sizeof(png), &a);
	expect_read(&a, png, 0, sizeof(png), 0);
	expect_read(&a, png, 0, 1, 0);
	expect_read(&a, png, 100, 1000, 0);
	expect_read(&a, png, sizeof(png) - 5, 5, 0);
}

Test(read, paused_and_resumed)
{
	static const char *const big[] = {
	    "outputs.store=local", "outputs.max_bytes=4194304", NULL};
	struct output a;
	struct sink_state k = {.pause = 1};

	teardown();
	setup_with(big);
	stored_one("/large", "bin", large, sizeof(large), &a);
	read_into(&a, 0, sizeof(large), &k);
	cr_assert_eq(k.rc, OUTPUTS_READ_OK, "%s", k.msg);
	cr_assert_eq(k.len, sizeof(large));
	cr_assert(memcmp(k.buf, large, sizeof(large)) == 0);
	cr_assert_eq(k.pieces, (int)(sizeof(large) / (64 * 1024)));
	free(k.buf);
}

Test(read, cancelled_inside_data)
{
	struct output a;
	struct sink_state k = {.cancel_after = 1};

	stored_one("/a.png", "png", png, sizeof(png), &a);
	k.rd = outputs_read(o, &a, 0, sizeof(png), &sink, &k);
	SPIN_UNTIL(outputs_busy(o) == 0, 2000);
	cr_assert_eq(outputs_busy(o), 0);
	cr_assert_eq(k.ended, 0);
	cr_assert_eq(k.pieces, 1);
	free(k.buf);
}

Test(read, cancelled_before_it_starts)
{
	struct output a;
	struct sink_state k = {0};

	stored_one("/a.png", "png", png, sizeof(png), &a);
	k.rd = outputs_read(o, &a, 0, sizeof(png), &sink, &k);
	outputs_read_cancel(k.rd);
	cr_assert_eq(outputs_busy(o), 0);
	SPIN_UNTIL(0, 50);
	cr_assert_eq(k.began + k.ended, 0);
}

Test(read, missing_and_damaged)
{
	struct output a, gone = out100;
	struct sink_state k = {0}, k2 = {0};
	char *path;

	read_into(&gone, 0, 10, &k);
	cr_assert_eq(k.rc, OUTPUTS_READ_MISSING);
	cr_assert_eq(k.began, 0);
	stored_one("/a.png", "png", png, sizeof(png), &a);
	path = xasprintf("%s/%s", outdir, a.id);
	cr_assert_eq(truncate(path, 100), 0);
	read_into(&a, 0, sizeof(png), &k2);
	cr_assert_eq(k2.rc, OUTPUTS_READ_ERROR);
	cr_assert_eq(k2.began, 0);
	free(path);
}

/* ---- S3: tests/api/s3.mjs as a child process ---- */

static pid_t s3_pid = -1;
static int s3_stdin = -1;
static char s3_endpoint[128], s3_bucket[64], s3_dir[256];

/* Start the helper; its JSON line gives the endpoint, bucket and dir. */
static void
s3_start(void)
{
	const char *helper = getenv("FILA_S3_HELPER");
	int out[2], in[2];
	char line[1024];
	size_t n = 0;
	json_t *j;

	if (helper == NULL || *helper == '\0')
		helper = "tests/api/s3.mjs";
	cr_assert_eq(access(helper, R_OK), 0,
	    "%s not found: run the unit tests from the repository's root, "
	    "or set FILA_S3_HELPER",
	    helper);
	cr_assert_eq(pipe(out), 0);
	cr_assert_eq(pipe(in), 0);
	s3_pid = fork();
	cr_assert(s3_pid >= 0);
	if (s3_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(in[0], 0);
		dup2(out[1], 1);
		/* nothing of Criterion's: its runner waits on what we hold */
		close_range(3, ~0U, 0);
		execlp("node", "node", helper, (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	s3_stdin = in[1];
	for (int64_t end = mono_ms() + 20000; n < sizeof(line) - 1;) {
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		int64_t left = end - mono_ms();
		ssize_t got;

		cr_assert(left > 0 && poll(&p, 1, (int)left) == 1,
		    "the S3 helper did not start (is s3rver installed? see "
		    "tests/api/s3.mjs)");
		got = read(out[0], line + n, 1);
		cr_assert_eq(got, 1,
		    "the S3 helper exited: is s3rver installed "
		    "(npm install, or FILA_S3RVER)? its "
		    "error is above");
		if (line[n++] == '\n')
			break;
	}
	line[n] = '\0';
	close(out[0]);
	j = json_loads(line, 0, NULL);
	cr_assert_not_null(j, "%s", line);
	snprintf(s3_endpoint, sizeof(s3_endpoint), "%s",
	    json_string_value(json_object_get(j, "endpoint")));
	snprintf(s3_bucket, sizeof(s3_bucket), "%s",
	    json_string_value(json_object_get(j, "bucket")));
	snprintf(s3_dir, sizeof(s3_dir), "%s",
	    json_string_value(json_object_get(j, "dir")));
	json_decref(j);
}

static void
s3_stop(void)
{
	if (s3_pid > 0) {
		kill(s3_pid, SIGTERM);
		waitpid(s3_pid, NULL, 0);
	}
	if (s3_stdin >= 0)
		close(s3_stdin);
	s3_pid = -1;
	s3_stdin = -1;
}

static void
setup_s3_secret(const char *secret)
{
	char *sets[8];

	s3_start();
	sets[0] = xstrdup("outputs.store=s3");
	sets[1] = xasprintf("outputs.s3_endpoint=%s", s3_endpoint);
	sets[2] = xasprintf("outputs.s3_bucket=%s", s3_bucket);
	sets[3] = xstrdup("outputs.s3_access_key=S3RVER");
	sets[4] = xasprintf("outputs.s3_secret_key=%s", secret);
	sets[5] = xstrdup("outputs.s3_prefix=fila/t/");
	sets[6] = xstrdup("outputs.max_bytes=4194304");
	sets[7] = NULL;
	setup_with((const char *const *)sets);
	for (int i = 0; i < 7; i++)
		free(sets[i]);
}

static void
setup_s3(void)
{
	setup_s3_secret("S3RVER");
}

static void
setup_s3_wrong(void)
{
	setup_s3_secret("not-the-secret");
}

static void
teardown_s3(void)
{
	teardown();
	s3_stop();
}

static int nobjects;

static int
count_object(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	const char *suffix = "._S3rver_object";
	size_t n = strlen(p), m = strlen(suffix);

	if (flag == FTW_F && n > m && strcmp(p + n - m, suffix) == 0 &&
	    strstr(p, "/fila/t/out_") != NULL)
		nobjects++;
	return 0;
}

/* Objects under the prefix, as s3rver keeps them on disk. */
static int
objects(void)
{
	char *b = xasprintf("%s/%s", s3_dir, s3_bucket);

	nobjects = 0;
	nftw(b, count_object, 8, FTW_PHYS);
	free(b);
	return nobjects;
}

TestSuite(s3, .init = setup_s3, .fini = teardown_s3, .timeout = 30);

Test(s3, copy_and_read_back)
{
	struct seen s;
	struct output a, b;

	copy_and_wait(src_outputs("/a.png", "png", "/blob", "mov", NULL), 20000,
	    20000, &s);
	cr_assert_eq(s.rc, 0, "%s", s.msg);
	expect_stored(s.stored, 0, "png", png, sizeof(png), &a);
	expect_stored(s.stored, 1, "mov", blob, sizeof(blob), &b);
	cr_assert_eq(objects(), 2);
	cr_assert_eq(files_in(outdir), 0, "a part file is left");
	expect_read(&a, png, 0, sizeof(png), 0);
	expect_read(&a, png, 10, 100, 0);
	expect_read(&a, png, sizeof(png) - 1, 1, 0);
	expect_read(&b, blob, 0, sizeof(blob), 1);
	json_decref(s.stored);
}

Test(s3, large_relayed_with_pauses)
{
	struct output a;

	stored_one("/large", "bin", large, sizeof(large), &a);
	expect_read(&a, large, 0, sizeof(large), 1);
	expect_read(&a, large, 1000000, 1500000, 1);
}

Test(s3, empty_object)
{
	struct output a;

	stored_one("/empty", "bin", "", 0, &a);
	expect_read(&a, (const unsigned char *)"", 0, 0, 0);
}

Test(s3, missing_object)
{
	struct sink_state k = {0};

	read_into(&out100, 0, 100, &k);
	cr_assert_eq(k.rc, OUTPUTS_READ_MISSING, "%s", k.msg);
	cr_assert_eq(k.began, 0);
}

Test(s3, failed_copy_removes_its_objects)
{
	struct seen s;

	copy_and_wait(
	    src_outputs("/a.png", "png", "/fail", "png", NULL), 1500, 5000, &s);
	cr_assert_eq(s.rc, -1);
	SPIN_UNTIL(outputs_busy(o) == 0, 5000);
	cr_assert_eq(outputs_busy(o), 0);
	cr_assert_eq(objects(), 0, "the first output's object stays");
	cr_assert_eq(files_in(outdir), 0);
}

Test(s3, cancelled_copy_removes_its_objects)
{
	struct seen s = {0};
	json_t *outs = src_outputs("/a.png", "png", "/hang", "png", NULL);

	cr_assert_eq(
	    outputs_copy(o, "job_1", outs, now_ms() + 20000, on_done, &s), 0);
	json_decref(outs);
	SPIN_UNTIL(hits_hang == 1, 10000);
	cr_assert_eq(objects(), 1);
	outputs_cancel(o, "job_1");
	SPIN_UNTIL(outputs_busy(o) == 0, 5000);
	cr_assert_eq(objects(), 0);
	cr_assert_eq(s.calls, 0);
	cr_assert_eq(files_in(outdir), 0);
}

/* The same server with the wrong secret: s3.mjs checks the signature, so
 * the PUT is refused and the copy fails saying so. */
TestSuite(s3_wrong, .init = setup_s3_wrong, .fini = teardown_s3, .timeout = 30);

Test(s3_wrong, signature_refused)
{
	struct seen s;

	copy_and_wait(src_outputs("/a.png", "png", NULL), 1500, 5000, &s);
	cr_assert_eq(s.rc, -1);
	cr_assert(
	    starts_with(s.msg, "could not store output 1 of 1: the storage "
	                       "answered HTTP 403 SignatureDoesNotMatch ("),
	    "%s", s.msg);
	cr_assert_eq(objects(), 0);
	cr_assert_eq(files_in(outdir), 0);
}

Test(s3_wrong, read_refused)
{
	struct sink_state k = {0};

	read_into(&out100, 0, 100, &k);
	cr_assert_eq(k.rc, OUTPUTS_READ_ERROR, "%s", k.msg);
	cr_assert_str_eq(
	    k.msg, "the storage answered HTTP 403 SignatureDoesNotMatch");
}
