#!/usr/bin/env python
"""Paged prefill through KernelSet on one GPU: every kernel variant of a bundle (sm90a and portable)
pinned in turn on the same inputs, beside vLLM's FlashAttention-3 when the vLLM payload is on the
path; each variant's output checked against the fp32 reference first.

    python scripts/paged_variants_bench.py .device/reg-paged/sm_90/bf16/qimeng-default-sm_90-bf16.safetensors
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    from qimeng_serve.bench import Timer
    from qimeng_serve.runtime.ops import KernelSet
    from qimeng_serve.validate import TOLERANCE, reference, rel_l2

    ks = KernelSet(Path(sys.argv[1]))
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[ks.dtype]
    try:
        from vllm.vllm_flash_attn import flash_attn_varlen_func as fa3
    except Exception:
        fa3 = None
    timer = Timer()
    gen = torch.Generator(device="cuda").manual_seed(0)
    rows = []
    for d in sorted({k.meta["spec"]["head_dim"] for k in ks.kernels.values() if k.meta["family"] == "paged_prefill"}):
        variants = {k.meta.get("variant", "portable"): n for n, k in ks.kernels.items()
                    if k.meta["family"] == "paged_prefill" and k.meta["spec"]["head_dim"] == d}
        h = 2048 // d
        for page in (16, 64):
            for b, length, causal in ((4, 4096, True), (4, 4096, False), (1, 16384, True), (1, 16384, False)):
                blocks = b * math.ceil(length / page)
                kc = torch.randn(blocks + 3, page, h, d, generator=gen, device="cuda").to(dt)
                vc = torch.randn(blocks + 3, page, h, d, generator=gen, device="cuda").to(dt)
                table = torch.randperm(blocks + 3, generator=gen, device="cuda").to(torch.int32)[:blocks].view(b, -1)
                q = torch.randn(b * length, h, d, generator=gen, device="cuda").to(dt)
                cu = torch.arange(0, (b + 1) * length, length, device="cuda", dtype=torch.int32)
                seqlens = torch.full((b,), length, device="cuda", dtype=torch.int32)
                out = torch.empty_like(q)
                flops = 4 * b * h * length * length * d / (2 if causal else 1)
                row = {"d": d, "dtype": ks.dtype, "page": page, "B": b, "L": length, "causal": causal}
                for variant, name in sorted(variants.items()):
                    with ks.pinned(name):
                        run = lambda: ks.paged_prefill(q, kc, vc, table, cu, seqlens, length, length, causal=causal, out=out)  # noqa: E731
                        out.fill_(float("nan"))
                        run()
                        torch.cuda.synchronize()
                        # the first sequence against fp32 (the longest case costs an L x L reference)
                        idx = table[0].long()
                        kk = kc[idx].flatten(0, 1)[:length].permute(1, 0, 2)
                        vv = vc[idx].flatten(0, 1)[:length].permute(1, 0, 2)
                        ref = reference(q[:length].permute(1, 0, 2), kk, vv, causal=causal, scale=1 / math.sqrt(d))
                        err = rel_l2(out[:length].permute(1, 0, 2), ref)
                        row[f"{variant}_rel_l2"] = err
                        row[variant] = round(flops / timer.median_ms(run) / 1e9, 1) if err <= TOLERANCE[ks.dtype] else None
                if fa3 is not None:
                    try:
                        f = lambda: fa3(q, kc, vc, length, cu, length, seqused_k=seqlens, block_table=table,  # noqa: E731
                                        causal=causal, out=out, fa_version=3)
                        f()
                        row["fa3"] = round(flops / timer.median_ms(f) / 1e9, 1)
                    except Exception as exc:
                        row["fa3_error"] = str(exc)[:200]
                rows.append(row)
                print(json.dumps(row), flush=True)
                del kc, vc, q, out
                torch.cuda.empty_cache()
    Path(os.environ.get("OUT", "/tmp"), "paged_variants.json").write_text(
        json.dumps({"device": torch.cuda.get_device_name(), "bundle": sys.argv[1], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
