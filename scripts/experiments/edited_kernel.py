"""Compile an experiment's hand-edited lowering of a dense sm_90a program and describe it for the GPU check.

The experiment scripts here (build_oslot.py, build_alternate.py) lower a shipped program, edit its CUDA,
and need the same steps after: nvcc with the build's sm_90a flags, the cubin written beside the source,
an index.json entry that scripts/hopper_check.py and scripts/ab_sm90.py load, and the KV loop's counts.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))


def compile_edited(out: Path, name: str, text: str, source, toolchain, dtype: str, program: str, params: dict,
                   tensor_maps: dict | None = None) -> dict:
    """nvcc `text` (the edited `source`, whose one entry is renamed `name`) into out/<name>.cubin; returns its
    index entry (D 128, no soft-cap, tuned for calls without a mask) and prints the ptxas figures and KV loop."""
    from qimeng_serve.build.nvcc import run_nvcc
    from qimeng_serve.lower.sm90_build import nvcc_flags_sm90a, sass_text
    from sass_kv_loop import kv_loop, parse, summary

    (out / f"{name}.cu").write_text(text)
    flags = nvcc_flags_sm90a()
    result = run_nvcc(out / f"{name}.cu", flags, toolchain, "sm_90a", fix="the experiment's source")
    (out / f"{name}.cubin").write_bytes(result.cubin)
    (entry,) = source.entries
    res = result.resources.get(name)
    loop = kv_loop(parse(sass_text(result.cubin, toolchain)), 8)
    meta = {
        "program": program, "dtype": dtype, "head_dim": 128, "softcap": 0.0, "threads": entry.threads,
        "grid": entry.grid, "smem_bytes": entry.smem_bytes, "abi": entry.abi,
        "tensor_maps": tensor_maps or entry.tensor_maps, "tuned_mask": "full", "nvcc_flags": flags, "params": params,
        "ptxas": None if res is None else {"registers": res.registers, "stack": res.stack,
                                          "spill_stores": res.spill_stores, "spill_loads": res.spill_loads},
    }
    print(name, meta["ptxas"], summary(loop) if loop else "no loop found")
    return meta
