//! Text generation: a pull-based session, `next_token()`, that prefills the prompt once and then decodes one
//! token at a time through the KV cache. The caller owns the loop, so it can stream, pause or
//! abort (the browser's worker does exactly that). Each token is picked by `crate::sampling`.

use crate::error::{Error, Result};
use crate::loader::LanguageModel;
use crate::model::KvCache;
use crate::model::gpu_decode::GpuDecoder;
use crate::device::read_f32;
use crate::sampling::Sampler;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

// A session's settings: its callers name them here.
pub use crate::sampling::SamplingParams;

/// Why a generation session stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-sequence / end-of-turn token.
    EndOfSequence,
    /// `max_new_tokens` were produced.
    MaxTokens,
    /// The model's context window is full.
    ContextFull,
}

/// One generation in progress. Holds its own cache; borrows the model only per call.
///
/// The prompt goes through the model's tensor ops. On a GPU backend the tokens after it go
/// through the fused decode step (`model::gpu_decode`) where the model allows it, continuing the
/// same cache; elsewhere through the tensor ops too.
pub struct GenerationSession {
    cache: KvCache,
    /// The fused GPU decoder, once the first decode step has made it.
    gpu: Option<GpuDecoder>,
    /// Whether making it was tried (it is tried once a session).
    gpu_tried: bool,
    sampler: Sampler,
    /// Prompt tokens not yet fed through the model.
    pending: Vec<u32>,
    /// Prompt + generated ids (for the repetition penalty).
    history: Vec<u32>,
    generated: Vec<u32>,
    max_new_tokens: usize,
    stop: Option<StopReason>,
}

impl GenerationSession {
    /// Starts a session over `prompt_ids` (already tokenized, chat template applied if wanted).
    pub fn new(lm: &LanguageModel, prompt_ids: Vec<u32>, params: SamplingParams) -> Result<Self> {
        if prompt_ids.is_empty() {
            return Err(Error::Input("the prompt is empty: give at least one token".into()));
        }
        lm.check_ids(&prompt_ids)?;
        Ok(GenerationSession {
            cache: lm.model.new_cache(),
            gpu: None,
            gpu_tried: false,
            max_new_tokens: params.max_new_tokens,
            sampler: Sampler::new(params)?,
            history: prompt_ids.clone(),
            pending: prompt_ids,
            generated: Vec::new(),
            stop: None,
        })
    }

    /// Produces the next token, or `None` once the session has stopped (see [`Self::stop_reason`]).
    /// The stop token itself is not returned.
    pub async fn next_token(&mut self, lm: &LanguageModel) -> Result<Option<u32>> {
        if self.stop.is_some() {
            return Ok(None);
        }
        if self.generated.len() >= self.max_new_tokens {
            self.stop = Some(StopReason::MaxTokens);
            return Ok(None);
        }
        let input = if self.pending.is_empty() {
            vec![*self.generated.last().expect("a decode step follows a generated token")]
        } else {
            std::mem::take(&mut self.pending)
        };
        if self.position() + input.len() > lm.config.max_position_embeddings {
            self.stop = Some(StopReason::ContextFull);
            return Ok(None);
        }
        let next = if input.len() == 1 && self.gpu_decoder(lm).is_some() {
            let gpu = self.gpu.as_mut().expect("made above");
            gpu.step(input[0])?;
            let id = gpu.picked_token().await?;
            self.sampler.count_draw();
            id
        } else {
            let n = input.len();
            let ids: Vec<i32> = input.iter().map(|&t| t as i32).collect();
            let tokens = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), &lm.device);
            let step = |cache: &mut KvCache| -> Result<_> {
                let hidden = lm.model.forward_hidden(tokens, cache)?;
                // Only the last position's logits are needed: skip the vocab projection for the rest.
                Ok(lm.model.logits(hidden.narrow(1, n - 1, 1)))
            };
            // A decode step (one token after the prompt) may round x to 8 bits; the prompt never.
            let logits = if n == 1 && !self.sampler.params().f32_activations {
                cqa_quant::with_int8_activations(|| step(&mut self.cache))?
            } else {
                step(&mut self.cache)?
            };
            let mut logits = read_f32(logits).await?;
            self.sampler.sample(&mut logits, &self.history)
        };
        if lm.tokenizer.stop_ids().contains(&next) {
            self.stop = Some(StopReason::EndOfSequence);
            return Ok(None);
        }
        self.generated.push(next);
        self.history.push(next);
        Ok(Some(next))
    }

    /// Positions the model has seen so far.
    fn position(&self) -> usize {
        self.gpu.as_ref().map_or(self.cache.len(), GpuDecoder::position)
    }

    /// The fused GPU decoder, made at the first decode step (after the prompt) with room for the
    /// rest of the session; `None` where the model or device does not allow it.
    fn gpu_decoder(&mut self, lm: &LanguageModel) -> Option<&GpuDecoder> {
        if !self.gpu_tried {
            self.gpu_tried = true;
            let room = (self.cache.len() + self.max_new_tokens + 1).min(lm.config.max_position_embeddings);
            self.gpu = GpuDecoder::new(&lm.model, &self.cache, room);
            if let Some(gpu) = self.gpu.as_mut() {
                // Where the device cannot take the sampler, the tensor-op path samples on the host.
                if !self.sampler.is_plain_greedy() && gpu.sample_on_device(&self.sampler, &self.history).is_err() {
                    self.gpu = None;
                }
            }
        }
        self.gpu.as_ref()
    }

    /// Whether the decode steps run on the fused GPU kernels.
    pub fn uses_fused_gpu_decode(&self) -> bool {
        self.gpu.is_some()
    }

    /// Dispatches the last fused GPU step launched (0 on the tensor-op path).
    pub fn dispatches_per_token(&self) -> usize {
        self.gpu.as_ref().map_or(0, GpuDecoder::dispatches_per_step)
    }

    /// Ids generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.stop
    }
}

/// Turns a growing list of ids into text increments, holding back incomplete UTF-8 (a token can
/// end mid-character, e.g. half of an emoji).
#[derive(Debug, Default, Clone)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    /// Adds a token and returns the newly completed text, possibly empty.
    pub fn push(&mut self, lm: &LanguageModel, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = lm.tokenizer.decode(&self.ids, true)?;
        if text.ends_with('\u{FFFD}') || text.len() < self.emitted || !text.is_char_boundary(self.emitted) {
            return Ok(String::new());
        }
        let new = text[self.emitted..].to_string();
        self.emitted = text.len();
        Ok(new)
    }
}

/// Generates from `prompt_ids` to the end, calling `on_text` with each decoded increment.
pub async fn generate(
    lm: &LanguageModel,
    prompt_ids: Vec<u32>,
    params: SamplingParams,
    mut on_text: impl FnMut(&str),
) -> Result<(Vec<u32>, StopReason)> {
    let mut session = GenerationSession::new(lm, prompt_ids, params)?;
    let mut stream = TextStream::default();
    while let Some(id) = session.next_token(lm).await? {
        let piece = stream.push(lm, id)?;
        if !piece.is_empty() {
            on_text(&piece);
        }
    }
    let reason = session.stop_reason().unwrap_or(StopReason::MaxTokens);
    Ok((session.generated().to_vec(), reason))
}
