// admin.js — the operator's view: slots, the provider accounts, queue,
// running jobs, 24 h stats and margin, failures, credit grants, cancel.
// Polls every 2 s (the event streams are per user).
import { Fila, FilaError } from '/fila.js';
import { h, $, takeToken, tokenSubject, clock, dur, ago, since, pretty, pill, toast } from '/web/common.js';

const TOKEN_KEY = 'fila.adminToken';
const EVERY_MS = 2000;
const QUEUE_SHOWN = 200; // a longer queue is counted, not drawn

const fila = new Fila();
let timer = null;
let toolTitles = {};

start(takeToken(TOKEN_KEY));

async function start(token) {
  if (!token) return showGate();
  fila.setToken(token);
  try {
    await fila.adminQueue();
  } catch (e) {
    if (e.code === 'forbidden') return showGate('That token is not an admin token (403): make one with --admin.');
    if (e.code === 'unauthorized') return showGate('That token was refused (401). It may be expired, or made with another secret.');
    return showGate(`fila did not answer: ${e.message}`);
  }
  try { toolTitles = Object.fromEntries((await fila.tools()).map((t) => [t.name, t.title])); } catch { /* names then */ }
  $('#gate').hidden = true;
  $('#app').hidden = false;
  $('#who').hidden = false;
  $('#user').textContent = tokenSubject(token).sub || 'admin';
  refresh();
}

function showGate(error) {
  clearTimeout(timer);
  $('#app').hidden = true;
  $('#who').hidden = true;
  $('#gate').hidden = false;
  $('#gateerr').hidden = !error;
  $('#gateerr').textContent = error || '';
  $('#tokenfield').focus();
}

$('#gateform').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('#tokenfield').value.trim();
  if (!t) return;
  localStorage.setItem(TOKEN_KEY, t);
  start(t);
});

$('#signout').addEventListener('click', () => {
  localStorage.removeItem(TOKEN_KEY);
  location.href = '/admin';
});

const title = (tool) => toolTitles[tool] || pretty(tool);

// ---- polling ------------------------------------------------------------------

async function refresh() {
  clearTimeout(timer);
  try {
    const [queue, stats, accounts] = await Promise.all([
      fila.adminQueue({ limit: QUEUE_SHOWN }), fila.adminStats(24), adminAccounts()]);
    renderQueue(queue);
    renderStats(stats);
    renderMargin(stats);
    renderAccounts(accounts);
    $('#problem').hidden = true;
    $('#live').classList.remove('off');
    $('#live').textContent = 'live';
  } catch (e) {
    if (e instanceof FilaError && (e.code === 'unauthorized' || e.code === 'forbidden')) {
      return showGate(`The token stopped working (${e.status}).`);
    }
    $('#problem').hidden = false;
    $('#problem').textContent = `Cannot reach fila: ${e.message}. Retrying…`;
    $('#live').classList.add('off');
    $('#live').textContent = 'offline';
  }
  timer = setTimeout(refresh, EVERY_MS);
}

function cancelButton(job) {
  return h('button', {
    type: 'button', class: 'danger small', 'data-testid': 'admin-cancel', 'data-job': job.id,
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        await fila.adminCancel(job.id);
        toast(`Cancelled ${job.id}`);
      } catch (err) {
        toast(err.code === 'job_finished' ? `Already ${err.details?.status}` : err.message);
      }
      refresh();
    },
  }, 'Cancel');
}

const jobCell = (j) => h('td', {}, h('span', { class: 'mono', title: j.id }, short(j.id)));
const toolCell = (j) => h('td', {}, title(j.tool), j.variant ? h('span', { class: 'muted' }, ` · ${pretty(j.variant)}`) : '');
const userCell = (j) => h('td', {}, h('span', { class: 'ellip', title: j.user_id }, j.user_id));
const short = (id) => (id.length > 14 ? `${id.slice(0, 4)}…${id.slice(-6)}` : id);
const emptyRow = (cols, text) => h('tr', {}, h('td', { colspan: cols, class: 'muted blank' }, text));

function renderQueue(q) {
  const { total, used } = q.slots;
  $('#slots-used').textContent = used;
  $('#slots-total').textContent = total;
  const bar = $('#slots-bar');
  // Through the CSSOM, which the page's CSP allows (a style= attribute it refuses).
  bar.firstElementChild.style.width = `${total ? Math.min(100, (100 * used) / total) : 0}%`;
  bar.classList.toggle('full', total > 0 && used >= total);
  const waiting = q.queued_total ?? q.queued.length;
  $('#k-queued').textContent = waiting;
  $('#running-count').textContent = q.active.length ? `· ${q.active.length}` : '';
  $('#queue-count').textContent = waiting ? `· ${waiting}` : '';

  $('#running').replaceChildren(...(q.active.length ? q.active.map((j) => h('tr', { 'data-job': j.id },
    jobCell(j), userCell(j), toolCell(j), h('td', {}, pill(j.status)),
    h('td', { class: 'num', 'data-since': j.started_at || j.updated_at }, clock(since(j.started_at || j.updated_at))),
    h('td', { class: 'num' }, cancelButton(j)))) : [emptyRow(6, 'Nothing running.')]));

  $('#queue').replaceChildren(...(q.queued.length ? q.queued.map((j) => h('tr', { 'data-job': j.id },
    h('td', { class: 'num', 'data-testid': 'position' }, j.position), jobCell(j), userCell(j), toolCell(j),
    h('td', { class: 'num', 'data-since': j.created_at }, clock(since(j.created_at))),
    h('td', { class: 'num' }, cancelButton(j)))) : [emptyRow(6, 'The queue is empty.')]),
  ...(waiting > q.queued.length ? [emptyRow(6, `and ${waiting - q.queued.length} more waiting`)] : []));
}

const numCell = (n) => h('td', { class: `num${n ? '' : ' zero'}` }, n ?? 0);

// GET /v1/admin/accounts; null from a fila that does not have it (404).
async function adminAccounts() {
  try {
    const r = fila.adminAccounts ? await fila.adminAccounts() : await fila._request('GET', '/v1/admin/accounts');
    return r.accounts || r;
  } catch (e) {
    if (e instanceof FilaError && e.status === 404) return null;
    throw e;
  }
}

const host = (url) => { try { return new URL(url).host; } catch { return url; } };
const number = (n) => (typeof n === 'number' ? n.toLocaleString('en-US') : '—');

function renderAccounts(list) {
  const card = $('#accounts-card');
  card.hidden = !Array.isArray(list);
  if (!Array.isArray(list)) return;
  const down = list.filter((a) => !a.up).length;
  const lost = list.filter((a) => a.up && a.reachable === false).length;
  $('#accounts-count').textContent = `· ${list.length}${down ? ` · ${down} down` : ''}${lost ? ` · ${lost} unreachable` : ''}`;
  $('#accounts').replaceChildren(...list.map((a) => {
    const meter = h('div', { class: `bar slim${a.used >= a.slots ? ' full' : ''}` }, h('i'));
    // Through the CSSOM, which the page's CSP allows.
    meter.firstElementChild.style.width = `${a.slots ? Math.min(100, (100 * a.used) / a.slots) : 0}%`;
    // Down (its wallet, its key) says more than unreachable (the network).
    const state = !a.up ? 'down' : a.reachable === false ? 'unreachable' : 'up';
    const reason = !a.up ? a.down_reason : a.reachable === false ? a.unreachable_reason : '';
    return h('tr', { 'data-account': a.name, 'data-up': String(a.up) },
      h('td', {}, h('b', { class: 'semi' }, a.name)),
      h('td', {}, h('span', { class: 'mono ellip', title: a.base_url }, host(a.base_url))),
      h('td', { class: 'num', 'data-testid': 'account-used' }, `${a.used} / ${a.slots}`),
      h('td', { class: 'meter' }, meter),
      h('td', { class: 'wrap' }, h('span', { class: `pill ${state === 'up' ? 'up' : 'down'}`, 'data-testid': 'account-state' }, state),
        reason ? h('span', { class: 'small reason', 'data-testid': 'down-reason' }, reason) : ''),
      h('td', { class: `num${a.remain_coins === undefined ? ' zero' : ''}`, 'data-testid': 'account-coins' }, number(a.remain_coins)),
      h('td', { class: `num${a.task_count === undefined ? ' zero' : ''}` }, number(a.task_count)));
  }));
}

// Credits kept against what the provider charged, per tool: the margin.
function renderMargin(s) {
  const rows = Object.entries(s.tools || {}).filter(([, t]) => t.credits_net !== undefined);
  let credits = 0;
  let coins = 0;
  let nano = 0n; // money summed in billionths, exactly, as fila does
  let digits = 2;
  const ratio = (c, k) => (k > 0 ? (c / k).toFixed(2) : '—');
  $('#margin').replaceChildren(...(rows.length ? rows.map(([tool, t]) => {
    credits += t.credits_net;
    coins += t.provider_coins;
    const [whole, frac = ''] = String(t.provider_money ?? '0').split('.');
    digits = Math.max(digits, frac.length);
    nano += BigInt(whole) * 1000000000n + BigInt((frac + '000000000').slice(0, 9));
    return h('tr', { 'data-tool': tool },
      h('td', {}, h('b', { class: 'semi' }, title(tool))),
      numCell(t.credits_net), numCell(t.provider_coins),
      h('td', { class: `num${Number(t.provider_money) ? '' : ' zero'}`, 'data-testid': 'money' }, t.provider_money),
      h('td', { class: 'num muted' }, ratio(t.provider_coins, t.credits_net)));
  }) : [emptyRow(5, 'This fila does not report provider cost.')]));
  const money = `${nano / 1000000000n}.${String(nano % 1000000000n).padStart(9, '0').slice(0, digits)}`;
  $('#margin-total').replaceChildren(...(rows.length ? [h('tr', { class: 'total' },
    h('td', {}, 'All tools'), h('td', { class: 'num', 'data-testid': 'credits-total' }, credits),
    h('td', { class: 'num', 'data-testid': 'coins-total' }, coins),
    h('td', { class: 'num', 'data-testid': 'money-total' }, money),
    h('td', { class: 'num muted' }, ratio(coins, credits)))] : []));
}

function renderStats(s) {
  const rows = Object.entries(s.tools || {});
  let completed = 0;
  let failed = 0;
  const waits = [];
  $('#stats').replaceChildren(...rows.map(([tool, t]) => {
    completed += t.completed;
    failed += t.failed + t.timeout;
    if (t.wait_p50_s !== null && t.wait_p50_s !== undefined) waits.push(t.wait_p50_s);
    return h('tr', { 'data-tool': tool },
      h('td', {}, h('b', { class: 'semi' }, title(tool))),
      numCell(t.completed), numCell(t.failed), numCell(t.cancelled), numCell(t.timeout),
      h('td', { class: 'num' }, dur(t.wait_p50_s)), h('td', { class: 'num' }, dur(t.run_p50_s)));
  }));
  $('#k-completed').textContent = completed;
  $('#k-failed').textContent = failed;
  $('#k-completed').classList.toggle('none', completed === 0);
  $('#k-failed').classList.toggle('none', failed === 0);
  // The median of the tools' medians: a rough overall figure.
  waits.sort((a, b) => a - b);
  $('#k-wait').textContent = waits.length ? dur(waits[Math.floor(waits.length / 2)]) : '—';

  const fails = s.recent_failures;
  const box = $('#failures');
  if (!Array.isArray(fails)) {
    box.replaceChildren(h('p', { class: 'muted small flat' }, 'Failed jobs appear here when fila lists them (recent_failures of /v1/admin/stats).'));
    return;
  }
  $('#failures-count').textContent = fails.length ? `· ${fails.length}` : '';
  box.replaceChildren(...(fails.length ? fails.map((j) => h('div', { class: 'failure', 'data-job': j.id },
    h('div', { class: 'head' },
      h('span', {}, h('b', { class: 'semi' }, title(j.tool)), h('span', { class: 'muted' }, ` · ${j.user_id}`)),
      h('span', { class: 'small muted', title: j.finished_at }, `${j.error?.code || 'failed'} · ${ago(j.finished_at || j.updated_at)}`)),
    h('div', { class: 'msg' }, j.error?.message || '(no message)'))) : [h('p', { class: 'muted small flat' }, 'No failures in the last 24 hours.')]));
}

// Ages tick between polls.
setInterval(() => {
  for (const el of document.querySelectorAll('[data-since]')) el.textContent = clock(since(el.dataset.since));
}, 1000);

// ---- grants ---------------------------------------------------------------------

$('#grant').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target;
  const user = f.user.value.trim();
  const amount = Number(f.amount.value);
  const out = $('#grantnote');
  if (!user || !Number.isInteger(amount) || amount === 0) {
    out.className = 'notice bad';
    out.textContent = 'A user id and a whole, non-zero amount.';
    out.hidden = false;
    return;
  }
  const b = f.querySelector('button');
  b.disabled = true;
  try {
    const r = await fila.adminGrant(user, amount, f.reason.value.trim() || undefined);
    out.className = 'notice ok';
    out.replaceChildren(h('b', {}, `${amount > 0 ? '+' : ''}${amount} credits → ${user}. `), `Balance now ${r.balance}.`);
    out.dataset.testid = 'grant-result';
  } catch (err) {
    out.className = 'notice bad';
    out.textContent = err.message;
  }
  out.hidden = false;
  b.disabled = false;
});
