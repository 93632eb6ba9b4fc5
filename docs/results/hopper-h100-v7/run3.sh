#!/bin/bash
# Session 9, run 3: O stored by TMA (TL `Copy O[...] <- acc with via=STORE_TMA`, STORE_TMA = 1 at D 64
# and 128; D 128 down to two K/V stages to make room for O's 32 KB tile): validation of the rebuilt
# registry-sm90a/ (every kernel: the TmaDescs parameter grew to 512 bytes, so the paged and D 256
# kernels are checked too), memcheck and racecheck on D 128 bf16 and D 64 f16.
# Run 4 times them against the register-store kernels of session 8 (stg128 / stg64).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-sm90a --no-bench --budget-s 540 \
  --sanitize qm_dense_prefill_sm90_attn_bf16_hd128,qm_dense_prefill_sm90_attn_f16_hd64 \
  --out "$OUT/check" > /tmp/check.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/check.log | grep -v "\[ok\]" | tail -30
