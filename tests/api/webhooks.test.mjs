// Provider callbacks (docs/api.md §7, rule 4's "whatever the number of webhooks"):
// token per job, unknown token 404, terminal jobs never change, malformed
// bodies refused, eventData as a string or an object.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, assertError, assertJobShape, waitFor, sleep } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 400, concurrency: 10 }); });
after(async () => { await env?.stop(); });

const OOM = 'Allocation on device 0 would exceed allowed memory. (out of memory)';

function hookPath(task) {
  const prefix = `${env.url}/v1/webhooks/runninghub/`;
  assert.ok(task.webhookUrl.startsWith(prefix), `webhook URL ${task.webhookUrl} under ${prefix}`);
  return task.webhookUrl.slice(env.url.length);
}

function successBody(taskId, fileUrl, asObject = false) {
  const data = { code: 0, msg: 'success', data: [{ fileUrl, fileType: 'png', taskCostTime: '1', nodeId: '9' }] };
  return { event: 'TASK_END', taskId, eventData: asObject ? data : JSON.stringify(data) };
}

function failureBody(taskId, message) {
  const data = { code: 805, msg: 'APIKEY_TASK_STATUS_ERROR', data: { failedReason: { node_name: 'KSampler', exception_message: message, node_id: '3', traceback: '...' } } };
  return { event: 'TASK_END', taskId, eventData: JSON.stringify(data) };
}

async function settle() {
  await waitFor(async () => (await env.queue()).active.length === 0, 10000, 'no active jobs');
}

test('each job has its own unguessable webhook token; an unknown token is 404', async () => {
  const u = newUser('tok'); const v = newUser('tok2');
  const a = await env.submitTool(u.tok, 'upscaler');
  const b = await env.submitTool(v.tok, 'upscaler');
  const ra = await env.waitStatus(u.tok, a.id, ['running', 'completed']);
  const rb = await env.waitStatus(v.tok, b.id, ['running', 'completed']);
  const ta = await env.task(ra); const tb = await env.task(rb);
  const tokA = hookPath(ta).split('/').pop(); const tokB = hookPath(tb).split('/').pop();
  assert.notEqual(tokA, tokB);
  assert.ok(tokA.length >= 16, `token ${tokA} is long enough not to be guessed`);
  assert.ok(!tokA.includes(a.id) && !tokA.includes(ta.taskId), 'the token is not derived from ids');

  for (const t of ['0000000000000000000000000000000000000000', tokA.slice(0, -1) + (tokA.endsWith('0') ? '1' : '0'), 'x']) {
    const r = await env.api('POST', `/v1/webhooks/runninghub/${t}`, { body: successBody(ta.taskId, 'http://127.0.0.1:1/evil.png') });
    assertError(r, 404, 'not_found', `token ${t}:`);
  }
  await env.waitStatus(u.tok, a.id, 'completed');
  await env.waitStatus(v.tok, b.id, 'completed');
  const fa = await env.job(u.tok, a.id);
  assert.ok(!fa.outputs.some((o) => o.url.includes('evil')));
});

test('a replayed or contrary callback for a completed job: 200, nothing changes', async () => {
  const u = newUser('replay');
  const j = await env.submitTool(u.tok, 'upscaler');
  const done = await env.waitStatus(u.tok, j.id, 'completed');
  const task = await env.task(done);
  const p = hookPath(task);
  const replay = successBody(task.taskId, done.outputs[0].url);
  for (const body of [replay, replay, failureBody(task.taskId, 'late failure'), successBody(task.taskId, 'http://127.0.0.1:1/other.png', true)]) {
    const r = await env.api('POST', p, { body });
    assert.equal(r.status, 200, r.text);
  }
  const now = await env.job(u.tok, j.id);
  assert.deepEqual(now, done, 'a terminal job never changes');
  assert.equal((await env.me(u.tok)).credits, 90);
  assert.ok(!(await env.ledger(u.tok)).some((e) => e.kind === 'refund'));
});

test('duplicate failure callbacks refund once', async () => {
  await env.emu.config({ webhook: 'duplicate' });
  const u = newUser('dup');
  let j;
  const sent0 = (await env.stats()).webhooks_sent;
  try {
    j = await env.submitTool(u.tok, 'upscaler', { inputs: { prompt: 'EMU_FAIL' } });
    const f = await env.waitStatus(u.tok, j.id, ['completed', 'failed', 'cancelled']);
    assert.equal(f.status, 'failed');
    assert.deepEqual(f.error, { code: 'provider_error', message: OOM });
    await waitFor(async () => (await env.stats()).webhooks_sent >= sent0 + 2, 5000, 'both callbacks delivered');
  } finally {
    await env.emu.config({ webhook: 'normal' });
  }
  // And the same failure sent again by hand, several times at once.
  const task = await env.task(await env.job(u.tok, j.id));
  const rs = await Promise.all(Array.from({ length: 4 }, () => env.api('POST', hookPath(task), { body: failureBody(task.taskId, OOM) })));
  for (const r of rs) assert.equal(r.status, 200, r.text);
  const entries = (await env.ledger(u.tok)).filter((e) => e.job_id === j.id);
  assert.deepEqual(entries.map((e) => [e.kind, e.amount]), [['refund', 10], ['charge', -10]]);
  assert.equal((await env.me(u.tok)).credits, 100);
  assert.equal((await env.job(u.tok, j.id)).credits_refunded, true);
});

test('the emulator\'s malformed-then-good callbacks: the job still completes once', async () => {
  await env.emu.config({ webhook: 'malformed' });
  const u = newUser('malf');
  try {
    const j = await env.submitTool(u.tok, 'upscaler');
    const f = await env.waitStatus(u.tok, j.id, ['completed', 'failed', 'cancelled']);
    assert.equal(f.status, 'completed', JSON.stringify(f));
  } finally {
    await env.emu.config({ webhook: 'normal' });
  }
});

test('malformed callbacks are 4xx and change nothing; eventData as an object completes the job', async () => {
  await env.emu.config({ webhook: 'lost' });
  const u = newUser('byhand');
  let j, task;
  try {
    j = await env.submitTool(u.tok, 'upscaler');
    const running = await env.waitStatus(u.tok, j.id, 'running');
    await waitFor(async () => (await env.task(running))?.status === 'SUCCESS', 5000, 'the task to end at the provider');
    task = await env.task(running);
  } finally {
    await env.emu.config({ webhook: 'normal' });
  }
  const p = hookPath(task);
  for (const [name, raw] of [
    ['not JSON', '{not json'],
    ['empty', ''],
    ['an array', '[1,2,3]'],
    ['eventData not JSON', JSON.stringify({ event: 'TASK_END', taskId: task.taskId, eventData: '{oops' })],
    ['no eventData', JSON.stringify({ event: 'TASK_END', taskId: task.taskId })],
  ]) {
    const r = await env.api('POST', p, { raw, headers: { 'content-type': 'application/json' } });
    assert.ok(r.status >= 400 && r.status < 500, `${name}: ${r.status} ${r.text}`);
    assert.equal(typeof r.json?.error?.code, 'string', `${name}: ${r.text}`);
    const h = await env.api('GET', '/healthz');
    assert.equal(h.status, 200, `healthz after ${name}`);
    const cur = await env.job(u.tok, j.id);
    assert.equal(cur.status, 'running', `after ${name}: ${JSON.stringify(cur)}`);
  }
  const fileUrl = `${env.emu.url}/files/by-hand-${Date.now()}.png`;
  const r = await env.api('POST', p, { body: successBody(task.taskId, fileUrl, true) });
  assert.equal(r.status, 200, r.text);
  const done = assertJobShape(await env.waitStatus(u.tok, j.id, ['completed', 'failed'], 5000));
  assert.equal(done.status, 'completed');
  assert.deepEqual(done.outputs, [{ url: fileUrl, type: 'png' }]);
  assert.equal((await env.me(u.tok)).credits, 90);
});

test('a failure callback sent by hand: failed with that message, refunded once', async () => {
  await env.emu.config({ webhook: 'lost' });
  const u = newUser('failhand');
  let j, task;
  try {
    j = await env.submitTool(u.tok, 'pose_changer');
    const running = await env.waitStatus(u.tok, j.id, 'running');
    task = await env.task(running);
  } finally {
    await env.emu.config({ webhook: 'normal' });
  }
  const msg = 'Node 60 (LoadImage): image too small';
  for (let i = 0; i < 3; i++) {
    const r = await env.api('POST', hookPath(task), { body: failureBody(task.taskId, msg) });
    assert.equal(r.status, 200, r.text);
  }
  const f = await env.waitStatus(u.tok, j.id, ['completed', 'failed'], 5000);
  assert.deepEqual(f.error, { code: 'provider_error', message: msg });
  assert.deepEqual((await env.ledger(u.tok)).filter((e) => e.job_id === j.id).map((e) => e.kind), ['refund', 'charge']);
  assert.equal((await env.me(u.tok)).credits, 100);
  // A later success report does not revive it.
  const r = await env.api('POST', hookPath(task), { body: successBody(task.taskId, `${env.emu.url}/files/x.png`) });
  assert.equal(r.status, 200);
  await sleep(100);
  assert.equal((await env.job(u.tok, j.id)).status, 'failed');
  await settle();
});
