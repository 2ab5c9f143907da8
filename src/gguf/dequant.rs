//! Dequantization of ggml tensor encodings to f32, following ggml's reference
//! `dequantize_row_*` routines (ggml-quants.c). Checked against the `gguf` Python package in
//! `tests/dequant_reference.rs`.

use crate::error::{Error, Result};
use cqa_quant::{StoredFormat, dequantize_block, scale_min_k4};
use half::{bf16, f16};

/// The ggml tensor encodings this engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q4K,
    Q5K,
    Q6K,
}

/// Elements per super-block of the K-quants.
const QK_K: usize = 256;

impl GgmlType {
    /// Maps a ggml type id (from the GGUF tensor info) to a supported type.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            30 => Self::BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q5K => 13,
            Self::Q6K => 14,
            Self::BF16 => 30,
        }
    }

    pub fn name(self) -> &'static str {
        ggml_type_name(self.id())
    }

    /// Elements per block.
    pub fn block_elements(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q8_0 | Self::Q4_0 | Self::Q4_1 => 32,
            Self::Q4K | Self::Q5K | Self::Q6K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q8_0 => 2 + 32,
            Self::Q4_0 => 2 + 16,
            Self::Q4_1 => 2 + 2 + 16,
            Self::Q4K => 2 + 2 + 12 + QK_K / 2,
            Self::Q5K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            Self::Q6K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
        }
    }
}

/// Human name of any ggml type id, supported or not (for error messages and `cqa info`).
pub fn ggml_type_name(id: u32) -> &'static str {
    match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16..=23 | 29 => "IQ (i-quant)",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        _ => "unknown",
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Dequantizes `n_elements` values encoded as `ty` in `bytes`.
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    let block = ty.block_elements();
    if !n_elements.is_multiple_of(block) || bytes.len() != n_elements / block * ty.block_bytes() {
        return Err(Error::Gguf(format!(
            "{} data of {} bytes cannot hold {n_elements} elements",
            ty.name(),
            bytes.len()
        )));
    }
    let mut out = vec![0f32; n_elements];
    let blocks = bytes.chunks_exact(ty.block_bytes()).zip(out.chunks_exact_mut(block));
    match ty {
        GgmlType::F32 => {
            for (b, y) in blocks {
                y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        GgmlType::F16 => {
            for (b, y) in blocks {
                y[0] = f16_at(b, 0);
            }
        }
        GgmlType::BF16 => {
            for (b, y) in blocks {
                y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        // The block decoders the stored-weight kernels use: one copy of each format.
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| dequantize_block(StoredFormat::Q8_0, b, y)),
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| dequantize_block(StoredFormat::Q4_0, b, y)),
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| dequantize_block(StoredFormat::Q4_1, b, y)),
        GgmlType::Q4K => blocks.for_each(|(b, y)| dequantize_block(StoredFormat::Q4K, b, y)),
        GgmlType::Q5K => blocks.for_each(|(b, y)| q5_k(b, y)),
        GgmlType::Q6K => blocks.for_each(|(b, y)| dequantize_block(StoredFormat::Q6K, b, y)),
    }
    Ok(out)
}

/// Q5_K: like Q4_K plus a fifth bit per element in `qh` (32 bytes, one bit-plane per sub-block).
fn q5_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let dmin = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let qs = &b[48..176];
    for (chunk, (ql, y)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        for l in 0..32 {
            let hi1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let hi2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0x0f) + hi1) as f32 - m1;
            y[l + 32] = d2 * ((ql[l] >> 4) + hi2) as f32 - m2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_by_hand() {
        // d = 0.5; byte 0x1f: low nibble 15 → (15-8)*0.5 = 3.5, high nibble 1 → (1-8)*0.5 = -3.5.
        let mut b = vec![0u8; 18];
        b[0..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 0x1f;
        let y = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!(y[0], 3.5);
        assert_eq!(y[16], -3.5);
        assert_eq!(y[1], -4.0);
    }

    #[test]
    fn q8_0_by_hand() {
        let mut b = vec![0u8; 34];
        b[0..2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        b[2] = (-4i8) as u8;
        b[33] = 8;
        let y = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!((y[0], y[31]), (-1.0, 2.0));
    }

    #[test]
    fn length_mismatch_is_an_error() {
        assert!(dequantize(GgmlType::Q4_1, &[0u8; 19], 32).is_err());
        assert!(dequantize(GgmlType::Q6K, &[0u8; 210], 255).is_err());
    }

    #[test]
    fn block_sizes_match_ggml() {
        assert_eq!(GgmlType::Q4K.block_bytes(), 144);
        assert_eq!(GgmlType::Q5K.block_bytes(), 176);
        assert_eq!(GgmlType::Q6K.block_bytes(), 210);
    }
}
