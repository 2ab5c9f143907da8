// The verdict as a distribution over the scores 1–10 (the engine's VerdictDistribution), drawn
// as grouped SVG bars: for each score one bar per series (base and tuned model, or the base and
// tuned text under one judge), each series' expected score marked by a line and a label, and the
// expert's score, when known, as a shaded column. Sizes are SVG attributes and colours CSS
// classes (the CSP allows no inline styles); the numbers are in the figure's aria-label and in a
// table under it.
import { h, fmt1, fmt2 } from './ui.js';

const NS = 'http://www.w3.org/2000/svg';
const SCORES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const W = 560;
const H = 236;
const M = { left: 46, right: 14, top: 44, bottom: 34 };

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, typeof v === 'number' ? String(Math.round(v * 100) / 100) : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

/** The verdict mass, readable whether it is 0.31 or 3e-12. */
export const fmtMass = (m) => (!Number.isFinite(m) ? '–' : m === 0 ? '0' : m >= 0.01 ? fmt2.format(m) : m.toExponential(1));
const fmtP = (p) => (Number.isFinite(p) ? fmt2.format(p) : '–');

/** The top of the probability axis: the smallest step that leaves headroom above `max`. */
function axisTop(max) {
  for (const t of [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1]) if (max <= t * 0.95) return t;
  return 1;
}

/** One series in words, for the figure's text alternative. */
function describe(s) {
  const d = s.dist;
  return `${s.label}: ${SCORES.map((k) => `${k}: ${fmtP(d.p[k - 1])}`).join(', ')}; expected score ${fmt1.format(d.expected)}, most likely ${d.mode}`;
}

function chart(title, shown, expert) {
  const plotW = W - M.left - M.right;
  const plotH = H - M.top - M.bottom;
  const slot = plotW / 10;
  const barW = (slot * 0.72) / Math.max(1, shown.length);
  const top = axisTop(Math.max(0, ...shown.flatMap((s) => s.dist.p.filter(Number.isFinite))));
  const y = (p) => M.top + plotH * (1 - Math.min(Math.max(p, 0), top) / top);
  const x = (k) => M.left + slot * (k - 0.5); // the centre of score k; continuous for expected scores
  const base = M.top + plotH;
  const label = `${title}. ${shown.map(describe).join('. ')}.${expert ? ` The expert’s score: ${expert}.` : ''}`;
  const parts = [];
  if (expert) {
    parts.push(svg('rect', { class: 'vexpert-band', x: M.left + slot * (expert - 1), y: M.top, width: slot, height: plotH }));
  }
  for (const t of [0, top / 2, top]) {
    parts.push(svg('line', { class: 'vgrid', x1: M.left, x2: W - M.right, y1: y(t), y2: y(t) }));
    parts.push(svg('text', { class: 'vtick', x: M.left - 6, y: y(t) + 4, 'text-anchor': 'end' }, fmtP(t)));
  }
  parts.push(svg('text', { class: 'vaxis', x: 12, y: M.top + plotH / 2, 'text-anchor': 'middle', transform: `rotate(-90 12 ${M.top + plotH / 2})` }, 'probability'));
  shown.forEach((s, i) => {
    for (const k of SCORES) {
      const p = s.dist.p[k - 1];
      const top_ = y(Number.isFinite(p) ? p : 0);
      parts.push(svg('rect', {
        class: `vbar vbar-${s.key}`, 'data-series': s.key, 'data-score': k,
        x: x(k) - (barW * shown.length) / 2 + i * barW, y: top_, width: Math.max(1, barW - 1), height: base - top_,
      }, svg('title', {}, `${s.label}: p(${k}) = ${fmtP(p)}`)));
    }
  });
  for (const k of SCORES) {
    parts.push(svg('text', { class: `vscore${k === expert ? ' vscore-expert' : ''}`, x: x(k), y: base + 15, 'text-anchor': 'middle' }, String(k)));
  }
  if (expert) parts.push(svg('text', { class: 'vexpert-label', x: x(expert), y: base + 29, 'text-anchor': 'middle' }, 'expert'));
  // Expected scores: a label above the plot, one row per series, and a line down through it.
  const below = 14 + (shown.length - 1) * 15 + 5;
  shown.forEach((s, i) => {
    const cx = x(Math.min(10, Math.max(1, s.dist.expected)));
    const ly = 14 + i * 15;
    parts.push(svg('line', { class: `vexp vexp-${s.key}`, x1: cx, x2: cx, y1: below, y2: base }));
    parts.push(svg('circle', { class: `vexp-dot vexp-${s.key}`, cx, cy: M.top, r: 3.5 }));
    const lx = Math.min(W - M.right - 40, Math.max(M.left + 40, cx));
    parts.push(svg('text', { class: `vexp-label vexp-${s.key}`, x: lx, y: ly, 'text-anchor': 'middle' }, `${s.label} ${fmt1.format(s.dist.expected)}`));
  });
  return svg('svg', { class: 'verdict-svg', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, preserveAspectRatio: 'xMidYMid meet' }, ...parts);
}

/**
 * Draws the distributions into `container` (replacing what was there).
 * series: [{key ('base' | 'tuned': the colour), label, dist (VerdictDistribution) | null,
 * error?, pending?}]; expert: the expert's score (1–10) or null; headline: a sentence above.
 */
export function renderVerdicts(container, { title, series, expert = null, headline = '' }) {
  const shown = series.filter((s) => s.dist && Array.isArray(s.dist.p));
  const legend = h('ul', { class: 'legend verdict-legend', 'aria-hidden': 'true' },
    ...shown.map((s) => h('li', {}, h('span', { class: `swatch swatch-${s.key}` }), s.label)),
    expert ? h('li', {}, h('span', { class: 'swatch swatch-expert' }), `the expert’s score (${expert})`) : null,
    shown.length ? h('li', { class: 'legend-title', text: 'lines: expected scores' }) : null);
  const stats = h('div', { class: 'verdict-stats' }, ...series.map((s) => {
    const head = h('strong', {}, h('span', { class: `swatch swatch-${s.key}`, 'aria-hidden': 'true' }), `${s.label}: `);
    if (!s.dist) {
      return h('p', { class: 'verdict-expected', dataset: { series: s.key, state: s.error ? 'error' : 'pending' } }, head,
        s.error ? `no distribution (${s.error})` : (s.pending || 'waiting…'));
    }
    const d = s.dist;
    return h('p', { class: 'verdict-expected', dataset: { series: s.key, state: 'done' } }, head,
      'expected score ', h('b', { class: 'verdict-number', text: fmt1.format(d.expected) }), ` · most likely ${d.mode}`,
      h('br'), h('small', { text: `entropy ${fmt2.format(d.entropy_bits)} bits · mass ${fmtMass(d.verdict_mass)}: how strongly the model expected a verdict line` }));
  }));
  const table = shown.length ? h('details', { class: 'verdict-table' },
    h('summary', { text: 'The probabilities as a table' }),
    h('table', { class: 'data compact' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Score' }), ...shown.map((s) => h('th', { scope: 'col', class: 'num', text: s.label })))),
      h('tbody', {}, ...SCORES.map((k) => h('tr', { class: k === expert ? 'selected' : null },
        h('th', { scope: 'row', text: k === expert ? `${k} (expert)` : String(k) }),
        ...shown.map((s) => h('td', { class: 'num', text: fmtP(s.dist.p[k - 1]) }))))))) : null;
  container.replaceChildren(...[
    h('h3', { class: 'verdict-title', text: title }),
    headline ? h('p', { class: 'verdict-headline', text: headline }) : null,
    shown.length ? legend : null,
    h('div', { class: 'verdict-figure' }, shown.length ? chart(title, shown, expert) : null, stats),
    table,
    shown.length ? h('p', { class: 'hint', text: 'After the critique, the model scores the ten lines “Verdict: 1/10” … “Verdict: 10/10”; the bars are those probabilities, normalised. Entropy: how spread the belief is (3.32 bits is uniform). Mass: their total probability before normalising.' }) : null,
  ].filter(Boolean));
  container.hidden = false;
}
