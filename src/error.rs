//! One error type for the whole engine. Each message says what was found and, where it helps,
//! what to do about it: these strings reach users verbatim (CLI `error: …`, browser `JsError`).

use thiserror::Error;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, Error)]
pub enum Error {
    /// The GGUF container is malformed: bad magic, truncated, or inconsistent.
    #[error("{0}")]
    Gguf(String),

    /// A tensor uses a ggml type this engine cannot dequantize.
    #[error(
        "tensor `{tensor}` uses ggml type {type_name} (id {type_id}), which this engine cannot read; it reads {}",
        supported_formats()
    )]
    UnsupportedQuant { tensor: String, type_name: String, type_id: u32 },

    /// A safetensors file or its config.json is malformed.
    #[error("{0}")]
    Safetensors(String),

    /// The weights do not describe a model this engine can run.
    #[error("{0}")]
    Model(String),

    /// The tokenizer could not be built, or does not fit the model.
    #[error("{0}")]
    Tokenizer(String),

    /// The chat template failed to parse or render.
    #[error("chat template: {0}")]
    Template(String),

    /// Bad arguments to an engine call (empty prompt, sequence too long, ...).
    #[error("{0}")]
    Input(String),

    /// A file could not be read or written (CLI and tests; the browser passes bytes).
    #[error("cannot {action} `{path}`: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },

    /// The compute device failed (lost WebGPU device, out of memory, failed read-back).
    #[error("compute device: {0}")]
    Device(String),
}

impl Error {
    /// An I/O error on `path`, e.g. `Error::io("read", path, e)`.
    pub fn io(action: &'static str, path: impl std::fmt::Display, source: std::io::Error) -> Self {
        Error::Io { action, path: path.to_string(), source }
    }
}

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The ggml types the format registry reads, for error messages.
fn supported_formats() -> String {
    let names: Vec<&str> = cqa_quant::TABLE.iter().map(|t| t.name).collect();
    format!("{} and {}", names[..names.len() - 1].join(", "), names[names.len() - 1])
}
