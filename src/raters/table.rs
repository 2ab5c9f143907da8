//! Records become items: every annotator's record of one work is one item with several ratings.
//!
//! Two records are of the same work when they share a `work_id`, or when their `work` texts are
//! equal once runs of whitespace are collapsed; the relation is closed transitively, so a record
//! with an id and the same text as another without one joins it. The rater is
//! `provenance.expert`. A model is one more rater: its rating of an item is the mean of its
//! expected scores over the item's records it appraised, and an item any of whose records the
//! model was trained on is not rated by that model (held-out discipline).

use crate::data::Annotation;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The name recorded for an annotator who left `provenance.expert` blank.
pub const UNNAMED_RATER: &str = "(unnamed)";

/// One work and who rated it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// The `work_id` when the records have one, else the first record's id.
    pub key: String,
    /// The work's first words, to show in a table.
    pub label: String,
    /// The ids of the records of this work, in file order.
    pub records: Vec<String>,
    /// Each human rater's score (indexed like [`RatingTable::raters`]); `None` where they did not
    /// rate this work.
    pub scores: Vec<Option<f64>>,
}

/// Humans' ratings of items, one column per rater.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RatingTable {
    /// The human raters, sorted by name.
    pub raters: Vec<String>,
    pub items: Vec<Item>,
    /// What was resolved on the way, e.g. a rater who rated one work twice.
    pub warnings: Vec<String>,
}

/// A model's expected scores, to be placed among the raters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelScores {
    /// `base`, or an adapter's name.
    pub name: String,
    /// Expected score (1–10, from its verdict distribution) by record id.
    pub scores: BTreeMap<String, f64>,
    /// The records the model was trained on: no item of one of their works counts towards its
    /// agreement.
    #[serde(default)]
    pub trained_on: Vec<Annotation>,
}

/// A model's rating of each item of a table, after the held-out rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelColumn {
    pub name: String,
    /// Indexed like [`RatingTable::items`]; `None` where the model did not appraise the work or
    /// was trained on it.
    pub scores: Vec<Option<f64>>,
    /// Items left out because the model was trained on the work.
    pub excluded_trained: usize,
}

/// Model scores from JSON: either what `cqa appreciate --json` prints (its `records[].base` and
/// `records[].tuned` expected scores become the raters `base` and `tuned`), or a list of
/// `{name, scores: {record id: expected score}, trained_on: [records]}`.
pub fn parse_model_scores(text: &str) -> Result<Vec<ModelScores>> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Error::Input(format!("the model ratings are not valid JSON ({e})")))?;
    if value.is_array() {
        return serde_json::from_value(value).map_err(|e| Error::Input(format!("bad model ratings: {e} (expected a list of {{name, scores, trained_on}})")));
    }
    let Some(records) = value.get("records").and_then(|r| r.as_array()) else {
        return Err(Error::Input(
            "the model ratings are neither `cqa appreciate --json` output (with `records`) nor a list of {name, scores}".into(),
        ));
    };
    let mut models: Vec<ModelScores> = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let Some(id) = record.get("id").and_then(|v| v.as_str()) else {
            return Err(Error::Input(format!("records[{i}] has no `id`")));
        };
        for name in ["base", "tuned"] {
            let Some(appraisal) = record.get(name) else { continue };
            let Some(expected) = appraisal.get("expected").and_then(|v| v.as_f64()).filter(|x| (1.0..=10.0).contains(x)) else {
                return Err(Error::Input(format!("records[{i}].{name}.expected is missing or not a score from 1 to 10")));
            };
            let position = match models.iter().position(|m| m.name == name) {
                Some(p) => p,
                None => {
                    models.push(ModelScores { name: name.into(), ..ModelScores::default() });
                    models.len() - 1
                }
            };
            models[position].scores.insert(id.to_string(), expected);
        }
    }
    Ok(models)
}

fn normalized_text(work: &str) -> String {
    work.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn rater_name(record: &Annotation) -> String {
    let name = record.provenance.expert.trim();
    if name.is_empty() { UNNAMED_RATER.to_string() } else { name.to_string() }
}

/// Union–find over record indices.
fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

/// For each record, the index of its work (records of one work share it), in order of first
/// appearance.
fn work_groups(records: &[Annotation]) -> Vec<usize> {
    let mut parent: Vec<usize> = (0..records.len()).collect();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    let mut by_text: HashMap<String, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let join = |first: usize, parent: &mut Vec<usize>| {
            let (a, b) = (find(parent, first), find(parent, i));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        };
        if let Some(id) = r.work_id.as_deref().map(str::trim) {
            match by_id.get(id) {
                Some(&first) => join(first, &mut parent),
                None => {
                    by_id.insert(id, i);
                }
            }
        }
        match by_text.get(&normalized_text(&r.work)) {
            Some(&first) => join(first, &mut parent),
            None => {
                by_text.insert(normalized_text(&r.work), i);
            }
        }
    }
    let mut group_of_root = HashMap::new();
    (0..records.len())
        .map(|i| {
            let root = find(&mut parent, i);
            let next = group_of_root.len();
            *group_of_root.entry(root).or_insert(next)
        })
        .collect()
}

fn label(work: &str) -> String {
    const WORDS: usize = 8;
    let words: Vec<&str> = work.split_whitespace().collect();
    if words.len() <= WORDS { words.join(" ") } else { format!("{}…", words[..WORDS].join(" ")) }
}

impl RatingTable {
    /// Groups `records` into items, one column per `provenance.expert`. When a rater has several
    /// records of one work, the most recently updated one counts, and a warning says so.
    pub fn from_records(records: &[Annotation]) -> RatingTable {
        let groups = work_groups(records);
        let raters: Vec<String> = records.iter().map(rater_name).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let n_items = groups.iter().max().map_or(0, |m| m + 1);
        let mut items: Vec<Item> = (0..n_items).map(|_| Item { key: String::new(), label: String::new(), records: vec![], scores: vec![None; raters.len()] }).collect();
        // Which record holds each (item, rater) cell, to resolve duplicates by `updated`.
        let mut holder: HashMap<(usize, usize), usize> = HashMap::new();
        let mut warnings = Vec::new();
        for (i, (record, &g)) in records.iter().zip(&groups).enumerate() {
            let item = &mut items[g];
            if item.records.is_empty() {
                item.label = label(&record.work);
                item.key = record.id.clone();
            }
            if let Some(id) = &record.work_id
                && !item.key.starts_with("work:")
            {
                item.key = format!("work:{}", id.trim());
            }
            item.records.push(record.id.clone());
            let rater = raters.binary_search(&rater_name(record)).expect("every rater is listed");
            let keep = match holder.get(&(g, rater)) {
                None => true,
                Some(&earlier) => {
                    let later = if records[i].updated >= records[earlier].updated { i } else { earlier };
                    warnings.push(format!(
                        "{} rated one work twice (`{}` and `{}`): the later-updated `{}` counts",
                        raters[rater], records[earlier].id, record.id, records[later].id
                    ));
                    later == i
                }
            };
            if keep {
                holder.insert((g, rater), i);
                item.scores[rater] = Some(record.verdict.score as f64);
            }
        }
        RatingTable { raters, items, warnings }
    }

    /// A table from a score matrix (items × raters), as the reference fixtures give it.
    pub fn from_scores(raters: Vec<String>, scores: Vec<Vec<Option<f64>>>) -> RatingTable {
        let items = scores
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                assert_eq!(s.len(), raters.len(), "item {i} has a score slot per rater");
                Item { key: format!("item-{i}"), label: String::new(), records: vec![], scores: s }
            })
            .collect();
        RatingTable { raters, items, warnings: vec![] }
    }

    /// Items at least two humans rated: the ones agreement is measured on.
    pub fn shared_items(&self) -> usize {
        self.items.iter().filter(|it| it.scores.iter().flatten().count() >= 2).count()
    }

    /// The model's column: the mean expected score over each item's appraised records, except on
    /// works it was trained on. `records` are the ones the table was built from.
    pub fn model_column(&self, records: &[Annotation], model: &ModelScores) -> ModelColumn {
        let trained_ids: HashSet<&str> = model.trained_on.iter().filter_map(|r| r.work_id.as_deref().map(str::trim)).collect();
        let trained_texts: HashSet<String> = model.trained_on.iter().map(|r| normalized_text(&r.work)).collect();
        let trained_records: HashSet<&str> = model.trained_on.iter().map(|r| r.id.as_str()).collect();
        let by_id: HashMap<&str, &Annotation> = records.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut excluded_trained = 0;
        let scores = self
            .items
            .iter()
            .map(|item| {
                let members: Vec<&Annotation> = item.records.iter().filter_map(|id| by_id.get(id.as_str()).copied()).collect();
                let trained = members.iter().any(|r| {
                    trained_records.contains(r.id.as_str())
                        || r.work_id.as_deref().is_some_and(|id| trained_ids.contains(id.trim()))
                        || trained_texts.contains(&normalized_text(&r.work))
                });
                let own: Vec<f64> = members.iter().filter_map(|r| model.scores.get(&r.id).copied()).collect();
                if trained && !own.is_empty() {
                    excluded_trained += 1;
                    return None;
                }
                (!trained && !own.is_empty()).then(|| own.iter().sum::<f64>() / own.len() as f64)
            })
            .collect();
        ModelColumn { name: model.name.clone(), scores, excluded_trained }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parse_annotations;

    fn record(id: &str, work_id: Option<&str>, work: &str, expert: &str, score: u8, updated: &str) -> String {
        let work_id = work_id.map(|w| format!(r#""work_id": "{w}", "#)).unwrap_or_default();
        format!(
            r#"{{"schema": 1, "id": "{id}", {work_id}"work": "{work}", "brief": "", "audience": "", "genre": "",
            "reasoning": [{{"dimension": "craft", "text": "t"}}], "verdict": {{"score": {score}, "summary": ""}},
            "provenance": {{"expert": "{expert}", "knowledge_engineer": "", "session": "", "date": ""}},
            "created": "", "updated": "{updated}"}}"#
        )
        .replace('\n', " ")
    }

    fn records(lines: &[String]) -> Vec<Annotation> {
        parse_annotations(lines.join("\n").as_bytes()).accept(false).unwrap()
    }

    #[test]
    fn groups_by_work_id_or_text_transitively() {
        let rs = records(&[
            record("a1", Some("w1"), "The sea  was calm.", "Ada", 7, "1"),
            record("b1", None, "The sea was calm.", "Ben", 5, "1"),
            record("c1", Some("w1"), "The sea was calm!", "Cy", 6, "1"),
            record("a2", None, "A different poem.", "Ada", 3, "1"),
        ]);
        let t = RatingTable::from_records(&rs);
        assert_eq!(t.raters, ["Ada", "Ben", "Cy"]);
        assert_eq!(t.items.len(), 2);
        assert_eq!(t.items[0].key, "work:w1");
        assert_eq!(t.items[0].records, ["a1", "b1", "c1"]);
        assert_eq!(t.items[0].scores, [Some(7.0), Some(5.0), Some(6.0)]);
        assert_eq!(t.items[1].scores, [Some(3.0), None, None]);
        assert_eq!(t.shared_items(), 1);
        assert!(t.warnings.is_empty());
    }

    #[test]
    fn a_second_rating_by_one_rater_keeps_the_later_update() {
        let rs = records(&[
            record("a1", None, "Poem.", "Ada", 7, "2026-01-02T00:00:00Z"),
            record("a1b", None, "Poem.", "Ada", 4, "2026-01-01T00:00:00Z"),
        ]);
        let t = RatingTable::from_records(&rs);
        assert_eq!(t.items[0].scores, [Some(7.0)]);
        assert_eq!(t.warnings.len(), 1);
        assert!(t.warnings[0].contains("`a1` counts"), "{}", t.warnings[0]);
    }

    #[test]
    fn a_model_does_not_rate_works_it_was_trained_on() {
        let rs = records(&[
            record("a1", None, "Poem one.", "Ada", 7, "1"),
            record("b1", None, "Poem one.", "Ben", 5, "1"),
            record("a2", None, "Poem two.", "Ada", 3, "1"),
            record("b2", None, "Poem two.", "Ben", 4, "1"),
        ]);
        let t = RatingTable::from_records(&rs);
        // Trained on Ada's record of poem two: Ben's record of it is excluded too.
        let model = ModelScores {
            name: "tuned".into(),
            scores: [("a1", 6.0), ("b1", 7.0), ("a2", 2.0), ("b2", 2.5)].iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            trained_on: vec![rs[2].clone()],
        };
        let column = t.model_column(&rs, &model);
        assert_eq!(column.scores, [Some(6.5), None]);
        assert_eq!(column.excluded_trained, 1);
    }
}
