//! `cqa bench` and `cqa bench-train`: the throughput and memory figures in BENCHMARKS.md,
//! measured on the same code paths the other commands use.

use cqa_studio::device::block_on;
use cqa_studio::eval::{completion_nll_sum, score_ids};
use cqa_studio::generate::{GenerationSession, SamplingParams};
use cqa_studio::lora::LoraConfig;
use cqa_studio::prompt::Example;
use cqa_studio::train::{TrainConfig, Trainer};
use cqa_studio::{Error, LanguageModel, Result};
use std::path::Path;
use std::time::Instant;


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

pub fn run(lm: &LanguageModel, lengths: &[usize], decode: usize, repeats: usize, load_s: f64, f32_activations: bool) -> Result<String> {
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
    // A generation's prompt of the same lengths: the logits of its last position only (what
    // llama.cpp's prefill computes), and the first token picked from them.
    let mut prompt_rates = serde_json::Map::new();
    for &n in lengths {
        let run = || -> Result<f64> {
            let params = SamplingParams { max_new_tokens: 1, f32_activations, ..Default::default() };
            let t = Instant::now();
            let mut session = GenerationSession::new(lm, ids[..n].to_vec(), params)?;
            block_on(session.next_token(lm))?;
            Ok(t.elapsed().as_secs_f64())
        };
        run()?;
        let times = (0..repeats).map(|_| run()).collect::<Result<Vec<_>>>()?;
        prompt_rates.insert(n.to_string(), serde_json::json!(n as f64 / median(times)));
    }
    let prompt = lm.tokenizer.encode("Once upon a time", false)?;
    // (tokens a second, first token's seconds, whether the fused GPU step ran, its dispatches)
    let decode_once = |params: &SamplingParams| -> Result<(f64, f64, bool, usize)> {
        let mut session = GenerationSession::new(lm, prompt.clone(), params.clone())?;
        // The first call prefills the prompt: time only the decode steps after it.
        let t = Instant::now();
        block_on(session.next_token(lm))?;
        let first_token_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut steps = 0;
        while steps + 1 < decode {
            // Decoding may hit EOS early; keep measuring steps either way.
            if block_on(session.next_token(lm))?.is_none() {
                break;
            }
            steps += 1;
        }
        Ok((steps as f64 / t.elapsed().as_secs_f64(), first_token_s, session.uses_fused_gpu_decode(), session.dispatches_per_token()))
    };
    let greedy = SamplingParams { max_new_tokens: decode, f32_activations, ..Default::default() };
    // Seeded sampling as the page's "Try it" does it (T 0.8, top-k 40, top-p 0.9), with a repetition
    // penalty: every filter of the sampler, picked on the GPU where decoding is.
    let sampled = SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.9, repetition_penalty: 1.1, seed: 42, max_new_tokens: decode, f32_activations };
    let (_, _, fused, dispatches) = decode_once(&greedy)?;
    let runs = (0..repeats).map(|_| decode_once(&greedy)).collect::<Result<Vec<_>>>()?;
    let decode_tps = median(runs.iter().map(|r| r.0).collect());
    let first_token_s = median(runs.iter().map(|r| r.1).collect());
    decode_once(&sampled)?;
    let sampled_tps = median((0..repeats).map(|_| decode_once(&sampled).map(|r| r.0)).collect::<Result<Vec<_>>>()?);
    Ok(serde_json::json!({
        "engine": "cqa-studio (burn)",
        "features": { "fusion": cfg!(feature = "fusion"), "autotune": cfg!(feature = "autotune") },
        "load_seconds": load_s,
        "prefill_tokens_per_second": prefill,
        // The same lengths as a generation's prompt (last position's logits, then one token).
        "prompt_tokens_per_second": prompt_rates,
        "decode_tokens_per_second": decode_tps,
        "decode_sampled_tokens_per_second": sampled_tps,
        // Whether the CPU decode steps rounded x to 8 bits (`SamplingParams::f32_activations`).
        "decode_activations": if f32_activations { "f32" } else { "int8 where the CPU has AVX-512 VNNI" },
        "first_token_seconds": first_token_s,
        // The fused GPU decode step (model::gpu_decode): whether it ran, and its dispatches a token.
        "decode_fused_gpu": fused,
        "decode_dispatches_per_token": if fused { serde_json::json!(dispatches) } else { serde_json::Value::Null },
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
                .map(|(_, p)| match &p.base {
                    cqa_studio::linear::BaseLinear::Dense(linear) => Ok(linear.weight.id),
                    cqa_studio::linear::BaseLinear::Stored(_) => {
                        Err(Error::Input("burn's own LoRA needs f32 weights: run bench-train --lora burn with --weights f32".into()))
                    }
                })
                .collect::<Result<_>>()?;
            let device = lm.device.clone().autodiff();
            let model = lm
                .model
                .clone()
                .map(&mut ToAutodiff)
                .apply_lora(Lora::new(rank, lora.alpha).set_param_group(ParamGroup::from_ids(ids)));
            let pad = lm.tokenizer.pad_id();
            let batch_refs: Vec<&Example> = examples.iter().collect();
            for i in 0..=steps {
                let t = Instant::now();
                let loss = completion_nll_sum(&model, &batch_refs, pad, &device)?;
                let _grads = loss.clone().backward();
                block_on(cqa_studio::device::read_f32(loss.inner()))?;
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
