"""One paged split-KV decode launch at a bench configuration, for Nsight Compute:
    ncu --kernel-name regex:split --launch-skip 2 --launch-count 1 python3 scripts/profile_decode.py [ctx]
(B=8, Hq=32, Hkv=8, D=128, page 16, f16; the sm_90 bundle of ./registry)."""

import sys
from pathlib import Path

import torch

from qimeng_serve.build.bundle import bundle_filename
from qimeng_serve.runtime.loader import device_arch
from qimeng_serve.runtime.ops import KernelSet

ctx = int(sys.argv[1]) if len(sys.argv) > 1 else 32768
b, hq, hkv, d, page = 8, 32, 8, 128, 16
arch = device_arch()
ks = KernelSet(Path("registry") / arch / "f16" / bundle_filename(arch, "f16", "default"), prefer="sass")
blocks = b * ctx // page
kc = torch.randn(blocks, page, hkv, d, dtype=torch.float16, device="cuda")
vc = torch.randn_like(kc)
table = torch.randperm(blocks, device="cuda", dtype=torch.int32).view(b, ctx // page)
q = torch.randn(b, hq, d, dtype=torch.float16, device="cuda")
cu = torch.arange(b + 1, dtype=torch.int32, device="cuda")
seqlens = torch.full((b,), ctx, dtype=torch.int32, device="cuda")
ws = ks.decode_workspace(b, hq, d, ctx, "cuda")
for _ in range(3):
    ks.paged_decode(q, kc, vc, table, cu, seqlens, 1, ctx, workspace=ws)
torch.cuda.synchronize()
