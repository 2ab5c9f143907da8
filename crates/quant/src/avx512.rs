//! The AVX2 files' dot products (`avx2.rs`: IQ4_NL, IQ4_XS, Q5_0, Q5_1) with their sixteen lanes
//! in one 512-bit register: a run of 32 values widens to floats in two conversions instead of
//! four, and meets x in two multiply-adds instead of four. Same loops, same arithmetic lane for
//! lane, so the same bits (the unit test compares them).

use crate::avx2::{Lanes, five_bit_with, iq4_nl_with, iq4_xs_with};
use crate::block::LANES;
use core::arch::x86_64::*;

/// The sixteen lanes in one 512-bit register.
pub(crate) struct Avx512Lanes(__m512);

impl Lanes for Avx512Lanes {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn zero() -> Self {
        Avx512Lanes(_mm512_setzero_ps())
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn add_bytes(&mut self, d: f32, low: __m128i, high: __m128i, x: &[f32]) {
        assert!(x.len() >= 32);
        let (low, high) = (_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(low)), _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(high)));
        // SAFETY: x holds 32 floats (checked above).
        let (x0, x1) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(LANES))) };
        let p = _mm512_fmadd_ps(high, x1, _mm512_fmadd_ps(low, x0, _mm512_setzero_ps()));
        self.0 = _mm512_fmadd_ps(_mm512_set1_ps(d), p, self.0);
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
    unsafe fn sum(self) -> f32 {
        let mut lanes = [0f32; LANES];
        // SAFETY: `lanes` holds 16 floats.
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), self.0) };
        lanes.iter().sum()
    }
}

/// IQ4_NL's dot product, AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub(crate) fn dot_iq4_nl(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: this function's features are the loop's.
    unsafe { iq4_nl_with::<Avx512Lanes>(row, x) }
}

/// IQ4_XS's dot product, AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub(crate) fn dot_iq4_xs(row: &[u8], x: &[f32]) -> f32 {
    // SAFETY: this function's features are the loop's.
    unsafe { iq4_xs_with::<Avx512Lanes>(row, x) }
}

/// Q5_0's (`OFFSET`) or Q5_1's dot product, AVX-512.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
pub(crate) fn dot_five_bit<const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    // SAFETY: this function's features are the loop's.
    unsafe { five_bit_with::<Avx512Lanes, OFFSET>(row, x, block_sums) }
}
