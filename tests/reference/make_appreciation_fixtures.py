#!/usr/bin/env python3
"""transformers / PEFT / scipy / numpy reference for cqa-studio's verdict distributions.

Writes ``tests/fixtures/appreciation_reference.json``:

* ``cases``: for 3 annotation records (``tests/fixtures/lora_records.jsonl``) and the three
  prefix modes, the exact prefix text cqa must build, its token ids, the token ids of the ten
  continuations ``Verdict: k/10`` (after the blank line that ends the assistant's text, which cqa
  moves from the prefix into each continuation), and ln p(continuation | prefix) under the default GGUF model in
  float32, for the base model and for the PEFT adapter ``tests/fixtures/peft_init`` (loaded with
  ``PeftModel.from_pretrained``). Each continuation is scored in full, in one forward pass over
  prefix + continuation. The critique mode uses a fixed critique text (``CRITIQUE``) whose own
  verdict line cqa must cut off.
* ``stats``: seeded synthetic (expert, expected, p(expert)) triples for a base and a tuned model,
  scipy's Spearman ρ, the agreement figures, and numpy's 2.5/97.5 percentiles of the tuned − base
  differences over bootstrap resamples that are stored with them (cqa recomputes the intervals
  from the same resamples).

Re-run from the repository root:

    pip install -r tests/reference/requirements.txt
    python tests/reference/make_appreciation_fixtures.py
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.stats  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cqa_prompts import encode_rendered, prompt_messages, reasoning_text  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

CONTINUATIONS = [f"Verdict: {k}/10" for k in range(1, 11)]
# A critique as a model writes one, with its own verdict line: cqa cuts it at that line.
CRITIQUE = "1. [craft] The images are precise and the rhythm holds.\n2. [audience] Patient readers are rewarded.\n\n**Verdict:** 8/10 — a quiet success."
CRITIQUE_CUT = "1. [craft] The images are precise and the rhythm holds.\n2. [audience] Patient readers are rewarded.\n\n"


def continuation_logprobs(model, prefix_ids: list[int], conts: list[list[int]]) -> list[float]:
    out = []
    for cont in conts:
        ids = torch.tensor([prefix_ids + cont])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.float()[0], dim=-1)
        n = len(prefix_ids)
        out.append(float(sum(logp[n - 1 + i, t] for i, t in enumerate(cont))))
    return out


def agreement(expert, expected, p_expert) -> dict:
    expert, expected, p_expert = map(np.asarray, (expert, expected, p_expert))
    rho = scipy.stats.spearmanr(expert, expected).statistic
    return {
        "spearman": None if np.isnan(rho) else float(rho),
        "mae": float(np.mean(np.abs(expected - expert))),
        "within_1": float(np.mean(np.abs(expected - expert) <= 1.0)),
        "log_loss": float(np.mean(-np.log(p_expert))),
    }


def stats_fixture() -> dict:
    rng = np.random.default_rng(20261129)
    n, resamples = 14, 300
    expert = rng.integers(1, 11, size=n).astype(float)
    base_expected = np.clip(expert + rng.normal(0, 2.5, n), 1, 10)
    tuned_expected = np.clip(expert + rng.normal(0, 1.2, n), 1, 10)
    base_p = rng.uniform(0.02, 0.3, n)
    tuned_p = rng.uniform(0.1, 0.6, n)
    idx = rng.integers(0, n, size=(resamples, n))
    figures = {}
    for key in ["spearman", "mae", "within_1", "log_loss"]:
        diffs = []
        for row in idx:
            b = agreement(expert[row], base_expected[row], base_p[row])[key]
            t = agreement(expert[row], tuned_expected[row], tuned_p[row])[key]
            if b is not None and t is not None:
                diffs.append(t - b)
        lo, hi = np.percentile(np.asarray(diffs), [2.5, 97.5])
        figures[key] = {"ci_low": float(lo), "ci_high": float(hi), "resamples": len(diffs)}
    return {
        "expert": expert.tolist(),
        "base": {"expected": base_expected.tolist(), "p_expert": base_p.tolist(), "agreement": agreement(expert, base_expected, base_p)},
        "tuned": {"expected": tuned_expected.tolist(), "p_expert": tuned_p.tolist(), "agreement": agreement(expert, tuned_expected, tuned_p)},
        "resamples": idx.tolist(),
        "differences": figures,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    args = parser.parse_args()
    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(str(args.model.parent), gguf_file=args.model.name)
    base = AutoModelForCausalLM.from_pretrained(str(args.model.parent), gguf_file=args.model.name, dtype=torch.float32).eval()
    records = [json.loads(line) for line in (FIXTURES / "lora_records.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]

    cases = []
    for r in records:
        prompt = tok.apply_chat_template(prompt_messages(r), tokenize=False, add_generation_prompt=True)
        prompt_ids = encode_rendered(tok, prompt)
        for mode, assistant in [("direct", ""), ("reasoning", reasoning_text(r)), ("critique", CRITIQUE_CUT)]:
            # cqa's rule: the assistant text's trailing whitespace moves into the continuations,
            # so the blank line is tokenized with `Verdict`, as in the training text.
            said = assistant.rstrip()
            gap = assistant[len(said):]
            ids = prompt_ids + tok(said, add_special_tokens=False)["input_ids"]
            strings = [gap + c for c in CONTINUATIONS]
            conts = [tok(c, add_special_tokens=False)["input_ids"] for c in strings]
            cases.append({"record": r["id"], "mode": mode, "prefix": prompt + said, "prefix_ids": ids, "continuations": strings,
                          "continuation_ids": conts, "base": continuation_logprobs(base, ids, conts)})
    tuned = PeftModel.from_pretrained(base, str(FIXTURES / "peft_init")).eval()
    for case in cases:
        case["tuned"] = continuation_logprobs(tuned, case["prefix_ids"], case["continuation_ids"])

    fixture = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__, "scipy": scipy.__version__, "numpy": np.__version__},
        "continuations": CONTINUATIONS,
        "critique": CRITIQUE,
        "tuned_adapter": "peft_init",
        "cases": cases,
        "stats": stats_fixture(),
    }
    out = FIXTURES / "appreciation_reference.json"
    out.write_text(json.dumps(fixture, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(cases)} prefix cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
