//! Turning the user's files into a ready model + tokenizer: a GGUF file, or HF safetensors with
//! `config.json` and `tokenizer.json`. Loaders take bytes, never paths, so the same code serves
//! the CLI and the browser.

use crate::error::{Error, Result};
use crate::file_bytes::{FileBytes, RangeRead};
use crate::gguf::GgufFile;
use crate::model::{Llama, LlamaConfig, WeightMode, WeightSource};
use crate::safetensors::SafetensorsWeights;
use crate::tokenizer::TextTokenizer;
use burn::tensor::Device;
use serde::Serialize;
use std::collections::BTreeMap;

/// What `cqa info` and the browser's model panel show.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// `gguf` or `safetensors`.
    pub format: String,
    pub name: Option<String>,
    pub config: LlamaConfig,
    pub parameters: usize,
    /// Tensor count per storage type, e.g. `{"Q4_1": 210, "F32": 61}`.
    pub tensor_types: BTreeMap<String, usize>,
    /// Size of the weight files as given. (Byte counts are u64: a 1.5B model's f32 size does
    /// not fit wasm32's usize.)
    pub file_bytes: u64,
    /// Memory the weights would take dequantized to f32.
    pub weight_bytes_f32: u64,
    /// Memory the weights take as loaded: stored blocks, or f32.
    pub weight_bytes_resident: u64,
    /// `stored` when the matrices are kept in their blocks, `f32` when dequantized.
    pub weights: String,
    /// Tensor types held in another format on this device, e.g. `{"Q6_K": "Q8_0"}` on a GPU,
    /// whose kernels do not read Q6_K: a conversion made once at load, to a format at least as
    /// precise, whose memory `weight_bytes_resident` counts. Empty on the CPU, which keeps every
    /// type as it is.
    pub held_as: BTreeMap<String, String>,
    pub tokenizer_vocab: usize,
    pub has_chat_template: bool,
}

/// A model ready to run: weights on a device, its tokenizer, and a description.
pub struct LanguageModel {
    pub model: Llama,
    pub tokenizer: TextTokenizer,
    pub config: LlamaConfig,
    pub info: ModelInfo,
    pub device: Device,
}

impl LanguageModel {
    /// Loads a GGUF file: weights, tokenizer and chat template all come from the one file.
    /// `mode` says how the weights are held (see [`WeightMode`]).
    pub fn from_gguf_bytes(bytes: Vec<u8>, mode: WeightMode, device: &Device) -> Result<Self> {
        Self::from_gguf_buffer(std::sync::Arc::new(bytes), mode, device)
    }

    /// [`LanguageModel::from_gguf_bytes`] on a shared buffer (a mapped file): the stored weights
    /// are ranges of it, not copies.
    pub fn from_gguf_buffer(bytes: crate::gguf::SharedBuffer, mode: WeightMode, device: &Device) -> Result<Self> {
        Self::from_gguf_file(GgufFile::parse_shared(bytes)?, mode, device)
    }

    /// Loads a GGUF file of `len` bytes that is not in memory, reading each tensor as the model
    /// is built (a browser's `Blob`): with the weights on a GPU, the file is never held whole.
    pub fn from_gguf_ranged(reader: Box<dyn RangeRead>, len: usize, mode: WeightMode, device: &Device) -> Result<Self> {
        Self::from_gguf_file(GgufFile::parse_ranged(reader, len)?, mode, device)
    }

    fn from_gguf_file(file: GgufFile, mode: WeightMode, device: &Device) -> Result<Self> {
        let config = LlamaConfig::from_gguf(&file)?;
        let tokenizer = TextTokenizer::from_gguf(&file)?;
        tokenizer.check_fits(config.vocab_size)?;
        let mut tensor_types = BTreeMap::new();
        for t in &file.tensors {
            *tensor_types.entry(t.format.name().to_string()).or_insert(0) += 1;
        }
        let name = file.get("general.name").and_then(|v| v.as_str()).map(str::to_string);
        let file_bytes = file.file_size();
        let source = WeightSource::Gguf(file);
        let model = Llama::from_weights(&config, &source, mode, device)?;
        let info = ModelInfo::new("gguf", name, &config, tensor_types, file_bytes, &tokenizer, &model);
        Ok(LanguageModel { model, tokenizer, config, info, device: device.clone() })
    }

    /// Loads HF safetensors (one or more shards) with `config.json`, `tokenizer.json` and,
    /// optionally, `tokenizer_config.json` (which carries the chat template).
    pub fn from_hf_bytes(
        safetensors: Vec<Vec<u8>>,
        config_json: &str,
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&str>,
        mode: WeightMode,
        device: &Device,
    ) -> Result<Self> {
        let files = safetensors.into_iter().map(FileBytes::whole).collect();
        Self::from_hf_files(files, config_json, tokenizer_json, tokenizer_config_json, mode, device)
    }

    /// [`LanguageModel::from_hf_bytes`] on shards in memory or read by range (a browser's
    /// `Blob`s: each tensor is read as the model is built).
    pub fn from_hf_files(
        safetensors: Vec<FileBytes>,
        config_json: &str,
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&str>,
        mode: WeightMode,
        device: &Device,
    ) -> Result<Self> {
        let config = LlamaConfig::from_hf_json(config_json)?;
        let tokenizer = TextTokenizer::from_hf(tokenizer_json, tokenizer_config_json)?;
        tokenizer.check_fits(config.vocab_size)?;
        let file_bytes = safetensors.iter().map(FileBytes::len).sum();
        let weights = SafetensorsWeights::from_files(safetensors)?;
        let mut tensor_types = BTreeMap::new();
        for (_, dtype) in weights.dtypes() {
            *tensor_types.entry(dtype).or_insert(0) += 1;
        }
        let source = WeightSource::Safetensors(weights);
        let model = Llama::from_weights(&config, &source, mode, device)?;
        let info = ModelInfo::new("safetensors", None, &config, tensor_types, file_bytes, &tokenizer, &model);
        Ok(LanguageModel { model, tokenizer, config, info, device: device.clone() })
    }

    /// Wraps an already-built model (tests and benchmarks with random weights).
    pub fn from_parts(model: Llama, tokenizer: TextTokenizer, config: LlamaConfig, device: &Device) -> Result<Self> {
        tokenizer.check_fits(config.vocab_size)?;
        let info = ModelInfo::new("memory", None, &config, BTreeMap::new(), 0, &tokenizer, &model);
        Ok(LanguageModel { model, tokenizer, config, info, device: device.clone() })
    }

    /// The same model with a LoRA adapter: merged into the weights (`merge`, the fast choice
    /// for inference) or kept factored. Base weights are shared, not copied, when factored.
    pub fn with_adapter(&self, adapter: &crate::lora::Adapter, merge: bool) -> Result<Self> {
        let model = if merge { self.model.merged(adapter)? } else { self.model.with_adapter(adapter, false)? };
        Ok(LanguageModel {
            model,
            tokenizer: self.tokenizer.clone(),
            config: self.config.clone(),
            info: self.info.clone(),
            device: self.device.clone(),
        })
    }

    /// Checks that `ids` are all inside the embedding matrix.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= self.config.vocab_size) {
            Some(id) => Err(Error::Input(format!(
                "token id {id} is outside the model's vocabulary of {}",
                self.config.vocab_size
            ))),
            None => Ok(()),
        }
    }
}

impl ModelInfo {
    fn new(
        format: &str,
        name: Option<String>,
        config: &LlamaConfig,
        tensor_types: BTreeMap<String, usize>,
        file_bytes: usize,
        tokenizer: &TextTokenizer,
        model: &Llama,
    ) -> Self {
        let parameters = config.parameter_count();
        ModelInfo {
            format: format.into(),
            name,
            config: config.clone(),
            parameters,
            tensor_types: tensor_types.clone(),
            file_bytes: file_bytes as u64,
            weight_bytes_f32: parameters as u64 * 4,
            weight_bytes_resident: model.resident_weight_bytes(),
            weights: if model.has_stored_weights() { "stored" } else { "f32" }.into(),
            held_as: held_as(&tensor_types, model),
            tokenizer_vocab: tokenizer.vocab_size(),
            has_chat_template: tokenizer.has_chat_template(),
        }
    }
}

/// The conversions a model's stored weights took on its device (see `ModelInfo::held_as`).
fn held_as(tensor_types: &BTreeMap<String, usize>, model: &Llama) -> BTreeMap<String, String> {
    if !model.has_stored_weights() || crate::device::runs_on_cpu(&model.device()) {
        return BTreeMap::new();
    }
    cqa_quant::TABLE
        .iter()
        .filter(|t| tensor_types.contains_key(t.name) && t.format != cqa_quant::Format::F32)
        .filter(|t| t.format.on_gpu() != t.format)
        .map(|t| (t.name.to_string(), t.format.on_gpu().name().to_string()))
        .collect()
}
