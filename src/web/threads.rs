//! rayon's thread pool on Web Workers: the browser's CPU path on every core, for pages that are
//! cross-origin isolated (SharedArrayBuffer, so one wasm memory is shared between workers).
//!
//! Starting the pool takes three steps, because rayon's `build_global` waits until every thread
//! of the pool runs: [`prepare_thread_pool`] opens the queue; the engine worker starts one Web
//! Worker per thread (www/lib/pool-worker.js), which instantiates this same module on the same
//! memory and blocks in [`pool_thread_main`] on the queue; once all have started,
//! [`build_thread_pool`] builds the pool, each of its threads queued as a [`ThreadBuilder`] and
//! taken by one waiting worker. A nested worker starts with its parent's help, so the parent must
//! not block before its pool workers have started.
//!
//! Beside rayon's threads run the decode products' spinning helpers (`cqa_quant::spin`), one
//! fewer than rayon's threads (the engine worker is the last), each a Web Worker in
//! [`matvec_helper_main`].
//!
//! Only the engine worker may call into rayon: it blocks in `Atomics.wait` while the pool works,
//! which a worker may do and a page's main thread may not.

use rayon::{ThreadBuilder, ThreadPoolBuilder};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};
use wasm_bindgen::prelude::*;

/// The threads waiting for a Web Worker to run them: the pool's side, then the workers' side.
static QUEUE_IN: Mutex<Option<(usize, SyncSender<ThreadBuilder>)>> = Mutex::new(None);
static QUEUE_OUT: OnceLock<Mutex<Receiver<ThreadBuilder>>> = OnceLock::new();

/// Opens the queue for a pool of `threads` threads. Call once, before the pool workers start.
#[wasm_bindgen(js_name = prepareThreadPool)]
pub fn prepare_thread_pool(threads: usize) -> Result<(), JsError> {
    if threads == 0 {
        return Err(JsError::new("a thread pool needs at least one thread"));
    }
    let (sender, receiver) = sync_channel(threads);
    QUEUE_OUT.set(Mutex::new(receiver)).map_err(|_| JsError::new("the thread pool is already prepared"))?;
    *QUEUE_IN.lock().map_err(|_| JsError::new("the thread queue is poisoned"))? = Some((threads, sender));
    Ok(())
}

/// Builds rayon's global pool once every pool worker waits in [`pool_thread_main`]; returns
/// when all its threads run.
#[wasm_bindgen(js_name = buildThreadPool)]
pub fn build_thread_pool() -> Result<(), JsError> {
    let (threads, sender) = QUEUE_IN
        .lock()
        .map_err(|_| JsError::new("the thread queue is poisoned"))?
        .take()
        .ok_or_else(|| JsError::new("prepareThreadPool() was not called, or the pool is built"))?;
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .spawn_handler(move |thread| sender.send(thread).map_err(|e| std::io::Error::other(e.to_string())))
        .build_global()
        .map_err(|e| JsError::new(&format!("the thread pool could not be built: {e}")))
}

/// A pool worker's whole life: takes one queued thread and runs rayon's loop on it (never returns
/// while the page lives).
#[wasm_bindgen(js_name = poolThreadMain)]
pub fn pool_thread_main() -> Result<(), JsError> {
    let queued = QUEUE_OUT.get().ok_or_else(|| JsError::new("prepareThreadPool() was not called"))?;
    let thread = queued.lock().map_err(|_| JsError::new("the thread queue is poisoned"))?.recv();
    thread.map_err(|_| JsError::new("no thread is queued for this worker"))?.run();
    Ok(())
}

/// A matrix-vector helper's whole life (`cqa_quant::spin`): the decode products' own threads,
/// which spin between products where rayon's would sleep. Started beside rayon's pool workers.
#[wasm_bindgen(js_name = matvecHelperMain)]
pub fn matvec_helper_main() {
    cqa_quant::spin::helper_main()
}

/// The number of threads in rayon's pool (1 before it is built: rayon then runs on the caller).
#[wasm_bindgen(js_name = poolThreads)]
pub fn pool_threads() -> usize {
    rayon::current_num_threads()
}

/// This module, for the pool workers to instantiate.
#[wasm_bindgen(js_name = poolModule)]
pub fn wasm_module() -> JsValue {
    wasm_bindgen::module()
}

/// This module's shared memory, for the pool workers to instantiate it on.
#[wasm_bindgen(js_name = poolMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}
