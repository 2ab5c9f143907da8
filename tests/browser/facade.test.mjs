// The wasm facade answers numbers from the page that would trap or exhaust memory with an error,
// in words, and the engine stays usable (headless Chromium, the bare harness page, the CPU):
// an agreement report with a confidence level of -2 (it indexed past the resamples) or 10^9
// bootstrap resamples, a tiny model of 2^30 tokens, and a GGUF head whose magic is wrong (it was
// answered "send more of the file").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT, openEngine } from './launch.mjs';

let session, page;
const record = JSON.parse(readFileSync(path.join(ROOT, 'data/samples/annotations.jsonl'), 'utf8').split('\n')[0]);

before(async () => {
  session = await openEngine({ preferGpu: false });
  page = session.page;
});

after(async () => {
  await session?.close();
});

/** Runs `fn(cqa, arg)` in the page; resolves to {ok, value} or {ok: false, name, message}. */
const attempt = (fn, arg) => page.evaluate(async ({ source, arg }) => {
  try {
    return { ok: true, value: await (0, eval)(source)(window.cqa, arg) };
  } catch (e) {
    return { ok: false, name: e?.name, message: String(e?.message || e) };
  }
}, { source: `(${fn})`, arg });

test('agreement options out of range are refused in words, not trapped on', async () => {
  const appraisal = {
    prefix: '', continuations: Array.from({ length: 10 }, (_, i) => String(i + 1)), logprobs: Array(10).fill(Math.log(0.1)),
    p: Array(10).fill(0.1), expected: 5.5, mode: 1, entropy_bits: Math.log2(10), verdict_mass: 1, nll: 1.5, tokens: 12,
  };
  const report = (options) => attempt((cqa, { record, appraisal, options }) => cqa.appreciationReport([record], [appraisal], [appraisal], options),
    { record, appraisal, options });
  assert.equal((await report({ level: 0.9, bootstrap: 100 })).ok, true);
  const level = await report({ level: -2 });
  assert.equal(level.ok, false);
  assert.match(level.message, /the confidence level must be between 0 and 1 \(e\.g\. 0\.95\), got -2/);
  const bootstrap = await report({ bootstrap: 1e9 });
  assert.match(bootstrap.message, /at most 100000 bootstrap resamples/);
  assert.equal((await report({ level: 0.95, bootstrap: 10 })).ok, true, 'the engine is still usable');
});

test('a tiny model of 2^30 tokens is refused before any allocation', async () => {
  const huge = await attempt((cqa) => cqa.tinyModelLogits(1, 2 ** 30, Uint32Array.from([1, 2])));
  assert.equal(huge.ok, false);
  assert.match(huge.message, /vocabulary of 1 to 65536 tokens/);
  const fine = await attempt(async (cqa) => (await cqa.tinyModelLogits(1, 64, Uint32Array.from([1, 2]))).length);
  assert.deepEqual(fine, { ok: true, value: 128 });
});

test('a GGUF head with bad magic is refused from its first 8 bytes, not asked for more', async () => {
  const bad = await attempt((cqa) => cqa.modelMemory(new TextEncoder().encode('GGMLxxxx'), 2 ** 30));
  assert.equal(bad.ok, false);
  assert.match(bad.message, /not a GGUF file: expected magic `GGUF`/);
  const short = await attempt((cqa) => cqa.modelMemory(new TextEncoder().encode('GGU'), 2 ** 30));
  assert.deepEqual(short, { ok: true, value: null }, 'three bytes do not tell yet');
});

test('an HF model\'s memory is planned by the engine from its safetensors headers: BF16 matrices kept in 16 bits, a header that does not fit its file refused', async () => {
  const r = await attempt(async (cqa) => {
    const json = JSON.stringify({
      __metadata__: { format: 'pt' },
      'model.layers.0.mlp.up_proj.weight': { dtype: 'BF16', shape: [64, 32], data_offsets: [0, 4096] },
      'model.norm.weight': { dtype: 'BF16', shape: [32], data_offsets: [4096, 4160] },
    });
    const text = new TextEncoder().encode(json);
    const head = new Uint8Array(8 + text.length);
    new DataView(head.buffer).setBigUint64(0, BigInt(text.length), true);
    head.set(text, 8);
    const size = head.length + 4160;
    const message = (fn) => { try { fn(); return null; } catch (e) { return String(e.message); } };
    return {
      need: cqa.safetensorsMemory([head], [size]),
      short: message(() => cqa.safetensorsMemory([head], [size - 1])),
      cut: message(() => cqa.safetensorsMemory([head.subarray(0, 20)], [size])),
    };
  });
  assert.equal(r.ok, true, r.message);
  const { need, short, cut } = r.value;
  assert.equal(need.parameters, 64 * 32 + 32);
  assert.equal(need.resident_bytes, 4 * need.parameters);
  assert.equal(need.resident_bytes_stored, 64 * 32 * 2 + 32 * 4, 'the matrix in BF16, the norm as f32');
  assert.equal(need.largest_tensor, 'model.layers.0.mlp.up_proj.weight');
  assert.equal(short, 'safetensors file #1 is not one the engine can read: tensor `model.norm.weight` runs past the end of the file (4160 of 4159 data bytes)');
  assert.match(cut, /^safetensors file #1 is not one the engine can read: only 12 of its \d+-byte header were given$/);
});

test('a model read slice by slice (loadRanged) loads and scores as the whole file does, each tensor read alone, with the SHA-256 of the file; a file that ends early or cannot be read is refused in words', async () => {
  const r = await attempt(async (cqa) => {
    const whole = new Uint8Array(await (await fetch('models/SmolLM2-135M-Instruct.Q4_1.gguf')).arrayBuffer());
    let reads = [];
    // As the engine worker's blobReader does, from an array instead of a Blob (no FileReaderSync here).
    const readFrom = (bytes) => (offset, target) => {
      reads.push(target.length);
      const piece = bytes.subarray(offset, offset + target.length);
      target.set(piece);
      return piece.length;
    };
    const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
    const out = { size: whole.length, expected: hex(await crypto.subtle.digest('SHA-256', whole)) };
    out.sha256 = cqa.modelSha256(whole.length, readFrom(whole));
    out.shaLargestRead = Math.max(...reads);
    reads = [];
    const ranged = cqa.WebModel.loadRanged(whole.length, readFrom(whole));
    out.reads = reads.length;
    out.largestRead = Math.max(...reads);
    out.readBytes = reads.reduce((a, b) => a + b, 0);
    out.parameters = ranged.info().parameters;
    out.ranged = (await ranged.score('The river ran past the mill', null)).logprobs;
    ranged.free();
    const inMemory = cqa.WebModel.loadGguf(whole);
    out.whole = (await inMemory.score('The river ran past the mill', null)).logprobs;
    inMemory.free();
    const message = (fn) => { try { fn(); return null; } catch (e) { return String(e.message); } };
    out.short = message(() => cqa.WebModel.loadRanged(whole.length, readFrom(whole.subarray(0, whole.length - 1000))));
    out.unreadable = message(() => cqa.WebModel.loadRanged(whole.length, () => { throw new DOMException('The requested file could not be read', 'NotReadableError'); }));
    out.huge = message(() => cqa.modelSha256(2 ** 40, readFrom(whole)));
    return out;
  });
  assert.equal(r.ok, true, r.message);
  const v = r.value;
  assert.equal(v.sha256, v.expected);
  assert.equal(v.shaLargestRead, 4 << 20, 'hashed 4 MiB at a time');
  assert.equal(v.parameters, 134515008);
  assert.deepEqual(v.ranged, v.whole);
  // The header (its first MiB, then 4), then each of the 272 tensors once: the largest read is the
  // largest tensor (the embedding, 30.1 MB of Q8_0 blocks), never the file.
  assert.ok(v.reads >= 273 && v.reads <= 275, `${v.reads} reads`);
  assert.equal(v.largestRead, 49152 * 576 / 32 * 34);
  assert.ok(v.readBytes < v.size * 1.1, `${v.readBytes} bytes read for a ${v.size}-byte file`);
  assert.match(v.short, /^the model file was cut short: it ends before byte \d+ of the \d+ it was announced with; open it again$/);
  assert.equal(v.unreadable, 'the model file could not be read at byte 0: The requested file could not be read; open it again');
  assert.match(v.huge, /^a model file of 1048576\.0 MiB cannot be read by this tab/);
});

test('a model streamed piece by piece into a ModelUpload loads, with the SHA-256 of the whole file; a file cut short or grown is refused in words', async () => {
  const r = await attempt(async (cqa) => {
    const res = await fetch('models/SmolLM2-135M-Instruct.Q4_1.gguf');
    const size = Number(res.headers.get('Content-Length'));
    const upload = new cqa.ModelUpload(size);
    const pieces = [];
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      upload.write(value);
      if (pieces.length < 2) pieces.push(value);
    }
    const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
    const whole = new Uint8Array(await (await fetch('models/SmolLM2-135M-Instruct.Q4_1.gguf')).arrayBuffer());
    const out = { size, length: upload.length, sha256: upload.sha256(), expected: hex(await crypto.subtle.digest('SHA-256', whole)), pieces: pieces.length };
    const model = cqa.WebModel.loadUpload(upload);
    out.parameters = model.info().parameters;
    model.free();
    const message = (fn) => { try { fn(); return null; } catch (e) { return String(e.message); } };
    const short = new cqa.ModelUpload(size);
    short.write(whole.subarray(0, 1000));
    out.short = message(() => cqa.WebModel.loadUpload(short));
    const grown = new cqa.ModelUpload(8);
    out.grown = message(() => grown.write(whole.subarray(0, 9)));
    grown.free();
    out.huge = message(() => new cqa.ModelUpload(2 ** 40));
    return out;
  });
  assert.equal(r.ok, true, r.message);
  const v = r.value;
  assert.equal(v.length, v.size);
  assert.ok(v.pieces > 1, 'the file came in several pieces');
  assert.equal(v.sha256, v.expected);
  assert.equal(v.parameters, 134515008);
  assert.equal(v.short, `the model file was cut short: 1000 of its ${v.size} bytes were read; open it again`);
  assert.match(v.grown, /^the model file is longer than the 8 bytes it was announced with/);
  assert.match(v.huge, /^the engine could not set aside 1048576\.0 MiB for the model file: this tab is out of memory/);
});
