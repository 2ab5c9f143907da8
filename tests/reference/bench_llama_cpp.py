#!/usr/bin/env python3
"""Reference throughput of llama.cpp (through llama-cpp-python, built from source) on the
default GGUF model, with the workload of bench_reference.py (bench_workload.py).

Prints one JSON object with:

* ``load_s``: wall time to map the file and build the context;
* ``prefill``: one evaluation of a 256- and a 512-token input from an empty cache, as tokens/s;
  median and best of 3 timed runs after 1 warm-up. llama.cpp computes the logits of the last
  position only, transformers and ``cqa bench`` those of every position;
* ``prefill_all_logits``: the same with the logits of every position (``logits_all``), the
  work of scoring and of ``cqa bench``'s prefill;
* ``decode``: greedy generation of exactly 64 new tokens from the short prompt, end-of-text
  ignored, as new tokens/s (the prompt's prefill included, as in the other two);
* ``peak_rss_mib`` (before the scoring context) and the thread count (the same for prompt and
  generation).

Re-run (from the repository root): ``./x bench`` installs llama-cpp-python (pinned in
requirements-llama.txt) into its own venv under ~/.cache/cqa-studio and runs this with it.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_workload import DECODE_PROMPT, DECODE_TOKENS, FILLER, PREFILL_LENGTHS, emit, rates, timed  # noqa: E402

import llama_cpp  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def time_inputs(llm: llama_cpp.Llama, filler_ids: list[int]) -> dict:
    """One evaluation of each of PREFILL_LENGTHS' first filler tokens from an empty cache."""
    out = {}
    for n in PREFILL_LENGTHS:
        ids = filler_ids[:n]

        def run():
            llm.reset()
            llm.eval(ids)

        out[str(n)] = {"tokens": n, **rates(n, timed(run))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file")
    parser.add_argument("--threads", type=int, default=2, help="threads for prompt and generation (default: 2)")
    parser.add_argument("--output", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    model_path = args.model.resolve()
    load_at_start = os.getloadavg()[0]

    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=str(model_path),
        n_ctx=1024,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    load_s = time.perf_counter() - t0

    filler_ids = llm.tokenize((FILLER * 16).encode(), add_bos=False, special=False)
    assert len(filler_ids) >= max(PREFILL_LENGTHS)

    prefill = time_inputs(llm, filler_ids)

    prompt_ids = llm.tokenize(DECODE_PROMPT.encode(), add_bos=False, special=False)

    def decode():
        produced = 0
        for _ in llm.generate(prompt_ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
            produced += 1
            if produced == DECODE_TOKENS:
                break
        assert produced == DECODE_TOKENS

    times = timed(decode)
    # Taken before the scoring context below, whose logits of every position it would count.
    peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del llm

    # Scoring: the same inputs with the logits of every position, the work `cqa bench`'s
    # prefill and transformers' do (a log-prob for each token).
    scorer = llama_cpp.Llama(model_path=str(model_path), n_ctx=1024, n_batch=512, n_threads=args.threads,
                             n_threads_batch=args.threads, logits_all=True, verbose=False)
    scoring = time_inputs(scorer, filler_ids)
    result = {
        "engine": "llama.cpp (llama-cpp-python)",
        "model": model_path.name,
        "llama_cpp_python": llama_cpp.__version__,
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "loadavg_1m_at_start": load_at_start,
        "load_s": load_s,
        "prefill": prefill,
        "prefill_all_logits": scoring,
        "decode": {"prompt_tokens": len(prompt_ids), "new_tokens": DECODE_TOKENS, **rates(DECODE_TOKENS, times)},
        "peak_rss_mib": peak_rss_mib,
    }
    emit(result, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
