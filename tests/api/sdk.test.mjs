// fila.js, the browser SDK (clients/js/fila.js), against the real daemon:
// errors as FilaError with API codes, uploads first, idempotent submit, the
// REST calls, live updates with resume across a restart, session leave and
// the admin calls. Node 20 has no EventSource: the small one below (over
// fetch streaming) is injected, as a Node user of the SDK would do.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, adminToken, pngBytes, jpegBytes, waitFor, sleep, assertJobShape } from './harness.mjs';
import { Fila, FilaError, TERMINAL, isTerminal } from '../../clients/js/fila.js';

// ---- an EventSource over fetch (what the SDK needs of one) -----------------
//
// Unlike a browser's, it does not reconnect by itself: when the stream ends or
// fails it fires "error" and stays CLOSED; the SDK reconnects (with ?after=).
class FetchEventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.onopen = this.onmessage = this.onerror = null;
    this.status = null;
    this._ls = {};
    this._ac = new AbortController();
    FetchEventSource.all.push(this);
    queueMicrotask(() => this._run());
  }

  addEventListener(type, fn) { (this._ls[type] ||= []).push(fn); }
  removeEventListener(type, fn) { this._ls[type] = (this._ls[type] || []).filter((f) => f !== fn); }
  close() { this.readyState = 2; this._ac.abort(); }
  // The network drops the connection (the server does not know yet).
  drop() { this._ac.abort(); }

  _emit(type, ev) {
    if (this.readyState === 2 && type !== 'error') return;
    const on = this['on' + type];
    if (on) on.call(this, ev);
    for (const f of this._ls[type] || []) f.call(this, ev);
  }

  _fail() {
    if (this.readyState === 2) return;
    this.readyState = 2;
    this._emit('error', { type: 'error' });
  }

  async _run() {
    if (this.readyState === 2) return;
    try {
      const res = await fetch(this.url, { headers: { accept: 'text/event-stream' }, signal: this._ac.signal });
      this.status = res.status;
      if (res.status !== 200 || !/^text\/event-stream/.test(res.headers.get('content-type') || '')) {
        await res.body?.cancel();
        this._fail();
        return;
      }
      this.readyState = 1;
      this._emit('open', { type: 'open' });
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      let id = '';
      let type = '';
      let data = [];
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let nl;
        while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + (buf.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            if (data.length) {
              const ev = { type: type || 'message', data: data.join('\n'), lastEventId: id };
              this._emit(ev.type, ev);
            }
            type = '';
            data = [];
            continue;
          }
          if (line.startsWith(':')) continue;
          const k = line.indexOf(':');
          const field = k < 0 ? line : line.slice(0, k);
          const val = k < 0 ? '' : line.slice(k + 1).replace(/^ /, '');
          if (field === 'id') id = val;
          else if (field === 'event') type = val;
          else if (field === 'data') data.push(val);
        }
        if (this.readyState === 2) return;
      }
    } catch (e) {
      if (this.readyState === 2) return;
    }
    this._fail();
  }
}

// ---- the environment -------------------------------------------------------

let env;
before(async () => {
  env = await Env.start({ durationMs: 700, concurrency: 10, sets: ['queue.slots=1'] });
});
after(async () => { await env?.stop(); });
beforeEach(async () => {
  await env.clearQueue();
  FetchEventSource.all = [];
});

const client = (tok) => new Fila({ baseUrl: env.url, token: tok, EventSource: FetchEventSource });

async function rejects(promise, status, code) {
  let err;
  try { await promise; } catch (e) { err = e; }
  assert.ok(err, `expected a FilaError ${status} ${code}, got success`);
  assert.ok(err instanceof FilaError, `expected a FilaError, got ${err}`);
  assert.ok(err instanceof Error);
  assert.equal(err.status, status, `status: ${err.status} ${err.code} ${err.message}`);
  assert.equal(err.code, code, `code: ${err.code} ${err.message}`);
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 0);
  return err;
}

// Collects a subscription's jobs; resolves when done(job, all) says so.
function collect(subscribeFn, done, timeout = 15000) {
  const jobs = [];
  let stop;
  const p = new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      stop?.();
      reject(new Error(`subscription timed out; got ${JSON.stringify(jobs.map((j) => [j.id.slice(-6), j.status, j.position]))}` +
        `\nfila stderr: ${env.fila.stderr().slice(-1500)}`));
    }, timeout);
    stop = subscribeFn((j) => {
      jobs.push(j);
      if (done(j, jobs)) { clearTimeout(t); resolve(jobs); }
    }, (e) => { clearTimeout(t); reject(e); });
  });
  return { promise: p, jobs, stop: () => stop?.() };
}

function checkArrows(jobs) {
  const order = ['queued', 'starting', 'running', 'completed'];
  for (let i = 1; i < jobs.length; i++) {
    const a = jobs[i - 1].status;
    const b = jobs[i].status;
    assert.ok(!isTerminal(a), `a change after the terminal ${a}: ${jobs.map((j) => j.status)}`);
    if (!isTerminal(b)) assert.ok(order.indexOf(b) >= order.indexOf(a), `status went back ${a} → ${b}`);
  }
}

// ---- errors ------------------------------------------------------------------

test('every non-2xx answer is a FilaError with the API code, status and details', async () => {
  const A = newUser('sdk-err');
  const fila = client(A.tok);

  await rejects(client('not-a-token').me(), 401, 'unauthorized');
  await rejects(new Fila({ baseUrl: env.url }).tools(), 401, 'unauthorized');
  await rejects(fila.job('job_does_not_exist'), 404, 'not_found');
  await rejects(fila.adminQueue(), 403, 'forbidden');

  const v = await rejects(fila.createJob({ tool: 'upscaler', inputs: {} }), 422, 'validation_failed');
  assert.ok(v.details?.fields?.image, `details.fields names the missing input: ${JSON.stringify(v.details)}`);
  const u = await rejects(fila.createJob({ tool: 'no_such_tool', inputs: {} }), 422, 'validation_failed');
  assert.ok(u.details?.fields, JSON.stringify(u.details));

  await rejects(fila.uploadFile(new TextEncoder().encode('plain text, not a picture')), 415, 'unsupported_media_type');

  const first = await fila.createJob({ tool: 'upscaler', inputs: { image: new Blob([pngBytes()], { type: 'image/png' }) } });
  const busy = await rejects(fila.createJob({ tool: 'veste_ai', inputs: { person: pngBytes(), clothing: pngBytes() } }),
    409, 'active_job_exists');
  assert.equal(busy.details.job_id, first.id);
  assert.equal(busy.details.tool, 'upscaler');
  assert.ok(['queued', 'starting', 'running'].includes(busy.details.status));

  await env.waitStatus(A.tok, first.id, 'completed');
  const fin = await rejects(fila.cancel(first.id), 409, 'job_finished');
  assert.equal(fin.details.status, 'completed');

  // No answer at all: status 0, network_error.
  const gone = new Fila({ baseUrl: 'http://127.0.0.1:1', token: A.tok });
  const n = await rejects(gone.me(), 0, 'network_error');
  assert.ok(n.cause, 'the underlying error is kept');
});

// ---- uploads and submit -------------------------------------------------------

test('uploadFile takes a Blob, a File, an ArrayBuffer or a Uint8Array', async () => {
  const fila = client(newUser('sdk-up').tok);
  const bytes = pngBytes();
  const sha = (await import('node:crypto')).createHash('sha256').update(bytes).digest('hex');

  const a = await fila.uploadFile(new Uint8Array(bytes));
  assert.match(a.id, /./);
  assert.equal(a.type, 'png');
  assert.equal(a.size, bytes.length);
  assert.equal(a.sha256, sha);

  const b = await fila.uploadFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  assert.equal(b.sha256, sha);

  const c = await fila.uploadFile(new Blob([jpegBytes()], { type: 'image/jpeg' }), { filename: 'me.jpg' });
  assert.equal(c.type, 'jpeg');

  const d = await fila.uploadFile(new File([pngBytes()], 'photo.png', { type: 'image/png' }));
  assert.equal(d.type, 'png');

  assert.throws(() => fila.uploadFile('not bytes'), TypeError);
});

test('createJob uploads File/Blob inputs first, passes session id and Idempotency-Key', async () => {
  const A = newUser('sdk-sub');
  const fila = client(A.tok);
  const before = await fila.me();
  assert.equal(before.user_id, A.id);
  assert.equal(before.active_job, null);
  assert.equal(await fila.activeJob(), null);

  const job = await fila.createJob({
    tool: 'upscaler',
    variant: 'standard',
    inputs: { image: new File([pngBytes()], 'in.png', { type: 'image/png' }), resolution: 2048, denoise: 0.25, prompt: 'sharp' },
    sessionId: 'tab-sdk-1',
    idempotencyKey: 'key-sdk-1',
  });
  assertJobShape(job);
  assert.equal(job.tool, 'upscaler');
  assert.equal(job.variant, 'standard');
  assert.equal(job.session_id, 'tab-sdk-1');
  assert.match(job.inputs.image, /^upl_/, `the file became an upload id: ${JSON.stringify(job.inputs)}`);
  assert.equal(job.inputs.resolution, 2048);
  assert.equal(job.inputs.prompt, 'sharp');

  // The same key again: the same job, nothing charged twice.
  const again = await fila.createJob({ tool: 'upscaler', inputs: { image: pngBytes() }, idempotencyKey: 'key-sdk-1' });
  assert.equal(again.id, job.id);

  const active = await fila.activeJob();
  assert.equal(active?.id, job.id);
  assert.equal((await fila.me()).credits, before.credits - job.cost);

  const done = await env.waitStatus(A.tok, job.id, 'completed');
  assert.equal((await fila.job(job.id)).status, 'completed');
  assert.equal((await fila.job(job)).id, job.id, 'job() takes a job too');
  assert.ok(done.outputs.length >= 1);
  assert.equal(await fila.activeJob(), null);

  const ledger = await fila.ledger();
  assert.deepEqual(ledger.map((e) => e.kind), ['charge', 'grant']);
  assert.equal(ledger[0].amount, -job.cost);
  assert.equal(ledger[0].job_id, job.id);
});

test('tools, jobs with filters and cursor, cancel with refund', async () => {
  const A = newUser('sdk-list');
  const fila = client(A.tok);
  const tools = await fila.tools();
  assert.deepEqual(tools.map((t) => t.name), ['upscaler', 'pose_changer', 'veste_ai', 'video_upscaler']);
  assert.ok(tools[0].inputs.some((i) => i.name === 'image' && i.type === 'image' && i.required));

  // A blocker from another user keeps A's jobs queued (one slot).
  const B = newUser('sdk-block');
  const blocker = await env.submitTool(B.tok, 'upscaler');
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const j = await fila.createJob({ tool: i === 1 ? 'veste_ai' : 'upscaler',
      inputs: i === 1 ? { person: pngBytes(), clothing: pngBytes() } : { image: pngBytes() } });
    assert.equal(j.status, 'queued');
    assert.equal(j.position, 1);
    const c = await fila.cancel(j.id);
    assert.equal(c.status, 'cancelled');
    assert.equal(c.error.code, 'cancelled');
    ids.unshift(j.id);
  }
  const all = await fila.jobs();
  assert.deepEqual(all.jobs.map((j) => j.id), ids, 'newest first');
  assert.deepEqual((await fila.jobs({ tool: 'veste_ai' })).jobs.map((j) => j.id), [ids[1]]);
  assert.equal((await fila.jobs({ status: 'completed' })).jobs.length, 0);
  const page1 = await fila.jobs({ limit: 2 });
  assert.equal(page1.jobs.length, 2);
  assert.ok(page1.next_cursor);
  const page2 = await fila.jobs({ limit: 2, cursor: page1.next_cursor });
  assert.deepEqual(page2.jobs.map((j) => j.id), [ids[2]]);

  const ledger = await fila.ledger();
  assert.equal(ledger.filter((e) => e.kind === 'refund').length, 3);
  assert.equal((await fila.me()).credits, 100);
  await env.waitStatus(B.tok, blocker.id, 'completed');
});

// ---- live updates --------------------------------------------------------------

test('subscribe: queued with its position, then running, then completed; closes itself', async () => {
  const A = newUser('sdk-live-a');
  const B = newUser('sdk-live-b');
  const a = await client(A.tok).createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
  const fb = client(B.tok);
  const b = await fb.createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
  assert.equal(b.status, 'queued');
  assert.equal(b.position, 1);

  const sub = collect((on, err) => fb.subscribe(b, on, { onError: err }), (j) => isTerminal(j));
  const jobs = await sub.promise;
  for (const j of jobs) {
    assert.equal(j.id, b.id);
    assertJobShape(j);
  }
  checkArrows(jobs);
  const es = FetchEventSource.all[0];
  assert.equal(es.status, 200, 'the event stream answered');
  assert.equal(new URL(es.url).pathname, `/v1/jobs/${b.id}/events`);
  assert.equal(jobs[0].status, 'queued', 'the history starts with the submit');
  assert.equal(jobs[0].position, 1);
  const queued = jobs.filter((j) => j.status === 'queued');
  for (const j of queued) {
    if ('eta_s' in j) assert.equal(typeof j.eta_s, 'number', `eta_s is a number: ${JSON.stringify(j)}`);
  }
  assert.ok(jobs.some((j) => j.status === 'running'), `seen running: ${jobs.map((j) => j.status)}`);
  assert.equal(jobs.at(-1).status, 'completed');
  assert.ok(jobs.at(-1).outputs.length >= 1);

  // Closed after the terminal event: no stream stays open, none is reopened.
  await sleep(800);
  assert.ok(FetchEventSource.all.every((s) => s.readyState === 2), 'every EventSource closed');
  assert.equal(jobs.filter((j) => isTerminal(j)).length, 1, 'one terminal delivery');
  await env.waitStatus(A.tok, a.id, 'completed');
});

test('subscribe to a finished job: its whole history, terminal last; the URL carries the token', async () => {
  const A = newUser('sdk-hist');
  const fila = client(A.tok);
  const j = await fila.createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
  await env.waitStatus(A.tok, j.id, 'completed');
  const jobs = await collect((on, err) => fila.subscribe(j.id, on, { onError: err }), (x) => isTerminal(x)).promise;
  assert.ok(jobs.length >= 2, `history: ${jobs.map((x) => x.status)}`);
  checkArrows(jobs);
  assert.equal(jobs.at(-1).status, 'completed');
  const url = new URL(FetchEventSource.all[0].url);
  assert.equal(url.pathname, `/v1/jobs/${j.id}/events`);
  assert.equal(url.searchParams.get('access_token'), A.tok);
  assert.equal(url.searchParams.get('after'), null);
});

test('subscribe resumes after fila restarts: ?after= the last id, nothing lost, nothing twice', async () => {
  const B = newUser('sdk-resume-b');
  const A = newUser('sdk-resume-a');
  // A runs long enough for the restart to happen while B waits.
  await env.emuCall('POST', '/emu/config', { duration_ms: 2500 });
  try {
    const a = await client(A.tok).createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
    const fb = client(B.tok);
    const b = await fb.createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
    assert.equal(b.status, 'queued');

    const sub = collect((on, err) => fb.subscribe(b, on, { onError: err }), (j) => isTerminal(j), 25000);
    await waitFor(() => sub.jobs.length >= 1, 5000, 'the first event');
    await env.restart();
    const jobs = await sub.promise;
    checkArrows(jobs);
    assert.equal(jobs[0].status, 'queued');
    assert.equal(jobs.at(-1).status, 'completed', `statuses: ${jobs.map((j) => j.status)}`);
    const whole = await collect((on, err) => fb.subscribe(b, on, { onError: err }), (j) => isTerminal(j)).promise;
    const key = (j) => `${j.status}/${j.position}/${j.updated_at}`;
    assert.deepEqual(jobs.map(key), whole.map(key), 'the same events as one unbroken stream');
    const urls = FetchEventSource.all.slice(0, -1).map((s) => new URL(s.url));
    assert.ok(urls.length >= 2, 'reconnected');
    const resumed = urls.slice(1).filter((u) => u.searchParams.get('after'));
    assert.ok(resumed.length >= 1, `a reconnect carries ?after=: ${urls.map(String)}`);
    for (const u of resumed) assert.match(u.searchParams.get('after'), /^\d+$/);
    await env.waitStatus(A.tok, a.id, 'completed', 20000);
  } finally {
    await env.emuCall('POST', '/emu/config', { duration_ms: 700 });
  }
});

test('subscribe after a dropped connection: the same events as one unbroken stream', async () => {
  const A = newUser('sdk-drop-a');
  const B = newUser('sdk-drop-b');
  await env.emuCall('POST', '/emu/config', { duration_ms: 1500 });
  try {
    const a = await client(A.tok).createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
    const fb = client(B.tok);
    const b = await fb.createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
    const sub = collect((on, err) => fb.subscribe(b, on, { onError: err }), (j) => isTerminal(j), 20000);
    await waitFor(() => sub.jobs.length >= 1, 5000, 'the first event');
    FetchEventSource.all[0].drop();
    const broken = await sub.promise;
    const urls = FetchEventSource.all.map((x) => new URL(x.url));
    assert.ok(urls.length >= 2, 'reconnected');
    assert.match(urls[1].searchParams.get('after') || '', /^\d+$/, `the reconnect says where it stopped: ${urls[1]}`);

    // The whole history in one go, for comparison.
    const whole = await collect((on, err) => fb.subscribe(b, on, { onError: err }), (j) => isTerminal(j)).promise;
    const key = (j) => `${j.status}/${j.position}/${j.updated_at}`;
    assert.deepEqual(broken.map(key), whole.map(key), 'nothing lost, nothing twice');
    assert.ok(broken.some((j) => j.status === 'running'));
    await env.waitStatus(A.tok, a.id, 'completed');
  } finally {
    await env.emuCall('POST', '/emu/config', { duration_ms: 700 });
  }
});

test('subscribe: a provider failure arrives with the provider\'s message', async () => {
  const A = newUser('sdk-fail');
  const fila = client(A.tok);
  const j = await fila.createJob({ tool: 'upscaler', inputs: { image: pngBytes(), prompt: 'EMU_FAIL' } });
  const jobs = await collect((on, err) => fila.subscribe(j, on, { onError: err }), (x) => isTerminal(x)).promise;
  const last = jobs.at(-1);
  assert.equal(last.status, 'failed');
  assert.equal(last.error.code, 'provider_error');
  assert.ok(last.error.message.length > 0);
  assert.equal(last.credits_refunded, true);
});

test('subscribe to another user\'s job: onError with not_found, no retry loop', async () => {
  const A = newUser('sdk-other-a');
  const B = newUser('sdk-other-b');
  const j = await client(A.tok).createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
  const err = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no onError within 5 s')), 5000);
    client(B.tok).subscribe(j.id, () => reject(new Error('an event of another user\'s job')),
      { onError: (e) => { clearTimeout(t); resolve(e); } });
  });
  assert.ok(err instanceof FilaError);
  assert.equal(err.code, 'not_found');
  const n = FetchEventSource.all.length;
  await sleep(1500);
  assert.equal(FetchEventSource.all.length, n, 'no more connections after giving up');
  await env.waitStatus(A.tok, j.id, 'completed');
});

test('unsubscribe stops the stream at once', async () => {
  const A = newUser('sdk-unsub');
  const fila = client(A.tok);
  const j = await fila.createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
  const got = [];
  const stop = fila.subscribe(j, (x) => got.push(x));
  await waitFor(() => got.length >= 1, 5000, 'a first event');
  stop();
  const n = got.length;
  await env.waitStatus(A.tok, j.id, 'completed');
  await sleep(300);
  assert.equal(got.length, n, 'nothing after unsubscribe');
  assert.ok(FetchEventSource.all.every((s) => s.readyState === 2));
});

test('subscribeAll: the caller\'s jobs only, one after the other', async () => {
  const A = newUser('sdk-all-a');
  const B = newUser('sdk-all-b');
  const fa = client(A.tok);
  const seen = [];
  let opened = false;
  const stop = fa.subscribeAll((j) => seen.push(j), { onOpen: () => { opened = true; } });
  try {
    await waitFor(() => opened, 5000, 'the stream to open');
    const other = await env.submitTool(B.tok, 'upscaler');
    const j1 = await fa.createJob({ tool: 'upscaler', inputs: { image: pngBytes() } });
    await waitFor(() => seen.some((j) => j.id === j1.id && isTerminal(j)), 15000, () => `j1 terminal; seen ${seen.map((j) => j.status)}`);
    const j2 = await fa.createJob({ tool: 'veste_ai', inputs: { person: pngBytes(), clothing: pngBytes() } });
    await waitFor(() => seen.some((j) => j.id === j2.id && isTerminal(j)), 15000, 'j2 terminal');
    assert.ok(seen.every((j) => j.user_id === A.id), 'only the caller\'s jobs');
    assert.ok(!seen.some((j) => j.id === other.id));
    checkArrows(seen.filter((j) => j.id === j1.id));
    checkArrows(seen.filter((j) => j.id === j2.id));
    await env.waitStatus(B.tok, other.id, 'completed');
  } finally {
    stop();
  }
});

test('no EventSource: subscribe says what to pass', () => {
  const fila = new Fila({ baseUrl: env.url, token: 'x', EventSource: null });
  if (globalThis.EventSource) return; // a runtime that has one
  assert.throws(() => fila.subscribe('job_x', () => {}), /EventSource/);
});

// ---- sessions ------------------------------------------------------------------

test('leaveSession cancels the session\'s queued job (session_left) and refunds it', async () => {
  const A = newUser('sdk-leave-a');
  const B = newUser('sdk-leave-b');
  const blocker = await env.submitTool(A.tok, 'upscaler');
  const fb = client(B.tok);
  const j = await fb.createJob({ tool: 'upscaler', inputs: { image: pngBytes() }, sessionId: 'tab-leave' });
  assert.equal(j.status, 'queued');
  assert.equal(await fb.leaveSession('tab-leave'), null);
  const after1 = await fb.job(j.id);
  assert.equal(after1.status, 'cancelled');
  assert.equal(after1.error.code, 'session_left');
  assert.equal(after1.credits_refunded, true);
  assert.equal((await fb.me()).credits, 100);
  // In Node there is no page to leave: a no-op unregister function.
  const unregister = fb.leaveOnUnload('tab-leave');
  assert.equal(typeof unregister, 'function');
  unregister();
  await env.waitStatus(A.tok, blocker.id, 'completed');
});

// ---- admin ---------------------------------------------------------------------

test('admin: queue, stats, grant, cancel with the admin error code', async () => {
  const admin = client(adminToken());
  const A = newUser('sdk-adm-a');
  const B = newUser('sdk-adm-b');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'upscaler');

  const q = await admin.adminQueue();
  assert.equal(q.slots.total, 1);
  assert.equal(q.slots.used, 1);
  assert.deepEqual(q.active.map((j) => j.id), [a.id]);
  assert.deepEqual(q.queued.map((j) => [j.id, j.position]), [[b.id, 1]]);

  const { accounts } = await admin.adminAccounts();
  assert.deepEqual(accounts.map((x) => [x.name, x.slots, x.used, x.up, x.reachable]), [['default', 1, 1, true, true]]);
  await rejects(client(A.tok).adminAccounts(), 403, 'forbidden');

  const c = await admin.adminCancel(b.id);
  assert.equal(c.status, 'cancelled');
  assert.equal(c.error.code, 'admin');
  await rejects(admin.adminCancel(b), 409, 'job_finished');

  const g = await admin.adminGrant(B.id, 25, 'sdk test');
  assert.equal(g.balance, 125);
  assert.equal((await client(B.tok).me()).credits, 125);

  await env.waitStatus(A.tok, a.id, 'completed');
  const s = await admin.adminStats(24);
  assert.ok(s.tools.upscaler.completed >= 1);
  assert.ok(s.tools.upscaler.cancelled >= 1);
  for (const k of ['completed', 'failed', 'cancelled', 'timeout']) assert.equal(typeof s.tools.upscaler[k], 'number');
  assert.equal(typeof (await admin.adminStats()).tools, 'object', 'hours defaults');
});

test('fila serves this very SDK at /fila.js (rebuild fila after editing it)', async () => {
  const fs = await import('node:fs');
  const src = fs.readFileSync(new URL('../../clients/js/fila.js', import.meta.url), 'utf8');
  const r = await fetch(`${env.url}/fila.js`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type') || '', /javascript/);
  assert.equal(await r.text(), src, 'the served fila.js is the one in clients/js/');
});

test('TERMINAL and isTerminal', () => {
  assert.deepEqual([...TERMINAL], ['completed', 'failed', 'cancelled']);
  assert.equal(isTerminal('failed'), true);
  assert.equal(isTerminal({ status: 'running' }), false);
});
