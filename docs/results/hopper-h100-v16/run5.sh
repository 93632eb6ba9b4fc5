#!/bin/bash
# Session 18, run 5: carry=pv (one KV loop across the tiles, shipped at dense D 128 causal in run 3) where it
# also lowers clean: dense D 256 (its steady step 540 / 534 instructions, R2UR 32 / 32, no spill) and the paged
# gather at D 128 (547 / 541, R2UR 17 / 17). .device/v18: scripts/sm90_variants.py --only carry256,pcarry128.
# 1. validate the four kernels (dense 48 cases, paged 26), memcheck and racecheck on both bf16 ones;
# 2. A/B against session 17's kernels (.device/ship17), bf16: D 256 causal 1k-8k and without a mask 1k-4k;
#    paged D 128 causal 1k-8k, and chunked prefill (4096 keys of context before 512-2048 new queries).
# Predicted: D 256 causal +2-4% at 1k (its 64 KB O store and 128-register epilogue make a longer boundary),
# +1-2% at 2k, level at 8k; without a mask level. Paged D 128 as dense D 128 (+1-2% at 1k-2k, level at 8k);
# with context level (long tiles).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/hopper_check.py --kernels .device/v18 --no-bench --budget-s 190 --out "$OUT/check" \
  --sanitize qm_paged_prefill_sm90_v_pcarry128_attn_bf16_hd128,qm_dense_prefill_sm90_v_carry256_attn_bf16_hd256 \
  > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in" "$OUT/check.txt" | tail -10
S=.device/ship17; V=.device/v18
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks causal --lengths 1024,2048,4096,8192 --out "$OUT/ab-d256.jsonl" \
  --kernel ship=$S:qm_dense_prefill_sm90_attn_bf16_hd256 --kernel carry=$V:qm_dense_prefill_sm90_v_carry256_attn_bf16_hd256 \
  2>&1 | tee "$OUT/ab-d256.txt" | grep -E "^dense|rror"
timeout 80 python3 scripts/ab_sm90.py --rounds 3 --masks full --lengths 1024,2048,4096 --out "$OUT/ab-d256-full.jsonl" \
  --kernel ship=$S:qm_dense_prefill_sm90_attn_bf16_hd256 --kernel carry=$V:qm_dense_prefill_sm90_v_carry256_attn_bf16_hd256 \
  2>&1 | tee "$OUT/ab-d256-full.txt" | grep -E "^dense|rror"
timeout 120 python3 scripts/ab_sm90.py --rounds 5 --masks causal --lengths 1024,2048,4096,8192 --out "$OUT/ab-paged128.jsonl" \
  --kernel ship=$S:qm_paged_prefill_sm90_attn_bf16_hd128 --kernel carry=$V:qm_paged_prefill_sm90_v_pcarry128_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-paged128.txt" | grep -E "^paged|rror"
timeout 80 python3 scripts/ab_sm90.py --rounds 5 --masks causal --lengths 512,1024,2048 --context 4096 --out "$OUT/ab-paged128-ctx.jsonl" \
  --kernel ship=$S:qm_paged_prefill_sm90_attn_bf16_hd128 --kernel carry=$V:qm_paged_prefill_sm90_v_pcarry128_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-paged128-ctx.txt" | grep -E "^paged|rror"
