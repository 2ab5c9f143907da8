// The service worker's shell (www/sw.js `const SHELL = [...]`) lists every module the page and its
// workers load: a module left out is missing offline, and the app does not start there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const WWW = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../www');
const sw = readFileSync(path.join(WWW, 'sw.js'), 'utf8');
const shell = new Set([...(/const SHELL = \[([^\]]*)\]/.exec(sw)?.[1] ?? '').matchAll(/'([^']*)'/g)].map((m) => m[1]));

/** Every .js file under www/, relative to it, but the service worker and the dev server. */
function modules(dir = WWW) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'node_modules' || e.name === 'vendor' ? [] : modules(full);
    return e.name.endsWith('.js') ? [path.relative(WWW, full).split(path.sep).join('/')] : [];
  }).filter((p) => p !== 'sw.js');
}

test('every module of the app is in the service worker’s shell', () => {
  assert.ok(shell.size > 10, 'sw.js lists its shell');
  assert.deepEqual(modules().filter((p) => !shell.has(p)), []);
});
