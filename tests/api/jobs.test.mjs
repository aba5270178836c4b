// Submitting and reading jobs (docs/api.md §3, §5) and rules 3, 4 and 8.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, adminToken, assertError, assertJobShape } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 500, concurrency: 10 }); });
after(async () => { await env?.stop(); });

const TERMINAL = ['completed', 'failed', 'cancelled'];

async function grant(userId, amount) {
  return env.api('POST', `/v1/admin/users/${userId}/credits`, { token: adminToken(), body: { amount, reason: 'test' } });
}

test('validation: every bad request is 422 naming the field, and writes nothing', async () => {
  const u = newUser('val');
  const img = await env.upload(u.tok, 'png');
  const vid = await env.upload(u.tok, 'mp4');
  const cases = [
    ['unknown tool', { tool: 'teleporter', inputs: { image: img } }, 'tool'],
    ['unknown variant', { tool: 'upscaler', variant: 'ultra', inputs: { image: img } }, 'variant'],
    ['variant of a tool without variants', { tool: 'pose_changer', variant: 'pro', inputs: { person: img, reference: img } }, 'variant'],
    ['missing required input', { tool: 'upscaler', inputs: { resolution: 2048 } }, 'image'],
    ['missing second required input', { tool: 'pose_changer', inputs: { person: img } }, 'reference'],
    ['missing video', { tool: 'video_upscaler', inputs: {} }, 'video'],
    ['extra input', { tool: 'upscaler', inputs: { image: img, colour: 'red' } }, 'colour'],
    ['input of another tool', { tool: 'video_upscaler', inputs: { video: vid, image: img } }, 'image'],
    ['number given as a word', { tool: 'upscaler', inputs: { image: img, resolution: 'big' } }, 'resolution'],
    ['number given as a numeric string', { tool: 'upscaler', inputs: { image: img, resolution: '4096' } }, 'resolution'],
    ['below min', { tool: 'upscaler', inputs: { image: img, resolution: 511 } }, 'resolution'],
    ['above max', { tool: 'upscaler', inputs: { image: img, resolution: 8193 } }, 'resolution'],
    ['fraction above max', { tool: 'upscaler', inputs: { image: img, denoise: 1.01 } }, 'denoise'],
    ['negative', { tool: 'upscaler', inputs: { image: img, denoise: -0.1 } }, 'denoise'],
    ['text given as a number', { tool: 'upscaler', inputs: { image: img, prompt: 42 } }, 'prompt'],
    ['image given as a number', { tool: 'upscaler', inputs: { image: 7 } }, 'image'],
  ];
  for (const [name, body, field] of cases) {
    const r = await env.submit(u.tok, body);
    const e = assertError(r, 422, 'validation_failed', `${name}:`);
    assert.equal(typeof e.details?.fields, 'object', `${name}: details.fields in ${r.text}`);
    assert.equal(typeof e.details.fields[field], 'string', `${name}: details.fields.${field} in ${r.text}`);
  }
  // Two problems at once are both named.
  const r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: img, resolution: 'big', denoise: 5 } });
  const e = assertError(r, 422, 'validation_failed');
  assert.ok('resolution' in e.details.fields && 'denoise' in e.details.fields, r.text);

  assert.deepEqual(await env.me(u.tok), { user_id: u.id, credits: 100, active_job: null });
  const entries = await env.ledger(u.tok);
  assert.equal(entries.length, 1);
  assert.equal(entries[0].kind, 'grant');
  assert.deepEqual((await env.api('GET', '/v1/jobs', { token: u.tok })).json.jobs, []);
  assert.equal((await env.stats()).submitted, 0, 'nothing reached the provider');
});

test('submit: 201 job, charged in the same step, visible to its user only, completes with outputs', async () => {
  const u = newUser('sub');
  const other = newUser('other');
  const img = await env.upload(u.tok, 'png');
  const inputs = { image: img, resolution: 4096, denoise: 0.3, prompt: 'sharp and clean' };
  const r = await env.submit(u.tok, { tool: 'upscaler', inputs, session_id: 'tab-1' });
  assert.equal(r.status, 201, r.text);
  const j = assertJobShape(r.json);
  assert.match(j.id, /\S/);
  assert.equal(j.user_id, u.id);
  assert.equal(j.tool, 'upscaler');
  assert.equal(j.variant, 'pro', 'the first variant is the default');
  // Rule 2: a slot was free at submit, so the job did not wait in the queue.
  assert.ok(['starting', 'running'].includes(j.status), `status at submit ${j.status}`);
  assert.equal(j.position, null);
  assert.deepEqual(j.inputs, inputs);
  assert.deepEqual(j.outputs, []);
  assert.equal(j.error, null);
  assert.equal(j.cost, 10);
  assert.equal(j.credits_charged, true);
  assert.equal(j.credits_refunded, false);
  assert.equal(j.session_id, 'tab-1');
  assert.equal(j.finished_at, null);

  const me = await env.me(u.tok);
  assert.equal(me.user_id, u.id);
  assert.equal(me.credits, 90);
  assert.equal(me.active_job?.id, j.id);
  assert.ok(['starting', 'running'].includes(me.active_job.status));

  const entries = await env.ledger(u.tok);
  assert.equal(entries.length, 2, JSON.stringify(entries));
  const [charge, grantE] = entries;
  assert.equal(charge.kind, 'charge');
  assert.equal(charge.amount, -10);
  assert.equal(charge.balance_after, 90);
  assert.equal(charge.job_id, j.id);
  assert.equal(grantE.kind, 'grant');
  assert.equal(grantE.amount, 100);
  assert.equal(grantE.balance_after, 100);
  assert.ok(Date.parse(charge.at) >= Date.parse(grantE.at), 'newest first');
  assert.notEqual(charge.id, grantE.id);

  const got = await env.job(u.tok, j.id);
  assert.equal(got.id, j.id);
  assert.equal(got.created_at, j.created_at);

  // Another user's job is 404, exactly like a job that does not exist.
  assertError(await env.api('GET', `/v1/jobs/${j.id}`, { token: other.tok }), 404, 'not_found');
  assertError(await env.api('POST', `/v1/jobs/${j.id}/cancel`, { token: other.tok }), 404, 'not_found');
  assertError(await env.api('GET', '/v1/jobs/job_nope', { token: u.tok }), 404, 'not_found');
  assert.deepEqual((await env.api('GET', '/v1/jobs', { token: other.tok })).json.jobs, []);

  const done = assertJobShape(await env.waitStatus(u.tok, j.id, TERMINAL));
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.equal(done.error, null);
  assert.ok(done.outputs.length >= 1);
  for (const o of done.outputs) {
    assert.equal(typeof o.url, 'string');
    assert.equal(typeof o.type, 'string');
    const f = await fetch(o.url);
    assert.equal(f.status, 200, `output ${o.url} fetchable`);
    await f.arrayBuffer();
  }
  assert.equal(typeof done.provider_task_id, 'string');
  assert.ok(done.started_at && done.finished_at);
  assert.ok(Date.parse(done.started_at) >= Date.parse(done.created_at));
  assert.ok(Date.parse(done.finished_at) >= Date.parse(done.started_at));
  assert.equal(done.credits_refunded, false);
  assert.equal(done.cost, 10);
  assert.deepEqual(done.inputs, inputs);

  const after2 = await env.me(u.tok);
  assert.equal(after2.credits, 90);
  assert.equal(after2.active_job, null);
  assert.equal((await env.ledger(u.tok)).length, 2);

  // What went to the provider: the pro app, the upload first, the inputs on their nodes.
  const task = await env.task(done);
  assert.ok(task, 'the emulator knows the task');
  assert.equal(String(task.webappId), '2015865378030755841');
  const node = (id) => task.nodeInfoList.find((n) => String(n.nodeId) === id);
  assert.equal(node('7')?.fieldValue, 'sharp and clean');
  assert.equal(String(node('31')?.fieldValue), '4096');
  assert.equal(Number(node('33')?.fieldValue), 0.3);
  assert.ok(node('12')?.fieldValue, 'the image node names the uploaded file');
  assert.ok(task.webhookUrl.startsWith(`${env.url}/v1/webhooks/runninghub/`), task.webhookUrl);
});

test('GET /v1/jobs: newest first, status and tool filters, limit and cursor', async () => {
  const u = newUser('list');
  const j1 = await env.submitTool(u.tok, 'upscaler', { variant: 'standard', inputs: { prompt: 'one' } });
  await env.waitStatus(u.tok, j1.id, 'completed');
  const j2 = await env.submitTool(u.tok, 'pose_changer');
  await env.waitStatus(u.tok, j2.id, 'completed');
  const j3 = await env.submitTool(u.tok, 'upscaler', { inputs: { prompt: 'EMU_FAIL please' } });
  await env.waitStatus(u.tok, j3.id, 'failed');

  const ids = async (q) => {
    const r = await env.api('GET', '/v1/jobs' + q, { token: u.tok });
    assert.equal(r.status, 200, `${q}: ${r.text}`);
    r.json.jobs.forEach(assertJobShape);
    return { ids: r.json.jobs.map((x) => x.id), next: r.json.next_cursor };
  };
  let l = await ids('');
  assert.deepEqual(l.ids, [j3.id, j2.id, j1.id]);
  assert.equal(l.next, null);
  assert.deepEqual((await ids('?tool=upscaler')).ids, [j3.id, j1.id]);
  assert.deepEqual((await ids('?tool=pose_changer')).ids, [j2.id]);
  assert.deepEqual((await ids('?status=completed')).ids, [j2.id, j1.id]);
  assert.deepEqual((await ids('?status=failed')).ids, [j3.id]);
  assert.deepEqual((await ids('?status=queued')).ids, []);
  assert.deepEqual((await ids('?status=completed&tool=upscaler')).ids, [j1.id]);

  l = await ids('?limit=2');
  assert.deepEqual(l.ids, [j3.id, j2.id]);
  assert.notEqual(l.next, null, 'a second page exists');
  const l2 = await ids(`?limit=2&cursor=${encodeURIComponent(l.next)}`);
  assert.deepEqual(l2.ids, [j1.id]);
  assert.equal(l2.next, null);
  l = await ids('?limit=1');
  assert.deepEqual(l.ids, [j3.id]);
  const p2 = await ids(`?limit=1&cursor=${encodeURIComponent(l.next)}`);
  assert.deepEqual(p2.ids, [j2.id]);
  const p3 = await ids(`?limit=1&cursor=${encodeURIComponent(p2.next)}`);
  assert.deepEqual(p3.ids, [j1.id]);

  // The standard variant ran its own app, with the prompt on its own node.
  const t1 = await env.task(await env.job(u.tok, j1.id));
  assert.equal(String(t1.webappId), '2017030861371219969');
  assert.equal(t1.nodeInfoList.find((n) => String(n.nodeId) === '6')?.fieldValue, 'one');
  const t2 = await env.task(await env.job(u.tok, j2.id));
  assert.equal(String(t2.webappId), '2018451429635133442');
});

test('rule 3: one active job per user, across tools; 409 active_job_exists with details', async () => {
  const u = newUser('one');
  const j = await env.submitTool(u.tok, 'upscaler');
  const vid = await env.upload(u.tok, 'mp4');
  const r = await env.submit(u.tok, { tool: 'video_upscaler', inputs: { video: vid } });
  const e = assertError(r, 409, 'active_job_exists');
  assert.equal(e.details.job_id, j.id);
  assert.equal(e.details.tool, 'upscaler');
  assert.ok(['queued', 'starting', 'running'].includes(e.details.status), e.details.status);
  // The refused submit charged nothing.
  assert.equal((await env.me(u.tok)).credits, 90);
  assert.equal((await env.ledger(u.tok)).length, 2);
  assert.equal((await env.api('GET', '/v1/jobs', { token: u.tok })).json.jobs.length, 1);

  await env.waitStatus(u.tok, j.id, 'completed');
  const r2 = await env.submit(u.tok, { tool: 'video_upscaler', inputs: { video: vid } });
  assert.equal(r2.status, 201, r2.text);
  assert.equal((await env.me(u.tok)).credits, 70);
  await env.waitStatus(u.tok, r2.json.id, 'completed');
});

test('rule 4: 402 insufficient_credits with {balance, cost}, nothing written, never below 0', async () => {
  const u = newUser('poor');
  await env.me(u.tok);
  let g = await grant(u.id, -95);
  assert.equal(g.status, 200, g.text);
  assert.deepEqual(g.json, { balance: 5 });
  const before = await env.ledger(u.tok);
  const img = await env.upload(u.tok, 'png');

  let r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: img } });
  let e = assertError(r, 402, 'insufficient_credits');
  assert.deepEqual(e.details, { balance: 5, cost: 10 });
  r = await env.submit(u.tok, { tool: 'pose_changer', inputs: { person: img, reference: img } });
  e = assertError(r, 402, 'insufficient_credits');
  assert.deepEqual(e.details, { balance: 5, cost: 8 });
  // A refused submit with an Idempotency-Key does not burn the key.
  r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: img } }, { 'Idempotency-Key': 'poor-1' });
  assertError(r, 402, 'insufficient_credits');

  assert.equal((await env.me(u.tok)).credits, 5);
  assert.deepEqual(await env.ledger(u.tok), before);
  assert.deepEqual((await env.api('GET', '/v1/jobs', { token: u.tok })).json.jobs, []);

  g = await grant(u.id, 3);
  assert.deepEqual(g.json, { balance: 8 });
  r = await env.submit(u.tok, { tool: 'pose_changer', inputs: { person: img, reference: img } });
  assert.equal(r.status, 201, r.text);
  assert.equal((await env.me(u.tok)).credits, 0);
  const entries = await env.ledger(u.tok);
  assert.equal(entries[0].kind, 'charge');
  assert.equal(entries[0].amount, -8);
  assert.equal(entries[0].balance_after, 0);
  await env.waitStatus(u.tok, r.json.id, 'completed');

  r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: img } }, { 'Idempotency-Key': 'poor-1' });
  e = assertError(r, 402, 'insufficient_credits');
  assert.deepEqual(e.details, { balance: 0, cost: 10 });
  for (const x of await env.ledger(u.tok)) assert.ok(x.balance_after >= 0, JSON.stringify(x));
  assert.equal((await env.me(u.tok)).credits, 0);
});

test('rule 8: a repeated Idempotency-Key returns the first job (200), charged once, per user', async () => {
  const a = newUser('idemA');
  const b = newUser('idemB');
  const key = `key-${Date.now()}`;
  const imgA = await env.upload(a.tok, 'png');
  const body = { tool: 'upscaler', inputs: { image: imgA } };
  const r1 = await env.submit(a.tok, body, { 'Idempotency-Key': key });
  assert.equal(r1.status, 201, r1.text);
  const r2 = await env.submit(a.tok, body, { 'Idempotency-Key': key });
  assert.equal(r2.status, 200, `repeat while active: ${r2.text}`);
  assert.equal(r2.json.id, r1.json.id);
  assertJobShape(r2.json);
  // Even with another body, the key names the first job.
  const imgA2 = await env.upload(a.tok, 'png');
  const r3 = await env.submit(a.tok, { tool: 'upscaler', variant: 'logo', inputs: { image: imgA2 } }, { 'Idempotency-Key': key });
  assert.equal(r3.status, 200, r3.text);
  assert.equal(r3.json.id, r1.json.id);
  assert.equal(r3.json.variant, 'pro');

  // The same key from another user is that user's own new job.
  const imgB = await env.upload(b.tok, 'png');
  const rb = await env.submit(b.tok, { tool: 'upscaler', inputs: { image: imgB } }, { 'Idempotency-Key': key });
  assert.equal(rb.status, 201, rb.text);
  assert.notEqual(rb.json.id, r1.json.id);
  assert.equal(rb.json.user_id, b.id);

  // Several repeats at once still make one job.
  const many = await Promise.all(Array.from({ length: 5 }, () => env.submit(a.tok, body, { 'Idempotency-Key': key })));
  for (const m of many) {
    assert.equal(m.status, 200, m.text);
    assert.equal(m.json.id, r1.json.id);
  }

  await env.waitStatus(a.tok, r1.json.id, 'completed');
  const r4 = await env.submit(a.tok, body, { 'Idempotency-Key': key });
  assert.equal(r4.status, 200, r4.text);
  assert.equal(r4.json.id, r1.json.id);
  assert.equal(r4.json.status, 'completed');

  assert.equal((await env.me(a.tok)).credits, 90);
  const charges = (await env.ledger(a.tok)).filter((x) => x.kind === 'charge');
  assert.equal(charges.length, 1);
  assert.equal((await env.api('GET', '/v1/jobs', { token: a.tok })).json.jobs.length, 1);
  assert.equal((await env.me(b.tok)).credits, 90);
  await env.waitStatus(b.tok, rb.json.id, 'completed');
});

test('concurrent submits of one user: exactly one job, charged once', async () => {
  const u = newUser('race');
  const img = await env.upload(u.tok, 'png');
  const rs = await Promise.all(Array.from({ length: 8 }, () => env.submit(u.tok, { tool: 'upscaler', inputs: { image: img } })));
  const ok = rs.filter((r) => r.status === 201);
  assert.equal(ok.length, 1, rs.map((r) => r.status).join(','));
  for (const r of rs.filter((x) => x.status !== 201)) assertError(r, 409, 'active_job_exists');
  assert.equal((await env.me(u.tok)).credits, 90);
  await env.waitStatus(u.tok, ok[0].json.id, 'completed');
});
