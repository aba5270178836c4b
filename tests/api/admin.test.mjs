// Admin endpoints (docs/api.md §6): the queue view, credit grants, stats, metrics.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, adminToken, assertError, assertJobShape, waitFor } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 1200, concurrency: 10, sets: ['queue.slots=2'] }); });
after(async () => { await env?.stop(); });
beforeEach(async () => { await env.clearQueue(); });

const admin = adminToken();

test('GET /v1/admin/queue: {slots:{total,used}, active:[jobs], queued:[jobs with position]}', async () => {
  let q = await env.queue();
  assert.deepEqual(q, { slots: { total: 2, used: 0 }, active: [], queued: [] });
  const us = Array.from({ length: 4 }, (_, i) => newUser(`q${i}`));
  const js = [];
  for (const [i, u] of us.entries()) js.push(await env.submitTool(u.tok, ['upscaler', 'veste_ai', 'pose_changer', 'video_upscaler'][i]));
  q = await env.queue();
  assert.deepEqual(Object.keys(q).sort(), ['active', 'queued', 'slots']);
  assert.deepEqual(q.slots, { total: 2, used: 2 });
  assert.deepEqual(q.active.map((j) => j.id).sort(), [js[0].id, js[1].id].sort());
  for (const j of q.active) {
    assertJobShape(j);
    assert.ok(['starting', 'running'].includes(j.status));
  }
  assert.deepEqual(q.queued.map((j) => [j.id, j.status, j.position]), [[js[2].id, 'queued', 1], [js[3].id, 'queued', 2]]);
  q.queued.forEach(assertJobShape);
  await Promise.all(js.map((j, i) => env.waitStatus(us[i].tok, j.id, 'completed', 20000)));
  q = await env.queue();
  assert.deepEqual(q, { slots: { total: 2, used: 0 }, active: [], queued: [] });
});

test('GET /v1/admin/queue?limit=N: the first N queued, and how many wait in all', async () => {
  const us = Array.from({ length: 6 }, (_, i) => newUser(`ql${i}`));
  const js = [];
  for (const u of us) js.push(await env.submitTool(u.tok, 'upscaler'));
  const r = await env.api('GET', '/v1/admin/queue?limit=3', { token: admin });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(Object.keys(r.json).sort(), ['active', 'queued', 'queued_total', 'slots']);
  assert.equal(r.json.queued_total, 4);
  assert.deepEqual(r.json.queued.map((j) => [j.id, j.position]), [[js[2].id, 1], [js[3].id, 2], [js[4].id, 3]]);
  assert.equal(r.json.active.length, 2);
  const all = await env.api('GET', '/v1/admin/queue?limit=100', { token: admin });
  assert.equal(all.json.queued.length, 4);
  assert.equal(all.json.queued_total, 4);
  for (const bad of ['0', '-1', 'x', '1.5', '99999999999999999999']) {
    const b = await env.api('GET', `/v1/admin/queue?limit=${bad}`, { token: admin });
    assertError(b, 422, 'validation_failed');
    assert.ok(b.json.error.details?.fields?.limit, b.text);
  }
  for (const [i, j] of js.entries()) await env.api('POST', `/v1/jobs/${j.id}/cancel`, { token: us[i].tok });
});

test('POST /v1/admin/users/{id}/credits: grant entry, balance; never below 0', async () => {
  const u = newUser('grant');
  await env.me(u.tok);
  let r = await env.api('POST', `/v1/admin/users/${u.id}/credits`, { token: admin, body: { amount: 50, reason: 'promo' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { balance: 150 });
  let entries = await env.ledger(u.tok);
  assert.equal(entries.length, 2);
  assert.equal(entries[0].kind, 'grant');
  assert.equal(entries[0].amount, 50);
  assert.equal(entries[0].balance_after, 150);
  assert.equal(entries[0].job_id, null);
  assert.equal((await env.me(u.tok)).credits, 150);

  r = await env.api('POST', `/v1/admin/users/${u.id}/credits`, { token: admin, body: { amount: -151, reason: 'too much' } });
  assert.ok(r.status >= 400 && r.status < 500, `${r.status} ${r.text}`);
  assert.equal(typeof r.json?.error?.code, 'string');
  assert.equal((await env.me(u.tok)).credits, 150);
  assert.equal((await env.ledger(u.tok)).length, 2);

  r = await env.api('POST', `/v1/admin/users/${u.id}/credits`, { token: admin, body: { amount: -150, reason: 'down to zero' } });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { balance: 0 });
  entries = await env.ledger(u.tok);
  assert.equal(entries[0].amount, -150);
  assert.equal(entries[0].balance_after, 0);
  for (const e of entries) assert.ok(e.balance_after >= 0);

  for (const body of [{ amount: 'ten' }, { reason: 'no amount' }, { amount: 1.5 }]) {
    const b = await env.api('POST', `/v1/admin/users/${u.id}/credits`, { token: admin, body });
    assert.ok(b.status === 400 || b.status === 422, `${JSON.stringify(body)}: ${b.status} ${b.text}`);
  }
  assert.equal((await env.me(u.tok)).credits, 0);

  // A grant to a user never seen before: the user exists afterwards with a balance.
  const fresh = newUser('fresh');
  r = await env.api('POST', `/v1/admin/users/${fresh.id}/credits`, { token: admin, body: { amount: 5, reason: 'welcome' } });
  assert.equal(r.status, 200, r.text);
  const me = await env.me(fresh.tok);
  assert.equal(me.credits, r.json.balance);
  const fl = await env.ledger(fresh.tok);
  assert.equal(fl[0].balance_after, me.credits);
  assert.equal(fl.reduce((s, e) => s + e.amount, 0), me.credits, 'the ledger adds up to the balance');
});

test('POST /v1/admin/users/{id}/credits: amounts past what JSON clients can hold are refused, not a 5xx', async () => {
  const u = newUser('huge');
  await env.me(u.tok);
  const post = (raw) => env.api('POST', `/v1/admin/users/${u.id}/credits`,
    { token: admin, raw, headers: { 'content-type': 'application/json' } });
  for (const amount of ['9223372036854775807', '-9223372036854775808', '9007199254740992', '-9007199254740992']) {
    const r = await post(`{"amount": ${amount}}`);
    assertError(r, 422, 'validation_failed', amount);
    assert.ok(r.json.error.details.fields.amount, r.text);
  }
  // The largest amount is fine alone, but not on top of the balance.
  const r = await post('{"amount": 9007199254740991, "reason": "too much"}');
  assertError(r, 422, 'validation_failed');
  assert.match(r.json.error.details.fields.amount, /would be over 9007199254740991/);
  assert.equal((await env.me(u.tok)).credits, 100, 'nothing written');
  assert.equal((await env.ledger(u.tok)).length, 1);
  const ok = await post('{"amount": 9007199254740891}');
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.balance, 9007199254740991);
});

test('GET /v1/admin/stats: finished jobs per tool, timeouts apart from failures', async () => {
  const a = newUser('st1'); const b = newUser('st2'); const c = newUser('st3'); const d = newUser('st4');
  const ok = await env.submitTool(a.tok, 'veste_ai');
  const bad = await env.submitTool(b.tok, 'upscaler', { inputs: { prompt: 'EMU_FAIL' } });
  const cq = await env.submitTool(c.tok, 'veste_ai');
  assert.equal(cq.status, 'queued');
  assert.equal((await env.api('POST', `/v1/jobs/${cq.id}/cancel`, { token: c.tok })).status, 200);
  await env.waitStatus(a.tok, ok.id, 'completed', 10000);
  await env.waitStatus(b.tok, bad.id, 'failed', 10000);
  const r = await env.api('GET', '/v1/admin/stats?hours=24', { token: admin });
  assert.equal(r.status, 200, r.text);
  const t = r.json.tools;
  for (const name of ['upscaler', 'veste_ai']) {
    for (const k of ['completed', 'failed', 'cancelled', 'timeout']) assert.ok(Number.isInteger(t[name][k]), `${name}.${k}: ${r.text}`);
    for (const k of ['wait_p50_s', 'run_p50_s']) assert.ok(k in t[name], `${name}.${k}`);
  }
  // veste_ai: this test's completed one and cancelled one (earlier tests add to the totals).
  assert.ok(t.veste_ai.completed >= 2 && t.veste_ai.cancelled >= 1, r.text);
  assert.ok(t.upscaler.failed >= 1, r.text);
  assert.equal(t.upscaler.timeout, 0);
  const d0 = await env.api('GET', '/v1/admin/stats?hours=24', { token: d.tok });
  assertError(d0, 403, 'forbidden');
});

test('GET /metrics: Prometheus text', async () => {
  const r = await env.api('GET', '/metrics', { token: admin });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get('content-type') || '', /text\/plain/);
  const samples = r.text.split('\n').filter((l) => l && !l.startsWith('#'));
  assert.ok(samples.length > 0);
  for (const l of samples) assert.match(l, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)( -?\d+)?$/, l);
});

test('admin views need the admin role even for the job owner', async () => {
  const u = newUser('own');
  assertError(await env.api('GET', '/v1/admin/queue', { token: u.tok }), 403, 'forbidden');
  await waitFor(async () => (await env.queue()).active.length === 0, 10000, 'idle');
});
