//! LoRA against PEFT + PyTorch on the default model (fixtures: tests/reference/make_lora_fixtures.py).
//!
//! - The trainer starts from a PEFT-saved adapter and reproduces PEFT's per-step losses.
//! - A PEFT adapter loads here and scores like PEFT; an adapter written by `cqa train` loads in
//!   PEFT (checked by the script) and scores the same there as here.

mod common;

use cqa_studio::data::parse_annotations;
use cqa_studio::device::block_on;
use cqa_studio::lora::{Adapter, LoraConfig};
use cqa_studio::train::{TrainConfig, Trainer};

fn adapter(dir: &str) -> Adapter {
    let dir = common::root().join("tests/fixtures").join(dir);
    let config = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    let weights = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    Adapter::from_peft(&config, &weights, &common::default_model().model.projection_shapes()).unwrap()
}

fn score_with(adapter: Option<&Adapter>, merge: bool) -> Vec<f32> {
    let fixture = common::fixture("lora_reference.json");
    let base = common::default_model();
    let tuned;
    let lm = match adapter {
        Some(a) => {
            tuned = base.with_adapter(a, merge).unwrap();
            &tuned
        }
        None => base,
    };
    let s = &fixture["score"];
    block_on(cqa_studio::eval::score(lm, s["text"].as_str().unwrap(), Some(s["context"].as_str().unwrap())))
        .unwrap()
        .logprobs
}

#[test]
fn peft_adapter_loads_and_scores_like_peft() {
    let fixture = common::fixture("lora_reference.json");
    let init = adapter("peft_init");
    assert_eq!(init.config.rank, 2);
    assert_eq!(init.factors.len(), 30 * 7);
    let expected = common::floats(&fixture["score"]["init_logprobs"]);
    let base = common::floats(&fixture["score"]["base_logprobs"]);
    for merge in [false, true] {
        let got = score_with(Some(&init), merge);
        let diff = common::max_abs_diff(&got, &expected);
        println!("PEFT init adapter (merge={merge}): max |Δ logprob| = {diff:.2e}");
        assert!(diff < 2e-3, "diff {diff}");
    }
    // The check can fail: without the adapter the scores are clearly different.
    assert!(common::max_abs_diff(&score_with(None, true), &expected) > 1e-2);
    assert!(common::max_abs_diff(&score_with(None, true), &base) < 2e-3);
}

#[test]
fn cqa_trained_adapter_scores_like_it_does_in_peft() {
    let fixture = common::fixture("lora_reference.json");
    let trained = adapter("cqa_adapter");
    assert_eq!(trained.config.targets, ["q_proj", "v_proj"]);
    let expected = common::floats(&fixture["score"]["cqa_adapter_logprobs"]);
    let got = score_with(Some(&trained), true);
    let diff = common::max_abs_diff(&got, &expected);
    println!("cqa adapter, PEFT vs cqa: max |Δ logprob| = {diff:.2e}");
    assert!(diff < 2e-3, "diff {diff}");
}

#[test]
fn training_steps_match_peft() {
    let fixture = common::fixture("lora_reference.json");
    let c = &fixture["config"];
    let lm = common::default_model();
    let bytes = std::fs::read(common::root().join("tests/fixtures/lora_records.jsonl")).unwrap();
    let records = parse_annotations(&bytes).accept(false).unwrap();
    let f = |k: &str| c[k].as_f64().unwrap();
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let config = TrainConfig {
        lora: LoraConfig {
            rank: u("rank"),
            alpha: f("alpha"),
            dropout: 0.0,
            targets: c["targets"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect(),
        },
        learning_rate: f("learning_rate"),
        epochs: u("epochs"),
        max_len: u("max_len"),
        batch_size: u("batch_size"),
        grad_accum: u("grad_accum"),
        weight_decay: f("weight_decay"),
        warmup_ratio: f("warmup_ratio"),
        max_grad_norm: f("max_grad_norm"),
        held_out: 0.0,
        seed: c["seed"].as_u64().unwrap(),
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(lm, &records, config, Some(adapter("peft_init"))).unwrap();

    // Same rendering and tokenization as the reference.
    let mut examples: Vec<_> = trainer.train_examples().to_vec();
    examples.sort_by(|a, b| a.id.cmp(&b.id));
    for (ours, theirs) in examples.iter().zip(fixture["examples"].as_array().unwrap()) {
        assert_eq!(ours.id, theirs["id"].as_str().unwrap());
        assert_eq!(ours.ids, common::ids(&theirs["ids"]), "token ids of {}", ours.id);
        assert_eq!(ours.loss_from as u64, theirs["loss_from"].as_u64().unwrap());
    }

    let steps = fixture["steps"].as_array().unwrap();
    assert_eq!(trainer.total_steps(), steps.len());
    let mut losses = Vec::new();
    for expected in steps {
        let r = block_on(trainer.step()).unwrap().unwrap();
        let want = expected["loss"].as_f64().unwrap();
        let rel = (r.loss - want).abs() / want;
        let norm_rel = (r.grad_norm - expected["grad_norm"].as_f64().unwrap()).abs() / expected["grad_norm"].as_f64().unwrap();
        println!("step {}: loss {:.6} (PEFT {want:.6}, rel {rel:.1e}), grad norm rel {norm_rel:.1e}", r.step, r.loss);
        assert!((r.learning_rate - expected["learning_rate"].as_f64().unwrap()).abs() < 1e-12);
        assert!(rel < 1e-3, "step {}: loss {} vs PEFT {want}", r.step, r.loss);
        assert!(norm_rel < 1e-2, "step {}: grad norm {} vs PEFT {}", r.step, r.grad_norm, expected["grad_norm"]);
        losses.push(r.loss);
    }
    // The steps do move the loss, so matching them is a real check of the update.
    assert!(losses.last().unwrap() < &(losses[0] * 0.97), "{losses:?}");
}
