//! Checkpoints: when to take one, and the file that holds one (the adapter, the AdamW moments and
//! the position in the data, so an interrupted run resumes where it stopped).

use super::config::TrainConfig;
use super::run::TrainEvent;
use super::Trainer;
use crate::error::{Error, Result};
use crate::lora::{Adapter, FactorData};
use serde::{Deserialize, Serialize};

/// When a sink should save a checkpoint: every `every` steps, after each held-out evaluation and
/// at the end, never twice for the same step.
#[derive(Debug, Clone)]
pub struct CheckpointSchedule {
    every: usize,
    last_saved: usize,
}

impl CheckpointSchedule {
    pub fn new(every: usize) -> Self {
        CheckpointSchedule { every: every.max(1), last_saved: 0 }
    }

    /// True when a checkpoint is due after `event`; records it as saved.
    pub fn due(&mut self, event: &TrainEvent, trainer: &Trainer) -> bool {
        let step = trainer.step_index();
        let wanted = match event {
            TrainEvent::HeldOut { .. } => true,
            TrainEvent::Step(_) => step.is_multiple_of(self.every) || trainer.is_finished(),
        };
        if step == 0 || step == self.last_saved || !wanted {
            return false;
        }
        self.last_saved = step;
        true
    }
}

/// Format tag of [`CheckpointState`].
pub const CHECKPOINT_FORMAT: &str = "cqa-lora-checkpoint/1";

/// The scalar part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: String,
    pub config: TrainConfig,
    pub step: usize,
    pub epoch: usize,
    pub order: Vec<usize>,
    pub cursor: usize,
    pub busy_s: f64,
    pub train_ids: Vec<String>,
    pub held_ids: Vec<String>,
}

/// A resumable snapshot of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub state: CheckpointState,
    pub adapter: Adapter,
    /// AdamW moments per adapted projection path: `[m_a, v_a, m_b, v_b]`.
    pub moments: std::collections::BTreeMap<String, [Vec<f32>; 4]>,
}

impl Checkpoint {
    /// One self-contained file: a safetensors archive whose metadata holds the run state.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let r = self.adapter.config.rank;
        let mut tensors = Vec::new();
        for (path, f) in &self.adapter.factors {
            let m = self.moments.get(path).ok_or_else(|| Error::Input(format!("no optimizer state for `{path}`")))?;
            let (shape_a, shape_b) = (vec![f.d_in, r], vec![r, f.d_out]);
            tensors.push((format!("{path}.a"), shape_a.clone(), f.a.as_slice()));
            tensors.push((format!("{path}.b"), shape_b.clone(), f.b.as_slice()));
            for (k, name) in ["m_a", "v_a", "m_b", "v_b"].iter().enumerate() {
                let shape = if k < 2 { shape_a.clone() } else { shape_b.clone() };
                tensors.push((format!("{path}.{name}"), shape, m[k].as_slice()));
            }
        }
        let state = serde_json::to_string(&self.state).map_err(|e| Error::Input(format!("the run state cannot be written: {e}")))?;
        crate::safetensors::write_f32(&tensors, &[("cqa_state", state)])
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let bad = |m: String| Error::Input(format!("this is not a usable training checkpoint: {m}"));
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let state_json = header.metadata().as_ref().and_then(|m| m.get("cqa_state")).ok_or_else(|| bad("no run state".into()))?;
        let state: CheckpointState = serde_json::from_str(state_json).map_err(|e| bad(e.to_string()))?;
        if state.format != CHECKPOINT_FORMAT {
            return Err(bad(format!("format `{}` is not `{CHECKPOINT_FORMAT}`", state.format)));
        }
        let file = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let mut names: Vec<String> = file.names().into_iter().filter_map(|n| n.strip_suffix(".a").map(str::to_string)).collect();
        names.sort();
        let read = |name: String| -> Result<(Vec<usize>, Vec<f32>)> {
            let view = file.tensor(&name).map_err(|_| bad(format!("`{name}` is missing")))?;
            Ok((view.shape().to_vec(), crate::safetensors::view_to_f32(&name, &view)?))
        };
        let mut factors = std::collections::BTreeMap::new();
        let mut moments = std::collections::BTreeMap::new();
        for path in names {
            let (sa, a) = read(format!("{path}.a"))?;
            let (sb, b) = read(format!("{path}.b"))?;
            if sa.len() != 2 || sb.len() != 2 {
                return Err(bad(format!("`{path}` factors are not matrices")));
            }
            moments.insert(path.clone(), [
                read(format!("{path}.m_a"))?.1,
                read(format!("{path}.v_a"))?.1,
                read(format!("{path}.m_b"))?.1,
                read(format!("{path}.v_b"))?.1,
            ]);
            factors.insert(path, FactorData { d_in: sa[0], d_out: sb[1], a, b });
        }
        let adapter = Adapter { config: state.config.lora.clone(), factors };
        Ok(Checkpoint { state, adapter, moments })
    }
}
