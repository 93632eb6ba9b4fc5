#!/bin/bash
# Session 16, run 3: where run 2's staggered kernels lose. Run 2 (dynamic claims, each warpgroup
# loading its own Q): correct, 0.61-0.86 of the shipped kernel, the smallest delay (d2) the best, and
# 0.85 even at 16k where the stagger's unshared items are 2 of 128 per sub-tile. So the loss is in the
# steady KV step, not at the boundaries. Two controls, both with no stagger (delay 0: the warpgroups
# consume the same items in the same order, their boundaries together, as in the shipped kernel):
# d0 without ping-pong turns, d0pp with them. Predicted: d0 ~ d2 (0.8-0.86) if the missing turns are
# the cause, and d0pp near the shipped kernel (0.97-1.0: the ring tags and per-warpgroup Q cost ~2%);
# if d0pp stays near 0.85 the ring machinery (tags, steps over the other warpgroup's slots) is the cost.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 120 python3 scripts/experiments/check_stagger.py --kernels .device/ab16/st-d0 > "$OUT/check-d0.txt" 2>&1
echo "check d0 rc=$?"; grep -c "^ok" "$OUT/check-d0.txt"; grep -v "^ok" "$OUT/check-d0.txt" | tail -5
A=.device/ab16
timeout 400 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 2048,4096,16384 --out "$OUT/ab.jsonl" \
  --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 \
  --kernel st_d0=$A/st-d0:qm_stagger_attn_bf16_hd128 --kernel st_d0pp=$A/st-d0pp:qm_stagger_attn_bf16_hd128 \
  --kernel st_d2=$A/st-d2:qm_stagger_attn_bf16_hd128 2>&1 | tee "$OUT/ab-full.txt"
echo "ab rc=${PIPESTATUS[0]}"
