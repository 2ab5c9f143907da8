//! Attention on the CPU backend (burn-flex) as one burn operation with its own backward pass.
//!
//! burn's autodiff composes attention from tensor ops, so a training step made and kept several
//! `[batch, heads, seq, seq]` tensors per layer, one single-threaded pass each. This operation
//! keeps q, k, v, its output and one log-sum-exp per query row, and runs every head as a task on
//! rayon's pool, in both passes. Keys and values come ungrouped (`kv_heads` of them): query head
//! `h` reads kv head `h / (heads / kv_heads)` itself, so no repeated copy is made either.

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex, backend_extension};
use super::{contiguous, dims, f32s, tensor};
use burn::tensor::Tensor;
use cqa_kernels::attention::Shape;
use std::sync::Arc;

#[backend_extension(Flex, Autodiff)]
pub trait CpuAttentionBackend: burn::backend::Backend {
    /// `softmax(q·kᵀ/√d + causal mask)·v`, q `[batch, heads, seq, d]`, k and v `[batch, kv_heads,
    /// total, d]` → `[batch, heads, seq, d]`.
    fn cpu_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, causal: bool) -> FloatTensor<Self>;
}

impl CpuAttentionBackend for Flex {
    fn cpu_attention(q: FlexTensor, k: FlexTensor, v: FlexTensor, causal: bool) -> FlexTensor {
        Forward::run(q, k, v, causal).out
    }
}

/// A forward pass's inputs (contiguous), output and per-row log-sum-exp: what the backward pass
/// reads. The tensors share their storage with the graph's (an `Arc` each).
#[derive(Clone, Debug)]
struct Forward {
    shape: Shape,
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    out: FlexTensor,
    lse: Arc<Vec<f32>>,
}

impl Forward {
    fn run(q: FlexTensor, k: FlexTensor, v: FlexTensor, causal: bool) -> Self {
        let [batch, heads, seq, head_dim] = dims4(&q, "q");
        let [kb, kv_heads, total, kd] = dims4(&k, "k");
        assert_eq!((kb, kd), (batch, head_dim), "attention: k's batch and head size must be q's");
        assert_eq!(dims4(&v, "v"), dims4(&k, "k"), "attention: v must be shaped like k");
        let shape = Shape { batch, heads, kv_heads, seq, total, head_dim, causal };
        let (q, k, v) = (contiguous(q), contiguous(k), contiguous(v));
        let (out, lse) = cqa_kernels::attention::forward(&shape, f32s(&q), f32s(&k), f32s(&v));
        let out = tensor(out, vec![batch, heads, seq, head_dim]);
        Forward { shape, q, k, v, out, lse: Arc::new(lse) }
    }
}

impl<C: CheckpointStrategy> CpuAttentionBackend for Autodiff<Flex, C> {
    fn cpu_attention(q: FloatTensor<Self>, k: FloatTensor<Self>, v: FloatTensor<Self>, causal: bool) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct AttentionBackward;

        impl Backward<Flex, 3> for AttentionBackward {
            type State = Forward;

            fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let d_out = contiguous(grads.consume::<Flex>(&ops.node));
                let f = ops.state;
                let g = cqa_kernels::attention::backward(&f.shape, f32s(&f.q), f32s(&f.k), f32s(&f.v), f32s(&f.out), &f.lse, f32s(&d_out));
                let [q, k, v] = ops.parents;
                for (parent, grad, like) in [(q, g.dq, &f.q), (k, g.dk, &f.k), (v, g.dv, &f.v)] {
                    if let Some(node) = parent {
                        grads.register::<Flex>(node.id, tensor(grad, dims(like)));
                    }
                }
            }
        }

        let prep = AttentionBackward.prepare::<C>([q.node(), k.node(), v.node()]).compute_bound().stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let forward = Forward::run(q.primitive().clone(), k.primitive().clone(), v.primitive().clone(), causal);
                let out = forward.out.clone();
                prep.finish(forward, out)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(Flex::cpu_attention(q.into_primitive(), k.into_primitive(), v.into_primitive(), causal))
            }
        }
    }
}

fn dims4(x: &FlexTensor, name: &str) -> [usize; 4] {
    dims(x).try_into().unwrap_or_else(|_| panic!("attention: {name} must have 4 dimensions"))
}

/// Attention on a CPU device (with or without autodiff). k and v carry `kv_heads` heads.
///
/// # Shapes
/// - q: `[batch, heads, seq, head_dim]`, k, v: `[batch, kv_heads, total, head_dim]` → like q
pub fn cpu_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, causal: bool) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as CpuAttentionBackend>::cpu_attention(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), causal))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::module::attention;
    use burn::tensor::TensorData;
    use burn::tensor::ops::AttentionModuleOptions;

    fn random(dims: [usize; 4], seed: u64, device: &burn::tensor::Device) -> Tensor<4> {
        let mut rng = Rng::new(seed);
        let n = dims.iter().product();
        Tensor::from_data(TensorData::new((0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>(), dims), device)
    }

    fn values(t: Tensor<4>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// Output and all three input gradients against burn's own attention, differentiated
    /// through its composed ops by burn's autodiff, with k and v repeated per query head.
    #[test]
    fn equals_burns_composed_attention_with_its_gradients() {
        let device = crate::device::cpu().autodiff();
        let (b, h, kvh, s, d) = (2, 6, 2, 70, 16);
        let upstream = random([b, h, s, d], 4, &device);
        let run = |ours: bool| {
            let q = random([b, h, s, d], 1, &device).mul_scalar(2.0).require_grad();
            let k = random([b, kvh, s, d], 2, &device).require_grad();
            let v = random([b, kvh, s, d], 3, &device).require_grad();
            let out = if ours {
                cpu_attention(q.clone(), k.clone(), v.clone(), true)
            } else {
                let rep = |x: Tensor<4>| x.reshape([b, kvh, 1, s, d]).expand([b, kvh, h / kvh, s, d]).reshape([b, h, s, d]);
                let options = AttentionModuleOptions { scale: None, softcap: None, is_causal: true };
                attention(q.clone(), rep(k.clone()), rep(v.clone()), None, None, options)
            };
            let grads = (out.clone() * upstream.clone()).sum().backward();
            let g = |x: &Tensor<4>| values(x.grad(&grads).unwrap());
            [values(out.inner()), g(&q), g(&k), g(&v)]
        };
        let (ours, burns) = (run(true), run(false));
        for (which, (a, b)) in ours.iter().zip(&burns).enumerate() {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "output/dq/dk/dv [{which}]: {x} vs {y}");
            }
        }
    }
}
