#!/bin/bash
# Session 17, run 7: idle=skip in paged prefill D 64 (the gathering producer's leader arrives for the
# idle warpgroups; IDLE = 1 in paged_prefill_sm90.tl's `params when D = 64`). Its KV loop is the
# shipped one instruction for instruction (707). .device/ship17p: build_sm90_kernels of the paged
# program at D 64 (bf16, f16); .device/ship17: the same without it.
# 1. validate both (26 paged cases each), memcheck and racecheck on bf16;
# 2. A/B new / old, bf16 and f16, both masks, 1k-16k, 5 rounds (16-row pages, shuffled block table).
# Predicted: as dense D 64 in run 5: +6% at 1k without a mask, +2% at 2k-4k, causal +1-2%, level at 8k+.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/hopper_check.py --kernels .device/ship17p --no-bench --budget-s 190 --out "$OUT/check" \
  --sanitize qm_paged_prefill_sm90_attn_bf16_hd64 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -8
for dt in bf16 f16; do
  k=qm_paged_prefill_sm90_attn_${dt}_hd64
  timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks full,causal --lengths 1024,2048,4096,8192,16384 \
    --out "$OUT/ab-paged64-$dt.jsonl" --kernel old=.device/ship17:$k --kernel new=.device/ship17p:$k 2>&1 \
    | tee "$OUT/ab-paged64-$dt.txt" | grep -E "^paged|^family"
done
