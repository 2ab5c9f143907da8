// The Annotate panel's record operations: new record, JSONL import (with a line-numbered report
// of bad lines), the bundled samples, JSONL export, delete (to the trash), undo, and the trash
// itself (kept in IndexedDB: it survives reloads, and every tab sees the same one).
import { h, announce, showError, sentence, download, nowIso, today, getPref, setPref, fileBytes, mb, fmt1, fmtInt, replaceAll } from '../../lib/ui.js';
import * as store from '../../lib/store.js';
import { state, el, persist, flash, rowsWithProblems, adoptRows, dropRows, clone, canon, flushSaves, serial, keepTrying } from './state.js';
import * as list from './list.js';
import * as editor from './editor.js';
import { scheduleStatus } from './coverage.js';

const undo = [];             // deletions this page made, newest last: [{batch, count, id}]
let pendingImport = null;    // {name, records} waiting for "import the valid records"

/** The largest file read as annotations: anything bigger is refused before it is read. */
export const MAX_IMPORT_BYTES = 64 * 1024 * 1024;

export function init() {
  el['ann-new'].addEventListener('click', newRecord);
  el['ann-samples'].addEventListener('click', loadSamples);
  el['ann-samples-second'].addEventListener('click', loadSecondAnnotator);
  el['ann-import'].addEventListener('change', () => {
    const f = el['ann-import'].files?.[0];
    el['ann-import'].value = '';
    if (f) importFile(f);
  });
  el['ann-export'].addEventListener('click', exportJsonl);
  el['ann-export-all'].addEventListener('click', exportEverything);
  el['ann-delete-all'].addEventListener('click', deleteAll);
  el['ann-undo'].addEventListener('click', undoDelete);
  el['ann-import-valid'].addEventListener('click', () => {
    if (!pendingImport) return;
    const { name, records } = pendingImport;
    hideReport();
    addRecords(records, name);
  });
  el['ann-import-dismiss'].addEventListener('click', hideReport);
  el['ann-delete'].addEventListener('click', () => {
    const row = state.rows.find((r) => r.key === state.selected);
    if (row) deleteKeys([row.key], `Deleted ${row.record.id || 'a record without id'}`);
  });
  el['ann-trash-empty'].addEventListener('click', emptyTrash);
  refreshTrash();
}

/** Redraws the list and the editor after records came or went, and checks them again. */
function redraw() {
  list.renderList();
  editor.renderEditor();
  scheduleStatus();
  state.app.emit('annotations', state.rows);
}

// A loop, not Math.max(...rows): a spread of 100k+ positions exceeds the engine's argument limit.
const nextPos = () => (state.rows.length ? Math.floor(state.rows.reduce((m, r) => Math.max(m, r.pos), -Infinity)) + 1 : 0);
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function uniqueId(base, taken) {
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

/**
 * Puts new rows in the list at once (rev 0: not stored yet) and stores them in one transaction;
 * resolves to whether that worked. Were it to fail, they stay in the list, and an edit of one
 * stores it (a save at rev 0 creates the row).
 */
async function storeNewRows(rows) {
  for (const r of rows) r.rev = 0;
  adoptRows(rows);
  const ok = await persist(async () => {
    const written = await store.addAnnotations(rows.map((r) => ({ key: r.key, pos: r.pos, record: clone(r.record) })));
    written.forEach((w, i) => { if (!rows[i].rev) { rows[i].rev = w.rev; rows[i].updated = w.updated; } });
  });
  if (!ok) keepTrying(rows);
  return ok;
}

async function newRecord() {
  let version;
  try {
    version = (await state.app.schema).schema_version;
  } catch (e) {
    showError(el['ann-list-error'], `Could not create a record: the engine’s record format is unknown (${e.message})`);
    return;
  }
  const { rows } = state;
  const taken = new Set(rows.map((r) => r.record.id));
  let n = rows.length + 1;
  while (taken.has(`ann-${String(n).padStart(3, '0')}`)) n++;
  const stamp = nowIso();
  const record = {
    schema: version, id: `ann-${String(n).padStart(3, '0')}`, work: '', brief: '', audience: '', genre: '',
    reasoning: [], verdict: { score: null, summary: '' }, revision: null,
    provenance: { expert: getPref('last-f-expert', ''), knowledge_engineer: getPref('last-f-ke', ''), session: getPref('last-f-session', ''), date: today() },
    created: stamp, updated: stamp,
  };
  const row = { key: store.newKey(), pos: nextPos(), record };
  const saved = storeNewRows([row]);
  el['ann-search'].value = '';
  state.selected = row.key;
  setPref('ann-selected', row.key);
  redraw();
  el['f-work'].focus();
  announce(`New record ${record.id}.`);
  await saved;
}

/**
 * Adds records: identical ones are skipped, one whose id is taken is kept under a new id.
 * Resolves to what was done, in words, or null when storing failed (and was said).
 */
export async function addRecords(records, source) {
  const byId = new Map(state.rows.map((r) => [r.record.id, r]));
  const taken = new Set(byId.keys());
  let pos = nextPos();
  const added = [];
  let same = 0;
  const renamed = [];
  for (const rec of records) {
    const existing = byId.get(rec.id);
    if (existing && canon(existing.record) === canon(rec)) { same++; continue; }
    const record = { ...rec };
    if (taken.has(record.id)) {
      const id = uniqueId(`${record.id}-imported`, taken);
      renamed.push(`${record.id} → ${id}`);
      record.id = id;
    }
    taken.add(record.id);
    added.push({ key: store.newKey(), pos: pos++, record });
  }
  const ok = added.length ? await storeNewRows(added) : true;
  if (added.length && !state.rows.some((r) => r.key === state.selected)) state.selected = added[0].key;
  redraw();
  if (!ok) return null; // persist() said why
  const parts = [`Imported ${plural(added.length, 'record')} from ${source}`];
  if (same) parts.push(`${same} already here unchanged`);
  if (renamed.length) parts.push(`${renamed.length} renamed because their id was taken (${renamed.slice(0, 5).join(', ')}${renamed.length > 5 ? ', …' : ''})`);
  const msg = `${parts.join('; ')}.`;
  flash(msg);
  announce(msg);
  return msg;
}

const size = (bytes) => (bytes >= 1e9 ? `${fmt1.format(bytes / 1e9)} GB` : mb(bytes));

/** Why a chosen file could not be read, in words. */
function readProblem(e) {
  if (e?.name === 'NotReadableError') return 'the browser could not read it (it may have been moved, changed or deleted since it was chosen, or be unreadable)';
  if (e?.name === 'NotFoundError') return 'it is no longer there';
  if (e?.name === 'SecurityError') return 'the browser does not allow reading it';
  return e?.message || String(e);
}

/** A chosen file: refused at once when too large, else read and imported; every failure said. */
async function importFile(file) {
  showError(el['ann-list-error'], '');
  hideReport();
  if (file.size > MAX_IMPORT_BYTES) {
    showError(el['ann-list-error'], `The file ${file.name} is ${size(file.size)}: too large to be an annotation file (the limit is ${MAX_IMPORT_BYTES / 2 ** 20} MiB), so it was not read. Nothing was imported, and your records are unchanged`);
    return;
  }
  let bytes;
  try {
    bytes = await fileBytes(file);
  } catch (e) {
    showError(el['ann-list-error'], `Could not read ${file.name}: ${readProblem(e)}. Nothing was imported`);
    return;
  }
  await importBytes(file.name, bytes);
}

async function importBytes(name, bytes) {
  showError(el['ann-list-error'], '');
  hideReport();
  let report;
  try {
    report = await state.app.data.call('parseAnnotations', { bytes });
  } catch (e) {
    showError(el['ann-list-error'], `Could not read ${name}: ${e.message}`);
    return;
  }
  const nErr = report.error_count ?? report.errors.length;
  if (nErr === 0) {
    if (!report.records.length) { showError(el['ann-list-error'], `${name} holds no records`); return; }
    await addRecords(report.records, name);
    return;
  }
  // Bad lines: show every one, import nothing unless the user asks for the valid records.
  pendingImport = { name, records: report.records };
  // The engine lists the first 1,000 problems and counts them all.
  const nLines = report.error_lines ?? new Set(report.errors.map((e) => e.line)).size;
  const stored = state.rows.length;
  const listed = report.errors.length < nErr ? ` The first ${fmtInt.format(report.errors.length)} of ${fmtInt.format(nErr)} problems are listed.` : '';
  el['ann-import-summary'].textContent = `${name}: ${fmtInt.format(nErr)} problem${nErr === 1 ? '' : 's'} on ${fmtInt.format(nLines)} line${nLines === 1 ? '' : 's'}. Nothing was imported, and your ${stored} stored record${stored === 1 ? ' is' : 's are'} unchanged.${listed}`;
  replaceAll(el['ann-import-errors'], report.errors.map((e) => h('li', {},
    h('span', { class: 'err-line', text: `line ${e.line}` }), ': ', e.field ? h('code', { text: e.field }) : null, e.field ? ': ' : '', sentence(e.message))));
  const n = report.records.length;
  el['ann-import-valid'].hidden = n === 0;
  el['ann-import-valid'].textContent = `Import the ${n} valid record${n === 1 ? '' : 's'}`;
  el['ann-import-report'].hidden = false;
  el['ann-import-report'].scrollIntoView({ block: 'nearest' });
  announce(`Import refused: ${nErr} problems. Nothing was imported.`);
}

function hideReport() {
  pendingImport = null;
  el['ann-import-report'].hidden = true;
}

async function loadSamples() {
  await loadSample('annotations.jsonl', 'the bundled samples');
}

/** A second illustrative annotator's records of twelve of the same works, so that the agreement
 * among annotators (Calibrate) has something to show. */
async function loadSecondAnnotator() {
  await loadSample('annotations-second-annotator.jsonl', 'the second annotator’s samples');
}

async function loadSample(file, name) {
  showError(el['ann-list-error'], '');
  try {
    const res = await fetch(new URL(`../../data/samples/${file}`, import.meta.url));
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    await importBytes(name, new Uint8Array(await res.arrayBuffer()));
  } catch (e) {
    showError(el['ann-list-error'], `Could not load ${name}: ${e.message}`);
  }
}

async function exportJsonl() {
  showError(el['ann-list-error'], '');
  const { rows } = state;
  if (!rows.length) { showError(el['ann-list-error'], 'There are no records to export'); return; }
  const bad = rowsWithProblems();
  if (bad.length) {
    showError(el['ann-list-error'], `${bad.length} record${bad.length === 1 ? ' has' : 's have'} problems (${bad.slice(0, 5).map((r) => r.record.id || '(no id)').join(', ')}${bad.length > 5 ? ', …' : ''}): fix them first, so the file can be read back`);
    return;
  }
  try {
    const jsonl = await state.app.data.call('toJsonl', { records: rows.map((r) => r.record) });
    download(`annotations-${today()}.jsonl`, jsonl, 'application/jsonl');
    announce(`Exported ${rows.length} records.`);
  } catch (e) {
    showError(el['ann-list-error'], `Could not export: ${e.message}`);
  }
}

/**
 * Every record in the list, finished or not, one JSON object a line, exactly as held in this
 * page (what storage has not taken too): a backup, not a training set. It needs neither the
 * engine nor the database, so it works when saving does not.
 */
function exportEverything() {
  const { rows } = state;
  if (!rows.length) { showError(el['ann-list-error'], 'There are no records to export'); return; }
  const lines = rows.map((r) => JSON.stringify(r.record));
  download(`annotations-backup-${today()}.jsonl`, `${lines.join('\n')}\n`, 'application/jsonl');
  announce(`Exported all ${plural(rows.length, 'record')} as they are.`);
}

// ---- delete, undo and the trash -----------------------------------------------------------------

/** Moves the rows `keys` to the trash as one batch named `label` (restorable, also after a reload). */
function deleteKeys(keys, label) {
  return serial(async () => {
    showError(el['ann-list-error'], '');
    await flushSaves(keys); // what was typed is in the database, so it goes to the trash too
    const gone = state.rows.filter((r) => keys.includes(r.key));
    if (!gone.length) return;
    const goneKeys = gone.map((r) => r.key);
    const selected = state.selected;
    if (goneKeys.includes(selected)) {
      const next = state.rows.find((r) => r.pos > gone[0].pos && !goneKeys.includes(r.key))
        || state.rows.filter((r) => !goneKeys.includes(r.key)).pop();
      state.selected = next?.key ?? null;
    }
    dropRows(goneKeys); // out of the list and the editor before the first await: nothing more is typed into them
    redraw();
    let batch;
    const ok = await persist(async () => { batch = await store.trashAnnotations(goneKeys, label); });
    if (!ok) {
      adoptRows(gone);
      state.selected = selected;
      redraw();
      return;
    }
    undo.push({ batch, count: gone.length, id: gone[0].record.id });
    renderUndo();
    refreshTrash();
    announce(gone.length === 1 ? `Deleted ${gone[0].record.id}. It is in the Trash; Undo restores it.` : `Deleted ${gone.length} records. They are in the Trash; Undo restores them.`);
  });
}

function deleteAll() {
  const n = state.rows.length;
  if (!n) return;
  // eslint-disable-next-line no-alert
  if (!confirm(`Delete all ${n} records? They move to the Trash, where you can restore them (also after a reload) until you empty it.`)) return;
  deleteKeys(state.rows.map((r) => r.key), `Deleted all ${plural(n, 'record')}`);
}

function undoDelete() {
  const last = undo[undo.length - 1];
  if (last) restoreBatch(last.batch);
}

/** Puts a trashed batch back, each record at its old position. */
function restoreBatch(batch) {
  return serial(async () => {
    showError(el['ann-list-error'], '');
    let restored = [];
    const ok = await persist(async () => { restored = await store.restoreTrashBatch(batch); });
    if (!ok) return;
    const i = undo.findIndex((u) => u.batch === batch);
    if (i >= 0) undo.splice(i, 1);
    renderUndo();
    refreshTrash();
    if (!restored.length) {
      showError(el['ann-list-error'], 'Nothing to restore: those records are no longer in the trash (restored, or the trash emptied, maybe in another tab)');
      return;
    }
    const ids = new Set(state.rows.map((r) => r.record.id));
    adoptRows(restored);
    const first = restored.reduce((a, b) => (b.pos < a.pos ? b : a));
    state.selected = first.key;
    setPref('ann-selected', first.key);
    redraw();
    const clash = restored.filter((r) => ids.has(r.record.id)).length;
    const msg = `Restored ${plural(restored.length, 'record')}.${clash ? ` ${clash} of them share an id with another record; rename them.` : ''}`;
    flash(msg);
    announce(msg);
  });
}

function renderUndo() {
  const last = undo[undo.length - 1];
  el['ann-undo'].hidden = !last;
  if (last) el['ann-undo'].textContent = last.count === 1 ? `Undo delete of ${last.id || 'record'}` : `Undo delete of ${last.count} records`;
}

const when = (t) => new Date(t).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
let trashSeq = 0;

/** Redraws the trash from the database (it may have changed in another tab). */
export async function refreshTrash() {
  const mine = ++trashSeq;
  let batches;
  try {
    batches = await store.trashBatches();
  } catch (e) {
    if (mine === trashSeq) el['ann-trash-count'].textContent = '(unavailable)';
    return;
  }
  if (mine !== trashSeq) return; // a newer look is on its way
  const total = batches.reduce((n, b) => n + b.count, 0);
  el['ann-trash-count'].textContent = `(${total ? plural(total, 'record') : 'empty'})`;
  el['ann-trash-list'].replaceChildren(...(batches.length ? batches.map((b) => {
    const label = b.label || 'Deleted records';
    return h('li', { class: 'trash-batch' },
      h('span', { class: 'trash-what' },
        h('span', { class: 'trash-label', text: label }),
        h('span', { class: 'trash-meta' }, `${plural(b.count, 'record')} · `, h('time', { datetime: new Date(b.deleted_at).toISOString(), text: when(b.deleted_at) }))),
      h('button', { type: 'button', class: 'small', 'aria-label': `Restore: ${label}, ${plural(b.count, 'record')}`, onclick: () => restoreBatch(b.batch), text: 'Restore' }));
  }) : [h('li', { class: 'hint empty', text: 'The trash is empty.' })]));
  el['ann-trash-empty'].disabled = !batches.length;
  // Undo offers only deletions still in the trash.
  const present = new Set(batches.map((b) => b.batch));
  for (let i = undo.length - 1; i >= 0; i--) if (!present.has(undo[i].batch)) undo.splice(i, 1);
  renderUndo();
}

async function emptyTrash() {
  let total = 0;
  try { total = (await store.trashBatches()).reduce((n, b) => n + b.count, 0); } catch { /* said below */ }
  if (!total) { refreshTrash(); return; }
  // eslint-disable-next-line no-alert
  if (!confirm(`Empty the trash? The ${plural(total, 'deleted record')} in it will be gone for good, in every tab of this browser.`)) return;
  try {
    await store.emptyTrash();
  } catch (e) {
    showError(el['ann-list-error'], `Could not empty the trash: ${e.message}`);
    return;
  }
  undo.length = 0;
  renderUndo();
  await refreshTrash();
  announce('The trash is empty.');
}
