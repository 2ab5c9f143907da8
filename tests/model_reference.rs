//! The default model's log-probabilities, greedy generations and CLI output match transformers
//! running the same GGUF in float32 (fixtures: tests/reference/make_golden.py).

mod common;
use cqa_studio::device::block_on;
use cqa_studio::eval::{score, score_ids};
use cqa_studio::generate::{SamplingParams, generate};

/// Transformers and this engine both compute in f32; the rest is summation order.
const LOGPROB_TOLERANCE: f32 = 2e-3;

#[test]
fn logprobs_match_transformers() {
    let lm = common::default_model();
    let fixture = common::fixture("golden_logprobs.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 5);
    let mut worst = 0f32;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let text = case["text"].as_str().unwrap();
        let expected_ids = common::ids(&case["ids"]);
        let s = block_on(score(lm, text, None)).unwrap();
        // No BOS for SmolLM2: the text's tokens are exactly transformers' ids.
        assert_eq!(s.text_ids, expected_ids, "{name}: token ids differ");
        assert!(s.context_ids.is_empty());
        let diff = common::max_abs_diff(&s.logprobs, &common::floats(&case["logprobs"]));
        assert!(diff <= LOGPROB_TOLERANCE, "{name}: max |Δ logprob| = {diff}");
        worst = worst.max(diff);
    }
    eprintln!("worst max |Δ logprob| over {} texts: {worst:.2e}", cases.len());
}

#[test]
fn context_scoring_matches_transformers() {
    let lm = common::default_model();
    let fixture = common::fixture("golden_logprobs.json");
    for case in fixture["context_cases"].as_array().unwrap() {
        let s = block_on(score(lm, case["text"].as_str().unwrap(), Some(case["context"].as_str().unwrap()))).unwrap();
        assert_eq!(s.context_ids, common::ids(&case["context_ids"]));
        assert_eq!(s.text_ids, common::ids(&case["text_ids"]));
        assert_eq!(s.logprobs.len(), s.text_ids.len(), "every text token is scored after a context");
        let diff = common::max_abs_diff(&s.logprobs, &common::floats(&case["logprobs"]));
        assert!(diff <= LOGPROB_TOLERANCE, "max |Δ logprob| = {diff}");
        // ΔI's bookkeeping: bits are the negated natural-log sum over ln 2.
        let bits: f64 = -s.logprobs.iter().map(|&l| l as f64).sum::<f64>() / std::f64::consts::LN_2;
        assert!((s.total_bits - bits).abs() < 1e-9 && (s.bits_per_token - bits / s.logprobs.len() as f64).abs() < 1e-9);
    }
}

#[test]
fn chunked_logits_equal_one_pass() {
    // Scoring projects positions to the vocabulary in chunks; a long text crosses chunk borders.
    let lm = common::default_model();
    let text = "Rain on the tin roof, and the dog asleep by the stove. ".repeat(30);
    let ids = lm.tokenizer.encode(&text, false).unwrap();
    assert!(ids.len() > 300);
    let (_, _, all) = block_on(score_ids(lm, vec![], ids.clone())).unwrap();
    let (_, _, tail) = block_on(score_ids(lm, ids[..280].to_vec(), ids[280..].to_vec())).unwrap();
    assert!(common::max_abs_diff(&all[279..], &tail) < 1e-4);
}

#[test]
fn greedy_generation_matches_transformers() {
    let lm = common::default_model();
    let fixture = common::fixture("golden_generate.json");
    for case in fixture["cases"].as_array().unwrap() {
        let rendered = case["rendered"].as_str().unwrap();
        let chat = case["chat"].as_bool().unwrap();
        if chat {
            let prompt = case["prompt"].as_str().unwrap();
            let ours = lm
                .tokenizer
                .apply_chat_template(&[cqa_studio::tokenizer::ChatMessage::new("user", prompt)], true)
                .unwrap();
            assert_eq!(ours, rendered, "chat template rendering differs");
        }
        let prompt_ids = lm.tokenizer.encode(rendered, !chat).unwrap();
        assert_eq!(prompt_ids, common::ids(&case["prompt_ids"]));
        let expected = common::ids(&case["new_ids"]);
        // f32 activations: every product as transformers computes it (the default rounds a
        // decode step's x to 8 bits on AVX-512 VNNI CPUs; the test below bounds what that moves).
        let params = SamplingParams { max_new_tokens: expected.len(), f32_activations: true, ..Default::default() };
        let mut text = String::new();
        let (new_ids, _) = block_on(generate(lm, prompt_ids, params, |piece| text.push_str(piece))).unwrap();
        assert_eq!(new_ids, expected, "greedy continuation of {rendered:?} differs");
        assert_eq!(text, case["new_text"].as_str().unwrap());
    }
}

/// Decode steps with x rounded to 8 bits a value (`cqa_quant::with_int8_activations`, the
/// default on CPUs with AVX-512 VNNI, as llama.cpp decodes) against the same steps in f32, fed
/// transformers' greedy text token by token: the log-probabilities of the likely tokens stay
/// within a bound, and the greedy pick differs only where the f32 step's two best tokens are
/// close. (Measured on this model: likely tokens move by up to ~0.4 nats, and the picks that
/// differ had margins under 0.1; a wrong offset or scale in any format's kernel moves them by
/// whole nats.)
#[test]
fn int8_decode_steps_stay_near_the_f32_steps() {
    use burn::tensor::{Int, Tensor, TensorData};
    use cqa_studio::device::read_f32;
    if !cqa_quant::int8_activations_available() {
        return eprintln!("skipped: this CPU has no AVX-512 VNNI, so decode steps keep f32 activations");
    }
    let lm = common::default_model();
    let model = &lm.model;
    let tokens = |ids: &[u32]| Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&t| t as i32).collect::<Vec<_>>(), [1, ids.len()]), &lm.device);
    let log_softmax = |logits: Vec<f32>| {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let log_sum = logits.iter().map(|l| ((l - max) as f64).exp()).sum::<f64>().ln() as f32 + max;
        logits.into_iter().map(|l| l - log_sum).collect::<Vec<f32>>()
    };
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    let fixture = common::fixture("golden_generate.json");
    let (mut worst_likely, mut worst_margin, mut steps, mut flips) = (0f32, 0f32, 0, 0);
    for case in fixture["cases"].as_array().unwrap() {
        let (prompt, text) = (common::ids(&case["prompt_ids"]), common::ids(&case["new_ids"]));
        let mut cache = model.new_cache();
        block_on(read_f32(model.forward(tokens(&prompt), &mut cache).unwrap())).unwrap();
        for pair in text.windows(2) {
            let step = |cache: &mut cqa_studio::model::KvCache| log_softmax(block_on(read_f32(model.forward(tokens(&pair[..1]), cache).unwrap())).unwrap());
            let rounded = cqa_quant::with_int8_activations(|| step(&mut cache.clone()));
            let exact = step(&mut cache);
            assert_eq!(exact.len(), rounded.len());
            // Tokens of probability above ~1e-3: the far tail's log-probs move more and matter less.
            let likely = exact.iter().zip(&rounded).filter(|(e, _)| **e > -7.0).map(|(e, r)| (e - r).abs()).fold(0f32, f32::max);
            worst_likely = worst_likely.max(likely);
            let (want, got) = (argmax(&exact), argmax(&rounded));
            if want != got {
                flips += 1;
                worst_margin = worst_margin.max(exact[want] - exact[got]);
            }
            steps += 1;
        }
    }
    eprintln!("int8 vs f32 decode steps ({steps}): likely tokens' max |Δ logprob| {worst_likely:.3e}; greedy pick differs at {flips}, f32 margins ≤ {worst_margin:.3e}");
    assert!(steps >= 20, "only {steps} steps compared");
    assert!(worst_likely < 0.6, "likely tokens' max |Δ logprob| {worst_likely}");
    assert!(worst_margin < 0.25, "an 8-bit step changed a pick the f32 step made by {worst_margin} nats");
    assert!(worst_likely > 0.0, "the 8-bit steps gave exactly the f32 log-probs: the rounding did not run");
}

#[test]
fn transformers5_safetensors_layout_matches_transformers() {
    // The default model as an HF directory whose config.json is the one transformers 5.24 wrote
    // for this GGUF: RoPE base under `rope_parameters`, no top-level `rope_theta`. Reading it as
    // the default 10000 gave a max |Δ logprob| of 1.3 nats; read right, it matches transformers.
    use cqa_studio::gguf::GgufFile;
    use cqa_studio::model::{LlamaConfig, WeightSource};
    let file = GgufFile::parse(common::default_model_bytes()).unwrap();
    let c = LlamaConfig::from_gguf(&file).unwrap();
    let source = WeightSource::Gguf(file);
    let mut names = vec!["model.embed_tokens.weight".to_string(), "model.norm.weight".to_string()];
    for l in 0..c.num_hidden_layers {
        for m in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"] {
            names.push(format!("model.layers.{l}.{m}.weight"));
        }
    }
    let heads = (c.num_attention_heads, c.num_key_value_heads);
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = names
        .into_iter()
        .map(|n| {
            let (shape, values) = source.load(&n, heads).unwrap().unwrap_or_else(|| panic!("{n} is missing"));
            (n, shape, values)
        })
        .collect();
    drop(source);
    let views: Vec<_> = tensors.iter().map(|(n, s, v)| (n.clone(), s.clone(), v.as_slice())).collect();
    let shard = cqa_studio::safetensors::write_f32(&views, &[]).unwrap();
    drop(views);
    drop(tensors);
    let config_json = std::fs::read_to_string(common::root().join("tests/reference/gguf_model_config_transformers.json")).unwrap();
    assert!(config_json.contains("\"rope_parameters\"") && !config_json.contains("\n \"rope_theta\""), "the fixture is the transformers-5 layout");
    let tokenizer = std::fs::read(common::root().join("tests/fixtures/smollm2_tokenizer.json")).unwrap();
    let lm = cqa_studio::LanguageModel::from_hf_bytes(vec![shard], &config_json, &tokenizer, None, cqa_studio::model::WeightMode::Stored, &cqa_studio::device::cpu()).unwrap();
    assert_eq!(lm.config.rope_theta, 100_000.0);
    let fixture = common::fixture("golden_logprobs.json");
    let mut worst = 0f32;
    for case in fixture["cases"].as_array().unwrap() {
        let s = block_on(score(&lm, case["text"].as_str().unwrap(), None)).unwrap();
        assert_eq!(s.text_ids, common::ids(&case["ids"]));
        let diff = common::max_abs_diff(&s.logprobs, &common::floats(&case["logprobs"]));
        assert!(diff <= LOGPROB_TOLERANCE, "{}: max |Δ logprob| = {diff}", case["name"]);
        worst = worst.max(diff);
    }
    eprintln!("transformers-5 layout: worst max |Δ logprob| {worst:.2e}");
}
