// Compare panel: base and tuned stream side by side (appreciation of a passage, or generation to
// a brief), a judge (the tuned model critiques both generations), and the per-token log-prob
// shift of a passage, tuned − base.
import { $, h, announce, showError, sentence, readNumber, fmtInt, fmt1, getPref, setPref } from '../lib/ui.js';
import { renderHeatmap } from '../lib/heatmap.js';
import { fillAdapterSelect, adapterPayload } from '../lib/adapters.js';
import * as train from './train.js';
import * as annotate from './annotate.js';

let app;
const el = {};
let jobId = null;
let last = null; // {mode, brief, base, tuned} of the last finished comparison

export function init(a) {
  app = a;
  for (const id of ['compare-form', 'c-adapter', 'c-appreciation', 'c-generation', 'c-pick', 'c-brief', 'c-audience', 'c-genre', 'c-work',
    'c-prompt', 'c-temp', 'c-topp', 'c-topk', 'c-rep', 'c-max', 'c-seed', 'c-run', 'c-stop', 'c-judge', 'compare-error',
    'c-base', 'c-tuned', 'c-base-stats', 'c-tuned-stats', 'c-judge-base', 'c-judge-tuned',
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
  el['c-pick'].replaceChildren(h('option', { value: '', text: rows.length ? '— pick a record to fill the fields —' : '— no annotations yet —' }),
    ...rows.map((r) => h('option', { value: r.key, text: `${r.record.id}: ${(r.record.work || '').replace(/\s+/g, ' ').slice(0, 60)}` })));
  if (rows.some((r) => r.key === keep)) el['c-pick'].value = keep;
}

function pick() {
  const row = annotate.allRows().find((r) => r.key === el['c-pick'].value);
  if (!row) return;
  const r = row.record;
  el['c-brief'].value = r.brief || '';
  el['c-audience'].value = r.audience || '';
  el['c-genre'].value = r.genre || '';
  el['c-work'].value = r.work || '';
  for (const id of ['c-brief', 'c-audience', 'c-genre', 'c-work']) el[id].dispatchEvent(new Event('input'));
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
  try {
    const job = app.runEngine('compare', 'comparing base and tuned', 'compare', payload, {
      onEvent(ev) {
        const o = out[ev.side];
        if (!o) return;
        if (ev.type === 'token') {
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
    announce(`Done: base ${r.base.count} tokens${r.tuned ? `, tuned ${r.tuned.count} tokens` : ''}.`);
  } catch (e) {
    showError(el['compare-error'], e.message);
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
  try {
    const job = app.runEngine('judge', 'judging', 'judge', {
      brief: last.brief, audience: '', genre: '', works: { base: last.base?.text || '', tuned: last.tuned?.text || '' },
      params: { ...last.params, temperature: 0 }, adapter,
    }, {
      onEvent(ev) { if (ev.type === 'token' && texts[ev.side]) texts[ev.side].appendData(ev.text); },
    });
    jobId = app.state.job?.id ?? null;
    updateControls();
    const r = await job;
    const who = r.judge === 'tuned' ? 'the tuned model' : 'the base model (no adapter chosen)';
    for (const side of ['base', 'tuned']) {
      const o = out[side];
      const j = r[side];
      if (!j) continue;
      const score = Number.isInteger(j.score) ? `${j.score}/10` : 'no verdict found';
      o.judge.firstChild.replaceChildren(h('strong', { text: `Verdict by ${who}: ` }), h('span', { class: 'score', text: score }));
    }
    announce(`Judged: base ${r.base?.score ?? 'none'}, tuned ${r.tuned?.score ?? 'none'}.`);
  } catch (e) {
    showError(el['compare-error'], `Judging failed: ${sentence(e.message)}`);
  } finally {
    jobId = null;
    updateControls();
  }
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
