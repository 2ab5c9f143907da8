// The app page end to end in headless Chromium (WebGPU via SwiftShader): it loads the default
// model by itself, streams a generation, scores a text with per-token chips, keeps what was typed
// across a reload, and shows a clear error for a bad model file without losing the loaded one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openPage } from './launch.mjs';

let session, page, origin, requests;
const pageErrors = [];

before(async () => {
  session = await openPage('/');
  ({ page, origin, requests } = session);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await session.goto();
});

after(async () => {
  await session?.close();
});

const ready = () => page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });

test('loads the default model on WebGPU by itself', { timeout: 320_000 }, async () => {
  await ready();
  assert.match(await page.textContent('#badge-backend'), /WebGPU/i);
  assert.match(await page.textContent('#model-info'), /134,515,008|134\.5|135/);
});

test('streams a greedy generation', { timeout: 300_000 }, async () => {
  await page.fill('#prompt', 'The old lighthouse keeper');
  await page.uncheck('#chat');
  await page.fill('#temperature', '0');
  await page.fill('#max-tokens', '4');
  await page.click('#generate');
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready'
    && document.getElementById('output').textContent.trim().length > 0, null, { timeout: 280_000 });
  // The greedy continuation per transformers starts ", a man named".
  assert.match(await page.textContent('#output'), /^, a man/);
});

test('scores a text and shows one chip per scored token', { timeout: 300_000 }, async () => {
  await page.fill('#context', 'Write one sentence about the sea.');
  await page.fill('#text', 'The tide came in.');
  await page.click('#score');
  await page.waitForSelector('#score-result:not([hidden])', { timeout: 280_000 });
  const chips = await page.$$eval('#chips li', (lis) => lis.map((li) => li.textContent));
  assert.equal(chips.length, 5); // "The tide came in." is 5 tokens, all scored after a context
  assert.ok(chips.some((c) => c.includes('tide')), chips.join(' | '));
  assert.ok(Number((await page.textContent('#total-bits')).replace(/,/g, '')) > 0);
});

test('a corrupt model file gives a clear error and keeps the loaded model', { timeout: 120_000 }, async () => {
  await page.setInputFiles('#model-file', { name: 'broken.gguf', mimeType: 'application/octet-stream', buffer: Buffer.from('GGUF\x03\x00\x00\x00garbage') });
  await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 100_000 });
  assert.match(await page.textContent('#model-error'), /GGUF/);
  await ready();
});

test('what the user typed survives a reload', { timeout: 320_000 }, async () => {
  await page.fill('#text', 'A line I must not lose.');
  await page.reload();
  assert.equal(await page.inputValue('#text'), 'A line I must not lose.');
});

test('no request leaves the origin and the page logs no errors', () => {
  assert.deepEqual(requests.filter((u) => !u.startsWith(origin)), []);
  // The corrupt file's error is expected; nothing else may be logged as an error.
  assert.deepEqual(pageErrors.filter((e) => !/GGUF/.test(e)), []);
});
