//! A model file's bytes, wherever they are: in memory (read whole, or mapped natively), or read
//! range by range as they are needed (a browser's `Blob`, read slice by slice: then a file whose
//! weights go to a GPU is never held whole in the tab). The GGUF and safetensors readers take
//! either.

use crate::error::{Error, Result};
use std::borrow::Cow;

pub use cqa_quant::SharedBuffer;

/// Reads ranges of a model file that is not held in memory.
pub trait RangeRead {
    /// Fills `out` with the file's bytes from `offset` on; the caller keeps ranges inside the file.
    fn read_into(&self, offset: usize, out: &mut [u8]) -> Result<()>;
}

/// A model file's bytes: in memory, or read by range.
pub enum FileBytes {
    Whole(SharedBuffer),
    Ranged { reader: Box<dyn RangeRead>, len: usize },
}

impl FileBytes {
    /// A file read into memory.
    pub fn whole(bytes: Vec<u8>) -> Self {
        FileBytes::Whole(std::sync::Arc::new(bytes))
    }

    pub fn len(&self) -> usize {
        match self {
            FileBytes::Whole(bytes) => (**bytes).as_ref().len(),
            FileBytes::Ranged { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `len` bytes from `offset`, which the caller keeps inside the file: borrowed from a file in
    /// memory, read from a ranged one into a buffer of their own (`what` names them when the
    /// memory for it is lacking).
    pub fn range(&self, offset: usize, len: usize, what: &str) -> Result<Cow<'_, [u8]>> {
        match self {
            FileBytes::Whole(bytes) => Ok((**bytes).as_ref()[offset..offset + len].into()),
            FileBytes::Ranged { reader, .. } => {
                let mut out = Vec::new();
                out.try_reserve_exact(len).map_err(|_| {
                    Error::Model(format!(
                        "out of memory: {what} needs {:.1} MiB to be read; close other tabs or choose a smaller model",
                        len as f64 / (1024.0 * 1024.0)
                    ))
                })?;
                out.resize(len, 0);
                reader.read_into(offset, &mut out)?;
                Ok(out.into())
            }
        }
    }
}
