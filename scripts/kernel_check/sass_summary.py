#!/usr/bin/env python3
"""Summarise `cuobjdump -sass` output: per kernel, tensor-core MMA count (HMMA), ldmatrix count
(LDSM), async copies (LDGSTS) and local-memory spill instructions (LDL/STL), total and inside
loops (an instruction lies in a loop when it sits between a backward branch and its target)."""
import re
import sys


def main() -> None:
    res = {}
    fn, ins = None, []

    def flush():
        if fn is None:
            return
        loops = []
        for a, t in ins:
            m = re.search(r"BRA (0x[0-9a-f]+)", t)
            if m and int(m.group(1), 16) < a:
                loops.append((int(m.group(1), 16), a))
        spills = [a for a, t in ins if re.search(r"\b(LDL|STL)\b", t)]
        res[fn] = dict(
            hmma=sum("HMMA" in t for _, t in ins),
            ldsm=sum("LDSM" in t for _, t in ins),
            ldgsts=sum("LDGSTS" in t for _, t in ins),
            spill=len(spills),
            spill_loop=sum(any(lo <= a <= hi for lo, hi in loops) for a in spills),
            n=len(ins),
        )

    for line in sys.stdin:
        m = re.match(r"\s+Function : (\S+)", line)
        if m:
            flush()
            fn, ins = m.group(1), []
            continue
        m = re.match(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and fn:
            ins.append((int(m.group(1), 16), m.group(2)))
    flush()
    print(f"{'kernel':40s} {'HMMA':>5s} {'LDSM':>5s} {'LDGSTS':>6s} {'LDL/STL':>7s} {'in-loop':>7s} {'instrs':>6s}")
    for k in sorted(res):
        r = res[k]
        print(f"{k:40s} {r['hmma']:5d} {r['ldsm']:5d} {r['ldgsts']:6d} {r['spill']:7d} {r['spill_loop']:7d} {r['n']:6d}")


if __name__ == "__main__":
    main()
