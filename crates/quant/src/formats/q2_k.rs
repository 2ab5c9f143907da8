//! Q2_K: super-blocks of 256 — sixteen bytes of 4-bit (scale, min) pairs (scale in the low
//! nibble), 64 bytes of 2-bit values, then f16 `d` and `dmin`; value `d·sc·q − dmin·m`, one
//! pair per 16 values. Two halves of 128 values: in a half, the 2-bit field at shift 2j of byte
//! l gives value 32j + l. 2.625 bits a weight.

use super::{LANES, madd, scale};

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(84).zip(out.chunks_exact_mut(256)) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (d, dmin) = (scale(b, 80), scale(b, 82));
        for h in 0..2 {
            let q = &qs[32 * h..32 * h + 32];
            for j in 0..4 {
                for half in 0..2 {
                    // Pair 8h + 2j + half covers values 128h + 32j + 16·half .. +16.
                    let sc = scales[8 * h + 2 * j + half];
                    let (dl, ml) = (d * (sc & 0x0f) as f32, dmin * (sc >> 4) as f32);
                    let y = &mut y[128 * h + 32 * j + 16 * half..][..16];
                    for (l, y) in y.iter_mut().enumerate() {
                        *y = dl * ((q[16 * half + l] >> (2 * j)) & 3) as f32 - ml;
                    }
                }
            }
        }
    }
}

/// The dot product without decoding to memory: a group of sixteen values shares one (scale,
/// min) pair, sixteen lanes wide; the min multiplies the group's Σx.
#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut minimum = [0f32; LANES];
    for (b, xb) in row.chunks_exact(84).zip(x.chunks_exact(256)) {
        let (scales, qs) = (&b[..16], &b[16..80]);
        let (d, dmin) = (scale(b, 80), scale(b, 82));
        for h in 0..2 {
            let q = &qs[32 * h..32 * h + 32];
            for j in 0..4 {
                for half in 0..2 {
                    let sc = scales[8 * h + 2 * j + half];
                    let (dl, ml) = (d * (sc & 0x0f) as f32, dmin * (sc >> 4) as f32);
                    let xs = &xb[128 * h + 32 * j + 16 * half..][..LANES];
                    for l in 0..LANES {
                        let v = ((q[16 * half + l] >> (2 * j)) & 3) as f32;
                        acc[l] = madd::<FMA>(dl * v, xs[l], acc[l]);
                        minimum[l] = madd::<FMA>(ml, xs[l], minimum[l]);
                    }
                }
            }
        }
    }
    acc.iter().sum::<f32>() - minimum.iter().sum::<f32>()
}
