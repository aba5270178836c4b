// The error conventions of docs/api.md §2: invalid JSON, limits decided from
// Content-Length (413), unknown routes; the daemon keeps serving after each.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Env, newUser, adminToken, assertError, rawHttp, pngBytes, KINDS } from './harness.mjs';

let env;
// max_body 1024 and uploads.max_bytes 1000 keep the limits small enough to
// cross cheaply, and apart: a 1010-byte upload is too large, a 1010-byte
// JSON body is not.
before(async () => {
  env = await Env.start({ durationMs: 400, sets: ['server.max_body=1024', 'uploads.max_bytes=1000'] });
});
after(async () => { await env?.stop(); });

async function healthy() {
  const r = await env.api('GET', '/healthz');
  assert.equal(r.status, 200, 'the daemon stopped answering /healthz');
  assert.deepEqual(r.json, { ok: true });
}

function req(method, p, tok, { headers = {}, body } = {}) {
  const b = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const lines = [`${method} ${p} HTTP/1.1`, `Host: 127.0.0.1:${env.port}`];
  if (tok) lines.push(`Authorization: Bearer ${tok}`);
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-length')) lines.push(`Content-Length: ${b.length}`);
  return Buffer.concat([Buffer.from(lines.join('\r\n') + '\r\n\r\n'), b]);
}

test('a body that is not JSON is 400 invalid_json', async () => {
  const u = newUser('badjson');
  for (const raw of ['{"tool": "upscaler", "inputs": ', 'not json at all', '{"tool":"upscaler",}', '']) {
    const r = await env.api('POST', '/v1/jobs', { token: u.tok, raw, headers: { 'content-type': 'application/json' } });
    assertError(r, 400, 'invalid_json', `body ${JSON.stringify(raw)}:`);
  }
  await healthy();
});

test('JSON that is not an object (array, string, number, null) is 400 invalid_json', async () => {
  const u = newUser('notobj');
  for (const raw of ['[{"tool":"upscaler","inputs":{}}]', '"upscaler"', '42', 'null']) {
    const r = await env.api('POST', '/v1/jobs', { token: u.tok, raw, headers: { 'content-type': 'application/json' } });
    assertError(r, 400, 'invalid_json', `body ${raw}:`);
  }
  const admin = adminToken();
  const r = await env.api('POST', `/v1/admin/users/${u.id}/credits`, { token: admin, raw: '[5]', headers: { 'content-type': 'application/json' } });
  assertError(r, 400, 'invalid_json', 'admin credits with an array:');
  // Nothing was written for the user.
  assert.equal((await env.me(u.tok)).credits, 100);
  assert.equal((await env.ledger(u.tok)).length, 1);
  await healthy();
});

test('a JSON body over server.max_body is 413 too_large', async () => {
  const u = newUser('big');
  const body = JSON.stringify({ tool: 'upscaler', inputs: { prompt: 'x'.repeat(4096) } });
  assert.ok(body.length > 4096);
  const r = await rawHttp(env.port, req('POST', '/v1/jobs', u.tok, { headers: { 'Content-Type': 'application/json', Connection: 'close' }, body }));
  assertError(r, 413, 'too_large', 'json over max_body:');
  // Through an ordinary client as well.
  const f = await env.api('POST', '/v1/jobs', { token: u.tok, raw: body, headers: { 'content-type': 'application/json' } }).catch((e) => ({ error: e }));
  if (!f.error) assertError(f, 413, 'too_large', 'json over max_body (fetch):');
  // Nothing was written.
  const list = await env.api('GET', '/v1/jobs', { token: u.tok });
  assert.deepEqual(list.json.jobs, []);
  assert.equal((await env.me(u.tok)).credits, 100);
  await healthy();
});

test('a JSON body between the two limits is judged by server.max_body, not uploads.max_bytes', async () => {
  const u = newUser('mid');
  const raw = JSON.stringify({ tool: 'no_such_tool', inputs: {} }) + ' '.repeat(970);
  assert.ok(raw.length > 1000 && raw.length < 1024);
  const r = await env.api('POST', '/v1/jobs', { token: u.tok, raw, headers: { 'content-type': 'application/json' } });
  assertError(r, 422, 'validation_failed');
  assert.ok('tool' in r.json.error.details.fields, r.text);
});

test('an upload over uploads.max_bytes is 413 too_large, one under it is stored', async () => {
  const u = newUser('bigup');
  const big = pngBytes(1000); // > 1000 bytes, < max_body would not matter
  assert.ok(big.length > 1000);
  let r = await rawHttp(env.port, req('POST', '/v1/uploads', u.tok, { headers: { 'Content-Type': 'image/png', Connection: 'close' }, body: big }));
  assertError(r, 413, 'too_large', 'upload over max_bytes:');
  const small = pngBytes(0);
  assert.ok(small.length < 1000);
  r = await env.api('POST', '/v1/uploads', { token: u.tok, raw: small, headers: { 'content-type': 'image/png' } });
  assert.equal(r.status, 201, r.text);
  await healthy();
});

test('Content-Length of 100 MB with no body is refused with 413 at once', async () => {
  const u = newUser('huge');
  for (const p of ['/v1/uploads', '/v1/jobs']) {
    const t0 = Date.now();
    const r = await rawHttp(env.port, req('POST', p, u.tok, { headers: { 'Content-Type': p === '/v1/jobs' ? 'application/json' : 'image/png', 'Content-Length': '100000000' } }), { timeout: 3000 });
    assertError(r, 413, 'too_large', `${p} with Content-Length 100000000:`);
    assert.ok(Date.now() - t0 < 2000, `413 took ${Date.now() - t0} ms`);
    await healthy();
  }
});

test('after a 413 the connection is usable or closed cleanly', async () => {
  const u = newUser('conn');
  const first = req('POST', '/v1/jobs', u.tok, { headers: { 'Content-Type': 'application/json' }, body: 'y'.repeat(2048) });
  const second = req('GET', '/healthz', null, { headers: { Connection: 'close' } });
  // Both requests on one connection: either the second is answered, or the
  // socket was closed after a complete 413 (rawHttp resolves on the first answer).
  const r = await rawHttp(env.port, Buffer.concat([first, second]), { keepOpenMs: 300 });
  assertError(r, 413, 'too_large');
  await healthy();
});

test('an unknown route is 404 not_found', async () => {
  const u = newUser('nf');
  for (const [m, p] of [['GET', '/v1/nothing-here'], ['GET', '/nope'], ['POST', '/v1/jobs/job_x/explode'], ['GET', '/v1/jobs/job_does_not_exist']]) {
    const r = await env.api(m, p, { token: u.tok, body: m === 'POST' ? {} : undefined });
    assertError(r, 404, 'not_found', `${m} ${p}:`);
  }
  await healthy();
});

test('every error body is {"error":{"code","message"}} with JSON content type', async () => {
  const u = newUser('shape');
  const answers = [
    await env.api('GET', '/v1/me'),
    await env.api('GET', '/v1/nope', { token: u.tok }),
    await env.api('POST', '/v1/jobs', { token: u.tok, raw: '{', headers: { 'content-type': 'application/json' } }),
    await env.api('POST', '/v1/uploads', { token: u.tok, raw: KINDS.text.bytes(), headers: { 'content-type': 'text/plain' } }),
    await env.api('POST', '/v1/jobs', { token: u.tok, body: { tool: 'nope', inputs: {} } }),
  ];
  for (const r of answers) {
    assert.ok(r.status >= 400, r.text);
    assert.match(r.headers.get('content-type') || '', /application\/json/, r.text);
    assert.equal(typeof r.json.error.code, 'string', r.text);
    assert.equal(typeof r.json.error.message, 'string', r.text);
    assert.match(r.json.error.code, /^[a-z_]+$/);
  }
});
