//! IQ1_M (1.75 bits a weight): super-blocks of 256 — 32 bytes of lattice indexes' low bits (one a
//! group of 8), 16 bytes of nibbles (group g's is nibble g mod 2 of byte g/2: its low 3 bits the
//! index's top bits, 11-bit indexes into IQ1_S's lattice, and bit 3 the sign of its shift
//! δ = ±1/8), then four u16 of 3-bit scales, one per 16 weights (scale k at bits 3(k mod 4) of
//! u16 k/4), whose top nibbles together are the f16 `d` (u16 i's gives bits 4i..4i + 4):
//! value `d·(2s + 1)·(point[j] + δ)`.

use super::iq_lattice::{IQ1_DELTA, IQ1S};
use half::f16;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(56).zip(out.chunks_exact_mut(256)) {
        let (qs, qh) = (&b[..32], &b[32..48]);
        let sc: [u16; 4] = std::array::from_fn(|i| u16::from_le_bytes([b[48 + 2 * i], b[49 + 2 * i]]));
        let d_bits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
        let d = f16::from_bits(d_bits).to_f32();
        for (g, y) in y.chunks_exact_mut(8).enumerate() {
            let k = g / 2;
            let s = (sc[k / 4] >> (3 * (k % 4))) & 7;
            let dl = d * (2 * s + 1) as f32;
            let nibble = (qh[g / 2] >> (4 * (g % 2))) & 0x0f;
            let delta = if nibble & 8 != 0 { -IQ1_DELTA } else { IQ1_DELTA };
            let point = &IQ1S[qs[g] as usize | (((nibble & 7) as usize) << 8)];
            for (j, y) in y.iter_mut().enumerate() {
                *y = dl * (point[j] as f32 + delta);
            }
        }
    }
}
