#!/usr/bin/env python3
"""Seeds for the gguf_parse fuzz target that reach every block decoder of the format registry:
small GGUF files of four tensors each (the target decodes the first four), one tensor a type,
with random payloads and finite scales (the same block makers as the dequantization fixtures).

    python fuzz/make_format_seeds.py   # needs gguf and numpy (tests/reference/requirements.txt)
"""

import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "reference"))
from make_dequant_fixtures import QUANT_BLOCKS  # noqa: E402

GROUPS = [
    [T.Q5_0, T.Q5_1, T.Q2_K, T.Q3_K],
    [T.IQ4_NL, T.IQ4_XS, T.TQ1_0, T.TQ2_0],
    [T.MXFP4, T.Q4_K, T.Q5_K, T.Q6_K],
    [T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ3_XXS],
    [T.IQ3_S, T.IQ1_S, T.IQ1_M],
]


def main() -> int:
    rng = np.random.default_rng(5)
    makers = {qtype: make for qtype, make, _ in QUANT_BLOCKS}
    for i, group in enumerate(GROUPS):
        path = ROOT / "fuzz" / "seeds" / "gguf_parse" / f"formats-{i}.gguf"
        writer = gguf.GGUFWriter(str(path), "llama")
        for qtype in group:
            block_elems, _ = gguf.GGML_QUANT_SIZES[qtype]
            rows = 2
            raw = b"".join(makers[qtype](rng) for _ in range(rows))
            data = np.frombuffer(raw, dtype=np.uint8).reshape(rows, -1)
            writer.add_tensor(f"t.{qtype.name.lower()}", data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size} bytes): {', '.join(q.name for q in group)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
