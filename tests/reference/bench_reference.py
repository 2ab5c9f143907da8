#!/usr/bin/env python3
"""Reference throughput of Hugging Face transformers (PyTorch) on the default GGUF model.

Prints one JSON object with:

* ``load_s``: wall time to build the tokenizer and the model (transformers dequantizes every
  GGUF tensor to float32 on load) and move it to the device;
* ``prefill``: one forward pass (no KV cache) over a 256- and a 512-token input, as
  tokens/s; median (``tokens_per_s``) and best (``best_tokens_per_s``) of 3 timed runs after
  1 warm-up;
* ``decode``: greedy ``generate`` of exactly 64 new tokens (``min_new_tokens=max_new_tokens=64``,
  ``do_sample=False``) from a short prompt, as new tokens/s (the short prefill is included);
  median and best of 3 timed runs after 1 warm-up;
* ``peak_rss_mib`` (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and, on CUDA,
  ``cuda_max_memory_allocated_mib`` (``torch.cuda.max_memory_allocated``);
* the torch / transformers versions, thread count, device and dtype.

Re-run (from the repository root; no network needed):

    python tests/reference/bench_reference.py                      # CPU, float32, 2 threads
    python tests/reference/bench_reference.py --device cuda        # CUDA, if available
    python tests/reference/bench_reference.py --output tests/reference/bench_reference_cpu.json

``tests/reference/bench_reference_cpu.json`` holds the output of the first command on the
development machine (2 CPU cores). Timings depend on the machine; the workload does not.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

# The workload, shared with bench_llama_cpp.py.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_workload import DECODE_PROMPT, DECODE_TOKENS, FILLER, PREFILL_LENGTHS, emit, rates, timed  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda requested but CUDA is not available", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model_path = args.model.resolve()
    load_at_start = os.getloadavg()[0]

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(model_path.parent), gguf_file=model_path.name, dtype=dtype)
    model.to(device).eval()
    sync(device)
    load_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    filler_ids = tok(FILLER * 16, add_special_tokens=False)["input_ids"]
    assert len(filler_ids) >= max(PREFILL_LENGTHS)

    prefill = {}
    with torch.inference_mode():
        for n in PREFILL_LENGTHS:
            ids = torch.tensor([filler_ids[:n]], device=device)
            times = timed(lambda: model(input_ids=ids, use_cache=False), lambda: sync(device))
            prefill[str(n)] = {"tokens": n, **rates(n, times)}

        prompt_ids = tok(DECODE_PROMPT, return_tensors="pt")["input_ids"].to(device)
        attention_mask = torch.ones_like(prompt_ids)

        def decode():
            out = model.generate(
                input_ids=prompt_ids,
                attention_mask=attention_mask,
                do_sample=False,
                max_new_tokens=DECODE_TOKENS,
                min_new_tokens=DECODE_TOKENS,
                pad_token_id=tok.pad_token_id,
            )
            assert out.shape[1] - prompt_ids.shape[1] == DECODE_TOKENS
            return out

        times = timed(decode, lambda: sync(device))
        decode_stats = {"prompt_tokens": int(prompt_ids.shape[1]), "new_tokens": DECODE_TOKENS, **rates(DECODE_TOKENS, times)}

    result = {
        "engine": f"transformers (PyTorch, {model.config._attn_implementation} attention)",
        "model": model_path.name,
        "device": str(device) if device.type != "cuda" else f"cuda ({torch.cuda.get_device_name(device)})",
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        # Other work on the machine skews CPU timings; recorded so a noisy run can be spotted.
        "loadavg_1m_at_start": load_at_start,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_s": load_s,
        "prefill": prefill,
        "decode": decode_stats,
        # ru_maxrss is in KiB on Linux (bytes on macOS).
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1024**2),
    }
    if device.type == "cuda":
        result["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20

    emit(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
