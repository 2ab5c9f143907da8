// Which engine runs the model: WebGPU or the CPU path, whichever decodes faster on this machine.
// A GPU is not always faster: a browser's WebGPU pays tens of microseconds a dispatch, and a
// software adapter (SwiftShader) or a weak integrated GPU can lose to two CPU threads on a small
// model. So, where the user leaves the choice to the app, both are timed on one short greedy
// decode when a model loads on WebGPU: the loaded engine, and a second engine worker on the CPU
// with its own copy of the model (skipped for models too large to hold twice). The engine moves to
// the CPU when that is clearly faster, and the Model panel shows both rates. The verdict is kept
// per model, so the next visit starts on the faster engine without timing again.
import { getPref, setPref } from './ui.js';

/** The user's choice, in the Model panel: 'auto' (the faster), 'webgpu' or 'cpu'. */
export const CHOICE_PREF = 'engine';
const VERDICT_PREF = 'engine-timed';
const PROMPT = 'The lighthouse keeper climbed the stairs one last time';
/** Tokens decoded for the timing; the first one (the prompt's prefill) is left out of the rate. */
export const TIMED_TOKENS = 17;
/** A slow engine stops early, after at least 3 tokens, once this much time has passed. */
const BUDGET_MS = 3000;
/** The CPU is chosen only when it is faster by this much: a move costs a reload. */
const MARGIN = 1.1;
/** Models whose weights are larger than this are not loaded a second time for the CPU's timing. */
export const MAX_TIMED_BYTES = 600e6;

/** The choice: a URL's ?engine=cpu|webgpu fixes it (links, tests), else the user's pref. */
export function engineChoice(urlEngine) {
  if (urlEngine === 'cpu' || urlEngine === 'webgpu') return urlEngine;
  const pref = getPref(CHOICE_PREF, 'auto');
  return pref === 'cpu' || pref === 'webgpu' ? pref : 'auto';
}

/** A loaded model's key for the kept verdict ('load' result): where it came from, its name and size. */
export const timedModelKey = (r) => `${r.source === 'default' ? 'default' : r.name}|${r.identity?.size ?? ''}`;

/** The start of the key of the model the page loads first: the address's ?model=, else its 'model' pref. */
export function startupModelPrefix(pref, urlModel) {
  if (urlModel) return `${urlModel}|`;
  return pref?.source === 'local' && pref.name ? `${pref.name}|` : 'default|';
}

/** The kept verdict for `key` ({key, webgpu, cpu, faster, at}), or null. */
export function keptVerdict(key) {
  const v = getPref(VERDICT_PREF, null);
  return v && v.key === key ? v : null;
}

/** Whether the engine should start on the CPU, for the model the page loads first (`prefix`). */
export function startOnCpu(choice, prefix) {
  if (choice !== 'auto') return choice === 'cpu';
  const v = getPref(VERDICT_PREF, null);
  return Boolean(v && v.faster === 'cpu' && typeof v.key === 'string' && v.key.startsWith(prefix));
}

/** Decode tokens per second of `client`'s loaded model: one short greedy generation. */
export async function decodeRate(client) {
  const started = performance.now();
  const req = client.request('generate', { prompt: PROMPT, chat: false, params: { temperature: 0, max_new_tokens: TIMED_TOKENS, seed: 1 } }, {
    onEvent(ev) {
      if (ev.type === 'token' && ev.count >= 3 && performance.now() - started > BUDGET_MS) client.send({ type: 'stop', target: req.id });
    },
  });
  const r = await req.promise;
  if (!(r.count > 1) || !(r.tokensPerSecond > 0)) throw new Error('the model ended its text before the timing could measure a rate');
  return r.tokensPerSecond;
}

/** The faster engine of `rates` ({webgpu, cpu} in tok/s), WebGPU unless the CPU wins clearly. */
export const faster = (rates) => (rates.cpu !== null && rates.webgpu !== null && rates.cpu > rates.webgpu * MARGIN ? 'cpu' : 'webgpu');

/** Keeps the verdict for `key`, so that the next visit starts on the faster engine. */
export function keepVerdict(key, rates) {
  const verdict = { key, webgpu: rates.webgpu, cpu: rates.cpu, faster: faster(rates), at: new Date().toISOString() };
  setPref(VERDICT_PREF, verdict);
  return verdict;
}

const rate = (r) => (r >= 10 ? Math.round(r).toString() : r.toFixed(1));

/** "WebGPU: 212 tok/s; CPU: 48 tok/s" (a rate not taken says why). */
export function describeRates({ webgpu, cpu, cpuSkipped }) {
  const gpu = webgpu === null ? 'WebGPU: not timed' : `WebGPU: ${rate(webgpu)} tok/s`;
  const c = cpu !== null ? `CPU: ${rate(cpu)} tok/s` : `CPU: not timed${cpuSkipped ? ` (${cpuSkipped})` : ''}`;
  return `${gpu}; ${c}`;
}
