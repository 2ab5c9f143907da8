//! SwiGLU's gating, `silu(gate) · up`: on the CPU one operation that keeps only gate and up for
//! its backward pass (composed, autodiff also keeps σ(gate), silu(gate) and the product's inputs).

use super::{contiguous, dims, f32s, tensor};
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use burn::tensor::activation::silu;

#[backend_extension(Flex, Autodiff)]
pub trait SwigluBackend: burn::backend::Backend {
    /// `silu(gate) · up`, element by element; both the same shape.
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl SwigluBackend for Flex {
    fn swiglu(gate: FlexTensor, up: FlexTensor) -> FlexTensor {
        assert_eq!(dims(&gate), dims(&up), "swiglu: gate and up must have one shape");
        let (gate, up) = (contiguous(gate), contiguous(up));
        tensor(cqa_kernels::swiglu::forward(f32s(&gate), f32s(&up)), dims(&gate))
    }
}

impl<C: CheckpointStrategy> SwigluBackend for Autodiff<Flex, C> {
    fn swiglu(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct SwigluBackward;

        impl Backward<Flex, 2> for SwigluBackward {
            type State = (FlexTensor, FlexTensor);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let d_out = contiguous(grads.consume::<Flex>(&ops.node));
                let (gate, up) = ops.state;
                let (d_gate, d_up) = cqa_kernels::swiglu::backward(f32s(&gate), f32s(&up), f32s(&d_out));
                let [g, u] = ops.parents;
                for (parent, grad) in [(g, d_gate), (u, d_up)] {
                    if let Some(node) = parent {
                        grads.register::<Flex>(node.id, tensor(grad, dims(&gate)));
                    }
                }
            }
        }

        match SwigluBackward.prepare::<C>([gate.node(), up.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (g, u) = (contiguous(gate.primitive().clone()), contiguous(up.primitive().clone()));
                let out = Flex::swiglu(g.clone(), u.clone());
                prep.finish((g, u), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::swiglu(gate.into_primitive(), up.into_primitive())),
        }
    }
}

/// `silu(gate) · up`: one operation on a CPU device, one kernel on a GPU (with its own
/// backward kernels when training; `gpu_ops`), burn's ops elsewhere.
pub fn swiglu(gate: Tensor<3>, up: Tensor<3>) -> Tensor<3> {
    if crate::device::runs_on_cpu(&gate.device()) {
        Tensor::from_dispatch(<Dispatch as SwigluBackend>::swiglu(gate.into_dispatch(), up.into_dispatch()))
    } else {
        #[cfg(feature = "gpu-kernels")]
        if crate::model::gpu_ops::serves(&gate) {
            return crate::model::gpu_ops::swiglu(gate, up);
        }
        silu(gate) * up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::TensorData;

    /// Output and both gradients against burn's composed `silu(g)·u` under its autodiff.
    #[test]
    fn equals_burns_composed_silu_product_with_its_gradients() {
        let device = crate::device::cpu().autodiff();
        let mut rng = Rng::new(5);
        let mut random = |scale: f32| {
            let v: Vec<f32> = (0..2 * 7 * 40).map(|_| rng.normal() as f32 * scale).collect();
            Tensor::<3>::from_data(TensorData::new(v, [2, 7, 40]), &device)
        };
        let (g0, u0, w) = (random(6.0), random(1.0), random(1.0));
        let run = |ours: bool| {
            let (g, u) = (g0.clone().require_grad(), u0.clone().require_grad());
            let y = if ours { swiglu(g.clone(), u.clone()) } else { silu(g.clone()) * u.clone() };
            let grads = (y.clone() * w.clone()).sum().backward();
            let v = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
            [v(y.inner()), v(g.grad(&grads).unwrap()), v(u.grad(&grads).unwrap())]
        };
        for (a, b) in run(true).iter().zip(&run(false)) {
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }
}
