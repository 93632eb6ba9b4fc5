#!/usr/bin/env python
"""Build the staggered-warpgroup experiment (scripts/experiments/stagger_sm90.cu) into a directory that
scripts/ab_sm90.py loads: `<entry>.cubin` and an index.json whose entries give Q's tensor map 64-row
boxes (each consumer warpgroup loads its own 64 query rows).

    python scripts/experiments/build_stagger.py --out .device/stagger-d8 --delay 8
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

SMEM_BYTES = 232448  # sizeof(Storage) + 1024 for the 1024-byte alignment; the .cu asserts the bound


def main() -> None:
    from qimeng_serve.build.nvcc import run_nvcc
    from qimeng_serve.build.toolchain import find_toolchain
    from qimeng_serve.lower.sm90_build import opcode_counts, sass_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--delay", type=int, default=-1, help="KV steps warpgroup 1 starts late (< 0: half a sub-tile)")
    ap.add_argument("--turns", action="store_true", help="ping-pong turns (delay 0 and whole 128-row tiles only)")
    ap.add_argument("--simple-producer", action="store_true", help="diagnostic: the shipped producer loop (delay 0)")
    ap.add_argument("--no-tags", action="store_true", help="diagnostic: consumers read no slot tags (simple producer)")
    ap.add_argument("--no-shfl", action="store_true", help="diagnostic, with --no-tags: no broadcast of the stage")
    ap.add_argument("--reverse", action="store_true", help="diagnostic, simple producer: keys from the last block down")
    args = ap.parse_args()
    toolchain = find_toolchain()
    flags = ["-std=c++17", "-O3", "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-v", "-DNDEBUG",
             "--use_fast_math", f"-DSTAGGER_DELAY={args.delay}", f"-DSTAGGER_TURNS={int(args.turns)}", f"-DSTAGGER_SIMPLE_PRODUCER={int(args.simple_producer)}", f"-DSTAGGER_NO_TAGS={int(args.no_tags)}", f"-DSTAGGER_NO_SHFL={int(args.no_shfl)}", f"-DSTAGGER_REVERSE={int(args.reverse)}", "-gencode=arch=compute_90a,code=sm_90a"]
    src = REPO / "scripts" / "experiments" / "stagger_sm90.cu"
    result = run_nvcc(src, flags, toolchain, "sm_90a", fix="the experiment's source")
    args.out.mkdir(parents=True, exist_ok=True)
    sass = sass_text(result.cubin, toolchain) if toolchain.cuobjdump else ""
    index = {"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}}
    for dtype in ("bf16", "f16"):
        name = f"qm_stagger_attn_{dtype}_hd128"
        (args.out / f"{name}.cubin").write_bytes(result.cubin)
        res = result.resources.get(name)
        index["kernels"][name] = {
            "program": "stagger_sm90.cu (experiment)", "dtype": dtype, "head_dim": 128, "softcap": 0.0,
            "threads": 384, "grid": ["min(num_sms, (cdiv(max_seq_q, 128)) * (heads_q) * (batch))"],
            "smem_bytes": SMEM_BYTES, "abi": "attn_params+tma_descs+tile_counter",
            "tensor_maps": {"q": 64, "k": 128, "v": 128}, "params": {"STAGGER_DELAY": args.delay, "STAGGER_TURNS": int(args.turns)},
            "tuned_mask": "full", "nvcc_flags": flags,
            "ptxas": None if res is None else {"registers": res.registers, "stack": res.stack,
                                              "spill_stores": res.spill_stores, "spill_loads": res.spill_loads},
        }
        print(name, index["kernels"][name]["ptxas"])
    if sass:
        print("SASS opcodes (both entries):", {k: v for k, v in opcode_counts(sass).items() if k in ("HGMMA", "R2UR", "UTMALDG")})
    (args.out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
