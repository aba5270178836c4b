// Rule 2: one global FIFO across tools; a free slot at submit starts the job
// at once. One slot and 1.2 s tasks make the order visible.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, assertError, assertJobShape } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 1200, concurrency: 10, sets: ['queue.slots=1'] }); });
after(async () => { await env?.stop(); });
beforeEach(async () => { await env.clearQueue(); });

test('rule 2: jobs of four tools start in submit order, positions 1,2,3 while the first runs', async () => {
  const A = newUser('A'); const B = newUser('B'); const C = newUser('C'); const D = newUser('D');
  const a = await env.submitTool(A.tok, 'upscaler');
  assert.ok(['starting', 'running'].includes(a.status), `a free slot starts the job at once, got ${a.status}`);
  assert.equal(a.position, null);
  const b = await env.submitTool(B.tok, 'pose_changer');
  const c = await env.submitTool(C.tok, 'video_upscaler');
  const d = await env.submitTool(D.tok, 'veste_ai');
  for (const [j, pos] of [[b, 1], [c, 2], [d, 3]]) {
    assertJobShape(j);
    assert.equal(j.status, 'queued', `${j.tool} at submit`);
    assert.equal(j.position, pos, `${j.tool} position at submit`);
    assert.equal(j.started_at, null);
  }
  assert.equal((await env.job(C.tok, c.id)).position, 2);

  let q = await env.queue();
  assert.deepEqual(q.slots, { total: 1, used: 1 });
  assert.deepEqual(q.active.map((j) => j.id), [a.id]);
  assert.deepEqual(q.queued.map((j) => [j.id, j.position]), [[b.id, 1], [c.id, 2], [d.id, 3]]);
  q.queued.forEach(assertJobShape);

  // A queued job counts as the user's active one (rule 3), whatever the tool.
  const img = await env.upload(B.tok, 'png');
  const e = assertError(await env.submit(B.tok, { tool: 'upscaler', inputs: { image: img } }), 409, 'active_job_exists');
  assert.deepEqual(e.details, { job_id: b.id, tool: 'pose_changer', status: 'queued' });
  assert.equal((await env.me(B.tok)).active_job.id, b.id);
  assert.equal((await env.me(B.tok)).active_job.position, 1);

  // When A ends, B takes the slot and everyone behind moves up one.
  await env.waitStatus(B.tok, b.id, ['starting', 'running']);
  const c2 = await env.job(C.tok, c.id);
  const d2 = await env.job(D.tok, d.id);
  assert.equal(c2.status, 'queued');
  assert.equal(c2.position, 1);
  assert.equal(d2.position, 2);
  assert.equal((await env.job(A.tok, a.id)).status, 'completed');

  const finals = await Promise.all([[A, a], [B, b], [C, c], [D, d]].map(([u, j]) => env.waitStatus(u.tok, j.id, ['completed', 'failed', 'cancelled'], 20000)));
  for (const f of finals) assert.equal(f.status, 'completed', JSON.stringify(f));
  const starts = finals.map((f) => Date.parse(f.started_at));
  for (let i = 1; i < 4; i++) {
    assert.ok(starts[i] > starts[i - 1], `started_at order: ${finals.map((f) => f.started_at).join(' ')}`);
    assert.ok(starts[i] >= Date.parse(finals[i - 1].finished_at) - 50, 'one slot: a job starts after the one before ends');
  }
  const s = await env.stats();
  assert.equal(s.max_running, 1);
  const order = finals.map((f) => s.tasks.findIndex((t) => t.taskId === f.provider_task_id));
  assert.ok(order.every((x) => x >= 0), 'every task known to the emulator');
  assert.deepEqual([...order].sort((x, y) => x - y), order, `emulator saw tasks in order ${order}`);
  assert.deepEqual(order.map((i) => String(s.tasks[i].webappId)),
    ['2015865378030755841', '2018451429635133442', '2018810750139109378', '2018755100210106369']);
});

test('rule 2: a job submitted while the slot is free starts at once, not queued', async () => {
  const q = await env.queue();
  assert.equal(q.slots.used, 0);
  const u = newUser('free');
  const j = await env.submitTool(u.tok, 'video_upscaler');
  assert.ok(['starting', 'running'].includes(j.status), j.status);
  assert.equal(j.position, null);
  assert.notEqual(j.started_at, null, 'started_at is set when the job takes a slot');
  await env.waitStatus(u.tok, j.id, 'completed');
});

test('rule 2: a user who submits again after their job ends goes to the back of the line', async () => {
  const X = newUser('X'); const Y = newUser('Y'); const Z = newUser('Z');
  const x1 = await env.submitTool(X.tok, 'upscaler');
  const y = await env.submitTool(Y.tok, 'upscaler');
  assert.equal(y.position, 1);
  await env.waitStatus(X.tok, x1.id, 'completed');
  // Y took the slot; X's new job queues behind Z who came before it.
  const z = await env.submitTool(Z.tok, 'pose_changer');
  const x2 = await env.submitTool(X.tok, 'upscaler');
  assert.equal(z.status, 'queued');
  assert.equal(x2.status, 'queued');
  assert.equal(x2.position, z.position + 1);
  const fz = await env.waitStatus(Z.tok, z.id, 'completed', 20000);
  const fx = await env.waitStatus(X.tok, x2.id, 'completed', 20000);
  assert.ok(Date.parse(fx.started_at) > Date.parse(fz.started_at));
  await env.waitStatus(Y.tok, y.id, 'completed');
});
