/*
 * auth.c — HS256 bearer tokens, the shape of Supabase access tokens.
 *
 * A token is base64url(header) "." base64url(payload) "." base64url(mac),
 * mac = HMAC-SHA256(secret, "header.payload"). Everything in a token is
 * attacker input until the MAC matches, so the algorithm is pinned to HS256
 * (never taken from the token), the MAC is checked before the payload is
 * parsed, and the comparison runs in constant time. The base64url decoder is
 * strict (no stray characters, no non-zero spare bits) so that one token has
 * exactly one spelling.
 */
#include "auth.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util.h"

/* Far above any real token (Supabase's are ~1 KiB); bounds work on junk. */
#define TOKEN_MAX 8192
#define MAC_LEN 32

static const char b64url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Unpadded base64url of buf, as JWT requires; the caller frees it. */
static char *
b64url_encode(const unsigned char *buf, size_t len)
{
	char *out = xmalloc(len / 3 * 4 + 4 + 1);
	char *p = out;
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = buf[i] << 16 | buf[i + 1] << 8 | buf[i + 2];
		*p++ = b64url[v >> 18 & 63];
		*p++ = b64url[v >> 12 & 63];
		*p++ = b64url[v >> 6 & 63];
		*p++ = b64url[v & 63];
	}
	if (i < len) {
		unsigned v = buf[i] << 16 | (i + 1 < len ? buf[i + 1] << 8 : 0);
		*p++ = b64url[v >> 18 & 63];
		*p++ = b64url[v >> 12 & 63];
		if (i + 1 < len)
			*p++ = b64url[v >> 6 & 63];
	}
	*p = '\0';
	return out;
}

static int
b64url_value(char c)
{
	const char *p = c ? strchr(b64url, c) : NULL;
	return p ? (int)(p - b64url) : -1;
}

/*
 * Decode len chars of base64url, with or without '=' padding. Returns a
 * fresh buffer (NUL-terminated for convenience) and its length in *outlen,
 * or NULL on any invalid character, length or spare bit.
 */
static unsigned char *
b64url_decode(const char *s, size_t len, size_t *outlen)
{
	size_t pad = 0, n = 0;
	unsigned acc = 0, bits = 0;
	unsigned char *out;

	while (pad < 2 && len > 0 && s[len - 1] == '=') {
		len--;
		pad++;
	}
	if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0))
		return NULL;
	out = xmalloc(len / 4 * 3 + 3 + 1);
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value(s[i]);
		if (v < 0)
			goto fail;
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (acc & ((1u << bits) - 1))
		goto fail;
	out[n] = '\0';
	*outlen = n;
	return out;
fail:
	free(out);
	return NULL;
}

/* Decode one base64url part and parse it as a JSON object, or NULL. */
static json_t *
part_to_object(const char *s, size_t len)
{
	size_t n;
	unsigned char *raw = b64url_decode(s, len, &n);
	json_t *o;

	if (raw == NULL)
		return NULL;
	o = json_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static int
mac(const char *secret, const char *data, size_t len,
    unsigned char out[MAC_LEN])
{
	unsigned int outlen = 0;
	size_t keylen = strlen(secret);

	if (keylen == 0 || keylen > INT_MAX)
		return -1;
	if (HMAC(EVP_sha256(), secret, (int)keylen, (const unsigned char *)data,
	        len, out, &outlen) == NULL ||
	    outlen != MAC_LEN)
		return -1;
	return 0;
}

/* The header must name HS256 and nothing else; "typ" is not required. */
static int
header_ok(const char *s, size_t len)
{
	json_t *h = part_to_object(s, len);
	const char *alg = json_string_value(json_object_get(h, "alg"));
	int ok = alg != NULL && strcmp(alg, "HS256") == 0;

	json_decref(h);
	return ok ? 0 : -1;
}

static int
signature_ok(const char *secret, const char *token, size_t signed_len,
    const char *sig, size_t siglen)
{
	unsigned char want[MAC_LEN];
	unsigned char *got;
	size_t n;
	int ok;

	if (mac(secret, token, signed_len, want) < 0)
		return -1;
	got = b64url_decode(sig, siglen, &n);
	if (got == NULL)
		return -1;
	ok = n == MAC_LEN && ct_equal(got, want, MAC_LEN);
	free(got);
	return ok ? 0 : -1;
}

/* A user id we can store and print: non-empty, bounded, no control bytes. */
static int
sub_ok(const char *sub, size_t len)
{
	if (len == 0 || len >= AUTH_SUB_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)sub[i];
		if (c < 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

/* exp as whole seconds, saturating, so that a huge real cannot overflow. */
static int64_t
exp_seconds(const json_t *exp)
{
	double d;

	if (json_is_integer(exp))
		return (int64_t)json_integer_value(exp);
	d = json_real_value(exp);
	if (d >= 9.2e18)
		return INT64_MAX;
	if (d <= -9.2e18)
		return INT64_MIN;
	return (int64_t)d;
}

static int
claims_read(const json_t *p, int64_t now, struct auth_claims *out)
{
	const json_t *sub = json_object_get(p, "sub");
	const json_t *exp = json_object_get(p, "exp");
	const char *role = json_string_value(json_object_get(p, "role"));

	if (!json_is_string(sub) ||
	    !sub_ok(json_string_value(sub), json_string_length(sub)))
		return -1;
	if (exp != NULL) {
		if (!json_is_number(exp))
			return -1;
		/* Compared as numbers so that a fractional exp is exact. */
		if (json_is_integer(exp) ? now >= json_integer_value(exp)
		                         : (double)now >= json_real_value(exp))
			return -1;
	}
	memset(out, 0, sizeof(*out));
	memcpy(out->sub, json_string_value(sub), json_string_length(sub) + 1);
	out->admin = role != NULL && strcmp(role, "admin") == 0;
	out->exp = exp ? exp_seconds(exp) : 0;
	return 0;
}

int
auth_verify(
    const char *secret, const char *token, int64_t now, struct auth_claims *out)
{
	const char *dot1, *dot2;
	size_t len;
	json_t *payload;
	int rc;

	if (secret == NULL || token == NULL)
		return -1;
	len = strnlen(token, TOKEN_MAX + 1);
	if (len > TOKEN_MAX)
		return -1;
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		return -1;
	if (header_ok(token, (size_t)(dot1 - token)) < 0)
		return -1;
	if (signature_ok(secret, token, (size_t)(dot2 - token), dot2 + 1,
	        len - (size_t)(dot2 + 1 - token)) < 0)
		return -1;
	payload = part_to_object(dot1 + 1, (size_t)(dot2 - dot1 - 1));
	if (payload == NULL)
		return -1;
	rc = claims_read(payload, now, out);
	json_decref(payload);
	return rc;
}

/* base64url of o's compact JSON; the caller frees it. */
static char *
object_part(const json_t *o)
{
	char *json = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
	char *part;

	if (json == NULL)
		return NULL;
	part = b64url_encode((const unsigned char *)json, strlen(json));
	free(json);
	return part;
}

static json_t *
payload_new(const char *sub, int admin, int64_t exp)
{
	json_t *p = json_object();
	json_t *s = json_string(sub); /* NULL when sub is not UTF-8 */

	if (s == NULL) {
		json_decref(p);
		return NULL;
	}
	json_object_set_new(p, "sub", s);
	if (exp != 0)
		json_object_set_new(p, "exp", json_integer(exp));
	if (admin)
		json_object_set_new(p, "role", json_string("admin"));
	json_object_set_new(p, "iat", json_integer((json_int_t)time(NULL)));
	return p;
}

char *
auth_sign(const char *secret, const char *sub, int admin, int64_t exp)
{
	json_t *header = NULL, *payload = NULL;
	char *h = NULL, *p = NULL, *signed_part = NULL, *token = NULL;
	unsigned char m[MAC_LEN];
	char *sig;

	/* Never hand out a token that auth_verify would refuse. */
	if (secret == NULL || sub == NULL || !sub_ok(sub, strlen(sub)))
		return NULL;
	header = json_pack("{s:s, s:s}", "alg", "HS256", "typ", "JWT");
	payload = payload_new(sub, admin, exp);
	if (payload == NULL)
		goto fail;
	h = object_part(header);
	p = object_part(payload);
	if (h == NULL || p == NULL)
		goto fail;
	signed_part = xasprintf("%s.%s", h, p);
	if (mac(secret, signed_part, strlen(signed_part), m) < 0)
		goto fail;
	sig = b64url_encode(m, MAC_LEN);
	token = xasprintf("%s.%s", signed_part, sig);
	free(sig);
fail:
	json_decref(header);
	json_decref(payload);
	free(h);
	free(p);
	free(signed_part);
	return token;
}
