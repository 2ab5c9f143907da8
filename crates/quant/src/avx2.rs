//! The IQ4 dot products written with AVX2 (x86-64; the AVX-512 level runs them too).
//!
//! The portable kernels look each nibble's level up in a table of floats, one load a value,
//! which LLVM leaves scalar: IQ4_NL decoded at a quarter of Q4_0's rate. Here one byte shuffle
//! looks up sixteen levels at once (the sixteen levels are sixteen signed bytes), and they widen
//! to floats eight at a time. The arithmetic is the portable kernels' with FMA, lane for lane and
//! in the same order, so the results are the same bits (the unit tests compare them).

use crate::formats::{IQ4_LEVELS, LANES};
use core::arch::x86_64::*;

/// `Σ d·level·x` over one IQ4 run of 16 bytes (elements 0..16 in the low nibbles, 16..32 in the
/// high ones) and its 32 x values, into the two halves of the sixteen lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn dot_nibbles(acc: &mut [__m256; 2], d: f32, q: &[u8], x: &[f32]) {
    assert!(q.len() >= 16 && x.len() >= 32);
    // SAFETY: the loads read 16 bytes of `q` and 32 floats of `x`, checked above; AVX2 and FMA
    // are enabled for this function.
    unsafe {
        let table = _mm_loadu_si128(IQ4_LEVELS.as_ptr() as *const __m128i);
        let bytes = _mm_loadu_si128(q.as_ptr() as *const __m128i);
        let mask = _mm_set1_epi8(0x0f);
        let low = _mm_shuffle_epi8(table, _mm_and_si128(bytes, mask));
        let high = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(bytes, 4), mask));
        let floats = |v: __m128i| [_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))];
        let (low, high) = (floats(low), floats(high));
        let xp = x.as_ptr();
        let zero = _mm256_setzero_ps();
        let p0 = _mm256_fmadd_ps(high[0], _mm256_loadu_ps(xp.add(LANES)), _mm256_fmadd_ps(low[0], _mm256_loadu_ps(xp), zero));
        let p1 = _mm256_fmadd_ps(high[1], _mm256_loadu_ps(xp.add(LANES + 8)), _mm256_fmadd_ps(low[1], _mm256_loadu_ps(xp.add(8)), zero));
        let d = _mm256_set1_ps(d);
        acc[0] = _mm256_fmadd_ps(d, p0, acc[0]);
        acc[1] = _mm256_fmadd_ps(d, p1, acc[1]);
    }
}

/// The sixteen lanes summed in order, as the portable kernels' `acc.iter().sum()`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn sum_lanes(acc: [__m256; 2]) -> f32 {
    let mut lanes = [0f32; LANES];
    // SAFETY: `lanes` holds 16 floats.
    unsafe {
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc[0]);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), acc[1]);
    }
    lanes.iter().sum()
}

/// IQ4_NL's dot product (see `formats::iq4_nl::dot`).
#[target_feature(enable = "avx2,fma")]
pub(crate) fn dot_iq4_nl(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for (b, xb) in row.chunks_exact(18).zip(x.chunks_exact(32)) {
        dot_nibbles(&mut acc, crate::formats::scale(b, 0), &b[2..18], xb);
    }
    sum_lanes(acc)
}

/// IQ4_XS's dot product (see `formats::iq4_xs::dot`).
#[target_feature(enable = "avx2,fma")]
pub(crate) fn dot_iq4_xs(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 2];
    for (b, xb) in row.chunks_exact(136).zip(x.chunks_exact(256)) {
        let d = crate::formats::scale(b, 0);
        let scales_high = u16::from_le_bytes([b[2], b[3]]);
        for (i, (q, xs)) in b[8..136].chunks_exact(16).zip(xb.chunks_exact(32)).enumerate() {
            dot_nibbles(&mut acc, d * crate::formats::iq4_xs::sub_block_scale(b, scales_high, i), q, xs);
        }
    }
    sum_lanes(acc)
}

#[cfg(test)]
mod tests {
    use crate::Format;

    #[test]
    fn the_avx2_dots_are_the_portable_ones_bit_for_bit() {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return eprintln!("skipped: this CPU has no AVX2 and FMA");
        }
        for (seed, format) in [Format::IQ4NL, Format::IQ4XS].into_iter().enumerate() {
            let (rows, cols) = (5, 768);
            let w = crate::tests::random_matrix(format, rows, cols, 40 + seed as u64);
            let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 321.0).collect();
            for r in 0..rows {
                let row = w.row(r);
                let (got, want) = match format {
                    // SAFETY: AVX2 and FMA are present (checked above).
                    Format::IQ4NL => (unsafe { super::dot_iq4_nl(row, &x) }, crate::formats::iq4_nl::dot_portable::<true>(row, &x)),
                    _ => (unsafe { super::dot_iq4_xs(row, &x) }, crate::formats::iq4_xs::dot_portable::<true>(row, &x)),
                };
                assert_eq!(got.to_bits(), want.to_bits(), "{format:?} row {r}: {got} vs {want}");
            }
        }
    }
}
