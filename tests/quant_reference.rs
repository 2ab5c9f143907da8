//! Weights held in their stored form give transformers' log-probabilities, for every weight
//! type the engine reads: `tests/fixtures/quant_mix.gguf` cycles its matrices through F16,
//! BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K, and `quant_mix_logprobs.json` holds what
//! transformers (float32, every tensor dequantized by gguf-py) computes from it. Both come from
//! `tests/reference/make_quant_fixtures.py`.

mod common;

use cqa_studio::gguf::GgufFile;
use cqa_studio::model::{Llama, WeightMode};

/// The same bound as the default model's check (model_reference.rs).
const LOGPROB_TOLERANCE: f32 = 2e-3;

fn logprobs(mode: WeightMode) -> (Vec<f32>, Vec<f32>, Llama) {
    logprobs_on(mode, &cqa_studio::device::cpu())
}

fn logprobs_on(mode: WeightMode, device: &burn::tensor::Device) -> (Vec<f32>, Vec<f32>, Llama) {
    let fixture = common::fixture("quant_mix_logprobs.json");
    let ids = common::ids(&fixture["ids"]);
    let want = common::floats(&fixture["logprobs"]);
    let bytes = std::fs::read(common::root().join("tests/fixtures/quant_mix.gguf")).expect("read quant_mix.gguf");
    let (got, model) = common::gguf_logprobs(GgufFile::parse(bytes).unwrap(), &ids, mode, device);
    (got, want, model)
}

#[test]
fn every_stored_type_scores_like_transformers() {
    let fixture = common::fixture("quant_mix_logprobs.json");
    let types: std::collections::BTreeSet<&str> = fixture["types"].as_object().unwrap().values().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), ["BF16", "F16", "F32", "Q4_0", "Q4_1", "Q4_K", "Q5_K", "Q6_K", "Q8_0"]);

    let (got, want, model) = logprobs(WeightMode::Stored);
    assert!(model.has_stored_weights());
    assert_eq!(got.len(), want.len());
    let stored = common::max_abs_diff(&got, &want);
    let (dense, _, model) = logprobs(WeightMode::F32);
    assert!(!model.has_stored_weights());
    let f32_drift = common::max_abs_diff(&dense, &want);
    println!("max |Δ logprob| vs transformers: stored {stored:.2e}, f32 {f32_drift:.2e}");
    assert!(f32_drift < LOGPROB_TOLERANCE, "f32 weights: {f32_drift}");
    assert!(stored < LOGPROB_TOLERANCE, "stored weights: {stored}");
    // The comparison can fail: the log-probabilities are not all alike.
    let spread = want.iter().fold(f32::MIN, |a, &b| a.max(b)) - want.iter().fold(f32::MAX, |a, &b| a.min(b));
    assert!(spread > 0.05, "spread {spread}");
}

/// What quantizing at load (`--weights q8_0`) may move a log-probability: it is a lossy opt-in
/// (for f32 and 16-bit models, to fit a browser), so it has its own, looser bound.
const QUANTIZE_AT_LOAD_TOLERANCE: f32 = 1e-2;

#[test]
fn quantize_at_load_changes_the_model_a_little() {
    // --weights q8_0 requantizes this model's F16 and BF16 matrices (the others are kept).
    let (got, want, _) = logprobs(WeightMode::Q8_0);
    let (stored, _, _) = logprobs(WeightMode::Stored);
    let drift = common::max_abs_diff(&got, &want);
    let moved = common::max_abs_diff(&got, &stored);
    println!("16-bit matrices quantized to Q8_0 at load: max |Δ logprob| {drift:.2e} vs transformers, {moved:.2e} vs the stored weights");
    assert!(moved > 1e-5, "quantizing at load changed nothing: {moved}");
    assert!(drift < QUANTIZE_AT_LOAD_TOLERANCE, "q8_0 at load: {drift}");
}

/// The same check on the GPU backend (wgpu; Mesa's lavapipe in `./x test`), where the stored
/// matrices are device buffers read by the CubeCL kernels: F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K,
/// Q5_K and Q6_K each through its own decoder.
#[test]
fn every_stored_type_scores_like_transformers_on_wgpu() {
    let device = match cqa_studio::device::wgpu() {
        Ok(device) => device,
        Err(e) if std::env::var_os("CQA_REQUIRE_GPU").is_some() => panic!("CQA_REQUIRE_GPU is set: {e}"),
        Err(e) => return eprintln!("skipped, no GPU: {e}"),
    };
    let (got, want, model) = logprobs_on(WeightMode::Stored, &device);
    assert!(model.has_stored_weights());
    let (cpu, _, cpu_model) = logprobs(WeightMode::Stored);
    // The words take what the blocks take (Q6_K two bytes more a super-block, its d padded to a
    // word): as the header's figures say, for both.
    let bytes = std::fs::read(common::root().join("tests/fixtures/quant_mix.gguf")).unwrap();
    let need = cqa_studio::quant::MemoryNeed::of_gguf(&bytes, bytes.len()).unwrap().unwrap();
    assert_eq!(cpu_model.resident_weight_bytes() as u64, need.resident_bytes_stored, "CPU");
    assert_eq!(model.resident_weight_bytes() as u64, need.resident_bytes_stored_gpu, "GPU");
    assert!(need.resident_bytes_stored_gpu > need.resident_bytes_stored, "the fixture has Q6_K matrices");
    let drift = common::max_abs_diff(&got, &want);
    println!("wgpu, stored weights: max |Δ logprob| {drift:.2e} vs transformers, {:.2e} vs the CPU", common::max_abs_diff(&got, &cpu));
    assert!(drift < LOGPROB_TOLERANCE, "wgpu stored weights: {drift}");
}
