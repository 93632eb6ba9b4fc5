#!/bin/bash
# Session 20, run 5: FA3's D 128 shape in our pinned loop. Run 3's samples put FA3's KV step (160 keys, two stages,
# 24 / 240 registers) well ahead of ours per key. Session 7's pinned n160 was at 40 / 232 and spilled in its loop;
# n160p24 (sm90_variants.py) is the pinned 128 x 160 at 24 / 240: KV loop 1113 instructions per 160 keys (938 per
# 128 shipped, 5% fewer per key), R2UR 17, its 52 B of spills outside the loop (a few LDL a tile). p24: the shipped
# 128 x 128 at 24 / 240, the control for the register split (loop as shipped).
# Predicted: n160p24 +3-5% over the shipped `_full` kernel at 4k-8k, +0-2% at 2k (13 KV tiles of 160 for 2048 keys,
# the last one masked), -5% at 1k (7 tiles for 1024 keys); p24 level.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 120 python3 scripts/hopper_check.py --kernels .device/n160 --no-bench --budget-s 110 --out "$OUT/check" \
  > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in|FAIL|fail" "$OUT/check.txt" | tail -6
S=.device/ship18; N=.device/n160; E=qm_dense_prefill_sm90
timeout 250 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192,16384 --out "$OUT/ab-full.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel n160p24=$N:${E}_v_n160p24_attn_bf16_hd128 \
  --kernel p24=$N:${E}_v_p24_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt" | grep -E "^dense|rror"
timeout 150 python3 scripts/ab_sm90.py --rounds 3 --masks causal --lengths 2048,4096,8192 --out "$OUT/ab-causal.jsonl" \
  --kernel ship=$S:${E}_attn_bf16_hd128 --kernel n160p24=$N:${E}_v_n160p24_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-causal.txt" | grep -E "^dense|rror"
