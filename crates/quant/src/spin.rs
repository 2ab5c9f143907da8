//! A small fork-join pool for the matrix-vector products of decode, whose helpers spin between
//! products instead of sleeping.
//!
//! Decode runs some two hundred products a token, each a few hundred microseconds of work, with
//! short serial steps (norms, attention over the cache) between them. rayon's threads go to sleep
//! almost as soon as they run out of work, and waking one costs a futex call natively and an
//! `Atomics.notify` → `Atomics.wait` round trip in a browser, where that takes long enough to eat
//! much of a second core's gain. Here the helpers watch one atomic word for the next product for a
//! while (about a millisecond or more) before they sleep, so back-to-back products find them awake.
//!
//! The caller runs tasks too and returns once every task is done, so `f` may borrow from its
//! stack. One product runs at a time: a second caller meanwhile (another thread) runs its tasks
//! itself. Helpers: natively, spawned on first use (one fewer than rayon's threads); in the
//! browser, Web Workers that call [`helper_main`] (the engine starts them with rayon's).

use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Rounds of polling before a helper sleeps: long enough to span the serial steps between two
/// products (a `spin_loop` hint is a pause of some 10–40 ns natively, nothing in wasm).
#[cfg(not(target_family = "wasm"))]
const SPIN_ROUNDS: u32 = 100_000;
#[cfg(target_family = "wasm")]
const SPIN_ROUNDS: u32 = 2_000_000;

// The claim word: the product's generation, its task count and the next task to claim, read and
// claimed in one atomic operation so that a helper can never take a task of a product other
// than the one it saw.
const INDEX_BITS: u32 = 20;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// The most tasks one product may be split into.
pub const MAX_TASKS: usize = INDEX_MASK as usize;

fn word(generation: u64, tasks: usize, next: usize) -> u64 {
    (generation << (2 * INDEX_BITS)) | ((tasks as u64) << INDEX_BITS) | next as u64
}

fn generation_of(w: u64) -> u64 {
    w >> (2 * INDEX_BITS)
}

type Task<'a> = dyn Fn(usize) + Sync + 'a;

struct Pool {
    claim: AtomicU64,
    /// The current product's `&Task`, valid while any of its tasks is unclaimed or running.
    job: AtomicPtr<()>,
    done: AtomicUsize,
    helpers: AtomicUsize,
    submit: Mutex<()>,
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
}

static POOL: Pool = Pool {
    claim: AtomicU64::new(0),
    job: AtomicPtr::new(std::ptr::null_mut()),
    done: AtomicUsize::new(0),
    helpers: AtomicUsize::new(0),
    submit: Mutex::new(()),
    sleepers: AtomicUsize::new(0),
    sleep_lock: Mutex::new(()),
    wake: Condvar::new(),
};

/// Runs `f(0..tasks)` on the helpers and the calling thread; returns when all are done.
pub fn run(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    assert!(tasks <= MAX_TASKS, "{tasks} tasks is more than one product can be split into");
    ensure_helpers();
    let guard = if tasks > 1 && POOL.helpers.load(Ordering::Acquire) > 0 { POOL.submit.try_lock().ok() } else { None };
    let Some(_guard) = guard else {
        (0..tasks).for_each(f);
        return;
    };
    let pool = &POOL;
    // `job` holds a thin pointer to the fat `&dyn Fn`, which lives on this stack frame until
    // every task is done (this function waits for that below).
    let f_ref: &Task<'_> = f;
    pool.job.store(&f_ref as *const &Task<'_> as *mut (), Ordering::Relaxed);
    pool.done.store(0, Ordering::Relaxed);
    let generation = generation_of(pool.claim.load(Ordering::Relaxed)) + 1;
    pool.claim.store(word(generation, tasks, 0), Ordering::SeqCst);
    if pool.sleepers.load(Ordering::SeqCst) > 0 {
        let _lock = pool.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
        pool.wake.notify_all();
    }
    work(generation);
    while pool.done.load(Ordering::Acquire) < tasks {
        std::hint::spin_loop();
    }
    pool.job.store(std::ptr::null_mut(), Ordering::Relaxed);
}

/// Splits `data` into runs of `chunk` values (the last may be shorter) and calls `f(i, run_i)`
/// for each, on the helpers and the calling thread: [`run`] for a product's output rows.
pub fn run_chunks(data: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let chunk = chunk.max(1);
    let len = data.len();
    let base = SharedSlice(data.as_mut_ptr());
    run(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        // Runs do not overlap and each index is run once, so each run has one writer.
        let values = unsafe { std::slice::from_raw_parts_mut(base.at(start), chunk.min(len - start)) };
        f(i, values);
    });
}

/// `data`'s start, shared by the tasks of [`run_chunks`], each writing its own run.
struct SharedSlice(*mut f32);
unsafe impl Sync for SharedSlice {}
impl SharedSlice {
    fn at(&self, offset: usize) -> *mut f32 {
        unsafe { self.0.add(offset) }
    }
}

/// Claims and runs tasks of product `generation` until none is left.
fn work(generation: u64) {
    let pool = &POOL;
    loop {
        let w = pool.claim.load(Ordering::Acquire);
        let tasks = ((w >> INDEX_BITS) & INDEX_MASK) as usize;
        let next = (w & INDEX_MASK) as usize;
        if generation_of(w) != generation || next >= tasks {
            return;
        }
        if pool.claim.compare_exchange_weak(w, w + 1, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            continue;
        }
        // Task `next` of this product is ours and not done, so its caller is still waiting
        // and `job` still points at its closure.
        let job = pool.job.load(Ordering::Acquire) as *const &Task<'_>;
        let f = unsafe { &*job };
        f(next);
        pool.done.fetch_add(1, Ordering::Release);
    }
}

/// A helper's whole life: waits for products and runs their tasks, spinning a while after each
/// before it sleeps. Never returns.
pub fn helper_main() -> ! {
    let pool = &POOL;
    pool.helpers.fetch_add(1, Ordering::AcqRel);
    let mut seen = generation_of(pool.claim.load(Ordering::Acquire));
    loop {
        let mut rounds = 0;
        while generation_of(pool.claim.load(Ordering::Acquire)) == seen && rounds < SPIN_ROUNDS {
            std::hint::spin_loop();
            rounds += 1;
        }
        if generation_of(pool.claim.load(Ordering::Acquire)) == seen {
            let mut lock = pool.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            pool.sleepers.fetch_add(1, Ordering::SeqCst);
            while generation_of(pool.claim.load(Ordering::SeqCst)) == seen {
                lock = pool.wake.wait(lock).unwrap_or_else(|e| e.into_inner());
            }
            pool.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        seen = generation_of(pool.claim.load(Ordering::Acquire));
        work(seen);
    }
}

/// The helpers there are (after the first product natively; as many as have started in wasm).
pub fn helpers() -> usize {
    ensure_helpers();
    POOL.helpers.load(Ordering::Acquire)
}

/// Natively, spawns one fewer helper than rayon has threads (the caller is the last), once.
#[cfg(all(feature = "threads", not(target_family = "wasm")))]
fn ensure_helpers() {
    static SPAWNED: std::sync::Once = std::sync::Once::new();
    SPAWNED.call_once(|| {
        for i in 1..rayon::current_num_threads() {
            let spawned = std::thread::Builder::new().name(format!("cqa-matvec-{i}")).spawn(|| helper_main());
            if spawned.is_err() {
                break;
            }
        }
    });
}

#[cfg(not(all(feature = "threads", not(target_family = "wasm"))))]
fn ensure_helpers() {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once_across_many_products() {
        for round in 0..2000 {
            let tasks = 1 + round % 37;
            let hits: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
            run(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "round {round}");
        }
    }

    #[test]
    fn chunks_cover_the_slice_once_each() {
        for len in [0, 1, 15, 16, 17, 1000] {
            let mut data = vec![-1f32; len];
            run_chunks(&mut data, 16, |i, values| {
                assert!(values.len() <= 16);
                values.iter_mut().for_each(|v| *v = i as f32);
            });
            assert!(data.iter().enumerate().all(|(j, &v)| v == (j / 16) as f32), "len {len}: {data:?}");
        }
    }
}
