//! IQ3_S (3.4375 bits a weight): super-blocks of 256 — f16 `d`, 64 bytes of lattice indexes' low
//! bits (one a group of 4 weights), 8 bytes of their ninth bits (group g's at bit g mod 8 of byte
//! g/8; indexes into the 512-point lattice), 32 bytes of signs (weight i's at bit i mod 8 of byte
//! i/8), then 4 bytes of 4-bit scales, one per 32 weights (low nibble first): value
//! `d·(1 + 2s)·point[j]`, negated by its sign bit.

use super::iq_lattice::{IQ3S, signed};
use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(110).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 0);
        let (qs, qh, signs, scales) = (&b[2..66], &b[66..74], &b[74..106], &b[106..110]);
        for (g, y) in y.chunks_exact_mut(4).enumerate() {
            let k = g / 8; // the scale of these 32 weights
            let s = (scales[k / 2] >> (4 * (k % 2))) & 0x0f;
            let db = d * (1 + 2 * s as u32) as f32;
            let index = qs[g] as usize | ((((qh[g / 8] >> (g % 8)) & 1) as usize) << 8);
            let point = &IQ3S[index];
            // The sign bits of weights 4g..4g + 4: half of byte g/2.
            let signs = (signs[g / 2] >> (4 * (g % 2))) as u32;
            for (j, y) in y.iter_mut().enumerate() {
                *y = signed(db * point[j] as f32, signs, j);
            }
        }
    }
}
