// The Annotate panel's record editor: the simple fields, the reasoning steps (tagged with the
// engine's dimensions, reordered, removed), and the engine's problems for the record. Every edit
// is saved at once (state.js: compare-and-set, merged with another tab's version when needed);
// a newer version from another tab is shown in place, the caret staying where the user types.
import { h, announce, sentence, nowIso, setPref } from '../../lib/ui.js';
import { state, el, current, scheduleSave } from './state.js';
import * as list from './list.js';
import * as annotators from './annotators.js';

let onChange = () => {};
let shownKey; // the record the editor shows (undefined: none drawn yet)

/** `changed()` runs after every edit (index.js passes the engine check's scheduler). */
export function init({ changed: after }) {
  onChange = after;
  for (const b of document.querySelectorAll('.add-step')) b.addEventListener('click', () => addStep(b.dataset.dimension));
  bindFields();
}

const times = (rec) => `Created ${rec.created || '–'} · updated ${rec.updated || '–'}`;

/** Opens the record `key` in the editor. */
export function select(key) {
  state.selected = key;
  setPref('ann-selected', key);
  list.markSelected(key);
  renderEditor();
}

function changed(row) {
  row.record.updated = nowIso();
  scheduleSave(row);
  list.updateListItem(row);
  el['f-times'].textContent = times(row.record);
  onChange();
  state.app.emit('annotations', state.rows);
}

// Each simple field: the input, how to read it into the record, how to show it.
const FIELDS = [
  ['f-id', (r, v) => { r.id = v; }, (r) => r.id],
  ['f-genre', (r, v) => { r.genre = v; }, (r) => r.genre],
  ['f-audience', (r, v) => { r.audience = v; }, (r) => r.audience],
  ['f-brief', (r, v) => { r.brief = v; }, (r) => r.brief],
  ['f-work', (r, v) => { r.work = v; }, (r) => r.work],
  ['f-score', (r, v) => { r.verdict.score = v.trim() === '' ? null : (Number.isFinite(Number(v)) ? Number(v) : v); }, (r) => r.verdict?.score ?? ''],
  ['f-summary', (r, v) => { r.verdict.summary = v; }, (r) => r.verdict?.summary],
  ['f-revision', (r, v) => { r.revision = v.trim() === '' ? null : v; }, (r) => r.revision ?? ''],
  ['f-expert', (r, v) => { r.provenance.expert = v; }, (r) => r.provenance?.expert],
  ['f-ke', (r, v) => { r.provenance.knowledge_engineer = v; }, (r) => r.provenance?.knowledge_engineer],
  ['f-session', (r, v) => { r.provenance.session = v; }, (r) => r.provenance?.session],
  ['f-date', (r, v) => { r.provenance.date = v; }, (r) => r.provenance?.date],
];
const shown = (v) => (v === null || v === undefined ? '' : String(v));

function bindFields() {
  for (const [id, write] of FIELDS) {
    el[id].addEventListener('input', () => {
      const row = current();
      if (!row) return;
      row.record.verdict ||= { score: null, summary: '' };
      row.record.provenance ||= { expert: '', knowledge_engineer: '', session: '', date: '' };
      write(row.record, el[id].value);
      if (id === 'f-expert' || id === 'f-ke' || id === 'f-session') setPref(`last-${id}`, el[id].value);
      changed(row);
    });
  }
}

const EMPTY_HINT = 'Pick a record on the left, start a new one, or load the bundled samples.';

export function renderEditor() {
  const row = current();
  // Blind mode: another annotator's record, verdict and reasoning included, stays closed.
  const blinded = row && state.blind && state.annotator && annotators.expertOf(row.record) !== state.annotator;
  shownKey = row && !blinded ? row.key : null;
  el['ann-form'].hidden = !row || blinded;
  el['ann-empty'].hidden = !!row && !blinded;
  el['ann-empty'].textContent = blinded ? `This record is ${annotators.expertOf(row.record)}’s: blind mode keeps it closed to ${state.annotator}.` : EMPTY_HINT;
  if (!row || blinded) { el['ann-saved'].textContent = ''; return; }
  renderRaters();
  for (const [id, , read] of FIELDS) el[id].value = shown(read(row.record));
  el['f-times'].textContent = times(row.record);
  renderSteps();
  renderProblems();
}

/** The key of the record the editor shows, or null. */
export const shownRecord = () => shownKey ?? null;

/**
 * After the list changed under the editor: redraws it when it must show another record, else
 * refreshes the record's fields in place.
 */
export function syncEditor() {
  if ((current()?.key ?? null) !== shownKey) renderEditor();
  else refreshFromRecord();
}

/** Sets a control's value, keeping the caret (and selection) where it was when it has focus. */
function setValue(input, value) {
  if (input.value === value) return;
  if (input !== document.activeElement) { input.value = value; return; }
  let sel = null;
  try {
    if (input.selectionStart !== null) sel = [input.selectionStart, input.selectionEnd, input.selectionDirection];
  } catch { /* a number or date input has no caret to keep */ }
  input.value = value;
  if (sel) {
    try { input.setSelectionRange(Math.min(sel[0], value.length), Math.min(sel[1], value.length), sel[2] || 'none'); } catch { /* as above */ }
  }
}

/**
 * Shows the open record's current version (another tab's edit, or a merge) without redrawing the
 * form: every field is updated in place, the focused one keeping its caret.
 */
/** Who else rated the open record's work (their verdicts hidden in blind mode). */
export function renderRaters() {
  const row = current();
  el['f-raters'].textContent = row ? annotators.describe(row.record) : '';
}

export function refreshFromRecord() {
  const row = current();
  if (!row || row.key !== shownKey) { renderEditor(); return; }
  renderRaters();
  for (const [id, , read] of FIELDS) setValue(el[id], shown(read(row.record)));
  el['f-times'].textContent = times(row.record);
  const steps = row.record.reasoning || [];
  const items = [...el['f-steps'].children];
  if (items.length === steps.length && items.every((li) => li.refs)) {
    steps.forEach((step, i) => {
      const { select, text } = items[i].refs;
      if (select.value !== step.dimension) { fillDimensions(select, step.dimension); select.className = `dim dim-${step.dimension}`; }
      setValue(text, step.text ?? '');
    });
  } else {
    // Steps came or went: redraw them, focus (and caret) staying on the same control.
    const active = document.activeElement;
    const li = active?.closest?.('#f-steps li');
    let focus;
    if (li?.refs) {
      const which = Object.keys(li.refs).find((k) => li.refs[k] === active);
      const caret = which === 'text' ? [active.selectionStart, active.selectionEnd] : null;
      focus = { index: Math.min(Number(li.dataset.index), steps.length - 1), which, caret };
    }
    renderSteps(focus);
  }
  renderProblems();
}

// A step's dimension picker offers the engine's dimensions (none until its schema is known),
// plus the step's own tag when that is not one of them, so an invalid tag stays visible.
function fillDimensions(select, dimension) {
  const dims = state.dimensions || [];
  select.replaceChildren(...dims.map((d) => h('option', { value: d, text: d, selected: d === dimension })));
  if (!dims.includes(dimension)) select.prepend(h('option', { value: dimension, text: String(dimension), selected: true }));
}

/** Refills the step pickers in place once the engine's dimensions are known (focus stays put). */
export function refreshDimensions() {
  const row = current();
  if (!row) return;
  for (const li of el['f-steps'].children) {
    const step = row.record.reasoning?.[Number(li.dataset.index)];
    if (step && li.refs) fillDimensions(li.refs.select, step.dimension);
  }
}

// The step controls find their record and step when used (not when drawn), because another
// tab's version or a merge may have replaced the record object meanwhile.
function stepAt(i) {
  const row = current();
  const steps = row?.record.reasoning;
  return row && steps && i < steps.length ? { row, steps, step: steps[i] } : null;
}

function renderSteps(focus) {
  const row = current();
  if (!row) return;
  const steps = row.record.reasoning || (row.record.reasoning = []);
  const items = steps.map((step, i) => {
    const n = i + 1;
    const select = h('select', { 'aria-label': `Step ${n} dimension`, class: `dim dim-${step.dimension}` });
    fillDimensions(select, step.dimension);
    select.addEventListener('change', () => {
      const at = stepAt(i);
      if (!at) return;
      at.step.dimension = select.value;
      select.className = `dim dim-${select.value}`;
      changed(at.row);
    });
    const text = h('textarea', { rows: 2, 'aria-label': `Step ${n} text` });
    text.value = step.text ?? '';
    text.addEventListener('input', () => {
      const at = stepAt(i);
      if (!at) return;
      at.step.text = text.value;
      changed(at.row);
    });
    const move = (to, which) => {
      const at = stepAt(i);
      if (!at || to < 0 || to >= at.steps.length) return;
      const [s] = at.steps.splice(i, 1);
      at.steps.splice(to, 0, s);
      changed(at.row);
      renderSteps({ index: to, which });
      announce(`Step moved to position ${to + 1}.`);
    };
    const up = h('button', { type: 'button', class: 'icon', 'aria-label': `Move step ${n} up`, title: 'Move up', disabled: i === 0, onclick: () => move(i - 1, 'up'), text: '↑' });
    const down = h('button', { type: 'button', class: 'icon', 'aria-label': `Move step ${n} down`, title: 'Move down', disabled: i === steps.length - 1, onclick: () => move(i + 1, 'down'), text: '↓' });
    const remove = h('button', {
      type: 'button', class: 'icon', 'aria-label': `Remove step ${n}`, title: 'Remove',
      onclick: () => {
        const at = stepAt(i);
        if (!at) return;
        at.steps.splice(i, 1);
        changed(at.row);
        renderSteps({ index: Math.min(i, at.steps.length - 1), which: 'text' });
        announce(`Step ${n} removed.`);
      },
      text: '✕',
    });
    const li = h('li', { class: 'step' }, h('span', { class: 'step-n', text: `${n}.` }), select, text, h('span', { class: 'step-buttons' }, up, down, remove));
    li.dataset.index = String(i);
    li.refs = { up, down, remove, text, select };
    return li;
  });
  el['f-steps'].replaceChildren(...items);
  if (focus && items[focus.index]) {
    const refs = items[focus.index].refs;
    const target = refs[focus.which];
    const to = target && !target.disabled ? target : refs.text;
    to.focus();
    if (to === refs.text && focus.caret) {
      try { to.setSelectionRange(Math.min(focus.caret[0], to.value.length), Math.min(focus.caret[1], to.value.length)); } catch { /* no caret */ }
    }
  }
}

function addStep(dimension) {
  const row = current();
  if (!row) return;
  row.record.reasoning ||= [];
  row.record.reasoning.push({ dimension, text: '' });
  changed(row);
  renderSteps({ index: row.record.reasoning.length - 1, which: 'text' });
}

export function renderProblems() {
  const row = current();
  const found = row ? state.problems.get(row.key) || [] : [];
  el['f-problems-box'].hidden = found.length === 0;
  el['f-problems'].replaceChildren(...found.map((p) => h('li', {}, p.field ? h('code', { text: p.field }) : null, p.field ? ': ' : '', sentence(p.message))));
  for (const [id] of FIELDS) el[id].removeAttribute('aria-invalid');
  const fieldToInput = { id: 'f-id', work: 'f-work', 'verdict.score': 'f-score', 'verdict.summary': 'f-summary', 'provenance.date': 'f-date', 'provenance.expert': 'f-expert' };
  for (const p of found) if (fieldToInput[p.field]) el[fieldToInput[p.field]].setAttribute('aria-invalid', 'true');
}
