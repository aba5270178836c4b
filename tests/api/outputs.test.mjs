// docs/api.md §10, outputs that outlive the provider's links: with
// [outputs], a job completes only once its outputs are stored (under
// outputs.dir, or on S3), and outputs[].url is fila's own, signed;
// GET /v1/outputs/{id} serves them with Content-Type, ETag and Range. And
// §11: an output URL that is not http(s) fails the job, refunded.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Env, newUser, adminToken, waitFor, pngBytes } from './harness.mjs';
import { startS3 } from './s3.mjs';

let env;
let s3;
let s3env;
before(async () => {
  env = await Env.start({ durationMs: 100, sets: ['outputs.store=local', 'outputs.url_ttl=600'] });
  s3 = await startS3();
  s3env = await Env.start({
    durationMs: 100,
    sets: ['outputs.store=s3', `outputs.s3_endpoint=${s3.endpoint}`, `outputs.s3_bucket=${s3.bucket}`,
      `outputs.s3_region=${s3.region}`, `outputs.s3_access_key=${s3.accessKey}`, `outputs.s3_secret_key=${s3.secretKey}`],
  });
});
after(async () => { await env?.stop(); await s3env?.stop(); await s3?.stop(); });

// Upload bytes, run the upscaler (whose emulated output is its input),
// wait for the end: {job, bytes}.
async function run(e, u, bytes = pngBytes(64)) {
  const up = await e.api('POST', '/v1/uploads', { token: u.tok, raw: bytes, headers: { 'content-type': 'image/png' } });
  assert.equal(up.status, 201, up.text);
  const r = await e.submit(u.tok, { tool: 'upscaler', inputs: { image: up.json.id } });
  assert.equal(r.status, 201, r.text);
  const job = await e.waitStatus(u.tok, r.json.id, ['completed', 'failed']);
  return { job, bytes };
}

async function get(url, headers = {}) {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

for (const [name, which] of [['local', () => env], ['s3', () => s3env]]) {
  test(`${name}: the job completes with fila's signed URL; the bytes, their type, ETag, Range, 304`, async () => {
    const e = which();
    const u = newUser(`out-${name}`);
    const { job, bytes } = await run(e, u);
    assert.equal(job.status, 'completed', JSON.stringify(job.error));
    const out = job.outputs[0];
    assert.equal(out.type, 'png');
    assert.ok(out.url.startsWith(`${e.url}/v1/outputs/out_`), out.url);
    assert.match(out.url, /[?&]exp=\d+&sig=[\w-]+/);
    let r = await get(out.url);
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('content-type'), 'image/png');
    assert.equal(Number(r.headers.get('content-length')), bytes.length);
    assert.ok(r.body.equals(bytes), 'the same bytes');
    const etag = r.headers.get('etag');
    assert.equal(etag, `"${crypto.createHash('sha256').update(bytes).digest('hex')}"`);
    r = await get(out.url, { range: 'bytes=8-15' });
    assert.equal(r.status, 206);
    assert.equal(r.headers.get('content-range'), `bytes 8-15/${bytes.length}`);
    assert.ok(r.body.equals(bytes.subarray(8, 16)));
    r = await get(out.url, { range: `bytes=${bytes.length + 10}-` });
    assert.equal(r.status, 416);
    r = await get(out.url, { 'if-none-match': etag });
    assert.equal(r.status, 304);
    // Every read of the job signs anew, and the provider's link is gone.
    const again = await e.job(u.tok, job.id);
    assert.ok(again.outputs[0].url.startsWith(`${e.url}/v1/outputs/`));
  });
}

test('without a valid signature: the owner\'s or an admin\'s token, else 401 / 404', async () => {
  const u = newUser('owner');
  const { job } = await run(env, u);
  const url = new URL(job.outputs[0].url);
  const bare = `${env.url}${url.pathname}`;
  let r = await get(bare);
  assert.equal(r.status, 401);
  r = await get(`${bare}?exp=${url.searchParams.get('exp')}&sig=AAAA${url.searchParams.get('sig').slice(4)}`);
  assert.equal(r.status, 401, 'a tampered signature');
  r = await get(`${bare}?exp=${Number(url.searchParams.get('exp')) + 1}&sig=${url.searchParams.get('sig')}`);
  assert.equal(r.status, 401, 'another expiry');
  r = await get(bare, { authorization: `Bearer ${u.tok}` });
  assert.equal(r.status, 200);
  r = await get(bare, { authorization: `Bearer ${adminToken()}` });
  assert.equal(r.status, 200);
  r = await get(bare, { authorization: `Bearer ${newUser('other').tok}` });
  assert.equal(r.status, 404);
  r = await get(`${env.url}/v1/outputs/out_0123456789abcdef0123456789abcdef`, { authorization: `Bearer ${adminToken()}` });
  assert.equal(r.status, 404);
  const head = await fetch(job.outputs[0].url, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-type'), 'image/png');
});

test('a job cancelled while its outputs are being stored: cancelled, refunded, nothing kept, and fila stops clean', async () => {
  const u = newUser('out-cancel');
  const before = (await s3env.me(u.tok)).credits;
  const up = await s3env.upload(u.tok);
  s3.hold(3000);
  try {
    const puts = s3.requests.filter((q) => q.method === 'PUT').length;
    const r = await s3env.submit(u.tok, { tool: 'upscaler', inputs: { image: up } });
    assert.equal(r.status, 201, r.text);
    await waitFor(async () => s3.requests.filter((q) => q.method === 'PUT').length > puts, 10000, 'the copy to be on its way');
    const c = await s3env.api('POST', `/v1/jobs/${r.json.id}/cancel`, { token: u.tok });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.json.status, 'cancelled');
    await new Promise((res) => setTimeout(res, 3500)); // the held PUT lands
    const j = await s3env.job(u.tok, r.json.id);
    assert.equal(j.status, 'cancelled');
    assert.deepEqual(j.outputs, []);
    assert.equal((await s3env.me(u.tok)).credits, before, 'refunded');
  } finally {
    s3.hold(0);
  }
  // A record of the dropped copy left behind is a leak the sanitizer
  // build reports when this fila stops (after()).
});

test('an output over outputs.max_bytes: the job fails provider_error, refunded', async () => {
  await env.restart({ sets: [...env.fila.sets, 'outputs.max_bytes=10'] });
  try {
    const u = newUser('big');
    const { job } = await run(env, u);
    assert.equal(job.status, 'failed');
    assert.equal(job.error.code, 'provider_error');
    assert.match(job.error.message, /outputs\.max_bytes/);
    assert.equal(job.credits_refunded, true);
    assert.equal((await env.me(u.tok)).credits, 100);
  } finally {
    await env.restart({ sets: env.fila.sets.filter((x) => x !== 'outputs.max_bytes=10') });
  }
});

test('§11: a callback with a javascript: output URL fails the job, refunded, never shown', async () => {
  await env.emuCall('POST', '/emu/config', { duration_ms: 60000 });
  try {
    const u = newUser('js');
    const up = await env.upload(u.tok);
    const r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: up } });
    await env.waitStatus(u.tok, r.json.id, 'running');
    const job = await env.job(u.tok, r.json.id);
    const task = await env.task(job);
    const envelope = { code: 0, msg: 'success', data: [{ fileUrl: 'javascript:alert(document.cookie)', fileType: 'png' }] };
    const cb = await fetch(task.webhookUrl, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event: 'TASK_END', taskId: task.taskId, eventData: JSON.stringify(envelope) }),
    });
    assert.equal(cb.status, 200);
    const end = await env.waitStatus(u.tok, r.json.id, ['completed', 'failed']);
    assert.equal(end.status, 'failed');
    assert.equal(end.error.code, 'provider_error');
    assert.match(end.error.message, /not http or https/);
    assert.deepEqual(end.outputs, []);
    assert.equal(end.credits_refunded, true);
  } finally {
    await env.emuCall('POST', '/emu/config', { duration_ms: 100 });
  }
});

test('§11: the provider\'s error text is kept to 2 KiB, cut at a character', async () => {
  await env.emuCall('POST', '/emu/config', { duration_ms: 60000 });
  try {
    const u = newUser('long');
    const up = await env.upload(u.tok);
    const r = await env.submit(u.tok, { tool: 'upscaler', inputs: { image: up } });
    await env.waitStatus(u.tok, r.json.id, 'running');
    const task = await env.task(await env.job(u.tok, r.json.id));
    const envelope = { code: 805, msg: 'APIKEY_TASK_STATUS_ERROR',
      data: { failedReason: { node_name: 'KSampler', exception_type: 'RuntimeError', exception_message: 'é'.repeat(5000) } } };
    await fetch(task.webhookUrl, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ event: 'TASK_END', taskId: task.taskId, eventData: JSON.stringify(envelope) }),
    });
    const end = await env.waitStatus(u.tok, r.json.id, ['completed', 'failed']);
    assert.equal(end.status, 'failed');
    const bytes = Buffer.byteLength(end.error.message);
    assert.ok(bytes <= 2048 && bytes > 1000, `${bytes} bytes`);
    assert.ok(!end.error.message.includes('\uFFFD'), 'cut at a character');
    assert.ok(end.error.message.endsWith('…'));
  } finally {
    await env.emuCall('POST', '/emu/config', { duration_ms: 100 });
  }
});
