//! IQ3_XXS (3.0625 bits a weight): super-blocks of 256 — f16 `d`, 64 bytes each indexing a point
//! of the 256-point lattice of 4 weights, then eight u32, one a sub-block of 32: four 7-bit sign
//! codes (`even_signs`), one per 8 weights, and a 4-bit scale `s` on top: value
//! `d·(0.5 + s)·0.5·point[j]`, negated by its sign bit.

use super::iq_lattice::{IQ3XXS, even_signs, signed};
use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(98).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 0);
        let (qs, aux) = (&b[2..66], &b[66..98]);
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let aux = u32::from_le_bytes([aux[4 * ib], aux[4 * ib + 1], aux[4 * ib + 2], aux[4 * ib + 3]]);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let signs = even_signs(aux >> (7 * l));
                let (first, second) = (&IQ3XXS[qs[8 * ib + 2 * l] as usize], &IQ3XXS[qs[8 * ib + 2 * l + 1] as usize]);
                for (j, y) in y.iter_mut().enumerate() {
                    let level = if j < 4 { first[j] } else { second[j - 4] };
                    *y = signed(db * level as f32, signs, j);
                }
            }
        }
    }
}
