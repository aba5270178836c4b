#!/usr/bin/env node
// bench/pgboss.mjs — fila's alternative on PostgreSQL, measured the way
// bench/all measures fila there: pg-boss `send` on the database of the
// throwaway cluster the suite started.
//
//   node bench/pgboss.mjs --url URL --sends N [--senders 64] [--max 10]
//                         [--schema pgboss] [--wait 1]
//
// SENDERS concurrent loops call boss.send(queue, data) until N jobs are
// sent (fila's durable submit: same count, same number of concurrent
// clients); the latency of each send is timed. pg-boss runs with its
// default pool of MAX connections (10) and, so that nothing else of it
// competes with the sends, without its supervisor and scheduler. Each send
// is one INSERT, its own transaction (one commit, one WAL flush unless it
// shares one with others in flight).
//
// Prints one JSON object on stdout (after "ready" with --wait 1). The database's durability is the
// cluster's (fsync and synchronous_commit on), not set here.
import { performance } from 'node:perf_hooks';
import PgBoss from 'pg-boss';

const opt = { url: null, sends: 5000, senders: 64, max: 10, schema: 'pgboss', wait: 0 };
for (let i = 2; i < process.argv.length; i += 2) {
  const k = process.argv[i].replace(/^--/, '');
  if (!(k in opt)) { process.stderr.write(`pgboss.mjs: unknown argument ${process.argv[i]}\n`); process.exit(2); }
  opt[k] = typeof opt[k] === 'number' ? Number(process.argv[i + 1]) : process.argv[i + 1];
}
if (!opt.url) { process.stderr.write('pgboss.mjs: --url is required\n'); process.exit(2); }

// A job shaped like fila's: who, which tool, which upload.
const data = (i) => ({ user: `u${i}`, tool: 'upscaler', variant: 'pro',
  inputs: { image: `upl_${i.toString(16).padStart(24, '0')}` } });

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

const boss = new PgBoss({ connectionString: opt.url, schema: opt.schema, max: opt.max,
  supervise: false, schedule: false });
boss.on('error', (e) => process.stderr.write(`pg-boss: ${e.message}\n`));
await boss.start(); // creates its schema
const queue = 'bench';
await boss.createQueue(queue);
// Warm: every pooled connection opened and the statement seen once.
await Promise.all(Array.from({ length: opt.max }, (_, i) => boss.send(queue, data(i))));
// With --wait: say "ready" and start on a line on stdin, so the caller can
// read the database's counters just before the sends.
if (opt.wait) {
  process.stdout.write('ready\n');
  await new Promise((r) => process.stdin.once('data', r));
  process.stdin.pause();
}

const lat = [];
let next = 0;
let failed = 0;
const cpu0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(Array.from({ length: opt.senders }, async () => {
  while (next < opt.sends) {
    const i = next++;
    const t = performance.now();
    const id = await boss.send(queue, data(i)).catch((e) => {
      if (failed++ === 0) process.stderr.write(`pg-boss send: ${e.message}\n`);
      return null;
    });
    if (id) lat.push(performance.now() - t);
  }
}));
const s = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0); // the sends' own
await boss.stop({ graceful: false, wait: true });
lat.sort((a, b) => a - b);
process.stdout.write(JSON.stringify({ n: opt.sends, sent: lat.length, failed, senders: opt.senders, pool: opt.max,
  seconds: s, rate: lat.length / s, p50_ms: quantile(lat, 0.5), p99_ms: quantile(lat, 0.99), max_ms: lat[lat.length - 1],
  node_cpu_s: (cpu.user + cpu.system) / 1e6 }) + '\n');
process.exit(0);
