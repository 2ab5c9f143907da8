//! cqa-studio's CPU kernels with their own backward passes, for prefill and LoRA training on
//! the CPU (natively, and in the browser's wasm CPU path).
//!
//! burn's autodiff composes these from tensor ops: each step is a full tensor, made one
//! element-wise pass at a time on one thread, and training keeps several of them per layer for
//! the backward pass. Here each is one pass over the data, split over rayon's pool, keeping only
//! what its backward pass cannot cheaply rebuild.

pub mod attention;
pub mod loss;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;

/// Calls `f(i, a_chunk, b_chunk)` for the i-th chunks of two buffers (`a_len` and `b_len`
/// values each), on rayon's pool when built with threads.
fn for_each_chunk_pair(a: &mut [f32], a_len: usize, b: &mut [f32], b_len: usize, f: impl Fn(usize, &mut [f32], &mut [f32]) + Sync + Send) {
    #[cfg(feature = "threads")]
    {
        use rayon::prelude::*;
        a.par_chunks_mut(a_len.max(1)).zip(b.par_chunks_mut(b_len.max(1))).enumerate().for_each(|(i, (a, b))| f(i, a, b));
    }
    #[cfg(not(feature = "threads"))]
    a.chunks_mut(a_len.max(1)).zip(b.chunks_mut(b_len.max(1))).enumerate().for_each(|(i, (a, b))| f(i, a, b));
}

/// Calls `f(i, chunk)` for the i-th chunk of `len` values, on rayon's pool when built with threads.
fn for_each_chunk(a: &mut [f32], len: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    #[cfg(feature = "threads")]
    {
        use rayon::prelude::*;
        a.par_chunks_mut(len.max(1)).enumerate().for_each(|(i, a)| f(i, a));
    }
    #[cfg(not(feature = "threads"))]
    a.chunks_mut(len.max(1)).enumerate().for_each(|(i, a)| f(i, a));
}

/// Calls `f(i)` for tasks `0..n`, on rayon's pool when built with threads.
fn for_each_task(n: usize, f: impl Fn(usize) + Sync + Send) {
    #[cfg(feature = "threads")]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().for_each(f);
    }
    #[cfg(not(feature = "threads"))]
    (0..n).for_each(f);
}

/// A buffer shared by tasks that each write their own, disjoint part of it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: users hand each task parts of the buffer that no other task touches.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `at..at + len` must be in bounds and written by no one else meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, at: usize, len: usize) -> &mut [f32] {
        unsafe { std::slice::from_raw_parts_mut(self.0.add(at), len) }
    }
}

/// Values per task for element-wise work: large enough that a task outweighs its dispatch.
const ELEMENTS_PER_TASK: usize = 1 << 15;

#[cfg(test)]
pub(crate) mod testing {
    /// A small deterministic generator (xorshift), values in [-1, 1).
    pub fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }
}
