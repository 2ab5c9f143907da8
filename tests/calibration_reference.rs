//! The calibration benchmark against its references (tests/reference/make_calibration_fixtures.py):
//! scipy for the statistics, transformers for H(X), H(X|Y) and ΔI on the default model.

mod common;

use cqa_studio::calibrate::{parse_benchmark, run_item};
use cqa_studio::device::block_on;
use cqa_studio::stats::{paired_summary, spearman};

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol * want.abs().max(1.0)
}

#[test]
fn statistics_match_scipy() {
    let fixture = common::fixture("calibration_reference.json");
    let mut methods = std::collections::BTreeSet::new();
    for case in fixture["stats"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let d = common::f64s(&case["d"]);
        let s = paired_summary(&d);
        let want_p = case["wilcoxon_p"].as_f64().unwrap();
        let p = s.wilcoxon_p.unwrap();
        println!("{name}: p {p:.6e} (scipy {want_p:.6e}), {}", s.wilcoxon_method);
        assert_eq!(s.wilcoxon_method, case["method"].as_str().unwrap(), "{name}");
        methods.insert(s.wilcoxon_method);
        assert!((p - want_p).abs() < 1e-6 && close(p, want_p, 1e-6), "{name}: p {p} vs scipy {want_p}");
        for (key, got) in [("mean", s.mean), ("median", s.median), ("sd", s.sd), ("cohens_d", s.cohens_d.unwrap())] {
            let want = case[key].as_f64().unwrap();
            assert!(close(got, want, 1e-9), "{name}: {key} {got} vs {want}");
        }
    }
    assert_eq!(methods.len(), 2, "both the exact and the normal path are exercised");
    for case in fixture["spearman"].as_array().unwrap() {
        let x = common::f64s(&case["x"]);
        let y = common::f64s(&case["y"]);
        let rho = spearman(&x, &y).unwrap();
        assert!(close(rho, case["rho"].as_f64().unwrap(), 1e-9), "{rho} vs {}", case["rho"]);
    }
}

#[test]
fn surprisal_matches_transformers() {
    let fixture = common::fixture("calibration_reference.json");
    let items = parse_benchmark(&std::fs::read(common::root().join("data/benchmarks/calibration.jsonl")).unwrap()).unwrap();
    let lm = common::default_model();
    let cases = fixture["surprisal"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let item = items.iter().find(|i| i.id == case["id"].as_str().unwrap()).expect("fixture item is in the benchmark");
        let r = block_on(run_item(lm, None, item)).unwrap();
        let m = &r.base.passage;
        assert_eq!(m.token_ids, common::ids(&case["token_ids"]), "{}", item.id);
        let n = case["n_tokens"].as_f64().unwrap();
        assert_eq!(r.n_tokens() as f64, n);
        for (key, got) in [("h_x_bits", m.h_x_bits), ("h_x_given_y_bits", m.h_x_given_y_bits), ("delta_i_bits", m.delta_i_bits)] {
            let want = case[key].as_f64().unwrap();
            let per_token = (got - want).abs() / n;
            println!("{} {key}: {got:.4} vs {want:.4} ({per_token:.1e} bits/token)", item.id);
            assert!(per_token < 0.01, "{}: {key} {got} vs transformers {want}", item.id);
        }
        // H(X) is exactly what `score` reports for the passage alone.
        let alone = block_on(cqa_studio::eval::score(lm, &item.passage, None)).unwrap();
        assert_eq!(alone.total_bits, m.h_x_bits);
    }
}
