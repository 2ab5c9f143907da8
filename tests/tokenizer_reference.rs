//! The tokenizer rebuilt from GGUF metadata equals transformers' tokenizer for the same GGUF, and
//! the chat template renders byte-identically (fixture: tests/reference/make_golden.py).

mod common;
use cqa_studio::gguf::GgufFile;
use cqa_studio::tokenizer::{ChatMessage, TextTokenizer};

fn tokenizer() -> TextTokenizer {
    let file = GgufFile::parse(common::default_model_bytes()).unwrap();
    TextTokenizer::from_gguf(&file).unwrap()
}

#[test]
fn gguf_tokenizer_matches_transformers() {
    let tok = tokenizer();
    let fixture = common::fixture("tokenizer_cases.json");
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "the fixture must hold at least 30 strings");
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = common::ids(&case["ids"]);
        let got = tok.encode(text, true).unwrap();
        if got != expected {
            failures.push(format!("{text:?}: got {got:?}, transformers {expected:?}"));
            continue;
        }
        let decoded = tok.decode(&got, false).unwrap();
        if decoded != case["decoded"].as_str().unwrap() {
            failures.push(format!("decode {text:?}: got {decoded:?}, transformers {:?}", case["decoded"]));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases differ:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn chat_template_matches_transformers() {
    let tok = tokenizer();
    let fixture = common::fixture("tokenizer_cases.json");
    for case in fixture["chat"].as_array().unwrap() {
        let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
        let rendered = tok.apply_chat_template(&messages, true).unwrap();
        assert_eq!(rendered, case["rendered"].as_str().unwrap());
        assert_eq!(tok.encode(&rendered, false).unwrap(), common::ids(&case["ids"]));
    }
}

#[test]
fn special_tokens_match_transformers() {
    let tok = tokenizer();
    let special = &common::fixture("tokenizer_cases.json")["special"];
    assert_eq!(tok.bos_prepended().is_some(), special["add_bos"].as_bool().unwrap());
    let eos = special["eos_id"].as_u64().unwrap() as u32;
    assert!(tok.stop_ids().contains(&eos));
    assert_eq!(tok.vocab_size(), 49152);
}
