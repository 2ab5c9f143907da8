// The engine worker's requests are listed once (www/lib/engine-requests.js): the worker's handler
// table names exactly those, the watchdog times the long ones, and the test-only ones are left
// out of a build without the test hooks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ENGINE_CONTROLS, ENGINE_REQUESTS, CONCURRENT, WATCHED, requestNames } from '../../www/lib/engine-requests.js';

const worker = readFileSync(new URL('../../www/engine-worker.js', import.meta.url), 'utf8');

/** The keys of the object literal passed to `const NAME = allowList({ … });` in the worker. */
function handlerKeys(name) {
  const m = new RegExp(`const ${name} = allowList\\(\\{([^]*?)\\n\\}\\);`).exec(worker);
  assert.ok(m, `engine-worker.js has no \`const ${name} = allowList({…})\``);
  // Keys sit at two spaces (four inside the test-hooks spread); statements in method bodies are
  // not keys.
  const keywords = new Set(['if', 'const', 'let', 'return', 'for', 'await']);
  return [...m[1].matchAll(/^ {2}(?: {2})?(?:'([\w-]+)'|(\w+))\s*(?:[:(,]|$)/gm)].map((x) => x[1] || x[2]).filter((k) => !keywords.has(k)).sort();
}

test('the worker handles exactly the listed requests and controls', () => {
  assert.deepEqual(handlerKeys('requests'), Object.keys(ENGINE_REQUESTS).sort());
  assert.deepEqual(handlerKeys('controls'), [...ENGINE_CONTROLS].sort());
});

test('the watchdog times the long requests; the quick ones run beside a job', () => {
  for (const name of ['load', 'generate', 'compare', 'judge', 'train', 'calibrate', 'agreement', 'shift', 'check-adapter', 'simulate-hang']) {
    assert.ok(WATCHED.has(name), name);
  }
  assert.deepEqual([...CONCURRENT].sort(), ['gpu-stats', 'init-device', 'simulate-crash', 'simulate-device-loss']);
  assert.equal([...WATCHED].filter((n) => CONCURRENT.has(n)).length, 0);
});

test('a build without the test hooks answers no simulate-* request', () => {
  assert.deepEqual(requestNames(false).filter((n) => n.startsWith('simulate-')), []);
  assert.deepEqual(requestNames(true).filter((n) => n.startsWith('simulate-')).sort(), ['simulate-crash', 'simulate-device-loss', 'simulate-hang']);
});
