//! Q8_0: blocks of 32 — an f16 scale `d`, then 32 signed bytes `q`; value `d·q`. 8.5 bits a
//! weight.

use super::scale;
// The portable dot only: WebAssembly builds with SIMD128 take simd128.rs's.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use super::{LANES, madd};

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
        let d = scale(b, 0);
        for (y, &q) in y.iter_mut().zip(&b[2..34]) {
            *y = (q as i8) as f32 * d;
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (b, xb) in row.chunks_exact(34).zip(x.chunks_exact(32)) {
        let d = scale(b, 0);
        let q = &b[2..34];
        let mut p = [0f32; LANES];
        for g in 0..2 {
            for l in 0..LANES {
                p[l] = madd::<FMA>(q[g * LANES + l] as i8 as f32, xb[g * LANES + l], p[l]);
            }
        }
        for l in 0..LANES {
            acc[l] = madd::<FMA>(d, p[l], acc[l]);
        }
    }
    acc.iter().sum()
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use crate::simd128::dot_q8_0 as dot;
