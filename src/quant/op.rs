//! `x · Wᵀ` with a stored W, as a burn operation with its own backward pass, so a frozen
//! quantized base takes part in LoRA training (QLoRA): the gradient flows to x as `g · W`, from
//! the same blocks, and no weight gradient is ever formed. Nothing is saved for the backward pass
//! but a handle to W, so training holds no f32 copy of the base.
//!
//! This is the CPU backend's (burn-flex) form, in the CLI and in the browser's wasm CPU path;
//! the GPU backends have their own kernels and the same backward pass in `gpu`.

use super::StoredMatrix;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::autodiff::Autodiff;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Dispatch, Flex, backend_extension};
use burn::tensor::{Tensor, TensorData};
use std::sync::Arc;

#[backend_extension(Flex, Autodiff)]
pub trait StoredMatmulBackend: burn::backend::Backend {
    /// `x · Wᵀ` over the last dimension: `[.., cols]` → `[.., rows]`.
    fn stored_matmul_transposed(x: FloatTensor<Self>, weight: Arc<StoredMatrix>) -> FloatTensor<Self>;
}

impl StoredMatmulBackend for Flex {
    fn stored_matmul_transposed(x: FlexTensor, weight: Arc<StoredMatrix>) -> FlexTensor {
        product(x, weight.cols, weight.rows, |x, m| weight.matmul_transposed(x, m))
    }
}

impl<C: CheckpointStrategy> StoredMatmulBackend for Autodiff<Flex, C> {
    fn stored_matmul_transposed(x: FloatTensor<Self>, weight: Arc<StoredMatrix>) -> FloatTensor<Self> {
        /// d(x·Wᵀ)/dx applied to the incoming gradient g: `g · W`.
        #[derive(Debug)]
        struct StoredMatmulBackward;

        impl Backward<Flex, 1> for StoredMatmulBackward {
            type State = Arc<StoredMatrix>;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
                let [parent] = ops.parents;
                let grad = grads.consume::<Flex>(&ops.node);
                if let Some(node) = parent {
                    let weight = ops.state;
                    let dx = product(grad, weight.rows, weight.cols, |g, m| weight.matmul(g, m));
                    grads.register::<Flex>(node.id, dx);
                }
            }
        }

        match StoredMatmulBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let output = Flex::stored_matmul_transposed(x.primitive().clone(), weight.clone());
                prep.finish(weight, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::stored_matmul_transposed(x.into_primitive(), weight)),
        }
    }
}

/// Runs `f` on `x` seen as `[m, d_in]` host rows and shapes its `[m, d_out]` result like x.
fn product(x: FlexTensor, d_in: usize, d_out: usize, f: impl Fn(&[f32], usize) -> Vec<f32>) -> FlexTensor {
    let mut dims = x.layout().shape().to_vec();
    assert_eq!(dims.last().copied(), Some(d_in), "stored matmul: x's last dimension must be the weight's input width");
    let m = dims.iter().product::<usize>() / d_in.max(1);
    let y = match x.as_slice::<f32>() {
        Some(values) => f(values, m),
        None => f(x.to_contiguous().as_slice::<f32>().expect("stored matmul: x must be f32"), m),
    };
    *dims.last_mut().expect("x has a last dimension") = d_out;
    FlexTensor::from_data(TensorData::new(y, dims))
}

/// `x · Wᵀ` over the last dimension, on a CPU device (with or without autodiff).
///
/// # Shapes
/// - x: `[batch, seq, cols]` → `[batch, seq, rows]`
pub fn stored_linear(x: Tensor<3>, weight: &Arc<StoredMatrix>) -> Tensor<3> {
    Tensor::from_dispatch(<Dispatch as StoredMatmulBackend>::stored_matmul_transposed(x.into_dispatch(), weight.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::Format;
    use crate::rng::Rng;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    #[test]
    fn forward_and_input_gradient_equal_a_dense_linear_on_the_dequantized_weight() {
        let cpu = crate::device::cpu();
        let device = cpu.clone().autodiff();
        let (rows, cols, seq) = (48, 64, 9);
        let w = Arc::new(StoredMatrix::quantize_q8_0(&random(rows * cols, 1), rows, cols).unwrap());
        assert_eq!(w.format, Format::Q8_0);
        let dense = Tensor::<2>::from_data(TensorData::new(w.to_f32(), [rows, cols]), &cpu);
        let x_values = random(seq * cols, 2);
        let upstream = Tensor::<3>::from_data(TensorData::new(random(seq * rows, 3), [1, seq, rows]), &device);

        let x = Tensor::<3>::from_data(TensorData::new(x_values.clone(), [1, seq, cols]), &device).require_grad();
        let y = stored_linear(x.clone(), &w);
        let grads = (y.clone() * upstream.clone()).sum().backward();
        let dx = x.grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();

        let x2 = Tensor::<3>::from_data(TensorData::new(x_values, [1, seq, cols]), &device).require_grad();
        let y2 = x2.clone().matmul(dense.transpose().unsqueeze::<3>());
        let grads2 = (y2.clone() * upstream).sum().backward();
        let dx2 = x2.grad(&grads2).unwrap().into_data().try_to_vec::<f32>().unwrap();

        let (y, y2) = (y.into_data().try_to_vec::<f32>().unwrap(), y2.into_data().try_to_vec::<f32>().unwrap());
        for (a, b) in y.iter().zip(&y2).chain(dx.iter().zip(&dx2)) {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn without_autodiff_it_is_a_plain_product() {
        let cpu = crate::device::cpu();
        let w = Arc::new(StoredMatrix::from_f32(&[1.0; 32].iter().chain(&[2.0; 32]).copied().collect::<Vec<_>>(), 2, 32).unwrap());
        let x = Tensor::<3>::from_data(TensorData::new(vec![0.5f32; 32], [1, 1, 32]), &cpu);
        assert_eq!(stored_linear(x, &w).into_data().try_to_vec::<f32>().unwrap(), vec![16.0, 32.0]);
    }
}
