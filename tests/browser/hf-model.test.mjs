// An HF model (two safetensors shards of BF16 weights, config.json and tokenizer.json), opened
// from the disk as a user would, loads in the app with its shards read slice by slice by the
// engine (never read whole by the page), its BF16 matrices kept in 16 bits, the memory the
// Model panel planned from the headers equal to what the engine holds, and it scores as the
// native CLI does on the same files.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, openPage, scratchDir } from './launch.mjs';

const CQA = process.env.CQA_BIN;
const TEXT = 'The river ran slowly past the mill, and the miller slept.';
const CONFIG = {
  architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: 49152, hidden_size: 64, intermediate_size: 128,
  num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-5, rope_theta: 10000,
  max_position_embeddings: 2048, tie_word_embeddings: true, hidden_act: 'silu',
};

/** A seeded generator of N(0, σ²)-ish values (mulberry32, Irwin–Hall of 4). */
function normals(seed) {
  let a = seed >>> 0;
  const uniform = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => (uniform() + uniform() + uniform() + uniform() - 2) * Math.sqrt(3);
}

/** BF16 bytes of `n` values (`norm`: around 1, else N(0, 0.05²)). */
function bf16(n, next, norm) {
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = norm ? 1 + 0.1 * next() : 0.05 * next();
  const words = new Uint32Array(f.buffer);
  const out = Buffer.alloc(2 * n);
  for (let i = 0; i < n; i++) out.writeUInt16LE(words[i] >>> 16, 2 * i); // truncation is a valid BF16
  return out;
}

/** A safetensors file of `tensors` ([name, shape, bytes]). */
function safetensors(tensors) {
  const header = {};
  let at = 0;
  for (const [name, shape, bytes] of tensors) {
    header[name] = { dtype: 'BF16', shape, data_offsets: [at, at + bytes.length] };
    at += bytes.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([n, Buffer.from(json), ...tensors.map((t) => t[2])]);
}

/** Writes the model's files into a new folder; returns their paths and the bytes of each kind. */
function writeModel() {
  const dir = scratchDir('cqa-hf-model-');
  const next = normals(7);
  const { hidden_size: d, intermediate_size: f, num_attention_heads: h, num_key_value_heads: kv } = CONFIG;
  const headDim = d / h;
  const layer = (l) => {
    const p = `model.layers.${l}`;
    const m = (name, rows, cols) => [`${p}.${name}.weight`, [rows, cols], bf16(rows * cols, next, false)];
    return [
      m('self_attn.q_proj', h * headDim, d), m('self_attn.k_proj', kv * headDim, d), m('self_attn.v_proj', kv * headDim, d),
      m('self_attn.o_proj', d, h * headDim), m('mlp.gate_proj', f, d), m('mlp.up_proj', f, d), m('mlp.down_proj', d, f),
      [`${p}.input_layernorm.weight`, [d], bf16(d, next, true)], [`${p}.post_attention_layernorm.weight`, [d], bf16(d, next, true)],
    ];
  };
  const first = [['model.embed_tokens.weight', [CONFIG.vocab_size, d], bf16(CONFIG.vocab_size * d, next, false)], ['model.norm.weight', [d], bf16(d, next, true)], ...layer(0)];
  const second = layer(1);
  const files = {
    'model-00001-of-00002.safetensors': safetensors(first),
    'model-00002-of-00002.safetensors': safetensors(second),
    'config.json': Buffer.from(JSON.stringify(CONFIG)),
  };
  for (const [name, bytes] of Object.entries(files)) writeFileSync(path.join(dir, name), bytes);
  copyFileSync(path.join(ROOT, 'tests/fixtures/smollm2_tokenizer.json'), path.join(dir, 'tokenizer.json'));
  // Held as stored: every matrix in its 16 bits, the norms as f32.
  const all = [...first, ...second];
  const resident = all.reduce((s, [, shape, bytes]) => s + (shape.length === 2 ? bytes.length : 2 * bytes.length), 0);
  return { dir, paths: [...Object.keys(files), 'tokenizer.json'].map((n) => path.join(dir, n)), resident, shards: files['model-00001-of-00002.safetensors'].length + files['model-00002-of-00002.safetensors'].length };
}

let session, page, model;

before(async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  model = writeModel();
  session = await openPage('?engine=cpu');
  page = session.page;
  await session.goto();
  await page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });
});

after(async () => {
  await session?.close();
});

test('an HF model of two BF16 safetensors shards opens from the disk, read slice by slice, kept in 16 bits, scoring as the native CLI', { timeout: 300_000 }, async () => {
  await page.click('#tab-model');
  await page.evaluate(() => {
    window.progressSeen = [];
    const label = document.getElementById('model-progress-label');
    new MutationObserver(() => window.progressSeen.push(label.textContent)).observe(label, { childList: true, characterData: true, subtree: true });
  });
  await page.setInputFiles('#model-files', model.paths);
  await page.waitForFunction(() => window.cqaStudio.app.state.modelName === '2 safetensors shards' && document.getElementById('badge').dataset.state === 'ready', null, { timeout: 240_000 });
  assert.equal(await page.textContent('#model-error'), '');
  const info = await page.evaluate(() => window.cqaStudio.app.state.info);
  assert.equal(info.format, 'safetensors');
  assert.equal(info.weights, 'stored');
  assert.deepEqual(info.tensor_types, { BF16: 20 });
  assert.equal(info.file_bytes, model.shards);
  assert.equal(info.weight_bytes_resident, model.resident, 'the matrices in BF16, the norms as f32');
  // The shards were read by the engine as it built the weights: the progress counts their bytes.
  const progress = await page.evaluate(() => window.progressSeen);
  assert.ok(progress.some((t) => /^Preparing the weights: .* of .*\(\d+%\)$/.test(t)), progress.join(' | '));

  const web = await page.evaluate((text) => window.cqaStudio.request('shift', { text }), TEXT);
  assert.equal(web.ok, true, web.message);
  const native = JSON.parse(execFileSync(CQA, ['--model', model.dir, 'score', '--text', TEXT, '--json'], { cwd: ROOT }).toString());
  assert.deepEqual(web.result.ids, native.text_ids);
  const drift = Math.max(...web.result.base.logprobs.map((x, i) => Math.abs(x - native.logprobs[i])));
  assert.equal(web.result.base.logprobs.length, native.logprobs.length);
  assert.ok(drift <= 1e-4, `max |Δ log-prob| ${drift}`);
  console.log(`HF BF16 model in the browser's CPU path: ${(info.weight_bytes_resident / 1e6).toFixed(2)} MB resident for ${(model.shards / 1e6).toFixed(2)} MB of shards; max |Δ log-prob| vs native ${drift.toExponential(2)}`);
});
