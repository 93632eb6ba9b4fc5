#!/bin/bash
# Session 16, run 1: the staggered-warpgroup experiment (scripts/experiments/stagger_sm90.cu) at D 128,
# bf16. Each consumer warpgroup owns a 64-row sub-tile; warpgroup 1 starts STAGGER_DELAY KV steps late
# (dh: half the first sub-tile; d2 / d4 / d6) and both read one K/V stream, so one warpgroup's tile
# boundary (epilogue, first S GEMM, first softmax) runs beside the other's GEMMs. No ping-pong turns.
# Predicted (written before the run): without a mask +3-6% at 2k, +2-4% at 1k and 4k, +0-2% at
# 8k-16k over the shipped kernel; under the causal mask slower (a static share of sub-tiles per CTA,
# no longest-first order), which only checks correctness here.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
for v in dh d4; do
  timeout 120 python3 scripts/experiments/check_stagger.py --kernels .device/ab16/st-$v > "$OUT/check-$v.txt" 2>&1
  echo "check $v rc=$?"; grep -c "^ok" "$OUT/check-$v.txt"; grep -v "^ok" "$OUT/check-$v.txt" | tail -5
done
A=.device/ab16
timeout 400 python3 scripts/ab_sm90.py --rounds 3 --masks full --out "$OUT/ab.jsonl" \
  --kernel ship=$A/ship:qm_dense_prefill_sm90_attn_bf16_hd128 \
  --kernel st_dh=$A/st-dh:qm_stagger_attn_bf16_hd128 --kernel st_d2=$A/st-d2:qm_stagger_attn_bf16_hd128 \
  --kernel st_d4=$A/st-d4:qm_stagger_attn_bf16_hd128 --kernel st_d6=$A/st-d6:qm_stagger_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt"
echo "ab rc=${PIPESTATUS[0]}"
