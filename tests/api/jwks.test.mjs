// docs/api.md §2 (Auth) and §10 (Tokens from a key set): ES256 and RS256
// tokens verified with the keys of auth.jwks_url, as Supabase signs them;
// the key set fetched at start and again for an unknown kid (at most once
// per 30 s), kept when a fetch fails; exp, nbf, iss, aud and the admin role;
// HS256 only with a secret, never with a public key's bytes.
//
// The key sets are served by small node:http servers in this file, with
// keys made here (node:crypto). The refetch for an unknown kid may happen
// only 30 s after the last fetch started (the one at start counts, §10 "at
// most once per 30 s"), so the two tests that need a refetch run last and
// wait for that moment; everything else runs meanwhile.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { Env, SECRET, jwt, uid, assertError, sleep, waitFor, stopProc, pngBytes } from './harness.mjs';

const ISS = 'https://fila-test.supabase.co/auth/v1';
const AUD = 'authenticated';
const ADMIN_ROLE = 'service_admin';
const REFETCH_GAP_MS = 30000; // §10: at most one refetch per 30 s
const FETCH_LIMIT_MS = 5000; // §10: a fetch may take 5 s

// ---- keys and tokens ---------------------------------------------------------

const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

// A key pair and its public JWK, as Supabase publishes one.
function ecKey(kid, jwkExtra = { alg: 'ES256', use: 'sig', ext: true, key_ops: ['verify'] }) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { kid, alg: 'ES256', priv: privateKey, pub: publicKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, ...jwkExtra } };
}
function rsaKey(kid, bits = 2048, jwkExtra = { alg: 'RS256', use: 'sig' }) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('rsa', { modulusLength: bits });
  return { kid, alg: 'RS256', priv: privateKey, pub: publicKey, jwk: { ...publicKey.export({ format: 'jwk' }), kid, ...jwkExtra } };
}

// The signature of data by key, in the way `how` names.
function signature(key, data, how) {
  switch (how) {
    case 'ES256': return crypto.sign('sha256', data, { key: key.priv, dsaEncoding: 'ieee-p1363' }); // JOSE: R || S
    case 'ES256-DER': return crypto.sign('sha256', data, { key: key.priv, dsaEncoding: 'der' });
    case 'RS256': return crypto.sign('sha256', data, key.priv); // RSASSA-PKCS1-v1_5
    case 'PS256': return crypto.sign('sha256', data, { key: key.priv, padding: crypto.constants.RSA_PKCS1_PSS_PADDING });
    default: throw new Error(`no signature ${how}`);
  }
}

// A token signed by key: header {alg, typ, kid} (plus/overridden by
// `header`), signature made as `how` says (the key's own algorithm by default).
function tok(key, payload, { header = {}, how = key.alg } = {}) {
  const head = { alg: key.alg, typ: 'JWT', kid: key.kid, ...header };
  const input = b64u(head) + '.' + b64u(payload);
  return input + '.' + signature(key, Buffer.from(input), how).toString('base64url');
}

// Supabase's access-token claims for user sub, valid for an hour.
function claims(sub, extra = {}) {
  return {
    iss: ISS, aud: AUD, sub, exp: now() + 3600, iat: now(), role: 'authenticated',
    app_metadata: { provider: 'email', providers: ['email'] }, user_metadata: {}, ...extra,
  };
}

// An HS256 token keyed with secret (a string or bytes).
const hs = (payload, secret = SECRET, header = { alg: 'HS256', typ: 'JWT' }) => jwt(payload, { secret, header });

// ---- a key set server ----------------------------------------------------------

// Serves {keys} at /jwks.json; records every request. mode: 'ok'; 'hang'
// (never answers; the connection stays open until the client gives up);
// {hangMs} (answers nothing and drops the connection after hangMs). delayMs
// delays an 'ok' answer.
function jwksServer(keys) {
  const s = { keys, mode: 'ok', delayMs: 0, hits: [], held: new Set() };
  s.server = http.createServer((req, res) => {
    s.hits.push({ at: Date.now(), method: req.method, url: req.url });
    if (req.url !== '/jwks.json') { res.writeHead(404); res.end(); return; }
    const mode = s.mode;
    if (mode === 'hang' || typeof mode === 'object') {
      s.held.add(res);
      res.on('close', () => s.held.delete(res));
      if (typeof mode === 'object') setTimeout(() => res.socket?.destroy(), mode.hangMs);
      return;
    }
    const body = JSON.stringify({ keys: s.keys });
    const send = () => {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'public, max-age=600' });
      res.end(body);
    };
    if (s.delayMs) setTimeout(send, s.delayMs); else send();
  });
  s.server.requestTimeout = 0;
  s.fetches = () => s.hits.filter((h) => h.url === '/jwks.json').length;
  s.lastAt = () => Math.max(0, ...s.hits.map((h) => h.at));
  s.close = () => new Promise((r) => {
    for (const res of s.held) res.socket?.destroy();
    s.server.closeAllConnections?.();
    s.server.close(r);
  });
  return new Promise((resolve, reject) => {
    s.server.once('error', reject);
    s.server.listen(0, '127.0.0.1', () => {
      s.url = `http://127.0.0.1:${s.server.address().port}/jwks.json`;
      resolve(s);
    });
  });
}

// ---- HTTP with a stopwatch -------------------------------------------------------

// GET base+path with an optional bearer token, given up after timeoutMs:
// {status, json, text, ms, endedAt}.
async function get(base, path, tokenOrNull, timeoutMs = 15000) {
  const t0 = performance.now();
  const res = await fetch(base + path, {
    headers: tokenOrNull ? { authorization: `Bearer ${tokenOrNull}` } : {},
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, json, text, ms: performance.now() - t0, endedAt: performance.now() };
}

const me = (env, t) => get(env.url, '/v1/me', t);

async function accepted(env, t, sub, what) {
  const r = await me(env, t);
  assert.equal(r.status, 200, `${what}: expected 200, got ${r.status} ${r.text}`);
  assert.equal(r.json.user_id, sub, `${what}: user_id`);
  return r;
}

async function refused(env, t, what) {
  const r = await me(env, t);
  assertError(r, 401, 'unauthorized', `${what}:`);
  return r;
}

// Waits until at least gapMs have passed since server s was last asked for
// its keys: only then may fila refetch them for an unknown kid.
async function refetchAllowed(s, gapMs = REFETCH_GAP_MS + 300) {
  const wait = s.lastAt() + gapMs - Date.now();
  if (wait > 0) await sleep(wait);
}

// ---- the fila processes ------------------------------------------------------------

const K = {};     // keys of set A, by role
let setA;         // key set of fila A and fila B
let envA;         // jwks + jwt_secret + issuer + audience + admin_role
let envB;         // jwks only (jwt_secret empty), same key set
let setR, envR;   // rotation
let setS, envS;   // a refetch that fails
const extra = []; // envs started by single tests, stopped at the end
const servers = [];

before(async () => {
  K.ec = ecKey('ec-main');
  K.rsa = rsaKey('rsa-main');
  K.ecBare = ecKey('ec-bare', {}); // no alg, no use: usable (§10)
  K.ecEnc = ecKey('ec-enc', { alg: 'ES256', use: 'enc' }); // use not sig: skipped
  K.ecBadAlg = ecKey('ec-badalg', { alg: 'RS256', use: 'sig' }); // alg not its own: skipped
  K.rsaSmall = rsaKey('rsa-1024', 1024); // under 2048 bits: skipped
  K.dupFirst = ecKey('dup');
  K.dupSecond = ecKey('dup'); // same kid: the first counts
  K.oct = { kid: 'oct-1', secret: 'an-oct-key-secret' };
  const octJwk = { kty: 'oct', kid: K.oct.kid, k: b64u(K.oct.secret), alg: 'HS256', use: 'sig' };
  setA = await jwksServer([
    K.ec.jwk, K.rsa.jwk, K.ecBare.jwk, K.ecEnc.jwk, K.ecBadAlg.jwk, K.rsaSmall.jwk,
    K.dupFirst.jwk, K.dupSecond.jwk, octJwk,
  ]);
  K.r1 = ecKey('rot-1');
  K.r2 = ecKey('rot-2'); // rotated in later
  K.rRsa = rsaKey('rot-rsa');
  setR = await jwksServer([K.r1.jwk, K.rRsa.jwk]);
  K.s1 = ecKey('s-1');
  setS = await jwksServer([K.s1.jwk]);
  servers.push(setA, setR, setS);

  const claimsSets = [`auth.issuer=${ISS}`, `auth.audience=${AUD}`];
  [envA, envB, envR, envS] = await Promise.all([
    Env.start({ sets: [`auth.jwks_url=${setA.url}`, ...claimsSets, `auth.admin_role=${ADMIN_ROLE}`] }),
    Env.start({ sets: [`auth.jwks_url=${setA.url}`, 'auth.jwt_secret=', ...claimsSets] }),
    Env.start({ sets: [`auth.jwks_url=${setR.url}`] }),
    Env.start({ sets: [`auth.jwks_url=${setS.url}`] }),
  ]);
  // Each fetched its set at start (§10).
  await waitFor(() => setA.fetches() >= 2 && setR.fetches() >= 1 && setS.fetches() >= 1, 5000, 'the fetches at start');
});

after(async () => {
  const envs = [envA, envB, envR, envS, ...extra].filter(Boolean);
  const results = await Promise.allSettled(envs.map((e) => e.stop()));
  await Promise.all(servers.map((s) => s.close()));
  for (const r of results) if (r.status === 'rejected') throw r.reason;
});

// ---- 1. the keys of the set ----------------------------------------------------------

test('ES256 and RS256 tokens signed by keys of the set are accepted, and their sub is the user', async () => {
  const a = uid('es');
  const r = await accepted(envA, tok(K.ec, claims(a)), a, 'ES256');
  assert.equal(r.json.credits, 100, 'a first-seen user is granted credits.initial');
  const b = uid('rs');
  await accepted(envA, tok(K.rsa, claims(b)), b, 'RS256');
  // The same user by either key: one account.
  const again = await accepted(envA, tok(K.rsa, claims(a)), a, 'RS256 for the ES256 user');
  assert.equal(again.json.credits, 100);
  // A key with neither alg nor use is usable too.
  const c = uid('bare');
  await accepted(envA, tok(K.ecBare, claims(c)), c, 'ES256 by a key without alg/use');
  // And fila B, without a secret, takes them alike.
  await accepted(envB, tok(K.ec, claims(a)), a, 'ES256 on fila without jwt_secret');
  await accepted(envB, tok(K.rsa, claims(b)), b, 'RS256 on fila without jwt_secret');
});

test('a token whose signature does not match is refused 401: tampered payload, another key under the same kid', async () => {
  const sub = uid('tamper');
  for (const key of [K.ec, K.rsa]) {
    const good = tok(key, claims(sub));
    const [h, , s] = good.split('.');
    const forged = `${h}.${b64u(claims('someone-else'))}.${s}`;
    await refused(envA, forged, `${key.alg} with a swapped payload`);
    const other = key.alg === 'ES256' ? ecKey(key.kid) : rsaKey(key.kid);
    await refused(envA, tok(other, claims(sub)), `${key.alg} by a key outside the set under kid ${key.kid}`);
    // A flipped bit in the signature.
    const sig = Buffer.from(s, 'base64url');
    sig[5] ^= 1;
    await refused(envA, `${h}.${good.split('.')[1]}.${sig.toString('base64url')}`, `${key.alg} with a flipped signature bit`);
    await accepted(envA, good, sub, `${key.alg} control`);
  }
});

test('ES256 signatures are JOSE R||S: the same signature DER-encoded is refused 401', async () => {
  const sub = uid('der');
  await refused(envA, tok(K.ec, claims(sub), { how: 'ES256-DER' }), 'DER ES256 signature');
  await accepted(envA, tok(K.ec, claims(sub)), sub, 'R||S control');
});

test('keys the set may not hold are skipped: use other than sig, alg not the key\'s, RSA under 2048 bits, oct; of two keys with one kid the first counts', async () => {
  const sub = uid('skip');
  await refused(envA, tok(K.ecEnc, claims(sub)), 'a key with use "enc"');
  await refused(envA, tok(K.ecBadAlg, claims(sub)), 'an EC key published with alg RS256');
  await refused(envA, tok(K.rsaSmall, claims(sub)), 'an RSA key of 1024 bits');
  // An oct key is never a secret for HS256, with or without jwt_secret.
  const octTok = hs(claims(sub), K.oct.secret, { alg: 'HS256', typ: 'JWT', kid: K.oct.kid });
  await refused(envA, octTok, 'HS256 keyed with an oct key of the set (fila with a secret)');
  await refused(envB, octTok, 'HS256 keyed with an oct key of the set (fila without a secret)');
  await accepted(envA, tok(K.dupFirst, claims(sub)), sub, 'the first key of kid "dup"');
  await refused(envA, tok(K.dupSecond, claims(sub)), 'the second key of kid "dup"');
});

// ---- 3. times ---------------------------------------------------------------------------

test('exp in the past (beyond 30 s of skew) is refused 401; within the skew it is accepted', async () => {
  const sub = uid('exp');
  for (const key of [K.ec, K.rsa]) {
    await refused(envA, tok(key, claims(sub, { exp: now() - 120 })), `${key.alg} expired 2 min ago`);
    await refused(envA, tok(key, claims(sub, { exp: now() - 3600 })), `${key.alg} expired an hour ago`);
    await accepted(envA, tok(key, claims(sub, { exp: now() - 5 })), sub, `${key.alg} expired 5 s ago (within the skew)`);
  }
  await refused(envA, hs(claims(sub, { exp: now() - 120 })), 'HS256 expired 2 min ago');
});

test('nbf in the future (beyond 30 s of skew) is refused 401; within the skew it is accepted', async () => {
  const sub = uid('nbf');
  for (const key of [K.ec, K.rsa]) {
    await refused(envA, tok(key, claims(sub, { nbf: now() + 120 })), `${key.alg} nbf in 2 min`);
    await accepted(envA, tok(key, claims(sub, { nbf: now() + 5 })), sub, `${key.alg} nbf in 5 s (within the skew)`);
    await accepted(envA, tok(key, claims(sub, { nbf: now() - 60 })), sub, `${key.alg} nbf a minute ago`);
  }
  await refused(envA, hs(claims(sub, { nbf: now() + 120 })), 'HS256 nbf in 2 min');
});

test('with a key set every token needs a numeric exp, HS256 ones too: without it 401', async () => {
  const sub = uid('noexp');
  const noExp = claims(sub);
  delete noExp.exp;
  await refused(envA, tok(K.ec, noExp), 'ES256 without exp');
  await refused(envA, tok(K.rsa, noExp), 'RS256 without exp');
  await refused(envA, hs(noExp), 'HS256 without exp, jwks_url set');
  await refused(envA, tok(K.ec, claims(sub, { exp: String(now() + 3600) })), 'exp as a string');
  await refused(envA, tok(K.ec, claims(sub, { exp: null })), 'exp null');
  await accepted(envA, hs(claims(sub)), sub, 'HS256 with exp (control)');
});

// ---- 4. algorithms --------------------------------------------------------------------------

test('alg confusion: HS256 keyed with a public key of the set (PEM or JWK bytes) is refused 401, with or without jwt_secret', async () => {
  const sub = uid('confuse');
  const payload = claims(sub);
  const secrets = {
    'EC SPKI PEM': K.ec.pub.export({ type: 'spki', format: 'pem' }),
    'EC SPKI DER': K.ec.pub.export({ type: 'spki', format: 'der' }),
    'EC JWK JSON': JSON.stringify(K.ec.jwk),
    'RSA SPKI PEM': K.rsa.pub.export({ type: 'spki', format: 'pem' }),
    'RSA PKCS#1 PEM': K.rsa.pub.export({ type: 'pkcs1', format: 'pem' }),
    'RSA JWK JSON': JSON.stringify(K.rsa.jwk),
    'the JWKS document': JSON.stringify({ keys: setA.keys }),
  };
  for (const [name, secret] of Object.entries(secrets)) {
    for (const kid of [undefined, K.ec.kid, K.rsa.kid]) {
      const t = hs(payload, secret, { alg: 'HS256', typ: 'JWT', kid });
      await refused(envA, t, `HS256 keyed with ${name}, kid ${kid} (fila with a secret)`);
      await refused(envB, t, `HS256 keyed with ${name}, kid ${kid} (fila without a secret)`);
    }
  }
});

test('alg "none", unknown algorithms, crit, a missing kid and a header alg that is not the key\'s are refused 401', async () => {
  const sub = uid('alg');
  const p = claims(sub);
  const unsigned = (header) => `${b64u(header)}.${b64u(p)}.`;
  for (const env of [envA, envB]) {
    await refused(env, unsigned({ alg: 'none', typ: 'JWT' }), 'alg none');
    await refused(env, unsigned({ alg: 'none', typ: 'JWT', kid: K.ec.kid }), 'alg none with a kid of the set');
    await refused(env, unsigned({ alg: 'None', kid: K.ec.kid }), 'alg None');
    // A real ES256 signature by the EC key, under a header that says RS256:
    // a verifier that let the key pick the algorithm would take it.
    await refused(env, tok(K.ec, p, { header: { alg: 'RS256' } }), 'RS256 header, kid of the EC key, ES256 signature');
    // A real RS256 signature by the RSA key, under a header that says ES256.
    await refused(env, tok(K.rsa, p, { header: { alg: 'ES256' } }), 'ES256 header, kid of the RSA key, RS256 signature');
    // Other algorithms of the same families.
    await refused(env, tok(K.ec, p, { header: { alg: 'ES384' } }), 'ES384 header with an ES256 signature');
    await refused(env, tok(K.rsa, p, { header: { alg: 'PS256' }, how: 'PS256' }), 'PS256');
    await refused(env, tok(K.rsa, p, { how: 'PS256' }), 'RS256 header with a PSS signature (RS256 is PKCS#1 v1.5)');
    // No kid: even with one EC key, the key is not guessed.
    await refused(env, tok(K.ec, p, { header: { kid: undefined } }), 'ES256 without kid');
    await refused(env, tok(K.rsa, p, { header: { kid: undefined } }), 'RS256 without kid');
    await refused(env, tok(K.ec, p, { header: { kid: '' } }), 'ES256 with an empty kid');
    // crit is never understood.
    await refused(env, tok(K.ec, p, { header: { crit: ['exp'] } }), 'a header with crit');
    // The controls: the same keys the right way.
    await accepted(env, tok(K.ec, p), sub, 'ES256 control');
    await accepted(env, tok(K.rsa, p), sub, 'RS256 control');
  }
});

// ---- 5. issuer and audience -------------------------------------------------------------------

test('with auth.issuer and auth.audience set, a wrong or missing iss or aud is refused 401; the right ones are accepted', async () => {
  const sub = uid('issaud');
  for (const make of [(p) => tok(K.ec, p), (p) => tok(K.rsa, p), (p) => hs(p)]) {
    await accepted(envA, make(claims(sub)), sub, 'iss and aud right');
    await accepted(envA, make(claims(sub, { aud: ['other', AUD] })), sub, 'aud an array holding the audience');
    await refused(envA, make(claims(sub, { iss: 'https://other.supabase.co/auth/v1' })), 'iss of another project');
    await refused(envA, make(claims(sub, { iss: ISS + '/' })), 'iss with a trailing slash');
    await refused(envA, make(claims(sub, { iss: undefined })), 'no iss');
    await refused(envA, make(claims(sub, { aud: 'anon' })), 'aud anon');
    await refused(envA, make(claims(sub, { aud: ['anon', 'service'] })), 'aud an array without the audience');
    await refused(envA, make(claims(sub, { aud: undefined })), 'no aud');
  }
});

// ---- 6. the admin role ------------------------------------------------------------------------

test('admin routes: role or app_metadata.role equal to auth.admin_role gets 200; other roles 403 forbidden; no valid token 401', async () => {
  const q = (t) => get(envA.url, '/v1/admin/queue', t);
  const ok = async (t, what) => {
    const r = await q(t);
    assert.equal(r.status, 200, `${what}: ${r.status} ${r.text}`);
    assert.equal(typeof r.json.slots?.total, 'number', `${what}: ${r.text}`);
  };
  const forbidden = async (t, what) => assertError(await q(t), 403, 'forbidden', `${what}:`);
  const sub = uid('adm');
  const meta = (role) => ({ provider: 'email', providers: ['email'], role });

  await ok(tok(K.ec, claims(sub, { app_metadata: meta(ADMIN_ROLE) })), 'ES256, app_metadata.role = admin_role');
  await ok(tok(K.rsa, claims(sub, { app_metadata: meta(ADMIN_ROLE) })), 'RS256, app_metadata.role = admin_role');
  await ok(tok(K.ec, claims(sub, { role: ADMIN_ROLE })), 'ES256, role = admin_role');
  await ok(hs(claims(sub, { role: ADMIN_ROLE })), 'HS256, role = admin_role');

  await forbidden(tok(K.ec, claims(sub)), 'role authenticated');
  await forbidden(tok(K.ec, claims(sub, { role: 'admin' })), 'role admin (the default, not the configured role)');
  await forbidden(tok(K.ec, claims(sub, { app_metadata: meta('admin') })), 'app_metadata.role admin');
  await forbidden(tok(K.ec, claims(sub, { user_metadata: { role: ADMIN_ROLE } })), 'user_metadata.role (the user may edit it)');
  await forbidden(tok(K.ec, claims(sub, { role: ADMIN_ROLE.toUpperCase() })), 'role in other case');
  await forbidden(tok(K.ec, claims(sub, { app_metadata: ADMIN_ROLE })), 'app_metadata a string');
  assertError(await q(tok(K.ec, claims(sub, { role: ADMIN_ROLE, exp: now() - 120 }))), 401, 'unauthorized', 'an expired admin token:');
  assertError(await q(tok(ecKey(K.ec.kid), claims(sub, { role: ADMIN_ROLE }))), 401, 'unauthorized', 'an admin token by a key outside the set:');
  // An admin is a user too.
  await accepted(envA, tok(K.ec, claims(sub, { app_metadata: meta(ADMIN_ROLE) })), sub, 'admin on /v1/me');
});

// ---- 8. HS256 needs the secret ------------------------------------------------------------------

test('HS256 tokens are accepted only when jwt_secret is set: with jwks_url and an empty secret they are refused 401', async () => {
  const sub = uid('hs');
  await accepted(envA, hs(claims(sub)), sub, 'HS256 on fila with jwt_secret');
  await refused(envB, hs(claims(sub)), 'HS256 by the harness secret on fila without jwt_secret');
  await refused(envB, hs(claims(sub), ''), 'HS256 keyed with the empty string on fila without jwt_secret');
  await refused(envB, hs(claims(sub), 'dev-secret-change-me'), 'HS256 keyed with the built-in secret on fila without jwt_secret');
  await refused(envA, hs(claims(sub), 'not-the-secret'), 'HS256 with a wrong secret');
  await accepted(envB, tok(K.ec, claims(sub)), sub, 'ES256 control on fila without jwt_secret');
});

// ---- 2. unknown kids: refetch, rate limited ---------------------------------------------------

test('tokens with unknown kids within 30 s cause at most one extra fetch of the key set, and are refused 401', async () => {
  const sub = uid('unk');
  await accepted(envR, tok(K.r1, claims(sub)), sub, 'a key of the set');
  const before_ = setR.fetches();
  assert.ok(before_ >= 1, 'fetched at start');
  // 30 made-up kids, one after another and then 10 at once; and the kid
  // that will be rotated in later, not in the set yet.
  const strangers = Array.from({ length: 40 }, (_, i) => ecKey(`made-up-${i}`));
  for (const k of strangers.slice(0, 30)) await refused(envR, tok(k, claims(sub)), `unknown kid ${k.kid}`);
  await Promise.all(strangers.slice(30).map((k) => refused(envR, tok(k, claims(sub)), `unknown kid ${k.kid} (concurrent)`)));
  await refused(envR, tok(K.r2, claims(sub)), 'the kid that is not in the set yet');
  // The fetch at start plus at most one on demand (§10: at most once per
  // 30 s; fila counts the start's fetch too, so today it makes none).
  assert.ok(setR.fetches() <= 2, `fetches of the key set: ${setR.fetches()} (at start: ${before_})`);
  // Known keys are not hindered by the storm.
  await accepted(envR, tok(K.rRsa, claims(sub)), sub, 'RS256 of the set after the storm');
});

// ---- 7. a key set that does not answer ---------------------------------------------------------

test('a key set that never answers at start: /healthz and HS256 tokens are answered promptly, ES256 tokens 401 (never 500) once the fetch gives up', async () => {
  const set = await jwksServer([]);
  servers.push(set);
  set.mode = 'hang';
  const t0 = performance.now();
  const env = await Env.start({ sets: [`auth.jwks_url=${set.url}`] });
  extra.push(env);
  const startMs = performance.now() - t0;
  // A fetch may take 5 s: fila answers /healthz long before this one ends.
  assert.ok(startMs < 4000, `fila took ${startMs} ms to answer /healthz with its key set hanging`);
  await waitFor(() => set.held.size === 1, 3000, 'the fetch at start to reach the key set');
  const key = ecKey('never-served');
  const sub = uid('down');
  // The request with a JWKS token waits for the fetch in flight (§2, order of checks).
  const waiting = me(env, tok(key, claims(sub)));
  await sleep(100);
  const health = await get(env.url, '/healthz', null);
  assert.equal(health.status, 200);
  assert.ok(health.ms < 1000, `/healthz took ${health.ms} ms while the key set hangs`);
  const hsr = await me(env, hs(claims(sub)));
  assert.equal(hsr.status, 200, hsr.text);
  assert.equal(hsr.json.user_id, sub);
  assert.ok(hsr.ms < 1500, `an HS256 request took ${hsr.ms} ms while the key set hangs`);
  assert.equal(set.held.size, 1, 'the fetch was still in flight during those requests');
  const w = await waiting;
  assertError(w, 401, 'unauthorized', 'an ES256 token before any good fetch:');
  assert.ok(w.endedAt > hsr.endedAt, 'the ES256 request waited for the fetch; the HS256 one did not');
  assert.ok(performance.now() - t0 < startMs + FETCH_LIMIT_MS + 3000, 'the fetch gave up within about 5 s');
  await waitFor(() => set.held.size === 0, 2000, 'fila to close the fetch it gave up');
  // Judged at once now (no fetch may start yet), still 401.
  const again = await me(env, tok(key, claims(sub)));
  assertError(again, 401, 'unauthorized', 'ES256 after the failed fetch:');
  assert.ok(again.ms < 1000, `judged in ${again.ms} ms`);
  assert.equal(set.fetches(), 1, 'no second fetch within 30 s of the first');
});

// §1 Stopping: fila "answers the requests in flight, and exits 0". Today the
// waiting request is answered when the fetch gives up (up to 5 s).
test('SIGTERM while a request waits for the key set: the request is answered 401 and fila exits 0', async () => {
  const set = await jwksServer([]);
  servers.push(set);
  set.mode = 'hang';
  const env = await Env.start({ sets: [`auth.jwks_url=${set.url}`] });
  await waitFor(() => set.held.size === 1, 3000, 'the fetch at start to reach the key set');
  const waiting = me(env, tok(ecKey('k'), claims(uid('term')))).then((r) => r, (e) => ({ error: e }));
  await sleep(150);
  const t0 = performance.now();
  const exit = await stopProc(env.fila.proc, 'SIGTERM', FETCH_LIMIT_MS + 5000);
  const stopMs = performance.now() - t0;
  const r = await waiting;
  extra.push(env); // stopped again (a no-op) and its dir removed in after()
  assert.deepEqual(exit, { code: 0, signal: null }, `fila's exit; stderr: ${env.fila.stderr().slice(-2000)}`);
  assert.ok(!r.error, `the waiting request got no answer: ${r.error?.cause?.message || r.error?.message}`);
  assertError(r, 401, 'unauthorized', 'the waiting request:');
  assert.ok(stopMs < FETCH_LIMIT_MS + 2000, `stop took ${stopMs} ms`);
});

test('a refetch that hangs and fails: known keys, HS256 and /healthz are answered promptly meanwhile, and the known keys still work after it', async () => {
  const sub = uid('keep');
  await accepted(envS, tok(K.s1, claims(sub)), sub, 'a key of the set');
  await refetchAllowed(setS);
  const n = setS.fetches();
  setS.mode = { hangMs: 2500 }; // answers nothing, then drops the connection
  const stranger = ecKey('s-unknown');
  const waiting = me(envS, tok(stranger, claims(sub)));
  await waitFor(() => setS.fetches() === n + 1 && setS.held.size === 1, 2000, 'the refetch for the unknown kid');
  const health = await get(envS.url, '/healthz', null);
  assert.equal(health.status, 200);
  assert.ok(health.ms < 1000, `/healthz took ${health.ms} ms during the refetch`);
  const known = await accepted(envS, tok(K.s1, claims(sub)), sub, 'a known key during the refetch');
  assert.ok(known.ms < 1000, `a known key took ${known.ms} ms during the refetch`);
  const hsr = await accepted(envS, hs(claims(sub)), sub, 'HS256 during the refetch');
  assert.ok(hsr.ms < 1000, `HS256 took ${hsr.ms} ms during the refetch`);
  assert.equal(setS.held.size, 1, 'the refetch was still in flight during those requests');
  const w = await waiting;
  assertError(w, 401, 'unauthorized', 'the unknown kid after the failed refetch:');
  assert.ok(w.ms >= 2000, `the request waited for the refetch (${w.ms} ms)`);
  setS.mode = 'ok';
  // The failed fetch kept the keys.
  await accepted(envS, tok(K.s1, claims(sub)), sub, 'a known key after the failed refetch');
  // And started no other fetch.
  await refused(envS, tok(stranger, claims(sub)), 'the unknown kid again');
  assert.equal(setS.fetches(), n + 1, 'one refetch');
});

// ---- 2. rotation -------------------------------------------------------------------------------

test('key rotation: a token with a kid not yet in the set is accepted once the set holds it (fila refetches), the dropped key is refused, and one refetch serves many waiting requests', async () => {
  const sub = uid('rot');
  // r2 is not in the set yet: the test on unknown kids above had it refused
  // (asking again here, 30 s after the start, would spend the refetch).
  await refetchAllowed(setR);
  // The provider rotates: r2 in, r1 out. The answer comes slowly, so the
  // requests below all wait for one fetch.
  setR.keys = [K.r2.jwk, K.rRsa.jwk];
  setR.delayMs = 300;
  const n = setR.fetches();
  const subs = Array.from({ length: 10 }, () => uid('rot'));
  const rs = await Promise.all(subs.map((s) => me(envR, tok(K.r2, claims(s)))));
  rs.forEach((r, i) => {
    assert.equal(r.status, 200, `request ${i} with the new kid: ${r.status} ${r.text}`);
    assert.equal(r.json.user_id, subs[i]);
  });
  assert.equal(setR.fetches(), n + 1, 'one refetch for all the requests');
  setR.delayMs = 0;
  await accepted(envR, tok(K.r2, claims(sub)), sub, 'the new kid again');
  await accepted(envR, tok(K.rRsa, claims(sub)), sub, 'the RSA key kept in the set');
  await refused(envR, tok(K.r1, claims(sub)), 'the key the set dropped');
  // Within 30 s of that refetch no other one starts: a kid added now stays
  // unknown (it would be fetched 30 s later; not waited for here).
  const r3 = ecKey('rot-3');
  setR.keys = [K.r2.jwk, K.rRsa.jwk, r3.jwk];
  await refused(envR, tok(r3, claims(sub)), 'a kid added right after a refetch');
  for (let i = 0; i < 10; i++) await refused(envR, tok(ecKey(`late-${i}`), claims(sub)), 'another unknown kid');
  assert.equal(setR.fetches(), n + 1, 'no second refetch within 30 s');
});

test('key rotation on GET /v1/outputs/{id}: a bearer token with a kid not yet in the set waits for the refetch and gets the output', async () => {
  const o1 = ecKey('out-1');
  const o2 = ecKey('out-2'); // rotated in later
  const set = await jwksServer([o1.jwk]);
  servers.push(set);
  const e = await Env.start({ durationMs: 50, sets: [`auth.jwks_url=${set.url}`, 'outputs.store=local'] });
  extra.push(e);
  await waitFor(() => set.fetches() >= 1, 5000, 'the fetch at start');
  const sub = uid('outrot');
  const t1 = tok(o1, claims(sub));
  const up = await e.api('POST', '/v1/uploads', { token: t1, raw: pngBytes(32), headers: { 'content-type': 'image/png' } });
  assert.equal(up.status, 201, up.text);
  const r = await e.submit(t1, { tool: 'upscaler', inputs: { image: up.json.id } });
  assert.equal(r.status, 201, r.text);
  const job = await e.waitStatus(t1, r.json.id, ['completed', 'failed']);
  assert.equal(job.status, 'completed', JSON.stringify(job.error));
  const url = new URL(job.outputs[0].url);
  const bare = `${url.pathname}`; // no exp, no sig: the token decides
  // The set rotates: o2 in, o1 out. The first request that names o2 is
  // an output download, and it waits for the refetch like any other.
  await refetchAllowed(set);
  set.keys = [o2.jwk];
  const n = set.fetches();
  const got = await get(e.url, bare, tok(o2, claims(sub)));
  assert.equal(got.status, 200, `the new kid on the output: ${got.status} ${got.text}`);
  assert.equal(set.fetches(), n + 1, 'one refetch');
  // Another user's valid token: 404, as if the output did not exist; no token: 401.
  assert.equal((await get(e.url, bare, tok(o2, claims(uid('other'))))).status, 404);
  assertError(await get(e.url, bare, null), 401, 'unauthorized');
  // The dropped key is refused.
  assertError(await get(e.url, bare, t1), 401, 'unauthorized');
});
