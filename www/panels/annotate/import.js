// The Annotate panel's record operations: new record, JSONL import (with a line-numbered report
// of bad lines), the bundled samples, JSONL export, delete and undo.
import { h, announce, showError, sentence, download, nowIso, today, getPref, setPref, fileBytes } from '../../lib/ui.js';
import * as store from '../../lib/store.js';
import { state, el, persist, flash, rowsWithProblems } from './state.js';
import * as list from './list.js';
import * as editor from './editor.js';
import { scheduleStatus } from './coverage.js';

const undo = [];             // batches of deleted rows, newest last
let pendingImport = null;    // {name, records} waiting for "import the valid records"

export function init() {
  el['ann-new'].addEventListener('click', newRecord);
  el['ann-samples'].addEventListener('click', loadSamples);
  el['ann-import'].addEventListener('change', async () => {
    const f = el['ann-import'].files?.[0];
    el['ann-import'].value = '';
    if (f) importBytes(f.name, await fileBytes(f));
  });
  el['ann-export'].addEventListener('click', exportJsonl);
  el['ann-delete-all'].addEventListener('click', deleteAll);
  el['ann-undo'].addEventListener('click', undoDelete);
  el['ann-import-valid'].addEventListener('click', () => {
    if (!pendingImport) return;
    const { name, records } = pendingImport;
    hideReport();
    addRecords(records, name);
  });
  el['ann-import-dismiss'].addEventListener('click', hideReport);
  el['ann-delete'].addEventListener('click', () => deleteKeys([state.selected]));
}

/** Redraws the list and the editor after records came or went, and checks them again. */
function redraw() {
  list.renderList();
  editor.renderEditor();
  scheduleStatus();
}

const nextPos = () => (state.rows.length ? Math.max(...state.rows.map((r) => r.pos)) + 1 : 0);

function uniqueId(base, taken) {
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
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
  rows.push(row);
  await persist(() => store.putAnnotation(row));
  el['ann-search'].value = '';
  state.selected = row.key;
  setPref('ann-selected', row.key);
  redraw();
  el['f-work'].focus();
  announce(`New record ${record.id}.`);
}

// Canonical JSON (sorted keys) to tell an identical record from a different one with the same id.
const canon = (v) => (Array.isArray(v) ? `[${v.map(canon).join(',')}]`
  : v && typeof v === 'object' ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`
    : JSON.stringify(v ?? null));

async function addRecords(records, source) {
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
  state.rows.push(...added);
  await persist(() => store.putAnnotations(added));
  if (added.length && !state.rows.some((r) => r.key === state.selected)) state.selected = added[0].key;
  if (added.length && !state.selected) state.selected = added[0].key;
  redraw();
  const parts = [`Imported ${added.length} record${added.length === 1 ? '' : 's'} from ${source}`];
  if (same) parts.push(`${same} already here unchanged`);
  if (renamed.length) parts.push(`${renamed.length} renamed because their id was taken (${renamed.slice(0, 5).join(', ')}${renamed.length > 5 ? ', …' : ''})`);
  const msg = `${parts.join('; ')}.`;
  flash(msg);
  announce(msg);
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
  if (report.errors.length === 0) {
    if (!report.records.length) { showError(el['ann-list-error'], `${name} holds no records`); return; }
    addRecords(report.records, name);
    return;
  }
  // Bad lines: show every one, import nothing unless the user asks for the valid records.
  pendingImport = { name, records: report.records };
  const nErr = report.errors.length;
  const nLines = new Set(report.errors.map((e) => e.line)).size;
  const stored = state.rows.length;
  el['ann-import-summary'].textContent = `${name}: ${nErr} problem${nErr === 1 ? '' : 's'} on ${nLines} line${nLines === 1 ? '' : 's'}. Nothing was imported, and your ${stored} stored record${stored === 1 ? ' is' : 's are'} unchanged.`;
  el['ann-import-errors'].replaceChildren(...report.errors.map((e) => h('li', {},
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
  showError(el['ann-list-error'], '');
  try {
    const res = await fetch('/data/samples/annotations.jsonl');
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    await importBytes('the bundled samples', new Uint8Array(await res.arrayBuffer()));
  } catch (e) {
    showError(el['ann-list-error'], `Could not load the bundled samples: ${e.message}`);
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

async function deleteKeys(keys) {
  const gone = state.rows.filter((r) => keys.includes(r.key));
  if (!gone.length) return;
  state.rows = state.rows.filter((r) => !keys.includes(r.key));
  undo.push(gone);
  await persist(() => store.deleteAnnotations(keys));
  if (keys.includes(state.selected)) {
    const next = state.rows.find((r) => r.pos > gone[0].pos) || state.rows[state.rows.length - 1];
    state.selected = next?.key ?? null;
  }
  renderUndo();
  redraw();
  announce(gone.length === 1 ? `Deleted ${gone[0].record.id}. Undo is available.` : `Deleted ${gone.length} records. Undo is available.`);
}

function deleteAll() {
  if (!state.rows.length) return;
  // eslint-disable-next-line no-alert
  if (!confirm(`Delete all ${state.rows.length} records from this browser? You can undo this until you reload the page.`)) return;
  deleteKeys(state.rows.map((r) => r.key));
}

async function undoDelete() {
  const batch = undo.pop();
  if (!batch) return;
  const ids = new Set(state.rows.map((r) => r.record.id));
  state.rows.push(...batch);
  state.rows.sort((a, b) => a.pos - b.pos);
  await persist(() => store.putAnnotations(batch));
  state.selected = batch[0].key;
  renderUndo();
  redraw();
  const clash = batch.filter((r) => ids.has(r.record.id)).length;
  announce(`Restored ${batch.length} record${batch.length === 1 ? '' : 's'}.${clash ? ' Some ids are now used twice; rename them.' : ''}`);
}

function renderUndo() {
  const last = undo[undo.length - 1];
  el['ann-undo'].hidden = !last;
  if (last) el['ann-undo'].textContent = last.length === 1 ? `Undo delete of ${last[0].record.id || 'record'}` : `Undo delete of ${last.length} records`;
}
