//! Agreement among several raters against the `krippendorff` package, scipy and numpy
//! (fixture: tests/reference/make_agreement_fixtures.py): Krippendorff's α (interval, ordinal,
//! float ratings), pairwise Spearman ρ and MAE, each rater against the rest, each model against
//! the humans, leave-one-annotator-out, and every percentile interval over the same stored
//! resamples, all to 1e-9.

mod common;

use cqa_studio::raters::{AgreementOptions, Estimate, Level, ModelColumn, RatingTable, agreement_of_table, krippendorff_alpha};
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn scores(v: &Value) -> Vec<Option<f64>> {
    v.as_array().unwrap().iter().map(Value::as_f64).collect()
}

/// Compares one figure and its interval; returns the largest difference seen.
fn check(what: &str, got: &Estimate, want: &Value) -> f64 {
    assert_eq!(got.resamples as u64, want["resamples"].as_u64().unwrap(), "{what}: resamples on which it is defined");
    let mut worst = 0f64;
    for (field, g) in [("value", got.value), ("ci_low", got.ci_low), ("ci_high", got.ci_high)] {
        match (g, want[field].as_f64()) {
            (Some(g), Some(w)) => {
                assert!((g - w).abs() <= TOLERANCE, "{what}.{field}: cqa {g}, reference {w}");
                worst = worst.max((g - w).abs());
            }
            (None, None) => {}
            (g, w) => panic!("{what}.{field}: cqa {g:?}, reference {w:?}"),
        }
    }
    worst
}

#[test]
fn agreement_matches_krippendorff_scipy_and_numpy() {
    let f = common::fixture("agreement_reference.json");
    let raters: Vec<String> = f["raters"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_string()).collect();
    let table = RatingTable::from_scores(raters, f["scores"].as_array().unwrap().iter().map(scores).collect());
    let columns: Vec<ModelColumn> = f["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| ModelColumn { name: m["name"].as_str().unwrap().into(), scores: scores(&m["scores"]), excluded_trained: 0 })
        .collect();
    let resamples: Vec<Vec<usize>> =
        f["resamples"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect()).collect();
    let options = AgreementOptions { bootstrap: resamples.len(), seed: 0, level: f["level"].as_f64().unwrap() };
    let report = agreement_of_table(table.clone(), columns.clone(), &resamples, &options);
    let want = &f["expected"];

    let mut worst = 0f64;
    worst = worst.max(check("alpha_interval", &report.alpha_interval, &want["alpha_interval"]));
    worst = worst.max(check("alpha_ordinal", &report.alpha_ordinal, &want["alpha_ordinal"]));

    // α on float ratings: the humans and the base model's expected scores together.
    let units: Vec<Vec<f64>> =
        table.items.iter().enumerate().map(|(i, it)| it.scores.iter().copied().chain([columns[0].scores[i]]).flatten().collect()).collect();
    let floats = krippendorff_alpha(&units, Level::Interval).unwrap();
    let want_floats = want["alpha_interval_with_floats"].as_f64().unwrap();
    assert!((floats - want_floats).abs() <= TOLERANCE, "α with float ratings: cqa {floats}, reference {want_floats}");

    let pairs = want["pairs"].as_array().unwrap();
    assert_eq!(report.pairs.len(), pairs.len());
    for (got, want) in report.pairs.iter().zip(pairs) {
        let name = format!("{}~{}", got.a, got.b);
        assert_eq!((got.a.as_str(), got.b.as_str()), (want["a"].as_str().unwrap(), want["b"].as_str().unwrap()));
        assert_eq!(got.n as u64, want["n"].as_u64().unwrap(), "{name}: n");
        worst = worst.max(check(&format!("{name} spearman"), &got.spearman, &want["spearman"]));
        worst = worst.max(check(&format!("{name} mae"), &got.mae, &want["mae"]));
    }
    for (got, want) in report.humans_vs_rest.iter().zip(want["humans_vs_rest"].as_array().unwrap()) {
        assert_eq!(got.rater, want["rater"].as_str().unwrap());
        assert_eq!(got.n as u64, want["n"].as_u64().unwrap());
        worst = worst.max(check(&format!("{} vs rest spearman", got.rater), &got.spearman, &want["spearman"]));
        worst = worst.max(check(&format!("{} vs rest mae", got.rater), &got.mae, &want["mae"]));
    }
    let models = want["models"].as_array().unwrap();
    assert_eq!(report.models.len(), models.len());
    for (got, want) in report.models.iter().zip(models) {
        let m = &got.name;
        assert_eq!(m, want["name"].as_str().unwrap());
        assert_eq!(got.vs_humans.n as u64, want["vs_humans"]["n"].as_u64().unwrap());
        worst = worst.max(check(&format!("{m} vs humans spearman"), &got.vs_humans.spearman, &want["vs_humans"]["spearman"]));
        worst = worst.max(check(&format!("{m} vs humans mae"), &got.vs_humans.mae, &want["vs_humans"]["mae"]));
        let each = want["with_each_human"].as_array().unwrap();
        assert_eq!(got.with_each_human.len(), each.len());
        for (g, w) in got.with_each_human.iter().zip(each) {
            assert_eq!(g.b, w["b"].as_str().unwrap());
            assert_eq!(g.n as u64, w["n"].as_u64().unwrap());
            worst = worst.max(check(&format!("{m}~{} spearman", g.b), &g.spearman, &w["spearman"]));
            worst = worst.max(check(&format!("{m}~{} mae", g.b), &g.mae, &w["mae"]));
        }
        let loo = want["leave_one_out"].as_array().unwrap();
        assert_eq!(got.leave_one_out.len(), loo.len());
        for (g, w) in got.leave_one_out.iter().zip(loo) {
            let who = format!("{m} without {}", g.left_out);
            assert_eq!(g.left_out, w["left_out"].as_str().unwrap());
            assert_eq!(g.n as u64, w["n"].as_u64().unwrap(), "{who}: n");
            for (field, e) in [
                ("human_spearman", &g.human_spearman),
                ("model_spearman", &g.model_spearman),
                ("spearman_model_minus_human", &g.spearman_model_minus_human),
                ("human_mae", &g.human_mae),
                ("model_mae", &g.model_mae),
                ("mae_model_minus_human", &g.mae_model_minus_human),
            ] {
                worst = worst.max(check(&format!("{who} {field}"), e, &w[field]));
            }
        }
    }
    // The fixture is not degenerate: the figures vary and the intervals are real.
    let a = &report.alpha_interval;
    assert!(a.ci_low.unwrap() < a.value.unwrap() && a.value.unwrap() < a.ci_high.unwrap());
    eprintln!("agreement reference: largest difference {worst:.2e} (tolerance {TOLERANCE:.0e})");
}
