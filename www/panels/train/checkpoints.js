// Checkpoints as files, for the Train panel: "Download checkpoint" saves the run on screen's latest
// checkpoint with its record (lib/checkpoint-file.js), and "Resume from a checkpoint file…" takes
// one back, in this browser or another one with the same model loaded.
//
// Where the browser refuses to store a checkpoint, or keeps this site's data only in memory (a
// private window: lib/storage-room.js), the latest checkpoint is also held in this page, so that it
// can be downloaded, and resumed from after a lost engine, without storage.
import { announce, download, showError } from '../../lib/ui.js';
import * as store from '../../lib/store.js';
import { storageProblem } from '../../lib/adapters.js';
import { checkpointFileName, checkpointZip } from '../../lib/checkpoint-file.js';
import { storageRoom, temporaryStorage } from '../../lib/storage-room.js';
import { isActive } from '../../lib/training-run.js';

export class CheckpointFiles {
  /** `panel`: the Train panel ({app, el, machine, locks, run, resume(), show(run)}). */
  constructor(panel) {
    this.panel = panel;
    this.held = null; // {key, step, bytes}: the latest checkpoint of a run, in this page only
    const { el } = panel;
    el['ckpt-download'].addEventListener('click', () => this.download());
    el['ckpt-file'].addEventListener('change', () => {
      const file = el['ckpt-file'].files[0];
      el['ckpt-file'].value = '';
      if (file) this.resumeFromFile(file);
    });
  }

  /** Whether checkpoints of a run should be held in this page too (storage small or in memory). */
  async shouldHold() {
    try { return (await storageRoom()).small || await temporaryStorage(); } catch { return false; }
  }

  /** Where this site's data lives in memory only, says that the saved adapter `name` goes with the window. */
  async sayIfTemporary(name) {
    if (!(await temporaryStorage().catch(() => false))) return;
    const { el } = this.panel;
    el['ckpt-note'].textContent = `The adapter “${name}” is saved in this window’s memory only: export it (Export PEFT zip, under Adapters) to keep it after the window closes.`;
    el['ckpt-note'].hidden = false;
  }

  /** Holds run `key`'s checkpoint at `step` in this page (only the latest one). */
  hold(key, step, bytes) {
    if (this.held?.key === key && this.held.step > step) return;
    this.held = { key, step, bytes };
    this.update();
  }

  /** The checkpoint held in this page for run `key`, or null. */
  heldFor(key) { return this.held?.key === key ? this.held : null; }

  /** The download button follows the run on screen: shown when it has a checkpoint. */
  update() {
    const { el, run } = this.panel;
    const step = run ? Math.max(run.checkpointStep || 0, this.heldFor(run.key)?.step || 0) : 0;
    el['ckpt-download'].hidden = !step;
    el['ckpt-download'].textContent = `Download checkpoint (step ${step})`;
  }

  async download() {
    const { el, run } = this.panel;
    if (!run) return;
    let cp = null;
    try { cp = await store.getCheckpoint(run.key); } catch { /* storage gone: the page's copy, if any */ }
    const held = this.heldFor(run.key);
    if (held && !(cp?.step >= held.step)) cp = held;
    if (!cp?.bytes) { showError(el['train-error'], 'This run has no checkpoint to download yet'); return; }
    download(checkpointFileName(run, cp.step), checkpointZip(run, cp.step, cp.bytes), 'application/zip');
    announce(`Checkpoint of step ${cp.step} downloaded.`);
  }

  /** Resumes the run of a checkpoint file: it becomes the run on screen, then resumes as a stopped run would. */
  async resumeFromFile(file) {
    const { app, el, machine, locks } = this.panel;
    showError(el['train-error'], '');
    if (isActive(machine.state.phase) || locks.holding || app.state.job?.kind === 'train') {
      showError(el['train-error'], 'A run is in training in this tab: cancel it before resuming another one from a file');
      return;
    }
    let loaded;
    try {
      loaded = await app.data.call('readCheckpoint', { file });
    } catch (e) {
      showError(el['train-error'], `Could not resume from ${file.name}: ${e.message}`);
      return;
    }
    const { run, step, bytes } = loaded;
    if (run.model && run.model !== app.state.modelName) {
      showError(el['train-error'], `${file.name} is a run on ${run.model}, but ${app.state.modelName || 'no model'} is loaded: load ${run.model} first`);
      return;
    }
    const record = { ...run, status: 'interrupted', step, checkpointStep: step };
    // Kept where the browser allows it, so that a reload offers it again; held here regardless.
    this.hold(record.key, step, bytes);
    try {
      await store.putRun(record);
      await store.putCheckpoint(record.key, step, bytes);
    } catch (e) {
      el['ckpt-note'].textContent = `This browser could not keep the run from ${file.name} (${storageProblem(e)}): it resumes from the copy in this page.`;
      el['ckpt-note'].hidden = false;
    }
    this.panel.show(record);
    announce(`Resuming the run of ${file.name} from step ${step}.`);
    await this.panel.resume();
  }
}
