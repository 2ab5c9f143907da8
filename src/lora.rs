//! Low-rank adaptation (LoRA) adapters: their settings and their factors on the host, as
//! `y = x·W + b + s·(dropout(x)·A)·B` with the base `W` frozen, `A: [in, r]`, `B: [r, out]`,
//! `s = alpha / r` (PEFT's default, non-rsLoRA scaling). The factored product itself is
//! `crate::linear`'s ([`crate::linear::LoraFactors`]).
//!
//! Adapters are read and written in Hugging Face PEFT's layout: `adapter_config.json` and
//! `adapter_model.safetensors` with keys such as
//! `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` (`[r, in]`) and
//! `…lora_B.weight` (`[out, r]`); here the factors are kept transposed, in burn's `[in, out]`
//! orientation.

use crate::error::{Error, Result};
use crate::rng::Rng;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest rank accepted (the panel offers up to 1024; a larger one is a hostile setting).
pub const MAX_RANK: usize = 1024;

/// The projections LoRA can adapt, by their PEFT `target_modules` names.
pub const ALL_TARGETS: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/// LoRA hyper-parameters: what `adapter_config.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// A subset of [`ALL_TARGETS`].
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { rank: 16, alpha: 32.0, dropout: 0.05, targets: ALL_TARGETS.iter().map(|s| s.to_string()).collect() }
    }
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Parses `q,k,v,o,gate,up,down` (short or full names, or `all`).
    pub fn parse_targets(list: &str) -> Result<Vec<String>> {
        let mut targets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "all" {
                return Ok(ALL_TARGETS.iter().map(|s| s.to_string()).collect());
            }
            let full = if item.ends_with("_proj") { item.to_string() } else { format!("{item}_proj") };
            if !ALL_TARGETS.contains(&full.as_str()) {
                return Err(Error::Input(format!(
                    "unknown LoRA target `{item}`: choose from q, k, v, o, gate, up, down"
                )));
            }
            if !targets.contains(&full) {
                targets.push(full);
            }
        }
        if targets.is_empty() {
            return Err(Error::Input("no LoRA targets given: choose from q, k, v, o, gate, up, down".into()));
        }
        // Canonical order, so configs compare equal however the user listed them.
        targets.sort_by_key(|t| ALL_TARGETS.iter().position(|a| a == t));
        Ok(targets)
    }

    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 {
            return Err(Error::Input("the LoRA rank must be at least 1".into()));
        }
        if self.rank > MAX_RANK {
            return Err(Error::Input(format!("the LoRA rank must be at most {MAX_RANK}, got {}", self.rank)));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::Input("the LoRA alpha must be a positive number".into()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Input("the LoRA dropout must be in [0, 1)".into()));
        }
        for t in &self.targets {
            if !ALL_TARGETS.contains(&t.as_str()) {
                return Err(Error::Input(format!("unknown LoRA target `{t}`")));
            }
        }
        if self.targets.is_empty() {
            return Err(Error::Input("an adapter needs at least one target projection".into()));
        }
        Ok(())
    }

    /// True when the projection at HF path `path` (`model.layers.N.self_attn.q_proj`) is adapted.
    pub fn targets_path(&self, path: &str) -> bool {
        let leaf = path.rsplit('.').next().unwrap_or(path);
        self.targets.iter().any(|t| t == leaf)
    }
}

/// One projection's factors on the host, in burn's orientation.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorData {
    pub d_in: usize,
    pub d_out: usize,
    /// `[in, r]`, row-major.
    pub a: Vec<f32>,
    /// `[r, out]`, row-major.
    pub b: Vec<f32>,
}

/// A LoRA adapter held on the host: its settings and, per adapted projection (by HF module path,
/// e.g. `model.layers.0.self_attn.q_proj`), its factors.
#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub config: LoraConfig,
    pub factors: BTreeMap<String, FactorData>,
}

/// PEFT's key prefix for a causal LM.
const PEFT_PREFIX: &str = "base_model.model.";

impl Adapter {
    /// PEFT's initialisation, reproducibly seeded: `A ~ U(±1/√in)` (kaiming-uniform with
    /// `a = √5`), `B = 0`, so the adapted model starts equal to the base.
    pub fn init(config: &LoraConfig, projections: &[(String, usize, usize)], seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let r = config.rank;
        let mut factors = BTreeMap::new();
        for (path, d_in, d_out) in projections {
            if !config.targets_path(path) {
                continue;
            }
            let bound = 1.0 / (*d_in as f64).sqrt();
            let a = (0..d_in * r).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
            factors.insert(path.clone(), FactorData { d_in: *d_in, d_out: *d_out, a, b: vec![0.0; r * d_out] });
        }
        Ok(Adapter { config: config.clone(), factors })
    }

    /// Number of trainable values.
    pub fn parameter_count(&self) -> usize {
        self.factors.values().map(|f| f.a.len() + f.b.len()).sum()
    }

    /// `adapter_config.json`, as PEFT writes it for a LoRA on a causal LM.
    pub fn peft_config_json(&self, base_model: Option<&str>) -> String {
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.config.rank,
            "lora_alpha": self.config.alpha,
            "lora_dropout": self.config.dropout,
            "target_modules": self.config.targets,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "use_dora": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
            "layers_to_transform": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        });
        serde_json::to_string_pretty(&config).expect("a JSON value always serializes")
    }

    /// `adapter_model.safetensors` with PEFT's key names and `[r, in]` / `[out, r]` layouts.
    pub fn peft_safetensors(&self) -> Result<Vec<u8>> {
        let r = self.config.rank;
        let mut transposed = Vec::with_capacity(self.factors.len());
        for (path, f) in &self.factors {
            transposed.push((path, f, transpose(&f.a, f.d_in, r), transpose(&f.b, r, f.d_out))); // [r, in], [out, r]
        }
        let mut tensors = Vec::with_capacity(2 * transposed.len());
        for (path, f, lora_a, lora_b) in &transposed {
            tensors.push((format!("{PEFT_PREFIX}{path}.lora_A.weight"), vec![r, f.d_in], lora_a.as_slice()));
            tensors.push((format!("{PEFT_PREFIX}{path}.lora_B.weight"), vec![f.d_out, r], lora_b.as_slice()));
        }
        crate::safetensors::write_f32(&tensors, &[("format", "pt".to_string())])
    }

    /// Reads a PEFT adapter. `projections` lists the model's `(path, in, out)`, so that an
    /// adapter made for another model is refused with a clear message.
    pub fn from_peft(config_json: &str, safetensors_bytes: &[u8], projections: &[(String, usize, usize)]) -> Result<Self> {
        let config = parse_peft_config(config_json)?;
        let file = safetensors::SafeTensors::deserialize(safetensors_bytes)
            .map_err(|e| Error::Safetensors(format!("adapter_model.safetensors is not a valid safetensors file: {e}")))?;
        let r = config.rank;
        let mut factors = BTreeMap::new();
        for (path, d_in, d_out) in projections {
            let key_a = format!("{PEFT_PREFIX}{path}.lora_A.weight");
            let key_b = format!("{PEFT_PREFIX}{path}.lora_B.weight");
            let (a, b) = match (file.tensor(&key_a).ok(), file.tensor(&key_b).ok()) {
                (None, None) => continue,
                (Some(a), Some(b)) => (a, b),
                _ => return Err(Error::Safetensors(format!("the adapter has only one of lora_A / lora_B for `{path}`"))),
            };
            let lora_a = adapter_tensor(&key_a, &a, &[r, *d_in])?;
            let lora_b = adapter_tensor(&key_b, &b, &[*d_out, r])?;
            factors.insert(
                path.clone(),
                FactorData { d_in: *d_in, d_out: *d_out, a: transpose(&lora_a, r, *d_in), b: transpose(&lora_b, *d_out, r) },
            );
        }
        let known = factors.len() * 2;
        let lora_keys = file.names().iter().filter(|n| n.contains(".lora_")).count();
        if known != lora_keys {
            let stray = file
                .names()
                .into_iter()
                .find(|n| n.contains(".lora_") && !factors.keys().any(|p| n.starts_with(&format!("{PEFT_PREFIX}{p}."))))
                .unwrap_or_default()
                .to_string();
            return Err(Error::Safetensors(format!(
                "the adapter has a tensor this model has no place for (`{stray}`): it was made for another model"
            )));
        }
        if factors.is_empty() {
            return Err(Error::Safetensors("the adapter holds no LoRA tensors".into()));
        }
        Ok(Adapter { config, factors })
    }
}

/// Reads the fields of `adapter_config.json` this engine supports, refusing the rest clearly.
fn parse_peft_config(json: &str) -> Result<LoraConfig> {
    let bad = |msg: String| Error::Safetensors(format!("adapter_config.json: {msg}"));
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("not valid JSON ({e})")))?;
    if let Some(kind) = v.get("peft_type").and_then(|t| t.as_str())
        && kind != "LORA" {
            return Err(bad(format!("`{kind}` adapters are not supported, only LORA")));
        }
    for (flag, what) in [("use_dora", "DoRA"), ("use_rslora", "rsLoRA scaling")] {
        if v.get(flag).and_then(|f| f.as_bool()) == Some(true) {
            return Err(bad(format!("{what} is not supported")));
        }
    }
    if v.get("fan_in_fan_out").and_then(|f| f.as_bool()) == Some(true) {
        return Err(bad("fan_in_fan_out adapters are not supported".into()));
    }
    for field in ["rank_pattern", "alpha_pattern"] {
        if v.get(field).and_then(|p| p.as_object()).is_some_and(|m| !m.is_empty()) {
            return Err(bad(format!("per-module `{field}` is not supported")));
        }
    }
    let rank = v.get("r").and_then(|r| r.as_u64()).ok_or_else(|| bad("missing `r`".into()))? as usize;
    let alpha = v.get("lora_alpha").and_then(|a| a.as_f64()).ok_or_else(|| bad("missing `lora_alpha`".into()))?;
    let dropout = v.get("lora_dropout").and_then(|d| d.as_f64()).unwrap_or(0.0);
    let targets = match v.get("target_modules") {
        Some(serde_json::Value::Array(items)) => {
            let names: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
            LoraConfig::parse_targets(&names.join(","))?
        }
        Some(serde_json::Value::String(s)) if s == "all-linear" => ALL_TARGETS.iter().map(|s| s.to_string()).collect(),
        _ => return Err(bad("`target_modules` must be a list of projection names".into())),
    };
    let config = LoraConfig { rank, alpha, dropout, targets };
    config.validate()?;
    Ok(config)
}

fn adapter_tensor(name: &str, view: &safetensors::tensor::TensorView<'_>, expected: &[usize]) -> Result<Vec<f32>> {
    if view.shape() != expected {
        return Err(Error::Safetensors(format!(
            "`{name}` has shape {:?} but this model and rank need {:?}: the adapter was made for another model",
            view.shape(),
            expected
        )));
    }
    crate::safetensors::view_to_f32(name, view)
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; x.len()];
    for i in 0..rows {
        for j in 0..cols {
            t[j * rows + i] = x[i * cols + j];
        }
    }
    t
}

impl FactorData {
    /// The factors as tensors on `device`.
    pub fn to_tensors(&self, rank: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let a = Tensor::from_data(TensorData::new(self.a.clone(), [self.d_in, rank]), device);
        let b = Tensor::from_data(TensorData::new(self.b.clone(), [rank, self.d_out]), device);
        (a, b)
    }
}
