#!/usr/bin/env python3
"""Where the bytes of a wasm module go, crate by crate.

Reads the code section (each function body's size) and the `name` custom section (each
function's demangled Rust path, as the linker writes it), and sums the bodies per crate: the
first path segment, or for `<T as Trait>::f` the crate of `T`. Data segments and other sections
are listed as their own rows. Needs a module that still has its name section, i.e. before
`wasm-opt --strip-debug`; the optimised module's size is then reported per crate in the same
proportion (an estimate, said so in the output).

    python3 scripts/wasm_size.py pkg/cqa_studio_bg.wasm [--top 25] [--markdown]
"""
import argparse
import re
import sys
from collections import defaultdict

SECTION_NAMES = {0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory",
                 6: "global", 7: "export", 8: "start", 9: "element", 10: "code", 11: "data",
                 12: "datacount", 13: "tag"}


def leb(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def name_at(buf, pos):
    n, pos = leb(buf, pos)
    return buf[pos:pos + n].decode("utf-8", "replace"), pos + n


def sections(buf):
    if buf[:4] != b"\0asm":
        sys.exit("not a wasm module")
    pos = 8
    while pos < len(buf):
        sid = buf[pos]
        size, body = leb(buf, pos + 1)
        yield sid, body, size
        pos = body + size


def imported_functions(buf, pos):
    count, pos = leb(buf, pos)
    funcs = 0
    for _ in range(count):
        _, pos = name_at(buf, pos)
        _, pos = name_at(buf, pos)
        kind = buf[pos]
        pos += 1
        if kind == 0:  # function: type index
            _, pos = leb(buf, pos)
            funcs += 1
        elif kind == 1:  # table: reftype, limits
            pos += 1
            flags, pos = leb(buf, pos)
            _, pos = leb(buf, pos)
            if flags & 1:
                _, pos = leb(buf, pos)
        elif kind == 2:  # memory: limits
            flags, pos = leb(buf, pos)
            _, pos = leb(buf, pos)
            if flags & 1:
                _, pos = leb(buf, pos)
        elif kind == 3:  # global: valtype, mutability
            pos += 2
        else:  # tag
            pos += 1
            _, pos = leb(buf, pos)
    return funcs


def function_names(buf, pos, end):
    names = {}
    while pos < end:
        sub = buf[pos]
        size, body = leb(buf, pos + 1)
        if sub == 1:
            count, p = leb(buf, body)
            for _ in range(count):
                idx, p = leb(buf, p)
                names[idx], p = name_at(buf, p)
        pos = body + size
    return names


def crate_of(name):
    name = name.lstrip("<&*").replace("dyn ", "").replace("mut ", "").replace("const ", "")
    name = name.lstrip("<&*[(")
    m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)", name)
    if not m:
        return "(other)"
    head = m.group(1)
    if "::" not in name[:len(head) + 2]:
        # A bare symbol (a C function, a wasm-bindgen shim, a primitive type's impl).
        return "(no crate: " + ("wasm-bindgen shims" if head.startswith("__wbg") else "other") + ")"
    return head


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wasm")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--scale-to", type=int, help="size of the optimised module, to estimate its share per crate")
    args = ap.parse_args()
    buf = open(args.wasm, "rb").read()

    n_imported = 0
    bodies = []
    names = {}
    rows = defaultdict(int)
    for sid, body, size in sections(buf):
        if sid == 2:
            n_imported = imported_functions(buf, body)
        elif sid == 10:
            count, p = leb(buf, body)
            for _ in range(count):
                n, q = leb(buf, p)
                bodies.append(q + n - p)
                p = q + n
        elif sid == 0:
            cname, p = name_at(buf, body)
            if cname == "name":
                names = function_names(buf, p, body + size)
            rows[f"[custom section: {cname}]"] += size
        elif sid != 10:
            rows[f"[{SECTION_NAMES.get(sid, sid)} section]"] += size
    if not names:
        sys.exit("no name section: run this on the module before it is stripped")

    per_crate = defaultdict(int)
    functions = defaultdict(int)
    for i, size in enumerate(bodies):
        crate = crate_of(names.get(n_imported + i, ""))
        per_crate[crate] += size
        functions[crate] += 1
    code_total = sum(bodies)
    total = len(buf)
    ordered = sorted(per_crate.items(), key=lambda kv: -kv[1])
    shown = ordered[:args.top]
    rest = ordered[args.top:]
    scale = args.scale_to / (total - rows.get("[custom section: name]", 0)) if args.scale_to else None

    if args.markdown:
        head = "| crate | functions | code bytes | share of code |"
        if scale:
            head += " est. after wasm-opt |"
        print(head)
        print("|" + "---|" * (5 if scale else 4))
    for crate, size in shown + ([(f"({len(rest)} more crates)", sum(s for _, s in rest))] if rest else []):
        fns = functions.get(crate, sum(functions[c] for c, _ in rest))
        share = 100 * size / code_total
        if args.markdown:
            line = f"| {crate} | {fns} | {size:,} | {share:.1f} % |"
            if scale:
                line += f" {size * scale / 1e6:.2f} MB |"
            print(line)
        else:
            print(f"{crate:40s} {fns:7d} fns {size:12,d} B {share:5.1f} %")
    if args.markdown:
        print()
        print("| section | bytes |")
        print("|---|---|")
        print(f"| code (all functions) | {code_total:,} |")
        for k, v in sorted(rows.items(), key=lambda kv: -kv[1]):
            print(f"| {k.strip('[]')} | {v:,} |")
        print(f"| **module** | **{total:,}** |")
    else:
        print(f"{'code total':40s} {len(bodies):7d} fns {code_total:12,d} B")
        for k, v in sorted(rows.items(), key=lambda kv: -kv[1]):
            print(f"{k:53s} {v:12,d} B")
        print(f"{'module':53s} {total:12,d} B")


if __name__ == "__main__":
    main()
