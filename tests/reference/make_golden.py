#!/usr/bin/env python3
"""Golden reference outputs from Hugging Face transformers for the default GGUF model.

Loads ``models/SmolLM2-135M-Instruct.Q4_1.gguf`` with transformers (which dequantizes every
tensor to float32 through gguf-py) and runs it in float32 on the CPU. Writes:

* ``tests/fixtures/golden_logprobs.json``
    ``cases``: per text, the token ids (``tok(text, add_special_tokens=True)``) and
    ``logprobs[i] = ln p(ids[i+1] | ids[0..=i])`` (``len(ids) - 1`` values, from the
    log-softmax of the float32 logits).
    ``context_cases``: a context and a continuation, tokenized separately and scored
    together; ``logprobs[i] = ln p(text_ids[i] | context_ids + text_ids[..i])``.
* ``tests/fixtures/golden_generate.json``: greedy ``model.generate`` (24 new tokens) for a
  raw prompt and for a chat prompt rendered with the model's chat template.
* ``tests/fixtures/tokenizer_cases.json``: ids and decoded text for tricky strings, rendered
  chat conversations with their ids, and the special token ids.
* ``tests/fixtures/smollm2_tokenizer.json``: the ``tokenizers`` serialization of the tokenizer
  transformers builds from the GGUF metadata: a tokenizer.json for the HF loading path tests.
* ``tests/reference/gguf_model_config_transformers.json``: the model config transformers
  builds from the GGUF metadata.

Re-run (from the repository root; needs the model file, no network):

    pip install -r tests/reference/requirements.txt
    python tests/reference/make_golden.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

The output is deterministic for a given set of package versions (see requirements.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
REFERENCE = REPO_ROOT / "tests" / "reference"
DEFAULT_MODEL = REPO_ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"

MIN_TOKENS, MAX_TOKENS = 20, 120

# Texts scored token by token. Each must tokenize to MIN_TOKENS..=MAX_TOKENS tokens.
LOGPROB_TEXTS: list[tuple[str, str]] = [
    (
        "english_literary",
        "It was late in the afternoon when the rain finally stopped, and the town, washed and "
        "shining, seemed to hold its breath. Mary walked slowly along the river, thinking of the "
        "letter she had not yet dared to open.",
    ),
    (
        "python_code",
        "def fibonacci(n: int) -> list[int]:\n"
        "    \"\"\"Return the first n Fibonacci numbers.\"\"\"\n"
        "    seq = [0, 1]\n"
        "    while len(seq) < n:\n"
        "        seq.append(seq[-1] + seq[-2])\n"
        "    return seq[:n]\n",
    ),
    (
        "numbers_dates",
        "On 2024-03-15 at 09:45, the invoice #48213 totalled $1,234,567.89 (VAT 20%), "
        "payable by 31/12/2025; pi is roughly 3.14159 and e is 2.71828.",
    ),
    (
        "accented_european",
        "Le garçon a mangé une crème brûlée à l'hôtel près de la forêt. "
        "Die Straße in München ist schön, und Øystein säger att det är höst i Göteborg.",
    ),
    (
        "cjk",
        "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다。",
    ),
    (
        "emoji",
        "Great job! 🎉🎉 Let's celebrate 🥳 with pizza 🍕 and cake 🎂. "
        "Family: 👨‍👩‍👧‍👦, flags: 🇫🇷 🇯🇵, thumbs: 👍🏽 ❤️",
    ),
    (
        "whitespace_runs",
        "Name:\t\tValue\n\n\n    indented     with    spaces\t\ttabs\r\n"
        "  trailing   \n\n\t\t\tdeep\n        end",
    ),
]

# (context, continuation) pairs scored as one sequence; only the continuation is reported.
CONTEXT_CASES: list[tuple[str, str]] = [
    (
        "Write a melancholy haiku about autumn rain.\n",
        "Grey rain on dead leaves\nthe garden path goes quiet\nsomeone is not home",
    ),
    (
        # A chat-formatted context; the continuation ends with the end-of-turn token.
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
        "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n",
        "The capital of France is Paris.<|im_end|>",
    ),
]

GENERATE_MAX_NEW_TOKENS = 24
GENERATE_PROMPTS: list[tuple[str, bool]] = [
    ("The old lighthouse keeper", False),
    ("Write one sentence about the sea.", True),
]

# Strings for tokenizer round-trip tests: (name, text).
TOKENIZER_TEXTS: list[tuple[str, str]] = [
    ("empty", ""),
    ("single_space", " "),
    ("many_spaces", "          "),
    ("spaces_between_words", "a  b   c    d"),
    ("tabs", "\t\tx\t"),
    ("three_newlines", "\n\n\n"),
    ("crlf", "line one\r\nline two\r\n"),
    ("leading_trailing_spaces", "   hello world   "),
    ("leading_newline", "\nHello"),
    ("contraction_dont", "don't"),
    ("contraction_upper", "I'LL BE THERE, WE'RE SURE"),
    ("contraction_yall", "y'all can't won't shouldn't've"),
    ("digits", "1234567890"),
    ("decimal", "3.14159"),
    ("thousands", "1,000,000"),
    ("mixed_alnum", "abc123def 4x4 v2.0.1"),
    ("accents", "naïve café résumé"),
    ("german_sz", "Straße groß Fußgängerübergänge"),
    ("cyrillic", "Привет, мир! Как дела?"),
    ("greek", "Καλημέρα κόσμε, ΑΒΓΔ αβγδ"),
    ("arabic", "مرحبا بالعالم"),
    ("hebrew", "שלום עולם"),
    ("hindi", "नमस्ते दुनिया"),
    ("chinese", "你好，世界！今天天气很好。"),
    ("japanese", "こんにちは世界、カタカナとひらがな。"),
    ("korean", "안녕하세요 세계"),
    ("emoji_simple", "😀 👍 🚀"),
    ("emoji_zwj", "👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈"),
    ("emoji_flags", "🇺🇸🇫🇷🇯🇵"),
    ("emoji_skin_tone", "👋🏿 👋🏻"),
    ("combining_chars", "e\u0301 a\u0300 n\u0303 Z\u0351\u0300\u0350"),
    ("zero_width_space", "zero\u200bwidth\u200cjoiner\u200dx\ufeff"),
    ("code_indented", "fn main() {\n    let x = vec![1, 2, 3];\n\tif x.len() > 2 { println!(\"{x:?}\"); }\n}\n"),
    ("url", "https://example.com/path/to/page?query=value&x=1#frag"),
    ("email", "first.last+tag@example.co.uk"),
    ("markdown", "# Title\n\n**bold** _it_ `code`\n\n- item 1\n- item 2\n\n> quote\n"),
    ("special_tokens_chat", "<|im_start|>user\nhi<|im_end|>"),
    ("special_token_eot", "<|endoftext|>"),
    ("special_tokens_adjacent", "a<|im_end|>b<|endoftext|><|endoftext|> c"),
    ("special_token_like", "<|im_start |> <|not_a_token|> <im_end>"),
    ("other_control_tokens", "<repo_name>cqa<file_sep>main.rs<jupyter_code>print(1)"),
    ("long_word", "Pneumonoultramicroscopicsilicovolcanoconiosis" * 3),
    ("repeated_punct", "!!!???... ---*** ,,,;;;"),
    ("nbsp", "100\u00a0km and\u202fnarrow\u2009thin"),
    ("control_chars", "a\x00b\x01c\x07d\x1be\x7ff"),
    ("mixed_scripts", "The word 'Straße' (street) is 街道 in Chinese and улица in Russian."),
    ("html", "<div class=\"x\">&amp; &lt;tag&gt;</div>"),
    ("json", "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}"),
    ("math", "∑ᵢ xᵢ² ≤ ∞, ∀x ∈ ℝ: √x ≥ 0 → π ≈ 3.14"),
    ("leading_space_word", " Hello"),
    ("trailing_newline", "Hello\n"),
    ("apostrophe_variants", "it’s ‘quoted’ “double” «guillemets»"),
    ("surrogate_range_chars", "\U0001d54f\U0001f9ec\U00020000"),
]

CHAT_CONVERSATIONS: list[list[dict[str, str]]] = [
    # Single user message: the template inserts its default system prompt.
    [{"role": "user", "content": "Write one sentence about the sea."}],
    [
        {"role": "system", "content": "You are a terse assistant. Answer in one word."},
        {"role": "user", "content": "What colour is the sky on a clear day?"},
    ],
    [
        {"role": "user", "content": "Hi! Can you help me with Rust?"},
        {"role": "assistant", "content": "Of course. What do you need?"},
        {"role": "user", "content": "How do I reverse a Vec<i32> in place?"},
    ],
]


def f32(x: float) -> float:
    """A Python float holding exactly the float32 value of ``x`` (round-trips through JSON)."""
    return float(np.float32(x))


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {path.relative_to(REPO_ROOT)} ({path.stat().st_size} bytes)")


@torch.no_grad()
def token_logprobs(model, ids: list[int]) -> torch.Tensor:
    """[len(ids), vocab] float32 log-probabilities of the next token at every position."""
    logits = model(input_ids=torch.tensor([ids], dtype=torch.long)).logits[0].float()
    return torch.log_softmax(logits, dim=-1)


def make_logprob_cases(model, tok) -> tuple[list[dict], list[dict]]:
    cases = []
    for name, text in LOGPROB_TEXTS:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        assert MIN_TOKENS <= len(ids) <= MAX_TOKENS, f"{name}: {len(ids)} tokens"
        lp = token_logprobs(model, ids)
        targets = torch.tensor(ids[1:])
        picked = lp[:-1].gather(1, targets[:, None])[:, 0]
        cases.append({"name": name, "text": text, "ids": ids, "logprobs": [f32(x) for x in picked.tolist()]})
        print(f"  logprobs {name:18s} {len(ids):4d} tokens, mean logprob {picked.mean().item():8.4f}")

    context_cases = []
    for context, text in CONTEXT_CASES:
        context_ids = tok(context)["input_ids"]
        text_ids = tok(text, add_special_tokens=False)["input_ids"]
        lp = token_logprobs(model, context_ids + text_ids)
        start = len(context_ids) - 1  # row predicting text_ids[0]
        rows = lp[start : start + len(text_ids)]
        picked = rows.gather(1, torch.tensor(text_ids)[:, None])[:, 0]
        context_cases.append(
            {
                "context": context,
                "text": text,
                "context_ids": context_ids,
                "text_ids": text_ids,
                "logprobs": [f32(x) for x in picked.tolist()],
            }
        )
        print(f"  context case: {len(context_ids)} + {len(text_ids)} tokens, sum logprob {picked.sum().item():.4f}")
    return cases, context_cases


@torch.no_grad()
def make_generate_cases(model, tok) -> list[dict]:
    out = []
    for prompt, chat in GENERATE_PROMPTS:
        if chat:
            rendered = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            prompt_ids = tok(rendered, add_special_tokens=False)["input_ids"]
        else:
            rendered = prompt
            prompt_ids = tok(rendered, add_special_tokens=True)["input_ids"]
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        generated = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=False,
            repetition_penalty=1.0,
            max_new_tokens=GENERATE_MAX_NEW_TOKENS,
            pad_token_id=tok.pad_token_id,
        )
        new_ids = generated[0, len(prompt_ids) :].tolist()
        new_text = tok.decode(new_ids, skip_special_tokens=False)
        out.append(
            {
                "prompt": prompt,
                "chat": chat,
                "rendered": rendered,
                "prompt_ids": prompt_ids,
                "new_ids": new_ids,
                "new_text": new_text,
            }
        )
        print(f"  generate chat={chat!s:5s} {len(new_ids)} new tokens: {new_text!r}")
    return out


def make_tokenizer_cases(tok) -> dict:
    names = [n for n, _ in TOKENIZER_TEXTS]
    assert len(names) == len(set(names)), "duplicate tokenizer case names"
    cases = []
    for name, text in TOKENIZER_TEXTS:
        ids = tok(text, add_special_tokens=True)["input_ids"]
        decoded = tok.decode(ids, skip_special_tokens=False)
        cases.append({"name": name, "text": text, "ids": ids, "decoded": decoded})
    lossy = [c["name"] for c in cases if c["decoded"] != c["text"]]
    print(f"  tokenizer: {len(cases)} strings, decode != text for: {lossy or 'none'}")

    chats = []
    for messages in CHAT_CONVERSATIONS:
        rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tok(rendered, add_special_tokens=False)["input_ids"]
        chats.append({"messages": messages, "rendered": rendered, "ids": ids})
    print(f"  tokenizer: {len(chats)} chat conversations")

    special = {
        "bos_id": tok.bos_token_id,
        "bos_token": tok.bos_token,
        "eos_id": tok.eos_token_id,
        "eos_token": tok.eos_token,
        "pad_id": tok.pad_token_id,
        "unk_id": tok.unk_token_id,
        "add_bos": bool(tok("x", add_special_tokens=True)["input_ids"] != tok("x", add_special_tokens=False)["input_ids"]),
        "im_start_id": tok.convert_tokens_to_ids("<|im_start|>"),
        "im_end_id": tok.convert_tokens_to_ids("<|im_end|>"),
        "endoftext_id": tok.convert_tokens_to_ids("<|endoftext|>"),
        "special_added_tokens": {str(i): t.content for i, t in sorted(tok.added_tokens_decoder.items()) if t.special},
    }
    return {"cases": cases, "chat": chats, "special": special}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="GGUF file")
    args = parser.parse_args()
    model_path = args.model.resolve()

    torch.manual_seed(0)
    torch.set_num_threads(2)

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(model_path.parent), gguf_file=model_path.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(model_path.parent), gguf_file=model_path.name, dtype=torch.float32
    )
    model.eval()
    print(f"loaded {model_path.name} in {time.perf_counter() - t0:.1f}s")
    generator = f"transformers {transformers.__version__}, torch {torch.__version__}, float32 CPU"

    bos_added = tok("x", add_special_tokens=True)["input_ids"] != tok("x", add_special_tokens=False)["input_ids"]
    print(f"tokenizer {type(tok).__name__}: add_special_tokens=True adds BOS: {bos_added}")

    # Inspection artefacts: what transformers built from the GGUF metadata.
    # The tokenizer is written exactly as `tokenizers` serializes it (the tokenizer.json format).
    tokenizer_json = FIXTURES / "smollm2_tokenizer.json"
    tokenizer_json.write_text(tok.backend_tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")
    print(f"wrote {tokenizer_json.relative_to(REPO_ROOT)} ({tokenizer_json.stat().st_size} bytes)")
    config = model.config.to_dict()
    config.pop("_name_or_path", None)  # an absolute, machine-specific path
    write_json(REFERENCE / "gguf_model_config_transformers.json", config)
    for key in ("rope_theta", "rope_parameters", "rms_norm_eps", "tie_word_embeddings", "head_dim",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "vocab_size",
                "bos_token_id", "eos_token_id", "pad_token_id"):
        if key in config:
            print(f"  config.{key} = {config[key]!r}")

    cases, context_cases = make_logprob_cases(model, tok)
    write_json(
        FIXTURES / "golden_logprobs.json",
        {
            "model": model_path.name,
            "generator": generator,
            "bos_added": bool(bos_added),
            "cases": cases,
            "context_cases": context_cases,
        },
    )

    write_json(
        FIXTURES / "golden_generate.json",
        {
            "model": model_path.name,
            "generator": generator,
            "max_new_tokens": GENERATE_MAX_NEW_TOKENS,
            "cases": make_generate_cases(model, tok),
        },
    )

    write_json(FIXTURES / "tokenizer_cases.json", {"model": model_path.name, "generator": generator,
                                                   **make_tokenizer_cases(tok)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
