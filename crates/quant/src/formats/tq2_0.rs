//! TQ2_0 (ternary): super-blocks of 256 — 64 bytes of 2-bit codes, then f16 `d`; value
//! `d·(q − 1)`, q in 0..3. Two halves of 128: the field at shift 2l of byte m of a half gives
//! value 32l + m. 2.0625 bits a weight.

use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(66).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 64);
        for h in 0..2 {
            for l in 0..4 {
                for m in 0..32 {
                    let q = (b[32 * h + m] >> (2 * l)) & 3;
                    y[128 * h + 32 * l + m] = (q as i32 - 1) as f32 * d;
                }
            }
        }
    }
}
