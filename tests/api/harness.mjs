// harness.mjs — starts a RunningHub emulator and a fila daemon on free
// loopback ports, each test file its own pair and its own temp dir, and
// gives the tests small, strict helpers: api(), tokens, uploads, waits.
//
// Env: FILA_BIN (the daemon), RHEMU_BIN (the emulator). Both default to the
// repository's build/ directory.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '..', '..');

// Resolved now: fila runs with its temp dir as working directory.
export const FILA_BIN = path.resolve(process.env.FILA_BIN || path.join(repo, 'build', 'fila'));
export const RHEMU_BIN = path.resolve(process.env.RHEMU_BIN || path.join(repo, 'build', 'rhemu'));
export const SECRET = 'test-secret';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function needBin(bin, name) {
  if (!fs.existsSync(bin)) throw new Error(`${name} not found at ${bin} (set ${name})`);
}

// ---- ports, processes ----------------------------------------------------

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Collects a stream's text (bounded) for failure messages.
function collect(stream) {
  const box = { text: '' };
  stream.setEncoding('utf8');
  stream.on('data', (d) => {
    box.text += d;
    if (box.text.length > 200000) box.text = box.text.slice(-100000);
  });
  return box;
}

// SIGTERM, then SIGKILL after graceMs; resolves {code, signal}.
export function stopProc(proc, signal = 'SIGTERM', graceMs = 3000) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) {
    return Promise.resolve({ code: proc?.exitCode ?? null, signal: proc?.signalCode ?? null });
  }
  return new Promise((resolve) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', (code, sig) => {
      clearTimeout(t);
      resolve({ code, signal: sig });
    });
    proc.kill(signal);
  });
}

// Runs a command to its end: {code, stdout, stderr}.
export function run(bin, args, { cwd, timeout = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = collect(p.stdout);
    const err = collect(p.stderr);
    const t = setTimeout(() => p.kill('SIGKILL'), timeout);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout: out.text, stderr: err.text });
    });
  });
}

export async function startEmu({ durationMs = 500, concurrency = 10, args = [] } = {}) {
  needBin(RHEMU_BIN, 'RHEMU_BIN');
  const proc = spawn(
    RHEMU_BIN,
    ['--listen', '127.0.0.1:0', '--duration-ms', String(durationMs),
      '--concurrency', String(concurrency), '--quiet', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const err = collect(proc.stderr);
  const url = await new Promise((resolve, reject) => {
    let buf = '';
    const t = setTimeout(() => fail(new Error('rhemu did not say it listens within 10 s')), 10000);
    function fail(e) {
      clearTimeout(t);
      proc.kill('SIGKILL');
      reject(new Error(`${e.message}\nstdout: ${buf}\nstderr: ${err.text}`));
    }
    proc.on('error', fail);
    proc.on('exit', (code) => fail(new Error(`rhemu exited with ${code} before listening`)));
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      buf += d;
      const m = /rhemu listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(buf);
      if (m) {
        clearTimeout(t);
        proc.removeAllListeners('exit');
        resolve(m[1]);
      }
    });
  });
  proc.stdout.resume();
  const emu = {
    url,
    proc,
    stderr: () => err.text,
    async call(method, p, body) {
      const res = await fetch(url + p, {
        method,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      let json = null;
      try { json = JSON.parse(text); } catch { /* not JSON */ }
      assert.ok(res.status < 300, `emulator ${method} ${p} answered ${res.status}: ${text}`);
      return json;
    },
    stats() { return emu.call('GET', '/emu/stats'); },
    config(c) { return emu.call('POST', '/emu/config', c); },
    reset() { return emu.call('POST', '/emu/reset', {}); },
    stop() { return stopProc(proc); },
  };
  return emu;
}

// The store of the fila whose files are in dir: a SQLite file there, or,
// with FILA_TEST_STORE=pg, a schema of its own, named after dir, in the
// PostgreSQL database FILA_PG_URL names (make api-pg starts a throwaway
// cluster).
export function storeSets(dir) {
  const pg = process.env.FILA_TEST_STORE === 'pg' && process.env.FILA_PG_URL;
  if (!pg) return [`store.url=sqlite:${dir}/fila.db`];
  const schema = 't_' + crypto.createHash('sha1').update(dir).digest('hex').slice(0, 16);
  return [`store.url=${pg}`, `store.schema=${schema}`];
}
export const onPg = process.env.FILA_TEST_STORE === 'pg';

// Starts `fila serve` in dir (made if absent) and waits for /healthz.
export async function startFila({ emuUrl, dir, port, sets = [], args = [] }) {
  needBin(FILA_BIN, 'FILA_BIN');
  const ownDir = !dir;
  dir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'fila-api-'));
  try {
    return await spawnFila({ emuUrl, dir, port, sets, args });
  } catch (e) {
    if (ownDir && !process.env.FILA_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

async function spawnFila({ emuUrl, dir, port, sets, args }) {
  port ??= await freePort();
  const url = `http://127.0.0.1:${port}`;
  const all = [
    'serve',
    '--set', `server.listen=127.0.0.1:${port}`,
    '--set', `server.public_url=${url}`,
    ...storeSets(dir).flatMap((s) => ['--set', s]),
    '--set', `uploads.dir=${dir}/uploads`,
    '--set', `runninghub.base_url=${emuUrl}`,
    '--set', `auth.jwt_secret=${SECRET}`,
    ...sets.flatMap((s) => ['--set', s]),
    ...args,
  ];
  const proc = spawn(FILA_BIN, all, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const err = collect(proc.stderr);
  const out = collect(proc.stdout);
  let exited = null;
  proc.on('exit', (code, signal) => { exited = { code, signal }; });
  proc.on('error', (e) => { exited = { code: null, signal: null, error: e }; });
  const deadline = Date.now() + 10000;
  for (;;) {
    if (exited) {
      throw new Error(`fila exited (${JSON.stringify(exited)}) before answering /healthz\n` +
        `args: ${all.join(' ')}\nstderr: ${err.text}`);
    }
    try {
      const res = await fetch(url + '/healthz');
      const body = await res.text();
      if (res.status === 200 && JSON.parse(body).ok === true) break;
    } catch { /* not yet listening */ }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`fila did not answer /healthz within 10 s\nstderr: ${err.text}`);
    }
    await sleep(50);
  }
  return {
    url, port, dir, proc, sets, args,
    stderr: () => err.text,
    stdout: () => out.text,
    exited: () => exited,
    stop(signal = 'SIGTERM') { return stopProc(proc, signal); },
  };
}

// ---- tokens ----------------------------------------------------------------

const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

export function jwt(payload, { secret = SECRET, header = { alg: 'HS256', typ: 'JWT' }, hash = 'sha256' } = {}) {
  const head = b64u(header) + '.' + b64u(payload);
  if (hash === null) return head + '.';
  const sig = crypto.createHmac(hash, secret).update(head).digest('base64url');
  return head + '.' + sig;
}

export function token(sub, { role, exp, secret } = {}) {
  const p = { sub };
  if (role) p.role = role;
  if (exp !== undefined) p.exp = exp;
  return jwt(p, { secret });
}

export const adminToken = (sub = 'root-admin') => token(sub, { role: 'admin' });

let userSeq = 0;
// A user id no other test uses.
export function uid(prefix = 'u') {
  return `${prefix}-${process.pid}-${++userSeq}-${crypto.randomBytes(3).toString('hex')}`;
}

// A fresh user: {id, tok}.
export function newUser(prefix) {
  const id = uid(prefix);
  return { id, tok: token(id) };
}

// ---- bytes -----------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

export function pngBytes(extra = 0) {
  const ihdr = Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
  const parts = [
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    pngChunk('IHDR', ihdr),
  ];
  // Random padding (an ancillary chunk) makes every upload's sha256 different.
  parts.push(pngChunk('tEXt', Buffer.concat([Buffer.from('k\0'), crypto.randomBytes(8 + extra)])));
  parts.push(pngChunk('IEND', Buffer.alloc(0)));
  return Buffer.concat(parts);
}

export function jpegBytes() {
  return Buffer.concat([
    Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00,
      0x00, 0x01, 0x00, 0x01, 0x00, 0x00]),
    crypto.randomBytes(16),
    Buffer.from([0xff, 0xd9]),
  ]);
}

export function mp4Bytes() {
  const ftyp = Buffer.concat([
    Buffer.from([0, 0, 0, 24]), Buffer.from('ftypisom', 'ascii'), Buffer.from([0, 0, 2, 0]),
    Buffer.from('isommp41', 'ascii'),
  ]);
  const payload = crypto.randomBytes(16);
  const mdatHead = Buffer.alloc(8);
  mdatHead.writeUInt32BE(8 + payload.length);
  mdatHead.write('mdat', 4, 'ascii');
  return Buffer.concat([ftyp, mdatHead, payload]);
}

export const KINDS = {
  png: { bytes: pngBytes, mime: 'image/png' },
  jpeg: { bytes: jpegBytes, mime: 'image/jpeg' },
  mp4: { bytes: mp4Bytes, mime: 'video/mp4' },
  gif: { bytes: () => Buffer.from('GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;', 'latin1'), mime: 'image/gif' },
  text: { bytes: () => Buffer.from('hello, this is not a picture\n'), mime: 'image/png' },
};

// ---- HTTP ------------------------------------------------------------------

function parseMaybe(text) {
  try { return JSON.parse(text); } catch { return null; }
}

// One HTTP exchange on a raw socket (for bodies a client library would not
// send, or answers that come before the body). Resolves
// {status, headers, text, json, closed}.
export function rawHttp(port, request, { timeout = 5000, keepOpenMs = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const t = setTimeout(() => finish(new Error(`no complete answer within ${timeout} ms: ${buf.toString('latin1').slice(0, 500)}`)), timeout);
    function parse() {
      const s = buf.toString('latin1');
      const end = s.indexOf('\r\n\r\n');
      if (end < 0) return null;
      const lines = s.slice(0, end).split('\r\n');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
      if (!m) return null;
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const bodyBuf = buf.subarray(Buffer.byteLength(s.slice(0, end + 4), 'latin1'));
      let body = null;
      if (headers['content-length'] !== undefined) {
        const n = Number(headers['content-length']);
        if (bodyBuf.length >= n) body = bodyBuf.subarray(0, n);
      } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
        const txt = bodyBuf.toString('latin1');
        let out = '';
        let i = 0;
        for (;;) {
          const e = txt.indexOf('\r\n', i);
          if (e < 0) return null;
          const n = parseInt(txt.slice(i, e), 16);
          if (Number.isNaN(n)) return null;
          if (n === 0) { body = Buffer.from(out, 'latin1'); break; }
          if (txt.length < e + 2 + n + 2) return null;
          out += txt.slice(e + 2, e + 2 + n);
          i = e + 2 + n + 2;
        }
      }
      if (body === null) return null;
      const text = body.toString('utf8');
      return { status: Number(m[1]), headers, text, json: parseMaybe(text) };
    }
    function finish(e, closed = false) {
      if (done) return;
      const r = parse();
      if (!r && !closed && !e) return;
      done = true;
      clearTimeout(t);
      sock.destroy();
      if (r) resolve({ ...r, closed });
      else reject(e || new Error(`connection closed without a complete answer: ${buf.toString('latin1').slice(0, 500)}`));
    }
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (parse()) {
        if (keepOpenMs) setTimeout(() => finish(null, sock.destroyed), keepOpenMs);
        else finish(null);
      }
    });
    sock.on('error', (e) => { if (!parse()) finish(e, true); else finish(null, true); });
    sock.on('close', () => finish(null, true));
    sock.on('connect', () => { sock.write(request, (e) => { /* early answers may close the socket */ }); });
  });
}

// ---- the environment of one test file --------------------------------------

export class Env {
  static async start({ durationMs = 500, concurrency = 10, emuArgs = [], sets = [] } = {}) {
    const env = new Env();
    env.emu = await startEmu({ durationMs, concurrency, args: emuArgs });
    try {
      env.fila = await startFila({ emuUrl: env.emu.url, sets });
    } catch (e) {
      await env.emu.stop();
      throw e;
    }
    env.dir = env.fila.dir;
    env.extra = [];
    return env;
  }

  get url() { return this.fila.url; }
  get port() { return this.fila.port; }

  // Another fila process on the same store (rule 1 across processes).
  async startSibling(sets = this.fila.sets) {
    const f = await startFila({ emuUrl: this.emu.url, dir: this.dir, sets });
    this.extra.push(f);
    return f;
  }

  // Stops fila (SIGTERM, or the signal given) and starts it again on the
  // same store and port. Resolves the old process's exit.
  async restart({ signal = 'SIGTERM', sets = this.fila.sets } = {}) {
    const exit = await this.fila.stop(signal);
    this.fila = await startFila({ emuUrl: this.emu.url, dir: this.dir, port: this.fila.port, sets });
    return exit;
  }

  // Stops everything; a daemon that did not exit 0 on SIGTERM, or that
  // printed a sanitizer report, fails the test file that started it.
  async stop() {
    const procs = [this.fila, ...this.extra].filter(Boolean);
    const exits = await Promise.all(procs.map((f) => f.stop()));
    await this.emu?.stop();
    if (this.dir && !process.env.FILA_KEEP) fs.rmSync(this.dir, { recursive: true, force: true });
    procs.forEach((f, i) => {
      const bad = /Sanitizer|runtime error:/.test(f.stderr());
      if (bad || exits[i].code !== 0) {
        throw new Error(`fila did not stop cleanly (${JSON.stringify(exits[i])})\n${f.stderr().slice(-4000)}`);
      }
    });
  }

  // api(method, path, {token, body, raw, headers, base}) → {status, json, text, headers}
  async api(method, p, { token: tok, body, raw, headers = {}, base = this.url } = {}) {
    const h = { ...headers };
    if (tok) h.authorization = `Bearer ${tok}`;
    let data;
    if (raw !== undefined) data = raw;
    else if (body !== undefined) {
      data = JSON.stringify(body);
      if (!Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['content-type'] = 'application/json';
    }
    let res;
    for (let attempt = 0; ; attempt++) {
      try {
        res = await fetch(base + p, { method, headers: h, body: data });
        break;
      } catch (e) {
        // A pooled connection of a stopped process: one retry, GET only.
        if (attempt > 0 || method !== 'GET') throw new Error(`${method} ${p}: ${e.cause?.message || e.message}\nfila stderr: ${this.fila.stderr().slice(-3000)}`);
        await sleep(50);
      }
    }
    const text = await res.text();
    return { status: res.status, json: parseMaybe(text), text, headers: res.headers };
  }

  // The emulator's control endpoints.
  emuCall(method, p, body) { return this.emu.call(method, p, body); }
  stats() { return this.emu.stats(); }

  async upload(tok, kind = 'png') {
    const k = KINDS[kind];
    const bytes = k.bytes();
    const r = await this.api('POST', '/v1/uploads', { token: tok, raw: bytes, headers: { 'content-type': k.mime } });
    assert.equal(r.status, 201, `upload ${kind}: ${r.status} ${r.text}`);
    return r.json.id;
  }

  // Submits and returns the whole answer.
  submit(tok, body, headers = {}) {
    return this.api('POST', '/v1/jobs', { token: tok, body, headers });
  }

  // Uploads what the tool needs and submits it; asserts 201; returns the job.
  async submitTool(tok, tool = 'upscaler', { inputs = {}, variant, headers, session_id } = {}) {
    const need = { upscaler: { image: 'png' }, pose_changer: { person: 'png', reference: 'jpeg' },
      veste_ai: { person: 'png', clothing: 'png' }, video_upscaler: { video: 'mp4' } }[tool] || {};
    const full = {};
    for (const [name, kind] of Object.entries(need)) full[name] = await this.upload(tok, kind);
    Object.assign(full, inputs);
    const body = { tool, inputs: full };
    if (variant) body.variant = variant;
    if (session_id) body.session_id = session_id;
    const r = await this.submit(tok, body, headers);
    assert.equal(r.status, 201, `submit ${tool}: ${r.status} ${r.text}`);
    return r.json;
  }

  async job(tok, id) {
    const r = await this.api('GET', `/v1/jobs/${id}`, { token: tok });
    assert.equal(r.status, 200, `GET job ${id}: ${r.status} ${r.text}`);
    return r.json;
  }

  async me(tok) {
    const r = await this.api('GET', '/v1/me', { token: tok });
    assert.equal(r.status, 200, `GET /v1/me: ${r.status} ${r.text}`);
    return r.json;
  }

  async ledger(tok) {
    const r = await this.api('GET', '/v1/me/ledger', { token: tok });
    assert.equal(r.status, 200, `GET /v1/me/ledger: ${r.status} ${r.text}`);
    return r.json.entries;
  }

  async queue() {
    const r = await this.api('GET', '/v1/admin/queue', { token: adminToken() });
    assert.equal(r.status, 200, `GET /v1/admin/queue: ${r.status} ${r.text}`);
    return r.json;
  }

  async waitStatus(tok, id, statuses, timeout = 15000) {
    const want = Array.isArray(statuses) ? statuses : [statuses];
    let last;
    return waitFor(async () => {
      last = await this.job(tok, id);
      return want.includes(last.status) ? last : null;
    }, timeout, () => `job ${id} never reached ${want.join('|')}; last: ${JSON.stringify(last)}\nfila stderr: ${this.fila.stderr().slice(-2000)}`);
  }

  // Cancels (as admin) whatever an earlier, failed test left queued or
  // running, and waits for the slots to be free: each test starts clean.
  async clearQueue(timeout = 15000) {
    let q = await this.queue();
    if (q.active.length === 0 && q.queued.length === 0 && q.slots.used === 0) return;
    for (const j of [...q.queued].reverse().concat(q.active)) {
      await this.api('POST', `/v1/admin/jobs/${j.id}/cancel`, { token: adminToken() });
    }
    await waitFor(async () => {
      q = await this.queue();
      return q.active.length === 0 && q.queued.length === 0 && q.slots.used === 0;
    }, timeout, () => `a clean queue; still ${JSON.stringify(q.slots)}`);
  }

  // The emulator's record of a job's task.
  async task(job) {
    const s = await this.stats();
    return s.tasks.find((t) => t.taskId === job.provider_task_id) || null;
  }
}

// Polls fn every `every` ms until it returns a truthy value.
export async function waitFor(fn, timeout = 10000, what = 'condition', every = 40) {
  const deadline = Date.now() + timeout;
  let lastErr;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { lastErr = e; }
    if (Date.now() > deadline) {
      const msg = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeout} ms waiting for ${msg}${lastErr ? `: ${lastErr.message}` : ''}`);
    }
    await sleep(every);
  }
}

// ---- assertions ------------------------------------------------------------

// An error answer: exact status and code, message a string, details as given.
export function assertError(r, status, code, msg = '') {
  assert.equal(r.status, status, `${msg} expected ${status} ${code}, got ${r.status}: ${r.text}`);
  assert.ok(r.json && typeof r.json === 'object' && r.json.error, `${msg} error body not JSON: ${r.text}`);
  assert.equal(r.json.error.code, code, `${msg} error code: ${r.text}`);
  assert.equal(typeof r.json.error.message, 'string', `${msg} error.message: ${r.text}`);
  assert.ok(r.json.error.message.length > 0, `${msg} empty error.message`);
  if (r.json.error.details !== undefined) {
    assert.equal(typeof r.json.error.details, 'object', `${msg} details: ${r.text}`);
  }
  return r.json.error;
}

export const JOB_KEYS = ['id', 'user_id', 'tool', 'variant', 'status', 'position', 'inputs', 'outputs',
  'error', 'cost', 'credits_charged', 'credits_refunded', 'provider_task_id', 'session_id',
  'created_at', 'started_at', 'finished_at', 'updated_at'];

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:00)$/;

export function isTime(v) { return typeof v === 'string' && RFC3339.test(v) && !Number.isNaN(Date.parse(v)); }

// The job shape of docs/api.md §3.
export function assertJobShape(j) {
  for (const k of JOB_KEYS) assert.ok(k in j, `job lacks "${k}": ${JSON.stringify(j)}`);
  assert.equal(typeof j.id, 'string');
  assert.equal(typeof j.user_id, 'string');
  assert.equal(typeof j.tool, 'string');
  assert.ok(['queued', 'starting', 'running', 'completed', 'failed', 'cancelled'].includes(j.status), `status ${j.status}`);
  if (j.status === 'queued') assert.ok(Number.isInteger(j.position) && j.position >= 1, `queued position ${j.position}`);
  else assert.equal(j.position, null, `position of a ${j.status} job`);
  assert.equal(typeof j.inputs, 'object');
  assert.ok(Array.isArray(j.outputs), 'outputs is an array');
  assert.equal(typeof j.cost, 'number');
  assert.equal(typeof j.credits_charged, 'boolean');
  assert.equal(typeof j.credits_refunded, 'boolean');
  assert.ok(isTime(j.created_at), `created_at ${j.created_at}`);
  assert.ok(isTime(j.updated_at), `updated_at ${j.updated_at}`);
  for (const k of ['started_at', 'finished_at']) assert.ok(j[k] === null || isTime(j[k]), `${k} ${j[k]}`);
  if (['failed', 'cancelled'].includes(j.status)) {
    assert.equal(typeof j.error?.code, 'string', `error of a ${j.status} job`);
    assert.equal(typeof j.error?.message, 'string');
    assert.ok(j.finished_at !== null);
  } else if (j.status === 'completed') {
    assert.equal(j.error, null, 'error of a completed job');
    assert.ok(j.finished_at !== null, 'finished_at of a completed job');
  } else {
    assert.equal(j.error, null, `error of a ${j.status} job`);
    assert.equal(j.finished_at, null, `finished_at of a ${j.status} job`);
  }
  if (j.status === 'queued') assert.equal(j.started_at, null);
  return j;
}
