//! Dot products written with AVX2 (x86-64; the AVX-512 level runs them too), for the formats
//! whose values the portable kernels cannot build in vector registers:
//!
//! - IQ4_NL / IQ4_XS look each nibble's level up in a table, one load a value, which LLVM leaves
//!   scalar (IQ4_NL decoded at a quarter of Q4_0's rate). The sixteen levels are sixteen signed
//!   bytes, so one byte shuffle looks up sixteen at once.
//! - Q5_0 / Q5_1 take each value's fifth bit from a u32, a shift and a mask a value. Here a
//!   shuffle spreads the u32's bytes and a compare turns each bit into 0 or 16, 32 at once.
//!
//! The values then widen to floats and meet x in sixteen lanes ([`Lanes`]): two 256-bit registers
//! here, one 512-bit register in `avx512.rs`, which runs these same loops. The arithmetic is the
//! portable kernels' with FMA, lane for lane and in the same order, so the results are the same
//! bits at either width (the unit test compares them).

use crate::block::{IQ4_LEVELS, LANES, scale};
use core::arch::x86_64::*;

/// The sixteen f32 lanes a dot product accumulates in, in registers of one width.
pub(crate) trait Lanes: Sized {
    /// All lanes zero.
    unsafe fn zero() -> Self;
    /// `acc + d·Σ value·x` for one run of 32 values given as signed bytes (`low`: elements
    /// 0..16, `high`: 16..32) and their 32 x values: the portable kernels' `p[l] = lo·x[l] +
    /// hi·x[16 + l]`, then `acc[l] += d·p[l]`.
    unsafe fn add_bytes(&mut self, d: f32, low: __m128i, high: __m128i, x: &[f32]);
    /// The sixteen lanes summed in order, as the portable kernels' `acc.iter().sum()`.
    unsafe fn sum(self) -> f32;
}

/// The sixteen lanes as two 256-bit registers (lanes 0..8, 8..16).
pub(crate) struct Avx2Lanes([__m256; 2]);

impl Lanes for Avx2Lanes {
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn zero() -> Self {
        Avx2Lanes([_mm256_setzero_ps(); 2])
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn add_bytes(&mut self, d: f32, low: __m128i, high: __m128i, x: &[f32]) {
        assert!(x.len() >= 32);
        let floats = |v: __m128i| [_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))];
        let (low, high) = (floats(low), floats(high));
        let xp = x.as_ptr();
        let zero = _mm256_setzero_ps();
        // SAFETY: x holds 32 floats (checked above).
        let (x0, x1, x2, x3) = unsafe { (_mm256_loadu_ps(xp), _mm256_loadu_ps(xp.add(8)), _mm256_loadu_ps(xp.add(LANES)), _mm256_loadu_ps(xp.add(LANES + 8))) };
        let p0 = _mm256_fmadd_ps(high[0], x2, _mm256_fmadd_ps(low[0], x0, zero));
        let p1 = _mm256_fmadd_ps(high[1], x3, _mm256_fmadd_ps(low[1], x1, zero));
        let d = _mm256_set1_ps(d);
        self.0[0] = _mm256_fmadd_ps(d, p0, self.0[0]);
        self.0[1] = _mm256_fmadd_ps(d, p1, self.0[1]);
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn sum(self) -> f32 {
        let mut lanes = [0f32; LANES];
        // SAFETY: `lanes` holds 16 floats.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), self.0[0]);
            _mm256_storeu_ps(lanes.as_mut_ptr().add(8), self.0[1]);
        }
        lanes.iter().sum()
    }
}

/// 16 bytes from `b[at..at + 16]`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn load_bytes(b: &[u8], at: usize) -> __m128i {
    let b = &b[at..at + 16];
    // SAFETY: b holds 16 bytes.
    unsafe { _mm_loadu_si128(b.as_ptr() as *const __m128i) }
}

/// The levels of 16 bytes of IQ4 nibbles: (elements 0..16, elements 16..32).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn iq4_levels(bytes: __m128i) -> (__m128i, __m128i) {
    // SAFETY: the levels are 16 bytes.
    let table = unsafe { _mm_loadu_si128(IQ4_LEVELS.as_ptr() as *const __m128i) };
    let mask = _mm_set1_epi8(0x0f);
    (_mm_shuffle_epi8(table, _mm_and_si128(bytes, mask)), _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bytes, 4), mask)))
}

/// IQ4_NL's dot product (see `formats::iq4_nl::dot`) in lanes `L`.
#[inline(always)]
pub(crate) unsafe fn iq4_nl_with<L: Lanes>(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY (the block): the caller's target features include `L`'s and AVX2's.
    unsafe {
        let mut acc = L::zero();
        for (b, xb) in row.chunks_exact(18).zip(x.chunks_exact(32)) {
            let (low, high) = iq4_levels(load_bytes(b, 2));
            acc.add_bytes(scale(b, 0), low, high, xb);
        }
        acc.sum()
    }
}

/// IQ4_XS's dot product (see `formats::iq4_xs::dot`) in lanes `L`.
#[inline(always)]
pub(crate) unsafe fn iq4_xs_with<L: Lanes>(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY (the block): the caller's target features include `L`'s and AVX2's.
    unsafe {
        let mut acc = L::zero();
        for (b, xb) in row.chunks_exact(136).zip(x.chunks_exact(256)) {
            let d = scale(b, 0);
            let scales_high = u16::from_le_bytes([b[2], b[3]]);
            for (i, xs) in xb.chunks_exact(32).enumerate() {
                let (low, high) = iq4_levels(load_bytes(b, 8 + 16 * i));
                acc.add_bytes(d * crate::block::sub_block_scale(b, scales_high, i), low, high, xs);
            }
        }
        acc.sum()
    }
}

/// Q5_0's (`OFFSET`) or Q5_1's dot product (see `formats::q5_0::dot_five_bit`) in lanes `L`.
#[inline(always)]
pub(crate) unsafe fn five_bit_with<L: Lanes, const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let (block_bytes, qh_at) = if OFFSET { (22, 2) } else { (24, 4) };
    // SAFETY (the block): the caller's target features include `L`'s and AVX2's.
    unsafe {
        let mut acc = L::zero();
        let mut minimum = 0f32;
        for (k, (b, xb)) in row.chunks_exact(block_bytes).zip(x.chunks_exact(32)).enumerate() {
            let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
            let (low, high) = five_bit_values::<OFFSET>(qh, load_bytes(b, qh_at + 4));
            acc.add_bytes(scale(b, 0), low, high, xb);
            if !OFFSET {
                minimum = scale(b, 2).mul_add(block_sums[k], minimum);
            }
        }
        acc.sum() + minimum
    }
}

/// IQ4_NL's dot product, AVX2.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn dot_iq4_nl(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: this function's features are the loop's.
    unsafe { iq4_nl_with::<Avx2Lanes>(row, x) }
}

/// IQ4_XS's dot product, AVX2.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn dot_iq4_xs(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: this function's features are the loop's.
    unsafe { iq4_xs_with::<Avx2Lanes>(row, x) }
}

/// Q5_0's (`OFFSET`) or Q5_1's dot product, AVX2.
#[target_feature(enable = "avx2,fma")]
pub(crate) fn dot_five_bit<const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    // SAFETY: this function's features are the loop's.
    unsafe { five_bit_with::<Avx2Lanes, OFFSET>(row, x, block_sums) }
}

/// Q5_0's or Q5_1's 32 five-bit values as signed bytes (elements 0..16, 16..32), less 16 with
/// `OFFSET` (Q5_0).
#[inline]
#[target_feature(enable = "avx2,fma")]
fn five_bit_values<const OFFSET: bool>(qh: u32, nibbles: __m128i) -> (__m128i, __m128i) {
    let spread = _mm_set1_epi32(qh as i32);
    // Byte j of each half: bit j % 8 of qh's byte j / 8 (bits 0..16 for the low elements, 16..32
    // for the high ones), as 0 or 16.
    let bit = _mm_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let sixteen = _mm_set1_epi8(16);
    let fifth = |select: __m128i| _mm_and_si128(_mm_cmpeq_epi8(_mm_and_si128(_mm_shuffle_epi8(spread, select), bit), bit), sixteen);
    let mask = _mm_set1_epi8(0x0f);
    let low = _mm_or_si128(_mm_and_si128(nibbles, mask), fifth(_mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)));
    let high = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(nibbles, 4), mask), fifth(_mm_setr_epi8(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3)));
    if OFFSET { (_mm_sub_epi8(low, sixteen), _mm_sub_epi8(high, sixteen)) } else { (low, high) }
}

#[cfg(test)]
mod tests {
    use crate::Format;

    #[test]
    fn the_avx2_and_avx512_dots_are_the_portable_ones_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return eprintln!("skipped: this CPU has no AVX2 and FMA");
        }
        let wide = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
        if !wide {
            eprintln!("AVX-512 skipped: this CPU has no AVX-512 F and BW");
        }
        let formats = [Format::IQ4NL, Format::IQ4XS, Format::Q5_0, Format::Q5_1];
        for (seed, format) in formats.into_iter().enumerate() {
            let (rows, cols) = (5, 768);
            let w = crate::tests::random_matrix(format, rows, cols, 40 + seed as u64);
            let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 321.0).collect();
            let sums: Vec<f32> = x.chunks_exact(32).map(|b| b.iter().sum()).collect();
            for r in 0..rows {
                let row = w.row(r);
                use crate::avx512;
                use crate::formats::{iq4_nl, iq4_xs, q5_0};
                let want = match format {
                    Format::IQ4NL => iq4_nl::dot_portable::<true>(row, &x),
                    Format::IQ4XS => iq4_xs::dot_portable::<true>(row, &x),
                    Format::Q5_0 => q5_0::dot_five_bit_portable::<true, true>(row, &x, &[]),
                    _ => q5_0::dot_five_bit_portable::<true, false>(row, &x, &sums),
                };
                // SAFETY: AVX2 and FMA are present (checked above), and AVX-512 where `wide`.
                let got = |wide: bool| unsafe {
                    match (format, wide) {
                        (Format::IQ4NL, false) => super::dot_iq4_nl(row, &x),
                        (Format::IQ4NL, true) => avx512::dot_iq4_nl(row, &x),
                        (Format::IQ4XS, false) => super::dot_iq4_xs(row, &x),
                        (Format::IQ4XS, true) => avx512::dot_iq4_xs(row, &x),
                        (Format::Q5_0, false) => super::dot_five_bit::<true>(row, &x, &[]),
                        (Format::Q5_0, true) => avx512::dot_five_bit::<true>(row, &x, &[]),
                        (_, false) => super::dot_five_bit::<false>(row, &x, &sums),
                        (_, true) => avx512::dot_five_bit::<false>(row, &x, &sums),
                    }
                };
                for wide in [false].into_iter().chain(wide.then_some(true)) {
                    let got = got(wide);
                    assert_eq!(got.to_bits(), want.to_bits(), "{format:?} row {r} (AVX-512: {wide}): {got} vs {want}");
                }
            }
        }
    }
}
