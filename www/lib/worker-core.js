// What the two engine workers (engine-worker.js, data-worker.js) share: the wasm package loaded
// from the WebAssembly.Module the page sends, the reply helpers, and dispatch from an explicit
// allow-list of requests. The protocol's common part:
//
//   page → worker   {type: 'init', module: WebAssembly.Module | null}   first message; null:
//                   compile it here. The page compiles the engine once and sends the module to
//                   each worker, so the 40 MB binary is fetched and compiled only once.
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

/** The wasm package, initialised once from the module the page sent (or compiled here). */
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
      onInit?.();
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
