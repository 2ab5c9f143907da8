//! The Llama-family decoder (SmolLM2, Llama, Qwen2), following transformers'
//! `modeling_llama.py`: RMSNorm, grouped-query attention with rotate-half RoPE, SwiGLU MLP,
//! tied or untied LM head, optional q/k/v bias (Qwen2).
//!
//! Module fields carry HF tensor-path names (`embed_tokens`, `self_attn.q_proj`, ...), so the
//! only rename table is GGUF's (`gguf::names`). burn's `Linear` stores `[in, out]` while HF
//! stores `[out, in]`: weights are transposed once, in [`dense_from`].

pub mod cache;
pub mod config;
pub mod fused;
#[cfg(feature = "gpu-kernels")]
pub mod gpu_attention;
pub mod gpu_decode;
#[cfg(feature = "gpu-kernels")]
pub mod gpu_ops;
pub mod layers;
pub mod rope;
pub mod weights;

use crate::error::{Error, Result};
use crate::linear::{BaseLinear, LoraFactors, Projection, StoredLinear, StoredWeight, dense_from};
use crate::lora::Adapter;
use crate::quant::StoredMatrix;
use crate::rng::Rng;
use burn::module::{Module, Param};
use burn::nn::Embedding;
use layers::{StoredEmbedding, TokenEmbedding};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};
pub use cache::KvCache;
pub use config::LlamaConfig;
use fused::attention::cpu_attention;
use fused::swiglu::swiglu;
use rope::Rope;
pub use crate::quant::WeightMode;
pub use weights::WeightSource;

/// Root-mean-square layer norm: `x / sqrt(mean(x²) + eps) * weight`.
#[derive(Module, Debug)]
pub struct RmsNorm {
    pub weight: Param<Tensor<1>>,
    pub eps: f64,
}

impl RmsNorm {
    /// # Shapes
    /// - x: `[batch, seq, d]` → same
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        fused::rms_norm::rms_norm(x, self.weight.val(), self.eps)
    }
}

/// Multi-head self-attention with grouped key/value heads.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Projection,
    pub k_proj: Projection,
    pub v_proj: Projection,
    pub o_proj: Projection,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
}

impl Attention {
    /// # Shapes
    /// - x: `[batch, seq, d]` → `[batch, seq, d]`
    fn forward(&self, x: Tensor<3>, rope: &Rope, layer: usize, cache: &mut KvCache) -> Tensor<3> {
        let [batch, seq, _] = x.dims();
        let (h, kvh, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let offset = cache.len();

        // (batch, seq, heads * head_dim) → (batch, heads, seq, head_dim)
        let q = rope.apply_to_heads(self.q_proj.forward(x.clone()), h, offset);
        let k = rope.apply_to_heads(self.k_proj.forward(x.clone()), kvh, offset);
        let v = self.v_proj.forward(x).reshape([batch, seq, kvh, hd]).swap_dims(1, 2);

        let (k, v) = cache.append(layer, k, v);

        // Causal masking is aligned bottom-right, so it holds with a cache (seq < total).
        let on_cpu = crate::device::runs_on_cpu(&q.device());
        let out = if on_cpu && seq > 1 {
            // Prefill, scoring and training: every head on every core, and a backward pass of its own.
            cpu_attention(q, k, v, true)
        } else if on_cpu {
            // Decode: burn-flex's own fused attention kernel.
            let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: false };
            attention(q, repeat_kv(k, h / kvh), repeat_kv(v, h / kvh), None, None, options)
        } else if let Some(out) = gpu_grouped_attention(&q, &k, &v, seq > 1) {
            // Inference on a GPU: one kernel, grouped heads read in place.
            out
        } else {
            // Training on a GPU: burn's ops, whose backward pass autodiff derives.
            attention_with_host_mask(q, repeat_kv(k, h / kvh), repeat_kv(v, h / kvh), seq > 1)
        };
        // (batch, heads, seq, head_dim) → (batch, seq, heads * head_dim)
        self.o_proj.forward(out.swap_dims(1, 2).reshape([batch, seq, h * hd]))
    }
}

/// Attention in one GPU kernel (`gpu_attention`), where it serves: a GPU device, no gradient.
///
/// # Shapes
/// - q: `[batch, heads, seq, head_dim]`, k, v: `[batch, kv_heads, total, head_dim]` → like q
#[cfg_attr(not(feature = "gpu-kernels"), allow(unused_variables))]
fn gpu_grouped_attention(q: &Tensor<4>, k: &Tensor<4>, v: &Tensor<4>, causal: bool) -> Option<Tensor<4>> {
    #[cfg(feature = "gpu-kernels")]
    if gpu_attention::serves(q, k) {
        return Some(gpu_attention::grouped_attention(q.clone(), k.clone(), v.clone(), causal));
    }
    None
}

/// `softmax(q·kᵀ/√head_dim + mask)·v` written out, for training on the GPU backends.
///
/// burn's generic version (what wgpu and WebGPU run) builds the causal mask with integer kernels
/// on the device and clamps both softmax reductions, so a first forward pass compiles five more
/// distinct kernels (BENCHMARKS.md counts them; each costs seconds on a software GPU). Here the
/// mask is an additive bias of 0 or −∞ made on the host, and the clamps are left out: every row
/// of a causal mask keeps its diagonal, so the row max is finite and the row sum at least 1. The
/// numbers are the same: `s + 0 = s`, `s + (−∞) = −∞`, as the masked fill gives.
///
/// # Shapes
/// - q: `[batch, heads, seq, head_dim]`, k, v: `[batch, heads, total, head_dim]` → like q
fn attention_with_host_mask(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    let [_, _, seq, head_dim] = q.dims();
    let total = k.dims()[2];
    let device = q.device();
    let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(1.0 / (head_dim as f64).sqrt());
    let scores = if causal {
        // Bottom-right aligned: query row r (position offset + r) sees keys 0..=offset + r.
        let offset = total - seq;
        let bias: Vec<f32> = (0..seq)
            .flat_map(|r| (0..total).map(move |c| if c > offset + r { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        scores + Tensor::<2>::from_data(TensorData::new(bias, [seq, total]), &device).reshape([1, 1, seq, total])
    } else {
        scores
    };
    let max = scores.clone().max_dim(3);
    let weights = (scores - max).exp();
    let sum = weights.clone().sum_dim(3);
    (weights / sum).matmul(v)
}

/// Repeats each KV head `n_rep` times so grouped heads line up with query heads.
///
/// # Shapes
/// - x: `[batch, kv_heads, seq, head_dim]` → `[batch, kv_heads * n_rep, seq, head_dim]`
fn repeat_kv(x: Tensor<4>, n_rep: usize) -> Tensor<4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kvh, s, hd] = x.dims();
    x.reshape([b, kvh, 1, s, hd]).expand([b, kvh, n_rep, s, hd]).reshape([b, kvh * n_rep, s, hd])
}

/// SwiGLU feed-forward: `down(silu(gate(x)) * up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    pub gate_proj: Projection,
    pub up_proj: Projection,
    pub down_proj: Projection,
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.down_proj.forward(swiglu(self.gate_proj.forward(x.clone()), self.up_proj.forward(x)))
    }
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    pub self_attn: Attention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
}

impl DecoderLayer {
    fn forward(&self, x: Tensor<3>, rope: &Rope, layer: usize, cache: &mut KvCache) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), rope, layer, cache);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h))
    }
}

/// Reads a required tensor by HF name, checking its shape.
type LoadFn<'a> = dyn Fn(&str, &[usize]) -> Result<Vec<f32>> + 'a;
/// Whether a tensor that may be absent is there (without reading it: an untied head is large).
type HasFn<'a> = dyn Fn(&str) -> bool + 'a;
/// Reads a `[rows, cols]` weight matrix in stored form, or `None` to take it dense.
type StoredFn<'a> = dyn Fn(&str, usize, usize) -> Result<Option<StoredMatrix>> + 'a;

/// The whole causal language model.
#[derive(Module, Debug)]
pub struct Llama {
    pub embed_tokens: TokenEmbedding,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<BaseLinear>,
    /// Constants (the rotation tables), grown as positions are used: not a parameter.
    #[module(skip)]
    rope: Rope,
}

impl Llama {
    /// Runs the decoder over `tokens`, appending to `cache`, and returns the final hidden states.
    ///
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, d]`
    pub fn forward_hidden(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        let seq = tokens.dims()[1];
        if cache.len() + seq > self.rope.max_positions() {
            return Err(Error::Input(format!(
                "the sequence would reach {} tokens, but this model handles at most {}",
                cache.len() + seq,
                self.rope.max_positions()
            )));
        }
        let mut x = self.embed_tokens.forward(tokens)?;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &self.rope, i, cache);
        }
        cache.advance(seq);
        Ok(self.norm.forward(x))
    }

    /// Projects hidden states to vocabulary logits.
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, d]` → `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => self.embed_tokens.tied_logits(hidden),
        }
    }

    /// Bytes the weights take where they live (stored blocks, or f32).
    pub fn resident_weight_bytes(&self) -> u64 {
        let norms = 4 * self.norm.weight.val().shape().num_elements()
            + self.layers.iter().map(|l| {
                4 * (l.input_layernorm.weight.val().shape().num_elements()
                    + l.post_attention_layernorm.weight.val().shape().num_elements())
            }).sum::<usize>();
        let projections: u64 = self.projections().iter().map(|(_, p)| p.base.resident_bytes() as u64).sum();
        self.embed_tokens.resident_bytes() as u64
            + self.lm_head.as_ref().map_or(0, |h| h.resident_bytes() as u64)
            + norms as u64
            + projections
    }

    /// Whether any weight is held in stored (block) form.
    pub fn has_stored_weights(&self) -> bool {
        matches!(self.embed_tokens, TokenEmbedding::Stored(_))
            || self.projections().iter().any(|(_, p)| matches!(p.base, BaseLinear::Stored(_)))
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.norm.weight.val().device()
    }

    /// Logits for every position. # Shapes: tokens `[batch, seq]` → `[batch, seq, vocab]`
    pub fn forward(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Result<Tensor<3>> {
        let hidden = self.forward_hidden(tokens, cache)?;
        Ok(self.logits(hidden))
    }

    /// Every projection LoRA can adapt, with its HF module path
    /// (`model.layers.N.self_attn.q_proj`), in a fixed order.
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let mut out = Vec::with_capacity(self.layers.len() * 7);
        for (i, l) in self.layers.iter().enumerate() {
            let (a, m) = (&l.self_attn, &l.mlp);
            let named = [
                ("self_attn.q_proj", &a.q_proj),
                ("self_attn.k_proj", &a.k_proj),
                ("self_attn.v_proj", &a.v_proj),
                ("self_attn.o_proj", &a.o_proj),
                ("mlp.gate_proj", &m.gate_proj),
                ("mlp.up_proj", &m.up_proj),
                ("mlp.down_proj", &m.down_proj),
            ];
            out.extend(named.into_iter().map(|(n, p)| (format!("model.layers.{i}.{n}"), p)));
        }
        out
    }

    /// Mutable access to the projections, in the order of [`Self::projections`].
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Projection)> {
        let mut out = Vec::with_capacity(self.layers.len() * 7);
        for (i, l) in self.layers.iter_mut().enumerate() {
            let (a, m) = (&mut l.self_attn, &mut l.mlp);
            let named = [
                ("self_attn.q_proj", &mut a.q_proj),
                ("self_attn.k_proj", &mut a.k_proj),
                ("self_attn.v_proj", &mut a.v_proj),
                ("self_attn.o_proj", &mut a.o_proj),
                ("mlp.gate_proj", &mut m.gate_proj),
                ("mlp.up_proj", &mut m.up_proj),
                ("mlp.down_proj", &mut m.down_proj),
            ];
            out.extend(named.into_iter().map(|(n, p)| (format!("model.layers.{i}.{n}"), p)));
        }
        out
    }

    /// `(path, in, out)` of every adaptable projection.
    pub fn projection_shapes(&self) -> Vec<(String, usize, usize)> {
        self.projections().into_iter().map(|(path, p)| {
            let (d_in, d_out) = p.dims();
            (path, d_in, d_out)
        }).collect()
    }

    /// A copy of this model (sharing the base weights) with `adapter` attached, factored, on
    /// the model's device. With `trainable`, the factors live on `device.autodiff()` and take
    /// gradients; the base stays frozen because its tensors never enter the autodiff graph.
    pub fn with_adapter(&self, adapter: &Adapter, trainable: bool) -> Result<Llama> {
        let mut model = self.without_adapter();
        let rank = adapter.config.rank;
        let scale = adapter.config.scale();
        let mut attached = 0;
        for (path, projection) in model.projections_mut() {
            let Some(factors) = adapter.factors.get(&path) else { continue };
            let (d_in, d_out) = projection.dims();
            if (factors.d_in, factors.d_out) != (d_in, d_out) {
                return Err(Error::Model(format!(
                    "the adapter's `{path}` is {}×{} but the model's is {d_in}×{d_out}: it was made for another model",
                    factors.d_in, factors.d_out
                )));
            }
            let device = self.device();
            let device = if trainable { device.autodiff() } else { device };
            let (a, b) = factors.to_tensors(rank, &device);
            let (a, b) = if trainable { (a.require_grad(), b.require_grad()) } else { (a, b) };
            projection.lora = Some(LoraFactors {
                a: Param::from_tensor(a),
                b: Param::from_tensor(b),
                scale,
                dropout: adapter.config.dropout,
            });
            attached += 1;
        }
        if attached != adapter.factors.len() {
            return Err(Error::Model("the adapter names projections this model does not have: it was made for another model".into()));
        }
        Ok(model)
    }

    /// A copy of this model with `adapter` merged into the base weights, `W + s·A·B`: the
    /// tuned model at the base model's inference cost.
    ///
    /// Stored (quantized) bases keep the adapter factored instead: merging would need either a
    /// requantization, which would silently change the tuned model, or an f32 copy of every
    /// adapted matrix. Factored, the adapter costs its own factors in memory (r·(in + out)
    /// floats a projection) and two thin matmuls a projection per token.
    pub fn merged(&self, adapter: &Adapter) -> Result<Llama> {
        let mut model = self.with_adapter(adapter, false)?;
        for (_, projection) in model.projections_mut() {
            let (BaseLinear::Dense(linear), Some(lora)) = (&mut projection.base, &projection.lora) else { continue };
            let delta = lora.a.val().matmul(lora.b.val()).mul_scalar(lora.scale);
            linear.weight = Param::from_tensor(linear.weight.val() + delta);
            projection.lora = None;
        }
        Ok(model)
    }

    /// A copy of this model with every adapter removed (the base model; weights are shared).
    pub fn without_adapter(&self) -> Llama {
        let mut model = self.clone();
        for (_, projection) in model.projections_mut() {
            projection.lora = None;
        }
        model
    }

    /// A fresh cache sized for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Builds the model from named weights, checking every shape against `config`.
    ///
    /// With `WeightMode::Stored` (or `Q8_0`), weight matrices stay in their stored blocks: in
    /// host memory on the CPU, as words in device buffers on a GPU (`linear::StoredWeight`);
    /// norms and biases are always f32.
    pub fn from_weights(config: &LlamaConfig, source: &WeightSource, mode: WeightMode, device: &Device) -> Result<Self> {
        let heads = (config.num_attention_heads, config.num_key_value_heads);
        let load = |name: &str, shape: &[usize]| source.require(name, shape, heads);
        let has = |name: &str| source.has(name);
        let keep_stored = mode != WeightMode::F32 && StoredWeight::supported_on(device);
        let stored = |name: &str, rows: usize, cols: usize| -> Result<Option<StoredMatrix>> {
            if !keep_stored {
                return Ok(None);
            }
            source.load_stored(name, rows, cols, heads, mode)
        };
        Self::build(config, device, &load, &has, &stored)
    }

    /// A model with seeded N(0, 0.02²) weights (norms at 1), identical on every backend: for tests.
    pub fn random(config: &LlamaConfig, seed: u64, device: &Device) -> Self {
        let rng = std::cell::RefCell::new(Rng::new(seed));
        let load = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let n = shape.iter().product();
            if name.ends_with("norm.weight") {
                return Ok(vec![1.0; n]);
            }
            let mut rng = rng.borrow_mut();
            Ok((0..n).map(|_| (rng.normal() * 0.02) as f32).collect())
        };
        let has = |_: &str| false;
        let dense = |_: &str, _: usize, _: usize| Ok(None);
        Self::build(config, device, &load, &has, &dense).expect("random weights always have the right shape")
    }

    /// Logits `[seq, vocab]`, flattened, of the seeded tiny random model (`LlamaConfig::tiny`)
    /// for `ids`: one computation that the CLI and the browser both expose, so a test can compare
    /// backends.
    pub async fn tiny_random_logits(seed: u64, vocab_size: usize, ids: &[u32], device: &Device) -> Result<Vec<f32>> {
        let model = Llama::random(&LlamaConfig::tiny(vocab_size), seed, device);
        let n = ids.len();
        let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device);
        crate::device::read_f32(model.forward(tokens, &mut model.new_cache())?).await
    }

    fn build(c: &LlamaConfig, device: &Device, load: &LoadFn, has: &HasFn, stored: &StoredFn) -> Result<Self> {
        let d = c.hidden_size;
        let q_dim = c.num_attention_heads * c.head_dim;
        let kv_dim = c.num_key_value_heads * c.head_dim;
        let linear = |name: &str, d_in: usize, d_out: usize, bias: bool| -> Result<BaseLinear> {
            let b = if bias { Some(load(&format!("{name}.bias"), &[d_out])?) } else { None };
            let w = match stored(&format!("{name}.weight"), d_out, d_in)? {
                Some(matrix) => match StoredWeight::place(matrix, device) {
                    Ok(weight) => {
                        let bias = b.map(|b| Param::from_tensor(Tensor::from_data(TensorData::new(b, [d_out]), device)));
                        return Ok(BaseLinear::Stored(StoredLinear { weight, bias }));
                    }
                    Err(matrix) => matrix.to_f32(),
                },
                None => load(&format!("{name}.weight"), &[d_out, d_in])?,
            };
            Ok(BaseLinear::Dense(dense_from(&w, b, d_in, d_out, device)))
        };
        let projection = |name: &str, d_in: usize, d_out: usize, bias: bool| -> Result<Projection> {
            Ok(Projection::new(linear(name, d_in, d_out, bias)?))
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            let w = load(name, &[d])?;
            Ok(RmsNorm { weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [d]), device)), eps: c.rms_norm_eps })
        };

        let embed_tokens = match stored("model.embed_tokens.weight", c.vocab_size, d)?.map(|m| StoredWeight::place(m, device)) {
            Some(Ok(weight)) => TokenEmbedding::Stored(StoredEmbedding { weight }),
            other => {
                let embed = match other {
                    Some(Err(matrix)) => matrix.to_f32(),
                    _ => load("model.embed_tokens.weight", &[c.vocab_size, d])?,
                };
                TokenEmbedding::Dense(Embedding {
                    weight: Param::from_tensor(Tensor::from_data(TensorData::new(embed, [c.vocab_size, d]), device)),
                })
            }
        };

        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let bias = c.attention_bias;
            layers.push(DecoderLayer {
                self_attn: Attention {
                    q_proj: projection(&format!("{p}.self_attn.q_proj"), d, q_dim, bias)?,
                    k_proj: projection(&format!("{p}.self_attn.k_proj"), d, kv_dim, bias)?,
                    v_proj: projection(&format!("{p}.self_attn.v_proj"), d, kv_dim, bias)?,
                    o_proj: projection(&format!("{p}.self_attn.o_proj"), q_dim, d, false)?,
                    num_heads: c.num_attention_heads,
                    num_kv_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                },
                mlp: Mlp {
                    gate_proj: projection(&format!("{p}.mlp.gate_proj"), d, c.intermediate_size, false)?,
                    up_proj: projection(&format!("{p}.mlp.up_proj"), d, c.intermediate_size, false)?,
                    down_proj: projection(&format!("{p}.mlp.down_proj"), c.intermediate_size, d, false)?,
                },
                input_layernorm: norm(&format!("{p}.input_layernorm.weight"))?,
                post_attention_layernorm: norm(&format!("{p}.post_attention_layernorm.weight"))?,
            });
            // Hand the layer's writes to the GPU now, so their bytes are not kept queued on the
            // host while the next layers load (see `DeviceMatrix::upload`); a no-op on the CPU.
            let _ = device.flush();
        }

        // A file may ship an `lm_head` even when the config ties it (some safetensors exports do):
        // use it only when untied, and require it then.
        let lm_head = if c.tie_word_embeddings {
            None
        } else if has("lm_head.weight") {
            Some(linear("lm_head", d, c.vocab_size, false)?)
        } else {
            return Err(Error::Model("the model is untied but has no `lm_head.weight` / `output.weight`".into()));
        };

        Ok(Llama {
            embed_tokens,
            layers,
            norm: norm("model.norm.weight")?,
            lm_head,
            rope: Rope::new(c.head_dim, c.rope_theta, c.max_position_embeddings, device),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(device: &Device) -> Projection {
        Projection::new(BaseLinear::Dense(dense_from(&[1.0, 0.0, 0.0, 1.0], None, 2, 2, device)))
    }

    #[test]
    fn one_causal_attention_step_by_hand() {
        // One head of width 2 with identity projections; x = [e₀, e₁]. RoPE (θ irrelevant for
        // width 2: inv_freq = [1]) leaves position 0 alone and turns e₁ at position 1 into
        // [−sin 1, cos 1]. Row 0 sees only itself → v₀ = e₀. Row 1 attends with scores
        // q₁·k₀/√2 = −sin 1/√2 and q₁·k₁/√2 = 1/√2, so its output is softmax of those over
        // [v₀, v₁] = [e₀, e₁].
        let device = crate::device::cpu();
        let attn = Attention { q_proj: identity(&device), k_proj: identity(&device), v_proj: identity(&device), o_proj: identity(&device), num_heads: 1, num_kv_heads: 1, head_dim: 2 };
        let rope = Rope::new(2, 10_000.0, 4, &device);
        let x = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [1, 2, 2]), &device);
        let out = attn.forward(x, &rope, 0, &mut KvCache::new(1)).into_data().try_to_vec::<f32>().unwrap();
        let (a, b) = (-(1f64.sin()) / 2f64.sqrt(), 1.0 / 2f64.sqrt());
        let w0 = a.exp() / (a.exp() + b.exp());
        let expected = [1.0, 0.0, w0, 1.0 - w0];
        for (o, e) in out.iter().zip(expected) {
            assert!((*o as f64 - e).abs() < 1e-6, "{out:?} vs {expected:?}");
        }
    }

    #[test]
    fn grouped_kv_heads_repeat_in_place() {
        let device = crate::device::cpu();
        // [1, 2 kv heads, 1, 1] → [1, 4, 1, 1]: each kv head serves two consecutive query heads.
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0], [1, 2, 1, 1]), &device);
        assert_eq!(repeat_kv(x, 2).into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 1.0, 2.0, 2.0]);
    }
}
