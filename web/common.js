// common.js — small helpers shared by the demo and admin pages.

// h('div', {class: 'x', onclick: fn}, 'text', child, [more]) → an element.
// Text is always set as text, never parsed as HTML.
export function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids) {
    if (k === null || k === undefined || k === false) continue;
    if (Array.isArray(k)) append(el, k);
    else el.append(k instanceof Node ? k : String(k));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);

// The token: ?token= (then dropped from the address bar) or localStorage.
export function takeToken(key) {
  const params = new URLSearchParams(location.search);
  const fromUrl = params.get('token');
  if (fromUrl) {
    localStorage.setItem(key, fromUrl);
    params.delete('token');
    const q = params.toString();
    history.replaceState(null, '', location.pathname + (q ? `?${q}` : '') + location.hash);
    return fromUrl;
  }
  return localStorage.getItem(key);
}

export function randomId(prefix) {
  const b = new Uint8Array(8);
  crypto.getRandomValues(b);
  return prefix + Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

// The user id (sub) inside a JWT, for display only (the server checks it).
export function tokenSubject(tok) {
  try {
    const part = tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = JSON.parse(decodeURIComponent(escape(atob(part))));
    return { sub: json.sub, role: json.role };
  } catch {
    return {};
  }
}

// 75 → "1:15", 4000 → "1:06:40"
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

// "about 40 s", "about 3 min"
export function approx(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return null;
  if (seconds < 1) return 'any moment';
  if (seconds < 60) return `~${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `~${Math.round(seconds / 60)} min`;
  return `~${(seconds / 3600).toFixed(1)} h`;
}

// 1.234 → "1.2 s", 75 → "1 m 15 s", null → "—"
export function dur(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  if (seconds < 60) return `${Math.round(seconds)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} m ${Math.round(seconds % 60)} s`;
}

export function ago(iso) {
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (!Number.isFinite(s)) return '';
  if (s < 10) return 'just now';
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export const since = (iso) => (Date.now() - Date.parse(iso)) / 1000;

export const pretty = (name) => String(name).replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

export function pill(status) {
  return h('span', { class: `pill ${status}`, 'data-testid': 'status', 'data-status': status }, status);
}

let toastTimer;
export function toast(text) {
  let el = $('.toast');
  if (!el) {
    el = h('div', { class: 'toast', role: 'status' });
    document.body.append(el);
  }
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 3500);
}

// Output types that are videos; everything else is shown as an image.
export const isVideo = (type, url = '') => /^(mp4|mov|webm|m4v|video)/i.test(type || '') || /\.(mp4|mov|webm|m4v)(\?|$)/i.test(url);
