// The page's side of the worker protocol (lib/worker-core.js describes it; engine-worker.js and
// data-worker.js list their requests): requests with ids, events routed to the caller, one result
// or error per request.

export class EngineError extends Error {
  constructor(code, message) { super(message); this.code = code; }
}

export class WorkerClient {
  constructor(worker, onUnsolicited) {
    this.worker = worker;
    this.nextId = 1;
    this.pending = new Map();
    this.onUnsolicited = onUnsolicited || (() => {});
    worker.addEventListener('message', (e) => this.#handle(e.data || {}));
    worker.addEventListener('error', (e) => {
      e.preventDefault();
      const message = `the engine failed to start${e.message ? `: ${e.message}` : ''}`;
      this.dead = message;
      for (const p of this.pending.values()) p.reject(new EngineError('failed', message));
      this.pending.clear();
      this.onUnsolicited({ type: 'dead', message });
    });
  }

  #handle(msg) {
    const p = this.pending.get(msg.id);
    if (!p) { this.onUnsolicited(msg); return; }
    if (msg.type === 'result') { this.pending.delete(msg.id); p.resolve(msg.result); }
    else if (msg.type === 'error') { this.pending.delete(msg.id); p.reject(new EngineError(msg.code, msg.message)); }
    else p.onEvent?.(msg);
  }

  /** Sends a request; resolves to its result. `onEvent` receives its progress/token events. */
  request(type, payload = {}, { onEvent, transfer } = {}) {
    const id = this.nextId++;
    if (this.dead) return { id, promise: Promise.reject(new EngineError('failed', this.dead)) };
    const promise = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, onEvent }));
    this.worker.postMessage({ ...payload, type, id }, transfer || []);
    return { id, promise };
  }

  call(type, payload, opts) { return this.request(type, payload, opts).promise; }

  send(msg) { this.worker.postMessage(msg); }
}
