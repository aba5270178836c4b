// Three fila processes on one store, as behind a load balancer (docs/api.md
// §4 across processes): 200 users spread over them, webhooks landing on a
// process other than the one that started the task, then kill -9 of one
// process mid-run. Never more than queue.slots tasks at the provider, the
// global FIFO kept, one active job per user, credits exact, nothing lost or
// submitted twice, positions and event streams the same on every process,
// and `fila check` clean at the end. Runs on SQLite (one file) and, under
// make api-pg, on PostgreSQL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  startEmu, startFila, freePort, newUser, adminToken, waitFor, run, pngBytes,
  storeSets, FILA_BIN, SECRET,
} from './harness.mjs';

const SLOTS = 3;
const USERS = 200;
const TERMINAL = ['completed', 'failed', 'cancelled'];
const ARROWS = {
  queued: ['starting', 'cancelled', 'failed'],
  starting: ['running', 'failed', 'cancelled'],
  running: ['completed', 'failed', 'cancelled'],
};

let emu;
let dir;
let procs = []; // A's webhooks land on B, B's and C's on A
let sets;

before(async () => {
  emu = await startEmu({ durationMs: 600000, concurrency: 20 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fila-cluster-'));
  const ports = [await freePort(), await freePort(), await freePort()];
  sets = [`queue.slots=${SLOTS}`, 'runninghub.poll_after=2'];
  for (let i = 0; i < 3; i++) {
    procs.push(await startFila({
      emuUrl: emu.url, dir, port: ports[i],
      sets: [...sets, `server.public_url=http://127.0.0.1:${ports[i === 0 ? 1 : 0]}`],
    }));
  }
});

after(async () => {
  const exits = await Promise.all(procs.map((p) => p.stop()));
  if (process.env.FILA_KEEP) procs.forEach((p, i) => fs.writeFileSync(`${dir}/stderr-${i}.log`, p.stderr()));
  await emu?.stop();
  if (dir && !process.env.FILA_KEEP) fs.rmSync(dir, { recursive: true, force: true });
  procs.forEach((p, i) => {
    if (p.killed) return;
    assert.ok(exits[i].code === 0 && !/Sanitizer|runtime error:/.test(p.stderr()),
      `process ${i} did not stop cleanly (${JSON.stringify(exits[i])})\n${p.stderr().slice(-3000)}`);
  });
});

async function api(base, method, p, { tok, body, raw, headers = {} } = {}) {
  const h = { ...headers };
  if (tok) h.authorization = `Bearer ${tok}`;
  let data = raw;
  if (body !== undefined) {
    data = JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  const res = await fetch(base + p, { method, headers: h, body: data });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json };
}

const live = () => procs.filter((p) => !p.killed);
const admin = { tok: adminToken() };

// A job's event stream on one process, until its terminal event; ids and
// data of the 'job' events that carry an id.
async function jobStream(base, user, id, lastId) {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), 60000);
  const headers = { accept: 'text/event-stream' };
  if (lastId) headers['last-event-id'] = lastId;
  const events = [];
  try {
    const res = await fetch(`${base}/v1/jobs/${id}/events?access_token=${encodeURIComponent(user.tok)}`, { headers, signal: ac.signal });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const ev = { id: null, event: 'message', data: '' };
        for (const line of buf.slice(0, i).split('\n')) {
          const k = line.indexOf(':');
          if (k <= 0) continue;
          const field = line.slice(0, k);
          const val = line.slice(k + 1).replace(/^ /, '');
          if (field === 'id') ev.id = val;
          else if (field === 'event') ev.event = val;
          else if (field === 'data') ev.data += val;
        }
        buf = buf.slice(i + 2);
        if (ev.event !== 'job' || ev.id === null || ev.data === '') continue;
        ev.json = JSON.parse(ev.data);
        events.push({ id: ev.id, status: ev.json.status });
        if (TERMINAL.includes(ev.json.status)) return events;
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
  } finally {
    clearTimeout(t);
    ac.abort();
  }
  return events;
}

test('three processes, 200 users, kill -9 of one: the rules of §4 hold throughout', async () => {
  const [A, B, C] = procs;

  // Three long tasks hold the slots while the 200 jobs queue up.
  const blockers = [newUser('blk0'), newUser('blk1'), newUser('blk2')];
  const bjobs = [];
  for (const [i, u] of blockers.entries()) {
    const base = procs[i].url;
    const up = await api(base, 'POST', '/v1/uploads', { tok: u.tok, raw: pngBytes(), headers: { 'content-type': 'image/png' } });
    assert.equal(up.status, 201, up.text);
    const r = await api(base, 'POST', '/v1/jobs', { tok: u.tok, body: { tool: 'upscaler', inputs: { image: up.json.id } } });
    assert.equal(r.status, 201, r.text);
    bjobs.push(r.json);
  }
  await waitFor(async () => (await emu.stats()).running === SLOTS, 15000, 'the blockers to run');

  // 200 users, each on its process, all at once: uploads, then submits,
  // one of them twice on two processes at the same instant.
  const users = Array.from({ length: USERS }, (_, i) => ({ ...newUser(`cl${i}`), home: procs[i % 3] }));
  const ups = await Promise.all(users.map((u) => api(u.home.url, 'POST', '/v1/uploads', { tok: u.tok, raw: pngBytes(), headers: { 'content-type': 'image/png' } })));
  for (const r of ups) assert.equal(r.status, 201, r.text);
  const body = (i) => ({ tool: 'upscaler', inputs: { image: ups[i].json.id } });
  const twice = users.length - 1;
  const subs = await Promise.all([
    ...users.map((u, i) => api(u.home.url, 'POST', '/v1/jobs', { tok: u.tok, body: body(i) })),
    api(procs[(twice + 1) % 3].url, 'POST', '/v1/jobs', { tok: users[twice].tok, body: body(twice) }),
  ]);
  const dup = subs.pop();
  const mine = subs[twice].status === 201 ? dup : subs[twice];
  if (subs[twice].status !== 201) subs[twice] = dup;
  for (const r of subs) assert.equal(r.status, 201, r.text);
  assert.equal(mine.status, 409, `the second submit of one user: ${mine.text}`);
  assert.equal(mine.json.error.code, 'active_job_exists');
  const jobs = subs.map((r) => r.json);
  for (const j of jobs) assert.equal(j.status, 'queued');

  // Every process shows the same queue, and every job the same position.
  const queues = await Promise.all(procs.map((p) => api(p.url, 'GET', '/v1/admin/queue', admin)));
  const order = queues[0].json.queued.map((j) => j.id);
  assert.equal(order.length, USERS);
  for (const q of queues) assert.deepEqual(q.json.queued.map((j) => j.id), order);
  assert.deepEqual([...order].sort(), jobs.map((j) => j.id).sort());
  for (let i = 0; i < USERS; i += 17) {
    const seen = await Promise.all(procs.map((p) => api(p.url, 'GET', `/v1/jobs/${jobs[i].id}`, { tok: users[i].tok })));
    const want = order.indexOf(jobs[i].id) + 1;
    for (const g of seen) assert.equal(g.json.position, want, `position of job ${i} on every process`);
  }

  // A stream on A follows a job submitted on B, to its end.
  const watched = 1; // users[1] lives on B
  assert.equal(users[watched].home, B);
  const streamed = jobStream(A.url, users[watched], jobs[watched].id);

  // Let them run: short tasks from now on; the blockers are cancelled.
  let sampling = true;
  const bad = [];
  const sampler = (async () => {
    while (sampling) {
      const s = await emu.stats();
      if (s.running > SLOTS) bad.push(`the emulator ran ${s.running} tasks`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  // C cancels the blockers and takes the three slots; the provider answers
  // "queue full" (421) for a while, so C holds three jobs starting, waiting
  // to send them again, when it is killed. No other process may use those
  // slots until C's lease runs out; then one of them carries C's starts
  // to the end, asking the provider first (restart recovery).
  await emu.config({ duration_ms: 60, next: { code: 421, count: 1000000 } });
  for (const j of bjobs) {
    const r = await api(C.url, 'POST', `/v1/admin/jobs/${j.id}/cancel`, admin);
    assert.equal(r.status, 200, r.text);
  }

  let ends;
  let killedAt;
  try {
    await waitFor(async () => {
      const [q, st] = await Promise.all([api(A.url, 'GET', '/v1/admin/queue', admin), emu.stats()]);
      return st.running === 0 && q.json.active.length === SLOTS &&
        q.json.active.every((j) => j.status === 'starting') && st.forced >= SLOTS;
    }, 15000, 'C to hold three jobs starting');
    C.proc.kill('SIGKILL');
    C.killed = true;
    await new Promise((r) => C.proc.once('exit', r));
    await emu.config({ next: null });
    killedAt = Date.now();

    // Every job ends; C's users ask the survivors, as a load balancer would.
    ends = await Promise.all(jobs.map((j, i) => waitFor(async () => {
      const base = users[i].home.killed ? (i % 2 ? A.url : B.url) : users[i].home.url;
      const g = await api(base, 'GET', `/v1/jobs/${j.id}`, { tok: users[i].tok });
      return TERMINAL.includes(g.json?.status) && g.json;
    }, 120000, () => `job ${i} to end; B: ${B.stderr().slice(-1500)}`)));
  } finally {
    sampling = false;
    await sampler;
  }
  console.log(`# all ended ${Date.now() - killedAt} ms after the kill`);
  assert.match(A.stderr() + B.stderr(), /took over 3 starting/);
  assert.deepEqual(bad, []);

  const s = await emu.stats();
  assert.ok(s.max_running <= SLOTS, `the emulator saw ${s.max_running} tasks at once`);

  // Every job completed, each with one task of its own: nothing lost,
  // nothing submitted twice.
  for (const j of ends) assert.equal(j.status, 'completed', `job ${j.id}: ${JSON.stringify(j.error)}`);
  const tasks = ends.map((j) => j.provider_task_id);
  assert.equal(new Set(tasks).size, USERS, 'one task per job');
  assert.equal(s.accepted, USERS + bjobs.length, 'the emulator accepted one task per job');

  // FIFO: jobs started in queue order, give or take the slots in flight.
  const startedAt = new Map(ends.map((j) => [j.id, Date.parse(j.started_at)]));
  const byStart = [...order].sort((x, y) => startedAt.get(x) - startedAt.get(y) || order.indexOf(x) - order.indexOf(y));
  let worst = 0;
  byStart.forEach((id, rank) => { worst = Math.max(worst, Math.abs(rank - order.indexOf(id))); });
  assert.ok(worst <= SLOTS, `a job started ${worst} places away from its turn`);

  // Credits: charged once, never refunded.
  const bases = live().map((p) => p.url);
  for (const [i, u] of users.entries()) {
    const base = bases[i % bases.length];
    const me = await api(base, 'GET', '/v1/me', { tok: u.tok });
    const led = await api(base, 'GET', '/v1/me/ledger', { tok: u.tok });
    assert.equal(me.json.credits, 90, `credits of user ${i}`);
    assert.deepEqual(led.json.entries.map((e) => e.kind).filter((k) => k !== 'grant'), ['charge'], `ledger of user ${i}`);
  }

  // The stream on A saw B's job move by legal arrows, ids increasing, to
  // its end; B replays the same events after the first one.
  const evs = await streamed;
  assert.ok(evs.length >= 2, JSON.stringify(evs));
  assert.equal(evs.at(-1).status, ends[watched].status);
  for (let i = 1; i < evs.length; i++) {
    assert.ok(BigInt(evs[i].id) > BigInt(evs[i - 1].id), `ids: ${evs.map((e) => e.id)}`);
    const [a, b] = [evs[i - 1].status, evs[i].status];
    if (a !== b) assert.ok(ARROWS[a]?.includes(b), `${a} → ${b}`);
  }
  const moves = (l) => l.filter((e, i) => i === 0 || e.status !== l[i - 1].status);
  const again = await jobStream(B.url, users[watched], jobs[watched].id, evs[0].id);
  assert.deepEqual(moves(again), moves(evs).slice(1));

  // The store is consistent.
  for (const p of live()) {
    const ex = await p.stop();
    p.killed = true;
    assert.equal(ex.code, 0, `a survivor did not stop cleanly: ${p.stderr().slice(-3000)}`);
  }
  const chk = await run(FILA_BIN, ['check', ...storeSets(dir).flatMap((x) => ['--set', x]),
    '--set', `uploads.dir=${dir}/uploads`, '--set', `auth.jwt_secret=${SECRET}`,
    '--set', `runninghub.base_url=${emu.url}`, ...sets.flatMap((x) => ['--set', x])],
  { cwd: dir, timeout: 60000 });
  assert.equal(chk.code, 0, `fila check:\n${chk.stdout}\n${chk.stderr}`);
});
