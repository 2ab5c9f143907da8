//! Q5_K: super-blocks of 256 — Q4_K's header (f16 `d`, `dmin`, 12 bytes of 6-bit scale/min
//! pairs), then 32 bytes `qh` of fifth bits (bit `2c` of byte l for element l of the low
//! sub-block of run c, bit `2c + 1` for the high one), then Q4_K's 128 bytes of nibbles; value
//! `d·sc·q − dmin·m`, q in 0..32. 5.5 bits a weight.

use super::{scale, scale_min_k4};

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(176).zip(out.chunks_exact_mut(256)) {
        let (d, dmin) = (scale(b, 0), scale(b, 2));
        let scales = &b[4..16];
        let qh = &b[16..48];
        for (chunk, (ql, y)) in b[48..176].chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
            let (sc1, m1) = scale_min_k4(2 * chunk, scales);
            let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
            for l in 0..32 {
                let hi1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let hi2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                y[l] = d1 * ((ql[l] & 0x0f) + hi1) as f32 - m1;
                y[l + 32] = d2 * ((ql[l] >> 4) + hi2) as f32 - m2;
            }
        }
    }
}

/// Q4_K's dot with each nibble's fifth bit from `qh`; the minimums multiply Σx per 32
/// (`block_sums`).
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    super::dot_k4::<FMA, true>(row, x, block_sums)
}
