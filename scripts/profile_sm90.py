#!/usr/bin/env python
"""One sm_90a dense prefill kernel (from registry-sm90a/) on one shape, for Nsight Compute:

    ncu --set full -k regex:qm_ -c 1 python scripts/profile_sm90.py KERNEL --batch 8 --heads 16 --seqlen 2048 --causal

Runs the kernel three times (ncu profiles the launch it is told to) and cuDNN's SDPA once on the same
inputs (profile it with -k regex:cudnn or by leaving -k out). A paged prefill kernel
(paged_prefill_sm90.tl) runs on a vLLM-layout cache with a shuffled block table (--page rows per page),
Lq = Lk per sequence, as scripts/hopper_check.py benchmarks it. --fa3 runs FA3 on the same inputs too (its
paged prefill for a paged kernel, its varlen prefill for a dense one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def hopper_check():
    """scripts/hopper_check.py as a module: its input builders and FA3 lookup."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hopper_check", REPO / "scripts" / "hopper_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kernel")
    ap.add_argument("--kernels", type=Path, default=REPO / "registry-sm90a")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--heads-kv", type=int)
    ap.add_argument("--seqlen", type=int, default=2048)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--cudnn", action="store_true", help="also run cuDNN SDPA once")
    ap.add_argument("--page", type=int, default=16, help="paged kernels: rows per page")
    ap.add_argument("--fa3", action="store_true", help="also run FA3 (vLLM's vllm_flash_attn, fa_version=3) three "
                    "times on the same inputs (-k regex:flash): paged kernels its paged prefill on the same cache and "
                    "block table, dense kernels its varlen prefill on the inputs packed as [tokens, H, D]")
    args = ap.parse_args()
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from qimeng_serve.runtime.sm90 import load_sm90_kernels

    kernel = load_sm90_kernels(args.kernels, names={args.kernel})[args.kernel]
    dt = {"f16": torch.float16, "bf16": torch.bfloat16}[kernel.meta["dtype"]]
    d, hk = kernel.meta["head_dim"], args.heads_kv or args.heads
    hc = hopper_check()
    if str(kernel.meta.get("program", "")).startswith("paged_prefill"):
        gen = torch.Generator(device="cuda").manual_seed(0)
        seqs = [(args.seqlen, args.seqlen)] * args.batch
        q, kc, vc, table, cu, seqlens_k = hc.paged_inputs(seqs, hk, args.heads // hk, d, dt, args.page, gen,
                                                          poison=False)
        out = torch.empty_like(q)
        run = hc.prepare_paged(kernel, q, kc, vc, table, cu, seqlens_k, args.seqlen, args.seqlen, causal=args.causal,
                               out=out)
        for _ in range(3):
            run()
        if args.fa3:
            fa3 = hc.fa3_varlen()
            if fa3 is None:
                print("no FA3: the vLLM payload is not on the path")
                return 1
            for _ in range(3):
                fa3(q, kc, vc, args.seqlen, cu, args.seqlen, seqused_k=seqlens_k, block_table=table,
                    causal=args.causal, out=out, fa_version=3)
        torch.cuda.synchronize()
        print("ran", kernel.name, "paged, page", args.page, "and FA3's paged prefill" if args.fa3 else "")
        return 0
    q = torch.randn(args.batch, args.heads, args.seqlen, d, dtype=dt, device="cuda")
    k = torch.randn(args.batch, hk, args.seqlen, d, dtype=dt, device="cuda")
    v = torch.randn_like(k)
    out = torch.empty_like(q)
    run = kernel.prepare_dense(q, k, v, causal=args.causal, out=out)
    for _ in range(3):
        run()
    if args.fa3:
        fa3 = hc.fa3_varlen()
        if fa3 is None:
            print("no FA3: the vLLM payload is not on the path")
            return 1
        b, length = args.batch, args.seqlen
        qf, kf, vf = (t.transpose(1, 2).reshape(b * length, t.shape[1], d).contiguous() for t in (q, k, v))
        cu = torch.arange(0, (b + 1) * length, length, dtype=torch.int32, device="cuda")
        of = torch.empty_like(qf)
        for _ in range(3):
            fa3(qf, kf, vf, length, cu, length, cu_seqlens_k=cu, causal=args.causal, out=of, fa_version=3)
    if args.cudnn:
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=args.causal, enable_gqa=hk != args.heads)
    torch.cuda.synchronize()
    print("ran", kernel.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
