//! Attention in one kernel on the GPU backends, for forward passes that keep no gradient
//! (prefill, scoring, verdict distributions, calibration): a workgroup a block of query rows of a
//! head, tiles of keys and values read once for the block, the scores in workgroup memory with a
//! running max and sum a row, grouped KV heads read in place, causal masking aligned bottom-right
//! so it holds with a cache.
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

/// Query rows a workgroup takes (they share each tile of keys and values), for a head width.
const fn rows_per_cube(head_dim: u32) -> u32 {
    let rows = 512 / head_dim;
    if rows == 0 { 1 } else if rows > 8 { 8 } else { rows }
}

/// Keys a tile holds, for a head width: the tiles, the rows' queries and outputs stay within
/// 16 KiB of workgroup memory, WebGPU's guaranteed size.
const fn keys_per_tile(head_dim: u32) -> u32 {
    let keys = 1024 / head_dim;
    if keys == 0 { 1 } else if keys > 32 { 32 } else { keys }
}

/// `softmax(q·kᵀ · scale + mask)·v` for a block of query rows of one head: `head_dim` threads.
/// Tiles of keys and values go through workgroup memory once for all the block's rows, with a
/// running max and sum a row (flash attention's order). With `causal`, query row `i` of `seq`
/// sees keys `0..=total − seq + i`.
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
    let rows = comptime![rows_per_cube(head_dim) as usize];
    let keys = comptime![keys_per_tile(head_dim) as usize];
    let kv_heads = comptime![(heads / group) as usize];
    let group = comptime![group as usize];
    let hd = comptime![head_dim as usize];
    let heads = comptime![heads as usize];
    let first = CUBE_POS_X as usize * rows;
    let h = CUBE_POS_Y as usize;
    let b = CUBE_POS_Z as usize;
    let d = UNIT_POS as usize;
    let seq = seq as usize;
    let total = total as usize;
    let base = (b * kv_heads + h / group) * total * hd;
    let mut qs = Shared::<[f32]>::new_slice(rows * hd);
    let mut acc = Shared::<[f32]>::new_slice(rows * hd);
    let mut kt = Shared::<[f32]>::new_slice(keys * hd);
    let mut vt = Shared::<[f32]>::new_slice(keys * hd);
    let mut scores = Shared::<[f32]>::new_slice(rows * keys);
    let mut row_max = Shared::<[f32]>::new_slice(rows);
    let mut row_sum = Shared::<[f32]>::new_slice(rows);
    let mut correction = Shared::<[f32]>::new_slice(rows);
    // Keys the block's last row sees (rows past `seq` see none).
    let mut last = first + rows;
    if last > seq {
        last = seq;
    }
    let mut reach = total;
    if comptime![causal] {
        reach = total - seq + last;
    }
    for r in 0..rows {
        let i = first + r;
        let mut value = 0.0f32;
        if i < seq {
            value = q[((b * heads + h) * seq + i) * hd + d];
        }
        qs[r * hd + d] = value;
        acc[r * hd + d] = 0.0f32;
    }
    if d < rows {
        row_max[d] = f32::new(-1.0e30f32);
        row_sum[d] = 0.0f32;
    }
    sync_cube();
    let mut start = 0usize;
    while start < reach {
        let mut n = reach - start;
        if n > keys {
            n = keys;
        }
        for j in 0..n {
            kt[j * hd + d] = k[base + (start + j) * hd + d];
            vt[j * hd + d] = v[base + (start + j) * hd + d];
        }
        sync_cube();
        let mut p = d;
        while p < rows * keys {
            let r = p / keys;
            let j = p % keys;
            let mut s = 0.0f32;
            if j < n {
                for e in 0..hd {
                    s += qs[r * hd + e] * kt[j * hd + e];
                }
            }
            scores[p] = s * scale;
            p += hd;
        }
        sync_cube();
        if d < rows {
            // Row d of the block: which keys of the tile it sees, the new max, the weights.
            let i = first + d;
            let mut sees = 0usize;
            if i < seq {
                sees = total;
                if comptime![causal] {
                    sees = total - seq + i + 1;
                }
            }
            let mut m = row_max[d];
            for j in 0..n {
                if start + j < sees && scores[d * keys + j] > m {
                    m = scores[d * keys + j];
                }
            }
            let c = (row_max[d] - m).exp();
            let mut sum = row_sum[d] * c;
            for j in 0..n {
                let mut w = 0.0f32;
                if start + j < sees {
                    w = (scores[d * keys + j] - m).exp();
                }
                scores[d * keys + j] = w;
                sum += w;
            }
            row_max[d] = m;
            row_sum[d] = sum;
            correction[d] = c;
        }
        sync_cube();
        for r in 0..rows {
            let mut a = acc[r * hd + d] * correction[r];
            for j in 0..n {
                a += scores[r * keys + j] * vt[j * hd + d];
            }
            acc[r * hd + d] = a;
        }
        sync_cube();
        start += keys;
    }
    for r in 0..rows {
        let i = first + r;
        if i < seq {
            out[((b * heads + h) * seq + i) * hd + d] = acc[r * hd + d] / row_sum[r];
        }
    }
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
                CubeCount::Static(seq.div_ceil(rows_per_cube(head_dim as u32) as usize) as u32, heads as u32, batch as u32),
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

/// Whether [`grouped_attention`] serves these tensors: fused GPU kernels on
/// (`gpu_decode::enabled`), f32 on a GPU device, no gradient kept, a head 8 to 256 wide (a thread
/// a value; at least as many threads as a block's rows), at least as many keys as queries.
pub fn serves(q: &Tensor<4>, k: &Tensor<4>) -> bool {
    let [_, heads, seq, head_dim] = q.dims();
    let [_, kv_heads, total, _] = k.dims();
    super::gpu_decode::enabled()
        && !q.is_autodiff()
        && !k.is_autodiff()
        && !crate::device::runs_on_cpu(&q.device())
        && q.dtype() == DType::F32
        && (8..=256).contains(&head_dim)
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

    fn gpu() -> Option<Device> {
        crate::device::test_gpu()
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
        // Heads 16 wide (blocks of 8 rows, tiles of 32 keys) and 64 (8 rows, 16 keys) and 128
        // (4 rows, 8 keys).
        for (seq, total, causal, hd) in [(5, 300, true, 16), (37, 37, true, 16), (1, 40, false, 16), (21, 90, true, 64), (9, 9, true, 128)] {
            let (q, k, v) = (random([2, 6, seq, hd], 1, &device), random([2, 2, total, hd], 2, &device), random([2, 2, total, hd], 3, &device));
            let want = super::super::attention_with_host_mask(q.clone(), super::super::repeat_kv(k.clone(), 3), super::super::repeat_kv(v.clone(), 3), causal);
            let got = grouped_attention(q, k, v, causal);
            let (got, want) = (got.into_data().try_to_vec::<f32>().unwrap(), want.into_data().try_to_vec::<f32>().unwrap());
            let diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff < 1e-5, "seq {seq}, total {total}, head {hd}: max |Δ| = {diff}");
        }
        // The comparison can fail: without the mask, the prompt's rows see later keys.
        let (q, k, v) = (random([1, 2, 8, 16], 4, &device), random([1, 2, 8, 16], 5, &device), random([1, 2, 8, 16], 6, &device));
        let masked = grouped_attention(q.clone(), k.clone(), v.clone(), true).into_data().try_to_vec::<f32>().unwrap();
        let open = grouped_attention(q, k, v, false).into_data().try_to_vec::<f32>().unwrap();
        assert!(masked.iter().zip(&open).any(|(a, b)| (a - b).abs() > 1e-3));
    }
}
