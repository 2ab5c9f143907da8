// The built site (dist/) on a plain static host, at a sub-path, with the host's mistakes: every
// request stays inside the site's folder; the Content-Security-Policy of index.html's <meta> tag
// holds without any header (no foreign request, no inline script); a host that serves the wasm
// with the wrong MIME type still gets a working engine, quietly; a site without the default model
// says so in a sentence and offers the file picker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { BASE, DIST, openPage } from './launch.mjs';
import { DEFAULT_MODEL } from '../../scripts/dist.mjs';

let session, page, origin, requests;
const pageErrors = [];
const consoleLines = [];

before(async () => {
  session = await openPage('', { server: { wasmType: 'application/octet-stream', hidden: [`models/${DEFAULT_MODEL}`] } });
  ({ page, origin, requests } = session);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleLines.push(`${m.type()}: ${m.text()}`); });
  await session.goto();
});

after(async () => {
  await session?.close();
});

test('the page carries its policy in a <meta> tag, and the host sends none', async () => {
  const res = await fetch(session.url(''));
  assert.equal(res.headers.get('content-security-policy'), null);
  const meta = await page.getAttribute('meta[http-equiv="Content-Security-Policy"]', 'content');
  assert.match(meta, /connect-src 'self'/);
  assert.match(meta, /script-src 'self' 'wasm-unsafe-eval'(;|$)/);
  assert.equal(readFileSync(path.join(DIST, 'index.html'), 'utf8').match(/<script/g).length, 1, 'one script element, and it is not inline');
});

test('with the wrong MIME type for the wasm the engine still starts, and nothing alarming is said', { timeout: 300_000 }, async () => {
  const res = await fetch(session.url('pkg/cqa_studio_bg.wasm'), { method: 'HEAD' });
  assert.equal(res.headers.get('content-type'), 'application/octet-stream');
  await page.waitForFunction(() => performance.getEntriesByName('cqa:engine-compiled').length > 0
    && /WebGPU|CPU/.test(document.getElementById('badge-backend').textContent), null, { timeout: 240_000 });
  assert.deepEqual(consoleLines.filter((l) => /wasm|mime|instantiate|compile/i.test(l)), []);
});

test('a site without the default model says so and offers the file picker', { timeout: 300_000 }, async () => {
  await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 240_000 });
  const message = await page.textContent('#model-error');
  assert.match(message, new RegExp(`this site does not host ${DEFAULT_MODEL.replaceAll('.', '\\.')}`, 'i'));
  assert.match(message, /Open model file/);
  assert.doesNotMatch(message, /panicked|RuntimeError|TypeError|at .*\.js:\d+/);
  assert.equal(await page.isEnabled('#model-files'), true);
  // Annotate works meanwhile.
  await page.click('#tab-annotate');
  assert.equal(await page.isVisible('#tab-annotate'), true);
});

test('the policy holds: a foreign request and an inline script are both blocked', async () => {
  const outcome = await page.evaluate(async () => {
    const violations = [];
    document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
    let fetched;
    try { await fetch('http://example.invalid/x'); fetched = 'sent'; } catch { fetched = 'blocked'; }
    const s = document.createElement('script');
    s.textContent = 'window.__inlineRan = true;';
    document.body.append(s);
    await new Promise((r) => setTimeout(r, 200));
    return { fetched, inlineRan: window.__inlineRan === true, violations };
  });
  assert.equal(outcome.fetched, 'blocked');
  assert.equal(outcome.inlineRan, false);
  assert.ok(outcome.violations.includes('connect-src'), outcome.violations.join(', '));
  assert.ok(outcome.violations.some((v) => v.startsWith('script-src')), outcome.violations.join(', '));
});

test('every request stayed inside the site’s own folder, and the page threw nothing', () => {
  const outside = requests.filter((u) => !u.startsWith(`${origin}${BASE}`) && !u.startsWith('http://example.invalid/'));
  assert.deepEqual(outside, []);
  assert.deepEqual(pageErrors, []);
});
