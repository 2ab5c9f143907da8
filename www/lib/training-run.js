// The lifecycle of a training run, written out as a state machine: named phases, one transition
// function, events in and effects out. It knows nothing of the DOM, the engine or storage, so
// every transition is unit-tested in Node (tests/unit/training-run.test.mjs); the Train panel
// feeds it what happened and subscribes to it (the controls, the banners, the lock, the offer of
// an unsaved adapter all read `phase`).
//
//   idle ──start──▶ starting ──started──▶ training ⇄ paused (pause / unpause)
//     ▲                │                    │  │
//     │ cancelled,     │ failed (nothing    │  └─finished─▶ finished, or finished-unsaved
//     │ discard        ▼  trained: idle)    │               (the browser refused the adapter)
//     │             failed ◀──failed────────┤
//     │                ▲                    └─lost─▶ lost-device ──engine-restarted──▶ resuming
//     └──resume────────┴── resuming ──started──▶ training
//
// A run lost with no progress since the last automatic resume is not resumed again by itself:
// it fails, and the user decides. A job that failed on an engine that was then restarted for a
// lost device or a crash (its error can arrive before the loss is reported) failed of that loss:
// the restart names the engine generation it replaced, and the failure carries the generation
// it ran on, so no timing window is needed to tell them apart, in either order: a restart heard
// while the job's failure is still being read is kept, and the failure then resumes at once.

/** Every phase, in the order a run goes through them. */
export const PHASES = Object.freeze(['idle', 'starting', 'training', 'paused', 'lost-device', 'resuming', 'finished-unsaved', 'finished', 'failed']);

/** Phases in which this tab runs a training job (it holds the training lock). */
const ACTIVE = new Set(['starting', 'resuming', 'training', 'paused']);
export const isActive = (phase) => ACTIVE.has(phase);

/**
 * The starting state. `run` is the run on screen ({key, step, totalSteps, checkpointStep,
 * stopped}), `unsaved` a trained adapter the browser refused ({runKey, adapterName, cause}),
 * `autoFrom` the checkpoint step of the last automatic resume, `failure` the last failure
 * ({message, generation}).
 */
export function initialState() {
  return { phase: 'idle', run: null, unsaved: null, autoFrom: null, failure: null, restarted: null, refused: null };
}

const RESTARTS_OF_A_LOSS = new Set(['device-lost', 'crashed']);

/** `state` with `changes` (a new object: states are never changed in place). */
const next = (state, changes) => ({ ...state, refused: null, ...changes });
const withRun = (state, changes) => ({ ...state.run, ...changes });
/** The event is not one this phase takes: the state stays, and says why (for tests and logs). */
const refuse = (state, event) => ({ ...state, refused: `${event.type} in ${state.phase}` });

/**
 * The state after `event`, and the effects the panel must carry out, as
 * `{state, effects: [{type, …}]}`. Effects: `auto-resume` {key, from} (resume this run from its
 * checkpoint now), `lost-again` {key, from} (lost with no progress since the last automatic
 * resume: say so and leave it to the user).
 */
export function transition(state, event) {
  const { phase } = state;
  const none = (s) => ({ state: s, effects: [] });
  switch (event.type) {
    case 'show': // a stopped run read from storage, offered for resume (or nothing to offer)
      if (isActive(phase) || phase === 'lost-device') return none(refuse(state, event));
      // The offer of an unsaved adapter stays, and so does this tab's own failed run (a restart
      // may yet show that it failed of a lost device).
      if (phase === 'failed' && event.run?.key === state.run?.key) return none(next(state, { run: { ...state.run, ...event.run } }));
      return none(next(state, { phase: phase === 'finished-unsaved' ? phase : 'idle', run: event.run ? { ...event.run } : null }));
    case 'start': // a new run (from lost-device too: the user chose not to wait for the old one)
      if (isActive(phase)) return none(refuse(state, event));
      return none(next(state, { phase: 'starting', run: { key: event.key, step: 0, totalSteps: 0, checkpointStep: null, stopped: null }, autoFrom: null, failure: null, restarted: null }));
    case 'resume': { // {key, from: the stored checkpoint's step, auto}
      if (isActive(phase) || event.from == null) return none(refuse(state, event));
      const known = state.run?.key === event.key ? state.run : { key: event.key, totalSteps: 0 };
      const run = { ...known, step: event.from, checkpointStep: event.from, stopped: null };
      return none(next(state, { phase: 'resuming', run, autoFrom: event.auto ? event.from : state.autoFrom, failure: null, restarted: null }));
    }
    case 'started':
      if (phase !== 'starting' && phase !== 'resuming') return none(refuse(state, event));
      return none(next(state, { phase: 'training', run: withRun(state, { totalSteps: event.totalSteps }) }));
    case 'step':
      if (phase !== 'training' && phase !== 'paused') return none(refuse(state, event));
      return none(next(state, { run: withRun(state, { step: event.step }) }));
    case 'checkpoint':
      if (!isActive(phase)) return none(refuse(state, event));
      return none(next(state, { run: withRun(state, { checkpointStep: event.step }) }));
    case 'pause':
      return phase === 'training' ? none(next(state, { phase: 'paused' })) : none(refuse(state, event));
    case 'unpause':
      return phase === 'paused' ? none(next(state, { phase: 'training' })) : none(refuse(state, event));
    case 'cancelled':
      if (!isActive(phase)) return none(refuse(state, event));
      return none(next(state, { phase: 'idle', run: withRun(state, { stopped: 'cancelled' }) }));
    case 'finished':
      if (phase !== 'training' && phase !== 'paused') return none(refuse(state, event));
      if (event.saved) return none(next(state, { phase: 'finished', run: null }));
      return none(next(state, {
        phase: 'finished-unsaved',
        run: withRun(state, { stopped: 'unsaved' }),
        unsaved: { runKey: state.run.key, adapterName: event.adapterName, cause: event.cause },
      }));
    case 'save-retried': // the unsaved adapter is saved now (from any phase: a new run may be going)
      if (!state.unsaved) return none(refuse(state, event));
      if (event.ok === false) return none(next(state, { unsaved: { ...state.unsaved, cause: event.cause } }));
      return none(next(state, {
        unsaved: null,
        phase: phase === 'finished-unsaved' ? 'finished' : phase,
        run: phase === 'finished-unsaved' || state.run?.key === state.unsaved.runKey ? null : state.run,
      }));
    case 'failed': {
      if (!isActive(phase)) return none(refuse(state, event));
      const failure = { message: event.message, generation: event.generation ?? null };
      // Nothing trained and nothing to resume: the run never started.
      if (phase === 'starting') return none(next(state, { phase: 'idle', run: null, failure }));
      const failed = next(state, { phase: 'failed', run: withRun(state, { stopped: 'failed' }), failure, restarted: null });
      // The engine it ran on was already replaced for a loss: it failed of that, and resumes now.
      return state.restarted ? transition(failed, { type: 'engine-restarted', ...state.restarted }) : none(failed);
    }
    case 'lost': {
      if (!isActive(phase)) return none(refuse(state, event));
      const from = event.checkpointStep ?? null;
      const run = withRun(state, { checkpointStep: from ?? state.run.checkpointStep, stopped: 'lost' });
      const failure = { message: event.message, generation: event.generation ?? null };
      if (from == null) {
        if (phase === 'starting') return none(next(state, { phase: 'idle', run: null, failure }));
        return none(next(state, { phase: 'failed', run: withRun(state, { stopped: 'failed' }), failure, restarted: null }));
      }
      const lost = lostAt({ ...state, restarted: null }, run, from, failure);
      // The restart that replaced its engine was heard already: the engine is back, resume now.
      if (lost.state.phase === 'lost-device' && state.restarted) return transition(lost.state, { type: 'engine-restarted', ...state.restarted });
      return lost;
    }
    case 'engine-restarted': {
      // Heard while the job's own failure is still on its way: kept for that failure.
      if (isActive(phase)) return none(next(state, { restarted: { reason: event.reason, replacedGeneration: event.replacedGeneration ?? null } }));
      if (phase === 'lost-device') {
        const from = state.run.checkpointStep;
        return {
          state: next(state, { phase: 'resuming', run: withRun(state, { step: from, stopped: null }), autoFrom: from }),
          effects: [{ type: 'auto-resume', key: state.run.key, from }],
        };
      }
      // A failure on the engine this restart replaced, after a loss or a crash: it was the loss.
      const cp = state.run?.checkpointStep;
      if (phase === 'failed' && cp != null && RESTARTS_OF_A_LOSS.has(event.reason)
        && state.failure?.generation != null && state.failure.generation === event.replacedGeneration) {
        const lost = lostAt(state, withRun(state, { stopped: 'lost' }), cp, state.failure);
        if (lost.state.phase !== 'lost-device') return lost;
        return transition(lost.state, event);
      }
      return none(state);
    }
    case 'discard':
      if (isActive(phase)) return none(refuse(state, event));
      return none(next(state, { phase: phase === 'finished-unsaved' ? phase : 'idle', run: null, autoFrom: null }));
    default:
      return none(refuse(state, event));
  }
}

/** A run lost at checkpoint `from`: waits for the engine, unless that would repeat a failed try. */
function lostAt(state, run, from, failure) {
  if (state.autoFrom !== null && from <= state.autoFrom) {
    return {
      state: next(state, { phase: 'failed', run: { ...run, stopped: 'lost' }, failure, autoFrom: null }),
      effects: [{ type: 'lost-again', key: run.key, from }],
    };
  }
  return { state: next(state, { phase: 'lost-device', run, failure }), effects: [] };
}

/**
 * A run machine with subscribers: `dispatch(event)` applies the transition, tells every
 * subscriber `(state, event, effects)`, and returns the effects.
 */
export function createTrainingRun() {
  let state = initialState();
  const subscribers = new Set();
  return {
    get state() { return state; },
    subscribe(fn) { subscribers.add(fn); return () => subscribers.delete(fn); },
    dispatch(event) {
      const out = transition(state, event);
      state = out.state;
      for (const fn of subscribers) fn(state, event, out.effects);
      return out.effects;
    },
  };
}
