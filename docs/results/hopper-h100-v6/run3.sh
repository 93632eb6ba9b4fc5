#!/bin/bash
# Session 8, run 3:
#  A. D 128 with 160-key KV tiles at two stages (FA3 runs 128 x 176 at D 128 without a mask; 176
#     spills in our loop): n160 (pinned softmax, 40 / 232, 15 spill instructions in the KV loop) and
#     n160o1 (overlap=softmax, 24 / 240, spills outside the loop only), beside the shipped D 128, bf16.
#     Predicted: +1-3% without a mask at L >= 8k (6% fewer instructions per key), -2 to -5% at 2k and
#     below and under a causal mask (two stages, more masked keys on the diagonal).
#     registry-var/ from: scripts/sm90_variants.py --out registry-var --only n160o1,n160 \
#       --baseline qm_dense_prefill_sm90_attn_bf16_hd128
#  B. FlexAttention beside the shipped dense D 64 and D 256 (bf16 + f16), which run 5 of session 7
#     measured at D 128 only. registry-flex/: registry-sm90a/'s four dense D 64 / 256 kernels.
cd "$(dirname "$0")/../../.." || exit 2  # the repository root
OUT=${OUT:-/tmp/out}
bash scripts/hopper_device.sh --kernels registry-var --bench-dtypes bf16 --dtypes bf16 --flex none --budget-s 170 \
  --out "$OUT/n160" > "$OUT/n160.log" 2>&1
bash scripts/hopper_device.sh --kernels registry-flex --bench-dtypes bf16,f16 --head-dims 64,256 --no-validate --flex all \
  --budget-s 380 --out "$OUT/flex" > "$OUT/flex.log" 2>&1
grep -E "^\[|FAIL|rror" "$OUT/n160.log" "$OUT/flex.log" | grep -v "\[ok\]" | tail -30
