//! The host side of the GPU decode step: the model's device buffers picked out once, the
//! session's cache and scratch buffers allocated once, and the kernels launched in order.

use super::kernels::{
    ARGMAX_THREADS, GATED, RESIDUAL, SAMPLE_THREADS, STACKED, argmax_kernel, attention_kernel,
    import_cache_kernel, lora_down_kernel, project_kernel, rope_cache_kernel, sample_kernel,
};
use crate::sampling::Sampler;
use crate::error::{Error, Result};
use crate::linear::{BaseLinear, StoredLinear, StoredWeight};
use crate::model::layers::TokenEmbedding;
use crate::model::{KvCache, Llama};
use crate::linear::{LoraFactors, Projection};
use crate::quant::gpu::{ChunkShape, LANES, ROWS_PER_CUBE, elementwise_launch as elementwise, embed_kernel};
use burn::tensor::{DType, Int, Shape, Tensor, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Dispatches a layer costs without adapters (an adapter adds one for each product whose
/// matrices it adapts); a token adds one an embedding chunk, one a head chunk and the argmax.
pub const DISPATCHES_PER_LAYER: usize = 6;

/// One storage buffer of a matrix's words, and its rows' place in the whole matrix.
#[derive(Debug, Clone)]
struct Words {
    chunk: ChunkShape,
    words: CubeTensor,
}

impl Words {
    fn rows(&self) -> u32 {
        self.chunk.rows as u32
    }
    fn value_words(&self) -> u32 {
        self.chunk.layout.value_words as u32
    }
    fn scale_words(&self) -> u32 {
        self.chunk.layout.scale_words as u32
    }
    fn format(&self) -> u32 {
        self.chunk.layout.format_code()
    }
}

/// What a product adds to its output columns beside its stored matrices (see `project_kernel`):
/// the LoRA adapters' up-products and the biases.
#[derive(Debug, Clone)]
struct Extra {
    /// `[rows, columns]`: s·B of each adapter in its matrix's columns, then the biases' row.
    weights: CubeTensor,
    rows: usize,
    /// The adapters' stacked Aᵀ (`[lora rows, in]`), when any is attached.
    down: Option<(CubeTensor, usize)>,
    /// `[rows]`: x̂·A (written by `lora_down_kernel`), then the biases' constant 1.
    input: CubeTensor,
}

#[derive(Debug, Clone)]
struct Layer {
    q: Words,
    k: Words,
    v: Words,
    qkv_extra: Option<Extra>,
    o_extra: Option<Extra>,
    gate_up_extra: Option<Extra>,
    down_extra: Option<Extra>,
    o: Words,
    gate: Words,
    up: Words,
    down: Words,
    input_norm: CubeTensor,
    post_norm: CubeTensor,
    eps: f32,
    /// `[kv_heads, capacity, head_dim]` each.
    k_cache: CubeTensor,
    v_cache: CubeTensor,
}

/// The host `Sampler`'s settings on the device, with its buffers: [`sample_kernel`] picks each
/// token in place of the argmax.
#[derive(Debug)]
struct DeviceSampler {
    inv_temperature: f32,
    top_k: u32,
    top_p: f32,
    penalty: f32,
    seed: u64,
    greedy: bool,
    /// A bit a vocabulary entry: the tokens seen (prompt and output), for the repetition penalty.
    seen: CubeTensor,
    /// Scratch: the vocabulary's softmax weights.
    weights: CubeTensor,
}

/// A generation session's decoder on the GPU: the model's buffers, its own cache and scratch.
#[derive(Debug)]
pub struct GpuDecoder {
    layers: Vec<Layer>,
    embed: Vec<Words>,
    head: Vec<Words>,
    final_norm: CubeTensor,
    final_eps: f32,
    cos: CubeTensor,
    sin: CubeTensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    capacity: usize,
    len: usize,
    hidden: CubeTensor,
    qkv: CubeTensor,
    attn: CubeTensor,
    act: CubeTensor,
    logits: CubeTensor,
    next: CubeTensor,
    /// Stand-ins for the inputs a launch does not use (WebGPU refuses a buffer bound twice when
    /// one of the bindings is writable, so none is reused).
    unused_f32: [CubeTensor; 3],
    unused_words: [CubeTensor; 2],
    dispatches: usize,
    device: burn::tensor::Device,
    /// The id `next` holds, once read back: fed to the next step where it is, not uploaded
    /// again (an upload costs a submit of its own on WebGPU).
    next_read: Option<u32>,
    /// `[2]` on the device: the next token's position and the sampler's next draw (the last
    /// kernel of a step moves both on).
    position: CubeTensor,
    /// Set by [`GpuDecoder::sample_on_device`]; the argmax otherwise.
    sampler: Option<DeviceSampler>,
}

fn cube_float<const D: usize>(t: Tensor<D>) -> Option<CubeTensor> {
    t.try_into_primitive::<CubeBackend>().ok().map(into_contiguous)
}

fn cube_int<const D: usize>(t: Tensor<D, Int>) -> Option<CubeTensor> {
    t.try_into_primitive::<CubeBackend>().ok().map(into_contiguous)
}

/// A projection's words, bias and adapter, if its matrix is one buffer of stored words.
fn projection_words(p: &Projection) -> Option<(Words, Option<Tensor<1>>, Option<&LoraFactors>)> {
    let BaseLinear::Stored(StoredLinear { weight: StoredWeight::Device(matrix), bias }) = &p.base else { return None };
    let [(chunk, words)] = matrix.chunks() else { return None };
    Some((Words { chunk: *chunk, words: cube_int(words.clone())? }, bias.as_ref().map(|b| b.val()), p.lora.as_ref()))
}

/// The extra product of a group of matrices that share an input (`parts`: each one's bias,
/// adapter and first output column, of `columns`): `None` inside when there is nothing to add,
/// `None` outside when the tensors are not plain GPU tensors (e.g. factors that train).
fn extra(parts: &[(Option<Tensor<1>>, Option<&LoraFactors>, usize)], columns: usize, device: &burn::tensor::Device) -> Option<Option<Extra>> {
    let has_bias = parts.iter().any(|(bias, _, _)| bias.is_some());
    let adapters: Vec<(&LoraFactors, usize)> = parts.iter().filter_map(|(_, lora, at)| lora.map(|l| (l, *at))).collect();
    if adapters.is_empty() && !has_bias {
        return Some(None);
    }
    let lora_rows: usize = adapters.iter().map(|(l, _)| l.a.val().dims()[1]).sum();
    let rows = lora_rows + usize::from(has_bias);
    let mut weights = Tensor::<2>::zeros([rows, columns], device);
    let mut row = 0;
    for (lora, at) in &adapters {
        let b = lora.b.val().mul_scalar(lora.scale);
        let [r, width] = b.dims();
        weights = weights.slice_assign([row..row + r, *at..*at + width], b);
        row += r;
    }
    for (bias, _, at) in parts {
        if let Some(bias) = bias {
            let n = bias.dims()[0];
            weights = weights.slice_assign([rows - 1..rows, *at..*at + n], bias.clone().reshape([1, n]));
        }
    }
    let down = if adapters.is_empty() {
        None
    } else {
        let a_t = Tensor::cat(adapters.iter().map(|(l, _)| l.a.val().transpose()).collect(), 0);
        Some((cube_float(a_t)?, lora_rows))
    };
    // Without adapters the input is the biases' constant 1 alone; with them, lora_down_kernel
    // writes it whole each step.
    let input = if down.is_none() { Tensor::<1>::ones([1], device) } else { Tensor::<1>::zeros([rows], device) };
    Some(Some(Extra { weights: cube_float(weights)?, rows, down, input: cube_float(input)? }))
}

fn weight_chunks(weight: &StoredWeight) -> Option<Vec<Words>> {
    let StoredWeight::Device(matrix) = weight else { return None };
    matrix.chunks().iter().map(|(chunk, words)| Some(Words { chunk: *chunk, words: cube_int(words.clone())? })).collect()
}

impl GpuDecoder {
    /// The decoder of `model` continuing `cache` (the prompt's keys and values, copied once), with
    /// room for `capacity` positions in all; `None` where the model does not qualify (see the
    /// module's notes) or fused decoding is turned off.
    pub fn new(model: &Llama, cache: &KvCache, capacity: usize) -> Option<Self> {
        if !super::enabled() || model.layers.is_empty() || capacity <= cache.len() {
            return None;
        }
        let TokenEmbedding::Stored(embedding) = &model.embed_tokens else { return None };
        let embed = weight_chunks(&embedding.weight)?;
        let head = match &model.lm_head {
            None => embed.clone(),
            Some(BaseLinear::Stored(StoredLinear { weight, bias: None })) => weight_chunks(weight)?,
            Some(_) => return None,
        };
        let attention = &model.layers[0].self_attn;
        let (heads, kv_heads, head_dim) = (attention.num_heads, attention.num_kv_heads, attention.head_dim);
        // One thread an output value of a head; workgroup memory for q and a chunk of scores.
        if head_dim > 256 || !head_dim.is_multiple_of(2) || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return None;
        }
        // The decoder's positions: those of its cache's capacity.
        let (cos, sin) = model.rope.tables_covering(capacity);
        let (cos, sin) = (cube_float(cos)?, cube_float(sin)?);
        let final_norm = cube_float(model.norm.weight.val())?;

        let client = final_norm.client.clone();
        let device = final_norm.device.clone();
        let alloc = |n: usize, dtype: DType| empty_device_dtype(client.clone(), device.clone(), Shape::new([n.max(1)]), dtype);
        let cache_floats = kv_heads * capacity * head_dim;

        let mut layers = Vec::with_capacity(model.layers.len());
        for (i, layer) in model.layers.iter().enumerate() {
            let (a, m) = (&layer.self_attn, &layer.mlp);
            let device = model.device();
            let (q, q_bias, q_lora) = projection_words(&a.q_proj)?;
            let (k, k_bias, k_lora) = projection_words(&a.k_proj)?;
            let (v, v_bias, v_lora) = projection_words(&a.v_proj)?;
            let (o, o_bias, o_lora) = projection_words(&a.o_proj)?;
            let (gate, gate_bias, gate_lora) = projection_words(&m.gate_proj)?;
            let (up, up_bias, up_lora) = projection_words(&m.up_proj)?;
            let (down, down_bias, down_lora) = projection_words(&m.down_proj)?;
            let (q_rows, kv_rows, inner) = (q.chunk.rows, k.chunk.rows, gate.chunk.rows);
            let qkv_parts = [(q_bias, q_lora, 0), (k_bias, k_lora, q_rows), (v_bias, v_lora, q_rows + kv_rows)];
            let layer_out = Layer {
                qkv_extra: extra(&qkv_parts, q_rows + 2 * kv_rows, &device)?,
                o_extra: extra(&[(o_bias, o_lora, 0)], o.chunk.rows, &device)?,
                gate_up_extra: extra(&[(gate_bias, gate_lora, 0), (up_bias, up_lora, inner)], 2 * inner, &device)?,
                down_extra: extra(&[(down_bias, down_lora, 0)], down.chunk.rows, &device)?,
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
                input_norm: cube_float(layer.input_layernorm.weight.val())?,
                post_norm: cube_float(layer.post_attention_layernorm.weight.val())?,
                eps: layer.input_layernorm.eps as f32,
                k_cache: alloc(cache_floats, DType::F32),
                v_cache: alloc(cache_floats, DType::F32),
            };
            if let Some((k_seen, v_seen)) = cache.layer(i) {
                let len = k_seen.dims()[2];
                import(cube_float(k_seen.clone())?, &layer_out.k_cache, kv_heads, len, capacity, head_dim);
                import(cube_float(v_seen.clone())?, &layer_out.v_cache, kv_heads, len, capacity, head_dim);
            }
            layers.push(layer_out);
        }
        let q_dim = heads * head_dim;
        let intermediate = layers[0].gate.chunk.rows;
        let vocab = head.iter().map(|w| w.chunk.rows).sum();
        Some(GpuDecoder {
            final_eps: model.norm.eps as f32,
            hidden: alloc(model.norm.weight.val().dims()[0], DType::F32),
            qkv: alloc(q_dim + 2 * kv_heads * head_dim, DType::F32),
            attn: alloc(q_dim, DType::F32),
            act: alloc(intermediate, DType::F32),
            logits: alloc(vocab, DType::F32),
            next: alloc(1, DType::I32),
            unused_f32: [alloc(1, DType::F32), alloc(1, DType::F32), alloc(1, DType::F32)],
            unused_words: [alloc(1, DType::I32), alloc(1, DType::I32)],
            layers,
            embed,
            head,
            final_norm,
            cos,
            sin,
            heads,
            kv_heads,
            head_dim,
            vocab,
            capacity,
            len: cache.len(),
            dispatches: 0,
            position: cube_int(Tensor::<1, Int>::from_data(TensorData::new(vec![cache.len() as i32, 0], [2]), &model.device()))?,
            device: model.device(),
            next_read: None,
            sampler: None,
        })
    }

    /// Positions in the cache: the next token's position.
    pub fn position(&self) -> usize {
        self.len
    }

    /// Dispatches the last step launched.
    pub fn dispatches_per_step(&self) -> usize {
        self.dispatches
    }

    /// Picks each next token with `sampler`'s settings on the device from now on (the argmax
    /// otherwise): its next draw and the tokens seen so far (`history`, for the repetition
    /// penalty) are uploaded once. The same logits give the host sampler's pick.
    pub fn sample_on_device(&mut self, sampler: &Sampler, history: &[u32]) -> Result<()> {
        let p = sampler.params();
        let mut seen = vec![0u32; self.vocab.div_ceil(32)];
        for &id in history {
            if let Some(word) = seen.get_mut(id as usize / 32) {
                *word |= 1 << (id % 32);
            }
        }
        let upload = |values: Vec<i32>| {
            let n = values.len();
            cube_int(Tensor::<1, Int>::from_data(TensorData::new(values, [n]), &self.device))
                .ok_or_else(|| Error::Device("the sampler's state could not be placed on the GPU".into()))
        };
        let seen = upload(seen.into_iter().map(|w| w as i32).collect())?;
        self.position = upload(vec![self.len as i32, sampler.draws() as i32])?;
        let weights = empty_device_dtype(self.logits.client.clone(), self.logits.device.clone(), Shape::new([self.vocab]), DType::F32);
        self.sampler = Some(DeviceSampler {
            inv_temperature: sampler.inverse_temperature(),
            top_k: p.top_k.min(u32::MAX as usize) as u32,
            top_p: p.top_p,
            penalty: p.repetition_penalty,
            seed: p.seed,
            greedy: p.temperature == 0.0,
            seen,
            weights,
        });
        Ok(())
    }

    /// Runs `token` through the model at the next position: its logits and the next token's pick
    /// stay on the device (read with [`Self::picked_token`] or [`Self::logits`]).
    pub fn step(&mut self, token: u32) -> Result<()> {
        if self.len >= self.capacity {
            return Err(Error::Input(format!("the session's cache holds {} positions and is full", self.capacity)));
        }
        if token as usize >= self.vocab {
            return Err(Error::Input(format!("token id {token} is outside the model's vocabulary of {}", self.vocab)));
        }
        let token = if self.next_read.take() == Some(token) {
            self.next.clone()
        } else {
            let upload = Tensor::<1, Int>::from_data(TensorData::new(vec![token as i32], [1]), &self.device);
            cube_int(upload).ok_or_else(|| Error::Device("the token could not be placed on the GPU".into()))?
        };
        let mut launched = 0;
        for w in &self.embed {
            self.embed_row(&token, w);
            launched += 1;
        }
        for layer in &self.layers {
            let eps = layer.eps;
            launched += self.project(&self.hidden, Some(&layer.input_norm), &[&layer.q, &layer.k, &layer.v], layer.qkv_extra.as_ref(), &self.qkv, 0, STACKED, eps);
            self.rope_and_cache(layer, &self.position);
            self.attend(layer, &self.position);
            launched += 2;
            launched += self.project(&self.attn, None, &[&layer.o], layer.o_extra.as_ref(), &self.hidden, 0, RESIDUAL, eps);
            launched += self.project(&self.hidden, Some(&layer.post_norm), &[&layer.gate, &layer.up], layer.gate_up_extra.as_ref(), &self.act, 0, GATED, eps);
            launched += self.project(&self.act, None, &[&layer.down], layer.down_extra.as_ref(), &self.hidden, 0, RESIDUAL, eps);
        }
        for w in &self.head {
            launched += self.project(&self.hidden, Some(&self.final_norm), &[w], None, &self.logits, w.chunk.row_start, STACKED, self.final_eps);
        }
        self.pick();
        self.dispatches = launched + 1;
        self.len += 1;
        Ok(())
    }

    /// The token picked from the last step's logits (the argmax, or the device sampler's draw):
    /// 4 bytes read back.
    pub async fn picked_token(&mut self) -> Result<u32> {
        let next = Tensor::<1, Int>::from_primitive::<CubeBackend>(self.next.clone());
        let data = next.into_data_async().await.map_err(|e| Error::Device(format!("reading the token back failed: {e:?}")))?;
        let id = data.convert::<i32>().try_to_vec::<i32>().map_err(|e| Error::Device(format!("unexpected token data: {e:?}")))?;
        let id = id.first().copied().unwrap_or(0).max(0) as u32;
        self.next_read = Some(id);
        Ok(id)
    }

    /// The last step's logits, read back (for sampling on the host).
    pub async fn logits(&self) -> Result<Vec<f32>> {
        crate::device::read_f32(Tensor::<1>::from_primitive::<CubeBackend>(self.logits.clone())).await
    }

    fn embed_row(&self, token: &CubeTensor, w: &Words) {
        let cols = w.chunk.layout.cols;
        let (count, dim) = elementwise(&self.hidden, cols / 32);
        unsafe {
            embed_kernel::launch_unchecked(
                &self.hidden.client,
                count,
                dim,
                token.clone().into_buffer_arg(),
                w.words.clone().into_buffer_arg(),
                self.hidden.clone().into_buffer_arg(),
                1,
                w.rows(),
                w.chunk.row_start as u32,
                cols as u32,
                w.value_words(),
                w.scale_words(),
                w.format(),
                false,
            );
        }
    }

    /// `mats` applied to `x` (see `project_kernel`), with the adapters' and biases' `extra`:
    /// rows into `out[out_offset..]`. Gives the dispatches it took (two with an adapter).
    #[allow(clippy::too_many_arguments)]
    fn project(&self, x: &CubeTensor, norm: Option<&CubeTensor>, mats: &[&Words], extra: Option<&Extra>, out: &CubeTensor, out_offset: usize, mode: u32, eps: f32) -> usize {
        let [unused_norm, unused_extra_in, unused_extra] = &self.unused_f32;
        let mut launched = 1;
        if let Some(Extra { down: Some((a_t, lora_rows)), input, rows, .. }) = extra {
            unsafe {
                lora_down_kernel::launch_unchecked(
                    &out.client,
                    CubeCount::Static(*rows as u32, 1, 1),
                    CubeDim::new_1d(LANES * ROWS_PER_CUBE),
                    x.clone().into_buffer_arg(),
                    norm.unwrap_or(unused_norm).clone().into_buffer_arg(),
                    a_t.clone().into_buffer_arg(),
                    input.clone().into_buffer_arg(),
                    mats[0].chunk.layout.cols as u32,
                    *lora_rows as u32,
                    eps,
                    norm.is_some(),
                );
            }
            launched += 1;
        }
        let a = mats[0];
        let [unused_b, unused_c] = &self.unused_words;
        let stand_in = |i: usize, unused: &CubeTensor| mats.get(i).map_or((unused.clone(), 0, a.format(), 0, 0), |w| (w.words.clone(), w.rows(), w.format(), w.value_words(), w.scale_words()));
        let (b, rows_b, format_b, words_b, scales_b) = stand_in(1, unused_b);
        let (c, rows_c, format_c, words_c, scales_c) = stand_in(2, unused_c);
        let rows = if mode == STACKED { a.rows() + rows_b + rows_c } else { a.rows() } as usize;
        let (extra_in, extra_weights, extra_rows) = match extra {
            Some(e) => (e.input.clone(), e.weights.clone(), e.rows),
            None => (unused_extra_in.clone(), unused_extra.clone(), 0),
        };
        let cubes = rows.div_ceil(ROWS_PER_CUBE as usize);
        let cx = cubes.min(32768);
        let count = CubeCount::Static(cx as u32, cubes.div_ceil(cx) as u32, 1);
        // In bounds by construction: every index is below the sizes the buffers were made with.
        unsafe {
            project_kernel::launch_unchecked(
                &out.client,
                count,
                CubeDim::new_2d(LANES, ROWS_PER_CUBE),
                x.clone().into_buffer_arg(),
                norm.unwrap_or(unused_norm).clone().into_buffer_arg(),
                a.words.clone().into_buffer_arg(),
                b.into_buffer_arg(),
                c.into_buffer_arg(),
                extra_in.into_buffer_arg(),
                extra_weights.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                a.rows(),
                rows_b,
                rows_c,
                a.value_words(),
                a.scale_words(),
                words_b,
                scales_b,
                words_c,
                scales_c,
                a.chunk.layout.cols as u32,
                out_offset as u32,
                extra_rows as u32,
                eps,
                a.format(),
                format_b,
                format_c,
                mode,
                norm.is_some(),
                extra.is_some(),
            );
        }
        launched
    }

    fn rope_and_cache(&self, layer: &Layer, position: &CubeTensor) {
        let threads = (self.heads + self.kv_heads) * self.head_dim / 2 + self.kv_heads * self.head_dim;
        let (count, dim) = elementwise(&self.qkv, threads);
        unsafe {
            rope_cache_kernel::launch_unchecked(
                &self.qkv.client,
                count,
                dim,
                self.qkv.clone().into_buffer_arg(),
                self.cos.clone().into_buffer_arg(),
                self.sin.clone().into_buffer_arg(),
                layer.k_cache.clone().into_buffer_arg(),
                layer.v_cache.clone().into_buffer_arg(),
                position.clone().into_buffer_arg(),
                self.capacity as u32,
                self.heads as u32,
                self.kv_heads as u32,
                self.head_dim as u32,
            );
        }
    }

    fn attend(&self, layer: &Layer, position: &CubeTensor) {
        unsafe {
            attention_kernel::launch_unchecked(
                &self.attn.client,
                CubeCount::Static(self.heads as u32, 1, 1),
                CubeDim::new_1d(self.head_dim as u32),
                self.qkv.clone().into_buffer_arg(),
                layer.k_cache.clone().into_buffer_arg(),
                layer.v_cache.clone().into_buffer_arg(),
                self.attn.clone().into_buffer_arg(),
                position.clone().into_buffer_arg(),
                self.capacity as u32,
                (1.0 / (self.head_dim as f64).sqrt()) as f32,
                (self.heads / self.kv_heads) as u32,
                self.head_dim as u32,
            );
        }
    }

    fn pick(&self) {
        if let Some(s) = &self.sampler {
            let vocab = self.vocab as u32;
            unsafe {
                sample_kernel::launch_unchecked(
                    &self.logits.client,
                    CubeCount::Static(1, 1, 1),
                    CubeDim::new_1d(SAMPLE_THREADS),
                    self.logits.clone().into_buffer_arg(),
                    s.seen.clone().into_buffer_arg(),
                    s.weights.clone().into_buffer_arg(),
                    self.next.clone().into_buffer_arg(),
                    self.position.clone().into_buffer_arg(),
                    vocab,
                    s.inv_temperature,
                    s.top_k,
                    s.top_p,
                    s.penalty,
                    s.seed as u32,
                    (s.seed >> 32) as u32,
                    s.greedy,
                    s.top_k > 0 && s.top_k < vocab,
                    s.top_p < 1.0,
                );
            }
            return;
        }
        unsafe {
            argmax_kernel::launch_unchecked(
                &self.logits.client,
                CubeCount::Static(1, 1, 1),
                CubeDim::new_1d(ARGMAX_THREADS),
                self.logits.clone().into_buffer_arg(),
                self.next.clone().into_buffer_arg(),
                self.position.clone().into_buffer_arg(),
                self.vocab as u32,
            );
        }
    }
}

/// Copies one layer's keys or values from burn's cache into the session's.
fn import(src: CubeTensor, dst: &CubeTensor, kv_heads: usize, len: usize, capacity: usize, head_dim: usize) {
    let total = kv_heads * len * head_dim;
    let (count, dim) = elementwise(dst, total);
    unsafe {
        import_cache_kernel::launch_unchecked(
            &dst.client,
            count,
            dim,
            src.into_buffer_arg(),
            dst.clone().into_buffer_arg(),
            total as u32,
            len as u32,
            capacity as u32,
            head_dim as u32,
        );
    }
}


