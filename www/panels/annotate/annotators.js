// The Annotate panel's annotators: which records are of the same work (the engine's grouping,
// `studyAgreement` with no resampling), who rated each work, a filter by annotator, and a blind
// mode in which the chosen annotator sees the works the others rated but not their verdicts.
import { h, getPref, setPref } from '../../lib/ui.js';
import { state, el } from './state.js';

/** The annotator of a record, as the engine names it. */
export const expertOf = (record) => (record?.provenance?.expert || '').trim() || '(unnamed)';

/** record id → [{rater, score, id}] of the other annotators' records of the same work. */
let others = new Map();
let raters = [];
let onChange = () => {};

export function init({ changed }) {
  onChange = changed;
  state.annotator = getPref('ann-annotator', '');
  state.blind = getPref('ann-blind', false);
  el['ann-annotator'].addEventListener('change', () => {
    state.annotator = el['ann-annotator'].value;
    setPref('ann-annotator', state.annotator);
    renderControls();
    onChange();
  });
  el['ann-blind'].addEventListener('change', () => {
    state.blind = el['ann-blind'].checked;
    setPref('ann-blind', state.blind);
    renderControls();
    onChange();
  });
  renderControls();
}

/** Takes the engine's table of works (`agreement.table`) for `records` (the valid ones). */
export function setTable(table) {
  raters = table.raters;
  const byId = new Map(state.rows.map((r) => [r.record.id, r.record]));
  others = new Map();
  for (const item of table.items) {
    const members = item.records.map((id) => ({ id, rater: expertOf(byId.get(id)), score: byId.get(id)?.verdict?.score ?? null }));
    for (const m of members) others.set(m.id, members.filter((x) => x.rater !== m.rater));
  }
  renderControls();
}

function renderControls() {
  const sel = el['ann-annotator'];
  const keep = state.annotator;
  const names = [...new Set([...raters, ...(keep ? [keep] : [])])];
  sel.replaceChildren(h('option', { value: '', text: 'All annotators' }), ...names.map((n) => h('option', { value: n, text: n })));
  sel.value = keep;
  el['ann-blind'].checked = state.blind;
  el['ann-blind'].disabled = !keep;
  el['ann-blind-hint'].textContent = keep
    ? (state.blind ? `Blind: only ${keep}’s records are listed, and the other annotators’ verdicts are hidden.` : '')
    : 'Pick an annotator to rate blind.';
}

/** Whether a row is listed under the current filter. */
export function listed(row) {
  return !state.annotator || expertOf(row.record) === state.annotator;
}

/** The other annotators of a record's work, as a short text for the list. */
export function ratersLabel(record) {
  const o = others.get(record.id) || [];
  return o.length ? `${o.length + 1} annotators` : '';
}

/** The editor's line on who else rated this work (without their verdicts when blind). */
export function describe(record) {
  const o = others.get(record?.id) || [];
  if (!o.length) return 'No other annotator has rated this work.';
  if (state.blind) return `Also rated by ${o.length} other annotator${o.length === 1 ? '' : 's'}; their verdicts are hidden (blind mode).`;
  return `Also rated by ${o.map((x) => `${x.rater}: ${x.score ?? '–'}/10 (${x.id})`).join('; ')}.`;
}

