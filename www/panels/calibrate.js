// Calibrate panel: the Calibrated Surprise benchmark (docs/calibration-format.md), item by item,
// for base vs a chosen adapter; per-item table, group statistics (the engine's
// calibrationGroups, as `cqa calibrate` computes them), a chart, a per-token heatmap and an
// exportable report.
import { $, h, announce, showError, sentence, download, num, pval, fmt2, cssVar, fileBytes, today } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { BarChart } from '../lib/charts.js';
import { renderHeatmap } from '../lib/heatmap.js';
import { fillAdapterSelect, adapterPayload } from '../lib/adapters.js';
import * as train from './train.js';
import { csvCell } from '../lib/csv.js';

/** The largest file read as a benchmark (the bundled one is a few KB). */
const MAX_BENCHMARK_BYTES = 16 * 1024 * 1024;

let app;
const el = {};
let chart;
let imported = null;   // {name, items}
let bundled = null;    // items
let results = [];      // per item, as the engine returns them
let groups = {};       // group → paired summary, in GROUPS order
let report = null;     // {bench, adapter, model, items, groups}
let jobId = null;
let selectedItem = null;
const LN2 = Math.LN2;
const GROUPS = ['literary', 'factual']; // display order

export function init(a) {
  app = a;
  for (const id of ['cal-form', 'cal-bench-status', 'cal-source-imported', 'cal-imported-label', 'cal-import', 'cal-adapter', 'cal-run',
    'cal-cancel', 'cal-export-json', 'cal-export-csv', 'cal-progress', 'cal-progress-label', 'cal-error', 'cal-summary', 'cal-summary-of',
    'cal-summary-note', 'cal-chart', 'cal-items', 'cal-heatmap']) el[id] = $(id);
  chart = new BarChart(el['cal-chart'], { height: 200, yLabel: 'bits' });

  el['cal-form'].addEventListener('submit', (e) => { e.preventDefault(); run(); });
  el['cal-cancel'].addEventListener('click', () => {
    if (jobId !== null) app.engine.send({ type: 'stop', target: jobId });
    el['cal-progress-label'].textContent = 'Cancelling after this item…';
  });
  el['cal-import'].addEventListener('change', async () => {
    const f = el['cal-import'].files?.[0];
    el['cal-import'].value = '';
    if (!f) return;
    // Refused before it is read: a benchmark is a few hundred items of text.
    if (f.size > MAX_BENCHMARK_BYTES) {
      showError(el['cal-error'], `The file ${f.name} is ${(f.size / 2 ** 20).toFixed(1)} MiB: too large to be a benchmark (the limit is ${MAX_BENCHMARK_BYTES / 2 ** 20} MiB), so it was not read`);
      return;
    }
    importBench(f.name, await fileBytes(f), true);
  });
  for (const r of document.querySelectorAll('input[name="cal-source"]')) r.addEventListener('change', describe);
  el['cal-export-json'].addEventListener('click', exportJson);
  el['cal-export-csv'].addEventListener('click', exportCsv);

  app.on('engine', updateControls);
  app.on('adapters', (list) => fillAdapterSelect(el['cal-adapter'], list, 'calibrate-adapter'));
  app.on('tab', (t) => { if (t === 'calibrate') { ensureBundled(); drawChart(); } });
  fillAdapterSelect(el['cal-adapter'], train.list(), 'calibrate-adapter');
  renderTable(false);
  renderSummary(false);
  store.kvGet('benchmark').then((b) => { if (b) importBench(b.name, b.bytes, false); }).catch(() => {});
  // The last report survives a reload, so a study exported later still holds it.
  store.kvGet('report-calibration').then((r) => { if (r && !report) adoptReport(r, { keep: false }); }).catch(() => {});
}

const source = () => document.querySelector('input[name="cal-source"]:checked')?.value || 'bundled';

/** The last calibration report ({benchmark, model, adapter, items, groups}), or null. */
export const lastReport = () => report;

/** The benchmark the next run would use, as {name, items}, or null before it is known. */
export async function benchmark() {
  if (source() === 'imported' && imported) return { name: imported.name, items: imported.items };
  const items = await ensureBundled();
  return items ? { name: 'data/benchmarks/calibration.jsonl', items } : null;
}

/** Whether a benchmark file was imported here (a study's benchmark never replaces it). */
export const hasImportedBenchmark = () => !!imported;

/** Takes a benchmark from a study (as JSONL bytes), as if imported. */
export const adoptBenchmark = (name, bytes) => importBench(name, bytes, true);

/** Shows a report kept in this browser or brought by a study, as if just run. */
export function adoptReport(r, { keep = true } = {}) {
  report = r;
  results = Array.isArray(r.items) ? r.items : [];
  groups = r.groups || {};
  const tuned = results.some((x) => x.delta_delta_i_bits !== undefined);
  renderTable(tuned);
  for (const x of results) appendRow(x, tuned);
  renderSummary(tuned);
  drawChart();
  if (keep) store.kvSet('report-calibration', r).catch(() => {});
}

function updateControls() {
  const running = app.state.job?.kind === 'calibrate';
  el['cal-run'].disabled = !app.ready();
  el['cal-run'].title = app.blocker() || '';
  el['cal-cancel'].disabled = !running;
  el['cal-export-json'].disabled = !report || running;
  el['cal-export-csv'].disabled = !report || running;
}

async function ensureBundled() {
  if (bundled) return bundled;
  try {
    const res = await fetch(new URL('../data/benchmarks/calibration.jsonl', import.meta.url));
    if (!res.ok) throw new Error(`the server answered ${res.status}`);
    bundled = await app.data.call('parseBenchmark', { bytes: new Uint8Array(await res.arrayBuffer()) });
  } catch (e) {
    showError(el['cal-error'], `Could not load the bundled benchmark: ${e.message}`);
  }
  describe();
  return bundled;
}

function describe() {
  const items = source() === 'imported' ? imported?.items : bundled;
  const count = (g) => (items || []).filter((i) => i.group === g).length;
  el['cal-bench-status'].textContent = items ? `${items.length} items: ${count('literary')} literary, ${count('factual')} factual` : '';
}

async function importBench(name, bytes, fromUser) {
  showError(el['cal-error'], '');
  try {
    const items = await app.data.call('parseBenchmark', { bytes });
    imported = { name, items };
    el['cal-source-imported'].disabled = false;
    el['cal-imported-label'].textContent = `Imported: ${name} (${items.length} items)`;
    if (fromUser) el['cal-source-imported'].checked = true;
    // Said before it is kept: whoever sees the imported source chosen sees its items counted.
    describe();
    if (fromUser) {
      await store.kvSet('benchmark', { name, bytes }).catch(() => {});
      announce(`Benchmark ${name} imported: ${items.length} items.`);
    }
  } catch (e) {
    showError(el['cal-error'], `${name} was not imported: ${e.message}`);
  }
}

async function run() {
  showError(el['cal-error'], '');
  const items = source() === 'imported' ? imported?.items : await ensureBundled();
  if (!items?.length) { showError(el['cal-error'], 'There are no benchmark items to run'); return; }
  const adapters = train.list();
  const adapter = adapterPayload(el['cal-adapter'], adapters);
  const adapterName = adapters.find((a) => a.key === adapter?.key)?.name || null;
  results = [];
  groups = {};
  report = null;
  selectedItem = null;
  el['cal-heatmap'].replaceChildren();
  renderTable(!!adapter);
  renderSummary(!!adapter);
  drawChart();
  el['cal-progress'].max = items.length;
  el['cal-progress'].value = 0;
  el['cal-progress-label'].textContent = `0 of ${items.length} items`;
  let scored = false; // the engine job ended; a later failure is the summary's
  try {
    const job = app.runEngine('calibrate', 'calibrating', 'calibrate', { items, adapter }, {
      onEvent(ev) {
        if (ev.type === 'progress' && ev.message) { el['cal-progress-label'].textContent = ev.message; return; }
        if (ev.type !== 'item') return;
        results.push(ev.result);
        el['cal-progress'].value = ev.index + 1;
        el['cal-progress-label'].textContent = `${ev.index + 1} of ${ev.total} items`;
        appendRow(ev.result, !!adapter);
        drawChart();
      },
    });
    jobId = app.state.job?.id ?? null;
    updateControls();
    const r = await job;
    scored = true;
    await summarise(!!adapter);
    report = {
      benchmark: source() === 'imported' ? imported.name : 'data/benchmarks/calibration.jsonl',
      model: app.state.modelName, adapter: adapterName, finished: r.outcome === 'finished', created: new Date().toISOString(),
      items: results.map(({ token_texts, ...rest }) => rest), groups,
    };
    store.kvSet('report-calibration', report).catch(() => {});
    el['cal-progress-label'].textContent = r.outcome === 'finished' ? `Done: ${results.length} items` : `Cancelled after ${results.length} of ${items.length} items`;
    announce(el['cal-progress-label'].textContent);
    if (results.length && !selectedItem) showItem(results[0]);
  } catch (e) {
    showError(el['cal-error'], e.message);
    // What was scored before the engine failed is still summarised.
    if (!scored && results.length) {
      await summarise(!!adapter).catch((e2) => showError(el['cal-error'], `${sentence(e.message)} The summary failed too: ${e2.message}`));
    }
  } finally {
    jobId = null;
    updateControls();
  }
}

const valueOf = (r, tuned) => (tuned ? r.delta_delta_i_bits : r.base.delta_i_bits);

// The engine summarises each group (of Δ(ΔI) when the items were scored against a tuned model,
// else of the base ΔI); the table lists them literary first, then any other group.
async function summarise(tuned) {
  const summaries = await app.data.call('calibrationGroups', { items: results.map(({ token_texts, ...rest }) => rest) });
  const names = [...GROUPS.filter((g) => g in summaries), ...Object.keys(summaries).filter((g) => !GROUPS.includes(g))];
  groups = Object.fromEntries(names.map((g) => [g, summaries[g]]));
  renderSummary(tuned);
}

function renderSummary(tuned) {
  const body = el['cal-summary'].tBodies[0];
  const names = Object.keys(groups);
  body.replaceChildren(...(names.length ? names.map((g) => {
    const s = groups[g];
    return h('tr', {}, h('th', { scope: 'row', text: g }), h('td', { class: 'num', text: String(s.n) }), h('td', { class: 'num', text: num(s.mean) }),
      h('td', { class: 'num', text: num(s.median) }), h('td', { class: 'num', text: num(s.sd) }),
      h('td', { class: 'num', text: pval(s.wilcoxon_p), title: s.wilcoxon_method ? `Wilcoxon signed-rank, one-sided (H1: > 0), ${s.wilcoxon_method}` : '' }),
      h('td', { class: 'num', text: num(s.cohens_d) }));
  }) : [h('tr', {}, h('td', { colspan: 7, class: 'hint', text: 'Run the benchmark to see the statistics.' }))]));
  el['cal-summary-of'].textContent = tuned ? 'of Δ(ΔI) = ΔI(tuned) − ΔI(base), bits' : 'of the base model’s ΔI, bits';
  el['cal-summary-note'].textContent = tuned
    ? 'Δ(ΔI) > 0: after tuning the constraint explains the passage better. Wilcoxon p is one-sided (H1: Δ(ΔI) > 0); Cohen’s d = mean / SD of the differences. Expect an effect on literary items and none on the factual control.'
    : 'Without an adapter: how much the constraint Y makes each passage more predictable to the base model (H1: ΔI > 0). Choose an adapter to test a fine-tune.';
}

function renderTable(tuned) {
  const head = el['cal-items'].tHead.rows[0];
  head.cells[6].hidden = !tuned;
  head.cells[7].hidden = !tuned;
  el['cal-items'].tBodies[0].replaceChildren();
}

function appendRow(r, tuned) {
  const btn = h('button', { type: 'button', class: 'link', text: r.id, 'aria-label': `Show the tokens of ${r.id}`, onclick: () => showItem(r) });
  const row = h('tr', { dataset: { id: r.id } },
    h('th', { scope: 'row' }, btn), h('td', { text: r.group }), h('td', { class: 'num', text: String(r.n_tokens) }),
    h('td', { class: 'num', text: num(r.base.h_x_bits) }), h('td', { class: 'num', text: num(r.base.h_x_given_y_bits) }),
    h('td', { class: 'num', text: num(r.base.delta_i_bits) }),
    h('td', { class: 'num', hidden: !tuned, text: tuned ? num(r.tuned?.delta_i_bits) : '' }),
    h('td', { class: 'num', hidden: !tuned, text: tuned ? num(r.delta_delta_i_bits) : '' }));
  el['cal-items'].tBodies[0].append(row);
}

function showItem(r) {
  selectedItem = r.id;
  for (const tr of el['cal-items'].tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.id === r.id);
  const texts = r.token_texts || [];
  const hasShift = Array.isArray(r.token_shift);
  const tokens = texts.map((t, i) => {
    const bx = r.base.logprobs_x[i] / LN2;
    const by = r.base.logprobs_x_given_y[i] / LN2;
    if (hasShift) {
      const ty = r.tuned.logprobs_x_given_y[i] / LN2;
      const d = r.token_shift[i] / LN2;
      return { text: t, value: d, detail: `“${t}”: given Y, base ${by.toFixed(2)} bits, tuned ${ty.toFixed(2)} bits, shift ${d >= 0 ? '+' : ''}${d.toFixed(2)} bits` };
    }
    const d = by - bx;
    return { text: t, value: d, detail: `“${t}”: log₂p without Y ${bx.toFixed(2)}, with Y ${by.toFixed(2)}, change ${d >= 0 ? '+' : ''}${d.toFixed(2)} bits` };
  });
  renderHeatmap(el['cal-heatmap'], hasShift
    ? { title: `${r.id}: per-token log-prob shift given Y, tuned − base`, tokens, legend: ['less expected after tuning', 'more expected'] }
    : { title: `${r.id}: what the constraint Y does to each token (base model)`, tokens, legend: ['less expected with Y', 'more expected with Y'] });
}

function drawChart() {
  const tuned = results.some((r) => r.delta_delta_i_bits !== undefined);
  const ids = results.map((r) => r.id);
  chart.update(ids, GROUPS.map((g) => ({
    label: g, color: g === 'literary' ? (cssVar('--accent') || '#4f46e5') : (cssVar('--muted') || '#5b6275'),
    values: results.map((r) => (r.group === g ? valueOf(r, tuned) : null)),
  })));
  el['cal-chart'].setAttribute('aria-label', results.length
    ? `${tuned ? 'Δ(ΔI)' : 'ΔI'} per item in bits: ${results.map((r) => `${r.id} ${fmt2.format(valueOf(r, tuned))}`).join(', ')}`
    : 'No results yet');
}

function exportJson() {
  if (!report) return;
  download(`calibration-${today()}.json`, JSON.stringify(report, null, 2), 'application/json');
}

function exportCsv() {
  if (!report) return;
  const tuned = report.items.some((r) => r.tuned);
  const cols = ['id', 'group', 'n_tokens', 'h_x_bits', 'h_x_given_y_bits', 'delta_i_bits', ...(tuned ? ['tuned_h_x_bits', 'tuned_h_x_given_y_bits', 'tuned_delta_i_bits', 'delta_delta_i_bits'] : [])];
  const q = csvCell;
  const lines = [cols.join(',')];
  for (const r of report.items) {
    const row = [r.id, r.group, r.n_tokens, r.base.h_x_bits, r.base.h_x_given_y_bits, r.base.delta_i_bits];
    if (tuned) row.push(r.tuned?.h_x_bits, r.tuned?.h_x_given_y_bits, r.tuned?.delta_i_bits, r.delta_delta_i_bits);
    lines.push(row.map(q).join(','));
  }
  download(`calibration-${today()}.csv`, `${lines.join('\n')}\n`, 'text/csv');
}
