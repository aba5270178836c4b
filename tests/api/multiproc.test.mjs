// Rule 1 across processes: two fila processes sharing one store hold at most
// queue.slots jobs starting/running between them, and one user still has at
// most one active job (rule 3) whichever process they reach.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, adminToken, waitFor, pngBytes, jpegBytes } from './harness.mjs';

let env;
let second;
before(async () => {
  env = await Env.start({ durationMs: 400, concurrency: 10, sets: ['queue.slots=2'] });
  second = await env.startSibling();
});
after(async () => { await env?.stop(); });

test('rule 1: two processes on one store never run more than queue.slots jobs', async () => {
  const users = Array.from({ length: 12 }, (_, i) => newUser(`mp${i}`));
  const bases = users.map((_, i) => (i % 2 ? second.url : env.url));
  const imgs = await Promise.all(users.map((u, i) => env.api('POST', '/v1/uploads', {
    token: u.tok, base: bases[i], raw: i % 2 ? jpegBytes() : pngBytes(),
    headers: { 'content-type': 'application/octet-stream' },
  })));
  for (const r of imgs) assert.equal(r.status, 201, r.text);

  let sampling = true;
  const bad = [];
  const sampler = (async () => {
    while (sampling) {
      const [q1, q2, s] = await Promise.all([
        env.api('GET', '/v1/admin/queue', { token: adminToken() }),
        env.api('GET', '/v1/admin/queue', { token: adminToken(), base: second.url }),
        env.stats(),
      ]);
      for (const q of [q1.json, q2.json]) {
        if (q.slots.used > 2 || q.active.length > 2) bad.push(JSON.stringify(q.slots) + ` active ${q.active.length}`);
      }
      if (s.running > 2) bad.push(`emulator running ${s.running}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();

  let rs;
  try {
    rs = await Promise.all(users.map((u, i) => env.api('POST', '/v1/jobs', {
      token: u.tok, base: bases[i], body: { tool: 'upscaler', inputs: { image: imgs[i].json.id } },
    })));
    for (const r of rs) assert.equal(r.status, 201, r.text);
    // Each job is visible through either process.
    for (const [i, r] of rs.entries()) {
      const other = await env.api('GET', `/v1/jobs/${r.json.id}`, { token: users[i].tok, base: bases[i] === env.url ? second.url : env.url });
      assert.equal(other.status, 200, other.text);
    }
    await Promise.all(rs.map((r, i) => waitFor(async () => {
      const g = await env.api('GET', `/v1/jobs/${r.json.id}`, { token: users[i].tok, base: bases[i] });
      return ['completed', 'failed', 'cancelled'].includes(g.json.status) && g.json;
    }, 60000, `job ${r.json.id} to end`)));
  } finally {
    sampling = false;
    await sampler;
  }
  assert.deepEqual(bad, []);
  const s = await env.stats();
  assert.ok(s.max_running <= 2, `emulator saw ${s.max_running} at once`);
  assert.equal(s.completed, 12);
  for (const [i, r] of rs.entries()) {
    const g = await env.api('GET', `/v1/jobs/${r.json.id}`, { token: users[i].tok });
    assert.equal(g.json.status, 'completed', g.text);
  }
});

test('rule 3 across processes: one user, two processes at once, one job', async () => {
  const u = newUser('mpone');
  const up = await env.api('POST', '/v1/uploads', { token: u.tok, raw: pngBytes(), headers: { 'content-type': 'image/png' } });
  assert.equal(up.status, 201, up.text);
  const body = { tool: 'upscaler', inputs: { image: up.json.id } };
  const rs = await Promise.all([env.url, second.url, env.url, second.url].map((base) => env.api('POST', '/v1/jobs', { token: u.tok, base, body })));
  const created = rs.filter((r) => r.status === 201);
  assert.equal(created.length, 1, rs.map((r) => `${r.status} ${r.text}`).join('\n'));
  for (const r of rs) if (r.status !== 201) assert.equal(r.json.error.code, 'active_job_exists');
  const me = await env.api('GET', '/v1/me', { token: u.tok, base: second.url });
  assert.equal(me.json.credits, 90);
  await waitFor(async () => (await env.api('GET', `/v1/jobs/${created[0].json.id}`, { token: u.tok })).json.status === 'completed', 10000, 'completion');
});
