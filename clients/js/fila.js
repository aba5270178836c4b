// fila.js — the browser SDK of fila (docs/api.md). One ES module, no dependencies.
// Works in browsers and in Node 20 (fetch is global there; EventSource is
// not, so pass an EventSource-compatible class to subscribe in Node).
//
//   import { Fila } from '/fila.js';
//   const fila = new Fila({ token });
//   const job = await fila.createJob({ tool: 'upscaler', inputs: { image: file } });
//   const stop = fila.subscribe(job, (j) => render(j));
//
// Every non-2xx answer is thrown as a FilaError carrying the API's error code
// and details; a request that never got an answer is a FilaError with
// status 0 and code "network_error".

export const TERMINAL = Object.freeze(['completed', 'failed', 'cancelled']);
export const ACTIVE = Object.freeze(['queued', 'starting', 'running']);

export function isTerminal(statusOrJob) {
  const s = typeof statusOrJob === 'string' ? statusOrJob : statusOrJob?.status;
  return TERMINAL.includes(s);
}

export class FilaError extends Error {
  constructor(status, code, message, details) {
    super(message || code || `HTTP ${status}`);
    this.name = 'FilaError';
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const isBlob = (v) => typeof Blob !== 'undefined' && v instanceof Blob;
const isBytes = (v) => v instanceof ArrayBuffer || ArrayBuffer.isView(v);
const isUploadable = (v) => isBlob(v) || isBytes(v);

// Reconnect delays of the event streams, in ms (capped at the last one).
const BACKOFF = [500, 1000, 2000, 4000, 8000, 15000];

export class Fila {
  constructor({ baseUrl = '', token, EventSource, fetch } = {}) {
    this.baseUrl = String(baseUrl).replace(/\/+$/, '');
    this.token = token || null;
    this.EventSource = EventSource || globalThis.EventSource || null;
    this._fetch = fetch || ((...a) => globalThis.fetch(...a));
  }

  setToken(token) {
    this.token = token || null;
  }

  // ---- plumbing ------------------------------------------------------------

  _url(path, query) {
    let url = this.baseUrl + path;
    const q = [];
    for (const [k, v] of Object.entries(query || {})) {
      if (v === undefined || v === null || v === '') continue;
      q.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
    }
    if (q.length) url += (url.includes('?') ? '&' : '?') + q.join('&');
    return url;
  }

  async _request(method, path, { query, json, body, headers = {} } = {}) {
    const h = { accept: 'application/json', ...headers };
    if (this.token) h.authorization = `Bearer ${this.token}`;
    let data = body;
    if (json !== undefined) {
      data = JSON.stringify(json);
      h['content-type'] = 'application/json';
    }
    let res;
    try {
      res = await this._fetch(this._url(path, query), { method, headers: h, body: data });
    } catch (e) {
      const err = new FilaError(0, 'network_error', `${method} ${path}: ${e?.message || e}`);
      err.cause = e;
      throw err;
    }
    const text = await res.text();
    let parsed = null;
    if (text) {
      try { parsed = JSON.parse(text); } catch { /* not JSON */ }
    }
    if (!res.ok) {
      const e = parsed && typeof parsed === 'object' ? parsed.error : null;
      throw new FilaError(
        res.status,
        e?.code || `http_${res.status}`,
        e?.message || text.slice(0, 200) || res.statusText || `HTTP ${res.status}`,
        e?.details,
      );
    }
    return parsed;
  }

  // ---- user endpoints ------------------------------------------------------

  tools() {
    return this._request('GET', '/v1/tools').then((r) => r.tools);
  }

  // file: File, Blob, ArrayBuffer or a typed array. → {id, type, size, sha256}
  uploadFile(file, { filename, type } = {}) {
    if (!isUploadable(file)) throw new TypeError('uploadFile: expected a File, Blob, ArrayBuffer or Uint8Array');
    const name = filename ?? (typeof file.name === 'string' && file.name ? file.name : undefined);
    const ctype = type || (isBlob(file) && file.type) || 'application/octet-stream';
    return this._request('POST', '/v1/uploads', {
      query: { filename: name },
      body: file,
      headers: { 'content-type': ctype },
    });
  }

  // Uploads every File/Blob/bytes value of inputs first, then submits the job.
  async createJob({ tool, variant, inputs = {}, sessionId, idempotencyKey } = {}) {
    const resolved = { ...inputs };
    await Promise.all(Object.entries(inputs).map(async ([name, v]) => {
      if (isUploadable(v)) resolved[name] = (await this.uploadFile(v)).id;
    }));
    const body = { tool, inputs: resolved };
    if (variant) body.variant = variant;
    if (sessionId) body.session_id = sessionId;
    const headers = idempotencyKey ? { 'idempotency-key': idempotencyKey } : {};
    return this._request('POST', '/v1/jobs', { json: body, headers });
  }

  job(id) {
    return this._request('GET', `/v1/jobs/${encodeURIComponent(jobId(id))}`);
  }

  // → {jobs, next_cursor}, newest first.
  jobs({ status, tool, limit, cursor } = {}) {
    return this._request('GET', '/v1/jobs', { query: { status, tool, limit, cursor } });
  }

  cancel(id) {
    return this._request('POST', `/v1/jobs/${encodeURIComponent(jobId(id))}/cancel`);
  }

  me() {
    return this._request('GET', '/v1/me');
  }

  async activeJob() {
    return (await this.me()).active_job || null;
  }

  ledger() {
    return this._request('GET', '/v1/me/ledger').then((r) => r.entries);
  }

  // Cancels the session's queued jobs now (leaveOnUnload does it on unload).
  leaveSession(sessionId) {
    return this._request('POST', `/v1/sessions/${encodeURIComponent(sessionId)}/leave`);
  }

  // ---- live updates --------------------------------------------------------

  // Calls onChange(job) for every change of one job (the whole history first
  // when the stream is new), resumes after a dropped connection from the last
  // event id seen, and closes itself after the terminal status.
  // Returns the unsubscribe function.
  subscribe(jobOrId, onChange, { onError, onOpen, after } = {}) {
    const id = jobId(jobOrId);
    return this._stream(`/v1/jobs/${encodeURIComponent(id)}/events`, onChange, {
      onError,
      onOpen,
      after,
      terminalOf: id,
      // After a failed connection: ask the REST API where the job stands, so a
      // job that ended while we were away is reported and ends the stream.
      check: async () => {
        const j = await this.job(id);
        return isTerminal(j) ? j : null;
      },
    });
  }

  // Every change of every job of the caller; never closes by itself.
  subscribeAll(onChange, { onError, onOpen, after } = {}) {
    return this._stream('/v1/events', onChange, {
      onError,
      onOpen,
      after,
      check: async () => { await this.me(); return null; },
    });
  }

  _stream(path, onChange, { onError, onOpen, after, terminalOf, check }) {
    const ES = this.EventSource;
    if (!ES) {
      throw new Error('fila: no EventSource here; pass one: new Fila({ EventSource })');
    }
    let lastId = after ?? null;
    let es = null;
    let timer = null;
    let stopped = false;
    let failures = 0;
    let finalJob = null;

    const stop = () => {
      stopped = true;
      clearTimeout(timer);
      if (es) es.close();
      es = null;
    };
    const fail = (err) => {
      stop();
      if (onError) onError(err);
    };
    const deliver = (job) => {
      try { onChange(job); } catch (e) { setTimeout(() => { throw e; }); }
    };

    const open = () => {
      if (stopped) return;
      const url = this._url(path, { access_token: this.token, after: lastId ?? undefined });
      const src = new ES(url);
      es = src;
      src.onopen = () => {
        failures = 0;
        if (onOpen) onOpen();
      };
      src.addEventListener('job', (ev) => {
        if (stopped || es !== src) return;
        const n = Number(ev.lastEventId);
        if (ev.lastEventId !== '' && Number.isFinite(n)) {
          if (lastId !== null && n <= Number(lastId)) return; // already seen
          lastId = ev.lastEventId;
        }
        let job;
        try { job = JSON.parse(ev.data); } catch { return; }
        if (terminalOf && job.id !== terminalOf) return;
        if (terminalOf && isTerminal(job)) {
          finalJob = job;
          stop();
        }
        deliver(job);
      });
      src.onerror = () => {
        if (stopped || es !== src) return;
        // Take reconnection in hand: the new URL carries ?after= the last id
        // seen, and a stream that ended for good (204, 401) is recognised.
        src.close();
        es = null;
        const delay = BACKOFF[Math.min(failures, BACKOFF.length - 1)];
        failures++;
        timer = setTimeout(async () => {
          if (stopped) return;
          try {
            const done = check ? await check() : null;
            if (stopped) return;
            if (done) {
              stop();
              if (!finalJob) deliver(done);
              return;
            }
          } catch (e) {
            if (stopped) return;
            if (e instanceof FilaError && e.status >= 400 && e.status < 500 && e.status !== 429) {
              fail(e);
              return;
            }
            // network trouble: keep trying
          }
          open();
        }, delay);
      };
    };
    open();
    return stop;
  }

  // Cancels the session's waiting jobs when the page goes away (pagehide or
  // beforeunload) with navigator.sendBeacon. Returns the unregister function.
  leaveOnUnload(sessionId) {
    const g = globalThis;
    if (typeof g.addEventListener !== 'function') return () => {};
    let sent = false;
    const leave = () => {
      if (sent) return;
      sent = true;
      const url = this._url(`/v1/sessions/${encodeURIComponent(sessionId)}/leave`,
        { access_token: this.token });
      if (g.navigator && typeof g.navigator.sendBeacon === 'function') {
        if (g.navigator.sendBeacon(url)) return;
      }
      // No beacon (or refused): a keepalive fetch outlives the page too.
      try { this._fetch(url, { method: 'POST', keepalive: true }).catch(() => {}); } catch { /* gone */ }
    };
    // A page restored from the back/forward cache may leave again later.
    const back = (e) => { if (e.persisted) sent = false; };
    g.addEventListener('pagehide', leave);
    g.addEventListener('beforeunload', leave);
    g.addEventListener('pageshow', back);
    return () => {
      g.removeEventListener('pagehide', leave);
      g.removeEventListener('beforeunload', leave);
      g.removeEventListener('pageshow', back);
    };
  }

  // ---- admin (role: admin) -------------------------------------------------

  // → {slots, active, queued}; with limit, only the first queued, and
  // queued_total, how many wait in all.
  adminQueue({ limit } = {}) {
    return this._request('GET', '/v1/admin/queue', { query: { limit } });
  }

  adminStats(hours = 24) {
    return this._request('GET', '/v1/admin/stats', { query: { hours } });
  }

  // → {accounts: [{name, base_url, slots, used, up, reachable, …}]}
  adminAccounts() {
    return this._request('GET', '/v1/admin/accounts');
  }

  adminGrant(userId, amount, reason) {
    const body = { amount: Number(amount) };
    if (reason) body.reason = reason;
    return this._request('POST', `/v1/admin/users/${encodeURIComponent(userId)}/credits`, { json: body });
  }

  adminCancel(id) {
    return this._request('POST', `/v1/admin/jobs/${encodeURIComponent(jobId(id))}/cancel`);
  }
}

function jobId(jobOrId) {
  const id = jobOrId && typeof jobOrId === 'object' ? jobOrId.id : jobOrId;
  if (!id || typeof id !== 'string') throw new TypeError('fila: a job or a job id is needed');
  return id;
}

export default Fila;
