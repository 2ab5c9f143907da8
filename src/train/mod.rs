//! LoRA fine-tuning on the appreciation task.
//!
//! - Each annotation becomes one chat (`prompt::build_example`); loss is taken on the assistant
//!   tokens only, as a token mean over the whole optimizer step (so gradient accumulation gives
//!   the same update as one big batch).
//! - AdamW (PyTorch's decoupled form) with linear warmup + cosine decay, global-norm gradient
//!   clipping and gradient accumulation; deterministic for a seed (`optim`).
//! - The loop is a sequence of awaited steps with no synchronous GPU read, so it runs in a
//!   browser worker; [`run`] drives it with pause/cancel, a host-supplied yield and clock.
//! - A [`Checkpoint`] holds the adapter, the optimizer moments and the position in the data, so
//!   an interrupted run resumes where it stopped.

mod checkpoint;
mod config;
// The GPU kernels take plain CubeCL tensors, which burn's fusion build wraps (as `model::gpu_decode`).
#[cfg(all(feature = "gpu-kernels", not(feature = "fusion")))]
mod gpu_optim;
mod optim;
mod run;
mod split;

pub use checkpoint::{CHECKPOINT_FORMAT, Checkpoint, CheckpointSchedule, CheckpointState};
pub use config::{DEFAULT_CHECKPOINT_EVERY, TrainConfig};
pub use optim::learning_rate_at;
pub use run::{AsyncEventSink, Clock, RunOutcome, StepReport, TrainControl, TrainEvent, default_clock, run};
pub use split::split_indices;

use crate::data::Annotation;
use crate::error::{Error, Result};
use crate::eval::completion_nll_sum;
use crate::device::read_f32;
use crate::loader::LanguageModel;
use crate::lora::{Adapter, FactorData};
use crate::model::Llama;
use crate::prompt::{Example, build_example};
use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use optim::{AdamW, Moments};
use split::shuffle;

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
    /// The host's clock (see [`Clock`]).
    clock: Clock,
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
        let pad_id = lm.tokenizer.pad_id();
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
            clock: default_clock,
            warnings: Vec::new(),
        };
        trainer.start_epoch();
        Ok(trainer)
    }

    /// Uses `clock` to time steps (the browser passes its own; the engine has no DOM access).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
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
        let started = (self.clock)();
        let epoch = if self.cursor >= self.order.len() { self.epoch + 1 } else { self.epoch };
        let batches = self.next_micro_batches();
        let examples: Vec<Vec<&Example>> = batches.iter().map(|b| b.iter().map(|&i| &self.train[i]).collect()).collect();
        let n_targets: usize = examples.iter().flatten().map(|e| e.targets()).sum();
        let tokens: usize = examples.iter().flatten().map(|e| e.ids.len()).sum();

        let mut grads: Option<Vec<Tensor<2>>> = None;
        let mut loss_total: Option<Tensor<1>> = None;
        for batch in &examples {
            let loss = completion_nll_sum(&self.model, batch, self.pad_id, &self.device)?.div_scalar(n_targets as f64);
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
        let grads = grads.expect("a step has at least one micro-batch");
        let loss_total = loss_total.expect("a step has at least one micro-batch");

        self.step += 1;
        let warmup = (self.config.warmup_ratio * self.total_steps as f64).ceil() as usize;
        let lr = learning_rate_at(self.config.learning_rate, self.step, self.total_steps, warmup);
        let grad_norm = self.clip_and_apply_adamw(grads, lr);

        let values = read_f32(Tensor::cat(vec![loss_total, grad_norm], 0)).await?;
        let elapsed = (self.clock)() - started;
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

    /// Global-norm clipping (as torch.nn.utils.clip_grad_norm_), then AdamW on every factor, in
    /// model order (`grads`: A's then B's of each adapted projection). Gives the gradients'
    /// norm before clipping, kept on the device (no read). On a GPU, in a few kernels
    /// (`gpu_optim`); elsewhere, burn's ops.
    fn clip_and_apply_adamw(&mut self, grads: Vec<Tensor<2>>, lr: f64) -> Tensor<1> {
        let optimizer = AdamW::at_step(&self.config, self.step, lr);
        let max_norm = (self.config.max_grad_norm > 0.0).then_some(self.config.max_grad_norm);
        let (updated, grad_norm) = match self.clip_and_update_on_gpu(&grads, &optimizer, max_norm) {
            Some(done) => done,
            None => {
                let norm_sq = grads.iter().map(|g| g.clone().square().sum()).reduce(|a, b| a + b).expect("at least one factor");
                let grad_norm = norm_sq.sqrt();
                let coef = max_norm.map(|c| grad_norm.clone().add_scalar(1e-6).recip().mul_scalar(c).clamp_max(1.0).reshape([1, 1]));
                let moments = self.moments.iter().flat_map(|m| [(m.m_a.clone(), m.v_a.clone()), (m.m_b.clone(), m.v_b.clone())]);
                let updated = self
                    .factors()
                    .into_iter()
                    .zip(grads)
                    .zip(moments)
                    .map(|((p, g), (m, v))| {
                        let g = coef.clone().map_or(g.clone(), |c| g * c);
                        let (p, m, v) = optimizer.update(p, g, m, v);
                        [p, m, v]
                    })
                    .collect();
                (updated, grad_norm)
            }
        };
        let mut updated = updated.into_iter();
        let mut moments = self.moments.iter_mut();
        for (_, projection) in self.model.projections_mut() {
            let Some(lora) = projection.lora.as_mut() else { continue };
            let mo = moments.next().expect("one set of moments per adapted projection");
            let [a, m_a, v_a] = updated.next().expect("A updated");
            let [b, m_b, v_b] = updated.next().expect("B updated");
            *mo = Moments { m_a, v_a, m_b, v_b };
            lora.a = Param::from_tensor(a.autodiff().require_grad());
            lora.b = Param::from_tensor(b.autodiff().require_grad());
        }
        grad_norm
    }

    /// The trained factors' current values, A's then B's of each adapted projection.
    fn factors(&self) -> Vec<Tensor<2>> {
        self.model.projections().into_iter().filter_map(|(_, p)| p.lora.as_ref()).flat_map(|l| [l.a.val().inner(), l.b.val().inner()]).collect()
    }

    #[cfg(all(feature = "gpu-kernels", not(feature = "fusion")))]
    fn clip_and_update_on_gpu(&self, grads: &[Tensor<2>], optimizer: &AdamW, max_norm: Option<f64>) -> Option<(Vec<[Tensor<2>; 3]>, Tensor<1>)> {
        let moments = self.moments.iter().flat_map(|m| [(m.m_a.clone(), m.v_a.clone()), (m.m_b.clone(), m.v_b.clone())]);
        let factors: Vec<gpu_optim::Factor> =
            self.factors().into_iter().zip(grads).zip(moments).map(|((p, g), (m, v))| gpu_optim::Factor { p, g: g.clone(), m, v }).collect();
        gpu_optim::clip_and_update(&factors, optimizer, max_norm)
    }

    #[cfg(not(all(feature = "gpu-kernels", not(feature = "fusion"))))]
    fn clip_and_update_on_gpu(&self, _grads: &[Tensor<2>], _optimizer: &AdamW, _max_norm: Option<f64>) -> Option<(Vec<[Tensor<2>; 3]>, Tensor<1>)> {
        None
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
            let sum = completion_nll_sum(&model, &batch, self.pad_id, &self.device)?;
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
