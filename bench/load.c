/*
 * load.c — a small HTTP/1.1 load generator on libevent, for bench/all.
 *
 *   load -a HOST:PORT[,HOST:PORT...] -f FILE [-c CONNS] [-n COUNT]
 *        [-d SECONDS] [-R RATE] [-t SECONDS] [-o BODIES]
 *
 * With several addresses (several fila processes on one database), the
 * connections are spread over them round-robin: connection i talks to
 * address i mod N, for the whole run (a broken one connects again to the
 * same address). The figures are those of the whole run.
 *
 * FILE holds raw HTTP requests, each framed as "LENGTH\n" then LENGTH bytes.
 * They are sent in order, each once; with -n larger than the file, the file
 * is sent again from its start (for a GET repeated many times).
 *
 * Closed loop (no -R): each of the CONNS keep-alive connections sends its
 * next request as soon as the answer to the last one is read; latency is
 * from the send to the last byte of the answer.
 *
 * Open loop (-R RATE): request i is due at start + i/RATE, whatever the
 * server does. A due request goes out on an idle connection, or waits for
 * one. Its latency is counted from the time it was due, not from when it
 * could be sent: a server that stalls is charged for every request it
 * delayed (no "coordinated omission").
 *
 * Sending stops after COUNT requests (default: those in the file) or -d
 * SECONDS; the run ends when every sent request is answered, or at -t
 * SECONDS (default -d + 60, else 600), when those still out count as
 * "unanswered". Answers must carry Content-Length (fila's do, but for event
 * streams, which are not benchmarked here).
 *
 * Prints one JSON object on stdout: requests sent, answers by status,
 * errors, duration, rate, latency percentiles in ms, this process's own
 * CPU time (to show the generator is not the bottleneck), and the
 * machine's pauses: a thread of its own sleeps 1 ms at a time and counts
 * each wake-up more than 2 ms late, what every thread of the machine was
 * kept waiting for then (a machine without a free core, or one its host
 * paused): no server's latency can be lower. -o writes each
 * answer as one line "STATUS BODY" (newlines in the body made spaces), in
 * request order: how the caller learns the ids fila made.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

struct req {
	const char *data;
	size_t len;
};

struct conn {
	struct bufferevent *bev;
	const struct sockaddr_in *addr; /* the server it talks to */
	long cur;    /* index of the request in flight, -1 when idle */
	double sent; /* when it was sent (closed loop) or due (open loop) */
};

static struct event_base *base;
#define MAX_ADDRS 16
static struct sockaddr_in addrs[MAX_ADDRS];
static int naddrs;
static struct req *reqs;
static long nreqs;
static struct conn *conns;
static int nconns = 64;
static long count = -1;   /* requests to send */
static double rate;       /* 0: closed loop */
static double dur_limit;  /* -d: stop sending after this */
static double hard_limit; /* -t: stop waiting after this */
static const char *body_path;

static double t_start, t_last;
static long next_req; /* next request to send */
static long due;      /* open loop: requests due so far */
static long answered, errors;
static long status_count[600];
static double *lat;
static size_t nlat, caplat;
static char **bodies; /* -o: answer per request */
static int *body_status;
static struct event *tick;

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void
die(const char *msg)
{
	fprintf(stderr, "load: %s\n", msg);
	exit(2);
}

static void *
xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

/* The whole file in memory, cut into its framed requests. */
static void
read_requests(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die("cannot open the request file");
	size_t cap = 1 << 20, len = 0;
	char *buf = xrealloc(NULL, cap);
	size_t n;
	while ((n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap)
			buf = xrealloc(buf, cap *= 2);
	}
	fclose(f);
	size_t cap_r = 1024, off = 0;
	reqs = xrealloc(NULL, cap_r * sizeof *reqs);
	while (off < len) {
		char *end;
		unsigned long l = strtoul(buf + off, &end, 10);
		if (end == buf + off || *end != '\n' ||
		    (size_t)(end + 1 - buf) + l > len)
			die("bad framing in the request file");
		if ((size_t)nreqs == cap_r)
			reqs = xrealloc(reqs, (cap_r *= 2) * sizeof *reqs);
		reqs[nreqs].data = end + 1;
		reqs[nreqs].len = l;
		nreqs++;
		off = (size_t)(end + 1 - buf) + l;
	}
	if (nreqs == 0)
		die("no request in the file");
}

static void conn_open(struct conn *c);

static int
sending_over(void)
{
	return next_req >= count ||
	       (dur_limit > 0 && now() - t_start >= dur_limit);
}

static int
inflight(void)
{
	int n = 0;
	for (int i = 0; i < nconns; i++)
		n += conns[i].cur >= 0;
	return n;
}

static void
maybe_finish(void)
{
	if (sending_over() && (!rate || due <= next_req) && inflight() == 0)
		event_base_loopbreak(base);
}

static void
send_one(struct conn *c, double when)
{
	const struct req *r = &reqs[next_req % nreqs];
	c->cur = next_req++;
	c->sent = when;
	bufferevent_write(c->bev, r->data, r->len);
}

/* Give idle connections work: in closed loop the next request, in open
 * loop the oldest request already due. */
static void
dispatch(void)
{
	for (int i = 0; i < nconns; i++) {
		struct conn *c = &conns[i];
		if (c->cur >= 0 || !c->bev)
			continue;
		if (rate) {
			if (next_req >= due || next_req >= count)
				break;
			send_one(c, t_start + next_req / rate);
		} else {
			if (sending_over())
				break;
			send_one(c, now());
		}
	}
	maybe_finish();
}

static void
record(struct conn *c, int status, const char *body, size_t blen)
{
	double t = now();
	t_last = t;
	if (nlat == caplat)
		lat = xrealloc(
		    lat, (caplat = caplat ? caplat * 2 : 65536) * sizeof *lat);
	lat[nlat++] = (t - c->sent) * 1000;
	answered++;
	if (status >= 100 && status < 600)
		status_count[status]++;
	if (body_path) {
		char *s = xrealloc(NULL, blen + 1);
		for (size_t i = 0; i < blen; i++)
			s[i] =
			    body[i] == '\n' || body[i] == '\r' ? ' ' : body[i];
		s[blen] = 0;
		free(bodies[c->cur]);
		bodies[c->cur] = s;
		body_status[c->cur] = status;
	}
	c->cur = -1;
}

/* Parse every complete answer in the input buffer. */
static void
on_read(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		struct evbuffer_ptr p =
		    evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (p.pos < 0)
			return;
		size_t hlen = (size_t)p.pos + 4;
		/* A NUL-terminated copy of the head, for the string functions.
		 */
		static char head[65536];
		if (hlen >= sizeof head)
			die("answer head over 64 KiB");
		evbuffer_copyout(in, head, hlen);
		head[hlen] = 0;
		int status = 0;
		if (sscanf(head, "HTTP/1.%*d %d", &status) != 1)
			die("answer without a status line");
		/* Content-Length and Connection, case-insensitively. */
		long clen = -1;
		int close_after = 0;
		for (char *l = strstr(head, "\r\n"); l && l < head + hlen - 4;
		     l = strstr(l + 2, "\r\n")) {
			char *h = l + 2;
			if (!strncasecmp(h, "Content-Length:", 15))
				clen = strtol(h + 15, NULL, 10);
			else if (!strncasecmp(h, "Connection:", 11) &&
			         !strncasecmp(
			             h + 11 + strspn(h + 11, " "), "close", 5))
				close_after = 1;
			else if (!strncasecmp(h, "Transfer-Encoding:", 18))
				die("chunked answers are not supported");
		}
		if (clen < 0)
			clen = 0;
		if (evbuffer_get_length(in) < hlen + (size_t)clen)
			return;
		char *all = (char *)evbuffer_pullup(in, (ssize_t)(hlen + clen));
		if (c->cur >= 0)
			record(c, status, all + hlen, (size_t)clen);
		evbuffer_drain(in, hlen + (size_t)clen);
		if (close_after) {
			bufferevent_free(c->bev);
			c->bev = NULL;
			conn_open(c);
			return;
		}
		dispatch();
		if (c->cur >= 0 && evbuffer_get_length(in) == 0)
			return;
	}
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY,
		    &one, sizeof one);
		dispatch();
		return;
	}
	/* Closed or failed: what was in flight is lost; connect again. */
	if (c->cur >= 0) {
		errors++;
		c->cur = -1;
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
	if (!sending_over())
		conn_open(c);
	maybe_finish();
}

static void
conn_open(struct conn *c)
{
	c->cur = -1;
	c->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(
	        c->bev, (const struct sockaddr *)c->addr, sizeof *c->addr) < 0)
		die("connect failed");
}

/* The clock of the run: in open loop, make due what is due and sleep until
 * the next request is due (a precise timer, so a request leaves within
 * microseconds of its time); in both loops, check the limits of time. */
static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	double t = now() - t_start;
	if (hard_limit > 0 && t >= hard_limit) {
		event_base_loopbreak(base);
		return;
	}
	double wait = 0.01;
	if (rate) {
		long last = count;
		if (dur_limit > 0 && (long)(dur_limit * rate) < last)
			last = (long)(dur_limit * rate);
		long d = (long)(t * rate) + 1;
		due = d < last ? d : last;
		if (due < last) {
			wait = due / rate - t;
			if (wait < 0)
				wait = 0;
		}
	}
	struct timeval tv = {
	    (time_t)wait, (suseconds_t)((wait - (time_t)wait) * 1e6)};
	evtimer_add(tick, &tv);
	dispatch();
}

/* The pause probe: wake-ups more than PAUSE_MS late, while the run lasts. */
#define PAUSE_MS 2.0
static atomic_int probe_stop;
static long pauses;
static double pause_ms, pause_max_ms;

static void *
probe_main(void *arg)
{
	const struct timespec ms = {0, 1000000};

	while (!atomic_load(&probe_stop)) {
		double t = now();
		nanosleep(&ms, NULL);
		double late = (now() - t) * 1e3 - 1.0;
		if (late > PAUSE_MS) {
			pauses++;
			pause_ms += late;
			if (late > pause_max_ms)
				pause_max_ms = late;
		}
	}
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
quantile(double q)
{
	if (nlat == 0)
		return 0;
	size_t i = (size_t)(q * nlat + 0.999999);
	i = i ? i - 1 : 0;
	return lat[i < nlat ? i : nlat - 1];
}

int
main(int argc, char **argv)
{
	const char *target = NULL, *file = NULL;
	int opt;
	while ((opt = getopt(argc, argv, "a:f:c:n:d:R:t:o:")) != -1) {
		switch (opt) {
		case 'a':
			target = optarg;
			break;
		case 'f':
			file = optarg;
			break;
		case 'c':
			nconns = atoi(optarg);
			break;
		case 'n':
			count = atol(optarg);
			break;
		case 'd':
			dur_limit = atof(optarg);
			break;
		case 'R':
			rate = atof(optarg);
			break;
		case 't':
			hard_limit = atof(optarg);
			break;
		case 'o':
			body_path = optarg;
			break;
		default:
			fprintf(stderr,
			    "usage: load -a HOST:PORT[,HOST:PORT...] "
			    "-f FILE [-c CONNS] [-n COUNT] [-d "
			    "SECONDS] [-R RATE] [-t SECONDS] [-o "
			    "BODIES]\n");
			return 2;
		}
	}
	if (!target || !file || nconns < 1 || rate < 0)
		die("need -a HOST:PORT and -f FILE");
	for (const char *t = target; *t;) {
		char host[64];
		int port, used = 0;
		if (naddrs == MAX_ADDRS)
			die("at most 16 addresses in -a");
		if (sscanf(t, "%63[^:,]:%d%n", host, &port, &used) != 2 ||
		    port < 1 || port > 65535)
			die("bad -a");
		struct sockaddr_in *a = &addrs[naddrs++];
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			die("-a needs IPv4 addresses");
		t += used;
		if (*t == ',')
			t++;
		else if (*t)
			die("bad -a");
	}
	read_requests(file);
	if (count < 0)
		count = nreqs;
	if (hard_limit <= 0)
		hard_limit = dur_limit > 0 ? dur_limit + 60 : 600;
	if (body_path) {
		if (count > 10000000)
			die("-o keeps every answer: at most 10,000,000");
		bodies = xrealloc(NULL, (size_t)count * sizeof *bodies);
		body_status =
		    xrealloc(NULL, (size_t)count * sizeof *body_status);
		memset(bodies, 0, (size_t)count * sizeof *bodies);
		memset(body_status, 0, (size_t)count * sizeof *body_status);
	}

	struct event_config *cfg = event_config_new();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	conns = xrealloc(NULL, (size_t)nconns * sizeof *conns);
	memset(conns, 0, (size_t)nconns * sizeof *conns);
	t_start = t_last = now();
	for (int i = 0; i < nconns; i++) {
		conns[i].addr = &addrs[i % naddrs];
		conn_open(&conns[i]);
	}
	pthread_t probe;
	if (pthread_create(&probe, NULL, probe_main, NULL) != 0)
		die("no probe thread");
	tick = evtimer_new(base, on_tick, NULL);
	on_tick(-1, 0, NULL);
	event_base_dispatch(base);
	atomic_store(&probe_stop, 1);
	pthread_join(probe, NULL);

	double duration = t_last - t_start;
	long unanswered = inflight() + (rate ? due - next_req : 0);
	qsort(lat, nlat, sizeof *lat, cmp_double);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
	             ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;

	printf(
	    "{\"sent\":%ld,\"answered\":%ld,\"status\":{", next_req, answered);
	for (int s = 0, first = 1; s < 600; s++)
		if (status_count[s]) {
			printf("%s\"%d\":%ld", first ? "" : ",", s,
			    status_count[s]);
			first = 0;
		}
	printf("},\"errors\":%ld,\"unanswered\":%ld,\"connections\":%d,"
	       "\"target_rate\":%.1f,\"duration_s\":%.3f,\"rate\":%.1f,"
	       "\"latency_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
	       "\"max\":%.3f},\"cpu_s\":%.3f,\"pauses\":{\"count\":%ld,"
	       "\"ms\":%.1f,\"max_ms\":%.1f}}\n",
	    errors, unanswered, nconns, rate, duration,
	    duration > 0 ? answered / duration : 0, quantile(0.5),
	    quantile(0.9), quantile(0.99), nlat ? lat[nlat - 1] : 0, cpu,
	    pauses, pause_ms, pause_max_ms);

	if (body_path) {
		FILE *f = fopen(body_path, "w");
		if (!f)
			die("cannot write the bodies file");
		for (long i = 0; i < count; i++)
			fprintf(f, "%d %s\n", body_status[i],
			    bodies[i] ? bodies[i] : "");
		fclose(f);
	}
	return 0;
}
