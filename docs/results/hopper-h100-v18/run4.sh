#!/bin/bash
# Session 20, run 4: is cuDNN's loop shape worth having once ptxas keeps the GMMA descriptors uniform? Run 2's `alt`
# lost 2.4-7.4% to the shipped `_full` kernel, more at longer L, so in its KV step. Its loop has the mask's branches
# and R2UR 33; without the mask (`alt_nomask`, timing only: right without a mask at L a multiple of 128, which
# ab_sm90 checks against cuDNN before timing) the loop is 536 instructions, R2UR 18, the shipped loop's figures.
# Predicted: alt_nomask level with shipped at 8k (the step as cuDNN's) and +2-3% at 1k-2k (the boundary without
# the peel); alt_nomask_tma +1% over that at 1k-2k.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
S=.device/ship18; A=.device/alt; E=qm_dense_prefill_sm90
timeout 250 python3 scripts/ab_sm90.py --rounds 5 --masks full --lengths 1024,2048,4096,8192 --out "$OUT/ab-full.jsonl" \
  --kernel ship=$S:${E}_full_attn_bf16_hd128 --kernel nomask=$A:qm_alt_nomask_attn_bf16_hd128 \
  --kernel nomask_tma=$A:qm_alt_nomask_tma_attn_bf16_hd128 --kernel alt_tma=$A:qm_alt_tma_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt" | grep -E "^dense|rror"
