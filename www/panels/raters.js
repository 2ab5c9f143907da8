// Agreement among annotators (the Calibrate tab's last section): the stored records of the same
// works by different experts, Krippendorff's α, each pair of annotators, and everyone (models
// included) against the other humans on one chart. Every number and the chart come from the
// engine (`studyAgreement` in the data worker, `cqa agreement --json`); this module only lays
// them out. The models are the ones measured in "Agreement with the expert": their expected
// scores per record, and, for an adapter, the records it trained on, whose works do not count.
import { $, h, announce, showError, download, num, fmt2, today } from '../lib/ui.js';
import * as annotate from './annotate/index.js';
import * as agreement from './agreement.js';
import * as train from './train.js';

let app;
const el = {};
let current = null; // {agreement, chart_svg, models} as last computed
let timer = null;
let generation = 0;

export const BOOTSTRAP = 1000;

export function init(a) {
  app = a;
  for (const id of ['rt-status', 'rt-error', 'rt-alpha', 'rt-chart', 'rt-pairs', 'rt-models', 'rt-note', 'rt-export', 'rt-models-note']) el[id] = $(id);
  el['rt-export'].addEventListener('click', exportJson);
  const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 250); };
  app.on('annotations', later);
  app.on('agreement-report', later);
  app.on('tab', (t) => { if (t === 'calibrate') later(); });
  later();
}

/** The last computed agreement (for the study file and the report). */
export const last = () => current;

const validRecords = () => {
  const bad = annotate.problemKeys();
  return annotate.allRows().filter((r) => !bad.has(r.key)).map((r) => r.record);
};

/** The models measured in "Agreement with the expert", as raters: base and, if measured, tuned. */
function modelRaters(records) {
  const report = agreement.lastReport();
  if (!report?.records?.length) return [];
  const out = [];
  for (const side of ['base', 'tuned']) {
    const scores = {};
    for (const r of report.records) if (r[side] && Number.isFinite(r[side].expected)) scores[r.id] = r[side].expected;
    if (!Object.keys(scores).length) continue;
    let trainedOn = [];
    if (side === 'tuned') {
      // The adapter's training records: those of its run that were not held out.
      const adapter = train.list().find((a) => a.name === report.adapter);
      const held = new Set(adapter?.info?.held_out_ids || []);
      const ids = new Set((adapter?.info?.records || []).filter((id) => !held.has(id)));
      trainedOn = records.filter((r) => ids.has(r.id));
    }
    out.push({ name: side === 'base' ? 'base' : report.adapter || 'tuned', scores, trained_on: trainedOn });
  }
  return out;
}

async function refresh() {
  const mine = ++generation;
  showError(el['rt-error'], '');
  const records = validRecords();
  const models = modelRaters(records);
  let result;
  try {
    result = await app.data.call('studyAgreement', { records, models, options: { bootstrap: BOOTSTRAP } });
  } catch (e) {
    if (mine === generation) showError(el['rt-error'], `Could not measure the agreement: ${e.message}`);
    return;
  }
  if (mine !== generation) return;
  current = { ...result, models: models.map((m) => ({ name: m.name, scores: m.scores, trained_on: m.trained_on.map((r) => r.id) })) };
  render(result);
  app.emit('raters', current);
}

const ci = (e) => (e.ci_low === null || e.ci_high === null ? 'no interval' : `[${num(e.ci_low)}, ${num(e.ci_high)}]`);
const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

function render({ agreement: a, chart_svg: svg }) {
  const t = a.table;
  el['rt-status'].textContent = `${plural(t.raters.length, 'annotator')}, ${plural(t.items.length, 'work')}, ${a.shared_items} rated by two or more`;
  el['rt-export'].disabled = false;
  const level = Math.round(a.level * 100);
  el['rt-alpha'].replaceChildren(...[['interval', a.alpha_interval], ['ordinal', a.alpha_ordinal]].map(([name, e]) => h('tr', { dataset: { alpha: name } },
    h('th', { scope: 'row', text: `Krippendorff’s α (${name})` }),
    h('td', { class: 'num', dataset: { value: e.value ?? '' }, text: num(e.value, fmt2) }),
    h('td', { class: 'num ci', text: `${level} % CI ${ci(e)}` }))));
  // The engine's SVG (the report draws the same), parsed as XML and adopted as nodes: never
  // through innerHTML. It holds numbers, escaped names and shapes only.
  const parsed = new DOMParser().parseFromString(svg, 'image/svg+xml').documentElement;
  el['rt-chart'].replaceChildren(parsed.nodeName === 'svg' ? document.importNode(parsed, true) : '');
  el['rt-pairs'].replaceChildren(...(a.pairs.length ? a.pairs : []).map((p) => h('tr', {},
    h('th', { scope: 'row', text: `${p.a} ~ ${p.b}` }), h('td', { class: 'num', text: String(p.n) }),
    h('td', { class: 'num' }, num(p.spearman.value), ' ', h('span', { class: 'ci', text: ci(p.spearman) })),
    h('td', { class: 'num' }, num(p.mae.value), ' ', h('span', { class: 'ci', text: ci(p.mae) })))));
  if (!a.pairs.length) el['rt-pairs'].replaceChildren(h('tr', {}, h('td', { colspan: 4, class: 'hint', text: 'No two annotators have rated the same work yet. Records of the same work (the same text, or the same work id) by different experts are compared: in Annotate, load the bundled samples and a second annotator’s samples to see how.' })));
  el['rt-models'].replaceChildren(...a.models.flatMap((m) => m.leave_one_out.map((l) => h('tr', {},
    h('th', { scope: 'row', text: `${m.name} without ${l.left_out}` }), h('td', { class: 'num', text: String(l.n) }),
    h('td', { class: 'num' }, num(l.model_spearman.value), ' ', h('span', { class: 'ci', text: ci(l.model_spearman) })),
    h('td', { class: 'num' }, num(l.human_spearman.value), ' ', h('span', { class: 'ci', text: ci(l.human_spearman) })),
    h('td', { class: 'num' }, num(l.spearman_model_minus_human.value), ' ', h('span', { class: 'ci', text: ci(l.spearman_model_minus_human) }))))));
  el['rt-models-note'].textContent = a.models.length
    ? a.models.map((m) => `${m.name} rated ${plural(m.items, 'work')}${m.excluded_trained ? `; ${plural(m.excluded_trained, 'work')} left out because it trained on them` : ''}.`).join(' ')
    : 'Measure “Agreement with the expert” above to place the models among the annotators.';
  const notes = [`Intervals: percentile bootstrap over the works, ${a.bootstrap} resamples (seed ${a.seed}).`];
  if (t.warnings.length) notes.push(...t.warnings);
  el['rt-note'].textContent = notes.join(' ');
}

function exportJson() {
  if (!current) return;
  download(`annotator-agreement-${today()}.json`, JSON.stringify({ created: new Date().toISOString(), ...current.agreement, models_input: current.models }, null, 2), 'application/json');
  announce('Annotator agreement exported.');
}
