//! Each scored position's log-probability of its target token, `log_softmax(logits)[target]`:
//! on the CPU one operation that keeps one log-sum-exp per row for its backward pass instead of
//! a `[rows, vocab]` log-softmax, and forms the logits' gradient in one pass.

use super::{contiguous, dims, f32s, tensor};
use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex, backend_extension};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use std::sync::Arc;

#[backend_extension(Flex, Autodiff)]
pub trait TargetLogProbsBackend: burn::backend::Backend {
    /// `[rows, vocab]` logits and one target per row → `[rows]` log-probabilities.
    fn target_log_probs(logits: FloatTensor<Self>, targets: Arc<Vec<usize>>) -> FloatTensor<Self>;
}

/// The log-probabilities and each row's log-sum-exp.
fn forward(logits: &FlexTensor, targets: &[usize]) -> (FlexTensor, Arc<Vec<f32>>) {
    let vocab = *dims(logits).last().expect("loss: logits have a vocabulary dimension");
    let (log_probs, lse) = cqa_kernels::loss::target_log_probs(f32s(logits), vocab, targets);
    (tensor(log_probs, vec![targets.len()]), Arc::new(lse))
}

impl TargetLogProbsBackend for Flex {
    fn target_log_probs(logits: FlexTensor, targets: Arc<Vec<usize>>) -> FlexTensor {
        forward(&contiguous(logits), &targets).0
    }
}

impl<C: CheckpointStrategy> TargetLogProbsBackend for Autodiff<Flex, C> {
    fn target_log_probs(logits: FloatTensor<Self>, targets: Arc<Vec<usize>>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct TargetLogProbsBackward;

        impl Backward<Flex, 1> for TargetLogProbsBackward {
            type State = (FlexTensor, Arc<Vec<usize>>, Arc<Vec<f32>>);

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let d_log_probs = contiguous(grads.consume::<Flex>(&ops.node));
                let (logits, targets, lse) = ops.state;
                let [parent] = ops.parents;
                if let Some(node) = parent {
                    let vocab = *dims(&logits).last().expect("loss: logits have a vocabulary dimension");
                    let d = cqa_kernels::loss::target_log_probs_backward(f32s(&logits), vocab, &targets, &lse, f32s(&d_log_probs));
                    grads.register::<Flex>(node.id, tensor(d, dims(&logits)));
                }
            }
        }

        match TargetLogProbsBackward.prepare::<C>([logits.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let logits = contiguous(logits.primitive().clone());
                let (out, lse) = forward(&logits, &targets);
                prep.finish((logits, targets, lse), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::target_log_probs(logits.into_primitive(), targets)),
        }
    }
}

/// `log_softmax(logits)[target]` per row: one operation on a CPU device, burn's ops elsewhere.
///
/// # Shapes
/// - logits: `[rows, vocab]`, one target per row → `[rows]`
pub fn target_log_probs(logits: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    let [rows, _] = logits.dims();
    assert_eq!(rows, targets.len(), "one target per row");
    let device = logits.device();
    if crate::device::runs_on_cpu(&device) {
        let targets = Arc::new(targets.iter().map(|&t| t as usize).collect());
        Tensor::from_dispatch(<Dispatch as TargetLogProbsBackend>::target_log_probs(logits.into_dispatch(), targets))
    } else {
        let ids: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, 1]), &device);
        log_softmax(logits, 1).gather(1, targets).reshape([rows])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// Values and the logits' gradient against burn's composed log-softmax and gather.
    #[test]
    fn equals_burns_log_softmax_and_gather_with_its_gradient() {
        let device = crate::device::cpu().autodiff();
        let (rows, vocab) = (6, 300);
        let mut rng = Rng::new(9);
        let values: Vec<f32> = (0..rows * vocab).map(|_| rng.normal() as f32 * 4.0).collect();
        let targets: Vec<u32> = vec![0, 299, 5, 5, 120, 7];
        let w = Tensor::<1>::from_data(TensorData::new((0..rows).map(|i| 1.0 + i as f32).collect::<Vec<_>>(), [rows]), &device);
        let run = |ours: bool| {
            let logits = Tensor::<2>::from_data(TensorData::new(values.clone(), [rows, vocab]), &device).require_grad();
            let lp = if ours {
                target_log_probs(logits.clone(), &targets)
            } else {
                let ids: Vec<i32> = targets.iter().map(|&t| t as i32).collect();
                let t = Tensor::<2, Int>::from_data(TensorData::new(ids, [rows, 1]), &device);
                log_softmax(logits.clone(), 1).gather(1, t).reshape([rows])
            };
            let grads = (lp.clone() * w.clone()).sum().backward();
            let v1 = lp.inner().into_data().try_to_vec::<f32>().unwrap();
            let v2 = logits.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
            (v1, v2)
        };
        let ((a1, a2), (b1, b2)) = (run(true), run(false));
        for (x, y) in a1.iter().zip(&b1).chain(a2.iter().zip(&b2)) {
            assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
}
