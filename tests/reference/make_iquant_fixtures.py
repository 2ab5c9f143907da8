#!/usr/bin/env python3
"""Model files in the I-quants below 4 bits, and what the Python reference stack reads from them:
the end-to-end reference for IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S
(tests/quantizer_reference.rs, beside the files of make_quantizer_fixtures.py).

llama.cpp's quantizer makes these types only with an importance matrix, which llama-cpp-python
cannot pass in, and gguf-py cannot quantize them. So each file here is the ``narrow`` model of
make_quantizer_fixtures.py (1 layer, d = ff = 256, 4/2 heads, vocab 128, tied embeddings) with
every matrix, the embedding included, written in one of these types from seeded random blocks:
random lattice indexes, signs and sub-block scales (every byte pattern of those fields is valid),
and a super-block scale ``d`` chosen per type so that the weights have a standard deviation near
the 0.02 of the other fixtures' models. What is checked is the reading, not the quantizing:
gguf-py's ``dequantize`` of each tensor (as a SHA-256 of its f32 values) and transformers'
log-probabilities from each file, which it reads through gguf-py.

Writes ``tests/fixtures/quantized/narrow-<TYPE>.gguf`` and ``tests/fixtures/iquant_reference.json``
(the layout of quantizer_reference.json).

Re-run (from the repository root; no network):

    pip install -r tests/reference/requirements.txt
    python tests/reference/make_iquant_fixtures.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from make_dequant_fixtures import QUANT_BLOCKS  # noqa: E402
from make_quantizer_fixtures import FF, FIXTURES, OUT_DIR, REPO_ROOT, VOCAB, tensor_digests, transformers_logprobs  # noqa: E402

D, HEADS, KV_HEADS = 256, 4, 2

# The super-block scale of each type (uniform in [0.5, 1.5] times this): a weight's magnitude is
# d times a sub-block factor (~2-16) times a lattice coordinate (~1-40).
D_SCALE = {
    T.IQ2_XXS: 3e-4,
    T.IQ2_XS: 3e-4,
    T.IQ2_S: 3e-4,
    T.IQ3_XXS: 1.4e-4,
    T.IQ3_S: 1.3e-4,
    T.IQ1_S: 3e-3,
    T.IQ1_M: 3e-3,
}


def with_scale(qtype: T, block: bytes, d: float) -> bytes:
    """`block` with its f16 super-block scale set to `d`."""
    bits = int(np.array([d], dtype="<f2").view("<u2")[0])
    b = bytearray(block)
    if qtype == T.IQ1_M:
        # The top nibbles of its last four u16 hold d, four bits each.
        for i in range(4):
            b[49 + 2 * i] = (b[49 + 2 * i] & 0x0F) | (((bits >> (4 * i)) & 0xF) << 4)
    else:
        b[0:2] = bits.to_bytes(2, "little")
    return bytes(b)


def write_model(path: Path, qtype: T, rng: np.random.Generator) -> None:
    make_block = {q: make for q, make, _ in QUANT_BLOCKS}[qtype]
    head_dim = D // HEADS
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"{qtype.name} reference")
    writer.add_context_length(128)
    writer.add_embedding_length(D)
    writer.add_block_count(1)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)

    def matrix(name: str, rows: int, cols: int) -> None:
        blocks = [with_scale(qtype, make_block(rng), D_SCALE[qtype] * rng.uniform(0.5, 1.5)) for _ in range(rows * cols // 256)]
        data = np.frombuffer(b"".join(blocks), dtype=np.uint8).reshape(rows, -1)
        writer.add_tensor(name, data, raw_dtype=qtype)

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32))

    matrix("token_embd.weight", VOCAB, D)
    norm("blk.0.attn_norm.weight")
    for short, rows, cols in [("attn_q", D, D), ("attn_k", KV_HEADS * head_dim, D), ("attn_v", KV_HEADS * head_dim, D),
                              ("attn_output", D, D), ("ffn_gate", FF, D), ("ffn_up", FF, D), ("ffn_down", D, FF)]:
        matrix(f"blk.0.{short}.weight", rows, cols)
    norm("blk.0.ffn_norm.weight")
    norm("output_norm.weight")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261207)
    ids = np.random.default_rng(11).integers(0, VOCAB, size=40).tolist()  # as make_quantizer_fixtures.py's
    files = {}
    for qtype in D_SCALE:
        path = OUT_DIR / f"narrow-{qtype.name}.gguf"
        write_model(path, qtype, rng)
        tensors = tensor_digests(path)
        logprobs = transformers_logprobs(path, ids)
        files[f"narrow-{qtype.name}"] = {"file": path.name, "bytes": path.stat().st_size, "tensors": tensors, "logprobs": logprobs}
        print(f"  {qtype.name:8s} {path.stat().st_size:7d} bytes  log-probs {min(logprobs):.3f} .. {max(logprobs):.3f}")

    import torch
    import transformers

    doc = {
        "generator": "tests/reference/make_iquant_fixtures.py",
        "gguf": "see requirements.txt",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "ids": ids,
        "files": files,
    }
    out = FIXTURES / "iquant_reference.json"
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(REPO_ROOT)} and {len(files)} files under {OUT_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
