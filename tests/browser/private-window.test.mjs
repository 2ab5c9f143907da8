// A private window, and checkpoints as files, in headless Chromium. Playwright's default browser
// context keeps its profile in memory, as a private window does: it takes writes, reports
// gigabytes free, and forgets everything when it closes.
// - The panel's default settings (all 7 projections, r16) on the default model, on the CPU path:
//   before training the Train panel says that this window keeps its data in memory only; at the
//   end the adapter is saved (with a note that it goes with the window), and the adapter list
//   shows its true size.
// - A checkpoint the browser refuses to store (QuotaExceededError forced on the 'checkpoints'
//   store) is held in the page and offered as a file; that file resumes the run in another
//   browser (a fresh profile on another origin) to the same steps, each taken once; a file that
//   is not a checkpoint is refused in words.
//
// Run: CQA_BIN=path/to/cqa node --test tests/browser/private-window.test.mjs
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { MODELS, ROOT, openPage, scratchDir, shortRecords } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const TINY = 'test-tiny-random.gguf';
const sessions = [];
const pageErrors = [];

after(async () => { for (const s of sessions) await s.close(); });

async function open(query, label) {
  const s = await openPage(query, { server: { isolated: true } });
  sessions.push(s);
  s.page.on('pageerror', (e) => pageErrors.push(`${label}: ${e}`));
  s.page.on('console', (m) => { if (m.type() === 'error' && !/QuotaExceededError|quota has been exceeded/.test(m.text())) pageErrors.push(`${label}: ${m.text()}`); });
  s.page.on('dialog', (d) => d.accept());
  await s.goto();
  await s.page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });
  return s.page;
}

/** Sets Train inputs by id (also those inside the closed "Advanced" section), as typing would. */
async function settings(page, values) {
  await page.click('#tab-train');
  await page.evaluate((values) => {
    for (const [id, v] of Object.entries(values)) {
      const input = document.getElementById(id);
      input.value = String(v);
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }
  }, values);
}

/** The stored adapters: {key, bytes, steps, losses, r, targets}. */
const storedAdapters = (page) => page.evaluate(async () => {
  const store = await import(new URL('lib/store.js', document.baseURI).href);
  return (await store.allAdapters()).map((a) => ({
    key: a.key, bytes: a.safetensors instanceof Uint8Array ? a.safetensors.byteLength : null,
    steps: (a.history?.steps || []).map((s) => s.step), losses: (a.history?.steps || []).map((s) => s.loss),
    r: JSON.parse(a.config_json).r, targets: JSON.parse(a.config_json).target_modules,
  }));
});

test('the panel’s defaults on the default model in a private window: said before, saved after, its true size listed', { timeout: 900_000 }, async () => {
  const page = await open('?engine=cpu', 'default model');
  await page.click('#tab-annotate');
  await page.setInputFiles('#ann-import', { name: 'three.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(shortRecords(3)) });
  await page.waitForFunction(() => document.querySelectorAll('#ann-list .ann-item').length === 3, null, { timeout: 60_000 });
  await page.click('#tab-train');
  // Before training: the temporary store is named, and what to do about it.
  await page.waitForFunction(() => !document.getElementById('t-storage').hidden, null, { timeout: 60_000, polling: 200 });
  assert.match(await page.textContent('#t-storage'), /^Before you train: this window keeps this site’s data in memory only \(a private window, or a browser profile kept in memory: it refused a 134 MB test write that a normal profile takes\), so the adapters, checkpoints and records kept here are gone when it closes\. Export the adapter when training ends/);
  // The panel's defaults, untouched.
  const defaults = await page.evaluate(() => ({
    rank: document.getElementById('t-rank').value,
    targets: [...document.querySelectorAll('.t-target')].filter((c) => c.checked).map((c) => c.value),
  }));
  assert.equal(defaults.rank, '16');
  assert.equal(defaults.targets.length, 7);

  await page.click('#t-start');
  await page.waitForFunction(() => /^Finished/.test(document.getElementById('run-status').textContent) || document.getElementById('train-error').textContent,
    null, { timeout: 840_000, polling: 500 });
  assert.equal(await page.textContent('#train-error'), '');
  const status = await page.textContent('#run-status');
  assert.match(status, /^Finished: adapter “r16 · 2 records · .+” saved$/);
  assert.match(await page.textContent('#ckpt-note'), /is saved in this window’s memory only: export it \(Export PEFT zip, under Adapters\) to keep it after the window closes\.$/);
  const [adapter] = await storedAdapters(page);
  assert.equal(adapter.r, 16);
  assert.equal(adapter.targets.length, 7);
  // 30 layers × 16 × (q 576+576, k 576+192, v 576+192, o 576+576, gate/up 576+1536 each, down 1536+576) f32 values, and the safetensors header.
  const values = 30 * 16 * (1152 + 768 + 768 + 1152 + 2112 * 3);
  assert.ok(adapter.bytes > values * 4 && adapter.bytes < values * 4 + 65_536, `${adapter.bytes} bytes`);
  const summary = await page.textContent(`#adapter-list li.adapter[data-key="${adapter.key}"] .adapter-summary`);
  assert.ok(summary.endsWith(`${(adapter.bytes / 1e6).toFixed(1)} MB`), summary);
  assert.ok(summary.endsWith('19.6 MB'), summary);
});

test('a checkpoint the browser refuses is offered as a file, and that file resumes the run in another browser', { timeout: 900_000 }, async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  execFileSync(CQA, ['--model', path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf'), 'debug-tiny-gguf', '--out', path.join(MODELS, TINY), '--seed', '3']);
  const first = await open(`?model=${TINY}`, 'first browser');
  await first.click('#tab-annotate');
  await first.click('#ann-samples');
  await first.waitForFunction(() => document.querySelectorAll('#ann-list .ann-item').length === 30, null, { timeout: 60_000 });
  await first.evaluate(() => {
    const put = IDBObjectStore.prototype.put;
    IDBObjectStore.prototype.put = function (...args) {
      if (this.name === 'checkpoints') throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      return put.apply(this, args);
    };
  });
  // 2 records, batch 1, 3 epochs: 6 steps, a checkpoint every step; stopped after step 2 or more.
  await settings(first, { 't-limit': 2, 't-rank': 2, 't-alpha': 4, 't-maxlen': 320, 't-batch': 1, 't-accum': 1, 't-epochs': 3, 't-heldout': 0, 't-evalevery': 1, 't-ckpt': 1 });
  await first.click('#t-start');
  await first.waitForFunction(() => /^[2-9] \//.test(document.getElementById('m-step').textContent), null, { timeout: 300_000 });
  await first.click('#t-cancel');
  await first.waitForFunction(() => /^Cancelled at step/.test(document.getElementById('run-status').textContent), null, { timeout: 300_000 });
  const stop = Number(/Cancelled at step (\d+)/.exec(await first.textContent('#run-status'))[1]);
  assert.ok(stop >= 2 && stop < 6, `stopped at step ${stop}`);
  assert.match(await first.textContent('#train-error'), /^Could not keep a checkpoint in this browser: this browser has no room left for this site’s data \(its storage quota is used up\)\. Training goes on, and this page holds the checkpoint of step \d: “Download checkpoint” saves it as a file to resume from\.$/);
  await first.waitForFunction((s) => document.getElementById('ckpt-download').textContent === `Download checkpoint (step ${s})`, stop, { timeout: 30_000 });
  assert.equal(await first.$eval('#ckpt-download', (b) => b.hidden), false);
  const history = await first.evaluate(async () => {
    const store = await import(new URL('lib/store.js', document.baseURI).href);
    const [run] = await store.allRuns();
    return { steps: run.history.steps.map((s) => [s.step, s.loss]), checkpointStep: run.checkpointStep, stored: (await store.getCheckpoint(run.key)) ?? null };
  });
  assert.equal(history.stored, null, 'the browser kept no checkpoint');
  const [dl] = await Promise.all([first.waitForEvent('download'), first.click('#ckpt-download')]);
  assert.match(dl.suggestedFilename(), new RegExp(`^cqa-checkpoint-tiny-random-step-${stop}-\\d{4}-\\d\\d-\\d\\d\\.cqa-checkpoint\\.zip$`));
  const file = path.join(scratchDir('cqa-ckpt-'), dl.suggestedFilename());
  await dl.saveAs(file);
  assert.equal(readFileSync(file).subarray(0, 2).toString(), 'PK');

  // Another browser: a fresh in-memory profile on another origin, the same model.
  const second = await open(`?model=${TINY}`, 'second browser');
  await second.click('#tab-train');
  await second.setInputFiles('#ckpt-file', { name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('not a zip at all') });
  await second.waitForFunction(() => document.getElementById('train-error').textContent, null, { timeout: 30_000 });
  assert.equal(await second.textContent('#train-error'), 'Could not resume from notes.zip: it is not a readable zip archive.');
  await second.setInputFiles('#ckpt-file', file);
  await second.waitForFunction(() => document.querySelectorAll('#adapter-list li.adapter').length === 1 || /^Could not|^Training stopped/.test(document.getElementById('train-error').textContent),
    null, { timeout: 600_000, polling: 250 });
  assert.equal(await second.textContent('#train-error'), '');
  await second.waitForFunction(() => /^Finished: /.test(document.getElementById('run-status').textContent), null, { timeout: 60_000 });
  assert.equal(await second.textContent('#m-step'), '6 / 6');
  const [adapter] = await storedAdapters(second);
  assert.equal(adapter.r, 2);
  assert.deepEqual(adapter.steps, [1, 2, 3, 4, 5, 6], 'every step once: resumed from the file’s step, not from the start');
  // The steps before the checkpoint are the first browser's, carried by the file.
  assert.deepEqual(adapter.losses.slice(0, stop), history.steps.slice(0, stop).map(([, loss]) => loss));
});

test('no page error', () => {
  assert.deepEqual(pageErrors, []);
});
