// A site built for users (`./x dist`, without --test-hooks) carries none of the hooks the browser
// tests drive the app with: no window.cqaStudio, no harness page, and an engine worker that
// answers simulate-* requests as unknown ones. Built here into a scratch folder from the same
// wasm packages as dist/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { buildDist } from '../../scripts/dist.mjs';
import { openPage, scratchDir } from './launch.mjs';

let out, session, page;

before(async () => {
  out = scratchDir('cqa-production-');
  buildDist({ out, model: false });
  session = await openPage('?model=no-model.gguf', { server: { root: out } });
  page = session.page;
  await session.goto();
});

after(async () => {
  await session?.close();
});

test('the built files leave the test hooks out', () => {
  assert.equal(existsSync(path.join(out, 'harness.html')), false);
  assert.match(readFileSync(path.join(out, 'lib/test-hooks.js'), 'utf8'), /export const TEST_HOOKS = false;/);
});

test('the page has no window.cqaStudio, and its engine refuses simulate-* requests', { timeout: 120_000 }, async () => {
  await page.waitForFunction(() => document.getElementById('badge') !== null);
  assert.equal(await page.evaluate(() => typeof window.cqaStudio), 'undefined');
  assert.equal((await fetch(session.url('harness.html'))).status, 404);
  // A worker of the site's own engine, asked as a test build would be asked.
  const answer = await page.evaluate(() => new Promise((resolve) => {
    const w = new Worker(new URL('engine-worker.js', document.baseURI), { type: 'module' });
    w.onmessage = (e) => { if (e.data?.id === 1) { resolve(e.data); w.terminate(); } };
    w.postMessage({ type: 'simulate-hang', id: 1 });
  }));
  assert.equal(answer.type, 'error');
  assert.equal(answer.message, 'unknown request simulate-hang');
});
