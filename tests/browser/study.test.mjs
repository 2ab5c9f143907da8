// A study, not just a run, in headless Chromium on the tiny random model and the CPU path
// (`?engine=cpu`): the bundled samples and the second annotator's records give the interval α
// the `krippendorff` package gives (0.85625) in the page, with the annotator filter and the blind
// mode; a study exported from one browser profile and imported into a fresh one holds identical
// records, adapters (the same weight bytes, so the same logits) and reports, and exports again
// to the same study; the report opens with no request outside its own file. It saves
// docs/screenshots/annotators.png and report.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { unzipSync, zipSync, strFromU8, strToU8 } from '../../www/node_modules/fflate/esm/index.mjs';
import { CHROMIUM_ARGS, MODELS, ROOT, openPage, scratchDir, shortRecords } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const TINY = 'test-tiny-random.gguf';
// krippendorff.alpha over the twelve works both annotators rated (data/README.md).
const ALPHA_INTERVAL = 0.85625;
const ALPHA_ORDINAL = 0.8387890220446812;
const scratch = scratchDir('cqa-study-');
let a, b;
let studyZip = null; // the study exported in the second test
const pageErrors = [];

const idle = (p, timeout = 240_000) => p.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout });
const listed = (p, n) => p.waitForFunction((n) => document.querySelectorAll('#ann-list .ann-item').length === n, n, { timeout: 60_000 });

async function open() {
  const s = await openPage(`?model=${TINY}&engine=cpu`);
  s.page.on('pageerror', (e) => pageErrors.push(String(e)));
  s.page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(m.text()); });
  s.page.on('dialog', (d) => d.accept());
  await s.goto();
  await idle(s.page);
  return s;
}

async function download(p, selector) {
  const [dl] = await Promise.all([p.waitForEvent('download'), p.click(selector)]);
  const file = path.join(scratch, dl.suggestedFilename());
  await dl.saveAs(file);
  return file;
}

/** What a profile holds: records by id, adapters (weights as hex digests), the kept reports. */
function stored(p) {
  return p.evaluate(async () => {
    const db = await new Promise((res, rej) => { const r = indexedDB.open('cqa-studio'); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const all = (store) => new Promise((res, rej) => { const r = db.transaction(store).objectStore(store).getAll(); r.onsuccess = () => res(r.result); r.onerror = () => rej(r.error); });
    const get = (key) => new Promise((res, rej) => { const r = db.transaction('kv').objectStore('kv').get(key); r.onsuccess = () => res(r.result ?? null); r.onerror = () => rej(r.error); });
    const hex = async (buf) => Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', buf)), (x) => x.toString(16).padStart(2, '0')).join('');
    const records = (await all('annotations')).map((r) => r.record).sort((x, y) => (x.id < y.id ? -1 : 1));
    const adapters = [];
    for (const x of await all('adapters')) {
      adapters.push({ name: x.name, settings: x.settings, history: x.history, config_json: x.config_json, weights: await hex(x.safetensors), bytes: x.safetensors.byteLength });
    }
    adapters.sort((x, y) => (x.weights < y.weights ? -1 : 1));
    return { records, adapters, calibration: await get('report-calibration'), appreciation: await get('report-appreciation') };
  });
}

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  const tiny = path.join(MODELS, TINY);
  execFileSync(CQA, ['--model', path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf'), 'debug-tiny-gguf', '--out', tiny, '--seed', '3']);
  // An adapter trained natively (2 steps) to carry through the study.
  writeFileSync(path.join(scratch, 'short.jsonl'), shortRecords(2));
  execFileSync(CQA, ['--model', tiny, 'train', '--data', path.join(scratch, 'short.jsonl'), '--out', path.join(scratch, 'adapter'), '--epochs', '1',
    '--batch', '1', '--grad-accum', '1', '--max-len', '256', '--held-out', '0', '--seed', '42', '--rank', '4']);
  a = await open();
});

after(async () => {
  await a?.close();
  await b?.close();
});

test('two annotators’ records give the krippendorff package’s α, and the Annotate panel shows who rated what', { timeout: 240_000 }, async () => {
  const p = a.page;
  await p.click('#tab-annotate');
  await p.click('#ann-samples');
  await listed(p, 30);
  await p.click('#ann-samples-second');
  await listed(p, 42);
  await p.click('#tab-calibrate');
  await p.waitForFunction(() => document.querySelector('#rt-alpha tr[data-alpha="interval"] td[data-value]')?.dataset.value, null, { timeout: 60_000 });
  const alpha = (kind) => p.$eval(`#rt-alpha tr[data-alpha="${kind}"] td[data-value]`, (td) => Number(td.dataset.value));
  assert.ok(Math.abs((await alpha('interval')) - ALPHA_INTERVAL) < 1e-9, `interval α ${await alpha('interval')}`);
  assert.ok(Math.abs((await alpha('ordinal')) - ALPHA_ORDINAL) < 1e-9, `ordinal α ${await alpha('ordinal')}`);
  assert.match(await p.textContent('#rt-status'), /4 annotators, 30 works, 12 rated by two or more/);
  assert.equal(await p.$$eval('#rt-chart svg circle', (c) => c.length), 4, 'one mark per human');

  // Who rated what, the filter, and the blind mode.
  await p.click('#tab-annotate');
  await p.selectOption('#ann-annotator', 'Hana Brandt');
  await listed(p, 12);
  await p.click('#ann-list .ann-item');
  assert.match(await p.textContent('#f-raters'), /Also rated by Dr\. Ines Calder: 9\/10 \(ann-001\)/);
  await p.check('#ann-blind');
  assert.match(await p.textContent('#f-raters'), /Also rated by 1 other annotator; their verdicts are hidden/);
  assert.doesNotMatch(await p.textContent('#f-raters'), /9\/10/);
  await p.uncheck('#ann-blind');
  await p.selectOption('#ann-annotator', '');
  await listed(p, 42);
});

test('a study exported from one profile and imported into a fresh one holds the same records, adapters and reports', { timeout: 600_000 }, async () => {
  const p = a.page;
  // The adapter, imported as PEFT files, and both reports, made in the page.
  await p.click('#tab-train');
  const dir = path.join(scratch, 'adapter');
  await p.setInputFiles('#adapter-import', [path.join(dir, 'adapter_config.json'), path.join(dir, 'adapter_model.safetensors')]);
  await p.waitForFunction(() => document.querySelectorAll('#adapter-list li.adapter').length === 1, null, { timeout: 60_000 });
  await p.click('#tab-calibrate');
  const items = readFileSync(path.join(ROOT, 'data/benchmarks/calibration.jsonl'), 'utf8').split('\n').filter(Boolean);
  const two = [items.find((l) => l.includes('"literary"')), items.find((l) => l.includes('"factual"'))].join('\n');
  await p.setInputFiles('#cal-import', { name: 'two-items.jsonl', mimeType: 'application/jsonl', buffer: Buffer.from(two) });
  await p.waitForFunction(() => document.getElementById('cal-source-imported').checked, null, { timeout: 30_000 });
  await p.selectOption('#cal-adapter', { index: 1 });
  await p.click('#cal-run');
  await p.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready' && !document.getElementById('cal-export-json').disabled, null, { timeout: 240_000 });
  await p.check('#ag-records-all');
  await p.check('input[name="ag-mode"][value="direct"]');
  await p.selectOption('#ag-adapter', { index: 1 });
  const t0 = Date.now();
  await p.click('#ag-run');
  await p.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready'
    && (!document.getElementById('ag-export').disabled || document.getElementById('ag-error').textContent), null, { timeout: 300_000 });
  console.log(`agreement with the expert on 42 records, base and tuned, direct mode: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(await p.textContent('#ag-error'), '');
  // The models now stand among the annotators: one square each, and leave-one-out rows.
  await p.waitForFunction(() => document.querySelectorAll('#rt-chart svg g[data-kind="model"]').length === 2, null, { timeout: 60_000 });
  assert.ok(await p.$$eval('#rt-models tr', (r) => r.length) >= 2);
  // The screenshot in the README: below the sticky tab bar.
  await p.evaluate(() => window.scrollTo(0, document.getElementById('rt-title').getBoundingClientRect().top + window.scrollY - 56));
  await p.screenshot({ path: path.join(ROOT, 'docs', 'screenshots', 'annotators.png') });

  await p.fill('#st-title', 'Lab 3');
  const zip = await download(p, '#st-export');
  studyZip = zip;
  assert.match(path.basename(zip), /^lab-3-\d{4}-\d{2}-\d{2}\.cqa-study\.zip$/);
  const entries = unzipSync(readFileSync(zip));
  const doc = JSON.parse(strFromU8(entries['study.json']));
  assert.equal(doc.format, 'cqa-study');
  assert.equal(doc.records.length, 42);
  assert.equal(doc.adapters.length, 1);
  assert.match(doc.model.sha256, /^[0-9a-f]{64}$/);
  assert.equal(doc.model.name, TINY);
  assert.ok(doc.reports.calibration && doc.reports.appreciation);
  // The same study document read natively: cqa report writes the same HTML the page does.
  const studyJson = path.join(scratch, 'study.json');
  writeFileSync(studyJson, strFromU8(entries['study.json']));
  const nativeReport = path.join(scratch, 'native-report.html');
  execFileSync(CQA, ['report', '--study', studyJson, '--out', nativeReport]);
  const pageReport = await download(p, '#st-report');
  const html = readFileSync(pageReport, 'utf8');
  const undated = (text) => text.replace(/Created [0-9T:.\-Z]+\./, '');
  assert.equal(undated(html), undated(readFileSync(nativeReport, 'utf8')));
  assert.match(html, /Krippendorff’s α/);

  // A fresh profile: import, then compare what it holds with the first.
  b = await open();
  await b.page.click('#tab-calibrate');
  await b.page.setInputFiles('#st-import', zip);
  await b.page.waitForFunction(() => /Imported/.test(document.getElementById('st-status').textContent) || document.getElementById('st-error').textContent, null, { timeout: 120_000 });
  assert.equal(await b.page.textContent('#st-error'), '');
  const [mine, theirs] = [await stored(p), await stored(b.page)];
  assert.equal(theirs.records.length, 42);
  assert.deepEqual(theirs.records, mine.records);
  assert.equal(theirs.adapters.length, 1);
  assert.deepEqual(theirs.adapters, mine.adapters);
  assert.deepEqual(theirs.calibration, mine.calibration);
  assert.deepEqual(theirs.appreciation, mine.appreciation);
  // Importing the same study again changes nothing and says so.
  await b.page.setInputFiles('#st-import', zip);
  await b.page.waitForFunction(() => /already here unchanged/.test(document.getElementById('st-notes').textContent), null, { timeout: 60_000 });
  assert.deepEqual(await stored(b.page), theirs);
  // And the fresh profile exports the same study.
  const again = unzipSync(readFileSync(await download(b.page, '#st-export')));
  const doc2 = JSON.parse(strFromU8(again['study.json']));
  for (const d of [doc, doc2]) { delete d.created; delete d.title; }
  assert.deepEqual(doc2, doc);
});

test('a bad or oversized study is refused in words, a foreign model is named, and nothing changes', { timeout: 120_000 }, async () => {
  const p = b.page;
  const before = await stored(p);
  const refused = async (name, buffer, pattern) => {
    await p.evaluate(() => { document.getElementById('st-error').textContent = ''; });
    await p.setInputFiles('#st-import', { name, mimeType: 'application/zip', buffer });
    await p.waitForFunction(() => document.getElementById('st-error').textContent, null, { timeout: 30_000 });
    assert.match(await p.textContent('#st-error'), pattern);
  };
  await refused('not-a-study.cqa-study.zip', Buffer.from('PK not really a zip'),
    /Could not import not-a-study\.cqa-study\.zip: it is not a readable zip archive.*Nothing was changed/);
  // 65 MiB of zeros packs into a small file: the directory's size is refused before unpacking.
  await refused('bomb.cqa-study.zip', Buffer.from(zipSync({ 'study.json': new Uint8Array(65 * 2 ** 20) }, { level: 9 })),
    /Could not import bomb\.cqa-study\.zip: its entry study\.json unpacks to 65 MiB, more than the 64 MiB allowed/);
  await refused('foreign.cqa-study.zip', Buffer.from(zipSync({ 'study.json': strToU8('{"format": "something-else"}') })),
    /not a study/);
  // The same study made with another model, with an entry a study does not hold: the model is
  // named, the entry skipped, and what is already here stays as it is.
  const entries = unzipSync(readFileSync(studyZip));
  const doc = JSON.parse(strFromU8(entries['study.json']));
  doc.model = { name: 'SmolLM2-360M-Instruct.Q8_0.gguf', size: 386404992, sha256: 'ab'.repeat(32) };
  entries['study.json'] = strToU8(JSON.stringify(doc));
  entries['../outside.txt'] = strToU8('not for us');
  await p.evaluate(() => { document.getElementById('st-error').textContent = ''; });
  await p.setInputFiles('#st-import', { name: 'other-model.cqa-study.zip', mimeType: 'application/zip', buffer: Buffer.from(zipSync(entries)) });
  await p.waitForFunction(() => /Imported other-model/.test(document.getElementById('st-status').textContent), null, { timeout: 60_000 });
  const notes = await p.textContent('#st-notes');
  assert.match(notes, /This study was made with SmolLM2-360M-Instruct\.Q8_0\.gguf \(386\.4 MB, SHA-256 abababababababab…\)\. The loaded model is test-tiny-random\.gguf: open SmolLM2-360M-Instruct\.Q8_0\.gguf in the Model panel/);
  assert.match(notes, /Skipped 1 entry a study does not hold \(\.\.\/outside\.txt\)/);
  assert.deepEqual(await stored(p), before);
});

test('the report opens offline with no request outside its own file', { timeout: 60_000 }, async () => {
  const file = path.join(scratch, 'native-report.html');
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium', args: CHROMIUM_ARGS });
  try {
    const context = await browser.newContext({ offline: true, viewport: { width: 1000, height: 1300 } });
    const page = await context.newPage();
    const requests = [];
    context.on('request', (r) => requests.push(r.url()));
    const errors = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    await page.goto(`file://${file}`);
    assert.equal(await page.$$eval('svg', (s) => s.length) >= 3, true, 'the charts are inline SVG');
    assert.match(await page.textContent('h1'), /Lab 3/);
    assert.deepEqual(requests, [`file://${file}`]);
    assert.deepEqual(errors, []);
    await page.evaluate(() => window.scrollTo(0, document.getElementById('agreement').getBoundingClientRect().top + window.scrollY - 16));
    await page.screenshot({ path: path.join(ROOT, 'docs', 'screenshots', 'report.png') });
  } finally {
    await browser.close();
  }
});

test('no page error in either profile', () => {
  assert.deepEqual(pageErrors, []);
});
