//! Verdict distributions against transformers + PEFT, and the agreement statistics against scipy
//! and numpy (fixture: tests/reference/make_appreciation_fixtures.py).
//!
//! - cqa builds exactly the prefix text and token ids the reference scored, for the direct,
//!   reasoning and critique prefixes;
//! - the ten `Verdict: k/10` log-probs agree to ≤ 1e-3 per continuation, base and tuned;
//! - Spearman, MAE, within ±1, log-loss and the bootstrap intervals over the same resamples
//!   equal scipy's / numpy's.

mod common;

use cqa_studio::appreciate::agreement::{Judged, agreement, paired_difference};
use cqa_studio::appreciate::verdict::{critique_before_verdict, verdict_query};
use cqa_studio::appreciate::verdict_distribution;
use cqa_studio::data::parse_annotations;
use cqa_studio::device::block_on;
use cqa_studio::lora::Adapter;
use cqa_studio::prompt::{AppreciationInput, reasoning_text};

const LOGPROB_TOLERANCE: f64 = 1e-3;

#[test]
fn verdict_logprobs_match_transformers_and_peft() {
    let fixture = common::fixture("appreciation_reference.json");
    let base = common::default_model();
    let dir = common::root().join("tests/fixtures").join(fixture["tuned_adapter"].as_str().unwrap());
    let adapter = Adapter::from_peft(
        &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        &std::fs::read(dir.join("adapter_model.safetensors")).unwrap(),
        &base.model.projection_shapes(),
    )
    .unwrap();
    let tuned = base.with_adapter(&adapter, true).unwrap();
    let bytes = std::fs::read(common::root().join("tests/fixtures/lora_records.jsonl")).unwrap();
    let records = parse_annotations(&bytes).accept(false).unwrap();
    let critique = fixture["critique"].as_str().unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 9);
    let (mut worst, mut tuned_moved) = (0f64, 0f64);
    for case in cases {
        let record = records.iter().find(|r| r.id == case["record"].as_str().unwrap()).unwrap();
        let input = AppreciationInput::of(record);
        let assistant = match case["mode"].as_str().unwrap() {
            "direct" => String::new(),
            "reasoning" => reasoning_text(record),
            "critique" => critique_before_verdict(critique),
            other => panic!("mode {other}"),
        };
        let query = verdict_query(base, &input, &assistant).unwrap();
        assert_eq!(query.prefix, case["prefix"].as_str().unwrap(), "{}/{}: prefix text", case["record"], case["mode"]);
        assert_eq!(query.prefix_ids, common::ids(&case["prefix_ids"]));
        let continuations: Vec<String> = case["continuations"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        assert_eq!(query.continuations, continuations);
        let expected_conts: Vec<Vec<u32>> = case["continuation_ids"].as_array().unwrap().iter().map(common::ids).collect();
        assert_eq!(query.continuation_ids, expected_conts);
        // Scored this way, the tokens equal one joint tokenization of the assistant turn, as in training.
        if !assistant.is_empty() {
            let said = base.tokenizer.encode(assistant.trim_end(), false).unwrap();
            let joint = base.tokenizer.encode(&format!("{}{}", assistant.trim_end(), continuations[6]), false).unwrap();
            assert_eq!([said, expected_conts[6].clone()].concat(), joint);
        }
        for (lm, side) in [(base, "base"), (&tuned, "tuned")] {
            let d = block_on(verdict_distribution(lm, query.clone())).unwrap();
            let reference = common::f64s(&case[side]);
            for (k, (got, want)) in d.logprobs.iter().zip(&reference).enumerate() {
                let diff = (got - want).abs();
                assert!(diff <= LOGPROB_TOLERANCE, "{}/{} {side}: Verdict {}/10: {got} vs {want}", case["record"], case["mode"], k + 1);
                worst = worst.max(diff);
            }
        }
        let b = common::f64s(&case["base"]);
        let t = common::f64s(&case["tuned"]);
        tuned_moved = tuned_moved.max(b.iter().zip(&t).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max));
    }
    eprintln!("verdict log-probs: worst |Δ| {worst:.2e} over 9 prefixes × 10 continuations × 2 models");
    // The comparison can fail: the adapter moves the reference log-probs far beyond the bound.
    assert!(tuned_moved > 10.0 * LOGPROB_TOLERANCE, "{tuned_moved}");
}

#[test]
fn agreement_and_bootstrap_match_scipy_and_numpy() {
    let s = &common::fixture("appreciation_reference.json")["stats"];
    let expert = common::f64s(&s["expert"]);
    let judged = |side: &str| -> Vec<Judged> {
        let expected = common::f64s(&s[side]["expected"]);
        let p = common::f64s(&s[side]["p_expert"]);
        (0..expert.len()).map(|i| Judged { expert: expert[i], expected: expected[i], p_expert: p[i] }).collect()
    };
    let close = |a: f64, b: f64, what: &str| assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: {a} vs {b}");
    for side in ["base", "tuned"] {
        let a = agreement(&judged(side));
        let r = &s[side]["agreement"];
        close(a.spearman.unwrap(), r["spearman"].as_f64().unwrap(), "spearman");
        close(a.mae, r["mae"].as_f64().unwrap(), "mae");
        close(a.within_1, r["within_1"].as_f64().unwrap(), "within_1");
        close(a.log_loss, r["log_loss"].as_f64().unwrap(), "log_loss");
    }
    let resamples: Vec<Vec<usize>> =
        s["resamples"].as_array().unwrap().iter().map(|row| row.as_array().unwrap().iter().map(|i| i.as_u64().unwrap() as usize).collect()).collect();
    let d = paired_difference(&judged("base"), &judged("tuned"), &resamples, 0.95);
    for (name, got) in [("spearman", &d.spearman), ("mae", &d.mae), ("within_1", &d.within_1), ("log_loss", &d.log_loss)] {
        let want = &s["differences"][name];
        assert_eq!(got.resamples as u64, want["resamples"].as_u64().unwrap(), "{name}");
        close(got.ci_low.unwrap(), want["ci_low"].as_f64().unwrap(), name);
        close(got.ci_high.unwrap(), want["ci_high"].as_f64().unwrap(), name);
    }
}
