// `make run` (scripts/run, docs/operating.md): the demo starts the
// emulator, then fila, and prints the URLs only once both listen; a port
// held by something else stops it with that program's own error and a
// hint, and nothing is left running.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { FILA_BIN, RHEMU_BIN, freePort, waitFor } from './harness.mjs';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const build = path.dirname(FILA_BIN);
const skip = path.dirname(RHEMU_BIN) !== build && 'scripts/run wants fila and rhemu in one build directory';

// Runs scripts/run in a fresh directory with the ports given; resolves
// {proc, out, err, exited} at once (exited: a promise of the exit code).
function run(env) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fila-run-'));
  const proc = spawn(path.join(repo, 'scripts', 'run'), [build], {
    cwd: dir, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  const r = { proc, dir, out: '', err: '' };
  proc.stdout.on('data', (d) => { r.out += d; });
  proc.stderr.on('data', (d) => { r.err += d; });
  r.exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve(code ?? sig)));
  r.done = () => fs.rmSync(dir, { recursive: true, force: true });
  return r;
}

// A port something else listens on.
async function hold() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  return s;
}

const listening = (port) => new Promise((resolve) => {
  const s = net.connect(port, '127.0.0.1');
  s.on('connect', () => { s.destroy(); resolve(true); });
  s.on('error', () => resolve(false));
});

test('the emulator\'s port taken: its own error and a hint, exit 1, no URLs', { skip }, async () => {
  const taken = await hold();
  const r = run({ RHEMU_PORT: String(taken.address().port), FILA_PORT: String(await freePort()) });
  try {
    assert.equal(await r.exited, 1);
    assert.match(r.err, /make run: the RunningHub emulator did not start/);
    assert.match(r.err, /in use/i);
    assert.match(r.err, /make run FILA_PORT=9080 RHEMU_PORT=9090/);
    assert.doesNotMatch(r.out, /the demo page/);
  } finally {
    taken.close();
    r.done();
  }
});

test('fila\'s port taken: fila\'s own error, the emulator stopped, no URLs', { skip }, async () => {
  const taken = await hold();
  const emuPort = await freePort();
  const r = run({ RHEMU_PORT: String(emuPort), FILA_PORT: String(taken.address().port) });
  try {
    assert.equal(await r.exited, 1);
    assert.match(r.err, /make run: fila did not start/);
    assert.match(r.err, /in use/i);
    assert.doesNotMatch(r.out, /the demo page/);
    assert.equal(await listening(emuPort), false, 'the emulator was left running');
  } finally {
    taken.close();
    r.done();
  }
});

test('both ports free: the URLs once both listen; Ctrl-C stops both', { skip }, async () => {
  const fport = await freePort();
  const eport = await freePort();
  const r = run({ RHEMU_PORT: String(eport), FILA_PORT: String(fport) });
  try {
    await waitFor(async () => /the admin page/.test(r.out), 15000, () => `the URLs; stderr: ${r.err}`);
    assert.match(r.out, new RegExp(`RunningHub emulator  http://127\\.0\\.0\\.1:${eport}`));
    assert.match(r.out, new RegExp(`the demo page        http://127\\.0\\.0\\.1:${fport}/\\?token=`));
    assert.equal(await listening(fport), true);
    assert.equal(await listening(eport), true);
    const res = await fetch(`http://127.0.0.1:${fport}/healthz`);
    assert.equal(res.status, 200);
    r.proc.kill('SIGINT');
    assert.equal(await r.exited, 130);
    assert.equal(await listening(fport), false, 'fila was left running');
    assert.equal(await listening(eport), false, 'the emulator was left running');
  } finally {
    r.proc.kill('SIGKILL');
    r.done();
  }
});
