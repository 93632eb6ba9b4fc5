#!/bin/bash
# Session 9, run 1 (diagnostics; nothing here is a shipped kernel):
#  A. What the normalise-and-store epilogue costs: nostore128 / nostore64 (QM_SM90_DIAG_NO_O_STORE:
#     O never written) beside the shipped D 128 / D 64, bf16.
#     Predicted from session 7's trace (1.06 us from the last PV GEMM's end to the store's issue, of a
#     ~28.7 us 2k tile): +3-4% at 2k, +6-8% at 1k, +1% at 16k, if that time is the store's own.
#  B. Tail waves: the sweep's rows have 2048 tiles of 128 rows, 15.5 waves of 132 SMs, so without a
#     mask the last wave runs half full (a 3% loss at every length for a persistent kernel). Rows
#     with whole waves (4 x 33 x 2k: 2112 tiles = 16 waves) beside the sweep's: if cuDNN loses less
#     to the half wave, our ratio to it rises on the whole-wave rows.
#  C. cuDNN's own kernels at the missed points (ncu LaunchStats): grid, block, registers, shared
#     memory, i.e. its tile and whether it is persistent.
# registry-var7/ from: scripts/sm90_variants.py --out registry-var7 --only nostore128,nostore64 \
#   --baseline qm_dense_prefill_sm90_attn_bf16_hd128,qm_dense_prefill_sm90_attn_bf16_hd64
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var7 --no-validate --bench-dtypes bf16 --dtypes bf16 --flex none \
  --lengths 1024,2048,4096,16384 --budget-s 230 --out "$OUT/nostore" > /tmp/nostore.log 2>&1
bash scripts/hopper_device.sh --no-validate --bench-dtypes bf16 --dtypes bf16 --head-dims 128 --flex none \
  --shapes 8x16x2048,4x33x2048,16x16x1024,4x33x1024,1x16x16384,1x33x16384 --budget-s 100 \
  --out "$OUT/waves128" > /tmp/waves128.log 2>&1
bash scripts/hopper_device.sh --no-validate --bench-dtypes bf16 --dtypes bf16 --head-dims 64 --flex none \
  --shapes 16x32x1024,22x32x1024,8x32x2048,12x32x2048 --budget-s 80 \
  --out "$OUT/waves64" > /tmp/waves64.log 2>&1
export PYTHONPATH="$PWD:/tmp/py"
cat > /tmp/cudnn_once.py <<'PY'
import sys, torch
from torch.nn.attention import SDPBackend, sdpa_kernel
b, h, length, d = (int(x) for x in sys.argv[1:5])
q, k, v = (torch.randn(b, h, length, d, dtype=torch.bfloat16, device="cuda") for _ in range(3))
with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
    for _ in range(2):
        torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=False)
torch.cuda.synchronize()
PY
for shape in "8 16 2048 128" "1 16 16384 128" "16 16 1024 128" "16 32 1024 64" "8 32 2048 64" "8 8 2048 256"; do
  echo "=== cuDNN B H L D = $shape"
  timeout 100 ncu --section LaunchStats --section SpeedOfLight -k regex:"^(?!distribution|elementwise|vectorized)" -c 2 \
    python3 /tmp/cudnn_once.py $shape 2>&1 | grep -E "^  [a-z_]|Grid Size|Block Size|Registers Per|Dynamic Shared|Duration|Threads  |Waves Per" | head -20
done > "$OUT/cudnn-launch.txt" 2>&1
grep -E "^\[|FAIL|rror" /tmp/nostore.log /tmp/waves128.log /tmp/waves64.log | grep -v "\[ok\]" | tail -20
head -c 4000 "$OUT/cudnn-launch.txt"
