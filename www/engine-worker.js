// The engine worker: the model(s) on WebGPU (or the CPU), so that loading, generating, training
// and calibrating never freeze the page. The page starts it as a module worker named 'engine';
// the engine's pure functions run in the data worker (data-worker.js). The protocol common to
// both workers (init, ids, result and error replies) is described in lib/worker-core.js.
//
// One job at a time: a second request while one runs gets {type: 'error', code: 'busy'} (except
// 'init-device' and the simulate-* requests). Control messages (stop, train-control) are handled
// at once and get no reply.
//
// The GPU device: the engine (Rust, wgpu) asks WebGPU for its device itself; this worker wraps
// GPUAdapter.prototype.requestDevice before the wasm starts, so it keeps that device (for its
// limits, and to watch `device.lost`). burn/wgpu cannot re-create a lost device in place, so when
// it is lost the worker tells the page, which starts a fresh worker and loads the model again:
// worker → page   {type: 'device-lost', message}   unsolicited
//
// page → engine worker (requests; results in brackets)
//   {type: 'init-device', id}                         [{backend, adapter, threads, reason}]
//        backend: 'webgpu' | 'cpu'; adapter: GPUAdapterInfo fields (on WebGPU) or null;
//        threads: the threads the CPU path computes on (1 on WebGPU, or on one thread);
//        reason: why the engine runs on the CPU (the engine's words, e.g. WebGPU's own error), or null
//        The choice is made once, when the worker starts, from the 'init' message's
//        device: {cpu?: true (skip WebGPU), threads?: N (at most N CPU threads; 1: none)}
//   {type: 'load', id, source: 'default' | 'url' | 'local', name?}   a file under /models/ (name
//        defaults to the engine's default model), or a GGUF cached earlier from the user's disk
//   {type: 'load', id, file: File}                    a GGUF from the user's disk (then cached)
//   {type: 'load', id, hf: {shards: File[], config: File, tokenizer: File, tokenizerConfig?: File}}
//        any of them with memoryBudgetMb?: the memory budget in MiB instead of the default (below)
//        A model that does not fit is refused before the engine reads it (a GGUF from the disk:
//        before the file is even read whole), with a sentence naming what it needs and the
//        limit. The loaded model stays loaded whenever a load fails. The limits:
//          WebGPU: its largest GPU buffer must fit the device's maxBufferSize and
//            maxStorageBufferBindingSize (a stored matrix goes up in chunks of at most 128 MiB),
//            and its weights (as the file stores them; an HF model's as f32) in the budget:
//            2 GiB, or the device's maxBufferSize when that is larger (WebGPU does not tell a
//            GPU's memory; a GPU that takes one buffer over 2 GiB has at least that). The wasm
//            heap (4 GiB) must also hold the file while its weights are uploaded one by one.
//          CPU: the wasm heap (4 GiB, wasm32) holds the file, the weights as stored and the
//            model already loaded (kept until the new one is ready); the budget replaces the
//            4 GiB.
//        events: {type: 'progress', id, stage, loaded, total, message}
//                stage: 'cache' | 'download' | 'read' | 'prepare'; total may be 0 (unknown)
//        result: {info, name, source, cached, fromCache, identity}   info: `cqa info --json`'s
//                fields; cached: kept in Cache Storage; fromCache: read from it this time;
//                identity: {name, size, sha256} of the file (sha256 null for HF shards)
//   {type: 'forget-models', id}                       [number of cached model files deleted]
//   {type: 'generate', id, prompt, chat, params}      the base model alone; params: sampling settings
//        events: {type: 'token', id, side: 'base', text, count, tokensPerSecond}
//                {type: 'side-done', id, side, reason, count}
//        result: {text, reason, count, elapsedMs, tokensPerSecond}
//   {type: 'compare', id, mode: 'appreciation' | 'generation', brief, audience, genre, work,
//        prompt, params, adapter?}                    base and tuned, tokens interleaved
//        events: {type: 'token', id, side: 'base' | 'tuned', text, count, tokensPerSecond}
//                {type: 'side-done', id, side, reason, count}
//                {type: 'progress', id, stage: 'prepare', message}   while merging the adapter
//                {type: 'verdict', id, side, verdict, error}   appreciation, once both critiques
//                  are done (not when stopped): `verdictDistribution(input, 'critique', text)` of
//                  that side's model ({prefix, continuations, logprobs, p[10], expected, mode,
//                  entropy_bits, verdict_mass}), or null and `error` (a sentence) if it failed
//        result: {base: {text, reason, count, …, verdict?, verdict_error?}, tuned: {…} | null}
//                (verdict and verdict_error in appreciation mode, as in the event)
//   {type: 'judge', id, brief, audience, genre, works: {base, tuned}, params, adapter?}
//        the tuned model (the base without an adapter) critiques each work in turn, then gives
//        its verdict distribution after that critique
//        events: {type: 'token', id, side, text, count, tokensPerSecond}, {type: 'side-done', …},
//                {type: 'verdict', id, side, verdict, error}   side: the work judged
//        result: {base: {text, reason, score, verdict, verdict_error} | null, tuned: {…} | null,
//                judge: 'tuned' | 'base'}   score: the verdict written in the critique, or null
//   {type: 'shift', id, text, context, adapter}       [{ids, texts, base, tuned}] per-token log-probs
//        base, tuned: `cqa score --json`'s objects (tuned null without an adapter)
//   {type: 'calibrate', id, items, adapter?}          item by item
//        events: {type: 'item', id, index, total, result}   result as `cqa calibrate --json
//                --tokens` prints one item, plus `token_texts`
//        result: {outcome: 'finished' | 'cancelled', done}
//   {type: 'agreement', id, records, adapter?, options}   agreement with the expert's scores,
//        record by record like 'calibrate' ('stop' ends it after the current record)
//        records: annotation objects; options: AppraiseOptions fields, all optional:
//        {mode: 'direct' | 'critique' | 'reasoning', max_new_tokens, bootstrap, seed, level}
//        events: {type: 'record', id, index, total, recordId, base, tuned}   base, tuned: the
//                  engine's `appraiseRecord` results (the VerdictDistribution fields plus nll,
//                  tokens, critique?, parsed_score?); tuned null without an adapter
//        result: {outcome: 'finished' | 'cancelled', done, total, records, summary}
//                records, summary: `appreciationReport` over the records done (`cqa appreciate
//                --json`'s shape), both null when none was done
//   {type: 'check-adapter', id, adapter}              [{ok: true}] merges it once to validate
//   {type: 'train', id, records (JSONL string), config, keepGoodLines, checkpoint?, checkpointEvery}
//        config: TrainConfig fields (missing ones take the engine's defaults); with checkpoint
//        (bytes) the run resumes from it and config is not used
//        events: {type: 'train-info', id, info}      {train, held_out, held_out_ids, step, total_steps,
//                  warnings, config}   held_out_ids: the ids of the records held out of training
//                {type: 'train-event', id, event, checkpoint?: Uint8Array}   event: what
//                  `cqa train --json` prints: {kind: 'step', step, total_steps, epoch, loss,
//                  learning_rate, grad_norm, tokens, tokens_per_s, elapsed_s, eta_s} or
//                  {kind: 'held_out', step, held_out_loss}; checkpoint bytes when one was taken
//        result: {outcome: 'finished' | 'cancelled', info, adapter: {config_json, safetensors} | null}
//   {type: 'simulate-device-loss', id}                [{destroyed: true}] calls destroy() on the
//        engine's GPU device: Chromium then resolves device.lost, and the worker reports it as a
//        loss ('device-lost'), as it would a real one (how tests, and the curious, exercise it)
//   {type: 'gpu-stats', id, reset?}                   [{shaderModules, pipelines, shaderBytes, dispatches,
//        submits, since, kernels}] what the engine has asked of WebGPU since the worker started (or the
//        last reset): counted at the API, for measurement (kernels compiled, dispatches per token)
//   {type: 'simulate-crash', id}                      [{scheduled: true}] test-only: throws outside
//        any handler just after replying (the page's Worker gets an 'error' event)
//   {type: 'simulate-hang', id}                       test-only: never answers (the page's
//        watchdog reports it)
// page → engine worker (control; no reply)
//   {type: 'stop', target}                            stop generation / calibration / agreement `target` (an id)
//   {type: 'train-control', action: 'pause' | 'resume' | 'cancel'}
//
// `adapter` everywhere is {key, config_json, safetensors}: the worker keeps the last merged tuned
// model for `key`, so repeated comparisons do not merge again.
import { allowList, ensureThreadedWasm, ensureWasm, lookup, messageOf, post, refuse, runJob, serve, simulateCrash, yieldToEvents } from './lib/worker-core.js';
import { forgetModels, ggufNeed, readGguf, readHfFiles, safetensorsNeed, storeModel } from './lib/model-files.js';
import { measureAgreement, stream, verdictAfter } from './lib/model-loops.js';

let backend = null;          // 'webgpu' | 'cpu'
let devicePromise = null;
let base = null;             // the loaded WebModel
let baseName = null;
let tuned = null;            // {key, model}: the last adapter merged into the base
let busy = null;             // the id of the running job
const stops = new Set();     // ids asked to stop
let trainControl = null;     // WebTrainControl of the running training
let baseResident = 0;        // bytes the loaded model's weights hold (for the CPU's memory check)

// ---- the GPU device the engine creates -----------------------------------------------------

let gpuAdapter = null;       // the GPUAdapter the engine asked for its device
let gpuDevice = null;        // the GPUDevice it got
let lossRequested = false;   // destroy() was called by 'simulate-device-loss'

// Before the wasm runs: wgpu calls adapter.requestDevice() through the prototype.
const Adapter = self.GPUAdapter;
if (Adapter && typeof Adapter.prototype.requestDevice === 'function') {
  const requestDevice = Adapter.prototype.requestDevice;
  Adapter.prototype.requestDevice = function (...args) {
    const adapter = this;
    return requestDevice.apply(adapter, args).then((device) => {
      gpuAdapter = adapter;
      gpuDevice = device;
      // Why the device was lost, or null when the loss is not one: a device the engine no
      // longer uses, or a destroy() on purpose that 'simulate-device-loss' did not ask for (the
      // engine never destroys its device itself; the page ends a worker with terminate(),
      // which fires nothing here).
      deviceLost = device.lost.then((info) => {
        if (device !== gpuDevice || (info.reason === 'destroyed' && !lossRequested)) return null;
        return lossRequested ? 'it was destroyed on request (simulate-device-loss)' : (info.message || info.reason || 'no reason given');
      });
      deviceLost.then((why) => { if (why) post({ type: 'device-lost', message: `the GPU device was lost: ${why}` }); });
      return device;
    });
  };
}

let deviceLost = null;        // Promise of why the current device was lost (null: not lost)

// What the engine asks of WebGPU, counted at the API ('gpu-stats'): one shader module and one
// pipeline per distinct kernel compiled, one dispatch per kernel launch.
const zeroStats = () => ({ shaderModules: 0, pipelines: 0, shaderBytes: 0, dispatches: 0, submits: 0, since: Date.now() });
const gpuStats = zeroStats();
function countCalls(proto, method, count) {
  const original = proto?.[method];
  if (typeof original !== 'function') return;
  proto[method] = function (...args) { count(args); return original.apply(this, args); };
}
const kernelNames = []; // the entry point of each shader module since the last reset
countCalls(self.GPUDevice?.prototype, 'createShaderModule', ([desc]) => {
  gpuStats.shaderModules += 1;
  gpuStats.shaderBytes += desc?.code?.length || 0;
  const entry = /@compute[^]*?fn\s+(\w+)/.exec(desc?.code || '');
  if (kernelNames.length < 1000) kernelNames.push(entry ? entry[1] : '?');
});
countCalls(self.GPUDevice?.prototype, 'createComputePipeline', () => { gpuStats.pipelines += 1; });
countCalls(self.GPUDevice?.prototype, 'createComputePipelineAsync', () => { gpuStats.pipelines += 1; });
countCalls(self.GPUComputePassEncoder?.prototype, 'dispatchWorkgroups', () => { gpuStats.dispatches += 1; });
countCalls(self.GPUComputePassEncoder?.prototype, 'dispatchWorkgroupsIndirect', () => { gpuStats.dispatches += 1; });
countCalls(self.GPUQueue?.prototype, 'submit', () => { gpuStats.submits += 1; });

function readGpuStats(msg) {
  const out = { ...gpuStats, kernels: [...kernelNames] };
  if (msg.reset) {
    Object.assign(gpuStats, zeroStats());
    kernelNames.length = 0;
  }
  return out;
}

/**
 * Whether a failed job failed because the GPU device is gone: wgpu's error often reaches the job
 * before `device.lost` resolves, so wait briefly for it. Resolves to the sentence, or null.
 */
async function lostWhy() {
  if (!deviceLost) return null;
  const why = await Promise.race([deviceLost, new Promise((r) => setTimeout(() => r(null), 2000))]);
  return why && `the GPU device was lost (${why}); the engine is restarting`;
}

function simulateDeviceLoss() {
  if (!gpuDevice) throw new Error(backend === 'cpu' ? 'the engine runs on the CPU: there is no GPU device to lose' : 'the engine has no GPU device yet');
  lossRequested = true;
  gpuDevice.destroy();
  return { destroyed: true };
}

// ---- device --------------------------------------------------------------------------------

/** The browser's description of its WebGPU adapter, for display only (the engine has its own). */
async function adapterInfo() {
  try {
    const a = await navigator.gpu?.requestAdapter();
    const i = a?.info;
    if (!i) return null;
    return { vendor: i.vendor || '', architecture: i.architecture || '', device: i.device || '', description: i.description || '' };
  } catch {
    return null;
  }
}

let deviceOptions = {};      // the page's {cpu, threads} ('init' message)
// Requests can arrive before 'init' (the page sends it once the engine is compiled), so the
// device is chosen only once 'init' has said how.
let optionsGiven;
const optionsReceived = new Promise((resolve) => { optionsGiven = resolve; });

/**
 * Why WebGPU is not used, or null when it is: the page asked for the CPU, the browser has no
 * navigator.gpu, or it offers no adapter. Asked before any wasm runs, because that decides which
 * build to load.
 */
async function whyNotWebGpu() {
  if (deviceOptions.cpu) return 'the page asked for the CPU (?engine=cpu)';
  if (!self.navigator?.gpu) return 'this browser does not offer WebGPU (navigator.gpu is missing)';
  try {
    if (await navigator.gpu.requestAdapter()) return null;
    return 'WebGPU offers no adapter on this machine';
  } catch (e) {
    return `WebGPU could not be asked for an adapter (${messageOf(e)})`;
  }
}

/**
 * The device, chosen once: WebGPU when it offers an adapter (the standard build), else the CPU.
 * On the CPU of a cross-origin isolated page with two cores or more, the threaded build runs on
 * a pool of that many Web Workers (capped at MAX_THREADS, or the page's ?threads=N); otherwise,
 * or if the threads fail to start, the standard build runs on this worker alone.
 */
const MAX_THREADS = 8;
function ensureDevice() {
  if (!devicePromise) {
    devicePromise = (async () => {
      await optionsReceived;
      const notGpu = await whyNotWebGpu();
      const cores = Math.min(deviceOptions.threads ?? navigator.hardwareConcurrency ?? 1, MAX_THREADS);
      let threadsFailed = null;
      if (notGpu && self.crossOriginIsolated && cores >= 2) {
        try {
          const m = await ensureThreadedWasm(cores);
          await m.initDevice(false);
          backend = 'cpu';
          const threads = m.poolThreads();
          return { backend, adapter: null, threads, reason: `${notGpu}, so the engine runs on the CPU, on ${threads} threads` };
        } catch (e) {
          threadsFailed = messageOf(e);
        }
      }
      const m = await ensureWasm();
      const choice = await m.initDevice(!deviceOptions.cpu);
      backend = choice.backend;
      const adapter = backend === 'webgpu' ? await adapterInfo() : null;
      let reason = backend === 'webgpu' ? null : choice.reason ?? null;
      if (reason && threadsFailed) reason += `, on one thread (threads could not start: ${threadsFailed})`;
      return { backend, adapter, threads: 1, reason };
    })();
    devicePromise.catch(() => { devicePromise = null; });
  }
  return devicePromise;
}

/** The engine's wasm exports, once the device (and with it the build) is chosen. */
async function engineWasm() {
  await ensureDevice();
  return ensureWasm();
}

const backendWords = () => (backend === 'webgpu' ? 'WebGPU' : 'the CPU');

// ---- memory --------------------------------------------------------------------------------

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;
const WASM_HEAP = 4 * GiB;   // wasm32: the engine's whole memory
const GPU_BUDGET = 2 * GiB;  // the default budget for the weights on WebGPU (see the top)

const size = (b) => (b >= GiB ? `${(b / GiB).toFixed(1)} GiB` : `${(b / MiB).toFixed(1)} MiB`);

/** The budget the page asked for (MiB → bytes), or null for the default. */
function budgetOf(msg) {
  const mb = Number(msg.memoryBudgetMb);
  return Number.isFinite(mb) && mb > 0 ? mb * MiB : null;
}

/** How the weights are held, for the sentence: stored blocks only say so when they are smaller than f32. */
function heldAs(need) {
  return need.resident_bytes_stored != null && need.resident_bytes_stored < need.resident_bytes ? 'kept as the file stores them' : 'held as f32';
}

/** Why a model with this need cannot be loaded here (a sentence), or null when it fits. */
function memoryRefusal(need, budget) {
  if (!need) return null;
  const about = need.estimated ? 'an estimated' : 'about';
  const lowered = budget !== null ? ' (the budget set for this session)' : '';
  if (backend === 'webgpu') {
    const limits = gpuDevice?.limits || gpuAdapter?.limits || null;
    const maxBuffer = limits ? Math.min(Number(limits.maxBufferSize) || Infinity, Number(limits.maxStorageBufferBindingSize) || Infinity) : Infinity;
    // Stored weights go to the GPU as the file's blocks, in chunks of at most 128 MiB; a
    // safetensors model (no stored figures) is held as f32.
    const stored = need.resident_bytes_stored != null;
    const form = heldAs(need);
    const buffer = stored ? need.largest_buffer_bytes_stored : need.largest_tensor_bytes;
    if (buffer && buffer > maxBuffer) {
      return `this model’s largest weight${need.largest_tensor ? ` (${need.largest_tensor})` : ''} needs one GPU buffer of ${size(buffer)}, but this GPU allows at most ${size(maxBuffer)} in one buffer`;
    }
    const limit = budget ?? Math.max(GPU_BUDGET, Number(limits?.maxBufferSize) || 0);
    // On the GPU, Q6_K goes as Q8_0 (resident_bytes_stored_gpu; older figures lack it).
    const weights = stored ? (need.resident_bytes_stored_gpu ?? need.resident_bytes_stored) : need.resident_bytes;
    if (weights > limit) {
      return `this model needs ${about} ${size(weights)} of GPU memory for its weights (${form}), more than the ${size(limit)} memory budget for WebGPU${lowered}`;
    }
    const heap = need.file_bytes + 2 * (buffer || 0);
    if (heap > WASM_HEAP) {
      return `this model needs ${about} ${size(heap)} of the engine’s memory while it loads (the file and its largest weight), more than the ${size(WASM_HEAP)} a browser gives the engine`;
    }
    return null;
  }
  // On the CPU the weights stay in the file's own blocks (an HF model's f32 stay f32).
  const limit = budget ?? WASM_HEAP;
  const weights = need.resident_bytes_stored ?? need.resident_bytes;
  const form = heldAs(need);
  const total = need.file_bytes + weights + baseResident;
  if (total > limit) {
    const kept = baseResident ? `, and the ${size(baseResident)} of the model loaded now, kept until the new one is ready` : '';
    return `this model needs ${about} ${size(total)} of memory on the CPU (the ${size(need.file_bytes)} file and ${size(weights)} of weights ${form}${kept}), more than the ${size(limit)} ${budget !== null ? `memory budget${lowered}` : 'a browser gives the engine'}`;
  }
  return null;
}

function refuseIfTooBig(need, budget) {
  const why = memoryRefusal(need, budget);
  if (why) throw new Error(why);
}

// ---- models --------------------------------------------------------------------------------

async function load(msg, ev) {
  const m = await engineWasm();
  const budget = budgetOf(msg);
  let next, name, source, cached = false, fromCache = false, need = null, identity = null;
  if (msg.hf) {
    const f = await readHfFiles(msg.hf, ev);
    ({ name, source } = f);
    identity = { name, size: f.total, sha256: null }; // several files: no single digest
    need = safetensorsNeed(f.shards);
    refuseIfTooBig(need, budget);
    ev({ type: 'progress', stage: 'prepare', loaded: f.total, total: f.total, message: `Preparing the weights for ${backendWords()}…` });
    dropTuned(); // a cache of merged weights: freed before the new weights need the memory
    await yieldToEvents();
    next = m.WebModel.loadHf(f.shards, f.configText, f.tokenizer, f.tokenizerConfigText);
  } else {
    // A file from the disk is measured from its header before it is read whole.
    if (msg.file) {
      const file = msg.file;
      need = await ggufNeed(m, async (n) => new Uint8Array(await file.slice(0, n).arrayBuffer()), file.size);
      refuseIfTooBig(need, budget);
    }
    const f = await readGguf(msg, ev, m.schema().default_model);
    ({ name, source, cached, fromCache } = f);
    if (!msg.file) {
      need = await ggufNeed(m, async (n) => f.bytes.subarray(0, n), f.bytes.length);
      refuseIfTooBig(need, budget);
    }
    ev({ type: 'progress', stage: 'prepare', loaded: f.bytes.length, total: f.bytes.length, message: `Preparing ${name} (${(f.bytes.length / 1e6).toFixed(1)} MB) for ${backendWords()}…` });
    // The file's identity, so a study can name the model it was made with.
    identity = { name, size: f.bytes.length, sha256: await sha256Hex(f.bytes) };
    dropTuned(); // a cache of merged weights: freed before the new weights need the memory
    await yieldToEvents();
    next = m.WebModel.loadGguf(f.bytes);
    // Cache only what loaded: a broken file is not kept.
    if (!cached) cached = await storeModel(f.cacheKey, f.bytes, f.validators);
  }
  let info;
  try {
    info = next.info();
  } catch (e) {
    next.free();
    throw e;
  }
  if (!info.name) info.name = name;
  // Only replace (and free) the old model once the new one has loaded.
  dropTuned();
  if (base) { try { base.free(); } catch { /* already freed */ } }
  base = next;
  baseName = name;
  baseResident = Number(info.weight_bytes_resident) || Number(info.weight_bytes_f32) || need?.resident_bytes || 0;
  return { info, name, source, cached, fromCache, identity };
}

/** Lower-case hex SHA-256 of `bytes`. */
async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
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

// ---- generation ----------------------------------------------------------------------------

const appreciation = (msg, work) => ({ brief: msg.brief || '', audience: msg.audience || '', genre: msg.genre || '', work: work ?? msg.work ?? '' });

const stopped = (id) => () => stops.has(id);

async function generate(msg, ev) {
  const b = requireModel();
  b.startGeneration(String(msg.prompt), Boolean(msg.chat), msg.params);
  const out = await stream([{ side: 'base', model: b }], ev, stopped(msg.id));
  return out.base;
}

function start(model, msg) {
  if (msg.mode === 'generation') model.startGeneration(String(msg.prompt), true, msg.params);
  else model.startAppreciation(appreciation(msg), msg.params);
}

async function compare(msg, ev) {
  const b = requireModel();
  const t = await tunedFor(msg.adapter, ev);
  start(b, msg);
  const sides = [{ side: 'base', model: b }];
  if (t) { start(t, msg); sides.push({ side: 'tuned', model: t }); }
  const out = await stream(sides, ev, stopped(msg.id));
  // Appreciation: each model's verdict distribution after its own critique.
  if (msg.mode !== 'generation' && !stops.has(msg.id)) {
    for (const s of sides) Object.assign(out[s.side], await verdictAfter(s.model, appreciation(msg), out[s.side].text, s.side, ev));
  }
  return { base: out.base, tuned: out.tuned || null };
}

async function judge(msg, ev) {
  const b = requireModel();
  const t = await tunedFor(msg.adapter, ev);
  const judgeModel = t || b;
  const m = await engineWasm();
  const result = { judge: t ? 'tuned' : 'base' };
  for (const side of ['base', 'tuned']) {
    const work = msg.works?.[side];
    if (!work) { result[side] = null; continue; }
    const input = appreciation(msg, work);
    judgeModel.startAppreciation(input, msg.params);
    const out = await stream([{ side, model: judgeModel }], ev, stopped(msg.id));
    const { text, reason } = out[side];
    const score = m.parseVerdictScore(text);
    result[side] = { text, reason, score: score ?? null, verdict: null, verdict_error: null };
    if (stops.has(msg.id)) break;
    Object.assign(result[side], await verdictAfter(judgeModel, input, text, side, ev));
  }
  return result;
}

// Agreement with the expert: each record appraised by base (and tuned), then the engine's report.
async function agreement(msg, ev) {
  const m = await engineWasm();
  const b = requireModel();
  const records = Array.isArray(msg.records) ? msg.records : [];
  if (!records.length) throw new Error('there are no records to measure agreement on');
  const t = await tunedFor(msg.adapter, ev);
  const options = msg.options && typeof msg.options === 'object' ? msg.options : {};
  return measureAgreement(m, { base: b, tuned: t, records, options, stopped: stopped(msg.id), ev });
}

// ---- scoring -------------------------------------------------------------------------------

async function shift(msg, ev) {
  const b = requireModel();
  const t = await tunedFor(msg.adapter, ev);
  const ctx = msg.context && msg.context.length ? msg.context : undefined;
  ev({ type: 'progress', stage: 'score', loaded: 0, total: t ? 2 : 1, message: 'Scoring with the base model…' });
  const sb = await b.score(String(msg.text), ctx);
  let st = null;
  if (t) {
    ev({ type: 'progress', stage: 'score', loaded: 1, total: 2, message: 'Scoring with the tuned model…' });
    st = await t.score(String(msg.text), ctx);
  }
  const texts = b.tokenTexts(Uint32Array.from(sb.text_ids));
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
    const result = t ? await b.calibrateItemAgainst(items[i], t) : await b.calibrateItem(items[i]);
    result.token_texts = b.tokenTexts(Uint32Array.from(result.token_ids || []));
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

// ---- training ------------------------------------------------------------------------------

async function train(msg, ev) {
  const m = await engineWasm();
  const b = requireModel();
  const bytes = new TextEncoder().encode(msg.records);
  const trainer = msg.checkpoint
    ? m.WebTrainer.resume(b, bytes, new Uint8Array(msg.checkpoint))
    : new m.WebTrainer(b, bytes, msg.config, Boolean(msg.keepGoodLines));
  try {
    ev({ type: 'train-info', info: trainer.info() });
    trainControl = trainer.control();
    const every = Number.isInteger(msg.checkpointEvery) && msg.checkpointEvery > 0 ? msg.checkpointEvery : m.schema().checkpoint_every;
    const outcome = await trainer.run((event, checkpoint) => {
      if (checkpoint) ev({ type: 'train-event', event, checkpoint }, [checkpoint.buffer]);
      else ev({ type: 'train-event', event });
    }, every);
    const info = trainer.info();
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

// ---- dispatch ------------------------------------------------------------------------------

const requests = allowList({
  'init-device': () => ensureDevice(),
  load,
  'forget-models': () => forgetModels(),
  generate,
  compare,
  judge,
  shift,
  calibrate,
  agreement,
  'check-adapter': checkAdapter,
  train,
  'simulate-device-loss': simulateDeviceLoss,
  'gpu-stats': readGpuStats,
  'simulate-crash': simulateCrash,
  'simulate-hang': () => new Promise(() => {}),
});

// Answered even while a job runs.
const concurrent = new Set(['init-device', 'simulate-device-loss', 'simulate-crash', 'gpu-stats']);

// The only calls a 'train-control' message can make on the running trainer's control.
const trainActions = allowList({
  pause: (c) => c.pause(),
  resume: (c) => c.resume(),
  cancel: (c) => c.cancel(),
});

const controls = allowList({
  stop(msg) { stops.add(msg.target); },
  'train-control'(msg) {
    const act = lookup(trainActions, msg.action);
    if (act && trainControl) act(trainControl);
  },
});

serve(async (msg) => {
  const control = lookup(controls, msg.type);
  if (control) { control(msg); return; }
  const job = lookup(requests, msg.type);
  if (!job) { refuse(msg); return; }
  const exclusive = !concurrent.has(msg.type);
  if (exclusive && busy !== null) {
    post({ type: 'error', id: msg.id, code: 'busy', message: 'the engine is busy with another task; wait for it to finish or stop it' });
    return;
  }
  if (exclusive) busy = msg.id;
  try {
    await runJob(job, msg, { lostWhy });
  } finally {
    if (busy === msg.id) busy = null;
    stops.delete(msg.id);
  }
}, {
  onInit: (msg) => {
    const d = msg.device && typeof msg.device === 'object' ? msg.device : {};
    deviceOptions = { cpu: d.cpu === true, threads: Number.isInteger(d.threads) && d.threads > 0 ? d.threads : null };
    optionsGiven();
    ensureDevice().catch(() => {});
  },
});
