//! IQ1_S (1.5625 bits a weight): super-blocks of 256 — f16 `d`, 32 bytes of lattice indexes' low
//! bits (one a group of 8), then eight u16, one a sub-block of 32: bits 3l..3l + 3 are group l's
//! top index bits (11-bit indexes into the 2048-point lattice of −1/0/1 coordinates), bits 12..15
//! a 3-bit scale `s`, bit 15 the sign of the shift δ = ±1/8: value `d·(2s + 1)·(point[j] + δ)`.

use super::iq_lattice::{IQ1_DELTA, IQ1S};
use super::scale;

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(50).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 0);
        let qs = &b[2..34];
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let qh = u16::from_le_bytes([b[34 + 2 * ib], b[35 + 2 * ib]]) as usize;
            let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
            let delta = if qh & 0x8000 != 0 { -IQ1_DELTA } else { IQ1_DELTA };
            for (l, y) in y.chunks_exact_mut(8).enumerate() {
                let point = &IQ1S[qs[4 * ib + l] as usize | (((qh >> (3 * l)) & 7) << 8)];
                for (j, y) in y.iter_mut().enumerate() {
                    *y = dl * (point[j] as f32 + delta);
                }
            }
        }
    }
}
