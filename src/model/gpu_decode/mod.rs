//! A decode step on the GPU backends (native wgpu, WebGPU) in a few fused kernels.
//!
//! burn's tensor ops make a decoded token of the default model ~1,700 small dispatches: every
//! multiply, reduction, slice write and copy is a kernel of its own, and on WebGPU each costs tens
//! of microseconds on the host before the GPU does anything. Here a layer is six dispatches:
//!
//! 1. RMSNorm folded into one product for q, k and v (with Qwen2's biases);
//! 2. RoPE on q and k, and k and v written into a cache allocated once for the session;
//! 3. attention over all heads, grouped KV heads read in place;
//! 4. the o-projection with its residual add;
//! 5. RMSNorm folded into gate and up, with SwiGLU;
//! 6. the down-projection with its residual add;
//!
//! and the token adds the embedding lookup, the final norm folded into the head, and the pick:
//! a greedy argmax, or the host sampler's algorithm (temperature, top-k, top-p, repetition
//! penalty, seeded) in one workgroup. 4 bytes are read back a token instead of the logits row.
//!
//! LoRA adapters stay factored: a product whose matrices are adapted takes one more dispatch for
//! x̂·A (all of the group's adapters at once), and adds s·(x̂·A)·B in the product's own kernel, as
//! it adds the biases.
//!
//! It serves a model whose matrices are stored words on the device (the default on a GPU); the
//! prompt's forward pass still goes through burn's ops, and its keys and values are copied into
//! the session's cache once. Anything else (f32 weights, factors that train, burn's `fusion`
//! build) keeps the tensor-op path: [`GpuDecoder::new`] says `None`.

#[cfg(all(feature = "gpu-kernels", not(feature = "fusion")))]
mod kernels;
#[cfg(all(feature = "gpu-kernels", not(feature = "fusion")))]
mod step;

#[cfg(all(feature = "gpu-kernels", not(feature = "fusion")))]
pub use step::{GpuDecoder, DISPATCHES_PER_LAYER};

/// Builds without the GPU kernels (the CPU-only builds) or with burn's fusion, whose tensors are
/// handles of its own stream: the decode step is never available there.
#[cfg(not(all(feature = "gpu-kernels", not(feature = "fusion"))))]
mod unavailable {
    use crate::error::Result;
    use crate::model::{KvCache, Llama};

    /// Never built in this configuration.
    pub enum GpuDecoder {}

    pub const DISPATCHES_PER_LAYER: usize = 6;

    impl GpuDecoder {
        pub fn new(_model: &Llama, _cache: &KvCache, _capacity: usize) -> Option<Self> {
            None
        }
        pub fn step(&mut self, _token: u32) -> Result<()> {
            match *self {}
        }
        pub fn sample_on_device(&mut self, _sampler: &crate::sampling::Sampler, _history: &[u32]) -> Result<()> {
            match *self {}
        }
        pub async fn picked_token(&mut self) -> Result<u32> {
            match *self {}
        }
        pub async fn logits(&self) -> Result<Vec<f32>> {
            match *self {}
        }
        pub fn position(&self) -> usize {
            match *self {}
        }
        pub fn dispatches_per_step(&self) -> usize {
            match *self {}
        }
    }
}
#[cfg(not(all(feature = "gpu-kernels", not(feature = "fusion"))))]
pub use unavailable::{GpuDecoder, DISPATCHES_PER_LAYER};

/// Whether inference may use the fused GPU kernels, this step and `gpu_attention` (on by default;
/// `cqa --gpu-kernels ops` turns them off to compare with burn's ops).
static ENABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, std::sync::atomic::Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(std::sync::atomic::Ordering::Relaxed)
}
