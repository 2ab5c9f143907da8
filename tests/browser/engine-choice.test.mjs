// The app picks the faster engine, in headless Chromium with WebGPU on SwiftShader (a CPU Vulkan
// driver, slower than the wasm CPU path): with the choice left to the app (`engine=auto`, the
// default for a visitor), a model loaded on WebGPU is timed on a short greedy decode on both
// engines, the engine moves to the CPU, and the Model panel shows both rates; the verdict is kept,
// so a reload starts on the CPU without timing; the user's choice overrides it and is kept too;
// choosing "the faster" again times both again.
//
// Run: CQA_BIN=path/to/cqa node --test tests/browser/engine-choice.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { MODELS, ROOT, openPage } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const TINY = 'test-tiny-random.gguf';
const RATES = /^WebGPU: [\d.]+ tok\/s; CPU: [\d.]+ tok\/s: running on the CPU, the faster here/;
let session, page;
const pageErrors = [];

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  execFileSync(CQA, ['--model', path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf'), 'debug-tiny-gguf', '--out', path.join(MODELS, TINY), '--seed', '3']);
  session = await openPage(`?model=${TINY}&engine=auto`);
  ({ page } = session);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  await session.goto();
});

after(async () => { await session?.close(); });

const ready = () => page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });
const backend = () => page.evaluate(() => window.cqaStudio.app.state.backend);
const rates = () => page.textContent('#engine-rates');

test('a model loaded on WebGPU is timed on both engines, and the engine moves to the faster CPU', { timeout: 600_000 }, async () => {
  await page.waitForFunction(() => /running on the CPU/.test(document.getElementById('engine-rates').textContent), null, { timeout: 500_000, polling: 250 });
  await ready();
  assert.match(await rates(), RATES);
  const [gpu, cpu] = (await rates()).match(/[\d.]+(?= tok\/s)/g).map(Number);
  assert.ok(cpu > gpu * 1.1, `CPU ${cpu} tok/s against WebGPU ${gpu} tok/s`);
  assert.equal(await backend(), 'cpu');
  assert.match(await page.textContent('#backend-line'), /^CPU/);
  assert.match(await page.textContent('#engine-notice-text'), /^The CPU decodes this model faster than WebGPU here, so the engine restarted on the CPU and loaded .+ again\.$/);
  assert.equal(await page.inputValue('#engine-pick'), 'auto');
  // The engine works on its new device.
  const r = await page.evaluate(() => window.cqaStudio.request('generate', { prompt: 'Hello', chat: false, params: { temperature: 0, max_new_tokens: 4 } }));
  assert.ok(r.ok && r.result.count >= 1, JSON.stringify(r));
});

test('a reload starts on the CPU at once, from the kept verdict', { timeout: 300_000 }, async () => {
  const workers = [];
  page.on('worker', (w) => workers.push(w.url()));
  await page.reload();
  await ready();
  await page.waitForFunction(() => document.getElementById('engine-rates').textContent.length > 0, null, { timeout: 60_000 });
  assert.match(await rates(), /^WebGPU: [\d.]+ tok\/s; CPU: [\d.]+ tok\/s: running on the CPU, the faster here \(timed .+\)\.$/);
  assert.equal(await backend(), 'cpu');
  assert.equal(workers.filter((u) => u.endsWith('/engine-worker.js')).length, 1, 'one engine worker: no timing, no restart');
});

test('the user’s choice overrides the timing and is kept; "the faster" times both again', { timeout: 600_000 }, async () => {
  await page.selectOption('#engine-pick', 'webgpu');
  await page.waitForFunction(() => window.cqaStudio.app.state.backend === 'webgpu' && document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });
  await page.waitForFunction(() => /^WebGPU/.test(document.getElementById('backend-line').textContent), null, { timeout: 60_000 });
  assert.equal(await rates(), 'Running on WebGPU, as you chose.');
  await page.reload();
  await ready();
  assert.equal(await backend(), 'webgpu');
  await page.waitForFunction(() => document.getElementById('engine-rates').textContent.length > 0, null, { timeout: 60_000 });
  assert.equal(await rates(), 'Running on WebGPU, as you chose.');
  assert.equal(await page.inputValue('#engine-pick'), 'webgpu');

  await page.selectOption('#engine-pick', 'auto');
  await page.waitForFunction(() => window.cqaStudio.app.state.backend === 'cpu' && document.getElementById('badge').dataset.state === 'ready', null, { timeout: 500_000, polling: 250 });
  await page.waitForFunction(() => /running on the CPU/.test(document.getElementById('engine-rates').textContent), null, { timeout: 60_000 });
  assert.match(await rates(), RATES);
});

test('no page error', () => {
  assert.deepEqual(pageErrors, []);
});
