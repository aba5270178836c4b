// Health, the tool list (docs/api.md §5) and authentication (§2).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, token, jwt, adminToken, newUser, uid, assertError, SECRET, isTime } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 400 }); });
after(async () => { await env?.stop(); });

test('GET /healthz answers 200 {"ok":true} without a token', async () => {
  const r = await env.api('GET', '/healthz');
  assert.equal(r.status, 200);
  assert.deepEqual(r.json, { ok: true });
  assert.match(r.headers.get('content-type') || '', /application\/json/);
});

test('GET /v1/tools lists the four built-in tools with their inputs', async () => {
  const r = await env.api('GET', '/v1/tools', { token: newUser('tools').tok });
  assert.equal(r.status, 200, r.text);
  const tools = r.json.tools;
  assert.ok(Array.isArray(tools));
  assert.deepEqual(tools.map((t) => t.name).sort(), ['pose_changer', 'upscaler', 'veste_ai', 'video_upscaler']);
  const by = Object.fromEntries(tools.map((t) => [t.name, t]));
  for (const t of tools) {
    assert.equal(typeof t.title, 'string');
    assert.ok(t.title.length > 0);
    assert.ok(Number.isInteger(t.cost));
    assert.ok(Array.isArray(t.variants), `${t.name}.variants`);
    assert.ok(Array.isArray(t.inputs), `${t.name}.inputs`);
    for (const i of t.inputs) {
      assert.equal(typeof i.name, 'string');
      assert.ok(['image', 'video', 'text', 'number', 'choice'].includes(i.type), `${t.name}.${i.name} type ${i.type}`);
      assert.equal(typeof i.required, 'boolean', `${t.name}.${i.name}.required`);
    }
  }
  const up = by.upscaler;
  assert.equal(up.title, 'Upscaler');
  assert.equal(up.cost, 10);
  assert.deepEqual(up.variants, ['pro', 'standard', 'longe', 'foto_antiga', 'comida', 'logo', 'render3d']);
  const ui = Object.fromEntries(up.inputs.map((i) => [i.name, i]));
  assert.deepEqual(Object.keys(ui).sort(), ['denoise', 'image', 'prompt', 'resolution']);
  assert.equal(ui.image.type, 'image');
  assert.equal(ui.image.required, true);
  assert.equal(ui.resolution.type, 'number');
  assert.equal(ui.resolution.required, false);
  assert.equal(ui.resolution.min, 512);
  assert.equal(ui.resolution.max, 8192);
  assert.equal(ui.denoise.type, 'number');
  assert.equal(ui.denoise.min, 0);
  assert.equal(ui.denoise.max, 1);
  assert.equal(ui.prompt.type, 'text');
  assert.equal(ui.prompt.required, false);

  const inputsOf = (t) => Object.fromEntries(by[t].inputs.map((i) => [i.name, [i.type, i.required]]));
  assert.equal(by.pose_changer.cost, 8);
  assert.deepEqual(inputsOf('pose_changer'), { person: ['image', true], reference: ['image', true] });
  assert.equal(by.veste_ai.cost, 8);
  assert.deepEqual(inputsOf('veste_ai'), { person: ['image', true], clothing: ['image', true] });
  assert.equal(by.video_upscaler.cost, 20);
  assert.deepEqual(inputsOf('video_upscaler'), { video: ['video', true] });
});

test('a user seen for the first time gets the initial credits as a grant entry', async () => {
  const u = newUser('first');
  const me = await env.me(u.tok);
  assert.deepEqual(me, { user_id: u.id, credits: 100, active_job: null });
  const entries = await env.ledger(u.tok);
  assert.equal(entries.length, 1, JSON.stringify(entries));
  const [g] = entries;
  assert.equal(g.kind, 'grant');
  assert.equal(g.amount, 100);
  assert.equal(g.balance_after, 100);
  assert.equal(g.job_id, null);
  assert.equal(typeof g.id === 'string' || typeof g.id === 'number', true);
  assert.ok(isTime(g.at), `at ${g.at}`);
  // Asking again grants nothing more.
  assert.equal((await env.me(u.tok)).credits, 100);
  assert.equal((await env.ledger(u.tok)).length, 1);
});

const now = () => Math.floor(Date.now() / 1000);

test('bad, missing, foreign and expired tokens are 401 unauthorized', async () => {
  const sub = uid('auth');
  const good = token(sub);
  const h384 = jwt({ sub }, { header: { alg: 'HS384', typ: 'JWT' }, hash: 'sha384' });
  const cases = {
    'no token': {},
    'garbage bearer': { headers: { authorization: 'Bearer garbage' } },
    'three garbage parts': { headers: { authorization: 'Bearer a.b.c' } },
    'alg none, no signature': { token: jwt({ sub }, { header: { alg: 'none', typ: 'JWT' }, hash: null }) },
    'alg none, with an HS256 signature': { token: jwt({ sub }, { header: { alg: 'none', typ: 'JWT' } }) },
    'HS384 header, HS384 signature': { token: h384 },
    'HS384 header, HS256 signature': { token: jwt({ sub }, { header: { alg: 'HS384', typ: 'JWT' } }) },
    'wrong secret': { token: token(sub, { secret: SECRET + '-not' }) },
    'expired': { token: token(sub, { exp: now() - 120 }) },
    'no sub': { token: jwt({ exp: now() + 600 }) },
    'tampered payload': { token: good.split('.')[0] + '.' + Buffer.from(JSON.stringify({ sub: 'someone-else' })).toString('base64url') + '.' + good.split('.')[2] },
    'Basic scheme': { headers: { authorization: 'Basic ' + Buffer.from('a:b').toString('base64') } },
  };
  for (const [name, opts] of Object.entries(cases)) {
    for (const [m, p] of [['GET', '/v1/me'], ['GET', '/v1/jobs'], ['POST', '/v1/jobs']]) {
      const r = await env.api(m, p, { ...opts, body: m === 'POST' ? { tool: 'upscaler', inputs: {} } : undefined });
      assertError(r, 401, 'unauthorized', `${name} ${m} ${p}:`);
    }
  }
  // An upload without a valid token stores nothing and answers 401.
  const r = await env.api('POST', '/v1/uploads', { raw: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), headers: { 'content-type': 'image/png' } });
  assertError(r, 401, 'unauthorized', 'upload without token:');
});

test('a valid token (with or without exp) is accepted; ?access_token= only on streams and leave', async () => {
  const sub = uid('ok');
  let r = await env.api('GET', '/v1/me', { token: token(sub, { exp: now() + 600 }) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.user_id, sub);
  r = await env.api('GET', '/v1/me', { token: token(sub) });
  assert.equal(r.status, 200, r.text);
  // Tokens in URLs end up in logs: elsewhere than streams and leave, 401.
  const q = `access_token=${encodeURIComponent(token(sub))}`;
  const aq = `access_token=${encodeURIComponent(adminToken())}`;
  for (const [method, path] of [['GET', `/v1/me?${q}`], ['GET', `/v1/me/ledger?${q}`],
    ['GET', `/v1/admin/queue?${aq}`], ['GET', `/metrics?${aq}`],
    ['POST', `/v1/jobs/job_x/cancel?${q}`], ['POST', `/v1/admin/jobs/job_x/cancel?${aq}`]]) {
    r = await env.api(method, path, method === 'POST' ? { body: {} } : {});
    const e = assertError(r, 401, 'unauthorized', `${method} ${path.split('?')[0]}:`);
    assert.match(e.message, /Authorization header/);
  }
  // On a stream and on leave it is taken.
  const ac = new AbortController();
  const res = await fetch(`${env.url}/v1/events?${q}`, { signal: ac.signal });
  assert.equal(res.status, 200);
  ac.abort();
  r = await env.api('POST', `/v1/sessions/tab-x/leave?${q}`, { body: {} });
  assert.ok([200, 204].includes(r.status), r.text);
  r = await env.api('GET', `/v1/events?access_token=${encodeURIComponent(token(sub, { secret: 'nope' }))}`);
  assertError(r, 401, 'unauthorized', 'bad access_token:');
  r = await env.api('GET', `/v1/events?access_token=${encodeURIComponent(token(sub, { exp: now() - 60 }))}`);
  assertError(r, 401, 'unauthorized', 'expired access_token:');
});

test('admin routes: 401 without a token, 403 forbidden without the admin role', async () => {
  const u = newUser('nonadmin');
  const other = newUser('target');
  const routes = [
    ['GET', '/v1/admin/queue'],
    ['GET', '/v1/admin/stats?hours=24'],
    ['POST', `/v1/admin/users/${other.id}/credits`, { amount: 1000, reason: 'self-service' }],
    ['POST', '/v1/admin/jobs/job_whatever/cancel', {}],
  ];
  for (const [m, p, body] of routes) {
    assertError(await env.api(m, p, { body }), 401, 'unauthorized', `${m} ${p} no token:`);
    assertError(await env.api(m, p, { token: u.tok, body }), 403, 'forbidden', `${m} ${p} user:`);
    assertError(await env.api(m, p, { token: token(u.id, { role: 'user' }), body }), 403, 'forbidden', `${m} ${p} role user:`);
  }
  // The refused grant wrote nothing.
  assert.equal((await env.me(other.tok)).credits, 100);
  const r = await env.api('GET', '/v1/admin/queue', { token: adminToken() });
  assert.equal(r.status, 200, r.text);
  // An admin token signed with another secret is still 401.
  assertError(await env.api('GET', '/v1/admin/queue', { token: token('root', { role: 'admin', secret: 'x' }) }), 401, 'unauthorized');
});
