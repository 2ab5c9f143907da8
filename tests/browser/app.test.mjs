// The app with the real default model in headless Chromium (WebGPU via SwiftShader): it loads
// SmolLM2-135M by itself, generates a few greedy tokens in the Model panel, rejects a corrupt
// file while keeping the loaded model, keeps a draft across a reload, and makes no foreign
// request. (The full workflow runs on the tiny model in studio.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPage } from './launch.mjs';

const SHOTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../docs/screenshots');
let session, page, origin, requests, openedAt;
const pageErrors = [];

before(async () => {
  session = await openPage('');
  ({ page, origin, requests } = session);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  openedAt = Date.now();
  await session.goto();
});

after(async () => {
  await session?.close();
});

const ready = () => page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });

test('shows the page at once and loads the default model on WebGPU by itself', { timeout: 320_000 }, async () => {
  // Something useful is on screen before the engine is up.
  assert.match(await page.textContent('#tab-annotate'), /Annotate/);
  await ready();
  console.log(`default model ready in the app ${((Date.now() - openedAt) / 1000).toFixed(1)} s after opening the page`);
  assert.match(await page.textContent('#badge-backend'), /WebGPU/);
  assert.match(await page.textContent('#model-info'), /134\.5 M|134,515,008/);
  assert.match(await page.textContent('#model-info'), /Q4_1/);
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, 'model.png') });
});

test('generates a few greedy tokens', { timeout: 300_000 }, async () => {
  await page.fill('#try-prompt', 'The old lighthouse keeper');
  await page.uncheck('#try-chat');
  await page.fill('#try-temp', '0');
  await page.fill('#try-max', '4');
  const clickedAt = Date.now();
  await page.click('#try-run');
  await page.waitForFunction(() => document.getElementById('try-output').textContent.trim().length > 0, null, { timeout: 280_000 });
  console.log(`time to first token in the app: ${((Date.now() - clickedAt) / 1000).toFixed(1)} s`);
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready'
    && document.getElementById('try-output').textContent.trim().length > 0, null, { timeout: 280_000 });
  // The greedy continuation per transformers starts ", a man named".
  assert.match(await page.textContent('#try-output'), /^, a man/);
});

test('a corrupt model file gives a clear error and keeps the loaded model', { timeout: 120_000 }, async () => {
  await page.setInputFiles('#model-files', { name: 'broken.gguf', mimeType: 'application/octet-stream', buffer: Buffer.from('GGUF\x03\x00\x00\x00garbage') });
  await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 100_000 });
  const error = await page.textContent('#model-error');
  assert.match(error, /GGUF/);
  assert.match(error, /still loaded/);
  await ready();
});

test('what the user typed survives a reload', { timeout: 60_000 }, async () => {
  await page.fill('#try-prompt', 'A line I must not lose.');
  await page.reload();
  assert.equal(await page.inputValue('#try-prompt'), 'A line I must not lose.');
});

test('no request leaves the origin and the page logs no errors', () => {
  assert.deepEqual(requests.filter((u) => !u.startsWith(origin)), []);
  assert.deepEqual(pageErrors, []);
});
