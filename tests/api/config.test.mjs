// docs/api.md §1 and §8: start-up errors exit 2 naming file, line and key;
// `fila token`; a config file's own tools replace the built-in ones;
// credits.initial.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Env, FILA_BIN, SECRET, run, startFila, startEmu, newUser, assertError, freePort, pngBytes } from './harness.mjs';

let env;
let dir;
before(async () => {
  env = await Env.start({ durationMs: 400 });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fila-conf-'));
});
after(async () => {
  await env?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function serve(args) {
  // A bad configuration must stop fila before it serves: it exits by itself.
  return run(FILA_BIN, ['serve', '--set', `store.url=sqlite:${dir}/x.db`, '--set', `uploads.dir=${dir}/up`, ...args], { cwd: dir, timeout: 5000 });
}

test('--set with a value of the wrong type exits 2 naming the key', async () => {
  for (const [set, key] of [['queue.slots=abc', 'slots'], ['queue.slots=0', 'slots'], ['server.max_body=-1', 'max_body'], ['credits.initial=lots', 'initial']]) {
    const r = await serve(['--set', set]);
    assert.equal(r.code, 2, `${set}: exit ${r.code} signal ${r.signal} stderr ${r.stderr}`);
    assert.ok(r.stderr.includes(key), `${set}: stderr names ${key}: ${r.stderr}`);
  }
  const r = await serve(['--set', 'queue.no_such_key=1']);
  assert.equal(r.code, 2, r.stderr);
  assert.ok(r.stderr.includes('no_such_key'), r.stderr);
  const r2 = await serve(['--set', 'nonsense']);
  assert.equal(r2.code, 2, r2.stderr);
});

test('an unknown key, unknown section or bad value in a --config file exits 2 naming file and line', async () => {
  const cases = [
    ['unknown-key.conf', '[server]\nmax_body = 2048\nbogus_key = 1\n', 3, 'bogus_key'],
    ['unknown-section.conf', '; a comment\n[nope]\nx = 1\n', 2, 'nope'],
    ['bad-value.conf', '[queue]\nper_user_active = 1\nslots = many\n', 3, 'slots'],
  ];
  for (const [name, text, line, key] of cases) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    const r = await serve(['--config', file]);
    assert.equal(r.code, 2, `${name}: exit ${r.code} ${r.stderr}`);
    assert.ok(r.stderr.includes(name), `${name}: stderr names the file: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${name.replace('.', '\\.')}:${line}\\b`), `${name}: stderr names line ${line}: ${r.stderr}`);
    assert.ok(r.stderr.includes(key), `${name}: stderr names ${key}: ${r.stderr}`);
  }
});

test('`fila token --user bob` prints a token fila accepts; --admin unlocks admin routes', async () => {
  let r = await run(FILA_BIN, ['token', '--user', 'bob', '--set', `auth.jwt_secret=${SECRET}`], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const tok = r.stdout.trim();
  assert.match(tok, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
  const header = JSON.parse(Buffer.from(tok.split('.')[0], 'base64url').toString());
  assert.equal(header.alg, 'HS256');
  const me = await env.api('GET', '/v1/me', { token: tok });
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json.user_id, 'bob');
  assertError(await env.api('GET', '/v1/admin/queue', { token: tok }), 403, 'forbidden');

  r = await run(FILA_BIN, ['token', '--user', 'boss', '--admin', '--ttl', '600', '--set', `auth.jwt_secret=${SECRET}`], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const adm = r.stdout.trim();
  const payload = JSON.parse(Buffer.from(adm.split('.')[1], 'base64url').toString());
  assert.equal(payload.sub, 'boss');
  assert.equal(payload.role, 'admin');
  assert.ok(Math.abs(payload.exp - (Date.now() / 1000 + 600)) < 30, `exp ${payload.exp}`);
  assert.equal((await env.api('GET', '/v1/admin/queue', { token: adm })).status, 200);

  // Signed with another secret (the default one): refused.
  r = await run(FILA_BIN, ['token', '--user', 'bob'], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  assertError(await env.api('GET', '/v1/me', { token: r.stdout.trim() }), 401, 'unauthorized');
});

test('a config file with its own [tool.…] replaces the built-in tools', async () => {
  const file = path.join(dir, 'tools.conf');
  fs.writeFileSync(file, [
    '[tool.echo]',
    'title = Echo',
    'cost = 3',
    'input.image = image required',
    'input.mode = choice choices=fast|slow',
    'app = 1234567890 image=1:image mode=2:value',
    '',
  ].join('\n'));
  const emu = await startEmu({ durationMs: 300 });
  let fila;
  try {
    fila = await startFila({ emuUrl: emu.url, args: ['--config', file] });
    const u = newUser('echo');
    const r = await fetch(fila.url + '/v1/tools', { headers: { authorization: `Bearer ${u.tok}` } });
    const body = await r.json();
    assert.equal(r.status, 200);
    assert.deepEqual(body.tools.map((t) => t.name), ['echo']);
    const [t] = body.tools;
    assert.equal(t.title, 'Echo');
    assert.equal(t.cost, 3);
    const mode = t.inputs.find((i) => i.name === 'mode');
    assert.equal(mode.type, 'choice');
    assert.deepEqual(mode.choices, ['fast', 'slow']);
    // The built-in tools are gone.
    const sub = await fetch(fila.url + '/v1/jobs', { method: 'POST', headers: { authorization: `Bearer ${u.tok}`, 'content-type': 'application/json' }, body: JSON.stringify({ tool: 'upscaler', inputs: {} }) });
    const sj = await sub.json();
    assert.equal(sub.status, 422);
    assert.equal(sj.error.code, 'validation_failed');
    assert.ok('tool' in sj.error.details.fields);
    // A choice outside its list is refused.
    const bad = await fetch(fila.url + '/v1/jobs', { method: 'POST', headers: { authorization: `Bearer ${u.tok}`, 'content-type': 'application/json' }, body: JSON.stringify({ tool: 'echo', inputs: { image: 'upl_x', mode: 'medium' } }) });
    const bj = await bad.json();
    assert.equal(bad.status, 422);
    assert.ok('mode' in bj.error.details.fields, JSON.stringify(bj));
  } finally {
    await fila?.stop();
    await emu.stop();
    if (fila) fs.rmSync(fila.dir, { recursive: true, force: true });
  }
});

test('credits.initial: a new user starts with it; below the cost is 402', async () => {
  // No job gets as far as the provider here: point it at a closed port.
  const port = await freePort();
  const fila = await startFila({ emuUrl: `http://127.0.0.1:${port}`, sets: ['credits.initial=5'] });
  try {
    const u = newUser('five');
    const call = async (method, p, body, raw, ctype) => {
      const res = await fetch(fila.url + p, { method, headers: { authorization: `Bearer ${u.tok}`, ...(ctype ? { 'content-type': ctype } : {}) }, body: raw ?? (body && JSON.stringify(body)) });
      return { status: res.status, json: await res.json() };
    };
    const me = await call('GET', '/v1/me');
    assert.deepEqual(me.json, { user_id: u.id, credits: 5, active_job: null });
    const up = await call('POST', '/v1/uploads', null, pngBytes(), 'image/png');
    assert.equal(up.status, 201);
    const r = await call('POST', '/v1/jobs', { tool: 'upscaler', inputs: { image: up.json.id } }, undefined, 'application/json');
    assert.equal(r.status, 402);
    assert.equal(r.json.error.code, 'insufficient_credits');
    assert.deepEqual(r.json.error.details, { balance: 5, cost: 10 });
    const l = await call('GET', '/v1/me/ledger');
    assert.deepEqual(l.json.entries.map((e) => [e.kind, e.amount, e.balance_after]), [['grant', 5, 5]]);
  } finally {
    const exit = await fila.stop();
    assert.equal(exit.code, 0, 'SIGTERM exits 0');
    fs.rmSync(fila.dir, { recursive: true, force: true });
  }
});
