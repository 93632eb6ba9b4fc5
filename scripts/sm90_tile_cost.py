#!/usr/bin/env python
"""Split an sm_90a dense prefill kernel's time into a per-CTA fixed cost and a per-KV-tile cost.

The query side is held fixed (B x H x Lq: the same CTAs every run) while the key length grows, non-causal,
so time = fixed + per_tile * (Lk / BLOCK_N); a least-squares line through the points gives both. cuDNN SDPA
is timed on the same inputs in the same process (its own tiles are unknown, so its line is fitted against
Lk / 128). GPU time by qimeng_serve.bench.Timer (L2 flushed, the host's enqueue hidden behind a GPU
spin); the host time of one call is reported beside it. On an H100/H200:

    python scripts/sm90_tile_cost.py qm_dense_prefill_sm90_attn_bf16_hd128 [more kernels] --out tile_cost.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def host_us(fn, reps: int = 50) -> float:
    """Median host time of one call (the launch enqueued, not waited for): what eager callers pay."""
    import time

    import torch

    times = []
    for _ in range(reps):
        torch.cuda._sleep(200_000)  # keep the GPU busy so the enqueue never waits on a full queue
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e6)
    torch.cuda.synchronize()
    return sorted(times)[len(times) // 2]


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    n, sx, sy = len(xs), sum(xs), sum(ys)
    sxx, sxy = sum(x * x for x in xs), sum(x * y for x, y in zip(xs, ys))
    b = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    return (sy - b * sx) / n, b


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernels", nargs="+")
    ap.add_argument("--registry", type=Path, default=REPO / "registry-sm90a")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--seqlen-q", type=int, default=2048)
    ap.add_argument("--seqlens-k", default="1024,2048,4096,8192,16384")
    ap.add_argument("--out", type=Path, default=Path("tile_cost.json"))
    args = ap.parse_args()
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from qimeng_serve.bench import Timer
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    timer = Timer()

    kernels = load_sm90_kernels(args.registry, names=set(args.kernels))
    lks = [int(x) for x in args.seqlens_k.split(",")]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    report = {"device": torch.cuda.get_device_name(), "batch": args.batch, "heads": args.heads,
              "seqlen_q": args.seqlen_q, "seqlens_k": lks, "rows": {}}
    for name in args.kernels:
        kernel = kernels[name]
        dt = {"f16": torch.float16, "bf16": torch.bfloat16}[kernel.meta["dtype"]]
        d, bn, bm = kernel.meta["head_dim"], kernel.meta["params"]["BLOCK_N"], kernel.meta["params"]["BLOCK_M"]
        ctas = args.batch * args.heads * math.ceil(args.seqlen_q / bm)
        q = torch.randn(args.batch, args.heads, args.seqlen_q, d, dtype=dt, device="cuda")
        ours, cudnn, host = [], [], {}
        for lk in lks:
            k = torch.randn(args.batch, args.heads, lk, d, dtype=dt, device="cuda")
            v = torch.randn_like(k)
            out = torch.empty_like(q)
            run_ours = kernel.prepare_dense(q, k, v, causal=False, out=out)
            ours.append(timer.median_ms(run_ours) * 1e3)
            with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
                def run_cudnn(q=q, k=k, v=v):
                    return torch.nn.functional.scaled_dot_product_attention(q, k, v)
                cudnn.append(timer.median_ms(run_cudnn) * 1e3)
                if not host:
                    host = {"ours_us": host_us(run_ours), "cudnn_us": host_us(run_cudnn)}
        waves = math.ceil(ctas / sms)
        row = {"ctas": ctas, "waves": waves, "block_n": bn, "ours_us": ours, "cudnn_us": cudnn, "host_call_us": host}
        for who, ys, tile in (("ours", ours, bn), ("cudnn", cudnn, 128)):
            a, b = fit_line([lk / tile for lk in lks], ys)
            # per wave: each SM runs one CTA at a time (one CTA per SM fits the shared memory)
            row[who] = {"fixed_us": a, "per_tile_us": b, "fixed_per_cta_us": a / waves,
                        "per_tile_per_cta_us": b / waves}
        report["rows"][name] = row
        print(f"{name}: {ctas} CTAs ({waves} waves); host time per call: ours {host['ours_us']:.0f} us, "
              f"cuDNN SDPA {host['cudnn_us']:.0f} us")
        for who in ("ours", "cudnn"):
            r = row[who]
            print(f"  {who:6s} fixed {r['fixed_us']:8.1f} us ({r['fixed_per_cta_us']:5.2f} per CTA)  "
                  f"per KV tile {r['per_tile_us']:7.2f} us ({r['per_tile_per_cta_us']:5.3f} per CTA)  "
                  f"times {' '.join(f'{t:.0f}' for t in (ours if who == 'ours' else cudnn))}")
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
