// The engine lives in module workers so that loading, generating, training and calibrating never
// freeze the page. The page starts two instances of this file:
//
//   name 'engine'  the model(s) on WebGPU (or the CPU): load, generate, compare, score, train,
//                  calibrate. One job at a time; a second request while busy gets {type:'error',
//                  code:'busy'}. Control messages (stop, train-control) are handled at once.
//   name 'data'    the engine's pure functions (validation, coverage, JSONL, TRL export,
//                  statistics), answered immediately even while the engine worker trains.
//
// Both run the same wasm package. The page compiles it once and sends the WebAssembly.Module to
// each worker in the first message, so the 40 MB binary is fetched and compiled only once.
//
// ---- Protocol -------------------------------------------------------------------------------
// Every request carries a numeric `id` chosen by the page. The worker answers it with zero or
// more events and then exactly one of
//   {type: 'result', id, result}
//   {type: 'error',  id, code, message}       code: 'busy' | 'cancelled' | 'failed'
// `message` is a human sentence (an engine error message, never a stack trace).
//
// page → worker (both roles)
//   {type: 'init', module: WebAssembly.Module | null}   first message; null: compile it here
// page → data worker (requests; results in brackets)
//   {type: 'parseAnnotations', id, bytes}             [{records, errors:[{line, field, message}]}]
//   {type: 'annotationsStatus', id, records}          [{errors:[{index, field, message}], valid, coverage}]
//                                                       records: annotation objects in list order;
//                                                       coverage of the valid ones (or null)
//   {type: 'toJsonl', id, records}                    [jsonl string] (refuses invalid records)
//   {type: 'exportTrl', id, records}                  [TRL JSONL string]
//   {type: 'parseBenchmark', id, bytes}               [items]
//   {type: 'pairedSummary', id, values}               [{n, mean, median, sd, wilcoxon_p, cohens_d, wilcoxon_method}]
//   {type: 'verdictScore', id, text}                  [number | null]
// page → engine worker (requests)
//   {type: 'init-device', id}                         [{backend, adapter, reason}] adapter: GPUAdapterInfo fields
//   {type: 'load', id, source: 'default' | 'url' | 'local', name}     a file under /models/, or a
//                                                       GGUF cached earlier from the user's disk
//   {type: 'load', id, file: File}                    a GGUF from the user's disk (then cached)
//   {type: 'load', id, hf: {shards: File[], config: File, tokenizer: File, tokenizerConfig?: File}}
//        events: {type: 'progress', id, stage, loaded, total, message}
//                stage: 'cache' | 'download' | 'read' | 'prepare'; total may be 0 (unknown)
//        result: {info, name, source, cached, fromCache}   cached: kept in Cache Storage;
//                fromCache: read from it this time
//   {type: 'forget-models', id}                       [number of cached model files deleted]
//   {type: 'generate', id, prompt, chat, params}      the base model alone
//        events: {type: 'token', id, side: 'base', text, count, tokensPerSecond}
//        result: {reason, count, elapsedMs, tokensPerSecond}
//   {type: 'compare', id, mode: 'appreciation' | 'generation', brief, audience, genre, work,
//        prompt, params, adapter?}                    base and tuned, tokens interleaved
//        events: {type: 'token', id, side: 'base' | 'tuned', text, count, tokensPerSecond}
//                {type: 'side-done', id, side, reason, count}
//        result: {base: {text, reason, count}, tuned: {…} | null}
//   {type: 'judge', id, brief, audience, genre, works: {base, tuned}, params, adapter?}
//        the tuned model (the base without an adapter) critiques each work in turn
//        events: {type: 'token', id, side, text, count}
//        result: {base: {text, score}, tuned: {text, score}, judge: 'tuned' | 'base'}
//   {type: 'shift', id, text, context, adapter}       [{ids, texts, base, tuned}] per-token log-probs
//   {type: 'calibrate', id, items, adapter?}          item by item
//        events: {type: 'item', id, index, total, result}   result as `cqa calibrate --json
//                --tokens` prints one item, plus `token_texts`
//        result: {outcome: 'finished' | 'cancelled', done}
//   {type: 'check-adapter', id, adapter}              [{ok: true}] merges it once to validate
//   {type: 'train', id, records (JSONL string), config, keepGoodLines, checkpoint?, checkpointEvery}
//        events: {type: 'train-info', id, info}      {train, held_out, step, total_steps, warnings, config}
//                {type: 'train-event', id, event, checkpoint?: Uint8Array}   event: a step report
//                  {kind:'step', step, total_steps, epoch, loss, tokens_per_s, eta_s, …} or
//                  {kind:'held_out', step, held_out_loss}; checkpoint bytes when one was taken
//        result: {outcome: 'finished' | 'cancelled', info, adapter: {config_json, safetensors} | null}
//   {type: 'stop', target}                            stop generation / calibration `target` (no reply)
//   {type: 'train-control', action: 'pause' | 'resume' | 'cancel'}     (no reply)
//   `adapter` everywhere is {key, config_json, safetensors}: the worker keeps the last merged
//   tuned model for `key`, so repeated comparisons do not merge again.
// ----------------------------------------------------------------------------------------------

const ROLE = self.name === 'data' ? 'data' : 'engine';
const DEFAULT_MODEL = 'SmolLM2-135M-Instruct.Q4_1.gguf';
const MODEL_CACHE = 'cqa-studio-models-v1';
const PROGRESS_INTERVAL_MS = 100;

let wasm = null;            // the wasm module's exports once initialised
let wasmReady = null;       // Promise of them
let resolveModule;
const modulePromise = new Promise((r) => { resolveModule = r; });

const post = (msg, transfer) => self.postMessage(msg, transfer || []);
const messageOf = (e) => {
  const m = (e && e.message) ? e.message : String(e);
  return m.replace(/^Error:\s*/, '');
};

function ensureWasm() {
  if (!wasmReady) {
    wasmReady = (async () => {
      const module = await modulePromise;
      const mod = await import('/pkg/cqa_studio.js');
      await (module ? mod.default({ module_or_path: module }) : mod.default());
      wasm = mod;
      return mod;
    })();
    wasmReady.catch(() => { wasmReady = null; });
  }
  return wasmReady;
}

// ---- data role -----------------------------------------------------------------------------

const enc = new TextEncoder();
const toLines = (records) => records.map((r) => JSON.stringify(r)).join('\n') + '\n';

const dataJobs = {
  async parseAnnotations({ bytes }) {
    const m = await ensureWasm();
    return JSON.parse(m.parseAnnotations(new Uint8Array(bytes)));
  },
  // The editor's view of the stored records: the engine validates them (one record per line,
  // so the line number is the list index + 1) and measures the coverage of the valid ones.
  async annotationsStatus({ records }) {
    const m = await ensureWasm();
    if (records.length === 0) return { errors: [], valid: 0, coverage: JSON.parse(m.annotationCoverage('')) };
    const report = JSON.parse(m.parseAnnotations(enc.encode(toLines(records))));
    const errors = report.errors.map((e) => ({ index: e.line - 1, field: e.field, message: e.message }));
    const bad = new Set(errors.map((e) => e.index));
    const valid = records.filter((_, i) => !bad.has(i));
    const coverage = JSON.parse(m.annotationCoverage(valid.length ? toLines(valid) : ''));
    return { errors, valid: valid.length, coverage };
  },
  async toJsonl({ records }) {
    const m = await ensureWasm();
    return m.annotationsToJsonl(JSON.stringify(records));
  },
  async exportTrl({ records }) {
    const m = await ensureWasm();
    return m.exportTrl(toLines(records));
  },
  async parseBenchmark({ bytes }) {
    const m = await ensureWasm();
    return JSON.parse(m.parseBenchmark(new Uint8Array(bytes)));
  },
  async pairedSummary({ values }) {
    const m = await ensureWasm();
    return JSON.parse(m.pairedSummary(Float64Array.from(values)));
  },
  async verdictScore({ text }) {
    const m = await ensureWasm();
    return m.parseVerdictScore(text) ?? null;
  },
};

// ---- engine role ---------------------------------------------------------------------------

let backend = null;          // 'webgpu' | 'cpu'
let devicePromise = null;
let base = null;             // the loaded WebModel
let baseName = null;
let tuned = null;            // {key, model}: the last adapter merged into the base
let busy = null;             // the id of the running job
const stops = new Set();     // ids asked to stop
let trainControl = null;     // WebTrainControl of the running training

async function ensureDevice() {
  if (!devicePromise) {
    devicePromise = (async () => {
      const m = await ensureWasm();
      let adapter = null;
      let reason = null;
      if (!('gpu' in navigator) || !navigator.gpu) {
        reason = 'this browser does not offer WebGPU (navigator.gpu is missing), so the engine runs on the CPU';
      } else {
        try {
          const a = await navigator.gpu.requestAdapter();
          if (!a) reason = 'the browser found no WebGPU adapter, so the engine runs on the CPU';
          else {
            const i = a.info || {};
            adapter = { vendor: i.vendor || '', architecture: i.architecture || '', device: i.device || '', description: i.description || '' };
          }
        } catch (e) {
          reason = `requesting a WebGPU adapter failed (${messageOf(e)}), so the engine runs on the CPU`;
        }
      }
      backend = await m.initDevice(true);
      if (backend !== 'webgpu' && !reason) reason = 'the WebGPU device could not be started, so the engine runs on the CPU';
      if (backend === 'webgpu') reason = null;
      return { backend, adapter, reason };
    })();
    devicePromise.catch(() => { devicePromise = null; });
  }
  return devicePromise;
}

// Lets queued messages (stop, pause) run between tokens: a MessageChannel round trip is a task.
const channel = new MessageChannel();
const waiters = [];
channel.port1.onmessage = () => { const w = waiters.shift(); if (w) w(); };
const yieldToEvents = () => new Promise((resolve) => { waiters.push(resolve); channel.port2.postMessage(0); });

// Reads a byte stream into one Uint8Array, reporting progress as `stage`.
async function readAll(stream, total, progress) {
  const reader = stream.getReader();
  const chunks = [];
  let loaded = 0;
  let out = total > 0 ? new Uint8Array(total) : null;
  let last = 0;
  progress(0, total);
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (out && loaded + value.length <= out.length) out.set(value, loaded);
    else {
      if (out) { chunks.push(out.subarray(0, loaded)); out = null; }
      chunks.push(value);
    }
    loaded += value.length;
    const now = performance.now();
    if (now - last >= PROGRESS_INTERVAL_MS) { last = now; progress(loaded, total); }
  }
  progress(loaded, total || loaded);
  if (out) return loaded === out.length ? out : out.subarray(0, loaded);
  const joined = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) { joined.set(c, at); at += c.length; }
  return joined;
}

async function openCache() {
  try { return await caches.open(MODEL_CACHE); } catch { return null; } // no Cache Storage (e.g. opaque origin)
}

const localKey = (name) => new URL(`/local-models/${encodeURIComponent(name)}`, self.location.origin).href;

function checkModelName(name) {
  if (typeof name !== 'string' || !/^[\w.-]+\.gguf$/i.test(name)) {
    throw new Error(`“${name}” is not a model file name (expected something like ${DEFAULT_MODEL})`);
  }
  return name;
}

async function storeInCache(cache, key, bytes) {
  if (!cache) return false;
  try {
    await cache.put(key, new Response(bytes, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(bytes.length) } }));
    return true;
  } catch {
    return false; // over quota: the model still works, it just is not cached
  }
}

async function load(msg, ev) {
  const m = await ensureWasm();
  await ensureDevice();
  const progress = (stage, message) => (loaded, total) => ev({ type: 'progress', stage, loaded, total, message });
  const cache = await openCache();
  let name, source, cached = false, fromCache = false;
  let next;
  if (msg.hf) {
    const { shards, config, tokenizer, tokenizerConfig } = msg.hf;
    const files = [...shards, config, tokenizer, ...(tokenizerConfig ? [tokenizerConfig] : [])];
    const total = files.reduce((s, f) => s + f.size, 0);
    let done = 0;
    const read = async (f) => {
      const bytes = await readAll(f.stream(), f.size, (l) => ev({ type: 'progress', stage: 'read', loaded: done + l, total, message: `Reading ${f.name}…` }));
      done += f.size;
      return bytes;
    };
    const shardBytes = [];
    for (const f of shards) shardBytes.push(await read(f));
    const configText = new TextDecoder().decode(await read(config));
    const tokBytes = await read(tokenizer);
    const tokConfigText = tokenizerConfig ? new TextDecoder().decode(await read(tokenizerConfig)) : null;
    name = shards.length === 1 ? shards[0].name : `${shards.length} safetensors shards`;
    source = 'files';
    ev({ type: 'progress', stage: 'prepare', loaded: total, total, message: `Preparing the weights for ${backend === 'webgpu' ? 'WebGPU' : 'the CPU'}…` });
    await yieldToEvents();
    next = m.WebModel.loadHf(shardBytes, configText, tokBytes, tokConfigText);
  } else {
    let bytes;
    if (msg.file) {
      name = msg.file.name;
      source = 'file';
      bytes = await readAll(msg.file.stream(), msg.file.size, progress('read', `Reading ${name} from your disk…`));
    } else {
      const local = msg.source === 'local';
      name = checkModelName(msg.name || DEFAULT_MODEL);
      source = local ? 'local' : (name === DEFAULT_MODEL ? 'default' : 'url');
      const key = local ? localKey(name) : new URL(`/models/${name}`, self.location.origin).href;
      const hit = cache ? await cache.match(key) : null;
      if (hit && hit.body) {
        cached = true;
        fromCache = true;
        bytes = await readAll(hit.body, Number(hit.headers.get('Content-Length')) || 0, progress('cache', `Reading ${name} from this browser’s cache…`));
      } else if (local) {
        throw new Error(`${name} is no longer in this browser’s cache; open the file again`);
      } else {
        ev({ type: 'progress', stage: 'download', loaded: 0, total: 0, message: `Downloading ${name}…` });
        const res = await fetch(key);
        if (!res.ok) throw new Error(`could not download ${name} (${res.status} ${res.statusText || 'error'}); open a model file instead`);
        const total = Number(res.headers.get('Content-Length')) || 0;
        bytes = res.body ? await readAll(res.body, total, progress('download', `Downloading ${name}…`)) : new Uint8Array(await res.arrayBuffer());
      }
    }
    ev({ type: 'progress', stage: 'prepare', loaded: bytes.length, total: bytes.length, message: `Preparing ${name} (${(bytes.length / 1e6).toFixed(1)} MB) for ${backend === 'webgpu' ? 'WebGPU' : 'the CPU'}…` });
    await yieldToEvents();
    next = m.WebModel.loadGguf(bytes);
    // Cache only what loaded: a broken file is not kept.
    if (!cached) {
      const key = source === 'file' || source === 'local' ? localKey(name) : new URL(`/models/${name}`, self.location.origin).href;
      cached = await storeInCache(cache, key, bytes);
    }
  }
  // Only replace (and free) the old model once the new one has loaded.
  dropTuned();
  if (base) { try { base.free(); } catch { /* already freed */ } }
  base = next;
  baseName = name;
  let info;
  try { info = JSON.parse(base.info()); } catch { info = {}; }
  if (!info.name) info.name = name;
  return { info, name, source, cached, fromCache };
}

async function forgetModels() {
  const cache = await openCache();
  if (!cache) return 0;
  const keys = await cache.keys();
  await Promise.all(keys.map((k) => cache.delete(k)));
  return keys.length;
}

function requireModel() {
  if (!base) throw new Error('no model is loaded yet: load one in the Model panel');
  return base;
}

function dropTuned() {
  if (tuned) { try { tuned.model.free(); } catch { /* already freed */ } tuned = null; }
}

async function tunedFor(adapter, ev) {
  if (!adapter) return null;
  if (tuned && tuned.key === adapter.key) return tuned.model;
  const b = requireModel();
  dropTuned();
  ev?.({ type: 'progress', stage: 'prepare', loaded: 0, total: 0, message: 'Merging the adapter into a copy of the model…' });
  await yieldToEvents();
  const model = b.withAdapter(adapter.config_json, new Uint8Array(adapter.safetensors));
  tuned = { key: adapter.key, model };
  return model;
}

// Streams one or two sessions that were already started, one token each in turn.
async function stream(id, sides, ev) {
  const out = {};
  const t0 = performance.now();
  for (const s of sides) out[s.side] = { text: '', reason: null, count: 0, tFirst: 0 };
  let open = sides.slice();
  while (open.length) {
    for (const s of open.slice()) {
      await yieldToEvents();
      const o = out[s.side];
      if (stops.has(id)) { o.reason = 'stopped'; }
      else {
        const step = JSON.parse(await s.model.nextToken());
        if (step.done) o.reason = step.reason || 'end_of_sequence';
        else {
          const now = performance.now();
          o.count += 1;
          if (o.count === 1) o.tFirst = now;
          o.text += step.text || '';
          const rate = o.count > 1 ? (o.count - 1) / ((now - o.tFirst) / 1000) : 0;
          ev({ type: 'token', side: s.side, text: step.text || '', count: o.count, tokensPerSecond: rate });
        }
      }
      if (o.reason) {
        ev({ type: 'side-done', side: s.side, reason: o.reason, count: o.count });
        open = open.filter((x) => x !== s);
      }
    }
  }
  const elapsedMs = performance.now() - t0;
  for (const k of Object.keys(out)) {
    const o = out[k];
    o.elapsedMs = elapsedMs;
    o.tokensPerSecond = o.count > 1 ? (o.count - 1) / ((performance.now() - o.tFirst) / 1000) : 0;
    delete o.tFirst;
  }
  return out;
}

async function generate(msg, ev) {
  const b = requireModel();
  b.startGeneration(String(msg.prompt), Boolean(msg.chat), JSON.stringify(msg.params || {}));
  const out = await stream(msg.id, [{ side: 'base', model: b }], ev);
  return out.base;
}

function start(model, msg, work) {
  const params = JSON.stringify(msg.params || {});
  if (msg.mode === 'generation') model.startGeneration(String(msg.prompt), true, params);
  else model.startAppreciation(msg.brief || '', msg.audience || '', msg.genre || '', work ?? msg.work, params);
}

async function compare(msg, ev) {
  const b = requireModel();
  const t = await tunedFor(msg.adapter, ev);
  start(b, msg);
  const sides = [{ side: 'base', model: b }];
  if (t) { start(t, msg); sides.push({ side: 'tuned', model: t }); }
  const out = await stream(msg.id, sides, ev);
  return { base: out.base, tuned: out.tuned || null };
}

async function judge(msg, ev) {
  const b = requireModel();
  const t = await tunedFor(msg.adapter, ev);
  const judgeModel = t || b;
  const m = await ensureWasm();
  const result = { judge: t ? 'tuned' : 'base' };
  for (const side of ['base', 'tuned']) {
    const work = msg.works[side];
    if (!work) { result[side] = null; continue; }
    judgeModel.startAppreciation(msg.brief || '', msg.audience || '', msg.genre || '', work, JSON.stringify(msg.params || {}));
    const out = await stream(msg.id, [{ side, model: judgeModel }], ev);
    const score = m.parseVerdictScore(out[side].text);
    result[side] = { text: out[side].text, reason: out[side].reason, score: score ?? null };
    if (stops.has(msg.id)) break;
  }
  return result;
}

async function shift(msg, ev) {
  const b = requireModel();
  const t = await tunedFor(msg.adapter, ev);
  const ctx = msg.context && msg.context.length ? msg.context : undefined;
  ev({ type: 'progress', stage: 'score', loaded: 0, total: t ? 2 : 1, message: 'Scoring with the base model…' });
  const sb = JSON.parse(await b.score(String(msg.text), ctx));
  let st = null;
  if (t) {
    ev({ type: 'progress', stage: 'score', loaded: 1, total: 2, message: 'Scoring with the tuned model…' });
    st = JSON.parse(await t.score(String(msg.text), ctx));
  }
  const texts = JSON.parse(b.tokenTexts(Uint32Array.from(sb.text_ids)));
  return { ids: sb.text_ids, texts, base: sb, tuned: st };
}

async function calibrate(msg, ev) {
  const b = requireModel();
  const t = await tunedFor(msg.adapter, ev);
  const items = msg.items;
  let done = 0;
  for (let i = 0; i < items.length; i++) {
    await yieldToEvents();
    if (stops.has(msg.id)) return { outcome: 'cancelled', done };
    const json = JSON.stringify(items[i]);
    const result = JSON.parse(t ? await b.calibrateItemAgainst(json, t) : await b.calibrateItem(json));
    result.token_texts = JSON.parse(b.tokenTexts(Uint32Array.from(result.token_ids || [])));
    done += 1;
    ev({ type: 'item', index: i, total: items.length, result });
  }
  return { outcome: 'finished', done };
}

async function checkAdapter(msg, ev) {
  requireModel();
  await tunedFor(msg.adapter, ev);
  return { ok: true };
}

async function train(msg, ev) {
  const m = await ensureWasm();
  const b = requireModel();
  const bytes = enc.encode(msg.records);
  const trainer = msg.checkpoint
    ? m.WebTrainer.resume(b, bytes, new Uint8Array(msg.checkpoint))
    : new m.WebTrainer(b, bytes, JSON.stringify(msg.config || {}), Boolean(msg.keepGoodLines));
  try {
    ev({ type: 'train-info', info: JSON.parse(trainer.info()) });
    trainControl = trainer.control();
    const outcome = await trainer.run((json, checkpoint) => {
      const event = JSON.parse(json);
      if (checkpoint) post({ type: 'train-event', id: msg.id, event, checkpoint }, [checkpoint.buffer]);
      else post({ type: 'train-event', id: msg.id, event });
    }, Math.max(1, msg.checkpointEvery || 10));
    const info = JSON.parse(trainer.info());
    let adapter = null;
    if (outcome === 'finished') {
      const a = await trainer.adapter(baseName);
      adapter = { config_json: a.config_json, safetensors: a.safetensors };
    }
    return { outcome, info, adapter };
  } finally {
    try { trainControl?.free(); } catch { /* freed */ }
    trainControl = null;
    try { trainer.free(); } catch { /* freed */ }
  }
}

const engineJobs = {
  'init-device': () => ensureDevice(),
  load, 'forget-models': forgetModels, generate, compare, judge, shift, calibrate, 'check-adapter': checkAdapter, train,
};

// ---- dispatch ------------------------------------------------------------------------------

async function runJob(job, msg) {
  const ev = (e) => post({ ...e, id: msg.id });
  try {
    const result = await job(msg, ev);
    post({ type: 'result', id: msg.id, result });
  } catch (e) {
    post({ type: 'error', id: msg.id, code: 'failed', message: messageOf(e) });
  }
}

self.onmessage = async (event) => {
  const msg = event.data || {};
  if (msg.type === 'init') { resolveModule(msg.module || null); if (ROLE === 'engine') ensureDevice().catch(() => {}); return; }
  if (ROLE === 'data') {
    const job = dataJobs[msg.type];
    if (!job) { post({ type: 'error', id: msg.id, code: 'failed', message: `unknown request ${msg.type}` }); return; }
    await runJob(job, msg);
    return;
  }
  if (msg.type === 'stop') { stops.add(msg.target); return; }
  if (msg.type === 'train-control') {
    if (trainControl) trainControl[msg.action]?.();
    return;
  }
  const job = engineJobs[msg.type];
  if (!job) { post({ type: 'error', id: msg.id, code: 'failed', message: `unknown request ${msg.type}` }); return; }
  if (busy !== null && msg.type !== 'init-device') {
    post({ type: 'error', id: msg.id, code: 'busy', message: 'the engine is busy with another task; wait for it to finish or stop it' });
    return;
  }
  if (msg.type !== 'init-device') busy = msg.id;
  try {
    await runJob(job, msg);
  } finally {
    if (busy === msg.id) busy = null;
    stops.delete(msg.id);
  }
};
