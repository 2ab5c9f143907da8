//! Q4_1: blocks of 32 — an f16 scale `d` and an f16 minimum `m`, then 16 bytes of nibbles laid
//! out as Q4_0's; value `d·q + m`. 5 bits a weight.

use super::scale;
// The portable dot only: WebAssembly builds with SIMD128 take simd128.rs's.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use super::{LANES, madd};

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (scale(b, 0), scale(b, 2));
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[4..20].iter().enumerate() {
            lo[j] = (q & 0x0f) as f32 * d + m;
            hi[j] = (q >> 4) as f32 * d + m;
        }
    }
}

/// `block_sums`: Σx per block of 32, which the minimum multiplies.
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    dot_nibbles::<FMA, false>(row, x, block_sums)
}

/// Q4_0 (`OFFSET`: value `(q − 8)·d`) or Q4_1 (value `q·d + min`, the min times Σx per block).
/// A block's 16 bytes hold elements 0..16 in their low nibbles and 16..32 in their high ones:
/// one 16-lane step each.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn dot_nibbles<const FMA: bool, const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let block_bytes = if OFFSET { 18 } else { 20 };
    let mut acc = [0f32; LANES];
    let mut minimum = 0f32;
    for (k, (b, xb)) in row.chunks_exact(block_bytes).zip(x.chunks_exact(32)).enumerate() {
        let d = scale(b, 0);
        let q = &b[block_bytes - 16..block_bytes];
        let mut p = [0f32; LANES];
        for l in 0..LANES {
            let (lo, hi) = ((q[l] & 0x0f) as i32, (q[l] >> 4) as i32);
            let (lo, hi) = if OFFSET { (lo - 8, hi - 8) } else { (lo, hi) };
            p[l] = madd::<FMA>(lo as f32, xb[l], p[l]);
            p[l] = madd::<FMA>(hi as f32, xb[LANES + l], p[l]);
        }
        for l in 0..LANES {
            acc[l] = madd::<FMA>(d, p[l], acc[l]);
        }
        if !OFFSET {
            minimum = madd::<FMA>(scale(b, 2), block_sums[k], minimum);
        }
    }
    acc.iter().sum::<f32>() + minimum
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use crate::simd128::dot_q4 as dot_nibbles;
