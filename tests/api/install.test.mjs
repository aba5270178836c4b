// `make install` (scripts/install, contrib/fila.service) into a staging
// DESTDIR: the tree it makes, the unit's paths and hardening, a
// configuration fila serves with and an operator's edits kept. The binary
// installed is FILA_BIN's (make is told not to rebuild it).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FILA_BIN, freePort, run, stopProc, waitFor } from './harness.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '..', '..');
const B = path.dirname(FILA_BIN);

let tmp;
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fila-install-'));
});
after(() => {
  if (tmp && !process.env.FILA_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
});

// make install into a fresh (or the given) DESTDIR: {code, stdout, stderr, dest}.
function install(vars = {}, dest = fs.mkdtempSync(path.join(tmp, 'dest-'))) {
  const env = { ...process.env };
  // Not the jobserver of a make this test may run under.
  for (const k of ['MAKEFLAGS', 'MFLAGS', 'MAKELEVEL', 'MAKEOVERRIDES']) delete env[k];
  const args = ['-s', 'install', `B=${B}`, '-o', path.join(B, 'fila'), `DESTDIR=${dest}`,
    ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)];
  const r = spawnSync('make', args, { cwd: repo, env, encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, `make ${args.join(' ')}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return { stdout: r.stdout, stderr: r.stderr, dest };
}

// Every file under dir, relative, with its permission bits.
function tree(dir) {
  const out = {};
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = (fs.statSync(p).mode & 0o777).toString(8);
    }
  };
  walk(dir);
  return out;
}

// A unit file's settings, KEY → [values] (comments dropped).
function settings(text) {
  const s = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) (s[m[1]] ??= []).push(m[2]);
  }
  return s;
}

test('PREFIX=/usr: the binary, /etc/fila/fila.conf (0600), the unit, no emulator', () => {
  const { dest, stdout } = install({ PREFIX: '/usr' });
  assert.deepEqual(tree(dest), {
    'usr/bin/fila': '755',
    'etc/fila/fila.conf': '600',
    'usr/lib/systemd/system/fila.service': '644',
    'usr/share/doc/fila/builtin.conf': '644',
  });
  assert.ok(fs.readFileSync(path.join(dest, 'usr/bin/fila')).equals(fs.readFileSync(FILA_BIN)), 'the binary is FILA_BIN');
  assert.equal(fs.readFileSync(path.join(dest, 'usr/share/doc/fila/builtin.conf'), 'utf8'),
    fs.readFileSync(path.join(repo, 'fila.conf'), 'utf8'));
  assert.match(stdout, /wrote .*etc\/fila\/fila\.conf/);

  const unit = fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/fila.service'), 'utf8');
  const s = settings(unit);
  assert.deepEqual(s.ExecStart, ['/usr/bin/fila serve --config ${CREDENTIALS_DIRECTORY}/fila.conf']);
  assert.deepEqual(s.LoadCredential, ['fila.conf:/etc/fila/fila.conf']);
  for (const [k, v] of Object.entries({
    DynamicUser: 'yes', StateDirectory: 'fila', WorkingDirectory: '/var/lib/fila', ProtectSystem: 'strict',
    ProtectHome: 'yes', NoNewPrivileges: 'yes', PrivateTmp: 'yes', ProtectKernelTunables: 'yes',
    ProtectControlGroups: 'yes', RestrictAddressFamilies: 'AF_INET AF_INET6 AF_UNIX', LimitNOFILE: '65536',
    Restart: 'on-failure', CapabilityBoundingSet: '',
  })) assert.deepEqual(s[k], [v], `${k}=${v}`);
  assert.deepEqual(s.WantedBy, ['multi-user.target']);
  assert.doesNotMatch(unit.split('\n').filter((l) => !l.startsWith('#')).join('\n'), /\/usr\/local/);
});

test('PREFIX defaults to /usr/local, its configuration in /usr/local/etc; SYSCONFDIR moves it', () => {
  const { dest } = install();
  assert.deepEqual(Object.keys(tree(dest)).sort(), [
    'usr/local/bin/fila',
    'usr/local/etc/fila/fila.conf',
    'usr/local/lib/systemd/system/fila.service',
    'usr/local/share/doc/fila/builtin.conf',
  ]);
  let s = settings(fs.readFileSync(path.join(dest, 'usr/local/lib/systemd/system/fila.service'), 'utf8'));
  assert.deepEqual(s.ExecStart, ['/usr/local/bin/fila serve --config ${CREDENTIALS_DIRECTORY}/fila.conf']);
  assert.deepEqual(s.LoadCredential, ['fila.conf:/usr/local/etc/fila/fila.conf']);
  // The unit in the repository is PREFIX=/usr/local's, as installed.
  assert.equal(fs.readFileSync(path.join(dest, 'usr/local/lib/systemd/system/fila.service'), 'utf8'),
    fs.readFileSync(path.join(repo, 'contrib/fila.service'), 'utf8'));

  const moved = install({ SYSCONFDIR: '/etc' }).dest;
  assert.ok(fs.existsSync(path.join(moved, 'etc/fila/fila.conf')));
  s = settings(fs.readFileSync(path.join(moved, 'usr/local/lib/systemd/system/fila.service'), 'utf8'));
  assert.deepEqual(s.LoadCredential, ['fila.conf:/etc/fila/fila.conf']);
});

test('the configuration: state under /var/lib/fila, a random secret of its own, an operator\'s file kept', () => {
  const a = install({ PREFIX: '/usr' }).dest;
  const b = install({ PREFIX: '/usr' }).dest;
  const conf = (d) => fs.readFileSync(path.join(d, 'etc/fila/fila.conf'), 'utf8');
  const secret = (text) => /^jwt_secret = ([0-9a-f]{64})$/m.exec(text)?.[1];
  const text = conf(a);
  assert.ok(secret(text), text);
  assert.notEqual(secret(text), secret(conf(b)), 'each install has its own secret');
  assert.match(text, /^url = sqlite:\/var\/lib\/fila\/fila\.db$/m);
  assert.match(text, /^dir = \/var\/lib\/fila\/uploads$/m);
  assert.match(text, /^listen = 127\.0\.0\.1:8080$/m);
  assert.doesNotMatch(text, /dev-secret-change-me|127\.0\.0\.1:8090/);

  // Installed again over it: the operator's edit stays.
  const edited = text.replace(/^api_key =$/m, 'api_key = mine');
  fs.writeFileSync(path.join(a, 'etc/fila/fila.conf'), edited);
  const again = install({ PREFIX: '/usr' }, a);
  assert.match(again.stdout, /kept .*etc\/fila\/fila\.conf/);
  assert.equal(conf(a), edited);
});

test('fila serves with the installed configuration, and takes the tokens it signs', async () => {
  const { dest } = install({ PREFIX: '/usr' });
  const bin = path.join(dest, 'usr/bin/fila');
  const conf = path.join(dest, 'etc/fila/fila.conf');
  const state = fs.mkdtempSync(path.join(tmp, 'state-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // What /var/lib/fila would be, and a provider nowhere (nothing leaves the host).
  const proc = spawn(bin, ['serve', '--config', conf,
    '--set', `server.listen=127.0.0.1:${port}`, '--set', `server.public_url=${url}`,
    '--set', `store.url=sqlite:${state}/fila.db`, '--set', `uploads.dir=${state}/uploads`,
    '--set', `outputs.dir=${state}/outputs`, '--set', `runninghub.base_url=http://127.0.0.1:${await freePort()}`],
  { cwd: state, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  proc.stdout.resume();
  try {
    await waitFor(async () => {
      assert.equal(proc.exitCode, null, `fila exited ${proc.exitCode}: ${err}`);
      return (await fetch(`${url}/healthz`)).status === 200;
    }, 10000, () => `fila to answer /healthz: ${err}`);
    const tok = await run(bin, ['token', '--user', 'ops', '--config', conf]);
    assert.equal(tok.code, 0, tok.stderr);
    const me = await fetch(`${url}/v1/me`, { headers: { authorization: `Bearer ${tok.stdout.trim()}` } });
    const body = await me.text();
    assert.equal(me.status, 200, body);
    assert.equal(JSON.parse(body).user_id, 'ops');
  } finally {
    const end = await stopProc(proc);
    assert.equal(end.code, 0, `fila on SIGTERM: ${JSON.stringify(end)} ${err}`);
  }
});

// The unit as systemd reads it: systemd-analyze, where there is one.
const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const noAnalyze = analyze.status === 0 ? false : 'systemd-analyze is not installed';

test('systemd-analyze verifies the unit and rates its exposure OK', { skip: noAnalyze }, () => {
  const { dest } = install({ PREFIX: '/usr' });
  // The unit as installed, its ExecStart pointed at the staged binary
  // (verify checks that it is there and executable).
  const dir = fs.mkdtempSync(path.join(tmp, 'unit-'));
  const unit = path.join(dir, 'fila.service');
  fs.writeFileSync(unit, fs.readFileSync(path.join(dest, 'usr/lib/systemd/system/fila.service'), 'utf8')
    .replaceAll('/usr/bin/fila', path.join(dest, 'usr/bin/fila')));
  const v = spawnSync('systemd-analyze', ['verify', unit], { cwd: dir, encoding: 'utf8' });
  assert.equal(v.status, 0, `systemd-analyze verify: ${v.stdout}${v.stderr}`);
  assert.equal(v.stderr.trim(), '', v.stderr);

  const sec = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', unit], { cwd: dir, encoding: 'utf8' });
  if (/unrecognized option|unknown option/i.test(sec.stderr)) return; // before systemd 250
  const m = /Overall exposure level for fila\.service: ([\d.]+)/.exec(sec.stdout);
  assert.ok(m, `systemd-analyze security: ${sec.stdout}${sec.stderr}`);
  assert.ok(Number(m[1]) <= 2.0, `exposure ${m[1]} (at most 2.0):\n${sec.stdout}`);
});
