"""sm90a vs portable through KernelSet on one GPU: kernel time and host cost per call. Not shipped."""

import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.getcwd())
import torch  # noqa: E402

from qimeng_serve.bench import Timer  # noqa: E402
from qimeng_serve.runtime.ops import KernelSet  # noqa: E402

BUNDLE = Path(".device/reg-wire/sm_90/bf16/qimeng-default-sm_90-bf16.safetensors")
dt = torch.bfloat16
ks = KernelSet(BUNDLE)
timer = Timer(runs=20, warmup=3)
rows = []


def paged(b, L, page, h, d):
    blocks = b * math.ceil(L / page)
    kc = torch.randn(blocks + 3, page, h, d, device="cuda", dtype=dt)
    vc = torch.randn_like(kc)
    table = torch.randperm(blocks + 3, device="cuda", dtype=torch.int32)[:blocks].view(b, -1)
    q = torch.randn(b * L, h, d, device="cuda", dtype=dt)
    cu = torch.arange(0, b * L + 1, L, device="cuda", dtype=torch.int32)
    seqlens = torch.full((b,), L, device="cuda", dtype=torch.int32)
    return q, kc, vc, table, cu, seqlens


def by_variant(family, d):
    return {k.meta.get("variant", "portable"): n for n, k in ks.kernels.items()
            if k.meta["family"] == family and k.meta["spec"]["head_dim"] == d}


for d in (64, 128):
    for b, L in ((4, 4096), (2, 8192)):
        for causal in (False, True):
            q = torch.randn(b, 16, L, d, device="cuda", dtype=dt)
            k, v = torch.randn_like(q), torch.randn_like(q)
            o = torch.empty_like(q)
            flops = 4 * b * 16 * L * L * d / (2 if causal else 1)
            row = {"op": "dense", "d": d, "B": b, "L": L, "causal": causal}
            for variant, name in sorted(by_variant("dense_prefill", d).items()):
                with ks.pinned(name):
                    row[variant] = round(flops / timer.median_ms(lambda: ks.dense_prefill(q, k, v, causal=causal, out=o)) / 1e9, 1)
            rows.append(row)
            print(row, flush=True)
    for page in (16, 64, 128):
        b, L = 4, 4096
        q, kc, vc, table, cu, seqlens = paged(b, L, page, 16, d)
        o = torch.empty_like(q)
        flops = 4 * b * 16 * L * L * d / 2
        row = {"op": "paged", "d": d, "B": b, "L": L, "page": page, "causal": True}
        for variant, name in sorted(by_variant("paged_prefill", d).items()):
            with ks.pinned(name):
                row[variant] = round(flops / timer.median_ms(lambda: ks.paged_prefill(q, kc, vc, table, cu, seqlens, L, L, out=o)) / 1e9, 1)
        rows.append(row)
        print(row, flush=True)

# host cost per call: one query token over 4k keys (the GPU is not the bottleneck)
q, kc, vc, table, cu, seqlens = paged(1, 4096, 16, 16, 128)
q1, o1 = q[:1].clone(), torch.empty(1, 16, 128, device="cuda", dtype=dt)
cu1 = torch.tensor([0, 1], device="cuda", dtype=torch.int32)
host = {}
for variant, name in sorted(by_variant("paged_prefill", 128).items()):
    with ks.pinned(name):
        for _ in range(20):
            ks.paged_prefill(q1, kc, vc, table, cu1, seqlens, 1, 4096, out=o1)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(500):
            ks.paged_prefill(q1, kc, vc, table, cu1, seqlens, 1, 4096, out=o1)
        host[variant] = round((time.perf_counter() - t0) / 500 * 1e6, 1)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(100):
            ks.paged_prefill(q1, kc, vc, table, cu1, seqlens, 1, 4096, out=o1)
        end.record()
        end.synchronize()
        host[variant + "_gpu_us"] = round(start.elapsed_time(end) / 100 * 1e3, 1)
print("host us/call", host, flush=True)
out = Path(os.environ.get("OUT", "/tmp")) / "perf.json"
out.write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows, "host_us": host}, indent=1))
