// cqa-studio page: UI state and rendering only. The engine runs in two module workers:
// engine-worker.js ('engine': the model) and data-worker.js ('data': the record format,
// validation, statistics and exports). Each documents its requests at its top; the protocol they
// share is described in lib/worker-core.js. Each panel lives in panels/ (the Annotate panel in
// panels/annotate/; the Calibrate tab's agreement section in panels/agreement.js).
import { $, announce, autosave, getPref, setPref } from './lib/ui.js';
import { WorkerClient } from './lib/engine.js';
import * as modelPanel from './panels/model.js';
import * as annotatePanel from './panels/annotate/index.js';
import * as trainPanel from './panels/train.js';
import * as comparePanel from './panels/compare.js';
import * as calibratePanel from './panels/calibrate.js';
import * as agreementPanel from './panels/agreement.js';

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
}
function emit(name, value) {
  for (const fn of listeners.get(name) || []) {
    try { fn(value); } catch (e) { console.error(e); }
  }
}

// ---- workers ---------------------------------------------------------------------------------

const state = {
  backend: null,      // 'webgpu' | 'cpu'
  info: null,         // info() of the loaded model
  modelName: null,
  job: null,          // {kind, label} of the engine's current job, or null
  dead: null,         // why the engine could not start
};

function startWorker(url, name) {
  try {
    return new Worker(url, { type: 'module', name });
  } catch (e) {
    state.dead = `this browser cannot run the engine (module workers are required): ${e.message || e}`;
    return null;
  }
}

const engineWorker = startWorker(new URL('./engine-worker.js', import.meta.url), 'engine');
const dataWorker = startWorker(new URL('./data-worker.js', import.meta.url), 'data');
const onWorkerDeath = (msg) => { if (msg.type === 'dead') { state.dead = msg.message; emit('engine', state); updateBadge(); } };
const engine = engineWorker ? new WorkerClient(engineWorker, onWorkerDeath) : null;
const data = dataWorker ? new WorkerClient(dataWorker, onWorkerDeath) : null;

// The page compiles the engine once (streaming, off the main thread) and hands the module to both
// workers; if that fails they compile it themselves and report the error in words.
(async () => {
  let module = null;
  try {
    module = await WebAssembly.compileStreaming(fetch('/pkg/cqa_studio_bg.wasm'));
  } catch { /* the workers try again and report */ }
  engineWorker?.postMessage({ type: 'init', module });
  dataWorker?.postMessage({ type: 'init', module });
})();

// The record format and every default (dimensions, schema version, training settings, the
// default model), from the engine itself: a Promise, asked for once. Panels read it with
// `app.schema.then(use, onError)`; it fails only when the data worker cannot run the engine.
const schema = data ? data.call('schema') : Promise.reject(new Error(state.dead || 'the engine is unavailable'));
schema.catch(() => { /* each reader handles the failure where it shows it */ });

/** Runs an engine job, keeping every panel's controls in step with the engine's state. */
async function runEngine(kind, label, type, payload, opts) {
  if (!engine) throw new Error(state.dead || 'the engine is unavailable');
  if (state.job) throw new Error(`the engine is busy (${state.job.label}); wait for it or stop it`);
  state.job = { kind, label };
  emit('engine', state);
  updateBadge();
  const req = engine.request(type, payload, opts);
  state.job.id = req.id;
  try {
    return await req.promise;
  } finally {
    state.job = null;
    emit('engine', state);
    updateBadge();
  }
}

const backendName = (b) => (b === 'webgpu' ? 'WebGPU' : b === 'cpu' ? 'CPU' : 'Engine…');

function updateBadge() {
  const badge = $('badge');
  $('badge-backend').textContent = backendName(state.backend);
  let s = 'loading';
  let text;
  if (state.dead) { s = 'error'; text = 'engine unavailable'; }
  else if (state.job) { s = state.job.kind === 'load' ? 'loading' : 'busy'; text = `${state.job.label}…`; }
  else if (state.info) { s = 'ready'; text = `${state.modelName || 'model'} ready`; }
  else { s = 'error'; text = 'no model loaded'; }
  badge.dataset.state = s;
  $('badge-model').textContent = text;
  badge.title = `${backendName(state.backend)} · ${text}`;
}

const app = {
  state, engine, data, schema, on, emit, runEngine, selectTab, announce, updateBadge,
  /** True when a model is loaded and the engine is idle. */
  ready: () => !state.dead && !state.job && state.info !== null,
  /** Why an engine action is unavailable now, or null. */
  blocker() {
    if (state.dead) return 'The engine is unavailable.';
    if (!state.info) return 'Load a model first (Model panel).';
    if (state.job) return `The engine is busy: ${state.job.label}.`;
    return null;
  },
};

// ---- offline: a service worker caches the app shell, the engine and the model ---------------

async function registerServiceWorker() {
  const out = $('offline-status');
  if (!('serviceWorker' in navigator)) { out.textContent = 'This browser cannot keep the app for offline use.'; return; }
  try {
    const reg = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    await navigator.serviceWorker.ready;
    out.textContent = reg.active ? 'Works offline after this visit' : '';
  } catch (e) {
    out.textContent = 'Offline use is unavailable here.';
  }
}

// ---- start -------------------------------------------------------------------------------------

autosave(document);
modelPanel.init(app);
annotatePanel.init(app);
trainPanel.init(app);
comparePanel.init(app);
calibratePanel.init(app);
agreementPanel.init(app);
updateBadge();
selectTab(location.hash.slice(1) || getPref('tab', 'model'), { remember: false });
emit('engine', state);
registerServiceWorker();
