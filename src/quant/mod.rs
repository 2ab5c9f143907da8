//! Weights kept in their stored form, in the engine: which form a model's weights take
//! (`WeightMode`), GGUF tensors to [`StoredMatrix`], the burn operation that multiplies by one
//! (`op`), and the memory the weights will take, planned from the files' headers (`need`). The
//! matrices, the format registry and the CPU kernels are the `cqa-quant` crate.
//!
//! A GGUF's weights are already quantized, so computing from its blocks loses nothing. The CPU
//! keeps every format of the registry as the file has it; a GPU reads the formats with a word
//! layout from their blocks and takes the others as Q8_0, converted once at load (8.5 bits a
//! weight, at least as fine as any of them: see `Format::on_gpu`); that drift is measured
//! against transformers in BENCHMARKS.md.

#[cfg(feature = "gpu-kernels")]
pub mod gpu;
mod need;
pub mod op;

use crate::error::{Error, Result};
pub use cqa_quant::{Format, QuantError, StoredMatrix};
pub use need::{MemoryNeed, PlannedTensor};

/// The largest f32 panel of a stored matrix the GPU's tiled path expands at once (64 MiB).
pub const PANEL_FLOATS: usize = 16 << 20;

/// The largest GPU buffer a chunk of a stored matrix's words takes: WebGPU's default
/// `maxStorageBufferBindingSize` (128 MiB), which every adapter offers.
pub const MAX_CHUNK_BYTES: usize = 128 << 20;

/// How a model's weights are held in memory (`--weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightMode {
    /// As the file stores them: the default.
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

/// A tensor as a ggml file encodes it, kept as it is.
pub fn from_ggml(format: Format, rows: usize, cols: usize, bytes: &[u8]) -> Result<StoredMatrix> {
    StoredMatrix::from_bytes(format, rows, cols, bytes.to_vec()).map_err(gguf_error)
}

/// `matrix` in the format a GPU holds it in: itself, or its conversion (see `Format::on_gpu`).
pub fn for_gpu(matrix: &StoredMatrix) -> Result<std::borrow::Cow<'_, StoredMatrix>> {
    match matrix.format.on_gpu() {
        same if same == matrix.format => Ok(std::borrow::Cow::Borrowed(matrix)),
        Format::Q8_0 => Ok(std::borrow::Cow::Owned(matrix.to_q8_0()?)),
        other => Err(Error::Model(format!("no conversion from {} to {} is written", matrix.format.name(), other.name()))),
    }
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
    use crate::gguf::dequant;
    use crate::rng::Rng;
    use half::f16;

    /// Random blocks of `format` with the f16 field at `d_at` set to a small scale.
    fn blocks(format: Format, n_elements: usize, rng: &mut Rng) -> Vec<u8> {
        let mut bytes = Vec::new();
        for _ in 0..n_elements / format.block_elements() {
            let mut block: Vec<u8> = (0..format.block_bytes()).map(|_| (rng.uniform() * 256.0) as u8).collect();
            if block.len() > 2 && format != Format::MXFP4 {
                // Every quantized format's f16 fields: zeroed to a small value wherever they sit
                // (their own tests check the layouts), so the values stay finite.
                for at in (0..block.len() - 1).step_by(2) {
                    if !f16::from_le_bytes([block[at], block[at + 1]]).is_finite() {
                        block[at + 1] = 0;
                    }
                }
            } else if format == Format::MXFP4 {
                block[0] = 120;
            }
            if format == Format::IQ1M {
                // Its d is the top nibbles of its last four u16: clear its exponent's top bit.
                block[55] &= !0x40;
            }
            if matches!(format, Format::F16 | Format::BF16 | Format::F32) {
                block = match format {
                    Format::F32 => 0.25f32.to_le_bytes().to_vec(),
                    _ => f16::from_f32(0.25).to_le_bytes().to_vec(),
                };
            }
            bytes.extend(block);
        }
        bytes
    }

    #[test]
    fn stored_blocks_keep_their_format_and_decode_row_by_row_like_the_whole_tensor() {
        // Both sides share the block decoder, which tests/dequant_reference.rs checks against the
        // `gguf` Python package; this checks the format kept and the row layout.
        let mut rng = Rng::new(7);
        for format in Format::ALL {
            let bytes = blocks(format, 3 * 256, &mut rng);
            let m = from_ggml(format, 3, 256, &bytes).unwrap();
            assert_eq!(m.format, format);
            let whole = dequant::dequantize(format, &bytes, 3 * 256).unwrap();
            let rows = m.to_f32();
            assert!(rows.iter().zip(&whole).all(|(a, b)| a.to_bits() == b.to_bits()), "{format:?}");
        }
    }

    #[test]
    fn formats_without_gpu_words_become_q8_0_within_half_a_step() {
        let mut rng = Rng::new(5);
        for format in Format::ALL {
            let bytes = blocks(format, 2 * 256, &mut rng);
            let m = from_ggml(format, 2, 256, &bytes).unwrap();
            let on_gpu = for_gpu(&m).unwrap();
            assert_eq!(on_gpu.format, format.on_gpu());
            if on_gpu.format == format {
                continue;
            }
            assert_eq!(on_gpu.format, Format::Q8_0);
            for (block_x, block_y) in m.to_f32().chunks(32).zip(on_gpu.to_f32().chunks(32)) {
                let step = block_x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                for (a, b) in block_x.iter().zip(block_y) {
                    // Half a step, plus 127 times the f16 rounding of the step: half a unit in
                    // its last place, which for a subnormal f16 (a step below 2^-14) is 2^-25.
                    let step_rounding = (step / 2048.0).max(2f32.powi(-25));
                    assert!((a - b).abs() <= 0.5 * step + 127.0 * step_rounding, "{format:?}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn short_k_quant_data_is_a_gguf_error() {
        assert!(matches!(from_ggml(Format::Q4K, 1, 256, &[0; 100]), Err(Error::Gguf(_))));
        assert!(matches!(from_ggml(Format::Q8_0, 1, 32, &[0; 33]), Err(Error::Gguf(_))));
    }
}
