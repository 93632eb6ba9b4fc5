#!/usr/bin/env python
"""The executed-instruction mix of a warp-specialised kernel, from Nsight Compute's per-instruction
source page (no GPU needed once the CSV exists):

    ncu --section SourceCounters --section WarpStateStats -k regex:NAME -c 1 --page source --csv \
        --print-source sass python ... > kernel.csv
    python scripts/ncu_sass_mix.py ours.csv [fa3.csv] --per 843776

Splits each kernel's SASS at its `setmaxnreg` instructions (USETMAXREG.TRY_ALLOC: the consumers'
code, USETMAXREG.DEALLOC: the producer's; the region holding the HGMMAs is the consumers') and prints
executed instructions per opcode for the consumer region, divided by --per (e.g. the executions of
one HGMMA of the KV loop: per consumer warp and KV tile), side by side when two files are given,
largest difference first; and the stall-sample shares of the whole kernel.
"""

from __future__ import annotations

import argparse
import collections
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qimeng_serve.lower.sm90_build import sass_opcode as opcode  # noqa: E402


def load(path: Path) -> tuple[list[str], list[float], dict[str, list[float]]]:
    """(SASS text, executions, stall samples by reason) per instruction."""
    rows = list(csv.reader(path.open()))
    start = next(i for i, r in enumerate(rows) if r and r[0] == "Address")  # ncu's own lines come first
    header, data = rows[start], rows[start + 1:]
    col = {h: i for i, h in enumerate(header)}

    def num(row: list[str], key: str) -> float:
        try:
            return float(row[col[key]] or 0)
        except (ValueError, IndexError):
            return 0.0

    stalls = {h: [num(r, h) for r in data] for h in header if h.startswith("stall_") and "Not Issued" not in h}
    return [r[col["Source"]].strip() for r in data], [num(r, "Instructions Executed") for r in data], stalls


def consumer_range(sass: list[str]) -> range:
    """The consumer region: of the stretches the two setmaxnreg instructions cut the SASS into (between
    them, after the later, before the earlier), the first that holds the HGMMAs."""
    alloc = next(i for i, s in enumerate(sass) if "TRY_ALLOC" in s)
    dealloc = next(i for i, s in enumerate(sass) if "DEALLOC" in s)
    lo, hi = sorted((alloc, dealloc))
    for region in (range(lo, hi), range(hi, len(sass)), range(0, lo)):
        if any(sass[i].startswith("HGMMA") for i in region):
            return region
    raise ValueError("no HGMMA in the kernel: not a warp-specialised GMMA kernel")


def mix(path: Path, per: float) -> tuple[collections.Counter, float, dict[str, float]]:
    sass, executed, stalls = load(path)
    region = consumer_range(sass)
    counts: collections.Counter = collections.Counter()
    for i in region:
        counts[opcode(sass[i])] += executed[i] / per
    total = sum(sum(v) for v in stalls.values()) or 1.0
    shares = {k: sum(v) / total for k, v in stalls.items()}
    return counts, sum(executed[i] for i in region) / max(sum(executed), 1.0), shares


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", nargs="+", type=Path, help="one or two ncu --page source --csv files")
    ap.add_argument("--per", type=float, default=1.0, help="divide executions by this (default 1)")
    ap.add_argument("--top", type=int, default=20, help="opcodes to print (default 20)")
    args = ap.parse_args()
    results = [mix(p, args.per) for p in args.csv[:2]]
    names = [p.stem for p in args.csv[:2]]
    for name, (counts, share, stalls) in zip(names, results):
        top = ", ".join(f"{k[6:]} {v:.0%}" for k, v in sorted(stalls.items(), key=lambda kv: -kv[1])[:5])
        print(f"{name}: consumer region {sum(counts.values()):.1f} (executions / --per), {share:.0%} of the "
              f"kernel's; stall samples: {top}")
    ops = set().union(*(c for c, _, _ in results))
    first = results[0][0]
    second = results[1][0] if len(results) > 1 else collections.Counter()
    print(f"{'opcode':10s} " + " ".join(f"{n[:12]:>12s}" for n in names) + ("   difference" if len(results) > 1 else ""))
    for op in sorted(ops, key=lambda o: -abs(first[o] - second[o]))[:args.top]:
        cells = " ".join(f"{c[op]:12.1f}" for c, _, _ in results)
        print(f"{op:10s} {cells}" + (f" {first[op] - second[op]:+12.1f}" if len(results) > 1 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
