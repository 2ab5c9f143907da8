//! The settings of a training run, each listed once with its default.

use crate::error::{Error, Result};
use crate::lora::LoraConfig;
use serde::{Deserialize, Serialize};

/// Save a checkpoint every this many steps by default (one is also saved at each evaluation and
/// at the end). The CLI, the worker and the Train panel all take this value from here.
pub const DEFAULT_CHECKPOINT_EVERY: usize = 10;

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub lora: LoraConfig,
    pub learning_rate: f64,
    pub epochs: usize,
    /// Longer examples are cut to this many tokens (with a warning naming the record).
    pub max_len: usize,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Forward passes per optimizer step.
    pub grad_accum: usize,
    pub weight_decay: f64,
    /// Share of the steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    /// Global gradient-norm clip; 0 disables it.
    pub max_grad_norm: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Share of the records held out for evaluation; 0 trains on all of them.
    pub held_out: f64,
    /// Evaluate the held-out loss every this many steps (and after the last).
    pub eval_every: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lora: LoraConfig::default(),
            learning_rate: 2e-4,
            epochs: 3,
            max_len: 768,
            batch_size: 2,
            grad_accum: 2,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            held_out: 0.15,
            eval_every: 10,
            seed: 42,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        let bad = |m: &str| Err(Error::Input(m.to_string()));
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("the learning rate must be a positive number");
        }
        if self.epochs == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return bad("epochs, batch size and gradient accumulation must each be at least 1");
        }
        if self.max_len < 8 {
            return bad("max_len must be at least 8 tokens");
        }
        if !(0.0..1.0).contains(&self.held_out) {
            return bad("the held-out fraction must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("the warmup ratio must be in [0, 1]");
        }
        if self.max_grad_norm < 0.0 || self.weight_decay < 0.0 {
            return bad("max_grad_norm and weight_decay must not be negative");
        }
        if self.eval_every == 0 {
            return bad("eval_every must be at least 1");
        }
        // Upper bounds, so that a setting from a page or a file cannot size an allocation past
        // memory: far above any run this engine is for (~100 records, sequences of ≤ 2k tokens).
        let bounds = [
            ("epochs", self.epochs, 10_000),
            ("batch size", self.batch_size, 4096),
            ("gradient accumulation", self.grad_accum, 65_536),
            ("max_len", self.max_len, 32_768),
        ];
        for (name, value, max) in bounds {
            if value > max {
                return Err(Error::Input(format!("the {name} is {value}, over the {max} a run accepts")));
            }
        }
        Ok(())
    }
}
