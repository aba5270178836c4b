/*
 * test_auth.c — HS256 tokens: what auth_sign makes auth_verify accepts, and
 * every forged, altered, expired or malformed token is refused.
 *
 * The fixed tokens were made by another implementation (Node's
 * crypto.createHmac("sha256", secret) over base64url(header) "." base64url
 * (payload)), so these tests also prove that fila reads what standard JWT
 * libraries and Supabase write.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
