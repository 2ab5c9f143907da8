// A per-token heatmap: each token of a passage coloured by a value in bits (diverging: one hue
// for positive, another for negative), with its numbers in a tooltip (title) and a table of the
// largest values beside it for keyboard and screen-reader users.
import { h, fmt2 } from './ui.js';

const STEPS = [-2, -0.5, 0.5, 2];
const bucket = (v) => {
  if (v === null || v === undefined || !Number.isFinite(v)) return 'hx';
  let i = 0;
  while (i < STEPS.length && v >= STEPS[i]) i++;
  return ['hn2', 'hn1', 'h0', 'hp1', 'hp2'][i];
};
const visible = (t) => String(t ?? '').replace(/\n/g, '↵\n');
const signed = (v) => (v > 0 ? `+${fmt2.format(v)}` : fmt2.format(v));

/**
 * tokens: [{text, value (bits or null when not scored), detail (tooltip text)}].
 * legend: [negativeMeaning, positiveMeaning].
 */
export function renderHeatmap(container, { title, tokens, legend, unit = 'bits' }) {
  const scored = tokens.filter((t) => Number.isFinite(t.value));
  const mean = scored.length ? scored.reduce((s, t) => s + t.value, 0) / scored.length : NaN;
  const total = scored.reduce((s, t) => s + t.value, 0);
  const map = h('p', { class: 'heatmap', tabindex: 0, role: 'group', 'aria-label': `${title}: ${scored.length} scored tokens, mean ${Number.isFinite(mean) ? signed(mean) : '–'} ${unit} per token. The table below lists the largest values.` },
    ...tokens.map((t, i) => h('span', { class: `tok ${bucket(t.value)}`, title: t.detail || `token ${i + 1}: ${Number.isFinite(t.value) ? `${signed(t.value)} ${unit}` : 'not scored'}`, text: visible(t.text) })));
  const legendEl = h('div', { class: 'legend heat-legend', 'aria-hidden': 'true' },
    h('span', { class: 'legend-title', text: legend[0] }),
    ...['hn2', 'hn1', 'h0', 'hp1', 'hp2'].map((c, i) => h('span', { class: `chip-swatch ${c}`, text: ['≤ −2', '−2…−0.5', '±0.5', '0.5…2', '≥ 2'][i] })),
    h('span', { class: 'legend-title', text: legend[1] }));
  const ranked = scored.map((t, i) => ({ ...t, i })).sort((a, b) => Math.abs(b.value) - Math.abs(a.value)).slice(0, 8);
  const table = h('table', { class: 'data compact' },
    h('caption', { text: 'Largest values' }),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: 'Token' }), h('th', { scope: 'col', text: unit }))),
    h('tbody', {}, ...ranked.map((t) => h('tr', {}, h('td', {}, h('code', { text: JSON.stringify(t.text) })), h('td', { class: 'num', text: signed(t.value) })))));
  container.replaceChildren(
    h('h3', { class: 'heat-title', text: title }),
    h('p', { class: 'hint', text: scored.length ? `${scored.length} scored tokens · total ${signed(total)} ${unit} · mean ${signed(mean)} ${unit}/token. Hover a token for its numbers.` : 'No scored tokens.' }),
    legendEl,
    h('div', { class: 'heat-wrap' }, map, table));
  container.hidden = false;
}
