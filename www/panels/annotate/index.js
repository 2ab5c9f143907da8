// Annotate panel: list, search and edit annotation records (docs/annotation-format.md). Every
// change is written to IndexedDB at once. Validation, coverage, JSONL and the record format
// itself (dimensions, schema version) all come from the engine (the data worker); this panel
// only edits objects and draws them. Its parts: list.js (the record list), editor.js (the record
// editor), coverage.js (the engine's check and the coverage chart), import.js (new, import,
// export, delete, undo), sharing state.js.
import { $, showError, getPref } from '../../lib/ui.js';
import * as store from '../../lib/store.js';
import { state, el, rowsWithProblems } from './state.js';
import * as list from './list.js';
import * as editor from './editor.js';
import * as coverage from './coverage.js';
import * as recordOps from './import.js';

export function init(a) {
  state.app = a;
  for (const id of ['ann-count', 'ann-new', 'ann-samples', 'ann-import', 'ann-export', 'ann-delete-all', 'ann-undo', 'ann-search',
    'ann-list', 'ann-list-error', 'ann-import-report', 'ann-import-summary', 'ann-import-errors', 'ann-import-valid',
    'ann-import-dismiss', 'ann-saved', 'ann-empty', 'ann-form', 'f-id', 'f-genre', 'f-audience', 'f-brief', 'f-work', 'f-steps',
    'f-score', 'f-summary', 'f-revision', 'f-expert', 'f-ke', 'f-session', 'f-date', 'f-times', 'f-problems-box', 'f-problems',
    'ann-delete', 'cov-chart', 'cov-list', 'cov-warnings']) el[id] = $(id);

  coverage.init();
  list.init({ select: editor.select });
  editor.init({ changed: coverage.scheduleStatus });
  recordOps.init();

  a.on('tab', (t) => { if (t === 'annotate') requestAnimationFrame(coverage.refreshStatus); });
  // The step pickers offer the engine's dimensions once known. A failure shows where the
  // records are checked (coverage.js), which needs the engine too.
  a.schema.then((s) => { state.dimensions = s.dimensions; editor.refreshDimensions(); }, () => {});
  reload();
}

// ---- public: other panels read the records --------------------------------------------------

export const records = () => state.rows.map((r) => r.record);
export const problemKeys = () => new Set(state.problems.keys());
export { rowsWithProblems };
export const allRows = () => state.rows;

// ---- storage ------------------------------------------------------------------------------------

async function reload() {
  try {
    state.rows = await store.allAnnotations();
  } catch (e) {
    showError(el['ann-list-error'], `This browser’s storage is unavailable, so annotations cannot be kept: ${e.message}`);
    state.rows = [];
  }
  const saved = getPref('ann-selected');
  state.selected = state.rows.some((r) => r.key === saved) ? saved : state.rows[0]?.key ?? null;
  list.renderList();
  editor.renderEditor();
  coverage.refreshStatus();
}
