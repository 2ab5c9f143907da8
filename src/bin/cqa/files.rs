//! The CLI's file handling: reading models, adapters and annotations, and writing results
//! atomically. The engine itself only ever sees bytes.

use cqa_studio::data::{Annotation, parse_annotations};
use cqa_studio::lora::Adapter;
use cqa_studio::schema::DEFAULT_MODEL_FILE;
use cqa_studio::{Error, LanguageModel, Result};
use std::path::{Path, PathBuf};

/// Reads a PEFT adapter directory for `lm`.
pub fn read_adapter(dir: &Path, lm: &LanguageModel) -> Result<Adapter> {
    let config_path = dir.join("adapter_config.json");
    let config = std::fs::read_to_string(&config_path).map_err(|e| Error::io("read", config_path.display(), e))?;
    let weights = read(&dir.join("adapter_model.safetensors"))?;
    Adapter::from_peft(&config, &weights, &lm.model.projection_shapes())
}

/// Writes `bytes` to `path` through a temporary file, so an interrupted write never leaves a
/// half-written checkpoint or adapter behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(|e| Error::io("write", path.display(), e))
}

/// Reads annotation JSONL, listing every bad line on stderr; a file with bad lines is refused
/// unless `keep_good_lines`.
pub fn read_annotations(path: &Path, keep_good_lines: bool) -> Result<Vec<Annotation>> {
    let report = parse_annotations(&read(path)?);
    if keep_good_lines {
        for e in &report.errors {
            eprintln!("warning: {}: skipped {e}", path.display());
        }
        if report.error_count > report.errors.len() {
            eprintln!("warning: {}: and {} more problems", path.display(), report.error_count - report.errors.len());
        }
    }
    report.accept(keep_good_lines).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

/// `models/<default model file>`, relative to the working directory or the source tree.
fn default_model() -> String {
    format!("models/{DEFAULT_MODEL_FILE}")
}

/// `--model`, else the default model (see [`default_model`]).
pub fn resolve_model_path(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let candidates = [PathBuf::from(default_model()), Path::new(env!("CARGO_MANIFEST_DIR")).join(default_model())];
    candidates.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        Error::Input(format!("the default model {} is not there: run `./x model` to fetch it, or pass --model", default_model()))
    })
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path.display(), e))
}

/// Loads a .gguf file, or an HF directory (safetensors + config.json + tokenizer.json).
pub fn load(path: &Path, mode: cqa_studio::model::WeightMode, device: &burn::tensor::Device) -> Result<LanguageModel> {
    if path.is_dir() {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::io("list", path.display(), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
            .collect();
        shards.sort();
        if shards.is_empty() {
            return Err(Error::Input(format!("`{}` has no .safetensors file", path.display())));
        }
        let files = shards.iter().map(|p| read(p)).collect::<Result<Vec<_>>>()?;
        let config = String::from_utf8_lossy(&read(&path.join("config.json"))?).into_owned();
        let tokenizer = read(&path.join("tokenizer.json"))?;
        let tokenizer_config = with_chat_template_file(path, std::fs::read_to_string(path.join("tokenizer_config.json")).ok())?;
        LanguageModel::from_hf_bytes(files, &config, &tokenizer, tokenizer_config.as_deref(), mode, device)
    } else {
        LanguageModel::from_gguf_buffer(map(path)?, mode, device)
    }
}

/// The file mapped into memory, as llama.cpp reads models: the stored weights are ranges of the
/// mapping, so the model takes the file's pages once (and the page cache's, shared) instead of a
/// read copy plus the weights. A file changed on disk while it is mapped would change under the
/// model; a model file is not written while it is being used.
fn map(path: &Path) -> Result<cqa_studio::gguf::SharedBuffer> {
    let file = std::fs::File::open(path).map_err(|e| Error::io("read", path.display(), e))?;
    if file.metadata().map_err(|e| Error::io("read", path.display(), e))?.len() == 0 {
        // Nothing to map; the reader says what is wrong with an empty file.
        return Ok(std::sync::Arc::new(Vec::<u8>::new()));
    }
    // SAFETY: the mapping is read-only and lives as long as the matrices that share it; see above
    // for a file modified while mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io("map", path.display(), e))?;
    Ok(std::sync::Arc::new(map))
}


/// transformers ≥ 4.43 may save the chat template as `chat_template.jinja` beside
/// `tokenizer_config.json` instead of inside it: fold it in, so the engine sees one config.
fn with_chat_template_file(dir: &Path, tokenizer_config: Option<String>) -> Result<Option<String>> {
    let template_path = dir.join("chat_template.jinja");
    let Ok(template) = std::fs::read_to_string(&template_path) else { return Ok(tokenizer_config) };
    let mut config: serde_json::Value = match &tokenizer_config {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| Error::Tokenizer(format!("{}: not valid JSON: {e}", dir.join("tokenizer_config.json").display())))?,
        None => serde_json::json!({}),
    };
    if config.get("chat_template").is_none_or(|t| t.is_null())
        && let Some(map) = config.as_object_mut()
    {
        map.insert("chat_template".into(), serde_json::Value::String(template));
    }
    Ok(Some(config.to_string()))
}
