//! Reading a block's fields, shared by the formats (`formats/`) and the architecture kernels
//! (`avx2.rs`, `avx512.rs`, `simd128.rs`): f16 scales, the K-quants' packed 6-bit scales, the
//! IQ4 levels and sub-block scales. A leaf: it imports no other module of this crate, so a
//! format can pick its architecture kernel and the kernel read the format's fields without the
//! two importing each other.

use half::f16;

/// Lanes of the dot accumulators: one AVX-512 register, or two AVX2 ones.
pub(crate) const LANES: usize = 16;

/// The f16 at `b[at..at + 2]` as f32, branch-free: shifting the exponent and mantissa into
/// place and multiplying by 2¹¹² (the exponent bias difference) is exact for normal and
/// subnormal values alike. Infinities and NaNs (never a valid scale) take `half`'s path.
#[inline(always)]
pub(crate) fn scale(b: &[u8], at: usize) -> f32 {
    let h = u16::from_le_bytes([b[at], b[at + 1]]) as u32;
    if h & 0x7c00 == 0x7c00 {
        return f16::from_bits(h as u16).to_f32();
    }
    let magnitude = f32::from_bits((h & 0x7fff) << 13) * f32::from_bits(0x7780_0000); // 2^112
    f32::from_bits(magnitude.to_bits() | ((h & 0x8000) << 16))
}

/// The 6-bit (scale, min) pair `j` of a Q4_K or Q5_K super-block (12 packed bytes: the low six
/// bits of bytes 0..8 hold pairs 0..4; pairs 4..8 take a nibble of bytes 8..12 and the top two
/// bits of bytes 0..8).
#[inline(always)]
pub fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// The 4-bit non-linear code of IQ4_NL and IQ4_XS: a nibble indexes these sixteen levels, which
/// follow the spacing of normally distributed weights.
pub const IQ4_LEVELS: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Sub-block `i`'s scale of the super-block `b` (whose u16 of high scale bits is `scales_high`),
/// before `d`: its 6-bit scale less 32.
#[inline(always)]
pub(crate) fn sub_block_scale(b: &[u8], scales_high: u16, i: usize) -> f32 {
    let low = (b[4 + i / 2] >> (4 * (i % 2))) & 0x0f;
    let high = ((scales_high >> (2 * i)) & 3) as u8;
    ((low | (high << 4)) as i32 - 32) as f32
}
