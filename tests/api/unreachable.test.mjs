// docs/api.md §11: a provider that cannot be reached is logged at most
// once a minute per account, counted under its own code, shown on the
// accounts view and by /healthz; its jobs keep their place and start once
// it answers again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { startEmu, startFila, freePort, newUser, adminToken, waitFor, Env } from './harness.mjs';

let fila;
let emu;
after(async () => {
  await fila?.stop();
  await emu?.stop();
  if (fila && !process.env.FILA_KEEP) fs.rmSync(fila.dir, { recursive: true, force: true });
});

test('an unreachable provider: logged once, code -1, /healthz and the accounts say so, the job waits and then runs', async () => {
  const port = await freePort(); // nothing listens there yet
  fila = await startFila({
    emuUrl: `http://127.0.0.1:${port}`,
    sets: ['runninghub.timeout=2', 'runninghub.status_every=1', 'queue.slots=1'],
  });
  const env = Object.assign(new Env(), { fila, extra: [] });
  const admin = adminToken();
  const u = newUser('lost');
  const before = (await env.me(u.tok)).credits;
  const { id } = await env.submitTool(u.tok, 'upscaler');

  const h = await waitFor(async () => {
    const x = await env.api('GET', '/healthz');
    return x.json.provider === 'unreachable' && x;
  }, 10000, '/healthz to say the provider is unreachable');
  assert.equal(h.status, 200);
  assert.deepEqual(h.json, { ok: true, provider: 'unreachable' });

  const acc = await env.api('GET', '/v1/admin/accounts', { token: admin });
  assert.equal(acc.status, 200, acc.text);
  const a = acc.json.accounts[0];
  assert.equal(a.up, true, 'unreachable is not down');
  assert.equal(a.reachable, false);
  assert.match(a.unreachable_reason, /\S/);

  const m = (await env.api('GET', '/metrics', { token: admin })).text;
  assert.match(m, /fila_provider_answers_total\{call="(submit|status)",code="-1",account="default"\} [1-9]/);
  assert.doesNotMatch(m, /fila_provider_answers_total\{[^}]*code="0"/);
  assert.match(m, /fila_account_reachable\{account="default"\} 0/);

  // Several calls failed by now (the submit, its checks, the status every
  // second): one log line.
  await new Promise((res) => setTimeout(res, 3000));
  const lines = fila.stderr().split('\n').filter((l) => /cannot be reached/.test(l));
  assert.equal(lines.length, 1, fila.stderr());
  assert.match(lines[0], new RegExp(`account default: the provider at http://127\\.0\\.0\\.1:${port} cannot be reached`));

  // The job kept its place: starting, in the one slot, nothing refunded.
  const j = await env.api('GET', `/v1/jobs/${id}`, { token: u.tok });
  assert.equal(j.json.status, 'starting', j.text);
  assert.ok((await env.me(u.tok)).credits < before, 'still charged: the job is not over');

  // The provider comes up on that address: the job runs to the end, and
  // fila says so once.
  emu = await startEmu({ durationMs: 100, args: ['--listen', `127.0.0.1:${port}`] });
  const done = await waitFor(async () => {
    const x = await env.api('GET', `/v1/jobs/${id}`, { token: u.tok });
    return x.json.status === 'completed' && x;
  }, 40000, 'the job to complete once the provider answers');
  assert.equal(done.json.status, 'completed');
  await waitFor(async () => (await env.api('GET', '/healthz')).text === '{"ok":true}', 10000, '/healthz to be plain again');
  assert.match(fila.stderr(), /account default: the provider answers again/);
  const back = await env.api('GET', '/v1/admin/accounts', { token: admin });
  assert.equal(back.json.accounts[0].reachable, true);
  assert.equal(back.json.accounts[0].unreachable_reason, undefined);
});

test('polls see it too: a running job polled while the provider is gone makes it unreachable, code -1 under "poll"', async () => {
  const env = await Env.start({
    durationMs: 600000,
    sets: ['runninghub.poll_after=1', 'runninghub.status_every=3600', 'runninghub.timeout=2'],
  });
  try {
    const u = newUser('polled');
    const { id } = await env.submitTool(u.tok, 'upscaler');
    await env.waitStatus(u.tok, id, 'running');
    const polled = /fila_provider_answers_total\{call="poll",code="0",account="default"\} [1-9]/;
    await waitFor(async () => polled.test((await env.api('GET', '/metrics', { token: adminToken() })).text),
      10000, 'a first poll answered');
    await env.emu.stop(); // only polls talk to it now: status is asked hourly
    const h = await waitFor(async () => {
      const x = await env.api('GET', '/healthz');
      return x.json.provider === 'unreachable' && x;
    }, 15000, '/healthz to say the provider is unreachable');
    assert.deepEqual(h.json, { ok: true, provider: 'unreachable' });
    const m = (await env.api('GET', '/metrics', { token: adminToken() })).text;
    assert.match(m, /fila_provider_answers_total\{call="poll",code="-1",account="default"\} [1-9]/);
    assert.equal((await env.job(u.tok, id)).status, 'running', 'a poll without an answer changes nothing');
    assert.match(env.fila.stderr(), /account default: the provider at \S+ cannot be reached \(poll\)/);
  } finally {
    await env.stop();
  }
});
