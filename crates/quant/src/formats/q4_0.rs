//! Q4_0: blocks of 32 — an f16 scale `d`, then 16 bytes whose low nibbles are elements 0..16
//! and high nibbles elements 16..32; value `d·(q − 8)`. 4.5 bits a weight.

use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
        let d = scale(b, 0);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[2..18].iter().enumerate() {
            lo[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            hi[j] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

/// Q4_0's dot is Q4_1's without the minimum (`q4_1::dot_nibbles`).
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    super::q4_1::dot_nibbles::<FMA, true>(row, x, &[])
}
