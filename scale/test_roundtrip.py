#!/usr/bin/env python3
"""The TRL round trip, on a tiny random model on the CPU (run by `./x test`):

1. `cqa export-trl` writes the training file;
2. `scale/train_trl.py` trains 2 LoRA steps on it with TRL's SFTTrainer;
3. `cqa train` trains 2 steps on the same records with the same settings: the first step's loss
   (taken before any update, with B = 0) must agree, which checks the prompt masking and the
   token-mean loss on both sides;
4. the adapter TRL saved loads into `cqa --adapter` and scores like PEFT.

    python scale/test_roundtrip.py --cqa path/to/cqa [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scale"))

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM  # noqa: E402

import train_trl  # noqa: E402

SETTINGS = ["--rank", "4", "--alpha", "8", "--dropout", "0", "--batch", "2", "--grad-accum", "1", "--max-len", "320", "--lr", "1e-2", "--seed", "42"]


def make_tiny_model(out: Path) -> None:
    """A 2-layer random Llama carrying the default model's tokenizer and chat template."""
    gguf = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, max_position_embeddings=1024, rms_norm_eps=1e-5, rope_theta=10000.0,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))


def score_peft(model_dir: Path, adapter: Path, context: str, text: str) -> list[float]:
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    base = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter)).eval()
    c = tok(context, add_special_tokens=True)["input_ids"]
    t = tok(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([c + t])).logits.float()[0], dim=-1)
    return [float(logp[len(c) - 1 + i, tid]) for i, tid in enumerate(t)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cqa", type=Path, required=True)
    p.add_argument("--json", type=Path, help="write the measured figures here")
    a = p.parse_args()
    torch.set_num_threads(2)
    passed, failed, results = 0, 0, {}

    def check(name: str, ok: bool, detail: str) -> None:
        nonlocal passed, failed
        print(f"{'ok' if ok else 'FAILED'}: {name}: {detail}", flush=True)
        passed, failed = passed + ok, failed + (not ok)

    with tempfile.TemporaryDirectory(prefix="cqa-trl-") as tmp:
        tmp = Path(tmp)
        model_dir, records = tmp / "tiny", tmp / "records.jsonl"
        make_tiny_model(model_dir)
        lines = (REPO / "tests/fixtures/lora_records.jsonl").read_text(encoding="utf-8").splitlines()[:2]
        records.write_text("\n".join(lines) + "\n", encoding="utf-8")
        trl_file = tmp / "train.trl.jsonl"
        subprocess.run([str(a.cqa), "export-trl", "--data", str(records), "--out", str(trl_file)], check=True)

        trl_out, trl_log = tmp / "trl-adapter", tmp / "trl-log.jsonl"
        train_trl.main(["--model", str(model_dir), "--data", str(trl_file), "--out", str(trl_out), "--max-steps", "2", "--epochs", "2", "--log", str(trl_log), *SETTINGS])
        trl_losses = [json.loads(x)["loss"] for x in trl_log.read_text().splitlines()]

        cqa_out = tmp / "cqa-adapter"
        run = subprocess.run([str(a.cqa), "--model", str(model_dir), "train", "--data", str(records), "--out", str(cqa_out), "--json",
                              "--held-out", "0", "--epochs", "2", *SETTINGS],
                             check=True, capture_output=True, text=True)
        cqa_losses = [e["loss"] for e in map(json.loads, run.stdout.splitlines()) if e["kind"] == "step"]
        results["losses"] = {"trl": trl_losses, "cqa": cqa_losses}
        check("two steps on both sides", len(trl_losses) == 2 and len(cqa_losses) == 2, f"TRL {trl_losses}, cqa {cqa_losses}")
        if trl_losses and cqa_losses:
            rel = abs(trl_losses[0] - cqa_losses[0]) / cqa_losses[0]
            results["step1_relative_difference"] = rel
            check("step-1 loss, TRL vs cqa", rel < 1e-3, f"{trl_losses[0]:.6f} vs {cqa_losses[0]:.6f} (relative {rel:.1e})")

        context = "<|im_start|>user\nJudge this line.<|im_end|>\n<|im_start|>assistant\n"
        text = "Reasoning:\n1. [craft] The rhythm holds."
        peft_lp = score_peft(model_dir, trl_out, context, text)

        def cqa_score(*adapter: str) -> list[float]:
            out = subprocess.run([str(a.cqa), "--model", str(model_dir), *adapter, "score", "--context", context, "--text", text, "--json"],
                                 check=True, capture_output=True, text=True).stdout
            return json.loads(out)["logprobs"]

        tuned = cqa_score("--adapter", str(trl_out))
        base = cqa_score()
        diff = max(abs(x - y) for x, y in zip(tuned, peft_lp)) if len(tuned) == len(peft_lp) else float("inf")
        moved = max(abs(x - y) for x, y in zip(base, peft_lp)) if len(base) == len(peft_lp) else 0.0
        results["adapter_max_abs_logprob_difference"] = diff
        results["adapter_effect_max_abs_logprob"] = moved
        check("TRL adapter in cqa scores like PEFT", diff <= 2e-3, f"max |Δ logprob| {diff:.2e} over {len(tuned)} tokens")
        check("the adapter changes the scores (the check can fail)", moved > 2e-3, f"max |base − PEFT| {moved:.2e}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
