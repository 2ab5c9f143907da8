// Development server for the app: serves the built site, dist/ (`./x dist` makes it), exactly as
// a static host would, plus the headers a careful host adds: a Content-Security-Policy that
// forbids any request outside this origin (the page carries the same policy in a <meta> tag; the
// header also covers the workers), nosniff, and cross-origin isolation. Where the browser accepts
// it, a file's precompressed copy (.br, .gz) is sent instead, as such hosts do.
// It answers only to localhost names, serves only files inside dist/, never follows a symlink out
// of it (a precompressed copy's own path included), and answers every bad request instead of throwing.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SECURITY_HEADERS } from '../scripts/dist.mjs';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist');
export const TYPES = new Map(Object.entries({
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.svg': 'image/svg+xml',
  '.jsonl': 'application/jsonl; charset=utf-8', '.png': 'image/png', '.webmanifest': 'application/manifest+json',
  '.md': 'text/markdown; charset=utf-8',
}));

// Only these names reach the server (DNS rebinding: a foreign page that resolves its own name to
// 127.0.0.1 sends its own Host header, and is refused).
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function hostAllowed(header) {
  if (typeof header !== 'string') return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(header.trim().toLowerCase());
  return Boolean(m) && LOCAL_HOSTS.has(m[1]);
}

/** The file under `root` for a URL path, or null (outside it, or not a path at all). */
function resolve(root, urlPath) {
  let clean;
  try { clean = decodeURIComponent(String(urlPath).split('?')[0]); } catch { return null; }
  if (clean.includes('\0') || !clean.startsWith('/')) return null; // fs calls throw on NUL bytes
  const rel = clean.slice(1);
  const file = path.resolve(root, rel.endsWith('/') || rel === '' ? `${rel}index.html` : rel);
  if (file !== root && !file.startsWith(root + path.sep)) return null; // no escaping the root
  return file;
}

function fail(res, status = 404, text = 'not found') {
  if (res.headersSent) { res.destroy(); return; }
  res.statusCode = status;
  res.end(text);
}

/** The content codings the request accepts (q > 0), lower case. */
function acceptedCodings(header) {
  const out = new Set();
  for (const part of String(header || '').split(',')) {
    const [name, ...params] = part.trim().toLowerCase().split(';').map((x) => x.trim());
    const q = params.find((x) => x.startsWith('q='));
    if (name && !(q && !(Number(q.slice(2)) > 0))) out.add(name);
  }
  return out;
}

/** Whether `real` (a resolved path) lies inside `realRoot`. */
const inside = (real, realRoot) => real === realRoot || real.startsWith(realRoot + path.sep);

/**
 * The precompressed copy to send for `file`, if the browser accepts it and it exists. The copy's
 * own real path is checked too: `x.js` inside dist/ says nothing about a symlinked `x.js.br`.
 */
function precompressed(req, file, realRoot) {
  const accepts = acceptedCodings(req.headers['accept-encoding']);
  for (const [token, ext] of [['br', '.br'], ['gzip', '.gz']]) {
    if (!accepts.has(token)) continue;
    try {
      const real = fs.realpathSync(file + ext);
      if (!inside(real, realRoot)) continue;
      const st = fs.statSync(real);
      if (st.isFile()) return { token, file: real, st };
    } catch { /* no such copy */ }
  }
  return null;
}

function serveFile(req, res, file, realRoot) {
  fs.realpath(file, (err, real) => {
    if (err || !inside(real, realRoot)) { fail(res); return; }
    fs.stat(real, (err2, st) => {
      if (err2 || !st.isFile()) { fail(res); return; }
      const packed = precompressed(req, real, realRoot);
      const body = packed ? packed.file : real;
      const stat = packed ? packed.st : st;
      // A weak validator from size and mtime: the service worker and the HTTP cache revalidate
      // cheaply instead of downloading the engine again.
      const etag = `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}${packed ? `-${packed.token}` : ''}"`;
      res.setHeader('ETag', etag);
      res.setHeader('Last-Modified', stat.mtime.toUTCString());
      res.setHeader('Cache-Control', 'no-cache');
      res.setHeader('Content-Type', TYPES.get(path.extname(real)) || 'application/octet-stream');
      res.setHeader('Vary', 'Accept-Encoding');
      if (packed) res.setHeader('Content-Encoding', packed.token);
      if (req.headers['if-none-match'] === etag) { res.statusCode = 304; res.end(); return; }
      res.setHeader('Content-Length', stat.size);
      if (req.method === 'HEAD') { res.end(); return; }
      const stream = fs.createReadStream(body);
      stream.on('error', () => fail(res, 500, 'read error'));
      stream.pipe(res);
    });
  });
}

/** One request; every error is answered (or the connection dropped), never thrown. */
function handle(req, res, root, realRoot) {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
  if (!hostAllowed(req.headers.host)) { fail(res, 421, 'this server answers only to localhost'); return; }
  if (req.method !== 'GET' && req.method !== 'HEAD') { fail(res, 405, 'method not allowed'); return; }
  const file = resolve(root, req.url);
  if (!file) { fail(res); return; }
  serveFile(req, res, file, realRoot);
}

/** The server for the site in `options.root` (default: dist/ of this repository). */
export function createServer({ root = DIST } = {}) {
  const dir = path.resolve(root);
  if (!fs.existsSync(path.join(dir, 'index.html'))) throw new Error(`${dir} has no index.html: build the site first (./x dist)`);
  const realRoot = fs.realpathSync(dir);
  return http.createServer((req, res) => {
    try {
      handle(req, res, dir, realRoot);
    } catch {
      fail(res, 500, 'server error');
    }
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 8080;
  try {
    createServer().listen(port, '127.0.0.1', () => console.log(`cqa-studio on http://localhost:${port}/`));
  } catch (e) {
    console.error(e.message);
    process.exit(1);
  }
}
