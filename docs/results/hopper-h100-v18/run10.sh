#!/bin/bash
# Session 20, run 10: the D 128 kernels as `qimeng-serve build` now makes them (.device/ship20: build_sm90_kernels at
# D 128: the causal kernel and `_full` as shipped, and the new `_long`, 144-key tiles, min_seqlen_k 8192), validated
# (bf16, f16), memcheck and racecheck on `_long` bf16, and hopper_check's bench (bf16, every anchor but Flex) so that
# hopper_table shows the kernel the runtime picks per row. Predicted: `_long` validates and is sanitizer-clean; in the
# table the 8k and 16k rows come from `_long` at 1.00-1.03 of cuDNN, the rest as in the seventeenth run.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 560 python3 scripts/hopper_check.py --kernels .device/ship20 --budget-s 540 --flex none --out "$OUT/check" \
  --sanitize qm_dense_prefill_sm90_long_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -14
python3 scripts/hopper_table.py "$OUT/check/hopper_check.json" > "$OUT/table.md" 2>&1; head -40 "$OUT/table.md"
