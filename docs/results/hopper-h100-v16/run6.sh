#!/bin/bash
# Session 18, run 6: the last partial wave split by rows (scripts/experiments/build_rows.py --out .device/rows):
# without a mask each tail tile becomes one item per consumer warpgroup; that warpgroup computes its 64 rows,
# the others skip it as padding warpgroups do (idle=skip), so nothing is stored twice or combined. KV loops
# as shipped (D 128 939 / 938 instructions, D 64 863 / 864, D 256 793 / 793; D 256's 24-register producer
# spills 92 B).
# 1. validate the three bf16 kernels (48 cases and the split shapes, whose last wave splits), memcheck and
#    racecheck on D 128;
# 2. A/B against session 17's kernels (.device/ship17), bf16, without a mask, 1k-8k.
# Predicted: the sweep's 68 tail tiles of 2048 (D 128) run as 136 half items, each ~0.65-0.7 of a tile's time
# (one warpgroup alone on the tensor cores): +1-2% at every length at D 128 less idle=skip's 0.3-0.9% there;
# D 64 (88 tail tiles at 1k-16k? as thirds) +1.5-3%; D 256 +1-2% unless its producer's spill costs it.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/hopper_check.py --kernels .device/rows --no-bench --dtypes bf16 --budget-s 190 --out "$OUT/check" \
  --sanitize qm_rows_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
S=.device/ship17; R=.device/rows; E=qm_dense_prefill_sm90_attn
for d in 128 64 256; do
  if [ $d = 128 ]; then L=1024,2048,4096,8192; N=5; else L=1024,2048,4096; N=3; fi
  timeout 100 python3 scripts/ab_sm90.py --rounds $N --masks full --lengths $L --out "$OUT/ab-rows$d.jsonl" \
    --kernel ship=$S:${E}_bf16_hd$d --kernel rows=$R:qm_rows_attn_bf16_hd$d 2>&1 | tee "$OUT/ab-rows$d.txt" | grep -E "^dense|rror"
done
