#!/bin/bash
# Session 20, run 2: cuDNN's loop shape (scripts/experiments/build_alternate.py, .device/alt): no overlap inside a
# warpgroup, the two warpgroups taking turns on the softmax instead of on the S GEMM's issue, so the KV loop has
# no peeled first step or last O += P V. `alt` keeps three stages and the register store, `alt_tma` takes two
# stages and the bulk store of O (cuDNN's epilogue); `none` is OVERLAP = 0 as lowered (turns on the S GEMM: the
# control for the turn's placement). KV loops 955 / 948 instructions with the mask paths, R2UR 33, no spill.
# Predicted (run 1: cuDNN's step level with ours, its tile boundary ~1000 samples a tile cheaper): alt +1.5-3% over
# the shipped `_full` kernel at 1k-2k, +0.5-1% at 8k; none well below shipped (the turns serialise, cost model 3).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 170 python3 scripts/hopper_check.py --kernels .device/alt --no-bench --budget-s 160 --out "$OUT/check" \
  --sanitize qm_alt_attn_bf16_hd128 > "$OUT/check.txt" 2>&1
echo "check rc=$?"; grep -E "^\[|done in|FAIL|fail" "$OUT/check.txt" | tail -12
S=.device/ship18; A=.device/alt; E=qm_dense_prefill_sm90
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192 --out "$OUT/ab-full.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel alt=$A:qm_alt_attn_bf16_hd128 \
  --kernel alt_tma=$A:qm_alt_tma_attn_bf16_hd128 --kernel none=$A:${E}_v_none128_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt" | grep -E "^dense|rror"
timeout 150 python3 scripts/ab_sm90.py --rounds 3 --masks causal --lengths 1024,2048,4096,8192 --out "$OUT/ab-causal.jsonl" \
  --kernel ship=$S:${E}_attn_bf16_hd128 --kernel alt=$A:qm_alt_attn_bf16_hd128 \
  --kernel alt_tma=$A:qm_alt_tma_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-causal.txt" | grep -E "^dense|rror"
