//! MXFP4 (OCP microscaling FP4): blocks of 32 — one E8M0 exponent byte `e`, then 16 bytes of
//! nibbles laid out as Q4_0's, each an FP4 (E2M1) code; value `level · 2^(e − 128)` with the
//! levels doubled (0, ±1, ±2, ±3, ±4, ±6, ±8, ±12), so the scale is half of 2^(e − 127).
//! 4.25 bits a weight.

const LEVELS: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// 2^(e − 128) as f32, exact for every byte (the two smallest are subnormal).
fn half_scale(e: u8) -> f32 {
    if e < 2 { f32::from_bits(0x0020_0000 << e) } else { f32::from_bits(((e as u32) - 1) << 23) }
}

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(17).zip(out.chunks_exact_mut(32)) {
        let d = half_scale(b[0]);
        let (lo, hi) = y.split_at_mut(16);
        for (j, &q) in b[1..17].iter().enumerate() {
            lo[j] = LEVELS[(q & 0x0f) as usize] as f32 * d;
            hi[j] = LEVELS[(q >> 4) as usize] as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_scale_is_two_to_the_exponent_less_128() {
        for e in 0..=255u8 {
            assert_eq!(super::half_scale(e) as f64, 2f64.powi(e as i32 - 128), "e = {e}");
        }
    }
}
