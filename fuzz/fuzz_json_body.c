/*
 * fuzz_json_body.c — libFuzzer target for what a job submission's body and
 * bearer token go through: the checks of tools_check_job on the
 * built-in tools, and auth_verify.
 *
 * The body is checked as api.c has it checked (the envelope first, then the
 * tool, the variant and the inputs), and every problem must be reported
 * in fields. The input is also tried as a token, and, since a random token
 * never gets past the MAC, as the payload of a token signed here with the
 * configured secret, so that the claims parser is reached too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "auth.h"
#include "config.h"
#include "tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000000 /* 2027: tokens with an exp before are expired */

static struct config cfg;

static void
fail(const char *what)
{
	fprintf(stderr, "fuzz_json_body: %s\n", what);
	abort();
}

static void
check_job(json_t *body)
{
	json_t *fields = json_object(), *again = json_object();
	const char *variant = NULL, *variant2 = NULL;
	const struct tool *t =
	    tools_check_job(&cfg.tools, body, &variant, fields);

	if ((t == NULL) != (json_object_size(fields) > 0))
		fail("the verdict and the fields disagree");
	if (t != NULL) {
		const struct tool_variant *v = tool_variant(t, variant);
		if (v == NULL || v < t->variants ||
		    v >= t->variants + t->nvariants)
			fail("the variant is not the tool's own");
	}
	/* The same body must give the same verdict: no hidden state. */
	if (tools_check_job(&cfg.tools, body, &variant2, again) != t ||
	    !json_equal(fields, again))
		fail("tools_check_job is not repeatable");
	json_decref(again);
	json_decref(fields);
}

/* Unpadded base64url, as in a JWT; the caller frees. */
static char *
b64url(const unsigned char *buf, size_t len)
{
	char *out = malloc(len / 3 * 4 + 5);
	int n = EVP_EncodeBlock((unsigned char *)out, buf, (int)len);

	while (n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	for (char *p = out; *p; p++)
		*p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
	return out;
}

/* header "." payload "." mac, signed with the configured secret. */
static char *
sign(const char *header, const unsigned char *payload, size_t len)
{
	char *h = b64url((const unsigned char *)header, strlen(header));
	char *p = b64url(payload, len), *m, *token;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	size_t n = strlen(h) + strlen(p) + 1;
	char *signing = malloc(n + 1);

	snprintf(signing, n + 1, "%s.%s", h, p);
	HMAC(EVP_sha256(), cfg.jwt_secret, (int)strlen(cfg.jwt_secret),
	    (unsigned char *)signing, n, mac, &maclen);
	m = b64url(mac, maclen);
	token = malloc(n + strlen(m) + 2);
	sprintf(token, "%s.%s", signing, m);
	free(h);
	free(p);
	free(m);
	free(signing);
	return token;
}

static void
check_claims(int rc, const struct auth_claims *c)
{
	if (rc != 0)
		return;
	if (memchr(c->sub, '\0', sizeof c->sub) == NULL || c->sub[0] == '\0')
		fail("accepted a token without a proper sub");
	if (c->exp != 0 && c->exp < NOW)
		fail("accepted an expired token");
	if (c->admin != 0 && c->admin != 1)
		fail("admin is not 0 or 1");
}

static void
check_token(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), *token;
	struct auth_claims c;

	memcpy(s, data, size);
	s[size] = '\0';
	memset(&c, 0, sizeof c);
	check_claims(auth_verify(cfg.jwt_secret, s, NOW, &c), &c);
	token = sign("{\"alg\":\"HS256\",\"typ\":\"JWT\"}", data, size);
	memset(&c, 0, sizeof c);
	check_claims(auth_verify(cfg.jwt_secret, token, NOW, &c), &c);
	free(token);
	/* The input as the header: only HS256 may pass. */
	token = sign(s, (const unsigned char *)"{\"sub\":\"u\"}", 11);
	memset(&c, 0, sizeof c);
	if (auth_verify(cfg.jwt_secret, token, NOW, &c) == 0 &&
	    strstr(s, "HS256") == NULL)
		fail("accepted a header that does not say HS256");
	free(token);
	/* What auth_sign makes, auth_verify takes back unchanged. */
	token = auth_sign(cfg.jwt_secret, s, size & 1, size & 2 ? NOW + 60 : 0);
	if (token != NULL) {
		memset(&c, 0, sizeof c);
		if (auth_verify(cfg.jwt_secret, token, NOW, &c) != 0 ||
		    strcmp(c.sub, s) != 0 || c.admin != (int)(size & 1))
			fail("auth_verify refuses what auth_sign made");
		free(token);
	}
	free(s);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *body;

	if (cfg.jwt_secret == NULL) {
		char err[512];

		if (config_load(
		        &cfg, "/nonexistent", 1, NULL, 0, err, sizeof err) < 0)
			fail(err);
	}
	body = json_loadb((const char *)data, size, 0, NULL);
	if (json_is_object(body))
		check_job(body);
	json_decref(body);
	check_token(data, size);
	return 0;
}
