#!/usr/bin/env python3
"""PEFT + PyTorch reference for cqa-studio's LoRA trainer, on the default GGUF model (float32, CPU).

Writes, under ``tests/fixtures/``:

* ``lora_records.jsonl``: the first 3 bundled sample annotations, the training data of both sides.
* ``peft_init/``: a PEFT adapter (r=2, alpha=4, all 7 projections) with fixed, seeded, non-zero
  A and B, saved by PEFT's ``save_pretrained``. cqa starts from it.
* ``lora_reference.json``:
    ``examples``: per record, the token ids of the rendered chat and the index of the first
    assistant token (cqa must build the same ids).
    ``config``: the training settings both sides use.
    ``steps``: per AdamW step, the token-mean loss on the assistant tokens and the gradient norm.
    ``score``: a context/text pair and its per-token log-probs under the PEFT initial adapter
    (``init_logprobs``) and under ``cqa_adapter/`` loaded into PEFT (``cqa_adapter_logprobs``).
* ``cqa_adapter/``: an adapter written by ``cqa train`` (2 steps, r=2, q,v), reloaded here with
  ``PeftModel.from_pretrained``: this is the round trip cqa → PEFT.

The training loop is written out by hand so that every detail is visible and matches cqa:
batches of 2 right-padded sequences, 2 accumulated micro-batches per step, loss = sum of token
NLLs / assistant tokens in the step, ``clip_grad_norm_(1.0)``, ``torch.optim.AdamW``
(weight decay 0.01) with the learning rate set per step by cqa's warmup + cosine rule.

Re-run (from the repository root; needs the model file and a release build of ``cqa``):

    pip install -r tests/reference/requirements.txt
    ./x build-cli        # or: cargo build --release --bin cqa
    python tests/reference/make_lora_fixtures.py [--cqa path/to/cqa]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cqa_prompts import encode_rendered, prompt_messages, response  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

CONFIG = {
    "rank": 2,
    "alpha": 4.0,
    "learning_rate": 1e-3,
    "epochs": 5,
    "max_len": 384,
    "batch_size": 2,
    "grad_accum": 2,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "max_grad_norm": 1.0,
    "seed": 7,
}


def build_example(tok, r: dict, max_len: int) -> dict:
    prompt = tok.apply_chat_template(prompt_messages(r), tokenize=False, add_generation_prompt=True)
    full = tok.apply_chat_template(
        prompt_messages(r) + [{"role": "assistant", "content": response(r)}], tokenize=False
    )
    assert full.startswith(prompt), "template renders the prompt differently in the full chat"
    ids = encode_rendered(tok, prompt)
    loss_from = len(ids)
    ids += tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
    return {"id": r["id"], "ids": ids[:max_len], "loss_from": loss_from, "full_length": len(ids)}


def learning_rate_at(peak: float, step: int, total: int, warmup: int) -> float:
    """cqa's schedule: linear warmup over `warmup` steps, then cosine towards 0."""
    if step <= warmup:
        return peak * step / warmup
    progress = (step - warmup - 1) / (total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def loss_sum(model, batch: list[dict], pad_id: int) -> torch.Tensor:
    """Sum over assistant tokens of -ln p, on right-padded sequences."""
    seq = max(len(e["ids"]) for e in batch)
    ids = torch.full((len(batch), seq), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), seq), dtype=torch.long)
    for b, e in enumerate(batch):
        ids[b, : len(e["ids"])] = torch.tensor(e["ids"])
        mask[b, : len(e["ids"])] = 1
    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    total = torch.zeros(())
    for b, e in enumerate(batch):
        positions = torch.arange(e["loss_from"] - 1, len(e["ids"]) - 1)
        targets = torch.tensor(e["ids"][e["loss_from"]:])
        total = total - logp[b, positions, targets].sum()
    return total


def score_logprobs(model, tok, context: str, text: str) -> list[float]:
    context_ids = tok(context, add_special_tokens=True)["input_ids"]
    text_ids = tok(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([context_ids + text_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits.float()[0], dim=-1)
    n = len(context_ids)
    return [float(logp[n - 1 + i, t]) for i, t in enumerate(text_ids)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    default_cqa = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/cqa-studio/target")) / "release/cqa"
    parser.add_argument("--cqa", type=Path, default=default_cqa, help="release build of the cqa binary")
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(CONFIG["seed"])

    tok = AutoTokenizer.from_pretrained(str(args.model.parent), gguf_file=args.model.name)

    def load_base():
        m = AutoModelForCausalLM.from_pretrained(str(args.model.parent), gguf_file=args.model.name, dtype=torch.float32)
        return m.eval()

    samples = [json.loads(line) for line in (REPO_ROOT / "data/samples/annotations.jsonl").read_text().splitlines() if line.strip()]
    records = samples[:3]
    (FIXTURES / "lora_records.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    examples = [build_example(tok, r, CONFIG["max_len"]) for r in records]
    assert any(e["full_length"] > CONFIG["max_len"] for e in examples), "the fixture should exercise truncation"
    pad_id = tok.convert_tokens_to_ids("<|im_end|>")

    # PEFT model with fixed, non-zero initial factors (B = 0 would hide A's gradient at step 1).
    model = get_peft_model(
        load_base(),
        LoraConfig(r=CONFIG["rank"], lora_alpha=CONFIG["alpha"], lora_dropout=0.0, target_modules=TARGETS, task_type="CAUSAL_LM"),
    )
    gen = torch.Generator().manual_seed(CONFIG["seed"])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_A" in name:
                bound = 1.0 / math.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
            elif "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    init_dir = FIXTURES / "peft_init"
    shutil.rmtree(init_dir, ignore_errors=True)
    model.save_pretrained(str(init_dir))
    (init_dir / "README.md").unlink(missing_ok=True)  # PEFT's model-card stub

    score_record = records[0]
    context = tok.apply_chat_template(prompt_messages(score_record), tokenize=False, add_generation_prompt=True)
    text = response(score_record)
    init_logprobs = score_logprobs(model, tok, context, text)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=CONFIG["learning_rate"], betas=(0.9, 0.999), eps=1e-8, weight_decay=CONFIG["weight_decay"])
    steps_per_epoch = math.ceil(len(examples) / (CONFIG["batch_size"] * CONFIG["grad_accum"]))
    total = steps_per_epoch * CONFIG["epochs"]
    warmup = math.ceil(CONFIG["warmup_ratio"] * total)
    n_targets = sum(len(e["ids"]) - e["loss_from"] for e in examples)
    steps = []
    model.train()
    for step in range(1, total + 1):
        lr = learning_rate_at(CONFIG["learning_rate"], step, total, warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad()
        loss_total = 0.0
        for start in range(0, len(examples), CONFIG["batch_size"]):
            loss = loss_sum(model, examples[start:start + CONFIG["batch_size"]], pad_id) / n_targets
            loss.backward()
            loss_total += loss.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, CONFIG["max_grad_norm"])
        optimizer.step()
        steps.append({"step": step, "loss": loss_total, "grad_norm": float(grad_norm), "learning_rate": lr})
        print(f"step {step}: loss {loss_total:.6f} grad_norm {float(grad_norm):.4f} lr {lr:.2e}")

    # Round trip: an adapter written by `cqa train`, loaded by PEFT.
    cqa_dir = FIXTURES / "cqa_adapter"
    shutil.rmtree(cqa_dir, ignore_errors=True)
    cmd = [
        str(args.cqa), "--model", str(args.model), "train", "--data", str(FIXTURES / "lora_records.jsonl"),
        "--out", str(cqa_dir), "--rank", "2", "--alpha", "8", "--targets", "q,v", "--lr", "5e-3",
        "--epochs", "2", "--batch", "3", "--grad-accum", "1", "--max-len", "384", "--held-out", "0", "--seed", "3",
    ]
    print("running", " ".join(cmd))
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    for extra in ("checkpoint.safetensors", "training_log.jsonl", "train_config.json"):
        (cqa_dir / extra).unlink()  # keep only the PEFT adapter in the fixture
    tuned = PeftModel.from_pretrained(load_base(), str(cqa_dir)).eval()
    written = load_file(str(cqa_dir / "adapter_model.safetensors"))
    loaded = {n: p for n, p in tuned.named_parameters() if "lora_" in n}
    assert len(written) == len(loaded), f"PEFT loaded {len(loaded)} LoRA tensors, the file has {len(written)}"
    for key, value in written.items():
        live = key.replace(".weight", ".default.weight")
        assert torch.equal(loaded[live].detach(), value), f"{key} did not load as written"
    cqa_logprobs = score_logprobs(tuned, tok, context, text)
    base_logprobs = score_logprobs(load_base(), tok, context, text)
    moved = max(abs(a - b) for a, b in zip(cqa_logprobs, base_logprobs))
    print(f"cqa adapter in PEFT: max |Δ logprob| vs base = {moved:.4f}")
    assert moved > 1e-2, "the cqa adapter should change the model's log-probs"

    out = {
        "generator": f"peft {peft.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, float32 CPU",
        "config": {**CONFIG, "targets": TARGETS, "dropout": 0.0, "total_steps": total, "warmup_steps": warmup},
        "pad_id": pad_id,
        "examples": [{k: e[k] for k in ("id", "ids", "loss_from")} for e in examples],
        "steps": steps,
        "score": {
            "context": context,
            "text": text,
            "init_logprobs": init_logprobs,
            "cqa_adapter_logprobs": cqa_logprobs,
            "base_logprobs": base_logprobs,
        },
    }
    path = FIXTURES / "lora_reference.json"
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
