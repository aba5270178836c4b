// docs/api.md §11: nothing a client without a token sends costs fila more
// than a few bytes; slow bodies are cut off; per-user limits (429
// rate_limited, Retry-After, nothing written); old uploads swept away.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { Env, newUser, assertError, pngBytes, sleep, waitFor } from './harness.mjs';

let env;
before(async () => {
  env = await Env.start({
    durationMs: 200,
    sets: ['limits.submits_per_minute=4', 'limits.uploads_per_hour=6', 'limits.upload_bytes_per_day=4000',
      'limits.upload_retention=2', 'queue.per_user_active=10'],
  });
});
after(async () => { await env?.stop(); });

// fila's resident memory, in KiB.
function rss() {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${env.fila.proc.pid}/status`, 'utf8'));
  return Number(m[1]);
}

// Opens a socket and sends head (and then bytes of a body, slowly, if
// trickle): resolves {status, text} of the first answer, or null when
// the socket closed without one.
function rawRequest(head, { trickle = 0, every = 100 } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(env.port, '127.0.0.1');
    let buf = '';
    let t;
    sock.on('connect', () => {
      sock.write(head);
      if (trickle) t = setInterval(() => { if (!sock.destroyed) sock.write(Buffer.alloc(trickle, 0x61)); }, every);
    });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      if (m && buf.includes('\r\n\r\n')) {
        clearInterval(t);
        sock.destroy();
        resolve({ status: Number(m[1]), text: buf });
      }
    });
    sock.on('error', () => {});
    sock.on('close', () => { clearInterval(t); resolve(buf ? { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(buf)?.[1]), text: buf } : null); });
  });
}

test('200 unauthenticated 30 MiB uploads, sent slowly: 401 at once, bodies never read, RSS flat', async () => {
  const before = rss();
  const head = 'POST /v1/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 31457270\r\n\r\n';
  const answers = await Promise.all(Array.from({ length: 200 }, () => rawRequest(head, { trickle: 1024, every: 50 })));
  for (const a of answers) assert.equal(a?.status, 401, a?.text);
  const grew = rss() - before;
  assert.ok(grew < 20 * 1024, `RSS grew by ${grew} KiB`);
  // A real user is answered meanwhile and after.
  const u = newUser('real');
  const r = await env.api('GET', '/v1/me', { token: u.tok });
  assert.equal(r.status, 200);
});

test('a body trickled below the minimum rate is cut off (408); others are served meanwhile', async () => {
  const u = newUser('slow');
  // 1 byte every 2 s of a 64 KiB body: far below 16 KiB/s after the grace.
  const head = `POST /v1/uploads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${u.tok}\r\nContent-Type: image/png\r\nContent-Length: 65536\r\n\r\n`;
  const t0 = Date.now();
  const slow = Promise.all(Array.from({ length: 20 }, () => rawRequest(head, { trickle: 1, every: 2000 })));
  await sleep(500);
  const other = newUser('fast');
  const r = await env.api('GET', '/v1/me', { token: other.tok });
  assert.equal(r.status, 200);
  const answers = await slow;
  for (const a of answers) assert.ok(a === null || a.status === 408, a?.text);
  assert.ok(answers.some((a) => a?.status === 408), 'told why');
  assert.ok(Date.now() - t0 < 30000, `cut off after ${Date.now() - t0} ms`);
});

test('limits.submits_per_minute: over it 429 rate_limited with Retry-After, nothing charged or written', async () => {
  const u = newUser('spam');
  const img = await env.upload(u.tok);
  const body = { tool: 'upscaler', inputs: { image: img } };
  for (let i = 0; i < 4; i++) {
    const r = await env.submit(u.tok, body);
    assert.equal(r.status, 201, r.text);
    await env.api('POST', `/v1/jobs/${r.json.id}/cancel`, { token: u.tok });
  }
  const me = await env.me(u.tok);
  const r = await env.submit(u.tok, body);
  const e = assertError(r, 429, 'rate_limited', '5th submit:');
  assert.match(e.message, /submits/);
  const after = Number(r.headers.get('retry-after'));
  assert.ok(after >= 1 && after <= 60, `Retry-After ${after}`);
  assert.deepEqual(await env.me(u.tok), me, 'nothing charged');
  const jobs = await env.api('GET', '/v1/jobs', { token: u.tok });
  assert.equal(jobs.json.jobs.length, 4, 'nothing written');
});

test('limits.uploads_per_hour and upload_bytes_per_day: 429 rate_limited, nothing stored', async () => {
  const u = newUser('up');
  for (let i = 0; i < 6; i++) await env.upload(u.tok);
  let r = await env.api('POST', '/v1/uploads', { token: u.tok, raw: pngBytes(), headers: { 'content-type': 'image/png' } });
  assertError(r, 429, 'rate_limited', '7th upload:');
  assert.ok(Number(r.headers.get('retry-after')) > 0);
  // Bytes: 4000 a day; a 5000-byte upload is refused whole.
  const v = newUser('big');
  r = await env.api('POST', '/v1/uploads', { token: v.tok, raw: pngBytes(5000), headers: { 'content-type': 'image/png' } });
  const e = assertError(r, 429, 'rate_limited', 'over the bytes:');
  assert.match(e.message, /bytes/);
  const files = fs.readdirSync(`${env.dir}/uploads`, { recursive: true }).filter((f) => !String(f).startsWith('.spool'));
  assert.ok(files.every((f) => !String(f).includes(v.id)), 'nothing stored');
});

test('limits.upload_retention: an old upload goes, row and file', async () => {
  const u = newUser('old');
  const id = await env.upload(u.tok);
  const before = fs.readdirSync(`${env.dir}/uploads`, { recursive: true }).length;
  await waitFor(async () => {
    const r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: id } });
    return r.status === 422 && r.json.error.details.fields.image === 'upload not found';
  }, 15000, 'the upload to be swept');
  assert.ok(fs.readdirSync(`${env.dir}/uploads`, { recursive: true }).length < before, 'its file went too');
});
