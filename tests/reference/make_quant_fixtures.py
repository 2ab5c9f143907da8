#!/usr/bin/env python3
"""A small GGUF model whose matrices use every weight type the engine reads, and the
log-probabilities transformers computes from it: the reference for holding weights in their
stored form (tests/quant_reference.rs).

Writes:

* ``tests/fixtures/quant_mix.gguf``: a 2-layer llama-architecture model (d = 256, 4/2 heads,
  ff = 512, vocab 512), no tokenizer. Its 15 matrices cycle through F16, BF16, Q8_0, Q4_0,
  Q4_1, Q4_K, Q5_K and Q6_K (the embedding, also the tied head, is Q6_K); norms are F32.
  Values are random: N(0, 0.02²) quantized by gguf-py where it can (F16, BF16, Q8_0, Q4_0,
  Q4_1), random valid blocks of the same magnitude for the K-quants.
* ``tests/fixtures/quant_mix_logprobs.json``: ``ids`` (48 seeded token ids), ``logprobs[i] =
  ln p(ids[i+1] | ids[..=i])`` from transformers in float32 (it dequantizes every tensor to
  float32 through gguf-py), and each tensor's type.

Re-run (from the repository root; no network):

    python tests/reference/make_quant_fixtures.py

Deterministic for a given set of package versions (see requirements.txt).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as Q  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from shaped_gguf import WEIGHT_STD, random_k_blocks  # noqa: E402

D, HEADS, KV_HEADS, FF, VOCAB, LAYERS = 256, 4, 2, 512, 512, 2
CYCLE = [Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q4_K, Q.Q5_K, Q.Q6_K]


def encode(rng: np.random.Generator, rows: int, cols: int, qtype: Q) -> np.ndarray:
    if qtype in (Q.Q4_K, Q.Q5_K, Q.Q6_K):
        return random_k_blocks(rng, qtype, rows * cols).reshape(rows, -1)
    values = rng.standard_normal((rows, cols), dtype=np.float32) * WEIGHT_STD
    if qtype == Q.F16:
        return values.astype(np.float16)
    return gguf.quants.quantize(values, qtype)


def main() -> int:
    rng = np.random.default_rng(7)
    path = FIXTURES / "quant_mix.gguf"
    head_dim = D // HEADS
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("quant-mix reference")
    writer.add_context_length(128)
    writer.add_embedding_length(D)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    types = {}

    def matrix(name: str, rows: int, cols: int, qtype: Q) -> None:
        data = encode(rng, rows, cols, qtype)
        if qtype == Q.F16:
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_dtype=qtype)
        types[name] = qtype.name

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32))
        types[name] = "F32"

    matrix("token_embd.weight", VOCAB, D, Q.Q6_K)
    k = 0
    for i in range(LAYERS):
        p = f"blk.{i}"
        norm(f"{p}.attn_norm.weight")
        for short, rows, cols in [("attn_q", D, D), ("attn_k", KV_HEADS * head_dim, D), ("attn_v", KV_HEADS * head_dim, D),
                                  ("attn_output", D, D), ("ffn_gate", FF, D), ("ffn_up", FF, D), ("ffn_down", D, FF)]:
            matrix(f"{p}.{short}.weight", rows, cols, CYCLE[k % len(CYCLE)])
            k += 1
        norm(f"{p}.ffn_norm.weight")
    norm("output_norm.weight")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    model = AutoModelForCausalLM.from_pretrained(str(FIXTURES), gguf_file=path.name, dtype=torch.float32).eval()
    ids = np.random.default_rng(11).integers(0, VOCAB, size=48).tolist()
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    picked = [float(logprobs[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    out = {
        "model": path.name,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "gguf": getattr(gguf, "__version__", "see requirements.txt"),
        "types": types,
        "ids": ids,
        "logprobs": picked,
    }
    (FIXTURES / "quant_mix_logprobs.json").write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes) and quant_mix_logprobs.json; types: {sorted(set(types.values()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
