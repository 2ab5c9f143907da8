//! `cqa train`: LoRA fine-tuning from the command line. The settings map onto `TrainConfig`, whose
//! `Default` is the one source of the defaults shown in `--help`.

use crate::files::{read, read_annotations, write_atomic};
use clap::Args;
use cqa_studio::device::block_on;
use cqa_studio::lora::LoraConfig;
use cqa_studio::train::{
    AsyncEventSink, Checkpoint, CheckpointSchedule, DEFAULT_CHECKPOINT_EVERY, TrainConfig, TrainControl, TrainEvent, Trainer,
};
use cqa_studio::{Error, LanguageModel, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

fn defaults() -> TrainConfig {
    TrainConfig::default()
}

/// `cqa train` settings.
#[derive(Args)]
pub struct TrainArgs {
    /// Annotation JSONL (docs/annotation-format.md).
    #[arg(long)]
    data: PathBuf,
    /// Output directory: the PEFT adapter, a resumable checkpoint, the training log and the
    /// held-out records (`held_out.jsonl`, for `cqa appreciate`).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = defaults().lora.rank)]
    rank: usize,
    #[arg(long, default_value_t = defaults().lora.alpha)]
    alpha: f64,
    #[arg(long, default_value_t = defaults().lora.dropout)]
    dropout: f64,
    /// Peak learning rate.
    #[arg(long, default_value_t = defaults().learning_rate)]
    lr: f64,
    #[arg(long, default_value_t = defaults().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = defaults().max_len)]
    max_len: usize,
    /// Examples per forward pass.
    #[arg(long, default_value_t = defaults().batch_size)]
    batch: usize,
    /// Forward passes per optimizer step.
    #[arg(long, default_value_t = defaults().grad_accum)]
    grad_accum: usize,
    /// Projections to adapt: any of q,k,v,o,gate,up,down (or `all`).
    #[arg(long, default_value_t = defaults().lora.targets.iter().map(|t| t.trim_end_matches("_proj")).collect::<Vec<_>>().join(","))]
    targets: String,
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Share of records held out for evaluation; 0 trains on all of them, with no evaluation.
    #[arg(long, default_value_t = defaults().held_out)]
    held_out: f64,
    /// Held-out evaluation period, in steps.
    #[arg(long, default_value_t = defaults().eval_every)]
    eval_every: usize,
    #[arg(long, default_value_t = defaults().warmup_ratio)]
    warmup_ratio: f64,
    #[arg(long, default_value_t = defaults().weight_decay)]
    weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = defaults().max_grad_norm)]
    max_grad_norm: f64,
    /// Also save a checkpoint every this many steps (one is always saved at each evaluation
    /// and at the end).
    #[arg(long, default_value_t = DEFAULT_CHECKPOINT_EVERY)]
    checkpoint_every: usize,
    /// Continue the run saved in OUT/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
    /// Import the valid records of a file that has bad lines (they are listed either way).
    #[arg(long)]
    keep_good_lines: bool,
    /// One JSON object per line: the engine's training events (`kind`: `step` or `held_out`),
    /// the same objects the browser's Train panel receives.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig> {
        Ok(TrainConfig {
            lora: LoraConfig {
                rank: self.rank,
                alpha: self.alpha,
                dropout: self.dropout,
                targets: LoraConfig::parse_targets(&self.targets)?,
            },
            learning_rate: self.lr,
            epochs: self.epochs,
            max_len: self.max_len,
            batch_size: self.batch,
            grad_accum: self.grad_accum,
            weight_decay: self.weight_decay,
            warmup_ratio: self.warmup_ratio,
            max_grad_norm: self.max_grad_norm,
            held_out: self.held_out,
            eval_every: self.eval_every,
            seed: self.seed,
            ..defaults()
        })
    }
}

pub fn train_command(lm: &LanguageModel, a: TrainArgs, model_path: &Path) -> Result<()> {
    let records = read_annotations(&a.data, a.keep_good_lines)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::io("create", a.out.display(), e))?;
    let checkpoint_path = a.out.join("checkpoint.safetensors");
    let mut trainer = if a.resume {
        let bytes = read(&checkpoint_path)?;
        Trainer::resume(lm, &records, Checkpoint::from_bytes(&bytes)?)?
    } else {
        Trainer::new(lm, &records, a.config()?, None)?
    };
    for w in trainer.warnings() {
        eprintln!("warning: {w}");
    }
    if !a.json {
        println!(
            "training on {} examples ({} held out), {} steps, LoRA r={} on {}",
            trainer.train_examples().len(),
            trainer.held_out_examples().len(),
            trainer.total_steps(),
            trainer.config().lora.rank,
            trainer.config().lora.targets.join(",")
        );
    }
    let log_path = a.out.join("training_log.jsonl");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(a.resume)
        .write(true)
        .truncate(!a.resume)
        .open(&log_path)
        .map_err(|e| Error::io("write", log_path.display(), e))?;
    let mut sink =
        CliSink { json: a.json, checkpoint_path: checkpoint_path.clone(), checkpoints: CheckpointSchedule::new(a.checkpoint_every), log };
    block_on(cqa_studio::train::run(&mut trainer, &TrainControl::default(), &mut sink, || std::future::ready(())))?;

    let adapter = block_on(trainer.adapter())?;
    let base_name = model_path.file_name().map(|n| n.to_string_lossy().into_owned());
    write_atomic(&a.out.join("adapter_config.json"), adapter.peft_config_json(base_name.as_deref()).as_bytes())?;
    write_atomic(&a.out.join("adapter_model.safetensors"), &adapter.peft_safetensors()?)?;
    write_atomic(&checkpoint_path, &block_on(trainer.checkpoint())?.to_bytes()?)?;
    let config_json = serde_json::to_string_pretty(trainer.config()).map_err(|e| Error::Input(e.to_string()))?;
    write_atomic(&a.out.join("train_config.json"), config_json.as_bytes())?;
    // The held-out records as JSONL, ready for `cqa appreciate --data OUT/held_out.jsonl`.
    let held: std::collections::HashSet<&str> = trainer.held_out_examples().iter().map(|e| e.id.as_str()).collect();
    let held_records: Vec<_> = records.iter().filter(|r| held.contains(r.id.as_str())).cloned().collect();
    write_atomic(&a.out.join("held_out.jsonl"), cqa_studio::data::annotations_to_jsonl(&held_records).as_bytes())?;
    // And the records it trained on, for `cqa agreement --trained-on OUT/trained.jsonl`.
    let trained_records: Vec<_> = records.iter().filter(|r| !held.contains(r.id.as_str())).cloned().collect();
    write_atomic(&a.out.join("trained.jsonl"), cqa_studio::data::annotations_to_jsonl(&trained_records).as_bytes())?;
    if !a.json {
        println!("saved the adapter to {}", a.out.display());
    }
    Ok(())
}

struct CliSink {
    json: bool,
    checkpoint_path: PathBuf,
    checkpoints: CheckpointSchedule,
    log: std::fs::File,
}

impl AsyncEventSink for &mut CliSink {
    async fn event(&mut self, event: TrainEvent, trainer: &Trainer) -> Result<()> {
        let line = serde_json::to_string(&event).map_err(|e| Error::Input(format!("a training event could not be written: {e}")))?;
        writeln!(self.log, "{line}").map_err(|e| Error::io("write", "training_log.jsonl", e))?;
        if self.json {
            println!("{line}");
        } else {
            match &event {
                TrainEvent::Step(r) => println!(
                    "step {:>4}/{}  epoch {}  loss {:.4}  lr {:.2e}  {:.0} tok/s  ETA {:.0}s",
                    r.step, r.total_steps, r.epoch, r.loss, r.learning_rate, r.tokens_per_s, r.eta_s
                ),
                TrainEvent::HeldOut { step, held_out_loss } => println!("step {step:>4}  held-out loss {held_out_loss:.4}"),
            }
        }
        if self.checkpoints.due(&event, trainer) {
            write_atomic(&self.checkpoint_path, &trainer.checkpoint().await?.to_bytes()?)?;
        }
        Ok(())
    }
}
