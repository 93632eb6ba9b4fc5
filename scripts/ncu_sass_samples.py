#!/usr/bin/env python
"""Where a kernel's warp stall samples fall, by how often each instruction ran, from Nsight Compute's
per-instruction source page (no GPU needed once the CSV exists):

    ncu --section SourceCounters --section WarpStateStats -k regex:NAME -c 1 --page source --csv \
        --print-source sass python ... > kernel.csv
    python scripts/ncu_sass_samples.py ours.csv cudnn.csv [--top 6] [--ranges 0xd8600-0xd8e60,...]

Instructions that ran the same number of times belong to the same loop level: in a persistent attention
kernel the most-run group is the KV loop (executions = warps x tiles x KV steps), the group run once a
tile per consumer warp is the tile boundary, and so on. Prints, per kernel, the total samples and each
of the `--top` groups (executions each, static instructions, samples and their share), and with
`--ranges` the samples of each address range (the last hex digits of ncu's addresses, as printed) among
the instructions run as often as `--executions` (default: every instruction).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ncu_sass_mix import load  # noqa: E402


def addresses(path: Path) -> list[int]:
    """Each instruction's address (ncu writes absolute ones; their low 20 bits are what the ranges name)."""
    import csv

    rows = list(csv.reader(path.open()))
    start = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    return [int(r[0], 16) & 0xFFFFF for r in rows[start + 1:]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv", nargs="+", type=Path)
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--ranges", default="", help="LO-HI,... address ranges (hex) to sum")
    ap.add_argument("--executions", default="", help="LO-HI: only instructions run this often in the ranges")
    args = ap.parse_args()
    for path in args.csv:
        sass, executed, stalls = load(path)
        samples = [sum(values[i] for values in stalls.values()) for i in range(len(sass))]
        total = sum(samples)
        groups: dict[int, list[float]] = collections.defaultdict(lambda: [0, 0.0])
        for ex, s in zip(executed, samples):
            groups[int(ex)][0] += 1
            groups[int(ex)][1] += s
        print(f"{path.name}: {total:.0f} samples")
        for ex, (n, s) in sorted(groups.items(), key=lambda kv: -kv[1][1])[:args.top]:
            print(f"  run {ex:>9} times: {n:5d} instructions, {s:7.0f} samples ({100 * s / total:4.1f}%)")
        if args.ranges:
            lo_ex, _, hi_ex = args.executions.partition("-")
            keep = range(int(lo_ex), int(hi_ex) + 1) if args.executions else None
            where = addresses(path)
            for text in args.ranges.split(","):
                lo, hi = (int(x, 16) for x in text.split("-"))
                picked = [i for i, a in enumerate(where) if lo <= a < hi and (keep is None or int(executed[i]) in keep)]
                print(f"  {text}: {len(picked)} instructions, {sum(samples[i] for i in picked):.0f} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main())
