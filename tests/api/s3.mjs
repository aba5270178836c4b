// s3.mjs — a local S3 for tests: s3rver (npm) on a free loopback port with
// a temporary directory and one bucket, behind a front that checks AWS
// Signature V4 the way S3 does. s3rver 3.7.1 checks only the access key id
// of a V4 request, never its signature, so a client signing wrongly would
// pass; the front recomputes every signature (and the payload's SHA-256
// against x-amz-content-sha256) and answers S3's own errors, so a wrong
// secret, a wrong region or a body that is not the one signed fails.
//
//   import { startS3 } from './s3.mjs';
//   const s3 = await startS3();   // {endpoint, bucket, region, accessKey,
//   ...                           //  secretKey, dir, requests, stop()}
//   await s3.stop();
//
// Run as a program (`node tests/api/s3.mjs [--bucket NAME]`), it prints the
// same fields as one JSON line and serves until SIGTERM, SIGINT or the end
// of its standard input: the C unit tests start it that way.
//
// s3rver is found through FILA_S3RVER (its bin, e.g.
// /x/node_modules/.bin/s3rver, or its package directory), else in the
// repository's node_modules.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');

// The s3rver package, loaded from FILA_S3RVER or the repository.
function loadS3rver() {
  const env = process.env.FILA_S3RVER;
  if (env) {
    let p = fs.realpathSync(env);
    // .bin/s3rver links to <pkg>/bin/s3rver.js
    if (fs.statSync(p).isFile()) p = path.dirname(path.dirname(p));
    return createRequire(path.join(p, 'package.json'))(p);
  }
  try {
    return createRequire(path.join(repo, 'package.json'))('s3rver');
  } catch (e) {
    throw new Error(
      's3rver not found: npm install (package.json devDependency "s3rver"), ' +
        'or set FILA_S3RVER to its bin or package directory',
    );
  }
}

// ---- Signature V4, as S3 checks it ----------------------------------------

const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();

// RFC 3986 encoding of everything but the unreserved characters.
function uriEncode(s) {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase(),
  );
}

// The path as S3 canonicalises it: each segment decoded, encoded again.
function canonicalUri(rawPath) {
  return rawPath
    .split('/')
    .map((seg) => uriEncode(decodeURIComponent(seg)))
    .join('/');
}

function canonicalQuery(rawQuery) {
  if (!rawQuery) return '';
  return rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const i = p.indexOf('=');
      const k = decodeURIComponent((i < 0 ? p : p.slice(0, i)).replace(/\+/g, ' '));
      const v = i < 0 ? '' : decodeURIComponent(p.slice(i + 1).replace(/\+/g, ' '));
      return [uriEncode(k), uriEncode(v)];
    })
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1))
    .map(([k, v]) => `${k}=${v}`)
    .join('&');
}

// The signature of a request (method, raw path with query, headers as a
// lower-cased object of strings) for the given signed headers.
export function sigv4Signature({ method, url, headers }, { secretKey, date, region, service, signedHeaders }) {
  const q = url.indexOf('?');
  const canonical = [
    method,
    canonicalUri(q < 0 ? url : url.slice(0, q)),
    canonicalQuery(q < 0 ? '' : url.slice(q + 1)),
    signedHeaders.map((h) => `${h}:${String(headers[h] ?? '').trim().replace(/\s+/g, ' ')}\n`).join(''),
    signedHeaders.join(';'),
    headers['x-amz-content-sha256'],
  ].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', headers['x-amz-date'], scope, sha256(canonical)].join('\n');
  let key = hmac('AWS4' + secretKey, date);
  key = hmac(key, region);
  key = hmac(key, service);
  key = hmac(key, 'aws4_request');
  return crypto.createHmac('sha256', key).update(toSign).digest('hex');
}

class S3Refusal extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Throws an S3Refusal unless req (with its whole body) is signed as S3 wants.
function checkSigned(req, body, { accessKey, secretKey, region }) {
  const h = req.headers;
  const auth = h.authorization || '';
  const m = /^AWS4-HMAC-SHA256 Credential=([^/,]+)\/(\d{8})\/([^/,]+)\/s3\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m) throw new S3Refusal(403, 'AccessDenied', 'not signed with AWS Signature V4');
  const [, key, date, reqRegion, signed, signature] = m;
  if (key !== accessKey) throw new S3Refusal(403, 'InvalidAccessKeyId', 'unknown access key');
  if (reqRegion !== region) throw new S3Refusal(400, 'AuthorizationHeaderMalformed', `region ${reqRegion}, expected ${region}`);
  const amzDate = h['x-amz-date'] || '';
  const t = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!t || amzDate.slice(0, 8) !== date) throw new S3Refusal(403, 'AccessDenied', 'bad x-amz-date');
  const when = Date.UTC(+t[1], +t[2] - 1, +t[3], +t[4], +t[5], +t[6]);
  if (Math.abs(Date.now() - when) > 15 * 60 * 1000) throw new S3Refusal(403, 'RequestTimeTooSkewed', 'x-amz-date too far from now');
  const payload = h['x-amz-content-sha256'];
  if (!payload) throw new S3Refusal(400, 'InvalidRequest', 'Missing required header for this request: x-amz-content-sha256');
  if (payload !== 'UNSIGNED-PAYLOAD' && payload !== sha256(body)) {
    throw new S3Refusal(400, 'XAmzContentSHA256Mismatch', "The provided 'x-amz-content-sha256' header does not match what was computed.");
  }
  const signedHeaders = signed.split(';');
  for (const need of ['host', 'x-amz-date', 'x-amz-content-sha256']) {
    if (!signedHeaders.includes(need)) throw new S3Refusal(403, 'AccessDenied', `${need} is not signed`);
  }
  for (const name of Object.keys(h)) {
    if (name.startsWith('x-amz-') && !signedHeaders.includes(name)) {
      throw new S3Refusal(403, 'AccessDenied', `${name} is not signed`);
    }
  }
  const want = sigv4Signature(
    { method: req.method, url: req.url, headers: h },
    { secretKey, date, region, service: 's3', signedHeaders },
  );
  if (!crypto.timingSafeEqual(Buffer.from(want), Buffer.from(signature))) {
    throw new S3Refusal(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided.');
  }
}

function refuse(res, e) {
  const xml = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Error><Code>${e.code}</Code><Message>${e.message}</Message></Error>`;
  res.writeHead(e.status, { 'Content-Type': 'application/xml', 'Content-Length': Buffer.byteLength(xml) });
  res.end(xml);
}

const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'expect', 'authorization', 'host']);

// Forward a checked request to s3rver, anonymously (the front did the auth).
function forward(req, body, res, backend) {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
  headers['content-length'] = String(body.length);
  const up = http.request({ host: '127.0.0.1', port: backend, method: req.method, path: req.url, headers }, (r) => {
    const out = {};
    for (const [k, v] of Object.entries(r.headers)) if (k !== 'connection' && k !== 'keep-alive') out[k] = v;
    res.writeHead(r.statusCode, out);
    r.pipe(res);
  });
  up.on('error', (e) => refuse(res, new S3Refusal(502, 'InternalError', String(e))));
  up.end(body);
}

// ---- the server ---------------------------------------------------------

export async function startS3({ bucket = 'fila-test', accessKey = 'S3RVER', secretKey = 'S3RVER', region = 'us-east-1' } = {}) {
  const S3rver = loadS3rver();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fila-s3-'));
  const s3rver = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: dir,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  const inner = await s3rver.run();
  const requests = [];
  const ctl = { holdMs: 0 }; // PUTs wait this long before they are stored
  const front = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const seen = { method: req.method, url: req.url, headers: req.headers, size: body.length, refused: null };
      requests.push(seen);
      try {
        checkSigned(req, body, { accessKey, secretKey, region });
      } catch (e) {
        if (!(e instanceof S3Refusal)) throw e;
        seen.refused = e.code;
        return refuse(res, e);
      }
      if (req.method === 'PUT' && ctl.holdMs > 0) setTimeout(() => forward(req, body, res, inner.port), ctl.holdMs);
      else forward(req, body, res, inner.port);
    });
  });
  await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve));
  const { port } = front.address();
  let stopped = false;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    bucket,
    region,
    accessKey,
    secretKey,
    dir,
    requests,
    // Hold each PUT ms before storing it (0: at once).
    hold(ms) { ctl.holdMs = ms; },
    async stop() {
      if (stopped) return;
      stopped = true;
      front.closeAllConnections?.();
      await new Promise((resolve) => front.close(resolve));
      await s3rver.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---- as a program ---------------------------------------------------------

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--bucket');
  const s3 = await startS3(i > 0 ? { bucket: process.argv[i + 1] } : {});
  const { endpoint, bucket, region, accessKey, secretKey, dir } = s3;
  process.stdout.write(JSON.stringify({ endpoint, bucket, region, accessKey, secretKey, dir }) + '\n');
  const quit = () => s3.stop().then(() => process.exit(0));
  process.on('SIGTERM', quit);
  process.on('SIGINT', quit);
  process.stdin.on('end', quit);
  process.stdin.resume();
}
