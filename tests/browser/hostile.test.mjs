// Hostile model files in the app (headless Chromium, WebGPU via SwiftShader): a GGUF whose
// metadata array claims 2^31 items, and a model whose chat template nests two 10^4 loops. Each is
// refused with a sentence within seconds, the model loaded before stays loaded, and the page
// stays usable. Large hostile files are refused from their first bytes, never read whole: a
// 1.5 GiB GGUF with bad magic or an unknown version, a safetensors shard whose header claims
// 2^40 bytes, and a PEFT zip whose weights entry inflates to 1.2 GiB (inflated nowhere: refused
// by its declared size, off the page's thread, with no long task).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import zlib from 'node:zlib';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODELS, openPage, scratchDir } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DEFAULT_MODEL = path.join(ROOT, 'models/SmolLM2-135M-Instruct.Q4_1.gguf');
const TINY = 'test-tiny-random.gguf';
let session, page;
const pageErrors = [];

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  execFileSync(CQA, ['--model', DEFAULT_MODEL, 'debug-tiny-gguf', '--out', path.join(MODELS, TINY), '--seed', '3']);
  session = await openPage(`?model=${TINY}`);
  page = session.page;
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  await session.goto();
  await idle(180_000);
});

after(async () => {
  await session?.close();
});

const idle = (timeout = 120_000) => page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout });

/** GGUF v3 bytes: general.architecture = llama, then an array of `count` strings with no items. */
function hugeArrayGguf(count) {
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from('GGUF'));
  u32(3);   // version
  u64(0);   // tensors
  u64(2);   // metadata entries
  str('general.architecture'); u32(8); str('llama');
  str('tokenizer.ggml.tokens'); u32(9); u32(8); u64(count); // array of strings
  parts.push(Buffer.alloc(64));
  return Buffer.concat(parts);
}

/**
 * Offers files to a file input as the user would, each built in the page from a head (bytes) and
 * `mib` MiB of zeros after it, so that gigabyte files cost no memory in the test.
 */
function offerFiles(input, files) {
  return page.evaluate(({ input, files }) => {
    const zeros = new Blob([new Uint8Array(1 << 20)]);
    const dt = new DataTransfer();
    for (const f of files) {
      dt.items.add(new File([new Uint8Array(f.head), ...Array.from({ length: f.mib || 0 }, () => zeros)], f.name));
    }
    const el = document.getElementById(input);
    el.files = dt.files;
    el.dispatchEvent(new Event('change', { bubbles: true }));
  }, { input, files: files.map((f) => ({ ...f, head: [...f.head] })) });
}

/** Records every text the model panel's progress label shows from now on. */
const watchProgress = () => page.evaluate(() => {
  window.progressSeen = [];
  new MutationObserver(() => window.progressSeen.push(document.getElementById('model-progress-label').textContent))
    .observe(document.getElementById('model-progress-label'), { childList: true, characterData: true, subtree: true });
});

async function openModelFile(name, buffer) {
  await page.click('#tab-model');
  await page.setInputFiles('#model-files', { name, mimeType: 'application/octet-stream', buffer });
}

test('a GGUF whose metadata array claims 2^31 items is refused in seconds, and the loaded model stays', { timeout: 120_000 }, async () => {
  const t0 = Date.now();
  await openModelFile('huge-array.gguf', hugeArrayGguf(2 ** 31));
  await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 30_000 });
  const seconds = (Date.now() - t0) / 1000;
  const message = await page.textContent('#model-error');
  assert.match(message, /2147483648 items/);
  assert.doesNotMatch(message, /panicked|RuntimeError|unreachable|at .*\.js:\d+/);
  assert.ok(seconds < 20, `refused after ${seconds} s`);
  await idle();
  assert.match(await page.textContent('#model-info'), /tiny-random/);
});

test('a chat template with nested 10^4 loops is stopped with a sentence, and the page stays usable', { timeout: 400_000 }, async () => {
  const dir = scratchDir('cqa-hostile-');
  const template = path.join(dir, 'template.jinja');
  writeFileSync(template, '{% for a in range(10000) %}{% for b in range(10000) %}x{% endfor %}{% endfor %}');
  const out = path.join(dir, 'hostile-template.gguf');
  execFileSync(CQA, ['--model', DEFAULT_MODEL, 'debug-tiny-gguf', '--out', out, '--seed', '3', '--chat-template', template]);
  await openModelFile('hostile-template.gguf', readFileSync(out));
  await page.waitForFunction(() => /hostile-template/.test(document.getElementById('model-status').textContent + document.getElementById('model-info').textContent), null, { timeout: 180_000 });
  await idle();

  await page.click('#tab-compare');
  await page.check('input[name="c-mode"][value="generation"]');
  await page.fill('#c-prompt', 'Write one line about a ferry.');
  await page.fill('#c-max', '4');
  const t0 = Date.now();
  await page.click('#c-run');
  await page.waitForFunction(() => document.getElementById('compare-error').textContent.trim().length > 0, null, { timeout: 60_000 });
  const seconds = (Date.now() - t0) / 1000;
  assert.match(await page.textContent('#compare-error'), /chat template did more than \d+ steps of work/);
  assert.ok(seconds < 30, `stopped after ${seconds} s`);
  // Usable: the engine is idle again and the Annotate panel still takes a new record.
  await idle();
  await page.click('#tab-annotate');
  const before = await page.$$eval('#ann-list .ann-item', (b) => b.length);
  await page.click('#ann-new');
  await page.waitForFunction((n) => document.querySelectorAll('#ann-list .ann-item').length === n + 1, before, { timeout: 10_000 });
  assert.deepEqual(pageErrors.filter((e) => !/ResizeObserver/.test(e)), []);
});

test('a chat template that doubles a string 40 times is stopped at its memory bound, and the model stays loaded', { timeout: 400_000 }, async () => {
  const dir = scratchDir('cqa-hostile-');
  const template = path.join(dir, 'template.jinja');
  // 2^40 bytes in 40 steps: fuel alone would let it take the tab down.
  writeFileSync(template, "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}");
  const out = path.join(dir, 'doubling-template.gguf');
  execFileSync(CQA, ['--model', DEFAULT_MODEL, 'debug-tiny-gguf', '--out', out, '--seed', '3', '--chat-template', template]);
  await openModelFile('doubling-template.gguf', readFileSync(out));
  await page.waitForFunction(() => /doubling-template/.test(document.getElementById('model-status').textContent + document.getElementById('model-info').textContent), null, { timeout: 180_000 });
  await idle();

  await page.click('#tab-compare');
  await page.check('input[name="c-mode"][value="generation"]');
  await page.fill('#c-prompt', 'Write one line about a ferry.');
  await page.fill('#c-max', '4');
  await page.evaluate(() => { document.getElementById('compare-error').textContent = ''; });
  await page.click('#c-run');
  await page.waitForFunction(() => document.getElementById('compare-error').textContent.trim().length > 0, null, { timeout: 60_000 });
  assert.match(await page.textContent('#compare-error'), /chat template built more than 16 MiB of text for one prompt and was stopped/);
  // The engine was not lost: the same model is still loaded and scores a text.
  await idle();
  const r = await page.evaluate(() => window.cqaStudio.request('shift', { text: 'A ferry crosses the bay.', context: '', adapter: null }));
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(await page.evaluate(() => window.cqaStudio.app.state.modelIdentity?.name), 'doubling-template.gguf');
});

test('a 1.5 GiB GGUF with bad magic, or an unknown version, is refused from its first bytes', { timeout: 120_000 }, async () => {
  await page.click('#tab-model');
  for (const [name, head, expected] of [
    ['bad-magic.gguf', Buffer.from('GGML\x03\x00\x00\x00'), /not a GGUF file: expected magic `GGUF`, found "GGML"/i],
    ['bad-version.gguf', Buffer.from('GGUF\x07\x00\x00\x00'), /GGUF version 7 is not supported/],
  ]) {
    await page.evaluate(() => { document.getElementById('model-error').textContent = ''; });
    await watchProgress();
    const t0 = Date.now();
    await offerFiles('model-files', [{ name, head, mib: 1536 }]);
    await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 60_000 });
    const seconds = (Date.now() - t0) / 1000;
    assert.match(await page.textContent('#model-error'), expected);
    const progress = await page.evaluate(() => window.progressSeen);
    assert.deepEqual(progress.filter((t) => /^Reading/.test(t)), [], `${name} was read: ${progress.join(' | ')}`);
    assert.ok(seconds < 10, `${name} refused after ${seconds} s`);
    await idle();
    assert.match(await page.textContent('#model-info'), /tiny-random/);
  }
});

test('a safetensors shard whose header claims 2^40 bytes is refused before any file is read', { timeout: 120_000 }, async () => {
  await page.evaluate(() => { document.getElementById('model-error').textContent = ''; });
  await watchProgress();
  const header = Buffer.alloc(8);
  header.writeBigUInt64LE(2n ** 40n);
  const config = Buffer.from(JSON.stringify({ model_type: 'llama', vocab_size: 64, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, rms_norm_eps: 1e-5 }));
  await offerFiles('model-files', [
    { name: 'model.safetensors', head: header, mib: 1536 },
    { name: 'config.json', head: config },
    { name: 'tokenizer.json', head: Buffer.from('{}') },
  ]);
  await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 60_000 });
  assert.match(await page.textContent('#model-error'), /model\.safetensors is not a safetensors file the engine can read: its header claims 1099511627776 bytes/i);
  const progress = await page.evaluate(() => window.progressSeen);
  assert.deepEqual(progress.filter((t) => /^Reading/.test(t)), [], progress.join(' | '));
  await idle();
  assert.match(await page.textContent('#model-info'), /tiny-random/);
});

/** A zip (stored central directory, deflated entries) of `entries`: [{name, data, size}]. */
function zipOf(entries) {
  const locals = [];
  const central = [];
  let offset = 0;
  for (const { name, data, size, method } of entries) {
    const n = Buffer.from(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt16LE(method, 8);
    local.writeUInt32LE(data.length, 18); local.writeUInt32LE(size, 22); local.writeUInt16LE(n.length, 26);
    const dir = Buffer.alloc(46);
    dir.writeUInt32LE(0x02014b50, 0); dir.writeUInt16LE(20, 4); dir.writeUInt16LE(20, 6); dir.writeUInt16LE(method, 10);
    dir.writeUInt32LE(data.length, 20); dir.writeUInt32LE(size, 24); dir.writeUInt16LE(n.length, 28); dir.writeUInt32LE(offset, 42);
    locals.push(local, n, data);
    central.push(dir, n);
    offset += 30 + n.length + data.length;
  }
  const dirBytes = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(entries.length, 8); end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(dirBytes.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, dirBytes, end]);
}

test('a PEFT zip whose weights inflate to 1.2 GiB is refused off the page’s thread, with no long task', { timeout: 180_000 }, async () => {
  const size = 1200 * 2 ** 20;
  const bomb = zlib.deflateRawSync(Buffer.alloc(size), { level: 9 });
  const config = Buffer.from(JSON.stringify({ r: 2, lora_alpha: 4, target_modules: ['q_proj'], peft_type: 'LORA' }));
  const zip = zipOf([
    { name: 'adapter_config.json', data: config, size: config.length, method: 0 },
    { name: 'adapter_model.safetensors', data: bomb, size, method: 8 },
  ]);
  console.log(`zip bomb: ${(zip.length / 2 ** 20).toFixed(1)} MiB, inflating to ${size / 2 ** 20} MiB`);
  await page.click('#tab-train');
  await page.evaluate(() => {
    window.longTasks = [];
    new PerformanceObserver((list) => { for (const e of list.getEntries()) window.longTasks.push(e.duration); }).observe({ type: 'longtask' });
  });
  await page.setInputFiles('#adapter-import', { name: 'bomb.zip', mimeType: 'application/zip', buffer: zip });
  await page.waitForFunction(() => document.getElementById('adapter-error').textContent.trim().length > 0, null, { timeout: 120_000 });
  assert.match(await page.textContent('#adapter-error'), /^Adapter_model\.safetensors is 1200\.0 MiB, more than the 1024\.0 MiB an adapter's weights may take/);
  const longest = Math.max(0, ...await page.evaluate(() => window.longTasks));
  assert.ok(longest < 1000, `a long task of ${longest} ms`);
});

test('a checkpoint file whose checkpoint inflates to 1.6 GiB is refused in words, before it is inflated', { timeout: 180_000 }, async () => {
  const size = 1600 * 2 ** 20;
  const bomb = zlib.deflateRawSync(Buffer.alloc(size), { level: 9 });
  const run = Buffer.from(JSON.stringify({ format: 'cqa-run-checkpoint', version: 1, step: 1, run: {} }));
  const zip = zipOf([
    { name: 'run.json', data: run, size: run.length, method: 0 },
    { name: 'checkpoint.safetensors', data: bomb, size, method: 8 },
  ]);
  await page.click('#tab-train');
  await page.evaluate(() => { document.getElementById('train-error').textContent = ''; });
  await page.setInputFiles('#ckpt-file', { name: 'bomb.cqa-checkpoint.zip', mimeType: 'application/zip', buffer: zip });
  await page.waitForFunction(() => document.getElementById('train-error').textContent.trim().length > 0, null, { timeout: 120_000 });
  assert.equal(await page.textContent('#train-error'), 'Could not resume from bomb.cqa-checkpoint.zip: its checkpoint.safetensors is 1600.0 MiB, more than the 1536.0 MiB it may take.');
});

test('nothing thrown on the page by the hostile files', () => {
  assert.deepEqual(pageErrors.filter((e) => !/ResizeObserver/.test(e)), []);
});
