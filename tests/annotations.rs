//! Annotation JSONL import: every bad line is reported with its line number and field, a bad
//! file imports nothing unless asked, and good records survive a round trip unchanged.

use cqa_studio::data::{Annotation, Dimension, annotations_to_jsonl, coverage, parse_annotations};
use cqa_studio::prompt::trl_jsonl;

fn good(id: &str) -> serde_json::Value {
    serde_json::json!({
        "schema": 1, "id": id, "work": "The rain stopped.", "brief": "An opening", "audience": "adults",
        "genre": "literary fiction",
        "reasoning": [
            {"dimension": "craft", "text": "Short and exact."},
            {"dimension": "audience", "text": "Readers expect restraint."},
            {"dimension": "reality", "text": "Rain does stop."}
        ],
        "verdict": {"score": 7, "summary": "Good."},
        "revision": null,
        "provenance": {"expert": "E", "knowledge_engineer": "K", "session": "bc-1", "date": "2026-11-01"},
        "created": "2026-11-01T10:00:00Z", "updated": "2026-11-01T10:05:00Z"
    })
}

fn jsonl(values: &[serde_json::Value]) -> String {
    values.iter().map(|v| v.to_string() + "\n").collect()
}

#[test]
fn good_file_round_trips() {
    let text = jsonl(&[good("a"), good("b")]);
    let records = parse_annotations(text.as_bytes()).accept(false).unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].reasoning[1].dimension, Dimension::Audience);
    let again = parse_annotations(annotations_to_jsonl(&records).as_bytes()).accept(false).unwrap();
    assert_eq!(records, again);
}

#[test]
fn every_bad_line_is_reported_with_line_and_field() {
    let mut missing = good("m");
    missing.as_object_mut().unwrap().remove("work");
    let mut unknown_dim = good("u");
    unknown_dim["reasoning"][1]["dimension"] = "style".into();
    let mut empty_steps = good("e");
    empty_steps["reasoning"] = serde_json::json!([]);
    let mut bad_score = good("s");
    bad_score["verdict"]["score"] = 11.into();
    let mut text = String::new();
    text.push_str(&good("ok1").to_string());
    text.push('\n');
    text.push_str("{\"schema\": 1, \"id\": \n"); // line 2: malformed JSON
    text.push_str(&(missing.to_string() + "\n")); // 3
    text.push_str(&(unknown_dim.to_string() + "\n")); // 4
    text.push_str(&(empty_steps.to_string() + "\n")); // 5
    text.push_str(&(bad_score.to_string() + "\n")); // 6
    text.push_str(&(good("ok1").to_string() + "\n")); // 7: duplicate id
    text.push_str(&(good("ok2").to_string() + "\n")); // 8
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(b"{\"id\": \"\xff\xfe\"}\n"); // 9: not UTF-8

    let report = parse_annotations(&bytes);
    let found: Vec<(usize, Option<&str>)> = report.errors.iter().map(|e| (e.line, e.field.as_deref())).collect();
    assert_eq!(
        found,
        vec![
            (2, None),
            (3, Some("work")),
            (4, Some("reasoning[1].dimension")),
            (5, Some("reasoning")),
            (6, Some("verdict.score")),
            (7, Some("id")),
            (9, None),
        ],
        "{:#?}",
        report.errors
    );
    assert!(report.errors[0].message.contains("not valid JSON"));
    assert!(report.errors[2].message.contains("unknown dimension \"style\""), "{}", report.errors[2].message);
    assert!(report.errors[3].message.contains("empty"));
    assert!(report.errors[6].message.contains("UTF-8"));
    assert_eq!(report.records.len(), 2);

    // A bad file imports nothing by default, and the message lists every problem.
    let err = report.clone().accept(false).unwrap_err().to_string();
    for line in [2, 3, 4, 5, 6, 7, 9] {
        assert!(err.contains(&format!("line {line}:")), "line {line} missing from: {err}");
    }
    // Asked explicitly, the good lines are kept.
    let kept = report.accept(true).unwrap();
    assert_eq!(kept.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["ok1", "ok2"]);
}

#[test]
fn bom_crlf_and_blank_lines_are_accepted() {
    let text = format!("\u{feff}{}\r\n\r\n{}\r\n", good("a"), good("b"));
    let records = parse_annotations(text.as_bytes()).accept(false).unwrap();
    assert_eq!(records.len(), 2);
}

#[test]
fn trl_export_is_chat_format() {
    let records: Vec<Annotation> = parse_annotations(jsonl(&[good("a")]).as_bytes()).accept(false).unwrap();
    let line = trl_jsonl(&records);
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let messages = v["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant"]);
    assert!(messages[1]["content"].as_str().unwrap().contains("The rain stopped."));
    let answer = messages[2]["content"].as_str().unwrap();
    assert!(answer.contains("1. [craft] Short and exact."), "{answer}");
    assert!(answer.ends_with("Verdict: 7/10. Good."), "{answer}");
}

#[test]
fn coverage_warns_on_a_craft_only_file() {
    let mut craft_only = good("c");
    craft_only["reasoning"] = serde_json::json!([
        {"dimension": "craft", "text": "a"}, {"dimension": "craft", "text": "b"}, {"dimension": "audience", "text": "c"}
    ]);
    let records = parse_annotations(jsonl(&[craft_only]).as_bytes()).accept(false).unwrap();
    let c = coverage(&records);
    assert_eq!(c.steps, 3);
    assert_eq!(c.dimensions["craft"].steps, 2);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].starts_with("reality has 0 of 3 steps"), "{:?}", c.warnings);

    let balanced = parse_annotations(jsonl(&[good("b")]).as_bytes()).accept(false).unwrap();
    assert!(coverage(&balanced).warnings.is_empty());
}

#[test]
fn a_flood_of_bad_lines_is_counted_but_listed_only_up_to_the_cap() {
    let bytes = "0\n".repeat(5000);
    let report = parse_annotations(bytes.as_bytes());
    assert_eq!(report.errors.len(), cqa_studio::data::MAX_LISTED_ERRORS);
    assert_eq!(report.error_count, 5000);
    assert_eq!(report.error_lines, 5000);
    assert_eq!(report.errors.last().unwrap().line, 1000);
    let err = report.accept(false).unwrap_err().to_string();
    assert!(err.starts_with("5000 of the file's lines"), "{}", &err[..80]);
    assert!(err.contains("the first 1000 of 5000 problems"));
}
