#!/usr/bin/env python3
"""Reference values for the calibration benchmark: scipy statistics and transformers surprisals.

Writes ``tests/fixtures/calibration_reference.json`` with:

* ``stats``: for several samples of paired differences (small and large n, with ties, with
  zeros, mostly negative), ``scipy.stats.wilcoxon(d, zero_method="pratt", correction=False,
  alternative="greater", method=M)`` where M is ``"exact"`` for n <= 25 with no ties and no zeros
  and ``"asymptotic"`` otherwise (cqa's rule), plus mean, median, sample SD and Cohen's d
  (mean / SD, ddof=1).
* ``spearman``: ``scipy.stats.spearmanr`` on score pairs with ties.
* ``surprisal``: for the first 4 literary and 4 factual items of
  ``data/benchmarks/calibration.jsonl``, transformers (float32, CPU) on the default GGUF:
  H(X) = surprisal in bits of the passage tokens 2..n (the first has no context: SmolLM2 adds no
  BOS), H(X|Y) = the same tokens after ``tok(constraint.strip() + "\\n\\n")``, and ΔI.

    python tests/reference/make_calibration_fixtures.py
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.stats  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
EXACT_MAX_N = 25


def samples() -> dict[str, list[float]]:
    rng = np.random.default_rng(20261128)
    out = {
        "exact_n8": rng.normal(0.5, 1.0, 8),
        "exact_n20": rng.normal(0.2, 1.0, 20),
        "exact_n25": rng.normal(0.4, 1.0, 25),
        "ties_n12": np.round(rng.normal(0.3, 1.0, 12), 1),
        "zeros_n15": np.concatenate([rng.normal(0.5, 1.0, 13), [0.0, 0.0]]),
        "normal_n40": rng.normal(0.3, 1.0, 40),
        "ties_zeros_n30": np.concatenate([np.round(rng.normal(0.2, 1.0, 27), 1), [0.0, 0.0, 0.0]]),
        "negative_n20": rng.normal(-0.8, 1.0, 20),
        "strong_n60": rng.normal(1.0, 1.0, 60),
    }
    return {k: [float(x) for x in v] for k, v in out.items()}


def wilcoxon_rule(d: np.ndarray) -> str:
    nonzero = d[d != 0]
    has_ties = len(np.unique(np.abs(d))) < len(d)
    return "exact" if len(d) <= EXACT_MAX_N and len(nonzero) == len(d) and not has_ties else "asymptotic"


def stats_cases() -> list[dict]:
    cases = []
    for name, values in samples().items():
        d = np.array(values)
        method = wilcoxon_rule(d)
        res = scipy.stats.wilcoxon(d, zero_method="pratt", correction=False, alternative="greater", method=method)
        sd = float(np.std(d, ddof=1))
        cases.append({
            "name": name, "d": values, "method": "exact" if method == "exact" else "normal",
            "wilcoxon_p": float(res.pvalue), "mean": float(np.mean(d)), "median": float(np.median(d)),
            "sd": sd, "cohens_d": float(np.mean(d) / sd),
        })
    return cases


def spearman_cases() -> list[dict]:
    pairs = [
        ([7, 3, 9, 5, 5, 8, 2, 6], [6, 4, 9, 5, 6, 7, 3, 5]),
        ([1, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]),
        ([4, 4, 7, 7, 9, 2, 3], [5, 6, 6, 8, 8, 2, 2]),
    ]
    return [{"x": x, "y": y, "rho": float(scipy.stats.spearmanr(x, y).statistic)} for x, y in pairs]


def bits(logprobs: torch.Tensor) -> float:
    return float(-logprobs.double().sum() / math.log(2))


def surprisal_cases() -> list[dict]:
    tok = AutoTokenizer.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name)
    model = AutoModelForCausalLM.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name, dtype=torch.float32).eval()
    items = [json.loads(line) for line in (REPO_ROOT / "data/benchmarks/calibration.jsonl").read_text().splitlines() if line.strip()]
    chosen = [i for i in items if i["group"] == "literary"][:4] + [i for i in items if i["group"] == "factual"][:4]

    def logprobs(context_ids: list[int], ids: list[int]) -> torch.Tensor:
        full = torch.tensor([context_ids + ids])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=full).logits.float()[0], dim=-1)
        n = len(context_ids)
        return torch.stack([lp[n + i - 1, t] for i, t in enumerate(ids) if n + i - 1 >= 0])

    out = []
    for item in chosen:
        ids = tok(item["passage"], add_special_tokens=False)["input_ids"]
        h_x = bits(logprobs([], ids))  # scores tokens 2..n
        context = tok(item["constraint"].strip() + "\n\n", add_special_tokens=True)["input_ids"]
        h_xy = bits(logprobs(context, ids)[1:])  # the same tokens 2..n
        out.append({"id": item["id"], "token_ids": ids[1:], "n_tokens": len(ids) - 1,
                    "h_x_bits": h_x, "h_x_given_y_bits": h_xy, "delta_i_bits": h_x - h_xy})
        print(f"{item['id']}: H(X) {h_x:.2f}  H(X|Y) {h_xy:.2f}  ΔI {h_x - h_xy:.2f} bits over {len(ids) - 1} tokens")
    return out


def main() -> int:
    torch.set_num_threads(2)
    out = {
        "generator": f"scipy {scipy.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, float32 CPU",
        "stats": stats_cases(),
        "spearman": spearman_cases(),
        "surprisal": surprisal_cases(),
    }
    path = REPO_ROOT / "tests/fixtures/calibration_reference.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
