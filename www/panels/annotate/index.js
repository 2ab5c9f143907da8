// Annotate panel: list, search and edit annotation records (docs/annotation-format.md). Every
// change is written to IndexedDB at once, and what another tab of the app changes shows here
// within moments (store.onChange), so that two tabs never undo each other's work. Validation,
// coverage, JSONL and the record format itself (dimensions, schema version) all come from the
// engine (the data worker); this panel only edits objects and draws them. Its parts: list.js (the
// record list), editor.js (the record editor), coverage.js (the engine's check and the coverage
// chart), import.js (new, import, export, delete, undo, the trash), sharing state.js (which also
// saves edits and merges them with another tab's).
import { $, showError, getPref } from '../../lib/ui.js';
import * as store from '../../lib/store.js';
import { state, el, hooks, rowsWithProblems, adoptRows, dropRows, clone, isSaving, flushSaves, trashedEdits, notice, serial, hasUnsaved, hasLocalEdits, mergeFromElsewhere, scheduleSave, keepUnsaved, adoptOrphanedEdits } from './state.js';
import * as list from './list.js';
import * as editor from './editor.js';
import * as coverage from './coverage.js';
import * as recordOps from './import.js';
import * as annotators from './annotators.js';

export function init(a) {
  state.app = a;
  for (const id of ['ann-count', 'ann-new', 'ann-samples', 'ann-samples-second', 'ann-import', 'ann-export', 'ann-delete-all', 'ann-undo', 'ann-search',
    'ann-list', 'ann-list-error', 'ann-import-report', 'ann-import-summary', 'ann-import-errors', 'ann-import-valid',
    'ann-import-dismiss', 'ann-saved', 'ann-empty', 'ann-form', 'f-id', 'f-genre', 'f-audience', 'f-brief', 'f-work', 'f-steps',
    'f-score', 'f-summary', 'f-revision', 'f-expert', 'f-ke', 'f-session', 'f-date', 'f-times', 'f-problems-box', 'f-problems',
    'ann-delete', 'cov-chart', 'cov-list', 'cov-warnings', 'ann-notices', 'ann-trash', 'ann-trash-count', 'ann-trash-list',
    'ann-trash-empty', 'ann-export-all', 'ann-annotator', 'ann-blind', 'ann-blind-hint', 'f-raters']) el[id] = $(id);

  hooks.listChanged = () => {
    // The open record went (deleted in another tab): the keys typed next must not land in
    // another record, so the focus leaves the form for the list.
    const typing = el['ann-form'].contains(document.activeElement);
    const shown = editor.shownRecord();
    list.renderList();
    editor.syncEditor();
    if (typing && editor.shownRecord() !== shown && !list.focusItem(state.selected)) el['ann-new'].focus();
    coverage.scheduleStatus();
    a.emit('annotations', state.rows);
  };
  hooks.recordReplaced = (row) => {
    list.updateListItem(row);
    if (row.key === state.selected) editor.refreshFromRecord();
    coverage.scheduleStatus();
    a.emit('annotations', state.rows);
  };
  hooks.trashChanged = () => recordOps.refreshTrash();

  coverage.init();
  annotators.init({ changed: () => { list.renderList(); editor.renderEditor(); } });
  list.init({ select: editor.select });
  editor.init({ changed: coverage.scheduleStatus });
  recordOps.init();

  a.on('tab', (t) => { if (t === 'annotate') requestAnimationFrame(coverage.refreshStatus); });
  // The step pickers offer the engine's dimensions once known. A failure shows where the
  // records are checked (coverage.js), which needs the engine too.
  a.schema.then((s) => { state.dimensions = s.dimensions; editor.refreshDimensions(); }, () => {});
  // Text that is not stored yet (a save under way, or one that failed) is lost with the tab.
  addEventListener('beforeunload', (e) => { if (hasUnsaved()) { e.preventDefault(); e.returnValue = ''; } });
  // A hidden tab may be frozen, then discarded: what is not stored yet is kept at once (state.js).
  document.addEventListener('visibilitychange', () => { if (document.visibilityState === 'hidden') keepUnsaved(); });
  document.addEventListener('freeze', keepUnsaved);
  addEventListener('pagehide', keepUnsaved);
  // A frozen tab may have missed other tabs' news (BroadcastChannel): read everything again.
  document.addEventListener('resume', () => { serial(() => applyChanges()).catch((e) => console.warn('annotations sync', e)); });
  store.onStorageNotice((sentence) => notice(sentence, 'warn'));
  store.onChange((change) => {
    if (change.store === 'annotations') serial(() => applyChanges(change.keys)).catch((e) => console.warn('annotations sync', e));
    else if (change.store === 'trash') recordOps.refreshTrash();
  });
  serial(reload);
}

// ---- public: other panels read the records --------------------------------------------------

export const records = () => state.rows.map((r) => r.record);
export const problemKeys = () => new Set(state.problems.keys());
export { rowsWithProblems };
export const allRows = () => state.rows;

/** Imports records from a study as a JSONL import would; resolves to what was done, in words. */
export async function importRecords(records, source) {
  if (!records.length) return `${source} holds no records.`;
  const msg = await serial(() => recordOps.addRecords(records, source));
  if (msg === null) throw new Error(`the records of ${source} could not be kept in this browser`);
  return msg;
}

// ---- storage ------------------------------------------------------------------------------------

async function reload() {
  try {
    // Added to what is already in the list: records made here while the database opened stay.
    adoptRows(await store.allAnnotations());
  } catch (e) {
    showError(el['ann-list-error'], `This browser’s storage is unavailable, so annotations cannot be kept: ${e.message}`);
  }
  // Edits a tab could not store before it went (discarded while frozen, closed): stored from here.
  await adoptOrphanedEdits().catch((e) => console.warn('unsaved edits of a closed tab', e));
  const saved = getPref('ann-selected');
  state.selected = state.rows.some((r) => r.key === saved) ? saved : state.rows[0]?.key ?? null;
  list.renderList();
  editor.renderEditor();
  coverage.refreshStatus();
}

/**
 * Another tab changed the rows `keys` (all of them when not said): reads them again and updates
 * the list. A deleted row leaves the list; a newer version replaces this tab's, unless this tab
 * is saving an edit of it (that save then merges the two); the open record is refreshed in
 * place, the caret staying where the user types.
 */
async function applyChanges(keys) {
  let fresh;
  if (keys?.length) {
    const rows = await Promise.all(keys.map((k) => store.getAnnotation(k)));
    fresh = new Map(keys.map((k, i) => [k, rows[i]]));
  } else {
    const rows = await store.allAnnotations();
    fresh = new Map(rows.map((r) => [r.key, r]));
    for (const r of state.rows) if (!fresh.has(r.key)) fresh.set(r.key, undefined);
  }
  const added = [];
  const gone = [];
  const replaced = [];
  let moved = false;
  const merges = [];
  for (const [key, row] of fresh) {
    const mine = state.rows.find((r) => r.key === key);
    if (!mine) { if (row) added.push(row); continue; }
    if (!mine.rev) continue; // never stored (its first save failed): no other tab has it
    if (!row) {
      // Deleted there. An edit of it that is not stored (being saved, or a save that failed)
      // goes to the trash by that save, which finds it deleted; either way it leaves the list.
      if (!isSaving(key) && hasLocalEdits(mine)) scheduleSave(mine);
      else gone.push(mine);
      continue;
    }
    if (row.rev > mine.rev && !isSaving(key) && hasLocalEdits(mine)) {
      // This tab's edit is not stored (its save failed): merged against the version it was
      // based on, never overwritten.
      merges.push([mine, row]);
      continue;
    }
    if (row.rev > mine.rev && !isSaving(key)) {
      mine.record = row.record;
      mine.rev = row.rev;
      mine.updated = row.updated;
      if (mine.pos !== row.pos) { mine.pos = row.pos; moved = true; }
      state.bases.set(key, clone(row.record));
      replaced.push(mine);
    }
  }
  for (const [mine, row] of merges) await mergeFromElsewhere(mine, row);
  const openGone = gone.find((r) => r.key === state.selected);
  if (openGone) {
    const goneKeys = new Set(gone.map((r) => r.key));
    const next = state.rows.find((r) => r.pos > openGone.pos && !goneKeys.has(r.key)) || state.rows.filter((r) => !goneKeys.has(r.key)).pop();
    state.selected = next?.key ?? null;
  }
  dropRows(gone.map((r) => r.key));
  adoptRows(added); // (sorts the list by position too)
  if (added.length || gone.length || moved) hooks.listChanged();
  else for (const r of replaced) hooks.recordReplaced(r);
  if (openGone) {
    const say = () => notice(`${openGone.record.id || 'The record you had open'} was deleted in another tab. The Trash can restore it.`);
    // An edit of it being saved here says itself what became of it (state.js).
    if (!isSaving(openGone.key)) say();
    else flushSaves([openGone.key]).then(() => { if (!trashedEdits.has(openGone.key)) say(); });
  }
}
