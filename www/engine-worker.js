// The engine worker: the model(s) on WebGPU (or the CPU), so that loading, generating, training
// and calibrating never freeze the page. The page starts it as a module worker named 'engine';
// the engine's pure functions run in the data worker (data-worker.js). The protocol common to
// both workers (init, ids, result and error replies) is described in lib/worker-core.js; this
// worker's requests, and their messages, in lib/engine-requests.js.
//
// One job at a time: a second request while one runs gets {type: 'error', code: 'busy'} (except
// the concurrent ones). Control messages (stop, train-control) are handled at once and get no
// reply. Its parts: the GPU device (lib/gpu-device.js), the memory check before a load
// (lib/engine-memory.js), the model files (lib/model-files.js), the token loops
// (lib/model-loops.js); here, the device choice, the models and the handlers.
import { allowList, ensureThreadedWasm, ensureWasm, lookup, messageOf, post, refuse, runJob, serve, simulateCrash, yieldToEvents } from './lib/worker-core.js';
import { blobReader, forgetModels, ggufNeed, hfNeed, openGguf, readHfFiles, streamIntoEngine } from './lib/model-files.js';
import { measureAgreement, stream, verdictAfter } from './lib/model-loops.js';
import { TEST_HOOKS } from './lib/test-hooks.js';
import { CONCURRENT, ENGINE_CONTROLS, requestNames } from './lib/engine-requests.js';
import { gpu, lostWhy, readGpuStats, simulateDeviceLoss } from './lib/gpu-device.js';
import { budgetOf, refuseIfTooBig } from './lib/engine-memory.js';

let backend = null;          // 'webgpu' | 'cpu'
let devicePromise = null;
let base = null;             // the loaded WebModel
let baseName = null;
let tuned = null;            // {key, model}: the last adapter merged into the base
const stops = new Set();     // ids asked to stop
// The job under way: its request id, and the running training's control (pause, resume,
// cancel), in one place rather than loose variables.
const running = { id: null, trainControl: null };
let baseResident = 0;        // bytes the loaded model's weights hold (for the CPU's memory check)

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

/** What the memory check needs to know of this engine (lib/engine-memory.js). */
const memoryOf = () => ({ backend, limits: gpu.device?.limits || gpu.adapter?.limits || null, baseResident });

// ---- models --------------------------------------------------------------------------------

async function load(msg, ev) {
  const m = await engineWasm();
  const budget = budgetOf(msg);
  let next, name, source, cached = false, fromCache = false, need = null, identity = null;
  if (msg.hf) {
    // Sizes and headers first: nothing is read whole before the model is known to fit.
    need = await hfNeed(m, msg.hf);
    refuseIfTooBig(need, budget, memoryOf());
    const f = await readHfFiles(msg.hf, ev);
    ({ name, source } = f);
    identity = { name, size: f.total, sha256: null }; // several files: no single digest
    const shardBytes = f.shards.reduce((s, x) => s + x.size, 0);
    const message = `Preparing the weights for ${backendWords()}…`;
    ev({ type: 'progress', stage: 'prepare', loaded: 0, total: shardBytes, message });
    dropTuned(); // a cache of merged weights: freed before the new weights need the memory
    await yieldToEvents();
    // The shards stay on the disk: the engine reads each tensor as it builds the weights.
    let read = 0;
    const readers = f.shards.map((shard) => {
      let before = 0;
      return blobReader(shard, (n) => { read += n - before; before = n; ev({ type: 'progress', stage: 'prepare', loaded: read, total: shardBytes, message }); });
    });
    next = m.WebModel.loadHfRanged(f.shards.map((x) => x.size), readers, f.configText, f.tokenizer, f.tokenizerConfigText);
  } else {
    // A file from the disk is measured from its header before it is opened; a cached one before
    // it is read, a download not kept as its first pieces arrive (streamIntoEngine).
    const check = (n) => { need = n; refuseIfTooBig(n, budget, memoryOf()); };
    if (msg.file) {
      const file = msg.file;
      check(await ggufNeed(m, async (n) => new Uint8Array(await file.slice(0, n).arrayBuffer()), file.size));
    }
    const f = await openGguf(msg, ev, m.schema().default_model);
    ({ name, source, cached, fromCache } = f);
    const preparing = (size) => `Preparing ${name} (${(size / 1e6).toFixed(1)} MB) for ${backendWords()}…`;
    try {
      dropTuned(); // a cache of merged weights: freed before the file needs the memory
      const blob = await f.blob();
      if (blob) {
        // The file stays where it is; the engine reads its slices: the whole once for its
        // SHA-256 (the file's identity, so a study can name the model it was made with), then
        // the header and one tensor at a time as the weights are built.
        const size = blob.size;
        if (!msg.file) check(await ggufNeed(m, async (n) => new Uint8Array(await blob.slice(0, n).arrayBuffer()), size));
        const reading = (stage, message) => blobReader(blob, (loaded) => ev({ type: 'progress', stage, loaded, total: size, message }));
        ev({ type: 'progress', stage: f.stage, loaded: 0, total: size, message: f.message });
        identity = { name, size, sha256: m.modelSha256(size, reading(f.stage, f.message)) };
        ev({ type: 'progress', stage: 'prepare', loaded: 0, total: size, message: preparing(size) });
        await yieldToEvents();
        next = m.WebModel.loadRanged(size, reading('prepare', preparing(size)));
      } else {
        const upload = await streamIntoEngine(m, f, (loaded, total) => ev({ type: 'progress', stage: f.stage, loaded, total, message: f.message }), check);
        const size = upload.length;
        ev({ type: 'progress', stage: 'prepare', loaded: 0, total: 0, message: preparing(size) });
        identity = { name, size, sha256: upload.sha256() };
        await yieldToEvents();
        next = m.WebModel.loadUpload(upload);
      }
    } catch (e) {
      await f.discard();
      throw e;
    }
    // Cache only what loaded: a broken file is not kept; nor any where the page asks (`keep:
    // false`: its storage is small, and kept for the adapters).
    if (!cached) cached = await f.keep();
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
    running.trainControl = trainer.control();
    const every = Number.isInteger(msg.checkpointEvery) && msg.checkpointEvery > 0 ? msg.checkpointEvery : m.schema().checkpoint_every;
    const outcome = await trainer.run((event, checkpoint) => {
      if (checkpoint) ev({ type: 'train-event', event, checkpoint }, [checkpoint.buffer]);
      else ev({ type: 'train-event', event });
    }, every);
    const info = trainer.info();
    let adapter = null;
    if (outcome === 'finished') {
      const a = await trainer.adapter(baseName);
      // Bytes, never an array of numbers (10× the memory, and no size to show).
      adapter = { config_json: a.config_json, safetensors: a.safetensors instanceof Uint8Array ? a.safetensors : Uint8Array.from(a.safetensors) };
    }
    return { outcome, info, adapter };
  } finally {
    try { running.trainControl?.free(); } catch { /* freed */ }
    running.trainControl = null;
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
  // With the engine's memory (its peak so far: it only grows).
  'gpu-stats': async (msg) => ({ ...readGpuStats(msg), engine_bytes: (await ensureWasm()).engineMemoryBytes() }),
  // Only in a build with the test hooks (lib/test-hooks.js): a site for users answers them as
  // unknown requests.
  ...(TEST_HOOKS ? {
    'simulate-device-loss': () => simulateDeviceLoss(backend),
    'simulate-crash': simulateCrash,
    'simulate-hang': () => new Promise(() => {}),
  } : {}),
});

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
    if (act && running.trainControl) act(running.trainControl);
  },
});

// The handlers are the lists of lib/engine-requests.js, no more and no fewer.
for (const [table, listed] of [[requests, requestNames(TEST_HOOKS)], [controls, ENGINE_CONTROLS]]) {
  const want = [...listed].sort().join(' ');
  const have = Object.keys(table).sort().join(' ');
  if (want !== have) throw new Error(`engine-worker.js handles [${have}], but lib/engine-requests.js lists [${want}]`);
}

serve(async (msg) => {
  const control = lookup(controls, msg.type);
  if (control) { control(msg); return; }
  const job = lookup(requests, msg.type);
  if (!job) { refuse(msg); return; }
  const exclusive = !CONCURRENT.has(msg.type);
  if (exclusive && running.id !== null) {
    post({ type: 'error', id: msg.id, code: 'busy', message: 'the engine is busy with another task; wait for it to finish or stop it' });
    return;
  }
  if (exclusive) running.id = msg.id;
  try {
    await runJob(job, msg, { lostWhy });
  } finally {
    if (running.id === msg.id) running.id = null;
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
