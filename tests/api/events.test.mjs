// Server-Sent Events (docs/api.md §5): one event per change, increasing ids,
// status arrows of §3, the terminal event last, catch-up by Last-Event-ID or
// ?after=, only the caller's jobs.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, assertJobShape, token, uid, assertError } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 600, concurrency: 10, sets: ['queue.slots=1'] }); });
after(async () => { await env?.stop(); });
beforeEach(async () => { await env.clearQueue(); });

const TERMINAL = ['completed', 'failed', 'cancelled'];
const ARROWS = {
  queued: ['starting', 'cancelled', 'failed'],
  starting: ['running', 'failed', 'cancelled'],
  running: ['completed', 'failed', 'cancelled'],
};

// Opens an event stream; collects parsed events until stop(ev, all) is true
// or the timeout passes. Resolves {events, contentType}.
async function stream(p, { tok, headers = {}, until, timeout = 10000, onOpen } = {}) {
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(), timeout);
  const url = env.url + p + (tok ? `${p.includes('?') ? '&' : '?'}access_token=${encodeURIComponent(tok)}` : '');
  const events = [];
  let contentType = '';
  let status = 0;
  try {
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: ac.signal });
    status = res.status;
    contentType = res.headers.get('content-type') || '';
    if (status !== 200) return { status, events, contentType, text: await res.text() };
    onOpen?.();
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const ev = { id: null, event: 'message', data: '' };
        let hasData = false;
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const k = line.indexOf(':');
          const field = k < 0 ? line : line.slice(0, k);
          const val = k < 0 ? '' : line.slice(k + 1).replace(/^ /, '');
          if (field === 'id') ev.id = val;
          else if (field === 'event') ev.event = val;
          else if (field === 'data') { ev.data += (hasData ? '\n' : '') + val; hasData = true; }
        }
        if (!hasData) continue;
        ev.json = JSON.parse(ev.data);
        events.push(ev);
        if (until?.(ev, events)) { ac.abort(); return { status, events, contentType }; }
      }
    }
  } catch (e) {
    if (e.name !== 'AbortError') throw e;
  } finally {
    clearTimeout(t);
  }
  return { status, events, contentType };
}

function checkStream(events, jobId) {
  const mine = events.filter((e) => e.json.id === jobId);
  let prevId = -Infinity;
  for (const e of events) {
    assert.match(e.id ?? '', /^\d+$/, `event id ${e.id}`);
    assert.ok(Number(e.id) > prevId, `ids increase: ${events.map((x) => x.id)}`);
    prevId = Number(e.id);
    assert.equal(e.event, 'job');
    assertJobShape(e.json);
  }
  for (let i = 1; i < mine.length; i++) {
    const a = mine[i - 1].json.status; const b = mine[i].json.status;
    if (a !== b) assert.ok(ARROWS[a]?.includes(b), `illegal move ${a} → ${b}`);
  }
  return mine;
}

test('GET /v1/jobs/{id}/events: every change in order, terminal last; catch-up by Last-Event-ID and ?after=', async () => {
  const A = newUser('evA'); const B = newUser('evB');
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'upscaler');
  assert.equal(b.status, 'queued');
  const live = await stream(`/v1/jobs/${b.id}/events`, { tok: B.tok, until: (ev) => ev.json.id === b.id && TERMINAL.includes(ev.json.status) });
  assert.equal(live.status, 200, live.text);
  assert.match(live.contentType, /text\/event-stream/);
  const mine = checkStream(live.events, b.id);
  assert.ok(mine.length >= 2, `events: ${mine.map((e) => e.json.status)}`);
  assert.ok(live.events.every((e) => e.json.id === b.id), 'only that job');
  const statuses = mine.map((e) => e.json.status);
  assert.equal(statuses.at(-1), 'completed');
  assert.ok(statuses.includes('running'), statuses.join(','));
  assert.deepEqual(mine.at(-1).json, await env.job(B.tok, b.id), 'the terminal event carries the whole job');

  // Reconnect after the first event: the missed ones again, in order.
  const firstId = mine[0].id;
  const rest = mine.slice(1).map((e) => [e.id, e.json.status]);
  const again = await stream(`/v1/jobs/${b.id}/events`, { tok: B.tok, headers: { 'Last-Event-ID': firstId }, until: (ev) => TERMINAL.includes(ev.json.status), timeout: 5000 });
  assert.deepEqual(again.events.map((e) => [e.id, e.json.status]), rest);
  const viaQuery = await stream(`/v1/jobs/${b.id}/events?after=${firstId}`, { tok: B.tok, until: (ev) => TERMINAL.includes(ev.json.status), timeout: 5000 });
  assert.deepEqual(viaQuery.events.map((e) => [e.id, e.json.status]), rest);

  // Another user's job: 404.
  const other = await stream(`/v1/jobs/${b.id}/events`, { tok: A.tok, timeout: 3000 });
  assert.equal(other.status, 404);
  await env.waitStatus(A.tok, a.id, TERMINAL);
});

test('GET /v1/events: the caller\'s jobs only, positions as they change', async () => {
  const A = newUser('allA'); const B = newUser('allB'); const C = newUser('allC');
  let opened;
  let cJob;
  const ready = new Promise((r) => { opened = r; });
  const watching = stream('/v1/events', {
    tok: C.tok,
    onOpen: () => opened(),
    until: (ev) => ev.json.id === cJob?.id && TERMINAL.includes(ev.json.status),
    timeout: 15000,
  });
  await Promise.race([ready, watching]);
  const a = await env.submitTool(A.tok, 'upscaler');
  const b = await env.submitTool(B.tok, 'upscaler');
  cJob = await env.submitTool(C.tok, 'pose_changer');
  assert.equal(cJob.position, 2);
  const got = await watching;
  assert.equal(got.status, 200, got.text);
  assert.ok(got.events.length > 0);
  assert.ok(got.events.every((e) => e.json.user_id === C.id), 'no other user\'s events');
  const mine = checkStream(got.events, cJob.id);
  const seen = mine.map((e) => [e.json.status, e.json.position]);
  assert.deepEqual(seen[0], ['queued', 2], JSON.stringify(seen));
  assert.ok(seen.some(([s, p]) => s === 'queued' && p === 1), `position 1 announced: ${JSON.stringify(seen)}`);
  assert.equal(seen.at(-1)[0], 'completed');
  await env.waitStatus(A.tok, a.id, TERMINAL);
  await env.waitStatus(B.tok, b.id, TERMINAL);
});

test('events need a token', async () => {
  const r = await env.api('GET', '/v1/events');
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'unauthorized');
});

test('a stream ends when its token expires (§11): the client comes back with a fresh one', async () => {
  const tok = token(uid('exp'), { exp: Math.floor(Date.now() / 1000) + 2 });
  const t0 = Date.now();
  const got = await stream('/v1/events', { tok, timeout: 20000 });
  const took = Date.now() - t0;
  assert.equal(got.status, 200);
  assert.ok(took < 10000, `the stream outlived its token: ${took} ms`);
});

test('limits.streams_per_user: one stream more is 429 rate_limited, with Retry-After', async () => {
  const u = newUser('many');
  const open = [];
  try {
    for (let i = 0; i < 20; i++) {
      const ac = new AbortController();
      const res = await fetch(`${env.url}/v1/events?access_token=${encodeURIComponent(u.tok)}`, { signal: ac.signal });
      assert.equal(res.status, 200, `stream ${i + 1}`);
      open.push(ac);
    }
    const r = await env.api('GET', '/v1/events', { token: u.tok });
    assertError(r, 429, 'rate_limited', '21st stream:');
    assert.match(r.headers.get('retry-after') || '', /^\d+$/);
    // Another user is not counted against this one.
    const other = newUser('few');
    const ac = new AbortController();
    const res = await fetch(`${env.url}/v1/events?access_token=${encodeURIComponent(other.tok)}`, { signal: ac.signal });
    assert.equal(res.status, 200);
    ac.abort();
    // One closes: room again.
    open.pop().abort();
    let again;
    for (let i = 0; i < 50; i++) {
      const ac2 = new AbortController();
      again = await fetch(`${env.url}/v1/events?access_token=${encodeURIComponent(u.tok)}`, { signal: ac2.signal });
      if (again.status === 200) { open.push(ac2); break; }
      await again.text();
      await new Promise((res2) => setTimeout(res2, 50));
    }
    assert.equal(again.status, 200);
  } finally {
    for (const ac of open) ac.abort();
  }
});

test('a stream is not opened with a token already expired, even within the clock skew', async () => {
  const tok = token(uid('late'), { exp: Math.floor(Date.now() / 1000) - 5 });
  const r = await env.api('GET', `/v1/events?access_token=${encodeURIComponent(tok)}`);
  assertError(r, 401, 'unauthorized', 'expired stream token:');
  // The same token still reads a job: requests allow 30 s of skew.
  const me = await env.api('GET', '/v1/me', { token: tok });
  assert.equal(me.status, 200, me.text);
});
