#!/usr/bin/env python
"""GPU check of the tile counter that persistent sm90a kernels leave zero (RETIRING_ABI; scheduler.cuh
TileCounter::retire, runtime/tile_counter.py): a stream keeps one counter for all its launches, so a
launch that failed to zero it would hand the next launch on the stream a counter past some of its tiles,
and those tiles would keep the NaN their output starts with.

For each dense kernel of that ABI in DIR, in one process:
  1. launches in a row on one stream, shapes from fewer tiles than SMs to many waves, both masks, each
     output (NaN-poisoned) against the fp32 reference and the stream's counter read back as [0, 0];
  2. a CUDA graph of three launches (captured on torch's capture stream), replayed three times with
     eager launches on the current stream between replays;
  3. two streams at once, each with its own counter.

    python scripts/counter_check.py --kernels DIR [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# (batch, query heads, KV heads, length, causal): 2 tiles; under one wave; 15.5 waves; GQA; odd lengths
SHAPES = [(1, 2, 2, 128, False), (2, 8, 8, 1000, True), (8, 16, 16, 2048, False), (2, 16, 2, 1537, True),
          (3, 5, 5, 777, False), (1, 1, 1, 1, True)]


def inputs(shape, d: int, dt, gen):
    import torch

    b, hq, hkv, length, causal = shape
    q = torch.randn(b, hq, length, d, dtype=dt, device="cuda", generator=gen)
    k, v = (torch.randn(b, hkv, length, d, dtype=dt, device="cuda", generator=gen) for _ in range(2))
    return q, k, v, causal


def error(q, k, v, causal: bool, out) -> float:
    from qimeng_serve.validate import reference, rel_l2

    scale = q.shape[-1] ** -0.5
    return max(rel_l2(out[i], reference(q[i], k[i], v[i], causal=causal, scale=scale)) for i in range(q.shape[0]))


def check_kernel(kernel) -> dict:
    import torch

    from qimeng_serve.runtime.tile_counter import retiring_counter
    from qimeng_serve.validate import TOLERANCE

    d, dt = kernel.meta["head_dim"], {"f16": torch.float16, "bf16": torch.bfloat16}[kernel.meta["dtype"]]
    tol = TOLERANCE[kernel.meta["dtype"]]
    gen = torch.Generator(device="cuda").manual_seed(7)
    rows = []

    def launch(q, k, v, causal):
        out = torch.full_like(q, float("nan"))
        kernel.prepare_dense(q, k, v, causal=causal, out=out)()
        return out

    def counter_now(stream) -> list[int]:
        torch.cuda.synchronize()
        return retiring_counter(stream).tolist()

    stream = torch.cuda.current_stream()
    for shape in SHAPES:  # 1. one stream, launch after launch
        q, k, v, causal = inputs(shape, d, dt, gen)
        err = error(q, k, v, causal, launch(q, k, v, causal))
        counter = counter_now(stream)
        rows.append({"step": "in a row", "shape": shape, "rel_l2": err, "counter": counter,
                     "ok": err <= tol and counter == [0, 0]})

    # 2. a graph of three launches, replayed between eager launches
    cases = [inputs(s, d, dt, gen) for s in SHAPES[:3]]
    outs = [torch.full_like(c[0], float("nan")) for c in cases]
    runs = [kernel.prepare_dense(q, k, v, causal=causal, out=o) for (q, k, v, causal), o in zip(cases, outs)]
    for run in runs:  # warm up outside the capture, as torch's graph docs ask
        run()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for run in runs:
            run()
    for replay in range(3):
        for o in outs:
            o.fill_(float("nan"))
        graph.replay()
        eager = inputs(SHAPES[(replay + 1) % len(SHAPES)], d, dt, gen)
        eager_err = error(*eager, launch(*eager))
        errs = [error(q, k, v, causal, o) for (q, k, v, causal), o in zip(cases, outs)]
        counter = counter_now(stream)
        rows.append({"step": f"graph replay {replay} + eager", "rel_l2": max(errs + [eager_err]), "counter": counter,
                     "ok": max(errs + [eager_err]) <= tol and counter == [0, 0]})

    # 3. two streams at once, each launching the 15.5-wave shape
    side = torch.cuda.Stream()
    pair = [inputs(SHAPES[2], d, dt, gen) for _ in range(2)]
    pair_outs = [torch.full_like(p[0], float("nan")) for p in pair]
    torch.cuda.synchronize()
    for (q, k, v, causal), o, s in zip(pair, pair_outs, (stream, side)):
        with torch.cuda.stream(s):
            kernel.prepare_dense(q, k, v, causal=causal, out=o)()
    errs = [error(q, k, v, causal, o) for (q, k, v, causal), o in zip(pair, pair_outs)]
    counters = [counter_now(stream), counter_now(side)]
    distinct = retiring_counter(stream).data_ptr() != retiring_counter(side).data_ptr()
    rows.append({"step": "two streams", "rel_l2": max(errs), "counter": counters,
                 "ok": max(errs) <= tol and counters == [[0, 0], [0, 0]] and distinct})
    return {"kernel": kernel.name, "tolerance": tol, "rows": rows, "passed": sum(r["ok"] for r in rows),
            "total": len(rows)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernels", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from qimeng_serve.runtime.launch import RETIRING_ABI
    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    index = json.loads((args.kernels / "index.json").read_text())["kernels"]
    names = {n for n, m in index.items() if m.get("abi") == RETIRING_ABI and not str(m.get("program", "")).startswith("paged")}
    if not names:
        raise SystemExit(f"no dense kernel in {args.kernels} leaves its counter zero ({RETIRING_ABI})")
    kernels = load_sm90_kernels(args.kernels, names=names)
    results = []
    for name in sorted(names):
        result = check_kernel(kernels[name])
        results.append(result)
        print(f"{name}: {result['passed']}/{result['total']}", flush=True)
        for row in result["rows"]:
            if not row["ok"]:
                print("  FAILED", json.dumps(row), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0 if all(r["passed"] == r["total"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
