//! The one rename table in the engine: GGUF tensor names (llama.cpp convention) to the HF
//! `transformers` tensor paths that the model uses, plus the q/k row un-permutation.
//!
//! llama.cpp's HF→GGUF converter permutes the rows of `q_proj`/`k_proj` for the `llama`
//! architecture so that its interleaved ("normal") RoPE applies; HF applies the
//! rotate-half ("neox") RoPE to the original rows. We undo the permutation on load so one RoPE
//! implementation serves GGUF and safetensors alike. `qwen2` files are not permuted.

/// HF path → GGUF name, for the tensors a Llama-family model has.
pub fn gguf_name(hf: &str) -> Option<String> {
    let direct = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = direct {
        return Some(name.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, path) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = path.rsplit_once('.')?; // kind: weight | bias
    let short = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{short}.{kind}"))
}

/// Undoes llama.cpp's q/k permutation on a row-major `[n_heads * head_dim, cols]` tensor
/// (`cols` = 1 for a bias).
///
/// Within each head, GGUF row `2*i + j` holds HF row `j * head_dim/2 + i`
/// (HF `[2, head_dim/2]` halves were interleaved into `[head_dim/2, 2]` pairs).
pub fn unpermute_rows<T: Copy + Default>(values: &[T], n_heads: usize, cols: usize) -> Vec<T> {
    let rows = values.len() / cols;
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![T::default(); values.len()];
    for h in 0..n_heads {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + 2 * i + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_the_table() {
        assert_eq!(gguf_name("model.layers.12.self_attn.q_proj.bias").unwrap(), "blk.12.attn_q.bias");
        assert_eq!(gguf_name("model.layers.0.mlp.down_proj.weight").unwrap(), "blk.0.ffn_down.weight");
        assert_eq!(gguf_name("lm_head.weight").unwrap(), "output.weight");
        assert!(gguf_name("model.layers.x.mlp.down_proj.weight").is_none());
    }

    /// The converter's permutation, written as llama.cpp writes it, inverted by ours.
    #[test]
    fn unpermute_inverts_the_converter() {
        let (n_heads, head_dim, cols) = (2, 4, 3);
        let hf: Vec<f32> = (0..n_heads * head_dim * cols).map(|v| v as f32).collect();
        // permute: reshape(n_heads, 2, head_dim/2, cols).swapaxes(1, 2)
        let mut gguf = vec![0f32; hf.len()];
        for h in 0..n_heads {
            for j in 0..2 {
                for i in 0..head_dim / 2 {
                    let src = h * head_dim + j * (head_dim / 2) + i;
                    let dst = h * head_dim + i * 2 + j;
                    gguf[dst * cols..(dst + 1) * cols].copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        assert_ne!(gguf, hf);
        assert_eq!(unpermute_rows(&gguf, n_heads, cols), hf);
    }
}
