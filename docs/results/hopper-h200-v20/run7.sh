#!/bin/bash
# Session 22, run 7 (H200): which D 128 causal kernel for the seed's GQA rows at B 8 x 2k: the shipped one (carry=pv,
# register store of O, three stages; carry gained 1.5-3.5% on these rows in session 18) or tma128f (no carry, O's bulk
# store, two stages: +1.0-1.4% at 2k-4k causal in run 6, -0.1 to -0.7% at 1k). 5 rounds, bf16 and f16.
# Predicted: level (+-1%).
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
source scripts/device_env.sh
for dt in bf16 f16; do
  timeout 100 python3 scripts/ab_sm90.py --rounds 5 --masks causal --gqa 8,32,32,2048 --gqa 8,64,8,2048 --gqa 8,128,8,2048 \
    --out "$OUT/ab-gqa-$dt.jsonl" --kernel carry=.device/bench22:qm_dense_prefill_sm90_attn_${dt}_hd128 \
    --kernel tma=.device/tma22f:qm_dense_prefill_sm90_v_tma128f_attn_${dt}_hd128 2>&1 | tee "$OUT/ab-gqa-$dt.txt" \
    | grep -E "^dense|rror"
done
