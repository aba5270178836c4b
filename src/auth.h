/*
 * auth.h — HS256 bearer tokens (the shape of Supabase access tokens).
 * Only HS256 is accepted: "none" and every other algorithm are refused.
 */
#ifndef FILA_AUTH_H
#define FILA_AUTH_H

#include <stdint.h>

#define AUTH_SUB_MAX 256

struct auth_claims {
	char sub[AUTH_SUB_MAX]; /* user id, non-empty */
	int admin;              /* role == "admin" */
	int64_t exp;            /* seconds since epoch; 0 when absent */
};

/*
 * Verify token against secret at time now (seconds). Returns 0 and fills
 * out, or -1 for anything wrong: malformed, other algorithm, bad signature,
 * expired, missing or non-string sub.
 */
int auth_verify(const char *secret, const char *token, int64_t now,
    struct auth_claims *out);

/*
 * A signed token for sub (exp 0: none); the caller frees it. NULL when
 * auth_verify would refuse it: empty secret, or sub empty, too long, with
 * control characters or not UTF-8.
 */
char *auth_sign(const char *secret, const char *sub, int admin, int64_t exp);

#endif
