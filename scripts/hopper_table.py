#!/usr/bin/env python
"""Markdown table of a hopper_check.json's bench rows: ours beside cuDNN, FA3, FA2 and FlexAttention,
with the same-run ratios. Rows timed twice (the FlexAttention pass repeats a dense kernel) show both
runs. Paged prefill rows stand apart; their FA3 is FA3's paged prefill on the same cache. Where a
kernel tuned for the row's mask was timed (a `_full` kernel on rows without a mask), or one tuned for
long sequences at its lengths (a `_long` kernel), the row shows it alone: the kernel the runtime picks
for that call.

    python scripts/hopper_table.py docs/results/hopper-h100-v2/run6-shipped-final.json
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from qimeng_serve.runtime.ops import preference  # noqa: E402

FLEX_DEFECT_TFLOPS = 50  # FlexAttention's L = 16k and GQA figures in this script are a measurement defect


def fmt(values, digits=0):
    return "/".join(f"{v:.{digits}f}" for v in values) if values else "-"


def runtime_pick(rows: list[dict], causal: bool) -> list[dict]:
    """The rows of the kernels KernelSet.find prefers for this call (ops.preference: a long-sequence kernel
    at its lengths, then the one tuned for the mask); rows from before `min_seqlen_k` was recorded have none."""
    ranks = [preference(r, causal, r["seqlen"]) for r in rows]
    return [r for r, rank in zip(rows, ranks) if rank == min(ranks)]


def table(path: str) -> str:
    data = json.load(open(path))
    groups = collections.defaultdict(list)
    for r in data["bench"]:
        if r.get("ours"):
            family = "paged" if "page" in r else "dense"  # paged rows: FA3 is FA3's paged prefill
            groups[(family, r["head_dim"], r["dtype"], r.get("tag", "sweep"), r["batch"], r["seqlen"],
                    r["causal"])].append({**r, "fa3": r.get("fa3_paged") if family == "paged" else r.get("fa3")})
    out = ["| kernel | D | dtype | shape | causal | ours | cuDNN | FA3 | FA2 | Flex | ours / cuDNN | ours / FA3 | ours / Flex |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3] != "sweep", k[3], k[5], k[6])):
        family, d, dtype, tag, b, length, causal = key
        rs = runtime_pick(groups[key], causal)
        shape = f"L={length}" if tag == "sweep" else f"{tag} B={b} L={length}"
        flex = [r["flex"] for r in rs if r.get("flex") and r["flex"] > FLEX_DEFECT_TFLOPS]
        with_flex = [r for r in rs if r.get("flex") and r["flex"] > FLEX_DEFECT_TFLOPS]
        out.append(" | ".join([
            f"| {family}", str(d), dtype, shape, "yes" if causal else "no",
            fmt([r["ours"] for r in rs]), fmt([r["cudnn"] for r in rs if r.get("cudnn")]),
            fmt([r["fa3"] for r in rs if r.get("fa3")]), fmt([r["fa2"] for r in rs if r.get("fa2")]), fmt(flex),
            fmt([r["ours"] / r["cudnn"] for r in rs if r.get("cudnn")], 2),
            fmt([r["ours"] / r["fa3"] for r in rs if r.get("fa3")], 2),
            fmt([r["ours"] / r["flex"] for r in with_flex], 2) + " |"]))
    return "\n".join(out)


if __name__ == "__main__":
    print(table(sys.argv[1]))
