//! Q4_K: super-blocks of 256 — f16 `d` and `dmin`, 12 bytes of eight 6-bit (scale, min) pairs
//! (`scale_min_k4`), then 128 bytes of nibbles: each run of 32 bytes holds two sub-blocks of 32,
//! the first in the low nibbles and the second in the high; value `d·sc·q − dmin·m`. 4.5 bits a
//! weight.

use super::{scale, scale_min_k4};

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(144).zip(out.chunks_exact_mut(256)) {
        let (d, dmin) = (scale(b, 0), scale(b, 2));
        let scales = &b[4..16];
        for (chunk, (q, y)) in b[16..144].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * chunk, scales);
            let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                y[l] = d1 * (q[l] & 0x0f) as f32 - m1;
                y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

/// The minimums multiply Σx per 32 (`block_sums`); Q5_K's dot is the same with fifth bits.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    super::dot_k4::<FMA, false>(row, x, block_sums)
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use crate::simd128::dot_q4_k as dot;
