//! The GPU decode step (fused kernels, `model::gpu_decode`) against burn's tensor ops on the same
//! device, in every format a GPU reads from its words, on the llama.cpp-quantized fixtures; and
//! the greedy text of the default model against the CPU path.

mod common;
use burn::tensor::{Device, Int, Tensor, TensorData};
use cqa_studio::device::block_on;
use cqa_studio::device::read_f32;
use cqa_studio::sampling::argmax;
use cqa_studio::gguf::GgufFile;
use cqa_studio::model::gpu_decode::{DISPATCHES_PER_LAYER, GpuDecoder};
use cqa_studio::model::{Llama, LlamaConfig, WeightMode, WeightSource};

/// A wgpu device (lavapipe in CI), or `None` to skip where there is none and none is required.
fn gpu() -> Option<Device> {
    // wgpu initialises once a process; the tests share that device.
    static DEVICE: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
    match DEVICE.get_or_init(|| cqa_studio::device::wgpu().map_err(|e| e.to_string())) {
        Ok(device) => Some(device.clone()),
        Err(e) if std::env::var_os("CQA_REQUIRE_GPU").is_some() => panic!("CQA_REQUIRE_GPU is set: {e}"),
        Err(e) => {
            eprintln!("skipped, no GPU: {e}");
            None
        }
    }
}

fn tokens(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(ids.iter().map(|&t| t as i32).collect::<Vec<_>>(), [1, ids.len()]), device)
}

fn fixture_model(name: &str, device: &Device) -> Llama {
    let bytes = std::fs::read(common::root().join("tests/fixtures/quantized").join(name)).unwrap();
    let file = GgufFile::parse(bytes).unwrap();
    let config = LlamaConfig::from_gguf(&file).unwrap();
    Llama::from_weights(&config, &WeightSource::Gguf(file), WeightMode::Stored, device).unwrap()
}

#[test]
fn fused_steps_give_the_tensor_ops_logits_in_every_format_a_gpu_reads() {
    let Some(device) = gpu() else { return };
    // Each kernel branch: Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, F16, BF16, Q6_K, Q5_K, and Q4_K /
    // IQ4_XS / Q4_0 in the 576-wide files (Q3_K tensors are held as their Q8_0 conversion).
    let files = [
        "narrow-Q4_1.gguf",
        "narrow-Q5_0.gguf",
        "narrow-Q5_1.gguf",
        "narrow-Q8_0.gguf",
        "narrow-IQ4_NL.gguf",
        "narrow-F16.gguf",
        "narrow-BF16.gguf",
        "narrow-Q6_K.gguf",
        "narrow-Q5_K_M.gguf",
        "wide-Q4_K_M.gguf",
        "wide-Q5_K_M.gguf",
        "wide-IQ4_XS.gguf",
        "wide-Q4_0.gguf",
    ];
    let prompt = [1u32, 17, 290, 3, 41];
    for name in files {
        let model = fixture_model(name, &device);
        let layers = model.layers.len();
        let mut cache = model.new_cache();
        block_on(read_f32(model.forward(tokens(&prompt, &device), &mut cache).unwrap())).unwrap();
        let mut decoder = GpuDecoder::new(&model, &cache, prompt.len() + 8).unwrap_or_else(|| panic!("{name}: no GPU decoder"));
        assert_eq!(decoder.position(), prompt.len());
        let mut token = 7u32;
        for step in 0..6 {
            let want = block_on(read_f32(model.forward(tokens(&[token], &device), &mut cache).unwrap())).unwrap();
            decoder.step(token).unwrap();
            let got = block_on(decoder.logits()).unwrap();
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let diff = common::max_abs_diff(&got, &want);
            assert!(diff <= 1e-4 * scale, "{name}, step {step}: max |Δ logit| = {diff} (largest logit {scale})");
            // The argmax kernel picks the host's argmax of the same logits, 4 bytes read back.
            assert_eq!(block_on(decoder.picked_token()).unwrap(), argmax(&got), "{name}, step {step}");
            token = argmax(&want);
        }
        // One embedding chunk, six dispatches a layer, one head chunk, the argmax.
        assert_eq!(decoder.dispatches_per_step(), 1 + DISPATCHES_PER_LAYER * layers + 1 + 1, "{name}");
        assert_eq!(decoder.position(), prompt.len() + 6);
    }
}

/// A small Qwen2-architecture GGUF with q/k/v biases (random, Q8_0 matrices so the GPU holds
/// them as words); `bias_scale` 0 writes the biases as zeros.
fn qwen2_gguf(bias_scale: f64) -> Vec<u8> {
    use cqa_studio::gguf::writer::GgufWriter;
    let (d, ff, heads, kv_heads, head_dim, vocab, layers) = (64usize, 96usize, 4usize, 2usize, 16usize, 96usize, 2usize);
    let mut rng = cqa_studio::rng::Rng::new(21);
    let mut normal = |n: usize, scale: f64| -> Vec<f32> { (0..n).map(|_| (rng.normal() * scale) as f32).collect() };
    let mut w = GgufWriter::default()
        .kv_str("general.architecture", "qwen2")
        .kv_u32("qwen2.embedding_length", d as u32)
        .kv_u32("qwen2.feed_forward_length", ff as u32)
        .kv_u32("qwen2.block_count", layers as u32)
        .kv_u32("qwen2.attention.head_count", heads as u32)
        .kv_u32("qwen2.attention.head_count_kv", kv_heads as u32)
        .kv_u32("qwen2.context_length", 256)
        .kv_u32("qwen2.vocab_size", vocab as u32)
        .kv_f32("qwen2.rope.freq_base", 1_000_000.0)
        .kv_f32("qwen2.attention.layer_norm_rms_epsilon", 1e-6);
    w = w.tensor_q8_0("token_embd.weight", &[vocab, d], &normal(vocab * d, 0.5)).tensor_f32("output_norm.weight", &[d], &vec![1.0; d]);
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    for i in 0..layers {
        for (name, rows, cols) in [("attn_q", q, d), ("attn_k", kv, d), ("attn_v", kv, d), ("attn_output", d, q), ("ffn_gate", ff, d), ("ffn_up", ff, d), ("ffn_down", d, ff)] {
            w = w.tensor_q8_0(&format!("blk.{i}.{name}.weight"), &[rows, cols], &normal(rows * cols, 0.15));
        }
        for (name, n) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
            let bias = normal(n, 1.0).into_iter().map(|b| b * bias_scale as f32).collect::<Vec<_>>();
            w = w.tensor_f32(&format!("blk.{i}.{name}.bias"), &[n], &bias);
        }
        w = w.tensor_f32(&format!("blk.{i}.attn_norm.weight"), &[d], &vec![1.0; d]);
        w = w.tensor_f32(&format!("blk.{i}.ffn_norm.weight"), &[d], &vec![1.0; d]);
    }
    w.build()
}

#[test]
fn a_qwen2_model_with_biases_decodes_on_the_fused_step_as_on_the_tensor_ops() {
    let Some(device) = gpu() else { return };
    let load = |bytes: Vec<u8>| {
        let file = GgufFile::parse(bytes).unwrap();
        let config = LlamaConfig::from_gguf(&file).unwrap();
        assert!(config.attention_bias, "qwen2 carries q/k/v biases");
        Llama::from_weights(&config, &WeightSource::Gguf(file), WeightMode::Stored, &device).unwrap()
    };
    let (model, unbiased) = (load(qwen2_gguf(0.5)), load(qwen2_gguf(0.0)));
    let prompt = [3u32, 40, 7, 90];
    let mut cache = model.new_cache();
    block_on(read_f32(model.forward(tokens(&prompt, &device), &mut cache).unwrap())).unwrap();
    let mut decoder = GpuDecoder::new(&model, &cache, prompt.len() + 6).expect("a qwen2 model gets the fused step");
    let mut other_cache = unbiased.new_cache();
    block_on(read_f32(unbiased.forward(tokens(&prompt, &device), &mut other_cache).unwrap())).unwrap();
    let mut without_biases = GpuDecoder::new(&unbiased, &other_cache, prompt.len() + 6).unwrap();
    let mut token = 11u32;
    for step in 0..5 {
        let want = block_on(read_f32(model.forward(tokens(&[token], &device), &mut cache).unwrap())).unwrap();
        decoder.step(token).unwrap();
        let got = block_on(decoder.logits()).unwrap();
        let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
        let diff = common::max_abs_diff(&got, &want);
        assert!(diff <= 1e-4 * scale, "step {step}: max |Δ logit| = {diff} (largest logit {scale})");
        // The biases take part: the same weights without them decode to other logits.
        without_biases.step(token).unwrap();
        assert!(common::max_abs_diff(&block_on(without_biases.logits()).unwrap(), &want) > 1e-3, "step {step}");
        token = argmax(&want);
    }
}

#[test]
fn a_decoder_that_forgot_the_prompt_gives_other_logits() {
    // The comparison above can fail: a cache without the prompt's keys and values changes them.
    let Some(device) = gpu() else { return };
    let model = fixture_model("narrow-Q8_0.gguf", &device);
    let mut cache = model.new_cache();
    block_on(read_f32(model.forward(tokens(&[1, 17, 290], &device), &mut cache).unwrap())).unwrap();
    let want = block_on(read_f32(model.forward(tokens(&[7], &device), &mut cache.clone()).unwrap())).unwrap();
    let mut forgetful = GpuDecoder::new(&model, &model.new_cache(), 8).unwrap();
    forgetful.step(7).unwrap();
    let got = block_on(forgetful.logits()).unwrap();
    assert!(common::max_abs_diff(&got, &want) > 1e-3);
    // And a full cache is an error, not a write past its end.
    let mut full = GpuDecoder::new(&model, &cache, cache.len() + 1).unwrap();
    full.step(7).unwrap();
    assert!(full.step(7).unwrap_err().to_string().contains("full"));
}

#[test]
fn the_device_sampler_picks_the_host_samplers_token_from_the_same_logits() {
    use cqa_studio::sampling::{Sampler, SamplingParams};
    let Some(device) = gpu() else { return };
    // Every setting's branch of the kernel on a small vocabulary; the default model's test
    // below has the real one (49,152 tokens, many a thread).
    let model = fixture_model("narrow-Q8_0.gguf", &device);
    let prompt = [1u32, 17, 290, 3, 41];
    let settings = [
        (0.0, 0, 1.0, 1.3),
        (0.7, 0, 1.0, 1.0),
        (1.0, 5, 1.0, 1.0),
        (1.0, 0, 0.5, 1.0),
        (0.8, 40, 0.9, 1.2),
        (1.5, 3, 0.95, 0.8),
        (5.0, 0, 1.0, 1.0),
    ];
    let mut picks_by_seed = Vec::new();
    for seed in [7u64, 8, u64::MAX - 3] {
        let mut picks = Vec::new();
        for (temperature, top_k, top_p, repetition_penalty) in settings {
            let what = format!("seed {seed}, T {temperature}, top-k {top_k}, top-p {top_p}, penalty {repetition_penalty}");
            let params = SamplingParams { temperature, top_k, top_p, repetition_penalty, seed, max_new_tokens: 64, ..Default::default() };
            let mut cache = model.new_cache();
            block_on(read_f32(model.forward(tokens(&prompt, &device), &mut cache).unwrap())).unwrap();
            let mut host = Sampler::new(params.clone()).unwrap();
            // As a session: the first pick on the host, from the prompt's logits, then the device's.
            host.count_draw();
            let mut history = prompt.to_vec();
            history.push(9);
            let mut decoder = GpuDecoder::new(&model, &cache, prompt.len() + 24).unwrap();
            decoder.sample_on_device(&host, &history).unwrap();
            let mut token = 9u32;
            let mut distinct = std::collections::BTreeSet::new();
            for step in 0..20 {
                decoder.step(token).unwrap();
                let mut logits = block_on(decoder.logits()).unwrap();
                let want = host.sample(&mut logits, &history);
                let got = block_on(decoder.picked_token()).unwrap();
                assert_eq!(got, want, "{what}, step {step}");
                distinct.insert(got);
                history.push(got);
                token = got;
            }
            if temperature >= 1.0 && top_k != 3 {
                assert!(distinct.len() > 3, "{what}: {distinct:?} is hardly a sample");
            }
            picks.push(history);
        }
        picks_by_seed.push(picks);
    }
    // The seed matters (the greedy setting aside).
    assert_ne!(picks_by_seed[0][1..], picks_by_seed[1][1..]);
    assert_ne!(picks_by_seed[1][1..], picks_by_seed[2][1..]);
    assert_eq!(picks_by_seed[0][0], picks_by_seed[1][0]);
}

#[test]
fn the_default_models_text_on_the_fused_gpu_step_is_the_cpus_greedy_and_sampled() {
    let Some(device) = gpu() else { return };
    use cqa_studio::generate::{GenerationSession, generate};
    use cqa_studio::sampling::{Sampler, SamplingParams};
    use cqa_studio::{LanguageModel, model::WeightMode};
    let gpu_model = LanguageModel::from_gguf_bytes(common::default_model_bytes(), WeightMode::Stored, &device).unwrap();
    let cpu_model = common::default_model();
    let prompt = cpu_model.tokenizer.encode("The lighthouse keeper", false).unwrap();
    let layers = gpu_model.config.num_hidden_layers;
    // f32 activations on the CPU, as the GPU's kernels compute (by default a CPU with AVX-512 VNNI
    // rounds a decode step's x to 8 bits).
    let sampled = SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.95, repetition_penalty: 1.1, seed: 11, max_new_tokens: 64, f32_activations: true, ..Default::default() };
    for params in [SamplingParams { max_new_tokens: 64, f32_activations: true, ..Default::default() }, sampled.clone()] {
        let (want, _) = block_on(generate(cpu_model, prompt.clone(), params.clone(), |_| {})).unwrap();
        let mut session = GenerationSession::new(&gpu_model, prompt.clone(), params.clone()).unwrap();
        let mut got = Vec::new();
        while let Some(id) = block_on(session.next_token(&gpu_model)).unwrap() {
            got.push(id);
        }
        assert!(session.uses_fused_gpu_decode(), "the session decoded through the tensor ops");
        assert_eq!(want.len(), 64, "the reference stopped early: the comparison would be short");
        assert_eq!(got, want, "{params:?}");
        // The budget the step is built to: 6 a layer, and at most 6 for the embedding, head and pick.
        assert!(session.dispatches_per_token() <= 6 * layers + 6, "{} dispatches a token", session.dispatches_per_token());
    }
    // A seeded sample is not the greedy text (the comparison above would pass with sampling off).
    let (greedy, _) = block_on(generate(cpu_model, prompt.clone(), SamplingParams { max_new_tokens: 64, ..Default::default() }, |_| {})).unwrap();
    let (sample, _) = block_on(generate(cpu_model, prompt.clone(), sampled, |_| {})).unwrap();
    assert_ne!(greedy, sample);

    // Pick by pick on the device's own logits, each setting's kernel over the whole vocabulary.
    let model = &gpu_model.model;
    for (temperature, top_k, top_p, repetition_penalty) in [(1.0, 0, 1.0, 1.0), (0.7, 0, 0.9, 1.0), (1.2, 50, 1.0, 1.3), (0.0, 0, 1.0, 1.5)] {
        let params = SamplingParams { temperature, top_k, top_p, repetition_penalty, seed: 5, max_new_tokens: 8, ..Default::default() };
        let mut cache = model.new_cache();
        block_on(read_f32(model.forward(tokens(&prompt, &device), &mut cache).unwrap())).unwrap();
        let mut host = Sampler::new(params.clone()).unwrap();
        let mut token = 504u32;
        let mut history = prompt.clone();
        history.push(token);
        let mut decoder = GpuDecoder::new(model, &cache, prompt.len() + 8).unwrap();
        decoder.sample_on_device(&host, &history).unwrap();
        for step in 0..6 {
            decoder.step(token).unwrap();
            let mut logits = block_on(decoder.logits()).unwrap();
            let want = host.sample(&mut logits, &history);
            let got = block_on(decoder.picked_token()).unwrap();
            assert_eq!(got, want, "{params:?}, step {step}");
            history.push(got);
            token = got;
        }
    }
}

#[test]
fn an_attached_adapter_stays_factored_in_the_fused_step_and_gives_the_ops_logits() {
    let Some(device) = gpu() else { return };
    use cqa_studio::lora::{Adapter, LoraConfig};
    use cqa_studio::rng::Rng;
    for (name, targets) in [("narrow-Q8_0.gguf", "all"), ("wide-Q4_K_M.gguf", "q,v,up"), ("narrow-Q5_0.gguf", "o,down")] {
        let base = fixture_model(name, &device);
        let config = LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, targets: LoraConfig::parse_targets(targets).unwrap() };
        let mut adapter = Adapter::init(&config, &base.projection_shapes(), 3).unwrap();
        // PEFT starts B at zero; a trained adapter has moved it.
        let mut rng = Rng::new(11);
        for factors in adapter.factors.values_mut() {
            factors.b.iter_mut().for_each(|b| *b = (rng.normal() * 0.05) as f32);
        }
        let tuned = base.with_adapter(&adapter, false).unwrap();
        let prompt = [1u32, 17, 290, 3];
        let mut cache = tuned.new_cache();
        block_on(read_f32(tuned.forward(tokens(&prompt, &device), &mut cache).unwrap())).unwrap();
        let mut decoder = GpuDecoder::new(&tuned, &cache, prompt.len() + 4).unwrap_or_else(|| panic!("{name}: no GPU decoder"));
        let mut token = 9u32;
        for step in 0..3 {
            let want = block_on(read_f32(tuned.forward(tokens(&[token], &device), &mut cache).unwrap())).unwrap();
            decoder.step(token).unwrap();
            let got = block_on(decoder.logits()).unwrap();
            let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
            let diff = common::max_abs_diff(&got, &want);
            assert!(diff <= 1e-4 * scale, "{name} ({targets}), step {step}: max |Δ logit| = {diff}");
            token = argmax(&want);
        }
        // The adapter matters here: the base's logits differ.
        let mut base_cache = base.new_cache();
        block_on(read_f32(base.forward(tokens(&prompt, &device), &mut base_cache).unwrap())).unwrap();
        let mut base_decoder = GpuDecoder::new(&base, &base_cache, prompt.len() + 1).unwrap();
        base_decoder.step(9).unwrap();
        let mut tuned_decoder = GpuDecoder::new(&tuned, &tuned_cache_after(&tuned, &prompt, &device), prompt.len() + 1).unwrap();
        tuned_decoder.step(9).unwrap();
        let (b, t) = (block_on(base_decoder.logits()).unwrap(), block_on(tuned_decoder.logits()).unwrap());
        assert!(common::max_abs_diff(&b, &t) > 1e-3, "{name}: the adapter changed nothing");
        // One more dispatch for each product whose matrices the adapter adapts, in each layer.
        let groups = match targets { "all" => 4, "q,v,up" => 2, _ => 2 };
        let layers = tuned.layers.len();
        assert_eq!(tuned_decoder.dispatches_per_step(), base_decoder.dispatches_per_step() + groups * layers, "{name}");
    }
}

fn tuned_cache_after(model: &Llama, prompt: &[u32], device: &Device) -> cqa_studio::model::KvCache {
    let mut cache = model.new_cache();
    block_on(read_f32(model.forward(tokens(prompt, device), &mut cache).unwrap())).unwrap();
    cache
}
