// One tab trains at a time: a job (start or resume) holds the Web Lock 'cqa-studio-training',
// and the run it trains the lock 'cqa-studio-run:<key>'. Another tab learns of both through
// `navigator.locks.query()`, says so, keeps its Start/Resume buttons off and does not offer that
// run for resume until the lock is released. Without Web Locks tabs cannot coordinate, and a job
// just runs.

const LOCK = 'cqa-studio-training';
const RUN_LOCK = 'cqa-studio-run:';
export const ELSEWHERE = 'Training is running in another tab of cqa-studio; one tab trains at a time, so follow it there, and start or resume here once it has ended.';

const locks = () => (typeof navigator !== 'undefined' && navigator.locks?.request ? navigator.locks : null);

export class TrainingLocks {
  /** `onChange()` is called when this tab takes or lets go of the lock, or learns another tab's. */
  constructor(onChange) {
    this.onChange = onChange;
    this.holding = false;   // this tab holds the training lock
    this.elsewhere = false; // another tab holds it
    this.watching = false;  // a shared request waits for the other tab's release
  }

  /**
   * Runs `job` holding the training lock; resolves to false, without running it, when another
   * tab holds the lock. `job`'s own errors go to `onError`.
   */
  async withTrainingLock(job, onError) {
    const l = locks();
    const guarded = async () => {
      this.holding = true;
      this.setElsewhere(false);
      try {
        await job();
      } catch (e) {
        onError(e);
      } finally {
        this.holding = false;
        this.onChange();
      }
      return true;
    };
    if (!l) return guarded();
    return l.request(LOCK, { ifAvailable: true }, (lock) => (lock ? guarded() : false));
  }

  /** Runs `fn` holding the lock of run `key`, which tells other tabs that this run is in training. */
  withRunLock(key, fn) {
    const l = locks();
    return l ? l.request(RUN_LOCK + key, fn) : fn();
  }

  /** Whether another tab trains now, and the keys of the runs it trains. */
  async query() {
    const none = { any: false, runs: new Set() };
    const l = locks();
    if (!l?.query) return none;
    try {
      const { held = [] } = await l.query();
      if (this.holding) return none;
      return {
        any: held.some((x) => x.name === LOCK && x.mode === 'exclusive'),
        runs: new Set(held.filter((x) => x.name?.startsWith(RUN_LOCK)).map((x) => x.name.slice(RUN_LOCK.length))),
      };
    } catch {
      return none;
    }
  }

  setElsewhere(any) {
    this.elsewhere = any;
    if (any) this.watchRelease();
    this.onChange();
  }

  // While another tab trains, a shared request for the lock waits for its release (and is let
  // go at once), so this tab learns exactly when it may train again.
  watchRelease() {
    const l = locks();
    if (this.watching || !l) return;
    this.watching = true;
    l.request(LOCK, { mode: 'shared' }, () => {}).catch(() => {}).finally(() => { this.watching = false; this.onReleased?.(); });
  }
}
