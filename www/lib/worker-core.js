// What the two engine workers (engine-worker.js, data-worker.js) share: the wasm package loaded
// from the WebAssembly.Module the page sends, the reply helpers, and dispatch from an explicit
// allow-list of requests. The protocol's common part:
//
//   page → worker   {type: 'init', module: WebAssembly.Module | null, device?}   first message;
//                   null: compile it here. The page compiles the engine once and sends the module
//                   to each worker, so the binary is fetched and compiled only once. `device`
//                   (engine worker only): how to choose the device, see engine-worker.js.
//   page → worker   {type, id, …}   a request; `id` is a number chosen by the page
//   worker → page   zero or more events {type, id, …}, then exactly one of
//                     {type: 'result', id, result}
//                     {type: 'error',  id, code, message}    code: 'busy' | 'cancelled' | 'failed'
//                                                            | 'lost'
//                   `message` is a human sentence (the engine's error message, never a stack).
//   worker → page   {type: 'started'}   once, when the worker's script has run (an 'error' event
//                   before it means the worker cannot start; after it, that the worker crashed)
//   worker → page   {type: 'crashed', message}   unsolicited: the wasm trapped (a Rust panic, an
//                   allocation that failed, …). Its state can no longer be trusted, so the request
//                   that trapped is answered with code 'lost' and the page restarts the worker.
//
// A request whose type is not in the worker's allow-list is answered with code 'failed'.
// Both workers also answer the test-only request {type: 'simulate-crash', id} (an exception
// thrown outside any handler, after the reply) so that tests can exercise the page's restart.

let wasmReady = null;       // Promise of the wasm package's exports
let resolveModule;
const modulePromise = new Promise((r) => { resolveModule = r; });

export const post = (msg, transfer) => self.postMessage(msg, transfer || []);

/** The sentence of a thrown value (an engine `Error`, a DOM exception, a string). */
export const messageOf = (e) => {
  const m = (e && e.message) ? e.message : String(e);
  return m.replace(/^Error:\s*/, '');
};

/**
 * The wasm package, initialised once: the one whose module the page sent (or compiled here), or
 * the threaded CPU build if `ensureThreadedWasm` was called first.
 */
export function ensureWasm() {
  if (!wasmReady) {
    wasmReady = (async () => {
      const module = await modulePromise;
      const mod = await import(new URL('../pkg/cqa_studio.js', import.meta.url));
      await (module ? mod.default({ module_or_path: module }) : mod.default());
      return mod;
    })();
    wasmReady.catch(() => { wasmReady = null; });
  }
  return wasmReady;
}

// The threaded CPU build's pool workers (kept referenced: they share this worker's memory).
let poolWorkers = [];
// How long a pool worker may take to start (fetch and instantiate the module) before the
// threaded build is given up for the single-threaded one.
const POOL_START_MS = 60_000;

/**
 * The threaded CPU build (pkg-threads/: wasm atomics, one shared memory) with rayon's pool on
 * `threads` Web Workers (lib/pool-worker.js), all started before the pool is built, since the
 * build waits for its threads to run and this worker must not block while they start
 * (src/web/threads.rs). Needs a cross-origin isolated
 * page (SharedArrayBuffer). On failure the pool workers are ended and nothing is kept, so the
 * caller can fall back to `ensureWasm()`.
 */
export function ensureThreadedWasm(threads) {
  if (!wasmReady) {
    wasmReady = (async () => {
      const mod = await import(new URL('../pkg-threads/cqa_studio.js', import.meta.url));
      await mod.default();
      mod.prepareThreadPool(threads);
      const init = { type: 'pool-init', module: mod.poolModule(), memory: mod.poolMemory() };
      // rayon's threads, and one fewer spinning helpers for decode's matrix-vector products
      // (this worker is the last).
      const roles = [...Array(threads).fill('rayon'), ...Array(threads - 1).fill('matvec')];
      poolWorkers = roles.map((role, i) => new Worker(new URL('./pool-worker.js', import.meta.url), { type: 'module', name: `engine-${role}-${i + 1}` }));
      await Promise.all(poolWorkers.map((worker, i) => startPoolWorker(worker, { ...init, role: roles[i] })));
      // Every pool worker now waits for its thread: rayon's build can wait for them to run it.
      mod.buildThreadPool();
      return mod;
    })();
    wasmReady.catch(() => {
      wasmReady = null;
      for (const w of poolWorkers) w.terminate();
      poolWorkers = [];
    });
  }
  return wasmReady;
}

function startPoolWorker(worker, init) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`a thread did not start within ${POOL_START_MS / 1000} s`)), POOL_START_MS);
    const done = (f, v) => { clearTimeout(timer); f(v); };
    worker.onmessage = ({ data }) => {
      if (data?.type === 'pool-ready') done(resolve);
      else if (data?.type === 'pool-failed') done(reject, new Error(`a thread could not start (${data.message})`));
    };
    worker.onerror = (e) => { e.preventDefault?.(); done(reject, new Error(`a thread could not start (${e.message || 'its script failed'})`)); };
    worker.postMessage(init);
  });
}

/** A frozen table of handlers by request type: the only names a worker will dispatch. */
export const allowList = (handlers) => Object.freeze(Object.assign(Object.create(null), handlers));

/** The handler for `type` in `table`, or null: own entries only, never inherited names. */
export const lookup = (table, type) => (typeof type === 'string' && Object.hasOwn(table, type) ? table[type] : null);

/** Answers a request that names no known handler. */
export function refuse(msg) {
  post({ type: 'error', id: msg.id, code: 'failed', message: `unknown request ${String(msg.type)}` });
}

/**
 * Runs one request: its events carry its id, and it ends with one result or error.
 * `lostWhy(error)`, when given, resolves to a sentence if the error came from a lost device (the
 * request is then answered with code 'lost', so the page can restart the engine and resume).
 */
export async function runJob(job, msg, { lostWhy } = {}) {
  const ev = (e, transfer) => post({ ...e, id: msg.id }, transfer);
  try {
    const result = await job(msg, ev);
    post({ type: 'result', id: msg.id, result });
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) {
      // A trap leaves the engine's memory half-updated (locks held, borrows never released):
      // nothing it holds can be trusted any more, so the page restarts this worker.
      const message = `the engine stopped unexpectedly (${messageOf(e)}) and is restarting`;
      post({ type: 'error', id: msg.id, code: 'lost', message });
      post({ type: 'crashed', message });
      return;
    }
    const lost = lostWhy ? await lostWhy(e) : null;
    if (lost) { post({ type: 'error', id: msg.id, code: 'lost', message: lost }); return; }
    post({ type: 'error', id: msg.id, code: 'failed', message: messageOf(e) });
  }
}

/** The test-only 'simulate-crash' request: an uncaught exception once the reply is out. */
export function simulateCrash() {
  setTimeout(() => { throw new Error('simulated crash (simulate-crash)'); }, 0);
  return { scheduled: true };
}

/**
 * Starts answering the page: 'init' hands over the wasm module (then `onInit` runs), every other
 * message goes to `onMessage`.
 */
export function serve(onMessage, { onInit } = {}) {
  post({ type: 'started' });
  self.onmessage = async (event) => {
    const msg = (event.data && typeof event.data === 'object') ? event.data : {};
    if (msg.type === 'init') {
      resolveModule(msg.module || null);
      onInit?.(msg);
      return;
    }
    await onMessage(msg);
  };
}

// Lets queued messages (stop, pause) run between engine steps: a MessageChannel round trip is a
// task, so the worker's message handler gets its turn.
let channel = null;
const waiters = [];
export function yieldToEvents() {
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => { const w = waiters.shift(); if (w) w(); };
  }
  return new Promise((resolve) => { waiters.push(resolve); channel.port2.postMessage(0); });
}
