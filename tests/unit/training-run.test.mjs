// The training run's lifecycle (www/lib/training-run.js), transition by transition, in Node
// without a browser: every phase reached, every event a phase refuses left without effect, the
// automatic resume after a lost device, and its limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PHASES, createTrainingRun, initialState, isActive, transition } from '../../www/lib/training-run.js';

/** The state after `events` from the start, with every effect seen. */
function after(...events) {
  let state = initialState();
  const effects = [];
  for (const e of events) {
    const out = transition(state, e);
    state = out.state;
    effects.push(...out.effects);
  }
  return { state, effects };
}

const START = { type: 'start', key: 'r1' };
const STARTED = { type: 'started', totalSteps: 10 };
const training = [START, STARTED, { type: 'step', step: 1 }, { type: 'checkpoint', step: 1 }, { type: 'step', step: 2 }];

test('a run goes idle → starting → training → finished', () => {
  assert.equal(after().state.phase, 'idle');
  assert.equal(after(START).state.phase, 'starting');
  const { state } = after(...training);
  assert.equal(state.phase, 'training');
  assert.deepEqual(state.run, { key: 'r1', step: 2, totalSteps: 10, checkpointStep: 1, stopped: null });
  const done = after(...training, { type: 'finished', saved: true });
  assert.equal(done.state.phase, 'finished');
  assert.equal(done.state.run, null);
  assert.deepEqual(done.effects, []);
});

test('pause and unpause only while training', () => {
  assert.equal(after(...training, { type: 'pause' }).state.phase, 'paused');
  assert.equal(after(...training, { type: 'pause' }, { type: 'step', step: 3 }).state.run.step, 3, 'the step under way ends');
  assert.equal(after(...training, { type: 'pause' }, { type: 'unpause' }).state.phase, 'training');
  const early = after(START, { type: 'pause' }).state;
  assert.equal(early.phase, 'starting');
  assert.equal(early.refused, 'pause in starting');
  assert.equal(after({ type: 'unpause' }).state.refused, 'unpause in idle');
});

test('finishing paused is finishing; an adapter the browser refused is kept as finished-unsaved', () => {
  assert.equal(after(...training, { type: 'pause' }, { type: 'finished', saved: true }).state.phase, 'finished');
  const { state } = after(...training, { type: 'finished', saved: false, adapterName: 'r16', cause: 'the quota is used up' });
  assert.equal(state.phase, 'finished-unsaved');
  assert.deepEqual(state.unsaved, { runKey: 'r1', adapterName: 'r16', cause: 'the quota is used up' });
  assert.equal(state.run.stopped, 'unsaved');
});

test('a save retried: failing again keeps the offer with the new cause; succeeding finishes', () => {
  const unsaved = [...training, { type: 'finished', saved: false, adapterName: 'a', cause: 'quota' }];
  const again = after(...unsaved, { type: 'save-retried', ok: false, cause: 'still no room' }).state;
  assert.equal(again.phase, 'finished-unsaved');
  assert.equal(again.unsaved.cause, 'still no room');
  const saved = after(...unsaved, { type: 'save-retried', ok: true }).state;
  assert.equal(saved.phase, 'finished');
  assert.equal(saved.unsaved, null);
  assert.equal(saved.run, null);
  assert.equal(after({ type: 'save-retried', ok: true }).state.refused, 'save-retried in idle');
});

test('a new run may start while an unsaved adapter is offered, which stays offered', () => {
  const { state } = after(...training, { type: 'finished', saved: false, adapterName: 'a', cause: 'quota' },
    { type: 'start', key: 'r2' }, STARTED);
  assert.equal(state.phase, 'training');
  assert.equal(state.run.key, 'r2');
  assert.equal(state.unsaved.runKey, 'r1');
  const saved = after(...training, { type: 'finished', saved: false, adapterName: 'a', cause: 'q' }, { type: 'start', key: 'r2' },
    STARTED, { type: 'save-retried', ok: true }).state;
  assert.equal(saved.phase, 'training', 'saving the old adapter leaves the new run alone');
  assert.equal(saved.run.key, 'r2');
  assert.equal(saved.unsaved, null);
});

test('cancelling stops the run with its record kept for resume', () => {
  const { state } = after(...training, { type: 'cancelled' });
  assert.equal(state.phase, 'idle');
  assert.equal(state.run.stopped, 'cancelled');
  assert.equal(state.run.checkpointStep, 1);
  assert.equal(after({ type: 'cancelled' }).state.refused, 'cancelled in idle');
});

test('a failure before any step leaves nothing; a failure later leaves a resumable run', () => {
  const never = after(START, { type: 'failed', message: 'bad settings' }).state;
  assert.equal(never.phase, 'idle');
  assert.equal(never.run, null);
  const later = after(...training, { type: 'failed', message: 'out of memory', generation: 1 }).state;
  assert.equal(later.phase, 'failed');
  assert.equal(later.run.stopped, 'failed');
  assert.deepEqual(later.failure, { message: 'out of memory', generation: 1 });
  assert.equal(after(...training, { type: 'failed', message: 'x' }, { type: 'resume', key: 'r1', from: 1 }).state.phase, 'resuming');
});

test('resuming needs a stored checkpoint, and starts from it', () => {
  assert.equal(after(START, STARTED, { type: 'cancelled' }, { type: 'resume', key: 'r1', from: null }).state.refused, 'resume in idle', 'no checkpoint');
  const { state } = after(...training, { type: 'step', step: 3 }, { type: 'cancelled' }, { type: 'resume', key: 'r1', from: 1 });
  assert.equal(state.phase, 'resuming');
  assert.deepEqual(state.run, { key: 'r1', step: 1, totalSteps: 10, checkpointStep: 1, stopped: null }, 'the steps after the checkpoint are taken again');
  assert.equal(after(...training, { type: 'cancelled' }, { type: 'resume', key: 'r1', from: 1 }, { type: 'started', totalSteps: 10 }).state.phase, 'training');
  assert.equal(after(...training, { type: 'resume', key: 'r1', from: 1 }).state.refused, 'resume in training');
  // A run of another tab, or from before a reload, that this tab never showed.
  assert.equal(after({ type: 'resume', key: 'r7', from: 4 }).state.run.key, 'r7');
});

test('a run shown from storage after a reload can be resumed or discarded', () => {
  const run = { key: 'r9', step: 7, totalSteps: 10, checkpointStep: 5, stopped: 'interrupted' };
  const shown = after({ type: 'show', run }).state;
  assert.equal(shown.phase, 'idle');
  assert.deepEqual(shown.run, run);
  assert.equal(after({ type: 'show', run }, { type: 'resume', key: 'r9', from: 5 }).state.run.step, 5);
  assert.equal(after({ type: 'show', run }, { type: 'discard' }).state.run, null);
  assert.equal(after(...training, { type: 'show', run }).state.refused, 'show in training', 'a run in training stays on screen');
  // This tab's failed run, read back from storage, stays failed: a restart may still call it lost.
  const failed = after(...training, { type: 'failed', message: 'm', generation: 2 }, { type: 'show', run: { ...run, key: 'r1', stopped: 'failed' } },
    { type: 'engine-restarted', reason: 'device-lost', replacedGeneration: 2 });
  assert.equal(failed.state.phase, 'resuming');
  assert.equal(after(...training, { type: 'discard' }).state.refused, 'discard in training');
});

test('a lost device with a checkpoint waits for the engine, then resumes by itself', () => {
  const lost = after(...training, { type: 'lost', message: 'GPU lost', checkpointStep: 1 });
  assert.equal(lost.state.phase, 'lost-device');
  assert.equal(lost.state.run.stopped, 'lost');
  const back = after(...training, { type: 'lost', message: 'GPU lost', checkpointStep: 1 }, { type: 'engine-restarted', reason: 'device-lost' });
  assert.equal(back.state.phase, 'resuming');
  assert.equal(back.state.autoFrom, 1);
  assert.deepEqual(back.effects, [{ type: 'auto-resume', key: 'r1', from: 1 }]);
  // The user may resume it by hand before the engine is back, or discard it.
  assert.equal(after(...training, { type: 'lost', message: 'x', checkpointStep: 1 }, { type: 'discard' }).state.phase, 'idle');
});

test('a lost device without a checkpoint is a failure; before any step, nothing is left', () => {
  assert.equal(after(START, STARTED, { type: 'lost', message: 'x', checkpointStep: null }).state.phase, 'failed');
  assert.equal(after(START, { type: 'lost', message: 'x', checkpointStep: null }).state.phase, 'idle');
});

test('lost again with no progress since the automatic resume: no endless retries', () => {
  const lostOnce = [...training, { type: 'lost', message: 'x', checkpointStep: 1 }, { type: 'engine-restarted', reason: 'device-lost' },
    { type: 'started', totalSteps: 10 }];
  const again = after(...lostOnce, { type: 'lost', message: 'x again', checkpointStep: 1 });
  assert.equal(again.state.phase, 'failed');
  assert.deepEqual(again.effects.at(-1), { type: 'lost-again', key: 'r1', from: 1 });
  assert.equal(after(...lostOnce, { type: 'lost', message: 'x again', checkpointStep: 1 }, { type: 'engine-restarted', reason: 'device-lost' }).state.phase,
    'failed', 'the next restart does not resume it');
  // With progress (a newer checkpoint) it resumes again.
  const progressed = after(...lostOnce, { type: 'step', step: 4 }, { type: 'checkpoint', step: 3 }, { type: 'lost', message: 'y', checkpointStep: 3 },
    { type: 'engine-restarted', reason: 'device-lost' });
  assert.deepEqual(progressed.effects.at(-1), { type: 'auto-resume', key: 'r1', from: 3 });
  // A new run forgets the last automatic resume.
  assert.equal(after(...lostOnce, { type: 'cancelled' }, START).state.autoFrom, null);
});

test('a failure on the engine that a loss then replaced is that loss; a failure on a later engine is not', () => {
  const failedOn = (generation) => [...training, { type: 'failed', message: 'a read-back could not complete', generation }];
  const lost = after(...failedOn(4), { type: 'engine-restarted', reason: 'device-lost', replacedGeneration: 4 });
  assert.equal(lost.state.phase, 'resuming');
  assert.deepEqual(lost.effects, [{ type: 'auto-resume', key: 'r1', from: 1 }]);
  assert.equal(after(...failedOn(4), { type: 'engine-restarted', reason: 'crashed', replacedGeneration: 4 }).state.phase, 'resuming');
  assert.equal(after(...failedOn(4), { type: 'engine-restarted', reason: 'device-lost', replacedGeneration: 5 }).state.phase, 'failed');
  assert.equal(after(...failedOn(4), { type: 'engine-restarted', reason: 'hung', replacedGeneration: 4 }).state.phase, 'failed',
    'a restart the user asked for after a hang is not a loss');
  assert.equal(after(...failedOn(null), { type: 'engine-restarted', reason: 'device-lost', replacedGeneration: 4 }).state.phase, 'failed');
  // A restart with nothing lost changes nothing.
  assert.equal(after(...training, { type: 'engine-restarted', reason: 'device-lost', replacedGeneration: 1 }).state.phase, 'training');
});

test('a restart heard before the job’s failure is read: the failure resumes at once, if it was the loss', () => {
  const restartFirst = [...training, { type: 'engine-restarted', reason: 'device-lost', replacedGeneration: 4 }];
  assert.equal(after(...restartFirst).state.phase, 'training', 'the job has not failed yet');
  const failed = after(...restartFirst, { type: 'failed', message: 'a read-back could not complete', generation: 4 });
  assert.equal(failed.state.phase, 'resuming');
  assert.deepEqual(failed.effects, [{ type: 'auto-resume', key: 'r1', from: 1 }]);
  const lost = after(...restartFirst, { type: 'lost', message: 'restarted', checkpointStep: 1, generation: 4 });
  assert.equal(lost.state.phase, 'resuming');
  assert.deepEqual(lost.effects, [{ type: 'auto-resume', key: 'r1', from: 1 }]);
  // A failure of the engine started after that restart is a failure.
  assert.equal(after(...restartFirst, { type: 'failed', message: 'm', generation: 5 }).state.phase, 'failed');
  // A new run forgets a restart heard during the last one.
  assert.equal(after(...restartFirst, { type: 'cancelled' }, START, STARTED, { type: 'failed', message: 'm', generation: 4 }).state.phase, 'failed');
});

test('every phase is reachable, and only the job phases count as active', () => {
  const reached = new Set([
    after().state, after(START).state, after(...training).state, after(...training, { type: 'pause' }).state,
    after(...training, { type: 'lost', message: 'x', checkpointStep: 1 }).state,
    after(...training, { type: 'cancelled' }, { type: 'resume', key: 'r1', from: 1 }).state,
    after(...training, { type: 'finished', saved: false, adapterName: 'a', cause: 'c' }).state,
    after(...training, { type: 'finished', saved: true }).state, after(...training, { type: 'failed', message: 'm' }).state,
  ].map((s) => s.phase));
  assert.deepEqual([...reached].sort(), [...PHASES].sort());
  assert.deepEqual(PHASES.filter(isActive), ['starting', 'training', 'paused', 'resuming']);
});

test('unknown events are refused; states are never changed in place', () => {
  const s0 = initialState();
  const frozen = structuredClone(s0);
  assert.equal(transition(s0, { type: 'explode' }).state.refused, 'explode in idle');
  transition(s0, START);
  assert.deepEqual(s0, frozen);
});

test('subscribers hear every transition with its effects', () => {
  const run = createTrainingRun();
  const heard = [];
  const stop = run.subscribe((state, event, effects) => heard.push([state.phase, event.type, effects.length]));
  for (const e of training) run.dispatch(e);
  run.dispatch({ type: 'lost', message: 'x', checkpointStep: 1 });
  const effects = run.dispatch({ type: 'engine-restarted', reason: 'device-lost' });
  assert.deepEqual(effects, [{ type: 'auto-resume', key: 'r1', from: 1 }]);
  assert.deepEqual(heard.at(-1), ['resuming', 'engine-restarted', 1]);
  assert.equal(heard.length, training.length + 2);
  stop();
  run.dispatch({ type: 'started', totalSteps: 10 });
  assert.equal(heard.length, training.length + 2);
  assert.equal(run.state.phase, 'training');
});
