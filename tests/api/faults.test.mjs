// Faults (issue 4, item 7): fila killed with SIGKILL under load again and
// again, and a provider that refuses connections, answers 500, hangs, is
// full (421), or calls back twice, late, never or with junk. Whatever
// happens: every acknowledged job is there, every job ends, nothing is
// charged or refunded twice, the provider never runs more than `slots`
// tasks, and `fila check` finds the store clean (after each crash too).
//
// One emulator and one fila for the whole file; the tests run in order and
// the last one waits for every job any test made, then checks it all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, FILA_BIN, adminToken, newUser, pngBytes, run, sleep, startFila, storeSets, waitFor } from './harness.mjs';

const SLOTS = 3;
// poll_after=1: a callback lost (or sent while fila was dead) is made up
// for by polling within seconds. The emulator takes more tasks than fila
// has slots, so its max_running measures fila, not itself.
const SETS = [`queue.slots=${SLOTS}`, 'runninghub.poll_after=1'];
const TERMINAL = ['completed', 'failed', 'cancelled'];
const COST = { upscaler: 10 };
// FILA_KILL_ROUNDS=50 for a longer hunt.
const KILL_ROUNDS = Number(process.env.FILA_KILL_ROUNDS || 5);
const USERS_PER_ROUND = 10;

let env;
// Every job a client got 201/200 for: {id, tok, user}.
const acked = [];
// Jobs whose end a test does not wait for itself (the hung submit).
const pending = [];
// What was injected, per kind, for the figures printed at the end.
const faults = { kill9: 0, refuse: 0, error500: 0, hang: 0, busy421: 0, duplicate: 0, late: 0, lost: 0, malformed: 0 };

before(async () => {
  env = await Env.start({ durationMs: 400, concurrency: 10, sets: SETS });
  await env.emu.reset();
});
after(async () => { await env?.stop(); });

// ---- helpers ----------------------------------------------------------------

// `fila check` on this file's store, with fila's own settings.
async function filaCheck() {
  const r = await run(FILA_BIN, ['check',
    ...storeSets(env.dir).flatMap((s) => ['--set', s]),
    '--set', `uploads.dir=${env.dir}/uploads`,
    ...SETS.flatMap((s) => ['--set', s])], { cwd: env.dir, timeout: 20000 });
  assert.ok(!/usage:/.test(r.stderr), `fila check is not a command of ${FILA_BIN} yet (main.c): ${r.stderr}`);
  return r;
}

async function assertCheckClean(when) {
  const r = await filaCheck();
  assert.equal(r.code, 0, `fila check ${when}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /^check: \d+ users, \d+ jobs, 0 breaches/m, `fila check ${when}:\n${r.stdout}`);
}

// Rule 1 at the provider. When broken, name the jobs that had more than
// one task there (one webhook URL is one job): a submit resent after a
// crash while the first one had reached the provider leaves an orphan task.
async function assertProviderWithinSlots() {
  const s = await env.stats();
  const twice = tasksTwice(s);
  if (s.max_running > SLOTS) {
    assert.fail(`the provider ran ${s.max_running} tasks at once, slots = ${SLOTS}; ` +
      `jobs with more than one task: ${twice.length ? twice.join('; ') : 'none'}`);
  }
  return { stats: s, twice };
}

// "token… → taskId:STATUS, …" for each webhook URL (job) with several tasks.
function tasksTwice(s) {
  const per = new Map();
  for (const task of s.tasks) per.set(task.webhookUrl, [...(per.get(task.webhookUrl) || []), `${task.taskId}:${task.status}`]);
  return [...per].filter(([, v]) => v.length > 1).map(([k, v]) => `${k.split('/').pop().slice(0, 8)}… → ${v.join(', ')}`);
}

// Upload and submit with an Idempotency-Key; null when fila went away on
// the way (the attempt may or may not have been written).
async function trySubmit(u, key) {
  try {
    const up = await env.api('POST', '/v1/uploads', {
      token: u.tok, raw: pngBytes(), headers: { 'content-type': 'image/png' },
    });
    if (up.status !== 201) return null;
    const r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: up.json.id } }, { 'idempotency-key': key });
    if (r.status !== 201 && r.status !== 200) {
      assert.fail(`submit answered ${r.status}: ${r.text}`);
    }
    Object.defineProperty(r.json, '__status', { value: r.status });
    return r.json;
  } catch (e) {
    if (e.code === 'ERR_ASSERTION') throw e;
    return null; // connection reset or refused: fila is down
  }
}

// Submits one upscaler job for each user at once; records what was acked.
async function submitAll(users) {
  const jobs = await Promise.all(users.map(async (u) => {
    const j = await env.submitTool(u.tok, 'upscaler');
    acked.push({ id: j.id, tok: u.tok, user: u.id });
    return j;
  }));
  return jobs;
}

async function waitTerminal(entries, timeout) {
  const out = [];
  for (const a of entries) out.push(await env.waitStatus(a.tok, a.id, TERMINAL, timeout));
  return out;
}

// Each of the user's jobs has one charge, a refund iff it failed or was
// cancelled, and the balance is what the jobs left.
async function assertLedger(u) {
  const entries = await env.ledger(u.tok);
  const list = await env.api('GET', '/v1/jobs?limit=100', { token: u.tok });
  assert.equal(list.status, 200, list.text);
  let want = 100;
  for (const j of list.json.jobs) {
    const mine = entries.filter((e) => e.job_id === j.id);
    const charges = mine.filter((e) => e.kind === 'charge');
    const refunds = mine.filter((e) => e.kind === 'refund');
    assert.equal(charges.length, 1, `job ${j.id} charged once: ${JSON.stringify(mine)}`);
    assert.equal(charges[0].amount, -j.cost);
    const refundable = ['failed', 'cancelled'].includes(j.status);
    assert.equal(refunds.length, refundable ? 1 : 0, `job ${j.id} (${j.status}) refunds: ${JSON.stringify(mine)}`);
    assert.equal(j.credits_refunded, refundable);
    if (!refundable) want -= j.cost;
  }
  assert.equal((await env.me(u.tok)).credits, want, `balance of ${u.id}`);
}

// Runs body with the emulator configured as c, then puts it back.
async function withEmu(c, body) {
  await env.emu.config(c);
  try {
    return await body();
  } finally {
    await env.emu.config({ run_mode: 'normal', webhook: 'normal', fail_rate: 0 });
  }
}

// ---- kill -9 under load -------------------------------------------------------

test(`kill -9 under load, ${KILL_ROUNDS} rounds: acknowledged jobs survive, the store stays consistent`, async (t) => {
  const users = [];
  const seen = { queued: 0, starting: 0, running: 0, done: 0, lostAnswers: 0, foundByKey: 0 };
  for (let round = 0; round < KILL_ROUNDS; round++) {
    const batch = Array.from({ length: USERS_PER_ROUND }, (_, i) => ({ ...newUser(`k${round}u${i}`), key: `kill-${round}-${i}` }));
    users.push(...batch);
    // Everyone at once; the kill lands somewhere in the middle.
    const submits = batch.map(async (u) => {
      const j = await trySubmit(u, u.key);
      if (j) { acked.push({ id: j.id, tok: u.tok, user: u.id }); u.job = j.id; }
    });
    // Even rounds kill among the submits, odd ones among the tasks.
    await sleep(round % 2 === 0 ? 5 + Math.random() * 60 : 100 + Math.random() * 800);
    const exit = await env.fila.stop('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL', `fila died by the kill: ${JSON.stringify(exit)}`);
    faults.kill9++;
    await Promise.all(submits);

    // The crashed store, before any recovery, is already consistent.
    await assertCheckClean(`after kill ${round + 1}, before the restart`);
    env.fila = await startFila({ emuUrl: env.emu.url, dir: env.dir, port: env.fila.port, sets: SETS });
    for (const a of acked) {
      const st = (await env.job(a.tok, a.id)).status;
      seen[TERMINAL.includes(st) ? 'done' : st]++; // right after the restart
    }

    // What was answered is there; the rest is submitted again with the
    // same key, which finds the first if it was written after all.
    for (const a of acked) {
      const g = await env.job(a.tok, a.id);
      assert.equal(g.id, a.id);
    }
    for (const u of batch.filter((x) => !x.job)) {
      seen.lostAnswers++;
      const j = await trySubmit(u, u.key);
      assert.ok(j, `resubmit of ${u.id} after the restart`);
      if (j.__status === 200) seen.foundByKey++;
      acked.push({ id: j.id, tok: u.tok, user: u.id });
      u.job = j.id;
    }
  }
  const ends = await waitTerminal(acked, 40000);
  for (const f of ends) assert.equal(f.status, 'completed', `after the crashes: ${JSON.stringify(f)}`);
  for (const u of users) await assertLedger(u);
  assert.equal(new Set(acked.map((a) => a.id)).size, KILL_ROUNDS * USERS_PER_ROUND, 'one job per user and key');
  const { twice } = await assertProviderWithinSlots();
  await assertCheckClean('after the kill rounds');
  t.diagnostic(`kills survived: ${faults.kill9}, jobs acknowledged: ${acked.length}; ` +
    `found after restarts (summed over rounds): ${JSON.stringify(seen)}; ` +
    `jobs sent twice to the provider (a submit resent after a crash): ${twice.length}${twice.length ? ` (${twice.join('; ')})` : ''}`);
});

// ---- a provider that misbehaves on submit ------------------------------------

// fila's submit tries so far (every answer, or failure, of a provider
// submit is counted once in /metrics, whatever its code).
async function submitTries() {
  const r = await env.api('GET', '/metrics', { token: adminToken() });
  assert.equal(r.status, 200, r.text);
  let n = 0;
  for (const m of r.text.matchAll(/^fila_provider_answers_total\{call="submit",[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

// Under run_mode `mode` for 2 s, jobs submitted stay starting (slot kept,
// nothing failed or refunded) while fila retries; back to normal, they
// complete. The faults are the tries that did not start a task.
async function submitFault(mode, counter, t) {
  const users = [newUser(`${mode}A`), newUser(`${mode}B`)];
  const tries0 = await submitTries();
  const accepted0 = (await env.stats()).accepted;
  let jobs;
  await withEmu({ run_mode: mode }, async () => {
    jobs = await submitAll(users);
    await waitFor(async () => (await submitTries()) > tries0, 5000, `a submit answered under ${mode}`);
    const t0 = Date.now();
    while (Date.now() - t0 < 2000) {
      for (const [i, j] of jobs.entries()) {
        const cur = await env.job(users[i].tok, j.id);
        assert.equal(cur.status, 'starting', `under ${mode}: ${JSON.stringify(cur)}`);
        assert.equal(cur.credits_refunded, false);
      }
      await sleep(150);
    }
  });
  const ends = await waitTerminal(jobs.map((j, i) => ({ id: j.id, tok: users[i].tok })), 40000);
  for (const f of ends) assert.equal(f.status, 'completed', `after ${mode}: ${JSON.stringify(f)}`);
  for (const u of users) await assertLedger(u);
  const s = await env.stats();
  const failedTries = (await submitTries()) - tries0 - (s.accepted - accepted0);
  assert.ok(failedTries >= 1, `some submit met ${mode}`);
  faults[counter] += failedTries;
  t.diagnostic(`${mode}: ${failedTries} submit tries failed, then ${s.accepted - accepted0} tasks ran`);
}

test('the provider refuses connections: jobs wait starting, then complete', async (t) => {
  await submitFault('refuse', 'refuse', t);
});

test('the provider answers 500: jobs wait starting, then complete', async (t) => {
  await submitFault('error500', 'error500', t);
});

test('421 storm (busy): jobs keep their slot and complete once there is room', async (t) => {
  await submitFault('busy', 'busy421', t);
});

test('the provider hangs past nothing fila would wait for: the job stays starting, not failed', async (t) => {
  const u = newUser('hang');
  const tries0 = await submitTries();
  const accepted0 = (await env.stats()).accepted;
  await withEmu({ run_mode: 'hang' }, async () => {
    const [j] = await submitAll([u]);
    acked.pop(); // waited for by the last test, among `pending`
    // fila's provider timeout is 30 s: well before it, nothing gives up,
    // and no answer came.
    await sleep(2500);
    const cur = await env.job(u.tok, j.id);
    assert.equal(cur.status, 'starting', JSON.stringify(cur));
    assert.equal(cur.error, null);
    assert.equal(await submitTries(), tries0, 'the submit is still hanging');
    assert.equal((await env.stats()).accepted, accepted0);
    faults.hang++;
    pending.push({ id: j.id, tok: u.tok, user: u.id });
  });
  // Back to normal: the hung call times out, the retry runs it; the last
  // test waits for it, so the others run meanwhile.
});

// ---- callbacks that come twice, late, never, or as junk ------------------------

// Three jobs (one fails at the provider) under webhook mode `mode`.
async function callbackFault(mode, conf, t) {
  const users = [newUser(`${mode}A`), newUser(`${mode}B`), newUser(`${mode}F`)];
  const before0 = await env.stats();
  let ends;
  await withEmu({ webhook: mode, ...conf }, async () => {
    const jobs = [];
    for (const [i, u] of users.entries()) {
      const opts = i === 2 ? { inputs: { prompt: 'EMU_FAIL' } } : {};
      const j = await env.submitTool(u.tok, 'upscaler', opts);
      acked.push({ id: j.id, tok: u.tok, user: u.id });
      jobs.push({ id: j.id, tok: u.tok });
    }
    ends = await waitTerminal(jobs, 30000);
    const s = await env.stats();
    faults[mode] += (s.completed + s.failed) - (before0.completed + before0.failed);
    if (mode === 'late') {
      // The late callbacks arrive after the jobs were polled to their end.
      await waitFor(async () => (await env.stats()).webhooks_sent - before0.webhooks_sent >= 3, 10000, 'the late callbacks');
    }
  });
  assert.deepEqual(ends.map((f) => f.status), ['completed', 'completed', 'failed'], JSON.stringify(ends));
  assert.equal(ends[2].error.code, 'provider_error');
  // Nothing changed after the end, whatever came in since.
  for (const [i, u] of users.entries()) {
    const again = await env.job(u.tok, ends[i].id);
    assert.equal(again.status, ends[i].status);
    assert.equal(again.updated_at, ends[i].updated_at, `${mode}: job ${again.id} changed after its end`);
    await assertLedger(u);
  }
  t.diagnostic(`${mode}: ${faults[mode]} tasks called back ${mode}`);
}

test('duplicate callbacks: applied once, refunded once', async (t) => {
  await callbackFault('duplicate', {}, t);
});

test('late callbacks (after polling ended the jobs): 200, nothing changes', async (t) => {
  await callbackFault('late', { webhook_delay_ms: 2500 }, t);
});

test('lost callbacks: polling ends the jobs', async (t) => {
  await callbackFault('lost', {}, t);
});

test('malformed callbacks: refused, the real one that follows is applied', async (t) => {
  await callbackFault('malformed', {}, t);
});

// ---- the end ------------------------------------------------------------------

test('in the end: every job terminal, the provider never above the slots, fila check clean', async (t) => {
  const all = acked.concat(pending);
  const ends = await waitTerminal(all, 45000);
  for (const f of ends) assert.ok(TERMINAL.includes(f.status));
  const hung = ends.slice(acked.length);
  for (const f of hung) assert.equal(f.status, 'completed', `the hung submit, retried: ${JSON.stringify(f)}`);
  await waitFor(async () => (await env.queue()).slots.used === 0, 15000, 'every slot free');
  const { stats: s } = await assertProviderWithinSlots();
  await assertCheckClean('at the end');
  t.diagnostic(`faults injected: ${JSON.stringify(faults)}; jobs: ${all.length}; provider max_running: ${s.max_running}`);
});
