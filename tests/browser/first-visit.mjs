// Measures a first visit and a return visit to the built site (dist/), in headless Chromium with
// WebGPU on SwiftShader, served by www/serve.mjs (the headers and precompressed copies a careful
// static host sends) on localhost:
//   first paint          first-contentful-paint
//   engine compiled      the wasm downloaded and compiled (streaming), mark cqa:engine-compiled
//   engine ready         the worker's device up, mark cqa:engine-ready
//   model ready          the default model loaded, mark cqa:model-ready
//   first token          one greedy token from the Model panel, mark cqa:first-token (asked
//                        for as soon as the model is ready; also given from the click)
//   the same again       that request once more, its kernels compiled: the difference is the
//                        cost of compiling them
// all in ms from the navigation's start; plus the WebGPU work each step asked for (shader
// modules = kernels compiled, dispatches), counted by the engine worker ('gpu-stats').
// Cold: nothing of the site in the browser (a fresh profile), the browser itself already running
// (it has shown a page of another origin, so its own start-up, fonts and compositor are not
// counted). Warm: the same profile, a new tab (service worker, Cache Storage and the HTTP cache
// filled by the first visit).
//
//   node tests/browser/first-visit.mjs [--model NAME] [--engine webgpu|cpu|auto] [--json OUT]
// The engine is WebGPU unless asked (?engine=): with `auto` the app times a short decode on each
// engine once the model is ready, and SwiftShader loses to the CPU.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { CHROMIUM_ARGS, DIST } from './launch.mjs';
import { createServer } from '../../www/serve.mjs';
import { DEFAULT_MODEL } from '../../scripts/dist.mjs';

const args = process.argv.slice(2);
const opt = (name, fallback) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : fallback; };
const model = opt('--model', DEFAULT_MODEL);
const engine = opt('--engine', 'webgpu');
const jsonOut = opt('--json', null);

const server = createServer({ root: DIST });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://localhost:${server.address().port}`;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cqa-first-visit-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium', args: CHROMIUM_ARGS, viewport: { width: 1366, height: 768 },
});

async function visit(label) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const transferred = { bytes: 0 };
  page.on('response', async (r) => {
    const len = Number(r.headers()['content-length']);
    if (Number.isFinite(len) && !r.fromServiceWorker() && r.request().method() === 'GET' && r.status() === 200) transferred.bytes += len;
  });
  await page.goto(`${origin}/?model=${encodeURIComponent(model)}&engine=${encodeURIComponent(engine)}`);
  const markAt = (name) => page.evaluate((n) => performance.getEntriesByName(n)[0]?.startTime ?? null, name);
  await page.waitForFunction(() => performance.getEntriesByName('cqa:model-ready').length > 0, null, { timeout: 600_000 });
  const atModel = (await page.evaluate(() => window.cqaStudio.request('gpu-stats', { reset: true }))).result;
  await page.fill('#try-prompt', 'The old lighthouse keeper');
  await page.uncheck('#try-chat');
  await page.fill('#try-temp', '0');
  await page.fill('#try-max', '1');
  // Enabled once the engine is free (with `auto`, after timing both engines).
  await page.waitForSelector('#try-run:not([disabled])', { timeout: 600_000 });
  const clickedAt = await page.evaluate(() => performance.now());
  await page.click('#try-run');
  await page.waitForFunction(() => performance.getEntriesByName('cqa:first-token').length > 0, null, { timeout: 600_000 });
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 600_000 });
  const forward = (await page.evaluate(() => window.cqaStudio.request('gpu-stats', { reset: true }))).result;
  // The same request again: its kernels are compiled now, so the difference is compilation.
  const againAt = await page.evaluate(() => performance.now());
  await page.click('#try-run');
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'busy', null, { timeout: 60_000 }).catch(() => {});
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 600_000 });
  const againMs = (await page.evaluate(() => performance.now())) - againAt;
  const again = (await page.evaluate(() => window.cqaStudio.request('gpu-stats'))).result;
  const result = {
    visit: label,
    firstPaintMs: await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null),
    engineCompiledMs: await markAt('cqa:engine-compiled'),
    engineReadyMs: await markAt('cqa:engine-ready'),
    modelReadyMs: await markAt('cqa:model-ready'),
    firstTokenMs: await markAt('cqa:first-token'),
    firstTokenAfterClickMs: (await markAt('cqa:first-token')) - clickedAt,
    bytesFromServer: transferred.bytes,
    load: { shaderModules: atModel.shaderModules, dispatches: atModel.dispatches },
    firstForward: { shaderModules: forward.shaderModules, shaderBytes: forward.shaderBytes, dispatches: forward.dispatches, submits: forward.submits, kernels: forward.kernels },
    sameAgainMs: againMs,
    sameAgain: { shaderModules: again.shaderModules, dispatches: again.dispatches },
    errors,
  };
  await page.close();
  return result;
}

// The browser's own first page: another origin (127.0.0.1 is not localhost), so nothing of it is
// shared with the site.
const warmUp = await context.newPage();
await warmUp.goto(`http://127.0.0.1:${server.address().port}/harness.html`);
await warmUp.waitForTimeout(1000);
await warmUp.close();

const results = [];
try {
  results.push(await visit('cold'));
  results.push(await visit('warm'));
} finally {
  await context.close();
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}

const s = (ms) => (ms == null ? '–' : `${(ms / 1000).toFixed(2)} s`);
console.log(`| visit | first paint | engine compiled | engine ready | model ready | first token (after the click) | the same again | the page's downloads (the worker's model download not seen) | kernels compiled: load / first forward | dispatches, first forward |`);
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const r of results) {
  console.log(`| ${r.visit} | ${s(r.firstPaintMs)} | ${s(r.engineCompiledMs)} | ${s(r.engineReadyMs)} | ${s(r.modelReadyMs)} | ${s(r.firstTokenMs)} (${s(r.firstTokenAfterClickMs)}) | ${s(r.sameAgainMs)} | ${(r.bytesFromServer / 1e6).toFixed(2)} MB | ${r.load.shaderModules} / ${r.firstForward.shaderModules} | ${r.firstForward.dispatches} |`);
}
if (jsonOut) fs.writeFileSync(jsonOut, `${JSON.stringify({ model, results }, null, 2)}\n`);
if (results.some((r) => r.errors.length)) { console.error(results.map((r) => r.errors).flat().join('\n')); process.exitCode = 1; }
