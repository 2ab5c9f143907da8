//! Training in the browser: `WebTrainer` runs the engine's own loop (`train::run`) with the
//! browser's clock and event loop injected, and hands events and checkpoints to the page.

use super::{JsResult, WebModel, from_js, js_message, promise, to_js};
use crate::data::parse_annotations;
use crate::train::{AsyncEventSink, Checkpoint, CheckpointSchedule, TrainConfig, TrainControl, TrainEvent, Trainer};
use crate::Error;
use js_sys::Promise;
use serde::Serialize;
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

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

/// The browser's clock, injected into the trainer (the engine itself has no DOM access).
fn browser_clock() -> f64 {
    js_sys::Date::now() / 1000.0
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

/// Hands each training event (and, when due, checkpoint bytes) to the page's handler.
struct JsSink {
    on_event: js_sys::Function,
    checkpoints: CheckpointSchedule,
}

impl AsyncEventSink for &mut JsSink {
    async fn event(&mut self, event: TrainEvent, trainer: &Trainer) -> crate::Result<()> {
        let value = to_js(&event).map_err(|_| Error::Input("a training event could not be handed to the page".into()))?;
        let checkpoint = if self.checkpoints.due(&event, trainer) {
            let bytes = trainer.checkpoint().await?.to_bytes()?;
            JsValue::from(js_sys::Uint8Array::from(bytes.as_slice()))
        } else {
            JsValue::UNDEFINED
        };
        self.on_event
            .call2(&JsValue::NULL, &value, &checkpoint)
            .map_err(|e| Error::Input(format!("the progress handler failed: {}", js_message(&e))))?;
        Ok(())
    }
}

/// `{train, held_out, step, total_steps, warnings, config}` of a prepared run.
#[derive(Serialize)]
struct TrainerInfo<'a> {
    train: usize,
    held_out: usize,
    /// The ids of the held-out records, for measuring agreement on them after training.
    held_out_ids: Vec<&'a str>,
    step: usize,
    total_steps: usize,
    warnings: &'a [String],
    config: &'a TrainConfig,
}

/// A trained adapter in PEFT layout, as the page stores and exports it: `{config_json,
/// safetensors: Uint8Array}`. Built by hand: the JSON-compatible serializer `to_js` uses writes
/// bytes as a plain Array of numbers (a 19.5 MB adapter became 19.5 million array items, too big
/// for a private window's storage, and with no `byteLength` for its size).
fn peft_files(config_json: String, safetensors: &[u8]) -> JsResult<JsValue> {
    let out = js_sys::Object::new();
    let set = |key: &str, value: JsValue| {
        js_sys::Reflect::set(&out, &JsValue::from_str(key), &value).map_err(|_| JsError::new("could not build the adapter object"))
    };
    set("config_json", JsValue::from_str(&config_json))?;
    set("safetensors", js_sys::Uint8Array::from(safetensors).into())?;
    Ok(out.into())
}

impl WebTrainer {
    fn wrap(mut trainer: Trainer) -> WebTrainer {
        trainer.set_clock(browser_clock);
        WebTrainer { trainer: Rc::new(RefCell::new(Some(trainer))), control: TrainControl::default() }
    }
}

#[wasm_bindgen]
impl WebTrainer {
    /// Prepares a run on annotation JSONL with `TrainConfig` fields (missing ones take their
    /// defaults). A file with bad lines is refused unless `keep_good_lines`.
    #[wasm_bindgen(constructor)]
    pub fn new(model: &WebModel, records_jsonl: Vec<u8>, config: JsValue, keep_good_lines: bool) -> JsResult<WebTrainer> {
        let records = parse_annotations(&records_jsonl).accept(keep_good_lines)?;
        let config: TrainConfig = from_js(config, "training settings")?;
        Ok(WebTrainer::wrap(Trainer::new(&model.lm, &records, config, None)?))
    }

    /// Continues a run from checkpoint bytes (as given to `run`'s handler), on the same records.
    pub fn resume(model: &WebModel, records_jsonl: Vec<u8>, checkpoint: Vec<u8>) -> JsResult<WebTrainer> {
        let records = parse_annotations(&records_jsonl).accept(true)?;
        let checkpoint = Checkpoint::from_bytes(&checkpoint)?;
        Ok(WebTrainer::wrap(Trainer::resume(&model.lm, &records, checkpoint)?))
    }

    pub fn info(&self) -> JsResult<JsValue> {
        let cell = self.trainer.borrow();
        let t = cell.as_ref().ok_or_else(|| JsError::new("the trainer is running"))?;
        to_js(&TrainerInfo {
            train: t.train_examples().len(),
            held_out: t.held_out_examples().len(),
            held_out_ids: t.held_out_examples().iter().map(|e| e.id.as_str()).collect(),
            step: t.step_index(),
            total_steps: t.total_steps(),
            warnings: t.warnings(),
            config: t.config(),
        })
    }

    pub fn control(&self) -> WebTrainControl {
        WebTrainControl(self.control.clone())
    }

    /// Trains to the end, or until cancelled. `on_event(event, checkpoint?)` receives every
    /// training event (the objects `cqa train --json` prints); `checkpoint` (bytes) comes every
    /// `checkpoint_every` steps, at each evaluation and at the end. Resolves to `"finished"` or
    /// `"cancelled"`.
    pub fn run(&self, on_event: js_sys::Function, checkpoint_every: usize) -> Promise {
        let cell = self.trainer.clone();
        let control = self.control.clone();
        promise(async move {
            let mut trainer = cell.borrow_mut().take().ok_or_else(|| JsError::new("this run is already in progress"))?;
            let mut sink = JsSink { on_event, checkpoints: CheckpointSchedule::new(checkpoint_every) };
            let outcome = crate::train::run(&mut trainer, &control, &mut sink, yield_to_event_loop).await;
            *cell.borrow_mut() = Some(trainer);
            to_js(&outcome?)
        })
    }

    /// A checkpoint of the run now (e.g. when pausing): resolves to its bytes.
    pub fn checkpoint(&self) -> Promise {
        let cell = self.trainer.clone();
        promise(async move {
            let trainer = cell.borrow_mut().take().ok_or_else(|| JsError::new("the trainer is running"))?;
            let checkpoint = trainer.checkpoint().await;
            *cell.borrow_mut() = Some(trainer);
            let bytes = checkpoint?.to_bytes()?;
            Ok(js_sys::Uint8Array::from(bytes.as_slice()).into())
        })
    }

    /// The adapter in PEFT layout: resolves to `{config_json, safetensors}`.
    pub fn adapter(&self, base_model: Option<String>) -> Promise {
        let cell = self.trainer.clone();
        promise(async move {
            let trainer = cell.borrow_mut().take().ok_or_else(|| JsError::new("the trainer is running"))?;
            let adapter = trainer.adapter().await;
            *cell.borrow_mut() = Some(trainer);
            let adapter = adapter?;
            peft_files(adapter.peft_config_json(base_model.as_deref()), &adapter.peft_safetensors()?)
        })
    }
}

