// The Annotate panel's engine check: the data worker validates the stored records and measures
// the coverage of the valid ones; this draws the problems per record and the coverage chart.
import { h, showError, sentence, cssVar } from '../../lib/ui.js';
import { BarChart } from '../../lib/charts.js';
import { state, el } from './state.js';
import * as list from './list.js';
import * as editor from './editor.js';
import * as annotators from './annotators.js';

let chart;
let timer = 0;
let seq = 0;

export function init() {
  chart = new BarChart(el['cov-chart'], { height: 170, yLabel: '% of steps', threshold: 20, yRange: [0, 100] });
}

/** Checks the records again shortly (edits come in bursts). */
export function scheduleStatus() {
  clearTimeout(timer);
  timer = setTimeout(refreshStatus, 200);
}

export async function refreshStatus() {
  const { app } = state;
  if (!app.data) return;
  const mine = ++seq;
  const snapshot = state.rows.slice();
  let s, schema;
  try {
    [s, schema] = await Promise.all([app.data.call('annotationsStatus', { records: snapshot.map((r) => r.record) }), app.schema]);
  } catch (e) {
    showError(el['ann-list-error'], `Could not check the records: ${e.message}`);
    return;
  }
  if (mine !== seq) return; // a newer check is on its way
  const problems = new Map();
  for (const e of s.errors) {
    const row = snapshot[e.index];
    if (!row) continue;
    if (!problems.has(row.key)) problems.set(row.key, []);
    problems.get(row.key).push(e);
  }
  state.problems = problems;
  // Which records are of the same work, and who rated it: the engine groups them.
  try {
    const valid = snapshot.filter((r) => !problems.has(r.key)).map((r) => r.record);
    const { agreement } = await app.data.call('studyAgreement', { records: valid, models: [], options: { bootstrap: 0 } });
    if (mine !== seq) return;
    annotators.setTable(agreement.table);
  } catch (e) {
    showError(el['ann-list-error'], `Could not group the records by work: ${e.message}`);
  }
  list.renderList();
  list.renderCount();
  editor.renderProblems();
  editor.renderRaters();
  renderCoverage(s.coverage, schema.dimensions);
  app.emit('annotations', state.rows);
}

function renderCoverage(cov, dimensions) {
  const dims = cov?.dimensions || {};
  const colors = { craft: cssVar('--craft') || '#4f46e5', audience: cssVar('--audience') || '#0e7490', reality: cssVar('--reality') || '#b45309' };
  chart.update(dimensions, dimensions.map((d, i) => ({
    label: d, color: colors[d], values: dimensions.map((_, j) => (i === j ? 100 * (dims[d]?.share || 0) : null)),
  })));
  el['cov-list'].replaceChildren(...dimensions.map((d) => h('li', { class: `cov-${d}` },
    h('span', { class: 'cov-name', text: d }),
    h('span', { class: 'cov-value', text: `${dims[d]?.steps ?? 0} steps · ${Math.round(100 * (dims[d]?.share || 0))}%` }))));
  const total = cov ? `${cov.steps} steps in ${cov.records} valid record${cov.records === 1 ? '' : 's'}` : '';
  el['cov-chart'].setAttribute('aria-label', `Share of reasoning steps per dimension: ${dimensions.map((d) => `${d} ${Math.round(100 * (dims[d]?.share || 0))}%`).join(', ')}. ${total}`);
  el['cov-warnings'].replaceChildren(
    ...(total ? [h('li', { class: 'cov-total', text: total })] : []),
    ...(cov?.warnings || []).map((w) => h('li', { class: 'warning', text: sentence(w) })));
}
