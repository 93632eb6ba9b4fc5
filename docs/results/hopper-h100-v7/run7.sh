#!/bin/bash
# Session 9, run 7: the shipped set after the TMA-store experiment (STORE_TMA = 0: session 8's kernels,
# now taking the 512-byte TmaDescs parameter): validation of all 12 kernels, memcheck and racecheck on
# dense D 128 bf16 and D 64 f16, and the same-run table against cuDNN / FA3, bf16 and f16.
# Predicted: session 8's run-4 ratios within run-to-run noise (1-3%): the kernels' code is the same
# (KV loops 934 / 691 / 789 instructions), only the parameter grew.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-sm90a --bench-dtypes bf16,f16 --flex none --budget-s 560 \
  --sanitize qm_dense_prefill_sm90_attn_bf16_hd128,qm_dense_prefill_sm90_attn_f16_hd64 \
  --out "$OUT/shipped" > /tmp/shipped.log 2>&1
grep -E "^\[|FAIL|rror|hazard|ERROR SUMMARY" /tmp/shipped.log | grep -v "\[ok\]" | tail -30
