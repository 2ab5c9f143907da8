// Static server for the app: www/ at /, the wasm package at /pkg/, the default model at /models/,
// the repository's sample data at /data/, and the app's npm libraries (uPlot, idb, fflate) at
// /vendor/ straight from www/node_modules. It sends a Content-Security-Policy that forbids any
// request outside this origin, so the browser itself enforces that nothing leaves the machine.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const modules = path.join(root, 'www', 'node_modules');
// /vendor/<name> → one file of an installed package (nothing else under node_modules is served).
const vendor = {
  'uPlot.esm.js': 'uplot/dist/uPlot.esm.js',
  'uPlot.min.css': 'uplot/dist/uPlot.min.css',
  'idb.js': 'idb/build/index.js',
  'fflate.js': 'fflate/esm/browser.js',
};
const mounts = [
  ['/pkg/', path.join(root, 'pkg')],
  ['/models/', path.join(root, 'models')],
  ['/data/', path.join(root, 'data')],
  ['/', path.join(root, 'www')],
];
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.svg': 'image/svg+xml',
  '.jsonl': 'application/jsonl; charset=utf-8', '.png': 'image/png', '.webmanifest': 'application/manifest+json',
  '.md': 'text/markdown; charset=utf-8',
};
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; img-src 'self' data: blob:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";

function resolve(urlPath) {
  let clean;
  try { clean = decodeURIComponent(urlPath.split('?')[0]); } catch { return null; }
  if (clean.startsWith('/vendor/')) {
    const rel = vendor[clean.slice('/vendor/'.length)];
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

export function createServer() {
  return http.createServer((req, res) => {
    const file = resolve(req.url);
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    if (!file) { res.statusCode = 404; res.end('not found'); return; }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) { res.statusCode = 404; res.end('not found'); return; }
      // A weak validator from size and mtime: the service worker and the HTTP cache revalidate
      // cheaply instead of downloading the 40 MB engine again.
      const etag = `W/"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
      res.setHeader('ETag', etag);
      res.setHeader('Cache-Control', 'no-cache');
      res.setHeader('Content-Type', types[path.extname(file)] || 'application/octet-stream');
      if (req.headers['if-none-match'] === etag) { res.statusCode = 304; res.end(); return; }
      res.setHeader('Content-Length', st.size);
      if (req.method === 'HEAD') { res.end(); return; }
      fs.createReadStream(file).pipe(res);
    });
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 8080;
  createServer().listen(port, '127.0.0.1', () => console.log(`cqa-studio on http://localhost:${port}/`));
}
