//! CPU operations with backward passes of their own, over `cqa-kernels`: attention, RMSNorm,
//! RoPE, SwiGLU's gating and the next-token loss. On the CPU backend (burn-flex, with or without
//! autodiff) each is one burn operation, on every core, that keeps little for the backward pass;
//! on the GPU backends the same functions compose burn's tensor ops.

pub mod attention;
pub mod loss;
pub mod rms_norm;
pub mod rope;
pub mod swiglu;

use burn::backend::flex::FlexTensor;
use burn::tensor::TensorData;

fn contiguous(x: FlexTensor) -> FlexTensor {
    if x.as_slice::<f32>().is_some() { x } else { x.to_contiguous() }
}

fn f32s(x: &FlexTensor) -> &[f32] {
    x.as_slice::<f32>().expect("fused op: f32 tensors")
}

fn dims(x: &FlexTensor) -> Vec<usize> {
    x.layout().shape().to_vec()
}

fn tensor(values: Vec<f32>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, dims))
}
