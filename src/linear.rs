//! The linear layer, in one place: a projection's frozen base weight in either of its two forms
//! (dense f32 burn modules, or blocks kept as the file stores them, see `quant`: a
//! [`StoredMatrix`] in host memory for the CPU backend, its words in device buffers for the GPU
//! ones) and the LoRA factors that may ride on it, applied factored.
//!
//! Which form a weight gets is decided once, at load (`WeightMode` and the device); the forward
//! code does not care. The update is `y = x·W + b + s·(dropout(x)·A)·B`, computed as two thin
//! products instead of rebuilding `W + s·A·B` as burn's `apply_lora` does: the backward pass then
//! needs no dense `[in, out]` weight gradient (BENCHMARKS.md has both). Reading and writing
//! adapters (PEFT's files) is `crate::lora`'s.

#[cfg(feature = "gpu-kernels")]
use crate::quant::gpu::DeviceMatrix;
use crate::quant::StoredMatrix;
use crate::quant::op::stored_linear;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use std::sync::Arc;

/// A linear map's frozen weight and bias.
#[derive(Module, Debug)]
pub enum BaseLinear {
    /// burn's `Linear`, f32 `[in, out]`.
    Dense(Linear),
    /// Blocks `[out, in]` as stored, with an f32 bias.
    Stored(StoredLinear),
}

/// A linear map computed from stored blocks.
#[derive(Module, Debug)]
pub struct StoredLinear {
    #[module(skip)]
    pub weight: StoredWeight,
    pub bias: Option<Param<Tensor<1>>>,
}

/// A matrix in stored form, where its device computes.
#[derive(Debug, Clone)]
pub enum StoredWeight {
    /// Host blocks, multiplied by the CPU kernels (burn-flex devices).
    Host(Arc<StoredMatrix>),
    /// Words in GPU buffers, multiplied by the CubeCL kernels (wgpu, WebGPU).
    #[cfg(feature = "gpu-kernels")]
    Device(DeviceMatrix),
}

impl StoredWeight {
    /// `matrix` placed for `device`: kept in host memory for the CPU, copied to a GPU as words
    /// (and the host copy dropped). Given back where the GPU kernels do not read its format
    /// (F32), or are not built (a build without `gpu-kernels`).
    pub fn place(matrix: StoredMatrix, device: &Device) -> std::result::Result<Self, StoredMatrix> {
        if crate::device::runs_on_cpu(device) {
            return Ok(StoredWeight::Host(Arc::new(matrix)));
        }
        #[cfg(feature = "gpu-kernels")]
        if Self::supported_on(device) {
            // A format the GPU kernels do not read goes as its conversion (the registry's row).
            let on_gpu = crate::quant::for_gpu(&matrix).ok();
            if let Some(words) = on_gpu.as_deref().and_then(|m| DeviceMatrix::upload(m, device)) {
                return Ok(StoredWeight::Device(words));
            }
        }
        Err(matrix)
    }

    /// Whether stored weights can be placed on `device` at all: the CPU, or a GPU backend the
    /// kernels extend (with or without burn's `fusion` wrapper).
    pub fn supported_on(device: &Device) -> bool {
        crate::device::runs_on_cpu(device) || cfg!(feature = "gpu-kernels")
    }

    /// `x · Wᵀ` over the last dimension.
    ///
    /// # Shapes
    /// - x: `[batch, seq, cols]` → `[batch, seq, rows]`
    pub fn linear(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            StoredWeight::Host(m) => stored_linear(x, m),
            #[cfg(feature = "gpu-kernels")]
            StoredWeight::Device(m) => m.linear(x),
        }
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            StoredWeight::Host(m) => (m.rows, m.cols),
            #[cfg(feature = "gpu-kernels")]
            StoredWeight::Device(m) => (m.rows, m.cols),
        }
    }

    pub fn resident_bytes(&self) -> usize {
        match self {
            StoredWeight::Host(m) => m.resident_bytes(),
            #[cfg(feature = "gpu-kernels")]
            StoredWeight::Device(m) => m.resident_bytes(),
        }
    }
}

impl BaseLinear {
    /// # Shapes
    /// - x: `[batch, seq, in]` → `[batch, seq, out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            BaseLinear::Dense(linear) => linear.forward(x),
            BaseLinear::Stored(stored) => {
                let y = stored.weight.linear(x);
                match &stored.bias {
                    Some(bias) => y + bias.val().unsqueeze::<3>(),
                    None => y,
                }
            }
        }
    }

    /// `(in, out)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            BaseLinear::Dense(linear) => {
                let [d_in, d_out] = linear.weight.val().dims();
                (d_in, d_out)
            }
            BaseLinear::Stored(stored) => {
                let (rows, cols) = stored.weight.dims();
                (cols, rows)
            }
        }
    }

    /// Bytes the weight and bias take.
    pub fn resident_bytes(&self) -> usize {
        match self {
            BaseLinear::Dense(linear) => {
                let (d_in, d_out) = self.dims();
                4 * (d_in * d_out + linear.bias.as_ref().map_or(0, |_| d_out))
            }
            BaseLinear::Stored(stored) => {
                stored.weight.resident_bytes() + stored.bias.as_ref().map_or(0, |_| 4 * stored.weight.dims().0)
            }
        }
    }
}

/// The trainable factors of one adapted projection.
#[derive(Module, Debug)]
pub struct LoraFactors {
    /// `[in, r]`
    pub a: Param<Tensor<2>>,
    /// `[r, out]`
    pub b: Param<Tensor<2>>,
    pub scale: f64,
    pub dropout: f64,
}

impl LoraFactors {
    /// `s·(dropout(x)·A)·B`. Dropout only applies while training, i.e. when the factors take
    /// part in a backward pass.
    ///
    /// # Shapes
    /// - x: `[batch, seq, in]` → `[batch, seq, out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [batch, seq, d_in] = x.dims();
        let a = self.a.val();
        let b = self.b.val();
        let d_out = b.dims()[1];
        let x = if self.dropout > 0.0 && a.is_autodiff() {
            let keep = 1.0 - self.dropout;
            let mask = x.random_like(Distribution::Bernoulli(keep));
            (x * mask).mul_scalar(1.0 / keep)
        } else {
            x
        };
        x.reshape([batch * seq, d_in]).matmul(a).matmul(b).mul_scalar(self.scale).reshape([batch, seq, d_out])
    }
}

/// A linear map that may carry a LoRA update. Every projection in the model is one of these.
/// The base is frozen: dense f32, or stored blocks (QLoRA when the factors train).
#[derive(Module, Debug)]
pub struct Projection {
    pub base: BaseLinear,
    pub lora: Option<LoraFactors>,
}

impl Projection {
    pub fn new(base: BaseLinear) -> Self {
        Projection { base, lora: None }
    }

    /// # Shapes
    /// - x: `[batch, seq, in]` → `[batch, seq, out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match &self.lora {
            None => self.base.forward(x),
            Some(lora) => self.base.forward(x.clone()) + lora.forward(x),
        }
    }

    /// `(in, out)` of the base weight.
    pub fn dims(&self) -> (usize, usize) {
        self.base.dims()
    }
}

/// burn's `Linear` from a weight stored `[out, in]` (as GGUF and safetensors store it), transposed
/// once into burn's `[in, out]`.
pub fn dense_from(w: &[f32], bias: Option<Vec<f32>>, d_in: usize, d_out: usize, device: &Device) -> Linear {
    let mut t = vec![0f32; w.len()];
    for o in 0..d_out {
        for i in 0..d_in {
            t[i * d_out + o] = w[o * d_in + i];
        }
    }
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(t, [d_in, d_out]), device)),
        bias: bias.map(|b| Param::from_tensor(Tensor::from_data(TensorData::new(b, [d_out]), device))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_adds_the_scaled_low_rank_update() {
        // W = I₂, A = [[1], [2]] (in 2, r 1), B = [[3, 4]] (r 1, out 2), scale 0.5:
        // y = x·W + 0.5·(x·A)·B. For x = [1, 1]: x·A = 3, so y = [1, 1] + 0.5·[9, 12] = [5.5, 7].
        let device = crate::device::cpu();
        let t2 = |v: Vec<f32>, s: [usize; 2]| Tensor::<2>::from_data(TensorData::new(v, s), &device);
        let base = Linear { weight: Param::from_tensor(t2(vec![1.0, 0.0, 0.0, 1.0], [2, 2])), bias: None };
        let mut projection = Projection::new(BaseLinear::Dense(base));
        let x = Tensor::<3>::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 1, 2]), &device);
        assert_eq!(projection.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
        projection.lora = Some(LoraFactors {
            a: Param::from_tensor(t2(vec![1.0, 2.0], [2, 1])),
            b: Param::from_tensor(t2(vec![3.0, 4.0], [1, 2])),
            scale: 0.5,
            dropout: 0.5, // off outside training: the factors are not on an autodiff device
        });
        assert_eq!(projection.forward(x).into_data().try_to_vec::<f32>().unwrap(), vec![5.5, 7.0]);
    }
}
