//! Scoring: per-token log-probabilities of a text, optionally after a context. This is the
//! measurement behind ΔI = H(X) − H(X|Y): score the passage X alone for H(X), and after the
//! constraint text Y for H(X|Y); the passage tokens are the same in both.

use crate::error::{Error, Result};
use crate::device::read_f32;
use crate::loader::LanguageModel;
use crate::model::Llama;
use crate::prompt::Example;
use crate::model::fused::loss::target_log_probs;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;

/// The logits projected at once, in bytes: positions go to the vocabulary in chunks of this
/// size, each reduced to its targets' log-probabilities before the next, so `[tokens × vocab]`
/// logits never exist (at 512 tokens and Qwen's 151,936-token vocabulary they would be 311 MB).
const LOGIT_CHUNK_BYTES: usize = 16 << 20;

/// Positions a chunk takes for a vocabulary of `vocab`: 85 for SmolLM2's 49,152, 27 for Qwen's.
fn logit_chunk(vocab: usize) -> usize {
    (LOGIT_CHUNK_BYTES / (4 * vocab.max(1))).clamp(8, 256)
}

/// The scoring result, as `cqa score --json` prints it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Score {
    pub context_ids: Vec<u32>,
    pub text_ids: Vec<u32>,
    /// `logprobs[i]` is ln p(scored token i | everything before it). When nothing precedes the
    /// text (no context and no BOS), the first text token cannot be scored and is skipped.
    pub logprobs: Vec<f32>,
    /// Surprisal of the scored tokens, in bits.
    pub total_bits: f64,
    pub bits_per_token: f64,
}

/// Scores `text`, after `context` if given.
///
/// - With a context: the context is tokenized with special tokens (BOS if the model adds one),
///   the text without, and every text token is scored.
/// - Without: the text is scored after BOS if the model adds one; otherwise its first token has
///   nothing to be conditioned on and is not scored.
pub async fn score(lm: &LanguageModel, text: &str, context: Option<&str>) -> Result<Score> {
    let text_ids = lm.tokenizer.encode(text, false)?;
    if text_ids.is_empty() {
        return Err(Error::Input("the text to score is empty".into()));
    }
    let context_ids = match context {
        Some(c) => lm.tokenizer.encode(c, true)?,
        None => lm.tokenizer.bos_prepended().into_iter().collect(),
    };
    let (context_ids, text_ids, logprobs) = score_ids(lm, context_ids, text_ids).await?;
    let total_bits = -logprobs.iter().map(|&l| l as f64).sum::<f64>() / std::f64::consts::LN_2;
    let bits_per_token = total_bits / logprobs.len() as f64;
    Ok(Score { context_ids, text_ids, logprobs, total_bits, bits_per_token })
}

/// Log-probabilities of `text_ids` after `context_ids` (see [`score`] for the empty-context rule).
pub async fn score_ids(
    lm: &LanguageModel,
    context_ids: Vec<u32>,
    text_ids: Vec<u32>,
) -> Result<(Vec<u32>, Vec<u32>, Vec<f32>)> {
    let all: Vec<u32> = context_ids.iter().chain(&text_ids).copied().collect();
    lm.check_ids(&all)?;
    // The first position that is predicted (and so scored).
    let first = context_ids.len().max(1);
    if first >= all.len() {
        return Err(Error::Input(
            "the text is a single token with no context before it: there is nothing to score; add a context or a longer text".into(),
        ));
    }
    let n = all.len();
    let ids: Vec<i32> = all.iter().map(|&t| t as i32).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &lm.device);
    let hidden = lm.model.forward_hidden(tokens, &mut lm.model.new_cache())?;

    // Position p predicts token p + 1: score positions first-1 .. n-1.
    let mut logprobs = Vec::with_capacity(n - first);
    let mut start = first - 1;
    while start < n - 1 {
        let len = logit_chunk(lm.config.vocab_size).min(n - 1 - start);
        let logits = lm.model.logits(hidden.clone().narrow(1, start, len)); // [1, len, vocab]
        let vocab = logits.dims()[2];
        let picked = target_log_probs(logits.reshape([len, vocab]), &all[start + 1..start + 1 + len]);
        logprobs.extend(read_f32(picked).await?);
        start += len;
    }
    Ok((context_ids, text_ids, logprobs))
}

/// Sum over the batch's completion tokens (`ids[loss_from..]`) of −ln p(token | prefix): the
/// training loss and the appreciation NLL. Sequences are right-padded
/// with `pad_id`; causal attention keeps padding from touching real positions, and padded
/// positions are never scored. Only scored positions are projected to the vocabulary.
pub fn completion_nll_sum(model: &Llama, batch: &[&Example], pad_id: u32, device: &Device) -> Result<Tensor<1>> {
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
            targets.push(example.ids[p + 1]);
        }
    }
    let n = rows.len();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [batch.len(), seq]), device);
    let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), device);
    let hidden = model.forward_hidden(tokens, &mut model.new_cache())?;
    let [b, s, d] = hidden.dims();
    let scored = hidden.reshape([b * s, d]).select(0, rows).reshape([1, n, d]);
    let logits = model.logits(scored);
    let vocab = logits.dims()[2];
    Ok(target_log_probs(logits.reshape([n, vocab]), &targets).sum().neg())
}
