// The development server survives hostile requests: inherited property names, NUL bytes, encoded
// traversal, symlinks out of the served folders and a foreign Host header (DNS rebinding).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { symlinkSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from '../../www/serve.mjs';

const WWW = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../www');
const LINK = path.join(WWW, 'test-link-out.txt');
let server, port;

before(async () => {
  server = createServer();
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  port = server.address().port;
  rmSync(LINK, { force: true });
  symlinkSync('/etc/hostname', LINK);
});

after(() => {
  rmSync(LINK, { force: true });
  server.close();
});

/** A raw GET (the path is sent as written, not normalised by a URL parser). */
function get(rawPath, host = `127.0.0.1:${port}`) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: rawPath, headers: { host } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
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
});

test('only localhost names are answered', async () => {
  assert.equal(await get('/index.html', 'evil.example:8080'), 421);
  assert.equal(await get('/index.html', 'localhost.evil.example'), 421);
  assert.equal(await get('/index.html', `localhost:${port}`), 200);
  assert.equal(await get('/index.html', `[::1]:${port}`), 200);
});
