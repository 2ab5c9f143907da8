//! Rotary position embedding in HF's rotate-half form (`LlamaRotaryEmbedding` +
//! `apply_rotary_pos_emb` in transformers' modeling_llama.py).

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};

/// Precomputed cos/sin tables, `[max_positions, head_dim]` each.
#[derive(Module, Debug)]
pub struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl Rope {
    /// Builds the tables the way transformers does: `inv_freq` and the angles in f32 (so the
    /// rounding matches), the cos/sin of each angle taken in f64 and rounded once.
    pub fn new(head_dim: usize, theta: f64, max_positions: usize, device: &Device) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> =
            (0..half).map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
        let mut cos = Vec::with_capacity(max_positions * head_dim);
        let mut sin = Vec::with_capacity(max_positions * head_dim);
        for pos in 0..max_positions {
            // emb = cat(freqs, freqs): both halves of a row use the same angles.
            for _ in 0..2 {
                for &f in &inv_freq {
                    let angle = (pos as f32 * f) as f64;
                    cos.push(angle.cos() as f32);
                    sin.push(angle.sin() as f32);
                }
            }
        }
        let shape = [max_positions, head_dim];
        Rope {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `x` for positions `offset..offset + seq`.
    ///
    /// # Shapes
    /// - x: `[batch, heads, seq, head_dim]` → same
    pub fn apply(&self, x: Tensor<4>, offset: usize) -> Tensor<4> {
        let [_, _, seq, head_dim] = x.dims();
        let cos = self.cos.clone().narrow(0, offset, seq).reshape([1, 1, seq, head_dim]);
        let sin = self.sin.clone().narrow(0, offset, seq).reshape([1, 1, seq, head_dim]);
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
            return super::fused::rope::rope_heads(x, &self.cos, &self.sin, heads, offset);
        }
        #[cfg(feature = "gpu-kernels")]
        if super::gpu_ops::serves(&x) {
            return super::gpu_ops::rope_heads(x, &self.cos, &self.sin, heads, offset);
        }
        self.apply(x.reshape([batch, seq, heads, width / heads]).swap_dims(1, 2), offset)
    }

    /// The cos and sin tables, `[max_positions, head_dim]` each (the GPU decode step reads them).
    #[cfg_attr(not(all(feature = "gpu-kernels", not(feature = "fusion"))), allow(dead_code))]
    pub(crate) fn tables(&self) -> (&Tensor<2>, &Tensor<2>) {
        (&self.cos, &self.sin)
    }

    /// Number of positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
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
}
