// The engine lives in this module worker so that downloading, loading and generating never
// freeze the page. The page talks to it only through the messages below.
//
// page → worker
//   {type: 'load', source: 'default'}                 fetch the bundled model from this origin
//   {type: 'load', file: File}  or  {type: 'load', name, bytes: ArrayBuffer|Uint8Array}
//   {type: 'generate', id, prompt, chat, params}      params: SamplingParams fields
//   {type: 'stop'}                                     checked between tokens
//   {type: 'score', id, text, context}
// worker → page
//   {type: 'status', phase, message, backend?}         human-readable progress of a phase
//   {type: 'progress', loaded, total}                  bytes of the model read so far (total may be 0)
//   {type: 'loaded', info, backend, source}            info() parsed from JSON
//   {type: 'token', id, text, count, tokensPerSecond}
//   {type: 'done', id, reason, count, elapsedMs, tokensPerSecond}
//   {type: 'score', id, result}
//   {type: 'error', op, id?, message}                  op: 'init' | 'load' | 'generate' | 'score' | 'busy'

// Same-origin path only: the server's CSP (connect-src 'self') forbids anything else anyway.
const DEFAULT_MODEL_URL = '/models/SmolLM2-135M-Instruct.Q4_1.gguf';
const DEFAULT_MODEL_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const PROGRESS_INTERVAL_MS = 100;

let engine = null;      // the wasm module's exports, once initialised
let enginePromise = null;
let backend = null;     // 'webgpu' | 'cpu'
let model = null;       // the current WebModel; kept when loading another one fails
let busy = false;       // one job at a time: the wasm model is not re-entrant
let stopRequested = false;

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const messageOf = (e) => (e && e.message) ? e.message : String(e);

// Loads the wasm package once. A dynamic import (rather than a static one) lets a missing or
// broken /pkg/ be reported as a readable error instead of a silent worker failure.
function ensureEngine() {
  if (!enginePromise) {
    enginePromise = (async () => {
      post({ type: 'status', phase: 'init', message: 'Starting the engine…' });
      const mod = await import('/pkg/cqa_studio.js');
      await mod.default();
      backend = await mod.initDevice(true);
      engine = mod;
      post({ type: 'status', phase: 'init', message: `Engine ready (${backend === 'webgpu' ? 'WebGPU' : 'CPU'})`, backend });
      return mod;
    })();
    // A failed start may be retried by the next request (e.g. after the package is rebuilt).
    enginePromise.catch(() => { enginePromise = null; });
  }
  return enginePromise;
}

// Reads a byte stream into one Uint8Array, posting throttled progress. With a known total the
// buffer is allocated once; otherwise chunks are joined at the end.
async function readAll(stream, total) {
  const reader = stream.getReader();
  const chunks = [];
  let loaded = 0;
  let out = total > 0 ? new Uint8Array(total) : null;
  let lastPost = 0;
  post({ type: 'progress', loaded: 0, total });
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (out && loaded + value.length <= out.length) {
      out.set(value, loaded);
    } else {
      // The declared length was wrong (or absent): fall back to collecting chunks.
      if (out) { chunks.push(out.subarray(0, loaded)); out = null; }
      chunks.push(value);
    }
    loaded += value.length;
    const now = performance.now();
    if (now - lastPost >= PROGRESS_INTERVAL_MS) {
      lastPost = now;
      post({ type: 'progress', loaded, total });
    }
  }
  post({ type: 'progress', loaded, total: total || loaded });
  if (out) return loaded === out.length ? out : out.subarray(0, loaded);
  const joined = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { joined.set(c, at); at += c.length; }
  return joined;
}

async function fetchDefaultModel() {
  post({ type: 'status', phase: 'download', message: `Downloading ${DEFAULT_MODEL_NAME}…` });
  const res = await fetch(DEFAULT_MODEL_URL);
  if (!res.ok) throw new Error(`Could not download the default model (${res.status} ${res.statusText || 'error'}). Open a .gguf file instead.`);
  const total = Number(res.headers.get('Content-Length')) || 0;
  if (!res.body) return new Uint8Array(await res.arrayBuffer());
  return readAll(res.body, total);
}

async function readFile(file) {
  post({ type: 'status', phase: 'download', message: `Reading ${file.name}…` });
  return readAll(file.stream(), file.size);
}

async function load(msg) {
  let mod;
  try {
    mod = await ensureEngine();
  } catch (e) {
    throw new Error(`Could not start the engine: ${messageOf(e)}`);
  }
  let bytes, name, source;
  if (msg.file) {
    bytes = await readFile(msg.file); name = msg.file.name; source = 'file';
  } else if (msg.bytes) {
    bytes = msg.bytes instanceof Uint8Array ? msg.bytes : new Uint8Array(msg.bytes);
    name = msg.name || 'model.gguf'; source = 'file';
  } else {
    bytes = await fetchDefaultModel(); name = DEFAULT_MODEL_NAME; source = 'default';
  }
  post({ type: 'status', phase: 'load', message: `Preparing ${name} (${(bytes.length / 1e6).toFixed(1)} MB) for ${backend === 'webgpu' ? 'WebGPU' : 'CPU'}…` });
  // Give the status message a chance to leave before the synchronous load blocks this thread.
  await yieldToEvents();
  const next = mod.WebModel.loadGguf(bytes);
  // Only replace (and free) the old model once the new one has loaded.
  if (model) { try { model.free(); } catch { /* already gone */ } }
  model = next;
  let info;
  try { info = JSON.parse(model.info()); } catch { info = {}; }
  if (!info.name) info.name = name;
  post({ type: 'loaded', info, backend, source });
}

// Lets queued messages (notably 'stop') run between tokens. A MessageChannel round trip is a
// real task, unlike an awaited promise (microtask), and avoids setTimeout's 4 ms clamping.
const channel = new MessageChannel();
const waiters = [];
channel.port1.onmessage = () => { const w = waiters.shift(); if (w) w(); };
function yieldToEvents() {
  return new Promise((resolve) => { waiters.push(resolve); channel.port2.postMessage(0); });
}

function requireModel() {
  if (!model) throw new Error('No model is loaded yet.');
  return model;
}

async function generate({ id, prompt, chat, params }) {
  const m = requireModel();
  stopRequested = false;
  m.startGeneration(String(prompt), Boolean(chat), JSON.stringify(params || {}));
  post({ type: 'status', phase: 'generate', message: 'Reading the prompt…' });
  const t0 = performance.now();
  let tFirst = 0;
  let count = 0;
  let reason = 'stopped';
  // Decode speed excludes the prompt's prefill, which is paid by the first token.
  const rate = (now) => (count > 1 ? (count - 1) / ((now - tFirst) / 1000) : 0);
  for (;;) {
    await yieldToEvents();
    if (stopRequested) { reason = 'stopped'; break; }
    const step = JSON.parse(await m.nextToken());
    if (step.done) { reason = step.reason || 'end_of_sequence'; break; }
    const now = performance.now();
    count += 1;
    if (count === 1) tFirst = now;
    post({ type: 'token', id, token: step.token, text: step.text || '', count, tokensPerSecond: rate(now) });
  }
  const end = performance.now();
  post({ type: 'done', id, reason, count, elapsedMs: end - t0, tokensPerSecond: rate(end) });
}

async function score({ id, text, context }) {
  const m = requireModel();
  post({ type: 'status', phase: 'score', message: 'Scoring…' });
  const ctx = context && context.length > 0 ? context : undefined;
  const result = JSON.parse(await m.score(String(text), ctx));
  // Each token's own text, for the per-token view (a token holding part of a character shows as �).
  result.token_texts = JSON.parse(m.tokenTexts(Uint32Array.from(result.text_ids)));
  post({ type: 'score', id, result });
}

const jobs = { load, generate, score };

self.onmessage = async (event) => {
  const msg = event.data || {};
  if (msg.type === 'stop') { stopRequested = true; return; }
  const job = jobs[msg.type];
  if (!job) { post({ type: 'error', op: 'unknown', message: `Unknown request: ${msg.type}` }); return; }
  if (busy) {
    post({ type: 'error', op: 'busy', id: msg.id, request: msg.type, message: 'The engine is busy; wait for the current task to finish (or press Stop).' });
    return;
  }
  busy = true;
  try {
    await job(msg);
  } catch (e) {
    post({ type: 'error', op: msg.type, id: msg.id, message: messageOf(e), modelLoaded: model !== null });
  } finally {
    busy = false;
    stopRequested = false;
  }
};

// Start the engine straight away so its start-up overlaps with the page's first paint; a
// failure here is reported now and retried by the first request.
ensureEngine().catch((e) => post({ type: 'error', op: 'init', message: `Could not start the engine: ${messageOf(e)}` }));
