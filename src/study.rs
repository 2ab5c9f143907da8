//! The study document: one JSON object that holds a lab's whole study, the records (several
//! annotators' included), the benchmark, every adapter's settings and loss history, the
//! calibration and agreement reports, and the model each was made with (name, size, SHA-256).
//! It is `study.json` inside a `*.cqa-study.zip`, beside the adapters' weights, and the input of
//! the HTML report (`report`), so the page and `cqa report` write the same file from it.
//! The format is documented in `docs/study-format.md`.

use crate::calibrate::BenchItem;
use crate::data::Annotation;
use crate::error::{Error, Result};
use crate::raters::ModelScores;
use crate::stats::PairedSummary;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The value of `format` in every study document.
pub const STUDY_FORMAT: &str = "cqa-study";
/// The study document version this build reads and writes.
pub const STUDY_VERSION: u64 = 1;
/// Bounds on what a study may hold: an input like any other.
pub const MAX_STUDY_RECORDS: usize = 20_000;
pub const MAX_STUDY_ADAPTERS: usize = 200;
pub const MAX_HISTORY_POINTS: usize = 200_000;

/// A model file, named so a study can say which file to open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    pub name: String,
    /// Bytes; 0 when not recorded.
    #[serde(default)]
    pub size: u64,
    /// Lower-case hex SHA-256 of the file, when recorded (a GGUF file has one; HF shards none).
    #[serde(default)]
    pub sha256: Option<String>,
}

/// One point of a loss curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    pub step: u64,
    pub loss: f64,
}

/// Training loss and held-out loss by step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossHistory {
    #[serde(default)]
    pub steps: Vec<LossPoint>,
    #[serde(default)]
    pub held_out: Vec<LossPoint>,
}

/// An adapter: its settings and curve here, its weights in the zip under `weights`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyAdapter {
    pub name: String,
    #[serde(default)]
    pub created: String,
    /// The model it was trained on.
    #[serde(default)]
    pub model: Option<ModelRef>,
    /// The training settings (`TrainConfig`'s fields, as the run used them).
    #[serde(default)]
    pub settings: serde_json::Value,
    #[serde(default)]
    pub history: LossHistory,
    /// Ids of the records it trained on and held out.
    #[serde(default)]
    pub trained_ids: Vec<String>,
    #[serde(default)]
    pub held_out_ids: Vec<String>,
    /// The PEFT `adapter_config.json` text and the zip entry holding `adapter_model.safetensors`.
    #[serde(default)]
    pub config_json: Option<String>,
    #[serde(default)]
    pub weights: Option<String>,
    /// SHA-256 of the weights entry, checked on import.
    #[serde(default)]
    pub weights_sha256: Option<String>,
}

/// One model's appraisal of a record, as the reports keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Appraised {
    pub expected: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub critique: Option<String>,
}

/// One record of an appreciation report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppraisedRecord {
    pub id: String,
    #[serde(default)]
    pub expert_score: Option<u8>,
    pub base: Appraised,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuned: Option<Appraised>,
}

/// The agreement-with-the-expert report (`cqa appreciate --json`, or the page's export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppreciationDoc {
    /// The adapter measured as `tuned`, by name.
    #[serde(default)]
    pub adapter: Option<String>,
    #[serde(default)]
    pub summary: serde_json::Value,
    pub records: Vec<AppraisedRecord>,
}

/// A calibration report (`cqa calibrate --json`, or the page's export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationDoc {
    #[serde(default)]
    pub adapter: Option<String>,
    pub groups: BTreeMap<String, GroupSummary>,
    #[serde(default)]
    pub items: Vec<serde_json::Value>,
}

/// [`PairedSummary`] as read back (its method is a string here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub n: usize,
    pub mean: Option<f64>,
    pub median: Option<f64>,
    pub sd: Option<f64>,
    pub wilcoxon_p: Option<f64>,
    pub wilcoxon_method: String,
    pub cohens_d: Option<f64>,
}

impl From<&PairedSummary> for GroupSummary {
    fn from(s: &PairedSummary) -> Self {
        let finite = |x: f64| x.is_finite().then_some(x);
        GroupSummary {
            n: s.n,
            mean: finite(s.mean),
            median: finite(s.median),
            sd: finite(s.sd),
            wilcoxon_p: s.wilcoxon_p,
            wilcoxon_method: s.wilcoxon_method.to_string(),
            cohens_d: s.cohens_d,
        }
    }
}

/// The reports a study carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StudyReports {
    #[serde(default)]
    pub appreciation: Option<AppreciationDoc>,
    #[serde(default)]
    pub calibration: Option<CalibrationDoc>,
}

/// Which program wrote the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppInfo {
    pub name: String,
    pub version: String,
}

/// The study document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Study {
    pub format: String,
    pub version: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub created: String,
    #[serde(default)]
    pub app: Option<AppInfo>,
    #[serde(default)]
    pub model: Option<ModelRef>,
    pub records: Vec<Annotation>,
    #[serde(default)]
    pub benchmark: Vec<BenchItem>,
    #[serde(default)]
    pub adapters: Vec<StudyAdapter>,
    #[serde(default)]
    pub reports: StudyReports,
    /// Bootstrap settings of the agreement figures.
    #[serde(default)]
    pub agreement_options: crate::raters::AgreementOptions,
}

impl Study {
    /// Reads a study document, refusing a foreign file, a newer version and an oversized one.
    pub fn parse(bytes: &[u8]) -> Result<Study> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Input(format!("the study is not valid JSON ({e})")))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(STUDY_FORMAT) => {}
            Some(other) => return Err(Error::Input(format!("this is a `{other}` file, not a study (`format` must be `{STUDY_FORMAT}`)"))),
            None => return Err(Error::Input(format!("this is not a study: it has no `format: \"{STUDY_FORMAT}\"`"))),
        }
        match value.get("version").and_then(|v| v.as_u64()) {
            Some(STUDY_VERSION) => {}
            v => {
                return Err(Error::Input(format!(
                    "study version {} is not supported; this build reads version {STUDY_VERSION}",
                    v.map_or("(missing)".into(), |v| v.to_string())
                )));
            }
        }
        // The records go through the same checks as a JSONL import, so a bad one is named.
        if let Some(records) = value.get("records").and_then(|r| r.as_array()) {
            if records.len() > MAX_STUDY_RECORDS {
                return Err(Error::Input(format!("the study holds {} records, more than the {MAX_STUDY_RECORDS} allowed", records.len())));
            }
            let jsonl: String = records.iter().map(|r| format!("{r}\n")).collect();
            let report = crate::data::parse_annotations(jsonl.as_bytes());
            if let Some(e) = report.errors.first() {
                return Err(Error::Input(format!(
                    "record {} of the study is not a valid annotation: {}{}",
                    e.line,
                    e.field.as_deref().map(|f| format!("`{f}`: ")).unwrap_or_default(),
                    e.message
                )));
            }
        }
        let study: Study = serde_json::from_value(value).map_err(|e| Error::Input(format!("bad study: {e}")))?;
        if study.adapters.len() > MAX_STUDY_ADAPTERS {
            return Err(Error::Input(format!("the study holds {} adapters, more than the {MAX_STUDY_ADAPTERS} allowed", study.adapters.len())));
        }
        let points: usize = study.adapters.iter().map(|a| a.history.steps.len() + a.history.held_out.len()).sum();
        if points > MAX_HISTORY_POINTS {
            return Err(Error::Input(format!("the study's loss histories hold {points} points, more than the {MAX_HISTORY_POINTS} allowed")));
        }
        study.agreement_options.check()?;
        Ok(study)
    }

    /// The models as raters: base and tuned from the appreciation report, the tuned one not
    /// rating the works of the records its adapter trained on.
    pub fn model_scores(&self) -> Vec<ModelScores> {
        let Some(doc) = &self.reports.appreciation else { return vec![] };
        let mut base = ModelScores { name: "base".into(), ..ModelScores::default() };
        let mut tuned = ModelScores { name: doc.adapter.clone().unwrap_or_else(|| "tuned".into()), ..ModelScores::default() };
        for r in &doc.records {
            base.scores.insert(r.id.clone(), r.base.expected);
            if let Some(t) = &r.tuned {
                tuned.scores.insert(r.id.clone(), t.expected);
            }
        }
        if let Some(adapter) = self.adapters.iter().find(|a| Some(&a.name) == doc.adapter.as_ref()) {
            tuned.trained_on = self.records.iter().filter(|r| adapter.trained_ids.contains(&r.id)).cloned().collect();
        }
        let mut out = vec![base];
        if !tuned.scores.is_empty() {
            out.push(tuned);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"schema": 1, "id": "a1", "work": "One.", "brief": "", "audience": "", "genre": "", "reasoning": [{"dimension": "craft", "text": "t"}], "verdict": {"score": 7, "summary": ""}, "provenance": {"expert": "Ada", "knowledge_engineer": "", "session": "", "date": ""}, "created": "", "updated": ""}"#;

    fn doc(records: &str, extra: &str) -> String {
        format!(r#"{{"format": "cqa-study", "version": 1, "records": [{records}]{extra}}}"#)
    }

    #[test]
    fn refuses_foreign_files_newer_versions_and_bad_records() {
        let err = |text: &str| Study::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(err(r#"{"format": "something-else", "version": 1}"#).contains("`something-else` file"));
        assert!(err(r#"{"records": []}"#).contains("no `format"));
        assert!(err(r#"{"format": "cqa-study", "version": 2, "records": []}"#).contains("version 2 is not supported"));
        let bad = RECORD.replace(r#""score": 7"#, r#""score": 11"#);
        let e = err(&doc(&format!("{RECORD}, {}", bad.replace("a1", "a2")), ""));
        assert!(e.contains("record 2") && e.contains("verdict.score"), "{e}");
        assert!(err(&doc(RECORD, r#", "agreement_options": {"level": 1.5}"#)).contains("confidence level"));
        assert!(err("not json").contains("not valid JSON"));
    }

    #[test]
    fn the_tuned_model_does_not_rate_what_its_adapter_trained_on() {
        let text = doc(
            &format!("{RECORD}, {}", RECORD.replace("a1", "b1").replace("Ada", "Ben")),
            r#", "adapters": [{"name": "r4", "trained_ids": ["a1"]}],
               "reports": {"appreciation": {"adapter": "r4", "records": [
                 {"id": "a1", "base": {"expected": 5.0}, "tuned": {"expected": 6.0}},
                 {"id": "b1", "base": {"expected": 4.0}, "tuned": {"expected": 7.0}}]}}"#,
        );
        let study = Study::parse(text.as_bytes()).unwrap();
        let models = study.model_scores();
        assert_eq!(models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["base", "r4"]);
        assert_eq!(models[1].trained_on.len(), 1);
        let html = crate::report::render_html(&study);
        // a1 and b1 are one work; the adapter trained on a1, so r4 rates nothing.
        assert!(html.contains("It rated 0 works; 1 left out because it trained on them."), "{html}");
        assert!(html.contains("<h3>b1</h3>"), "the largest verdict shift is shown first");
        assert!(!html.contains("http://") || html.matches("http://").count() == html.matches("http://www.w3.org/2000/svg").count());
    }
}
