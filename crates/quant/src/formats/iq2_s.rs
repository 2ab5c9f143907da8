//! IQ2_S (2.5625 bits a weight): super-blocks of 256 — f16 `d`, 32 bytes of lattice indexes'
//! low bits, 32 bytes of signs (one byte a group of 8, bit j for weight j), 8 bytes holding the
//! indexes' top 2 bits (group g's at bits 2(g mod 4) of byte g/4; 10-bit indexes into the
//! 1024-point lattice), then 8 bytes of 4-bit scales, one per 16 weights (low nibble first):
//! value `d·(0.5 + s)·0.25·point[j]`, negated by its sign bit.

use super::iq_lattice::{IQ2S, signed};
use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(82).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 0);
        let (qs, signs, qh, scales) = (&b[2..34], &b[34..66], &b[66..74], &b[74..82]);
        for (g, y) in y.chunks_exact_mut(8).enumerate() {
            let k = g / 2;
            let s = (scales[k / 2] >> (4 * (k % 2))) & 0x0f;
            let db = d * (0.5 + s as f32) * 0.25;
            let index = qs[g] as usize | ((((qh[g / 4] >> (2 * (g % 4))) & 3) as usize) << 8);
            let point = &IQ2S[index];
            for (j, y) in y.iter_mut().enumerate() {
                *y = signed(db * point[j] as f32, signs[g] as u32, j);
            }
        }
    }
}
