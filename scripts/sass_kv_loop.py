#!/usr/bin/env python
"""The KV loop of an sm_90a kernel in its SASS, counted (no GPU): static instructions and the opcodes
that tell how the GMMA descriptors are built (R2UR, IMAD, UMOV, VIADD, ...).

The loop is the smallest backward branch's body holding at least --min-hgmma HGMMAs (the S GEMM's
k-blocks and O += P V); where a kernel holds several such loops the first, smallest, is counted. Used
for docs/perf-notes.md "tenth run" (offline, before a kernel is timed):

    python scripts/sass_kv_loop.py registry-sm90a/qm_paged_prefill_sm90_attn_bf16_hd256.cubin [more.cubin]

The order of the loop's instructions matters as much as their count: at D 64 two builds with the same
opcodes in another order timed 4-6% apart (docs/perf-notes.md "thirteenth run"). `--record FILE`
writes the loop's schedule (each instruction's opcode with its modifiers, one a line) of one cubin;
`--against FILE` compares a cubin's loop with a recorded one and exits 1 where they differ, so a
change to a program or a building block can be checked offline before it is timed:

    python scripts/sass_kv_loop.py NEW.cubin --against docs/results/hopper-h100-v13/dense-d64-kv-loop.txt
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qimeng_serve.lower.sm90_build import sass_opcode as opcode  # noqa: E402

OPCODES = ("R2UR", "IMAD", "UMOV", "VIADD", "UISETP", "UIADD3", "HGMMA", "MUFU", "FMUL", "LDS", "STL", "LDL")
_LINE = re.compile(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;?\s*(/\*.*)?$")
_BRANCH = re.compile(r"\bBRA\b.*?0x([0-9a-f]+)")


def parse(sass: str) -> list[tuple[int, str]]:
    """(address, instruction) of each SASS line of cuobjdump -sass."""
    out = []
    for line in sass.splitlines():
        m = _LINE.match(line)
        if m:
            out.append((int(m.group(1), 16), m.group(2).strip().rstrip(";").strip()))
    return out


def kv_loop(ins: list[tuple[int, str]], min_hgmma: int = 8) -> list[str] | None:
    """The smallest loop (a backward branch and its target) with at least min_hgmma HGMMAs."""
    where = {addr: i for i, (addr, _) in enumerate(ins)}
    best = None
    for i, (addr, text) in enumerate(ins):
        m = _BRANCH.search(text)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target >= addr or target not in where:
            continue
        lo = where[target]
        body = [t for _, t in ins[lo:i + 1]]
        if sum(opcode(t) == "HGMMA" for t in body) >= min_hgmma and (best is None or len(body) < len(best)):
            best = body
    return best


def schedule(body: list[str]) -> list[str]:
    """The loop's instructions as opcode with modifiers (`FMNMX.FTZ`, `@ BRA` for a predicated one): the
    order ptxas chose, without the registers, predicates and addresses that differ between two builds
    of one schedule."""
    out = []
    for text in body:
        words = text.split()
        predicate = "@ " if words and words[0].startswith("@") else ""
        op = words[1] if predicate and len(words) > 1 else (words[0] if words else "")
        out.append(predicate + op)
    return out


def schedule_diff(recorded: list[str], body: list[str], context: int = 3) -> list[str]:
    """Where a loop's schedule leaves a recorded one ([] when they are the same)."""
    import difflib

    return list(difflib.unified_diff(recorded, schedule(body), "recorded", "this cubin", n=context, lineterm=""))


def summary(body: list[str]) -> dict[str, int]:
    counts = collections.Counter(opcode(t) for t in body)
    return {"instructions": len(body), **{op: counts[op] for op in OPCODES}}


def cuobjdump_sass(cubin: Path) -> str:
    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.lower.sm90_build import sass_text

    return sass_text(cubin.read_bytes(), find_toolchain())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cubins", nargs="+", type=Path)
    ap.add_argument("--min-hgmma", type=int, default=8, help="HGMMAs a loop must hold (default 8)")
    ap.add_argument("--record", type=Path, help="write the (one) cubin's loop schedule to this file")
    ap.add_argument("--against", type=Path, help="compare each cubin's loop schedule with this recorded one")
    args = ap.parse_args()
    if args.record and len(args.cubins) != 1:
        ap.error("--record takes one cubin")
    differs = False
    for cubin in args.cubins:
        body = kv_loop(parse(cuobjdump_sass(cubin)), args.min_hgmma)
        if body is None:
            print(f"{cubin.name}: no loop with {args.min_hgmma} HGMMAs")
            differs = True
            continue
        print(f"{cubin.name}: " + ", ".join(f"{k} {v}" for k, v in summary(body).items()))
        if args.record:
            args.record.write_text("\n".join(schedule(body)) + "\n")
            print(f"recorded its schedule in {args.record}")
        if args.against:
            diff = schedule_diff(args.against.read_text().splitlines(), body)
            print("  the same schedule as " + str(args.against) if not diff else "\n".join(diff[:80]))
            differs |= bool(diff)
    return 1 if differs else 0


if __name__ == "__main__":
    raise SystemExit(main())
