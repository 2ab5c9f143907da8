// Train panel: LoRA settings (their defaults from the engine), the run (start, pause, cancel,
// resume from a checkpoint), the live loss chart, and the adapters kept in IndexedDB
// (adapters.js: export as a PEFT zip, import one).
import { $, h, announce, showError, sentence, download, readNumber, fmt3, fmtInt, duration, today, cssVar } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { LineChart } from '../lib/charts.js';
import * as annotate from './annotate/index.js';
import * as adapterStore from './adapters.js';

let app;
const el = {};
let chart;
let run = null;        // the run record (metadata + history), mirrored in IndexedDB
let paused = false;
let runMeta = null;    // what the current run was started with

export function init(a) {
  app = a;
  for (const id of ['train-set', 'train-form', 't-limit', 't-skip', 't-skip-wrap', 't-rank', 't-alpha', 't-dropout', 't-lr', 't-epochs',
    't-maxlen', 't-batch', 't-accum', 't-heldout', 't-evalevery', 't-seed', 't-wd', 't-warmup', 't-clip', 't-ckpt', 't-split',
    't-start', 't-pause', 't-cancel', 't-export-trl', 'train-error', 'run-status', 'resume-banner', 'resume-text', 'resume-run',
    'discard-run', 't-progress', 't-progress-label', 'm-step', 'm-epoch', 'm-loss', 'm-heldout', 'm-tps', 'm-eta', 'loss-chart',
    't-warnings']) el[id] = $(id);
  chart = new LineChart(el['loss-chart'], { height: 220, xLabel: 'step', yLabel: 'loss (nats)' });

  el['train-form'].addEventListener('submit', (e) => { e.preventDefault(); start(); });
  el['t-pause'].addEventListener('click', togglePause);
  el['t-cancel'].addEventListener('click', () => {
    app.engine.send({ type: 'train-control', action: 'cancel' });
    el['run-status'].textContent = 'Cancelling after the current step…';
    el['t-cancel'].disabled = true;
  });
  el['t-export-trl'].addEventListener('click', exportTrl);
  el['resume-run'].addEventListener('click', resume);
  el['discard-run'].addEventListener('click', discardRun);
  for (const input of el['train-form'].querySelectorAll('input')) input.addEventListener('input', describeSet);

  app.on('engine', updateControls);
  app.on('annotations', describeSet);
  app.on('model', updateControls);
  app.on('tab', (t) => { if (t === 'train') drawChart(); });
  app.schema.then(applyDefaults, (e) => showError(el['train-error'], `The engine’s training defaults are unavailable: ${e.message}`));

  adapterStore.init(app, {
    loss(a) { drawChart(a.history); el['run-status'].textContent = `Loss of “${a.name}”`; },
  });
  restoreRun();
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
  el['t-start'].disabled = !app.ready() || !annotate.allRows().length;
  el['t-start'].title = app.blocker() || '';
  el['t-pause'].disabled = !training;
  el['t-cancel'].disabled = !training;
  el['t-pause'].textContent = paused && training ? 'Resume' : 'Pause';
  el['resume-run'].disabled = !app.ready();
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
  if (run && !confirm('Starting a new run discards the stopped run and its checkpoint. Continue?')) return;
  let records;
  try {
    records = await app.data.call('toJsonl', { records: rows.map((r) => r.record) });
  } catch (e) { showError(el['train-error'], e.message); return; }
  await discardRun({ quiet: true });
  run = { status: 'running', model: app.state.modelName, config, records, recordIds: rows.map((r) => r.record.id), history: { steps: [], held_out: [] }, started: new Date().toISOString(), step: 0, total_steps: 0, checkpointStep: null, checkpointEvery };
  await trainJob({ records, config, checkpointEvery, keepGoodLines: false });
}

async function resume() {
  showError(el['train-error'], '');
  if (!run) return;
  if (run.model && run.model !== app.state.modelName) {
    showError(el['train-error'], `This run was trained on ${run.model}, but ${app.state.modelName || 'no model'} is loaded: load ${run.model} first`);
    return;
  }
  const cp = await store.kvGet('run-checkpoint');
  if (!cp) { showError(el['train-error'], 'This run has no checkpoint to resume from'); return; }
  let checkpointEvery = run.checkpointEvery;
  if (!checkpointEvery) {
    try { checkpointEvery = (await app.schema).checkpoint_every; } catch (e) { showError(el['train-error'], e.message); return; }
  }
  // The history after the checkpoint is replayed by the resumed run.
  run.history.steps = run.history.steps.filter((s) => s.step <= cp.step);
  run.history.held_out = run.history.held_out.filter((s) => s.step <= cp.step);
  run.status = 'running';
  await trainJob({ records: run.records, checkpoint: cp.bytes, checkpointEvery });
}

async function trainJob(payload) {
  paused = false;
  el['resume-banner'].hidden = true;
  el['t-warnings'].replaceChildren();
  renderMetrics();
  drawChart();
  el['run-status'].textContent = 'Preparing the training examples…';
  announce('Training started.');
  let lastSave = 0;
  const saveRun = () => store.putRun(run).catch(() => {});
  try {
    const result = await app.runEngine('train', 'training', 'train', payload, {
      onEvent(ev) {
        if (ev.type === 'train-info') {
          run.total_steps = ev.info.total_steps;
          run.config = ev.info.config;
          run.split = { train: ev.info.train, held_out: ev.info.held_out };
          run.heldOutIds = ev.info.held_out_ids || null;
          el['t-warnings'].replaceChildren(...(ev.info.warnings || []).map((w) => h('li', { class: 'warning', text: sentence(w) })));
          el['run-status'].textContent = `Training on ${ev.info.train} record${ev.info.train === 1 ? '' : 's'}, ${ev.info.held_out} held out, ${ev.info.total_steps} steps`;
          renderMetrics();
          saveRun();
        } else if (ev.type === 'train-event') {
          const e = ev.event;
          if (e.kind === 'step') {
            run.history.steps.push({ step: e.step, loss: e.loss, epoch: e.epoch, tokens_per_s: e.tokens_per_s, eta_s: e.eta_s, learning_rate: e.learning_rate, grad_norm: e.grad_norm });
            run.step = e.step;
            run.last = e;
            if (paused) el['run-status'].textContent = `Paused at step ${e.step} of ${run.total_steps}`;
          } else if (e.kind === 'held_out') {
            run.history.held_out.push({ step: e.step, loss: e.held_out_loss });
          }
          renderMetrics();
          drawChart();
          if (ev.checkpoint) {
            run.checkpointStep = e.step;
            store.kvSet('run-checkpoint', { step: e.step, bytes: ev.checkpoint }).catch((err) => showError(el['train-error'], `Could not keep a checkpoint in this browser: ${err.message}`));
            saveRun();
          } else if (performance.now() - lastSave > 2000) {
            lastSave = performance.now();
            saveRun();
          }
        }
      },
    });
    paused = false;
    if (result.outcome === 'finished' && result.adapter) {
      const adapter = await adapterStore.saveTrained(result, run);
      await discardRun({ quiet: true, keepChart: true });
      el['run-status'].textContent = `Finished: adapter “${adapter.name}” saved`;
      announce('Training finished; the adapter is saved.');
    } else {
      run.status = 'cancelled';
      await saveRun();
      el['run-status'].textContent = `Cancelled at step ${run.step} of ${run.total_steps}`;
      showBanner();
      announce('Training cancelled.');
    }
  } catch (e) {
    paused = false;
    if (run && run.total_steps > 0) {
      run.status = 'failed';
      run.error = e.message;
      await saveRun();
      showBanner();
      el['run-status'].textContent = 'Stopped by an error';
    } else {
      // The run never started (bad settings or records): nothing to resume.
      await discardRun({ quiet: true });
      el['run-status'].textContent = 'Not started';
    }
    showError(el['train-error'], `Training stopped: ${sentence(e.message)}${run?.checkpointStep ? ` You can resume from step ${run.checkpointStep}.` : ''}`);
  } finally {
    updateControls();
  }
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

async function restoreRun() {
  try { run = (await store.getRun()) || null; } catch { run = null; }
  if (!run) return;
  if (run.status === 'running') run.status = 'interrupted';
  renderMetrics();
  drawChart();
  showBanner();
}

function showBanner() {
  if (!run) { el['resume-banner'].hidden = true; return; }
  const why = { interrupted: 'was interrupted (the page was closed or reloaded)', cancelled: 'was cancelled', failed: `stopped with an error (${run.error || 'unknown'})` }[run.status] || 'stopped';
  const cp = run.checkpointStep;
  el['resume-text'].textContent = `A run on ${run.model || 'the model'} ${why} at step ${run.step} of ${run.total_steps}.${cp ? ` Its last checkpoint is at step ${cp}.` : ' It had no checkpoint yet, so it cannot be resumed.'}`;
  el['resume-run'].hidden = !cp;
  el['resume-run'].textContent = `Resume from step ${cp}`;
  el['resume-banner'].hidden = false;
  el['run-status'].textContent = run.status === 'interrupted' ? 'Interrupted' : el['run-status'].textContent;
  updateControls();
}

async function discardRun({ quiet = false, keepChart = false } = {}) {
  try { await store.deleteRun(); await store.kvSet('run-checkpoint', null); } catch { /* storage gone */ }
  if (!keepChart) { run = null; renderMetrics(); drawChart(); }
  else run = null;
  el['resume-banner'].hidden = true;
  if (!quiet) { el['run-status'].textContent = 'Not started'; announce('The stopped run was discarded.'); }
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
