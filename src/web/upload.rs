//! A model file on its way into the engine. The page reads the file (from the disk, the cache or
//! the network) piece by piece and writes each piece here, so the file's bytes are held once, in
//! the engine's memory, never also whole in JavaScript: for a 1 GB model that is the difference
//! between 1 and 2 GB in a tab. Its SHA-256 (the model's identity in a study) is taken on the way.
//! Or the file stays where it is (a `Blob`: on the disk, in the cache) and the engine reads the
//! slices it needs through [`BlobReader`], so that only one tensor's bytes are in the tab at a time.

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

use super::{JsResult, js_message};
use crate::error::{Error, Result};
use crate::file_bytes::RangeRead;

const MIB: f64 = 1024.0 * 1024.0;

#[wasm_bindgen]
pub struct ModelUpload {
    bytes: Vec<u8>,
    /// The file's length when the page knows it (the room is set aside at once), else 0.
    expected: usize,
    hasher: Sha256,
}

#[wasm_bindgen]
impl ModelUpload {
    /// Sets aside room for a file of `length` bytes (0: unknown, the room grows as pieces come).
    /// Fails with a sentence, not a crash, when the engine's memory cannot hold the file.
    #[wasm_bindgen(constructor)]
    pub fn new(length: f64) -> JsResult<ModelUpload> {
        if !(length.is_finite() && length >= 0.0) {
            return Err(JsError::new(&format!("a model file of {length} bytes cannot be read")));
        }
        let mut bytes = Vec::new();
        // Past usize (4 GiB in wasm32) the engine's memory cannot hold it at all.
        let expected = length as usize;
        if length > usize::MAX as f64 || bytes.try_reserve_exact(expected).is_err() {
            return Err(JsError::new(&format!(
                "the engine could not set aside {:.1} MiB for the model file: this tab is out of memory (close other tabs or choose a smaller model)",
                length / MIB
            )));
        }
        Ok(ModelUpload { bytes, expected, hasher: Sha256::new() })
    }

    /// Appends the next piece of the file.
    pub fn write(&mut self, piece: &[u8]) -> JsResult<()> {
        let end = self.bytes.len() + piece.len();
        if self.expected > 0 && end > self.expected {
            return Err(JsError::new(&format!(
                "the model file is longer than the {} bytes it was announced with: it changed while it was read; open it again",
                self.expected
            )));
        }
        self.bytes.try_reserve(piece.len()).map_err(|_| {
            JsError::new(&format!(
                "the engine ran out of memory after reading {:.1} MiB of the model file (close other tabs or choose a smaller model)",
                self.bytes.len() as f64 / MIB
            ))
        })?;
        self.bytes.extend_from_slice(piece);
        self.hasher.update(piece);
        Ok(())
    }

    /// Bytes written so far.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.bytes.len() as f64
    }

    /// Lower-case hex SHA-256 of the bytes written so far.
    pub fn sha256(&self) -> String {
        self.hasher.clone().finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl ModelUpload {
    /// The whole file, once every piece is written; a file cut short is refused here with its
    /// two lengths (the GGUF reader would only say which tensor ran past the end).
    pub(super) fn into_bytes(self) -> JsResult<Vec<u8>> {
        if self.expected > 0 && self.bytes.len() != self.expected {
            return Err(JsError::new(&format!(
                "the model file was cut short: {} of its {} bytes were read; open it again",
                self.bytes.len(),
                self.expected
            )));
        }
        Ok(self.bytes)
    }
}

/// A model file the page reads slice by slice: `read(offset, target)` fills the `Uint8Array`
/// `target` with the file's bytes from `offset` and returns how many it wrote (in the engine's
/// worker, from a `Blob` through `FileReaderSync`).
pub(super) struct BlobReader {
    read: js_sys::Function,
    len: usize,
}

impl BlobReader {
    pub(super) fn new(length: f64, read: js_sys::Function) -> JsResult<BlobReader> {
        if !(length.is_finite() && length >= 0.0 && length <= usize::MAX as f64) {
            return Err(JsError::new(&format!(
                "a model file of {:.1} MiB cannot be read by this tab (its memory ends at 4 GiB)",
                length / MIB
            )));
        }
        Ok(BlobReader { read, len: length as usize })
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl RangeRead for BlobReader {
    fn read_into(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        // The page writes straight into `out` through a view of the engine's memory. The view
        // stays valid: nothing is allocated in the engine while the call runs (and a shared
        // memory's views survive its growth).
        let target = unsafe { js_sys::Uint8Array::view_mut_raw(out.as_mut_ptr(), out.len()) };
        let wrote = self
            .read
            .call2(&JsValue::NULL, &JsValue::from_f64(offset as f64), &target)
            .map_err(|e| Error::Gguf(format!("the model file could not be read at byte {offset}: {}; open it again", js_message(&e))))?;
        if wrote.as_f64() != Some(out.len() as f64) {
            return Err(Error::Gguf(format!(
                "the model file was cut short: it ends before byte {} of the {} it was announced with; open it again",
                offset + out.len(),
                self.len
            )));
        }
        Ok(())
    }
}

/// Lower-case hex SHA-256 of a model file of `length` bytes read through `read` (see
/// [`WebModel::load_ranged`](super::WebModel::load_ranged)), 4 MiB at a time.
#[wasm_bindgen(js_name = modelSha256)]
pub fn model_sha256(length: f64, read: js_sys::Function) -> JsResult<String> {
    const PIECE: usize = 4 << 20;
    let reader = BlobReader::new(length, read)?;
    let mut hasher = Sha256::new();
    let mut piece = vec![0u8; PIECE.min(reader.len)];
    let mut at = 0;
    while at < reader.len {
        let n = PIECE.min(reader.len - at);
        reader.read_into(at, &mut piece[..n])?;
        hasher.update(&piece[..n]);
        at += n;
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
