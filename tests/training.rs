//! The LoRA trainer on a tiny random-weight model with the default model's tokenizer and chat
//! template: it learns (held-out loss falls on the bundled samples), it is deterministic for a
//! seed, a checkpointed run resumes to the same result, and adapters survive the PEFT layout.

mod common;

use cqa_studio::LanguageModel;
use cqa_studio::data::{Annotation, parse_annotations};
use cqa_studio::gguf::GgufFile;
use cqa_studio::lora::{Adapter, LoraConfig};
use cqa_studio::model::{Llama, LlamaConfig};
use cqa_studio::tokenizer::TextTokenizer;
use cqa_studio::prompt::build_example;
use cqa_studio::train::{Checkpoint, TrainConfig, TrainControl, TrainEvent, Trainer, split_indices};
use cqa_studio::device::{block_on, cpu};

/// A 2-layer random model that shares the default model's tokenizer (so real annotations fit).
fn tiny_lm(seed: u64) -> LanguageModel {
    let file = GgufFile::parse(common::default_model_bytes()).unwrap();
    let tokenizer = TextTokenizer::from_gguf(&file).unwrap();
    let config = LlamaConfig { max_position_embeddings: 1024, ..LlamaConfig::tiny(tokenizer.vocab_size()) };
    let device = cpu();
    LanguageModel::from_parts(Llama::random(&config, seed, &device), tokenizer, config, &device).unwrap()
}

fn samples() -> Vec<Annotation> {
    let bytes = std::fs::read(common::root().join("data/samples/annotations.jsonl")).unwrap();
    parse_annotations(&bytes).accept(false).expect("the bundled samples are valid")
}

fn small_config() -> TrainConfig {
    TrainConfig {
        lora: LoraConfig { rank: 4, alpha: 8.0, dropout: 0.0, ..LoraConfig::default() },
        learning_rate: 3e-2,
        epochs: 3,
        max_len: 384,
        batch_size: 4,
        grad_accum: 1,
        held_out: 0.2,
        eval_every: 4,
        seed: 11,
        ..TrainConfig::default()
    }
}

#[derive(Default)]
struct Collect(Vec<TrainEvent>);

impl cqa_studio::train::AsyncEventSink for &mut Collect {
    async fn event(&mut self, event: TrainEvent, _: &Trainer) -> cqa_studio::Result<()> {
        self.0.push(event);
        Ok(())
    }
}

fn run_to_end(trainer: &mut Trainer) -> Vec<TrainEvent> {
    let mut sink = Collect::default();
    block_on(cqa_studio::train::run(trainer, &TrainControl::default(), &mut sink, || std::future::ready(()))).unwrap();
    sink.0
}

#[test]
fn held_out_loss_falls_on_the_bundled_samples() {
    let lm = tiny_lm(1);
    let records = samples();
    assert!(records.len() >= 24);
    let mut trainer = Trainer::new(&lm, &records, small_config(), None).unwrap();
    let events = run_to_end(&mut trainer);
    let held: Vec<f64> = events
        .iter()
        .filter_map(|e| match e {
            TrainEvent::HeldOut { held_out_loss, .. } => Some(*held_out_loss),
            _ => None,
        })
        .collect();
    let steps = events.iter().filter(|e| matches!(e, TrainEvent::Step(_))).count();
    assert_eq!(steps, trainer.total_steps());
    assert!(held.len() >= 3, "{held:?}");
    let (first, last) = (held[0], *held.last().unwrap());
    println!("held-out loss: {held:?}");
    assert!(last < first - 0.05, "held-out loss did not fall: {first} → {last}");
}

#[test]
fn runs_are_deterministic_and_resume_from_a_checkpoint() {
    let lm = tiny_lm(2);
    let records: Vec<Annotation> = samples().into_iter().take(8).collect();
    let config = TrainConfig { epochs: 2, batch_size: 2, grad_accum: 2, held_out: 0.25, ..small_config() };

    let mut full = Trainer::new(&lm, &records, config.clone(), None).unwrap();
    let mut losses = Vec::new();
    while let Some(r) = block_on(full.step()).unwrap() {
        losses.push(r.loss);
    }
    let total = losses.len();
    assert!(total >= 4);

    // Same seed, same losses, bit for bit.
    let mut again = Trainer::new(&lm, &records, config.clone(), None).unwrap();
    let mut partial = Vec::new();
    for _ in 0..total / 2 {
        partial.push(block_on(again.step()).unwrap().unwrap().loss);
    }
    assert_eq!(partial, losses[..total / 2]);

    // Stop half-way, serialize, resume: the rest of the run is unchanged.
    let bytes = block_on(again.checkpoint()).unwrap().to_bytes().unwrap();
    drop(again);
    let mut resumed = Trainer::resume(&lm, &records, Checkpoint::from_bytes(&bytes).unwrap()).unwrap();
    while let Some(r) = block_on(resumed.step()).unwrap() {
        partial.push(r.loss);
    }
    assert_eq!(partial, losses);
    assert_eq!(block_on(resumed.adapter()).unwrap(), block_on(full.adapter()).unwrap());

    // A different seed gives a different run.
    let mut other = Trainer::new(&lm, &records, TrainConfig { seed: 12, ..config.clone() }, None).unwrap();
    assert_ne!(block_on(other.step()).unwrap().unwrap().loss, losses[0]);

    // A checkpoint does not resume on other data.
    let fewer: Vec<Annotation> = records[..6].to_vec();
    let err = Trainer::resume(&lm, &fewer, Checkpoint::from_bytes(&bytes).unwrap()).err().expect("must refuse");
    assert!(err.to_string().contains("different set of annotations"), "{err}");
    assert!(Checkpoint::from_bytes(&bytes[..bytes.len() / 2]).is_err());
}

#[test]
fn cancel_and_pause_stop_the_loop_between_steps() {
    let lm = tiny_lm(3);
    let records: Vec<Annotation> = samples().into_iter().take(6).collect();
    let config = TrainConfig { epochs: 3, batch_size: 1, held_out: 0.0, ..small_config() };
    let mut trainer = Trainer::new(&lm, &records, config, None).unwrap();
    let control = TrainControl::default();
    let mut yields = 0;
    struct CancelAfter<'a>(&'a TrainControl, usize);
    impl cqa_studio::train::AsyncEventSink for &mut CancelAfter<'_> {
        async fn event(&mut self, event: TrainEvent, _: &Trainer) -> cqa_studio::Result<()> {
            if let TrainEvent::Step(r) = event {
                if r.step == 2 {
                    self.0.pause();
                }
                if r.step == self.1 {
                    self.0.cancel();
                }
            }
            Ok(())
        }
    }
    let mut sink = CancelAfter(&control, 3);
    let outcome = block_on(cqa_studio::train::run(&mut trainer, &control, &mut sink, || {
        yields += 1;
        // The "UI" resumes after a few idle yields.
        if yields == 5 {
            control.resume();
        }
        std::future::ready(())
    }))
    .unwrap();
    assert_eq!(outcome, cqa_studio::train::RunOutcome::Cancelled);
    assert_eq!(trainer.step_index(), 3, "the loop stops right after the step that cancelled");
    assert!(yields >= 5, "paused loop yields instead of stepping");
}

#[test]
fn examples_mask_the_prompt_and_cut_long_records() {
    let lm = tiny_lm(4);
    let record = &samples()[0];
    let (example, warning) = build_example(&lm, record, 4096).unwrap();
    let example = example.unwrap();
    assert!(warning.is_none());
    let prompt = lm.tokenizer.decode(&example.ids[..example.loss_from], false).unwrap();
    let answer = lm.tokenizer.decode(&example.ids[example.loss_from..], false).unwrap();
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt:?}");
    assert!(answer.starts_with("Reasoning:\n1. ["), "{answer:?}");
    assert!(answer.ends_with("<|im_end|>\n"), "{answer:?}");

    let cut = example.loss_from + 10;
    let (short, warning) = build_example(&lm, record, cut).unwrap();
    assert_eq!(short.unwrap().ids.len(), cut);
    assert!(warning.unwrap().contains(&record.id));
    let (none, warning) = build_example(&lm, record, example.loss_from - 5).unwrap();
    assert!(none.is_none());
    assert!(warning.unwrap().contains("skipped"));
}

#[test]
fn split_is_deterministic_and_keeps_both_sides() {
    let (train, held) = split_indices(26, 0.15, 42);
    assert_eq!(split_indices(26, 0.15, 42), (train.clone(), held.clone()));
    assert_eq!(held.len(), 4);
    assert_eq!(train.len() + held.len(), 26);
    assert_ne!(split_indices(26, 0.15, 43).1, held);
    assert_eq!(split_indices(26, 0.0, 42).1.len(), 0);
    assert_eq!(split_indices(2, 0.9, 1).0.len(), 1);
}

#[test]
fn adapters_round_trip_through_the_peft_layout_and_merge() {
    let lm = tiny_lm(5);
    let shapes = lm.model.projection_shapes();
    let config = LoraConfig { rank: 3, alpha: 6.0, dropout: 0.0, targets: LoraConfig::parse_targets("q,v,down").unwrap() };
    let mut adapter = Adapter::init(&config, &shapes, 9).unwrap();
    assert_eq!(adapter.factors.len(), 2 * 3);
    // Non-zero B so the adapter changes the output.
    for f in adapter.factors.values_mut() {
        for (i, b) in f.b.iter_mut().enumerate() {
            *b = ((i % 7) as f32 - 3.0) * 0.01;
        }
    }
    let json = adapter.peft_config_json(Some("tiny"));
    let bytes = adapter.peft_safetensors().unwrap();
    let back = Adapter::from_peft(&json, &bytes, &shapes).unwrap();
    assert_eq!(back, adapter);

    let ids = lm.tokenizer.encode("The lighthouse keeper counted the ships.", false).unwrap();
    let score = |m: &LanguageModel| block_on(cqa_studio::eval::score_ids(m, vec![], ids.clone())).unwrap().2;
    let base = score(&lm);
    let factored = score(&lm.with_adapter(&adapter, false).unwrap());
    let merged = score(&lm.with_adapter(&adapter, true).unwrap());
    assert!(common::max_abs_diff(&base, &factored) > 1e-3, "the adapter must change the scores");
    assert!(common::max_abs_diff(&factored, &merged) < 1e-4);

    // An adapter for another shape is refused with a clear message.
    let other = tiny_lm_config(LlamaConfig { hidden_size: 16, head_dim: 4, ..LlamaConfig::tiny(lm.config.vocab_size) });
    let err = Adapter::from_peft(&json, &bytes, &other.projection_shapes()).unwrap_err().to_string();
    assert!(err.contains("another model"), "{err}");
    let bad_json = json.replace("\"LORA\"", "\"IA3\"");
    assert!(Adapter::from_peft(&bad_json, &bytes, &shapes).unwrap_err().to_string().contains("IA3"));
    assert!(Adapter::from_peft(&json, &bytes[..100], &shapes).is_err());
}

fn tiny_lm_config(config: LlamaConfig) -> Llama {
    Llama::random(&config, 1, &cpu())
}

#[test]
fn checkpoints_are_due_on_schedule_and_never_twice_for_a_step() {
    let lm = tiny_lm(6);
    let records: Vec<Annotation> = samples().into_iter().take(8).collect();
    let config = TrainConfig { epochs: 2, batch_size: 2, grad_accum: 1, held_out: 0.25, eval_every: 2, ..small_config() };
    let mut trainer = Trainer::new(&lm, &records, config, None).unwrap();
    struct Saves(cqa_studio::train::CheckpointSchedule, Vec<usize>);
    impl cqa_studio::train::AsyncEventSink for &mut Saves {
        async fn event(&mut self, event: TrainEvent, trainer: &Trainer) -> cqa_studio::Result<()> {
            if self.0.due(&event, trainer) {
                self.1.push(trainer.step_index());
            }
            Ok(())
        }
    }
    let mut saves = Saves(cqa_studio::train::CheckpointSchedule::new(3), Vec::new());
    block_on(cqa_studio::train::run(&mut trainer, &TrainControl::default(), &mut saves, || std::future::ready(()))).unwrap();
    // 6 training records, batch 2 → 3 steps per epoch, 6 in all: every 3rd step, after each
    // evaluation (every 2nd step and the last), each step at most once.
    assert_eq!(trainer.total_steps(), 6);
    assert_eq!(saves.1, [2, 3, 4, 6]);
}
