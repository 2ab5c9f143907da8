//! A minimal GGUF v3 writer (F32 tensors, any metadata). It exists for tests, fuzz seeds and
//! tiny demo models; real models come from llama.cpp's converter.

use super::MetaValue;

/// Builds a GGUF v3 file in memory.
#[derive(Default)]
pub struct GgufWriter {
    kv: Vec<u8>,
    n_kv: u64,
    infos: Vec<u8>,
    data: Vec<u8>,
    n_tensors: u64,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// GGUF value type ids (gguf.md).
fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_payload(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.extend(x.to_le_bytes()),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
        MetaValue::Array(items) => {
            // GGUF arrays are homogeneous; an empty one is written as an array of u8.
            let item_type = items.first().map(type_id).unwrap_or(0);
            out.extend(item_type.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_payload(out, item);
            }
        }
    }
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    out.extend(type_id(v).to_le_bytes());
    put_payload(out, v);
}

/// A small random-weight Llama (2 layers, d=32) that carries `tokenizer_source`'s tokenizer
/// and chat template, so real text runs through it: the fixture of fast tests and browser tests.
/// With `q8_0`, every matrix whose rows are whole 32-blocks is written as Q8_0 (the others stay
/// F32), so the engine holds them as stored blocks.
pub fn tiny_random_gguf(tokenizer_source: &super::GgufFile, seed: u64, q8_0: bool) -> Vec<u8> {
    let vocab = match tokenizer_source.metadata.get("tokenizer.ggml.tokens") {
        Some(MetaValue::Array(tokens)) => tokens.len(),
        _ => 0,
    };
    let (d, ff, layers, heads, kv_heads) = (32usize, 48usize, 2usize, 4usize, 2usize);
    let head_dim = d / heads;
    let mut w = GgufWriter::default()
        .kv_str("general.architecture", "llama")
        .kv_str("general.name", "tiny-random")
        .kv_u32("llama.embedding_length", d as u32)
        .kv_u32("llama.feed_forward_length", ff as u32)
        .kv_u32("llama.block_count", layers as u32)
        .kv_u32("llama.attention.head_count", heads as u32)
        .kv_u32("llama.attention.head_count_kv", kv_heads as u32)
        .kv_u32("llama.context_length", 2048)
        .kv_u32("llama.vocab_size", vocab as u32)
        .kv_f32("llama.rope.freq_base", 10_000.0)
        .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5);
    for (key, value) in &tokenizer_source.metadata {
        if key.starts_with("tokenizer.") {
            w = w.kv(key, value);
        }
    }
    let mut rng = crate::rng::Rng::new(seed);
    let mut normal = |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.normal() * 0.02) as f32).collect() };
    let matrix = |w: GgufWriter, name: &str, rows: usize, cols: usize, values: &[f32]| {
        if q8_0 && cols.is_multiple_of(32) { w.tensor_q8_0(name, &[rows, cols], values) } else { w.tensor_f32(name, &[rows, cols], values) }
    };
    w = matrix(w, "token_embd.weight", vocab, d, &normal(vocab * d)).tensor_f32("output_norm.weight", &[d], &vec![1.0; d]);
    let (q, kv) = (heads * head_dim, kv_heads * head_dim);
    for i in 0..layers {
        for (name, rows, cols) in
            [("attn_q", q, d), ("attn_k", kv, d), ("attn_v", kv, d), ("attn_output", d, q), ("ffn_gate", ff, d), ("ffn_up", ff, d), ("ffn_down", d, ff)]
        {
            w = matrix(w, &format!("blk.{i}.{name}.weight"), rows, cols, &normal(rows * cols));
        }
        w = w.tensor_f32(&format!("blk.{i}.attn_norm.weight"), &[d], &vec![1.0; d]);
        w = w.tensor_f32(&format!("blk.{i}.ffn_norm.weight"), &[d], &vec![1.0; d]);
    }
    w.build()
}

impl GgufWriter {
    pub fn kv_u32(mut self, key: &str, v: u32) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(4u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    pub fn kv_f32(mut self, key: &str, v: f32) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(6u32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    pub fn kv_str(mut self, key: &str, v: &str) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(8u32.to_le_bytes());
        put_str(&mut self.kv, v);
        self.n_kv += 1;
        self
    }
    pub fn kv_str_array(mut self, key: &str, items: &[&str]) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(8u32.to_le_bytes());
        self.kv.extend((items.len() as u64).to_le_bytes());
        for s in items {
            put_str(&mut self.kv, s);
        }
        self.n_kv += 1;
        self
    }
    pub fn kv_i32_array(mut self, key: &str, items: &[i32]) -> Self {
        put_str(&mut self.kv, key);
        self.kv.extend(9u32.to_le_bytes());
        self.kv.extend(5u32.to_le_bytes());
        self.kv.extend((items.len() as u64).to_le_bytes());
        for v in items {
            self.kv.extend(v.to_le_bytes());
        }
        self.n_kv += 1;
        self
    }
    /// Adds any metadata value (e.g. copied from another file's `metadata`).
    pub fn kv(mut self, key: &str, value: &MetaValue) -> Self {
        put_str(&mut self.kv, key);
        put_value(&mut self.kv, value);
        self.n_kv += 1;
        self
    }
    /// Adds an F32 tensor; `shape` is row-major (outermost first).
    pub fn tensor_f32(self, name: &str, shape: &[usize], values: &[f32]) -> Self {
        assert_eq!(shape.iter().product::<usize>(), values.len());
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor_bytes(name, shape, 0, &bytes)
    }
    /// Adds a `[rows, cols]` tensor quantized to Q8_0 (as ggml's reference quantizer does).
    pub fn tensor_q8_0(self, name: &str, shape: &[usize; 2], values: &[f32]) -> Self {
        let blocks = crate::quant::StoredMatrix::quantize_q8_0(values, shape[0], shape[1]).expect("rows of whole 32-blocks");
        self.tensor_bytes(name, shape, 8, blocks.bytes())
    }
    fn tensor_bytes(mut self, name: &str, shape: &[usize], ggml_type: u32, bytes: &[u8]) -> Self {
        while !self.data.len().is_multiple_of(32) {
            self.data.push(0);
        }
        put_str(&mut self.infos, name);
        self.infos.extend((shape.len() as u32).to_le_bytes());
        for &d in shape.iter().rev() {
            self.infos.extend((d as u64).to_le_bytes());
        }
        self.infos.extend(ggml_type.to_le_bytes());
        self.infos.extend((self.data.len() as u64).to_le_bytes());
        self.data.extend_from_slice(bytes);
        self.n_tensors += 1;
        self
    }
    pub fn build(self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.n_tensors.to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(self.kv);
        out.extend(self.infos);
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend(self.data);
        out
    }
}

