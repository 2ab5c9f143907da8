//! LoRA fine-tuning on the appreciation task.
//!
//! - Each annotation becomes one chat: system prompt, user turn (brief, audience, work), and the
//!   expert's reasoning + verdict as the assistant turn. Loss is taken on the assistant tokens
//!   only, as a token mean over the whole optimizer step (so gradient accumulation gives the
//!   same update as one big batch).
//! - AdamW (PyTorch's decoupled form) with linear warmup + cosine decay, global-norm gradient
//!   clipping and gradient accumulation; deterministic for a seed.
//! - The loop is a sequence of awaited steps with no synchronous GPU read, so it runs in a
//!   browser worker; [`run`] drives it with pause/cancel and a caller-supplied yield.
//! - A [`Checkpoint`] holds the adapter, the optimizer moments and the position in the data, so
//!   an interrupted run resumes where it stopped.

use crate::data::Annotation;
use crate::error::{Error, Result};
use crate::generate::read_f32;
use crate::loader::LanguageModel;
use crate::lora::{Adapter, FactorData, LoraConfig};
use crate::model::Llama;
use crate::rng::Rng;
use burn::module::Param;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// Everything that defines a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    pub lora: LoraConfig,
    pub learning_rate: f64,
    pub epochs: usize,
    /// Longer examples are cut to this many tokens (with a warning naming the record).
    pub max_len: usize,
    /// Examples per forward pass.
    pub batch_size: usize,
    /// Forward passes per optimizer step.
    pub grad_accum: usize,
    pub weight_decay: f64,
    /// Share of the steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    /// Global gradient-norm clip; 0 disables it.
    pub max_grad_norm: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// Share of the records held out for evaluation; 0 trains on all of them.
    pub held_out: f64,
    /// Evaluate the held-out loss every this many steps (and after the last).
    pub eval_every: usize,
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lora: LoraConfig::default(),
            learning_rate: 2e-4,
            epochs: 3,
            max_len: 768,
            batch_size: 2,
            grad_accum: 2,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            held_out: 0.15,
            eval_every: 10,
            seed: 42,
        }
    }
}

impl TrainConfig {
    pub fn validate(&self) -> Result<()> {
        self.lora.validate()?;
        let bad = |m: &str| Err(Error::Input(m.to_string()));
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("the learning rate must be a positive number");
        }
        if self.epochs == 0 || self.batch_size == 0 || self.grad_accum == 0 {
            return bad("epochs, batch size and gradient accumulation must each be at least 1");
        }
        if self.max_len < 8 {
            return bad("max_len must be at least 8 tokens");
        }
        if !(0.0..1.0).contains(&self.held_out) {
            return bad("the held-out fraction must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return bad("the warmup ratio must be in [0, 1]");
        }
        if self.max_grad_norm < 0.0 || self.weight_decay < 0.0 {
            return bad("max_grad_norm and weight_decay must not be negative");
        }
        if self.eval_every == 0 {
            return bad("eval_every must be at least 1");
        }
        Ok(())
    }
}

/// One tokenized training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub ids: Vec<u32>,
    /// Index of the first assistant token: tokens `ids[loss_from..]` are predicted and scored.
    pub loss_from: usize,
}

impl Example {
    /// Number of scored tokens.
    pub fn targets(&self) -> usize {
        self.ids.len() - self.loss_from
    }
}

/// Renders and tokenizes one record. The prompt is the chat template with a generation prompt;
/// the completion is what the full conversation adds after it, so the split is exact for any
/// template. Returns the example (or `None` if nothing is left to learn) and any warning.
pub fn build_example(lm: &LanguageModel, record: &Annotation, max_len: usize) -> Result<(Option<Example>, Option<String>)> {
    let tok = &lm.tokenizer;
    let prompt = tok.apply_chat_template(&record.prompt_messages(), true)?;
    let full = tok.apply_chat_template(&record.chat(), false)?;
    let Some(completion) = full.strip_prefix(&prompt) else {
        return Err(Error::Template(
            "this model's chat template renders the prompt differently inside a full conversation, so the assistant turn cannot be isolated".into(),
        ));
    };
    let mut ids = tok.encode(&prompt, true)?;
    let loss_from = ids.len();
    ids.extend(tok.encode(completion, false)?);
    lm.check_ids(&ids)?;
    let total = ids.len();
    if loss_from + 1 >= max_len {
        let warning = format!(
            "record `{}` was skipped: its prompt alone is {loss_from} tokens, over max_len {max_len}",
            record.id
        );
        return Ok((None, Some(warning)));
    }
    let mut warning = None;
    if total > max_len {
        ids.truncate(max_len);
        warning = Some(format!(
            "record `{}` is {total} tokens and was cut to max_len {max_len}: {} of its {} response tokens are trained",
            record.id,
            max_len - loss_from,
            total - loss_from
        ));
    }
    Ok((Some(Example { id: record.id.clone(), ids, loss_from }), warning))
}

/// Splits `n` records into (train, held-out) index lists, deterministically from `seed`.
/// Any positive fraction holds out at least one record, and at least one is always trained.
pub fn split_indices(n: usize, held_out: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    shuffle(&mut order, seed ^ SPLIT_SALT);
    let mut n_held = (n as f64 * held_out).round() as usize;
    if held_out > 0.0 && n >= 2 {
        n_held = n_held.clamp(1, n - 1);
    } else {
        n_held = 0;
    }
    let held = order[..n_held].to_vec();
    let mut train = order[n_held..].to_vec();
    train.sort_unstable();
    let mut held = held;
    held.sort_unstable();
    (train, held)
}

/// A fixed salt so the split and the epoch shuffles draw different streams from one seed.
const SPLIT_SALT: u64 = 0x5eed_5b17;

fn shuffle(items: &mut [usize], seed: u64) {
    let mut rng = Rng::new(seed);
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The learning rate at optimizer step `step` (1-based) of `total`: linear warmup to the peak
/// over `warmup` steps, then cosine decay towards 0 (reached one step after the last).
pub fn learning_rate_at(peak: f64, step: usize, total: usize, warmup: usize) -> f64 {
    if step <= warmup {
        return peak * step as f64 / warmup as f64;
    }
    let decay_steps = (total - warmup) as f64;
    let progress = (step - warmup - 1) as f64 / decay_steps;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// What one optimizer step reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReport {
    pub step: usize,
    pub total_steps: usize,
    /// 1-based epoch this step belongs to.
    pub epoch: usize,
    /// Token-mean cross-entropy (nats) over the step's assistant tokens.
    pub loss: f64,
    pub learning_rate: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Tokens processed (prompt + response) in this step.
    pub tokens: usize,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub eta_s: f64,
}

/// AdamW moments for one factor pair.
#[derive(Debug, Clone)]
struct Moments {
    m_a: Tensor<2>,
    v_a: Tensor<2>,
    m_b: Tensor<2>,
    v_b: Tensor<2>,
}

/// A LoRA training run in progress.
pub struct Trainer {
    config: TrainConfig,
    /// Base model (frozen) with trainable factors attached.
    model: Llama,
    /// Paths of the adapted projections, in model order.
    paths: Vec<String>,
    moments: Vec<Moments>,
    train: Vec<Example>,
    held: Vec<Example>,
    device: Device,
    pad_id: u32,
    step: usize,
    total_steps: usize,
    epoch: usize,
    /// This epoch's example order, and how far into it we are.
    order: Vec<usize>,
    cursor: usize,
    /// Wall time spent in steps, for tokens/s and ETA.
    busy_s: f64,
    warnings: Vec<String>,
}

impl Trainer {
    /// Prepares a run: tokenizes and splits the records and attaches the adapter (`init`, e.g.
    /// one from PEFT, or a fresh PEFT-style initialisation from the seed).
    pub fn new(lm: &LanguageModel, records: &[Annotation], config: TrainConfig, init: Option<Adapter>) -> Result<Self> {
        config.validate()?;
        if records.is_empty() {
            return Err(Error::Input("there are no annotations to train on".into()));
        }
        let (train_idx, held_idx) = split_indices(records.len(), config.held_out, config.seed);
        let mut warnings = Vec::new();
        let mut build = |indices: &[usize]| -> Result<Vec<Example>> {
            let mut out = Vec::new();
            for &i in indices {
                let (example, warning) = build_example(lm, &records[i], config.max_len)?;
                warnings.extend(warning);
                out.extend(example);
            }
            Ok(out)
        };
        let train = build(&train_idx)?;
        let held = build(&held_idx)?;
        if train.is_empty() {
            return Err(Error::Input("no training example is left after applying max_len: raise max_len".into()));
        }
        let mut trainer = Trainer::from_examples(lm, train, held, config, init)?;
        trainer.warnings = warnings;
        Ok(trainer)
    }

    /// Prepares a run on already tokenized examples (benchmarks use synthetic ones).
    pub fn from_examples(
        lm: &LanguageModel,
        train: Vec<Example>,
        held: Vec<Example>,
        config: TrainConfig,
        init: Option<Adapter>,
    ) -> Result<Self> {
        config.validate()?;
        if train.is_empty() {
            return Err(Error::Input("there are no training examples".into()));
        }
        if let Some(bad) = train.iter().chain(&held).find(|e| e.loss_from == 0 || e.loss_from >= e.ids.len()) {
            return Err(Error::Input(format!("example `{}` has no tokens to learn", bad.id)));
        }
        let adapter = match init {
            Some(adapter) => {
                if adapter.config.rank != config.lora.rank || adapter.config.targets != config.lora.targets {
                    return Err(Error::Input("the starting adapter's rank or targets differ from the run's settings".into()));
                }
                Adapter { config: config.lora.clone(), factors: adapter.factors }
            }
            None => Adapter::init(&config.lora, &lm.model.projection_shapes(), config.seed)?,
        };
        let device = lm.device.clone();
        // Dropout masks come from the backend's generator.
        device.clone().autodiff().seed(config.seed);
        let model = lm.model.with_adapter(&adapter, true)?;
        let paths: Vec<String> =
            model.projections().into_iter().filter(|(_, p)| p.lora.is_some()).map(|(path, _)| path).collect();
        let moments = model
            .projections()
            .into_iter()
            .filter_map(|(_, p)| p.lora.as_ref())
            .map(|l| {
                let za = Tensor::zeros(l.a.val().dims(), &device);
                let zb = Tensor::zeros(l.b.val().dims(), &device);
                Moments { m_a: za.clone(), v_a: za, m_b: zb.clone(), v_b: zb }
            })
            .collect();
        let steps_per_epoch = train.len().div_ceil(config.batch_size * config.grad_accum);
        let total_steps = steps_per_epoch * config.epochs;
        let pad_id = lm.tokenizer.stop_ids().first().copied().unwrap_or(0);
        let mut trainer = Trainer {
            config,
            model,
            paths,
            moments,
            train,
            held,
            device,
            pad_id,
            step: 0,
            total_steps,
            epoch: 0,
            order: Vec::new(),
            cursor: 0,
            busy_s: 0.0,
            warnings: Vec::new(),
        };
        trainer.start_epoch();
        Ok(trainer)
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Warnings from preparing the data (cut or skipped records).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    pub fn step_index(&self) -> usize {
        self.step
    }

    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    pub fn is_finished(&self) -> bool {
        self.step >= self.total_steps
    }

    pub fn train_examples(&self) -> &[Example] {
        &self.train
    }

    pub fn held_out_examples(&self) -> &[Example] {
        &self.held
    }

    /// Whether the held-out loss is due after the step just taken.
    pub fn eval_due(&self) -> bool {
        !self.held.is_empty() && self.step > 0 && (self.step.is_multiple_of(self.config.eval_every) || self.is_finished())
    }

    fn start_epoch(&mut self) {
        self.epoch += 1;
        self.order = (0..self.train.len()).collect();
        shuffle(&mut self.order, self.config.seed.wrapping_add(self.epoch as u64));
        self.cursor = 0;
    }

    /// The next optimizer step's micro-batches (indices into `train`).
    fn next_micro_batches(&mut self) -> Vec<Vec<usize>> {
        if self.cursor >= self.order.len() {
            self.start_epoch();
        }
        let take = (self.config.batch_size * self.config.grad_accum).min(self.order.len() - self.cursor);
        let chosen = &self.order[self.cursor..self.cursor + take];
        self.cursor += take;
        chosen.chunks(self.config.batch_size).map(|c| c.to_vec()).collect()
    }

    /// Runs one optimizer step. Returns `None` once the run is complete.
    pub async fn step(&mut self) -> Result<Option<StepReport>> {
        if self.is_finished() {
            return Ok(None);
        }
        let started = now_s();
        let epoch = if self.cursor >= self.order.len() { self.epoch + 1 } else { self.epoch };
        let batches = self.next_micro_batches();
        let examples: Vec<Vec<&Example>> = batches.iter().map(|b| b.iter().map(|&i| &self.train[i]).collect()).collect();
        let n_targets: usize = examples.iter().flatten().map(|e| e.targets()).sum();
        let tokens: usize = examples.iter().flatten().map(|e| e.ids.len()).sum();

        let mut grads: Option<Vec<Tensor<2>>> = None;
        let mut loss_total: Option<Tensor<1>> = None;
        for batch in &examples {
            let loss = token_loss_sum(&self.model, batch, self.pad_id, &self.device)?.div_scalar(n_targets as f64);
            let backward = loss.backward();
            let mut these = Vec::with_capacity(self.paths.len() * 2);
            for (_, projection) in self.model.projections() {
                if let Some(lora) = &projection.lora {
                    for param in [&lora.a, &lora.b] {
                        let g = param.val().grad(&backward).unwrap_or_else(|| Tensor::zeros(param.val().dims(), &self.device));
                        these.push(g);
                    }
                }
            }
            grads = Some(match grads {
                None => these,
                Some(acc) => acc.into_iter().zip(these).map(|(a, g)| a + g).collect(),
            });
            let loss = loss.inner();
            loss_total = Some(match loss_total {
                None => loss,
                Some(t) => t + loss,
            });
        }
        let mut grads = grads.expect("a step has at least one micro-batch");
        let loss_total = loss_total.expect("a step has at least one micro-batch");

        // Global-norm clipping, as torch.nn.utils.clip_grad_norm_: kept on the device (no read).
        let norm_sq = grads.iter().map(|g| g.clone().square().sum()).reduce(|a, b| a + b).expect("at least one factor");
        let grad_norm = norm_sq.sqrt();
        if self.config.max_grad_norm > 0.0 {
            let coef = grad_norm.clone().add_scalar(1e-6).recip().mul_scalar(self.config.max_grad_norm).clamp_max(1.0);
            let coef = coef.reshape([1, 1]);
            grads = grads.into_iter().map(|g| g * coef.clone()).collect();
        }

        self.step += 1;
        let warmup = (self.config.warmup_ratio * self.total_steps as f64).ceil() as usize;
        let lr = learning_rate_at(self.config.learning_rate, self.step, self.total_steps, warmup);
        self.apply_adamw(grads, lr);

        let values = read_f32(Tensor::cat(vec![loss_total, grad_norm], 0)).await?;
        let elapsed = now_s() - started;
        self.busy_s += elapsed;
        let mean_step = self.busy_s / self.step as f64;
        Ok(Some(StepReport {
            step: self.step,
            total_steps: self.total_steps,
            epoch,
            loss: values[0] as f64,
            learning_rate: lr,
            grad_norm: values[1] as f64,
            tokens,
            tokens_per_s: tokens as f64 / elapsed.max(1e-9),
            elapsed_s: self.busy_s,
            eta_s: mean_step * (self.total_steps - self.step) as f64,
        }))
    }

    /// PyTorch's AdamW: decoupled weight decay, bias-corrected moments.
    fn apply_adamw(&mut self, grads: Vec<Tensor<2>>, lr: f64) {
        let c = &self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        let decay = 1.0 - lr * c.weight_decay;
        let update = |p: Tensor<2>, g: Tensor<2>, m: Tensor<2>, v: Tensor<2>| {
            let m = m.mul_scalar(c.beta1) + g.clone().mul_scalar(1.0 - c.beta1);
            let v = v.mul_scalar(c.beta2) + g.square().mul_scalar(1.0 - c.beta2);
            let denom = v.clone().sqrt().div_scalar(bias2_sqrt).add_scalar(c.epsilon);
            let p = p.mul_scalar(decay) - m.clone().div(denom).mul_scalar(lr / bias1);
            (p, m, v)
        };
        let mut grads = grads.into_iter();
        let mut moments = self.moments.iter_mut();
        for (_, projection) in self.model.projections_mut() {
            let Some(lora) = projection.lora.as_mut() else { continue };
            let mo = moments.next().expect("one set of moments per adapted projection");
            let (ga, gb) = (grads.next().expect("grad for A"), grads.next().expect("grad for B"));
            let (a, m_a, v_a) = update(lora.a.val().inner(), ga, mo.m_a.clone(), mo.v_a.clone());
            let (b, m_b, v_b) = update(lora.b.val().inner(), gb, mo.m_b.clone(), mo.v_b.clone());
            *mo = Moments { m_a, v_a, m_b, v_b };
            lora.a = Param::from_tensor(a.autodiff().require_grad());
            lora.b = Param::from_tensor(b.autodiff().require_grad());
        }
    }

    /// The model with the current adapter, for inference (no autodiff, no dropout).
    pub fn inference_model(&self) -> Llama {
        let mut model = self.model.clone();
        for (_, projection) in model.projections_mut() {
            if let Some(lora) = projection.lora.as_mut() {
                lora.a = Param::from_tensor(lora.a.val().inner());
                lora.b = Param::from_tensor(lora.b.val().inner());
            }
        }
        model
    }

    /// Token-mean loss on the held-out examples, or `None` without a held-out set.
    pub async fn held_out_loss(&self) -> Result<Option<f64>> {
        if self.held.is_empty() {
            return Ok(None);
        }
        let model = self.inference_model();
        let mut total: Option<Tensor<1>> = None;
        for batch in self.held.chunks(self.config.batch_size) {
            let batch: Vec<&Example> = batch.iter().collect();
            let sum = token_loss_sum(&model, &batch, self.pad_id, &self.device)?;
            total = Some(match total {
                None => sum,
                Some(t) => t + sum,
            });
        }
        let n: usize = self.held.iter().map(Example::targets).sum();
        let sum = read_f32(total.expect("held-out set is not empty")).await?[0] as f64;
        Ok(Some(sum / n as f64))
    }

    /// The current adapter, read back to the host.
    pub async fn adapter(&self) -> Result<Adapter> {
        let adapted: Vec<_> = self.model.projections().into_iter().filter(|(_, p)| p.lora.is_some()).collect();
        let tensors = adapted
            .iter()
            .flat_map(|(_, p)| {
                let lora = p.lora.as_ref().expect("filtered");
                [lora.a.val().inner(), lora.b.val().inner()]
            })
            .collect();
        let mut values = read_all(tensors).await?.into_iter();
        let mut factors = std::collections::BTreeMap::new();
        for (path, projection) in adapted {
            let (d_in, d_out) = projection.dims();
            let (a, b) = (values.next().expect("one per factor"), values.next().expect("one per factor"));
            factors.insert(path, FactorData { d_in, d_out, a, b });
        }
        Ok(Adapter { config: self.config.lora.clone(), factors })
    }

    /// Everything needed to continue this run later.
    pub async fn checkpoint(&self) -> Result<Checkpoint> {
        let adapter = self.adapter().await?;
        let tensors = self.moments.iter().flat_map(|m| [m.m_a.clone(), m.v_a.clone(), m.m_b.clone(), m.v_b.clone()]).collect();
        let mut values = read_all(tensors).await?.into_iter();
        let mut moments = std::collections::BTreeMap::new();
        for path in &self.paths {
            let mut next = || values.next().expect("four moments per factor pair");
            moments.insert(path.clone(), [next(), next(), next(), next()]);
        }
        Ok(Checkpoint {
            state: CheckpointState {
                format: CHECKPOINT_FORMAT.into(),
                config: self.config.clone(),
                step: self.step,
                epoch: self.epoch,
                order: self.order.clone(),
                cursor: self.cursor,
                busy_s: self.busy_s,
                train_ids: self.train.iter().map(|e| e.id.clone()).collect(),
                held_ids: self.held.iter().map(|e| e.id.clone()).collect(),
            },
            adapter,
            moments,
        })
    }

    /// Continues a run from `checkpoint` on the same records.
    pub fn resume(lm: &LanguageModel, records: &[Annotation], checkpoint: Checkpoint) -> Result<Self> {
        let Checkpoint { state, adapter, moments } = checkpoint;
        let mut trainer = Trainer::new(lm, records, state.config.clone(), Some(adapter))?;
        let ids = |ex: &[Example]| ex.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        if ids(&trainer.train) != state.train_ids || ids(&trainer.held) != state.held_ids {
            return Err(Error::Input(
                "the checkpoint was made on a different set of annotations; resume with the same records, or start a new run".into(),
            ));
        }
        if moments.len() != trainer.moments.len() {
            return Err(Error::Input("the checkpoint's optimizer state does not match its adapter".into()));
        }
        let device = trainer.device.clone();
        let mut moments = moments;
        let adapted = trainer.model.projections().into_iter().filter_map(|(path, p)| p.lora.as_ref().map(|l| (path, l)));
        for (slot, (path, lora)) in trainer.moments.iter_mut().zip(adapted) {
            let (sa, sb) = (lora.a.val().dims(), lora.b.val().dims());
            let Some([m_a, v_a, m_b, v_b]) = moments.remove(&path) else {
                return Err(Error::Input(format!("the checkpoint has no optimizer state for `{path}`")));
            };
            if m_a.len() != sa[0] * sa[1] || m_b.len() != sb[0] * sb[1] {
                return Err(Error::Input("the checkpoint's optimizer state has the wrong shape".into()));
            }
            let t = |v: Vec<f32>, s: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, s), &device);
            *slot = Moments { m_a: t(m_a, sa), v_a: t(v_a, sa), m_b: t(m_b, sb), v_b: t(v_b, sb) };
        }
        trainer.step = state.step;
        trainer.epoch = state.epoch;
        trainer.order = state.order;
        trainer.cursor = state.cursor;
        trainer.busy_s = state.busy_s;
        Ok(trainer)
    }
}

/// Reads many tensors with one device round trip (each is one GPU map in the browser).
async fn read_all(tensors: Vec<Tensor<2>>) -> Result<Vec<Vec<f32>>> {
    if tensors.is_empty() {
        return Ok(Vec::new());
    }
    let sizes: Vec<usize> = tensors.iter().map(|t| t.dims().iter().product()).collect();
    let flat = Tensor::cat(tensors.into_iter().zip(&sizes).map(|(t, &n)| t.reshape([n])).collect(), 0);
    let all = read_f32(flat).await?;
    let mut out = Vec::with_capacity(sizes.len());
    let mut at = 0;
    for n in sizes {
        out.push(all[at..at + n].to_vec());
        at += n;
    }
    Ok(out)
}

/// Sum over the batch's assistant tokens of −ln p(token | prefix). Sequences are right-padded
/// with `pad_id`; causal attention keeps padding from touching real positions, and padded
/// positions are never scored. Only scored positions are projected to the vocabulary.
pub fn token_loss_sum(model: &Llama, batch: &[&Example], pad_id: u32, device: &Device) -> Result<Tensor<1>> {
    let seq = batch.iter().map(|e| e.ids.len()).max().expect("a batch is not empty");
    let mut ids = Vec::with_capacity(batch.len() * seq);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (b, example) in batch.iter().enumerate() {
        ids.extend(example.ids.iter().map(|&t| t as i32));
        ids.extend(std::iter::repeat_n(pad_id as i32, seq - example.ids.len()));
        // Position p predicts token p + 1.
        for p in example.loss_from - 1..example.ids.len() - 1 {
            rows.push((b * seq + p) as i32);
            targets.push(example.ids[p + 1] as i32);
        }
    }
    let n = rows.len();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch.len(), seq]), device);
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), device);
    let targets = Tensor::<3, Int>::from_data(TensorData::new(targets, [1, n, 1]), device);
    let hidden = model.forward_hidden(tokens, &mut model.new_cache())?;
    let [b, s, d] = hidden.dims();
    let scored = hidden.reshape([b * s, d]).select(0, rows).reshape([1, n, d]);
    let logp = log_softmax(model.logits(scored), 2).gather(2, targets);
    Ok(logp.sum().neg())
}

/// Control shared between a running loop and the UI: pause, resume, cancel.
#[derive(Debug, Clone, Default)]
pub struct TrainControl(Arc<AtomicU8>);

const RUNNING: u8 = 0;
const PAUSED: u8 = 1;
const CANCELLED: u8 = 2;

impl TrainControl {
    pub fn pause(&self) {
        let _ = self.0.compare_exchange(RUNNING, PAUSED, Ordering::SeqCst, Ordering::SeqCst);
    }
    pub fn resume(&self) {
        let _ = self.0.compare_exchange(PAUSED, RUNNING, Ordering::SeqCst, Ordering::SeqCst);
    }
    pub fn cancel(&self) {
        self.0.store(CANCELLED, Ordering::SeqCst);
    }
    pub fn is_paused(&self) -> bool {
        self.0.load(Ordering::SeqCst) == PAUSED
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) == CANCELLED
    }
}

/// What the loop reports as it goes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrainEvent {
    Step(StepReport),
    HeldOut { step: usize, held_out_loss: f64 },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    Finished,
    Cancelled,
}

/// Drives `trainer` to the end: one step at a time, the held-out loss when due, `yield_now`
/// between steps (the browser passes a macrotask so messages and rendering get through), and
/// pause/cancel through `control`. Events go to `on_event`; an `Err` from it stops the run
/// (e.g. when saving a checkpoint failed).
pub async fn run<Y, F>(
    trainer: &mut Trainer,
    control: &TrainControl,
    mut on_event: F,
    mut yield_now: impl FnMut() -> Y,
) -> Result<RunOutcome>
where
    Y: std::future::Future<Output = ()>,
    F: AsyncEventSink,
{
    // The starting point of the held-out curve.
    if trainer.step_index() == 0
        && let Some(loss) = trainer.held_out_loss().await? {
            on_event.event(TrainEvent::HeldOut { step: 0, held_out_loss: loss }, trainer).await?;
        }
    loop {
        if control.is_cancelled() {
            return Ok(RunOutcome::Cancelled);
        }
        if control.is_paused() {
            yield_now().await;
            continue;
        }
        let Some(report) = trainer.step().await? else { return Ok(RunOutcome::Finished) };
        on_event.event(TrainEvent::Step(report), trainer).await?;
        if trainer.eval_due() {
            let loss = trainer.held_out_loss().await?.expect("eval_due implies a held-out set");
            on_event.event(TrainEvent::HeldOut { step: trainer.step_index(), held_out_loss: loss }, trainer).await?;
        }
        yield_now().await;
    }
}

/// When a sink should save a checkpoint: every `every` steps, after each held-out evaluation and
/// at the end, never twice for the same step.
#[derive(Debug, Clone)]
pub struct CheckpointSchedule {
    every: usize,
    last_saved: usize,
}

impl CheckpointSchedule {
    pub fn new(every: usize) -> Self {
        CheckpointSchedule { every: every.max(1), last_saved: 0 }
    }

    /// True when a checkpoint is due after `event`; records it as saved.
    pub fn due(&mut self, event: &TrainEvent, trainer: &Trainer) -> bool {
        let step = trainer.step_index();
        let wanted = match event {
            TrainEvent::HeldOut { .. } => true,
            TrainEvent::Step(_) => step.is_multiple_of(self.every) || trainer.is_finished(),
        };
        if step == 0 || step == self.last_saved || !wanted {
            return false;
        }
        self.last_saved = step;
        true
    }
}

/// Receives training events; async so that a handler can read the trainer (e.g. to save a
/// checkpoint) without blocking.
#[allow(async_fn_in_trait)]
pub trait AsyncEventSink {
    async fn event(&mut self, event: TrainEvent, trainer: &Trainer) -> Result<()>;
}

/// Format tag of [`CheckpointState`].
pub const CHECKPOINT_FORMAT: &str = "cqa-lora-checkpoint/1";

/// The scalar part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: String,
    pub config: TrainConfig,
    pub step: usize,
    pub epoch: usize,
    pub order: Vec<usize>,
    pub cursor: usize,
    pub busy_s: f64,
    pub train_ids: Vec<String>,
    pub held_ids: Vec<String>,
}

/// A resumable snapshot of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub state: CheckpointState,
    pub adapter: Adapter,
    /// AdamW moments per adapted projection path: `[m_a, v_a, m_b, v_b]`.
    pub moments: std::collections::BTreeMap<String, [Vec<f32>; 4]>,
}

impl Checkpoint {
    /// One self-contained file: a safetensors archive whose metadata holds the run state.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let r = self.adapter.config.rank;
        let mut tensors = Vec::new();
        for (path, f) in &self.adapter.factors {
            let m = self.moments.get(path).ok_or_else(|| Error::Input(format!("no optimizer state for `{path}`")))?;
            let (shape_a, shape_b) = (vec![f.d_in, r], vec![r, f.d_out]);
            tensors.push((format!("{path}.a"), shape_a.clone(), f.a.as_slice()));
            tensors.push((format!("{path}.b"), shape_b.clone(), f.b.as_slice()));
            for (k, name) in ["m_a", "v_a", "m_b", "v_b"].iter().enumerate() {
                let shape = if k < 2 { shape_a.clone() } else { shape_b.clone() };
                tensors.push((format!("{path}.{name}"), shape, m[k].as_slice()));
            }
        }
        let state = serde_json::to_string(&self.state).expect("the run state serializes");
        crate::safetensors::write_f32(&tensors, &[("cqa_state", state)])
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Error::Input(format!("this is not a usable training checkpoint: {m}"));
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let state_json = header.metadata().as_ref().and_then(|m| m.get("cqa_state")).ok_or_else(|| bad("no run state".into()))?;
        let state: CheckpointState = serde_json::from_str(state_json).map_err(|e| bad(e.to_string()))?;
        if state.format != CHECKPOINT_FORMAT {
            return Err(bad(format!("format `{}` is not `{CHECKPOINT_FORMAT}`", state.format)));
        }
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let mut names: Vec<String> = file.names().into_iter().filter_map(|n| n.strip_suffix(".a").map(str::to_string)).collect();
        names.sort();
        let read = |name: String| -> Result<(Vec<usize>, Vec<f32>)> {
            let view = file.tensor(&name).map_err(|_| bad(format!("`{name}` is missing")))?;
            Ok((view.shape().to_vec(), crate::safetensors::view_to_f32(&name, &view)?))
        };
        let mut factors = std::collections::BTreeMap::new();
        let mut moments = std::collections::BTreeMap::new();
        for path in names {
            let (sa, a) = read(format!("{path}.a"))?;
            let (sb, b) = read(format!("{path}.b"))?;
            if sa.len() != 2 || sb.len() != 2 {
                return Err(bad(format!("`{path}` factors are not matrices")));
            }
            moments.insert(path.clone(), [
                read(format!("{path}.m_a"))?.1,
                read(format!("{path}.v_a"))?.1,
                read(format!("{path}.m_b"))?.1,
                read(format!("{path}.v_b"))?.1,
            ]);
            factors.insert(path, FactorData { d_in: sa[0], d_out: sb[1], a, b });
        }
        let adapter = Adapter { config: state.config.lora.clone(), factors };
        Ok(Checkpoint { state, adapter, moments })
    }
}

/// Seconds on a monotonic-enough clock, natively and in the browser.
fn now_s() -> f64 {
    #[cfg(target_family = "wasm")]
    {
        js_sys::Date::now() / 1000.0
    }
    #[cfg(not(target_family = "wasm"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
    }
}
