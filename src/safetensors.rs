//! HF `*.safetensors` reading: bytes in, f32 tensors out by HF path. Sharded checkpoints are
//! several files; the caller passes all of them.

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors};

/// One or more safetensors files, kept as bytes and decoded tensor by tensor.
pub struct SafetensorsWeights {
    files: Vec<Vec<u8>>,
}

impl SafetensorsWeights {
    /// Validates every file's header up front, so a bad file is reported at open time.
    pub fn new(files: Vec<Vec<u8>>) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::Safetensors("no .safetensors file was given".into()));
        }
        for (i, bytes) in files.iter().enumerate() {
            SafeTensors::deserialize(bytes)
                .map_err(|e| Error::Safetensors(format!("safetensors file #{} is corrupt or truncated: {e}", i + 1)))?;
        }
        Ok(SafetensorsWeights { files })
    }

    /// Loads `name` as f32 in row-major order, or `None` if no file has it.
    pub fn load(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        for bytes in &self.files {
            // Cheap: re-reading the header is a JSON parse, not a data copy.
            let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors(e.to_string()))?;
            let Ok(view) = st.tensor(name) else { continue };
            let values = view_to_f32(name, &view)?;
            return Ok(Some((view.shape().to_vec(), values)));
        }
        Ok(None)
    }

    /// `name`'s dtype, shape and raw little-endian bytes, or `None` if no file has it.
    pub fn raw(&self, name: &str) -> Result<Option<(Dtype, Vec<usize>, Vec<u8>)>> {
        for bytes in &self.files {
            let st = SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors(e.to_string()))?;
            let Ok(view) = st.tensor(name) else { continue };
            return Ok(Some((view.dtype(), view.shape().to_vec(), view.data().to_vec())));
        }
        Ok(None)
    }

    /// Every tensor name with its dtype, for `cqa info`.
    pub fn dtypes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for bytes in &self.files {
            if let Ok(st) = SafeTensors::deserialize(bytes) {
                for (name, view) in st.tensors() {
                    out.push((name, format!("{:?}", view.dtype())));
                }
            }
        }
        out
    }
}

/// A tensor's values as f32, from F32, F16 or BF16 storage.
pub fn view_to_f32(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>> {
    let data = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        other => {
            return Err(Error::Safetensors(format!(
                "tensor `{name}` has dtype {other:?}; only F32, F16 and BF16 safetensors are supported"
            )));
        }
    })
}

/// One f32 tensor to write: name, shape (row-major) and values.
pub type F32Tensor<'a> = (String, Vec<usize>, &'a [f32]);

/// Serializes f32 tensors, with string metadata, as one safetensors file.
pub fn write_f32(tensors: &[F32Tensor<'_>], metadata: &[(&str, String)]) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|(_, _, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect()).collect();
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), data) in tensors.iter().zip(&bytes) {
        let view = safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), data)
            .map_err(|e| Error::Safetensors(format!("tensor `{name}`: {e}")))?;
        views.push((name.clone(), view));
    }
    let metadata = metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::Safetensors(format!("could not write safetensors: {e}")))
}
