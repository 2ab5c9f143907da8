// Train panel: LoRA settings (their defaults from the engine), the run (start, pause, cancel,
// resume from a checkpoint), the live loss chart, and the adapters kept in IndexedDB
// (adapters.js: export as a PEFT zip, import one).
//
// Nothing the user made is lost:
// - every run has its own key; its record and its checkpoint are stored under that key
//   (store.putRun / putCheckpoint), so a resume always pairs a run with its own checkpoint, and
//   after a reload the newest stopped run is offered for resume;
// - one tab trains at a time: a job (start or resume) holds the Web Lock 'cqa-studio-training',
//   and the run it trains the lock 'cqa-studio-run:<key>'. Another tab says so, keeps its
//   Start/Resume buttons off and does not offer that run for resume until the lock is released;
// - a trained adapter the browser refuses to store (quota, storage gone) stays in this page: the
//   run is 'finished, not saved', and the panel offers it as a PEFT zip download and a new try;
// - when the engine loses its GPU during a job (EngineError code 'lost'), the run resumes from
//   its checkpoint by itself once the app says the engine is back ('engine-restarted').
import { $, h, announce, showError, sentence, download, readNumber, fmt3, fmtInt, duration, today, cssVar } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { LineChart } from '../lib/charts.js';
import { storageProblem } from '../lib/adapters.js';
import * as annotate from './annotate/index.js';
import * as adapterStore from './adapters.js';

const LOCK = 'cqa-studio-training';
const RUN_LOCK = 'cqa-studio-run:';
const ELSEWHERE = 'Training is running in another tab of cqa-studio; one tab trains at a time, so follow it there, and start or resume here once it has ended.';

let app;
const el = {};
let chart;
let run = null;        // the run on screen (metadata + history), stored under run.key
let paused = false;
let shownHistory = null; // what the loss chart shows (a run's or an adapter's history)
let unsaved = null;    // {adapter, runKey, problem}: a trained adapter this browser refused to store
let holding = false;   // this tab holds the training lock
let elsewhere = false; // another tab holds it
let autoResume = null; // {runKey, fromStep}: resume when the engine is back after losing its GPU
let lastAutoFrom = null; // the checkpoint step of the last automatic resume (no endless retries)

export function init(a) {
  app = a;
  for (const id of ['train-set', 'train-form', 't-limit', 't-skip', 't-skip-wrap', 't-rank', 't-alpha', 't-dropout', 't-lr', 't-epochs',
    't-maxlen', 't-batch', 't-accum', 't-heldout', 't-evalevery', 't-seed', 't-wd', 't-warmup', 't-clip', 't-ckpt', 't-split',
    't-start', 't-pause', 't-cancel', 't-export-trl', 'train-error', 'run-status', 'resume-banner', 'resume-text', 'resume-run',
    'discard-run', 't-progress', 't-progress-label', 'm-step', 'm-epoch', 'm-loss', 'm-heldout', 'm-tps', 'm-eta', 'loss-chart',
    't-warnings', 'train-elsewhere', 'train-note', 'unsaved-banner', 'unsaved-text', 'unsaved-download', 'unsaved-retry']) el[id] = $(id);
  chart = new LineChart(el['loss-chart'], { height: 220, xLabel: 'step', yLabel: 'loss (nats)' });

  el['train-form'].addEventListener('submit', (e) => { e.preventDefault(); start(); });
  el['t-pause'].addEventListener('click', togglePause);
  el['t-cancel'].addEventListener('click', () => {
    app.engine.send({ type: 'train-control', action: 'cancel' });
    el['run-status'].textContent = 'Cancelling after the current step…';
    el['t-cancel'].disabled = true;
  });
  el['t-export-trl'].addEventListener('click', exportTrl);
  el['resume-run'].addEventListener('click', () => resume());
  el['discard-run'].addEventListener('click', () => {
    if (run && confirm('Discard the stopped run and its checkpoint? It cannot be resumed afterwards.')) discardRun();
  });
  el['unsaved-download'].addEventListener('click', () => {
    if (!unsaved) return;
    adapterStore.downloadAdapter(unsaved.adapter);
    announce('Adapter downloaded as a PEFT zip.');
  });
  el['unsaved-retry'].addEventListener('click', retrySave);
  for (const input of el['train-form'].querySelectorAll('input')) input.addEventListener('input', describeSet);

  app.on('engine', updateControls);
  app.on('annotations', describeSet);
  app.on('model', updateControls);
  app.on('tab', (t) => { if (t === 'train') { drawChart(shownHistory); sync(); } });
  app.on('engine-restarted', onEngineRestarted);
  // Another tab started, saved or ended a run: whether it trains now, and which runs stopped.
  store.onChange((c) => { if (c.store === 'runs') scheduleSync(); });
  // The only copy of an adapter the browser refused to store is in this page.
  addEventListener('beforeunload', (e) => { if (unsaved) { e.preventDefault(); e.returnValue = ''; } });
  app.schema.then(applyDefaults, (e) => showError(el['train-error'], `The engine’s training defaults are unavailable: ${e.message}`));

  adapterStore.init(app, {
    loss(a) { drawChart(a.history); el['run-status'].textContent = `Loss of “${a.name}”`; },
  });
  sync();
}

/** The saved adapters, newest first (the Compare and Calibrate panels offer them). */
export const list = () => adapterStore.list();

// ---- settings -------------------------------------------------------------------------------

// Each setting's input and where its default sits in the engine's schema.
const DEFAULTS = [
  ['t-rank', (s) => s.train_defaults.lora.rank],
  ['t-alpha', (s) => s.train_defaults.lora.alpha],
  ['t-dropout', (s) => s.train_defaults.lora.dropout],
  ['t-lr', (s) => s.train_defaults.learning_rate],
  ['t-epochs', (s) => s.train_defaults.epochs],
  ['t-maxlen', (s) => s.train_defaults.max_len],
  ['t-batch', (s) => s.train_defaults.batch_size],
  ['t-accum', (s) => s.train_defaults.grad_accum],
  ['t-heldout', (s) => s.train_defaults.held_out],
  ['t-evalevery', (s) => s.train_defaults.eval_every],
  ['t-seed', (s) => s.train_defaults.seed],
  ['t-wd', (s) => s.train_defaults.weight_decay],
  ['t-warmup', (s) => s.train_defaults.warmup_ratio],
  ['t-clip', (s) => s.train_defaults.max_grad_norm],
  ['t-ckpt', (s) => s.checkpoint_every],
];

// The engine's defaults replace the placeholders in index.html. They go into each control's
// default (the value attribute, `defaultChecked`), which the browser shows only while the control
// is untouched: a value the user typed, or a draft restored by autosave, stays.
function applyDefaults(schema) {
  for (const [id, pick] of DEFAULTS) {
    const v = pick(schema);
    if (Number.isFinite(v)) el[id].defaultValue = String(v);
  }
  const targets = schema.train_defaults.lora.targets;
  for (const c of document.querySelectorAll('.t-target')) c.defaultChecked = targets.includes(c.value);
  describeSet();
}

function readConfig() {
  const problems = [];
  const get = (id, rule, msg) => { const v = readNumber(el[id], rule); if (v === null) problems.push(msg); return v; };
  const targets = Array.from(document.querySelectorAll('.t-target:checked')).map((c) => c.value);
  if (!targets.length) problems.push('Pick at least one projection to adapt.');
  const config = {
    lora: {
      rank: get('t-rank', { min: 1, max: 1024, integer: true }, 'Rank must be a whole number ≥ 1.'),
      alpha: get('t-alpha', { min: 0 }, 'Alpha must be a number ≥ 0.'),
      dropout: get('t-dropout', { min: 0, max: 0.99 }, 'Dropout must be between 0 and 0.99.'),
      targets,
    },
    learning_rate: get('t-lr', { above: 0 }, 'The learning rate must be a positive number.'),
    epochs: get('t-epochs', { min: 1, integer: true }, 'Epochs must be a whole number ≥ 1.'),
    max_len: get('t-maxlen', { min: 8, integer: true }, 'Max length must be a whole number ≥ 8.'),
    batch_size: get('t-batch', { min: 1, integer: true }, 'Batch size must be a whole number ≥ 1.'),
    grad_accum: get('t-accum', { min: 1, integer: true }, 'Gradient accumulation must be a whole number ≥ 1.'),
    held_out: get('t-heldout', { min: 0, max: 0.9 }, 'The held-out share must be between 0 and 0.9.'),
    eval_every: get('t-evalevery', { min: 1, integer: true }, 'Evaluate-every must be a whole number ≥ 1.'),
    seed: get('t-seed', { min: 0, integer: true }, 'The seed must be a whole number ≥ 0.'),
    weight_decay: get('t-wd', { min: 0 }, 'Weight decay must be ≥ 0.'),
    warmup_ratio: get('t-warmup', { min: 0, max: 1 }, 'The warm-up share must be between 0 and 1.'),
    max_grad_norm: get('t-clip', { min: 0 }, 'The gradient clip must be ≥ 0.'),
  };
  const checkpointEvery = get('t-ckpt', { min: 1, integer: true }, 'Checkpoint-every must be a whole number ≥ 1.');
  return { config, checkpointEvery, problems };
}

/** The records this run trains on: the list, minus those with problems if asked, cut to the limit. */
function trainingRows() {
  const bad = annotate.problemKeys();
  let rows = annotate.allRows();
  const skip = el['t-skip'].checked;
  const nBad = rows.filter((r) => bad.has(r.key)).length;
  if (skip) rows = rows.filter((r) => !bad.has(r.key));
  const limitRaw = el['t-limit'].value.trim();
  const limit = limitRaw === '' ? null : Number(limitRaw);
  if (limit !== null && Number.isInteger(limit) && limit > 0) rows = rows.slice(0, limit);
  const included = rows.filter((r) => bad.has(r.key)).length;
  return { rows, nBad, included };
}

function describeSet() {
  const { rows, nBad, included } = trainingRows();
  el['t-skip-wrap'].hidden = nBad === 0;
  const total = annotate.allRows().length;
  el['train-set'].textContent = `${rows.length} of ${total} record${total === 1 ? '' : 's'}`;
  const share = Number(el['t-heldout'].value);
  const heldOut = Number.isFinite(share) && share > 0 ? Math.max(rows.length > 1 ? 1 : 0, Math.round(rows.length * share)) : 0;
  let text = rows.length
    ? `About ${rows.length - heldOut} record${rows.length - heldOut === 1 ? '' : 's'} to train on and ${heldOut} held out (drawn with the seed; the engine reports the exact split when the run starts).`
    : 'No records yet: write or import annotations in the Annotate panel.';
  if (included) text += ` ${included} of them ha${included === 1 ? 's' : 've'} problems: fix them, or tick “Skip records that have problems”.`;
  el['t-split'].textContent = text;
  updateControls();
}

function updateControls() {
  const training = app.state.job?.kind === 'train';
  el['t-start'].disabled = !app.ready() || !annotate.allRows().length || elsewhere || holding;
  el['t-start'].title = elsewhere ? ELSEWHERE : (app.blocker() || '');
  el['t-pause'].disabled = !training;
  el['t-cancel'].disabled = !training;
  el['t-pause'].textContent = paused && training ? 'Resume' : 'Pause';
  el['resume-run'].disabled = !app.ready() || elsewhere || holding;
  el['resume-run'].title = elsewhere ? ELSEWHERE : (app.blocker() || '');
}

// ---- one tab trains at a time ---------------------------------------------------------------

const locks = () => (typeof navigator !== 'undefined' && navigator.locks?.request ? navigator.locks : null);

/**
 * Runs `job` holding the training lock; resolves to false, without running it, when another tab
 * holds the lock. (Without Web Locks, tabs cannot coordinate: the job just runs.)
 */
async function withTrainingLock(job) {
  if (holding) { showError(el['train-error'], 'Training is already running in this tab'); return true; }
  const l = locks();
  const guarded = async () => {
    holding = true;
    setElsewhere(false);
    try {
      await job();
    } catch (e) {
      showError(el['train-error'], sentence(e?.message || String(e)));
    } finally {
      holding = false;
      updateControls();
    }
    return true;
  };
  if (!l) return guarded();
  return l.request(LOCK, { ifAvailable: true }, (lock) => (lock ? guarded() : false));
}

/** Runs `fn` holding the lock of run `key`, which tells other tabs that this run is in training. */
function withRunLock(key, fn) {
  const l = locks();
  return l ? l.request(RUN_LOCK + key, fn) : fn();
}

/** Whether another tab trains now, and the keys of the runs it trains. */
async function trainingElsewhere() {
  const none = { any: false, runs: new Set() };
  const l = locks();
  if (!l?.query) return none;
  try {
    const { held = [] } = await l.query();
    if (holding) return none;
    return {
      any: held.some((x) => x.name === LOCK && x.mode === 'exclusive'),
      runs: new Set(held.filter((x) => x.name?.startsWith(RUN_LOCK)).map((x) => x.name.slice(RUN_LOCK.length))),
    };
  } catch {
    return none;
  }
}

function setElsewhere(any) {
  elsewhere = any;
  el['train-elsewhere'].textContent = any ? ELSEWHERE : '';
  el['train-elsewhere'].hidden = !any;
  if (any) watchRelease();
  updateControls();
}

// While another tab trains, a shared request for the lock waits for its release (and is let go at
// once), so this tab learns exactly when it may train again.
let watching = false;
function watchRelease() {
  const l = locks();
  if (watching || !l) return;
  watching = true;
  l.request(LOCK, { mode: 'shared' }, () => {}).catch(() => {}).finally(() => { watching = false; sync(); });
}

let syncSeq = 0;
let syncTimer = null;
function scheduleSync() {
  clearTimeout(syncTimer);
  syncTimer = setTimeout(sync, 300);
}

/** Whether another tab trains, and (unless this tab has its own run going) the run to offer. */
async function sync() {
  const seq = ++syncSeq;
  const other = await trainingElsewhere();
  if (seq !== syncSeq) return;
  setElsewhere(other.any);
  await restoreRun(other.runs, seq);
}

/** This tab's own run is on screen and must stay: in training here, or its adapter unsaved. */
const ownRunOnScreen = () => holding || app.state.job?.kind === 'train' || (unsaved && run?.key === unsaved.runKey);

/** Shows the newest stopped run (not one that another tab is training) with its resume banner. */
async function restoreRun(busyElsewhere = new Set(), seq = syncSeq) {
  if (ownRunOnScreen()) return;
  let runs;
  try { runs = await store.allRuns(); } catch { return; /* storage gone: keep what is shown */ }
  if (seq !== syncSeq || ownRunOnScreen()) return;
  const next = runs.find((r) => !busyElsewhere.has(r.key)) || null;
  if (!next) {
    if (run) { run = null; renderMetrics(); drawChart(); }
    el['resume-banner'].hidden = true;
    return;
  }
  // A run left 'running' by a tab that is gone (no lock holds it) was interrupted.
  if (next.status === 'running') next.status = 'interrupted';
  const changed = !run || run.key !== next.key || run.step !== next.step || run.status !== next.status;
  run = next;
  if (changed) { renderMetrics(); drawChart(); }
  showBanner();
}

// ---- a run ---------------------------------------------------------------------------------

async function start() {
  showError(el['train-error'], '');
  const { config, checkpointEvery, problems } = readConfig();
  if (problems.length) { showError(el['train-error'], problems.join(' ')); return; }
  const { rows, included } = trainingRows();
  if (!rows.length) { showError(el['train-error'], 'There are no records to train on'); return; }
  if (included) {
    showError(el['train-error'], `${included} of the chosen records ha${included === 1 ? 's' : 've'} problems (see the Annotate panel): fix them, or tick “Skip records that have problems”`);
    return;
  }
  if (unsaved && !confirm(`The adapter “${unsaved.adapter.name}” of the last run is not saved in this browser. Start a new run anyway? That adapter stays here (Download adapter, Try saving again) until this page is closed.`)) return;
  const ran = await withTrainingLock(async () => {
    // The unsaved run's record stays: after a reload its last checkpoint can rebuild the adapter.
    const replaces = run && run.key !== unsaved?.runKey ? run : null;
    if (replaces && !confirm('Starting a new run discards the stopped run and its checkpoint. Continue?')) return;
    let records;
    try {
      records = await app.data.call('toJsonl', { records: rows.map((r) => r.record) });
    } catch (e) { showError(el['train-error'], e.message); return; }
    if (replaces) await discardRun({ quiet: true });
    lastAutoFrom = null;
    autoResume = null;
    run = {
      key: store.newKey(), status: 'running', model: app.state.modelName, config, records, recordIds: rows.map((r) => r.record.id),
      history: { steps: [], held_out: [] }, started: new Date().toISOString(), step: 0, total_steps: 0, checkpointStep: null, checkpointEvery,
    };
    askToPersist();
    await trainJob({ records, config, checkpointEvery, keepGoodLines: false });
  });
  if (!ran) refusedElsewhere();
}

async function resume({ auto = false } = {}) {
  showError(el['train-error'], '');
  if (!auto) autoResume = null;
  if (!run) return;
  const key = run.key;
  if (run.model && run.model !== app.state.modelName) {
    showError(el['train-error'], `This run was trained on ${run.model}, but ${app.state.modelName || 'no model'} is loaded: load ${run.model} first`);
    return;
  }
  const ran = await withTrainingLock(async () => {
    // Another tab may have resumed, finished or discarded this run meanwhile.
    let stored, cp;
    try {
      [stored, cp] = await Promise.all([store.getRun(key), store.getCheckpoint(key)]);
    } catch (e) { showError(el['train-error'], `Could not read the run from this browser’s storage: ${storageProblem(e)}`); return; }
    if (!stored) {
      showError(el['train-error'], 'This run is no longer kept in this browser (another tab finished or discarded it)');
      run = null;
      el['resume-banner'].hidden = true;
      return;
    }
    if (!cp?.bytes) { showError(el['train-error'], 'This run has no checkpoint to resume from'); return; }
    if (run?.key !== key) return;
    // The stored record, unless this page's copy is further along (a save that failed).
    if ((stored.history?.steps?.length || 0) >= (run.history?.steps?.length || 0)) run = stored;
    let checkpointEvery = run.checkpointEvery;
    if (!checkpointEvery) {
      try { checkpointEvery = (await app.schema).checkpoint_every; } catch (e) { showError(el['train-error'], e.message); return; }
    }
    // The history after the checkpoint is replayed by the resumed run.
    run.history.steps = run.history.steps.filter((s) => s.step <= cp.step);
    run.history.held_out = run.history.held_out.filter((s) => s.step <= cp.step);
    run.step = cp.step;
    run.checkpointStep = cp.step;
    run.status = 'running';
    delete run.error;
    askToPersist();
    await trainJob({ records: run.records, checkpoint: cp.bytes, checkpointEvery }, { resumedFrom: cp.step, auto });
  });
  if (!ran) refusedElsewhere();
}

function refusedElsewhere() {
  showError(el['train-error'], ELSEWHERE);
  sync();
}

/** Asks the browser (once) not to evict this site's storage, and says why when it asked. */
function askToPersist() {
  store.ensurePersistent().then((p) => {
    if (!p?.askedNow) return;
    const why = 'So that this browser does not delete your adapters and checkpoints when disk space runs low, cqa-studio asked it to keep this site’s storage';
    el['train-note'].textContent = p.persisted
      ? `${why}: it agreed.`
      : `${why}: it has not agreed (yet), so export the adapters you want to keep (Export PEFT zip).`;
    el['train-note'].hidden = false;
  }, () => { /* not supported: nothing to say */ });
}

function trainJob(payload, opts = {}) {
  return withRunLock(run.key, () => trainLoop(payload, opts));
}

async function trainLoop(payload, { resumedFrom = null, auto = false } = {}) {
  paused = false;
  el['resume-banner'].hidden = true;
  el['t-warnings'].replaceChildren();
  renderMetrics();
  drawChart();
  el['run-status'].textContent = resumedFrom === null ? 'Preparing the training examples…' : `${auto ? 'The engine is back: resuming' : 'Resuming'} from step ${resumedFrom}…`;
  announce(resumedFrom === null ? 'Training started.' : `Training resumed from step ${resumedFrom}.`);
  const current = run;
  let lastSave = 0;
  let saveWarned = false;
  const saveRun = () => store.putRun(current).catch((err) => {
    if (saveWarned) return;
    saveWarned = true;
    showError(el['train-error'], `Could not keep this run’s progress in this browser (${storageProblem(err)}); training goes on, but a reload would lose it`);
  });
  // Checkpoints are written one after another; the run is marked resumable from a step only once
  // its checkpoint is stored.
  let checkpoints = Promise.resolve();
  try {
    const result = await app.runEngine('train', 'training', 'train', payload, {
      onEvent(ev) {
        if (ev.type === 'train-info') {
          current.total_steps = ev.info.total_steps;
          current.config = ev.info.config;
          current.split = { train: ev.info.train, held_out: ev.info.held_out };
          current.heldOutIds = ev.info.held_out_ids || null;
          el['t-warnings'].replaceChildren(...(ev.info.warnings || []).map((w) => h('li', { class: 'warning', text: sentence(w) })));
          el['run-status'].textContent = `Training on ${ev.info.train} record${ev.info.train === 1 ? '' : 's'}, ${ev.info.held_out} held out, ${ev.info.total_steps} steps`;
          renderMetrics();
          saveRun();
        } else if (ev.type === 'train-event') {
          const e = ev.event;
          if (e.kind === 'step') {
            current.history.steps.push({ step: e.step, loss: e.loss, epoch: e.epoch, tokens_per_s: e.tokens_per_s, eta_s: e.eta_s, learning_rate: e.learning_rate, grad_norm: e.grad_norm });
            current.step = e.step;
            current.last = e;
            if (paused) el['run-status'].textContent = `Paused at step ${e.step} of ${current.total_steps}`;
          } else if (e.kind === 'held_out') {
            current.history.held_out.push({ step: e.step, loss: e.held_out_loss });
          }
          if (run === current) { renderMetrics(); drawChart(); }
          if (ev.checkpoint) {
            const step = e.step;
            const bytes = ev.checkpoint;
            checkpoints = checkpoints.then(() => store.putCheckpoint(current.key, step, bytes)).then(
              () => {
                current.checkpointStep = step;
                if (current.status === 'running') return saveRun();
                return null;
              },
              (err) => showError(el['train-error'], `Could not keep a checkpoint in this browser: ${storageProblem(err)}`));
          } else if (performance.now() - lastSave > 2000) {
            lastSave = performance.now();
            saveRun();
          }
        }
      },
    });
    await checkpoints;
    paused = false;
    if (result.outcome === 'finished' && result.adapter) {
      current.status = 'finished';
      await keepAdapter(adapterStore.trainedAdapter(result, current), current);
    } else {
      current.status = 'cancelled';
      await saveRun();
      el['run-status'].textContent = `Cancelled at step ${current.step} of ${current.total_steps}`;
      showBanner();
      announce('Training cancelled.');
    }
  } catch (e) {
    await checkpoints;
    paused = false;
    if (e?.code === 'lost' && current.total_steps > 0 && await gpuLost(current, e, saveRun)) return;
    if (current.total_steps > 0) {
      current.status = 'failed';
      current.error = e.message;
      if (current.checkpointStep) recentFailure = { runKey: current.key, at: Date.now() };
      await saveRun();
      showBanner();
      el['run-status'].textContent = 'Stopped by an error';
    } else if (resumedFrom === null) {
      // The run never started (bad settings or records): nothing to resume.
      await discardRun({ quiet: true });
      el['run-status'].textContent = 'Not started';
    } else {
      // A resume that did not start: the run and its checkpoint stay as they were.
      current.status = 'failed';
      current.error = e.message;
      await saveRun();
      showBanner();
      el['run-status'].textContent = 'Could not resume';
    }
    showError(el['train-error'], `Training stopped: ${sentence(e.message)}${current.checkpointStep ? ` You can resume from step ${current.checkpointStep}.` : ''}`);
  } finally {
    updateControls();
  }
}

/** The sentence for a job the engine lost at `step`, resuming from `from`. */
function lostText(message, step, from) {
  return /GPU|device/i.test(message || '')
    ? `The GPU device was lost at step ${step}; resuming from the checkpoint at step ${from} when the engine is back…`
    : `The engine stopped at step ${step}; resuming from the checkpoint at step ${from} when it is back…`;
}

/**
 * The engine lost its GPU (or its worker) during the job. With a stored checkpoint, the run
 * resumes from it by itself on the next 'engine-restarted'; resolves to false without one.
 */
async function gpuLost(current, e, saveRun) {
  let cp = null;
  try { cp = await store.getCheckpoint(current.key); } catch { /* storage gone */ }
  if (!cp?.bytes) return false;
  current.status = 'lost';
  current.error = e.message;
  current.checkpointStep = cp.step;
  await saveRun();
  planAutoResume(current, cp.step, e.message);
  return true;
}

/** Resumes `current` from `from` on the next restart, unless that would repeat a failed attempt. */
function planAutoResume(current, from, message) {
  if (lastAutoFrom !== null && from <= lastAutoFrom) {
    // Lost again with no progress since the last automatic resume: leave it to the user.
    autoResume = null;
    showBanner();
    el['run-status'].textContent = 'Stopped: the engine was lost again';
    showError(el['train-error'], `The engine was lost again at step ${current.step} (${sentence(message)}) with no progress since the last automatic resume. Resume from step ${from} when the engine is back`);
    return false;
  }
  autoResume = { runKey: current.key, fromStep: from };
  showBanner();
  const text = lostText(message, current.step, from);
  el['run-status'].textContent = text;
  announce(text);
  return true;
}

// A job that failed just before the engine restarted because its device was lost (or its worker
// crashed) failed of that: its error (e.g. a read-back that could not complete) can arrive before
// the engine itself reports the loss. {runKey, at}
let recentFailure = null;
const FAILURE_BEFORE_RESTART_MS = 15_000;

function onEngineRestarted(event) {
  let pending = autoResume;
  autoResume = null;
  const failed = recentFailure;
  recentFailure = null;
  if (!pending && failed && run?.key === failed.runKey && run.status === 'failed' && run.checkpointStep
    && Date.now() - failed.at < FAILURE_BEFORE_RESTART_MS && ['device-lost', 'crashed'].includes(event?.reason)) {
    run.status = 'lost';
    store.putRun(run).catch(() => { /* shown as failed after a reload, still resumable */ });
    const why = event.reason === 'device-lost' ? 'the GPU device was lost' : 'the engine stopped';
    if (planAutoResume(run, run.checkpointStep, why)) pending = autoResume;
    autoResume = null;
  }
  if (!pending || run?.key !== pending.runKey) return;
  lastAutoFrom = pending.fromStep;
  resume({ auto: true });
}

/** Saves a trained adapter; when the browser refuses, keeps it in this page and offers it. */
async function keepAdapter(adapter, current) {
  try {
    await adapterStore.saveAdapter(adapter);
  } catch (e) {
    unsaved = { adapter, runKey: current.key, problem: storageProblem(e) };
    current.status = 'unsaved';
    current.error = unsaved.problem;
    current.adapterName = adapter.name;
    await store.putRun(current).catch(() => { /* the same storage problem, most likely */ });
    showUnsaved();
    showBanner();
    el['run-status'].textContent = 'Finished, not saved';
    announce('Training finished, but the adapter could not be saved in this browser: download it.');
    return;
  }
  if (run === current) await discardRun({ quiet: true, keepChart: true });
  else await store.deleteRun(current.key).catch(() => { /* only a finished run's record */ });
  el['run-status'].textContent = `Finished: adapter “${adapter.name}” saved`;
  announce('Training finished; the adapter is saved.');
}

function showUnsaved(again = false) {
  if (!unsaved) { el['unsaved-banner'].hidden = true; return; }
  el['unsaved-text'].textContent = `${again ? 'Saving the adapter failed again' : 'Training finished, but the adapter could not be saved'}: ${unsaved.problem}. `
    + `The adapter “${unsaved.adapter.name}” is kept in this page only, until it is closed: download it (a PEFT zip), or free some space and try saving again.`;
  el['unsaved-banner'].hidden = false;
}

async function retrySave() {
  if (!unsaved) return;
  const { adapter, runKey } = unsaved;
  el['unsaved-retry'].disabled = true;
  try {
    await adapterStore.saveAdapter(adapter);
  } catch (e) {
    unsaved.problem = storageProblem(e);
    showUnsaved(true);
    return;
  } finally {
    el['unsaved-retry'].disabled = false;
  }
  // The banner goes last, once the run's record is gone and the status says so: whoever sees
  // it hidden sees the finished state.
  unsaved = null;
  try { await store.deleteRun(runKey); } catch { /* only a finished run's record */ }
  if (run?.key === runKey) { run = null; el['resume-banner'].hidden = true; }
  el['run-status'].textContent = `Finished: adapter “${adapter.name}” saved`;
  showUnsaved();
  announce('The adapter is saved.');
  updateControls();
}

function togglePause() {
  if (app.state.job?.kind !== 'train') return;
  paused = !paused;
  app.engine.send({ type: 'train-control', action: paused ? 'pause' : 'resume' });
  el['run-status'].textContent = paused ? `Paused at step ${run?.step ?? 0} of ${run?.total_steps ?? '?'}` : 'Training…';
  announce(paused ? 'Training paused.' : 'Training resumed.');
  updateControls();
}

function renderMetrics() {
  const last = run?.last;
  const total = run?.total_steps || 0;
  const step = run?.step || 0;
  const ho = run?.history.held_out.at(-1);
  el['t-progress'].max = Math.max(1, total);
  el['t-progress'].value = step;
  el['t-progress-label'].textContent = total ? `step ${step} of ${total}` : '–';
  el['m-step'].textContent = total ? `${step} / ${total}` : '–';
  el['m-epoch'].textContent = last ? `${last.epoch} / ${run.config?.epochs ?? '?'}` : '–';
  el['m-loss'].textContent = last ? fmt3.format(last.loss) : '–';
  el['m-heldout'].textContent = ho ? `${fmt3.format(ho.loss)} (step ${ho.step})` : '–';
  el['m-tps'].textContent = last ? fmtInt.format(last.tokens_per_s) : '–';
  el['m-eta'].textContent = last ? (step >= total ? 'done' : duration(last.eta_s)) : '–';
}

function drawChart(history = run?.history) {
  shownHistory = history || null;
  const steps = history?.steps || [];
  const held = history?.held_out || [];
  const xs = Array.from(new Set([...steps.map((s) => s.step), ...held.map((s) => s.step)])).sort((a, b) => a - b);
  const train = new Map(steps.map((s) => [s.step, s.loss]));
  const ho = new Map(held.map((s) => [s.step, s.loss]));
  chart.update(xs, [
    { label: 'train loss', color: cssVar('--accent') || '#4f46e5', values: xs.map((x) => train.get(x) ?? null) },
    { label: 'held-out loss', color: cssVar('--reality') || '#b45309', values: xs.map((x) => ho.get(x) ?? null), points: true },
  ]);
  el['loss-chart'].setAttribute('aria-label', steps.length
    ? `Loss per step: ${steps.length} steps, last train loss ${fmt3.format(steps.at(-1).loss)}${held.length ? `, last held-out loss ${fmt3.format(held.at(-1).loss)}` : ''}`
    : 'Loss chart: no steps yet');
}

function showBanner() {
  // No banner for a run in training, nor for the run whose adapter is offered above.
  if (!run || run.status === 'running' || run.status === 'finished' || (unsaved && unsaved.runKey === run.key)) {
    el['resume-banner'].hidden = true;
    updateControls();
    return;
  }
  const cp = run.checkpointStep;
  let text;
  if (run.status === 'unsaved') {
    text = `A run on ${run.model || 'the model'} finished (step ${run.step} of ${run.total_steps}), but this browser could not save its adapter (${run.error || 'unknown'}).`
      + (cp ? ` Its checkpoint at step ${cp} can rebuild the adapter.` : ' It kept no checkpoint to rebuild it from.');
    el['resume-run'].textContent = `Rebuild the adapter from step ${cp}`;
  } else {
    const why = {
      interrupted: 'was interrupted (the page was closed or reloaded)',
      cancelled: 'was cancelled',
      failed: `stopped with an error (${run.error || 'unknown'})`,
      lost: 'stopped: the GPU device was lost',
    }[run.status] || 'stopped';
    text = `A run on ${run.model || 'the model'} ${why} at step ${run.step} of ${run.total_steps}.`
      + (cp ? ` Its last checkpoint is at step ${cp}.` : ' It had no checkpoint yet, so it cannot be resumed.')
      + (cp && autoResume?.runKey === run.key ? ' It resumes by itself once the engine is back.' : '');
    el['resume-run'].textContent = `Resume from step ${cp}`;
  }
  el['resume-text'].textContent = text;
  el['resume-run'].hidden = !cp;
  el['resume-banner'].hidden = false;
  if (run.status === 'interrupted') el['run-status'].textContent = 'Interrupted';
  updateControls();
}

/** Deletes the run on screen and its checkpoint (only that run's). */
async function discardRun({ quiet = false, keepChart = false } = {}) {
  const key = run?.key;
  if (key) {
    try {
      await store.deleteRun(key);
    } catch (e) {
      if (!quiet) { showError(el['train-error'], `Could not discard the run: ${storageProblem(e)}. It is still kept`); return; }
    }
  }
  if (autoResume?.runKey === key) autoResume = null;
  run = null;
  if (!keepChart) { renderMetrics(); drawChart(); }
  el['resume-banner'].hidden = true;
  if (!quiet) { el['run-status'].textContent = 'Not started'; announce('The stopped run was discarded.'); }
  updateControls();
}

// ---- export ----------------------------------------------------------------------------------

async function exportTrl() {
  showError(el['train-error'], '');
  const { rows, included } = trainingRows();
  if (!rows.length) { showError(el['train-error'], 'There are no records to export'); return; }
  if (included) { showError(el['train-error'], `${included} of the chosen records have problems: fix them, or tick “Skip records that have problems”`); return; }
  try {
    const jsonl = await app.data.call('exportTrl', { records: rows.map((r) => r.record) });
    download(`trl-${today()}.jsonl`, jsonl, 'application/jsonl');
    announce(`Exported ${rows.length} training chats.`);
  } catch (e) {
    showError(el['train-error'], e.message);
  }
}
