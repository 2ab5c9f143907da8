//! The token embedding in either of its forms: a dense f32 burn `Embedding`, or rows kept as
//! the file stores them (gathered and decoded per token). The projections' weights are
//! `crate::linear`'s.

use crate::error::Result;
use crate::linear::StoredWeight;
use burn::module::Module;
use burn::nn::Embedding;
use burn::tensor::{Int, Tensor, TensorData};

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
