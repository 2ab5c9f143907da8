#!/usr/bin/env python3
"""Dequantization fixtures for the GGUF tensor types the engine reads, computed with gguf-py.

Writes ``tests/fixtures/dequant.json``:

    {"generator": "...", "seed": ..., "cases": [
        {"type": "Q4_K", "ggml_type": 12, "shape": [512], "data_hex": "...", "values": [...]}, ...]}

* ``data_hex``: the raw little-endian bytes of the blocks, exactly as they sit in a GGUF file.
* ``values``: ``gguf.quants.dequantize(raw_bytes, type)``, as float32 (each JSON number is
  exactly a float32 value, so it round-trips bit for bit through f64 -> f32).

Synthetic cases (seeded, so the file is reproducible): the quantized payload bytes are random,
while the f16 scale fields are set to finite values (``d`` uniform in [-2, 2]; ``dmin`` uniform
in [0, 1] for K-quants; ``m`` uniform in [-2, 2] for Q4_1). Block counts: 4 blocks (128 values)
for Q8_0/Q4_0/Q4_1, 2 super-blocks (512 values) for Q4_K/Q5_K/Q6_K, and 64 values (plus a few
edge values: signed zeros, subnormals, extremes) for F32/F16/BF16.

Q5_0/Q5_1/IQ4_NL/MXFP4 get 4-8 blocks (128-256 values), the other 256-blocks 2 super-blocks; in
MXFP4 the exponent byte is at most 200 (scales up to 2^72), with e = 0 and 1 (subnormal scales)
among them.

Block layouts (ggml, little-endian):
    Q8_0  34 B: f16 d, 32 x int8 q                          x = d * q
    Q4_0  18 B: f16 d, 16 B nibbles                          x = d * (q - 8)
    Q4_1  20 B: f16 d, f16 m, 16 B nibbles                   x = d * q + m
          (byte j holds element j in its low nibble and element j + 16 in its high nibble)
    Q4_K 144 B: f16 d, f16 dmin, 12 B packed 6-bit scales/mins, 128 B nibbles
    Q5_K 176 B: f16 d, f16 dmin, 12 B scales/mins, 32 B qh (5th bits), 128 B nibbles
    Q6_K 210 B: 128 B ql, 64 B qh, 16 x int8 scales, f16 d (last)
    Q5_0  22 B: f16 d, 4 B qh (fifth bits), 16 B nibbles    x = d * (q - 16)
    Q5_1  24 B: f16 d, f16 m, 4 B qh, 16 B nibbles           x = d * q + m
    Q2_K  84 B: 16 B 4-bit scale/min pairs, 64 B 2-bit values, f16 d, f16 dmin
    Q3_K 110 B: 32 B hmask, 64 B 2-bit values, 12 B 6-bit scales, f16 d
    IQ4_NL 18 B: f16 d, 16 B nibbles indexing 16 non-linear levels
    IQ4_XS 136 B: f16 d, u16 scales_h, 4 B scales_l, 128 B nibbles
    TQ1_0  54 B: 48 B five base-3 digits a byte, 4 B four digits a byte, f16 d
    TQ2_0  66 B: 64 B 2-bit codes, f16 d                    x = d * (q - 1)
    MXFP4  17 B: E8M0 exponent e, 16 B FP4 (E2M1) nibbles     x = level * 2^(e - 128)
    IQ2_XXS 66 B: f16 d, 8 x (4 B lattice indexes, u32 of 4 sign codes + 4-bit scale)
    IQ2_XS  74 B: f16 d, 32 x u16 (9-bit index, 7-bit sign code), 8 B 4-bit scales
    IQ2_S   82 B: f16 d, 32 B indexes, 32 B signs, 8 B index high bits, 8 B 4-bit scales
    IQ3_XXS 98 B: f16 d, 64 B indexes, 8 x u32 (4 sign codes + 4-bit scale)
    IQ3_S  110 B: f16 d, 64 B indexes, 8 B ninth bits, 32 B signs, 4 B 4-bit scales
    IQ1_S   50 B: f16 d, 32 B indexes, 8 x u16 (index high bits, 3-bit scale, sign of delta)
    IQ1_M   56 B: 32 B indexes, 16 B nibbles (high bits, sign of delta), 4 x u16 (3-bit scales;
                  their top nibbles together are the f16 d)
    (Every byte pattern of the I-quants' index, sign and scale fields is valid; the lattices
    are gguf-py's own.)

Real cases: the first 2 blocks of ``blk.0.attn_q.weight`` ("real_blk0_attn_q") and of
``token_embd.weight`` ("real_token_embd") from the default model, when the model file exists.

Re-run (from the repository root; no network needed):

    pip install -r tests/reference/requirements.txt
    python tests/reference/make_dequant_fixtures.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT = REPO_ROOT / "tests" / "fixtures" / "dequant.json"
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
SEED = 20240607
QK_K = 256


def f16_bytes(x: float) -> bytes:
    return np.array([x], dtype="<f2").tobytes()


def f16_uniform(rng: np.random.Generator, lo: float, hi: float) -> bytes:
    return f16_bytes(rng.uniform(lo, hi))


def random_bytes(rng: np.random.Generator, n: int) -> bytes:
    return rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()


# One block of each quantized type: f16 fields finite, everything else random.
def block_q8_0(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 32)


def block_q4_0(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 16)


def block_q4_1(rng):
    return f16_uniform(rng, -2, 2) + f16_uniform(rng, -2, 2) + random_bytes(rng, 16)


def block_q4_k(rng):
    return f16_uniform(rng, -2, 2) + f16_uniform(rng, 0, 1) + random_bytes(rng, 12) + random_bytes(rng, QK_K // 2)


def block_q5_k(rng):
    return (
        f16_uniform(rng, -2, 2)
        + f16_uniform(rng, 0, 1)
        + random_bytes(rng, 12)
        + random_bytes(rng, QK_K // 8)
        + random_bytes(rng, QK_K // 2)
    )


def block_q6_k(rng):
    return random_bytes(rng, QK_K // 2) + random_bytes(rng, QK_K // 4) + random_bytes(rng, QK_K // 16) + f16_uniform(
        rng, -2, 2
    )


def block_q5_0(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 4) + random_bytes(rng, 16)


def block_q5_1(rng):
    return f16_uniform(rng, -2, 2) + f16_uniform(rng, -2, 2) + random_bytes(rng, 4) + random_bytes(rng, 16)


def block_q2_k(rng):
    return random_bytes(rng, QK_K // 16) + random_bytes(rng, QK_K // 4) + f16_uniform(rng, -2, 2) + f16_uniform(rng, 0, 1)


def block_q3_k(rng):
    return random_bytes(rng, QK_K // 8) + random_bytes(rng, QK_K // 4) + random_bytes(rng, 12) + f16_uniform(rng, -2, 2)


def block_iq4_nl(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 16)


def block_iq4_xs(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 2) + random_bytes(rng, QK_K // 64) + random_bytes(rng, QK_K // 2)


def block_tq1_0(rng):
    # Bytes of packed base-3 digits: any byte value is valid.
    return random_bytes(rng, 48) + random_bytes(rng, 4) + f16_uniform(rng, -2, 2)


def block_tq2_0(rng):
    return random_bytes(rng, QK_K // 4) + f16_uniform(rng, -2, 2)


def block_mxfp4(rng):
    # The E8M0 exponent: up to 2^72 (so that sums of a block's values stay far from f32's
    # limit), and now and then one of the two subnormal scales (e = 0, 1).
    e = int(rng.integers(0, 201)) if rng.uniform() < 0.8 else int(rng.integers(0, 2))
    return bytes([e]) + random_bytes(rng, 16)


def block_iq2_xxs(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 64)


def block_iq2_xs(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 64) + random_bytes(rng, 8)


def block_iq2_s(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 32 + 32 + 8 + 8)


def block_iq3_xxs(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 64 + 32)


def block_iq3_s(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 64 + 8 + 32 + 4)


def block_iq1_s(rng):
    return f16_uniform(rng, -2, 2) + random_bytes(rng, 32 + 16)


def block_iq1_m(rng):
    # The f16 d is spread over the top nibbles of the last four u16 (u16 i holds bits 4i..4i+4).
    d = int(np.frombuffer(f16_uniform(rng, -2, 2), dtype="<u2")[0])
    low = rng.integers(0, 1 << 12, size=4)
    scales = np.array([int(low[i]) | (((d >> (4 * i)) & 0xF) << 12) for i in range(4)], dtype="<u2")
    return random_bytes(rng, 32 + 16) + scales.tobytes()


QUANT_BLOCKS = [
    (T.Q8_0, block_q8_0, 4),
    (T.Q4_0, block_q4_0, 4),
    (T.Q4_1, block_q4_1, 4),
    (T.Q5_0, block_q5_0, 4),
    (T.Q5_1, block_q5_1, 4),
    (T.Q2_K, block_q2_k, 2),
    (T.Q3_K, block_q3_k, 2),
    (T.Q4_K, block_q4_k, 2),
    (T.Q5_K, block_q5_k, 2),
    (T.Q6_K, block_q6_k, 2),
    (T.IQ4_NL, block_iq4_nl, 4),
    (T.IQ4_XS, block_iq4_xs, 2),
    (T.TQ1_0, block_tq1_0, 2),
    (T.TQ2_0, block_tq2_0, 2),
    (T.MXFP4, block_mxfp4, 8),
    (T.IQ2_XXS, block_iq2_xxs, 2),
    (T.IQ2_XS, block_iq2_xs, 2),
    (T.IQ2_S, block_iq2_s, 2),
    (T.IQ3_XXS, block_iq3_xxs, 2),
    (T.IQ3_S, block_iq3_s, 2),
    (T.IQ1_S, block_iq1_s, 2),
    (T.IQ1_M, block_iq1_m, 2),
]

N_FLOAT_VALUES = 64


def float_payload(rng: np.random.Generator, qtype: T) -> bytes:
    """64 random values in [-4, 4] followed by edge values representable in the type."""
    x = rng.uniform(-4, 4, size=N_FLOAT_VALUES).astype(np.float32)
    if qtype == T.F32:
        edges = np.array([0.0, -0.0, 1e-45, -1e-40, 3.4028235e38, -1.1754944e-38], dtype=np.float32)
        return np.concatenate([x, edges]).astype("<f4").tobytes()
    if qtype == T.F16:
        edges = np.array([0.0, -0.0, 2.0**-24, -(2.0**-14 - 2.0**-24), 2.0**-14, 65504.0, -65504.0], dtype=np.float16)
        return np.concatenate([x.astype(np.float16), edges]).astype("<f2").tobytes()
    if qtype == T.BF16:
        bits = np.concatenate([x.view(np.uint32) >> 16, np.array([0x0000, 0x8000, 0x0001, 0x8080, 0x7F7F, 0xFF7F, 0x0080],
                                                                 dtype=np.uint32)])
        return bits.astype("<u2").tobytes()
    raise ValueError(qtype)


def dequantize(raw: bytes, qtype: T) -> np.ndarray:
    values = gguf.quants.dequantize(np.frombuffer(raw, dtype=np.uint8), qtype)
    values = np.asarray(values, dtype=np.float32).reshape(-1)
    assert np.all(np.isfinite(values)), f"{qtype.name}: non-finite values"
    return values


def case(name: str, qtype: T, raw: bytes, **extra) -> dict:
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    assert len(raw) % type_size == 0, (name, len(raw), type_size)
    values = dequantize(raw, qtype)
    assert values.size == len(raw) // type_size * block_size
    return {
        "name": name,
        "type": qtype.name,
        "ggml_type": int(qtype),
        "shape": [int(values.size)],
        **extra,
        "data_hex": raw.hex(),
        "values": [float(v) for v in values],  # float32 -> exact Python float
    }


def real_cases(model_path: Path) -> list[dict]:
    reader = gguf.GGUFReader(str(model_path))
    tensors = {t.name: t for t in reader.tensors}
    out = []
    for name, tensor_name in (("real_blk0_attn_q", "blk.0.attn_q.weight"), ("real_token_embd", "token_embd.weight")):
        tensor = tensors[tensor_name]
        qtype = T(tensor.tensor_type)
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        n_blocks = 2 if block_size > 1 else 64  # plain float tensors: 64 values
        raw = np.asarray(tensor.data).view(np.uint8).reshape(-1)[: n_blocks * type_size].tobytes()
        out.append(
            case(
                name,
                qtype,
                raw,
                source={
                    "tensor": tensor_name,
                    "tensor_type": qtype.name,
                    "tensor_shape": [int(d) for d in tensor.shape],  # ggml order: ne[0] (row length) first
                    "byte_offset_in_tensor": 0,
                },
            )
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file for the real-tensor cases")
    args = parser.parse_args()

    rng = np.random.default_rng(SEED)
    cases = []
    for qtype in (T.F32, T.F16, T.BF16):
        cases.append(case(qtype.name, qtype, float_payload(rng, qtype)))
    for qtype, make_block, n_blocks in QUANT_BLOCKS:
        raw = b"".join(make_block(rng) for _ in range(n_blocks))
        cases.append(case(qtype.name, qtype, raw))

    if args.model.exists():
        cases.extend(real_cases(args.model))
    else:
        print(f"warning: {args.model} not found; skipping the real-tensor cases", file=sys.stderr)

    doc = {
        "generator": f"gguf-py {version('gguf')} (gguf.quants.dequantize), numpy {np.__version__}",
        "seed": SEED,
        "cases": cases,
    }
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with OUTPUT.open("w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")

    for c in cases:
        v = np.array(c["values"], dtype=np.float32)
        print(f"  {c['name']:18s} {c['type']:5s} ggml_type={c['ggml_type']:2d} {len(c['data_hex']) // 2:5d} bytes "
              f"-> {v.size:4d} values in [{v.min():10.4f}, {v.max():10.4f}]")
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)} ({OUTPUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
