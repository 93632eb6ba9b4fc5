#!/bin/bash
# Session 20, run 6: run 5's n160p24 (pinned 128 x 160 at 24 / 240) at the lengths where it led, repeated with more
# rounds and in f16: +0.7% at 8k and +2.4% at 16k without a mask over the shipped `_full` kernel, +0.5% at 8k causal.
# Predicted: the same within 1% (8k +0-1.5%, 16k +1.5-3%), f16 alike.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 60 python3 scripts/hopper_check.py --kernels .device/n160 --no-bench --budget-s 50 --dtypes f16 --out "$OUT/check" \
  > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -4
S=.device/ship18; N=.device/n160; E=qm_dense_prefill_sm90
for dt in bf16 f16; do
  timeout 200 python3 scripts/ab_sm90.py --rounds 7 --masks full --lengths 4096,8192,16384 --out "$OUT/ab-full-$dt.jsonl" \
    --kernel ship=$S:${E}_full_attn_${dt}_hd128 --kernel n160p24=$N:${E}_v_n160p24_attn_${dt}_hd128 \
    2>&1 | tee "$OUT/ab-full-$dt.txt" | grep -E "^dense|rror"
done
timeout 150 python3 scripts/ab_sm90.py --rounds 5 --masks causal --lengths 8192,16384 --out "$OUT/ab-causal.jsonl" \
  --kernel ship=$S:${E}_attn_bf16_hd128 --kernel n160p24=$N:${E}_v_n160p24_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-causal.txt" | grep -E "^dense|rror"
