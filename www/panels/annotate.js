// Annotate panel: list, search and edit annotation records (docs/annotation-format.md). Every
// change is written to IndexedDB at once. Validation, coverage and JSONL all come from the
// engine (the data worker); this file only edits objects and draws them.
import { $, h, announce, showError, sentence, download, nowIso, today, getPref, setPref, cssVar, fileBytes } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { BarChart } from '../lib/charts.js';

const DIMENSIONS = ['craft', 'audience', 'reality'];
let app;
let rows = [];               // [{key, pos, record}] in list order
let selected = null;         // key of the record in the editor
let problems = new Map();    // key → [{field, message}]
let undo = [];               // batches of deleted rows, newest last
let pendingImport = null;    // {name, records} waiting for "import the valid records"
let statusTimer = 0;
let saving = 0;
let coverageChart;
const el = {};

export function init(a) {
  app = a;
  for (const id of ['ann-count', 'ann-new', 'ann-samples', 'ann-import', 'ann-export', 'ann-delete-all', 'ann-undo', 'ann-search',
    'ann-list', 'ann-list-error', 'ann-import-report', 'ann-import-summary', 'ann-import-errors', 'ann-import-valid',
    'ann-import-dismiss', 'ann-saved', 'ann-empty', 'ann-form', 'f-id', 'f-genre', 'f-audience', 'f-brief', 'f-work', 'f-steps',
    'f-score', 'f-summary', 'f-revision', 'f-expert', 'f-ke', 'f-session', 'f-date', 'f-times', 'f-problems-box', 'f-problems',
    'ann-delete', 'cov-chart', 'cov-list', 'cov-warnings']) el[id] = $(id);

  coverageChart = new BarChart(el['cov-chart'], { height: 170, yLabel: '% of steps', threshold: 20, yRange: [0, 100] });

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
  el['ann-search'].addEventListener('input', renderList);
  el['ann-import-valid'].addEventListener('click', () => {
    if (!pendingImport) return;
    const { name, records } = pendingImport;
    hideReport();
    addRecords(records, name);
  });
  el['ann-import-dismiss'].addEventListener('click', hideReport);
  el['ann-delete'].addEventListener('click', () => deleteKeys([selected]));
  for (const b of document.querySelectorAll('.add-step')) b.addEventListener('click', () => addStep(b.dataset.dimension));
  bindFields();

  app.on('tab', (t) => { if (t === 'annotate') requestAnimationFrame(refreshStatus); });
  reload();
}

// ---- public: other panels read the records --------------------------------------------------

export const records = () => rows.map((r) => r.record);
export const problemKeys = () => new Set(problems.keys());
export const rowsWithProblems = () => rows.filter((r) => problems.has(r.key));
export const allRows = () => rows;

// ---- storage ------------------------------------------------------------------------------------

async function reload() {
  try {
    rows = await store.allAnnotations();
  } catch (e) {
    showError(el['ann-list-error'], `This browser’s storage is unavailable, so annotations cannot be kept: ${e.message}`);
    rows = [];
  }
  const saved = getPref('ann-selected');
  selected = rows.some((r) => r.key === saved) ? saved : rows[0]?.key ?? null;
  renderList();
  renderEditor();
  refreshStatus();
}

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
async function persist(fn) {
  markSaving();
  try { await fn(); markSaved(true); } catch (e) { markSaved(false, e.message || String(e)); }
}

function changed(row) {
  row.record.updated = nowIso();
  persist(() => store.putAnnotation(row));
  updateListItem(row);
  el['f-times'].textContent = times(row.record);
  scheduleStatus();
  app.emit('annotations', rows);
}

// ---- status: validation + coverage from the engine ---------------------------------------------

function scheduleStatus() {
  clearTimeout(statusTimer);
  statusTimer = setTimeout(refreshStatus, 200);
}

let statusSeq = 0;
async function refreshStatus() {
  if (!app.data) return;
  const seq = ++statusSeq;
  const snapshot = rows.slice();
  let s;
  try {
    s = await app.data.call('annotationsStatus', { records: snapshot.map((r) => r.record) });
  } catch (e) {
    showError(el['ann-list-error'], `Could not check the records: ${e.message}`);
    return;
  }
  if (seq !== statusSeq) return; // a newer check is on its way
  problems = new Map();
  for (const e of s.errors) {
    const row = snapshot[e.index];
    if (!row) continue;
    if (!problems.has(row.key)) problems.set(row.key, []);
    problems.get(row.key).push(e);
  }
  renderCount();
  for (const row of rows) updateListItem(row);
  renderProblems();
  renderCoverage(s.coverage);
  app.emit('annotations', rows);
}

function renderCount() {
  const n = rows.length;
  const bad = problems.size;
  el['ann-count'].textContent = `${n} record${n === 1 ? '' : 's'}${bad ? ` · ${bad} to fix` : ''}`;
}

function renderCoverage(cov) {
  const dims = cov?.dimensions || {};
  const colors = { craft: cssVar('--craft') || '#4f46e5', audience: cssVar('--audience') || '#0e7490', reality: cssVar('--reality') || '#b45309' };
  coverageChart.update(DIMENSIONS, DIMENSIONS.map((d, i) => ({
    label: d, color: colors[d], values: DIMENSIONS.map((_, j) => (i === j ? 100 * (dims[d]?.share || 0) : null)),
  })));
  el['cov-list'].replaceChildren(...DIMENSIONS.map((d) => h('li', { class: `cov-${d}` },
    h('span', { class: 'cov-name', text: d }),
    h('span', { class: 'cov-value', text: `${dims[d]?.steps ?? 0} steps · ${Math.round(100 * (dims[d]?.share || 0))}%` }))));
  const total = cov ? `${cov.steps} steps in ${cov.records} valid record${cov.records === 1 ? '' : 's'}` : '';
  el['cov-chart'].setAttribute('aria-label', `Share of reasoning steps per dimension: ${DIMENSIONS.map((d) => `${d} ${Math.round(100 * (dims[d]?.share || 0))}%`).join(', ')}. ${total}`);
  el['cov-warnings'].replaceChildren(
    ...(total ? [h('li', { class: 'cov-total', text: total })] : []),
    ...(cov?.warnings || []).map((w) => h('li', { class: 'warning', text: sentence(w) })));
}

// ---- list ---------------------------------------------------------------------------------------

function matches(r, q) {
  if (!q) return true;
  const rec = r.record;
  const hay = [rec.id, rec.work, rec.brief, rec.audience, rec.genre, rec.verdict?.summary, rec.revision,
    rec.provenance?.expert, rec.provenance?.knowledge_engineer, rec.provenance?.session, ...(rec.reasoning || []).map((s) => s.text)]
    .filter((x) => typeof x === 'string').join('\n').toLowerCase();
  return q.split(/\s+/).every((w) => hay.includes(w));
}

const listItems = new Map(); // key → li

function renderList() {
  const q = el['ann-search'].value.trim().toLowerCase();
  listItems.clear();
  const items = [];
  for (const r of rows) {
    if (!matches(r, q)) continue;
    const li = h('li', {});
    listItems.set(r.key, li);
    fillListItem(li, r);
    items.push(li);
  }
  if (!items.length) items.push(h('li', { class: 'hint empty', text: rows.length ? 'No record matches the search.' : 'No records yet.' }));
  el['ann-list'].replaceChildren(...items);
  renderCount();
}

function fillListItem(li, r) {
  const rec = r.record;
  const bad = problems.get(r.key);
  const snippet = (rec.work || '').replace(/\s+/g, ' ').slice(0, 80);
  const btn = h('button', { type: 'button', class: 'ann-item', 'aria-current': r.key === selected ? 'true' : null, onclick: () => select(r.key) },
    h('span', { class: 'ann-item-head' },
      h('span', { class: 'ann-item-id', text: rec.id || '(no id)' }),
      h('span', { class: 'ann-item-meta', text: `${Number.isInteger(rec.verdict?.score) ? `${rec.verdict.score}/10 · ` : ''}${(rec.reasoning || []).length} steps` }),
      bad ? h('span', { class: 'ann-item-bad', title: `${bad.length} problem${bad.length === 1 ? '' : 's'} to fix`, text: `⚠ ${bad.length}` }) : null),
    h('span', { class: 'ann-item-snippet', text: snippet || '(no work yet)' }));
  li.replaceChildren(btn);
}

function updateListItem(row) {
  const li = listItems.get(row.key);
  if (li) fillListItem(li, row);
}

function select(key) {
  selected = key;
  setPref('ann-selected', key);
  for (const [k, li] of listItems) li.firstChild?.setAttribute?.('aria-current', k === key ? 'true' : 'false');
  renderEditor();
}

// ---- editor -------------------------------------------------------------------------------------

const current = () => rows.find((r) => r.key === selected) || null;
const times = (rec) => `Created ${rec.created || '–'} · updated ${rec.updated || '–'}`;

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

function renderEditor() {
  const row = current();
  el['ann-form'].hidden = !row;
  el['ann-empty'].hidden = !!row;
  if (!row) { el['ann-saved'].textContent = ''; return; }
  for (const [id, , read] of FIELDS) {
    const v = read(row.record);
    el[id].value = v === null || v === undefined ? '' : String(v);
  }
  el['f-times'].textContent = times(row.record);
  renderSteps();
  renderProblems();
}

function renderSteps(focus) {
  const row = current();
  if (!row) return;
  const steps = row.record.reasoning || (row.record.reasoning = []);
  const items = steps.map((step, i) => {
    const n = i + 1;
    const select = h('select', { 'aria-label': `Step ${n} dimension`, class: `dim dim-${step.dimension}` },
      ...DIMENSIONS.map((d) => h('option', { value: d, text: d, selected: d === step.dimension })));
    if (!DIMENSIONS.includes(step.dimension)) select.prepend(h('option', { value: step.dimension, text: String(step.dimension), selected: true }));
    select.addEventListener('change', () => { step.dimension = select.value; select.className = `dim dim-${step.dimension}`; changed(row); });
    const text = h('textarea', { rows: 2, 'aria-label': `Step ${n} text` });
    text.value = step.text ?? '';
    text.addEventListener('input', () => { step.text = text.value; changed(row); });
    const move = (to, which) => {
      const [s] = steps.splice(i, 1);
      steps.splice(to, 0, s);
      changed(row);
      renderSteps({ index: to, which });
      announce(`Step moved to position ${to + 1}.`);
    };
    const up = h('button', { type: 'button', class: 'icon', 'aria-label': `Move step ${n} up`, title: 'Move up', disabled: i === 0, onclick: () => move(i - 1, 'up'), text: '↑' });
    const down = h('button', { type: 'button', class: 'icon', 'aria-label': `Move step ${n} down`, title: 'Move down', disabled: i === steps.length - 1, onclick: () => move(i + 1, 'down'), text: '↓' });
    const remove = h('button', {
      type: 'button', class: 'icon', 'aria-label': `Remove step ${n}`, title: 'Remove',
      onclick: () => {
        steps.splice(i, 1);
        changed(row);
        renderSteps({ index: Math.min(i, steps.length - 1), which: 'text' });
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
    (target && !target.disabled ? target : refs.text).focus();
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

function renderProblems() {
  const row = current();
  const list = row ? problems.get(row.key) || [] : [];
  el['f-problems-box'].hidden = list.length === 0;
  el['f-problems'].replaceChildren(...list.map((p) => h('li', {}, p.field ? h('code', { text: p.field }) : null, p.field ? ': ' : '', sentence(p.message))));
  for (const [id] of FIELDS) el[id].removeAttribute('aria-invalid');
  const fieldToInput = { id: 'f-id', work: 'f-work', 'verdict.score': 'f-score', 'verdict.summary': 'f-summary', 'provenance.date': 'f-date', 'provenance.expert': 'f-expert' };
  for (const p of list) if (fieldToInput[p.field]) el[fieldToInput[p.field]].setAttribute('aria-invalid', 'true');
}

// ---- records: new, import, samples, export, delete ----------------------------------------------

const nextPos = () => (rows.length ? Math.max(...rows.map((r) => r.pos)) + 1 : 0);

function uniqueId(base, taken) {
  if (!taken.has(base)) return base;
  for (let i = 2; ; i++) if (!taken.has(`${base}-${i}`)) return `${base}-${i}`;
}

async function newRecord() {
  const taken = new Set(rows.map((r) => r.record.id));
  let n = rows.length + 1;
  while (taken.has(`ann-${String(n).padStart(3, '0')}`)) n++;
  const stamp = nowIso();
  const record = {
    schema: 1, id: `ann-${String(n).padStart(3, '0')}`, work: '', brief: '', audience: '', genre: '',
    reasoning: [], verdict: { score: null, summary: '' }, revision: null,
    provenance: { expert: getPref('last-f-expert', ''), knowledge_engineer: getPref('last-f-ke', ''), session: getPref('last-f-session', ''), date: today() },
    created: stamp, updated: stamp,
  };
  const row = { key: store.newKey(), pos: nextPos(), record };
  rows.push(row);
  await persist(() => store.putAnnotation(row));
  el['ann-search'].value = '';
  selected = row.key;
  setPref('ann-selected', row.key);
  renderList();
  renderEditor();
  scheduleStatus();
  el['f-work'].focus();
  announce(`New record ${record.id}.`);
}

// Canonical JSON (sorted keys) to tell an identical record from a different one with the same id.
const canon = (v) => (Array.isArray(v) ? `[${v.map(canon).join(',')}]`
  : v && typeof v === 'object' ? `{${Object.keys(v).sort().map((k) => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`
    : JSON.stringify(v ?? null));

async function addRecords(records, source) {
  const byId = new Map(rows.map((r) => [r.record.id, r]));
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
  rows.push(...added);
  await persist(() => store.putAnnotations(added));
  if (added.length && !rows.some((r) => r.key === selected)) selected = added[0].key;
  if (added.length && !selected) selected = added[0].key;
  renderList();
  renderEditor();
  scheduleStatus();
  const parts = [`Imported ${added.length} record${added.length === 1 ? '' : 's'} from ${source}`];
  if (same) parts.push(`${same} already here unchanged`);
  if (renamed.length) parts.push(`${renamed.length} renamed because their id was taken (${renamed.slice(0, 5).join(', ')}${renamed.length > 5 ? ', …' : ''})`);
  const msg = `${parts.join('; ')}.`;
  flash(msg);
  announce(msg);
}

function flash(message) {
  el['ann-saved'].dataset.state = 'saved';
  el['ann-saved'].textContent = message;
}

async function importBytes(name, bytes) {
  showError(el['ann-list-error'], '');
  hideReport();
  let report;
  try {
    report = await app.data.call('parseAnnotations', { bytes });
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
  el['ann-import-summary'].textContent = `${name}: ${nErr} problem${nErr === 1 ? '' : 's'} on ${nLines} line${nLines === 1 ? '' : 's'}. Nothing was imported, and your ${rows.length} stored record${rows.length === 1 ? ' is' : 's are'} unchanged.`;
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
  if (!rows.length) { showError(el['ann-list-error'], 'There are no records to export'); return; }
  const bad = rowsWithProblems();
  if (bad.length) {
    showError(el['ann-list-error'], `${bad.length} record${bad.length === 1 ? ' has' : 's have'} problems (${bad.slice(0, 5).map((r) => r.record.id || '(no id)').join(', ')}${bad.length > 5 ? ', …' : ''}): fix them first, so the file can be read back`);
    return;
  }
  try {
    const jsonl = await app.data.call('toJsonl', { records: records() });
    download(`annotations-${today()}.jsonl`, jsonl, 'application/jsonl');
    announce(`Exported ${rows.length} records.`);
  } catch (e) {
    showError(el['ann-list-error'], `Could not export: ${e.message}`);
  }
}

async function deleteKeys(keys) {
  const gone = rows.filter((r) => keys.includes(r.key));
  if (!gone.length) return;
  rows = rows.filter((r) => !keys.includes(r.key));
  undo.push(gone);
  await persist(() => store.deleteAnnotations(keys));
  if (keys.includes(selected)) {
    const next = rows.find((r) => r.pos > gone[0].pos) || rows[rows.length - 1];
    selected = next?.key ?? null;
  }
  renderUndo();
  renderList();
  renderEditor();
  scheduleStatus();
  announce(gone.length === 1 ? `Deleted ${gone[0].record.id}. Undo is available.` : `Deleted ${gone.length} records. Undo is available.`);
}

function deleteAll() {
  if (!rows.length) return;
  // eslint-disable-next-line no-alert
  if (!confirm(`Delete all ${rows.length} records from this browser? You can undo this until you reload the page.`)) return;
  deleteKeys(rows.map((r) => r.key));
}

async function undoDelete() {
  const batch = undo.pop();
  if (!batch) return;
  const ids = new Set(rows.map((r) => r.record.id));
  rows.push(...batch);
  rows.sort((a, b) => a.pos - b.pos);
  await persist(() => store.putAnnotations(batch));
  selected = batch[0].key;
  renderUndo();
  renderList();
  renderEditor();
  scheduleStatus();
  const clash = batch.filter((r) => ids.has(r.record.id)).length;
  announce(`Restored ${batch.length} record${batch.length === 1 ? '' : 's'}.${clash ? ' Some ids are now used twice; rename them.' : ''}`);
}

function renderUndo() {
  const last = undo[undo.length - 1];
  el['ann-undo'].hidden = !last;
  if (last) el['ann-undo'].textContent = last.length === 1 ? `Undo delete of ${last[0].record.id || 'record'}` : `Undo delete of ${last.length} records`;
}
