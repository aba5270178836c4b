/*
 * hooks.c — deliveries of the outbox. A timer claims what is due (at most
 * MAX_FLIGHT in flight), each claim for longer than an attempt may last so
 * no other process sends it meanwhile; each delivery is a POST on the
 * loop (curlev), then marked delivered, due again later, or failed for
 * good. The body is the event's job as it was then, so a delivery sent
 * again is the same bytes, with the same webhook-id; only its timestamp
 * and signature are the attempt's.
 */
#include "hooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "curlev.h"
#include "list.h"
#include "util.h"

#define TICK_MS 500
#define MAX_FLIGHT 8
#define TIMEOUT_MS 10000
#define CLAIM_MS 15000 /* > TIMEOUT_MS: an attempt ends before its claim */
#define GIVE_UP_MS (24 * 3600 * 1000LL)
#define ERROR_MAX 300 /* bytes of why an attempt failed, kept */

struct delivery {
	struct hooks *h;
	struct list link; /* in hooks.flying */
	int64_t event_id;
	int64_t event_at;
	int64_t attempts;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	int64_t retry_after;
};

struct hooks {
	const struct config *cfg;
	struct store *st;
	struct curlev *cv;
	struct event *tick;
	unsigned char key[256];
	size_t keylen;
	int flight;
	int claiming;       /* a claim waits for its commit */
	struct list flying; /* the deliveries in flight */
};

/* ---- the Standard Webhooks parts --------------------------------- */

char *
hooks_sign(const unsigned char *key, size_t keylen, const char *id,
    int64_t timestamp, const char *body)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	char *msg = xasprintf("%s.%lld.%s", id, (long long)timestamp, body);
	char *out = xmalloc(4 + 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1);

	HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg,
	    strlen(msg), mac, &maclen);
	free(msg);
	memcpy(out, "v1,", 3);
	EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
	return out;
}

char *
hooks_body(const struct store_delivery *d)
{
	char when[TIME_BUF];

	/* The job's JSON is the event's text, as every stream sent it. */
	return xasprintf(
	    "{\"type\":\"job.%s\",\"timestamp\":\"%s\",\"data\":%s}", d->status,
	    fmt_time(d->at, when), d->data);
}

int64_t
hooks_next(
    int64_t event_at, int64_t attempts, int64_t now, int64_t retry_after_s)
{
	static const int64_t wait_s[] = {5, 30, 120, 600, 3600};
	size_t n = sizeof(wait_s) / sizeof(*wait_s);
	int64_t wait = attempts >= 1 && (size_t)attempts <= n
	                   ? wait_s[attempts - 1]
	                   : 3600;

	/* A receiver may ask for a later try, or an earlier one, but not
	 * for a flood: a second at least, an hour at most. */
	if (retry_after_s > 0)
		wait = retry_after_s < 3600 ? retry_after_s : 3600;
	if (now + wait * 1000 - event_at > GIVE_UP_MS)
		return 0;
	return now + wait * 1000;
}

/* whsec_ and base64: the key's bytes, or -1. */
static int
decode_secret(const char *s, unsigned char *out, size_t cap, size_t *len)
{
	size_t n;
	int got;

	if (strncmp(s, "whsec_", 6) != 0)
		return -1;
	s += 6;
	n = strlen(s);
	if (n == 0 || n % 4 || n / 4 * 3 > cap)
		return -1;
	got = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
	if (got < 0)
		return -1;
	*len = (size_t)got - (s[n - 1] == '=') - (n > 1 && s[n - 2] == '=');
	return 0;
}

/* ---- attempts ----------------------------------------------------- */

static void
delivery_free(struct delivery *d)
{
	if (list_linked(&d->link)) {
		list_remove(&d->link);
		d->h->flight--;
	}
	if (d->easy)
		curl_easy_cleanup(d->easy);
	curl_slist_free_all(d->headers);
	free(d->body);
	free(d);
}

/* A Retry-After of seconds (a date is not worth parsing here). */
static size_t
on_header(char *buf, size_t size, size_t n, void *arg)
{
	struct delivery *d = arg;
	size_t len = size * n;
	long long s;
	char v[32];

	if (len > 12 && strncasecmp(buf, "Retry-After:", 12) == 0 &&
	    len - 12 < sizeof(v)) {
		memcpy(v, buf + 12, len - 12);
		v[len - 12] = '\0';
		v[strcspn(v, "\r\n")] = '\0';
		if (parse_ll(v + strspn(v, " \t"), &s) == 0 && s > 0)
			d->retry_after = s;
	}
	return len;
}

static size_t
discard(char *buf, size_t size, size_t n, void *arg)
{
	return size * n;
}

static void
on_done(void *arg, CURL *easy, CURLcode rc)
{
	struct delivery *d = arg;
	struct hooks *h = d->h;
	long status = 0;
	char why[ERROR_MAX];
	int ok;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
	ok = rc == CURLE_OK && status >= 200 && status < 300;
	if (rc != CURLE_OK)
		snprintf(why, sizeof(why), "%s", curl_easy_strerror(rc));
	else
		snprintf(why, sizeof(why), "HTTP %ld", status);
	if (store_outbox_done(h->st, d->event_id, ok,
	        ok ? 0
	           : hooks_next(d->event_at, d->attempts + 1, now_ms(),
	                 d->retry_after),
	        ok ? NULL : why) != STORE_OK)
		fprintf(stderr, "fila: webhook %lld: %s\n",
		    (long long)d->event_id, store_error(h->st));
	delivery_free(d);
}

static void
send_one(struct hooks *h, const struct store_delivery *sd)
{
	struct delivery *d = xcalloc(1, sizeof(*d));
	int64_t ts = now_ms() / 1000;
	char id[40], hdr[96], *sig, *line;

	d->h = h;
	list_init(&d->link);
	d->event_id = sd->event_id;
	d->event_at = sd->at;
	d->attempts = sd->attempts;
	d->body = hooks_body(sd);
	snprintf(id, sizeof(id), "evt_%lld", (long long)sd->event_id);
	sig = hooks_sign(h->key, h->keylen, id, ts, d->body);
	d->headers =
	    curl_slist_append(d->headers, "Content-Type: application/json");
	snprintf(hdr, sizeof(hdr), "webhook-id: %s", id);
	d->headers = curl_slist_append(d->headers, hdr);
	snprintf(hdr, sizeof(hdr), "webhook-timestamp: %lld", (long long)ts);
	d->headers = curl_slist_append(d->headers, hdr);
	line = xasprintf("webhook-signature: %s", sig);
	d->headers = curl_slist_append(d->headers, line);
	free(line);
	free(sig);
	d->headers = curl_slist_append(d->headers, "Expect:");
	if ((d->easy = curl_easy_init()) == NULL)
		goto fail;
	curl_easy_setopt(d->easy, CURLOPT_URL, h->cfg->hook_url);
	curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
	curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
	curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long)TIMEOUT_MS);
	curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(d->easy, CURLOPT_USERAGENT, "fila-webhooks");
	curl_easy_setopt(d->easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(d->easy, CURLOPT_HEADERDATA, d);
	curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, discard);
	if (curlev_add(h->cv, d->easy, on_done, d) != 0)
		goto fail;
	list_add_tail(&h->flying, &d->link);
	h->flight++;
	return;
fail:
	/* Its claim lapses and it is tried again. */
	delivery_free(d);
}

/* Deliveries claimed, sent once their claim (and what it read: events of
 * the same turn, or of a commit still being synced) is durable. */
struct claimed {
	struct hooks *h;
	struct store_delivery_list l;
};

static void
on_claimed(void *arg, int ok)
{
	struct claimed *c = arg;

	for (size_t i = 0; ok && i < c->l.n; i++)
		send_one(c->h, &c->l.v[i]);
	c->h->claiming = 0;
	store_delivery_list_cleanup(&c->l);
	free(c);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct hooks *h = arg;
	struct claimed *c;

	if (h->flight >= MAX_FLIGHT || h->claiming)
		return;
	c = xcalloc(1, sizeof(*c));
	c->h = h;
	if (store_outbox_claim(h->st, now_ms(), CLAIM_MS,
	        MAX_FLIGHT - h->flight, &c->l) != STORE_OK) {
		store_delivery_list_cleanup(&c->l);
		free(c);
		return;
	}
	h->claiming = 1;
	store_after(h->st, on_claimed, c);
}

struct hooks *
hooks_new(struct event_base *base, const struct config *cfg, struct store *st,
    char *err, size_t errlen)
{
	struct hooks *h;
	struct timeval tv = timeval_ms(TICK_MS);

	if (*cfg->hook_url == '\0')
		return NULL;
	h = xcalloc(1, sizeof(*h));
	h->cfg = cfg;
	h->st = st;
	list_init(&h->flying);
	if (decode_secret(
	        cfg->hook_secret, h->key, sizeof(h->key), &h->keylen) != 0) {
		snprintf(err, errlen,
		    "[webhooks] secret: expected whsec_ and base64");
		free(h);
		return NULL;
	}
	if ((h->cv = curlev_new(base)) == NULL) {
		snprintf(err, errlen, "webhooks: curl cannot start");
		free(h);
		return NULL;
	}
	h->tick = event_new(base, -1, EV_PERSIST, on_tick, h);
	event_add(h->tick, &tv);
	return h;
}

void
hooks_free(struct hooks *h)
{
	if (h == NULL)
		return;
	event_free(h->tick);
	curlev_free(h->cv); /* the done callbacks never run: free ours */
	while (!list_empty(&h->flying))
		delivery_free(
		    list_entry(h->flying.next, struct delivery, link));
	free(h);
}
