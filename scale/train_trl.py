#!/usr/bin/env python3
"""Train a cqa LoRA adapter at paper scale with Hugging Face TRL + PEFT (and accelerate for
multi-GPU), on the file that `cqa export-trl` writes.

The run mirrors `cqa train`, so an adapter trained here is interchangeable with one trained in the
browser or the CLI:

* the same examples: each line's system + user turns are the prompt and the assistant turn the
  completion (TRL's conversational prompt-completion format), rendered with the model's own chat
  template, with the loss on the completion tokens only;
* the same LoRA settings: targets, rank, alpha, dropout (PEFT `LoraConfig`);
* the same optimizer and schedule: AdamW (decoupled weight decay), linear warmup over
  ceil(warmup_ratio x steps) steps then cosine decay with cqa's step rule, global-norm clipping,
  gradient accumulation with a token-mean loss over the whole step;
* the adapter is saved in the PEFT layout (`adapter_config.json` + `adapter_model.safetensors`)
  that `cqa --adapter DIR` and the browser's adapter import read.

One GPU or CPU:
    python scale/train_trl.py --model Qwen/Qwen2.5-7B --data train.trl.jsonl --out runs/qwen7b
Several GPUs (data parallel):
    accelerate launch --num_processes 8 scale/train_trl.py --model Qwen/Qwen2.5-7B ...
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def parse_targets(text: str) -> list[str]:
    """cqa's --targets: short or full names, or `all`, in canonical order."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if "all" in items:
        return list(TARGETS)
    full = {t if t.endswith("_proj") else f"{t}_proj" for t in items}
    unknown = full - set(TARGETS)
    if unknown:
        raise SystemExit(f"unknown LoRA target(s) {sorted(unknown)}: choose from q, k, v, o, gate, up, down")
    return [t for t in TARGETS if t in full]


def learning_rate_at(peak: float, step: int, total: int, warmup: int) -> float:
    """cqa's schedule for optimizer step `step` (1-based): linear warmup, then cosine towards 0."""
    if step <= warmup:
        return peak * step / warmup
    progress = (step - warmup - 1) / (total - warmup)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def load_dataset_file(path: Path):
    """`cqa export-trl` lines → TRL prompt-completion rows."""
    from datasets import Dataset

    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        messages = json.loads(line)["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            raise SystemExit(f"{path}:{n}: the last message must be the assistant's (is this a `cqa export-trl` file?)")
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    if not rows:
        raise SystemExit(f"{path}: no conversations")
    return Dataset.from_list(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="HF model id or local directory (safetensors + config.json + tokenizer)")
    p.add_argument("--data", type=Path, required=True, help="the JSONL written by `cqa export-trl`")
    p.add_argument("--out", type=Path, required=True, help="output directory for the PEFT adapter")
    # Defaults are cqa's (`cqa train --help`).
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--alpha", type=float, default=32.0)
    p.add_argument("--dropout", type=float, default=0.05)
    p.add_argument("--targets", default="q,k,v,o,gate,up,down")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=-1, help="stop after this many optimizer steps (overrides --epochs)")
    p.add_argument("--max-len", type=int, default=768)
    p.add_argument("--batch", type=int, default=2, help="examples per forward pass, per device")
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-grad-norm", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--bf16", action="store_true", help="train in bfloat16 (GPUs); the default is float32")
    p.add_argument("--log", type=Path, help="also write the per-step losses here as JSON lines")
    a = p.parse_args(argv)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(a.seed)
    tok = AutoTokenizer.from_pretrained(a.model)
    if tok.chat_template is None:
        raise SystemExit(f"{a.model} has no chat template; cqa's examples are chats (use an -Instruct model or add a template)")
    dtype = torch.bfloat16 if a.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(a.model, dtype=dtype)
    targets = parse_targets(a.targets)
    lora = LoraConfig(r=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout, target_modules=targets, task_type="CAUSAL_LM", bias="none")
    model = get_peft_model(model, lora)

    dataset = load_dataset_file(a.data)
    world = max(1, int(__import__("os").environ.get("WORLD_SIZE", "1")))
    steps_per_epoch = math.ceil(len(dataset) / (a.batch * a.grad_accum * world))
    total = a.max_steps if a.max_steps > 0 else steps_per_epoch * a.epochs
    warmup = math.ceil(a.warmup_ratio * total)
    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=a.weight_decay)
    # LambdaLR's step index s is 0-based; cqa's rule counts optimizer steps from 1.
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: learning_rate_at(a.lr, s + 1, total, warmup) / a.lr)

    config = SFTConfig(
        output_dir=str(a.out / "trainer"),
        max_length=a.max_len,
        per_device_train_batch_size=a.batch,
        gradient_accumulation_steps=a.grad_accum,
        num_train_epochs=a.epochs,
        max_steps=total,
        max_grad_norm=a.max_grad_norm,
        completion_only_loss=True,
        packing=False,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=a.seed,
        bf16=a.bf16,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )

    losses: list[dict] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                losses.append({"kind": "step", "step": state.global_step, "loss": float(logs["loss"]), "learning_rate": float(logs.get("learning_rate", float("nan")))})
                print(json.dumps(losses[-1]), flush=True)

    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tok, optimizers=(optimizer, schedule), callbacks=[Record()])
    trainer.train()
    if trainer.is_world_process_zero():
        a.out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(a.out), safe_serialization=True)
        (a.out / "README.md").unlink(missing_ok=True)
        if a.log:
            a.log.write_text("".join(json.dumps(x) + "\n" for x in losses), encoding="utf-8")
        print(f"saved the adapter to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
