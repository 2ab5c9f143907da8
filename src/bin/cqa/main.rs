//! `cqa`: the native command line over the cqa-studio engine. Other tools script against its
//! output, so the JSON shapes here are a contract (see README.md).

mod agreement;
mod bench;
mod files;
mod train;

use clap::{Args, Parser, Subcommand};
use cqa_studio::appreciate::{AppraiseOptions, AppreciationReport, PrefixMode, appraise_record};
use cqa_studio::calibrate::{CalibrationReport, parse_benchmark, run_item};
use cqa_studio::data::coverage;
use cqa_studio::device::{self, Backend, block_on};
use cqa_studio::eval::score;
use cqa_studio::generate::{SamplingParams, generate};
use cqa_studio::prompt::{chat_prompt, plain_prompt, trl_jsonl};
use cqa_studio::tokenizer::ChatMessage;
use cqa_studio::{Error, LanguageModel, Result};
use files::{load, read, read_adapter, read_annotations, resolve_model_path, write_atomic};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// How the weights are held: `stored` (the file's own blocks; on wgpu, the formats without GPU kernels as Q8_0), `f32`
    /// (all dequantized) or `q8_0` (f32/f16 weights quantized to Q8_0 at load). On both
    /// backends: host memory on the CPU, device buffers on wgpu.
    #[arg(long, global = true, default_value = "stored")]
    weights: String,
    /// How inference runs on wgpu: `fused` (the decode step in a few fused kernels a layer with
    /// the argmax on the GPU, and attention in one kernel) or `ops` (burn's tensor ops, ~1,700
    /// dispatches a decoded token), for comparison. Training always uses burn's ops.
    #[arg(long, global = true, default_value = "fused")]
    gpu_kernels: String,
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
        /// Decode with f32 activations, as the reference stack does (by default a CPU with
        /// AVX-512 VNNI rounds a decode step's activations to 8 bits, as llama.cpp does).
        #[arg(long)]
        f32_activations: bool,
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
    /// Measure load time, prefill (scoring), prompt (generation) and decode throughput, and peak memory.
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
        /// Decode with f32 activations (see `generate --f32-activations`).
        #[arg(long)]
        f32_activations: bool,
    },
    /// LoRA fine-tuning on expert annotations (the appreciation task).
    Train(Box<train::TrainArgs>),
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
    /// Appreciation on held-out annotations: each model's verdict as a distribution over 1–10
    /// after a prefix (`--mode`), its agreement with the expert's score (Spearman ρ, MAE, within
    /// ±1, log-loss), the NLL of the expert's reasoning; base and, with --adapter, tuned, with a
    /// paired bootstrap CI of tuned − base (docs/appreciation-format.md).
    Appreciate {
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        json: bool,
        /// What precedes the verdict line: `direct` (nothing), `critique` (the model's own greedy
        /// critique, cut before its verdict) or `reasoning` (the expert's steps). `direct` and
        /// `reasoning` sample nothing, so their output is deterministic.
        #[arg(long, default_value = "critique")]
        mode: PrefixMode,
        /// Longest critique generated per record (critique mode).
        #[arg(long, default_value_t = AppraiseOptions::default().max_new_tokens)]
        max_tokens: usize,
        /// Bootstrap resamples for the tuned − base intervals.
        #[arg(long, default_value_t = AppraiseOptions::default().bootstrap)]
        bootstrap: usize,
        /// Seed of the bootstrap resamples.
        #[arg(long, default_value_t = AppraiseOptions::default().seed)]
        seed: u64,
    },
    /// Agreement among annotators who rated the same works (Krippendorff's α, pairwise Spearman
    /// ρ and MAE, bootstrap CIs), and models placed among them from `appreciate --json` output:
    /// each against each human, and leave-one-annotator-out (docs/study-format.md).
    Agreement(Box<agreement::AgreementArgs>),
    /// Write a study's report: one self-contained HTML file (inline SVG charts, no external
    /// requests) from its study.json, the same file the page's Report button writes.
    Report {
        /// The study document (`study.json` from a *.cqa-study.zip; docs/study-format.md).
        #[arg(long)]
        study: PathBuf,
        #[arg(long)]
        out: PathBuf,
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
        /// Replace the chat template with this file's text (hostile-template tests).
        #[arg(long)]
        chat_template: Option<PathBuf>,
        /// Write the matrices whose rows are whole 32-blocks as Q8_0 (stored-weight tests).
        #[arg(long)]
        q8_0: bool,
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
    match cli.common.gpu_kernels.as_str() {
        "fused" => cqa_studio::model::gpu_decode::set_enabled(true),
        "ops" => cqa_studio::model::gpu_decode::set_enabled(false),
        other => return Err(Error::Input(format!("unknown --gpu-kernels `{other}`: use `fused` or `ops`"))),
    }
    let device = match backend {
        Backend::Cpu => device::cpu(),
        Backend::Wgpu => device::wgpu()?,
    };
    match &cli.command {
        Command::DebugTinyLogits { seed, vocab, ids } => return tiny_logits(*seed, *vocab, ids, &device),
        Command::Coverage { data, json } => {
            let c = coverage(&read_annotations(data, false)?);
            if *json {
                println!("{}", to_json(&c)?);
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
        Command::Agreement(args) => return agreement::agreement_command(args),
        Command::Report { study, out } => {
            let doc = cqa_studio::study::Study::parse(&read(study)?).map_err(|e| Error::Input(format!("{}: {e}", study.display())))?;
            write_atomic(out, cqa_studio::report::render_html(&doc).as_bytes())?;
            eprintln!("wrote the report of {} records to {}", doc.records.len(), out.display());
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
    if let Command::DebugTinyGguf { out, seed, chat_template, q8_0 } = &cli.command {
        let mut source = cqa_studio::gguf::GgufFile::parse(read(&model_path)?)?;
        if let Some(path) = chat_template {
            let template = String::from_utf8_lossy(&read(path)?).into_owned();
            source.metadata.insert("tokenizer.chat_template".into(), cqa_studio::gguf::MetaValue::String(template));
        }
        let bytes = cqa_studio::gguf::writer::tiny_random_gguf(&source, *seed, *q8_0);
        return write_atomic(out, &bytes);
    }
    let t0 = Instant::now();
    let base = load(&model_path, cli.common.weights.parse()?, &device)?;
    // With --adapter, `tuned` is the merged model: generate/score use it, calibrate and
    // appreciate compare it with the base.
    let tuned = match &cli.common.adapter {
        Some(dir) => Some(base.with_adapter(&read_adapter(dir, &base)?, true)?),
        None => None,
    };
    let lm = tuned.as_ref().unwrap_or(&base);
    let load_s = t0.elapsed().as_secs_f64();

    match cli.command {
        Command::Generate { prompt, chat, max_tokens, temperature, top_p, top_k, repetition_penalty, seed, show_prompt, f32_activations } => {
            let prompt = if chat { chat_prompt(lm, &[ChatMessage::new("user", &prompt)])? } else { plain_prompt(lm, &prompt)? };
            if show_prompt {
                eprintln!("{}", prompt.text);
            }
            let ids = prompt.ids;
            let params = SamplingParams { temperature, top_k, top_p, repetition_penalty, seed, max_new_tokens: max_tokens, f32_activations };
            let mut out = std::io::stdout().lock();
            block_on(generate(lm, ids, params, |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            }))?;
            let _ = writeln!(out);
        }
        Command::Score { text, context, json: _ } => {
            let s = block_on(score(lm, &text, context.as_deref()))?;
            println!("{}", to_json(&s)?);
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
                println!("{}", serde_json::to_string_pretty(&v).map_err(|e| Error::Input(e.to_string()))?);
            }
        }
        Command::Bench { prefill, decode, repeats, f32_activations } => {
            let lengths: Vec<usize> = prefill
                .split(',')
                .map(|s| s.trim().parse().map_err(|_| Error::Input(format!("bad --prefill length `{s}`"))))
                .collect::<Result<_>>()?;
            let report = bench::run(lm, &lengths, decode, repeats.max(1), load_s, f32_activations)?;
            println!("{report}");
        }
        Command::Calibrate { bench, json, tokens } => calibrate_command(&base, tuned.as_ref(), &bench, json, tokens)?,
        Command::Appreciate { data, json, mode, max_tokens, bootstrap, seed } => {
            let options = AppraiseOptions { mode, max_new_tokens: max_tokens, bootstrap, seed, ..AppraiseOptions::default() };
            appreciate_command(&base, tuned.as_ref(), &data, json, options)?
        }
        Command::Train(args) => {
            if cli.common.adapter.is_some() {
                return Err(Error::Input("--adapter applies to generate / score; to continue a run use `train --resume`".into()));
            }
            train::train_command(&base, *args, &model_path)?;
        }
        Command::BenchTrain { lora, batch, seq, rank, targets, steps } => {
            let report = bench::train(&base, &model_path, &lora, batch, seq, rank, &targets, steps.max(1))?;
            println!("{report}");
        }
        Command::DebugTinyLogits { .. }
        | Command::DebugTinyGguf { .. }
        | Command::Coverage { .. }
        | Command::Agreement(_)
        | Command::Report { .. }
        | Command::ExportTrl { .. } => {
            unreachable!("handled before loading a model")
        }
    }
    Ok(())
}

fn tiny_logits(seed: u64, vocab: usize, ids: &str, device: &burn::tensor::Device) -> Result<()> {
    let ids: Vec<u32> = ids
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| Error::Input(format!("bad token id `{s}`"))))
        .collect::<Result<_>>()?;
    let logits = block_on(cqa_studio::model::Llama::tiny_random_logits(seed, vocab, &ids, device))?;
    println!("{}", serde_json::json!({ "logits": logits }));
    Ok(())
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
    let report = CalibrationReport::new(results.iter().map(|r| r.report(tokens)).collect());
    if json {
        println!("{}", to_json(&report)?);
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
    for (name, g) in &report.groups {
        println!(
            "  {name:<9} n={:<3} mean {:>8.3}  median {:>8.3}  sd {:>8.3}  p {:<10}  d {}",
            g.n, g.mean, g.median, g.sd, fmt_opt(g.wilcoxon_p), fmt_opt(g.cohens_d)
        );
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "n/a".into())
}

/// Serialises a report for printing.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Input(format!("the report could not be written as JSON: {e}")))
}

fn appreciate_command(base: &LanguageModel, tuned: Option<&LanguageModel>, data: &Path, json: bool, options: AppraiseOptions) -> Result<()> {
    options.validate()?;
    let records = read_annotations(data, false)?;
    let started = Instant::now();
    let run = |name: &str, lm: &LanguageModel| -> Result<Vec<_>> {
        let mut out = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            out.push(block_on(appraise_record(lm, record, &options))?);
            eprint!("\r{name}: appraised {}/{} records ({} prefix)", i + 1, records.len(), options.mode.name());
        }
        eprintln!(" in {:.1} s", started.elapsed().as_secs_f64());
        Ok(out)
    };
    let base_appraisals = run("base", base)?;
    let tuned_appraisals = tuned.map(|lm| run("tuned", lm)).transpose()?;
    let report = AppreciationReport::new(&records, base_appraisals, tuned_appraisals, &options);
    if json {
        println!("{}", to_json(&report)?);
        return Ok(());
    }
    let s = &report.summary;
    println!("{} records, {} prefix; expected verdict vs the expert's score:", s.records, s.mode.name());
    for (name, m) in [("base", Some(&s.base)), ("tuned", s.tuned.as_ref())] {
        let Some(m) = m else { continue };
        let a = &m.agreement;
        println!(
            "  {name:<6} Spearman ρ {:<7}  MAE {:.3}  within ±1 {:>3.0}%  log-loss {:.3}  NLL {} nats/token",
            fmt_opt(a.spearman), a.mae, a.within_1 * 100.0, a.log_loss, fmt_opt(m.nll_per_token)
        );
    }
    if let Some(d) = &s.tuned_minus_base {
        let row = |name: &str, x: &cqa_studio::appreciate::agreement::Difference| {
            println!("  Δ {name:<9} {:>8}  {:.0}% CI [{}, {}]", fmt_opt(x.tuned_minus_base), d.level * 100.0, fmt_opt(x.ci_low), fmt_opt(x.ci_high));
        };
        println!("tuned − base (paired bootstrap, {} resamples, seed {}):", s.bootstrap_resamples, s.seed);
        row("ρ", &d.spearman);
        row("MAE", &d.mae);
        row("within ±1", &d.within_1);
        row("log-loss", &d.log_loss);
    }
    Ok(())
}
