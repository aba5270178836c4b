// demo.js — the demo page: a user submits a job and watches it, on fila.js.
import { Fila, FilaError, isTerminal } from '/fila.js';
import { h, $, takeToken, randomId, tokenSubject, clock, approx, ago, since, pretty, pill, toast, isVideo } from '/web/common.js';

const TOKEN_KEY = 'fila.token';
const TOOL_KEY = 'fila.tool';
const ACCEPT = { image: 'image/png,image/jpeg,image/webp', video: 'video/mp4,video/quicktime' };
const CANCEL_TEXT = {
  cancelled: 'You cancelled this job.',
  session_left: 'Cancelled because the page that submitted it was closed.',
  admin: 'Cancelled by an operator.',
  timeout: 'It took too long and was stopped.',
};

// One id per browser tab: the jobs of this tab are cancelled when it goes away.
let sessionId = sessionStorage.getItem('fila.session');
if (!sessionId) {
  sessionId = randomId('tab-');
  sessionStorage.setItem('fila.session', sessionId);
}

const fila = new Fila();
const state = {
  tools: [],
  tool: null,
  current: null,   // the job shown
  eta: null,       // {position, eta_s, at} from the last queued event
  unsubscribe: null,
  poll: null,
  files: {},       // input name → File
  busy: false,
};

// ---- start -------------------------------------------------------------------

start(takeToken(TOKEN_KEY));

async function start(token) {
  if (!token) return showGate();
  fila.setToken(token);
  let me;
  try {
    me = await fila.me();
  } catch (e) {
    return showGate(e.status === 401
      ? 'That token was refused (401). It may be expired, or made with another secret.'
      : `fila did not answer: ${e.message}`);
  }
  $('#gate').hidden = true;
  $('#app').hidden = false;
  $('#who').hidden = false;
  $('#user').textContent = me.user_id;
  showCredits(me.credits);
  fila.leaveOnUnload(sessionId);

  state.tools = await fila.tools();
  const saved = localStorage.getItem(TOOL_KEY);
  renderTools();
  pickTool(state.tools.find((t) => t.name === saved) || state.tools[0]);

  const wanted = new URLSearchParams(location.hash.slice(1)).get('job');
  if (wanted) {
    try { return showJob(await fila.job(wanted)); } catch { /* gone: fall through */ }
  }
  if (me.active_job) showJob(me.active_job, { already: true });
  refreshHistory();
}

function showGate(error) {
  $('#app').hidden = true;
  $('#who').hidden = true;
  $('#gate').hidden = false;
  const err = $('#gateerr');
  err.hidden = !error;
  err.textContent = error || '';
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
  stopWatching();
  location.href = '/';
});

window.addEventListener('hashchange', async () => {
  const id = new URLSearchParams(location.hash.slice(1)).get('job');
  if (id && id !== state.current?.id) {
    try { showJob(await fila.job(id)); } catch (e) { toast(e.message); }
  }
});

// ---- credits and history --------------------------------------------------------

function showCredits(n) {
  $('#credits').textContent = `${n} credits`;
  $('#credits').dataset.value = n;
}

async function refreshMe() {
  try { showCredits((await fila.me()).credits); } catch { /* next time */ }
}

async function refreshHistory() {
  let list;
  try { list = (await fila.jobs({ limit: 6 })).jobs; } catch { return; }
  $('#historycard').hidden = list.length === 0;
  $('#history').replaceChildren(...list.map((j) => h('li', {},
    pill(j.status),
    h('a', { class: 'grow', href: `#job=${j.id}` }, toolTitle(j.tool), j.variant ? ` · ${pretty(j.variant)}` : ''),
    h('time', { datetime: j.created_at, title: j.created_at }, ago(j.created_at)))));
}

const toolTitle = (name) => state.tools.find((t) => t.name === name)?.title || pretty(name);

// ---- the form ----------------------------------------------------------------------

function renderTools() {
  $('#tools').replaceChildren(...state.tools.map((t) => h('button', {
    type: 'button', class: 'tool', 'data-tool': t.name, 'aria-pressed': 'false',
    onclick: () => pickTool(t),
  }, h('b', {}, t.title), h('small', {}, `${t.cost} credits · ${t.inputs.filter((i) => i.type === 'image' || i.type === 'video').map((i) => i.type).join(' + ') || 'text'}`))));
}

function pickTool(tool) {
  state.tool = tool;
  state.files = {};
  localStorage.setItem(TOOL_KEY, tool.name);
  for (const b of document.querySelectorAll('.tool')) b.setAttribute('aria-pressed', String(b.dataset.tool === tool.name));
  const vf = $('#variantfield');
  vf.hidden = tool.variants.length === 0;
  $('#variant').replaceChildren(...tool.variants.map((v) => h('option', { value: v }, pretty(v))));
  $('#inputs').replaceChildren(...tool.inputs.map(renderInput));
  note(null);
  updateSubmit();
}

function renderInput(inp) {
  const label = pretty(inp.name);
  const hint = inp.required ? 'required' : 'optional';
  if (inp.type === 'image' || inp.type === 'video') {
    const thumb = h('div', { class: 'thumb' }, inp.type === 'video' ? '▶' : '+');
    const what = h('div', { class: 'what' }, h('b', {}, `Choose ${inp.type === 'video' ? 'a video' : 'an image'}`),
      h('span', {}, inp.type === 'video' ? 'MP4 or MOV, up to 30 MB' : 'PNG, JPEG or WebP, up to 30 MB — or drop it here'));
    const file = h('input', { type: 'file', name: inp.name, accept: ACCEPT[inp.type], 'aria-label': label });
    const zone = h('div', { class: 'drop' }, file, thumb, what);
    file.addEventListener('change', () => {
      const f = file.files[0];
      if (!f) { delete state.files[inp.name]; return; }
      state.files[inp.name] = f;
      const url = URL.createObjectURL(f);
      thumb.replaceChildren(inp.type === 'video'
        ? h('video', { src: url, muted: true, playsInline: true })
        : h('img', { src: url, alt: '' }));
      what.replaceChildren(h('b', {}, f.name), h('span', {}, `${(f.size / 1024).toFixed(f.size < 10240 ? 1 : 0)} KB · click to change`));
      fieldError(inp.name, null);
    });
    zone.addEventListener('dragenter', () => zone.classList.add('over'));
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', () => zone.classList.remove('over'));
    return field(inp, label, hint, zone);
  }
  if (inp.type === 'number') {
    const range = inp.min !== undefined && inp.max !== undefined ? `${inp.min} – ${inp.max}` : '';
    const step = inp.max !== undefined && inp.max <= 1 ? 'any' : '1';
    return field(inp, label, range ? `${hint} · ${range}` : hint,
      h('input', { type: 'number', name: inp.name, min: inp.min, max: inp.max, step, placeholder: range || 'a number' }));
  }
  if (inp.type === 'choice') {
    const opts = (inp.choices || []).map((c) => h('option', { value: c }, pretty(c)));
    if (!inp.required) opts.unshift(h('option', { value: '' }, '—'));
    return field(inp, label, hint, h('select', { name: inp.name }, opts));
  }
  return field(inp, label, hint, h('input', { type: 'text', name: inp.name, placeholder: inp.name === 'prompt' ? 'Describe what you want (optional)' : '' }));
}

function field(inp, label, hint, control) {
  return h('div', { class: 'field', 'data-field': inp.name },
    h('span', {}, label, h('em', {}, hint)), control,
    h('div', { class: 'small fielderr', 'data-error': inp.name, hidden: true }));
}

function fieldError(name, text) {
  const el = document.querySelector(`[data-error="${CSS.escape(name)}"]`);
  if (!el) return false;
  el.hidden = !text;
  el.textContent = text || '';
  return true;
}

// A notice above the submit button: null, or {kind, parts...}
// 45 → "45 seconds", 130 → "2 minutes", 5400 → "1.5 hours"
function inWords(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  if (s < 3600) {
    const m = Math.round(s / 60);
    return `${m} minute${m === 1 ? '' : 's'}`;
  }
  const hrs = Math.round(s / 360) / 10;
  return `${hrs} hour${hrs === 1 ? '' : 's'}`;
}

function note(kind, ...parts) {
  const el = $('#formnote');
  delete el.dataset.testid;
  if (!kind) { el.hidden = true; el.replaceChildren(); return; }
  el.className = `notice ${kind}`;
  el.replaceChildren(...parts);
  el.hidden = false;
}

function activeHere() {
  return state.current && !isTerminal(state.current) ? state.current : null;
}

function updateSubmit() {
  const b = $('#submit');
  const t = state.tool;
  if (state.busy) return;
  const active = activeHere();
  b.disabled = !!active;
  b.textContent = active ? 'Your job is in progress…' : t ? `Run ${t.title} · ${t.cost} credits` : 'Run';
}

$('#jobform').addEventListener('submit', async (e) => {
  e.preventDefault();
  const tool = state.tool;
  if (!tool || state.busy) return;
  note(null);
  const inputs = {};
  let missing = false;
  for (const inp of tool.inputs) {
    fieldError(inp.name, null);
    if (inp.type === 'image' || inp.type === 'video') {
      if (state.files[inp.name]) inputs[inp.name] = state.files[inp.name];
      else if (inp.required) { fieldError(inp.name, `Choose ${inp.type === 'video' ? 'a video' : 'an image'}.`); missing = true; }
      continue;
    }
    const el = document.querySelector(`#inputs [name="${CSS.escape(inp.name)}"]`);
    const raw = el.value.trim();
    if (raw === '') {
      if (inp.required) { fieldError(inp.name, 'Required.'); missing = true; }
      continue;
    }
    if (inp.type === 'number') {
      const n = Number(raw);
      if (!Number.isFinite(n) || (inp.min !== undefined && n < inp.min) || (inp.max !== undefined && n > inp.max)) {
        fieldError(inp.name, `A number from ${inp.min} to ${inp.max}.`);
        missing = true;
        continue;
      }
      inputs[inp.name] = n;
    } else inputs[inp.name] = raw;
  }
  if (missing) return;

  state.busy = true;
  const b = $('#submit');
  b.disabled = true;
  b.textContent = Object.values(inputs).some((v) => v instanceof Blob) ? 'Uploading…' : 'Submitting…';
  try {
    const job = await fila.createJob({
      tool: tool.name,
      variant: tool.variants.length ? $('#variant').value : undefined,
      inputs,
      sessionId,
      idempotencyKey: randomId('sub-'),
    });
    state.busy = false;
    showJob(job);
    refreshMe();
    refreshHistory();
  } catch (err) {
    state.busy = false;
    showSubmitError(err);
  }
  updateSubmit();
});

function showSubmitError(err) {
  if (!(err instanceof FilaError)) return note('bad', String(err.message || err));
  const d = err.details || {};
  switch (err.code) {
    case 'active_job_exists':
      // Show that job on the right too (it was submitted elsewhere, e.g. another tab).
      fila.job(d.job_id).then((j) => { if (!activeHere()) showJob(j); }, () => {});
      refreshMe();
      refreshHistory();
      return note('warn', h('b', {}, 'You already have a job running. '),
        `Your ${toolTitle(d.tool)} job is ${d.status}; one job at a time. `,
        h('a', { href: `#job=${d.job_id}`, 'data-testid': 'active-link',
          onclick: async (e) => { e.preventDefault(); showJob(await fila.job(d.job_id), { already: true }); } }, 'Show it →'));
    case 'insufficient_credits':
      return note('bad', h('b', {}, 'Not enough credits. '), `This costs ${d.cost}; you have ${d.balance}.`);
    case 'queue_full': {
      // Nothing was charged; the wait fila estimated is over what it takes on.
      const later = Math.max(1, (d.eta_s ?? 0) - (d.max_wait_s ?? 0));
      note('warn', h('b', {}, 'The queue is too long right now: '),
        `a new job would wait about ${inWords(d.eta_s)}, more than the ${inWords(d.max_wait_s)} this service accepts. `,
        `Nothing was charged; try again in ${inWords(later)}.`);
      $('#formnote').dataset.testid = 'queue-full';
      return;
    }
    case 'validation_failed': {
      let shown = false;
      for (const [name, reason] of Object.entries(d.fields || {})) shown = fieldError(name, reason) || shown;
      if (!shown) note('bad', h('b', {}, 'Not accepted: '), Object.entries(d.fields || {}).map(([k, v]) => `${k}: ${v}`).join('; ') || err.message);
      return;
    }
    case 'unsupported_media_type':
      return note('bad', h('b', {}, 'That file is not a supported type. '), 'Use PNG, JPEG or WebP images, MP4 or MOV videos.');
    case 'too_large':
      return note('bad', h('b', {}, 'That file is too large. '), err.message);
    case 'unauthorized':
      return showGate('Your token was refused (401). Paste a fresh one.');
    default:
      return note('bad', h('b', {}, 'Could not submit. '), err.message);
  }
}

// ---- the job panel -------------------------------------------------------------------

function stopWatching() {
  state.unsubscribe?.();
  state.unsubscribe = null;
  clearInterval(state.poll);
  state.poll = null;
}

function showJob(job, { already = false } = {}) {
  stopWatching();
  state.current = job;
  state.already = already && !isTerminal(job);
  state.eta = null;
  if (location.hash !== `#job=${job.id}`) history.replaceState(null, '', `#job=${job.id}`);
  renderJob();
  updateSubmit();
  if (state.already) note('info', h('b', {}, 'You already have a job running. '), 'It is shown on the right; you can submit a new one once it ends, or cancel it.');
  if (isTerminal(job)) return;
  const id = job.id;
  state.unsubscribe = fila.subscribe(job, (j) => update(id, j), {
    onError: () => {
      // The stream gave up (e.g. the token expired): fall back to polling.
      state.poll = setInterval(async () => {
        try { update(id, await fila.job(id)); } catch { /* keep trying */ }
      }, 2000);
    },
  });
}

function update(id, job) {
  if (state.current?.id !== id) return;
  // Events replay the history first: never go back to an older state.
  if (Date.parse(job.updated_at) < Date.parse(state.current.updated_at)) return;
  const was = state.current;
  state.current = job;
  if (job.status === 'queued' && typeof job.eta_s === 'number') state.eta = { eta_s: job.eta_s, at: Date.now() };
  if (job.status !== 'queued') state.eta = null;
  renderJob();
  if (isTerminal(job) && !isTerminal(was)) {
    stopWatching();
    if (state.already) note(null);
    state.already = false;
    updateSubmit();
    refreshMe();
    refreshHistory();
  }
}

const STEPS = ['queued', 'starting', 'running', 'completed'];

function steps(job) {
  const bad = job.status === 'failed' || job.status === 'cancelled';
  // Where a failed/cancelled job stopped: the furthest step it reached.
  let at = STEPS.indexOf(job.status);
  if (bad) at = job.started_at ? 2 : 0;
  const labels = ['In line', 'Starting', 'Running', bad ? pretty(job.status) : 'Done'];
  return h('div', { class: `steps${bad ? ' bad' : ''}` }, labels.map((l, i) => {
    let cls = '';
    if (job.status === 'completed' || i < at) cls = 'done';
    else if (i === at) cls = bad ? 'done' : 'now';
    if (bad && i === 3) cls = 'done';
    if (bad && i > at && i < 3) cls = '';
    return h('div', { class: cls }, h('i'), h('span', {}, l));
  }));
}

function renderJob() {
  const job = state.current;
  $('#nojob').hidden = !!job;
  const view = $('#jobview');
  view.hidden = !job;
  if (!job) return;
  const parts = [];
  parts.push(h('div', { class: 'jobhead' },
    h('div', {},
      h('div', { class: 'title' }, toolTitle(job.tool), job.variant ? h('span', { class: 'muted' }, ` · ${pretty(job.variant)}`) : ''),
      h('div', { class: 'sub' }, h('span', { class: 'mono' }, job.id), ` · ${job.cost} credits`)),
    pill(job.status)));
  parts.push(steps(job));

  if (job.status === 'queued') {
    const eta = state.eta ? approx(Math.max(0, state.eta.eta_s - (Date.now() - state.eta.at) / 1000)) : null;
    parts.push(h('div', { class: 'big' },
      h('div', { class: 'stat' }, h('div', { class: 'k' }, 'Place in line'),
        h('div', { class: 'v', 'data-testid': 'position' }, job.position ? `#${job.position}` : '—')),
      h('div', { class: 'stat' }, h('div', { class: 'k' }, 'Starts in'),
        h('div', { class: 'v', 'data-testid': 'eta', 'data-tick': 'eta' }, eta || h('small', { title: 'fila estimates from the recent run times of the tools' }, 'not known yet')))));
    parts.push(h('p', { class: 'muted small flush' },
      'Every tool shares the same few places at the provider; jobs start in the order they arrived.'));
  } else if (job.status === 'starting' || job.status === 'running') {
    parts.push(h('div', { class: 'big' },
      h('div', { class: 'stat' }, h('div', { class: 'k' }, job.status === 'running' ? 'Running for' : 'Starting'),
        h('div', { class: 'v', 'data-tick': 'since', 'data-since': job.started_at || job.updated_at }, clock(since(job.started_at || job.updated_at)))),
      h('div', { class: 'stat' }, h('div', { class: 'k' }, 'Waited'),
        h('div', { class: 'v' }, job.started_at ? clock((Date.parse(job.started_at) - Date.parse(job.created_at)) / 1000) : '—'))));
  } else if (job.status === 'completed') {
    parts.push(h('div', { class: 'stack', 'data-testid': 'result' }, job.outputs.map((o, i) => h('div', { class: 'stack' },
      h('div', { class: 'result' }, isVideo(o.type, o.url)
        ? h('video', { src: o.url, controls: true, playsInline: true, 'data-testid': 'result-video' })
        : h('img', { src: o.url, alt: `result ${i + 1}`, 'data-testid': 'result-image' })),
      h('div', { class: 'small muted resultfoot' },
        h('span', {}, `Done in ${clock((Date.parse(job.finished_at) - Date.parse(job.started_at || job.created_at)) / 1000)}`),
        h('a', { href: o.url, target: '_blank', rel: 'noopener' }, `Open ${String(o.type || '').toUpperCase()} ↗`))))));
    if (!job.outputs.length) parts.push(h('div', { class: 'notice warn' }, 'The job completed without an output file.'));
  } else if (job.status === 'failed') {
    const e = job.error || {};
    parts.push(h('div', { class: 'notice bad', 'data-testid': 'error' },
      h('b', {}, e.code === 'timeout' ? 'Timed out. ' : e.code === 'provider_rejected' ? 'The provider refused this job. ' : 'The provider failed this job. '),
      h('div', { class: 'mono detail' }, e.message || '(no message)')));
  } else if (job.status === 'cancelled') {
    const e = job.error || {};
    parts.push(h('div', { class: 'notice plain' }, CANCEL_TEXT[e.code] || e.message || 'Cancelled.'));
  }

  if (isTerminal(job) && job.status !== 'completed') {
    parts.push(h('div', { class: 'small muted' }, job.credits_refunded ? `✓ ${job.cost} credits refunded.` : ''));
  }
  if (!isTerminal(job)) {
    parts.push(h('div', { class: 'row end' },
      h('button', { type: 'button', class: 'danger natural', 'data-testid': 'cancel', onclick: cancelCurrent },
        job.status === 'queued' ? 'Leave the line' : 'Cancel job')));
  }
  view.replaceChildren(...parts);
}

async function cancelCurrent(e) {
  const job = state.current;
  e.target.disabled = true;
  try {
    update(job.id, await fila.cancel(job.id));
  } catch (err) {
    if (err.code === 'job_finished') update(job.id, await fila.job(job.id));
    else toast(err.message);
    e.target.disabled = false;
  }
}

// Clocks tick between events.
setInterval(() => {
  for (const el of document.querySelectorAll('[data-tick="since"]')) el.textContent = clock(since(el.dataset.since));
  const etaEl = document.querySelector('[data-tick="eta"]');
  if (etaEl && state.eta) etaEl.textContent = approx(Math.max(0, state.eta.eta_s - (Date.now() - state.eta.at) / 1000));
  for (const el of document.querySelectorAll('#history time')) el.textContent = ago(el.getAttribute('datetime'));
}, 1000);
