// Model panel: the backend, loading (default, a file from /models/, a GGUF or an HF folder from
// the user's disk), the model card, this site's storage (used and allowed), and a quick
// generation to try the model. A GGUF opened from disk is kept in Cache Storage by the engine
// worker; when that would fill this site's storage (over ~90 % of its quota, where adapters,
// checkpoints and annotations could no longer be saved) the panel asks first.
import { $, h, announce, showError, sentence, mb, fmtInt, fmt1, fmt2, setProgress, getPref, setPref, readNumber } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { MODEL_CACHE, localKey, serverKey } from '../lib/model-files.js';
import { storageRoom } from '../lib/storage-room.js';
import { describeRates } from '../lib/engine-choice.js';

/** Share of the quota above which caching a model asks first. */
const QUOTA_WARN_SHARE = 0.9;

let app;
let tryId = null;

const el = {};

export function init(a) {
  app = a;
  for (const id of ['model-status', 'backend-line', 'model-progress-row', 'model-progress', 'model-progress-label', 'load-default',
    'model-files', 'forget-models', 'dropzone', 'model-drop', 'model-error', 'model-info', 'model-info-empty',
    'try-form', 'try-prompt', 'try-chat', 'try-max', 'try-temp', 'try-run', 'try-stop', 'try-output', 'try-note', 'try-error',
    'try-count', 'try-rate', 'storage-line', 'quota-warning', 'quota-text', 'quota-go', 'quota-cancel', 'engine-pick', 'engine-rates']) el[id] = $(id);

  app.on('engine', updateControls);
  app.on('engine', showEngineChoice);
  app.on('engine-timing', showEngineChoice);
  // A restart may have moved the engine to the other device.
  app.on('engine-restarted', () => initDevice());
  el['engine-pick'].addEventListener('change', () => app.chooseEngine(el['engine-pick'].value));
  // This site's storage, again after anything is loaded or saved (here or in another tab).
  app.on('adapters', refreshStorageSoon);
  app.on('annotations', refreshStorageSoon);
  app.on('tab', (t) => { if (t === 'model') refreshStorageSoon(); });
  store.onChange(refreshStorageSoon);
  refreshStorage();
  el['load-default'].addEventListener('click', () => loadDefault());
  el['model-files'].addEventListener('change', () => {
    const files = Array.from(el['model-files'].files || []);
    el['model-files'].value = '';
    if (files.length) openFiles(files);
  });
  el['forget-models'].addEventListener('click', forget);
  setupDrop();
  el['try-form'].addEventListener('submit', (e) => { e.preventDefault(); tryGenerate(); });
  el['try-prompt'].addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); el['try-form'].requestSubmit(); }
  });
  el['try-stop'].addEventListener('click', () => { if (tryId !== null) app.engine.send({ type: 'stop', target: tryId }); });

  initDevice();
  startupLoad();
}

function updateControls() {
  const idle = !app.state.dead && !app.state.job && app.engine;
  el['load-default'].disabled = !idle;
  el['model-files'].disabled = !idle;
  el['forget-models'].disabled = !idle;
  el['try-run'].disabled = !app.ready();
  el['try-stop'].disabled = !(app.state.job && app.state.job.kind === 'try');
  if (app.state.dead) {
    el['model-status'].textContent = 'Engine unavailable';
    showError(el['model-error'], app.state.dead);
  }
}

/** "Stage: 12.3 MB of 45.6 MB (27%)", or without the total when it is unknown (0). */
function progressText(stage, loaded, total) {
  if (total > 0) return `${stage}: ${mb(loaded)} of ${mb(total)} (${Math.floor((100 * loaded) / total)}%)`;
  return loaded > 0 ? `${stage}: ${mb(loaded)}` : stage;
}

/**
 * A User Timing mark (the first of its name only): the first visit's milestones, for the
 * DevTools performance panel and tests/browser/first-visit.mjs.
 */
function mark(name) {
  if (performance.getEntriesByName(name, 'mark').length === 0) performance.mark(name);
}

async function initDevice() {
  if (!app.engine) return;
  try {
    const d = await app.engine.call('init-device');
    mark('cqa:engine-ready');
    app.state.backend = d.backend;
    const line = el['backend-line'];
    line.replaceChildren();
    if (d.backend === 'webgpu') {
      const a = d.adapter || {};
      const name = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' · ');
      line.append(h('strong', { text: 'WebGPU' }), ` — adapter: ${name || 'unnamed'}`);
    } else {
      const on = d.threads > 1 ? `CPU, ${d.threads} threads` : 'CPU fallback';
      line.append(h('strong', { text: on }), ` — ${d.reason || 'WebGPU is unavailable'}. Everything works, more slowly.`);
    }
    app.updateBadge();
  } catch (e) {
    el['backend-line'].textContent = `The engine could not start: ${sentence(e.message)}`;
  }
}

/** The engine choice, and the rates both engines were timed at for the loaded model. */
function showEngineChoice() {
  const { choice, fixed } = app.engineChoice();
  const { backend, engineTiming: t, job } = app.state;
  const pick = el['engine-pick'];
  if (document.activeElement !== pick) pick.value = choice;
  pick.disabled = fixed || Boolean(job) || !backend;
  pick.title = fixed ? `Fixed by the page’s address (?engine=${choice})` : '';
  const on = backend === 'cpu' ? 'the CPU' : 'WebGPU';
  let text = '';
  if (job?.kind === 'timing') text = 'Timing a short decode on WebGPU and on the CPU…';
  else if (t?.error) text = `Not timed (${t.error}); running on ${on}.`;
  else if (t) text = `${describeRates(t)}: running on ${on}, the faster here${t.at ? ` (timed ${new Date(t.at).toLocaleDateString()})` : ''}.`;
  else if (fixed || choice !== 'auto') text = backend ? `Running on ${on}, as ${fixed ? 'the page’s address asks' : 'you chose'}.` : '';
  el['engine-rates'].textContent = text;
}

function startupLoad() {
  const param = new URLSearchParams(location.search).get('model');
  if (param) { load({ source: 'url', name: param }, param, { remember: false }); return; }
  const saved = getPref('model');
  if (saved && saved.source === 'local' && saved.name) {
    load({ source: 'local', name: saved.name }, saved.name, { fallback: true });
    return;
  }
  loadDefault();
}

/** Loads the engine's default model; the engine worker picks the file, the schema names it here. */
async function loadDefault() {
  const name = await app.schema.then((s) => s.default_model, () => 'the default model');
  load({ source: 'default' }, name);
}

/**
 * A model file on this site (`models/NAME` beside the page) that is not cached yet, as {name, size, cacheUrl},
 * its size from a HEAD request; null when it is cached or the server does not say its size (the
 * load then goes ahead unasked).
 */
async function siteModel(name) {
  const cacheUrl = serverKey(name);
  // Already kept: nothing to ask (and no request; the worker rechecks the copy itself).
  if (await cachedBytes({ name, cacheUrl }) > 0) return null;
  try {
    const r = await fetch(cacheUrl, { method: 'HEAD', cache: 'no-store' });
    const size = Number(r.headers.get('Content-Length'));
    return r.ok && size > 0 ? { name, size, cacheUrl } : null;
  } catch {
    return null;
  }
}

async function load(payload, label, { remember = true, fallback = false } = {}) {
  if (!app.engine) return;
  showError(el['model-error'], '');
  // Where this browser's storage is small or temporary (a private window), a model copy would
  // take the room a trained adapter needs: the model is loaded but not kept.
  const room = await Promise.race([storageRoom(), new Promise((r) => { setTimeout(() => r(null), 5000); })]);
  if (room?.small && (payload.file || payload.source === 'default' || payload.source === 'url')) payload = { ...payload, keep: false };
  // A download from this site is kept in the browser too: ask first when that would fill the
  // site's storage (a copy already cached costs nothing more).
  if ((payload.source === 'default' || payload.source === 'url') && payload.keep !== false) {
    const file = await siteModel(payload.name || label);
    if (file && !(await roomToCache(file))) {
      el['model-status'].textContent = `Not loaded: ${file.name} was not downloaded, so this site’s storage stays as it is`;
      return;
    }
  }
  el['model-status'].textContent = `Loading ${label}…`;
  el['model-progress-row'].hidden = false;
  setProgress(el['model-progress'], el['model-progress-label'], 0, 0, 'Starting…');
  // On a first visit the engine itself is still downloading: show that until the worker speaks.
  let workerSpoke = false;
  const showEngine = (d) => {
    if (workerSpoke || !d) return;
    setProgress(el['model-progress'], el['model-progress-label'], d.loaded, d.total, progressText('Downloading the engine', d.loaded, d.total));
  };
  showEngine(app.state.engineDownload);
  const stopEngine = app.on('engine-download', showEngine);
  try {
    const r = await app.runEngine('load', 'loading model', 'load', payload, {
      onEvent(ev) {
        if (ev.type !== 'progress') return;
        workerSpoke = true;
        const stage = { cache: 'From cache', download: 'Downloading', read: 'Reading', prepare: 'Preparing' }[ev.stage] || ev.stage;
        // Preparing counts the bytes of the weights read so far, where the file is read tensor by tensor.
        const text = ev.stage !== 'prepare' ? progressText(stage, ev.loaded, ev.total) : ev.total > 0 ? progressText('Preparing the weights', ev.loaded, ev.total) : 'Preparing the weights…';
        setProgress(el['model-progress'], el['model-progress-label'], ev.loaded, ev.total, text);
        if (ev.message) el['model-status'].textContent = ev.message;
      },
    });
    stopEngine();
    mark('cqa:model-ready');
    app.state.info = r.info;
    app.state.modelName = r.info.name || r.name;
    app.state.modelIdentity = r.identity || null;
    el['model-progress-row'].hidden = true;
    el['model-status'].textContent = {
      default: 'Default model loaded', url: `Loaded ${r.name}`, file: 'Loaded from your file', local: 'Loaded from this browser’s cache', files: 'Loaded from your files',
    }[r.source] + (r.source === 'local' ? '' : r.fromCache ? ' from this browser’s cache' : r.cached ? ' (kept in this browser for next time)'
      : r.source === 'files' ? '' : payload.keep === false
        ? ' (not kept in this browser: its storage here is small or temporary, and is left for your adapters)'
        : ' (not kept in this browser: its storage for this site is full or unavailable, so the next visit needs it again)');
    // A file that was not kept cannot be loaded from the cache next time.
    const kept = r.source === 'local' || (r.source === 'file' && r.cached);
    if (remember) setPref('model', kept ? { source: 'local', name: r.name } : { source: 'default' });
    renderInfo(r.info);
    app.emit('model', r);
    app.emit('engine', app.state);
    app.updateBadge();
    announce(`${app.state.modelName} loaded on ${app.state.backend === 'webgpu' ? 'WebGPU' : 'the CPU'}.`);
    refreshStorage();
  } catch (e) {
    stopEngine();
    refreshStorage();
    el['model-progress-row'].hidden = true;
    const kept = app.state.info ? ` The previous model (${app.state.modelName}) is still loaded.` : '';
    el['model-status'].textContent = app.state.info ? `Kept ${app.state.modelName}` : 'No model loaded';
    showError(el['model-error'], `Could not load “${label}”: ${sentence(e.message)}${kept}`);
    announce('Loading the model failed.');
    if (fallback) { setPref('model', { source: 'default' }); loadDefault(); }
  }
}

/** A .gguf, or safetensors shard(s) + config.json + tokenizer.json (+ tokenizer_config.json). */
function openFiles(files) {
  const byName = (n) => files.find((f) => f.name.toLowerCase() === n);
  const ggufs = files.filter((f) => /\.gguf$/i.test(f.name));
  const shards = files.filter((f) => /\.safetensors$/i.test(f.name)).sort((a, b) => a.name.localeCompare(b.name));
  if (ggufs.length === 1 && shards.length === 0) {
    const file = ggufs[0];
    roomToCache(file).then((go) => {
      if (go) load({ file }, file.name);
      else { el['model-status'].textContent = app.state.info ? `Kept ${app.state.modelName}` : 'No model loaded'; announce(`${file.name} was not loaded.`); }
    });
    return;
  }
  if (ggufs.length > 1) { showError(el['model-error'], 'Open one .gguf file at a time'); return; }
  if (shards.length) {
    const config = byName('config.json');
    const tokenizer = byName('tokenizer.json');
    const missing = [!config && 'config.json', !tokenizer && 'tokenizer.json'].filter(Boolean);
    if (missing.length) {
      showError(el['model-error'], `A safetensors model also needs ${missing.join(' and ')}: select them together with the .safetensors file(s)`);
      return;
    }
    load({ hf: { shards, config, tokenizer, tokenizerConfig: byName('tokenizer_config.json') || null } }, shards.length === 1 ? shards[0].name : `${shards.length} safetensors shards`);
    return;
  }
  showError(el['model-error'], `${files.map((f) => `“${f.name}”`).join(', ')} is not a model: choose a .gguf file, or .safetensors with config.json and tokenizer.json`);
}

function setupDrop() {
  const zone = el['model-drop'];
  zone.addEventListener('dragover', (e) => { e.preventDefault(); el.dropzone.classList.add('over'); });
  zone.addEventListener('dragleave', (e) => { if (!zone.contains(e.relatedTarget)) el.dropzone.classList.remove('over'); });
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    el.dropzone.classList.remove('over');
    const files = Array.from(e.dataTransfer?.files || []);
    if (!files.length) return;
    if (app.state.job) { showError(el['model-error'], `The engine is busy (${app.state.job.label}); drop the files again when it is done`); return; }
    openFiles(files);
  });
  // Dropping a file anywhere else must not navigate away from the app.
  addEventListener('dragover', (e) => e.preventDefault());
  addEventListener('drop', (e) => e.preventDefault());
}

async function forget() {
  try {
    const n = await app.runEngine('forget', 'clearing the model cache', 'forget-models', {});
    setPref('model', { source: 'default' });
    el['model-status'].textContent = n ? `Removed ${n} cached model file${n === 1 ? '' : 's'} from this browser` : 'No cached models';
  } catch (e) {
    showError(el['model-error'], e.message);
  }
  refreshStorage();
}

// ---- this site's storage -------------------------------------------------------------------

/** Bytes in decimal units: 512 bytes, 3.4 KB, 812 MB, 1.2 GB. */
export function humanBytes(n) {
  if (!Number.isFinite(n) || n < 0) return '–';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
  if (i === 0) return `${Math.round(v)} byte${Math.round(v) === 1 ? '' : 's'}`;
  return `${v >= 100 ? fmtInt.format(v) : fmt1.format(v)} ${units[i]}`;
}

const percent = (part, whole) => {
  const p = (100 * part) / whole;
  return p > 0 && p < 0.1 ? 'under 0.1 %' : `${p < 10 ? fmt1.format(p) : fmtInt.format(p)} %`;
};

let storageTimer = null;
function refreshStorageSoon() {
  clearTimeout(storageTimer);
  storageTimer = setTimeout(refreshStorage, 500);
}

async function refreshStorage() {
  const e = await store.storageEstimate();
  const line = el['storage-line'];
  if (!e || !(e.quota > 0)) {
    line.textContent = 'This browser does not say how much storage this site may use.';
    delete line.dataset.state;
    return;
  }
  line.textContent = `Storage: this site keeps ${humanBytes(e.usage)} in this browser (models, adapters, checkpoints, annotations), of ${humanBytes(e.quota)} it may use (${percent(e.usage, e.quota)}).`;
  line.dataset.usage = String(e.usage);
  line.dataset.quota = String(e.quota);
  line.dataset.state = e.usage > QUOTA_WARN_SHARE * e.quota ? 'full' : 'ok';
}

/** The bytes a copy of `file` already takes in the model cache (a re-opened file replaces it). */
async function cachedBytes(file) {
  try {
    const cache = await caches.open(MODEL_CACHE);
    const hit = await cache.match(file.cacheUrl || localKey(file.name));
    return hit ? Number(hit.headers.get('Content-Length')) || 0 : 0;
  } catch {
    return 0;
  }
}

/**
 * Resolves to true when keeping `file` in the model cache leaves this site's storage under ~90 %
 * of its quota, or when the user chooses to go on anyway; false when they cancel.
 */
let cancelQuestion = null;
async function roomToCache(file) {
  const e = await store.storageEstimate();
  if (!e || !(e.quota > 0)) return true;
  const after = e.usage + Math.max(0, file.size - await cachedBytes(file));
  if (after <= QUOTA_WARN_SHARE * e.quota) return true;
  el['quota-text'].textContent = `${file.cacheUrl ? 'Downloading' : 'Opening'} “${file.name}” (${humanBytes(file.size)}) keeps a copy in this browser, which would bring this site’s storage to ${humanBytes(after)} of the ${humanBytes(e.quota)} it may use (${percent(after, e.quota)}). `
    + 'Near the limit, new adapters, checkpoints and annotations can no longer be saved. Free space first (Forget cached models, or delete adapters you no longer need), or load it anyway.';
  cancelQuestion?.(); // a file opened while an earlier one waited for an answer replaces it
  el['quota-warning'].hidden = false;
  el['quota-go'].focus();
  return new Promise((resolve) => {
    const done = (go) => {
      cancelQuestion = null;
      el['quota-warning'].hidden = true;
      el['quota-go'].removeEventListener('click', yes);
      el['quota-cancel'].removeEventListener('click', no);
      resolve(go);
    };
    cancelQuestion = () => done(false);
    const yes = () => done(true);
    const no = () => done(false);
    el['quota-go'].addEventListener('click', yes);
    el['quota-cancel'].addEventListener('click', no);
  });
}

function fmtParams(n) {
  if (!Number.isFinite(n)) return null;
  if (n >= 1e9) return `${fmt2.format(n / 1e9)} B`;
  if (n >= 1e6) return `${fmt1.format(n / 1e6)} M (${fmtInt.format(n)})`;
  return fmtInt.format(n);
}

/** "97 MB (as stored, CPU)" or "538 MB (f32, WebGPU)": what the engine holds, and in which form. */
function weightsInMemory(info, backend) {
  const resident = Number(info.weight_bytes_resident);
  if (Number.isFinite(resident) && resident > 0) {
    const form = info.weights === 'stored' ? 'as stored' : 'f32';
    return `${mb(resident)} (${form}, ${backend})`;
  }
  return Number.isFinite(info.weight_bytes_f32) ? `${mb(info.weight_bytes_f32)} (f32, ${backend})` : null;
}

function renderInfo(info) {
  const c = info.config || {};
  const types = Object.entries(info.tensor_types || {}).sort((a, b) => b[1] - a[1]).map(([t, n]) => `${t} × ${n}`).join(', ');
  const heads = c.num_attention_heads ? `${c.num_attention_heads} query / ${c.num_key_value_heads ?? c.num_attention_heads} key-value` : null;
  const backend = app.state.backend === 'webgpu' ? 'WebGPU' : 'CPU';
  const rows = [
    ['Name', info.name],
    ['Format', info.format ? String(info.format).toUpperCase() : null],
    ['Architecture', c.architecture],
    ['Parameters', fmtParams(info.parameters)],
    ['Layers × width', c.num_hidden_layers ? `${c.num_hidden_layers} × ${c.hidden_size}` : null],
    ['Attention heads', heads],
    ['Context length', c.max_position_embeddings ? fmtInt.format(c.max_position_embeddings) : null],
    ['Vocabulary', info.tokenizer_vocab ? fmtInt.format(info.tokenizer_vocab) : (c.vocab_size ? fmtInt.format(c.vocab_size) : null)],
    ['Quantization (tensor types)', types || null],
    ['File size', Number.isFinite(info.file_bytes) ? mb(info.file_bytes) : null],
    ['Weights in memory', weightsInMemory(info, backend)],
    ['Chat template', info.has_chat_template === undefined ? null : (info.has_chat_template ? 'yes' : 'no')],
  ];
  const frag = document.createDocumentFragment();
  for (const [label, value] of rows) {
    if (value === null || value === undefined || value === '') continue;
    frag.append(h('div', {}, h('dt', { text: label }), h('dd', { text: String(value) })));
  }
  el['model-info'].replaceChildren(frag);
  el['model-info-empty'].hidden = true;
  el['try-chat'].disabled = info.has_chat_template === false;
}

async function tryGenerate() {
  const problems = [];
  const max = readNumber(el['try-max'], { min: 1, max: 2048, integer: true });
  const temperature = readNumber(el['try-temp'], { min: 0, max: 5 });
  const prompt = el['try-prompt'].value;
  if (!prompt.trim()) problems.push('Write a prompt first.');
  if (max === null) problems.push('Max tokens must be a whole number from 1 to 2048.');
  if (temperature === null) problems.push('Temperature must be between 0 and 5.');
  if (problems.length) { showError(el['try-error'], problems.join(' ')); return; }
  showError(el['try-error'], '');
  const out = el['try-output'];
  out.replaceChildren();
  const text = document.createTextNode('');
  out.append(text);
  out.setAttribute('aria-busy', 'true');
  el['try-note'].textContent = '';
  el['try-count'].textContent = '0';
  el['try-rate'].textContent = '…';
  const params = { temperature, top_p: 0.9, top_k: 40, max_new_tokens: max, seed: 42 };
  try {
    const job = app.runEngine('try', 'generating', 'generate', { prompt, chat: el['try-chat'].checked && !el['try-chat'].disabled, params }, {
      onEvent(ev) {
        if (ev.type !== 'token') return;
        if (ev.count === 1) mark('cqa:first-token');
        text.appendData(ev.text);
        el['try-count'].textContent = fmtInt.format(ev.count);
        el['try-rate'].textContent = ev.tokensPerSecond > 0 ? fmt1.format(ev.tokensPerSecond) : '–';
      },
    });
    tryId = app.state.job?.id ?? null;
    updateControls();
    const r = await job;
    const notes = { end_of_sequence: 'The model ended its answer.', max_tokens: 'Stopped at the max-tokens limit.', context_full: 'The context window is full.', stopped: 'Stopped by you.' };
    el['try-note'].textContent = `${notes[r.reason] || r.reason} ${fmtInt.format(r.count)} tokens in ${fmt1.format(r.elapsedMs / 1000)} s.`;
    announce(el['try-note'].textContent);
  } catch (e) {
    showError(el['try-error'], e.message);
  } finally {
    tryId = null;
    out.setAttribute('aria-busy', 'false');
    updateControls();
  }
}
