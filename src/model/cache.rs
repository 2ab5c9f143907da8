//! The key/value cache for incremental decoding. It lives outside the model (as in candle), so
//! one loaded model can serve several sessions, e.g. base and tuned side by side.

use burn::tensor::Tensor;

/// Per-layer keys and values seen so far, `[batch, kv_heads, seq, head_dim]` each.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        KvCache { layers: vec![None; num_layers], len: 0 }
    }

    /// Number of positions already in the cache: the RoPE offset of the next token.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends this step's keys/values for `layer` and returns the full history.
    pub(crate) fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (k, v) = match self.layers[layer].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Layer `layer`'s keys and values so far, if any.
    #[cfg_attr(not(all(feature = "gpu-kernels", not(feature = "fusion"))), allow(dead_code))]
    pub(crate) fn layer(&self, layer: usize) -> Option<&(Tensor<4>, Tensor<4>)> {
        self.layers.get(layer).and_then(Option::as_ref)
    }

    /// Records that `n` new positions were appended to every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
