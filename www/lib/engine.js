// The page's side of the worker protocol (lib/worker-core.js describes it; engine-worker.js and
// data-worker.js list their requests): requests with ids, events routed to the caller, one result
// or error per request. A client outlives its worker: when the worker crashes, loses its GPU
// device or hangs, `restart()` rejects what was pending with code 'lost' and starts a fresh
// worker in its place, so the panels keep using the same client.
//
// Error codes a request can reject with (EngineError.code):
//   'busy'       the worker is running another job
//   'cancelled'  stopped by the page
//   'failed'     the request failed (the message says why); the worker is fine
//   'lost'       the worker stopped (a crash, a lost GPU device, a wasm trap, or the page
//                restarted it because it hung): the request did not finish and the worker is
//                being restarted; the app emits 'engine-restarted' once it is usable again

// Which requests the watchdog times (those that can run long or hang on the GPU) comes with the
// engine worker's list of requests, kept once.
import { WATCHED } from './engine-requests.js';

export class EngineError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'EngineError';
    this.code = code;
  }
}


export class WorkerClient {
  /**
   * @param {() => Worker} create  makes a fresh worker (called again on every restart)
   * @param {object} options
   *   init(worker)          sends the worker its first message (the wasm module)
   *   onUnsolicited(msg)    messages that answer no request: {type: 'device-lost' | 'crashed', message},
   *                         and from the client itself {type: 'dead', message} when the worker could
   *                         not start
   *   onStall(req), onActive(req)   a watched request has been silent for `watchdogMs` / spoke again;
   *                         req: {id, type, silentMs}
   *   watchdogMs            how long a watched request may stay silent (default 180 s)
   *   restartLimit, restartWindowMs   at most this many restarts within the window (3 in 60 s)
   */
  constructor(create, { init, onUnsolicited, onStall, onActive, watchdogMs = 180_000, restartLimit = 3, restartWindowMs = 60_000 } = {}) {
    this.create = create;
    this.init = init || (() => {});
    this.onUnsolicited = onUnsolicited || (() => {});
    this.onStall = onStall || (() => {});
    this.onActive = onActive || (() => {});
    this.watchdogMs = watchdogMs;
    this.restartLimit = restartLimit;
    this.restartWindowMs = restartWindowMs;
    this.restarts = [];        // times of recent restarts
    this.nextId = 1;
    this.pending = new Map();  // id → {resolve, reject, onEvent, type, watched, last, stalled}
    this.dead = null;
    this.generation = 0;       // which worker this is: 1 for the first, one more on each restart
    this.trainPaused = false;
    this.timer = null;
    this.#start();
  }

  #start() {
    let worker;
    try {
      worker = this.create();
    } catch (e) {
      this.#die(`this browser cannot run the engine (module workers are required): ${e.message || e}`);
      return;
    }
    this.worker = worker;
    this.generation += 1;
    this.started = false;      // set by the worker's first message ({type: 'started'})
    worker.addEventListener('message', (e) => { if (worker === this.worker) this.#handle(e.data || {}); });
    worker.addEventListener('messageerror', () => {
      if (worker === this.worker) this.onUnsolicited({ type: 'crashed', message: 'a message from the engine could not be read' });
    });
    worker.addEventListener('error', (e) => {
      e.preventDefault();
      if (worker !== this.worker) return;
      const why = e.message ? e.message.replace(/^Uncaught (Error: )?/, '') : '';
      if (!this.started) {
        // The script itself did not run: starting it again would fail the same way.
        this.#die(`the engine failed to start${why ? `: ${why}` : ''}`);
      } else {
        this.onUnsolicited({ type: 'crashed', message: why || 'the engine stopped unexpectedly' });
      }
    });
    Promise.resolve(this.init(worker)).catch(() => {});
  }

  #die(message) {
    this.dead = message;
    try { this.worker?.terminate(); } catch { /* gone */ }
    this.#rejectAll('failed', message);
    this.onUnsolicited({ type: 'dead', message });
  }

  #rejectAll(code, message) {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    this.trainPaused = false;
    for (const p of waiting) p.reject(new EngineError(code, message));
    this.#watch();
  }

  #handle(msg) {
    if (msg.type === 'started' && msg.id === undefined) { this.started = true; return; }
    const p = this.pending.get(msg.id);
    if (!p) { this.onUnsolicited(msg); return; }
    p.last = performance.now();
    if (p.stalled) { p.stalled = false; this.onActive({ id: msg.id, type: p.type, silentMs: 0 }); }
    if (msg.type === 'result') { this.#settle(msg.id); p.resolve(msg.result); }
    else if (msg.type === 'error') { this.#settle(msg.id); p.reject(new EngineError(msg.code || 'failed', msg.message)); }
    else p.onEvent?.(msg);
  }

  #settle(id) {
    const p = this.pending.get(id);
    this.pending.delete(id);
    if (p?.type === 'train') this.trainPaused = false;
    if (p?.stalled) this.onActive({ id, type: p.type, silentMs: 0 });
    this.#watch();
  }

  // One timer while watched requests are pending; none otherwise.
  #watch() {
    const any = [...this.pending.values()].some((p) => p.watched);
    if (any && !this.timer) this.timer = setInterval(() => this.#check(), 1000);
    else if (!any && this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  #check() {
    const now = performance.now();
    for (const [id, p] of this.pending) {
      if (!p.watched || p.stalled) continue;
      if (p.type === 'train' && this.trainPaused) { p.last = now; continue; } // paused on purpose
      const silentMs = now - p.last;
      if (silentMs >= this.watchdogMs) {
        p.stalled = true;
        this.onStall({ id, type: p.type, silentMs });
      }
    }
  }

  /** The requests the watchdog reports as silent now. */
  stalled() {
    return [...this.pending].filter(([, p]) => p.stalled).map(([id, p]) => ({ id, type: p.type }));
  }

  /** Restarts the watchdog's count for every pending request ("keep waiting"). */
  keepWaiting() {
    const now = performance.now();
    for (const p of this.pending.values()) { p.last = now; p.stalled = false; }
  }

  /** Sends a request; resolves to its result. `onEvent` receives its progress/token events. */
  request(type, payload = {}, { onEvent, transfer } = {}) {
    const id = this.nextId++;
    if (this.dead) return { id, promise: Promise.reject(new EngineError('failed', this.dead)) };
    const promise = new Promise((resolve, reject) => this.pending.set(id, {
      resolve, reject, onEvent, type, watched: WATCHED.has(type), last: performance.now(), stalled: false,
    }));
    this.#watch();
    try {
      this.worker.postMessage({ ...payload, type, id }, transfer || []);
    } catch (e) {
      this.pending.delete(id);
      this.#watch();
      return { id, promise: Promise.reject(new EngineError('failed', e.message || String(e))) };
    }
    return { id, promise };
  }

  call(type, payload, opts) { return this.request(type, payload, opts).promise; }

  /** A control message (no reply). Pausing training also pauses the watchdog for it. */
  send(msg) {
    if (this.dead) return;
    if (msg && msg.type === 'train-control') {
      this.trainPaused = msg.action === 'pause';
      if (!this.trainPaused) this.keepWaiting();
    }
    this.worker.postMessage(msg);
  }

  /** Rejects every pending request with code 'lost' (the worker stays). */
  lose(message) { this.#rejectAll('lost', message); }

  /** Stops the worker for good (one that has done its job); pending requests reject with code 'lost'. */
  close(message = 'the worker was closed') {
    const old = this.worker;
    this.worker = null;
    this.dead = message;
    try { old?.terminate(); } catch { /* already gone */ }
    this.#rejectAll('lost', message);
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  /**
   * Replaces the worker with a fresh one: pending requests reject with code 'lost' and
   * `message`. Returns false, and marks the client dead, when the worker has already been
   * restarted `restartLimit` times within `restartWindowMs` (restarts not `counted` aside).
   */
  restart(message, deadMessage, { counted = true } = {}) {
    if (this.dead) return false;
    const now = performance.now();
    this.restarts = this.restarts.filter((t) => now - t < this.restartWindowMs);
    if (counted && this.restarts.length >= this.restartLimit) {
      this.#die(deadMessage || `${message}; it stopped ${this.restarts.length + 1} times within ${Math.round(this.restartWindowMs / 1000)} s, so it was not started again (reload the page to try again)`);
      return false;
    }
    // A move to another device is not a failure: it does not count towards the limit.
    if (counted) this.restarts.push(now);
    const old = this.worker;
    this.worker = null;
    try { old?.terminate(); } catch { /* already gone */ }
    this.#rejectAll('lost', message);
    this.#start();
    return !this.dead;
  }
}
