/*
 * test_curlev.c — curl on the loop: a transfer ends in its done callback,
 * and a request added between turns goes out at curlev_run_due(), before
 * the loop serves another socket; a curlev freed while due is forgotten.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "curlev.h"

static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/* A listening socket on 127.0.0.1; its port in *port. */
static int
listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert(fd >= 0);
	cr_assert(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	cr_assert(listen(fd, 4) == 0);
	cr_assert(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* What fd has to read within ms, as text ("" when nothing came). */
static void
read_within(int fd, int ms, char *buf, size_t len)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t n = 0;

	buf[0] = '\0';
	if (poll(&p, 1, ms) == 1 && (n = read(fd, buf, len - 1)) > 0)
		buf[n] = '\0';
}

static size_t
discard(char *p, size_t size, size_t n, void *arg)
{
	return size * n;
}

static void
on_done(void *arg, CURL *easy, CURLcode rc)
{
	int *done = arg;
	*done = rc == CURLE_OK ? 1 : -1;
}

static CURL *
get(int port, const char *path)
{
	CURL *e = curl_easy_init();
	char url[64];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	return e;
}

/* Turns of base until *done or about 2 s. */
static void
run_until(struct event_base *base, int *done)
{
	for (int i = 0; i < 200 && !*done; i++) {
		curlev_run_due();
		struct timeval tv = {0, 10000};
		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
}

Test(curlev, request_goes_out_between_turns)
{
	struct event_base *base = event_base_new();
	struct curlev *cv = curlev_new(base);
	int port, lfd = listener(&port), cfd, done = 0;
	char buf[512] = "";
	CURL *one = get(port, "/one"), *two = get(port, "/two");

	/* The first request opens the connection, over the loop. */
	cr_assert(curlev_add(cv, one, on_done, &done) == 0);
	for (int i = 0; i < 200; i++) {
		struct pollfd p = {.fd = lfd, .events = POLLIN};
		if (poll(&p, 1, 0) == 1)
			break;
		curlev_run_due();
		struct timeval tv = {0, 10000};
		event_base_loopexit(base, &tv);
		event_base_loop(base, EVLOOP_ONCE);
	}
	cfd = accept(lfd, NULL, NULL);
	cr_assert(cfd >= 0);
	for (int i = 0; i < 200 && !strstr(buf, "\r\n\r\n"); i++) {
		curlev_run_due();
		event_base_loop(base, EVLOOP_NONBLOCK);
		read_within(cfd, 10, buf, sizeof(buf));
		if (buf[0])
			break;
	}
	cr_assert(strncmp(buf, "GET /one ", 9) == 0, "got: %s", buf);
	cr_assert(write(cfd, ok, strlen(ok)) == (ssize_t)strlen(ok));
	run_until(base, &done);
	cr_assert_eq(done, 1);

	/* The second, on the kept connection: out at curlev_run_due(),
	 * without a turn of the loop. */
	done = 0;
	cr_assert(curlev_add(cv, two, on_done, &done) == 0);
	read_within(cfd, 0, buf, sizeof(buf));
	cr_expect_str_empty(buf, "nothing is sent before run_due");
	curlev_run_due();
	read_within(cfd, 1000, buf, sizeof(buf));
	cr_expect(strncmp(buf, "GET /two ", 9) == 0, "got: %s", buf);
	cr_assert(write(cfd, ok, strlen(ok)) == (ssize_t)strlen(ok));
	run_until(base, &done);
	cr_expect_eq(done, 1);

	curlev_free(cv);
	curl_easy_cleanup(one);
	curl_easy_cleanup(two);
	close(cfd);
	close(lfd);
	event_base_free(base);
}

Test(curlev, freed_while_due_is_forgotten)
{
	struct event_base *base = event_base_new();
	struct curlev *a = curlev_new(base), *b = curlev_new(base);
	int port, lfd = listener(&port), da = 0, db = 0;
	CURL *ea = get(port, "/a"), *eb = get(port, "/b");

	cr_assert(curlev_add(a, ea, on_done, &da) == 0);
	cr_assert(curlev_add(b, eb, on_done, &db) == 0);
	curlev_free(a); /* due, and gone: run_due must not touch it */
	curlev_run_due();
	curlev_run_due(); /* nothing due twice */
	cr_expect_eq(curlev_pending(b), 1);
	curlev_free(b);
	curlev_run_due();
	cr_expect_eq(da, 0);
	cr_expect_eq(db, 0);
	curl_easy_cleanup(ea);
	curl_easy_cleanup(eb);
	close(lfd);
	event_base_free(base);
}
