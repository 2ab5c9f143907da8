//! The two weight formats agree: the same tiny model written as HF safetensors and as a llama.cpp
//! style GGUF (q/k rows permuted, GGUF names) gives identical logits. And the HF `tokenizer.json`
//! path tokenizes exactly like the GGUF-built tokenizer.

mod common;
use burn::tensor::{Int, Tensor, TensorData};
use cqa_studio::device::block_on;
use cqa_studio::device::read_f32;
use cqa_studio::gguf::writer::GgufWriter;
use cqa_studio::gguf::{GgufFile, RangeRead, names};
use cqa_studio::model::{Llama, LlamaConfig, WeightMode, WeightSource};
use cqa_studio::rng::Rng;
use cqa_studio::safetensors::SafetensorsWeights;
use cqa_studio::tokenizer::TextTokenizer;
use std::cell::RefCell;
use std::rc::Rc;

/// llama.cpp's HF→GGUF row permutation for q/k (`convert_hf_to_gguf.py`, `permute`).
fn permute_rows(values: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
    let head_dim = values.len() / cols / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0f32; values.len()];
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..half {
                let src = h * head_dim + j * half + i;
                let dst = h * head_dim + 2 * i + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// Every HF tensor of a tiny model with seeded values.
fn hf_tensors(c: &LlamaConfig) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = Rng::new(11);
    let mut t = |name: String, shape: Vec<usize>| {
        let n = shape.iter().product();
        let values = (0..n).map(|_| (rng.normal() * 0.1) as f32 + if name.contains("norm") { 1.0 } else { 0.0 }).collect();
        (name, shape, values)
    };
    let (d, q, kv) = (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim);
    let mut out = vec![t("model.embed_tokens.weight".into(), vec![c.vocab_size, d]), t("model.norm.weight".into(), vec![d])];
    for l in 0..c.num_hidden_layers {
        let p = format!("model.layers.{l}");
        out.push(t(format!("{p}.self_attn.q_proj.weight"), vec![q, d]));
        out.push(t(format!("{p}.self_attn.k_proj.weight"), vec![kv, d]));
        out.push(t(format!("{p}.self_attn.v_proj.weight"), vec![kv, d]));
        out.push(t(format!("{p}.self_attn.o_proj.weight"), vec![d, q]));
        if c.attention_bias {
            out.push(t(format!("{p}.self_attn.q_proj.bias"), vec![q]));
            out.push(t(format!("{p}.self_attn.k_proj.bias"), vec![kv]));
            out.push(t(format!("{p}.self_attn.v_proj.bias"), vec![kv]));
        }
        out.push(t(format!("{p}.mlp.gate_proj.weight"), vec![c.intermediate_size, d]));
        out.push(t(format!("{p}.mlp.up_proj.weight"), vec![c.intermediate_size, d]));
        out.push(t(format!("{p}.mlp.down_proj.weight"), vec![d, c.intermediate_size]));
        out.push(t(format!("{p}.input_layernorm.weight"), vec![d]));
        out.push(t(format!("{p}.post_attention_layernorm.weight"), vec![d]));
    }
    out
}

fn logits(model: &Llama, device: &burn::tensor::Device) -> Vec<f32> {
    let ids = vec![3i32, 9, 27, 1, 60, 44, 2];
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [1, ids.len()]), device);
    block_on(read_f32(model.forward(tokens, &mut model.new_cache()).unwrap())).unwrap()
}

#[test]
fn safetensors_and_gguf_give_the_same_model() {
    let device = cqa_studio::device::cpu();
    let config = LlamaConfig::tiny(64);
    let tensors = hf_tensors(&config);

    let st = safetensors_source(&tensors);

    let from_st = logits(&Llama::from_weights(&config, &st, WeightMode::Stored, &device).unwrap(), &device);
    let gguf = |permute| WeightSource::Gguf(GgufFile::parse(gguf_bytes(&config, &tensors, permute)).unwrap());
    let from_gguf = logits(&Llama::from_weights(&config, &gguf(true), WeightMode::Stored, &device).unwrap(), &device);
    assert_eq!(from_st, from_gguf);
    // The check can fail: a GGUF whose q/k rows were not permuted by the converter differs.
    let unpermuted = logits(&Llama::from_weights(&config, &gguf(false), WeightMode::Stored, &device).unwrap(), &device);
    assert!(common::max_abs_diff(&from_st, &unpermuted) > 1e-4);
}

fn safetensors_source(tensors: &[(String, Vec<usize>, Vec<f32>)]) -> WeightSource {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(name, shape, values)| {
            let bytes: &[u8] = bytemuck_cast(values);
            (name.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes).unwrap())
        })
        .collect();
    let st_bytes = safetensors::serialize(views, None).unwrap();
    WeightSource::Safetensors(SafetensorsWeights::new(vec![st_bytes]).unwrap())
}

#[test]
fn qwen2_biases_load_from_both_formats() {
    let device = cqa_studio::device::cpu();
    let config = LlamaConfig { architecture: "qwen2".into(), attention_bias: true, ..LlamaConfig::tiny(64) };
    let tensors = hf_tensors(&config);
    let st = safetensors_source(&tensors);
    // qwen2 GGUF files keep HF's q/k row order: nothing to permute.
    let gguf = WeightSource::Gguf(GgufFile::parse(gguf_bytes(&config, &tensors, false)).unwrap());
    let from_st = logits(&Llama::from_weights(&config, &st, WeightMode::Stored, &device).unwrap(), &device);
    assert_eq!(from_st, logits(&Llama::from_weights(&config, &gguf, WeightMode::Stored, &device).unwrap(), &device));
    // The biases take part: the same weights without them give other logits.
    let unbiased = LlamaConfig { attention_bias: false, ..config.clone() };
    let without = logits(&Llama::from_weights(&unbiased, &st, WeightMode::Stored, &device).unwrap(), &device);
    assert!(common::max_abs_diff(&from_st, &without) > 1e-4);
}

/// The tensors as llama.cpp's converter would write them (GGUF names; q/k rows permuted).
fn gguf_bytes(config: &LlamaConfig, tensors: &[(String, Vec<usize>, Vec<f32>)], permute: bool) -> Vec<u8> {
    let bytes = gguf_writer(config, tensors, permute, false).build();
    // The metadata round-trips (epsilon through f32, so within f32 rounding).
    let mut parsed = LlamaConfig::from_gguf(&GgufFile::parse(bytes.clone()).unwrap()).unwrap();
    assert!((parsed.rms_norm_eps - config.rms_norm_eps).abs() < 1e-12);
    parsed.rms_norm_eps = config.rms_norm_eps;
    assert_eq!(parsed, *config);
    bytes
}

/// The file's writer before it is built; with `q8_0`, the matrices of whole 32-blocks as Q8_0.
fn gguf_writer(config: &LlamaConfig, tensors: &[(String, Vec<usize>, Vec<f32>)], permute: bool, q8_0: bool) -> GgufWriter {
    let arch = config.architecture.as_str();
    let key = |k: &str| format!("{arch}.{k}");
    let mut gguf = GgufWriter::default()
        .kv_str("general.architecture", arch)
        .kv_u32(&key("embedding_length"), config.hidden_size as u32)
        .kv_u32(&key("feed_forward_length"), config.intermediate_size as u32)
        .kv_u32(&key("block_count"), config.num_hidden_layers as u32)
        .kv_u32(&key("attention.head_count"), config.num_attention_heads as u32)
        .kv_u32(&key("attention.head_count_kv"), config.num_key_value_heads as u32)
        .kv_u32(&key("context_length"), config.max_position_embeddings as u32)
        .kv_u32(&key("vocab_size"), config.vocab_size as u32)
        .kv_f32(&key("rope.freq_base"), config.rope_theta as f32)
        .kv_f32(&key("attention.layer_norm_rms_epsilon"), config.rms_norm_eps as f32);
    for (name, shape, values) in tensors {
        // Biases are permuted like their weight rows (one column).
        let values = if permute && name.contains("q_proj") {
            permute_rows(values, config.num_attention_heads, shape.get(1).copied().unwrap_or(1))
        } else if permute && name.contains("k_proj") {
            permute_rows(values, config.num_key_value_heads, shape.get(1).copied().unwrap_or(1))
        } else {
            values.clone()
        };
        let name = names::gguf_name(name).unwrap();
        gguf = match shape[..] {
            [rows, cols] if q8_0 && cols % 32 == 0 => gguf.tensor_q8_0(&name, &[rows, cols], &values),
            _ => gguf.tensor_f32(&name, shape, &values),
        };
    }
    gguf
}

/// A file in memory read through [`RangeRead`], each read recorded as `(offset, len)`; after
/// `fail_after` reads it fails as a changed file would.
struct RecordedReads {
    bytes: Vec<u8>,
    reads: Rc<RefCell<Vec<(usize, usize)>>>,
    fail_after: usize,
}

impl RangeRead for RecordedReads {
    fn read_into(&self, offset: usize, out: &mut [u8]) -> cqa_studio::Result<()> {
        let mut reads = self.reads.borrow_mut();
        if reads.len() >= self.fail_after {
            return Err(cqa_studio::Error::Gguf("the file changed on the disk".into()));
        }
        reads.push((offset, out.len()));
        out.copy_from_slice(&self.bytes[offset..offset + out.len()]);
        Ok(())
    }
}

#[test]
fn a_gguf_read_range_by_range_gives_the_same_model_reading_one_tensor_at_a_time() {
    let device = cqa_studio::device::cpu();
    let config = LlamaConfig::tiny(64);
    let tensors = hf_tensors(&config);
    // A header of ~2.6 MB (a big vocabulary's is a few MB): more than the first read of it.
    let filler: Vec<String> = (0..120_000).map(|i| format!("token-{i:08}")).collect();
    let filler: Vec<&str> = filler.iter().map(String::as_str).collect();
    let bytes = gguf_writer(&config, &tensors, true, true).kv_str_array("test.filler", &filler).build();
    let whole = GgufFile::parse(bytes.clone()).unwrap();
    let header_end = whole.tensors.iter().map(|t| t.offset).min().unwrap();
    assert!(header_end > 2 << 20, "the header is {header_end} bytes");
    assert!(whole.tensors.iter().any(|t| t.format == cqa_studio::quant::Format::Q8_0));
    let expected = logits(&Llama::from_weights(&config, &WeightSource::Gguf(whole), WeightMode::Stored, &device).unwrap(), &device);

    let reads = Rc::new(RefCell::new(Vec::new()));
    let reader = RecordedReads { bytes: bytes.clone(), reads: reads.clone(), fail_after: usize::MAX };
    let ranged = GgufFile::parse_ranged(Box::new(reader), bytes.len()).unwrap();
    assert_eq!(ranged.file_size(), bytes.len());
    let tensors_of_file = ranged.tensors.clone();
    // The header is read from the start, ×4 a time, until it is whole: 1 MiB, then 4 MiB (here
    // the whole file, which is shorter).
    assert_eq!(*reads.borrow(), vec![(0, 1 << 20), (0, (4 << 20).min(bytes.len()))]);
    let model = Llama::from_weights(&config, &WeightSource::Gguf(ranged), WeightMode::Stored, &device).unwrap();
    assert_eq!(logits(&model, &device), expected);
    // Then each tensor is read once, alone: its own range, nothing more.
    let tensor_reads = reads.borrow()[2..].to_vec();
    assert_eq!(tensor_reads.len(), tensors_of_file.len());
    for (offset, len) in tensor_reads {
        assert!(tensors_of_file.iter().any(|t| t.offset == offset && t.n_bytes == len), "read {len} bytes at {offset}");
    }

    // A file that cannot be read any more mid-way: the reader's sentence, not a crash.
    let failing = RecordedReads { bytes: bytes.clone(), reads: Rc::new(RefCell::new(Vec::new())), fail_after: 5 };
    let source = WeightSource::Gguf(GgufFile::parse_ranged(Box::new(failing), bytes.len()).unwrap());
    let err = Llama::from_weights(&config, &source, WeightMode::Stored, &device).err().expect("the read fails").to_string();
    assert_eq!(err, "the file changed on the disk");
}

fn bytemuck_cast(values: &[f32]) -> &[u8] {
    // f32 has no padding and u8 has alignment 1, so viewing the buffer as bytes is sound.
    unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) }
}

#[test]
fn tokenizer_json_matches_the_gguf_tokenizer() {
    let json = std::fs::read(common::root().join("tests/fixtures/smollm2_tokenizer.json")).unwrap();
    let from_json = TextTokenizer::from_hf(&json, None).unwrap();
    let file = GgufFile::parse(common::default_model_bytes()).unwrap();
    let from_gguf = TextTokenizer::from_gguf(&file).unwrap();
    for case in common::fixture("tokenizer_cases.json")["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(from_json.encode(text, true).unwrap(), from_gguf.encode(text, true).unwrap(), "{text:?}");
    }
}
