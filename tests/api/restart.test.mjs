// docs/api.md §1: SIGTERM exits 0; a job is never lost by a restart or a crash;
// queued jobs keep their order, finished ones stay as they were.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, waitFor } from './harness.mjs';

let env;
// One slot, 1.2 s tasks; poll_after=1 so a callback that arrived while fila
// was down is made up for by polling.
before(async () => { env = await Env.start({ durationMs: 1200, concurrency: 10, sets: ['queue.slots=1', 'runninghub.poll_after=1'] }); });
after(async () => { await env?.stop(); });
beforeEach(async () => { await env.clearQueue(); });

const TERMINAL = ['completed', 'failed', 'cancelled'];

test('SIGTERM exits 0; queued jobs keep their order, completed ones stay', async () => {
  const O = newUser('old');
  const old = await env.submitTool(O.tok, 'upscaler');
  const oldDone = await env.waitStatus(O.tok, old.id, 'completed', 10000);

  const A = newUser('rA'); const B = newUser('rB'); const C = newUser('rC');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'pose_changer');
  const c = await env.submitTool(C.tok, 'video_upscaler');
  assert.deepEqual([b.position, c.position], [1, 2]);

  const exit = await env.restart();
  assert.deepEqual(exit, { code: 0, signal: null }, `fila exit on SIGTERM; stderr: ${env.fila.stderr().slice(-1000)}`);

  // Right after the restart: nothing lost, same order.
  const q = await env.queue();
  const toks = { [a.id]: A.tok, [b.id]: B.tok, [c.id]: C.tok };
  for (const j of [a, b, c]) {
    const g = await env.job(toks[j.id], j.id);
    assert.equal(g.id, j.id, `job ${j.id} survived`);
    assert.equal(g.created_at, j.created_at);
  }
  const queuedOrder = q.queued.map((j) => j.id);
  assert.deepEqual(queuedOrder, [b.id, c.id].filter((id) => queuedOrder.includes(id)), 'queued order kept');
  assert.deepEqual(q.queued.map((j) => j.position), q.queued.map((_, i) => i + 1));
  assert.deepEqual(await env.job(O.tok, old.id), oldDone, 'a completed job is unchanged by a restart');

  const fa = await env.waitStatus(A.tok, a.id, TERMINAL, 20000);
  const fb = await env.waitStatus(B.tok, b.id, TERMINAL, 20000);
  const fc = await env.waitStatus(C.tok, c.id, TERMINAL, 20000);
  for (const f of [fa, fb, fc]) assert.equal(f.status, 'completed', JSON.stringify(f));
  assert.ok(Date.parse(fb.started_at) > Date.parse(fa.started_at));
  assert.ok(Date.parse(fc.started_at) > Date.parse(fb.started_at));
  for (const [u, cost] of [[A, 10], [B, 8], [C, 20]]) {
    assert.equal((await env.me(u.tok)).credits, 100 - cost);
    assert.equal((await env.ledger(u.tok)).filter((e) => e.kind === 'charge').length, 1);
  }
  assert.ok((await env.stats()).max_running <= 1);
});

test('kill -9: a job answered 201 survives the crash and completes; nothing is charged twice', async () => {
  const A = newUser('kA'); const B = newUser('kB');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'upscaler');
  assert.equal(b.status, 'queued');
  await env.restart({ signal: 'SIGKILL' });
  const gb = await env.job(B.tok, b.id);
  assert.equal(gb.id, b.id);
  assert.ok(['queued', 'starting', 'running', 'completed'].includes(gb.status), gb.status);
  const fa = await env.waitStatus(A.tok, a.id, TERMINAL, 20000);
  const fb = await env.waitStatus(B.tok, b.id, TERMINAL, 20000);
  assert.equal(fa.status, 'completed', JSON.stringify(fa));
  assert.equal(fb.status, 'completed', JSON.stringify(fb));
  assert.equal((await env.me(A.tok)).credits, 90);
  assert.equal((await env.me(B.tok)).credits, 90);
  assert.ok((await env.stats()).max_running <= 1, 'one slot, even across the crash');
});

test('a cancelled job stays cancelled and refunded once across a restart', async () => {
  const A = newUser('cA'); const B = newUser('cB');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'upscaler');
  const r = await env.api('POST', `/v1/jobs/${b.id}/cancel`, { token: B.tok });
  assert.equal(r.status, 200, r.text);
  await env.restart();
  const gb = await env.job(B.tok, b.id);
  assert.equal(gb.status, 'cancelled');
  assert.equal(gb.credits_refunded, true);
  assert.deepEqual((await env.ledger(B.tok)).filter((e) => e.job_id === b.id).map((e) => e.kind), ['refund', 'charge']);
  await env.waitStatus(A.tok, a.id, TERMINAL, 20000);
  await waitFor(async () => (await env.queue()).active.length === 0, 10000, 'idle');
});

test('a job whose submit reached the provider before a crash is not sent again while its task runs', async () => {
  // The provider starts the task but its answer is lost: fila dies with
  // the job starting and no task id. After the restart the account runs
  // one task fila does not know of, so the job waits in its slot; the
  // task's own callback then ends it. One task, one charge.
  await env.emu.config({ run_mode: 'accept_hang', duration_ms: 2500 });
  try {
    const U = newUser('lost');
    const before = (await env.emu.stats()).tasks.length;
    const j = await env.submitTool(U.tok, 'upscaler');
    assert.equal(j.status, 'starting');
    await waitFor(async () => (await env.emu.stats()).running === 1, 5000, 'the task to start at the provider');
    await env.restart({ signal: 'SIGKILL' });
    await env.emu.config({ run_mode: 'normal' });
    const seen = [];
    const f = await waitFor(async () => {
      const s = await env.emu.stats();
      seen.push(s.running);
      const g = await env.job(U.tok, j.id);
      return TERMINAL.includes(g.status) ? g : null;
    }, 15000, 'the job to end by its first task');
    assert.equal(f.status, 'completed', JSON.stringify(f));
    const mine = (await env.emu.stats()).tasks.slice(before);
    assert.equal(mine.length, 1, `one task for the job, not a second: ${JSON.stringify(mine)}`);
    assert.equal(f.provider_task_id, mine[0].taskId);
    assert.ok(Math.max(...seen) <= 1, `never more tasks than slots: ${seen}`);
    const entries = (await env.ledger(U.tok)).filter((e) => e.job_id === j.id);
    assert.deepEqual(entries.map((e) => e.kind), ['charge']);
  } finally {
    await env.emu.config({ run_mode: 'normal', duration_ms: 1200 });
  }
});
