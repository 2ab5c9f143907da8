// Train panel: LoRA settings (train/settings.js, their defaults from the engine), the run (start,
// pause, cancel, resume from a checkpoint), the live loss chart (train/view.js), and the adapters
// kept in IndexedDB (adapters.js: export as a PEFT zip, import one).
//
// The run's lifecycle is the state machine of lib/training-run.js: this panel tells it what
// happened (the engine's events, a failure, a restart) and carries out its effects; the controls,
// the banners and the offer of an unsaved adapter read its phase. Nothing the user made is lost:
// - every run has its own key; its record and its checkpoint are stored under that key
//   (store.putRun / putCheckpoint), so a resume always pairs a run with its own checkpoint, and
//   after a reload the newest stopped run is offered for resume;
// - one tab trains at a time (train/locks.js);
// - a trained adapter the browser refuses to store (quota, storage gone) stays in this page: the
//   run is 'finished-unsaved', and the panel offers it as a PEFT zip download and a new try;
// - when the engine loses its GPU during a job (EngineError code 'lost', or a failure on the
//   engine that a loss then replaced), the run resumes from its checkpoint by itself once the app
//   says the engine is back ('engine-restarted').
import { $, announce, showError, sentence } from '../lib/ui.js';
import * as store from '../lib/store.js';
import { storageProblem } from '../lib/adapters.js';
import { createTrainingRun, isActive } from '../lib/training-run.js';
import * as adapterStore from './adapters.js';
import { SETTING_IDS, applyDefaults, describeSet, exportTrl, readConfig, trainingRows } from './train/settings.js';
import { ELSEWHERE, TrainingLocks } from './train/locks.js';
import { TrainView } from './train/view.js';
import { lostText, trainLoop } from './train/job.js';
import { storageWarning } from '../lib/storage-room.js';
import { CheckpointFiles } from './train/checkpoints.js';

const ELEMENTS = ['train-set', 'train-form', 't-limit', 't-skip', 't-skip-wrap', 't-cancel', 't-export-trl', 't-start', 't-pause',
  'train-error', 'run-status', 'resume-banner', 'resume-text', 'resume-run', 'discard-run', 't-progress', 't-progress-label', 'm-step',
  'm-epoch', 'm-loss', 'm-heldout', 'm-tps', 'm-eta', 'loss-chart', 't-warnings', 'train-elsewhere', 'train-note', 'unsaved-banner',
  'unsaved-text', 'unsaved-download', 'unsaved-retry', 't-split', 't-storage', 'ckpt-download', 'ckpt-file', 'ckpt-note', ...SETTING_IDS];

/** The lifecycle fields of a stored run record (what the state machine knows of it). */
const lifecycleOf = (r) => (r ? { key: r.key, step: r.step || 0, totalSteps: r.total_steps || 0, checkpointStep: r.checkpointStep ?? null, stopped: r.status } : null);

class TrainPanel {
  constructor(app) {
    this.app = app;
    this.el = {};
    for (const id of ELEMENTS) this.el[id] = $(id);
    this.run = null;            // the record of the run on screen (settings, history), stored under run.key
    this.unsavedAdapter = null; // the adapter of machine.state.unsaved: in this page only
    this.syncSeq = 0;
    this.syncTimer = null;
    this.machine = createTrainingRun();
    this.locks = new TrainingLocks(() => this.view.updateControls());
    this.locks.onReleased = () => this.sync();
    this.view = new TrainView({ app, el: this.el, machine: this.machine, locks: this.locks, record: () => this.run });
    this.checkpoints = new CheckpointFiles(this);
    // The controls follow every transition; the unsaved offer follows its own part of the state.
    this.machine.subscribe((state, event) => {
      this.view.updateControls();
      this.checkpoints.update();
      if (event.type === 'finished' || event.type === 'save-retried') this.view.showUnsaved(event.type === 'save-retried' && event.ok === false);
    });
    this.wire();
  }

  wire() {
    const { app, el } = this;
    el['train-form'].addEventListener('submit', (e) => { e.preventDefault(); this.start(); });
    el['t-pause'].addEventListener('click', () => this.togglePause());
    el['t-cancel'].addEventListener('click', () => {
      app.engine.send({ type: 'train-control', action: 'cancel' });
      el['run-status'].textContent = 'Cancelling after the current step…';
      el['t-cancel'].disabled = true;
    });
    el['t-export-trl'].addEventListener('click', () => exportTrl(app, el));
    el['resume-run'].addEventListener('click', () => this.resume());
    el['discard-run'].addEventListener('click', () => {
      if (this.run && confirm('Discard the stopped run and its checkpoint? It cannot be resumed afterwards.')) this.discardRun();
    });
    el['unsaved-download'].addEventListener('click', () => {
      if (!this.unsavedAdapter) return;
      adapterStore.downloadAdapter(this.unsavedAdapter);
      announce('Adapter downloaded as a PEFT zip.');
    });
    el['unsaved-retry'].addEventListener('click', () => this.retrySave());
    const described = () => { describeSet(el); this.view.updateControls(); };
    for (const input of el['train-form'].querySelectorAll('input')) input.addEventListener('input', described);
    app.on('engine', () => this.view.updateControls());
    app.on('annotations', described);
    app.on('model', () => this.view.updateControls());
    app.on('tab', (t) => { if (t === 'train') { this.view.drawChart(this.view.shownHistory); this.sync(); this.showStorage(); } });
    app.on('engine-restarted', (event) => this.onEngineRestarted(event));
    // Another tab started, saved or ended a run: whether it trains now, and which runs stopped.
    store.onChange((c) => { if (c.store === 'runs') this.scheduleSync(); });
    // The only copy of an adapter the browser refused to store is in this page.
    addEventListener('beforeunload', (e) => { if (this.machine.state.unsaved) { e.preventDefault(); e.returnValue = ''; } });
    app.schema.then((s) => { applyDefaults(el, s); described(); },
      (e) => showError(el['train-error'], `The engine’s training defaults are unavailable: ${e.message}`));
    adapterStore.init(app, {
      loss: (a) => { this.view.drawChart(a.history); el['run-status'].textContent = `Loss of “${a.name}”`; },
    });
    this.sync();
  }

  /** Says, before a run, when this browser's storage is temporary or too small for an adapter. */
  async showStorage() {
    const text = await storageWarning();
    this.el['t-storage'].textContent = text ? `Before you train: ${text}.` : '';
    this.el['t-storage'].hidden = !text;
  }

  // ---- which run is on screen, and whether another tab trains -----------------------------------

  scheduleSync() {
    clearTimeout(this.syncTimer);
    this.syncTimer = setTimeout(() => this.sync(), 300);
  }

  /** Whether another tab trains, and (unless this tab has its own run going) the run to offer. */
  async sync() {
    const seq = ++this.syncSeq;
    const other = await this.locks.query();
    if (seq !== this.syncSeq) return;
    this.locks.setElsewhere(other.any);
    await this.restoreRun(other.runs, seq);
  }

  /** This tab's own run is on screen and must stay: in training here, or its adapter unsaved. */
  ownRunOnScreen() {
    const { unsaved, phase } = this.machine.state;
    return this.locks.holding || isActive(phase) || this.app.state.job?.kind === 'train' || (unsaved && this.run?.key === unsaved.runKey);
  }

  /** Shows the newest stopped run (not one that another tab is training) with its resume banner. */
  async restoreRun(busyElsewhere = new Set(), seq = this.syncSeq) {
    if (this.ownRunOnScreen()) return;
    let runs;
    try { runs = await store.allRuns(); } catch { return; /* storage gone: keep what is shown */ }
    if (seq !== this.syncSeq || this.ownRunOnScreen()) return;
    const found = runs.find((r) => !busyElsewhere.has(r.key)) || null;
    if (!found) {
      if (this.run) { this.run = null; this.machine.dispatch({ type: 'show', run: null }); this.view.renderRun(); }
      this.view.hideBanner();
      return;
    }
    // A run left 'running' by a tab that is gone (no lock holds it) was interrupted.
    if (found.status === 'running') found.status = 'interrupted';
    this.show(found);
  }

  /** Puts a stopped run on screen, offered for resume. */
  show(run) {
    const changed = !this.run || this.run.key !== run.key || this.run.step !== run.step || this.run.status !== run.status;
    this.run = run;
    this.machine.dispatch({ type: 'show', run: lifecycleOf(run) });
    if (changed) this.view.renderRun();
    this.view.showBanner();
  }

  // ---- a run ------------------------------------------------------------------------------------

  async start() {
    const { app, el } = this;
    showError(el['train-error'], '');
    const { config, checkpointEvery, problems } = readConfig(el);
    if (problems.length) { showError(el['train-error'], problems.join(' ')); return; }
    const { rows, included } = trainingRows(el);
    if (!rows.length) { showError(el['train-error'], 'There are no records to train on'); return; }
    if (included) {
      showError(el['train-error'], `${included} of the chosen records ha${included === 1 ? 's' : 've'} problems (see the Annotate panel): fix them, or tick “Skip records that have problems”`);
      return;
    }
    const { unsaved } = this.machine.state;
    if (unsaved && !confirm(`The adapter “${unsaved.adapterName}” of the last run is not saved in this browser. Start a new run anyway? That adapter stays here (Download adapter, Try saving again) until this page is closed.`)) return;
    const ran = await this.locks.withTrainingLock(async () => {
      // The unsaved run's record stays: after a reload its last checkpoint can rebuild the adapter.
      const replaces = this.run && this.run.key !== unsaved?.runKey ? this.run : null;
      if (replaces && !confirm('Starting a new run discards the stopped run and its checkpoint. Continue?')) return;
      let records;
      try {
        records = await app.data.call('toJsonl', { records: rows.map((r) => r.record) });
      } catch (e) { showError(el['train-error'], e.message); return; }
      if (replaces) await this.discardRun({ quiet: true });
      this.run = {
        key: store.newKey(), status: 'running', model: app.state.modelName, config, records, recordIds: rows.map((r) => r.record.id),
        history: { steps: [], held_out: [] }, started: new Date().toISOString(), step: 0, total_steps: 0, checkpointStep: null, checkpointEvery,
      };
      this.machine.dispatch({ type: 'start', key: this.run.key });
      this.askToPersist();
      await this.trainJob({ records, config, checkpointEvery, keepGoodLines: false });
    }, (e) => showError(el['train-error'], sentence(e?.message || String(e))));
    if (!ran) this.refusedElsewhere();
  }

  async resume({ auto = false } = {}) {
    const { app, el } = this;
    showError(el['train-error'], '');
    if (!this.run) return;
    const key = this.run.key;
    const abandon = (message) => { if (this.machine.state.phase === 'resuming') this.machine.dispatch({ type: 'failed', message }); };
    if (this.run.model && this.run.model !== app.state.modelName) {
      showError(el['train-error'], `This run was trained on ${this.run.model}, but ${app.state.modelName || 'no model'} is loaded: load ${this.run.model} first`);
      abandon('another model is loaded');
      return;
    }
    const ran = await this.locks.withTrainingLock(async () => {
      // Another tab may have resumed, finished or discarded this run meanwhile.
      let stored, cp;
      // A checkpoint held in this page (storage refused it, or keeps it only in memory) may be newer.
      const held = this.checkpoints.heldFor(key);
      try {
        [stored, cp] = await Promise.all([store.getRun(key), store.getCheckpoint(key)]);
      } catch (e) {
        if (!held) { showError(el['train-error'], `Could not read the run from this browser’s storage: ${storageProblem(e)}`); abandon('storage'); return; }
      }
      if (held && !(cp?.step >= held.step)) { cp = held; stored ??= this.run; }
      if (!stored) {
        showError(el['train-error'], 'This run is no longer kept in this browser (another tab finished or discarded it)');
        abandon('gone');
        this.run = null;
        this.machine.dispatch({ type: 'discard' });
        this.view.hideBanner();
        return;
      }
      if (!cp?.bytes) { showError(el['train-error'], 'This run has no checkpoint to resume from'); abandon('no checkpoint'); return; }
      if (this.run?.key !== key) return;
      // The stored record, unless this page's copy is further along (a save that failed).
      if ((stored.history?.steps?.length || 0) >= (this.run.history?.steps?.length || 0)) this.run = stored;
      const run = this.run;
      let checkpointEvery = run.checkpointEvery;
      if (!checkpointEvery) {
        try { checkpointEvery = (await app.schema).checkpoint_every; } catch (e) { showError(el['train-error'], e.message); abandon(e.message); return; }
      }
      // The history after the checkpoint is replayed by the resumed run.
      run.history.steps = run.history.steps.filter((s) => s.step <= cp.step);
      run.history.held_out = run.history.held_out.filter((s) => s.step <= cp.step);
      run.step = cp.step;
      run.checkpointStep = cp.step;
      run.status = 'running';
      delete run.error;
      // An automatic resume is already 'resuming' (the machine moved there on the restart).
      const m = this.machine.state;
      if (!(auto && m.phase === 'resuming' && m.run?.key === key)) this.machine.dispatch({ type: 'resume', key, from: cp.step, auto });
      this.askToPersist();
      await this.trainJob({ records: run.records, checkpoint: cp.bytes, checkpointEvery }, { resumedFrom: cp.step, auto });
    }, (e) => showError(el['train-error'], sentence(e?.message || String(e))));
    if (!ran) { abandon(ELSEWHERE); this.refusedElsewhere(); }
  }

  refusedElsewhere() {
    showError(this.el['train-error'], ELSEWHERE);
    this.sync();
  }

  /** Asks the browser (once) not to evict this site's storage, and says why when it asked. */
  askToPersist() {
    store.ensurePersistent().then((p) => {
      if (!p?.askedNow) return;
      const why = 'So that this browser does not delete your adapters and checkpoints when disk space runs low, cqa-studio asked it to keep this site’s storage';
      this.el['train-note'].textContent = p.persisted
        ? `${why}: it agreed.`
        : `${why}: it has not agreed (yet), so export the adapters you want to keep (Export PEFT zip).`;
      this.el['train-note'].hidden = false;
    }, () => { /* not supported: nothing to say */ });
  }

  trainJob(payload, opts = {}) {
    return this.locks.withRunLock(this.run.key, () => trainLoop(this, payload, opts));
  }

  /** The machine's effects: resume now, or say that the run was lost again with no progress. */
  carryOut(effects, message) {
    for (const effect of effects) {
      if (effect.type === 'lost-again') {
        this.view.showBanner();
        this.el['run-status'].textContent = 'Stopped: the engine was lost again';
        showError(this.el['train-error'], `The engine was lost again at step ${this.run?.step ?? effect.from} (${sentence(message)}) with no progress since the last automatic resume. Resume from step ${effect.from} when the engine is back`);
      } else if (effect.type === 'auto-resume' && this.run?.key === effect.key) {
        this.resume({ auto: true });
      }
    }
  }

  onEngineRestarted(event) {
    const before = this.machine.state.phase;
    const effects = this.machine.dispatch({ type: 'engine-restarted', reason: event?.reason, replacedGeneration: event?.replacedGeneration });
    if (before === 'failed' && this.run && effects.length) {
      // It failed of the loss: stored as lost, so a reload offers it as such.
      this.run.status = 'lost';
      store.putRun(this.run).catch(() => { /* shown as failed after a reload, still resumable */ });
      const text = lostText(event.reason === 'device-lost' ? 'the GPU device was lost' : 'the engine stopped', this.run.step, this.run.checkpointStep);
      this.el['run-status'].textContent = text;
      announce(text);
    }
    this.carryOut(effects, this.machine.state.failure?.message || event?.reason);
  }

  /** Saves a trained adapter; when the browser refuses, keeps it in this page and offers it. */
  async keepAdapter(adapter, current) {
    const { el, view, machine } = this;
    try {
      await adapterStore.saveAdapter(adapter);
    } catch (e) {
      const cause = storageProblem(e, await storageWarning());
      this.unsavedAdapter = adapter;
      current.status = 'unsaved';
      current.error = cause;
      current.adapterName = adapter.name;
      await store.putRun(current).catch(() => { /* the same storage problem, most likely */ });
      machine.dispatch({ type: 'finished', saved: false, adapterName: adapter.name, cause });
      view.showBanner();
      el['run-status'].textContent = 'Finished, not saved';
      announce('Training finished, but the adapter could not be saved in this browser: download it.');
      return;
    }
    machine.dispatch({ type: 'finished', saved: true });
    if (this.run === current) await this.discardRun({ quiet: true, keepChart: true });
    else await store.deleteRun(current.key).catch(() => { /* only a finished run's record */ });
    el['run-status'].textContent = `Finished: adapter “${adapter.name}” saved`;
    announce('Training finished; the adapter is saved.');
    this.checkpoints.sayIfTemporary(adapter.name);
  }

  async retrySave() {
    const { el, machine } = this;
    const unsaved = machine.state.unsaved;
    if (!unsaved || !this.unsavedAdapter) return;
    const adapter = this.unsavedAdapter;
    el['unsaved-retry'].disabled = true;
    try {
      await adapterStore.saveAdapter(adapter);
    } catch (e) {
      machine.dispatch({ type: 'save-retried', ok: false, cause: storageProblem(e, await storageWarning()) });
      return;
    } finally {
      el['unsaved-retry'].disabled = false;
    }
    // The banner goes last (with the transition), once the run's record is gone and the status
    // says so: whoever sees it hidden sees the finished state.
    try { await store.deleteRun(unsaved.runKey); } catch { /* only a finished run's record */ }
    if (this.run?.key === unsaved.runKey) { this.run = null; this.view.hideBanner(); }
    el['run-status'].textContent = `Finished: adapter “${adapter.name}” saved`;
    this.unsavedAdapter = null;
    machine.dispatch({ type: 'save-retried', ok: true });
    announce('The adapter is saved.');
  }

  togglePause() {
    const { app, el, machine } = this;
    if (app.state.job?.kind !== 'train') return;
    const pause = machine.state.phase !== 'paused';
    machine.dispatch({ type: pause ? 'pause' : 'unpause' });
    app.engine.send({ type: 'train-control', action: pause ? 'pause' : 'resume' });
    el['run-status'].textContent = pause ? `Paused at step ${this.run?.step ?? 0} of ${this.run?.total_steps ?? '?'}` : 'Training…';
    announce(pause ? 'Training paused.' : 'Training resumed.');
  }

  /** Deletes the run on screen and its checkpoint (only that run's). */
  async discardRun({ quiet = false, keepChart = false } = {}) {
    const key = this.run?.key;
    if (key) {
      try {
        await store.deleteRun(key);
      } catch (e) {
        if (!quiet) { showError(this.el['train-error'], `Could not discard the run: ${storageProblem(e)}. It is still kept`); return; }
      }
    }
    this.run = null;
    this.machine.dispatch({ type: 'discard' });
    if (!keepChart) this.view.renderRun();
    this.view.hideBanner();
    if (!quiet) { this.el['run-status'].textContent = 'Not started'; announce('The stopped run was discarded.'); }
    this.view.updateControls();
  }
}

export function init(app) {
  // The panel's state lives in this one instance, not in the module.
  new TrainPanel(app); // eslint-disable-line no-new
}

/** The saved adapters, newest first (the Compare and Calibrate panels offer them). */
export const list = () => adapterStore.list();
