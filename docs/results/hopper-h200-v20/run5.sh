#!/bin/bash
# Session 22, run 5 (H200): O through a shared tile and bulk tensor stores on the `_full` kernel again (tma128f:
# STORE_TMA = 1, two stages since O's tile leaves no room for a third; CARRY = 0), against the shipped `_full` (three
# stages, register store) and the two-stage register-store control (n128s2). cuDNN's epilogue is STSM + UTMASTG;
# ours is the tile boundary's dearest part after the peel (eighteenth run). Timed level at D 128 in session 9, before
# most of today's loop. Predicted: tma128f / full 0.995-1.005 at 2k; n128s2 / full 0.99-1.00.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 200 python3 scripts/ab_sm90.py --rounds 7 --masks full --lengths 1024,2048,4096 --list-kernels \
  --out "$OUT/ab-tma.jsonl" --kernel full=.device/bench22:qm_dense_prefill_sm90_full_attn_bf16_hd128 \
  --kernel s2=.device/tma22:qm_dense_prefill_sm90_v_n128s2_full_attn_bf16_hd128 \
  --kernel tma=.device/tma22:qm_dense_prefill_sm90_v_tma128f_attn_bf16_hd128 2>&1 | tee "$OUT/ab-tma.txt" \
  | grep -E "^dense|^  |rror"
