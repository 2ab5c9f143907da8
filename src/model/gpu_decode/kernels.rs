//! The CubeCL kernels of a GPU decode step (one token, batch 1). Each reads the stored weights
//! through the same block decoder as the stored-weight products (`quant::gpu`), and each does a
//! whole piece of a layer that burn's tensor ops spread over several dispatches.

use crate::gpu_reduce::{workgroup_argmax, workgroup_max_f32, workgroup_sum};
use crate::quant::gpu::{LANES, ROWS_PER_CUBE, word_dot};
use cubecl::prelude::*;

/// What [`project_kernel`] does with each row's sum. The rows are those of matrix `a`, then `b`,
/// then `c` (`STACKED`: q, k and v as one output, with their biases), or the rows of `a` and `b`
/// side by side (`GATED`), or of `a` alone added to the output (`RESIDUAL`).
pub const STACKED: u32 = 0;
/// `out[r] = silu(a_r · x) · (b_r · x)`: gate and up with SwiGLU.
pub const GATED: u32 = 1;
/// `out[r] += a_r · x`: a projection and its residual add.
pub const RESIDUAL: u32 = 2;

/// Threads a workgroup of [`project_kernel`] has.
const THREADS: usize = (LANES * ROWS_PER_CUBE) as usize;

/// Attention scores a workgroup keeps at once, in workgroup memory.
pub const SCORE_CHUNK: u32 = 256;

/// Threads of the argmax workgroup (its reduction tree has 8 levels).
pub const ARGMAX_THREADS: u32 = 256;
const _: () = assert!(ARGMAX_THREADS == 1 << 8 && THREADS == 1 << 7 && LANES == 1 << 5);

/// Row `r`'s partial sum over this lane's words (every 32nd word, as the matrix-vector kernel).
#[cube]
#[allow(clippy::too_many_arguments)]
fn lane_dot(
    words: &[u32],
    rows: usize,
    r: usize,
    value_words: usize,
    scale_words: usize,
    x: &[f32],
    g: &[f32],
    lane: usize,
    #[comptime] format: u32,
    #[comptime] scaled: bool,
) -> f32 {
    let mut acc = 0.0f32;
    let mut w = lane;
    while w < value_words {
        acc += word_dot(words, rows, r, w, value_words, scale_words, x, g, 0usize, format, scaled);
        w += LANES as usize;
    }
    acc
}

/// One or more weight products from the same input, with what comes before and after them:
/// the RMSNorm of the input folded in (`normed`: `x / rms(x) · norm`), SwiGLU, or the residual add
/// (`mode`). 32 threads a row, 4 rows a workgroup, as the matrix-vector kernel.
///
/// With `has_extra`, each output column `k` also gets `Σ_j extra_in[j] · extra[j, k]` (`extra`:
/// `[extra_rows, columns]`): the LoRA adapters' up-products (`extra_in` = x·A from
/// [`lora_down_kernel`], `extra` = s·B of each adapted matrix in its columns) and the biases (a
/// row whose input is a constant 1). The columns are the output rows (`STACKED`, `RESIDUAL`), or
/// gate's then up's (`GATED`). Eight storage buffers: WebGPU's guaranteed limit a shader.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn project_kernel(
    x: &[f32],
    norm: &[f32],
    a: &[u32],
    b: &[u32],
    c: &[u32],
    extra_in: &[f32],
    extra: &[f32],
    out: &mut [f32],
    rows_a: u32,
    rows_b: u32,
    rows_c: u32,
    words_a: u32,
    scales_a: u32,
    words_b: u32,
    scales_b: u32,
    words_c: u32,
    scales_c: u32,
    cols: u32,
    out_offset: u32,
    extra_rows: u32,
    eps: f32,
    #[comptime] format_a: u32,
    #[comptime] format_b: u32,
    #[comptime] format_c: u32,
    #[comptime] mode: u32,
    #[comptime] normed: bool,
    #[comptime] has_extra: bool,
) {
    let r = ((CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X) * ROWS_PER_CUBE + UNIT_POS_Y) as usize;
    let lane = UNIT_POS_X as usize;
    let unit = UNIT_POS as usize;
    let rows_a = rows_a as usize;
    let rows_b = rows_b as usize;
    let rows_c = rows_c as usize;
    // (The reductions are unrolled: CubeCL 0.11 failed to compile them as a `while` loop that
    // halves its stride, "expected cube.ptr, found cube.index".)
    let mut partial = Shared::<[f32]>::new_slice(THREADS);
    let mut partial_b = Shared::<[f32]>::new_slice(THREADS);
    let mut inv = 1.0f32;
    if comptime![normed] {
        // 1 / √(mean(x²) + eps), summed by the whole workgroup.
        let cols = cols as usize;
        let mut sq = 0.0f32;
        let mut i = unit;
        while i < cols {
            sq += x[i] * x[i];
            i += THREADS;
        }
        let total = workgroup_sum(&mut partial, sq, comptime![THREADS as u32]);
        inv = 1.0f32 / (total / f32::cast_from(cols as u32) + eps).sqrt();
    }
    let mut sum_a = 0.0f32;
    let mut sum_b = 0.0f32;
    let mut total_rows = rows_a;
    if comptime![mode == STACKED] {
        total_rows = rows_a + rows_b + rows_c;
        if r < rows_a {
            sum_a = lane_dot(a, rows_a, r, words_a as usize, scales_a as usize, x, norm, lane, format_a, normed);
        } else if r < rows_a + rows_b {
            sum_a = lane_dot(b, rows_b, r - rows_a, words_b as usize, scales_b as usize, x, norm, lane, format_b, normed);
        } else if r < total_rows {
            sum_a = lane_dot(c, rows_c, r - rows_a - rows_b, words_c as usize, scales_c as usize, x, norm, lane, format_c, normed);
        }
    } else if r < rows_a {
        sum_a = lane_dot(a, rows_a, r, words_a as usize, scales_a as usize, x, norm, lane, format_a, normed);
        if comptime![mode == GATED] {
            sum_b = lane_dot(b, rows_b, r, words_b as usize, scales_b as usize, x, norm, lane, format_b, normed);
        }
    }
    // Each row's sums over its 32 lanes.
    partial[unit] = sum_a;
    partial_b[unit] = sum_b;
    sync_cube();
    #[unroll]
    for level in 0..5u32 {
        let stride = comptime![(LANES >> (level + 1)) as usize];
        if lane < stride {
            partial[unit] += partial[unit + stride];
            if comptime![mode == GATED] {
                partial_b[unit] += partial_b[unit + stride];
            }
        }
        sync_cube();
    }
    let mut y_a = partial[unit - lane] * inv;
    let mut y_b = partial_b[unit - lane] * inv;
    if lane == 0 && r < total_rows {
        if comptime![has_extra] {
            let mut columns = total_rows;
            if comptime![mode == GATED] {
                columns = 2 * rows_a;
            }
            for j in 0..extra_rows as usize {
                let t = extra_in[j];
                y_a += t * extra[j * columns + r];
                if comptime![mode == GATED] {
                    y_b += t * extra[j * columns + rows_a + r];
                }
            }
        }
        let o = out_offset as usize + r;
        if comptime![mode == STACKED] {
            out[o] = y_a;
        } else if comptime![mode == GATED] {
            out[o] = y_a / (1.0f32 + (-y_a).exp()) * y_b;
        } else {
            out[o] += y_a;
        }
    }
}

/// `t[j] = Σ_c aᵀ[j, c] · x̂[c]` for the `lora_rows` rows of a group's stacked LoRA `A`s (transposed,
/// `[lora_rows, cols]`), x̂ being `x`, or its RMSNorm with `normed`; and `t[j] = 1` past them (the
/// biases' row of [`project_kernel`]'s extra product). A workgroup of 128 threads a row.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn lora_down_kernel(x: &[f32], norm: &[f32], a_t: &[f32], t: &mut [f32], cols: u32, lora_rows: u32, eps: f32, #[comptime] normed: bool) {
    let j = CUBE_POS_X as usize;
    let unit = UNIT_POS as usize;
    let cols = cols as usize;
    let mut partial = Shared::<[f32]>::new_slice(THREADS);
    let mut inv = 1.0f32;
    let mut acc = 0.0f32;
    let mut sq = 0.0f32;
    let mut i = unit;
    while i < cols {
        let v = x[i];
        sq += v * v;
        if j < lora_rows as usize {
            let mut scaled = v;
            if comptime![normed] {
                scaled *= norm[i];
            }
            acc += a_t[j * cols + i] * scaled;
        }
        i += THREADS;
    }
    if comptime![normed] {
        let total = workgroup_sum(&mut partial, sq, comptime![THREADS as u32]);
        inv = 1.0f32 / (total / f32::cast_from(cols as u32) + eps).sqrt();
    }
    let total = workgroup_sum(&mut partial, acc, comptime![THREADS as u32]);
    if unit == 0 {
        if j < lora_rows as usize {
            t[j] = total * inv;
        } else {
            t[j] = 1.0f32;
        }
    }
}

/// RoPE on q and k for position `position[0]`, and k and v written into the cache there (the
/// position lives on the device, moved on by the argmax kernel: as a scalar it would be a new
/// uniform written each token, and enough writes make wgpu submit): one thread a
/// rotated pair, then one a copied value. q stays in `qkv` (rotated in place); the cache is
/// `[kv_heads, capacity, head_dim]` a layer, allocated once for the session.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn rope_cache_kernel(
    qkv: &mut [f32],
    cos: &[f32],
    sin: &[f32],
    k_cache: &mut [f32],
    v_cache: &mut [f32],
    position: &[u32],
    capacity: u32,
    #[comptime] heads: u32,
    #[comptime] kv_heads: u32,
    #[comptime] head_dim: u32,
) {
    let t = ABSOLUTE_POS;
    let half = comptime![(head_dim / 2) as usize];
    let head_dim = comptime![head_dim as usize];
    let heads = comptime![heads as usize];
    let kv_heads = comptime![kv_heads as usize];
    let pos = position[0] as usize;
    let capacity = capacity as usize;
    let rotated = (heads + kv_heads) * half;
    let row = pos * head_dim;
    if t < rotated {
        // q's heads, then k's: both are runs of head_dim values in qkv.
        let h = t / half;
        let i = t % half;
        let base = h * head_dim;
        let x1 = qkv[base + i];
        let x2 = qkv[base + i + half];
        let o1 = x1 * cos[row + i] - x2 * sin[row + i];
        let o2 = x2 * cos[row + i + half] + x1 * sin[row + i + half];
        if h < heads {
            qkv[base + i] = o1;
            qkv[base + i + half] = o2;
        } else {
            let at = ((h - heads) * capacity + pos) * head_dim;
            k_cache[at + i] = o1;
            k_cache[at + i + half] = o2;
        }
    } else if t < rotated + kv_heads * head_dim {
        let j = t - rotated;
        let at = ((j / head_dim) * capacity + pos) * head_dim + j % head_dim;
        v_cache[at] = qkv[(heads + kv_heads) * head_dim + j];
    }
}

/// `softmax(q·kᵀ · scale)·v` for one query over the `position[0] + 1` cached positions, a workgroup a query
/// head (head_dim threads, one an output value; grouped heads read their KV head in place). The
/// scores go through workgroup memory in chunks of [`SCORE_CHUNK`] with a running max and sum,
/// so any context length fits.
#[cube(launch_unchecked)]
pub fn attention_kernel(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    out: &mut [f32],
    position: &[u32],
    capacity: u32,
    scale: f32,
    #[comptime] group: u32,
    #[comptime] head_dim: u32,
) {
    let h = CUBE_POS_X as usize;
    let d = UNIT_POS as usize;
    let head_dim = comptime![head_dim as usize];
    let chunk = comptime![SCORE_CHUNK as usize];
    let len = position[0] as usize + 1;
    let base = (h / comptime![group as usize]) * capacity as usize * head_dim;
    let mut qs = Shared::<[f32]>::new_slice(head_dim);
    let mut scores = Shared::<[f32]>::new_slice(chunk);
    qs[d] = q[h * head_dim + d];
    sync_cube();
    let mut max = f32::new(-1.0e30f32);
    let mut sum = 0.0f32;
    let mut acc = 0.0f32;
    let mut start = 0usize;
    while start < len {
        let n = if len - start < chunk { len - start } else { chunk };
        let mut j = d;
        while j < n {
            let row = base + (start + j) * head_dim;
            let mut s = 0.0f32;
            for e in 0..head_dim {
                s += qs[e] * k_cache[row + e];
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
            acc += p * v_cache[base + (start + j) * head_dim + d];
        }
        max = chunk_max;
        sync_cube();
        start += chunk;
    }
    out[h * head_dim + d] = acc / sum;
}

/// The index of the largest of `n` values, the first on ties (as the host's `argmax`), into
/// `out[0]`: one workgroup. As the step's last kernel it also moves `position[0]` on by one, so
/// a step uploads nothing (on WebGPU each upload costs a submit).
#[cube(launch_unchecked)]
pub fn argmax_kernel(values: &[f32], out: &mut [i32], position: &mut [u32], n: u32) {
    let unit = UNIT_POS as usize;
    let threads = comptime![ARGMAX_THREADS as usize];
    let n = n as usize;
    let mut best = f32::new(-3.4e38f32);
    let mut best_at = n;
    let mut i = unit;
    while i < n {
        if best_at == n || values[i] > best {
            best = values[i];
            best_at = i;
        }
        i += threads;
    }
    let mut top = Shared::<[f32]>::new_slice(threads);
    let mut top_at = Shared::<[u32]>::new_slice(threads);
    let id = workgroup_argmax(&mut top, &mut top_at, best, best_at as u32, n as u32, ARGMAX_THREADS);
    if unit == 0 {
        out[0] = id as i32;
        position[0] += 1u32;
    }
}

/// Threads of the sampling workgroup (its reduction trees have 8 levels).
pub const SAMPLE_THREADS: u32 = 256;

/// A 32-bit mixer (the "lowbias32" constants): the sampler's counter-based random numbers, as
/// `sampling::mix32` on the host.
#[cube]
pub fn mix32(x: u32) -> u32 {
    let mut x = x;
    x ^= x >> 16u32;
    x *= 0x7feb_352du32;
    x ^= x >> 15u32;
    x *= 0x846c_a68bu32;
    x ^ (x >> 16u32)
}

/// A float's place in the total order as an unsigned integer (`sampling::order_key`).
#[cube]
fn order_key(v: f32) -> u32 {
    let bits = u32::reinterpret(v);
    let mut key = bits | 0x8000_0000u32;
    if bits >> 31u32 == 1u32 {
        key = bits ^ 0xffff_ffffu32;
    }
    key
}

/// Token `i`'s logit after the repetition penalty (HF's: divided if positive, multiplied if not,
/// for every token in `seen`, a bit a token).
#[cube]
fn penalized(logits: &[f32], seen: &mut [u32], i: usize, penalty: f32) -> f32 {
    let l = logits[i];
    let mut out = l;
    if (seen[i / 32] >> (i % 32) as u32) & 1u32 == 1u32 {
        if l > 0.0f32 {
            out = l / penalty;
        } else {
            out = l * penalty;
        }
    }
    out
}

/// The Gumbel noise of `token` in the draw whose key is `draw_key` (`sampling::gumbel`): `u` an
/// odd multiple of 2⁻²⁴, exact in f32 on every device, then `-ln(-ln u)`.
#[cube]
fn gumbel(draw_key: u32, token: u32) -> f32 {
    let h = mix32(draw_key ^ mix32(token));
    let u = f32::cast_from((h >> 9u32) * 2u32 + 1u32) * 0.000000059604645f32;
    -(-(u.ln())).ln()
}

/// The host's `Sampler::sample` on the device, one workgroup: the repetition penalty over the
/// tokens seen, then (unless `greedy`) top-k and top-p as a floor on the logits' order keys,
/// each found bit by bit from the top (the largest floor that keeps at least k tokens, then at
/// least `top_p` of the mass), then Gumbel-max over the tokens at or above the floor, the first
/// on ties. The pick goes to `out[0]` and into `seen`; `state` (position, draw) moves on by one,
/// so a step uploads nothing. `weights` is scratch for the vocabulary's softmax weights.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn sample_kernel(
    logits: &[f32],
    seen: &mut [u32],
    weights: &mut [f32],
    out: &mut [i32],
    state: &mut [u32],
    n: u32,
    inv_temperature: f32,
    top_k: u32,
    top_p: f32,
    penalty: f32,
    seed_low: u32,
    seed_high: u32,
    #[comptime] greedy: bool,
    #[comptime] use_top_k: bool,
    #[comptime] use_top_p: bool,
) {
    let unit = UNIT_POS as usize;
    let threads = comptime![SAMPLE_THREADS as usize];
    let n = n as usize;
    let mut sums = Shared::<[f32]>::new_slice(threads);
    let mut counts = Shared::<[u32]>::new_slice(threads);

    let mut floor = 0u32;
    let mut max = f32::new(-3.4e38f32);
    if !comptime![greedy] {
        let mut i = unit;
        while i < n {
            let l = penalized(logits, seen, i, penalty);
            if l > max {
                max = l;
            }
            i += threads;
        }
        max = workgroup_max_f32(&mut sums, max, SAMPLE_THREADS);

        if comptime![use_top_k] {
            for bit in 0..32u32 {
                let candidate = floor | (0x8000_0000u32 >> bit);
                let mut count = 0u32;
                let mut i = unit;
                while i < n {
                    if order_key(penalized(logits, seen, i, penalty)) >= candidate {
                        count += 1u32;
                    }
                    i += threads;
                }
                if workgroup_sum(&mut counts, count, SAMPLE_THREADS) >= top_k {
                    floor = candidate;
                }
            }
        }

        let mut mass = 0.0f32;
        let mut i = unit;
        while i < n {
            let l = penalized(logits, seen, i, penalty);
            let mut w = 0.0f32;
            if order_key(l) >= floor {
                w = ((l - max) * inv_temperature).exp();
            }
            weights[i] = w;
            mass += w;
            i += threads;
        }
        if comptime![use_top_p] {
            let target = top_p * workgroup_sum(&mut sums, mass, SAMPLE_THREADS);
            let mut kept = 0u32;
            for bit in 0..32u32 {
                let candidate = kept | (0x8000_0000u32 >> bit);
                let mut above = 0.0f32;
                let mut i = unit;
                while i < n {
                    if order_key(penalized(logits, seen, i, penalty)) >= candidate {
                        above += weights[i];
                    }
                    i += threads;
                }
                if workgroup_sum(&mut sums, above, SAMPLE_THREADS) >= target {
                    kept = candidate;
                }
            }
            if kept > floor {
                floor = kept;
            }
        }
    }

    let draw_key = mix32(mix32(mix32(seed_high ^ 0x9e37_79b9u32) ^ seed_low) ^ state[1]);
    let mut best = f32::new(-3.4e38f32);
    let mut best_at = n;
    let mut i = unit;
    while i < n {
        let l = penalized(logits, seen, i, penalty);
        if order_key(l) >= floor {
            let mut score = l;
            if !comptime![greedy] {
                score = (l - max) * inv_temperature + gumbel(draw_key, i as u32);
            }
            if best_at == n || score > best {
                best = score;
                best_at = i;
            }
        }
        i += threads;
    }
    let id = workgroup_argmax(&mut sums, &mut counts, best, best_at as u32, n as u32, SAMPLE_THREADS);
    if unit == 0 {
        out[0] = id as i32;
        seen[(id / 32u32) as usize] |= 1u32 << (id % 32u32);
        state[0] += 1u32;
        state[1] += 1u32;
    }
}

/// A layer's keys or values from burn's cache (`[kv_heads, len, head_dim]`, contiguous) into the
/// session's cache (`[kv_heads, capacity, head_dim]`): once, after the prompt's forward pass.
#[cube(launch_unchecked)]
pub fn import_cache_kernel(src: &[f32], dst: &mut [f32], total: u32, len: u32, capacity: u32, #[comptime] head_dim: u32) {
    let t = ABSOLUTE_POS;
    let head_dim = comptime![head_dim as usize];
    if t < total as usize {
        let e = t % head_dim;
        let p = (t / head_dim) % len as usize;
        let kh = t / (head_dim * len as usize);
        dst[(kh * capacity as usize + p) * head_dim + e] = src[t];
    }
}
