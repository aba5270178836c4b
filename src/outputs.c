/*
 * outputs.c — outputs that outlive the provider's links (docs/api.md §10).
 *
 * A copy is one job's outputs, taken one after the other through two
 * steps, each a libcurl transfer on the loop (curlev): fetch (the
 * provider's URL into "{dir}/{id}.part", hashed as it arrives and cut off
 * past outputs.max_bytes), then store: with store = local the part file is
 * synced and renamed to "{dir}/{id}"; with s3 it is PUT as the object
 * "{prefix}{id}", signed by libcurl (CURLOPT_AWS_SIGV4) with the payload's
 * SHA-256 in x-amz-content-sha256, which S3 requires and libcurl 7.88 does
 * not add. A failed step is tried again after a backoff for as long as a
 * try can start before the copy's deadline; what a failed or cancelled
 * copy stored is removed.
 *
 * curlev has no way to take one transfer out of the loop, so a cancelled
 * transfer is stopped by its own callbacks: the progress callback (run at
 * least once a second, as LOW_SPEED_LIMIT makes curl check the speed) or
 * the write callback answers "abort", and the transfer's end frees it.
 *
 * Serving is split so that this file knows nothing of the HTTP server:
 * outputs_plan() decides the answer from the request's head (Range,
 * If-None-Match, If-Range; pure, and tested as such), and outputs_read()
 * hands the bytes to a sink with backpressure, from the file or relayed
 * from an S3 GET as it arrives.
 */
#include "outputs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "config.h"
#include "curlev.h"
#include "list.h"
#include "uploads.h"
#include "util.h"

#define RETRY_BASE_MS 500
#define RETRY_MAX_MS 15000
#define CONNECT_MS 10000
#define STALL_S 60         /* a transfer this long without a byte fails */
#define DELETE_MS 30000    /* a removal of an S3 object, best effort */
#define PART_MAX_AGE 3600  /* seconds before a stray part file goes */
#define SKEW_S 60          /* clock skew allowed on a URL's expiry */
#define PIECE (64 * 1024)  /* a local read's piece */
#define PIECES_PER_TURN 16 /* then the loop gets a turn */
/* An output's bytes never change under its id; the signed URL is the
 * user's alone. */
#define CACHE_CONTROL "private, max-age=31536000, immutable"
#define EMPTY_SHA256                                                           \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct outputs {
	struct event_base *base;
	const struct config *cfg;
	struct curlev *cv;
	unsigned char key[32]; /* URL signatures' */
	char *s3_base;         /* "{endpoint}/{bucket}/{prefix}" */
	char *sigv4;           /* "aws:amz:{region}:s3" */
	struct list copies;
	struct list reads;
	struct list dels;
};

enum step { FETCH, STORE };

/* One job's copy. */
struct copy {
	struct list link; /* in outputs.copies */
	struct outputs *o;
	char *job_id;
	json_t *src;      /* the provider's outputs */
	json_t *stored;   /* what is stored so far */
	size_t i, n;      /* the output being copied, of n */
	int64_t deadline; /* mono_ms() */
	outputs_done_cb done;
	void *arg;
	int cancelled;
	struct event *timer;
	void (*next)(struct copy *); /* what the timer runs */

	/* the output being copied */
	struct output cur;
	enum step step;
	int tries;
	int fatal; /* the last failure is not worth another try */
	char *part;
	int fd;
	EVP_MD_CTX *sha;
	int64_t got;
	int too_big;
	CURL *easy; /* in flight */
	struct curl_slist *hdrs;
	char errbuf[CURL_ERROR_SIZE];
	char answer[512]; /* the start of an S3 answer's body */
	size_t answer_len;
	char why[256]; /* the last failure */
};

/* The removal of an S3 object, best effort. */
struct del {
	struct list link; /* in outputs.dels */
	CURL *easy;
	struct curl_slist *hdrs;
};

struct outputs_read {
	struct list link; /* in outputs.reads */
	struct outputs *o;
	struct outputs_sink sink;
	void *arg;
	int64_t first, left; /* the next byte to give, and how many remain */
	int partial;         /* not the whole output: a Range for S3 */
	int fd;              /* local */
	unsigned char *buf;  /* local: a piece */
	CURL *easy;          /* s3, in flight */
	struct curl_slist *hdrs;
	struct event *ev; /* local: the next pieces; s3: resume; both: end */
	int finished;     /* the end is known, and waits for ev */
	enum outputs_read_rc final;
	char msg[160];
	int began, paused, cancelled, ended, in_cb;
	char answer[256];
	size_t answer_len;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- ids, types ---- */

int
output_id_valid(const char *id)
{
	if (id == NULL || strlen(id) != OUTPUT_ID_LEN ||
	    strncmp(id, "out_", 4) != 0)
		return 0;
	return strspn(id + 4, "0123456789abcdef") == OUTPUT_ID_LEN - 4;
}

static const struct {
	const char *type, *ctype;
} content_types[] = {
    {"png", "image/png"},
    {"jpeg", "image/jpeg"},
    {"webp", "image/webp"},
    {"gif", "image/gif"},
    {"avif", "image/avif"},
    {"mp4", "video/mp4"},
    {"mov", "video/quicktime"},
    {"webm", "video/webm"},
};

const char *
output_content_type(const char *type)
{
	for (size_t i = 0; i < sizeof(content_types) / sizeof(*content_types);
	     i++)
		if (type != NULL && strcmp(type, content_types[i].type) == 0)
			return content_types[i].ctype;
	return "application/octet-stream";
}

/* The type of an output: from its first bytes when they say, else the
 * provider's word made a safe name ("JPG" is "jpeg"), else "bin". */
static void
type_of(char out[16], const void *head, size_t headlen, const char *said)
{
	const char *sniffed = uploads_sniff(head, headlen);
	size_t n = 0;

	if (sniffed != NULL) {
		snprintf(out, 16, "%s", sniffed);
		return;
	}
	for (; said != NULL && *said != '\0' && n < 15; said++)
		if ((*said >= 'a' && *said <= 'z') ||
		    (*said >= '0' && *said <= '9'))
			out[n++] = *said;
		else if (*said >= 'A' && *said <= 'Z')
			out[n++] = (char)(*said - 'A' + 'a');
	out[n] = '\0';
	if (strcmp(out, "jpg") == 0)
		snprintf(out, 16, "jpeg");
	if (n == 0)
		snprintf(out, 16, "bin");
}

int
output_find(struct output *out, const json_t *stored, const char *id)
{
	const json_t *item;
	size_t i;

	json_array_foreach(stored, i, item)
	{
		const char *iid =
		    json_string_value(json_object_get(item, "id"));
		const char *type =
		    json_string_value(json_object_get(item, "type"));
		const char *sha =
		    json_string_value(json_object_get(item, "sha256"));
		json_t *size = json_object_get(item, "size");

		if (iid == NULL || id == NULL || strcmp(iid, id) != 0)
			continue;
		if (!output_id_valid(iid) || type == NULL ||
		    strlen(type) >= sizeof(out->type) || sha == NULL ||
		    strlen(sha) != 64 || !json_is_integer(size) ||
		    json_integer_value(size) < 0)
			return -1;
		memset(out, 0, sizeof(*out));
		memcpy(out->id, iid, OUTPUT_ID_LEN + 1);
		memcpy(out->type, type, strlen(type) + 1);
		memcpy(out->sha256, sha, 65);
		out->size = json_integer_value(size);
		return 0;
	}
	return -1;
}

/* ---- files ---- */

static char *
path_of(const struct outputs *o, const char *id, const char *suffix)
{
	return xasprintf("%s/%s%s", o->cfg->outputs_dir, id, suffix);
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* mkdir -p, mode 0700: outputs are their users' alone. */
static int
make_dirs(const char *dir, char *err, size_t errlen)
{
	char *path = xstrdup(dir);
	size_t len = strlen(path);
	struct stat st;

	for (size_t i = 1; i <= len; i++) {
		if (path[i] != '/' && path[i] != '\0')
			continue;
		path[i] = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			goto fail;
		path[i] = i < len ? '/' : '\0';
	}
	if (stat(path, &st) < 0)
		goto fail;
	if (!S_ISDIR(st.st_mode)) {
		errno = ENOTDIR;
		goto fail;
	}
	free(path);
	return 0;
fail:
	set_err(err, errlen, "outputs: cannot create directory %s: %s", path,
	    strerror(errno));
	free(path);
	return -1;
}

/* Part files of copies a stopped process left behind. Young ones may be
 * another live process's (several may share the directory). */
static void
remove_stray_parts(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	time_t now = time(NULL);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		struct stat st;

		if (n != OUTPUT_ID_LEN + 5 ||
		    strcmp(e->d_name + OUTPUT_ID_LEN, ".part") != 0 ||
		    strncmp(e->d_name, "out_", 4) != 0)
			continue;
		if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
		    now - st.st_mtime > PART_MAX_AGE)
			unlinkat(dirfd(d), e->d_name, 0);
	}
	closedir(d);
}

/* ---- signed URLs ---- */

static void
base64url(const unsigned char *in, size_t len, char *out)
{
	static const char abc[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuv"
	    "wxyz0123456789-_";
	size_t o = 0;

	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		size_t rest = len - i;

		if (rest > 1)
			v |= (uint32_t)in[i + 1] << 8;
		if (rest > 2)
			v |= in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		if (rest > 1)
			out[o++] = abc[v >> 6 & 63];
		if (rest > 2)
			out[o++] = abc[v & 63];
	}
	out[o] = '\0';
}

#define SIG_LEN 43 /* 32 bytes, base64url unpadded */

static void
sign(const struct outputs *o, const char *id, long long exp,
    char out[SIG_LEN + 1])
{
	unsigned char mac[32];
	unsigned int maclen = sizeof(mac);
	char msg[OUTPUT_ID_LEN + 24];
	int n = snprintf(msg, sizeof(msg), "%s.%lld", id, exp);

	HMAC(EVP_sha256(), o->key, sizeof(o->key), (unsigned char *)msg,
	    (size_t)n, mac, &maclen);
	base64url(mac, sizeof(mac), out);
}

char *
outputs_url(struct outputs *o, const char *id, int64_t now_s)
{
	long long exp = (long long)(now_s + o->cfg->outputs_url_ttl);
	char sig[SIG_LEN + 1];

	sign(o, id, exp, sig);
	return xasprintf("%s/v1/outputs/%s?exp=%lld&sig=%s", o->cfg->public_url,
	    id, exp, sig);
}

int
outputs_check_sig(struct outputs *o, const char *id, const char *exp,
    const char *sig, int64_t now_s)
{
	char want[SIG_LEN + 1];
	long long e;

	if (!output_id_valid(id) || exp == NULL || sig == NULL ||
	    strspn(exp, "0123456789") != strlen(exp) || strlen(exp) > 18 ||
	    parse_ll(exp, &e) < 0 || strlen(sig) != SIG_LEN)
		return -1;
	if (e < now_s || e > now_s + o->cfg->outputs_url_ttl + SKEW_S)
		return -1;
	sign(o, id, e, want);
	return ct_equal(want, sig, SIG_LEN) ? 0 : -1;
}

json_t *
outputs_public(struct outputs *o, const json_t *stored, int64_t now_s)
{
	json_t *out = json_array();
	const json_t *item;
	size_t i;

	json_array_foreach(stored, i, item)
	{
		const char *id = json_string_value(json_object_get(item, "id"));
		json_t *type = json_object_get(item, "type");
		char *url;

		if (id == NULL) {
			json_array_append(out, (json_t *)item);
			continue;
		}
		url = outputs_url(o, id, now_s);
		json_array_append_new(
		    out, json_pack("{s:s, s:o}", "url", url, "type",
		             type ? json_incref(type) : json_string("")));
		free(url);
	}
	return out;
}

/* ---- serving: the answer from the request's head ---- */

static void plan_header(struct outputs_plan *p, const char *name,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
plan_header(struct outputs_plan *p, const char *name, const char *fmt, ...)
{
	va_list ap;

	if (p->nheaders == OUTPUTS_MAX_HEADERS)
		return;
	p->headers[p->nheaders].name = name;
	va_start(ap, fmt);
	vsnprintf(p->headers[p->nheaders].value, sizeof(p->headers[0].value),
	    fmt, ap);
	va_end(ap);
	p->nheaders++;
}

static const char *
skip_ows(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Up to 18 digits at *s into *v, *s moved past them: 0; -1 when none. */
static int
digits(const char **s, int64_t *v)
{
	const char *p = *s;
	int64_t x = 0;

	while (*p >= '0' && *p <= '9' && p - *s < 18)
		x = x * 10 + (*p++ - '0');
	if (p == *s || (*p >= '0' && *p <= '9'))
		return -1;
	*s = p;
	*v = x;
	return 0;
}

/*
 * One byte range of size bytes: 1 with [*first, *last]; -1 unsatisfiable;
 * 0 to be ignored (another unit, several ranges, malformed).
 */
static int
parse_range(const char *h, int64_t size, int64_t *first, int64_t *last)
{
	const char *s = skip_ows(h);
	int64_t a, b = -1;

	if (strncasecmp(s, "bytes=", 6) != 0 || strchr(s, ',') != NULL)
		return 0;
	s = skip_ows(s + 6);
	if (*s == '-') {
		s++;
		if (digits(&s, &a) < 0 || *skip_ows(s) != '\0')
			return 0;
		if (a == 0 || size == 0)
			return -1;
		*first = a < size ? size - a : 0;
		*last = size - 1;
		return 1;
	}
	if (digits(&s, &a) < 0 || *s++ != '-')
		return 0;
	if (*s >= '0' && *s <= '9' && digits(&s, &b) < 0)
		return 0;
	if (*skip_ows(s) != '\0' || (b >= 0 && b < a))
		return 0;
	if (a >= size)
		return -1;
	*first = a;
	*last = b >= 0 && b < size ? b : size - 1;
	return 1;
}

/* If-None-Match: "*", or a list of entity tags one of which is etag
 * (weak comparison: W/ is ignored). A malformed list matches nothing. */
static int
etag_listed(const char *list, const char *etag)
{
	size_t elen = strlen(etag);
	const char *s = list, *tag, *end;

	for (;;) {
		while (*s == ',' || *s == ' ' || *s == '\t')
			s++;
		if (*s == '\0')
			return 0;
		if (*s == '*')
			return 1;
		if (strncmp(s, "W/", 2) == 0)
			s += 2;
		tag = s;
		if (*tag != '"' || (end = strchr(tag + 1, '"')) == NULL)
			return 0;
		s = end + 1;
		if (*s != '\0' && *s != ',' && *s != ' ' && *s != '\t')
			return 0;
		if ((size_t)(s - tag) == elen && strncmp(tag, etag, elen) == 0)
			return 1;
	}
}

void
outputs_plan(const struct output *out, const char *range,
    const char *if_none_match, const char *if_range, struct outputs_plan *p)
{
	char etag[70];
	int64_t a = 0, b = 0;
	int r = 0;

	memset(p, 0, sizeof(*p));
	snprintf(etag, sizeof(etag), "\"%s\"", out->sha256);
	plan_header(p, "ETag", "%s", etag);
	plan_header(p, "Accept-Ranges", "bytes");
	if (if_none_match != NULL && etag_listed(if_none_match, etag)) {
		p->status = 304;
		plan_header(p, "Cache-Control", CACHE_CONTROL);
		return;
	}
	if (range != NULL &&
	    (if_range == NULL || strcmp(skip_ows(if_range), etag) == 0))
		r = parse_range(range, out->size, &a, &b);
	if (r < 0) {
		p->status = 416;
		plan_header(
		    p, "Content-Range", "bytes */%lld", (long long)out->size);
		return;
	}
	p->ctype = output_content_type(out->type);
	plan_header(p, "Cache-Control", CACHE_CONTROL);
	plan_header(p, "X-Content-Type-Options", "nosniff");
	plan_header(
	    p, "Content-Security-Policy", "default-src 'none'; sandbox");
	if (r == 0) {
		p->status = 200;
		p->length = out->size;
		return;
	}
	p->status = 206;
	p->first = a;
	p->length = b - a + 1;
	plan_header(p, "Content-Range", "bytes %lld-%lld/%lld", (long long)a,
	    (long long)b, (long long)out->size);
}

/* ---- S3 requests ---- */

static char *
s3_url(const struct outputs *o, const char *id)
{
	return xasprintf("%s%s", o->s3_base, id);
}

/* A fresh easy signed for S3 (its headers start hdrs), or NULL. */
static CURL *
s3_easy(struct outputs *o, const char *id, const char *payload_sha256,
    struct curl_slist **hdrs)
{
	CURL *e = curl_easy_init();
	char *url, *h;

	if (e == NULL)
		return NULL;
	url = s3_url(o, id);
	curl_easy_setopt(e, CURLOPT_URL, url);
	free(url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_MS);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "fila");
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, o->sigv4);
	curl_easy_setopt(e, CURLOPT_USERNAME, o->cfg->s3_access_key);
	curl_easy_setopt(e, CURLOPT_PASSWORD, o->cfg->s3_secret_key);
	h = xasprintf("x-amz-content-sha256: %s", payload_sha256);
	*hdrs = curl_slist_append(*hdrs, h);
	free(h);
	return e;
}

/* "HTTP 403 SignatureDoesNotMatch": an S3 error answer, with its code. */
static void
s3_refusal(char *out, size_t outlen, long http, const char *body, size_t len)
{
	char text[512];
	const char *code, *end;

	snprintf(text, sizeof(text), "%.*s", (int)len, body);
	code = strstr(text, "<Code>");
	end = code ? strstr(code, "</Code>") : NULL;
	if (code != NULL && end != NULL && end - code - 6 < 64)
		snprintf(out, outlen, "the storage answered HTTP %ld %.*s",
		    http, (int)(end - code - 6), code + 6);
	else
		snprintf(out, outlen, "the storage answered HTTP %ld", http);
}

static size_t
keep_answer(char *buf, size_t *len, size_t cap, const char *p, size_t n)
{
	size_t room = cap - 1 - *len;
	size_t take = n < room ? n : room;

	memcpy(buf + *len, p, take);
	*len += take;
	buf[*len] = '\0';
	return n;
}

static size_t
del_write(char *p, size_t size, size_t nmemb, void *arg)
{
	return size * nmemb;
}

static void
del_free(struct del *d)
{
	list_remove(&d->link);
	curl_easy_cleanup(d->easy);
	curl_slist_free_all(d->hdrs);
	free(d);
}

static void
del_done(void *arg, CURL *easy, CURLcode rc)
{
	struct del *d = arg;
	long http = 0;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
	if (rc != CURLE_OK || (http / 100 != 2 && http != 404))
		fprintf(stderr,
		    "fila: outputs: an S3 object was not removed"
		    " (%s, HTTP %ld)\n",
		    curl_easy_strerror(rc), http);
	del_free(d);
}

/* Remove what a copy stored, since no job will name it. */
static void
remove_stored(struct outputs *o, const char *id)
{
	struct del *d;
	char *path;

	if (o->cfg->outputs == OUTPUTS_LOCAL) {
		path = path_of(o, id, "");
		unlink(path);
		free(path);
		return;
	}
	d = xcalloc(1, sizeof(*d));
	list_add_tail(&o->dels, &d->link);
	d->easy = s3_easy(o, id, EMPTY_SHA256, &d->hdrs);
	if (d->easy == NULL) {
		list_remove(&d->link);
		free(d);
		return;
	}
	curl_easy_setopt(d->easy, CURLOPT_CUSTOMREQUEST, "DELETE");
	curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->hdrs);
	curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long)DELETE_MS);
	curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, del_write);
	if (curlev_add(o->cv, d->easy, del_done, d) < 0)
		del_free(d);
}

/* Remove every output of stored, a copy's that no job will name. */
static void
remove_all(struct outputs *o, const json_t *stored)
{
	const json_t *item;
	size_t i;

	json_array_foreach(stored, i, item)
	{
		remove_stored(
		    o, json_string_value(json_object_get(item, "id")));
	}
}

void
outputs_discard(struct outputs *o, const json_t *stored)
{
	remove_all(o, stored);
}

/* ---- copies: the end ---- */

/* Free c and what it holds (its transfer is not in flight), removing its
 * part file and, unless keep, what it stored. */
static void
copy_destroy(struct copy *c, int keep)
{
	list_remove(&c->link);
	if (!keep)
		remove_all(c->o, c->stored);
	if (c->fd >= 0)
		close(c->fd);
	if (c->part != NULL)
		unlink(c->part);
	free(c->part);
	curl_easy_cleanup(c->easy);
	curl_slist_free_all(c->hdrs);
	EVP_MD_CTX_free(c->sha);
	event_free(c->timer);
	json_decref(c->src);
	json_decref(c->stored);
	free(c->job_id);
	free(c);
}

/* Tell the caller and free c; done may do anything, outputs_free too. */
static void
copy_finish(struct copy *c, int rc, const char *msg)
{
	outputs_done_cb done = c->done;
	void *arg = c->arg;
	json_t *stored = json_incref(c->stored);
	char text[512];

	snprintf(text, sizeof(text), "%s", msg ? msg : "");
	copy_destroy(c, rc == 0);
	done(arg, rc, rc == 0 ? stored : NULL, rc == 0 ? NULL : text);
	json_decref(stored);
}

/* The copy failed, c->why says why: whole when for good, else the last
 * try's reason. */
static void
copy_fail(struct copy *c)
{
	char msg[512];

	if (c->fatal)
		snprintf(msg, sizeof(msg), "%s", c->why);
	else
		snprintf(msg, sizeof(msg),
		    "could not %s output %zu of %zu: %s (%d %s)",
		    c->step == FETCH ? "download" : "store", c->i + 1, c->n,
		    c->why, c->tries, c->tries == 1 ? "try" : "tries");
	copy_finish(c, -1, msg);
}

/* A failure for good: c->why is "output I of N " and then fmt. */
static void fatal(struct copy *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
fatal(struct copy *c, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(
	    c->why, sizeof(c->why), "output %zu of %zu ", c->i + 1, c->n);

	va_start(ap, fmt);
	vsnprintf(c->why + n, sizeof(c->why) - (size_t)n, fmt, ap);
	va_end(ap);
	c->fatal = 1;
}

static void
copy_later(struct copy *c, void (*next)(struct copy *), int64_t ms)
{
	struct timeval tv = timeval_ms(ms);

	c->next = next;
	evtimer_add(c->timer, &tv);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct copy *c = arg;

	c->next(c);
}

static void try_step(struct copy *c);

/* After a failed try (c->why says why): again(c) after a backoff, or give
 * up when the failure is for good or no try could start before the
 * deadline. */
static void
retry_or_fail(struct copy *c, void (*again)(struct copy *))
{
	int64_t ms = RETRY_BASE_MS;

	if (c->fatal) {
		copy_fail(c);
		return;
	}
	for (int i = 1; i < c->tries && ms < RETRY_MAX_MS; i++)
		ms *= 2;
	if (ms > RETRY_MAX_MS)
		ms = RETRY_MAX_MS;
	ms = ms / 2 + (int64_t)arc4random_uniform((uint32_t)ms / 2 + 1);
	if (mono_ms() + ms >= c->deadline) {
		copy_fail(c);
		return;
	}
	copy_later(c, again, ms);
}

/* ---- copies: fetch ---- */

static size_t
fetch_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct copy *c = arg;
	size_t n = size * nmemb;

	if (c->cancelled)
		return 0;
	if (c->got + (int64_t)n > c->o->cfg->outputs_max) {
		c->too_big = 1;
		return 0;
	}
	if (write_all(c->fd, p, n) < 0) {
		snprintf(c->why, sizeof(c->why), "write: %s", strerror(errno));
		return 0;
	}
	EVP_DigestUpdate(c->sha, p, n);
	c->got += (int64_t)n;
	return n;
}

static int
copy_progress(
    void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct copy *c = arg;

	return c->cancelled;
}

/* The options of every transfer of a copy, bounded by its deadline. */
static void
copy_easy_opts(struct copy *c)
{
	int64_t left = c->deadline - mono_ms();

	if (left < 1)
		left = 1;
	curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, (long)left);
	curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS,
	    (long)(left < CONNECT_MS ? left : CONNECT_MS));
	curl_easy_setopt(c->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c->easy, CURLOPT_LOW_SPEED_TIME, (long)STALL_S);
	curl_easy_setopt(c->easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c->easy, CURLOPT_XFERINFOFUNCTION, copy_progress);
	curl_easy_setopt(c->easy, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(c->easy, CURLOPT_ERRORBUFFER, c->errbuf);
	c->errbuf[0] = '\0';
	c->why[0] = '\0';
}

static void fetched(struct copy *c);

/* Why a fetch failed, into c->why (c->fatal when for good). */
static void
fetch_failure(struct copy *c, CURLcode rc, long http)
{
	if (c->too_big || rc == CURLE_FILESIZE_EXCEEDED)
		fatal(c, "is larger than outputs.max_bytes (%lld bytes)",
		    (long long)c->o->cfg->outputs_max);
	else if (rc == CURLE_UNSUPPORTED_PROTOCOL)
		fatal(c, "redirects to a URL that is not http or https");
	else if (c->why[0] != '\0') {
		/* a write to the part file failed: said already */
	} else if (rc == CURLE_HTTP_RETURNED_ERROR) {
		snprintf(c->why, sizeof(c->why), "the source answered HTTP %ld",
		    http);
	} else {
		snprintf(c->why, sizeof(c->why), "%s",
		    c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
	}
}

static void
fetch_done(void *arg, CURL *easy, CURLcode rc)
{
	struct copy *c = arg;
	long http = 0;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
	curl_easy_cleanup(c->easy);
	c->easy = NULL;
	if (c->cancelled) {
		copy_destroy(c, 0);
		return;
	}
	if (rc == CURLE_OK) {
		fetched(c);
		return;
	}
	fetch_failure(c, rc, http);
	retry_or_fail(c, try_step);
}

static int
fetch_start(struct copy *c)
{
	const char *url = json_string_value(
	    json_object_get(json_array_get(c->src, c->i), "url"));

	if (ftruncate(c->fd, 0) < 0 || lseek(c->fd, 0, SEEK_SET) < 0 ||
	    EVP_DigestInit_ex(c->sha, EVP_sha256(), NULL) != 1) {
		snprintf(c->why, sizeof(c->why), "%s", strerror(errno));
		return -1;
	}
	c->got = 0;
	c->too_big = 0;
	if ((c->easy = curl_easy_init()) == NULL)
		return -1;
	copy_easy_opts(c);
	curl_easy_setopt(c->easy, CURLOPT_URL, url);
	curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c->easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c->easy, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c->easy, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
	curl_easy_setopt(c->easy, CURLOPT_USERAGENT, "fila");
	curl_easy_setopt(c->easy, CURLOPT_FAILONERROR, 1L);
	curl_easy_setopt(c->easy, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)c->o->cfg->outputs_max);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, fetch_write);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	return curlev_add(c->o->cv, c->easy, fetch_done, c);
}

/* ---- copies: store ---- */

static void next_output(struct copy *c);

/* The current output is stored: on to the next one. */
static void
stored(struct copy *c)
{
	json_array_append_new(
	    c->stored, json_pack("{s:s, s:s, s:I, s:s}", "id", c->cur.id,
	                   "type", c->cur.type, "size", (json_int_t)c->cur.size,
	                   "sha256", c->cur.sha256));
	close(c->fd);
	c->fd = -1;
	if (c->part != NULL) /* S3: the object has the bytes now */
		unlink(c->part);
	free(c->part);
	c->part = NULL;
	c->i++;
	next_output(c);
}

/* Local: the part file becomes {dir}/{id}, durably (a directory that
 * cannot be synced is not worth losing the copy over). */
static int
store_local(struct copy *c)
{
	char *path = path_of(c->o, c->cur.id, "");

	if (fsync(c->fd) < 0 || rename(c->part, path) < 0) {
		snprintf(c->why, sizeof(c->why), "%s", strerror(errno));
		free(path);
		return -1;
	}
	sync_dir(c->o->cfg->outputs_dir);
	free(c->part);
	c->part = NULL; /* renamed: nothing to unlink */
	free(path);
	return 0;
}

static size_t
put_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct copy *c = arg;
	ssize_t n;

	if (c->cancelled)
		return CURL_READFUNC_ABORT;
	do
		n = read(c->fd, buf, size * nmemb);
	while (n < 0 && errno == EINTR);
	return n < 0 ? CURL_READFUNC_ABORT : (size_t)n;
}

static int
put_seek(void *arg, curl_off_t offset, int origin)
{
	struct copy *c = arg;

	return lseek(c->fd, (off_t)offset, origin) < 0 ? CURL_SEEKFUNC_FAIL
	                                               : CURL_SEEKFUNC_OK;
}

static size_t
put_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct copy *c = arg;

	return keep_answer(
	    c->answer, &c->answer_len, sizeof(c->answer), p, size * nmemb);
}

static void
put_done(void *arg, CURL *easy, CURLcode rc)
{
	struct copy *c = arg;
	long http = 0;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
	curl_easy_cleanup(c->easy);
	c->easy = NULL;
	curl_slist_free_all(c->hdrs);
	c->hdrs = NULL;
	if (rc == CURLE_OK && http / 100 == 2) {
		if (c->cancelled) /* stored all the same: removed with the rest
		                   */
			json_array_append_new(
			    c->stored, json_pack("{s:s}", "id", c->cur.id));
		else {
			stored(c);
			return;
		}
	}
	if (c->cancelled) {
		copy_destroy(c, 0);
		return;
	}
	if (rc == CURLE_OK)
		s3_refusal(
		    c->why, sizeof(c->why), http, c->answer, c->answer_len);
	else
		snprintf(c->why, sizeof(c->why), "%s",
		    c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
	retry_or_fail(c, try_step);
}

/* S3: PUT the part file as {prefix}{id}. */
static int
put_start(struct copy *c)
{
	char *h;

	if (lseek(c->fd, 0, SEEK_SET) < 0) {
		snprintf(c->why, sizeof(c->why), "%s", strerror(errno));
		return -1;
	}
	c->answer_len = 0;
	c->easy = s3_easy(c->o, c->cur.id, c->cur.sha256, &c->hdrs);
	if (c->easy == NULL)
		return -1;
	h = xasprintf("Content-Type: %s", output_content_type(c->cur.type));
	c->hdrs = curl_slist_append(c->hdrs, h);
	free(h);
	copy_easy_opts(c);
	curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->hdrs);
	curl_easy_setopt(c->easy, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(
	    c->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->cur.size);
	curl_easy_setopt(c->easy, CURLOPT_READFUNCTION, put_read);
	curl_easy_setopt(c->easy, CURLOPT_READDATA, c);
	curl_easy_setopt(c->easy, CURLOPT_SEEKFUNCTION, put_seek);
	curl_easy_setopt(c->easy, CURLOPT_SEEKDATA, c);
	curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, put_write);
	curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
	return curlev_add(c->o->cv, c->easy, put_done, c);
}

/* The download is whole: its hash and type, then store it. */
static void
fetched(struct copy *c)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE], head[16];
	unsigned int mdlen = 0;
	ssize_t n = pread(c->fd, head, sizeof(head), 0);
	const char *said = json_string_value(
	    json_object_get(json_array_get(c->src, c->i), "type"));

	EVP_DigestFinal_ex(c->sha, md, &mdlen);
	for (unsigned int k = 0; k < 32; k++) {
		c->cur.sha256[2 * k] = hex[md[k] >> 4];
		c->cur.sha256[2 * k + 1] = hex[md[k] & 15];
	}
	c->cur.sha256[64] = '\0';
	c->cur.size = c->got;
	type_of(c->cur.type, head, n > 0 ? (size_t)n : 0, said);
	if (c->o->cfg->outputs == OUTPUTS_LOCAL) {
		if (store_local(c) == 0)
			stored(c);
		else
			retry_or_fail(c, try_step);
		return;
	}
	c->step = STORE;
	c->tries = 0;
	try_step(c);
}

/* ---- copies: the steps ---- */

static void
try_step(struct copy *c)
{
	int rc;

	c->tries++;
	c->why[0] = '\0';
	rc = c->step == FETCH ? fetch_start(c) : put_start(c);
	if (rc == 0)
		return;
	curl_easy_cleanup(c->easy);
	c->easy = NULL;
	if (c->why[0] == '\0')
		snprintf(
		    c->why, sizeof(c->why), "libcurl refused the transfer");
	retry_or_fail(c, try_step);
}

/* A fresh id and its part file for the output at c->i, then fetch it. */
static void
open_part(struct copy *c)
{
	memset(&c->cur, 0, sizeof(c->cur));
	memcpy(c->cur.id, "out_", 4);
	random_hex(c->cur.id + 4, (OUTPUT_ID_LEN - 4) / 2);
	c->part = path_of(c->o, c->cur.id, ".part");
	c->fd = open(c->part, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (c->fd < 0) {
		c->tries++;
		snprintf(
		    c->why, sizeof(c->why), "%s: %s", c->part, strerror(errno));
		free(c->part);
		c->part = NULL;
		retry_or_fail(c, open_part);
		return;
	}
	try_step(c);
}

/* Start the output at c->i, or end the copy when there is none left. */
static void
next_output(struct copy *c)
{
	if (c->i == c->n) {
		copy_finish(c, 0, NULL);
		return;
	}
	c->step = FETCH;
	c->tries = 0;
	open_part(c);
}

/* 0 when every output has an http or https URL; else -1, made fatal. */
static int
check_urls(struct copy *c)
{
	json_t *item;
	size_t i;

	if (!json_is_array(c->src)) {
		snprintf(c->why, sizeof(c->why),
		    "the provider's outputs are not a list");
		c->fatal = 1;
		return -1;
	}
	json_array_foreach(c->src, i, item)
	{
		const char *url =
		    json_string_value(json_object_get(item, "url"));

		c->i = i;
		if (url == NULL || (strncasecmp(url, "http://", 7) != 0 &&
		                       strncasecmp(url, "https://", 8) != 0)) {
			fatal(c, "has a URL that is not http or https");
			return -1;
		}
	}
	c->i = 0;
	return 0;
}

int
outputs_copy(struct outputs *o, const char *job_id,
    const json_t *provider_outputs, int64_t deadline_ms, outputs_done_cb done,
    void *arg)
{
	struct copy *c;
	struct list *l;

	list_each(l, &o->copies)
	{
		c = list_entry(l, struct copy, link);
		if (!c->cancelled && strcmp(c->job_id, job_id) == 0)
			return -1;
	}
	c = xcalloc(1, sizeof(*c));
	c->o = o;
	c->job_id = xstrdup(job_id);
	c->src = json_deep_copy(provider_outputs);
	c->stored = json_array();
	c->n = json_array_size(c->src);
	c->deadline = mono_ms() + (deadline_ms - now_ms());
	c->done = done;
	c->arg = arg;
	c->fd = -1;
	c->sha = EVP_MD_CTX_new();
	c->timer = evtimer_new(o->base, timer_cb, c);
	if (c->sha == NULL || c->timer == NULL)
		abort();
	list_add_tail(&o->copies, &c->link);
	copy_later(c, check_urls(c) < 0 ? copy_fail : next_output, 0);
	return 0;
}

void
outputs_cancel(struct outputs *o, const char *job_id)
{
	struct list *l;

	list_each(l, &o->copies)
	{
		struct copy *c = list_entry(l, struct copy, link);

		if (c->cancelled || strcmp(c->job_id, job_id) != 0)
			continue;
		c->cancelled = 1;
		/* In flight: its transfer's end frees it (see the top). */
		if (c->easy == NULL)
			copy_destroy(c, 0);
		return;
	}
}

int
outputs_busy(const struct outputs *o)
{
	const struct list *l;
	int n = 0;

	for (l = o->copies.next; l != &o->copies; l = l->next)
		n++;
	for (l = o->reads.next; l != &o->reads; l = l->next)
		n++;
	for (l = o->dels.next; l != &o->dels; l = l->next)
		n++;
	return n;
}

/* ---- reads ---- */

static void
read_free(struct outputs_read *rd)
{
	list_remove(&rd->link);
	if (rd->fd >= 0)
		close(rd->fd);
	free(rd->buf);
	curl_easy_cleanup(rd->easy);
	curl_slist_free_all(rd->hdrs);
	if (rd->ev != NULL)
		event_free(rd->ev);
	free(rd);
}

/* Tell the sink how the read ended (unless cancelled), then free it. */
static void
read_end(struct outputs_read *rd, enum outputs_read_rc rc, const char *msg)
{
	/* Out of the list first: end may free the whole module. */
	list_remove(&rd->link);
	if (!rd->cancelled) {
		rd->ended = 1;
		rd->sink.end(rd->arg, rc, msg);
	}
	read_free(rd);
}

/* Call the sink's begin or data; 1 when the read was cancelled in it. */
static int
read_begin(struct outputs_read *rd)
{
	rd->began = 1;
	rd->in_cb = 1;
	rd->sink.begin(rd->arg);
	rd->in_cb = 0;
	return rd->cancelled;
}

static int
read_give(struct outputs_read *rd, const void *buf, size_t n)
{
	int pause;

	rd->left -= (int64_t)n;
	rd->first += (int64_t)n;
	rd->in_cb = 1;
	pause = rd->sink.data(rd->arg, buf, n);
	rd->in_cb = 0;
	rd->paused = pause != 0;
	return rd->cancelled;
}

/* Local: a few pieces, then the loop's turn (or a pause). */
static void
local_pieces(struct outputs_read *rd)
{
	if (!rd->began && read_begin(rd)) {
		read_free(rd);
		return;
	}
	for (int k = 0; k < PIECES_PER_TURN && !rd->paused; k++) {
		size_t want = rd->left < PIECE ? (size_t)rd->left : PIECE;
		ssize_t n;

		if (rd->left == 0) {
			read_end(rd, OUTPUTS_READ_OK, NULL);
			return;
		}
		do
			n = pread(rd->fd, rd->buf, want, (off_t)rd->first);
		while (n < 0 && errno == EINTR);
		if (n <= 0) {
			snprintf(rd->msg, sizeof(rd->msg), "read: %s",
			    n < 0 ? strerror(errno) : "the file is short");
			read_end(rd, OUTPUTS_READ_ERROR, rd->msg);
			return;
		}
		if (read_give(rd, rd->buf, (size_t)n)) {
			read_free(rd);
			return;
		}
	}
	if (!rd->paused)
		event_active(rd->ev, EV_TIMEOUT, 0);
}

static void
read_ev(evutil_socket_t fd, short what, void *arg)
{
	struct outputs_read *rd = arg;

	if (rd->finished) {
		read_end(rd, rd->final, rd->msg);
		return;
	}
	if (rd->easy == NULL) {
		local_pieces(rd);
		return;
	}
	curl_easy_pause(rd->easy, CURLPAUSE_CONT); /* resume */
}

static void
local_open(struct outputs_read *rd, const struct output *out)
{
	char *path = path_of(rd->o, out->id, "");
	struct stat st;

	rd->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (rd->fd < 0) {
		rd->finished = 1;
		rd->final =
		    errno == ENOENT ? OUTPUTS_READ_MISSING : OUTPUTS_READ_ERROR;
		snprintf(rd->msg, sizeof(rd->msg), "open: %s", strerror(errno));
	} else if (fstat(rd->fd, &st) < 0 || st.st_size != out->size) {
		rd->finished = 1;
		rd->final = OUTPUTS_READ_ERROR;
		snprintf(rd->msg, sizeof(rd->msg),
		    "the file's size is not the stored one");
	} else {
		rd->buf = xmalloc(PIECE);
	}
	free(path);
}

/* S3: the answer's body, given to the sink once its status is known. */
static size_t
s3_read_write(char *p, size_t size, size_t nmemb, void *arg)
{
	struct outputs_read *rd = arg;
	size_t n = size * nmemb;
	long http = 0;

	if (rd->cancelled)
		return 0;
	if (!rd->began) {
		curl_easy_getinfo(rd->easy, CURLINFO_RESPONSE_CODE, &http);
		if (http / 100 == 2 && http != (rd->partial ? 206 : 200)) {
			snprintf(rd->msg, sizeof(rd->msg),
			    "the storage answered HTTP %ld to %s", http,
			    rd->partial ? "a range" : "a whole read");
			return 0;
		}
		if (http / 100 != 2)
			return keep_answer(rd->answer, &rd->answer_len,
			    sizeof(rd->answer), p, n);
		if (read_begin(rd))
			return 0;
	}
	if (rd->paused)
		return CURL_WRITEFUNC_PAUSE; /* given again on resume */
	if ((int64_t)n > rd->left) {
		snprintf(rd->msg, sizeof(rd->msg),
		    "the storage gave more bytes than asked");
		return 0;
	}
	return read_give(rd, p, n) ? 0 : n;
}

/* How an S3 read ended, into rd->final and rd->msg. */
static void
s3_outcome(struct outputs_read *rd, CURLcode rc, long http)
{
	rd->final = OUTPUTS_READ_ERROR;
	if (rc == CURLE_OK && http == (rd->partial ? 206 : 200)) {
		if (rd->left == 0)
			rd->final = OUTPUTS_READ_OK;
		else
			snprintf(rd->msg, sizeof(rd->msg),
			    "the storage gave %lld bytes fewer than asked",
			    (long long)rd->left);
	} else if (rc == CURLE_OK) {
		if (http == 404)
			rd->final = OUTPUTS_READ_MISSING;
		s3_refusal(
		    rd->msg, sizeof(rd->msg), http, rd->answer, rd->answer_len);
	} else if (rd->msg[0] == '\0') {
		snprintf(
		    rd->msg, sizeof(rd->msg), "%s", curl_easy_strerror(rc));
	}
}

static void
s3_read_done(void *arg, CURL *easy, CURLcode rc)
{
	struct outputs_read *rd = arg;
	long http = 0;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http);
	curl_easy_cleanup(rd->easy);
	rd->easy = NULL;
	if (rd->cancelled) {
		read_free(rd);
		return;
	}
	s3_outcome(rd, rc, http);
	/* An empty object has no data to begin with. */
	if (rd->final == OUTPUTS_READ_OK && !rd->began && read_begin(rd)) {
		read_free(rd);
		return;
	}
	rd->finished = 1;
	if (!rd->paused) /* else the end waits for the resume */
		read_end(rd, rd->final, rd->msg);
}

static int
read_progress(
    void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	struct outputs_read *rd = arg;

	return rd->cancelled;
}

static void
s3_get(struct outputs_read *rd, const struct output *out, int64_t length)
{
	char *h;

	rd->easy = s3_easy(rd->o, out->id, EMPTY_SHA256, &rd->hdrs);
	if (rd->easy == NULL)
		goto fail;
	if (rd->partial) {
		h = xasprintf("Range: bytes=%lld-%lld", (long long)rd->first,
		    (long long)(rd->first + length - 1));
		rd->hdrs = curl_slist_append(rd->hdrs, h);
		free(h);
	}
	curl_easy_setopt(rd->easy, CURLOPT_HTTPHEADER, rd->hdrs);
	curl_easy_setopt(rd->easy, CURLOPT_WRITEFUNCTION, s3_read_write);
	curl_easy_setopt(rd->easy, CURLOPT_WRITEDATA, rd);
	curl_easy_setopt(rd->easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(rd->easy, CURLOPT_XFERINFOFUNCTION, read_progress);
	curl_easy_setopt(rd->easy, CURLOPT_XFERINFODATA, rd);
	if (curlev_add(rd->o->cv, rd->easy, s3_read_done, rd) == 0)
		return;
	curl_easy_cleanup(rd->easy);
	rd->easy = NULL;
fail:
	rd->finished = 1;
	rd->final = OUTPUTS_READ_ERROR;
	snprintf(rd->msg, sizeof(rd->msg), "libcurl refused the transfer");
}

struct outputs_read *
outputs_read(struct outputs *o, const struct output *out, int64_t first,
    int64_t length, const struct outputs_sink *sink, void *arg)
{
	struct outputs_read *rd = xcalloc(1, sizeof(*rd));

	rd->o = o;
	rd->sink = *sink;
	rd->arg = arg;
	rd->first = first;
	rd->left = length;
	rd->partial = first != 0 || length != out->size;
	rd->fd = -1;
	rd->ev = event_new(o->base, -1, 0, read_ev, rd);
	if (rd->ev == NULL)
		abort();
	list_add_tail(&o->reads, &rd->link);
	if (first < 0 || length < 0 || first + length > out->size ||
	    !output_id_valid(out->id)) {
		rd->finished = 1;
		rd->final = OUTPUTS_READ_ERROR;
		snprintf(
		    rd->msg, sizeof(rd->msg), "a range outside the output");
	} else if (o->cfg->outputs == OUTPUTS_LOCAL) {
		local_open(rd, out);
	} else {
		s3_get(rd, out, length);
	}
	if (rd->easy == NULL)
		event_active(rd->ev, EV_TIMEOUT, 0);
	return rd;
}

void
outputs_read_resume(struct outputs_read *rd)
{
	if (rd->cancelled || rd->ended || !rd->paused)
		return;
	rd->paused = 0;
	event_active(rd->ev, EV_TIMEOUT, 0);
}

void
outputs_read_cancel(struct outputs_read *rd)
{
	if (rd == NULL || rd->cancelled || rd->ended)
		return;
	rd->cancelled = 1;
	if (rd->in_cb)
		return; /* whoever called the sink frees it */
	if (rd->easy == NULL) {
		read_free(rd);
		return;
	}
	/* A paused transfer calls nothing of ours: unpause it, and its
	 * write callback aborts it; its end frees it. */
	event_del(rd->ev);
	if (rd->paused)
		curl_easy_pause(rd->easy, CURLPAUSE_CONT);
}

/* ---- the module ---- */

/* s3_prefix and s3_bucket go into the path unescaped: only characters a
 * URL path and an S3 key take as they are. */
static int
key_chars_ok(const char *s, const char *extra)
{
	for (; *s != '\0'; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		        (*s >= '0' && *s <= '9') || strchr(extra, *s) != NULL))
			return 0;
	return 1;
}

static int
check_s3(const struct config *cfg, char *err, size_t errlen)
{
	const char *missing = NULL;

	if (cfg->s3_endpoint == NULL || *cfg->s3_endpoint == '\0')
		missing = "s3_endpoint";
	else if (cfg->s3_bucket == NULL || *cfg->s3_bucket == '\0')
		missing = "s3_bucket";
	else if (cfg->s3_access_key == NULL || *cfg->s3_access_key == '\0')
		missing = "s3_access_key";
	else if (cfg->s3_secret_key == NULL || *cfg->s3_secret_key == '\0')
		missing = "s3_secret_key";
	else if (cfg->s3_region == NULL || *cfg->s3_region == '\0')
		missing = "s3_region";
	if (missing != NULL) {
		set_err(err, errlen, "outputs.store = s3 needs outputs.%s",
		    missing);
		return -1;
	}
	if (strncasecmp(cfg->s3_endpoint, "http://", 7) != 0 &&
	    strncasecmp(cfg->s3_endpoint, "https://", 8) != 0) {
		set_err(err, errlen, "outputs.s3_endpoint: not http or https");
		return -1;
	}
	if (!key_chars_ok(cfg->s3_bucket, ".-_") ||
	    !key_chars_ok(cfg->s3_region, "-_")) {
		set_err(err, errlen,
		    "outputs.s3_bucket or s3_region: "
		    "characters a bucket or region cannot have");
		return -1;
	}
	if (cfg->s3_prefix != NULL && !key_chars_ok(cfg->s3_prefix, "/._-")) {
		set_err(err, errlen,
		    "outputs.s3_prefix: only letters, digits"
		    " and / . _ - are allowed");
		return -1;
	}
	return 0;
}

struct outputs *
outputs_new(struct event_base *base, const struct config *cfg,
    const char *sign_key, char *err, size_t errlen)
{
	static const char label[] = "fila outputs url v1";
	struct outputs *o;
	unsigned int keylen = 32;

	if (cfg->outputs != OUTPUTS_LOCAL && cfg->outputs != OUTPUTS_S3) {
		set_err(err, errlen, "outputs.store is none");
		return NULL;
	}
	if (sign_key == NULL || *sign_key == '\0') {
		set_err(err, errlen, "outputs: no key to sign URLs with");
		return NULL;
	}
	if (cfg->outputs_dir == NULL || *cfg->outputs_dir == '\0') {
		set_err(err, errlen, "outputs.dir is empty");
		return NULL;
	}
	if (cfg->outputs == OUTPUTS_S3 && check_s3(cfg, err, errlen) < 0)
		return NULL;
	if (make_dirs(cfg->outputs_dir, err, errlen) < 0)
		return NULL;
	o = xcalloc(1, sizeof(*o));
	o->base = base;
	o->cfg = cfg;
	list_init(&o->copies);
	list_init(&o->reads);
	list_init(&o->dels);
	/* A key of its own: a URL's signature is never one of another use
	 * of the same secret. */
	HMAC(EVP_sha256(), sign_key, (int)strlen(sign_key),
	    (const unsigned char *)label, sizeof(label) - 1, o->key, &keylen);
	if (cfg->outputs == OUTPUTS_S3) {
		o->s3_base = xasprintf("%s/%s/%s", cfg->s3_endpoint,
		    cfg->s3_bucket, cfg->s3_prefix ? cfg->s3_prefix : "");
		o->sigv4 = xasprintf("aws:amz:%s:s3", cfg->s3_region);
	}
	if ((o->cv = curlev_new(base)) == NULL) {
		set_err(err, errlen, "outputs: libcurl cannot be set up");
		outputs_free(o);
		return NULL;
	}
	remove_stray_parts(cfg->outputs_dir);
	return o;
}

void
outputs_free(struct outputs *o)
{
	if (o == NULL)
		return;
	/* Every transfer stops here, its callback never run; their easies
	 * are ours to clean up with their owners. */
	curlev_free(o->cv);
	while (!list_empty(&o->copies)) {
		struct copy *c = list_entry(o->copies.next, struct copy, link);

		/* What it stored locally goes; S3 objects stay (no more
		 * transfers: a later copy of the job makes new ones). */
		if (o->cfg->outputs == OUTPUTS_LOCAL)
			remove_all(o, c->stored);
		copy_destroy(c, 1);
	}
	while (!list_empty(&o->reads))
		read_free(list_entry(o->reads.next, struct outputs_read, link));
	while (!list_empty(&o->dels))
		del_free(list_entry(o->dels.next, struct del, link));
	free(o->s3_base);
	free(o->sigv4);
	free(o);
}
