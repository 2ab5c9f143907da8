// The files people download open in the browser: random-weight models with SmolLM2-135M's widths
// in llama.cpp's Q4_K_M mix (its rows of 576 fall back to Q5_0 and Q8_0, the 1536-wide ones are
// Q4_K and Q6_K) and in IQ4_XS (IQ4_NL where rows are not whole super-blocks), made by
// scripts/shaped_gguf.py. On the engine's CPU path every matrix stays in its stored blocks and
// the log-probs equal the native CLI's; on WebGPU the kernels read Q5_0, Q4_K, Q6_K, IQ4_NL and
// IQ4_XS from their words (nothing is converted, and the model card says so) and the log-probs
// equal the native engine's on wgpu.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { DIST, ROOT, openEngine } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const PYTHON = process.env.CQA_REF_PYTHON || path.join(homedir(), '.cache/cqa-studio/venv-ref/bin/python');
// Four of its 30 layers: every width, and so every format and kernel, in a seventh of the time
// (SwiftShader and lavapipe run each layer's kernels on the CPU).
const LAYERS = 4;
const FILES = {
  'q4_k_m': { file: `models/shaped-smollm2-135m-${LAYERS}l.Q4_K_M.gguf`, types: { F32: 9, Q5_0: 20, Q6_K: 4, Q8_0: 5 }, gpuHeldAs: {} },
  'iq4_xs': { file: `models/shaped-smollm2-135m-${LAYERS}l.IQ4_XS.gguf`, types: { F32: 9, IQ4_NL: 25, IQ4_XS: 4 }, gpuHeldAs: {} },
};
// A few tokens: on SwiftShader every product then takes the matrix-vector kernel, the path
// decoding runs on.
const TEXT = 'The river ran slowly past the mill';

function make(quant) {
  const out = path.join(DIST, FILES[quant].file);
  // Deterministic (seed 0), so a file left by an earlier run is the same file.
  if (!existsSync(out)) {
    execFileSync(PYTHON, [path.join(ROOT, 'scripts/shaped_gguf.py'), '--shape', 'smollm2-135m', '--layers', String(LAYERS), '--quant', quant, '--out', out], { stdio: 'inherit' });
  }
  return out;
}

function nativeScore(file, backend) {
  const out = execFileSync(CQA, ['--backend', backend, '--model', file, 'score', '--text', TEXT, '--json'], { cwd: ROOT });
  return JSON.parse(out.toString()).logprobs;
}

async function loadAndScore(engine, file) {
  return engine.page.evaluate(async ({ file, text }) => {
    const bytes = new Uint8Array(await (await fetch(file)).arrayBuffer());
    const model = window.cqa.WebModel.loadGguf(bytes);
    const info = model.info();
    const score = await model.score(text, null);
    model.free();
    return { info, logprobs: score.logprobs };
  }, { file, text: TEXT });
}

function maxDiff(a, b) {
  assert.equal(a.length, b.length);
  return Math.max(...a.map((x, i) => Math.abs(x - b[i])));
}

let cpu;

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  for (const quant of Object.keys(FILES)) make(quant);
  cpu = await openEngine({ preferGpu: false });
  assert.equal(cpu.backend, 'cpu');
});

after(async () => {
  await cpu?.close();
});

for (const [quant, { file, types }] of Object.entries(FILES)) {
  test(`a ${quant.toUpperCase()} SmolLM2-shaped file opens on the CPU path with every matrix as stored, scoring like the native CLI`, { timeout: 600_000 }, async () => {
    const web = await loadAndScore(cpu, file);
    const size = statSync(path.join(DIST, file)).size;
    assert.deepEqual(web.info.tensor_types, types);
    assert.deepEqual(web.info.held_as, {});
    assert.equal(web.info.weights, 'stored');
    // The file's own blocks: the weights take what the file takes (the norms are its only f32).
    assert.ok(web.info.weight_bytes_resident <= size, `${web.info.weight_bytes_resident} resident for a ${size}-byte file`);
    const native = nativeScore(path.join(DIST, file), 'cpu');
    const drift = maxDiff(web.logprobs, native);
    console.log(`${quant} on the wasm CPU path: ${(web.info.weight_bytes_resident / 1e6).toFixed(1)} MB resident for a ${(size / 1e6).toFixed(1)} MB file; max |Δ log-prob| vs native ${drift.toExponential(2)}`);
    assert.ok(drift < 1e-4, `${drift}`);
  });
}

test('on WebGPU both open with their weights in GPU buffers, read by the kernels from their blocks, and score like native wgpu', { timeout: 900_000 }, async () => {
  const gpu = await openEngine({ preferGpu: true });
  try {
    assert.equal(gpu.backend, 'webgpu');
    for (const [quant, { file, types, gpuHeldAs }] of Object.entries(FILES)) {
      const t0 = Date.now();
      const web = await loadAndScore(gpu, file);
      assert.deepEqual(web.info.tensor_types, types);
      assert.deepEqual(web.info.held_as, gpuHeldAs);
      assert.equal(web.info.weights, 'stored');
      const native = nativeScore(path.join(DIST, file), 'wgpu');
      const drift = maxDiff(web.logprobs, native);
      console.log(`${quant} on WebGPU (SwiftShader): load and score in ${((Date.now() - t0) / 1000).toFixed(1)} s, ${(web.info.weight_bytes_resident / 1e6).toFixed(1)} MB in GPU buffers; max |Δ log-prob| vs native wgpu ${drift.toExponential(2)}`);
      assert.ok(drift < 1e-3, `${quant}: ${drift}`);
    }
  } finally {
    await gpu.close();
  }
});
