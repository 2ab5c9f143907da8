// Hostile model files in the app (headless Chromium, WebGPU via SwiftShader): a GGUF whose
// metadata array claims 2^31 items, and a model whose chat template nests two 10^4 loops. Each is
// refused with a sentence within seconds, the model loaded before stays loaded, and the page
// stays usable.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
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
