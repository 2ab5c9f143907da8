//! One prompt path: with a tokenizer that adds BOS (Llama-3 style: a post-processor that puts
//! `<|begin_of_text|>` first, and a chat template that writes `{{ bos_token }}` itself), training
//! and inference see the same prompt ids, with exactly one BOS.

use cqa_studio::LanguageModel;
use cqa_studio::data::parse_annotations;
use cqa_studio::model::{Llama, LlamaConfig};
use cqa_studio::prompt::{AppreciationInput, appreciation_prompt, build_example, chat_prompt, encode_rendered};
use cqa_studio::tokenizer::{ChatMessage, TextTokenizer};
use serde_json::json;

const SPECIALS: [&str; 4] = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"];

const LLAMA3_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

/// A byte-level BPE with one token per byte (no merges) and Llama 3's special tokens, whose
/// post-processor prepends BOS, as Llama 3's tokenizer.json does.
fn llama3_style_tokenizer() -> TextTokenizer {
    // GPT-2's byte → printable-char table.
    let mut vocab = serde_json::Map::new();
    let mut extra = 0u32;
    for b in 0u32..256 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            char::from_u32(b).unwrap()
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap()
        };
        vocab.insert(c.to_string(), json!(b));
    }
    let added: Vec<_> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"id": 256 + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [256], "tokens": ["<|begin_of_text|>"]}}
        },
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false, "vocab": vocab, "merges": []}
    });
    let config = json!({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "chat_template": LLAMA3_TEMPLATE});
    TextTokenizer::from_hf(tokenizer.to_string().as_bytes(), Some(&config.to_string())).expect("the test tokenizer loads")
}

fn tiny_model(tokenizer: TextTokenizer) -> LanguageModel {
    let device = cqa_studio::device::cpu();
    let config = LlamaConfig { max_position_embeddings: 4096, ..LlamaConfig::tiny(260) };
    LanguageModel::from_parts(Llama::random(&config, 1, &device), tokenizer, config, &device).unwrap()
}

const BOS: u32 = 256;

#[test]
fn training_and_inference_prompts_are_identical_with_one_bos() {
    let tokenizer = llama3_style_tokenizer();
    assert_eq!(tokenizer.bos_prepended(), Some(BOS), "the post-processor's BOS is detected");
    let lm = tiny_model(tokenizer);
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/lora_records.jsonl")).unwrap();
    let records = parse_annotations(&bytes).accept(false).unwrap();
    for record in &records {
        let (example, _) = build_example(&lm, record, 4096).unwrap();
        let example = example.unwrap();
        let prompt = appreciation_prompt(&lm, &AppreciationInput::of(record)).unwrap();
        assert_eq!(example.ids[..example.loss_from], prompt.ids[..], "record {}: train and inference prefixes differ", record.id);
        assert_eq!(prompt.ids[0], BOS);
        assert_eq!(example.ids.iter().filter(|&&t| t == BOS).count(), 1, "record {}: exactly one BOS", record.id);
        // The old training path (template text encoded *with* special tokens) doubled it: this
        // test would have caught the mismatch.
        let naive = lm.tokenizer.encode(&prompt.text, true).unwrap();
        assert_eq!(&naive[..2], &[BOS, BOS]);
    }
}

#[test]
fn a_template_without_bos_still_gets_the_models_bos() {
    // The rendered text lacks BOS (as many GGUF templates do): the one rule adds it once.
    let tokenizer = llama3_style_tokenizer();
    let ids = encode_rendered(&tokenizer, "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>").unwrap();
    assert_eq!(ids[0], BOS);
    assert_eq!(ids.iter().filter(|&&t| t == BOS).count(), 1);
    let lm = tiny_model(tokenizer);
    let chat = chat_prompt(&lm, &[ChatMessage::new("user", "hi")]).unwrap();
    assert!(chat.text.starts_with("<|begin_of_text|>"));
    assert_eq!(chat.ids.iter().filter(|&&t| t == BOS).count(), 1);
}
