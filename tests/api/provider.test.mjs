// Rule 5: provider failures end the job failed with the provider's own text
// (refunded once, not re-queued); capacity refusals are not failures. Also
// the polling fallback of docs/api.md §7 when no callback comes.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, assertJobShape, waitFor, sleep } from './harness.mjs';

const OOM = 'Allocation on device 0 would exceed allowed memory. (out of memory)';

function refundedOnce(entries, jobId, cost) {
  const mine = entries.filter((e) => e.job_id === jobId).map((e) => [e.kind, e.amount]);
  assert.deepEqual(mine, [['refund', cost], ['charge', -cost]], JSON.stringify(entries));
}

describe('provider failures', () => {
  let env;
  // poll_after=1: a lost callback is made up for by polling within seconds.
  before(async () => { env = await Env.start({ durationMs: 500, concurrency: 10, sets: ['runninghub.poll_after=1'] }); });
  after(async () => { await env?.stop(); });

  test('rule 5: a failed task ends failed/provider_error with the exact provider message, refunded once', async () => {
    const u = newUser('fail');
    const j = await env.submitTool(u.tok, 'upscaler', { inputs: { prompt: 'please EMU_FAIL now' } });
    const f = assertJobShape(await env.waitStatus(u.tok, j.id, ['completed', 'failed', 'cancelled']));
    assert.equal(f.status, 'failed');
    assert.deepEqual(f.error, { code: 'provider_error', message: OOM });
    assert.equal(f.credits_refunded, true);
    assert.deepEqual(f.outputs, []);
    assert.equal(typeof f.provider_task_id, 'string');
    assert.equal((await env.me(u.tok)).credits, 100);
    assert.equal((await env.me(u.tok)).active_job, null);
    refundedOnce(await env.ledger(u.tok), j.id, 10);
    // Not re-queued: one task at the provider, and the job stays failed.
    await sleep(700);
    const again = await env.job(u.tok, j.id);
    assert.equal(again.status, 'failed');
    assert.equal(again.updated_at, f.updated_at);
    const s = await env.stats();
    assert.equal(s.tasks.filter((t) => t.nodeInfoList.some((n) => n.fieldValue === 'please EMU_FAIL now')).length, 1);
    refundedOnce(await env.ledger(u.tok), j.id, 10);
  });

  test('rule 5: the message is the provider\'s, whatever it says', async () => {
    const msg = 'CUDA error: an illegal memory access was encountered (node 31)';
    await env.emu.config({ fail_message: msg });
    try {
      const v = newUser('fail3');
      const k = await env.submitTool(v.tok, 'upscaler', { variant: 'logo', inputs: { prompt: 'EMU_FAIL' } });
      const f = await env.waitStatus(v.tok, k.id, ['completed', 'failed']);
      assert.deepEqual(f.error, { code: 'provider_error', message: msg });
      assert.equal(f.variant, 'logo');
      refundedOnce(await env.ledger(v.tok), k.id, 10);
    } finally {
      await env.emu.config({ fail_message: OOM });
    }
  });

  test('rule 5: a submit the provider refuses for good ends failed/provider_rejected with its text', async () => {
    const u = newUser('rej');
    const j = await env.submitTool(u.tok, 'upscaler', { inputs: { prompt: 'EMU_REJECT' } });
    const f = assertJobShape(await env.waitStatus(u.tok, j.id, ['completed', 'failed', 'cancelled']));
    assert.equal(f.status, 'failed');
    assert.equal(f.error.code, 'provider_rejected');
    assert.match(f.error.message, /APIKEY_INVALID_NODE_INFO/);
    assert.equal(f.provider_task_id, null);
    assert.equal(f.credits_refunded, true);
    refundedOnce(await env.ledger(u.tok), j.id, 10);
    assert.equal((await env.me(u.tok)).credits, 100);
    // The slot came back: a new job runs.
    const ok = await env.submitTool(u.tok, 'upscaler');
    assert.equal((await env.waitStatus(u.tok, ok.id, ['completed', 'failed'])).status, 'completed');
  });

  test('rule 5: a provider busy for a while (421) keeps the job starting, then it completes', async () => {
    const before = await env.stats();
    await env.emu.config({ run_mode: 'busy' });
    let j;
    const u = newUser('busy');
    try {
      j = await env.submitTool(u.tok, 'upscaler');
      assert.ok(['starting', 'running'].includes(j.status), j.status);
      const t0 = Date.now();
      await waitFor(async () => (await env.stats()).refused_capacity > before.refused_capacity, 5000, 'a capacity refusal');
      // It keeps its slot and its place: starting, not failed, not queued.
      while (Date.now() - t0 < 1800) {
        const cur = await env.job(u.tok, j.id);
        assert.equal(cur.status, 'starting', JSON.stringify(cur));
        assert.equal(cur.error, null);
        await sleep(100);
      }
      assert.equal((await env.queue()).slots.used, 1);
    } finally {
      await env.emu.config({ run_mode: 'normal' });
    }
    const f = await env.waitStatus(u.tok, j.id, ['completed', 'failed', 'cancelled'], 40000);
    assert.equal(f.status, 'completed', JSON.stringify(f));
    assert.equal(f.credits_refunded, false);
    const charges = (await env.ledger(u.tok)).filter((e) => e.job_id === j.id);
    assert.deepEqual(charges.map((e) => e.kind), ['charge']);
    assert.equal((await env.me(u.tok)).credits, 90);
  });

  test('§7: with the callback lost, the job still completes by polling', async () => {
    await env.emu.config({ webhook: 'lost' });
    try {
      const u = newUser('poll');
      const j = await env.submitTool(u.tok, 'upscaler');
      const f = await env.waitStatus(u.tok, j.id, ['completed', 'failed', 'cancelled'], 20000);
      assert.equal(f.status, 'completed', JSON.stringify(f));
      assert.ok(f.outputs.length >= 1);
      assert.equal((await fetch(f.outputs[0].url)).status, 200);
      const v = newUser('pollfail');
      const k = await env.submitTool(v.tok, 'upscaler', { inputs: { prompt: 'EMU_FAIL' } });
      const g = await env.waitStatus(v.tok, k.id, ['completed', 'failed', 'cancelled'], 20000);
      assert.deepEqual(g.error, { code: 'provider_error', message: OOM });
      refundedOnce(await env.ledger(v.tok), k.id, 10);
    } finally {
      await env.emu.config({ webhook: 'normal' });
    }
  });
});

describe('a provider with less room than fila has slots', () => {
  let env;
  // fila has 3 slots, the provider takes 1 task at a time and answers 421.
  before(async () => { env = await Env.start({ durationMs: 400, concurrency: 1, sets: ['queue.slots=3'] }); });
  after(async () => { await env?.stop(); });

  test('rule 5: capacity refusals are retried; every job completes, none fails', async () => {
    const users = Array.from({ length: 4 }, (_, i) => newUser(`cap${i}`));
    const jobs = [];
    for (const u of users) jobs.push(await env.submitTool(u.tok, 'upscaler'));
    const fins = await Promise.all(jobs.map((j, i) => env.waitStatus(users[i].tok, j.id, ['completed', 'failed', 'cancelled'], 60000)));
    for (const f of fins) {
      assert.equal(f.status, 'completed', JSON.stringify(f));
      assert.equal(f.credits_refunded, false);
    }
    const s = await env.stats();
    assert.ok(s.refused_capacity > 0, 'the provider did refuse for capacity');
    assert.equal(s.accepted, 4);
    for (const u of users) assert.equal((await env.me(u.tok)).credits, 90);
  });
});
