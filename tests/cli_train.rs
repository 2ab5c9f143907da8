//! `cqa train`, `coverage` and `export-trl` as a contract: the JSON lines, the PEFT adapter on
//! disk, `--adapter` on score/generate, and line-numbered refusals of bad annotation files.

mod common;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

fn cqa(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cqa")).args(args).output().expect("run cqa")
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "cqa failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    // Under the target directory with fixed names, so that runs reuse one copy, not one per process.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cqa-cli-train").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A tiny random model carrying the default model's tokenizer, written once.
fn tiny_model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let path = temp_dir("model").join("tiny.gguf");
        let default = common::default_model_path();
        ok(cqa(&["--model", s(&default), "debug-tiny-gguf", "--out", s(&path), "--seed", "5"]));
        path
    })
}

fn records() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| common::root().join("tests/fixtures/lora_records.jsonl"))
}

fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"))).collect()
}

const SMALL: [&str; 12] =
    ["--rank", "2", "--alpha", "4", "--epochs", "1", "--batch", "1", "--grad-accum", "1", "--max-len", "320"];

#[test]
fn train_prints_json_lines_and_writes_a_peft_adapter() {
    let out = temp_dir("run");
    let mut args = vec!["--model", s(tiny_model()), "train", "--data", s(records()), "--out", s(&out), "--json"];
    args.extend(SMALL);
    args.extend(["--held-out", "0.34", "--eval-every", "1", "--lr", "1e-2", "--targets", "q,v,down"]);
    let lines = json_lines(&ok(cqa(&args)));
    let steps: Vec<_> = lines.iter().filter(|l| l.get("loss").is_some()).collect();
    let held: Vec<_> = lines.iter().filter(|l| l.get("held_out_loss").is_some()).collect();
    assert_eq!(steps.len(), 2, "2 training records, batch 1, 1 epoch: {lines:?}");
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["step"], i as u64 + 1);
        assert!(step["loss"].as_f64().unwrap() > 0.0);
        assert!(step["tokens_per_s"].as_f64().unwrap() > 0.0);
    }
    // Held-out loss before training, then after every step.
    assert_eq!(held.iter().map(|h| h["step"].as_u64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);
    // Every line is the engine's own `TrainEvent` (the type the browser's events serialise from),
    // with nothing dropped or added: parsing and re-serialising gives the line back.
    for line in &lines {
        let event: cqa_studio::train::TrainEvent = serde_json::from_value(line.clone()).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(&serde_json::to_value(&event).unwrap(), line);
        assert!(line["kind"] == "step" || line["kind"] == "held_out", "{line}");
    }
    assert!(steps.iter().all(|s| s["kind"] == "step" && s["elapsed_s"].as_f64().unwrap() > 0.0));

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 2);
    assert_eq!(config["target_modules"], serde_json::json!(["q_proj", "v_proj", "down_proj"]));
    assert!(out.join("adapter_model.safetensors").exists());
    assert!(out.join("checkpoint.safetensors").exists());
    // The held-out record (1 of 3 at --held-out 0.34) is written out for `cqa appreciate`.
    let held = std::fs::read_to_string(out.join("held_out.jsonl")).unwrap();
    assert_eq!(held.lines().count(), 1, "{held}");
    // And the two it trained on, for `cqa agreement --trained-on`: together, every record once.
    let trained = std::fs::read_to_string(out.join("trained.jsonl")).unwrap();
    assert_eq!(trained.lines().count(), 2, "{trained}");
    let mut ids: Vec<String> = held.lines().chain(trained.lines()).map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    let mut all: Vec<String> = std::fs::read_to_string(records()).unwrap().lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_str().unwrap().to_string()).collect();
    all.sort();
    assert_eq!(ids, all);

    // --adapter changes what score and generate see.
    let text = ["--text", "The tide came in over the stones.", "--json"];
    let base: serde_json::Value =
        serde_json::from_str(&ok(cqa(&[&["--model", s(tiny_model()), "score"][..], &text].concat()))).unwrap();
    let tuned: serde_json::Value = serde_json::from_str(&ok(cqa(
        &[&["--model", s(tiny_model()), "--adapter", s(&out), "score"][..], &text].concat(),
    )))
    .unwrap();
    assert_eq!(base["text_ids"], tuned["text_ids"]);
    assert_ne!(base["total_bits"], tuned["total_bits"]);
    ok(cqa(&["--model", s(tiny_model()), "--adapter", s(&out), "generate", "--prompt", "Once", "--max-tokens", "3"]));

    // An adapter directory without its files is a clear error.
    let empty = temp_dir("empty-adapter");
    let err = cqa(&["--model", s(tiny_model()), "--adapter", s(&empty), "score", "--text", "x y"]);
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stderr).contains("adapter_config.json"));
}

#[test]
fn held_out_zero_trains_on_everything_without_evaluation() {
    let out = temp_dir("all");
    let mut args = vec!["--model", s(tiny_model()), "train", "--data", s(records()), "--out", s(&out), "--json", "--held-out", "0"];
    args.extend(SMALL);
    let lines = json_lines(&ok(cqa(&args)));
    assert_eq!(lines.iter().filter(|l| l.get("loss").is_some()).count(), 3);
    assert!(lines.iter().all(|l| l.get("held_out_loss").is_none()), "{lines:?}");
}

#[test]
fn bad_annotation_files_are_refused_with_line_numbers() {
    let dir = temp_dir("bad");
    let good = std::fs::read_to_string(records()).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    lines.insert(1, "{not json".into());
    lines.push(lines[0].replace("\"dimension\": \"craft\"", "\"dimension\": \"style\"").replace("ann-001", "ann-x"));
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let out = dir.join("out");
    let mut args = vec!["--model", s(tiny_model()), "train", "--data", s(&bad), "--out", s(&out), "--held-out", "0"];
    args.extend(SMALL);
    let result = cqa(&args);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"));
    assert!(stderr.contains("line 2: not valid JSON"), "{stderr}");
    assert!(stderr.contains("line 5: `reasoning[1].dimension`: unknown dimension \"style\""), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    assert!(!out.join("adapter_model.safetensors").exists(), "a refused file must not train");
    // The file itself is untouched.
    assert_eq!(std::fs::read_to_string(&bad).unwrap(), lines.join("\n"));

    // Asked to, the good lines train.
    args.push("--keep-good-lines");
    let kept = cqa(&args);
    assert!(kept.status.success(), "{}", String::from_utf8_lossy(&kept.stderr));
    assert!(String::from_utf8_lossy(&kept.stderr).contains("skipped line 2"));

    // Not UTF-8.
    let latin1 = dir.join("latin1.jsonl");
    let mut bytes = good.lines().next().unwrap().as_bytes().to_vec();
    bytes.extend(b"\n{\"id\": \"caf\xe9\"}\n");
    std::fs::write(&latin1, bytes).unwrap();
    let result = cqa(&["coverage", "--data", s(&latin1)]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1));
    assert!(stderr.contains("line 2: not valid UTF-8"), "{stderr}");
}

#[test]
fn coverage_and_trl_export() {
    let samples = common::root().join("data/samples/annotations.jsonl");
    let v: serde_json::Value = serde_json::from_str(&ok(cqa(&["coverage", "--data", s(&samples), "--json"]))).unwrap();
    assert!(v["records"].as_u64().unwrap() >= 24);
    let mut total = 0.0;
    for d in ["craft", "audience", "reality"] {
        let share = v["dimensions"][d]["share"].as_f64().unwrap();
        assert!(share >= 0.2, "{d}: {share}");
        total += share;
        assert!(v["dimensions"][d]["steps"].as_u64().unwrap() > 0);
    }
    assert!((total - 1.0).abs() < 1e-9);
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["steps"], v["dimensions"]["craft"]["steps"].as_u64().unwrap() + v["dimensions"]["audience"]["steps"].as_u64().unwrap() + v["dimensions"]["reality"]["steps"].as_u64().unwrap());

    // A craft-only file warns about the two missing dimensions.
    let craft_only = temp_dir("craft").join("craft.jsonl");
    let line = std::fs::read_to_string(records()).unwrap().lines().next().unwrap().replace("\"dimension\": \"audience\"", "\"dimension\": \"craft\"").replace("\"dimension\": \"reality\"", "\"dimension\": \"craft\"");
    std::fs::write(&craft_only, line).unwrap();
    let skewed: serde_json::Value = serde_json::from_str(&ok(cqa(&["coverage", "--data", s(&craft_only), "--json"]))).unwrap();
    assert_eq!(skewed["dimensions"]["craft"]["share"], 1.0);
    let warnings = skewed["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].as_str().unwrap().starts_with("audience has 0 of"));

    let out = temp_dir("trl").join("train.jsonl");
    ok(cqa(&["export-trl", "--data", s(&samples), "--out", s(&out)]));
    let lines = json_lines(&std::fs::read_to_string(&out).unwrap());
    assert_eq!(lines.len() as u64, v["records"].as_u64().unwrap());
    assert_eq!(lines[0]["messages"].as_array().unwrap().len(), 3);
}

#[test]
fn calibrate_and_appreciate_json_shapes() {
    let dir = temp_dir("calibrate");
    let bench = dir.join("bench.jsonl");
    std::fs::write(
        &bench,
        [
            r#"{"id":"lit-a","group":"literary","constraint":"Intent: a quiet ending. Audience: patient readers. Reality: winter by the sea.","passage":"She left the letter on the sill for the frost to read.","degraded":"She felt sad and her heart was broken forever."}"#,
            r#"{"id":"fact-a","group":"factual","constraint":"An encyclopedia entry for school readers.","passage":"Water boils at 100 degrees Celsius at sea level."}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let base: serde_json::Value =
        serde_json::from_str(&ok(cqa(&["--model", s(tiny_model()), "calibrate", "--bench", s(&bench), "--json"]))).unwrap();
    let item = &base["items"][0];
    for key in ["h_x_bits", "h_x_given_y_bits", "delta_i_bits"] {
        assert!(item["base"][key].is_f64(), "{key} in {item}");
    }
    let b = &item["base"];
    assert!((b["h_x_bits"].as_f64().unwrap() - b["h_x_given_y_bits"].as_f64().unwrap() - b["delta_i_bits"].as_f64().unwrap()).abs() < 1e-9);
    assert!(item.get("tuned").is_none() && item.get("delta_delta_i_bits").is_none());
    assert!(item["quality_contrast_bits"]["base"].is_f64());
    assert!(base["items"][1].get("quality_contrast_bits").is_none());
    assert_eq!(base["groups"]["literary"]["n"], 1);
    for key in ["mean", "median", "sd", "wilcoxon_p", "cohens_d"] {
        assert!(base["groups"]["factual"].get(key).is_some(), "{key}");
    }
    // h_x_bits is exactly what `score --text` reports.
    let scored: serde_json::Value = serde_json::from_str(&ok(cqa(&[
        "--model", s(tiny_model()), "score", "--text", "Water boils at 100 degrees Celsius at sea level.", "--json",
    ])))
    .unwrap();
    assert_eq!(scored["total_bits"], base["items"][1]["base"]["h_x_bits"]);

    // With an adapter: tuned, Δ(ΔI), and the same token counts.
    let adapter = dir.join("adapter");
    let mut args = vec!["--model", s(tiny_model()), "train", "--data", s(records()), "--out", s(&adapter), "--held-out", "0", "--lr", "5e-2"];
    args.extend(SMALL);
    ok(cqa(&args));
    let tuned: serde_json::Value = serde_json::from_str(&ok(cqa(&[
        "--model", s(tiny_model()), "--adapter", s(&adapter), "calibrate", "--bench", s(&bench), "--json", "--tokens",
    ])))
    .unwrap();
    let item = &tuned["items"][0];
    let dd = item["tuned"]["delta_i_bits"].as_f64().unwrap() - item["base"]["delta_i_bits"].as_f64().unwrap();
    assert!((item["delta_delta_i_bits"].as_f64().unwrap() - dd).abs() < 1e-9);
    assert_eq!(item["base"]["logprobs_x_given_y"].as_array().unwrap().len() as u64, item["n_tokens"].as_u64().unwrap());
    assert_eq!(item["token_shift"].as_array().unwrap().len() as u64, item["n_tokens"].as_u64().unwrap());
    assert_eq!(tuned["groups"]["literary"]["mean"].as_f64().unwrap(), item["delta_delta_i_bits"].as_f64().unwrap());

    // Appreciation: per record a verdict distribution (10 continuations, p sums to 1) next to
    // the critique, for base and tuned; the summary's agreement figures and tuned − base.
    let two = dir.join("two.jsonl");
    std::fs::write(&two, std::fs::read_to_string(records()).unwrap().lines().take(2).collect::<Vec<_>>().join("\n")).unwrap();
    let appreciate = |mode: &str| -> serde_json::Value {
        serde_json::from_str(&ok(cqa(&[
            "--model", s(tiny_model()), "--adapter", s(&adapter), "appreciate", "--data", s(&two), "--json", "--max-tokens", "4",
            "--mode", mode, "--bootstrap", "50",
        ])))
        .unwrap()
    };
    let v = appreciate("critique");
    let summary = &v["summary"];
    assert_eq!(summary["mode"], "critique");
    assert_eq!(summary["records"], 2);
    for model in ["base", "tuned"] {
        assert!(summary[model]["nll_per_token"].as_f64().unwrap() > 0.0, "{v}");
        assert_eq!(summary[model]["agreement"]["n"], 2);
        for key in ["mae", "within_1", "log_loss"] {
            assert!(summary[model]["agreement"][key].is_f64(), "{key}: {summary}");
        }
        let r = &v["records"][0][model];
        assert!(r["critique"].is_string());
        let continuations = r["continuations"].as_array().unwrap();
        assert_eq!(continuations.len(), 10);
        assert!(continuations[6].as_str().unwrap().ends_with("Verdict: 7/10"), "{continuations:?}");
        let p: Vec<f64> = r["p"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let expected: f64 = p.iter().enumerate().map(|(i, p)| (i + 1) as f64 * p).sum();
        assert!((r["expected"].as_f64().unwrap() - expected).abs() < 1e-9);
        let mass = r["verdict_mass"].as_f64().unwrap();
        assert!(mass > 0.0 && mass <= 1.0, "{mass}");
        assert!(r["prefix"].as_str().unwrap().starts_with("<|im_start|>system"), "the prefix holds the chat template");
    }
    assert!(summary["tuned"]["nll_per_token"].as_f64().unwrap() < summary["base"]["nll_per_token"].as_f64().unwrap(), "training lowers the NLL of a trained record");
    let diff = &summary["tuned_minus_base"]["mae"];
    let point = diff["tuned_minus_base"].as_f64().unwrap();
    let mae = |m: &str| summary[m]["agreement"]["mae"].as_f64().unwrap();
    assert!((point - (mae("tuned") - mae("base"))).abs() < 1e-12);
    assert!(diff["ci_low"].as_f64().unwrap() <= diff["ci_high"].as_f64().unwrap());
    // Direct and reasoning prefixes sample nothing: the same command gives the same bytes.
    for mode in ["direct", "reasoning"] {
        let a = appreciate(mode);
        assert_eq!(a, appreciate(mode), "{mode} is deterministic");
        assert!(a["records"][0]["base"].get("critique").is_none());
    }
    let reasoning = appreciate("reasoning");
    let r = &reasoning["records"][0]["base"];
    assert!(r["prefix"].as_str().unwrap().contains("Reasoning:\n1. ["), "the expert's steps are the prefix");
    assert_eq!(r["continuations"][0], "\n\nVerdict: 1/10", "the blank line before the verdict is scored with it");
    assert_eq!(appreciate("direct")["records"][0]["base"]["continuations"][0], "Verdict: 1/10");
}
