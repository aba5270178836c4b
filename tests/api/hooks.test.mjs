// docs/api.md §10, the app's backend hears about jobs: signed webhooks
// (Standard Webhooks), at least once and in order per job, retried with
// backoff, kept across kill -9.
import { test, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import { Env, newUser, adminToken, waitFor, freePort, sleep } from './harness.mjs';

const SECRET = 'whsec_' + crypto.randomBytes(24).toString('base64');

// The receiver an app would write: verify, then take the event.
function verify(headers, body) {
  const id = headers['webhook-id'];
  const ts = headers['webhook-timestamp'];
  const sigs = (headers['webhook-signature'] || '').split(' ');
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  const want = crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
  const fresh = Math.abs(Date.now() / 1000 - Number(ts)) < 300;
  return fresh && sigs.some((s) => s.startsWith('v1,') && crypto.timingSafeEqual(Buffer.from(s.slice(3)), Buffer.from(want)));
}

// A receiver on port: records every delivery; answer(req) says the status.
function receiver(port, answer = () => 200) {
  const got = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const d = { headers: req.headers, body, valid: verify(req.headers, body), json: JSON.parse(body) };
      got.push(d);
      const status = answer(d);
      res.writeHead(status, status >= 500 ? { 'retry-after': '1' } : {});
      res.end();
    });
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve({
    got, server, close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  })));
}

let env;
let port;
let rx;
let answer = () => 200;
before(async () => {
  port = await freePort();
  rx = await receiver(port, (d) => answer(d));
  env = await Env.start({ durationMs: 150, sets: [`webhooks.url=http://127.0.0.1:${port}/hooks/fila`, `webhooks.secret=${SECRET}`, 'webhooks.events=all'] });
});
after(async () => { await env?.stop(); await rx?.close(); });
beforeEach(() => { answer = () => 200; });

const ofJob = (id) => rx.got.filter((d) => d.json.data.id === id);

test('every change of a job reaches the app signed, in order, once each', async () => {
  const u = newUser('hook');
  const job = await env.submitTool(u.tok, 'upscaler');
  await env.waitStatus(u.tok, job.id, 'completed');
  await waitFor(() => ofJob(job.id).some((d) => d.json.type === 'job.completed'), 10000, 'job.completed');
  const mine = ofJob(job.id);
  // Queued (a job that starts at once may skip it), starting, running,
  // completed: in that order, each once.
  const types = mine.map((d) => d.json.type);
  const order = ['job.queued', 'job.starting', 'job.running', 'job.completed'];
  assert.deepEqual(types, order.slice(order.length - types.length), types.join(' '));
  assert.ok(types.length >= 3, types.join(' '));
  for (const d of mine) {
    assert.ok(d.valid, `signature of ${d.json.type}: ${JSON.stringify(d.headers)}`);
    assert.match(d.headers['webhook-id'], /^evt_\d+$/);
    assert.match(d.headers['content-type'], /application\/json/);
    assert.ok(!Number.isNaN(Date.parse(d.json.timestamp)));
  }
  assert.equal(new Set(mine.map((d) => d.headers['webhook-id'])).size, mine.length, 'one id per event');
  const last = mine.at(-1).json.data;
  assert.equal(last.status, 'completed');
  assert.equal(last.user_id, u.id);
  assert.ok(Array.isArray(last.outputs) && last.outputs.length > 0);
});

test('a delivery answered 500 twice comes again, same id and bytes, then is delivered', async () => {
  const u = newUser('retry');
  let fails = 0;
  answer = (d) => (d.json.type === 'job.completed' && d.json.data.user_id === u.id && fails++ < 2 ? 500 : 200);
  const job = await env.submitTool(u.tok, 'upscaler');
  await waitFor(() => ofJob(job.id).filter((d) => d.json.type === 'job.completed').length >= 3, 20000, 'three attempts');
  const tries = ofJob(job.id).filter((d) => d.json.type === 'job.completed');
  assert.equal(tries.length, 3);
  assert.equal(new Set(tries.map((d) => d.headers['webhook-id'])).size, 1);
  assert.equal(new Set(tries.map((d) => d.body)).size, 1);
  for (const d of tries) assert.ok(d.valid);
  await sleep(1500);
  assert.equal(ofJob(job.id).filter((d) => d.json.type === 'job.completed').length, 3, 'not after its 200');
  const r = await env.api('GET', '/v1/admin/webhooks?status=pending', { token: adminToken() });
  assert.equal(r.status, 200, r.text);
  assert.ok(!r.json.webhooks.some((w) => w.job_id === job.id), 'none pending');
});

test('a receiver down across a kill -9: the delivery waits in the store, then arrives', async () => {
  await rx.close();
  const u = newUser('down');
  const job = await env.submitTool(u.tok, 'upscaler');
  await env.waitStatus(u.tok, job.id, 'completed');
  let pending;
  await waitFor(async () => {
    const r = await env.api('GET', '/v1/admin/webhooks?status=pending', { token: adminToken() });
    pending = r.json.webhooks.filter((w) => w.job_id === job.id);
    return pending.some((w) => w.attempts > 0);
  }, 15000, 'a failed attempt recorded');
  const w = pending.find((x) => x.attempts > 0);
  assert.match(w.last_error, /connect|refused/i);
  assert.equal(w.status, 'pending');
  await env.restart({ signal: 'SIGKILL' });
  const seen = rx.got.length;
  rx = await receiver(port, (d) => answer(d));
  await waitFor(() => ofJob(job.id).some((d) => d.json.type === 'job.completed'), 30000, 'the delivery after the restart');
  assert.ok(rx.got.length > 0 && seen >= 0);
  for (const d of ofJob(job.id)) assert.ok(d.valid);
});

test('GET /v1/admin/webhooks: an admin route, status checked', async () => {
  let r = await env.api('GET', '/v1/admin/webhooks?status=bogus', { token: adminToken() });
  assert.equal(r.status, 422, r.text);
  r = await env.api('GET', '/v1/admin/webhooks', { token: newUser('x').tok });
  assert.equal(r.status, 403);
  r = await env.api('GET', '/metrics', { token: adminToken() });
  assert.match(r.text, /fila_webhooks\{state="pending"\} \d+/);
});
