#!/bin/bash
# Session 18, run 2: the flat KV loop (q1: one Q buffer, three stages; run 1's build in .device/flat) on the
# seed's GQA rows, which are causal (scripts/ab_sm90.py --gqa, new), and f16 causal; the rows without a mask
# again with seven rounds (run 1: q1 / ship 0.995-0.999, inside the rounds' spread?).
# Predicted from run 1 (causal +1.8% at 2k, +0.8% at 8k): GQA rows at B 8 x 2k +1.5-2%, at B 2 x 8k +0.5-1%;
# llama3.1-405b B 8 x 2k from 0.96-1.00 of cuDNN to 0.98-1.02. f16 causal as bf16. Full: level (+-0.5%).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
F=.device/flat; S=.device/ship17; E=qm_dense_prefill_sm90_attn
timeout 200 python3 scripts/ab_sm90.py --rounds 5 --masks causal --out "$OUT/ab-gqa-bf16.jsonl" \
  --gqa 8,32,32,2048 --gqa 8,64,8,2048 --gqa 8,128,8,2048 --gqa 2,32,32,8192 --gqa 2,64,8,8192 --gqa 2,128,8,8192 \
  --kernel ship=$S:${E}_bf16_hd128 --kernel q1=$F:qm_flat_q1_attn_bf16_hd128 2>&1 | tee "$OUT/ab-gqa-bf16.txt" | grep -E "^dense|rror"
timeout 100 python3 scripts/ab_sm90.py --rounds 5 --masks causal --lengths 1024,2048,4096 --out "$OUT/ab-f16-causal.jsonl" \
  --kernel ship=$S:${E}_f16_hd128 --kernel q1=$F:qm_flat_q1_attn_f16_hd128 2>&1 | tee "$OUT/ab-f16-causal.txt" | grep -E "^dense|rror"
timeout 120 python3 scripts/ab_sm90.py --rounds 7 --masks full --lengths 1024,2048,4096 --out "$OUT/ab-bf16-full.jsonl" \
  --kernel ship=$S:${E}_bf16_hd128 --kernel q1=$F:qm_flat_q1_attn_bf16_hd128 2>&1 | tee "$OUT/ab-bf16-full.txt" | grep -E "^dense|rror"
