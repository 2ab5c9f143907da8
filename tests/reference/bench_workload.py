"""The benchmark workload every engine runs (bench_reference.py, bench_llama_cpp.py, and
`cqa bench`, whose defaults match): prefill lengths, the decode prompt and length, repetitions,
and the text the prefill inputs are cut from; and the timing and reporting the two scripts
share."""

import json
import statistics
import time
from pathlib import Path
from typing import Callable

PREFILL_LENGTHS = (256, 512)
DECODE_TOKENS = 64
DECODE_PROMPT = "The old lighthouse keeper"
WARMUP_RUNS = 1
TIMED_RUNS = 3

# Repeated to build the prefill inputs; cut to an exact token count.
FILLER = (
    "The river ran slowly past the mill, carrying leaves and the reflections of clouds. "
    "In the village, people spoke of the harvest, of the weather, and of the new bridge that "
    "the council had promised for years. Children ran along the bank, shouting, while an old "
    "man mended his nets and watched the light change on the water. "
)


def timed(fn: Callable[[], object], sync: Callable[[], None] = lambda: None) -> list[float]:
    """Wall-clock seconds of TIMED_RUNS calls to fn, after WARMUP_RUNS untimed ones; `sync`
    waits for queued device work (CUDA) before each clock read."""
    for _ in range(WARMUP_RUNS):
        fn()
    times = []
    for _ in range(TIMED_RUNS):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def rates(tokens: int, times: list[float]) -> dict:
    """The median and best tokens/s of runs that each handled `tokens` tokens."""
    median = statistics.median(times)
    return {"median_s": median, "tokens_per_s": tokens / median, "best_tokens_per_s": tokens / min(times), "times_s": times}


def emit(result: dict, output: Path | None) -> None:
    """Prints the result as JSON and, with `output`, writes it there too."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        output.write_text(text + "\n", encoding="utf-8")
