//! HF `*.safetensors` reading: bytes in, f32 tensors out by HF path. Sharded checkpoints are
//! several files; the caller passes all of them. Each file's header is read once into an index;
//! a tensor's bytes are taken from the file when it is asked for, so a file read by range (a
//! browser's `Blob`, see [`FileBytes`]) is never held whole.

use crate::error::{Error, Result};
use crate::file_bytes::FileBytes;
use safetensors::Dtype;
use std::collections::BTreeMap;

/// The largest header read (the safetensors crate's own bound): a real one is under 1 MB.
const MAX_HEADER_BYTES: u64 = 100 << 20;

/// One or more safetensors files and the index of their tensors.
pub struct SafetensorsWeights {
    files: Vec<FileBytes>,
    /// Where each tensor is; a name in several shards is taken from the first.
    index: BTreeMap<String, Listed>,
}

/// A tensor as a header lists it.
struct Listed {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Its bytes in the file.
    offset: usize,
    len: usize,
}

impl SafetensorsWeights {
    /// Files read into memory (see [`SafetensorsWeights::from_files`]).
    pub fn new(files: Vec<Vec<u8>>) -> Result<Self> {
        Self::from_files(files.into_iter().map(FileBytes::whole).collect())
    }

    /// Reads every file's header up front, so a bad file is reported at open time.
    pub fn from_files(files: Vec<FileBytes>) -> Result<Self> {
        if files.is_empty() {
            return Err(Error::Safetensors("no .safetensors file was given".into()));
        }
        let mut index = BTreeMap::new();
        for (i, file) in files.iter().enumerate() {
            let corrupt = |e: Error| Error::Safetensors(format!("safetensors file #{} is corrupt or truncated: {e}", i + 1));
            let size = file.len() as u64;
            if size < 8 {
                return Err(corrupt(Error::Safetensors("it is shorter than its 8-byte header length".into())));
            }
            let n = u64::from_le_bytes(file.range(0, 8, "a safetensors header")?.as_ref().try_into().expect("8 bytes"));
            if n > MAX_HEADER_BYTES || n > size - 8 {
                return Err(corrupt(Error::Safetensors(format!("its header claims {n} bytes, but the file has {size}"))));
            }
            let head = file.range(0, 8 + n as usize, "a safetensors header")?;
            for (name, dtype, shape, (start, end)) in listed_tensors(&head, size).map_err(corrupt)? {
                let offset = (8 + n + start) as usize;
                index.entry(name).or_insert(Listed { file: i, dtype, shape, offset, len: (end - start) as usize });
            }
        }
        Ok(SafetensorsWeights { files, index })
    }

    /// The bytes of a listed tensor.
    fn bytes(&self, name: &str, t: &Listed) -> Result<std::borrow::Cow<'_, [u8]>> {
        self.files[t.file].range(t.offset, t.len, &format!("tensor `{name}`"))
    }

    /// Loads `name` as f32 in row-major order, or `None` if no file has it.
    pub fn load(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(t) = self.index.get(name) else { return Ok(None) };
        let values = bytes_to_f32(name, t.dtype, &self.bytes(name, t)?)?;
        Ok(Some((t.shape.clone(), values)))
    }

    /// Whether a file has `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// `name`'s dtype, shape and raw little-endian bytes, or `None` if no file has it.
    pub fn raw(&self, name: &str) -> Result<Option<(Dtype, Vec<usize>, Vec<u8>)>> {
        let Some(t) = self.index.get(name) else { return Ok(None) };
        Ok(Some((t.dtype, t.shape.clone(), self.bytes(name, t)?.into_owned())))
    }

    /// Every tensor name with its dtype, for `cqa info`.
    pub fn dtypes(&self) -> Vec<(String, String)> {
        self.index.iter().map(|(name, t)| (name.clone(), format!("{:?}", t.dtype))).collect()
    }
}

/// Every tensor a safetensors file of `size` bytes lists (name, dtype, shape), read from its
/// first bytes `head` (its 8-byte header length and JSON header, at least): so a model's memory
/// is known before the file is read. Each tensor's extent is checked against its shape and
/// against the file's size.
pub fn header_tensors(head: &[u8], size: u64) -> Result<Vec<(String, Dtype, Vec<usize>)>> {
    Ok(listed_tensors(head, size)?.into_iter().map(|(name, dtype, shape, _)| (name, dtype, shape)).collect())
}

/// [`header_tensors`] with each tensor's byte range in the data section (after the header).
fn listed_tensors(head: &[u8], size: u64) -> Result<Vec<(String, Dtype, Vec<usize>, (u64, u64))>> {
    #[derive(serde::Deserialize)]
    struct Entry {
        dtype: Dtype,
        shape: Vec<usize>,
        data_offsets: (u64, u64),
    }
    let bad = |why: String| Error::Safetensors(why);
    let n = head.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let n = n.ok_or_else(|| bad("it is shorter than its 8-byte header length".into()))?;
    if n > size.saturating_sub(8) {
        return Err(bad(format!("its header claims {n} bytes, but the file has {size}")));
    }
    let json = usize::try_from(n).ok().and_then(|n| head.get(8..8 + n));
    let json = json.ok_or_else(|| bad(format!("only {} of its {n}-byte header were given", head.len().saturating_sub(8))))?;
    let entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(json).map_err(|e| bad(format!("its header is not valid JSON: {e}")))?;
    let data_bytes = size - 8 - n;
    let mut out = Vec::with_capacity(entries.len());
    for (name, value) in entries {
        if name == "__metadata__" {
            continue;
        }
        let entry: Entry = serde_json::from_value(value).map_err(|e| bad(format!("tensor `{name}` is described wrongly: {e}")))?;
        let elements = entry.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let bytes = elements.and_then(|e| e.checked_mul(entry.dtype.bitsize() as u64)).map(|bits| bits.div_ceil(8));
        let (start, end) = entry.data_offsets;
        if start > end || bytes != Some(end - start) {
            return Err(bad(format!("tensor `{name}` takes bytes {start}..{end}, which do not hold its shape {:?}", entry.shape)));
        }
        if end > data_bytes {
            return Err(bad(format!("tensor `{name}` runs past the end of the file ({end} of {data_bytes} data bytes)")));
        }
        out.push((name, entry.dtype, entry.shape, (start, end)));
    }
    Ok(out)
}

/// A tensor's values as f32, from F32, F16 or BF16 storage.
pub fn view_to_f32(name: &str, view: &safetensors::tensor::TensorView<'_>) -> Result<Vec<f32>> {
    bytes_to_f32(name, view.dtype(), view.data())
}

/// A tensor's little-endian `data` of `dtype` as f32 values (F32, F16 or BF16).
fn bytes_to_f32(name: &str, dtype: Dtype, data: &[u8]) -> Result<Vec<f32>> {
    Ok(match dtype {
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
