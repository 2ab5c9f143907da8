//! A model file on its way into the engine. The page reads the file (from the disk, the cache or
//! the network) piece by piece and writes each piece here, so the file's bytes are held once, in
//! the engine's memory, never also whole in JavaScript: for a 1 GB model that is the difference
//! between 1 and 2 GB in a tab. Its SHA-256 (the model's identity in a study) is taken on the way.

use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

use super::JsResult;

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
