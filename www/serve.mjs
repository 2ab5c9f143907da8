// Development server for the app: www/ at /, the wasm package at /pkg/, the default model at /models/,
// the repository's sample data at /data/, and the app's npm libraries (uPlot, idb, fflate) at
// /vendor/ straight from www/node_modules. It sends a Content-Security-Policy that forbids any
// request outside this origin, so the browser itself enforces that nothing leaves the machine.
// It answers only to localhost names, serves only its own table of files, never follows a
// symlink out of the served folders, and answers every bad request instead of throwing.
//
// /sw.js is served with the shell's version in place of `__SHELL_VERSION__`: a short hash of the
// shell's files (the list in sw.js), computed at startup and again whenever one of those files
// changes size or date, so the service worker's cache is named by content and any change to the
// shell installs a new version (sw.js explains the rest).
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modules = path.join(root, 'www', 'node_modules');
// /vendor/<name> → one file of an installed package (nothing else under node_modules is served).
// A Map, not an object: `/vendor/constructor` or `/vendor/__proto__` must not reach an inherited
// property.
const vendor = new Map([
  ['uPlot.esm.js', 'uplot/dist/uPlot.esm.js'],
  ['uPlot.min.css', 'uplot/dist/uPlot.min.css'],
  ['idb.js', 'idb/build/index.js'],
  ['fflate.js', 'fflate/esm/browser.js'],
]);
const mounts = [
  ['/pkg/', path.join(root, 'pkg')],
  ['/models/', path.join(root, 'models')],
  ['/data/', path.join(root, 'data')],
  ['/', path.join(root, 'www')],
];
const types = new Map(Object.entries({
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.svg': 'image/svg+xml',
  '.jsonl': 'application/jsonl; charset=utf-8', '.png': 'image/png', '.webmanifest': 'application/manifest+json',
  '.md': 'text/markdown; charset=utf-8',
}));
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";

// Only these names reach the server (DNS rebinding: a foreign page that resolves its own name to
// 127.0.0.1 sends its own Host header, and is refused).
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

function hostAllowed(header) {
  if (typeof header !== 'string') return false;
  const m = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec(header.trim().toLowerCase());
  return Boolean(m) && LOCAL_HOSTS.has(m[1]);
}

function resolve(urlPath) {
  let clean;
  try { clean = decodeURIComponent(String(urlPath).split('?')[0]); } catch { return null; }
  if (clean.includes('\0')) return null; // fs calls throw synchronously on NUL bytes
  if (clean.startsWith('/vendor/')) {
    const rel = vendor.get(clean.slice('/vendor/'.length));
    return rel ? path.join(modules, rel) : null;
  }
  for (const [prefix, dir] of mounts) {
    if (!clean.startsWith(prefix)) continue;
    const rel = clean.slice(prefix.length) || 'index.html';
    const file = path.resolve(dir, rel);
    if (file !== dir && !file.startsWith(dir + path.sep)) return null; // no escaping the mount
    if (prefix === '/' && file.startsWith(path.join(dir, 'node_modules') + path.sep)) return null;
    return file;
  }
  return null;
}

/** The real path of `file` if it stays inside one of the served roots (symlinks resolved). */
function insideRoots(file, done) {
  fs.realpath(file, (err, real) => {
    if (err) { done(null); return; }
    const roots = [...mounts.map(([, dir]) => dir), modules].map((dir) => {
      try { return fs.realpathSync(dir); } catch { return null; }
    }).filter(Boolean);
    done(roots.some((dir) => real === dir || real.startsWith(dir + path.sep)) ? real : null);
  });
}

// ---- the shell's version -------------------------------------------------------------------

const SW = path.join(root, 'www', 'sw.js');
const SW_REAL = (() => { try { return fs.realpathSync(SW); } catch { return SW; } })();
const PLACEHOLDER = '__SHELL_VERSION__';

/** The URL paths of the shell, as sw.js lists them in `const SHELL = [ … ];`. */
export function shellPaths(swText = fs.readFileSync(SW, 'utf8')) {
  const m = /const SHELL = \[([^\]]*)\]/.exec(swText);
  if (!m) throw new Error('sw.js has no `const SHELL = [...]` list');
  return [...m[1].matchAll(/'([^']+)'/g)].map((x) => x[1]);
}

let memo = null; // {stamp, version}

/**
 * A short hash (12 hex digits) of the shell's files: each path and its bytes (a file that cannot
 * be read counts as missing). Recomputed only when a file's size or date changed.
 */
export function shellVersion() {
  const files = shellPaths().map((p) => [p, resolve(p)]);
  const stamp = files.map(([p, f]) => {
    try { const st = fs.statSync(f); return `${p}:${st.size}:${st.mtimeMs}`; } catch { return `${p}:-`; }
  }).join('|');
  if (memo && memo.stamp === stamp) return memo.version;
  const hash = crypto.createHash('sha256');
  for (const [p, f] of files) {
    hash.update(`${p}\0`);
    try { hash.update(fs.readFileSync(f)); } catch { hash.update('\0missing\0'); }
    hash.update('\0');
  }
  memo = { stamp, version: hash.digest('hex').slice(0, 12) };
  return memo.version;
}

function serveWorker(req, res, file, version) {
  fs.readFile(file, 'utf8', (err, text) => {
    if (err) { fail(res); return; }
    const body = Buffer.from(text.replaceAll(PLACEHOLDER, version));
    const etag = `"sw-${version}-${crypto.createHash('sha256').update(body).digest('hex').slice(0, 12)}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Content-Type', 'text/javascript');
    if (req.headers['if-none-match'] === etag) { res.statusCode = 304; res.end(); return; }
    res.setHeader('Content-Length', body.length);
    res.end(req.method === 'HEAD' ? undefined : body);
  });
}

function fail(res, status = 404, text = 'not found') {
  if (res.headersSent) { res.destroy(); return; }
  res.statusCode = status;
  res.end(text);
}

/** One request; every error is answered (or the connection dropped), never thrown. */
function handle(req, res, options) {
  res.setHeader('Content-Security-Policy', CSP);
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
  res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
  res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
  if (!hostAllowed(req.headers.host)) { fail(res, 421, 'this server answers only to localhost'); return; }
  const file = resolve(req.url);
  if (!file) { fail(res); return; }
  insideRoots(file, (real) => {
    if (!real) { fail(res); return; }
    if (real === SW_REAL) { serveWorker(req, res, real, options.shellVersion()); return; }
    serveFile(req, res, real);
  });
}

function serveFile(req, res, file) {
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) { fail(res); return; }
    // A weak validator from size and mtime: the service worker and the HTTP cache revalidate
    // cheaply instead of downloading the 40 MB engine again.
    const etag = `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    res.setHeader('ETag', etag);
    res.setHeader('Last-Modified', st.mtime.toUTCString());
    res.setHeader('Cache-Control', 'no-cache');
    res.setHeader('Content-Type', types.get(path.extname(file)) || 'application/octet-stream');
    if (req.headers['if-none-match'] === etag) { res.statusCode = 304; res.end(); return; }
    res.setHeader('Content-Length', st.size);
    if (req.method === 'HEAD') { res.end(); return; }
    const stream = fs.createReadStream(file);
    stream.on('error', () => fail(res, 500, 'read error'));
    stream.pipe(res);
  });
}

/**
 * The server. `options.shellVersion`: a function giving the version written into /sw.js
 * (default: `shellVersion`, the shell's content hash; tests pass their own to stage an update).
 */
export function createServer(options = {}) {
  const opts = { shellVersion, ...options };
  opts.shellVersion(); // hashed at startup
  return http.createServer((req, res) => {
    try {
      handle(req, res, opts);
    } catch {
      fail(res, 500, 'server error');
    }
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 8080;
  createServer().listen(port, '127.0.0.1', () => console.log(`cqa-studio on http://localhost:${port}/`));
}
