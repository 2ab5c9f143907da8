//! The verdict as a distribution: after a prefix that ends where the verdict line would start,
//! score the ten continuations `Verdict: 1/10` … `Verdict: 10/10` (each in full: `10` may be
//! several tokens) and normalise. Always defined, and the same kind of quantity as the
//! calibration benchmark's log-probs.

use crate::error::{Error, Result};
use crate::device::read_f32;
use crate::loader::LanguageModel;
use crate::prompt::{AppreciationInput, appreciation_prompt, verdict_line};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// What precedes the verdict line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PrefixMode {
    /// The assistant turn opened straight at the verdict line, with no reasoning.
    Direct,
    /// The model's own greedy critique, cut before its verdict if it wrote one.
    #[default]
    Critique,
    /// The expert's own reasoning steps, as the training data writes them.
    Reasoning,
}

impl PrefixMode {
    pub const ALL: [PrefixMode; 3] = [PrefixMode::Direct, PrefixMode::Critique, PrefixMode::Reasoning];

    pub fn name(self) -> &'static str {
        match self {
            PrefixMode::Direct => "direct",
            PrefixMode::Critique => "critique",
            PrefixMode::Reasoning => "reasoning",
        }
    }
}

impl std::str::FromStr for PrefixMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        PrefixMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::Input(format!("unknown prefix mode `{s}`: use direct, critique or reasoning")))
    }
}

/// The ten continuations scored, for 1 to 10, exactly as the training data writes the verdict.
pub fn verdict_continuations() -> Vec<String> {
    (1..=10).map(verdict_line).collect()
}

/// A model's belief over the verdict after one prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictDistribution {
    /// The exact text scored after (chat template included), so anyone can re-score it.
    pub prefix: String,
    /// The ten exact strings scored after the prefix, for 1 to 10: `Verdict: k/10`, after the
    /// blank line that ends the assistant's text, if any.
    pub continuations: Vec<String>,
    /// ln p(continuation | prefix), nats, before normalising.
    pub logprobs: Vec<f64>,
    /// The ten normalised probabilities, same order.
    pub p: Vec<f64>,
    /// Σ k·p(k).
    pub expected: f64,
    /// The most likely score.
    pub mode: u8,
    pub entropy_bits: f64,
    /// Σ p(continuation | prefix) before normalising: how much the model expected a verdict line
    /// to come next at all.
    pub verdict_mass: f64,
}

impl VerdictDistribution {
    /// Builds the distribution from the ten raw log-probs.
    pub fn from_logprobs(prefix: String, continuations: Vec<String>, logprobs: Vec<f64>) -> Self {
        let max = logprobs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum_exp: f64 = logprobs.iter().map(|l| (l - max).exp()).sum();
        let log_mass = max + sum_exp.ln();
        let p: Vec<f64> = logprobs.iter().map(|l| (l - log_mass).exp()).collect();
        let expected = p.iter().enumerate().map(|(i, p)| (i + 1) as f64 * p).sum();
        // The first of equal maxima, as numpy's argmax.
        let mode = p.iter().enumerate().fold((0, f64::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0 as u8 + 1;
        let entropy_bits = -p.iter().filter(|&&p| p > 0.0).map(|p| p * p.log2()).sum::<f64>();
        VerdictDistribution { prefix, continuations, logprobs, p, expected, mode, entropy_bits, verdict_mass: log_mass.exp() }
    }

    /// −ln p(score) under the normalised distribution.
    pub fn log_loss(&self, score: u8) -> f64 {
        -self.p[score as usize - 1].max(f64::MIN_POSITIVE).ln()
    }
}

/// The critique cut just before its own verdict line, if it wrote one, and ended with the blank
/// line that precedes `Verdict:` in the training data.
pub fn critique_before_verdict(critique: &str) -> String {
    static VERDICT_LINE: OnceLock<regex::Regex> = OnceLock::new();
    // A line that opens with the verdict label, allowing markdown emphasis or a heading mark.
    let re = VERDICT_LINE.get_or_init(|| regex::Regex::new(r"(?im)^[\s*_#>-]*(?:final\s+)?verdict\b").expect("valid regex"));
    let cut = re.find(critique).map_or(critique, |m| &critique[..m.start()]);
    let body = cut.trim_end();
    if body.is_empty() { String::new() } else { format!("{body}\n\n") }
}

/// What is scored: the prefix (text and ids) and the ten continuations (strings and ids).
#[derive(Debug, Clone, PartialEq)]
pub struct VerdictQuery {
    pub prefix: String,
    pub prefix_ids: Vec<u32>,
    pub continuations: Vec<String>,
    pub continuation_ids: Vec<Vec<u32>>,
}

/// Builds the query for `input` with `assistant_so_far` already said in the assistant turn.
///
/// The prompt is tokenized by itself (`prompt::appreciation_prompt`), exactly as training does.
/// Trailing whitespace of the assistant text moves into the continuations, so that the blank
/// line before `Verdict:` is tokenized together with it, as in the training text: SmolLM2's
/// tokenizer writes `\n\n` as one token at the end of a string but as two `\n` tokens before a
/// word, and the model only ever saw the latter before a verdict.
pub fn verdict_query(lm: &LanguageModel, input: &AppreciationInput, assistant_so_far: &str) -> Result<VerdictQuery> {
    let prompt = appreciation_prompt(lm, input)?;
    let said = assistant_so_far.trim_end();
    let gap = &assistant_so_far[said.len()..];
    let mut prefix_ids = prompt.ids;
    prefix_ids.extend(lm.tokenizer.encode(said, false)?);
    let continuations: Vec<String> = verdict_continuations().iter().map(|c| format!("{gap}{c}")).collect();
    let continuation_ids = continuations.iter().map(|c| lm.tokenizer.encode(c, false)).collect::<Result<Vec<_>>>()?;
    let all: Vec<u32> = prefix_ids.iter().chain(continuation_ids.iter().flatten()).copied().collect();
    lm.check_ids(&all)?;
    Ok(VerdictQuery { prefix: prompt.text + said, prefix_ids, continuations, continuation_ids })
}

/// Scores the ten verdict continuations of `query`. The prefix runs through the model once; each
/// continuation then continues from a copy of its KV cache, and all log-probs come back in one
/// device read.
pub async fn verdict_distribution(lm: &LanguageModel, query: VerdictQuery) -> Result<VerdictDistribution> {
    let VerdictQuery { prefix, prefix_ids, continuations, continuation_ids } = query;
    let device = &lm.device;
    let ints = |ids: &[u32]| {
        let v: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
        Tensor::<2, Int>::from_data(TensorData::new(v, [1, ids.len()]), device)
    };
    let longest = continuation_ids.iter().map(Vec::len).max().unwrap_or(0);
    if prefix_ids.is_empty() || prefix_ids.len() + longest > lm.config.max_position_embeddings {
        return Err(Error::Input(format!(
            "the verdict prefix is {} tokens, which does not fit this model's {}-token window",
            prefix_ids.len(),
            lm.config.max_position_embeddings
        )));
    }
    let mut cache = lm.model.new_cache();
    let n = prefix_ids.len();
    let hidden = lm.model.forward_hidden(ints(&prefix_ids), &mut cache)?;
    // log p(· | prefix) at the last prefix position: [1, 1, vocab].
    let first = log_softmax(lm.model.logits(hidden.narrow(1, n - 1, 1)), 2);
    let mut picked: Vec<Tensor<1>> = Vec::new();
    for cont in &continuation_ids {
        if cont.is_empty() {
            return Err(Error::Template("a verdict continuation tokenized to nothing".into()));
        }
        let head = Tensor::<3, Int>::from_data(TensorData::new(vec![cont[0] as i32], [1, 1, 1]), device);
        picked.push(first.clone().gather(2, head).reshape([1]));
        if cont.len() > 1 {
            // Positions of cont[..len-1] predict cont[1..].
            let mut branch = cache.clone();
            let h = lm.model.forward_hidden(ints(&cont[..cont.len() - 1]), &mut branch)?;
            let rest: Vec<i32> = cont[1..].iter().map(|&t| t as i32).collect();
            let k = rest.len();
            let targets = Tensor::<3, Int>::from_data(TensorData::new(rest, [1, k, 1]), device);
            picked.push(log_softmax(lm.model.logits(h), 2).gather(2, targets).reshape([k]));
        }
    }
    let values = read_f32(Tensor::cat(picked, 0)).await?;
    let mut at = 0;
    let logprobs = continuation_ids
        .iter()
        .map(|c| {
            let sum: f64 = values[at..at + c.len()].iter().map(|&l| l as f64).sum();
            at += c.len();
            sum
        })
        .collect();
    Ok(VerdictDistribution::from_logprobs(prefix, continuations, logprobs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_from_hand_made_logprobs() {
        // Mass ½ on 7 and ½ on 8 after normalising; the raw mass is 0.5.
        let mut lp = vec![f64::NEG_INFINITY; 10];
        lp[6] = 0.25f64.ln();
        lp[7] = 0.25f64.ln();
        let d = VerdictDistribution::from_logprobs("x".into(), verdict_continuations(), lp);
        assert!((d.p[6] - 0.5).abs() < 1e-12 && (d.p[7] - 0.5).abs() < 1e-12);
        assert!((d.expected - 7.5).abs() < 1e-12);
        assert_eq!(d.mode, 7);
        assert!((d.entropy_bits - 1.0).abs() < 1e-12);
        assert!((d.verdict_mass - 0.5).abs() < 1e-12);
        assert!((d.log_loss(8) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(d.continuations[9], "Verdict: 10/10");
    }

    #[test]
    fn critiques_are_cut_before_their_verdict() {
        assert_eq!(critique_before_verdict("1. [craft] Tight.\n\nVerdict: 7/10. Good."), "1. [craft] Tight.\n\n");
        assert_eq!(critique_before_verdict("Strong imagery.\n**Verdict:** 8/10"), "Strong imagery.\n\n");
        assert_eq!(critique_before_verdict("No verdict line, just praise.  "), "No verdict line, just praise.\n\n");
        assert_eq!(critique_before_verdict("Verdict: 3/10"), "");
        assert_eq!(critique_before_verdict(""), "");
    }
}
