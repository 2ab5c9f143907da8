"""cqa's appreciation prompts, written out in Python for the reference scripts. Must equal
src/prompt.rs: the system prompt, the user turn, the expert's response, and the one rule for
encoding a rendered chat template."""

from __future__ import annotations

SYSTEM_PROMPT = (
    "You are an expert reader of creative writing. Judge the work against its brief, its intended "
    "audience and the logic of its world. Reason step by step, tagging each step [craft], [audience] "
    "or [reality], then give a verdict from 1 to 10."
)


def prompt_messages(r: dict) -> list[dict]:
    user = f"Brief: {r['brief']}\nAudience: {r['audience']}\nGenre: {r['genre']}\n\nWork:\n{r['work']}"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def reasoning_text(r: dict) -> str:
    """The expert's steps as the assistant turn writes them, up to the verdict line."""
    lines = ["Reasoning:"] + [f"{i + 1}. [{s['dimension']}] {s['text'].strip()}" for i, s in enumerate(r["reasoning"])]
    return "\n".join(lines) + "\n\n"


def response(r: dict) -> str:
    """The whole assistant turn: the steps, then `Verdict: N/10. summary`."""
    return reasoning_text(r) + f"Verdict: {r['verdict']['score']}/10. {r['verdict']['summary'].strip()}"


def encode_rendered(tok, text: str) -> list[int]:
    """No special tokens added, then BOS once if the tokenizer adds one and the template did not
    write it (SmolLM2 adds none)."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    with_special = tok("a", add_special_tokens=True)["input_ids"]
    bos = tok.bos_token_id
    if bos is not None and with_special[:1] == [bos] and ids[:1] != [bos]:
        ids = [bos] + ids
    return ids
