// Cancelling (docs/api.md §5, §6): queued and running jobs, refunds exactly once
// (rule 4), 409 job_finished, admin cancel, session leave (rule 8's sessions).
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, adminToken, assertError, assertJobShape, waitFor } from './harness.mjs';

let env;
// One slot and 1.5 s tasks: the second job of a test waits in the queue.
before(async () => { env = await Env.start({ durationMs: 1500, concurrency: 10, sets: ['queue.slots=1'] }); });
after(async () => { await env?.stop(); });
beforeEach(async () => { await env.clearQueue(); });

const TERMINAL = ['completed', 'failed', 'cancelled'];

function assertRefundedOnce(entries, jobId, cost) {
  const mine = entries.filter((e) => e.job_id === jobId);
  assert.deepEqual(mine.map((e) => [e.kind, e.amount]), [['refund', cost], ['charge', -cost]], JSON.stringify(entries));
  assert.equal(entries[0].kind, 'refund', 'the refund is the newest entry');
  assert.equal(entries[0].balance_after, 100);
}

async function drain() {
  await waitFor(async () => {
    const q = await env.queue();
    return q.active.length === 0 && q.queued.length === 0;
  }, 20000, 'the queue to drain');
}

test('cancel a queued job: 200 cancelled, refunded once, the queue moves up; again is 409', async () => {
  const A = newUser('runA'); const B = newUser('qB'); const C = newUser('qC');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'pose_changer');
  const c = await env.submitTool(C.tok, 'upscaler');
  assert.equal(b.status, 'queued');
  assert.equal(c.position, 2);

  const r = await env.api('POST', `/v1/jobs/${b.id}/cancel`, { token: B.tok });
  assert.equal(r.status, 200, r.text);
  const j = assertJobShape(r.json);
  assert.equal(j.id, b.id);
  assert.equal(j.status, 'cancelled');
  assert.equal(j.position, null);
  assert.equal(j.error.code, 'cancelled');
  assert.equal(typeof j.error.message, 'string');
  assert.equal(j.credits_refunded, true);
  assert.notEqual(j.finished_at, null);
  assert.equal(j.started_at, null, 'a cancelled queued job never started');

  assert.equal((await env.me(B.tok)).credits, 100);
  assert.equal((await env.me(B.tok)).active_job, null);
  assertRefundedOnce(await env.ledger(B.tok), b.id, 8);
  assert.equal((await env.job(C.tok, c.id)).position, 1, 'C moved up');

  const again = await env.api('POST', `/v1/jobs/${b.id}/cancel`, { token: B.tok });
  const e = assertError(again, 409, 'job_finished');
  assert.deepEqual(e.details, { status: 'cancelled' });
  // Many cancels at once: still one refund.
  const many = await Promise.all(Array.from({ length: 5 }, () => env.api('POST', `/v1/jobs/${b.id}/cancel`, { token: B.tok })));
  for (const m of many) assertError(m, 409, 'job_finished');
  assertRefundedOnce(await env.ledger(B.tok), b.id, 8);
  assert.equal((await env.me(B.tok)).credits, 100);

  // The user may submit again at once.
  const b2 = await env.submitTool(B.tok, 'upscaler');
  assert.equal(b2.status, 'queued');
  assert.equal(b2.position, 2);
  const rc = await env.api('POST', `/v1/jobs/${b2.id}/cancel`, { token: B.tok });
  assert.equal(rc.status, 200, rc.text);

  // The cancelled job stays cancelled and never reached the provider.
  await env.waitStatus(C.tok, c.id, 'completed', 20000);
  const bb = await env.job(B.tok, b.id);
  assert.equal(bb.status, 'cancelled');
  assert.equal(bb.provider_task_id, null);
  assert.equal((await env.job(A.tok, a.id)).status, 'completed');
  await drain();
});

test('cancel a running job: cancelled at the provider too, refunded once, the slot goes on', async () => {
  const A = newUser('runX'); const D = newUser('nextD');
  const a = await env.submitTool(A.tok, 'video_upscaler');
  const d = await env.submitTool(D.tok, 'upscaler');
  assert.equal(d.status, 'queued');
  const running = await env.waitStatus(A.tok, a.id, 'running');
  assert.equal(typeof running.provider_task_id, 'string');

  const r = await env.api('POST', `/v1/jobs/${a.id}/cancel`, { token: A.tok });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'cancelled');
  assert.equal(r.json.error.code, 'cancelled');
  assert.equal(r.json.credits_refunded, true);

  await waitFor(async () => (await env.task(running))?.status === 'CANCELLED', 5000, 'the emulator task to be CANCELLED');
  // The next job gets the slot once the provider let go, never two at once.
  const dj = await env.waitStatus(D.tok, d.id, ['starting', 'running', 'completed'], 10000);
  assert.ok(Date.parse(dj.started_at) >= Date.parse(r.json.finished_at) - 50);
  assertError(await env.api('POST', `/v1/jobs/${a.id}/cancel`, { token: A.tok }), 409, 'job_finished');
  assert.equal((await env.me(A.tok)).credits, 100);
  const ledger = await env.ledger(A.tok);
  assert.deepEqual(ledger.filter((e) => e.job_id === a.id).map((e) => [e.kind, e.amount]), [['refund', 20], ['charge', -20]]);
  await env.waitStatus(D.tok, d.id, 'completed', 10000);
  // Still cancelled after the task's time has passed.
  const fin = await env.job(A.tok, a.id);
  assert.equal(fin.status, 'cancelled');
  assert.deepEqual(fin.outputs, []);
  assert.equal((await env.stats()).max_running, 1);
});

test('cancel a completed job is 409 job_finished {status:"completed"}, nothing refunded', async () => {
  const u = newUser('done');
  const j = await env.submitTool(u.tok, 'upscaler');
  await env.waitStatus(u.tok, j.id, 'completed', 10000);
  const e = assertError(await env.api('POST', `/v1/jobs/${j.id}/cancel`, { token: u.tok }), 409, 'job_finished');
  assert.deepEqual(e.details, { status: 'completed' });
  assert.equal((await env.me(u.tok)).credits, 90);
  assert.ok(!(await env.ledger(u.tok)).some((x) => x.kind === 'refund'));
  assertError(await env.api('POST', '/v1/jobs/job_missing/cancel', { token: u.tok }), 404, 'not_found');
});

test('admin cancel: any user\'s job, error code "admin", refunded once', async () => {
  const A = newUser('adA'); const B = newUser('adB');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'upscaler');
  const r = await env.api('POST', `/v1/admin/jobs/${b.id}/cancel`, { token: adminToken() });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.status, 'cancelled');
  assert.equal(r.json.error.code, 'admin');
  assert.equal(r.json.credits_refunded, true);
  assertRefundedOnce(await env.ledger(B.tok), b.id, 10);
  assertError(await env.api('POST', `/v1/admin/jobs/${b.id}/cancel`, { token: adminToken() }), 409, 'job_finished');
  assertError(await env.api('POST', '/v1/admin/jobs/job_nope/cancel', { token: adminToken() }), 404, 'not_found');
  // The user sees the admin's cancel; their own cancel now is 409.
  assertError(await env.api('POST', `/v1/jobs/${b.id}/cancel`, { token: B.tok }), 409, 'job_finished');
  const ra = await env.api('POST', `/v1/admin/jobs/${a.id}/cancel`, { token: adminToken() });
  assert.equal(ra.status, 200, ra.text);
  assert.equal(ra.json.error.code, 'admin');
  assertRefundedOnce(await env.ledger(A.tok), a.id, 10);
  await drain();
});

test('session leave: cancels that user\'s queued jobs of that session only (session_left)', async () => {
  const R = newUser('sessR'); const X = newUser('sessX'); const Y = newUser('sessY');
  const r = await env.submitTool(R.tok, 'upscaler', { session_id: 'tab-1' });
  const x = await env.submitTool(X.tok, 'upscaler', { session_id: 'tab-1' });
  const y = await env.submitTool(Y.tok, 'upscaler', { session_id: 'tab-1' });
  assert.equal(x.status, 'queued');
  assert.equal(y.status, 'queued');

  const other = await env.api('POST', '/v1/sessions/tab-2/leave', { token: X.tok });
  assert.equal(other.status, 204, other.text);
  assert.equal((await env.job(X.tok, x.id)).status, 'queued', 'another session id changes nothing');

  const lv = await env.api('POST', '/v1/sessions/tab-1/leave', { token: X.tok });
  assert.equal(lv.status, 204, lv.text);
  assert.equal(lv.text, '');
  const xj = await env.job(X.tok, x.id);
  assert.equal(xj.status, 'cancelled');
  assert.equal(xj.error.code, 'session_left');
  assert.equal(xj.credits_refunded, true);
  assertRefundedOnce(await env.ledger(X.tok), x.id, 10);
  // Y's identical session id is Y's own: untouched, and now first in line.
  const yj = await env.job(Y.tok, y.id);
  assert.equal(yj.status, 'queued');
  assert.equal(yj.position, 1);
  // Leaving does not cancel a running job of that session.
  assert.ok(['starting', 'running', 'completed'].includes((await env.job(R.tok, r.id)).status));
  const lr = await env.api('POST', '/v1/sessions/tab-1/leave', { token: R.tok });
  assert.equal(lr.status, 204);
  assert.notEqual((await env.job(R.tok, r.id)).error?.code, 'session_left');
  // Leaving twice refunds nothing more.
  assert.equal((await env.api('POST', '/v1/sessions/tab-1/leave', { token: X.tok })).status, 204);
  assertRefundedOnce(await env.ledger(X.tok), x.id, 10);
  assertError(await env.api('POST', '/v1/sessions/tab-1/leave'), 401, 'unauthorized');
  await env.waitStatus(Y.tok, y.id, TERMINAL, 20000);
  await drain();
});
