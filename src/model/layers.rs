//! The model's frozen weight matrices in either of their two forms: dense f32 burn modules, or
//! blocks kept as the file stores them (see `quant`): a [`StoredMatrix`] in host memory for the
//! CPU backend, its words in device buffers for the GPU ones. Which form a model gets is decided
//! once, at load (`WeightMode` and the device); the forward code does not care.

use crate::error::Result;
#[cfg(feature = "gpu-kernels")]
use crate::quant::gpu::DeviceMatrix;
use crate::quant::StoredMatrix;
use crate::quant::op::stored_linear;
use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Device, Int, Tensor, TensorData};
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

/// The token embedding matrix `[vocab, d]`; also the LM head when the model ties them.
#[derive(Module, Debug)]
pub enum TokenEmbedding {
    Dense(Embedding),
    Stored(StoredEmbedding),
}

/// An embedding looked up from stored blocks.
#[derive(Module, Debug)]
pub struct StoredEmbedding {
    #[module(skip)]
    pub weight: StoredWeight,
}

impl TokenEmbedding {
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, d]`
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>> {
        match self {
            TokenEmbedding::Dense(embedding) => Ok(embedding.forward(tokens)),
            TokenEmbedding::Stored(stored) => match &stored.weight {
                StoredWeight::Host(matrix) => {
                    let [batch, seq] = tokens.dims();
                    let device = tokens.device();
                    // Host blocks serve the CPU backend, where reading the ids back costs nothing.
                    let ids: Vec<usize> = tokens.into_data().convert::<i64>().try_to_vec::<i64>().map_err(|e| {
                        crate::error::Error::Model(format!("could not read token ids: {e:?}"))
                    })?.into_iter().map(|id| id.max(0) as usize).collect();
                    let values = matrix.gather_rows(&ids)?;
                    Ok(Tensor::<3>::from_data(TensorData::new(values, [batch, seq, matrix.cols]), &device))
                }
                #[cfg(feature = "gpu-kernels")]
                StoredWeight::Device(matrix) => Ok(matrix.embed(tokens)),
            },
        }
    }

    /// Hidden states to logits through the transposed embedding (a tied LM head).
    ///
    /// # Shapes
    /// - hidden: `[batch, seq, d]` → `[batch, seq, vocab]`
    pub fn tied_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        match self {
            TokenEmbedding::Dense(embedding) => {
                let [b, s, d] = hidden.dims();
                let w = embedding.weight.val(); // [vocab, d]
                let vocab = w.dims()[0];
                hidden.reshape([b * s, d]).matmul(w.transpose()).reshape([b, s, vocab])
            }
            TokenEmbedding::Stored(stored) => stored.weight.linear(hidden),
        }
    }

    pub fn resident_bytes(&self) -> usize {
        match self {
            TokenEmbedding::Dense(embedding) => 4 * embedding.weight.val().shape().num_elements(),
            TokenEmbedding::Stored(stored) => stored.weight.resident_bytes(),
        }
    }
}
