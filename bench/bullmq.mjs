#!/usr/bin/env node
// bench/bullmq.mjs — the alternative to fila's queue, measured the way
// bench/all measures fila: BullMQ on a Redis that bench/all started.
//
//   node bench/bullmq.mjs --port PORT [--adds N] [--producers 64]
//                         [--drain 5000] [--concurrency 3]
//
// (a) add: PRODUCERS concurrent loops call queue.add until N jobs are added
//     (fila's durable submit: same count, same number of producers); the
//     latency of each add is timed.
// (b) drain: a Worker at CONCURRENCY with a no-op processor is started,
//     then PRODUCERS loops add DRAIN jobs; the clock runs from the first add
//     to the last job completed (fila's 5,000 jobs through 3 slots).
//
// Prints one JSON object on stdout. Redis's durability is set by how it was
// started (appendfsync always / everysec), not here.
import { performance } from 'node:perf_hooks';
import { Queue, Worker } from 'bullmq';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const port = arg('port', 6379);
const adds = arg('adds', 5000);
const producers = arg('producers', 64);
const drainN = arg('drain', 5000);
const concurrency = arg('concurrency', 3);
const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };

// A job shaped like fila's: who, which tool, which upload.
const data = (i) => ({ user: `u${i}`, tool: 'upscaler', variant: 'pro',
  inputs: { image: `upl_${i.toString(16).padStart(24, '0')}` } });

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

// LOOPS concurrent loops sharing one counter, like 64 connections of
// closed-loop clients; returns each add's latency in ms.
async function addAll(queue, n, loops) {
  const lat = [];
  let next = 0;
  await Promise.all(Array.from({ length: loops }, async () => {
    while (next < n) {
      const i = next++;
      const t = performance.now();
      await queue.add('job', data(i));
      lat.push(performance.now() - t);
    }
  }));
  return lat;
}

async function benchAdd() {
  const queue = new Queue('bench-add', { connection });
  await queue.waitUntilReady();
  await queue.add('warm', data(0)); // scripts loaded, connection warm
  const t0 = performance.now();
  const lat = await addAll(queue, adds, producers);
  const s = (performance.now() - t0) / 1000;
  await queue.close();
  lat.sort((a, b) => a - b);
  return { n: adds, producers, seconds: s, rate: adds / s,
    p50_ms: quantile(lat, 0.5), p99_ms: quantile(lat, 0.99), max_ms: lat[lat.length - 1] };
}

async function benchDrain() {
  const queue = new Queue('bench-drain', { connection });
  await queue.waitUntilReady();
  let done = 0;
  let t0 = 0;
  let finish;
  const all = new Promise((r) => { finish = r; });
  const worker = new Worker('bench-drain', async () => {}, { connection, concurrency });
  worker.on('completed', () => { if (++done === drainN) finish(performance.now()); });
  worker.on('failed', (job, err) => { process.stderr.write(`bullmq: job failed: ${err}\n`); });
  await worker.waitUntilReady();
  t0 = performance.now();
  const lat = await addAll(queue, drainN, producers);
  const tAdded = performance.now();
  const t1 = await all;
  const counts = await queue.getJobCounts('completed', 'failed', 'wait', 'active');
  await worker.close();
  await queue.close();
  const s = (t1 - t0) / 1000;
  return { n: drainN, concurrency, seconds: s, rate: drainN / s, add_seconds: (tAdded - t0) / 1000,
    add_p99_ms: quantile(lat.sort((a, b) => a - b), 0.99), counts };
}

// --adds 0 or --drain 0 leaves that part out: bench/all runs both a part
// at a time, by turns with fila's submits and fila's drain.
const out = {};
if (adds > 0) out.add = await benchAdd();
if (drainN > 0) out.drain = await benchDrain();
process.stdout.write(JSON.stringify(out) + '\n');
process.exit(0);
