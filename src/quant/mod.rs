//! Weights kept in their stored form, in the engine: which form a model's weights take
//! (`WeightMode`), GGUF tensors to [`StoredMatrix`] (K-quants converted), and the burn operation
//! that multiplies by one (`op`). The matrices and their CPU kernels are the `cqa-quant` crate.
//!
//! A GGUF's weights are already quantized, so computing from its blocks loses nothing. Q4_K and
//! Q6_K are kept as they are too (on the GPU, Q6_K goes as Q8_0: its kernels do not read Q6_K);
//! Q5_K is converted once at load to Q8_0 (8.5 bits a weight, finer than Q5_K's 5.5); that drift
//! is measured against transformers in BENCHMARKS.md.

#[cfg(feature = "gpu-kernels")]
pub mod gpu;
pub mod op;

use crate::error::{Error, Result};
use crate::gguf::dequant::{self, GgmlType};
pub use cqa_quant::{QuantError, StoredFormat, StoredMatrix};

/// The largest f32 panel of a stored matrix the GPU's tiled path expands at once (64 MiB).
pub const PANEL_FLOATS: usize = 16 << 20;

/// The largest GPU buffer a chunk of a stored matrix's words takes: WebGPU's default
/// `maxStorageBufferBindingSize` (128 MiB), which every adapter offers.
pub const MAX_CHUNK_BYTES: usize = 128 << 20;

/// How a model's weights are held in memory (`--weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// As the file stores them (Q5_K as Q8_0): the default.
    #[default]
    Stored,
    /// Every weight dequantized to f32 (the engine's earlier behaviour; for comparison).
    F32,
    /// f32 weights (a safetensors export) quantized to Q8_0 once, at load, so a downloaded HF
    /// model takes about a quarter of the memory.
    Q8_0,
}

impl std::str::FromStr for WeightMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stored" => Ok(Self::Stored),
            "f32" => Ok(Self::F32),
            "q8_0" | "Q8_0" => Ok(Self::Q8_0),
            other => Err(Error::Input(format!("unknown weight mode `{other}`: use `stored`, `f32` or `q8_0`"))),
        }
    }
}

/// The format a ggml type is kept in on the CPU: itself, or Q8_0 for Q5_K.
pub fn stored_format(ty: GgmlType) -> StoredFormat {
    match ty {
        GgmlType::F32 => StoredFormat::F32,
        GgmlType::F16 => StoredFormat::F16,
        GgmlType::BF16 => StoredFormat::BF16,
        GgmlType::Q8_0 => StoredFormat::Q8_0,
        GgmlType::Q4_0 => StoredFormat::Q4_0,
        GgmlType::Q4_1 => StoredFormat::Q4_1,
        GgmlType::Q4K => StoredFormat::Q4K,
        GgmlType::Q6K => StoredFormat::Q6K,
        GgmlType::Q5K => StoredFormat::Q8_0,
    }
}

/// The format a stored matrix takes on a GPU: itself, or Q8_0 for Q6_K, which the GPU kernels
/// do not read.
pub fn gpu_format(format: StoredFormat) -> StoredFormat {
    match format {
        StoredFormat::Q6K => StoredFormat::Q8_0,
        other => other,
    }
}

/// A tensor as a ggml file encodes it: kept as is, or (Q5_K) converted to Q8_0.
pub fn from_ggml(ty: GgmlType, rows: usize, cols: usize, bytes: &[u8]) -> Result<StoredMatrix> {
    let format = stored_format(ty);
    if format.name() == ty.name() {
        return StoredMatrix::from_bytes(format, rows, cols, bytes.to_vec()).map_err(gguf_error);
    }
    let values = dequant::dequantize(ty, bytes, rows * cols)?;
    StoredMatrix::quantize_q8_0(&values, rows, cols).map_err(gguf_error)
}

fn gguf_error(e: QuantError) -> Error {
    Error::Gguf(e.0)
}

impl From<QuantError> for Error {
    fn from(e: QuantError) -> Self {
        Error::Model(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use half::f16;

    #[test]
    fn stored_blocks_keep_their_format_and_decode_row_by_row_like_the_whole_tensor() {
        // Both sides share the block decoder, which tests/dequant_reference.rs checks against the
        // `gguf` Python package; this checks the format kept and the row layout.
        let mut rng = Rng::new(7);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1, GgmlType::Q4K, GgmlType::Q6K] {
            let n_blocks = 3 * 256 / ty.block_elements();
            let mut bytes = Vec::new();
            for _ in 0..n_blocks {
                let mut block: Vec<u8> = (0..ty.block_bytes()).map(|_| (rng.uniform() * 256.0) as u8).collect();
                let d_at = if ty == GgmlType::Q6K { 208 } else { 0 };
                block[d_at..d_at + 2].copy_from_slice(&f16::from_f32(0.03).to_le_bytes());
                if matches!(ty, GgmlType::Q4_1 | GgmlType::Q4K) {
                    block[2..4].copy_from_slice(&f16::from_f32(-0.1).to_le_bytes());
                }
                bytes.extend(block);
            }
            let m = from_ggml(ty, 3, 256, &bytes).unwrap();
            assert_eq!(m.format.name(), ty.name());
            assert_eq!(m.to_f32(), dequant::dequantize(ty, &bytes, 3 * 256).unwrap(), "{ty:?}");
        }
    }

    #[test]
    fn q5_k_becomes_q8_0_within_half_a_step() {
        // A Q5_K block of random bytes with small scales, converted once at load.
        let mut rng = Rng::new(5);
        let mut b: Vec<u8> = (0..176).map(|_| (rng.uniform() * 256.0) as u8).collect();
        b[0..2].copy_from_slice(&f16::from_f32(0.001).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(0.002).to_le_bytes());
        let exact = dequant::dequantize(GgmlType::Q5K, &b, 256).unwrap();
        let m = from_ggml(GgmlType::Q5K, 1, 256, &b).unwrap();
        assert_eq!(m.format, StoredFormat::Q8_0);
        for (block_x, block_y) in exact.chunks(32).zip(m.to_f32().chunks(32)) {
            let step = block_x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            for (a, b) in block_x.iter().zip(block_y) {
                // Half a step, plus 127 times the f16 rounding of the step.
                assert!((a - b).abs() <= step * (0.5 + 127.0 / 2048.0), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn short_k_quant_data_is_a_gguf_error() {
        assert!(matches!(from_ggml(GgmlType::Q4K, 1, 256, &[0; 100]), Err(Error::Gguf(_))));
        assert!(matches!(from_ggml(GgmlType::Q8_0, 1, 32, &[0; 33]), Err(Error::Gguf(_))));
    }
}
