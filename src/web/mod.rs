//! The browser facade: wasm-bindgen bindings over the engine, and nothing else. Bytes come in
//! (the page reads files and fetches from its own origin); the engine's own serde types go out
//! as plain JS objects (`serde-wasm-bindgen`, JSON-compatible: maps become objects, NaN never
//! appears), bulk numbers as typed arrays. Every GPU read is async. Every fallible call returns
//! `Result<_, JsError>`, so a failure reaches the page as an `Error` with the engine's sentence.
//!
//! Async methods return Promises built from `'static` futures: the model sits behind an `Rc`, and
//! a generation session is taken out of its cell for the duration of a step, so no borrow lives
//! across an `await`.

use crate::appreciate::parse_verdict_score;
use crate::calibrate::{BenchItem, ItemReport, group_summaries, parse_benchmark, run_item};
use crate::data::{Annotation, annotations_to_jsonl, coverage, parse_annotations};
use crate::eval::score;
use crate::generate::{GenerationSession, SamplingParams, TextStream};
use crate::lora::Adapter;
use crate::model::{Llama, WeightMode};
use crate::prompt::{AppreciationInput, appreciation_prompt, chat_prompt, plain_prompt, trl_jsonl};
use crate::stats::paired_summary;
use crate::tokenizer::ChatMessage;
use crate::LanguageModel;
use burn::tensor::Device;
use js_sys::Promise;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

mod appreciate;
mod raters;
#[cfg(feature = "wasm-threads")]
mod threads;
mod train;
mod upload;
pub use appreciate::appreciation_report;
pub use raters::study_agreement_js;
pub use train::{WebTrainControl, WebTrainer};
pub use upload::{ModelUpload, model_sha256};

type JsResult<T> = Result<T, JsError>;

/// A value of the engine's as a plain JS object.
fn to_js<T: Serialize + ?Sized>(value: &T) -> JsResult<JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&format!("the engine could not hand over its result: {e}")))
}

/// A JS object as one of the engine's types; `undefined`/`null` give the type's default.
fn from_js<T: DeserializeOwned + Default>(value: JsValue, what: &str) -> JsResult<T> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    serde_wasm_bindgen::from_value(value).map_err(|e| JsError::new(&format!("bad {what}: {e}")))
}

/// Like [`from_js`] for a value that has no default.
fn required_from_js<T: DeserializeOwned>(value: JsValue, what: &str) -> JsResult<T> {
    serde_wasm_bindgen::from_value(value).map_err(|e| JsError::new(&format!("bad {what}: {e}")))
}

/// The message of a thrown JS value.
fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).or_else(|| e.as_string()).unwrap_or_else(|| format!("{e:?}"))
}

/// A Promise over an engine future; its error rejects the Promise with a JS `Error`.
fn promise(future: impl Future<Output = JsResult<JsValue>> + 'static) -> Promise {
    future_to_promise(async move { future.await.map_err(JsValue::from) })
}

thread_local! {
    static DEVICE: RefCell<Option<(Device, DeviceChoice)>> = const { RefCell::new(None) };
}

fn current_device() -> JsResult<Device> {
    DEVICE
        .with(|d| d.borrow().as_ref().map(|(d, _)| d.clone()))
        .ok_or_else(|| JsError::new("call initDevice() before loading a model"))
}

/// The device the engine runs on, and why it is not WebGPU when it is not.
#[derive(Debug, Clone, Serialize)]
struct DeviceChoice {
    /// `webgpu` or `cpu`.
    backend: &'static str,
    /// Why the CPU was chosen (the browser's own error when WebGPU failed to start); null on WebGPU.
    reason: Option<String>,
}

/// Picks the compute device: WebGPU when the browser has it and `prefer_gpu`, else the CPU.
/// Resolves to `{backend, reason}`; `reason` carries the real WebGPU error when it failed.
#[wasm_bindgen(js_name = initDevice)]
pub fn init_device(prefer_gpu: bool) -> Promise {
    promise(async move {
        console_error_panic_hook::set_once();
        if let Some(choice) = DEVICE.with(|d| d.borrow().as_ref().map(|(_, c)| c.clone())) {
            return to_js(&choice);
        }
        let has_webgpu = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
            .ok()
            .and_then(|nav| js_sys::Reflect::get(&nav, &JsValue::from_str("gpu")).ok())
            .is_some_and(|gpu| !gpu.is_undefined() && !gpu.is_null());
        let cpu = |reason: String| (crate::device::cpu(), DeviceChoice { backend: "cpu", reason: Some(reason) });
        let (device, choice) = if !prefer_gpu {
            cpu("the CPU was chosen".into())
        } else if !has_webgpu {
            cpu("this browser does not offer WebGPU (navigator.gpu is missing), so the engine runs on the CPU".into())
        } else {
            gpu_or_cpu().await.unwrap_or_else(cpu)
        };
        DEVICE.with(|d| *d.borrow_mut() = Some((device, choice.clone())));
        to_js(&choice)
    })
}

/// WebGPU's device, or why the engine runs on the CPU instead.
#[cfg(feature = "webgpu")]
async fn gpu_or_cpu() -> Result<(Device, DeviceChoice), String> {
    match crate::device::wgpu().await {
        Ok(d) => Ok((d, DeviceChoice { backend: "webgpu", reason: None })),
        Err(e) => Err(format!("{e}; the engine runs on the CPU")),
    }
}

/// The CPU-only build (the threaded one: WebGPU's bindings do not build with wasm atomics).
#[cfg(not(feature = "webgpu"))]
async fn gpu_or_cpu() -> Result<(Device, DeviceChoice), String> {
    Err("this build of the engine runs on the CPU only (the page chose it: no WebGPU adapter)".into())
}

/// The record format and the defaults (`crate::schema`): dimensions, schema version, training
/// defaults, checkpoint period and the default model's file name.
#[wasm_bindgen]
pub fn schema() -> JsResult<JsValue> {
    to_js(&crate::schema::schema())
}

/// A loaded model with at most one generation in progress.
#[wasm_bindgen]
pub struct WebModel {
    lm: Rc<LanguageModel>,
    session: Rc<RefCell<Option<(GenerationSession, TextStream)>>>,
}

/// One generation step as the page receives it.
#[derive(Serialize)]
#[serde(untagged)]
enum Step {
    Token { token: u32, text: String },
    Done { done: bool, reason: Option<crate::generate::StopReason> },
}

impl WebModel {
    fn wrap(lm: LanguageModel) -> WebModel {
        WebModel { lm: Rc::new(lm), session: Rc::new(RefCell::new(None)) }
    }

    fn start(&self, ids: Vec<u32>, params: JsValue) -> JsResult<()> {
        let params: SamplingParams = from_js(params, "sampling parameters")?;
        let session = GenerationSession::new(&self.lm, ids, params)?;
        *self.session.borrow_mut() = Some((session, TextStream::default()));
        Ok(())
    }
}

#[wasm_bindgen]
impl WebModel {
    /// Loads a GGUF file from its bytes.
    #[wasm_bindgen(js_name = loadGguf)]
    pub fn load_gguf(bytes: Vec<u8>) -> JsResult<WebModel> {
        Ok(WebModel::wrap(LanguageModel::from_gguf_bytes(bytes, WeightMode::Stored, &current_device()?)?))
    }

    /// Loads a GGUF file the page wrote piece by piece into a [`ModelUpload`] (which this
    /// consumes): the file is never held whole in JavaScript.
    #[wasm_bindgen(js_name = loadUpload)]
    pub fn load_upload(upload: ModelUpload) -> JsResult<WebModel> {
        let bytes = upload.into_bytes()?;
        Ok(WebModel::wrap(LanguageModel::from_gguf_bytes(bytes, WeightMode::Stored, &current_device()?)?))
    }

    /// Loads a GGUF file of `length` bytes that stays where it is (a `Blob`): `read(offset,
    /// target)` fills the `Uint8Array` `target` with the file's bytes from `offset` and returns
    /// how many it wrote. Only the header and one tensor at a time are read into the engine; on
    /// WebGPU the file is never held whole in the tab.
    #[wasm_bindgen(js_name = loadRanged)]
    pub fn load_ranged(length: f64, read: js_sys::Function) -> JsResult<WebModel> {
        let reader = upload::BlobReader::new(length, read)?;
        let len = reader.len();
        Ok(WebModel::wrap(LanguageModel::from_gguf_ranged(Box::new(reader), len, WeightMode::Stored, &current_device()?)?))
    }

    /// Loads an HF model: safetensors shards left where they are (`Blob`s: `sizes[i]` and
    /// `readers[i]`, a function as [`WebModel::load_ranged`]'s `read`, for each), with
    /// config.json, tokenizer.json and (optional) tokenizer_config.json. Each tensor is read as
    /// the weights are built, so the shards are never held whole in the tab.
    #[wasm_bindgen(js_name = loadHfRanged)]
    pub fn load_hf_ranged(
        sizes: Vec<f64>,
        readers: Vec<js_sys::Function>,
        config_json: String,
        tokenizer_json: Vec<u8>,
        tokenizer_config_json: Option<String>,
    ) -> JsResult<WebModel> {
        if sizes.len() != readers.len() {
            return Err(JsError::new("loadHfRanged: one size per shard reader"));
        }
        let mut files = Vec::with_capacity(sizes.len());
        for (size, read) in sizes.into_iter().zip(readers) {
            let reader = upload::BlobReader::new(size, read)?;
            let len = reader.len();
            files.push(crate::file_bytes::FileBytes::Ranged { reader: Box::new(reader), len });
        }
        let lm = LanguageModel::from_hf_files(files, &config_json, &tokenizer_json, tokenizer_config_json.as_deref(), WeightMode::Stored, &current_device()?)?;
        Ok(WebModel::wrap(lm))
    }

    /// The same model with a PEFT LoRA adapter merged in (the base stays loaded and usable).
    #[wasm_bindgen(js_name = withAdapter)]
    pub fn with_adapter(&self, config_json: &str, safetensors: Vec<u8>) -> JsResult<WebModel> {
        let adapter = Adapter::from_peft(config_json, &safetensors, &self.lm.model.projection_shapes())?;
        Ok(WebModel::wrap(self.lm.with_adapter(&adapter, true)?))
    }

    /// Architecture, parameter count, tensor types and memory (`cqa info --json`'s fields).
    pub fn info(&self) -> JsResult<JsValue> {
        to_js(&self.lm.info)
    }

    /// Token ids of `text` (special tokens added as the model wants).
    pub fn tokenize(&self, text: &str) -> JsResult<Vec<u32>> {
        Ok(self.lm.tokenizer.encode(text, true)?)
    }

    /// The text of each token on its own (for per-token heatmaps). A token that holds part of a
    /// character shows as U+FFFD.
    #[wasm_bindgen(js_name = tokenTexts)]
    pub fn token_texts(&self, ids: Vec<u32>) -> JsResult<JsValue> {
        let texts = ids.iter().map(|&id| self.lm.tokenizer.decode(&[id], false)).collect::<Result<Vec<_>, _>>()?;
        to_js(&texts)
    }

    /// Renders `[{role, content}, ...]` with the model's chat template.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(&self, messages: JsValue, add_generation_prompt: bool) -> JsResult<String> {
        let messages: Vec<ChatMessage> = required_from_js(messages, "messages (a list of {role, content})")?;
        Ok(self.lm.tokenizer.apply_chat_template(&messages, add_generation_prompt)?)
    }

    /// Scores `text` after optional `context`; resolves to `cqa score --json`'s object.
    pub fn score(&self, text: String, context: Option<String>) -> Promise {
        let lm = self.lm.clone();
        promise(async move { to_js(&score(&lm, &text, context.as_deref()).await?) })
    }

    /// Starts generating from `prompt`. With `chat`, the prompt becomes a user turn in the
    /// model's chat template. `params` holds `SamplingParams` fields (all optional).
    #[wasm_bindgen(js_name = startGeneration)]
    pub fn start_generation(&self, prompt: &str, chat: bool, params: JsValue) -> JsResult<()> {
        let prompt = if chat { chat_prompt(&self.lm, &[ChatMessage::new("user", prompt)])? } else { plain_prompt(&self.lm, prompt)? };
        self.start(prompt.ids, params)
    }

    /// Starts the appreciation task on `{brief, audience, genre, work}`: the prompt the model is
    /// fine-tuned on, so base and tuned critiques are comparable.
    #[wasm_bindgen(js_name = startAppreciation)]
    pub fn start_appreciation(&self, input: JsValue, params: JsValue) -> JsResult<()> {
        let input: AppreciationInput = required_from_js(input, "appreciation input ({brief, audience, genre, work})")?;
        self.start(appreciation_prompt(&self.lm, &input)?.ids, params)
    }

    /// Scores one benchmark item with this model alone: resolves to the item as
    /// `cqa calibrate --json --tokens` prints it.
    #[wasm_bindgen(js_name = calibrateItem)]
    pub fn calibrate_item(&self, item: JsValue) -> Promise {
        let lm = self.lm.clone();
        promise(async move {
            let item: BenchItem = required_from_js(item, "benchmark item")?;
            to_js(&run_item(&lm, None, &item).await?.report(true))
        })
    }

    /// Scores one benchmark item with this (base) model and `tuned`: the item adds `tuned`,
    /// `delta_delta_i_bits` and the per-token `token_shift`.
    #[wasm_bindgen(js_name = calibrateItemAgainst)]
    pub fn calibrate_item_against(&self, item: JsValue, tuned: &WebModel) -> Promise {
        let lm = self.lm.clone();
        let tuned = tuned.lm.clone();
        promise(async move {
            let item: BenchItem = required_from_js(item, "benchmark item")?;
            to_js(&run_item(&lm, Some(&tuned), &item).await?.report(true))
        })
    }

    /// Runs one step. Resolves to `{token, text}` (text may be empty while a character is
    /// incomplete) or to `{done: true, reason}` when the session has stopped.
    #[wasm_bindgen(js_name = nextToken)]
    pub fn next_token(&self) -> Promise {
        let lm = self.lm.clone();
        let cell = self.session.clone();
        promise(async move {
            let (mut session, mut stream) = cell.borrow_mut().take().ok_or_else(|| JsError::new("no generation in progress"))?;
            let step = session.next_token(&lm).await;
            let out = match step {
                Ok(Some(id)) => stream.push(&lm, id).map(|text| Step::Token { token: id, text }),
                Ok(None) => Ok(Step::Done { done: true, reason: session.stop_reason() }),
                Err(e) => Err(e),
            };
            *cell.borrow_mut() = Some((session, stream));
            to_js(&out?)
        })
    }
}

/// Logits of the seeded tiny random model for `ids`, flattened `[seq, vocab]`: the browser test
/// compares them with the native CPU backend's (`cqa debug-tiny-logits`).
#[wasm_bindgen(js_name = tinyModelLogits)]
pub fn tiny_model_logits(seed: u32, vocab_size: usize, ids: Vec<u32>) -> Promise {
    promise(async move {
        // The tiny model is 2 layers of width 32: these bounds keep its weights and logits small.
        if !(1..=65_536).contains(&vocab_size) || ids.is_empty() || ids.len() > 1024 {
            return Err(JsError::new("the tiny model takes a vocabulary of 1 to 65536 tokens and 1 to 1024 ids"));
        }
        if ids.iter().any(|&t| t as usize >= vocab_size) {
            return Err(JsError::new("a token id is outside the tiny model's vocabulary"));
        }
        let values = Llama::tiny_random_logits(seed as u64, vocab_size, &ids, &current_device()?).await?;
        Ok(js_sys::Float32Array::from(values.as_slice()).into())
    })
}

/// The engine's memory in bytes. It only grows, so after a load it is the load's peak.
#[wasm_bindgen(js_name = engineMemoryBytes)]
pub fn engine_memory_bytes() -> f64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    // An ArrayBuffer, or a SharedArrayBuffer in the threaded build: read its length by name.
    js_sys::Reflect::get(&memory.buffer(), &"byteLength".into()).ok().and_then(|v| v.as_f64()).unwrap_or(0.0)
}

/// What loading a GGUF model needs (`{parameters, file_bytes, resident_bytes,
/// largest_tensor_bytes, largest_tensor}`), read from the first bytes of the file (`head`) and
/// its length, so the page can refuse a model too big for the device before reading it all.
/// Returns null when `head` ends inside the header: call again with more of the file.
#[wasm_bindgen(js_name = modelMemory)]
pub fn model_memory(head: &[u8], file_len: f64) -> JsResult<JsValue> {
    match crate::quant::MemoryNeed::of_gguf(head, file_len as usize)? {
        Some(need) => to_js(&need),
        None => Ok(JsValue::NULL),
    }
}

/// What loading an HF model needs (as [`model_memory`]), from each safetensors shard's first
/// bytes (`heads`: its 8-byte header length and JSON header, at least) and size (`sizes`). Throws
/// a sentence naming the shard when a header is not one or does not fit its file.
#[wasm_bindgen(js_name = safetensorsMemory)]
pub fn safetensors_memory(heads: Vec<js_sys::Uint8Array>, sizes: Vec<f64>) -> JsResult<JsValue> {
    if heads.len() != sizes.len() {
        return Err(JsError::new("safetensorsMemory: one size per header"));
    }
    let heads: Vec<Vec<u8>> = heads.iter().map(js_sys::Uint8Array::to_vec).collect();
    let shards: Vec<(&[u8], u64)> = heads.iter().zip(&sizes).map(|(h, &size)| (h.as_slice(), size as u64)).collect();
    to_js(&crate::quant::MemoryNeed::of_safetensors(&shards)?)
}

/// Validates annotation JSONL. Returns `{records, errors: [{line, field, message}], error_count,
/// error_lines}`: the first 1,000 problems listed, all of them counted; the caller decides
/// whether a file with errors is imported.
#[wasm_bindgen(js_name = parseAnnotations)]
pub fn parse_annotations_js(bytes: Vec<u8>) -> JsResult<JsValue> {
    #[derive(Serialize)]
    struct Parsed<'a> {
        records: Vec<&'a Annotation>,
        errors: &'a [crate::data::LineError],
        error_count: usize,
        error_lines: usize,
    }
    let report = parse_annotations(&bytes);
    to_js(&Parsed {
        records: report.records.iter().map(|(_, r)| r).collect(),
        errors: &report.errors,
        error_count: report.error_count,
        error_lines: report.error_lines,
    })
}

/// Writes records (annotation objects) as canonical JSONL, refusing invalid ones.
#[wasm_bindgen(js_name = annotationsToJsonl)]
pub fn annotations_to_jsonl_js(records: JsValue) -> JsResult<String> {
    let records: Vec<Annotation> = required_from_js(records, "records")?;
    Ok(annotations_to_jsonl(&records))
}

/// The 1–10 score in a critique's verdict, or undefined.
#[wasm_bindgen(js_name = parseVerdictScore)]
pub fn parse_verdict_score_js(text: &str) -> Option<u8> {
    parse_verdict_score(text)
}

/// Validates benchmark JSONL; returns the items (the error lists every bad line).
#[wasm_bindgen(js_name = parseBenchmark)]
pub fn parse_benchmark_js(bytes: Vec<u8>) -> JsResult<JsValue> {
    to_js(&parse_benchmark(&bytes)?)
}

/// `{n, mean, median, sd, wilcoxon_p, wilcoxon_method, cohens_d}` of paired differences
/// (one-sided Wilcoxon, H1: > 0), as `cqa calibrate` reports per group.
#[wasm_bindgen(js_name = pairedSummary)]
pub fn paired_summary_js(values: Vec<f64>) -> JsResult<JsValue> {
    to_js(&paired_summary(&values))
}

/// The per-group statistics of calibrated items (as `calibrateItem` resolves them): of Δ(ΔI)
/// when the items were scored against a tuned model, else of the base ΔI. The same function
/// computes `cqa calibrate --json`'s `groups`.
#[wasm_bindgen(js_name = calibrationGroups)]
pub fn calibration_groups(items: JsValue) -> JsResult<JsValue> {
    let items: Vec<ItemReport> = required_from_js(items, "calibrated items")?;
    to_js(&group_summaries(&items))
}

/// Coverage of valid annotation JSONL, as `cqa coverage --json` prints it.
#[wasm_bindgen(js_name = annotationCoverage)]
pub fn annotation_coverage(jsonl: &str) -> JsResult<JsValue> {
    let records = parse_annotations(jsonl.as_bytes()).accept(false)?;
    to_js(&coverage(&records))
}

/// The training set in HF TRL chat format (JSONL).
#[wasm_bindgen(js_name = exportTrl)]
pub fn export_trl(jsonl: &str) -> JsResult<String> {
    let records = parse_annotations(jsonl.as_bytes()).accept(false)?;
    Ok(trl_jsonl(&records))
}
