#!/usr/bin/env python3
"""Reference LoRA training throughput: PEFT + PyTorch on the default GGUF model.

The same workload as ``cqa bench-train``: ``batch`` synthetic sequences of ``seq`` tokens cut
from one repeated sentence (sequence b starts at token 7·b), loss on the second half of each,
LoRA r=16 / alpha=32 / no dropout on all 7 projections, one ``torch.optim.AdamW`` step per batch.
One warm-up step, then the median of ``--steps`` timed steps.

Prints one JSON object: ``train_tokens_per_second`` (batch·seq / step time), ``step_seconds``,
``peak_rss_mib`` and, on CUDA, ``cuda_max_memory_allocated_mib``.

    python tests/reference/bench_train_reference.py                          # CPU, 2 threads
    python tests/reference/bench_train_reference.py --device cuda --batch 8 --seq 512
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = "The lighthouse keeper counted the ships by their lights, and the lights by their colours. " * 400


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--output", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    tok = AutoTokenizer.from_pretrained(str(args.model.parent), gguf_file=args.model.name)
    base = AutoModelForCausalLM.from_pretrained(str(args.model.parent), gguf_file=args.model.name, dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(base, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"))
    model.to(device).train()
    ids = tok(TEXT, add_special_tokens=False)["input_ids"]
    batch = torch.tensor([ids[b * 7 : b * 7 + args.seq] for b in range(args.batch)], device=device)
    half = args.seq // 2
    optimizer = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=2e-4, weight_decay=0.01)

    def step() -> float:
        t = time.perf_counter()
        logits = model(input_ids=batch).logits[:, half - 1 : -1]
        logp = torch.log_softmax(logits.float(), dim=-1)
        loss = -logp.gather(-1, batch[:, half:].unsqueeze(-1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
        optimizer.step()
        optimizer.zero_grad()
        loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t

    step()
    times = [step() for _ in range(args.steps)]
    step_s = statistics.median(times)
    out = {
        "engine": f"PEFT {peft.__version__} + transformers {transformers.__version__} + torch {torch.__version__}",
        "device": str(device),
        "threads": args.threads,
        "rank": args.rank,
        "targets": targets,
        "batch": args.batch,
        "seq": args.seq,
        "step_seconds": step_s,
        "train_tokens_per_second": args.batch * args.seq / step_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        out["cuda_max_memory_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    text = json.dumps(out)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
