// Capacity and cost (docs/api.md §9): several RunningHub accounts as one
// pool of slots, what each provider answer means, accounts that go down and
// come back, admission by estimated wait, and what each job cost.
//
// Each test starts its own emulator (with --accounts where it needs them)
// and its own fila: the accounts' state is what is tested.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, adminToken, waitFor, assertError, sleep } from './harness.mjs';

const admin = adminToken();
const envs = [];
after(async () => { for (const e of envs) await e.stop(); });

// An emulator and a fila; accounts: {name: fila slots}, each account's
// key its name (the emulator's --accounts gives each its concurrency).
async function start({ accounts, emuAccounts, durationMs = 800, sets = [], emuArgs = [] }) {
  const acc = Object.entries(accounts || {}).flatMap(([name, slots]) => [
    `runninghub.${name}.api_key=${name}`, `runninghub.${name}.slots=${slots}`]);
  const env = await Env.start({
    durationMs,
    emuArgs: [...(emuAccounts ? ['--accounts', emuAccounts] : []), ...emuArgs],
    sets: [...acc, ...sets],
  });
  envs.push(env);
  return env;
}

async function accountsView(env) {
  const r = await env.api('GET', '/v1/admin/accounts', { token: admin });
  assert.equal(r.status, 200, r.text);
  return r.json.accounts;
}

const byName = (list) => Object.fromEntries(list.map((a) => [a.name, a]));

async function metricsText(env) {
  const r = await env.api('GET', '/metrics', { token: admin });
  assert.equal(r.status, 200, r.text);
  return r.text;
}

const gauge = (text, name) => {
  const m = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
};

const done = (env, u, job, timeout = 20000) =>
  env.waitStatus(u.tok, job.id, ['completed', 'failed', 'cancelled'], timeout);

test('two accounts of 2 slots: 4 jobs at once, never 3 on one account, each job names its account', async () => {
  const env = await start({ accounts: { a1: 2, a2: 2 }, emuAccounts: 'a1:10,a2:10', durationMs: 1200 });

  const view = await accountsView(env);
  assert.deepEqual(view.map((a) => [a.name, a.slots, a.used, a.up]), [['a1', 2, 0, true], ['a2', 2, 0, true]]);
  assert.equal(view[0].base_url, env.emu.url);
  for (const a of view) {
    for (const k of Object.keys(a)) {
      assert.ok(['name', 'base_url', 'slots', 'used', 'up', 'down_reason', 'reachable', 'unreachable_reason', 'remain_coins', 'task_count'].includes(k), k);
    }
  }
  assert.equal((await env.queue()).slots.total, 4);

  const users = Array.from({ length: 10 }, (_, i) => newUser(`pool${i}`));
  const violations = [];
  const named = new Set(); // the accounts the admin queue view names
  let most = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [s, q, v] = await Promise.all([env.stats(), env.queue(), accountsView(env)]);
      for (const [name, a] of Object.entries(s.accounts)) if (a.running > 2) violations.push(`${name} runs ${a.running}`);
      if (q.active.length > 4) violations.push(`${q.active.length} active`);
      for (const a of v) if (a.used > a.slots) violations.push(`${a.name} holds ${a.used}`);
      for (const j of q.active) {
        if (!['a1', 'a2'].includes(j.account)) violations.push(`active job with account ${j.account}`);
        named.add(j.account);
      }
      most = Math.max(most, s.running);
      await sleep(30);
    }
  })();
  let jobs;
  try {
    jobs = await Promise.all(users.map((u) => env.submitTool(u.tok, 'upscaler')));
    jobs = await Promise.all(jobs.map((j, i) => done(env, users[i], j, 30000)));
  } finally {
    sampling = false;
    await sampler;
  }
  assert.deepEqual(violations, []);
  assert.deepEqual([...named].sort(), ['a1', 'a2'], 'the admin queue names each job\'s account');
  for (const j of jobs) {
    assert.equal(j.status, 'completed', JSON.stringify(j));
    assert.equal(j.account, undefined, 'a user does not see the account');
  }
  const s = await env.stats();
  assert.equal(s.accounts.a1.max_running, 2, JSON.stringify(s.accounts));
  assert.equal(s.accounts.a2.max_running, 2, JSON.stringify(s.accounts));
  assert.equal(s.max_running, 4, 'the four slots ran at once');
  assert.equal(most, 4);
  assert.equal(s.refused_capacity, 0, 'fila never asked an account past its slots');
  assert.equal(s.accounts.a1.accepted + s.accounts.a2.accepted, 10, 'each job ran once');
  // Each job's task ran on the account its slot names (the admin view).
  const tasks = Object.fromEntries(s.tasks.map((t) => [t.taskId, t.account]));
  const q = await env.queue();
  assert.deepEqual(q.active, []);
  for (const j of jobs) assert.ok(['a1', 'a2'].includes(tasks[j.provider_task_id]), JSON.stringify(j));
});

test('an account whose wallet empties mid-run goes down: the next job starts on the other account, charged once, never refunded; it comes back after down_for', async () => {
  const env = await start({
    accounts: { a1: 2, a2: 1 }, emuAccounts: 'a1:5:1000,a2:5:1000', durationMs: 1500,
    sets: ['runninghub.down_for=2'],
  });
  const [ua, ub, uc] = [newUser('wal-a'), newUser('wal-b'), newUser('wal-c')];

  // A runs on a1 (the most room); its wallet empties while it runs.
  const a = await env.submitTool(ua.tok, 'upscaler');
  await env.waitStatus(ua.tok, a.id, 'running');
  await env.emuCall('POST', '/emu/config', { accounts: { a1: { coins: 0 } } });

  // B goes to a1 (a tie of free slots: by name), which answers 416: a1 is
  // down and B moves to a2, where it runs.
  const b = await env.submitTool(ub.tok, 'upscaler');
  const bDone = await done(env, ub, b);
  assert.equal(bDone.status, 'completed', JSON.stringify(bDone));
  const s = await env.stats();
  assert.equal(s.refused_wallet, 1);
  assert.equal(s.tasks.find((t) => t.taskId === bDone.provider_task_id).account, 'a2');
  const ledger = (await env.ledger(ub.tok)).filter((e) => e.job_id === b.id);
  assert.deepEqual(ledger.map((e) => [e.kind, e.amount]), [['charge', -10]], 'charged once, no refund');
  assert.equal((await env.me(ub.tok)).credits, 90);
  assert.equal(bDone.credits_refunded, false);

  let view = byName(await accountsView(env));
  assert.equal(view.a1.up, false);
  assert.match(view.a1.down_reason, /^416 TASK_CREATE_FAILED_BY_NOT_ENOUGH_WALLET/);
  assert.equal(view.a2.up, true);
  assert.equal(view.a2.down_reason, undefined);
  const m = await metricsText(env);
  assert.equal(gauge(m, 'fila_account_up{account="a1"}'), 0);
  assert.equal(gauge(m, 'fila_account_up{account="a2"}'), 1);
  assert.equal(gauge(m, 'fila_account_slots{account="a1"}'), 2);
  assert.ok(/^fila_provider_answers_total\{call="submit",code="416",account="a1"\} 1$/m.test(m), m);
  assert.match(env.fila.stderr(), /account a1 is down for 2 s: 416/);

  // A (started before the wallet emptied) completes on a1 all the same.
  assert.equal((await done(env, ua, a)).status, 'completed');

  // Coins again; down_for later a1 is up and takes jobs.
  await env.emuCall('POST', '/emu/config', { accounts: { a1: { coins: 1000 } } });
  await waitFor(async () => byName(await accountsView(env)).a1.up, 6000, 'a1 up again');
  view = byName(await accountsView(env));
  assert.equal(view.a1.down_reason, undefined);
  const c = await env.submitTool(uc.tok, 'upscaler');
  const cDone = await done(env, uc, c);
  assert.equal(cDone.status, 'completed');
  assert.equal((await env.stats()).tasks.find((t) => t.taskId === cDone.provider_task_id).account, 'a1');
});

test('every account down: the queue waits, nothing fails, and it runs once one is back', async () => {
  const env = await start({
    accounts: { a1: 1, a2: 1 }, emuAccounts: 'a1:5,a2:5', durationMs: 300,
    sets: ['runninghub.down_for=2'],
  });
  await env.emuCall('POST', '/emu/config', { accounts: { a1: { state: 'expired' }, a2: { state: 'refused' } } });
  const users = [newUser('down0'), newUser('down1'), newUser('down2')];
  const jobs = [];
  for (const u of users) jobs.push(await env.submitTool(u.tok, 'upscaler'));
  await waitFor(async () => (await accountsView(env)).every((a) => !a.up), 5000, 'both accounts down');
  const view = byName(await accountsView(env));
  assert.match(view.a1.down_reason, /^802 /);
  assert.match(view.a2.down_reason, /^801 /);
  // Nothing failed: the jobs wait (started ones in their slots, the rest queued).
  for (const [i, j] of jobs.entries()) {
    const now = await env.job(users[i].tok, j.id);
    assert.ok(['starting', 'queued'].includes(now.status), JSON.stringify(now));
  }
  await env.emuCall('POST', '/emu/config', { accounts: { a1: { state: 'ok' }, a2: { state: 'ok' } } });
  for (const [i, j] of jobs.entries()) assert.equal((await done(env, users[i], j)).status, 'completed');
  for (const u of users) assert.equal((await env.me(u.tok)).credits, 90);
});

test('each capacity answer (421, 415, 814, 1003, 1011) keeps the job in its place until it runs', async () => {
  const env = await start({ durationMs: 300, sets: ['queue.slots=1'] });
  for (const code of [421, 415, 814, 1003, 1011]) {
    const [u1, u2] = [newUser(`cap${code}a`), newUser(`cap${code}b`)];
    await env.emuCall('POST', '/emu/config', { next: { code, count: 2 } });
    const j1 = await env.submitTool(u1.tok, 'upscaler');
    const j2 = await env.submitTool(u2.tok, 'upscaler');
    // j1 holds the slot (starting, retried); j2 waits behind it.
    await waitFor(async () => (await env.stats()).forced >= 1, 5000, `the ${code} answer`);
    const now1 = await env.job(u1.tok, j1.id);
    assert.ok(['starting', 'running', 'completed'].includes(now1.status), `${code}: ${JSON.stringify(now1)}`);
    const d1 = await done(env, u1, j1);
    const d2 = await done(env, u2, j2);
    assert.equal(d1.status, 'completed', `${code}: ${JSON.stringify(d1)}`);
    assert.equal(d2.status, 'completed', `${code}: ${JSON.stringify(d2)}`);
    assert.ok(Date.parse(d1.started_at) <= Date.parse(d2.started_at), `${code}: j1 keeps its place`);
    assert.equal((await env.me(u1.tok)).credits, 90, `${code}: charged once`);
    assert.equal((await env.stats()).forced, 2, `${code}: refused twice, then ran`);
    await env.emu.reset();
  }
  const v = await accountsView(env);
  assert.deepEqual(v.map((a) => [a.name, a.up]), [['default', true]], 'capacity never takes an account down');
});

test('803, 433, 435 fail the job provider_rejected with the provider\'s own text, refunded', async () => {
  const env = await start({ durationMs: 300 });
  for (const [code, msg] of [[803, 'APIKEY_INVALID_NODE_INFO: node 12 has no image'], [433, 'VALIDATE_PROMPT_FAILED'], [435, 'TASK_USER_EXCLAPI_INSTANCE_NOT_FOUND']]) {
    const u = newUser(`rej${code}`);
    await env.emuCall('POST', '/emu/config', { next: { code, msg, count: 1 } });
    const j = await done(env, u, await env.submitTool(u.tok, 'upscaler'));
    assert.equal(j.status, 'failed');
    assert.deepEqual(j.error, { code: 'provider_rejected', message: msg });
    assert.equal(j.credits_refunded, true);
    assert.equal((await env.me(u.tok)).credits, 100);
  }
  assert.equal((await accountsView(env))[0].up, true, 'a job\'s refusal is not the account\'s');
});

test('admission: 503 queue_full once the estimate passes max_wait, nothing charged, accepted again as the queue drains', async () => {
  const env = await start({ durationMs: 1500, sets: ['queue.slots=1', 'queue.max_wait=4'] });
  // No history yet: nothing is refused, however long the queue.
  const first = Array.from({ length: 3 }, (_, i) => newUser(`adm-h${i}`));
  const fj = [];
  for (const u of first) fj.push(await env.submitTool(u.tok, 'upscaler'));
  for (const [i, j] of fj.entries()) assert.equal((await done(env, first[i], j)).status, 'completed');

  // Runs take ~1.5 s: one starts, the next waits 1 round (1.5 s), then 2
  // (3 s); a fourth would wait 3 rounds (4.5 s > 4 s).
  const us = Array.from({ length: 4 }, (_, i) => newUser(`adm${i}`));
  const js = [];
  for (const u of us.slice(0, 3)) js.push(await env.submitTool(u.tok, 'upscaler'));
  const img = await env.upload(us[3].tok);
  const r = await env.submit(us[3].tok, { tool: 'upscaler', inputs: { image: img } }, { 'Idempotency-Key': 'adm-key' });
  const e = assertError(r, 503, 'queue_full');
  assert.equal(e.details.max_wait_s, 4);
  assert.ok(Number.isInteger(e.details.eta_s) && e.details.eta_s > 4 && e.details.eta_s <= 6, JSON.stringify(e));
  const retry = Number(r.headers.get('retry-after'));
  assert.ok(Number.isInteger(retry) && retry >= 1 && retry <= e.details.eta_s, `Retry-After ${r.headers.get('retry-after')}`);
  // Nothing charged or written.
  const me = await env.me(us[3].tok);
  assert.equal(me.credits, 100);
  assert.equal(me.active_job, null);
  assert.deepEqual((await env.ledger(us[3].tok)).map((x) => x.kind), ['grant']);

  // As the queue drains, the same submit is accepted.
  await env.waitStatus(us[1].tok, js[1].id, ['running', 'completed']);
  const again = await env.submit(us[3].tok, { tool: 'upscaler', inputs: { image: img } }, { 'Idempotency-Key': 'adm-key' });
  assert.equal(again.status, 201, again.text);
  // Its repeat is the same job, whatever the queue (rule 8).
  const rep = await env.submit(us[3].tok, { tool: 'upscaler', inputs: { image: img } }, { 'Idempotency-Key': 'adm-key' });
  assert.equal(rep.status, 200, rep.text);
  assert.equal(rep.json.id, again.json.id);
  for (const [i, j] of [...js, again.json].entries()) assert.equal((await done(env, us[i], j)).status, 'completed');
});

test('admission is off with queue.max_wait = 0', async () => {
  const env = await start({ durationMs: 400, sets: ['queue.slots=1', 'queue.max_wait=0'] });
  const u0 = newUser('off-h');
  await done(env, u0, await env.submitTool(u0.tok, 'upscaler'));
  const us = Array.from({ length: 5 }, (_, i) => newUser(`off${i}`));
  const js = [];
  for (const u of us) js.push(await env.submitTool(u.tok, 'upscaler')); // all 201
  for (const [i, j] of js.entries()) assert.equal((await done(env, us[i], j)).status, 'completed');
});

test('what each job cost the provider, and the margin per tool in the stats', async () => {
  const env = await start({
    accounts: { a1: 2, a2: 1 }, emuAccounts: 'a1:5:1000,a2:5:1000', durationMs: 300,
    emuArgs: ['--cost-coins', '7', '--cost-money', '0.15'],
  });
  const us = Array.from({ length: 5 }, (_, i) => newUser(`cost${i}`));
  const jobs = await Promise.all([
    env.submitTool(us[0].tok, 'upscaler'),
    env.submitTool(us[1].tok, 'upscaler'),
    env.submitTool(us[2].tok, 'upscaler'),
    env.submitTool(us[3].tok, 'upscaler', { inputs: { prompt: 'EMU_FAIL' } }),
    env.submitTool(us[4].tok, 'video_upscaler'),
  ]);
  const fin = await Promise.all(jobs.map((j, i) => done(env, us[i], j)));
  assert.deepEqual(fin.map((j) => j.status), ['completed', 'completed', 'completed', 'failed', 'completed']);
  for (const j of [fin[0], fin[1], fin[2], fin[4]]) {
    assert.equal(j.provider_cost.coins, 7, JSON.stringify(j));
    assert.equal(j.provider_cost.money, '0.15');
    assert.ok(Number.isInteger(j.provider_cost.seconds) && j.provider_cost.seconds >= 0, JSON.stringify(j));
  }
  assert.equal(fin[3].provider_cost, undefined, 'a failed task cost nothing');

  const r = await env.api('GET', '/v1/admin/stats?hours=1', { token: admin });
  assert.equal(r.status, 200, r.text);
  const up = r.json.tools.upscaler;
  assert.equal(up.credits_net, 30, 'three kept, one refunded');
  assert.equal(up.provider_coins, 21);
  assert.equal(up.provider_money, '0.45');
  const vid = r.json.tools.video_upscaler;
  assert.equal(vid.credits_net, 20);
  assert.equal(vid.provider_coins, 7);
  assert.equal(vid.provider_money, '0.15');
  assert.deepEqual([r.json.tools.pose_changer.credits_net, r.json.tools.pose_changer.provider_coins, r.json.tools.pose_changer.provider_money], [0, 0, '0.00']);

  // The accounts' coins as their status said (asked at start, then every
  // status_every): present once asked.
  const view = await accountsView(env);
  for (const a of view) assert.ok(a.remain_coins === undefined || Number.isInteger(a.remain_coins), JSON.stringify(a));
});

test('account health: remainCoins and currentTaskCounts of each account, asked every status_every', async () => {
  const env = await start({
    accounts: { a1: 1, a2: 1 }, emuAccounts: 'a1:5:500,a2:5:80', durationMs: 2500,
    sets: ['runninghub.status_every=1'],
  });
  const u = newUser('health');
  const j = await env.submitTool(u.tok, 'upscaler');
  await env.waitStatus(u.tok, j.id, 'running');
  const running = (await env.job(u.tok, j.id));
  await waitFor(async () => {
    const v = byName(await accountsView(env));
    return v.a1.task_count + v.a2.task_count === 1 && v.a1.remain_coins === 500 && v.a2.remain_coins === 80;
  }, 5000, 'the status of both accounts');
  const m = await metricsText(env);
  assert.equal(gauge(m, 'fila_account_remain_coins{account="a2"}'), 80);
  assert.equal(gauge(m, 'fila_account_tasks{account="a1"}') + gauge(m, 'fila_account_tasks{account="a2"}'), 1);
  assert.ok(running.status === 'running');
  await done(env, u, j);
});

test('a restart recovers each account\'s starting jobs against that account\'s own count', async () => {
  const env = await start({ accounts: { a1: 1, a2: 1 }, emuAccounts: 'a1:5,a2:5', durationMs: 3000 });
  // Both submits start a task but never answer: fila cannot know.
  await env.emuCall('POST', '/emu/config', { run_mode: 'accept_hang' });
  const [u1, u2] = [newUser('rec1'), newUser('rec2')];
  const j1 = await env.submitTool(u1.tok, 'upscaler');
  const j2 = await env.submitTool(u2.tok, 'upscaler');
  await waitFor(async () => (await env.stats()).accepted === 2, 5000, 'both tasks accepted');
  await env.restart({ signal: 'SIGKILL' });
  await env.emuCall('POST', '/emu/config', { run_mode: 'normal' });
  // Each account runs one task fila does not know of: neither job is sent
  // again; the tasks' callbacks end them, once each.
  const d1 = await done(env, u1, j1);
  const d2 = await done(env, u2, j2);
  assert.equal(d1.status, 'completed');
  assert.equal(d2.status, 'completed');
  const s = await env.stats();
  assert.equal(s.accepted, 2, 'no job sent twice');
  assert.equal(s.accounts.a1.max_running, 1);
  assert.equal(s.accounts.a2.max_running, 1);
  assert.equal((await env.me(u1.tok)).credits, 90);
});
