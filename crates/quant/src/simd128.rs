//! The decode dot products written with WebAssembly SIMD128 (the browser's CPU path): Q8_0, Q4_0,
//! Q4_1, Q4_K, Q6_K; IQ4_NL / IQ4_XS, whose levels a byte shuffle looks up sixteen at once; and
//! Q5_0 / Q5_1, whose fifth bits a shuffle and a compare set thirty-two at once.
//!
//! LLVM vectorizes the portable kernels in `kernels.rs` for wasm only in part: it turns the
//! signed bytes of Q8_0 (and Q4_0's and Q6_K's offsets) into floats one lane at a time, with an
//! extract, a convert and a replace each. Here every byte vector widens with the extend
//! instructions, four f32 vectors at a time. The arithmetic is the portable kernels', lane for
//! lane and in the same order (wasm has no fused multiply-add, so both round the product and the
//! sum separately). The unit tests, built for wasm32-wasip1 with SIMD128 by `./x test`, check
//! these against the dequantized matrix as they check the portable kernels natively.

use core::arch::wasm32::*;

/// Four f32x4 vectors: the portable kernels' sixteen lanes.
type Lanes = [v128; 4];

const ZERO: Lanes = [f32x4(0.0, 0.0, 0.0, 0.0); 4];

/// Sixteen signed bytes as sixteen floats (lanes 0–3, 4–7, 8–11, 12–15).
#[inline(always)]
fn i8_to_f32(v: v128) -> Lanes {
    let (lo, hi) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
    [
        f32x4_convert_i32x4(i32x4_extend_low_i16x8(lo)),
        f32x4_convert_i32x4(i32x4_extend_high_i16x8(lo)),
        f32x4_convert_i32x4(i32x4_extend_low_i16x8(hi)),
        f32x4_convert_i32x4(i32x4_extend_high_i16x8(hi)),
    ]
}

/// Sixteen floats from `x[at..at + 16]`.
#[inline(always)]
fn load(x: &[f32], at: usize) -> Lanes {
    let x = &x[at..at + 16];
    // SAFETY: x holds 16 floats; wasm loads need no alignment.
    unsafe { [0, 4, 8, 12].map(|i| v128_load(x.as_ptr().add(i) as *const v128)) }
}

/// Sixteen bytes from `b[at..at + 16]`.
#[inline(always)]
fn bytes(b: &[u8], at: usize) -> v128 {
    let b = &b[at..at + 16];
    // SAFETY: b holds 16 bytes.
    unsafe { v128_load(b.as_ptr() as *const v128) }
}

/// `p + q·x`, lane by lane, rounding the product and the sum (the portable `a * b + c`).
#[inline(always)]
fn mul_add(q: Lanes, x: Lanes, p: Lanes) -> Lanes {
    [0, 1, 2, 3].map(|i| f32x4_add(f32x4_mul(q[i], x[i]), p[i]))
}

/// `acc + s·p`, lane by lane.
#[inline(always)]
fn scale_add(s: f32, p: Lanes, acc: Lanes) -> Lanes {
    let s = f32x4_splat(s);
    [0, 1, 2, 3].map(|i| f32x4_add(f32x4_mul(s, p[i]), acc[i]))
}

/// The sixteen lanes summed in order, as the portable kernels' `acc.iter().sum()`.
#[inline(always)]
fn sum(acc: Lanes) -> f32 {
    let mut lanes = [0f32; 16];
    for (i, v) in acc.iter().enumerate() {
        lanes[4 * i..4 * i + 4].copy_from_slice(&[f32x4_extract_lane::<0>(*v), f32x4_extract_lane::<1>(*v), f32x4_extract_lane::<2>(*v), f32x4_extract_lane::<3>(*v)]);
    }
    lanes.iter().sum()
}

/// Q8_0; see the portable `dot_q8_0`. (`FMA` is the portable kernels' switch: wasm has none.)
pub(crate) fn dot_q8_0<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = ZERO;
    for (b, xb) in row.chunks_exact(34).zip(x.chunks_exact(32)) {
        let mut p = ZERO;
        for g in 0..2 {
            p = mul_add(i8_to_f32(bytes(b, 2 + 16 * g)), load(xb, 16 * g), p);
        }
        acc = scale_add(crate::block::scale(b, 0), p, acc);
    }
    sum(acc)
}

/// Q4_0 (`OFFSET`) or Q4_1; see the portable `dot_q4`.
pub(crate) fn dot_q4<const FMA: bool, const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let block_bytes = if OFFSET { 18 } else { 20 };
    let mut acc = ZERO;
    let mut minimum = 0f32;
    let (nibble, eight) = (u8x16_splat(0x0f), i8x16_splat(8));
    for (k, (b, xb)) in row.chunks_exact(block_bytes).zip(x.chunks_exact(32)).enumerate() {
        let q = bytes(b, block_bytes - 16);
        let (lo, hi) = (v128_and(q, nibble), u8x16_shr(q, 4));
        // Nibbles are 0..15: as signed bytes they are the same numbers, and so after − 8.
        let (lo, hi) = if OFFSET { (i8x16_sub(lo, eight), i8x16_sub(hi, eight)) } else { (lo, hi) };
        let p = mul_add(i8_to_f32(lo), load(xb, 0), ZERO);
        let p = mul_add(i8_to_f32(hi), load(xb, 16), p);
        acc = scale_add(crate::block::scale(b, 0), p, acc);
        if !OFFSET {
            minimum = crate::block::scale(b, 2) * block_sums[k] + minimum;
        }
    }
    sum(acc) + minimum
}

/// Q4_K; see the portable `dot_q4_k`.
pub(crate) fn dot_q4_k<const FMA: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let mut acc = ZERO;
    let mut minimum = 0f32;
    let nibble = u8x16_splat(0x0f);
    for (k, (b, xb)) in row.chunks_exact(144).zip(x.chunks_exact(256)).enumerate() {
        let (d, dmin) = (crate::block::scale(b, 0), crate::block::scale(b, 2));
        let scales = &b[4..16];
        for chunk in 0..4 {
            let (sc1, m1) = crate::block::scale_min_k4(2 * chunk, scales);
            let (sc2, m2) = crate::block::scale_min_k4(2 * chunk + 1, scales);
            let (mut p1, mut p2) = (ZERO, ZERO);
            for g in 0..2 {
                let q = bytes(b, 16 + 32 * chunk + 16 * g);
                p1 = mul_add(i8_to_f32(v128_and(q, nibble)), load(xb, 64 * chunk + 16 * g), p1);
                p2 = mul_add(i8_to_f32(u8x16_shr(q, 4)), load(xb, 64 * chunk + 32 + 16 * g), p2);
            }
            acc = scale_add(d * sc1 as f32, p1, acc);
            acc = scale_add(d * sc2 as f32, p2, acc);
            let sums = &block_sums[8 * k + 2 * chunk..];
            minimum = dmin * m1 as f32 * sums[0] + minimum;
            minimum = dmin * m2 as f32 * sums[1] + minimum;
        }
    }
    sum(acc) - minimum
}

/// Q6_K; see the portable `dot_q6_k`.
pub(crate) fn dot_q6_k<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = ZERO;
    let (nibble, two_bits, offset) = (u8x16_splat(0x0f), u8x16_splat(3), i8x16_splat(32));
    for (b, xb) in row.chunks_exact(210).zip(x.chunks_exact(256)) {
        let d = crate::block::scale(b, 208);
        for h in 0..2 {
            let sc = &b[192 + 8 * h..200 + 8 * h];
            for is in 0..2 {
                let at = 16 * is;
                let (lo, lo2, hi) = (bytes(b, 64 * h + at), bytes(b, 64 * h + 32 + at), bytes(b, 128 + 32 * h + at));
                let high = |shift: u32| u8x16_shl(v128_and(u8x16_shr(hi, shift), two_bits), 4);
                let values = [
                    v128_or(v128_and(lo, nibble), high(0)),
                    v128_or(v128_and(lo2, nibble), high(2)),
                    v128_or(u8x16_shr(lo, 4), high(4)),
                    v128_or(u8x16_shr(lo2, 4), high(6)),
                ];
                for (k, q) in values.into_iter().enumerate() {
                    // 0..63 − 32 fits a signed byte.
                    let p = mul_add(i8_to_f32(i8x16_sub(q, offset)), load(xb, 128 * h + 32 * k + at), ZERO);
                    acc = scale_add(d * (sc[is + 2 * k] as i8) as f32, p, acc);
                }
            }
        }
    }
    sum(acc)
}

/// One IQ4 run: 16 bytes of nibbles (elements 0..16 low, 16..32 high) looked up in the sixteen
/// levels by a byte shuffle, against `x[at..at + 32]` (see the portable `iq4_nl::dot_nibbles`).
#[inline(always)]
fn iq4_run(q: v128, x: &[f32], at: usize) -> Lanes {
    // SAFETY: the levels are 16 bytes.
    let levels = unsafe { v128_load(crate::block::IQ4_LEVELS.as_ptr() as *const v128) };
    let nibble = u8x16_splat(0x0f);
    let (lo, hi) = (i8x16_swizzle(levels, v128_and(q, nibble)), i8x16_swizzle(levels, u8x16_shr(q, 4)));
    let p = mul_add(i8_to_f32(lo), load(x, at), ZERO);
    mul_add(i8_to_f32(hi), load(x, at + 16), p)
}

/// IQ4_NL; see the portable `iq4_nl::dot`.
pub(crate) fn dot_iq4_nl<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = ZERO;
    for (b, xb) in row.chunks_exact(18).zip(x.chunks_exact(32)) {
        acc = scale_add(crate::block::scale(b, 0), iq4_run(bytes(b, 2), xb, 0), acc);
    }
    sum(acc)
}

/// IQ4_XS; see the portable `iq4_xs::dot`.
pub(crate) fn dot_iq4_xs<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    let mut acc = ZERO;
    for (b, xb) in row.chunks_exact(136).zip(x.chunks_exact(256)) {
        let d = crate::block::scale(b, 0);
        let scales_high = u16::from_le_bytes([b[2], b[3]]);
        for i in 0..8 {
            let scale = d * crate::block::sub_block_scale(b, scales_high, i);
            acc = scale_add(scale, iq4_run(bytes(b, 8 + 16 * i), xb, 32 * i), acc);
        }
    }
    sum(acc)
}

/// Q5_0 (`OFFSET`) or Q5_1; see the portable `q5_0::dot_five_bit`. Each value's fifth bit: a
/// swizzle spreads the `qh` word's bytes, a compare turns bit j of byte j / 8 into 0 or 16.
pub(crate) fn dot_five_bit<const FMA: bool, const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let (block_bytes, qh_at) = if OFFSET { (22, 2) } else { (24, 4) };
    let mut acc = ZERO;
    let mut minimum = 0f32;
    let (nibble, sixteen) = (u8x16_splat(0x0f), u8x16_splat(16));
    let bit = u64x2_splat(0x8040_2010_0804_0201);
    let (select_low, select_high) = (u8x16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1), u8x16(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    for (k, (b, xb)) in row.chunks_exact(block_bytes).zip(x.chunks_exact(32)).enumerate() {
        let qh = u32x4_splat(u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]));
        let fifth = |select: v128| v128_and(i8x16_eq(v128_and(i8x16_swizzle(qh, select), bit), bit), sixteen);
        let q = bytes(b, qh_at + 4);
        let (lo, hi) = (v128_or(v128_and(q, nibble), fifth(select_low)), v128_or(u8x16_shr(q, 4), fifth(select_high)));
        // Values are 0..31: as signed bytes they are the same numbers, and so after − 16.
        let (lo, hi) = if OFFSET { (i8x16_sub(lo, sixteen), i8x16_sub(hi, sixteen)) } else { (lo, hi) };
        let p = mul_add(i8_to_f32(lo), load(xb, 0), ZERO);
        let p = mul_add(i8_to_f32(hi), load(xb, 16), p);
        acc = scale_add(crate::block::scale(b, 0), p, acc);
        if !OFFSET {
            minimum = crate::block::scale(b, 2) * block_sums[k] + minimum;
        }
    }
    sum(acc) + minimum
}
