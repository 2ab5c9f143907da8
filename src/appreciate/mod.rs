//! Appreciation: how a model judges a work, base against tuned, measured on held-out records.
//!
//! - The verdict as a distribution over 1–10 (`verdict`), after one of three prefixes: the
//!   assistant turn opened at the verdict line (`direct`), the model's own greedy critique
//!   (`critique`), or the expert's reasoning (`reasoning`). Always defined.
//! - Agreement of the expected score with the expert's: Spearman ρ, MAE, share within ±1,
//!   log-loss, and a seeded paired bootstrap CI for tuned − base (`agreement`).
//! - The NLL of the expert's reasoning and verdict, and the free-text verdict parsed from the
//!   critique (`parse`), kept alongside.

pub mod agreement;
mod parse;
pub mod verdict;

pub use agreement::{Agreement, AgreementDifference, Judged};
pub use parse::parse_verdict_score;
pub use verdict::{PrefixMode, VerdictDistribution, verdict_distribution};

use crate::data::Annotation;
use crate::error::{Error, Result};
use crate::eval::completion_nll_sum;
use crate::device::read_f32;
use crate::generate::{SamplingParams, generate};
use crate::loader::LanguageModel;
use crate::prompt::{AppreciationInput, appreciation_prompt, build_example, reasoning_text};
use serde::{Deserialize, Serialize};
use verdict::{critique_before_verdict, verdict_query};

/// How an appreciation run is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppraiseOptions {
    pub mode: PrefixMode,
    /// Longest critique generated per record (critique mode).
    pub max_new_tokens: usize,
    /// Bootstrap resamples for the tuned − base intervals.
    pub bootstrap: usize,
    pub seed: u64,
    /// Confidence level of the intervals.
    pub level: f64,
}

impl Default for AppraiseOptions {
    fn default() -> Self {
        AppraiseOptions { mode: PrefixMode::Critique, max_new_tokens: 200, bootstrap: 2000, seed: 42, level: 0.95 }
    }
}

/// The most bootstrap resamples one report draws: each holds one index per record, so the count
/// bounds the memory a report takes (10⁵ × 1,000 records is 800 MB of indices on wasm32).
pub const MAX_BOOTSTRAP: usize = 100_000;
/// The longest critique one record may ask for.
pub const MAX_CRITIQUE_TOKENS: usize = 4096;

impl AppraiseOptions {
    /// Refuses options that would index outside the resamples or exhaust memory: a level
    /// outside (0, 1), more than [`MAX_BOOTSTRAP`] resamples, or a critique longer than
    /// [`MAX_CRITIQUE_TOKENS`].
    pub fn validate(&self) -> Result<()> {
        if !(self.level.is_finite() && self.level > 0.0 && self.level < 1.0) {
            return Err(Error::Input(format!("the confidence level must be between 0 and 1 (e.g. 0.95), got {}", self.level)));
        }
        if self.bootstrap > MAX_BOOTSTRAP {
            return Err(Error::Input(format!("at most {MAX_BOOTSTRAP} bootstrap resamples, got {}", self.bootstrap)));
        }
        if self.max_new_tokens > MAX_CRITIQUE_TOKENS {
            return Err(Error::Input(format!("a critique may be at most {MAX_CRITIQUE_TOKENS} tokens, got {}", self.max_new_tokens)));
        }
        Ok(())
    }
}

/// One model on one record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelAppraisal {
    #[serde(flatten)]
    pub verdict: VerdictDistribution,
    /// Mean NLL (nats per token) of the expert's reasoning and verdict (NaN-free: null when the
    /// record did not fit the model's window).
    pub nll: Option<f64>,
    pub tokens: usize,
    /// The model's greedy critique (critique mode), and the score written in it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critique: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parsed_score: Option<u8>,
}

/// The model's greedy critique of `input`.
pub async fn critique(lm: &LanguageModel, input: &AppreciationInput, max_new_tokens: usize) -> Result<String> {
    let ids = appreciation_prompt(lm, input)?.ids;
    let params = SamplingParams { max_new_tokens, ..SamplingParams::default() };
    let mut text = String::new();
    generate(lm, ids, params, |piece| text.push_str(piece)).await?;
    Ok(text)
}

/// The verdict distribution for `input` after `mode`'s prefix. `given` is the assistant text
/// the mode needs: the expert's reasoning (reasoning mode, required) or the model's own critique
/// (critique mode; generated greedily when `None`). Returns the critique text in critique mode.
pub async fn judge(
    lm: &LanguageModel,
    input: &AppreciationInput,
    mode: PrefixMode,
    given: Option<&str>,
    max_new_tokens: usize,
) -> Result<(VerdictDistribution, Option<String>)> {
    let (assistant, critique_text) = match mode {
        PrefixMode::Direct => (String::new(), None),
        PrefixMode::Reasoning => (
            given.ok_or_else(|| crate::Error::Input("the reasoning prefix needs the expert's reasoning steps".into()))?.to_string(),
            None,
        ),
        PrefixMode::Critique => {
            let text = match given {
                Some(t) => t.to_string(),
                None => critique(lm, input, max_new_tokens).await?,
            };
            (critique_before_verdict(&text), Some(text))
        }
    };
    let query = verdict_query(lm, input, &assistant)?;
    Ok((verdict_distribution(lm, query).await?, critique_text))
}

/// Appraises one record with one model.
pub async fn appraise_record(lm: &LanguageModel, record: &Annotation, options: &AppraiseOptions) -> Result<ModelAppraisal> {
    let (example, _) = build_example(lm, record, lm.config.max_position_embeddings)?;
    let (nll, tokens) = match example {
        Some(e) => {
            let sum = read_f32(completion_nll_sum(&lm.model, &[&e], lm.tokenizer.pad_id(), &lm.device)?).await?[0] as f64;
            (Some(sum / e.targets() as f64), e.targets())
        }
        None => (None, 0),
    };
    let input = AppreciationInput::of(record);
    // Only the reasoning mode is given text: the critique mode writes its own.
    let given = (options.mode == PrefixMode::Reasoning).then(|| reasoning_text(record));
    let (verdict, critique) = judge(lm, &input, options.mode, given.as_deref(), options.max_new_tokens).await?;
    let parsed_score = critique.as_deref().and_then(parse_verdict_score);
    Ok(ModelAppraisal { verdict, nll, tokens, critique, parsed_score })
}

/// One record in an [`AppreciationReport`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordReport {
    pub id: String,
    pub expert_score: u8,
    pub base: ModelAppraisal,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuned: Option<ModelAppraisal>,
}

/// One model over the records.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelSummary {
    /// Token-weighted mean NLL of the expert responses, nats per token.
    pub nll_per_token: Option<f64>,
    pub agreement: Agreement,
    /// Critiques whose text held a parseable verdict (critique mode).
    pub parsed: usize,
}

/// The figures over all records.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppreciationSummary {
    pub mode: PrefixMode,
    pub records: usize,
    pub base: ModelSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuned: Option<ModelSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuned_minus_base: Option<AgreementDifference>,
    pub bootstrap_resamples: usize,
    pub seed: u64,
}

/// What `cqa appreciate --json` prints (docs/appreciation-format.md).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppreciationReport {
    pub records: Vec<RecordReport>,
    pub summary: AppreciationSummary,
}

fn judged(records: &[Annotation], appraisals: &[ModelAppraisal]) -> Vec<Judged> {
    records
        .iter()
        .zip(appraisals)
        .map(|(r, a)| Judged {
            expert: r.verdict.score as f64,
            expected: a.verdict.expected,
            p_expert: a.verdict.p[r.verdict.score as usize - 1],
        })
        .collect()
}

fn model_summary(records: &[Annotation], appraisals: &[ModelAppraisal]) -> ModelSummary {
    let tokens: usize = appraisals.iter().filter(|a| a.nll.is_some()).map(|a| a.tokens).sum();
    let nll_sum: f64 = appraisals.iter().filter_map(|a| a.nll.map(|n| n * a.tokens as f64)).sum();
    ModelSummary {
        nll_per_token: (tokens > 0).then(|| nll_sum / tokens as f64),
        agreement: agreement::agreement(&judged(records, appraisals)),
        parsed: appraisals.iter().filter(|a| a.parsed_score.is_some()).count(),
    }
}

impl AppreciationReport {
    /// Summarises per-record appraisals (base, and tuned in the same record order).
    pub fn new(records: &[Annotation], base: Vec<ModelAppraisal>, tuned: Option<Vec<ModelAppraisal>>, options: &AppraiseOptions) -> Self {
        let difference = tuned.as_ref().map(|t| {
            let resamples = agreement::resample_indices(records.len(), options.bootstrap, options.seed);
            agreement::paired_difference(&judged(records, &base), &judged(records, t), &resamples, options.level)
        });
        let summary = AppreciationSummary {
            mode: options.mode,
            records: records.len(),
            base: model_summary(records, &base),
            tuned: tuned.as_deref().map(|t| model_summary(records, t)),
            tuned_minus_base: difference,
            bootstrap_resamples: options.bootstrap,
            seed: options.seed,
        };
        let mut tuned = tuned.map(Vec::into_iter);
        let rows = records
            .iter()
            .zip(base)
            .map(|(r, b)| RecordReport { id: r.id.clone(), expert_score: r.verdict.score, base: b, tuned: tuned.as_mut().and_then(Iterator::next) })
            .collect();
        AppreciationReport { records: rows, summary }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_that_would_trap_or_exhaust_memory_are_refused() {
        assert!(AppraiseOptions::default().validate().is_ok());
        for level in [-2.0, 0.0, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            let err = AppraiseOptions { level, ..Default::default() }.validate().unwrap_err().to_string();
            assert!(err.contains("confidence level"), "{level}: {err}");
        }
        let err = AppraiseOptions { bootstrap: MAX_BOOTSTRAP + 1, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("bootstrap"), "{err}");
        let err = AppraiseOptions { max_new_tokens: 1 << 40, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("critique"), "{err}");
    }
}
