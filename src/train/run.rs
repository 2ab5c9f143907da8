//! The training loop as the front-ends drive it: events out, pause / cancel in, and the host's
//! own way to yield and to tell the time.

use super::Trainer;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

/// What one optimizer step reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TrainEvent {
    Step(StepReport),
    HeldOut { step: usize, held_out_loss: f64 },
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// Receives training events; async so that a handler can read the trainer (e.g. to save a
/// checkpoint) without blocking.
#[allow(async_fn_in_trait)]
pub trait AsyncEventSink {
    async fn event(&mut self, event: TrainEvent, trainer: &Trainer) -> Result<()>;
}

/// Seconds on a monotonic clock. The engine cannot read the browser's clock itself, so the host
/// injects one (`Trainer::set_clock`); natively the default is `std::time::Instant`.
pub type Clock = fn() -> f64;

/// The default [`Clock`]: `Instant` natively; on wasm (where `Instant` is unavailable) it reads 0
/// until the host injects a real clock, so throughput shows as unknown rather than panicking.
pub fn default_clock() -> f64 {
    #[cfg(not(target_family = "wasm"))]
    {
        use std::sync::OnceLock;
        static START: OnceLock<std::time::Instant> = OnceLock::new();
        START.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
    }
    #[cfg(target_family = "wasm")]
    {
        0.0
    }
}

