//! TQ1_0 (ternary, 1.6875 bits a weight): super-blocks of 256 — 48 bytes that each pack five
//! base-3 digits, 4 bytes that each pack four, then f16 `d`; value `d·(t − 1)`, t in 0..3.
//!
//! A byte holds its digits as a fixed-point fraction: multiplying it by 3ⁿ (mod 256) brings
//! digit n to the top, and `(byte · 3) >> 8` reads it. Values come out in this order: the first
//! 32 bytes give five runs of 32 (digit n of byte m is value 32n + m), the next 16 bytes five
//! runs of 16 (value 160 + 16n + m), and the last 4 bytes four runs of 4 (value 240 + 4n + m).

use super::scale;

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Digit `n` of a packed byte.
#[inline(always)]
fn digit(byte: u8, n: usize) -> i32 {
    let q = byte.wrapping_mul(POW3[n]);
    ((q as u16 * 3) >> 8) as i32
}

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(54).zip(out.chunks_exact_mut(256)) {
        let d = scale(b, 52);
        let (qs, qh) = (&b[..48], &b[48..52]);
        let mut at = 0;
        // (bytes, digits each): 32 five-digit bytes, 16 five-digit bytes, 4 four-digit bytes.
        for (run, digits) in [(&qs[..32], 5), (&qs[32..48], 5), (qh, 4)] {
            for n in 0..digits {
                for &byte in run {
                    y[at] = (digit(byte, n) - 1) as f32 * d;
                    at += 1;
                }
            }
        }
    }
}
