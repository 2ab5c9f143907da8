// Agreement with the expert (the Calibrate tab's last section): each model's verdict distribution
// on the held-out records of the last training run (or, clearly labelled, on every stored record),
// record by record with cancel; then the engine's report (appreciationReport: Spearman ρ, MAE,
// share within ±1, log-loss, NLL, and the paired bootstrap CI of tuned − base) as a table, and
// exported as JSON.
import { $, h, announce, showError, download, readNumber, num, fmt1, fmt2, fmt3, getPref, setPref, today } from '../lib/ui.js';
import { adapterPayload } from '../lib/adapters.js';
import * as store from '../lib/store.js';
import * as train from './train.js';
import * as annotate from './annotate/index.js';

let app;
const el = {};
let jobId = null;
let report = null;   // what Export writes
let done = [];       // per record as the engine appraises it: {id, expert, base, tuned}

export function init(a) {
  app = a;
  for (const id of ['ag-form', 'ag-status', 'ag-source-note', 'ag-records-held', 'ag-records-all', 'ag-held-label', 'ag-all-label', 'ag-adapter',
    'ag-max-wrap', 'ag-max', 'ag-adapter-note', 'ag-run', 'ag-cancel', 'ag-export', 'ag-progress', 'ag-progress-label', 'ag-error', 'ag-table',
    'ag-diff-head', 'ag-note', 'ag-records']) el[id] = $(id);
  const mode = getPref('agreement-mode', 'direct');
  for (const r of document.querySelectorAll('input[name="ag-mode"]')) {
    r.checked = r.value === mode;
    r.addEventListener('change', () => { setPref('agreement-mode', currentMode()); describe(); });
  }
  for (const r of document.querySelectorAll('input[name="ag-records"]')) r.addEventListener('change', () => { el['ag-records-held'].dataset.chosen = '1'; describe(); });
  el['ag-adapter'].addEventListener('change', () => { el['ag-adapter'].dataset.chosen = '1'; describe(); });
  el['ag-form'].addEventListener('submit', (e) => { e.preventDefault(); run(); });
  el['ag-cancel'].addEventListener('click', () => {
    if (jobId !== null) app.engine.send({ type: 'stop', target: jobId });
    el['ag-progress-label'].textContent = 'Cancelling after this record…';
  });
  el['ag-export'].addEventListener('click', exportJson);

  app.on('engine', updateControls);
  app.on('adapters', refresh);
  app.on('annotations', refresh);
  app.on('tab', (t) => { if (t === 'calibrate') refresh(); });
  refresh();
  renderTable(null);
  store.kvGet('report-appreciation').then((r) => { if (r && !report) adoptReport(r, { keep: false }); }).catch(() => {});
}

/** The last agreement report (the models' expected scores per record), or null. */
export const lastReport = () => report;

/** Shows a report kept in this browser or brought by a study, as if just measured. */
export function adoptReport(r, { keep = true } = {}) {
  report = r;
  const experts = (r.records || []).map((x) => x.expert_score);
  done = (r.records || []).map((x) => ({ id: x.id, expert: x.expert_score, base: x.base, tuned: x.tuned }));
  renderTable(r.summary || null, experts, r.records || []);
  renderRecords();
  updateControls();
  if (keep) store.kvSet('report-appreciation', r).catch(() => {});
  app.emit('agreement-report', r);
}

const currentMode = () => document.querySelector('input[name="ag-mode"]:checked')?.value || 'direct';
const source = () => (el['ag-records-held'].checked && !el['ag-records-held'].disabled ? 'held-out' : 'all');
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** The adapter saved by the last finished training run (adapters are listed newest first). */
const lastRun = () => train.list().find((a) => a.source === 'trained') || null;

/** The held-out records of that run, as it trained on them (by id from the stored ones if needed). */
function heldOut(run) {
  const ids = run?.info?.held_out_ids;
  if (!Array.isArray(ids) || !ids.length) return [];
  if (Array.isArray(run.info.held_out_records) && run.info.held_out_records.length) return run.info.held_out_records;
  const byId = new Map(annotate.allRows().map((r) => [r.record.id, r.record]));
  return ids.map((id) => byId.get(id)).filter(Boolean);
}

/** The stored records without problems (the ones the engine accepts). */
function validRows() {
  const bad = annotate.problemKeys();
  return annotate.allRows().filter((r) => !bad.has(r.key));
}

function refresh() {
  fillAdapters();
  describe();
}

// The adapter trained in that run is chosen until the user picks another.
function fillAdapters() {
  const list = train.list();
  const runKey = lastRun()?.key ?? null;
  const sel = el['ag-adapter'];
  const keep = sel.dataset.chosen === '1' ? sel.value : (runKey ?? list[0]?.key ?? '');
  sel.replaceChildren(h('option', { value: '', text: list.length ? 'None: the base model only' : 'None (train or import one in Train)' }),
    ...list.map((a) => h('option', { value: a.key, text: a.key === runKey ? `${a.name} (the last training run)` : a.name })));
  sel.value = keep === '' || list.some((a) => a.key === keep) ? keep : (runKey ?? '');
}

function describe() {
  const run = lastRun();
  const held = heldOut(run);
  const all = validRows().length;
  const hasHeld = held.length > 0;
  el['ag-records-held'].disabled = !hasHeld;
  if (!hasHeld) el['ag-records-all'].checked = true;
  else if (el['ag-records-held'].dataset.chosen !== '1') el['ag-records-held'].checked = true;
  el['ag-held-label'].textContent = hasHeld
    ? `The ${plural(held.length, 'record')} held out of the last training run`
    : 'The held-out records of the last training run (none)';
  el['ag-all-label'].textContent = `All ${plural(all, 'stored record')} without problems: these records were trained on, so agreement will be optimistic`;
  let note;
  if (hasHeld) {
    const ids = held.map((r) => r.id);
    note = `The last training run (adapter “${run.name}”) held out ${plural(held.length, 'record')} that it never trained on: ${ids.slice(0, 8).join(', ')}${ids.length > 8 ? ', …' : ''}.`;
  } else if (run) {
    note = Array.isArray(run.info?.held_out_ids)
      ? `The last training run (adapter “${run.name}”) held no records out, so there is nothing it did not train on. Train with a held-out share above 0, or measure on all stored records instead.`
      : `The last training run (adapter “${run.name}”) was saved before held-out records were kept. Train again, or measure on all stored records instead.`;
  } else {
    note = 'There is no finished training run with held-out records yet. Train one in the Train panel, or measure on all stored records instead.';
  }
  el['ag-source-note'].textContent = note;
  const key = el['ag-adapter'].value;
  el['ag-adapter-note'].textContent = !key
    ? 'Without an adapter only the base model is measured.'
    : source() === 'held-out' && key !== run?.key
      ? 'This adapter was not trained in that run: it may have trained on these records.'
      : '';
  el['ag-max-wrap'].hidden = currentMode() !== 'critique';
  el['ag-run'].textContent = source() === 'held-out' ? 'Measure agreement on the held-out records' : 'Measure agreement on all stored records';
  el['ag-status'].textContent = source() === 'held-out' ? plural(held.length, 'held-out record') : `${plural(all, 'record')} (trained on)`;
  updateControls();
}

function updateControls() {
  const running = app.state.job?.kind === 'agreement';
  el['ag-run'].disabled = !app.ready();
  el['ag-run'].title = app.blocker() || '';
  el['ag-cancel'].disabled = !running;
  el['ag-export'].disabled = !report || running;
}

/** The records to measure, as annotation objects the engine reads. */
async function recordsFor(src) {
  if (src === 'held-out') return heldOut(lastRun());
  const rows = validRows();
  if (!rows.length) return [];
  // The engine's own JSONL, so the records are exactly what it accepts.
  const jsonl = await app.data.call('toJsonl', { records: rows.map((r) => r.record) });
  return jsonl.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

async function run() {
  showError(el['ag-error'], '');
  const mode = currentMode();
  const src = source();
  const max = mode === 'critique' ? readNumber(el['ag-max'], { min: 1, max: 2048, integer: true }) : 200;
  if (max === null) { showError(el['ag-error'], 'The critique length must be a whole number from 1 to 2048'); return; }
  let records;
  try { records = await recordsFor(src); } catch (e) { showError(el['ag-error'], e.message); return; }
  if (!records.length) {
    showError(el['ag-error'], src === 'held-out' ? 'The last training run has no held-out records' : 'There are no stored records without problems to measure');
    return;
  }
  const adapters = train.list();
  const adapter = adapterPayload(el['ag-adapter'], adapters);
  const adapterName = adapters.find((a) => a.key === adapter?.key)?.name || null;
  const options = { mode, max_new_tokens: max };
  const experts = records.map((r) => r.verdict?.score);
  report = null;
  done = [];
  renderTable(null);
  renderRecords();
  el['ag-progress'].max = records.length;
  el['ag-progress'].value = 0;
  el['ag-progress-label'].textContent = `0 of ${plural(records.length, 'record')}`;
  try {
    const job = app.runEngine('agreement', 'measuring agreement', 'agreement', { records, adapter, options }, {
      onEvent(ev) {
        if (ev.type === 'progress' && ev.message) { el['ag-progress-label'].textContent = ev.message; return; }
        if (ev.type !== 'record') return;
        done.push({ id: ev.recordId, expert: experts[ev.index], base: ev.base, tuned: ev.tuned });
        el['ag-progress'].value = ev.index + 1;
        el['ag-progress-label'].textContent = `${ev.index + 1} of ${plural(ev.total, 'record')}`;
        renderRecords();
      },
    });
    jobId = app.state.job?.id ?? null;
    updateControls();
    const r = await job;
    const run = lastRun();
    report = !r.summary ? null : {
      created: new Date().toISOString(), model: app.state.modelName, adapter: adapterName,
      records_from: src === 'held-out'
        ? { kind: 'held-out', run_adapter: run?.name ?? null, ids: records.map((x) => x.id) }
        : { kind: 'all stored records', note: 'these records were trained on, so agreement will be optimistic' },
      options, outcome: r.outcome, done: r.done, total: r.total, summary: r.summary, records: r.records,
    };
    renderTable(r.summary, experts.slice(0, r.done), r.records || []);
    if (report) store.kvSet('report-appreciation', report).catch(() => {});
    app.emit('agreement-report', report);
    if (r.outcome === 'cancelled' && r.summary) el['ag-note'].textContent = `Cancelled: these figures cover the first ${r.done} of ${plural(r.total, 'record')}. ${el['ag-note'].textContent}`;
    el['ag-progress-label'].textContent = r.outcome === 'finished' ? `Done: ${plural(r.done, 'record')}` : `Cancelled after ${r.done} of ${plural(r.total, 'record')}`;
    announce(el['ag-progress-label'].textContent);
  } catch (e) {
    showError(el['ag-error'], e.message);
  } finally {
    jobId = null;
    updateControls();
  }
}

// ---- the table -------------------------------------------------------------------------------

const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)} %` : '–');
const signed = (x, f) => (Number.isFinite(x) ? `${x > 0 ? '+' : x < 0 ? '−' : '±'}${f(Math.abs(x))}` : '–');
const MEASURES = [
  { key: 'spearman', label: 'Spearman ρ', better: 'higher is better: same order as the expert', get: (s) => s.agreement.spearman, f: (x) => fmt2.format(x) },
  { key: 'mae', label: 'MAE', better: 'lower is better: mean |expected − expert|', get: (s) => s.agreement.mae, f: (x) => fmt2.format(x) },
  { key: 'within_1', label: 'Within ±1', better: 'higher is better: share of records', get: (s) => s.agreement.within_1, f: (x) => pct(x), d: (x) => `${Math.round(x * 100)} pp` },
  { key: 'log_loss', label: 'Log-loss', better: 'lower is better: −ln p(expert’s score), nats', get: (s) => s.agreement.log_loss, f: (x) => fmt3.format(x) },
  { key: 'nll', label: 'NLL', better: 'lower is better: the expert’s response, nats/token', get: (s) => s.nll_per_token, f: (x) => fmt3.format(x) },
];

/** Why Spearman ρ is undefined for one model, in words. */
function whyNoRho(experts, expected) {
  if (experts.length < 2) return `ρ needs at least two records (there ${experts.length === 1 ? 'is one' : 'are none'})`;
  if (new Set(experts).size < 2) return 'the expert gave every record the same score, so there is no order to follow';
  if (new Set(expected.map((x) => x.toFixed(9))).size < 2) return 'the model’s expected score is the same on every record';
  return 'one of the two sides is constant';
}

function cell(col, value, f, why) {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return h('td', { class: 'num undefined', dataset: { col }, text: why ? 'undefined' : '–', title: why || '' });
  }
  return h('td', { class: 'num', dataset: { col }, text: f(value) });
}

function renderTable(summary, experts = [], records = []) {
  const body = el['ag-table'].tBodies[0];
  const notes = [];
  if (!summary) {
    body.replaceChildren(h('tr', {}, h('td', { colspan: 4, class: 'hint', text: 'Measure agreement to see the table.' })));
    el['ag-note'].textContent = '';
    return;
  }
  const diff = summary.tuned_minus_base || null;
  const level = Math.round((diff?.level ?? 0.95) * 100);
  el['ag-diff-head'].textContent = `Tuned − base (${level} % CI)`;
  const why = {};
  for (const side of ['base', 'tuned']) {
    if (summary[side] && summary[side].agreement.spearman === null) {
      why[side] = whyNoRho(experts, records.map((r) => r[side]?.expected ?? NaN));
      notes.push(`ρ is undefined for the ${side} model: ${why[side]}.`);
    }
  }
  body.replaceChildren(...MEASURES.map((m) => {
    const rho = m.key === 'spearman';
    const d = diff && m.key !== 'nll' ? diff[m.key] : null;
    let diffCell;
    if (!summary.tuned) diffCell = h('td', { class: 'num', dataset: { col: 'diff' }, text: '–', title: 'no adapter: only the base model was measured' });
    else if (m.key === 'nll') {
      const [t, b] = [summary.tuned.nll_per_token, summary.base.nll_per_token];
      const x = t === null || b === null ? NaN : t - b;
      diffCell = h('td', { class: 'num', dataset: { col: 'diff' } }, signed(x, m.f), ' ', h('span', { class: 'ci', text: 'no interval' }));
    } else if (!d || d.tuned_minus_base === null) {
      diffCell = h('td', { class: 'num undefined', dataset: { col: 'diff' }, text: 'undefined', title: 'ρ is undefined for at least one model' });
    } else {
      const fd = m.d || m.f;
      const ci = d.ci_low === null || d.ci_high === null ? 'no interval' : `${level} % CI [${signed(d.ci_low, fd)}, ${signed(d.ci_high, fd)}]`;
      diffCell = h('td', { class: 'num', dataset: { col: 'diff' } }, signed(d.tuned_minus_base, fd), ' ', h('span', { class: 'ci', text: ci }));
      if (rho && d.resamples < summary.bootstrap_resamples) notes.push(`ρ was defined on ${d.resamples} of the ${summary.bootstrap_resamples} resamples; its interval uses those.`);
    }
    return h('tr', { dataset: { measure: m.key } },
      h('th', { scope: 'row' }, m.label, ' ', h('span', { class: 'better', text: m.better })),
      cell('base', m.get(summary.base), m.f, rho ? why.base : null),
      summary.tuned ? cell('tuned', m.get(summary.tuned), m.f, rho ? why.tuned : null) : h('td', { class: 'num', dataset: { col: 'tuned' }, text: '–' }),
      diffCell);
  }));
  const n = summary.base.agreement.n;
  notes.unshift(`${plural(n, 'record')}, ${summary.mode} mode.${summary.tuned ? ` Intervals: paired bootstrap, ${summary.bootstrap_resamples} resamples of the same records for both models (seed ${summary.seed}).` : ''}`);
  if (n === 2) notes.push('With two records ρ can only be −1 or +1.');
  if (summary.mode === 'critique') notes.push(`Parsed verdicts written in the critiques: base ${summary.base.parsed} of ${n}${summary.tuned ? `, tuned ${summary.tuned.parsed} of ${n}` : ''}.`);
  el['ag-note'].textContent = notes.join(' ');
}

/** Per record, as the engine appraises them: the expert's score and each model's expected score. */
function renderRecords() {
  if (!done.length) { el['ag-records'].replaceChildren(); return; }
  const tuned = done.some((r) => r.tuned);
  const open = el['ag-records'].querySelector('details')?.open ?? false;
  el['ag-records'].replaceChildren(h('details', { class: 'ag-records', open },
    h('summary', { text: `Per record (${done.length})` }),
    h('div', { class: 'table-wrap tall' }, h('table', { class: 'data compact' },
      h('thead', {}, h('tr', {}, ...['Id', 'Expert', 'Base: expected', 'Base: p(expert)', ...(tuned ? ['Tuned: expected', 'Tuned: p(expert)'] : [])]
        .map((t, i) => h('th', { scope: 'col', class: i ? 'num' : null, text: t })))),
      h('tbody', {}, ...done.map((r) => {
        const p = (a) => (a && Number.isInteger(r.expert) ? num(a.p[r.expert - 1]) : '–');
        return h('tr', {}, h('th', { scope: 'row', text: r.id }), h('td', { class: 'num', text: String(r.expert ?? '–') }),
          h('td', { class: 'num', text: num(r.base?.expected, fmt1) }), h('td', { class: 'num', text: p(r.base) }),
          ...(tuned ? [h('td', { class: 'num', text: num(r.tuned?.expected, fmt1) }), h('td', { class: 'num', text: p(r.tuned) })] : []));
      }))))));
}

function exportJson() {
  if (!report) return;
  download(`agreement-${today()}.json`, JSON.stringify(report, null, 2), 'application/json');
  announce('Agreement report exported.');
}
