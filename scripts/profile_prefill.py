"""Dense prefill, ours and SDPA flash (FA2) on the same inputs, for Nsight Compute side by side:
    ncu --kernel-name regex:"qm_dense|flash_fwd" --launch-skip 2 --launch-count 2 \\
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \\
        python3 scripts/profile_prefill.py [L] [D] [causal]
(B*L = 16k tokens, H*D = 2048, bf16: a point of the bench sweep; the sm_XX bundle of ./registry)."""

import sys
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from qimeng_serve.build.bundle import bundle_filename
from qimeng_serve.runtime.loader import device_arch
from qimeng_serve.runtime.ops import KernelSet

L = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
D = int(sys.argv[2]) if len(sys.argv) > 2 else 128
causal = len(sys.argv) > 3 and sys.argv[3] == "causal"
arch = device_arch()
ks = KernelSet(Path("registry") / arch / "bf16" / bundle_filename(arch, "bf16", "default"), prefer="sass")
b, h = 16384 // L, 2048 // D
q, k, v = (torch.randn(b, h, L, D, dtype=torch.bfloat16, device="cuda") for _ in range(3))
out = torch.empty_like(q)
for _ in range(2):  # ours, then FA2: the same launch order every round
    ks.dense_prefill(q, k, v, causal=causal, out=out)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
torch.cuda.synchronize()
