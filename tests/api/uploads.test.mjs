// Uploads (docs/api.md §5) and rule 7: a job names only its own, existing uploads.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { Env, newUser, assertError, KINDS, pngBytes } from './harness.mjs';

let env;
before(async () => { env = await Env.start({ durationMs: 400 }); });
after(async () => { await env?.stop(); });

const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

function webpBytes() {
  const vp8 = Buffer.concat([Buffer.from('VP8 ', 'ascii'), Buffer.from([10, 0, 0, 0]), crypto.randomBytes(10)]);
  const size = Buffer.alloc(4);
  size.writeUInt32LE(4 + vp8.length);
  return Buffer.concat([Buffer.from('RIFF', 'ascii'), size, Buffer.from('WEBP', 'ascii'), vp8]);
}

function movBytes() {
  const ftyp = Buffer.concat([Buffer.from([0, 0, 0, 20]), Buffer.from('ftypqt  ', 'ascii'), Buffer.from([0, 0, 2, 0]), Buffer.from('qt  ', 'ascii')]);
  const moov = Buffer.concat([Buffer.from([0, 0, 0, 16]), Buffer.from('moov', 'ascii'), crypto.randomBytes(8)]);
  return Buffer.concat([ftyp, moov]);
}

async function send(tok, bytes, mime, query = '') {
  return env.api('POST', '/v1/uploads' + query, { token: tok, raw: bytes, headers: { 'content-type': mime } });
}

test('png, jpeg and mp4 are stored: 201 {id, type, size, sha256}', async () => {
  const u = newUser('up');
  const ids = new Set();
  for (const [kind, type] of [['png', 'png'], ['jpeg', 'jpeg'], ['mp4', 'mp4']]) {
    const bytes = KINDS[kind].bytes();
    const r = await send(u.tok, bytes, KINDS[kind].mime);
    assert.equal(r.status, 201, `${kind}: ${r.text}`);
    assert.deepEqual(Object.keys(r.json).sort(), ['id', 'sha256', 'size', 'type']);
    assert.equal(typeof r.json.id, 'string');
    assert.ok(r.json.id.length > 0);
    assert.equal(r.json.type, type);
    assert.equal(r.json.size, bytes.length);
    assert.equal(r.json.sha256, sha(bytes));
    ids.add(r.json.id);
  }
  assert.equal(ids.size, 3, 'every upload has its own id');
});

test('webp and mov are stored too', async () => {
  const u = newUser('up2');
  let r = await send(u.tok, webpBytes(), 'image/webp');
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.type, 'webp');
  r = await send(u.tok, movBytes(), 'video/quicktime', '?filename=clip.mov');
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.type, 'mov');
});

test('the type comes from the bytes, not from Content-Type', async () => {
  const u = newUser('sniff');
  const png = KINDS.png.bytes();
  let r = await send(u.tok, png, 'image/jpeg', '?filename=photo.jpg');
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.type, 'png');
  r = await send(u.tok, KINDS.jpeg.bytes(), 'application/octet-stream');
  assert.equal(r.status, 201, r.text);
  assert.equal(r.json.type, 'jpeg');
});

test('text, gif and empty bodies are 415 unsupported_media_type, even labelled image/png', async () => {
  const u = newUser('bad');
  for (const [name, bytes, mime] of [
    ['text', KINDS.text.bytes(), 'image/png'],
    ['text as text/plain', Buffer.from('just words'), 'text/plain'],
    ['gif', KINDS.gif.bytes(), 'image/gif'],
    ['gif labelled png', KINDS.gif.bytes(), 'image/png'],
    ['html', Buffer.from('<!doctype html><p>hi'), 'image/jpeg'],
    ['empty', Buffer.alloc(0), 'image/png'],
  ]) {
    assertError(await send(u.tok, bytes, mime), 415, 'unsupported_media_type', `${name}:`);
  }
});

test('rule 7: a job may only name existing uploads of its own user, of the right kind', async () => {
  const alice = newUser('alice');
  const bob = newUser('bob');
  const bobsPng = await env.upload(bob.tok, 'png');
  const alicesMp4 = await env.upload(alice.tok, 'mp4');
  const alicesPng = await env.upload(alice.tok, 'png');

  const cases = [
    ['another user\'s upload', { tool: 'upscaler', inputs: { image: bobsPng } }, 'image'],
    ['an upload that does not exist', { tool: 'upscaler', inputs: { image: 'upl_does_not_exist' } }, 'image'],
    ['a video where an image goes', { tool: 'upscaler', inputs: { image: alicesMp4 } }, 'image'],
    ['an image where a video goes', { tool: 'video_upscaler', inputs: { video: alicesPng } }, 'video'],
    ['one good, one foreign', { tool: 'pose_changer', inputs: { person: alicesPng, reference: bobsPng } }, 'reference'],
  ];
  for (const [name, body, field] of cases) {
    const r = await env.submit(alice.tok, body);
    const e = assertError(r, 422, 'validation_failed', `${name}:`);
    assert.equal(typeof e.details?.fields?.[field], 'string', `${name}: details.fields.${field} in ${r.text}`);
  }
  // Nothing was created or charged.
  assert.equal((await env.me(alice.tok)).credits, 100);
  assert.equal((await env.ledger(alice.tok)).length, 1);
  assert.deepEqual((await env.api('GET', '/v1/jobs', { token: alice.tok })).json.jobs, []);
  assert.equal((await env.stats()).submitted, 0, 'nothing reached the provider');
});

test('a filename with bidi or control characters is refused 422, nothing stored', async () => {
  const u = newUser('bidi');
  for (const name of ['evil\u202Egnp.exe', 'a\u2066b.png', 'line\nbreak.png', 'x'.repeat(256)]) {
    const r = await env.api('POST', `/v1/uploads?filename=${encodeURIComponent(name)}`, { token: u.tok, raw: pngBytes(), headers: { 'content-type': 'image/png' } });
    const e = assertError(r, 422, 'validation_failed', JSON.stringify(name));
    assert.ok(e.details.fields.filename, r.text);
  }
  const ok = await env.api('POST', `/v1/uploads?filename=${encodeURIComponent('Zoë à la plage.png')}`, { token: u.tok, raw: pngBytes(), headers: { 'content-type': 'image/png' } });
  assert.equal(ok.status, 201, ok.text);
});
