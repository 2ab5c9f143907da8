//! Incremental decoding through the KV cache gives the same logits as one full forward pass,
//! on a tiny random model with grouped-query attention.

mod common;
use burn::tensor::{Int, Tensor, TensorData};
use cqa_studio::device::read_f32;
use cqa_studio::device::block_on;
use cqa_studio::model::{Llama, LlamaConfig};

fn tokens(ids: &[i32], device: &burn::tensor::Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device)
}

#[test]
fn incremental_decode_equals_full_forward() {
    let device = cqa_studio::device::cpu();
    let config = LlamaConfig::tiny(64);
    let model = Llama::random(&config, 3, &device);
    let ids: Vec<i32> = vec![5, 17, 3, 60, 42, 8, 8, 1, 33, 12, 0, 63];
    let full = block_on(read_f32(model.forward(tokens(&ids, &device), &mut model.new_cache()).unwrap())).unwrap();

    // Prefill 5 tokens, then a chunk of 3 (a cache plus several queries), then one at a time.
    let mut cache = model.new_cache();
    let mut incremental = Vec::new();
    for range in [0..5, 5..8, 8..9, 9..10, 10..11, 11..12] {
        let logits = model.forward(tokens(&ids[range], &device), &mut cache).unwrap();
        incremental.extend(block_on(read_f32(logits)).unwrap());
    }
    assert_eq!(cache.len(), ids.len());
    let diff = common::max_abs_diff(&full, &incremental);
    assert!(diff < 1e-5, "max |Δ logit| = {diff}");

    // The check can fail: a cache offset by one position breaks it.
    let mut cache = model.new_cache();
    model.forward(tokens(&ids[..1], &device), &mut cache).unwrap();
    let wrong = block_on(read_f32(model.forward(tokens(&ids[..5], &device), &mut cache).unwrap())).unwrap();
    assert!(common::max_abs_diff(&full[..5 * 64], &wrong) > 1e-3);
}

#[test]
fn sequence_longer_than_the_context_is_an_error() {
    let device = cqa_studio::device::cpu();
    let config = LlamaConfig::tiny(64);
    let model = Llama::random(&config, 3, &device);
    let ids = vec![1i32; config.max_position_embeddings + 1];
    let err = model.forward(tokens(&ids, &device), &mut model.new_cache()).unwrap_err().to_string();
    assert!(err.contains("at most"), "{err}");
}
