//! Model hyper-parameters, named as in HF `config.json` (`LlamaConfig` / `Qwen2Config`), resolved
//! from either a `config.json` or GGUF metadata into one struct with no `Option`s.

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use serde::{Deserialize, Serialize};

/// The Llama-family hyper-parameters the forward pass needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `llama` or `qwen2` (Qwen2 adds a bias to q/k/v).
    pub architecture: String,
    /// Rows of the embedding matrix.
    pub vocab_size: usize,
    /// Model width `d`.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward block.
    pub intermediate_size: usize,
    /// Decoder blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than query heads).
    pub num_key_value_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Longest sequence the model was trained for; also the size of the RoPE tables.
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the token embedding matrix.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry a bias (Qwen2).
    pub attention_bias: bool,
}

/// The subset of HF `config.json` that we read. Absent structural fields take HF's class
/// defaults (`num_key_value_heads` = heads, `head_dim` = width / heads); the fields that change
/// the numbers with no safe default (`rope_theta`, `rms_norm_eps`) must be present.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers ≥ 5 writes `{"rope_theta": …, "rope_type": …}` here instead of a top-level
    /// `rope_theta`.
    rope_parameters: Option<serde_json::Value>,
    hidden_act: Option<String>,
}

/// The RoPE base of a `config.json` in either layout (top-level `rope_theta`, transformers ≤ 4;
/// `rope_parameters`, transformers ≥ 5). Any RoPE variant other than the default one is refused:
/// computing it as plain RoPE would give wrong numbers silently.
fn resolve_rope_theta(hf: &HfConfig) -> Result<f64> {
    let refuse = |what: String| Err(Error::Model(format!("config.json {what}; only the default RoPE is implemented")));
    let rope_type = |v: &serde_json::Value| {
        v.get("rope_type").or_else(|| v.get("type")).and_then(|t| t.as_str()).unwrap_or("default").to_string()
    };
    if let Some(scaling) = hf.rope_scaling.as_ref().filter(|v| !v.is_null()) {
        let kind = rope_type(scaling);
        if kind != "default" {
            return refuse(format!("uses rope_scaling of type `{kind}`"));
        }
    }
    let mut theta = hf.rope_theta;
    if let Some(params) = hf.rope_parameters.as_ref().filter(|v| !v.is_null()) {
        let Some(map) = params.as_object() else {
            return refuse(format!("has a rope_parameters value that is not an object ({params})"));
        };
        let kind = rope_type(params);
        if kind != "default" {
            return refuse(format!("uses rope_type `{kind}` in rope_parameters"));
        }
        for (key, value) in map {
            match key.as_str() {
                "rope_theta" | "rope_type" | "type" => {}
                "partial_rotary_factor" if value.as_f64() == Some(1.0) => {}
                other => return refuse(format!("sets rope_parameters.{other} = {value}")),
            }
        }
        if let Some(v) = map.get("rope_theta") {
            let Some(nested) = v.as_f64() else {
                return refuse(format!("has a rope_parameters.rope_theta that is not a number ({v})"));
            };
            if let Some(top) = theta
                && top != nested
            {
                return Err(Error::Model(format!(
                    "config.json gives two RoPE bases: rope_theta = {top} and rope_parameters.rope_theta = {nested}"
                )));
            }
            theta = Some(nested);
        }
    }
    theta.ok_or_else(|| {
        Error::Model(
            "config.json gives no RoPE base (neither `rope_theta` nor `rope_parameters.rope_theta`); it changes every log-prob, so it is not guessed".into(),
        )
    })
}

/// RoPE tables are allocated for this many positions at most, whatever the model claims.
const MAX_ROPE_POSITIONS: usize = 32_768;

impl LlamaConfig {
    /// Parses HF `config.json`.
    pub fn from_hf_json(json: &str) -> Result<Self> {
        let hf: HfConfig = serde_json::from_str(json)
            .map_err(|e| Error::Model(format!("config.json is not a Llama/Qwen2 config: {e}")))?;
        let architecture = match hf.model_type.as_deref() {
            Some("llama") | None => "llama",
            Some("qwen2") => "qwen2",
            Some(other) => {
                return Err(Error::Model(format!(
                    "config.json has model_type `{other}`; only `llama` and `qwen2` models are supported"
                )));
            }
        };
        if let Some(act) = hf.hidden_act.as_deref().filter(|a| *a != "silu") {
            return Err(Error::Model(format!("config.json has hidden_act `{act}`; only `silu` (SwiGLU) is implemented")));
        }
        let rope_theta = resolve_rope_theta(&hf)?;
        let rms_norm_eps = hf.rms_norm_eps.ok_or_else(|| {
            Error::Model("config.json gives no `rms_norm_eps`; it changes every log-prob, so it is not guessed".into())
        })?;
        let cfg = LlamaConfig {
            architecture: architecture.to_string(),
            vocab_size: hf.vocab_size,
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            head_dim: hf.head_dim.unwrap_or(hf.hidden_size / hf.num_attention_heads.max(1)),
            rms_norm_eps,
            rope_theta,
            max_position_embeddings: hf.max_position_embeddings.unwrap_or(2048).min(MAX_ROPE_POSITIONS),
            tie_word_embeddings: hf.tie_word_embeddings.unwrap_or(false),
            attention_bias: hf.attention_bias.unwrap_or(architecture == "qwen2"),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `{arch}.*` metadata from a GGUF file. `tie_word_embeddings` follows the presence of
    /// an `output.weight` tensor, as in llama.cpp.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch = file.architecture()?.to_string();
        if arch != "llama" && arch != "qwen2" {
            return Err(Error::Model(format!(
                "GGUF architecture `{arch}` is not supported; only `llama` (SmolLM2, Llama) and `qwen2` models are"
            )));
        }
        let int = |key: &str| -> Result<usize> {
            let full = format!("{arch}.{key}");
            file.get(&full)
                .and_then(|v| v.as_u64())
                .map(|v| v as usize)
                .ok_or_else(|| Error::Model(format!("GGUF metadata `{full}` is missing or not an integer")))
        };
        let float = |key: &str, default: f64| -> f64 {
            file.get(&format!("{arch}.{key}")).and_then(|v| v.as_f64()).unwrap_or(default)
        };
        let hidden_size = int("embedding_length")?;
        let num_attention_heads = int("attention.head_count")?;
        let vocab_size = match int("vocab_size") {
            Ok(v) => v,
            Err(_) => file
                .get("tokenizer.ggml.tokens")
                .and_then(|v| v.as_array())
                .map(|a| a.len())
                .ok_or_else(|| Error::Model("GGUF file has neither a vocab_size nor a token list".into()))?,
        };
        let head_dim = int("attention.key_length").unwrap_or(hidden_size / num_attention_heads.max(1));
        let cfg = LlamaConfig {
            vocab_size,
            hidden_size,
            intermediate_size: int("feed_forward_length")?,
            num_hidden_layers: int("block_count")?,
            num_attention_heads,
            num_key_value_heads: int("attention.head_count_kv").unwrap_or(num_attention_heads),
            head_dim,
            rms_norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5),
            rope_theta: float("rope.freq_base", 10_000.0),
            max_position_embeddings: int("context_length").unwrap_or(2048).min(MAX_ROPE_POSITIONS),
            tie_word_embeddings: file.tensor_info("output.weight").is_none(),
            attention_bias: file.tensor_info("blk.0.attn_q.bias").is_some(),
            architecture: arch,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        // Upper bounds far above any Llama-family model this engine targets (Qwen2.5-72B: width
        // 8192, 80 layers, head 128, 152k tokens, 128k positions), so that a hostile config is
        // refused before it sizes a buffer (the RoPE tables are positions × head_dim; positions are
        // capped at MAX_ROPE_POSITIONS where the config is read).
        let bounds: [(&str, usize, usize); 8] = [
            ("vocab_size", self.vocab_size, 1 << 22),
            ("hidden_size", self.hidden_size, 1 << 16),
            ("intermediate_size", self.intermediate_size, 1 << 18),
            ("num_hidden_layers", self.num_hidden_layers, 1 << 10),
            ("num_attention_heads", self.num_attention_heads, 1 << 10),
            ("num_key_value_heads", self.num_key_value_heads, 1 << 10),
            ("head_dim", self.head_dim, 1 << 10),
            ("max_position_embeddings", self.max_position_embeddings, 1 << 20),
        ];
        for (name, value, max) in bounds {
            if value > max {
                return Err(Error::Model(format!("the model's {name} is {value}, over the {max} this engine accepts: is the config corrupt?")));
            }
        }
        let ok = self.vocab_size > 0
            && self.hidden_size > 0
            && self.num_hidden_layers > 0
            && self.num_attention_heads > 0
            && self.num_key_value_heads > 0
            && self.num_attention_heads.is_multiple_of(self.num_key_value_heads)
            && self.head_dim.is_multiple_of(2)
            && self.head_dim > 0;
        if ok {
            Ok(())
        } else {
            Err(Error::Model(format!("inconsistent model hyper-parameters: {self:?}")))
        }
    }

    /// SmolLM2-135M(-Instruct): the default model.
    pub fn smollm2_135m() -> Self {
        LlamaConfig {
            architecture: "llama".into(),
            vocab_size: 49152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            max_position_embeddings: 8192,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    /// A tiny random-weight model for tests: GQA (4 query / 2 KV heads), two blocks.
    pub fn tiny(vocab_size: usize) -> Self {
        LlamaConfig {
            architecture: "llama".into(),
            vocab_size,
            hidden_size: 32,
            intermediate_size: 48,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 8,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: 128,
            tie_word_embeddings: true,
            attention_bias: false,
        }
    }

    /// Number of parameters, counting tied embeddings once.
    pub fn parameter_count(&self) -> usize {
        let d = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let per_layer = d * q + 2 * d * kv + q * d + bias + 3 * d * self.intermediate_size + 2 * d;
        let head = if self.tie_word_embeddings { 0 } else { self.vocab_size * d };
        self.vocab_size * d + self.num_hidden_layers * per_layer + d + head
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm2_has_135m_parameters() {
        let n = LlamaConfig::smollm2_135m().parameter_count();
        assert_eq!(n, 134_515_008);
    }

    #[test]
    fn reads_hf_config_json() {
        let json = r#"{"model_type":"qwen2","vocab_size":151936,"hidden_size":896,"intermediate_size":4864,
            "num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"rms_norm_eps":1e-6,
            "rope_theta":1000000.0,"max_position_embeddings":32768,"tie_word_embeddings":true}"#;
        let c = LlamaConfig::from_hf_json(json).unwrap();
        assert_eq!(c.head_dim, 64);
        assert!(c.attention_bias);
        assert!(LlamaConfig::from_hf_json(r#"{"model_type":"gpt2"}"#).is_err());
    }

    const SMOLLM2: &str = r#""vocab_size":49152,"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,
        "num_attention_heads":9,"num_key_value_heads":3,"rms_norm_eps":1e-5"#;

    fn parse(extra: &str) -> Result<LlamaConfig> {
        LlamaConfig::from_hf_json(&format!(r#"{{"model_type":"llama",{SMOLLM2}{extra}}}"#))
    }

    #[test]
    fn hostile_sizes_are_refused_before_any_table_is_built() {
        let err = parse(r#","rope_theta":100000.0,"head_dim":1073741824"#).unwrap_err().to_string();
        assert!(err.contains("head_dim is 1073741824"), "{err}");
        let huge = LlamaConfig { intermediate_size: 1 << 32, ..LlamaConfig::smollm2_135m() };
        let err = huge.validate().unwrap_err().to_string();
        assert!(err.contains("intermediate_size is 4294967296"), "{err}");
        assert!(parse(r#","rope_theta":100000.0,"max_position_embeddings":131072,"head_dim":128"#).is_ok());
    }

    #[test]
    fn reads_both_rope_layouts() {
        // transformers ≤ 4: top level; transformers ≥ 5: rope_parameters.
        assert_eq!(parse(r#","rope_theta":100000.0"#).unwrap().rope_theta, 100_000.0);
        let v5 = parse(r#","rope_parameters":{"rope_theta":100000.0,"rope_type":"default"}"#).unwrap();
        assert_eq!(v5.rope_theta, 100_000.0);
        assert_eq!(v5, parse(r#","rope_theta":100000.0,"rope_scaling":null"#).unwrap());
    }

    #[test]
    fn refuses_what_would_change_the_numbers() {
        let err = |extra: &str| parse(extra).unwrap_err().to_string();
        assert!(err("").contains("no RoPE base"), "{}", err(""));
        let llama3 = r#","rope_parameters":{"rope_theta":500000.0,"rope_type":"llama3","factor":8.0}"#;
        assert!(err(llama3).contains("rope_type `llama3`"), "{}", err(llama3));
        let yarn = r#","rope_theta":10000.0,"rope_scaling":{"type":"yarn","factor":4.0}"#;
        assert!(err(yarn).contains("rope_scaling of type `yarn`"), "{}", err(yarn));
        let both = r#","rope_theta":10000.0,"rope_parameters":{"rope_theta":100000.0}"#;
        assert!(err(both).contains("two RoPE bases"), "{}", err(both));
        let partial = r#","rope_parameters":{"rope_theta":10000.0,"partial_rotary_factor":0.5}"#;
        assert!(err(partial).contains("partial_rotary_factor"), "{}", err(partial));
        let no_eps = LlamaConfig::from_hf_json(r#"{"model_type":"llama","vocab_size":8,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2,"rope_theta":10000.0}"#);
        assert!(no_eps.unwrap_err().to_string().contains("rms_norm_eps"));
        assert!(err(r#","rope_theta":1.0,"hidden_act":"gelu""#).contains("hidden_act `gelu`"));
    }
}
