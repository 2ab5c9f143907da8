//! The model's frozen weight matrices in either of their two forms: dense f32 burn modules, or
//! [`StoredMatrix`] blocks kept as the file stores them (see `quant`). Which one a model gets is
//! decided once, at load (`WeightMode` and the device); the forward code does not care.

use crate::error::Result;
use crate::quant::StoredMatrix;
use crate::quant::op::stored_linear;
use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::{Int, Tensor, TensorData};
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
    pub weight: Arc<StoredMatrix>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl BaseLinear {
    /// # Shapes
    /// - x: `[batch, seq, in]` → `[batch, seq, out]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            BaseLinear::Dense(linear) => linear.forward(x),
            BaseLinear::Stored(stored) => {
                let y = stored_linear(x, &stored.weight);
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
            BaseLinear::Stored(stored) => (stored.weight.cols, stored.weight.rows),
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
                stored.weight.resident_bytes() + stored.bias.as_ref().map_or(0, |_| 4 * stored.weight.rows)
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
    pub weight: Arc<StoredMatrix>,
}

impl TokenEmbedding {
    /// # Shapes
    /// - tokens: `[batch, seq]` → `[batch, seq, d]`
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Result<Tensor<3>> {
        match self {
            TokenEmbedding::Dense(embedding) => Ok(embedding.forward(tokens)),
            TokenEmbedding::Stored(stored) => {
                let [batch, seq] = tokens.dims();
                let device = tokens.device();
                // Stored weights live on the CPU, where reading the ids back costs nothing.
                let ids: Vec<usize> = tokens.into_data().convert::<i64>().try_to_vec::<i64>().map_err(|e| {
                    crate::error::Error::Model(format!("could not read token ids: {e:?}"))
                })?.into_iter().map(|id| id.max(0) as usize).collect();
                let d = stored.weight.cols;
                let values = stored.weight.gather_rows(&ids)?;
                Ok(Tensor::<3>::from_data(TensorData::new(values, [batch, seq, d]), &device))
            }
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
            TokenEmbedding::Stored(stored) => stored_linear(hidden, &stored.weight),
        }
    }

    pub fn resident_bytes(&self) -> usize {
        match self {
            TokenEmbedding::Dense(embedding) => 4 * embedding.weight.val().shape().num_elements(),
            TokenEmbedding::Stored(stored) => stored.weight.resident_bytes(),
        }
    }
}
