//! GGUF container reader, following the GGUF spec (ggml `docs/gguf.md`, versions 2 and 3):
//! header, metadata key/values of every type, tensor infos, alignment, and the data section.
//!
//! Parsing never trusts a length field: every count is checked against the bytes that remain,
//! so a truncated or corrupted file yields an [`Error::Gguf`] naming the field, never a panic
//! or a giant allocation.

pub mod dequant;
pub mod names;
pub mod writer;

use crate::error::{Error, Result};
pub use dequant::Format;
pub use crate::file_bytes::{FileBytes, RangeRead, SharedBuffer};
use cqa_quant::StoredMatrix;
use std::collections::BTreeMap;

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// One metadata value. Arrays are homogeneous in valid files, but we keep them general.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value as an unsigned integer, if it is any integer type with a non-negative value.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v as u64),
            MetaValue::U16(v) => Some(v as u64),
            MetaValue::U32(v) => Some(v as u64),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Where one tensor lives in the data section, and how it is encoded.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Row-major shape, outermost first (GGUF stores `ne` innermost first; we reverse it).
    pub shape: Vec<usize>,
    /// Its ggml type, from the format registry.
    pub format: Format,
    /// Absolute byte offset of the tensor data in the file.
    pub offset: usize,
    /// Size of the encoded tensor in bytes.
    pub n_bytes: usize,
}

impl TensorInfo {
    pub fn n_elements(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A parsed GGUF file. Holds the file's bytes (read into memory, or mapped natively), so that
/// tensors are read lazily, one at a time, and stored matrices are ranges of the file itself
/// ([`GgufFile::stored_matrix`]): loading takes the file's size once, not twice. Or holds only
/// a way to read ranges of it ([`RangeRead`], a browser's `Blob`): then each tensor's bytes are
/// read when it is asked for, and a model whose weights go to a GPU never has the file in memory.
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    bytes: FileBytes,
}

/// The first read of a ranged file's header; grown ×4 while the header runs past it (a
/// vocabulary of 150k tokens makes a header of a few MB).
const FIRST_HEAD_BYTES: usize = 1 << 20;

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A bounds-checked little-endian cursor over the first `bytes.len()` bytes of a file of
/// `file_len` bytes (the whole file when they are equal).
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    file_len: usize,
    /// Set when a read ran past `bytes` but not past the file: more of the file would answer.
    ran_out_of_head: bool,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], file_len: usize) -> Self {
        Cursor { bytes, pos: 0, file_len: file_len.max(bytes.len()), ran_out_of_head: false }
    }

    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        let Some(end) = end.filter(|&e| e <= self.bytes.len()) else {
            self.ran_out_of_head = end.is_some_and(|e| e <= self.file_len);
            return Err(Error::Gguf(format!(
                "GGUF file is truncated: needed {n} bytes for {} at offset {}, but the file has {} bytes; re-download the model",
                what(),
                self.pos,
                self.file_len
            )));
        };
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Bytes left in the file (not only in the slice read so far), so that a count the file
    /// cannot hold is refused from the header's first bytes.
    fn remaining(&self) -> usize {
        self.file_len - self.pos
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count that must be satisfiable by the remaining bytes, at `min_item_bytes` each.
    fn count(&mut self, min_item_bytes: usize, what: &dyn Fn() -> String) -> Result<usize> {
        let n = self.u64(what)?;
        let limit = (self.remaining() / min_item_bytes.max(1)) as u64;
        if n > limit {
            return Err(Error::Gguf(format!(
                "GGUF file is truncated or corrupt: {} claims {n} items but only {} bytes remain; re-download the model",
                what(),
                self.remaining()
            )));
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.count(1, what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec())
            .map_err(|_| Error::Gguf(format!("GGUF file is corrupt: {} is not valid UTF-8", what())))
    }

    fn value(&mut self, type_id: u32, depth: usize, what: &dyn Fn() -> String) -> Result<MetaValue> {
        Ok(match type_id {
            0 => MetaValue::U8(self.array::<1>(what)?[0]),
            1 => MetaValue::I8(self.array::<1>(what)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(Error::Gguf(format!("GGUF file is corrupt: {} has bool byte {b}", what()))),
            },
            8 => MetaValue::String(self.string(what)?),
            9 => {
                if depth > 4 {
                    return Err(Error::Gguf(format!("GGUF file is corrupt: {} nests arrays too deeply", what())));
                }
                let item_type = self.u32(what)?;
                let n = self.count(min_value_bytes(item_type), what)?;
                // Each parsed item takes a `MetaValue` (tens of bytes) however small it is on disk,
                // so the count is also capped: real files' largest arrays are token lists of a few
                // hundred thousand entries.
                if n > MAX_METADATA_ARRAY_ITEMS {
                    return Err(Error::Gguf(format!(
                        "GGUF file is corrupt or hostile: {} is an array of {n} items, over the {MAX_METADATA_ARRAY_ITEMS} this reader accepts",
                        what()
                    )));
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item_type, depth + 1, what)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(Error::Gguf(format!("GGUF file is corrupt: {} has unknown value type {t}", what()))),
        })
    }
}

/// The most items a metadata array may hold (the largest real vocabularies are ~256k tokens).
pub const MAX_METADATA_ARRAY_ITEMS: usize = 4 << 20;

/// The parsed header of a GGUF file: version, metadata and the tensor index.
struct Index {
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
}

/// Parses the header, metadata and tensor index from `bytes`, the first bytes of a file of
/// `file_len` bytes, and validates every tensor's extent against `file_len`.
fn read_index(bytes: &[u8], file_len: usize) -> Result<Index> {
    read_index_from(&mut Cursor::new(bytes, file_len), file_len)
}

fn read_index_from(c: &mut Cursor<'_>, file_len: usize) -> Result<Index> {
    let magic = c.take(4, &|| "the magic number".into()).map_err(|_| {
        Error::Gguf("not a GGUF file: it is shorter than the 4-byte magic number".into())
    })?;
    if magic != MAGIC {
        return Err(Error::Gguf(format!(
            "not a GGUF file: expected magic `GGUF`, found {:?}; pick a .gguf model file",
            String::from_utf8_lossy(magic)
        )));
    }
    let version = c.u32(&|| "the version".into())?;
    if !(2..=3).contains(&version) {
        return Err(Error::Gguf(format!(
            "GGUF version {version} is not supported (only versions 2 and 3); re-convert the model with a current llama.cpp"
        )));
    }
    // A tensor info is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes.
    let n_tensors = c.count(24, &|| "the tensor count".into())?;
    let n_kv = c.count(13, &|| "the metadata count".into())?;

    let mut metadata = BTreeMap::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("metadata key #{i}"))?;
        let what = || format!("metadata value `{key}`");
        let type_id = c.u32(&what)?;
        let value = c.value(type_id, 0, &what)?;
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => return Err(Error::Gguf(format!("GGUF file is corrupt: general.alignment is {v:?}, not a power of two"))),
        },
    };

    let mut raw_infos = Vec::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let name = c.string(&|| format!("the name of tensor #{i}"))?;
        let what = || format!("tensor `{name}`");
        let n_dims = c.u32(&what)? as usize;
        if n_dims == 0 || n_dims > 4 {
            return Err(Error::Gguf(format!("GGUF file is corrupt: tensor `{name}` has {n_dims} dimensions")));
        }
        let mut ne = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            ne.push(c.u64(&what)?);
        }
        let type_id = c.u32(&what)?;
        let offset = c.u64(&what)?;
        raw_infos.push((name, ne, type_id, offset));
    }

    let data_start = (c.pos as u64).div_ceil(alignment) * alignment;
    let mut tensors = Vec::with_capacity(raw_infos.len());
    for (name, ne, type_id, rel_offset) in raw_infos {
        let format = Format::from_ggml_id(type_id).ok_or_else(|| Error::UnsupportedQuant {
            tensor: name.clone(),
            type_name: dequant::ggml_type_name(type_id).to_string(),
            type_id,
        })?;
        let n_elements = ne.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
        let n_elements = n_elements
            .filter(|&n| n > 0 && n <= (1u64 << 40))
            .ok_or_else(|| Error::Gguf(format!("GGUF file is corrupt: tensor `{name}` has shape {ne:?}")))?;
        let block = format.block_elements() as u64;
        if ne[0] % block != 0 {
            return Err(Error::Gguf(format!(
                "GGUF file is corrupt: tensor `{name}` rows of {} elements are not a multiple of the {} block size {block}",
                ne[0],
                format.name()
            )));
        }
        let n_bytes = n_elements / block * format.block_bytes() as u64;
        if rel_offset % alignment != 0 {
            return Err(Error::Gguf(format!("GGUF file is corrupt: tensor `{name}` is not aligned to {alignment} bytes")));
        }
        // Checked: a corrupt offset near u64::MAX must not wrap around into the file.
        let extent = data_start.checked_add(rel_offset).and_then(|o| Some((o, o.checked_add(n_bytes)?)));
        let Some((offset, _)) = extent.filter(|&(_, end)| end <= file_len as u64) else {
            return Err(Error::Gguf(format!(
                "GGUF file is truncated or corrupt: tensor `{name}` needs {n_bytes} bytes at data offset {rel_offset}, but the file has {} bytes; re-download the model",
                file_len
            )));
        };
        tensors.push(TensorInfo {
            name,
            shape: ne.iter().rev().map(|&d| d as usize).collect(),
            format,
            offset: offset as usize,
            n_bytes: n_bytes as usize,
        });
    }

    Ok(Index { version, metadata, tensors, alignment })
}

/// The fewest bytes a metadata value of `type_id` takes on disk (an unknown type fails later).
fn min_value_bytes(type_id: u32) -> usize {
    match type_id {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8, // a string is at least its 8-byte length
        9 => 12,          // a nested array: item type + count
        _ => 1,
    }
}

impl GgufFile {
    /// Parses the header, metadata and tensor index, and validates every tensor's extent.
    pub fn parse(bytes: Vec<u8>) -> Result<Self> {
        Self::parse_shared(std::sync::Arc::new(bytes))
    }

    /// [`GgufFile::parse`] on a buffer that the stored matrices will share (a mapped file).
    pub fn parse_shared(bytes: SharedBuffer) -> Result<Self> {
        let data = (*bytes).as_ref();
        let Index { version, metadata, tensors, alignment } = read_index(data, data.len())?;
        Ok(GgufFile { version, metadata, tensors, alignment, bytes: FileBytes::Whole(bytes) })
    }

    /// [`GgufFile::parse`] on a file of `len` bytes read through `reader`: only its header is
    /// read here; each tensor is read when it is asked for.
    pub fn parse_ranged(reader: Box<dyn RangeRead>, len: usize) -> Result<Self> {
        let mut head_len = FIRST_HEAD_BYTES.min(len);
        loop {
            let mut head = vec![0; head_len];
            reader.read_into(0, &mut head)?;
            let mut cursor = Cursor::new(&head, len);
            match read_index_from(&mut cursor, len) {
                Ok(Index { version, metadata, tensors, alignment }) => {
                    return Ok(GgufFile { version, metadata, tensors, alignment, bytes: FileBytes::Ranged { reader, len } });
                }
                Err(_) if cursor.ran_out_of_head && head_len < len => head_len = head_len.saturating_mul(4).min(len),
                Err(e) => return Err(e),
            }
        }
    }

    /// The tensor index of the file of `file_len` bytes that starts with `head`, read from its
    /// header alone, so a model too big for the device is refused before it is read in full
    /// (`quant::MemoryNeed::of_gguf`). `Ok(None)`: `head` ends inside the header; call again
    /// with more of the file. Only a read past `head` that the file could still satisfy asks for
    /// more: bad magic, an unsupported version, a count the file cannot hold or an array over the
    /// cap are refused from the bytes already given.
    pub fn read_tensor_index(head: &[u8], file_len: usize) -> Result<Option<Vec<TensorInfo>>> {
        let mut cursor = Cursor::new(head, file_len);
        match read_index_from(&mut cursor, file_len) {
            Ok(index) => Ok(Some(index.tensors)),
            Err(_) if cursor.ran_out_of_head && head.len() < file_len => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Metadata lookup.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// The `general.architecture` string (e.g. `llama`, `qwen2`).
    pub fn architecture(&self) -> Result<&str> {
        self.get("general.architecture")
            .and_then(MetaValue::as_str)
            .ok_or_else(|| Error::Gguf("GGUF file has no `general.architecture` metadata; is it a model file?".into()))
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw encoded bytes of a tensor: borrowed from a file in memory, read from a ranged one.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> Result<std::borrow::Cow<'_, [u8]>> {
        self.bytes.range(info.offset, info.n_bytes, &format!("tensor `{}`", info.name))
    }

    /// A 2-D tensor as a `[rows, cols]` matrix of its own blocks, sharing the file's bytes (a
    /// ranged file's tensor is read into a buffer of its own).
    pub fn stored_matrix(&self, info: &TensorInfo, rows: usize, cols: usize) -> Result<StoredMatrix> {
        let matrix = match &self.bytes {
            FileBytes::Whole(bytes) => StoredMatrix::from_shared(info.format, rows, cols, bytes.clone(), info.offset, info.n_bytes),
            FileBytes::Ranged { .. } => StoredMatrix::from_bytes(info.format, rows, cols, self.tensor_bytes(info)?.into_owned()),
        };
        matrix.map_err(|e| Error::Gguf(format!("tensor `{}`: {e}", info.name)))
    }

    /// Dequantizes a tensor by name to f32, in row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::Model(format!("the GGUF file has no tensor `{name}`; is it a Llama-family model?")))?;
        let values = dequant::dequantize(info.format, &self.tensor_bytes(info)?, info.n_elements())?;
        Ok((info.shape.clone(), values))
    }

    /// Total size of the file in bytes.
    pub fn file_size(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use super::writer::GgufWriter as GgufBuilder;
    use crate::quant::MemoryNeed;

    fn sample() -> Vec<u8> {
        GgufBuilder::default()
            .kv_str("general.architecture", "llama")
            .kv_u32("llama.block_count", 2)
            .kv_f32("llama.rope.freq_base", 10000.0)
            .kv_str_array("tokenizer.ggml.tokens", &["a", "b"])
            .tensor_f32("w", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
            .tensor_f32("v", &[4], &[7.0, 8.0, 9.0, 10.0])
            .build()
    }

    #[test]
    fn parses_metadata_and_tensors() {
        let f = GgufFile::parse(sample()).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.get("llama.block_count").unwrap().as_u64(), Some(2));
        assert_eq!(f.get("llama.rope.freq_base").unwrap().as_f64(), Some(10000.0));
        assert_eq!(f.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap().len(), 2);
        let (shape, w) = f.dequantize("w").unwrap();
        assert_eq!(shape, vec![2, 3]);
        assert_eq!(w, vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(f.dequantize("v").unwrap().1, vec![7.0, 8.0, 9.0, 10.0]);
    }

    #[test]
    fn memory_need_reads_the_header_alone() {
        let bytes = sample();
        let need = MemoryNeed::of_gguf(&bytes, bytes.len()).unwrap().unwrap();
        assert_eq!(need.parameters, 10);
        assert_eq!(need.resident_bytes, 40);
        assert_eq!(need.resident_bytes_stored, 40); // F32 tensors stay f32
        assert_eq!(need.largest_tensor_bytes, 24);
        assert_eq!(need.largest_tensor, "w");
        // The header alone (without the tensor data) is enough: extents are checked against the
        // file's length, not the slice's.
        let data_start = GgufFile::parse(bytes.clone()).unwrap().tensors.iter().map(|t| t.offset).min().unwrap();
        assert_eq!(MemoryNeed::of_gguf(&bytes[..data_start], bytes.len()).unwrap(), Some(need));
        // Too little of the file: ask for more, not an error.
        assert_eq!(MemoryNeed::of_gguf(&bytes[..20], bytes.len()).unwrap(), None);
        // A whole file that is corrupt is an error.
        assert!(MemoryNeed::of_gguf(&bytes[..20], 20).is_err());
    }

    #[test]
    fn memory_need_refuses_a_bad_header_from_its_first_bytes() {
        let big = 1 << 30; // the file claims to be 1 GiB; only the head is given
        let mut bad_magic = sample();
        bad_magic[..4].copy_from_slice(b"GGML");
        let err = MemoryNeed::of_gguf(&bad_magic[..8], big).unwrap_err().to_string();
        assert!(err.contains("not a GGUF file"), "{err}");
        let mut bad_version = sample();
        bad_version[4..8].copy_from_slice(&7u32.to_le_bytes());
        let err = MemoryNeed::of_gguf(&bad_version[..8], big).unwrap_err().to_string();
        assert!(err.contains("version 7"), "{err}");
        // Fewer than 4 bytes: the magic is not known yet.
        assert_eq!(MemoryNeed::of_gguf(&bad_magic[..3], big).unwrap(), None);
        // An array over the cap, and a count the whole file cannot hold, are refused at once.
        let over_cap = with_array(0, MAX_METADATA_ARRAY_ITEMS as u64 + 1, 0);
        let err = MemoryNeed::of_gguf(&over_cap, big).unwrap_err().to_string();
        assert!(err.contains("over the"), "{err}");
        let too_many = with_array(4, 1 << 31, 0);
        let err = MemoryNeed::of_gguf(&too_many, big).unwrap_err().to_string();
        assert!(err.contains("claims 2147483648 items"), "{err}");
        // A plausible array that the head stops inside: ask for more.
        assert_eq!(MemoryNeed::of_gguf(&with_array(0, 1000, 10), big).unwrap(), None);
    }

    /// A header with one metadata array of `n` items of `item_type`, followed by `payload` bytes.
    fn with_array(item_type: u32, n: u64, payload: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(b"GGUF");
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(1u64.to_le_bytes()); // metadata entries
        b.extend(5u64.to_le_bytes());
        b.extend(b"huge!");
        b.extend(9u32.to_le_bytes()); // array
        b.extend(item_type.to_le_bytes());
        b.extend(n.to_le_bytes());
        b.extend(std::iter::repeat_n(0u8, payload));
        b
    }

    #[test]
    fn hostile_metadata_arrays_are_refused_before_allocating() {
        // 2^31 u32 items need 8 GiB of file: counted at 4 bytes per item, not 1, they are refused.
        let err = GgufFile::parse(with_array(4, 1 << 31, 1 << 20)).unwrap_err().to_string();
        assert!(err.contains("claims 2147483648 items"), "{err}");
        let err = GgufFile::parse(with_array(4, 300_000, 1 << 20)).unwrap_err().to_string();
        assert!(err.contains("claims 300000 items"), "4 bytes per u32 item: {err}");
        // A file large enough for its items is still capped.
        let n = MAX_METADATA_ARRAY_ITEMS as u64 + 1;
        let err = GgufFile::parse(with_array(0, n, n as usize)).unwrap_err().to_string();
        assert!(err.contains("over the"), "{err}");
        // Within the limits it parses.
        assert!(GgufFile::parse(with_array(0, 1000, 1000)).is_ok());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample();
        for len in 0..bytes.len() {
            let err = GgufFile::parse(bytes[..len].to_vec()).unwrap_err().to_string();
            assert!(
                err.contains("truncated") || err.contains("not a GGUF") || err.contains("corrupt"),
                "len {len}: {err}"
            );
        }
    }

    #[test]
    fn corrupted_bytes_never_panic() {
        let bytes = sample();
        // Flip every byte in turn through a few values: parsing must return, never panic.
        for i in 0..bytes.len() {
            for v in [0x00u8, 0xff, 0x7f, 0x80] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = GgufFile::parse(b);
            }
        }
    }

    /// Found by the fuzz target: a tensor offset near u64::MAX overflowed the extent check.
    #[test]
    fn tensor_offset_overflow_is_an_error() {
        let mut b = sample();
        // Tensor `v`'s info: name, n_dims = 1, ne[0] (u64), type (u32), then its offset (u64).
        let pos = b.windows(1 + 4).position(|w| w == b"v\x01\x00\x00\x00").unwrap();
        let offset_at = pos + 1 + 4 + 8 + 4;
        b[offset_at..offset_at + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
        let err = GgufFile::parse(b).unwrap_err().to_string();
        assert!(err.contains("`v`"), "{err}");
    }

    #[test]
    fn bad_magic_names_the_problem() {
        let mut b = sample();
        b[0] = b'X';
        let err = GgufFile::parse(b).unwrap_err().to_string();
        assert!(err.contains("not a GGUF file"), "{err}");
    }

    #[test]
    fn huge_counts_are_rejected_before_allocating() {
        let mut b = sample();
        // The tensor count sits at bytes 8..16.
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = GgufFile::parse(b).unwrap_err().to_string();
        assert!(err.contains("tensor count"), "{err}");
    }

    #[test]
    fn unsupported_quant_type_is_named() {
        let mut b = sample();
        // Patch the type of tensor `w` (F32 = 0) to Q8_1 (9): ggml's format for activations,
        // which no model file stores and the registry does not read.
        let pos = b.windows(1 + 8).position(|w| w == b"w\x02\x00\x00\x00\x03\x00\x00\x00").unwrap();
        let type_pos = pos + 1 + 4 + 16;
        b[type_pos..type_pos + 4].copy_from_slice(&9u32.to_le_bytes());
        let err = GgufFile::parse(b).unwrap_err().to_string();
        assert!(err.contains("Q8_1") && err.contains("`w`"), "{err}");
    }
}
