// Browser tests: the real wasm package in headless Debian Chromium, on WebGPU through SwiftShader
// (a CPU Vulkan driver), compared with the native CPU backend (`cqa`, built by `./x test`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openEngine } from './launch.mjs';

const CQA = process.env.CQA_BIN;
let session, page, origin, requests;

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  session = await openEngine();
  ({ page, origin, requests } = session);
  const { backend } = session;
  assert.equal(backend, 'webgpu', 'Chromium should expose WebGPU (SwiftShader)');
});

after(async () => {
  await session?.close();
});

const maxAbsDiff = (a, b) => {
  assert.equal(a.length, b.length);
  return a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);
};

test('WebGPU logits of a tiny random model match the native CPU backend', async () => {
  const ids = [5, 17, 3, 60, 42, 8, 8, 1, 33, 12, 0, 63];
  const native = JSON.parse(execFileSync(CQA, ['debug-tiny-logits', '--seed', '7', '--vocab', '64', '--ids', ids.join(',')]));
  const web = await page.evaluate(async (ids) => Array.from(await window.cqa.tinyModelLogits(7, 64, Uint32Array.from(ids))), ids);
  assert.equal(web.length, ids.length * 64);
  const diff = maxAbsDiff(web, native.logits);
  console.log(`tiny model: max |Δ logit| WebGPU vs CPU = ${diff.toExponential(2)}`);
  assert.ok(diff < 1e-4, `max |Δ logit| = ${diff}`);
  // The comparison can fail: another seed gives other logits.
  const other = await page.evaluate(async (ids) => Array.from(await window.cqa.tinyModelLogits(8, 64, Uint32Array.from(ids))), ids);
  assert.ok(maxAbsDiff(other, native.logits) > 1e-3);
});

test('the default model scores and generates in the browser as it does natively', { timeout: 900_000 }, async () => {
  const text = 'The tide came in over the stones.';
  const context = 'Write one sentence about the sea.';
  const native = JSON.parse(execFileSync(CQA, ['score', '--text', text, '--context', context, '--json']));
  const nativeGen = execFileSync(CQA, ['generate', '--prompt', 'The old lighthouse keeper', '--max-tokens', '6']).toString().trimEnd();
  const t0 = Date.now();
  const web = await page.evaluate(async ({ text, context }) => {
    const bytes = new Uint8Array(await (await fetch('/models/SmolLM2-135M-Instruct.Q4_1.gguf')).arrayBuffer());
    const model = window.cqa.WebModel.loadGguf(bytes);
    const info = model.info();
    const score = await model.score(text, context);
    model.startGeneration('The old lighthouse keeper', false, { max_new_tokens: 6, temperature: 0 });
    let generated = '';
    for (;;) {
      const step = await model.nextToken();
      if (step.done) break;
      generated += step.text;
    }
    return { info, score, generated };
  }, { text, context });
  console.log(`default model in the browser: load + score + 6 tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(web.info.parameters, 134515008);
  assert.deepEqual(web.score.text_ids, native.text_ids);
  assert.deepEqual(web.score.context_ids, native.context_ids);
  const diff = maxAbsDiff(web.score.logprobs, native.logprobs);
  console.log(`default model: max |Δ logprob| WebGPU vs CPU = ${diff.toExponential(2)}`);
  assert.ok(diff < 5e-3, `max |Δ logprob| = ${diff}`);
  assert.equal(web.generated, nativeGen);
});

test('verdict distributions in the browser match the native CLI (default model)', { timeout: 900_000 }, async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'cqa-verdict-'));
  const records = path.join(dir, 'one.jsonl');
  const line = readFileSync(new URL('../fixtures/lora_records.jsonl', import.meta.url), 'utf8').split('\n')[0];
  writeFileSync(records, `${line}\n`);
  const record = JSON.parse(line);
  for (const mode of ['direct', 'reasoning']) {
    const native = JSON.parse(execFileSync(CQA, ['appreciate', '--data', records, '--mode', mode, '--bootstrap', '10', '--json'])).records[0].base;
    const t0 = Date.now();
    const web = await page.evaluate(async ({ record, mode }) => {
      if (!window.defaultModel) {
        const bytes = new Uint8Array(await (await fetch('/models/SmolLM2-135M-Instruct.Q4_1.gguf')).arrayBuffer());
        window.defaultModel = window.cqa.WebModel.loadGguf(bytes);
      }
      const t = performance.now();
      const appraisal = await window.defaultModel.appraiseRecord(record, { mode });
      return { appraisal, ms: performance.now() - t };
    }, { record, mode });
    console.log(`verdict distribution, ${mode} prefix (${native.prefix.length} chars), default model on WebGPU (SwiftShader): ${(web.ms / 1000).toFixed(1)} s per record (${((Date.now() - t0) / 1000).toFixed(1)} s with load)`);
    assert.equal(web.appraisal.prefix, native.prefix);
    assert.deepEqual(web.appraisal.continuations, native.continuations);
    const diff = maxAbsDiff(web.appraisal.logprobs, native.logprobs);
    console.log(`  max |Δ verdict logprob| WebGPU vs CPU = ${diff.toExponential(2)}; expected ${web.appraisal.expected.toFixed(3)} vs ${native.expected.toFixed(3)}`);
    assert.ok(diff < 5e-3, `${mode}: max |Δ logprob| = ${diff}`);
    assert.ok(Math.abs(web.appraisal.p.reduce((a, b) => a + b, 0) - 1) < 1e-9);
  }
});

test('the page makes no request outside its own origin', () => {
  assert.ok(requests.length > 0);
  const foreign = requests.filter((u) => !u.startsWith(origin));
  assert.deepEqual(foreign, []);
});
