#!/bin/bash
# Session 16, run 2 (run 1 again, the experiment revised): the staggered-warpgroup experiment (scripts/experiments/stagger_sm90.cu) at D 128,
# bf16. Each consumer warpgroup owns a 64-row sub-tile; warpgroup 1 starts STAGGER_DELAY KV steps late
# (dh: half the first sub-tile; d2 / d4 / d6) and both read one K/V stream, so one warpgroup's tile
# boundary (epilogue, first S GEMM, first softmax) runs beside the other's GEMMs. No ping-pong turns.
# Run 1 (a static contiguous share of sub-tiles per CTA, the producer loading each warpgroup's Q) was
# correct and ran at half the shipped kernel's speed at 1k-2k, 0.73-0.86 at 4k-16k: the 132 CTAs each
# streamed a different head's K/V, from HBM. Revised: 128-row tiles claimed from the counter in the
# shipped order (one head at a time), split into a sub-tile per warpgroup; each warpgroup loads its own
# next Q once its last S GEMM is done (the producer no longer waits on it); the delay variants dh / d2 /
# d4 / d8.
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
  --kernel st_d4=$A/st-d4:qm_stagger_attn_bf16_hd128 --kernel st_d8=$A/st-d8:qm_stagger_attn_bf16_hd128 \
  2>&1 | tee "$OUT/ab-full.txt"
echo "ab rc=${PIPESTATUS[0]}"
