// Static server for the app: www/ at /, the wasm package at /pkg/, the default model at /models/.
// It sends a Content-Security-Policy that forbids any request outside this origin, so the
// browser itself enforces that nothing leaves the machine.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const mounts = [
  ['/pkg/', path.join(root, 'pkg')],
  ['/models/', path.join(root, 'models')],
  ['/', path.join(root, 'www')],
];
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.mjs': 'text/javascript',
  '.css': 'text/css', '.wasm': 'application/wasm', '.json': 'application/json', '.svg': 'image/svg+xml',
};
const CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; img-src 'self' data:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";

function resolve(urlPath) {
  const clean = decodeURIComponent(urlPath.split('?')[0]);
  for (const [prefix, dir] of mounts) {
    if (!clean.startsWith(prefix)) continue;
    let rel = clean.slice(prefix.length) || 'index.html';
    const file = path.resolve(dir, rel);
    if (file !== dir && !file.startsWith(dir + path.sep)) return null; // no escaping the mount
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
    if (!file) { res.statusCode = 404; res.end('not found'); return; }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile()) { res.statusCode = 404; res.end('not found'); return; }
      res.setHeader('Content-Type', types[path.extname(file)] || 'application/octet-stream');
      res.setHeader('Content-Length', st.size);
      res.setHeader('Cache-Control', 'no-cache');
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
