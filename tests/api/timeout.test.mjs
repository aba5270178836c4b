// Rule 6: nothing stays stuck. queue_timeout 2 s, run_timeout 3 s, tasks
// that would take 20 s: jobs end failed/timeout, refunded once, the task is
// cancelled at the provider and the slot comes back.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, waitFor, assertJobShape } from './harness.mjs';

let env;
before(async () => {
  env = await Env.start({ durationMs: 20000, concurrency: 10, sets: ['queue.slots=1', 'queue.queue_timeout=2', 'queue.run_timeout=3'] });
});
after(async () => { await env?.stop(); });
beforeEach(async () => { await env.clearQueue(); });

function refundedOnce(entries, jobId, cost) {
  assert.deepEqual(entries.filter((e) => e.job_id === jobId).map((e) => [e.kind, e.amount]), [['refund', cost], ['charge', -cost]], JSON.stringify(entries));
}

test('rule 6: queued past queue_timeout and running past run_timeout end failed/timeout, refunded', async () => {
  const A = newUser('tA'); const B = newUser('tB');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'pose_changer');
  assert.equal(b.status, 'queued');
  const t0 = Date.now();

  const fb = assertJobShape(await env.waitStatus(B.tok, b.id, ['failed', 'cancelled', 'completed', 'starting', 'running'], 8000));
  assert.equal(fb.status, 'failed', `the queued job timed out in the queue: ${JSON.stringify(fb)}`);
  assert.equal(fb.error.code, 'timeout');
  assert.equal(fb.credits_refunded, true);
  assert.equal(fb.position, null);
  assert.ok(Date.now() - t0 >= 1500, 'not before queue_timeout');
  refundedOnce(await env.ledger(B.tok), b.id, 8);
  assert.equal((await env.me(B.tok)).credits, 100);

  const running = await env.job(A.tok, a.id);
  const fa = assertJobShape(await env.waitStatus(A.tok, a.id, ['failed', 'cancelled', 'completed'], 10000));
  assert.equal(fa.status, 'failed');
  assert.equal(fa.error.code, 'timeout');
  assert.equal(fa.credits_refunded, true);
  refundedOnce(await env.ledger(A.tok), a.id, 10);
  // The task was cancelled at the provider, and then the slot is free.
  await waitFor(async () => (await env.task(fa))?.status === 'CANCELLED', 5000, 'the provider task to be cancelled');
  assert.ok(running.provider_task_id === null || running.provider_task_id === fa.provider_task_id);
  await waitFor(async () => (await env.queue()).slots.used === 0, 5000, 'the slot to be released');
  const C = newUser('tC');
  const c = await env.submitTool(C.tok, 'upscaler');
  assert.ok(['starting', 'running'].includes(c.status), c.status);
  assert.equal((await env.api('POST', `/v1/jobs/${c.id}/cancel`, { token: C.tok })).status, 200);
  await waitFor(async () => (await env.queue()).slots.used === 0, 5000, 'the slot to be released');
});

test('rule 6: a job kept starting by a busy provider also times out', async () => {
  await env.emu.config({ run_mode: 'busy' });
  try {
    const u = newUser('tbusy');
    const j = await env.submitTool(u.tok, 'upscaler');
    assert.equal(j.status, 'starting');
    const f = await env.waitStatus(u.tok, j.id, ['failed', 'cancelled', 'completed', 'running'], 12000);
    assert.equal(f.status, 'failed', JSON.stringify(f));
    assert.equal(f.error.code, 'timeout');
    refundedOnce(await env.ledger(u.tok), j.id, 10);
    await waitFor(async () => (await env.queue()).slots.used === 0, 5000, 'the slot to be released');
  } finally {
    await env.emu.config({ run_mode: 'normal' });
  }
  assert.ok((await env.stats()).max_running <= 1);
});
