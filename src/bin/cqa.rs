//! `cqa`: the native command line over the cqa-studio engine. Other tools script against its
//! output, so the JSON shapes here are a contract (see README.md).

use clap::{Args, Parser, Subcommand};
use cqa_studio::device::{self, Backend, block_on};
use cqa_studio::eval::score;
use cqa_studio::generate::{SamplingParams, generate};
use cqa_studio::tokenizer::ChatMessage;
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
    if let Command::DebugTinyLogits { seed, vocab, ids } = &cli.command {
        return tiny_logits(*seed, *vocab, ids, &device);
    }
    let model_path = resolve_model_path(cli.common.model)?;
    let t0 = Instant::now();
    let lm = load(&model_path, &device)?;
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
            block_on(generate(&lm, ids, params, |piece| {
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            }))?;
            let _ = writeln!(out);
        }
        Command::Score { text, context, json: _ } => {
            let s = block_on(score(&lm, &text, context.as_deref()))?;
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
            let report = cqa_studio_bench::run(&lm, &lengths, decode, repeats.max(1), load_s)?;
            println!("{report}");
        }
        Command::DebugTinyLogits { .. } => unreachable!("handled before loading a model"),
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
}
