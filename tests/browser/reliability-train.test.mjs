// Training never loses what the user made, in headless Chromium (WebGPU on SwiftShader) on the tiny
// random model with the real SmolLM2 tokenizer (`/?model=test-tiny-random.gguf`):
// - one tab trains at a time: a second tab of the same browser is told that another tab is
//   training, keeps its Start button off, does not start when asked anyway, and does not offer the
//   run in training for resume; once the first tab stops, it may train and sees the stopped run;
// - an adapter the browser refuses to store (a QuotaExceededError forced on the 'adapters' store)
//   is 'finished, not saved' and offered as a PEFT zip download, which PEFT loads
//   (`PeftModel.from_pretrained` on the tiny model read from the same GGUF by transformers) with
//   tensors equal to the zip's; "Try saving again" then keeps it;
// - each run keeps its own checkpoint: after two runs in a row and a reload, the stopped (second)
//   run is offered and resumes from its own checkpoint, not the first run's;
// - a GPU device lost during training (simulated) stops the job; the run resumes from its
//   checkpoint by itself once the engine has restarted;
// - a trained adapter's weights are stored as bytes, and the adapter list shows their size;
// - the Model panel shows this site's storage use and quota, and asks before caching a model
//   file that would bring the storage over ~90 % of the quota (cancel loads nothing).
//
// Run: CQA_BIN=path/to/cqa node --test tests/browser/reliability-train.test.mjs
// (CQA_REF_PYTHON: the reference venv's python, default ~/.cache/cqa-studio/venv-ref/bin/python.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODELS, openPage, scratchDir } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const PYTHON = process.env.CQA_REF_PYTHON || path.join(homedir(), '.cache/cqa-studio/venv-ref/bin/python');
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TINY = 'test-tiny-random.gguf';
const ELSEWHERE = /^Training is running in another tab of cqa-studio; one tab trains at a time/;
let session, page, origin;
const pageErrors = [];

function watch(p, label) {
  p.on('pageerror', (e) => pageErrors.push(`${label}: ${e}`));
  p.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`${label}: ${m.text()}`); });
  p.on('dialog', (d) => d.accept());
}

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  execFileSync(CQA, ['--model', path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf'), 'debug-tiny-gguf', '--out', path.join(MODELS, TINY), '--seed', '3']);
  session = await openPage(`?model=${TINY}`);
  ({ page, origin } = session);
  watch(page, 'tab 1');
  await session.goto();
  await idle(page);
  await page.click('#tab-annotate');
  await page.click('#ann-samples');
  await page.waitForFunction(() => document.querySelectorAll('#ann-list .ann-item').length === 30, null, { timeout: 60_000 });
});

after(async () => {
  await session?.close();
});

const idle = (p, timeout = 300_000) => p.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout });

/** Sets Train inputs by id (also those inside the closed "Advanced" section), as typing would. */
async function settings(p, values) {
  await p.click('#tab-train');
  await p.evaluate((values) => {
    for (const [id, v] of Object.entries(values)) {
      const input = document.getElementById(id);
      input.value = String(v);
      input.dispatchEvent(new Event('input', { bubbles: true }));
    }
  }, values);
}

/** What this origin's IndexedDB holds: runs, checkpoints and adapters (summarised). */
function stored(p) {
  return p.evaluate(async () => {
    const req = indexedDB.open('cqa-studio');
    const db = await new Promise((resolve, reject) => { req.onsuccess = () => resolve(req.result); req.onerror = () => reject(req.error); });
    const all = (name) => new Promise((resolve, reject) => {
      const r = db.transaction(name).objectStore(name).getAll();
      r.onsuccess = () => resolve(r.result);
      r.onerror = () => reject(r.error);
    });
    const runs = (await all('runs')).map((r) => ({ key: r.key, status: r.status, step: r.step, total_steps: r.total_steps, checkpointStep: r.checkpointStep, rank: r.config?.lora?.rank }));
    const checkpoints = (await all('checkpoints')).map((c) => ({ run: c.run, step: c.step, size: c.bytes?.byteLength ?? c.bytes?.length ?? 0 }));
    const adapters = (await all('adapters')).map((a) => ({
      key: a.key, rank: a.settings?.lora?.rank, total: a.info?.total_steps, steps: (a.history?.steps || []).map((s) => s.step), losses: (a.history?.steps || []).map((s) => s.loss), r: JSON.parse(a.config_json).r,
    }));
    db.close();
    return { runs, checkpoints, adapters };
  });
}

/** Polls `stored(p)` until `ok(db)` holds (writes the page does not wait for); resolves to it. */
async function storedWhen(p, ok, timeout = 30_000) {
  const end = Date.now() + timeout;
  for (;;) {
    const db = await stored(p);
    if (ok(db) || Date.now() > end) return db;
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Starts a run and cancels it once it has taken at least one step; resolves to the step it stopped at. */
async function trainAndCancel(p) {
  await p.click('#t-start');
  await p.waitForFunction(() => /^[1-9]\d* \//.test(document.getElementById('m-step').textContent), null, { timeout: 300_000 });
  await p.click('#t-cancel');
  await p.waitForFunction(() => /^Cancelled at step/.test(document.getElementById('run-status').textContent), null, { timeout: 300_000 });
  return Number(/Cancelled at step (\d+)/.exec(await p.textContent('#run-status'))[1]);
}

test('a second tab is told that another tab is training and does not start', { timeout: 600_000 }, async () => {
  // 2 records, no held-out share, batch 1, 4 epochs: 8 steps; paused at once, so it stays in training.
  await settings(page, { 't-limit': 2, 't-rank': 2, 't-alpha': 4, 't-maxlen': 320, 't-batch': 1, 't-accum': 1, 't-epochs': 4, 't-heldout': 0, 't-evalevery': 1, 't-ckpt': 1 });
  await page.click('#t-start');
  await page.waitForFunction(() => !document.getElementById('t-pause').disabled, null, { timeout: 120_000 });
  await page.click('#t-pause');
  await page.waitForFunction(() => /^Training on|^Paused/.test(document.getElementById('run-status').textContent), null, { timeout: 120_000 });
  const first = await storedWhen(page, (db) => db.runs.length > 0);
  assert.equal(first.runs.length, 1);
  assert.equal(first.runs[0].status, 'running');

  // A second tab of the same browser (launch.mjs's page owns its context, which refuses
  // context.newPage(), so the tab is opened from the page).
  const [page2] = await Promise.all([
    page.context().waitForEvent('page'),
    page.evaluate((url) => { window.open(url, '_blank', 'noopener'); }, session.url(`?model=${TINY}`)),
  ]);
  watch(page2, 'tab 2');
  try {
    await page2.waitForLoadState();
    await page2.click('#tab-train');
    // Told proactively when the Train tab is shown: Start is off, with the reason.
    await page2.waitForFunction(() => !document.getElementById('train-elsewhere').hidden, null, { timeout: 60_000 });
    assert.match(await page2.textContent('#train-elsewhere'), ELSEWHERE);
    assert.equal(await page2.$eval('#t-start', (b) => b.disabled), true);
    assert.match(await page2.getAttribute('#t-start', 'title'), ELSEWHERE);
    // The run the first tab trains is not offered for resume here.
    assert.equal(await page2.$eval('#resume-banner', (b) => b.hidden), true);
    await idle(page2);
    assert.equal(await page2.$eval('#t-start', (b) => b.disabled), true, 'Start stays off with the model loaded');

    // Asked anyway (the form submitted), it refuses in words and starts nothing.
    await page2.evaluate(() => document.getElementById('train-form').requestSubmit());
    await page2.waitForFunction(() => document.getElementById('train-error').textContent.length > 0, null, { timeout: 30_000 });
    assert.match(await page2.textContent('#train-error'), ELSEWHERE);
    assert.equal(await page2.textContent('#run-status'), 'Not started');
    assert.equal(await page2.$eval('#badge', (b) => b.dataset.state), 'ready');
    const during = await stored(page2);
    assert.deepEqual(during.runs.map((r) => [r.key, r.status]), [[first.runs[0].key, 'running']], 'tab 2 created no run and changed none');

    // Tab 1 stops: tab 2 may train now, and offers the stopped run.
    await page.click('#t-cancel');
    await page.waitForFunction(() => /^Cancelled at step/.test(document.getElementById('run-status').textContent), null, { timeout: 300_000 });
    await page2.waitForFunction(() => document.getElementById('train-elsewhere').hidden && !document.getElementById('t-start').disabled, null, { timeout: 30_000 });
    await page2.waitForFunction(() => !document.getElementById('resume-banner').hidden, null, { timeout: 30_000 });
    assert.match(await page2.textContent('#resume-text'), /was cancelled at step \d+ of 8/);
    assert.equal(await page2.getAttribute('#t-start', 'title'), '');

    // Discarded in tab 2, it is gone in tab 1 too.
    await page2.click('#discard-run');
    await page.waitForFunction(() => document.getElementById('resume-banner').hidden, null, { timeout: 30_000 });
    const afterwards = await stored(page);
    assert.equal(afterwards.runs.length, 0);
    assert.equal(afterwards.checkpoints.length, 0);
  } finally {
    await page2.close();
    // Whatever failed above, tab 1 does not stay in training.
    if (await page.$eval('#t-cancel', (b) => !b.disabled)) {
      await page.click('#t-cancel');
      await page.waitForFunction(() => document.getElementById('t-cancel').disabled && document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });
    }
  }
});

test('an adapter the browser cannot store is offered as a PEFT zip that PEFT loads', { timeout: 600_000 }, async () => {
  assert.ok(existsSync(PYTHON), `the reference python is missing: ${PYTHON} (set CQA_REF_PYTHON)`);
  await page.evaluate(() => {
    const put = IDBObjectStore.prototype.put;
    window.restorePut = () => { IDBObjectStore.prototype.put = put; };
    IDBObjectStore.prototype.put = function (...args) {
      if (this.name === 'adapters') throw new DOMException('The quota has been exceeded.', 'QuotaExceededError');
      return put.apply(this, args);
    };
  });
  // 2 records, batch 1, one epoch: 2 steps.
  await settings(page, { 't-limit': 2, 't-rank': 2, 't-alpha': 4, 't-maxlen': 320, 't-batch': 1, 't-accum': 1, 't-epochs': 1, 't-heldout': 0, 't-evalevery': 1, 't-ckpt': 1 });
  await page.click('#t-start');
  await page.waitForFunction(() => !document.getElementById('unsaved-banner').hidden || document.getElementById('train-error').textContent, null, { timeout: 400_000 });
  assert.equal(await page.textContent('#train-error'), '');
  assert.equal(await page.textContent('#run-status'), 'Finished, not saved');
  assert.match(await page.textContent('#unsaved-text'), /^Training finished, but the adapter could not be saved: this browser has no room left for this site’s data/);
  assert.equal(await page.$$eval('#adapter-list li.adapter', (l) => l.length), 0);
  const db = await stored(page);
  assert.deepEqual(db.runs.map((r) => [r.status, r.step, r.total_steps]), [['unsaved', 2, 2]], 'the run is finished, not saved (not failed)');
  assert.deepEqual(db.checkpoints.map((c) => [c.run, c.step]), [[db.runs[0].key, 2]], 'its final checkpoint is kept');

  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#unsaved-download')]);
  const zipPath = path.join(scratchDir('cqa-unsaved-'), dl.suggestedFilename());
  await dl.saveAs(zipPath);
  assert.equal(readFileSync(zipPath).subarray(0, 2).toString(), 'PK');

  // PEFT loads it on the tiny model (transformers reads the same GGUF), with the zip's tensors.
  const script = `
import json, os, sys, tempfile, zipfile
os.environ.setdefault('HF_HUB_OFFLINE', '1'); os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from peft import PeftModel, get_peft_model_state_dict
zip_path, model_dir, gguf = sys.argv[1:4]
out = tempfile.mkdtemp()
with zipfile.ZipFile(zip_path) as z:
    names = sorted(z.namelist())
    z.extractall(out)
base = AutoModelForCausalLM.from_pretrained(model_dir, gguf_file=gguf, dtype=torch.float32).eval()
model = PeftModel.from_pretrained(base, out).eval()
saved = load_file(os.path.join(out, 'adapter_model.safetensors'))
loaded = get_peft_model_state_dict(model)
equal = sorted(k for k in saved if k in loaded and torch.equal(saved[k], loaded[k].detach().cpu()))
ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
with torch.no_grad():
    tuned = model(ids).logits
    with model.disable_adapter():
        plain = model(ids).logits
cfg = model.peft_config['default']
print(json.dumps({'names': names, 'saved': sorted(saved), 'loaded': sorted(loaded), 'equal': equal, 'r': cfg.r,
    'alpha': cfg.lora_alpha, 'b_max': max(float(v.abs().max()) for k, v in saved.items() if 'lora_B' in k),
    'logit_diff': float((tuned - plain).abs().max())}))
`;
  const out = execFileSync(PYTHON, ['-c', script, zipPath, MODELS, TINY], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 24 });
  const peft = JSON.parse(out.trim().split('\n').at(-1));
  assert.deepEqual(peft.names, ['adapter_config.json', 'adapter_model.safetensors']);
  assert.equal(peft.r, 2);
  assert.equal(peft.alpha, 4);
  assert.ok(peft.saved.length > 0 && peft.saved.length % 2 === 0, `${peft.saved.length} tensors`);
  assert.ok(peft.saved.every((k) => /\.layers\.[01]\.(self_attn|mlp)\.\w+_proj\.lora_[AB]\.weight$/.test(k)), peft.saved.join(', '));
  assert.deepEqual(peft.loaded, peft.saved, 'PEFT found a module for every tensor, and no other');
  assert.deepEqual(peft.equal, peft.saved, 'every LoRA tensor PEFT loaded equals the zip’s');
  assert.ok(peft.b_max > 0, 'two steps moved B away from zero');
  assert.ok(peft.logit_diff > 0, 'the loaded adapter changes the logits');

  // Still refused: said again, and still offered.
  await page.click('#unsaved-retry');
  await page.waitForFunction(() => /^Saving the adapter failed again/.test(document.getElementById('unsaved-text').textContent), null, { timeout: 30_000 });
  assert.equal(await page.$eval('#unsaved-banner', (b) => b.hidden), false);
  // Room again: saved and listed, and the run's record and checkpoint go.
  await page.evaluate(() => window.restorePut());
  await page.click('#unsaved-retry');
  await page.waitForFunction(() => document.getElementById('unsaved-banner').hidden, null, { timeout: 30_000 });
  assert.match(await page.textContent('#run-status'), /^Finished: adapter “r2 · 2 records · .+” saved$/);
  assert.equal(await page.$$eval('#adapter-list li.adapter', (l) => l.length), 1);
  const saved = await stored(page);
  assert.deepEqual(saved.adapters.map((a) => [a.rank, a.r, a.total, a.steps]), [[2, 2, 2, [1, 2]]]);
  assert.equal(saved.runs.length, 0);
  assert.equal(saved.checkpoints.length, 0);
});

test('after a reload the stopped run resumes from its own checkpoint', { timeout: 900_000 }, async () => {
  // Run A (rank 2) and run B (rank 4), each cancelled after a step or more: 2 records, batch 1,
  // 3 epochs (6 steps), a checkpoint every step.
  const common = { 't-limit': 2, 't-alpha': 4, 't-maxlen': 320, 't-batch': 1, 't-accum': 1, 't-epochs': 3, 't-heldout': 0, 't-evalevery': 1, 't-ckpt': 1 };
  await settings(page, { ...common, 't-rank': 2 });
  const stopA = await trainAndCancel(page);
  const a = await stored(page);
  assert.equal(a.runs.length, 1);
  const runA = a.runs[0];
  assert.deepEqual([runA.status, runA.step, runA.rank, runA.checkpointStep], ['cancelled', stopA, 2, stopA]);
  assert.deepEqual(a.checkpoints.map((c) => [c.run, c.step]), [[runA.key, stopA]]);

  await settings(page, { ...common, 't-rank': 4 });
  const stopB = await trainAndCancel(page); // the "discard the stopped run" question is accepted
  const b = await stored(page);
  assert.equal(b.runs.length, 1);
  const runB = b.runs[0];
  assert.notEqual(runB.key, runA.key);
  assert.deepEqual([runB.status, runB.step, runB.rank, runB.checkpointStep], ['cancelled', stopB, 4, stopB]);
  assert.deepEqual(b.checkpoints.map((c) => [c.run, c.step]), [[runB.key, stopB]], 'run B has its own checkpoint, and A’s went with A');
  assert.ok(stopB < 6, `run B stopped before its end (step ${stopB})`);

  await page.reload();
  await idle(page);
  await page.click('#tab-train');
  await page.waitForFunction(() => !document.getElementById('resume-banner').hidden, null, { timeout: 30_000 });
  assert.equal(await page.textContent('#resume-text'), `A run on tiny-random was cancelled at step ${stopB} of 6. Its last checkpoint is at step ${stopB}.`);
  assert.equal(await page.textContent('#resume-run'), `Resume from step ${stopB}`);
  assert.equal(await page.textContent('#m-step'), `${stopB} / 6`);

  const adaptersBefore = await page.$$eval('#adapter-list li.adapter', (l) => l.length);
  await page.click('#resume-run');
  await page.waitForFunction((n) => document.querySelectorAll('#adapter-list li.adapter').length > n || document.getElementById('train-error').textContent, adaptersBefore, { timeout: 600_000 });
  assert.equal(await page.textContent('#train-error'), '');
  // The run's record is cleared just after the adapter is listed; "Finished" says it is gone.
  await page.waitForFunction(() => /^Finished: /.test(document.getElementById('run-status').textContent), null, { timeout: 60_000 });
  assert.equal(await page.textContent('#m-step'), '6 / 6');
  const done = await stored(page);
  // Resumed from B's checkpoint: rank 4, and every step once (a restart or A's checkpoint at a
  // different step would repeat steps; A's would also give rank 2).
  assert.deepEqual(done.adapters.filter((x) => x.rank === 4).map((x) => [x.r, x.total, x.steps]), [[4, 6, [1, 2, 3, 4, 5, 6]]]);
  assert.equal(done.runs.length, 0);
  assert.equal(done.checkpoints.length, 0);
});

test('a GPU device lost during training: the run resumes from its checkpoint once the engine is back', { timeout: 900_000 }, async () => {
  // The engine side (app.js, engine-worker.js) restarts the engine after a device loss and emits
  // 'engine-restarted'; window.cqaStudio.request('simulate-device-loss') destroys the device.
  assert.equal(await page.evaluate(() => typeof window.cqaStudio?.request), 'function', 'the app exposes window.cqaStudio (tests)');
  await page.evaluate(() => {
    window.runStatuses = [];
    new MutationObserver(() => window.runStatuses.push(document.getElementById('run-status').textContent))
      .observe(document.getElementById('run-status'), { childList: true, characterData: true, subtree: true });
  });
  // 2 records, batch 1, 2 epochs: 4 steps, a checkpoint every step.
  const SETTINGS = { 't-limit': 2, 't-rank': 2, 't-alpha': 4, 't-maxlen': 320, 't-batch': 1, 't-accum': 1, 't-epochs': 2, 't-heldout': 0, 't-evalevery': 1, 't-ckpt': 1 };
  // First the same run without a loss: the resumed run must reproduce its losses.
  await settings(page, SETTINGS);
  const keysBefore = new Set((await stored(page)).adapters.map((a) => a.key));
  await page.click('#t-start');
  const fresh = (db) => db.adapters.filter((a) => !keysBefore.has(a.key));
  const uninterrupted = fresh(await storedWhen(page, (db) => fresh(db).length === 1, 600_000));
  assert.equal(uninterrupted.length, 1, 'the uninterrupted run saved its adapter');
  const [reference] = uninterrupted;
  assert.deepEqual(reference.steps, [1, 2, 3, 4]);
  keysBefore.add(reference.key);

  await settings(page, SETTINGS);
  const adaptersBefore = await page.$$eval('#adapter-list li.adapter', (l) => l.length);
  await page.click('#t-start');
  const withCheckpoint = await storedWhen(page, (db) => db.checkpoints.length > 0, 300_000);
  assert.equal(withCheckpoint.checkpoints.length, 1);
  assert.ok(withCheckpoint.checkpoints[0].step < 4, `lost before the end (checkpoint at step ${withCheckpoint.checkpoints[0].step})`);
  assert.deepEqual(await page.evaluate(() => window.cqaStudio.request('simulate-device-loss')), { ok: true, result: { destroyed: true } });
  // (The training error may show for a moment: the job can fail of the loss before the engine
  // reports the loss itself.)
  try {
    await page.waitForFunction((n) => document.querySelectorAll('#adapter-list li.adapter').length > n, adaptersBefore, { timeout: 600_000 });
  } catch (e) {
    assert.fail(`no adapter after the restart: ${await page.textContent('#train-error')} | ${(await page.evaluate(() => window.runStatuses)).join(' | ')}`);
  }
  // The adapter is listed as soon as it is saved; the status says "Finished" a moment later,
  // once the run's record is cleared (train.js keepAdapter). Reading the statuses at once raced it.
  try {
    await page.waitForFunction(() => /^Finished: /.test(document.getElementById('run-status').textContent), null, { timeout: 60_000 });
  } catch (e) {
    assert.fail(`the status never said "Finished": ${(await page.evaluate(() => window.runStatuses)).join(' | ')}`);
  }
  assert.equal(await page.textContent('#train-error'), '');
  const statuses = await page.evaluate(() => window.runStatuses);
  const lost = statuses.map((t) => /^The GPU device was lost at step (\d+); resuming from the checkpoint at step (\d+) when the engine is back…$/.exec(t)).find(Boolean);
  assert.ok(lost, statuses.join(' | '));
  const [lostAt, from] = [Number(lost[1]), Number(lost[2])];
  console.log(`GPU lost at step ${lostAt}; resumed from the checkpoint at step ${from}${statuses.some((t) => /^Stopped by an error/.test(t)) ? ' (the job failed of the loss before the engine reported it)' : ''}`);
  assert.ok(from >= 1 && from <= lostAt && from < 4, `lost at ${lostAt}, resumed from ${from}`);
  assert.ok(statuses.includes(`The engine is back: resuming from step ${from}…`), statuses.join(' | '));
  assert.match(statuses.at(-1), /^Finished: adapter “r2 · 2 records · .+” saved$/);
  assert.equal(await page.textContent('#m-step'), '4 / 4');
  const done = await stored(page);
  // Every step once: the steps after the checkpoint were trained again, not kept twice.
  const resumed = fresh(done);
  assert.deepEqual(resumed.map((x) => [x.rank, x.steps]), [[2, [1, 2, 3, 4]]]);
  // The same losses as the uninterrupted run, step by step (the steps after the checkpoint were
  // retrained on a fresh device).
  console.log(`losses: uninterrupted ${reference.losses.join(', ')}; resumed ${resumed[0].losses.join(', ')}`);
  for (let i = 0; i < 4; i += 1) {
    const [a, b] = [reference.losses[i], resumed[0].losses[i]];
    assert.ok(Math.abs(a - b) <= 1e-5 * Math.abs(a), `step ${i + 1}: loss ${b} after the loss, ${a} without`);
  }
  assert.equal(done.runs.length, 0);
  assert.equal(done.checkpoints.length, 0);
});

test('a trained adapter is stored as bytes, and the list shows its true size', { timeout: 60_000 }, async () => {
  await page.click('#tab-train');
  const adapters = await page.evaluate(async () => {
    const store = await import(new URL('lib/store.js', document.baseURI).href);
    return (await store.allAdapters()).map((a) => ({ key: a.key, bytes: a.safetensors instanceof Uint8Array ? a.safetensors.byteLength : null }));
  });
  assert.ok(adapters.length >= 2, `${adapters.length} adapters`);
  for (const a of adapters) {
    assert.ok(a.bytes > 0, 'the weights are a Uint8Array (not an array of numbers)');
    const summary = await page.textContent(`#adapter-list li.adapter[data-key="${a.key}"] .adapter-summary`);
    const size = a.bytes >= 1e6 ? `${(a.bytes / 1e6).toFixed(1)} MB` : `${(a.bytes / 1e3).toFixed(1)} kB`;
    assert.ok(summary.endsWith(size), `${summary} (${a.bytes} bytes)`);
  }
});

test('the Model panel shows this site’s storage and asks before caching a model that would fill it', { timeout: 300_000 }, async () => {
  await page.click('#tab-model');
  await page.waitForFunction(() => /^Storage: /.test(document.getElementById('storage-line').textContent), null, { timeout: 30_000 });
  const real = await page.evaluate(() => navigator.storage.estimate().then((e) => ({ usage: e.usage, quota: e.quota })));
  const line = await page.$eval('#storage-line', (p) => ({ usage: Number(p.dataset.usage), quota: Number(p.dataset.quota), text: p.textContent }));
  // (Chromium's quota follows the free disk space, which other processes change meanwhile.)
  assert.ok(Math.abs(line.quota - real.quota) < 0.01 * real.quota, `${line.quota} vs ${real.quota}`);
  assert.ok(line.usage > 8e6, `the cached tiny model counts (${line.usage} bytes)`);
  assert.match(line.text, /^Storage: this site keeps [\d.,]+ (KB|MB|GB) in this browser \(models, adapters, checkpoints, annotations\), of [\d.,]+ (MB|GB|TB) it may use \([\d.]+ %\)\.$/);

  // A browser that says 50 MB of 60 MB are used: the 8.1 MB model would bring it to 97 %.
  await page.evaluate(() => { navigator.storage.estimate = async () => ({ usage: 50e6, quota: 60e6 }); });
  await page.click('#tab-train');
  await page.click('#tab-model');
  await page.waitForFunction(() => document.getElementById('storage-line').dataset.usage === '50000000', null, { timeout: 10_000 });
  assert.equal(await page.textContent('#storage-line'), 'Storage: this site keeps 50.0 MB in this browser (models, adapters, checkpoints, annotations), of 60.0 MB it may use (83 %).');
  const file = { name: TINY, mimeType: 'application/octet-stream', buffer: readFileSync(path.join(MODELS, TINY)) };
  await page.setInputFiles('#model-files', file);
  await page.waitForSelector('#quota-warning:not([hidden])', { timeout: 10_000 });
  assert.match(await page.textContent('#quota-text'), /^Opening “test-tiny-random\.gguf” \(8\.1 MB\) keeps a copy in this browser, which would bring this site’s storage to 58\.1 MB of the 60\.0 MB it may use \(97 %\)\./);
  // Cancel: nothing is loaded.
  await page.click('#quota-cancel');
  assert.equal(await page.$eval('#quota-warning', (d) => d.hidden), true);
  assert.equal(await page.textContent('#model-status'), 'Kept tiny-random');
  assert.equal(await page.$eval('#badge', (b) => b.dataset.state), 'ready');
  // Go on: it loads (and is cached: the real quota has room).
  await page.setInputFiles('#model-files', file);
  await page.waitForSelector('#quota-warning:not([hidden])', { timeout: 10_000 });
  await page.click('#quota-go');
  await page.waitForFunction(() => /^Loaded from your file/.test(document.getElementById('model-status').textContent) || document.getElementById('model-error').textContent, null, { timeout: 240_000 });
  assert.equal(await page.textContent('#model-error'), '');
  assert.equal(await page.textContent('#model-status'), 'Loaded from your file (kept in this browser for next time)');
  await idle(page);
  // A download from the site (the default model, not cached in this fresh profile) asks too.
  await page.click('#load-default');
  await page.waitForSelector('#quota-warning:not([hidden])', { timeout: 10_000 });
  assert.match(await page.textContent('#quota-text'), /^Downloading “SmolLM2-135M-Instruct\.Q4_1\.gguf” \(\d+\.\d MB\) keeps a copy in this browser, which would bring this site’s storage to [\d.]+ MB of the 60\.0 MB it may use \(\d+ %\)\./);
  await page.click('#quota-cancel');
  assert.equal(await page.textContent('#model-status'), 'Not loaded: SmolLM2-135M-Instruct.Q4_1.gguf was not downloaded, so this site’s storage stays as it is');
  assert.match(await page.textContent('#model-info'), /tiny-random/);
  assert.equal(await page.$eval('#badge', (b) => b.dataset.state), 'ready');
});

test('the pages logged no errors', () => {
  assert.deepEqual(pageErrors, []);
});
