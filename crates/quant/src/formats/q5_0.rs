//! Q5_0: blocks of 32 — an f16 scale `d`, four bytes `qh` holding each element's fifth bit
//! (bit j for element j, as one little-endian u32), then 16 bytes of low nibbles laid out as
//! Q4_0's; value `d·(q − 16)`, q in 0..32. 5.5 bits a weight. llama.cpp writes it for the
//! matrices of a Q4_K_M / Q5_K_M file whose rows are not whole 256-blocks (widths 576, 896…).

use super::{LANES, madd, scale};

/// The 32 five-bit values of a Q5_0 / Q5_1 block from its `qh` word and 16 nibble bytes.
#[inline(always)]
pub(crate) fn five_bit(qh: u32, qs: &[u8], l: usize) -> (i32, i32) {
    let lo = (qs[l] & 0x0f) as u32 | (((qh >> l) & 1) << 4);
    let hi = (qs[l] >> 4) as u32 | (((qh >> (l + 16)) & 1) << 4);
    (lo as i32, hi as i32)
}

pub(crate) fn decode(bytes: &[u8], out: &mut [f32]) {
    for (b, y) in bytes.chunks_exact(22).zip(out.chunks_exact_mut(32)) {
        let d = scale(b, 0);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for l in 0..16 {
            let (lo, hi) = five_bit(qh, &b[6..22], l);
            y[l] = (lo - 16) as f32 * d;
            y[l + 16] = (hi - 16) as f32 * d;
        }
    }
}

#[inline(always)]
pub(crate) fn dot<const FMA: bool>(row: &[u8], x: &[f32]) -> f32 {
    dot_five_bit::<FMA, true>(row, x, &[])
}

/// Q5_0 (`OFFSET`: value `(q − 16)·d`) or Q5_1 (value `q·d + min`, the min times Σx per block).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub(crate) fn dot_five_bit<const FMA: bool, const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if FMA {
        // SAFETY: the FMA kernels run only at the AVX2 level and above (`kernels::dot_rows`),
        // and the wide ones only at AVX-512.
        return unsafe { if crate::kernels::wide_lanes() { crate::avx512::dot_five_bit::<OFFSET>(row, x, block_sums) } else { crate::avx2::dot_five_bit::<OFFSET>(row, x, block_sums) } };
    }
    dot_five_bit_portable::<FMA, OFFSET>(row, x, block_sums)
}

/// [`dot_five_bit`] without the arch files (the reference the AVX2 version is tested against).
#[cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]
#[inline(always)]
pub(crate) fn dot_five_bit_portable<const FMA: bool, const OFFSET: bool>(row: &[u8], x: &[f32], block_sums: &[f32]) -> f32 {
    let (block_bytes, qh_at) = if OFFSET { (22, 2) } else { (24, 4) };
    let mut acc = [0f32; LANES];
    let mut minimum = 0f32;
    for (k, (b, xb)) in row.chunks_exact(block_bytes).zip(x.chunks_exact(32)).enumerate() {
        let d = scale(b, 0);
        let qh = u32::from_le_bytes([b[qh_at], b[qh_at + 1], b[qh_at + 2], b[qh_at + 3]]);
        let qs = &b[qh_at + 4..qh_at + 20];
        let mut p = [0f32; LANES];
        for l in 0..LANES {
            let (lo, hi) = five_bit(qh, qs, l);
            let (lo, hi) = if OFFSET { (lo - 16, hi - 16) } else { (lo, hi) };
            p[l] = madd::<FMA>(lo as f32, xb[l], p[l]);
            p[l] = madd::<FMA>(hi as f32, xb[LANES + l], p[l]);
        }
        for l in 0..LANES {
            acc[l] = madd::<FMA>(d, p[l], acc[l]);
        }
        if !OFFSET {
            minimum = madd::<FMA>(scale(b, 2), block_sums[k], minimum);
        }
    }
    acc.iter().sum::<f32>() + minimum
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use crate::simd128::dot_five_bit;

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn by_hand() {
        // d = 0.5; element 0: nibble 3, fifth bit set → 19 − 16 = 3 → 1.5; element 16: nibble
        // 0, fifth bit clear → −16 → −8; element 17: nibble 15 with bit 17 set → 31 − 16 → 7.5.
        let mut b = vec![0u8; 22];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2..6].copy_from_slice(&(1u32 | 1 << 17).to_le_bytes());
        b[6] = 0x03;
        b[7] = 0xf0;
        let mut y = [0f32; 32];
        decode(&b, &mut y);
        assert_eq!((y[0], y[16], y[17], y[1]), (1.5, -8.0, 7.5, -8.0));
    }
}
