#!/usr/bin/env node
// bench/bare.mjs — the alternative fila's SSE fan-out is measured against:
// an SSE server in Node.js that keeps nothing but its open responses, the
// way a fan-out is often first written. It stores no job, writes no log and
// checks no token, so a queue move costs it little more than handing each
// stream its event: what the sends alone cost, without fila's guarantees.
//
//   node bench/bare.mjs PORT
//   GET  /v1/events?job=ID   a stream; streams queue up in the order opened,
//                            the first is the running job
//   POST /move               the running job leaves: the next one gets a
//                            "starting" event, every other its new position
//
// Each event is a job JSON of the size and shape fila sends, chunked as
// fila sends it (HTTP/1.1 chunked, one chunk per event).
import http from 'node:http';

const port = Number(process.argv[2]);
if (!(port > 0)) {
  process.stderr.write('usage: node bench/bare.mjs PORT\n');
  process.exit(2);
}

const queue = []; // {res, job}, the running job first
let lastId = 0;

function job(id) {
  const t = new Date().toISOString();
  return { id, user_id: `user-of-${id}`, tool: 'pose_changer', variant: null,
    status: 'queued', position: null,
    inputs: { person: 'upl_0123456789abcdef01234567', reference: 'upl_0123456789abcdef01234567' },
    outputs: [], error: null, cost: 2, credits_charged: true, credits_refunded: false,
    provider_task_id: null, session_id: null, created_at: t, started_at: null,
    finished_at: null, updated_at: t };
}

function send(s) {
  s.res.write(`id: ${++lastId}\nevent: job\ndata: ${JSON.stringify(s.job)}\n\n`);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://bare');
  if (req.method === 'GET' && url.pathname === '/v1/events') {
    const s = { res, job: job(url.searchParams.get('job') || `job_${queue.length}`) };
    s.job.position = queue.length || null;
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    res.write('retry: 2000\n\n');
    queue.push(s);
    req.socket.setNoDelay(true);
    res.on('close', () => {
      const i = queue.indexOf(s);
      if (i >= 0) queue.splice(i, 1);
    });
    return;
  }
  if (req.method === 'POST' && url.pathname === '/move') {
    queue.shift();
    queue.forEach((s, k) => {
      if (k === 0) {
        s.job.status = 'starting';
        s.job.position = null;
      } else {
        s.job.position = k;
      }
      s.job.updated_at = new Date().toISOString();
      send(s);
    });
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end('{"ok":true}');
    return;
  }
  if (req.method === 'GET' && url.pathname === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ ok: true, streams: queue.length }));
    return;
  }
  res.writeHead(404);
  res.end();
});
server.keepAliveTimeout = 0;
server.headersTimeout = 0;
server.requestTimeout = 0;
server.maxConnections = Infinity;
server.listen(port, '127.0.0.1', () => process.stdout.write(`bare listening on ${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));
