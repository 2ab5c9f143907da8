//! Q5_1: blocks of 32 — an f16 scale `d` and an f16 minimum `m`, four bytes of fifth bits and
//! 16 bytes of nibbles laid out as Q5_0's; value `d·q + m`, q in 0..32. 6 bits a weight.

use super::q5_0::five_bit;
use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(24).zip(out.chunks_exact_mut(32)) {
        let (d, m) = (scale(b, 0), scale(b, 2));
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for l in 0..16 {
            let (lo, hi) = five_bit(qh, &b[8..24], l);
            y[l] = lo as f32 * d + m;
            y[l + 16] = hi as f32 * d + m;
        }
    }
}

/// `block_sums`: Σx per block of 32, which the minimum multiplies.
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    super::q5_0::dot_five_bit::<FMA, false>(row, x, block_sums)
}
