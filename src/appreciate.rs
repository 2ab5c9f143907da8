//! Appreciation evaluation on held-out annotations: how likely the model finds the expert's
//! reasoning (NLL per token), and how well its own critique's verdict agrees with the expert's
//! score (Spearman ρ, share within ±1).

use crate::data::Annotation;
use crate::error::Result;
use crate::generate::{SamplingParams, generate};
use crate::loader::LanguageModel;
use crate::stats::spearman;
use crate::train::{build_example, token_loss_sum};
use regex::Regex;
use serde::Serialize;
use std::sync::OnceLock;

/// The 1–10 verdict score in a model's critique, if one can be found.
///
/// Preference order: a score after the last "verdict"/"score"/"rating"/"grade" label, then the
/// last `N/10` or `N out of 10` anywhere, then a number word ("seven out of ten"). Decimals
/// round half up (7.5 → 8); anything outside 1–10 is ignored.
pub fn parse_verdict_score(text: &str) -> Option<u8> {
    static LABELLED: OnceLock<Regex> = OnceLock::new();
    static OUT_OF_TEN: OnceLock<Regex> = OnceLock::new();
    static WORDS: OnceLock<Regex> = OnceLock::new();
    // `\b` keeps "11/10" from reading as "1/10".
    let number = r"\b(10|[0-9](?:[.,][0-9]+)?)";
    let labelled = LABELLED.get_or_init(|| {
        Regex::new(&format!(
            r"(?i)\b(?:verdict|overall score|score|rating|grade|mark)\b[^0-9\n]{{0,40}}?{number}(?:\s*(?:/|out of)\s*10\b)?(?:[^0-9]|$)"
        ))
        .expect("valid regex")
    });
    let out_of_ten = OUT_OF_TEN
        .get_or_init(|| Regex::new(&format!(r"(?i){number}\s*(?:/|out of|of)\s*10\b")).expect("valid regex"));
    let words = WORDS.get_or_init(|| {
        Regex::new(r"(?i)\b(one|two|three|four|five|six|seven|eight|nine|ten)\s+(?:/|out of)\s+(?:10|ten)\b").expect("valid regex")
    });
    let to_score = |s: &str| -> Option<u8> {
        let v: f64 = s.replace(',', ".").parse().ok()?;
        let r = (v + 0.5).floor();
        (1.0..=10.0).contains(&r).then_some(r as u8)
    };
    // A labelled score wins; the last one, as models often restate it at the end.
    if let Some(s) = labelled.captures_iter(text).filter_map(|c| to_score(&c[1])).last() {
        return Some(s);
    }
    if let Some(s) = out_of_ten.captures_iter(text).filter_map(|c| to_score(&c[1])).last() {
        return Some(s);
    }
    let word = words.captures_iter(text).last()?;
    let names = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    names.iter().position(|n| n.eq_ignore_ascii_case(&word[1])).map(|i| i as u8 + 1)
}

/// One model on one held-out record.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RecordAppraisal {
    /// Mean NLL (nats per token) of the expert's reasoning and verdict.
    pub nll: f64,
    pub tokens: usize,
    /// The model's own critique (greedy) and the score parsed from it.
    pub critique: String,
    pub score: Option<u8>,
}

/// One model over the held-out set.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AppraisalSummary {
    /// Token-weighted mean NLL of the expert responses, nats per token.
    pub nll_per_token: f64,
    /// Spearman ρ between parsed and expert scores (records with a parsed score).
    pub spearman: Option<f64>,
    /// Share of all records whose parsed score is within ±1 of the expert's.
    pub within_1: f64,
    pub parsed: usize,
    pub records: usize,
}

/// Appraises `records` with one model. `max_new_tokens` bounds each critique.
pub async fn appraise(lm: &LanguageModel, records: &[Annotation], max_new_tokens: usize) -> Result<Vec<RecordAppraisal>> {
    let pad = lm.tokenizer.stop_ids().first().copied().unwrap_or(0);
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let (example, _) = build_example(lm, record, lm.config.max_position_embeddings)?;
        let (nll, tokens) = match example {
            Some(e) => {
                let sum = token_loss_sum(&lm.model, &[&e], pad, &lm.device)?;
                let sum = crate::generate::read_f32(sum).await?[0] as f64;
                (sum / e.targets() as f64, e.targets())
            }
            None => (f64::NAN, 0),
        };
        let prompt = lm.tokenizer.apply_chat_template(&record.prompt_messages(), true)?;
        let ids = lm.tokenizer.encode(&prompt, false)?;
        let params = SamplingParams { max_new_tokens, ..SamplingParams::default() };
        let mut critique = String::new();
        generate(lm, ids, params, |piece| critique.push_str(piece)).await?;
        let score = parse_verdict_score(&critique);
        out.push(RecordAppraisal { nll, tokens, critique, score });
    }
    Ok(out)
}

pub fn summarize(records: &[Annotation], appraisals: &[RecordAppraisal]) -> AppraisalSummary {
    let tokens: usize = appraisals.iter().map(|a| a.tokens).sum();
    let nll_sum: f64 = appraisals.iter().filter(|a| a.tokens > 0).map(|a| a.nll * a.tokens as f64).sum();
    let pairs: Vec<(f64, f64)> = records
        .iter()
        .zip(appraisals)
        .filter_map(|(r, a)| a.score.map(|s| (r.verdict.score as f64, s as f64)))
        .collect();
    let (expert, model): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
    let within = pairs.iter().filter(|(e, m)| (e - m).abs() <= 1.0).count();
    AppraisalSummary {
        nll_per_token: nll_sum / tokens.max(1) as f64,
        spearman: spearman(&expert, &model),
        within_1: within as f64 / records.len().max(1) as f64,
        parsed: pairs.len(),
        records: records.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_verdict_score as p;

    #[test]
    fn verdicts_in_the_trained_format() {
        assert_eq!(p("Reasoning:\n1. [craft] ...\n\nVerdict: 7/10. Solid."), Some(7));
        assert_eq!(p("Verdict: 10/10. Perfect."), Some(10));
        assert_eq!(p("**Verdict:** 3 / 10 — flat."), Some(3));
    }

    #[test]
    fn messy_model_outputs() {
        assert_eq!(p("I would rate this passage 8 out of 10 because..."), Some(8));
        assert_eq!(p("Score: 6\nThe imagery is strong."), Some(6));
        assert_eq!(p("Overall score - 7.5/10"), Some(8));
        assert_eq!(p("Rating: 4,5 out of 10"), Some(5));
        assert_eq!(p("It deserves a solid seven out of ten."), Some(7));
        assert_eq!(p("Verdict: 6/10.\n\nOn reflection, verdict: 5/10."), Some(5));
        // A labelled score beats an incidental fraction elsewhere.
        assert_eq!(p("In 3/10 of the lines the rhythm falters. Verdict: 8/10"), Some(8));
        // Years, counts and list numbers are not scores.
        assert_eq!(p("Written in 1843, in 5 parts; 2 characters."), None);
        assert_eq!(p("1. [craft] The rhythm is off.\n2. [reality] Odd."), None);
        assert_eq!(p("Verdict: 11/10!"), None);
        assert_eq!(p("Verdict: 0/10"), None);
        assert_eq!(p(""), None);
        assert_eq!(p("The verdict is clear: 9."), Some(9));
    }
}
