//! The `cqa` command line as a contract: JSON shapes, and one clear sentence (exit code 1, no
//! panic) for every kind of bad input.

mod common;
use cqa_studio::gguf::writer::GgufWriter;
use std::path::Path;
use std::process::{Command, Output};

fn cqa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cqa")).args(args).output().expect("run cqa")
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "cqa failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Asserts a clean failure and returns its message.
fn expect_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "expected exit 1, got {:?}; stderr: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "cqa panicked: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one sentence expected: {stderr}");
    stderr
}

/// A test file, removed when dropped: the truncated copies of the default model alone are
/// hundreds of megabytes.
struct TempFile(std::path::PathBuf);

impl std::ops::Deref for TempFile {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn write_temp(name: &str, bytes: &[u8]) -> TempFile {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cqa-cli-test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    TempFile(path)
}

fn model_arg(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

#[test]
fn score_json_has_the_documented_shape() {
    let model = model_arg(&common::default_model_path());
    let out = cqa(&["--model", &model, "score", "--text", "The tide came in.", "--context", "A sentence about the sea:", "--json"]);
    let v = stdout_json(&out);
    for key in ["context_ids", "text_ids", "logprobs", "total_bits", "bits_per_token"] {
        assert!(v.get(key).is_some(), "missing `{key}` in {v}");
    }
    assert_eq!(v["logprobs"].as_array().unwrap().len(), v["text_ids"].as_array().unwrap().len());

    // Without a context (SmolLM2 adds no BOS) the first text token is not scored.
    let v = stdout_json(&cqa(&["--model", &model, "score", "--text", "The tide came in.", "--json"]));
    assert_eq!(v["logprobs"].as_array().unwrap().len() + 1, v["text_ids"].as_array().unwrap().len());
}

#[test]
fn tokenize_and_info() {
    let model = model_arg(&common::default_model_path());
    let v = stdout_json(&cqa(&["--model", &model, "tokenize", "--text", "Hello 2024 world", "--json"]));
    assert_eq!(v["ids"], serde_json::json!([19556, 216, 34, 32, 34, 36, 905]));
    let v = stdout_json(&cqa(&["--model", &model, "info", "--json"]));
    assert_eq!(v["config"]["num_hidden_layers"], 30);
    assert_eq!(v["parameters"], 134_515_008);
    assert_eq!(v["tensor_types"]["Q4_1"], 210);
}

#[test]
fn generate_streams_greedy_text() {
    let model = model_arg(&common::default_model_path());
    let out = cqa(&["--model", &model, "generate", "--prompt", "The old lighthouse keeper", "--max-tokens", "8", "--temperature", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The first greedy tokens per transformers: ", a man named Malcolm Blackstone, who"
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(", a man named"), "{:?}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn missing_model_file() {
    let err = expect_error(&cqa(&["--model", "/nonexistent/model.gguf", "info"]));
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn truncated_gguf() {
    let bytes = common::default_model_bytes();
    for (name, len) in [("head.gguf", 3), ("meta.gguf", 4096), ("half.gguf", bytes.len() / 2), ("tail.gguf", bytes.len() - 1)] {
        let path = write_temp(name, &bytes[..len]);
        let err = expect_error(&cqa(&["--model", &model_arg(&path), "info"]));
        assert!(err.contains("truncated") || err.contains("not a GGUF"), "{name}: {err}");
    }
}

#[test]
fn corrupt_gguf() {
    let mut bytes = common::default_model_bytes();
    bytes[..4].copy_from_slice(b"GGML");
    let err = expect_error(&cqa(&["--model", &model_arg(&write_temp("magic.gguf", &bytes)), "info"]));
    assert!(err.contains("not a GGUF file"), "{err}");

    // A metadata string length blown up to an absurd value.
    let mut bytes = common::default_model_bytes();
    bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
    let err = expect_error(&cqa(&["--model", &model_arg(&write_temp("len.gguf", &bytes)), "info"]));
    assert!(err.contains("corrupt"), "{err}");
}

/// A tiny llama GGUF whose tokenizer and weights are under our control.
fn tiny_gguf(n_tokens: usize, embedding_rows: usize, tensor_type_patch: Option<u32>) -> Vec<u8> {
    let tokens: Vec<String> = (0..n_tokens).map(|i| format!("t{i}")).collect();
    let token_refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let d = 8;
    let mut w = GgufWriter::default()
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.embedding_length", d as u32)
        .kv_u32("llama.feed_forward_length", 16)
        .kv_u32("llama.block_count", 1)
        .kv_u32("llama.attention.head_count", 2)
        .kv_u32("llama.attention.head_count_kv", 1)
        .kv_u32("llama.context_length", 64)
        .kv_u32("llama.vocab_size", embedding_rows as u32)
        .kv_str("tokenizer.ggml.model", "gpt2")
        .kv_str("tokenizer.ggml.pre", "gpt2")
        .kv_str_array("tokenizer.ggml.tokens", &token_refs)
        .kv_str_array("tokenizer.ggml.merges", &[])
        .tensor_f32("token_embd.weight", &[embedding_rows, d], &vec![0.1; embedding_rows * d])
        .tensor_f32("output_norm.weight", &[d], &[1.0; 8]);
    let shapes: [(&str, [usize; 2]); 7] = [
        ("attn_q", [8, 8]),
        ("attn_k", [4, 8]),
        ("attn_v", [4, 8]),
        ("attn_output", [8, 8]),
        ("ffn_gate", [16, 8]),
        ("ffn_up", [16, 8]),
        ("ffn_down", [8, 16]),
    ];
    for (name, shape) in shapes {
        w = w.tensor_f32(&format!("blk.0.{name}.weight"), &shape, &vec![0.01; shape[0] * shape[1]]);
    }
    w = w.tensor_f32("blk.0.attn_norm.weight", &[d], &[1.0; 8]).tensor_f32("blk.0.ffn_norm.weight", &[d], &[1.0; 8]);
    let mut bytes = w.build();
    if let Some(type_id) = tensor_type_patch {
        // The first tensor info follows the metadata: patch token_embd's type field.
        let name = b"token_embd.weight";
        let at = bytes.windows(name.len()).position(|x| x == name).unwrap() + name.len() + 4 + 16;
        bytes[at..at + 4].copy_from_slice(&type_id.to_le_bytes());
    }
    bytes
}

#[test]
fn tiny_gguf_loads_and_runs() {
    let path = write_temp("tiny.gguf", &tiny_gguf(32, 32, None));
    let v = stdout_json(&cqa(&["--model", &model_arg(&path), "info", "--json"]));
    assert_eq!(v["config"]["vocab_size"], 32);
}

#[test]
fn unsupported_quant_type() {
    // ggml type 9 is Q8_1, ggml's format for activations: no model file stores it, and the
    // format registry does not read it.
    let path = write_temp("q8_1.gguf", &tiny_gguf(32, 32, Some(9)));
    let err = expect_error(&cqa(&["--model", &model_arg(&path), "info"]));
    assert!(err.contains("Q8_1") && err.contains("token_embd.weight") && err.contains("Q5_0"), "{err}");
}

#[test]
fn tokenizer_model_vocab_mismatch() {
    let path = write_temp("mismatch.gguf", &tiny_gguf(100, 32, None));
    let err = expect_error(&cqa(&["--model", &model_arg(&path), "info"]));
    assert!(err.contains("100 tokens") && err.contains("32 rows"), "{err}");
}

#[test]
fn wrong_tokenizer_json_for_safetensors_model() {
    // An HF directory whose tokenizer.json (49152 tokens) belongs to another model (vocab 32).
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cqa-cli-hf");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type":"llama","vocab_size":32,"hidden_size":8,"intermediate_size":16,"num_hidden_layers":1,
            "num_attention_heads":2,"num_key_value_heads":1,"tie_word_embeddings":true,"rope_theta":10000.0,"rms_norm_eps":1e-5}"#,
    )
    .unwrap();
    std::fs::copy(common::root().join("tests/fixtures/smollm2_tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let st = safetensors::serialize(
        [("model.embed_tokens.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32, 8], &[0u8; 32 * 8 * 4]).unwrap())],
        None,
    )
    .unwrap();
    std::fs::write(dir.join("model.safetensors"), st).unwrap();
    let err = expect_error(&cqa(&["--model", &model_arg(&dir), "info"]));
    assert!(err.contains("does not belong to this model"), "{err}");
}

#[test]
fn empty_inputs_are_explained() {
    let model = model_arg(&common::default_model_path());
    let err = expect_error(&cqa(&["--model", &model, "score", "--text", "", "--json"]));
    assert!(err.contains("empty"), "{err}");
    let err = expect_error(&cqa(&["--model", &model, "generate", "--prompt", ""]));
    assert!(err.contains("empty"), "{err}");
    let err = expect_error(&cqa(&["--model", &model, "--backend", "tpu", "info"]));
    assert!(err.contains("unknown backend"), "{err}");
}
