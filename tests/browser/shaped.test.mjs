// Models past the default, in headless Chromium: random-weight GGUFs with the true shapes of
// Qwen2.5-0.5B (all Q8_0) and Qwen2.5-1.5B (a Q4_K_M-like mix), made by scripts/shaped_gguf.py.
// Random weights judge nothing, but they take the memory and time of the real models.
//
// On the engine's CPU path (wasm; what a browser without WebGPU runs) the weights stay in their
// stored blocks, so both load, score and generate, and the 0.5B trains two QLoRA steps with the
// losses of the native CPU run. On WebGPU they stay stored too (GPU buffers of the file's words):
// the 0.5B loads, scores and generates there, and a model past the memory budget is refused
// from its header, with the loaded model kept.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { DIST, ROOT, openEngine, openPage, shortRecords, scratchDir } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const PYTHON = process.env.CQA_REF_PYTHON || path.join(homedir(), '.cache/cqa-studio/venv-ref/bin/python');
const SMALL = 'models/shaped-qwen2.5-0.5b.Q8_0.gguf';
const LARGE = 'models/shaped-qwen2.5-1.5b.Q4_K_M.gguf';
const TINY = 'test-tiny-random.gguf';
const TEXT = 'The river ran slowly past the mill, carrying leaves and the reflections of clouds.';

function make(file, shape, quant) {
  const out = path.join(DIST, file);
  // Deterministic (seed 0), so a file left by an earlier run is the same file.
  if (!existsSync(out)) execFileSync(PYTHON, [path.join(ROOT, 'scripts/shaped_gguf.py'), '--shape', shape, '--quant', quant, '--out', out], { stdio: 'inherit' });
  return out;
}

let engine;

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  make(SMALL, 'qwen2.5-0.5b', 'q8_0');
  make(LARGE, 'qwen2.5-1.5b', 'q4_k_m');
  engine = await openEngine({ preferGpu: false });
  assert.equal(engine.backend, 'cpu');
});

after(async () => {
  await engine?.close();
});

/** Loads `file` in an engine's page, scores `text` and generates `tokens` greedily after `prompt`. */
async function loadScoreGenerate(file, tokens, { on = engine, text = TEXT, prompt = 'The old lighthouse keeper' } = {}) {
  return on.page.evaluate(async ({ file, text, tokens, prompt }) => {
    const t0 = performance.now();
    // As the app's engine worker reads a file: streamed into the engine (lib/model-files.js).
    const { streamIntoEngine } = await import(new URL('lib/model-files.js', document.baseURI).href);
    const res = await fetch(file);
    const upload = await streamIntoEngine(window.cqa, { body: () => res.body, size: Number(res.headers.get('Content-Length')) }, () => {});
    const model = window.cqa.WebModel.loadUpload(upload);
    const t1 = performance.now();
    const info = model.info();
    const score = await model.score(text, null);
    const t2 = performance.now();
    model.startGeneration(prompt, false, { max_new_tokens: tokens, temperature: 0 });
    const ids = [];
    for (;;) {
      const step = await model.nextToken();
      if (step.done) break;
      ids.push(step.text);
    }
    const t3 = performance.now();
    model.free();
    return { info, logprobs: score.logprobs, generated: ids.length, seconds: [t1 - t0, t2 - t1, t3 - t2].map((ms) => ms / 1000), wasmBytes: window.cqaWasm.memory.buffer.byteLength };
  }, { file, text, tokens, prompt });
}

function checkStored(r, file) {
  const fileBytes = statSync(path.join(DIST, file)).size;
  assert.equal(r.info.weights, 'stored');
  assert.equal(r.info.file_bytes, fileBytes);
  // Resident within 1.15× of the file, and far below f32.
  assert.ok(r.info.weight_bytes_resident <= 1.15 * fileBytes, `${r.info.weight_bytes_resident} resident for a ${fileBytes}-byte file`);
  assert.ok(r.info.weight_bytes_resident < r.info.weight_bytes_f32 / 3);
  assert.ok(r.logprobs.length > 10 && r.logprobs.every((l) => Number.isFinite(l) && l <= 0), JSON.stringify(r.logprobs.slice(0, 5)));
}

test('a Qwen2.5-0.5B-shaped Q8_0 model loads, scores and generates on the CPU path, weights as stored', { timeout: 900_000 }, async () => {
  const r = await loadScoreGenerate(SMALL, 4);
  console.log(`0.5B Q8_0 on the wasm CPU path: load ${r.seconds[0].toFixed(1)} s, score ${r.logprobs.length} tokens ${r.seconds[1].toFixed(1)} s, 4 tokens ${r.seconds[2].toFixed(1)} s; ${(r.info.weight_bytes_resident / 1e6).toFixed(0)} MB resident (f32: ${(r.info.weight_bytes_f32 / 1e6).toFixed(0)} MB)`);
  checkStored(r, SMALL);
  assert.equal(r.info.parameters, 494032768);
  assert.equal(r.generated, 4);
});

test('the 0.5B-shaped model trains two QLoRA steps in the browser with the native run\'s losses', { timeout: 1_200_000 }, async () => {
  // Two records cut short (a sentence of the work, one reasoning step), one per step: about 130
  // tokens each, so SwiftShader-free but single-threaded wasm trains a 0.5B model in minutes.
  const records = shortRecords(2);
  const out = scratchDir('cqa-qlora-');
  const data = path.join(out, 'short.jsonl');
  writeFileSync(data, records);
  const config = {
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] },
    learning_rate: 0.01, epochs: 1, batch_size: 1, grad_accum: 1, max_len: 256, held_out: 0, seed: 42,
  };
  const native = execFileSync(CQA, ['--model', path.join(DIST, SMALL), 'train', '--data', data, '--out', path.join(out, 'run'),
    '--rank', '4', '--alpha', '8', '--dropout', '0', '--targets', 'q_proj,v_proj', '--lr', '0.01', '--epochs', '1', '--batch', '1',
    '--grad-accum', '1', '--max-len', '256', '--held-out', '0', '--seed', '42', '--json']).toString().trim().split('\n').map((l) => JSON.parse(l));
  const nativeLosses = native.filter((e) => e.kind === 'step').map((e) => e.loss);
  assert.equal(nativeLosses.length, 2);

  const t0 = Date.now();
  const web = await engine.page.evaluate(async ({ file, records, config }) => {
    const bytes = new Uint8Array(await (await fetch(file)).arrayBuffer());
    const model = window.cqa.WebModel.loadGguf(bytes);
    const trainer = new window.cqa.WebTrainer(model, new TextEncoder().encode(records), config, false);
    const events = [];
    const outcome = await trainer.run((e) => { events.push(e); }, 1);
    model.free();
    return { outcome, losses: events.filter((e) => e.kind === 'step').map((e) => e.loss) };
  }, { file: SMALL, records, config });
  console.log(`0.5B: 2 QLoRA steps (batch 1, ~130 tokens) in the browser in ${((Date.now() - t0) / 1000).toFixed(1)} s; losses native ${nativeLosses.map((l) => l.toFixed(5))} vs browser ${web.losses.map((l) => l.toFixed(5))}`);
  assert.equal(web.outcome, 'finished');
  assert.equal(web.losses.length, 2);
  for (let i = 0; i < 2; i++) {
    const rel = Math.abs(web.losses[i] - nativeLosses[i]) / nativeLosses[i];
    assert.ok(rel < 1e-4, `step ${i + 1}: browser ${web.losses[i]} vs native ${nativeLosses[i]}`);
  }
});

test('a Qwen2.5-1.5B-shaped Q4_K_M-like model loads, scores and generates on the CPU path, in an engine memory of at most 1.2× the file', { timeout: 900_000 }, async () => {
  // A page of its own: the engine's memory only grows, so its size after this model is this
  // model's peak (the file streamed in once, weights as ranges of it, scoring's buffers).
  const fresh = await openEngine({ preferGpu: false });
  let r;
  try {
    r = await loadScoreGenerate(LARGE, 2, { on: fresh });
  } finally {
    await fresh.close();
  }
  const fileBytes = statSync(path.join(DIST, LARGE)).size;
  console.log(`1.5B Q4_K_M-like on the wasm CPU path: load ${r.seconds[0].toFixed(1)} s, score ${r.logprobs.length} tokens ${r.seconds[1].toFixed(1)} s, 2 tokens ${r.seconds[2].toFixed(1)} s; ${(r.info.weight_bytes_resident / 1e6).toFixed(0)} MB resident (f32: ${(r.info.weight_bytes_f32 / 1e6).toFixed(0)} MB); engine memory ${(r.wasmBytes / 2 ** 20).toFixed(0)} MiB for a ${(fileBytes / 2 ** 20).toFixed(0)} MiB file`);
  assert.ok(r.wasmBytes <= 1.2 * fileBytes, `engine memory ${r.wasmBytes} for a ${fileBytes}-byte file`);
  checkStored(r, LARGE);
  assert.deepEqual(r.info.tensor_types, { F32: 141, Q4_K: 140, Q6_K: 57 });
  assert.equal(r.generated, 2);
});

test('on WebGPU the 0.5B-shaped model loads with its weights as stored in GPU buffers, scores and generates like the CPU path', { timeout: 900_000 }, async () => {
  // SwiftShader runs WebGPU on the CPU, where each pass over 0.5B weights takes seconds: a text
  // and a prompt of a few tokens keep every product on the matrix-vector kernel (the default
  // model's WebGPU test covers the dequantize-and-matmul path).
  const gpu = await openEngine({ preferGpu: true });
  try {
    assert.equal(gpu.backend, 'webgpu');
    const short = { text: 'The river ran slowly', prompt: 'The old' };
    const r = await loadScoreGenerate(SMALL, 1, { on: gpu, ...short });
    console.log(`0.5B Q8_0 on WebGPU (SwiftShader): load ${r.seconds[0].toFixed(1)} s, score ${r.logprobs.length} tokens ${r.seconds[1].toFixed(1)} s, 1 token ${r.seconds[2].toFixed(1)} s; ${(r.info.weight_bytes_resident / 1e6).toFixed(0)} MB resident (f32: ${(r.info.weight_bytes_f32 / 1e6).toFixed(0)} MB)`);
    assert.equal(r.info.weights, 'stored');
    assert.equal(r.generated, 1);
    const cpu = await loadScoreGenerate(SMALL, 1, short);
    const diff = Math.max(...r.logprobs.map((l, i) => Math.abs(l - cpu.logprobs[i])));
    console.log(`0.5B: max |Δ logprob| WebGPU vs the wasm CPU path = ${diff.toExponential(2)}`);
    assert.equal(r.logprobs.length, cpu.logprobs.length);
    assert.ok(r.logprobs.length >= 3 && diff < 1e-3, `${diff}`);
    assert.equal(r.info.weight_bytes_resident, cpu.info.weight_bytes_resident);
  } finally {
    await gpu.close();
  }
});

test('on WebGPU a model past the memory budget is refused from its header with its need and the limit; the loaded model stays', { timeout: 300_000 }, async () => {
  if (!existsSync(path.join(DIST, 'models', TINY))) execFileSync(CQA, ['debug-tiny-gguf', '--out', path.join(DIST, 'models', TINY), '--seed', '3']);
  // The 1.5B's ~1 GiB of stored weights (Q6_K read from its blocks: 212 bytes a super-block for
  // 210) fit the default 2 GiB; a 512 MiB budget does not.
  const session = await openPage(`?model=${TINY}&memory-budget-mb=512`);
  try {
    const { page } = session;
    await session.goto();
    await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 240_000 });
    assert.equal(await page.evaluate(() => window.cqaStudio.app.state.backend), 'webgpu');
    const loaded = await page.evaluate(() => window.cqaStudio.app.state.modelName);
    await page.click('#tab-model');
    await page.setInputFiles('#model-files', path.join(DIST, LARGE));
    await page.waitForFunction(() => document.getElementById('model-error').textContent.trim().length > 0, null, { timeout: 120_000 });
    const error = await page.textContent('#model-error');
    console.log(`refused: ${error}`);
    assert.match(error, new RegExp(`^Could not load “${path.basename(LARGE).replace(/\./g, '\\.')}”: This model needs about 988\\.1 MiB of GPU memory for its weights \\(kept as the file stores them\\), more than the 512\\.0 MiB memory budget for WebGPU \\(the budget set for this session\\)\\. The previous model \\(${loaded.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\) is still loaded\\.$`));
    assert.equal(await page.evaluate(() => window.cqaStudio.app.state.modelName), loaded);
  } finally {
    await session.close();
  }
});
