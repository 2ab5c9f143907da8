// The Annotate panel's record list: search, one button per record (id, score, steps, problems),
// and the record count.
import { h, replaceAll } from '../../lib/ui.js';
import { state, el } from './state.js';
import * as annotators from './annotators.js';

let onSelect = () => {};
const listItems = new Map(); // key → li

/** `select(key)` opens a record in the editor when its button is clicked. */
export function init({ select }) {
  onSelect = select;
  el['ann-search'].addEventListener('input', renderList);
}

function matches(r, q) {
  if (!q) return true;
  const rec = r.record;
  const hay = [rec.id, rec.work, rec.brief, rec.audience, rec.genre, rec.verdict?.summary, rec.revision,
    rec.provenance?.expert, rec.provenance?.knowledge_engineer, rec.provenance?.session, ...(rec.reasoning || []).map((s) => s.text)]
    .filter((x) => typeof x === 'string').join('\n').toLowerCase();
  return q.split(/\s+/).every((w) => hay.includes(w));
}

export function renderList() {
  const q = el['ann-search'].value.trim().toLowerCase();
  // A redraw (records came or went, maybe from another tab) keeps the focus on the same record.
  const focused = [...listItems].find(([, li]) => li.contains(document.activeElement))?.[0];
  listItems.clear();
  const items = [];
  for (const r of state.rows) {
    if (!annotators.listed(r) || !matches(r, q)) continue;
    const li = h('li', {});
    listItems.set(r.key, li);
    fillListItem(li, r);
    items.push(li);
  }
  if (!items.length) items.push(h('li', { class: 'hint empty', text: state.rows.length ? (state.annotator ? `No record by ${state.annotator} matches.` : 'No record matches the search.') : 'No records yet.' }));
  replaceAll(el['ann-list'], items);
  if (focused) listItems.get(focused)?.firstChild?.focus();
  renderCount();
}

function fillListItem(li, r) {
  const rec = r.record;
  const bad = state.problems.get(r.key);
  const snippet = (rec.work || '').replace(/\s+/g, ' ').slice(0, 80);
  const btn = h('button', { type: 'button', class: 'ann-item', 'aria-current': r.key === state.selected ? 'true' : null, onclick: () => onSelect(r.key) },
    h('span', { class: 'ann-item-head' },
      h('span', { class: 'ann-item-id', text: rec.id || '(no id)' }),
      h('span', { class: 'ann-item-meta', text: `${Number.isInteger(rec.verdict?.score) ? `${rec.verdict.score}/10 · ` : ''}${(rec.reasoning || []).length} steps` }),
      bad ? h('span', { class: 'ann-item-bad', title: `${bad.length} problem${bad.length === 1 ? '' : 's'} to fix`, text: `⚠ ${bad.length}` }) : null),
    h('span', { class: 'ann-item-by' },
      h('span', { class: 'ann-item-expert', text: annotators.expertOf(rec) }),
      annotators.ratersLabel(rec) ? h('span', { class: 'ann-item-raters', title: annotators.describe(rec), text: ` · ${annotators.ratersLabel(rec)}` }) : null),
    h('span', { class: 'ann-item-snippet', text: snippet || '(no work yet)' }));
  li.replaceChildren(btn);
}

export function updateListItem(row) {
  const li = listItems.get(row.key);
  if (li) fillListItem(li, row);
}

/** Moves the focus to `key`'s button; false when it is not in the list. */
export function focusItem(key) {
  const btn = listItems.get(key)?.firstChild;
  if (!btn) return false;
  btn.focus();
  return true;
}

/** Marks `key`'s button as the current record. */
export function markSelected(key) {
  for (const [k, li] of listItems) li.firstChild?.setAttribute?.('aria-current', k === key ? 'true' : 'false');
}

export function renderCount() {
  const n = state.rows.length;
  const bad = state.problems.size;
  el['ann-count'].textContent = `${n} record${n === 1 ? '' : 's'}${bad ? ` · ${bad} to fix` : ''}`;
}
