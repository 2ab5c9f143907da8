//! The appreciation task's prompts, in one place: record → chat messages → token ids, and the
//! training example with its loss mask. Training, appreciation, generation and the browser all
//! come through here, so they all see the same prefix.
//!
//! One rule for special tokens: a rendered chat template is encoded *without* adding special
//! tokens (as transformers' `apply_chat_template(tokenize=True)` does), and BOS is then prepended
//! only when the model adds one and the template did not already write it. A model whose
//! tokenizer adds BOS (Llama 3, many GGUFs) therefore gets exactly one BOS, whichever path built
//! the prompt.

use crate::data::Annotation;
use crate::error::{Error, Result};
use crate::loader::LanguageModel;
use crate::tokenizer::{ChatMessage, TextTokenizer};
use serde::{Deserialize, Serialize};

/// The system prompt of the appreciation task.
pub const APPRECIATION_SYSTEM_PROMPT: &str = "You are an expert reader of creative writing. Judge the work against its brief, its intended audience and the logic of its world. Reason step by step, tagging each step [craft], [audience] or [reality], then give a verdict from 1 to 10.";

/// What the model is asked to appreciate: the fields of a record that form the prompt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppreciationInput {
    pub brief: String,
    pub audience: String,
    pub genre: String,
    pub work: String,
}

impl AppreciationInput {
    pub fn of(record: &Annotation) -> Self {
        AppreciationInput {
            brief: record.brief.clone(),
            audience: record.audience.clone(),
            genre: record.genre.clone(),
            work: record.work.clone(),
        }
    }

    /// The system and user turns that ask for an appreciation of the work.
    pub fn messages(&self) -> Vec<ChatMessage> {
        let AppreciationInput { brief, audience, genre, work } = self;
        let user = format!("Brief: {brief}\nAudience: {audience}\nGenre: {genre}\n\nWork:\n{work}");
        vec![ChatMessage::new("system", APPRECIATION_SYSTEM_PROMPT), ChatMessage::new("user", &user)]
    }
}

/// The line that closes every trained response, e.g. `Verdict: 7/10`.
pub fn verdict_line(score: u8) -> String {
    format!("Verdict: {score}/10")
}

/// The assistant turn the model learns: the expert's numbered, tagged steps, then the verdict.
pub fn expert_response(record: &Annotation) -> String {
    let mut out = reasoning_text(record);
    out.push_str(&format!("{}. {}", verdict_line(record.verdict.score), record.verdict.summary.trim()));
    out
}

/// The expert's reasoning part of [`expert_response`], up to (not including) the verdict line.
pub fn reasoning_text(record: &Annotation) -> String {
    let mut out = String::from("Reasoning:\n");
    for (i, step) in record.reasoning.iter().enumerate() {
        out.push_str(&format!("{}. [{}] {}\n", i + 1, step.dimension.name(), step.text.trim()));
    }
    out.push('\n');
    out
}

/// The whole conversation, as TRL's chat format holds it.
pub fn record_chat(record: &Annotation) -> Vec<ChatMessage> {
    let mut messages = AppreciationInput::of(record).messages();
    messages.push(ChatMessage::new("assistant", &expert_response(record)));
    messages
}

/// The training set as HF TRL chat-format JSONL: one `{"messages": [...]}` per line.
pub fn trl_jsonl(records: &[Annotation]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::json!({ "messages": record_chat(r) }).to_string());
        out.push('\n');
    }
    out
}

/// Token ids of a rendered chat template, by the one rule in the module docs.
pub fn encode_rendered(tokenizer: &TextTokenizer, rendered: &str) -> Result<Vec<u32>> {
    let mut ids = tokenizer.encode(rendered, false)?;
    if let Some(bos) = tokenizer.bos_prepended()
        && ids.first() != Some(&bos)
    {
        ids.insert(0, bos);
    }
    Ok(ids)
}

/// The rendered prompt (template text, generation prompt included) and its token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub ids: Vec<u32>,
}

/// Renders `messages` with the model's chat template, generation prompt added, and encodes it.
pub fn chat_prompt(lm: &LanguageModel, messages: &[ChatMessage]) -> Result<Prompt> {
    let text = lm.tokenizer.apply_chat_template(messages, true)?;
    let ids = encode_rendered(&lm.tokenizer, &text)?;
    Ok(Prompt { text, ids })
}

/// The appreciation prompt for `input`, exactly as training renders it.
pub fn appreciation_prompt(lm: &LanguageModel, input: &AppreciationInput) -> Result<Prompt> {
    chat_prompt(lm, &input.messages())
}

/// A plain prompt (no template): encoded with special tokens, as a base model expects.
pub fn plain_prompt(lm: &LanguageModel, text: &str) -> Result<Prompt> {
    Ok(Prompt { text: text.to_string(), ids: lm.tokenizer.encode(text, true)? })
}

/// One tokenized training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub ids: Vec<u32>,
    /// Index of the first assistant token: tokens `ids[loss_from..]` are predicted and scored.
    pub loss_from: usize,
}

impl Example {
    /// Number of scored tokens.
    pub fn targets(&self) -> usize {
        self.ids.len() - self.loss_from
    }
}

/// Renders and tokenizes one record. The prompt is [`appreciation_prompt`]; the completion is
/// what the full conversation adds after it, so the split is exact for any template. Returns the
/// example (or `None` if nothing is left to learn) and any warning.
pub fn build_example(lm: &LanguageModel, record: &Annotation, max_len: usize) -> Result<(Option<Example>, Option<String>)> {
    let prompt = appreciation_prompt(lm, &AppreciationInput::of(record))?;
    let full = lm.tokenizer.apply_chat_template(&record_chat(record), false)?;
    let Some(completion) = full.strip_prefix(&prompt.text) else {
        return Err(Error::Template(
            "this model's chat template renders the prompt differently inside a full conversation, so the assistant turn cannot be isolated".into(),
        ));
    };
    let mut ids = prompt.ids;
    let loss_from = ids.len();
    ids.extend(lm.tokenizer.encode(completion, false)?);
    lm.check_ids(&ids)?;
    let total = ids.len();
    if loss_from + 1 >= max_len {
        let warning = format!(
            "record `{}` was skipped: its prompt alone is {loss_from} tokens, over max_len {max_len}",
            record.id
        );
        return Ok((None, Some(warning)));
    }
    let mut warning = None;
    if total > max_len {
        ids.truncate(max_len);
        warning = Some(format!(
            "record `{}` is {total} tokens and was cut to max_len {max_len}: {} of its {} response tokens are trained",
            record.id,
            max_len - loss_from,
            total - loss_from
        ));
    }
    Ok((Some(Example { id: record.id.clone(), ids, loss_from }), warning))
}
