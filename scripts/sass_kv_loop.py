#!/usr/bin/env python
"""The KV loop of an sm_90a kernel in its SASS, counted (no GPU): static instructions and the opcodes
that tell how the GMMA descriptors are built (R2UR, IMAD, UMOV, VIADD, ...).

The loop is the smallest backward branch's body holding at least --min-hgmma HGMMAs (the S GEMM's
k-blocks and O += P V); where a kernel holds several such loops the first, smallest, is counted. Used
for docs/perf-notes.md "tenth run" (offline, before a kernel is timed):

    python scripts/sass_kv_loop.py registry-sm90a/qm_paged_prefill_sm90_attn_bf16_hd256.cubin [more.cubin]
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
    args = ap.parse_args()
    for cubin in args.cubins:
        body = kv_loop(parse(cuobjdump_sass(cubin)), args.min_hgmma)
        if body is None:
            print(f"{cubin.name}: no loop with {args.min_hgmma} HGMMAs")
            continue
        print(f"{cubin.name}: " + ", ".join(f"{k} {v}" for k, v in summary(body).items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
