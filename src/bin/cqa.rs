//! `cqa`: the native command line over the cqa-studio engine. Other tools script against its
//! output, so the JSON shapes here are a contract (see README.md).

use clap::{Args, Parser, Subcommand};
use cqa_studio::device::{self, Backend, block_on};
use cqa_studio::eval::score;
use cqa_studio::generate::{SamplingParams, generate};
use cqa_studio::appreciate::{appraise, summarize};
use cqa_studio::calibrate::{parse_benchmark, report_json, run_item};
use cqa_studio::data::{Annotation, coverage, parse_annotations, trl_jsonl};
use cqa_studio::lora::{Adapter, LoraConfig};
use cqa_studio::tokenizer::ChatMessage;
use cqa_studio::train::{AsyncEventSink, Checkpoint, CheckpointSchedule, TrainConfig, TrainControl, TrainEvent, Trainer};
use cqa_studio::{Error, LanguageModel, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DEFAULT_MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

#[derive(Parser)]
#[command(name = "cqa", version, about = "Creative Quality Alignment studio: run, score and benchmark a small language model")]
struct Cli {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Common {
    /// A .gguf file, or a directory with *.safetensors + config.json + tokenizer.json
    /// [default: models/SmolLM2-135M-Instruct.Q4_1.gguf, fetched by `./x model`]
    #[arg(long, global = true, env = "CQA_MODEL")]
    model: Option<PathBuf>,
    /// Compute backend: `cpu` (burn-flex) or `wgpu` (Vulkan/Metal/DX12).
    #[arg(long, global = true, default_value = "cpu")]
    backend: String,
    /// A LoRA adapter directory in PEFT layout (adapter_config.json + adapter_model.safetensors),
    /// merged into the model for generate / score.
    #[arg(long, global = true)]
    adapter: Option<PathBuf>,
}

/// `cqa train` settings. Defaults are those of `TrainConfig::default()`.
#[derive(Args)]
struct TrainArgs {
    /// Annotation JSONL (docs/annotation-format.md).
    #[arg(long)]
    data: PathBuf,
    /// Output directory: the PEFT adapter, a resumable checkpoint and the training log.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 16)]
    rank: usize,
    #[arg(long, default_value_t = 32.0)]
    alpha: f64,
    #[arg(long, default_value_t = 0.05)]
    dropout: f64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    #[arg(long, default_value_t = 768)]
    max_len: usize,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 2)]
    batch: usize,
    /// Forward passes per optimizer step.
    #[arg(long, default_value_t = 2)]
    grad_accum: usize,
    /// Projections to adapt: any of q,k,v,o,gate,up,down (or `all`).
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    targets: String,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Share of records held out for evaluation; 0 trains on all of them, with no evaluation.
    #[arg(long, default_value_t = 0.15)]
    held_out: f64,
    /// Held-out evaluation period, in steps.
    #[arg(long, default_value_t = 10)]
    eval_every: usize,
    #[arg(long, default_value_t = 0.1)]
    warmup_ratio: f64,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    /// Also save a checkpoint every this many steps (one is always saved at each evaluation
    /// and at the end).
    #[arg(long, default_value_t = 10)]
    checkpoint_every: usize,
    /// Continue the run saved in OUT/checkpoint.safetensors.
    #[arg(long)]
    resume: bool,
    /// Import the valid records of a file that has bad lines (they are listed either way).
    #[arg(long)]
    keep_good_lines: bool,
    /// One JSON object per line: steps (`step`, `loss`, `tokens_per_s`, …) and held-out losses.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text, streamed to stdout as it is produced.
    Generate {
        #[arg(long)]
        prompt: String,
        /// Wrap the prompt as a user turn in the model's own chat template.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 128)]
        max_tokens: usize,
        /// 0 means greedy decoding.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// 0 disables top-k.
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// 1.0 disables it (transformers' default).
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Print the rendered prompt to stderr before generating.
        #[arg(long)]
        show_prompt: bool,
    },
    /// Per-token log-probabilities of TEXT, after CONTEXT if given.
    ///
    /// logprobs[i] is the natural-log probability of the i-th scored text token given the
    /// context and the earlier text tokens. With no context, the first text token is scored after
    /// BOS when the model adds one; the default SmolLM2 adds none, so its first text token is not
    /// scored and `logprobs` is one shorter than `text_ids`.
    Score {
        #[arg(long)]
        text: String,
        #[arg(long)]
        context: Option<String>,
        /// Print one JSON object (the only output format; kept for scripts that pass it).
        #[arg(long)]
        json: bool,
    },
    /// Token ids of TEXT (no special tokens added unless the model adds BOS).
    Tokenize {
        #[arg(long)]
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Architecture, parameter count, tensor types and memory.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Measure load time, prefill (scoring) and decode throughput, and peak memory.
    Bench {
        /// Prompt lengths to score, comma-separated.
        #[arg(long, default_value = "256,512")]
        prefill: String,
        /// Tokens to decode greedily.
        #[arg(long, default_value_t = 64)]
        decode: usize,
        /// Timed repetitions (after one warm-up); the median is reported.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
    },
    /// LoRA fine-tuning on expert annotations (the appreciation task).
    Train(Box<TrainArgs>),
    /// Measure LoRA training throughput and peak memory on synthetic sequences.
    BenchTrain {
        /// `factored` (x·W + s·(x·A)·B, what `train` uses) or `burn` (burn's apply_lora, W + s·A·B).
        #[arg(long, default_value = "factored")]
        lora: String,
        #[arg(long, default_value_t = 2)]
        batch: usize,
        #[arg(long, default_value_t = 256)]
        seq: usize,
        #[arg(long, default_value_t = 16)]
        rank: usize,
        #[arg(long, default_value = "all")]
        targets: String,
        /// Timed steps (after one warm-up); the median is reported.
        #[arg(long, default_value_t = 3)]
        steps: usize,
    },
    /// The Calibrated Surprise benchmark: H(X), H(X|Y) and ΔI per item, and per group the
    /// mean / median / SD, a one-sided Wilcoxon signed-rank p and Cohen's d — of Δ(ΔI) = ΔI(tuned) −
    /// ΔI(base) with --adapter, else of the base ΔI (testing ΔI > 0).
    Calibrate {
        /// Benchmark JSONL (docs/calibration-format.md).
        #[arg(long)]
        bench: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also print the scored token ids and per-token log-probs (and their tuned − base shift).
        #[arg(long)]
        tokens: bool,
    },
    /// Appreciation on held-out annotations: NLL of the expert's reasoning, and agreement of the
    /// model's own verdict with the expert's (Spearman ρ, share within ±1); base and, with
    /// --adapter, tuned.
    Appreciate {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
        /// Longest critique generated per record.
        #[arg(long, default_value_t = 200)]
        max_tokens: usize,
    },
    /// Craft / audience / reality balance of an annotation file.
    Coverage {
        #[arg(long)]
        data: PathBuf,
        /// Print one JSON object (`records`, `steps`, `dimensions`, `warnings`).
        #[arg(long)]
        json: bool,
    },
    /// Write the training set in Hugging Face TRL chat format (`{"messages": [...]}` JSONL).
    ExportTrl {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a tiny random-weight GGUF that carries the model's tokenizer (browser tests).
    #[command(hide = true)]
    DebugTinyGguf {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Logits of the seeded tiny random test model, as JSON (used by the browser tests).
    #[command(hide = true)]
    DebugTinyLogits {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        vocab: usize,
        /// Comma-separated token ids.
        #[arg(long)]
        ids: String,
    },
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let backend: Backend = cli.common.backend.parse()?;
    let device = match backend {
        Backend::Cpu => device::cpu(),
        Backend::Wgpu => device::wgpu()?,
    };
    match &cli.command {
        Command::DebugTinyLogits { seed, vocab, ids } => return tiny_logits(*seed, *vocab, ids, &device),
        Command::Coverage { data, json } => {
            let c = coverage(&read_annotations(data, false)?);
            if *json {
                println!("{}", serde_json::to_string(&c).map_err(|e| Error::Input(e.to_string()))?);
            } else {
                println!("{} records, {} reasoning steps", c.records, c.steps);
                for (name, d) in &c.dimensions {
                    println!("  {name:<9} {:>4} steps  {:>5.1}%", d.steps, d.share * 100.0);
                }
                for w in &c.warnings {
                    println!("warning: {w}");
                }
            }
            return Ok(());
        }
        Command::ExportTrl { data, out } => {
            let records = read_annotations(data, false)?;
            write_atomic(out, trl_jsonl(&records).as_bytes())?;
            eprintln!("wrote {} conversations to {}", records.len(), out.display());
            return Ok(());
        }
        _ => {}
    }
    let model_path = resolve_model_path(cli.common.model)?;
    if let Command::DebugTinyGguf { out, seed } = &cli.command {
        let source = cqa_studio::gguf::GgufFile::parse(read(&model_path)?)?;
        let bytes = cqa_studio::gguf::writer::tiny_random_gguf(&source, *seed);
        return write_atomic(out, &bytes);
    }
    let t0 = Instant::now();
    let base = load(&model_path, &device)?;
    // With --adapter, `tuned` is the merged model: generate/score use it, calibrate and
    // appreciate compare it with the base.
    let tuned = match &cli.common.adapter {
        Some(dir) => Some(base.with_adapter(&read_adapter(dir, &base)?, true)?),
        None => None,
    };
    let lm = tuned.as_ref().unwrap_or(&base);
    let load_s = t0.elapsed().as_secs_f64();

    match cli.command {
        Command::Generate { prompt, chat, max_tokens, temperature, top_p, top_k, repetition_penalty, seed, show_prompt } => {
            let text = if chat {
                lm.tokenizer.apply_chat_template(&[ChatMessage::new("user", &prompt)], true)?
            } else {
                prompt
            };
            if show_prompt {
                eprintln!("{text}");
            }
            // The template already holds any special tokens, so encode without adding more.
            let ids = lm.tokenizer.encode(&text, !chat)?;
            let params = SamplingParams { temperature, top_k, top_p, repetition_penalty, seed, max_new_tokens: max_tokens };
            let mut out = std::io::stdout().lock();
            block_on(generate(lm, ids, params, |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            }))?;
            let _ = writeln!(out);
        }
        Command::Score { text, context, json: _ } => {
            let s = block_on(score(lm, &text, context.as_deref()))?;
            println!("{}", serde_json::to_string(&s).map_err(|e| Error::Input(e.to_string()))?);
        }
        Command::Tokenize { text, json: _ } => {
            let ids = lm.tokenizer.encode(&text, true)?;
            println!("{}", serde_json::json!({ "ids": ids }));
        }
        Command::Info { json } => {
            let mut v = serde_json::to_value(&lm.info).map_err(|e| Error::Input(e.to_string()))?;
            v["load_seconds"] = serde_json::json!(load_s);
            v["backend"] = serde_json::json!(cli.common.backend);
            v["path"] = serde_json::json!(model_path.display().to_string());
            if json {
                println!("{v}");
            } else {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            }
        }
        Command::Bench { prefill, decode, repeats } => {
            let lengths: Vec<usize> = prefill
                .split(',')
                .map(|s| s.trim().parse().map_err(|_| Error::Input(format!("bad --prefill length `{s}`"))))
                .collect::<Result<_>>()?;
            let report = cqa_studio_bench::run(lm, &lengths, decode, repeats.max(1), load_s)?;
            println!("{report}");
        }
        Command::Calibrate { bench, json, tokens } => calibrate_command(&base, tuned.as_ref(), &bench, json, tokens)?,
        Command::Appreciate { data, json, max_tokens } => {
            appreciate_command(&base, tuned.as_ref(), &data, json, max_tokens)?
        }
        Command::Train(args) => {
            if cli.common.adapter.is_some() {
                return Err(Error::Input("--adapter applies to generate / score; to continue a run use `train --resume`".into()));
            }
            train_command(&base, *args, &model_path)?;
        }
        Command::BenchTrain { lora, batch, seq, rank, targets, steps } => {
            let report = cqa_studio_bench::train(&base, &model_path, &lora, batch, seq, rank, &targets, steps.max(1))?;
            println!("{report}");
        }
        Command::DebugTinyLogits { .. } | Command::DebugTinyGguf { .. } | Command::Coverage { .. } | Command::ExportTrl { .. } => {
            unreachable!("handled before loading a model")
        }
    }
    Ok(())
}

fn tiny_logits(seed: u64, vocab: usize, ids: &str, device: &burn::tensor::Device) -> Result<()> {
    use burn::tensor::{Int, Tensor, TensorData};
    use cqa_studio::model::{Llama, LlamaConfig};
    let ids: Vec<i32> = ids
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| Error::Input(format!("bad token id `{s}`"))))
        .collect::<Result<_>>()?;
    let model = Llama::random(&LlamaConfig::tiny(vocab), seed, device);
    let n = ids.len();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device);
    let logits = block_on(cqa_studio::generate::read_f32(model.forward(tokens, &mut model.new_cache())?))?;
    println!("{}", serde_json::json!({ "logits": logits }));
    Ok(())
}

/// Reads a PEFT adapter directory for `lm`.
fn read_adapter(dir: &Path, lm: &LanguageModel) -> Result<Adapter> {
    let config = std::fs::read_to_string(dir.join("adapter_config.json"))
        .map_err(|e| Error::Input(format!("cannot read `{}`: {e}", dir.join("adapter_config.json").display())))?;
    let weights = read(&dir.join("adapter_model.safetensors"))?;
    Adapter::from_peft(&config, &weights, &lm.model.projection_shapes())
}

/// Writes `bytes` to `path` through a temporary file, so an interrupted write never leaves a
/// half-written checkpoint or adapter behind.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Input(format!("cannot write `{}`: {e}", path.display())))
}

fn calibrate_command(base: &LanguageModel, tuned: Option<&LanguageModel>, bench: &Path, json: bool, tokens: bool) -> Result<()> {
    let items = parse_benchmark(&read(bench)?).map_err(|e| Error::Input(format!("{}: {e}", bench.display())))?;
    let started = Instant::now();
    let mut results = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        results.push(block_on(run_item(base, tuned, item))?);
        eprint!("\rscored {}/{} items", i + 1, items.len());
    }
    eprintln!(" in {:.1} s", started.elapsed().as_secs_f64());
    let report = report_json(&results, tokens);
    if json {
        println!("{report}");
        return Ok(());
    }
    let compare = tuned.is_some();
    println!("{:<10} {:<9} {:>6} {:>10} {:>12} {:>10}{}", "item", "group", "tokens", "H(X)", "H(X|Y)", "ΔI", if compare { "     Δ(ΔI)" } else { "" });
    for r in &results {
        let m = &r.base.passage;
        print!("{:<10} {:<9} {:>6} {:>10.2} {:>12.2} {:>10.2}", r.id, r.group.name(), r.n_tokens(), m.h_x_bits, m.h_x_given_y_bits, m.delta_i_bits);
        match r.delta_delta_i_bits() {
            Some(dd) => println!(" {dd:>10.3}"),
            None => println!(),
        }
    }
    let what = if compare { "Δ(ΔI), tuned − base" } else { "ΔI (base)" };
    println!("\n{what}, bits; one-sided Wilcoxon signed-rank (H1: > 0):");
    for (name, g) in report["groups"].as_object().into_iter().flatten() {
        println!(
            "  {name:<9} n={:<3} mean {:>8.3}  median {:>8.3}  sd {:>8.3}  p {:<10}  d {}",
            g["n"], g["mean"].as_f64().unwrap_or(f64::NAN), g["median"].as_f64().unwrap_or(f64::NAN),
            g["sd"].as_f64().unwrap_or(f64::NAN), fmt_opt(&g["wilcoxon_p"]), fmt_opt(&g["cohens_d"])
        );
    }
    Ok(())
}

fn fmt_opt(v: &serde_json::Value) -> String {
    v.as_f64().map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

fn appreciate_command(base: &LanguageModel, tuned: Option<&LanguageModel>, data: &Path, json: bool, max_tokens: usize) -> Result<()> {
    let records = read_annotations(data, false)?;
    let mut models = vec![("base", base)];
    if let Some(t) = tuned {
        models.push(("tuned", t));
    }
    let mut out = serde_json::Map::new();
    let mut per_record: Vec<serde_json::Value> = records
        .iter()
        .map(|r| serde_json::json!({ "id": r.id, "expert_score": r.verdict.score }))
        .collect();
    for (name, lm) in models {
        eprintln!("{name}: appraising {} records", records.len());
        let appraisals = block_on(appraise(lm, &records, max_tokens))?;
        for (row, a) in per_record.iter_mut().zip(&appraisals) {
            row[name] = serde_json::to_value(a).map_err(|e| Error::Input(e.to_string()))?;
        }
        let summary = summarize(&records, &appraisals);
        if !json {
            println!(
                "{name:<6} NLL {:.4} nats/token   Spearman ρ {}   within ±1 {:.0}%   parsed {}/{}",
                summary.nll_per_token,
                summary.spearman.map(|r| format!("{r:.3}")).unwrap_or_else(|| "n/a".into()),
                summary.within_1 * 100.0,
                summary.parsed,
                summary.records
            );
        }
        out.insert(name.to_string(), serde_json::to_value(summary).map_err(|e| Error::Input(e.to_string()))?);
    }
    out.insert("records".into(), serde_json::Value::Array(per_record));
    if json {
        println!("{}", serde_json::Value::Object(out));
    }
    Ok(())
}

/// Reads annotation JSONL, listing every bad line on stderr; a file with bad lines is refused
/// unless `keep_good_lines`.
fn read_annotations(path: &Path, keep_good_lines: bool) -> Result<Vec<Annotation>> {
    let report = parse_annotations(&read(path)?);
    if keep_good_lines {
        for e in &report.errors {
            eprintln!("warning: {}: skipped {e}", path.display());
        }
    }
    report.accept(keep_good_lines).map_err(|e| Error::Input(format!("{}: {e}", path.display())))
}

fn train_command(lm: &LanguageModel, a: TrainArgs, model_path: &Path) -> Result<()> {
    let records = read_annotations(&a.data, a.keep_good_lines)?;
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Input(format!("cannot create `{}`: {e}", a.out.display())))?;
    let checkpoint_path = a.out.join("checkpoint.safetensors");
    let mut trainer = if a.resume {
        let bytes = read(&checkpoint_path)?;
        Trainer::resume(lm, &records, Checkpoint::from_bytes(&bytes)?)?
    } else {
        let config = TrainConfig {
            lora: LoraConfig { rank: a.rank, alpha: a.alpha, dropout: a.dropout, targets: LoraConfig::parse_targets(&a.targets)? },
            learning_rate: a.lr,
            epochs: a.epochs,
            max_len: a.max_len,
            batch_size: a.batch,
            grad_accum: a.grad_accum,
            weight_decay: a.weight_decay,
            warmup_ratio: a.warmup_ratio,
            max_grad_norm: a.max_grad_norm,
            held_out: a.held_out,
            eval_every: a.eval_every,
            seed: a.seed,
            ..TrainConfig::default()
        };
        Trainer::new(lm, &records, config, None)?
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
        .map_err(|e| Error::Input(format!("cannot write `{}`: {e}", log_path.display())))?;
    let mut sink = CliSink { json: a.json, checkpoint_path: checkpoint_path.clone(), checkpoints: CheckpointSchedule::new(a.checkpoint_every), log };
    block_on(cqa_studio::train::run(&mut trainer, &TrainControl::default(), &mut sink, || std::future::ready(())))?;

    let adapter = block_on(trainer.adapter())?;
    let base_name = model_path.file_name().map(|n| n.to_string_lossy().into_owned());
    write_atomic(&a.out.join("adapter_config.json"), adapter.peft_config_json(base_name.as_deref()).as_bytes())?;
    write_atomic(&a.out.join("adapter_model.safetensors"), &adapter.peft_safetensors()?)?;
    write_atomic(&checkpoint_path, &block_on(trainer.checkpoint())?.to_bytes()?)?;
    let config_json = serde_json::to_string_pretty(trainer.config()).map_err(|e| Error::Input(e.to_string()))?;
    write_atomic(&a.out.join("train_config.json"), config_json.as_bytes())?;
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
        let line = match &event {
            TrainEvent::Step(r) => serde_json::json!({
                "step": r.step, "total_steps": r.total_steps, "epoch": r.epoch, "loss": r.loss,
                "learning_rate": r.learning_rate, "grad_norm": r.grad_norm, "tokens": r.tokens,
                "tokens_per_s": r.tokens_per_s, "eta_s": r.eta_s,
            }),
            TrainEvent::HeldOut { step, held_out_loss } => serde_json::json!({ "step": step, "held_out_loss": held_out_loss }),
        };
        let _ = writeln!(self.log, "{line}");
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

/// `--model`, else the default model beside the working directory or the source tree.
fn resolve_model_path(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p);
    }
    let candidates = [PathBuf::from(DEFAULT_MODEL), Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_MODEL)];
    candidates.iter().find(|p| p.exists()).cloned().ok_or_else(|| {
        Error::Input(format!("the default model {DEFAULT_MODEL} is not there: run `./x model` to fetch it, or pass --model"))
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Input(format!("cannot read `{}`: {e}", path.display())))
}

/// Loads a .gguf file, or an HF directory (safetensors + config.json + tokenizer.json).
fn load(path: &Path, device: &burn::tensor::Device) -> Result<LanguageModel> {
    if path.is_dir() {
        let mut shards: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::Input(format!("cannot list `{}`: {e}", path.display())))?
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
        let tokenizer_config = std::fs::read_to_string(path.join("tokenizer_config.json")).ok();
        LanguageModel::from_hf_bytes(files, &config, &tokenizer, tokenizer_config.as_deref(), device)
    } else {
        LanguageModel::from_gguf_bytes(read(path)?, device)
    }
}

/// The benchmark, kept beside the CLI because it measures the CLI's own code paths.
mod cqa_studio_bench {
    use super::*;
    use cqa_studio::eval::score_ids;
    use cqa_studio::generate::GenerationSession;

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    /// Peak resident memory of this process (Linux), in MiB.
    fn peak_rss_mib() -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    pub fn run(lm: &LanguageModel, lengths: &[usize], decode: usize, repeats: usize, load_s: f64) -> Result<String> {
        let text = "The lighthouse keeper counted the ships by their lights, and the lights by their colours. ".repeat(200);
        let ids = lm.tokenizer.encode(&text, false)?;
        let mut prefill = serde_json::Map::new();
        for &n in lengths {
            if n > ids.len() || n < 2 {
                return Err(Error::Input(format!("prefill length {n} is out of range")));
            }
            let run = || -> Result<f64> {
                let t = Instant::now();
                block_on(score_ids(lm, vec![], ids[..n].to_vec()))?;
                Ok(t.elapsed().as_secs_f64())
            };
            run()?; // warm-up: kernels compile / autotune here
            let times = (0..repeats).map(|_| run()).collect::<Result<Vec<_>>>()?;
            prefill.insert(n.to_string(), serde_json::json!(n as f64 / median(times)));
        }
        let prompt = lm.tokenizer.encode("Once upon a time", false)?;
        let decode_once = || -> Result<f64> {
            let params = SamplingParams { max_new_tokens: decode, ..Default::default() };
            let mut session = GenerationSession::new(lm, prompt.clone(), params)?;
            // The first call prefills the prompt: time only the decode steps after it.
            block_on(session.next_token(lm))?;
            let t = Instant::now();
            let mut steps = 0;
            while steps + 1 < decode {
                // Greedy decoding may hit EOS early; keep measuring steps either way.
                if block_on(session.next_token(lm))?.is_none() {
                    break;
                }
                steps += 1;
            }
            Ok(steps as f64 / t.elapsed().as_secs_f64())
        };
        decode_once()?;
        let decode_tps = median((0..repeats).map(|_| decode_once()).collect::<Result<Vec<_>>>()?);
        Ok(serde_json::json!({
            "engine": "cqa-studio (burn)",
            "features": { "fusion": cfg!(feature = "fusion"), "autotune": cfg!(feature = "autotune") },
            "load_seconds": load_s,
            "prefill_tokens_per_second": prefill,
            "decode_tokens_per_second": decode_tps,
            "peak_rss_mib": peak_rss_mib(),
        })
        .to_string())
    }

    /// Moves every parameter onto the autodiff device without copying (for burn's own LoRA).
    struct ToAutodiff;

    impl burn::module::ModuleMapper for ToAutodiff {
        fn map_float<const D: usize>(&mut self, param: burn::module::Param<burn::tensor::Tensor<D>>) -> burn::module::Param<burn::tensor::Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            burn::module::Param::from_mapped_value(id, tensor.autodiff(), mapper)
        }
    }

    /// LoRA training throughput on `batch` synthetic sequences of `seq` tokens, loss on their
    /// second half. `factored` times whole optimizer steps of the real trainer; `burn` times
    /// forward + backward with burn's `apply_lora` (its optimizer step is not needed to compare).
    #[allow(clippy::too_many_arguments)]
    pub fn train(
        lm: &LanguageModel,
        model_path: &Path,
        lora_impl: &str,
        batch: usize,
        seq: usize,
        rank: usize,
        targets: &str,
        steps: usize,
    ) -> Result<String> {
        use burn::module::{Lora, Module, ParamGroup};
        use cqa_studio::train::{Example, token_loss_sum};
        let text = "The lighthouse keeper counted the ships by their lights, and the lights by their colours. ".repeat(400);
        let ids = lm.tokenizer.encode(&text, false)?;
        let examples: Vec<Example> = (0..batch)
            .map(|b| Example { id: format!("synthetic-{b}"), ids: ids[b * 7..b * 7 + seq].to_vec(), loss_from: seq / 2 })
            .collect();
        let lora = LoraConfig { rank, alpha: 2.0 * rank as f64, dropout: 0.0, targets: LoraConfig::parse_targets(targets)? };
        let tokens = batch * seq;
        let mut times = Vec::new();
        match lora_impl {
            "factored" => {
                let config = TrainConfig { lora: lora.clone(), batch_size: batch, grad_accum: 1, epochs: steps + 1, held_out: 0.0, ..TrainConfig::default() };
                let mut trainer = Trainer::from_examples(lm, examples, vec![], config, None)?;
                for i in 0..=steps {
                    let t = Instant::now();
                    block_on(trainer.step())?;
                    if i > 0 {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
            }
            "burn" => {
                let ids: Vec<_> = lm
                    .model
                    .projections()
                    .into_iter()
                    .filter(|(path, _)| lora.targets_path(path))
                    .map(|(_, p)| p.base.weight.id)
                    .collect();
                let device = lm.device.clone().autodiff();
                let model = lm
                    .model
                    .clone()
                    .map(&mut ToAutodiff)
                    .apply_lora(Lora::new(rank, lora.alpha).set_param_group(ParamGroup::from_ids(ids)));
                let pad = lm.tokenizer.stop_ids()[0];
                let batch_refs: Vec<&Example> = examples.iter().collect();
                for i in 0..=steps {
                    let t = Instant::now();
                    let loss = token_loss_sum(&model, &batch_refs, pad, &device)?;
                    let _grads = loss.clone().backward();
                    block_on(cqa_studio::generate::read_f32(loss.inner()))?;
                    if i > 0 {
                        times.push(t.elapsed().as_secs_f64());
                    }
                }
            }
            other => return Err(Error::Input(format!("unknown --lora `{other}`: use factored or burn"))),
        }
        let step_s = median(times);
        Ok(serde_json::json!({
            "engine": "cqa-studio (burn)",
            "model": model_path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "lora": lora_impl,
            "rank": rank,
            "targets": lora.targets,
            "batch": batch,
            "seq": seq,
            "step_seconds": step_s,
            "train_tokens_per_second": tokens as f64 / step_s,
            "peak_rss_mib": peak_rss_mib(),
        })
        .to_string())
    }
}
