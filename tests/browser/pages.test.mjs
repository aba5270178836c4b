// The demo page (/) and the admin page (/admin) in a real browser: Debian's
// chromium driven by playwright-core, against the real daemon and the
// RunningHub emulator (tests/api/harness.mjs). Writes demo.png and
// admin.png (1280x800) on the way, into build/screenshots, or into docs/
// (the README's pictures) with FILA_DOCS_SHOTS=1.
//
//   scripts/browser-deps          # chromium + playwright-core, once
//   node --test tests/browser/
//
// CHROMIUM=/path/to/chrome overrides /usr/bin/chromium.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import zlib from 'node:zlib';
import { Env, token, adminToken, waitFor } from '../api/harness.mjs';

// Each run has its own fresh store, so plain names are unique (and read well
// in the screenshots).
const user = (id) => ({ id, tok: token(id) });

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.FILA_DOCS_SHOTS ? path.join(repo, 'docs') : path.join(repo, 'build', 'screenshots');
fs.mkdirSync(SHOTS, { recursive: true });
const VIEW = { width: 1280, height: 800 };
const RUN_MS = 2500; // how long the emulator takes per task
// Two web apps of other origins, served by the test itself on loopback: the
// first is one fila lets call it (server.cors_origins), the second is not.
const apps = [];

let env;
let browser;
const contexts = [];
const pageErrors = [];
// What the browser says went wrong on fila's own pages: console errors
// (Content-Security-Policy refusals among them) and securitypolicyviolation
// events, reported by a script the browser runs in every page before its
// own (Playwright's init scripts are not subject to the page's CSP).
const consoleErrors = [];
const violations = [];
// A page's answers fila gives on purpose, which Chromium also logs as
// console errors: a refused token (401) and "you already have a job" (409).
const EXPECTED_STATUS = /^Failed to load resource: the server responded with a status of (401|409) /;

before(async () => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`chromium not found at ${CHROMIUM}: the browser tests need it.\n` +
      'Install it with scripts/browser-deps (apt-get install -y chromium), or set CHROMIUM=/path/to/chromium.');
  }
  let chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    throw new Error(`playwright-core is not installed (${e.message}).\nRun scripts/browser-deps (npm install at the repository root).`);
  }
  for (let i = 0; i < 2; i++) apps.push(await appServer(`app${i}`));
  env = await Env.start({ durationMs: RUN_MS, concurrency: 10,
    sets: ['queue.slots=1', `server.cors_origins=${apps[0].origin}`] });
  // launch() gives the browser a fresh, temporary user-data dir of its own.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close().catch(() => {});
  await env?.stop();
  for (const a of apps) a.server.close();
});

async function newContext(opts = {}) {
  const ctx = await browser.newContext({ viewport: VIEW, deviceScaleFactor: 1, ...opts });
  contexts.push(ctx);
  await ctx.exposeBinding('__filaViolation', ({ page }, v) => {
    if (isFila(page.url())) violations.push(`${page.url()}: ${v}`);
  });
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__filaViolation(`${e.effectiveDirective} refused ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  return ctx;
}

async function newPage() {
  return openIn(await newContext());
}

// Pages of fila itself (not the test's web apps of other origins).
const isFila = (url) => env && url.startsWith(`${env.url}/`);

async function openIn(ctx) {
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' || !isFila(page.url()) || EXPECTED_STATUS.test(m.text())) return;
    const at = m.location();
    consoleErrors.push(`${page.url()}: ${m.text()} (${at.url}:${at.lineNumber})`);
  });
  return page;
}

// More screenshots (the other states of the pages) when FILA_SHOT_DIR is set.
async function extraShot(page, name) {
  const dir = process.env.FILA_SHOT_DIR;
  if (!dir) return;
  fs.mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: path.join(dir, `${name}.png`), animations: 'disabled' });
}

function noPageErrors() {
  assert.deepEqual(pageErrors, [], 'uncaught errors in the pages');
  assert.deepEqual(violations, [], 'Content-Security-Policy violations in the pages');
  assert.deepEqual(consoleErrors, [], 'errors in the pages\' consoles');
}

const status = (page) => page.getAttribute('#jobview [data-testid=status]', 'data-status').catch(() => null);

async function waitStatus(page, want, timeout = 15000) {
  try {
    await page.waitForSelector(`#jobview [data-testid=status][data-status=${want}]`, { timeout });
  } catch (e) {
    throw new Error(`the page never showed "${want}"; it shows "${await status(page)}"\n` +
      `job panel: ${await page.textContent('#jobcard').catch(() => '?')}\nfila stderr: ${env.fila.stderr().slice(-1500)}`);
  }
}

// ---- a picture to upload (the emulator hands it back as the result) --------------

const CRC = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function chunk(type, data) {
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  let c = 0xffffffff;
  for (const b of td) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  td.copy(out, 4);
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0, 8 + data.length);
  return out;
}

// A small sunset landscape, w x h, as PNG bytes; seed varies it.
function landscape(w = 640, h = 400, seed = 0) {
  const raw = Buffer.alloc((w * 3 + 1) * h);
  const mix = (a, b, t) => a + (b - a) * Math.min(1, Math.max(0, t));
  const sunX = w * (0.68 - seed * 0.1);
  const sunY = h * 0.5;
  const ridge = (x, f, a, o) => h * o + Math.sin(x * f + seed) * a * h + Math.sin(x * f * 2.7 + 1.3 + seed) * a * 0.4 * h;
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    raw[row] = 0;
    for (let x = 0; x < w; x++) {
      const t = y / (h * 0.62);
      let r = mix(38, 252, t * t);
      let g = mix(41, 146, t * t);
      let b = mix(110, 120, t);
      const d = Math.hypot(x - sunX, y - sunY);
      if (d < h * 0.11) { r = 255; g = 226; b = 150; } else {
        const glow = Math.max(0, 1 - d / (h * 0.5)) ** 2;
        r = mix(r, 255, glow * 0.6); g = mix(g, 190, glow * 0.5); b = mix(b, 140, glow * 0.3);
      }
      if (y > ridge(x / w, 7, 0.05, 0.58)) { r = 120; g = 70; b = 110; }
      if (y > ridge(x / w, 4, 0.07, 0.7)) { r = 72; g = 44; b = 88; }
      if (y > ridge(x / w, 3, 0.04, 0.84)) { r = 36; g = 26; b = 58; }
      const i = row + 1 + x * 3;
      raw[i] = r; raw[i + 1] = g; raw[i + 2] = b;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw, { level: 9 })), chunk('IEND', Buffer.alloc(0)),
  ]);
}

const pngFile = (name, seed) => ({ name, mimeType: 'image/png', buffer: landscape(640, 400, seed) });

// ---- 1: one user, one job, start to finish -----------------------------------------

test('demo page: a user uploads a picture, submits, and sees the result', async () => {
  const U = user('alice');
  const page = await newPage();
  // Without a token: how to get one.
  await page.goto(`${env.url}/`);
  await page.waitForSelector('#gate:not([hidden])');
  assert.match(await page.textContent('#gate'), /fila token --user/);
  await extraShot(page, 'demo-gate');
  await page.fill('#tokenfield', 'not-a-token');
  await page.click('#gateform button[type=submit]');
  await page.waitForSelector('#gateerr:has-text("refused")');

  await page.goto(`${env.url}/?token=${encodeURIComponent(U.tok)}`);

  // The token left the address bar and was kept.
  assert.ok(!page.url().includes('token='), page.url());
  await page.waitForSelector('#user:has-text("' + U.id + '")');
  assert.equal(await page.textContent('#credits'), '100 credits');

  // The tools come from GET /v1/tools; the upscaler is chosen first.
  const tools = await page.$$eval('#tools .tool b', (els) => els.map((e) => e.textContent));
  assert.deepEqual(tools, ['Upscaler', 'Pose Changer', 'Veste AI', 'Video Upscaler']);
  assert.equal(await page.getAttribute('.tool[data-tool=upscaler]', 'aria-pressed'), 'true');
  const variants = await page.$$eval('#variant option', (els) => els.map((e) => e.value));
  assert.equal(variants[0], 'pro');

  // Submitting without the required image is refused on the page.
  await page.click('#submit');
  await page.waitForSelector('[data-error=image]:not([hidden])');

  await page.selectOption('#variant', 'standard');
  await page.setInputFiles('input[type=file][name=image]', pngFile('sunset.png', 0));
  await page.waitForSelector('.drop .thumb img');
  await page.fill('input[name=resolution]', '2048');
  await page.fill('input[name=prompt]', 'crisp details');
  await page.click('#submit');

  await waitStatus(page, 'completed', 20000);
  // The result image is shown and really loaded.
  await page.waitForFunction(() => {
    const img = document.querySelector('[data-testid=result-image]');
    return img && img.complete && img.naturalWidth > 0;
  });
  assert.equal(await page.$eval('[data-testid=result-image]', (i) => i.naturalWidth), 640);
  await page.waitForSelector('#credits:has-text("90 credits")');

  // What the server has agrees with the page.
  const jobs = (await env.api('GET', '/v1/jobs', { token: U.tok })).json.jobs;
  assert.equal(jobs.length, 1);
  assert.equal(jobs[0].status, 'completed');
  assert.equal(jobs[0].variant, 'standard');
  assert.equal(jobs[0].inputs.resolution, 2048);
  assert.match(jobs[0].session_id, /^tab-/);
  assert.ok(page.url().endsWith(`#job=${jobs[0].id}`), page.url());

  await page.waitForSelector('#history li');
  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(SHOTS, 'demo.png'), animations: 'disabled' });
  noPageErrors();
});

// ---- 2: two users, one slot ---------------------------------------------------------

test('demo page: two users, one slot — the second waits at #1, then runs, then completes', async () => {
  const A = user('bob');
  const B = user('carol');
  // Long enough for the steps below to happen while A holds the slot.
  await env.emuCall('POST', '/emu/config', { duration_ms: 4000 });
  const pa = await newPage();
  const pb = await newPage();
  await pa.goto(`${env.url}/?token=${encodeURIComponent(A.tok)}`);
  await pb.goto(`${env.url}/?token=${encodeURIComponent(B.tok)}`);
  // A second tab of A, open before A submits.
  const pa2 = await openIn(pa.context());
  await pa2.goto(`${env.url}/`);
  await pa2.waitForSelector('#user:has-text("bob")');

  await pa.click('.tool[data-tool=veste_ai]');
  await pa.setInputFiles('input[type=file][name=person]', pngFile('me.png', 1));
  await pa.setInputFiles('input[type=file][name=clothing]', pngFile('coat.png', 2));
  await pa.click('#submit');
  await pa.waitForSelector('#jobview [data-testid=status][data-status=starting], #jobview [data-testid=status][data-status=running]');

  await pb.setInputFiles('input[type=file][name=image]', pngFile('b.png', 3));
  await pb.click('#submit');
  await waitStatus(pb, 'queued');
  assert.equal(await pb.textContent('[data-testid=position]'), '#1');
  await extraShot(pb, 'demo-queued');
  assert.ok(['starting', 'running'].includes(await status(pa)), 'A holds the slot while B waits');

  // A's other tab submits too: 409 active_job_exists, shown with a link to the job.
  await pa2.click('.tool[data-tool=upscaler]');
  await pa2.setInputFiles('input[type=file][name=image]', pngFile('again.png', 5));
  await pa2.click('#submit');
  await pa2.waitForSelector('#formnote:has-text("You already have a job running")');
  await extraShot(pa2, 'demo-409');
  await pa2.click('[data-testid=active-link]');
  await pa2.waitForSelector('#jobview [data-testid=status][data-status=running], #jobview [data-testid=status][data-status=starting]');
  assert.match(await pa2.textContent('#jobview .title'), /Veste AI/);
  assert.equal(await pa2.isDisabled('#submit'), true);
  await pa2.close();

  // A third tab, opened now: the page knows at load.
  const pa3 = await openIn(pa.context());
  await pa3.goto(`${env.url}/`);
  await pa3.waitForSelector('#formnote:has-text("You already have a job running")');
  await extraShot(pa3, 'demo-active');
  assert.ok(['starting', 'running'].includes(await status(pa3)));
  assert.equal(await pa3.isDisabled('#submit'), true);
  await pa3.close();

  // The queue moves: A completes, B starts, then completes.
  await waitStatus(pa, 'completed', 15000);
  await pb.waitForSelector('#jobview [data-testid=status][data-status=starting], #jobview [data-testid=status][data-status=running], #jobview [data-testid=status][data-status=completed]');
  await waitStatus(pb, 'completed', 15000);
  await pb.waitForSelector('[data-testid=result-image]');
  await env.emuCall('POST', '/emu/config', { duration_ms: RUN_MS });
  noPageErrors();
});

// ---- 3: 409, cancel, failure, admin -------------------------------------------------

test('demo page: the provider\'s message on failure; cancel and leaving the page refund a waiting job', async () => {
  const U = user('dave');
  await env.emuCall('POST', '/emu/config', { fail_message: 'CUDA out of memory. Tried to allocate 2.00 GiB' });
  const page = await newPage();
  await page.goto(`${env.url}/?token=${encodeURIComponent(U.tok)}`);
  await page.setInputFiles('input[type=file][name=image]', pngFile('x.png', 4));
  await page.fill('input[name=prompt]', 'EMU_FAIL');
  await page.click('#submit');
  await waitStatus(page, 'failed', 15000);
  assert.match(await page.textContent('[data-testid=error]'), /CUDA out of memory\. Tried to allocate 2\.00 GiB/);
  await page.waitForSelector('#jobview:has-text("10 credits refunded")');
  await page.waitForSelector('#credits:has-text("100 credits")');
  await extraShot(page, 'demo-failed');

  // A long job of another user keeps the next ones queued.
  const O = user('erin');
  await env.emuCall('POST', '/emu/config', { duration_ms: 30000 });
  const blocker = await env.submitTool(O.tok, 'upscaler');
  await env.emuCall('POST', '/emu/config', { duration_ms: RUN_MS });
  try {
    // Leave the line by hand: cancelled, refunded.
    await page.fill('input[name=prompt]', '');
    await page.click('#submit');
    await waitStatus(page, 'queued');
    await page.click('[data-testid=cancel]');
    await waitStatus(page, 'cancelled');
    await page.waitForSelector('#jobview:has-text("You cancelled this job")');
    await page.waitForSelector('#credits:has-text("100 credits")');

    // Leave the page: the waiting job is cancelled (sendBeacon on pagehide).
    await page.click('#submit');
    await waitStatus(page, 'queued');
    const id = new URL(page.url()).hash.replace('#job=', '');
    assert.match(id, /^job_/);
    await page.goto('about:blank');
    const left = await env.waitStatus(U.tok, id, 'cancelled', 5000);
    assert.equal(left.error.code, 'session_left');
    assert.equal(left.credits_refunded, true);
    assert.equal((await env.job(O.tok, blocker.id)).status, 'running', 'another user\'s job goes on');
  } finally {
    await env.clearQueue();
  }
  noPageErrors();
});

test('admin page: slots, queue with positions, running ages, 24 h counts, failures, grant, cancel', async () => {
  // Something to look at: the jobs of the tests above (completed, failed,
  // cancelled), one running for a while and two waiting.
  await env.emuCall('POST', '/emu/config', { duration_ms: 30000 });
  const users = [user('maria'), user('kenji'), user('ana')];
  const running = await env.submitTool(users[0].tok, 'video_upscaler');
  const q1 = await env.submitTool(users[1].tok, 'pose_changer');
  const q2 = await env.submitTool(users[2].tok, 'upscaler', { variant: 'logo' });
  await env.waitStatus(users[0].tok, running.id, 'running', 10000);

  const page = await newPage();
  await page.goto(`${env.url}/admin?token=${encodeURIComponent(adminToken('ops'))}`);
  await page.waitForSelector('#slots-total:has-text("1")');
  assert.equal(await page.textContent('#slots-used'), '1');
  await page.waitForSelector(`#running tr[data-job="${running.id}"]`);
  const queue = await page.$$eval('#queue tr[data-job]', (trs) => trs.map((tr) => [tr.dataset.job, tr.querySelector('[data-testid=position]').textContent]));
  assert.deepEqual(queue, [[q1.id, '1'], [q2.id, '2']]);
  assert.equal(await page.textContent('#k-queued'), '2');

  // Ages tick.
  const age = () => page.textContent(`#running tr[data-job="${running.id}"] [data-since]`);
  const a1 = await age();
  await waitFor(async () => (await age()) !== a1, 3000, 'the running age to tick');

  // Counts of the last 24 h per tool, from the tests above.
  const cell = (tool, i) => page.textContent(`#stats tr[data-tool=${tool}] td:nth-child(${i})`);
  await page.waitForSelector('#stats tr[data-tool=upscaler]');
  assert.ok(Number(await cell('upscaler', 2)) >= 2, 'upscaler completed');
  assert.ok(Number(await cell('upscaler', 3)) >= 1, 'upscaler failed');
  assert.ok(Number(await cell('upscaler', 4)) >= 1, 'upscaler cancelled');
  assert.ok(Number(await page.textContent('#k-completed')) >= 3);

  // Failures with the provider's message.
  const stats = (await env.api('GET', '/v1/admin/stats?hours=24', { token: adminToken() })).json;
  assert.ok(stats.recent_failures.some((j) => j.status === 'failed' && j.error.message), JSON.stringify(stats.recent_failures));
  await page.waitForSelector('#failures .msg:has-text("CUDA out of memory")');

  // Grant credits.
  await page.fill('#grant input[name=user]', users[2].id);
  await page.fill('#grant input[name=amount]', '50');
  await page.fill('#grant input[name=reason]', 'browser test');
  await page.click('#grant button[type=submit]');
  await page.waitForSelector('#grantnote:has-text("Balance now 140")'); // 100 - 10 + 50
  assert.equal((await env.me(users[2].tok)).credits, 140);

  await page.fill('#grant input[name=user]', '');
  await page.fill('#grant input[name=reason]', '');
  await page.evaluate(() => { document.querySelector('#grantnote').hidden = true; document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(SHOTS, 'admin.png'), animations: 'disabled' });

  // Cancel from the page: the queued one, then the running one.
  await page.click(`#queue tr[data-job="${q2.id}"] [data-testid=admin-cancel]`);
  await page.waitForSelector(`#queue tr[data-job="${q2.id}"]`, { state: 'detached' });
  const c2 = await env.job(users[2].tok, q2.id);
  assert.equal(c2.status, 'cancelled');
  assert.equal(c2.error.code, 'admin');
  await page.click(`#running tr[data-job="${running.id}"] [data-testid=admin-cancel]`);
  await env.waitStatus(users[0].tok, running.id, 'cancelled', 10000);
  await env.emuCall('POST', '/emu/config', { duration_ms: RUN_MS });
  await env.clearQueue();
  noPageErrors();
});

// ---- 5: the security headers, and the browser holding the pages to them ---------------

const FILES = ['/', '/admin', '/web/style.css', '/web/common.js', '/web/demo.js', '/web/admin.js', '/fila.js'];

test('the pages and their files carry the security headers (docs/api.md §11)', async () => {
  for (const method of ['GET', 'HEAD']) {
    for (const p of FILES) {
      const res = await fetch(env.url + p, { method });
      assert.equal(res.status, 200, `${method} ${p}`);
      const csp = res.headers.get('content-security-policy') || '';
      const dirs = Object.fromEntries(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
      assert.deepEqual(dirs['script-src'], ["'self'"], `${method} ${p}: ${csp}`);
      assert.deepEqual(dirs['style-src'], ["'self'"], `${method} ${p}: ${csp}`);
      assert.deepEqual(dirs['frame-ancestors'], ["'none'"], `${method} ${p}: ${csp}`);
      assert.doesNotMatch(csp, /unsafe|\*/, `${method} ${p}`);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', `${method} ${p}`);
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer', `${method} ${p}`);
      assert.equal(res.headers.get('x-frame-options'), 'DENY', `${method} ${p}`);
      await res.arrayBuffer();
    }
  }
});

test('the browser enforces the policy: injected inline script and style= are refused, and reported', async () => {
  const page = await newPage();
  await page.goto(`${env.url}/admin`);
  await page.waitForSelector('#gate:not([hidden])');
  const before = { v: violations.length, c: consoleErrors.length };
  const result = await page.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true;';
    document.body.append(s);
    document.body.setAttribute('style', 'background: rgb(255, 0, 0)');
    return { ran: window.__inlineRan === true, bg: getComputedStyle(document.body).backgroundColor };
  });
  assert.equal(result.ran, false, 'an inline script ran');
  assert.notEqual(result.bg, 'rgb(255, 0, 0)', 'a style= attribute applied');
  await waitFor(async () => violations.length >= before.v + 2, 5000, 'the two violations to be reported');
  const seen = violations.splice(before.v).join('\n');
  assert.match(seen, /script-src-elem refused inline/, seen);
  assert.match(seen, /style-src-attr refused inline/, seen);
  // Chromium logs each refusal to the console too: those were on purpose.
  await waitFor(async () => consoleErrors.length >= before.c + 2, 5000, 'the console to report them');
  const logged = consoleErrors.splice(before.c).join('\n');
  assert.match(logged, /inline script.* violates .*'script-src/, logged);
  assert.match(logged, /inline style.* violates .*'style-src/, logged);
  noPageErrors();
});

// The page a web app of another origin would have: fila.js loaded from fila
// (a module: fetched with CORS too), a job created and watched to its end.
function appPage(filaUrl, tok) {
  return `<!doctype html><meta charset="utf-8"><title>app</title><pre id="out"></pre>
<script type="module">
const out = document.getElementById('out');
const say = (s) => { out.textContent += s + '\\n'; };
try {
  const { Fila } = await import(${JSON.stringify(filaUrl + '/fila.js')});
  const fila = new Fila({ baseUrl: ${JSON.stringify(filaUrl)}, token: ${JSON.stringify(tok)} });
  const png = Uint8Array.from(atob('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='), (c) => c.charCodeAt(0));
  const job = await fila.createJob({ tool: 'upscaler', variant: 'pro',
    inputs: { image: new Blob([png], { type: 'image/png' }) } });
  say('created ' + job.status);
  fila.subscribe(job, (j) => { say('event ' + j.status); if (j.status === 'completed') say('done ' + j.outputs.length); });
} catch (e) {
  say('error ' + (e.code || e.name) + ': ' + e.message);
}
</script>`;
}

// A web app's server: its one page, for user id.
function appServer(id) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(appPage(env.url, token(id)));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () =>
    resolve({ server, origin: `http://127.0.0.1:${server.address().port}` })));
}

test('a web app on another origin uses fila.js when fila lets it (CORS), and not otherwise', async () => {
  const ctx = await newContext();
  const page = await openIn(ctx);
  await page.goto(`${apps[0].origin}/shop`);
  await page.waitForFunction(() => /done|error/.test(document.getElementById('out').textContent),
    null, { timeout: 20000 });
  const text = await page.textContent('#out');
  assert.match(text, /^created (queued|starting)$/m, text);
  assert.match(text, /^event running$/m, text);
  assert.match(text, /^done 1$/m, text);

  // Another origin: the browser does not hand fila's answers to the page.
  const other = await openIn(ctx);
  await other.goto(`${apps[1].origin}/shop`);
  await other.waitForFunction(() => /error/.test(document.getElementById('out').textContent),
    null, { timeout: 10000 });
  const refused = await other.textContent('#out');
  assert.doesNotMatch(refused, /created/, refused);
});
