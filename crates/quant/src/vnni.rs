//! Decode products with 8-bit activations (x86-64 with AVX-512 VNNI), as llama.cpp multiplies:
//! x is rounded once per product to bytes with one f32 scale per 32 values (`Int8Rows`), and each
//! weight block meets it in integer multiply-adds (`vpdpbusd`: 32 byte products summed in
//! eight i32 lanes by one instruction), so a block costs a few integer operations and one
//! float multiply-add instead of 32 float multiply-adds.
//!
//! `vpdpbusd` multiplies unsigned bytes by signed ones, so every format's values are first made
//! unsigned bytes `u` with an offset `o`, its value being `scale·(u − o)`: Q4_0's nibbles
//! (o = 8), Q5_0's five bits (o = 16), Q8_0's bytes + 128 (o = 128), IQ4's levels + 128; Q4_1,
//! Q5_1, Q4_K and Q5_K have a minimum instead of an offset. An offset is then `−o·Σq` over the
//! block's rounded x (`Int8Rows::sums32`), started in the integer sum; a minimum is one scalar
//! term a block, `min·d·Σq` (`Int8Rows::scaled_sums`).
//!
//! Only the single-token decode of a generation asks for this (`with_int8_activations`): the
//! rounding of x moves a likely token's log-prob by up to ~0.4 nats on the default model
//! (`tests/model_reference.rs`), so scoring, calibration and training keep f32 activations and
//! their figures stay those of the reference stack.

use crate::{Format, StoredMatrix};
use crate::block::{IQ4_LEVELS, scale_min_k4, sub_block_scale};
use core::arch::x86_64::*;

/// m rows of x rounded to bytes, with a scale per 32 values and the bytes' sums per 16 and 32
/// (the offsets and minimums multiply them).
pub(crate) struct Int8Rows {
    cols: usize,
    q: Vec<i8>,
    d: Vec<f32>,
    sums16: Vec<i32>,
    sums32: Vec<i32>,
    /// `d·Σq` per 32: the rounded x's sum in x's units, which a minimum multiplies.
    scaled_sums: Vec<f32>,
}

/// One row of [`Int8Rows`].
#[derive(Clone, Copy)]
pub(crate) struct Int8Row<'a> {
    q: &'a [i8],
    d: &'a [f32],
    sums16: &'a [i32],
    sums32: &'a [i32],
    scaled_sums: &'a [f32],
}

impl Int8Rows {
    /// x (`[m, cols]`, cols a multiple of 32) rounded per block of 32 as llama.cpp's Q8_0:
    /// `d = max|x| / 127`, `q = round(x / d)` (ties to even here).
    ///
    /// # Safety
    /// The CPU has the features [`available`] checks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(crate) unsafe fn new(x: &[f32], m: usize, cols: usize) -> Self {
        assert!(cols % 32 == 0 && x.len() >= m * cols, "Int8Rows: x is not [m, whole blocks of 32]");
        let blocks = m * cols / 32;
        let mut rows = Int8Rows { cols, q: vec![0i8; m * cols], d: Vec::with_capacity(blocks), sums16: Vec::with_capacity(2 * blocks), sums32: Vec::with_capacity(blocks), scaled_sums: Vec::with_capacity(blocks) };
        for (xb, qb) in x[..m * cols].chunks_exact(32).zip(rows.q.chunks_exact_mut(32)) {
            // SAFETY: xb holds 32 floats and qb 32 bytes (chunks_exact); loads and stores unaligned.
            let (x0, x1) = unsafe { (_mm512_loadu_ps(xb.as_ptr()), _mm512_loadu_ps(xb.as_ptr().add(16))) };
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
            let scale = amax / 127.0;
            let inverse = _mm512_set1_ps(if scale > 0.0 { 1.0 / scale } else { 0.0 });
            // Rounded to the nearest integer (MXCSR's default mode), |q| ≤ 127.
            let (q0, q1) = (_mm512_cvtps_epi32(_mm512_mul_ps(x0, inverse)), _mm512_cvtps_epi32(_mm512_mul_ps(x1, inverse)));
            // SAFETY: as above.
            unsafe {
                _mm_storeu_si128(qb.as_mut_ptr().cast(), _mm512_cvtsepi32_epi8(q0));
                _mm_storeu_si128(qb.as_mut_ptr().add(16).cast(), _mm512_cvtsepi32_epi8(q1));
            }
            let (s0, s1) = (_mm512_reduce_add_epi32(q0), _mm512_reduce_add_epi32(q1));
            rows.d.push(scale);
            rows.sums16.extend([s0, s1]);
            rows.sums32.push(s0 + s1);
            rows.scaled_sums.push(scale * (s0 + s1) as f32);
        }
        rows
    }

    pub(crate) fn row(&self, i: usize) -> Int8Row<'_> {
        let b = self.cols / 32;
        Int8Row {
            q: &self.q[i * self.cols..(i + 1) * self.cols],
            d: &self.d[i * b..(i + 1) * b],
            sums16: &self.sums16[2 * i * b..2 * (i + 1) * b],
            sums32: &self.sums32[i * b..(i + 1) * b],
            scaled_sums: &self.scaled_sums[i * b..(i + 1) * b],
        }
    }
}

/// Whether this CPU multiplies bytes with VNNI at 256 bits (AVX-512 VNNI + VL + BW), checked once.
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512vnni")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// Whether [`dot`] takes this format; the others keep f32 activations.
pub(crate) fn takes(format: Format) -> bool {
    match format {
        Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q5_1 | Format::Q8_0 | Format::Q4K | Format::Q5K | Format::Q6K | Format::IQ4NL | Format::IQ4XS => true,
        Format::F32
        | Format::F16
        | Format::BF16
        | Format::Q2K
        | Format::Q3K
        | Format::TQ1_0
        | Format::TQ2_0
        | Format::MXFP4
        | Format::IQ2XXS
        | Format::IQ2XS
        | Format::IQ2S
        | Format::IQ3XXS
        | Format::IQ3S
        | Format::IQ1S
        | Format::IQ1M => false,
    }
}

/// Fills `out` (`[n, m]`) with rows `r0..r0 + n` of W (whose format [`takes`]) dotted with
/// each of the m rows of rounded x; the format is matched once, so each row's kernel is inlined.
///
/// # Safety
/// The CPU has the features [`available`] checks.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn dot_rows(w: &StoredMatrix, r0: usize, out: &mut [f32], x: &Int8Rows, m: usize) {
    match w.format {
        Format::Q4_0 => each_row(w, r0, out, x, m, |row, x| blocks_of_32(row, 18, x, |b| (nibbles(b, 2), converted_scale(b, 0), Offset::Subtract(8)))),
        Format::Q4_1 => each_row(w, r0, out, x, m, |row, x| blocks_of_32(row, 20, x, |b| with_minimum(nibbles(b, 4), b))),
        Format::Q5_0 => each_row(w, r0, out, x, m, |row, x| blocks_of_32(row, 22, x, |b| (fifth_bits(nibbles(b, 6), b, 2), converted_scale(b, 0), Offset::Subtract(16)))),
        Format::Q5_1 => each_row(w, r0, out, x, m, |row, x| blocks_of_32(row, 24, x, |b| with_minimum(fifth_bits(nibbles(b, 8), b, 4), b))),
        Format::Q8_0 => each_row(w, r0, out, x, m, |row, x| blocks_of_32(row, 34, x, |b| (_mm256_xor_si256(load32(b, 2), _mm256_set1_epi8(-128)), converted_scale(b, 0), Offset::Subtract(128)))),
        Format::IQ4NL => each_row(w, r0, out, x, m, |row, x| blocks_of_32(row, 18, x, |b| (iq4_levels(nibbles(b, 2)), converted_scale(b, 0), Offset::Subtract(128)))),
        Format::IQ4XS => each_row(w, r0, out, x, m, |row, x| iq4_xs(row, x)),
        Format::Q4K => each_row(w, r0, out, x, m, |row, x| k4::<false>(row, x)),
        Format::Q5K => each_row(w, r0, out, x, m, |row, x| k4::<true>(row, x)),
        Format::Q6K => each_row(w, r0, out, x, m, |row, x| q6_k(row, x)),
        Format::F32
        | Format::F16
        | Format::BF16
        | Format::Q2K
        | Format::Q3K
        | Format::TQ1_0
        | Format::TQ2_0
        | Format::MXFP4
        | Format::IQ2XXS
        | Format::IQ2XS
        | Format::IQ2S
        | Format::IQ3XXS
        | Format::IQ3S
        | Format::IQ1S
        | Format::IQ1M => unreachable!("{:?} keeps f32 activations (`takes`)", w.format),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn each_row(w: &StoredMatrix, r0: usize, out: &mut [f32], x: &Int8Rows, m: usize, dot: impl Fn(&[u8], Int8Row) -> f32) {
    for (j, out_row) in out.chunks_exact_mut(m).enumerate() {
        let row = w.row(r0 + j);
        for (i, o) in out_row.iter_mut().enumerate() {
            *o = dot(row, x.row(i));
        }
    }
}

/// The running sum: block products in eight f32 lanes, and the minimums' scalar terms, each in
/// two accumulators taken in turn, so that successive blocks do not wait on one multiply-add's
/// latency (with one, that latency bounded a Q5_0 row).
struct Acc {
    lanes: [__m256; 2],
    scalar: [f32; 2],
}

impl Acc {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn new() -> Self {
        Acc { lanes: [_mm256_setzero_ps(); 2], scalar: [0.0; 2] }
    }

    /// `+= s · (Σ u·q + start)` over 32 unsigned weight bytes `u` and 32 bytes of x, `start`
    /// being the block's integer offset term (`−o·Σq`, in any lane), `s` a lane's scale.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn add(&mut self, u: __m256i, q: &[i8], s: __m256, start: __m256i) {
        let products = _mm256_dpbusd_epi32(start, u, load32_i8(q));
        // The two accumulators trade places (register renames, not moves).
        self.lanes = [self.lanes[1], _mm256_fmadd_ps(_mm256_cvtepi32_ps(products), s, self.lanes[0])];
    }

    /// `+= v`, a block's minimum term.
    #[inline(always)]
    fn add_scalar(&mut self, v: f32) {
        self.scalar = [self.scalar[1], self.scalar[0] + v];
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    fn sum(self) -> f32 {
        let v = _mm256_add_ps(self.lanes[0], self.lanes[1]);
        let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h))) + (self.scalar[0] + self.scalar[1])
    }
}

/// An integer start for one lane: `v` in lane 0, zeros elsewhere.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn first_lane(v: i32) -> __m256i {
    _mm256_zextsi128_si256(_mm_cvtsi32_si128(v))
}

/// A Q4_1 or Q5_1 block's bytes `u` with its scale and minimum.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn with_minimum(u: __m256i, b: &[u8]) -> (__m256i, f32, Offset) {
    let (d, min) = scale_pair(b);
    (u, d, Offset::Minimum(min))
}

/// How a block's unsigned bytes become its values: `d·(u − o)`, or `d·u + min`.
enum Offset {
    Subtract(i32),
    Minimum(f32),
}

/// The formats of blocks of 32 values: `block` gives a block's 32 unsigned bytes (in element
/// order), its scale and its offset or minimum.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn blocks_of_32(row: &[u8], block_bytes: usize, x: Int8Row, block: impl Fn(&[u8]) -> (__m256i, f32, Offset)) -> f32 {
    let mut acc = Acc::new();
    for (k, (b, q)) in row.chunks_exact(block_bytes).zip(x.q.chunks_exact(32)).enumerate() {
        let (u, d, offset) = block(b);
        let s = _mm256_set1_ps(d * x.d[k]);
        // An offset is an integer, started in the block's integer sum; a minimum is a float, a
        // scalar term of its own.
        match offset {
            Offset::Subtract(o) => acc.add(u, q, s, first_lane(-o * x.sums32[k])),
            Offset::Minimum(min) => {
                acc.add_scalar(min * x.scaled_sums[k]);
                acc.add(u, q, s, _mm256_setzero_si256());
            }
        }
    }
    acc.sum()
}

/// IQ4_XS: super-blocks of 256, eight sub-blocks of 32 with scales of their own.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn iq4_xs(row: &[u8], x: Int8Row) -> f32 {
    let mut acc = Acc::new();
    for (sb, b) in row.chunks_exact(136).enumerate() {
        let d = converted_scale(b, 0);
        let scales_high = u16::from_le_bytes([b[2], b[3]]);
        for i in 0..8 {
            let k = sb * 8 + i;
            let s = d * sub_block_scale(b, scales_high, i) * x.d[k];
            acc.add(iq4_levels(nibbles(b, 8 + 16 * i)), &x.q[32 * k..32 * k + 32], _mm256_set1_ps(s), first_lane(-128 * x.sums32[k]));
        }
    }
    acc.sum()
}

/// Q4_K (`FIFTH`: Q5_K, whose 32 bytes of fifth bits follow the scales): super-blocks of 256,
/// each run of 32 bytes of nibbles two sub-blocks of 32 with a (scale, min) pair each.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn k4<const FIFTH: bool>(row: &[u8], x: Int8Row) -> f32 {
    let mut acc = Acc::new();
    let (block_bytes, qs_at) = if FIFTH { (176, 48) } else { (144, 16) };
    let low = _mm256_set1_epi8(0x0f);
    for (sb, b) in row.chunks_exact(block_bytes).enumerate() {
        let (d, dmin) = scale_pair(b);
        let scales = &b[4..16];
        let high_bits = if FIFTH { load32(b, 16) } else { _mm256_setzero_si256() };
        for chunk in 0..4 {
            let bytes = load32(b, qs_at + 32 * chunk);
            let halves = [_mm256_and_si256(bytes, low), _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low)];
            for (half, mut u) in halves.into_iter().enumerate() {
                let j = 2 * chunk + half;
                if FIFTH {
                    let set = _mm256_test_epi8_mask(high_bits, _mm256_set1_epi8(1 << j));
                    u = _mm256_mask_add_epi8(u, set, u, _mm256_set1_epi8(16));
                }
                let (sc, m) = scale_min_k4(j, scales);
                let k = sb * 8 + j;
                acc.add_scalar(-(dmin * m as f32 * x.scaled_sums[k]));
                acc.add(u, &x.q[32 * k..32 * k + 32], _mm256_set1_ps(d * sc as f32 * x.d[k]), _mm256_setzero_si256());
            }
        }
    }
    acc.sum()
}

/// Q6_K: super-blocks of 256 in two halves; in a half, 32 bytes of low nibbles give runs 0 and 2
/// (low, high nibbles) and the next 32 runs 1 and 3, each topped by two bits of the same 32
/// bytes of high parts; a scale per 16 values; value `d·sc·(u − 32)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q6_k(row: &[u8], x: Int8Row) -> f32 {
    let mut acc = Acc::new();
    let (low, two_bits) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    for (sb, b) in row.chunks_exact(210).enumerate() {
        let d = converted_scale(b, 208);
        for h in 0..2 {
            let (ql0, ql1, qh) = (load32(b, 64 * h), load32(b, 64 * h + 32), load32(b, 128 + 32 * h));
            let sc = &b[192 + 8 * h..200 + 8 * h];
            let runs = [
                _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_and_si256(_mm256_slli_epi16(qh, 4), two_bits)),
                _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_and_si256(_mm256_slli_epi16(qh, 2), two_bits)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), _mm256_and_si256(qh, two_bits)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), _mm256_and_si256(_mm256_srli_epi16(qh, 2), two_bits)),
            ];
            for (r, u) in runs.into_iter().enumerate() {
                let k = sb * 8 + h * 4 + r;
                let f = d * x.d[k];
                let (sa, sb16) = (sc[2 * r] as i8 as f32, sc[2 * r + 1] as i8 as f32);
                // dpbusd's lanes 0..4 sum bytes 0..16 (the first scale's), lanes 4..8 the rest.
                let s = _mm256_set_m128(_mm_set1_ps(sb16 * f), _mm_set1_ps(sa * f));
                let start = _mm256_setr_epi32(-32 * x.sums16[2 * k], 0, 0, 0, -32 * x.sums16[2 * k + 1], 0, 0, 0);
                acc.add(u, &x.q[32 * k..32 * k + 32], s, start);
            }
        }
    }
    acc.sum()
}

/// The f16 at `b[at..at + 2]` as f32 by the CPU's conversion, from a register the move zeroes.
///
/// Written with the intrinsics, LLVM loads the two bytes into lane 0 of whichever register is at
/// hand (`vpinsrw`, the other lanes being unused), so the conversion waits on that register's
/// last writer: here the running sum, which chained every block to the one before (Q4_0 at 20
/// GB/s instead of 30, and slower than `block::scale`'s integer decode).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn converted_scale(b: &[u8], at: usize) -> f32 {
    let half = u16::from_le_bytes([b[at], b[at + 1]]) as u32;
    let value: __m128;
    // SAFETY: the caller runs with F16C (this function's features); the two instructions touch
    // only the named registers.
    unsafe {
        core::arch::asm!(
            "vmovd {v}, {h:e}",
            "vcvtph2ps {v}, {v}",
            h = in(reg) half,
            v = out(xmm_reg) value,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    _mm_cvtss_f32(value)
}

/// The two f16s at `b[0..4]` (Q4_1's and Q5_1's d and min, the K-quants' d and dmin) as f32,
/// by the CPU's conversion, one instruction for both.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scale_pair(b: &[u8]) -> (f32, f32) {
    let both = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    (_mm_cvtss_f32(both), _mm_cvtss_f32(_mm_movehdup_ps(both)))
}

/// 32 bytes from `b[at..at + 32]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load32(b: &[u8], at: usize) -> __m256i {
    let b = &b[at..at + 32];
    // SAFETY: b holds 32 bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load32_i8(q: &[i8]) -> __m256i {
    let q = &q[..32];
    // SAFETY: q holds 32 bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

/// 16 bytes of nibbles at `b[at..]` as 32 bytes in element order: low nibbles (elements 0..16),
/// then high nibbles (16..32).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn nibbles(b: &[u8], at: usize) -> __m256i {
    let b = &b[at..at + 16];
    // SAFETY: b holds 16 bytes; the load is unaligned.
    let v = unsafe { _mm_loadu_si128(b.as_ptr().cast()) };
    let low = _mm_set1_epi8(0x0f);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low), _mm_and_si128(v, low))
}

/// Q5_0/Q5_1: element j's fifth bit is bit j of the u32 at `b[at..]`, which is exactly a byte
/// mask over the 32 values in element order: 16 added where it is set.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn fifth_bits(u: __m256i, b: &[u8], at: usize) -> __m256i {
    let qh = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    _mm256_mask_add_epi8(u, qh, u, _mm256_set1_epi8(16))
}

/// IQ4's sixteen levels for 32 nibbles, plus 128 (so unsigned; the offset is 128).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn iq4_levels(nibbles: __m256i) -> __m256i {
    // SAFETY: the levels are 16 bytes.
    let table = unsafe { _mm_loadu_si128(IQ4_LEVELS.as_ptr().cast()) };
    let levels = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(table), nibbles);
    _mm256_xor_si256(levels, _mm256_set1_epi8(-128))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact sum of the decoded weights times the rounded x, in f64.
    fn exact(w: &crate::StoredMatrix, r: usize, x: Int8Row) -> f64 {
        let mut values = vec![0f32; w.cols];
        w.dequantize_row(r, &mut values);
        values.iter().enumerate().map(|(i, &v)| v as f64 * x.q[i] as f64 * x.d[i / 32] as f64).sum()
    }

    #[test]
    fn each_format_with_int8_activations_is_its_decoded_row_times_the_rounded_x() {
        if !available() {
            return eprintln!("skipped: this CPU has no AVX-512 VNNI");
        }
        let (rows, cols) = (7, 512);
        let x: Vec<f32> = (0..2 * cols).map(|i| ((i * 7919 % 1000) as f32 - 480.0) / 311.0).collect();
        // SAFETY: checked above.
        let rounded = unsafe { Int8Rows::new(&x, 2, cols) };
        for (seed, format) in crate::tests::FORMATS.into_iter().filter(|&f| takes(f)).enumerate() {
            let w = crate::tests::random_matrix(format, rows, cols, 90 + seed as u64);
            for r in 0..rows {
                for i in 0..2 {
                    let row = rounded.row(i);
                    let mut got = [0f32; 2];
                    // SAFETY: checked above.
                    unsafe { dot_rows(&w, r, &mut got, &rounded, 2) };
                    let got = got[i] as f64;
                    let want = exact(&w, r, row);
                    let mut values = vec![0f32; cols];
                    w.dequantize_row(r, &mut values);
                    let magnitude: f64 = values.iter().zip(row.q).map(|(&v, &q)| (v as f64 * q as f64).abs()).sum::<f64>() * row.d[0] as f64;
                    assert!((got - want).abs() <= 1e-5 * magnitude.max(1e-6), "{format:?} row {r} x {i}: {got} vs {want}");
                }
            }
        }
    }

    #[test]
    fn x_rounds_to_within_half_a_step() {
        if !available() {
            return eprintln!("skipped: this CPU has no AVX-512 VNNI");
        }
        let cols = 1024;
        let x: Vec<f32> = (0..cols).map(|i| ((i * 104729 % 2003) as f32 - 1001.0) / 700.0).collect();
        // SAFETY: checked above.
        let rounded = unsafe { Int8Rows::new(&x, 1, cols) };
        let row = rounded.row(0);
        for (i, &v) in x.iter().enumerate() {
            let back = row.q[i] as f32 * row.d[i / 32];
            assert!((back - v).abs() <= row.d[i / 32] * 0.5 + 1e-6, "element {i}: {v} rounds to {back}");
        }
        assert_eq!(row.sums32[3], row.q[96..128].iter().map(|&q| q as i32).sum::<i32>());
        assert_eq!(row.sums16[7], row.q[112..128].iter().map(|&q| q as i32).sum::<i32>());
    }
}
