// docs/api.md §1 and §11, the operator's side: `fila help`, what `fila
// serve` says at start, a weak secret refused on an open address, `fila
// token` expiring by default.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FILA_BIN, SECRET, run, startFila, startEmu } from './harness.mjs';

let dir;
before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fila-cli-')); });
after(() => { if (dir) fs.rmSync(dir, { recursive: true, force: true }); });

const b64json = (s) => JSON.parse(Buffer.from(s, 'base64url').toString());

test('fila --help, fila help and fila help CMD: stdout, exit 0; a typo is an unknown command', async () => {
  for (const args of [['--help'], ['help'], ['-h'], []]) {
    const r = await run(FILA_BIN, args, { cwd: dir });
    assert.equal(r.code, 0, `${args}: ${r.stderr}`);
    for (const cmd of ['serve', 'token', 'check', 'help']) assert.match(r.stdout, new RegExp(`fila ${cmd}`), `${args} lists ${cmd}`);
  }
  for (const cmd of ['serve', 'token', 'check']) {
    for (const args of [['help', cmd], [cmd, '--help']]) {
      const r = await run(FILA_BIN, args, { cwd: dir });
      assert.equal(r.code, 0, `${args}: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^usage: fila ${cmd}`), r.stdout);
      assert.ok(r.stdout.split('\n').length > 3, `${args}: says what it does`);
    }
  }
  let r = await run(FILA_BIN, ['serv'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "serv"/);
  assert.equal(r.stdout, '');
  r = await run(FILA_BIN, ['help', 'nope'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown command "nope"/);
  r = await run(FILA_BIN, ['token', '--bogus', 'x'], { cwd: dir });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /^usage: fila token/);
  r = await run(FILA_BIN, ['--version'], { cwd: dir });
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^fila \d+\.\d+\.\d+/);
});

test('fila serve says its version, config, store (no password), accounts and address', async () => {
  const emu = await startEmu();
  try {
    const f = await startFila({ emuUrl: emu.url, sets: ['runninghub.main.slots=2', `runninghub.main.base_url=${emu.url}`, 'runninghub.main.api_key=k1'] });
    const err = f.stderr();
    await f.stop();
    assert.match(err, /fila: version \d+\.\d+\.\d+/);
    assert.match(err, /fila: config (built-in defaults|\S+)/);
    assert.match(err, /fila: store (sqlite:\S+|postgres\S*:\/\/\S+)/);
    assert.doesNotMatch(err, /fila: store [^\n]*:[^:@\n/]+@/, 'no password');
    assert.match(err, /fila: accounts main \(2 slots, http:\/\/127\.0\.0\.1:\d+\)/);
    assert.match(f.stdout(), /fila listening on http:\/\/127\.0\.0\.1:\d+/);
  } finally {
    await emu.stop();
  }
});

test('a postgres store URL is logged without its password', async () => {
  // The store cannot be reached: fila says what it tried, password masked.
  const r = await run(FILA_BIN, ['serve', '--set', 'store.url=postgresql://fila:s3cret@127.0.0.1:1/db?password=other',
    '--set', 'server.listen=127.0.0.1:0', '--set', `uploads.dir=${dir}/up`], { cwd: dir, timeout: 20000 });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /fila: store postgresql:\/\/fila:\*\*\*@127\.0\.0\.1:1\/db\?password=\*\*\*/);
  assert.doesNotMatch(r.stderr, /s3cret|=other/);
});

test('a weak or built-in jwt_secret on an open address: exit 2 naming the key (§11)', async () => {
  const base = ['serve', '--set', `store.url=sqlite:${dir}/w.db`, '--set', `uploads.dir=${dir}/up`];
  for (const [secret, why] of [[null, /built-in secret/], ['short', /shorter than 32 bytes/]]) {
    const sets = secret === null ? [] : ['--set', `auth.jwt_secret=${secret}`];
    for (const listen of ['0.0.0.0:0', '[::]:0']) {
      const r = await run(FILA_BIN, [...base, '--set', `server.listen=${listen}`, ...sets], { cwd: dir, timeout: 5000 });
      assert.equal(r.code, 2, `${listen} ${secret}: ${r.stderr}`);
      assert.match(r.stderr, /\[auth\] jwt_secret/);
      assert.match(r.stderr, why);
    }
  }
  // On loopback the built-in secret is fine (make run, the tests).
  const emu = await startEmu();
  try {
    const f = await startFila({ emuUrl: emu.url, sets: ['auth.jwt_secret=dev-secret-change-me'] });
    await f.stop();
  } finally {
    await emu.stop();
  }
});

test('fila token expires in a day by default; --ttl 0 warns', async () => {
  let r = await run(FILA_BIN, ['token', '--user', 'bob', '--set', `auth.jwt_secret=${SECRET}`], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  const claims = b64json(r.stdout.trim().split('.')[1]);
  const left = claims.exp - Date.now() / 1000;
  assert.ok(left > 86000 && left <= 86401, `exp in ${left} s`);
  r = await run(FILA_BIN, ['token', '--user', 'bob', '--ttl', '0', '--set', `auth.jwt_secret=${SECRET}`], { cwd: dir });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(b64json(r.stdout.trim().split('.')[1]).exp, undefined);
  assert.match(r.stderr, /never expires/);
});
