// Browser tests: the real wasm package in headless Debian Chromium, on WebGPU through SwiftShader
// (a CPU Vulkan driver), compared with the native CPU backend (`cqa`, built by `./x test`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { MODELS, openEngine, shortRecords, scratchDir } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
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
  const nativeGen = execFileSync(CQA, ['generate', '--prompt', 'The old lighthouse keeper', '--max-tokens', '6', '--f32-activations']).toString().trimEnd();
  const t0 = Date.now();
  const web = await page.evaluate(async ({ text, context }) => {
    const bytes = new Uint8Array(await (await fetch('models/SmolLM2-135M-Instruct.Q4_1.gguf')).arrayBuffer());
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
  // The weights sit in GPU buffers as the file's blocks (the CubeCL kernels read them), not as f32.
  assert.equal(web.info.weights, 'stored');
  console.log(`default model on WebGPU: ${web.info.weight_bytes_resident} bytes of weights resident, file ${web.info.file_bytes}`);
  assert.ok(web.info.weight_bytes_resident < 1.15 * web.info.file_bytes, `${web.info.weight_bytes_resident} resident`);
  assert.deepEqual(web.score.text_ids, native.text_ids);
  assert.deepEqual(web.score.context_ids, native.context_ids);
  const diff = maxAbsDiff(web.score.logprobs, native.logprobs);
  console.log(`default model: max |Δ logprob| WebGPU vs CPU = ${diff.toExponential(2)}`);
  assert.ok(diff < 5e-3, `max |Δ logprob| = ${diff}`);
  assert.equal(web.generated, nativeGen);
});

test('a decoded token on WebGPU: the fused step, counted at the WebGPU API, within its dispatch, submit and read-back budgets, greedy and sampled', { timeout: 900_000 }, async () => {
  // Counted where the page calls WebGPU, not by the engine: every dispatch, submit and buffer
  // read back while 8 tokens are decoded, greedy and then seeded sampling (picked on the GPU).
  const layers = 30;
  const prompt = 'The harbour at dawn';
  const sampled = { temperature: 0.8, top_k: 40, top_p: 0.9, repetition_penalty: 1.1, seed: 42 };
  const runs = [
    { name: 'greedy', params: { temperature: 0 }, cli: [] },
    {
      name: 'sampled',
      params: sampled,
      cli: ['--temperature', '0.8', '--top-k', '40', '--top-p', '0.9', '--repetition-penalty', '1.1', '--seed', '42'],
    },
  ];
  const texts = [];
  for (const run of runs) {
    const nativeGen = execFileSync(CQA, ['generate', '--prompt', prompt, '--max-tokens', '10', '--f32-activations', ...run.cli]).toString().trimEnd();
    const web = await page.evaluate(async ({ prompt, params }) => {
      const counts = { dispatches: 0, submits: 0, bytesRead: 0 };
      const wrap = (proto, name, count) => {
        const original = proto[name];
        proto[name] = function (...args) { count(this, args); return original.apply(this, args); };
        return () => { proto[name] = original; };
      };
      const unwrap = [
        wrap(GPUComputePassEncoder.prototype, 'dispatchWorkgroups', () => { counts.dispatches += 1; }),
        wrap(GPUQueue.prototype, 'submit', () => { counts.submits += 1; }),
        // Bytes copied into buffers the page can map for reading: what comes back to the host.
        wrap(GPUCommandEncoder.prototype, 'copyBufferToBuffer', (_, args) => {
          const [destination, size] = args.length <= 3 ? [args[1], args[2]] : [args[2], args[4]];
          if (destination.usage & GPUBufferUsage.MAP_READ) counts.bytesRead += size ?? destination.size;
        }),
      ];
      try {
        window.countedModel ??= window.cqa.WebModel.loadGguf(new Uint8Array(await (await fetch('models/SmolLM2-135M-Instruct.Q4_1.gguf')).arrayBuffer()));
        const model = window.countedModel;
        model.startGeneration(prompt, false, { max_new_tokens: 10, ...params });
        // The prompt's pass, then the first decode step, which also copies the prompt's keys and
        // values into the session's cache (once): neither is counted.
        let generated = (await model.nextToken()).text + (await model.nextToken()).text;
        Object.assign(counts, { dispatches: 0, submits: 0, bytesRead: 0 });
        const t = performance.now();
        let tokens = 0;
        for (;;) {
          const step = await model.nextToken();
          if (step.done) break;
          generated += step.text;
          tokens += 1;
        }
        return { counts: { ...counts }, tokens, ms: performance.now() - t, generated };
      } finally {
        unwrap.forEach((undo) => undo());
      }
    }, { prompt, params: run.params });
    assert.equal(web.tokens, 8, `${run.name}: eight tokens after the first`);
    const per = (n) => n / web.tokens;
    console.log(`${run.name} decode on WebGPU (SwiftShader): ${(web.tokens / (web.ms / 1000)).toFixed(2)} tok/s; a token: `
      + `${per(web.counts.dispatches)} dispatches, ${per(web.counts.submits)} submits, ${per(web.counts.bytesRead)} bytes read back`);
    assert.equal(web.generated, nativeGen, `${run.name}: the text of the native CPU engine with the same settings`);
    texts.push(web.generated);
    // At most 8 dispatches a layer and 6 for the embedding, head and pick; the id alone read back.
    // Submits: 2 a token (uploads and per-token uniforms are gone). Both are CubeCL's read: it
    // submits the stream's queued kernels, then the copy into the mappable buffer on its own
    // (cubecl-wgpu 0.11's `read` → `execute_streams`, then `read_resources`); the test holds that line.
    assert.ok(per(web.counts.dispatches) <= 8 * layers + 6, `${run.name}: ${per(web.counts.dispatches)} dispatches a token`);
    assert.ok(per(web.counts.submits) <= 2, `${run.name}: ${per(web.counts.submits)} submits a token`);
    assert.ok(per(web.counts.bytesRead) <= 64, `${run.name}: ${per(web.counts.bytesRead)} bytes read back a token`);
  }
  assert.notEqual(texts[0], texts[1], 'the sampled run did sample');
});

test('verdict distributions in the browser match the native CLI (tiny model, all three prefixes)', { timeout: 600_000 }, async () => {
  // The tiny random model with the real tokenizer and chat template: the same prompt, prefix and
  // continuation code as the default model, at a speed SwiftShader can test on every run (the
  // default model's cost in the browser is measured in BENCHMARKS.md).
  const tiny = path.join(MODELS, 'test-tiny-random.gguf');
  execFileSync(CQA, ['debug-tiny-gguf', '--out', tiny, '--seed', '3']);
  const line = readFileSync(path.join(ROOT, 'tests/fixtures/lora_records.jsonl'), 'utf8').split('\n')[0];
  const record = JSON.parse(line);
  const dir = scratchDir('cqa-verdict-');
  const records = path.join(dir, 'one.jsonl');
  writeFileSync(records, `${line}\n`);
  for (const mode of ['direct', 'reasoning', 'critique']) {
    const native = JSON.parse(execFileSync(CQA, ['--model', tiny, 'appreciate', '--data', records, '--mode', mode,
      '--max-tokens', '8', '--bootstrap', '10', '--json'])).records[0].base;
    const web = await page.evaluate(async ({ record, mode }) => {
      if (!window.tinyModel) {
        const bytes = new Uint8Array(await (await fetch('models/test-tiny-random.gguf')).arrayBuffer());
        window.tinyModel = window.cqa.WebModel.loadGguf(bytes);
      }
      const t = performance.now();
      const appraisal = await window.tinyModel.appraiseRecord(record, { mode, max_new_tokens: 8 });
      return { appraisal, ms: performance.now() - t };
    }, { record, mode });
    const diff = maxAbsDiff(web.appraisal.logprobs, native.logprobs);
    console.log(`verdict distribution, ${mode} prefix, tiny model on WebGPU: ${(web.ms / 1000).toFixed(1)} s; max |Δ logprob| vs CPU ${diff.toExponential(2)}`);
    assert.equal(web.appraisal.prefix, native.prefix, `${mode}: the same prefix text`);
    assert.deepEqual(web.appraisal.continuations, native.continuations);
    assert.equal(web.appraisal.critique, native.critique, `${mode}: the same greedy critique`);
    assert.ok(diff < 1e-3, `${mode}: max |Δ logprob| = ${diff}`);
    assert.ok(Math.abs(web.appraisal.p.reduce((a, b) => a + b, 0) - 1) < 1e-9);
  }
});

test('QLoRA on WebGPU: a Q8_0 base stays in its blocks and two steps give the native CPU run\'s losses', { timeout: 600_000 }, async () => {
  // The tiny model with its matrices in Q8_0 (ffn_down, 48 wide, stays F32): the base is held as
  // stored blocks on both sides, the CubeCL kernels' backward pass (g·W) on WebGPU, the CPU's
  // on the native side; the adapter and its AdamW state are f32.
  const tiny = path.join(MODELS, 'test-tiny-random-q8_0.gguf');
  execFileSync(CQA, ['debug-tiny-gguf', '--out', tiny, '--seed', '5', '--q8-0']);
  // Two records cut short (about 130 tokens each), one per step.
  const records = shortRecords(2);
  const dir = scratchDir('cqa-qlora-gpu-');
  const data = path.join(dir, 'two.jsonl');
  writeFileSync(data, records);
  const native = execFileSync(CQA, ['--model', tiny, 'train', '--data', data, '--out', path.join(dir, 'run'),
    '--rank', '4', '--alpha', '8', '--dropout', '0', '--targets', 'q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj',
    '--lr', '0.01', '--epochs', '1', '--batch', '1', '--grad-accum', '1', '--max-len', '256', '--held-out', '0', '--seed', '42',
    '--json']).toString().trim().split('\n').map((l) => JSON.parse(l));
  const nativeLosses = native.filter((e) => e.kind === 'step').map((e) => e.loss);
  assert.equal(nativeLosses.length, 2);
  const config = {
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
    learning_rate: 0.01, epochs: 1, batch_size: 1, grad_accum: 1, max_len: 256, held_out: 0, seed: 42,
  };
  const t0 = Date.now();
  const web = await page.evaluate(async ({ records, config }) => {
    const bytes = new Uint8Array(await (await fetch('models/test-tiny-random-q8_0.gguf')).arrayBuffer());
    const model = window.cqa.WebModel.loadGguf(bytes);
    const info = model.info();
    const trainer = new window.cqa.WebTrainer(model, new TextEncoder().encode(records), config, false);
    const events = [];
    const outcome = await trainer.run((e) => { events.push(e); }, 1);
    model.free();
    return { info, outcome, losses: events.filter((e) => e.kind === 'step').map((e) => e.loss) };
  }, { records, config });
  console.log(`QLoRA on WebGPU (tiny Q8_0 model): 2 steps in ${((Date.now() - t0) / 1000).toFixed(1)} s; losses native ${nativeLosses.map((l) => l.toFixed(6))} vs WebGPU ${web.losses.map((l) => l.toFixed(6))}`);
  assert.equal(web.info.weights, 'stored');
  assert.deepEqual(web.info.tensor_types, { F32: 7, Q8_0: 13 });
  assert.equal(web.outcome, 'finished');
  assert.equal(web.losses.length, 2);
  // The second step's loss moves only if the first step's gradient, through the stored base, was right.
  assert.ok(Math.abs(web.losses[1] - web.losses[0]) > 1e-4);
  for (let i = 0; i < 2; i++) {
    const rel = Math.abs(web.losses[i] - nativeLosses[i]) / nativeLosses[i];
    assert.ok(rel < 1e-4, `step ${i + 1}: WebGPU ${web.losses[i]} vs native ${nativeLosses[i]}`);
  }
});

test('the page makes no request outside its own origin', () => {
  assert.ok(requests.length > 0);
  const foreign = requests.filter((u) => !u.startsWith(origin));
  assert.deepEqual(foreign, []);
});
