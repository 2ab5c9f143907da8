// The browser's CPU path on threads: on a cross-origin isolated page without WebGPU (here: asked
// for with ?engine=cpu), the engine worker runs the threaded build (pkg-threads/, wasm atomics)
// with rayon's pool on Web Workers, and computes what the single-threaded build computes. Where
// the page is not isolated, or the pool cannot start, it runs on one thread and says why.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { openPage, shortRecords, scratchDir } from './launch.mjs';

const CQA = process.env.CQA_BIN;

const TEXT = 'The old lighthouse keeper climbed the stairs each night, counting the steps as his father had.';
const PROMPT = 'The old lighthouse keeper';
const sessions = [];

after(async () => {
  for (const s of sessions) await s.close();
});

/**
 * Opens the app at `query` (on a host that sends the isolation headers when `isolated`), waits
 * for the default model, and returns the engine's device, a score of TEXT and 24 greedy tokens.
 */
async function run(query, { isolated = true, hidden = [] } = {}) {
  const s = await openPage(query, { server: { isolated, hidden } });
  sessions.push(s);
  const errors = [];
  s.page.on('pageerror', (e) => errors.push(String(e)));
  await s.goto();
  await s.page.waitForFunction(() => document.getElementById('badge').dataset.state === 'ready', null, { timeout: 300_000 });
  const out = await s.page.evaluate(async ({ text, prompt }) => {
    const ask = async (type, payload) => {
      const r = await window.cqaStudio.request(type, payload);
      if (!r.ok) throw new Error(`${type}: ${r.message}`);
      return r.result;
    };
    const device = await ask('init-device', {});
    const score = await ask('shift', { text, context: '', adapter: null });
    const gen = await ask('generate', { prompt, chat: false, params: { max_new_tokens: 24, temperature: 0 } });
    return { device, isolated: self.crossOriginIsolated, line: document.getElementById('backend-line').textContent, logprobs: score.base.logprobs, text: gen.text, count: gen.count, rate: gen.tokensPerSecond };
  }, { text: TEXT, prompt: PROMPT });
  assert.deepEqual(errors, []);
  return { ...out, requests: s.requests, session: s };
}

let single;
let threadedPage;
let native;
const maxAbsDiff = (a, b) => Math.max(...a.map((x, i) => Math.abs(x - b[i])));

test('without threads (?threads=1) the standard build runs on one thread', { timeout: 600_000 }, async () => {
  assert.ok(CQA, 'CQA_BIN must point at the native cqa binary');
  native = JSON.parse(execFileSync(CQA, ['score', '--text', TEXT, '--json']));
  single = await run('?engine=cpu&threads=1');
  assert.equal(single.device.backend, 'cpu');
  assert.equal(single.device.threads, 1);
  assert.equal(single.count, 24);
  const diff = maxAbsDiff(single.logprobs, native.logprobs);
  assert.ok(diff <= 1e-4, `max |Δ logprob| one thread vs native = ${diff}`);
  console.log(`one thread: ${single.rate.toFixed(1)} tok/s greedy decode`);
});

test('on an isolated page the threaded build runs on every core and computes the same', { timeout: 600_000 }, async () => {
  const threaded = await run('?engine=cpu');
  threadedPage = threaded.session.page;
  assert.equal(threaded.isolated, true);
  assert.equal(threaded.device.backend, 'cpu');
  assert.ok(threaded.device.threads >= 2, `threads: ${threaded.device.threads}`);
  assert.match(threaded.line, new RegExp(`CPU, ${threaded.device.threads} threads`));
  assert.ok(threaded.requests.some((u) => u.endsWith('pkg-threads/cqa_studio_bg.wasm')));
  assert.ok(threaded.requests.some((u) => u.endsWith('lib/pool-worker.js')));
  // The same model: both builds agree with the native CLI to rounding (the threads split rows
  // and panels of a product, never one sum).
  assert.equal(threaded.logprobs.length, native.logprobs.length);
  const diff = maxAbsDiff(threaded.logprobs, native.logprobs);
  const diffSingle = maxAbsDiff(single.logprobs, native.logprobs);
  assert.ok(diff <= 1e-4, `max |Δ logprob| threads vs native = ${diff}`);
  assert.equal(threaded.text, single.text);
  console.log(`${threaded.device.threads} threads: ${threaded.rate.toFixed(1)} tok/s greedy decode (one thread: ${single.rate.toFixed(1)}); max |Δ logprob| vs native: ${diff.toExponential(2)} (one thread: ${diffSingle.toExponential(2)})`);
});

test('a page that is not cross-origin isolated runs on one thread', { timeout: 600_000 }, async () => {
  const plain = await run('?engine=cpu', { isolated: false });
  assert.equal(plain.isolated, false);
  assert.equal(plain.device.threads, 1);
  assert.equal(plain.text, single.text);
});

test('when the pool cannot start, the engine runs on one thread and says why', { timeout: 600_000 }, async () => {
  const broken = await run('?engine=cpu', { hidden: ['lib/pool-worker.js'] });
  assert.equal(broken.device.threads, 1);
  assert.match(broken.device.reason, /threads could not start/);
  assert.match(broken.line, /CPU fallback/);
  assert.equal(broken.text, single.text);
});

test('QLoRA on threads: two steps on the default model give the native run\'s losses', { timeout: 600_000 }, async () => {
  assert.ok(threadedPage, 'the threaded page did not start');
  const records = shortRecords(2);
  const dir = scratchDir('cqa-threads-');
  writeFileSync(path.join(dir, 'short.jsonl'), records);
  const native = execFileSync(CQA, ['train', '--data', path.join(dir, 'short.jsonl'), '--out', path.join(dir, 'run'),
    '--rank', '4', '--alpha', '8', '--dropout', '0', '--targets', 'q_proj,v_proj', '--lr', '0.01', '--epochs', '1', '--batch', '1',
    '--grad-accum', '1', '--max-len', '256', '--held-out', '0', '--seed', '42', '--json']).toString().trim().split('\n').map((l) => JSON.parse(l));
  const nativeLosses = native.filter((e) => e.kind === 'step').map((e) => e.loss);
  const config = {
    lora: { rank: 4, alpha: 8, dropout: 0, targets: ['q_proj', 'v_proj'] },
    learning_rate: 0.01, epochs: 1, batch_size: 1, grad_accum: 1, max_len: 256, held_out: 0, seed: 42,
  };
  const web = await threadedPage.evaluate(async ({ records, config }) => {
    const losses = [];
    const t0 = performance.now();
    const result = await window.cqaStudio.app.engine.call('train', { records, config, keepGoodLines: false, checkpointEvery: 0 }, {
      onEvent: (ev) => { if (ev.type === 'train-event' && ev.event.kind === 'step') losses.push(ev.event.loss); },
    });
    return { outcome: result.outcome, losses, seconds: (performance.now() - t0) / 1000 };
  }, { records, config });
  console.log(`2 QLoRA steps on threads in ${web.seconds.toFixed(1)} s; losses native ${nativeLosses.map((l) => l.toFixed(5))} vs browser ${web.losses.map((l) => l.toFixed(5))}`);
  assert.equal(web.outcome, 'finished');
  assert.equal(web.losses.length, 2);
  for (let i = 0; i < 2; i++) {
    const rel = Math.abs(web.losses[i] - nativeLosses[i]) / nativeLosses[i];
    assert.ok(rel < 1e-4, `step ${i + 1}: browser ${web.losses[i]} vs native ${nativeLosses[i]}`);
  }
});
