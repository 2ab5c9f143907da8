//! IQ4_NL: blocks of 32 — an f16 scale `d`, then 16 bytes of nibbles laid out as Q4_0's, each
//! an index into the sixteen non-linear levels `IQ4_LEVELS`; value `d·level`. 4.5 bits a weight.

use super::{IQ4_LEVELS, LANES, madd, scale};

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = scale(b, 0);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[2..18].iter().enumerate() {
            lo[j] = d * IQ4_LEVELS[(q & 0x0f) as usize] as f32;
            hi[j] = d * IQ4_LEVELS[(q >> 4) as usize] as f32;
        }
    }
}

/// The levels as f32, so that a lookup is one load.
const LEVELS_F32: [f32; 16] = {
    let mut out = [0f32; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = IQ4_LEVELS[i] as f32;
        i += 1;
    }
    out
};

/// `Σ d·level·x` over 16 bytes of nibbles (elements 0..16 low, 16..32 high) and their 32 x values,
/// into `acc`: the inner step of IQ4_NL's dot and of each IQ4_XS sub-block.
#[inline(always)]
pub(crate) fn dot_nibbles<const FMA: bool>(acc: &mut [f32; LANES], d: f32, q: &[u8], x: &[f32]) {
    let mut p = [0f32; LANES];
    for l in 0..LANES {
        p[l] = madd::<FMA>(LEVELS_F32[(q[l] & 0x0f) as usize], x[l], p[l]);
        p[l] = madd::<FMA>(LEVELS_F32[(q[l] >> 4) as usize], x[LANES + l], p[l]);
    }
    for l in 0..LANES {
        acc[l] = madd::<FMA>(d, p[l], acc[l]);
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: the FMA kernels run only at the AVX2 level and above (`kernels::dot_rows`),
        // and the wide ones only at AVX-512.
        return unsafe { if crate::kernels::wide_lanes() { crate::avx512::dot_iq4_nl(row, x) } else { crate::avx2::dot_iq4_nl(row, x) } };
    }
    dot_portable::<FMA>(row, x)
}

/// The dot product without the arch files (the reference the AVX2 version is tested against).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
pub(crate) fn dot_portable<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (b, xb) in row.chunks_exact(18).zip(x.chunks_exact(32)) {
        dot_nibbles::<FMA>(&mut acc, scale(b, 0), &b[2..18], xb);
    }
    acc.iter().sum()
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use crate::simd128::dot_iq4_nl as dot;
