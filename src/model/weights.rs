//! Where model weights come from: a GGUF file (renamed, q/k un-permuted) or HF safetensors.
//! Both hand the model tensors addressed by HF path, so the model code has one naming scheme:
//! as f32 values (`load`, `require`), or, for weight matrices, in stored form (`load_stored`).

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, names};
use crate::quant::{Format, StoredMatrix, WeightMode};
use crate::safetensors::SafetensorsWeights;

/// A source of named f32 tensors, row-major, HF layout (`[out, in]` for linear weights).
pub enum WeightSource {
    Gguf(GgufFile),
    Safetensors(SafetensorsWeights),
}

impl WeightSource {
    /// Loads the tensor at HF path `name`, or `None` if the source does not have it.
    /// `heads` is `(n_heads, n_kv_heads)`, needed to un-permute GGUF q/k rows.
    pub fn load(&self, name: &str, heads: (usize, usize)) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        match self {
            WeightSource::Safetensors(st) => st.load(name),
            WeightSource::Gguf(file) => {
                let gguf = names::gguf_name(name)
                    .ok_or_else(|| Error::Model(format!("no GGUF name is known for `{name}`")))?;
                if file.tensor_info(&gguf).is_none() {
                    return Ok(None);
                }
                let (shape, values) = file.dequantize(&gguf)?;
                let values = match self.permuted_heads(name, heads)? {
                    Some(n_heads) => {
                        let cols = if shape.len() == 2 { shape[1] } else { 1 };
                        names::unpermute_rows(&values, n_heads, cols)
                    }
                    None => values,
                };
                Ok(Some((shape, values)))
            }
        }
    }

    /// Whether the source has the tensor at HF path `name`; nothing is read or decoded.
    pub fn has(&self, name: &str) -> bool {
        match self {
            WeightSource::Safetensors(st) => st.contains(name),
            WeightSource::Gguf(file) => names::gguf_name(name).is_some_and(|gguf| file.tensor_info(&gguf).is_some()),
        }
    }

    /// Loads the `[rows, cols]` matrix at HF path `name` in stored form: a GGUF's blocks as they
    /// are, a safetensors' F16/BF16 as 16-bit, or, with `WeightMode::Q8_0`,
    /// f32 values quantized to Q8_0. `None` when the matrix is best held dense (f32 without
    /// quantize-at-load, or rows that are not whole blocks).
    pub fn load_stored(&self, name: &str, rows: usize, cols: usize, heads: (usize, usize), mode: WeightMode) -> Result<Option<StoredMatrix>> {
        if mode == WeightMode::F32 || !cols.is_multiple_of(32) {
            return Ok(None);
        }
        let matrix = match self {
            WeightSource::Gguf(file) => {
                let gguf = names::gguf_name(name)
                    .ok_or_else(|| Error::Model(format!("no GGUF name is known for `{name}`")))?;
                let Some(info) = file.tensor_info(&gguf) else { return Ok(None) };
                if info.shape != [rows, cols] {
                    return Err(Error::Model(format!(
                        "tensor `{gguf}` has shape {:?}, expected {:?}: the weights do not match the model's metadata",
                        info.shape,
                        [rows, cols]
                    )));
                }
                let matrix = match (mode, info.format) {
                    (WeightMode::Q8_0, Format::F32 | Format::F16 | Format::BF16) => {
                        let (_, values) = file.dequantize(&gguf)?;
                        StoredMatrix::quantize_q8_0(&values, rows, cols)?
                    }
                    // f32 is held dense: burn's own matmul is the fastest way to use it.
                    (_, Format::F32) => return Ok(None),
                    (
                        _,
                        Format::F16
                        | Format::BF16
                        | Format::Q4_0
                        | Format::Q4_1
                        | Format::Q5_0
                        | Format::Q5_1
                        | Format::Q8_0
                        | Format::Q2K
                        | Format::Q3K
                        | Format::Q4K
                        | Format::Q5K
                        | Format::Q6K
                        | Format::IQ4NL
                        | Format::IQ4XS
                        | Format::TQ1_0
                        | Format::TQ2_0
                        | Format::MXFP4
                        | Format::IQ2XXS
                        | Format::IQ2XS
                        | Format::IQ2S
                        | Format::IQ3XXS
                        | Format::IQ3S
                        | Format::IQ1S
                        | Format::IQ1M,
                    ) => file.stored_matrix(info, rows, cols)?,
                };
                match self.permuted_heads(name, heads)? {
                    Some(n_heads) => matrix.with_rows_reordered(|bytes, row_bytes| names::unpermute_rows(bytes, n_heads, row_bytes)),
                    None => matrix,
                }
            }
            WeightSource::Safetensors(st) => match (mode, st.raw(name)?) {
                (_, None) => return Ok(None),
                (WeightMode::Q8_0, Some(_)) => {
                    let values = self.require(name, &[rows, cols], heads)?;
                    StoredMatrix::quantize_q8_0(&values, rows, cols)?
                }
                (_, Some((dtype, shape, bytes))) => {
                    if shape != [rows, cols] {
                        return Err(Error::Model(format!(
                            "tensor `{name}` has shape {shape:?}, expected {:?}: the weights do not match the model's metadata",
                            [rows, cols]
                        )));
                    }
                    let format = match dtype {
                        safetensors::Dtype::F16 => Format::F16,
                        safetensors::Dtype::BF16 => Format::BF16,
                        // f32 is held dense: burn's own matmul is the fastest way to use it.
                        _ => return Ok(None),
                    };
                    StoredMatrix::from_bytes(format, rows, cols, bytes)?
                }
            },
        };
        Ok(Some(matrix))
    }

    /// The head count whose q/k rows a GGUF permuted for `name`, if any.
    fn permuted_heads(&self, name: &str, heads: (usize, usize)) -> Result<Option<usize>> {
        let WeightSource::Gguf(file) = self else { return Ok(None) };
        // Only llama-arch GGUF files carry the permutation (see gguf::names).
        Ok(if file.architecture()? != "llama" {
            None
        } else if name.contains("self_attn.q_proj") {
            Some(heads.0)
        } else if name.contains("self_attn.k_proj") {
            Some(heads.1)
        } else {
            None
        })
    }

    /// Loads a tensor that must exist with exactly `expected` shape.
    pub fn require(&self, name: &str, expected: &[usize], heads: (usize, usize)) -> Result<Vec<f32>> {
        let (shape, values) = self.load(name, heads)?.ok_or_else(|| {
            Error::Model(format!("the model file has no tensor `{}`; is it a Llama-family model?", self.display_name(name)))
        })?;
        if shape != expected {
            return Err(Error::Model(format!(
                "tensor `{}` has shape {shape:?}, expected {expected:?}: the weights do not match the model's metadata",
                self.display_name(name)
            )));
        }
        Ok(values)
    }

    /// The name as the user's file spells it, for error messages.
    fn display_name(&self, hf: &str) -> String {
        match self {
            WeightSource::Gguf(_) => names::gguf_name(hf).unwrap_or_else(|| hf.to_string()),
            WeightSource::Safetensors(_) => hf.to_string(),
        }
    }
}
