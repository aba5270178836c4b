/*
 * auth.c — bearer tokens: HS256 with a shared secret (fila's own, legacy
 * Supabase) and ES256 / RS256 with the public keys of a JWKS (Supabase
 * today).
 *
 * A token is base64url(header) "." base64url(payload) "." base64url(sig).
 * Everything in it is attacker input until the signature matches, so:
 * the key decides the algorithm (HS256 only ever meets the secret, never a
 * public key's bytes: the classic alg-confusion forgery; ES256 and RS256
 * only the key named by kid, and only when that key is of that type), the
 * signature is checked before the payload is read, MACs are compared in
 * constant time, and the base64url decoder is strict (no stray characters,
 * no non-zero spare bits) so that one token has exactly one spelling.
 *
 * The key set is replaced whole (auth_set_keys), never edited: a document
 * that does not parse leaves the old set in place. HMAC is fetched from
 * OpenSSL once and keyed once; each token duplicates that keyed context.
 *
 * A client sends its token with every request, and checking it (the
 * signature, two parses) was a tenth of a submit. So tokens accepted lately
 * are kept, each with its parsed payload: the same token again costs a
 * hash and a compare of its bytes, and its claims are judged again (exp,
 * nbf, iss, aud at this moment), as for a token seen first. Only accepted
 * tokens are kept, in a table of SEEN_SLOTS entries (a token takes its
 * hash's slot, the newest wins), so nothing a client sends makes it grow;
 * a new key set empties it, so a retired key's tokens are refused at once.
 */
#include "auth.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "jsonr.h"
#include "util.h"

/* Far above any real token (Supabase's are ~1 KiB); bounds work on junk. */
#define TOKEN_MAX 8192
#define MAC_LEN 32
#define KID_MAX 256
#define KEYS_MAX 64
#define P256_LEN 32
#define RSA_MIN_BITS 2048
#define RSA_MAX_BITS 8192
#define SEEN_SLOTS 1024 /* a power of two */

enum alg { ALG_OTHER, ALG_HS256, ALG_ES256, ALG_RS256 };

static const char *const alg_names[] = {
    [ALG_HS256] = "HS256", [ALG_ES256] = "ES256", [ALG_RS256] = "RS256"};

struct key {
	char *kid;
	enum alg alg; /* ES256 or RS256: the key's type decides */
	EVP_PKEY *pkey;
};

struct keyset {
	struct key *v;
	size_t n;
};

struct auth {
	char *issuer;     /* NULL: not checked */
	char *audience;   /* NULL: not checked */
	char *admin_role; /* never NULL */
	int need_exp;
	int64_t skew;
	EVP_MAC *mac;        /* HMAC, fetched once */
	EVP_MAC_CTX *hs256;  /* keyed with the secret; NULL: HS256 refused */
	struct keyset *keys; /* NULL until auth_set_keys */
	const char *why;
	struct seen *seen; /* SEEN_SLOTS, allocated at the first one */
};

/* A token accepted lately, and its payload. */
struct seen {
	char *token; /* NULL: an empty slot */
	size_t len;
	json_t *payload;
};

/* A token cut at its dots: header [0, hlen), payload up to signed_len. */
struct parts {
	const char *t;
	size_t len, hlen, signed_len;
};

struct header {
	enum alg alg;
	char kid[KID_MAX]; /* "" when absent */
};

/* ---- tokens accepted lately -------------------------------------------- */

/* The slot of a token of len bytes: a hash of its last bytes, which are
 * its signature's (a token that differs elsewhere is told apart by the
 * compare). */
static size_t
seen_slot(const char *token, size_t len)
{
	size_t n = len < 16 ? len : 16;
	uint64_t h = 14695981039346656037ULL; /* FNV-1a */

	for (size_t i = len - n; i < len; i++)
		h = (h ^ (unsigned char)token[i]) * 1099511628211ULL;
	return (size_t)(h ^ h >> 32) & (SEEN_SLOTS - 1);
}

/* The payload of token if it was accepted lately (a new reference), or
 * NULL. */
static json_t *
seen_get(const struct auth *a, const char *token, size_t len)
{
	const struct seen *e;

	if (a->seen == NULL)
		return NULL;
	e = &a->seen[seen_slot(token, len)];
	if (e->token == NULL || e->len != len || memcmp(e->token, token, len))
		return NULL;
	return json_incref(e->payload);
}

static void
seen_put(struct auth *a, const char *token, size_t len, json_t *payload)
{
	struct seen *e;

	if (a->seen == NULL)
		a->seen = xcalloc(SEEN_SLOTS, sizeof(*a->seen));
	e = &a->seen[seen_slot(token, len)];
	free(e->token);
	json_decref(e->payload);
	e->token = xstrndup(token, len);
	e->len = len;
	e->payload = json_incref(payload);
}

static void
seen_clear(struct auth *a)
{
	if (a->seen == NULL)
		return;
	for (size_t i = 0; i < SEEN_SLOTS; i++) {
		free(a->seen[i].token);
		json_decref(a->seen[i].payload);
	}
	free(a->seen);
	a->seen = NULL;
}

/* ---- base64url and JSON parts --------------------------------------- */

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

/* The value of a base64url character, or -1 (ranges, not a search). */
static int
b64url_value(char ch)
{
	unsigned char c = (unsigned char)ch;

	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '-' ? 62 : c == '_' ? 63 : -1;
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
	o = jsonr_loadb((const char *)raw, n, JSON_REJECT_DUPLICATES, NULL);
	free(raw);
	if (o != NULL && !json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* 1 when v is a JSON string of exactly the bytes of s. */
static int
json_str_is(const json_t *v, const char *s)
{
	size_t n = strlen(s);

	return json_is_string(v) && json_string_length(v) == n &&
	       memcmp(json_string_value(v), s, n) == 0;
}

/* The member name of o as a string without NULs, or NULL. */
static const char *
member_str(const json_t *o, const char *name)
{
	const json_t *v = json_object_get(o, name);
	const char *s = json_string_value(v);

	return s != NULL && strlen(s) == json_string_length(v) ? s : NULL;
}

/* ---- keys from a JWKS ------------------------------------------------ */

/* Member name of jwk, base64url-decoded: its bytes (caller frees), or NULL
 * when missing, not base64url, or not between min and max bytes. */
static unsigned char *
jwk_bytes(
    const json_t *jwk, const char *name, size_t min, size_t max, size_t *len)
{
	const json_t *v = json_object_get(jwk, name);
	unsigned char *b;

	if (!json_is_string(v))
		return NULL;
	b = b64url_decode(json_string_value(v), json_string_length(v), len);
	if (b != NULL && (*len < min || *len > max)) {
		free(b);
		return NULL;
	}
	return b;
}

/* The key built from params (a public key of type name), or NULL. */
static EVP_PKEY *
pkey_from(const char *name, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
	EVP_PKEY_CTX *check = NULL;
	EVP_PKEY *k = NULL;

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &k, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto fail;
	/* A point off the curve, an even modulus…: not a key. */
	check = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
	if (check == NULL || EVP_PKEY_public_check(check) != 1) {
		EVP_PKEY_free(k);
		k = NULL;
	}
fail:
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	ERR_clear_error();
	return k;
}

/* An EC P-256 JWK's public key, or NULL. */
static EVP_PKEY *
jwk_ec(const json_t *jwk)
{
	unsigned char pt[1 + 2 * P256_LEN];
	unsigned char *x = NULL, *y = NULL;
	size_t xlen, ylen;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *k = NULL;

	if (!json_str_is(json_object_get(jwk, "crv"), "P-256"))
		return NULL;
	x = jwk_bytes(jwk, "x", P256_LEN, P256_LEN, &xlen);
	y = jwk_bytes(jwk, "y", P256_LEN, P256_LEN, &ylen);
	if (x == NULL || y == NULL)
		goto fail;
	pt[0] = 0x04; /* uncompressed: 04 || x || y */
	memcpy(pt + 1, x, P256_LEN);
	memcpy(pt + 1 + P256_LEN, y, P256_LEN);
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(
	        bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(
	        bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt)))
		goto fail;
	k = pkey_from("EC", bld);
fail:
	OSSL_PARAM_BLD_free(bld);
	free(x);
	free(y);
	return k;
}

/* An RSA JWK's public key of RSA_MIN_BITS to RSA_MAX_BITS, or NULL. */
static EVP_PKEY *
jwk_rsa(const json_t *jwk)
{
	unsigned char *n = NULL, *e = NULL;
	size_t nlen, elen;
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *k = NULL;

	n = jwk_bytes(jwk, "n", RSA_MIN_BITS / 8, RSA_MAX_BITS / 8 + 1, &nlen);
	e = jwk_bytes(jwk, "e", 1, 8, &elen);
	if (n == NULL || e == NULL)
		goto fail;
	bn = BN_bin2bn(n, (int)nlen, NULL);
	be = BN_bin2bn(e, (int)elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (bn == NULL || be == NULL || bld == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
		goto fail;
	k = pkey_from("RSA", bld);
	if (k != NULL && (EVP_PKEY_get_bits(k) < RSA_MIN_BITS ||
	                     EVP_PKEY_get_bits(k) > RSA_MAX_BITS)) {
		EVP_PKEY_free(k);
		k = NULL;
	}
fail:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	free(n);
	free(e);
	return k;
}

/* Read one JWK into out: 0, or -1 when it is not a key we can use. */
static int
jwk_read(const json_t *jwk, struct key *out)
{
	const char *kty = member_str(jwk, "kty");
	const char *kid = member_str(jwk, "kid");
	const json_t *use = json_object_get(jwk, "use");
	const json_t *alg = json_object_get(jwk, "alg");

	if (kty == NULL || kid == NULL || *kid == '\0' ||
	    strlen(kid) >= KID_MAX)
		return -1;
	if (use != NULL && !json_str_is(use, "sig"))
		return -1;
	if (strcmp(kty, "EC") == 0)
		out->alg = ALG_ES256;
	else if (strcmp(kty, "RSA") == 0)
		out->alg = ALG_RS256;
	else
		return -1; /* "oct" above all: never a shared secret here */
	if (alg != NULL && !json_str_is(alg, alg_names[out->alg]))
		return -1;
	out->pkey = out->alg == ALG_ES256 ? jwk_ec(jwk) : jwk_rsa(jwk);
	if (out->pkey == NULL)
		return -1;
	out->kid = xstrdup(kid);
	return 0;
}

static void
keyset_free(struct keyset *ks)
{
	if (ks == NULL)
		return;
	for (size_t i = 0; i < ks->n; i++) {
		free(ks->v[i].kid);
		EVP_PKEY_free(ks->v[i].pkey);
	}
	free(ks->v);
	free(ks);
}

static const struct key *
keyset_find(const struct keyset *ks, const char *kid)
{
	for (size_t i = 0; ks != NULL && i < ks->n; i++)
		if (strcmp(ks->v[i].kid, kid) == 0)
			return &ks->v[i];
	return NULL;
}

/* The usable keys of array keys (the first of a kid wins). */
static struct keyset *
keyset_read(const json_t *keys)
{
	struct keyset *ks = xcalloc(1, sizeof(*ks));
	size_t i;
	json_t *jwk;

	ks->v = xcalloc(KEYS_MAX, sizeof(*ks->v));
	json_array_foreach(keys, i, jwk)
	{
		struct key k;

		if (ks->n == KEYS_MAX)
			break;
		if (!json_is_object(jwk) || jwk_read(jwk, &k) < 0)
			continue;
		if (keyset_find(ks, k.kid) != NULL) {
			free(k.kid);
			EVP_PKEY_free(k.pkey);
			continue;
		}
		ks->v[ks->n++] = k;
	}
	return ks;
}

int
auth_set_keys(
    struct auth *a, const char *jwks_json, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *root = NULL;
	const json_t *keys;
	struct keyset *ks;

	if (jwks_json != NULL)
		root = jsonr_loadb(jwks_json, len, JSON_REJECT_DUPLICATES, &je);
	keys = json_object_get(root, "keys");
	if (!json_is_array(keys)) {
		snprintf(err, errlen, "%s%s",
		    root == NULL ? "not JSON: " : "no \"keys\" array",
		    root == NULL && jwks_json != NULL ? je.text : "");
		json_decref(root);
		return -1;
	}
	ks = keyset_read(keys);
	json_decref(root);
	if (ks->n == 0) {
		snprintf(
		    err, errlen, "no usable key (EC P-256 or RSA, with kid)");
		keyset_free(ks);
		return -1;
	}
	keyset_free(a->keys);
	a->keys = ks;
	seen_clear(a);
	return 0;
}

size_t
auth_nkeys(const struct auth *a)
{
	return a->keys != NULL ? a->keys->n : 0;
}

/* ---- signatures ------------------------------------------------------ */

static int
hs256(const struct auth *a, const char *data, size_t len,
    unsigned char out[MAC_LEN])
{
	EVP_MAC_CTX *c = EVP_MAC_CTX_dup(a->hs256);
	size_t n = 0;
	int ok = c != NULL &&
	         EVP_MAC_update(c, (const unsigned char *)data, len) == 1 &&
	         EVP_MAC_final(c, out, &n, MAC_LEN) == 1 && n == MAC_LEN;

	EVP_MAC_CTX_free(c);
	return ok ? 0 : -1;
}

/* 1 when sig is key's SHA-256 signature of data. */
static int
digest_verify(EVP_PKEY *key, const char *data, size_t len,
    const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	int ok = md != NULL &&
	         EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) == 1 &&
	         EVP_DigestVerify(
	             md, sig, siglen, (const unsigned char *)data, len) == 1;

	EVP_MD_CTX_free(md);
	ERR_clear_error(); /* a bad signature leaves errors queued */
	return ok;
}

/* 1 when sig, JOSE's R || S, is key's ES256 signature of data: OpenSSL
 * wants it DER-encoded. */
static int
es256_verify(EVP_PKEY *key, const char *data, size_t len,
    const unsigned char *sig, size_t siglen)
{
	ECDSA_SIG *s = NULL;
	BIGNUM *r, *ss;
	unsigned char *der = NULL;
	int derlen, ok = 0;

	if (siglen != 2 * P256_LEN)
		return 0;
	r = BN_bin2bn(sig, P256_LEN, NULL);
	ss = BN_bin2bn(sig + P256_LEN, P256_LEN, NULL);
	if (r == NULL || ss == NULL || (s = ECDSA_SIG_new()) == NULL) {
		BN_free(r);
		BN_free(ss);
		return 0;
	}
	ECDSA_SIG_set0(s, r, ss);
	derlen = i2d_ECDSA_SIG(s, &der);
	if (derlen > 0)
		ok = digest_verify(key, data, len, der, (size_t)derlen);
	OPENSSL_free(der);
	ECDSA_SIG_free(s);
	return ok;
}

static int
signature_ok(const struct key *k, const char *data, size_t len,
    const unsigned char *sig, size_t siglen)
{
	if (k->alg == ALG_ES256)
		return es256_verify(k->pkey, data, len, sig, siglen);
	/* PKCS#1 v1.5, the default padding of an RSA key. */
	return siglen == (size_t)EVP_PKEY_get_size(k->pkey) &&
	       digest_verify(k->pkey, data, len, sig, siglen);
}

/* ---- claims ---------------------------------------------------------- */

/* A user id we can store and print: 1 to AUTH_SUB_MAX - 1 bytes of UTF-8
 * without control or bidi characters. */
static int
sub_ok(const char *sub, size_t len)
{
	return len > 0 && len < AUTH_SUB_MAX && text_ok(sub, len);
}

/* 1 when now is at or past t + skew (t a JSON number), without overflow. */
static int
reached(int64_t now, const json_t *t, int64_t skew)
{
	if (json_is_integer(t)) {
		json_int_t v = json_integer_value(t);
		return v <= INT64_MAX - skew && now >= v + skew;
	}
	/* Compared as numbers so that a fractional time is exact. */
	return (double)now >= json_real_value(t) + (double)skew;
}

/* 1 when t (a JSON number) is more than skew after now. */
static int
ahead(int64_t now, const json_t *t, int64_t skew)
{
	if (json_is_integer(t)) {
		json_int_t v = json_integer_value(t);
		return v >= INT64_MIN + skew && v - skew > now;
	}
	return json_real_value(t) - (double)skew > (double)now;
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

/* 1 when aud is want, or an array holding it. */
static int
audience_ok(const json_t *aud, const char *want)
{
	size_t i;
	const json_t *v;

	if (!json_is_array(aud))
		return json_str_is(aud, want);
	json_array_foreach(aud, i, v)
	{
		if (json_str_is(v, want))
			return 1;
	}
	return 0;
}

static int
is_admin(const struct auth *a, const json_t *p)
{
	const json_t *meta = json_object_get(p, "app_metadata");

	return json_str_is(json_object_get(p, "role"), a->admin_role) ||
	       (json_is_object(meta) &&
	           json_str_is(json_object_get(meta, "role"), a->admin_role));
}

/* The reason p is refused at now, or NULL when its claims are good. */
static const char *
claims_refusal(const struct auth *a, const json_t *p, int64_t now)
{
	const json_t *sub = json_object_get(p, "sub");
	const json_t *exp = json_object_get(p, "exp");
	const json_t *nbf = json_object_get(p, "nbf");

	if (!json_is_string(sub) ||
	    !sub_ok(json_string_value(sub), json_string_length(sub)))
		return "bad sub";
	if (exp == NULL ? a->need_exp : !json_is_number(exp))
		return "no exp, or not a number";
	if (exp != NULL && reached(now, exp, a->skew))
		return "expired";
	if (nbf != NULL && (!json_is_number(nbf) || ahead(now, nbf, a->skew)))
		return "not valid yet (nbf)";
	if (a->issuer != NULL &&
	    !json_str_is(json_object_get(p, "iss"), a->issuer))
		return "wrong iss";
	if (a->audience != NULL &&
	    !audience_ok(json_object_get(p, "aud"), a->audience))
		return "wrong aud";
	return NULL;
}

/* ---- checking a token ------------------------------------------------ */

static enum auth_rc
refuse(struct auth *a, const char *why)
{
	a->why = why;
	return AUTH_BAD;
}

/* Cut token at its two dots: 0, or -1 when it is not three parts. */
static int
split(const char *token, struct parts *p)
{
	const char *dot1, *dot2;

	if (token == NULL)
		return -1;
	p->t = token;
	p->len = strnlen(token, TOKEN_MAX + 1);
	if (p->len > TOKEN_MAX)
		return -1;
	dot1 = strchr(token, '.');
	dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	if (dot2 == NULL || strchr(dot2 + 1, '.') != NULL)
		return -1;
	p->hlen = (size_t)(dot1 - token);
	p->signed_len = (size_t)(dot2 - token);
	return 0;
}

/* The header's alg, and kid for the algorithms that need one: 0, or -1.
 * A "crit" extension is never understood, so it is refused (RFC 7515). */
static int
header_read(const struct parts *p, struct header *h)
{
	json_t *o = part_to_object(p->t, p->hlen);
	const json_t *alg = json_object_get(o, "alg");
	const char *kid = member_str(o, "kid");
	int rc = -1;

	h->alg = ALG_OTHER;
	h->kid[0] = '\0';
	for (int i = ALG_HS256; i <= ALG_RS256; i++)
		if (json_str_is(alg, alg_names[i]))
			h->alg = i;
	if (h->alg == ALG_OTHER || json_object_get(o, "crit") != NULL)
		goto done;
	if (h->alg != ALG_HS256) {
		if (kid == NULL || *kid == '\0' || strlen(kid) >= KID_MAX)
			goto done;
		memcpy(h->kid, kid, strlen(kid) + 1);
	}
	rc = 0;
done:
	json_decref(o);
	return rc;
}

static enum auth_rc
hs256_check(struct auth *a, const struct parts *p)
{
	unsigned char want[MAC_LEN];
	unsigned char *got;
	size_t n;
	int ok;

	if (a->hs256 == NULL)
		return refuse(a, "HS256 without a secret");
	if (hs256(a, p->t, p->signed_len, want) < 0)
		return refuse(a, "HMAC failed");
	got = b64url_decode(
	    p->t + p->signed_len + 1, p->len - p->signed_len - 1, &n);
	if (got == NULL)
		return refuse(a, "bad signature encoding");
	ok = n == MAC_LEN && ct_equal(got, want, MAC_LEN);
	free(got);
	return ok ? AUTH_OK : refuse(a, "bad signature");
}

/* ES256 / RS256: the key named by kid, of the header's algorithm. */
static enum auth_rc
key_check(struct auth *a, const struct parts *p, const struct header *h)
{
	const struct key *k = keyset_find(a->keys, h->kid);
	const char *payload = p->t + p->hlen + 1;
	unsigned char *sig;
	size_t n;
	json_t *o;
	int ok;

	sig = b64url_decode(
	    p->t + p->signed_len + 1, p->len - p->signed_len - 1, &n);
	if (sig == NULL || n == 0) {
		free(sig);
		return refuse(a, "bad signature encoding");
	}
	if (k == NULL) {
		/* Well-formed throughout, or not worth a refetch. */
		free(sig);
		o = part_to_object(payload, p->signed_len - p->hlen - 1);
		if (o == NULL)
			return refuse(a, "bad payload");
		json_decref(o);
		a->why = "unknown kid";
		return AUTH_UNKNOWN_KID;
	}
	if (k->alg != h->alg) {
		free(sig);
		return refuse(a, "alg is not the key's");
	}
	ok = signature_ok(k, p->t, p->signed_len, sig, n);
	free(sig);
	return ok ? AUTH_OK : refuse(a, "bad signature");
}

enum auth_rc
auth_check(
    struct auth *a, const char *token, int64_t now, struct auth_claims *out)
{
	struct parts p;
	struct header h;
	enum auth_rc rc;
	json_t *payload;
	const char *why;
	int fresh = 0;

	if (a == NULL)
		return AUTH_BAD;
	if (split(token, &p) < 0)
		return refuse(a, "not a JWT");
	payload = seen_get(a, token, p.len);
	if (payload == NULL) {
		if (header_read(&p, &h) < 0)
			return refuse(a, "bad header or algorithm");
		rc = h.alg == ALG_HS256 ? hs256_check(a, &p)
		                        : key_check(a, &p, &h);
		if (rc != AUTH_OK)
			return rc;
		payload =
		    part_to_object(p.t + p.hlen + 1, p.signed_len - p.hlen - 1);
		if (payload == NULL)
			return refuse(a, "bad payload");
		fresh = 1;
	}
	why = claims_refusal(a, payload, now);
	if (why == NULL && fresh)
		seen_put(a, token, p.len, payload);
	if (why == NULL && out != NULL) {
		const json_t *sub = json_object_get(payload, "sub");
		const json_t *exp = json_object_get(payload, "exp");
		memset(out, 0, sizeof(*out));
		memcpy(out->sub, json_string_value(sub),
		    json_string_length(sub) + 1);
		out->admin = is_admin(a, payload);
		out->exp = exp ? exp_seconds(exp) : 0;
	}
	json_decref(payload);
	if (why != NULL)
		return refuse(a, why);
	a->why = "";
	return AUTH_OK;
}

const char *
auth_why(const struct auth *a)
{
	return a != NULL && a->why != NULL ? a->why : "";
}

/* ---- the object -------------------------------------------------------- */

/* HMAC-SHA256 keyed with secret, to be duplicated per token; or NULL. */
static EVP_MAC_CTX *
hs256_keyed(EVP_MAC *mac, const char *secret)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(
	        OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
	    OSSL_PARAM_construct_end(),
	};
	EVP_MAC_CTX *c = EVP_MAC_CTX_new(mac);

	if (c == NULL || EVP_MAC_init(c, (const unsigned char *)secret,
	                     strlen(secret), params) != 1) {
		EVP_MAC_CTX_free(c);
		return NULL;
	}
	return c;
}

static char *
dup_nonempty(const char *s)
{
	return s != NULL && *s != '\0' ? xstrdup(s) : NULL;
}

/* auth_new with skew seconds allowed on exp and nbf. */
static struct auth *
auth_make(const struct auth_opts *o, int64_t skew)
{
	struct auth *a = xcalloc(1, sizeof(*a));

	a->issuer = dup_nonempty(o->issuer);
	a->audience = dup_nonempty(o->audience);
	a->admin_role = xstrdup(o->admin_role != NULL && *o->admin_role != '\0'
	                            ? o->admin_role
	                            : "admin");
	a->need_exp = o->need_exp;
	a->skew = skew;
	a->why = "";
	a->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (a->mac == NULL)
		goto fail;
	if (o->secret != NULL && *o->secret != '\0' &&
	    (a->hs256 = hs256_keyed(a->mac, o->secret)) == NULL)
		goto fail;
	return a;
fail:
	ERR_clear_error();
	auth_free(a);
	return NULL;
}

struct auth *
auth_new(const struct auth_opts *o)
{
	return auth_make(o, AUTH_SKEW);
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	keyset_free(a->keys);
	seen_clear(a);
	EVP_MAC_CTX_free(a->hs256);
	EVP_MAC_free(a->mac);
	free(a->issuer);
	free(a->audience);
	free(a->admin_role);
	free(a);
}

int
auth_verify(
    const char *secret, const char *token, int64_t now, struct auth_claims *out)
{
	struct auth_opts o = {.secret = secret};
	struct auth *a;
	int rc;

	if (secret == NULL || *secret == '\0' || token == NULL)
		return -1;
	a = auth_make(&o, 0);
	rc = a != NULL && auth_check(a, token, now, out) == AUTH_OK ? 0 : -1;
	auth_free(a);
	return rc;
}

/* ---- signing ----------------------------------------------------------- */

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
payload_new(const char *sub, const char *role, int64_t exp)
{
	json_t *p = json_object();

	json_object_set_new(p, "sub", json_string(sub));
	if (exp != 0)
		json_object_set_new(p, "exp", json_integer(exp));
	if (role != NULL)
		json_object_set_new(p, "role", json_string(role));
	json_object_set_new(p, "iat", json_integer((json_int_t)time(NULL)));
	return p;
}

char *
auth_token(struct auth *a, const char *sub, int admin, int64_t exp)
{
	json_t *header = NULL, *payload = NULL;
	char *h = NULL, *p = NULL, *signed_part = NULL, *token = NULL;
	unsigned char m[MAC_LEN];
	char *sig;

	/* Never hand out a token that auth_check would refuse. */
	if (a == NULL || a->hs256 == NULL || sub == NULL ||
	    !sub_ok(sub, strlen(sub)))
		return NULL;
	header = json_pack("{s:s, s:s}", "alg", "HS256", "typ", "JWT");
	payload = payload_new(sub, admin ? a->admin_role : NULL, exp);
	h = object_part(header);
	p = object_part(payload);
	if (h == NULL || p == NULL)
		goto fail;
	signed_part = xasprintf("%s.%s", h, p);
	if (hs256(a, signed_part, strlen(signed_part), m) < 0)
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

char *
auth_sign(const char *secret, const char *sub, int admin, int64_t exp)
{
	struct auth_opts o = {.secret = secret};
	struct auth *a;
	char *t;

	if (secret == NULL || *secret == '\0')
		return NULL;
	a = auth_new(&o);
	t = auth_token(a, sub, admin, exp);
	auth_free(a);
	return t;
}
