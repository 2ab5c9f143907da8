//! IQ4_XS: super-blocks of 256 — f16 `d`, a u16 of high scale bits, four bytes of low scale
//! nibbles, then 128 bytes of IQ4_NL nibbles (eight sub-blocks of 32, each laid out as an IQ4_NL
//! block's); sub-block i's 6-bit scale is nibble i of the four bytes with bits 2i..2i+2 of the
//! u16 above it, biased by 32; value `d·(scale − 32)·level`. 4.25 bits a weight.

use super::{IQ4_LEVELS, LANES, scale};
pub(crate) use crate::block::sub_block_scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(136).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 0);
        let scales_high = u16::from_le_bytes([b[2], b[3]]);
        let (scales_low, qs) = (&b[4..8], &b[8..136]);
        for (i, (q, y)) in qs.chunks_exact(16).zip(y.chunks_exact_mut(32)).enumerate() {
            let low = (scales_low[i / 2] >> (4 * (i % 2))) & 0x0f;
            let high = ((scales_high >> (2 * i)) & 3) as u8;
            let dl = d * ((low | (high << 4)) as i32 - 32) as f32;
            let (lo, hi) = y.split_at_mut(16);
            for (j, &q) in q.iter().enumerate() {
                lo[j] = dl * IQ4_LEVELS[(q & 0x0f) as usize] as f32;
                hi[j] = dl * IQ4_LEVELS[(q >> 4) as usize] as f32;
            }
        }
    }
}

/// Each sub-block of 32 as an IQ4_NL block with its own scale.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: the FMA kernels run only at the AVX2 level and above (`kernels::dot_rows`),
        // and the wide ones only at AVX-512.
        return unsafe { if crate::kernels::wide_lanes() { crate::avx512::dot_iq4_xs(row, x) } else { crate::avx2::dot_iq4_xs(row, x) } };
    }
    dot_portable::<FMA>(row, x)
}

/// The dot product without the arch files (the reference the AVX2 version is tested against).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
pub(crate) fn dot_portable<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (b, xb) in row.chunks_exact(136).zip(x.chunks_exact(256)) {
        let d = scale(b, 0);
        let scales_high = u16::from_le_bytes([b[2], b[3]]);
        for (i, (q, xs)) in b[8..136].chunks_exact(16).zip(xb.chunks_exact(32)).enumerate() {
            super::iq4_nl::dot_nibbles::<FMA>(&mut acc, d * sub_block_scale(b, scales_high, i), q, xs);
        }
    }
    acc.iter().sum()
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use crate::simd128::dot_iq4_xs as dot;
