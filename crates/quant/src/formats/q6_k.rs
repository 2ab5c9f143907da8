//! Q6_K: super-blocks of 256 — 128 bytes of low nibbles `ql`, 64 bytes of 2-bit high parts
//! `qh`, sixteen i8 scales (one per 16 values), then f16 `d` last; value `d·sc·(q − 32)`. Two
//! halves of 128 values: in a half, byte l of the low nibbles and of the high parts gives values
//! l, l+32, l+64 and l+96. 6.5625 bits a weight.

use super::scale;
// The portable dot only: WebAssembly builds with SIMD128 take simd128.rs's.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
use super::{LANES, madd};

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(210).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 208);
        for h in 0..2 {
            let (ql, qh, sc) = (&b[64 * h..64 * h + 64], &b[128 + 32 * h..160 + 32 * h], &b[192 + 8 * h..200 + 8 * h]);
            let y = &mut y[128 * h..128 * h + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

/// Four 16-lane steps per 16 bytes, each with its own scale.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (b, xb) in row.chunks_exact(210).zip(x.chunks_exact(256)) {
        let d = scale(b, 208);
        for h in 0..2 {
            let (ql, qh, sc) = (&b[64 * h..64 * h + 64], &b[128 + 32 * h..160 + 32 * h], &b[192 + 8 * h..200 + 8 * h]);
            let xh = &xb[128 * h..128 * h + 128];
            for is in 0..2 {
                let at = is * LANES;
                let (lo, lo2, hi) = (&ql[at..at + LANES], &ql[at + 32..at + 32 + LANES], &qh[at..at + LANES]);
                // One clean loop per run of 16, so that each vectorizes.
                let scale_of = |k: usize| d * (sc[is + 2 * k] as i8) as f32;
                let xs = |k: usize| &xh[32 * k + at..32 * k + at + LANES];
                run::<FMA>(&mut acc, xs(0), scale_of(0), |l| (lo[l] & 0x0f) | ((hi[l] & 3) << 4));
                run::<FMA>(&mut acc, xs(1), scale_of(1), |l| (lo2[l] & 0x0f) | (((hi[l] >> 2) & 3) << 4));
                run::<FMA>(&mut acc, xs(2), scale_of(2), |l| (lo[l] >> 4) | (((hi[l] >> 4) & 3) << 4));
                run::<FMA>(&mut acc, xs(3), scale_of(3), |l| (lo2[l] >> 4) | (((hi[l] >> 6) & 3) << 4));
            }
        }
    }
    acc.iter().sum()
}

/// `acc += s · Σ (q(l) − 32)·x[l]` over one run of 16 values.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
fn run<const FMA: bool>(acc: &mut [f32; LANES], x: &[f32], s: f32, q: impl Fn(usize) -> u8) {
    let mut p = [0f32; LANES];
    for l in 0..LANES {
        p[l] = madd::<FMA>((q(l) as i32 - 32) as f32, x[l], p[l]);
    }
    for l in 0..LANES {
        acc[l] = madd::<FMA>(s, p[l], acc[l]);
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use crate::simd128::dot_q6_k as dot;
