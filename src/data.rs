//! Expert annotations: the record an expert produces in a BC Protocol session, its JSONL
//! import/export with line-numbered validation, and the craft / audience / reality coverage
//! summary. How a record becomes a prompt is `prompt`'s job.
//!
//! The format is documented in `docs/annotation-format.md`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The record format version this build reads and writes.
pub const SCHEMA_VERSION: u64 = 1;

/// What a reasoning step is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// Technique: imagery, rhythm, diction, structure, point of view.
    Craft,
    /// What the intended reader can reasonably expect.
    Audience,
    /// Consistency with the world and the story's own logic.
    Reality,
}

impl Dimension {
    pub const ALL: [Dimension; 3] = [Dimension::Craft, Dimension::Audience, Dimension::Reality];

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Craft => "craft",
            Dimension::Audience => "audience",
            Dimension::Reality => "reality",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReasoningStep {
    pub dimension: Dimension,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// 1–10.
    pub score: u8,
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub expert: String,
    pub knowledge_engineer: String,
    pub session: String,
    /// The session date, `YYYY-MM-DD`.
    pub date: String,
}

/// One expert judgement of one work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Annotation {
    pub schema: u64,
    pub id: String,
    /// A stable name for the work, shared by every annotator's record of it. Without one,
    /// records whose `work` text is the same (whitespace aside) are records of one work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_id: Option<String>,
    /// The passage being judged.
    pub work: String,
    /// The author's intent or assignment.
    pub brief: String,
    /// The intended reader.
    pub audience: String,
    pub genre: String,
    /// The expert's steps, in order.
    pub reasoning: Vec<ReasoningStep>,
    pub verdict: Verdict,
    /// The expert's improved passage, if they wrote one.
    #[serde(default)]
    pub revision: Option<String>,
    pub provenance: Provenance,
    /// RFC 3339 timestamps.
    pub created: String,
    pub updated: String,
}

/// One problem found while importing, tied to its line (1-based) and field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineError {
    pub line: usize,
    /// The JSON path of the bad field, e.g. `reasoning[2].dimension`; `None` for the whole line.
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: `{}`: {}", self.line, field, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// The most problems a report lists; the rest are counted. A 64 MiB file of one-character lines
/// has 33 million bad lines: listed whole, they would fill the wasm heap and every list drawn
/// from them.
pub const MAX_LISTED_ERRORS: usize = 1000;

/// The outcome of reading a JSONL file: the good records (with their line numbers) and the
/// problems (the first [`MAX_LISTED_ERRORS`] listed, all of them counted). Nothing is dropped
/// silently: the caller decides with [`ImportReport::accept`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub records: Vec<(usize, Annotation)>,
    pub errors: Vec<LineError>,
    /// Every problem found, listed or not.
    pub error_count: usize,
    /// The lines with at least one problem.
    pub error_lines: usize,
    #[serde(skip)]
    last_error_line: Option<usize>,
}

impl ImportReport {
    /// Records a problem: listed while fewer than [`MAX_LISTED_ERRORS`] are, counted always.
    /// Lines come in increasing order, so a new line is one past the last listed or counted.
    fn problem(&mut self, error: LineError) {
        if self.last_error_line != Some(error.line) {
            self.error_lines += 1;
            self.last_error_line = Some(error.line);
        }
        self.error_count += 1;
        if self.errors.len() < MAX_LISTED_ERRORS {
            self.errors.push(error);
        }
    }

    /// The records to import. A file with any bad line imports nothing unless `keep_good_lines`,
    /// and the error then lists every problem.
    pub fn accept(self, keep_good_lines: bool) -> Result<Vec<Annotation>> {
        if self.error_count > 0 && !keep_good_lines {
            let list: Vec<String> = self.errors.iter().map(|e| e.to_string()).collect();
            let shown = if self.error_count > self.errors.len() {
                format!("the first {} of {} problems:\n", self.errors.len(), self.error_count)
            } else {
                String::new()
            };
            return Err(Error::Input(format!(
                "{} of the file's lines are not valid annotations, so nothing was imported (keep the {} good ones explicitly if you want them):\n{shown}{}",
                self.error_lines,
                self.records.len(),
                list.join("\n")
            )));
        }
        Ok(self.records.into_iter().map(|(_, r)| r).collect())
    }
}

/// The non-blank lines of a JSONL file as `(1-based line number, text)`, or the UTF-8 problem of
/// a line. A UTF-8 byte-order mark and CRLF endings are accepted.
pub fn jsonl_lines(bytes: &[u8]) -> impl Iterator<Item = (usize, std::result::Result<&str, String>)> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.split(|&b| b == b'\n').enumerate().filter_map(|(index, raw)| {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match std::str::from_utf8(raw) {
            Ok(text) if text.trim().is_empty() => None,
            Ok(text) => Some((index + 1, Ok(text))),
            Err(e) => Some((
                index + 1,
                Err(format!("not valid UTF-8 (bad byte at column {}); save the file as UTF-8", e.valid_up_to() + 1)),
            )),
        }
    })
}

/// Reads annotation JSONL. Blank lines, a UTF-8 BOM and CRLF endings are accepted.
pub fn parse_annotations(bytes: &[u8]) -> ImportReport {
    let mut report = ImportReport::default();
    let mut seen_ids = std::collections::HashMap::new();
    for (line, text) in jsonl_lines(bytes) {
        let text = match text {
            Ok(t) => t,
            Err(message) => {
                report.problem(LineError { line, field: None, message });
                continue;
            }
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                report.problem(LineError { line, field: None, message: format!("not valid JSON ({e})") });
                continue;
            }
        };
        let problems = validate(&value);
        if !problems.is_empty() {
            for (field, message) in problems {
                report.problem(LineError { line, field, message });
            }
            continue;
        }
        match serde_json::from_value::<Annotation>(value) {
            Ok(record) => {
                if let Some(first) = seen_ids.insert(record.id.clone(), line) {
                    report.problem(LineError {
                        line,
                        field: Some("id".into()),
                        message: format!("`{}` is already used on line {first}", record.id),
                    });
                } else {
                    report.records.push((line, record));
                }
            }
            // validate() checks every field serde reads, so this is a safety net.
            Err(e) => report.problem(LineError { line, field: None, message: e.to_string() }),
        }
    }
    report
}

/// Every problem with one record, as `(field path, message)`.
fn validate(v: &Value) -> Vec<(Option<String>, String)> {
    let mut problems = Vec::new();
    let mut bad = |field: &str, msg: &str| problems.push((Some(field.to_string()), msg.to_string()));
    let Some(obj) = v.as_object() else {
        return vec![(None, "expected a JSON object `{…}` for one annotation".into())];
    };
    match obj.get("schema") {
        None => bad("schema", "missing (expected 1)"),
        Some(s) if s.as_u64() == Some(SCHEMA_VERSION) => {}
        Some(s) => bad("schema", &format!("version {s} is not supported; this build reads version {SCHEMA_VERSION}")),
    }
    let string = |field: &str, non_empty: bool| -> Option<String> {
        match obj.get(field) {
            None => Some("missing".into()),
            Some(Value::String(s)) if non_empty && s.trim().is_empty() => Some("must not be empty".into()),
            Some(Value::String(_)) => None,
            Some(_) => Some("must be a string".into()),
        }
    };
    for (field, non_empty) in
        [("id", true), ("work", true), ("brief", false), ("audience", false), ("genre", false), ("created", false), ("updated", false)]
    {
        if let Some(msg) = string(field, non_empty) {
            bad(field, &msg);
        }
    }
    match obj.get("work_id") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.trim().is_empty() => bad("work_id", "must not be empty (leave it out to group by the work's text)"),
        Some(Value::String(_)) => {}
        Some(_) => bad("work_id", "must be a string"),
    }
    match obj.get("reasoning") {
        None => bad("reasoning", "missing (a list of {dimension, text} steps)"),
        Some(Value::Array(steps)) if steps.is_empty() => bad("reasoning", "is empty: a record needs at least one reasoning step"),
        Some(Value::Array(steps)) => {
            for (i, step) in steps.iter().enumerate() {
                let Some(step) = step.as_object() else {
                    bad(&format!("reasoning[{i}]"), "must be an object {dimension, text}");
                    continue;
                };
                match step.get("dimension") {
                    None => bad(&format!("reasoning[{i}].dimension"), "missing (craft, audience or reality)"),
                    Some(Value::String(d)) if ["craft", "audience", "reality"].contains(&d.as_str()) => {}
                    Some(d) => bad(
                        &format!("reasoning[{i}].dimension"),
                        &format!("unknown dimension {d}: use craft, audience or reality"),
                    ),
                }
                match step.get("text") {
                    Some(Value::String(t)) if !t.trim().is_empty() => {}
                    Some(Value::String(_)) => bad(&format!("reasoning[{i}].text"), "must not be empty"),
                    Some(_) => bad(&format!("reasoning[{i}].text"), "must be a string"),
                    None => bad(&format!("reasoning[{i}].text"), "missing"),
                }
            }
        }
        Some(_) => bad("reasoning", "must be a list of {dimension, text} steps"),
    }
    match obj.get("verdict").and_then(|v| v.as_object()) {
        None if obj.contains_key("verdict") => bad("verdict", "must be an object {score, summary}"),
        None => bad("verdict", "missing ({score 1–10, summary})"),
        Some(verdict) => {
            match verdict.get("score") {
                None => bad("verdict.score", "missing (an integer from 1 to 10)"),
                Some(s) => match s.as_u64() {
                    Some(n) if (1..=10).contains(&n) => {}
                    _ => bad("verdict.score", &format!("{s} is not an integer from 1 to 10")),
                },
            }
            match verdict.get("summary") {
                Some(Value::String(_)) => {}
                None => bad("verdict.summary", "missing"),
                Some(_) => bad("verdict.summary", "must be a string"),
            }
        }
    }
    match obj.get("revision") {
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(_) => bad("revision", "must be a string or null"),
    }
    match obj.get("provenance").and_then(|v| v.as_object()) {
        None if obj.contains_key("provenance") => bad("provenance", "must be an object"),
        None => bad("provenance", "missing ({expert, knowledge_engineer, session, date})"),
        Some(p) => {
            for field in ["expert", "knowledge_engineer", "session", "date"] {
                match p.get(field) {
                    Some(Value::String(_)) => {}
                    None => bad(&format!("provenance.{field}"), "missing"),
                    Some(_) => bad(&format!("provenance.{field}"), "must be a string"),
                }
            }
        }
    }
    problems
}

/// Writes records as JSONL, one per line, in the given order.
pub fn annotations_to_jsonl(records: &[Annotation]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).expect("annotations always serialize"));
        out.push('\n');
    }
    out
}

/// Steps and share for one dimension.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DimensionCount {
    pub steps: usize,
    pub share: f64,
}

/// How balanced a set of annotations is across craft / audience / reality.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Coverage {
    pub records: usize,
    pub steps: usize,
    pub dimensions: std::collections::BTreeMap<String, DimensionCount>,
    pub warnings: Vec<String>,
}

/// Below this share of all steps, a dimension is flagged as under-covered.
pub const COVERAGE_WARNING_SHARE: f64 = 0.20;

pub fn coverage(records: &[Annotation]) -> Coverage {
    let steps: Vec<Dimension> = records.iter().flat_map(|r| r.reasoning.iter().map(|s| s.dimension)).collect();
    let total = steps.len();
    let mut dimensions = std::collections::BTreeMap::new();
    let mut warnings = Vec::new();
    for d in Dimension::ALL {
        let n = steps.iter().filter(|&&s| s == d).count();
        let share = if total == 0 { 0.0 } else { n as f64 / total as f64 };
        if total > 0 && share < COVERAGE_WARNING_SHARE {
            warnings.push(format!(
                "{} has {n} of {total} steps ({:.0}%), under {:.0}%: add {} reasoning{}",
                d.name(),
                share * 100.0,
                COVERAGE_WARNING_SHARE * 100.0,
                d.name(),
                match d {
                    Dimension::Craft => "",
                    _ => " — public alignment data rarely covers it",
                }
            ));
        }
        dimensions.insert(d.name().to_string(), DimensionCount { steps: n, share });
    }
    if total == 0 {
        warnings.push("there are no reasoning steps yet".into());
    }
    Coverage { records: records.len(), steps: total, dimensions, warnings }
}
