// LoRA training in the browser: the engine's own loop (`WebTrainer.run` → `train::run`) on
// WebGPU (SwiftShader) gives the same losses as the native CPU run, and cancel stops it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DIST, openEngine, scratchDir } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const TINY = 'models/test-tiny-random.gguf';
const RECORDS = 'tests/fixtures/lora_records.jsonl';
let session, page;

// The same settings on both sides; dropout off so the runs are comparable.
const SETTINGS = { rank: 4, alpha: 8, lr: 0.01, epochs: 1, batch: 2, maxLen: 320 };
const config = {
  lora: { rank: SETTINGS.rank, alpha: SETTINGS.alpha, dropout: 0, targets: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] },
  learning_rate: SETTINGS.lr, epochs: SETTINGS.epochs, batch_size: SETTINGS.batch, grad_accum: 1,
  max_len: SETTINGS.maxLen, held_out: 0, seed: 42,
};

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  execFileSync(CQA, ['debug-tiny-gguf', '--out', path.join(DIST, TINY), '--seed', '3']);
  session = await openEngine();
  page = session.page;
  const { backend } = session;
  assert.equal(backend, 'webgpu');
});

after(async () => {
  await session?.close();
});

async function browserRun(records, config, cancelAfter) {
  return page.evaluate(async ({ tiny, records, config, cancelAfter }) => {
    const bytes = new Uint8Array(await (await fetch(tiny)).arrayBuffer());
    const model = window.cqa.WebModel.loadGguf(bytes);
    const trainer = new window.cqa.WebTrainer(model, new TextEncoder().encode(records), config, false);
    const control = trainer.control();
    const events = [];
    let checkpoints = 0;
    const outcome = await trainer.run((e, checkpoint) => {
      events.push(e);
      if (checkpoint) checkpoints += 1;
      if (cancelAfter && e.kind === 'step' && e.step === cancelAfter) control.cancel();
    }, 1);
    const info = trainer.info();
    const adapter = await trainer.adapter('tiny');
    return { outcome, events, checkpoints, info, adapterBytes: adapter.safetensors.length, adapterConfig: JSON.parse(adapter.config_json) };
  }, { tiny: TINY, records, config, cancelAfter });
}

test('two LoRA steps on WebGPU match the native CPU run', { timeout: 600_000 }, async () => {
  const out = scratchDir('cqa-train-');
  const native = execFileSync(CQA, ['--model', path.join(DIST, TINY), 'train', '--data', path.join(ROOT, RECORDS), '--out', out,
    '--rank', `${SETTINGS.rank}`, '--alpha', `${SETTINGS.alpha}`, '--dropout', '0', '--lr', `${SETTINGS.lr}`,
    '--epochs', `${SETTINGS.epochs}`, '--batch', `${SETTINGS.batch}`, '--grad-accum', '1', '--max-len', `${SETTINGS.maxLen}`,
    '--held-out', '0', '--seed', '42', '--json']).toString().trim().split('\n').map((l) => JSON.parse(l));
  const nativeLosses = native.filter((e) => e.kind === 'step').map((e) => e.loss);
  assert.equal(nativeLosses.length, 2);

  const records = readFileSync(path.join(ROOT, RECORDS), 'utf8');
  const t0 = Date.now();
  const web = await browserRun(records, config, 0);
  console.log(`browser: 2 LoRA steps on the tiny model in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.equal(web.outcome, 'finished');
  const webLosses = web.events.filter((e) => e.kind === 'step').map((e) => e.loss);
  console.log(`losses native ${nativeLosses.map((l) => l.toFixed(6))} vs WebGPU ${webLosses.map((l) => l.toFixed(6))}`);
  assert.equal(webLosses.length, 2);
  for (let i = 0; i < 2; i++) {
    const rel = Math.abs(webLosses[i] - nativeLosses[i]) / nativeLosses[i];
    assert.ok(rel < 1e-4, `step ${i + 1}: WebGPU ${webLosses[i]} vs native ${nativeLosses[i]}`);
  }
  // The comparison can fail: the second step's loss differs from the first.
  assert.ok(Math.abs(webLosses[1] - webLosses[0]) > 1e-4);
  for (const e of web.events.filter((e) => e.kind === 'step')) {
    assert.ok(e.tokens_per_s > 0 && Number.isFinite(e.eta_s) && e.total_steps === 2, JSON.stringify(e));
  }
  // The browser receives the very objects `cqa train --json` prints: per kind, the same keys.
  const keySets = (events) => {
    const byKind = new Map();
    for (const e of events) {
      const keys = JSON.stringify(Object.keys(e).sort());
      if (!byKind.has(e.kind)) byKind.set(e.kind, new Set());
      byKind.get(e.kind).add(keys);
    }
    return byKind;
  };
  const nativeKeys = keySets(native);
  const webKeys = keySets(web.events);
  // Both runs hold nothing out, so both have only steps, and every event of a kind has one key set.
  assert.deepEqual([...nativeKeys.keys()], ['step']);
  assert.deepEqual([...webKeys.keys()], ['step']);
  for (const [kind, sets] of [...nativeKeys, ...webKeys]) assert.equal(sets.size, 1, `${kind}: ${[...sets].join(' vs ')}`);
  assert.deepEqual([...webKeys.get('step')], [...nativeKeys.get('step')]);
  const stepKeys = JSON.parse([...webKeys.get('step')][0]);
  for (const k of ['kind', 'step', 'loss', 'elapsed_s', 'eta_s']) assert.ok(stepKeys.includes(k), `step events lack ${k}: ${stepKeys}`);
  assert.equal(web.checkpoints, 2);
  assert.equal(web.adapterConfig.peft_type, 'LORA');
  assert.equal(web.adapterConfig.r, SETTINGS.rank);
  // The browser adapter equals the native one byte for byte in size (same tensors, same layout).
  assert.equal(web.adapterBytes, readFileSync(path.join(out, 'adapter_model.safetensors')).length);
});

test('cancel stops the browser loop after the current step', { timeout: 600_000 }, async () => {
  const records = readFileSync(path.join(ROOT, RECORDS), 'utf8');
  const web = await browserRun(records, { ...config, epochs: 4 }, 1);
  assert.equal(web.outcome, 'cancelled');
  assert.equal(web.events.filter((e) => e.kind === 'step').length, 1);
  assert.equal(web.info.step, 1);
  assert.equal(web.info.total_steps, 8);
});
