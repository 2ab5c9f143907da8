#!/usr/bin/env python3
"""Files made by llama.cpp's own quantizer, and what the Python reference stack reads from them:
the reference for "every GGUF a user downloads opens" (tests/quantizer_reference.rs).

Two small llama-architecture models with random weights (1 layer, ff = 256, vocab 128, tied
embeddings) are written as F16 with gguf-py, then quantized by ``llama_model_quantize``
(llama-cpp-python, tests/reference/requirements-llama.txt) into the ftypes below:

* ``wide``: d = 576 as in SmolLM2-135M (9/3 heads). Its rows of 576 are not whole 256-element
  super-blocks, so in the K-quant and IQ4_XS ftypes llama.cpp falls back to Q5_0, Q5_1, Q8_0 or
  IQ4_NL for most matrices, as it does in every real SmolLM2 or Qwen2.5 download; ffn_down (rows
  of 256) takes the K-quant itself.
* ``narrow``: d = 256 (4/2 heads), where every matrix takes its ftype's own types (Q2_K, Q5_K…).

Writes ``tests/fixtures/quantized/<model>-<FTYPE>.gguf`` and ``tests/fixtures/quantizer_reference.json``:

    {"files": {"wide-Q4_K_M": {"tensors": {name: {"type", "shape", "sha256"}}, "logprobs": [...]}, ...},
     "ids": [...], ...}

* ``sha256``: of gguf-py's ``dequantize`` of the tensor, as little-endian float32, in the file's
  element order: a decoder that differs in one bit of one value fails.
* ``logprobs[i] = ln p(ids[i+1] | ids[..=i])`` from transformers (float32), which reads the file
  through gguf-py.

Re-run (from the repository root; no network):

    python tests/reference/make_quantizer_fixtures.py --llama-python ~/.cache/cqa-studio/venv-llama/bin/python

The quantization runs in the llama-cpp-python interpreter (a separate venv, since it compiles
llama.cpp); everything else in this one (requirements.txt). Deterministic for given versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import gguf  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
OUT_DIR = FIXTURES / "quantized"
FF, VOCAB, LAYERS = 256, 128, 1
WEIGHT_STD = 0.02

# (d, heads, kv heads) of each model, and the ftypes made from it, by llama.cpp's names
# (LLAMA_FTYPE_MOSTLY_<name>): together every type of the registry but MXFP4, which llama.cpp
# writes only for mixture-of-experts tensors. The I-quants below 4 bits need an importance
# matrix, which llama-cpp-python cannot pass in; the registry does not read their blocks either.
MODELS = {
    "wide": ((576, 9, 3), ["Q4_0", "Q3_K_M", "Q4_K_M", "Q5_K_M", "IQ4_XS", "TQ1_0", "TQ2_0"]),
    "narrow": ((256, 4, 2), ["F16", "BF16", "Q8_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q5_K_M", "Q6_K", "IQ4_NL"]),
}

QUANTIZE = r"""
import sys, llama_cpp
src, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
params = llama_cpp.llama_model_quantize_default_params()
params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + name)
params.nthread = 2
rc = llama_cpp.llama_model_quantize(src.encode(), out.encode(), params)
sys.exit(rc)
"""


def write_f16_model(path: Path, D: int, HEADS: int, KV_HEADS: int) -> None:
    rng = np.random.default_rng(20261206)
    head_dim = D // HEADS
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("quantizer reference")
    writer.add_context_length(128)
    writer.add_embedding_length(D)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FF)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(VOCAB)
    writer.add_file_type(1)  # mostly F16

    def matrix(name: str, rows: int, cols: int) -> None:
        writer.add_tensor(name, (rng.standard_normal((rows, cols), dtype=np.float32) * WEIGHT_STD).astype(np.float16))

    def norm(name: str) -> None:
        writer.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(D)).astype(np.float32))

    matrix("token_embd.weight", VOCAB, D)
    for i in range(LAYERS):
        p = f"blk.{i}"
        norm(f"{p}.attn_norm.weight")
        for short, rows, cols in [("attn_q", D, D), ("attn_k", KV_HEADS * head_dim, D), ("attn_v", KV_HEADS * head_dim, D),
                                  ("attn_output", D, D), ("ffn_gate", FF, D), ("ffn_up", FF, D), ("ffn_down", D, FF)]:
            matrix(f"{p}.{short}.weight", rows, cols)
        norm(f"{p}.ffn_norm.weight")
    norm("output_norm.weight")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def tensor_digests(path: Path) -> dict:
    reader = gguf.GGUFReader(str(path))
    out = {}
    for t in reader.tensors:
        qtype = gguf.GGMLQuantizationType(t.tensor_type)
        values = gguf.quants.dequantize(np.asarray(t.data), qtype)
        values = np.ascontiguousarray(np.asarray(values, dtype="<f4").reshape(-1))
        assert np.all(np.isfinite(values)), (path.name, t.name)
        out[t.name] = {
            "type": qtype.name,
            "shape": [int(d) for d in reversed(t.shape)],  # row-major, outermost first
            "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
        }
    return out


def transformers_logprobs(path: Path, ids: list[int]) -> list[float]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    logprobs = torch.log_softmax(logits, dim=-1)
    return [float(logprobs[i, ids[i + 1]]) for i in range(len(ids) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-python", required=True, help="a Python with llama-cpp-python installed")
    args = parser.parse_args()

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    # Each file is rewritten in place; the folder also holds make_iquant_fixtures.py's files.
    ids = np.random.default_rng(11).integers(0, VOCAB, size=40).tolist()
    version = subprocess.run([args.llama_python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                             check=True, capture_output=True, text=True).stdout.strip()
    files = {}
    for model, ((d, heads, kv_heads), ftypes) in MODELS.items():
        source = OUT_DIR / f"{model}-source.tmp"
        write_f16_model(source, d, heads, kv_heads)
        for name in ftypes:
            path = OUT_DIR / f"{model}-{name}.gguf"
            subprocess.run([args.llama_python, "-c", QUANTIZE, str(source), str(path), name], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            tensors = tensor_digests(path)
            files[f"{model}-{name}"] = {"file": path.name, "bytes": path.stat().st_size, "tensors": tensors,
                                        "logprobs": transformers_logprobs(path, ids)}
            types = sorted({t["type"] for t in tensors.values()})
            print(f"  {model:6s} {name:7s} {path.stat().st_size:8d} bytes  {', '.join(types)}")
        source.unlink()

    import torch
    import transformers

    doc = {
        "generator": "tests/reference/make_quantizer_fixtures.py",
        "llama_cpp_python": version,
        "gguf": "see requirements.txt",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "ids": ids,
        "files": files,
    }
    out = FIXTURES / "quantizer_reference.json"
    out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out.relative_to(REPO_ROOT)} and {len(files)} files under {OUT_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
