//! `cqa agreement` and `cqa report` as a contract: the bundled samples with the second
//! annotator give the `krippendorff` package's α, models from an `appreciate --json` report are
//! placed among the annotators without the works they trained on, and the report is one
//! self-contained HTML file; bad input is one sentence.

mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cqa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cqa")).args(args).output().expect("run cqa")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "cqa failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn error(out: Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: ") && !stderr.contains("panicked"), "{stderr}");
    stderr
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cqa-cli-study").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Both bundled sample files in one JSONL file.
fn both_annotators(dir: &Path) -> PathBuf {
    let samples = common::root().join("data/samples");
    let text = ["annotations.jsonl", "annotations-second-annotator.jsonl"]
        .iter()
        .map(|f| std::fs::read_to_string(samples.join(f)).unwrap().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("both.jsonl");
    std::fs::write(&path, text + "\n").unwrap();
    path
}

// krippendorff.alpha over the twelve works both annotators rated (data/README.md).
const ALPHA_INTERVAL: f64 = 0.85625;
const ALPHA_ORDINAL: f64 = 0.8387890220446812;

#[test]
fn agreement_of_the_bundled_annotators() {
    let dir = temp_dir("humans");
    let data = both_annotators(&dir);
    let v: serde_json::Value = serde_json::from_str(&ok(cqa(&["agreement", "--data", s(&data), "--json", "--bootstrap", "200"]))).unwrap();
    assert!((v["alpha_interval"]["value"].as_f64().unwrap() - ALPHA_INTERVAL).abs() < 1e-9, "{}", v["alpha_interval"]);
    assert!((v["alpha_ordinal"]["value"].as_f64().unwrap() - ALPHA_ORDINAL).abs() < 1e-9, "{}", v["alpha_ordinal"]);
    assert_eq!(v["shared_items"], 12);
    assert_eq!(v["table"]["items"].as_array().unwrap().len(), 30);
    assert_eq!(v["table"]["raters"].as_array().unwrap().len(), 4);
    assert_eq!(v["bootstrap"], 200);
    let ci = &v["alpha_interval"];
    assert!(ci["ci_low"].as_f64().unwrap() < ALPHA_INTERVAL && ALPHA_INTERVAL < ci["ci_high"].as_f64().unwrap(), "{ci}");
    // Hana Brandt shares works with each of the three others; they share none among themselves.
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 3);
    assert!(pairs.iter().all(|p| p["a"] == "Hana Brandt" || p["b"] == "Hana Brandt"));
    assert_eq!(pairs.iter().map(|p| p["n"].as_u64().unwrap()).sum::<u64>(), 12);
    // The same seed gives the same intervals; another seed others.
    let again: serde_json::Value = serde_json::from_str(&ok(cqa(&["agreement", "--data", s(&data), "--json", "--bootstrap", "200"]))).unwrap();
    assert_eq!(again, v);
    let other: serde_json::Value =
        serde_json::from_str(&ok(cqa(&["agreement", "--data", s(&data), "--json", "--bootstrap", "200", "--seed", "7"]))).unwrap();
    assert_ne!(other["alpha_interval"]["ci_low"], v["alpha_interval"]["ci_low"]);
    // The text form names the figures.
    let text = ok(cqa(&["agreement", "--data", s(&data), "--bootstrap", "50"]));
    assert!(text.contains("Krippendorff's α") && text.contains("interval") && text.contains("Hana Brandt"), "{text}");
}

#[test]
fn models_are_placed_among_the_annotators_without_the_works_they_trained_on() {
    let dir = temp_dir("models");
    let data = both_annotators(&dir);
    // An appreciation report as `cqa appreciate --json` prints it (the fields agreement reads):
    // base and tuned expected scores for the second annotator's records.
    let second = std::fs::read_to_string(common::root().join("data/samples/annotations-second-annotator.jsonl")).unwrap();
    let ids: Vec<String> = second.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    let records: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| serde_json::json!({"id": id, "expert_score": 5, "base": {"expected": 5.0 + (i % 3) as f64 * 0.5}, "tuned": {"expected": 2.0 + i as f64 * 0.5}}))
        .collect();
    let appreciation = dir.join("appreciation.json");
    std::fs::write(&appreciation, serde_json::json!({"records": records, "summary": {}}).to_string()).unwrap();
    // The tuned model trained on the first annotator's record of the first work (ann-001).
    let trained = dir.join("trained.jsonl");
    std::fs::write(&trained, std::fs::read_to_string(common::root().join("data/samples/annotations.jsonl")).unwrap().lines().next().unwrap()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ok(cqa(&[
        "agreement", "--data", s(&data), "--model-ratings", s(&appreciation), "--trained-on", s(&trained), "--json", "--bootstrap", "100",
    ])))
    .unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.iter().map(|m| m["name"].as_str().unwrap()).collect::<Vec<_>>(), ["base", "tuned"]);
    assert_eq!(models[0]["items"], 12);
    assert_eq!(models[0]["excluded_trained"], 0);
    assert_eq!(models[1]["items"], 11, "the work of ann-001 / hb-001 does not count for tuned");
    assert_eq!(models[1]["excluded_trained"], 1);
    assert_eq!(models[1]["with_each_human"].as_array().unwrap().len(), 4);
    // Leave-one-out for each human who shares works with the others.
    for loo in models[1]["leave_one_out"].as_array().unwrap() {
        assert!(loo["n"].as_u64().unwrap() >= 1);
        let (m, h, d) = (&loo["model_spearman"]["value"], &loo["human_spearman"]["value"], &loo["spearman_model_minus_human"]["value"]);
        if let (Some(m), Some(h), Some(d)) = (m.as_f64(), h.as_f64(), d.as_f64()) {
            assert!((m - h - d).abs() < 1e-12);
        }
    }
    assert_eq!(models[1]["vs_humans"]["kind"], "model");

    // Bad input: one sentence each.
    std::fs::write(dir.join("bad.json"), "{\"nothing\": 1}").unwrap();
    let e = error(cqa(&["agreement", "--data", s(&data), "--model-ratings", s(&dir.join("bad.json"))]));
    assert!(e.contains("neither `cqa appreciate --json` output"), "{e}");
    let e = error(cqa(&["agreement", "--data", s(&data), "--trained-on", s(&trained)]));
    assert!(e.contains("no `tuned` model"), "{e}");
    let e = error(cqa(&["agreement", "--data", s(&data), "--bootstrap", "1000000"]));
    assert!(e.contains("bootstrap"), "{e}");
}

#[test]
fn report_writes_one_self_contained_html_file() {
    let dir = temp_dir("report");
    let records: Vec<serde_json::Value> = ["annotations.jsonl", "annotations-second-annotator.jsonl"]
        .iter()
        .flat_map(|f| std::fs::read_to_string(common::root().join("data/samples").join(f)).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>())
        .collect();
    let study = serde_json::json!({
        "format": "cqa-study", "version": 1, "title": "Lab <3>", "created": "2026-12-06T09:00:00Z",
        "app": {"name": "cqa-studio", "version": "test"},
        "model": {"name": "SmolLM2-135M-Instruct.Q4_1.gguf", "size": 1234, "sha256": "ab".repeat(32)},
        "records": records,
        "adapters": [{"name": "r8", "settings": {"lora": {"rank": 8}}, "history": {"steps": [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.1}], "held_out": [{"step": 2, "loss": 2.3}]}, "trained_ids": []}],
        "reports": {"calibration": {"groups": {"literary": {"n": 3, "mean": 0.5, "median": 0.4, "sd": 0.2, "wilcoxon_p": 0.125, "wilcoxon_method": "exact", "cohens_d": 2.5}}}},
    });
    let path = dir.join("study.json");
    std::fs::write(&path, study.to_string()).unwrap();
    let out = dir.join("report.html");
    ok(cqa(&["report", "--study", s(&path), "--out", s(&out)]));
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<h1>Lab &lt;3&gt;</h1>"), "the title is escaped");
    assert!(html.contains("default-src 'none'"), "a policy that forbids every request");
    for section in ["id=\"data\"", "id=\"training\"", "id=\"agreement\"", "id=\"calibration\"", "id=\"comparisons\"", "id=\"settings\""] {
        assert!(html.contains(section), "{section}");
    }
    assert!(html.contains("0.856"), "interval α of the bundled annotators");
    assert!(html.contains("SHA-256 abab"));
    assert_eq!(html.matches("<svg").count(), 3, "coverage, one loss curve, the raters chart");
    for forbidden in ["<script", "src=\"http", "href=\"http", "url("] {
        assert!(!html.contains(forbidden), "{forbidden}");
    }
    // The same study, the same bytes.
    let out2 = dir.join("report2.html");
    ok(cqa(&["report", "--study", s(&path), "--out", s(&out2)]));
    assert_eq!(std::fs::read(&out2).unwrap(), html.as_bytes());

    std::fs::write(dir.join("foreign.json"), r#"{"format": "something", "version": 1}"#).unwrap();
    let e = error(cqa(&["report", "--study", s(&dir.join("foreign.json")), "--out", s(&dir.join("x.html"))]));
    assert!(e.contains("not a study"), "{e}");
    assert!(!dir.join("x.html").exists());
}
