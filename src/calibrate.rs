//! The Calibrated Surprise benchmark: ΔI = H(X) − H(X|Y) from the model's own log-probs, on
//! literary items and a factual control group, and Δ(ΔI) between a tuned and a base model.
//!
//! - H(X) is the surprisal (bits) of the passage tokens with no constraint: exactly what
//!   `score(passage)` gives. Without BOS the first passage token cannot be scored, so it is left
//!   out of H(X|Y) as well: both sums run over the same tokens.
//! - H(X|Y) scores the same passage token ids after a prompt stating Y.
//!
//! The file format is documented in `docs/calibration-format.md`.

use crate::data::jsonl_lines;
use crate::error::{Error, Result};
use crate::eval::score;
use crate::loader::LanguageModel;
use crate::stats::{PairedSummary, paired_summary};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    Literary,
    Factual,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Literary => "literary",
            Group::Factual => "factual",
        }
    }
}

/// One benchmark item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchItem {
    pub id: String,
    pub group: Group,
    /// Y: author intent + audience expectation + reality logic (or the factual framing).
    pub constraint: String,
    /// X.
    pub passage: String,
    /// A cliché-ridden or miscalibrated variant of X.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// Reads benchmark JSONL, reporting every bad line (1-based) at once.
pub fn parse_benchmark(bytes: &[u8]) -> Result<Vec<BenchItem>> {
    let mut items: Vec<BenchItem> = Vec::new();
    // A set, not a scan of `items`: a large file must not take quadratic time.
    let mut ids = std::collections::HashSet::new();
    let mut problems = Vec::new();
    for (line, text) in jsonl_lines(bytes) {
        let text = match text {
            Ok(t) => t,
            Err(message) => {
                problems.push(format!("line {line}: {message}"));
                continue;
            }
        };
        match serde_json::from_str::<BenchItem>(text) {
            Ok(item) if item.passage.trim().is_empty() => problems.push(format!("line {line}: `passage` is empty")),
            Ok(item) if item.constraint.trim().is_empty() => problems.push(format!("line {line}: `constraint` is empty")),
            Ok(item) if ids.contains(&item.id) => problems.push(format!("line {line}: `id` `{}` is used twice", item.id)),
            Ok(item) => {
                ids.insert(item.id.clone());
                items.push(item)
            }
            Err(e) => problems.push(format!("line {line}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(Error::Input(format!("the benchmark file has {} bad lines:\n{}", problems.len(), problems.join("\n"))));
    }
    if items.is_empty() {
        return Err(Error::Input("the benchmark file has no items".into()));
    }
    Ok(items)
}

/// The prompt that states Y before the passage.
pub fn constraint_prompt(constraint: &str) -> String {
    format!("{}\n\n", constraint.trim())
}

/// One model's surprisal of one passage, with and without the constraint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Surprisal {
    pub h_x_bits: f64,
    pub h_x_given_y_bits: f64,
    pub delta_i_bits: f64,
    /// The scored passage token ids (identical for every model compared).
    #[serde(skip)]
    pub token_ids: Vec<u32>,
    /// Per scored token: ln p(token | prefix) and ln p(token | Y, prefix).
    #[serde(skip)]
    pub logprobs_x: Vec<f32>,
    #[serde(skip)]
    pub logprobs_x_given_y: Vec<f32>,
}

impl Surprisal {
    pub fn n_tokens(&self) -> usize {
        self.logprobs_x.len()
    }
}

fn bits(logprobs: &[f32]) -> f64 {
    -logprobs.iter().map(|&l| l as f64).sum::<f64>() / std::f64::consts::LN_2
}

/// H(X), H(X|Y) and ΔI of `passage` under `lm`.
pub async fn surprisal(lm: &LanguageModel, constraint: &str, passage: &str) -> Result<Surprisal> {
    let alone = score(lm, passage, None).await?;
    let given = score(lm, passage, Some(&constraint_prompt(constraint))).await?;
    if alone.text_ids != given.text_ids {
        return Err(Error::Input("the passage tokenized differently with and without the constraint".into()));
    }
    // H(X) skips the first token when nothing precedes it: skip it in H(X|Y) too.
    let skipped = given.logprobs.len() - alone.logprobs.len();
    let logprobs_x_given_y = given.logprobs[skipped..].to_vec();
    let token_ids = alone.text_ids[skipped..].to_vec();
    let h_x_bits = alone.total_bits;
    let h_x_given_y_bits = bits(&logprobs_x_given_y);
    Ok(Surprisal {
        h_x_bits,
        h_x_given_y_bits,
        delta_i_bits: h_x_bits - h_x_given_y_bits,
        token_ids,
        logprobs_x: alone.logprobs,
        logprobs_x_given_y,
    })
}

/// Everything measured for one item and one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMeasures {
    pub passage: Surprisal,
    pub degraded: Option<Surprisal>,
}

impl ModelMeasures {
    /// ΔI(passage) − ΔI(degraded), in bits.
    pub fn quality_contrast_bits(&self) -> Option<f64> {
        self.degraded.as_ref().map(|d| self.passage.delta_i_bits - d.delta_i_bits)
    }
}

pub async fn measure_item(lm: &LanguageModel, item: &BenchItem) -> Result<ModelMeasures> {
    let passage = surprisal(lm, &item.constraint, &item.passage).await?;
    let degraded = match &item.degraded {
        Some(text) => Some(surprisal(lm, &item.constraint, text).await?),
        None => None,
    };
    Ok(ModelMeasures { passage, degraded })
}

/// One item's measurements, base and (optionally) tuned; [`ItemResult::report`] is what is printed.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemResult {
    pub id: String,
    pub group: Group,
    pub base: ModelMeasures,
    pub tuned: Option<ModelMeasures>,
}

impl ItemResult {
    pub fn n_tokens(&self) -> usize {
        self.base.passage.n_tokens()
    }

    /// Δ(ΔI) = ΔI(tuned) − ΔI(base).
    pub fn delta_delta_i_bits(&self) -> Option<f64> {
        self.tuned.as_ref().map(|t| t.passage.delta_i_bits - self.base.passage.delta_i_bits)
    }

    /// Per passage token: ln p_tuned − ln p_base, given Y (the heatmap of where expectations moved).
    pub fn token_shift(&self) -> Option<Vec<f32>> {
        self.tuned.as_ref().map(|t| {
            t.passage.logprobs_x_given_y.iter().zip(&self.base.passage.logprobs_x_given_y).map(|(a, b)| a - b).collect()
        })
    }

    /// The item as reports carry it; `with_tokens` adds the scored ids and per-token log-probs.
    pub fn report(&self, with_tokens: bool) -> ItemReport {
        let measures = |m: &ModelMeasures| MeasuresReport {
            h_x_bits: m.passage.h_x_bits,
            h_x_given_y_bits: m.passage.h_x_given_y_bits,
            delta_i_bits: m.passage.delta_i_bits,
            logprobs_x: with_tokens.then(|| m.passage.logprobs_x.clone()),
            logprobs_x_given_y: with_tokens.then(|| m.passage.logprobs_x_given_y.clone()),
        };
        let quality_contrast_bits = self.base.quality_contrast_bits().map(|base| QualityContrast {
            base,
            tuned: self.tuned.as_ref().and_then(ModelMeasures::quality_contrast_bits),
        });
        ItemReport {
            id: self.id.clone(),
            group: self.group,
            n_tokens: self.n_tokens(),
            base: measures(&self.base),
            tuned: self.tuned.as_ref().map(measures),
            delta_delta_i_bits: self.delta_delta_i_bits(),
            quality_contrast_bits,
            token_ids: with_tokens.then(|| self.base.passage.token_ids.clone()),
            token_shift: if with_tokens { self.token_shift() } else { None },
        }
    }
}

/// One model's figures for one item in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasuresReport {
    pub h_x_bits: f64,
    pub h_x_given_y_bits: f64,
    pub delta_i_bits: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs_x: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs_x_given_y: Option<Vec<f32>>,
}

/// ΔI(passage) − ΔI(degraded), per model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityContrast {
    pub base: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<f64>,
}

/// One item of a [`CalibrationReport`]: the shape `cqa calibrate --json` prints and the browser
/// receives, documented in `docs/calibration-format.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemReport {
    pub id: String,
    pub group: Group,
    pub n_tokens: usize,
    pub base: MeasuresReport,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<MeasuresReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta_delta_i_bits: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_contrast_bits: Option<QualityContrast>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<Vec<u32>>,
    /// Per passage token: ln p_tuned − ln p_base, given Y.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_shift: Option<Vec<f32>>,
}

/// The whole benchmark report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationReport {
    pub items: Vec<ItemReport>,
    /// Per group: the statistics of Δ(ΔI) when a tuned model was run, else of the base ΔI.
    pub groups: BTreeMap<String, PairedSummary>,
}

impl CalibrationReport {
    pub fn new(items: Vec<ItemReport>) -> Self {
        let groups = group_summaries(&items);
        CalibrationReport { items, groups }
    }
}

/// Scores one item with the base model and, if given, the tuned one, checking that both scored
/// the same token ids.
pub async fn run_item(base: &LanguageModel, tuned: Option<&LanguageModel>, item: &BenchItem) -> Result<ItemResult> {
    let base_measures = measure_item(base, item).await?;
    let tuned_measures = match tuned {
        Some(lm) => {
            let m = measure_item(lm, item).await?;
            if m.passage.token_ids != base_measures.passage.token_ids {
                return Err(Error::Input(format!(
                    "item `{}`: the tuned model scored different token ids than the base model; they must share a tokenizer",
                    item.id
                )));
            }
            Some(m)
        }
        None => None,
    };
    Ok(ItemResult { id: item.id.clone(), group: item.group, base: base_measures, tuned: tuned_measures })
}

/// Per group: the statistics of Δ(ΔI) when a tuned model was run, else of the base ΔI. Items
/// whose value is not finite are left out (a failed score never poisons a group).
pub fn group_summaries(items: &[ItemReport]) -> BTreeMap<String, PairedSummary> {
    let mut out = BTreeMap::new();
    for group in [Group::Literary, Group::Factual] {
        let values: Vec<f64> = items
            .iter()
            .filter(|r| r.group == group)
            .map(|r| r.delta_delta_i_bits.unwrap_or(r.base.delta_i_bits))
            .filter(|v| v.is_finite())
            .collect();
        if !values.is_empty() {
            out.insert(group.name().to_string(), paired_summary(&values));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_benchmark_line_is_listed() {
        let text = concat!(
            r#"{"id":"a","group":"literary","constraint":"Y","passage":"X"}"#, "\n",
            r#"{"id":"b","group":"poetry","constraint":"Y","passage":"X"}"#, "\n",
            "\n",
            r#"{"id":"a","group":"factual","constraint":"Y","passage":"X"}"#, "\n",
            r#"{"id":"c","group":"factual","constraint":"Y","passage":" "}"#, "\n",
        );
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend(b"{\"id\":\"\xff\"}\n");
        let err = parse_benchmark(&bytes).unwrap_err().to_string();
        assert!(err.contains("4 bad lines"), "{err}");
        for want in ["line 2: unknown variant `poetry`", "line 4: `id` `a` is used twice", "line 5: `passage` is empty", "line 6: not valid UTF-8"] {
            assert!(err.contains(want), "missing {want:?} in {err}");
        }
        let good = parse_benchmark(text.lines().next().unwrap().as_bytes()).unwrap();
        assert_eq!(good[0].group, Group::Literary);
        assert!(good[0].degraded.is_none());
    }
}
