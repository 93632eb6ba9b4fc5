#!/usr/bin/env python
"""Experiment (not shipped): the last partial wave's tiles split by rows, one item per consumer warpgroup.

Without a mask every tile is the same work, and the sweep's 2048 tiles end in a partial wave (68 tiles
on 132 SMs at D 128) that costs 4.6-5.8% (docs/perf-notes.md "fourteenth run"). The split along the keys
(split=tail) paid its parts' stores and combine ("fifteenth run"). Split by rows instead, a tail tile
becomes one item per consumer warpgroup: that warpgroup computes its 64 rows, the others skip the item
as padding warpgroups do (idle=skip: the producer arrives for them), so no part stores or combines
anything. A single warpgroup runs its rows faster than half a tile's time, as it has the tensor cores
to itself.

Built from the shipped program lowered without a mask with IDLE = 1, then edited: the producer's
TileScheduler gets the split's arguments (gridDim.x CTAs, parts = the consumer warpgroups; the
scheduler splits only without a mask), and a warpgroup other than the item's part counts as idle in
both roles. Written into a kernel directory with the shipped launch (persistent ABI):

    python scripts/experiments/build_rows.py --out .device/rows [--head-dims 128,256,64]

Measured (perf-notes "sixteenth run", run 6): 2.4-3.3% slower at D 128, 7% at D 256. One warpgroup alone
is nearly as slow on its 64 rows as two on the whole tile. It also has a known bug, not fixed because
the lever does not pay: where an item's warpgroup has no row, every warpgroup idles, nothing waits on
the slots' full barriers, and the producer refills a slot whose full phase is still open (a launch
failure on L 1537).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def rows_split(text: str, name: str) -> str:
    """The generated kernel (IDLE = 1) with its tail split by rows, renamed `name`."""
    text = re.sub(r"(__global__ void __launch_bounds__\(\d+, 1\) )(\w+)\(", lambda m: m.group(1) + name + "(", text,
                  count=1)
    producer, consumer = text.split("} else {  // L", 1)
    producer = re.sub(r"(qm::sm90::TileScheduler(?: tiles)?\((?:[^()]|\([^()]*\))*?p\.causal)\)",
                      r"\1, qm::sm90::opaque(gridDim.x), KT::kConsumerWGs)", producer)
    assert producer.count("opaque(gridDim.x)") == 2, "the producer's two schedulers"
    idle = re.search(r"const int idle = qm::sm90::idle_consumer_threads<KT>\(([^;]*)\);", producer)
    q0, seqlen = idle.group(1).split(", ", 1)
    producer = producer.replace(idle.group(0), (
        "int idle = 0;  // a rows-split item: the warpgroups other than its part are idle too\n"
        f"        for (int w = 0; w < KT::kConsumerWGs; ++w) idle += (qm::sm90::rows_outside({q0} + "
        f"qm::sm90::kWarpgroupRows * w, {seqlen}) || (tile.part >= 0 && tile.part != w)) ? "
        "qm::sm90::kWarpgroupThreads : 0;"))
    vote = "const bool idle = __any_sync(0xffffffffu, qm::sm90::rows_outside("
    assert vote in consumer
    consumer = consumer.replace(vote, "const bool idle = __any_sync(0xffffffffu, (tile.part >= 0 && tile.part != "
                                "c.tid / qm::sm90::kWarpgroupThreads) || qm::sm90::rows_outside(")
    return producer + "} else {  // L" + consumer


def main() -> None:
    from qimeng_serve.build.nvcc import run_nvcc
    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.lower.emit_sm90 import lower_sm90
    from qimeng_serve.lower.sm90_build import sass_text
    from qimeng_serve.spec import AttentionSpec
    from qimeng_serve.targets import get_target
    from qimeng_serve.tl.parser import parse_tl
    from sass_kv_loop import kv_loop, parse, summary

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--head-dims", default="128,256,64")
    ap.add_argument("--dtypes", default="bf16")
    args = ap.parse_args()
    toolchain = find_toolchain()
    program = (REPO / "kernels_src" / "tl" / "dense_prefill_sm90.tl").read_text()
    program = re.sub(r"^  IDLE = 0", "  IDLE = 1", program, count=1, flags=re.MULTILINE)
    args.out.mkdir(parents=True, exist_ok=True)
    index = {"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}}
    for d in map(int, args.head_dims.split(",")):
        for dtype in args.dtypes.split(","):
            source = lower_sm90(parse_tl(program), get_target("sm_90"), AttentionSpec("dense_prefill", dtype, d, 1, False))
            name = f"qm_rows_attn_{dtype}_hd{d}"
            text = rows_split(source.text, name)
            (args.out / f"{name}.cu").write_text(text)
            flags = ["-std=c++17", "-O3", "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-v", "-DNDEBUG",
                     "--use_fast_math", "-gencode=arch=compute_90a,code=sm_90a"]
            result = run_nvcc(args.out / f"{name}.cu", flags, toolchain, "sm_90a", fix="the experiment's source")
            (args.out / f"{name}.cubin").write_bytes(result.cubin)
            (entry,) = source.entries
            res = result.resources.get(name)
            loop = kv_loop(parse(sass_text(result.cubin, toolchain)), 12 if d == 64 else 8)
            index["kernels"][name] = {
                "program": "dense_prefill_sm90.tl + rows split (experiment)", "dtype": dtype, "head_dim": d,
                "softcap": 0.0, "threads": entry.threads, "grid": entry.grid, "smem_bytes": entry.smem_bytes,
                "abi": entry.abi, "tensor_maps": entry.tensor_maps, "tuned_mask": "full", "nvcc_flags": flags,
                "params": {"IDLE": 1, "rows_split": 1},
                "ptxas": None if res is None else {"registers": res.registers, "stack": res.stack,
                                                  "spill_stores": res.spill_stores, "spill_loads": res.spill_loads},
            }
            print(name, index["kernels"][name]["ptxas"], summary(loop) if loop else "no loop found")
    (args.out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
