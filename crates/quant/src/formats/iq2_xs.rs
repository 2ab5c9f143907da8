//! IQ2_XS (2.3125 bits a weight): super-blocks of 256 — f16 `d`, 32 u16 (one a group of 8: the
//! low 9 bits index the 512-point lattice, the high 7 are its sign code, `even_signs`), then 8
//! bytes of 4-bit scales, one per 16 weights (low nibble first): value `d·(0.5 + s)·0.25·point[j]`,
//! negated by its sign bit.

use super::iq_lattice::{IQ2XS, even_signs, signed};
use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(74).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 0);
        let scales = &b[66..74];
        for (g, y) in y.chunks_exact_mut(8).enumerate() {
            let code = u16::from_le_bytes([b[2 + 2 * g], b[3 + 2 * g]]) as u32;
            let k = g / 2; // the scale of these 16 weights
            let s = (scales[k / 2] >> (4 * (k % 2))) & 0x0f;
            let db = d * (0.5 + s as f32) * 0.25;
            let point = &IQ2XS[(code & 511) as usize];
            let signs = even_signs(code >> 9);
            for (j, y) in y.iter_mut().enumerate() {
                *y = signed(db * point[j] as f32, signs, j);
            }
        }
    }
}
