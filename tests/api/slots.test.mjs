// Rule 1: never more than queue.slots jobs starting or running, whatever the
// burst; every job still ends. The emulator allows 10, fila must use 3.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, waitFor, assertJobShape } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 400, concurrency: 10 }); });
after(async () => { await env?.stop(); });

test('rule 1: 20 users at once with 3 slots: never a 4th, all complete, FIFO positions', async () => {
  const users = Array.from({ length: 20 }, (_, i) => newUser(`burst${i}`));
  const tools = ['upscaler', 'pose_changer', 'veste_ai', 'video_upscaler'];
  const kinds = { upscaler: { image: 'png' }, pose_changer: { person: 'png', reference: 'png' }, veste_ai: { person: 'jpeg', clothing: 'png' }, video_upscaler: { video: 'mp4' } };
  const bodies = await Promise.all(users.map(async (u, i) => {
    const tool = tools[i % 4];
    const inputs = {};
    for (const [name, kind] of Object.entries(kinds[tool])) inputs[name] = await env.upload(u.tok, kind);
    return { tool, inputs };
  }));

  const violations = [];
  let samples = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [q, s] = await Promise.all([env.queue(), env.stats()]);
      samples++;
      if (q.slots.total !== 3) violations.push(`slots.total ${q.slots.total}`);
      if (q.slots.used > 3) violations.push(`slots.used ${q.slots.used}`);
      if (q.active.length > 3) violations.push(`active ${q.active.length}`);
      if (s.running > 3) violations.push(`emulator running ${s.running}`);
      const pos = q.queued.map((j) => j.position);
      if (pos.some((p, i) => p !== i + 1)) violations.push(`queued positions ${pos.join(',')}`);
      if (q.queued.length > 0 && q.active.length < 3 && q.slots.used < 3) {
        // A free slot with jobs waiting can only be a moment between a finish and its promotion.
        violations.push(`idle? used ${q.slots.used} active ${q.active.length} queued ${q.queued.length}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  })();

  let done;
  try {
    const rs = await Promise.all(users.map((u, i) => env.submit(u.tok, bodies[i])));
    for (const r of rs) assert.equal(r.status, 201, r.text);
    const jobs = rs.map((r) => assertJobShape(r.json));
    const startedAtSubmit = jobs.filter((j) => j.status !== 'queued').length;
    assert.ok(startedAtSubmit <= 3, `${startedAtSubmit} jobs started at submit`);
    done = await Promise.all(jobs.map((j, i) => env.waitStatus(users[i].tok, j.id, ['completed', 'failed', 'cancelled'], 60000)));
  } finally {
    sampling = false;
    await sampler;
  }

  for (const d of done) assert.equal(d.status, 'completed', JSON.stringify(d));
  const hard = violations.filter((v) => !v.startsWith('idle?'));
  assert.deepEqual(hard, [], `rule 1 broken in ${samples} samples`);
  // A slot may look free for an instant between a finish and the next start,
  // not for most of the run.
  const idle = violations.length - hard.length;
  assert.ok(idle <= Math.max(3, samples / 4), `slots idle while jobs waited in ${idle}/${samples} samples`);
  assert.ok(samples >= 5, `only ${samples} samples`);

  const s = await env.stats();
  assert.ok(s.max_running <= 3, `emulator saw ${s.max_running} tasks at once`);
  assert.equal(s.max_running, 3, 'the three slots were used');
  assert.equal(s.completed, 20);
  assert.equal(s.failed, 0);
  assert.equal(s.refused_capacity, 0, 'fila never asked past its slots');
  assert.equal(s.accepted, 20, 'each job ran once');
  for (const u of users) assert.equal((await env.me(u.tok)).credits, 100 - done[users.indexOf(u)].cost);
  const q = await env.queue();
  assert.equal(q.slots.used, 0);
  assert.deepEqual(q.active, []);
  assert.deepEqual(q.queued, []);
});

test('rule 1: many parallel submits by one user and by many users never exceed the slots', async () => {
  await env.emu.reset?.().catch(() => {});
  const users = Array.from({ length: 9 }, (_, i) => newUser(`wave${i}`));
  const imgs = await Promise.all(users.map((u) => env.upload(u.tok, 'png')));
  // Each user fires three submits at once: one wins (rule 3), two are 409.
  const rs = await Promise.all(users.flatMap((u, i) => [0, 1, 2].map(() => env.submit(u.tok, { tool: 'upscaler', inputs: { image: imgs[i] } }))));
  const created = rs.filter((r) => r.status === 201).map((r) => r.json);
  assert.equal(created.length, 9, rs.map((r) => r.status).join(','));
  for (const r of rs.filter((x) => x.status !== 201)) assert.equal(r.status, 409, r.text);
  let maxUsed = 0;
  await waitFor(async () => {
    const q = await env.queue();
    maxUsed = Math.max(maxUsed, q.slots.used, q.active.length);
    assert.ok(q.slots.used <= 3 && q.active.length <= 3, JSON.stringify(q.slots));
    return q.active.length === 0 && q.queued.length === 0;
  }, 30000, 'the queue to drain', 25);
  const s = await env.stats();
  assert.ok(s.max_running <= 3, `emulator saw ${s.max_running}`);
  for (const u of users) assert.equal((await env.me(u.tok)).credits, 90);
});
