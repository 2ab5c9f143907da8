// The whole app end to end in headless Chromium (WebGPU via SwiftShader), on the tiny random
// model with the real SmolLM2 tokenizer (`/?model=test-tiny-random.gguf`): annotations survive a
// reload, a bad JSONL file is reported line by line with nothing lost, JSONL round-trips, two
// LoRA steps give a loss chart and a saved adapter, Compare streams base and tuned and draws each
// model's verdict distribution, Calibrate summarises a 2-item benchmark, Agreement measures base
// and tuned on the held-out record, and no request leaves the origin. It also saves a screenshot
// of each panel (1366×768), and of the agreement table, into docs/screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODELS, openPage } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SHOTS = path.join(ROOT, 'docs', 'screenshots');
const TINY = 'test-tiny-random.gguf';
let session, page, origin, requests;
const pageErrors = [];

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  execFileSync(CQA, ['--model', path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf'), 'debug-tiny-gguf', '--out', path.join(MODELS, TINY), '--seed', '3']);
  mkdirSync(SHOTS, { recursive: true });
  session = await openPage(`?model=${TINY}`);
  ({ page, origin, requests } = session);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  page.on('dialog', (d) => d.accept());
  await session.goto();
});

after(async () => {
  await session?.close();
});

const idle = (timeout = 300_000) => page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout });
const count = () => page.$$eval('#ann-list li .ann-item', (b) => b.length);
const tab = async (name) => { await page.click(`#tab-${name}`); await page.evaluate(() => window.scrollTo(0, 0)); };
const shot = async (name, scrollTo) => {
  // Below the sticky tab bar.
  await page.evaluate((sel) => window.scrollTo(0, sel ? document.querySelector(sel).getBoundingClientRect().top + window.scrollY - 56 : 0), scrollTo || null);
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
};
const saved = () => page.waitForFunction(() => document.getElementById('ann-saved').dataset.state === 'saved', null, { timeout: 30_000 });

async function downloadText(selector) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  return readFileSync(await dl.path(), 'utf8');
}

test('loads the tiny model from the URL parameter on WebGPU', { timeout: 200_000 }, async () => {
  await idle(180_000);
  assert.match(await page.textContent('#badge-backend'), /WebGPU/);
  assert.match(await page.textContent('#model-info'), /tiny-random/);
  assert.match(await page.textContent('#backend-line'), /WebGPU/);
});

test('loads the bundled samples, edits one, and finds the edit after a reload', { timeout: 200_000 }, async () => {
  await tab('annotate');
  await page.click('#ann-samples');
  await page.waitForFunction(() => document.querySelectorAll('#ann-list .ann-item').length === 30, null, { timeout: 30_000 });
  await page.click('#ann-list li:nth-child(2) .ann-item');
  assert.equal(await page.inputValue('#f-id'), 'ann-002');
  await page.fill('#f-summary', 'Edited in the browser test.');
  // A reasoning step moved down and retagged: the order and tag must survive too.
  const first = await page.inputValue('#f-steps li:nth-child(1) textarea');
  await page.click('#f-steps li:nth-child(1) button[aria-label="Move step 1 down"]');
  await page.selectOption('#f-steps li:nth-child(2) select', 'audience');
  await saved();
  await page.waitForFunction(() => /[0-9]+ steps/.test(document.getElementById('cov-list').textContent));
  assert.match(await page.textContent('#cov-list'), /craft/);
  await shot('annotate');

  await page.reload();
  await page.waitForFunction(() => document.querySelectorAll('#ann-list .ann-item').length === 30, null, { timeout: 60_000 });
  assert.equal(await page.inputValue('#f-id'), 'ann-002');
  assert.equal(await page.inputValue('#f-summary'), 'Edited in the browser test.');
  assert.equal(await page.inputValue('#f-steps li:nth-child(2) textarea'), first);
  assert.equal(await page.inputValue('#f-steps li:nth-child(2) select'), 'audience');
  await idle(180_000); // the model comes back from this browser's cache
});

test('a bad JSONL file is reported line by line and nothing is lost', { timeout: 60_000 }, async () => {
  await tab('annotate');
  const good = readFileSync(path.join(ROOT, 'data/samples/annotations.jsonl'), 'utf8').split('\n')[0].replace('"ann-001"', '"imp-001"');
  const bad = [good, '{"schema": 1, "id": "broken"', JSON.stringify({ ...JSON.parse(good), id: 'imp-002', reasoning: [{ dimension: 'style', text: 'x' }] })].join('\n');
  await page.setInputFiles('#ann-import', { name: 'bad.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(bad) });
  await page.waitForSelector('#ann-import-report:not([hidden])', { timeout: 30_000 });
  const errors = await page.$$eval('#ann-import-errors li', (lis) => lis.map((li) => li.textContent));
  assert.ok(errors.some((e) => /^line 2/.test(e)), errors.join(' | '));
  assert.ok(errors.some((e) => /^line 3: reasoning\[0\]\.dimension/.test(e)), errors.join(' | '));
  assert.match(await page.textContent('#ann-import-summary'), /Nothing was imported/);
  assert.equal(await page.textContent('#ann-import-valid'), 'Import the 1 valid record');
  assert.equal(await count(), 30);
  await page.click('#ann-import-dismiss');
  assert.equal(await count(), 30);
});

test('JSONL export and re-import give the same data back', { timeout: 60_000 }, async () => {
  await tab('annotate');
  const exported = await downloadText('#ann-export');
  assert.equal(exported.trim().split('\n').length, 30);
  assert.match(exported, /Edited in the browser test\./);
  await page.click('#ann-delete-all');
  await page.waitForFunction(() => document.querySelectorAll('#ann-list .ann-item').length === 0);
  await page.setInputFiles('#ann-import', { name: 'back.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(exported) });
  await page.waitForFunction(() => document.querySelectorAll('#ann-list .ann-item').length === 30, null, { timeout: 30_000 });
  await saved();
  const again = await downloadText('#ann-export');
  assert.equal(again, exported);
});

test('trains two LoRA steps with a live loss chart and saves the adapter', { timeout: 400_000 }, async () => {
  await tab('train');
  // 3 records, one held out → 2 training records, batch 1, one epoch: 2 steps.
  for (const [id, v] of [['#t-limit', '3'], ['#t-rank', '2'], ['#t-alpha', '4'], ['#t-maxlen', '320'], ['#t-batch', '1'],
    ['#t-accum', '1'], ['#t-epochs', '1'], ['#t-heldout', '0.34'], ['#t-evalevery', '1']]) await page.fill(id, v);
  const t0 = Date.now();
  await page.click('#t-start');
  await page.waitForFunction(() => document.querySelector('#adapter-list li.adapter') || document.getElementById('train-error').textContent, null, { timeout: 380_000 });
  console.log(`2 LoRA steps in the app: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(await page.textContent('#train-error'), '');
  assert.equal(await page.textContent('#m-step'), '2 / 2');
  assert.match(await page.textContent('#m-heldout'), /\d/);
  assert.ok(await page.$('#loss-chart canvas'), 'the loss chart is drawn');
  assert.match(await page.getAttribute('#loss-chart', 'aria-label'), /2 steps/);
  assert.match(await page.textContent('#adapter-list'), /r 2, α 4/);
  await shot('train');
});

test('an adapter exports as a PEFT zip and imports back', { timeout: 120_000 }, async () => {
  await tab('train');
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#adapter-list li.adapter:first-child button:has-text("Export PEFT zip")')]);
  const zip = readFileSync(await dl.path());
  assert.equal(zip.subarray(0, 2).toString(), 'PK');
  assert.ok(zip.includes(Buffer.from('adapter_config.json')) && zip.includes(Buffer.from('adapter_model.safetensors')));
  await page.setInputFiles('#adapter-import', { name: 'adapter.zip', mimeType: 'application/zip', buffer: zip });
  await page.waitForFunction(() => document.querySelectorAll('#adapter-list li.adapter').length === 2 || document.getElementById('adapter-error').textContent, null, { timeout: 100_000 });
  assert.equal(await page.textContent('#adapter-error'), '');
  assert.match(await page.textContent('#adapter-list li.adapter:first-child'), /Imported/);
  // A file that is not an adapter is refused in words, and nothing is added.
  await page.setInputFiles('#adapter-import', { name: 'notes.zip', mimeType: 'application/zip', buffer: Buffer.from('not a zip') });
  await page.waitForFunction(() => document.getElementById('adapter-error').textContent.length > 0);
  assert.match(await page.textContent('#adapter-error'), /not a readable zip/);
  assert.equal(await page.$$eval('#adapter-list li.adapter', (l) => l.length), 2);
});

test('Compare streams base and tuned side by side', { timeout: 300_000 }, async () => {
  await tab('compare');
  await page.check('input[name="c-mode"][value="appreciation"]');
  await page.selectOption('#c-pick', { index: 1 });
  // The newest adapter is chosen: the one just imported back from its zip.
  assert.match(await page.$eval('#c-adapter', (s) => s.selectedOptions[0].textContent), /imported/);
  await page.fill('#c-max', '6');
  await page.fill('#c-temp', '0.7');
  await page.click('#c-run');
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready'
    && document.getElementById('c-base').textContent.length > 0, null, { timeout: 280_000 });
  assert.equal(await page.textContent('#compare-error'), '');
  assert.ok((await page.textContent('#c-base')).trim().length > 0);
  assert.ok((await page.textContent('#c-tuned')).trim().length > 0);
  assert.match(await page.textContent('#c-tuned-stats'), /6 tokens/);
  // Each model's verdict as a distribution over 1–10 after its critique: ten bars each, the
  // expected scores in words, the picked record's expert score marked, the numbers as text.
  const verdicts = await page.$$eval('#c-verdict .verdict-expected', (ps) => ps.map((p) => [p.dataset.series, p.dataset.state, p.textContent]));
  assert.deepEqual(verdicts.map(([s, state]) => [s, state]), [['base', 'done'], ['tuned', 'done']], JSON.stringify(verdicts));
  for (const side of ['base', 'tuned']) {
    assert.equal(await page.$$eval(`#c-verdict svg rect.vbar[data-series="${side}"]`, (r) => r.length), 10);
    assert.match(await page.textContent(`#c-verdict .verdict-expected[data-series="${side}"]`), /expected score \d+\.\d/);
    assert.ok(await page.$(`#c-verdict svg text.vexp-label.vexp-${side}`), `the ${side} expected score is marked`);
  }
  assert.ok(await page.$('#c-verdict svg .vexpert-band'), 'the expert’s score of the picked record is marked');
  assert.match(await page.getAttribute('#c-verdict svg', 'aria-label'), /Base: 1: \d\.\d\d, 2: .*Tuned: 1: \d\.\d\d/);
  // The per-token shift of a passage, with each token's numbers on hover.
  await page.click('#s-use-work');
  await page.click('#s-run');
  await page.waitForSelector('#s-result:not([hidden]) .heatmap .tok', { timeout: 120_000 });
  assert.match(await page.getAttribute('#s-result .heatmap .tok:nth-child(2)', 'title'), /base .* bits, tuned .* bits, shift/);
  await shot('compare', '#out-base-title');
});

test('Calibrate runs an imported 2-item benchmark and shows the summary', { timeout: 300_000 }, async () => {
  await tab('calibrate');
  const items = readFileSync(path.join(ROOT, 'data/benchmarks/calibration.jsonl'), 'utf8').split('\n').filter(Boolean);
  const two = [items.find((l) => l.includes('"literary"')), items.find((l) => l.includes('"factual"'))].join('\n');
  await page.setInputFiles('#cal-import', { name: 'two-items.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(two) });
  await page.waitForFunction(() => document.getElementById('cal-source-imported').checked, null, { timeout: 30_000 });
  assert.match(await page.textContent('#cal-bench-status'), /2 items/);
  await page.click('#cal-run');
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready'
    && !document.getElementById('cal-export-json').disabled, null, { timeout: 280_000 });
  assert.equal(await page.textContent('#cal-error'), '');
  const rows = await page.$$eval('#cal-summary tbody tr', (trs) => trs.map((tr) => tr.textContent));
  assert.equal(rows.length, 2, rows.join(' | '));
  assert.ok(rows[0].startsWith('literary') && rows[1].startsWith('factual'), rows.join(' | '));
  assert.equal(await page.$$eval('#cal-items tbody tr', (trs) => trs.length), 2);
  assert.match(await page.textContent('#cal-summary-of'), /Δ\(ΔI\)/);
  assert.ok(await page.$('#cal-heatmap .heatmap .tok'), 'the first item’s tokens are shown');
  const report = JSON.parse(await downloadText('#cal-export-json'));
  assert.equal(report.items.length, 2);
  assert.ok(Number.isFinite(report.items[0].delta_delta_i_bits));
  await shot('calibrate');
});

test('Agreement measures base and tuned on the held-out record in direct mode', { timeout: 200_000 }, async () => {
  await tab('calibrate');
  // The training run above held one record out; the adapter it saved is chosen.
  assert.ok(await page.isChecked('#ag-records-held'), await page.textContent('#ag-source-note'));
  assert.match(await page.textContent('#ag-source-note'), /held out 1 record /);
  assert.match(await page.$eval('#ag-adapter', (s) => s.selectedOptions[0].textContent), /the last training run/);
  await page.check('input[name="ag-mode"][value="direct"]');
  const t0 = Date.now();
  await page.click('#ag-run');
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready'
    && (!document.getElementById('ag-export').disabled || document.getElementById('ag-error').textContent), null, { timeout: 180_000 });
  console.log(`agreement on 1 held-out record, direct mode: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(await page.textContent('#ag-error'), '');
  const cell = (m, c) => page.textContent(`#ag-table tr[data-measure="${m}"] td[data-col="${c}"]`);
  for (const m of ['mae', 'within_1', 'log_loss', 'nll']) {
    for (const c of ['base', 'tuned']) assert.match(await cell(m, c), /\d/, `${m} ${c}`);
  }
  assert.match(await cell('mae', 'diff'), /95 % CI \[[−+±]\d[\d.]*, [−+±]\d[\d.]*\]/);
  // One record: ρ is undefined, and the page says why in words.
  assert.equal(await cell('spearman', 'base'), 'undefined');
  const note = await page.textContent('#ag-note');
  assert.match(note, /at least two records/);
  assert.match(note, /paired bootstrap, \d+ resamples/);
  const report = JSON.parse(await downloadText('#ag-export'));
  assert.equal(report.summary.mode, 'direct');
  assert.equal(report.summary.base.agreement.n, 1);
  assert.equal(report.records.length, 1);
  assert.ok(Number.isFinite(report.summary.tuned_minus_base.mae.ci_low));
  await shot('agreement', '#ag-title');
});

test('works offline: a reload with the server gone still loads the app and the model', { timeout: 200_000 }, async () => {
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 60_000 });
  await session.stopServer();
  await page.context().setOffline(true);
  await page.evaluate(() => { window.beforeReload = true; });
  await page.reload();
  assert.equal(await page.evaluate(() => window.beforeReload), undefined, 'the page really reloaded');
  await idle(180_000);
  assert.match(await page.textContent('#model-info'), /tiny-random/);
  assert.match(await page.textContent('#model-status'), /from this browser’s cache/);
  await page.click('#tab-annotate');
  assert.equal(await count(), 30);
});

test('no request leaves the origin and the page logs no errors', () => {
  const foreign = requests.filter((u) => !u.startsWith(origin) && !u.startsWith(`blob:${origin}`));
  assert.deepEqual(foreign, []);
  assert.deepEqual(pageErrors, []);
});
