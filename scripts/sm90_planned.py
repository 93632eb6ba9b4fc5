#!/usr/bin/env python
"""The Hopper planner's programs built as sm90a variants, for timing beside the measured programs.

Each (family, head size) gets the planner's program, renamed `<family>_sm90_v_plan<D>` so that its
kernels sit beside the shipped ones in one directory (the layout scripts/hopper_check.py reads).
With --ptxas-feedback a program whose kernel spills past the build's limit is replaced by the
planner's next candidate, as `qimeng-serve build --hopper-generator planner` does. Used for
docs/results/hopper-h100-v11/run1.sh and run7.sh:

    python scripts/sm90_planned.py --out registry-plan4 [--ptxas-feedback] [--dtype bf16]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qimeng_serve.build.pipeline import SPILL_LIMIT_BYTES  # noqa: E402
from qimeng_serve.generate.hopper_planner import HopperPlanner  # noqa: E402
from qimeng_serve.lower.sm90_build import INDEX, build_sm90_kernels  # noqa: E402
from qimeng_serve.spec import AttentionSpec  # noqa: E402

FAMILIES = ("dense_prefill", "paged_prefill")
HEAD_DIMS = (64, 128, 256)


def build_one(out: Path, tmp: Path, op: str, d: int, dtype: str, feedback: bool) -> dict:
    planner, spec = HopperPlanner(), AttentionSpec(op, dtype, d, causal=True)
    generated = planner.generate(spec, "sm_90")
    while True:
        name = f"{op}_sm90_v_plan{d}"
        tl = tmp / f"{name}.tl"
        tl.write_text(generated.text.replace(f"program {op}_sm90a", f"program {name}"))
        built = build_sm90_kernels(tmp / name, dtypes=(dtype,), head_dims=(d,), programs=[(str(tl), None, None)])
        (entry, meta), = built["kernels"].items()
        ptxas = meta.get("ptxas") or {}
        spilled = ptxas.get("spill_stores", 0) + ptxas.get("spill_loads", 0)
        print(f"{entry}: {generated.record.details['chosen']['summary']}; {ptxas.get('registers')} registers, "
              f"spills {spilled} B")
        if not (feedback and spilled > SPILL_LIMIT_BYTES):
            break
        generated = planner.next_program(spec, "sm_90", generated, f"spills {spilled} B")
        if generated is None:
            raise SystemExit(f"{op} D {d}: no candidate that needs fewer registers")
    shutil.copy(tmp / name / f"{entry}.cubin", out / f"{entry}.cubin")
    shutil.copy(tmp / name / f"{entry}.cu", out / f"{entry}.cu")
    shutil.copy(tl, out / f"{name}.tl")
    return {entry: {**meta, "variant": f"plan{d}"}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--ptxas-feedback", action="store_true", help="replace a spilling kernel by the next candidate")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    index = {"schema": "qimeng-sm90a-kernels/1", "arch": "sm_90a", "kernels": {}}
    with tempfile.TemporaryDirectory(prefix="qimeng-planned-") as tmp:
        for op in FAMILIES:
            for d in HEAD_DIMS:
                index["kernels"].update(build_one(args.out, Path(tmp), op, d, args.dtype, args.ptxas_feedback))
    (args.out / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
