//! RMSNorm: on the CPU one operation over each row that keeps x and one inverse root mean square
//! per row for its backward pass (composed, it is six tensor ops, and x/rms is kept too).

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
use std::sync::Arc;

#[backend_extension(Flex, Autodiff)]
pub trait RmsNormBackend: burn::backend::Backend {
    /// `x / √(mean(x²) + eps) · weight` over the last dimension.
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self>;
}

fn forward(x: &FlexTensor, weight: &FlexTensor, eps: f64) -> (FlexTensor, Arc<Vec<f32>>) {
    let (y, inv_rms) = cqa_kernels::rms_norm::forward(f32s(x), f32s(weight), eps as f32);
    (tensor(y, dims(x)), Arc::new(inv_rms))
}

impl RmsNormBackend for Flex {
    fn rms_norm(x: FlexTensor, weight: FlexTensor, eps: f64) -> FlexTensor {
        forward(&contiguous(x), &contiguous(weight), eps).0
    }
}

impl<C: CheckpointStrategy> RmsNormBackend for Autodiff<Flex, C> {
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct RmsNormBackward;

        impl Backward<Flex, 2> for RmsNormBackward {
            type State = (FlexTensor, FlexTensor, Arc<Vec<f32>>);

            fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let d_y = contiguous(grads.consume::<Flex>(&ops.node));
                let (x, weight, inv_rms) = ops.state;
                let (d_x, d_w) = cqa_kernels::rms_norm::backward(f32s(&x), f32s(&weight), &inv_rms, f32s(&d_y));
                let [x_node, w_node] = ops.parents;
                if let Some(node) = x_node {
                    grads.register::<Flex>(node.id, tensor(d_x, dims(&x)));
                }
                if let Some(node) = w_node {
                    grads.register::<Flex>(node.id, tensor(d_w, dims(&weight)));
                }
            }
        }

        match RmsNormBackward.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (xs, ws) = (contiguous(x.primitive().clone()), contiguous(weight.primitive().clone()));
                let (y, inv_rms) = forward(&xs, &ws, eps);
                prep.finish((xs, ws, inv_rms), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::rms_norm(x.into_primitive(), weight.into_primitive(), eps)),
        }
    }
}

/// RMSNorm over the last dimension: one operation on a CPU device, one kernel on a GPU (with its
/// own backward kernel when training; `gpu_ops`), burn's ops elsewhere.
///
/// # Shapes
/// - x: `[batch, seq, d]`, weight: `[d]` → like x
pub fn rms_norm(x: Tensor<3>, weight: Tensor<1>, eps: f64) -> Tensor<3> {
    if crate::device::runs_on_cpu(&x.device()) {
        Tensor::from_dispatch(<Dispatch as RmsNormBackend>::rms_norm(x.into_dispatch(), weight.into_dispatch(), eps))
    } else {
        #[cfg(feature = "gpu-kernels")]
        if crate::model::gpu_ops::serves(&x) {
            return crate::model::gpu_ops::rms_norm(x, weight, eps);
        }
        let d = x.dims()[2];
        let rms = x.clone().square().mean_dim(2).add_scalar(eps).sqrt();
        x.div(rms) * weight.reshape([1, 1, d])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use burn::tensor::TensorData;

    /// Output and both gradients against the composed form under burn's autodiff.
    #[test]
    fn equals_the_composed_norm_with_its_gradients() {
        let device = crate::device::cpu().autodiff();
        let (b, s, d) = (2, 9, 48);
        let mut rng = Rng::new(3);
        let mut random = |n: usize| (0..n).map(|_| rng.normal() as f32).collect::<Vec<_>>();
        let (x0, w0, g) = (random(b * s * d), random(d), random(b * s * d));
        let g = Tensor::<3>::from_data(TensorData::new(g, [b, s, d]), &device);
        let run = |ours: bool| {
            let x = Tensor::<3>::from_data(TensorData::new(x0.clone(), [b, s, d]), &device).require_grad();
            let w = Tensor::<1>::from_data(TensorData::new(w0.clone(), [d]), &device).require_grad();
            let y = if ours {
                rms_norm(x.clone(), w.clone(), 1e-5)
            } else {
                let rms = x.clone().square().mean_dim(2).add_scalar(1e-5).sqrt();
                x.clone().div(rms) * w.clone().reshape([1, 1, d])
            };
            let grads = (y.clone() * g.clone()).sum().backward();
            let v3 = |t: Tensor<3>| t.into_data().try_to_vec::<f32>().unwrap();
            let dw = w.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
            [v3(y.inner()), v3(x.grad(&grads).unwrap()), dw]
        };
        for (a, b) in run(true).iter().zip(&run(false)) {
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(b) {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
    }
}
