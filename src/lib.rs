//! cqa-studio's engine: a Llama-family language model (SmolLM2, Llama, Qwen2) on burn, loaded
//! from GGUF or HF safetensors, with the model's own tokenizer and chat template, incremental
//! generation and per-token scoring. The same code runs natively (the `cqa` CLI, on CPU or
//! wgpu) and in the browser on WebGPU (`web`).
//!
//! Layering: `web` / CLI → `train`, `appreciate`, `calibrate` → `prompt`, `generate`, `eval` →
//! `loader` → `model`, `lora` → `gguf`, `safetensors` (over `file_bytes`), `tokenizer` → `error`. Nothing below
//! `web` knows about JavaScript or the DOM; `schema` holds the constants every front-end reads.

pub mod appreciate;
pub mod calibrate;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod file_bytes;
pub mod generate;
pub mod gguf;
pub mod linear;
#[cfg(feature = "gpu-kernels")]
pub(crate) mod gpu_reduce;
pub mod loader;
pub mod lora;
pub mod model;
pub mod prompt;
pub mod quant;
pub mod raters;
pub mod report;
pub mod rng;
pub mod safetensors;
pub mod sampling;
pub mod schema;
pub mod stats;
pub mod study;
pub mod tokenizer;
pub mod train;
#[cfg(target_family = "wasm")]
pub mod web;

pub use error::{Error, Result};
pub use loader::LanguageModel;
