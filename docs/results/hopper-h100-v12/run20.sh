#!/bin/bash
# Session 14, run 20: run 19 measured our launcher's host time inside the Timer's loop (GPU busy):
# 19-150 us, far under the 1M-cycle spin, fresh or not. So the "slow state" is not the GPU waiting for
# our enqueue, and the reason a 4M spin removes it is not known. The Timer is back at 1M, the method of
# every earlier figure; this is run 17 again under it (the shipped kernels, bf16, every anchor in the
# same run). Predicted: the kernel-bound rows as in run 17 within 2%; llama3.1-405b B 8 x 2k back to
# 0.94-0.96 of cuDNN if the process lands in the slow state there, as it did in every hopper_check so far.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-shipped14 --dtypes bf16 --bench-dtypes bf16 --flex all \
  --lengths 1024,2048,4096,8192,16384 --budget-s 540 --no-validate --out "$OUT/shipped" > "$OUT/shipped.log" 2>&1
grep -E "^\[|FAIL" "$OUT/shipped.log" | head -30
