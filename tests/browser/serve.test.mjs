// The development server (www/serve.mjs, serving dist/) survives hostile requests: inherited
// property names, NUL bytes, encoded traversal, symlinks out of dist/ and a foreign Host header
// (DNS rebinding); it sends the security headers and a file's precompressed copy when accepted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { symlinkSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from '../../www/serve.mjs';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist');
const LINK = path.join(DIST, 'test-link-out.txt');
// A real file inside dist/ whose brotli sibling is a symlink out of it.
const PLAIN = path.join(DIST, 'test-plain.js');
let server, port;

before(async () => {
  server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  port = server.address().port;
  rmSync(LINK, { force: true });
  symlinkSync('/etc/hostname', LINK);
  rmSync(PLAIN, { force: true });
  rmSync(`${PLAIN}.br`, { force: true });
  writeFileSync(PLAIN, 'export const inside = 1;\n');
  symlinkSync('/etc/passwd', `${PLAIN}.br`);
});

after(() => {
  rmSync(LINK, { force: true });
  rmSync(PLAIN, { force: true });
  rmSync(`${PLAIN}.br`, { force: true });
  server.close();
});

/** A raw GET (the path is sent as written, not normalised by a URL parser); resolves to its status. */
function get(rawPath, host = `127.0.0.1:${port}`) {
  return request(rawPath, { host }).then((r) => r.status);
}

function request(rawPath, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, headers: { host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}

test('hostile paths are refused and the server keeps serving', async () => {
  for (const p of ['/vendor/constructor', '/vendor/__proto__', '/vendor/toString', '/%00', '/index.html%00.js',
    '/..%2f..%2fetc/passwd', '/data/..%2f..%2f..%2fetc/passwd', '/%E0%A4%A', '/test-link-out.txt', '/node_modules/idb/package.json']) {
    const status = await get(p);
    assert.ok(status === 404, `${p}: ${status}`);
  }
  assert.equal(await get('/index.html'), 200);
  assert.equal(await get('/vendor/idb.js'), 200);
  assert.equal(await get('/'), 200);
});

test('the security headers go with every answer, and a precompressed copy when accepted', async () => {
  const plain = await request('/pkg/cqa_studio_bg.wasm', { 'accept-encoding': 'identity' });
  assert.equal(plain.status, 200);
  assert.equal(plain.headers['content-type'], 'application/wasm');
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.match(plain.headers['content-security-policy'], /connect-src 'self'/);
  assert.equal(plain.headers['cross-origin-embedder-policy'], 'require-corp');
  const br = await request('/pkg/cqa_studio_bg.wasm', { 'accept-encoding': 'gzip, deflate, br' });
  assert.equal(br.headers['content-encoding'], 'br');
  assert.equal(br.headers['content-type'], 'application/wasm');
  assert.ok(br.body.length < plain.body.length / 2, `${br.body.length} of ${plain.body.length}`);
  const gz = await request('/app.js', { 'accept-encoding': 'gzip;q=1, br;q=0' });
  assert.equal(gz.headers['content-encoding'], 'gzip');
  assert.equal((await request('/app.js', { 'accept-encoding': 'br;q=0' })).headers['content-encoding'], undefined);
});

test('only localhost names are answered', async () => {
  assert.equal(await get('/index.html', 'evil.example:8080'), 421);
  assert.equal(await get('/index.html', 'localhost.evil.example'), 421);
  assert.equal(await get('/index.html', `localhost:${port}`), 200);
  assert.equal(await get('/index.html', `[::1]:${port}`), 200);
});

test('a precompressed copy that is a symlink out of dist/ is never sent', async () => {
  const r = await request('/test-plain.js', { 'accept-encoding': 'br' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-encoding'], undefined);
  assert.equal(r.body.toString(), 'export const inside = 1;\n');
});
