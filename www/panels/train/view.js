// What the Train panel shows of a run: the metrics, the loss chart, the controls, the banner that
// offers a stopped run for resume and the one that offers an adapter this browser refused to
// store. It draws from the run's lifecycle (lib/training-run.js), the run's record and the lock;
// it changes none of them.
import { fmt3, fmtInt, duration, cssVar } from '../../lib/ui.js';
import { LineChart } from '../../lib/charts.js';
import { isActive } from '../../lib/training-run.js';
import * as annotate from '../annotate/index.js';
import { ELSEWHERE } from './locks.js';

export class TrainView {
  /** `panel`: {app, el, machine, locks, record(), unsavedAdapter()}. */
  constructor(panel) {
    this.panel = panel;
    this.el = panel.el;
    this.chart = new LineChart(this.el['loss-chart'], { height: 220, xLabel: 'step', yLabel: 'loss (nats)' });
    this.shownHistory = null; // what the loss chart shows (a run's or an adapter's history)
  }

  updateControls() {
    const { app, el, machine, locks } = this.panel;
    const training = app.state.job?.kind === 'train';
    const mine = locks.holding || isActive(machine.state.phase);
    el['t-start'].disabled = !app.ready() || !annotate.allRows().length || locks.elsewhere || mine;
    el['t-start'].title = locks.elsewhere ? ELSEWHERE : (app.blocker() || '');
    el['t-pause'].disabled = !training;
    el['t-cancel'].disabled = !training;
    el['t-pause'].textContent = machine.state.phase === 'paused' && training ? 'Resume' : 'Pause';
    el['resume-run'].disabled = !app.ready() || locks.elsewhere || mine;
    el['resume-run'].title = locks.elsewhere ? ELSEWHERE : (app.blocker() || '');
    el['train-elsewhere'].textContent = locks.elsewhere ? ELSEWHERE : '';
    el['train-elsewhere'].hidden = !locks.elsewhere;
  }

  renderMetrics() {
    const run = this.panel.record();
    const { el } = this;
    const last = run?.last;
    const total = run?.total_steps || 0;
    const step = run?.step || 0;
    const ho = run?.history.held_out.at(-1);
    el['t-progress'].max = Math.max(1, total);
    el['t-progress'].value = step;
    el['t-progress-label'].textContent = total ? `step ${step} of ${total}` : '–';
    el['m-step'].textContent = total ? `${step} / ${total}` : '–';
    el['m-epoch'].textContent = last ? `${last.epoch} / ${run.config?.epochs ?? '?'}` : '–';
    el['m-loss'].textContent = last ? fmt3.format(last.loss) : '–';
    el['m-heldout'].textContent = ho ? `${fmt3.format(ho.loss)} (step ${ho.step})` : '–';
    el['m-tps'].textContent = last ? fmtInt.format(last.tokens_per_s) : '–';
    el['m-eta'].textContent = last ? (step >= total ? 'done' : duration(last.eta_s)) : '–';
  }

  drawChart(history = this.panel.record()?.history) {
    this.shownHistory = history || null;
    const steps = history?.steps || [];
    const held = history?.held_out || [];
    const xs = Array.from(new Set([...steps.map((s) => s.step), ...held.map((s) => s.step)])).sort((a, b) => a - b);
    const train = new Map(steps.map((s) => [s.step, s.loss]));
    const ho = new Map(held.map((s) => [s.step, s.loss]));
    this.chart.update(xs, [
      { label: 'train loss', color: cssVar('--accent') || '#4f46e5', values: xs.map((x) => train.get(x) ?? null) },
      { label: 'held-out loss', color: cssVar('--reality') || '#b45309', values: xs.map((x) => ho.get(x) ?? null), points: true },
    ]);
    this.el['loss-chart'].setAttribute('aria-label', steps.length
      ? `Loss per step: ${steps.length} steps, last train loss ${fmt3.format(steps.at(-1).loss)}${held.length ? `, last held-out loss ${fmt3.format(held.at(-1).loss)}` : ''}`
      : 'Loss chart: no steps yet');
  }

  /** The metrics and the chart of the run on screen. */
  renderRun() { this.renderMetrics(); this.drawChart(); }

  showBanner() {
    const run = this.panel.record();
    const { el } = this;
    const { unsaved, phase } = this.panel.machine.state;
    // No banner for a run in training, nor for the run whose adapter is offered above.
    if (!run || run.status === 'running' || run.status === 'finished' || (unsaved && unsaved.runKey === run.key)) {
      el['resume-banner'].hidden = true;
      this.updateControls();
      return;
    }
    const cp = run.checkpointStep;
    let text;
    if (run.status === 'unsaved') {
      text = `A run on ${run.model || 'the model'} finished (step ${run.step} of ${run.total_steps}), but this browser could not save its adapter (${run.error || 'unknown'}).`
        + (cp ? ` Its checkpoint at step ${cp} can rebuild the adapter.` : ' It kept no checkpoint to rebuild it from.');
      el['resume-run'].textContent = `Rebuild the adapter from step ${cp}`;
    } else {
      const why = {
        interrupted: 'was interrupted (the page was closed or reloaded)',
        cancelled: 'was cancelled',
        failed: `stopped with an error (${run.error || 'unknown'})`,
        lost: 'stopped: the GPU device was lost',
      }[run.status] || 'stopped';
      const waiting = phase === 'lost-device' && this.panel.machine.state.run?.key === run.key;
      text = `A run on ${run.model || 'the model'} ${why} at step ${run.step} of ${run.total_steps}.`
        + (cp ? ` Its last checkpoint is at step ${cp}.` : ' It had no checkpoint yet, so it cannot be resumed.')
        + (cp && waiting ? ' It resumes by itself once the engine is back.' : '');
      el['resume-run'].textContent = `Resume from step ${cp}`;
    }
    el['resume-text'].textContent = text;
    el['resume-run'].hidden = !cp;
    el['resume-banner'].hidden = false;
    if (run.status === 'interrupted') el['run-status'].textContent = 'Interrupted';
    this.updateControls();
  }

  hideBanner() { this.el['resume-banner'].hidden = true; }

  /** The offer of a trained adapter this browser refused to store (`again`: a retry failed too). */
  showUnsaved(again = false) {
    const { el } = this;
    const unsaved = this.panel.machine.state.unsaved;
    if (!unsaved) { el['unsaved-banner'].hidden = true; return; }
    el['unsaved-text'].textContent = `${again ? 'Saving the adapter failed again' : 'Training finished, but the adapter could not be saved'}: ${unsaved.cause}. `
      + `The adapter “${unsaved.adapterName}” is kept in this page only, until it is closed: download it (a PEFT zip), or free some space and try saving again.`;
    el['unsaved-banner'].hidden = false;
  }
}
