// uPlot charts used by the panels: a category bar chart (coverage, per-item benchmark values)
// and a line chart (loss). Each chart follows its container's width and re-reads the theme's
// colours. The charts are drawn on canvas: every panel also shows the numbers as text.
import uPlot from '../vendor/uPlot.esm.js';
import { cssVar } from './ui.js';

const charts = new Set();
const ro = new ResizeObserver((entries) => {
  for (const e of entries) {
    for (const c of charts) {
      if (c.container === e.target && c.plot) {
        const w = Math.floor(e.contentRect.width);
        if (w > 0 && w !== c.plot.width) c.plot.setSize({ width: w, height: c.height });
      }
    }
  }
});

function axisStyle(small = false) {
  const text = cssVar('--muted') || '#5b6275';
  const grid = cssVar('--border') || '#d9dde7';
  return { stroke: text, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: `${small ? 11 : 12}px system-ui, sans-serif`, labelFont: 'bold 11px system-ui, sans-serif' };
}

class Chart {
  constructor(container, height) {
    this.container = container;
    this.height = height;
    this.plot = null;
    charts.add(this);
    ro.observe(container);
  }
  width() { return Math.max(200, Math.floor(this.container.clientWidth || this.container.getBoundingClientRect().width || 320)); }
  replace(opts, data) {
    if (this.plot) this.plot.destroy();
    this.plot = new uPlot({ ...opts, width: this.width(), height: this.height }, data, this.container);
  }
}

/**
 * Bars for categories. `groups`: [{label, color, values: (number|null)[] aligned with
 * `categories`}] — one uPlot series each, so a category is coloured by its group.
 */
export class BarChart extends Chart {
  constructor(container, { height = 180, yLabel = '', threshold = null, yRange = null } = {}) {
    super(container, height);
    this.yLabel = yLabel;
    this.threshold = threshold;
    this.yRange = yRange;
  }
  update(categories, groups) {
    const x = categories.map((_, i) => i);
    // Each category belongs to one group (the others hold null there), so bars never overlap.
    const bars = uPlot.paths.bars({ size: [0.6, 80], align: 0 });
    const threshold = this.threshold;
    const axis = axisStyle(true);
    const opts = {
      legend: { show: false },
      cursor: { show: true, drag: { x: false, y: false }, points: { show: false } },
      scales: {
        x: { time: false, range: () => [-0.5, Math.max(0.5, categories.length - 0.5)] },
        y: { range: this.yRange ? () => this.yRange : (u, min, max) => [Math.min(0, min ?? 0), Math.max(0, max ?? 1) * 1.1 || 1] },
      },
      axes: [
        { ...axis, values: (u, splits) => splits.map((s) => (Number.isInteger(s) ? (categories[s] ?? '') : '')), splits: () => x, gap: 4, size: 30, rotate: 0 },
        { ...axis, label: this.yLabel, size: 52, labelSize: 16 },
      ],
      series: [{}, ...groups.map((g) => ({
        label: g.label, stroke: g.color, fill: g.color, width: 0, paths: bars, points: { show: false },
      }))],
      hooks: {
        draw: [(u) => {
          if (threshold === null) return;
          const y = u.valToPos(threshold, 'y', true);
          const { ctx } = u;
          ctx.save();
          ctx.strokeStyle = cssVar('--warn') || '#a15c07';
          ctx.setLineDash([6, 4]);
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(u.bbox.left, y);
          ctx.lineTo(u.bbox.left + u.bbox.width, y);
          ctx.stroke();
          ctx.restore();
        }],
      },
    };
    this.replace(opts, [x, ...groups.map((g) => g.values)]);
  }
}

/** Lines over a shared x (e.g. steps): `series`: [{label, color, values, points}]. */
export class LineChart extends Chart {
  constructor(container, { height = 220, xLabel = '', yLabel = '' } = {}) {
    super(container, height);
    this.xLabel = xLabel;
    this.yLabel = yLabel;
  }
  update(x, series) {
    const axis = axisStyle();
    const opts = {
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: false }, y: { auto: true } },
      // Whole steps on the x axis.
      axes: [{ ...axis, label: this.xLabel, labelSize: 16, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000] },
        { ...axis, label: this.yLabel, size: 70, labelSize: 16 }],
      series: [{ label: this.xLabel || 'x' }, ...series.map((s) => ({
        label: s.label, stroke: s.color, width: 2, spanGaps: true,
        points: { show: s.points ?? x.length < 40, size: 6, fill: s.color },
        value: (u, v) => (v === null || v === undefined ? '–' : v.toFixed(4)),
      }))],
    };
    this.replace(opts, [x, ...series.map((s) => s.values)]);
  }
}
