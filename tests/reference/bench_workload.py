"""The benchmark workload every engine runs (bench_reference.py, bench_llama_cpp.py, and
`cqa bench`, whose defaults match): prefill lengths, the decode prompt and length, repetitions,
and the text the prefill inputs are cut from."""

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
