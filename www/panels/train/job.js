// One training job of the Train panel, from the engine's first event to the run's end: the
// run's record (history, checkpoints) kept in storage as it goes, the lifecycle told each step,
// and a failure sorted into a lost engine (resumed when it is back) or a failure.
import { h, announce, showError, sentence } from '../../lib/ui.js';
import * as store from '../../lib/store.js';
import { storageProblem } from '../../lib/adapters.js';
import { storageWarning } from '../../lib/storage-room.js';
import * as adapterStore from '../adapters.js';

/** The sentence for a job the engine lost at `step`, resuming from `from`. */
export function lostText(message, step, from) {
  return /GPU|device/i.test(message || '')
    ? `The GPU device was lost at step ${step}; resuming from the checkpoint at step ${from} when the engine is back…`
    : `The engine stopped at step ${step}; resuming from the checkpoint at step ${from} when it is back…`;
}

/**
 * Runs one training job of `panel.run` (a new run, or a resume from `resumedFrom`) to its end:
 * the engine's events go into the run's record, its checkpoints into storage, and the lifecycle
 * (`panel.machine`) hears each step; a finished run's adapter is saved or offered.
 */
export async function trainLoop(panel, payload, { resumedFrom = null, auto = false } = {}) {
  const { app, el, view, machine } = panel;
  view.hideBanner();
  el['t-warnings'].replaceChildren();
  view.renderRun();
  el['run-status'].textContent = resumedFrom === null ? 'Preparing the training examples…' : `${auto ? 'The engine is back: resuming' : 'Resuming'} from step ${resumedFrom}…`;
  announce(resumedFrom === null ? 'Training started.' : `Training resumed from step ${resumedFrom}.`);
  const current = panel.run;
  // The engine this job runs on: a failure names it, so that a restart replacing it for a lost
  // device can tell the failure was that loss (the restart may come before the failure is read).
  const generation = app.engineGeneration();
  const onScreen = () => panel.run === current;
  let lastSave = 0;
  let saveWarned = false;
  const saveRun = () => store.putRun(current).catch((err) => {
    if (saveWarned) return;
    saveWarned = true;
    showError(el['train-error'], `Could not keep this run’s progress in this browser (${storageProblem(err)}); training goes on, but a reload would lose it`);
  });
  // Checkpoints are written one after another; the run is marked resumable from a step only
  // once its checkpoint is stored.
  let checkpoints = Promise.resolve();
  const onEvent = (ev) => {
    if (ev.type === 'train-info') {
      current.total_steps = ev.info.total_steps;
      current.config = ev.info.config;
      current.split = { train: ev.info.train, held_out: ev.info.held_out };
      current.heldOutIds = ev.info.held_out_ids || null;
      machine.dispatch({ type: 'started', totalSteps: ev.info.total_steps });
      el['t-warnings'].replaceChildren(...(ev.info.warnings || []).map((w) => h('li', { class: 'warning', text: sentence(w) })));
      el['run-status'].textContent = `Training on ${ev.info.train} record${ev.info.train === 1 ? '' : 's'}, ${ev.info.held_out} held out, ${ev.info.total_steps} steps`;
      view.renderMetrics();
      saveRun();
      return;
    }
    if (ev.type !== 'train-event') return;
    const e = ev.event;
    if (e.kind === 'step') {
      current.history.steps.push({ step: e.step, loss: e.loss, epoch: e.epoch, tokens_per_s: e.tokens_per_s, eta_s: e.eta_s, learning_rate: e.learning_rate, grad_norm: e.grad_norm });
      current.step = e.step;
      current.last = e;
      machine.dispatch({ type: 'step', step: e.step });
      if (machine.state.phase === 'paused') el['run-status'].textContent = `Paused at step ${e.step} of ${current.total_steps}`;
    } else if (e.kind === 'held_out') {
      current.history.held_out.push({ step: e.step, loss: e.held_out_loss });
    }
    if (onScreen()) view.renderRun();
    if (ev.checkpoint) {
      const step = e.step;
      const bytes = ev.checkpoint;
      // Where storage is small or kept in memory, the page holds the latest one too (a file to download).
      checkpoints = checkpoints.then(async () => { if (await panel.checkpoints.shouldHold()) panel.checkpoints.hold(current.key, step, bytes); })
        .then(() => store.putCheckpoint(current.key, step, bytes)).then(
          () => {
            current.checkpointStep = step;
            if (machine.state.run?.key === current.key) machine.dispatch({ type: 'checkpoint', step });
            return current.status === 'running' ? saveRun() : null;
          },
          async (err) => {
            panel.checkpoints.hold(current.key, step, bytes);
            showError(el['train-error'], `Could not keep a checkpoint in this browser: ${storageProblem(err, await storageWarning())}. `
              + `Training goes on, and this page holds the checkpoint of step ${step}: “Download checkpoint” saves it as a file to resume from`);
          });
    } else if (performance.now() - lastSave > 2000) {
      lastSave = performance.now();
      saveRun();
    }
  };
  try {
    const result = await app.runEngine('train', 'training', 'train', payload, { onEvent });
    await checkpoints;
    if (result.outcome === 'finished' && result.adapter) {
      current.status = 'finished';
      await panel.keepAdapter(adapterStore.trainedAdapter(result, current), current);
    } else {
      current.status = 'cancelled';
      machine.dispatch({ type: 'cancelled' });
      await saveRun();
      el['run-status'].textContent = `Cancelled at step ${current.step} of ${current.total_steps}`;
      view.showBanner();
      announce('Training cancelled.');
    }
  } catch (e) {
    await checkpoints;
    await failed(panel, current, e, saveRun, resumedFrom, generation);
  } finally {
    view.updateControls();
  }
}

/**
 * The job of `current`, run on engine `generation`, failed with `e`: lost (resumes when the
 * engine is back), or failed.
 */
async function failed(panel, current, e, saveRun, resumedFrom, generation) {
  const { el, view, machine } = panel;
  if (e?.code === 'lost' && current.total_steps > 0) {
    let cp = null;
    try { cp = await store.getCheckpoint(current.key); } catch { /* storage gone */ }
    const held = panel.checkpoints.heldFor(current.key);
    if (held && !(cp?.step >= held.step)) cp = held;
    if (cp?.bytes) {
      current.status = 'lost';
      current.error = e.message;
      current.checkpointStep = cp.step;
      await saveRun();
      const effects = machine.dispatch({ type: 'lost', message: e.message, checkpointStep: cp.step, generation });
      panel.carryOut(effects, e.message);
      if (machine.state.phase === 'lost-device') {
        view.showBanner();
        const text = lostText(e.message, current.step, cp.step);
        el['run-status'].textContent = text;
        announce(text);
      }
      return;
    }
  }
  const effects = machine.dispatch({ type: 'failed', message: e.message, generation });
  if (effects.some((x) => x.type === 'auto-resume')) {
    // Its engine had already been replaced for a lost device: it resumes from its checkpoint now.
    current.status = 'lost';
    current.error = e.message;
    await saveRun();
    const text = lostText('the GPU device was lost', current.step, current.checkpointStep);
    el['run-status'].textContent = text;
    announce(text);
    panel.carryOut(effects, e.message);
    return;
  }
  if (current.total_steps > 0 || resumedFrom !== null) {
    current.status = 'failed';
    current.error = e.message;
    await saveRun();
    view.showBanner();
    el['run-status'].textContent = current.total_steps > 0 ? 'Stopped by an error' : 'Could not resume';
  } else {
    // The run never started (bad settings or records): nothing to resume.
    await panel.discardRun({ quiet: true });
    el['run-status'].textContent = 'Not started';
  }
  showError(el['train-error'], `Training stopped: ${sentence(e.message)}${current.checkpointStep ? ` You can resume from step ${current.checkpointStep}.` : ''}`);
}
