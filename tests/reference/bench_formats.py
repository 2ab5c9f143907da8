#!/usr/bin/env python3
"""The default model in the ftypes people download, made by llama.cpp's own quantizer, and each
file run by cqa and by llama.cpp back to back: decode (cqa with 8-bit and with f32 activations)
and prefill rates, load time and peak RSS
(``./x bench-formats``; figures in BENCHMARKS.md).

The files are requantized from the shipped Q4_1 GGUF (llama.cpp's ``allow_requantize``): their
weights are the Q4_1 values re-encoded, so they measure speed and memory, not quality. Each goes
to ``models/requantized/`` once. ``--source`` quantizes another file instead, such as a
random-weight F16 model with Qwen2.5-0.5B's shapes (``scripts/shaped_gguf.py --quant f16
--pad-vocab``), whose Q4_K_M then has the real 896-wide fallbacks.

Runs in the llama-cpp-python venv (requirements-llama.txt):

    python tests/reference/bench_formats.py --cqa ~/.cache/cqa-studio/target/debug/cqa [--ftypes Q4_K_M,IQ4_XS]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import llama_cpp

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_DIR = REPO_ROOT / "models" / "requantized"
FTYPES = ["Q4_K_M", "Q5_K_M", "Q3_K_M", "Q5_0", "IQ4_XS", "Q8_0"]


def requantize(name: str, source: Path = SOURCE) -> Path:
    stem = source.name.removesuffix(".gguf").rsplit(".", 1)[0]
    path = OUT_DIR / f"{stem}.{name}.gguf"
    if path.exists():
        return path
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + name)
    params.nthread = 2
    params.allow_requantize = True
    tmp = path.with_suffix(".partial")
    if llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params) != 0:
        raise SystemExit(f"llama_model_quantize failed for {name}")
    tmp.rename(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cqa", required=True, type=Path)
    parser.add_argument("--ftypes", default=",".join(FTYPES))
    parser.add_argument("--source", type=Path, default=SOURCE,
                        help="the GGUF to requantize (default: the shipped model); e.g. a shaped F16 file from "
                             "scripts/shaped_gguf.py --quant f16 --pad-vocab")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    rows = []
    for name in args.ftypes.split(","):
        path = requantize(name, args.source)
        def cqa_bench(*extra: str) -> dict:
            command = [str(args.cqa), "--model", str(path), "bench", "--prefill", "256", "--decode", "64", "--repeats", "3", *extra]
            return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)

        cqa = cqa_bench()
        # The same decode with f32 activations (by default a CPU with AVX-512 VNNI rounds them to
        # 8 bits, as llama.cpp does).
        cqa_f32 = cqa_bench("--f32-activations")
        llama = json.loads(subprocess.run([sys.executable, str(REPO_ROOT / "tests/reference/bench_llama_cpp.py"), "--model", str(path)],
                                          check=True, capture_output=True, text=True).stdout)
        info = json.loads(subprocess.run([str(args.cqa), "--model", str(path), "info", "--json"],
                                         check=True, capture_output=True, text=True).stdout)
        row = {
            "ftype": name,
            "file_mib": path.stat().st_size / 2**20,
            "tensor_types": info["tensor_types"],
            "cqa": {"decode": cqa["decode_tokens_per_second"], "decode_f32_activations": cqa_f32["decode_tokens_per_second"],
                    "prefill_256": cqa["prefill_tokens_per_second"]["256"],
                    "prompt_256": cqa["prompt_tokens_per_second"]["256"],
                    "peak_rss_mib": cqa["peak_rss_mib"], "load_s": cqa["load_seconds"]},
            "llama_cpp": {"decode": llama["decode"]["tokens_per_s"], "prefill_256": llama["prefill"]["256"]["tokens_per_s"],
                          "prefill_256_all_logits": llama["prefill_all_logits"]["256"]["tokens_per_s"],
                          "peak_rss_mib": llama["peak_rss_mib"], "load_s": llama["load_s"]},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.output:
        args.output.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
