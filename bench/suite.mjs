#!/usr/bin/env node
// bench/suite.mjs — the scenarios of `make bench` (bench/all starts it; see
// bench/README.md). fila is driven only by build/load, the C generator;
// Node here makes tokens and request files, starts and stops the servers,
// reads /metrics and /proc, and writes bench/RESULTS.md. BullMQ is driven by
// bench/bullmq.mjs on a redis-server started here; on a throwaway
// PostgreSQL cluster started here (scripts/pg), pg-boss by bench/pgboss.mjs
// and pgbench by itself.
//
// Options: --only a,b,...  --seconds S (time left for the whole suite)
//          --fill N (default 50000)  --out FILE (default bench/RESULTS.md)
// Env: FILA_BIN, RHEMU_BIN, LOAD_BIN (default build/…), BENCH_TMP (a temp
// dir under /tmp made by bench/all; removed by it).
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '..');
const bin = (env, name) => path.resolve(process.env[env] || path.join(repo, 'build', name));
const FILA = bin('FILA_BIN', 'fila');
const RHEMU = bin('RHEMU_BIN', 'rhemu');
const LOAD = bin('LOAD_BIN', 'load');
const SECRET = 'bench-secret';

const SCENARIOS = ['idle', 'healthz', 'drain', 'submit', 'openloop', 'bullmq', 'pg', 'sse', 'deep'];
const opt = { only: null, seconds: 290, fill: 50000, out: path.join(here, 'RESULTS.md') };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const v = () => process.argv[++i];
  if (a === '--only') opt.only = new Set(v().split(','));
  else if (a === '--seconds') opt.seconds = Number(v());
  else if (a === '--fill') opt.fill = Number(v());
  else if (a === '--out') opt.out = path.resolve(v());
  else { process.stderr.write(`suite: unknown argument ${a}\nscenarios: ${SCENARIOS.join(' ')}\n`); process.exit(2); }
}
for (const s of opt.only || []) {
  if (!SCENARIOS.includes(s)) { process.stderr.write(`suite: no scenario "${s}" (${SCENARIOS.join(' ')})\n`); process.exit(2); }
}
// openloop runs at half of submit's rate, deep compares with it, and
// BullMQ's adds run by turns with it: they bring submit along; BullMQ's
// drain runs by turns with fila's, so bullmq brings drain too.
if (opt.only && ['openloop', 'deep', 'bullmq'].some((s) => opt.only.has(s))) opt.only.add('submit');
if (opt.only && opt.only.has('bullmq')) opt.only.add('drain');
const want = (s) => !opt.only || opt.only.has(s);

const t00 = performance.now();
const deadline = t00 + opt.seconds * 1000;
const left = () => (deadline - performance.now()) / 1000;
const TMP = process.env.BENCH_TMP || fs.mkdtempSync('/tmp/fila-bench-');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`[${((performance.now() - t00) / 1000).toFixed(1)}s] ${a.join(' ')}\n`);

// ---- processes: every one started is killed at the end, whatever happens ----

const children = new Set();
function killAll() {
  for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  children.clear();
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => { log(`${sig}: stopping`); killAll(); pgStop(); process.exit(130); });
}

function start(cmd, args, opts = {}) {
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.add(p);
  p.out = '';
  p.err = '';
  p.stdout.setEncoding('utf8').on('data', (d) => { p.out += d; });
  p.stderr.setEncoding('utf8').on('data', (d) => { p.err = (p.err + d).slice(-20000); });
  p.done = new Promise((r) => {
    p.on('exit', (code, sig) => { children.delete(p); r(code ?? sig); });
    // Not started at all (no such binary): no exit event follows.
    p.on('error', (e) => { p.failed = e; p.err += `${e.message}\n`; children.delete(p); r('error'); });
  });
  return p;
}

async function stop(p) {
  if (!p || p.exitCode !== null || p.signalCode !== null || p.failed) return;
  const t = setTimeout(() => p.kill('SIGKILL'), 5000);
  p.kill('SIGTERM');
  await p.done;
  clearTimeout(t);
}

// A condition polled until true; an Error thrown by it is a "not yet" (a
// server not listening yet), a Fatal ends the wait.
class Fatal extends Error {}
async function waitFor(fn, ms, what, every = 50) {
  const end = performance.now() + ms;
  for (;;) {
    const v = await fn().catch((e) => { if (e instanceof Fatal) throw e; return null; });
    if (v) return v;
    if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(every);
  }
}

// The first line a server prints ("… listening on http://HOST:PORT").
async function listening(p, what) {
  return waitFor(async () => {
    if (p.exitCode !== null || p.failed) throw new Fatal(`${what} exited: ${p.err}`);
    const m = /listening on (http:\/\/[\d.]+:(\d+))/.exec(p.out);
    return m && { url: m[1], port: Number(m[2]) };
  }, 10000, what, 20);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function startEmu(durationMs) {
  const p = start(RHEMU, ['--listen', '127.0.0.1:0', '--duration-ms', String(durationMs), '--quiet']);
  return { p, ...(await listening(p, 'rhemu')) };
}

let nfila = 0;
// fila on a free port (known before it starts: the emulator's webhooks
// need it in public_url), its store and uploads in a fresh dir under TMP.
// Timeouts of a day: nothing expires during a run. On PostgreSQL (pg: its
// url and schema) several processes share one dir: the same uploads.
async function startFila(emu, extra = [], { pg, dir } = {}) {
  if (!dir) {
    dir = path.join(TMP, `fila${++nfila}`);
    fs.mkdirSync(dir);
  }
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const db = pg ? [`store.url=${pg.url}`, `store.schema=${pg.schema}`] : [`store.url=sqlite:${dir}/fila.db`];
  const store = [...db, `uploads.dir=${dir}/uploads`,
    `runninghub.base_url=${emu.url}`, `auth.jwt_secret=${SECRET}`, 'queue.slots=3',
    'queue.queue_timeout=86400', 'queue.run_timeout=86400', 'runninghub.poll_after=3600'];
  const sets = (l) => l.flatMap((s) => ['--set', s]);
  const args = ['serve', ...extra, ...sets([`server.listen=127.0.0.1:${port}`, `server.public_url=${url}`, ...store])];
  const p = start(FILA, args, { cwd: dir });
  await listening(p, 'fila');
  await waitFor(async () => (await fetch(`${url}/healthz`)).status === 200, 10000, 'fila /healthz');
  return { p, url, port, dir, checkArgs: ['check', ...extra, ...sets(store)] };
}

// ---- /proc ----

function rssBytes(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}
function cpuSeconds(pid) {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime in USER_HZ
}

// ---- tokens and requests ----

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
function token(sub, role) {
  const head = b64u({ alg: 'HS256', typ: 'JWT' }) + '.' + b64u(role ? { sub, role } : { sub });
  return head + '.' + crypto.createHmac('sha256', SECRET).update(head).digest('base64url');
}
const ADMIN = token('bench-admin', 'admin');
// A valid 1x1 PNG: fila reads the type from the bytes.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');

// One request framed for build/load: "LENGTH\n" then the raw bytes.
function frame(method, p, tok, body, ctype = 'application/json') {
  const b = body === undefined ? null : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
  let head = `${method} ${p} HTTP/1.1\r\nHost: bench\r\n`;
  if (tok) head += `Authorization: Bearer ${tok}\r\n`;
  if (b) head += `Content-Type: ${ctype}\r\nContent-Length: ${b.length}\r\n`;
  const raw = b ? Buffer.concat([Buffer.from(head + '\r\n'), b]) : Buffer.from(head + '\r\n');
  return Buffer.concat([Buffer.from(`${raw.length}\n`), raw]);
}

let nfile = 0;
function reqFile(frames) {
  const f = path.join(TMP, `req${++nfile}`);
  fs.writeFileSync(f, Buffer.concat(frames));
  return f;
}

// Runs build/load against fila (or several fila processes: an array, the
// connections spread over them); adds fila's CPU time over the run (all
// processes'), and the answers when bodies are asked for.
async function load(fila, frames, { c = 64, n, d, R, bodies = false } = {}) {
  const fs_ = [fila].flat();
  const file = reqFile(frames);
  const args = ['-a', fs_.map((f) => `127.0.0.1:${f.port}`).join(','), '-f', file, '-c', String(c)];
  if (n) args.push('-n', String(n));
  if (d) args.push('-d', String(d));
  if (R) args.push('-R', String(R));
  const hard = Math.max(10, Math.min(600, left() - 5));
  args.push('-t', String(d ? Math.min(d + 60, hard) : hard));
  if (bodies) args.push('-o', `${file}.out`);
  const cpu = () => fs_.reduce((t, f) => t + cpuSeconds(f.p.pid), 0);
  const cpu0 = cpu();
  const p = start(LOAD, args);
  const code = await p.done;
  if (code !== 0) throw new Error(`load exited ${code}: ${p.err}`);
  const r = JSON.parse(p.out);
  r.fila_cpu_s = cpu() - cpu0;
  if (bodies) {
    r.answers = fs.readFileSync(`${file}.out`, 'utf8').split('\n').filter(Boolean).map((l) => {
      const sp = l.indexOf(' ');
      let json = null;
      try { json = JSON.parse(l.slice(sp + 1)); } catch { /* not JSON */ }
      return { status: Number(l.slice(0, sp)), json };
    });
    fs.rmSync(`${file}.out`);
  }
  fs.rmSync(file);
  return r;
}

// Users named PREFIX0.. each upload one PNG (all must be 201); returns
// [{ tok, upl }].
async function makeUploads(fila, prefix, n) {
  const users = Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, tok: token(`${prefix}${i}`) }));
  const r = await load(fila, users.map((u) => frame('POST', '/v1/uploads', u.tok, PNG, 'image/png')), { bodies: true });
  r.answers.forEach((a, i) => {
    if (a.status !== 201) throw new Error(`upload ${i}: ${a.status} ${JSON.stringify(a.json)}`);
    users[i].upl = a.json.id;
  });
  log(`${n} uploads at ${r.rate.toFixed(0)}/s`);
  return users;
}

const submitFrame = (u) => frame('POST', '/v1/jobs', u.tok,
  { tool: 'upscaler', variant: 'pro', inputs: { image: u.upl } });

async function metrics(fila) {
  const r = await fetch(`${fila.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
  const text = await r.text();
  const m = new Map();
  for (const l of text.split('\n')) {
    const x = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.eE+-]+|\+Inf)$/.exec(l);
    if (x) m.set(x[1], Number(x[2]));
  }
  return m;
}
const jobsIn = (m, state) => [...m].filter(([k]) => k.startsWith('fila_jobs{') && k.includes(`state="${state}"`))
  .reduce((s, [, v]) => s + v, 0);

// Three jobs that take the slots and stay running (the emulator's tasks
// last an hour), so the measured submits meet no provider traffic.
async function occupySlots(fila) {
  const users = await makeUploads(fila, 'occupant', 3);
  const r = await load(fila, users.map(submitFrame), { c: 1 });
  if (r.status['201'] !== 3) throw new Error(`occupants: ${JSON.stringify(r.status)}`);
  await waitFor(async () => jobsIn(await metrics(fila), 'running') === 3, 10000, '3 jobs running');
}

// p (0..1) of a Prometheus histogram, interpolated inside its bucket; and
// the share of observations at or under x.
function histogram(m, name) {
  const b = [...m].filter(([k]) => k.startsWith(`${name}_bucket{`))
    .map(([k, v]) => ({ le: k.includes('+Inf') ? Infinity : Number(/le="([^"]+)"/.exec(k)[1]), cum: v }))
    .sort((x, y) => x.le - y.le);
  const count = m.get(`${name}_count`) || 0;
  const q = (p) => {
    const target = p * count;
    let lo = 0;
    let cum0 = 0;
    for (const { le, cum } of b) {
      if (cum >= target) {
        if (le === Infinity) return Infinity;
        return lo + (le - lo) * (cum === cum0 ? 1 : (target - cum0) / (cum - cum0));
      }
      lo = le;
      cum0 = cum;
    }
    return NaN;
  };
  const under = (x) => {
    let lo = 0;
    let cum0 = 0;
    for (const { le, cum } of b) {
      if (x <= le) return (cum0 + (le === Infinity ? 0 : (cum - cum0) * (x - lo) / (le - lo))) / count;
      lo = le;
      cum0 = cum;
    }
    return 1;
  };
  return { count, sum: m.get(`${name}_sum`), q, under };
}

// ---- the scenarios ----

const R = { errors: {}, skipped: [] }; // every figure, for RESULTS.md
const SUBMIT_S = 4; // seconds of a measured submit
const DRAIN_S = 20; // at most, for the 5,000 jobs of scenario 4

// Runs each of runs by turns, ROUNDS times each, in the order a b b a a b
// b a (a b c c b a … for three): whatever the machine does meanwhile (a
// host that pauses this one, a neighbour's load) falls on all alike. Run
// one after the other, the same build gave ratios from 76 to 165 %. Each
// run gets its round's number; the figures of each are summed (rates over
// the summed time, p50 the median of the runs', p99 and max the largest).
const ROUNDS = 4;
async function byTurns(...runs) {
  const rs = runs.map(() => []);
  for (let i = 0; i < ROUNDS; i++) {
    const order = runs.map((_, k) => (i % 2 === 0 ? k : runs.length - 1 - k));
    for (const k of order) rs[k].push(await runs[k](i));
  }
  return rs.map(summed);
}
// The i-th of ROUNDS parts of list.
const part = (list, i) => list.slice(Math.floor(i * list.length / ROUNDS), Math.floor((i + 1) * list.length / ROUNDS));
function summed(rs) {
  const sum = (k) => rs.reduce((t, r) => t + r[k], 0);
  const status = {};
  for (const r of rs) for (const [k, v] of Object.entries(r.status)) status[k] = (status[k] || 0) + v;
  const p50s = rs.map((r) => r.latency_ms.p50).sort((x, y) => x - y);
  const answered = sum('answered');
  const duration_s = sum('duration_s');
  const errors = sum('errors');
  const pauses = rs.every((r) => r.pauses) ? { count: rs.reduce((t, r) => t + r.pauses.count, 0),
    ms: rs.reduce((t, r) => t + r.pauses.ms, 0), max_ms: Math.max(...rs.map((r) => r.pauses.max_ms)) } : null;
  return { answered, duration_s, rate: answered / duration_s, status, errors, cpu_s: sum('cpu_s'), fila_cpu_s: sum('fila_cpu_s'),
    latency_ms: { p50: p50s[Math.floor(p50s.length / 2)], p99: Math.max(...rs.map((r) => r.latency_ms.p99)),
      max: Math.max(...rs.map((r) => r.latency_ms.max)) }, pauses };
}
// A part of bench/bullmq.mjs in the shape of a build/load run, for byTurns.
const bullRun = (n, seconds, latency_ms = { p50: NaN, p99: NaN, max: NaN }) =>
  ({ answered: n, duration_s: seconds, status: {}, errors: 0, cpu_s: 0, fila_cpu_s: 0, pauses: null, latency_ms });

// 7, 8, 4, 5: a fresh fila with an emulator that finishes tasks at once.
async function drainScenarios() {
  const emu = await startEmu(0);
  const fila = await startFila(emu);
  const redis = [];
  try {
    await sleep(500);
    if (want('idle')) {
      R.idle_rss = rssBytes(fila.p.pid);
      log(`idle RSS ${(R.idle_rss / 1048576).toFixed(1)} MiB`);
    }
    if (want('healthz')) {
      R.healthz = await load(fila, [frame('GET', '/healthz')], { n: 1e9, d: 3 });
      log(`GET /healthz ${R.healthz.rate.toFixed(0)}/s`);
    }
    if (!want('drain')) return;
    const N = 5000;
    const users = await makeUploads(fila, 'drain', N);
    // With `bullmq`, by turns with BullMQ's drain of as many jobs on both
    // Redis policies, a part at a time. Each part of fila's gets at most
    // DRAIN_S / ROUNDS seconds; its rate is then what completed by then.
    if (want('bullmq')) redis.push(...await bothRedis());
    const limit = Math.min(DRAIN_S, left() - 20) / ROUNDS;
    let m;
    let before = 0; // completed before the part
    let submitS = 0;
    const drains = async (i) => {
      const us = part(users, i);
      const cpu0 = cpuSeconds(fila.p.pid);
      const t0 = performance.now();
      let subDone = false;
      const sub = load(fila, us.map(submitFrame));
      sub.then(() => { subDone = true; }, () => { subDone = true; });
      // Poll the store's job counts every 20 ms until the part is
      // completed (or nothing is left to move).
      for (;;) {
        await sleep(20);
        m = await metrics(fila);
        const open = ['queued', 'starting', 'running'].reduce((t, st) => t + jobsIn(m, st), 0);
        if (jobsIn(m, 'completed') - before >= us.length) break;
        if (subDone && open === 0) break;
        if (performance.now() - t0 > limit * 1000) break;
      }
      const t1 = performance.now();
      const fila_cpu_s = cpuSeconds(fila.p.pid) - cpu0;
      const s = await sub;
      const completed = jobsIn(m, 'completed') - before;
      before += completed;
      submitS += s.duration_s;
      return { answered: completed, duration_s: (t1 - t0) / 1000, status: s.status, errors: s.errors, cpu_s: s.cpu_s,
        fila_cpu_s, pauses: s.pauses, latency_ms: { p50: NaN, p99: NaN, max: NaN } };
    };
    const bullDrains = (r) => async (i) => {
      const d = (await bullmq(r, ['--adds', '0', '--drain', String(part(users, i).length)])).drain;
      return bullRun(d.n, d.seconds);
    };
    const [f, ...b] = await byTurns(drains, ...redis.map(bullDrains));
    const completed = f.answered;
    const failed = jobsIn(m, 'failed') + jobsIn(m, 'cancelled');
    R.drain = { n: N, seconds: f.duration_s, rate: f.rate, completed, failed, cut: completed < N, limit: limit * ROUNDS,
      submitted: f.status['201'] || 0, submit_seconds: submitS, load_cpu_s: f.cpu_s, fila_cpu_s: f.fila_cpu_s };
    if (completed >= N) {
      // fila's own verifier over the store (every job, charge, slot and
      // event), bounded: it reads the whole event log.
      const c = start(FILA, fila.checkArgs, { cwd: fila.dir });
      const t = setTimeout(() => c.kill('SIGKILL'), Math.max(1, Math.min(20, left() - 30)) * 1000);
      const code = await c.done;
      clearTimeout(t);
      const last = (c.out.trim().split('\n').pop() || '').slice(0, 200);
      R.drain.check = code === 0 ? last : typeof code === 'number' ? `exit ${code}: ${last}` : 'did not finish in time';
    }
    log(`drain: ${completed}/${N} completed in ${R.drain.seconds.toFixed(2)} s = ${R.drain.rate.toFixed(0)} jobs/s` +
      (R.drain.check ? `; fila check: ${R.drain.check}` : ''));
    redis.forEach((r, k) => {
      R.bullmq ??= {};
      R.bullmq[r.fsync] = { ...R.bullmq[r.fsync], drain: { n: b[k].answered, seconds: b[k].duration_s, rate: b[k].rate } };
      log(`BullMQ appendfsync ${r.fsync}: drain ${b[k].rate.toFixed(0)}/s, by turns with fila's`);
    });
    const h = histogram(m, 'fila_handoff_seconds');
    R.handoff = { count: h.count, p50: h.q(0.5), p99: h.q(0.99), under_1ms: h.under(0.001), mean: h.sum / h.count };
  } finally {
    for (const r of redis) await stop(r.p);
    await stop(fila.p);
    await stop(emu.p);
  }
}

// How many users a measured submit needs: a quick run on a throwaway fila
// gives the rate, and SUBMIT_S seconds of it are prepared (a fresh fila's
// rate, faster than a long run's: each of the ROUNDS parts of the measured
// submit is cut at 2 × SUBMIT_S / ROUNDS).
async function calibrate() {
  const emu = await startEmu(3600000);
  const fila = await startFila(emu);
  try {
    const users = await makeUploads(fila, 'cal', 1000);
    const r = await load(fila, users.map(submitFrame));
    return Math.max(1000, Math.min(100000, Math.ceil(r.rate * SUBMIT_S)));
  } finally {
    await stop(fila.p);
    await stop(emu.p);
  }
}

// The figures of a measured submit (one run of build/load, or summed).
function submitFigures(r) {
  return { rate: r.rate, jobs: r.status['201'] || 0, answered: r.answered, status: r.status, errors: r.errors,
    p50: r.latency_ms.p50, p99: r.latency_ms.p99, max: r.latency_ms.max, seconds: r.duration_s,
    load_cpu_s: r.cpu_s, fila_cpu_s: r.fila_cpu_s, fila_cpu_ms_per_job: 1000 * r.fila_cpu_s / r.answered, pauses: r.pauses };
}

// The machine's pauses during a run of build/load: how often (and how long)
// a thread sleeping 1 ms woke more than 2 ms late. A latency percentile
// whose share of requests is below the share of time paused cannot be
// lower than those pauses.
function pausesText(ps, seconds) {
  if (!ps) return '';
  return `; machine paused ${ps.count} times over 2 ms, ${f0(ps.ms)} ms in all (${pct(ps.ms / 1000 / seconds)} of the run), the longest ${f1(ps.max_ms)} ms`;
}

// 1: durable submit on a fresh queue; with `bullmq`, by turns with
// BullMQ's add on both Redis policies, the same jobs a part at a time.
async function submitScenario() {
  const n = await calibrate();
  log(`submit: ${n} users prepared`);
  const emu = await startEmu(3600000);
  const fila = await startFila(emu);
  const redis = [];
  try {
    await occupySlots(fila);
    const users = await makeUploads(fila, 'sub', n);
    if (want('bullmq')) redis.push(...await bothRedis());
    const submits = (i) => load(fila, part(users, i).map(submitFrame), { d: 2 * SUBMIT_S / ROUNDS });
    const adds = (r) => async (i) => {
      const a = (await bullmq(r, ['--adds', String(part(users, i).length), '--drain', '0'])).add;
      return bullRun(a.n, a.seconds, { p50: a.p50_ms, p99: a.p99_ms, max: a.max_ms });
    };
    const [f, ...b] = await byTurns(submits, ...redis.map(adds));
    R.submit = submitFigures(f);
    R.submit.prepared = n;
    log(`submit: ${R.submit.rate.toFixed(0)} jobs/s, p50 ${R.submit.p50.toFixed(1)} p99 ${R.submit.p99.toFixed(1)} ms`);
    redis.forEach((r, k) => {
      const a = b[k];
      R.bullmq ??= {};
      R.bullmq[r.fsync] = { ...R.bullmq[r.fsync], add: { n: a.answered, seconds: a.duration_s, rate: a.rate, p50_ms: a.latency_ms.p50,
        p99_ms: a.latency_ms.p99, max_ms: a.latency_ms.max } };
      log(`BullMQ appendfsync ${r.fsync}: add ${a.rate.toFixed(0)}/s, by turns with fila's submit`);
    });
  } finally {
    for (const r of redis) await stop(r.p);
    await stop(fila.p);
    await stop(emu.p);
  }
}

// 6: the same submit, open loop at half the rate of 1, on a fresh queue.
async function openloopScenario() {
  const rate = Math.max(1, Math.round(R.submit.rate / 2));
  const secs = 5;
  const emu = await startEmu(3600000);
  const fila = await startFila(emu);
  try {
    await occupySlots(fila);
    const users = await makeUploads(fila, 'ol', rate * secs);
    const r = await load(fila, users.map(submitFrame), { R: rate });
    R.openloop = { target_rate: rate, rate: r.rate, jobs: r.status['201'] || 0, sent: r.sent, status: r.status,
      unanswered: r.unanswered, p50: r.latency_ms.p50, p90: r.latency_ms.p90, p99: r.latency_ms.p99,
      max: r.latency_ms.max, load_cpu_s: r.cpu_s, fila_cpu_s: r.fila_cpu_s, seconds: r.duration_s, pauses: r.pauses };
    log(`open loop at ${rate}/s: p50 ${r.latency_ms.p50.toFixed(1)} p99 ${r.latency_ms.p99.toFixed(1)} max ${r.latency_ms.max.toFixed(1)} ms`);
  } finally {
    await stop(fila.p);
    await stop(emu.p);
  }
}

// 2, 3: fill the queue of one fila, then its submit by turns with that of
// a second, fresh fila; then GET of a job near the head and of the deepest,
// by turns. The fillers use a text-only tool of a bench config (the
// built-in tools copied from fila.conf, plus "filler"), so they need no
// uploads; both filas run that config, and three fillers take the slots
// of each.
async function deepScenario() {
  const conf = fs.readFileSync(path.join(repo, 'fila.conf'), 'utf8');
  const tools = conf.slice(conf.search(/^\[tool\./m));
  const file = path.join(TMP, 'bench.conf');
  fs.writeFileSync(file, `${tools}\n[tool.filler]\ncost = 1\ninput.prompt = text required\napp = 1 prompt=1:text\n`);
  const filler = (who) => frame('POST', '/v1/jobs', token(who), { tool: 'filler', inputs: { prompt: 'fill' } });
  const emu = await startEmu(3600000);
  const fila = await startFila(emu, ['--config', file]);
  let fresh = null;
  try {
    fresh = await startFila(emu, ['--config', file]);
    // Each side gets half of scenario 1's submits: the uploads take as
    // long as one side's did alone.
    const half = Math.max(ROUNDS, Math.floor(R.submit.prepared / 2));
    const users = await makeUploads(fila, 'deep', half);
    const freshUsers = await makeUploads(fresh, 'fresh', half);
    await load(fresh, [0, 1, 2].map((i) => filler(`ffill${i}`)), { c: 3 });
    // Fill: 3 fillers take the slots, the next opt.fill wait. The fill gets
    // the time left but what the rest needs.
    const total = opt.fill + 3;
    const budget = Math.max(10, left() - 25);
    const frames = Array.from({ length: total }, (_, i) => filler(`fill${i}`));
    log(`fill: ${total} jobs, ${budget.toFixed(0)} s at most`);
    const f = await load(fila, frames, { d: budget, bodies: true });
    const jobs = f.answers.map((a, i) => ({ i, a })).filter(({ a }) => a.status === 201 && a.json);
    const queued = jobs.filter(({ a }) => a.json.status === 'queued');
    R.fill = { wanted: opt.fill, queued: queued.length, seconds: f.duration_s, rate: f.rate, status: f.status,
      fila_cpu_s: f.fila_cpu_s };
    log(`fill: ${queued.length} queued in ${f.duration_s.toFixed(1)} s (${f.rate.toFixed(0)}/s)`);
    const cut = 2 * SUBMIT_S / ROUNDS;
    const [deepRun, freshRun] = await byTurns((i) => load(fila, part(users, i).map(submitFrame), { d: cut }),
      (i) => load(fresh, part(freshUsers, i).map(submitFrame), { d: cut }));
    R.deep = submitFigures(deepRun);
    R.deep.queued_before = queued.length;
    R.deepFresh = submitFigures(freshRun);
    log(`submit with ${queued.length} queued: ${R.deep.rate.toFixed(0)} jobs/s; by turns with a fresh queue: ${R.deepFresh.rate.toFixed(0)} jobs/s`);
    await stop(fresh.p);
    fresh = null;

    // 3: the job at position 10 and the deepest filler, each read by its
    // owner, 64 connections, closed loop.
    const at = (pos) => queued.find(({ a }) => a.json.position === pos) ||
      queued.reduce((x, y) => (y.a.json.position > x.a.json.position ? y : x));
    R.get = {};
    const reqs = {};
    for (const [name, pos] of [['near', 10], ['deep', opt.fill]]) {
      const j = at(pos);
      reqs[name] = frame('GET', `/v1/jobs/${j.a.json.id}`, token(`fill${j.i}`));
      const one = await load(fila, [reqs[name]], { c: 1, bodies: true });
      R.get[name] = { position: one.answers[0].json.position };
    }
    const got = await byTurns(() => load(fila, [reqs.near], { n: 1e9, d: 3 / ROUNDS }),
      () => load(fila, [reqs.deep], { n: 1e9, d: 3 / ROUNDS }));
    ['near', 'deep'].forEach((name, k) => {
      const r = got[k];
      Object.assign(R.get[name], { rate: r.rate, p50: r.latency_ms.p50, p99: r.latency_ms.p99,
        status: r.status, load_cpu_s: r.cpu_s, fila_cpu_s: r.fila_cpu_s });
      log(`GET job at position ${R.get[name].position}: ${r.rate.toFixed(0)}/s`);
    });
  } finally {
    if (fresh) await stop(fresh.p);
    await stop(fila.p);
    await stop(emu.p);
  }
}

// A fresh redis-server (AOF on with appendfsync fsync, no snapshots) on a
// free port and a dir of its own; stopped by the caller.
let nredis = 0;
async function startRedis(fsync) {
  const dir = path.join(TMP, `redis-${fsync}-${++nredis}`);
  fs.mkdirSync(dir);
  const port = await freePort();
  const p = start('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
    '--appendonly', 'yes', '--appendfsync', fsync, '--save', '', '--daemonize', 'no']);
  try {
    await waitFor(async () => {
      if (p.exitCode !== null || p.failed) throw new Fatal(`redis-server exited: ${p.out}${p.err}`);
      return p.out.includes('Ready to accept connections');
    }, 10000, 'redis-server');
  } catch (e) {
    await stop(p);
    throw e;
  }
  return { p, port, fsync };
}

// One redis-server per policy BullMQ is measured with.
async function bothRedis() {
  const always = await startRedis('always');
  try {
    return [always, await startRedis('everysec')];
  } catch (e) {
    await stop(always.p);
    throw e;
  }
}

// bench/bullmq.mjs against redis with args (64 producers, concurrency 3);
// its answer.
async function bullmq(redis, args) {
  const b = start(process.execPath, [path.join(here, 'bullmq.mjs'), '--port', String(redis.port),
    '--producers', '64', '--concurrency', '3', ...args], { cwd: repo });
  let timer;
  const code = await Promise.race([b.done, new Promise((r) => {
    timer = setTimeout(() => r('timeout'), Math.max(10, left() - 5) * 1000);
  })]);
  clearTimeout(timer);
  if (code !== 0) { b.kill('SIGKILL'); throw new Error(`bullmq.mjs (${redis.fsync}): ${code} ${b.err}`); }
  return JSON.parse(b.out);
}


// ---- 10: PostgreSQL ----
//
// One throwaway cluster (scripts/pg: initdb in TMP, a free port, fsync and
// synchronous_commit on), stopped by pgStop() at the end, on a signal, and
// by bench/all's trap if the suite is killed outright. On it, each in a
// schema of its own: fila with 1, 2 and 3 processes (fresh schema each),
// pg-boss `send` (bench/pgboss.mjs), and pgbench's one-row INSERTs.

const PG_SENDERS = 64; // fila's connections, pg-boss's senders, pgbench's clients
const PG_S = 5; // seconds of fila's first run and of pgbench
const PG_WARM = 1000; // unmeasured submits before each fila run
let pgDir = null;
const pgBin = () => {
  const d = fs.readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b)).pop();
  return (name) => path.join('/usr/lib/postgresql', d, 'bin', name);
};
function pgStop() {
  if (!pgDir) return;
  const d = pgDir;
  pgDir = null;
  try { execFileSync(path.join(repo, 'scripts', 'pg'), ['stop', d], { stdio: 'ignore', timeout: 30000 }); } catch { /* gone */ }
}
process.on('exit', pgStop);

function psql(url, sql) {
  return execFileSync(pgBin()('psql'), [url, '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-c', sql],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

// The cluster's own CPU time: the postmaster (with its reaped children:
// pgbench's backends end with their clients) and every live child.
function pgCpuSeconds() {
  const pm = Number(fs.readFileSync(path.join(pgDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
  let t = 0;
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    let st;
    try { st = fs.readFileSync(`/proc/${e}/stat`, 'utf8'); } catch { continue; }
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    const pid = Number(e);
    if (pid === pm) t += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
    else if (Number(f[1]) === pm) t += (Number(f[11]) + Number(f[12])) / 100;
  }
  return t;
}

// What the database did over a run, read without waiting for its
// statistics (which lag): WAL bytes and the cluster's CPU at two marks,
// and between them the commits, counted in the WAL itself (pg_waldump:
// each COMMIT record is a transaction that waited for its WAL flush).
function pgMark(url) {
  const lsn = psql(url, 'SELECT pg_current_wal_lsn()');
  const [hi, lo] = lsn.split('/').map((x) => parseInt(x, 16));
  return { lsn, wal: hi * 2 ** 32 + lo, cpu: pgCpuSeconds() };
}
function pgDelta(a, b, n) {
  let commits = NaN;
  try {
    const out = execFileSync(pgBin()('pg_waldump'), ['-p', path.join(pgDir, 'data', 'pg_wal'), '-s', a.lsn, '-e', b.lsn,
      '--stats=record'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 1 << 24 });
    commits = Number(/^Transaction\/COMMIT\s+(\d+)/m.exec(out)?.[1] ?? 0);
  } catch { /* the range was recycled: not counted */ }
  return { commits, wal_bytes: b.wal - a.wal, pg_cpu_s: b.cpu - a.cpu, jobs_per_commit: n / commits,
    wal_bytes_per_job: (b.wal - a.wal) / n, pg_cpu_ms_per_job: 1000 * (b.cpu - a.cpu) / n };
}

// fila with n processes on a fresh schema, one emulator (tasks last an
// hour: nothing reaches the provider while measured) and one uploads dir:
// the slots taken, then `jobs` users' uploads, then their submits over 64
// connections spread over the processes (connection i on process i mod n).
// First PG_WARM submits, unmeasured (connections, statements and caches
// warm, and the same short queue before every run); without `jobs`, their
// rate sizes the measured run at PG_S seconds.
async function pgFila(url, n, jobs) {
  const schema = `bench_p${n}`;
  const dir = path.join(TMP, `pg-fila${n}`);
  fs.mkdirSync(dir);
  const emu = await startEmu(3600000);
  const filas = [];
  try {
    // One after the other: the first makes the schema.
    for (let i = 0; i < n; i++) filas.push(await startFila(emu, [], { pg: { url, schema }, dir }));
    await occupySlots(filas[0]);
    const warm = await makeUploads(filas, `pg${n}w`, PG_WARM);
    const w = await load(filas, warm.map(submitFrame));
    if (w.status['201'] !== PG_WARM) throw new Error(`warm-up submits: ${JSON.stringify(w.status)}`);
    jobs ??= Math.max(2000, Math.min(40000, Math.ceil(w.rate * PG_S)));
    const users = await makeUploads(filas, `pg${n}u`, jobs);
    const m0 = pgMark(url);
    // Cut at 3 × PG_S: a slower run reports what was answered by then.
    const r = await load(filas, users.map(submitFrame), { d: 3 * PG_S });
    const m1 = pgMark(url);
    const answered = r.answered;
    const out = { processes: n, prepared: jobs, warm_rate: w.rate, rate: r.rate, jobs: r.status['201'] || 0, answered,
      status: r.status, errors: r.errors,
      p50: r.latency_ms.p50, p99: r.latency_ms.p99, max: r.latency_ms.max, seconds: r.duration_s,
      cut: answered < jobs, load_cpu_s: r.cpu_s, fila_cpu_s: r.fila_cpu_s, fila_cpu_ms_per_job: 1000 * r.fila_cpu_s / answered,
      ...pgDelta(m0, m1, answered) };
    if (n === 3) {
      // fila's verifier over the PostgreSQL store, beside the live processes.
      const c = start(FILA, filas[0].checkArgs, { cwd: dir });
      const t = setTimeout(() => c.kill('SIGKILL'), Math.max(1, Math.min(20, left() - 10)) * 1000);
      const code = await c.done;
      clearTimeout(t);
      const last = (c.out.trim().split('\n').pop() || '').slice(0, 200);
      out.check = code === 0 ? last : typeof code === 'number' ? `exit ${code}: ${last}` : 'did not finish in time';
    }
    return out;
  } finally {
    for (const f of filas) await stop(f.p);
    await stop(emu.p);
  }
}

// pgbench: one-row INSERT transactions into a table shaped like a small
// job row, the same number of clients, PG_S seconds: the engine's ceiling
// for durable one-row commits on this machine.
async function pgbench(url) {
  psql(url, 'CREATE TABLE public.bench_row (id bigserial PRIMARY KEY, user_id text NOT NULL, tool text NOT NULL,' +
    ' status text NOT NULL, cost int NOT NULL, inputs text NOT NULL, created_at bigint NOT NULL)');
  const script = path.join(TMP, 'pgbench.sql');
  fs.writeFileSync(script, '\\set u random(1, 1000000000)\n' +
    'INSERT INTO public.bench_row (user_id, tool, status, cost, inputs, created_at) VALUES (\'u\' || :u, \'upscaler\',' +
    ' \'queued\', 10, \'{"image":"upl_0123456789abcdef01234567","variant":"pro"}\',' +
    ' (extract(epoch FROM clock_timestamp()) * 1000)::bigint);\n');
  const m0 = pgMark(url);
  const p = start(pgBin()('pgbench'), ['-n', '-f', script, '-c', String(PG_SENDERS), '-j', '2', '-T', String(PG_S),
    '-r', url]);
  const code = await p.done;
  // Its backends end after it: their CPU counts once they are gone.
  await waitFor(async () => psql(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'") === '0',
    5000, 'pgbench backends to end', 20).catch(() => {});
  const m1 = pgMark(url);
  if (code !== 0) throw new Error(`pgbench exited ${code}: ${p.err.slice(-500)}`);
  const num = (re) => Number(re.exec(p.out)?.[1]);
  const n = num(/number of transactions actually processed: (\d+)/);
  return { clients: PG_SENDERS, seconds: PG_S, transactions: n, rate: num(/tps = ([\d.]+)/),
    latency_avg: num(/latency average = ([\d.]+) ms/), ...pgDelta(m0, m1, n) };
}

async function pgScenario() {
  // As root the cluster belongs to "postgres" (scripts/pg), which must be
  // able to reach its dir inside ours.
  if (process.getuid?.() === 0) fs.chmodSync(TMP, 0o711);
  pgDir = path.join(TMP, 'pg');
  const url = execFileSync(path.join(repo, 'scripts', 'pg'), ['start', pgDir],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60000 }).trim();
  try {
    R.pg = { version: psql(url, 'SHOW server_version'),
      settings: psql(url, "SELECT string_agg(name || '=' || setting, ' ' ORDER BY name) FROM pg_settings" +
        " WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'full_page_writes', 'shared_buffers'," +
        " 'commit_delay', 'max_connections')"),
      fila: {} };
    log(`PostgreSQL ${R.pg.version}: ${R.pg.settings}`);
    // fila first, 1 then 2 then 3 processes: the count of the first (what
    // one process submits in PG_S seconds) is every later run's, and
    // pg-boss's.
    let jobs;
    for (const n of [1, 2, 3]) {
      const f = await pgFila(url, n, jobs);
      jobs ??= f.answered;
      R.pg.fila[n] = f;
      log(`PostgreSQL, ${n} fila process${n > 1 ? 'es' : ''}: ${f.rate.toFixed(0)} jobs/s, p50 ${f.p50.toFixed(1)} p99 ${f.p99.toFixed(1)} ms; ` +
        `${f.jobs_per_commit.toFixed(1)} jobs/commit, fila CPU ${f.fila_cpu_ms_per_job.toFixed(2)} ms/job, PG CPU ${f.pg_cpu_ms_per_job.toFixed(2)} ms/job` +
        (f.check ? `; fila check: ${f.check}` : ''));
    }
    // pg-boss: the same number of jobs, 64 concurrent senders; the marks
    // around the sends only (not its schema's creation).
    const sends = jobs;
    const b = start(process.execPath, [path.join(here, 'pgboss.mjs'), '--url', url, '--sends', String(sends),
      '--senders', String(PG_SENDERS), '--wait', '1'], { cwd: repo, stdio: ['pipe', 'pipe', 'pipe'] });
    let timer;
    const limit = new Promise((r) => { timer = setTimeout(() => r('timeout'), Math.max(10, left() - 5) * 1000); });
    const ready = waitFor(async () => {
      if (b.exitCode !== null || b.failed) throw new Fatal(`pgboss.mjs exited: ${b.err.slice(-500)}`);
      return b.out.startsWith('ready\n');
    }, 30000, 'pg-boss ready', 20);
    let m0;
    const code = await Promise.race([ready.then(() => { m0 = pgMark(url); b.stdin.write('go\n'); return b.done; }), limit]);
    clearTimeout(timer);
    if (code !== 0) { b.kill('SIGKILL'); throw new Error(`pgboss.mjs: ${code} ${b.err.slice(-500)}`); }
    R.pg.pgboss = { ...JSON.parse(b.out.split('\n').filter(Boolean).pop()), ...pgDelta(m0, pgMark(url), sends) };
    log(`pg-boss send: ${R.pg.pgboss.rate.toFixed(0)}/s, p99 ${R.pg.pgboss.p99_ms.toFixed(1)} ms`);
    R.pg.pgbench = await pgbench(url);
    log(`pgbench one-row INSERT: ${R.pg.pgbench.rate.toFixed(0)} tps`);
  } finally {
    pgStop();
  }
}

// 9: the existing SSE benchmark, shortened.
async function sseScenario() {
  const json = path.join(TMP, 'sse.json');
  const budget = Math.max(30, Math.floor(left() - (want('deep') ? 85 : 5)));
  const p = start(process.execPath, [path.join(here, 'sse.mjs'), '--n', '5000', '--rounds', '3',
    '--timeout', String(budget), '--json', json], { cwd: repo,
    // TMPDIR: its temp stores go under ours, removed even if it is killed.
    env: { ...process.env, FILA_BIN: FILA, RHEMU_BIN: RHEMU, TMPDIR: TMP } });
  const code = await p.done;
  if (!fs.existsSync(json)) throw new Error(`sse.mjs exited ${code}: ${p.err.slice(-1500)}`);
  const o = JSON.parse(fs.readFileSync(json, 'utf8'))[0];
  R.sse = { n: o.n, p50: o.overall.p50, p99: o.overall.p99, received_all: o.received_all,
    per_stream: o.mem.per_stream_bytes, bare_p50: o.bare?.overall.p50, bare_p99: o.bare?.overall.p99,
    bare_per_stream: o.bare?.per_stream_bytes };
  log(`SSE: p99 ${R.sse.p99.toFixed(1)} ms (bare ${R.sse.bare_p99?.toFixed(1)}), ${Math.round(R.sse.per_stream)} B/stream`);
}

// ---- the machine ----

function sh(cmd, args) {
  try { return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim(); } catch { return null; }
}

// fdatasync of 4 KiB appends in the dir fila's stores live in: what one
// durable commit costs on this disk at the least.
function fsyncProbe() {
  const f = path.join(TMP, 'fsync-probe');
  const fd = fs.openSync(f, 'w');
  const buf = Buffer.alloc(4096, 1);
  const t = [];
  for (let i = 0; i < 200; i++) {
    fs.writeSync(fd, buf);
    const t0 = performance.now();
    fs.fdatasyncSync(fd);
    t.push(performance.now() - t0);
  }
  fs.closeSync(fd);
  fs.rmSync(f);
  t.sort((a, b) => a - b);
  return { p50: t[100], p99: t[197] };
}

function machine() {
  const cpuinfo = fs.readFileSync('/proc/cpuinfo', 'utf8');
  const mem = Number(/MemTotal:\s+(\d+)/.exec(fs.readFileSync('/proc/meminfo', 'utf8'))[1]) * 1024;
  const osr = /PRETTY_NAME="([^"]+)"/.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1];
  const df = sh('df', ['-PT', TMP])?.split('\n')[1]?.split(/\s+/);
  const git = (a) => sh('git', ['-C', repo, ...a]);
  const dirty = git(['status', '--porcelain', '--', 'src', 'tools', 'fila.conf']);
  return {
    cpu: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1], cores: os.cpus().length, mem,
    kernel: os.release(), os: osr, fs: df ? `${df[1]} on ${df[0]}` : '?', fsync: fsyncProbe(),
    commit: git(['rev-parse', '--short', 'HEAD']), subject: git(['log', '-1', '--format=%s']),
    dirty: dirty ? dirty.split('\n').length : 0,
    fila_bin: process.env.FILA_BIN ? FILA : null,
    node: process.version, redis: sh('redis-server', ['--version'])?.match(/v=(\S+)/)?.[1],
    bullmq: JSON.parse(fs.readFileSync(path.join(repo, 'node_modules/bullmq/package.json'), 'utf8')).version,
    pgboss: (() => { try { return JSON.parse(fs.readFileSync(path.join(repo, 'node_modules/pg-boss/package.json'), 'utf8')).version; } catch { return null; } })(),
    sqlite: sh('pkg-config', ['--modversion', 'sqlite3']), libevent: sh('pkg-config', ['--modversion', 'libevent']),
    load_before: os.loadavg(),
  };
}

// ---- RESULTS.md ----

const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : '–');
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–');
const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : '–');
// A ratio: two decimals, or two significant digits when small.
const fr = (x) => (!Number.isFinite(x) ? '–' : Math.abs(x) >= 0.1 ? x.toFixed(2) : x.toPrecision(2));
const ms = (s) => (Number.isFinite(s) ? (s * 1000).toFixed(2) : s === Infinity ? '> 30000' : '–');
const pct = (x) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)} %` : '–');
const mib = (b) => (Number.isFinite(b) ? `${(b / 1048576).toFixed(1)} MiB` : '–');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b ? a / b : NaN);
const verdict = (ok, known = true) => (!known ? 'not measured' : ok ? '**met**' : '**missed**');

function report(M, seconds) {
  const L = [];
  const p = (s = '') => L.push(s);
  const statuses = (st) => Object.entries(st || {}).map(([k, v]) => `${v}×${k}`).join(', ');
  p('# fila benchmark: results');
  p();
  p(`Written by \`make bench\` (bench/all; see [README.md](README.md)) on ${new Date().toISOString()}, in ${f0(seconds)} s. ` +
    'Every figure below is from this one run, fila and BullMQ (on Redis), pg-boss and pgbench (on PostgreSQL) side by side on this machine.');
  p();
  p('| machine | |');
  p('|---|---|');
  p(`| CPU | ${M.cpu}, ${M.cores} cores |`);
  p(`| memory | ${(M.mem / 2 ** 30).toFixed(1)} GiB |`);
  p(`| OS, kernel | ${M.os}, Linux ${M.kernel} |`);
  p(`| disk | ${M.fs}; fdatasync of a 4 KiB append: p50 ${f2(M.fsync.p50)} ms, p99 ${f2(M.fsync.p99)} ms (each durable commit waits for at least one) |`);
  const tree = `commit ${M.commit} (${M.subject})${M.dirty ? `, with uncommitted changes in ${M.dirty} file(s) of src/, tools/, fila.conf` : ''}`;
  p(`| fila | ${M.fila_bin ? `binary ${M.fila_bin} (FILA_BIN, not built by this run); the tree is at ${tree}` : `built from ${tree}`} |`);
  p(`| versions | Node ${M.node}, redis-server ${M.redis}, bullmq ${M.bullmq}, SQLite ${M.sqlite}, libevent ${M.libevent}` +
    `${R.pg ? `, PostgreSQL ${R.pg.version.split(' ')[0]}, pg-boss ${M.pgboss}` : ''} |`);
  p(`| load average | ${M.load_before.map(f2).join(' ')} before, ${os.loadavg().map(f2).join(' ')} after (other work on the machine skews every figure) |`);
  p();
  p('fila runs with `queue.slots=3`, a temp SQLite store (`synchronous=FULL`, its default; PostgreSQL in its own section) and the RunningHub emulator; every fila ' +
    'request is sent by `build/load` (bench/load.c) over 64 keep-alive connections unless said otherwise. Latencies are in ms, ' +
    'as the client sees them.');
  p();

  p('## Targets');
  p();
  p('| target | figure | verdict |');
  p('|---|---|---|');
  const addRatio = ratio(R.submit?.rate, R.bullmq?.always?.add?.rate);
  p(`| durable submit ≥ BullMQ \`add\` with appendfsync always | ${fr(addRatio)}× (${f0(R.submit?.rate)} / ${f0(R.bullmq?.always?.add?.rate)} jobs/s; 2× would be ${f0(2 * (R.bullmq?.always?.add?.rate ?? NaN))}) | ${verdict(addRatio >= 1, Number.isFinite(addRatio))} |`);
  const drainRatio = ratio(R.drain?.rate, R.bullmq?.always?.drain?.rate);
  p(`| 5,000 jobs through 3 slots ≥ BullMQ's drain at concurrency 3 | ${fr(drainRatio)}× (${f0(R.drain?.rate)} / ${f0(R.bullmq?.always?.drain?.rate)} jobs/s) | ${verdict(drainRatio >= 1 && !R.drain?.cut, Number.isFinite(drainRatio))} |`);
  p(`| slot hand-off p99 < 1 ms (\`fila_handoff_seconds\`: slot taken → the provider's task id, its upload and run calls included) | ${ms(R.handoff?.p99)} ms | ${verdict(R.handoff?.p99 < 0.001, !!R.handoff)} |`);
  const deepRatio = ratio(R.deep?.rate, R.deepFresh?.rate);
  const full = R.fill && R.fill.queued >= R.fill.wanted;
  p(`| submit with ${f0(opt.fill)} queued ≥ 90 % of fresh | ${pct(deepRatio)}${R.fill && !full ? ` (only ${f0(R.fill.queued)} queued: the fill ran out of time)` : ''} | ${verdict(deepRatio >= 0.9 && full, Number.isFinite(deepRatio))} |`);
  const getRatio = ratio(R.get?.deep?.rate, R.get?.near?.rate);
  p(`| GET of the job at position ${f0(R.get?.deep?.position ?? opt.fill)} ≥ 90 % of position ${R.get?.near?.position ?? 10} | ${pct(getRatio)} | ${verdict(getRatio >= 0.9 && full, Number.isFinite(getRatio))} |`);
  p(`| submit p99 at half the max rate < 10 ms | ${f1(R.openloop?.p99)} ms${R.openloop?.pauses ? ` (machine paused ${pct(R.openloop.pauses.ms / 1000 / R.openloop.seconds)} of the run, longest ${f1(R.openloop.pauses.max_ms)} ms)` : ''} | ${verdict(R.openloop?.p99 < 10, !!R.openloop)} |`);
  p(`| idle RSS < 20 MB | ${mib(R.idle_rss)} | ${verdict(R.idle_rss < 20e6, !!R.idle_rss)} |`);
  p(`| SSE: every stream gets the move, p99 < 100 ms at 5,000 | ${f1(R.sse?.p99)} ms${R.sse && !R.sse.received_all ? ', some missed' : ''} | ${verdict(R.sse?.received_all && R.sse?.p99 < 100, !!R.sse)} |`);
  const pf = R.pg?.fila || {};
  const pgBest = [1, 2, 3].map((n) => pf[n]).filter(Boolean).reduce((x, y) => (y.rate > (x?.rate ?? -1) ? y : x), null);
  const pgBoss = ratio(pf[1]?.rate, R.pg?.pgboss?.rate);
  const pgBench = ratio(pgBest?.rate, R.pg?.pgbench?.rate);
  const pgScale = ratio(pf[3]?.rate, pf[1]?.rate);
  p(`| PostgreSQL: one fila process ≥ 3× pg-boss \`send\` (same jobs, 64 concurrent) | ${fr(pgBoss)}× (${f0(pf[1]?.rate)} / ${f0(R.pg?.pgboss?.rate)} jobs/s; 3 processes: ${fr(ratio(pf[3]?.rate, R.pg?.pgboss?.rate))}×) | ${verdict(pgBoss >= 3, Number.isFinite(pgBoss))} |`);
  p(`| PostgreSQL: fila (its best of 1–3 processes) ≥ 40 % of pgbench's one-row INSERT tps | ${pct(pgBench)} (${f0(pgBest?.rate)}${pgBest ? ` with ${pgBest.processes}` : ''} / ${f0(R.pg?.pgbench?.rate)}) | ${verdict(pgBench >= 0.4, Number.isFinite(pgBench))} |`);
  p(`| PostgreSQL: 3 fila processes ≥ 1.5× one | ${fr(pgScale)}× (${f0(pf[3]?.rate)} / ${f0(pf[1]?.rate)} jobs/s) | ${verdict(pgScale >= 1.5, Number.isFinite(pgScale))} |`);
  p();

  p('## fila');
  p();
  p('| # | scenario | jobs/s or req/s | p50 ms | p99 ms | max ms | notes |');
  p('|---|---|---:|---:|---:|---:|---|');
  const s = R.submit;
  if (s) {
    p(`| 1 | durable submit, fresh queue (closed loop) | **${f0(s.rate)}** | ${f1(s.p50)} | ${f1(s.p99)} | ${f1(s.max)} | ` +
      `${f0(s.answered)} submits in ${f2(s.seconds)} s: ${statuses(s.status)}; fila CPU ${f3(s.fila_cpu_ms_per_job)} ms/job, load CPU ${f2(s.load_cpu_s)} s${pausesText(s.pauses, s.seconds)} |`);
  }
  if (R.deep) {
    const q = R.deepFresh;
    p(`| 2 | durable submit with ${f0(R.deep.queued_before)} queued | **${f0(R.deep.rate)}** | ${f1(R.deep.p50)} | ${f1(R.deep.p99)} | ${f1(R.deep.max)} | ` +
      `${f0(R.deep.answered)} submits in ${f2(R.deep.seconds)} s: ${statuses(R.deep.status)}; fila CPU ${f3(R.deep.fila_cpu_ms_per_job)} ms/job${pausesText(R.deep.pauses, R.deep.seconds)}; ratio to the fresh queue below: **${pct(deepRatio)}** |`);
    p(`| 2 | durable submit, fresh queue, by turns with the one above (${ROUNDS} runs each) | **${f0(q.rate)}** | ${f1(q.p50)} | ${f1(q.p99)} | ${f1(q.max)} | ` +
      `${f0(q.answered)} submits in ${f2(q.seconds)} s: ${statuses(q.status)}; fila CPU ${f3(q.fila_cpu_ms_per_job)} ms/job${pausesText(q.pauses, q.seconds)} |`);
  }
  if (R.fill) {
    p(`| 2 | (the fill: text-only jobs) | ${f0(R.fill.rate)} | | | | ${f0(R.fill.queued)} of ${f0(R.fill.wanted)} queued in ${f1(R.fill.seconds)} s: ${statuses(R.fill.status)} |`);
  }
  for (const k of ['near', 'deep']) {
    const g = R.get?.[k];
    if (g) p(`| 3 | GET /v1/jobs/{id} at position ${f0(g.position)} | **${f0(g.rate)}** | ${f2(g.p50)} | ${f2(g.p99)} | | ${statuses(g.status)}; fila CPU ${f2(g.fila_cpu_s)} s, load CPU ${f2(g.load_cpu_s)} s |`);
  }
  if (R.get?.deep) p(`| 3 | ratio deep / near | **${pct(getRatio)}** | | | | |`);
  if (R.drain) {
    const d = R.drain;
    p(`| 4 | 5,000 jobs through 3 slots, emulator at 0 ms | **${f0(d.rate)}** | | | | ${f0(d.completed)} completed` +
      `${d.cut ? ` (**cut at ${d.limit} s**, the rest still waiting)` : ''}, ${d.failed} failed/cancelled, in ${f2(d.seconds)} s from the first submit ` +
      `(the ${f0(d.submitted)} submits took ${f2(d.submit_seconds)} s); fila CPU ${f2(d.fila_cpu_s)} s, ${f3(1000 * d.fila_cpu_s / d.completed)} ms/job${d.check ? `; \`fila check\`: ${d.check}` : ''} |`);
  }
  if (R.handoff) {
    p(`| 5 | hand-off (slot taken → task id), from \`fila_handoff_seconds\` | | ${ms(R.handoff.p50)} | ${ms(R.handoff.p99)} | | ` +
      `${f0(R.handoff.count)} hand-offs, mean ${ms(R.handoff.mean)} ms; **${pct(R.handoff.under_1ms)} under 1 ms** (estimated from the buckets) |`);
  }
  const o = R.openloop;
  if (o) {
    p(`| 6 | durable submit, open loop at ${f0(o.target_rate)}/s (half of 1) | ${f0(o.rate)} | ${f1(o.p50)} | **${f1(o.p99)}** | ${f1(o.max)} | ` +
      `${f0(o.sent)} sent: ${statuses(o.status)}${o.unanswered ? `, ${o.unanswered} unanswered` : ''}; latency from each request's scheduled time; fila CPU ${f2(o.fila_cpu_s)} s, load CPU ${f2(o.load_cpu_s)} s in ${f1(o.seconds)} s${pausesText(o.pauses, o.seconds)} |`);
  }
  if (R.idle_rss) p(`| 7 | idle RSS after start | ${mib(R.idle_rss)} | | | | VmRSS |`);
  if (R.healthz) {
    const h = R.healthz;
    p(`| 8 | GET /healthz (the HTTP ceiling) | **${f0(h.rate)}** | ${f2(h.latency_ms.p50)} | ${f2(h.latency_ms.p99)} | ${f2(h.latency_ms.max)} | ` +
      `fila CPU ${f2(h.fila_cpu_s)} s, load CPU ${f2(h.cpu_s)} s in ${f1(h.duration_s)} s (they share the 2 cores) |`);
  }
  if (R.sse) {
    p(`| 9 | SSE fan-out, ${f0(R.sse.n)} streams, one queue move | | ${f1(R.sse.p50)} | ${f1(R.sse.p99)} | | ${Math.round(R.sse.per_stream)} B of RSS per stream; every stream received every move: ${R.sse.received_all ? 'yes' : '**no**'} |`);
  }
  p();

  p('## fila against BullMQ on Redis (same run)');
  p();
  if (R.bullmq && Object.keys(R.bullmq).length) {
    p('BullMQ: `queue.add` from 64 concurrent loops in one Node process (one ioredis connection), the same jobs as ' +
      `fila's scenario 1, by turns with it: ${ROUNDS} parts each, in the order fila, always, everysec, everysec, always, fila, …; then a Worker at concurrency 3 with a no-op processor while 64 loops add 5,000 jobs, timed from the ` +
      'first add to the last completion, by turns with scenario 4 the same way (its jobs in 4 parts). Redis: `--appendonly yes --save \'\'`, ' +
      'a fresh server and dir per policy for the drains, and another for the adds.');
    p();
    p('| figure | fila | BullMQ, appendfsync always | BullMQ, appendfsync everysec | fila / always | fila / everysec |');
    p('|---|---:|---:|---:|---:|---:|');
    const a = R.bullmq.always;
    const e = R.bullmq.everysec;
    p(`| durable submit / add, jobs/s | ${f0(s?.rate)} | ${f0(a?.add?.rate)} | ${f0(e?.add?.rate)} | **${fr(ratio(s?.rate, a?.add?.rate))}** | **${fr(ratio(s?.rate, e?.add?.rate))}** |`);
    p(`| submit / add p50 ms | ${f1(s?.p50)} | ${f1(a?.add?.p50_ms)} | ${f1(e?.add?.p50_ms)} | ${fr(ratio(s?.p50, a?.add?.p50_ms))} | ${fr(ratio(s?.p50, e?.add?.p50_ms))} |`);
    p(`| submit / add p99 ms | ${f1(s?.p99)} | ${f1(a?.add?.p99_ms)} | ${f1(e?.add?.p99_ms)} | ${fr(ratio(s?.p99, a?.add?.p99_ms))} | ${fr(ratio(s?.p99, e?.add?.p99_ms))} |`);
    p(`| 5,000 jobs through 3 at once, jobs/s | ${f0(R.drain?.rate)}${R.drain?.cut ? ` (cut at ${R.drain.limit} s)` : ''} | ${f0(a?.drain?.rate)} | ${f0(e?.drain?.rate)} | **${fr(ratio(R.drain?.rate, a?.drain?.rate))}** | **${fr(ratio(R.drain?.rate, e?.drain?.rate))}** |`);
    p();
    p('Ratios above 1 favour fila for rates, below 1 for latencies. BullMQ checks no rule (no token, credits, uploads or one job ' +
      'per user) and its drain has no provider call; fila\'s drain includes the emulator\'s upload, run and webhook for every job.');
  } else {
    p('Not measured in this run.');
  }
  p();
  p('## fila on PostgreSQL against pg-boss and pgbench (same run)');
  p();
  if (R.pg && (pf[1] || R.pg.pgboss || R.pg.pgbench)) {
    const g = R.pg;
    p(`One throwaway cluster (\`scripts/pg\`: PostgreSQL ${g.version}, ${g.settings.split(' ').map((x) => `\`${x}\``).join(', ')}), ` +
      'every client on this machine over 127.0.0.1. fila: the submit of scenario 1 (slots taken first, one upload per user, ' +
      `64 connections, closed loop) on a fresh schema per row, the connections spread over the processes, after ${f0(PG_WARM)} unmeasured ` +
      'submits; one emulator for all. The job count is what one process submitted in ' +
      `${PG_S} s; pg-boss sends as many from 64 concurrent loops (its default pool of 10 connections; supervisor and scheduler off); ` +
      `pgbench runs \`-c ${PG_SENDERS} -j 2 -T ${PG_S}\` of one-row INSERT transactions into a table shaped like a small job row. ` +
      '*Jobs / commit*: jobs over the COMMIT records the WAL holds for the run (pg_waldump), each a transaction that waited for its WAL flush; ' +
      '*PG CPU* is the whole cluster\'s (postmaster and every backend), *fila CPU* all fila processes\'.');
    p();
    p('| what | jobs/s or tps | p50 ms | p99 ms | max ms | jobs / commit | WAL bytes / job | fila or client CPU ms / job | PG CPU ms / job | notes |');
    p('|---|---:|---:|---:|---:|---:|---:|---:|---:|---|');
    for (const n of [1, 2, 3]) {
      const f = pf[n];
      if (!f) continue;
      p(`| fila, ${n} process${n > 1 ? 'es' : ''} | **${f0(f.rate)}** | ${f1(f.p50)} | **${f1(f.p99)}** | ${f1(f.max)} | ${f1(f.jobs_per_commit)} | ` +
        `${f0(f.wal_bytes_per_job)} | ${f2(f.fila_cpu_ms_per_job)} | ${f2(f.pg_cpu_ms_per_job)} | ${f0(f.answered)} submits in ${f2(f.seconds)} s` +
        `${f.cut ? ` (**cut**: ${f0(f.prepared)} prepared)` : ''}: ${statuses(f.status)}; load CPU ${f2(f.load_cpu_s)} s` +
        `${f.check ? `; \`fila check\`: ${f.check}` : ''} |`);
    }
    const b = g.pgboss;
    if (b) {
      p(`| pg-boss \`send\` | **${f0(b.rate)}** | ${f1(b.p50_ms)} | **${f1(b.p99_ms)}** | ${f1(b.max_ms)} | ${f1(b.jobs_per_commit)} | ` +
        `${f0(b.wal_bytes_per_job)} | ${f2(1000 * b.node_cpu_s / b.sent)} | ${f2(b.pg_cpu_ms_per_job)} | ${f0(b.sent)} sends in ${f2(b.seconds)} s` +
        `${b.failed ? `, ${b.failed} failed` : ''}; pool of ${b.pool} |`);
    }
    const q = g.pgbench;
    if (q) {
      p(`| pgbench one-row INSERT | **${f0(q.rate)}** | | | | ${f1(q.jobs_per_commit)} | ${f0(q.wal_bytes_per_job)} | | ${f2(q.pg_cpu_ms_per_job)} | ` +
        `${f0(q.transactions)} transactions in ${q.seconds} s, latency average ${f2(q.latency_avg)} ms |`);
    }
    p();
    p('| ratio | 1 process | 2 processes | 3 processes |');
    p('|---|---:|---:|---:|');
    const row = (name, den) => p(`| ${name} | ${[1, 2, 3].map((n) => `**${fr(ratio(pf[n]?.rate, den))}**`).join(' | ')} |`);
    row('fila / pg-boss `send`, jobs/s', b?.rate);
    row('fila / pgbench one-row INSERT, jobs/s over tps', q?.rate);
    row('fila / fila with 1 process, jobs/s', pf[1]?.rate);
    p(`| fila p99 / pg-boss p99 | ${[1, 2, 3].map((n) => fr(ratio(pf[n]?.p99, b?.p99_ms))).join(' | ')} |`);
    p();
    p('pg-boss checks no rule (no token, credits, uploads or one job per user) and its send is one INSERT; a fila submit ' +
      'reads the user, the upload and the queue, charges the credits, writes the job, its ledger row and its event.');
  } else {
    p('Not measured in this run.');
  }
  p();
  if (R.sse) {
    p('## SSE fan-out against a bare Node.js server (bench/sse.mjs, same run)');
    p();
    p('| N | fila p50 ms | bare p50 ms | fila p99 ms | bare p99 ms | p99 fila / bare | RSS per stream fila / bare |');
    p('|---:|---:|---:|---:|---:|---:|---:|');
    p(`| ${f0(R.sse.n)} | ${f1(R.sse.p50)} | ${f1(R.sse.bare_p50)} | ${f1(R.sse.p99)} | ${f1(R.sse.bare_p99)} | **${fr(ratio(R.sse.p99, R.sse.bare_p99))}** | ` +
      `${Math.round(R.sse.per_stream)} B / ${Math.round(R.sse.bare_per_stream)} B = **${fr(ratio(R.sse.per_stream, R.sse.bare_per_stream))}** |`);
    p();
  }
  const errs = Object.entries(R.errors);
  if (errs.length || R.skipped.length) {
    p('## Not measured');
    p();
    for (const [k, v] of errs) p(`- ${k}: failed: ${v.split('\n')[0].slice(0, 300)}`);
    for (const k of R.skipped) p(`- ${k}: skipped (out of time)`);
    p();
  }
  return L.join('\n');
}

// ---- main ----

async function main() {
  const M = machine();
  log(`fila ${FILA}, temp ${TMP}, ${opt.seconds} s`);
  const steps = [
    ['idle,healthz,drain', drainScenarios, 30],
    ['submit', submitScenario, 20],
    ['openloop', openloopScenario, 15],
    ['pg', pgScenario, 60],
    ['sse', sseScenario, 45],
    ['deep', deepScenario, 40],
  ];
  for (const [names, fn, need] of steps) {
    const ns = names.split(',');
    if (!ns.some(want)) continue;
    if (left() < need) { R.skipped.push(names); log(`skipping ${names}: ${left().toFixed(0)} s left`); continue; }
    if ((names === 'openloop' || names === 'deep') && !R.submit) {
      R.errors[names] = 'needs the figures of scenario 1 (submit), which were not measured';
      continue;
    }
    try {
      await fn();
    } catch (e) {
      R.errors[names] = String(e.message || e);
      log(`${names} failed: ${e.stack || e}`);
      killAll();
    }
  }
  const md = report(M, (performance.now() - t00) / 1000 + Number(process.env.BENCH_SETUP_S || 0));
  fs.writeFileSync(opt.out, md + '\n');
  process.stdout.write(md + '\n');
  log(`wrote ${opt.out}`);
}

main().catch((e) => { log(`failed: ${e.stack || e}`); process.exitCode = 1; }).finally(() => {
  killAll();
  if (!process.env.BENCH_TMP) fs.rmSync(TMP, { recursive: true, force: true });
});
