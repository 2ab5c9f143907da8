//! What a model needs in memory once loaded, planned from its files' headers alone by the rules
//! that place its weights (`WeightSource::load_stored`, `StoredWeight::place`, [`for_gpu`]), so
//! that the page can refuse a model too big for the device before reading it: a GGUF file and HF
//! safetensors alike.
//!
//! [`for_gpu`]: super::for_gpu

use super::{Format, MAX_CHUNK_BYTES, PANEL_FLOATS};
use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::safetensors::header_tensors;

/// The memory a model needs once loaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MemoryNeed {
    pub parameters: u64,
    pub file_bytes: u64,
    /// Bytes of weights the engine keeps resident with every weight dequantized to f32
    /// (`--weights f32`).
    pub resident_bytes: u64,
    /// Bytes of weights the engine keeps resident in stored form on the CPU (the default: the
    /// file's blocks, every format; f32 where a matrix is held dense).
    pub resident_bytes_stored: u64,
    /// The same on a GPU, where the formats without GPU kernels go as Q8_0 (`Format::on_gpu`).
    pub resident_bytes_stored_gpu: u64,
    /// The largest single weight buffer, in f32 bytes (a GPU buffer must hold it whole).
    pub largest_tensor_bytes: u64,
    /// The largest single GPU buffer with stored weights: a chunk of a matrix's words (at most
    /// 128 MiB), the f32 panel a chunk is expanded to for a tiled matmul (at most 64 MiB), or an
    /// f32 tensor held dense.
    pub largest_buffer_bytes_stored: u64,
    pub largest_tensor: String,
}

/// One tensor as a file lists it: all that its memory depends on.
#[derive(Debug, Clone)]
pub struct PlannedTensor {
    pub name: String,
    /// Row-major, outermost first.
    pub shape: Vec<usize>,
    /// As the file stores it.
    pub format: Format,
}

impl PlannedTensor {
    fn elements(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// The format the weights take when kept stored: a matrix of whole 32-element groups keeps
    /// the file's; a vector (norms, biases) or a matrix of another width is held as f32.
    fn held(&self) -> Format {
        match self.shape[..] {
            [_, cols] if cols.is_multiple_of(32) => self.format,
            _ => Format::F32,
        }
    }

    /// Bytes it takes with stored weights, on the CPU (the file's blocks) or, with `gpu`, on a
    /// GPU (its words, or those of the conversion the registry names: `Format::on_gpu`).
    fn stored_bytes(&self, gpu: bool) -> u64 {
        let format = if gpu { self.held().on_gpu() } else { self.held() };
        let elements = self.elements() as usize;
        match self.shape[..] {
            // The words a GPU holds (Q5_0 pads its scales to a word).
            [rows, cols] if gpu => match cqa_quant::WordLayout::new(format, cols) {
                Some(layout) => (4 * layout.row_words() * rows) as u64,
                None => format.bytes_for(elements) as u64,
            },
            _ => format.bytes_for(elements) as u64,
        }
    }

    /// The largest GPU buffer it takes with stored weights (see [`MemoryNeed`]).
    fn largest_buffer(&self) -> u64 {
        let f32_bytes = self.elements() * 4;
        if self.held() == Format::F32 {
            f32_bytes
        } else {
            self.stored_bytes(true).min(MAX_CHUNK_BYTES as u64).max(f32_bytes.min(4 * PANEL_FLOATS as u64))
        }
    }
}

impl MemoryNeed {
    /// The need of a model whose files (`file_bytes` in all) hold `tensors`.
    pub fn plan(tensors: &[PlannedTensor], file_bytes: u64) -> MemoryNeed {
        let largest = tensors.iter().max_by_key(|t| t.elements());
        MemoryNeed {
            parameters: tensors.iter().map(PlannedTensor::elements).sum(),
            file_bytes,
            resident_bytes: tensors.iter().map(|t| t.elements() * 4).sum(),
            resident_bytes_stored: tensors.iter().map(|t| t.stored_bytes(false)).sum(),
            resident_bytes_stored_gpu: tensors.iter().map(|t| t.stored_bytes(true)).sum(),
            largest_tensor_bytes: largest.map_or(0, |t| t.elements() * 4),
            largest_buffer_bytes_stored: tensors.iter().map(PlannedTensor::largest_buffer).max().unwrap_or(0),
            largest_tensor: largest.map(|t| t.name.clone()).unwrap_or_default(),
        }
    }

    /// The need of the GGUF file of `file_len` bytes that starts with `head`, from its header
    /// alone. `Ok(None)`: `head` ends inside the header; call again with more of the file.
    pub fn of_gguf(head: &[u8], file_len: usize) -> Result<Option<MemoryNeed>> {
        let Some(tensors) = GgufFile::read_tensor_index(head, file_len)? else { return Ok(None) };
        let tensors: Vec<PlannedTensor> =
            tensors.into_iter().map(|t| PlannedTensor { name: t.name, shape: t.shape, format: t.format }).collect();
        Ok(Some(Self::plan(&tensors, file_len as u64)))
    }

    /// The need of an HF model from its safetensors shards: each one's first bytes (its 8-byte
    /// header length and its JSON header, at least) and its size. A header that is not one, or
    /// that does not fit its file, is refused naming the shard.
    pub fn of_safetensors(shards: &[(&[u8], u64)]) -> Result<MemoryNeed> {
        let mut tensors = Vec::new();
        for (i, &(head, size)) in shards.iter().enumerate() {
            let listed = header_tensors(head, size)
                .map_err(|e| Error::Safetensors(format!("safetensors file #{} is not one the engine can read: {e}", i + 1)))?;
            for (name, dtype, shape) in listed {
                let format = match dtype {
                    safetensors::Dtype::F32 => Format::F32,
                    safetensors::Dtype::F16 => Format::F16,
                    safetensors::Dtype::BF16 => Format::BF16,
                    other => {
                        return Err(Error::Safetensors(format!(
                            "tensor `{name}` has dtype {other:?}; only F32, F16 and BF16 safetensors are supported"
                        )));
                    }
                };
                tensors.push(PlannedTensor { name, shape, format });
            }
        }
        Ok(Self::plan(&tensors, shards.iter().map(|&(_, size)| size).sum()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(name: &str, shape: &[usize], format: Format) -> PlannedTensor {
        PlannedTensor { name: name.into(), shape: shape.to_vec(), format }
    }

    #[test]
    fn a_plan_counts_each_tensor_in_the_form_it_is_held() {
        let need = MemoryNeed::plan(
            &[
                tensor("embed", &[1000, 64], Format::Q8_0),
                tensor("odd", &[10, 48], Format::F16), // not whole 32-groups: held as f32
                tensor("norm", &[64], Format::BF16),   // a vector: f32
                tensor("proj", &[64, 256], Format::Q3K),
            ],
            123,
        );
        assert_eq!(need.parameters, 64_000 + 480 + 64 + 16_384);
        assert_eq!(need.file_bytes, 123);
        assert_eq!(need.resident_bytes, 4 * need.parameters);
        let q8 = 64_000 / 32 * 34;
        let q3 = 16_384 / 256 * 110;
        assert_eq!(need.resident_bytes_stored, (q8 + 4 * 480 + 4 * 64 + q3) as u64);
        // On a GPU Q3_K goes as Q8_0 (the kernels do not read it): more than on the CPU.
        assert!(need.resident_bytes_stored_gpu > need.resident_bytes_stored);
        assert_eq!(need.largest_tensor, "embed");
        assert_eq!(need.largest_tensor_bytes, 256_000);
    }

    #[test]
    fn safetensors_headers_give_the_need_of_their_dtypes() {
        let f32s = vec![0u8; 64 * 32 * 4];
        let bf16s = vec![0u8; 64 * 32 * 2];
        let norm = vec![0u8; 32 * 2];
        let views = vec![
            ("a.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![64, 32], &f32s).unwrap()),
            ("b.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![64, 32], &bf16s).unwrap()),
            ("n.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::BF16, vec![32], &norm).unwrap()),
        ];
        let file = safetensors::serialize(views, None).unwrap();
        let header_end = 8 + u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
        // The header alone is enough.
        let need = MemoryNeed::of_safetensors(&[(&file[..header_end], file.len() as u64)]).unwrap();
        assert_eq!(need.parameters, 2 * 64 * 32 + 32);
        assert_eq!(need.file_bytes, file.len() as u64);
        // f32 and the norm as f32; the BF16 matrix kept in its 16 bits.
        assert_eq!(need.resident_bytes_stored, (64 * 32 * 4 + 64 * 32 * 2 + 32 * 4) as u64);
        assert_eq!(need.resident_bytes, 4 * need.parameters);
        // A header cut short, or one whose tensors run past the file, is refused.
        let err = MemoryNeed::of_safetensors(&[(&file[..header_end - 1], file.len() as u64)]).unwrap_err().to_string();
        assert!(err.contains("safetensors file #1"), "{err}");
        let err = MemoryNeed::of_safetensors(&[(&file[..header_end], file.len() as u64 - 1)]).unwrap_err().to_string();
        assert!(err.contains("past the end"), "{err}");
    }
}
