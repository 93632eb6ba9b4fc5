#!/usr/bin/env python
"""Build the flat-KV-loop experiment (scripts/experiments/flat_sm90.cu) into a directory that
scripts/hopper_check.py and scripts/ab_sm90.py load: a cubin and an index.json entry per variant and dtype,
with the shipped dense D 128 kernel's launch (384 threads, persistent grid, tile counter, 128-row maps).

    python scripts/experiments/build_flat.py --out .device/flat [--variants q2,q1]

Variants: q2 (two Q buffers, two K/V stages), q1 (one Q buffer, three stages), and q2d (q2 with an extra
define, e.g. --define FLAT_DIAG_NOSTORE=1 for timing only). Prints ptxas's registers and spills and the
KV loop's counts (scripts/sass_kv_loop.py; the flat loop holds the tile switch too, so its counts are
larger than the steady step's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

# sizeof(flat::Storage) + 1024, as the .cu's static_assert checks: Q buffers, K/V stages of 32 KB each,
# 1024-byte aligned, and the barriers and tile slots after them
SMEM = {1: 32768 + 6 * 32768 + 1024 + 1024, 2: 2 * 32768 + 4 * 32768 + 1024 + 1024}
DTYPES = {"bf16": "qm::sm90::bf16", "f16": "qm::sm90::fp16"}


def main() -> None:
    from qimeng_serve.build.nvcc import run_nvcc
    from qimeng_serve.build.toolchain import find_toolchain
    from sass_kv_loop import kv_loop, parse, summary
    from qimeng_serve.lower.sm90_build import sass_text

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variants", default="q2,q1")
    ap.add_argument("--dtypes", default="bf16,f16")
    ap.add_argument("--define", action="append", default=[], help="extra -D for every variant (diagnostics)")
    args = ap.parse_args()
    toolchain = find_toolchain()
    src = REPO / "scripts" / "experiments" / "flat_sm90.cu"
    args.out.mkdir(parents=True, exist_ok=True)
    index = {"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}}
    for variant in args.variants.split(","):
        qbuf = int(variant[1])
        for dtype in args.dtypes.split(","):
            name = f"qm_flat_{variant}_attn_{dtype}_hd128"
            flags = ["-std=c++17", "-O3", "--expt-relaxed-constexpr", "-lineinfo", "-Xptxas=-v", "-DNDEBUG",
                     "--use_fast_math", f"-DFLAT_QBUF={qbuf}", f"-DFLAT_ENTRY={name}", f"-DFLAT_T={DTYPES[dtype]}",
                     f"-DFLAT_SMEM={SMEM[qbuf]}", *[f"-D{d}" for d in args.define],
                     "-gencode=arch=compute_90a,code=sm_90a"]
            result = run_nvcc(src, flags, toolchain, "sm_90a", fix="the experiment's source")
            (args.out / f"{name}.cubin").write_bytes(result.cubin)
            res = result.resources.get(name)
            loop = kv_loop(parse(sass_text(result.cubin, toolchain)), 16) if toolchain.cuobjdump else None
            index["kernels"][name] = {
                "program": "flat_sm90.cu (experiment)", "dtype": dtype, "head_dim": 128, "softcap": 0.0,
                "threads": 384, "grid": ["min(num_sms, (cdiv(max_seq_q, 128)) * (heads_q) * (batch))"],
                "smem_bytes": SMEM[qbuf], "abi": "attn_params+tma_descs+tile_counter",
                "tensor_maps": {"q": 128, "k": 128, "v": 128},
                "params": {"FLAT_QBUF": qbuf, "STAGES": 2 if qbuf == 2 else 3, "defines": args.define},
                "tuned_mask": "full", "nvcc_flags": flags,
                "ptxas": None if res is None else {"registers": res.registers, "stack": res.stack,
                                                  "spill_stores": res.spill_stores, "spill_loads": res.spill_loads},
            }
            print(name, index["kernels"][name]["ptxas"], summary(loop) if loop else "no loop found")
    (args.out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
