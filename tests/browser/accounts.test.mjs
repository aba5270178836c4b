// Capacity and cost in the browser (docs/api.md §9): the admin page's
// provider accounts (slots, up or down and why, coins) and margin per tool,
// with two emulator accounts; the demo page's words for a 503 queue_full.
// Writes admin-accounts.png (the whole admin page) into build/screenshots,
// or into docs/ with FILA_DOCS_SHOTS=1, as pages.test.mjs does.
//
//   scripts/browser-deps          # chromium + playwright-core, once
//   node --test tests/browser/accounts.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Env, token, adminToken, waitFor, pngBytes, freePort } from '../api/harness.mjs';

const here = path.dirname(new URL(import.meta.url).pathname);
const repo = path.resolve(here, '..', '..');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.FILA_DOCS_SHOTS ? path.join(repo, 'docs') : path.join(repo, 'build', 'screenshots');
fs.mkdirSync(SHOTS, { recursive: true });
const VIEW = { width: 1280, height: 800 };
const user = (id) => ({ id, tok: token(id) });
const byName = (list) => Object.fromEntries(list.map((a) => [a.name, a]));

let browser;
const envs = [];
const problems = []; // uncaught errors, CSP violations, console errors
// Answers these pages get on purpose, which Chromium logs as errors.
const EXPECTED_STATUS = /^Failed to load resource: the server responded with a status of (401|409|503) /;

before(async () => {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`chromium not found at ${CHROMIUM}: run scripts/browser-deps, or set CHROMIUM`);
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close().catch(() => {});
  for (const e of envs) await e.stop();
});

async function newPage(env) {
  const ctx = await browser.newContext({ viewport: VIEW, deviceScaleFactor: 1 });
  await ctx.exposeBinding('__filaViolation', (src, v) => problems.push(`CSP: ${v}`));
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__filaViolation(`${e.effectiveDirective} refused ${e.blockedURI || '(inline)'} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => problems.push(`${page.url()}: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && page.url().startsWith(env.url) && !EXPECTED_STATUS.test(m.text())) {
      problems.push(`${page.url()}: ${m.text()}`);
    }
  });
  return page;
}

test('admin page: two accounts with their slots, status and coins, one going down, and the margin per tool', async () => {
  const env = await Env.start({
    durationMs: 1200,
    emuArgs: ['--accounts', 'main:3:1000,china:3:500', '--cost-coins', '12', '--cost-money', '0.18'],
    sets: ['runninghub.main.api_key=main', 'runninghub.main.slots=2',
      'runninghub.china.api_key=china', 'runninghub.china.slots=1',
      'runninghub.status_every=1', 'runninghub.down_for=60'],
  });
  envs.push(env);

  // A day's work in little: finished jobs of three tools, one failed.
  const done = [];
  const work = [['upscaler', {}], ['upscaler', {}], ['upscaler', { prompt: 'EMU_FAIL' }], ['pose_changer', {}],
    ['video_upscaler', {}], ['upscaler', {}], ['veste_ai', {}]];
  for (const [i, [tool, inputs]] of work.entries()) {
    const u = user(`day${i}`);
    done.push([u, await env.submitTool(u.tok, tool, { inputs })]);
  }
  for (const [u, j] of done) await env.waitStatus(u.tok, j.id, ['completed', 'failed'], 30000);

  // And now three long ones: every slot of both accounts in use.
  await env.emuCall('POST', '/emu/config', { duration_ms: 60000 });
  const long = [user('mei'), user('joao'), user('ines')];
  for (const u of long) await env.submitTool(u.tok, 'upscaler');
  await waitFor(async () => (await env.stats()).running === 3, 10000, 'three running');

  const page = await newPage(env);
  await page.goto(`${env.url}/admin?token=${encodeURIComponent(adminToken('ops'))}`);
  await page.waitForSelector('#accounts-card:not([hidden]) #accounts tr[data-account=china]');
  const row = (name, testid) => page.textContent(`#accounts tr[data-account=${name}] [data-testid=${testid}]`);
  await waitFor(async () => (await row('main', 'account-used')) === '2 / 2' && (await row('china', 'account-used')) === '1 / 1',
    5000, 'the slots in use on the page');
  assert.equal(await page.textContent('#slots-total'), '3');
  assert.equal(await row('main', 'account-state'), 'up');
  assert.equal(await row('china', 'account-state'), 'up');
  // The coins as each account's status says (main paid for the finished
  // work it ran, china for its share), within a status and a poll.
  const s = await env.stats();
  assert.equal(s.accounts.main.coins + s.accounts.china.coins, 1000 + 500 - 12 * 6, 'six tasks paid for');
  const coins = async (name) => Number((await row(name, 'account-coins')).replace(/,/g, ''));
  await waitFor(async () => (await coins('main')) === s.accounts.main.coins && (await coins('china')) === s.accounts.china.coins,
    8000, () => `the coins of both accounts: ${JSON.stringify(s.accounts)}`);
  const view = byName((await env.api('GET', '/v1/admin/accounts', { token: adminToken() })).json.accounts);
  assert.equal(view.main.remain_coins, s.accounts.main.coins);

  // The margin: what each tool kept in credits against what it cost.
  const stats = (await env.api('GET', '/v1/admin/stats?hours=24', { token: adminToken() })).json;
  const cell = (tool, i) => page.textContent(`#margin tr[data-tool=${tool}] td:nth-child(${i})`);
  await page.waitForSelector('#margin tr[data-tool=upscaler]');
  assert.equal(stats.tools.upscaler.credits_net, 30);
  assert.equal(Number(await cell('upscaler', 2)), 30);
  assert.equal(Number(await cell('upscaler', 3)), 36);
  assert.equal(await cell('upscaler', 4), '0.54');
  assert.equal(await cell('video_upscaler', 4), '0.18');
  assert.equal(await page.textContent('[data-testid=money-total]'), '1.08');
  assert.equal(await page.textContent('[data-testid=credits-total]'), '66');

  await page.evaluate(() => { document.activeElement?.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: path.join(SHOTS, 'admin-accounts.png'), fullPage: true, animations: 'disabled' });

  // china's key expires: its next status answer takes it down, with why.
  await env.emuCall('POST', '/emu/config', { accounts: { china: { state: 'expired' } } });
  await page.waitForSelector('#accounts tr[data-account=china][data-up=false]', { timeout: 10000 });
  assert.equal(await row('china', 'account-state'), 'down');
  assert.match(await row('china', 'down-reason'), /^802 APIKEY_UNAUTHORIZED/);
  assert.match(await page.textContent('#accounts-count'), /1 down/);
  assert.equal(await row('main', 'account-state'), 'up');
  if (process.env.FILA_SHOT_DIR) {
    fs.mkdirSync(process.env.FILA_SHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(process.env.FILA_SHOT_DIR, 'admin-account-down.png'), fullPage: true });
  }
  assert.deepEqual(problems, []);
});

test('admin page: an account whose provider cannot be reached is shown unreachable, with the error', async () => {
  const dead = await freePort(); // nothing listens there
  const env = await Env.start({
    sets: ['runninghub.main.api_key=main', 'runninghub.main.slots=1',
      'runninghub.lost.api_key=lost', 'runninghub.lost.slots=1', `runninghub.lost.base_url=http://127.0.0.1:${dead}`,
      'runninghub.status_every=1', 'runninghub.timeout=2'],
  });
  envs.push(env);
  const page = await newPage(env);
  await page.goto(`${env.url}/admin?token=${encodeURIComponent(adminToken('ops'))}`);
  const row = (name, testid) => page.textContent(`#accounts tr[data-account=${name}] [data-testid=${testid}]`);
  await waitFor(async () => (await row('lost', 'account-state').catch(() => '')) === 'unreachable', 10000,
    'the lost account shown unreachable');
  assert.match(await row('lost', 'down-reason'), /\S/);
  assert.equal(await row('main', 'account-state'), 'up');
  assert.match(await page.textContent('#accounts-count'), /1 unreachable/);
  assert.deepEqual(problems, []);
});

test('demo page: a 503 queue_full is said in words, with the estimate, and nothing is charged', async () => {
  const env = await Env.start({ durationMs: 2000, sets: ['queue.slots=1', 'queue.max_wait=3'] });
  envs.push(env);
  // A run of history (2 s), then one running and one waiting: a third
  // would wait two rounds, about 4 s, more than 3.
  const h = user('early');
  const hj = await env.submitTool(h.tok, 'upscaler');
  await env.waitStatus(h.tok, hj.id, 'completed', 10000);
  await env.emuCall('POST', '/emu/config', { duration_ms: 4000 });
  const ahead = [user('first'), user('second')];
  for (const u of ahead) await env.submitTool(u.tok, 'upscaler');

  const U = user('late');
  const page = await newPage(env);
  await page.goto(`${env.url}/?token=${encodeURIComponent(U.tok)}`);
  await page.waitForSelector('#user:has-text("late")');
  await page.setInputFiles('input[type=file][name=image]', { name: 'p.png', mimeType: 'image/png', buffer: pngBytes() });
  await page.waitForSelector('.drop .thumb img');
  await page.click('#submit');
  await page.waitForSelector('[data-testid=queue-full]:not([hidden])');
  const text = await page.textContent('[data-testid=queue-full]');
  assert.match(text, /The queue is too long right now: a new job would wait about \d+ seconds, more than the 3 seconds this service accepts\. Nothing was charged; try again in \d+ seconds?\./);
  assert.equal(await page.textContent('#credits'), '100 credits');
  assert.equal((await env.me(U.tok)).credits, 100);
  assert.equal((await env.api('GET', '/v1/jobs', { token: U.tok })).json.jobs.length, 0);
  if (process.env.FILA_SHOT_DIR) {
    fs.mkdirSync(process.env.FILA_SHOT_DIR, { recursive: true });
    await page.screenshot({ path: path.join(process.env.FILA_SHOT_DIR, 'demo-queue-full.png') });
  }
  assert.deepEqual(problems, []);
});
