// A plain static file server, as the browser tests' host for dist/: files under `root` at the
// URL prefix `base`, a Content-Type from the extension, Last-Modified and ETag validators, HEAD,
// and nothing else (no security headers, no precompressed copies, no rewrites). It stands for
// GitHub Pages, nginx or `python3 -m http.server` with the site in a sub-folder, so the tests
// prove that the site needs no more than that. `wasmType` replaces the .wasm Content-Type (a host
// that gets it wrong); `hidden` lists site paths to answer 404 for (a site without its model);
// `isolated` adds the two cross-origin isolation headers (a host configured from dist/_headers),
// which the threaded CPU engine needs.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = {
  '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm',
  '.json': 'application/json', '.jsonl': 'application/octet-stream', '.svg': 'image/svg+xml',
  '.gguf': 'application/octet-stream',
};

export function createStaticServer({ root, base = '/', wasmType = null, hidden = [], isolated = false }) {
  root = path.resolve(root);
  return http.createServer((req, res) => {
    const notFound = () => { res.statusCode = 404; res.end('not found'); };
    let pathname;
    try { pathname = decodeURIComponent(new URL(req.url, 'http://x').pathname); } catch { notFound(); return; }
    if (!pathname.startsWith(base) || pathname.includes('\0')) { notFound(); return; }
    if (hidden.includes(pathname.slice(base.length))) { notFound(); return; }
    let file = path.join(root, pathname.slice(base.length));
    if (file !== root && !file.startsWith(root + path.sep)) { notFound(); return; }
    fs.stat(file, (err, st) => {
      if (!err && st.isDirectory()) {
        // A folder without its trailing slash: redirect, as static servers do.
        if (!pathname.endsWith('/')) { res.statusCode = 301; res.setHeader('Location', `${pathname}/`); res.end(); return; }
        file = path.join(file, 'index.html');
        try { st = fs.statSync(file); } catch { notFound(); return; }
      } else if (err) { notFound(); return; }
      const ext = path.extname(file);
      const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
      res.setHeader('Content-Type', ext === '.wasm' && wasmType ? wasmType : TYPES[ext] || 'application/octet-stream');
      res.setHeader('Last-Modified', st.mtime.toUTCString());
      res.setHeader('ETag', etag);
      if (isolated) {
        res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
        res.setHeader('Cross-Origin-Embedder-Policy', 'require-corp');
      }
      if (req.headers['if-none-match'] === etag) { res.statusCode = 304; res.end(); return; }
      res.setHeader('Content-Length', st.size);
      if (req.method === 'HEAD') { res.end(); return; }
      fs.createReadStream(file).on('error', () => res.destroy()).pipe(res);
    });
  });
}
