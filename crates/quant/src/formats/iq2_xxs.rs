//! IQ2_XXS (2.0625 bits a weight): super-blocks of 256 — f16 `d`, then eight 8-byte runs, one a
//! sub-block of 32: four bytes each index a point of the 256-point lattice (8 weights), then a
//! u32 whose four 7-bit fields are the groups' sign codes (`even_signs`) and whose top 4 bits `s`
//! scale the sub-block: value `d·(0.5 + s)·0.25·point[j]`, negated by its sign bit.

use super::iq_lattice::{IQ2XXS, even_signs, signed};
use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(66).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 0);
        for (q, y) in b[2..].chunks_exact(8).zip(y.chunks_exact_mut(32)) {
            let aux = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
            let db = d * (0.5 + (aux >> 28) as f32) * 0.25;
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let point = &IQ2XXS[q[l] as usize];
                let signs = even_signs(aux >> (7 * l));
                for (j, y) in y.iter_mut().enumerate() {
                    *y = signed(db * point[j] as f32, signs, j);
                }
            }
        }
    }
}
