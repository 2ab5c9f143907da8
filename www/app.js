// cqa-studio page: UI state and rendering only. The engine runs in worker.js so that loading
// and generating never block typing; see the message protocol at the top of worker.js.

const $ = (id) => document.getElementById(id);

const el = {
  badge: $('badge'), badgeBackend: $('badge-backend'), badgeModel: $('badge-model'),
  announcer: $('announcer'),
  modelStatus: $('model-status'), progressRow: $('progress-row'), progress: $('progress'),
  progressLabel: $('progress-label'), modelInfo: $('model-info'), modelFile: $('model-file'),
  modelError: $('model-error'),
  generateForm: $('generate-form'), prompt: $('prompt'), chat: $('chat'),
  temperature: $('temperature'), topP: $('top-p'), topK: $('top-k'), maxTokens: $('max-tokens'), seed: $('seed'),
  generate: $('generate'), stop: $('stop'), copyOutput: $('copy-output'), output: $('output'),
  genCount: $('gen-count'), genRate: $('gen-rate'), genNote: $('gen-note'), generateError: $('generate-error'),
  scoreForm: $('score-form'), context: $('context'), text: $('text'), score: $('score'),
  scoreResult: $('score-result'), totalBits: $('total-bits'), bitsPerToken: $('bits-per-token'),
  scoredTokens: $('scored-tokens'), scoreNote: $('score-note'), chips: $('chips'), scoreError: $('score-error'),
};

const state = {
  backend: null,     // 'webgpu' | 'cpu' once the engine has started
  info: null,        // info() of the loaded model, null until one loads
  job: 'load',       // 'load' | 'generate' | 'score' | null — the worker runs one job at a time
  engineDead: false, // the worker itself failed to start
  nextId: 1,
  genId: 0,
  scoreId: 0,
  stopping: false,
  loadingName: null, // the file being loaded, for error messages
};

const LN2 = Math.LN2;
const STORAGE_PREFIX = 'cqa-studio:';

// ---------------------------------------------------------------------------------------------
// Autosave: every [data-autosave] control is written to localStorage as the user types, so a
// reload, a crash or an engine error never loses a draft.

const storage = (() => {
  try {
    const k = STORAGE_PREFIX + '__probe';
    localStorage.setItem(k, '1');
    localStorage.removeItem(k);
    return localStorage;
  } catch {
    return null; // storage disabled (private mode, policy): the page still works, just without drafts
  }
})();

const autosaved = Array.from(document.querySelectorAll('[data-autosave]'));
const pendingSaves = new Map();

function valueOf(control) {
  return control.type === 'checkbox' ? String(control.checked) : control.value;
}

function save(control) {
  pendingSaves.delete(control);
  if (!storage) return;
  try {
    storage.setItem(STORAGE_PREFIX + control.dataset.autosave, valueOf(control));
  } catch {
    // Quota exceeded: keep going; the text is still on screen.
  }
}

function restoreDrafts() {
  if (!storage) return;
  for (const control of autosaved) {
    const saved = storage.getItem(STORAGE_PREFIX + control.dataset.autosave);
    if (saved === null) continue;
    if (control.type === 'checkbox') control.checked = saved === 'true';
    else control.value = saved;
  }
}

function flushSaves() {
  for (const [control, timer] of pendingSaves) { clearTimeout(timer); save(control); }
}

restoreDrafts();
for (const control of autosaved) {
  const event = control.type === 'checkbox' ? 'change' : 'input';
  // Debounced so typing fast does not write on every keystroke; flushed on pagehide.
  control.addEventListener(event, () => {
    clearTimeout(pendingSaves.get(control));
    pendingSaves.set(control, setTimeout(() => save(control), 300));
  });
}
addEventListener('pagehide', flushSaves);
document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') flushSaves(); });

// ---------------------------------------------------------------------------------------------
// Formatting helpers

const fmtInt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const fmt1 = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
const fmt2 = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });

const mb = (bytes) => `${fmt1.format(bytes / 1e6)} MB`;
const backendName = (b) => (b === 'webgpu' ? 'WebGPU' : b === 'cpu' ? 'CPU' : 'Engine…');

function fmtParams(n) {
  if (!Number.isFinite(n)) return '–';
  if (n >= 1e9) return `${fmt2.format(n / 1e9)} B`;
  if (n >= 1e6) return `${fmt1.format(n / 1e6)} M`;
  return fmtInt.format(n);
}

function announce(message) {
  // Clearing first makes screen readers repeat an identical message.
  el.announcer.textContent = '';
  requestAnimationFrame(() => { el.announcer.textContent = message; });
}

// Ends an engine message with a full stop so that a following sentence reads cleanly.
function sentence(text) {
  const t = String(text || 'Unknown error').trim();
  return /[.!?…]$/.test(t) ? t : `${t}.`;
}

function showError(target, message) {
  target.textContent = message || '';
}

// ---------------------------------------------------------------------------------------------
// Controls follow state: nothing that needs the engine is clickable while it is busy.

function updateControls() {
  const idle = state.job === null && !state.engineDead;
  const ready = idle && state.info !== null;
  el.generate.disabled = !ready;
  el.score.disabled = !ready;
  el.stop.disabled = state.job !== 'generate' || state.stopping;
  el.modelFile.disabled = !idle;
  el.copyOutput.disabled = state.job === 'generate' || el.output.textContent.length === 0;

  el.badgeBackend.textContent = backendName(state.backend);
  let badgeState = 'loading';
  let badgeText;
  if (state.engineDead) { badgeState = 'error'; badgeText = 'engine unavailable'; }
  else if (state.job === 'load') badgeText = 'loading model…';
  else if (state.job === 'generate') { badgeState = 'busy'; badgeText = 'generating…'; }
  else if (state.job === 'score') { badgeState = 'busy'; badgeText = 'scoring…'; }
  else if (state.info) { badgeState = 'ready'; badgeText = `${state.info.name || 'model'} ready`; }
  else { badgeState = 'error'; badgeText = 'no model loaded'; }
  el.badge.dataset.state = badgeState;
  el.badgeModel.textContent = badgeText;
  el.badge.title = `${backendName(state.backend)} · ${badgeText}`;
}

// ---------------------------------------------------------------------------------------------
// Worker

let worker;
try {
  worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
} catch (e) {
  engineFailed(`This browser cannot run the engine (module workers are required): ${e.message || e}`);
}

function engineFailed(message) {
  state.engineDead = true;
  state.job = null;
  el.modelStatus.textContent = 'Engine unavailable';
  el.progressRow.hidden = true;
  showError(el.modelError, message);
  updateControls();
}

function send(msg, transfer) {
  if (!worker) return false;
  worker.postMessage(msg, transfer || []);
  return true;
}

if (worker) {
  worker.addEventListener('error', (event) => {
    // Fires when worker.js itself cannot load or throws at the top level.
    event.preventDefault();
    engineFailed(`The engine failed to start${event.message ? `: ${event.message}` : '.'}`);
  });
  worker.addEventListener('messageerror', () => {
    showError(el.modelError, 'A message from the engine could not be read.');
  });
  worker.addEventListener('message', (event) => handle(event.data || {}));
}

const handlers = {
  status(msg) {
    if (msg.backend) state.backend = msg.backend;
    if (state.job === 'load' || msg.phase === 'init') el.modelStatus.textContent = msg.message;
    if (msg.phase === 'generate' && state.job === 'generate') el.genRate.textContent = '…';
    updateControls();
  },

  progress(msg) {
    el.progressRow.hidden = false;
    if (msg.total > 0) {
      el.progress.max = msg.total;
      el.progress.value = Math.min(msg.loaded, msg.total);
      const pct = Math.floor((100 * msg.loaded) / msg.total);
      el.progressLabel.textContent = `${mb(msg.loaded)} of ${mb(msg.total)} (${pct}%)`;
    } else {
      el.progress.removeAttribute('value'); // unknown size: an indeterminate bar
      el.progressLabel.textContent = `${mb(msg.loaded)} loaded`;
    }
  },

  loaded(msg) {
    state.backend = msg.backend || state.backend;
    state.info = msg.info || {};
    state.job = null;
    state.loadingName = null;
    el.progressRow.hidden = true;
    showError(el.modelError, '');
    el.modelStatus.textContent = msg.source === 'file' ? 'Loaded from your file' : 'Default model loaded';
    renderInfo(state.info, state.backend);
    updateControls();
    announce(`${state.info.name || 'Model'} loaded on ${backendName(state.backend)}.`);
  },

  token(msg) {
    if (msg.id !== state.genId) return;
    if (msg.text) appendOutput(msg.text);
    scheduleStats(msg.count, msg.tokensPerSecond);
  },

  done(msg) {
    if (msg.id !== state.genId) return;
    scheduleStats(msg.count, msg.tokensPerSecond);
    const notes = {
      end_of_sequence: 'Finished: the model ended its answer.',
      max_tokens: 'Stopped at the max-tokens limit.',
      context_full: 'Stopped: the model’s context window is full.',
      stopped: 'Stopped by you.',
    };
    const note = notes[msg.reason] || `Stopped (${msg.reason}).`;
    finishGeneration();
    el.genNote.textContent = `${note} ${fmtInt.format(msg.count)} tokens in ${fmt1.format(msg.elapsedMs / 1000)} s.`;
    announce(`${note} ${msg.count} tokens in ${fmt1.format(msg.elapsedMs / 1000)} s.`);
  },

  score(msg) {
    if (msg.id !== state.scoreId) return;
    state.job = null;
    renderScore(msg.result);
    updateControls();
    announce(`Scored ${msg.result.logprobs.length} tokens: ${fmt2.format(msg.result.total_bits)} bits in total.`);
  },

  error(msg) {
    const request = msg.op === 'busy' ? msg.request : msg.op;
    if (msg.op === 'init') {
      // The pending load request will retry the start and report its own error.
      showError(el.modelError, msg.message);
      return;
    }
    if (request === 'generate') {
      if (msg.op !== 'busy') finishGeneration();
      showError(el.generateError, msg.message);
      announce('Generation failed.');
    } else if (request === 'score') {
      if (msg.op !== 'busy') state.job = null;
      showError(el.scoreError, msg.message);
      announce('Scoring failed.');
    } else {
      if (msg.op !== 'busy') {
        state.job = null;
        el.progressRow.hidden = true;
        el.modelStatus.textContent = state.info ? `Kept ${state.info.name || 'the previous model'}` : 'No model loaded';
      }
      const what = state.loadingName ? `Could not load “${state.loadingName}”: ` : '';
      const kept = state.info && msg.op !== 'busy' ? ` The previous model (${state.info.name || 'unnamed'}) is still loaded.` : '';
      showError(el.modelError, msg.op === 'busy' ? msg.message : `${what}${sentence(msg.message)}${kept}`);
      if (msg.op !== 'busy') state.loadingName = null;
      announce('Loading the model failed.');
    }
    updateControls();
  },
};

function handle(msg) {
  const h = handlers[msg.type];
  if (h) h(msg);
}

// ---------------------------------------------------------------------------------------------
// Model panel

function renderInfo(info, backend) {
  const c = info.config || {};
  const types = Object.entries(info.tensor_types || {})
    .sort((a, b) => b[1] - a[1])
    .map(([t, n]) => `${t} × ${n}`)
    .join(', ');
  const heads = c.num_attention_heads
    ? `${c.num_attention_heads} query / ${c.num_key_value_heads ?? c.num_attention_heads} key-value`
    : null;
  const rows = [
    ['Name', info.name],
    ['Format', info.format ? info.format.toUpperCase() : null],
    ['Architecture', c.architecture],
    ['Parameters', fmtParams(info.parameters)],
    ['Layers × width', c.num_hidden_layers ? `${c.num_hidden_layers} × ${c.hidden_size}` : null],
    ['Attention heads', heads],
    ['Context length', c.max_position_embeddings ? fmtInt.format(c.max_position_embeddings) : null],
    ['Vocabulary', info.tokenizer_vocab ? fmtInt.format(info.tokenizer_vocab) : (c.vocab_size ? fmtInt.format(c.vocab_size) : null)],
    ['Tensor types', types || null],
    ['File size', Number.isFinite(info.file_bytes) ? mb(info.file_bytes) : null],
    ['Weights in memory', Number.isFinite(info.weight_bytes_f32) ? `${mb(info.weight_bytes_f32)} (f32, ${backendName(backend)})` : null],
    ['Chat template', info.has_chat_template === undefined ? null : (info.has_chat_template ? 'yes' : 'no')],
  ];
  const frag = document.createDocumentFragment();
  for (const [label, value] of rows) {
    if (value === null || value === undefined || value === '') continue;
    const div = document.createElement('div');
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = label;
    dd.textContent = String(value);
    div.append(dt, dd);
    frag.append(div);
  }
  el.modelInfo.replaceChildren(frag);

  // Without a chat template the option would only produce an error, so it is switched off for
  // this model (the saved preference is left alone for the next one).
  el.chat.disabled = info.has_chat_template === false;
  if (el.chat.disabled) el.modelStatus.textContent += ' — it has no chat template, so prompts are used as plain text';
}

el.modelFile.addEventListener('change', () => {
  const file = el.modelFile.files && el.modelFile.files[0];
  el.modelFile.value = ''; // so choosing the same file again still fires 'change'
  if (!file) return;
  if (!/\.gguf$/i.test(file.name)) {
    showError(el.modelError, `“${file.name}” is not a .gguf file. Safetensors folders load through the CLI.`);
    return;
  }
  showError(el.modelError, '');
  state.job = 'load';
  state.loadingName = file.name;
  el.modelStatus.textContent = `Reading ${file.name}…`;
  el.progress.value = 0;
  el.progressRow.hidden = false;
  el.progressLabel.textContent = 'Starting…';
  updateControls();
  // A File is structured-cloneable: the worker streams it itself, with progress, off this thread.
  send({ type: 'load', file });
});

// ---------------------------------------------------------------------------------------------
// Generate panel

let outputText = null; // one Text node that grows, cheaper than re-setting textContent per token
let statsFrame = 0;
let pendingStats = null;

function appendOutput(text) {
  const box = el.output;
  // Follow the stream only if the reader is already at the bottom.
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
  if (!outputText) { outputText = document.createTextNode(''); box.append(outputText); }
  outputText.appendData(text);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function scheduleStats(count, rate) {
  // Batch DOM updates to one per frame even when tokens arrive faster.
  pendingStats = { count, rate };
  if (statsFrame) return;
  statsFrame = requestAnimationFrame(() => {
    statsFrame = 0;
    el.genCount.textContent = fmtInt.format(pendingStats.count);
    el.genRate.textContent = pendingStats.rate > 0 ? fmt1.format(pendingStats.rate) : '–';
  });
}

function finishGeneration() {
  state.job = null;
  state.stopping = false;
  el.output.setAttribute('aria-busy', 'false');
  if (el.genRate.textContent === '…') el.genRate.textContent = '–';
  updateControls();
}

function readNumber(input, { min, max, integer }) {
  const raw = input.value.trim();
  const n = Number(raw);
  const ok = raw !== '' && Number.isFinite(n) && (!integer || Number.isInteger(n))
    && (min === undefined || n >= min) && (max === undefined || n <= max);
  input.setAttribute('aria-invalid', ok ? 'false' : 'true');
  return ok ? n : null;
}

function readParams() {
  const spec = [
    ['temperature', el.temperature, { min: 0, max: 5 }, 'Temperature must be between 0 and 5.'],
    ['top_p', el.topP, { min: 0, max: 1 }, 'Top-p must be between 0 and 1.'],
    ['top_k', el.topK, { min: 0, integer: true }, 'Top-k must be a whole number ≥ 0.'],
    ['max_new_tokens', el.maxTokens, { min: 1, max: 8192, integer: true }, 'Max tokens must be a whole number from 1 to 8192.'],
    ['seed', el.seed, { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true }, 'Seed must be a whole number ≥ 0.'],
  ];
  const params = {};
  const problems = [];
  for (const [key, input, rule, message] of spec) {
    const n = readNumber(input, rule);
    if (n === null) problems.push(message); else params[key] = n;
  }
  if (params.top_p === 0) { problems.push('Top-p must be greater than 0.'); el.topP.setAttribute('aria-invalid', 'true'); }
  return { params, problems };
}

el.generateForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (el.generate.disabled) return;
  const prompt = el.prompt.value;
  const { params, problems } = readParams();
  if (!prompt.trim()) problems.unshift('Write a prompt first.');
  if (problems.length) { showError(el.generateError, problems.join(' ')); return; }
  showError(el.generateError, '');

  state.genId = state.nextId++;
  state.job = 'generate';
  state.stopping = false;
  outputText = null;
  el.output.replaceChildren();
  el.output.setAttribute('aria-busy', 'true');
  el.genCount.textContent = '0';
  el.genRate.textContent = '…';
  el.genNote.textContent = '';
  updateControls();
  send({ type: 'generate', id: state.genId, prompt, chat: el.chat.checked && !el.chat.disabled, params });
});

el.stop.addEventListener('click', () => {
  if (state.job !== 'generate') return;
  state.stopping = true;
  send({ type: 'stop' });
  updateControls();
  announce('Stopping…');
});

el.copyOutput.addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(el.output.textContent);
    announce('Output copied.');
  } catch {
    showError(el.generateError, 'Could not copy: the browser refused clipboard access. Select the text and copy it by hand.');
  }
});

// ---------------------------------------------------------------------------------------------
// Score panel

// Surprisal buckets (bits) shared with the legend in index.html and the .s0–.s5 classes.
const BUCKETS = [1, 3, 6, 9, 12];
const bucketOf = (bits) => { let i = 0; while (i < BUCKETS.length && bits >= BUCKETS[i]) i++; return i; };

function renderScore(result) {
  const logprobs = result.logprobs || [];
  const textIds = result.text_ids || [];
  const n = logprobs.length;
  // Scored tokens are the last n of X; without context the first one has nothing to condition on.
  const offset = textIds.length - n;

  el.totalBits.textContent = fmt2.format(result.total_bits || 0);
  el.bitsPerToken.textContent = n > 0 ? fmt2.format(result.bits_per_token) : '–';
  el.scoredTokens.textContent = `${fmtInt.format(n)} of ${fmtInt.format(textIds.length)}`;

  const notes = [];
  if (offset > 0) notes.push(offset === 1
    ? 'The first token of X has nothing before it, so it is not scored.'
    : `The first ${offset} tokens of X are not scored.`);
  notes.push('Each chip is one scored token of X, coloured by its surprisal (−log₂ p) in bits.');
  el.scoreNote.textContent = notes.join(' ');

  const frag = document.createDocumentFragment();
  for (let i = 0; i < n; i++) {
    const bits = Math.max(0, -logprobs[i] / LN2); // max() also turns −0 into 0
    const pos = offset + i;
    const li = document.createElement('li');
    li.className = `chip s${bucketOf(bits)}`;
    const p = Math.exp(logprobs[i]);
    li.title = `Token ${pos + 1} of X (id ${textIds[pos]}): ${fmt2.format(bits)} bits, p = ${p < 0.001 ? p.toExponential(2) : p.toFixed(3)}`;
    const b = document.createElement('span');
    b.className = 'chip-bits';
    b.textContent = fmt1.format(bits);
    const idx = document.createElement('span');
    idx.className = 'chip-index';
    // Show whitespace visibly so a chip for " " or "\n" is not blank.
    const tokenText = result.token_texts ? result.token_texts[pos] : null;
    idx.textContent = tokenText != null ? tokenText.replace(/ /g, '·').replace(/\n/g, '↵') : `#${pos + 1}`;
    li.append(b, idx);
    frag.append(li);
  }
  el.chips.replaceChildren(frag);
  el.scoreResult.hidden = false;
}

el.scoreForm.addEventListener('submit', (event) => {
  event.preventDefault();
  if (el.score.disabled) return;
  const text = el.text.value;
  if (!text.trim()) { showError(el.scoreError, 'Enter the text (X) to score.'); return; }
  showError(el.scoreError, '');
  state.scoreId = state.nextId++;
  state.job = 'score';
  updateControls();
  send({ type: 'score', id: state.scoreId, text, context: el.context.value });
});

// Ctrl/⌘ + Enter submits the form a textarea belongs to.
for (const area of [el.prompt, el.context, el.text]) {
  area.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      area.form.requestSubmit();
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Start: load the default model straight away (the worker starts the engine in parallel).

updateControls();
if (worker) {
  el.progressRow.hidden = false;
  el.progress.value = 0;
  send({ type: 'load', source: 'default' });
}
