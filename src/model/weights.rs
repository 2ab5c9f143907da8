//! Where model weights come from: a GGUF file (dequantized, renamed, q/k un-permuted) or HF
//! safetensors. Both hand the model f32 tensors addressed by HF path, so the model code has one
//! naming scheme.

use crate::error::{Error, Result};
use crate::gguf::{GgufFile, names};
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
                // Only llama-arch GGUF files carry the permutation (see gguf::names).
                let permuted_heads = if file.architecture()? != "llama" {
                    None
                } else if name.contains("self_attn.q_proj") {
                    Some(heads.0)
                } else if name.contains("self_attn.k_proj") {
                    Some(heads.1)
                } else {
                    None
                };
                let values = match permuted_heads {
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
