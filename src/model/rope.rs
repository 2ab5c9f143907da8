//! Rotary position embedding in HF's rotate-half form (`LlamaRotaryEmbedding` +
//! `apply_rotary_pos_emb` in transformers' modeling_llama.py).

use burn::tensor::{Device, Tensor, TensorData};
use std::sync::{Arc, Mutex};

/// Positions the tables cover from the start; they double when a longer sequence arrives, up
/// to the model's limit. Tables of every position a model allows were held from load: 17 MB for
/// a 32k-position model with heads of 64, 134 MB at 128k positions and heads of 128.
const FIRST_POSITIONS: usize = 1024;

/// Cos/sin tables (`[positions, head_dim]` each), built for the positions used so far.
#[derive(Debug, Clone)]
pub struct Rope {
    head_dim: usize,
    theta: f64,
    max_positions: usize,
    device: Device,
    /// Shared by the model's clones, which rotate alike.
    tables: Arc<Mutex<(Tensor<2>, Tensor<2>)>>,
}

impl Rope {
    /// Tables for up to `max_positions` positions, the first ones built now.
    pub fn new(head_dim: usize, theta: f64, max_positions: usize, device: &Device) -> Self {
        let tables = Self::build(head_dim, theta, FIRST_POSITIONS.min(max_positions), device);
        Rope { head_dim, theta, max_positions, device: device.clone(), tables: Arc::new(Mutex::new(tables)) }
    }

    /// Builds the tables the way transformers does: `inv_freq` and the angles in f32 (so the
    /// rounding matches), the cos/sin of each angle taken in f64 and rounded once.
    fn build(head_dim: usize, theta: f64, positions: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(positions * head_dim);
        let mut sin = Vec::with_capacity(positions * head_dim);
        for pos in 0..positions {
            // emb = cat(freqs, freqs): both halves of a row use the same angles.
            for _ in 0..2 {
                for &f in &inv_freq {
                    let angle = (pos as f32 * f) as f64;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [positions, head_dim];
        (Tensor::from_data(TensorData::new(cos, shape), device), Tensor::from_data(TensorData::new(sin, shape), device))
    }

    /// The cos and sin tables covering at least positions `0..end` (`end` at most
    /// [`Self::max_positions`]), grown to twice their rows or to `end` if they are shorter.
    pub(crate) fn tables_covering(&self, end: usize) -> (Tensor<2>, Tensor<2>) {
        let mut tables = self.tables.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let rows = tables.0.dims()[0];
        if rows < end {
            let grown = end.max(2 * rows).min(self.max_positions).max(end);
            *tables = Self::build(self.head_dim, self.theta, grown, &self.device);
        }
        tables.clone()
    }

    /// Rotates `x` for positions `offset..offset + seq`.
    ///
    /// # Shapes
    /// - x: `[batch, heads, seq, head_dim]` → same
    pub fn apply(&self, x: Tensor<4>, offset: usize) -> Tensor<4> {
        let [_, _, seq, head_dim] = x.dims();
        let (cos, sin) = self.tables_covering(offset + seq);
        let cos = cos.narrow(0, offset, seq).reshape([1, 1, seq, head_dim]);
        let sin = sin.narrow(0, offset, seq).reshape([1, 1, seq, head_dim]);
        let half = head_dim / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * cos + rotated * sin
    }

    /// Splits x's last dimension into heads, moves them in front of the positions and rotates
    /// each for positions `offset..offset + seq`: one operation on the CPU, one kernel on a GPU
    /// (with its own backward kernel when training; `gpu_ops`), burn's ops elsewhere.
    ///
    /// # Shapes
    /// - x: `[batch, seq, heads * head_dim]` → `[batch, heads, seq, head_dim]`
    pub fn apply_to_heads(&self, x: Tensor<3>, heads: usize, offset: usize) -> Tensor<4> {
        let [batch, seq, width] = x.dims();
        if crate::device::runs_on_cpu(&x.device()) {
            let (cos, sin) = self.tables_covering(offset + seq);
            return super::fused::rope::rope_heads(x, &cos, &sin, heads, offset);
        }
        #[cfg(feature = "gpu-kernels")]
        if super::gpu_ops::serves(&x) {
            let (cos, sin) = self.tables_covering(offset + seq);
            return super::gpu_ops::rope_heads(x, &cos, &sin, heads, offset);
        }
        self.apply(x.reshape([batch, seq, heads, width / heads]).swap_dims(1, 2), offset)
    }

    /// Positions the model handles (its `max_position_embeddings`).
    pub fn max_positions(&self) -> usize {
        self.max_positions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_each_half_pair_by_position_times_frequency() {
        // head_dim 4, θ = 100: inv_freq = [1, 100^(-1/2)] = [1, 0.1]. At position 3 the angles
        // are [3, 0.3]; rotate-half pairs element i with i + 2.
        let device = crate::device::cpu();
        let rope = Rope::new(4, 100.0, 8, &device);
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [1, 1, 1, 4]), &device);
        let out = rope.apply(x.clone(), 3).into_data().try_to_vec::<f32>().unwrap();
        let (c3, s3, c03, s03) = (3f64.cos(), 3f64.sin(), 0.3f64.cos(), 0.3f64.sin());
        let expected = [1.0 * c3 - 3.0 * s3, 2.0 * c03 - 4.0 * s03, 3.0 * c3 + 1.0 * s3, 4.0 * c03 + 2.0 * s03];
        for (o, e) in out.iter().zip(expected) {
            assert!((*o as f64 - e).abs() < 1e-6, "{out:?} vs {expected:?}");
        }
        // Position 0 is the identity.
        assert_eq!(rope.apply(x, 0).into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn the_tables_grow_to_the_positions_asked_for_and_no_further() {
        let device = crate::device::cpu();
        let rope = Rope::new(8, 10_000.0, 5000, &device);
        assert_eq!(rope.tables_covering(1).0.dims(), [FIRST_POSITIONS, 8]);
        // Past the first rows: twice as many, and the rows are the ones a full table has.
        let x = Tensor::<4>::from_data(TensorData::new((0..8).map(|i| i as f32 - 3.5).collect::<Vec<_>>(), [1, 1, 1, 8]), &device);
        let far = rope.apply(x.clone(), 1500).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(rope.tables_covering(1).0.dims(), [2 * FIRST_POSITIONS, 8]);
        let full = Rope::build(8, 10_000.0, 5000, &device);
        let (cos, sin) = (full.0.narrow(0, 1500, 1).reshape([1, 1, 1, 8]), full.1.narrow(0, 1500, 1).reshape([1, 1, 1, 8]));
        let rotated = Tensor::cat(vec![x.clone().narrow(3, 4, 4).neg(), x.clone().narrow(3, 0, 4)], 3);
        let want = (x * cos + rotated * sin).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(far, want);
        assert_eq!(rope.tables_covering(3000).0.dims(), [4 * FIRST_POSITIONS, 8]);
        // Never past the model's limit, whatever the doubling would give.
        assert_eq!(rope.tables_covering(4200).0.dims(), [5000, 8]);
        assert_eq!(rope.max_positions(), 5000);
    }
}
