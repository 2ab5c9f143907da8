//! Shared helpers for the integration tests: fixture and model paths, and loading the default
//! model once per test binary.
#![allow(dead_code)]

use cqa_studio::LanguageModel;
use std::path::PathBuf;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> serde_json::Value {
    let path = root().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// The default model. The README's test command fetches it; without it these tests fail loudly.
pub fn default_model_path() -> PathBuf {
    let p = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(p.exists(), "{} is missing: run `./x model` (the README's test command does)", p.display());
    p
}

pub fn default_model_bytes() -> Vec<u8> {
    std::fs::read(default_model_path()).expect("read the default model")
}

/// The default model on the CPU backend, loaded once.
pub fn default_model() -> &'static LanguageModel {
    static LM: OnceLock<LanguageModel> = OnceLock::new();
    LM.get_or_init(|| {
        LanguageModel::from_gguf_bytes(default_model_bytes(), cqa_studio::model::WeightMode::Stored, &cqa_studio::device::cpu()).expect("load the default model")
    })
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().expect("id list").iter().map(|x| x.as_u64().expect("id") as u32).collect()
}

pub fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().expect("float list").iter().map(|x| x.as_f64().expect("float") as f32).collect()
}

pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().expect("float list").iter().map(|x| x.as_f64().expect("float")).collect()
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Loads a weights-only GGUF (no tokenizer: the reference fixtures) with its weights held as
/// `mode`, and gives `ln p(ids[i+1] | ids[..=i])` for every position, with the model.
pub fn gguf_logprobs(
    file: cqa_studio::gguf::GgufFile,
    ids: &[u32],
    mode: cqa_studio::model::WeightMode,
    device: &burn::tensor::Device,
) -> (Vec<f32>, cqa_studio::model::Llama) {
    use burn::tensor::activation::log_softmax;
    use burn::tensor::{Int, Tensor, TensorData};
    use cqa_studio::model::{Llama, LlamaConfig, WeightSource};
    let config = LlamaConfig::from_gguf(&file).unwrap();
    let model = Llama::from_weights(&config, &WeightSource::Gguf(file), mode, device).unwrap();
    let n = ids.len();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&t| t as i32).collect::<Vec<_>>(), [1, n]), device);
    let logits = model.forward(tokens, &mut model.new_cache()).unwrap();
    let targets: Vec<i32> = ids[1..].iter().map(|&t| t as i32).collect();
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, n - 1, 1]), device);
    let picked = log_softmax(logits.narrow(1, 0, n - 1), 2).gather(2, targets);
    (cqa_studio::device::block_on(cqa_studio::device::read_f32(picked)).unwrap(), model)
}
