//! Agreement among several raters, and a model placed among them.
//!
//! Without inter-annotator agreement a model's agreement with one expert has no ceiling: a ρ of
//! 0.6 means little until we know whether two experts agree at 0.5 or at 0.9. This module
//! measures, over the items of a [`RatingTable`] (`table`):
//!
//! - Krippendorff's α of the humans, interval and ordinal, with missing ratings (`alpha`);
//! - each pair of humans' Spearman ρ and mean absolute difference on the works both rated;
//! - each rater against the rest: a human's ratings against the mean of the other humans', and a
//!   model's expected scores against the mean of all the humans';
//! - each model against each human, and leave-one-annotator-out: with human h left out, does the
//!   model agree with the mean of the others as well as h does, on the same works?
//!
//! Every figure has a seeded percentile bootstrap interval over resampled items (the same
//! resamples for every figure, so model − human differences are paired). A figure is computed
//! on the resampled items it applies to; resamples where it is undefined are skipped and counted.
//! Checked against the `krippendorff` package, scipy and numpy in
//! `tests/agreement_reference.rs` (fixtures from `tests/reference/make_agreement_fixtures.py`).

pub mod alpha;
pub mod chart;
pub mod table;

pub use alpha::{Level, krippendorff_alpha};
pub use table::{Item, ModelColumn, ModelScores, RatingTable, parse_model_scores};

use crate::appreciate::agreement::{percentile, resample_indices};
use crate::data::Annotation;
use crate::stats::spearman;
use serde::{Deserialize, Serialize};

/// How the intervals are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgreementOptions {
    /// Bootstrap resamples of the items.
    pub bootstrap: usize,
    pub seed: u64,
    /// Confidence level of the intervals, e.g. 0.95.
    pub level: f64,
}

/// More resamples than this are refused: the intervals would not change, and the page would
/// stall.
pub const MAX_BOOTSTRAP: usize = 100_000;

impl AgreementOptions {
    /// A clear error for options no report can be made with.
    pub fn check(&self) -> crate::Result<()> {
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(crate::Error::Input(format!("the confidence level must be between 0 and 1 (got {})", self.level)));
        }
        if self.bootstrap > MAX_BOOTSTRAP {
            return Err(crate::Error::Input(format!("{} bootstrap resamples is more than the {MAX_BOOTSTRAP} allowed", self.bootstrap)));
        }
        Ok(())
    }
}

impl Default for AgreementOptions {
    fn default() -> Self {
        AgreementOptions { bootstrap: 2000, seed: 42, level: 0.95 }
    }
}

/// A figure and its percentile bootstrap interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Estimate {
    /// On all the items; `None` where undefined (e.g. ρ when one side is constant).
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Resamples on which the figure was defined.
    pub resamples: usize,
}

/// Two raters on the works both rated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairAgreement {
    pub a: String,
    pub b: String,
    /// Works both rated.
    pub n: usize,
    pub spearman: Estimate,
    /// Mean |a − b|.
    pub mae: Estimate,
}

/// Human or model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RaterKind {
    Human,
    Model,
}

/// One rater against the mean of the (other) humans: the figure one chart draws for everyone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RaterVsRest {
    pub rater: String,
    pub kind: RaterKind,
    /// Works this rater and at least one other human rated.
    pub n: usize,
    pub spearman: Estimate,
    pub mae: Estimate,
}

/// With one human left out: the model and that human, each against the mean of the others, on
/// the same works.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeaveOneOut {
    pub left_out: String,
    /// Works the left-out human, the model and at least one other human rated.
    pub n: usize,
    pub human_spearman: Estimate,
    pub model_spearman: Estimate,
    /// Model − human: above 0, the model agrees with the others better than the human does.
    pub spearman_model_minus_human: Estimate,
    pub human_mae: Estimate,
    pub model_mae: Estimate,
    /// Model − human: below 0, the model is closer to the others than the human is.
    pub mae_model_minus_human: Estimate,
}

/// One model among the raters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelAgreement {
    pub name: String,
    /// Its rating per item (indexed like the table's items); null where it did not rate.
    pub scores: Vec<Option<f64>>,
    /// Works it rated (held out from its training).
    pub items: usize,
    /// Works left out because it was trained on them.
    pub excluded_trained: usize,
    pub vs_humans: RaterVsRest,
    pub with_each_human: Vec<PairAgreement>,
    pub leave_one_out: Vec<LeaveOneOut>,
}

/// What `cqa agreement --json` prints and the page's Agreement view draws
/// (docs/study-format.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StudyAgreement {
    pub table: RatingTable,
    /// Works at least two humans rated.
    pub shared_items: usize,
    pub alpha_interval: Estimate,
    pub alpha_ordinal: Estimate,
    pub pairs: Vec<PairAgreement>,
    pub humans_vs_rest: Vec<RaterVsRest>,
    pub models: Vec<ModelAgreement>,
    pub bootstrap: usize,
    pub seed: u64,
    pub level: f64,
}

/// A figure on a list of item indices (a resample repeats some).
type Figure<'a> = Box<dyn Fn(&[usize]) -> Option<f64> + 'a>;

fn estimate(all: &[usize], resamples: &[Vec<usize>], level: f64, figure: &Figure<'_>) -> Estimate {
    let values: Vec<f64> = resamples.iter().filter_map(|idx| figure(idx)).collect();
    let tail = (1.0 - level) / 2.0;
    Estimate { value: figure(all), ci_low: percentile(&values, tail), ci_high: percentile(&values, 1.0 - tail), resamples: values.len() }
}

fn mean(x: &[f64]) -> Option<f64> {
    (!x.is_empty()).then(|| x.iter().sum::<f64>() / x.len() as f64)
}

fn mae(x: &[f64], y: &[f64]) -> Option<f64> {
    mean(&x.iter().zip(y).map(|(a, b)| (a - b).abs()).collect::<Vec<_>>())
}

/// The pairs (x, y) on the listed items where both are defined.
fn paired(idx: &[usize], x: impl Fn(usize) -> Option<f64>, y: impl Fn(usize) -> Option<f64>) -> (Vec<f64>, Vec<f64>) {
    idx.iter().filter_map(|&i| Some((x(i)?, y(i)?))).unzip()
}

/// The mean of the humans' ratings of `item`, leaving out human `except`.
fn rest_mean(table: &RatingTable, item: usize, except: Option<usize>) -> Option<f64> {
    let others: Vec<f64> = table.items[item].scores.iter().enumerate().filter(|(r, _)| Some(*r) != except).filter_map(|(_, s)| *s).collect();
    mean(&others)
}

/// The figures of a pair of item columns.
fn pair_figures<'a>(x: impl Fn(usize) -> Option<f64> + Copy + 'a, y: impl Fn(usize) -> Option<f64> + Copy + 'a) -> (Figure<'a>, Figure<'a>) {
    (
        Box::new(move |idx: &[usize]| {
            let (a, b) = paired(idx, x, y);
            if a.len() < 2 { None } else { spearman(&a, &b) }
        }),
        Box::new(move |idx: &[usize]| {
            let (a, b) = paired(idx, x, y);
            mae(&a, &b)
        }),
    )
}

/// Krippendorff's α of the humans on a list of items (each listed item is one unit).
fn alpha_figure(t: &RatingTable, level: Level) -> Figure<'_> {
    Box::new(move |idx: &[usize]| {
        let units: Vec<Vec<f64>> = idx.iter().map(|&i| t.items[i].scores.iter().flatten().copied().collect()).collect();
        krippendorff_alpha(&units, level)
    })
}

/// Agreement over `records` (humans) and model scores of the same records.
pub fn study_agreement(records: &[Annotation], models: &[ModelScores], options: &AgreementOptions) -> StudyAgreement {
    let table = RatingTable::from_records(records);
    let columns: Vec<ModelColumn> = models.iter().map(|m| table.model_column(records, m)).collect();
    let resamples = resample_indices(table.items.len().max(1), options.bootstrap, options.seed);
    let resamples = if table.items.is_empty() { vec![] } else { resamples };
    agreement_of_table(table, columns, &resamples, options)
}

/// Agreement over a built table and model columns, with the given item resamples (the
/// reference test passes the fixture's).
pub fn agreement_of_table(table: RatingTable, columns: Vec<ModelColumn>, resamples: &[Vec<usize>], options: &AgreementOptions) -> StudyAgreement {
    let all: Vec<usize> = (0..table.items.len()).collect();
    let level = options.level;
    let est = |f: &Figure<'_>| estimate(&all, resamples, level, f);
    let t = &table;
    let human = move |r: usize| move |i: usize| t.items[i].scores[r];

    let count = |idx: &[usize], f: &dyn Fn(usize) -> bool| idx.iter().filter(|&&i| f(i)).count();

    let mut pairs = Vec::new();
    for a in 0..t.raters.len() {
        for b in a + 1..t.raters.len() {
            let n = count(&all, &|i| t.items[i].scores[a].is_some() && t.items[i].scores[b].is_some());
            if n == 0 {
                continue;
            }
            let (rho, mae) = pair_figures(human(a), human(b));
            pairs.push(PairAgreement { a: t.raters[a].clone(), b: t.raters[b].clone(), n, spearman: est(&rho), mae: est(&mae) });
        }
    }

    let humans_vs_rest = (0..t.raters.len())
        .map(|h| {
            let rest = move |i: usize| rest_mean(t, i, Some(h));
            let n = count(&all, &|i| human(h)(i).is_some() && rest(i).is_some());
            let (rho, mae) = pair_figures(human(h), rest);
            RaterVsRest { rater: t.raters[h].clone(), kind: RaterKind::Human, n, spearman: est(&rho), mae: est(&mae) }
        })
        .collect();

    let models = columns
        .iter()
        .map(|column| {
            let model = |i: usize| column.scores[i];
            let everyone = |i: usize| rest_mean(t, i, None);
            let (rho, mae) = pair_figures(model, everyone);
            let vs_humans = RaterVsRest {
                rater: column.name.clone(),
                kind: RaterKind::Model,
                n: count(&all, &|i| model(i).is_some() && everyone(i).is_some()),
                spearman: est(&rho),
                mae: est(&mae),
            };
            let with_each_human = (0..t.raters.len())
                .filter_map(|h| {
                    let n = count(&all, &|i| model(i).is_some() && human(h)(i).is_some());
                    let (rho, mae) = pair_figures(model, human(h));
                    (n > 0).then(|| PairAgreement { a: column.name.clone(), b: t.raters[h].clone(), n, spearman: est(&rho), mae: est(&mae) })
                })
                .collect();
            let leave_one_out = (0..t.raters.len())
                .filter_map(|h| {
                    let rest = move |i: usize| rest_mean(t, i, Some(h));
                    // The works all three sides have, so model and human are judged on the same ones.
                    let on = move |i: usize| model(i).is_some() && human(h)(i).is_some() && rest(i).is_some();
                    let n = count(&all, &on);
                    if n == 0 {
                        return None;
                    }
                    let human_on = move |i: usize| if on(i) { human(h)(i) } else { None };
                    let model_on = move |i: usize| if on(i) { model(i) } else { None };
                    let (h_rho, h_mae) = pair_figures(human_on, rest);
                    let (m_rho, m_mae) = pair_figures(model_on, rest);
                    let difference = |m: &Figure<'_>, hf: &Figure<'_>| -> Estimate {
                        let d: Figure<'_> = Box::new(|idx: &[usize]| Some(m(idx)? - hf(idx)?));
                        est(&d)
                    };
                    Some(LeaveOneOut {
                        left_out: t.raters[h].clone(),
                        n,
                        human_spearman: est(&h_rho),
                        model_spearman: est(&m_rho),
                        spearman_model_minus_human: difference(&m_rho, &h_rho),
                        human_mae: est(&h_mae),
                        model_mae: est(&m_mae),
                        mae_model_minus_human: difference(&m_mae, &h_mae),
                    })
                })
                .collect();
            ModelAgreement {
                name: column.name.clone(),
                scores: column.scores.clone(),
                items: column.scores.iter().flatten().count(),
                excluded_trained: column.excluded_trained,
                vs_humans,
                with_each_human,
                leave_one_out,
            }
        })
        .collect();

    let alpha_interval = est(&alpha_figure(t, Level::Interval));
    let alpha_ordinal = est(&alpha_figure(t, Level::Ordinal));
    StudyAgreement {
        shared_items: t.shared_items(),
        alpha_interval,
        alpha_ordinal,
        pairs,
        humans_vs_rest,
        models,
        bootstrap: resamples.len(),
        seed: options.seed,
        level,
        table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three humans and a model on five works; the fifth only A rated, so no one has a "rest"
    /// there. Every number below is worked by hand in the comments.
    fn three_raters() -> StudyAgreement {
        let s = |v: [f64; 3]| v.iter().map(|&x| if x.is_nan() { None } else { Some(x) }).collect::<Vec<_>>();
        let table = RatingTable::from_scores(
            vec!["A".into(), "B".into(), "C".into()],
            vec![s([2.0, 3.0, 1.0]), s([4.0, 5.0, 6.0]), s([6.0, 9.0, 5.0]), s([8.0, 7.0, 9.0]), s([5.0, f64::NAN, f64::NAN])],
        );
        let model = ModelColumn { name: "tuned".into(), scores: vec![Some(2.5), Some(4.0), Some(8.0), Some(7.5), Some(5.0)], excluded_trained: 0 };
        agreement_of_table(table, vec![model], &[], &AgreementOptions { bootstrap: 0, ..AgreementOptions::default() })
    }

    fn close(got: Option<f64>, want: f64) {
        let got = got.expect("defined");
        assert!((got - want).abs() < 1e-12, "got {got}, want {want}");
    }

    #[test]
    fn leave_one_annotator_out_by_hand() {
        let report = three_raters();
        let m = &report.models[0];
        assert_eq!(m.items, 5);
        let loo: Vec<&LeaveOneOut> = m.leave_one_out.iter().collect();
        assert_eq!(loo.iter().map(|l| (l.left_out.as_str(), l.n)).collect::<Vec<_>>(), [("A", 4), ("B", 4), ("C", 4)]);

        // A out: rest = (B + C)/2 = (2, 5.5, 7, 8), ranks 1 2 3 4. A ranks 1 2 3 4: ρ = 1.
        // Model (2.5, 4, 8, 7.5) ranks 1 2 4 3: ρ = 1 − 6·2/(4·15) = 0.8.
        // MAE: A (0 + 1.5 + 1 + 0)/4 = 0.625; model (0.5 + 1.5 + 1 + 0.5)/4 = 0.875.
        close(loo[0].human_spearman.value, 1.0);
        close(loo[0].model_spearman.value, 0.8);
        close(loo[0].spearman_model_minus_human.value, -0.2);
        close(loo[0].human_mae.value, 0.625);
        close(loo[0].model_mae.value, 0.875);
        close(loo[0].mae_model_minus_human.value, 0.25);

        // B out: rest = (A + C)/2 = (1.5, 5, 5.5, 8.5). B (3, 5, 9, 7) ranks 1 2 4 3: ρ = 0.8,
        // as the model's. MAE: B (1.5 + 0 + 3.5 + 1.5)/4 = 1.625; model (1 + 1 + 2.5 + 1)/4 = 1.375.
        close(loo[1].human_spearman.value, 0.8);
        close(loo[1].model_spearman.value, 0.8);
        close(loo[1].spearman_model_minus_human.value, 0.0);
        close(loo[1].human_mae.value, 1.625);
        close(loo[1].model_mae.value, 1.375);

        // C out: rest = (A + B)/2 = (2.5, 4.5, 7.5, 7.5), tied ranks (1, 2, 3.5, 3.5), deviations
        // (−1.5, −0.5, 1, 1), Σ² = 4.5. C (1, 6, 5, 9) ranks (1, 3, 2, 4), deviations
        // (−1.5, 0.5, −0.5, 1.5), Σ² = 5: cov 2.25 − 0.25 − 0.5 + 1.5 = 3, ρ = 3/√22.5.
        // Model ranks (1, 2, 4, 3): cov 2.25 + 0.25 + 1.5 + 0.5 = 4.5, ρ = 4.5/√22.5.
        // MAE: C (1.5 + 1.5 + 2.5 + 1.5)/4 = 1.75; model (0 + 0.5 + 0.5 + 0)/4 = 0.25.
        close(loo[2].human_spearman.value, 3.0 / 22.5f64.sqrt());
        close(loo[2].model_spearman.value, 4.5 / 22.5f64.sqrt());
        close(loo[2].spearman_model_minus_human.value, 1.5 / 22.5f64.sqrt());
        close(loo[2].human_mae.value, 1.75);
        close(loo[2].model_mae.value, 0.25);
        close(loo[2].mae_model_minus_human.value, -1.5);

        // A human against the rest is the same figure as the left-out human's.
        assert_eq!(report.humans_vs_rest[0].spearman.value, loo[0].human_spearman.value);
        assert_eq!(report.humans_vs_rest[0].n, 4);
        // The model against all humans: A alone rated the fifth work, so it counts (n = 5).
        assert_eq!(m.vs_humans.n, 5);
        assert_eq!(report.shared_items, 4);
        assert_eq!(report.pairs.len(), 3);
        assert!(report.alpha_interval.ci_low.is_none() && report.alpha_interval.resamples == 0);
    }

    #[test]
    fn resamples_give_intervals_around_the_figure() {
        let mut report = three_raters();
        let table = report.table.clone();
        let model = ModelColumn { name: "tuned".into(), scores: report.models.remove(0).scores, excluded_trained: 0 };
        let resamples = resample_indices(table.items.len(), 200, 7);
        let report = agreement_of_table(table, vec![model], &resamples, &AgreementOptions::default());
        let a = &report.alpha_interval;
        let (lo, hi, value) = (a.ci_low.unwrap(), a.ci_high.unwrap(), a.value.unwrap());
        assert!(lo <= hi && lo < value + 1e-12 && hi > value - 1.0, "{a:?}");
        assert!(a.resamples > 150 && a.resamples <= 200);
    }

    #[test]
    fn records_to_report_keeps_humans_and_model_apart() {
        let lines: Vec<String> = [("a1", "Ada", 7, "One."), ("b1", "Ben", 6, "One."), ("a2", "Ada", 3, "Two."), ("b2", "Ben", 2, "Two."), ("a3", "Ada", 5, "Three."), ("b3", "Ben", 5, "Three.")]
            .iter()
            .map(|(id, who, score, work)| {
                format!(
                    r#"{{"schema": 1, "id": "{id}", "work": "{work}", "brief": "", "audience": "", "genre": "", "reasoning": [{{"dimension": "craft", "text": "t"}}], "verdict": {{"score": {score}, "summary": ""}}, "provenance": {{"expert": "{who}", "knowledge_engineer": "", "session": "", "date": ""}}, "created": "", "updated": ""}}"#
                )
            })
            .collect();
        let records = crate::data::parse_annotations(lines.join("\n").as_bytes()).accept(false).unwrap();
        let model = ModelScores { name: "base".into(), scores: [("a1".to_string(), 6.0), ("b2".to_string(), 3.0), ("a3".to_string(), 4.0)].into_iter().collect(), trained_on: vec![] };
        let report = study_agreement(&records, &[model], &AgreementOptions { bootstrap: 50, ..AgreementOptions::default() });
        assert_eq!(report.table.raters, ["Ada", "Ben"]);
        assert_eq!(report.shared_items, 3);
        assert_eq!(report.pairs[0].n, 3);
        close(report.pairs[0].mae.value, (1.0 + 1.0 + 0.0) / 3.0);
        // Units (7, 6), (3, 2), (5, 5): interval α worked out as in alpha.rs.
        let units = [vec![7.0, 6.0], vec![3.0, 2.0], vec![5.0, 5.0]];
        assert_eq!(report.alpha_interval.value, krippendorff_alpha(&units, Level::Interval));
        assert_eq!(report.models[0].scores, [Some(6.0), Some(3.0), Some(4.0)]);
        assert_eq!(report.bootstrap, 50);
    }
}
