// docs/api.md §2 and §5, the bounds of §11 seen from outside: the last
// connections are a reserve for health checks and admins, and an event
// stream whose client stops reading is closed once it falls behind by its
// budget, its client resuming with Last-Event-ID without losing anything.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Env, newUser, adminToken, sleep, waitFor } from './harness.mjs';

const MAX = 40; // the reserve is the last 32: 8 ordinary connections
let env;
before(async () => {
  env = await Env.start({
    durationMs: 3600000, // the slots stay taken: every job waits queued
    sets: [`server.max_connections=${MAX}`, 'queue.slots=1', 'queue.per_user_active=1000',
      'limits.submits_per_minute=0', 'limits.uploads_per_hour=0', 'limits.streams_per_user=0'],
  });
});
after(async () => { await env?.stop(); });

// One request on a connection of its own; resolves the status, or null
// when the connection closed without an answer.
function once(path, tok) {
  return new Promise((resolve) => {
    const s = net.connect(env.port, '127.0.0.1');
    let buf = '';
    s.on('connect', () => s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n` +
      (tok ? `Authorization: Bearer ${tok}\r\n` : '') + 'Connection: close\r\n\r\n'));
    s.on('data', (d) => { buf += d; });
    s.on('error', () => {});
    s.on('close', () => {
      const m = /^HTTP\/1\.1 (\d{3})/.exec(buf);
      resolve(m ? { status: Number(m[1]), text: buf } : null);
    });
  });
}

test('server.max_connections: past the ordinary ones, only health checks and admins are served; the rest get 503', async () => {
  const u = newUser('crowd');
  const idle = [];
  for (let i = 0; i < MAX - 32; i++) {
    const s = net.connect(env.port, '127.0.0.1');
    s.on('error', () => {});
    await new Promise((r) => s.on('connect', r));
    idle.push(s);
  }
  await sleep(200); // accepted, all of them

  const me = await once('/v1/me', u.tok);
  assert.equal(me?.status, 503, me?.text);
  assert.match(me.text, /"code":"unavailable"/);
  assert.match(me.text, /too many connections/);
  assert.equal((await once('/healthz'))?.status, 200);
  assert.equal((await once('/metrics', adminToken()))?.status, 200);
  assert.equal((await once('/v1/admin/queue', adminToken()))?.status, 200);

  for (const s of idle) s.destroy();
  await waitFor(async () => (await once('/v1/me', u.tok))?.status === 200, 5000, 'ordinary connections again');
});

// An event stream on a raw socket: collects the ids of the events read;
// pause() stops reading, resume() reads again; `ended` resolves when fila
// closes it.
function stream(tok, lastId) {
  const s = net.connect(env.port, '127.0.0.1');
  const st = { ids: [], text: '', bytes: 0, sock: s };
  st.ended = new Promise((resolve) => s.on('close', resolve));
  s.on('error', () => {});
  s.on('connect', () => s.write(`GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tok}\r\n` +
    (lastId ? `Last-Event-ID: ${lastId}\r\n` : '') + '\r\n'));
  s.setEncoding('utf8');
  s.on('data', (d) => {
    st.bytes += d.length;
    st.text += d;
    let i;
    while ((i = st.text.indexOf('\n\n')) >= 0) {
      const block = st.text.slice(0, i);
      st.text = st.text.slice(i + 2);
      const m = /^id: (\d+)$/m.exec(block);
      if (m) st.ids.push(Number(m[1]));
    }
  });
  return st;
}

test('a stream that stops reading is closed past its budget; Last-Event-ID resumes it with nothing lost', async () => {
  const u = newUser('slow');
  const other = newUser('taker');
  await env.submitTool(other.tok, 'upscaler'); // takes the one slot
  const image = await env.upload(u.tok);
  const prompt = 'p'.repeat(10000);

  const slow = stream(u.tok);
  await waitFor(async () => /^HTTP\/1\.1 200/.test(slow.text) || slow.bytes > 0, 5000, 'the stream open');
  await sleep(100);
  slow.sock.pause();

  // About 8 MB of events (each ~10 KB): more than the kernel's buffers on
  // both sides and the stream's 512 KiB.
  const ids = [];
  for (let i = 0; i < 400; i++) {
    const r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image, prompt } });
    assert.equal(r.status, 201, r.text);
    ids.push(r.json.id);
    const c = await env.api('POST', `/v1/jobs/${r.json.id}/cancel`, { token: u.tok });
    assert.equal(c.status, 200, c.text);
  }
  // A healthy live stream stays open (keep-alive comments every 10 s);
  // this one fila has closed: reading again gets what was buffered, then
  // the end.
  slow.sock.resume();
  let timer;
  await Promise.race([slow.ended, new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('the slow stream was not closed')), 15000);
  })]);
  clearTimeout(timer);
  assert.ok(slow.ids.length < 800, `all ${slow.ids.length} events arrived: the stream never fell behind`);

  // Resumed from its last id: every state change of the 400 jobs, each
  // once, in order.
  const last = slow.ids[slow.ids.length - 1];
  const back = stream(u.tok, last);
  await waitFor(async () => slow.ids.length + back.ids.length >= 800, 15000,
    () => `the rest of the events; have ${slow.ids.length} + ${back.ids.length}`);
  back.sock.destroy();
  const all = [...slow.ids, ...back.ids];
  assert.equal(new Set(all).size, all.length, 'no event twice');
  assert.deepEqual(all, [...all].sort((a, b) => a - b), 'in order');
  assert.equal(all.length, 800, 'queued and cancelled for each of 400 jobs');
  assert.ok((await env.api('GET', '/healthz')).status === 200);
});
