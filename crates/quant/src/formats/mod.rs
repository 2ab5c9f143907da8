//! One file per format: its block layout, its decoder (the values of ggml's `dequantize_row_*`)
//! and its portable dot product with f32 activations. The registry (`format.rs`) dispatches to
//! them; the CPU plumbing that runs them over rows and threads is `kernels.rs`, and the
//! architecture-specific versions are `simd128.rs` (WebAssembly) and the AVX-512 expansion in
//! `kernels.rs`.
//!
//! A dot product keeps sixteen f32 lanes so that the compiler emits vector code (Rust never
//! reorders float sums on its own); `FMA` says whether the build fuses multiply and add.

pub(crate) mod float;
pub(crate) mod iq1_m;
pub(crate) mod iq1_s;
pub(crate) mod iq2_s;
pub(crate) mod iq2_xs;
pub(crate) mod iq2_xxs;
mod iq_grids;
mod iq_lattice;
pub(crate) mod iq3_s;
pub(crate) mod iq3_xxs;
pub(crate) mod iq4_nl;
pub(crate) mod iq4_xs;
pub(crate) mod mxfp4;
pub(crate) mod q2_k;
pub(crate) mod q3_k;
pub(crate) mod q4_0;
pub(crate) mod q4_1;
pub(crate) mod q4_k;
pub(crate) mod q5_0;
pub(crate) mod q5_1;
pub(crate) mod q5_k;
pub(crate) mod q6_k;
pub(crate) mod q8_0;
pub(crate) mod tq1_0;
pub(crate) mod tq2_0;

use crate::Format;

// A block's fields (`crate::block`), named here for every format.
pub use crate::block::{IQ4_LEVELS, scale_min_k4};
pub(crate) use crate::block::{LANES, scale};

/// `a·b + c`, fused where the build has FMA (a plain `mul_add` without it is a slow libm call).
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// The dot product of a Q4_K row (`FIFTH` false) or a Q5_K row (`FIFTH` true: each nibble's fifth
/// bit from the 32 bytes `qh` after the scales, bit `2c` of byte l for element l of run c's low
/// sub-block, `2c + 1` for its high one) with `x`. The minimums multiply Σx per 32
/// (`block_sums`), summed once per x row by the caller.
#[inline(always)]
pub(crate) fn dot_k4<const FMA: bool, const FIFTH: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let (block_bytes, values_at) = if FIFTH { (176, 48) } else { (144, 16) };
    let mut acc = [0f32; LANES];
    let mut minimum = 0f32;
    for (k, (b, xb)) in row.chunks_exact(block_bytes).zip(x.chunks_exact(256)).enumerate() {
        let (d, dmin) = (scale(b, 0), scale(b, 2));
        let scales = &b[4..16];
        let qh = &b[16..values_at];
        for chunk in 0..4 {
            let q = &b[values_at + 32 * chunk..values_at + 32 * (chunk + 1)];
            let x_lo = &xb[64 * chunk..64 * chunk + 32];
            let x_hi = &xb[64 * chunk + 32..64 * chunk + 64];
            let (sc1, m1) = scale_min_k4(2 * chunk, scales);
            let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
            let (mut p1, mut p2) = ([0f32; LANES], [0f32; LANES]);
            for g in 0..2 {
                for l in 0..LANES {
                    let byte = q[g * LANES + l];
                    let (mut v1, mut v2) = (byte & 0x0f, byte >> 4);
                    if FIFTH {
                        let high = qh[g * LANES + l] >> (2 * chunk);
                        v1 |= (high & 1) << 4;
                        v2 |= (high & 2) << 3;
                    }
                    p1[l] = madd::<FMA>(v1 as f32, x_lo[g * LANES + l], p1[l]);
                    p2[l] = madd::<FMA>(v2 as f32, x_hi[g * LANES + l], p2[l]);
                }
            }
            let (d1, d2) = (d * sc1 as f32, d * sc2 as f32);
            for l in 0..LANES {
                acc[l] = madd::<FMA>(d1, p1[l], acc[l]);
                acc[l] = madd::<FMA>(d2, p2[l], acc[l]);
            }
            let sums = &block_sums[8 * k + 2 * chunk..];
            minimum = madd::<FMA>(dmin * m1 as f32, sums[0], minimum);
            minimum = madd::<FMA>(dmin * m2 as f32, sums[1], minimum);
        }
    }
    acc.iter().sum::<f32>() - minimum
}

/// The dot product of a row in any format with `x`, through its decoder: each block (or run of
/// 32 plain floats) is decoded to the stack and multiplied lane by lane. The formats with a
/// kernel of their own fold the scales in instead; this serves the rest, whose decode cost is a
/// small share of reading the row.
#[inline(always)]
pub(crate) fn dot_decoded<const FMA: bool>(format: Format, row: &[u8], x: &[f32]) -> f32 {
    let group = format.block_elements().max(32);
    let mut acc = [0f32; LANES];
    let mut values = [0f32; 256];
    let values = &mut values[..group];
    for (b, xb) in row.chunks_exact(format.bytes_for(group)).zip(x.chunks_exact(group)) {
        format.decode(b, values);
        for (v, xv) in values.chunks_exact(LANES).zip(xb.chunks_exact(LANES)) {
            for l in 0..LANES {
                acc[l] = madd::<FMA>(v[l], xv[l], acc[l]);
            }
        }
    }
    acc.iter().sum()
}

