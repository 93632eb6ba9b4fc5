#!/bin/bash
# Session 21, run 5 (H200): the D 128 rows without a mask at 1k-4k, 7 rounds interleaved: the shipped `_full` kernel
# (rescale=lazy), its eager build, and carry=pv with rescale=lazy (carry128l: the sixteenth run timed carry level with
# eager rescales there). Predicted: lazy / eager +0.7-1.3% (run 1); carry128l / lazy level to +1%.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
timeout 400 python3 scripts/ab_sm90.py --rounds 7 --masks full --lengths 1024,2048,4096 --out "$OUT/ab-full.jsonl" \
  --kernel lazy=.device/bench21b:qm_dense_prefill_sm90_full_attn_bf16_hd128 \
  --kernel eager=.device/eager21:qm_dense_prefill_sm90_v_eager128_full_attn_bf16_hd128 \
  --kernel carryl=.device/carryl:qm_dense_prefill_sm90_v_carry128l_attn_bf16_hd128 2>&1 | tee "$OUT/ab-full.txt" | grep -E "^dense|rror"
