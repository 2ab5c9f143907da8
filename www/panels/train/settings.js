// The Train panel's settings: the LoRA and run settings (their defaults from the engine's
// schema), read and checked from the form, and the records a run trains on.
import { announce, download, readNumber, showError, today } from '../../lib/ui.js';
import * as annotate from '../annotate/index.js';

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

/** The ids of every element of the settings form. */
export const SETTING_IDS = DEFAULTS.map(([id]) => id);

// The engine's defaults replace the placeholders in index.html. They go into each control's
// default (the value attribute, `defaultChecked`), which the browser shows only while the control
// is untouched: a value the user typed, or a draft restored by autosave, stays.
export function applyDefaults(el, schema) {
  for (const [id, pick] of DEFAULTS) {
    const v = pick(schema);
    if (Number.isFinite(v)) el[id].defaultValue = String(v);
  }
  const targets = schema.train_defaults.lora.targets;
  for (const c of document.querySelectorAll('.t-target')) c.defaultChecked = targets.includes(c.value);
}

/** The run's settings from the form: {config, checkpointEvery, problems (sentences)}. */
export function readConfig(el) {
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
export function trainingRows(el) {
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

/** Says how many records the run would train on and hold out. */
export function describeSet(el) {
  const { rows, nBad, included } = trainingRows(el);
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
}

/** Exports the chosen records as the TRL JSONL a run would train on. */
export async function exportTrl(app, el) {
  showError(el['train-error'], '');
  const { rows, included } = trainingRows(el);
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
