//! The browser facade: wasm-bindgen bindings over the engine, and nothing else. Bytes come in
//! (the page reads files and fetches from its own origin), JSON and text go out. Every GPU read is
//! async. Errors become `JsError` here and only here.
//!
//! Async methods return Promises built from `'static` futures: the model sits behind an `Rc`, and
//! a generation session is taken out of its cell for the duration of a step, so no borrow lives
//! across an `await`.

use crate::appreciate::parse_verdict_score;
use crate::calibrate::{BenchItem, parse_benchmark, run_item};
use crate::data::{Annotation, annotations_to_jsonl, appreciation_prompt, coverage, parse_annotations, trl_jsonl};
use crate::stats::paired_summary;
use crate::eval::score;
use crate::lora::Adapter;
use crate::train::{AsyncEventSink, Checkpoint, CheckpointSchedule, RunOutcome, TrainConfig, TrainControl, TrainEvent, Trainer};
use crate::generate::{GenerationSession, SamplingParams, TextStream};
use crate::model::{Llama, LlamaConfig};
use crate::tokenizer::ChatMessage;
use crate::{Error, LanguageModel};
use burn::tensor::{Device, Int, Tensor, TensorData};
use js_sys::Promise;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

thread_local! {
    static DEVICE: RefCell<Option<(Device, &'static str)>> = const { RefCell::new(None) };
}

fn js_err(e: Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

fn current_device() -> Result<Device, JsValue> {
    DEVICE
        .with(|d| d.borrow().as_ref().map(|(d, _)| d.clone()))
        .ok_or_else(|| JsError::new("call initDevice() before loading a model").into())
}

/// Picks the compute device: WebGPU when the browser has it and `prefer_gpu`, else the CPU.
/// Resolves to `"webgpu"` or `"cpu"`.
#[wasm_bindgen(js_name = initDevice)]
pub fn init_device(prefer_gpu: bool) -> Promise {
    future_to_promise(async move {
        console_error_panic_hook::set_once();
        if let Some(name) = DEVICE.with(|d| d.borrow().as_ref().map(|(_, n)| *n)) {
            return Ok(JsValue::from_str(name));
        }
        let has_webgpu = js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("navigator"))
            .ok()
            .and_then(|nav| js_sys::Reflect::get(&nav, &JsValue::from_str("gpu")).ok())
            .is_some_and(|gpu| !gpu.is_undefined() && !gpu.is_null());
        let (device, name) = if prefer_gpu && has_webgpu {
            match crate::device::wgpu().await {
                Ok(d) => (d, "webgpu"),
                Err(_) => (crate::device::cpu(), "cpu"),
            }
        } else {
            (crate::device::cpu(), "cpu")
        };
        DEVICE.with(|d| *d.borrow_mut() = Some((device, name)));
        Ok(JsValue::from_str(name))
    })
}

/// A loaded model with at most one generation in progress.
#[wasm_bindgen]
pub struct WebModel {
    lm: Rc<LanguageModel>,
    session: Rc<RefCell<Option<(GenerationSession, TextStream)>>>,
}

#[wasm_bindgen]
impl WebModel {
    /// Loads a GGUF file from its bytes.
    #[wasm_bindgen(js_name = loadGguf)]
    pub fn load_gguf(bytes: Vec<u8>) -> Result<WebModel, JsValue> {
        let device = current_device()?;
        let lm = LanguageModel::from_gguf_bytes(bytes, &device).map_err(js_err)?;
        Ok(WebModel { lm: Rc::new(lm), session: Rc::new(RefCell::new(None)) })
    }

    /// Loads HF safetensors shards with config.json, tokenizer.json and (optional)
    /// tokenizer_config.json.
    #[wasm_bindgen(js_name = loadHf)]
    pub fn load_hf(
        shards: Vec<js_sys::Uint8Array>,
        config_json: String,
        tokenizer_json: Vec<u8>,
        tokenizer_config_json: Option<String>,
    ) -> Result<WebModel, JsValue> {
        let device = current_device()?;
        let files = shards.iter().map(|a| a.to_vec()).collect();
        let lm = LanguageModel::from_hf_bytes(files, &config_json, &tokenizer_json, tokenizer_config_json.as_deref(), &device)
            .map_err(js_err)?;
        Ok(WebModel { lm: Rc::new(lm), session: Rc::new(RefCell::new(None)) })
    }

    /// The same model with a PEFT LoRA adapter merged in (the base stays loaded and usable).
    #[wasm_bindgen(js_name = withAdapter)]
    pub fn with_adapter(&self, config_json: &str, safetensors: Vec<u8>) -> Result<WebModel, JsValue> {
        let adapter = Adapter::from_peft(config_json, &safetensors, &self.lm.model.projection_shapes()).map_err(js_err)?;
        let lm = self.lm.with_adapter(&adapter, true).map_err(js_err)?;
        Ok(WebModel { lm: Rc::new(lm), session: Rc::new(RefCell::new(None)) })
    }

    /// Architecture, parameter count, tensor types and memory, as JSON.
    pub fn info(&self) -> String {
        serde_json::to_string(&self.lm.info).unwrap_or_default()
    }

    /// Token ids of `text` (special tokens added as the model wants).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, JsValue> {
        self.lm.tokenizer.encode(text, true).map_err(js_err)
    }

    /// The text of each token on its own, as a JSON list (for per-token heatmaps). A token that
    /// holds part of a character shows as U+FFFD.
    #[wasm_bindgen(js_name = tokenTexts)]
    pub fn token_texts(&self, ids: Vec<u32>) -> Result<String, JsValue> {
        let texts = ids.iter().map(|&id| self.lm.tokenizer.decode(&[id], false)).collect::<Result<Vec<_>, _>>().map_err(js_err)?;
        Ok(serde_json::to_string(&texts).unwrap_or_default())
    }

    /// Renders `[{role, content}, ...]` (JSON) with the model's chat template.
    #[wasm_bindgen(js_name = applyChatTemplate)]
    pub fn apply_chat_template(&self, messages_json: &str, add_generation_prompt: bool) -> Result<String, JsValue> {
        let messages: Vec<ChatMessage> = serde_json::from_str(messages_json)
            .map_err(|e| js_err(Error::Input(format!("messages must be a JSON list of {{role, content}}: {e}"))))?;
        self.lm.tokenizer.apply_chat_template(&messages, add_generation_prompt).map_err(js_err)
    }

    /// Scores `text` after optional `context`; resolves to the same JSON as `cqa score --json`.
    pub fn score(&self, text: String, context: Option<String>) -> Promise {
        let lm = self.lm.clone();
        future_to_promise(async move {
            let s = score(&lm, &text, context.as_deref()).await.map_err(js_err)?;
            Ok(JsValue::from_str(&serde_json::to_string(&s).unwrap_or_default()))
        })
    }

    /// Starts generating from `prompt`. With `chat`, the prompt becomes a user turn in the
    /// model's chat template. `params_json` holds `SamplingParams` fields (all optional).
    #[wasm_bindgen(js_name = startGeneration)]
    pub fn start_generation(&self, prompt: &str, chat: bool, params_json: &str) -> Result<(), JsValue> {
        let params: SamplingParams = serde_json::from_str(if params_json.is_empty() { "{}" } else { params_json })
            .map_err(|e| js_err(Error::Input(format!("bad sampling parameters: {e}"))))?;
        let text = if chat {
            self.lm.tokenizer.apply_chat_template(&[ChatMessage::new("user", prompt)], true).map_err(js_err)?
        } else {
            prompt.to_string()
        };
        let ids = self.lm.tokenizer.encode(&text, !chat).map_err(js_err)?;
        let session = GenerationSession::new(&self.lm, ids, params).map_err(js_err)?;
        *self.session.borrow_mut() = Some((session, TextStream::default()));
        Ok(())
    }

    /// Starts the appreciation task on `work`: the same system prompt and user turn the model
    /// is fine-tuned on, so base and tuned critiques are comparable.
    #[wasm_bindgen(js_name = startAppreciation)]
    pub fn start_appreciation(&self, brief: &str, audience: &str, genre: &str, work: &str, params_json: &str) -> Result<(), JsValue> {
        let params: SamplingParams = serde_json::from_str(if params_json.is_empty() { "{}" } else { params_json })
            .map_err(|e| js_err(Error::Input(format!("bad sampling parameters: {e}"))))?;
        let text = self.lm.tokenizer.apply_chat_template(&appreciation_prompt(brief, audience, genre, work), true).map_err(js_err)?;
        let ids = self.lm.tokenizer.encode(&text, false).map_err(js_err)?;
        let session = GenerationSession::new(&self.lm, ids, params).map_err(js_err)?;
        *self.session.borrow_mut() = Some((session, TextStream::default()));
        Ok(())
    }

    /// Scores one benchmark item (JSON, as in the benchmark file) with this model alone:
    /// resolves to the item's `cqa calibrate --json --tokens` object.
    #[wasm_bindgen(js_name = calibrateItem)]
    pub fn calibrate_item(&self, item_json: String) -> Promise {
        let lm = self.lm.clone();
        future_to_promise(async move {
            let item: BenchItem = serde_json::from_str(&item_json).map_err(|e| js_err(Error::Input(format!("bad benchmark item: {e}"))))?;
            let result = run_item(&lm, None, &item).await.map_err(js_err)?;
            Ok(JsValue::from_str(&result.to_json(true).to_string()))
        })
    }

    /// Scores one benchmark item with this (base) model and `tuned`: the object adds `tuned`,
    /// `delta_delta_i_bits` and the per-token `token_shift`.
    #[wasm_bindgen(js_name = calibrateItemAgainst)]
    pub fn calibrate_item_against(&self, item_json: String, tuned: &WebModel) -> Promise {
        let lm = self.lm.clone();
        let tuned = tuned.lm.clone();
        future_to_promise(async move {
            let item: BenchItem = serde_json::from_str(&item_json).map_err(|e| js_err(Error::Input(format!("bad benchmark item: {e}"))))?;
            let result = run_item(&lm, Some(&tuned), &item).await.map_err(js_err)?;
            Ok(JsValue::from_str(&result.to_json(true).to_string()))
        })
    }

    /// Runs one step. Resolves to `{token, text}` (text may be empty while a character is
    /// incomplete) or to `{done: true, reason}` when the session has stopped.
    #[wasm_bindgen(js_name = nextToken)]
    pub fn next_token(&self) -> Promise {
        let lm = self.lm.clone();
        let cell = self.session.clone();
        future_to_promise(async move {
            let (mut session, mut stream) =
                cell.borrow_mut().take().ok_or_else(|| JsValue::from(JsError::new("no generation in progress")))?;
            let step = session.next_token(&lm).await;
            let out = match step {
                Ok(Some(id)) => match stream.push(&lm, id) {
                    Ok(text) => Ok(serde_json::json!({ "token": id, "text": text })),
                    Err(e) => Err(js_err(e)),
                },
                Ok(None) => Ok(serde_json::json!({ "done": true, "reason": session.stop_reason() })),
                Err(e) => Err(js_err(e)),
            };
            *cell.borrow_mut() = Some((session, stream));
            out.map(|v| JsValue::from_str(&v.to_string()))
        })
    }
}

/// Logits of a tiny seeded random model (`LlamaConfig::tiny`) for `ids`, flattened
/// `[seq, vocab]`: the browser test compares them with the native CPU backend's.
#[wasm_bindgen(js_name = tinyModelLogits)]
pub fn tiny_model_logits(seed: u32, vocab_size: usize, ids: Vec<u32>) -> Promise {
    future_to_promise(async move {
        let device = current_device()?;
        let model = Llama::random(&LlamaConfig::tiny(vocab_size), seed as u64, &device);
        let n = ids.len();
        let ids: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
        let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &device);
        let logits = model.forward(tokens, &mut model.new_cache()).map_err(js_err)?;
        let values = crate::generate::read_f32(logits).await.map_err(js_err)?;
        Ok(js_sys::Float32Array::from(values.as_slice()).into())
    })
}

/// Validates annotation JSONL. Returns `{records: [...], errors: [{line, field, message}]}`;
/// the caller decides whether a file with errors is imported.
#[wasm_bindgen(js_name = parseAnnotations)]
pub fn parse_annotations_js(bytes: Vec<u8>) -> String {
    let report = parse_annotations(&bytes);
    let records: Vec<_> = report.records.iter().map(|(_, r)| r).collect();
    serde_json::json!({ "records": records, "errors": report.errors }).to_string()
}

/// Writes records (a JSON list of annotation objects) as canonical JSONL, refusing invalid ones.
#[wasm_bindgen(js_name = annotationsToJsonl)]
pub fn annotations_to_jsonl_js(records_json: &str) -> Result<String, JsValue> {
    let records: Vec<Annotation> = serde_json::from_str(records_json)
        .map_err(|e| js_err(Error::Input(format!("the records are not valid annotations: {e}"))))?;
    Ok(annotations_to_jsonl(&records))
}

/// The 1–10 score in a critique's verdict, or undefined.
#[wasm_bindgen(js_name = parseVerdictScore)]
pub fn parse_verdict_score_js(text: &str) -> Option<u8> {
    parse_verdict_score(text)
}

/// Validates benchmark JSONL; resolves to the items as a JSON list (errors list every bad line).
#[wasm_bindgen(js_name = parseBenchmark)]
pub fn parse_benchmark_js(bytes: Vec<u8>) -> Result<String, JsValue> {
    let items = parse_benchmark(&bytes).map_err(js_err)?;
    Ok(serde_json::to_string(&items).unwrap_or_default())
}

/// `{n, mean, median, sd, wilcoxon_p, cohens_d, wilcoxon_method}` of paired differences (one-sided
/// Wilcoxon, H1: > 0), as `cqa calibrate` reports per group.
#[wasm_bindgen(js_name = pairedSummary)]
pub fn paired_summary_js(values: Vec<f64>) -> String {
    let s = paired_summary(&values);
    let finite = |x: f64| x.is_finite().then_some(x);
    serde_json::json!({
        "n": s.n, "mean": finite(s.mean), "median": finite(s.median), "sd": finite(s.sd),
        "wilcoxon_p": s.wilcoxon_p, "cohens_d": s.cohens_d, "wilcoxon_method": s.wilcoxon_method,
    })
    .to_string()
}

/// Coverage of valid annotation JSONL, as `cqa coverage --json` prints it.
#[wasm_bindgen(js_name = annotationCoverage)]
pub fn annotation_coverage(jsonl: &str) -> Result<String, JsValue> {
    let records = parse_annotations(jsonl.as_bytes()).accept(false).map_err(js_err)?;
    Ok(serde_json::to_string(&coverage(&records)).unwrap_or_default())
}

/// The training set in HF TRL chat format (JSONL).
#[wasm_bindgen(js_name = exportTrl)]
pub fn export_trl(jsonl: &str) -> Result<String, JsValue> {
    let records = parse_annotations(jsonl.as_bytes()).accept(false).map_err(js_err)?;
    Ok(trl_jsonl(&records))
}

/// Pause / resume / cancel for a running [`WebTrainer`]; a separate object so it can be used
/// while `run` holds the trainer.
#[wasm_bindgen]
pub struct WebTrainControl(TrainControl);

#[wasm_bindgen]
impl WebTrainControl {
    pub fn pause(&self) {
        self.0.pause();
    }
    pub fn resume(&self) {
        self.0.resume();
    }
    pub fn cancel(&self) {
        self.0.cancel();
    }
}

/// A LoRA training run in the browser. `run` is the engine's own loop (`train::run`).
#[wasm_bindgen]
pub struct WebTrainer {
    trainer: Rc<RefCell<Option<Trainer>>>,
    control: TrainControl,
}

/// Resolves after a macrotask, so the worker handles its messages between steps.
async fn yield_to_event_loop() {
    let promise = Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        match set_timeout {
            Some(f) => {
                let _ = f.call2(&global, &resolve, &JsValue::from(0));
            }
            None => {
                let _ = resolve.call0(&JsValue::NULL);
            }
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

struct JsSink {
    on_event: js_sys::Function,
    checkpoints: CheckpointSchedule,
}

impl AsyncEventSink for &mut JsSink {
    async fn event(&mut self, event: TrainEvent, trainer: &Trainer) -> crate::Result<()> {
        let json = serde_json::to_string(&event).unwrap_or_default();
        let due = self.checkpoints.due(&event, trainer);
        let checkpoint = if due {
            let bytes = trainer.checkpoint().await?.to_bytes()?;
            JsValue::from(js_sys::Uint8Array::from(bytes.as_slice()))
        } else {
            JsValue::UNDEFINED
        };
        self.on_event
            .call2(&JsValue::NULL, &JsValue::from_str(&json), &checkpoint)
            .map_err(|e| Error::Input(format!("the progress handler failed: {e:?}")))?;
        Ok(())
    }
}

#[wasm_bindgen]
impl WebTrainer {
    /// Prepares a run on annotation JSONL with `TrainConfig` JSON (missing fields take their
    /// defaults). A file with bad lines is refused unless `keep_good_lines`.
    #[wasm_bindgen(constructor)]
    pub fn new(model: &WebModel, records_jsonl: Vec<u8>, config_json: &str, keep_good_lines: bool) -> Result<WebTrainer, JsValue> {
        let records = parse_annotations(&records_jsonl).accept(keep_good_lines).map_err(js_err)?;
        let config: TrainConfig = serde_json::from_str(if config_json.is_empty() { "{}" } else { config_json })
            .map_err(|e| js_err(Error::Input(format!("bad training settings: {e}"))))?;
        let trainer = Trainer::new(&model.lm, &records, config, None).map_err(js_err)?;
        Ok(WebTrainer { trainer: Rc::new(RefCell::new(Some(trainer))), control: TrainControl::default() })
    }

    /// Continues a run from checkpoint bytes (as given to `run`'s handler), on the same records.
    pub fn resume(model: &WebModel, records_jsonl: Vec<u8>, checkpoint: Vec<u8>) -> Result<WebTrainer, JsValue> {
        let records = parse_annotations(&records_jsonl).accept(true).map_err(js_err)?;
        let checkpoint = Checkpoint::from_bytes(&checkpoint).map_err(js_err)?;
        let trainer = Trainer::resume(&model.lm, &records, checkpoint).map_err(js_err)?;
        Ok(WebTrainer { trainer: Rc::new(RefCell::new(Some(trainer))), control: TrainControl::default() })
    }

    /// `{train, held_out, step, total_steps, warnings, config}` as JSON.
    pub fn info(&self) -> Result<String, JsValue> {
        let cell = self.trainer.borrow();
        let t = cell.as_ref().ok_or_else(|| JsValue::from(JsError::new("the trainer is running")))?;
        Ok(serde_json::json!({
            "train": t.train_examples().len(),
            "held_out": t.held_out_examples().len(),
            "step": t.step_index(),
            "total_steps": t.total_steps(),
            "warnings": t.warnings(),
            "config": t.config(),
        })
        .to_string())
    }

    pub fn control(&self) -> WebTrainControl {
        WebTrainControl(self.control.clone())
    }

    /// Trains to the end, or until cancelled. `on_event(json, checkpoint?)` receives every step
    /// and held-out evaluation; `checkpoint` (bytes) comes every `checkpoint_every` steps, at
    /// each evaluation and at the end. Resolves to `"finished"` or `"cancelled"`.
    pub fn run(&self, on_event: js_sys::Function, checkpoint_every: usize) -> Promise {
        let cell = self.trainer.clone();
        let control = self.control.clone();
        future_to_promise(async move {
            let mut trainer =
                cell.borrow_mut().take().ok_or_else(|| JsValue::from(JsError::new("this run is already in progress")))?;
            let mut sink = JsSink { on_event, checkpoints: CheckpointSchedule::new(checkpoint_every) };
            let outcome = crate::train::run(&mut trainer, &control, &mut sink, yield_to_event_loop).await;
            *cell.borrow_mut() = Some(trainer);
            match outcome.map_err(js_err)? {
                RunOutcome::Finished => Ok(JsValue::from_str("finished")),
                RunOutcome::Cancelled => Ok(JsValue::from_str("cancelled")),
            }
        })
    }

    /// A checkpoint of the run now (e.g. when pausing): resolves to its bytes.
    pub fn checkpoint(&self) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let trainer = cell.borrow_mut().take().ok_or_else(|| JsValue::from(JsError::new("the trainer is running")))?;
            let checkpoint = trainer.checkpoint().await;
            *cell.borrow_mut() = Some(trainer);
            let bytes = checkpoint.map_err(js_err)?.to_bytes().map_err(js_err)?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// The adapter in PEFT layout: resolves to `{config_json, safetensors}`.
    pub fn adapter(&self, base_model: Option<String>) -> Promise {
        let cell = self.trainer.clone();
        future_to_promise(async move {
            let trainer = cell.borrow_mut().take().ok_or_else(|| JsValue::from(JsError::new("the trainer is running")))?;
            let adapter = trainer.adapter().await;
            *cell.borrow_mut() = Some(trainer);
            let adapter = adapter.map_err(js_err)?;
            let out = js_sys::Object::new();
            let bytes = adapter.peft_safetensors().map_err(js_err)?;
            js_sys::Reflect::set(&out, &"config_json".into(), &adapter.peft_config_json(base_model.as_deref()).into())?;
            js_sys::Reflect::set(&out, &"safetensors".into(), &js_sys::Uint8Array::from(bytes.as_slice()).into())?;
            Ok(out.into())
        })
    }
}
