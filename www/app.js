// cqa-studio page: UI state and rendering only. The engine runs in two module workers:
// engine-worker.js ('engine': the model) and data-worker.js ('data': the record format,
// validation, statistics and exports). Each documents its requests at its top; the protocol they
// share is described in lib/worker-core.js. Each panel lives in panels/ (the Annotate panel in
// panels/annotate/; the Calibrate tab's agreement section in panels/agreement.js).
import { $, announce, autosave, getPref, setPref } from './lib/ui.js';
import { WorkerClient } from './lib/engine.js';
import { CHOICE_PREF, MAX_TIMED_BYTES, decodeRate, describeRates, engineChoice, keepVerdict, keptVerdict, startOnCpu, startupModelPrefix, timedModelKey } from './lib/engine-choice.js';
import { TEST_HOOKS } from './lib/test-hooks.js';
import * as modelPanel from './panels/model.js';
import * as annotatePanel from './panels/annotate/index.js';
import * as trainPanel from './panels/train.js';
import * as comparePanel from './panels/compare.js';
import * as calibratePanel from './panels/calibrate.js';
import * as agreementPanel from './panels/agreement.js';
import * as ratersPanel from './panels/raters.js';
import * as studyPanel from './panels/study.js';

// ---- tabs ------------------------------------------------------------------------------------

const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
const listeners = new Map();

function selectTab(name, { focus = false, remember = true } = {}) {
  const tab = tabs.find((t) => t.dataset.panel === name) || tabs[0];
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !on;
  }
  if (focus) tab.focus();
  if (remember) {
    setPref('tab', tab.dataset.panel);
    if (location.hash !== `#${tab.dataset.panel}`) history.replaceState(null, '', `${location.pathname}${location.search}#${tab.dataset.panel}`);
  }
  emit('tab', tab.dataset.panel);
}

for (const t of tabs) {
  t.addEventListener('click', () => selectTab(t.dataset.panel));
  t.addEventListener('keydown', (e) => {
    const i = tabs.indexOf(t);
    let j = null;
    if (e.key === 'ArrowRight') j = (i + 1) % tabs.length;
    else if (e.key === 'ArrowLeft') j = (i - 1 + tabs.length) % tabs.length;
    else if (e.key === 'Home') j = 0;
    else if (e.key === 'End') j = tabs.length - 1;
    if (j !== null) { e.preventDefault(); selectTab(tabs[j].dataset.panel, { focus: true }); }
  });
}
addEventListener('hashchange', () => selectTab(location.hash.slice(1), { remember: false }));

// ---- a tiny event bus between panels ---------------------------------------------------------

function on(name, fn) {
  if (!listeners.has(name)) listeners.set(name, new Set());
  listeners.get(name).add(fn);
  return () => listeners.get(name).delete(fn);
}
function emit(name, value) {
  for (const fn of listeners.get(name) || []) {
    try { fn(value); } catch (e) { console.error(e); }
  }
}

// ---- workers ---------------------------------------------------------------------------------
//
// Each worker sits behind a WorkerClient (lib/engine.js) that outlives it. When the engine worker
// loses its GPU device, crashes, traps, or hangs and the user restarts it, its pending requests
// reject with EngineError code 'lost', a fresh worker starts from the same compiled module, its
// device is initialised and the last model that loaded is loaded again; then the app emits
// 'engine-restarted' with {reason: 'device-lost' | 'crashed' | 'hung', replacedGeneration: the
// engine client's `generation` the restart replaced} (panels resume from there,
// e.g. training from its checkpoint). At most 3 restarts within 60 s; then the engine is marked
// unavailable. The data worker is restarted the same way (it holds no model).
//
// URL parameters (read once; window.cqaStudio, in a test build, can change them at run time):
//   ?watchdog=SECONDS        how long a long request (generate, compare, judge, train, calibrate,
//                            agreement, load, …) may stay silent before the page says so and
//                            offers a restart (default 180 s, enough for SwiftShader)
//   ?memory-budget-mb=MIB    the memory budget for a model's weights instead of the engine's
//                            default (engine-worker.js explains the limits)
//   ?engine=cpu|webgpu       run the engine on the CPU even where WebGPU is offered, or on WebGPU
//                            wherever it is offered, without timing which is faster (the Model
//                            panel's choice otherwise: lib/engine-choice.js)
//   ?threads=N               at most N threads for the CPU path (1: no pool; default: every core,
//                            when the page is cross-origin isolated)

const params = new URLSearchParams(location.search);
const positive = (v) => { const n = Number(v); return v !== null && Number.isFinite(n) && n > 0 ? n : null; };
const limits = {
  watchdogSeconds: positive(params.get('watchdog')) ?? 180,
  memoryBudgetMb: positive(params.get('memory-budget-mb')),
};
// How the engine worker chooses its device (sent with its 'init'): on the CPU when the user (or
// the address) chose it, or when the CPU was timed faster for the model the page loads first.
const urlEngine = params.get('engine');
const deviceOptions = {
  cpu: startOnCpu(engineChoice(urlEngine), startupModelPrefix(getPref('model', null), params.get('model'))),
  threads: Number.isInteger(positive(params.get('threads'))) ? positive(params.get('threads')) : null,
};

const state = {
  backend: null,      // 'webgpu' | 'cpu'
  engineTiming: null, // {webgpu, cpu, cpuSkipped, faster, at, error} of the loaded model, or null
  info: null,         // info() of the loaded model
  modelName: null,
  modelIdentity: null, // {name, size, sha256} of the loaded file
  job: null,          // {kind, label} of the engine's current job, or null
  dead: null,         // why the engine could not start
  engineDownload: null, // {loaded, total} while the engine's wasm downloads
};

// The page downloads the engine once and compiles it while it streams in (off the main thread),
// showing the download in the badge and the Model panel, and hands the module to each worker it
// starts (restarted ones too). If that fails the workers compile it themselves and report the
// error in words.
const ENGINE_URL = new URL('./pkg/cqa_studio_bg.wasm', import.meta.url);

function engineDownloaded(loaded, total, done = false) {
  state.engineDownload = done ? null : { loaded, total };
  emit('engine-download', state.engineDownload);
  updateBadge();
}

async function compileEngine() {
  const res = await fetch(ENGINE_URL);
  if (!res.ok || !res.body) throw new Error(`the engine could not be downloaded (${res.status})`);
  // A compressed transfer's Content-Length counts compressed bytes, while the stream gives
  // decompressed ones: then only the bytes so far are shown.
  const total = res.headers.get('Content-Encoding') ? 0 : Number(res.headers.get('Content-Length')) || 0;
  let loaded = 0;
  let shown = 0;
  const counted = res.body.pipeThrough(new TransformStream({
    transform(chunk, out) {
      loaded += chunk.byteLength;
      if (loaded - shown > 256 * 1024) { shown = loaded; engineDownloaded(loaded, total); }
      out.enqueue(chunk);
    },
  }));
  engineDownloaded(0, total);
  try {
    const type = (res.headers.get('Content-Type') || '').split(';')[0].trim().toLowerCase();
    const module = type === 'application/wasm' && typeof WebAssembly.compileStreaming === 'function'
      ? await WebAssembly.compileStreaming(new Response(counted, { headers: { 'Content-Type': type } }))
      // A host that labels .wasm otherwise (streaming compilation insists on application/wasm):
      // the same bytes, compiled once they are all here.
      : await WebAssembly.compile(await new Response(counted).arrayBuffer());
    performance.mark('cqa:engine-compiled');
    return module;
  } finally {
    engineDownloaded(loaded, total, true);
  }
}

// After the first frame: on a small machine the compile's threads would otherwise hold the first
// paint back until the engine is ready (measured in BENCHMARKS.md). A hidden tab paints no frame,
// so the wait is bounded.
const firstFrame = new Promise((resolve) => {
  requestAnimationFrame(() => setTimeout(resolve, 0));
  setTimeout(resolve, 500);
});
const wasmModule = firstFrame.then(compileEngine).catch((e) => {
  console.warn(`cqa-studio: the page could not compile the engine (${e.message}); the workers will try`);
  return null;
});
const sendModule = (worker, extra = {}) => wasmModule.then((module) => worker.postMessage({ type: 'init', module, ...extra }));

const engineUrl = new URL('./engine-worker.js', import.meta.url);
const dataUrl = new URL('./data-worker.js', import.meta.url);

function markDead(message) {
  state.dead = message;
  emit('engine', state);
  updateBadge();
}

const engine = new WorkerClient(() => new Worker(engineUrl, { type: 'module', name: 'engine' }), {
  init: (worker) => sendModule(worker, { device: deviceOptions }),
  watchdogMs: limits.watchdogSeconds * 1000,
  onUnsolicited(msg) {
    if (msg.type === 'dead') markDead(msg.message);
    else if (msg.type === 'device-lost') engineTrouble('device-lost', msg.message);
    else if (msg.type === 'crashed') engineTrouble('crashed', msg.message);
  },
  onStall: () => showStall(),
  onActive: () => showStall(),
});

const data = new WorkerClient(() => new Worker(dataUrl, { type: 'module', name: 'data' }), {
  init: sendModule,
  onUnsolicited(msg) {
    if (msg.type === 'dead') markDead(msg.message);
    else if (msg.type === 'crashed') {
      if (data.restart(`the data worker stopped (${msg.message}) and was restarted`, `the data worker stopped (${msg.message}) too often to restart it again; reload the page`)) {
        notify('The data worker stopped unexpectedly and was restarted; the last action on your records may need repeating.');
      }
    }
  },
});

// The record format and every default (dimensions, schema version, training settings, the
// default model), from the engine itself: a Promise, asked for once (again if the data worker
// is restarted meanwhile). Panels read it with `app.schema.then(use, onError)`; it fails only
// when the data worker cannot run the engine.
const askSchema = (tries = 3) => data.call('schema').catch((e) => (e.code === 'lost' && tries > 1 ? askSchema(tries - 1) : Promise.reject(e)));
const schema = askSchema();
schema.catch(() => { /* each reader handles the failure where it shows it */ });

// The last model that loaded, to load again after a restart: {payload, fallback, label}.
let lastLoad = null;

function rememberLoad(payload, r) {
  const label = r.info?.name || r.name;
  if (r.source === 'default') lastLoad = { payload: { source: 'default' }, label };
  else if (r.source === 'url' || r.source === 'local') lastLoad = { payload: { source: r.source, name: r.name }, label };
  else if (r.source === 'file') {
    // Kept in Cache Storage (model-files.js) under its name; the File itself stays readable while
    // the page is open, for when the cache could not keep it.
    lastLoad = r.cached
      ? { payload: { source: 'local', name: r.name }, fallback: { file: payload.file }, label }
      : { payload: { file: payload.file }, label };
  } else if (payload.hf) lastLoad = { payload: { hf: payload.hf }, label };
  else lastLoad = null;
}

const withBudget = (payload) => (limits.memoryBudgetMb ? { ...payload, memoryBudgetMb: limits.memoryBudgetMb } : payload);

/** Runs an engine job, keeping every panel's controls in step with the engine's state. */
async function runEngine(kind, label, type, payload, opts) {
  if (state.dead) throw new Error(state.dead);
  if (state.job) throw new Error(`the engine is busy (${state.job.label}); wait for it or stop it`);
  const job = { kind, label };
  state.job = job;
  emit('engine', state);
  updateBadge();
  const req = engine.request(type, type === 'load' ? withBudget(payload) : payload, opts);
  job.id = req.id;
  let loaded = null;
  try {
    const result = await req.promise;
    if (type === 'load') { rememberLoad(payload, result); loaded = result; }
    return result;
  } finally {
    // A restart may have taken the engine over meanwhile: leave its job alone.
    if (state.job === job) {
      state.job = null;
      emit('engine', state);
      updateBadge();
    }
    if (loaded) setTimeout(() => afterLoad(loaded), 0);
  }
}

// ---- which engine: WebGPU or the CPU, whichever decodes faster here (lib/engine-choice.js) -----

let lastLoaded = null; // the last load's result: what a timing keys its verdict by

/** After a model loads: the kept verdict for it, or a timing of both engines (choice 'auto'). */
function afterLoad(r) {
  lastLoaded = r;
  state.engineTiming = null;
  if (engineChoice(urlEngine) === 'auto') {
    const kept = keptVerdict(timedModelKey(r));
    if (kept && kept.faster === state.backend) state.engineTiming = kept;
    else if (kept?.faster === 'cpu' && state.backend === 'webgpu') {
      state.engineTiming = kept;
      emit('engine-timing', kept);
      switchEngine('cpu', 'faster', describeRates(kept));
      return;
    } else if (state.backend === 'webgpu') { timeEngines(); return; }
  }
  emit('engine-timing', state.engineTiming);
}

/** Times a short decode on WebGPU and on a second engine worker on the CPU; moves to the faster. */
async function timeEngines() {
  const r = lastLoaded;
  if (!r || !lastLoad || state.backend !== 'webgpu' || state.job || state.dead) return;
  const job = { kind: 'timing', label: 'timing WebGPU and the CPU' };
  state.job = job;
  emit('engine', state);
  updateBadge();
  const rates = { webgpu: null, cpu: null, cpuSkipped: null };
  let error = null;
  try {
    rates.webgpu = await decodeRate(engine);
    const bytes = r.info?.weight_bytes_resident ?? r.info?.weight_bytes_f32 ?? 0;
    if (bytes > MAX_TIMED_BYTES) rates.cpuSkipped = 'the model is too large to hold twice';
    else rates.cpu = await timeOnCpu();
  } catch (e) {
    error = e.message;
  } finally {
    if (state.job === job) state.job = null;
  }
  state.engineTiming = error ? { ...rates, faster: null, error } : keepVerdict(timedModelKey(r), rates);
  emit('engine', state);
  updateBadge();
  emit('engine-timing', state.engineTiming);
  if (state.engineTiming.faster === 'cpu') await switchEngine('cpu', 'faster', describeRates(rates));
}

async function timeOnCpu() {
  const probe = new WorkerClient(() => new Worker(engineUrl, { type: 'module', name: 'engine-timing' }), {
    init: (worker) => sendModule(worker, { device: { ...deviceOptions, cpu: true } }),
    watchdogMs: limits.watchdogSeconds * 1000,
  });
  try {
    await probe.call('init-device');
    await probe.call('load', withBudget({ ...lastLoad.payload, keep: false }));
    return await decodeRate(probe);
  } finally {
    probe.close('its timing is done');
  }
}

/** Restarts the engine on `backend` for `reason` ('faster' | 'chosen'), loading the model again. */
async function switchEngine(backend, reason, detail = '') {
  if (state.dead || restarting) return;
  deviceOptions.cpu = backend === 'cpu';
  await restartEngine(reason, detail);
}

/** The user's choice in the Model panel: 'auto', 'webgpu' or 'cpu'. */
async function chooseEngine(choice) {
  setPref(CHOICE_PREF, choice);
  if (choice === 'auto') {
    if (state.backend === 'cpu') await switchEngine('webgpu', 'chosen');
    timeEngines();
    return;
  }
  state.engineTiming = null;
  emit('engine-timing', null);
  if (choice !== state.backend) await switchEngine(choice, 'chosen');
}

// ---- restarts ----------------------------------------------------------------------------------

const REASONS = {
  faster: 'the CPU decodes this model faster than WebGPU here',
  chosen: 'the engine moves to the device you chose',
  'device-lost': 'the GPU device was lost',
  crashed: 'the engine stopped unexpectedly',
  hung: 'the engine stopped answering',
};
let restarting = null;   // the restart under way: {reason, message}
let lastReload = null;   // how the model came back after the last restart: {source, name, fromCache}

/** A worker event that means the engine must be restarted. */
function engineTrouble(reason, message) {
  if (state.dead) return;
  if (restarting) {
    // The fresh worker failed too: the restart's own request rejects and it tries again.
    engine.lose(message);
    return;
  }
  restartEngine(reason, message);
}

async function restartEngine(reason, message) {
  restarting = { reason, message };
  const replacedGeneration = engine.generation; // the worker the jobs that just failed ran on
  const what = REASONS[reason] || reason;
  const job = { kind: 'load', label: 'restarting the engine' };
  state.job = job;
  emit('engine', state);
  updateBadge();
  notify(`${sentenceCase(what)}; restarting the engine${lastLoad ? ` and loading ${lastLoad.label} again` : ''}…`);
  let problem = null;
  const detail = !message ? what : message.startsWith(what) ? message : `${what} (${message})`;
  let why = `${detail}; the engine is being restarted`;
  let attempts = 0;
  for (;;) {
    // A move to the other device is no failure; a fresh worker that failed after it is one.
    const counted = !(reason === 'faster' || reason === 'chosen') || attempts++ > 0;
    if (!engine.restart(why, `${what}, and it has been restarted too often (${engine.restartLimit} times within a minute); reload the page to try again`, { counted })) {
      restarting = null;
      state.job = null;
      state.info = null;
      notify(`${sentenceCase(what)} again, too often to restart the engine; reload the page to try again.`, { alert: true });
      markDead(engine.dead);
      return;
    }
    try {
      const d = await engine.call('init-device');
      state.backend = d.backend;
      if (lastLoad) {
        let r;
        try {
          r = await engine.call('load', withBudget(lastLoad.payload));
        } catch (e) {
          if (e.code === 'lost' || !lastLoad.fallback) throw e;
          r = await engine.call('load', withBudget(lastLoad.fallback));
        }
        state.info = r.info;
        state.modelName = r.info.name || r.name;
        state.modelIdentity = r.identity || null;
        lastReload = { source: r.source, name: r.name, fromCache: r.fromCache };
      }
      break;
    } catch (e) {
      if (e.code === 'lost' && !engine.dead) { why = e.message; continue; } // the fresh worker stopped as well
      problem = e;
      break;
    }
  }
  restarting = null;
  if (state.job === job) state.job = null;
  const where = state.backend === 'webgpu' ? 'WebGPU' : 'the CPU';
  if (problem) {
    state.info = null;
    notify(lastLoad
      ? `${sentenceCase(what)} and the engine restarted on ${where}, but ${lastLoad.label} could not be loaded again (${problem.message}); load a model in the Model panel.`
      : `${sentenceCase(what)}, and the engine could not start again (${problem.message}); reload the page to try again.`, { alert: true });
  } else {
    notify(`${sentenceCase(what)}, so the engine restarted on ${where}${lastLoad ? ` and loaded ${lastLoad.label} again` : ''}.`);
  }
  emit('engine', state);
  updateBadge();
  if (!problem) emit('engine-restarted', { reason, replacedGeneration });
}

const sentenceCase = (t) => t.charAt(0).toUpperCase() + t.slice(1);

// ---- the status area under the header ------------------------------------------------------------

/** One sentence in the header's status area (polite; `alert` keeps it until dismissed). */
function notify(text, { alert = false, stall = false } = {}) {
  const box = $('engine-notice');
  if (!box) return;
  box.dataset.kind = alert ? 'alert' : stall ? 'stall' : text ? 'info' : '';
  $('engine-notice-text').textContent = text;
  $('engine-restart').hidden = !stall;
  $('engine-wait').hidden = !stall;
  $('engine-dismiss').hidden = !text || stall;
}

function showStall() {
  const stalled = engine.stalled();
  const box = $('engine-notice');
  if (!stalled.length) {
    if (box?.dataset.kind === 'stall') notify('');
    return;
  }
  const label = state.job && stalled.some((r) => r.id === state.job.id) ? state.job.label : stalled[0].type;
  notify(`The engine has not answered for ${limits.watchdogSeconds} s (${label}); it may be stuck: restart it, or keep waiting.`, { stall: true });
}

function initNotices() {
  $('engine-restart').addEventListener('click', () => {
    notify('');
    if (!restarting) restartEngine('hung', 'it was restarted after not answering');
    else engine.lose('the engine was restarted again after not answering');
  });
  $('engine-wait').addEventListener('click', () => { engine.keepWaiting(); notify(''); });
  $('engine-dismiss').addEventListener('click', () => notify(''));
  $('update-reload').addEventListener('click', () => {
    if (waitingWorker) { reloadOnChange = true; waitingWorker.postMessage({ type: 'skip-waiting' }); } else location.reload();
  });
}

const backendName = (b) => (b === 'webgpu' ? 'WebGPU' : b === 'cpu' ? 'CPU' : 'Engine…');

function updateBadge() {
  const badge = $('badge');
  $('badge-backend').textContent = backendName(state.backend);
  let s = 'loading';
  let text;
  if (state.dead) { s = 'error'; text = 'engine unavailable'; }
  else if (state.engineDownload) {
    const { loaded, total } = state.engineDownload;
    text = total > 0 ? `downloading the engine (${Math.floor((100 * loaded) / total)} %)` : `downloading the engine (${(loaded / 1e6).toFixed(1)} MB)`;
  } else if (state.job) { s = state.job.kind === 'load' ? 'loading' : 'busy'; text = `${state.job.label}…`; }
  else if (state.info) { s = 'ready'; text = `${state.modelName || 'model'} ready`; }
  else { s = 'error'; text = 'no model loaded'; }
  badge.dataset.state = s;
  $('badge-model').textContent = text;
  badge.title = `${backendName(state.backend)} · ${text}`;
}

const app = {
  state, engine, data, schema, limits, on, emit, runEngine, selectTab, announce, updateBadge,
  /** True when a model is loaded and the engine is idle. */
  ready: () => !state.dead && !state.job && state.info !== null,
  /** Why an engine action is unavailable now, or null. */
  blocker() {
    if (state.dead) return 'The engine is unavailable.';
    if (!state.info) return 'Load a model first (Model panel).';
    if (state.job) return `The engine is busy: ${state.job.label}.`;
    return null;
  },
  /** Which engine worker runs now (lib/engine.js `generation`): a job's failure names it. */
  engineGeneration: () => engine.generation,
  /** Restarts the engine worker as after a hang (pending requests reject with code 'lost'). */
  restartEngine: () => (restarting ? Promise.resolve() : restartEngine('hung', 'it was restarted on request')),
  /** The Model panel's engine choice ('auto' | 'webgpu' | 'cpu'), and whether the address fixes it. */
  engineChoice: () => ({ choice: engineChoice(urlEngine), fixed: urlEngine === 'cpu' || urlEngine === 'webgpu' }),
  chooseEngine,
};

// For tests, in a build with the test hooks only (lib/test-hooks.js): the app, requests to either
// worker that resolve to {ok, result} or {ok: false, code, message}, and the run-time limits.
const describePayload = (p) => (!p ? null : p.file ? { file: p.file.name } : p.hf ? { hf: p.hf.shards.map((f) => f.name) } : { ...p });
const settle = (promise) => promise.then((result) => ({ ok: true, result }), (e) => ({ ok: false, code: e.code || 'failed', message: e.message }));
if (TEST_HOOKS) window.cqaStudio = {
  app,
  request: (type, payload = {}) => settle(engine.call(type, type === 'load' ? withBudget(payload) : payload)),
  dataRequest: (type, payload = {}) => settle(data.call(type, payload)),
  /** The memory budget in MiB for the next loads (null: the engine's default). */
  setMemoryBudget(mb) { limits.memoryBudgetMb = positive(mb); },
  /** What a restart would load again, and how the last restart loaded it. */
  reloads: () => ({
    next: lastLoad && { label: lastLoad.label, payload: describePayload(lastLoad.payload), fallback: describePayload(lastLoad.fallback) },
    last: lastReload,
  }),
  /** The watchdog's patience in seconds. */
  setWatchdog(seconds) {
    limits.watchdogSeconds = positive(seconds) ?? 180;
    engine.watchdogMs = limits.watchdogSeconds * 1000;
  },
};

// ---- offline: a service worker caches the app shell, the engine and the model ---------------
//
// sw.js caches one version of the shell at a time (its cache is named by the shell's content
// hash); a new version installs in the background and waits, and the page offers a reload to use
// it, so a page never runs files of two versions.

let waitingWorker = null;
let reloadOnChange = false;

function offerUpdate(worker) {
  waitingWorker = worker;
  $('update-text').textContent = 'A new version of cqa-studio is ready.';
  $('update-reload').hidden = false;
}

async function registerServiceWorker() {
  const out = $('offline-status');
  if (!('serviceWorker' in navigator)) { out.textContent = 'This browser cannot keep the app for offline use.'; return; }
  try {
    const hadController = Boolean(navigator.serviceWorker.controller);
    navigator.serviceWorker.addEventListener('controllerchange', () => {
      if (reloadOnChange) { location.reload(); return; }
      // Another tab switched to a new version: this one still runs the old files.
      if (hadController) {
        waitingWorker = null;
        $('update-text').textContent = 'cqa-studio was updated in another tab; reload to use the new version.';
        $('update-reload').hidden = false;
      }
    });
    // Its scope is the app's own folder (the default for a worker script beside the page).
    const reg = await navigator.serviceWorker.register(new URL('./sw.js', import.meta.url));
    if (reg.waiting && navigator.serviceWorker.controller) offerUpdate(reg.waiting);
    reg.addEventListener('updatefound', () => {
      const w = reg.installing;
      w?.addEventListener('statechange', () => {
        if (w.state === 'installed' && navigator.serviceWorker.controller) offerUpdate(w);
      });
    });
    await navigator.serviceWorker.ready;
    out.textContent = reg.active ? 'Works offline after this visit' : '';
  } catch (e) {
    out.textContent = 'Offline use is unavailable here.';
  }
}

// ---- start -------------------------------------------------------------------------------------

autosave(document);
initNotices();
modelPanel.init(app);
annotatePanel.init(app);
trainPanel.init(app);
comparePanel.init(app);
calibratePanel.init(app);
agreementPanel.init(app);
ratersPanel.init(app);
studyPanel.init(app);
updateBadge();
selectTab(location.hash.slice(1) || getPref('tab', 'model'), { remember: false });
emit('engine', state);
// Once the page has loaded: the first install caches the whole shell (the engine included), which
// would otherwise compete with the first paint for a small machine's cores.
if (document.readyState === 'complete') registerServiceWorker();
else addEventListener('load', () => registerServiceWorker(), { once: true });
