// Compare panel: base and tuned stream side by side (appreciation of a passage, or generation to
// a brief), each model's verdict as a distribution over 1–10 after its critique, a judge (the
// tuned model critiques both generations and gives its verdict distribution for each), and the
// per-token log-prob shift of a passage, tuned − base.
import { $, h, replaceAll, announce, showError, sentence, readNumber, fmtInt, fmt1, getPref, setPref } from '../lib/ui.js';
import { renderHeatmap } from '../lib/heatmap.js';
import { renderVerdicts } from '../lib/verdict-chart.js';
import { fillAdapterSelect, adapterPayload } from '../lib/adapters.js';
import * as train from './train.js';
import * as annotate from './annotate/index.js';

let app;
const el = {};
let jobId = null;
let last = null; // {mode, brief, base, tuned} of the last finished comparison
let picked = null; // the annotation record last picked to fill the fields

export function init(a) {
  app = a;
  for (const id of ['compare-form', 'c-adapter', 'c-appreciation', 'c-generation', 'c-pick', 'c-brief', 'c-audience', 'c-genre', 'c-work',
    'c-prompt', 'c-temp', 'c-topp', 'c-topk', 'c-rep', 'c-max', 'c-seed', 'c-run', 'c-stop', 'c-judge', 'compare-error',
    'c-base', 'c-tuned', 'c-base-stats', 'c-tuned-stats', 'c-judge-base', 'c-judge-tuned', 'c-verdicts', 'c-verdict', 'c-judge-verdict',
    'shift-form', 's-context', 's-text', 's-run', 's-use-work', 's-use-tuned', 's-result', 'shift-error']) el[id] = $(id);

  const mode = getPref('compare-mode', 'appreciation');
  for (const r of document.querySelectorAll('input[name="c-mode"]')) {
    r.checked = r.value === mode;
    r.addEventListener('change', () => { setPref('compare-mode', currentMode()); showMode(); });
  }
  showMode();
  el['compare-form'].addEventListener('submit', (e) => { e.preventDefault(); runCompare(); });
  el['c-stop'].addEventListener('click', () => { if (jobId !== null) app.engine.send({ type: 'stop', target: jobId }); });
  el['c-judge'].addEventListener('click', runJudge);
  el['c-pick'].addEventListener('change', pick);
  el['shift-form'].addEventListener('submit', (e) => { e.preventDefault(); runShift(); });
  el['s-use-work'].addEventListener('click', () => {
    const gen = currentMode() === 'generation';
    el['s-text'].value = gen ? '' : el['c-work'].value;
    el['s-context'].value = gen ? el['c-prompt'].value : '';
    for (const id of ['s-text', 's-context']) el[id].dispatchEvent(new Event('input'));
  });
  el['s-use-tuned'].addEventListener('click', () => {
    el['s-text'].value = last?.tuned?.text || '';
    el['s-text'].dispatchEvent(new Event('input'));
  });

  app.on('engine', updateControls);
  app.on('adapters', (list) => { fillAdapterSelect(el['c-adapter'], list, 'compare-adapter'); updateControls(); });
  app.on('annotations', fillPicker);
  fillAdapterSelect(el['c-adapter'], train.list(), 'compare-adapter');
}

const currentMode = () => document.querySelector('input[name="c-mode"]:checked')?.value || 'appreciation';

function showMode() {
  const gen = currentMode() === 'generation';
  el['c-appreciation'].hidden = gen;
  el['c-generation'].hidden = !gen;
  updateControls();
}

function updateControls() {
  const running = app.state.job && (app.state.job.kind === 'compare' || app.state.job.kind === 'judge');
  el['c-run'].disabled = !app.ready();
  el['c-run'].title = app.blocker() || '';
  el['c-stop'].disabled = !running;
  el['c-judge'].disabled = !app.ready() || !last || last.mode !== 'generation' || !(last.base?.text || last.tuned?.text);
  el['s-run'].disabled = !app.ready() || !el['c-adapter'].value;
  el['s-run'].title = !el['c-adapter'].value ? 'Choose an adapter: the shift is tuned − base' : (app.blocker() || '');
  el['s-use-tuned'].disabled = !last?.tuned?.text;
}

function fillPicker() {
  const rows = annotate.allRows();
  const keep = el['c-pick'].value;
  replaceAll(el['c-pick'], [h('option', { value: '', text: rows.length ? '— pick a record to fill the fields —' : '— no annotations yet —' }),
    ...rows.map((r) => h('option', { value: r.key, text: `${r.record.id}: ${(r.record.work || '').replace(/\s+/g, ' ').slice(0, 60)}` }))]);
  if (rows.some((r) => r.key === keep)) el['c-pick'].value = keep;
}

function pick() {
  const row = annotate.allRows().find((r) => r.key === el['c-pick'].value);
  if (!row) return;
  const r = row.record;
  picked = r;
  el['c-brief'].value = r.brief || '';
  el['c-audience'].value = r.audience || '';
  el['c-genre'].value = r.genre || '';
  el['c-work'].value = r.work || '';
  for (const id of ['c-brief', 'c-audience', 'c-genre', 'c-work']) el[id].dispatchEvent(new Event('input'));
}

/** The expert's score when the passage is still exactly the picked record's, else null. */
function expertScore(p) {
  const r = picked;
  const norm = (t) => String(t || '').replace(/\s+/g, ' ').trim(); // inputs drop line breaks
  const same = r && ['brief', 'audience', 'genre', 'work'].every((k) => norm(r[k]) === norm(p[k]));
  const score = same ? Number(r.verdict?.score) : NaN;
  return Number.isInteger(score) && score >= 1 && score <= 10 ? score : null;
}

/** Clears the verdict section (both blocks); `show` keeps the section itself visible. */
function clearVerdicts(show) {
  for (const id of ['c-verdict', 'c-judge-verdict']) { el[id].replaceChildren(); el[id].hidden = true; }
  el['c-verdicts'].hidden = !show;
}

/** Marks the series still waiting for a distribution as failed (the job ended without one). */
function settle(entries, why) {
  for (const k of ['base', 'tuned']) if (entries[k] && !entries[k].dist && !entries[k].error) entries[k] = { error: why };
}

function readParams() {
  const problems = [];
  const get = (id, rule, msg) => { const v = readNumber(el[id], rule); if (v === null) problems.push(msg); return v; };
  const params = {
    temperature: get('c-temp', { min: 0, max: 5 }, 'Temperature must be between 0 and 5.'),
    top_p: get('c-topp', { above: 0, max: 1 }, 'Top-p must be above 0 and at most 1.'),
    top_k: get('c-topk', { min: 0, integer: true }, 'Top-k must be a whole number ≥ 0.'),
    repetition_penalty: get('c-rep', { min: 1, max: 2 }, 'The repetition penalty must be between 1 and 2.'),
    max_new_tokens: get('c-max', { min: 1, max: 2048, integer: true }, 'Max tokens must be a whole number from 1 to 2048.'),
    seed: get('c-seed', { min: 0, integer: true }, 'The seed must be a whole number ≥ 0.'),
  };
  return { params, problems };
}

function outputs() {
  return {
    base: { box: el['c-base'], stats: el['c-base-stats'], judge: el['c-judge-base'] },
    tuned: { box: el['c-tuned'], stats: el['c-tuned-stats'], judge: el['c-judge-tuned'] },
  };
}

const REASONS = { end_of_sequence: 'ended', max_tokens: 'max tokens', context_full: 'context full', stopped: 'stopped' };

async function runCompare() {
  showError(el['compare-error'], '');
  const { params, problems } = readParams();
  const mode = currentMode();
  const payload = { mode, params };
  if (mode === 'generation') {
    payload.prompt = el['c-prompt'].value;
    if (!payload.prompt.trim()) problems.unshift('Write a brief first.');
  } else {
    Object.assign(payload, { brief: el['c-brief'].value, audience: el['c-audience'].value, genre: el['c-genre'].value, work: el['c-work'].value });
    if (!payload.work.trim()) problems.unshift('Give a passage to critique (or pick an annotation).');
  }
  if (problems.length) { showError(el['compare-error'], problems.join(' ')); return; }
  const adapters = train.list();
  payload.adapter = adapterPayload(el['c-adapter'], adapters);
  const out = outputs();
  const texts = {};
  for (const [side, o] of Object.entries(out)) {
    o.box.replaceChildren();
    texts[side] = document.createTextNode('');
    o.box.append(texts[side]);
    o.stats.textContent = '';
    o.judge.hidden = true;
    o.box.setAttribute('aria-busy', side === 'tuned' && !payload.adapter ? 'false' : 'true');
  }
  if (!payload.adapter) out.tuned.box.replaceChildren(h('span', { class: 'hint', text: 'Choose an adapter to see the tuned model here.' }));
  last = null;
  // Appreciation: each model's verdict distribution, drawn as each arrives.
  const verdicts = mode === 'generation' ? null : { expert: expertScore(payload), base: { pending: 'waiting for its critique to end…' }, tuned: payload.adapter ? { pending: 'waiting for its critique to end…' } : null };
  const drawVerdicts = () => renderVerdicts(el['c-verdict'], {
    title: 'Each model’s verdict, as a distribution over 1–10',
    expert: verdicts.expert,
    series: [['base', 'Base'], ['tuned', 'Tuned']].filter(([k]) => verdicts[k]).map(([key, label]) => ({ key, label, ...verdicts[key] })),
  });
  clearVerdicts(Boolean(verdicts));
  if (verdicts) drawVerdicts();
  try {
    const job = app.runEngine('compare', 'comparing base and tuned', 'compare', payload, {
      onEvent(ev) {
        const o = out[ev.side];
        if (!o) return;
        if (ev.type === 'verdict' && verdicts) {
          verdicts[ev.side] = { dist: ev.verdict, error: ev.error };
          drawVerdicts();
        } else if (ev.type === 'token') {
          texts[ev.side].appendData(ev.text);
          o.stats.textContent = `${fmtInt.format(ev.count)} tokens${ev.tokensPerSecond > 0 ? ` · ${fmt1.format(ev.tokensPerSecond)} tok/s` : ''}`;
        } else if (ev.type === 'side-done') {
          o.box.setAttribute('aria-busy', 'false');
          o.stats.textContent = `${fmtInt.format(ev.count)} tokens · ${REASONS[ev.reason] || ev.reason}`;
        } else if (ev.type === 'progress' && ev.message) {
          o.stats.textContent = ev.message;
        }
      },
    });
    jobId = app.state.job?.id ?? null;
    updateControls();
    const r = await job;
    last = { mode, brief: payload.prompt || payload.brief, audience: payload.audience, genre: payload.genre, params, base: r.base, tuned: r.tuned };
    let said = `Done: base ${r.base.count} tokens${r.tuned ? `, tuned ${r.tuned.count} tokens` : ''}.`;
    if (verdicts) {
      for (const side of ['base', 'tuned']) {
        if (!r[side] || !verdicts[side]) continue;
        verdicts[side] = r[side].verdict || r[side].verdict_error
          ? { dist: r[side].verdict, error: r[side].verdict_error }
          : { error: r[side].reason === 'stopped' ? 'stopped before the verdict' : 'none computed' };
      }
      drawVerdicts();
      const e = (side) => (verdicts[side]?.dist ? fmt1.format(verdicts[side].dist.expected) : null);
      if (e('base')) said += ` Expected score: base ${e('base')}${e('tuned') ? `, tuned ${e('tuned')}` : ''}.`;
    }
    announce(said);
  } catch (e) {
    showError(el['compare-error'], e.message);
    if (verdicts) { settle(verdicts, 'the comparison did not finish'); drawVerdicts(); }
  } finally {
    jobId = null;
    for (const o of Object.values(out)) o.box.setAttribute('aria-busy', 'false');
    updateControls();
  }
}

async function runJudge() {
  if (!last) return;
  showError(el['compare-error'], '');
  const adapters = train.list();
  const adapter = adapterPayload(el['c-adapter'], adapters);
  const out = outputs();
  const texts = {};
  for (const [side, o] of Object.entries(out)) {
    texts[side] = document.createTextNode('');
    o.judge.replaceChildren(h('p', { class: 'judge-score', text: 'Judging…' }), h('p', { class: 'judge-text' }, texts[side]));
    o.judge.hidden = !last[side]?.text;
  }
  const judged = { base: last.base?.text ? { pending: 'waiting for the judge’s critique…' } : null, tuned: last.tuned?.text ? { pending: 'waiting for the judge’s critique…' } : null };
  let judgeName = adapter ? 'tuned' : 'base';
  const drawJudged = () => renderVerdicts(el['c-judge-verdict'], {
    title: `The ${judgeName} judge’s verdict on each generation`,
    headline: judgeHeadline(judgeName, judged),
    series: [['base', 'Base text'], ['tuned', 'Tuned text']].filter(([k]) => judged[k]).map(([key, label]) => ({ key, label, ...judged[key] })),
  });
  el['c-verdicts'].hidden = false;
  drawJudged();
  try {
    const job = app.runEngine('judge', 'judging', 'judge', {
      brief: last.brief, audience: '', genre: '', works: { base: last.base?.text || '', tuned: last.tuned?.text || '' },
      params: { ...last.params, temperature: 0 }, adapter,
    }, {
      onEvent(ev) {
        if (ev.type === 'token' && texts[ev.side]) texts[ev.side].appendData(ev.text);
        else if (ev.type === 'verdict' && judged[ev.side]) { judged[ev.side] = { dist: ev.verdict, error: ev.error }; drawJudged(); }
      },
    });
    jobId = app.state.job?.id ?? null;
    updateControls();
    const r = await job;
    const who = r.judge === 'tuned' ? 'the tuned model' : 'the base model (no adapter chosen)';
    judgeName = r.judge;
    for (const side of ['base', 'tuned']) {
      const o = out[side];
      const j = r[side];
      if (!j) continue;
      const score = Number.isInteger(j.score) ? `${j.score}/10` : 'no verdict found';
      o.judge.firstChild.replaceChildren(h('strong', { text: `Verdict written by ${who}: ` }), h('span', { class: 'score', text: score }),
        j.verdict ? ` · expected score ${fmt1.format(j.verdict.expected)}` : '');
      if (judged[side]) judged[side] = j.verdict || j.verdict_error ? { dist: j.verdict, error: j.verdict_error } : { error: 'stopped before the verdict' };
    }
    settle(judged, 'stopped before the verdict');
    drawJudged();
    announce(judgeHeadline(judgeName, judged) || `Judged: base ${r.base?.score ?? 'none'}, tuned ${r.tuned?.score ?? 'none'}.`);
  } catch (e) {
    showError(el['compare-error'], `Judging failed: ${sentence(e.message)}`);
    settle(judged, 'judging did not finish');
    drawJudged();
  } finally {
    jobId = null;
    updateControls();
  }
}

/** “The tuned judge’s expected score: base text 5.1 vs tuned text 6.3”, or '' before any. */
function judgeHeadline(judgeName, judged) {
  const e = (side) => (judged[side]?.dist ? fmt1.format(judged[side].dist.expected) : null);
  const parts = [['base', 'base text'], ['tuned', 'tuned text']].filter(([k]) => e(k)).map(([k, label]) => `${label} ${e(k)}`);
  return parts.length ? `The ${judgeName} judge’s expected score: ${parts.join(' vs ')}` : '';
}

async function runShift() {
  showError(el['shift-error'], '');
  const text = el['s-text'].value;
  if (!text.trim()) { showError(el['shift-error'], 'Give a passage to score'); return; }
  const adapter = adapterPayload(el['c-adapter'], train.list());
  if (!adapter) { showError(el['shift-error'], 'Choose an adapter: the shift is the tuned model’s log-prob minus the base model’s'); return; }
  try {
    const r = await app.runEngine('shift', 'scoring with base and tuned', 'shift', { text, context: el['s-context'].value, adapter });
    const n = r.base.logprobs.length;
    const offset = r.ids.length - n;
    const LN2 = Math.LN2;
    const tokens = r.texts.map((t, i) => {
      const j = i - offset;
      if (j < 0) return { text: t, value: null, detail: `“${t}”: not scored (nothing before it)` };
      const b = r.base.logprobs[j] / LN2;
      const tu = r.tuned.logprobs[j] / LN2;
      const d = tu - b;
      return { text: t, value: d, detail: `“${t}” (token ${i + 1}, id ${r.ids[i]}): base ${b.toFixed(2)} bits, tuned ${tu.toFixed(2)} bits, shift ${d >= 0 ? '+' : ''}${d.toFixed(2)} bits` };
    });
    renderHeatmap(el['s-result'], { title: 'Log-prob shift, tuned − base', tokens, legend: ['less expected after tuning', 'more expected'] });
    announce('Shift computed.');
  } catch (e) {
    showError(el['shift-error'], e.message);
  }
}
