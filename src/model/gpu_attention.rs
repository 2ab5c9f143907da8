//! Attention in one kernel on the GPU backends, for forward passes that keep no gradient
//! (prefill, scoring, verdict distributions, calibration): a workgroup a (query row, head), the
//! scores in workgroup memory in chunks with a running max and sum, grouped KV heads read in
//! place, causal masking aligned bottom-right so it holds with a cache.
//!
//! burn's ops take ~10 dispatches a layer for the same (the two matmuls, the scale, the mask,
//! the max, the exp, the sum, the division, and the copies that repeat the KV heads), and hold
//! the `[heads, seq, total]` scores in memory. Training keeps burn's ops, whose backward pass
//! autodiff derives.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, backend_extension};
use burn::tensor::{DType, Shape, Tensor};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

/// Attention scores a workgroup keeps at once.
const SCORE_CHUNK: usize = 256;

/// `softmax(q·kᵀ · scale + mask)·v` for one query row of one head: `head_dim` threads, one an
/// output value. With `causal`, query row `i` of `seq` sees keys `0..=total − seq + i`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn attention_rows_kernel(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &mut [f32],
    seq: u32,
    total: u32,
    scale: f32,
    #[comptime] heads: u32,
    #[comptime] group: u32,
    #[comptime] head_dim: u32,
    #[comptime] causal: bool,
) {
    let i = CUBE_POS_X as usize;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let d = UNIT_POS as usize;
    let kv_heads = comptime![(heads / group) as usize];
    let head_dim = comptime![head_dim as usize];
    let heads = comptime![heads as usize];
    let seq = seq as usize;
    let total = total as usize;
    let row = ((b * heads + h) * seq + i) * head_dim;
    let base = (b * kv_heads + h / comptime![group as usize]) * total * head_dim;
    let mut len = total;
    if comptime![causal] {
        len = total - seq + i + 1;
    }
    let mut qs = Shared::<[f32]>::new_slice(head_dim);
    let mut scores = Shared::<[f32]>::new_slice(SCORE_CHUNK);
    qs[d] = q[row + d];
    sync_cube();
    let mut max = f32::new(-1.0e30f32);
    let mut sum = 0.0f32;
    let mut acc = 0.0f32;
    let mut start = 0usize;
    while start < len {
        let n = if len - start < SCORE_CHUNK { len - start } else { SCORE_CHUNK };
        let mut j = d;
        while j < n {
            let at = base + (start + j) * head_dim;
            let mut s = 0.0f32;
            for e in 0..head_dim {
                s += qs[e] * k[at + e];
            }
            scores[j] = s * scale;
            j += head_dim;
        }
        sync_cube();
        let mut chunk_max = max;
        for j in 0..n {
            if scores[j] > chunk_max {
                chunk_max = scores[j];
            }
        }
        let correction = (max - chunk_max).exp();
        sum *= correction;
        acc *= correction;
        for j in 0..n {
            let p = (scores[j] - chunk_max).exp();
            sum += p;
            acc += p * v[base + (start + j) * head_dim + d];
        }
        max = chunk_max;
        sync_cube();
        start += SCORE_CHUNK;
    }
    out[row + d] = acc / sum;
}

#[backend_extension(Cube, Fusion: cfg(feature = "fusion"))]
pub trait CausalAttentionBackend: burn::backend::Backend {
    /// `softmax(q·kᵀ/√head_dim + mask)·v`, q `[batch, heads, seq, head_dim]`, k and v
    /// `[batch, heads / group, total, head_dim]`: the output is shaped like q.
    #[fusion(dtype = q, shape = q)]
    fn grouped_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, group: usize, causal: bool) -> FloatTensor<Self>;
}

impl CausalAttentionBackend for CubeBackend {
    fn grouped_attention(q: CubeTensor, k: CubeTensor, v: CubeTensor, group: usize, causal: bool) -> CubeTensor {
        use burn::backend::TensorMetadata;
        let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
        let [batch, heads, seq, head_dim] = q.shape().dims::<4>();
        let total = k.shape()[2];
        let out = empty_device_dtype(q.client.clone(), q.device.clone(), Shape::new([batch, heads, seq, head_dim]), DType::F32);
        // In bounds by construction: the grid is the output's rows, each thread one value of a
        // row, and every key index is below `total`.
        unsafe {
            attention_rows_kernel::launch_unchecked(
                &q.client,
                CubeCount::Static(seq as u32, heads as u32, batch as u32),
                CubeDim::new_1d(head_dim as u32),
                q.clone().into_buffer_arg(),
                k.into_buffer_arg(),
                v.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                seq as u32,
                total as u32,
                (1.0 / (head_dim as f64).sqrt()) as f32,
                heads as u32,
                group as u32,
                head_dim as u32,
                causal,
            );
        }
        out
    }
}

/// Whether [`grouped_attention`] serves these tensors: fused GPU kernels on (`gpu_decode::enabled`), f32 on a GPU device, no gradient kept,
/// a head no wider than a workgroup, at least as many keys as queries.
pub fn serves(q: &Tensor<4>, k: &Tensor<4>) -> bool {
    let [_, heads, seq, head_dim] = q.dims();
    let [_, kv_heads, total, _] = k.dims();
    super::gpu_decode::enabled()
        && !q.is_autodiff()
        && !k.is_autodiff()
        && !crate::device::runs_on_cpu(&q.device())
        && q.dtype() == DType::F32
        && head_dim <= 256
        && kv_heads > 0
        && heads.is_multiple_of(kv_heads)
        && total >= seq
}

/// Grouped-query attention in one dispatch (see the module's notes).
///
/// # Shapes
/// - q: `[batch, heads, seq, head_dim]`, k, v: `[batch, kv_heads, total, head_dim]` → like q
pub fn grouped_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    let group = q.dims()[1] / k.dims()[1];
    Tensor::from_dispatch(<Dispatch as CausalAttentionBackend>::grouped_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        group,
        causal,
    ))
}

#[cfg(all(test, feature = "native"))]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::{Device, TensorData};

    /// A wgpu device (lavapipe under `./x test`), or `None` to skip where there is none and
    /// `CQA_REQUIRE_GPU` is unset.
    fn gpu() -> Option<Device> {
        static DEVICE: std::sync::OnceLock<Result<Device, String>> = std::sync::OnceLock::new();
        match DEVICE.get_or_init(|| crate::device::wgpu().map_err(|e| e.to_string())) {
            Ok(device) => Some(device.clone()),
            Err(e) if std::env::var_os("CQA_REQUIRE_GPU").is_some() => panic!("CQA_REQUIRE_GPU is set: {e}"),
            Err(e) => {
                eprintln!("skipped, no GPU: {e}");
                None
            }
        }
    }

    fn random(dims: [usize; 4], seed: u64, device: &Device) -> Tensor<4> {
        let mut rng = Rng::new(seed);
        let n = dims.iter().product();
        Tensor::from_data(TensorData::new((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), dims), device)
    }

    #[test]
    fn one_kernel_gives_the_tensor_ops_attention_with_grouped_heads_a_cache_and_long_rows() {
        let Some(device) = gpu() else { return };
        // 2 sequences, 6 query heads on 2 KV heads, 5 new rows after 295 cached ones: rows longer
        // than one chunk of scores (256), the causal mask aligned bottom-right; then a prompt
        // with no cache, and one decode row.
        for (seq, total, causal) in [(5, 300, true), (37, 37, true), (1, 40, false)] {
            let (q, k, v) = (random([2, 6, seq, 16], 1, &device), random([2, 2, total, 16], 2, &device), random([2, 2, total, 16], 3, &device));
            let want = super::super::attention_with_host_mask(q.clone(), super::super::repeat_kv(k.clone(), 3), super::super::repeat_kv(v.clone(), 3), causal);
            let got = grouped_attention(q, k, v, causal);
            let (got, want) = (got.into_data().try_to_vec::<f32>().unwrap(), want.into_data().try_to_vec::<f32>().unwrap());
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-5, "seq {seq}, total {total}: max |Δ| = {diff}");
        }
        // The comparison can fail: without the mask, the prompt's rows see later keys.
        let (q, k, v) = (random([1, 2, 8, 16], 4, &device), random([1, 2, 8, 16], 5, &device), random([1, 2, 8, 16], 6, &device));
        let masked = grouped_attention(q.clone(), k.clone(), v.clone(), true).into_data().try_to_vec::<f32>().unwrap();
        let open = grouped_attention(q, k, v, false).into_data().try_to_vec::<f32>().unwrap();
        assert!(masked.iter().zip(&open).any(|(a, b)| (a - b).abs() > 1e-3));
    }
}
