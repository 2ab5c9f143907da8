//! IQ4_NL: blocks of 32 — an f16 scale `d`, then 16 bytes of nibbles laid out as Q4_0's, each
//! an index into the sixteen non-linear levels `IQ4_LEVELS`; value `d·level`. 4.5 bits a weight.

use super::{IQ4_LEVELS, scale};

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
