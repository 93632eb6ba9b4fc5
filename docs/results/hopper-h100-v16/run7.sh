#!/bin/bash
# Session 18, run 7: O stored through the tile's last K slot by bulk tensor stores, D 128 without a mask,
# three K/V stages kept (scripts/experiments/build_oslot.py --out .device/oslot). KV loop as shipped (939 /
# 938 instructions, R2UR 17 / 17, no spill).
# 1. validate both kernels (48 cases; causal ones too, whose shifted first tile's rows before 0 the bulk
#    store clips), memcheck and racecheck on bf16;
# 2. A/B against session 17's kernel (.device/ship17), without a mask: bf16 1k-8k, f16 1k-4k; bf16 causal
#    1k-4k for what it does there.
# Predicted (session 9's trace: the epilogue 1.02 -> 0.80 us and the next Q 0.32 -> 0.16 us with the bulk
# store; three stages now, not two): +1-1.5% at 2k, +2-3% at 1k, +0.5% at 4k, level at 8k, less the
# warpgroup's wait for the stores to read the slot.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 150 python3 scripts/hopper_check.py --kernels .device/oslot --no-bench --budget-s 140 --out "$OUT/check" \
  --sanitize qm_oslot_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
S=.device/ship17; O=.device/oslot; E=qm_dense_prefill_sm90_attn
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192 --out "$OUT/ab-bf16.jsonl" \
  --kernel ship=$S:${E}_bf16_hd128 --kernel oslot=$O:qm_oslot_attn_bf16_hd128 2>&1 | tee "$OUT/ab-bf16.txt" | grep -E "^dense|rror"
timeout 80 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096 --out "$OUT/ab-f16.jsonl" \
  --kernel ship=$S:${E}_f16_hd128 --kernel oslot=$O:qm_oslot_attn_f16_hd128 2>&1 | tee "$OUT/ab-f16.txt" | grep -E "^dense|rror"
timeout 60 python3 scripts/ab_sm90.py --rounds 3 --masks causal --lengths 1024,2048,4096 --out "$OUT/ab-bf16-causal.jsonl" \
  --kernel ship=$S:${E}_bf16_hd128 --kernel oslot=$O:qm_oslot_attn_bf16_hd128 2>&1 | tee "$OUT/ab-bf16-causal.txt" | grep -E "^dense|rror"
