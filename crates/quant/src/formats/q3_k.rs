//! Q3_K: super-blocks of 256 — 32 bytes `hmask` of high bits, 64 bytes of 2-bit low parts,
//! twelve bytes of sixteen 6-bit scales (biased by 32), then f16 `d`; value `d·(sc − 32)·(q − 4)`
//! where q's third bit is set when the mask bit is *clear* (so the value is `low − 4` then, and
//! `low` otherwise). Two halves of 128 values laid out as Q2_K's; the mask bit of value
//! 128h + 32j + l (l < 32) is bit 4h + j of hmask byte l. 3.4375 bits a weight.

use super::{LANES, madd, scale};

/// The sixteen 6-bit scales: bytes 0..8 give the low nibbles (scales 0..8 from the low halves,
/// 8..16 from the high halves), bytes 8..12 the top two bits (scale i's at bits 2·(i / 4) of
/// byte 8 + i % 4).
fn scales(packed: &[u8]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for (i, s) in out.iter_mut().enumerate() {
        let low = if i < 8 { packed[i] & 0x0f } else { packed[i - 8] >> 4 };
        let high = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = (low | (high << 4)) as i32 - 32;
    }
    out
}

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(110).zip(out.chunks_exact_mut(256)) {
        let (hmask, qs) = (&b[..32], &b[32..96]);
        let sc = scales(&b[96..108]);
        let d = scale(b, 108);
        for h in 0..2 {
            let q = &qs[32 * h..32 * h + 32];
            for j in 0..4 {
                let bit = 1u8 << (4 * h + j);
                for half in 0..2 {
                    let dl = d * sc[8 * h + 2 * j + half] as f32;
                    let y = &mut y[128 * h + 32 * j + 16 * half..][..16];
                    for (l, y) in y.iter_mut().enumerate() {
                        let at = 16 * half + l;
                        let low = ((q[at] >> (2 * j)) & 3) as i32;
                        let offset = if hmask[at] & bit != 0 { 0 } else { 4 };
                        *y = dl * (low - offset) as f32;
                    }
                }
            }
        }
    }
}

/// The dot product without decoding to memory: a group of sixteen values shares one scale,
/// sixteen lanes wide.
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    for (b, xb) in row.chunks_exact(110).zip(x.chunks_exact(256)) {
        let (hmask, qs) = (&b[..32], &b[32..96]);
        let sc = scales(&b[96..108]);
        let d = scale(b, 108);
        for h in 0..2 {
            let q = &qs[32 * h..32 * h + 32];
            for j in 0..4 {
                let bit = 1u8 << (4 * h + j);
                for half in 0..2 {
                    let xs = &xb[128 * h + 32 * j + 16 * half..][..LANES];
                    let mut p = [0f32; LANES];
                    for l in 0..LANES {
                        let at = 16 * half + l;
                        let low = ((q[at] >> (2 * j)) & 3) as i32;
                        let offset = if hmask[at] & bit != 0 { 0 } else { 4 };
                        p[l] = (low - offset) as f32 * xs[l];
                    }
                    let dl = d * sc[8 * h + 2 * j + half] as f32;
                    for l in 0..LANES {
                        acc[l] = madd::<FMA>(dl, p[l], acc[l]);
                    }
                }
            }
        }
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn scales_unpack_as_ggml_packs_them() {
        // ggml packs scale i (6 bits, l = s + 32) as: low nibble into byte i % 8 (low half for
        // i < 8, high half otherwise), top two bits into byte 8 + i % 4 at bit 2·(i / 4).
        let wanted: Vec<i32> = (0..16).map(|i| (i * 37 % 64) - 32).collect();
        let mut packed = [0u8; 12];
        for (i, &s) in wanted.iter().enumerate() {
            let l = (s + 32) as u8;
            if i < 8 { packed[i] |= l & 0x0f } else { packed[i - 8] |= (l & 0x0f) << 4 }
            packed[8 + i % 4] |= (l >> 4) << (2 * (i / 4));
        }
        assert_eq!(super::scales(&packed).to_vec(), wanted);
    }
}
