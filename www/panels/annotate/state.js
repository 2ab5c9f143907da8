// The Annotate panel's shared state: the records in list order, the one in the editor, the
// engine's problems per record and the engine's reasoning-step tags; and saving to IndexedDB
// with the "Saving… / Saved" indicator.
import { showError } from '../../lib/ui.js';

export const state = {
  app: null,
  rows: [],               // [{key, pos, record}] in list order
  selected: null,         // key of the record in the editor
  problems: new Map(),    // key → [{field, message}]
  dimensions: null,       // the reasoning-step tags in display order, from the engine's schema
};

/** The panel's elements by id, filled by index.js. */
export const el = {};

export const current = () => state.rows.find((r) => r.key === state.selected) || null;
export const rowsWithProblems = () => state.rows.filter((r) => state.problems.has(r.key));

let saving = 0;

function markSaving() {
  saving += 1;
  el['ann-saved'].dataset.state = 'saving';
  el['ann-saved'].textContent = 'Saving…';
}
function markSaved(ok, message) {
  saving -= 1;
  if (!ok) {
    el['ann-saved'].dataset.state = 'error';
    el['ann-saved'].textContent = 'Not saved!';
    showError(el['ann-list-error'], `Could not save to this browser’s storage (${message}); export your records as JSONL to keep them`);
    return;
  }
  if (saving === 0) {
    el['ann-saved'].dataset.state = 'saved';
    el['ann-saved'].textContent = `Saved ${new Date().toLocaleTimeString()}`;
  }
}

/** Runs a storage write, showing its progress and any failure. */
export async function persist(fn) {
  markSaving();
  try { await fn(); markSaved(true); } catch (e) { markSaved(false, e.message || String(e)); }
}

/** A message in the saved indicator's place. */
export function flash(message) {
  el['ann-saved'].dataset.state = 'saved';
  el['ann-saved'].textContent = message;
}
