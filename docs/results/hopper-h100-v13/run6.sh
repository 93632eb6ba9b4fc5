#!/bin/bash
# Session 15, run 6: the shipped set in f16 (registry-var15f: build_sm90_kernels of dense_prefill_sm90.tl
# and paged_prefill_sm90.tl, f16, D 64 / 128 / 256). Runs 1-5 were bf16 only. Offline, f16 dense D 64's
# KV loop has bf16's softmax order (its HGMMAs carry no dtype suffix, and 7 uniform moves/adds sit
# elsewhere). Validated, memcheck / racecheck on dense and paged D 64, timed beside every anchor but
# Flex. Predicted: the ratios of run 4 within 2-3% (f16 and bf16 have timed alike in every earlier run).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var15f --dtypes f16 --bench-dtypes f16 --flex none \
  --lengths 1024,2048,4096,8192,16384 --budget-s 500 \
  --sanitize qm_dense_prefill_sm90_attn_f16_hd64,qm_paged_prefill_sm90_attn_f16_hd64 \
  --out "$OUT/f16" > "$OUT/f16.log" 2>&1
grep -E "^\[" "$OUT/f16.log" | grep -v "\[ok\]"
