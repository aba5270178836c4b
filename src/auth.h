/*
 * auth.h — bearer tokens: fila's own and legacy Supabase HS256 tokens
 * (a shared secret), and today's Supabase tokens, ES256 or RS256, checked
 * with the public keys of a JWKS (see jwks.h for fetching it).
 *
 * The key decides the algorithm, never the token: HS256 is verified with
 * the secret only, ES256/RS256 with the key named by the header's kid only
 * and only when that key is of that type; "none" and everything else are
 * refused.
 */
#ifndef FILA_AUTH_H
#define FILA_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_SUB_MAX 256
/* Clock skew allowed on exp and nbf, in seconds. */
#define AUTH_SKEW 30

struct auth;

struct auth_claims {
	char sub[AUTH_SUB_MAX]; /* user id, non-empty */
	int admin;              /* role or app_metadata.role == admin_role */
	int64_t exp;            /* seconds since epoch; 0 when absent */
};

/* How tokens are judged; the strings are copied by auth_new. */
struct auth_opts {
	const char *secret;     /* HS256 key; NULL or "": HS256 refused */
	const char *issuer;     /* iss must equal it; NULL or "": unchecked */
	const char *audience;   /* aud must be or contain it; NULL or "": not */
	const char *admin_role; /* NULL or "": "admin" */
	int need_exp;           /* refuse tokens without exp (with a JWKS) */
};

enum auth_rc {
	AUTH_OK,
	AUTH_BAD,         /* refuse (401) */
	AUTH_UNKNOWN_KID, /* ES256/RS256 whose kid is not in the key set */
};

/* A verifier for o, with no keys yet; auth_free it. NULL only when
 * OpenSSL lacks HMAC or SHA-256. */
struct auth *auth_new(const struct auth_opts *o);

/* Free a and its keys. NULL is a no-op. */
void auth_free(struct auth *a);

/*
 * Replace the key set with the usable keys of a JWKS document
 * ({"keys":[...]}): EC P-256 (ES256) and RSA of 2048 to 8192 bits
 * (RS256), each with a kid; other keys (oct, other curves, "use" not
 * "sig", an "alg" not the key's) are skipped. 0; or -1 with err set and
 * the old set kept when the document does not parse or has no usable key.
 */
int auth_set_keys(struct auth *a, const char *jwks_json, size_t len, char *err,
    size_t errlen);

/* The number of keys in the current set. */
size_t auth_nkeys(const struct auth *a);

/*
 * Judge token at now (seconds since the epoch). AUTH_OK fills out (may be
 * NULL); AUTH_UNKNOWN_KID: a well-formed ES256/RS256 token whose kid is
 * not in the set (refetch the JWKS once, then ask again: still unknown is
 * a refusal). exp and nbf are allowed AUTH_SKEW seconds of skew.
 */
enum auth_rc auth_check(
    struct auth *a, const char *token, int64_t now, struct auth_claims *out);

/* Why the last auth_check of a refused the token: a static string ("" after
 * AUTH_OK), for logs, never for clients. */
const char *auth_why(const struct auth *a);

/*
 * An HS256 token signed with a's secret for sub (exp 0: none), with iat
 * now; the caller frees it. NULL when a has no secret or auth_check would
 * refuse the sub: empty, too long, not UTF-8, control or bidi characters.
 */
char *auth_token(struct auth *a, const char *sub, int admin, int64_t exp);

/*
 * The old interface, until its callers move to struct auth: 0 and out
 * filled when token is an HS256 token of secret, -1 otherwise. No skew:
 * expired from the second now reaches exp.
 */
int auth_verify(const char *secret, const char *token, int64_t now,
    struct auth_claims *out);

/* auth_token with a verifier of secret alone (for `fila token`). */
char *auth_sign(const char *secret, const char *sub, int admin, int64_t exp);

#endif
