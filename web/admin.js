// admin.js — the operator's view: slots, queue, running jobs, 24 h stats,
// failures, credit grants, cancel. Polls every 2 s (the event streams are
// per user).
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
    const [queue, stats] = await Promise.all([fila.adminQueue({ limit: QUEUE_SHOWN }), fila.adminStats(24)]);
    renderQueue(queue);
    renderStats(stats);
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
