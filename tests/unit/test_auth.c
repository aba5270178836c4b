/*
 * test_auth.c — bearer tokens.
 *
 * HS256 (auth_verify, auth_sign): what auth_sign makes auth_verify
 * accepts, and every forged, altered, expired or malformed token is
 * refused. The fixed tokens were made by another implementation (Node's
 * crypto.createHmac("sha256", secret) over base64url(header) "."
 * base64url(payload)), so these tests also prove that fila reads what
 * standard JWT libraries and Supabase write.
 *
 * ES256 / RS256 (struct auth with a JWKS): keys made here with OpenSSL
 * (EC P-256, RSA-2048), published as a JWKS of their public parts, tokens
 * signed here (ES256 as JOSE's R || S), and every rule of docs/api.md §10:
 * the key decides the algorithm, unknown kids, alg-confusion forgeries,
 * exp / nbf with skew, iss, aud, the admin role, the sub's characters, key
 * sets that do not parse and key rotation. A JWKS and two tokens made by
 * Node's crypto (ieee-p1363 signatures) check interoperability.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "auth.h"

#define SECRET "test-secret"
#define NOW 1700000000 /* 2023-11-14; the fixed tokens expire in 2100 */

/* A Supabase-shaped access token: sub, role "authenticated", exp 2100. */
static const char supabase_secret[] =
    "super-secret-jwt-token-with-at-least-32-characters-long";
static const char supabase_token[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJhdWQiOiJhdXRoZW50aWNhdGVkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMD"
    "AsImlzcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjE0ZTQ1"
    "Zi1jZWVhLTQ2N2UtYThmMS0yZDNiNGM1ZTZmNzAiLCJlbWFpbCI6ImFsaWNlQGV4YW1wbGUuY2"
    "9tIiwicGhvbmUiOiIiLCJhcHBfbWV0YWRhdGEiOnsicHJvdmlkZXIiOiJlbWFpbCIsInByb3Zp"
    "ZGVycyI6WyJlbWFpbCJdfSwidXNlcl9tZXRhZGF0YSI6e30sInJvbGUiOiJhdXRoZW50aWNhdG"
    "VkIiwiYWFsIjoiYWFsMSIsInNlc3Npb25faWQiOiJkNmIxYzFhOC0zYzJlLTRhNWUtOWE1Ny0x"
    "ZjBmM2UwYTliMTEifQ.0lDO_LcvLPMXV14QSzDkR5wbPPUHvbKk8Y4VSwKiXnQ";
/* {"sub":"ops","role":"admin","exp":1700000000.5}, same secret. */
static const char admin_real_exp[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJvcHMiLCJyb2xlIjoiYWRtaW4iLCJleHAiOjE3MDAwMDAwMDAuNX0.tRMfo_"
    "VlWoYtxQOVoAeOJIUtx7nYKAzSD80sSqGosMM";

static const char none_empty[] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                                 "eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.";
static const char none_signed[] = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
                                  "eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
                                  "ipGVsxGf6oV65G0b94pwZQXJTuDD-ZzI_1qxRWyMhdk";
static const char hs384[] =
    "eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.ycwqhK8KLhYrRCwjloOiCf1a-"
    "ytdxqCqGC_Iibf-Dr01cnJyqIMxelPJvOWfid9R";
static const char hs384_with_256[] =
    "eyJhbGciOiJIUzM4NCIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.0zEMTfJCdT6kyHz5-"
    "IVuOTMUkHkwL3N_dqYMjHp8Mtw";
static const char rs256_with_256[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.5RkFZQ5uLnlyaBPL_"
    "i4wEDKc97qdDQWh6JvqVF4WH3A";
static const char lower_alg[] = "eyJhbGciOiJoczI1NiIsInR5cCI6IkpXVCJ9."
                                "eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
                                "Hac0_e06E2gndEiKq3v3WO1nE81i_x8DJhAyQyT29r4";
static const char no_alg[] =
    "eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "tJ9DIWO7CNtafSA988jqX0ame1t6QcorEhcizqOmtFk";
static const char alg_array[] =
    "eyJhbGciOlsiSFMyNTYiXX0.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0."
    "zmWCR7qLlQcIXhyD8aGB82aY45teyj8eLI08jh3u204";
static const char header_array[] =
    "WyJIUzI1NiJd.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.HTG3nNjvlQhQAy-"
    "KI0bkZTdHk30yIWMp_PTgLgYXeXw";
static const char no_typ[] =
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6NDEwMjQ0NDgwMH0.1dU5aQR_"
    "h07TgHwhjvavjykyTBXDCpHfxKDfpE7iN-Y";
static const char empty_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIiLCJleHAiOjQxMDI0NDQ4MDB9."
    "vCMoIyAV9Hsz0YkBxz1I3R01FviazOgIOUJ5EALIfZ8";
static const char num_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOjQyLCJleHAiOjQxMDI0NDQ4MDB9."
    "kMfTrawX-NJrZIKF9W5vVPMKOmS0bX1YBp1wyO3QtDo";
static const char null_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOm51bGx9."
    "rLmaTi7qOa32Ml9PLJs5y0ZxaJKUz8SVpVZ39-1-vzE";
static const char no_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjQxMDI0NDQ4MDB9."
    "ZaKrogf53oOsIE9MjGGSDQte-WlWmvL2tT1V5-Sa5E8";
static const char ctrl_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGlcbmNlIn0.nUZQo_"
    "1wdBUIlDRJQ3e4lsuc85nvociS_4u5BakRVr4";
static const char long_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eH"
    "h4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eH"
    "h4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4In0."
    "4FVl94XSs2hfekYpTrMIwZ3L1bmKCU_ZKDJhNbup7Jg";
static const char max_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eH"
    "h4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eH"
    "h4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4"
    "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHgifQ."
    "9MGEp51xxDBnJLLHjxIdkh1IPdSbNxw1xQDj1ROQqiI";
static const char utf8_sub[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c8Opci3mnbHkuqwifQ."
    "mDFf3YDCcDCil6V8KjoX4VOp0XsHxBwb9NbEZ29Fl0c";
static const char exp_string[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJhbGljZSIsImV4cCI6IjQxMDI0NDQ4MDAifQ.Nrv7bLkagm4T-4B3cAXXa6-Tv_"
    "ypjw-hzkWSQmWzHfM";
static const char exp_null[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6bnVsbH0."
    "xZ54mhtMRCEUUyCWn0mdO2mRpC3AOUPG3AyuBHHovQ0";
static const char exp_real[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                               "eyJzdWIiOiJhbGljZSIsImV4cCI6MTcwMDAwMDAwMC41fQ."
                               "nMmQtOyWB6YkhlNtf4wXe7HJkotpgt0eHEeh7kdD_-0";
static const char role_array[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                 "eyJzdWIiOiJhbGljZSIsInJvbGUiOlsiYWRtaW4iXX0."
                                 "Aypq0vb3GUIvWoSQibARe5v8vjmgu2KWCvtawI74LUE";
static const char role_case[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                "eyJzdWIiOiJhbGljZSIsInJvbGUiOiJBZG1pbiJ9."
                                "VhnowiXPUY2li54TjsTyDgCYcsiO_Bs5yhAWJeB6g2k";
static const char payload_array[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.WyJhbGljZSJd."
    "YFOhleIGdASdpK4fHZrGEOjpFV_N7aFbrS7KRXyAZ5s";
static const char payload_junk[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e3N1YjphbGljZX0."
    "SQCgjDtH5efU39F7nMCvtOa25vbxsmUEGdN_aDkM8lI";
static const char dup_sub[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                              "eyJzdWIiOiJhbGljZSIsInN1YiI6ImFkbWluIn0."
                              "xlFQLOkz_RU21Q4G_lVHqaZX_nCWc4w95yj9Cha1nWc";
/* {"sub":"bob?>","exp":4102444800}: its base64url uses '-' and '_'. */
static const char valid_b[] =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJib2I_"
    "PiIsImV4cCI6NDEwMjQ0NDgwMH0.7JLpZN0_7lzA608iFLK5CvMwEKlGBKZghJg8B4Gw13Y";
/* {"sub":"padd",…} with '=' padding on the payload and the signature. */
static const char padded[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                             "eyJzdWIiOiJwYWRkIiwiZXhwIjo0MTAyNDQ0ODAwfQ==._"
                             "6XB0bSB0DXGoPfr9HRnbJAONM8QallLq1KjgDnwHsk=";

static int
verify(const char *token, int64_t now, struct auth_claims *c)
{
	return auth_verify(SECRET, token, now, c);
}

static void
refused(const char *token)
{
	struct auth_claims c;
	memset(&c, 0x5a, sizeof(c));
	cr_expect_eq(verify(token, NOW, &c), -1, "accepted: %s", token);
}

/* A copy of token with the character at i replaced by ch. */
static char *
with_char(const char *token, size_t i, char ch)
{
	char *t = strdup(token);
	t[i] = ch;
	return t;
}

Test(auth, round_trip)
{
	struct auth_claims c;
	char *t = auth_sign(SECRET, "alice", 0, NOW + 3600);

	cr_assert_not_null(t);
	cr_assert_eq(verify(t, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "alice");
	cr_expect_eq(c.admin, 0);
	cr_expect_eq(c.exp, NOW + 3600);
	free(t);
}

Test(auth, admin_round_trip)
{
	struct auth_claims c;
	char *t = auth_sign(SECRET, "root", 1, NOW + 60);

	cr_assert_eq(verify(t, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "root");
	cr_expect_eq(c.admin, 1);
	free(t);
}

Test(auth, sign_makes_a_standard_header)
{
	char *t = auth_sign(SECRET, "alice", 0, 0);

	/* base64url of {"alg":"HS256","typ":"JWT"} */
	cr_expect(strncmp(t, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37) == 0,
	    "%s", t);
	cr_expect_null(strchr(t, '='));
	free(t);
}

Test(auth, expired_when_now_reaches_exp)
{
	struct auth_claims c;
	char *t = auth_sign(SECRET, "alice", 0, NOW);

	cr_expect_eq(verify(t, NOW - 1, &c), 0);
	cr_expect_eq(verify(t, NOW, &c), -1);
	cr_expect_eq(verify(t, NOW + 1000, &c), -1);
	free(t);
}

Test(auth, no_exp_never_expires)
{
	struct auth_claims c;
	char *t = auth_sign(SECRET, "alice", 0, 0);

	cr_assert_eq(verify(t, INT64_MAX, &c), 0);
	cr_expect_eq(c.exp, 0);
	free(t);
}

Test(auth, tampered_payload)
{
	char *a = auth_sign(SECRET, "alice", 0, 0);
	char *b = auth_sign(SECRET, "mallory", 1, 0);
	char *dot_a1 = strchr(a, '.'), *dot_a2 = strrchr(a, '.');
	char *dot_b1 = strchr(b, '.'), *dot_b2 = strrchr(b, '.');
	char forged[1024];

	/* mallory's admin payload under alice's signature */
	snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(dot_a1 - a), a,
	    (int)(dot_b2 - dot_b1), dot_b1, dot_a2);
	refused(forged);
	free(a);
	free(b);
}

Test(auth, tampered_signature)
{
	char *t = auth_sign(SECRET, "alice", 0, 0);
	size_t sig = (size_t)(strrchr(t, '.') - t) + 1;
	char *x = with_char(t, sig, t[sig] == 'A' ? 'B' : 'A');
	char *cut = strdup(t);

	refused(x);
	cut[strlen(cut) - 1] = '\0'; /* a signature one character short */
	refused(cut);
	free(x);
	free(cut);
	free(t);
}

Test(auth, wrong_secret)
{
	struct auth_claims c;
	char *t = auth_sign("another-secret", "alice", 0, 0);

	cr_expect_eq(verify(t, NOW, &c), -1);
	cr_expect_eq(auth_verify("another-secret", t, NOW, &c), 0);
	cr_expect_eq(auth_verify("", t, NOW, &c), -1);
	cr_expect_eq(auth_verify(NULL, t, NOW, &c), -1);
	free(t);
}

Test(auth, supabase_token_from_another_implementation)
{
	struct auth_claims c;

	cr_assert_eq(auth_verify(supabase_secret, supabase_token, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "8f14e45f-ceea-467e-a8f1-2d3b4c5e6f70");
	cr_expect_eq(c.admin, 0); /* role "authenticated" */
	cr_expect_eq(c.exp, 4102444800);
	cr_expect_eq(auth_verify(SECRET, supabase_token, NOW, &c), -1);
}

Test(auth, fractional_exp)
{
	struct auth_claims c;

	cr_assert_eq(auth_verify(supabase_secret, admin_real_exp, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "ops");
	cr_expect_eq(c.admin, 1);
	cr_expect_eq(c.exp, NOW);
	cr_expect_eq(
	    auth_verify(supabase_secret, admin_real_exp, NOW + 1, &c), -1);
	cr_expect_eq(verify(exp_real, NOW, &c), 0);
	cr_expect_eq(verify(exp_real, NOW + 1, &c), -1);
}

Test(auth, other_tokens_from_another_implementation)
{
	struct auth_claims c;

	cr_assert_eq(verify(no_typ, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "alice");
	cr_assert_eq(verify(valid_b, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "bob?>");
	cr_assert_eq(verify(utf8_sub, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "us\xc3\xa9r-\xe6\x9d\xb1\xe4\xba\xac");
	cr_assert_eq(verify(max_sub, NOW, &c), 0);
	cr_expect_eq(strlen(c.sub), AUTH_SUB_MAX - 1);
}

Test(auth, padding_is_accepted)
{
	struct auth_claims c;

	cr_assert_eq(verify(padded, NOW, &c), 0);
	cr_expect_str_eq(c.sub, "padd");
}

Test(auth, alg_none)
{
	refused(none_empty);
	refused(none_signed);
}

Test(auth, other_algorithms)
{
	refused(hs384);
	refused(hs384_with_256);
	refused(rs256_with_256);
	refused(lower_alg);
	refused(no_alg);
	refused(alg_array);
	refused(header_array);
}

Test(auth, bad_sub)
{
	refused(empty_sub);
	refused(num_sub);
	refused(null_sub);
	refused(no_sub);
	refused(ctrl_sub);
	refused(long_sub);
	refused(dup_sub);
}

Test(auth, bad_exp)
{
	refused(exp_string);
	refused(exp_null);
}

Test(auth, role_other_than_admin)
{
	struct auth_claims c;

	cr_assert_eq(verify(role_array, NOW, &c), 0);
	cr_expect_eq(c.admin, 0);
	cr_assert_eq(verify(role_case, NOW, &c), 0);
	cr_expect_eq(c.admin, 0);
}

Test(auth, bad_payload)
{
	refused(payload_array);
	refused(payload_junk);
}

Test(auth, strict_base64url)
{
	size_t n = strlen(valid_b);
	char *std = with_char(valid_b, n - 36, '/');  /* the '_' in the MAC */
	char *spare = with_char(valid_b, n - 1, 'Z'); /* same bytes, bit set */
	char *space = with_char(valid_b, n - 5, ' ');

	cr_assert_eq(valid_b[n - 36], '_');
	cr_assert_eq(valid_b[n - 1], 'Y');
	refused(std);
	refused(spare);
	refused(space);
	free(std);
	free(spare);
	free(space);
}

Test(auth, garbage)
{
	static const char *const junk[] = {"", ".", "..", "...", "a.b.c",
	    "Bearer x.y.z", "eyJhbGciOiJIUzI1NiJ9..", "{}.{}.{}",
	    "\xff.\xfe.\xfd", NULL};

	for (size_t i = 0; junk[i] != NULL; i++)
		refused(junk[i]);
	cr_expect_eq(verify(NULL, NOW, NULL), -1);
}

Test(auth, two_or_four_parts)
{
	char *t = auth_sign(SECRET, "alice", 0, 0);
	size_t n = strlen(t);
	char *two = strndup(t, (size_t)(strrchr(t, '.') - t));
	char *four = malloc(n + 3);
	char *trail = malloc(n + 2);

	snprintf(four, n + 3, "%s.x", t);
	snprintf(trail, n + 2, "%s.", t);
	refused(two);
	refused(four);
	refused(trail);
	free(two);
	free(four);
	free(trail);
	free(t);
}

Test(auth, huge_token)
{
	size_t n = 1 << 20;
	char *t = malloc(n + 1);

	memset(t, 'A', n);
	t[n / 3] = '.';
	t[2 * n / 3] = '.';
	t[n] = '\0';
	refused(t);
	free(t);
}

Test(auth, sign_refuses_bad_sub)
{
	char longsub[AUTH_SUB_MAX + 1];

	memset(longsub, 'x', AUTH_SUB_MAX);
	longsub[AUTH_SUB_MAX] = '\0';
	cr_expect_null(auth_sign(SECRET, "", 0, 0));
	cr_expect_null(auth_sign(SECRET, "a\tb", 0, 0));
	cr_expect_null(auth_sign(SECRET, "\xff\xfe", 0, 0));
	cr_expect_null(auth_sign(SECRET, longsub, 0, 0));
	cr_expect_null(auth_sign("", "alice", 0, 0));
}

/* ==== struct auth: ES256 / RS256 with a JWKS, and the claims' rules ==== */

#define ISS "https://abc.supabase.co/auth/v1"
#define AUD "authenticated"
#define HDR_ES "{\"alg\":\"ES256\",\"kid\":\"ec-1\",\"typ\":\"JWT\"}"
#define HDR_RS "{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"typ\":\"JWT\"}"
#define CLAIMS                                                                 \
	"{\"sub\":\"alice\",\"exp\":1700003600,\"iss\":\"" ISS                 \
	"\",\"aud\":\"" AUD "\"}"

/* A JWKS and two Supabase-shaped tokens (exp 2100, app_metadata.role
 * "admin") made by Node's crypto, R || S by dsaEncoding "ieee-p1363". */
#define NODE_EC_JWK                                                            \
	"{\"kty\":\"EC\",\"x\":\"gbAjFwOd-_a5nRu-"                             \
	"hhFk0dlyatmz97kZhK1LdV6JdNk\","                                       \
	"\"y\":\"seM94sUfJrMb2PsOn1pCsed1SwP2omHjnqZuXLH5Wrs\",\"crv\":\"P-"   \
	"256\","                                                               \
	"\"kid\":\"node-ec-1\",\"alg\":\"ES256\",\"use\":\"sig\"}"
#define NODE_RSA_JWK                                                           \
	"{\"kty\":\"RSA\",\"n\":\"xuQRVdhNRTZGz_d0-qSs7lTZHvJ5ywh-_"           \
	"pPLcH4CIqUMnt"                                                        \
	"QOv_uiZ1XBpaf2qqaPMUQD2TWMZkNRmjNQKFjriQZyZgG-JiYB8xMR2JXquuc-"       \
	"CkckvGnx"                                                             \
	"JX0WsLKxX_We4_t27lcs95v3MpU80nLqx2cO21frXTs2EYN43HqbyMl4O6LMbpZr-"    \
	"CIGT-"                                                                \
	"MZZmegDQvHheNZNTiW_"                                                  \
	"vh9hExdb4EKr9F0u26JJbZ3QAdFRbsX1fvugt2KT8WvzQ0ovFcl"                  \
	"wpPDHL5sM2M8raNayhcLIE9v0JxgoFNHvfOwlCcAml1LM_"                       \
	"4mG2M8Hsxjvj0fcmkiYUQ6sh"                                             \
	"Zm153wdm0IZd-6SQ\",\"e\":\"AQAB\",\"kid\":\"node-rsa-1\",\"alg\":"    \
	"\"RS256\",\"use\":\"sig\"}"
static const char node_jwks[] = "{\"keys\":[" NODE_EC_JWK "," NODE_RSA_JWK "]}";
static const char node_es256[] =
    "eyJhbGciOiJFUzI1NiIsImtpZCI6Im5vZGUtZWMtMSIsInR5cCI6IkpXVCJ9.eyJhdWQiO"
    "iJhdXRoZW50aWNhdGVkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsIml"
    "zcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjE0ZTQ1Z"
    "i1jZWVhLTQ2N2UtYThmMS0yZDNiNGM1ZTZmNzAiLCJlbWFpbCI6ImFsaWNlQGV4YW1wbGU"
    "uY29tIiwicm9sZSI6ImF1dGhlbnRpY2F0ZWQiLCJhcHBfbWV0YWRhdGEiOnsicHJvdmlkZ"
    "XIiOiJlbWFpbCIsInJvbGUiOiJhZG1pbiJ9LCJpc19hbm9ueW1vdXMiOmZhbHNlfQ.LvSR"
    "DGyTtk_fW8v5aLwLN37jaz7opOb01jCrJWFHqauLFiz5KKai8M1Ry4fL9zcEL-oav80pYO"
    "tXjfIWRBAIwQ";
static const char node_rs256[] =
    "eyJhbGciOiJSUzI1NiIsImtpZCI6Im5vZGUtcnNhLTEiLCJ0eXAiOiJKV1QifQ.eyJhdWQ"
    "iOiJhdXRoZW50aWNhdGVkIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsI"
    "mlzcyI6Imh0dHBzOi8vYWJjLnN1cGFiYXNlLmNvL2F1dGgvdjEiLCJzdWIiOiI4ZjE0ZTQ"
    "1Zi1jZWVhLTQ2N2UtYThmMS0yZDNiNGM1ZTZmNzAiLCJlbWFpbCI6ImFsaWNlQGV4YW1wb"
    "GUuY29tIiwicm9sZSI6ImF1dGhlbnRpY2F0ZWQiLCJhcHBfbWV0YWRhdGEiOnsicHJvdml"
    "kZXIiOiJlbWFpbCIsInJvbGUiOiJhZG1pbiJ9LCJpc19hbm9ueW1vdXMiOmZhbHNlfQ.gq"
    "9V9vJMZwjDJmdb8LgEpzN-1s2L0W2xed_wkgFNxmNv1_HROlfKE461OVepPk2kcSxIFPsL"
    "lcVdU9T2Pou3mlL_QmHOefqoOzyWBUTDCE6zR7DNUXoGGzk5zqMedFJizfSxuVktJhS9-d"
    "RRcKP3hgllQ6143VQwZlh8N-oOlWwei3qmkv2P9VorlrDoJJLbTO02TAI8uUxwObfxNlAj"
    "WhFkmmNYI17EPmrbXh9UutTG4CLp1-lTyTtbDLuNwf8ilHGkXwlQ1T9lfFi_PAAhPQ1b4K"
    "3Bp4wcGBeBY-zQFxhPHcAsgcUjWMT40W-TmVDkgq9o0Q7y8CskfHDwFQx5JQ";

/* ---- keys, JWKs and tokens made here ---- */

/* Unpadded base64url, by OpenSSL's encoder (not fila's); caller frees. */
static char *
b64u(const void *buf, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	int n = EVP_EncodeBlock((unsigned char *)out, buf, (int)len);

	for (int i = 0; i < n; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	while (n > 0 && out[n - 1] == '=')
		out[--n] = '\0';
	return out;
}

/* EC P-256 key i (0 or 1), made once per test process. */
static EVP_PKEY *
ec_key(int i)
{
	static EVP_PKEY *k[2];

	if (k[i] == NULL)
		k[i] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert_not_null(k[i]);
	return k[i];
}

/* An RSA key of bits (2048 or 1024), made once per test process. */
static EVP_PKEY *
rsa_key(size_t bits)
{
	static EVP_PKEY *k[2];
	int i = bits == 2048 ? 0 : 1;

	if (k[i] == NULL)
		k[i] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);
	cr_assert_not_null(k[i]);
	return k[i];
}

/* base64url of k's big-number parameter, left-padded to pad bytes. */
static char *
bn_b64u(const EVP_PKEY *k, const char *param, int pad)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	int n;

	cr_assert(EVP_PKEY_get_bn_param(k, param, &bn), "%s", param);
	n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	BN_free(bn);
	return b64u(buf, (size_t)n);
}

/* The public JWK of k, with kid, "use":"sig" and alg unless NULL. */
static json_t *
jwk(EVP_PKEY *k, const char *kid, const char *alg)
{
	json_t *o;
	char *a, *b;

	if (EVP_PKEY_is_a(k, "EC")) {
		a = bn_b64u(k, OSSL_PKEY_PARAM_EC_PUB_X, 32);
		b = bn_b64u(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
		o = json_pack("{s:s,s:s,s:s,s:s}", "kty", "EC", "crv", "P-256",
		    "x", a, "y", b);
	} else {
		a = bn_b64u(k, OSSL_PKEY_PARAM_RSA_N, 0);
		b = bn_b64u(k, OSSL_PKEY_PARAM_RSA_E, 0);
		o = json_pack("{s:s,s:s,s:s}", "kty", "RSA", "n", a, "e", b);
	}
	free(a);
	free(b);
	if (kid != NULL)
		json_object_set_new(o, "kid", json_string(kid));
	if (alg != NULL)
		json_object_set_new(o, "alg", json_string(alg));
	json_object_set_new(o, "use", json_string("sig"));
	return o;
}

/* {"keys": keys} as text (keys stolen); the caller frees it. */
static char *
jwks_text(json_t *keys)
{
	json_t *doc = json_pack("{s:o}", "keys", keys);
	char *s = json_dumps(doc, JSON_COMPACT);

	json_decref(doc);
	return s;
}

/* The standard set: ec-1 (ES256) and rsa-1 (RS256). */
static char *
std_jwks(void)
{
	return jwks_text(json_pack("[o,o]", jwk(ec_key(0), "ec-1", "ES256"),
	    jwk(rsa_key(2048), "rsa-1", "RS256")));
}

/* base64url(header) "." base64url(payload) "." base64url(sig). */
static char *
join(const char *signing, const unsigned char *sig, size_t siglen)
{
	char *s = b64u(sig, siglen);
	size_t n = strlen(signing) + strlen(s) + 2;
	char *t = malloc(n);

	snprintf(t, n, "%s.%s", signing, s);
	free(s);
	return t;
}

static char *
signing_input(const char *header, const char *payload)
{
	char *h = b64u(header, strlen(header));
	char *p = b64u(payload, strlen(payload));
	size_t n = strlen(h) + strlen(p) + 2;
	char *s = malloc(n);

	snprintf(s, n, "%s.%s", h, p);
	free(h);
	free(p);
	return s;
}

/* An ECDSA signature from DER to JOSE's R || S, in place: 64. */
static size_t
der_to_rs(unsigned char *sig, size_t len)
{
	const unsigned char *p = sig;
	ECDSA_SIG *s = d2i_ECDSA_SIG(NULL, &p, (long)len);

	cr_assert_not_null(s);
	BN_bn2binpad(ECDSA_SIG_get0_r(s), sig, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(s), sig + 32, 32);
	ECDSA_SIG_free(s);
	return 64;
}

/* A token of header and payload signed with k (SHA-256): an EC signature
 * as R || S unless der; the caller frees it. */
static char *
sign_der(EVP_PKEY *k, const char *header, const char *payload, int der)
{
	char *in = signing_input(header, payload), *t;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char sig[1024];
	size_t n = sizeof(sig);

	cr_assert_eq(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
	cr_assert_eq(
	    EVP_DigestSign(md, sig, &n, (unsigned char *)in, strlen(in)), 1);
	EVP_MD_CTX_free(md);
	if (EVP_PKEY_is_a(k, "EC") && !der)
		n = der_to_rs(sig, n);
	t = join(in, sig, n);
	free(in);
	return t;
}

static char *
sign(EVP_PKEY *k, const char *header, const char *payload)
{
	return sign_der(k, header, payload, 0);
}

/* An HS256 token of header and payload whose HMAC key is key. */
static char *
sign_hmac(
    const void *key, size_t keylen, const char *header, const char *payload)
{
	char *in = signing_input(header, payload), *t;
	unsigned char mac[32];
	size_t n = 0;

	cr_assert_not_null(EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key,
	    keylen, (unsigned char *)in, strlen(in), mac, sizeof(mac), &n));
	t = join(in, mac, n);
	free(in);
	return t;
}

/* ---- the verifier of a test ---- */

static struct auth *A; /* secret, issuer, audience, need_exp; std keys */

static struct auth *
auth_with(const struct auth_opts *o, const char *jwks)
{
	char err[256] = "";
	struct auth *a = auth_new(o);

	cr_assert_not_null(a);
	if (jwks != NULL)
		cr_assert_eq(
		    auth_set_keys(a, jwks, strlen(jwks), err, sizeof(err)), 0,
		    "%s", err);
	return a;
}

static void
jwt_setup(void)
{
	struct auth_opts o = {
	    .secret = SECRET, .issuer = ISS, .audience = AUD, .need_exp = 1};
	char *doc = std_jwks();

	A = auth_with(&o, doc);
	free(doc);
	cr_assert_eq(auth_nkeys(A), 2);
}

static void
jwt_teardown(void)
{
	auth_free(A);
	A = NULL;
}

TestSuite(jwt, .init = jwt_setup, .fini = jwt_teardown);

/* auth_check of token (freed) at NOW with A; c may be NULL. */
static enum auth_rc
judge(char *token, struct auth_claims *c)
{
	enum auth_rc rc = auth_check(A, token, NOW, c);

	free(token);
	return rc;
}

/* A's verdict on payload signed with ec-1 and with rsa-1: both the same. */
static enum auth_rc
judge_both(const char *payload)
{
	enum auth_rc es = judge(sign(ec_key(0), HDR_ES, payload), NULL);
	enum auth_rc rs = judge(sign(rsa_key(2048), HDR_RS, payload), NULL);

	cr_expect_eq(es, rs, "ES256 %d, RS256 %d: %s", es, rs, payload);
	return es;
}

/* The claims payload with exp replaced by the members in more. */
static char *
claims_with(const char *more)
{
	char *p = malloc(strlen(more) + 128);

	sprintf(p,
	    "{\"sub\":\"alice\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"%s%s}",
	    *more ? "," : "", more);
	return p;
}

static enum auth_rc
judge_claims(const char *more)
{
	char *p = claims_with(more);
	enum auth_rc rc = judge_both(p);

	free(p);
	return rc;
}

Test(jwt, es256_good)
{
	struct auth_claims c;

	/* Many tokens: some R or S has leading zero bytes. */
	for (int i = 0; i < 64; i++) {
		char payload[160];
		snprintf(payload, sizeof(payload),
		    "{\"sub\":\"alice-%d\",\"exp\":%d,\"iss\":\"" ISS
		    "\",\"aud\":\"" AUD "\"}",
		    i, NOW + 3600);
		memset(&c, 0x5a, sizeof(c));
		cr_assert_eq(judge(sign(ec_key(0), HDR_ES, payload), &c),
		    AUTH_OK, "%s", auth_why(A));
		cr_expect_eq(strncmp(c.sub, "alice-", 6), 0);
		cr_expect_eq(c.admin, 0);
		cr_expect_eq(c.exp, NOW + 3600);
	}
	cr_expect_str_eq(auth_why(A), "");
}

Test(jwt, rs256_good)
{
	struct auth_claims c;

	cr_assert_eq(judge(sign(rsa_key(2048), HDR_RS, CLAIMS), &c), AUTH_OK,
	    "%s", auth_why(A));
	cr_expect_str_eq(c.sub, "alice");
	cr_expect_eq(c.admin, 0);
	cr_expect_eq(c.exp, NOW + 3600);
}

Test(jwt, tokens_and_jwks_from_another_implementation)
{
	struct auth_opts o = {.issuer = ISS, .audience = AUD, .need_exp = 1};
	struct auth *a = auth_with(&o, node_jwks);
	struct auth_claims c;

	cr_assert_eq(auth_nkeys(a), 2);
	cr_assert_eq(
	    auth_check(a, node_es256, NOW, &c), AUTH_OK, "%s", auth_why(a));
	cr_expect_str_eq(c.sub, "8f14e45f-ceea-467e-a8f1-2d3b4c5e6f70");
	cr_expect_eq(c.admin, 1); /* app_metadata.role */
	cr_expect_eq(c.exp, 4102444800);
	cr_assert_eq(
	    auth_check(a, node_rs256, NOW, &c), AUTH_OK, "%s", auth_why(a));
	cr_expect_str_eq(c.sub, "8f14e45f-ceea-467e-a8f1-2d3b4c5e6f70");
	/* Someone else's keys. */
	cr_expect_eq(auth_check(A, node_es256, NOW, &c), AUTH_UNKNOWN_KID);
	auth_free(a);
}

Test(jwt, unknown_kid)
{
	/* A well-formed token under a kid not in the set: worth a refetch. */
	cr_expect_eq(judge(sign(ec_key(0),
	                       "{\"alg\":\"ES256\",\"kid\":\"ec-9\"}", CLAIMS),
	                 NULL),
	    AUTH_UNKNOWN_KID);
	cr_expect_eq(judge(sign(rsa_key(2048),
	                       "{\"alg\":\"RS256\",\"kid\":\"rsa-9\"}", CLAIMS),
	                 NULL),
	    AUTH_UNKNOWN_KID);
	cr_expect_str_eq(auth_why(A), "unknown kid");
	/* Not worth one: no kid, an empty or non-string kid, junk. */
	cr_expect_eq(
	    judge(sign(ec_key(0), "{\"alg\":\"ES256\"}", CLAIMS), NULL),
	    AUTH_BAD);
	cr_expect_eq(
	    judge(sign(ec_key(0), "{\"alg\":\"ES256\",\"kid\":\"\"}", CLAIMS),
	        NULL),
	    AUTH_BAD);
	cr_expect_eq(
	    judge(
	        sign(ec_key(0), "{\"alg\":\"ES256\",\"kid\":7}", CLAIMS), NULL),
	    AUTH_BAD);
	cr_expect_eq(
	    judge(sign(ec_key(0), "{\"alg\":\"ES256\",\"kid\":\"ec-9\"}",
	              "[\"alice\"]"),
	        NULL),
	    AUTH_BAD);
	cr_expect_eq(
	    auth_check(
	        A, "eyJhbGciOiJFUzI1NiIsImtpZCI6ImVjLTkifQ.e30.***", NOW, NULL),
	    AUTH_BAD);
}

Test(jwt, no_keys_yet)
{
	struct auth_opts o = {.need_exp = 1};
	struct auth *a = auth_with(&o, NULL);

	cr_expect_eq(auth_nkeys(a), 0);
	cr_expect_eq(auth_check(a, node_es256, NOW, NULL), AUTH_UNKNOWN_KID);
	cr_expect_eq(auth_check(a, node_rs256, NOW, NULL), AUTH_UNKNOWN_KID);
	auth_free(a);
}

Test(jwt, the_key_decides_the_algorithm)
{
	/* RS256 under the EC key's kid, ES256 under the RSA key's. */
	cr_expect_eq(judge(sign(rsa_key(2048),
	                       "{\"alg\":\"RS256\",\"kid\":\"ec-1\"}", CLAIMS),
	                 NULL),
	    AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "alg is not the key's");
	cr_expect_eq(judge(sign(ec_key(0),
	                       "{\"alg\":\"ES256\",\"kid\":\"rsa-1\"}", CLAIMS),
	                 NULL),
	    AUTH_BAD);
	/* Other algorithms the keys could be used with. */
	cr_expect_eq(judge(sign(ec_key(0),
	                       "{\"alg\":\"ES384\",\"kid\":\"ec-1\"}", CLAIMS),
	                 NULL),
	    AUTH_BAD);
	cr_expect_eq(judge(sign(rsa_key(2048),
	                       "{\"alg\":\"PS256\",\"kid\":\"rsa-1\"}", CLAIMS),
	                 NULL),
	    AUTH_BAD);
	cr_expect_eq(judge(sign(rsa_key(2048),
	                       "{\"alg\":\"RS512\",\"kid\":\"rsa-1\"}", CLAIMS),
	                 NULL),
	    AUTH_BAD);
}

Test(jwt, signature_of_another_key_or_shape)
{
	char *t = sign(ec_key(0), HDR_ES, CLAIMS);
	size_t n = strlen(t);

	/* The right kid, the wrong private key. */
	cr_expect_eq(judge(sign(ec_key(1), HDR_ES, CLAIMS), NULL), AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "bad signature");
	/* ES256 as DER, as OpenSSL makes it, is not JOSE's R || S. */
	cr_expect_eq(
	    judge(sign_der(ec_key(0), HDR_ES, CLAIMS, 1), NULL), AUTH_BAD);
	/* One character less: 63 bytes and spare bits. */
	t[n - 1] = '\0';
	cr_expect_eq(auth_check(A, t, NOW, NULL), AUTH_BAD);
	free(t);
	t = sign(rsa_key(2048), HDR_RS, CLAIMS);
	t[strlen(t) - 4] = '\0'; /* 3 bytes short */
	cr_expect_eq(judge(t, NULL), AUTH_BAD);
	/* The payload changed under a good signature. */
	t = sign(ec_key(0), HDR_ES, CLAIMS);
	{
		char *p = strchr(t, '.') + 1;
		*p = *p == 'e' ? 'f' : 'e';
	}
	cr_expect_eq(judge(t, NULL), AUTH_BAD);
}

Test(jwt, alg_none)
{
	static const char *const headers[] = {
	    "{\"alg\":\"none\",\"kid\":\"ec-1\"}",
	    "{\"alg\":\"none\"}",
	    "{\"alg\":\"None\",\"kid\":\"rsa-1\"}",
	    "{\"alg\":\"\",\"kid\":\"ec-1\"}",
	};

	for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
		char *in = signing_input(headers[i], CLAIMS);
		char *empty = malloc(strlen(in) + 2);

		sprintf(empty, "%s.", in);
		cr_expect_eq(judge(empty, NULL), AUTH_BAD, "%s", headers[i]);
		cr_expect_eq(judge(sign(ec_key(0), headers[i], CLAIMS), NULL),
		    AUTH_BAD, "%s", headers[i]);
		free(in);
	}
}

Test(jwt, crit_header_is_refused)
{
	cr_expect_eq(judge(sign(ec_key(0),
	                       "{\"alg\":\"ES256\",\"kid\":\"ec-1\","
	                       "\"crit\":[\"b64\"],\"b64\":false}",
	                       CLAIMS),
	                 NULL),
	    AUTH_BAD);
}

/* The classic forgery: HS256 "signed" with the public key's bytes, for a
 * verifier that would take the key named by kid as the HMAC key. */
static void
forge_with(const void *key, size_t len, const char *kid)
{
	char header[96];
	struct auth_opts none = {.issuer = ISS, .audience = AUD};
	char *doc = std_jwks();
	struct auth *b = auth_with(&none, doc);
	char *t;

	snprintf(header, sizeof(header),
	    "{\"alg\":\"HS256\",\"kid\":\"%s\",\"typ\":\"JWT\"}", kid);
	t = sign_hmac(key, len, header, CLAIMS);
	cr_expect_eq(auth_check(A, t, NOW, NULL), AUTH_BAD, "with secret");
	cr_expect_eq(auth_check(b, t, NOW, NULL), AUTH_BAD, "without secret");
	cr_expect_str_eq(auth_why(b), "HS256 without a secret");
	free(t);
	auth_free(b);
	free(doc);
}

static char *
pem_of(EVP_PKEY *k, size_t *len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data, *out;

	cr_assert_eq(PEM_write_bio_PUBKEY(bio, k), 1);
	*len = (size_t)BIO_get_mem_data(bio, &data);
	out = malloc(*len + 1);
	memcpy(out, data, *len);
	out[*len] = '\0';
	BIO_free(bio);
	return out;
}

Test(jwt, hs256_signed_with_a_public_key)
{
	size_t n;
	char *pem = pem_of(ec_key(0), &n);
	json_t *ec = jwk(ec_key(0), "ec-1", "ES256");
	char *ec_json = json_dumps(ec, JSON_COMPACT);
	char *rsa_pem = pem_of(rsa_key(2048), &n);
	char *t;

	forge_with(pem, strlen(pem), "ec-1");
	forge_with(ec_json, strlen(ec_json), "ec-1");
	forge_with(rsa_pem, strlen(rsa_pem), "rsa-1");
	/* The same forging, keyed with the secret, is a good token: the
	 * refusals above are the key's doing, not the forger's. */
	t = sign_hmac(SECRET, strlen(SECRET),
	    "{\"alg\":\"HS256\",\"kid\":\"ec-1\",\"typ\":\"JWT\"}", CLAIMS);
	cr_expect_eq(judge(t, NULL), AUTH_OK, "%s", auth_why(A));
	free(pem);
	free(rsa_pem);
	free(ec_json);
	json_decref(ec);
}

Test(jwt, expired_with_skew)
{
	char more[64];

	snprintf(more, sizeof(more), "\"exp\":%d", NOW - 31);
	cr_expect_eq(judge_claims(more), AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "expired");
	snprintf(more, sizeof(more), "\"exp\":%d", NOW - 30);
	cr_expect_eq(judge_claims(more), AUTH_BAD);
	snprintf(more, sizeof(more), "\"exp\":%d", NOW - 29);
	cr_expect_eq(judge_claims(more), AUTH_OK);
	snprintf(more, sizeof(more), "\"exp\":%d.5", NOW - 30);
	cr_expect_eq(judge_claims(more), AUTH_OK);
	cr_expect_eq(judge_claims("\"exp\":\"4102444800\""), AUTH_BAD);
	cr_expect_eq(judge_claims("\"exp\":null"), AUTH_BAD);
	cr_expect_eq(judge_claims("\"exp\":-9223372036854775807"), AUTH_BAD);
	cr_expect_eq(judge_claims("\"exp\":9223372036854775807"), AUTH_OK);
}

Test(jwt, exp_required_with_need_exp)
{
	struct auth_opts o = {.secret = SECRET};
	char *doc = std_jwks();
	struct auth *b = auth_with(&o, doc);
	char *p = claims_with("");
	char *es = sign(ec_key(0), HDR_ES, p);
	char *hs = auth_token(A, "alice", 0, 0);

	cr_expect_eq(auth_check(A, es, NOW, NULL), AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "no exp, or not a number");
	cr_expect_eq(auth_check(A, hs, NOW, NULL), AUTH_BAD);
	cr_expect_eq(auth_check(b, es, NOW, NULL), AUTH_OK, "%s", auth_why(b));
	cr_expect_eq(auth_check(b, hs, NOW, NULL), AUTH_OK, "%s", auth_why(b));
	free(es);
	free(hs);
	free(p);
	free(doc);
	auth_free(b);
}

Test(jwt, nbf_with_skew)
{
	char more[96];

	snprintf(
	    more, sizeof(more), "\"exp\":%d,\"nbf\":%d", NOW + 3600, NOW + 31);
	cr_expect_eq(judge_claims(more), AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "not valid yet (nbf)");
	snprintf(more, sizeof(more), "\"exp\":%d,\"nbf\":%d.5", NOW + 3600,
	    NOW + 30);
	cr_expect_eq(judge_claims(more), AUTH_BAD);
	snprintf(
	    more, sizeof(more), "\"exp\":%d,\"nbf\":%d", NOW + 3600, NOW + 30);
	cr_expect_eq(judge_claims(more), AUTH_OK);
	snprintf(
	    more, sizeof(more), "\"exp\":%d,\"nbf\":%d", NOW + 3600, NOW + 5);
	cr_expect_eq(judge_claims(more), AUTH_OK);
	snprintf(more, sizeof(more), "\"exp\":%d,\"nbf\":%d", NOW + 3600,
	    NOW - 1000);
	cr_expect_eq(judge_claims(more), AUTH_OK);
	snprintf(more, sizeof(more), "\"exp\":%d,\"nbf\":\"0\"", NOW + 3600);
	cr_expect_eq(judge_claims(more), AUTH_BAD);
	snprintf(more, sizeof(more), "\"exp\":%d,\"nbf\":-9223372036854775807",
	    NOW + 3600);
	cr_expect_eq(judge_claims(more), AUTH_OK);
}

/* A payload for A with exp, and iss and aud as given (NULL: absent). */
static enum auth_rc
judge_iss_aud(const char *iss, const char *aud)
{
	char p[512];

	snprintf(p, sizeof(p), "{\"sub\":\"alice\",\"exp\":%d%s%s%s%s}",
	    NOW + 60, iss ? ",\"iss\":" : "", iss ? iss : "",
	    aud ? ",\"aud\":" : "", aud ? aud : "");
	return judge_both(p);
}

Test(jwt, issuer)
{
	cr_expect_eq(judge_iss_aud("\"" ISS "\"", "\"" AUD "\""), AUTH_OK);
	cr_expect_eq(judge_iss_aud(
	                 "\"https://evil.supabase.co/auth/v1\"", "\"" AUD "\""),
	    AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "wrong iss");
	cr_expect_eq(judge_iss_aud("\"" ISS "/\"", "\"" AUD "\""), AUTH_BAD);
	cr_expect_eq(judge_iss_aud("[\"" ISS "\"]", "\"" AUD "\""), AUTH_BAD);
	cr_expect_eq(judge_iss_aud(NULL, "\"" AUD "\""), AUTH_BAD);
}

Test(jwt, audience)
{
	cr_expect_eq(judge_iss_aud("\"" ISS "\"", "\"anon\""), AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "wrong aud");
	cr_expect_eq(
	    judge_iss_aud("\"" ISS "\"", "[\"anon\",\"other\"]"), AUTH_BAD);
	cr_expect_eq(judge_iss_aud("\"" ISS "\"", "[]"), AUTH_BAD);
	cr_expect_eq(judge_iss_aud("\"" ISS "\"", NULL), AUTH_BAD);
	cr_expect_eq(
	    judge_iss_aud("\"" ISS "\"", "\"Authenticated\""), AUTH_BAD);
	cr_expect_eq(
	    judge_iss_aud("\"" ISS "\"", "[\"anon\",\"" AUD "\"]"), AUTH_OK);
	cr_expect_eq(judge_iss_aud("\"" ISS "\"", "[7,\"" AUD "\"]"), AUTH_OK);
}

Test(jwt, iss_and_aud_unchecked_when_not_set)
{
	struct auth_opts o = {.need_exp = 1};
	char *doc = std_jwks();
	struct auth *b = auth_with(&o, doc);
	char p[128];
	char *t;

	snprintf(p, sizeof(p),
	    "{\"sub\":\"alice\",\"exp\":%d,\"iss\":42,\"aud\":[\"x\"]}",
	    NOW + 60);
	t = sign(ec_key(0), HDR_ES, p);
	cr_expect_eq(auth_check(b, t, NOW, NULL), AUTH_OK, "%s", auth_why(b));
	free(t);
	free(doc);
	auth_free(b);
}

/* Is the token of payload member more (signed with ec-1) admin for a? */
static int
admin_of(struct auth *a, const char *more)
{
	struct auth_claims c;
	char p[256];
	char *t;

	snprintf(
	    p, sizeof(p), "{\"sub\":\"alice\",\"exp\":%d,%s}", NOW + 60, more);
	t = sign(ec_key(0), HDR_ES, p);
	cr_assert_eq(auth_check(a, t, NOW, &c), AUTH_OK, "%s", auth_why(a));
	free(t);
	return c.admin;
}

Test(jwt, admin_role)
{
	struct auth_opts o = {.admin_role = "ops"};
	char *doc = std_jwks();
	struct auth *ops = auth_with(&o, doc);
	struct auth_opts d = {0};
	struct auth *def = auth_with(&d, doc);

	cr_expect_eq(admin_of(def, "\"role\":\"admin\""), 1);
	cr_expect_eq(admin_of(def, "\"app_metadata\":{\"role\":\"admin\"}"), 1);
	cr_expect_eq(admin_of(def, "\"role\":\"authenticated\""), 0);
	cr_expect_eq(
	    admin_of(def, "\"user_metadata\":{\"role\":\"admin\"}"), 0);
	cr_expect_eq(
	    admin_of(def, "\"app_metadata\":{\"roles\":[\"admin\"]}"), 0);
	cr_expect_eq(admin_of(def, "\"app_metadata\":\"admin\""), 0);
	cr_expect_eq(admin_of(ops, "\"role\":\"ops\""), 1);
	cr_expect_eq(admin_of(ops, "\"app_metadata\":{\"role\":\"ops\"}"), 1);
	cr_expect_eq(admin_of(ops, "\"role\":\"admin\""), 0);
	auth_free(ops);
	auth_free(def);
	free(doc);
}

/* A's verdict on a token for sub, both algorithms. */
static enum auth_rc
judge_sub(const char *sub)
{
	json_t *p = json_pack("{s:s,s:i,s:s,s:s}", "sub", sub, "exp", NOW + 60,
	    "iss", ISS, "aud", AUD);
	char *text = json_dumps(p, JSON_COMPACT);
	enum auth_rc rc = judge_both(text);

	free(text);
	json_decref(p);
	return rc;
}

Test(jwt, bidi_and_control_characters_in_sub)
{
	static const char *const bad[] = {
	    "ali\xe2\x80\xae"
	    "ecila", /* U+202E RLO */
	    "\xe2\x80\xaa"
	    "x",             /* U+202A LRE */
	    "x\xe2\x81\xa6", /* U+2066 LRI */
	    "x\xe2\x81\xa9", /* U+2069 PDI */
	    "x\xe2\x80\x8e", /* U+200E LRM */
	    "x\xe2\x80\x8f", /* U+200F RLM */
	    "x\xd8\x9c",     /* U+061C ALM */
	    "x\xc2\x85",     /* U+0085 NEL, a C1 control */
	    "x\x7f",         /* DEL */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(judge_sub(bad[i]), AUTH_BAD, "sub %zu", i);
		cr_expect_null(auth_token(A, bad[i], 0, NOW + 60), "%zu", i);
		cr_expect_null(auth_sign(SECRET, bad[i], 0, 0), "%zu", i);
	}
	/* Their neighbours are fine: U+2010 hyphen, U+200D joiner, U+00A0. */
	cr_expect_eq(judge_sub("a\xe2\x80\x90"
	                       "b"),
	    AUTH_OK);
	cr_expect_eq(judge_sub("a\xe2\x80\x8d"
	                       "b"),
	    AUTH_OK);
	cr_expect_eq(judge_sub("a\xc2\xa0"
	                       "b"),
	    AUTH_OK);
}

Test(jwt, sub_rules_hold_for_every_algorithm)
{
	char big_sub[AUTH_SUB_MAX + 1];

	memset(big_sub, 'x', AUTH_SUB_MAX);
	big_sub[AUTH_SUB_MAX] = '\0';
	cr_expect_eq(judge_sub(big_sub), AUTH_BAD);
	big_sub[AUTH_SUB_MAX - 1] = '\0';
	cr_expect_eq(judge_sub(big_sub), AUTH_OK);
	cr_expect_eq(judge_sub(""), AUTH_BAD);
	cr_expect_eq(judge_sub("a\tb"), AUTH_BAD);
	cr_expect_eq(judge_both("{\"sub\":\"a\\u0000b\",\"exp\":1700003600,"
	                        "\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"}"),
	    AUTH_BAD);
	cr_expect_eq(judge_both("{\"sub\":42,\"exp\":1700003600,"
	                        "\"iss\":\"" ISS "\",\"aud\":\"" AUD "\"}"),
	    AUTH_BAD);
}

/* ---- key sets ---- */

static int
set_keys(struct auth *a, const char *doc, char *err, size_t errlen)
{
	return auth_set_keys(a, doc, strlen(doc), err, errlen);
}

Test(jwt, a_jwks_that_does_not_parse_keeps_the_old_keys)
{
	static const char *const bad[] = {
	    "",
	    "not json",
	    "{\"keys\":{}}",
	    "[]",
	    "{\"keys\":[]}",
	    "{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"kid\":\"ec-1\"}]"
	    "}",
	    "{\"keys\":[1,\"x\",null]}",
	    "{\"keys\":[], \"keys\":[]}",
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		cr_expect_eq(
		    set_keys(A, bad[i], err, sizeof(err)), -1, "%s", bad[i]);
		cr_expect_neq(err[0], '\0', "no error text for %s", bad[i]);
		cr_expect_eq(auth_nkeys(A), 2);
	}
	cr_expect_eq(auth_set_keys(A, NULL, 0, err, sizeof(err)), -1);
	cr_expect_eq(judge(sign(ec_key(0), HDR_ES, CLAIMS), NULL), AUTH_OK);
	cr_expect_eq(judge(sign(rsa_key(2048), HDR_RS, CLAIMS), NULL), AUTH_OK);
}

Test(jwt, key_rotation)
{
	char *two = jwks_text(json_pack("[o,o]", jwk(ec_key(0), "ec-1", NULL),
	    jwk(ec_key(1), "ec-2", "ES256")));
	char *one = jwks_text(json_pack("[o]", jwk(ec_key(1), "ec-2", NULL)));
	const char *hdr2 = "{\"alg\":\"ES256\",\"kid\":\"ec-2\"}";
	char err[256];

	cr_expect_eq(
	    judge(sign(ec_key(1), hdr2, CLAIMS), NULL), AUTH_UNKNOWN_KID);
	/* The new key published next to the old one: both verify. */
	cr_assert_eq(set_keys(A, two, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(auth_nkeys(A), 2);
	cr_expect_eq(judge(sign(ec_key(0), HDR_ES, CLAIMS), NULL), AUTH_OK);
	cr_expect_eq(judge(sign(ec_key(1), hdr2, CLAIMS), NULL), AUTH_OK);
	cr_expect_eq(
	    judge(sign(rsa_key(2048), HDR_RS, CLAIMS), NULL), AUTH_UNKNOWN_KID);
	/* The old one retired. */
	cr_assert_eq(set_keys(A, one, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(auth_nkeys(A), 1);
	cr_expect_eq(
	    judge(sign(ec_key(0), HDR_ES, CLAIMS), NULL), AUTH_UNKNOWN_KID);
	cr_expect_eq(judge(sign(ec_key(1), hdr2, CLAIMS), NULL), AUTH_OK);
	free(two);
	free(one);
}

/*
 * A token accepted once is kept (struct auth's cache): the same token again
 * gets the same claims, is judged again at each moment (expired is
 * expired), a retired key's token is refused at once, and a token that
 * differs from a kept one in any byte is checked as new.
 */
Test(jwt, a_kept_token_is_judged_again_each_time)
{
	char *t = sign(ec_key(0), HDR_ES, CLAIMS);
	char *one = jwks_text(json_pack("[o]", jwk(ec_key(1), "ec-2", NULL)));
	size_t dot1 = (size_t)(strchr(t, '.') - t), len = strlen(t);
	struct auth_claims c;
	char err[256];
	char *x;

	for (int i = 0; i < 3; i++) {
		memset(&c, 0x5a, sizeof(c));
		cr_assert_eq(auth_check(A, t, NOW, &c), AUTH_OK);
		cr_expect_str_eq(c.sub, "alice");
		cr_expect_eq(c.exp, 1700003600);
		cr_expect_eq(c.admin, 0);
	}
	/* exp is 1700003600, with 30 s of skew. */
	cr_expect_eq(auth_check(A, t, 1700003629, NULL), AUTH_OK);
	cr_expect_eq(auth_check(A, t, 1700003630, NULL), AUTH_BAD);
	cr_expect_str_eq(auth_why(A), "expired");
	cr_expect_eq(auth_check(A, t, NOW, NULL), AUTH_OK);
	/* Another payload under the kept signature, and the kept payload
	 * under another signature: neither is the kept token. */
	x = with_char(t, dot1 + 2, t[dot1 + 2] == 'A' ? 'B' : 'A');
	cr_expect_eq(auth_check(A, x, NOW, NULL), AUTH_BAD);
	free(x);
	x = with_char(t, len - 3, t[len - 3] == 'A' ? 'B' : 'A');
	cr_expect_eq(auth_check(A, x, NOW, NULL), AUTH_BAD);
	free(x);
	/* Its key retired: refused, kept or not. */
	cr_assert_eq(set_keys(A, one, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(auth_check(A, t, NOW, NULL), AUTH_UNKNOWN_KID);
	free(one);
	free(t);
}

/* Many users' tokens, each used again: every one keeps its own claims,
 * whichever were kept and whichever were pushed out. */
Test(jwt, many_kept_tokens_keep_their_own_claims)
{
	enum { N = 3000 };
	static char *t[N];
	struct auth_claims c;

	for (int i = 0; i < N; i++) {
		char claims[256];
		snprintf(claims, sizeof(claims),
		    "{\"sub\":\"user%d\",\"exp\":1700003600,\"iss\":\"" ISS
		    "\",\"aud\":\"" AUD "\"}",
		    i);
		t[i] = sign_hmac(SECRET, strlen(SECRET),
		    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", claims);
		cr_assert_eq(auth_check(A, t[i], NOW, NULL), AUTH_OK);
	}
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < N; i++) {
			char want[32];
			snprintf(want, sizeof(want), "user%d", i);
			cr_assert_eq(auth_check(A, t[i], NOW, &c), AUTH_OK);
			cr_assert_str_eq(c.sub, want);
		}
	for (int i = 0; i < N; i++)
		free(t[i]);
}

/* jwk with member name set to value (a JSON text; NULL: removed). */
static json_t *
jwk_edit(json_t *k, const char *name, const char *value)
{
	if (value == NULL)
		json_object_del(k, name);
	else
		json_object_set_new(
		    k, name, json_loads(value, JSON_DECODE_ANY, NULL));
	return k;
}

/* k with its y coordinate's last byte changed: off the curve. */
static json_t *
jwk_off_curve(json_t *k)
{
	size_t n;
	const char *y = json_string_value(json_object_get(k, "y"));
	char *copy = strdup(y);

	n = strlen(copy);
	copy[n - 2] = copy[n - 2] == 'A' ? 'B' : 'A';
	json_object_set_new(k, "y", json_string(copy));
	free(copy);
	return k;
}

Test(jwt, unusable_keys_are_skipped)
{
	json_t *keys = json_pack("[o,o,o,o,o,o,o,o,o,o,o,o,o,o,o]",
	    jwk_edit(jwk(ec_key(1), "p384", NULL), "crv", "\"P-384\""),
	    jwk(ec_key(1), "ec-as-rs", "RS256"),
	    jwk(rsa_key(2048), "rsa-as-es", "ES256"),
	    jwk(rsa_key(2048), "rsa-ps", "PS256"),
	    jwk_edit(jwk(ec_key(1), "enc", NULL), "use", "\"enc\""),
	    json_pack(
	        "{s:s,s:s,s:s}", "kty", "oct", "k", "c2VjcmV0", "kid", "oct"),
	    jwk(ec_key(1), NULL, "ES256"),
	    jwk_edit(jwk(ec_key(1), "short-x", NULL), "x",
	        "\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""),
	    jwk_off_curve(jwk(ec_key(1), "off-curve", NULL)),
	    jwk(rsa_key(1024), "rsa-1024", "RS256"),
	    jwk_edit(jwk(ec_key(1), "bad-b64", NULL), "x", "\"***\""),
	    jwk_edit(jwk(rsa_key(2048), "no-e", NULL), "e", NULL),
	    json_integer(42), jwk(ec_key(0), "good", "ES256"),
	    jwk(ec_key(1), "good", "ES256")); /* a second "good": ignored */
	char *doc = jwks_text(keys);
	char err[256];
	const char *h = "{\"alg\":\"ES256\",\"kid\":\"good\"}";

	cr_assert_eq(set_keys(A, doc, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(auth_nkeys(A), 1, "%zu keys of %s", auth_nkeys(A), doc);
	cr_expect_eq(judge(sign(ec_key(0), h, CLAIMS), NULL), AUTH_OK);
	cr_expect_eq(judge(sign(ec_key(1), h, CLAIMS), NULL), AUTH_BAD);
	cr_expect_eq(
	    judge(sign(ec_key(1), "{\"alg\":\"ES256\",\"kid\":\"off-curve\"}",
	              CLAIMS),
	        NULL),
	    AUTH_UNKNOWN_KID);
	free(doc);
}

/* ---- HS256 through struct auth ---- */

Test(jwt, hs256_with_the_secret)
{
	struct auth_opts o = {.secret = SECRET, .need_exp = 1};
	struct auth *b = auth_with(&o, NULL);
	struct auth_claims c;
	char *t = auth_token(b, "alice", 1, NOW + 60);

	cr_assert_not_null(t);
	cr_assert_eq(auth_check(b, t, NOW, &c), AUTH_OK, "%s", auth_why(b));
	cr_expect_str_eq(c.sub, "alice");
	cr_expect_eq(c.admin, 1);
	cr_expect_eq(c.exp, NOW + 60);
	/* 30 s of skew, unlike auth_verify. */
	cr_expect_eq(auth_check(b, t, NOW + 89, &c), AUTH_OK);
	cr_expect_eq(auth_check(b, t, NOW + 90, &c), AUTH_BAD);
	cr_expect_eq(auth_verify(SECRET, t, NOW + 60, &c), -1);
	free(t);
	/* What fila token signs; and Supabase's legacy tokens. */
	t = auth_sign(SECRET, "bob", 0, NOW + 60);
	cr_expect_eq(auth_check(b, t, NOW, &c), AUTH_OK);
	cr_expect_str_eq(c.sub, "bob");
	free(t);
	auth_free(b);
	o.secret = supabase_secret;
	b = auth_with(&o, NULL);
	cr_expect_eq(auth_check(b, supabase_token, NOW, &c), AUTH_OK);
	cr_expect_eq(auth_check(b, admin_real_exp, NOW + 29, &c), AUTH_OK);
	cr_expect_eq(auth_check(b, admin_real_exp, NOW + 31, &c), AUTH_BAD);
	auth_free(b);
}

Test(jwt, hs256_refused_without_a_secret)
{
	struct auth_opts o = {.secret = ""};
	char *doc = std_jwks();
	struct auth *b = auth_with(&o, doc);
	char *t = auth_sign(SECRET, "alice", 0, NOW + 60);

	cr_expect_eq(auth_check(b, t, NOW, NULL), AUTH_BAD);
	cr_expect_null(auth_token(b, "alice", 0, 0));
	cr_expect_eq(auth_check(b, supabase_token, NOW, NULL), AUTH_BAD);
	free(t);
	free(doc);
	auth_free(b);
}

Test(jwt, admin_role_signed_as_configured)
{
	struct auth_opts o = {.secret = SECRET, .admin_role = "ops"};
	struct auth *b = auth_with(&o, NULL);
	struct auth_claims c;
	char *t = auth_token(b, "root", 1, 0);

	cr_assert_eq(auth_check(b, t, NOW, &c), AUTH_OK);
	cr_expect_eq(c.admin, 1);
	cr_assert_eq(auth_check(A, t, NOW, &c), AUTH_BAD); /* need_exp */
	free(t);
	auth_free(b);
}

Test(jwt, nothing_to_check)
{
	cr_expect_eq(auth_check(NULL, node_es256, NOW, NULL), AUTH_BAD);
	cr_expect_eq(auth_check(A, NULL, NOW, NULL), AUTH_BAD);
	cr_expect_str_eq(auth_why(NULL), "");
	auth_free(NULL);
}
