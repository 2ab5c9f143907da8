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
            Ok(item) if items.iter().any(|o| o.id == item.id) => {
                problems.push(format!("line {line}: `id` `{}` is used twice", item.id))
            }
            Ok(item) => items.push(item),
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

/// One item's result, as `cqa calibrate --json` prints it.
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

    pub fn to_json(&self, with_tokens: bool) -> serde_json::Value {
        let measures = |m: &ModelMeasures| {
            serde_json::json!({
                "h_x_bits": m.passage.h_x_bits,
                "h_x_given_y_bits": m.passage.h_x_given_y_bits,
                "delta_i_bits": m.passage.delta_i_bits,
            })
        };
        let mut v = serde_json::json!({
            "id": self.id,
            "group": self.group,
            "n_tokens": self.n_tokens(),
            "base": measures(&self.base),
        });
        if let Some(t) = &self.tuned {
            v["tuned"] = measures(t);
            v["delta_delta_i_bits"] = serde_json::json!(self.delta_delta_i_bits());
        }
        if let Some(c) = self.base.quality_contrast_bits() {
            let mut contrast = serde_json::json!({ "base": c });
            if let Some(t) = self.tuned.as_ref().and_then(ModelMeasures::quality_contrast_bits) {
                contrast["tuned"] = serde_json::json!(t);
            }
            v["quality_contrast_bits"] = contrast;
        }
        if with_tokens {
            v["token_ids"] = serde_json::json!(self.base.passage.token_ids);
            v["base"]["logprobs_x"] = serde_json::json!(self.base.passage.logprobs_x);
            v["base"]["logprobs_x_given_y"] = serde_json::json!(self.base.passage.logprobs_x_given_y);
            if let Some(t) = &self.tuned {
                v["tuned"]["logprobs_x"] = serde_json::json!(t.passage.logprobs_x);
                v["tuned"]["logprobs_x_given_y"] = serde_json::json!(t.passage.logprobs_x_given_y);
                v["token_shift"] = serde_json::json!(self.token_shift());
            }
        }
        v
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

/// Per group: the statistics of Δ(ΔI) when a tuned model was run, else of the base ΔI.
pub fn group_summaries(results: &[ItemResult]) -> BTreeMap<String, PairedSummary> {
    let mut out = BTreeMap::new();
    for group in [Group::Literary, Group::Factual] {
        let values: Vec<f64> = results
            .iter()
            .filter(|r| r.group == group)
            .map(|r| r.delta_delta_i_bits().unwrap_or(r.base.passage.delta_i_bits))
            .collect();
        if !values.is_empty() {
            out.insert(group.name().to_string(), paired_summary(&values));
        }
    }
    out
}

/// The whole report, as `cqa calibrate --json` prints it.
pub fn report_json(results: &[ItemResult], with_tokens: bool) -> serde_json::Value {
    let groups: serde_json::Map<String, serde_json::Value> = group_summaries(results)
        .into_iter()
        .map(|(name, s)| {
            (
                name,
                serde_json::json!({
                    "n": s.n, "mean": s.mean, "median": s.median, "sd": finite(s.sd),
                    "wilcoxon_p": s.wilcoxon_p, "cohens_d": s.cohens_d,
                }),
            )
        })
        .collect();
    serde_json::json!({
        "items": results.iter().map(|r| r.to_json(with_tokens)).collect::<Vec<_>>(),
        "groups": groups,
    })
}

/// JSON has no NaN: report an undefined statistic as null.
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
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
