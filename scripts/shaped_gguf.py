#!/usr/bin/env python3
"""Random-weight GGUF models with the true shapes of the models users bring.

Random weights cannot judge anything, but they take the memory and the time of the real
model, so the engine's limits (what loads, what fits a browser tab, how fast it runs) can be
measured and tested without downloading multi-gigabyte checkpoints.

    python scripts/shaped_gguf.py --shape qwen2.5-0.5b --quant q8_0 --out models/shaped/qwen2.5-0.5b.Q8_0.gguf
    python scripts/shaped_gguf.py --shape qwen2.5-1.5b --quant q4_k_m --out models/shaped/qwen2.5-1.5b.Q4_K_M.gguf
    python scripts/shaped_gguf.py --shape smollm2-135m --quant iq4_xs --out models/shaped/smollm2-135m.IQ4_XS.gguf
    python scripts/shaped_gguf.py --list

`--layers N` keeps every width (so the same fallbacks happen) with fewer layers: what a test
needs to reach every kernel in less time.

Shapes (from each model's config.json): Qwen2.5-0.5B and 1.5B (qwen2, q/k/v bias, tied
embeddings), SmolLM2-360M and SmolLM2-135M (llama). `--quant q8_0` stores every matrix as Q8_0;
`--quant q4_k_m` mixes like llama.cpp's Q4_K_M: Q4_K for most matrices, Q6_K for attn_v,
ffn_down and the embedding, and where a row is not a whole number of 256-element super-blocks
llama.cpp's fallbacks, Q5_0 for Q4_K and Q8_0 for Q6_K (as in a real SmolLM2 or Qwen2.5
download). `--quant iq4_xs` takes IQ4_XS, and IQ4_NL where rows are not whole super-blocks.
`--quant f16` stores every matrix as F16: with `--pad-vocab`, a source that llama.cpp loads and
its own quantizer requantizes into Q4_K_M etc. with the real fallbacks (`bench_formats.py
--source`). Norms and biases are F32.

The tokenizer and chat template are copied from the default SmolLM2 GGUF (49152 tokens); the
embedding keeps the real model's row count, so every token id the tokenizer makes is valid.
Needs the `gguf` and `numpy` packages (tests/reference/requirements.txt). Deterministic for a
given --seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

REPO_ROOT = Path(__file__).resolve().parents[1]
TOKENIZER_SOURCE = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

SHAPES = {
    "qwen2.5-0.5b": dict(arch="qwen2", layers=24, d=896, heads=14, kv_heads=2, ff=4864, vocab=151936,
                         bias=True, theta=1_000_000.0, eps=1e-6, ctx=32768),
    "qwen2.5-1.5b": dict(arch="qwen2", layers=28, d=1536, heads=12, kv_heads=2, ff=8960, vocab=151936,
                         bias=True, theta=1_000_000.0, eps=1e-6, ctx=32768),
    "smollm2-135m": dict(arch="llama", layers=30, d=576, heads=9, kv_heads=3, ff=1536, vocab=49152,
                         bias=False, theta=100_000.0, eps=1e-5, ctx=8192),
    "smollm2-360m": dict(arch="llama", layers=32, d=960, heads=15, kv_heads=5, ff=2560, vocab=49152,
                         bias=False, theta=100_000.0, eps=1e-5, ctx=8192),
}

# Weights as a trained model has them: roughly N(0, 0.02²).
WEIGHT_STD = 0.02


def random_k_blocks(rng: np.random.Generator, qtype: Q, n_elements: int) -> np.ndarray:
    """Valid K-quant (and IQ4) blocks of random values whose magnitudes match WEIGHT_STD: random codes and
    sub-block scales, with the super-block scale fields set so |w| stays near 0.02."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = n_elements // block_elems
    blocks = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    if qtype in (Q.Q4_K, Q.Q5_K):
        # w = d·sc·q − dmin·m with sc, m < 64 and q < 16 (Q4_K) or < 32 (Q5_K).
        q_max = 15 if qtype == Q.Q4_K else 31
        d = np.full(n_blocks, 2 * WEIGHT_STD / (63 * q_max), dtype=np.float16)
        dmin = np.full(n_blocks, WEIGHT_STD / 63, dtype=np.float16)
        blocks[:, 0:2] = d.view(np.uint8).reshape(n_blocks, 2)
        blocks[:, 2:4] = dmin.view(np.uint8).reshape(n_blocks, 2)
    elif qtype == Q.IQ4_NL:
        # w = d·level with |level| ≤ 127.
        d = np.full(n_blocks, WEIGHT_STD / 64, dtype=np.float16)
        blocks[:, 0:2] = d.view(np.uint8).reshape(n_blocks, 2)
    elif qtype == Q.IQ4_XS:
        # w = d·(scale − 32)·level with |scale − 32| ≤ 32 and |level| ≤ 127.
        d = np.full(n_blocks, WEIGHT_STD / (64 * 16), dtype=np.float16)
        blocks[:, 0:2] = d.view(np.uint8).reshape(n_blocks, 2)
    elif qtype == Q.Q6_K:
        # w = d·sc·(q − 32) with sc an i8 and q < 64; d is the block's last two bytes.
        d = np.full(n_blocks, WEIGHT_STD / (127 * 32), dtype=np.float16)
        blocks[:, block_bytes - 2:] = d.view(np.uint8).reshape(n_blocks, 2)
    else:
        raise ValueError(f"no K-quant generator for {qtype.name}")
    return blocks


def weight_type(name: str, cols: int, quant: str) -> Q:
    if quant == "q8_0":
        return Q.Q8_0
    if quant == "f16":
        return Q.F16
    whole = cols % 256 == 0
    if quant == "iq4_xs":
        return Q.IQ4_XS if whole else Q.IQ4_NL
    if name.endswith(("attn_v.weight", "ffn_down.weight")) or name == "token_embd.weight":
        return Q.Q6_K if whole else Q.Q8_0
    return Q.Q4_K if whole else Q.Q5_0


def matrix(rng: np.random.Generator, rows: int, cols: int, qtype: Q) -> np.ndarray:
    if qtype == Q.F16:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * WEIGHT_STD).astype(np.float16)
    if qtype in (Q.Q8_0, Q.Q5_0):
        # Quantized in slices: a 151936 × 1536 embedding is 900 MB as float32.
        out = []
        for start in range(0, rows, 8192):
            n = min(8192, rows - start)
            values = rng.standard_normal((n, cols), dtype=np.float32) * WEIGHT_STD
            out.append(gguf.quants.quantize(values, qtype))
        return np.concatenate(out)
    blocks = random_k_blocks(rng, qtype, rows * cols)
    return blocks.reshape(rows, -1)


def copy_tokenizer(writer: gguf.GGUFWriter, source: Path, pad_to: int | None = None) -> None:
    """The source's tokenizer; with `pad_to`, its token list padded with unused tokens to that many
    (llama.cpp refuses an embedding with more rows than the tokenizer has tokens)."""
    reader = gguf.GGUFReader(str(source))
    for key, field in reader.fields.items():
        if not key.startswith("tokenizer."):
            continue
        value = field.contents()
        if pad_to is not None and key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.scores"):
            extra = range(len(value), pad_to)
            if key == "tokenizer.ggml.tokens":
                value = list(value) + [f"<|unused_{i}|>" for i in extra]
            elif key == "tokenizer.ggml.token_type":
                value = list(value) + [5] * len(extra)  # llama.cpp's LLAMA_TOKEN_TYPE_UNUSED
            else:
                value = list(value) + [0.0] * len(extra)
        kind = field.types[0]
        if kind == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, kind, sub_type=field.types[-1])
        else:
            writer.add_key_value(key, value, kind)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES))
    parser.add_argument("--quant", choices=["q8_0", "q4_k_m", "iq4_xs", "f16"], default="q8_0")
    parser.add_argument("--pad-vocab", action="store_true",
                        help="pad the tokenizer to the embedding's rows with unused tokens, so llama.cpp loads the file "
                             "(with --quant f16: the source llama.cpp's own quantizer requantizes, tests/reference/bench_formats.py --source)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", type=int, help="fewer layers than the model has (every width kept): for tests")
    parser.add_argument("--list", action="store_true", help="print the shapes and exit")
    args = parser.parse_args()
    if args.list or not args.shape or not args.out:
        for name, s in SHAPES.items():
            print(name, s)
        return 0 if args.list else 2

    s = SHAPES[args.shape]
    arch, d, layers = s["arch"], s["d"], args.layers or s["layers"]
    head_dim = d // s["heads"]
    q_dim, kv_dim = s["heads"] * head_dim, s["kv_heads"] * head_dim
    rng = np.random.default_rng(args.seed)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(args.out), arch)
    writer.add_name(f"random-weight {args.shape} ({args.quant})")
    writer.add_context_length(s["ctx"])
    writer.add_embedding_length(d)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(s["ff"])
    writer.add_head_count(s["heads"])
    writer.add_head_count_kv(s["kv_heads"])
    writer.add_rope_freq_base(s["theta"])
    writer.add_layer_norm_rms_eps(s["eps"])
    writer.add_vocab_size(s["vocab"])
    copy_tokenizer(writer, TOKENIZER_SOURCE, s["vocab"] if args.pad_vocab else None)

    def add_matrix(name: str, rows: int, cols: int) -> None:
        qtype = weight_type(name, cols, args.quant)
        writer.add_tensor(name, matrix(rng, rows, cols, qtype), raw_dtype=qtype)

    def add_vector(name: str, n: int, value: float | None = None) -> None:
        data = np.full(n, value, dtype=np.float32) if value is not None else rng.standard_normal(n, dtype=np.float32) * WEIGHT_STD
        writer.add_tensor(name, data)

    add_matrix("token_embd.weight", s["vocab"], d)
    for i in range(layers):
        p = f"blk.{i}"
        add_vector(f"{p}.attn_norm.weight", d, 1.0)
        add_matrix(f"{p}.attn_q.weight", q_dim, d)
        add_matrix(f"{p}.attn_k.weight", kv_dim, d)
        add_matrix(f"{p}.attn_v.weight", kv_dim, d)
        if s["bias"]:
            add_vector(f"{p}.attn_q.bias", q_dim)
            add_vector(f"{p}.attn_k.bias", kv_dim)
            add_vector(f"{p}.attn_v.bias", kv_dim)
        add_matrix(f"{p}.attn_output.weight", d, q_dim)
        add_vector(f"{p}.ffn_norm.weight", d, 1.0)
        add_matrix(f"{p}.ffn_gate.weight", s["ff"], d)
        add_matrix(f"{p}.ffn_up.weight", s["ff"], d)
        add_matrix(f"{p}.ffn_down.weight", d, s["ff"])
    add_vector("output_norm.weight", d, 1.0)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
