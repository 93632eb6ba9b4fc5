#!/usr/bin/env python
"""Correctness of the staggered-warpgroup experiment on odd shapes (GPU): fresh random inputs, a
NaN-poisoned output, the validator's fp32 reference and bound (qimeng_serve.validate), both masks,
GQA, lengths that are not whole tiles, and more CTAs than sub-tiles. Prints one line per case and
exits 1 on any miss.

    python scripts/experiments/check_stagger.py --kernels .device/ab16/st-dh
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

CASES = [  # (batch, heads_q, heads_kv, Lq, Lk)
    (1, 1, 1, 64, 64), (1, 2, 1, 1, 1), (2, 3, 3, 333, 333), (3, 8, 2, 1000, 1000), (1, 16, 4, 2048, 2048),
    (2, 4, 4, 100, 777), (1, 32, 8, 4099, 4099), (4, 2, 1, 127, 129),
]


def main() -> int:
    import torch

    from qimeng_serve.runtime.sm90 import load_sm90_kernels
    from qimeng_serve.validate import TOLERANCE, reference, rel_l2

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kernels", type=Path, required=True)
    ap.add_argument("--dtype", default="bf16")
    args = ap.parse_args()
    name = f"qm_stagger_attn_{args.dtype}_hd128"
    kernel = load_sm90_kernels(args.kernels, names={name})[name]
    dt = {"bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    bad = 0
    for b, hq, hkv, lq, lk in CASES:
        for causal in (False, True):
            if causal and lq > lk:
                continue
            q = torch.randn(b, hq, lq, 128, dtype=dt, device="cuda")
            k, v = (torch.randn(b, hkv, lk, 128, dtype=dt, device="cuda") for _ in range(2))
            out = torch.full_like(q, float("nan"))
            kernel.prepare_dense(q, k, v, causal=causal, out=out)()
            torch.cuda.synchronize()
            ref = torch.stack([reference(q[i], k[i], v[i], causal=causal, scale=128 ** -0.5) for i in range(b)])
            err = rel_l2(out, ref)  # inf when any output is not finite
            ok = err < TOLERANCE[args.dtype]
            bad += not ok
            print(f"{'ok ' if ok else 'BAD'} B {b} H {hq}/{hkv} Lq {lq} Lk {lk} causal {int(causal)} rel L2 {err:.2e}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
