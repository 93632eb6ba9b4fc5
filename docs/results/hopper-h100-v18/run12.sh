#!/bin/bash
# Session 20, run 12: the consumers' tile word by ld.shared (QM_SM90_TILE_LDS; sm90_variants tlds128 / tlds64) instead
# of the generic LD.E.STRONG.SYS run 1 found in the tile head (~300 samples a tile around it). KV loops unchanged
# (sass_kv_loop: the same schedule as the shipped D 128 `_full`, `_long` and D 64 kernels).
# The switch was removed after this run (level); its form: take_tile's word read by `asm volatile("ld.volatile.shared.s32")`
# on __cvta_generic_to_shared(&sm.tile[s]) under #ifdef QM_SM90_TILE_LDS, and the two variants in sm90_variants.py.
# Predicted: +0.2-0.5% at D 128 1k-2k without a mask, +0.3-0.8% at D 64 1k-2k, level at 4k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 90 python3 scripts/hopper_check.py --kernels .device/tlds --no-bench --budget-s 80 --dtypes bf16 --out "$OUT/check" \
  > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -6
E=qm_dense_prefill_sm90
timeout 150 python3 scripts/ab_sm90.py --rounds 7 --masks full --lengths 1024,2048,4096 --out "$OUT/ab-d128.jsonl" \
  --kernel ship=.device/ship20:${E}_full_attn_bf16_hd128 --kernel tlds=.device/tlds:${E}_v_tlds128_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-d128.txt" | grep -E "^dense|rror"
timeout 150 python3 scripts/ab_sm90.py --rounds 7 --masks full,causal --lengths 1024,2048 --out "$OUT/ab-d64.jsonl" \
  --kernel ship=.device/ship18:${E}_attn_bf16_hd64 --kernel tlds=.device/tlds:${E}_v_tlds64_attn_bf16_hd64 \
  2>&1 | tee "$OUT/ab-d64.txt" | grep -E "^dense|rror"
