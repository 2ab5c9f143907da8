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
